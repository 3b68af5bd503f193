"""`lenet-native demo` and `lenet-native predict`, offline."""
import argparse
import io

import numpy as np
import pytest

from lenet_native.demo import add_demo_arguments, demo_main, draw_digits, load_sample
from lenet_native.commands.predict import add_arguments as add_predict_arguments
from lenet_native.commands.predict import run as predict_main


def parse(add, argv):
    p = argparse.ArgumentParser()
    add(p)
    return p.parse_args(argv)


def run_predict(argv):
    out, err = io.StringIO(), io.StringIO()
    code = predict_main(parse(add_predict_arguments, argv), out=out, err=err)
    lines = [ln.split("\t") for ln in out.getvalue().splitlines() if "\t" in ln]
    return code, lines, out.getvalue(), err.getvalue()


def test_demo_runs_offline_and_prints_accuracy():
    out = io.StringIO()
    code = demo_main(parse(add_demo_arguments, ["--repeats", "3"]), out=out)
    text = out.getvalue()
    assert code == 0
    assert "500 digits" in text and ("accuracy 99." in text or "accuracy 100.00%" in text)
    assert "true" in text and "@" in text           # digits drawn with their labels
    assert "native" in text and "reference" in text and "images/s" in text


def test_demo_options():
    out = io.StringIO()
    assert demo_main(parse(add_demo_arguments, ["--show", "0", "--no-speed"]), out=out) == 0
    assert "accuracy" in out.getvalue() and "reference" not in out.getvalue()


def test_demo_on_the_full_test_set(mnist_path):
    out = io.StringIO()
    assert demo_main(parse(add_demo_arguments, ["--data", str(mnist_path), "--no-speed",
                                                "--show", "2"]), out=out) == 0
    assert "10,000 digits" in out.getvalue()


def test_draw_digits_fits_the_width():
    images, _ = load_sample()
    text = draw_digits(images[:5], [f"digit {i}" for i in range(5)], width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "digit 4" in text


def test_predict_npy_and_idx(tmp_path):
    from lenet_native.idx import write_idx
    images, labels = load_sample()
    np.save(tmp_path / "stack.npy", images[:20])
    np.save(tmp_path / "one.npy", images[20].astype(np.float32) / 255)
    write_idx(tmp_path / "t-idx3-ubyte.gz", images[21:40])
    code, lines, _, err = run_predict([str(tmp_path / "stack.npy"), str(tmp_path / "one.npy"),
                                       str(tmp_path / "t-idx3-ubyte.gz")])
    assert code == 0 and err == ""
    assert len(lines) == 40
    assert lines[0][0] == f"{tmp_path / 'stack.npy'}[0]"
    assert lines[20][0] == str(tmp_path / "one.npy")
    pred = np.array([int(p) for _, p, _ in lines])
    prob = np.array([float(p) for _, _, p in lines])
    assert np.mean(pred == labels[:40]) >= 0.95
    assert ((prob > 0) & (prob <= 1)).all()


def test_predict_photo_like_images(tmp_path):
    """Big, dark-on-light, unevenly lit, off-centre versions of MNIST digits."""
    images, labels = load_sample()
    n = 30
    big = np.kron(images[:n].astype(np.float64) / 255, np.ones((4, 4)))  # 112x112
    canvas = np.ones((n, 150, 130))
    canvas[:, 30:142, 5:117] = 1.0 - 0.8 * big
    canvas *= np.linspace(0.8, 1.0, 130)[None, None, :]  # uneven lighting
    np.save(tmp_path / "photos.npy", canvas)
    code, lines, _, _ = run_predict([str(tmp_path / "photos.npy")])
    assert code == 0
    pred = np.array([int(p) for _, p, _ in lines])
    assert np.mean(pred == labels[:n]) >= 0.9


def test_predict_png(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    images, labels = load_sample()
    Image.fromarray(255 - np.kron(images[0], np.ones((3, 3), np.uint8))).save(tmp_path / "d.png")
    code, lines, out, _ = run_predict([str(tmp_path / "d.png"), "--show"])
    assert code == 0 and lines[0][1] == str(labels[0])
    assert "@" in out


def test_predict_reports_bad_files_and_goes_on(tmp_path):
    images, _ = load_sample()
    np.save(tmp_path / "good.npy", images[:2])
    np.save(tmp_path / "bad.npy", np.zeros((2, 2, 2, 2)))
    (tmp_path / "x.txt").write_text("no")
    code, lines, _, err = run_predict([str(tmp_path / "bad.npy"), str(tmp_path / "good.npy"),
                                       str(tmp_path / "x.txt")])
    assert code == 2
    assert len(lines) == 2
    assert "bad.npy" in err and "x.txt" in err and "unsupported" in err


def test_predict_with_a_weight_file_and_no_normalize(tmp_path):
    from lenet_native.pretrained import load_pretrained
    images, labels = load_sample()
    w = tmp_path / "m.npz"
    load_pretrained().save(w)
    np.save(tmp_path / "s.npy", images[:10])
    code, lines, _, _ = run_predict([str(tmp_path / "s.npy"), "--weights", str(w),
                                     "--no-normalize"])
    assert code == 0
    assert np.mean(np.array([int(p) for _, p, _ in lines]) == labels[:10]) >= 0.9
    np.save(tmp_path / "big.npy", np.zeros((40, 40), np.uint8))
    code, _, _, err = run_predict([str(tmp_path / "big.npy"), "--no-normalize"])
    assert code == 2 and "28x28" in err


@pytest.mark.parametrize("command", ["demo", "predict"])
def test_demo_and_predict_run_from_the_cli(command, tmp_path, capsys):
    from lenet_native import cli
    assert cli.main([command, "--help"]) == 0
    assert f"usage: lenet-native {command}" in capsys.readouterr().out
    images, _ = load_sample()
    np.save(tmp_path / "s.npy", images[:3])
    if command == "demo":
        argv = ["demo", "--no-speed", "--show", "1"]
    else:
        argv = ["predict", str(tmp_path / "s.npy")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    if command == "demo":
        assert "accuracy" in out
    else:
        assert [ln.split("\t")[0] for ln in out.splitlines() if "\t" in ln] == [
            f"{tmp_path / 's.npy'}[{i}]" for i in range(3)]
        assert cli.main(["predict", str(tmp_path / "missing.png")]) == 2
