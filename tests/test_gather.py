"""The C gather of a batch from the uint8 digits (csrc/digits.c) against preprocess: the
same bits for every pixel value, any index order and repetition, odd batch sizes and size 1;
the shifted placement against a NumPy statement of it; every output element written (out
pre-filled with NaN); bad indices and shifts refused before anything is written."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from lenet_native import _core, preprocess

SETTINGS = settings(max_examples=30, deadline=None)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def nan_out(B):
    return np.full((B, 32, 32), np.nan, np.float32)


def test_every_pixel_value_has_preprocess_bits():
    digits = np.arange(256, dtype=np.uint8).repeat(4)[:784].reshape(1, 28, 28)
    digits = np.concatenate([digits, 255 - digits])      # every value in both halves
    out = _core.gather_digits(digits, out=nan_out(2))
    assert np.array_equal(bits(out), bits(preprocess(digits)))


@SETTINGS
@given(N=st.integers(1, 9), B=st.integers(0, 13), seed=st.integers(0, 2**31 - 1))
def test_gather_is_preprocess_of_the_rows(N, B, seed):
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 256, (N, 28, 28), dtype=np.uint8)
    index = rng.integers(0, N, B).astype(np.int64)       # any order, repeats allowed
    out = _core.gather_digits(digits, index, out=nan_out(B))
    assert np.array_equal(bits(out), bits(preprocess(digits)[index]))


@pytest.mark.parametrize("N", [1, 3, 64, 65])
def test_all_rows_without_index(N):
    digits = np.random.default_rng(N).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    assert np.array_equal(bits(_core.gather_digits(digits, out=nan_out(N))), bits(preprocess(digits)))


def test_size_one_and_a_view_of_a_larger_buffer():
    digits = np.random.default_rng(3).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    buf = nan_out(8)
    got = _core.gather_digits(digits, np.array([4], np.int64), out=buf[:1])
    assert got.base is buf or got is buf[:1] or np.shares_memory(got, buf)
    assert np.array_equal(bits(buf[0]), bits(preprocess(digits[4])[0]))
    assert np.isnan(buf[1:]).all()                      # nothing written past the batch


@SETTINGS
@given(B=st.integers(1, 7), seed=st.integers(0, 2**31 - 1))
def test_shift_places_the_digit_off_centre(B, seed):
    rng = np.random.default_rng(seed)
    digits = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    index = rng.integers(0, 4, B).astype(np.int64)
    shift = rng.integers(-2, 3, (B, 2)).astype(np.int8)
    out = _core.gather_digits(digits, index, shift, out=nan_out(B))
    want = np.full((B, 32, 32), np.float32(-0.1), np.float32)
    centred = preprocess(digits)[:, 2:30, 2:30]
    for b in range(B):
        dy, dx = int(shift[b, 0]), int(shift[b, 1])
        want[b, 2 + dy:30 + dy, 2 + dx:30 + dx] = centred[index[b]]
    assert np.array_equal(bits(out), bits(want))


def test_zero_shift_is_preprocess():
    digits = np.random.default_rng(5).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    out = _core.gather_digits(digits, None, np.zeros((3, 2), np.int8))
    assert np.array_equal(bits(out), bits(preprocess(digits)))


@pytest.mark.parametrize("index, shift", [
    ([0, 3], None), ([-1], None), ([0], [[3, 0]]), ([0], [[0, -3]]),
])
def test_bad_index_or_shift_is_refused_and_nothing_written(index, shift):
    digits = np.zeros((3, 28, 28), np.uint8)
    index = np.asarray(index, np.int64)
    buf = nan_out(len(index))
    sh = None if shift is None else np.asarray(shift, np.int8)
    with pytest.raises(ValueError, match="outside"):
        _core.gather_digits(digits, index, sh, out=buf)
    assert np.isnan(buf).all()


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        _core.gather_digits(np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(ValueError, match="shift must be"):
        _core.gather_digits(np.zeros((2, 28, 28), np.uint8), None, np.zeros((1, 2), np.int8))
    with pytest.raises(ValueError, match="out must be"):
        _core.gather_digits(np.zeros((2, 28, 28), np.uint8), out=np.empty((3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="outside"):     # no digits to take a row from
        _core.gather_digits(np.zeros((0, 28, 28), np.uint8), np.zeros(1, np.int64))
    assert _core.gather_digits(np.zeros((0, 28, 28), np.uint8)).shape == (0, 32, 32)
