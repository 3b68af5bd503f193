"""``lenet-native export (--pretrained HEAD | --weights FILE) DEST``: write a model in the
format DEST's suffix names (the table ``lenet_native.export.WRITERS``).

    $ lenet-native export --pretrained softmax lenet5.onnx
    $ lenet-native export --weights model.npz model.onnx
"""
from __future__ import annotations

from pathlib import Path

from ..export import WRITERS, writer_for
from ..layout import HEADS
from ..pretrained import load_model
from .options import EXIT_OK, CommandError, add_threads, add_weights


def add_arguments(parser) -> None:
    """The options of ``lenet-native export``."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained", choices=HEADS, metavar="HEAD",
                        help="export the shipped model with this head (softmax or rbf)")
    add_weights(source, help="export this .npz weight file")
    parser.add_argument("dest", metavar="DEST",
                        help="output file; its suffix picks the format: " + ", ".join(WRITERS))
    add_threads(parser)


def run(args) -> int:
    """Write the model; exit code 0.

    Raises
    ------
    ValueError
        An unknown suffix (refused before anything is loaded).
    CommandError
        A missing output folder, DEST a folder, or an optional extra the format needs.
    """
    dest = Path(args.dest)
    writer = writer_for(dest)              # an unknown suffix is refused before any loading
    if not (dest.parent if str(dest.parent) else Path(".")).is_dir():
        raise CommandError(f"{dest.parent}: output folder does not exist")
    if dest.is_dir():
        raise CommandError(f"{dest}: is a folder; DEST must be a file name")
    model = load_model(args.weights, head=args.pretrained or "softmax", threads=args.threads)
    try:
        writer(model, dest)
    except ImportError as exc:             # an optional extra the format needs
        raise CommandError(str(exc)) from None
    print(f"wrote {dest} ({model.head} head, {dest.suffix.lower()[1:]})")
    return EXIT_OK
