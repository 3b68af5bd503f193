"""Random distortions of training digits, as in LeCun et al. (1998), section III.C.

The paper trained on the 60,000 MNIST digits plus randomly distorted copies made by
"planar affine transformations": horizontal and vertical translation, scaling, squeezing
(simultaneous horizontal compression and vertical elongation, or the reverse) and
horizontal shearing. This module draws one such map per image and applies it on the fly,
the whole batch at once with bilinear sampling written as NumPy index arithmetic (no loop
over images or pixels). Elastic distortions (Simard, Steinkraus and Platt, 2003) can be
added: a random displacement field smoothed by a Gaussian.

    >>> from lenet_native.distort import distort, make_distorter
    >>> rng = np.random.default_rng(0)
    >>> y = distort(preprocess(digits), rng)            # (B, 32, 32) float32
    >>> train(..., distort=make_distorter(max_shift=2))  # one fresh map per image per batch

Every map keeps the centre of the 32x32 field (pixel coordinate 15.5) where it is, then
translates; pixels that come from outside the input take the background value (-0.1, the
network's input for a blank MNIST pixel).

The paper's maps (no rotation, no elastic field) take a two-pass route: the two source rows
blended vertically, then two reads per pixel horizontally, in C (csrc/warp.c; the same
float operations as the NumPy form kept beside it, so the same bits). Maps with rotation
or an elastic field use the general NumPy path (four reads per pixel).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["distort", "warp_affine", "random_affine", "elastic_field", "make_distorter",
           "Distorter", "DEFAULTS", "BACKGROUND"]

BACKGROUND = -0.1
_CHUNK = 16  # images per step of warp_affine (small: the work stays in the CPU cache)
# Defaults: strong enough to matter, weak enough that every digit stays readable.
# shift in pixels; scale, squeeze and shear as fractions; rotation in degrees.
DEFAULTS = {"max_shift": 2.0, "max_scale": 0.15, "max_squeeze": 0.15, "max_shear": 0.3,
            "max_rotation": 0.0, "elastic": None, "probability": 1.0}


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy.random.Generator, a seed or None; "
                    f"got {type(rng).__name__}")


def _as_batch(images, where):
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None]
        single = True
    else:
        single = False
    if a.ndim != 3:
        raise ValueError(f"{where}: images must have shape (B, H, W) or (H, W); "
                         f"got {np.shape(images)}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{where}: images must be float (preprocessed network input, background "
                        f"-0.1); got dtype {a.dtype}")
    return a, single


def _check_nonneg(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def _parse_elastic(elastic):
    """None / False -> None; (alpha, sigma) or {"alpha":, "sigma":} -> (alpha, sigma)."""
    if elastic is None or elastic is False:
        return None
    if elastic is True:
        return (8.0, 4.0)
    if isinstance(elastic, dict):
        unknown = set(elastic) - {"alpha", "sigma"}
        if unknown:
            raise ValueError(f"elastic: unknown key(s) {sorted(unknown)}; expected alpha and sigma")
        alpha, sigma = elastic.get("alpha", 8.0), elastic.get("sigma", 4.0)
    else:
        try:
            alpha, sigma = elastic
        except (TypeError, ValueError):
            raise TypeError(f"elastic must be None, True, (alpha, sigma) or a dict; "
                            f"got {elastic!r}") from None
    alpha = _check_nonneg("elastic alpha", alpha)
    sigma = _check_nonneg("elastic sigma", sigma)
    if sigma == 0:
        raise ValueError("elastic sigma must be > 0")
    return alpha, sigma


def random_affine(n, rng, *, max_shift=DEFAULTS["max_shift"], max_scale=DEFAULTS["max_scale"],
                  max_squeeze=DEFAULTS["max_squeeze"], max_shear=DEFAULTS["max_shear"],
                  max_rotation=DEFAULTS["max_rotation"]):
    """Draw n random maps: -> (A (n, 2, 2), t (n, 2)) float64, in (x, y) = (column, row) order.

    Forward map (where a pixel of the input lands): p' = A (p - c) + c + t, c the centre.
    A = R(rotation) @ [[s (1 + q), s k], [0, s / (1 + q)]] with, each uniform and independent,
    s = 1 + U(-max_scale, max_scale), q = U(-max_squeeze, max_squeeze) (squeezing: x grows
    while y shrinks, or the reverse), k = U(-max_shear, max_shear) (horizontal shear: x moves
    in proportion to y), t = U(-max_shift, max_shift) per axis.
    """
    rng = _as_rng(rng)
    n = int(n)
    max_shift = _check_nonneg("max_shift", max_shift)
    max_scale = _check_nonneg("max_scale", max_scale)
    max_squeeze = _check_nonneg("max_squeeze", max_squeeze)
    max_shear = _check_nonneg("max_shear", max_shear)
    max_rotation = _check_nonneg("max_rotation", max_rotation)
    if max_scale >= 1:
        raise ValueError(f"max_scale must be < 1 (a scale factor 1 - max_scale must stay > 0); "
                         f"got {max_scale}")
    if max_squeeze >= 1:
        raise ValueError(f"max_squeeze must be < 1; got {max_squeeze}")
    u = rng.uniform(-1.0, 1.0, size=(n, 6))
    s = 1.0 + max_scale * u[:, 0]
    q = 1.0 + max_squeeze * u[:, 1]
    k = max_shear * u[:, 2]
    theta = np.deg2rad(max_rotation) * u[:, 3]
    t = max_shift * u[:, 4:6]
    cos, sin = np.cos(theta), np.sin(theta)
    a, b, d = s * q, s * k, s / q
    A = np.empty((n, 2, 2))
    # R @ [[a, b], [0, d]]
    A[:, 0, 0] = cos * a
    A[:, 0, 1] = cos * b - sin * d
    A[:, 1, 0] = sin * a
    A[:, 1, 1] = sin * b + cos * d
    return A, t


_GAUSS_CACHE = {}


def _gauss_matrix(size, sigma):
    """(size, size) matrix G with G @ f the 1-D Gaussian smoothing (zero outside) of f."""
    key = (size, float(sigma))
    g = _GAUSS_CACHE.get(key)
    if g is None:
        i = np.arange(size, dtype=np.float64)
        g = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
        g /= sigma * math.sqrt(2 * math.pi)  # the continuous kernel's weights (sum ~ 1 inside)
        g = g.astype(np.float32)
        g.setflags(write=False)
        if len(_GAUSS_CACHE) > 16:
            _GAUSS_CACHE.clear()
        _GAUSS_CACHE[key] = g
    return g


def elastic_field(n, shape, rng, alpha=8.0, sigma=4.0):
    """Random displacement fields (dx, dy), each (n, H, W) float32 (Simard et al. 2003):
    uniform noise in [-1, 1] per pixel, smoothed by a Gaussian of std sigma, times alpha."""
    rng = _as_rng(rng)
    h, w = shape
    gh, gw = _gauss_matrix(h, sigma), _gauss_matrix(w, sigma)
    noise = rng.random((2 * n * h, w), dtype=np.float32)
    noise *= 2.0
    noise -= 1.0
    # separable smoothing as two big matrix products: along rows, then along columns
    f = (noise @ gw.T).reshape(2 * n, h, w).transpose(0, 2, 1).reshape(2 * n * w, h)
    f = (f @ gh.T).reshape(2, n, w, h).transpose(0, 1, 3, 2)
    f = f * np.float32(alpha)
    return f[0], f[1]


def warp_affine(images, A, t, *, background=BACKGROUND, displacement=None, out=None):
    """Apply per-image affine maps with bilinear sampling; the whole batch at once.

    images (B, H, W) float; A (B, 2, 2) and t (B, 2) the forward maps of random_affine in
    (x, y) order; displacement: optional (dx, dy), each (B, H, W), added to the source
    coordinates (elastic distortion). Pixels sampled from outside the input take
    ``background``. Returns a new (B, H, W) array of the input's float dtype.
    """
    x, single = _as_batch(images, "warp_affine")
    B, H, W = x.shape
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    A = np.asarray(A, np.float64).reshape(B, 2, 2)
    t = np.asarray(t, np.float64).reshape(B, 2)
    if B == 0:
        return np.empty((0, H, W), dtype)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    if not np.all(np.isfinite(det)) or np.any(np.abs(det) < 1e-12) or not np.all(np.isfinite(t)):
        raise ValueError("warp_affine: every map must be finite and invertible")
    # inverse map: source = Ai (p - c - t) + c
    Ai = np.empty_like(A)
    Ai[:, 0, 0] = A[:, 1, 1] / det
    Ai[:, 0, 1] = -A[:, 0, 1] / det
    Ai[:, 1, 0] = -A[:, 1, 0] / det
    Ai[:, 1, 1] = A[:, 0, 0] / det
    cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    # source (x, y) = Ai @ (X - cx - tx, Y - cy - ty) + (cx, cy), +1 for the padding below
    off = -(Ai @ (t + [cx, cy])[:, :, None])[:, :, 0] + [cx + 1.0, cy + 1.0]
    f32 = np.float32
    if displacement is None and not np.any(Ai[:, 1, 0]):
        # the source row depends on the output row only (no rotation, no elastic field):
        # bilinear sampling separates exactly into a vertical then a horizontal pass
        return _warp_rows_then_columns(x, Ai, off, background, dtype, single)
    Ai32 = Ai.astype(f32)[:, :, :, None, None]  # (B, 2, 2, 1, 1)
    off32 = off.astype(f32)[:, :, None, None]
    gx = np.arange(W, dtype=f32)[None, None, :]
    gy = np.arange(H, dtype=f32)[None, :, None]
    if displacement is not None:
        dx, dy = (np.asarray(d, f32).reshape(B, H, W) for d in displacement)
    res = np.empty((B, H, W), dtype)
    # padded input: background one pixel above/left and two below/right. Source coordinates
    # (shifted by +1 above) are clipped to [0, W + 1] x [0, H + 1]: whatever lies outside the
    # input then interpolates between padding pixels only, i.e. reads pure background.
    Hp, Wp = H + 3, W + 3
    # chunks small enough to stay in cache (and for indices exact in float32)
    chunk = max(1, min(_CHUNK, (1 << 23) // (Hp * Wp)))
    for lo in range(0, B, chunk):
        hi = min(B, lo + chunk)
        n = hi - lo
        A_, o_ = Ai32[lo:hi], off32[lo:hi]
        sx = A_[:, 0, 0] * gx + (A_[:, 0, 1] * gy + o_[:, 0])  # (n, H, W)
        sy = A_[:, 1, 0] * gx + (A_[:, 1, 1] * gy + o_[:, 1])
        if displacement is not None:
            sx += dx[lo:hi]
            sy += dy[lo:hi]
        pad = np.full((n, Hp, Wp), background, dtype=f32)
        pad[:, 1:H + 1, 1:W + 1] = x[lo:hi]
        np.clip(sx, 0.0, W + 1.0, out=sx)
        np.clip(sy, 0.0, H + 1.0, out=sy)
        x0 = np.floor(sx)
        y0 = np.floor(sy)
        sx -= x0  # the fractions, in [0, 1]
        sy -= y0
        y0 *= Wp
        y0 += x0
        y0 += (np.arange(n, dtype=f32) * (Hp * Wp))[:, None, None]  # exact: < 2**23
        idx = y0.astype(np.intp)
        flat = pad.reshape(-1)
        # the four neighbours: the same indices into the flat buffer shifted by 0, 1, Wp, Wp+1
        top = _take_lerp(flat, idx, 0, sx)
        bot = _take_lerp(flat, idx, Wp, sx)
        bot -= top
        bot *= sy
        bot += top
        res[lo:hi] = bot
    if out is not None:
        out[...] = res
        res = out
    return res[0] if single else res


def _take_lerp(flat, idx, shift, frac):
    """a + (b - a) frac with a = flat[idx + shift], b = flat[idx + shift + 1] (float32,
    operation by operation: what csrc/warp.c reproduces)."""
    a = flat[shift:].take(idx)
    b = flat[shift + 1:].take(idx)
    b -= a
    b *= frac
    b += a
    return b


def _warp_rows_then_columns(x, Ai, off, background, dtype, single):
    """warp_affine for maps whose source row y = Ai11 Y + off_y depends on the output row
    Y only (translation, scaling, squeezing, horizontal shear): the C kernel
    (csrc/warp.c), which does the float32 operations of _warp_rows_then_columns_numpy
    below, in the same order, so it gives the same bits."""
    from . import _core
    f32 = np.float32
    res = _core.warp_rows(np.require(x, f32, ["C", "A"]),   # aligned: C reads whole floats
                          np.ascontiguousarray(Ai[:, 0, 0], dtype=f32),
                          np.ascontiguousarray(Ai[:, 0, 1], dtype=f32),
                          np.ascontiguousarray(Ai[:, 1, 1], dtype=f32),
                          np.ascontiguousarray(off[:, 0], dtype=f32),
                          np.ascontiguousarray(off[:, 1], dtype=f32), f32(background))
    if res.dtype != dtype:
        res = res.astype(dtype)
    return res[0] if single else res


def _warp_rows_then_columns_numpy(x, Ai, off, background, dtype, single):
    """The NumPy form of _warp_rows_then_columns (the reference for its C kernel). Exact
    bilinear sampling in two passes: rows blended vertically (whole rows gathered at once),
    then each output row sampled horizontally at x = Ai00 X + Ai01 Y + off_x: two gathers
    per pixel, not four."""
    f32 = np.float32
    B, H, W = x.shape
    Hp, Wp = H + 3, W + 3  # background: one row/column before, two after (see warp_affine)
    gx = np.arange(W, dtype=f32)
    gy = np.arange(H, dtype=f32)
    ax = Ai[:, 0, 0].astype(f32)
    # per image and output row: the source row (vertical pass) and the row's x offset
    sy = Ai[:, 1, 1].astype(f32)[:, None] * gy + off[:, 1].astype(f32)[:, None]  # (B, H)
    np.clip(sy, 0.0, H + 1.0, out=sy)
    y0 = np.floor(sy)
    fy = (sy - y0)[:, :, None]
    row0 = y0.astype(np.intp) + (np.arange(B, dtype=np.intp) * Hp)[:, None]
    xoff = Ai[:, 0, 1].astype(f32)[:, None] * gy + off[:, 0].astype(f32)[:, None]  # (B, H)
    res = np.empty((B, H, W), dtype)
    chunk = max(1, min(_CHUNK, (1 << 23) // (H * Wp)))
    pad = np.full((min(B, chunk), Hp, Wp), background, dtype=f32)
    rowbase = (np.arange(min(B, chunk) * H, dtype=f32) * Wp).reshape(-1, H, 1)
    for lo in range(0, B, chunk):
        hi = min(B, lo + chunk)
        n = hi - lo
        pad[:n, 1:H + 1, 1:W + 1] = x[lo:hi]
        rows = pad.reshape(-1, Wp)
        r = row0[lo:hi] - lo * Hp
        t = rows[r]                       # (n, H, Wp): upper source rows
        t1 = rows[r + 1]
        t1 -= t
        t1 *= fy[lo:hi]
        t += t1                           # vertically blended rows
        sx = ax[lo:hi, None, None] * gx + xoff[lo:hi, :, None]  # (n, H, W)
        np.clip(sx, 0.0, W + 1.0, out=sx)
        x0 = np.floor(sx)
        sx -= x0
        x0 += rowbase[:n]                 # exact in float32: < 2**23
        idx = x0.astype(np.intp)
        res[lo:hi] = _take_lerp(t.reshape(-1), idx, 0, sx)
    return res[0] if single else res


def distort(images, rng, *, max_shift=DEFAULTS["max_shift"], max_scale=DEFAULTS["max_scale"],
            max_squeeze=DEFAULTS["max_squeeze"], max_shear=DEFAULTS["max_shear"],
            max_rotation=DEFAULTS["max_rotation"], elastic=DEFAULTS["elastic"],
            probability=DEFAULTS["probability"], background=BACKGROUND):
    """Randomly distorted copies of preprocessed digits: (B, 32, 32) float -> new array.

    Each image gets its own random affine map (see random_affine: translation up to
    max_shift pixels, scaling by up to +-max_scale, squeezing by up to +-max_squeeze,
    horizontal shear up to +-max_shear, rotation up to +-max_rotation degrees) and, if
    ``elastic`` is (alpha, sigma) or a dict of them, an elastic displacement field.
    ``probability`` is the fraction of images distorted (the others are copied unchanged;
    the paper's 60,000 originals + 540,000 distorted copies is probability 0.9).
    With every maximum 0 and no elastic field the result equals the input.
    ``rng`` is a numpy Generator (or a seed); the same state gives the same result.
    """
    rng = _as_rng(rng)
    x, single = _as_batch(images, "distort")
    el = _parse_elastic(elastic)
    p = _check_nonneg("probability", probability)
    if p > 1:
        raise ValueError(f"probability must be in [0, 1]; got {probability}")
    B, H, W = x.shape
    A, t = random_affine(B, rng, max_shift=max_shift, max_scale=max_scale,
                         max_squeeze=max_squeeze, max_shear=max_shear, max_rotation=max_rotation)
    disp = elastic_field(B, (H, W), rng, *el) if el is not None and el[0] > 0 else None
    if p < 1:
        keep = rng.random(B) >= p
        if keep.any():  # warp only the images to distort; copy the others
            sel = np.flatnonzero(~keep)
            res = np.array(x, dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float32)
            if sel.size:
                res[sel] = warp_affine(x[sel], A[sel], t[sel], background=background,
                                       displacement=None if disp is None else
                                       (disp[0][sel], disp[1][sel]))
            return res[0] if single else res
    res = warp_affine(x, A, t, background=background, displacement=disp)
    return res[0] if single else res


class Distorter:
    """A picklable callable ``(images, rng) -> distorted images`` with fixed parameters,
    what the trainer accepts as ``distort=``. ``params`` holds the settings (for the
    weight file's meta)."""

    def __init__(self, **params):
        unknown = set(params) - set(DEFAULTS) - {"background"}
        if unknown:
            raise TypeError(f"make_distorter: unknown parameter(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(DEFAULTS))}")
        p = dict(DEFAULTS)
        p.update(params)
        # validate now, not in the middle of training
        random_affine(1, np.random.default_rng(0), **{k: p[k] for k in (
            "max_shift", "max_scale", "max_squeeze", "max_shear", "max_rotation")})
        el = _parse_elastic(p["elastic"])
        p["elastic"] = None if el is None else {"alpha": el[0], "sigma": el[1]}
        pr = _check_nonneg("probability", p["probability"])
        if pr > 1:
            raise ValueError(f"probability must be in [0, 1]; got {p['probability']}")
        self.params = p
        # what the trainer records in its config (and compares on resume)
        self.__qualname__ = "make_distorter(" + ", ".join(
            f"{k}={v!r}" for k, v in sorted(p.items())) + ")"

    def __call__(self, images, rng):
        return distort(images, rng, **self.params)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Distorter({args})"


def make_distorter(**params) -> Distorter:
    """A callable ``(images, rng) -> images`` applying distort() with these parameters
    (defaults: DEFAULTS); pass it to the trainer as ``distort=``."""
    return Distorter(**params)
