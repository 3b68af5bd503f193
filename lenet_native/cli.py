"""The ``lenet-native`` command line (also ``python -m lenet_native``).

    lenet-native summary [--head softmax|rbf]
    lenet-native train --out MODEL.npz [--data DIR] [--epochs N --optimizer sgd|sdlm ...]
    lenet-native eval MODEL.npz [--data DIR] [--split test|train]
    lenet-native demo [--data DIR] [--weights MODEL.npz | --head softmax|rbf]
    lenet-native predict FILE... [--weights MODEL.npz | --head softmax|rbf] [--show]
    lenet-native bench [--batches 1,64,1024] [--engines native,reference,torch,onnxruntime]
    lenet-native export (--pretrained HEAD | --weights MODEL.npz) DEST.onnx|DEST.npz
    lenet-native show WHAT --out FILE [FILE...] [--index I] [--weights MODEL.npz | --head H]

``lenet-native --help`` lists the commands, ``lenet-native COMMAND --help`` their options.
MNIST is found with ``--data DIR``, else in $LENET_NATIVE_DATA, else in the download
cache (lenet_native.datasets.find_mnist).

Every command is one entry of :data:`COMMANDS`: its one-line help and two functions,
``add_arguments(parser)`` and ``run(args) -> exit code``; lenet_native.commands says how to
add one and holds the options commands share. A command reports a user error by raising
``CommandError`` (or FileNotFoundError / ValueError / TypeError / OSError): :func:`main`
prints ``lenet-native: error: <message>`` on one line to stderr and returns 2, without a
traceback. Usage errors (argparse) also return 2; Ctrl-C returns 130.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Optional

from . import __version__, bench, demo
from .commands import evaluate, export, predict, show, summary
from .commands import train as train_command
from .commands.options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, PROG, CommandError

__all__ = ["main", "build_parser", "Command", "COMMANDS", "CommandError", "PROG"]


@dataclass(frozen=True)
class Command:
    """One subcommand of ``lenet-native``.

    Attributes
    ----------
    help : str
        One line, shown by ``lenet-native --help``.
    add_arguments : callable
        ``add_arguments(parser)`` adds the command's options to an argparse parser.
    run : callable
        ``run(args) -> int or None``: the exit code (None counts as 0).
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Optional[int]]


#: The commands, by name, in the order ``lenet-native --help`` lists them.
COMMANDS = {
    "summary": Command("print the layer table (shapes, parameters, connections)",
                       summary.add_arguments, summary.run),
    "train": Command("train on MNIST, checkpointing every epoch",
                     train_command.add_arguments, train_command.run),
    "eval": Command("error rate of a weight file on an MNIST split",
                    evaluate.add_arguments, evaluate.run),
    "demo": Command("classify MNIST digits with the shipped model; speed of native vs reference",
                    demo.add_demo_arguments, demo.demo_main),
    "predict": Command("classify image files (PNG/JPEG with Pillow, .npy, IDX)",
                       predict.add_arguments, predict.run),
    "bench": Command("images/s of native, the NumPy reference, and PyTorch / ONNX Runtime "
                     "if installed", bench.add_bench_arguments, bench.bench_main),
    "export": Command("write a model in the format DEST's suffix names (.npz, .onnx)",
                      export.add_arguments, export.run),
    "show": Command("draw a figure (activations, kernels, table, prototypes, errors, confusion, "
                    "history) to PNG/SVG/PDF; needs matplotlib", show.add_arguments, show.run),
}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``lenet-native``, one subparser per entry of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="LeNet-5 (LeCun et al. 1998) with C kernels: inspect, train, "
                               "evaluate, classify, benchmark.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def _one_line(message) -> str:
    return " ".join(str(message).split()) or "unknown error"


def error(message) -> int:
    """Print ``lenet-native: error: <message>`` on one line to stderr; returns 2."""
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def main(argv=None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit code (the console script exits with it): 0, 2 for an error, 130 for
        Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help, --version, usage errors (argparse printed them)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_ERROR)
    try:
        code = args._command.run(args)
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CommandError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError, ValueError, TypeError) as exc:
        return error(exc)
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return error(f"{where}{exc.strerror or exc}")
    return EXIT_OK if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
