"""The pretrained LeNet-5 weights shipped inside the package.

    >>> from lenet_native.pretrained import load_pretrained
    >>> model = load_pretrained()            # softmax head
    >>> model.predict(digits)                # uint8 (N, 28, 28) MNIST-style digits
    >>> model.meta["training"]               # how it was trained: command, seed, error curve

The files live in ``lenet_native/data/lenet5_<head>.npz`` (the interchange format of
``LeNet5.save``) and are read through importlib.resources, so they work from a wheel, an
editable install or a zip.
"""
from __future__ import annotations

from importlib import resources

from .model import HEADS, LeNet5

__all__ = ["load_pretrained", "available_heads", "pretrained_path", "weight_file_name"]


def weight_file_name(head: str) -> str:
    return f"lenet5_{head}.npz"


def _resource(head):
    return resources.files("lenet_native").joinpath("data", weight_file_name(head))


def available_heads() -> tuple:
    """The heads whose pretrained weights this installation ships, e.g. ("softmax", "rbf")."""
    return tuple(h for h in HEADS if _resource(h).is_file())


def _check_head(head):
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(map(repr, HEADS))}; got {head!r}")
    if not _resource(head).is_file():
        shipped = available_heads()
        have = ", ".join(repr(h) for h in shipped) if shipped else "none"
        raise ValueError(f"no pretrained weights for the {head!r} head are shipped with "
                         f"lenet_native (missing lenet_native/data/{weight_file_name(head)}); "
                         f"pretrained heads available: {have}")


def pretrained_path(head: str = "softmax"):
    """A context manager giving a real file path of the shipped weight file of ``head``."""
    _check_head(head)
    return resources.as_file(_resource(head))


def load_pretrained(head: str = "softmax", threads=None) -> LeNet5:
    """The shipped pretrained LeNet-5 with the given output head ("softmax" or "rbf").

    ValueError, naming the head, if this installation ships no weights for it. The
    model's ``meta["training"]`` records how it was trained and its test error.
    """
    _check_head(head)
    with resources.as_file(_resource(head)) as path:
        return LeNet5.load(path, threads=threads)


def add_model_arguments(parser, weights_help: str) -> None:
    """--head and --weights, the model choice of the demo and predict commands (see
    load_model)."""
    parser.add_argument("--head", choices=("softmax", "rbf"), default="softmax",
                        help="which pretrained model (default softmax)")
    parser.add_argument("--weights", metavar="MODEL.npz", default=None, help=weights_help)


def load_model(weights=None, head: str = "softmax", threads=None) -> LeNet5:
    """A weight file if one is given, else the shipped model with that head (the choice the
    demo and predict commands offer with --weights / --head)."""
    if weights:
        return LeNet5.load(weights, threads=threads)
    return load_pretrained(head, threads=threads)
