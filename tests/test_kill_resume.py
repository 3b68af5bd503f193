"""SIGKILL at random points, resume, and the same final weights, bit for bit.

``lenet-native train`` (the default recipe: uint8 gather, random shifts, per-step warm-up
and decay) runs in a child process on a small synthetic set; it is killed with SIGKILL
seven times: four at random moments, three while a checkpoint file is being written (the
test hook $LENET_NATIVE_TEST_WRITE_DELAY holds each atomic write between its complete
temporary file and the rename, and the kill lands when a temporary file is seen). After
each kill it is resumed with ``--resume`` (or started afresh if no checkpoint exists yet);
a run that ends before the kills asked for starts the killed run over.
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

from conftest import synthetic_digits, write_mnist_folder, child_env

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
    return child_env(LENET_NATIVE_TEST_WRITE_DELAY=delay or None)


def _writing(folder):
    """True while a checkpoint write is in progress in ``folder``: a temporary file of
    atomic_write exists and is complete (the test hook holds it before the rename)."""
    for f in folder.iterdir():
        if f.name.startswith(".") and f.name.endswith(".tmp"):
            try:
                if f.stat().st_size > 0:
                    return True
            except FileNotFoundError:     # renamed in between
                pass
    return False


def _weights(path):
    return LeNet5.load(path).params.copy()


def test_sigkill_anywhere_then_resume_gives_the_same_weights(data_dir, tmp_path):
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    t0 = time.perf_counter()
    r = subprocess.run(_command(data_dir, ref_dir / "m.npz", False), env=_env(),
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    uninterrupted = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    want = _weights(ref_dir / "m.npz")

    run_dir = tmp_path / "killed"
    run_dir.mkdir()
    out = run_dir / "m.npz"
    rng = random.Random(19)
    kills = {"random": 0, "in_write": 0}
    events = []
    for attempt in range(40):
        if kills["in_write"] >= 3 and kills["random"] >= 4:
            what = "finish"
        elif kills["in_write"] < 3 and (attempt % 2 == 0 or kills["random"] >= 4):
            what = "write"
        else:
            what = "random"
        delay = 0.3 if what == "write" else None
        p = subprocess.Popen(_command(data_dir, out, out.exists()), env=_env(delay), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed = False
        if what == "random":
            try:
                p.wait(timeout=rng.uniform(0.1, 0.9) * uninterrupted)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                killed = True
        elif what == "write":
            deadline = time.monotonic() + 60
            while p.poll() is None and time.monotonic() < deadline:
                if _writing(run_dir):
                    p.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.01)
        p.wait(timeout=120)
        err = p.stderr.read()
        p.stderr.close()
        if killed:
            assert p.returncode == -signal.SIGKILL, (events, err)
            kills["in_write" if what == "write" else "random"] += 1
            done = (LeNet5.load(out).meta["training"]["epochs_done"] if out.exists() else 0)
            events.append(f"{what}: killed after epoch {done}")
            for f in run_dir.iterdir():          # what a killed write leaves behind
                if f.name.endswith(".tmp"):
                    f.unlink()
            continue
        assert p.returncode == 0, (events, err)
        events.append(f"{what}: ran to the end")
        if what == "finish":
            break
        # finished before the kills asked for: start the killed run over, from scratch
        for f in run_dir.iterdir():
            f.unlink()
    else:
        pytest.fail(f"no finished run after 40 attempts: {events}")
    assert kills["in_write"] >= 3 and kills["random"] >= 4, (kills, events)
    done = LeNet5.load(out).meta["training"]
    assert done["epochs_done"] == EPOCHS
    got = _weights(out)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
