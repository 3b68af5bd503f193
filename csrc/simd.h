/*
 * A thin vector layer over AVX2+FMA (8 float lanes), AVX-512 (16 float lanes) or generic
 * 128-bit vectors (4 float lanes, GCC/Clang vector extensions: SSE2 on x86-64, NEON on
 * ARM64, no -m flags), enough for the kernels of simd_*.c (simd_net.h): each function is one or two
 * intrinsics or vector operations. Only included by files compiled with
 * -DLENET_SIMD_AVX2, -DLENET_SIMD_AVX512 (with the matching -m flags) or -DLENET_SIMD_VEC128.
 *
 * Every operation is lane-wise (no reduction across lanes), so a value computed in lane
 * k depends on lane k's inputs alone: that is what makes images side by side in the lanes
 * give bit-for-bit the results of the same image computed alone.
 */
#ifndef LENET_SIMD_H
#define LENET_SIMD_H

#include <stdint.h>

#include "lenet.h"

#if defined(LENET_SIMD_AVX512) || defined(LENET_SIMD_AVX2)
#include <immintrin.h>
#endif

#if defined(LENET_SIMD_AVX512)

#define VL 16
typedef __m512 vf;
typedef __mmask16 vmask;

static inline vf vload(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vloada(const float *p) { return _mm512_load_ps(p); }
static inline void vstore(float *p, vf a) { _mm512_storeu_ps(p, a); }
static inline void vstorea(float *p, vf a) { _mm512_store_ps(p, a); }
static inline vf vset1(float a) { return _mm512_set1_ps(a); }
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
/* a / b for b in [1, 2^30]: 14-bit reciprocal r, y = a r, then y + (a - b y) r (relative
 * error about 2^-28 before the last rounding) */
static inline vf vquot(vf a, vf b)
{
    const vf r = _mm512_rcp14_ps(b), y = _mm512_mul_ps(a, r);
    return _mm512_fmadd_ps(_mm512_fnmadd_ps(b, y, a), r, y);
}
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a*b + c */
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a*b */
/* loads/stores of the first m (0..VL) lanes; the others read as 0 / are left alone */
static inline vmask vmask_first(int m) { return (vmask)(m >= 16 ? 0xffff : (1u << m) - 1u); }
static inline vf vload_first(const float *p, int m) { return _mm512_maskz_loadu_ps(vmask_first(m), p); }
/* all-ones lanes where the byte m[l] != 0, zero lanes elsewhere; blend: mask ? a : b */
static inline vf vmask_bytes(const uint8_t *m)
{
    const __mmask16 k = _mm_test_epi8_mask(_mm_loadu_si128((const __m128i *)m), _mm_set1_epi8(-1));
    return _mm512_castsi512_ps(_mm512_maskz_set1_epi32(k, -1));
}
static inline vf vblend(vf mask, vf a, vf b)
{
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mask), _mm512_castps_si512(a),
                                                         _mm512_castps_si512(b), 0xCA));
}
static inline void vstore_first(float *p, vf a, int m) { _mm512_mask_storeu_ps(p, vmask_first(m), a); }
/* sum of the lanes, always the same tree: lanes l and l+8, then l+4, l+2, l+1 */
static inline float vhsum(vf a) { return _mm512_reduce_add_ps(a); }
/* the sums of the lanes of a, b, c, d (in this order), by exactly vhsum's tree */
static inline __m128 vhsum4(vf a, vf b, vf c, vf d)
{
    const __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    const __m512 y = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xEE));
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0,
                                                                           0, 0, 0, 0, 0, 0, 0, 0), u));
}
/* r[0..16) as a 16 x 16 matrix (r[i] its row i), transposed in place: 64 shuffles, no
 * memory (a gather per vector is 3x slower here) */
static inline void vtranspose(vf r[16])
{
    vf t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    const __m512i p0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i p1 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_permutex2var_ps(r[j], p0, r[4 + j]);
        t[4 + j] = _mm512_permutex2var_ps(r[j], p1, r[4 + j]);
        t[8 + j] = _mm512_permutex2var_ps(r[8 + j], p0, r[12 + j]);
        t[12 + j] = _mm512_permutex2var_ps(r[8 + j], p1, r[12 + j]);
    }
    const __m512i q0 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i q1 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_permutex2var_ps(t[j], q0, t[8 + j]);
        r[8 + j] = _mm512_permutex2var_ps(t[j], q1, t[8 + j]);
    }
}
/* a0 a0 a1 a1 .. a7 a7 and a8 a8 .. a15 a15 */
static inline vf vdup_lo(vf a)
{
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), a);
}
static inline vf vdup_hi(vf a)
{
    return _mm512_permutexvar_ps(_mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15), a);
}
/* even and odd elements of the 2 VL elements a, b: ev = a0 a2 .. b0 b2 .., od = a1 a3 .. */
static inline void vdeint(vf a, vf b, vf *ev, vf *od)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    *ev = _mm512_permutex2var_ps(a, ie, b);
    *od = _mm512_permutex2var_ps(a, io, b);
}

#elif defined(LENET_SIMD_AVX2)

#define VL 8
typedef __m256 vf;

static inline vf vload(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vloada(const float *p) { return _mm256_load_ps(p); }
static inline void vstore(float *p, vf a) { _mm256_storeu_ps(p, a); }
static inline void vstorea(float *p, vf a) { _mm256_store_ps(p, a); }
static inline vf vset1(float a) { return _mm256_set1_ps(a); }
static inline vf vzero(void) { return _mm256_setzero_ps(); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vquot(vf a, vf b) { return _mm256_div_ps(a, b); }   /* a / b */
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline __m256i vmask_first(int m)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), idx);
}
static inline vf vload_first(const float *p, int m) { return _mm256_maskload_ps(p, vmask_first(m)); }
static inline vf vmask_bytes(const uint8_t *m)
{
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    return _mm256_castsi256_ps(_mm256_xor_si256(_mm256_cmpeq_epi32(b, _mm256_setzero_si256()),
                                                _mm256_set1_epi32(-1)));
}
static inline vf vblend(vf mask, vf a, vf b) { return _mm256_blendv_ps(b, a, mask); }
static inline void vstore_first(float *p, vf a, int m) { _mm256_maskstore_ps(p, vmask_first(m), a); }
static inline void vdeint(vf a, vf b, vf *ev, vf *od)
{
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  /* a0 a2 b0 b2 a4 a6 b4 b6 */
    const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}
/* a0 a0 a1 a1 a2 a2 a3 a3 and a4 a4 .. a7 a7 */
static inline vf vdup_lo(vf a) { return _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)); }
static inline vf vdup_hi(vf a) { return _mm256_permutevar8x32_ps(a, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7)); }
static inline __m128 vhsum4(vf a, vf b, vf c, vf d)
{
    const __m256 x = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
    const __m256 y = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
    const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(x, y, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm256_shuffle_ps(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
    const __m256 h = _mm256_hadd_ps(u, u);   /* a c a c | b d b d */
    const __m128 lo = _mm256_castps256_ps128(h), hi = _mm256_extractf128_ps(h, 1);
    return _mm_unpacklo_ps(lo, hi);          /* a b c d */
}
/* r[0..8) as an 8 x 8 matrix (r[i] its row i), transposed in place */
static inline void vtranspose(vf r[8])
{
    vf t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        s[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        s[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        s[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        s[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
    }
}
/* sum of the lanes, always the same tree: lanes l and l+4, then l+2, l+1 */
static inline float vhsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#elif defined(LENET_SIMD_VEC128)

/* Plain C with vector types: every operation is one IEEE single-precision operation per
 * lane. a*b + c is two roundings (no fused multiply-add: GCC does not contract under
 * -std=c99, and the pragma keeps Clang from it), so the arithmetic does not depend on
 * whether the target has an FMA instruction. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF   /* GCC: off already under -std=c99 (setup.py) */
#endif
#define VL 4
typedef float vf __attribute__((vector_size(16)));
typedef int32_t vi __attribute__((vector_size(16)));
typedef float vfu __attribute__((vector_size(16), aligned(4)));   /* for unaligned access */
/* lanes i0..i3 of the 8 lanes of a then b (Clang, GCC 12+; older GCC: __builtin_shuffle) */
#if defined(__clang__) || __GNUC__ >= 12
#define VSHUF(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
#define VSHUF(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (vi){i0, i1, i2, i3})
#endif

static inline vf vload(const float *p) { return *(const vfu *)p; }
static inline vf vloada(const float *p) { return *(const vf *)p; }
static inline void vstore(float *p, vf a) { *(vfu *)p = a; }
static inline void vstorea(float *p, vf a) { *(vf *)p = a; }
static inline vf vset1(float a) { return (vf){a, a, a, a}; }
static inline vf vzero(void) { return (vf){0.0f, 0.0f, 0.0f, 0.0f}; }
static inline vf vadd(vf a, vf b) { return a + b; }
static inline vf vsub(vf a, vf b) { return a - b; }
static inline vf vmul(vf a, vf b) { return a * b; }
static inline vf vquot(vf a, vf b) { return a / b; }
static inline vf vselect(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }  /* m ? a : b */
/* as the x86 instructions: the second operand when either is NaN */
static inline vf vmin(vf a, vf b) { return vselect(a < b, a, b); }
static inline vf vmax(vf a, vf b) { return vselect(a > b, a, b); }
static inline vf vfma(vf a, vf b, vf c) { return a * b + c; }     /* a*b + c, two roundings */
static inline vf vfnma(vf a, vf b, vf c) { return c - a * b; }
/* loads/stores of the first m lanes (m <= 0: none, m >= VL: all); the others read as 0 /
 * are left alone */
static inline vf vload_first(const float *p, int m)
{
    if (m >= VL) return vload(p);
    vf r = vzero();
    for (int l = 0; l < m; l++) r[l] = p[l];
    return r;
}
static inline void vstore_first(float *p, vf a, int m)
{
    if (m >= VL) vstore(p, a);
    else
        for (int l = 0; l < m; l++) p[l] = a[l];
}
static inline vf vmask_bytes(const uint8_t *m)
{
    const vi b = {m[0], m[1], m[2], m[3]};
    return (vf)(b != (vi){0, 0, 0, 0});
}
static inline vf vblend(vf mask, vf a, vf b) { return vselect((vi)mask, a, b); }
/* sum of the lanes, always the same tree: lanes l and l+2, then l+1 */
static inline float vhsum(vf a) { return (a[0] + a[2]) + (a[1] + a[3]); }
static inline void vhsum4_store(float *dst, vf a, vf b, vf c, vf d)
{
    dst[0] = vhsum(a); dst[1] = vhsum(b); dst[2] = vhsum(c); dst[3] = vhsum(d);
}
static inline void vhsum4_add(float *dst, vf a, vf b, vf c, vf d)
{
    dst[0] += vhsum(a); dst[1] += vhsum(b); dst[2] += vhsum(c); dst[3] += vhsum(d);
}
/* a0 a0 a1 a1 and a2 a2 a3 a3 */
static inline vf vdup_lo(vf a) { return VSHUF(a, a, 0, 0, 1, 1); }
static inline vf vdup_hi(vf a) { return VSHUF(a, a, 2, 2, 3, 3); }
/* even and odd elements of a, b: ev = a0 a2 b0 b2, od = a1 a3 b1 b3 */
static inline void vdeint(vf a, vf b, vf *ev, vf *od)
{
    *ev = VSHUF(a, b, 0, 2, 4, 6);
    *od = VSHUF(a, b, 1, 3, 5, 7);
}
/* r[0..4) as a 4 x 4 matrix (r[i] its row i), transposed in place */
static inline void vtranspose(vf r[4])
{
    const vf t0 = VSHUF(r[0], r[1], 0, 4, 1, 5);   /* r00 r10 r01 r11 */
    const vf t1 = VSHUF(r[0], r[1], 2, 6, 3, 7);   /* r02 r12 r03 r13 */
    const vf t2 = VSHUF(r[2], r[3], 0, 4, 1, 5);
    const vf t3 = VSHUF(r[2], r[3], 2, 6, 3, 7);
    r[0] = VSHUF(t0, t2, 0, 1, 4, 5);
    r[1] = VSHUF(t0, t2, 2, 3, 6, 7);
    r[2] = VSHUF(t1, t3, 0, 1, 4, 5);
    r[3] = VSHUF(t1, t3, 2, 3, 6, 7);
}

#else
#error "simd.h needs LENET_SIMD_AVX2, LENET_SIMD_AVX512 or LENET_SIMD_VEC128"
#endif

#if defined(LENET_SIMD_AVX512) || defined(LENET_SIMD_AVX2)
/* dst[0..4) = / += the sums of the lanes of a, b, c, d (the variant's vhsum4) */
static inline void vhsum4_store(float *dst, vf a, vf b, vf c, vf d) { _mm_storeu_ps(dst, vhsum4(a, b, c, d)); }
static inline void vhsum4_add(float *dst, vf a, vf b, vf c, vf d)
{
    _mm_storeu_ps(dst, _mm_add_ps(_mm_loadu_ps(dst), vhsum4(a, b, c, d)));
}
#endif

/* X[k * VL + l] = x[l * stride + k] for k < count, l < n (lanes l >= n: 0): n image rows
 * into the lanes; count a multiple of VL */
static inline void vgather_lanes(float *restrict X, const float *restrict x, size_t stride, int count, int n)
{
    for (int k = 0; k < count; k += VL) {
        vf r[VL];
        for (int l = 0; l < VL; l++) r[l] = l < n ? vload(x + l * stride + k) : vzero();
        vtranspose(r);
        for (int j = 0; j < VL; j++) vstorea(X + (size_t)(k + j) * VL, r[j]);
    }
}

/* the inverse: x[l * stride + k] = X[k * VL + l] for k < count, l < n; count a multiple of VL */
static inline void vscatter_lanes(float *restrict x, size_t stride, const float *restrict X, int count, int n)
{
    for (int k = 0; k < count; k += VL) {
        vf r[VL];
        for (int j = 0; j < VL; j++) r[j] = vloada(X + (size_t)(k + j) * VL);
        vtranspose(r);
        for (int l = 0; l < n; l++) vstore(x + l * stride + k, r[l]);
    }
}

/* Scaled tanh f(a) = A tanh(S a), lane-wise, as one rational function (no branches):
 *   a clamped to [-13.5, 13.5] (|S a| <= 9, beyond which A tanh(S a) rounds to A),
 *   f = a P(a^2) / Q(a^2), P of degree 5 and Q of degree 4 in a^2 (a 11/8 rational),
 * the coefficients a relative minimax fit of tanh(x)/x on [0, 9] (relative error 1.3e-9,
 * far below float32 rounding) with S and A folded in. P and Q have positive leading terms
 * and Horner's rule on them is well conditioned; the quotient is vquot (AVX-512: a
 * 14-bit reciprocal and one Newton step on the quotient; AVX2 and vec128: a division).
 * Error bound: at most 6 float32 ulps of A tanh(S a) (measured: 5.3 ulps over every float
 * in [2^-126, 20] for AVX-512, 5.0 for AVX2, 5.4 for vec128, whose multiply-adds round
 * twice); tests/test_isa.py checks the bound for every variant. NaN propagates (the
 * clamp's min/max return their second operand, a, when it is NaN). */
static inline vf vsquash(vf a)
{
    const vf x = vmax(vset1(-13.5f), vmin(vset1(13.5f), a));
    const vf u = vmul(x, x);
    vf p = vfma(vset1(-2.429381292e-13f), u, vset1(1.367721859e-09f));
    vf q = vfma(vset1(5.029634813e-08f), u, vset1(3.459617067e-05f));
    p = vfma(p, u, vset1(2.815125438e-06f));
    q = vfma(q, u, vset1(5.382749729e-03f));
    p = vfma(p, u, vset1(8.743631639e-04f));
    q = vfma(q, u, vset1(2.089519625e-01f));
    p = vfma(p, u, vset1(6.955551634e-02f));
    q = vfma(q, u, vset1(1.0f));
    p = vfma(p, u, vset1(1.143933332e+00f));
    return vquot(vmul(x, p), q);
}

/* f'(a) from y = f(a): (S / A) (A^2 - y^2) */
static inline vf vsquash_deriv(vf y)
{
    return vmul(vset1(LENET_SQUASH_S / LENET_SQUASH_A), vfnma(y, y, vset1(LENET_SQUASH_A * LENET_SQUASH_A)));
}

#endif /* LENET_SIMD_H */
