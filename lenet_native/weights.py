"""The weight file: LeNet-5's parameters in a .npz archive, and the files shipped with the package.

A weight file is a NumPy .npz archive holding one array per parameter, named and shaped
as in ``LeNet5.state_dict()`` (layout.SHAPES; C3 dense (16, 6, 5, 5) and zero where
Table I does not connect; "out.prototypes" (10, 84) for the rbf head), "c3.table" (the
(16, 6) bool Table I) and "meta": a 0-d unicode array holding a JSON object with at least
``format`` (FORMAT_NAME), ``version`` (FORMAT_VERSION) and ``head``. docs/design.md,
"Parameter layout", relates it to the C kernels' vector. Reading never unpickles anything.

The pretrained weights live in ``lenet_native/data/lenet5_<head>.npz``, read through
importlib.resources so they work from a wheel, an editable install or a zip.
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from . import fileio
from .checks import check_choice
from .layout import C3_TABLE, HEAD_KEYS, HEADS, PROTOTYPES_SHAPE, SHAPES, TRUNK_KEYS

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ACTIVATION", "read_weights", "write_weights",
           "validate_state", "read_archive", "weight_file_name", "pretrained_resource", "available_heads",
           "pretrained_path"]

FORMAT_NAME = "lenet_native.lenet5"
FORMAT_VERSION = 1
#: The squashing function, recorded in every file's meta.
ACTIVATION = "scaled_tanh(A=1.7159,S=2/3)"


def write_weights(path, state: dict, head: str, meta=None) -> None:
    """Write a weight file atomically (``fileio.atomic_write``).

    Parameters
    ----------
    path : str or os.PathLike
    state : dict
        name -> array, as ``LeNet5.state_dict()`` gives them ("c3.table" included).
    head : {"softmax", "rbf"}
    meta : dict, optional
        More JSON-serialisable entries for the file's meta; they cannot replace
        ``format``, ``version``, ``head`` or ``activation``.
    """
    arrays = dict(state)
    doc = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "head": head,
           "activation": ACTIVATION}
    doc.update({k: v for k, v in (meta or {}).items() if k not in doc})
    arrays["meta"] = np.array(json.dumps(doc, sort_keys=True))
    fileio.atomic_write(path, lambda f: np.savez(f, **arrays))


def validate_state(state: dict, head: str, source: str) -> None:
    """Check a dict of parameter arrays as a weight file would hold them.

    Checks the names, shapes, dtypes (float32; bool for "c3.table"), finiteness, the C3
    table (the paper's Table I) and C3's zeros where Table I does not connect, and that the
    rbf prototypes hold only +1 and -1.

    Parameters
    ----------
    state : dict
        name -> array ("c3.table" optional; no "meta").
    head : {"softmax", "rbf"}
    source : str
        What the dict came from (a file name), for the messages.

    Raises
    ------
    ValueError
        Naming ``source`` and the first array that fails.
    """
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
        shape = ((16, 6) if name == "c3.table" else PROTOTYPES_SHAPE if name == "out.prototypes"
                 else SHAPES[name])
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


def read_archive(path):
    """Read a .npz weight archive of any precision: its arrays and its JSON meta.

    Checks everything but the arrays' names and shapes: a zip of .npy arrays, no object
    array (refused unread, never unpickled), sizes that match, a "meta" JSON object with
    ``format`` FORMAT_NAME and ``version`` FORMAT_VERSION. :func:`read_weights` (fp32) and
    ``lenet_native.quantize`` (int8) validate the arrays.

    Returns
    -------
    state : dict
        name -> array (without "meta").
    meta : dict

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such weight file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a .npz weight file (not a zip archive)")
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
    return state, meta


def read_weights(path):
    """Read and validate a weight file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    state : dict
        name -> array (validated by :func:`validate_state`; "c3.table" included).
    meta : dict
        The JSON meta (``format``, ``version``, ``head`` and whatever the writer added).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        Naming the file (and the array) if it is not a valid weight file. An object array
        is refused unread: loading it would need pickle.
    """
    state, meta = read_archive(path)
    precision = meta.get("precision", "fp32")
    if precision != "fp32":
        raise ValueError(f"{path}: a {precision!r} weight file; load it with "
                         f"lenet_native.quantize.QuantizedLeNet5.load")
    head = meta.get("head")
    if head not in HEADS:
        raise ValueError(f"{path}: meta head is {head!r}, expected {' or '.join(map(repr, HEADS))}")
    validate_state(state, head, source=str(path))
    return state, meta


# ----------------------------------------------------------------------------- shipped files


def weight_file_name(head: str) -> str:
    """The name of the shipped weight file of ``head`` in ``lenet_native/data``."""
    return f"lenet5_{head}.npz"


def pretrained_resource(head: str):
    """The shipped weight file of ``head`` as an importlib.resources Traversable (which
    may not exist: see :func:`available_heads`)."""
    return resources.files("lenet_native").joinpath("data", weight_file_name(head))


def available_heads() -> tuple:
    """The heads whose pretrained weights this installation ships, e.g. ("softmax", "rbf")."""
    return tuple(h for h in HEADS if pretrained_resource(h).is_file())


def pretrained_path(head: str = "softmax"):
    """A context manager giving a real file path of the shipped weight file of ``head``.

    Raises
    ------
    ValueError
        Naming the head, if it is not one of layout.HEADS or this installation ships no
        weights for it.
    """
    check_choice("head", head, HEADS)
    res = pretrained_resource(head)
    if not res.is_file():
        shipped = available_heads()
        have = ", ".join(repr(h) for h in shipped) if shipped else "none"
        raise ValueError(f"no pretrained weights for the {head!r} head are shipped with "
                         f"lenet_native (missing lenet_native/data/{weight_file_name(head)}); "
                         f"pretrained heads available: {have}")
    return resources.as_file(res)
