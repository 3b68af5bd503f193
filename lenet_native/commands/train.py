"""``lenet-native train``: train on MNIST, checkpointing every epoch (lenet_native.training)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..checkpoint import checkpoint_paths
from ..distort import make_distorter
from ..model import INITS, LeNet5
from ..recipes import DEFAULT_RECIPE, RECIPES, recipe
from ..training import OPTIMIZERS, SCHEDULES, train
from .options import (EXIT_INTERRUPTED, PROG, CommandError, add_data, add_head, add_threads,
                      finite_float, load_split, nonnegative_int, positive_int)


def add_arguments(parser) -> None:
    """The options of ``lenet-native train``: the arguments of lenet_native.training.train."""
    add_data(parser)
    parser.add_argument("--out", required=True, metavar="MODEL.npz",
                        help="model file, rewritten after every epoch; MODEL.state.npz and "
                             "MODEL.history.json are written beside it")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=DEFAULT_RECIPE,
                        help="sgd settings (lenet_native.recipes; each option below overrides "
                             "its value): fast (default: 5 epochs, batch 128, warm-up + linear "
                             "decay per step, +-1/sqrt(fan-in) init, 1 px random shifts; about "
                             "0.8-1.0 %% test error) or best (20 epochs, batch 64, cosine, the "
                             "paper's init; about 0.8 %%, 4x longer)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="default: the recipe's (sdlm: 20)")
    parser.add_argument("--target-error", type=finite_float, default=None, metavar="PCT",
                        help="stop after the first epoch whose test error is <= PCT percent")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd (minibatch, momentum) or sdlm (the paper's per-sample "
                             "diagonal Levenberg-Marquardt); default sgd")
    add_head(parser)
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="sgd batch (default: the recipe's)")
    parser.add_argument("--lr", type=finite_float, default=None,
                        help="base learning rate (sdlm: eta of passes 1-2); default per "
                             "optimizer and head")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default=None,
                        help="default: the recipe's for sgd, paper for sdlm")
    parser.add_argument("--warmup", type=finite_float, default=None,
                        help="sgd, --lr-schedule linear: warm-up fraction of all steps "
                             "(default: the recipe's)")
    parser.add_argument("--momentum", type=finite_float, default=None,
                        help="sgd (default: the recipe's, 0.9)")
    parser.add_argument("--weight-decay", type=finite_float, default=None,
                        help="sgd L2 weight decay (default: the recipe's, 5e-4; must be 0 for "
                             "sdlm)")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="initialisation: paper (+-2.4/fan-in) or fan_in (+-1/sqrt(fan-in)); "
                             "default: the recipe's (sdlm: paper)")
    parser.add_argument("--shift", type=nonnegative_int, default=None,
                        help="sgd: place each training digit up to N (0-2) px off centre "
                             "(default: the recipe's)")
    parser.add_argument("--mu", type=finite_float, default=None,
                        help="sdlm mu (default 1.0 for rbf, 0.1 for softmax; the paper's 0.02 "
                             "diverges here, see docs/sdlm.md)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed of the initial weights and of the shuffling (default 0)")
    add_threads(parser)
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="train on the first N training images only")
    parser.add_argument("--resume", action="store_true",
                        help="continue from --out's checkpoint (same settings; bit-exact)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--distort", action="store_true",
                        help="train on randomly distorted digits as in the paper (translation, "
                             "scaling, squeezing, horizontal shearing), drawn afresh every epoch")


def _pct(v):
    return "-" if v is None else f"{100 * v:.2f}%"


def _settings(args) -> dict:
    """train()'s keyword arguments and the model's init: the recipe's values (sgd), each
    replaced by its option when given."""
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "lr_schedule": args.lr_schedule, "warmup": args.warmup, "momentum": args.momentum,
             "weight_decay": args.weight_decay, "init": args.init, "shift": args.shift}
    if args.optimizer == "sgd":
        base = recipe(args.recipe, args.head)
    else:       # the recipes are sgd settings; sdlm keeps train()'s defaults
        base = {"epochs": 20, "init": "paper"}
    out = {k: (v if v is not None else base.get(k)) for k, v in given.items()}
    return {k: v for k, v in out.items() if v is not None}


def peak_rss_mb():
    """Peak resident memory of this process in MB, or None where it cannot be read.

    Linux: VmHWM of /proc/self/status, the high-water mark of this program's own memory.
    getrusage's ru_maxrss is not used there: Linux carries it across exec, so a process
    started by a large one (a test runner holding PyTorch and a float32 MNIST, say)
    reports its parent's size (697 MB measured, against 106 MB). Elsewhere:
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB; bytes on macOS)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) / 2**10      # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:     # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def run(args) -> int:
    """Train, printing one line per epoch; 130 if interrupted (the completed epochs are
    saved), else 0."""
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
    settings = _settings(args)
    init = settings.pop("init")
    epochs = settings["epochs"]
    model = LeNet5(head=args.head, seed=args.seed, threads=args.threads, init=init)
    paths = checkpoint_paths(out)
    what = f"recipe {args.recipe}, " if args.optimizer == "sgd" else ""
    print(f"training LeNet-5 ({args.head} head, {args.optimizer}, {what}{epochs} epochs) on "
          f"{len(x)} images, testing on {len(xt)}; {model.threads} thread(s)", flush=True)
    if done is not None:
        print(f"resuming from {out} after epoch {done}", flush=True)

    def report(rec, _model):
        print(f"epoch {rec['epoch']:3d}/{epochs}  loss {rec['train_loss']:.4f}  "
              f"train err {_pct(rec['train_error'])}  test err {_pct(rec['test_error'])}  "
              f"{rec['seconds']:.1f} s  {rec['images_per_second']:.0f} img/s  "
              f"lr {rec['lr']:.3g}", flush=True)

    t0 = time.perf_counter()
    target = None if args.target_error is None else args.target_error / 100.0
    history = train(model, x, y, xt, yt, optimizer=args.optimizer, mu=args.mu, seed=args.seed,
                    threads=args.threads, checkpoint=out, resume=args.resume,
                    progress=not args.no_progress, on_epoch=report,
                    distort=make_distorter() if args.distort else None, target_error=target,
                    **settings)
    if history.interrupted:
        if history:
            print(f"{PROG}: interrupted; the {len(history)} completed epoch(s) "
                  f"are saved in {out} (continue with --resume)", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first epoch finished; "
                  f"nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    last = history[-1] if history else None
    if last is not None and last.get("target_reached"):
        print(f"reached the target test error {args.target_error:g}% after epoch {last['epoch']}")
    print(f"saved {out} and {paths['history']} ({time.perf_counter() - t0:.1f} s)")
    if last is not None:
        print(f"final test error {_pct(last['test_error'])}")
    peak = peak_rss_mb()
    if peak is not None:
        print(f"peak memory (resident) {peak:.0f} MB")
    return 0
