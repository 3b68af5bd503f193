/*
 * Helpers shared by the portable path (layers.c, network.c) and the SIMD path
 * (simd_*.c, through simd_net.h): static inline functions only, so a file that uses some
 * of them compiles the rest to nothing and no warning needs silencing.
 *   - layers_impl.h: the one-image layer bodies (forward, backward, second-order backward)
 *     and the scalar squash and its derivative;
 *   - net_param: a parameter tensor of the flat vector (the LENET_OFF_* layout of lenet.h);
 *   - loss_backward_one, head_backward_one: the per-image loss and head backward, which
 *     every variant computes with this same scalar code;
 *   - lenet_clamp_threads: the thread count a kernel runs with (1 without OpenMP).
 */
#ifndef LENET_COMMON_H
#define LENET_COMMON_H

#include "lenet.h"
#include "layers_impl.h"

/* the thread count a driver runs with: at least 1, and 1 in a build without OpenMP */
static inline int lenet_clamp_threads(int nthreads)
{
#ifdef _OPENMP
    return nthreads < 1 ? 1 : nthreads;
#else
    (void)nthreads;
    return 1;
#endif
}

/* the parameter tensor at offset off (LENET_OFF_*) of the network's flat vector */
static inline const float *net_param(const lenet_net *net, int off)
{
    return net->params + off;
}

/* One image's loss (returned) and its gradient wrt the head's output: dout (10,) +=
 * scale dloss/dout (softmax cross-entropy, or the paper's RBF loss) */
static inline float loss_backward_one(float *restrict dout,     /* (10,) += */
                                      const float *restrict out, /* (10,) the head's output */
                                      int label, float scale, int head)
{
    if (head == LENET_HEAD_RBF)
        return rbfloss_backward_one(dout, out, label, LENET_RBF_J, scale, LENET_OUT);
    return xent_backward_one(dout, out, label, scale, LENET_OUT);
}

/* The head's backward: df6 (84,) += dout through the head; the softmax head's weight and
 * bias gradients accumulate into grad (the RBF prototypes are fixed) */
static inline void head_backward_one(float *restrict df6,        /* (84,) += */
                                     float *restrict grad,       /* (LENET_NPARAMS,) += */
                                     const float *restrict dout, /* (10,) */
                                     const float *restrict f6,   /* (84,) */
                                     const lenet_net *net)
{
    if (net->head == LENET_HEAD_RBF)
        rbf_backward_one(df6, dout, f6, net_param(net, LENET_OFF_OUT_W), LENET_F6, LENET_OUT);
    else
        dense_backward_one(df6, grad + LENET_OFF_OUT_W, grad + LENET_OFF_OUT_B, dout, f6,
                           net_param(net, LENET_OFF_OUT_W), LENET_F6, LENET_OUT);
}

#endif /* LENET_COMMON_H */
