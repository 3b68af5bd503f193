"""Random distortions (lenet_native.distort): identity, shifts, reproducibility, background."""
import pickle

import numpy as np
import pytest

from lenet_native.distort import (BACKGROUND, DEFAULTS, distort, elastic_field, make_distorter,
                                  random_affine, warp_affine)

NONE = dict(max_shift=0, max_scale=0, max_squeeze=0, max_shear=0, max_rotation=0)


def digits(n=6, seed=0):
    """Preprocessed-looking input: background -0.1 with random blobs of ink."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 32, 32), BACKGROUND, dtype=np.float32)
    x[:, 6:26, 8:24] = rng.uniform(-0.1, 1.175, (n, 20, 16)).astype(np.float32)
    return x


def eye(n):
    return np.tile(np.eye(2), (n, 1, 1)), np.zeros((n, 2))


def test_identity_parameters_give_the_input():
    x = digits()
    y = distort(x, np.random.default_rng(0), **NONE)
    assert y is not x
    np.testing.assert_array_equal(y, x)
    A, t = eye(len(x))
    np.testing.assert_array_equal(warp_affine(x, A, t), x)


def test_identity_with_probability_zero():
    x = digits()
    np.testing.assert_array_equal(distort(x, np.random.default_rng(3), probability=0.0), x)


@pytest.mark.parametrize("dx,dy", [(1, 0), (0, 1), (-1, 0), (0, -1), (2, -1)])
def test_integer_shift_moves_the_image(dx, dy):
    x = digits()
    A, t = eye(len(x))
    t[:] = (dx, dy)
    y = warp_affine(x, A, t)
    shifted = np.full_like(x, BACKGROUND)
    src = x[:, max(0, -dy):32 - max(0, dy), max(0, -dx):32 - max(0, dx)]
    shifted[:, max(0, dy):32 - max(0, -dy), max(0, dx):32 - max(0, -dx)] = src
    np.testing.assert_allclose(y, shifted, atol=1e-6)


def test_half_pixel_shift_interpolates_bilinearly():
    x = digits(2)
    A, t = eye(2)
    t[:] = (0.5, 0)
    y = warp_affine(x, A, t)
    expected = (x[:, :, 1:] + x[:, :, :-1]) / 2
    np.testing.assert_allclose(y[:, :, 1:], expected, atol=1e-6)
    np.testing.assert_allclose(y[:, :, 0], (x[:, :, 0] + BACKGROUND) / 2, atol=1e-6)


def test_shift_only_distortion_moves_by_at_most_max_shift():
    x = digits(50)
    y = distort(x, np.random.default_rng(1), **{**NONE, "max_shift": 1.0})
    assert not np.allclose(y, x)
    # total ink is preserved when nothing leaves the frame (ink is well inside)
    np.testing.assert_allclose((y - BACKGROUND).sum(axis=(1, 2)), (x - BACKGROUND).sum(axis=(1, 2)),
                               rtol=1e-4)


def test_seeded_reproducibility():
    x = digits(20)
    for elastic in (None, (16.0, 4.0)):
        a = distort(x, np.random.default_rng(42), elastic=elastic)
        b = distort(x, np.random.default_rng(42), elastic=elastic)
        c = distort(x, np.random.default_rng(43), elastic=elastic)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    d = make_distorter(max_shear=0.2)
    np.testing.assert_array_equal(d(x, np.random.default_rng(7)), d(x, np.random.default_rng(7)))
    # an integer seed is accepted too
    np.testing.assert_array_equal(distort(x, 5), distort(x, np.random.default_rng(5)))


def test_background_fills_what_comes_from_outside():
    x = np.full((3, 32, 32), 1.0, dtype=np.float32)  # all ink
    A, t = eye(3)
    t[0] = (40, 0)      # moved out of the frame entirely
    t[1] = (0, -5.5)    # the bottom rows come from below the input
    A[2] *= 0.5         # shrunk: the border comes from outside
    y = warp_affine(x, A, t)
    np.testing.assert_allclose(y[0], BACKGROUND)
    np.testing.assert_allclose(y[1, -5:], BACKGROUND, atol=1e-6)
    np.testing.assert_allclose(y[1, :26], 1.0, atol=1e-6)
    assert y[2, 0, 0] == pytest.approx(BACKGROUND) and y[2, 16, 16] == pytest.approx(1.0)
    z = warp_affine(x, A, t, background=-1.0)
    np.testing.assert_allclose(z[0], -1.0)


def test_dtype_and_shape_preserved():
    x = digits(5)
    for dtype in (np.float32, np.float64):
        y = distort(x.astype(dtype), np.random.default_rng(0), elastic=(8, 4))
        assert y.dtype == dtype and y.shape == x.shape
        assert np.isfinite(y).all()
    one = distort(x[0], np.random.default_rng(0))
    assert one.shape == (32, 32)
    assert distort(np.zeros((0, 32, 32), np.float32), np.random.default_rng(0)).shape == (0, 32, 32)
    other = distort(np.full((4, 20, 24), 0.5, np.float32), np.random.default_rng(0))
    assert other.shape == (4, 20, 24)


def test_values_stay_in_the_input_range():
    x = digits(30)
    y = distort(x, np.random.default_rng(0), max_rotation=10, elastic=(34, 4))
    assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5


def test_input_is_not_modified():
    x = digits(4)
    keep = x.copy()
    distort(x, np.random.default_rng(0), elastic=True)
    np.testing.assert_array_equal(x, keep)


def test_random_affine_ranges():
    A, t = random_affine(2000, np.random.default_rng(0), max_shift=2, max_scale=0.1,
                         max_squeeze=0, max_shear=0, max_rotation=0)
    assert np.abs(t).max() <= 2 and np.abs(t).max() > 1.9
    s = A[:, 0, 0]
    assert s.min() >= 0.9 - 1e-12 and s.max() <= 1.1 + 1e-12
    np.testing.assert_allclose(A[:, 0, 0], A[:, 1, 1])
    np.testing.assert_allclose(A[:, 0, 1], 0)
    A, _ = random_affine(500, np.random.default_rng(0), max_shift=0, max_scale=0, max_squeeze=0,
                         max_shear=0.3, max_rotation=0)
    assert np.abs(A[:, 0, 1]).max() <= 0.3 and np.abs(A[:, 0, 1]).max() > 0.25  # horizontal shear
    np.testing.assert_allclose(A[:, 1, 0], 0)


def test_elastic_field_is_smooth_and_scaled():
    dx, dy = elastic_field(200, (32, 32), np.random.default_rng(0), alpha=34, sigma=4)
    assert dx.shape == dy.shape == (200, 32, 32)
    assert 0.5 < dx[:, 8:24, 8:24].std() < 3
    # neighbouring displacements are strongly correlated (smooth field)
    c = np.corrcoef(dx[:, 16, 16], dx[:, 16, 17])[0, 1]
    assert c > 0.9


def test_bad_arguments():
    x = digits(2)
    with pytest.raises(ValueError, match="max_shift"):
        distort(x, np.random.default_rng(0), max_shift=-1)
    with pytest.raises(ValueError, match="max_scale"):
        distort(x, np.random.default_rng(0), max_scale=1.0)
    with pytest.raises(TypeError, match="float"):
        distort(x.astype(np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError, match="shape"):
        distort(np.zeros((2, 2, 32, 32), np.float32), np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        distort(x, "seed")
    with pytest.raises(TypeError, match="unknown parameter"):
        make_distorter(max_shfit=1)
    with pytest.raises(ValueError, match="probability"):
        make_distorter(probability=2)
    with pytest.raises(ValueError, match="sigma"):
        make_distorter(elastic=(1, 0))


def test_distorter_is_a_picklable_callable_with_its_parameters():
    d = make_distorter(max_shift=1.5, elastic=(10, 4))
    assert d.params["max_shift"] == 1.5
    assert d.params["elastic"] == {"alpha": 10.0, "sigma": 4.0}
    assert set(DEFAULTS) <= set(d.params)
    assert "max_shift=1.5" in d.__qualname__ and "max_shift=1.5" in repr(d)
    d2 = pickle.loads(pickle.dumps(d))
    x = digits(3)
    np.testing.assert_array_equal(d(x, np.random.default_rng(0)), d2(x, np.random.default_rng(0)))


def test_trainer_accepts_the_distorter():
    from lenet_native import LeNet5, train
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 64)
    model = LeNet5(seed=0, threads=1)
    hist = train(model, x, y, epochs=1, batch_size=32, progress=False, distort=make_distorter())
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"])


@pytest.mark.parametrize("shape", [(32, 32), (28, 20), (5, 7), (1, 1), (1, 9), (9, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_c_warp_gives_the_bits_of_the_numpy_form(shape, dtype):
    """csrc/warp.c does the NumPy form's float32 operations in the same order: identical
    results, for strong maps (shifts far outside the image included), any size, both input
    dtypes and any background."""
    from lenet_native import distort as D
    H, W = shape
    rng = np.random.default_rng(H * 100 + W)
    x = rng.uniform(-0.1, 1.175, (23, H, W)).astype(dtype)
    A, t = random_affine(23, rng, max_shift=6, max_scale=0.5, max_squeeze=0.5, max_shear=1.0)
    t[0] = [50.0, -50.0]          # everything from outside: pure background
    t[1] = [0.5, -0.25]
    for bg in (BACKGROUND, 0.0, 3.5):
        fast = warp_affine(x, A, t, background=bg)
        # the inverse map and offsets exactly as warp_affine computes them
        det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
        Ai = np.stack([np.stack([A[:, 1, 1] / det, -A[:, 0, 1] / det], 1),
                       np.stack([-A[:, 1, 0] / det, A[:, 0, 0] / det], 1)], 1)
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
        off = -(Ai @ (t + [cx, cy])[:, :, None])[:, :, 0] + [cx + 1.0, cy + 1.0]
        slow = D._warp_rows_then_columns_numpy(x, Ai, off, bg, fast.dtype, False)
        assert fast.dtype == dtype
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(fast[0], np.full((H, W), np.float32(bg), dtype))


def test_unaligned_images_warp_like_aligned_ones():
    """An unaligned float32 view (legal NumPy) is copied before C reads it as floats."""
    rng = np.random.default_rng(8)
    x = rng.uniform(-0.1, 1.175, (5, 32, 32)).astype(np.float32)
    buf = bytearray(x.nbytes + 1)
    u = np.frombuffer(buf, np.float32, count=x.size, offset=1).reshape(x.shape)
    u[...] = x
    assert not u.flags.aligned
    A, t = random_affine(5, rng)
    np.testing.assert_array_equal(warp_affine(u, A, t), warp_affine(x, A, t))


def test_c_warp_rejects_inconsistent_maps():
    from lenet_native import _core
    x = np.zeros((3, 8, 8), np.float32)
    one = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="one entry per image"):
        _core.warp_rows(x, one, one, one[:2], one, one, -0.1)
    with pytest.raises(ValueError, match="image size"):
        _core.warp_rows(np.zeros((3, 0, 8), np.float32), one, one, one, one, one, -0.1)
    nan = one.copy()
    nan[1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        _core.warp_rows(x, one, one, one, nan, one, -0.1)
    for k in range(5):   # whichever of the five maps holds it
        maps = [one] * 5
        maps[k] = nan
        with pytest.raises(ValueError, match="maps must be finite"):
            _core.warp_rows(x, *maps, -0.1)


def test_fast_separable_path_matches_the_general_one():
    """Maps without rotation or elastic field take the two-pass route: same result."""
    x = digits(40)
    A, t = random_affine(40, np.random.default_rng(5), max_shift=3, max_scale=0.2,
                         max_squeeze=0.2, max_shear=0.4)
    zero = np.zeros_like(x)
    fast = warp_affine(x, A, t)
    general = warp_affine(x, A, t, displacement=(zero, zero))
    np.testing.assert_allclose(fast, general, atol=1e-5)


def test_probability_distorts_only_a_fraction():
    x = digits(400)
    y = distort(x, np.random.default_rng(0), probability=0.25)
    same = np.all(y == x, axis=(1, 2))
    assert 0.65 < same.mean() < 0.85
