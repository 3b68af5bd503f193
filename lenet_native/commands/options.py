"""What the commands share: the options defined once, argparse value types, CommandError.

Every command that takes one of these options takes it from here, so it is spelled,
parsed and validated the same way everywhere:

``--threads N``   threads of the C kernels, an integer in 1..MAX_THREADS (default: None,
                  meaning $LENET_NATIVE_THREADS or the CPU count)
``--head H``      one of layout.HEADS (default softmax)
``--data DIR``    the folder holding the MNIST IDX files (default: None; for the commands
                  that need MNIST, None searches $LENET_NATIVE_DATA, then the download
                  cache: ``datasets.find_mnist``)
``--weights F``   a .npz weight file instead of the shipped pretrained model
``--out FILE``    (or another flag) a figure file, .png/.svg/.pdf (lenet_native.plots)
``--precision P`` fp32 (default) or int8 (the model quantized, lenet_native.quantize)
"""
from __future__ import annotations

import argparse
import math

from ..checks import MAX_THREADS
from ..datasets import ENV_VAR, load_mnist
from ..layout import HEADS

__all__ = ["PROG", "EXIT_OK", "EXIT_ERROR", "EXIT_INTERRUPTED", "CommandError", "int_in",
           "positive_int", "nonnegative_int", "thread_count", "finite_float", "add_threads",
           "add_head", "add_data", "add_weights", "add_figure", "add_precision", "load_split"]


PROG = "lenet-native"
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------- value types


def int_in(minimum, maximum=None, what=None):
    """An argparse type: an integer in ``minimum``..``maximum`` (no upper bound if None).

    Parameters
    ----------
    minimum : int
    maximum : int, optional
    what : str, optional
        What the error message says was expected; default "an integer >= minimum" or
        "an integer in minimum..maximum".

    Returns
    -------
    callable
        ``parse(text) -> int``, raising argparse.ArgumentTypeError (a usage error).
    """
    if what is None:
        what = (f"an integer >= {minimum}" if maximum is None
                else f"an integer in {minimum}..{maximum}")

    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < minimum or (maximum is not None and v > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


positive_int = int_in(1, what="a positive integer")
nonnegative_int = int_in(0, what="an integer >= 0")
thread_count = int_in(1, MAX_THREADS)


def finite_float(text) -> float:
    """An argparse type: a finite number."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


# ----------------------------------------------------------------------------- options

THREADS_HELP = "threads of the C kernels (default $LENET_NATIVE_THREADS or all CPUs)"
DATA_HELP = (f"folder holding the MNIST IDX files (.gz or not); default ${ENV_VAR}, "
             f"then the download cache")


def add_threads(parser, help: str = THREADS_HELP) -> None:
    """``--threads N``: :data:`thread_count`, default None (the library's default)."""
    parser.add_argument("--threads", type=thread_count, default=None, metavar="N", help=help)


def add_head(parser, help: str = "output layer: softmax (default) or rbf (the paper's)") -> None:
    """``--head {softmax,rbf}``: one of layout.HEADS, default softmax."""
    parser.add_argument("--head", choices=HEADS, default="softmax", help=help)


def add_precision(parser, help: str = "fp32 (default) or int8: the model quantized on the "
                                        "shipped calibration digits") -> None:
    """``--precision {fp32,int8}``, default fp32."""
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help=help)


def add_data(parser, help: str = DATA_HELP) -> None:
    """``--data DIR``, default None (what None means is the command's: see the module
    docstring)."""
    parser.add_argument("--data", metavar="DIR", default=None, help=help)


def add_weights(parser, help: str) -> None:
    """``--weights MODEL.npz``, default None (the shipped pretrained model)."""
    parser.add_argument("--weights", metavar="MODEL.npz", default=None, help=help)


FIGURE_HELP = "the figure file: .png, .svg or .pdf by its suffix (needs matplotlib)"


def add_figure(parser, flag: str = "--out", help: str = FIGURE_HELP,
               required: bool = False) -> None:
    """``--out FILE`` (or ``flag``): a figure file, default None. Its suffix and folder are
    checked when the command runs (lenet_native.plots.check_output), so a bad name is
    reported as one error line like every other user error."""
    parser.add_argument(flag, metavar="FILE", default=None, required=required, help=help)


def load_split(data, split, limit=None):
    """An MNIST split for a command.

    Parameters
    ----------
    data : str or None
        ``--data``; None searches $LENET_NATIVE_DATA, then the download cache.
    split : {"train", "test"}
    limit : int, optional
        Keep the first ``limit`` images only.

    Returns
    -------
    (images, labels)
        uint8 (N, 28, 28), uint8 (N,).

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the folder or file, if a file is missing or malformed.
    """
    images, labels = load_mnist(data, split=split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels
