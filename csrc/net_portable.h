/*
 * The portable per-image network: forward and backward of ONE image out of caller
 * buffers (internal header, static functions only). network.c drives it for the portable
 * variant; it is also the reference the SIMD variants (simd_net.c) are tested against.
 */
#ifndef LENET_NET_PORTABLE_H
#define LENET_NET_PORTABLE_H

#include <string.h>

#include "lenet.h"
#include "layers_impl.h"

#define P(net, off) ((net)->params + (off))

/* One image forward: acts (LENET_NACTS,) receives every layer's output. */
static void net_forward_one(float *restrict acts, const lenet_net *net, const float *restrict x)
{
    float *c1 = acts + LENET_ACT_C1, *s2 = acts + LENET_ACT_S2, *c3 = acts + LENET_ACT_C3;
    float *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5, *f6 = acts + LENET_ACT_F6;
    float *out = acts + LENET_ACT_OUT;

    conv5x5_forward_one(c1, x, P(net, LENET_OFF_C1_W), P(net, LENET_OFF_C1_B), 1, 6, 32, 32);
    squash_inplace_one(c1, 6 * 28 * 28);
    subsample_forward_one(s2, c1, P(net, LENET_OFF_S2_W), P(net, LENET_OFF_S2_B), 6, 28, 28);
    squash_inplace_one(s2, 6 * 14 * 14);
    c3_forward_one(c3, s2, P(net, LENET_OFF_C3_W), P(net, LENET_OFF_C3_B), net->c3_out, net->c3_in,
                   LENET_C3_PAIRS, 16, 14, 14);
    squash_inplace_one(c3, 16 * 10 * 10);
    subsample_forward_one(s4, c3, P(net, LENET_OFF_S4_W), P(net, LENET_OFF_S4_B), 16, 10, 10);
    squash_inplace_one(s4, 16 * 5 * 5);
    /* C5 is a 5x5 convolution over 5x5 maps: one output pixel, i.e. a dense 400 -> 120 */
    dense_forward_one(c5, s4, P(net, LENET_OFF_C5_W), P(net, LENET_OFF_C5_B), 400, 120);
    squash_inplace_one(c5, 120);
    dense_forward_one(f6, c5, P(net, LENET_OFF_F6_W), P(net, LENET_OFF_F6_B), 120, 84);
    squash_inplace_one(f6, 84);
    if (net->head == LENET_HEAD_RBF)
        rbf_forward_one(out, f6, P(net, LENET_OFF_OUT_W), 84, 10);
    else
        dense_forward_one(out, f6, P(net, LENET_OFF_OUT_W), P(net, LENET_OFF_OUT_B), 84, 10);
}

/* One image's loss (returned) and its gradient wrt the head's output: dout (10,) +=
 * scale dloss/dout (softmax cross-entropy, or the paper's RBF loss) */
static float loss_backward_one(float *restrict dout, const float *restrict out, int label,
                               float scale, int head)
{
    if (head == LENET_HEAD_RBF) return rbfloss_backward_one(dout, out, label, LENET_RBF_J, scale, 10);
    return xent_backward_one(dout, out, label, scale, 10);
}

/* The head's backward: df6 (84,) += dout through the head; the softmax head's weight and
 * bias gradients accumulate into grad (the RBF prototypes are fixed) */
static void head_backward_one(float *restrict df6, float *restrict grad, const float *restrict dout,
                              const float *restrict f6, const lenet_net *net)
{
    if (net->head == LENET_HEAD_RBF)
        rbf_backward_one(df6, dout, f6, P(net, LENET_OFF_OUT_W), 84, 10);
    else
        dense_backward_one(df6, grad + LENET_OFF_OUT_W, grad + LENET_OFF_OUT_B, dout, f6,
                           P(net, LENET_OFF_OUT_W), 84, 10);
}

/* One image backward. d and dpre are (LENET_NACTS,) scratch buffers (gradients wrt each
 * layer's output and pre-activation); grad (LENET_NPARAMS,) accumulates. Returns the loss. */
static float net_backward_one(float *restrict grad, float *restrict d, float *restrict dpre,
                              const float *restrict acts, const lenet_net *net,
                              const float *restrict x, int label, float scale)
{
    const float *c1 = acts + LENET_ACT_C1, *s2 = acts + LENET_ACT_S2, *c3 = acts + LENET_ACT_C3;
    const float *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5, *f6 = acts + LENET_ACT_F6;

    memset(d, 0, LENET_NACTS * sizeof(float));
    memset(dpre, 0, LENET_NACTS * sizeof(float));
    float *dout = dpre + LENET_ACT_OUT;
    const float loss = loss_backward_one(dout, acts + LENET_ACT_OUT, label, scale, net->head);
    head_backward_one(d + LENET_ACT_F6, grad, dout, f6, net);
    squash_backward_one(dpre + LENET_ACT_F6, d + LENET_ACT_F6, f6, 84);
    dense_backward_one(d + LENET_ACT_C5, grad + LENET_OFF_F6_W, grad + LENET_OFF_F6_B,
                       dpre + LENET_ACT_F6, c5, P(net, LENET_OFF_F6_W), 120, 84);
    squash_backward_one(dpre + LENET_ACT_C5, d + LENET_ACT_C5, c5, 120);
    dense_backward_one(d + LENET_ACT_S4, grad + LENET_OFF_C5_W, grad + LENET_OFF_C5_B,
                       dpre + LENET_ACT_C5, s4, P(net, LENET_OFF_C5_W), 400, 120);
    squash_backward_one(dpre + LENET_ACT_S4, d + LENET_ACT_S4, s4, 400);
    subsample_backward_one(d + LENET_ACT_C3, grad + LENET_OFF_S4_W, grad + LENET_OFF_S4_B,
                           dpre + LENET_ACT_S4, c3, P(net, LENET_OFF_S4_W), 16, 10, 10);
    squash_backward_one(dpre + LENET_ACT_C3, d + LENET_ACT_C3, c3, 1600);
    c3_backward_one(d + LENET_ACT_S2, grad + LENET_OFF_C3_W, grad + LENET_OFF_C3_B,
                    dpre + LENET_ACT_C3, s2, P(net, LENET_OFF_C3_W), net->c3_out, net->c3_in,
                    LENET_C3_PAIRS, 16, 14, 14);
    squash_backward_one(dpre + LENET_ACT_S2, d + LENET_ACT_S2, s2, 1176);
    subsample_backward_one(d + LENET_ACT_C1, grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B,
                           dpre + LENET_ACT_S2, c1, P(net, LENET_OFF_S2_W), 6, 28, 28);
    squash_backward_one(dpre + LENET_ACT_C1, d + LENET_ACT_C1, c1, 4704);
    conv5x5_backward_one(NULL, grad + LENET_OFF_C1_W, grad + LENET_OFF_C1_B, dpre + LENET_ACT_C1, x,
                         P(net, LENET_OFF_C1_W), 1, 6, 32, 32);
    return loss;
}

#endif /* LENET_NET_PORTABLE_H */
