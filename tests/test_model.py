"""The whole network and the Python API: native against the NumPy reference, parameter and
connection counts, weight files, and the errors bad input must raise."""
import json
import os

import numpy as np
import pytest

import lenet_native as ln
from lenet_native import _core, reference as ref
from lenet_native.checks import as_input, as_labels
from lenet_native.layout import C3_IN, C3_OUT, C3_TABLE, is_placed

from conftest import big_random_state

HEADS = ["softmax", "rbf"]


def make_model(head, seed=0, threads=2, scale=3.0):
    model = ln.LeNet5(head=head, seed=seed, threads=threads)
    model.load_state_dict(big_random_state(model, np.random.default_rng(seed + 100), scale))
    return model


def inputs(rng, n):
    digits = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return ln.preprocess(digits)


# ----------------------------------------------------------------------------- preprocess

def test_preprocess_pads_and_scales():
    d = np.zeros((2, 28, 28), np.uint8)
    d[0, 0, 0], d[1, 27, 27] = 255, 128
    x = ln.preprocess(d)
    assert x.shape == (2, 32, 32) and x.dtype == np.float32
    assert x[0, 2, 2] == pytest.approx(1.175) and x[0, 0, 0] == pytest.approx(-0.1)
    assert x[1, 29, 29] == pytest.approx(-0.1 + 1.275 * 128 / 255)
    assert (x[:, :2] == np.float32(-0.1)).all() and (x[:, :, 30:] == np.float32(-0.1)).all()
    assert ln.preprocess(d[0]).shape == (1, 32, 32)


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((2, 28, 28), np.float32), TypeError),
    (np.zeros((2, 27, 28), np.uint8), ValueError),
    (np.zeros((2, 1, 28, 28), np.uint8), ValueError),
])
def test_preprocess_rejects(bad, exc):
    with pytest.raises(exc):
        ln.preprocess(bad)


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("n", [0, 1, 2, 7, 33])
def test_forward_matches_reference(head, n):
    model = make_model(head)
    x = inputs(np.random.default_rng(n), n)
    got = model.forward(x)
    want = ref.forward(model.state_dict(), x.astype(np.float64), head)
    assert got.shape == (n, 10) and got.dtype == np.float32
    scale = max(1.0, float(np.abs(want).max())) if n else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    # the reference backend of the model gives the same
    np.testing.assert_allclose(model.forward(x, backend="reference"), want, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("head", HEADS)
def test_forward_on_mnist_matches_reference(head, mnist_test_sample):
    model = make_model(head, scale=2.0)
    x = ln.preprocess(mnist_test_sample[0][:64])
    want = ref.forward(model.state_dict(), x.astype(np.float64), head)
    np.testing.assert_allclose(model.forward(x), want, rtol=1e-4, atol=1e-4 * max(1, np.abs(want).max()))


def test_every_layer_matters():
    """With the test weights, perturbing any layer's parameters changes the output."""
    model = make_model("softmax")
    x = inputs(np.random.default_rng(5), 4)
    base = model.forward(x)
    for key in ["c1.weight", "s2.weight", "c3.weight", "s4.weight", "c5.weight", "f6.weight", "out.weight"]:
        state = model.state_dict()
        state[key] = (state[key] * 1.1).astype(np.float32)
        other = ln.LeNet5(seed=0)
        other.load_state_dict(state)
        assert np.abs(other.forward(x) - base).max() > 1e-3, key


def test_forward_accepts_layouts_and_dtypes():
    model = make_model("softmax")
    x = inputs(np.random.default_rng(6), 5)
    want = model.forward(x)
    np.testing.assert_array_equal(model.forward(x[:, None]), want)
    np.testing.assert_allclose(model.forward(x.astype(np.float64)), want, rtol=1e-6, atol=1e-6)
    # non-contiguous: every other image, a transposed copy, a Fortran-ordered copy
    big = inputs(np.random.default_rng(6), 10)
    np.testing.assert_array_equal(model.forward(big[::2]), model.forward(np.ascontiguousarray(big[::2])))
    xt = np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(model.forward(xt), want)
    np.testing.assert_array_equal(model.forward(np.asfortranarray(x)), want)
    assert model.forward(x.tolist()).shape == (5, 10)


def test_threads_do_not_change_forward():
    x = inputs(np.random.default_rng(7), 9)
    a = make_model("rbf", threads=1).forward(x)
    b = make_model("rbf", threads=2).forward(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, exc, match", [
    (np.zeros((2, 28, 28), np.float32), ValueError, "shape"),
    (np.zeros((2, 3, 32, 32), np.float32), ValueError, "shape"),
    (np.zeros((2, 32, 32), np.uint8), TypeError, "preprocess"),
    (np.zeros((2, 32, 32), np.int64), TypeError, "float"),
    (np.zeros((2, 32, 32), np.complex64), TypeError, "float"),
    (np.full((2, 32, 32), np.nan, np.float32), ValueError, "NaN"),
    (np.full((2, 1, 32, 32), np.nan, np.float32), ValueError, "NaN"),
    (np.full((1, 32, 32), np.inf), ValueError, "NaN or infinity"),
    (np.full((1, 32, 32), 1e300), ValueError, "too large"),
    (np.zeros(5, np.float32), ValueError, "shape"),
    ("not an array", TypeError, "float"),
])
def test_forward_rejects(bad, exc, match):
    with pytest.raises(exc, match=match):
        ln.LeNet5(seed=0).forward(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="head"):
        ln.LeNet5(head="sigmoid")
    with pytest.raises(ValueError, match="threads"):
        ln.LeNet5(threads=0)
    with pytest.raises(ValueError, match="backend"):
        ln.LeNet5(seed=0).forward(np.zeros((1, 32, 32)), backend="torch")


# ----------------------------------------------------------------------------- predict, activations

@pytest.mark.parametrize("head", HEADS)
def test_predict_and_proba(head):
    model = make_model(head)
    digits = np.random.default_rng(8).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    out = model.forward(ln.preprocess(digits))
    labels = model.predict(digits)
    np.testing.assert_array_equal(labels, out.argmin(1) if head == "rbf" else out.argmax(1))
    np.testing.assert_array_equal(model.predict(ln.preprocess(digits)), labels)
    p = model.predict_proba(digits)
    assert p.shape == (6, 10)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    np.testing.assert_array_equal(p.argmax(1), labels)
    np.testing.assert_array_equal(model.predict(digits, backend="reference"), labels)


@pytest.mark.parametrize("head", HEADS)
def test_activations_match_reference(head):
    model = make_model(head)
    x = inputs(np.random.default_rng(9), 3)
    got = model.activations(x)
    want = ref.activations(model.state_dict(), x.astype(np.float64), head)
    shapes = {"c1": (3, 6, 28, 28), "s2": (3, 6, 14, 14), "c3": (3, 16, 10, 10), "s4": (3, 16, 5, 5),
              "c5": (3, 120), "f6": (3, 84), "output": (3, 10)}
    assert set(got) == set(shapes)
    for k, shape in shapes.items():
        assert got[k].shape == shape, k
        w = np.asarray(want[k]).reshape(shape)
        np.testing.assert_allclose(got[k], w, rtol=1e-4, atol=1e-4 * max(1, np.abs(w).max()), err_msg=k)
    np.testing.assert_array_equal(got["output"], model.forward(x))
    ref_backend = model.activations(x, backend="reference")
    assert {k: v.shape for k, v in ref_backend.items()} == {k: v.shape for k, v in got.items()}


# ----------------------------------------------------------------------------- counts and init

def test_summary_figures():
    s = ln.LeNet5(head="rbf", seed=0).summary()
    for figure in ["156", "122,304", "5,880", "1,516", "151,600", "2,000", "48,120", "10,164", "340,908",
                   "60,000"]:
        assert figure in s, figure
    assert "850" in ln.LeNet5(head="softmax", seed=0).summary()


@pytest.mark.parametrize("head", HEADS)
def test_parameter_counts(head):
    model = ln.LeNet5(head=head, seed=0)
    state = model.state_dict()
    trainable = sum(v.size for k, v in state.items() if k.split(".")[0] in ("c1", "s2", "s4", "c5", "f6")
                    and k != "c3.table")
    trainable += 60 * 25 + 16  # C3: connected kernels and biases only
    assert trainable == 60_000
    assert int(C3_TABLE.sum()) == 60
    assert model.num_parameters() == (60_850 if head == "softmax" else 60_000)


def test_initialisation_follows_the_paper():
    state = ln.LeNet5(head="softmax", seed=1).state_dict()
    fan = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120, "out": 84}
    for k, v in state.items():
        layer = k.split(".")[0]
        if layer in fan:
            bound = 2.4 / fan[layer]
            assert np.abs(v).max() <= bound and np.abs(v).max() > 0.8 * bound, k
    w = state["c3.weight"]
    for m in range(16):
        bound = 2.4 / (25 * C3_TABLE[m].sum())
        assert np.abs(w[m]).max() <= bound
    assert (w[~C3_TABLE] == 0).all()
    # same seed, same weights; different seeds differ
    a, b = ln.LeNet5(seed=3).state_dict(), ln.LeNet5(seed=3).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["c1.weight"], ln.LeNet5(seed=4).state_dict()["c1.weight"])


def test_rbf_prototypes_are_fixed_digits():
    state = ln.LeNet5(head="rbf", seed=0).state_dict()
    p = state["out.prototypes"]
    assert p.shape == (10, 84) and set(np.unique(p)) == {-1.0, 1.0}
    assert len({row.tobytes() for row in p}) == 10


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("head", HEADS)
def test_loss_and_grad_matches_reference(head):
    model = make_model(head, scale=1.5)
    rng = np.random.default_rng(10)
    x, y = inputs(rng, 5), rng.integers(0, 10, 5)
    loss, grads = model.loss_and_grad(x, y)
    rloss, rgrads = ref.loss_and_grad(model.state_dict(), x.astype(np.float64), y, head)
    assert loss == pytest.approx(rloss, rel=1e-4, abs=1e-5)
    assert set(grads) == set(rgrads)
    for k in rgrads:
        scale = max(1e-3, float(np.abs(rgrads[k]).max()))
        np.testing.assert_allclose(grads[k], rgrads[k], rtol=1e-3, atol=2e-4 * scale, err_msg=k)
    assert (grads["c3.weight"][~C3_TABLE] == 0).all()
    rl, rg = model.loss_and_grad(x, y, backend="reference")
    assert rl == pytest.approx(rloss)


@pytest.mark.parametrize("head", HEADS)
def test_hessian_diag_matches_reference(head):
    model = make_model(head, scale=1.5)
    rng = np.random.default_rng(11)
    x, y = inputs(rng, 4), rng.integers(0, 10, 4)
    h = model.hessian_diag(x, y)
    rh = ref.hessian_diag(model.state_dict(), x.astype(np.float64), y, head)
    for k in rh:
        assert (h[k] >= 0).all(), k
        scale = max(1e-6, float(np.abs(rh[k]).max()))
        np.testing.assert_allclose(h[k], rh[k], rtol=1e-3, atol=1e-4 * scale, err_msg=k)


def test_gradient_is_independent_of_threads():
    rng = np.random.default_rng(12)
    x, y = inputs(rng, 37), rng.integers(0, 10, 37)
    g1 = make_model("softmax", threads=1).loss_and_grad(x, y)[1]
    g2 = make_model("softmax", threads=2).loss_and_grad(x, y)[1]
    for k in g1:
        np.testing.assert_array_equal(g1[k], g2[k])


@pytest.mark.parametrize("labels, exc, match", [
    ([0, 1], ValueError, "2 labels for 3"),
    ([0, 1, 10], ValueError, "0..9"),
    ([0, -1, 2], ValueError, "0..9"),
    ([0.5, 1, 2], TypeError, "integers"),
    ([[0, 1, 2]], ValueError, "1-D"),
])
def test_labels_validated(labels, exc, match):
    model = ln.LeNet5(seed=0)
    with pytest.raises(exc, match=match):
        model.loss_and_grad(np.zeros((3, 32, 32), np.float32), labels)


# ----------------------------------------------------------------------------- files

@pytest.mark.parametrize("head", HEADS)
def test_save_load_round_trip_is_bit_exact(tmp_path, head):
    model = make_model(head)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = ln.LeNet5.load(path)
    assert loaded.head == head
    a, b = model.state_dict(), loaded.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    x = inputs(np.random.default_rng(13), 3)
    np.testing.assert_array_equal(model.forward(x), loaded.forward(x))
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["head"] == head and z["c3.table"].dtype == bool
        assert z["c3.weight"].shape == (16, 6, 5, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def _write_npz(path, arrays):
    np.savez(path, **arrays)
    return path


def _good_arrays(head="softmax"):
    model = ln.LeNet5(head=head, seed=0)
    arrays = model.state_dict()
    arrays["meta"] = np.array(json.dumps({"format": "lenet_native.lenet5", "version": 1, "head": head}))
    return arrays


def _mutations():
    def drop(k):
        return lambda a: a.pop(k)

    def set_(k, v):
        return lambda a: a.__setitem__(k, v)

    bad_c3 = _good_arrays()["c3.weight"].copy()
    bad_c3[0, 5, 2, 2] = 0.5
    nan_f6 = _good_arrays()["f6.weight"].copy()
    nan_f6[3, 4] = np.nan
    table = C3_TABLE.copy()
    table[0, 5] = True
    return [
        (drop("c5.bias"), "'c5.bias'"),
        (drop("meta"), "'meta'"),
        (set_("c1.weight", np.zeros((6, 25), np.float32)), "'c1.weight' has shape"),
        (set_("c1.bias", np.zeros(6, np.float64)), "'c1.bias' has dtype float64"),
        (set_("f6.weight", nan_f6), "'f6.weight' contains NaN"),
        (set_("c3.weight", bad_c3), "C3 map 0, S2 map 5"),
        (set_("c3.table", table), "'c3.table' is not the paper's Table I"),
        (set_("extra", np.zeros(3, np.float32)), "unexpected array 'extra'"),
        (set_("meta", np.array("{not json")), "'meta' is not valid JSON"),
        (set_("meta", np.array(json.dumps({"format": "other", "version": 1, "head": "softmax"}))), "format"),
        (set_("meta", np.array(json.dumps({"format": "lenet_native.lenet5", "version": 9, "head": "softmax"}))),
         "version 9"),
    ]


@pytest.mark.parametrize("mutate, match", _mutations())
def test_load_rejects_bad_files(tmp_path, mutate, match):
    arrays = _good_arrays()
    mutate(arrays)
    path = _write_npz(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=match) as info:
        ln.LeNet5.load(path)
    assert "bad.npz" in str(info.value)


def test_load_rejects_object_arrays_without_unpickling(tmp_path):
    arrays = _good_arrays()
    arrays["c1.bias"] = np.array([object()] * 6, dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="pickle"):
        ln.LeNet5.load(path)


def test_load_rejects_non_zip_and_truncated(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        ln.LeNet5.load(p)
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        ln.LeNet5.load(cut)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        ln.LeNet5.load(tmp_path / "missing.npz")


def test_rbf_file_needs_prototypes(tmp_path):
    arrays = _good_arrays("rbf")
    arrays["out.prototypes"] = arrays["out.prototypes"] * 0.5
    with pytest.raises(ValueError, match="out.prototypes"):
        ln.LeNet5.load(_write_npz(tmp_path / "p.npz", arrays))


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    first = ln.LeNet5(seed=1)
    first.save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        ln.LeNet5(seed=2).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_unaligned_buffers_are_copied_not_read_misaligned():
    """A float32 or int32 array whose data is not aligned to its item (a view at an odd
    byte offset) is legal NumPy but not something C may read as floats/ints: it is copied
    before the kernels see it, with the same results (.ci/sanitize's UBSan caught one)."""
    model = make_model("softmax")
    x = inputs(np.random.default_rng(9), 3)
    y = np.array([1, 7, 3])

    def unaligned(a):
        buf = bytearray(a.nbytes + 1)
        u = np.frombuffer(buf, a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        assert not u.flags.aligned
        return u

    # the zero-copy path declines it, the conversion makes an aligned copy
    assert model._native_net().forward(unaligned(x), 1) is None
    assert as_input(unaligned(x)).flags.aligned
    assert as_labels(unaligned(y.astype(np.int32)), 3, "t").flags.aligned
    want = model.forward(x)
    np.testing.assert_array_equal(model.forward(unaligned(x)), want)
    np.testing.assert_array_equal(model.forward(unaligned(x[:, None])), want)
    np.testing.assert_array_equal(model.predict(unaligned(x)), model.predict(x))
    loss, grads = model.loss_and_grad(unaligned(x), unaligned(y.astype(np.int32)))
    loss2, grads2 = model.loss_and_grad(x, y)
    assert loss == loss2
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads2[k])


def test_parameter_vector_placement_changes_speed_not_results():
    """Every model keeps C5's weights on a 64-byte line (layout.param_vector), however it
    was made; the C code gives the same bits wherever the vector lies."""
    import copy
    import pickle

    def placed(m):
        return is_placed(m.params)

    model = make_model("rbf")                       # __init__, then load_state_dict
    assert placed(model) and placed(ln.LeNet5("softmax", seed=1))
    assert placed(pickle.loads(pickle.dumps(model))) and placed(copy.deepcopy(model))
    assert copy.copy(model).params is model.params    # a shallow copy still shares them
    x = inputs(np.random.default_rng(10), 21)
    y = np.random.default_rng(11).integers(0, 10, 21).astype(np.int32)
    want = model.forward(x)
    want_grad = _core.loss_grad(model.params, C3_OUT, C3_IN,
                                         model.head, x, y, 1.0, 2)[2]
    raw = np.empty(model.params.size + 16, np.float32)
    for shift in range(16):
        p = raw[shift:shift + model.params.size]
        p[:] = model.params
        net = _core.Net(p, C3_OUT, C3_IN, model.head)
        np.testing.assert_array_equal(net.forward(x, 2), want)
        np.testing.assert_array_equal(net.forward(x[:1], 1), want[:1])
        g = _core.loss_grad(p, C3_OUT, C3_IN, model.head, x, y,
                                     1.0, 2)[2]
        np.testing.assert_array_equal(g, want_grad)


def test_one_32x32_image_is_a_batch_of_one():
    model = make_model("softmax")
    x = inputs(np.random.default_rng(13), 1)
    want = model.forward(x)
    assert model._native_net().forward(x[0], 1) is not None   # the zero-copy path takes it
    np.testing.assert_array_equal(model.forward(x[0]), want)
    np.testing.assert_array_equal(model.forward(x[0].astype(np.float64)), want)


def test_forward_of_an_empty_unaligned_batch_is_an_empty_result():
    # an empty view at an odd address: NumPy calls it aligned, so it is never copied
    raw = np.zeros(4 * 32 * 32 + 1, np.uint8)[1:1]
    x = np.frombuffer(raw, np.float32).reshape(0, 32, 32)
    out = ln.LeNet5(head="softmax", seed=0).forward(x)
    assert out.shape == (0, 10) and out.dtype == np.float32
