"""Many Python threads on ONE model at once.

The C calls release the GIL, so these threads really run the kernels concurrently
(test_native_calls_let_other_python_threads_run). Every concurrent result must be
bit-identical to the serial one.
"""
import os
import subprocess
import tempfile
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lenet_native as ln

from conftest import big_random_state, child_env



N_THREADS = 8
ROUNDS = 6


def make_model(head, threads, seed=0):
    m = ln.LeNet5(head=head, seed=seed, threads=threads)
    m.load_state_dict(big_random_state(m, np.random.default_rng(seed + 7), scale=2.0))
    return m


def workload(i):
    rng = np.random.default_rng(100 + i)
    n = 3 + i % 4
    digits = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return digits, ln.preprocess(digits), rng.integers(0, 10, n)


def everything(model, digits, x, y, with_hessian):
    loss, grads = model.loss_and_grad(x, y)
    out = {"forward": model.forward(x), "predict": model.predict(digits),
           "proba": model.predict_proba(x), "c3": model.activations(x)["c3"], "loss": np.float64(loss)}
    out.update({"grad " + k: v for k, v in grads.items()})
    if with_hessian:
        out.update({"hess " + k: v for k, v in model.hessian_diag(x, y).items()})
    return out


def run_threads(target, n=N_THREADS):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as exc:  # collected and reported by the test
            errors.append((i, repr(exc)))

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


@pytest.mark.parametrize("head, kernel_threads", [("softmax", 1), ("rbf", 1), ("softmax", 2)])
def test_concurrent_calls_match_serial(head, kernel_threads):
    """8 threads share one model, each running forward, predict, predict_proba, activations,
    loss_and_grad and hessian_diag on its own data, several rounds, all starting together;
    every result is bit-identical to the serial result. A thread whose input is bad gets
    its ValueError without disturbing the others."""
    model = make_model(head, kernel_threads)
    data = [workload(i) for i in range(N_THREADS)]
    with_hessian = kernel_threads == 1
    serial = [everything(model, *d, with_hessian) for d in data]
    bad = np.full((2, 32, 32), np.nan, np.float32)
    start = threading.Barrier(N_THREADS)
    mismatches = []

    def worker(i):
        start.wait()
        for r in range(ROUNDS):
            got = everything(model, *data[i], with_hessian)
            for k, v in serial[i].items():
                if not np.array_equal(got[k], v):
                    mismatches.append((i, r, k))
            if (i + r) % 3 == 0:
                with pytest.raises(ValueError, match="NaN"):
                    model.forward(bad)
                with pytest.raises(ValueError, match="0..9"):
                    model.loss_and_grad(data[i][1], np.full(len(data[i][2]), 11))

    errors = run_threads(worker)
    assert errors == []
    assert mismatches == []


def test_concurrent_load_state_dict_is_all_or_nothing():
    """load_state_dict swaps the whole parameter vector: a forward running meanwhile in
    another thread sees the old weights or the new ones, never a mixture."""
    model = ln.LeNet5(seed=0, threads=1)
    a = big_random_state(model, np.random.default_rng(1), 2.0)
    b = big_random_state(model, np.random.default_rng(2), 2.0)
    x = workload(0)[1]
    model.load_state_dict(a)
    out_a = model.forward(x)
    model.load_state_dict(b)
    out_b = model.forward(x)
    assert not np.array_equal(out_a, out_b)
    stop = threading.Event()
    seen = {"a": 0, "b": 0, "mixed": 0}

    def reader(i):
        while not stop.is_set():
            out = model.forward(x)
            key = "a" if np.array_equal(out, out_a) else "b" if np.array_equal(out, out_b) else "mixed"
            seen[key] += 1

    def writer():
        for k in range(60):
            model.load_state_dict(a if k % 2 else b)
        stop.set()

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    w = threading.Thread(target=writer)
    for t in readers + [w]:
        t.start()
    for t in readers + [w]:
        t.join(120)
    print("forward results during swaps:", seen)
    assert seen["mixed"] == 0


def test_concurrent_load_of_one_file(tmp_path):
    path = tmp_path / "m.npz"
    make_model("rbf", 1).save(path)
    want = ln.LeNet5.load(path).state_dict()
    loaded = [None] * N_THREADS

    def worker(i):
        loaded[i] = ln.LeNet5.load(path, threads=1).state_dict()

    assert run_threads(worker) == []
    for s in loaded:
        assert all(np.array_equal(s[k], want[k]) for k in want)


@pytest.fixture(scope="module")
def native_calls():
    """name -> a call of each lenet_native._core function that computes for long, made
    straight (the model's Python wrappers around them call NumPy, which may release the GIL
    itself and hide a C call that does not)."""
    from lenet_native import _core
    from lenet_native.layout import C3_IN, C3_OUT, pack, trainable_mask

    rng = np.random.default_rng(0)
    x = ln.preprocess(rng.integers(0, 256, (4096, 28, 28), dtype=np.uint8))
    y = rng.integers(0, 10, len(x)).astype(np.int32)
    rbf = pack(ln.LeNet5(head="rbf", seed=0).state_dict(), "rbf")
    soft = pack(ln.LeNet5(head="softmax", seed=0).state_dict(), "softmax")
    moving, velocity = soft.copy(), np.zeros_like(soft)
    sdlm_params, step = rbf.copy(), np.full(rbf.shape, 1e-6, np.float32)
    ones, zeros = np.ones(len(x), np.float32), np.zeros(len(x), np.float32)
    return {
        "forward": lambda: _core.forward(soft, C3_OUT, C3_IN, "softmax", x, 1),
        "Net.forward": lambda: _core.Net(soft, C3_OUT, C3_IN, "softmax").forward(x, 1),
        "loss_grad": lambda: _core.loss_grad(soft, C3_OUT, C3_IN, "softmax", x[:1024],
                                             y[:1024], 1.0, 1),
        "sgd_train_step": lambda: _core.sgd_train_step(
            moving, velocity, trainable_mask("softmax"), 1e-6, 0.9, 0.0, C3_OUT, C3_IN,
            "softmax", x[:1024], y[:1024], 1.0 / 1024, 1),
        "hessian_diag": lambda: _core.hessian_diag(rbf, C3_OUT, C3_IN, "rbf", x[:256],
                                                   y[:256], 1.0),
        "sdlm_epoch": lambda: _core.sdlm_epoch(sdlm_params, C3_OUT, C3_IN, "rbf", step, x, y,
                                               np.arange(1024, dtype=np.int64)),
        "warp_rows": lambda: _core.warp_rows(x, ones, zeros, ones, zeros, zeros, -0.1),
    }


def ticks_inside(call, tries=20):
    """How often another Python thread ran while ``call()`` ran: the most over up to
    ``tries`` calls. With the switch interval made far longer than the test, CPython never
    takes the GIL from a thread that holds it, so the count is exactly 0 unless the call
    lets go of the GIL; a call that does gives the ticker the whole call to run in, and
    a few tries make a scheduler that is slow to wake it (a busy shared machine) harmless."""
    ticks = [0]
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.0002)  # gives the GIL back between ticks

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    t = threading.Thread(target=ticker)
    best = 0
    try:
        t.start()
        while ticks[0] == 0:
            time.sleep(0.001)
        for _ in range(tries):
            before = ticks[0]
            call()
            best = max(best, ticks[0] - before)
            if best:
                break
            time.sleep(0.002)  # the ticker waits for the GIL again
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        t.join(10)
    return best


def test_the_probe_sees_a_call_that_holds_the_gil():
    assert ticks_inside(lambda: sum(range(3_000_000)), tries=3) == 0


@pytest.mark.parametrize("name", ["forward", "Net.forward", "loss_grad", "sgd_train_step",
                                  "hessian_diag", "sdlm_epoch", "warp_rows"])
def test_native_calls_let_other_python_threads_run(name, native_calls):
    """Every long C call releases the GIL, so Python threads sharing a model run their
    kernels at the same time (no timing asserted: a pure-Python thread must run at least
    once during the call, which it cannot while the call holds the GIL)."""
    call = native_calls[name]
    call()
    assert ticks_inside(call) > 0, f"_core.{name} holds the GIL while it computes"


FORK_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import lenet_native as ln
    model = ln.LeNet5(seed=0, threads=2)
    x = np.zeros((8, 32, 32), np.float32)
    want = model.forward(x)            # the parent's OpenMP thread pool now exists
    pid = os.fork()
    if pid == 0:
        signal.alarm(3)                # a hung child dies of SIGALRM
        ok = np.array_equal(model.forward(x), want)
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        print("child killed by signal", os.WTERMSIG(status), "(hung)")
        sys.exit(1)
    sys.exit(os.WEXITSTATUS(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_can_compute():
    """multiprocessing with the fork start method: a child forked after the parent used
    multi-threaded kernels must still compute (not hang)."""
    proc = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120,
                          env=child_env(), cwd=tempfile.gettempdir())  # import the installed package
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_leaves_the_openmp_wait_policy_alone():
    """The process's one libgomp is shared with PyTorch and others: importing the package
    and running a threaded call must not set OMP_WAIT_POLICY for them (an earlier version
    set PASSIVE, which slowed PyTorch's training loop in the same process by about 40 %)."""
    code = ("import os, numpy as np, lenet_native as ln\n"
            "ln.LeNet5(seed=0, threads=2).forward(np.zeros((32, 32, 32), np.float32))\n"
            "print(repr(os.environ.get('OMP_WAIT_POLICY')))\n")
    env = {k: v for k, v in child_env().items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"
