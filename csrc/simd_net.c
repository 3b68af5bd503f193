/*
 * The SIMD variants of the whole network (see simd_api.h). This file is compiled once per
 * instruction set: -DLENET_SIMD_AVX2 with -mavx2 -mfma, -DLENET_SIMD_AVX512 with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma. Nothing here runs unless
 * lenet_isa_supported() said the CPU has that instruction set.
 *
 * Two layouts, one arithmetic:
 *   - forward_one, one image, "spatial": vectors run along a row of output pixels (C1,
 *     pooling) or along the row-major pixels of a map (C3);
 *   - forward_block, VL images side by side in the lanes: a (C, H, W) map becomes
 *     (C, H, W, VL), and every 5x5 tap is one broadcast-multiply-add over the lanes.
 * Every output element is computed by the same operations in the same order in both, so
 * an image's result is bit-for-bit the same alone or anywhere in a batch:
 *   conv (C1, C3): acc = bias; for each input map (C3: in pair-list order), for ki, for kj:
 *                  acc = fma(w, x, acc);
 *   subsampling:   fma(coef, (x00 + x01) + (x10 + x11), bias);
 *   dense (C5, F6, output) and RBF: VL partial sums, lane l taking k = l (mod VL) in
 *                  order, then the fixed tree of vhsum, then + bias;
 *   squash:        vsquash, lane-wise.
 * The dense layers always run image-major (one image's inputs contiguous), for one image
 * or for the VL images of a block.
 */
#include <string.h>

#include "lenet.h"
#include "net_portable.h"
#include "simd_api.h"
#include "simd.h"

#if defined(LENET_SIMD_AVX512)
#define LENET_SIMD_TABLE lenet_simd_kernels_avx512
#elif defined(LENET_SIMD_AVX2)
#define LENET_SIMD_TABLE lenet_simd_kernels_avx2
#else
#error "simd_net.c is compiled with -DLENET_SIMD_AVX2 or -DLENET_SIMD_AVX512"
#endif

#define RUP(n) (((n) + 15) & ~15)   /* floats, rounded up to 64 bytes */
#define PAD 32                      /* floats readable past the end of a map buffer */

/* C3 pairs of each output map: [first[m], first[m + 1]) (the list is sorted by out map) */
static void c3_ranges(int first[17], const int32_t *restrict pout)
{
    int p = 0;
    for (int m = 0; m < 16; m++) {
        first[m] = p;
        while (p < LENET_C3_PAIRS && pout[p] == m) p++;
    }
    first[16] = p;
}

/* x[0..n) = f(x[0..n)) in place */
static void squash_inplace(float *restrict x, int n)
{
    int k = 0;
    for (; k + VL <= n; k += VL) vstore(x + k, vsquash(vload(x + k)));
    if (k < n) vstore_first(x + k, vsquash(vload_first(x + k, n - k)), n - k);
}

/* ================================================================ dense (image-major) */

/* One tile of IB images x MB outputs: out[i * os + m] = hsum(sum_k w[m][k] in[i][k]) + b[m]. */
#define DENSE_TILE(IB, MB)                                                                       \
static inline void dense_tile_##IB##_##MB(float *restrict out, int os, const float *restrict in, \
                                          int is, const float *restrict w,                       \
                                          const float *restrict b, int K)                        \
{                                                                                                \
    vf acc[IB][MB];                                                                              \
    for (int i = 0; i < IB; i++)                                                                 \
        for (int m = 0; m < MB; m++) acc[i][m] = vzero();                                        \
    int k = 0;                                                                                   \
    for (; k + VL <= K; k += VL) {                                                               \
        vf xv[IB];                                                                               \
        for (int i = 0; i < IB; i++) xv[i] = vload(in + i * is + k);                             \
        for (int m = 0; m < MB; m++) {                                                           \
            const vf wv = vload(w + m * K + k);                                                  \
            for (int i = 0; i < IB; i++) acc[i][m] = vfma(wv, xv[i], acc[i][m]);                 \
        }                                                                                        \
    }                                                                                            \
    if (k < K) {                                                                                 \
        vf xv[IB];                                                                               \
        for (int i = 0; i < IB; i++) xv[i] = vload_first(in + i * is + k, K - k);               \
        for (int m = 0; m < MB; m++) {                                                           \
            const vf wv = vload_first(w + m * K + k, K - k);                                     \
            for (int i = 0; i < IB; i++) acc[i][m] = vfma(wv, xv[i], acc[i][m]);                 \
        }                                                                                        \
    }                                                                                            \
    for (int i = 0; i < IB; i++) {                                                               \
        int m = 0;                                                                               \
        for (; m + 4 <= MB; m += 4)                                                              \
            _mm_storeu_ps(out + i * os + m, _mm_add_ps(vhsum4(acc[i][m], acc[i][m + 1],          \
                                                              acc[i][m + 2], acc[i][m + 3]),     \
                                                       _mm_loadu_ps(b + m)));                    \
        for (; m < MB; m++) out[i * os + m] = vhsum(acc[i][m]) + b[m];                           \
    }                                                                                            \
}

#if VL == 16
#define DIB 4
#define DMB 4
DENSE_TILE(4, 4)
DENSE_TILE(4, 1)
#define DENSE_TILE_BLOCK dense_tile_4_4
#define DENSE_TILE_BLOCK1 dense_tile_4_1
#else
#define DIB 2
#define DMB 4
DENSE_TILE(2, 4)
DENSE_TILE(2, 1)
#define DENSE_TILE_BLOCK dense_tile_2_4
#define DENSE_TILE_BLOCK1 dense_tile_2_1
#endif
DENSE_TILE(1, 8)
DENSE_TILE(1, 1)

/* out (n, M) with row stride os = in (n, K) with row stride is, times w (M, K)^T, + b */
static void dense_fwd(float *restrict out, int os, const float *restrict in, int is, int n,
                      const float *restrict w, const float *restrict b, int K, int M)
{
    int i = 0;
    for (; i + DIB <= n; i += DIB) {
        int m = 0;
        for (; m + DMB <= M; m += DMB)
            DENSE_TILE_BLOCK(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
        for (; m < M; m++) DENSE_TILE_BLOCK1(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
    }
    for (; i < n; i++) {
        int m = 0;
        for (; m + 8 <= M; m += 8) dense_tile_1_8(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
        for (; m < M; m++) dense_tile_1_1(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
    }
}

/* Euclidean RBF: out[i][m] = hsum(sum_k (in[i][k] - proto[m][k])^2) */
static void rbf_fwd(float *restrict out, int os, const float *restrict in, int is, int n,
                    const float *restrict proto, int K, int M)
{
    for (int i = 0; i < n; i++)
        for (int m = 0; m < M; m++) {
            vf acc = vzero();
            int k = 0;
            for (; k + VL <= K; k += VL) {
                const vf e = vsub(vload(in + i * is + k), vload(proto + m * K + k));
                acc = vfma(e, e, acc);
            }
            if (k < K) {
                const vf e = vsub(vload_first(in + i * is + k, K - k), vload_first(proto + m * K + k, K - k));
                acc = vfma(e, e, acc);
            }
            out[i * os + m] = vhsum(acc);
        }
}

/* C5 (as a dense 400 -> 120), F6 and the head for n images, image-major:
 * s4 (n, 400) post-squash in, c5 (n, 120), f6 (n, 84), out (n, 10) with row strides. */
#define C5S RUP(120)
#define F6S RUP(84)
#define OUTS 16
static void dense_layers(float *restrict c5, float *restrict f6, float *restrict out, int os,
                         const float *restrict s4, int s4s, int n, const lenet_net *net)
{
    dense_fwd(c5, C5S, s4, s4s, n, P(net, LENET_OFF_C5_W), P(net, LENET_OFF_C5_B), 400, 120);
    for (int i = 0; i < n; i++) squash_inplace(c5 + i * C5S, 120);
    dense_fwd(f6, F6S, c5, C5S, n, P(net, LENET_OFF_F6_W), P(net, LENET_OFF_F6_B), 120, 84);
    for (int i = 0; i < n; i++) squash_inplace(f6 + i * F6S, 84);
    if (net->head == LENET_HEAD_RBF)
        rbf_fwd(out, os, f6, F6S, n, P(net, LENET_OFF_OUT_W), 84, 10);
    else
        dense_fwd(out, os, f6, F6S, n, P(net, LENET_OFF_OUT_W), P(net, LENET_OFF_OUT_B), 84, 10);
}

/* ================================================================ one image, spatial */

/* 2x2 subsampling of C maps (H, W) (rows readable 2 VL floats from their start), then
 * squash: out (C, H/2, W/2). */
static void pool_one(float *restrict out, const float *restrict in, const float *restrict coef,
                     const float *restrict bias, int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const vf cf = vset1(coef[c]), bs = vset1(bias[c]);
        for (int r = 0; r < Ho; r++) {
            const float *r0 = in + ((size_t)c * H + 2 * r) * W, *r1 = r0 + W;
            for (int j = 0; j < W; j += 2 * VL) {
                vf e0, o0, e1, o1;
                vdeint(vload(r0 + j), vload(r0 + j + VL), &e0, &o0);
                vdeint(vload(r1 + j), vload(r1 + j + VL), &e1, &o1);
                const vf pre = vfma(cf, vadd(vadd(e0, o0), vadd(e1, o1)), bs);
                const int m = (W - j) / 2 < VL ? (W - j) / 2 : VL;
                vstore_first(out + ((size_t)c * Ho + r) * Wo + j / 2, pre, m);
            }
        }
    }
    squash_inplace(out, C * Ho * Wo);
}

/* C1 columns covered by each row vector (overlapping rather than masked) */
#if VL == 16
#define C1_NV 2
#define C1_MG 6
static const int C1_JS[C1_NV] = {0, 12};
#else
#define C1_NV 4
#define C1_MG 2
static const int C1_JS[C1_NV] = {0, 8, 16, 20};
#endif

/* C1 of one image: c1 (6, 28, 28) post-squash */
static void c1_one(float *restrict c1, const float *restrict x, const float *restrict w,
                   const float *restrict b)
{
    for (int m0 = 0; m0 < 6; m0 += C1_MG)
        for (int i = 0; i < 28; i++) {
            vf acc[C1_MG][C1_NV];
            for (int m = 0; m < C1_MG; m++)
                for (int v = 0; v < C1_NV; v++) acc[m][v] = vset1(b[m0 + m]);
            for (int ki = 0; ki < 5; ki++)
                for (int kj = 0; kj < 5; kj++) {
                    vf xv[C1_NV];
                    for (int v = 0; v < C1_NV; v++) xv[v] = vload(x + (i + ki) * 32 + C1_JS[v] + kj);
                    for (int m = 0; m < C1_MG; m++) {
                        const vf wv = vset1(w[(m0 + m) * 25 + ki * 5 + kj]);
                        for (int v = 0; v < C1_NV; v++) acc[m][v] = vfma(wv, xv[v], acc[m][v]);
                    }
                }
            for (int m = 0; m < C1_MG; m++)
                for (int v = 0; v < C1_NV; v++) vstore(c1 + (m0 + m) * 784 + i * 28 + C1_JS[v], acc[m][v]);
        }
    squash_inplace(c1, 6 * 784);
}

/* C3 of one image on the row-major pixels of each S2 map: output position t = 14 i + j
 * (j < 10 are the real ones) reads s2[c][t + 14 ki + kj]; c3f (16, C3F) pre-activation. */
#define C3F 144                     /* 10 rows of 14, rounded up to a multiple of 16 */
#define C3_NV (C3F / VL)
#define C3_G 9
static void c3_one(float *restrict c3f, const float *restrict s2, const lenet_net *net)
{
    const float *w = P(net, LENET_OFF_C3_W), *b = P(net, LENET_OFF_C3_B);
    int first[17];
    c3_ranges(first, net->c3_out);
    for (int m = 0; m < 16; m++)
        for (int g = 0; g < C3_NV; g += C3_G) {
            vf acc[C3_G];
            for (int a = 0; a < C3_G; a++) acc[a] = vset1(b[m]);
            for (int q = first[m]; q < first[m + 1]; q++) {
                const float *ip = s2 + net->c3_in[q] * 196 + g * VL;
                const float *wq = w + q * 25;
                for (int ki = 0; ki < 5; ki++)
                    for (int kj = 0; kj < 5; kj++) {
                        const vf wv = vset1(wq[ki * 5 + kj]);
                        for (int a = 0; a < C3_G; a++)
                            acc[a] = vfma(wv, vload(ip + a * VL + ki * 14 + kj), acc[a]);
                    }
            }
            for (int a = 0; a < C3_G; a++) vstore(c3f + m * C3F + (g + a) * VL, acc[a]);
        }
}

/* workspace of forward_one (floats) */
#define O_C1 0
#define O_S2 (O_C1 + RUP(4704 + PAD))
#define O_C3F (O_S2 + RUP(1176 + PAD))
#define O_C3 (O_C3F + 16 * C3F)
#define O_S4 (O_C3 + RUP(1600 + PAD))
#define O_C5 (O_S4 + RUP(400 + PAD))
#define O_F6 (O_C5 + C5S)
#define O_OUT (O_F6 + F6S)
#define ONE_WS (O_OUT + OUTS)

static void forward_one(float *restrict out, float *restrict acts, const lenet_net *net,
                        const float *restrict x, float *restrict ws)
{
    float *c1 = ws + O_C1, *s2 = ws + O_S2, *c3f = ws + O_C3F, *c3 = ws + O_C3, *s4 = ws + O_S4;
    float *c5 = ws + O_C5, *f6 = ws + O_F6;
    c1_one(c1, x, P(net, LENET_OFF_C1_W), P(net, LENET_OFF_C1_B));
    pool_one(s2, c1, P(net, LENET_OFF_S2_W), P(net, LENET_OFF_S2_B), 6, 28, 28);
    c3_one(c3f, s2, net);
    for (int m = 0; m < 16; m++)
        for (int i = 0; i < 10; i++) memcpy(c3 + m * 100 + i * 10, c3f + m * C3F + i * 14, 10 * sizeof(float));
    squash_inplace(c3, 1600);
    pool_one(s4, c3, P(net, LENET_OFF_S4_W), P(net, LENET_OFF_S4_B), 16, 10, 10);
    dense_layers(c5, f6, out, 10, s4, 400, 1, net);
    if (acts) {
        memcpy(acts + LENET_ACT_C1, c1, 4704 * sizeof(float));
        memcpy(acts + LENET_ACT_S2, s2, 1176 * sizeof(float));
        memcpy(acts + LENET_ACT_C3, c3, 1600 * sizeof(float));
        memcpy(acts + LENET_ACT_S4, s4, 400 * sizeof(float));
        memcpy(acts + LENET_ACT_C5, c5, 120 * sizeof(float));
        memcpy(acts + LENET_ACT_F6, f6, 84 * sizeof(float));
        memcpy(acts + LENET_ACT_OUT, out, 10 * sizeof(float));
    }
}

/* ================================================================ VL images, in the lanes */

#define LN VL   /* images per block */

/* per-lane scatter of a lanes array (count, LN) into per-image rows dst[l * stride + k] */
static void scatter_lanes(float *restrict dst, size_t stride, const float *restrict src, int count, int n)
{
    for (int k = 0; k < count; k++)
        for (int l = 0; l < n; l++) dst[l * stride + k] = src[k * LN + l];
}

#if VL == 16
#define C1L_MG 6
#define C3L_JB 10
#else
#define C1L_MG 2
#define C3L_JB 5
#endif
#define C1L_JB 4

/* one C1 output row i (all maps, pre-activation) of the block: row (6, 28, LN) */
static void c1_row_lanes(float *restrict row, const float *restrict X, int i,
                         const float *restrict w, const float *restrict b)
{
    for (int m0 = 0; m0 < 6; m0 += C1L_MG)
        for (int j0 = 0; j0 < 28; j0 += C1L_JB) {
            vf acc[C1L_MG][C1L_JB];
            for (int m = 0; m < C1L_MG; m++)
                for (int j = 0; j < C1L_JB; j++) acc[m][j] = vset1(b[m0 + m]);
            for (int ki = 0; ki < 5; ki++) {
                const float *xr = X + ((i + ki) * 32 + j0) * LN;
                for (int kj = 0; kj < 5; kj++)
                    for (int j = 0; j < C1L_JB; j++) {
                        const vf xv = vloada(xr + (j + kj) * LN);
                        for (int m = 0; m < C1L_MG; m++)
                            acc[m][j] = vfma(vset1(w[(m0 + m) * 25 + ki * 5 + kj]), xv, acc[m][j]);
                    }
            }
            for (int m = 0; m < C1L_MG; m++)
                for (int j = 0; j < C1L_JB; j++) vstorea(row + ((m0 + m) * 28 + j0 + j) * LN, acc[m][j]);
        }
}

/* subsample two squashed rows r0, r1 (C, W, LN) into out (C, ostride) rows of W/2 vectors,
 * then squash */
static void pool_rows_lanes(float *restrict out, size_t ostride, const float *restrict r0,
                            const float *restrict r1, const float *restrict coef,
                            const float *restrict bias, int C, int W)
{
    for (int c = 0; c < C; c++) {
        const vf cf = vset1(coef[c]), bs = vset1(bias[c]);
        for (int q = 0; q < W / 2; q++) {
            const float *a = r0 + (c * W + 2 * q) * LN, *d = r1 + (c * W + 2 * q) * LN;
            const vf s = vadd(vadd(vloada(a), vloada(a + LN)), vadd(vloada(d), vloada(d + LN)));
            vstorea(out + c * ostride + q * LN, vsquash(vfma(cf, s, bs)));
        }
    }
}

/* The convolution part of a block, in the lanes: x (n, 32, 32) -> S4 (16, 5, 5, LN)
 * post-squash. X (32, 32, LN) receives the input (lanes past n: zeros), S2 (6, 14, 14, LN).
 * C1 holds C1 rows (28 or 2 rows of (6, 28, LN)) and C3 the C3 rows (160 or 2 rows of
 * (10, LN)), all of them when keep is set (training), else only the last two.
 * acts (n, LENET_NACTS) receives C1..S4 if not NULL. */
static void conv_lanes(const lenet_net *net, const float *restrict x, int n, int keep,
                       float *restrict X, float *restrict C1, float *restrict S2,
                       float *restrict C3, float *restrict S4, float *restrict acts)
{
    const float *w1 = P(net, LENET_OFF_C1_W), *b1 = P(net, LENET_OFF_C1_B);
    const float *w3 = P(net, LENET_OFF_C3_W), *b3 = P(net, LENET_OFF_C3_B);

    vgather_lanes(X, x, 1024, 1024, n);

    /* C1 row by row; every two rows, S2 */
    for (int i = 0; i < 28; i++) {
        float *row = C1 + (keep ? i : (i & 1)) * 168 * LN;
        c1_row_lanes(row, X, i, w1, b1);
        squash_inplace(row, 168 * LN);
        if (acts)
            for (int m = 0; m < 6; m++)
                scatter_lanes(acts + LENET_ACT_C1 + m * 784 + i * 28, LENET_NACTS, row + m * 28 * LN, 28, n);
        if (i & 1)
            pool_rows_lanes(S2 + (i / 2) * 14 * LN, 196 * LN, row - 168 * LN, row,
                            P(net, LENET_OFF_S2_W), P(net, LENET_OFF_S2_B), 6, 28);
    }
    if (acts) scatter_lanes(acts + LENET_ACT_S2, LENET_NACTS, S2, 1176, n);

    /* C3 map by map, row by row; every two rows, S4 */
    int first[17];
    c3_ranges(first, net->c3_out);
    for (int m = 0; m < 16; m++)
        for (int i = 0; i < 10; i++) {
            float *row = C3 + (keep ? m * 10 + i : (i & 1)) * 10 * LN;
            for (int j0 = 0; j0 < 10; j0 += C3L_JB) {
                vf acc[C3L_JB];
                for (int j = 0; j < C3L_JB; j++) acc[j] = vset1(b3[m]);
                for (int q = first[m]; q < first[m + 1]; q++)
                    for (int ki = 0; ki < 5; ki++) {
                        const float *ir = S2 + ((net->c3_in[q] * 14 + i + ki) * 14 + j0) * LN;
                        vf iv[C3L_JB + 4];
                        for (int t = 0; t < C3L_JB + 4; t++) iv[t] = vloada(ir + t * LN);
                        for (int kj = 0; kj < 5; kj++) {
                            const vf wv = vset1(w3[q * 25 + ki * 5 + kj]);
                            for (int j = 0; j < C3L_JB; j++) acc[j] = vfma(wv, iv[j + kj], acc[j]);
                        }
                    }
                for (int j = 0; j < C3L_JB; j++) vstorea(row + (j0 + j) * LN, acc[j]);
            }
            squash_inplace(row, 10 * LN);
            if (acts) scatter_lanes(acts + LENET_ACT_C3 + m * 100 + i * 10, LENET_NACTS, row, 10, n);
            if (i & 1)
                pool_rows_lanes(S4 + (m * 5 + i / 2) * 5 * LN, 0, row - 10 * LN, row,
                                P(net, LENET_OFF_S4_W) + m, P(net, LENET_OFF_S4_B) + m, 1, 10);
        }
}

/* workspace of forward_block (floats) */
#define B_X 0                               /* (32, 32, LN) input */
#define B_C1 (B_X + 1024 * LN)              /* (2 rows, 6, 28, LN) */
#define B_S2 (B_C1 + 2 * 168 * LN)          /* (6, 14, 14, LN) */
#define B_C3 (B_S2 + 1176 * LN)             /* (2 rows, 10, LN) */
#define B_S4 (B_C3 + 20 * LN)               /* (16, 5, 5, LN) */
#define B_S4T (B_S4 + 400 * LN)             /* (LN, 400) image-major */
#define B_C5 (B_S4T + 400 * LN)             /* (LN, C5S) */
#define B_F6 (B_C5 + C5S * LN)              /* (LN, F6S) */
#define B_OUT (B_F6 + F6S * LN)             /* (LN, OUTS) */
#define BLOCK_WS (B_OUT + OUTS * LN)

static void forward_block(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, int n, float *restrict ws)
{
    float *S4 = ws + B_S4, *S4T = ws + B_S4T, *C5 = ws + B_C5, *F6 = ws + B_F6, *O = ws + B_OUT;
    conv_lanes(net, x, n, 0, ws + B_X, ws + B_C1, ws + B_S2, ws + B_C3, S4, acts);
    for (int k = 0; k < 400; k++)
        for (int l = 0; l < n; l++) S4T[l * 400 + k] = S4[k * LN + l];
    dense_layers(C5, F6, O, OUTS, S4T, 400, n, net);
    for (int l = 0; l < n; l++) {
        memcpy(out + l * 10, O + l * OUTS, 10 * sizeof(float));
        if (acts) {
            float *a = acts + (size_t)l * LENET_NACTS;
            memcpy(a + LENET_ACT_S4, S4T + l * 400, 400 * sizeof(float));
            memcpy(a + LENET_ACT_C5, C5 + l * C5S, 120 * sizeof(float));
            memcpy(a + LENET_ACT_F6, F6 + l * F6S, 84 * sizeof(float));
            memcpy(a + LENET_ACT_OUT, O + l * OUTS, 10 * sizeof(float));
        }
    }
}

/* ================================================================ training (portable for now) */

static float grad_one(float *restrict grad, float *restrict out, const lenet_net *net,
                      const float *restrict x, int label, float scale, float *restrict ws)
{
    float *acts = ws, *d = ws + RUP(LENET_NACTS), *dpre = d + RUP(LENET_NACTS);
    float o[10];
    forward_one(o, acts, net, x, dpre + RUP(LENET_NACTS));
    if (out) memcpy(out, o, 10 * sizeof(float));
    return net_backward_one(grad, d, dpre, acts, net, x, label, scale);
}

static void grad_block(float *restrict grad, float *restrict losses, float *restrict out,
                       const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                       float scale, int n, float *restrict ws)
{
    for (int i = 0; i < n; i++) {
        const float l = grad_one(grad, out ? out + 10 * i : NULL, net, x + 1024 * i, labels[i], scale, ws);
        if (losses) losses[i] = l;
    }
}

static void squash_n(float *out, const float *in, int64_t n)
{
    int64_t k = 0;
    for (; k + VL <= n; k += VL) vstore(out + k, vsquash(vload(in + k)));
    if (k < n) vstore_first(out + k, vsquash(vload_first(in + k, (int)(n - k))), (int)(n - k));
}

#define MAXF(a, b) ((a) > (b) ? (a) : (b))

const lenet_simd_kernels LENET_SIMD_TABLE = {
    .lanes = LN,
    .ws_floats = MAXF(BLOCK_WS, 3 * RUP(LENET_NACTS) + ONE_WS),
    .forward_one = forward_one,
    .forward_block = forward_block,
    .grad_block = grad_block,
    .squash = squash_n,
    .grad_one = grad_one,
};
