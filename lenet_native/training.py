"""Training LeNet-5: minibatch SGD with momentum, or the paper's stochastic diagonal
Levenberg-Marquardt (SDLM), with per-epoch checkpoints, exact resume and clean Ctrl-C.

    >>> from lenet_native import LeNet5, datasets, evaluate, train
    >>> x, y = datasets.load_mnist(split="train"); xt, yt = datasets.load_mnist(split="test")
    >>> model = LeNet5(head="softmax", seed=0)
    >>> history = train(model, x, y, xt, yt, epochs=20, checkpoint="lenet5.npz")
    >>> evaluate(model, xt, yt)["error"]

The package exports :func:`train` and :func:`evaluate` (``lenet_native.train``); the
module's other names come from here: ``from lenet_native.training import History,
lr_factor``. The files of a checkpoint and how they are written: lenet_native.checkpoint.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
import os
import signal
import sys
import threading
import time

import numpy as np

from . import _core
from . import checkpoint as ckpt
from .checks import as_input, as_labels, check_int, check_real, check_threads, to_array
from .layout import C3_IN, C3_OUT, param_vector, trainable_mask
from .model import LeNet5

__all__ = ["train", "evaluate", "History", "lr_factor",
           "OPTIMIZERS", "SCHEDULES", "DEFAULT_LR", "DEFAULT_MU", "PAPER_ETA", "PAPER_MU"]

OPTIMIZERS = ("sgd", "sdlm")
SCHEDULES = ("constant", "step", "cosine", "paper", "linear")

# Base learning rates (lr of the first epoch), chosen by experiment on the full MNIST
# (see the train() docstring). For SDLM, "lr" is eta of passes 1-2: the paper's 0.0005.
DEFAULT_LR = {
    ("sgd", "softmax"): 0.1,
    ("sgd", "rbf"): 0.002,
    ("sdlm", "softmax"): 0.0005,
    ("sdlm", "rbf"): 0.0005,
}
DEFAULT_SCHEDULE = {"sgd": "cosine", "sdlm": "paper"}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "sdlm": 0.0}
# The paper's eta for passes 1..20 (Appendix C): 0.0005 for passes 1-2, 0.0002 for 3-5,
# 0.0001 for 6-8, 0.00005 for 9-12, 0.00001 after.
PAPER_ETA = (0.0005,) * 2 + (0.0002,) * 3 + (0.0001,) * 3 + (0.00005,) * 4 + (0.00001,) * 8
PAPER_MU = 0.02
# SDLM mu per head, not the paper's 0.02, which diverges here (see train()).
DEFAULT_MU = {"softmax": 0.1, "rbf": 1.0}
HESSIAN_SAMPLES = 500
SDLM_SLICE = 2000           # samples per sdlm_epoch call (progress + Ctrl-C granularity)
EVAL_BATCH = 2000


# ----------------------------------------------------------------------------- public helpers


class History(list):
    """The per-epoch records (a list of dicts), plus ``interrupted``: True when training
    stopped on Ctrl-C (KeyboardInterrupt) before the requested number of epochs, and
    ``stopped_early``: True when ``on_epoch`` asked to stop."""

    def __init__(self, records=(), interrupted=False, stopped_early=False):
        super().__init__(records)
        self.interrupted = bool(interrupted)
        self.stopped_early = bool(stopped_early)

    def __repr__(self):
        return (f"History({list.__repr__(self)}, interrupted={self.interrupted}, "
                f"stopped_early={self.stopped_early})")


def lr_factor(schedule, epoch: int, epochs: int) -> float:
    """Multiplier of the base lr for ``epoch`` (0-based) of ``epochs``.

    constant: 1.  step: 1, then x0.1 from 50% of the epochs and x0.01 from 75%.
    cosine: 0.5 (1 + cos(pi epoch / epochs)).  paper: the ratios of the paper's SDLM
    eta table (1, 1, .4, .4, .4, .2, .2, .2, .1 x4, .02 after).  linear: 1 - epoch / epochs
    (the factor at the epoch's start: sgd applies "linear" per step, see
    :func:`linear_step_factor`).  A callable is called as
    ``schedule(epoch, epochs)`` and must return a positive finite number.
    """
    if callable(schedule):
        f = schedule(epoch, epochs)
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(f) or f <= 0:
            raise ValueError(f"lr_schedule({epoch}, {epochs}) returned {f!r}; "
                             f"expected a positive finite number")
        return float(f)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** ((epoch >= epochs * 0.5) + (epoch >= epochs * 0.75))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "paper":
        return PAPER_ETA[min(epoch, len(PAPER_ETA) - 1)] / PAPER_ETA[0]
    if schedule == "linear":
        return 1.0 - epoch / epochs
    raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, SCHEDULES))} or a "
                     f"callable (epoch, epochs) -> factor; got {schedule!r}")


def linear_step_factor(step: int, steps: int, warmup: int) -> float:
    """The "linear" schedule per SGD step: ``(step + 1) / warmup`` for the first ``warmup``
    steps (a linear warm-up), then ``(steps - step) / (steps - warmup)``, down to
    ``1 / (steps - warmup)`` at the last step (0-based ``step`` of ``steps``)."""
    if step < warmup:
        return (step + 1) / warmup
    return (steps - step) / (steps - warmup)


def evaluate(model, images, labels, batch_size: int = EVAL_BATCH, threads=None) -> dict:
    """Error rate and mean loss of ``model`` on a labelled set.

    Parameters
    ----------
    model : LeNet5
    images : array_like
        uint8 MNIST digits (N, 28, 28) or preprocessed float input (N, 32, 32).
    labels : array_like
        Integers 0..9, (N,).
    batch_size : int, default 2000
        Images per forward call.
    threads : int, optional
        Threads of the C kernels; default ``model.threads``.

    Returns
    -------
    dict
        ``{"error": fraction wrong, "loss": mean per-sample loss (the training loss of the
        head), "n": N, "errors": number wrong, "seconds", "images_per_second"}``.
    """
    if not isinstance(model, LeNet5):
        raise TypeError(f"evaluate: model must be a LeNet5, got {type(model).__name__}")
    x = _digits_or_input(images, "evaluate")
    y = as_labels(labels, x.shape[0], "evaluate")
    batch_size = check_int("batch_size", batch_size, 1)
    threads = model.threads if threads is None else check_threads(threads)
    n = x.shape[0]
    if n == 0:
        raise ValueError("evaluate: no images (the error rate of an empty set is undefined)")
    return _evaluate(model, x, y, batch_size, threads)


def _evaluate(model, x, y, batch_size, threads):
    t0 = time.perf_counter()
    errors = 0
    loss_sum = 0.0
    digits = x.dtype == np.uint8       # gathered a chunk at a time (no float copy of the set)
    buf = np.empty((min(batch_size, x.shape[0]), 32, 32), np.float32) if digits else None
    for lo in range(0, x.shape[0], batch_size):
        if digits:
            part = x[lo:lo + batch_size]
            xb = _core.gather_digits(part, out=buf[:part.shape[0]])
        else:
            xb = x[lo:lo + batch_size]
        out = _core.forward(model.params, C3_OUT, C3_IN, model.head, xb, threads)
        yb = y[lo:lo + batch_size]
        losses, _ = _core.loss_forward_backward(model.head, out, yb, 1.0)
        pred = out.argmin(axis=1) if model.head == "rbf" else out.argmax(axis=1)
        errors += int(np.count_nonzero(pred != yb))
        loss_sum += float(np.sum(losses, dtype=np.float64))
    seconds = time.perf_counter() - t0
    n = x.shape[0]
    return {"error": errors / n, "loss": loss_sum / n, "n": n, "errors": errors,
            "seconds": seconds, "images_per_second": n / seconds if seconds > 0 else float("inf")}


# ----------------------------------------------------------------------------- train


def train(model, train_images, train_labels, test_images=None, test_labels=None, *,
          epochs=20, optimizer="sgd", batch_size=64, lr=None, momentum=0.9, weight_decay=None,
          lr_schedule=None, seed=0, threads=None, checkpoint=None, resume=False, progress=True,
          distort=None, on_epoch=None, mu=None, hessian_samples=HESSIAN_SAMPLES, warmup=0.0,
          shift=0, target_error=None) -> History:
    """Train ``model`` in place; return the per-epoch :class:`History`.

    Parameters
    ----------
    model : LeNet5
        Trained in place (its :attr:`~LeNet5.params`); ``model.meta["training"]`` records
        the run.
    train_images : array_like
        uint8 MNIST digits (N, 28, 28), kept as they are (47 MB for MNIST, not 287 MB of
        float32): each batch is padded and normalised as it is taken, by a C gather with
        the bits of :func:`~lenet_native.preprocess`; or float network input (N, 32, 32).
    train_labels : array_like
        Integers 0..9, (N,).
    test_images, test_labels : array_like, optional
        A test set evaluated after every epoch (both or neither); without it the records'
        ``test_error`` / ``test_loss`` are None.
    epochs : int, default 20
    optimizer : {"sgd", "sdlm"}, default "sgd"
        "sgd": minibatch SGD with momentum (``v = momentum v + g + weight_decay w;
        w -= lr v``) on the mean loss of each batch of ``batch_size``; the samples are
        shuffled every epoch by ``numpy.random.default_rng([seed, epoch])``; the last batch
        of an epoch may be smaller. "sdlm": the paper's stochastic diagonal
        Levenberg-Marquardt, one update per sample: before each pass the Gauss-Newton
        diagonal h of the mean loss is estimated on ``hessian_samples`` training samples
        drawn with the epoch's generator, and each parameter gets the step
        ``eta / (mu + h)`` for the whole pass. A pass runs in slices of 2000 samples, so
        progress is shown and Ctrl-C handled between slices; its C kernel is
        single-threaded (``threads`` serves the evaluations). The RBF prototypes are never
        trained (``layout.trainable_mask``).
    batch_size : int, default 64
        sgd only.
    lr : float, optional
        The base learning rate (the lr of the first epoch); for sdlm the eta of passes 1-2,
        the others scaling with it. Default per (optimizer, head), found by experiment on
        the full MNIST (20 epochs): sgd 0.1 for the softmax head (test error 0.78-0.88 %
        over seeds 0-2) and 0.002 for the rbf head (0.93 %); sdlm the paper's 0.0005.
    momentum : float, default 0.9
        sgd only; in [0, 1).
    weight_decay : float, optional
        L2 decay on every trained parameter; default 5e-4 for sgd. Must be 0 for sdlm.
    lr_schedule : {"constant", "step", "cosine", "paper", "linear"} or callable, optional
        The lr of an epoch is ``lr * lr_factor(lr_schedule, epoch, epochs)`` (see
        :func:`lr_factor`); a callable is ``(epoch 0-based, epochs) -> factor``. "linear"
        (sgd) changes the lr at every step instead: a warm-up over the first ``warmup``
        fraction of all the run's steps, then a linear decay to ~0 at the last step
        (:func:`linear_step_factor`); sdlm takes it per pass. Default
        "cosine" for sgd, "paper" for sdlm (the paper's eta table: 0.0005 for passes 1-2,
        0.0002 for 3-5, 0.0001 for 6-8, 0.00005 for 9-12, 0.00001 after).
    seed : int, default 0
        The shuffling (and hessian-sample and distortion) seed. With the model's initial
        weights it fixes the run: the gradients are bit-identical whatever the thread
        count, so the same seed gives bit-identical weights with any ``threads``.
    threads : int, optional
        Threads of the C kernels; default ``model.threads``.
    checkpoint : str or os.PathLike, optional
        The model file written at the end of every epoch, with ``<base>.state.npz`` and
        ``<base>.history.json`` beside it (:func:`lenet_native.checkpoint.checkpoint_paths`,
        which also says how they are written).
    resume : bool, default False
        Reload ``checkpoint`` (weights, velocity, history) into ``model`` and run the
        remaining epochs: the result is bit-for-bit the one of an uninterrupted run with
        the same arguments. Refused (ValueError) if the head, optimizer, hyperparameters,
        seed or training data differ; ``epochs`` may differ (to continue a finished run),
        which changes the lr schedule of the remaining epochs for "cosine" and "step".
    progress : {True, False, "force"}, default True
        A one-line ``\\r`` progress bar on stderr (epoch, percent, images/s, running loss)
        if True and stderr is a terminal, or always if "force".
    distort : callable, optional
        ``distort(images float32 (B, 32, 32), rng) -> images`` of the same shape, applied
        to each SGD batch / each SDLM slice with the epoch's generator (the hessian
        estimate uses the undistorted samples); e.g. ``distort.make_distorter()``.
    on_epoch : callable, optional
        ``on_epoch(record, model)``, called after each epoch's checkpoint is written;
        returning False stops training after that epoch (``history.stopped_early``). A
        KeyboardInterrupt raised in it counts as Ctrl-C.
    mu : float, optional
        sdlm's mu; default 1.0 for the rbf head and 0.1 for the softmax head, not the
        paper's 0.02 (see Notes).
    hessian_samples : int, default 500
        sdlm: the samples the Gauss-Newton diagonal is estimated on before each pass.
    warmup : float, default 0
        sgd with ``lr_schedule="linear"``: the fraction of the run's steps (``epochs`` x
        batches per epoch) over which the lr rises linearly from lr / warmup-steps to lr.
    shift : int, default 0
        sgd, uint8 digits only: each training digit is placed up to ``shift`` (0, 1 or 2)
        pixels off centre in its 32x32 frame, (dy, dx) drawn uniformly per digit from the
        epoch's generator (a random translation that never crops; done by the gather).
    target_error : float, optional
        Stop after the first epoch whose test error is <= ``target_error`` (a fraction:
        0.01 for 1 %; needs the test set); ``history.stopped_early`` and the record's
        ``target_reached`` say so. Resuming a run that reached it trains no further.

    Returns
    -------
    History
        One record per epoch: epoch (1-based), train_loss (mean per-sample loss over the
        epoch, as the samples were trained on), train_error (sgd: error rate of the batches
        as they were seen during the epoch, before their update; sdlm: error rate of the
        whole training set after the pass, one extra forward pass, since the per-sample
        kernel returns only losses), test_error, test_loss, seconds (training part of the
        epoch), images_per_second, eval_seconds, lr, and for sdlm also eta, mu and h_mean
        (mean Gauss-Newton h over the trained parameters). ``lr`` is the lr of the epoch's
        first step.

    Raises
    ------
    FloatingPointError
        If the run diverges (loss or weights not finite).
    FileNotFoundError
        If ``resume`` finds no checkpoint, or the checkpoint's folder does not exist.
    TypeError, ValueError
        For invalid arguments, naming them.

    Notes
    -----
    Ctrl-C (KeyboardInterrupt) while training: the epoch in progress is abandoned, the
    model is restored to the weights of the last completed epoch (the ones in the
    checkpoint, or the initial weights), the history file is rewritten with
    ``"interrupted": true``, and train RETURNS the history with
    ``history.interrupted == True`` (it does not re-raise). A SIGINT arriving while the
    checkpoint files are being written is held until they are complete. On any other
    exception the model is also restored to the last completed epoch and the exception
    propagates; the checkpoint of that epoch stays intact.

    DEVIATION from the paper (sdlm, rbf head): with the paper's mu = 0.02 and its etas the
    network diverges in the first pass (at the paper's initialisation h is tiny for most
    weights, so almost every step is the cap eta / mu, and C5's weights, fan-in 400, move a
    pre-activation by O(1) in one update). mu = 1.0 with the paper's etas is the paper's
    recipe applied to the per-sample loss divided by 50; 20 passes end at 1.01 % test error
    for seed 0 and 1.09 % on average over ten seeds (the paper: 0.95 %). The softmax head (not the paper's pairing) defaults to
    mu = 0.1. docs/sdlm.md has the measurements: the mu sweep and the seeds.
    """
    # ---- validation -----------------------------------------------------------------
    if not isinstance(model, LeNet5):
        raise TypeError(f"train: model must be a LeNet5, got {type(model).__name__}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"train: optimizer must be 'sgd' or 'sdlm'; got {optimizer!r}")
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    hessian_samples = check_int("hessian_samples", hessian_samples, 1)
    if lr is None:
        lr = DEFAULT_LR[(optimizer, model.head)]
    lr = check_real("lr", lr, positive=True)
    momentum = check_real("momentum", momentum)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"train: momentum must be in [0, 1); got {momentum!r}")
    if weight_decay is None:
        weight_decay = DEFAULT_WEIGHT_DECAY[optimizer]
    weight_decay = check_real("weight_decay", weight_decay)
    if weight_decay < 0:
        raise ValueError(f"train: weight_decay must be >= 0; got {weight_decay!r}")
    if optimizer == "sdlm" and weight_decay != 0:
        raise ValueError("train: weight_decay is not supported with optimizer='sdlm' (the paper "
                         "uses none); set it to 0")
    if mu is None:
        mu = DEFAULT_MU[model.head]
    mu = check_real("mu", mu)
    if mu <= 0:
        raise ValueError(f"train: mu must be > 0; got {mu!r}")
    if lr_schedule is None:
        lr_schedule = DEFAULT_SCHEDULE[optimizer]
    if not callable(lr_schedule) and lr_schedule not in SCHEDULES:
        raise ValueError(f"train: lr_schedule must be one of {', '.join(map(repr, SCHEDULES))} "
                         f"or a callable (epoch, epochs) -> factor; got {lr_schedule!r}")
    warmup = check_real("warmup", warmup)
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"train: warmup must be in [0, 1); got {warmup!r}")
    if warmup and (optimizer != "sgd" or lr_schedule != "linear"):
        raise ValueError("train: warmup needs optimizer='sgd' and lr_schedule='linear'")
    shift = check_int("shift", shift, 0)
    if shift > 2:
        raise ValueError(f"train: shift must be 0, 1 or 2 (pixels); got {shift!r}")
    if shift and optimizer != "sgd":
        raise ValueError("train: shift is supported with optimizer='sgd' only")
    if target_error is not None:
        target_error = check_real("target_error", target_error)
        if not 0.0 <= target_error <= 1.0:
            raise ValueError(f"train: target_error is a fraction in [0, 1] (0.01 for 1 %); "
                             f"got {target_error!r}")
    threads = model.threads if threads is None else check_threads(threads)
    if progress not in (True, False, "force"):
        raise ValueError(f"train: progress must be True, False or 'force'; got {progress!r}")
    if distort is not None and not callable(distort):
        raise TypeError(f"train: distort must be None or a callable (images, rng) -> images; "
                        f"got {type(distort).__name__}")
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"train: on_epoch must be None or a callable (record, model); "
                        f"got {type(on_epoch).__name__}")
    if not isinstance(resume, bool):
        raise TypeError(f"train: resume must be True or False; got {resume!r}")
    paths = None
    if checkpoint is not None:
        if not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"train: checkpoint must be a path or None; got {type(checkpoint).__name__}")
        paths = ckpt.checkpoint_paths(checkpoint)
        parent = paths["model"].parent
        if not parent.is_dir():
            raise FileNotFoundError(f"train: checkpoint folder {parent} does not exist")
    if resume and paths is None:
        raise ValueError("train: resume=True needs a checkpoint path")

    x = _digits_or_input(train_images, "train")
    y = as_labels(train_labels, x.shape[0], "train")
    if shift and x.dtype != np.uint8:
        raise ValueError("train: shift needs the uint8 digits (N, 28, 28), not float input")
    n = x.shape[0]
    if n == 0:
        raise ValueError("train: no training images")
    if (test_images is None) != (test_labels is None):
        raise ValueError("train: give both test_images and test_labels, or neither")
    xt = yt = None
    if test_images is not None:
        xt = _digits_or_input(test_images, "train (test set)")
        yt = as_labels(test_labels, xt.shape[0], "train (test set)")
        if xt.shape[0] == 0:
            raise ValueError("train: the test set is empty (pass None for no test set)")
    if target_error is not None and xt is None:
        raise ValueError("train: target_error needs a test set")

    config = {
        "optimizer": optimizer, "head": model.head, "seed": seed, "lr": lr,
        "lr_schedule": lr_schedule if isinstance(lr_schedule, str) else "callable",
        "train_samples": n, "data_sha256": _data_digest(x, y),
        "distort": None if distort is None else getattr(distort, "__qualname__", "callable"),
    }
    if optimizer == "sgd":
        config.update(batch_size=batch_size, momentum=momentum, weight_decay=weight_decay)
        if warmup:      # recorded only when used: earlier checkpoints still resume
            config["warmup"] = warmup
        if shift:
            config["shift"] = shift
    else:
        config.update(mu=mu, hessian_samples=min(hessian_samples, n))

    # ---- state ----------------------------------------------------------------------
    flat = model.params
    mask = trainable_mask(model.head)
    velocity = param_vector()
    history = History()
    start = 0
    last_saved = None               # (epoch, weights digest, velocity) of the last checkpoint
    if resume:
        start, records, vel, last_saved = ckpt.load_checkpoint(model, paths, config)
        flat = model.params
        history.extend(records)
        if vel is not None:
            velocity[:] = vel
    saved_flat = flat.copy()        # weights of the last completed epoch (rollback target)
    saved_velocity = velocity.copy()

    bar = _Progress(progress, epochs)
    step_buf = param_vector()   # SDLM reads C5's steps beside C5's weights: same placement
    batches = -(-n // batch_size)
    per_step = None             # "linear": (steps of the run, warm-up steps)
    if optimizer == "sgd" and lr_schedule == "linear":
        per_step = (epochs * batches, int(round(warmup * epochs * batches)))
    if (target_error is not None and history and history[-1].get("test_error") is not None
            and history[-1]["test_error"] <= target_error):
        history.stopped_early = True      # resumed after the target was reached: done
        return history
    epoch = start
    try:
        for epoch in range(start, epochs):
            rate = lr * lr_factor(lr_schedule, epoch, epochs)
            rng = np.random.default_rng([seed, epoch])
            if optimizer == "sgd":
                rates = None
                if per_step is not None:
                    first = epoch * batches
                    rates = [lr * linear_step_factor(first + b, *per_step) for b in range(batches)]
                    rate = rates[0]
                record = _sgd_epoch(model, x, y, rng, rate, momentum, weight_decay, batch_size,
                                    threads, mask, velocity, distort, bar, epoch, rates=rates,
                                    shift=shift)
            else:
                record = _sdlm_epoch(model, x, y, rng, rate, mu, hessian_samples, mask, step_buf,
                                     distort, bar, epoch)
            bar.status(epoch, "evaluating")
            t0 = time.perf_counter()
            if optimizer == "sdlm":
                record["train_error"] = _evaluate(model, x, y, EVAL_BATCH, threads)["error"]
            if xt is not None:
                ev = _evaluate(model, xt, yt, EVAL_BATCH, threads)
                record["test_error"], record["test_loss"] = ev["error"], ev["loss"]
            else:
                record["test_error"] = record["test_loss"] = None
            record["eval_seconds"] = time.perf_counter() - t0
            if not np.isfinite(flat).all():
                raise FloatingPointError(f"train: the weights are no longer finite after epoch "
                                         f"{epoch + 1}; lower lr (was {rate:g})")
            reached = target_error is not None and record["test_error"] <= target_error
            if reached:
                record["target_reached"] = True
            bar.clear()
            history.append(record)
            with _sigint_deferred():     # a Ctrl-C here lands after the epoch is committed
                model.meta["training"] = ckpt.training_meta(config, epochs, history)
                if paths is not None:
                    last_saved = ckpt.save_checkpoint(model, paths, config, epochs, history,
                                                      velocity, last_saved)
                saved_flat[:] = flat
                saved_velocity[:] = velocity
            if on_epoch is not None and on_epoch(dict(record), model) is False or reached:
                history.stopped_early = True
                model.meta["training"] = ckpt.training_meta(config, epochs, history)
                if paths is not None:
                    ckpt.write_history(paths, config, epochs, history)
                break
    except KeyboardInterrupt:
        bar.clear()
        flat[:] = saved_flat
        velocity[:] = saved_velocity
        history.interrupted = True
        if history:
            model.meta["training"] = ckpt.training_meta(config, epochs, history)
        if paths is not None:
            with _sigint_deferred():
                ckpt.write_history(paths, config, epochs, history)
        return history
    except BaseException:
        bar.clear()
        flat[:] = saved_flat
        raise
    return history


# ----------------------------------------------------------------------------- epochs


def _sgd_epoch(model, x, y, rng, rate, momentum, decay, batch_size, threads, mask, velocity,
               distort, bar, epoch, rates=None, shift=0):
    n = x.shape[0]
    flat = model.params
    order = rng.permutation(n)
    loss_sum = 0.0
    errors = 0
    digits = x.dtype == np.uint8
    buf = np.empty((min(batch_size, n), 32, 32), np.float32) if digits else None
    t0 = time.perf_counter()
    for b, lo in enumerate(range(0, n, batch_size)):
        idx = order[lo:lo + batch_size]
        if rates is not None:
            rate = rates[b]
        if digits:      # pad + normalise in C (preprocess's bits), shifted if asked
            sh = (rng.integers(-shift, shift + 1, (len(idx), 2), dtype=np.int8)
                  if shift else None)
            xb = _core.gather_digits(x, idx, sh, out=buf[:len(idx)])
        else:
            xb = x[idx]
        yb = y[idx]
        if distort is not None:
            xb = _distorted(distort, xb, rng)
        # the gradient of the batch's mean loss and the update, in one C call
        losses, out = _core.sgd_train_step(flat, velocity, mask, rate, momentum, decay, C3_OUT,
                                           C3_IN, model.head, xb, yb, 1.0 / len(idx), threads)
        batch_loss, batch_errors = _core.batch_stats(losses, out, yb, model.head == "rbf")
        if not math.isfinite(batch_loss):
            raise FloatingPointError(f"train: the loss diverged (became {batch_loss}) in epoch "
                                     f"{epoch + 1}; lower lr (was {rate:g})")
        loss_sum += batch_loss
        errors += batch_errors
        done = lo + len(idx)
        bar.update(epoch, done, n, done / max(time.perf_counter() - t0, 1e-9), loss_sum / done)
    seconds = time.perf_counter() - t0
    return {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_error": errors / n,
            "seconds": seconds, "images_per_second": n / seconds,
            "lr": rate if rates is None else rates[0]}


def _sdlm_epoch(model, x, y, rng, eta, mu, hessian_samples, mask, step, distort, bar, epoch):
    n = x.shape[0]
    flat = model.params
    t0 = time.perf_counter()
    k = min(hessian_samples, n)
    hidx = np.sort(rng.choice(n, size=k, replace=False))
    digits = x.dtype == np.uint8
    xh = _core.gather_digits(x, hidx.astype(np.int64)) if digits else np.ascontiguousarray(x[hidx])
    h = _core.hessian_diag(flat, C3_OUT, C3_IN, model.head, xh, y[hidx], 1.0 / k)
    np.divide(np.float32(eta), np.float32(mu) + h, out=step)
    step[mask == 0] = 0.0
    h_mean = float(np.mean(h[mask == 1], dtype=np.float64))
    order = rng.permutation(n).astype(np.int64)
    loss_sum = 0.0
    for lo in range(0, n, SDLM_SLICE):
        part = order[lo:lo + SDLM_SLICE]
        if distort is None and not digits:
            losses = _core.sdlm_epoch(flat, C3_OUT, C3_IN, model.head, step, x, y, part)
        else:       # the slice's samples gathered in order: the same updates
            xs = _core.gather_digits(x, part) if digits else x[part]
            if distort is not None:
                xs = _distorted(distort, xs, rng)
            losses = _core.sdlm_epoch(flat, C3_OUT, C3_IN, model.head, step, xs, y[part],
                                      np.arange(len(part), dtype=np.int64))
        part_loss = float(np.sum(losses, dtype=np.float64))
        if not math.isfinite(part_loss):
            raise FloatingPointError(f"train: the loss diverged (became {part_loss}) in pass "
                                     f"{epoch + 1}; lower lr/eta (was {eta:g})")
        loss_sum += part_loss
        done = lo + len(part)
        bar.update(epoch, done, n, done / max(time.perf_counter() - t0, 1e-9), loss_sum / done)
    seconds = time.perf_counter() - t0
    return {"epoch": epoch + 1, "train_loss": loss_sum / n, "seconds": seconds,
            "images_per_second": n / seconds, "lr": eta, "eta": eta, "mu": mu, "h_mean": h_mean}


def _distorted(distort, xb, rng):
    out = distort(xb, rng)
    a = np.asarray(out)
    if a.shape != xb.shape:
        raise ValueError(f"train: distort returned shape {a.shape} for a batch of shape {xb.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"train: distort must return float images; got dtype {a.dtype}")
    a = np.require(a, np.float32, ["C", "A"])
    if not np.isfinite(a).all():
        raise ValueError("train: distort returned NaN or infinity")
    return a


@contextlib.contextmanager
def _sigint_deferred():
    """Hold SIGINT (Ctrl-C) while the block runs, then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):     # no signals here (embedded interpreter, say)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)


# ----------------------------------------------------------------------------- helpers


def _digits_or_input(images, where):
    """uint8 digits -> C-contiguous uint8 (N, 28, 28), kept as they are (batches are
    gathered from them in C); anything else -> preprocessed float input (as_input)."""
    a = to_array(images, where)
    if a.dtype != np.uint8:
        return as_input(a, where)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"{where}: uint8 digits must be (N, 28, 28) or (28, 28); got shape "
                         f"{np.shape(images)}")
    return np.ascontiguousarray(a)


def _data_digest(x, y) -> str:
    h = hashlib.sha256()
    h.update(np.asarray(x.shape, dtype=np.int64).tobytes())
    h.update(memoryview(x).cast("B"))
    h.update(y.tobytes())
    return h.hexdigest()


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    WIDTH = 20

    def __init__(self, progress, epochs, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        tty = False
        try:
            tty = bool(isatty()) if isatty is not None else False
        except (ValueError, OSError):
            tty = False
        self.enabled = progress == "force" or (progress is True and tty)
        self.epochs = epochs
        self.last = 0.0
        self.shown = 0

    def _write(self, text):
        pad = max(0, self.shown - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self.shown = len(text)

    def update(self, epoch, done, total, ips, loss):
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        frac = done / total
        fill = int(frac * self.WIDTH)
        self._write(f"epoch {epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (self.WIDTH - fill)}] "
                    f"{100 * frac:3.0f}% {ips:7.0f} img/s loss {loss:.4f}")

    def status(self, epoch, what):
        if self.enabled:
            self._write(f"epoch {epoch + 1}/{self.epochs} {what}...")

    def clear(self):
        if self.enabled and self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()
            self.shown = 0
