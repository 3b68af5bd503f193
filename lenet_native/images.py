"""Your own digit images: conversion to MNIST format, reading image files, classifying them.

    >>> from lenet_native.images import to_mnist, read_images
    >>> to_mnist(photo)                      # any (H, W) / (H, W, 3|4) image -> uint8 (28, 28)
    >>> read_images("digits.npy")            # [(name, 2-D image), ...]

    $ lenet-native predict seven.png digits.npy t10k-images-idx3-ubyte.gz

(the command is lenet_native.commands.predict; drawing digits in text, lenet_native.terminal).

An image is converted the way the MNIST digits were made (LeCun et al. 1998, section
III.A): grey levels, ink bright on a dark background (inverted when the background is
bright), the digit's bounding box fitted into 20x20 pixels preserving its aspect ratio
with anti-aliased resampling, then placed in a 28x28 field so that its centre of mass is
at the centre. An MNIST digit goes through unchanged (up to its centre of mass lying
exactly half-way between two pixels).

Readable files: PNG, JPEG, BMP, GIF, TIFF, WebP, PNM through Pillow (the optional extra
``pip install 'lenet_native[images]'``); NumPy ``.npy`` arrays (2-D: one image, 3-D: a
stack; uint8 0..255, bool, or float 0..1); IDX files (``.gz`` or not, as MNIST ships
them). Only ``.npy`` and IDX work without Pillow. A file that cannot be read raises
ValueError naming it (ImportError, with the pip command, if Pillow is needed and missing).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .idx import DTYPE_CODES, GZIP_MAGIC, read_idx

__all__ = ["to_mnist", "resample", "read_images", "read_image_file", "classify",
           "PILLOW_EXTENSIONS", "MissingPillowError"]

BOX = 20          # the digit's bounding box is fitted into BOX x BOX
SIZE = 28         # in a SIZE x SIZE field
CENTRE = 14.0     # where its centre of mass goes (MNIST: 14 +- 0.5 in both axes)

PILLOW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                     ".pgm", ".ppm", ".pbm", ".pnm")
IDX_HINTS = ("-ubyte", ".idx", "idx1", "idx2", "idx3", "idx4")
_PNG_MAGIC = b"\x89PNG"
_JPEG_MAGIC = b"\xff\xd8\xff"
_NPY_MAGIC = b"\x93NUMPY"
INSTALL_HINT = "pip install 'lenet_native[images]' (or: pip install Pillow)"


class MissingPillowError(ImportError):
    """Reading this image format needs Pillow, which is not installed."""


# ----------------------------------------------------------------------------- resampling


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix along one axis: area averaging when shrinking
    (each output pixel the mean of the input it covers, fractions at the edges),
    bilinear interpolation (pixel centres aligned) when enlarging, identity when equal."""
    if n_out == n_in:
        return np.eye(n_in)
    w = np.zeros((n_out, n_in))
    if n_out < n_in:
        scale = n_in / n_out
        edges = np.arange(n_out + 1) * scale  # output pixel i covers [edges[i], edges[i+1])
        lo, hi = edges[:-1, None], edges[1:, None]
        j = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0.0, None)
        w = overlap / scale
    else:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        j0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        j1 = np.minimum(j0 + 1, n_in - 1)
        f = src - j0
        rows = np.arange(n_out)
        np.add.at(w, (rows, j0), 1.0 - f)
        np.add.at(w, (rows, j1), f)
    return w


def resample(image, shape) -> np.ndarray:
    """Resize a 2-D float image to ``shape`` (rows, cols) with anti-aliasing: separable
    area averaging for shrinking, bilinear for enlarging (pure NumPy, no Pillow)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"resample expects a 2-D image; got shape {a.shape}")
    h, w = shape
    if h < 1 or w < 1:
        raise ValueError(f"resample: target shape must be positive; got {shape}")
    return _weights(a.shape[0], h) @ a @ _weights(a.shape[1], w).T


# ----------------------------------------------------------------------------- to_mnist


def _to_unit_float(a, where) -> np.ndarray:
    """Pixels to float64 in [0, 1] by dtype: uint8 /255, uint16 /65535, bool, float 0..1."""
    if a.dtype == bool:
        return a.astype(np.float64)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 65535.0
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < 0 or a.max() > 255):
            raise ValueError(f"{where}: integer pixels must be in 0..255 (or use uint16); got "
                             f"values in {a.min()}..{a.max()}")
        return a.astype(np.float64) / 255.0
    if np.issubdtype(a.dtype, np.floating):
        f = a.astype(np.float64)
        if not np.isfinite(f).all():
            raise ValueError(f"{where}: the image contains NaN or infinity")
        if f.size and (f.min() < -1e-6 or f.max() > 1.0 + 1e-6):
            raise ValueError(f"{where}: float pixels must be in 0..1; got values in "
                             f"{f.min():g}..{f.max():g} (scale them, or save them as uint8 0..255)")
        return np.clip(f, 0.0, 1.0)
    raise ValueError(f"{where}: unsupported pixel type {a.dtype} (use uint8 0..255 or float 0..1)")


def _grey(a, where) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) -> grey float (H, W) in [0, 1]. Transparent pixels are
    composited over the shade opposite to the ink's, so a digit drawn on a transparent
    canvas keeps its contrast."""
    if a.ndim == 2:
        return _to_unit_float(a, where)
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{where}: an image must have shape (H, W), (H, W, 3) (RGB) or "
                         f"(H, W, 4) (RGBA); got {a.shape}")
    f = _to_unit_float(a, where)
    c = f.shape[2]
    if c == 1:
        return f[:, :, 0]
    if c in (3, 4):
        lum = f[:, :, 0] * 0.299 + f[:, :, 1] * 0.587 + f[:, :, 2] * 0.114  # ITU-R 601
    else:
        lum = f[:, :, 0]
    if c in (2, 4):
        alpha = f[:, :, -1]
        if np.all(alpha >= 1.0):
            return lum
        opaque = alpha > 0.5
        ink_lum = float(np.average(lum[opaque])) if opaque.any() else 0.0
        under = 1.0 if ink_lum < 0.5 else 0.0  # dark ink over white, bright ink over black
        return alpha * lum + (1.0 - alpha) * under
    return lum


def to_mnist(image, *, where="image") -> np.ndarray:
    """Convert any digit image to an MNIST-style uint8 (28, 28) digit (ink 255 on 0).

    ``image``: 2-D grey (H, W) or colour (H, W, 3) RGB / (H, W, 4) RGBA (also (H, W, 1) and
    (H, W, 2) grey + alpha); uint8 0..255, uint16, bool or float 0..1.

    Steps (as MNIST was made): grey levels; the background level is the median of the
    image's border and the ink is what differs from it: if the background is brighter
    than the image on average (dark ink on light paper) the image is inverted. The
    background is subtracted, taking as noise what lies within 4 robust standard
    deviations (median absolute deviation) of the border's level and isolated specks
    above it, and a weak contrast is stretched to 0..1. The bounding box of what remains
    is resampled (area averaging / bilinear) so that its longer side is 20 pixels, preserving the
    aspect ratio, and placed in a 28x28 field with its centre of mass (rounded to whole
    pixels) at (14, 14), kept inside the field. A blank image gives all zeros.
    """
    a = np.asarray(image)
    if a.size == 0 or a.ndim < 2:
        raise ValueError(f"{where}: not an image (shape {a.shape})")
    g = _grey(a, where)
    h, w = g.shape
    b = max(1, min(h, w) // 20)  # border width: ~5% of the smaller side
    border = np.concatenate([g[:b].ravel(), g[-b:].ravel(), g[:, :b].ravel(), g[:, -b:].ravel()])
    bg = float(np.median(border))
    if bg > float(g.mean()) or (bg == float(g.mean()) and bg > 0.5):
        g = 1.0 - g
        border = 1.0 - border
        bg = 1.0 - bg
    # noise: what stays within 4 robust standard deviations of the border's level
    # (the median absolute deviation ignores ink touching the border, if it is not most of it)
    sigma = 1.4826 * float(np.median(np.abs(border - bg)))
    floor = bg + 4.0 * sigma
    if sigma > 0:
        # a noisy background: also drop specks, pixels above the floor with no neighbour
        # above it (they would stretch the bounding box)
        above = g > floor
        p = np.pad(above, 1)
        neighbours = sum(p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                         for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
        g = np.where(above & (neighbours == 0), bg, g)
    top = float(g.max())
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    if top - floor < 0.05:
        return out  # blank: no ink stands out from the background
    # stretch weak contrast to 0..1 (a digit whose ink already reaches ~255 is left as is)
    g = np.clip((g - floor) / (top - floor if top - floor < 0.95 else 1.0), 0.0, 1.0)
    rows = np.flatnonzero(g.max(axis=1) > 0)
    cols = np.flatnonzero(g.max(axis=0) > 0)
    g = g[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    bh, bw = g.shape
    scale = BOX / max(bh, bw)
    nh = min(BOX, max(1, int(round(bh * scale))))
    nw = min(BOX, max(1, int(round(bw * scale))))
    if (nh, nw) != (bh, bw):
        g = np.clip(resample(g, (nh, nw)), 0.0, 1.0)
    mass = g.sum()
    cy = float((g.sum(axis=1) * np.arange(nh)).sum() / mass)
    cx = float((g.sum(axis=0) * np.arange(nw)).sum() / mass)
    top_row = int(np.clip(np.floor(CENTRE - cy + 0.5), 0, SIZE - nh))
    left = int(np.clip(np.floor(CENTRE - cx + 0.5), 0, SIZE - nw))
    out[top_row:top_row + nh, left:left + nw] = np.round(g * 255.0).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------- files


def _require_pillow(path):
    try:
        from PIL import Image  # noqa: F401
    except ImportError:
        raise MissingPillowError(f"{path}: reading {Path(path).suffix or 'this'} images needs "
                                 f"Pillow, which is not installed: {INSTALL_HINT}") from None
    return Image


def _read_pillow(path) -> np.ndarray:
    Image = _require_pillow(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("RGBA", "LA", "PA", "La") or (mode == "P" and "transparency" in img.info):
                arr = np.asarray(img.convert("RGBA"))
            elif mode.startswith("I;16"):
                arr = np.asarray(img).astype(np.uint16)
            elif mode in ("I", "F"):
                f = np.asarray(img).astype(np.float64)
                lo, hi = float(f.min()), float(f.max())
                arr = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
            elif mode in ("1", "L"):
                arr = np.asarray(img.convert("L"))
            else:
                arr = np.asarray(img.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # UnidentifiedImageError is an OSError
        raise ValueError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None
    return arr


def _read_npy(path) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from None
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{path}: expected a .npy array, got an archive of arrays (.npz)")
    return a


def _read_idx(path) -> np.ndarray:
    try:
        return read_idx(path)
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if str(path) in msg else f"{path}: {msg}") from None
    except (EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable IDX file ({exc})") from None


def _sniff(path) -> str:
    """The kind of file: 'pillow', 'npy', 'idx', by extension, else by content."""
    p = Path(path)
    name = p.name.lower()
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix in PILLOW_EXTENSIONS:
        return "pillow"
    stem = name[:-3] if name.endswith(".gz") else name
    if any(h in stem for h in IDX_HINTS):
        return "idx"
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
        return "pillow"
    if head.startswith(GZIP_MAGIC) or (len(head) >= 4 and head[:2] == b"\0\0"
                                       and head[2] in DTYPE_CODES and 1 <= head[3] <= 4):
        return "idx"
    kinds = ", ".join(PILLOW_EXTENSIONS)
    raise ValueError(f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
                     f"expected an image ({kinds}), a .npy array or an IDX file")


def read_image_file(path) -> list:
    """Read one file -> list of (name, 2-D or colour image array). A 2-D array or a picture
    gives one image named ``path``; a stack (N, H, W) gives ``path[0]`` .. ``path[N-1]``.
    ValueError naming the file if it cannot be read or holds no image."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not an image file")
    kind = _sniff(path)
    if kind == "pillow":
        return [(str(path), _read_pillow(path))]
    a = _read_npy(path) if kind == "npy" else _read_idx(path)
    what = ".npy array" if kind == "npy" else "IDX file"
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool) \
            or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{path}: the {what} holds {a.dtype} values, not pixels")
    if a.ndim == 2:
        if min(a.shape) < 1:
            raise ValueError(f"{path}: the {what} is an empty image {a.shape}")
        return [(str(path), a)]
    if a.ndim == 3:
        if min(a.shape[1:]) < 1:
            raise ValueError(f"{path}: the {what} holds empty images {a.shape}")
        return [(f"{path}[{i}]", a[i]) for i in range(a.shape[0])]
    hint = " (an IDX labels file?)" if a.ndim == 1 and kind == "idx" else ""
    raise ValueError(f"{path}: the {what} has shape {a.shape}; expected 2-D (one image) or "
                     f"3-D (a stack of images){hint}")


def read_images(paths) -> list:
    """read_image_file for each path, concatenated: [(name, image), ...]."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        out.extend(read_image_file(p))
    return out


def classify(model, images, *, normalize=True, names=None):
    """uint8 MNIST digits for ``images`` (any size/colour, via to_mnist unless normalize is
    False, which needs 28x28) -> (digits (N, 28, 28) uint8, predictions (N,), probability
    of each prediction (N,))."""
    names = names or [f"image[{i}]" for i in range(len(images))]
    digits = np.zeros((len(images), SIZE, SIZE), dtype=np.uint8)
    for i, (name, img) in enumerate(zip(names, images)):
        if normalize:
            digits[i] = to_mnist(img, where=name)
        else:
            a = np.asarray(img)
            if a.shape != (SIZE, SIZE):
                raise ValueError(f"{name}: without normalisation an image must be 28x28; "
                                 f"got {a.shape}")
            digits[i] = np.round(_to_unit_float(a, name) * 255.0).astype(np.uint8)
    if len(digits) == 0:
        return digits, np.zeros(0, np.int64), np.zeros(0, np.float32)
    proba = model.predict_proba(digits)
    pred = proba.argmax(axis=1)
    return digits, pred.astype(np.int64), proba[np.arange(len(pred)), pred]
