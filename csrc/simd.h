/*
 * A thin vector layer over AVX2+FMA (8 float lanes) or AVX-512 (16 float lanes), enough
 * for the kernels of simd_net.c: each function is one or two intrinsics. Only included by
 * files compiled with -DLENET_SIMD_AVX2 or -DLENET_SIMD_AVX512 and the matching -m flags.
 *
 * Every operation is lane-wise (no reduction across lanes), so a value computed in lane
 * k depends on lane k's inputs alone: that is what makes images side by side in the lanes
 * give bit-for-bit the results of the same image computed alone.
 */
#ifndef LENET_SIMD_H
#define LENET_SIMD_H

#include <immintrin.h>
#include <stdint.h>

#include "lenet.h"

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
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm512_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }   /* a*b + c */
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a*b */
static inline vf vand(vf a, vf b) { return _mm512_and_ps(a, b); }
static inline vf vandnot(vf a, vf b) { return _mm512_andnot_ps(a, b); }       /* ~a & b */
static inline vf vxor(vf a, vf b) { return _mm512_xor_ps(a, b); }
static inline vf vor(vf a, vf b) { return _mm512_or_ps(a, b); }
/* a > b ? x : y */
static inline vf vsel_gt(vf a, vf b, vf x, vf y)
{
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x);
}
/* truncation toward zero of a float to int, back to float; and 2^n for integer-valued n */
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* a - round(a), exact */
static inline vf vfrac(vf a) { return _mm512_reduce_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vscale2(vf a, vf n) { return _mm512_scalef_ps(a, n); }   /* a 2^n, n integral */
static inline vf vtrunc(vf a) { return _mm512_cvtepi32_ps(_mm512_cvttps_epi32(a)); }
static inline vf vpow2i(vf n)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n),
                                                                  _mm512_set1_epi32(127)), 23));
}
/* loads/stores of the first m (0..VL) lanes; the others read as 0 / are left alone */
static inline vmask vmask_first(int m) { return (vmask)(m >= 16 ? 0xffff : (1u << m) - 1u); }
static inline vf vload_first(const float *p, int m) { return _mm512_maskz_loadu_ps(vmask_first(m), p); }
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
/* X[k * VL + l] = x[l * stride + k], k < count, for the first n lanes (the others 0) */
static inline void vgather_lanes(float *restrict X, const float *restrict x, int stride, int count, int n)
{
    const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32(stride));
    const __mmask16 m = vmask_first(n);
    for (int k = 0; k < count; k++)
        _mm512_store_ps(X + k * 16, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x + k, 4));
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
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vmin(vf a, vf b) { return _mm256_min_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vand(vf a, vf b) { return _mm256_and_ps(a, b); }
static inline vf vandnot(vf a, vf b) { return _mm256_andnot_ps(a, b); }
static inline vf vxor(vf a, vf b) { return _mm256_xor_ps(a, b); }
static inline vf vor(vf a, vf b) { return _mm256_or_ps(a, b); }
static inline vf vsel_gt(vf a, vf b, vf x, vf y)
{
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ));
}
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vfrac(vf a) { return vsub(a, vround(a)); }
static inline vf vtrunc(vf a) { return _mm256_cvtepi32_ps(_mm256_cvttps_epi32(a)); }
static inline vf vpow2i(vf n)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n),
                                                                  _mm256_set1_epi32(127)), 23));
}
static inline vf vscale2(vf a, vf n) { return vmul(a, vpow2i(n)); }   /* a 2^n, n integral, |n| < 127 */
static inline __m256i vmask_first(int m)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), idx);
}
static inline vf vload_first(const float *p, int m) { return _mm256_maskload_ps(p, vmask_first(m)); }
static inline void vstore_first(float *p, vf a, int m) { _mm256_maskstore_ps(p, vmask_first(m), a); }
static inline void vdeint(vf a, vf b, vf *ev, vf *od)
{
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  /* a0 a2 b0 b2 a4 a6 b4 b6 */
    const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    *ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
    *od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}
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
static inline void vgather_lanes(float *restrict X, const float *restrict x, int stride, int count, int n)
{
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
    const __m256 m = _mm256_castsi256_ps(vmask_first(n));
    for (int k = 0; k < count; k++)
        _mm256_store_ps(X + k * 8, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x + k, idx, m, 4));
}
/* sum of the lanes, always the same tree: lanes l and l+4, then l+2, l+1 */
static inline float vhsum(vf a)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#else
#error "simd.h needs LENET_SIMD_AVX2 or LENET_SIMD_AVX512"
#endif

/* Scaled tanh f(a) = A tanh(S a), lane-wise, S and A folded into the constants:
 *   |a| <= 0.9375 (|S a| <= 0.625): f = a (A S + v Q(v)), v = a^2, Q the Cephes tanhf
 *       polynomial rescaled (v Q(v) is at most 13% of A S, so its rounding errors are damped);
 *   |a| >  0.9375: f = sign(a) (A - 2A / (2^u + 1)), u = 2 S |a| / ln 2 clamped to 26 (where
 *       tanh rounds to 1), 2^u = 2^n 2^f with n = round(u), |f| <= 1/2 and 2^f a degree-6
 *       minimax polynomial (relative error 2e-9); the 2A/(2^u+1) term is at most 45% of A.
 * Error bound: at most 4 float32 ulps of A tanh(S a) (measured: 2.2 ulps over every float
 * in [-20, 20]); tests/test_isa.py checks the bound for every variant as
 * tests/test_kernels.py does for the portable lenet_tanhf. The same operations in the
 * AVX2 and AVX-512 variants (division, exact scaling by 2^n), so both give the same bits.
 * NaN propagates (min/max take the NaN operand second). */
static inline vf vsquash(vf a)
{
    const vf sign = vset1(-0.0f);
    const vf aa = vandnot(sign, a);
    const vf u = vmin(vset1(26.0f), vmul(aa, vset1(1.9235934019088745f)));   /* 2 S / ln 2 */
    const vf f = vfrac(u);          /* u - round(u), exact */
    const vf n = vsub(u, f);        /* round(u), exact */
    vf p = vfma(vset1(1.5353361959569156e-4f), f, vset1(1.3398875016719103e-3f));
    p = vfma(p, f, vset1(9.61843691766262e-3f));
    p = vfma(p, f, vset1(5.5503323674201965e-2f));
    p = vfma(p, f, vset1(0.24022647738456726f));
    p = vfma(p, f, vset1(0.6931471824645996f));
    p = vfma(p, f, vset1(1.0f));
    const vf d = vadd(vscale2(p, n), vset1(1.0f));
    const vf g = vdiv(vset1(2.0f * LENET_SQUASH_A), d);
    const vf big = vor(vsub(vset1(LENET_SQUASH_A), g), vand(sign, a));
    const vf v = vmul(a, a);
    vf q = vfma(vset1(-1.1317302414681762e-4f), v, vset1(9.212153381668031e-4f));
    q = vfma(q, v, vset1(-5.3969514556229115e-3f));
    q = vfma(q, v, vset1(3.0124012380838394e-2f));
    q = vfma(q, v, vset1(-0.16947133839130402f));
    const vf small = vmul(a, vfma(q, v, vset1(1.1439332962036133f)));  /* A S */
    return vsel_gt(aa, vset1(0.9375f), big, small);
}

/* f'(a) from y = f(a): (S / A) (A^2 - y^2) */
static inline vf vsquash_deriv(vf y)
{
    return vmul(vset1(LENET_SQUASH_S / LENET_SQUASH_A), vfnma(y, y, vset1(LENET_SQUASH_A * LENET_SQUASH_A)));
}

#endif /* LENET_SIMD_H */
