"""Every instruction-set variant of the whole-network kernels (portable C, AVX2+FMA,
AVX-512, generic 128-bit vectors; see csrc/simd_forward.c, simd_grad.c, simd_sdlm.c) that this CPU can run, against the NumPy reference; results
independent of the thread count and of the batch an image comes in; and the errors for a
variant that does not exist or that this CPU cannot run."""
import os
import subprocess
import tempfile
import sys

import numpy as np
import pytest

import lenet_native as ln
from lenet_native import _core, reference as ref
from lenet_native.layout import C3_IN, C3_OUT, trainable_mask, unpack

from conftest import big_random_state

ISAS = _core.available_isas()
HEADS = ["softmax", "rbf"]


def make(head, seed=0, scale=3.0):
    model = ln.LeNet5(head=head, seed=seed, threads=1)
    model.load_state_dict(big_random_state(model, np.random.default_rng(seed + 100), scale))
    return model


def inputs(rng, n):
    return ln.preprocess(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))


def fwd(model, x, isa, threads=1, **kw):
    return _core.forward(model.params, C3_OUT, C3_IN, model.head, x, threads, isa=isa, **kw)


def grad(model, x, y, isa, threads=1):
    return _core.loss_grad(model.params, C3_OUT, C3_IN, model.head, x, y.astype(np.int32),
                           np.float32(1.0 / len(y)), threads, isa=isa)


# ----------------------------------------------------------------------------- the variants

def assert_layers_close(got, want, floor, atol_frac, rtol=1e-3):
    """Per layer: got[k] ~ want[k] within rtol and an absolute tolerance of atol_frac times
    the layer's largest |want| (at least floor)."""
    for k in want:
        scale = max(floor, float(np.abs(want[k]).max()))
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol_frac * scale, err_msg=k)


def test_variant_lists():
    assert ISAS[0] == "portable"
    assert set(ISAS) <= set(_core.compiled_isas()) <= set(_core.ISAS)
    assert _core.default_isa() in ISAS and _core.best_isa() in ISAS
    # the fastest first: the wide x86 variants, then generic vectors, then plain C
    assert _core.best_isa() == next(i for i in ("avx512", "avx2", "vec128", "portable") if i in ISAS)
    if os.environ.get("LENET_NATIVE_ISA", "") in ("", "auto", "best"):
        assert _core.default_isa() == _core.best_isa()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("n", [1, 5, 16, 37])
def test_forward_matches_reference(isa, head, n):
    model = make(head)
    x = inputs(np.random.default_rng(n), n)
    got = fwd(model, x, isa, threads=2)
    want = ref.forward(model.state_dict(), x.astype(np.float64), head)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
def test_activations_match_reference_and_forward(isa, head):
    model = make(head)
    x = inputs(np.random.default_rng(3), 19)
    out, acts = fwd(model, x, isa, threads=2, keep_activations=True)
    np.testing.assert_array_equal(out, fwd(model, x, isa, threads=2))
    np.testing.assert_array_equal(acts[:, _core.ACT_OFFSETS["output"][0]:], out)
    want = ref.activations(model.state_dict(), x.astype(np.float64), head)
    for name, (lo, hi) in _core.ACT_OFFSETS.items():
        w = np.asarray(want[name]).reshape(len(x), -1)
        np.testing.assert_allclose(acts[:, lo:hi], w, rtol=1e-4, atol=1e-4 * max(1, np.abs(w).max()),
                                   err_msg=name)


@pytest.mark.parametrize("isa", ISAS)
def test_forward_independent_of_threads_and_batch(isa):
    """Bit-for-bit: any thread count, and an image alone or at any place in a batch
    (whole blocks of lanes, leftovers)."""
    model = make("softmax")
    x = inputs(np.random.default_rng(4), 53)
    base = fwd(model, x, isa, threads=1)
    for threads in (2, 3, 7):
        np.testing.assert_array_equal(fwd(model, x, isa, threads=threads), base)
    for k in (0, 15, 16, 31, 50, 52):
        np.testing.assert_array_equal(fwd(model, x[k:k + 1], isa), base[k:k + 1])
    np.testing.assert_array_equal(fwd(model, x[3:40], isa, threads=2), base[3:40])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("n", [1, 7, 37])
def test_loss_grad_matches_reference(isa, head, n):
    model = make(head, scale=1.5)
    rng = np.random.default_rng(10 + n)
    x, y = inputs(rng, n), rng.integers(0, 10, n)
    losses, out, g = grad(model, x, y, isa, threads=2)
    rloss, rgrads = ref.loss_and_grad(model.state_dict(), x.astype(np.float64), y, head)
    assert float(np.mean(losses, dtype=np.float64)) == pytest.approx(rloss, rel=1e-4, abs=1e-5)
    np.testing.assert_array_equal(out, fwd(model, x, isa))
    assert_layers_close(unpack(g, head, trainable_only=True), rgrads, 1e-3, 2e-4)


@pytest.mark.parametrize("isa", ISAS)
def test_loss_grad_independent_of_threads(isa):
    model = make("softmax", scale=1.5)
    rng = np.random.default_rng(12)
    for n in (5, 64, 100):
        x, y = inputs(rng, n), rng.integers(0, 10, n)
        base = grad(model, x, y, isa, threads=1)
        for threads in (2, 3):
            for a, b in zip(grad(model, x, y, isa, threads=threads), base):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("n", [1, 17, 64])
def test_sgd_train_step_is_loss_grad_then_sgd_step(isa, head, n):
    """The fused step (gradient summed and the update applied slice by slice) gives the bits
    of loss_grad into a zeroed buffer followed by sgd_step, for any thread count."""
    model = make(head, scale=1.5)
    rng = np.random.default_rng(20 + n)
    x, y = inputs(rng, n), rng.integers(0, 10, n).astype(np.int32)
    mask = trainable_mask(head)
    v0 = (rng.standard_normal(_core.NPARAMS) * 1e-3).astype(np.float32)
    p, v = model.params.copy(), v0.copy()
    g = np.zeros(_core.NPARAMS, np.float32)
    l1, o1, _ = _core.loss_grad(p, C3_OUT, C3_IN, head, x, y, 1.0 / n, 2, g, isa=isa)
    _core.sgd_step(p, v, g, mask, 0.05, 0.9, 5e-4, isa=isa)
    for threads in (1, 2, 3):
        q, w = model.params.copy(), v0.copy()
        l2, o2 = _core.sgd_train_step(q, w, mask, 0.05, 0.9, 5e-4, C3_OUT, C3_IN, head, x, y,
                                      1.0 / n, threads, isa=isa)
        np.testing.assert_array_equal(l2, l1)
        np.testing.assert_array_equal(o2, o1)
        np.testing.assert_array_equal(q, p)
        np.testing.assert_array_equal(w, v)
    assert not np.array_equal(p, model.params)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
def test_hessian_matches_reference(isa, head):
    model = make(head, scale=1.5)
    rng = np.random.default_rng(11)
    x, y = inputs(rng, 4), rng.integers(0, 10, 4)
    h = _core.hessian_diag(model.params, C3_OUT, C3_IN, head, x, y.astype(np.int32), 0.25, isa=isa)
    got = unpack(h, head, trainable_only=True)
    rh = ref.hessian_diag(model.state_dict(), x.astype(np.float64), y, head)
    for k in rh:
        assert (got[k] >= 0).all(), k
    assert_layers_close(got, rh, 1e-6, 1e-4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
def test_sdlm_epoch_is_per_sample_gradient_steps(isa, head):
    """sdlm_epoch = one step p -= step * g per sample, g the sample's own gradient at the
    current weights (checked against loss_grad of the same variant, one sample at a time)."""
    model = make(head, scale=1.0)
    rng = np.random.default_rng(13)
    x, y = inputs(rng, 6), rng.integers(0, 10, 6).astype(np.int32)
    step = np.full(_core.NPARAMS, 1e-3, np.float32) * trainable_mask(head)
    order = np.array([3, 0, 5, 5, 1], np.int64)
    p = model.params.copy()
    losses = _core.sdlm_epoch(p, C3_OUT, C3_IN, head, step, x, y, order, isa=isa)
    q = model.params.copy()
    for n, i in enumerate(order):
        l, _, g = _core.loss_grad(q, C3_OUT, C3_IN, head, x[i:i + 1], y[i:i + 1], 1.0, isa=isa)
        assert losses[n] == pytest.approx(l[0], rel=1e-5, abs=1e-6)
        q -= step * g
    np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("head", HEADS)
def test_sdlm_sample_gradient_matches_loss_grad(isa, head):
    """The per-sample gradient of sdlm_epoch (its own single-image backward) equals
    loss_grad's, layer by layer: one sample with a unit step gives p - g."""
    model = make(head, scale=1.5)
    rng = np.random.default_rng(14)
    x, y = inputs(rng, 3), rng.integers(0, 10, 3).astype(np.int32)
    mask = trainable_mask(head).astype(np.float32)
    for i in range(3):
        p0 = model.params.astype(np.float64)
        p = model.params.copy()
        _core.sdlm_epoch(p, C3_OUT, C3_IN, head, mask, x, y, np.array([i], np.int64), isa=isa)
        _, _, g = _core.loss_grad(model.params, C3_OUT, C3_IN, head, x[i:i + 1], y[i:i + 1], 1.0, isa=isa)
        got = unpack((p0 - p).astype(np.float32), head, trainable_only=True)
        assert_layers_close(got, unpack(g, head, trainable_only=True), 1e-4, 1e-4)


@pytest.mark.parametrize("isa", ISAS)
def test_squash_error_bound(isa):
    """Every variant's vectorised tanh stays within its stated bound of A tanh(S a)
    (csrc/simd.h: 6 float32 ulps for the SIMD rational form; csrc/layers_impl.h: 4 for the
    portable one): densely over [-20, 20], every float in [12.5, 13.5] (where the rational
    form's rounding errors peak) and around the clamp, and special values."""
    bound = 4.0 if isa == "portable" else 6.0
    every = np.arange(np.float32(12.5).view(np.int32), np.float32(13.5).view(np.int32) + 1,
                      dtype=np.int32).view(np.float32)
    around = np.float32(0.9375) + np.arange(-20000, 20001, dtype=np.float32) * np.spacing(np.float32(0.9375))
    a = np.concatenate([np.linspace(-20, 20, 400_001), every, -every, around, -around,
                        [0.0, -0.0, 1e-30, -1e-30, 1e-45, 13.5, 26.0, 3e38, -3e38]]).astype(np.float32)
    got = _core.squash_forward(a, isa=isa).astype(np.float64)
    want = ref.A * np.tanh(ref.S * a.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= bound
    nz = a != 0
    assert np.array_equal(np.signbit(got[nz]), np.signbit(a[nz]))
    inf = _core.squash_forward(np.array([np.inf, -np.inf, np.nan], np.float32), isa=isa)
    np.testing.assert_allclose(inf[:2], [ref.A, -ref.A], rtol=1e-6)
    if isa != "portable":  # the SIMD variants propagate NaN (the portable one returns A)
        assert np.isnan(inf[2])
    # the same in place and at any length (vector tails)
    for n in (1, 7, 17, 33):
        np.testing.assert_array_equal(_core.squash_forward(a[:n], isa=isa), got[:n].astype(np.float32))


# ----------------------------------------------------------------------------- errors

def test_unknown_variant_is_refused():
    model = make("softmax")
    x = inputs(np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="not an instruction-set variant.*portable"):
        fwd(model, x, "sse9")
    with pytest.raises(ValueError, match="not an instruction-set variant"):
        grad(model, x, np.zeros(1, np.int32), "")


@pytest.mark.parametrize("isa", sorted(set(_core.ISAS) - set(ISAS)))
def test_unsupported_variant_is_refused(isa):
    model = make("softmax")
    with pytest.raises(ValueError, match=isa):
        fwd(model, inputs(np.random.default_rng(0), 1), isa)


def _import_with(value):
    env = dict(os.environ, LENET_NATIVE_ISA=value)
    code = "from lenet_native import _core; print(_core.default_isa())"
    # run outside the checkout, so that the installed package is imported, not the sources
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())


@pytest.mark.parametrize("isa", ISAS)
def test_environment_selects_the_variant(isa):
    r = _import_with(isa)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == isa


def test_environment_refuses_unknown_variant():
    r = _import_with("avx1024")
    assert r.returncode != 0
    assert "LENET_NATIVE_ISA='avx1024' is not an instruction-set variant" in r.stderr
    assert "portable" in r.stderr


@pytest.mark.parametrize("isa", sorted(set(_core.ISAS) - set(ISAS)))
def test_environment_refuses_unsupported_variant(isa):
    r = _import_with(isa)
    assert r.returncode != 0 and "LENET_NATIVE_ISA" in r.stderr and isa in r.stderr
