"""lenet_native.interop: the ONNX graph against LeNet5.forward in ONNX Runtime (and OpenVINO
when installed) on the MNIST test set, the PyTorch module's forward and autograd gradients
against ours, the round trips, and `lenet-native export`. Each part skips, saying why, when
its optional extra is not installed."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lenet_native import LeNet5, cli, preprocess, reference
from lenet_native import interop

from lenet_native.layout import HEADS


@pytest.fixture(scope="module")
def test_set(mnist_path):
    """The whole MNIST test set (the repo-root conftest's ``mnist_path``; skipped without
    it): uint8 images, labels."""
    from lenet_native.datasets import load_mnist
    return load_mnist(mnist_path, split="test")


@pytest.fixture(scope="module")
def digits(mnist_test_sample):
    """The first 500 MNIST test digits, shipped with the package (every run has them)."""
    return mnist_test_sample


@pytest.fixture(scope="module", params=HEADS)
def pretrained(request):
    return LeNet5.pretrained(request.param, threads=2)


def _close(got, want):
    """Outputs equal to 1e-5 relative to each image's output scale: |got - want| <= 1e-5 *
    max(1, max_j |want_j|) (float32 rounding grows with the values summed: the logits reach
    ~17, the rbf head's distances ~260, where one float32 ulp is 3e-5; measured worst on the
    MNIST test set: 9.5e-6 absolute for the logits, 1.9e-4 for the distances)."""
    scale = np.maximum(1.0, np.abs(want).max(axis=1, keepdims=True))
    err = np.abs(got.astype(np.float64) - want) / scale
    assert err.max() <= 1e-5, f"max difference {err.max():.3g} of the output scale"


def _labels(out, head):
    return out.argmin(1) if head == "rbf" else out.argmax(1)


# ----------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def onnx():
    return pytest.importorskip("onnx", reason="the onnx extra is not installed "
                                              "(pip install \"lenet_native[onnx]\")")


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed "
                                                     "(pip install \"lenet_native[onnx]\")")


def _session(ort, path_or_bytes):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes,
                                opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("c3", interop.C3_FORMS)
def test_onnx_matches_forward_on_the_test_set(onnx, ort, pretrained, test_set, tmp_path, c3):
    """Both pretrained models, both C3 forms: the checker passes, ONNX Runtime's outputs equal
    LeNet5.forward to 1e-5 and give the same label for every digit of the test set."""
    images, labels = test_set
    path = tmp_path / f"{pretrained.head}.onnx"
    interop.to_onnx(pretrained, path, c3=c3)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "x" and out.name == "logits"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 1, 32, 32]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 10]
    # the whole set for the exported form; the slower grouped form on 2,000 digits
    n = len(images) if c3 == interop.C3_FORMS[0] else 2000
    images, labels = images[:n], labels[:n]
    x = preprocess(images)
    got = _session(ort, path).run(["logits"], {"x": x[:, None]})[0]
    want = pretrained.forward(x)
    assert got.dtype == np.float32 and got.shape == (len(x), 10)
    _close(got, want)
    agree = int((_labels(got, pretrained.head) == _labels(want, pretrained.head)).sum())
    assert agree == len(x), f"labels agree on {agree} of {len(x)}"
    # and the model is the one that was trained: its error on these digits is small
    assert (_labels(got, pretrained.head) != labels).mean() < 0.02


def test_onnx_dynamic_batch(ort, digits):
    model = LeNet5(head="softmax", seed=3)
    sess = _session(ort, interop.onnx_model(model).SerializeToString())
    x = preprocess(digits[0][:64])
    for n in (1, 7, 64):
        got = sess.run(["logits"], {"x": x[:n, None]})[0]
        assert got.shape == (n, 10)
        _close(got, model.forward(x[:n]))


def test_onnx_on_random_weights(ort):
    """Weights far from the pretrained ones (every layer matters, tanh saturates, C3 weights
    of the two forms taken from different places) still agree, for both heads."""
    from conftest import big_random_state
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (16, 32, 32)).astype(np.float32)
    for head in HEADS:
        model = LeNet5(head=head, seed=1)
        model.load_state_dict(big_random_state(model, rng))
        for c3 in interop.C3_FORMS:
            got = _session(ort, interop.onnx_model(model, c3=c3).SerializeToString()).run(
                None, {"x": x[:, None]})[0]
            _close(got, model.forward(x))


def test_openvino_matches_forward(pretrained, test_set, tmp_path):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (optional; pip install openvino)")
    path = tmp_path / "m.onnx"
    interop.to_onnx(pretrained, path)
    core = ov.Core()
    # f32: OpenVINO's CPU plugin otherwise runs in bf16 where the CPU has it (0.09 off)
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = preprocess(test_set[0])
    got = np.concatenate([compiled(x[i:i + 1000, None])[0] for i in range(0, len(x), 1000)])
    want = pretrained.forward(x)
    _close(got, want)
    assert np.array_equal(_labels(got, pretrained.head), _labels(want, pretrained.head))


def test_onnx_arguments_and_missing_extra(tmp_path, monkeypatch):
    model = LeNet5(seed=0)
    with pytest.raises(ValueError, match="c3 must be one of 'dense', 'grouped'"):
        interop.onnx_model(model, c3="sparse")
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx -> ImportError
    with pytest.raises(ImportError, match=r'pip install "lenet_native\[onnx\]"'):
        interop.to_onnx(model, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())                  # nothing half-written


def test_export_command(onnx, ort, digits, tmp_path, capsys):
    dest = tmp_path / "rbf.onnx"
    assert cli.main(["export", "--pretrained", "rbf", str(dest)]) == 0
    assert "wrote" in capsys.readouterr().out
    x = preprocess(digits[0][:50])
    _close(_session(ort, dest).run(None, {"x": x[:, None]})[0], LeNet5.pretrained("rbf").forward(x))
    # --weights, and .npz: the weight file again, bit for bit
    src = tmp_path / "src.npz"
    model = LeNet5(head="softmax", seed=5)
    model.save(src)
    assert cli.main(["export", "--weights", str(src), str(tmp_path / "copy.npz")]) == 0
    again = LeNet5.load(tmp_path / "copy.npz")
    for k, v in model.state_dict().items():
        assert np.array_equal(v, again.state_dict()[k]), k
    assert cli.main(["export", "--weights", str(src), str(tmp_path / "m.onnx")]) == 0
    _close(_session(ort, tmp_path / "m.onnx").run(None, {"x": x[:, None]})[0], model.forward(x))
    capsys.readouterr()


def test_export_command_errors(tmp_path, capsys):
    assert cli.main(["export", "--pretrained", "rbf", str(tmp_path / "m.txt")]) == 2
    assert "unknown format '.txt'; the file name must end in one of .npz, .onnx" in capsys.readouterr().err
    assert cli.main(["export", "--pretrained", "rbf", str(tmp_path / "no" / "m.npz")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err
    assert cli.main(["export", str(tmp_path / "m.npz")]) == 2            # neither source
    assert cli.main(["export", "--pretrained", "rbf", "--weights", "w.npz", "m.npz"]) == 2  # both
    assert not list(tmp_path.iterdir())


def test_export_writer_table_is_one_line_per_format(tmp_path, monkeypatch):
    from lenet_native import export
    monkeypatch.setitem(export.WRITERS, ".txt", "lenet_native.export:save")
    export.write(LeNet5(seed=0), tmp_path / "m.txt")
    assert (tmp_path / "m.txt").stat().st_size > 0


# ----------------------------------------------------------------------------- PyTorch


@pytest.fixture(scope="module")
def torch():
    t = pytest.importorskip("torch", reason="PyTorch is not installed (pip install \"lenet_native[torch]\")")
    t.set_num_threads(2)
    return t


def _torch_forward(torch, module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)[:, None]).numpy()


def test_torch_forward_matches(torch, pretrained, digits):
    x = preprocess(digits[0])
    module = interop.to_torch(pretrained)
    got, want = _torch_forward(torch, module, x), pretrained.forward(x)
    _close(got, want)
    assert np.array_equal(_labels(got, pretrained.head), _labels(want, pretrained.head))
    # (N, 32, 32) is taken too
    with torch.no_grad():
        assert np.array_equal(module(torch.from_numpy(x[:5])).numpy(), _torch_forward(torch, module, x[:5]))


def test_torch_module_is_honest(torch):
    """Names of the weight file, Table I as a bool buffer, subsampling coefficients and biases
    as parameters, prototypes as a buffer (never trained), a readable repr."""
    rbf = interop.to_torch(LeNet5(head="rbf", seed=0))
    params = dict(rbf.named_parameters())
    buffers = dict(rbf.named_buffers())
    assert set(buffers) == {"c3.table", "out.prototypes"}
    assert buffers["c3.table"].dtype == torch.bool
    assert np.array_equal(buffers["c3.table"].numpy(), LeNet5(seed=0).state_dict()["c3.table"])
    assert {"s2.weight", "s2.bias", "s4.weight", "s4.bias"} <= set(params)
    assert params["s4.weight"].shape == (16,)
    assert sum(p.numel() for p in params.values()) - 16 * 6 * 25 + 60 * 25 == 60000
    text = repr(rbf)
    for part in ("head='rbf'", "Table I: 60 of 96 pairs connected", "2x2 block sum * weight + bias",
                 "EuclideanRBF(84 -> 10, fixed +1/-1 prototypes)", "ScaledTanh(A=1.7159, S=2/3)"):
        assert part in text, part
    soft = interop.to_torch(LeNet5(head="softmax", seed=0))
    assert "out.weight" in dict(soft.named_parameters()) and "out.prototypes" not in soft.state_dict()


@pytest.mark.parametrize("head", HEADS)
def test_torch_gradients_equal_loss_and_grad(torch, head, digits):
    """Autograd through the module's loss equals loss_and_grad on real digits, float32; and
    in float64 against the NumPy reference, where the only differences are rounding."""
    images, labels = digits
    x, y = preprocess(images[:32]), labels[:32].astype(np.int64)
    model = LeNet5.pretrained(head, threads=2)
    loss, grads = model.loss_and_grad(x, y)
    module = interop.to_torch(model)
    t_loss = module.loss(module(torch.from_numpy(x)[:, None]), torch.from_numpy(y))
    t_loss.backward()
    t_grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    assert set(t_grads) == set(grads)
    assert abs(t_loss.item() - loss) <= 1e-5 * max(1.0, abs(loss))
    for k, g in grads.items():
        scale = float(np.abs(g).max())
        err = float(np.abs(t_grads[k] - g).max())
        assert err <= 2e-4 * scale + 1e-7, f"{k}: max difference {err:.3g}, gradient max {scale:.3g}"
    # unconnected C3 pairs get no gradient
    table = model.state_dict()["c3.table"]
    assert not t_grads["c3.weight"][~table].any()

    # float64: the same module in double against the reference in double
    state64 = {k: (v if k == "c3.table" else v.astype(np.float64)) for k, v in model.state_dict().items()}
    ref_loss, ref_grads = reference.loss_and_grad(state64, x.astype(np.float64), y, head)
    m64 = interop.to_torch(model).double()
    l64 = m64.loss(m64(torch.from_numpy(x.astype(np.float64))[:, None]), torch.from_numpy(y))
    l64.backward()
    assert abs(l64.item() - ref_loss) <= 1e-12 * max(1.0, abs(ref_loss))
    for k, p in m64.named_parameters():
        g = np.asarray(ref_grads[k], np.float64)
        assert np.abs(p.grad.numpy() - g).max() <= 1e-10 * max(1e-3, np.abs(g).max()), k


@pytest.mark.parametrize("head", HEADS)
def test_torch_round_trips(torch, head):
    """from_torch(to_torch(m)) is bit-exact; the module's state_dict has the weight file's
    names and arrays; a state_dict loads back into a module; after training in PyTorch the
    weights come back, unconnected C3 entries dropped."""
    from conftest import big_random_state
    model = LeNet5(head=head, seed=11)
    model.load_state_dict(big_random_state(model, np.random.default_rng(2)))
    module = interop.to_torch(model)
    ours, theirs = model.state_dict(), module.state_dict()
    assert set(ours) == set(theirs)
    for k, v in ours.items():
        assert theirs[k].numpy().dtype == v.dtype and np.array_equal(theirs[k].numpy(), v), k
    back = interop.from_torch(module)
    assert back.head == head
    for k, v in back.state_dict().items():
        assert np.array_equal(v, ours[k]), k
    fresh = interop.to_torch(LeNet5(head=head, seed=0))
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in ours.items()})
    x = np.random.default_rng(0).normal(0, 1, (4, 32, 32)).astype(np.float32)
    assert np.array_equal(_torch_forward(torch, fresh, x), _torch_forward(torch, module, x))

    # train a step in PyTorch (weight entries outside Table I disturbed by hand: the module
    # never uses them), back to LeNet5: same outputs as the module
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    loss = module.loss(module(torch.from_numpy(x)[:, None]), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    with torch.no_grad():
        module.c3.weight[~module.c3.table] = 5.0
    trained = interop.from_torch(module)
    _close(trained.forward(x), _torch_forward(torch, module, x))


def test_from_torch_refuses_a_foreign_module_with_wrong_weights(torch):
    module = torch.nn.Module()
    module.c1 = torch.nn.Conv2d(1, 6, 5)
    with pytest.raises(ValueError, match="missing array"):
        interop.from_torch(module)


def test_torch_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r'pip install "lenet_native\[torch\]"'):
        interop.to_torch(LeNet5(seed=0))
