/*
 * Which instruction-set variants exist and which this CPU can run. Pure functions of the
 * build and of the CPU (no state of our own: __builtin_cpu_supports reads the CPUID data
 * that libgcc gathers once at load time and checks that the OS saves the vector state).
 */
#include "lenet.h"

static const char *const ISA_NAMES[LENET_NISA] = {"portable", "avx2", "avx512", "vec128"};

const char *lenet_isa_name(int isa)
{
    return isa >= 0 && isa < LENET_NISA ? ISA_NAMES[isa] : NULL;
}

int lenet_isa_compiled(int isa)
{
    switch (isa) {
    case LENET_ISA_PORTABLE: return 1;
#ifdef LENET_HAVE_AVX2
    case LENET_ISA_AVX2: return 1;
#endif
#ifdef LENET_HAVE_AVX512
    case LENET_ISA_AVX512: return 1;
#endif
#ifdef LENET_HAVE_VEC128
    case LENET_ISA_VEC128: return 1;
#endif
    default: return 0;
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define LENET_CPU_DETECT 1
#endif

int lenet_isa_supported(int isa)
{
    if (!lenet_isa_compiled(isa)) return 0;
    /* portable C, and generic vectors the compiler lowered to the target's baseline
     * (x86-64: SSE2; ARM64: NEON) */
    if (isa == LENET_ISA_PORTABLE || isa == LENET_ISA_VEC128) return 1;
#ifdef LENET_CPU_DETECT
    __builtin_cpu_init();
    if (isa == LENET_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == LENET_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return 0;
}

int lenet_best_isa(void)
{
    const int fastest_first[LENET_NISA] = {LENET_ISA_AVX512, LENET_ISA_AVX2, LENET_ISA_VEC128,
                                           LENET_ISA_PORTABLE};
    for (int k = 0; k < LENET_NISA; k++)
        if (lenet_isa_supported(fastest_first[k])) return fastest_first[k];
    return LENET_ISA_PORTABLE;
}
