/*
 * int8 inference: the portable integer kernels (plain C, int32 sums) and the driver
 * (input codes, threads, workspace) that every int8 variant runs under. The scheme and
 * the layouts: q8.h; the float epilogue is the same in every variant.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "q8.h"
#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static inline float q8_squash(float a)
{
    return LENET_SQUASH_A * lenet_tanhf(LENET_SQUASH_S * a);
}

static inline uint8_t q8_requant(float y, float inv)
{
    float v = rintf(y * inv);
    v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
    return (uint8_t)((int)v + LENET_Q8_ACT_ZERO);
}

/* 2x2 pooling with coefficient and bias, squash, requantize: in (C, 2H, 2W) float -> q (C, H, W) */
static void q8_pool(uint8_t *restrict q, const float *restrict in, const float *restrict coef,
                    const float *restrict bias, float inv, int C, int H, int W)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                const float *r = in + ((int64_t)c * 2 * H + 2 * i) * 2 * W + 2 * j;
                const float a = coef[c] * ((r[0] + r[1]) + (r[2 * W] + r[2 * W + 1])) + bias[c];
                q[((int64_t)c * H + i) * W + j] = q8_requant(q8_squash(a), inv);
            }
}

/* dense int8 layer in the packed layout w[k/4][o][k%4] (Mp outputs per group) */
static void q8_dense(int32_t *restrict acc, const int8_t *restrict w, const uint8_t *restrict u,
                     const int32_t *restrict z, int K, int M, int Mp)
{
    for (int o = 0; o < M; o++) {
        int32_t s = 0;
        for (int k = 0; k < K; k++) s += (int32_t)w[((k >> 2) * Mp + o) * 4 + (k & 3)] * u[k];
        acc[o] = s - z[o];
    }
}

static void q8_forward_one_portable(float *restrict out, int32_t *restrict qa, const lenet_qnet *qn,
                                    const uint8_t *restrict x, unsigned char *restrict ws)
{
    const float *F = qn->f;
    const int32_t *Z = qn->zw;
    const int8_t *w1 = qn->w + LENET_Q8_OFF_W1, *w3 = qn->w + LENET_Q8_OFF_W3;
    float *c1 = (float *)ws;                 /* 4704 */
    float *c3 = c1 + 4704;                   /* 1600 */
    float *f6 = c3 + 1600;                   /* 84 */
    int32_t *acc = (int32_t *)(f6 + 96);     /* 4704 */
    uint8_t *q2 = (uint8_t *)(acc + 4704);   /* 1176 */
    uint8_t *q4 = q2 + 1184;                 /* 400 */
    uint8_t *q5 = q4 + 400;                  /* 120 */

    /* C1 */
    for (int m = 0; m < 6; m++)
        for (int y = 0; y < 28; y++)
            for (int xx = 0; xx < 28; xx++) {
                int32_t s = 0;
                for (int ky = 0; ky < 5; ky++)
                    for (int kx = 0; kx < 5; kx++)
                        s += (int32_t)w1[m * LENET_Q8_KBYTES + LENET_Q8_TAP(ky, kx)] * x[(y + ky) * 32 + xx + kx];
                acc[(m * 28 + y) * 28 + xx] = s - Z[LENET_Q8_OFF_Z1 + m];
            }
    for (int m = 0; m < 6; m++)
        for (int k = 0; k < 784; k++)
            c1[m * 784 + k] = q8_squash((float)acc[m * 784 + k] * F[LENET_Q8_OFF_MUL1 + m] + F[LENET_Q8_OFF_B1 + m]);
    if (qa) memcpy(qa + LENET_Q8_QA_C1, acc, 4704 * sizeof(int32_t));
    q8_pool(q2, c1, F + LENET_Q8_OFF_S2C, F + LENET_Q8_OFF_S2B, F[LENET_Q8_OFF_INV2], 6, 14, 14);

    /* C3: the 60 pairs of Table I */
    memset(acc, 0, 1600 * sizeof(int32_t));
    for (int p = 0; p < LENET_C3_PAIRS; p++) {
        const int m = qn->c3_out[p], c = qn->c3_in[p];
        const int8_t *wp = w3 + p * LENET_Q8_KBYTES;
        const uint8_t *in = q2 + c * 196;
        for (int y = 0; y < 10; y++)
            for (int xx = 0; xx < 10; xx++) {
                int32_t s = 0;
                for (int ky = 0; ky < 5; ky++)
                    for (int kx = 0; kx < 5; kx++)
                        s += (int32_t)wp[LENET_Q8_TAP(ky, kx)] * in[(y + ky) * 14 + xx + kx];
                acc[m * 100 + y * 10 + xx] += s;
            }
    }
    for (int m = 0; m < 16; m++)
        for (int k = 0; k < 100; k++) {
            acc[m * 100 + k] -= Z[LENET_Q8_OFF_Z3 + m];
            c3[m * 100 + k] = q8_squash((float)acc[m * 100 + k] * F[LENET_Q8_OFF_MUL3 + m] + F[LENET_Q8_OFF_B3 + m]);
        }
    if (qa) memcpy(qa + LENET_Q8_QA_C3, acc, 1600 * sizeof(int32_t));
    q8_pool(q4, c3, F + LENET_Q8_OFF_S4C, F + LENET_Q8_OFF_S4B, F[LENET_Q8_OFF_INV4], 16, 5, 5);

    /* C5 */
    q8_dense(acc, qn->w + LENET_Q8_OFF_W5, q4, Z + LENET_Q8_OFF_Z5, 400, 120, LENET_Q8_C5M);
    for (int o = 0; o < 120; o++)
        q5[o] = q8_requant(q8_squash((float)acc[o] * F[LENET_Q8_OFF_MUL5 + o] + F[LENET_Q8_OFF_B5 + o]),
                           F[LENET_Q8_OFF_INV5]);
    if (qa) memcpy(qa + LENET_Q8_QA_C5, acc, 120 * sizeof(int32_t));

    /* F6 */
    q8_dense(acc, qn->w + LENET_Q8_OFF_W6, q5, Z + LENET_Q8_OFF_Z6, 120, 84, LENET_Q8_F6M);
    for (int o = 0; o < 84; o++)
        f6[o] = q8_squash((float)acc[o] * F[LENET_Q8_OFF_MUL6 + o] + F[LENET_Q8_OFF_B6 + o]);
    if (qa) {
        memcpy(qa + LENET_Q8_QA_F6, acc, 84 * sizeof(int32_t));
        q8_keep_codes(qa, q2, q4, q5);
    }
    q8_head(out, qn, f6);
}

/* The input codes of one image: p = floor(clamp(200 x + 20, 0, 255) + 0.5), i.e. x / 0.005
 * + 20 rounded half up (exact for MNIST digits: x = 0.005 p - 0.1). Returns 1 if x holds a
 * NaN or an infinity. */
static int q8_input(uint8_t *restrict q, const float *restrict x)
{
    int bad = 0;
    for (int k = 0; k < 1024; k++) {
        float v = x[k] * 200.0f + 20.0f;
        bad |= !(fabsf(x[k]) <= 3.0e38f);
        v = v > 0.0f ? v : 0.0f;        /* NaN -> 0 (and reported) */
        v = v < 255.0f ? v : 255.0f;
        q[k] = (uint8_t)(int)(v + 0.5f);
    }
    memset(q + 1024, 0, LENET_Q8_XPAD - 1024);
    return bad;
}

const lenet_q8_kernels lenet_q8_kernels_portable = {q8_input, q8_forward_one_portable};

/* ------------------------------------------------------------------------ the driver */

#define Q8_THREAD_BYTES (LENET_Q8_WS + LENET_Q8_XPAD + 128)

size_t lenet_q8_workspace_size(int nthreads)
{
    nthreads = lenet_clamp_threads(nthreads);
    return (size_t)nthreads * Q8_THREAD_BYTES + 64;
}

static unsigned char *align64b(unsigned char *p)
{
    return p + ((64 - ((uintptr_t)p & 63)) & 63);
}

static int q8_item(const lenet_q8_kernels *k, float *out, int32_t *qa, const lenet_qnet *qn,
                   const float *x, int64_t n, unsigned char *ws)
{
    uint8_t *xq = ws + LENET_Q8_WS;
    int bad = k->input(xq, x + n * 1024);
    k->forward_one(out + n * 10, qa ? qa + n * LENET_Q8_NQA : NULL, qn, xq, ws);
    if (qa)
        for (int j = 0; j < 1024; j++) qa[n * LENET_Q8_NQA + LENET_Q8_QA_IN + j] = xq[j];
    return bad;
}

int lenet_q8_forward(float *restrict out, int32_t *restrict qa, const lenet_qnet *qn,
                     const float *restrict x, int64_t N, int nthreads,
                     unsigned char *restrict workspace, size_t workspace_bytes)
{
    if (!qn || !qn->w || !qn->zw || !qn->f || !qn->c3_out || !qn->c3_in) return LENET_ERR_NULL;
    if (qn->head != LENET_HEAD_SOFTMAX && qn->head != LENET_HEAD_RBF) return LENET_ERR_ARG;
    if (!lenet_q8_supported(qn->isa)) return LENET_ERR_ISA;
    for (int p = 0; p < LENET_C3_PAIRS; p++)
        if (qn->c3_out[p] < 0 || qn->c3_out[p] >= 16 || qn->c3_in[p] < 0 || qn->c3_in[p] >= 6)
            return LENET_ERR_ARG;
    if (N < 0) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!out || !x || !workspace) return LENET_ERR_NULL;
    nthreads = lenet_clamp_threads(nthreads);
    if ((int64_t)nthreads > N) nthreads = (int)N;
    if (workspace_bytes < lenet_q8_workspace_size(nthreads)) return LENET_ERR_WORKSPACE;
    const lenet_q8_kernels *k = lenet_q8_kernels_for(qn->isa);
    unsigned char *base = align64b(workspace);
    int bad = 0;
    if (nthreads == 1) {
        for (int64_t n = 0; n < N; n++) bad |= q8_item(k, out, qa, qn, x, n, base);
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
        unsigned char *ws = base + (size_t)t * Q8_THREAD_BYTES;
#ifdef _OPENMP
#pragma omp for schedule(static, 16)
#endif
        for (int64_t n = 0; n < N; n++) bad |= q8_item(k, out, qa, qn, x, n, ws);
    }
    return bad ? LENET_ERR_NONFINITE : LENET_OK;
}
