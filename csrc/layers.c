/*
 * LeNet-5 layer kernels, portable C99. See lenet.h for the conventions.
 *
 * Each batched kernel loops over images and calls a *_one helper that does one image;
 * the network code (network.c) calls the *_one helpers directly on per-thread buffers.
 * Reductions use a fixed number of partial sums (LANES), so results do not depend on
 * the thread count or on how the compiler vectorises.
 */
#include <math.h>
#include <string.h>

#include "lenet.h"
#include "layers_impl.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define CHECK(cond, code) do { if (!(cond)) return (code); } while (0)

/* ------------------------------------------------------------------ convolution (dense) */

int lenet_conv5x5_forward(float *restrict out, const float *restrict in, const float *restrict w,
                          const float *restrict b, int64_t N, int C, int M, int H, int W, int nthreads)
{
    CHECK(N >= 0 && C > 0 && M > 0 && H >= LENET_K && W >= LENET_K, LENET_ERR_SIZE);
    CHECK(N == 0 || (out && in && w && b), LENET_ERR_NULL);
    const int64_t isz = (int64_t)C * H * W, osz = (int64_t)M * (H - 4) * (W - 4);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && N > 1)
#endif
    for (int64_t n = 0; n < N; n++)
        conv5x5_forward_one(out + n * osz, in + n * isz, w, b, C, M, H, W);
    return LENET_OK;
}

int lenet_conv5x5_backward(float *restrict din, float *restrict dw, float *restrict db,
                           const float *restrict dout, const float *restrict in, const float *restrict w,
                           int64_t N, int C, int M, int H, int W)
{
    CHECK(N >= 0 && C > 0 && M > 0 && H >= LENET_K && W >= LENET_K, LENET_ERR_SIZE);
    CHECK(N == 0 || (dw && db && dout && in && w), LENET_ERR_NULL);
    const int64_t isz = (int64_t)C * H * W, osz = (int64_t)M * (H - 4) * (W - 4);
    for (int64_t n = 0; n < N; n++)
        conv5x5_backward_one(din ? din + n * isz : NULL, dw, db, dout + n * osz, in + n * isz, w,
                             C, M, H, W);
    return LENET_OK;
}

/* ------------------------------------------------------------------ sparse C3 */

static int check_pairs(const int32_t *pout, const int32_t *pin, int P, int C, int M)
{
    for (int p = 0; p < P; p++) {
        if (pout[p] < 0 || pout[p] >= M || pin[p] < 0 || pin[p] >= C) return LENET_ERR_ARG;
        if (p > 0 && pout[p] < pout[p - 1]) return LENET_ERR_ARG;
    }
    return LENET_OK;
}

int lenet_c3_forward(float *restrict out, const float *restrict in, const float *restrict w,
                     const float *restrict b, const int32_t *restrict pout, const int32_t *restrict pin,
                     int P, int64_t N, int C, int M, int H, int W, int nthreads)
{
    CHECK(P >= 0 && N >= 0 && C > 0 && M > 0 && H >= LENET_K && W >= LENET_K, LENET_ERR_SIZE);
    CHECK(N == 0 || (out && in && w && b && (P == 0 || (pout && pin))), LENET_ERR_NULL);
    int st = check_pairs(pout, pin, P, C, M);
    if (st) return st;
    const int64_t isz = (int64_t)C * H * W, osz = (int64_t)M * (H - 4) * (W - 4);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && N > 1)
#endif
    for (int64_t n = 0; n < N; n++)
        c3_forward_one(out + n * osz, in + n * isz, w, b, pout, pin, P, M, H, W);
    return LENET_OK;
}

int lenet_c3_backward(float *restrict din, float *restrict dw, float *restrict db,
                      const float *restrict dout, const float *restrict in, const float *restrict w,
                      const int32_t *restrict pout, const int32_t *restrict pin,
                      int P, int64_t N, int C, int M, int H, int W)
{
    CHECK(P >= 0 && N >= 0 && C > 0 && M > 0 && H >= LENET_K && W >= LENET_K, LENET_ERR_SIZE);
    CHECK(N == 0 || (dw && db && dout && in && w && (P == 0 || (pout && pin))), LENET_ERR_NULL);
    int st = check_pairs(pout, pin, P, C, M);
    if (st) return st;
    const int64_t isz = (int64_t)C * H * W, osz = (int64_t)M * (H - 4) * (W - 4);
    for (int64_t n = 0; n < N; n++)
        c3_backward_one(din ? din + n * isz : NULL, dw, db, dout + n * osz, in + n * isz, w,
                        pout, pin, P, M, H, W);
    return LENET_OK;
}

/* ------------------------------------------------------------------ subsampling */

int lenet_subsample_forward(float *restrict out, const float *restrict in, const float *restrict coef,
                            const float *restrict bias, int64_t N, int C, int H, int W, int nthreads)
{
    CHECK(N >= 0 && C > 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (out && in && coef && bias), LENET_ERR_NULL);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && N > 1)
#endif
    for (int64_t n = 0; n < N; n++)
        subsample_forward_one(out + n * C * (H / 2) * (W / 2), in + n * C * H * W, coef, bias, C, H, W);
    return LENET_OK;
}

int lenet_subsample_backward(float *restrict din, float *restrict dcoef, float *restrict dbias,
                             const float *restrict dout, const float *restrict in,
                             const float *restrict coef, int64_t N, int C, int H, int W)
{
    CHECK(N >= 0 && C > 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (dcoef && dbias && dout && in && coef), LENET_ERR_NULL);
    for (int64_t n = 0; n < N; n++)
        subsample_backward_one(din ? din + n * C * H * W : NULL, dcoef, dbias,
                               dout + n * C * (H / 2) * (W / 2), in + n * C * H * W, coef, C, H, W);
    return LENET_OK;
}

int lenet_subsample_backward2(float *restrict hin, float *restrict hcoef, float *restrict hbias,
                              const float *restrict hout, const float *restrict in,
                              const float *restrict coef, int64_t N, int C, int H, int W)
{
    CHECK(N >= 0 && C > 0 && H >= 2 && W >= 2 && H % 2 == 0 && W % 2 == 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (hcoef && hbias && hout && in && coef), LENET_ERR_NULL);
    for (int64_t n = 0; n < N; n++)
        subsample_backward2_one(hin ? hin + n * C * H * W : NULL, hcoef, hbias,
                                hout + n * C * (H / 2) * (W / 2), in + n * C * H * W, coef, C, H, W);
    return LENET_OK;
}

/* ------------------------------------------------------------------ squashing */

int lenet_squash_forward(float *out, const float *in, int64_t n)
{
    CHECK(n >= 0, LENET_ERR_SIZE);
    CHECK(n == 0 || (out && in), LENET_ERR_NULL);
    if (out == in) squash_inplace_one(out, n);
    else squash_forward_one(out, in, n);
    return LENET_OK;
}

int lenet_squash_backward(float *restrict din, const float *restrict dout, const float *restrict out,
                          int64_t n)
{
    CHECK(n >= 0, LENET_ERR_SIZE);
    CHECK(n == 0 || (din && dout && out), LENET_ERR_NULL);
    squash_backward_one(din, dout, out, n);
    return LENET_OK;
}

int lenet_squash_backward2(float *restrict hin, const float *restrict hout, const float *restrict out,
                           int64_t n)
{
    CHECK(n >= 0, LENET_ERR_SIZE);
    CHECK(n == 0 || (hin && hout && out), LENET_ERR_NULL);
    squash_backward2_one(hin, hout, out, n);
    return LENET_OK;
}

/* ------------------------------------------------------------------ dense */

int lenet_dense_forward(float *restrict out, const float *restrict in, const float *restrict w,
                        const float *restrict b, int64_t N, int K, int M, int nthreads)
{
    CHECK(N >= 0 && K > 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (out && in && w), LENET_ERR_NULL);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && N > 1)
#endif
    for (int64_t n = 0; n < N; n++)
        dense_forward_one(out + n * M, in + n * K, w, b, K, M);
    return LENET_OK;
}

int lenet_dense_backward(float *restrict din, float *restrict dw, float *restrict db,
                         const float *restrict dout, const float *restrict in, const float *restrict w,
                         int64_t N, int K, int M)
{
    CHECK(N >= 0 && K > 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (dw && dout && in && w), LENET_ERR_NULL);
    for (int64_t n = 0; n < N; n++)
        dense_backward_one(din ? din + n * K : NULL, dw, db, dout + n * M, in + n * K, w, K, M);
    return LENET_OK;
}

/* ------------------------------------------------------------------ RBF output */

int lenet_rbf_forward(float *restrict out, const float *restrict in, const float *restrict proto,
                      int64_t N, int K, int M, int nthreads)
{
    CHECK(N >= 0 && K > 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (out && in && proto), LENET_ERR_NULL);
    (void)nthreads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1 && N > 1)
#endif
    for (int64_t n = 0; n < N; n++)
        rbf_forward_one(out + n * M, in + n * K, proto, K, M);
    return LENET_OK;
}

int lenet_rbf_backward(float *restrict din, const float *restrict dout, const float *restrict in,
                       const float *restrict proto, int64_t N, int K, int M)
{
    CHECK(N >= 0 && K > 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (din && dout && in && proto), LENET_ERR_NULL);
    for (int64_t n = 0; n < N; n++)
        rbf_backward_one(din + n * K, dout + n * M, in + n * K, proto, K, M);
    return LENET_OK;
}

/* ------------------------------------------------------------------ softmax and losses */

int lenet_softmax_forward(float *restrict probs, const float *restrict in, float sign, int64_t N, int M)
{
    CHECK(N >= 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (probs && in), LENET_ERR_NULL);
    for (int64_t n = 0; n < N; n++) softmax_one(probs + n * M, in + n * M, sign, M);
    return LENET_OK;
}

static int check_labels(const int32_t *labels, int64_t N, int M)
{
    for (int64_t n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= M) return LENET_ERR_LABEL;
    return LENET_OK;
}

int lenet_xent_forward(float *restrict losses, const float *restrict logits,
                       const int32_t *restrict labels, int64_t N, int M)
{
    CHECK(N >= 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (losses && logits && labels), LENET_ERR_NULL);
    int st = check_labels(labels, N, M);
    if (st) return st;
    for (int64_t n = 0; n < N; n++) losses[n] = xent_loss_one(logits + n * M, labels[n], M);
    return LENET_OK;
}

int lenet_xent_backward(float *restrict dlogits, const float *restrict logits,
                        const int32_t *restrict labels, float scale, int64_t N, int M)
{
    CHECK(N >= 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (dlogits && logits && labels), LENET_ERR_NULL);
    int st = check_labels(labels, N, M);
    if (st) return st;
    for (int64_t n = 0; n < N; n++)
        xent_backward_one(dlogits + n * M, logits + n * M, labels[n], scale, M);
    return LENET_OK;
}

int lenet_rbfloss_forward(float *restrict losses, const float *restrict y,
                          const int32_t *restrict labels, float j, int64_t N, int M)
{
    CHECK(N >= 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (losses && y && labels), LENET_ERR_NULL);
    int st = check_labels(labels, N, M);
    if (st) return st;
    for (int64_t n = 0; n < N; n++) losses[n] = rbfloss_one(y + n * M, labels[n], j, M);
    return LENET_OK;
}

int lenet_rbfloss_backward(float *restrict dy, const float *restrict y, const int32_t *restrict labels,
                           float j, float scale, int64_t N, int M)
{
    CHECK(N >= 0 && M > 0, LENET_ERR_SIZE);
    CHECK(N == 0 || (dy && y && labels), LENET_ERR_NULL);
    int st = check_labels(labels, N, M);
    if (st) return st;
    for (int64_t n = 0; n < N; n++)
        rbfloss_backward_one(dy + n * M, y + n * M, labels[n], j, scale, M);
    return LENET_OK;
}

/* ------------------------------------------------------------------ optimiser */

int lenet_sgd_update(float *restrict p, float *restrict v, const float *restrict g,
                     const uint8_t *restrict mask, float lr, float momentum, float decay, int64_t n)
{
    CHECK(n >= 0, LENET_ERR_SIZE);
    CHECK(n == 0 || (p && v && g && mask), LENET_ERR_NULL);
    /* branch-free (both results computed, the mask selects) so that the loop vectorises;
     * where mask is 1 the arithmetic is exactly the obvious one */
    for (int64_t k = 0; k < n; k++) {
        const float vn = momentum * v[k] + (g[k] + decay * p[k]);
        const float pn = p[k] - lr * vn;
        v[k] = mask[k] ? vn : v[k];
        p[k] = mask[k] ? pn : p[k];
    }
    return LENET_OK;
}
