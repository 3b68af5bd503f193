"""lenet_native.bench and `lenet-native bench`: every engine checked against native before it
is timed, engines that are missing or disagree are skipped with a note, JSON and the chart.
Timings themselves are never asserted (a shared machine); only that they were taken."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest

from lenet_native import bench, cli

FAST = dict(min_time=0.01)


def test_table_has_every_engine_and_batch():
    out = bench.run_bench(batches=(1, 5), threads=1, engines=("native", "reference"), **FAST)
    assert "outputs agree with native" in out
    rows = [l.split() for l in out.splitlines() if l.startswith(("native ", "reference "))]
    assert sorted((r[0], r[1]) for r in rows) == [("native", "1"), ("native", "5"),
                                                 ("reference", "1"), ("reference", "5")]
    for r in rows:
        assert float(r[2].replace(",", "")) > 0 and float(r[3]) > 0


def test_json_with_thread_scaling():
    doc = json.loads(bench.run_bench(batches=(3, 16), threads=2, engines=("native",), json=True,
                                     head="rbf", **FAST))
    assert doc["threads"] == 2 and doc["head"] == "rbf"
    # the wait policy native and PyTorch ran under (they share the process's libgomp)
    assert doc["omp_wait_policy"] == (os.environ.get("OMP_WAIT_POLICY") or "default")
    assert {(r["engine"], r["batch"]) for r in doc["results"]} == {("native", 3), ("native", 16)}
    for r in doc["results"]:
        assert r["reps"] >= 1 and r["images_per_s"] == pytest.approx(1e6 / r["us_per_image"])
    sc = doc["scaling"]
    assert sc["batch"] == 16 and sc["threads"] == 2 and sc["rounds"] >= 1
    assert sc["speedup"] == pytest.approx(sc["images_per_s"] / sc["one_thread_images_per_s"])
    # one thread: nothing to scale
    doc1 = json.loads(bench.run_bench(batches=(4,), threads=1, engines=("native",), json=True, **FAST))
    assert doc1["scaling"] is None


def test_missing_engines_are_skipped_with_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)        # import torch -> ImportError
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    out = bench.run_bench(batches=(2,), threads=1, **FAST)
    assert "torch: skipped: PyTorch is not installed" in out
    assert "onnxruntime: skipped: ONNX Runtime is not installed" in out
    assert not any(l.startswith(("torch ", "onnxruntime ")) for l in out.splitlines())


def test_an_engine_that_disagrees_is_not_timed(monkeypatch):
    real = bench._engine

    def engine(name, model, threads):
        found = real(name, model, threads)
        if name != "reference":
            return found
        fn, desc = found
        return (lambda x: fn(x) + 1e-2, desc)   # off by far more than rounding

    monkeypatch.setattr(bench, "_engine", engine)
    rows, notes = bench.measure(batches=(2,), threads=1, engines=("native", "reference"), **FAST)
    assert [r["engine"] for r in rows] == ["native"]
    assert any(n.startswith("reference: skipped: its outputs disagree with native") for n in notes)


@pytest.mark.parametrize("policy", ["PASSIVE", "passive", None, "ACTIVE"])
def test_passive_wait_policy_is_flagged_for_torch(monkeypatch, policy):
    """PyTorch shares the process's libgomp: under PASSIVE its figures are lower than on its
    own, and the bench says so beside its row (a stand-in engine plays torch here)."""
    real = bench._engine

    def engine(name, model, threads):
        if name == "torch":
            return (lambda x: model.forward(x), "stand-in for PyTorch")
        return real(name, model, threads)

    monkeypatch.setattr(bench, "_engine", engine)
    if policy is None:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    else:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    rows, notes = bench.measure(batches=(2,), threads=1, engines=("native", "torch"), **FAST)
    assert [r["engine"] for r in rows] == ["native", "torch"]
    assert (bench.PASSIVE_TORCH_NOTE in notes) == (policy in ("PASSIVE", "passive"))


@pytest.mark.skipif(bool(os.environ.get("LENET_NATIVE_SANITIZE_RUN")),
                    reason="under .ci/sanitize's preloaded ASan runtime, matplotlib's C++ "
                           "extension aborts at import (no __cxa_throw to intercept): "
                           "nothing of this project's to check there")
def test_chart(tmp_path, monkeypatch):
    png = tmp_path / "bench.png"
    pytest.importorskip("matplotlib")
    out = bench.run_bench(batches=(1, 4), threads=1, engines=("native",), chart=str(png), **FAST)
    assert f"chart written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chart_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    png = tmp_path / "bench.png"
    out = bench.run_bench(batches=(1,), threads=1, engines=("native",), chart=str(png), **FAST)
    assert "chart skipped: matplotlib is not installed" in out and not png.exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(engines=("native", "tensorflow")), "unknown engine 'tensorflow'"),
    (dict(batches=(0,)), "batches must be positive"),
    (dict(batches=()), "batches must be positive"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench.measure(**{"threads": 1, "min_time": 0.01, **kwargs})


@pytest.mark.parametrize("batch", [0, -3, 2.5])
def test_scaling_needs_a_positive_batch(batch):
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        bench.measure_scaling(batch, threads=2, min_time=0.01)


def test_command_line_json(capsys):
    assert cli.main(["bench", "--engines", "native", "--batches", "1,2", "--threads", "1",
                     "--min-time", "0.01", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["batch"] for r in doc["results"]] == [1, 2]


@pytest.mark.parametrize("argv, match", [
    (["bench", "--batches", "1,x"], "--batches: 'x' is not an integer"),
    (["bench", "--engines", "nope"], "unknown engine 'nope'"),
    (["bench", "--batches", "0"], "batches must be positive"),
])
def test_command_line_errors_exit_2(argv, match, capsys):
    assert cli.main(argv + ["--min-time", "0.01"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("lenet-native: error: ") and match in err[0]
