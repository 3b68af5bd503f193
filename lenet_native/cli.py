"""The ``lenet-native`` command line (also ``python -m lenet_native``).

    lenet-native summary [--head softmax|rbf]
    lenet-native train --data DIR --out model.npz [--epochs N --optimizer sgd|sdlm --head ...]
    lenet-native eval MODEL.npz --data DIR [--split test]

Subcommands are registered in a table; to add one, write a function that adds its
arguments to an argparse parser and a function that runs it and returns the exit code::

    def _bench_arguments(p):
        p.add_argument("--n", type=int, default=1000)

    @subcommand("bench", help="time the kernels", arguments=_bench_arguments)
    def _bench(args) -> int:
        ...
        return 0

A command reports a user error by raising :class:`CommandError` (or FileNotFoundError /
ValueError / TypeError / OSError): main prints ``lenet-native: error: <message>`` on one
line to stderr and returns 2, without a traceback. Ctrl-C returns 130.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

PROG = "lenet-native"
EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


@dataclass
class Subcommand:
    name: str
    run: Callable[[argparse.Namespace], Optional[int]]
    help: str
    arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    description: Optional[str] = None


COMMANDS: dict = {}


def register_command(name, run, *, help, arguments=None, description=None):
    """Add (or replace) a subcommand: ``run(args) -> exit code`` (None counts as 0),
    ``arguments(parser)`` adds its options."""
    COMMANDS[name] = Subcommand(name, run, help, arguments, description)
    return run


def subcommand(name, *, help, arguments=None, description=None):
    """Decorator form of :func:`register_command`."""
    def deco(run):
        return register_command(name, run, help=help, arguments=arguments, description=description)
    return deco


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog=PROG, description="LeNet-5 (LeCun et al. 1998) with C kernels: inspect, train, "
                               "evaluate.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help)
        if cmd.arguments is not None:
            cmd.arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def _one_line(message) -> str:
    return " ".join(str(message).split()) or "unknown error"


def error(message) -> int:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr)
    return EXIT_ERROR


def main(argv=None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
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


# ----------------------------------------------------------------------------- helpers


def _int_at_least(minimum, what):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


positive_int = _int_at_least(1, "a positive integer")
nonnegative_int = _int_at_least(0, "an integer >= 0")


def finite_float(text):
    import math
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def load_split(data, split, limit=None):
    """(uint8 images, labels) of an MNIST split in folder ``data``; FileNotFoundError /
    ValueError with the file name if it is missing or malformed."""
    from .datasets import load_mnist
    images, labels = load_mnist(data, split=split)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


# ----------------------------------------------------------------------------- summary


def _summary_arguments(p):
    p.add_argument("--head", choices=("softmax", "rbf"), default="softmax",
                   help="output layer (default softmax; rbf = the paper's)")


@subcommand("summary", help="print the layer table (shapes, parameters, connections)",
            arguments=_summary_arguments)
def _summary(args):
    from .model import LeNet5
    print(LeNet5(head=args.head, seed=0, threads=1).summary())
    return EXIT_OK


# ----------------------------------------------------------------------------- train


def _train_arguments(p):
    from .train import SCHEDULES
    p.add_argument("--data", required=True, metavar="DIR",
                   help="folder holding the four MNIST IDX files (.gz or not)")
    p.add_argument("--out", required=True, metavar="MODEL.npz",
                   help="model file, rewritten after every epoch; MODEL.state.npz and "
                        "MODEL.history.json are written beside it")
    p.add_argument("--epochs", type=positive_int, default=20, help="default 20")
    p.add_argument("--optimizer", choices=("sgd", "sdlm"), default="sgd",
                   help="sgd (minibatch, momentum) or sdlm (the paper's per-sample "
                        "diagonal Levenberg-Marquardt); default sgd")
    p.add_argument("--head", choices=("softmax", "rbf"), default="softmax",
                   help="default softmax")
    p.add_argument("--batch-size", type=positive_int, default=64, help="sgd batch (default 64)")
    p.add_argument("--lr", type=finite_float, default=None,
                   help="base learning rate (sdlm: eta of passes 1-2); default per optimizer "
                        "and head")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default=None,
                   help="default cosine for sgd, paper for sdlm")
    p.add_argument("--momentum", type=finite_float, default=0.9, help="sgd (default 0.9)")
    p.add_argument("--weight-decay", type=finite_float, default=None,
                   help="sgd L2 weight decay (default 5e-4; must be 0 for sdlm)")
    p.add_argument("--mu", type=finite_float, default=None,
                   help="sdlm mu (default 1.0 for rbf, 0.1 for softmax; the paper's 0.02 "
                        "diverges here, see lenet_native.train.train)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the initial weights and of the shuffling (default 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads of the C kernels (default $LENET_NATIVE_THREADS or all CPUs)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="train on the first N training images only")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out's checkpoint (same settings; bit-exact)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--distort", action="store_true",
                   help="train on randomly distorted digits as in the paper (translation, scaling, "
                        "squeezing, horizontal shearing), drawn afresh every epoch")


@subcommand("train", help="train on MNIST, checkpointing every epoch",
            arguments=_train_arguments)
def _train(args):
    from pathlib import Path

    from .model import LeNet5
    from .train import checkpoint_paths, train

    out = Path(args.out)
    if not out.parent.is_dir():
        raise CommandError(f"{out.parent}: output folder does not exist")
    if out.is_dir():
        raise CommandError(f"{out}: is a folder; --out must be a file name like model.npz")
    done = None
    if args.resume:
        if not out.exists():
            raise CommandError(f"{out}: no checkpoint to resume from")
        done = LeNet5.load(out).meta.get("training", {}).get("epochs_done")
    x, y = load_split(args.data, "train", args.limit)
    xt, yt = load_split(args.data, "test")
    model = LeNet5(head=args.head, seed=args.seed, threads=args.threads)
    paths = checkpoint_paths(out)
    print(f"training LeNet-5 ({args.head} head, {args.optimizer}) on {len(x)} images, "
          f"testing on {len(xt)}; {model.threads} thread(s)", flush=True)
    if done is not None:
        print(f"resuming from {out} after epoch {done}", flush=True)

    def report(rec, _model):
        print(f"epoch {rec['epoch']:3d}/{args.epochs}  loss {rec['train_loss']:.4f}  "
              f"train err {_pct(rec['train_error'])}  test err {_pct(rec['test_error'])}  "
              f"{rec['seconds']:.1f} s  {rec['images_per_second']:.0f} img/s  "
              f"lr {rec['lr']:.3g}", flush=True)

    t0 = time.perf_counter()
    history = train(model, x, y, xt, yt, epochs=args.epochs, optimizer=args.optimizer,
                    batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, lr_schedule=args.lr_schedule,
                    mu=args.mu, seed=args.seed,
                    threads=args.threads, checkpoint=out, resume=args.resume,
                    progress=not args.no_progress, on_epoch=report,
                    distort=_distorter(args.distort))
    if history.interrupted:
        if history:
            print(f"{PROG}: interrupted; the {len(history)} completed epoch(s) are saved in "
                  f"{out} (continue with --resume)", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first epoch finished; nothing saved",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    last = history[-1] if history else None
    print(f"saved {out} and {paths['history']} ({time.perf_counter() - t0:.0f} s)")
    if last is not None:
        print(f"final test error {_pct(last['test_error'])}")
    return EXIT_OK


def _distorter(enabled):
    if not enabled:
        return None
    from .distort import make_distorter
    return make_distorter()


# ----------------------------------------------------------------------------- eval


def _eval_arguments(p):
    p.add_argument("model", metavar="MODEL.npz", help="weight file")
    p.add_argument("--data", required=True, metavar="DIR", help="folder holding the MNIST files")
    p.add_argument("--split", choices=("train", "test"), default="test", help="default test")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=2000)


@subcommand("eval", help="error rate of a weight file on an MNIST split",
            arguments=_eval_arguments)
def _eval(args):
    from .model import LeNet5
    from .train import evaluate

    model = LeNet5.load(args.model, threads=args.threads)
    x, y = load_split(args.data, args.split)
    r = evaluate(model, x, y, batch_size=args.batch_size)
    print(f"{args.split} error {100 * r['error']:.2f}% ({r['errors']}/{r['n']} wrong)  "
          f"n={r['n']}  loss {r['loss']:.4f}  {r['images_per_second']:.0f} images/s  "
          f"({model.head} head)")
    return EXIT_OK


# ----------------------------------------------------------------------------- demo, predict, bench
# (their code lives beside what they use; the table above only names them)


def _register_lazily(name, module, arguments, run, help):
    """Register a subcommand whose module is imported only when it runs or adds options."""
    import importlib

    def add(p):
        getattr(importlib.import_module(f"lenet_native.{module}"), arguments)(p)

    def call(args):
        return getattr(importlib.import_module(f"lenet_native.{module}"), run)(args)

    register_command(name, call, help=help, arguments=add)


_register_lazily("demo", "demo", "add_demo_arguments", "demo_main",
                 "classify MNIST digits with the shipped model; speed of native vs reference")
_register_lazily("predict", "images", "add_predict_arguments", "predict_main",
                 "classify image files (PNG/JPEG with Pillow, .npy, IDX)")
_register_lazily("bench", "bench", "add_bench_arguments", "bench_main",
                 "images/s of native, the NumPy reference, and PyTorch / ONNX Runtime if installed")
_register_lazily("show", "plots", "add_show_arguments", "show_main",
                 "draw a figure (activations, kernels, table, prototypes, errors, confusion, "
                 "history) to PNG/SVG/PDF; needs matplotlib")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
