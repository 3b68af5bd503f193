"""Each layer kernel, NumPy reference against the native C kernel, on 64 images.

    pytest benchmarks/test_bench_kernels.py --benchmark-group-by=group
"""
import numpy as np
import pytest

from lenet_native import _core, reference as ref
from lenet_native.layout import C3_IN, C3_OUT, C3_TABLE

from conftest import IMPLS


def _c3_packed(state):
    return np.ascontiguousarray(state["c3.weight"][C3_OUT, C3_IN].reshape(60, 25))


def _kernel(net, layer, impl):
    """(function, args) computing one layer's pre-activation for net.layer_in[layer]."""
    s, x = net.state, net.layer_in[layer]
    if layer == "c1":
        return (ref.conv5x5, (x, s["c1.weight"], s["c1.bias"])) if impl == "reference" else \
               (_core.conv5x5_forward, (x, s["c1.weight"], s["c1.bias"]))
    if layer in ("s2", "s4"):
        return (ref.subsample, (x, s[layer + ".weight"], s[layer + ".bias"])) if impl == "reference" else \
               (_core.subsample_forward, (x, s[layer + ".weight"], s[layer + ".bias"]))
    if layer == "c3":
        if impl == "reference":
            return ref.conv5x5, (x, s["c3.weight"] * C3_TABLE[:, :, None, None], s["c3.bias"])
        return _core.c3_forward, (x, _c3_packed(s), s["c3.bias"], C3_OUT, C3_IN)
    if layer == "c5":
        w = np.ascontiguousarray(s["c5.weight"].reshape(120, 400))
        return (ref.dense, (x, w, s["c5.bias"])) if impl == "reference" else (_core.dense_forward, (x, w, s["c5.bias"]))
    if layer == "f6":
        return (ref.dense, (x, s["f6.weight"], s["f6.bias"])) if impl == "reference" else \
               (_core.dense_forward, (x, s["f6.weight"], s["f6.bias"]))
    if layer == "head":
        return (ref.dense, (x, s["out.weight"], s["out.bias"])) if impl == "reference" else \
               (_core.dense_forward, (x, s["out.weight"], s["out.bias"]))
    raise KeyError(layer)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layer", ["c1", "s2", "c3", "s4", "c5", "f6", "head"])
def test_kernel(benchmark, net, layer, impl):
    benchmark.group = f"kernel {layer} (64 images)"
    fn, args = _kernel(net, layer, impl)
    out = benchmark(fn, *args)
    want = _kernel(net, layer, "reference")[0](*_kernel(net, layer, "reference")[1])
    np.testing.assert_allclose(np.asarray(out).reshape(np.shape(want)), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_kernel_rbf_head(benchmark, net_rbf, impl):
    benchmark.group = "kernel rbf head (64 images)"
    x, p = net_rbf.layer_in["head"], net_rbf.state["out.prototypes"]
    fn = ref.rbf if impl == "reference" else _core.rbf_forward
    benchmark(fn, x, p)


@pytest.mark.parametrize("impl", ["reference"] + [f"native-{isa}" for isa in _core.available_isas()])
def test_squash(benchmark, impl):
    """The scaled tanh over one image's worth of activations x 64 (517,376 values, in
    cache): NumPy against every instruction-set variant (portable: the Cephes form;
    AVX2/AVX-512: the rational form of csrc/simd.h)."""
    benchmark.group = "squash 64 images of activations"
    a = np.random.default_rng(0).standard_normal(64 * 8084).astype(np.float32)
    out = np.empty_like(a)
    if impl == "reference":
        benchmark(ref.squash, a)
    else:
        benchmark(_core.squash_forward, a, out, impl.split("-", 1)[1])


@pytest.mark.parametrize("isa", _core.available_isas())
def test_sgd_update(benchmark, isa):
    """The SGD update over the 60,850 parameters (momentum, weight decay, mask), per
    instruction-set variant (the same bits on each)."""
    benchmark.group = "sgd update, 60,850 parameters"
    from lenet_native.layout import trainable_mask
    rng = np.random.default_rng(0)
    p = rng.standard_normal(_core.NPARAMS).astype(np.float32)
    v = np.zeros_like(p)
    g = (rng.standard_normal(_core.NPARAMS) * 1e-3).astype(np.float32)
    mask = trainable_mask("rbf")
    benchmark(_core.sgd_step, p, v, g, mask, 1e-3, 0.9, 5e-4, isa)
