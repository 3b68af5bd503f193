"""The .lenet model file: LeNet-5's weights in a little-endian binary that C reads.

The format C programs load with liblenet's ``lenet_model_load`` (csrc/lenet_native.h);
docs/lenet-format.md specifies it byte by byte. A header (magic, version, head, sizes), a
table of named arrays with their shapes and offsets (the names and interchange shapes of
the .npz weight file: ``c1.weight`` ... and ``c3.table``), a JSON metadata object (the
model's ``meta``), the arrays, and a CRC-32 of everything before it. ``LeNet5.save`` and
``LeNet5.load`` choose it for a path ending in ``.lenet`` (the .npz stays the interchange
format). Reading checks everything the C loader checks and raises ValueError naming the
file for any damage: a wrong magic or version, a size, offset or name out of place, a
truncation, a CRC mismatch, a NaN, C3 weights where Table I has no connection.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from . import fileio
from .layout import C3_TABLE, HEAD_KEYS, HEADS, PROTOTYPES_SHAPE, SHAPES, TRUNK_KEYS
from .weights import ACTIVATION, validate_state

__all__ = ["MAGIC", "FORMAT_VERSION", "SUFFIX", "is_lenet_path", "array_names", "encode", "decode",
           "write_lenet", "read_lenet"]

MAGIC = b"\x89LENET\r\n"
FORMAT_VERSION = 1
SUFFIX = ".lenet"


def is_lenet_path(path) -> bool:
    """True if ``path`` names a .lenet file (by its suffix, in any case); other files are
    .npz weight files."""
    return str(path).lower().endswith(SUFFIX)
HEADER = struct.Struct("<8sIIIIQ")     # magic, version, head, narrays, meta bytes, file bytes
ENTRY = struct.Struct("<24sII4IQQ")    # name, dtype, ndim, dims, offset, nbytes
DTYPES = {1: np.dtype("<f4"), 2: np.dtype("u1")}
ALIGN = 64                             # writers start each array on a 64-byte boundary
MAX_META_BYTES = 1 << 20
MAX_FILE_BYTES = 2 << 20
_HEAD_CODES = {"softmax": 0, "rbf": 1}


def array_names(head: str) -> tuple:
    """The arrays of a ``head`` file, in file order: the trunk, the head's, "c3.table"."""
    return TRUNK_KEYS + HEAD_KEYS[head] + ("c3.table",)


def _shape(name):
    return (16, 6) if name == "c3.table" else PROTOTYPES_SHAPE if name == "out.prototypes" else SHAPES[name]


def encode(state: dict, head: str, meta=None) -> bytes:
    """The bytes of a .lenet file.

    Parameters
    ----------
    state : dict
        name -> array, as ``LeNet5.state_dict()`` gives them (validated first).
    head : {"softmax", "rbf"}
    meta : dict, optional
        JSON-serialisable metadata (the model's ``meta``); "activation" is always recorded.

    Returns
    -------
    bytes
    """
    state = dict(state)
    state.setdefault("c3.table", C3_TABLE)
    validate_state(state, head, source="state")
    doc = {"activation": ACTIVATION}
    doc.update({k: v for k, v in (meta or {}).items() if k not in ("format", "version", "head")})
    meta_bytes = json.dumps(doc, sort_keys=True).encode("utf-8")
    if len(meta_bytes) > MAX_META_BYTES:
        raise ValueError(f"meta is {len(meta_bytes)} bytes of JSON; a .lenet file holds at most "
                         f"{MAX_META_BYTES}")
    names = array_names(head)
    pos = HEADER.size + ENTRY.size * len(names) + len(meta_bytes)
    table, blobs = [], []
    for name in names:
        a = np.asarray(state[name])
        code, data = (2, a.astype(np.uint8).tobytes()) if name == "c3.table" else (1, a.astype("<f4").tobytes())
        shape = _shape(name)
        pad = -pos % ALIGN
        pos += pad
        dims = list(shape) + [0] * (4 - len(shape))
        table.append(ENTRY.pack(name.encode("ascii"), code, len(shape), *dims, pos, len(data)))
        blobs.append(b"\0" * pad + data)
        pos += len(data)
    body = b"".join(table) + meta_bytes + b"".join(blobs)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, _HEAD_CODES[head], len(names), len(meta_bytes),
                         HEADER.size + len(body) + 4)
    payload = header + body
    return payload + struct.pack("<I", zlib.crc32(payload))


def decode(data: bytes, source: str = "data"):
    """Check and read the bytes of a .lenet file.

    Parameters
    ----------
    data : bytes-like
    source : str
        What the bytes came from (a file name), for the messages.

    Returns
    -------
    state : dict
        name -> array ("c3.table" bool; the rest float32), validated.
    head : {"softmax", "rbf"}
    meta : dict
        The file's JSON metadata.

    Raises
    ------
    ValueError
        Naming ``source`` and what is wrong.
    """
    b = bytes(data)
    n = len(b)

    def bad(why):
        return ValueError(f"{source}: {why}")

    if n < len(MAGIC) or b[:len(MAGIC)] != MAGIC:
        if n < len(MAGIC) and MAGIC.startswith(b):
            raise bad(f"truncated .lenet file ({n} bytes)")
        raise bad("not a .lenet model file (wrong magic)")
    if n < HEADER.size:
        raise bad(f"truncated .lenet file ({n} bytes, the header alone is {HEADER.size})")
    _, version, head_code, narrays, meta_len, file_bytes = HEADER.unpack_from(b)
    if version != FORMAT_VERSION:
        raise bad(f".lenet format version {version} is not supported (this lenet_native reads "
                  f"version {FORMAT_VERSION})")
    if head_code >= len(HEADS):
        raise bad(f"corrupt .lenet file: head code {head_code} (0 softmax, 1 rbf)")
    head = {v: k for k, v in _HEAD_CODES.items()}[head_code]
    names = array_names(head)
    if narrays != len(names):
        raise bad(f"corrupt .lenet file: {narrays} arrays, a {head}-head file has {len(names)}")
    if meta_len > MAX_META_BYTES or file_bytes > MAX_FILE_BYTES:
        raise bad(f"corrupt .lenet file: absurd sizes (meta {meta_len} bytes, file {file_bytes} bytes)")
    data_start = HEADER.size + ENTRY.size * narrays + meta_len
    if file_bytes < data_start + 4:
        raise bad(f"corrupt .lenet file: its size field {file_bytes} is below its header, table "
                  f"and metadata ({data_start + 4} bytes)")
    if n < file_bytes:
        raise bad(f"truncated .lenet file ({n} of {file_bytes} bytes)")
    if n > file_bytes:
        raise bad(f"corrupt .lenet file: {n - file_bytes} bytes after its end")
    crc_at = file_bytes - 4
    if zlib.crc32(b[:crc_at]) != struct.unpack_from("<I", b, crc_at)[0]:
        raise bad("damaged .lenet file: CRC-32 mismatch")
    state, prev_end = {}, data_start
    for i, name in enumerate(names):
        raw, code, ndim, d0, d1, d2, d3, off, nbytes = ENTRY.unpack_from(b, HEADER.size + ENTRY.size * i)
        if raw != name.encode("ascii").ljust(24, b"\0"):
            found = raw.rstrip(b"\0")
            raise bad(f"corrupt .lenet file: array {i} is named {found!r}, expected {name!r}")
        shape = _shape(name)
        want_code = 2 if name == "c3.table" else 1
        dims = (d0, d1, d2, d3)
        if code != want_code or ndim != len(shape) or dims != tuple(shape) + (0,) * (4 - len(shape)):
            raise bad(f"corrupt .lenet file: array {name!r} has dtype code {code}, dims "
                      f"{dims[:min(ndim, 4)]}; expected code {want_code}, shape {shape}")
        itemsize = DTYPES[code].itemsize
        if nbytes != int(np.prod(shape)) * itemsize:
            raise bad(f"corrupt .lenet file: array {name!r} says {nbytes} bytes for shape {shape}")
        if off % 4 or off < prev_end or off > crc_at or nbytes > crc_at - off:
            raise bad(f"corrupt .lenet file: array {name!r} at offset {off} overlaps another part "
                      f"of the file or lies outside it")
        prev_end = off + nbytes
        a = np.frombuffer(b, DTYPES[code], count=nbytes // itemsize, offset=off).reshape(shape)
        if name == "c3.table":
            if not np.array_equal(a, C3_TABLE.astype(np.uint8)):
                raise bad("corrupt .lenet file: array 'c3.table' is not the paper's Table I")
            a = a.astype(bool)
        else:
            a = a.astype(np.float32)   # native byte order, a writable copy
        state[name] = a
    validate_state(state, head, source=source)
    try:
        meta = json.loads(b[HEADER.size + ENTRY.size * narrays:data_start].decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad(f"corrupt .lenet file: its metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise bad("corrupt .lenet file: its metadata is not a JSON object")
    return state, head, meta


def write_lenet(path, state: dict, head: str, meta=None) -> None:
    """Write a .lenet file atomically (``fileio.atomic_write``); arguments as :func:`encode`."""
    data = encode(state, head, meta)
    fileio.atomic_write(path, lambda f: f.write(data))


def read_lenet(path):
    """Read and check a .lenet file; returns ``(state, head, meta)`` as :func:`decode`.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        Naming the file, if it is not a valid .lenet file (at most 2 MiB + 1 byte is read).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return decode(data, source=str(path))

