/*
 * The whole LeNet-5, fused image by image: every layer of one image runs out of a
 * per-thread buffer of LENET_NACTS floats (32 KB, cache resident), so a batch of any size
 * streams through bounded memory. Threads split the batch (OpenMP, outer loop only).
 */
#include <string.h>

#include "lenet.h"
#include "layers_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* One image backward. d and dpre are (LENET_NACTS,) scratch buffers (gradients wrt each
 * layer's output and pre-activation); grad (LENET_NPARAMS,) accumulates. Returns the loss. */
static float net_backward_one(float *restrict grad, float *restrict d, float *restrict dpre,
                              const float *restrict acts, const lenet_net *net,
                              const float *restrict x, int label, float scale)
{
    const float *c1 = acts + LENET_ACT_C1, *s2 = acts + LENET_ACT_S2, *c3 = acts + LENET_ACT_C3;
    const float *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5, *f6 = acts + LENET_ACT_F6;
    const float *out = acts + LENET_ACT_OUT;
    float loss;

    memset(d, 0, LENET_NACTS * sizeof(float));
    memset(dpre, 0, LENET_NACTS * sizeof(float));
    float *dout = dpre + LENET_ACT_OUT;
    if (net->head == LENET_HEAD_RBF) {
        loss = rbfloss_one(out, label, LENET_RBF_J, 10);
        rbfloss_backward_one(dout, out, label, LENET_RBF_J, scale, 10);
        rbf_backward_one(d + LENET_ACT_F6, dout, f6, P(net, LENET_OFF_OUT_W), 84, 10);
    } else {
        loss = xent_loss_one(out, label, 10);
        xent_backward_one(dout, out, label, scale, 10);
        dense_backward_one(d + LENET_ACT_F6, grad + LENET_OFF_OUT_W, grad + LENET_OFF_OUT_B, dout, f6,
                           P(net, LENET_OFF_OUT_W), 84, 10);
    }
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

static int check_net(const lenet_net *net)
{
    if (!net || !net->params || !net->c3_out || !net->c3_in) return LENET_ERR_NULL;
    if (net->head != LENET_HEAD_SOFTMAX && net->head != LENET_HEAD_RBF) return LENET_ERR_ARG;
    for (int p = 0; p < LENET_C3_PAIRS; p++) {
        if (net->c3_out[p] < 0 || net->c3_out[p] >= 16 || net->c3_in[p] < 0 || net->c3_in[p] >= 6)
            return LENET_ERR_ARG;
        if (p > 0 && net->c3_out[p] < net->c3_out[p - 1]) return LENET_ERR_ARG;
    }
    return LENET_OK;
}

static int clamp_threads(int nthreads)
{
#ifdef _OPENMP
    return nthreads < 1 ? 1 : nthreads;
#else
    (void)nthreads;
    return 1;
#endif
}

/* ------------------------------------------------------------------------ forward */

size_t lenet_forward_workspace_size(int nthreads)
{
    return (size_t)clamp_threads(nthreads) * LENET_NACTS;
}

int lenet_forward(float *restrict out, float *restrict acts, const lenet_net *net,
                  const float *restrict x, int64_t N, int nthreads,
                  float *restrict workspace, size_t workspace_floats)
{
    int st = check_net(net);
    if (st) return st;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!out || !x) return LENET_ERR_NULL;
    nthreads = clamp_threads(nthreads);
    if ((int64_t)nthreads > N) nthreads = (int)N;
    if (!acts) {
        if (!workspace) return LENET_ERR_NULL;
        if (workspace_floats < lenet_forward_workspace_size(nthreads)) return LENET_ERR_WORKSPACE;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *mine = acts ? NULL : workspace + (size_t)t * LENET_NACTS;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t n = 0; n < N; n++) {
            float *a = acts ? acts + n * LENET_NACTS : mine;
            net_forward_one(a, net, x + n * 1024);
            memcpy(out + n * 10, a + LENET_ACT_OUT, 10 * sizeof(float));
        }
    }
    return LENET_OK;
}

/* ------------------------------------------------------------------------ gradients */

#define LENET_MAX_GRAD_CHUNKS 8

int lenet_grad_chunks(int64_t N)
{
    return N <= 0 ? 0 : (N < LENET_MAX_GRAD_CHUNKS ? (int)N : LENET_MAX_GRAD_CHUNKS);
}

size_t lenet_grad_workspace_size(int64_t N, int nthreads)
{
    return (size_t)lenet_grad_chunks(N) * LENET_NPARAMS
         + (size_t)clamp_threads(nthreads) * 3 * LENET_NACTS;
}

int lenet_loss_grad(float *restrict grad, float *restrict losses, float *restrict out,
                    const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                    float scale, int64_t N, int nthreads, float *restrict workspace,
                    size_t workspace_floats)
{
    int st = check_net(net);
    if (st) return st;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!grad || !x || !labels || !workspace) return LENET_ERR_NULL;
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] > 9) return LENET_ERR_LABEL;
    nthreads = clamp_threads(nthreads);
    if (workspace_floats < lenet_grad_workspace_size(N, nthreads)) return LENET_ERR_WORKSPACE;

    /* Gradients are summed in G partial sums over fixed slices of the batch, then the
     * partial sums are added in order: the result does not depend on the thread count. */
    const int G = lenet_grad_chunks(N);
    float *partial = workspace;
    float *scratch = workspace + (size_t)G * LENET_NPARAMS;
    if (nthreads > G) nthreads = G;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *acts = scratch + (size_t)t * 3 * LENET_NACTS;
        float *d = acts + LENET_NACTS, *dpre = d + LENET_NACTS;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int g = 0; g < G; g++) {
            float *gg = partial + (size_t)g * LENET_NPARAMS;
            memset(gg, 0, LENET_NPARAMS * sizeof(float));
            const int64_t lo = N * g / G, hi = N * (g + 1) / G;
            for (int64_t n = lo; n < hi; n++) {
                net_forward_one(acts, net, x + n * 1024);
                const float l = net_backward_one(gg, d, dpre, acts, net, x + n * 1024, labels[n], scale);
                if (losses) losses[n] = l;
                if (out) memcpy(out + n * 10, acts + LENET_ACT_OUT, 10 * sizeof(float));
            }
        }
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t k = 0; k < LENET_NPARAMS; k++) {
            float s = 0.0f;
            for (int g = 0; g < G; g++) s += partial[(size_t)g * LENET_NPARAMS + k];
            grad[k] += s;
        }
    }
    return LENET_OK;
}

/* ------------------------------------------------------------------------ Gauss-Newton */

/* workspace: squared parameters, squared activations + input, acts, h, hpre */
size_t lenet_hessian_workspace_size(void)
{
    return (size_t)LENET_NPARAMS + (LENET_NACTS + 1024) + 3 * LENET_NACTS;
}

int lenet_hessian_diag(float *restrict h, const lenet_net *net, const float *restrict x,
                       const int32_t *restrict labels, float scale, int64_t N,
                       float *restrict workspace, size_t workspace_floats)
{
    int st = check_net(net);
    if (st) return st;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!h || !x || !labels || !workspace) return LENET_ERR_NULL;
    if (workspace_floats < lenet_hessian_workspace_size()) return LENET_ERR_WORKSPACE;
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] > 9) return LENET_ERR_LABEL;

    float *w2 = workspace;                      /* (NPARAMS,) squared weights */
    float *a2 = w2 + LENET_NPARAMS;             /* (NACTS + 1024,) squared acts, then input */
    float *acts = a2 + LENET_NACTS + 1024;      /* (NACTS,) */
    float *hd = acts + LENET_NACTS;             /* (NACTS,) wrt layer outputs */
    float *hp = hd + LENET_NACTS;               /* (NACTS,) wrt pre-activations */
    float *x2 = a2 + LENET_NACTS;
    const float *w = net->params;
    for (int k = 0; k < LENET_NPARAMS; k++) w2[k] = w[k] * w[k];

    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * 1024;
        net_forward_one(acts, net, xn);
        for (int k = 0; k < LENET_NACTS; k++) a2[k] = acts[k] * acts[k];
        for (int k = 0; k < 1024; k++) x2[k] = xn[k] * xn[k];
        memset(hd, 0, 2 * LENET_NACTS * sizeof(float));
        const float *f6 = acts + LENET_ACT_F6, *y = acts + LENET_ACT_OUT;
        float *hout = hp + LENET_ACT_OUT;
        const int label = labels[n];
        if (net->head == LENET_HEAD_RBF) {
            /* q_i = exp(-y_i) / (exp(-j) + sum exp(-y)); GN: h_y = q (1 - q);
             * h_x_j = 2 (the y_label term) + sum_i h_y_i (2 (x_j - w_ij))^2 */
            const double lse = rbf_lse(y, LENET_RBF_J, 10);
            const float *proto = w + LENET_OFF_OUT_W;
            for (int i = 0; i < 10; i++) {
                const double q = exp(-y[i] - lse);
                hout[i] = (float)(q * (1.0 - q));
            }
            for (int k = 0; k < 84; k++) {
                float s = 2.0f;
                for (int i = 0; i < 10; i++) {
                    const float e = 2.0f * (f6[k] - proto[i * 84 + k]);
                    s += hout[i] * e * e;
                }
                hd[LENET_ACT_F6 + k] = scale * s;
            }
        } else {
            float p[10];
            softmax_one(p, y, 1.0f, 10);
            for (int i = 0; i < 10; i++) hout[i] = scale * p[i] * (1.0f - p[i]);
            dense_backward_one(hd + LENET_ACT_F6, h + LENET_OFF_OUT_W, h + LENET_OFF_OUT_B, hout,
                               a2 + LENET_ACT_F6, w2 + LENET_OFF_OUT_W, 84, 10);
        }
        /* through each weight layer: h_w += x^2 h_a, h_x += w^2 h_a (same loops as the
         * gradient, with squared inputs and weights) */
        squash_backward2_one(hp + LENET_ACT_F6, hd + LENET_ACT_F6, f6, 84);
        dense_backward_one(hd + LENET_ACT_C5, h + LENET_OFF_F6_W, h + LENET_OFF_F6_B, hp + LENET_ACT_F6,
                           a2 + LENET_ACT_C5, w2 + LENET_OFF_F6_W, 120, 84);
        squash_backward2_one(hp + LENET_ACT_C5, hd + LENET_ACT_C5, acts + LENET_ACT_C5, 120);
        dense_backward_one(hd + LENET_ACT_S4, h + LENET_OFF_C5_W, h + LENET_OFF_C5_B, hp + LENET_ACT_C5,
                           a2 + LENET_ACT_S4, w2 + LENET_OFF_C5_W, 400, 120);
        squash_backward2_one(hp + LENET_ACT_S4, hd + LENET_ACT_S4, acts + LENET_ACT_S4, 400);
        subsample_backward2_one(hd + LENET_ACT_C3, h + LENET_OFF_S4_W, h + LENET_OFF_S4_B,
                                hp + LENET_ACT_S4, acts + LENET_ACT_C3, w + LENET_OFF_S4_W, 16, 10, 10);
        squash_backward2_one(hp + LENET_ACT_C3, hd + LENET_ACT_C3, acts + LENET_ACT_C3, 1600);
        c3_backward_one(hd + LENET_ACT_S2, h + LENET_OFF_C3_W, h + LENET_OFF_C3_B, hp + LENET_ACT_C3,
                        a2 + LENET_ACT_S2, w2 + LENET_OFF_C3_W, net->c3_out, net->c3_in,
                        LENET_C3_PAIRS, 16, 14, 14);
        squash_backward2_one(hp + LENET_ACT_S2, hd + LENET_ACT_S2, acts + LENET_ACT_S2, 1176);
        subsample_backward2_one(hd + LENET_ACT_C1, h + LENET_OFF_S2_W, h + LENET_OFF_S2_B,
                                hp + LENET_ACT_S2, acts + LENET_ACT_C1, w + LENET_OFF_S2_W, 6, 28, 28);
        squash_backward2_one(hp + LENET_ACT_C1, hd + LENET_ACT_C1, acts + LENET_ACT_C1, 4704);
        conv5x5_backward_one(NULL, h + LENET_OFF_C1_W, h + LENET_OFF_C1_B, hp + LENET_ACT_C1, x2,
                             w2 + LENET_OFF_C1_W, 1, 6, 32, 32);
    }
    return LENET_OK;
}

/* ------------------------------------------------------------------------ SDLM */

size_t lenet_sdlm_workspace_size(void)
{
    return (size_t)LENET_NPARAMS + 3 * LENET_NACTS;
}

int lenet_sdlm_epoch(float *restrict params, float *restrict losses, const int32_t *restrict c3_out,
                     const int32_t *restrict c3_in, int head, const float *restrict step,
                     const float *restrict x, const int32_t *restrict labels,
                     const int64_t *restrict order, int64_t N, int64_t total,
                     float *restrict workspace, size_t workspace_floats)
{
    lenet_net net = {params, c3_out, c3_in, head};
    int st = check_net(&net);
    if (st) return st;
    if (N < 0 || total < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!step || !x || !labels || !order || !workspace) return LENET_ERR_NULL;
    if (workspace_floats < lenet_sdlm_workspace_size()) return LENET_ERR_WORKSPACE;
    for (int64_t n = 0; n < N; n++) {
        if (order[n] < 0 || order[n] >= total) return LENET_ERR_ARG;
        if (labels[order[n]] < 0 || labels[order[n]] > 9) return LENET_ERR_LABEL;
    }
    float *g = workspace, *acts = g + LENET_NPARAMS;
    float *d = acts + LENET_NACTS, *dpre = d + LENET_NACTS;
    for (int64_t n = 0; n < N; n++) {
        const int64_t i = order[n];
        memset(g, 0, LENET_NPARAMS * sizeof(float));
        net_forward_one(acts, &net, x + i * 1024);
        const float l = net_backward_one(g, d, dpre, acts, &net, x + i * 1024, labels[i], 1.0f);
        if (losses) losses[n] = l;
        for (int k = 0; k < LENET_NPARAMS; k++) params[k] -= step[k] * g[k];
    }
    return LENET_OK;
}
