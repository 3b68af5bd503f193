/*
 * The SIMD SDLM sample (simd_net.h: the layouts, the variants, the workspaces): one
 * image's forward (forward_one_keep, simd_forward.c) and its backward in the spatial
 * layout, F6 and C5 fused with their weights' update, then the step for the rest.
 */
#include "simd_net.h"

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
static inline void c3_grad_w_spatial(float *restrict grad, const float *restrict d,
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

/* dx (K) = sum_m d[m] w[m][:] with the weights as they come in, and in the same pass
 * w[m][k] -= step[m][k] (d[m] in[k]): a dense layer's backward fused with its SDLM update,
 * so the weight gradient is never stored. w and step (M, K), d (M,), in (K,). */
static void dense_backward_update(float *restrict dx, float *w, const float *restrict step,
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
static void pool_backward_spatial(float *restrict dy, int ow, float *restrict gc, float *restrict gb,
                                  const float *restrict y, const float *restrict dp,
                                  const float *restrict coef, int C, int H, int W)
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
float SIMD_FN(sdlm_sample)(float *params, const float *restrict step, float *restrict grad,
                           const lenet_net *net, const float *restrict x, int label, float *restrict ws)
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
    dense_backward_update(dc5, params + LENET_OFF_F6_W, step + LENET_OFF_F6_W, dpf6, c5, 120, 84);
    for (int k = 0; k < 120; k++) dpc5[k] = dc5[k] * squash_deriv(c5[k]);
    for (int m = 0; m < 120; m++) grad[LENET_OFF_C5_B + m] += dpc5[m];
    dense_backward_update(ds4, params + LENET_OFF_C5_W, step + LENET_OFF_C5_W, dpc5, s4, 400, 120);
    for (int k = 0; k < 400; k++) dps4[k] = ds4[k] * squash_deriv(s4[k]);
    /* S4 and C3's squash: d3 (16, 10, 16) = the gradient wrt C3's pre-activation in rows
     * padded with zeros to 16 */
    const float *s2 = acts + LENET_ACT_S2;
    pool_backward_spatial(d3, 16, grad + LENET_OFF_S4_W, grad + LENET_OFF_S4_B, c3, dps4,
                          net_param(net, LENET_OFF_S4_W), 16, 10, 10);

    /* C3: bias, weights per pair */
    for (int m = 0; m < 16; m++) grad[LENET_OFF_C3_B + m] += lanes_sum(d3 + m * 160, 160 / VL, VL);
    for (int q = 0; q < LENET_C3_PAIRS; q++) {
#if VL == 16
        c3_grad_w_spatial(grad + LENET_OFF_C3_W + q * 25, d3 + net->c3_out[q] * 160,
                      ss + net->c3_in[q] * 5 * 14 * 16);
#else
        CORR_GRAD(corr_one_c3, grad + LENET_OFF_C3_W + q * 25, d3 + net->c3_out[q] * 160, 10,
                      ss + net->c3_in[q] * 5 * 14 * 16, 14 * 16, 16);
#endif
    }

    /* C3's input gradient, per S2 map c: T[kj][r] = sum over the pairs q reading c and ki of
     * w[q][ki][kj] d3[m_q][r - ki] (rows of 16 at offset 16 of 32, zeros before), then
     * dS2[c][r][s] = sum_kj T[kj][r][s - kj], times f'(S2) */
    const float *w3 = net_param(net, LENET_OFF_C3_W);
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
    pool_backward_spatial(d1, 32, grad + LENET_OFF_S2_W, grad + LENET_OFF_S2_B, acts + LENET_ACT_C1, ds2,
                          net_param(net, LENET_OFF_S2_W), 6, 28, 28);
    for (int m = 0; m < 6; m++) {
        grad[LENET_OFF_C1_B + m] += lanes_sum(d1 + m * 28 * 32, 28 * C1_NV, VL);
        CORR_GRAD(corr_one_c1, grad + LENET_OFF_C1_W + m * 25, d1 + m * 28 * 32, 28, xs, 32 * 32, 32);
    }

    /* the step for the parameters whose gradient is in g */
    step_clear(params, grad, step, 0, LENET_OFF_C5_W);
    step_clear(params, grad, step, LENET_OFF_C5_B, LENET_OFF_F6_W);
    step_clear(params, grad, step, LENET_OFF_F6_B, LENET_NPARAMS);
    return loss;
}
