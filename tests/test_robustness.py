"""Reliability of every entry point: bad input, the Cython boundary, memory, and training
killed hard in the middle.

Property-based (Hypothesis): arrays of every dtype, shape (0 and 1 included), memory layout
(Fortran order, negative strides, strided views, unaligned, read-only, nested lists) and
value (NaN, infinities, huge) go through lenet_native.preprocess, LeNet5.forward / predict /
predict_proba / activations / loss_and_grad / hessian_diag and the raw lenet_native._core
functions. Each call must either return exactly what it returns on a contiguous float32
copy, or raise a ValueError / TypeError whose message names the problem -- never crash,
never return garbage. The policy for non-finite input (NaN, +-inf, or a value too large
for float32) is a ValueError.
"""
import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lenet_native as ln
from lenet_native import _core
from lenet_native.checks import MAX_INPUT_MAGNITUDE
from lenet_native.layout import C3_IN, C3_OUT

from conftest import big_random_state, child_env

HERE = Path(__file__).resolve().parent
PROPS = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
F32_MAX = float(np.finfo(np.float32).max)


def under_sanitizer():
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return False




_MODELS = {}


def model_for(head):
    """One model per head with weights big enough that every layer matters."""
    if head not in _MODELS:
        m = ln.LeNet5(head=head, seed=0, threads=2)
        m.load_state_dict(big_random_state(m, np.random.default_rng(1), scale=2.0))
        _MODELS[head] = m
    return _MODELS[head]


# ============================================================ building awkward arrays

FLOATS = ["float16", "float32", "float64", ">f4", ">f8", "longdouble"]
OTHERS = ["uint8", "int8", "int32", "int64", "uint16", "bool", "complex64", "complex128", "object"]
LAYOUTS = ["C", "F", "reversed", "strided", "transposed", "unaligned", "readonly", "list", "matrix_rows"]
VALUES = ["normal", "zeros", "huge", "nan", "inf", "-inf", "beyond_f32", "tiny"]


def make_values(rng, shape, kind, dtype):
    """float64 values of `shape` of the given kind (a special value at one random place)."""
    v = np.array(rng.uniform(-2.0, 2.0, shape), dtype=np.float64)
    if kind == "zeros":
        v[...] = 0.0
    elif kind == "huge":
        v *= 1e30 if np.dtype(dtype).itemsize >= 4 else 3e4
    elif kind == "tiny":
        v *= 1e-40
    elif kind in ("nan", "inf", "-inf", "beyond_f32") and v.size:
        special = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "beyond_f32": 1e39}[kind]
        v.reshape(-1)[rng.integers(v.size)] = special
    return v


def cast(v, dtype):
    return np.asarray(_cast(v, dtype))  # 0-d results as arrays, not scalars


def _cast(v, dtype):
    dt = np.dtype(dtype)
    if dt == object:
        return v.astype(object)
    if dt.kind in "iub":
        v = np.where(np.isfinite(v), v, 0.0)
        if dt.kind == "b":
            return v > 0
        info = np.iinfo(dt)
        return np.clip(np.round(v * 60 + 100), info.min // 2, info.max // 2).astype(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        return v.astype(dt)


def lay_out(a, layout):
    """The same values as `a` in another memory layout (or a nested list)."""
    if layout == "C":
        return a.copy()
    if layout == "F":
        return np.asfortranarray(a) if a.ndim else a.copy()
    if layout == "reversed" and a.ndim:  # negative strides on every axis
        return np.flip(np.flip(a).copy())
    if layout == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    if layout == "unaligned" and a.dtype != object and a.dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        u = np.frombuffer(buf, a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        return u
    if layout == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    if layout == "list" and a.size <= 4096:
        return a.tolist()
    if layout == "matrix_rows" and a.ndim >= 1:  # a view into a bigger array, offset in memory
        big = np.zeros((a.shape[0] + 2,) + a.shape[1:], a.dtype)
        big[1:-1] = a
        return big[1:-1]
    return a.copy()


@st.composite
def images(draw, side=32, allow_raw=True):
    """(array-like, description) for image input: valid and invalid shapes, every dtype,
    layout and kind of value."""
    n = draw(st.integers(0, 3))
    shape = draw(st.sampled_from([
        (n, side, side), (n, 1, side, side), (side, side), (1, side, side),
        (n, 28, 28), (28, 28), (n, 32, 32), (n, 1, 28, 28),
        (), (5,), (side,), (n, side, side - 1), (n, 2, side, side), (1, 1, 1, side, side),
        (0,), (0, 0, 0), (n, side, side, 1), (side * side,),
    ]))
    dtype = draw(st.sampled_from(FLOATS + OTHERS if allow_raw else FLOATS))
    layout = draw(st.sampled_from(LAYOUTS))
    kind = draw(st.sampled_from(VALUES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dtype == "uint8" and kind == "normal":
        a = np.array(rng.integers(0, 256, shape, dtype=np.uint8))
    else:
        a = cast(make_values(rng, shape, kind, dtype), dtype)
    return lay_out(a, layout), f"{dtype} {shape} {layout} {kind}"


# ============================================================ the specification (oracle)


def spec_input(x, where, raw_ok):
    """What the API must do with `x`: ("ok", canonical float32 (N, 32, 32)) or
    ("error", {exception type: words one of which the message must contain})."""
    a = np.asarray(x)
    if a.dtype == np.uint8 and raw_ok:
        if not (a.ndim == 3 and a.shape[1:] == (28, 28) or a.shape == (28, 28)):
            return "error", {ValueError: ["shape"]}
        return "ok", ln.preprocess(np.ascontiguousarray(a))
    if a.dtype == np.uint8:
        return "error", {TypeError: ["uint8", "preprocess"]}
    if not np.issubdtype(a.dtype, np.floating):
        return "error", {TypeError: ["float", "dtype"]}
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (32, 32):
        return "error", {ValueError: ["shape"]}
    with np.errstate(over="ignore", invalid="ignore"):
        c = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(c).all():
        return "error", {ValueError: ["NaN", "infinity"]}
    if c.size and np.abs(c).max() >= MAX_INPUT_MAGNITUDE:
        return "error", {ValueError: ["too large"]}
    return "ok", c


def check_raises(call, expected, where):
    with pytest.raises(tuple(expected)) as info:
        call()
    words = expected.get(type(info.value)) or [w for ws in expected.values() for w in ws]
    msg = str(info.value)
    assert any(w in msg for w in words), f"{where}: unclear message {msg!r} (expected one of {words})"
    return info.value


def spec_labels(labels, n):
    """("ok", int64 labels) or ("error", {type: words})."""
    try:
        lab = np.asarray(labels)
    except Exception:
        return "error", {TypeError: ["labels"], ValueError: ["labels"]}
    if lab.ndim == 0:
        lab = lab[None]
    if lab.ndim != 1:
        return "error", {ValueError: ["1-D"]}
    if lab.shape[0] != n:
        return "error", {ValueError: ["labels for"]}
    integral = np.issubdtype(lab.dtype, np.integer) or (
        np.issubdtype(lab.dtype, np.floating) and np.isfinite(lab).all() and (lab == np.round(lab)).all())
    if lab.dtype == bool or not integral:
        return "error", {TypeError: ["integers"]}
    if n and (lab.min() < 0 or lab.max() > 9):
        return "error", {ValueError: ["0..9"]}
    return "ok", lab.astype(np.int64)


@st.composite
def labels_for(draw, n):
    dtype = draw(st.sampled_from(["int8", "uint8", "int32", "int64", "uint64", "float32", "float64",
                                  "bool", "complex64", "object", "U1"]))
    shape = draw(st.sampled_from([(n,), (n,), (n,), (), (n, 1), (n + 1,), (max(n - 1, 0),)]))
    kind = draw(st.sampled_from(["ok", "ok", "ok", "neg", "ten", "big", "frac", "nan"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    v = rng.integers(0, 10, shape).astype(np.float64)
    if v.size:
        v.reshape(-1)[0] = {"ok": v.reshape(-1)[0], "neg": -1, "ten": 10, "big": 2.0**40,
                            "frac": 0.5, "nan": np.nan}[kind]
    dt = np.dtype(dtype)
    if dt.kind in "iub" and not np.all(np.isfinite(v)):
        v = np.nan_to_num(v)
    if dt.kind == "u":
        v = np.abs(v)
    if dt.kind in "iu":
        v = np.clip(v, np.iinfo(dt).min, np.iinfo(dt).max)
    if dt.kind == "U":
        lab = v.astype(int).astype(str) if np.all(np.isfinite(v)) else v.astype(str)
    else:
        lab = v.astype(dt) if dt != bool else v > 4
    if dtype == "object":
        lab = lab.astype(object)
    return lay_out(np.asarray(lab), draw(st.sampled_from(["C", "reversed", "strided", "list", "readonly"])))


def same(a, b):
    return np.array_equal(np.asarray(a), np.asarray(b))


# ============================================================ public entry points


@PROPS
@given(case=images(side=28))
def test_preprocess_property(case):
    x, desc = case
    a = np.asarray(x)
    if a.dtype != np.uint8:
        check_raises(lambda: ln.preprocess(x), {TypeError: ["uint8"]}, desc)
        return
    if not (a.ndim == 3 and a.shape[1:] == (28, 28) or a.shape == (28, 28)):
        check_raises(lambda: ln.preprocess(x), {ValueError: ["shape"]}, desc)
        return
    got = ln.preprocess(x)
    c = np.ascontiguousarray(a).reshape(-1, 28, 28)
    assert got.dtype == np.float32 and got.shape == (c.shape[0], 32, 32) and got.flags.c_contiguous
    assert same(got, ln.preprocess(c)), desc
    assert (got[:, :2] == np.float32(-0.1)).all() and (got[:, 30:] == np.float32(-0.1)).all()
    np.testing.assert_allclose(got[:, 2:30, 2:30], -0.1 + 1.275 * c / 255.0, rtol=0, atol=1e-6)


@PROPS
@given(case=images(), head=st.sampled_from(["softmax", "rbf"]))
def test_forward_and_activations_property(case, head):
    x, desc = case
    model = model_for(head)
    verdict, detail = spec_input(x, "forward", raw_ok=False)
    if verdict == "error":
        check_raises(lambda: model.forward(x), detail, desc)
        check_raises(lambda: model.activations(x), detail, desc)
        return
    want = model.forward(detail)
    got = model.forward(x)
    assert got.dtype == np.float32 and got.shape == (detail.shape[0], 10)
    assert same(got, want), desc
    assert np.isfinite(got).all(), desc
    acts = model.activations(x)
    assert same(acts["output"], want)
    ref_acts = model.activations(detail)
    assert all(same(acts[k], ref_acts[k]) for k in ref_acts)


@PROPS
@given(case=images(), head=st.sampled_from(["softmax", "rbf"]))
def test_predict_property(case, head):
    x, desc = case
    model = model_for(head)
    verdict, detail = spec_input(x, "predict", raw_ok=True)
    if verdict == "error":
        check_raises(lambda: model.predict(x), detail, desc)
        check_raises(lambda: model.predict_proba(x), detail, desc)
        return
    labels = model.predict(x)
    proba = model.predict_proba(x)
    assert labels.dtype == np.int64 and labels.shape == (detail.shape[0],)
    assert same(labels, model.predict(detail)), desc
    assert same(proba, model.predict_proba(detail)), desc
    if detail.shape[0]:
        assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
        assert (labels >= 0).all() and (labels <= 9).all()


@PROPS
@given(data=st.data(), head=st.sampled_from(["softmax", "rbf"]),
       which=st.sampled_from(["loss_and_grad", "hessian_diag"]))
def test_loss_grad_and_hessian_property(data, head, which):
    x, desc = data.draw(images())
    model = model_for(head)
    verdict, detail = spec_input(x, which, raw_ok=True)
    n = detail.shape[0] if verdict == "ok" else np.asarray(x).shape[0] if np.ndim(x) else 1
    labels = data.draw(labels_for(n))
    lverdict, ldetail = spec_labels(labels, n)
    call = lambda: getattr(model, which)(x, labels)  # noqa: E731
    expected = {}
    if verdict == "error":
        expected.update(detail)
    if lverdict == "error":
        for k, v in ldetail.items():
            expected.setdefault(k, []).extend(v)
    if not expected and n == 0:
        expected = {ValueError: ["empty"]}
    if expected:
        check_raises(call, expected, f"{desc} labels={labels!r}")
        return
    got = call()
    want = getattr(model, which)(detail, ldetail)
    if which == "loss_and_grad":
        assert np.isfinite(got[0]) and got[0] == want[0], desc
        got, want = got[1], want[1]
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == np.float32 and same(got[k], want[k]), (k, desc)
        if which == "loss_and_grad":
            assert np.isfinite(got[k]).all(), (k, desc)
        else:  # x**2 overflows float32 beyond |x| ~ 1.8e19: the curvature is then +inf, never NaN
            assert not np.isnan(got[k]).any() and (got[k] >= 0).all(), (k, desc)


def test_nan_policy_is_documented_and_enforced():
    """The documented policy: non-finite input (NaN, +-inf, or a value too large for float32)
    raises ValueError in every entry point, naming the problem."""
    model = model_for("softmax")
    for bad in (np.nan, np.inf, -np.inf, 1e39):
        x = np.zeros((2, 32, 32))
        x[1, 5, 7] = bad
        for call in (model.forward, model.predict, model.predict_proba, model.activations,
                     lambda v: model.loss_and_grad(v, [1, 2]), lambda v: model.hessian_diag(v, [1, 2])):
            with pytest.raises(ValueError, match="NaN or infinity"):
                call(x)


def test_huge_input_computes_below_the_magnitude_bound_and_is_refused_from_it():
    """|x| < MAX_INPUT_MAGNITUDE (2**61) gives finite outputs equal to the contiguous-copy
    result (paper-scale initial weights); from the bound up to the float32 maximum every
    entry point refuses the input (the Python check and the C one, LENET_MAX_INPUT_LOG2,
    draw the line at the same value)."""
    assert MAX_INPUT_MAGNITUDE == 2.0 ** 61
    model = ln.LeNet5(seed=0, threads=1)
    rng = np.random.default_rng(3)
    below = float(np.nextafter(np.float32(MAX_INPUT_MAGNITUDE), np.float32(0)))
    labels = [1, 2, 3]
    calls = {"forward": model.forward, "predict_proba": model.predict_proba,
             "activations": lambda v: model.activations(v)["output"],
             "loss_and_grad": lambda v: model.loss_and_grad(v, labels)[0],
             "hessian_diag": lambda v: model.hessian_diag(v, labels)["c1.weight"]}
    for v in (1e10, 1e18, below):
        x = (rng.choice([-1.0, 1.0], (3, 32, 32)) * v).astype(np.float32)
        for name, call in calls.items():
            out = np.asarray(call(x))
            assert np.isfinite(out).all(), (name, v)
            assert same(out, call(np.asfortranarray(x))), (name, v)
    for v in (MAX_INPUT_MAGNITUDE, 1e20, 1e38, F32_MAX):
        x = np.zeros((3, 32, 32), np.float32)
        x[2, 31, 31] = -v
        for name, call in calls.items():
            with pytest.raises(ValueError, match="too large"):
                call(x)


def test_overflow_inside_the_network_is_not_silent():
    """A finite input near the float32 maximum with weights above 1 overflows inside C1
    (inf - inf = NaN). The result must then be right (the reference's) or an error, not
    a unit with the wrong sign."""
    from lenet_native import reference as ref
    model = ln.LeNet5(seed=0, threads=1)
    s = model.state_dict()
    s["c1.weight"][:] = 0
    s["c1.weight"][0, 0, 0, 0], s["c1.weight"][0, 0, 0, 1] = 2.0, -3.0
    model.load_state_dict(s)
    x = np.zeros((1, 32, 32), np.float32)
    x[0, 0, 0] = x[0, 0, 1] = 3e38
    with pytest.raises(ValueError, match="too large"):  # beyond |x| < 2**61 inputs are refused
        model.activations(x)
    x[0, 0, 0] = x[0, 0, 1] = 2.0 ** 60  # the largest refused-free magnitude computes right
    got = model.activations(x)["c1"][0, 0, 0, 0]
    want = ref.activations(model.state_dict(), x.astype(np.float64), "softmax")["c1"]
    assert got == pytest.approx(float(np.asarray(want).reshape(1, 6, 28, 28)[0, 0, 0, 0]), abs=1e-3)


def test_predict_on_strange_containers():
    model = model_for("softmax")
    digits = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    want = model.predict(digits)
    assert same(model.predict(memoryview(digits)), want)
    assert same(model.predict(list(digits)), want)
    with pytest.raises(TypeError, match="int64"):  # nested Python ints lose the uint8 dtype
        model.predict(digits.tolist())
    for bad in [None, "digits", {"a": 1}, object(), b"\x00" * 784, [[1, 2], [3]]]:
        for call in (model.predict, model.forward, model.predict_proba):
            with pytest.raises((TypeError, ValueError)):  # ragged lists: ValueError from predict
                call(bad)


# ============================================================ the Cython boundary

SIZES = {"N": [0, 1, 2], "C": [0, 1, 2, 6], "M": [0, 1, 3, 16], "H": [0, 1, 2, 4, 5, 6, 9, 14],
         "W": [0, 1, 2, 4, 5, 6, 9, 14], "K": [0, 1, 3, 84], "P": [0, 1, 3, 60]}

# function -> argument specs: ("f32", dims) / ("i32", dims, lo, hi) / ("u8", dims) /
# ("i64", dims, lo, hi) / ("params",) / ("pairs_out",) / ("pairs_in",) / ("head",) / ("num",)
# ("out",) marks an output array the function writes.
CORE = {
    "conv5x5_forward": [("f32", "NCHW"), ("f32", "MC55"), ("f32", "M")],
    "conv5x5_backward": [("f32", "NMhw"), ("f32", "NCHW"), ("f32", "MC55")],
    "c3_forward": [("f32", "NCHW"), ("f32", "P25"), ("f32", "M"), ("i32", "P", -2, 17), ("i32", "P", -2, 7)],
    "c3_backward": [("f32", "NMhw"), ("f32", "NCHW"), ("f32", "P25"), ("i32", "P", -2, 17),
                    ("i32", "P", -2, 7)],
    "subsample_forward": [("f32", "NCHW"), ("f32", "C"), ("f32", "C")],
    "subsample_backward": [("f32", "NCHW"), ("f32", "NCHW"), ("f32", "C")],
    "squash_forward": [("f32", "K")],
    "squash_backward": [("f32", "K"), ("f32", "K")],
    "dense_forward": [("f32", "NK"), ("f32", "MK"), ("f32", "M")],
    "dense_backward": [("f32", "NM"), ("f32", "NK"), ("f32", "MK")],
    "rbf_forward": [("f32", "NK"), ("f32", "MK")],
    "rbf_backward": [("f32", "NM"), ("f32", "NK"), ("f32", "MK")],
    "softmax": [("f32", "NM")],
    "loss_forward_backward": [("head",), ("f32", "NM"), ("i32", "N", -2, 12), ("num",)],
    "sgd_step": [("f32w", "K"), ("f32w", "K"), ("f32", "K"), ("u8", "K"), ("num",), ("num",), ("num",)],
    "forward": [("params",), ("pairs_out",), ("pairs_in",), ("head",), ("f32", "N@@")],
    "loss_grad": [("params",), ("pairs_out",), ("pairs_in",), ("head",), ("f32", "N@@"),
                  ("i32", "N", -2, 12), ("num",)],
    "hessian_diag": [("params",), ("pairs_out",), ("pairs_in",), ("head",), ("f32", "N@@"),
                     ("i32", "N", -2, 12), ("num",)],
    "sdlm_epoch": [("params_w",), ("pairs_out",), ("pairs_in",), ("head",), ("f32", "Z"),
                   ("f32", "N@@"), ("i32", "N", -2, 12), ("i64", "N", -2, 4)],
    "warp_rows": [("f32", "NHW"), ("f32", "N"), ("f32", "N"), ("f32", "N"), ("f32", "N"),
                  ("f32", "N"), ("num",)],
    "sgd_train_step": [("params_w",), ("f32w", "Z"), ("u8", "Z"), ("num",), ("num",), ("num",),
                       ("pairs_out",), ("pairs_in",), ("head",), ("f32", "N@@"),
                       ("i32", "N", -2, 12), ("num",)],
}
THREADED = {"conv5x5_forward", "c3_forward", "subsample_forward", "dense_forward", "rbf_forward",
            "forward", "loss_grad", "sgd_train_step"}
NETWORK = {"forward", "loss_grad", "hessian_diag", "sdlm_epoch", "sgd_train_step"}
WRONG_DTYPES = [np.float64, np.float16, np.int32, np.int64, np.uint8, np.bool_, np.complex64]


def _dim(draw, sizes, letter):
    if letter == "5":
        return 5
    if letter == "@":
        return draw(st.sampled_from([32, 32, 32, 31, 0, 1]))
    if letter == "Z":
        return draw(st.sampled_from([_core.NPARAMS, _core.NPARAMS, 5, 0]))
    if letter == "2":  # "25"
        return 25
    if letter in "hw":
        return max(sizes[letter.upper()] - 4, 0)
    return sizes[letter]


def _mutate(draw, a):
    """Maybe break one property of the array `a`."""
    how = draw(st.sampled_from(["none"] * 6 + ["dtype", "ndim_up", "ndim_down", "noncontig", "reversed",
                                               "fortran", "shape", "readonly", "list", "scalar", "str"]))
    if how == "dtype":
        return a.astype(draw(st.sampled_from(WRONG_DTYPES)))
    if how == "ndim_up":
        return a[..., None]
    if how == "ndim_down":
        if a.ndim <= 1:
            return np.zeros((), a.dtype)
        return a.reshape(a.shape[:-2] + (a.shape[-2] * a.shape[-1],))
    if how == "noncontig" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if how == "reversed" and a.ndim:
        return a[::-1]
    if how == "fortran" and a.ndim >= 2:
        return np.asfortranarray(a)
    if how == "shape" and a.ndim:
        shape = list(a.shape)
        i = draw(st.integers(0, a.ndim - 1))
        shape[i] = draw(st.sampled_from([0, 1, 2, 7, 33]))
        return np.zeros(shape, a.dtype)
    if how == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if how == "list":
        return a.tolist()
    if how == "scalar":
        return 1.5
    if how == "str":
        return "x"
    return a


@st.composite
def core_call(draw, name):
    sizes = {k: draw(st.sampled_from(v)) for k, v in SIZES.items()}
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    args = []
    for spec in CORE[name]:
        kind = spec[0]
        if kind in ("f32", "f32w"):
            shape = tuple(_dim(draw, sizes, d) for d in spec[1].replace("25", "2"))
            a = rng.standard_normal(shape).astype(np.float32)
        elif kind in ("i32", "i64"):
            shape = tuple(_dim(draw, sizes, d) for d in spec[1])
            a = rng.integers(spec[2], spec[3], shape).astype(np.int32 if kind == "i32" else np.int64)
            if draw(st.booleans()):
                a = np.clip(a, 0, None)
        elif kind == "u8":
            a = rng.integers(0, 2, tuple(_dim(draw, sizes, d) for d in spec[1])).astype(np.uint8)
        elif kind in ("params", "params_w"):
            a = (rng.standard_normal(draw(st.sampled_from([_core.NPARAMS] * 4 + [0, 1, 60849])))
                 * 0.1).astype(np.float32)
        elif kind == "pairs_out":
            a = draw(st.sampled_from([C3_OUT, C3_OUT, C3_OUT[::-1].copy(), (C3_OUT + 16).astype(np.int32),
                                      np.zeros(59, np.int32), (C3_OUT - 1).astype(np.int32)]))
        elif kind == "pairs_in":
            a = draw(st.sampled_from([C3_IN, C3_IN, C3_IN, (C3_IN + 6).astype(np.int32),
                                      np.zeros(61, np.int32), (C3_IN - 1).astype(np.int32)]))
        elif kind == "head":
            args.append(draw(st.sampled_from(["softmax", "rbf", "softmax", "rbf", "relu", "", "RBF"])))
            continue
        else:  # num
            args.append(draw(st.sampled_from([1.0, 0.5, 0.0, -1.0, 1e30])))
            continue
        args.append(_mutate(draw, a))
    kwargs = {}
    if name in THREADED and draw(st.booleans()):
        kwargs["threads"] = draw(st.sampled_from([-3, 0, 1, 2, 3]))
    if name in NETWORK and draw(st.booleans()):
        kwargs["isa"] = draw(st.sampled_from(list(_core.ISAS) + [None, "bogus", "", 3, b"avx2"]))
    if name == "forward":
        kwargs["keep_activations"] = draw(st.booleans())
        kwargs["check_finite"] = draw(st.booleans())
        if (args and isinstance(args[-1], np.ndarray) and args[-1].size and args[-1].dtype.kind == "f"
                and draw(st.booleans())):
            args[-1] = args[-1].copy()
            args[-1].reshape(-1)[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return args, kwargs


def _snapshot(args):
    return [a.copy() if isinstance(a, np.ndarray) else None for a in args]


@pytest.mark.parametrize("name", sorted(CORE))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_core_boundary_never_crashes(name, data):
    """Wrong dtypes, ranks, strides, sizes (0 included), read-only buffers, lists, scalars and
    out-of-range pair lists / labels / indices at the Cython boundary: a ValueError or
    TypeError, or a result; never a crash. Inputs are never written to, and a result is
    reproducible."""
    args, kwargs = data.draw(core_call(name))
    fn = getattr(_core, name)
    before = _snapshot(args)
    try:
        result = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        assert str(exc), "an error without a message"
        return
    writes = {"sgd_step": (0, 1), "sdlm_epoch": (0,), "sgd_train_step": (0, 1)}.get(name, ())
    for i, (a, b) in enumerate(zip(args, before)):
        if b is not None and i not in writes:
            assert np.array_equal(a, b, equal_nan=True), f"{name} wrote into argument {i}"
    if not writes:
        again = fn(*args, **kwargs)
        flat = lambda r: list(r) if isinstance(r, tuple) else [r]  # noqa: E731
        assert all(np.array_equal(p, q, equal_nan=True) for p, q in zip(flat(result), flat(again)))


# Arguments the fuzzer above seldom draws, each checked with the error it must give.
@pytest.mark.parametrize("call", [
    lambda: _core.squash_forward(None),
    lambda: _core.squash_backward(None, None),
    lambda: _core.sgd_step(None, None, None, None, 0.1, 0.9, 0.0),
    lambda: _core.softmax(None),
], ids=["squash_forward", "squash_backward", "sgd_step", "softmax"])
def test_core_rejects_none(call):
    with pytest.raises(TypeError, match="must not be None"):
        call()


@pytest.mark.parametrize("call, error, match", [
    (lambda: _core.squash_forward(np.zeros(3, np.float32), out=[0.0, 0.0, 0.0]),
     TypeError, "out must be a numpy array"),
    (lambda: _core.loss_forward_backward("relu", np.zeros((2, 10), np.float32),
                                         np.zeros(2, np.int32), 1.0),
     ValueError, "head must be 'softmax' or 'rbf'"),
    (lambda: ln.LeNet5(seed=0, threads=2**40).forward(np.zeros((1, 32, 32), np.float32)),
     ValueError, "threads must be an integer in 1..1024"),
    (lambda: ln.LeNet5(seed=0, threads=10**6), ValueError, "threads must be an integer in 1..1024"),
    # a (1, 1, 1, 5) kernel: C would read 25 floats per (out, in) pair past its end
    (lambda: _core.conv5x5_backward(np.zeros((1, 1, 1, 1), np.float32),
                                    np.zeros((1, 1, 5, 5), np.float32),
                                    np.zeros((1, 1, 1, 5), np.float32)),
     ValueError, "conv5x5_backward: inconsistent shapes"),
], ids=["out_list", "loss_head", "threads_2**40", "threads_1e6", "conv_backward_kernel"])
def test_core_rejects_bad_out_head_thread_count_and_kernel_shape(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ============================================================ reference leaks


def test_no_reference_leaks_on_success_or_error():
    """Repeated calls (successful and failing) leave the refcounts of their inputs and of
    the parameters unchanged, and free their results."""
    model = model_for("softmax")
    x = ln.preprocess(np.random.default_rng(5).integers(0, 256, (3, 28, 28), dtype=np.uint8))
    y = np.array([1, 2, 3])
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    calls = [
        lambda: model.forward(x), lambda: model.predict(x), lambda: model.predict_proba(x),
        lambda: model.activations(x), lambda: model.loss_and_grad(x, y), lambda: model.hessian_diag(x, y),
        lambda: _core.forward(model.params, C3_OUT, C3_IN, "softmax", x, 2),
        lambda: _core.forward(model.params, C3_OUT, C3_IN, "relu", x, 2),            # raises
        lambda: _core.loss_grad(model.params, C3_OUT, C3_IN, "softmax", x,
                                np.array([1, 2, 99], np.int32), 1.0),                  # raises in C
        lambda: _core.forward(model.params, C3_OUT, C3_IN, "softmax", x.astype(np.float64)),  # raises
        lambda: model.forward(bad), lambda: model.loss_and_grad(x, [1, 2]),           # raise
    ]
    for call in calls:
        for _ in range(3):
            try:
                call()
            except (ValueError, TypeError):
                pass
        gc.collect()
        counts = [sys.getrefcount(o) for o in (x, y, bad, model.params, C3_OUT, C3_IN)]
        for _ in range(10):
            try:
                r = call()
            except (ValueError, TypeError):
                continue
            if isinstance(r, np.ndarray):
                ref = weakref.ref(r)
                del r
                assert ref() is None, "a result array is kept alive"
        gc.collect()
        assert [sys.getrefcount(o) for o in (x, y, bad, model.params, C3_OUT, C3_IN)] == counts


# ============================================================ memory


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_memory_does_not_grow_and_batches_stream():
    """tests/memory_soak.py, shortened: 5,000 small calls (RSS flat after warm-up), and a
    20,000-image batch through the C forward pass in a few MB beyond its input and output
    (a non-streaming forward would need 32 KB per image, 650 MB here). The full soak
    (100,000 calls, 100,000 images) is `python tests/memory_soak.py`."""
    if under_sanitizer() or os.environ.get("LENET_NATIVE_SANITIZE_RUN"):
        pytest.skip("RSS is meaningless under AddressSanitizer")
    proc = subprocess.run(
        [sys.executable, str(HERE / "memory_soak.py"), "--calls", "5000", "--batch", "20000",
         "--model-batch", "5000", "--margin-mb", "4", "--batch-margin-mb", "16"],
        capture_output=True, text=True, timeout=600, env=child_env())
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ============================================================ training killed hard

CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import importlib
    import lenet_native.fileio as lf
    from lenet_native.idx import read_idx
    from lenet_native.model import LeNet5
    lt = importlib.import_module("lenet_native.training")

    folder, point, target = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    x, y = read_idx(folder / "img.idx"), read_idx(folder / "lbl.idx")

    def pause():  # tell the parent where we are, then wait for its SIGKILL
        (folder / "paused").write_text(point)
        time.sleep(300)
        os._exit(3)

    counts = {}
    def count(kind):
        counts[kind] = counts.get(kind, 0) + 1
        return counts[kind] == target

    class Core:  # lenet_native._core, pausing inside the `target`-th gradient call
        def __getattr__(self, name):
            return getattr(lt._core_real, name)
        def sgd_train_step(self, *a, **k):
            if point == "mid-epoch" and count("grad"):
                pause()
            return lt._core_real.sgd_train_step(*a, **k)
    lt._core_real, lt._core = lt._core, Core()

    real_write = lf.atomic_write
    def atomic_write(path, write):
        name = str(path)
        kind = "state" if name.endswith(".state.npz") else "history" if name.endswith(".json") else "model"
        if point == "during-" + kind and count(kind):
            def half(f):
                import io
                buf = io.BytesIO()
                write(buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                pause()
            return real_write(path, half)
        real_write(path, write)
        if point == "after-" + kind and count(kind):
            pause()
    lf.atomic_write = atomic_write

    model = LeNet5(head="softmax", seed=3, threads=2)
    lt.train(model, x, y, epochs=4, batch_size=16, seed=5, threads=2, progress=False,
             checkpoint=folder / "run.npz")
    print("finished", flush=True)
""")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic data set on disk, and the final weights of an uninterrupted run."""
    from lenet_native import train
    from lenet_native.idx import read_idx, write_idx
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    write_idx(folder / "img.idx", rng.integers(0, 256, (80, 28, 28), dtype=np.uint8))
    write_idx(folder / "lbl.idx", (np.arange(80) % 10).astype(np.uint8))
    model = ln.LeNet5(head="softmax", seed=3, threads=2)
    train(model, read_idx(folder / "img.idx"), read_idx(folder / "lbl.idx"), epochs=4,
          batch_size=16, seed=5, threads=2, progress=False, checkpoint=folder / "ref.npz")
    return folder, model.params.copy()


def _kill_at(folder, point, target):
    for p in folder.glob("run*"):
        p.unlink()
    for p in folder.glob(".run*"):
        p.unlink()
    (folder / "paused").unlink(missing_ok=True)
    script = folder / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), point, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    try:
        deadline = time.monotonic() + 120
        while not (folder / "paused").exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the training process ended before {point} #{target}: {out!r} {err!r}")
            if time.monotonic() > deadline:
                pytest.fail(f"the training process never reached {point} #{target}")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _resume(folder):
    from lenet_native import train
    from lenet_native.idx import read_idx
    model = ln.LeNet5(head="softmax", seed=99, threads=2)  # its own weights are replaced
    history = train(model, read_idx(folder / "img.idx"), read_idx(folder / "lbl.idx"),
                    epochs=4, batch_size=16, seed=5, threads=2, progress=False,
                    checkpoint=folder / "run.npz", resume=True)
    return model, history


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("point, target", [
    ("mid-epoch", 12),            # in epoch 3 (5 batches per epoch)
    ("during-state", 2),          # writing the state file of epoch 2
    ("during-history", 3),        # writing the history of epoch 3
    ("after-model", 2),           # epoch 2 fully saved
    pytest.param("during-model", 3),   # writing the model file of epoch 3
    pytest.param("after-state", 2),    # between the state and the model file
])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tiny_run, point, target):
    """The training process is killed with SIGKILL (no clean-up at all) at a chosen point;
    the checkpoint on disk is complete and valid, and resuming from it ends with weights
    bit-identical to an uninterrupted run with the same seed and threads."""
    folder, want = tiny_run
    _kill_at(folder, point, target)
    saved = ln.LeNet5.load(folder / "run.npz")          # never half-written
    assert saved.meta["training"]["epochs_done"] >= 1
    json.loads((folder / "run.history.json").read_text())
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert all(n.startswith(".run.") and n.endswith(".tmp") for n in leftovers), leftovers
    model, history = _resume(folder)
    assert len(history) == 4 and not history.interrupted
    assert np.array_equal(model.params, want), "resumed run differs from the uninterrupted run"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_sigkill_before_the_first_checkpoint(tiny_run):
    """Killed in epoch 1: there is no checkpoint, and resuming says so (FileNotFoundError)."""
    folder, _ = tiny_run
    _kill_at(folder, "mid-epoch", 2)
    assert not (folder / "run.npz").exists()
    with pytest.raises(FileNotFoundError):
        _resume(folder)
