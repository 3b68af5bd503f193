"""int8 inference (lenet_native.quantize, csrc/q8*.c) against the NumPy integer reference
(lenet_native.reference_int8): every integer layer bit for bit on every int8 variant this
CPU runs; saturation; calibration sets refused; int8 files validated on load."""
import numpy as np
import pytest

from lenet_native import LeNet5, _core
from lenet_native import reference_int8 as R
from lenet_native.checks import preprocess
from lenet_native.layout import C3_TABLE
from lenet_native.quantize import QuantizedLeNet5, calibration_digits, quantize

Q8_ISAS = _core.q8_available_isas()


@pytest.fixture(scope="module", params=["softmax", "rbf"])
def qmodel(request):
    return quantize(LeNet5.pretrained(request.param, threads=1))


def _inputs():
    rng = np.random.default_rng(5)
    digits = preprocess(calibration_digits()[:24])
    noise = rng.uniform(-0.3, 1.4, (8, 32, 32)).astype(np.float32)   # beyond the input range
    return np.concatenate([digits, noise])


def test_variants_listed():
    assert Q8_ISAS[0] == "portable"
    assert set(Q8_ISAS) <= set(_core.q8_compiled_isas())
    assert _core.q8_best_isa() == Q8_ISAS[-1]


@pytest.mark.parametrize("isa", Q8_ISAS)
def test_integer_layers_bit_exact(qmodel, isa):
    """Each integer layer's int32 sums, from the codes the C kernels fed it, equal the
    reference's; the codes equal the reference's too (its float epilogue uses np.tanh)."""
    q = QuantizedLeNet5(qmodel.state_dict(), qmodel.head, isa=isa, threads=2)
    x = _inputs()
    out, L = q.layers(x)
    Q = q.state_dict()
    n = len(x)
    np.testing.assert_array_equal(L["in"], R.input_codes(x))
    np.testing.assert_array_equal(L["c1"], R.conv_sums(L["in"][:, None].astype(np.int32) - R.IN_ZERO,
                                                       Q["c1.weight"]))
    np.testing.assert_array_equal(L["c3"], R.conv_sums(L["s2"], Q["c3.weight"], C3_TABLE))
    np.testing.assert_array_equal(L["c5"], R.dense_sums(L["s4"].reshape(n, -1),
                                                        Q["c5.weight"].reshape(120, -1)))
    np.testing.assert_array_equal(L["f6"], R.dense_sums(L["c5q"], Q["f6.weight"]))
    ref, RL = R.forward(Q, x, q.head, keep=True)
    for k in ("s2", "s4", "c5q"):   # a code may differ by one where tanh rounds apart
        d = np.abs(RL[k] - L[k])
        assert d.max() <= 1 and d.mean() < 1e-3, k
    np.testing.assert_allclose(out, ref, atol=0.05 if q.head == "softmax" else 0.05)
    assert (out.argmax(1) == ref.argmax(1)).all() or q.head == "rbf"
    np.testing.assert_array_equal(q.forward(x), out)          # keep=False: the same outputs
    one = np.stack([q.forward(x[i:i + 1])[0] for i in range(3)])
    np.testing.assert_array_equal(one, out[:3])               # one image = inside a batch


def test_variants_agree(qmodel):
    x = _inputs()
    sums = [QuantizedLeNet5(qmodel.state_dict(), qmodel.head, isa=i).layers(x)[1]["c1"] for i in Q8_ISAS]
    for s in sums[1:]:
        np.testing.assert_array_equal(s, sums[0])


@pytest.mark.parametrize("isa", Q8_ISAS)
def test_saturation(qmodel, isa):
    """Input beyond [-0.1, 1.175] clips to codes 0 / 255; activations at the calibrated
    extremes requantize to +-127 and never wrap."""
    q = QuantizedLeNet5(qmodel.state_dict(), qmodel.head, isa=isa)
    x = np.full((2, 32, 32), -0.1, np.float32)
    x[0, :, :16] = 1e6
    x[1, :, :16] = -1e6
    x[1, :, 16:] = 1.175
    _, L = q.layers(x)
    assert L["in"][0, :, :16].min() == 255 and L["in"][1, :, :16].max() == 0
    assert (L["in"][1, :, 16:] == 255).all() and (L["in"][0, :, 16:] == 0).all()
    # activation scales shrunk 4x: the calibrated range is exceeded and codes saturate
    Q = q.state_dict()
    for k in ("act.s2", "act.s4", "act.c5"):
        Q[k] = np.float32(Q[k] / 4)
    qs = QuantizedLeNet5(Q, q.head, isa=isa)
    xs = preprocess(calibration_digits()[:16])
    _, L = qs.layers(xs)
    for k in ("s2", "s4", "c5q"):
        assert L[k].min() >= -127 and L[k].max() <= 127
        assert (np.abs(L[k]) == 127).any(), k
    _, RL = R.forward(Q, xs, q.head, keep=True)
    assert np.abs(RL["s2"] - L["s2"]).max() <= 1


def test_nonfinite_input_refused(qmodel):
    x = preprocess(calibration_digits()[:2])
    x[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        qmodel.forward(x)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 28, 28), np.uint8), "empty"),
    (np.full((3, 32, 32), np.nan, np.float32), "NaN or infinity"),
    (np.full((3, 32, 32), np.inf, np.float32), "NaN or infinity"),
    (np.zeros((3, 30, 30), np.uint8), "shape"),
    (np.zeros((28, 28), np.uint8), "shape"),
])
def test_calibration_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        quantize(LeNet5(seed=0), bad)


def test_calibration_wrong_dtype_and_precision():
    with pytest.raises(TypeError, match="dtype"):
        quantize(LeNet5(seed=0), np.zeros((2, 28, 28), np.int16))
    with pytest.raises(ValueError, match="precision"):
        quantize(LeNet5(seed=0), precision="int4")


def test_lenet5_quantize_method():
    m = LeNet5.pretrained()
    x = calibration_digits()[:50]
    np.testing.assert_array_equal(m.quantize().predict(x), quantize(m).predict(x))
    assert LeNet5.pretrained(precision="int8").precision == "int8"


def test_save_load_roundtrip(qmodel, tmp_path):
    p = tmp_path / "q.npz"
    qmodel.save(p)
    back = QuantizedLeNet5.load(p)
    x = preprocess(calibration_digits()[:20])
    np.testing.assert_array_equal(back.forward(x), qmodel.forward(x))
    assert back.head == qmodel.head
    with pytest.raises(ValueError, match="int8"):
        LeNet5.load(p)                       # an int8 file is not an fp32 one
    fp = tmp_path / "fp.npz"
    LeNet5(seed=0).save(fp)
    with pytest.raises(ValueError, match="precision"):
        QuantizedLeNet5.load(fp)


@pytest.mark.parametrize("change, match", [
    (lambda d: d.pop("act.s2"), "missing array 'act.s2'"),
    (lambda d: d.__setitem__("c1.weight", d["c1.weight"].astype(np.float32)), "dtype"),
    (lambda d: d.__setitem__("c5.scale", np.zeros(120, np.float32)), "positive"),
    (lambda d: d.__setitem__("act.c5", np.float32(np.nan)), "NaN"),
    (lambda d: d.__setitem__("act.s4", np.float32(1.0)), "squash"),
    (lambda d: d.__setitem__("f6.weight", np.full((84, 120), -128, np.int8)), "-128"),
    (lambda d: d.__setitem__("c3.weight", np.ones((16, 6, 5, 5), np.int8)), "Table I"),
    (lambda d: d.__setitem__("c5.weight", d["c5.weight"][:60]), "shape"),
])
def test_damaged_file_refused(qmodel, tmp_path, change, match):
    d = qmodel.state_dict()
    change(d)
    bad = QuantizedLeNet5.__new__(QuantizedLeNet5)
    bad.head, bad.meta, bad._q = qmodel.head, {}, {k: v for k, v in d.items() if k != "c3.table"}
    p = tmp_path / "bad.npz"
    bad.save(p)
    with pytest.raises(ValueError, match=match):
        QuantizedLeNet5.load(p)


def test_accuracy_on_mnist(mnist_path):
    """MNIST test error of the int8 models at most 0.05 points above fp32's (issue 18)."""
    from lenet_native.datasets import load_mnist
    x, y = load_mnist(mnist_path, split="test")
    for head in ("softmax", "rbf"):
        m = LeNet5.pretrained(head)
        e32 = (m.predict(x) != y).mean()
        e8 = (quantize(m).predict(x) != y).mean()
        assert e8 <= e32 + 0.0005, (head, e32, e8)
