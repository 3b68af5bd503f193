"""The whole network: forward at batch 1, 64, 1024, 10000 and a training step
(loss_and_grad at batch 64), NumPy reference against native; then native only, every
instruction-set variant this CPU has at 1 and 2 threads, and for one image.

    pytest benchmarks/test_bench_network.py --benchmark-group-by=group
"""
import numpy as np
import pytest

from lenet_native import _core, reference as ref
from lenet_native.layout import C3_IN, C3_OUT, c5_line_offset

from conftest import IMPLS, ISAS

# reference calls take seconds at large batches: few rounds there
ROUNDS = {1: 200, 64: 50, 1024: 10, 10000: 3}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("batch", [1, 64, 1024, 10000])
def test_forward(benchmark, net, batch, impl):
    benchmark.group = f"forward batch {batch}"
    benchmark.extra_info["images"] = batch
    x = net.x[:batch]
    if impl == "reference":
        out = benchmark.pedantic(ref.forward, args=(net.state, x, net.head),
                                 rounds=max(1, ROUNDS[batch] // 10), iterations=1, warmup_rounds=0)
    else:
        out = benchmark.pedantic(net.model.forward, args=(x,), rounds=ROUNDS[batch], iterations=1,
                                 warmup_rounds=1)
    assert np.asarray(out).shape == (batch, 10)


@pytest.mark.parametrize("impl", IMPLS)
def test_training_step(benchmark, net, impl):
    benchmark.group = "train loss_and_grad batch 64"
    benchmark.extra_info["images"] = 64
    x, y = net.x[:64], net.labels[:64]
    if impl == "reference":
        loss, _ = benchmark.pedantic(ref.loss_and_grad, args=(net.state, x, y, net.head), rounds=10,
                                     iterations=1)
    else:
        loss, _ = benchmark.pedantic(net.model.loss_and_grad, args=(x, y), rounds=50, iterations=1,
                                     warmup_rounds=1)
    assert np.isfinite(loss)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ISAS)
def test_forward_isa_threads(benchmark, net, isa, threads):
    benchmark.group = "native forward batch 1024: isa x threads"
    benchmark.extra_info["images"] = 1024
    benchmark.pedantic(net.forward, args=(net.x[:1024], threads, isa), rounds=10, iterations=1,
                       warmup_rounds=1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("isa", ISAS)
def test_train_isa_threads(benchmark, net, isa, threads):
    benchmark.group = "native loss_grad batch 64: isa x threads"
    benchmark.extra_info["images"] = 64
    benchmark.pedantic(_core.loss_grad, args=(net.flat, C3_OUT, C3_IN, net.head, net.x[:64],
                                              net.labels[:64], 1.0 / 64, threads),
                       kwargs={"isa": isa}, rounds=30, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("isa", ISAS)
def test_single_image_isa(benchmark, net, isa):
    """One image through each variant's single-image path (_core.forward, one thread)."""
    benchmark.group = "native forward one image: isa"
    benchmark.extra_info["images"] = 1
    benchmark.pedantic(net.forward, args=(net.x[:1], 1, isa), rounds=2000, iterations=1,
                       warmup_rounds=10)


def test_single_image_model_forward(benchmark, net):
    """The Python call included: LeNet5.forward on one (1, 32, 32) float32 image."""
    benchmark.group = "model.forward one image"
    x = net.x[:1]
    net.model.threads = 2
    benchmark.pedantic(net.model.forward, args=(x,), rounds=2000, iterations=1, warmup_rounds=10)


def test_thread_scaling_interleaved(benchmark, net):
    """Does 2 threads give 1.8x one thread at batch 1024? Asked robustly on a shared
    machine: 1-thread and 2-thread forwards alternate (one of each per round, same
    images), so load changes hit both alike. extra_info holds each median and the ratio of
    medians; the timed function is the pair."""
    import time
    benchmark.group = "forward batch 1024, 1 vs 2 threads, interleaved"
    x = net.x[:1024]
    times = {1: [], 2: []}

    def pair():
        for threads in (1, 2):
            t0 = time.perf_counter()
            net.forward(x, threads)
            times[threads].append(time.perf_counter() - t0)

    benchmark.pedantic(pair, rounds=60, iterations=1, warmup_rounds=3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    best = {k: float(np.min(v)) for k, v in times.items()}
    benchmark.extra_info.update({"one_thread_images_per_s": 1024 / med[1],
                                 "two_threads_images_per_s": 1024 / med[2],
                                 "speedup_medians": med[1] / med[2],
                                 "speedup_best": best[1] / best[2]})
    print(f"\nforward batch 1024, interleaved: 1 thread {1024 / med[1]:,.0f} images/s, "
          f"2 threads {1024 / med[2]:,.0f} images/s, 2 threads / 1 thread: "
          f"{med[1] / med[2]:.2f}x (medians), {best[1] / best[2]:.2f}x (best times)")


def _placed_copy(flat, placed):
    """flat copied into a vector whose C5 weights start on a 64-byte line (placed) or 16
    bytes past one (where a plain float32 array of the parameters used to put them)."""
    raw = np.empty(flat.size + 32, np.float32)
    for lead in range(16):
        p = raw[lead:lead + flat.size]
        if c5_line_offset(p) == (0 if placed else 16):
            p[:] = flat
            return p
    raise AssertionError("no placement found")


@pytest.mark.parametrize("placement", ["placed", "off_line"])
def test_param_placement_single_image(benchmark, net, placement):
    """The single-image forward with C5's weights on a 64-byte line (layout.param_vector)
    or 16 bytes off it: the speed-up the placement was made for, side by side."""
    benchmark.group = "forward one image: C5 placement"
    handle = _core.Net(_placed_copy(net.flat, placement == "placed"), C3_OUT, C3_IN, net.head)
    x = net.x[:1]
    benchmark.pedantic(handle.forward, args=(x, 1), rounds=3000, iterations=1, warmup_rounds=20)
