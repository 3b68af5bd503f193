/*
 * The SIMD variants of the whole network (see simd_api.h). This file is compiled once per
 * instruction set: -DLENET_SIMD_AVX2 with -mavx2 -mfma, -DLENET_SIMD_AVX512 with
 * -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma, and -DLENET_SIMD_VEC128 with no
 * -m flags (generic 4-lane vectors). Nothing here runs unless lenet_isa_supported() said
 * the CPU has that instruction set.
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
#elif defined(LENET_SIMD_VEC128)
#define LENET_SIMD_TABLE lenet_simd_kernels_vec128
#else
#error "simd_net.c is compiled with -DLENET_SIMD_AVX2, -DLENET_SIMD_AVX512 or -DLENET_SIMD_VEC128"
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
    float r_[IB * MB + 3];                                                                       \
    int t_ = 0;                                                                                  \
    for (; t_ + 4 <= IB * MB; t_ += 4)                                                           \
        vhsum4_store(r_ + t_, acc[t_ / MB][t_ % MB], acc[(t_ + 1) / MB][(t_ + 1) % MB],          \
                     acc[(t_ + 2) / MB][(t_ + 2) % MB], acc[(t_ + 3) / MB][(t_ + 3) % MB]);      \
    if ((IB * MB) % 4)                                                                           \
        for (; t_ < IB * MB; t_++) r_[t_] = vhsum(acc[t_ / MB][t_ % MB]);                        \
    for (int i = 0; i < IB; i++)                                                                 \
        for (int m = 0; m < MB; m++) out[i * os + m] = r_[i * MB + m] + b[m];                    \
}

/* blocks: tiles of DIB images x DMB outputs (measured best among 4x4, 4x6, 8x2 on AVX-512);
 * one image: 1 x 8 */
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
    /* weight rows outer, image groups inner: DMB rows of weights are read from L2 once
     * and stay in L1 for every image group (the inputs of a block fit in L1) */
    const int nb = n - n % DIB;
    int m = 0;
    for (; m + DMB <= M; m += DMB)
        for (int i = 0; i < nb; i += DIB)
            DENSE_TILE_BLOCK(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
    for (; m < M; m++)
        for (int i = 0; i < nb; i += DIB)
            DENSE_TILE_BLOCK1(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K);
    int i = nb;
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

/* C1 of one image: c1 (6, 28, 28) post-squash. xs (5, 32, 32) is scratch: xs[kj][r][t] =
 * x[r][kj + t] (zeros past the row), so that every load of the taps loop is aligned. Each
 * output row is 32 / VL vectors (columns 28..31 computed and dropped). */
#if VL == 16
#define C1_MG 6
#elif VL == 8
#define C1_MG 2
#else
#define C1_MG 1
#endif
#define C1_NV (32 / VL)
static void build_xs(float *restrict xs, const float *restrict x)
{
    for (int kj = 0; kj < 5; kj++)
        for (int r = 0; r < 32; r++)
            for (int v = 0; v < C1_NV; v++) {
                const int c0 = v * VL + kj, cnt = 32 - c0 < VL ? 32 - c0 : VL;
                vstorea(xs + (kj * 32 + r) * 32 + v * VL, vload_first(x + r * 32 + c0, cnt));
            }
}

static void c1_one(float *restrict c1, float *restrict xs, const float *restrict x,
                   const float *restrict w, const float *restrict b)
{
    build_xs(xs, x);
    for (int m0 = 0; m0 < 6; m0 += C1_MG)
        for (int i = 0; i < 28; i++) {
            vf acc[C1_MG][C1_NV];
            for (int m = 0; m < C1_MG; m++)
                for (int v = 0; v < C1_NV; v++) acc[m][v] = vset1(b[m0 + m]);
            for (int ki = 0; ki < 5; ki++)
                for (int kj = 0; kj < 5; kj++) {
                    vf xv[C1_NV];
                    for (int v = 0; v < C1_NV; v++) xv[v] = vloada(xs + (kj * 32 + i + ki) * 32 + v * VL);
                    for (int m = 0; m < C1_MG; m++) {
                        const vf wv = vset1(w[(m0 + m) * 25 + ki * 5 + kj]);
                        for (int v = 0; v < C1_NV; v++) acc[m][v] = vfma(wv, xv[v], acc[m][v]);
                    }
                }
            for (int m = 0; m < C1_MG; m++)
                for (int v = 0; v < C1_NV; v++) {
                    const int cnt = 28 - v * VL < VL ? 28 - v * VL : VL;
                    if (cnt > 0) vstore_first(c1 + (m0 + m) * 784 + i * 28 + v * VL, acc[m][v], cnt);
                }
        }
    squash_inplace(c1, 6 * 784);
}

/* C3 of one image: c3 (16, 10, 10) pre-activation. ss (6, 5, 14, 16) is scratch:
 * ss[c][kj][r][t] = s2[c][r][kj + t] (zeros past the row), so every load is aligned; with
 * 16 lanes each output row is one vector of which the first 10 columns are kept (with 4 or
 * 8 lanes, see C3_MAINV below). The backward (sdlm_sample) reads all 16 / VL vectors. */
#define C3_NV (16 / VL)
static void build_ss(float *restrict ss, const float *restrict s2)
{
    for (int c = 0; c < 6; c++)
        for (int kj = 0; kj < 5; kj++)
            for (int r = 0; r < 14; r++)
                for (int v = 0; v < C3_NV; v++) {
                    const int c0 = v * VL + kj, cnt = 14 - c0 < VL ? 14 - c0 : VL;
                    vstorea(ss + ((c * 5 + kj) * 14 + r) * 16 + v * VL,
                            cnt > 0 ? vload_first(s2 + c * 196 + r * 14 + c0, cnt) : vzero());
                }
}

#if VL < 16
/* With 4 or 8 lanes, columns 0..7 of a C3 row are 8 / VL full vectors and columns 8..9 are
 * packed: two per row, VL / 2 rows per vector (3 vectors for 10 rows at 8 lanes, 5 at 4)
 * instead of a mostly empty vector per row. tl (6, 5, 16, 2) is their input:
 * tl[c][kj][r][j] = s2[c][r][8 + j + kj] (rows 14, 15 zero), so the tail vector t of tap
 * (ki, kj) is the VL floats from tl[c][kj][t * VL / 2 + ki][0]. */
#define C3_MAINV (8 / VL)
#define C3_TAILV ((20 + VL - 1) / VL)
#define TL_FLOATS (6 * 5 * 32)
static void build_tail(float *restrict tl, const float *restrict s2)
{
    for (int c = 0; c < 6; c++)
        for (int kj = 0; kj < 5; kj++) {
            float *t = tl + (c * 5 + kj) * 32;
            for (int r = 0; r < 14; r++) {
                t[r * 2] = s2[c * 196 + r * 14 + 8 + kj];
                t[r * 2 + 1] = s2[c * 196 + r * 14 + 9 + kj];
            }
            for (int k = 28; k < 32; k++) t[k] = 0.0f;
        }
}
#else
#define C3_MAINV 1
#define TL_FLOATS 0
#endif

static void c3_one(float *restrict c3, float *restrict ss, float *restrict tl, const float *restrict s2,
                   const lenet_net *net)
{
    const float *w = P(net, LENET_OFF_C3_W), *b = P(net, LENET_OFF_C3_B);
    build_ss(ss, s2);
    int first[17];
    c3_ranges(first, net->c3_out);
    for (int m = 0; m < 16; m++)
        for (int v = 0; v < C3_MAINV; v++) {
            vf acc[10];
            for (int i = 0; i < 10; i++) acc[i] = vset1(b[m]);
            for (int q = first[m]; q < first[m + 1]; q++) {
                const float *sc = ss + net->c3_in[q] * 5 * 14 * 16 + v * VL;
                const float *wq = w + q * 25;
                for (int ki = 0; ki < 5; ki++)
                    for (int kj = 0; kj < 5; kj++) {
                        const vf wv = vset1(wq[ki * 5 + kj]);
                        const float *base = sc + (kj * 14 + ki) * 16;
                        for (int i = 0; i < 10; i++) acc[i] = vfma(wv, vloada(base + i * 16), acc[i]);
                    }
            }
            const int cnt = 10 - v * VL < VL ? 10 - v * VL : VL;
            for (int i = 0; i < 10; i++) vstore_first(c3 + m * 100 + i * 10 + v * VL, acc[i], cnt);
        }
#if VL < 16
    build_tail(tl, s2);
    for (int m = 0; m < 16; m++) {
        vf acc[C3_TAILV];
        for (int t = 0; t < C3_TAILV; t++) acc[t] = vset1(b[m]);
        for (int q = first[m]; q < first[m + 1]; q++) {
            const float *tq = tl + net->c3_in[q] * 5 * 32;
            const float *wq = w + q * 25;
            for (int ki = 0; ki < 5; ki++)
                for (int kj = 0; kj < 5; kj++) {
                    const vf wv = vset1(wq[ki * 5 + kj]);
                    const float *base = tq + kj * 32 + ki * 2;
                    for (int t = 0; t < C3_TAILV; t++) acc[t] = vfma(wv, vload(base + t * VL), acc[t]);
                }
        }
        for (int t = 0; t < C3_TAILV; t++) {
            float lanes[VL];
            vstore(lanes, acc[t]);
            for (int p = 0; p < VL / 2 && t * (VL / 2) + p < 10; p++) {
                c3[m * 100 + (t * (VL / 2) + p) * 10 + 8] = lanes[2 * p];
                c3[m * 100 + (t * (VL / 2) + p) * 10 + 9] = lanes[2 * p + 1];
            }
        }
    }
#else
    (void)tl;
#endif
}

/* workspace of forward_one (floats) */
#define O_C1 0
#define O_S2 (O_C1 + RUP(4704 + PAD))
#define O_XS (O_S2 + RUP(1176 + PAD))       /* (5, 32, 32) or (6, 5, 14, 16) scratch */
#define O_C3 (O_XS + 6 * 5 * 14 * 16)
#define O_S4 (O_C3 + RUP(1600 + PAD))
#define O_C5 (O_S4 + RUP(400 + PAD))
#define O_F6 (O_C5 + C5S)
#define O_OUT (O_F6 + F6S)
#define O_TL (O_OUT + OUTS)                 /* C3's packed tail input (VL < 16) */
#define ONE_WS (O_TL + RUP(TL_FLOATS))

/* forward_one with C1's and C3's pre-shifted inputs built in xs (5, 32, 32) and
 * ss (6, 5, 14, 16), which may be the same buffer (forward_one) or two that the caller
 * keeps (sdlm_sample's backward reads both) */
static void forward_one_keep(float *restrict out, float *restrict acts, const lenet_net *net,
                             const float *restrict x, float *restrict ws, float *xs, float *ss)
{
    float *c1 = ws + O_C1, *s2 = ws + O_S2, *c3 = ws + O_C3, *s4 = ws + O_S4;
    float *c5 = ws + O_C5, *f6 = ws + O_F6;
    c1_one(c1, xs, x, P(net, LENET_OFF_C1_W), P(net, LENET_OFF_C1_B));
    pool_one(s2, c1, P(net, LENET_OFF_S2_W), P(net, LENET_OFF_S2_B), 6, 28, 28);
    c3_one(c3, ss, ws + O_TL, s2, net);
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

static void forward_one(float *restrict out, float *restrict acts, const lenet_net *net,
                        const float *restrict x, float *restrict ws)
{
    forward_one_keep(out, acts, net, x, ws, ws + O_XS, ws + O_XS);
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
    vscatter_lanes(S4T, 400, S4, 400, n);
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

/* ================================================================ training, in the lanes */

/* d[i][k] *= f'(y[i][k]) for n rows of K (image-major, row strides ds, ys) */
static void deriv_rows(float *restrict d, int ds, const float *restrict y, int ys, int n, int K)
{
    for (int i = 0; i < n; i++) {
        int k = 0;
        for (; k + VL <= K; k += VL)
            vstore(d + i * ds + k, vmul(vload(d + i * ds + k), vsquash_deriv(vload(y + i * ys + k))));
        if (k < K)
            vstore_first(d + i * ds + k, vmul(vload_first(d + i * ds + k, K - k),
                                              vsquash_deriv(vload_first(y + i * ys + k, K - k))), K - k);
    }
}

/* dw (M, K) += sum_i d[i][m] in[i][k], db (M,) += sum_i d[i][m]; d (n, M) and in (n, K)
 * image-major with row strides ds, is */
static void dense_bwd_w(float *restrict dw, float *restrict db, const float *restrict d, int ds,
                        const float *restrict in, int is, int n, int K, int M)
{
    /* db: per output, the images summed in order (vectors over the outputs) */
    for (int m0 = 0; m0 < M; m0 += VL) {
        const int c = M - m0 < VL ? M - m0 : VL;
        vf t = vzero();
        for (int i = 0; i < n; i++) t = vadd(t, vload_first(d + i * ds + m0, c));
        vstore_first(db + m0, vadd(vload_first(db + m0, c), t), c);
    }
    int m = 0;
    for (; m + 4 <= M; m += 4) {
        int k = 0;
        for (; k + 2 * VL <= K; k += 2 * VL) {
            vf acc[4][2];
            for (int a = 0; a < 4; a++) {
                acc[a][0] = vload(dw + (m + a) * K + k);
                acc[a][1] = vload(dw + (m + a) * K + k + VL);
            }
            for (int i = 0; i < n; i++) {
                const vf x0 = vload(in + i * is + k), x1 = vload(in + i * is + k + VL);
                for (int a = 0; a < 4; a++) {
                    const vf dv = vset1(d[i * ds + m + a]);
                    acc[a][0] = vfma(dv, x0, acc[a][0]);
                    acc[a][1] = vfma(dv, x1, acc[a][1]);
                }
            }
            for (int a = 0; a < 4; a++) {
                vstore(dw + (m + a) * K + k, acc[a][0]);
                vstore(dw + (m + a) * K + k + VL, acc[a][1]);
            }
        }
        for (; k < K; k += VL) {
            const int c = K - k < VL ? K - k : VL;
            vf acc[4];
            for (int a = 0; a < 4; a++) acc[a] = vload_first(dw + (m + a) * K + k, c);
            for (int i = 0; i < n; i++) {
                const vf x0 = vload_first(in + i * is + k, c);
                for (int a = 0; a < 4; a++) acc[a] = vfma(vset1(d[i * ds + m + a]), x0, acc[a]);
            }
            for (int a = 0; a < 4; a++) vstore_first(dw + (m + a) * K + k, acc[a], c);
        }
    }
    for (; m < M; m++)
        for (int k = 0; k < K; k += VL) {
            const int c = K - k < VL ? K - k : VL;
            vf acc = vload_first(dw + m * K + k, c);
            for (int i = 0; i < n; i++) acc = vfma(vset1(d[i * ds + m]), vload_first(in + i * is + k, c), acc);
            vstore_first(dw + m * K + k, acc, c);
        }
}

/* dx (n, K) = d (n, M) w (M, K), row strides xs, ds (overwrites dx). Tiles of BXI images x
 * 2 chunks, so each weight row is read n / BXI times. */
#if VL == 16
#define BXI 8
#else
#define BXI 4
#endif
static void dense_bwd_x(float *restrict dx, int xs, const float *restrict d, int ds,
                        const float *restrict w, int n, int K, int M)
{
    int i = 0;
    for (; i + BXI <= n; i += BXI) {
        int k = 0;
        for (; k + 2 * VL <= K; k += 2 * VL) {
            vf acc[BXI][2];
            for (int a = 0; a < BXI; a++) acc[a][0] = acc[a][1] = vzero();
            for (int m = 0; m < M; m++) {
                const vf w0 = vload(w + m * K + k), w1 = vload(w + m * K + k + VL);
                for (int a = 0; a < BXI; a++) {
                    const vf dv = vset1(d[(i + a) * ds + m]);
                    acc[a][0] = vfma(dv, w0, acc[a][0]);
                    acc[a][1] = vfma(dv, w1, acc[a][1]);
                }
            }
            for (int a = 0; a < BXI; a++) {
                vstore(dx + (i + a) * xs + k, acc[a][0]);
                vstore(dx + (i + a) * xs + k + VL, acc[a][1]);
            }
        }
        for (; k < K; k += VL) {
            const int c = K - k < VL ? K - k : VL;
            vf acc[BXI];
            for (int a = 0; a < BXI; a++) acc[a] = vzero();
            for (int m = 0; m < M; m++) {
                const vf w0 = vload_first(w + m * K + k, c);
                for (int a = 0; a < BXI; a++) acc[a] = vfma(vset1(d[(i + a) * ds + m]), w0, acc[a]);
            }
            for (int a = 0; a < BXI; a++) vstore_first(dx + (i + a) * xs + k, acc[a], c);
        }
    }
    for (; i < n; i++)
        for (int k = 0; k < K; k += VL) {
            const int c = K - k < VL ? K - k : VL;
            vf acc0 = vzero(), acc1 = vzero();
            int m = 0;
            for (; m + 2 <= M; m += 2) {
                acc0 = vfma(vset1(d[i * ds + m]), vload_first(w + m * K + k, c), acc0);
                acc1 = vfma(vset1(d[i * ds + m + 1]), vload_first(w + (m + 1) * K + k, c), acc1);
            }
            if (m < M) acc0 = vfma(vset1(d[i * ds + m]), vload_first(w + m * K + k, c), acc0);
            vstore_first(dx + i * xs + k, vadd(acc0, acc1), c);
        }
}

/* The weight-gradient correlations below take the 5 kernel rows in passes of NK rows, with
 * 5 NK accumulators (one per kernel entry), each a chain of dependent multiply-adds. With
 * 32 registers (AVX-512) the passes are 3 + 2 rows: 15 and 10 chains to cover the FMA
 * latency (a pass of one row has only 5; 2 + 2 + 1 before: an SGD step of 64 images, one
 * thread, C harness, min 1.00-1.05 -> 0.97-0.99 ms in five alternating runs); with 16
 * registers, 2 + 2 + 1. The split does not change the arithmetic: every accumulator sums
 * the same products in the same order (same bits). */
#if VL == 16
#define CORR_PASSES(FN, acc, ...) \
    do { FN(acc, 0, 3, __VA_ARGS__); FN(acc, 3, 2, __VA_ARGS__); } while (0)
#else
#define CORR_PASSES(FN, acc, ...) \
    do { FN(acc, 0, 2, __VA_ARGS__); FN(acc, 2, 2, __VA_ARGS__); FN(acc, 4, 1, __VA_ARGS__); } while (0)
#endif

/* Weight gradient of a 5x5 correlation in the lanes, NK kernel rows from k0:
 *   acc[ki][kj] += sum_{y < Ho, x < Wo} d[y][x] in[y + ki][x + kj]   (ki = k0 .. k0+NK-1)
 * d row y at d + y * ds, in row r at in + r * is (vectors of LN floats); Wo % XB == 0. */
#define CORR_W(NAME, XB)                                                                         \
static inline void NAME(vf *restrict acc, int k0, int NK, const float *restrict d, size_t ds,   \
                        const float *restrict in, size_t is, int Ho, int Wo)                     \
{                                                                                                \
    vf a[3][5];                                                                                  \
    for (int t = 0; t < NK; t++)                                                                 \
        for (int kj = 0; kj < 5; kj++) a[t][kj] = acc[(k0 + t) * 5 + kj];                         \
    for (int y = 0; y < Ho; y++)                                                                 \
        for (int x0 = 0; x0 < Wo; x0 += XB) {                                                    \
            vf dv[XB];                                                                           \
            _Pragma("GCC unroll 16")                                                             \
            for (int xx = 0; xx < XB; xx++) dv[xx] = vloada(d + y * ds + (x0 + xx) * LN);        \
            for (int t = 0; t < NK; t++) {                                                       \
                const float *ir = in + (y + k0 + t) * is + x0 * LN;                              \
                _Pragma("GCC unroll 16")                                                         \
                for (int q = 0; q < XB + 4; q++) {                                               \
                    const vf sv = vloada(ir + q * LN);                                           \
                    _Pragma("GCC unroll 5")                                                      \
                    for (int kj = 0; kj < 5; kj++)                                               \
                        if (q - kj >= 0 && q - kj < XB) a[t][kj] = vfma(dv[q - kj], sv, a[t][kj]); \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    for (int t = 0; t < NK; t++)                                                                 \
        for (int kj = 0; kj < 5; kj++) acc[(k0 + t) * 5 + kj] = a[t][kj];                         \
}

#if VL == 16
CORR_W(corr_w_c3, 10)
CORR_W(corr_w_c1, 7)
#else
CORR_W(corr_w_c3, 5)
CORR_W(corr_w_c1, 4)
#endif

/* dw[0..25) += the lane sums of acc[0..25) */
static void add_hsums25(float *restrict dw, const vf *restrict acc)
{
    int k = 0;
    for (; k + 4 <= 25; k += 4)
        vhsum4_add(dw + k, acc[k], acc[k + 1], acc[k + 2], acc[k + 3]);
    dw[24] += vhsum(acc[24]);
}

/* grad[0..25) += sum over the lanes and positions of d (Ho x Wo) correlated with in */
#define CORR_GRAD(FN, grad, d, ds, in, is, Ho, Wo)                                               \
    do {                                                                                         \
        vf acc_[25];                                                                             \
        for (int k_ = 0; k_ < 25; k_++) acc_[k_] = vzero();                                       \
        CORR_PASSES(FN, acc_, d, ds, in, is, Ho, Wo);                                            \
        add_hsums25(grad, acc_);                                                                 \
    } while (0)

/* Input gradient of C3 for S2 map c, row y, columns [x0, x0 + XB):
 *   out[x] = sum over the pairs q reading map c (pair order), ki, kj:
 *            w[q][ki][kj] d[m_q][y - ki][x - kj]   (valid indices only)
 * d (16, 10, 10, LN) lanes, then times f'(S2) -> dpre (6, 14, 14, LN). */
#if VL == 16
#define DS2_XB 14
#else
#define DS2_XB 7
#endif
static inline void c3_bwd_x_row(float *restrict dpre, const float *restrict S2, const float *restrict d,
                                const float *restrict w, const int *restrict pairs, int npairs,
                                const int32_t *restrict pout, int c, int y, int x0)
{
    const int jlo = x0 - 4 < 0 ? 0 : x0 - 4;
    vf acc[DS2_XB];
    for (int xx = 0; xx < DS2_XB; xx++) acc[xx] = vzero();
    for (int t = 0; t < npairs; t++) {
        const int q = pairs[t];
        for (int ki = 0; ki < 5; ki++) {
            const int i = y - ki;
            if (i < 0 || i >= 10) continue;
            const float *dr = d + ((pout[q] * 10 + i) * 10) * LN;
            vf dv[DS2_XB + 4 < 10 ? DS2_XB + 4 : 10];
            _Pragma("GCC unroll 16")
            for (int jj = 0; jj < (DS2_XB + 4 < 10 ? DS2_XB + 4 : 10); jj++)
                if (jlo + jj < 10) dv[jj] = vloada(dr + (jlo + jj) * LN);
            _Pragma("GCC unroll 5")
            for (int kj = 0; kj < 5; kj++) {
                const vf wv = vset1(w[q * 25 + ki * 5 + kj]);
                _Pragma("GCC unroll 16")
                for (int xx = 0; xx < DS2_XB; xx++) {
                    const int j = x0 + xx - kj;
                    if (j >= 0 && j < 10) acc[xx] = vfma(wv, dv[j - jlo], acc[xx]);
                }
            }
        }
    }
    const float *sr = S2 + ((c * 14 + y) * 14 + x0) * LN;
    float *pr = dpre + ((c * 14 + y) * 14 + x0) * LN;
    for (int xx = 0; xx < DS2_XB; xx++)
        vstorea(pr + xx * LN, vmul(acc[xx], vsquash_deriv(vloada(sr + xx * LN))));
}

/* Subsampling backward in the lanes, with the squash of the layer below: d (C, H/2, W/2, LN)
 * gradient wrt the subsampling's pre-activation; y rows (C maps of H rows of W vectors, row
 * r of map c at y + c * cs + r * rs) the squashed input, overwritten by the gradient wrt its
 * pre-activation; coef/bias gradients accumulate into gc, gb. */
static void pool_bwd_lanes(float *restrict y, size_t cs, size_t rs, const float *restrict d,
                           const float *restrict coef, float *restrict gc, float *restrict gb,
                           int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const vf cf = vset1(coef[c]);
        vf ac = vzero(), ab = vzero();
        for (int r = 0; r < Ho; r++)
            for (int q = 0; q < Wo; q++) {
                const vf dv = vloada(d + ((c * Ho + r) * Wo + q) * LN);
                float *p0 = y + c * cs + (2 * r) * rs + (2 * q) * LN, *p1 = p0 + rs;
                const vf a = vloada(p0), b = vloada(p0 + LN), e = vloada(p1), f = vloada(p1 + LN);
                ac = vfma(dv, vadd(vadd(a, b), vadd(e, f)), ac);
                ab = vadd(ab, dv);
                const vf g = vmul(cf, dv);
                vstorea(p0, vmul(g, vsquash_deriv(a)));
                vstorea(p0 + LN, vmul(g, vsquash_deriv(b)));
                vstorea(p1, vmul(g, vsquash_deriv(e)));
                vstorea(p1 + LN, vmul(g, vsquash_deriv(f)));
            }
        gc[c] += vhsum(ac);
        gb[c] += vhsum(ab);
    }
}

/* sum over the lanes and count vectors */
static float lanes_sum(const float *restrict a, int count, size_t stride)
{
    vf acc0 = vzero(), acc1 = vzero();
    int k = 0;
    for (; k + 2 <= count; k += 2) {
        acc0 = vadd(acc0, vloada(a + k * stride));
        acc1 = vadd(acc1, vloada(a + (k + 1) * stride));
    }
    if (k < count) acc0 = vadd(acc0, vloada(a + k * stride));
    return vhsum(vadd(acc0, acc1));
}

/* workspace of grad_block (floats) */
#define T_X 0                               /* (32, 32, LN) */
#define T_C1 (T_X + 1024 * LN)              /* (28 rows, 6, 28, LN), then its gradient */
#define T_S2 (T_C1 + 4704 * LN)             /* (6, 14, 14, LN) */
#define T_C3 (T_S2 + 1176 * LN)             /* (16, 10, 10, LN), then its gradient */
#define T_S4 (T_C3 + 1600 * LN)             /* (16, 5, 5, LN) */
#define T_S4T (T_S4 + 400 * LN)             /* (LN, 400) */
#define T_C5 (T_S4T + 400 * LN)             /* (LN, C5S) */
#define T_F6 (T_C5 + C5S * LN)              /* (LN, F6S) */
#define T_OUT (T_F6 + F6S * LN)             /* (LN, OUTS) */
#define T_DOUT (T_OUT + OUTS * LN)          /* (LN, OUTS) */
#define T_DF6 (T_DOUT + OUTS * LN)          /* (LN, F6S) */
#define T_DC5 (T_DF6 + F6S * LN)            /* (LN, C5S) */
#define T_DS4T (T_DC5 + C5S * LN)           /* (LN, 400) */
#define T_DS4 (T_DS4T + 400 * LN)           /* (16, 5, 5, LN) */
#define T_DS2 (T_DS4 + 400 * LN)            /* (6, 14, 14, LN) */
#define TRAIN_WS (T_DS2 + 1176 * LN)

static void grad_block(float *restrict grad, float *restrict losses, float *restrict out,
                       const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                       float scale, int n, float *restrict ws)
{
    float *X = ws + T_X, *C1 = ws + T_C1, *S2 = ws + T_S2, *C3 = ws + T_C3, *S4 = ws + T_S4;
    float *S4T = ws + T_S4T, *C5 = ws + T_C5, *F6 = ws + T_F6, *O = ws + T_OUT;
    float *dO = ws + T_DOUT, *dF6 = ws + T_DF6, *dC5 = ws + T_DC5, *dS4T = ws + T_DS4T;
    float *dS4 = ws + T_DS4, *dS2 = ws + T_DS2;

    /* forward, keeping every layer */
    conv_lanes(net, x, n, 1, X, C1, S2, C3, S4, NULL);
    vscatter_lanes(S4T, 400, S4, 400, n);
    dense_layers(C5, F6, O, OUTS, S4T, 400, n, net);

    /* the loss and its gradient wrt the head's output, per image */
    for (int l = 0; l < n; l++) {
        const float *o = O + l * OUTS;
        float *d = dO + l * OUTS;
        for (int m = 0; m < 10; m++) d[m] = 0.0f;
        const float loss = loss_backward_one(d, o, labels[l], scale, net->head);
        if (losses) losses[l] = loss;
        if (out) memcpy(out + l * 10, o, 10 * sizeof(float));
    }

    /* head, F6, C5: image-major */
    if (net->head == LENET_HEAD_RBF) {
        const float *proto = P(net, LENET_OFF_OUT_W);
        for (int l = 0; l < n; l++)
            for (int k = 0; k < 84; k += VL) {
                const int c = 84 - k < VL ? 84 - k : VL;
                const vf f = vload_first(F6 + l * F6S + k, c);
                vf acc = vzero();
                for (int m = 0; m < 10; m++)
                    acc = vfma(vset1(2.0f * dO[l * OUTS + m]), vsub(f, vload_first(proto + m * 84 + k, c)), acc);
                vstore_first(dF6 + l * F6S + k, acc, c);
            }
    } else {
        dense_bwd_w(grad + LENET_OFF_OUT_W, grad + LENET_OFF_OUT_B, dO, OUTS, F6, F6S, n, 84, 10);
        dense_bwd_x(dF6, F6S, dO, OUTS, P(net, LENET_OFF_OUT_W), n, 84, 10);
    }
    deriv_rows(dF6, F6S, F6, F6S, n, 84);
    dense_bwd_w(grad + LENET_OFF_F6_W, grad + LENET_OFF_F6_B, dF6, F6S, C5, C5S, n, 120, 84);
    dense_bwd_x(dC5, C5S, dF6, F6S, P(net, LENET_OFF_F6_W), n, 120, 84);
    deriv_rows(dC5, C5S, C5, C5S, n, 120);
    dense_bwd_w(grad + LENET_OFF_C5_W, grad + LENET_OFF_C5_B, dC5, C5S, S4T, 400, n, 400, 120);
    dense_bwd_x(dS4T, 400, dC5, C5S, P(net, LENET_OFF_C5_W), n, 400, 120);
    deriv_rows(dS4T, 400, S4T, 400, n, 400);
    vgather_lanes(dS4, dS4T, 400, 400, n);

    /* S4 (and C3's squash): C3 becomes the gradient wrt its pre-activation */
    pool_bwd_lanes(C3, 100 * LN, 10 * LN, dS4, P(net, LENET_OFF_S4_W),
                   grad + LENET_OFF_S4_W, grad + LENET_OFF_S4_B, 16, 10, 10);

    /* C3: bias, weights (per pair), input (per S2 map, with S2's squash) */
    for (int m = 0; m < 16; m++) grad[LENET_OFF_C3_B + m] += lanes_sum(C3 + m * 100 * LN, 100, LN);
    for (int q = 0; q < LENET_C3_PAIRS; q++)
        CORR_GRAD(corr_w_c3, grad + LENET_OFF_C3_W + q * 25, C3 + net->c3_out[q] * 100 * LN, 10 * LN,
                  S2 + net->c3_in[q] * 196 * LN, 14 * LN, 10, 10);
    {
        int pairs[6][LENET_C3_PAIRS], np[6] = {0};
        for (int q = 0; q < LENET_C3_PAIRS; q++) pairs[net->c3_in[q]][np[net->c3_in[q]]++] = q;
        const float *w3 = P(net, LENET_OFF_C3_W);
        for (int c = 0; c < 6; c++)
            for (int y = 0; y < 14; y++)
                for (int x0 = 0; x0 < 14; x0 += DS2_XB)
                    c3_bwd_x_row(dS2, S2, C3, w3, pairs[c], np[c], net->c3_out, c, y, x0);
    }

    /* S2 (and C1's squash): C1 becomes the gradient wrt its pre-activation */
    pool_bwd_lanes(C1, 28 * LN, 168 * LN, dS2, P(net, LENET_OFF_S2_W),
                   grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B, 6, 28, 28);

    /* C1: bias and weights */
    for (int m = 0; m < 6; m++) {
        float t = 0.0f;
        for (int i = 0; i < 28; i++) t += lanes_sum(C1 + (i * 168 + m * 28) * LN, 28, LN);
        grad[LENET_OFF_C1_B + m] += t;
        CORR_GRAD(corr_w_c1, grad + LENET_OFF_C1_W + m * 25, C1 + m * 28 * LN, 168 * LN, X, 32 * LN, 28, 28);
    }
}

/* ================================================================ training, one image */

/* Weight gradient of a 5x5 correlation for one image, spatial layout, NK kernel rows from k0:
 *   acc[ki][kj] += sum_{i < Ho} d[i] * src[kj][i + ki]   (vectors over the columns)
 * d: Ho rows of NV vectors (zero past the valid columns); src: pre-shifted rows (build_xs,
 * build_ss layout), row r of shift kj at src + kj * kjs + r * rs, NV vectors. */
#define CORR_ONE(NAME, NV)                                                                       \
static inline void NAME(vf *restrict acc, int k0, int NK, const float *restrict d, int Ho,      \
                        const float *restrict src, size_t kjs, size_t rs)                        \
{                                                                                                \
    vf a[3][5];                                                                                  \
    for (int t = 0; t < NK; t++)                                                                 \
        for (int kj = 0; kj < 5; kj++) a[t][kj] = acc[(k0 + t) * 5 + kj];                         \
    for (int i = 0; i < Ho; i++)                                                                 \
        for (int v = 0; v < NV; v++) {                                                           \
            const vf dv = vloada(d + (i * NV + v) * VL);                                         \
            for (int t = 0; t < NK; t++)                                                         \
                for (int kj = 0; kj < 5; kj++)                                                   \
                    a[t][kj] = vfma(dv, vloada(src + kj * kjs + (i + k0 + t) * rs + v * VL), a[t][kj]); \
        }                                                                                        \
    for (int t = 0; t < NK; t++)                                                                 \
        for (int kj = 0; kj < 5; kj++) acc[(k0 + t) * 5 + kj] = a[t][kj];                         \
}
CORR_ONE(corr_one_c1, C1_NV)
CORR_ONE(corr_one_c3, C3_NV)

#if VL == 16
/* C3's weight gradient of one pair with 32 registers (AVX-512, one vector per row):
 * grad[ki][kj] += hsum(sum_{i < 10} d[i] * src[kj][i + ki]), the ten rows of d and, for
 * each kj, the fourteen shifted input rows loaded once (each accumulator sums over i in
 * order, as corr_one_c3 does: the same bits). d: 10 rows of 16 floats; src: build_ss's
 * (5, 14, 16) of the pair's input map. */
static inline void c3_one_grad_w(float *restrict grad, const float *restrict d,
                                 const float *restrict src)
{
    vf dv[10], acc[25];
    for (int i = 0; i < 10; i++) dv[i] = vloada(d + i * 16);
    for (int kj = 0; kj < 5; kj++) {
        vf sv[14], a[5];
        for (int r = 0; r < 14; r++) sv[r] = vloada(src + (kj * 14 + r) * 16);
        for (int ki = 0; ki < 5; ki++) a[ki] = vzero();
        for (int i = 0; i < 10; i++)
            for (int ki = 0; ki < 5; ki++) a[ki] = vfma(dv[i], sv[i + ki], a[ki]);
        for (int ki = 0; ki < 5; ki++) acc[ki * 5 + kj] = a[ki];
    }
    add_hsums25(grad, acc);
}
#endif

#define CORR_ONE_GRAD(FN, grad, d, Ho, src, kjs, rs)                                             \
    do {                                                                                         \
        vf acc_[25];                                                                             \
        for (int k_ = 0; k_ < 25; k_++) acc_[k_] = vzero();                                       \
        CORR_PASSES(FN, acc_, d, Ho, src, kjs, rs);                                              \
        add_hsums25(grad, acc_);                                                                 \
    } while (0)

/* workspace of sdlm_sample (floats), after acts, d, dpre (3 RUP(LENET_NACTS)) */
#define G_XS 0                              /* (5, 32, 32) build_xs */
#define G_SS (G_XS + 5 * 32 * 32)           /* (6, 5, 14, 16) build_ss */
#define G_D3 (G_SS + 6 * 5 * 14 * 16)       /* (16, 10, 16) dC3 pre-activation, padded rows */
#define G_D1 (G_D3 + 16 * 10 * 16)          /* (6, 28, 32) dC1 pre-activation, padded rows */
#define G_T (G_D1 + 6 * 28 * 32)            /* (5, 14, 32) shifted partial sums of dS2 */
#define G_FWD (G_T + 5 * 14 * 32)           /* forward_one's workspace */
#define GRAD_ONE_WS (G_FWD + ONE_WS)

/* dx (K) = sum_m d[m] w[m][:] with the weights as they come in, and in the same pass
 * w[m][k] -= step[m][k] (d[m] in[k]): a dense layer's backward fused with its SDLM update,
 * so the weight gradient is never stored. w and step (M, K), d (M,), in (K,). */
static void dense_bwd_update(float *restrict dx, float *w, const float *restrict step,
                             const float *restrict d, const float *restrict in, int K, int M)
{
    /* tiles of 5 vectors of columns: dx and in stay in registers over the M rows */
    for (int k0 = 0; k0 < K; k0 += 5 * VL) {
        vf acc[5], iv[5];
        int cnt[5];
        for (int t = 0; t < 5; t++) {
            const int c = K - k0 - t * VL;
            cnt[t] = c < 0 ? 0 : c > VL ? VL : c;
            acc[t] = vzero();
            iv[t] = vload_first(in + k0 + t * VL, cnt[t]);
        }
        if (cnt[4] == VL) {
            for (int m = 0; m < M; m++) {
                const vf dm = vset1(d[m]);
                float *wr = w + (size_t)m * K + k0;
                const float *sr = step + (size_t)m * K + k0;
                for (int t = 0; t < 5; t++) {
                    const vf wv = vload(wr + t * VL);
                    acc[t] = vfma(dm, wv, acc[t]);
                    vstore(wr + t * VL, vfnma(vload(sr + t * VL), vmul(dm, iv[t]), wv));
                }
            }
        } else {
            for (int m = 0; m < M; m++) {
                const vf dm = vset1(d[m]);
                float *wr = w + (size_t)m * K + k0;
                const float *sr = step + (size_t)m * K + k0;
                for (int t = 0; t < 5; t++) {
                    if (!cnt[t]) break;
                    const vf wv = vload_first(wr + t * VL, cnt[t]);
                    acc[t] = vfma(dm, wv, acc[t]);
                    vstore_first(wr + t * VL, vfnma(vload_first(sr + t * VL, cnt[t]), vmul(dm, iv[t]), wv), cnt[t]);
                }
            }
        }
        for (int t = 0; t < 5; t++)
            if (cnt[t]) vstore_first(dx + k0 + t * VL, acc[t], cnt[t]);
    }
}

/* Subsampling backward of one image, spatial layout, with the squash of the layer below:
 * dp (C, H/2, W/2) the gradient wrt the subsampling's pre-activation, y (C, H, W) its
 * squashed input; dy rows (C * H rows of ow >= W floats) get coef dp spread over each 2x2
 * block times f'(y) (zero past column W); coef and bias gradients accumulate into gc, gb.
 * y rows are read 2 VL floats from their start (past a row's end: finite values of the
 * next rows or layers, times zero lanes of dp). */
static void pool_bwd_one(float *restrict dy, int ow, const float *restrict y,
                         const float *restrict dp, const float *restrict coef,
                         float *restrict gc, float *restrict gb, int C, int H, int W)
{
    const int Ho = H / 2, Wo = W / 2;
    for (int c = 0; c < C; c++) {
        const vf cf = vset1(coef[c]);
        vf sc = vzero(), sb = vzero();
        for (int i = 0; i < Ho; i++) {
            const float *dr = dp + (c * Ho + i) * Wo;
            const float *r0 = y + (c * H + 2 * i) * W, *r1 = r0 + W;
            float *o0 = dy + (c * H + 2 * i) * ow, *o1 = o0 + ow;
            for (int t = 0; t * VL < Wo; t++) {
                const vf dv = vload_first(dr + t * VL, Wo - t * VL < VL ? Wo - t * VL : VL);
                const int k = 2 * t * VL;
                vf e0, q0, e1, q1;
                vdeint(vload(r0 + k), vload(r0 + k + VL), &e0, &q0);
                vdeint(vload(r1 + k), vload(r1 + k + VL), &e1, &q1);
                sc = vfma(dv, vadd(vadd(e0, q0), vadd(e1, q1)), sc);
                sb = vadd(sb, dv);
                const vf g = vmul(cf, dv), lo = vdup_lo(g);
                vstorea(o0 + k, vmul(lo, vsquash_deriv(vload(r0 + k))));
                vstorea(o1 + k, vmul(lo, vsquash_deriv(vload(r1 + k))));
                if (k + VL < ow) {
                    const vf hi = vdup_hi(g);
                    vstorea(o0 + k + VL, vmul(hi, vsquash_deriv(vload(r0 + k + VL))));
                    vstorea(o1 + k + VL, vmul(hi, vsquash_deriv(vload(r1 + k + VL))));
                }
            }
        }
        gc[c] += vhsum(sc);
        gb[c] += vhsum(sb);
    }
}

/* p[i] -= step[i] * g[i], then g[i] = 0, for i in [lo, hi) */
static void step_clear(float *p, float *restrict g, const float *restrict step, int lo, int hi)
{
    int k = lo;
    for (; k + VL <= hi; k += VL) {
        vstore(p + k, vfnma(vload(step + k), vload(g + k), vload(p + k)));
        vstore(g + k, vzero());
    }
    for (; k < hi; k++) {
        p[k] -= step[k] * g[k];
        g[k] = 0.0f;
    }
}

/* One SDLM sample: the spatial forward; the loss and the head (portable code, vectorised by
 * the compiler); F6 and C5 backward fused with their weights' update; S4 (portable); C3,
 * S2 and C1 in the spatial layout. Every gradient is taken at the incoming weights (each
 * layer's weights are updated only after back-propagating through them); the parameters
 * not updated in place collect their gradient in g (zero on entry, zero again on return)
 * and take the step at the end. */
static float sdlm_sample(float *params, const float *restrict step, float *restrict grad,
                         const lenet_net *net, const float *restrict x, int label,
                         float *restrict ws)
{
    float *acts = ws, *d = ws + RUP(LENET_NACTS), *dpre = d + RUP(LENET_NACTS);
    float *g = dpre + RUP(LENET_NACTS);
    float *xs = g + G_XS, *ss = g + G_SS, *d3 = g + G_D3, *d1 = g + G_D1, *T = g + G_T;
    float o[10];
    forward_one_keep(o, acts, net, x, g + G_FWD, xs, ss);   /* xs, ss kept for the backward */
    const float *c3 = acts + LENET_ACT_C3, *s4 = acts + LENET_ACT_S4, *c5 = acts + LENET_ACT_C5;
    const float *f6 = acts + LENET_ACT_F6, *out = acts + LENET_ACT_OUT;

    /* the loss, the head */
    float *dout = dpre + LENET_ACT_OUT, *df6 = d + LENET_ACT_F6;
    for (int m = 0; m < 10; m++) dout[m] = 0.0f;
    for (int k = 0; k < 84; k++) df6[k] = 0.0f;
    const float loss = loss_backward_one(dout, out, label, 1.0f, net->head);
    head_backward_one(df6, grad, dout, f6, net);
    /* F6, C5: fused with their update; biases into g */
    float *dpf6 = dpre + LENET_ACT_F6, *dc5 = d + LENET_ACT_C5, *dpc5 = dpre + LENET_ACT_C5;
    float *ds4 = d + LENET_ACT_S4, *dps4 = dpre + LENET_ACT_S4;
    for (int k = 0; k < 84; k++) dpf6[k] = df6[k] * squash_deriv(f6[k]);
    for (int m = 0; m < 84; m++) grad[LENET_OFF_F6_B + m] += dpf6[m];
    dense_bwd_update(dc5, params + LENET_OFF_F6_W, step + LENET_OFF_F6_W, dpf6, c5, 120, 84);
    for (int k = 0; k < 120; k++) dpc5[k] = dc5[k] * squash_deriv(c5[k]);
    for (int m = 0; m < 120; m++) grad[LENET_OFF_C5_B + m] += dpc5[m];
    dense_bwd_update(ds4, params + LENET_OFF_C5_W, step + LENET_OFF_C5_W, dpc5, s4, 400, 120);
    for (int k = 0; k < 400; k++) dps4[k] = ds4[k] * squash_deriv(s4[k]);
    /* S4 and C3's squash: d3 (16, 10, 16) = the gradient wrt C3's pre-activation in rows
     * padded with zeros to 16 */
    const float *s2 = acts + LENET_ACT_S2;
    pool_bwd_one(d3, 16, c3, dps4, P(net, LENET_OFF_S4_W), grad + LENET_OFF_S4_W,
                 grad + LENET_OFF_S4_B, 16, 10, 10);

    /* C3: bias, weights per pair */
    for (int m = 0; m < 16; m++) grad[LENET_OFF_C3_B + m] += lanes_sum(d3 + m * 160, 160 / VL, VL);
    for (int q = 0; q < LENET_C3_PAIRS; q++) {
#if VL == 16
        c3_one_grad_w(grad + LENET_OFF_C3_W + q * 25, d3 + net->c3_out[q] * 160,
                      ss + net->c3_in[q] * 5 * 14 * 16);
#else
        CORR_ONE_GRAD(corr_one_c3, grad + LENET_OFF_C3_W + q * 25, d3 + net->c3_out[q] * 160, 10,
                      ss + net->c3_in[q] * 5 * 14 * 16, 14 * 16, 16);
#endif
    }

    /* C3's input gradient, per S2 map c: T[kj][r] = sum over the pairs q reading c and ki of
     * w[q][ki][kj] d3[m_q][r - ki] (rows of 16 at offset 16 of 32, zeros before), then
     * dS2[c][r][s] = sum_kj T[kj][r][s - kj], times f'(S2) */
    const float *w3 = P(net, LENET_OFF_C3_W);
    float *ds2 = dpre + LENET_ACT_S2;
    for (int t = 0; t < 5 * 14; t++)
        for (int v = 0; v < 16 / VL; v++) vstorea(T + t * 32 + v * VL, vzero());
    for (int c = 0; c < 6; c++) {
        for (int kj = 0; kj < 5; kj++)
            for (int v = 0; v < C3_NV; v++) {
                vf acc[14];
                for (int r = 0; r < 14; r++) acc[r] = vzero();
                for (int q = 0; q < LENET_C3_PAIRS; q++) {
                    if (net->c3_in[q] != c) continue;
                    const float *dm = d3 + net->c3_out[q] * 160 + v * VL;
                    vf dv[10];   /* loaded once for the five ki */
                    for (int i = 0; i < 10; i++) dv[i] = vloada(dm + i * 16);
                    for (int ki = 0; ki < 5; ki++) {
                        const vf wv = vset1(w3[q * 25 + ki * 5 + kj]);
                        for (int i = 0; i < 10; i++) acc[i + ki] = vfma(wv, dv[i], acc[i + ki]);
                    }
                }
                for (int r = 0; r < 14; r++) vstorea(T + (kj * 14 + r) * 32 + 16 + v * VL, acc[r]);
            }
        for (int r = 0; r < 14; r++)
            for (int v = 0; v < C3_NV; v++) {
                vf sum = vload(T + r * 32 + 16 + v * VL);
                for (int kj = 1; kj < 5; kj++) sum = vadd(sum, vload(T + (kj * 14 + r) * 32 + 16 - kj + v * VL));
                const int cnt = 14 - v * VL < VL ? 14 - v * VL : VL;
                if (cnt <= 0) continue;
                const float *sr = s2 + c * 196 + r * 14 + v * VL;
                vstore_first(ds2 + c * 196 + r * 14 + v * VL,
                             vmul(sum, vsquash_deriv(vload_first(sr, cnt))), cnt);
            }
    }

    /* S2 and C1's squash: d1 (6, 28, 32) = the gradient wrt C1's pre-activation */
    pool_bwd_one(d1, 32, acts + LENET_ACT_C1, ds2, P(net, LENET_OFF_S2_W),
                 grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B, 6, 28, 28);
    for (int m = 0; m < 6; m++) {
        grad[LENET_OFF_C1_B + m] += lanes_sum(d1 + m * 28 * 32, 28 * C1_NV, VL);
        CORR_ONE_GRAD(corr_one_c1, grad + LENET_OFF_C1_W + m * 25, d1 + m * 28 * 32, 28, xs, 32 * 32, 32);
    }

    /* the step for the parameters whose gradient is in g */
    step_clear(params, grad, step, 0, LENET_OFF_C5_W);
    step_clear(params, grad, step, LENET_OFF_C5_B, LENET_OFF_F6_W);
    step_clear(params, grad, step, LENET_OFF_F6_B, LENET_NPARAMS);
    return loss;
}

static void squash_n(float *out, const float *in, int64_t n)
{
    int64_t k = 0;
    for (; k + VL <= n; k += VL) vstore(out + k, vsquash(vload(in + k)));
    if (k < n) vstore_first(out + k, vsquash(vload_first(in + k, (int)(n - k))), (int)(n - k));
}

/* sgd_update (layers.c), vectorised: v = momentum v + (g + decay p), p -= lr v where
 * mask != 0; multiplies and adds kept separate so that every lane rounds as the portable
 * loop does */
static void sgd_update_simd(float *restrict p, float *restrict v, const float *restrict g,
                            const uint8_t *restrict mask, float lr, float momentum, float decay,
                            int64_t n)
{
    const vf vm = vset1(momentum), vd = vset1(decay), vl = vset1(lr);
    int64_t k = 0;
    for (; k + VL <= n; k += VL) {
        const vf pv = vload(p + k), vv = vload(v + k);
        const vf vn = vadd(vmul(vm, vv), vadd(vload(g + k), vmul(vd, pv)));
        const vf pn = vsub(pv, vmul(vl, vn));
        const vf keep = vmask_bytes(mask + k);
        vstore(v + k, vblend(keep, vn, vv));
        vstore(p + k, vblend(keep, pn, pv));
    }
    for (; k < n; k++) {
        if (!mask[k]) continue;
        v[k] = momentum * v[k] + (g[k] + decay * p[k]);
        p[k] -= lr * v[k];
    }
}

#define MAXF(a, b) ((a) > (b) ? (a) : (b))

const lenet_simd_kernels LENET_SIMD_TABLE = {
    .lanes = LN,
    .ws_floats = MAXF(MAXF(BLOCK_WS, TRAIN_WS), 3 * RUP(LENET_NACTS) + GRAD_ONE_WS),
    .forward_one = forward_one,
    .forward_block = forward_block,
    .grad_block = grad_block,
    .squash = squash_n,
    .sdlm_sample = sdlm_sample,
    .sgd_update = sgd_update_simd,
};
