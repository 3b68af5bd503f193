"""``lenet-native export (--pretrained HEAD | --weights FILE) DEST``: write a model in the
format named by DEST's suffix.

The formats are one table, ``WRITERS``: suffix -> "module:function", the function called as
``function(model, path)`` and imported only when its format is asked for (so an optional
extra is needed only by its own format). A new format is one line here.
"""
from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["WRITERS", "write", "writer_for", "write_npz", "add_export_arguments", "export_main"]

WRITERS = {
    ".npz": "lenet_native.export:write_npz",      # the weight interchange file (LeNet5.save)
    ".onnx": "lenet_native.interop:to_onnx",      # ONNX graph, opset 17 (extra: onnx)
}


def write_npz(model, path) -> None:
    """Write the .npz weight file (the interchange format ``LeNet5.load`` reads)."""
    model.save(path)


def writer_for(path):
    """The writer of ``path``'s suffix (its module imported); ValueError naming the known
    suffixes for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise ValueError(f"{path}: unknown format {suffix or '(no suffix)'!r}; the file name must "
                         f"end in one of {', '.join(WRITERS)}")
    module, function = WRITERS[suffix].split(":")
    return getattr(importlib.import_module(module), function)


def write(model, path) -> None:
    """Write ``model`` to ``path`` in the format its suffix names (see ``WRITERS``)."""
    writer_for(path)(model, path)


def add_export_arguments(parser) -> None:
    """Options of `lenet-native export` on an argparse parser."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained", choices=("softmax", "rbf"), metavar="HEAD",
                        help="export the shipped model with this head (softmax or rbf)")
    source.add_argument("--weights", metavar="FILE", help="export this .npz weight file")
    parser.add_argument("dest", metavar="DEST",
                        help="output file; its suffix picks the format: " + ", ".join(WRITERS))


def export_main(args) -> int:
    """Run `lenet-native export`; exit status 0."""
    from .pretrained import load_model

    dest = Path(args.dest)
    writer = writer_for(dest)              # an unknown suffix is refused before any loading
    if not (dest.parent if str(dest.parent) else Path(".")).is_dir():
        raise FileNotFoundError(f"{dest.parent}: output folder does not exist")
    if dest.is_dir():
        raise IsADirectoryError(f"{dest}: is a folder; DEST must be a file name")
    model = load_model(args.weights, head=args.pretrained or "softmax", threads=1)
    try:
        writer(model, dest)
    except ImportError as exc:             # an optional extra the format needs
        from .cli import CommandError
        raise CommandError(str(exc)) from None
    print(f"wrote {dest} ({model.head} head, {dest.suffix.lower()[1:]})")
    return 0
