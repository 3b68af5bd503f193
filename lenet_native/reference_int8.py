"""The int8 network in NumPy: the test oracle of the int8 C kernels (csrc/q8.h).

Independent of the C path: it reads the quantized arrays in their interchange shapes (the
weight file's, C3 dense with zeros where Table I does not connect), never the packed
layouts of the C kernels, and computes each integer layer as a plain sum of int8 products
in int64. The float epilogue follows csrc/q8.h's definition step by step in float32;
its squash is NumPy's tanh, so the float parts agree with C to a few ulps, while the
integer sums, given the same integer inputs, agree bit for bit (``conv_sums`` and
``dense_sums``, what tests/test_int8.py checks per layer).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .layout import C3_TABLE

__all__ = ["IN_SCALE", "IN_ZERO", "input_codes", "conv_sums", "dense_sums", "requantize",
           "squash", "forward"]

#: Input step and zero code: x = IN_SCALE * (p - IN_ZERO), p in 0..255.
IN_SCALE = np.float32(0.005)
IN_ZERO = 20
_A, _S = np.float32(1.7159), np.float32(0.66666667)


def input_codes(x):
    """Preprocessed float32 input (N, 32, 32) -> uint8 codes: floor(clip(200 x + 20) + 0.5)."""
    v = np.asarray(x, np.float32) * np.float32(200.0) + np.float32(20.0)
    return np.floor(np.clip(v, np.float32(0), np.float32(255)) + np.float32(0.5)).astype(np.uint8)


def conv_sums(q, w, table=None):
    """Valid 5x5 convolution sums in integers.

    Parameters
    ----------
    q : integer (N, C, H, W)
        The signed activation values (code minus zero code).
    w : int8 (M, C, 5, 5)
    table : bool (M, C), optional
        Which (map, input) pairs are summed (C3's Table I); default all.

    Returns
    -------
    numpy.ndarray
        int32 (N, M, H - 4, W - 4).
    """
    win = sliding_window_view(np.asarray(q, np.int64), (5, 5), axis=(2, 3))  # N C Ho Wo 5 5
    w = np.asarray(w, np.int64)
    if table is not None:
        w = w * np.asarray(table, np.int64)[:, :, None, None]
    s = np.einsum("nchwij,mcij->nmhw", win, w, optimize=True)
    assert np.abs(s).max(initial=0) < 2 ** 31
    return s.astype(np.int32)


def dense_sums(q, w):
    """int64 sums q (N, K) @ w (M, K).T -> int32 (N, M)."""
    s = np.asarray(q, np.int64) @ np.asarray(w, np.int64).T
    return s.astype(np.int32)


def squash(a):
    """f(a) = 1.7159 tanh(2a/3) in float32."""
    return _A * np.tanh(_S * np.asarray(a, np.float32))


def requantize(y, scale):
    """Signed codes clip(rint(y / scale), -127, 127) (the C kernels multiply by 1/scale)."""
    inv = np.float32(1.0) / np.float32(scale)
    return np.clip(np.rint(np.asarray(y, np.float32) * inv), -127, 127).astype(np.int32)


def _epilogue(acc, wscale, xscale, bias):
    mul = (np.asarray(wscale, np.float32) * np.float32(xscale)).astype(np.float32)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    return squash(acc.astype(np.float32) * mul.reshape(shape) + np.asarray(bias, np.float32).reshape(shape))


def _pool(y, coef, bias):
    y = np.asarray(y, np.float32)
    s = (y[:, :, 0::2, 0::2] + y[:, :, 0::2, 1::2]) + (y[:, :, 1::2, 0::2] + y[:, :, 1::2, 1::2])
    return squash(np.asarray(coef, np.float32)[None, :, None, None] * s
                  + np.asarray(bias, np.float32)[None, :, None, None])


def forward(q, x, head, keep=False):
    """The int8 network on preprocessed input.

    Parameters
    ----------
    q : dict
        The quantized arrays (lenet_native.quantize, the weight file's names): int8
        "c1.weight" .. "f6.weight", float32 "<layer>.scale" per output map, the float32
        biases and subsampling coefficients, "act.s2", "act.s4", "act.c5" (scales), and
        the float32 head ("out.weight"/"out.bias" or "out.prototypes").
    x : float32 (N, 32, 32)
    head : {"softmax", "rbf"}
    keep : bool
        Also return every layer's integer sums and codes.

    Returns
    -------
    out : float32 (N, 10)
    layers : dict, if keep
        "in" (input codes), "c1", "c3", "c5", "f6" (int32 sums), "s2", "s4", "c5q" (signed
        codes).
    """
    p = input_codes(x).astype(np.int32)[:, None]
    c1 = conv_sums(p - IN_ZERO, q["c1.weight"])
    y1 = _epilogue(c1, q["c1.scale"], IN_SCALE, q["c1.bias"])
    s2 = requantize(_pool(y1, q["s2.weight"], q["s2.bias"]), q["act.s2"])
    c3 = conv_sums(s2, q["c3.weight"], C3_TABLE)
    y3 = _epilogue(c3, q["c3.scale"], q["act.s2"], q["c3.bias"])
    s4 = requantize(_pool(y3, q["s4.weight"], q["s4.bias"]), q["act.s4"])
    c5 = dense_sums(s4.reshape(len(s4), -1), np.asarray(q["c5.weight"]).reshape(120, -1))
    c5q = requantize(_epilogue(c5, q["c5.scale"], q["act.s4"], q["c5.bias"]), q["act.c5"])
    f6 = dense_sums(c5q, q["f6.weight"])
    y6 = _epilogue(f6, q["f6.scale"], q["act.c5"], q["f6.bias"])
    if head == "rbf":
        d = y6[:, None, :] - np.asarray(q["out.prototypes"], np.float32)[None]
        out = (d * d).sum(axis=2, dtype=np.float32)
    else:
        out = y6 @ np.asarray(q["out.weight"], np.float32).T + np.asarray(q["out.bias"], np.float32)
    out = out.astype(np.float32)
    if not keep:
        return out
    return out, {"in": p[:, 0], "c1": c1, "s2": s2, "c3": c3, "s4": s4, "c5": c5, "c5q": c5q,
                 "f6": f6}
