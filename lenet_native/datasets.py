"""Reading and writing IDX files, and finding, loading and downloading MNIST.

This module is self-contained: it imports nothing from the rest of
``lenet_native`` (only the standard library and numpy), so it works even when
the compiled extension is not built.

IDX format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number -- two
zero bytes, a data type code, the number of dimensions -- then one big-endian
32-bit size per dimension, then the data in C order, big-endian.

Where MNIST is looked for (see :func:`default_data_dirs`):

1. the ``path`` argument, if given (then nothing else is tried);
2. the folder named by the environment variable ``LENET_NATIVE_DATA``;
3. a per-user cache folder: ``$XDG_CACHE_HOME/lenet_native/mnist`` or
   ``~/.cache/lenet_native/mnist`` (``%LOCALAPPDATA%\\lenet_native\\mnist``
   on Windows), which is where :func:`download_mnist` puts the files by default.

Each file may be gzip-compressed (the standard ``*.gz`` names) or not (the
same names without ``.gz``).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx",
    "open_idx",
    "write_idx",
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "ENV_VAR",
    "cache_dir",
    "default_data_dirs",
    "find_mnist",
    "load_mnist",
    "verify_mnist",
    "uncompressed_sha256",
    "download_mnist",
    "urlopen",
]

# --------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"

# type code -> numpy dtype (native byte order; files are big-endian)
_CODE_TO_DTYPE = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_KIND_SIZE_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}
_CODES_TEXT = ", ".join(f"0x{c:02X} {dt.name}" for c, dt in _CODE_TO_DTYPE.items())

_MAX_NDIM = 4
_MAX_DIM = 2**31 - 1  # sizes are 32-bit integers; a set top bit would be negative
_CHUNK = 1 << 20


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
        chunk = f.read(min(n, _CHUNK))
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
    if code not in _CODE_TO_DTYPE:
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
    return _CODE_TO_DTYPE[code], dims, 4 + 4 * ndim


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
            # Never allocate what the header claims: read what is really
            # there, one chunk at a time, stopping one byte past the claim.
            buf = bytearray()
            limit = expected + 1
            while len(buf) < limit:
                chunk = g.read(min(_CHUNK, limit - len(buf)))
                if not chunk:
                    break
                buf += chunk
            if len(buf) > expected:
                extra = len(buf) - expected
                del buf
                while True:
                    chunk = g.read(_CHUNK)
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


def _open_for_reading(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "file not found", str(path)) from None


def _gz_hint(name: str) -> str:
    return (" (the name ends in .gz but the content is not gzip-compressed)"
            if name.endswith(".gz") else "")


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
    with _open_for_reading(path) as f:
        if f.read(2) == GZIP_MAGIC:
            f.seek(0)
            return _read_gzip(f, name)
        f.seek(0)
        return _read_raw(f, name, _gz_hint(name))


def open_idx(path) -> np.ndarray:
    """A read-only memory-mapped view of an uncompressed IDX file: nothing is read until
    it is indexed, so a file larger than memory can be scored a slice at a time.

    The header and the file size are checked exactly as :func:`read_idx` checks them
    (``ValueError`` naming the file; ``FileNotFoundError`` if missing). A gzip-compressed
    file cannot be mapped: ``ValueError`` saying to decompress it or use ``read_idx``.
    Multi-byte types keep the file's big-endian dtype (values are right; ``astype``
    converts). :func:`lenet_native.dask.open_idx_dask` gives a dask array over the file.
    """
    path = Path(path)
    name = str(path)
    with _open_for_reading(path) as f:
        if f.read(2) == GZIP_MAGIC:
            raise ValueError(f"{name}: gzip-compressed; only an uncompressed IDX file can be "
                             f"memory-mapped (decompress it with gunzip -k, or use read_idx)")
        f.seek(0)
        dtype, dims, header_len, expected = _raw_header(f, name, _gz_hint(name))
        if expected == 0:  # mmap cannot map zero bytes
            return np.zeros(dims, dtype)
        return np.memmap(f, dtype=dtype.newbyteorder(">"), mode="r", offset=header_len,
                         shape=tuple(dims))


# ---- atomic writing ------------------------------------------------------

_umask_cache = None


def _umask() -> int:
    global _umask_cache
    if _umask_cache is None:
        old = os.umask(0o022)
        os.umask(old)
        _umask_cache = old
    return _umask_cache


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: Path):
    """Yield a binary file (read/write) that replaces ``path`` on success.

    The data go to a temporary file in the same folder, which is fsynced and
    renamed over ``path`` only if the ``with`` block finishes without an
    exception; otherwise it is removed and ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    done = False
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600
        except OSError:
            pass
        os.replace(tmp, path)
        done = True
        _fsync_dir(path.parent)
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_idx(path, array) -> None:
    """Write ``array`` to an IDX file, gzip-compressed if ``path`` ends in .gz.

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte
    order); 1 to 4 dimensions, each below 2**31.  The file is written
    atomically: readers see the old file or the complete new one.
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
    with _atomic_file(path) as f:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=f,
                               compresslevel=6, mtime=0) as g:
                g.write(header)
                g.write(data)
        else:
            f.write(header)
            f.write(data)


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# SHA-256 of the *uncompressed* content, keyed by the names in MNIST_FILES.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

ENV_VAR = "LENET_NATIVE_DATA"

_IMAGE_SHAPE = (28, 28)
_NUM_CLASSES = 10
# No genuine MNIST file comes close to these; they stop a bad server or a
# gzip bomb from filling the disk or memory.
_MAX_DOWNLOAD_BYTES = 64 << 20
_MAX_UNCOMPRESSED_BYTES = 128 << 20


def _all_names():
    return [n for pair in MNIST_FILES.values() for n in pair]


def _names_for(split) -> list:
    if split is None:
        return _all_names()
    _check_split(split)
    return list(MNIST_FILES[split])


def _check_split(split) -> None:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")


def _locate(folder: Path, name: str):
    """The file for ``name`` in ``folder``: the .gz name, else without .gz."""
    for candidate in (name, name[:-3]):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _missing(folder: Path, names) -> list:
    return [n for n in names if _locate(folder, n) is None]


def cache_dir() -> Path:
    """Per-user cache folder for MNIST (the default of :func:`download_mnist`)."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        root = Path(base) if base else Path.home() / "AppData" / "Local"
    else:
        base = os.environ.get("XDG_CACHE_HOME")
        # The XDG spec says relative values are to be ignored.
        root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "lenet_native" / "mnist"


def default_data_dirs(path=None) -> list:
    """Folders searched for MNIST, in order: ``path``, $LENET_NATIVE_DATA, cache."""
    dirs = []
    if path is not None:
        dirs.append(Path(path).expanduser())
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(cache_dir())
    unique = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


_HOW_TO_GET = (
    f"On a machine with internet access, lenet_native.datasets.download_mnist() "
    f"fetches them (checksums verified) into {{cache}}; or put them in a folder and "
    f"pass it as `path` or set {ENV_VAR} to it."
)


def find_mnist(path=None, split=None) -> Path:
    """Return the folder holding the MNIST files.

    ``split`` ("train" or "test") asks only for that split's two files;
    ``None`` asks for all four.  If ``path`` is given, only it is checked and
    a ``FileNotFoundError`` names what is missing from it; otherwise the
    folders of :func:`default_data_dirs` are tried in order and the error
    lists every place looked.
    """
    names = _names_for(split)
    how = _HOW_TO_GET.format(cache=cache_dir())
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.exists():
            raise FileNotFoundError(
                f"{folder}: MNIST folder does not exist. {how}")
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: not a folder; expected the folder holding the MNIST files")
        missing = _missing(folder, names)
        if missing:
            raise FileNotFoundError(
                f"{folder}: MNIST file(s) missing: {', '.join(missing)} "
                f"(each may also be uncompressed, without .gz). {how}"
            )
        return folder
    looked = []
    env = os.environ.get(ENV_VAR)
    for folder in default_data_dirs(None):
        label = f"${ENV_VAR}" if env and folder == Path(env).expanduser() else "user cache"
        if not folder.is_dir():
            looked.append(f"  {folder} ({label}): no such folder")
            continue
        missing = _missing(folder, names)
        if not missing:
            return folder
        looked.append(f"  {folder} ({label}): missing {', '.join(missing)}")
    if not env:
        looked.append(f"  (${ENV_VAR} is not set)")
    raise FileNotFoundError(
        "MNIST not found. Looked in:\n" + "\n".join(looked) + "\n"
        f"Needed: {', '.join(names)} (each may also be uncompressed, without .gz). "
        + how
    )


def load_mnist(path=None, split="train"):
    """Load one MNIST split: ``(images uint8 (N, 28, 28), labels uint8 (N,))``.

    ``path`` is the folder holding the files (see :func:`find_mnist` for the
    search when it is None).  Nothing is cached between calls.
    """
    _check_split(split)
    folder = find_mnist(path, split=split)
    image_name, label_name = MNIST_FILES[split]
    image_path = _locate(folder, image_name)
    label_path = _locate(folder, label_name)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE:
        raise ValueError(
            f"{image_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(
            f"{label_path}: expected uint8 labels of shape (N,), got "
            f"{labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{folder}: {image_path.name} has {len(images)} images but "
            f"{label_path.name} has {len(labels)} labels"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        bad = np.flatnonzero(labels >= _NUM_CLASSES)
        raise ValueError(
            f"{label_path}: {bad.size} label(s) outside 0..{_NUM_CLASSES - 1}, first "
            f"at index {bad[0]} with value {labels[bad[0]]}"
        )
    return images, labels


# ---- checksums -----------------------------------------------------------

def _sha256_stream(f, name: str, limit=None) -> str:
    """SHA-256 of the uncompressed content of the binary file object ``f``."""
    h = hashlib.sha256()
    start = f.read(2)
    f.seek(0)
    total = 0
    try:
        src = gzip.GzipFile(fileobj=f, mode="rb") if start == GZIP_MAGIC else f
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if limit is not None and total > limit:
                raise ValueError(f"{name}: more than {limit} bytes uncompressed")
            h.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ValueError(f"{name}: corrupt or truncated gzip data: {e}") from e
    return h.hexdigest()


def uncompressed_sha256(path) -> str:
    """SHA-256 (hex) of a file's content, after gunzipping it if compressed."""
    path = Path(path)
    with _open_for_reading(path) as f:
        return _sha256_stream(f, str(path))


def verify_mnist(folder=None, split=None) -> dict:
    """Check the MNIST files in ``folder`` against :data:`MNIST_SHA256`.

    ``folder`` None means :func:`find_mnist`'s search; ``split`` None checks
    all four files.  Returns ``{name: path checked}``; raises
    ``FileNotFoundError`` if a file is missing and ``ValueError`` listing
    every file whose uncompressed content has the wrong SHA-256.
    """
    folder = find_mnist(folder, split=split)
    checked, bad = {}, []
    for name in _names_for(split):
        p = _locate(folder, name)
        try:
            digest = uncompressed_sha256(p)
        except ValueError as e:
            bad.append(str(e))
            continue
        if digest != MNIST_SHA256[name]:
            bad.append(f"{p}: SHA-256 of the uncompressed content is {digest}, "
                       f"expected {MNIST_SHA256[name]}")
        checked[name] = p
    if bad:
        raise ValueError("MNIST files failed verification:\n  " + "\n  ".join(bad))
    return checked


# ---- download ------------------------------------------------------------

def urlopen(url, timeout):
    """Open ``url`` for reading; module-level so tests can replace it."""
    req = urllib.request.Request(url, headers={"User-Agent": "lenet_native"})
    return urllib.request.urlopen(req, timeout=timeout)


def _verified(path, name: str) -> bool:
    if path is None:
        return False
    try:
        return uncompressed_sha256(path) == MNIST_SHA256[name]
    except (OSError, ValueError):
        return False


def _fetch(open_url, url: str, dest: Path, expected: str, timeout) -> None:
    """Download ``url`` to ``dest`` atomically if its checksum is ``expected``."""
    with _atomic_file(dest) as f:
        resp = open_url(url, timeout=timeout)
        try:
            total = 0
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > _MAX_DOWNLOAD_BYTES:
                    raise ValueError(f"more than {_MAX_DOWNLOAD_BYTES} bytes, not an MNIST file")
                f.write(chunk)
        finally:
            close = getattr(resp, "close", None)
            if close is not None:
                close()
        if total == 0:
            raise ValueError("empty response")
        f.flush()
        f.seek(0)
        digest = _sha256_stream(f, "download", limit=_MAX_UNCOMPRESSED_BYTES)
        if digest != expected:
            raise ValueError(
                f"checksum mismatch: SHA-256 of the uncompressed content is {digest}, "
                f"expected {expected}"
            )


def download_mnist(folder=None, mirrors=None, *, opener=None, timeout=60.0) -> Path:
    """Download the four MNIST files into ``folder`` and return it.

    ``folder`` defaults to :func:`cache_dir` (where :func:`find_mnist` looks)
    and is created if needed.  Files already there whose content verifies are
    skipped.  Each missing file is fetched from ``mirrors`` (default
    :data:`MNIST_MIRRORS`) in order, into a temporary file in ``folder``; it
    is renamed into place only if the SHA-256 of its uncompressed content
    matches :data:`MNIST_SHA256`, otherwise the next mirror is tried.  If a
    file cannot be obtained from any mirror, ``RuntimeError`` lists every
    attempt; no partial files are left behind.

    ``opener(url, timeout=...)`` returns a readable file-like object; it
    defaults to the module-level :func:`urlopen` (``urllib``).
    """
    folder = Path(folder).expanduser() if folder is not None else cache_dir()
    if mirrors is None:
        mirrors = MNIST_MIRRORS
    elif isinstance(mirrors, str):
        mirrors = [mirrors]
    mirrors = list(mirrors)
    if not mirrors:
        raise ValueError("no mirrors given")
    open_url = opener if opener is not None else urlopen
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for name in _all_names():
        if _verified(_locate(folder, name), name):
            continue
        attempts = []
        for mirror in mirrors:
            url = (mirror if mirror.endswith("/") else mirror + "/") + name
            try:
                _fetch(open_url, url, folder / name, MNIST_SHA256[name], timeout)
                break
            except (OSError, ValueError, EOFError, zlib.error,
                    http.client.HTTPException) as e:
                attempts.append(f"    {url}: {type(e).__name__}: {e}")
        else:
            failures.append(f"  {name}:\n" + "\n".join(attempts))
    if failures:
        raise RuntimeError(
            f"could not download MNIST into {folder}; tried:\n" + "\n".join(failures)
        )
    return folder
