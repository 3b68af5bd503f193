"""``lenet-native eval MODEL``: the error rate of a weight file (.npz or .lenet) on an MNIST split."""
from __future__ import annotations

import time

import numpy as np

from ..lenet_format import is_lenet_path
from ..model import LeNet5
from ..training import evaluate
from ..weights import read_archive
from .options import add_data, add_precision, add_threads, load_split, positive_int


def add_arguments(parser) -> None:
    """MODEL, ``--data``, ``--split``, ``--threads``, ``--batch-size``, ``--precision``."""
    parser.add_argument("model", metavar="MODEL", help="weight file: .npz (fp32, or int8 from "
                                                       "lenet_native.quantize) or .lenet")
    add_data(parser)
    parser.add_argument("--split", choices=("train", "test"), default="test", help="default test")
    add_threads(parser)
    parser.add_argument("--batch-size", type=positive_int, default=2000)
    add_precision(parser, help="int8: quantize the fp32 model on the shipped calibration "
                               "digits first (an int8 file is always evaluated as int8)")


def run(args) -> int:
    """Print the error rate, the loss and the speed of ``args.model`` on ``args.split``."""
    # an int8 model is an .npz whose meta says so (.lenet files hold fp32 models only)
    int8_file = (not is_lenet_path(args.model)
                 and read_archive(args.model)[1].get("precision", "fp32") == "int8")
    if int8_file or args.precision == "int8":
        from ..quantize import QuantizedLeNet5
        if int8_file:
            q = QuantizedLeNet5.load(args.model, threads=args.threads)
        else:
            q = LeNet5.load(args.model, threads=args.threads).quantize()
        x, y = load_split(args.data, args.split)
        t = time.perf_counter()
        pred = np.concatenate([q.predict(x[i:i + args.batch_size])
                               for i in range(0, len(x), args.batch_size)] or [np.zeros(0, np.int64)])
        sec = time.perf_counter() - t
        wrong = int((pred != y).sum())
        print(f"{args.split} error {100 * wrong / max(len(y), 1):.2f}% ({wrong}/{len(y)} wrong)  "
              f"n={len(y)}  {len(y) / max(sec, 1e-9):.0f} images/s  ({q.head} head, int8 {q.isa})")
        return 0
    model = LeNet5.load(args.model, threads=args.threads)
    x, y = load_split(args.data, args.split)
    r = evaluate(model, x, y, batch_size=args.batch_size)
    print(f"{args.split} error {100 * r['error']:.2f}% ({r['errors']}/{r['n']} wrong)  "
          f"n={r['n']}  loss {r['loss']:.4f}  {r['images_per_second']:.0f} images/s  "
          f"({model.head} head)")
    return 0
