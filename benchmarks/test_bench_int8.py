"""int8 inference (lenet_native.quantize) against fp32 native on the same pretrained weights:
one image, and a batch of 1,024 at 1 and 2 threads. Each group times both precisions; the
interleaved test alternates them (one call of each per round, so load on a shared machine
hits both alike) and records the int8 / fp32 speed ratio in extra_info (printed with -s),
the figure docs/int8.md and issue 18's target (1.8x at batch 1,024, 2 threads) speak of.

    pytest benchmarks/test_bench_int8.py -s --benchmark-group-by=group
"""
import numpy as np
import pytest

import lenet_native as ln
from lenet_native.bench import time_interleaved, cpu_name

PRECISIONS = ["fp32", "int8"]


@pytest.fixture(scope="module")
def models():
    fp32 = ln.LeNet5.pretrained("softmax")
    return {"fp32": fp32, "int8": fp32.quantize()}


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return ln.preprocess(rng.integers(0, 256, (1024, 28, 28), dtype=np.uint8))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_one_image(benchmark, models, batch, precision):
    benchmark.group = "one image: int8 vs fp32"
    model, x = models[precision], batch[:1]
    model.threads = 1
    benchmark(model.forward, x)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_batch_1024(benchmark, models, batch, precision, threads):
    benchmark.group = f"batch 1024, {threads} thread(s): int8 vs fp32"
    model = models[precision]
    model.threads = threads
    benchmark(model.forward, batch)


@pytest.mark.parametrize("threads", [1, 2])
def test_interleaved_ratio(benchmark, models, batch, threads):
    benchmark.group = f"batch 1024, {threads} thread(s): int8 / fp32 interleaved"
    for m in models.values():
        m.threads = threads
    (fp32_s, int8_s), rounds = time_interleaved(
        [models["fp32"].forward, models["int8"].forward], batch, min_time=0.5, max_reps=200)
    ratio = fp32_s / int8_s
    benchmark.extra_info.update(cpu=cpu_name(), threads=threads, rounds=rounds,
                                fp32_s=fp32_s, int8_s=int8_s, int8_speedup=ratio)
    print(f"\n{cpu_name()}: batch 1024, {threads} thread(s): fp32 {fp32_s * 1e3:.2f} ms, "
          f"int8 {int8_s * 1e3:.2f} ms, int8 speed-up {ratio:.2f}x ({rounds} rounds)")
    benchmark.pedantic(models["int8"].forward, args=(batch,), rounds=1, iterations=1)
