"""Interop: LeNet-5 as an ONNX graph and as a PyTorch module, and back.

    >>> from lenet_native import LeNet5
    >>> from lenet_native.interop import to_onnx, to_torch, from_torch
    >>> model = LeNet5.pretrained("rbf")
    >>> to_onnx(model, "lenet5.onnx")           # onnx package only; no PyTorch
    >>> module = to_torch(model)                 # torch.nn.Module, same outputs
    >>> again = from_torch(module)               # LeNet5, bit-identical weights

Each is an optional extra: ``pip install "lenet_native[onnx]"`` (onnx; onnxruntime to run
the graph) and ``pip install "lenet_native[torch]"`` (torch==2.13.0, the CPU build).

The ONNX graph takes ``x`` (N, 1, 32, 32) float32 (N dynamic; the output of
``lenet_native.preprocess`` with a channel axis) and gives ``logits`` (N, 10) float32,
exactly what ``LeNet5.forward`` returns: the logits of the softmax head, or the RBF
distances y_i of the rbf head (predicted class = argmin). C3 is a dense convolution whose
kernels are zero where Table I does not connect: ONNX Runtime ran it faster than the
sparse form (three grouped convolutions over gathered S2 maps, then a Concat), see
docs/interop.md; ``c3="grouped"`` builds that form.
"""
from __future__ import annotations

import importlib

import numpy as np

from .fileio import atomic_write
from .layout import C3_TABLE
from .model import LeNet5
from .reference import A, S

__all__ = ["to_onnx", "onnx_model", "to_torch", "from_torch", "C3_FORMS", "OPSET",
           "INPUT_NAME", "OUTPUT_NAME"]

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "x", "logits"
C3_FORMS = ("dense", "grouped")   # the first is the default: the faster in ONNX Runtime


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency, or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs the {module!r} package, which is not installed: "
                          f"pip install \"lenet_native[{extra}]\"") from exc


# ----------------------------------------------------------------------------- ONNX


class _Graph:
    """A list of ONNX nodes and initializers with generated tensor names."""

    def __init__(self, onnx):
        self.helper, self.numpy_helper = onnx.helper, onnx.numpy_helper
        self.nodes, self.inits = [], []

    def const(self, name, value, dtype=np.float32):
        self.inits.append(self.numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type, inputs, name, **attrs):
        self.nodes.append(self.helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


def _c3_groups():
    """Table I as runs of consecutive C3 maps with the same number of inputs:
    [(first map, last map + 1, inputs per map)] -> (0, 6, 3), (6, 15, 4), (15, 16, 6)."""
    fan = C3_TABLE.sum(axis=1)
    runs, start = [], 0
    for m in range(1, len(fan) + 1):
        if m == len(fan) or fan[m] != fan[start]:
            runs.append((start, m, int(fan[start])))
            start = m
    return runs


def onnx_model(model: LeNet5, c3: str = "dense"):
    """The network of ``model`` (a LeNet5) as an ``onnx.ModelProto`` (opset 17, checked).

    Parameters
    ----------
    model : LeNet5
        Its ``state_dict()`` and ``head`` are exported.
    c3 : {"dense", "grouped"}
        "dense": one Conv with Table I's zeros in its kernel (the faster in ONNX Runtime).
        "grouped": per run of maps with the same fan-in, a Gather of the S2 maps each reads
        and a grouped Conv (groups = maps), the three joined by a Concat: only the 60
        connected kernels are stored and multiplied.

    Returns
    -------
    onnx.ModelProto
        Input ``x`` (N, 1, 32, 32) float32, output ``logits`` (N, 10) float32.
    """
    onnx = require("onnx", "onnx", "ONNX export")
    if c3 not in C3_FORMS:
        raise ValueError(f"c3 must be one of {', '.join(map(repr, C3_FORMS))}; got {c3!r}")
    state, head = model.state_dict(), model.head
    g = _Graph(onnx)
    g.const("S", S), g.const("A", A)

    def squash(x, name):
        return g.op("Mul", [g.op("Tanh", [g.op("Mul", [x, "S"], name + ".scaled")], name + ".tanh"), "A"],
                    name)

    def conv(x, layer, weight=None, bias=None, group=1):
        w = g.const(layer + ".weight", state[layer + ".weight"] if weight is None else weight)
        b = g.const(layer + ".bias", state[layer + ".bias"] if bias is None else bias)
        return g.op("Conv", [x, w, b], layer, kernel_shape=[5, 5], group=group)

    def subsampling(x, layer):
        # (sum of each 2x2 block) * coef + bias, the sum as average * 4: 4 * coef is exact,
        # so the product rounds as sum * coef does
        c = state[layer + ".weight"].size
        pooled = g.op("AveragePool", [x], layer + ".pool", kernel_shape=[2, 2], strides=[2, 2])
        coef = g.const(layer + ".weight", 4 * state[layer + ".weight"].reshape(1, c, 1, 1))
        bias = g.const(layer + ".bias", state[layer + ".bias"].reshape(1, c, 1, 1))
        return g.op("Add", [g.op("Mul", [pooled, coef], layer + ".scaled"), bias], layer)

    x = squash(conv(INPUT_NAME, "c1"), "c1.out")
    x = squash(subsampling(x, "s2"), "s2.out")
    if c3 == "dense":
        x = conv(x, "c3", weight=state["c3.weight"] * C3_TABLE[:, :, None, None])
    else:
        parts = []
        for lo, hi, fan in _c3_groups():
            maps = C3_TABLE[lo:hi]
            inputs = np.nonzero(maps)[1]                 # the S2 maps each C3 map reads, in order
            name = f"c3.maps{lo}-{hi - 1}"
            picked = g.op("Gather", [x, g.const(name + ".inputs", inputs, np.int64)], name + ".in",
                          axis=1)
            w = state["c3.weight"][lo:hi][maps].reshape(hi - lo, fan, 5, 5)
            parts.append(conv(picked, name, weight=w, bias=state["c3.bias"][lo:hi], group=hi - lo))
        x = g.op("Concat", parts, "c3", axis=1)
    x = squash(x, "c3.out")
    x = squash(subsampling(x, "s4"), "s4.out")
    x = squash(conv(x, "c5"), "c5.out")
    x = g.op("Flatten", [x], "c5.flat", axis=1)
    x = squash(g.op("Gemm", [x, g.const("f6.weight", state["f6.weight"]),
                             g.const("f6.bias", state["f6.bias"])], "f6", transB=1), "f6.out")
    if head == "rbf":   # y_i = sum_j (x_j - w_ij)^2
        diff = g.op("Sub", [g.op("Unsqueeze", [x, g.const("axis1", [1], np.int64)], "rbf.x"),
                            g.const("out.prototypes", state["out.prototypes"])], "rbf.diff")
        g.op("ReduceSumSquare", [diff], OUTPUT_NAME, axes=[2], keepdims=0)
    else:
        g.op("Gemm", [x, g.const("out.weight", state["out.weight"]),
                      g.const("out.bias", state["out.bias"])], OUTPUT_NAME, transB=1)
    tensor = onnx.helper.make_tensor_value_info
    what = "logits" if head == "softmax" else "RBF distances y_i (predicted class = argmin)"
    graph = onnx.helper.make_graph(
        g.nodes, f"lenet5_{head}",
        [tensor(INPUT_NAME, onnx.TensorProto.FLOAT, ["N", 1, 32, 32])],
        [tensor(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", 10])], g.inits,
        doc_string=f"LeNet-5 (LeCun et al. 1998), {head} head. Input: preprocessed digits "
                   f"(background -0.1, ink 1.175). Output: {what}.")
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="lenet_native")
    proto.ir_version = min(proto.ir_version, 9)   # readable by runtimes a few years old
    onnx.helper.set_model_props(proto, {"head": head, "c3": c3})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model: LeNet5, path, c3: str = "dense") -> None:
    """Write ``model`` as an ONNX file (atomically: a failed write leaves ``path`` as it was).

    Parameters
    ----------
    model : LeNet5
    path : str or os.PathLike
        The file written; by convention ``*.onnx``.
    c3 : {"dense", "grouped"}
        The form of C3, see :func:`onnx_model`.
    """
    data = onnx_model(model, c3=c3).SerializeToString()
    atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------- PyTorch


def to_torch(model: LeNet5):
    """``model`` as a ``torch.nn.Module`` computing the same function.

    Parameters
    ----------
    model : LeNet5

    Returns
    -------
    lenet_native._torch_nn.LeNet5Module
        float32, on the CPU; ``module(x)`` takes (N, 1, 32, 32) or (N, 32, 32) and returns
        (N, 10), as ``model.forward`` does.

    Notes
    -----
    Its parameters and buffers carry the weight file's names (``module.state_dict()`` has
    the keys of ``model.state_dict()``): C3 is a dense weight masked by Table I (the bool
    buffer ``c3.table``) in every forward, so its unconnected entries get zero gradients;
    S2 and S4 have their coefficient (``weight``) and bias as parameters; the rbf head's
    prototypes are a buffer (fixed, as in the paper). ``module.loss(outputs, labels)`` is
    the head's loss, the one ``LeNet5.loss_and_grad`` differentiates.
    """
    torch = require("torch", "torch", "to_torch")
    from ._torch_nn import LeNet5Module

    state = model.state_dict()
    module = LeNet5Module(model.head, state["c3.table"], state.get("out.prototypes"))
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                            for k, v in state.items()})
    return module


def from_torch(module, threads=None) -> LeNet5:
    """A :class:`LeNet5` with the weights of a PyTorch module.

    Parameters
    ----------
    module : torch.nn.Module
        A module from :func:`to_torch`, or any module whose ``state_dict()`` has the weight
        file's names and shapes (the head is "rbf" when it holds ``out.prototypes``).
        Weights are converted to float32 on the CPU.
    threads : int, optional
        Threads of the returned model's C kernels.

    Returns
    -------
    LeNet5

    Raises
    ------
    ValueError
        If the state dict is not a LeNet-5's (the weight file's validation names the array).

    Notes
    -----
    The masked-out entries of a :func:`to_torch` module's C3 weight take no part in its
    forward; they are dropped (set to zero, as the weight file requires). For any other
    module they must already be zero, or the weight file's validation says which one is not.
    """
    require("torch", "torch", "from_torch")
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    state = {k: v if k == "c3.table" else v.astype(np.float32) for k, v in state.items()}
    from ._torch_nn import LeNet5Module
    if isinstance(module, LeNet5Module) and "c3.weight" in state and "c3.table" in state:
        state["c3.weight"] = state["c3.weight"] * state["c3.table"][:, :, None, None]
    head = "rbf" if "out.prototypes" in state else "softmax"
    model = LeNet5(head=head, seed=0, threads=threads)
    model.load_state_dict(state)
    return model
