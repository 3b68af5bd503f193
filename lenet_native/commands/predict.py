"""``lenet-native predict FILE...``: classify your own digit images (lenet_native.images).

    $ lenet-native predict seven.png digits.npy t10k-images-idx3-ubyte.gz
"""
from __future__ import annotations

import sys

from ..images import classify, read_image_file
from ..pretrained import load_model
from ..terminal import ascii_digit
from .options import EXIT_ERROR, EXIT_OK, PROG, add_head, add_threads, add_weights


def add_arguments(parser) -> None:
    """The options of ``lenet-native predict``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="images (PNG/JPEG/... need Pillow), .npy arrays (2-D one image, "
                             "3-D a stack; uint8 0..255 or float 0..1) or IDX files")
    add_head(parser, help="which pretrained model (default softmax)")
    add_weights(parser, "use this weight file instead of the pretrained model")
    parser.add_argument("--no-normalize", action="store_true",
                        help="feed 28x28 images as they are (already MNIST-format: ink bright "
                             "on black, centred) instead of converting them like MNIST")
    parser.add_argument("--show", action="store_true",
                        help="also draw each digit as the network sees it (28x28, in text)")
    add_threads(parser)


def run(args, out=None, err=None) -> int:
    """One line per image, ``name<TAB>digit<TAB>probability``.

    Files that cannot be read are reported on ``err`` (default stderr), naming them, and
    the others still classified.

    Returns
    -------
    int
        2 if a file could not be read, else 0.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    model = load_model(args.weights, args.head, args.threads)
    failed = 0
    for path in args.files:
        try:
            items = read_image_file(path)
            names = [n for n, _ in items]
            digits, pred, prob = classify(model, [im for _, im in items],
                                          normalize=not args.no_normalize, names=names)
        except (ValueError, OSError, ImportError) as exc:
            failed += 1
            msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"{PROG}: error: {' '.join(msg.split())}", file=err, flush=True)
            continue
        for name, d, p, digit in zip(names, pred, prob, digits):
            print(f"{name}\t{int(d)}\t{float(p):.4f}", file=out)
            if args.show:
                print(ascii_digit(digit), file=out)
        out.flush()
    return EXIT_ERROR if failed else EXIT_OK
