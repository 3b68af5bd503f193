"""Every C kernel against the NumPy reference (lenet_native.reference), forward and backward.

Outputs are pre-filled with NaN so that an element the kernel forgets to write shows up;
shapes come from Hypothesis (sizes of 1 and odd sizes included).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lenet_native import _core, reference as ref
from lenet_native.layout import C3_IN, C3_OUT, C3_TABLE

SETTINGS = settings(max_examples=25, deadline=None)
RTOL, ATOL = 2e-5, 2e-5


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def nan_out(*shape):
    return np.full(shape, np.nan, dtype=np.float32)


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


sizes = st.integers(min_value=0, max_value=4)
small = st.integers(min_value=1, max_value=4)
plane = st.integers(min_value=5, max_value=13)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@SETTINGS
@given(N=sizes, C=small, M=small, H=plane, W=plane, seed=seeds)
def test_conv5x5_forward_backward(N, C, M, H, W, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, N, C, H, W), rand(rng, M, C, 5, 5, scale=0.3), rand(rng, M)
    out = _core.conv5x5_forward(x, w, b, out=nan_out(N, M, H - 4, W - 4))
    close(out, ref.conv5x5(x.astype(np.float64), w, b))
    dout = rand(rng, N, M, H - 4, W - 4)
    got = _core.conv5x5_backward(dout, x, w)
    want = ref.conv5x5_backward(dout.astype(np.float64), x, w)
    for g, r in zip(got, want):
        close(g, r, rtol=1e-4, atol=1e-4)


def test_conv5x5_threads_do_not_change_results():
    rng = np.random.default_rng(1)
    x, w, b = rand(rng, 7, 1, 32, 32), rand(rng, 6, 1, 5, 5), rand(rng, 6)
    assert np.array_equal(_core.conv5x5_forward(x, w, b, threads=1), _core.conv5x5_forward(x, w, b, threads=2))


def _packed_c3(rng, scale=0.3):
    dense = rand(rng, 16, 6, 5, 5, scale=scale) * C3_TABLE[:, :, None, None]
    return dense, np.ascontiguousarray(dense[C3_OUT, C3_IN].reshape(60, 25))


@SETTINGS
@given(N=sizes, H=plane, W=plane, seed=seeds)
def test_c3_sparse_matches_masked_dense(N, H, W, seed):
    rng = np.random.default_rng(seed)
    x, b = rand(rng, N, 6, H, W), rand(rng, 16)
    dense, packed = _packed_c3(rng)
    out = _core.c3_forward(x, packed, b, C3_OUT, C3_IN, out=nan_out(N, 16, H - 4, W - 4))
    close(out, ref.conv5x5(x.astype(np.float64), dense, b))
    dout = rand(rng, N, 16, H - 4, W - 4)
    dx, dw, db = _core.c3_backward(dout, x, packed, C3_OUT, C3_IN)
    rdx, rdw, rdb = ref.conv5x5_backward(dout.astype(np.float64), x, dense)
    close(dx, rdx, rtol=1e-4, atol=1e-4)
    close(dw, rdw[C3_OUT, C3_IN].reshape(60, 25), rtol=1e-4, atol=1e-4)
    close(db, rdb, rtol=1e-4, atol=1e-4)


def test_c3_never_reads_unconnected_weights():
    """Garbage where Table I has no connection must not matter: the kernel gets only the
    60 packed kernels, and a dense layout with NaN off the table gives the same answer."""
    rng = np.random.default_rng(2)
    x, b = rand(rng, 3, 6, 14, 14), rand(rng, 16)
    dense, packed = _packed_c3(rng)
    assert packed.shape == (60, 25) and int(C3_TABLE.sum()) == 60
    poisoned = dense.copy()
    poisoned[~C3_TABLE] = np.nan
    # the packing takes only connected entries, so the poisoned dense gives the same packed
    assert np.array_equal(np.ascontiguousarray(poisoned[C3_OUT, C3_IN].reshape(60, 25)), packed)
    assert np.isfinite(_core.c3_forward(x, packed, b, C3_OUT, C3_IN)).all()


def test_c3_bad_pair_list_raises():
    rng = np.random.default_rng(3)
    x, b = rand(rng, 1, 6, 14, 14), rand(rng, 16)
    _, packed = _packed_c3(rng)
    bad = C3_IN.copy()
    bad[5] = 6  # S2 has maps 0..5
    with pytest.raises(ValueError, match="pair"):
        _core.c3_forward(x, packed, b, C3_OUT, bad)


@SETTINGS
@given(N=sizes, C=small, H2=st.integers(1, 8), W2=st.integers(1, 8), seed=seeds)
def test_subsample_forward_backward(N, C, H2, W2, seed):
    rng = np.random.default_rng(seed)
    H, W = 2 * H2, 2 * W2
    x, coef, bias = rand(rng, N, C, H, W), rand(rng, C), rand(rng, C)
    out = _core.subsample_forward(x, coef, bias, out=nan_out(N, C, H2, W2))
    close(out, ref.subsample(x.astype(np.float64), coef, bias))
    dout = rand(rng, N, C, H2, W2)
    for g, r in zip(_core.subsample_backward(dout, x, coef),
                    ref.subsample_backward(dout.astype(np.float64), x, coef)):
        close(g, r, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(n=st.integers(0, 300), seed=seeds, scale=st.sampled_from([0.1, 1.0, 5.0, 50.0]))
def test_squash_forward_backward(n, seed, scale):
    rng = np.random.default_rng(seed)
    a = rand(rng, n, scale=scale)
    y = _core.squash_forward(a, out=nan_out(n))
    close(y, ref.squash(a.astype(np.float64)), rtol=0, atol=3e-7)
    dy = rand(rng, n)
    close(_core.squash_backward(dy, y), dy * ref.squash_grad(a.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_squash_error_bound_over_the_whole_range():
    """The vectorised tanh stays within 4 float32 ulps of A*tanh(S*a) computed in double
    (the bound documented in csrc/layers_impl.h), densely over [-20, 20] and at the
    switch point between its two formulas."""
    a = np.concatenate([np.linspace(-20, 20, 400_001), [0.0, -0.0, 0.9375, -0.9375, 1e-30, 13.5]])
    a = a.astype(np.float32)
    got = _core.squash_forward(a).astype(np.float64)
    want = ref.A * np.tanh(ref.S * a.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 4.0
    y = _core.squash_forward(np.array([1.0, -1.0], np.float32))
    close(y, [1.0, -1.0], atol=2e-4)  # f(1) = 1 by the paper's choice of A and S


@SETTINGS
@given(N=sizes, K=st.integers(1, 130), M=st.integers(1, 20), seed=seeds)
def test_dense_forward_backward(N, K, M, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, N, K), rand(rng, M, K, scale=0.2), rand(rng, M)
    close(_core.dense_forward(x, w, b, out=nan_out(N, M)), ref.dense(x.astype(np.float64), w, b))
    dout = rand(rng, N, M)
    for g, r in zip(_core.dense_backward(dout, x, w), ref.dense_backward(dout.astype(np.float64), x, w)):
        close(g, r, rtol=1e-4, atol=1e-4)


@SETTINGS
@given(N=sizes, K=st.integers(1, 100), seed=seeds)
def test_rbf_forward_backward(N, K, seed):
    rng = np.random.default_rng(seed)
    x, proto = rand(rng, N, K), np.sign(rand(rng, 10, K)) + 0.0
    proto = proto.astype(np.float32)
    close(_core.rbf_forward(x, proto, out=nan_out(N, 10)), ref.rbf(x.astype(np.float64), proto), rtol=1e-5, atol=1e-4)
    dout = rand(rng, N, 10)
    close(_core.rbf_backward(dout, x, proto), ref.rbf_backward(dout.astype(np.float64), x, proto), rtol=1e-4, atol=1e-4)


@SETTINGS
@given(N=st.integers(1, 9), seed=seeds, scale=st.sampled_from([0.5, 5.0, 80.0]),
       M=st.sampled_from([10, 1, 16, 17, 37]))
def test_losses(N, seed, scale, M):
    """M: the network's 10, and other widths (the C keeps the exponentials for M <= 16 and
    recomputes them above). The reference's formulas take any width; its labels are the
    network's digits 0..9."""
    rng = np.random.default_rng(seed)
    z = rand(rng, N, M, scale=scale)
    labels = rng.integers(0, min(M, 10), N).astype(np.int32)
    y = np.abs(z)  # RBF distances are non-negative
    rl, rdz = ref.softmax_xent(z.astype(np.float64), labels)
    rbl, rdy = ref.rbf_loss(y.astype(np.float64), labels)
    losses, dz = _core.loss_forward_backward("softmax", z, labels, 1.0 / N)
    close(losses.mean(), rl, rtol=1e-5, atol=1e-4)
    close(dz, rdz, rtol=1e-4, atol=1e-6)
    losses, dy = _core.loss_forward_backward("rbf", y, labels, 1.0 / N)
    close(losses.mean(), rbl, rtol=1e-5, atol=1e-4)
    close(dy, rdy, rtol=1e-4, atol=1e-6)


def test_loss_label_out_of_range_raises():
    with pytest.raises(ValueError, match="label"):
        _core.loss_forward_backward("softmax", np.zeros((2, 10), np.float32), np.array([0, 10], np.int32), 1.0)


def test_softmax_rows_sum_to_one():
    rng = np.random.default_rng(4)
    z = rand(rng, 5, 10, scale=30)
    p = _core.softmax(z)
    close(p.sum(axis=1), np.ones(5), atol=1e-6)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    close(p, e / e.sum(axis=1, keepdims=True), atol=1e-6)


def test_sgd_step_respects_mask_momentum_and_decay():
    p = np.array([1.0, 2.0, 3.0], np.float32)
    v = np.array([0.5, 0.0, 1.0], np.float32)
    g = np.array([0.1, 0.2, 0.3], np.float32)
    mask = np.array([1, 1, 0], np.uint8)
    _core.sgd_step(p, v, g, mask, 0.1, 0.9, 0.01)
    v_want = np.array([0.9 * 0.5 + 0.1 + 0.01 * 1.0, 0.2 + 0.02, 1.0])
    close(v, v_want, atol=1e-7)
    close(p, [1.0 - 0.1 * v_want[0], 2.0 - 0.1 * v_want[1], 3.0], atol=1e-7)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000, 60850])
def test_sgd_step_same_bits_on_every_isa(n):
    """The vectorised updates do the portable loop's operations in its order: the same bits
    (training resumed on another machine continues identically), mask included."""
    rng = np.random.default_rng(n)
    p0 = rng.standard_normal(n).astype(np.float32)
    v0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    mask = (rng.random(n) < 0.7).astype(np.uint8)
    results = []
    for isa in _core.available_isas():
        p, v = p0.copy(), v0.copy()
        _core.sgd_step(p, v, g, mask, 0.05, 0.9, 5e-4, isa=isa)
        np.testing.assert_array_equal(p[mask == 0], p0[mask == 0])
        np.testing.assert_array_equal(v[mask == 0], v0[mask == 0])
        results.append((p, v))
    want_v = (np.float32(0.9) * v0 + (g + np.float32(5e-4) * p0)).astype(np.float32)
    for p, v in results:
        np.testing.assert_array_equal(p, results[0][0])
        np.testing.assert_array_equal(v, results[0][1])
        close(v[mask == 1], want_v[mask == 1], atol=1e-6)
