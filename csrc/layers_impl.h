/*
 * One-image layer bodies, shared by the batched entry points (layers.c) and the fused
 * network (network.c). Internal header: static inline functions only, no state.
 */
#ifndef LENET_LAYERS_IMPL_H
#define LENET_LAYERS_IMPL_H

#include <math.h>
#include <stdint.h>
#include "lenet.h"

/* partial sums per reduction: fixed, so results do not depend on vector width */
#define LENET_LANES 16

static inline float dotf(const float *restrict a, const float *restrict b, int n)
{
    float acc[LENET_LANES] = {0};
    int k = 0;
    for (; k + LENET_LANES <= n; k += LENET_LANES)
        for (int l = 0; l < LENET_LANES; l++) acc[l] += a[k + l] * b[k + l];
    float s = 0.0f;
    for (; k < n; k++) s += a[k] * b[k];
    for (int l = 0; l < LENET_LANES; l++) s += acc[l];
    return s;
}

static inline float sumf(const float *restrict a, int n)
{
    float acc[LENET_LANES] = {0};
    int k = 0;
    for (; k + LENET_LANES <= n; k += LENET_LANES)
        for (int l = 0; l < LENET_LANES; l++) acc[l] += a[k + l];
    float s = 0.0f;
    for (; k < n; k++) s += a[k];
    for (int l = 0; l < LENET_LANES; l++) s += acc[l];
    return s;
}

/* ---- 5x5 valid cross-correlation of one plane, accumulated into o ---- */
static inline void conv_acc_plane(float *restrict o,        /* (H-4, W-4) += */
                                  const float *restrict ip, /* (H, W) */
                                  const float *restrict wp, /* (5, 5) */
                                  int H, int W)
{
    const int Ho = H - 4, Wo = W - 4;
    for (int i = 0; i < Ho; i++) {
        float *restrict orow = o + (int64_t)i * Wo;
        for (int ki = 0; ki < 5; ki++) {
            const float *restrict irow = ip + (int64_t)(i + ki) * W;
            for (int kj = 0; kj < 5; kj++) {
                const float wv = wp[ki * 5 + kj];
                for (int j = 0; j < Wo; j++) orow[j] += wv * irow[j + kj];
            }
        }
    }
}

/* gradients of one plane pair: dwp += corr(ip, d), dip += full-conv(d, wp) */
static inline void conv_backward_plane(float *restrict dip,     /* (H, W) += or NULL */
                                       float *restrict dwp,     /* (5, 5) += */
                                       const float *restrict d, /* (H-4, W-4) */
                                       const float *restrict ip,/* (H, W) */
                                       const float *restrict wp,/* (5, 5) */
                                       int H, int W)
{
    const int Ho = H - 4, Wo = W - 4;
    for (int ki = 0; ki < 5; ki++)
        for (int kj = 0; kj < 5; kj++) {
            float s = 0.0f;
            for (int i = 0; i < Ho; i++)
                s += dotf(d + (int64_t)i * Wo, ip + (int64_t)(i + ki) * W + kj, Wo);
            dwp[ki * 5 + kj] += s;
        }
    if (!dip) return;
    for (int i = 0; i < Ho; i++) {
        const float *restrict drow = d + (int64_t)i * Wo;
        for (int ki = 0; ki < 5; ki++) {
            float *restrict irow = dip + (int64_t)(i + ki) * W;
            for (int kj = 0; kj < 5; kj++) {
                const float wv = wp[ki * 5 + kj];
                for (int j = 0; j < Wo; j++) irow[j + kj] += wv * drow[j];
            }
        }
    }
}

static inline void conv5x5_forward_one(float *restrict out, const float *restrict in,
                                       const float *restrict w, const float *restrict b,
                                       int C, int M, int H, int W)
{
    const int64_t osz = (int64_t)(H - 4) * (W - 4), isz = (int64_t)H * W;
    for (int m = 0; m < M; m++) {
        float *restrict o = out + m * osz;
        for (int64_t k = 0; k < osz; k++) o[k] = b[m];
        for (int c = 0; c < C; c++) conv_acc_plane(o, in + c * isz, w + ((int64_t)m * C + c) * 25, H, W);
    }
}

static inline void conv5x5_backward_one(float *restrict din, float *restrict dw, float *restrict db,
                                        const float *restrict dout, const float *restrict in,
                                        const float *restrict w, int C, int M, int H, int W)
{
    const int64_t osz = (int64_t)(H - 4) * (W - 4), isz = (int64_t)H * W;
    for (int m = 0; m < M; m++) {
        db[m] += sumf(dout + m * osz, (int)osz);
        for (int c = 0; c < C; c++)
            conv_backward_plane(din ? din + c * isz : NULL, dw + ((int64_t)m * C + c) * 25,
                                dout + m * osz, in + c * isz, w + ((int64_t)m * C + c) * 25, H, W);
    }
}

/* ---- sparse C3: only the listed (out, in) pairs, weights packed in pair order ---- */
static inline void c3_forward_one(float *restrict out, const float *restrict in,
                                  const float *restrict w, const float *restrict b,
                                  const int32_t *restrict pout, const int32_t *restrict pin,
                                  int P, int M, int H, int W)
{
    const int64_t osz = (int64_t)(H - 4) * (W - 4), isz = (int64_t)H * W;
    for (int m = 0; m < M; m++)
        for (int64_t k = 0; k < osz; k++) out[m * osz + k] = b[m];
    for (int p = 0; p < P; p++)
        conv_acc_plane(out + pout[p] * osz, in + pin[p] * isz, w + (int64_t)p * 25, H, W);
}

static inline void c3_backward_one(float *restrict din, float *restrict dw, float *restrict db,
                                   const float *restrict dout, const float *restrict in,
                                   const float *restrict w, const int32_t *restrict pout,
                                   const int32_t *restrict pin, int P, int M, int H, int W)
{
    const int64_t osz = (int64_t)(H - 4) * (W - 4), isz = (int64_t)H * W;
    for (int m = 0; m < M; m++) db[m] += sumf(dout + m * osz, (int)osz);
    for (int p = 0; p < P; p++)
        conv_backward_plane(din ? din + pin[p] * isz : NULL, dw + (int64_t)p * 25,
                            dout + pout[p] * osz, in + pin[p] * isz, w + (int64_t)p * 25, H, W);
}

/* ---- trainable 2x2 subsampling ---- */
static inline void subsample_forward_one(float *restrict out, const float *restrict in,
                                         const float *restrict coef, const float *restrict bias,
                                         int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const float *restrict ip = in + (int64_t)c * H * W;
        float *restrict op = out + (int64_t)c * Ho * Wo;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                const float *r = ip + (int64_t)(2 * i) * W + 2 * j;
                op[i * Wo + j] = coef[c] * ((r[0] + r[1]) + (r[W] + r[W + 1])) + bias[c];
            }
    }
}

static inline void subsample_backward_one(float *restrict din, float *restrict dcoef,
                                          float *restrict dbias, const float *restrict dout,
                                          const float *restrict in, const float *restrict coef,
                                          int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const float *restrict ip = in + (int64_t)c * H * W;
        const float *restrict dp = dout + (int64_t)c * Ho * Wo;
        float sc = 0.0f, sb = 0.0f;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                const float *r = ip + (int64_t)(2 * i) * W + 2 * j;
                const float d = dp[i * Wo + j];
                sc += d * ((r[0] + r[1]) + (r[W] + r[W + 1]));
                sb += d;
                if (din) {
                    float *q = din + (int64_t)c * H * W + (int64_t)(2 * i) * W + 2 * j;
                    const float g = coef[c] * d;
                    q[0] += g; q[1] += g; q[W] += g; q[W + 1] += g;
                }
            }
        dcoef[c] += sc;
        dbias[c] += sb;
    }
}

static inline void subsample_backward2_one(float *restrict hin, float *restrict hcoef,
                                           float *restrict hbias, const float *restrict hout,
                                           const float *restrict in, const float *restrict coef,
                                           int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const float *restrict ip = in + (int64_t)c * H * W;
        const float *restrict hp = hout + (int64_t)c * Ho * Wo;
        float sc = 0.0f, sb = 0.0f;
        for (int i = 0; i < Ho; i++)
            for (int j = 0; j < Wo; j++) {
                const float *r = ip + (int64_t)(2 * i) * W + 2 * j;
                const float s = (r[0] + r[1]) + (r[W] + r[W + 1]);
                const float h = hp[i * Wo + j];
                sc += h * s * s;
                sb += h;
                if (hin) {
                    float *q = hin + (int64_t)c * H * W + (int64_t)(2 * i) * W + 2 * j;
                    const float g = coef[c] * coef[c] * h;
                    q[0] += g; q[1] += g; q[W] += g; q[W + 1] += g;
                }
            }
        hcoef[c] += sc;
        hbias[c] += sb;
    }
}

/* ---- squashing f(a) = A tanh(S a) ----
 * tanh in single precision, branch-free so that it vectorises (Cephes tanhf):
 *   |z| <= 0.625: odd polynomial z + z^3 P(z^2);
 *   |z| >  0.625: 1 - 2 / (exp(2|z|) + 1), exp by Cephes expf (range reduction
 *                 2|z| = n ln2 + r, degree-6 polynomial, 2^n from the exponent bits);
 *   |z| is clamped to 9, where tanh rounds to 1 in float32.
 * Measured error against tanh in double: at most a few float32 ulps (tests/test_kernels.py). */
static inline float lenet_tanhf(float z)
{
    float az = fabsf(z);
    az = az < 9.0f ? az : 9.0f;
    const float t = 2.0f * az;
    const int32_t n = (int32_t)(t * 1.44269504088896341f + 0.5f);   /* t >= 0: truncation = floor */
    const float fn = (float)n;
    float r = t - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    const float r2 = r * r;
    const float p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                      + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * r2 + r + 1.0f;
    union { int32_t i; float f; } pow2;
    pow2.i = (n + 127) << 23;
    float big = 1.0f - 2.0f / (p * pow2.f + 1.0f);
    big = z < 0.0f ? -big : big;
    const float s = z * z;
    const float small = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s
                          + 1.33314422036e-1f) * s - 3.33332819422e-1f) * s * z + z;
    return az > 0.625f ? big : small;
}

static inline void squash_forward_one(float *restrict out, const float *restrict in, int64_t n)
{
    for (int64_t k = 0; k < n; k++) out[k] = LENET_SQUASH_A * lenet_tanhf(LENET_SQUASH_S * in[k]);
}

static inline void squash_inplace_one(float *restrict x, int64_t n)
{
    for (int64_t k = 0; k < n; k++) x[k] = LENET_SQUASH_A * lenet_tanhf(LENET_SQUASH_S * x[k]);
}

/* f'(a) from y = f(a): A S (1 - tanh^2) = (S / A) (A^2 - y^2) */
static inline float squash_deriv(float y)
{
    return (LENET_SQUASH_S / LENET_SQUASH_A) * (LENET_SQUASH_A * LENET_SQUASH_A - y * y);
}

static inline void squash_backward_one(float *restrict din, const float *restrict dout,
                                       const float *restrict out, int64_t n)
{
    for (int64_t k = 0; k < n; k++) din[k] += dout[k] * squash_deriv(out[k]);
}

static inline void squash_backward2_one(float *restrict hin, const float *restrict hout,
                                        const float *restrict out, int64_t n)
{
    for (int64_t k = 0; k < n; k++) {
        const float d = squash_deriv(out[k]);
        hin[k] += hout[k] * d * d;
    }
}

/* ---- dense ---- */
static inline void dense_forward_one(float *restrict out, const float *restrict in,
                                     const float *restrict w, const float *restrict b, int K, int M)
{
    for (int m = 0; m < M; m++) out[m] = (b ? b[m] : 0.0f) + dotf(in, w + (int64_t)m * K, K);
}

static inline void dense_backward_one(float *restrict din, float *restrict dw, float *restrict db,
                                      const float *restrict dout, const float *restrict in,
                                      const float *restrict w, int K, int M)
{
    for (int m = 0; m < M; m++) {
        const float d = dout[m];
        float *restrict dwm = dw + (int64_t)m * K;
        for (int k = 0; k < K; k++) dwm[k] += d * in[k];
        if (db) db[m] += d;
    }
    if (!din) return;
    for (int m = 0; m < M; m++) {
        const float d = dout[m];
        const float *restrict wm = w + (int64_t)m * K;
        for (int k = 0; k < K; k++) din[k] += d * wm[k];
    }
}

/* ---- Euclidean RBF ---- */
static inline void rbf_forward_one(float *restrict out, const float *restrict in,
                                   const float *restrict proto, int K, int M)
{
    for (int m = 0; m < M; m++) {
        const float *restrict pm = proto + (int64_t)m * K;
        float acc[LENET_LANES] = {0};
        int k = 0;
        for (; k + LENET_LANES <= K; k += LENET_LANES)
            for (int l = 0; l < LENET_LANES; l++) {
                const float e = in[k + l] - pm[k + l];
                acc[l] += e * e;
            }
        float s = 0.0f;
        for (; k < K; k++) { const float e = in[k] - pm[k]; s += e * e; }
        for (int l = 0; l < LENET_LANES; l++) s += acc[l];
        out[m] = s;
    }
}

static inline void rbf_backward_one(float *restrict din, const float *restrict dout,
                                    const float *restrict in, const float *restrict proto, int K, int M)
{
    for (int m = 0; m < M; m++) {
        const float d2 = 2.0f * dout[m];
        const float *restrict pm = proto + (int64_t)m * K;
        for (int k = 0; k < K; k++) din[k] += d2 * (in[k] - pm[k]);
    }
}

/* ---- softmax and losses (computed in double: ten numbers) ---- */
static inline void softmax_one(float *restrict probs, const float *restrict in, float sign, int M)
{
    double mx = sign * in[0], s = 0.0;
    for (int m = 1; m < M; m++) if (sign * in[m] > mx) mx = sign * in[m];
    for (int m = 0; m < M; m++) s += exp(sign * in[m] - mx);
    for (int m = 0; m < M; m++) probs[m] = (float)(exp(sign * in[m] - mx) / s);
}

static inline float xent_loss_one(const float *restrict logits, int label, int M)
{
    double mx = logits[0], s = 0.0;
    for (int m = 1; m < M; m++) if (logits[m] > mx) mx = logits[m];
    for (int m = 0; m < M; m++) s += exp(logits[m] - mx);
    return (float)(mx + log(s) - logits[label]);
}

/* d (M,) += scale * d(loss)/d(logits); returns the loss, the same value as xent_loss_one
 * (the exponentials are kept for M <= 16, the network's 10, and recomputed otherwise) */
static inline float xent_backward_one(float *restrict d, const float *restrict logits, int label,
                                      float scale, int M)
{
    double mx = logits[0], s = 0.0, e[16];
    const int keep = M <= 16;
    for (int m = 1; m < M; m++) if (logits[m] > mx) mx = logits[m];
    for (int m = 0; m < M; m++) {
        const double v = exp(logits[m] - mx);
        if (keep) e[m] = v;
        s += v;
    }
    for (int m = 0; m < M; m++)
        d[m] += scale * (float)((keep ? e[m] : exp(logits[m] - mx)) / s - (m == label ? 1.0 : 0.0));
    return (float)(mx + log(s) - logits[label]);
}

/* log(exp(-j) + sum exp(-y)) and the "probabilities" q_i = exp(-y_i) / (exp(-j) + sum) */
static inline double rbf_lse(const float *restrict y, float j, int M)
{
    double mx = -j, s;
    for (int m = 0; m < M; m++) if (-y[m] > mx) mx = -y[m];
    s = exp(-j - mx);
    for (int m = 0; m < M; m++) s += exp(-y[m] - mx);
    return mx + log(s);
}

static inline float rbfloss_one(const float *restrict y, int label, float j, int M)
{
    return (float)(y[label] + rbf_lse(y, j, M));
}

/* dy (M,) += scale * d(loss)/dy; returns the loss, the same value as rbfloss_one */
static inline float rbfloss_backward_one(float *restrict dy, const float *restrict y, int label,
                                         float j, float scale, int M)
{
    const double lse = rbf_lse(y, j, M);
    for (int m = 0; m < M; m++)
        dy[m] += scale * (float)((m == label ? 1.0 : 0.0) - exp(-y[m] - lse));
    return (float)(y[label] + lse);
}

#endif /* LENET_LAYERS_IMPL_H */
