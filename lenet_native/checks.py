"""Validation and coercion of arguments, shared by every module.

Each function either returns the value in the form the C kernels take or raises
TypeError / ValueError with a message that names the argument (and ``where``: the public
function the user called).
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

from . import _core

__all__ = ["MAX_THREADS", "MAX_INPUT_MAGNITUDE", "default_threads", "check_threads",
           "check_choice", "check_int", "check_real", "preprocess", "as_input", "as_images",
           "as_labels", "to_array"]

MAX_THREADS = 1024  # more OpenMP threads than this only risks a failed thread creation,
                    # which libgomp answers by exiting the whole process

# Larger inputs would overflow float32 inside the network (C1 sums, the Gauss-Newton x**2)
# and give silently wrong answers; csrc/lenet.h LENET_MAX_INPUT_LOG2 is the same bound.
MAX_INPUT_MAGNITUDE = 2.0 ** 61


# ----------------------------------------------------------------------------- scalars


def default_threads() -> int:
    """Threads used when none are given: $LENET_NATIVE_THREADS, else the CPUs this process
    may run on.

    Raises
    ------
    ValueError
        If $LENET_NATIVE_THREADS is set to anything but a positive integer.
    """
    env = os.environ.get("LENET_NATIVE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"LENET_NATIVE_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"LENET_NATIVE_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_threads(threads) -> int:
    """A thread count: an integer in 1..MAX_THREADS, or None for :func:`default_threads`
    (capped at MAX_THREADS).

    Raises
    ------
    ValueError
        If ``threads`` is anything else (bool included).
    """
    if threads is None:
        return min(default_threads(), MAX_THREADS)
    if (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
            or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must be an integer in 1..{MAX_THREADS} or None, got {threads!r}")
    return int(threads)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ValueError naming ``name``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_int(name: str, value, minimum: int) -> int:
    """An integer (not bool) at least ``minimum``; TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    return int(value)


def check_real(name: str, value, positive: bool = False) -> float:
    """A finite real number (not bool) as float, > 0 if ``positive``; TypeError /
    ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return value


# ----------------------------------------------------------------------------- images


def preprocess(images) -> np.ndarray:
    """MNIST digits to network input.

    Adds 2 px of background on every side and maps pixel p linearly to
    -0.1 + 1.275 p / 255 (background 0 -> -0.1, ink 255 -> 1.175), as in the paper.

    Parameters
    ----------
    images : array_like of uint8
        (N, 28, 28) digits, or one (28, 28) digit; 0 = background, 255 = ink.

    Returns
    -------
    numpy.ndarray
        float32 (N, 32, 32).
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"preprocess expects uint8 MNIST digits (0 = background, 255 = ink); "
                        f"got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"preprocess expects shape (N, 28, 28) or (28, 28); got {np.shape(images)}")
    x = np.full((a.shape[0], 32, 32), -0.1, dtype=np.float32)
    x[:, 2:30, 2:30] = a.astype(np.float32) * np.float32(1.275 / 255.0) - np.float32(0.1)
    return x


def as_input(x, where: str = "forward", finite: bool = True) -> np.ndarray:
    """Validate preprocessed input: (N, 32, 32), (N, 1, 32, 32) or (32, 32), float, finite.

    Parameters
    ----------
    x : array_like
    where : str
        The public function called, for the error messages.
    finite : bool, default True
        False leaves the NaN / infinity / magnitude check to the caller (the native forward
        does it in C while the images stream through: same error, no extra pass).

    Returns
    -------
    numpy.ndarray
        C-contiguous, aligned float32 (N, 32, 32); ``x`` itself if it already is one.
    """
    if (type(x) is np.ndarray and x.dtype is _core.F32 and x.ndim == 3
            and x.shape[1] == 32 and x.shape[2] == 32 and x.flags.c_contiguous
            and x.flags.aligned):
        a = x  # already what the kernels take: no conversion, no copy
    else:
        a = to_array(x, where)
        if a.dtype == np.uint8:
            raise TypeError(f"{where}: got uint8 input; raw MNIST digits go through preprocess() "
                            f"(or use predict / predict_proba, which accept them)")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{where}: input must be a float array (float16/32/64); got dtype {a.dtype}")
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        elif a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != (32, 32):
            raise ValueError(f"{where}: input must have shape (N, 32, 32) or (N, 1, 32, 32); "
                             f"got {np.shape(x)}")
        with np.errstate(over="ignore", invalid="ignore"):
            # C order and aligned (an unaligned buffer is copied: C reads whole floats)
            a = np.require(a, np.float32, ["C", "A"])
    if finite and a.size:
        # min and max propagate NaN and show infinities without a temporary of the input's size
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or max(-lo, hi) >= MAX_INPUT_MAGNITUDE:
            raise ValueError(f"{where}: input contains NaN or infinity, or a value too large "
                             f"(|x| must be below 2**61, about 2.3e18)")
    return a


def to_array(x, where: str) -> np.ndarray:
    """``np.asarray(x)``, with a TypeError naming ``where`` if numpy cannot take it."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists, objects numpy cannot take
        raise TypeError(f"{where}: cannot convert input of type {type(x).__name__} to an array") from exc


def as_images(images, where: str, finite: bool = True) -> np.ndarray:
    """Raw uint8 28x28 digits (through :func:`preprocess`) or preprocessed 32x32 float input
    (through :func:`as_input`, ``finite`` as there) -> network input."""
    a = to_array(images, where)
    if a.dtype == np.uint8:
        return preprocess(a)
    return as_input(a, where, finite)


def as_labels(labels, n: int, where: str) -> np.ndarray:
    """Class labels for ``n`` images: integers 0..9 (integer-valued floats accepted).

    Returns
    -------
    numpy.ndarray
        C-contiguous, aligned int32 (n,).
    """
    lab = np.asarray(labels)
    if lab.ndim == 0:
        lab = lab[None]
    if lab.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D; got shape {lab.shape}")
    if lab.shape[0] != n:
        raise ValueError(f"{where}: {lab.shape[0]} labels for {n} images")
    if lab.dtype == bool or not (np.issubdtype(lab.dtype, np.integer)
                                 or (np.issubdtype(lab.dtype, np.floating)
                                     and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)))):
        raise TypeError(f"{where}: labels must be integers 0..9; got dtype {lab.dtype}")
    if n and (lab.min() < 0 or lab.max() > 9):
        bad = lab[(lab < 0) | (lab > 9)][0]
        raise ValueError(f"{where}: labels must be in 0..9; got {bad}")
    return np.require(lab, np.int32, ["C", "A"])
