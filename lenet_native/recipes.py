"""Named training recipes: the settings of :func:`lenet_native.training.train` (and of the
model's initialisation) that ``lenet-native train --recipe NAME`` uses.

* ``fast`` (the CLI's default): tuned for the time to 1.00 % MNIST test error, measured
  in docs/training.md: 5 epochs of SGD, batch 128, momentum 0.9, weight decay 5e-4, the
  learning rate warmed up linearly over the first 10 % of the steps then decayed linearly
  to 0 at the last step (per step, not per epoch), the weights initialised uniform in
  +-1/sqrt(fan-in) (the paper's +-2.4/fan-in starts 2-3x slower), and each training digit
  placed up to 1 px off centre in its 32x32 frame (a random translation drawn per digit
  by the C gather: no extra pass). Base lr 0.15 (softmax head), 0.006 (rbf head).
* ``best``: the lowest-error recipe, the project's earlier default kept bit for bit:
  20 epochs, batch 64, cosine decay per epoch from lr 0.1 (softmax) / 0.002 (rbf), momentum
  0.9, weight decay 5e-4, the paper's initialisation, no translation.

Every value is only a default: an explicit option (``--epochs``, ``--lr``, ...) overrides it.
"""
from __future__ import annotations

__all__ = ["RECIPES", "DEFAULT_RECIPE", "recipe"]

DEFAULT_RECIPE = "fast"

RECIPES = {
    "fast": {
        "epochs": 5, "batch_size": 128, "lr": {"softmax": 0.15, "rbf": 0.006},
        "lr_schedule": "linear", "warmup": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
        "init": "fan_in", "shift": 1,
    },
    "best": {
        "epochs": 20, "batch_size": 64, "lr": {"softmax": 0.1, "rbf": 0.002},
        "lr_schedule": "cosine", "warmup": 0.0, "momentum": 0.9, "weight_decay": 5e-4,
        "init": "paper", "shift": 0,
    },
}


def recipe(name: str, head: str) -> dict:
    """The settings of recipe ``name`` for ``head`` ("softmax" or "rbf"), lr resolved:
    ``{"epochs", "batch_size", "lr", "lr_schedule", "warmup", "momentum", "weight_decay",
    "init", "shift"}``. ValueError for an unknown recipe or head."""
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}; got {name!r}")
    if head not in ("softmax", "rbf"):
        raise ValueError(f"head must be 'softmax' or 'rbf'; got {head!r}")
    r = dict(RECIPES[name])
    r["lr"] = r["lr"][head]
    return r
