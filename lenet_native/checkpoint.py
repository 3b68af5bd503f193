"""Training checkpoints: the files a run writes at the end of every epoch, and resuming from them.

Files written when ``train(..., checkpoint="run.npz")`` (all with ``fileio.atomic_write``:
temporary file, fsync, rename):

* ``run.npz``           the model (the weight file of lenet_native.weights); its meta
                        holds the training state under ``meta["training"]``: epochs done,
                        the history, the optimizer and its hyperparameters, the seed.
* ``run.state.npz``     what resuming needs besides the weights: the SGD velocity, the
                        epoch it belongs to and a SHA-256 of the weights it goes with,
                        for the last epoch and the one before (so a process killed
                        between the state and the model write still resumes exactly).
* ``run.history.json``  the per-epoch history (also readable while training runs).

They are rewritten at the end of every epoch, state first, model second, history last
(:func:`save_checkpoint`; the training loop holds SIGINT while they are written), so a
Ctrl-C never leaves a half-written or mismatched set; after a SIGKILL or power loss the
model file on disk always finds its velocity in the state file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import fileio
from .layout import NPARAMS
from .model import LeNet5

__all__ = ["checkpoint_paths", "training_meta", "write_history", "save_checkpoint",
           "load_checkpoint", "params_digest", "HISTORY_FORMAT", "STATE_FORMAT"]

HISTORY_FORMAT = "lenet_native.history"
STATE_FORMAT = "lenet_native.train_state"


def checkpoint_paths(checkpoint) -> dict:
    """The files of a checkpoint.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        ``run.npz`` or ``run``.

    Returns
    -------
    dict
        ``{"model": run.npz, "state": run.state.npz, "history": run.history.json}``
        (pathlib.Path each).
    """
    p = Path(os.fspath(checkpoint))
    base = p.with_suffix("") if p.suffix == ".npz" else p
    model = p if p.suffix == ".npz" else p.with_name(p.name + ".npz")
    return {"model": model,
            "state": base.with_name(base.name + ".state.npz"),
            "history": base.with_name(base.name + ".history.json")}


def params_digest(model) -> str:
    """SHA-256 (hex) of a model's parameter vector: what ties a velocity to its weights."""
    return hashlib.sha256(model.params.tobytes()).hexdigest()


def training_meta(config: dict, epochs: int, history) -> dict:
    """What the model file's ``meta["training"]`` records: the run's ``config`` with the
    epochs asked for, the epochs done, the history and how it ended."""
    meta = dict(config)
    meta.update(epochs=epochs, epochs_done=len(history), history=list(history),
                interrupted=history.interrupted, stopped_early=history.stopped_early)
    return meta


def write_history(paths: dict, config: dict, epochs: int, history) -> None:
    """Write the history file (``paths["history"]``), JSON, atomically."""
    doc = {"format": HISTORY_FORMAT, "version": 1, "model": paths["model"].name,
           "training": {k: v for k, v in config.items()}, "epochs": epochs,
           "epochs_done": len(history), "interrupted": history.interrupted,
           "stopped_early": history.stopped_early, "history": list(history)}
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=False) + "\n"
    fileio.atomic_write(paths["history"], lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(model, paths: dict, config: dict, epochs: int, history, velocity, previous):
    """Write the state, the model and the history files, in that order.

    Parameters
    ----------
    model : LeNet5
        Its ``meta["training"]`` is already this epoch's (:func:`training_meta`).
    paths : dict
        :func:`checkpoint_paths`.
    config : dict
        The run's settings (recorded in the history file).
    epochs : int
        The epochs asked for.
    history : lenet_native.training.History
    velocity : numpy.ndarray
        The SGD velocity after this epoch, float32 (NPARAMS,).
    previous : tuple or None
        What the previous call returned (None at the first epoch of a fresh run).

    Returns
    -------
    tuple
        This epoch's (epoch, weights digest, velocity copy), to be passed back as
        ``previous`` next time.

    Notes
    -----
    The state file holds the velocity of this epoch AND of the previous one, each with the
    SHA-256 of the weights it belongs to: if the process dies after the state file is
    replaced but before the model file is, the model file on disk (previous epoch) still
    finds its velocity, and resume stays exact.
    """
    current = (len(history), params_digest(model), velocity.copy())
    state = {"format": np.array(STATE_FORMAT), "epoch": np.array(current[0], dtype=np.int64),
             "params_sha256": np.array(current[1]), "velocity": current[2]}
    if previous is not None:
        state.update(prev_epoch=np.array(previous[0], dtype=np.int64),
                     prev_params_sha256=np.array(previous[1]), prev_velocity=previous[2])
    fileio.atomic_write(paths["state"], lambda f: np.savez(f, **state))
    model.save(paths["model"])
    write_history(paths, config, epochs, history)
    return current


def load_checkpoint(model, paths: dict, config: dict):
    """Load a checkpoint into ``model`` to resume a run.

    Parameters
    ----------
    model : LeNet5
        Receives the checkpoint's weights (in place) and meta.
    paths : dict
        :func:`checkpoint_paths`.
    config : dict
        The resuming run's settings; they must equal the checkpoint's (the head too).

    Returns
    -------
    tuple
        (epochs done, history records, velocity, the ``previous`` value for the next
        :func:`save_checkpoint`).

    Raises
    ------
    FileNotFoundError
        If the model or the state file is missing.
    ValueError
        Saying why, if the checkpoint does not belong to this run or is inconsistent.
    """
    mpath, spath = paths["model"], paths["state"]
    if not mpath.exists():
        raise FileNotFoundError(f"train: cannot resume: no checkpoint {mpath}")
    saved = LeNet5.load(mpath, threads=model.threads)
    meta = saved.meta.get("training")
    if not isinstance(meta, dict) or "epochs_done" not in meta:
        raise ValueError(f"train: cannot resume: {mpath} holds no training state "
                         f"(not written by train(checkpoint=...))")
    if saved.head != model.head:
        raise ValueError(f"train: cannot resume: {mpath} is a {saved.head}-head model, "
                         f"this one has the {model.head} head")
    diffs = [f"{k}: checkpoint {meta.get(k)!r}, now {v!r}" for k, v in config.items()
             if meta.get(k) != v and k != "head"]
    if diffs:
        raise ValueError(f"train: cannot resume from {mpath}: the run differs ("
                         + "; ".join(diffs) + ")")
    done = meta["epochs_done"]
    records = meta.get("history", [])
    if not isinstance(done, int) or done < 0 or not isinstance(records, list) or len(records) != done:
        raise ValueError(f"train: cannot resume: {mpath} has an inconsistent training state")
    if not spath.exists():
        raise FileNotFoundError(f"train: cannot resume: the state file {spath} is missing")
    try:
        with np.load(spath, allow_pickle=False) as z:
            st = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"train: cannot resume: {spath} is not a readable state file "
                         f"({type(exc).__name__}: {exc})") from None
    if str(st.get("format", "")) != STATE_FORMAT:
        raise ValueError(f"train: cannot resume: {spath} is not a lenet_native training state")
    digest = params_digest(saved)
    vel = None
    for prefix in ("", "prev_"):     # this epoch's entry, or the one before (see save_checkpoint)
        try:
            match = (int(st.get(prefix + "epoch", -1)) == done
                     and str(st.get(prefix + "params_sha256", "")) == digest)
        except (TypeError, ValueError):
            match = False
        if match:
            vel = st.get(prefix + "velocity")
            break
    else:
        raise ValueError(f"train: cannot resume: {spath} (epoch {int(st.get('epoch', -1))}) does "
                         f"not belong to {mpath} (epoch {done})")
    if vel is None or vel.shape != (NPARAMS,) or vel.dtype != np.float32 or not np.isfinite(vel).all():
        raise ValueError(f"train: cannot resume: {spath} has no valid velocity array")
    model.params[:] = saved.params
    model.meta = dict(saved.meta)
    return done, records, vel, (done, digest, vel.copy())
