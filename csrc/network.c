/*
 * The whole LeNet-5, fused image by image (portable variant) or block by block (SIMD
 * variants, simd_*.c: `lanes` images side by side in the vector lanes): every layer of an
 * image or block runs out of a per-thread buffer that stays cache resident, so a batch of
 * any size streams through bounded memory. Threads split the batch (OpenMP, outer loop
 * only); what each thread computes never depends on how many threads there are.
 */
#include <stdint.h>
#include <string.h>

#include "lenet.h"
#include "common.h"
#include "simd_api.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int check_net(const lenet_net *net)
{
    if (!net || !net->params || !net->c3_out || !net->c3_in) return LENET_ERR_NULL;
    if (net->head != LENET_HEAD_SOFTMAX && net->head != LENET_HEAD_RBF) return LENET_ERR_ARG;
    if (!lenet_isa_supported(net->isa)) return LENET_ERR_ISA;
    for (int p = 0; p < LENET_C3_PAIRS; p++) {
        if (net->c3_out[p] < 0 || net->c3_out[p] >= 16 || net->c3_in[p] < 0 || net->c3_in[p] >= 6)
            return LENET_ERR_ARG;
        if (p > 0 && net->c3_out[p] < net->c3_out[p - 1]) return LENET_ERR_ARG;
    }
    return LENET_OK;
}

/* ---- the portable whole network: one image forward and backward out of caller buffers,
 * with the one-image layer bodies of layers_impl.h (also the reference the SIMD variants
 * are tested against) */

/* geometry of the maps (lenet.h) */
#define IN_PIXELS (LENET_IN * LENET_IN)
#define C1_SIZE (LENET_C1_MAPS * LENET_C1_HW * LENET_C1_HW)
#define S2_SIZE (LENET_C1_MAPS * LENET_S2_HW * LENET_S2_HW)
#define C3_SIZE (LENET_C3_MAPS * LENET_C3_HW * LENET_C3_HW)
#define S4_SIZE (LENET_C3_MAPS * LENET_S4_HW * LENET_S4_HW)

/* One image forward: acts (LENET_NACTS,) receives every layer's output. */
static void net_forward_one(float *restrict acts,         /* (LENET_NACTS,) */
                            const lenet_net *net,
                            const float *restrict x)      /* (32, 32) */
{
    float *c1 = acts + LENET_ACT_C1, *s2 = acts + LENET_ACT_S2, *c3 = acts + LENET_ACT_C3;
    float *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5, *f6 = acts + LENET_ACT_F6;
    float *out = acts + LENET_ACT_OUT;

    conv5x5_forward_one(c1, x, net_param(net, LENET_OFF_C1_W), net_param(net, LENET_OFF_C1_B), 1,
                        LENET_C1_MAPS, LENET_IN, LENET_IN);
    squash_inplace_one(c1, C1_SIZE);
    subsample_forward_one(s2, c1, net_param(net, LENET_OFF_S2_W), net_param(net, LENET_OFF_S2_B),
                          LENET_C1_MAPS, LENET_C1_HW, LENET_C1_HW);
    squash_inplace_one(s2, S2_SIZE);
    c3_forward_one(c3, s2, net_param(net, LENET_OFF_C3_W), net_param(net, LENET_OFF_C3_B),
                   net->c3_out, net->c3_in, LENET_C3_PAIRS, LENET_C3_MAPS, LENET_S2_HW, LENET_S2_HW);
    squash_inplace_one(c3, C3_SIZE);
    subsample_forward_one(s4, c3, net_param(net, LENET_OFF_S4_W), net_param(net, LENET_OFF_S4_B),
                          LENET_C3_MAPS, LENET_C3_HW, LENET_C3_HW);
    squash_inplace_one(s4, S4_SIZE);
    /* C5 is a 5x5 convolution over 5x5 maps: one output pixel, i.e. a dense 400 -> 120 */
    dense_forward_one(c5, s4, net_param(net, LENET_OFF_C5_W), net_param(net, LENET_OFF_C5_B),
                      S4_SIZE, LENET_C5);
    squash_inplace_one(c5, LENET_C5);
    dense_forward_one(f6, c5, net_param(net, LENET_OFF_F6_W), net_param(net, LENET_OFF_F6_B),
                      LENET_C5, LENET_F6);
    squash_inplace_one(f6, LENET_F6);
    if (net->head == LENET_HEAD_RBF)
        rbf_forward_one(out, f6, net_param(net, LENET_OFF_OUT_W), LENET_F6, LENET_OUT);
    else
        dense_forward_one(out, f6, net_param(net, LENET_OFF_OUT_W), net_param(net, LENET_OFF_OUT_B),
                          LENET_F6, LENET_OUT);
}

/* One image backward. d and dpre are (LENET_NACTS,) scratch buffers (gradients wrt each
 * layer's output and pre-activation); grad (LENET_NPARAMS,) accumulates. Returns the loss. */
static float net_backward_one(float *restrict grad,       /* (LENET_NPARAMS,) += */
                              float *restrict d,          /* (LENET_NACTS,) scratch */
                              float *restrict dpre,       /* (LENET_NACTS,) scratch */
                              const float *restrict acts, /* (LENET_NACTS,) net_forward_one's */
                              const lenet_net *net,
                              const float *restrict x,    /* (32, 32) */
                              int label, float scale)
{
    const float *c1 = acts + LENET_ACT_C1, *s2 = acts + LENET_ACT_S2, *c3 = acts + LENET_ACT_C3;
    const float *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5, *f6 = acts + LENET_ACT_F6;

    memset(d, 0, LENET_NACTS * sizeof(float));
    memset(dpre, 0, LENET_NACTS * sizeof(float));
    float *dout = dpre + LENET_ACT_OUT;
    const float loss = loss_backward_one(dout, acts + LENET_ACT_OUT, label, scale, net->head);
    head_backward_one(d + LENET_ACT_F6, grad, dout, f6, net);
    squash_backward_one(dpre + LENET_ACT_F6, d + LENET_ACT_F6, f6, LENET_F6);
    dense_backward_one(d + LENET_ACT_C5, grad + LENET_OFF_F6_W, grad + LENET_OFF_F6_B,
                       dpre + LENET_ACT_F6, c5, net_param(net, LENET_OFF_F6_W), LENET_C5, LENET_F6);
    squash_backward_one(dpre + LENET_ACT_C5, d + LENET_ACT_C5, c5, LENET_C5);
    dense_backward_one(d + LENET_ACT_S4, grad + LENET_OFF_C5_W, grad + LENET_OFF_C5_B,
                       dpre + LENET_ACT_C5, s4, net_param(net, LENET_OFF_C5_W), S4_SIZE, LENET_C5);
    squash_backward_one(dpre + LENET_ACT_S4, d + LENET_ACT_S4, s4, S4_SIZE);
    subsample_backward_one(d + LENET_ACT_C3, grad + LENET_OFF_S4_W, grad + LENET_OFF_S4_B,
                           dpre + LENET_ACT_S4, c3, net_param(net, LENET_OFF_S4_W), LENET_C3_MAPS,
                           LENET_C3_HW, LENET_C3_HW);
    squash_backward_one(dpre + LENET_ACT_C3, d + LENET_ACT_C3, c3, C3_SIZE);
    c3_backward_one(d + LENET_ACT_S2, grad + LENET_OFF_C3_W, grad + LENET_OFF_C3_B,
                    dpre + LENET_ACT_C3, s2, net_param(net, LENET_OFF_C3_W), net->c3_out, net->c3_in,
                    LENET_C3_PAIRS, LENET_C3_MAPS, LENET_S2_HW, LENET_S2_HW);
    squash_backward_one(dpre + LENET_ACT_S2, d + LENET_ACT_S2, s2, S2_SIZE);
    subsample_backward_one(d + LENET_ACT_C1, grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B,
                           dpre + LENET_ACT_S2, c1, net_param(net, LENET_OFF_S2_W), LENET_C1_MAPS,
                           LENET_C1_HW, LENET_C1_HW);
    squash_backward_one(dpre + LENET_ACT_C1, d + LENET_ACT_C1, c1, C1_SIZE);
    conv5x5_backward_one(NULL, grad + LENET_OFF_C1_W, grad + LENET_OFF_C1_B, dpre + LENET_ACT_C1, x,
                         net_param(net, LENET_OFF_C1_W), 1, LENET_C1_MAPS, LENET_IN, LENET_IN);
    return loss;
}

/* ---- the portable variant behind the kernel interface of simd_api.h (lanes = 1): the
 * drivers below run every variant the same way. Scratch: acts, d, dpre (LENET_NACTS each). */
static void portable_forward_one(float *restrict out, float *restrict acts, const lenet_net *net,
                                 const float *restrict x, float *restrict ws)
{
    float *a = acts ? acts : ws;
    net_forward_one(a, net, x);
    memcpy(out, a + LENET_ACT_OUT, 10 * sizeof(float));
}

static void portable_forward_block(float *restrict out, float *restrict acts, const lenet_net *net,
                                   const float *restrict x, int n, float *restrict ws)
{
    for (int i = 0; i < n; i++)
        portable_forward_one(out + i * 10, acts ? acts + (size_t)i * LENET_NACTS : NULL, net,
                             x + (size_t)i * 1024, ws);
}

static void portable_grad_block(float *restrict grad, float *restrict losses, float *restrict out,
                                const lenet_net *net, const float *restrict x,
                                const int32_t *restrict labels, float scale, int n,
                                float *restrict ws)
{
    float *acts = ws, *d = acts + LENET_NACTS, *dpre = d + LENET_NACTS;
    for (int i = 0; i < n; i++) {
        net_forward_one(acts, net, x + (size_t)i * 1024);
        const float l = net_backward_one(grad, d, dpre, acts, net, x + (size_t)i * 1024, labels[i], scale);
        if (losses) losses[i] = l;
        if (out) memcpy(out + i * 10, acts + LENET_ACT_OUT, 10 * sizeof(float));
    }
}

static void portable_squash(float *out, const float *in, int64_t n)
{
    (void)lenet_squash_forward(out, in, n);   /* arguments checked by the caller */
}

static void portable_sgd_update(float *restrict p, float *restrict v, const float *restrict g,
                                const uint8_t *restrict mask, float lr, float momentum,
                                float decay, int64_t n)
{
    (void)lenet_sgd_update(p, v, g, mask, lr, momentum, decay, n);
}

static float portable_sdlm_sample(float *params, const float *restrict step, float *restrict grad,
                                  const lenet_net *net, const float *restrict x, int label,
                                  float *restrict ws)
{
    float *acts = ws, *d = acts + LENET_NACTS, *dpre = d + LENET_NACTS;
    net_forward_one(acts, net, x);
    const float l = net_backward_one(grad, d, dpre, acts, net, x, label, 1.0f);
    for (int j = 0; j < LENET_NPARAMS; j++) {  /* the update, and grad zeroed for the next sample */
        params[j] -= step[j] * grad[j];
        grad[j] = 0.0f;
    }
    return l;
}

const lenet_kernels lenet_kernels_portable = {
    .lanes = 1,
    .ws_floats = 3 * LENET_NACTS,
    .forward_one = portable_forward_one,
    .forward_block = portable_forward_block,
    .grad_block = portable_grad_block,
    .squash = portable_squash,
    .sgd_update = portable_sgd_update,
    .sdlm_sample = portable_sdlm_sample,
};

/* Per-thread scratch of the kernels, largest over the variants built, plus room to align
 * its start to 64 bytes (callers' buffers are only float aligned). */
#define ALIGN_SLACK 16
static size_t simd_thread_floats(void)
{
    size_t m = 0;
    for (int isa = 0; isa < LENET_NISA; isa++) {
        const lenet_kernels *k = lenet_kernels_for(isa);
        if (k && k->ws_floats + ALIGN_SLACK > m) m = k->ws_floats + ALIGN_SLACK;
    }
    return m;
}

static float *align64(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Per-chunk gradient partial sums: each a (NPARAMS,) frame whose C5 weights (the largest
 * block, read and written whole rows at a time by the dense kernels) begin on a 64-byte
 * line; frames are GRAD_STRIDE floats apart so every one is placed the same way. */
#define GRAD_STRIDE ((LENET_NPARAMS + 15) & ~15)
static float *grad_frames(float *p)
{
    return align64(p + LENET_OFF_C5_W) - LENET_OFF_C5_W;
}

/* 1 if every value is finite with |x| < 2^LENET_MAX_INPUT_LOG2 (read from the exponent
 * bits, so NaN and infinities fail too). Larger inputs would overflow float32 inside the
 * network (C1 sums, the Gauss-Newton x^2) and give a silently wrong answer. */
static int all_finite(const float *restrict x, int64_t n)
{
    const uint32_t *u = (const uint32_t *)x;
    const uint32_t limit = (uint32_t)(127 + LENET_MAX_INPUT_LOG2) << 23;
    uint32_t bad = 0;
    for (int64_t k = 0; k < n; k++) bad |= (uint32_t)((u[k] & 0x7f800000u) >= limit);
    return !bad;
}

int lenet_squash_forward_isa(float *out, const float *in, int64_t n, int isa)
{
    if (!lenet_isa_supported(isa)) return LENET_ERR_ISA;
    if (n < 0) return LENET_ERR_SIZE;
    if (n == 0) return LENET_OK;
    if (!out || !in) return LENET_ERR_NULL;
    lenet_kernels_for(isa)->squash(out, in, n);
    return LENET_OK;
}

int lenet_sgd_update_isa(float *restrict p, float *restrict v, const float *restrict g,
                         const uint8_t *restrict mask, float lr, float momentum, float decay,
                         int64_t n, int isa)
{
    if (!lenet_isa_supported(isa)) return LENET_ERR_ISA;
    if (n < 0) return LENET_ERR_SIZE;
    if (n == 0) return LENET_OK;
    if (!p || !v || !g || !mask) return LENET_ERR_NULL;
    lenet_kernels_for(isa)->sgd_update(p, v, g, mask, lr, momentum, decay, n);
    return LENET_OK;
}

/* ------------------------------------------------------------------------ forward */

size_t lenet_forward_workspace_size(int nthreads)
{
    return (size_t)lenet_clamp_threads(nthreads) * simd_thread_floats();
}

/* Work item `it` of a forward: the full blocks of `lanes` images first, then the leftover
 * images one by one (forward_one; the same arithmetic, so an image's result does not
 * depend on where it is). 1 if its input is not finite (then nothing is written). */
static int forward_item(const lenet_kernels *k, float *restrict out, float *restrict acts,
                        const lenet_net *net, const float *restrict x, int64_t nblocks, int64_t it,
                        int check_finite, float *restrict ws)
{
    const int L = k->lanes;
    const int64_t lo = it < nblocks ? it * L : nblocks * L + (it - nblocks);
    const int n = it < nblocks ? L : 1;
    if (check_finite && !all_finite(x + lo * 1024, (int64_t)n * 1024)) return 1;
    float *a = acts ? acts + lo * LENET_NACTS : NULL;
    if (n == L)
        k->forward_block(out + lo * 10, a, net, x + lo * 1024, n, ws);
    else
        k->forward_one(out + lo * 10, a, net, x + lo * 1024, ws);
    return 0;
}

int lenet_forward_checked(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, int64_t N, int nthreads, int check_finite,
                          float *restrict workspace, size_t workspace_floats)
{
    int st = check_net(net);
    if (st) return st;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!out || !x || !workspace) return LENET_ERR_NULL;
    nthreads = lenet_clamp_threads(nthreads);
    const lenet_kernels *k = lenet_kernels_for(net->isa);
    const int L = k->lanes;
    const int64_t nblocks = N / L, items = nblocks + N % L;
    if ((int64_t)nthreads > items) nthreads = (int)items;
    const size_t per = simd_thread_floats();
    if (workspace_floats < (size_t)nthreads * per) return LENET_ERR_WORKSPACE;
    int bad = 0;
    if (nthreads == 1) {
        /* no parallel region at all: a one-thread region still costs the OpenMP runtime's
         * team start (measurable against a single image's ~10 us) */
        float *ws = align64(workspace);
        for (int64_t it = 0; it < items; it++)
            bad |= forward_item(k, out, acts, net, x, nblocks, it, check_finite, ws);
        return bad ? LENET_ERR_NONFINITE : LENET_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) reduction(|: bad)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *ws = align64(workspace + (size_t)t * per);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int64_t it = 0; it < items; it++)
            bad |= forward_item(k, out, acts, net, x, nblocks, it, check_finite, ws);
    }
    return bad ? LENET_ERR_NONFINITE : LENET_OK;
}

int lenet_forward(float *restrict out, float *restrict acts, const lenet_net *net,
                  const float *restrict x, int64_t N, int nthreads,
                  float *restrict workspace, size_t workspace_floats)
{
    return lenet_forward_checked(out, acts, net, x, N, nthreads, 0, workspace, workspace_floats);
}

/* ------------------------------------------------------------------------ gradients */

#define LENET_MAX_GRAD_CHUNKS 8

/* Gradients are summed in G partial sums, each over a fixed run of whole blocks of
 * `lanes` images (lanes = 1 for the portable variant), then the partial sums are added in
 * order: the result depends on N and the variant, never on the thread count. */
static int grad_chunks(int64_t N, int lanes)
{
    if (N <= 0) return 0;
    /* portable: one image per chunk up to 8; SIMD: two blocks per chunk up to 8 (each chunk
     * costs a zeroed and a summed copy of the gradient, 243 KB) */
    const int64_t blocks = lanes == 1 ? N : (N + 2 * lanes - 1) / (2 * lanes);
    return blocks < LENET_MAX_GRAD_CHUNKS ? (int)blocks : LENET_MAX_GRAD_CHUNKS;
}

int lenet_grad_chunks(int64_t N)
{
    return grad_chunks(N, 1);  /* the most any variant uses */
}

size_t lenet_grad_workspace_size(int64_t N, int nthreads)
{
    return (size_t)lenet_grad_chunks(N) * GRAD_STRIDE + 16 + (size_t)lenet_clamp_threads(nthreads) * simd_thread_floats();
}

/* The SGD update applied by lenet_sgd_train_step as each tile of the gradient is summed */
typedef struct {
    float *params, *velocity;
    const uint8_t *mask;
    float lr, momentum, decay;
} sgd_fused;

static int loss_grad(float *restrict grad, const sgd_fused *upd, float *restrict losses,
                     float *restrict out, const lenet_net *net, const float *restrict x,
                     const int32_t *restrict labels, float scale, int64_t N, int nthreads,
                     float *restrict workspace, size_t workspace_floats)
{
    int st = check_net(net);
    if (st) return st;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if ((!grad && !upd) || !x || !labels || !workspace) return LENET_ERR_NULL;
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] > 9) return LENET_ERR_LABEL;
    nthreads = lenet_clamp_threads(nthreads);
    if (workspace_floats < lenet_grad_workspace_size(N, nthreads)) return LENET_ERR_WORKSPACE;

    const lenet_kernels *k = lenet_kernels_for(net->isa);
    const int L = k->lanes;
    const int64_t blocks = (N + L - 1) / L;
    const int G = grad_chunks(N, L);  /* chunk g: blocks [blocks g / G, blocks (g + 1) / G) */
    const size_t per = simd_thread_floats();
    float *partial = grad_frames(workspace);
    float *scratch = workspace + (size_t)lenet_grad_chunks(N) * GRAD_STRIDE + 16;
    if (nthreads > G) nthreads = G;
#ifdef _OPENMP
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *ws = align64(scratch + (size_t)t * per);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (int g = 0; g < G; g++) {
            float *gg = partial + (size_t)g * GRAD_STRIDE;
            memset(gg, 0, LENET_NPARAMS * sizeof(float));
            const int64_t blo = blocks * g / G, bhi = blocks * (g + 1) / G;
            for (int64_t b = blo; b < bhi; b++) {
                const int64_t lo = b * L;
                const int n = (int)(N - lo < L ? N - lo : L);
                k->grad_block(gg, losses ? losses + lo : NULL, out ? out + lo * 10 : NULL, net,
                              x + lo * 1024, labels + lo, scale, n, ws);
            }
        }
        /* grad[i] += ((0 + partial_0[i]) + partial_1[i]) + ..., in tiles (contiguous loops
         * the compiler vectorises) */
#define RED_TILE 512
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t i0 = 0; i0 < LENET_NPARAMS; i0 += RED_TILE) {
            const int n = LENET_NPARAMS - i0 < RED_TILE ? (int)(LENET_NPARAMS - i0) : RED_TILE;
            float s[RED_TILE];
            for (int j = 0; j < n; j++) s[j] = 0.0f;
            for (int g = 0; g < G; g++) {
                const float *restrict pg = partial + (size_t)g * GRAD_STRIDE + i0;
                for (int j = 0; j < n; j++) s[j] += pg[j];
            }
            if (!upd) {
                for (int j = 0; j < n; j++) grad[i0 + j] += s[j];
                continue;
            }
            /* the variant's sgd_update on this slice: s is what a zeroed grad would hold
             * (0 + s == s: a sum started at +0 is never -0), so the same bits */
            k->sgd_update(upd->params + i0, upd->velocity + i0, s, upd->mask + i0, upd->lr,
                          upd->momentum, upd->decay, n);
        }
    }
    return LENET_OK;
}

int lenet_loss_grad(float *restrict grad, float *restrict losses, float *restrict out,
                    const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                    float scale, int64_t N, int nthreads, float *restrict workspace,
                    size_t workspace_floats)
{
    if (!grad) return LENET_ERR_NULL;
    return loss_grad(grad, NULL, losses, out, net, x, labels, scale, N, nthreads, workspace,
                     workspace_floats);
}

int lenet_sgd_train_step(float *params, float *restrict velocity, float *restrict losses,
                         float *restrict out, const uint8_t *restrict mask, float lr,
                         float momentum, float decay, const lenet_net *net, const float *restrict x,
                         const int32_t *restrict labels, float scale, int64_t N, int nthreads,
                         float *restrict workspace, size_t workspace_floats)
{
    if (!params || !velocity || !mask || !net) return LENET_ERR_NULL;
    if (params != net->params) return LENET_ERR_ARG;
    const sgd_fused upd = {params, velocity, mask, lr, momentum, decay};
    return loss_grad(NULL, &upd, losses, out, net, x, labels, scale, N, nthreads, workspace,
                     workspace_floats);
}

/* ------------------------------------------------------------------------ Gauss-Newton */

/* workspace: squared parameters, squared activations + input, acts, h, hpre, then the
 * kernels' scratch (their forward_one fills acts) */
size_t lenet_hessian_workspace_size(void)
{
    return (size_t)LENET_NPARAMS + (LENET_NACTS + 1024) + 3 * LENET_NACTS + simd_thread_floats();
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

    const lenet_kernels *k = lenet_kernels_for(net->isa);
    float *w2 = workspace;                      /* (NPARAMS,) squared weights */
    float *a2 = w2 + LENET_NPARAMS;             /* (NACTS + 1024,) squared acts, then input */
    float *acts = a2 + LENET_NACTS + 1024;      /* (NACTS,) */
    float *hd = acts + LENET_NACTS;             /* (NACTS,) wrt layer outputs */
    float *hp = hd + LENET_NACTS;               /* (NACTS,) wrt pre-activations */
    float *kws = align64(hp + LENET_NACTS);     /* the kernels' scratch */
    float *x2 = a2 + LENET_NACTS;
    const float *w = net->params;
    for (int i = 0; i < LENET_NPARAMS; i++) w2[i] = w[i] * w[i];

    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * 1024;
        float o[10];
        k->forward_one(o, acts, net, xn, kws);
        for (int i = 0; i < LENET_NACTS; i++) a2[i] = acts[i] * acts[i];
        for (int i = 0; i < 1024; i++) x2[i] = xn[i] * xn[i];
        memset(hd, 0, 2 * LENET_NACTS * sizeof(float));
        const float *f6 = acts + LENET_ACT_F6, *y = acts + LENET_ACT_OUT;
        float *hout = hp + LENET_ACT_OUT;
        if (net->head == LENET_HEAD_RBF) {
            /* q_i = exp(-y_i) / (exp(-j) + sum exp(-y)); GN: h_y = q (1 - q);
             * h_x_j = 2 (the y_label term) + sum_i h_y_i (2 (x_j - w_ij))^2 */
            const double lse = rbf_lse(y, LENET_RBF_J, 10);
            const float *proto = w + LENET_OFF_OUT_W;
            for (int i = 0; i < 10; i++) {
                const double q = exp(-y[i] - lse);
                hout[i] = (float)(q * (1.0 - q));
            }
            for (int j = 0; j < 84; j++) {
                float s = 2.0f;
                for (int i = 0; i < 10; i++) {
                    const float e = 2.0f * (f6[j] - proto[i * 84 + j]);
                    s += hout[i] * e * e;
                }
                hd[LENET_ACT_F6 + j] = scale * s;
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
    return (size_t)LENET_NPARAMS + simd_thread_floats();
}

int lenet_sdlm_epoch(float *restrict params, float *restrict losses, const int32_t *restrict c3_out,
                     const int32_t *restrict c3_in, int head, int isa, const float *restrict step,
                     const float *restrict x, const int32_t *restrict labels,
                     const int64_t *restrict order, int64_t N, int64_t total,
                     float *restrict workspace, size_t workspace_floats)
{
    lenet_net net = {params, c3_out, c3_in, head, isa};
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
    const lenet_kernels *k = lenet_kernels_for(isa);
    float *g = workspace, *kws = align64(g + LENET_NPARAMS);
    memset(g, 0, LENET_NPARAMS * sizeof(float));
    for (int64_t n = 0; n < N; n++) {
        const int64_t i = order[n];
        const float l = k->sdlm_sample(params, step, g, &net, x + i * 1024, labels[i], kws);
        if (losses) losses[n] = l;
    }
    return LENET_OK;
}
