"""Build of the C extension. Metadata lives in pyproject.toml; this file only does what
needs code: cythonize, a table of compiler flags, an OpenMP test-compile with a graceful
fallback, and opt-in/opt-out switches read from the environment:

  LENET_NATIVE_OPENMP=0     build without OpenMP (the kernels then run single-threaded)
  LENET_NATIVE_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  LENET_NATIVE_NATIVE=1     add -march=native (never the default: wheels must be portable)
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = ["csrc/layers.c", "csrc/network.c"]


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
    "unix": {"base": ["-O3", "-std=c99", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"],
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
        super().build_extensions()


def extensions():
    from Cython.Build import cythonize

    ext = Extension(
        "lenet_native._core",
        sources=["lenet_native/_core.pyx"] + CSRC,
        include_dirs=["csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    return cythonize([ext], compiler_directives={"language_level": 3}, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})
