"""The LeNet5 model: a thin wrapper that validates, allocates and calls the C kernels.

Parameters live in one flat float32 vector (the layout of csrc/lenet.h), C3 weights packed
per connected pair of Table I. ``state_dict()`` gives the interchange layout of the design
note (PyTorch names, C3 dense with zeros where Table I does not connect).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import _core
from .prototypes import rbf_prototypes

__all__ = ["LeNet5", "preprocess", "C3_TABLE", "HEADS", "FORMAT_NAME", "FORMAT_VERSION"]

HEADS = ("softmax", "rbf")
BACKENDS = ("native", "reference")
FORMAT_NAME = "lenet_native.lenet5"
FORMAT_VERSION = 1

# Table I of the paper: C3 map -> the S2 maps it reads.
_C3_SETS = [
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
]
C3_TABLE = np.zeros((16, 6), dtype=bool)
for _m, _inputs in enumerate(_C3_SETS):
    C3_TABLE[_m, list(_inputs)] = True
C3_TABLE.setflags(write=False)
# the precomputed pair list handed to C: (out map, in map), sorted by out map
_C3_OUT, _C3_IN = (a.astype(np.int32) for a in np.nonzero(C3_TABLE))

SHAPES = {
    "c1.weight": (6, 1, 5, 5), "c1.bias": (6,),
    "s2.weight": (6,), "s2.bias": (6,),
    "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
    "s4.weight": (16,), "s4.bias": (16,),
    "c5.weight": (120, 16, 5, 5), "c5.bias": (120,),
    "f6.weight": (84, 120), "f6.bias": (84,),
    "out.weight": (10, 84), "out.bias": (10,),
}
HEAD_KEYS = {"softmax": ("out.weight", "out.bias"), "rbf": ("out.prototypes",)}
TRUNK_KEYS = tuple(k for k in SHAPES if not k.startswith("out."))
# fan-in of the unit each array feeds (paper: init uniform in +-2.4 / F)
_FAN_IN = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120, "out": 84}

ACT_SHAPES = {
    "c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5),
    "c5": (120,), "f6": (84,), "output": (10,),
}


def _default_threads():
    env = os.environ.get("LENET_NATIVE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"LENET_NATIVE_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"LENET_NATIVE_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


MAX_THREADS = 1024  # more OpenMP threads than this only risks a failed thread creation,
                    # which libgomp answers by exiting the whole process


def _check_threads(threads):
    if threads is None:
        return min(_default_threads(), MAX_THREADS)
    if (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
            or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"threads must be an integer in 1..{MAX_THREADS} or None, got {threads!r}")
    return int(threads)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


# ----------------------------------------------------------------------------- input


def preprocess(images) -> np.ndarray:
    """MNIST digits, uint8 (N, 28, 28) or one (28, 28), to network input (N, 32, 32) float32.

    Adds 2 px of background on every side and maps pixel p linearly to -0.1 + 1.275 p / 255
    (background 0 -> -0.1, ink 255 -> 1.175), as in the paper.
    """
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise TypeError(f"preprocess expects uint8 MNIST digits (0 = background, 255 = ink); "
                        f"got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (28, 28):
        raise ValueError(f"preprocess expects shape (N, 28, 28) or (28, 28); got {np.shape(images)}")
    x = np.full((a.shape[0], 32, 32), -0.1, dtype=np.float32)
    x[:, 2:30, 2:30] = a.astype(np.float32) * np.float32(1.275 / 255.0) - np.float32(0.1)
    return x


# Larger inputs would overflow float32 inside the network (C1 sums, the Gauss-Newton x**2)
# and give silently wrong answers; csrc/lenet.h LENET_MAX_INPUT_LOG2 is the same bound.
MAX_INPUT_MAGNITUDE = 2.0 ** 61


def _as_input(x, where="forward", finite=True) -> np.ndarray:
    """Validate preprocessed input: (N, 32, 32), (N, 1, 32, 32) or (32, 32), float, finite.
    finite=False leaves the NaN/infinity check to the caller (the native forward does it in C
    while the images stream through: same error, no extra pass)."""
    if (type(x) is np.ndarray and x.dtype is _core.F32 and x.ndim == 3
            and x.shape[1] == 32 and x.shape[2] == 32 and x.flags.c_contiguous
            and x.flags.aligned):
        a = x  # already what the kernels take: no conversion, no copy
    else:
        a = _to_array(x, where)
        if a.dtype == np.uint8:
            raise TypeError(f"{where}: got uint8 input; raw MNIST digits go through preprocess() "
                            f"(or use predict / predict_proba, which accept them)")
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{where}: input must be a float array (float16/32/64); got dtype {a.dtype}")
        if a.ndim == 4 and a.shape[1] == 1:
            a = a[:, 0]
        elif a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != (32, 32):
            raise ValueError(f"{where}: input must have shape (N, 32, 32) or (N, 1, 32, 32); "
                             f"got {np.shape(x)}")
        with np.errstate(over="ignore", invalid="ignore"):
            # C order and aligned (an unaligned buffer is copied: C reads whole floats)
            a = np.require(a, np.float32, ["C", "A"])
    if finite and a.size:
        # min and max propagate NaN and show infinities without a temporary of the input's size
        lo, hi = float(a.min()), float(a.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or max(-lo, hi) >= MAX_INPUT_MAGNITUDE:
            raise ValueError(f"{where}: input contains NaN or infinity, or a value too large "
                             f"(|x| must be below 2**61, about 2.3e18)")
    return a


def _to_array(x, where) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists, objects numpy cannot take
        raise TypeError(f"{where}: cannot convert input of type {type(x).__name__} to an array") from exc


def _as_images(images, where, finite=True):
    """Raw uint8 28x28 digits or preprocessed 32x32 float input -> network input
    (finite: as for _as_input; preprocessed digits are always finite)."""
    a = _to_array(images, where)
    if a.dtype == np.uint8:
        return preprocess(a)
    return _as_input(a, where, finite)


def _as_labels(labels, n, where):
    lab = np.asarray(labels)
    if lab.ndim == 0:
        lab = lab[None]
    if lab.ndim != 1:
        raise ValueError(f"{where}: labels must be 1-D; got shape {lab.shape}")
    if lab.shape[0] != n:
        raise ValueError(f"{where}: {lab.shape[0]} labels for {n} images")
    if lab.dtype == bool or not (np.issubdtype(lab.dtype, np.integer)
                                 or (np.issubdtype(lab.dtype, np.floating)
                                     and np.all(np.isfinite(lab)) and np.all(lab == np.round(lab)))):
        raise TypeError(f"{where}: labels must be integers 0..9; got dtype {lab.dtype}")
    if n and (lab.min() < 0 or lab.max() > 9):
        bad = lab[(lab < 0) | (lab > 9)][0]
        raise ValueError(f"{where}: labels must be in 0..9; got {bad}")
    return np.require(lab, np.int32, ["C", "A"])


# ----------------------------------------------------------------------------- packing


def param_vector() -> np.ndarray:
    """A zeroed float32 (NPARAMS,) vector placed so that C5's weights begin on a 64-byte
    line. The C kernels read C5 (120 rows of 400 floats, 192 KB, more than L1 holds) a
    whole row at a time; with the row starts off the line, every vector load spans two
    lines and the single-image forward spends about twice as long in C5. Only speed
    depends on the placement: results do not (the C code never looks at addresses)."""
    raw = np.zeros(_core.NPARAMS + 16, dtype=np.float32)
    lead = (64 - _c5_line_offset(raw)) % 64 // 4
    return raw[lead:lead + _core.NPARAMS]


def _c5_line_offset(flat) -> int:
    """How many bytes past a 64-byte line C5's weights start in the float32 parameter
    vector `flat` (0: placed)."""
    return (flat.ctypes.data + 4 * _core.PARAM_OFFSETS["c5.weight"][0]) % 64


def _is_placed(flat) -> bool:
    """True if C5's weights in the parameter vector `flat` start on a 64-byte line."""
    return _c5_line_offset(flat) == 0


def pack(state: dict, head: str) -> np.ndarray:
    """Interchange dict -> flat float32 parameter vector of the C kernels."""
    flat = param_vector()
    for name, (lo, hi) in _core.PARAM_OFFSETS.items():
        if name == "c3.weight":
            flat[lo:hi] = np.asarray(state[name], np.float32)[_C3_OUT, _C3_IN].reshape(-1)
        elif name == "out.weight" and head == "rbf":
            flat[lo:hi] = np.asarray(state["out.prototypes"], np.float32).reshape(-1)
        elif name == "out.bias" and head == "rbf":
            continue
        else:
            flat[lo:hi] = np.asarray(state[name], np.float32).reshape(-1)
    return flat


def unpack(flat: np.ndarray, head: str, trainable_only=False) -> dict:
    """Flat vector -> interchange dict (copies). trainable_only drops the fixed prototypes."""
    out = {}
    for name, (lo, hi) in _core.PARAM_OFFSETS.items():
        if name.startswith("out.") and head == "rbf":
            continue
        if name == "c3.weight":
            dense = np.zeros(SHAPES[name], dtype=np.float32)
            dense[_C3_OUT, _C3_IN] = flat[lo:hi].reshape(-1, 5, 5)
            out[name] = dense
        else:
            out[name] = flat[lo:hi].reshape(SHAPES[name]).copy()
    if head == "rbf" and not trainable_only:
        lo, hi = _core.PARAM_OFFSETS["out.weight"]
        out["out.prototypes"] = flat[lo:hi].reshape(10, 84).copy()
    return out


def trainable_mask(head: str) -> np.ndarray:
    """uint8 (NPARAMS,): 1 where a parameter is trained (everything but the RBF prototypes)."""
    mask = np.ones(_core.NPARAMS, dtype=np.uint8)
    if head == "rbf":
        lo, _ = _core.PARAM_OFFSETS["out.weight"]
        mask[lo:] = 0
    return mask


# ----------------------------------------------------------------------------- the model


class LeNet5:
    """LeNet-5 of LeCun et al. (1998), computed by C kernels.

    Parameters
    ----------
    head : "softmax" (dense 84 -> 10 with softmax cross-entropy, the default) or "rbf" (the
        paper's ten Euclidean RBF units with fixed stylised-digit prototypes).
    seed : seed of the paper's initialisation (uniform in +-2.4/fan-in); None = fresh entropy.
    threads : threads used by the C kernels; default $LENET_NATIVE_THREADS or the CPU count.

    A model is safe to share between Python threads for inference (forward, predict,
    activations, loss_and_grad): those calls only read the parameters and use their own
    buffers. Training calls (fit / load_state_dict) change the parameters in place.
    """

    def __init__(self, head: str = "softmax", seed=None, threads=None):
        self.head = _check_choice("head", head, HEADS)
        self.threads = _check_threads(threads)
        self.meta = {}
        self._flat = self._init_params(np.random.default_rng(seed))

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
        if not _is_placed(self._flat):
            flat = param_vector()
            flat[:] = self._flat
            self._flat = flat

    # -- construction --------------------------------------------------------------------

    def _init_params(self, rng) -> np.ndarray:
        flat = param_vector()
        fan = dict(_FAN_IN)
        for name, (lo, hi) in _core.PARAM_OFFSETS.items():
            layer = name.split(".")[0]
            if layer == "out" and self.head == "rbf":
                continue
            if layer == "c3":
                if name == "c3.weight":  # per pair: the fan-in of the C3 map it feeds
                    fan_in = 25 * C3_TABLE.sum(axis=1)[_C3_OUT].repeat(25)
                else:
                    fan_in = 25 * C3_TABLE.sum(axis=1)
                bound = 2.4 / fan_in
                flat[lo:hi] = rng.uniform(-1.0, 1.0, hi - lo) * bound
            else:
                bound = 2.4 / fan[layer]
                flat[lo:hi] = rng.uniform(-bound, bound, hi - lo)
        if self.head == "rbf":
            lo, hi = _core.PARAM_OFFSETS["out.weight"]
            flat[lo:hi] = rbf_prototypes().reshape(-1)
        return flat

    @property
    def threads(self) -> int:
        return self._threads

    @threads.setter
    def threads(self, value):
        self._threads = _check_threads(value)

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
    def pretrained(cls, head: str = "softmax", threads=None) -> "LeNet5":
        """The LeNet-5 shipped with the package, trained by the project's own trainer with the
        paper's distortions (its ``meta`` records the command, seed and test error)."""
        from .pretrained import load_pretrained
        return load_pretrained(head=head, threads=threads)

    def fit(self, images, labels, test_images=None, test_labels=None, **options):
        """Train in place with :func:`lenet_native.train.train` (optimizer="sgd" or "sdlm",
        epochs, batch_size, lr, checkpoint, resume, distort, ...); returns the history."""
        from .train import train
        return train(self, images, labels, test_images, test_labels, **options)

    # -- computing -----------------------------------------------------------------------

    def _native_net(self):
        """A handle on the parameters for the C forward, rebuilt when the parameter array
        is replaced (load_state_dict, load)."""
        net = self.__dict__.get("_net_handle")
        if net is None or net.params is not self._flat or net.head != self.head:
            net = self.__dict__["_net_handle"] = _core.Net(self._flat, _C3_OUT, _C3_IN, self.head)
        return net

    def forward(self, x, backend: str = "native") -> np.ndarray:
        """(N, 32, 32) or (N, 1, 32, 32) float input -> (N, 10) float32: the logits
        (softmax head) or the RBF distances y_i (rbf head)."""
        if backend == "native":
            net = self._native_net()
            # a C-contiguous float32 (N, 32, 32) goes straight through (the C code checks
            # finiteness as it reads the images); anything else is converted first
            out = net.forward(x, self._threads)
            return out if out is not None else net.forward(_as_input(x, "forward", False), self._threads)
        _check_choice("backend", backend, BACKENDS)
        x = _as_input(x, "forward")
        from . import reference
        return reference.forward(self.state_dict(), x, self.head).astype(np.float32)

    __call__ = forward

    def activations(self, x, backend: str = "native") -> dict:
        """Every layer's output by name: c1 (N,6,28,28), s2 (N,6,14,14), c3 (N,16,10,10),
        s4 (N,16,5,5), c5 (N,120), f6 (N,84), output (N,10)."""
        _check_choice("backend", backend, BACKENDS)
        x = _as_input(x, "activations")
        if backend == "reference":
            from . import reference
            acts = reference.activations(self.state_dict(), x, self.head)
            return {k: np.asarray(acts[k], np.float32).reshape((x.shape[0],) + ACT_SHAPES[k])
                    for k in ACT_SHAPES}
        _, acts = _core.forward(self._flat, _C3_OUT, _C3_IN, self.head, x, self._threads,
                                keep_activations=True)
        return {k: acts[:, lo:hi].reshape((x.shape[0],) + ACT_SHAPES[k])
                for k, (lo, hi) in _core.ACT_OFFSETS.items()}

    def _outputs(self, images, where, backend):
        """forward() of raw uint8 digits or preprocessed input, errors named after `where`."""
        if backend == "native":
            # _as_images gives C-contiguous float32; finiteness is checked in C as it streams
            return self._native_net().forward(_as_images(images, where, False), self._threads,
                                              where=where)
        return self.forward(_as_images(images, where), backend=backend)

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
        _check_choice("backend", backend, BACKENDS)
        x = _as_images(x, "loss_and_grad")
        y = _as_labels(labels, x.shape[0], "loss_and_grad")
        n = x.shape[0]
        if n == 0:
            raise ValueError("loss_and_grad: the batch is empty (the mean loss is undefined)")
        if backend == "reference":
            from . import reference
            loss, grads = reference.loss_and_grad(self.state_dict(), x, y, self.head)
            return float(loss), {k: np.asarray(v, np.float32) for k, v in grads.items()}
        losses, _, grad = _core.loss_grad(self._flat, _C3_OUT, _C3_IN, self.head, x, y,
                                          1.0 / n, self._threads)
        return float(np.mean(losses, dtype=np.float64)), unpack(grad, self.head, trainable_only=True)

    def hessian_diag(self, x, labels, backend: str = "native") -> dict:
        """Gauss-Newton estimate of the diagonal second derivatives of the mean loss."""
        _check_choice("backend", backend, BACKENDS)
        x = _as_images(x, "hessian_diag")
        y = _as_labels(labels, x.shape[0], "hessian_diag")
        if x.shape[0] == 0:
            raise ValueError("hessian_diag: the batch is empty")
        if backend == "reference":
            from . import reference
            h = reference.hessian_diag(self.state_dict(), x, y, self.head)
            return {k: np.asarray(v, np.float32) for k, v in h.items()}
        h = _core.hessian_diag(self._flat, _C3_OUT, _C3_IN, self.head, x, y, 1.0 / x.shape[0])
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
        """Write the .npz interchange file atomically (temporary file, fsync, rename)."""
        path = Path(path)
        arrays = self.state_dict()
        meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "head": self.head,
                "activation": "scaled_tanh(A=1.7159,S=2/3)"}
        meta.update({k: v for k, v in self.meta.items() if k not in meta})
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path, threads=None) -> "LeNet5":
        """Load and validate a .npz weight file (never unpickles anything)."""
        state, meta = read_weights(path)
        model = cls(head=meta["head"], seed=0, threads=threads)
        model._flat = pack(state, model.head)
        model.meta = {k: v for k, v in meta.items() if k not in ("format", "version", "head")}
        return model


# ----------------------------------------------------------------------------- file helpers


def atomic_write(path: Path, write) -> None:
    """Call write(fileobj) on a temporary file beside path, fsync it, then rename it over
    path. On any failure the temporary file is removed and path is left as it was."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:  # mkstemp makes the file 0600: keep the replaced file's mode, else follow the umask
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            mask = os.umask(0o022)
            os.umask(mask)
            mode = 0o666 & ~mask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if os.name == "posix":  # make the rename itself durable
        try:
            dfd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass


def validate_state(state: dict, head: str, source: str) -> None:
    """Names, shapes, dtypes, finiteness, the C3 table and its zeros; ValueError naming the array."""
    expected = set(TRUNK_KEYS) | set(HEAD_KEYS[head]) | {"c3.table"}
    missing = sorted(expected - set(state) - {"c3.table"})
    if missing:
        raise ValueError(f"{source}: missing array {missing[0]!r} (a {head}-head file needs "
                         f"{', '.join(sorted(expected))})")
    extra = sorted(set(state) - expected)
    if extra:
        raise ValueError(f"{source}: unexpected array {extra[0]!r} for a {head}-head network")
    for name in sorted(expected):
        if name not in state:
            continue
        a = state[name]
        if not isinstance(a, np.ndarray):
            a = np.asarray(a)
        shape = (16, 6) if name == "c3.table" else (10, 84) if name == "out.prototypes" else SHAPES[name]
        if a.dtype == object:
            raise ValueError(f"{source}: array {name!r} is an object array")
        if a.shape != shape:
            raise ValueError(f"{source}: array {name!r} has shape {a.shape}, expected {shape}")
        if name == "c3.table":
            if a.dtype != bool:
                raise ValueError(f"{source}: array 'c3.table' has dtype {a.dtype}, expected bool")
            if not np.array_equal(a, C3_TABLE):
                raise ValueError(f"{source}: array 'c3.table' is not the paper's Table I")
            continue
        if a.dtype != np.float32:
            raise ValueError(f"{source}: array {name!r} has dtype {a.dtype}, expected float32")
        if not np.isfinite(a).all():
            raise ValueError(f"{source}: array {name!r} contains NaN or infinity")
    if np.any(state["c3.weight"][~C3_TABLE] != 0):
        m, c = np.argwhere((state["c3.weight"] != 0).any(axis=(2, 3)) & ~C3_TABLE)[0]
        raise ValueError(f"{source}: array 'c3.weight' is non-zero at C3 map {m}, S2 map {c}, "
                         f"which Table I does not connect")
    if head == "rbf" and not np.all(np.abs(state["out.prototypes"]) == 1):
        raise ValueError(f"{source}: array 'out.prototypes' must hold only +1 and -1")


def read_weights(path):
    """Read a weight file -> (state dict, meta dict); ValueError naming the file and array."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such weight file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz weight file (not a zip archive)")
    import math
    import zlib
    from numpy.lib import format as npy

    # Read the zip members ourselves, checking each .npy header BEFORE reading its data:
    # an object array is refused unread (never unpickled) and a header lying about its size
    # is refused before anything is allocated. Our own file handle is closed on every path.
    state = {}
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            for info in zf.infolist():
                k = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if k in state:
                    raise ValueError(f"{path}: array {k!r} appears twice")
                with zf.open(info) as f:
                    try:
                        version = npy.read_magic(f)
                        read_header = {(1, 0): npy.read_array_header_1_0,
                                       (2, 0): npy.read_array_header_2_0}[version]
                        shape, fortran, dtype = read_header(f)
                    except (ValueError, KeyError, SyntaxError) as exc:
                        raise ValueError(f"{path}: array {k!r} is not a readable .npy array "
                                         f"({type(exc).__name__}: {exc})") from None
                    if dtype.hasobject:
                        raise ValueError(f"{path}: array {k!r} is an object array: refused, loading "
                                         f"it would need pickle (which can run arbitrary code)")
                    need, have = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
                    if need != have or need > 1 << 26:
                        raise ValueError(f"{path}: array {k!r} is damaged: its header says {dtype} "
                                         f"{shape} = {need} bytes, the file holds {have} bytes")
                    data = f.read(need)  # reading to the end checks the CRC
                    if len(data) != need:
                        raise ValueError(f"{path}: array {k!r} is truncated")
                a = np.frombuffer(bytearray(data), dtype=dtype) if need else np.zeros(0, dtype)
                state[k] = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: cannot read the weight file: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable .npz weight file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path}: not a .npz weight file (no arrays)")
    if "meta" not in state:
        raise ValueError(f"{path}: missing array 'meta'")
    meta_a = state.pop("meta")
    if meta_a.shape != () or meta_a.dtype.kind != "U":
        raise ValueError(f"{path}: array 'meta' must be a 0-d unicode array holding JSON")
    try:
        meta = json.loads(str(meta_a))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: array 'meta' is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: array 'meta' must hold a JSON object")
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: meta format is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: meta version {meta.get('version')!r} is not supported "
                         f"(this lenet_native reads version {FORMAT_VERSION})")
    head = meta.get("head")
    if head not in HEADS:
        raise ValueError(f"{path}: meta head is {head!r}, expected 'softmax' or 'rbf'")
    validate_state(state, head, source=str(path))
    return state, meta
