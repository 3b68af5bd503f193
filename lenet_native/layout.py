"""The network's layout: Table I, the shapes, and the flat parameter vector of the C kernels.

Everything here is fixed by the architecture (LeCun et al. 1998, section II.B) and by
csrc/lenet.h; nothing here computes the network. docs/design.md, "Parameter layout", draws
the vector.

The C kernels keep every parameter in one float32 vector of ``_core.NPARAMS`` numbers, the
arrays in the order of ``_core.PARAM_OFFSETS``, with C3's weights packed: only the 60
(C3 map, S2 map) pairs that Table I connects, listed by :data:`C3_OUT` / :data:`C3_IN`. The
interchange layout (``LeNet5.state_dict()``, the .npz weight file) names each array like
PyTorch, with C3 dense (16, 6, 5, 5) and zero where Table I does not connect; :func:`pack`
and :func:`unpack` convert between the two.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["HEADS", "C3_TABLE", "C3_OUT", "C3_IN", "SHAPES", "ACT_SHAPES", "HEAD_KEYS",
           "TRUNK_KEYS", "FAN_IN", "N_CLASSES", "PROTOTYPES_SHAPE", "NPARAMS", "PARAM_OFFSETS",
           "param_vector", "c5_line_offset", "is_placed", "pack", "unpack", "trainable_mask"]

#: The output heads: "softmax" (dense 84 -> 10, softmax cross-entropy) and "rbf" (the
#: paper's ten Euclidean RBF units with fixed prototypes). The names the C kernels take.
HEADS = tuple(_core.HEADS)

NPARAMS = _core.NPARAMS
PARAM_OFFSETS = _core.PARAM_OFFSETS

# Table I of the paper: C3 map -> the S2 maps it reads.
_C3_SETS = [
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
]
#: (16, 6) bool, read-only: ``C3_TABLE[m, c]`` is True when C3 map m reads S2 map c.
C3_TABLE = np.zeros((16, 6), dtype=bool)
for _m, _inputs in enumerate(_C3_SETS):
    C3_TABLE[_m, list(_inputs)] = True
C3_TABLE.setflags(write=False)
#: The 60 connected pairs handed to the C kernels, int32, sorted by C3 map:
#: pair k connects C3 map ``C3_OUT[k]`` to S2 map ``C3_IN[k]``.
C3_OUT, C3_IN = (a.astype(np.int32) for a in np.nonzero(C3_TABLE))
C3_OUT.setflags(write=False)
C3_IN.setflags(write=False)

#: Interchange shape of every trained array (C3 dense), softmax head included.
SHAPES = {
    "c1.weight": (6, 1, 5, 5), "c1.bias": (6,),
    "s2.weight": (6,), "s2.bias": (6,),
    "c3.weight": (16, 6, 5, 5), "c3.bias": (16,),
    "s4.weight": (16,), "s4.bias": (16,),
    "c5.weight": (120, 16, 5, 5), "c5.bias": (120,),
    "f6.weight": (84, 120), "f6.bias": (84,),
    "out.weight": (10, 84), "out.bias": (10,),
}
N_CLASSES = 10
#: The RBF head's fixed prototypes: one +1/-1 vector of F6's width per class.
PROTOTYPES_SHAPE = (N_CLASSES, 84)
#: The arrays of each head's output layer.
HEAD_KEYS = {"softmax": ("out.weight", "out.bias"), "rbf": ("out.prototypes",)}
#: The arrays every network has (C1 .. F6).
TRUNK_KEYS = tuple(k for k in SHAPES if not k.startswith("out."))
#: Fan-in of the unit each layer's arrays feed (the paper's init: uniform in +-2.4 / F);
#: C3's varies per map and is taken from Table I.
FAN_IN = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120, "out": 84}

#: Per-image shape of each layer's output (``LeNet5.activations``).
ACT_SHAPES = {
    "c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10), "s4": (16, 5, 5),
    "c5": (120,), "f6": (84,), "output": (10,),
}


def param_vector() -> np.ndarray:
    """A zeroed parameter vector placed for speed.

    Returns
    -------
    numpy.ndarray
        float32 (NPARAMS,), zero, placed so that C5's weights begin on a 64-byte line.

    Notes
    -----
    The C kernels read C5 (120 rows of 400 floats, 192 KB, more than L1 holds) a whole row
    at a time; with the row starts off the line, every vector load spans two lines and the
    single-image forward spends about twice as long in C5. Only speed depends on the
    placement: results do not (the C code never looks at addresses).
    """
    raw = np.zeros(NPARAMS + 16, dtype=np.float32)
    lead = (64 - c5_line_offset(raw)) % 64 // 4
    return raw[lead:lead + NPARAMS]


def c5_line_offset(flat: np.ndarray) -> int:
    """How many bytes past a 64-byte line C5's weights start in a parameter vector.

    Parameters
    ----------
    flat : numpy.ndarray
        A float32 parameter vector (or any float32 array at least that long).

    Returns
    -------
    int
        0 to 63; 0 means placed (see :func:`param_vector`).
    """
    return (flat.ctypes.data + 4 * PARAM_OFFSETS["c5.weight"][0]) % 64


def is_placed(flat: np.ndarray) -> bool:
    """True if C5's weights in the parameter vector ``flat`` start on a 64-byte line."""
    return c5_line_offset(flat) == 0


def pack(state: dict, head: str) -> np.ndarray:
    """Interchange dict -> the flat parameter vector of the C kernels.

    Parameters
    ----------
    state : dict
        Arrays keyed like the weight file (C3 dense; "out.prototypes" for the rbf head).
        Not validated here (see ``weights.validate_state``).
    head : {"softmax", "rbf"}

    Returns
    -------
    numpy.ndarray
        A new placed float32 (NPARAMS,) vector (:func:`param_vector`).
    """
    flat = param_vector()
    for name, (lo, hi) in PARAM_OFFSETS.items():
        if name == "c3.weight":
            flat[lo:hi] = np.asarray(state[name], np.float32)[C3_OUT, C3_IN].reshape(-1)
        elif name == "out.weight" and head == "rbf":
            flat[lo:hi] = np.asarray(state["out.prototypes"], np.float32).reshape(-1)
        elif name == "out.bias" and head == "rbf":
            continue
        else:
            flat[lo:hi] = np.asarray(state[name], np.float32).reshape(-1)
    return flat


def unpack(flat: np.ndarray, head: str, trainable_only=False) -> dict:
    """The flat parameter vector -> interchange dict (copies).

    Parameters
    ----------
    flat : numpy.ndarray
        float32 (NPARAMS,): parameters, or anything laid out like them (gradients, the
        Gauss-Newton diagonal).
    head : {"softmax", "rbf"}
    trainable_only : bool, default False
        Leave out the rbf head's fixed prototypes.

    Returns
    -------
    dict
        name -> float32 array of :data:`SHAPES` (C3 dense, zero where Table I does not
        connect); "out.prototypes" (10, 84) for the rbf head unless ``trainable_only``.
    """
    out = {}
    for name, (lo, hi) in PARAM_OFFSETS.items():
        if name.startswith("out.") and head == "rbf":
            continue
        if name == "c3.weight":
            dense = np.zeros(SHAPES[name], dtype=np.float32)
            dense[C3_OUT, C3_IN] = flat[lo:hi].reshape(-1, 5, 5)
            out[name] = dense
        else:
            out[name] = flat[lo:hi].reshape(SHAPES[name]).copy()
    if head == "rbf" and not trainable_only:
        lo, hi = PARAM_OFFSETS["out.weight"]
        out["out.prototypes"] = flat[lo:hi].reshape(PROTOTYPES_SHAPE).copy()
    return out


def trainable_mask(head: str) -> np.ndarray:
    """Which parameters training changes.

    Returns
    -------
    numpy.ndarray
        uint8 (NPARAMS,): 1 where a parameter is trained, 0 for the rbf head's prototypes.
    """
    mask = np.ones(NPARAMS, dtype=np.uint8)
    if head == "rbf":
        lo, _ = PARAM_OFFSETS["out.weight"]
        mask[lo:] = 0
    return mask
