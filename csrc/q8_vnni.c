/*
 * int8 inference on AVX512-VNNI (vpdpbusd: 16 lanes, each the sum of 4 uint8 x int8
 * products added to an int32). Compiled only with -DLENET_SIMD_AVX512 -mavx512vnni
 * (setup.py, "avx512vnni"); chosen at run time only on a CPU with AVX512-VNNI (isa.c).
 * The scheme, the layouts and the float epilogue: q8.h. The int32 sums are exactly the
 * portable ones; the squash is the vectorised one of simd.h (vsquash).
 *
 * Convolutions (C1, C3) put 16 output positions of one map in the lanes, flattened
 * (position y * W + x of a map W wide), and the 4 bytes of a lane are 4 neighbouring taps
 * of one kernel row: kx 0..3, then kx 4..7 (kx 5..7 weigh zero). A "window" array holds,
 * for every input row r and output column x, the 4 input bytes at (r, x..x+3) as one
 * uint32, laid out r * W + x, so that tap row ky of output position q is window[q + W ky]:
 * one contiguous vector load per (tap row, 16 positions). C3 stays sparse: a map sums only
 * its pairs of Table I. C5 and F6 put 16 outputs in the lanes, weights packed
 * w[k/4][o][k%4], the 4 input bytes broadcast.
 */
#include <stdint.h>
#include <string.h>

#include "q8.h"
#include "simd.h"
#include "layers_impl.h"

static inline int32_t ld32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline __m512i dp(__m512i acc, __m512i u8, __m512i s8)
{
    return _mm512_dpbusd_epi32(acc, u8, s8);
}

/* lanes j = 0..15: the bytes src[j..j+3] as one uint32 (reads src[0..63]) */
static inline __m512i win16(const uint8_t *src)
{
    const __m512i v = _mm512_loadu_si512((const void *)src);
    const __m512i ia = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i ib = _mm512_setr_epi32(1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4);
    const __m512i sr = _mm512_setr_epi32(0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24, 0, 8, 16, 24);
    const __m512i sl = _mm512_setr_epi32(32, 24, 16, 8, 32, 24, 16, 8, 32, 24, 16, 8, 32, 24, 16, 8);
    return _mm512_or_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(ia, v), sr),
                           _mm512_sllv_epi32(_mm512_permutexvar_epi32(ib, v), sl));
}

/* squash, requantize (y * inv rounded to nearest even, clamped to -127..127, + 128) and
 * store the first n (<= 16) codes */
static inline void requant_store(uint8_t *dst, vf y, float inv, int n)
{
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(y, _mm512_set1_ps(inv)));
    q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
    q = _mm512_add_epi32(q, _mm512_set1_epi32(LENET_Q8_ACT_ZERO));
    _mm512_mask_cvtepi32_storeu_epi8(dst, (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1u), q);
}

/* a = (float)acc * mul + bias, then squash (the mul and the add rounded apart, as in q8.c) */
static inline vf epilogue(__m512i acc, vf mul, vf bias)
{
    return vsquash(_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mul), bias));
}

#define C3S 112   /* C3 float row of a map: 100 positions, 7 vectors */
#define W3S 160   /* C3 windows of an S2 map: 14 rows of 10, read up to 111 + 40 */

static void q8_forward_one_vnni(float *restrict out, int32_t *restrict qa, const lenet_qnet *qn,
                                const uint8_t *restrict x, unsigned char *restrict ws)
{
    const float *F = qn->f;
    const int32_t *Z = qn->zw;
    const int8_t *w1 = qn->w + LENET_Q8_OFF_W1, *w3 = qn->w + LENET_Q8_OFF_W3;
    const int8_t *w5 = qn->w + LENET_Q8_OFF_W5, *w6 = qn->w + LENET_Q8_OFF_W6;
    float *c1 = (float *)ws;                  /* 6 x 784 */
    float *c3 = c1 + 4704;                    /* 16 x C3S */
    float *s4 = c3 + 16 * C3S;                /* 400 (+16) */
    float *f6 = s4 + 416;                     /* 96 */
    int32_t *r1a = (int32_t *)(f6 + 96);      /* 32 x 28 (+64) */
    int32_t *r1b = r1a + 960;
    int32_t *r3a = r1b + 960;                 /* 6 x W3S */
    int32_t *r3b = r3a + 6 * W3S;
    uint8_t *q2 = (uint8_t *)(r3b + 6 * W3S); /* 1176 (+128) */
    uint8_t *q4 = q2 + 1304;                  /* 400 (+16) */
    uint8_t *q5 = q4 + 416;                   /* 120 (+8) */
    memset(q2 + 1176, 0, 128);
    for (int c = 0; c < 6; c++) {   /* the windows' tails, read by the lanes past position 99 */
        memset(r3a + c * W3S + 146, 0, 14 * sizeof(int32_t));
        memset(r3b + c * W3S + 146, 0, 14 * sizeof(int32_t));
    }

    /* C1: windows of the input rows, then 49 vectors of 16 positions x 6 maps */
    for (int r = 0; r < 32; r++) {
        _mm512_storeu_si512(r1a + r * 28, win16(x + r * 32));
        _mm512_storeu_si512(r1a + r * 28 + 16, win16(x + r * 32 + 16));
        _mm512_storeu_si512(r1b + r * 28, win16(x + r * 32 + 4));
        _mm512_storeu_si512(r1b + r * 28 + 16, win16(x + r * 32 + 20));
    }
    for (int q0 = 0; q0 < 784; q0 += 16) {
        __m512i acc[6];
        for (int m = 0; m < 6; m++) acc[m] = _mm512_setzero_si512();
        for (int ky = 0; ky < 5; ky++) {
            const __m512i a = _mm512_loadu_si512(r1a + q0 + 28 * ky);
            const __m512i b = _mm512_loadu_si512(r1b + q0 + 28 * ky);
            for (int m = 0; m < 6; m++) {
                const int8_t *wr = w1 + (m * 5 + ky) * LENET_Q8_KROW;
                acc[m] = dp(acc[m], a, _mm512_set1_epi32(ld32(wr)));
                acc[m] = dp(acc[m], b, _mm512_set1_epi32(ld32(wr + 4)));
            }
        }
        for (int m = 0; m < 6; m++) {
            const __m512i s = _mm512_sub_epi32(acc[m], _mm512_set1_epi32(Z[LENET_Q8_OFF_Z1 + m]));
            if (qa) _mm512_storeu_si512(qa + LENET_Q8_QA_C1 + m * 784 + q0, s);
            vstore(c1 + m * 784 + q0, epilogue(s, vset1(F[LENET_Q8_OFF_MUL1 + m]), vset1(F[LENET_Q8_OFF_B1 + m])));
        }
    }

    /* S2: 2x2 sums of C1 rows (evens + odds of each row pair), squash, requantize */
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int m = 0; m < 6; m++) {
        const vf coef = vset1(F[LENET_Q8_OFF_S2C + m]), bias = vset1(F[LENET_Q8_OFF_S2B + m]);
        for (int i = 0; i < 14; i++) {
            const float *r0 = c1 + m * 784 + 2 * i * 28, *r1 = r0 + 28;
            const vf a0 = vload(r0), b0 = _mm512_maskz_loadu_ps(0x0fff, r0 + 16);
            const vf a1 = vload(r1), b1 = _mm512_maskz_loadu_ps(0x0fff, r1 + 16);
            const vf s0 = vadd(_mm512_permutex2var_ps(a0, even, b0), _mm512_permutex2var_ps(a0, odd, b0));
            const vf s1 = vadd(_mm512_permutex2var_ps(a1, even, b1), _mm512_permutex2var_ps(a1, odd, b1));
            const vf y = vsquash(vadd(vmul(coef, vadd(s0, s1)), bias));
            requant_store(q2 + m * 196 + i * 14, y, F[LENET_Q8_OFF_INV2], 14);
        }
    }

    /* C3: windows of the S2 rows, then per map its pairs of Table I over 7 vectors */
    for (int c = 0; c < 6; c++)
        for (int r = 0; r < 14; r++) {
            _mm512_storeu_si512(r3a + c * W3S + r * 10, win16(q2 + c * 196 + r * 14));
            _mm512_storeu_si512(r3b + c * W3S + r * 10, win16(q2 + c * 196 + r * 14 + 4));
        }
    int p = 0;
    for (int m = 0; m < 16; m++) {
        __m512i acc[7];
        for (int v = 0; v < 7; v++) acc[v] = _mm512_setzero_si512();
        for (; p < LENET_C3_PAIRS && qn->c3_out[p] == m; p++) {
            const int32_t *a = r3a + qn->c3_in[p] * W3S, *b = r3b + qn->c3_in[p] * W3S;
            for (int ky = 0; ky < 5; ky++) {
                const int8_t *wr = w3 + (p * 5 + ky) * LENET_Q8_KROW;
                const __m512i wa = _mm512_set1_epi32(ld32(wr)), wb = _mm512_set1_epi32(ld32(wr + 4));
                for (int v = 0; v < 7; v++) {
                    acc[v] = dp(acc[v], _mm512_loadu_si512(a + 16 * v + 10 * ky), wa);
                    acc[v] = dp(acc[v], _mm512_loadu_si512(b + 16 * v + 10 * ky), wb);
                }
            }
        }
        const __m512i z = _mm512_set1_epi32(Z[LENET_Q8_OFF_Z3 + m]);
        const vf mul = vset1(F[LENET_Q8_OFF_MUL3 + m]), bias = vset1(F[LENET_Q8_OFF_B3 + m]);
        for (int v = 0; v < 7; v++) {
            const __m512i s = _mm512_sub_epi32(acc[v], z);
            if (qa) _mm512_mask_storeu_epi32(qa + LENET_Q8_QA_C3 + m * 100 + 16 * v, v < 6 ? 0xffff : 0x000f, s);
            vstore(c3 + m * C3S + 16 * v, epilogue(s, mul, bias));
        }
    }

    /* S4: 2x2 sums (5 lanes a row pair), then squash and requantize 25 vectors */
    const __m512i ev5 = _mm512_setr_epi32(0, 2, 4, 6, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i od5 = _mm512_setr_epi32(1, 3, 5, 7, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int m = 0; m < 16; m++) {
        const vf coef = vset1(F[LENET_Q8_OFF_S4C + m]), bias = vset1(F[LENET_Q8_OFF_S4B + m]);
        for (int i = 0; i < 5; i++) {
            const float *r0 = c3 + m * C3S + 2 * i * 10, *r1 = r0 + 10;
            const vf a0 = _mm512_maskz_loadu_ps(0x03ff, r0), a1 = _mm512_maskz_loadu_ps(0x03ff, r1);
            const vf s0 = vadd(_mm512_permutexvar_ps(ev5, a0), _mm512_permutexvar_ps(od5, a0));
            const vf s1 = vadd(_mm512_permutexvar_ps(ev5, a1), _mm512_permutexvar_ps(od5, a1));
            vstore(s4 + m * 25 + i * 5, vadd(vmul(coef, vadd(s0, s1)), bias));
        }
    }
    for (int k = 0; k < 400; k += 16)
        requant_store(q4 + k, vsquash(vload(s4 + k)), F[LENET_Q8_OFF_INV4], 16);

    /* C5: 8 blocks of 16 outputs, 100 groups of 4 inputs */
    {
        __m512i acc[8];
        for (int b = 0; b < 8; b++) acc[b] = _mm512_setzero_si512();
        for (int g = 0; g < 100; g++) {
            const __m512i u = _mm512_set1_epi32(ld32(q4 + 4 * g));
            const int8_t *wg = w5 + g * LENET_Q8_C5M * 4;
            for (int b = 0; b < 8; b++) acc[b] = dp(acc[b], u, _mm512_loadu_si512((const void *)(wg + 64 * b)));
        }
        for (int b = 0; b < 8; b++) {
            const __mmask16 k = b < 7 ? 0xffff : 0x00ff;
            const __m512i s = _mm512_sub_epi32(acc[b], _mm512_maskz_loadu_epi32(k, Z + LENET_Q8_OFF_Z5 + 16 * b));
            if (qa) _mm512_mask_storeu_epi32(qa + LENET_Q8_QA_C5 + 16 * b, k, s);
            const vf y = epilogue(s, _mm512_maskz_loadu_ps(k, F + LENET_Q8_OFF_MUL5 + 16 * b),
                                  _mm512_maskz_loadu_ps(k, F + LENET_Q8_OFF_B5 + 16 * b));
            requant_store(q5 + 16 * b, y, F[LENET_Q8_OFF_INV5], b < 7 ? 16 : 8);
        }
    }

    /* F6: 6 blocks of 16 outputs (84 used), 30 groups of 4 inputs */
    {
        __m512i acc[6];
        for (int b = 0; b < 6; b++) acc[b] = _mm512_setzero_si512();
        for (int g = 0; g < 30; g++) {
            const __m512i u = _mm512_set1_epi32(ld32(q5 + 4 * g));
            const int8_t *wg = w6 + g * LENET_Q8_F6M * 4;
            for (int b = 0; b < 6; b++) acc[b] = dp(acc[b], u, _mm512_loadu_si512((const void *)(wg + 64 * b)));
        }
        for (int b = 0; b < 6; b++) {
            const __mmask16 k = b < 5 ? 0xffff : 0x000f;
            const __m512i s = _mm512_sub_epi32(acc[b], _mm512_maskz_loadu_epi32(k, Z + LENET_Q8_OFF_Z6 + 16 * b));
            if (qa) _mm512_mask_storeu_epi32(qa + LENET_Q8_QA_F6 + 16 * b, k, s);
            vstore(f6 + 16 * b, epilogue(s, _mm512_maskz_loadu_ps(k, F + LENET_Q8_OFF_MUL6 + 16 * b),
                                         _mm512_maskz_loadu_ps(k, F + LENET_Q8_OFF_B6 + 16 * b)));
        }
    }
    if (qa) {
        for (int k = 0; k < 1176; k++) qa[LENET_Q8_QA_S2 + k] = q2[k];
        for (int k = 0; k < 400; k++) qa[LENET_Q8_QA_S4 + k] = q4[k];
        for (int k = 0; k < 120; k++) qa[LENET_Q8_QA_C5Q + k] = q5[k];
    }
    if (qn->head == LENET_HEAD_RBF)
        rbf_forward_one(out, f6, F + LENET_Q8_OFF_OUTW, 84, 10);
    else
        dense_forward_one(out, f6, F + LENET_Q8_OFF_OUTW, F + LENET_Q8_OFF_OUTB, 84, 10);
}

const lenet_q8_kernels lenet_q8_kernels_avx512vnni = {q8_forward_one_vnni};
