"""Many Python threads on ONE model at once.

The C calls release the GIL, so these threads really run the kernels concurrently (the
overlap is measured and printed by test_calls_overlap, never asserted). Every concurrent
result must be bit-identical to the serial one.
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

from conftest import big_random_state

def child_env():
    """Environment for a child Python process: it imports the same lenet_native as this one."""
    env = dict(os.environ)
    root = str(Path(ln.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


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


def test_calls_overlap():
    """Evidence that the GIL is released during the C calls: two threads each doing a
    forward pass vs the same two passes one after the other, and a pure-Python ticker
    thread that keeps running while a long C call is in progress. Printed, not asserted
    (tests never assert timings)."""
    model = make_model("softmax", 1)
    x = np.repeat(workload(1)[1], 150, axis=0)[:600]
    model.forward(x)
    t0 = time.perf_counter()
    model.forward(x)
    model.forward(x)
    serial = time.perf_counter() - t0
    start = threading.Barrier(2)

    def worker(i):
        start.wait()
        model.forward(x)

    t0 = time.perf_counter()
    assert run_threads(worker, 2) == []
    concurrent = time.perf_counter() - t0
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.01)
    c0 = time.perf_counter()
    model.forward(x)
    c1 = time.perf_counter()
    stop.set()
    t.join()
    inside = sum(c0 < s < c1 for s in ticks)
    print(f"\n2 x forward({len(x)} images), 1 kernel thread each: serial {serial * 1e3:.1f} ms, "
          f"2 Python threads {concurrent * 1e3:.1f} ms (speed-up {serial / concurrent:.2f}x on "
          f"{os.cpu_count()} CPUs); a Python thread ticked {inside} times during one "
          f"{(c1 - c0) * 1e3:.1f} ms C call")


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
