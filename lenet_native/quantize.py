"""int8 inference (issue 18): calibration, the quantized model, its weight file.

    >>> from lenet_native import LeNet5
    >>> from lenet_native.quantize import quantize
    >>> q = quantize(LeNet5.pretrained())          # or LeNet5.pretrained().quantize()
    >>> q.predict(digits)                          # uint8 (N, 28, 28) -> (N,) labels

The scheme (docs/int8.md, csrc/q8.h): C1, C3, C5 and F6 in int8 x 8-bit -> int32 (weights
symmetric per output map, scale max|w| / 127); the input coded exactly as the preprocessed
range (step 0.005, code 20 = 0.0); the S2, S4 and C5 outputs requantized per tensor with
scales max|y| / 127 calibrated on digits; bias, subsampling, squash and the output layer
in float32 (the squash dequantizes: int32 sum -> float -> squash -> requantize).

Calibration digits by default: ``lenet_native/data/calibration_digits.npz``, 1,000 MNIST
training digits (a fixed random draw, seed 18; never the test set), shipped so that the
default quantization is the same offline and everywhere.

This module imports nothing that depends on the model (``LeNet5.quantize`` imports it).
"""
from __future__ import annotations

import json
from importlib import resources

import numpy as np

from . import _core, fileio
from .checks import as_images, as_input, check_choice, check_threads
from .layout import C3_IN, C3_OUT, C3_TABLE, HEADS, PROTOTYPES_SHAPE, SHAPES
from . import reference_int8
from .weights import FORMAT_NAME, FORMAT_VERSION, read_archive

__all__ = ["quantize", "QuantizedLeNet5", "PRECISIONS", "CALIBRATION_FILE", "calibration_digits",
           "calibrate", "validate_qstate"]

PRECISIONS = ("int8",)
CALIBRATION_FILE = "calibration_digits.npz"
_INT8_LAYERS = ("c1", "c3", "c5", "f6")
_ACT_KEYS = ("act.s2", "act.s4", "act.c5")
_L = _core.Q8_LAYOUT


def calibration_digits():
    """The shipped calibration set: uint8 (1000, 28, 28) MNIST training digits."""
    res = resources.files("lenet_native").joinpath("data", CALIBRATION_FILE)
    with resources.as_file(res) as path, np.load(path, allow_pickle=False) as d:
        return np.array(d["images"])


def _calibration_input(images):
    where = "quantize: calibration_images"
    if images is None:
        images = calibration_digits()
    a = np.asarray(images)  # an ndarray as it is
    if a.dtype != np.uint8 and not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{where}: expected uint8 digits (N, 28, 28) or preprocessed float "
                        f"input (N, 32, 32); got dtype {a.dtype}")
    if a.ndim not in (3, 4) or a.shape[-2:] not in ((28, 28), (32, 32)) or (
            a.ndim == 4 and a.shape[1] != 1):
        raise ValueError(f"{where}: expected shape (N, 28, 28) uint8 or (N, 32, 32) float; "
                         f"got {a.shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{where}: the calibration set is empty (the activation scales "
                         f"need at least one digit)")
    if a.dtype != np.uint8 and not np.isfinite(a).all():
        raise ValueError(f"{where}: the calibration set contains NaN or infinity")
    return as_images(a, where)


def calibrate(model, images=None) -> dict:
    """Activation scales {"act.s2", "act.s4", "act.c5"}: max |y| / 127 of each layer's
    output over the digits (the fp32 model's activations)."""
    x = _calibration_input(images)
    peaks = {k: 0.0 for k in _ACT_KEYS}
    for lo in range(0, len(x), 500):
        acts = model.activations(x[lo:lo + 500])
        for k in _ACT_KEYS:
            peaks[k] = max(peaks[k], float(np.abs(acts[k.split(".")[1]]).max()))
    return {k: np.float32(max(v, 1e-6) / 127.0) for k, v in peaks.items()}


def _quantize_weights(w):
    """Symmetric per output map (axis 0): int8 codes and float32 scales max|w| / 127."""
    w = np.asarray(w, np.float32)
    peak = np.abs(w.reshape(len(w), -1)).max(axis=1)
    scale = (np.where(peak > 0, peak, 1.0) / 127.0).astype(np.float32)
    codes = np.clip(np.rint(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return codes.astype(np.int8), scale


def quantize(model, calibration_images=None, precision: str = "int8", threads=None):
    """An int8 copy of a LeNet5 for inference.

    Parameters
    ----------
    model : LeNet5
    calibration_images : array_like, optional
        uint8 (N, 28, 28) digits or preprocessed float (N, 32, 32) input, N >= 1, finite;
        default the 1,000 shipped training digits (:func:`calibration_digits`).
    precision : {"int8"}
    threads : int, optional
        Default: the model's.

    Returns
    -------
    QuantizedLeNet5

    Raises
    ------
    ValueError, TypeError
        For an unknown precision, or a calibration set that is empty, non-finite or of the
        wrong shape or dtype.
    """
    check_choice("precision", precision, PRECISIONS)
    scales = calibrate(model, calibration_images)
    sd = model.state_dict()
    q = {}
    for layer in _INT8_LAYERS:
        q[f"{layer}.weight"], q[f"{layer}.scale"] = _quantize_weights(sd[f"{layer}.weight"])
        q[f"{layer}.bias"] = sd[f"{layer}.bias"]
    q["c3.weight"][~C3_TABLE] = 0
    for k in ("s2.weight", "s2.bias", "s4.weight", "s4.bias"):
        q[k] = sd[k]
    if model.head == "rbf":
        q["out.prototypes"] = sd["out.prototypes"]
    else:
        q["out.weight"], q["out.bias"] = sd["out.weight"], sd["out.bias"]
    q.update(scales)
    meta = {"quantized_from": dict(model.meta), "calibration": (
        "shipped " + CALIBRATION_FILE if calibration_images is None
        else f"{len(np.asarray(calibration_images))} digits given")}
    return QuantizedLeNet5(q, model.head, meta=meta,
                           threads=model.threads if threads is None else threads)


def _expected(head):
    shapes = {f"{l}.weight": SHAPES[f"{l}.weight"] for l in _INT8_LAYERS}
    shapes.update({f"{l}.scale": SHAPES[f"{l}.bias"] for l in _INT8_LAYERS})
    shapes.update({f"{l}.bias": SHAPES[f"{l}.bias"] for l in _INT8_LAYERS})
    shapes.update({k: SHAPES[k] for k in ("s2.weight", "s2.bias", "s4.weight", "s4.bias")})
    shapes.update({k: () for k in _ACT_KEYS})
    if head == "rbf":
        shapes["out.prototypes"] = PROTOTYPES_SHAPE
    else:
        shapes.update({"out.weight": SHAPES["out.weight"], "out.bias": SHAPES["out.bias"]})
    return shapes


def validate_qstate(q: dict, head: str, source: str) -> None:
    """Check the arrays of an int8 model (names, shapes, dtypes, finite positive scales,
    C3 zero off Table I, codes in -127..127, the act scales within the squash's range).

    Raises
    ------
    ValueError
        Naming ``source`` and the first array that fails.
    """
    shapes = _expected(head)
    names = set(q) - {"c3.table"}
    if names != set(shapes):
        missing, extra = sorted(set(shapes) - names), sorted(names - set(shapes))
        what = f"missing array {missing[0]!r}" if missing else f"unexpected array {extra[0]!r}"
        raise ValueError(f"{source}: {what} for an int8 {head}-head network")
    if "c3.table" in q and not np.array_equal(q["c3.table"], C3_TABLE):
        raise ValueError(f"{source}: array 'c3.table' is not the paper's Table I")
    for name, shape in sorted(shapes.items()):
        a = np.asarray(q[name])
        want = np.int8 if name.endswith(".weight") and name.split(".")[0] in _INT8_LAYERS else np.float32
        if a.dtype != want:
            raise ValueError(f"{source}: array {name!r} has dtype {a.dtype}, expected {np.dtype(want)}")
        if a.shape != shape:
            raise ValueError(f"{source}: array {name!r} has shape {a.shape}, expected {shape}")
        if want == np.int8 and (a == -128).any():
            raise ValueError(f"{source}: array {name!r} holds -128 (codes are -127..127)")
        if want == np.float32 and not np.isfinite(a).all():
            raise ValueError(f"{source}: array {name!r} contains NaN or infinity")
        if (name.endswith(".scale") or name.startswith("act.")) and not (a > 0).all():
            raise ValueError(f"{source}: array {name!r} must hold positive scales")
        if name.startswith("act.") and a * 127 > 1.7159 * 1.001:
            raise ValueError(f"{source}: array {name!r}: a scale of {float(a):g} spans more "
                             f"than the squash's range (at most 1.7159 / 127)")
    if np.any(np.asarray(q["c3.weight"])[~C3_TABLE] != 0):
        raise ValueError(f"{source}: array 'c3.weight' is non-zero where Table I does not connect")


def _pack_kernels(k):
    """5x5 kernels (n, 5, 5) -> (n, 28) int8: 7 groups of 4 taps (csrc/q8.h LENET_Q8_TAP):
    rows 0..4 at kx 0..3, then kx 4 of rows 0..3, then (4, 4) and 3 zeros."""
    out = np.zeros((len(k), _L["kbytes"]), np.int8)
    out[:, :20] = k[:, :, :4].reshape(len(k), 20)
    out[:, 20:25] = k[:, :, 4]
    return out


def _pack(q, head):
    """The C kernels' arrays (csrc/q8.h) from the interchange arrays."""
    raw = np.zeros(_L["nw"] + 64, np.int8)
    lead = (-raw.ctypes.data) % 64
    w = raw[lead:lead + _L["nw"]]
    w1 = _pack_kernels(q["c1.weight"][:, 0])
    w[_L["w1"]:_L["w1"] + w1.size] = w1.ravel()
    w3 = _pack_kernels(q["c3.weight"][C3_OUT, C3_IN])
    w[_L["w3"]:_L["w3"] + w3.size] = w3.ravel()
    for layer, K, M, Mp in (("c5", 400, 120, _L["c5m"]), ("f6", 120, 84, _L["f6m"])):
        p = np.zeros((K // 4, Mp, 4), np.int8)
        p[:, :M, :] = q[f"{layer}.weight"].reshape(M, K // 4, 4).transpose(1, 0, 2)
        w[_L["w5" if layer == "c5" else "w6"]:][:p.size] = p.ravel()
    zw = np.zeros(_L["nz"], np.int32)
    z = lambda wt, zero: zero * np.asarray(wt, np.int64).reshape(len(wt), -1).sum(axis=1)
    zw[_L["z1"]:_L["z1"] + 6] = z(q["c1.weight"], reference_int8.IN_ZERO)
    zw[_L["z3"]:_L["z3"] + 16] = z(q["c3.weight"], 128)
    zw[_L["z5"]:_L["z5"] + 120] = z(q["c5.weight"], 128)
    zw[_L["z6"]:_L["z6"] + 84] = z(q["f6.weight"], 128)
    f = np.zeros(_L["nf"], np.float32)

    def put(key, v):
        v = np.asarray(v, np.float32).ravel()
        f[_L[key]:_L[key] + v.size] = v
    put("mul1", q["c1.scale"] * reference_int8.IN_SCALE)
    put("mul3", q["c3.scale"] * np.float32(q["act.s2"]))
    put("mul5", q["c5.scale"] * np.float32(q["act.s4"]))
    put("mul6", q["f6.scale"] * np.float32(q["act.c5"]))
    for key, name in (("b1", "c1.bias"), ("b3", "c3.bias"), ("b5", "c5.bias"), ("b6", "f6.bias"),
                      ("s2c", "s2.weight"), ("s2b", "s2.bias"), ("s4c", "s4.weight"),
                      ("s4b", "s4.bias")):
        put(key, q[name])
    for key, name in (("inv2", "act.s2"), ("inv4", "act.s4"), ("inv5", "act.c5")):
        put(key, np.float32(1.0) / np.float32(q[name]))
    if head == "rbf":
        put("outw", q["out.prototypes"])
    else:
        put("outw", q["out.weight"])
        put("outb", q["out.bias"])
    return w, zw, f


class QuantizedLeNet5:
    """LeNet-5 in int8 for inference (made by :func:`quantize`, or :meth:`load`).

    Parameters
    ----------
    qstate : dict
        The quantized arrays (:func:`validate_qstate` checks them; names as in the weight
        file, see docs/int8.md).
    head : {"softmax", "rbf"}
    meta : dict, optional
    threads : int, optional
    isa : str, optional
        One of ``_core.q8_available_isas()``; default the fastest (avx512vnni where the CPU
        has AVX512-VNNI, else portable).
    """

    precision = "int8"

    def __init__(self, qstate, head="softmax", meta=None, threads=None, isa=None):
        self.head = check_choice("head", head, HEADS)
        q = {k: np.array(v) for k, v in qstate.items() if k != "c3.table"}
        for k in _ACT_KEYS:
            if k in q:
                q[k] = q[k].astype(np.float32) if q[k].dtype == np.float64 else q[k]
        validate_qstate(q, self.head, "QuantizedLeNet5")
        self._q = q
        self.meta = dict(meta or {})
        self.threads = check_threads(threads)
        w, zw, f = _pack(q, self.head)
        self._net = _core.QNet(w, zw, f, C3_OUT, C3_IN, self.head, isa)

    @property
    def isa(self) -> str:
        """The int8 kernel variant in use."""
        return self._net.isa

    def state_dict(self) -> dict:
        """Copies of the quantized arrays (and "c3.table")."""
        d = {k: v.copy() for k, v in self._q.items()}
        d["c3.table"] = C3_TABLE.copy()
        return d

    def __repr__(self):
        return f"QuantizedLeNet5(head={self.head!r}, threads={self.threads}, isa={self.isa!r})"

    def forward(self, x, backend: str = "native") -> np.ndarray:
        """Preprocessed (N, 32, 32) input -> (N, 10) float32 logits (or RBF distances);
        backend "reference": lenet_native.reference_int8."""
        check_choice("backend", backend, ("native", "reference"))
        x = as_input(x, "forward")
        if backend == "reference":
            return reference_int8.forward(self._q, x, self.head)
        return self._net.forward(x, self.threads)

    __call__ = forward

    def layers(self, x):
        """Every integer layer of the C kernels for tests: (out, dict of int32 sums "c1"
        (N,6,28,28), "c3" (N,16,10,10), "c5", "f6", and signed codes "in", "s2", "s4",
        "c5q")."""
        x = as_input(x, "layers")
        out, qa = self._net.forward(x, self.threads, keep=True)
        n = len(x)
        g = lambda key, size: qa[:, _L[key]:_L[key] + size]
        return out, {
            "in": g("qa_in", 1024).reshape(n, 32, 32), "c1": g("qa_c1", 4704).reshape(n, 6, 28, 28),
            "s2": (g("qa_s2", 1176) - 128).reshape(n, 6, 14, 14),
            "c3": g("qa_c3", 1600).reshape(n, 16, 10, 10), "s4": (g("qa_s4", 400) - 128).reshape(n, 16, 5, 5),
            "c5": g("qa_c5", 120), "c5q": g("qa_c5q", 120) - 128, "f6": g("qa_f6", 84)}

    def _outputs(self, images, where):
        return self._net.forward(as_images(images, where), self.threads, where=where)

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities (N, 10) of raw uint8 digits or preprocessed input."""
        return _core.softmax(self._outputs(images, "predict_proba"), -1.0 if self.head == "rbf" else 1.0)

    def predict(self, images) -> np.ndarray:
        """Class labels (N,) int64 of raw uint8 28x28 digits or preprocessed 32x32 input."""
        out = self._outputs(images, "predict")
        return (out.argmin(axis=1) if self.head == "rbf" else out.argmax(axis=1)).astype(np.int64)

    def save(self, path) -> None:
        """Write the int8 .npz weight file atomically (meta "precision": "int8")."""
        arrays = self.state_dict()
        doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "head": self.head,
               "precision": "int8"}
        doc.update({k: v for k, v in self.meta.items() if k not in doc})
        arrays["meta"] = np.array(json.dumps(doc, sort_keys=True))
        fileio.atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path, threads=None, isa=None) -> "QuantizedLeNet5":
        """Load and validate an int8 weight file (never unpickles anything)."""
        state, meta = read_archive(path)
        if meta.get("precision") != "int8":
            raise ValueError(f"{path}: meta precision is {meta.get('precision', 'fp32')!r}, "
                             f"expected 'int8' (an fp32 file loads with LeNet5.load)")
        head = meta.get("head")
        if head not in HEADS:
            raise ValueError(f"{path}: meta head is {head!r}, expected {' or '.join(map(repr, HEADS))}")
        validate_qstate(state, head, str(path))
        rest = {k: v for k, v in meta.items() if k not in ("format", "version", "head", "precision")}
        return cls(state, head, meta=rest, threads=threads, isa=isa)
