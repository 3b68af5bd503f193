"""``lenet-native demo``: the pretrained LeNet-5 on MNIST digits shipped with the package.

Offline and in a few seconds: loads the pretrained model, classifies the 500 MNIST test
digits in ``lenet_native/data/mnist_sample.npz``, prints the accuracy, draws a few digits
in the terminal with the prediction and the true label, and times the native (C) and
reference (NumPy) backends side by side. ``--data DIR`` evaluates on the full MNIST test
set (10,000 digits) in DIR instead.

    >>> from lenet_native.demo import load_sample
    >>> images, labels = load_sample()       # uint8 (500, 28, 28), uint8 (500,)
"""
from __future__ import annotations

import statistics
import sys
import time
from importlib import resources

import numpy as np

from .checks import preprocess
from .commands.options import add_data, add_figure, add_head, add_threads, add_weights
from .datasets import load_mnist
from .pretrained import load_model
from .terminal import draw_digits

__all__ = ["load_sample", "load_test_digits", "add_demo_arguments", "demo_main", "draw_digits",
           "SAMPLE_FILE"]

SAMPLE_FILE = "mnist_sample.npz"


def load_sample():
    """The MNIST test digits shipped with the package (the first 500 of the test set):
    ``(images uint8 (500, 28, 28), labels uint8 (500,))``."""
    res = resources.files("lenet_native").joinpath("data", SAMPLE_FILE)
    with resources.as_file(res) as path, np.load(path, allow_pickle=False) as z:
        images, labels = z["images"], z["labels"]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28) \
            or labels.shape != images.shape[:1]:
        raise ValueError(f"{SAMPLE_FILE}: unexpected content {images.dtype} {images.shape}, "
                         f"labels {labels.shape}")
    return images, labels


def load_test_digits(data=None):
    """MNIST test digits: the test set in folder ``data``, or without it the sample shipped
    with the package.

    Parameters
    ----------
    data : str, optional
        A folder holding the MNIST IDX files (``--data``).

    Returns
    -------
    (images, labels, where)
        uint8 (N, 28, 28), uint8 (N,), and a phrase naming the source for messages.
    """
    if data:
        images, labels = load_mnist(data, split="test")
        return images, labels, f"the MNIST test set in {data}"
    images, labels = load_sample()
    return images, labels, "the MNIST test digits shipped with lenet_native"


def add_demo_arguments(parser) -> None:
    """The options of ``lenet-native demo``."""
    add_data(parser, help="evaluate on the full MNIST test set in DIR (the IDX files) instead "
                          "of the 500 digits shipped with the package")
    add_head(parser, help="which pretrained model (default softmax)")
    add_weights(parser, "a weight file to demonstrate instead of the pretrained model")
    parser.add_argument("--show", type=int, default=4, metavar="N",
                        help="digits drawn in the terminal (default 4; 0 = none)")
    parser.add_argument("--no-speed", action="store_true",
                        help="skip the native / reference timing")
    parser.add_argument("--repeats", type=int, default=25, metavar="N",
                        help="repeats of the single-image timing (median; default 25)")
    add_threads(parser)
    add_figure(parser, "--plot", help="also save the first digit's trip through the network "
                                      "(C1 .. OUTPUT, as the paper's Fig. 13) to FILE "
                                      "(.png/.svg/.pdf; needs matplotlib)")


def _time(fn, repeats, budget):
    """Median seconds of fn() over up to ``repeats`` runs, stopping after ``budget`` s."""
    times = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(times)


def _provenance(model) -> str:
    info = model.meta.get("pretrained") or {}
    parts = []
    if "test_error" in info:
        parts.append(f"MNIST test error {100 * info['test_error']:.2f}%")
    if "epochs" in info:
        parts.append(f"{info['epochs']} epochs")
    if info.get("distortions"):
        parts.append("with distortions")
    return ", ".join(parts)


def demo_main(args, out=None) -> int:
    """Run the demo; returns the exit code (0)."""
    out = sys.stdout if out is None else out
    t_start = time.perf_counter()
    plot = getattr(args, "plot", None)
    if plot:  # a bad file name or missing matplotlib fails before the demo runs
        from .plots import check_output
        check_output(plot)
    threads = getattr(args, "threads", None)
    head = getattr(args, "head", "softmax")
    weights = getattr(args, "weights", None)
    model = load_model(weights, head, threads)
    title = (f"LeNet-5 from {weights} ({model.head} head)" if weights
             else f"LeNet-5, pretrained ({model.head} head)")
    prov = _provenance(model)
    print(title + (f": {prov}" if prov else ""), file=out)

    images, labels, where = load_test_digits(getattr(args, "data", None))
    t0 = time.perf_counter()
    proba = model.predict_proba(images)
    t_eval = time.perf_counter() - t0
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    n = len(labels)
    print(f"{n:,} digits from {where}: accuracy {100 * (n - len(wrong)) / n:.2f}% "
          f"({len(wrong)} wrong, error {100 * len(wrong) / n:.2f}%) in {t_eval:.2f} s", file=out)

    show = max(0, int(getattr(args, "show", 4) or 0))
    if show:
        # the first digits, with the first mistake (if any) among them
        picks = list(range(min(show, n)))
        if len(wrong) and wrong[0] not in picks:
            picks[-1] = int(wrong[0])
        captions = []
        for i in picks:
            mark = "" if pred[i] == labels[i] else " WRONG"
            p = 100 * proba[i, pred[i]]
            captions.append(f"#{i}: {pred[i]} ({p:.0f}%) true {labels[i]}{mark}")
        print("", file=out)
        print(draw_digits(images[picks], captions), file=out)

    if plot:
        from .plots import activations, save
        save(activations(model, images[0], label=labels[0]), plot)
        print(f"\nsaved {plot}: digit #0 through C1 .. OUTPUT", file=out)

    if not getattr(args, "no_speed", False):
        repeats = max(1, int(getattr(args, "repeats", 25) or 1))
        batch = preprocess(images[:500])
        one = batch[:1]
        print("", file=out)
        print(f"speed ({model.threads} thread(s); batch of {len(batch)} digits, and one digit: "
              f"median of up to {repeats} runs)", file=out)
        print(f"  {'backend':<10}{'images/s':>12}{'latency':>12}", file=out)
        rows = {}
        for backend, budget in (("native", 1.0), ("reference", 2.0)):
            model.forward(one, backend=backend)  # warm-up
            tb = _time(lambda: model.forward(batch, backend=backend), max(1, repeats // 5), budget)
            t1 = _time(lambda: model.forward(one, backend=backend), repeats, budget)
            rows[backend] = (len(batch) / tb, t1)
            print(f"  {backend:<10}{len(batch) / tb:>12,.0f}{1e3 * t1:>9.3f} ms", file=out)
        ratio = rows["native"][0] / rows["reference"][0]
        print(f"  native is {ratio:.1f}x the reference's throughput and "
              f"{rows['reference'][1] / rows['native'][1]:.1f}x faster on one digit", file=out)
    print(f"\n(demo took {time.perf_counter() - t_start:.1f} s; try `lenet-native predict "
          f"FILE.png` on your own digits)", file=out)
    return 0
