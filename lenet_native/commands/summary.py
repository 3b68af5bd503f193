"""``lenet-native summary``: the layer table of LeNet-5."""
from __future__ import annotations

from ..model import LeNet5
from .options import add_head


def add_arguments(parser) -> None:
    """``--head``."""
    add_head(parser)


def run(args) -> int:
    """Print ``LeNet5.summary()`` for ``args.head``."""
    print(LeNet5(head=args.head, seed=0, threads=1).summary())
    return 0
