"""The LeNet5 model: a thin wrapper that validates, allocates and calls the C kernels.

Parameters live in one flat float32 vector (``LeNet5.params``, the layout of csrc/lenet.h
described in lenet_native.layout), C3 weights packed per connected pair of Table I.
``state_dict()`` gives the interchange layout of docs/design.md, "Parameter layout"
(PyTorch names, C3 dense with zeros where Table I does not connect). Training is
:func:`lenet_native.train`; this module imports nothing that depends on it
(docs/design.md, "Python modules").
"""
from __future__ import annotations

import numpy as np

from . import _core
from .checks import as_images, as_input, as_labels, check_choice, check_threads
from .layout import (ACT_SHAPES, C3_IN, C3_OUT, C3_TABLE, FAN_IN, HEADS, PARAM_OFFSETS,
                     is_placed, pack, param_vector, unpack)
from .prototypes import rbf_prototypes
from .lenet_format import is_lenet_path
from .lenet_format import read_lenet, write_lenet
from .weights import pretrained_path, read_weights, validate_state, write_weights

__all__ = ["LeNet5", "BACKENDS"]

#: forward's backends: the C kernels, or the NumPy reference (lenet_native.reference).
BACKENDS = ("native", "reference")


INITS = ("paper", "fan_in")


class LeNet5:
    """LeNet-5 of LeCun et al. (1998), computed by C kernels.

    Parameters
    ----------
    head : {"softmax", "rbf"}, default "softmax"
        "softmax": dense 84 -> 10 with softmax cross-entropy; "rbf": the paper's ten
        Euclidean RBF units with fixed stylised-digit prototypes.
    seed : int, optional
        Seed of the initialisation; None = fresh entropy.
    threads : int, optional
        Threads used by the C kernels; default $LENET_NATIVE_THREADS or the CPU count.
    init : {"paper", "fan_in"}, default "paper"
        "paper": every weight and bias uniform in +-2.4 / fan-in (the paper's Appendix C);
        "fan_in": uniform in +-1 / sqrt(fan-in), larger (x sqrt(fan-in) / 2.4: x2.1 for C1,
        x8.3 for C5), which trains 2-3x faster in the first epochs (the ``fast`` recipe of
        lenet_native.recipes; docs/training.md). The RBF prototypes are fixed either way.

    Attributes
    ----------
    head : str
    threads : int
    meta : dict
        JSON-serialisable information saved with the weights (training record, provenance).
    params : numpy.ndarray
        The flat parameter vector the C kernels compute with (see :attr:`params`).

    Notes
    -----
    A model is safe to share between Python threads for inference (forward, predict,
    activations, loss_and_grad): those calls only read the parameters and use their own
    buffers. Training (:func:`lenet_native.train`) and load_state_dict change the parameters.
    """

    def __init__(self, head: str = "softmax", seed=None, threads=None, init="paper"):
        self.head = check_choice("head", head, HEADS)
        self.threads = check_threads(threads)
        self.meta = {}
        self._flat = self._init_params(np.random.default_rng(seed),
                                       check_choice("init", init, INITS))

    def __getstate__(self):
        # pickled by its weights (head, threads, meta, the parameter vector, about 240 KB):
        # the native handle is rebuilt on first use where the copy lands (a dask worker)
        state = dict(self.__dict__)
        state.pop("_net_handle", None)
        return state

    def __setstate__(self, state):
        # an unpickled array lies wherever the allocator put it: back into a placed vector
        # (copy.copy hands over the original's array, placed already, and keeps sharing it)
        self.__dict__.update(state)
        if not is_placed(self._flat):
            flat = param_vector()
            flat[:] = self._flat
            self._flat = flat

    # -- construction --------------------------------------------------------------------

    def _init_params(self, rng, init="paper") -> np.ndarray:
        def bound_of(fan_in):      # the paper's 2.4 / F, or 1 / sqrt(F)
            return 2.4 / fan_in if init == "paper" else 1.0 / np.sqrt(fan_in)

        flat = param_vector()
        fan = dict(FAN_IN)
        for name, (lo, hi) in PARAM_OFFSETS.items():
            layer = name.split(".")[0]
            if layer == "out" and self.head == "rbf":
                continue
            if layer == "c3":
                if name == "c3.weight":  # per pair: the fan-in of the C3 map it feeds
                    fan_in = 25 * C3_TABLE.sum(axis=1)[C3_OUT].repeat(25)
                else:
                    fan_in = 25 * C3_TABLE.sum(axis=1)
                bound = bound_of(fan_in)
                flat[lo:hi] = rng.uniform(-1.0, 1.0, hi - lo) * bound
            else:
                bound = bound_of(fan[layer])
                flat[lo:hi] = rng.uniform(-bound, bound, hi - lo)
        if self.head == "rbf":
            lo, hi = PARAM_OFFSETS["out.weight"]
            flat[lo:hi] = rbf_prototypes().reshape(-1)
        return flat

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value):
        self._threads = check_threads(value)

    @property
    def params(self) -> np.ndarray:
        """The flat float32 (NPARAMS,) parameter vector the C kernels compute with.

        The layout of csrc/lenet.h: the arrays in the order of ``layout.PARAM_OFFSETS``,
        C3's weights packed per connected pair of Table I (``layout.C3_OUT`` /
        ``layout.C3_IN``); ``layout.unpack`` turns it into the dict of
        :meth:`state_dict`. This is the model's own array, not a copy: writing into it
        changes the model (training does, in place). Read-only as an attribute:
        :meth:`load_state_dict` replaces the parameters.
        """
        return self._flat

    def state_dict(self) -> dict:
        """Copies of every array of the interchange format (without "meta")."""
        d = unpack(self._flat, self.head)
        d["c3.table"] = C3_TABLE.copy()
        return d

    def load_state_dict(self, state: dict) -> None:
        """Replace the parameters; the dict is validated like a weight file."""
        state = dict(state)
        state.pop("meta", None)
        validate_state(state, self.head, source="state_dict")
        self._flat = pack(state, self.head)

    def num_parameters(self, trainable_only=True) -> int:
        n = 60000
        if self.head == "softmax" or not trainable_only:
            n += 850 if self.head == "softmax" else 840
        return n

    def __repr__(self):
        return f"LeNet5(head={self.head!r}, threads={self.threads})"

    @classmethod
    def pretrained(cls, head: str = "softmax", threads=None, precision: str = "fp32"):
        """The LeNet-5 shipped with the package.

        Trained by the project's own trainer with the paper's distortions; its ``meta``
        records the command, seed and test error.

        Parameters
        ----------
        head : {"softmax", "rbf"}
        threads : int, optional
        precision : {"fp32", "int8"}
            "int8": the model quantized on the shipped calibration digits
            (:meth:`quantize`), a ``lenet_native.quantize.QuantizedLeNet5``.

        Raises
        ------
        ValueError
            Naming the head, if this installation ships no weights for it.
        """
        check_choice("precision", precision, ("fp32", "int8"))
        with pretrained_path(head) as path:
            model = cls.load(path, threads=threads)
        return model if precision == "fp32" else model.quantize(precision=precision)

    def quantize(self, calibration_images=None, precision: str = "int8"):
        """An int8 copy for inference: ``lenet_native.quantize.quantize(self, ...)``.

        Parameters
        ----------
        calibration_images : array_like, optional
            uint8 (N, 28, 28) digits or preprocessed (N, 32, 32) input; default the 1,000
            MNIST training digits shipped for calibration.
        precision : {"int8"}

        Returns
        -------
        lenet_native.quantize.QuantizedLeNet5
        """
        from .quantize import quantize   # quantize.py never imports this module: no cycle
        return quantize(self, calibration_images, precision)

    # -- computing -----------------------------------------------------------------------

    def _native_net(self):
        """A handle on the parameters for the C forward, rebuilt when the parameter array
        is replaced (load_state_dict, load)."""
        net = self.__dict__.get("_net_handle")
        if net is None or net.params is not self._flat or net.head != self.head:
            net = self.__dict__["_net_handle"] = _core.Net(self._flat, C3_OUT, C3_IN, self.head)
        return net

    def forward(self, x, backend: str = "native") -> np.ndarray:
        """(N, 32, 32) or (N, 1, 32, 32) float input -> (N, 10) float32: the logits
        (softmax head) or the RBF distances y_i (rbf head)."""
        if backend == "native":
            # _native_net() inlined (one image costs a few microseconds: every call counts)
            d = self.__dict__
            net = d.get("_net_handle")
            if net is None or net.params is not d["_flat"] or net.head != d["head"]:
                net = self._native_net()
            # a C-contiguous float32 (N, 32, 32) goes straight through (the C code checks
            # finiteness as it reads the images); anything else is converted first
            out = net.forward(x, d["_threads"])
            return out if out is not None else net.forward(as_input(x, "forward", False), d["_threads"])
        check_choice("backend", backend, BACKENDS)
        x = as_input(x, "forward")
        from . import reference
        return reference.forward(self.state_dict(), x, self.head).astype(np.float32)

    __call__ = forward

    def activations(self, x, backend: str = "native") -> dict:
        """Every layer's output by name: c1 (N,6,28,28), s2 (N,6,14,14), c3 (N,16,10,10),
        s4 (N,16,5,5), c5 (N,120), f6 (N,84), output (N,10)."""
        check_choice("backend", backend, BACKENDS)
        x = as_input(x, "activations")
        if backend == "reference":
            from . import reference
            acts = reference.activations(self.state_dict(), x, self.head)
            return {k: np.asarray(acts[k], np.float32).reshape((x.shape[0],) + ACT_SHAPES[k])
                    for k in ACT_SHAPES}
        _, acts = _core.forward(self._flat, C3_OUT, C3_IN, self.head, x, self._threads,
                                keep_activations=True)
        return {k: acts[:, lo:hi].reshape((x.shape[0],) + ACT_SHAPES[k])
                for k, (lo, hi) in _core.ACT_OFFSETS.items()}

    def _outputs(self, images, where, backend):
        """forward() of raw uint8 digits or preprocessed input, errors named after `where`."""
        if backend == "native":
            # as_images gives C-contiguous float32; finiteness is checked in C as it streams
            return self._native_net().forward(as_images(images, where, False), self._threads,
                                              where=where)
        return self.forward(as_images(images, where), backend=backend)

    def predict_proba(self, images, backend: str = "native") -> np.ndarray:
        """Class probabilities (N, 10): softmax of the logits, or of -y for the RBF head."""
        out = self._outputs(images, "predict_proba", backend)
        return _core.softmax(out, -1.0 if self.head == "rbf" else 1.0)

    def predict(self, images, backend: str = "native") -> np.ndarray:
        """Class labels (N,) int64 of raw uint8 28x28 digits or preprocessed 32x32 input."""
        out = self._outputs(images, "predict", backend)
        return (out.argmin(axis=1) if self.head == "rbf" else out.argmax(axis=1)).astype(np.int64)

    def loss_and_grad(self, x, labels, backend: str = "native"):
        """Mean loss over the batch and its gradients, a dict keyed like the weight file
        (c3.weight dense (16, 6, 5, 5), zero where Table I does not connect)."""
        check_choice("backend", backend, BACKENDS)
        x = as_images(x, "loss_and_grad")
        y = as_labels(labels, x.shape[0], "loss_and_grad")
        n = x.shape[0]
        if n == 0:
            raise ValueError("loss_and_grad: the batch is empty (the mean loss is undefined)")
        if backend == "reference":
            from . import reference
            loss, grads = reference.loss_and_grad(self.state_dict(), x, y, self.head)
            return float(loss), {k: np.asarray(v, np.float32) for k, v in grads.items()}
        losses, _, grad = _core.loss_grad(self._flat, C3_OUT, C3_IN, self.head, x, y,
                                          1.0 / n, self._threads)
        return float(np.mean(losses, dtype=np.float64)), unpack(grad, self.head, trainable_only=True)

    def hessian_diag(self, x, labels, backend: str = "native") -> dict:
        """Gauss-Newton estimate of the diagonal second derivatives of the mean loss."""
        check_choice("backend", backend, BACKENDS)
        x = as_images(x, "hessian_diag")
        y = as_labels(labels, x.shape[0], "hessian_diag")
        if x.shape[0] == 0:
            raise ValueError("hessian_diag: the batch is empty")
        if backend == "reference":
            from . import reference
            h = reference.hessian_diag(self.state_dict(), x, y, self.head)
            return {k: np.asarray(v, np.float32) for k, v in h.items()}
        h = _core.hessian_diag(self._flat, C3_OUT, C3_IN, self.head, x, y, 1.0 / x.shape[0])
        return unpack(h, self.head, trainable_only=True)

    # -- description ---------------------------------------------------------------------

    def summary(self) -> str:
        """The per-layer table of the tutorial: output shape, parameters, connections."""
        rows = [
            ("INPUT", "1@32x32", 0, 0),
            ("C1 conv 5x5", "6@28x28", 156, 122_304),
            ("S2 subsample 2x2", "6@14x14", 12, 5_880),
            ("C3 conv 5x5, Table I", "16@10x10", 1_516, 151_600),
            ("S4 subsample 2x2", "16@5x5", 32, 2_000),
            ("C5 conv 5x5", "120@1x1", 48_120, 48_120),
            ("F6 dense", "84", 10_164, 10_164),
        ]
        if self.head == "softmax":
            rows.append(("OUTPUT dense + softmax", "10", 850, 850))
        else:
            rows.append(("OUTPUT Euclidean RBF (fixed)", "10", 0, 840))
        # the counts above are the tutorial's; check them against the arrays themselves
        counted = {k: v.size for k, v in unpack(self._flat, self.head, trainable_only=True).items()}
        counted["c3.weight"] = int(C3_TABLE.sum()) * 25
        layer_params = {}
        for k, v in counted.items():
            layer_params[k.split(".")[0]] = layer_params.get(k.split(".")[0], 0) + v
        for (name, _, p, _), key in zip(rows[1:], ["c1", "s2", "c3", "s4", "c5", "f6", "out"]):
            assert layer_params.get(key, 0) == p, (name, layer_params.get(key), p)
        total_p = sum(r[2] for r in rows)
        total_c = sum(r[3] for r in rows)
        lines = [f"LeNet-5 ({self.head} head)",
                 f"{'layer':<30}{'output':>10}{'params':>10}{'connections':>13}",
                 "-" * 63]
        for name, shape, p, c in rows:
            lines.append(f"{name:<30}{shape:>10}{p:>10,}{c:>13,}")
        lines.append("-" * 63)
        lines.append(f"{'total':<30}{'':>10}{total_p:>10,}{total_c:>13,}")
        lines.append(f"trainable parameters C1..F6: {total_p - rows[-1][2]:,}")
        return "\n".join(lines)

    # -- files ---------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the weights atomically (temporary file, fsync, rename), ``meta`` with them.

        The format follows the suffix: ``.lenet`` writes the binary file C programs load
        (lenet_native.lenet_format, docs/lenet-format.md); anything else the .npz weight
        file (``weights.write_weights``), the interchange format.
        """
        if is_lenet_path(path):
            write_lenet(path, self.state_dict(), self.head, self.meta)
        else:
            write_weights(path, self.state_dict(), self.head, self.meta)

    @classmethod
    def load(cls, path, threads=None) -> "LeNet5":
        """Load and validate a weight file: ``.lenet`` (lenet_format.read_lenet) or .npz
        (weights.read_weights; never unpickles anything), chosen by the suffix."""
        if is_lenet_path(path):
            state, head, meta = read_lenet(path)
        else:
            state, meta = read_weights(path)
            head = meta["head"]
        model = cls(head=head, seed=0, threads=threads)
        model._flat = pack(state, model.head)
        model.meta = {k: v for k, v in meta.items() if k not in ("format", "version", "head")}
        return model

