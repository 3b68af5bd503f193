"""The training paths of issue 19: uint8 digits gathered per batch (the same weights as
preprocessed float input), the per-step linear schedule with warm-up, random shifts,
target_error, the fan_in initialisation, the recipes, and the CLI's --recipe best being
the earlier default bit for bit."""
import numpy as np
import pytest

import lenet_native as ln
from lenet_native import cli
from lenet_native.recipes import RECIPES, recipe
from lenet_native.training import linear_step_factor, lr_factor, train

from conftest import synthetic_digits, write_mnist_folder, child_env


@pytest.fixture(scope="module")
def digits():
    return synthetic_digits(300, 1) + synthetic_digits(60, 2)


def _same(a, b):
    return np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("optimizer, head", [("sgd", "softmax"), ("sgd", "rbf"), ("sdlm", "rbf")])
def test_uint8_digits_train_like_preprocessed_input(digits, optimizer, head):
    x, y, xt, yt = digits
    kw = dict(epochs=2, optimizer=optimizer, batch_size=33, progress=False, threads=2)
    a, b = ln.LeNet5(head=head, seed=1), ln.LeNet5(head=head, seed=1)
    ha = train(a, x, y, xt, yt, **kw)
    hb = train(b, ln.preprocess(x), y, ln.preprocess(xt), yt, **kw)
    assert _same(a.params, b.params)
    assert [r["test_error"] for r in ha] == [r["test_error"] for r in hb]


def test_evaluate_uint8_equals_float(digits):
    x, y, _, _ = digits
    m = ln.LeNet5(seed=0)
    for bs in (1, 7, 2000):
        assert ln.evaluate(m, x, y, batch_size=bs)["errors"] == ln.evaluate(m, ln.preprocess(x), y)["errors"]
        assert ln.evaluate(m, x, y, batch_size=bs)["loss"] == pytest.approx(
            ln.evaluate(m, ln.preprocess(x), y)["loss"], rel=1e-6)


def test_linear_schedule_per_step():
    steps, warm = 10, 2
    f = [linear_step_factor(s, steps, warm) for s in range(steps)]
    assert f[:2] == [0.5, 1.0] and f[2] == 1.0 and f[-1] == pytest.approx(1 / 8)
    assert all(a > b for a, b in zip(f[2:], f[3:]))          # decreasing after the warm-up
    assert lr_factor("linear", 1, 4) == 0.75


def test_fast_settings_record_and_shift_determinism(digits):
    x, y, xt, yt = digits
    kw = dict(epochs=2, batch_size=64, lr_schedule="linear", warmup=0.2, shift=2, progress=False)
    a, b, c = (ln.LeNet5(seed=2, init="fan_in") for _ in range(3))
    h = train(a, x, y, xt, yt, threads=1, **kw)
    train(b, x, y, xt, yt, threads=2, **kw)
    train(c, x, y, xt, yt, threads=2, **dict(kw, shift=0))
    assert _same(a.params, b.params)                  # same seed, any threads: same weights
    assert not _same(a.params, c.params)              # the shifts do change the batches
    steps = 2 * 5                                      # 300 / 64 -> 5 batches per epoch
    assert h[0]["lr"] == pytest.approx(0.1 * linear_step_factor(0, steps, 2))
    assert h[1]["lr"] == pytest.approx(0.1 * linear_step_factor(5, steps, 2))
    assert a.meta["training"]["warmup"] == 0.2 and a.meta["training"]["shift"] == 2


def test_refusals(digits):
    x, y, xt, yt = digits
    m = ln.LeNet5(seed=0)
    with pytest.raises(ValueError, match="shift needs the uint8"):
        train(m, ln.preprocess(x), y, epochs=1, shift=1, progress=False)
    with pytest.raises(ValueError, match="warmup needs"):
        train(m, x, y, epochs=1, warmup=0.1, progress=False)
    with pytest.raises(ValueError, match="shift must be 0, 1 or 2"):
        train(m, x, y, epochs=1, shift=3, progress=False)
    with pytest.raises(ValueError, match="target_error needs a test set"):
        train(m, x, y, epochs=1, target_error=0.01, progress=False)
    with pytest.raises(ValueError, match="fraction"):
        train(m, x, y, xt, yt, epochs=1, target_error=1.5, progress=False)
    with pytest.raises(ValueError, match="init must be one of"):
        ln.LeNet5(init="xavier")


def test_target_error_stops_and_resume_trains_no_further(digits, tmp_path):
    x, y, xt, yt = digits
    ck = tmp_path / "m.npz"
    m = ln.LeNet5(seed=0, init="fan_in")
    h = train(m, x, y, xt, yt, epochs=6, batch_size=32, target_error=0.5, checkpoint=ck,
              progress=False)
    assert h.stopped_early and len(h) < 6 and h[-1]["target_reached"]
    assert all(r["test_error"] > 0.5 for r in h[:-1]) and h[-1]["test_error"] <= 0.5
    again = ln.LeNet5(seed=0, init="fan_in")
    h2 = train(again, x, y, xt, yt, epochs=6, batch_size=32, target_error=0.5, checkpoint=ck,
               resume=True, progress=False)
    assert len(h2) == len(h) and h2.stopped_early and _same(again.params, m.params)


def test_fan_in_init_bounds():
    from lenet_native.layout import PARAM_OFFSETS
    m = ln.LeNet5(seed=0, init="fan_in")
    lo, hi = PARAM_OFFSETS["c5.weight"]
    w = m.params[lo:hi]
    assert np.abs(w).max() <= 1 / 20 and np.abs(w).max() > 0.9 / 20   # +-1/sqrt(400)
    assert _same(ln.LeNet5(seed=5).params, ln.LeNet5(seed=5, init="paper").params)


def test_recipes():
    assert recipe("fast", "softmax")["lr"] == 0.15 and recipe("fast", "rbf")["lr"] == 0.006
    best = recipe("best", "softmax")
    assert (best["epochs"], best["batch_size"], best["lr_schedule"], best["init"], best["shift"]) == (
        20, 64, "cosine", "paper", 0)
    with pytest.raises(ValueError, match="recipe must be one of"):
        recipe("slow", "softmax")
    assert set(RECIPES) == {"fast", "best"}


@pytest.fixture()
def mnist_dir(tmp_path, digits):
    x, y, xt, yt = digits
    return write_mnist_folder(tmp_path, {"train": (x, y), "test": (xt, yt)})


def test_cli_recipe_best_is_the_earlier_default(mnist_dir, tmp_path, digits, capsys):
    """--recipe best with --epochs 2 gives the weights of train()'s own defaults (batch 64,
    cosine, lr 0.1, momentum 0.9, wd 5e-4, the paper's init) on preprocessed input."""
    x, y, xt, yt = digits
    out = tmp_path / "best.npz"
    assert cli.main(["train", "--data", str(mnist_dir), "--out", str(out), "--recipe", "best",
                     "--epochs", "2", "--threads", "2", "--no-progress"]) == 0
    ref = ln.LeNet5(seed=0)
    train(ref, ln.preprocess(x), y, epochs=2, progress=False, threads=2)
    assert _same(ln.LeNet5.load(out).params, ref.params)
    assert "peak memory (resident)" in capsys.readouterr().out


def test_cli_default_is_fast_and_target_error(mnist_dir, tmp_path, capsys):
    out = tmp_path / "fast.npz"
    assert cli.main(["train", "--data", str(mnist_dir), "--out", str(out), "--threads", "2",
                     "--no-progress", "--epochs", "3", "--target-error", "50"]) == 0
    text = capsys.readouterr().out
    assert "recipe fast" in text and "reached the target test error 50%" in text
    meta = ln.LeNet5.load(out).meta["training"]
    assert meta["batch_size"] == 128 and meta["lr_schedule"] == "linear" and meta["shift"] == 1


def test_peak_memory_is_the_processs_own(mnist_dir, tmp_path):
    """The CLI's peak resident memory is its own, not the high-water mark of the process
    that started it (getrusage's ru_maxrss carries across exec on Linux)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    if not Path("/proc/self/status").exists():
        pytest.skip("Linux /proc only")
    ballast = np.ones(400 * 2**20 // 8)            # a 400 MB parent, every page touched
    r = subprocess.run([sys.executable, "-m", "lenet_native", "train", "--data", str(mnist_dir),
                        "--out", str(tmp_path / "m.npz"), "--epochs", "1", "--no-progress",
                        "--threads", "1"], capture_output=True, text=True, env=child_env(),
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    peak = float(re.search(r"peak memory \(resident\) (\d+) MB", r.stdout)[1])
    assert 10 < peak < 300, (peak, ballast.nbytes)
