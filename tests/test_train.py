"""Tests of lenet_native.training: SGD and SDLM make progress, runs are reproducible bit for
bit (whatever the thread count), checkpoints resume exactly, Ctrl-C leaves a valid
checkpoint, and bad arguments are refused with clear errors. Small data only (fast)."""
from __future__ import annotations

import importlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from lenet_native import _core
from lenet_native import checkpoint as C
from lenet_native.checkpoint import checkpoint_paths
from lenet_native.checks import preprocess
from lenet_native.model import LeNet5
from lenet_native.training import History, evaluate, lr_factor, train

T = importlib.import_module("lenet_native.training")


def synthetic(n, seed=0):
    """Easy 10-class uint8 digits: a bright 6x6 block whose place depends on the class,
    with jitter and noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r = 3 + 10 * (c // 4) + rng.integers(-1, 2)
        col = 2 + 6 * (c % 4) + rng.integers(-1, 2)
        images[i, r:r + 6, col:col + 6] = 255
    return images, labels


@pytest.fixture(scope="module")
def data():
    x, y = synthetic(256, seed=1)
    xt, yt = synthetic(128, seed=2)
    return x, y, xt, yt


def run(data, tmp=None, **kw):
    x, y, xt, yt = data
    head = kw.pop("head", "softmax")
    model = LeNet5(head=head, seed=kw.pop("model_seed", 0), threads=kw.pop("model_threads", 1))
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 32)
    kw.setdefault("progress", False)
    if kw.get("optimizer") == "sdlm":
        kw.setdefault("hessian_samples", 64)
    h = train(model, x, y, xt, yt, **kw)
    return model, h


def no_temp_files(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- progress


def test_sgd_reduces_loss(data):
    # the rbf head: with the paper's small initial weights the softmax head sits on a
    # plateau for the first ~100 SGD steps (see test_sgd_on_a_real_mnist_subset)
    x, y, xt, yt = data
    model = LeNet5(head="rbf", seed=0, threads=2)
    before = evaluate(model, xt, yt)
    h = train(model, x, y, xt, yt, epochs=3, batch_size=32, lr=0.002, progress=False)
    after = evaluate(model, xt, yt)
    assert isinstance(h, History) and len(h) == 3 and not h.interrupted
    assert after["loss"] < 0.8 * before["loss"]
    assert h[-1]["train_loss"] < 0.9 * h[0]["train_loss"]
    assert h[-1]["test_error"] == pytest.approx(after["error"])
    assert h[-1]["test_loss"] == pytest.approx(after["loss"])
    for rec in h:
        assert set(rec) >= {"epoch", "train_loss", "train_error", "test_error", "test_loss",
                            "seconds", "images_per_second", "lr"}
    assert [r["epoch"] for r in h] == [1, 2, 3]
    # cosine schedule by default
    assert h[0]["lr"] == pytest.approx(0.002) and h[1]["lr"] < h[0]["lr"]


@pytest.mark.parametrize("head", ["rbf", "softmax"])
def test_one_sdlm_pass_reduces_loss(data, head):
    x, y, xt, yt = data
    model = LeNet5(head=head, seed=0, threads=1)
    before = evaluate(model, x, y)["loss"]
    h = train(model, x, y, epochs=1, optimizer="sdlm", hessian_samples=100, progress=False)
    after = evaluate(model, x, y)["loss"]
    assert after < before
    rec = h[0]
    assert rec["test_error"] is None and rec["eta"] == rec["lr"] == 0.0005
    assert rec["mu"] == (1.0 if head == "rbf" else 0.1)     # see train()'s docstring
    assert rec["h_mean"] > 0 and 0 <= rec["train_error"] <= 1
    if head == "rbf":   # the prototypes are never trained
        lo, hi = _core.PARAM_OFFSETS["out.weight"]
        assert np.array_equal(model.params[lo:hi], LeNet5(head="rbf", seed=0).params[lo:hi])


def test_sgd_never_trains_rbf_prototypes(data):
    model, _ = run(data, head="rbf", epochs=1)
    lo, hi = _core.PARAM_OFFSETS["out.weight"]
    assert np.array_equal(model.params[lo:], LeNet5(head="rbf", seed=0).params[lo:])


def test_sgd_on_a_real_mnist_subset(mnist_path):
    from lenet_native.datasets import load_mnist
    x, y = load_mnist(mnist_path, "test")     # the smaller file: quicker to read
    model = LeNet5(seed=0, threads=2)
    # ~250 steps: past the initial plateau of the softmax head
    h = train(model, x[:4000], y[:4000], x[5000:6000], y[5000:6000], epochs=2, batch_size=32,
              progress=False)
    assert h[-1]["test_error"] < 0.3
    assert h[-1]["train_loss"] < h[0]["train_loss"]


def test_float_input_same_as_uint8(data):
    x, y, xt, yt = data
    a, _ = run(data, epochs=1)
    b = LeNet5(seed=0, threads=1)
    train(b, preprocess(x), y.astype(np.int64), preprocess(xt), yt, epochs=1, batch_size=32,
          progress=False)
    assert np.array_equal(a.params, b.params)


# ----------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("optimizer", ["sgd", "sdlm"])
def test_same_seed_same_weights(data, optimizer):
    head = "rbf" if optimizer == "sdlm" else "softmax"
    a, ha = run(data, optimizer=optimizer, head=head, seed=3, threads=2)
    b, hb = run(data, optimizer=optimizer, head=head, seed=3, threads=2)
    assert np.array_equal(a.params, b.params)
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]
    c, _ = run(data, optimizer=optimizer, head=head, seed=4, threads=2)
    assert not np.array_equal(a.params, c.params)


def test_threads_do_not_change_the_result(data):
    a, _ = run(data, threads=1)
    b, _ = run(data, threads=2)
    assert np.array_equal(a.params, b.params)


# ----------------------------------------------------------------------------- checkpoints


def stop_after(n):
    def on_epoch(rec, model):
        if rec["epoch"] == n:
            raise KeyboardInterrupt
    return on_epoch


@pytest.mark.parametrize("optimizer,head", [("sgd", "softmax"), ("sgd", "rbf"), ("sdlm", "rbf")])
def test_resume_equals_uninterrupted_run(data, tmp_path, optimizer, head):
    kw = dict(optimizer=optimizer, head=head, epochs=3, seed=5, momentum=0.9)
    full, hfull = run(data, checkpoint=tmp_path / "full.npz", **kw)
    part, hpart = run(data, checkpoint=tmp_path / "part.npz", on_epoch=stop_after(1), **kw)
    assert hpart.interrupted and len(hpart) == 1
    if optimizer == "sgd":   # the velocity matters: it must have been saved and restored
        with np.load(checkpoint_paths(tmp_path / "part.npz")["state"]) as z:
            assert np.any(z["velocity"] != 0)
    resumed, hres = run(data, checkpoint=tmp_path / "part.npz", resume=True, model_seed=99, **kw)
    assert np.array_equal(resumed.params, full.params)
    assert len(hres) == 3 and not hres.interrupted
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k and k != "images_per_second"}
                       for r in h]
    assert strip(hres) == strip(hfull)
    # the files agree too
    saved = LeNet5.load(tmp_path / "part.npz")
    assert np.array_equal(saved.params, full.params)
    assert saved.meta["training"]["epochs_done"] == 3
    assert no_temp_files(tmp_path) == []


def test_resume_after_dying_between_the_state_and_the_model_file(data, tmp_path, monkeypatch):
    """The state file is replaced before the model file: if the process dies in between, the
    model file (one epoch behind) still finds its velocity in the state file."""
    full, _ = run(data, epochs=3, seed=5)
    real_save = LeNet5.save
    calls = {"n": 0}

    def save(self, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("simulated crash before the model file of epoch 3 is written")
        return real_save(self, path)

    monkeypatch.setattr(LeNet5, "save", save)
    ck = tmp_path / "m.npz"
    with pytest.raises(OSError, match="simulated"):
        run(data, checkpoint=ck, epochs=3, seed=5)
    monkeypatch.setattr(LeNet5, "save", real_save)
    assert LeNet5.load(ck).meta["training"]["epochs_done"] == 2
    with np.load(checkpoint_paths(ck)["state"]) as z:
        assert int(z["epoch"]) == 3 and int(z["prev_epoch"]) == 2
    resumed, h = run(data, checkpoint=ck, epochs=3, seed=5, resume=True)
    assert len(h) == 3 and np.array_equal(resumed.params, full.params)


def test_resume_of_a_finished_run_does_nothing(data, tmp_path):
    model, h = run(data, checkpoint=tmp_path / "m.npz")
    again, h2 = run(data, checkpoint=tmp_path / "m.npz", resume=True)
    assert np.array_equal(again.params, model.params) and len(h2) == len(h)


def test_checkpoint_files(data, tmp_path):
    model, h = run(data, checkpoint=tmp_path / "m.npz", epochs=2)
    paths = checkpoint_paths(tmp_path / "m.npz")
    assert paths == {"model": tmp_path / "m.npz", "state": tmp_path / "m.state.npz",
                     "history": tmp_path / "m.history.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.history.json", "m.npz", "m.state.npz"]
    loaded = LeNet5.load(paths["model"])
    assert np.array_equal(loaded.params, model.params)
    meta = loaded.meta["training"]
    assert meta["optimizer"] == "sgd" and meta["epochs_done"] == 2 and meta["seed"] == 0
    assert meta["batch_size"] == 32 and meta["momentum"] == 0.9 and len(meta["history"]) == 2
    doc = json.loads(paths["history"].read_text())
    assert doc["interrupted"] is False and doc["epochs_done"] == 2
    assert [r["epoch"] for r in doc["history"]] == [1, 2]
    with np.load(paths["state"], allow_pickle=False) as z:
        assert int(z["epoch"]) == 2 and z["velocity"].shape == (_core.NPARAMS,)


def test_interrupt_mid_epoch_keeps_last_checkpoint(data, tmp_path, monkeypatch):
    ck = tmp_path / "m.npz"
    calls = {"n": 0}
    real = _core.sgd_train_step
    batches = -(-len(data[0]) // 32)

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == batches + 3:    # a few batches into epoch 2
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_core, "sgd_train_step", flaky)
    model, h = run(data, checkpoint=ck, epochs=3)
    assert h.interrupted and len(h) == 1
    saved = LeNet5.load(ck)
    assert saved.meta["training"]["epochs_done"] == 1
    # the model in memory went back to the checkpointed weights
    assert np.array_equal(model.params, saved.params)
    doc = json.loads(checkpoint_paths(ck)["history"].read_text())
    assert doc["interrupted"] is True and doc["epochs_done"] == 1
    assert no_temp_files(tmp_path) == []
    monkeypatch.setattr(_core, "sgd_train_step", real)
    # and it resumes to the uninterrupted result
    resumed, _ = run(data, checkpoint=ck, epochs=3, resume=True)
    full, _ = run(data, epochs=3)
    assert np.array_equal(resumed.params, full.params)


def test_interrupt_in_first_epoch_restores_initial_weights(data, tmp_path, monkeypatch):
    real = _core.sgd_train_step
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_core, "sgd_train_step", flaky)
    model, h = run(data, checkpoint=tmp_path / "m.npz")
    assert h.interrupted and len(h) == 0
    assert np.array_equal(model.params, LeNet5(seed=0).params)
    assert not (tmp_path / "m.npz").exists()
    assert json.loads((tmp_path / "m.history.json").read_text())["interrupted"] is True


# Under .ci/sanitize (the AddressSanitizer runtime preloaded, which intercepts signal() and
# sigaction()) a SIGINT sent to ourselves was not seen by the deferring handler in time;
# the logic is pure Python and is checked by the normal suite.
_SIGNALS_UNRELIABLE = pytest.mark.skipif(bool(os.environ.get("LENET_NATIVE_SANITIZE_RUN")),
                                         reason="signal delivery under the sanitizer runtime")


@_SIGNALS_UNRELIABLE
def test_sigint_is_held_while_the_checkpoint_is_written():
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with T._sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("after the signal")
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@_SIGNALS_UNRELIABLE
def test_ctrl_c_while_the_checkpoint_is_written(data, tmp_path, monkeypatch):
    real = C.save_checkpoint

    def save_and_get_a_sigint(*args):
        os.kill(os.getpid(), signal.SIGINT)      # arrives in the middle of the writing
        real(*args)

    monkeypatch.setattr(C, "save_checkpoint", save_and_get_a_sigint)
    ck = tmp_path / "m.npz"
    model, h = run(data, checkpoint=ck, epochs=3)
    assert h.interrupted and len(h) == 1         # epoch 1 was committed, then stopped
    saved = LeNet5.load(ck)
    assert saved.meta["training"]["epochs_done"] == 1
    assert np.array_equal(model.params, saved.params)
    assert no_temp_files(tmp_path) == []


def test_other_errors_restore_and_propagate(data, tmp_path):
    def boom(rec, model):
        if rec["epoch"] == 2:
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        run(data, checkpoint=tmp_path / "m.npz", epochs=3, on_epoch=boom)
    assert LeNet5.load(tmp_path / "m.npz").meta["training"]["epochs_done"] == 2


def test_divergence_is_reported(data):
    x, y, _, _ = data
    model = LeNet5(seed=0, threads=1)
    init = model.params.copy()
    with pytest.raises(FloatingPointError, match="lower lr"):
        train(model, x, y, epochs=1, lr=1e38, momentum=0.0, progress=False)
    assert np.array_equal(model.params, init)


def test_on_epoch_can_stop_early(data, tmp_path):
    model, h = run(data, epochs=3, on_epoch=lambda rec, m: False, checkpoint=tmp_path / "m.npz")
    assert len(h) == 1 and h.stopped_early and not h.interrupted
    doc = json.loads((tmp_path / "m.history.json").read_text())
    assert doc["stopped_early"] is True and doc["epochs_done"] == 1
    assert model.meta["training"]["stopped_early"] is True


def test_training_recipe_kept_in_model_meta(data, tmp_path):
    model, h = run(data, epochs=1, lr=0.01)
    meta = model.meta["training"]
    assert meta["lr"] == 0.01 and meta["epochs_done"] == 1 and meta["optimizer"] == "sgd"
    model.save(tmp_path / "m.npz")
    assert LeNet5.load(tmp_path / "m.npz").meta["training"]["history"] == list(h)


def test_resume_refuses_a_different_run(data, tmp_path):
    ck = tmp_path / "m.npz"
    run(data, checkpoint=ck, epochs=1)
    with pytest.raises(ValueError, match="lr"):
        run(data, checkpoint=ck, resume=True, lr=0.01)
    with pytest.raises(ValueError, match="seed"):
        run(data, checkpoint=ck, resume=True, seed=1)
    with pytest.raises(ValueError, match="head"):
        run(data, checkpoint=ck, resume=True, head="rbf")
    x, y, xt, yt = data
    with pytest.raises(ValueError, match="data_sha256"):
        train(LeNet5(seed=0), x[:-1], y[:-1], epochs=2, batch_size=32, checkpoint=ck,
              resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run(data, checkpoint=tmp_path / "other.npz", resume=True)
    # a state file from another epoch is detected
    ck2 = tmp_path / "n.npz"
    run(data, checkpoint=ck2, epochs=2)
    os.replace(checkpoint_paths(ck)["state"], checkpoint_paths(ck2)["state"])
    with pytest.raises(ValueError, match="does not belong"):
        run(data, checkpoint=ck2, resume=True)


# ----------------------------------------------------------------------------- options


def test_distort_is_applied_per_batch(data):
    seen = []

    def distort(images, rng):
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32)
        assert isinstance(rng, np.random.Generator)
        seen.append(len(images))
        return np.roll(images, 1, axis=2)

    a, _ = run(data, epochs=1, distort=distort)
    assert sum(seen) == len(data[0]) and max(seen) == 32
    b, _ = run(data, epochs=1)
    assert not np.array_equal(a.params, b.params)
    seen.clear()
    run(data, epochs=1, optimizer="sdlm", head="rbf", distort=distort)
    assert sum(seen) == len(data[0])


def test_bad_distort_output(data):
    with pytest.raises(ValueError, match="distort returned shape"):
        run(data, distort=lambda im, rng: im[:, :28, :28])
    with pytest.raises(ValueError, match="NaN"):
        run(data, distort=lambda im, rng: im * np.nan)


def test_progress_bar(data, capsys):
    run(data, epochs=1, progress="force")
    err = capsys.readouterr().err
    assert "\r" in err and "epoch 1/1" in err and "img/s" in err and "100%" in err
    run(data, epochs=1, progress=True)       # stderr is not a terminal here
    assert capsys.readouterr().err == ""


def test_lr_schedules():
    assert [lr_factor("paper", e, 20) * 0.0005 for e in (0, 1, 2, 4, 5, 7, 8, 11, 12, 19)] == \
        pytest.approx([5e-4, 5e-4, 2e-4, 2e-4, 1e-4, 1e-4, 5e-5, 5e-5, 1e-5, 1e-5])
    assert [lr_factor("step", e, 8) for e in range(8)] == pytest.approx([1] * 4 + [.1] * 2 + [.01] * 2)
    assert lr_factor("cosine", 0, 10) == 1 and 0 < lr_factor("cosine", 9, 10) < 0.03
    assert lr_factor("constant", 7, 10) == 1
    assert lr_factor(lambda e, n: 0.5 ** e, 2, 10) == 0.25
    with pytest.raises(ValueError):
        lr_factor(lambda e, n: -1, 0, 1)


def test_evaluate(data):
    x, y, xt, yt = data
    model = LeNet5(seed=0, threads=2)
    r = evaluate(model, xt, yt, batch_size=7)
    assert r["n"] == len(yt)
    assert r["error"] == pytest.approx(np.mean(model.predict(xt) != yt))
    loss, _ = model.loss_and_grad(xt, yt)
    assert r["loss"] == pytest.approx(loss, rel=1e-5)
    with pytest.raises(ValueError, match="no images"):
        evaluate(model, xt[:0], yt[:0])
    with pytest.raises(TypeError):
        evaluate("model", xt, yt)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("kw,exc,match", [
    (dict(optimizer="adam"), ValueError, "optimizer"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=True), TypeError, "batch_size"),
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=float("nan")), ValueError, "lr"),
    (dict(lr="fast"), TypeError, "lr"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(weight_decay=-1), ValueError, "weight_decay"),
    (dict(optimizer="sdlm", weight_decay=1e-4), ValueError, "weight_decay"),
    (dict(mu=0), ValueError, "mu"),
    (dict(lr_schedule="exponential"), ValueError, "lr_schedule"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(threads=0), ValueError, "threads"),
    (dict(progress="yes"), ValueError, "progress"),
    (dict(distort=3), TypeError, "distort"),
    (dict(on_epoch="print"), TypeError, "on_epoch"),
    (dict(resume=True), ValueError, "checkpoint"),
    (dict(checkpoint=3), TypeError, "checkpoint"),
    (dict(checkpoint="/no/such/folder/m.npz"), FileNotFoundError, "does not exist"),
])
def test_bad_arguments(data, kw, exc, match):
    x, y, _, _ = data
    with pytest.raises(exc, match=match):
        kw.setdefault("progress", False)
        train(LeNet5(seed=0, threads=1), x, y, **kw)


def test_bad_data(data):
    x, y, xt, yt = data
    m = LeNet5(seed=0, threads=1)
    with pytest.raises(TypeError, match="LeNet5"):
        train("model", x, y)
    with pytest.raises(ValueError, match="labels"):
        train(m, x, y[:-1])
    with pytest.raises(ValueError, match="0..9"):
        train(m, x, np.full(len(x), 10))
    with pytest.raises(ValueError, match="shape"):
        train(m, np.zeros((4, 30, 30), np.uint8), np.zeros(4, np.int32))
    with pytest.raises(TypeError, match="float"):
        train(m, np.zeros((4, 32, 32), np.int64), np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="no training images"):
        train(m, x[:0], y[:0])
    with pytest.raises(ValueError, match="both"):
        train(m, x, y, xt)
    with pytest.raises(ValueError, match="NaN"):
        train(m, np.full((4, 32, 32), np.nan, np.float32), np.zeros(4, np.int32))


def test_batch_stats_match_numpy():
    """The trainer's per-batch bookkeeping in C (_core.batch_stats) against NumPy: the loss
    sum, and the errors of argmax (softmax) / argmin (rbf) predictions, ties and NaN
    included (first one wins, as numpy's)."""
    rng = np.random.default_rng(5)
    for n in (0, 1, 7, 64):
        losses = rng.random(n).astype(np.float32) * 3
        out = rng.integers(0, 4, (n, 10)).astype(np.float32)     # many ties
        if n > 3:
            out[2, 6] = np.nan
            out[3, 0] = np.nan
        labels = rng.integers(0, 10, n).astype(np.int32)
        for nearest in (False, True):
            total, errors = _core.batch_stats(losses, out, labels, nearest)
            pred = out.argmin(axis=1) if nearest else out.argmax(axis=1)
            assert errors == int(np.count_nonzero(pred != labels))
            assert total == pytest.approx(float(np.sum(losses, dtype=np.float64)), rel=1e-12)
    with pytest.raises(ValueError, match="must agree"):
        _core.batch_stats(np.zeros(3, np.float32), np.zeros((2, 10), np.float32),
                          np.zeros(3, np.int32))
