"""Tests of lenet_native.plots and ``lenet-native show``: every figure renders headless, and
what it shows is checked against the model's numbers (pixels of Table I at computed cell
centres, image data of every panel, titles, bar heights, the counts' text, the curves'
data), not only that a file appeared."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip(
    "matplotlib", reason="the figures need matplotlib (pip install 'lenet_native[plots]')")
import matplotlib.figure  # noqa: E402

from lenet_native import cli, plots  # noqa: E402
from lenet_native.demo import load_sample  # noqa: E402
from lenet_native.checks import preprocess  # noqa: E402
from lenet_native.layout import C3_TABLE  # noqa: E402
from lenet_native.model import LeNet5  # noqa: E402
from lenet_native.prototypes import rbf_prototypes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample():
    return load_sample()


@pytest.fixture(scope="module")
def pretrained():
    return {head: LeNet5.pretrained(head, threads=1) for head in ("softmax", "rbf")}


@pytest.fixture(scope="module")
def untrained():
    """A model that gets most digits wrong: many errors and off-diagonal counts to check."""
    return LeNet5(head="softmax", seed=3, threads=1)


def suptitle(fig):
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def titled(fig, pattern):
    """{title: axes} of the axes whose title matches pattern (a regular expression)."""
    return {ax.get_title(): ax for ax in fig.axes if re.fullmatch(pattern, ax.get_title())}


def one_error_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("lenet-native: error: "), err
    assert "Traceback" not in err
    return lines[-1]


# ----------------------------------------------------------------------------- optional matplotlib


def test_importing_plots_does_not_import_matplotlib(tmp_path):
    from conftest import child_env

    code = ("import sys, lenet_native.plots, lenet_native.cli; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.colors",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(ImportError, match=re.escape("lenet_native[plots]")):
        plots.table()
    assert cli.main(["show", "table", "--out", str(tmp_path / "t.png")]) == 2
    assert "lenet_native[plots]" in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- Table I


def test_table_cells_are_table_one_by_pixels(tmp_path):
    fig = plots.table()
    path = plots.save(fig, tmp_path / "table.png", dpi=100)
    from matplotlib.image import imread
    img = imread(path)                       # float RGBA in 0..1, rows top to bottom
    w, h = fig.get_size_inches() * 100
    assert img.shape[:2] == (round(h), round(w))
    grey = img[..., :3].mean(axis=2)
    ax = fig.axes[0]
    fig.dpi = 100                            # transData in pixels of the 100-dpi PNG
    marks = np.zeros((16, 6), dtype=bool)
    for j in range(16):
        for i in range(6):
            x, y = ax.transData.transform((j, i))
            r, c = int(round(h - y)), int(round(x))
            window = grey[r - 4:r + 5, c - 4:c + 5]
            assert window.size == 81
            marks[j, i] = window.min() < 0.4          # the strokes of an X
            if not marks[j, i]:
                assert window.min() > 0.95, (j, i)    # an empty cell is white
    np.testing.assert_array_equal(marks, C3_TABLE)
    assert marks.sum() == 60
    # the header row and column number the maps as the paper does
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(j) for j in range(16)]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(i) for i in range(6)]


# ----------------------------------------------------------------------------- activations


@pytest.fixture(scope="module")
def wrong_digit(sample, pretrained):
    """A sample digit the pretrained softmax model gets wrong: the title must name the
    prediction, not the label."""
    images, labels = sample
    pred = pretrained["softmax"].predict(images)
    i = int(np.flatnonzero(pred != labels)[0])
    return images[i], int(labels[i])


@pytest.fixture(scope="module")
def act_figures(pretrained, wrong_digit):
    digit, label = wrong_digit
    return {head: plots.activations(m, digit, label=label) for head, m in pretrained.items()}


LAYERS = {"C1": 6, "S2": 6, "C3": 16, "S4": 16}


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_activations_panels_show_the_models_numbers(head, pretrained, wrong_digit,
                                                    act_figures):
    model, fig = pretrained[head], act_figures[head]
    digit, label = wrong_digit
    acts = {k: v[0] for k, v in model.activations(preprocess(digit)).items()}
    x = preprocess(digit)[0]
    np.testing.assert_array_equal(titled(fig, "INPUT 0")["INPUT 0"].images[0].get_array(), x)
    for name, n in LAYERS.items():
        panels = titled(fig, rf"{name} \d+")
        assert sorted(panels) == sorted(f"{name} {i}" for i in range(n))
        norms = set()
        for i in range(n):
            im = panels[f"{name} {i}"].images[0]
            np.testing.assert_array_equal(im.get_array(), acts[name.lower()][i])
            norms.add((im.norm.vmin, im.norm.vmax))
        assert len(norms) == 1               # one colour scale per layer ...
        lo, hi = norms.pop()
        assert lo == -hi and hi == pytest.approx(np.abs(acts[name.lower()]).max())
    for name, n in (("C5", 120), ("F6", 84)):
        (strip,) = titled(fig, rf"{name} \(units 0\.\.{n - 1}\)").values()
        np.testing.assert_array_equal(strip.images[0].get_array(), acts[name.lower()][None])
    # ... and its colour bar: INPUT, C1, S2, C3, S4, C5, F6
    bars = [ax for ax in fig.axes if ax.get_title() in ("INPUT", *LAYERS, "C5", "F6")]
    assert sorted(ax.get_title() for ax in bars) == sorted(["INPUT", *LAYERS, "C5", "F6"])
    # the outputs and the prediction
    (out_ax,) = titled(fig, "OUTPUT: .*").values()
    heights = np.array([p.get_height() for p in out_ax.patches])
    want = model.forward(preprocess(digit))[0] if head == "rbf" else model.predict_proba(digit)[0]
    np.testing.assert_allclose(heights, want, rtol=1e-6)
    pred = int(model.predict(digit)[0])
    m = re.search(r"reads this digit as (\d)", suptitle(fig))
    assert m and int(m.group(1)) == pred
    assert f"true label {label}" in suptitle(fig)
    if head == "softmax":
        assert pred != label                 # the digit was chosen so that this can fail
    else:
        assert "RBF" in out_ax.get_title()
        (proto,) = titled(fig, r"prototype of \d").values()
        assert proto.get_title() == f"prototype of {pred}"
        np.testing.assert_array_equal(proto.images[0].get_array().ravel(),
                                      rbf_prototypes()[pred])


def test_activations_accepts_preprocessed_input_and_refuses_a_batch(pretrained, sample):
    model = pretrained["softmax"]
    digit = sample[0][1]
    fig = plots.activations(model, preprocess(digit)[0])
    assert f"as {model.predict(digit)[0]} " in suptitle(fig)
    with pytest.raises(ValueError, match="one digit"):
        plots.activations(model, sample[0][:2])


# ----------------------------------------------------------------------------- kernels, prototypes


def test_kernels_sit_on_table_ones_grid(pretrained):
    model = pretrained["rbf"]
    fig = plots.kernels(model)
    state = model.state_dict()
    c1 = titled(fig, r"C1 \d")
    assert sorted(c1) == [f"C1 {i}" for i in range(6)]
    for i in range(6):
        np.testing.assert_array_equal(c1[f"C1 {i}"].images[0].get_array(),
                                      state["c1.weight"][i, 0])
    cells = {ax.get_label(): ax for ax in fig.axes if ax.get_label().startswith("C3 ")}
    assert len(cells) == 96
    norms = set()
    for j in range(16):
        for i in range(6):
            if C3_TABLE[j, i]:
                ax = cells[f"C3 {j} <- S2 {i}"]
                np.testing.assert_array_equal(ax.images[0].get_array(), state["c3.weight"][j, i])
                norms.add((ax.images[0].norm.vmin, ax.images[0].norm.vmax))
            else:
                ax = cells[f"C3 {j} <- S2 {i} (not connected)"]
                assert not ax.images and not ax.axison
    assert len(norms) == 1
    # the grid's geometry: column j left of column j+1, row i above row i+1
    pos = {k: ax.get_position() for k, ax in cells.items()}
    assert pos["C3 1 <- S2 0 (not connected)"].x0 > pos["C3 0 <- S2 0"].x0
    assert pos["C3 0 <- S2 1"].y0 < pos["C3 0 <- S2 0"].y0


def test_prototypes_are_the_rbf_bitmaps():
    fig = plots.prototypes()
    panels = titled(fig, r"\d")
    assert sorted(panels) == [str(d) for d in range(10)]
    for d in range(10):
        np.testing.assert_array_equal(panels[str(d)].images[0].get_array(),
                                      rbf_prototypes()[d].reshape(12, 7))


# ----------------------------------------------------------------------------- errors, confusion


def test_errors_shows_the_misclassified_digits_captioned(untrained, sample):
    images, labels = sample[0][:80], sample[1][:80]
    pred = untrained.predict(images)
    wrong = np.flatnonzero(pred != labels)
    assert 25 < len(wrong) < 80
    fig = plots.errors(untrained, images, labels, limit=25)
    digits = [ax for ax in fig.axes if ax.get_label().startswith("image ")]
    assert len(digits) == 25
    assert [ax.get_label() for ax in digits] == [f"image {i}" for i in wrong[:25]]
    assert [ax.get_xlabel() for ax in digits] == [f"{labels[i]}->{pred[i]}" for i in wrong[:25]]
    for ax, i in zip(digits, wrong):
        np.testing.assert_array_equal(ax.images[0].get_array(), images[i])
    assert suptitle(fig).startswith(f"{len(wrong)} of 80 digits misclassified")
    assert "the first 25 shown" in suptitle(fig)

    fig = plots.errors(untrained, images, labels)          # default cap: all of them
    assert sum(ax.get_label().startswith("image ") for ax in fig.axes) == len(wrong)
    assert "shown" not in suptitle(fig)


def test_errors_with_no_mistakes_says_so(pretrained, sample):
    model = pretrained["softmax"]
    images, labels = sample
    right = np.flatnonzero(model.predict(images) == labels)[:20]
    fig = plots.errors(model, images[right], labels[right])
    assert not [ax for ax in fig.axes if ax.get_label().startswith("image ")]
    assert "no misclassified digits" in [t.get_text() for t in fig.texts]
    with pytest.raises(ValueError, match="labels"):
        plots.errors(model, images[:3], labels[:2])


def test_confusion_counts_are_numpys(untrained, sample):
    images, labels = sample[0][:120], sample[1][:120]
    pred = untrained.predict(images)
    want = np.zeros((10, 10), dtype=int)
    for t, p in zip(labels, pred):
        want[t, p] += 1
    fig = plots.confusion(untrained, images, labels)
    ax = fig.axes[0]
    got = np.full((10, 10), -1)
    for text in ax.texts:
        p, t = text.get_position()
        got[int(t), int(p)] = int(text.get_text())
    np.testing.assert_array_equal(got, want)
    assert np.count_nonzero(want - np.diag(np.diag(want))) > 5   # off-diagonal cells checked
    wrong = int(want.sum() - np.trace(want))
    assert f": {wrong} wrong" in ax.get_title()


# ----------------------------------------------------------------------------- history


@pytest.fixture(scope="module")
def history_files(tmp_path_factory, sample):
    """Two real *.history.json files written by the trainer (tiny runs), one without a
    test set."""
    from lenet_native.training import train
    d = tmp_path_factory.mktemp("runs")
    images, labels = sample
    train(LeNet5(seed=0, threads=1), images[:64], labels[:64], images[64:96], labels[64:96],
          epochs=3, batch_size=16, checkpoint=d / "a.npz", progress=False)
    train(LeNet5(seed=1, threads=1), images[:64], labels[:64], epochs=2, batch_size=16,
          checkpoint=d / "b.npz", progress=False)
    return d / "a.history.json", d / "b.history.json"


def test_history_lines_are_the_json_values(history_files):
    a, b = history_files
    fig = plots.history([a, str(b)])
    ax_err, ax_loss = fig.axes[:2]
    runs = {"a": json.loads(a.read_text())["history"], "b": json.loads(b.read_text())["history"]}
    want = {}
    for name, recs in runs.items():
        for split in ("train", "test"):
            if recs[0][f"{split}_error"] is None:
                continue
            want[(ax_err, f"{name} {split}")] = [100 * r[f"{split}_error"] for r in recs]
            want[(ax_loss, f"{name} {split}")] = [r[f"{split}_loss"] for r in recs]
    assert len(want) == 6                    # a: train + test, b: train only; two axes
    for ax in (ax_err, ax_loss):
        lines = {line.get_label(): line for line in ax.lines}
        assert sorted(lines) == sorted(k for a_, k in want if a_ is ax)
        for label, line in lines.items():
            np.testing.assert_allclose(line.get_ydata(), want[(ax, label)])
            np.testing.assert_array_equal(line.get_xdata(), [r["epoch"] for r in
                                                             runs[label.split()[0]]])
        legend = ax.get_legend()
        assert sorted(t.get_text() for t in legend.get_texts()) == sorted(lines)
    # a parsed document and names work too
    fig = plots.history([json.loads(a.read_text())], names=["mine"])
    assert {line.get_label() for line in fig.axes[0].lines} == {"mine train", "mine test"}


def test_history_refuses_what_is_not_a_history(tmp_path):
    bad = tmp_path / "x.history.json"
    bad.write_text('{"format": "something else", "history": []}')
    with pytest.raises(ValueError, match="not a training history"):
        plots.history([bad])
    bad.write_text("not json")
    with pytest.raises(ValueError, match="not JSON"):
        plots.history(bad)
    with pytest.raises(FileNotFoundError, match="nope.history.json"):
        plots.history([tmp_path / "nope.history.json"])
    with pytest.raises(ValueError, match="no runs"):
        plots.history([])


# ----------------------------------------------------------------------------- files


MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


@pytest.mark.parametrize("what", ["table", "prototypes", "kernels", "activations", "errors",
                                  "confusion", "history"])
def test_every_figure_renders_headless_to_png(what, tmp_path, pretrained, sample, act_figures,
                                              history_files):
    model = pretrained["softmax"]
    make = {"table": plots.table, "prototypes": plots.prototypes,
            "kernels": lambda: plots.kernels(model),
            "activations": lambda: act_figures["softmax"],
            "errors": lambda: plots.errors(model, *sample),
            "confusion": lambda: plots.confusion(model, *sample),
            "history": lambda: plots.history(history_files)}[what]
    fig = make()
    assert isinstance(fig, matplotlib.figure.Figure)
    path = plots.save(fig, tmp_path / f"{what}.png")
    data = path.read_bytes()
    assert data.startswith(MAGIC[".png"])
    w, h = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
    assert (w, h) == tuple(np.round(fig.get_size_inches() * 100).astype(int))
    assert [p.name for p in tmp_path.iterdir()] == [f"{what}.png"]   # no temporary left


def test_svg_and_pdf_by_suffix_and_bad_names(tmp_path):
    fig = plots.prototypes()
    assert fig._repr_png_().startswith(MAGIC[".png"])      # what a notebook displays
    svg = plots.save(fig, tmp_path / "p.SVG").read_text()
    assert svg.lstrip().startswith("<?xml") and svg.count("<image") == 10   # the ten bitmaps
    assert plots.save(fig, tmp_path / "p.pdf").read_bytes().startswith(MAGIC[".pdf"])
    with pytest.raises(ValueError, match=r"unknown figure type '\.gif'.*\.png, \.svg, \.pdf"):
        plots.save(fig, tmp_path / "p.gif")
    with pytest.raises(FileNotFoundError, match="output folder does not exist"):
        plots.save(fig, tmp_path / "no" / "p.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.SVG", "p.pdf"]


# ----------------------------------------------------------------------------- the command line


def test_show_writes_each_kind(tmp_path, capsys, history_files):
    for what, extra, name in (("table", [], "t.pdf"), ("prototypes", [], "p.png"),
                              ("errors", ["--limit", "5"], "e.png"),
                              ("confusion", [], "c.svg"),
                              ("history", [str(f) for f in history_files], "h.png"),
                              ("kernels", ["--head", "rbf"], "k.png")):
        out = tmp_path / name
        assert cli.main(["show", what, *extra, "--out", str(out), "--threads", "1",
                         "--dpi", "40"]) == 0, \
            capsys.readouterr().err
        assert out.stat().st_size > 500
        assert f"saved {out}" in capsys.readouterr().out


def test_show_activations_of_a_sample_digit_and_of_an_image_file(tmp_path, capsys, sample,
                                                                 pretrained):
    out = tmp_path / "a.svg"
    assert cli.main(["show", "activations", "--index", "7", "--out", str(out)]) == 0
    svg = out.read_text()
    pred = pretrained["softmax"].predict(sample[0][7])[0]
    assert f"reads this digit as {pred}" in svg and f"true label {sample[1][7]}" in svg

    # an image file: a thick white "1" on black, converted like MNIST
    img = np.zeros((40, 40), dtype=np.uint8)
    img[6:34, 18:23] = 255
    npy = tmp_path / "one.npy"
    np.save(npy, img)
    out = tmp_path / "b.png"
    assert cli.main(["show", "activations", str(npy), "--out", str(out), "--dpi", "30"]) == 0, \
        capsys.readouterr().err
    assert out.read_bytes().startswith(MAGIC[".png"])


@pytest.mark.parametrize("argv, message", [
    (["show", "activations", "--index", "500"], "--index 500 is out of range"),
    (["show", "activations", "--index", "-501"], "out of range"),
    (["show", "activations", "missing.png"], "missing.png: no such file"),
    (["show", "history"], "needs one or more"),
    (["show", "history", "missing.history.json"], "missing.history.json"),
    (["show", "table", "extra.json"], "takes no FILE"),
    (["show", "kernels", "--weights", "missing.npz"], "missing.npz"),
])
def test_show_bad_input_is_one_clear_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--out", "x.png"]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()


def test_show_bad_what_and_bad_suffix(tmp_path, capsys):
    assert cli.main(["show", "nonsense", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err and "Traceback" not in err
    assert cli.main(["show", "table", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "unknown figure type '.jpg'" in one_error_line(capsys.readouterr().err)
    assert cli.main(["show", "table", "--out", str(tmp_path / "no" / "x.png")]) == 2
    assert "output folder does not exist" in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_demo_plot(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--plot", str(out), "--no-speed", "--show", "0",
                     "--threads", "1"]) == 0
    assert out.read_bytes().startswith(MAGIC[".png"])
    assert f"saved {out}" in capsys.readouterr().out
    assert cli.main(["demo", "--plot", str(tmp_path / "demo.bmp"), "--no-speed"]) == 2
    assert "unknown figure type '.bmp'" in one_error_line(capsys.readouterr().err)
