"""Pictures of LeNet-5 at work, as the paper draws them (matplotlib, the optional extra).

    >>> from lenet_native import LeNet5, plots
    >>> model = LeNet5.pretrained()
    >>> plots.activations(model, digit)          # Fig. 13: one digit through C1 .. OUTPUT
    >>> plots.kernels(model)                     # C1's kernels, C3's on Table I's grid
    >>> plots.table(); plots.prototypes()        # Table I; the RBF bitmaps (Fig. 3)
    >>> plots.errors(model, images, labels)      # misclassified digits (Fig. 8)
    >>> plots.confusion(model, images, labels)   # confusion matrix with counts
    >>> plots.history(["run.history.json"])      # learning curves (Fig. 5)
    >>> plots.save(fig, "activations.png")       # PNG, SVG or PDF by suffix, written atomically

    $ lenet-native show activations --index 0 --out activations.png   (commands/show.py)

Every function returns a :class:`matplotlib.figure.Figure` drawn on the Agg canvas: nothing
is shown and pyplot's global state is not touched, so it works headless, in scripts and in
notebooks (a notebook displays the returned figure). matplotlib is the optional extra
``pip install 'lenet_native[plots]'``; it is imported only when a figure is made.
"""
from __future__ import annotations

import functools
import json
from io import BytesIO
from pathlib import Path

import numpy as np

from .checkpoint import HISTORY_FORMAT
from .checks import as_images, as_labels
from .fileio import atomic_write
from .layout import C3_TABLE
from .prototypes import COLS, ROWS, rbf_prototypes

__all__ = ["activations", "kernels", "table", "prototypes", "errors", "confusion", "history",
           "save", "check_output", "figure_format", "FORMATS", "WHATS", "INSTALL_HINT",
           "MissingMatplotlibError", "ERRORS_SHOWN"]

INSTALL_HINT = "pip install 'lenet_native[plots]' (or: pip install matplotlib)"
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
WHATS = ("activations", "kernels", "table", "prototypes", "errors", "confusion", "history")
ERRORS_SHOWN = 100          # errors(): at most this many digits by default (Fig. 8 shows 82)
CMAP = "RdBu_r"             # feature maps and kernels: negative blue, zero white, positive red
DIGIT_CMAP = "gray_r"       # digits and bitmaps as the paper prints them: ink black on white


class MissingMatplotlibError(ImportError):
    """matplotlib, needed for the figures, is not installed."""


def _mpl():
    """(Figure, FigureCanvasAgg, matplotlib.colors): imported on first use."""
    try:
        import matplotlib.colors as colors
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingMatplotlibError(f"lenet_native.plots needs matplotlib: {INSTALL_HINT}") \
            from exc
    return Figure, FigureCanvasAgg, colors


@functools.lru_cache(maxsize=1)
def _figure_class():
    Figure = _mpl()[0]

    class LookInsideFigure(Figure):
        """A matplotlib Figure that a notebook displays (as PNG) even when pyplot, whose
        import sets up the notebook's own display of figures, was never imported."""

        def _repr_png_(self):
            buf = BytesIO()
            self.savefig(buf, format="png")
            return buf.getvalue()

    return LookInsideFigure


def _figure(width, height):
    FigureCanvasAgg = _mpl()[1]
    fig = _figure_class()(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)  # an Agg canvas of its own: no pyplot, no global backend
    return fig


def _symmetric_norm(values):
    """One colour scale for a whole layer: -m .. +m, m = the largest |value| (1 if all zero)."""
    m = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return _mpl()[2].Normalize(-m if m > 0 else -1.0, m if m > 0 else 1.0)


def _bare(ax):
    ax.set_xticks([])
    ax.set_yticks([])


def _row(fig, top, n, size, gap, left, height=None):
    """n axes of size x height inches in a row whose top is ``top`` inches below the figure's
    top, starting ``left`` inches from the left; -> list of axes."""
    w, h = fig.get_size_inches()
    height = size if height is None else height
    return [fig.add_axes([(left + i * (size + gap)) / w, 1 - (top + height) / h,
                          size / w, height / h]) for i in range(n)]


def _colorbar(fig, image, top, height, x, label):
    """A vertical colour bar at ``x`` inches from the left, beside a row."""
    w, h = fig.get_size_inches()
    bar_h = max(height, 0.6)
    cax = fig.add_axes([x / w, 1 - (top + height / 2 + bar_h / 2) / h, 0.12 / w, bar_h / h])
    bar = fig.colorbar(image, cax=cax)
    bar.ax.tick_params(labelsize=6)
    cax.set_title(label, fontsize=6)
    return bar


# ----------------------------------------------------------------------------- activations


def _network_input(image):
    """One digit -> (1, 32, 32) float32 network input and the picture to show: a uint8
    (28, 28) MNIST digit (preprocessed as in the paper) or a preprocessed (32, 32) float."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 4 and a.shape[:2] == (1, 1):
        a = a[0, 0]
    if a.ndim != 2:
        raise ValueError(f"activations: expected one digit, (28, 28) uint8 or a preprocessed "
                         f"(32, 32) float; got shape {np.shape(image)}")
    return as_images(a[None], "activations")


def _prediction_text(head, outputs):
    """'7 (p = 99.8%)' (softmax) or '7 (y = 12.3, the smallest distance)' (rbf)."""
    if head == "rbf":
        k = int(np.argmin(outputs))
        return k, f"{k} (y = {outputs[k]:.1f}, the smallest RBF distance)"
    k = int(np.argmax(outputs))
    return k, f"{k} (p = {100 * outputs[k]:.2f}%)"


def activations(model, image, label=None):
    """One digit flowing through the network, drawn as the paper's Fig. 13.

    Parameters
    ----------
    model : LeNet5
    image : array
        One digit: uint8 (28, 28) MNIST-style (ink 255 on 0), or preprocessed (32, 32) float
        network input.
    label : int, optional
        The true digit, named in the title when given.

    Returns
    -------
    matplotlib.figure.Figure
        Rows top to bottom: the 32x32 input, C1's 6 maps, S2's 6, C3's 16, S4's 16, C5's
        120 units and F6's 84 as strips, and the ten outputs (probabilities for the softmax
        head, RBF distances y_i for the rbf head). Every map is titled with its layer and
        index; every layer has one colour scale (symmetric about 0) and its colour bar. The
        figure title names the prediction (``model.predict`` of the digit).
    """
    x = _network_input(image)
    acts = {k: v[0] for k, v in model.activations(x).items()}
    if model.head == "rbf":
        outputs = acts["output"]
    else:
        outputs = model.predict_proba(x)[0]
    pred, text = _prediction_text(model.head, outputs)

    W, H = 13.0, 11.6
    fig = _figure(W, H)
    title = f"LeNet-5 ({model.head} head) reads this digit as {text}"
    if label is not None:
        title += f"; true label {int(label)}"
    fig.suptitle(title, fontsize=12, y=1 - 0.18 / H)
    left, cbar_x, label_x = 1.25, W - 0.55, 0.2

    def layer(top, name, maps, size, gap, what):
        norm = _symmetric_norm(maps)
        axes = _row(fig, top, len(maps), size, gap, left)
        for i, (ax, m) in enumerate(zip(axes, maps)):
            im = ax.imshow(m, cmap=CMAP, norm=norm, interpolation="nearest")
            ax.set_title(f"{name} {i}", fontsize=6, pad=2)
            _bare(ax)
        fig.text(label_x / W, 1 - (top + size / 2) / H, f"{name}\n{what}", fontsize=9,
                 va="center", ha="left", weight="bold")
        _colorbar(fig, im, top, size, cbar_x, name)
        return axes

    layer(0.55, "INPUT", [x[0]], 1.5, 0.0, "32x32")
    layer(2.35, "C1", acts["c1"], 1.25, 0.3, "6@28x28")
    layer(3.95, "S2", acts["s2"], 0.85, 0.7, "6@14x14")
    layer(5.15, "C3", acts["c3"], 0.56, 0.12, "16@10x10")
    layer(6.05, "S4", acts["s4"], 0.42, 0.26, "16@5x5")

    cell = 10.3 / 120  # one unit's width in the strips, the same for C5 and F6
    for top, name, what in ((6.95, "C5", "120 units"), (7.75, "F6", "84 units")):
        v = acts[name.lower()]
        ax = _row(fig, top, 1, cell * v.size, 0, left, height=0.3)[0]
        im = ax.imshow(v[None, :], cmap=CMAP, norm=_symmetric_norm(v), aspect="auto",
                       interpolation="nearest")
        ax.set_title(f"{name} (units 0..{v.size - 1})", fontsize=6, pad=2)
        ax.set_yticks([])
        ax.set_xticks(range(0, v.size, 10))
        ax.tick_params(labelsize=6, length=2)
        fig.text(label_x / W, 1 - (top + 0.15) / H, f"{name}\n{what}", fontsize=9,
                 va="center", ha="left", weight="bold")
        _colorbar(fig, im, top, 0.3, cbar_x, name)

    ax = _row(fig, 8.75, 1, 6.0, 0, left + 0.45, height=2.2)[0]
    colours = ["#bbbbbb"] * 10
    colours[pred] = "#c0392b"
    bars = ax.bar(range(10), outputs, color=colours)
    for b, v in zip(bars, outputs):
        ax.text(b.get_x() + b.get_width() / 2, b.get_height(),
                f"{v:.2f}" if model.head == "rbf" else f"{v:.3f}",
                ha="center", va="bottom", fontsize=6)
    ax.set_xticks(range(10))
    ax.tick_params(labelsize=7)
    if model.head == "rbf":
        ax.set_title("OUTPUT: RBF distances y_i to the digit bitmaps (smallest wins)",
                     fontsize=8)
        ax.set_ylabel("y_i", fontsize=7)
    else:
        ax.set_title("OUTPUT: class probabilities (softmax of the logits)", fontsize=8)
        ax.set_ylabel("probability", fontsize=7)
        ax.set_ylim(0, 1.1)
    ax.set_xlabel("digit", fontsize=7)
    fig.text(label_x / W, 1 - (8.75 + 1.1) / H, "OUTPUT\n10", fontsize=9, va="center",
             ha="left", weight="bold")
    if model.head == "rbf":
        # the RBF units compare F6, read as a 7x12 bitmap, with each digit's prototype
        f6_norm = _symmetric_norm(acts["f6"])
        pics = ((acts["f6"], "F6 as 7x12"), (rbf_prototypes()[pred], f"prototype of {pred}"))
        for ax, (v, name) in zip(_row(fig, 8.95, 2, 0.95, 0.6, 8.6, height=0.95 * ROWS / COLS),
                                 pics):
            ax.imshow(np.asarray(v).reshape(ROWS, COLS), cmap=CMAP, norm=f6_norm,
                      interpolation="nearest")
            ax.set_title(name, fontsize=7, pad=2)
            _bare(ax)
    fig.text(0.5, 0.01, "colour: each layer's values on its own scale, symmetric about 0 "
             "(blue < 0 < red); squashing f(a) = 1.7159 tanh(2a/3) lies in (-1.7159, 1.7159)",
             ha="center", fontsize=7, color="#555555")
    return fig


# ----------------------------------------------------------------------------- kernels, Table I


def _table():
    return np.asarray(C3_TABLE)


def kernels(model):
    """C1's 6 kernels and C3's 60 connected kernels on Table I's grid.

    Returns
    -------
    matplotlib.figure.Figure
        Top: C1's six 5x5 kernels. Below: a 6 x 16 grid as Table I (rows: S2 maps 0..5,
        columns: C3 maps 0..15); the cell (row i, column j) shows the 5x5 kernel that C3 map
        j applies to S2 map i, and is empty where Table I has no connection. C1 and C3 each
        have one colour scale (symmetric about 0) and a colour bar.
    """
    state = model.state_dict()
    table_ = _table()
    c1 = state["c1.weight"][:, 0]
    c3 = state["c3.weight"]
    W, H = 13.0, 7.0
    fig = _figure(W, H)
    fig.suptitle(f"LeNet-5 ({model.head} head): the convolution kernels", fontsize=12,
                 y=1 - 0.15 / H)
    left = 1.2
    norm = _symmetric_norm(c1)
    axes = _row(fig, 0.8, 6, 0.9, 0.35, left)
    for i, ax in enumerate(axes):
        im = ax.imshow(c1[i], cmap=CMAP, norm=norm, interpolation="nearest")
        ax.set_title(f"C1 {i}", fontsize=7, pad=2)
        _bare(ax)
    fig.text(0.2 / W, 1 - 1.25 / H, "C1\n6 kernels\n5x5", fontsize=9, va="center",
             weight="bold")
    _colorbar(fig, im, 0.8, 0.9, left + 6 * 1.25 + 0.2, "C1")

    size, gap, top = 0.56, 0.1, 2.6
    norm = _symmetric_norm(c3[table_])
    fig.text(0.2 / W, 1 - (top + 3 * (size + gap)) / H,
             "C3\n60 kernels\non Table I's\ngrid", fontsize=9, va="center", weight="bold")
    fig.text((left - 0.12) / W, 1 - (top - 0.1) / H, "S2 map", fontsize=7, ha="right",
             va="center")
    fig.text((left + 8 * (size + gap)) / W, 1 - (top - 0.45) / H,
             "C3 map (column) reads S2 map (row) through the kernel shown; empty = not "
             "connected (Table I)", ha="center", fontsize=8)
    fig.text((left + 8 * (size + gap)) / W, 1 - (top - 0.22) / H, "C3 map", ha="center",
             fontsize=8)
    for i in range(6):
        for j, ax in enumerate(_row(fig, top + i * (size + gap), 16, size, gap, left)):
            _bare(ax)
            if table_[j, i]:
                im = ax.imshow(c3[j, i], cmap=CMAP, norm=norm, interpolation="nearest")
                ax.set_label(f"C3 {j} <- S2 {i}")
            else:
                ax.axis("off")
                ax.set_label(f"C3 {j} <- S2 {i} (not connected)")
            if i == 0:
                ax.set_title(f"{j}", fontsize=7, pad=2)
            if j == 0:
                ax.text(-0.25, 0.5, f"{i}", transform=ax.transAxes, ha="right", va="center",
                        fontsize=7)
    _colorbar(fig, im, top, 6 * (size + gap) - gap, left + 16 * (size + gap) + 0.1, "C3")
    return fig


def table():
    """Table I of the paper: which S2 maps each C3 map reads, an X where connected.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; rows are S2 maps 0..5 (top to bottom), columns C3 maps 0..15; the cell of
        (row i, column j) is centred at data coordinates (j, i) and holds an "X" when
        ``C3_TABLE[j, i]``.
    """
    t = _table()
    fig = _figure(8.0, 3.8)
    ax = fig.add_axes([0.08, 0.04, 0.9, 0.7])
    ax.set_xlim(-0.5, 15.5)
    ax.set_ylim(5.5, -0.5)
    ax.set_xticks(range(16))
    ax.set_yticks(range(6))
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=9)
    for v in np.arange(-0.5, 16):
        ax.axvline(v, color="black", lw=0.6)
    for v in np.arange(-0.5, 6):
        ax.axhline(v, color="black", lw=0.6)
    for j, i in zip(*np.nonzero(t)):
        ax.text(j, i, "X", ha="center", va="center", fontsize=13, family="DejaVu Sans")
    fig.suptitle("TABLE I: each column indicates which feature maps in S2 are combined by "
                 "the units in a particular feature map of C3", fontsize=8, y=0.97)
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("C3 map", fontsize=8)
    ax.set_ylabel("S2 map", fontsize=8)
    return fig


def prototypes():
    """The ten 7x12 bitmaps of the RBF output layer (the paper's Fig. 3; +1 = ink, black).

    Returns
    -------
    matplotlib.figure.Figure
        Ten axes titled "0" .. "9", each showing that digit's 12 x 7 prototype.
    """
    p = rbf_prototypes().reshape(10, ROWS, COLS)
    W, H = 8.0, 2.1
    fig = _figure(W, H)
    fig.suptitle("The RBF output layer's prototypes: 7x12 bitmaps, +1 black, -1 white",
                 fontsize=10, y=1 - 0.12 / H)
    for d, ax in enumerate(_row(fig, 0.75, 10, 0.62, 0.12, 0.35, height=0.62 * ROWS / COLS)):
        ax.imshow(p[d], cmap=DIGIT_CMAP, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(str(d), fontsize=9, pad=2)
        _bare(ax)
    return fig


# ----------------------------------------------------------------------------- errors


def _predict(model, images, labels, where):
    x = as_images(images, where)
    y = as_labels(labels, x.shape[0], where)
    return x, y.astype(np.int64), model.predict(x)


def errors(model, images, labels, limit=ERRORS_SHOWN, columns=10):
    """The misclassified digits, as the paper's Fig. 8, each captioned ``true->predicted``.

    Parameters
    ----------
    model : LeNet5
    images : array
        uint8 (N, 28, 28) digits or preprocessed (N, 32, 32) input.
    labels : array of int
        The true digits (N,).
    limit : int
        At most this many digits are drawn (the first ones in the order given); the title
        says how many there are in all.
    columns : int
        Digits per row.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per drawn digit (x label = its caption, e.g. "4->6"), in the order of the
        images.
    """
    if int(limit) < 1 or int(columns) < 1:
        raise ValueError(f"errors: limit and columns must be >= 1; got {limit}, {columns}")
    x, y, pred = _predict(model, images, labels, "errors")
    wrong = np.flatnonzero(pred != y)
    shown = wrong[:int(limit)]
    columns = int(columns)
    rows = max(1, -(-len(shown) // columns))
    size, gap_x, gap_y = 0.75, 0.15, 0.35
    W = 0.5 + columns * (size + gap_x)
    H = 0.9 + rows * (size + gap_y)
    fig = _figure(W, H)
    n = len(y)
    title = (f"{len(wrong)} of {n:,} digits misclassified ({100 * len(wrong) / max(n, 1):.2f}%)"
             f" by LeNet-5 ({model.head} head); caption: true->predicted")
    if len(shown) < len(wrong):
        title += f"; the first {len(shown)} shown"
    fig.suptitle(title, fontsize=9, y=1 - 0.15 / H)
    raw = np.asarray(images)
    for r in range(rows):
        k0 = r * columns
        for ax, k in zip(_row(fig, 0.7 + r * (size + gap_y), min(columns, len(shown) - k0),
                              size, gap_x, 0.25), range(k0, len(shown))):
            i = shown[k]
            digit = raw[i] if raw.dtype == np.uint8 else x[i]
            ax.imshow(digit, cmap=DIGIT_CMAP, interpolation="nearest")
            _bare(ax)
            ax.set_xlabel(f"{y[i]}->{pred[i]}", fontsize=8, labelpad=2)
            ax.set_label(f"image {i}")
    if not len(shown):
        fig.text(0.5, 0.5, "no misclassified digits", ha="center", va="center", fontsize=11)
    return fig


def confusion(model, images, labels):
    """The confusion matrix with counts: row = true digit, column = predicted digit.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; cell (row t, column p) shows the count as text at data coordinates
        (p, t); colour on a log scale (empty cells white).
    """
    _, _, colors = _mpl()
    _, y, pred = _predict(model, images, labels, "confusion")
    counts = np.zeros((10, 10), dtype=np.int64)
    np.add.at(counts, (y, pred), 1)
    fig = _figure(6.4, 5.8)
    ax = fig.add_axes([0.12, 0.1, 0.72, 0.78])
    masked = np.ma.masked_equal(counts, 0)
    import matplotlib
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="white")
    im = ax.imshow(masked, cmap=cmap, norm=colors.LogNorm(1, max(2, counts.max())),
                   interpolation="nearest")
    for t in range(10):
        for p in range(10):
            c = counts[t, p]
            dark = c > 0 and c >= counts.max() ** 0.6
            ax.text(p, t, str(c), ha="center", va="center", fontsize=8,
                    color="white" if dark else ("black" if c else "#aaaaaa"))
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    n, wrong = len(y), int(counts.sum() - np.trace(counts))
    ax.set_title(f"LeNet-5 ({model.head} head) on {n:,} digits: {wrong} wrong "
                 f"({100 * wrong / max(n, 1):.2f}%)", fontsize=9)
    cax = fig.add_axes([0.87, 0.1, 0.03, 0.78])
    fig.colorbar(im, cax=cax).set_label("count (log scale)", fontsize=8)
    return fig


# ----------------------------------------------------------------------------- history


def _read_history(item, k):
    """(name, records) of a *.history.json path, its parsed document, or a list of records."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file" if not path.exists()
                                    else f"{path}: not a file")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a training history (not JSON: {exc})") from None
        name = path.name[:-len(".history.json")] if path.name.endswith(".history.json") \
            else path.stem
        where = str(path)
    else:
        doc, name, where = item, None, f"history[{k}]"
    if isinstance(doc, dict):
        if doc.get("format") != HISTORY_FORMAT or not isinstance(doc.get("history"), list):
            raise ValueError(f"{where}: not a training history (expected a JSON object with "
                             f'"format": "{HISTORY_FORMAT}" and a "history" list, as '
                             f"lenet-native train writes beside its model)")
        records = doc["history"]
        name = name or Path(str(doc.get("model", f"run {k}"))).stem
    elif isinstance(doc, (list, tuple)):
        records, name = list(doc), name or f"run {k}"
    else:
        raise TypeError(f"{where}: expected a *.history.json path, its parsed document or a "
                        f"list of epoch records; got {type(doc).__name__}")
    for r in records:
        if not isinstance(r, dict) or "epoch" not in r:
            raise ValueError(f"{where}: an epoch record without 'epoch': {r!r:.80}")
    return name, records


def _series(records, key, scale=1.0):
    return np.array([np.nan if r.get(key) is None else scale * float(r[key])
                     for r in records], dtype=np.float64)


def history(runs, names=None):
    """Learning curves (the paper's Fig. 5): error and loss per epoch, several runs overlaid.

    Parameters
    ----------
    runs : path, dict or list of them
        ``*.history.json`` files written by :func:`lenet_native.training.train` (beside its
        checkpoint), their parsed documents, or lists of epoch records.
    names : list of str, optional
        Legend names (default: the file names without ``.history.json``).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: "error (%)" (train_error and test_error x 100) and "loss" (train_loss and
        test_loss), one colour per run, train dashed and test solid; each line's label is
        "<name> train" or "<name> test". Missing values (no test set) are left out.
    """
    if isinstance(runs, (str, Path, dict)):
        runs = [runs]
    runs = list(runs)
    if not runs:
        raise ValueError("history: no runs given")
    loaded = [_read_history(item, k) for k, item in enumerate(runs)]
    if names is not None:
        names = list(names)
        if len(names) != len(loaded):
            raise ValueError(f"history: {len(names)} names for {len(loaded)} runs")
        loaded = [(n, r) for n, (_, r) in zip(names, loaded)]
    fig = _figure(11.0, 4.4)
    ax_err = fig.add_axes([0.07, 0.13, 0.4, 0.74])
    ax_loss = fig.add_axes([0.57, 0.13, 0.4, 0.74])
    palette = [f"C{i % 10}" for i in range(len(loaded))]
    for (name, records), colour in zip(loaded, palette):
        epochs = _series(records, "epoch")
        for ax, key, scale in ((ax_err, "error", 100.0), (ax_loss, "loss", 1.0)):
            for split, style in (("train", "--"), ("test", "-")):
                v = _series(records, f"{split}_{key}", scale)
                if np.all(np.isnan(v)):
                    continue
                ax.plot(epochs, v, style, color=colour, marker=".", label=f"{name} {split}")
    for ax, what in ((ax_err, "error (%)"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(f"{what} per epoch (train dashed, test solid)", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle("Learning curves", fontsize=11)
    return fig


# ----------------------------------------------------------------------------- saving


def figure_format(path) -> str:
    """'png', 'svg' or 'pdf' from the suffix of ``path``; ValueError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown figure type {suffix or '(no suffix)'!r}; "
                         f"expected {', '.join(FORMATS)}")
    return FORMATS[suffix]


def check_output(path) -> str:
    """Check before any work that a figure can be written to ``path``: a known suffix, an
    existing folder, and matplotlib installed. Returns the format; ValueError /
    FileNotFoundError (naming the file) otherwise."""
    fmt = figure_format(path)
    path = Path(path)
    if str(path.parent) and not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: output folder does not exist")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected a figure file name")
    try:
        _mpl()
    except MissingMatplotlibError as exc:
        raise ValueError(str(exc)) from None
    return fmt


def save(fig, path, dpi=None) -> Path:
    """Write ``fig`` to ``path`` (PNG, SVG or PDF by its suffix) atomically: rendered in
    memory first, so a failure leaves no half-written file. Returns the path."""
    path = Path(path)
    fmt = check_output(path)
    buf = BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi or 100, metadata=_metadata(fmt))
    data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return path


def _metadata(fmt):
    # no creation date: the same figure gives the same file (docs/ stay stable in git)
    if fmt == "png":
        return {"Software": "lenet_native"}
    if fmt == "svg":
        return {"Date": None}
    return {"CreationDate": None, "ModDate": None}
