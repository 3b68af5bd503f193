"""Build of the C extension. Metadata lives in pyproject.toml; this file only does what
needs code: cythonize, a table of compiler flags, an OpenMP test-compile with a graceful
fallback, and opt-in/opt-out switches read from the environment:

  LENET_NATIVE_OPENMP=0     build without OpenMP (the kernels then run single-threaded)
  LENET_NATIVE_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  LENET_NATIVE_NATIVE=1     add -march=native (never the default: wheels must be portable)
  LENET_NATIVE_SIMD=avx2,avx512,vec128,avx512vnni | none
                            which SIMD variants of the network to build (default: every one
                            the compiler accepts). Each is SIMD_SOURCES (csrc/simd_*.c)
                            compiled on their own with the variant's -m flags (vec128: none,
                            generic 4-lane vectors) and linked in as extra objects; the
                            portable code is always built without -m flags, and the variant
                            is picked at run time by CPU detection (csrc/isa.c).
                            avx512vnni is the int8 inference kernels (csrc/q8_vnni.c) only.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = ["csrc/layers.c", "csrc/network.c", "csrc/isa.c", "csrc/warp.c", "csrc/q8.c",
        "csrc/digits.c"]
# compiled once per SIMD variant (csrc/simd_net.h)
SIMD_SOURCES = ["csrc/simd_forward.c", "csrc/simd_grad.c", "csrc/simd_sdlm.c"]
# variant -> (macro selecting it inside csrc/simd_net.h, extra compiler flags)
SIMD_VARIANTS = {
    "avx2": ("LENET_SIMD_AVX2", ["-mavx2", "-mfma"]),
    "avx512": ("LENET_SIMD_AVX512", ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl",
                                     "-mavx2", "-mfma"]),
    "vec128": ("LENET_SIMD_VEC128", []),   # generic vectors: the target's baseline SIMD
    # int8 inference (vpdpbusd) over simd.h's AVX-512 layer
    "avx512vnni": ("LENET_SIMD_AVX512", ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl",
                                         "-mavx512vnni", "-mavx2", "-mfma"]),
}
# the files of a variant, when not SIMD_SOURCES
VARIANT_SOURCES = {"avx512vnni": ["csrc/q8_vnni.c"]}
SIMD_PROBE = {
    "avx2": "#include <immintrin.h>\nint main(void) { __m256 a = _mm256_set1_ps(1.0f);\n"
            "  a = _mm256_fmadd_ps(a, a, a); return (int)_mm256_cvtss_f32(a) == 2 ? 0 : 1; }\n",
    "avx512": "#include <immintrin.h>\nint main(void) { __m512 a = _mm512_set1_ps(1.0f);\n"
              "  a = _mm512_fmadd_ps(a, a, a); return (int)_mm512_reduce_add_ps(a) == 32 ? 0 : 1; }\n",
    "avx512vnni": "#include <immintrin.h>\nint main(void) { __m512i a = _mm512_set1_epi32(0x01010101);\n"
                  "  a = _mm512_dpbusd_epi32(a, a, a); return _mm512_reduce_add_epi32(a) == 16 * 0x01010105 ? 0 : 1; }\n",
    # what csrc/simd.h's vec128 block uses: vector arithmetic, comparisons, shuffles
    "vec128": "typedef float v4 __attribute__((vector_size(16)));\n"
              "typedef int v4i __attribute__((vector_size(16)));\n"
              "#if defined(__clang__) || __GNUC__ >= 12\n"
              "#define VSHUF(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)\n"
              "#else\n"
              "#define VSHUF(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (v4i){i0, i1, i2, i3})\n"
              "#endif\n"
              "int main(void) { v4 a = {1.0f, 2.0f, 3.0f, 4.0f}; v4i m = a < a * a;\n"
              "  v4 b = (v4)(m & (v4i)a) / VSHUF(a, a, 3, 2, 1, 0); return b[0] == 0.0f ? 0 : 1; }\n",
}


def _env_flag(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def _compiler_accepts(compiler, flags, source):
    """Compile and link a test program with `flags`; True if it works."""
    tmp = tempfile.mkdtemp(prefix="lenet_native_build_")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        compiler.link_executable(objs, os.path.join(tmp, "probe"), extra_postargs=flags)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPENMP_PROBE = """
#include <omp.h>
int main(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n > 0 ? 0 : 1; }
"""

# compiler family -> flags
FLAGS = {
    "unix": {"base": ["-O3", "-std=c99", "-fno-math-errno", "-fno-trapping-math", "-Wall"],
             "openmp": ["-fopenmp"],
             "sanitize": ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"],
             "native": ["-march=native"]},
    "msvc": {"base": ["/O2"], "openmp": ["/openmp"], "sanitize": [], "native": []},
}


class BuildExt(build_ext):
    def build_extensions(self):
        family = "msvc" if self.compiler.compiler_type == "msvc" else "unix"
        table = FLAGS[family]
        compile_args = list(table["base"])
        link_args = []
        if _env_flag("LENET_NATIVE_OPENMP", True):
            if _compiler_accepts(self.compiler, table["openmp"], OPENMP_PROBE):
                compile_args += table["openmp"]
                link_args += table["openmp"]
            else:
                sys.stderr.write("lenet_native: the compiler has no OpenMP; building single-threaded\n")
        if _env_flag("LENET_NATIVE_SANITIZE", False):
            compile_args += table["sanitize"]
            link_args += table["sanitize"][:1]
        if _env_flag("LENET_NATIVE_NATIVE", False):
            compile_args += table["native"]
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        self._simd = self._simd_variants(family, compile_args)
        super().build_extensions()

    def _simd_variants(self, family, compile_args):
        """[(name, macro, flags)] of the SIMD variants to build."""
        wanted = os.environ.get("LENET_NATIVE_SIMD", "").strip().lower()
        if family != "unix" or wanted in ("none", "0", "off", "no"):
            return []
        names = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else list(SIMD_VARIANTS)
        chosen = []
        for name in names:
            if name not in SIMD_VARIANTS:
                raise SystemExit(f"LENET_NATIVE_SIMD: unknown variant {name!r} (known: {', '.join(SIMD_VARIANTS)})")
            macro, flags = SIMD_VARIANTS[name]
            if _compiler_accepts(self.compiler, flags, SIMD_PROBE[name]):
                chosen.append((name, macro, flags + compile_args))
            else:
                sys.stderr.write(f"lenet_native: the compiler cannot build the {name} variant; skipping it\n")
        return chosen

    def build_extension(self, ext):
        # Each SIMD variant: SIMD_SOURCES compiled with its own flags, linked as objects.
        objects, macros = [], []
        for name, macro, flags in getattr(self, "_simd", []):
            objects += self.compiler.compile(
                VARIANT_SOURCES.get(name, SIMD_SOURCES), output_dir=os.path.join(self.build_temp, "simd_" + name),
                macros=[(macro, "1")] + list(ext.define_macros), include_dirs=ext.include_dirs,
                extra_postargs=flags, depends=ext.depends, debug=self.debug)
            macros.append(("LENET_HAVE_" + name.upper(), "1"))
        ext.extra_objects = list(ext.extra_objects) + objects
        ext.define_macros = list(ext.define_macros) + macros
        super().build_extension(ext)


def extensions():
    from Cython.Build import cythonize

    ext = Extension(
        "lenet_native._core",
        sources=["lenet_native/_core.pyx"] + CSRC,
        include_dirs=["csrc"],
        depends=sorted(glob.glob("csrc/*.h")) + SIMD_SOURCES,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    return cythonize([ext], compiler_directives={"language_level": 3}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
