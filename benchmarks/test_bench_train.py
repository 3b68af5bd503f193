"""Training speed, side by side in one run: one SGD step (forward, backward, momentum update)
at batch 64 with 2 threads for native, the NumPy reference and PyTorch eager (when
installed, on the same weights); and the paper's SDLM (one update per sample) against SGD
over the same 2,000 samples.

    pytest benchmarks/test_bench_train.py --benchmark-group-by=group

An epoch is 60,000 / 64 = 938 steps: multiply the step's median by 938 for seconds per
epoch, or compare the medians directly (same data, same weights, same threads).
"""
import numpy as np
import pytest

import lenet_native as ln
from lenet_native import _core, reference as ref
from lenet_native.bench import omp_wait_policy
from lenet_native.interop import to_torch
from lenet_native.layout import C3_IN, C3_OUT, param_vector, trainable_mask

from conftest import torch_epoch as torch_sgd_epoch

THREADS = 2
BATCH = 64
EPOCH_ROUNDS = 3   # alternating torch / native epochs in test_sgd_epoch_native_vs_torch


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = ln.preprocess(rng.integers(0, 256, (2048, 28, 28), dtype=np.uint8))
    y = rng.integers(0, 10, 2048).astype(np.int32)
    return x, y


def _sgd_2048(flat, vel, mask, x, y):
    """SGD over the 2,048 samples in steps of BATCH, THREADS threads (rbf head)."""
    for lo in range(0, 2048, BATCH):
        _core.sgd_train_step(flat, vel, mask, 1e-4, 0.9, 0.0, C3_OUT, C3_IN, "rbf",
                             x[lo:lo + BATCH], y[lo:lo + BATCH], 1.0 / BATCH, THREADS)


def _sdlm_steps(mask):
    """An SDLM step vector placed like the trainer's (layout.param_vector)."""
    step = param_vector()
    step[:] = 1e-5 * mask
    return step


@pytest.mark.parametrize("impl", ["reference", "native", "torch"])
def test_sgd_step(benchmark, data, impl):
    benchmark.group = f"sgd step batch {BATCH}, {THREADS} threads"
    benchmark.extra_info["images"] = BATCH
    x, y = data[0][:BATCH], data[1][:BATCH]
    model = ln.LeNet5(head="softmax", seed=0, threads=THREADS)
    lr, momentum = 0.01, 0.9
    if impl == "native":
        flat, vel = model.params, np.zeros_like(model.params)
        mask = trainable_mask("softmax")

        def step():  # what the trainer runs: gradient and update in one C call
            _core.sgd_train_step(flat, vel, mask, lr, momentum, 0.0, C3_OUT, C3_IN, "softmax",
                                 x, y, 1.0 / BATCH, THREADS)

        benchmark.pedantic(step, rounds=100, iterations=1, warmup_rounds=3)
    elif impl == "reference":
        state = model.state_dict()
        vel = {k: np.zeros_like(v) for k, v in state.items() if k != "c3.table"}

        def step():
            _, grads = ref.loss_and_grad(state, x, y, "softmax")
            for k, g in grads.items():
                vel[k] = momentum * vel[k] + g
                state[k] -= lr * vel[k]

        benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=1)
    else:
        torch = pytest.importorskip("torch")
        torch.set_num_threads(THREADS)
        net = to_torch(model).train()
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
        xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y.astype(np.int64))

        def step():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(xt), yt)
            loss.backward()
            opt.step()

        benchmark.pedantic(step, rounds=100, iterations=1, warmup_rounds=3)


@pytest.mark.parametrize("optimizer", ["sgd", "sdlm"])
def test_sdlm_against_sgd(benchmark, data, optimizer):
    """The same 2,048 samples: SGD in batches of 64 (2 threads) against SDLM's 2,048
    per-sample updates (one thread: each update needs the previous one)."""
    benchmark.group = "2048 samples: sgd (batch 64) vs sdlm (per sample)"
    benchmark.extra_info["images"] = 2048
    x, y = data
    model = ln.LeNet5(head="rbf", seed=0, threads=THREADS)
    flat = model.params
    mask = trainable_mask("rbf")
    if optimizer == "sgd":
        vel = param_vector()

        def run():
            _sgd_2048(flat, vel, mask, x, y)
    else:
        step = _sdlm_steps(mask)
        order = np.arange(2048, dtype=np.int64)

        def run():
            _core.sdlm_epoch(flat, C3_OUT, C3_IN, "rbf", step, x, y, order)

    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)


def test_sdlm_against_sgd_interleaved(benchmark, data):
    """The 3x question asked robustly on a shared machine: an SDLM pass over the 2,048
    samples and SGD over the same samples (32 steps of 64, 2 threads) alternate, so load
    changes hit both alike. extra_info holds each median and the ratio."""
    import time
    benchmark.group = "2048 samples: sdlm vs sgd, interleaved"
    x, y = data
    model = ln.LeNet5(head="rbf", seed=0, threads=THREADS)
    flat, mask = model.params, trainable_mask("rbf")
    vel, step = param_vector(), _sdlm_steps(mask)
    order = np.arange(2048, dtype=np.int64)
    times = {"sgd": [], "sdlm": []}

    def pair():
        t0 = time.perf_counter()
        _sgd_2048(flat, vel, mask, x, y)
        t1 = time.perf_counter()
        _core.sdlm_epoch(flat, C3_OUT, C3_IN, "rbf", step, x, y, order)
        t2 = time.perf_counter()
        times["sgd"].append(t1 - t0)
        times["sdlm"].append(t2 - t1)

    benchmark.pedantic(pair, rounds=15, iterations=1, warmup_rounds=1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    benchmark.extra_info.update({"sgd_median_ms": med["sgd"] * 1e3, "sdlm_median_ms": med["sdlm"] * 1e3,
                                 "sdlm_over_sgd": med["sdlm"] / med["sgd"]})
    print(f"\n2048 samples, interleaved: sgd {med['sgd'] * 1e3:.1f} ms (batch {BATCH}, "
          f"{THREADS} threads), sdlm {med['sdlm'] * 1e3:.1f} ms ({med['sdlm'] / 2048 * 1e6:.1f} us "
          f"per sample, 1 thread): sdlm / sgd = {med['sdlm'] / med['sgd']:.2f}x")


def test_sgd_step_native_vs_torch_interleaved(benchmark, data):
    """The 10x question asked robustly on a shared machine: native and PyTorch steps
    alternate (one of each per round, same batch, same starting weights, same threads), so
    load changes hit both alike. extra_info holds each engine's median step and the ratio;
    the timed function is the pair."""
    torch = pytest.importorskip("torch")
    import time
    torch.set_num_threads(THREADS)
    benchmark.group = f"sgd step batch {BATCH}, {THREADS} threads, interleaved"
    x, y = data[0][:BATCH], data[1][:BATCH]
    model = ln.LeNet5(head="softmax", seed=0, threads=THREADS)
    lr, momentum = 0.01, 0.9
    flat, vel = model.params, np.zeros_like(model.params)
    mask = trainable_mask("softmax")
    net = to_torch(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y.astype(np.int64))
    times = {"native": [], "torch": []}

    def pair():
        t0 = time.perf_counter()
        _core.sgd_train_step(flat, vel, mask, lr, momentum, 0.0, C3_OUT, C3_IN, "softmax",
                             x, y, 1.0 / BATCH, THREADS)
        t1 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
        t2 = time.perf_counter()
        times["native"].append(t1 - t0)
        times["torch"].append(t2 - t1)

    benchmark.pedantic(pair, rounds=200, iterations=1, warmup_rounds=5)
    med = {k: float(np.median(v)) for k, v in times.items()}
    benchmark.extra_info.update({"native_median_ms": med["native"] * 1e3,
                                 "torch_median_ms": med["torch"] * 1e3,
                                 "torch_over_native": med["torch"] / med["native"],
                                 "omp_wait_policy": omp_wait_policy()})
    print(f"\nsgd step, batch {BATCH}, {THREADS} threads, OMP_WAIT_POLICY={omp_wait_policy()}, "
          f"interleaved: native "
          f"{med['native'] * 1e3:.3f} ms, torch {med['torch'] * 1e3:.3f} ms, "
          f"ratio {med['torch'] / med['native']:.2f}x")


def test_sgd_epoch_native_vs_torch(benchmark, mnist_path):
    """Whole epochs over the 60,000 MNIST training digits, batch 64, 2 threads: the trainer
    (lenet_native.training: shuffling, gathering, the fused C step, bookkeeping) against the
    obvious PyTorch loop (randperm, index, forward, backward, step) on the same starting
    weights, alternating: torch, native, torch, native, ... for EPOCH_ROUNDS rounds, so a
    slow minute on this shared VM hits both engines. The per-round ratios and their median
    are in extra_info (and printed with -s). Needs MNIST (the ``mnist_path`` fixture: --data,
    $LENET_NATIVE_DATA or ../shared/data/mnist beside the checkout) and PyTorch."""
    torch = pytest.importorskip("torch")
    import statistics
    import time

    from lenet_native.datasets import load_mnist
    from lenet_native.training import train
    xtr, ytr = load_mnist(mnist_path, "train")
    benchmark.group = f"sgd epoch (60,000 images), batch {BATCH}, {THREADS} threads"
    torch.set_num_threads(THREADS)
    x = ln.preprocess(xtr)
    model = ln.LeNet5(head="softmax", seed=0, threads=THREADS)
    net = to_torch(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(ytr.astype(np.int64))

    def torch_epoch():
        return torch_sgd_epoch(torch, net, opt, xt, yt, BATCH)

    def native_epoch():
        return train(model, x, ytr, epochs=1, lr=0.01, threads=THREADS, progress=False)[0]["seconds"]

    torch_s, native_s = [], []
    for r in range(EPOCH_ROUNDS):
        torch_s.append(torch_epoch())
        if r < EPOCH_ROUNDS - 1:
            native_s.append(native_epoch())
        else:
            native_s.append(benchmark.pedantic(native_epoch, rounds=1, iterations=1))
    ratios = [t / n for t, n in zip(torch_s, native_s)]
    benchmark.extra_info.update({"native_epoch_s": native_s, "torch_epoch_s": torch_s,
                                 "torch_over_native": ratios,
                                 "median_torch_over_native": statistics.median(ratios),
                                 "omp_wait_policy": omp_wait_policy()})
    print(f"\nsgd epoch, 60,000 images, batch {BATCH}, {THREADS} threads, "
          f"OMP_WAIT_POLICY={omp_wait_policy()}, alternating: native "
          + ", ".join(f"{v:.2f}" for v in native_s) + " s; torch "
          + ", ".join(f"{v:.2f}" for v in torch_s) + " s; ratios "
          + ", ".join(f"{v:.1f}x" for v in ratios) + f"; median {statistics.median(ratios):.1f}x")


@pytest.mark.parametrize("placement", ["placed", "off_line"])
def test_sdlm_param_placement(benchmark, data, placement):
    """512 SDLM samples with the parameter and step vectors placed (C5 on a 64-byte line,
    layout.param_vector) or 16 bytes off it: the speed-up the placement was made for."""
    from test_bench_network import _placed_copy
    benchmark.group = "sdlm 512 samples: C5 placement"
    x, y = data
    model = ln.LeNet5(head="rbf", seed=0)
    placed = placement == "placed"
    flat = _placed_copy(model.params, placed)
    step = _placed_copy(_sdlm_steps(trainable_mask("rbf")), placed)
    order = np.arange(512, dtype=np.int64)
    benchmark.pedantic(_core.sdlm_epoch, args=(flat, C3_OUT, C3_IN, "rbf", step, x, y, order),
                       rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["numpy", "native"])
def test_batch_bookkeeping(benchmark, data, impl):
    """The trainer's per-batch loss sum and error count, timed right after an SGD step (run
    untimed before each round, as in the training loop): NumPy's sum/argmax/count_nonzero
    against _core.batch_stats."""
    benchmark.group = f"batch bookkeeping after a step (batch {BATCH})"
    x, y = data[0][:BATCH], data[1][:BATCH]
    model = ln.LeNet5(head="softmax", seed=0, threads=THREADS)
    flat, vel, mask = model.params, param_vector(), trainable_mask("softmax")
    result = {}

    def step():
        result["lo"] = _core.sgd_train_step(flat, vel, mask, 1e-4, 0.9, 0.0, C3_OUT, C3_IN,
                                            "softmax", x, y, 1.0 / BATCH, THREADS)
        return (), {}

    def numpy_stats():
        losses, out = result["lo"]
        return float(np.sum(losses, dtype=np.float64)), int(np.count_nonzero(out.argmax(axis=1) != y))

    def native_stats():
        losses, out = result["lo"]
        return _core.batch_stats(losses, out, y)

    fn = numpy_stats if impl == "numpy" else native_stats
    total, errors = benchmark.pedantic(fn, setup=step, rounds=300, iterations=1)
    assert np.isfinite(total) and 0 <= errors <= BATCH
