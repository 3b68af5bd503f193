/*
 * The SIMD forward (simd_net.h: the layouts, the variants, the workspaces): one image in
 * the spatial layout (forward_one), a block of VL images in the lanes (forward_block), the
 * element-wise squash, and the variant's kernel table (simd_api.h).
 */
#include "simd_net.h"

/* ================================================================ dense (image-major) */

/* One tile of IB images x MB outputs: out[i * os + m] = hsum(sum_k w[m][k] in[i][k]) + b[m].
 * pf, if not NULL: the next MB weight rows, prefetched into L1 as these are read (one
 * image streams every weight from L2 once: the next rows arrive while these are used). */
#define DENSE_TILE(IB, MB)                                                                       \
static inline void dense_tile_##IB##_##MB(float *restrict out, int os, const float *restrict in, \
                                          int is, const float *restrict w,                       \
                                          const float *restrict b, int K, const float *pf)       \
{                                                                                                \
    vf acc[IB][MB];                                                                              \
    for (int i = 0; i < IB; i++)                                                                 \
        for (int m = 0; m < MB; m++) acc[i][m] = vzero();                                        \
    int k = 0;                                                                                   \
    for (; k + VL <= K; k += VL) {                                                               \
        vf xv[IB];                                                                               \
        for (int i = 0; i < IB; i++) xv[i] = vload(in + i * is + k);                             \
        if (VL == 16 && pf)                                                                      \
            for (int m = 0; m < MB; m++) __builtin_prefetch(pf + m * K + k, 0, 3);               \
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
static void dense_forward_rows(float *restrict out, int os, const float *restrict in, int is,
                               const float *restrict w, const float *restrict b, int n, int K, int M)
{
    /* weight rows outer, image groups inner: DMB rows of weights are read from L2 once
     * and stay in L1 for every image group (the inputs of a block fit in L1) */
    const int nb = n - n % DIB;
    int m = 0;
    for (; m + DMB <= M; m += DMB)
        for (int i = 0; i < nb; i += DIB)
            DENSE_TILE_BLOCK(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K, NULL);
    for (; m < M; m++)
        for (int i = 0; i < nb; i += DIB)
            DENSE_TILE_BLOCK1(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K, NULL);
    int i = nb;
    for (; i < n; i++) {
        int m = 0;
        for (; m + 8 <= M; m += 8)
            dense_tile_1_8(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K,
                           m + 16 <= M ? w + (m + 8) * K : NULL);
        for (; m < M; m++) dense_tile_1_1(out + i * os + m, os, in + i * is, is, w + m * K, b + m, K, NULL);
    }
}

/* Euclidean RBF: out[i][m] = hsum(sum_k (in[i][k] - proto[m][k])^2) */
static void rbf_forward_rows(float *restrict out, int os, const float *restrict in, int is,
                             const float *restrict proto, int n, int K, int M)
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

void dense_layers_forward(float *restrict c5, float *restrict f6, float *restrict out, int os,
                          const float *restrict s4, int s4s, const lenet_net *net, int n)
{
    dense_forward_rows(c5, C5S, s4, s4s, net_param(net, LENET_OFF_C5_W), net_param(net, LENET_OFF_C5_B),
                       n, 400, LENET_C5);
    for (int i = 0; i < n; i++) squash_array(c5 + i * C5S, c5 + i * C5S, LENET_C5);
    dense_forward_rows(f6, F6S, c5, C5S, net_param(net, LENET_OFF_F6_W), net_param(net, LENET_OFF_F6_B),
                       n, LENET_C5, LENET_F6);
    for (int i = 0; i < n; i++) squash_array(f6 + i * F6S, f6 + i * F6S, LENET_F6);
    if (net->head == LENET_HEAD_RBF)
        rbf_forward_rows(out, os, f6, F6S, net_param(net, LENET_OFF_OUT_W), n, LENET_F6, LENET_OUT);
    else
        dense_forward_rows(out, os, f6, F6S, net_param(net, LENET_OFF_OUT_W),
                           net_param(net, LENET_OFF_OUT_B), n, LENET_F6, LENET_OUT);
}

/* ================================================================ one image, spatial */

/* 2x2 subsampling of C maps (H, W) (rows readable 2 VL floats from their start), then
 * squash: out (C, H/2, W/2). */
static void pool_forward_spatial(float *restrict out, const float *restrict in, const float *restrict coef,
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
    squash_array(out, out, C * Ho * Wo);
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
static void build_xs(float *restrict xs, const float *restrict x)
{
    for (int kj = 0; kj < 5; kj++)
        for (int r = 0; r < 32; r++)
            for (int v = 0; v < C1_NV; v++) {
                const int c0 = v * VL + kj, cnt = 32 - c0 < VL ? 32 - c0 : VL;
                vstorea(xs + (kj * 32 + r) * 32 + v * VL, vload_first(x + r * 32 + c0, cnt));
            }
}

static void c1_forward_spatial(float *restrict c1, float *restrict xs, const float *restrict x,
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
    squash_array(c1, c1, 6 * 784);
}

/* build_ss: C3's input as the backward (sdlm_sample, simd_sdlm.c) reads it, ss (6, 5, 14, 16):
 * ss[c][kj][r][t] = s2[c][r][kj + t] (zeros past the row), every row 16 / VL aligned vectors */
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

#if VL == 16
/* C3 of one image with 16 lanes: c3 (16, 10, 10) pre-activation, the 100 outputs of a map
 * packed row-major (p = 10 i + j) in C3P_NV = 7 vectors (89 % of the lanes used, where one
 * 16-lane vector per 10-wide row used 62 %: 10,500 multiply-adds instead of 15,000).
 *
 * build_cp packs an input map for each column shift kj: cp[kj][10 r + j] = s2[c][r][j + kj]
 * (r < 14, j < 10; zeros after), so tap (ki, kj) of output vector v is the VL floats at
 * cp[kj] + 10 ki + VL v. build_win copies them to aligned windows, one per tap:
 * win[ki][kj][p] (C3W floats each), the gathered 10x10 window of the tap. */
#define C3W (C3P_NV * VL)
static void build_cp(float *restrict cp, const float *restrict s2c)
{
    for (int kj = 0; kj < 5; kj++) {
        float *d = cp + kj * C3P_STRIDE;
        /* whole vectors in increasing address order: row r + 1 overwrites what row r wrote
         * past its 10 floats (s2's rows are readable 2 VL floats on: PAD) */
        for (int r = 0; r < 14; r++)
            for (int t = 0; t < 10; t += VL) vstore(d + r * 10 + t, vload(s2c + r * 14 + kj + t));
        for (int t = 140; t < C3P_STRIDE; t += VL) vstore_first(d + t, vzero(), C3P_STRIDE - t);
    }
}

static void build_win(float *restrict win, float *restrict cp, const float *restrict s2c)
{
    build_cp(cp, s2c);
    for (int ki = 0; ki < 5; ki++)
        for (int kj = 0; kj < 5; kj++)
            for (int v = 0; v < C3P_NV; v++)
                vstorea(win + (ki * 5 + kj) * C3W + v * VL, vload(cp + kj * C3P_STRIDE + ki * 10 + v * VL));
}

/* NM output maps (pairs qs[0..NM), all reading the input map whose windows are win) over
 * output vectors v0 .. v0 + C3P_VB: acc = (first pair of its map ? bias : accs), then the
 * 25 taps in order, back to accs (16, C3W) */
#define C3_TILE(NM)                                                                              \
static inline void c3_tile_##NM(float *restrict accs, const float *restrict win, const int *qs,  \
                                const int *first, const int32_t *restrict pout,                  \
                                const float *restrict w, const float *restrict b, int v0)        \
{                                                                                                \
    vf acc[NM][C3P_VB];                                                                          \
    for (int k = 0; k < NM; k++) {                                                               \
        const int m = pout[qs[k]];                                                               \
        for (int v = 0; v < C3P_VB; v++)                                                         \
            acc[k][v] = qs[k] == first[m] ? vset1(b[m]) : vloada(accs + m * C3W + (v0 + v) * VL); \
    }                                                                                            \
    for (int t = 0; t < 25; t++) {                                                               \
        vf wv[NM];                                                                               \
        for (int k = 0; k < NM; k++) wv[k] = vset1(w[qs[k] * 25 + t]);                           \
        for (int v = 0; v < C3P_VB; v++) {                                                       \
            const vf xv = vloada(win + t * C3W + (v0 + v) * VL);                                 \
            for (int k = 0; k < NM; k++) acc[k][v] = vfma(wv[k], xv, acc[k][v]);                 \
        }                                                                                        \
    }                                                                                            \
    for (int k = 0; k < NM; k++)                                                                 \
        for (int v = 0; v < C3P_VB; v++) vstorea(accs + pout[qs[k]] * C3W + (v0 + v) * VL, acc[k][v]); \
}
C3_TILE(1)
C3_TILE(2)

/* 1 if every map's pairs take their input maps in increasing order (Table I as packed in
 * the pair list): then input map by input map gives every output its pairs in pair order */
static int c3_inputs_sorted(const int first[17], const int32_t *restrict pin)
{
    for (int m = 0; m < 16; m++)
        for (int q = first[m] + 1; q < first[m + 1]; q++)
            if (pin[q] <= pin[q - 1]) return 0;
    return 1;
}

/* scratch: C3_SCRATCH floats (simd_net.h) */
static void c3_forward_spatial(float *restrict c3, float *restrict scratch, const float *restrict s2,
                               const lenet_net *net)
{
    const float *w = net_param(net, LENET_OFF_C3_W), *b = net_param(net, LENET_OFF_C3_B);
    float *accs = scratch, *win = accs + 16 * C3W, *cp = win + 25 * C3W;
    int first[17];
    c3_ranges(first, net->c3_out);
    if (c3_inputs_sorted(first, net->c3_in)) {
        /* input map by input map: its 25 windows built once (L1) and read by every pair
         * that uses it, C3_MB pairs at a time sharing each window load */
        for (int c = 0; c < 6; c++) {
            int qs[16], n = 0;
            for (int q = 0; q < LENET_C3_PAIRS; q++)
                if (net->c3_in[q] == c) qs[n++] = q;
            if (!n) continue;
            build_win(win, cp, s2 + c * 196);
            int k = 0;
            for (; k + 2 <= n; k += 2)
                for (int v0 = 0; v0 < C3P_NV; v0 += C3P_VB)
                    c3_tile_2(accs, win, qs + k, first, net->c3_out, w, b, v0);
            for (; k < n; k++)
                for (int v0 = 0; v0 < C3P_NV; v0 += C3P_VB)
                    c3_tile_1(accs, win, qs + k, first, net->c3_out, w, b, v0);
        }
        for (int m = 0; m < 16; m++)
            for (int v = 0; v < C3P_NV; v++) {
                const int p = v * VL;
                const vf a = first[m] == first[m + 1] ? vset1(b[m]) : vloada(accs + m * C3W + p);
                vstore_first(c3 + m * 100 + p, a, 100 - p < VL ? 100 - p : VL);
            }
        return;
    }
    /* any other pair list: output map by output map, pairs in order, from the packed
     * rows (unaligned loads) */
    for (int m = 0; m < 16; m++)
        for (int v0 = 0; v0 < C3P_NV; v0 += C3P_VB) {
            vf acc[C3P_VB];
            for (int v = 0; v < C3P_VB; v++) acc[v] = vset1(b[m]);
            for (int q = first[m]; q < first[m + 1]; q++) {
                build_cp(cp, s2 + net->c3_in[q] * 196);
                const float *wq = w + q * 25;
                for (int ki = 0; ki < 5; ki++)
                    for (int kj = 0; kj < 5; kj++) {
                        const vf wv = vset1(wq[ki * 5 + kj]);
                        const float *base = cp + kj * C3P_STRIDE + ki * 10 + v0 * VL;
                        for (int v = 0; v < C3P_VB; v++) acc[v] = vfma(wv, vload(base + v * VL), acc[v]);
                    }
            }
            for (int v = 0; v < C3P_VB; v++) {
                const int p = (v0 + v) * VL;
                vstore_first(c3 + m * 100 + p, acc[v], 100 - p < VL ? 100 - p : VL);
            }
        }
}
#else
/* With 4 or 8 lanes, columns 0..7 of a C3 row are 8 / VL full vectors and columns 8..9 are
 * packed: two per row, VL / 2 rows per vector (3 vectors for 10 rows at 8 lanes, 5 at 4)
 * instead of a mostly empty vector per row. tl (6, 5, 16, 2) is their input:
 * tl[c][kj][r][j] = s2[c][r][8 + j + kj] (rows 14, 15 zero), so the tail vector t of tap
 * (ki, kj) is the VL floats from tl[c][kj][t * VL / 2 + ki][0]. */
#define C3_MAINV (8 / VL)
#define C3_TAILV ((20 + VL - 1) / VL)
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

/* C3 of one image with 4 or 8 lanes: rows of the build_ss layout (ss, built here) and the
 * packed tail (tl): C3P_NV vectors per map already, no windows needed */
static void c3_forward_rows(float *restrict c3, float *restrict ss, float *restrict tl,
                            const float *restrict s2, const lenet_net *net)
{
    const float *w = net_param(net, LENET_OFF_C3_W), *b = net_param(net, LENET_OFF_C3_B);
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
}
#endif

/* forward_one_keep: simd_net.h */
void forward_one_keep(float *restrict out, float *restrict acts, const lenet_net *net,
                      const float *restrict x, float *restrict ws, float *xs, float *ss)
{
    float *c1 = ws + O_C1, *s2 = ws + O_S2, *c3 = ws + O_C3, *s4 = ws + O_S4;
    float *c5 = ws + O_C5, *f6 = ws + O_F6;
    c1_forward_spatial(c1, xs, x, net_param(net, LENET_OFF_C1_W), net_param(net, LENET_OFF_C1_B));
    pool_forward_spatial(s2, c1, net_param(net, LENET_OFF_S2_W), net_param(net, LENET_OFF_S2_B), 6, 28, 28);
#if VL == 16
    c3_forward_spatial(c3, ws + O_CP, s2, net);
    if (ss) build_ss(ss, s2);
#else
    c3_forward_rows(c3, ss ? ss : ws + O_CP, ws + O_TL, s2, net);
#endif
    squash_array(c3, c3, 1600);
    pool_forward_spatial(s4, c3, net_param(net, LENET_OFF_S4_W), net_param(net, LENET_OFF_S4_B), 16, 10, 10);
    dense_layers_forward(c5, f6, out, LENET_OUT, s4, 400, net, 1);
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

void SIMD_FN(forward_one)(float *restrict out, float *restrict acts, const lenet_net *net,
                          const float *restrict x, float *restrict ws)
{
    forward_one_keep(out, acts, net, x, ws, ws + O_XS, NULL);
}

/* ================================================================ VL images, in the lanes */

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
static void c1_forward_row_lanes(float *restrict row, const float *restrict X, int i,
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
static void pool_forward_rows_lanes(float *restrict out, size_t ostride, const float *restrict r0,
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

/* conv_forward_lanes: simd_net.h */
void conv_forward_lanes(float *restrict X, float *restrict C1, float *restrict S2,
                        float *restrict C3, float *restrict S4, float *restrict acts,
                        const lenet_net *net, const float *restrict x, int n, int keep)
{
    const float *w1 = net_param(net, LENET_OFF_C1_W), *b1 = net_param(net, LENET_OFF_C1_B);
    const float *w3 = net_param(net, LENET_OFF_C3_W), *b3 = net_param(net, LENET_OFF_C3_B);

    vgather_lanes(X, x, 1024, 1024, n);

    /* C1 row by row; every two rows, S2 */
    for (int i = 0; i < 28; i++) {
        float *row = C1 + (keep ? i : (i & 1)) * 168 * LN;
        c1_forward_row_lanes(row, X, i, w1, b1);
        squash_array(row, row, 168 * LN);
        if (acts)
            for (int m = 0; m < 6; m++)
                scatter_lanes(acts + LENET_ACT_C1 + m * 784 + i * 28, LENET_NACTS, row + m * 28 * LN, 28, n);
        if (i & 1)
            pool_forward_rows_lanes(S2 + (i / 2) * 14 * LN, 196 * LN, row - 168 * LN, row,
                                    net_param(net, LENET_OFF_S2_W), net_param(net, LENET_OFF_S2_B), 6, 28);
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
            squash_array(row, row, 10 * LN);
            if (acts) scatter_lanes(acts + LENET_ACT_C3 + m * 100 + i * 10, LENET_NACTS, row, 10, n);
            if (i & 1)
                pool_forward_rows_lanes(S4 + (m * 5 + i / 2) * 5 * LN, 0, row - 10 * LN, row,
                                        net_param(net, LENET_OFF_S4_W) + m,
                                        net_param(net, LENET_OFF_S4_B) + m, 1, 10);
        }
}

void SIMD_FN(forward_block)(float *restrict out, float *restrict acts, const lenet_net *net,
                            const float *restrict x, int n, float *restrict ws)
{
    float *S4 = ws + B_S4, *S4T = ws + B_S4T, *C5 = ws + B_C5, *F6 = ws + B_F6, *O = ws + B_OUT;
    conv_forward_lanes(ws + B_X, ws + B_C1, ws + B_S2, ws + B_C3, S4, acts, net, x, n, 0);
    vscatter_lanes(S4T, 400, S4, 400, n);
    dense_layers_forward(C5, F6, O, OUTS, S4T, 400, net, n);
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

void SIMD_FN(squash)(float *out, const float *in, int64_t n)
{
    squash_array(out, in, n);
}

/* The variant's kernel table (simd_api.h): the forward's entries from this file, the
 * gradient's and the SGD update from simd_grad.c, the SDLM sample from simd_sdlm.c. */
const lenet_kernels LENET_SIMD_TABLE = {
    .lanes = LN,
    .ws_floats = SIMD_WS,
    .forward_one = SIMD_FN(forward_one),
    .forward_block = SIMD_FN(forward_block),
    .grad_block = SIMD_FN(grad_block),
    .squash = SIMD_FN(squash),
    .sdlm_sample = SIMD_FN(sdlm_sample),
    .sgd_update = SIMD_FN(sgd_update),
};
