"""``lenet-native train``: train on MNIST, checkpointing every epoch (lenet_native.training)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..checkpoint import checkpoint_paths
from ..distort import make_distorter
from ..model import LeNet5
from ..training import OPTIMIZERS, SCHEDULES, train
from .options import (EXIT_INTERRUPTED, PROG, CommandError, add_data, add_head, add_threads,
                      finite_float, load_split, nonnegative_int, positive_int)


def add_arguments(parser) -> None:
    """The options of ``lenet-native train``: the arguments of lenet_native.training.train."""
    add_data(parser)
    parser.add_argument("--out", required=True, metavar="MODEL.npz",
                        help="model file, rewritten after every epoch; MODEL.state.npz and "
                             "MODEL.history.json are written beside it")
    parser.add_argument("--epochs", type=positive_int, default=20, help="default 20")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                        help="sgd (minibatch, momentum) or sdlm (the paper's per-sample "
                             "diagonal Levenberg-Marquardt); default sgd")
    add_head(parser)
    parser.add_argument("--batch-size", type=positive_int, default=64,
                        help="sgd batch (default 64)")
    parser.add_argument("--lr", type=finite_float, default=None,
                        help="base learning rate (sdlm: eta of passes 1-2); default per "
                             "optimizer and head")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default=None,
                        help="default cosine for sgd, paper for sdlm")
    parser.add_argument("--momentum", type=finite_float, default=0.9, help="sgd (default 0.9)")
    parser.add_argument("--weight-decay", type=finite_float, default=None,
                        help="sgd L2 weight decay (default 5e-4; must be 0 for sdlm)")
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
                    distort=make_distorter() if args.distort else None)
    if history.interrupted:
        if history:
            print(f"{PROG}: interrupted; the {len(history)} completed epoch(s) "
                  f"are saved in {out} (continue with --resume)", file=sys.stderr)
        else:
            print(f"{PROG}: interrupted before the first epoch finished; "
                  f"nothing saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    last = history[-1] if history else None
    print(f"saved {out} and {paths['history']} ({time.perf_counter() - t0:.0f} s)")
    if last is not None:
        print(f"final test error {_pct(last['test_error'])}")
    return 0
