/*
 * The SIMD gradient (simd_net.h: the layouts, the variants, the workspaces): grad_block,
 * the loss and gradient of a block of VL images side by side in the lanes (the forward
 * part shared with forward_block, simd_forward.c), and the element-wise SGD update.
 */
#include "simd_net.h"

/* d[i][k] *= f'(y[i][k]) for n rows of K (image-major, row strides ds, ys) */
static void squash_backward_rows(float *restrict d, int ds, const float *restrict y, int ys, int n, int K)
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
static void dense_backward_w(float *restrict dw, float *restrict db, const float *restrict d, int ds,
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
static void dense_backward_x(float *restrict dx, int xs, const float *restrict d, int ds,
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

/* the passes over the kernel rows: CORR_PASSES, simd_net.h */

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

/* Input gradient of C3 for S2 map c, row y, columns [x0, x0 + XB):
 *   out[x] = sum over the pairs q reading map c (pair order), ki, kj:
 *            w[q][ki][kj] d[m_q][y - ki][x - kj]   (valid indices only)
 * d (16, 10, 10, LN) lanes, then times f'(S2) -> dpre (6, 14, 14, LN). */
#if VL == 16
#define DS2_XB 14
#else
#define DS2_XB 7
#endif
static inline void c3_backward_x_row(float *restrict dpre, const float *restrict S2, const float *restrict d,
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
static void pool_backward_lanes(float *restrict y, size_t cs, size_t rs, float *restrict gc,
                                float *restrict gb, const float *restrict d,
                                const float *restrict coef, int C, int H, int W)
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

void SIMD_FN(grad_block)(float *restrict grad, float *restrict losses, float *restrict out,
                         const lenet_net *net, const float *restrict x, const int32_t *restrict labels,
                         float scale, int n, float *restrict ws)
{
    float *X = ws + T_X, *C1 = ws + T_C1, *S2 = ws + T_S2, *C3 = ws + T_C3, *S4 = ws + T_S4;
    float *S4T = ws + T_S4T, *C5 = ws + T_C5, *F6 = ws + T_F6, *O = ws + T_OUT;
    float *dO = ws + T_DOUT, *dF6 = ws + T_DF6, *dC5 = ws + T_DC5, *dS4T = ws + T_DS4T;
    float *dS4 = ws + T_DS4, *dS2 = ws + T_DS2;

    /* forward, keeping every layer */
    conv_forward_lanes(X, C1, S2, C3, S4, NULL, net, x, n, 1);
    vscatter_lanes(S4T, 400, S4, 400, n);
    dense_layers_forward(C5, F6, O, OUTS, S4T, 400, net, n);

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
        const float *proto = net_param(net, LENET_OFF_OUT_W);
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
        dense_backward_w(grad + LENET_OFF_OUT_W, grad + LENET_OFF_OUT_B, dO, OUTS, F6, F6S, n, 84, 10);
        dense_backward_x(dF6, F6S, dO, OUTS, net_param(net, LENET_OFF_OUT_W), n, 84, 10);
    }
    squash_backward_rows(dF6, F6S, F6, F6S, n, 84);
    dense_backward_w(grad + LENET_OFF_F6_W, grad + LENET_OFF_F6_B, dF6, F6S, C5, C5S, n, 120, 84);
    dense_backward_x(dC5, C5S, dF6, F6S, net_param(net, LENET_OFF_F6_W), n, 120, 84);
    squash_backward_rows(dC5, C5S, C5, C5S, n, 120);
    dense_backward_w(grad + LENET_OFF_C5_W, grad + LENET_OFF_C5_B, dC5, C5S, S4T, 400, n, 400, 120);
    dense_backward_x(dS4T, 400, dC5, C5S, net_param(net, LENET_OFF_C5_W), n, 400, 120);
    squash_backward_rows(dS4T, 400, S4T, 400, n, 400);
    vgather_lanes(dS4, dS4T, 400, 400, n);

    /* S4 (and C3's squash): C3 becomes the gradient wrt its pre-activation */
    pool_backward_lanes(C3, 100 * LN, 10 * LN, grad + LENET_OFF_S4_W, grad + LENET_OFF_S4_B, dS4,
                        net_param(net, LENET_OFF_S4_W), 16, 10, 10);

    /* C3: bias, weights (per pair), input (per S2 map, with S2's squash) */
    for (int m = 0; m < 16; m++) grad[LENET_OFF_C3_B + m] += lanes_sum(C3 + m * 100 * LN, 100, LN);
    for (int q = 0; q < LENET_C3_PAIRS; q++)
        CORR_GRAD(corr_w_c3, grad + LENET_OFF_C3_W + q * 25, C3 + net->c3_out[q] * 100 * LN, 10 * LN,
                  S2 + net->c3_in[q] * 196 * LN, 14 * LN, 10, 10);
    {
        int pairs[6][LENET_C3_PAIRS], np[6] = {0};
        for (int q = 0; q < LENET_C3_PAIRS; q++) pairs[net->c3_in[q]][np[net->c3_in[q]]++] = q;
        const float *w3 = net_param(net, LENET_OFF_C3_W);
        for (int c = 0; c < 6; c++)
            for (int y = 0; y < 14; y++)
                for (int x0 = 0; x0 < 14; x0 += DS2_XB)
                    c3_backward_x_row(dS2, S2, C3, w3, pairs[c], np[c], net->c3_out, c, y, x0);
    }

    /* S2 (and C1's squash): C1 becomes the gradient wrt its pre-activation */
    pool_backward_lanes(C1, 28 * LN, 168 * LN, grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B, dS2,
                        net_param(net, LENET_OFF_S2_W), 6, 28, 28);

    /* C1: bias and weights */
    for (int m = 0; m < 6; m++) {
        float t = 0.0f;
        for (int i = 0; i < 28; i++) t += lanes_sum(C1 + (i * 168 + m * 28) * LN, 28, LN);
        grad[LENET_OFF_C1_B + m] += t;
        CORR_GRAD(corr_w_c1, grad + LENET_OFF_C1_W + m * 25, C1 + m * 28 * LN, 168 * LN, X, 32 * LN, 28, 28);
    }
}

/* lenet_sgd_update (layers.c), vectorised: v = momentum v + (g + decay p), p -= lr v where
 * mask != 0; multiplies and adds kept separate so that every lane rounds as the portable
 * loop does */
void SIMD_FN(sgd_update)(float *restrict p, float *restrict v, const float *restrict g,
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
