"""liblenet from C against LeNet5.forward from Python, in the same run on the same weights:
one image (the call overhead a C program saves) and a batch of 10,000 (throughput, where
both run the same kernels). The C library is built with CMake (Release, every variant) into
a temporary folder and called through ctypes, which adds its own few microseconds per call:
the ctypes figure is an upper bound of what a C program pays. The interleaved test also runs
``lenet-classify --time`` (examples/c) on the same 10,000 digits each round: the latency and
throughput a C program sees, without ctypes (uint8 digits in, so preprocessing included).

    pytest benchmarks/test_bench_clib.py --benchmark-group-by=group -s

Groups: ``one image: C API vs model.forward`` and ``batch 10000, 2 threads: C API vs
model.forward`` (pytest-benchmark, impl = c_api / python), and ``C API vs Python,
interleaved``: rounds alternating the two, the medians and ratios in ``extra_info`` (and
printed with ``-s``), with the CPU's name. Skipped without cmake or a C compiler.
"""
import ctypes
import os
import re
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import lenet_native as ln
from lenet_native.bench import cpu_name

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or not (shutil.which("cc") or shutil.which("gcc")),
                                reason="needs cmake and a C compiler")



class CApi:
    """liblenet.so through ctypes, one model loaded."""

    def __init__(self, lib_path, model_path):
        lib = ctypes.CDLL(str(lib_path))
        self.lib = lib
        lib.lenet_model_load.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
        lib.lenet_model_outputs.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                            ctypes.c_size_t, ctypes.c_int]
        lib.lenet_model_isa.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
        lib.lenet_model_free.argtypes = [ctypes.c_void_p]
        self.model = ctypes.c_void_p()
        assert lib.lenet_model_load(ctypes.byref(self.model), str(model_path).encode()) == 0
        name = ctypes.c_char_p()
        lib.lenet_model_isa(self.model, ctypes.byref(name))
        self.isa = name.value.decode()
        self._run = lib.lenet_model_outputs
        self._handle = self.model.value

    def outputs(self, x, out, threads):
        """out (N, 10) = the head's outputs of x (N, 32, 32), both C-contiguous float32."""
        st = self._run(self._handle, out.ctypes.data, x.ctypes.data, x.shape[0], threads)
        assert st == 0


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_clib")
    for cmd in (["cmake", "-S", ROOT, "-B", tmp / "build", "-DCMAKE_BUILD_TYPE=Release"],
                ["cmake", "--build", tmp / "build", "-j", "2", "--target", "lenet", "lenet-classify"]):
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True)
    model = ln.load_pretrained("softmax", threads=1)
    model.save(tmp / "softmax.lenet")
    c = CApi(tmp / "build" / "liblenet.so", tmp / "softmax.lenet")
    assert c.isa == ln._core.default_isa(), "C and Python must run the same variant"
    digits = np.random.default_rng(0).integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    from lenet_native.idx import write_idx
    write_idx(tmp / "digits-idx3-ubyte", digits)
    classify = [str(tmp / "build" / "lenet-classify"), "--time", "--threads", "2",
                str(tmp / "softmax.lenet"), str(tmp / "digits-idx3-ubyte")]
    return {"c": c, "model": model, "x": ln.preprocess(digits), "classify": classify}


def _one_image(engines, impl):
    x, model, c = engines["x"][:1], engines["model"], engines["c"]
    out = np.empty((1, 10), np.float32)
    if impl == "c_api":
        return lambda: c.outputs(x, out, 1)
    model.threads = 1
    return lambda: model.forward(x)


def _batch(engines, impl, threads=2):
    x, model, c = engines["x"], engines["model"], engines["c"]
    out = np.empty((len(x), 10), np.float32)
    if impl == "c_api":
        return lambda: c.outputs(x, out, threads)
    model.threads = threads
    return lambda: model.forward(x)


@pytest.mark.parametrize("impl", ["c_api", "python"])
def test_one_image(benchmark, engines, impl):
    benchmark.group = "one image: C API vs model.forward"
    benchmark.extra_info.update(images=1, cpu=cpu_name(), isa=engines["c"].isa)
    benchmark.pedantic(_one_image(engines, impl), rounds=2000, iterations=1, warmup_rounds=50)


@pytest.mark.parametrize("impl", ["c_api", "python"])
def test_batch(benchmark, engines, impl):
    benchmark.group = "batch 10000, 2 threads: C API vs model.forward"
    benchmark.extra_info.update(images=10000, cpu=cpu_name(), isa=engines["c"].isa)
    benchmark.pedantic(_batch(engines, impl), rounds=5, iterations=1, warmup_rounds=1)


def test_interleaved(benchmark, engines):
    """Rounds alternating C and Python (a busy shared machine slows both alike): per engine
    the median of the rounds' per-call medians, and the ratios Python / C."""
    benchmark.group = "C API vs Python, interleaved"
    timings = {k: [] for k in ("c_one", "py_one", "c_batch", "py_batch", "exe_one", "exe_batch")}
    calls = {"c_one": _one_image(engines, "c_api"), "py_one": _one_image(engines, "python")}
    batch = {"c_batch": _batch(engines, "c_api"), "py_batch": _batch(engines, "python")}

    def rounds():
        for _ in range(int(os.environ.get("LENET_CLIB_BENCH_ROUNDS", "7"))):
            for name, f in calls.items():
                t = []
                for _ in range(300):
                    t0 = time.perf_counter()
                    f()
                    t.append(time.perf_counter() - t0)
                timings[name].append(statistics.median(t))
            for name, f in batch.items():
                t0 = time.perf_counter()
                f()
                timings[name].append(time.perf_counter() - t0)
            err = subprocess.run(engines["classify"], check=True, capture_output=True, text=True).stderr
            timings["exe_one"].append(float(re.search(r"median ([0-9.]+) us", err).group(1)) * 1e-6)
            timings["exe_batch"].append(10000 / float(re.search(r"= ([0-9.]+) images/s", err).group(1)))

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    med = {k: statistics.median(v) for k, v in timings.items()}
    info = {"cpu": cpu_name(), "isa": engines["c"].isa,
            "one_image_us": {"c_api": med["c_one"] * 1e6, "python": med["py_one"] * 1e6,
                             "lenet_classify_u8": med["exe_one"] * 1e6},
            "batch_images_per_s": {"c_api": 10000 / med["c_batch"], "python": 10000 / med["py_batch"],
                                   "lenet_classify_u8": 10000 / med["exe_batch"]},
            "one_image_ratio_python_over_c": med["py_one"] / med["c_one"],
            "batch_ratio_python_over_c": med["py_batch"] / med["c_batch"]}
    benchmark.extra_info.update(info)
    print(f"\n{info['cpu']} ({info['isa']}): one image C API {info['one_image_us']['c_api']:.1f} us, "
          f"model.forward {info['one_image_us']['python']:.1f} us (x{info['one_image_ratio_python_over_c']:.2f}); "
          f"batch 10000 at 2 threads: C API {info['batch_images_per_s']['c_api']:,.0f} images/s, "
          f"model.forward {info['batch_images_per_s']['python']:,.0f} images/s "
          f"(x{info['batch_ratio_python_over_c']:.2f}); lenet-classify (C, uint8 in): one image "
          f"{info['one_image_us']['lenet_classify_u8']:.1f} us, "
          f"{info['batch_images_per_s']['lenet_classify_u8']:,.0f} images/s")
