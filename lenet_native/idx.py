"""The IDX file format: reading and writing.

IDX (http://yann.lecun.com/exdb/mnist/) is the format MNIST ships in: a 4-byte magic
number -- two zero bytes, a data type code, the number of dimensions -- then one big-endian
32-bit size per dimension, then the data in C order, big-endian. A file may be
gzip-compressed (recognised by content, not by name).

Finding, checking and downloading MNIST is lenet_native.datasets's job.
"""

from __future__ import annotations

import errno
import gzip
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from . import fileio

__all__ = ["read_idx", "open_idx", "write_idx", "open_for_reading", "DTYPE_CODES", "GZIP_MAGIC", "CHUNK"]

GZIP_MAGIC = b"\x1f\x8b"

#: type code -> numpy dtype (native byte order; files are big-endian)
DTYPE_CODES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_KIND_SIZE_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in DTYPE_CODES.items()}
_CODES_TEXT = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in DTYPE_CODES.items())

_MAX_NDIM = 4
_MAX_DIM = 2**31 - 1  # sizes are 32-bit integers; a set top bit would be negative
CHUNK = 1 << 20  # bytes read at a time
# gzip files claiming at most this many bytes are decompressed straight into one buffer
PREALLOCATE = 1 << 28


def _describe(dims, dtype) -> str:
    shape = "x".join(str(d) for d in dims)
    nbytes = _prod(dims) * dtype.itemsize
    return f"{shape} {dtype.name} = {nbytes} bytes"


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _read_upto(f, n: int) -> bytes:
    """Read up to ``n`` bytes, fewer only at end of stream."""
    parts = []
    while n > 0:
        chunk = f.read(min(n, CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _parse_header(f, name: str, hint: str):
    """Read and check the IDX header; return (dtype, dims, header length)."""
    head = _read_upto(f, 4)
    if not head:
        raise ValueError(f"{name}: empty file, expected an IDX header{hint}")
    if len(head) < 4:
        raise ValueError(
            f"{name}: truncated header: {len(head)} bytes, an IDX file starts with "
            f"a 4-byte magic number{hint}"
        )
    if head[0] != 0 or head[1] != 0:
        raise ValueError(
            f"{name}: bad magic number 0x{head.hex()}: an IDX file starts with two "
            f"zero bytes{hint}"
        )
    code, ndim = head[2], head[3]
    if code not in DTYPE_CODES:
        raise ValueError(
            f"{name}: bad magic number 0x{head.hex()}: unknown data type code "
            f"0x{code:02X} (known: {_CODES_TEXT})"
        )
    if not 1 <= ndim <= _MAX_NDIM:
        raise ValueError(
            f"{name}: bad magic number 0x{head.hex()}: number of dimensions is "
            f"{ndim}, must be 1..{_MAX_NDIM}"
        )
    raw_dims = _read_upto(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{name}: truncated header: {ndim} dimensions need {4 * ndim} bytes of "
            f"sizes after the magic number, file has {len(raw_dims)}"
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    for i, d in enumerate(dims):
        if d > _MAX_DIM:
            raise ValueError(
                f"{name}: bad header: dimension {i} has size {d} (0x{d:08X}), "
                f"more than the largest 32-bit signed size {_MAX_DIM}"
            )
    return DTYPE_CODES[code], dims, 4 + 4 * ndim


def _to_array(buf: bytearray, dtype: np.dtype, dims) -> np.ndarray:
    arr = np.frombuffer(buf, dtype=dtype)  # writeable: buf is a bytearray
    if dtype.itemsize > 1 and sys.byteorder == "little":
        arr.byteswap(inplace=True)  # big-endian file -> native order
    return arr.reshape(dims)


def _size_error(name, kind, dims, dtype, header_len, have, gz):
    where = "decompressed data has" if gz else "file has"
    return ValueError(
        f"{name}: {kind}: header says {_describe(dims, dtype)} after the "
        f"{header_len}-byte header, {where} {have}"
    )


def _trailing(n: int) -> str:
    return f"{n} trailing byte{'' if n == 1 else 's'}"


def _raw_header(f, name: str, hint: str):
    """Header of an uncompressed IDX file, checked against the file's real size:
    (dtype, dims, header length, data bytes)."""
    dtype, dims, header_len = _parse_header(f, name, hint)
    expected = _prod(dims) * dtype.itemsize
    have = os.fstat(f.fileno()).st_size - header_len
    # Compare with the real size before allocating anything.
    if have < expected:
        raise _size_error(name, "truncated", dims, dtype, header_len, have, False)
    if have > expected:
        raise _size_error(
            name, _trailing(have - expected), dims, dtype, header_len, have, False
        )
    return dtype, dims, header_len, expected


def _read_raw(f, name: str, hint: str) -> np.ndarray:
    dtype, dims, header_len, expected = _raw_header(f, name, hint)
    buf = bytearray(expected)
    view = memoryview(buf)
    got = 0
    while got < expected:
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    if got < expected:  # the file shrank while we read it
        raise _size_error(name, "truncated", dims, dtype, header_len, got, False)
    if f.read(1):  # ... or grew
        raise ValueError(f"{name}: trailing bytes: the file grew while being read")
    return _to_array(buf, dtype, dims)


def _read_gzip(f, name: str) -> np.ndarray:
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as g:
            dtype, dims, header_len = _parse_header(g, name, "")
            expected = _prod(dims) * dtype.itemsize
            if expected <= PREALLOCATE:
                # A claim this size (MNIST's 47 MB) is allocated once and decompressed into
                # in place: no growing buffer, no copy (peak: the array itself).
                buf = bytearray(expected)
                view = memoryview(buf)
                got = 0
                while got < expected:
                    n = g.readinto(view[got:got + CHUNK])
                    if not n:
                        break
                    got += n
                view.release()
                if got < expected:
                    raise _size_error(name, "truncated", dims, dtype, header_len, got, True)
                extra = len(g.read(1))
                if extra:
                    while True:
                        chunk = g.read(CHUNK)
                        if not chunk:
                            break
                        extra += len(chunk)
                    raise _size_error(name, _trailing(extra), dims, dtype, header_len,
                                      expected + extra, True)
                return _to_array(buf, dtype, dims)
            # A larger claim is never allocated up front: read what is really
            # there, one chunk at a time, stopping one byte past the claim.
            buf = bytearray()
            limit = expected + 1
            while len(buf) < limit:
                chunk = g.read(min(CHUNK, limit - len(buf)))
                if not chunk:
                    break
                buf += chunk
            if len(buf) > expected:
                extra = len(buf) - expected
                del buf
                while True:
                    chunk = g.read(CHUNK)
                    if not chunk:
                        break
                    extra += len(chunk)
                raise _size_error(
                    name, _trailing(extra), dims, dtype, header_len,
                    expected + extra, True,
                )
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: corrupt or truncated gzip data: {e}") from e
    if len(buf) < expected:
        raise _size_error(name, "truncated", dims, dtype, header_len, len(buf), True)
    return _to_array(buf, dtype, dims)


def open_for_reading(path: Path):
    """``open(path, "rb")``; a missing file is a FileNotFoundError naming it."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "file not found", str(path)) from None


def read_idx(path) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into a native-endian array.

    Compression is recognised by content (the gzip magic bytes ``1f 8b``), so
    a ``.gz`` file is decompressed, and a file named ``.gz`` that a browser
    already decompressed is still read.  Every problem with the content
    raises ``ValueError`` naming the file; a missing file raises
    ``FileNotFoundError``.
    """
    path = Path(path)
    name = str(path)
    with open_for_reading(path) as f:
        if f.read(2) == GZIP_MAGIC:
            f.seek(0)
            return _read_gzip(f, name)
        f.seek(0)
        return _read_raw(f, name, _gz_hint(name))


def _gz_hint(name: str) -> str:
    return (" (the name ends in .gz but the content is not gzip-compressed)"
            if name.endswith(".gz") else "")


def open_idx(path) -> np.ndarray:
    """A read-only memory-mapped view of an uncompressed IDX file.

    Nothing is read until the view is indexed, so a file larger than memory can be scored
    a slice at a time (:func:`lenet_native.dask.open_idx_dask` gives a dask array over it).

    Parameters
    ----------
    path : str or os.PathLike
        An uncompressed IDX file.

    Returns
    -------
    numpy.memmap
        The file's shape; multi-byte types keep the file's big-endian dtype (the values
        are right; ``astype`` converts). A file of zero items gives an empty ndarray.

    Raises
    ------
    ValueError
        The header and the file size are checked exactly as :func:`read_idx` checks them,
        naming the file; a gzip-compressed file cannot be mapped (decompress it, or use
        ``read_idx``).
    FileNotFoundError
        If the file is missing.
    """
    path = Path(path)
    name = str(path)
    with open_for_reading(path) as f:
        if f.read(2) == GZIP_MAGIC:
            raise ValueError(f"{name}: gzip-compressed; only an uncompressed IDX file can be "
                             f"memory-mapped (decompress it with gunzip -k, or use read_idx)")
        f.seek(0)
        dtype, dims, header_len, expected = _raw_header(f, name, _gz_hint(name))
        if expected == 0:  # mmap cannot map zero bytes
            return np.zeros(dims, dtype)
        return np.memmap(f, dtype=dtype.newbyteorder(">"), mode="r", offset=header_len,
                         shape=tuple(dims))


def write_idx(path, array) -> None:
    """Write ``array`` to an IDX file, gzip-compressed if ``path`` ends in .gz.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte
    order); 1 to 4 dimensions, each below 2**31.  The file is written
    atomically (``fileio.atomic_write``): readers see the old file or the complete new
    one.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _KIND_SIZE_TO_CODE.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"{path}: cannot write dtype {arr.dtype} to IDX (supported: {_CODES_TEXT})"
        )
    if not 1 <= arr.ndim <= _MAX_NDIM:
        raise ValueError(
            f"{path}: cannot write a {arr.ndim}-dimensional array to IDX "
            f"(1..{_MAX_NDIM} dimensions)"
        )
    if any(d > _MAX_DIM for d in arr.shape):
        raise ValueError(f"{path}: shape {arr.shape} has a size above {_MAX_DIM}")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder(">")).tobytes()

    def write(f):
        if str(path).endswith(".gz"):
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=f,
                               compresslevel=6, mtime=0) as g:
                g.write(header)
                g.write(data)
        else:
            f.write(header)
            f.write(data)

    fileio.atomic_write(path, write)
