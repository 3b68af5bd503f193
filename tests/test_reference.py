"""Tests of the NumPy reference implementation (lenet_native.reference) and of
the RBF prototypes (lenet_native.prototypes).

Gradients are checked against central finite differences in float64; forward
layers against naive loop implementations written here.  Needs only NumPy:
nothing here touches the compiled extension.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import lenet_native.prototypes as protos
import lenet_native.reference as ref
# the package's layout, which the reference computes too: the arrays' shapes, and the fan-in
# of the unit each array feeds (C3's is per map: 25 * connected S2 maps)
from lenet_native.layout import FAN_IN, SHAPES as PARAM_SHAPES

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def random_params(rng, head, scale=3.0, dtype=np.float64):
    """Random parameters uniform(-0.5, 0.5) / sqrt(fan_in) * scale.

    With scale 3 the pre-activations have roughly unit variance everywhere, so
    no layer is saturated or negligible -- better for gradient checks than the
    paper's (smaller) initialisation.  Unconnected C3 entries are filled with
    garbage on purpose: the reference must ignore them.
    """
    params = {}
    c3_fan = 25 * ref.C3_TABLE.sum(axis=1)
    for key, shape in PARAM_SHAPES.items():
        if head == "rbf" and key.startswith("out."):
            continue
        layer = key.split(".")[0]
        if layer == "c3":
            fan = c3_fan[:, None, None, None] if key == "c3.weight" else c3_fan
        else:
            fan = FAN_IN[layer]
        params[key] = (rng.uniform(-0.5, 0.5, size=shape) / np.sqrt(fan) * scale).astype(dtype)
    params["c3.weight"][~ref.C3_TABLE] = 7.0  # must be ignored
    params["c3.table"] = np.ones((16, 6), bool)  # must be ignored too
    if head == "rbf":
        params["out.prototypes"] = protos.rbf_prototypes().astype(dtype)
    return params


def random_images(rng, n, dtype=np.float64):
    """Images in the normalised input range [-0.1, 1.175]."""
    return rng.uniform(-0.1, 1.175, size=(n, 32, 32)).astype(dtype)


def numeric_grad(f, arr, indices, eps):
    """Central differences of scalar f() wrt arr[idx] for idx in indices (arr modified in place, restored)."""
    out = []
    for idx in indices:
        old = arr[idx]
        arr[idx] = old + eps
        fp = f()
        arr[idx] = old - eps
        fm = f()
        arr[idx] = old
        out.append((fp - fm) / (2 * eps))
    return np.array(out)


def all_indices(arr):
    return list(np.ndindex(arr.shape))


def assert_grad_close(num, ana, rtol=1e-6, atol=1e-9):
    num, ana = np.asarray(num), np.asarray(ana)
    scale = max(1.0, np.abs(ana).max(initial=0.0))
    np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol * scale)


def check_layer_grads(forward, backward_grads, inputs, rng, eps=1e-3):
    """L = sum(R * forward(*inputs)); compare backward(R) with finite differences
    of L wrt every entry of every input.

    Every layer is at most quadratic in any single input entry, so central
    differences have no truncation error and a large eps is fine; what is left
    is rounding, about 1e-16 * sum|R * out| / eps.
    """
    out = forward(*inputs)
    r = rng.standard_normal(out.shape)
    grads = backward_grads(r)
    assert len(grads) == len(inputs)
    rounding = 1e-16 * np.sum(np.abs(r * out)) / eps
    for arr, g in zip(inputs, grads):
        assert g.shape == arr.shape and g.dtype == np.float64
        num = numeric_grad(lambda: np.sum(r * forward(*inputs)), arr, all_indices(arr), eps)
        np.testing.assert_allclose(g, num.reshape(arr.shape), rtol=1e-9,
                                   atol=100 * rounding + 1e-12)


# --------------------------------------------------------------------------
# Constants, squash
# --------------------------------------------------------------------------

def test_constants_and_c3_table():
    assert ref.A == 1.7159 and ref.S == pytest.approx(2 / 3) and ref.RBF_J == 0.1
    t = ref.C3_TABLE
    assert t.shape == (16, 6) and t.dtype == bool
    assert t.sum() == 60
    assert list(t.sum(axis=1)) == [3] * 6 + [4] * 9 + [6]
    spec = {0: {0, 1, 2}, 1: {1, 2, 3}, 2: {2, 3, 4}, 3: {3, 4, 5}, 4: {0, 4, 5},
            5: {0, 1, 5}, 6: {0, 1, 2, 3}, 7: {1, 2, 3, 4}, 8: {2, 3, 4, 5},
            9: {0, 3, 4, 5}, 10: {0, 1, 4, 5}, 11: {0, 1, 2, 5}, 12: {0, 1, 3, 4},
            13: {1, 2, 4, 5}, 14: {0, 2, 3, 5}, 15: {0, 1, 2, 3, 4, 5}}
    for m, maps in spec.items():
        assert set(np.flatnonzero(t[m])) == maps
    # 60 * 25 weights + 16 biases = 1516 trainable C3 parameters
    assert t.sum() * 25 + 16 == 1516


def test_squash_values_and_grad():
    assert ref.squash(1.0) == pytest.approx(1.0, abs=1e-4)
    assert ref.squash(-1.0) == pytest.approx(-1.0, abs=1e-4)
    assert ref.squash(0.0) == 0.0
    a = np.linspace(-6, 6, 101)
    eps = 1e-6
    num = (ref.squash(a + eps) - ref.squash(a - eps)) / (2 * eps)
    np.testing.assert_allclose(ref.squash_grad(a), num, rtol=1e-7, atol=1e-9)
    assert ref.squash_grad(0.0) == pytest.approx(ref.A * ref.S)
    assert ref.squash(np.float32([0.5])).dtype == np.float32
    assert ref.squash_grad(np.float32([0.5])).dtype == np.float32


# --------------------------------------------------------------------------
# Layer forwards against naive loops
# --------------------------------------------------------------------------

def naive_conv(x, w, b):
    n, c, h, wd = x.shape
    m = w.shape[0]
    out = np.zeros((n, m, h - 4, wd - 4))
    for ni in range(n):
        for mi in range(m):
            for p in range(h - 4):
                for q in range(wd - 4):
                    out[ni, mi, p, q] = b[mi] + np.sum(x[ni, :, p:p + 5, q:q + 5] * w[mi])
    return out


@pytest.mark.parametrize("shape", [(1, 1, 5, 5), (2, 3, 7, 9), (1, 2, 6, 5), (3, 1, 8, 8)])
@pytest.mark.parametrize("m", [1, 4])
def test_conv5x5_matches_naive_loops(shape, m):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((m, shape[1], 5, 5))
    b = rng.standard_normal(m)
    out = ref.conv5x5(x, w, b)
    assert out.shape == (shape[0], m, shape[2] - 4, shape[3] - 4)
    np.testing.assert_allclose(out, naive_conv(x, w, b), rtol=1e-12, atol=1e-12)


def test_conv5x5_is_cross_correlation_not_convolution():
    # A kernel with a single 1 at tap (0, 1) reads x[p+0, q+1]: a shift, no flip.
    x = np.arange(2 * 1 * 8 * 9, dtype=np.float64).reshape(2, 1, 8, 9)
    w = np.zeros((1, 1, 5, 5))
    w[0, 0, 0, 1] = 1.0
    out = ref.conv5x5(x, w, np.zeros(1))
    np.testing.assert_array_equal(out[:, 0], x[:, 0, 0:4, 1:6])


def test_subsample_dense_rbf_match_naive():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 4))
    coef, bias = rng.standard_normal(3), rng.standard_normal(3)
    out = ref.subsample(x, coef, bias)
    assert out.shape == (2, 3, 3, 2)
    for n in range(2):
        for c in range(3):
            for p in range(3):
                for q in range(2):
                    s = x[n, c, 2 * p, 2 * q] + x[n, c, 2 * p + 1, 2 * q] \
                        + x[n, c, 2 * p, 2 * q + 1] + x[n, c, 2 * p + 1, 2 * q + 1]
                    assert out[n, c, p, q] == pytest.approx(coef[c] * s + bias[c])
    with pytest.raises(ValueError):
        ref.subsample(rng.standard_normal((1, 1, 5, 4)), np.ones(1), np.ones(1))

    xd = rng.standard_normal((3, 7))
    w, b = rng.standard_normal((5, 7)), rng.standard_normal(5)
    expect = np.array([[b[m] + sum(xd[n, k] * w[m, k] for k in range(7)) for m in range(5)]
                       for n in range(3)])
    np.testing.assert_allclose(ref.dense(xd, w, b), expect, rtol=1e-12)

    pr = rng.standard_normal((4, 7))
    expect = np.array([[sum((xd[n, k] - pr[i, k]) ** 2 for k in range(7)) for i in range(4)]
                       for n in range(3)])
    np.testing.assert_allclose(ref.rbf(xd, pr), expect, rtol=1e-12)


def test_layer_dtypes_follow_inputs():
    rng = np.random.default_rng(3)
    for dt in (np.float32, np.float64):
        x = rng.standard_normal((2, 2, 6, 6)).astype(dt)
        w = rng.standard_normal((3, 2, 5, 5)).astype(dt)
        b = rng.standard_normal(3).astype(dt)
        assert ref.conv5x5(x, w, b).dtype == dt
        assert all(g.dtype == dt for g in ref.conv5x5_backward(np.ones((2, 3, 2, 2), dt), x, w))
        c = np.ones(2, dt)
        assert ref.subsample(x, c, c).dtype == dt
        assert all(g.dtype == dt for g in ref.subsample_backward(np.ones((2, 2, 3, 3), dt), x, c))
        xd, wd = x.reshape(2, -1), rng.standard_normal((4, 72)).astype(dt)
        assert ref.dense(xd, wd, np.zeros(4, dt)).dtype == dt
        assert ref.rbf(xd, wd).dtype == dt
        assert ref.rbf_backward(np.ones((2, 4), dt), xd, wd).dtype == dt
        logits = rng.standard_normal((2, 10)).astype(dt)
        loss, d = ref.softmax_xent(logits, [1, 2])
        assert np.asarray(loss).dtype == dt and d.dtype == dt
        loss, d = ref.rbf_loss(np.abs(logits), [1, 2])
        assert np.asarray(loss).dtype == dt and d.dtype == dt


# --------------------------------------------------------------------------
# Layer backwards against finite differences (float64)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n,c,h,w,m", [(1, 1, 5, 5, 1), (2, 3, 7, 9, 4), (1, 2, 9, 6, 1), (3, 1, 6, 5, 2)])
def test_conv5x5_backward(n, c, h, w, m):
    rng = np.random.default_rng(10 + h)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((m, c, 5, 5))
    b = rng.standard_normal(m)
    check_layer_grads(ref.conv5x5, lambda r: ref.conv5x5_backward(r, x, wt), [x, wt, b], rng)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(5, 8), w=st.integers(5, 8),
       m=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_conv5x5_backward_random_shapes(n, c, h, w, m, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((m, c, 5, 5))
    b = rng.standard_normal(m)
    check_layer_grads(ref.conv5x5, lambda r: ref.conv5x5_backward(r, x, wt), [x, wt, b], rng)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (3, 5, 6, 4), (2, 1, 2, 10), (1, 3, 4, 4)])
def test_subsample_backward(shape):
    rng = np.random.default_rng(20 + shape[1])
    x = rng.standard_normal(shape)
    coef, bias = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    check_layer_grads(ref.subsample, lambda r: ref.subsample_backward(r, x, coef),
                      [x, coef, bias], rng)


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (3, 7, 5), (2, 1, 4), (1, 9, 1)])
def test_dense_backward(n, k, m):
    rng = np.random.default_rng(30 + k)
    x, w, b = rng.standard_normal((n, k)), rng.standard_normal((m, k)), rng.standard_normal(m)
    check_layer_grads(ref.dense, lambda r: ref.dense_backward(r, x, w), [x, w, b], rng)


@pytest.mark.parametrize("n,k,m", [(1, 1, 1), (3, 7, 5), (2, 84, 10)])
def test_rbf_backward(n, k, m):
    rng = np.random.default_rng(40 + k)
    x, pr = rng.standard_normal((n, k)), rng.choice([-1.0, 1.0], size=(m, k))
    check_layer_grads(lambda x_: ref.rbf(x_, pr), lambda r: (ref.rbf_backward(r, x, pr),), [x], rng)


@pytest.mark.parametrize("n", [1, 4])
def test_softmax_xent(n):
    rng = np.random.default_rng(50 + n)
    logits = rng.standard_normal((n, 10)) * 2
    labels = rng.integers(0, 10, n)
    loss, d = ref.softmax_xent(logits, labels)
    # value: direct formula
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(n), labels])), rel=1e-12)
    num = numeric_grad(lambda: ref.softmax_xent(logits, labels)[0], logits, all_indices(logits), 1e-6)
    assert_grad_close(num.reshape(logits.shape), d)
    # stable for huge logits
    big = np.array([[1e4] + [0.0] * 9, [-1e4] * 10])
    loss, d = ref.softmax_xent(big, [0, 3])
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    assert loss == pytest.approx(np.log(10) / 2)


@pytest.mark.parametrize("n", [1, 4])
def test_rbf_loss(n):
    rng = np.random.default_rng(60 + n)
    y = rng.uniform(0, 5, size=(n, 10))
    labels = rng.integers(0, 10, n)
    loss, d = ref.rbf_loss(y, labels)
    direct = np.mean(y[np.arange(n), labels] + np.log(np.exp(-0.1) + np.exp(-y).sum(axis=1)))
    assert loss == pytest.approx(direct, rel=1e-12)
    num = numeric_grad(lambda: ref.rbf_loss(y, labels)[0], y, all_indices(y), 1e-6)
    assert_grad_close(num.reshape(y.shape), d)
    # stable for large distances (exp(-y) underflows) and for tiny ones
    for scale in (1e4, 1e-8):
        yy = np.abs(rng.standard_normal((2, 10))) * scale
        loss, d = ref.rbf_loss(yy, [0, 9])
        direct_terms = yy[[0, 1], [0, 9]] + np.logaddexp.reduce(
            np.concatenate([np.full((2, 1), -0.1), -yy], axis=1), axis=1)
        assert np.isfinite(loss) and np.all(np.isfinite(d))
        assert loss == pytest.approx(direct_terms.mean(), rel=1e-12)


# --------------------------------------------------------------------------
# Whole network
# --------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_forward_shapes_and_dtypes(head):
    rng = np.random.default_rng(70)
    params32 = {k: (v.astype(np.float32) if v.dtype == np.float64 else v)
                for k, v in random_params(rng, head).items()}
    x = random_images(rng, 3, np.float32)
    acts = ref.activations(params32, x, head)
    expect = {"c1": (3, 6, 28, 28), "s2": (3, 6, 14, 14), "c3": (3, 16, 10, 10),
              "s4": (3, 16, 5, 5), "c5": (3, 120), "f6": (3, 84), "output": (3, 10)}
    assert {k: v.shape for k, v in acts.items()} == expect
    assert all(v.dtype == np.float32 for v in acts.values())
    out = ref.forward(params32, x, head)
    np.testing.assert_array_equal(out, acts["output"])
    # (N, 1, 32, 32) input gives the same result
    np.testing.assert_array_equal(ref.forward(params32, x[:, None], head), out)
    # batch of 1 equals the corresponding row of the batch
    np.testing.assert_allclose(ref.forward(params32, x[1:2], head), out[1:2], rtol=1e-5, atol=1e-5)
    # float64 in -> float64 out
    params64 = random_params(rng, head)
    assert ref.forward(params64, random_images(rng, 2), head).dtype == np.float64
    if head == "rbf":
        assert np.all(out >= 0)
    with pytest.raises(ValueError):
        ref.forward(params32, x[:, :28, :28], head)


def test_forward_ignores_unconnected_c3_entries():
    rng = np.random.default_rng(71)
    params = random_params(rng, "softmax")
    x = random_images(rng, 2)
    clean = dict(params, **{"c3.weight": params["c3.weight"] * ref.C3_TABLE[:, :, None, None]})
    np.testing.assert_array_equal(ref.forward(params, x), ref.forward(clean, x))


def test_activations_chain_by_layers():
    """activations() is the composition of the layer functions with squash."""
    rng = np.random.default_rng(72)
    p = random_params(rng, "softmax")
    x = random_images(rng, 2)
    acts = ref.activations(p, x, "softmax")
    w3 = np.where(ref.C3_TABLE[:, :, None, None], p["c3.weight"], 0.0)
    c1 = ref.squash(ref.conv5x5(x[:, None], p["c1.weight"], p["c1.bias"]))
    s2 = ref.squash(ref.subsample(c1, p["s2.weight"], p["s2.bias"]))
    c3 = ref.squash(naive_conv(s2, w3, p["c3.bias"]))
    s4 = ref.squash(ref.subsample(c3, p["s4.weight"], p["s4.bias"]))
    c5 = ref.squash(naive_conv(s4, p["c5.weight"], p["c5.bias"]).reshape(2, 120))
    f6 = ref.squash(c5 @ p["f6.weight"].T + p["f6.bias"])
    logits = f6 @ p["out.weight"].T + p["out.bias"]
    for name, val in [("c1", c1), ("s2", s2), ("c3", c3), ("s4", s4), ("c5", c5),
                      ("f6", f6), ("output", logits)]:
        np.testing.assert_allclose(acts[name], val, rtol=1e-10, atol=1e-12, err_msg=name)
    # no layer is saturated or negligible with these test parameters
    for name in ("c1", "s2", "c3", "s4", "c5", "f6"):
        assert 0.2 < np.std(acts[name]) < 1.3, name


def sample_indices(rng, arr, grad, k, allowed=None):
    """k random entries of arr (within `allowed` if given) plus the one with the largest |grad|."""
    candidates = np.argwhere(allowed) if allowed is not None else np.array(all_indices(arr))
    chosen = [tuple(candidates[i]) for i in rng.choice(len(candidates), size=min(k, len(candidates)),
                                                       replace=False)]
    masked = np.where(allowed, np.abs(grad), -1) if allowed is not None else np.abs(grad)
    chosen.append(np.unravel_index(np.argmax(masked), arr.shape))
    return chosen


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_loss_and_grad_finite_differences(head):
    rng = np.random.default_rng(80 if head == "softmax" else 81)
    params = random_params(rng, head)
    x = random_images(rng, 3)
    labels = np.array([3, 0, 7])
    loss, grads = ref.loss_and_grad(params, x, labels, head)

    expected_keys = [k for k in PARAM_SHAPES if head == "softmax" or not k.startswith("out.")]
    assert sorted(grads) == sorted(expected_keys)
    for k, g in grads.items():
        assert g.shape == PARAM_SHAPES[k] and g.dtype == np.float64, k
        assert np.any(g != 0), k

    # loss value agrees with forward + the loss function
    out = ref.forward(params, x, head)
    lossfn = ref.softmax_xent if head == "softmax" else ref.rbf_loss
    assert loss == pytest.approx(lossfn(out, labels)[0], rel=1e-12)

    # unconnected C3 entries: exactly zero gradient
    assert np.all(grads["c3.weight"][~ref.C3_TABLE] == 0.0)

    def f():
        return lossfn(ref.forward(params, x, head), labels)[0]

    for key in expected_keys:
        arr = params[key]
        allowed = None
        if key == "c3.weight":
            allowed = np.broadcast_to(ref.C3_TABLE[:, :, None, None], arr.shape)
        idx = sample_indices(rng, arr, grads[key], 6, allowed)
        num = numeric_grad(f, arr, idx, 1e-5)
        ana = np.array([grads[key][i] for i in idx])
        np.testing.assert_allclose(ana, num, rtol=1e-5, atol=1e-8, err_msg=key)


def test_loss_and_grad_float32():
    rng = np.random.default_rng(82)
    params = {k: v.astype(np.float32) if v.dtype == np.float64 else v
              for k, v in random_params(rng, "softmax").items()}
    x = random_images(rng, 4, np.float32)
    loss, grads = ref.loss_and_grad(params, x, [1, 2, 3, 4], "softmax")
    assert np.asarray(loss).dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    loss64, grads64 = ref.loss_and_grad({k: v.astype(np.float64) if v.dtype == np.float32 else v
                                         for k, v in params.items()},
                                        x.astype(np.float64), [1, 2, 3, 4], "softmax")
    assert loss == pytest.approx(loss64, rel=1e-5)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads64[k], rtol=1e-3,
                                   atol=1e-4 * np.abs(grads64[k]).max(), err_msg=k)


def test_grad_is_mean_over_batch():
    rng = np.random.default_rng(83)
    params = random_params(rng, "rbf")
    x = random_images(rng, 3)
    labels = np.array([4, 4, 1])
    loss, grads = ref.loss_and_grad(params, x, labels, "rbf")
    singles = [ref.loss_and_grad(params, x[i:i + 1], labels[i:i + 1], "rbf") for i in range(3)]
    assert loss == pytest.approx(np.mean([s[0] for s in singles]), rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], np.mean([s[1][k] for s in singles], axis=0),
                                   rtol=1e-9, atol=1e-14, err_msg=k)


# --------------------------------------------------------------------------
# Hessian diagonal (Gauss-Newton, LeCun et al. 1998 Appendix C)
# --------------------------------------------------------------------------

def fprime(x):
    """f'(a) expressed through x = f(a): A*S*(1 - (x/A)^2)."""
    return ref.A * ref.S * (1 - (x / ref.A) ** 2)


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_hessian_diag_shapes_and_sign(head):
    rng = np.random.default_rng(90)
    params = random_params(rng, head)
    x = random_images(rng, 3)
    labels = np.array([0, 5, 9])
    h = ref.hessian_diag(params, x, labels, head)
    _, grads = ref.loss_and_grad(params, x, labels, head)
    assert sorted(h) == sorted(grads)
    for k, v in h.items():
        assert v.shape == grads[k].shape and v.dtype == np.float64, k
        assert np.all(np.isfinite(v)) and np.all(v >= 0), k
        assert np.any(v > 0), k
    assert np.all(h["c3.weight"][~ref.C3_TABLE] == 0.0)
    assert np.all(h["c3.weight"][np.broadcast_to(ref.C3_TABLE[:, :, None, None], (16, 6, 5, 5))] > 0)
    # float32 in -> float32 out
    p32 = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in params.items()}
    h32 = ref.hessian_diag(p32, x.astype(np.float32), labels, head)
    for k in h:
        assert h32[k].dtype == np.float32
        np.testing.assert_allclose(h32[k], h[k], rtol=1e-3, atol=1e-5 * h[k].max(), err_msg=k)


def test_hessian_diag_is_mean_over_batch():
    rng = np.random.default_rng(91)
    for head in ("softmax", "rbf"):
        params = random_params(rng, head)
        x = random_images(rng, 3)
        labels = np.array([2, 8, 8])
        h = ref.hessian_diag(params, x, labels, head)
        singles = [ref.hessian_diag(params, x[i:i + 1], labels[i:i + 1], head) for i in range(3)]
        for k in h:
            np.testing.assert_allclose(h[k], np.mean([s[k] for s in singles], axis=0),
                                       rtol=1e-9, atol=1e-15, err_msg=(head, k))


def test_hessian_softmax_output_layer_is_exact():
    """The logits are linear in out.weight/out.bias, so there the Gauss-Newton
    diagonal is the exact second derivative: compare with finite differences."""
    rng = np.random.default_rng(92)
    params = random_params(rng, "softmax")
    x = random_images(rng, 4)
    labels = np.array([1, 1, 6, 0])
    h = ref.hessian_diag(params, x, labels, "softmax")

    def loss():
        return ref.softmax_xent(ref.forward(params, x, "softmax"), labels)[0]

    eps = 1e-3
    l0 = loss()
    for key in ("out.weight", "out.bias"):
        arr = params[key]
        for idx in sample_indices(rng, arr, h[key], 8):
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss()
            arr[idx] = old - eps
            lm = loss()
            arr[idx] = old
            second = (lp - 2 * l0 + lm) / eps ** 2
            assert h[key][idx] == pytest.approx(second, rel=1e-5, abs=1e-9), (key, idx)


def test_hessian_softmax_direct_formulas():
    """Every layer's h recomputed here from the activations, rule by rule."""
    rng = np.random.default_rng(93)
    p = random_params(rng, "softmax")
    x = random_images(rng, 3)
    labels = np.array([7, 2, 2])
    n = 3
    h = ref.hessian_diag(p, x, labels, "softmax")
    acts = ref.activations(p, x, "softmax")
    logits = acts["output"]
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    h_logit = prob * (1 - prob)                                         # (N, 10)
    np.testing.assert_allclose(h["out.bias"], h_logit.mean(0), rtol=1e-10)
    expect_w = np.mean(h_logit[:, :, None] * acts["f6"][:, None, :] ** 2, axis=0)
    np.testing.assert_allclose(h["out.weight"], expect_w, rtol=1e-10)
    # F6: h_a6_j = f'(a6_j)^2 * sum_i w_ij^2 h_logit_i
    h_a6 = fprime(acts["f6"]) ** 2 * (h_logit @ p["out.weight"] ** 2)
    np.testing.assert_allclose(h["f6.bias"], h_a6.sum(0) / n, rtol=1e-8)
    np.testing.assert_allclose(h["f6.weight"], (h_a6.T @ acts["c5"] ** 2) / n, rtol=1e-8)
    # C5: h_a5_k = f'(a5_k)^2 * sum_j w6_jk^2 h_a6_j
    h_a5 = fprime(acts["c5"]) ** 2 * (h_a6 @ p["f6.weight"] ** 2)
    np.testing.assert_allclose(h["c5.bias"], h_a5.sum(0) / n, rtol=1e-8)
    expect_c5w = np.einsum("nk,nchw->kchw", h_a5, acts["s4"] ** 2) / n
    np.testing.assert_allclose(h["c5.weight"], expect_c5w, rtol=1e-8)
    # S4: h_a4 = f'(a4)^2 * sum_k w5^2 h_a5; h_coef = sum (block sum)^2 h_a4
    h_s4 = np.einsum("nk,kchw->nchw", h_a5, p["c5.weight"] ** 2)
    h_a4 = fprime(acts["s4"]) ** 2 * h_s4
    c3 = acts["c3"]
    blocks = c3[:, :, 0::2, 0::2] + c3[:, :, 1::2, 0::2] + c3[:, :, 0::2, 1::2] + c3[:, :, 1::2, 1::2]
    np.testing.assert_allclose(h["s4.bias"], h_a4.sum((0, 2, 3)) / n, rtol=1e-8)
    np.testing.assert_allclose(h["s4.weight"], (h_a4 * blocks ** 2).sum((0, 2, 3)) / n, rtol=1e-8)
    # C3: each C3 pixel feeds one S4 unit with weight coef -> h_c3 = coef^2 h_a4 (upsampled)
    up = lambda v: v.repeat(2, axis=2).repeat(2, axis=3)  # noqa: E731
    h_a3 = fprime(c3) ** 2 * up(p["s4.weight"][None, :, None, None] ** 2 * h_a4)
    s2 = acts["s2"]
    w3sq = np.where(ref.C3_TABLE[:, :, None, None], p["c3.weight"], 0.0) ** 2
    h_c3w = np.zeros((16, 6, 5, 5))
    h_s2 = np.zeros_like(s2)
    for i in range(5):
        for j in range(5):
            h_c3w[:, :, i, j] = np.einsum("nmpq,ncpq->mc", h_a3, s2[:, :, i:i + 10, j:j + 10] ** 2)
            h_s2[:, :, i:i + 10, j:j + 10] += np.einsum("nmpq,mc->ncpq", h_a3, w3sq[:, :, i, j])
    h_c3w *= ref.C3_TABLE[:, :, None, None]
    np.testing.assert_allclose(h["c3.bias"], h_a3.sum((0, 2, 3)) / n, rtol=1e-8)
    np.testing.assert_allclose(h["c3.weight"], h_c3w / n, rtol=1e-8)
    # S2 and C1
    h_a2 = fprime(s2) ** 2 * h_s2
    c1 = acts["c1"]
    blocks1 = c1[:, :, 0::2, 0::2] + c1[:, :, 1::2, 0::2] + c1[:, :, 0::2, 1::2] + c1[:, :, 1::2, 1::2]
    np.testing.assert_allclose(h["s2.bias"], h_a2.sum((0, 2, 3)) / n, rtol=1e-8)
    np.testing.assert_allclose(h["s2.weight"], (h_a2 * blocks1 ** 2).sum((0, 2, 3)) / n, rtol=1e-8)
    h_a1 = fprime(c1) ** 2 * up(p["s2.weight"][None, :, None, None] ** 2 * h_a2)
    h_c1w = np.zeros((6, 1, 5, 5))
    for i in range(5):
        for j in range(5):
            h_c1w[:, 0, i, j] = np.einsum("nmpq,npq->m", h_a1, x[:, i:i + 28, j:j + 28] ** 2)
    np.testing.assert_allclose(h["c1.bias"], h_a1.sum((0, 2, 3)) / n, rtol=1e-8)
    np.testing.assert_allclose(h["c1.weight"], h_c1w / n, rtol=1e-8)


def test_hessian_rbf_direct_formulas():
    rng = np.random.default_rng(94)
    p = random_params(rng, "rbf")
    x = random_images(rng, 3)
    labels = np.array([3, 9, 0])
    n = 3
    h = ref.hessian_diag(p, x, labels, "rbf")
    acts = ref.activations(p, x, "rbf")
    y, f6, w = acts["output"], acts["f6"], p["out.prototypes"]
    q = np.exp(-y) / (np.exp(-0.1) + np.exp(-y).sum(1, keepdims=True))
    h_y = q * (1 - q)
    h_x = np.empty((n, 84))
    for s in range(n):
        for j in range(84):
            h_x[s, j] = 2 * 1 + sum(h_y[s, i] * (2 * (f6[s, j] - w[i, j])) ** 2 for i in range(10))
    h_a6 = fprime(f6) ** 2 * h_x
    np.testing.assert_allclose(h["f6.bias"], h_a6.mean(0), rtol=1e-8)
    np.testing.assert_allclose(h["f6.weight"], (h_a6.T @ acts["c5"] ** 2) / n, rtol=1e-8)


def test_hessian_hand_computed_network():
    """A network small enough to do by hand: every weight 0, only biases set.

    Then every layer's output is the constant f(bias) and nothing below the
    output depends on the input.  Softmax head with out.weight = 0: the
    logits are out.bias, p = softmax(out.bias), h_out.bias_i = p_i (1 - p_i),
    h_out.weight_ij = p_i (1 - p_i) f(b6_j)^2, and h for everything below F6's
    bias... F6: h_f6.bias_j = f'(b6_j)^2 * sum_i w_ij^2 h_i = 0 (w = 0).
    With out.weight = c everywhere instead: h_f6.bias_j = f'(b6_j)^2 c^2 sum_i p_i(1-p_i).
    """
    params = {k: np.zeros(s) for k, s in PARAM_SHAPES.items()}
    params["f6.bias"][:] = 1.0
    params["c5.bias"][:] = 0.5
    params["out.bias"][:] = np.log(np.arange(1, 11))   # p_i = i / 55 (i = 1..10)
    c = 0.3
    params["out.weight"][:] = c
    x = np.random.default_rng(95).uniform(-0.1, 1.175, (2, 32, 32))
    h = ref.hessian_diag(params, x, np.array([0, 4]), "softmax")
    # logits = c * sum_j f(1) + log(i) -> p_i = i / 55
    p = np.arange(1, 11) / 55
    hp = p * (1 - p)
    f1 = ref.A * np.tanh(ref.S * 1.0)          # f6 outputs, all equal
    np.testing.assert_allclose(h["out.bias"], hp, rtol=1e-12)
    np.testing.assert_allclose(h["out.weight"], np.outer(hp, np.full(84, f1 ** 2)), rtol=1e-12)
    fp1 = ref.A * ref.S * (1 - np.tanh(ref.S) ** 2)   # f'(1)
    h_a6 = fp1 ** 2 * c ** 2 * hp.sum()
    np.testing.assert_allclose(h["f6.bias"], np.full(84, h_a6), rtol=1e-12)
    f05 = ref.A * np.tanh(ref.S * 0.5)          # C5 outputs
    np.testing.assert_allclose(h["f6.weight"], np.full((84, 120), h_a6 * f05 ** 2), rtol=1e-12)
    # F6 weights are 0, so nothing reaches C5 and below
    for k in ("c5.bias", "c5.weight", "s4.weight", "s4.bias", "c3.weight", "c3.bias",
              "s2.weight", "s2.bias", "c1.weight", "c1.bias"):
        assert np.all(h[k] == 0), k

    # rbf head, same zero network: f6 = f(1) everywhere, y_i = sum_j (f1 - w_ij)^2
    rparams = {k: v for k, v in params.items() if not k.startswith("out.")}
    w = protos.rbf_prototypes().astype(np.float64)
    rparams["out.prototypes"] = w
    hr = ref.hessian_diag(rparams, x, np.array([0, 4]), "rbf")
    y = ((f1 - w) ** 2).sum(1)
    q = np.exp(-y) / (np.exp(-0.1) + np.exp(-y).sum())
    h_x = 2 + ((q * (1 - q))[:, None] * (2 * (f1 - w)) ** 2).sum(0)
    np.testing.assert_allclose(hr["f6.bias"], fp1 ** 2 * h_x, rtol=1e-12)
    np.testing.assert_allclose(hr["f6.weight"], np.outer(fp1 ** 2 * h_x, np.full(120, f05 ** 2)),
                               rtol=1e-12)


# --------------------------------------------------------------------------
# init_params
# --------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_init_params(head):
    params = ref.init_params(np.random.default_rng(96), head)
    trainable = ref.trainable_keys(head)
    n_trainable = sum(params[k].size for k in trainable if k != "c3.weight") \
        + int(np.count_nonzero(ref.C3_TABLE)) * 25
    assert n_trainable == (60_850 if head == "softmax" else 60_000)
    for k in trainable:
        assert params[k].dtype == np.float32 and params[k].shape == PARAM_SHAPES[k]
    assert np.all(params["c3.weight"][~ref.C3_TABLE] == 0)
    assert np.abs(params["c1.weight"]).max() <= 2.4 / 25
    assert np.abs(params["c5.weight"]).max() <= 2.4 / 400
    assert np.abs(params["c3.weight"][0]).max() <= 2.4 / 75
    assert np.abs(params["c3.weight"][15]).max() <= 2.4 / 150
    np.testing.assert_array_equal(params["c3.table"], ref.C3_TABLE)
    if head == "rbf":
        np.testing.assert_array_equal(params["out.prototypes"], protos.rbf_prototypes())


# --------------------------------------------------------------------------
# RBF prototypes
# --------------------------------------------------------------------------

def test_rbf_prototypes_shape_values():
    w = protos.rbf_prototypes()
    assert w.shape == (10, 84) and w.dtype == np.float32
    assert set(np.unique(w)) == {-1.0, 1.0}
    # a fresh array each call
    w[0, 0] = 5
    assert protos.rbf_prototypes()[0, 0] != 5


def test_rbf_prototypes_distinct():
    w = protos.rbf_prototypes()
    dist = (w[:, None, :] != w[None, :, :]).sum(axis=2)
    off = dist[~np.eye(10, dtype=bool)]
    assert np.all(off > 0), "two prototypes are identical"
    assert off.min() >= 8, f"prototypes too similar (min Hamming distance {off.min()})"


def test_rbf_prototypes_look_like_digits():
    w = protos.rbf_prototypes().reshape(10, 12, 7)
    for d in range(10):
        ink = w[d] > 0
        assert 15 <= ink.sum() <= 50, d
        assert not ink[0].any() and not ink[-1].any(), d   # blank top and bottom rows
        art = protos.prototype_ascii(d)
        rows = art.split("\n")
        assert len(rows) == 12 and all(len(r) == 7 and set(r) <= {"#", "."} for r in rows)
        np.testing.assert_array_equal(np.array([[ch == "#" for ch in r] for r in rows]), ink)
    with pytest.raises(ValueError):
        protos.prototype_ascii(10)
    with pytest.raises(ValueError):
        protos.prototype_ascii(-1)


def test_prototype_file_validation():
    good = "\n\n".join(protos.prototype_ascii(d) for d in range(10))
    assert protos.parse_prototypes("# header\n# more\n" + good).shape == (10, 12, 7)
    with pytest.raises(ValueError, match="expected 10"):
        protos.parse_prototypes("\n\n".join(protos.prototype_ascii(d) for d in range(9)))
    with pytest.raises(ValueError, match="rows"):
        protos.parse_prototypes(good.replace(".......\n", "", 1))
    with pytest.raises(ValueError, match="characters"):
        protos.parse_prototypes(good.replace("..###..", "..###...", 1))
    with pytest.raises(ValueError, match="invalid"):
        protos.parse_prototypes(good.replace("..###..", "..#X#..", 1))
    with pytest.raises(ValueError, match="invalid"):
        protos.parse_prototypes(good + "\n# trailing comment")
