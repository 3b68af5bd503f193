/*
 * int8 inference on AVX512-VNNI (vpdpbusd: 16 lanes, each the sum of 4 uint8 x int8
 * products added to an int32). Compiled only with -DLENET_SIMD_AVX512 -mavx512vnni
 * (setup.py, "avx512vnni"); chosen at run time only on a CPU with AVX512-VNNI (isa.c).
 * The scheme, the layouts and the float epilogue: q8.h. The int32 sums are exactly the
 * portable ones; the squash is the vectorised one of simd.h (vsquash).
 *
 * Convolutions (C1, C3) put 16 output positions of one map in the lanes, flattened
 * (position y * W + x of a map W wide), and the 4 bytes of a lane are 4 taps of the 5x5
 * kernel: the 7 groups of q8.h's LENET_Q8_TAP, one vpdpbusd each (25 taps in 28 slots).
 * Three window arrays of uint32 per input map, laid out r * W + x so that a group of output
 * position q is one contiguous vector load: a[r][x] = bytes (r, x..x+3) (groups 0..4 read
 * a[q + W ky]), v[r][x] = bytes (r..r+3, x+4) (group 5 reads v[q]), z[r][x] = byte
 * (r, x+4) zero-extended (group 6 reads z[q + 4 W]); v is built from z incrementally.
 * C3 stays sparse: a map sums only its pairs of Table I. C5 and F6 put 16 outputs in the
 * lanes, weights packed w[k/4][o][k%4], the 4 input bytes broadcast.
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

/* q8.h's input codes, 16 at a time: the same float operations as the portable q8_input */
static int q8_input_vnni(uint8_t *restrict q, const float *restrict x)
{
    __mmask16 ok = 0xffff;
    for (int k = 0; k < 1024; k += 16) {
        const vf v = _mm512_loadu_ps(x + k);
        ok &= _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(3.0e38f), _CMP_LE_OQ);
        vf t = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(200.0f)), _mm512_set1_ps(20.0f));
        t = _mm512_max_ps(t, _mm512_setzero_ps());            /* NaN -> 0 */
        t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
        _mm_storeu_si128((__m128i *)(q + k),
                         _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(t, _mm512_set1_ps(0.5f)))));
    }
    memset(q + 1024, 0, LENET_Q8_XPAD - 1024);
    return ok != 0xffff;
}

/* the z windows of 16 positions: bytes src[4..19] zero-extended */
static inline __m512i zwin16(const uint8_t *src)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(src + 4)));
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
    int32_t *a1 = (int32_t *)(f6 + 96);       /* C1 windows: 32 x 28 (+64) each */
    int32_t *v1 = a1 + 960;
    int32_t *z1 = v1 + 960;
    int32_t *a3 = z1 + 960;                   /* C3 windows: 6 x W3S each */
    int32_t *v3 = a3 + 6 * W3S;
    int32_t *z3 = v3 + 6 * W3S;
    uint8_t *q2 = (uint8_t *)(z3 + 6 * W3S);  /* 1176 (+128) */
    uint8_t *q4 = q2 + 1304;                  /* 400 (+16) */
    uint8_t *q5 = q4 + 416;                   /* 120 (+8) */
    memset(q2 + 1176, 0, 128);
    for (int c = 0; c < 6; c++) {   /* the windows' tails, read by the lanes past position 99 */
        memset(a3 + c * W3S + 140, 0, 20 * sizeof(int32_t));
        memset(z3 + c * W3S + 140, 0, 20 * sizeof(int32_t));
        memset(v3 + c * W3S + 100, 0, 60 * sizeof(int32_t));
    }

    /* C1: the windows of the input rows, then 49 vectors of 16 positions x 6 maps, 7 groups */
    {
        __m512i vlo = _mm512_setzero_si512(), vhi = _mm512_setzero_si512();
        for (int r = 0; r < 32; r++) {
            const uint8_t *row = x + r * 32;
            const __m512i zlo = zwin16(row), zhi = zwin16(row + 16);
            _mm512_storeu_si512(a1 + r * 28, win16(row));
            _mm512_storeu_si512(a1 + r * 28 + 16, win16(row + 16));
            _mm512_storeu_si512(z1 + r * 28, zlo);
            _mm512_storeu_si512(z1 + r * 28 + 16, zhi);
            vlo = _mm512_or_si512(_mm512_srli_epi32(vlo, 8), _mm512_slli_epi32(zlo, 24));
            vhi = _mm512_or_si512(_mm512_srli_epi32(vhi, 8), _mm512_slli_epi32(zhi, 24));
            if (r >= 3 && r < 31) {
                _mm512_storeu_si512(v1 + (r - 3) * 28, vlo);
                _mm512_storeu_si512(v1 + (r - 3) * 28 + 16, vhi);
            }
        }
    }
    for (int q0 = 0; q0 < 784; q0 += 16) {
        __m512i acc[6];
        for (int m = 0; m < 6; m++) acc[m] = _mm512_setzero_si512();
        for (int g = 0; g < 7; g++) {
            const __m512i a = _mm512_loadu_si512(g < 5 ? a1 + q0 + 28 * g : g == 5 ? v1 + q0 : z1 + q0 + 112);
            for (int m = 0; m < 6; m++)
                acc[m] = dp(acc[m], a, _mm512_set1_epi32(ld32(w1 + m * LENET_Q8_KBYTES + 4 * g)));
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

    /* C3: the windows of the S2 rows, then per map its pairs of Table I over 7 vectors */
    for (int c = 0; c < 6; c++) {
        __m512i v = _mm512_setzero_si512();
        for (int r = 0; r < 14; r++) {
            const uint8_t *row = q2 + c * 196 + r * 14;
            const __m512i z = zwin16(row);
            _mm512_storeu_si512(a3 + c * W3S + r * 10, win16(row));
            _mm512_storeu_si512(z3 + c * W3S + r * 10, z);
            v = _mm512_or_si512(_mm512_srli_epi32(v, 8), _mm512_slli_epi32(z, 24));
            if (r >= 3 && r < 13) _mm512_storeu_si512(v3 + c * W3S + (r - 3) * 10, v);
        }
    }
    int p = 0;
    for (int m = 0; m < 16; m++) {
        __m512i acc[7];
        for (int k = 0; k < 7; k++) acc[k] = _mm512_setzero_si512();
        for (; p < LENET_C3_PAIRS && qn->c3_out[p] == m; p++) {
            const int c = qn->c3_in[p];
            for (int g = 0; g < 7; g++) {
                const int32_t *src = g < 5 ? a3 + c * W3S + 10 * g : g == 5 ? v3 + c * W3S : z3 + c * W3S + 40;
                const __m512i wg = _mm512_set1_epi32(ld32(w3 + p * LENET_Q8_KBYTES + 4 * g));
                for (int k = 0; k < 7; k++) acc[k] = dp(acc[k], _mm512_loadu_si512(src + 16 * k), wg);
            }
        }
        const __m512i z = _mm512_set1_epi32(Z[LENET_Q8_OFF_Z3 + m]);
        const vf mul = vset1(F[LENET_Q8_OFF_MUL3 + m]), bias = vset1(F[LENET_Q8_OFF_B3 + m]);
        for (int k = 0; k < 7; k++) {
            const __m512i s = _mm512_sub_epi32(acc[k], z);
            if (qa) _mm512_mask_storeu_epi32(qa + LENET_Q8_QA_C3 + m * 100 + 16 * k, k < 6 ? 0xffff : 0x000f, s);
            vstore(c3 + m * C3S + 16 * k, epilogue(s, mul, bias));
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
    if (qa) q8_keep_codes(qa, q2, q4, q5);
    q8_head(out, qn, f6);
}

const lenet_q8_kernels lenet_q8_kernels_avx512vnni = {q8_input_vnni, q8_forward_one_vnni};
