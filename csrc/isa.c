/*
 * Which instruction-set variants exist and which this CPU can run. Pure functions of the
 * build and of the CPU (no state of our own: __builtin_cpu_supports reads the CPUID data
 * that libgcc gathers once at load time and checks that the OS saves the vector state).
 */
#include "lenet.h"

static const char *const ISA_NAMES[LENET_NISA] = {"portable", "avx2", "avx512"};

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
    default: return 0;
    }
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define LENET_CPU_DETECT 1
#endif

int lenet_isa_supported(int isa)
{
    if (!lenet_isa_compiled(isa)) return 0;
    if (isa == LENET_ISA_PORTABLE) return 1;
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
    for (int isa = LENET_NISA - 1; isa > 0; isa--)
        if (lenet_isa_supported(isa)) return isa;
    return LENET_ISA_PORTABLE;
}
