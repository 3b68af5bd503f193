"""SIGKILL at random points, resume, and the same final weights, bit for bit.

``lenet-native train`` (the default recipe: uint8 gather, random shifts, per-step warm-up
and decay) runs in a child process on a small synthetic set; it is killed with SIGKILL
several times, at random moments and while a checkpoint file is being written (the test
hook $LENET_NATIVE_TEST_WRITE_DELAY holds each atomic write between its complete
temporary file and the rename, and the kill lands when a temporary file is seen), and
resumed with ``--resume`` after each kill (or started afresh if no checkpoint exists yet).
The final weights must be those of an uninterrupted run, bit for bit.
"""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lenet_native import LeNet5

from conftest import synthetic_digits, write_mnist_folder

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"),
                              {"train": synthetic_digits(3000, 1), "test": synthetic_digits(200, 2)})


def _command(data, out, resume):
    return ([sys.executable, "-m", "lenet_native", "train", "--data", str(data), "--out", str(out),
             "--epochs", str(EPOCHS), "--threads", "1", "--no-progress", "--seed", "3"]
            + (["--resume"] if resume else []))


def _env(delay=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("LENET_NATIVE_TEST_WRITE_DELAY", None)
    if delay:
        env["LENET_NATIVE_TEST_WRITE_DELAY"] = str(delay)
    return env


def _weights(path):
    return LeNet5.load(path).params.copy()


def test_sigkill_anywhere_then_resume_gives_the_same_weights(data_dir, tmp_path):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    t0 = time.perf_counter()
    r = subprocess.run(_command(data_dir, ref_dir / "m.npz", False), env=_env(),
                       capture_output=True, text=True, timeout=120)
    uninterrupted = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    want = _weights(ref_dir / "m.npz")

    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    out = run_dir / "m.npz"
    rng = random.Random(19)
    kills = {"random": 0, "in_write": 0}
    plan = ["write", "random", "write", "random", "random", "write", "random"]
    for what in plan + ["finish"]:
        delay = 0.3 if what == "write" else None
        p = subprocess.Popen(_command(data_dir, out, out.exists()), env=_env(delay),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = False
        if what == "random":
            try:
                p.wait(timeout=rng.uniform(0.1, 0.6) * uninterrupted)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                killed = True
                kills["random"] += 1
        elif what == "write":
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                # a checkpoint write in progress: its temporary file is complete, not renamed
                if any(f.name.endswith(".tmp") and f.stat().st_size > 0
                       for f in run_dir.iterdir() if f.name.startswith(".")):
                    p.send_signal(signal.SIGKILL)
                    killed = True
                    kills["in_write"] += 1
                    break
                time.sleep(0.01)
        p.wait(timeout=120)
        err = p.stderr.read()
        p.stderr.close()
        if killed:
            assert p.returncode == -signal.SIGKILL
            for f in run_dir.iterdir():          # what a killed write leaves behind
                if f.name.endswith(".tmp"):
                    f.unlink()
        else:
            assert p.returncode == 0, err
            if what == "finish" or LeNet5.load(out).meta["training"]["epochs_done"] == EPOCHS:
                break
    assert kills["in_write"] >= 2 and kills["random"] + kills["in_write"] >= 4, kills
    done = LeNet5.load(out).meta["training"]
    assert done["epochs_done"] == EPOCHS
    got = _weights(out)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
