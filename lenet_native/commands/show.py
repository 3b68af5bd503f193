"""``lenet-native show WHAT --out FILE``: draw one figure of lenet_native.plots to a file.

    $ lenet-native show activations --index 7 --out activations.png
    $ lenet-native show activations seven.png --weights model.npz --out seven.svg
    $ lenet-native show kernels --head rbf --out kernels.pdf
    $ lenet-native show errors --data DIR --out errors.png
    $ lenet-native show history a.history.json b.history.json --out curves.png

WHAT is one of :data:`lenet_native.plots.WHATS`; the figure type (PNG, SVG or PDF) comes
from the suffix of ``--out``. matplotlib is the optional extra ``[plots]``.
"""
from __future__ import annotations

from pathlib import Path

from ..demo import load_test_digits
from ..images import read_image_file, to_mnist
from ..plots import (ERRORS_SHOWN, WHATS, activations, check_output, confusion, errors,
                     history, kernels, prototypes, save, table)
from ..pretrained import load_model
from .options import (EXIT_OK, CommandError, add_data, add_figure, add_head, add_threads,
                      add_weights, int_in, positive_int)


def add_arguments(parser) -> None:
    """The options of ``lenet-native show``."""
    parser.add_argument("what", choices=WHATS, metavar="WHAT",
                        help=f"the figure: {', '.join(WHATS)}")
    parser.add_argument("inputs", nargs="*", metavar="FILE",
                        help="activations: an image file (PNG/JPEG/.npy/IDX; converted like "
                             "MNIST) instead of --index; history: one or more *.history.json")
    add_figure(parser, "--out", required=True)
    add_head(parser, help="which pretrained model (default softmax)")
    add_weights(parser, "a weight file to draw instead of the pretrained model")
    parser.add_argument("--index", type=int, default=0, metavar="I",
                        help="activations: digit I of the sample shipped with the package "
                             "(500 MNIST test digits), of the MNIST test set with --data, or "
                             "of a stack in FILE (default 0)")
    add_data(parser, help="activations, errors, confusion: the MNIST test set in DIR "
                          "instead of the 500 digits shipped with the package")
    parser.add_argument("--limit", type=positive_int, default=ERRORS_SHOWN, metavar="N",
                        help=f"errors: at most N digits drawn (default {ERRORS_SHOWN})")
    parser.add_argument("--dpi", type=int_in(10, 1000), default=100,
                        help="PNG resolution (default 100)")
    add_threads(parser)


def _pick(items, index, where):
    n = len(items)
    if not -n <= index < n:
        raise CommandError(f"--index {index} is out of range: {where} holds {n} digit(s) "
                           f"(0..{n - 1})")
    return items[index]


def figure(args):
    """The figure ``args`` (parsed ``show`` options) ask for, not yet saved."""
    what, inputs = args.what, list(args.inputs)
    if inputs and what not in ("activations", "history"):
        raise CommandError(f"show {what} takes no FILE argument (got {inputs[0]})")
    if what == "table":
        return table()
    if what == "prototypes":
        return prototypes()
    if what == "history":
        if not inputs:
            raise CommandError("show history needs one or more *.history.json files")
        return history(inputs)
    model = load_model(args.weights, args.head, args.threads)
    if what == "kernels":
        return kernels(model)
    if what == "activations":
        if len(inputs) > 1:
            raise CommandError("show activations takes one image file")
        if inputs:
            items = read_image_file(inputs[0])
            name, img = _pick(items, args.index, inputs[0]) if len(items) > 1 else items[0]
            return activations(model, to_mnist(img, where=name))
        images, labels, where = load_test_digits(args.data)
        return activations(model, _pick(images, args.index, where),
                           label=_pick(labels, args.index, where))
    images, labels, _ = load_test_digits(args.data)
    if what == "errors":
        return errors(model, images, labels, limit=args.limit)
    return confusion(model, images, labels)


def run(args) -> int:
    """Draw the figure and save it to ``--out``; prints ``saved FILE``."""
    check_output(args.out)             # a bad file name or no matplotlib fails before any work
    out = Path(args.out)
    try:
        fig = figure(args)
    except ImportError as exc:    # matplotlib (or Pillow, for an image file) missing
        raise CommandError(str(exc)) from None
    save(fig, out, dpi=args.dpi)
    print(f"saved {out}")
    return EXIT_OK
