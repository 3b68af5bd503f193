"""Finding, loading, checking and downloading MNIST.

The files are IDX files (read by lenet_native.idx). This module and the two it imports
(idx, fileio) use only the standard library and numpy, not the compiled extension.

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

import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from . import fileio
from .idx import CHUNK, GZIP_MAGIC, open_for_reading, read_idx
from .idx import open_idx  # noqa: F401  (also lenet_native.datasets.open_idx, as issue 17 names it)

__all__ = [
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
            chunk = src.read(CHUNK)
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
    with open_for_reading(path) as f:
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
    fileio.atomic_write(dest, lambda f: _download(open_url, url, f, expected, timeout))


def _download(open_url, url: str, f, expected: str, timeout) -> None:
    """Write what ``url`` holds to the file ``f``; ValueError unless the SHA-256 of its
    uncompressed content is ``expected``."""
    resp = open_url(url, timeout=timeout)
    try:
        total = 0
        while True:
            chunk = resp.read(CHUNK)
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
