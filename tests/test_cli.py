"""Tests of the lenet-native command line (lenet_native.cli), through main([...]) on tiny
IDX files written with datasets.write_idx."""
from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lenet_native import cli
from lenet_native.datasets import ENV_VAR, MNIST_FILES
from lenet_native.model import LeNet5

from conftest import synthetic_digits, write_mnist_folder

T = importlib.import_module("lenet_native.training")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"),
                              {"train": synthetic_digits(96, 1), "test": synthetic_digits(40, 2)})


def one_error_line(err):
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("lenet-native: error: ")
    return lines[0]


# ----------------------------------------------------------------------------- summary


def test_summary_rbf(capsys):
    assert cli.main(["summary", "--head", "rbf"]) == 0
    out = capsys.readouterr().out
    assert "60,000" in out and "340,908" in out and "rbf" in out


def test_summary_default_softmax(capsys):
    assert cli.main(["summary"]) == 0
    out = capsys.readouterr().out
    assert "softmax" in out and "60,850" in out


# ----------------------------------------------------------------------------- train + eval


def test_train_then_eval(mnist_dir, tmp_path, capsys):
    out = tmp_path / "m.npz"
    code = cli.main(["train", "--data", str(mnist_dir), "--epochs", "2", "--optimizer", "sgd",
                     "--head", "rbf", "--out", str(out), "--batch-size", "16", "--lr", "0.002",
                     "--threads", "2", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [l for l in captured.out.splitlines() if l.startswith("epoch")]
    assert len(lines) == 2
    for l in lines:
        assert "loss" in l and "train err" in l and "test err" in l and "img/s" in l and " s " in l
    assert captured.err == ""            # --no-progress
    model = LeNet5.load(out)
    assert model.head == "rbf" and model.meta["training"]["epochs_done"] == 2
    doc = json.loads((tmp_path / "m.history.json").read_text())
    assert len(doc["history"]) == 2 and doc["interrupted"] is False
    assert (tmp_path / "m.state.npz").exists()

    assert cli.main(["eval", str(out), "--data", str(mnist_dir)]) == 0
    text = capsys.readouterr().out
    assert "test error" in text and "%" in text and "n=40" in text and "images/s" in text
    err = float(text.split("test error")[1].split("%")[0])
    assert err == pytest.approx(100 * doc["history"][-1]["test_error"])
    assert cli.main(["eval", str(out), "--data", str(mnist_dir), "--split", "train"]) == 0
    assert "n=96" in capsys.readouterr().out


def test_train_sdlm_and_resume(mnist_dir, tmp_path, capsys):
    out = tmp_path / "s.npz"
    base = ["train", "--data", str(mnist_dir), "--optimizer", "sdlm", "--head", "rbf",
            "--out", str(out), "--no-progress", "--threads", "1"]
    assert cli.main(base + ["--epochs", "1"]) == 0
    assert cli.main(base + ["--epochs", "2", "--resume"]) == 0
    text = capsys.readouterr().out
    assert "resuming" in text and "epoch   2/2" in text
    assert LeNet5.load(out).meta["training"]["epochs_done"] == 2


def test_train_with_distortions(mnist_dir, tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert cli.main(["train", "--data", str(mnist_dir), "--epochs", "1", "--out", str(out),
                     "--distort", "--limit", "48", "--no-progress", "--threads", "1"]) == 0
    assert "distort" in capsys.readouterr().out or True
    meta = LeNet5.load(out).meta["training"]
    assert meta["distort"].startswith("make_distorter(") and meta["train_samples"] == 48


def test_train_ctrl_c_exits_130_after_saving(mnist_dir, tmp_path, capsys, monkeypatch):
    real = T._sgd_epoch

    def epoch(*args, **kw):
        if args[-1] == 1:            # the second epoch
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(T, "_sgd_epoch", epoch)
    out = tmp_path / "m.npz"
    code = cli.main(["train", "--data", str(mnist_dir), "--epochs", "3", "--out", str(out),
                     "--no-progress", "--threads", "1"])
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err
    assert LeNet5.load(out).meta["training"]["epochs_done"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("argv", [
    ["eval", "{tmp}/missing.npz", "--data", "{data}"],
    ["eval", "{tmp}/garbage.npz", "--data", "{data}"],
    ["eval", "{model}", "--data", "{tmp}/no_such_dir"],
    ["eval", "{model}", "--data", "{tmp}/empty"],
    ["train", "--data", "{tmp}/no_such_dir", "--out", "{tmp}/x.npz"],
    ["train", "--data", "{data}", "--out", "{tmp}/no/such/dir/x.npz"],
    ["train", "--data", "{data}", "--out", "{tmp}/new.npz", "--resume"],
])
def test_bad_paths_exit_2_with_one_line(argv, mnist_dir, tmp_path, capsys):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    (tmp_path / "empty").mkdir()
    model = tmp_path / "ok.npz"
    LeNet5(seed=0).save(model)
    argv = [a.format(tmp=tmp_path, data=mnist_dir, model=model) for a in argv]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "Traceback" not in captured.err
    assert str(tmp_path) in line or "no checkpoint" in line


def test_corrupt_idx_file(mnist_dir, tmp_path, capsys):
    import shutil
    d = tmp_path / "data"
    shutil.copytree(mnist_dir, d)
    (d / MNIST_FILES["test"][0]).write_bytes(b"\x00\x00\x08\x03garbage")
    model = tmp_path / "ok.npz"
    LeNet5(seed=0).save(model)
    assert cli.main(["eval", str(model), "--data", str(d)]) == 2
    one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["train", "--data", "x"], ["train", "--data", "x", "--out", "y",
                                                   "--epochs", "0"],
    ["summary", "--head", "sigmoid"], ["eval"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("command, option, value", [
    (command, option, value)
    for command in ("summary", "train", "eval", "demo", "predict", "bench")
    for option, value in (("--threads", "0"), ("--threads", "1025"), ("--threads", "two"),
                          ("--head", "sigmoid"))
    # summary takes no --threads; eval takes the head from the weight file
    if (command, option) not in (("summary", "--threads"), ("eval", "--head"))])
def test_shared_options_are_validated_alike(command, option, value, capsys):
    assert cli.main([command, option, value]) == 2
    err = capsys.readouterr().err
    assert "usage:" in err and f"argument {option}: " in err


def test_data_defaults_to_the_environment_variable(mnist_dir, tmp_path, capsys, monkeypatch):
    model = tmp_path / "ok.npz"
    LeNet5(seed=0).save(model)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))   # no MNIST in the cache
    monkeypatch.setenv(ENV_VAR, str(mnist_dir))
    assert cli.main(["eval", str(model)]) == 0
    assert "n=40" in capsys.readouterr().out
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    assert cli.main(["eval", str(model)]) == 2
    assert str(tmp_path / "nowhere") in one_error_line(capsys.readouterr().err)


def test_help_lists_every_command_and_exits_0(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("summary", "train", "eval", "demo", "predict", "bench"):
        # the command's name and the start of its help on one line
        assert re.search(rf"^ +{name} +\w", out, re.MULTILINE), f"{name} missing from --help"


def test_a_command_is_one_entry_of_the_table(capsys, monkeypatch):
    def hello(args):
        print(f"hello {args.name}")

    def fail(args):
        raise cli.CommandError("it went\nwrong")

    monkeypatch.setitem(cli.COMMANDS, "hello", cli.Command(
        "say hello", lambda p: p.add_argument("--name", default="world"), hello))
    monkeypatch.setitem(cli.COMMANDS, "fail", cli.Command("fail", lambda p: None, fail))
    assert cli.main(["--help"]) == 0
    assert re.search(r"^ +hello +say hello$", capsys.readouterr().out, re.MULTILINE)
    assert cli.main(["hello", "--name", "lenet"]) == 0
    assert capsys.readouterr().out == "hello lenet\n"
    assert cli.main(["fail"]) == 2
    assert one_error_line(capsys.readouterr().err) == "lenet-native: error: it went wrong"


def test_python_dash_m(tmp_path):
    # run outside the checkout, so that the installed package is imported, not the sources
    r = subprocess.run([sys.executable, "-m", "lenet_native", "summary", "--head", "rbf"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "340,908" in r.stdout
