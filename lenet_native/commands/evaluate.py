"""``lenet-native eval MODEL.npz``: the error rate of a weight file on an MNIST split."""
from __future__ import annotations

from ..model import LeNet5
from ..training import evaluate
from .options import add_data, add_threads, load_split, positive_int


def add_arguments(parser) -> None:
    """MODEL.npz, ``--data``, ``--split``, ``--threads``, ``--batch-size``."""
    parser.add_argument("model", metavar="MODEL.npz", help="weight file")
    add_data(parser)
    parser.add_argument("--split", choices=("train", "test"), default="test", help="default test")
    add_threads(parser)
    parser.add_argument("--batch-size", type=positive_int, default=2000)


def run(args) -> int:
    """Print the error rate, the loss and the speed of ``args.model`` on ``args.split``."""
    model = LeNet5.load(args.model, threads=args.threads)
    x, y = load_split(args.data, args.split)
    r = evaluate(model, x, y, batch_size=args.batch_size)
    print(f"{args.split} error {100 * r['error']:.2f}% ({r['errors']}/{r['n']} wrong)  "
          f"n={r['n']}  loss {r['loss']:.4f}  {r['images_per_second']:.0f} images/s  "
          f"({model.head} head)")
    return 0
