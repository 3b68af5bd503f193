"""Conversion of arbitrary digit images to MNIST format and reading image files."""

import numpy as np
import pytest

from lenet_native.images import read_image_file, read_images, resample, to_mnist
from lenet_native.terminal import ascii_digit


def com(d):
    d = d.astype(np.float64)
    r = np.arange(d.shape[0])
    return (d.sum(1) * r).sum() / d.sum(), (d.sum(0) * np.arange(d.shape[1])).sum() / d.sum()


def bbox(d):
    rows = np.flatnonzero(d.any(1))
    cols = np.flatnonzero(d.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def bar_digit(h=100, w=80, top=10, left=30, height=70, width=12, ink=255, bg=0):
    """A synthetic '1': a bar of ink on a background, uint8."""
    a = np.full((h, w), bg, dtype=np.uint8)
    a[top:top + height, left:left + width] = ink
    return a


def l_digit(h=60, w=60):
    """An asymmetric shape (an 'L'), so the centre of mass differs from the box centre."""
    a = np.zeros((h, w), dtype=np.uint8)
    a[5:45, 10:16] = 255
    a[39:45, 10:40] = 255
    return a


def test_output_is_uint8_28x28_fitted_to_a_20_pixel_box():
    d = to_mnist(bar_digit())
    assert d.dtype == np.uint8 and d.shape == (28, 28)
    r0, r1, c0, c1 = bbox(d)
    assert r1 - r0 == 20                  # the longer side fills the 20-pixel box
    assert 3 <= c1 - c0 <= 5              # 12/70 of it, preserving the aspect ratio
    assert d.max() == 255


def test_wide_digits_fit_by_their_width():
    a = np.zeros((50, 200), np.uint8)
    a[20:30, 10:190] = 200
    d = to_mnist(a)
    r0, r1, c0, c1 = bbox(d)
    assert c1 - c0 == 20 and 1 <= r1 - r0 <= 2


def test_centred_by_centre_of_mass():
    d = to_mnist(l_digit())
    cy, cx = com(d)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    r0, r1, c0, c1 = bbox(d)
    # the box is not centred, the mass is: the L's mass lies left and low in its box
    assert (c0 + c1) / 2 > 14.5


def test_position_and_size_of_the_input_do_not_matter():
    a = np.zeros((200, 300), np.uint8)
    a[20:80, 30:90] = l_digit()
    b = np.zeros((90, 70), np.uint8)
    b[15:75, 5:65] = l_digit()
    np.testing.assert_array_equal(to_mnist(a), to_mnist(b))


def test_dark_ink_on_light_paper_is_inverted():
    light = bar_digit(ink=20, bg=240)
    dark = bar_digit(ink=255, bg=0)
    a, b = to_mnist(light), to_mnist(dark)
    assert a[0, 0] == 0 and a.max() == 255
    np.testing.assert_array_equal(a, b)


def test_grey_levels_and_weak_contrast_are_normalised():
    a = bar_digit(ink=140, bg=100)
    d = to_mnist(a)
    assert d.max() == 255 and d[0, 0] == 0


def test_noise_in_the_background_is_removed():
    rng = np.random.default_rng(0)
    a = bar_digit().astype(np.float64) / 255 * 0.8 + 0.1
    a += rng.normal(0, 0.02, a.shape)
    d = to_mnist(np.clip(a, 0, 1))
    r0, r1, c0, c1 = bbox(d)
    assert r1 - r0 == 20 and c1 - c0 <= 5


def test_colour_and_alpha_inputs():
    grey = bar_digit(ink=0, bg=255)
    rgb = np.stack([grey, grey, grey], axis=-1)
    np.testing.assert_array_equal(to_mnist(rgb), to_mnist(grey))
    red_on_white = np.full(grey.shape + (3,), 255, np.uint8)
    red_on_white[grey == 0] = (200, 0, 0)
    assert to_mnist(red_on_white).max() == 255
    # black ink drawn on a transparent canvas (RGBA, colour black everywhere)
    rgba = np.zeros(grey.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - grey
    np.testing.assert_array_equal(to_mnist(rgba), to_mnist(grey))
    # white ink on a transparent canvas
    rgba2 = np.full(grey.shape + (4,), 255, np.uint8)
    rgba2[..., 3] = 255 - grey
    np.testing.assert_array_equal(to_mnist(rgba2), to_mnist(grey))
    # float 0..1 and bool
    np.testing.assert_array_equal(to_mnist(grey / 255.0), to_mnist(grey))
    assert to_mnist(grey < 128).max() == 255


def test_mnist_digits_go_through_unchanged(mnist_test_sample):
    images, _ = mnist_test_sample
    same = [np.array_equal(to_mnist(d), d) for d in images]
    assert np.mean(same) >= 0.99


def test_blank_image_gives_zeros():
    assert not to_mnist(np.zeros((30, 30), np.uint8)).any()
    assert not to_mnist(np.full((30, 30), 255, np.uint8)).any()


def test_bad_images():
    with pytest.raises(ValueError, match="shape"):
        to_mnist(np.zeros((5, 5, 7)))
    with pytest.raises(ValueError, match="0..1"):
        to_mnist(np.full((5, 5), 7.0))
    with pytest.raises(ValueError, match="NaN"):
        to_mnist(np.full((5, 5), np.nan))
    with pytest.raises(ValueError, match="not an image"):
        to_mnist(np.zeros(5))


def test_resample_area_and_bilinear():
    a = np.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(resample(a, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(resample(a, (4, 4)), a)
    up = resample(np.array([[0.0, 1.0]]), (1, 4))
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])
    # constant images stay constant, any factor
    np.testing.assert_allclose(resample(np.ones((7, 13)), (5, 20)), 1.0)


def test_ascii_digit():
    d = to_mnist(bar_digit())
    text = ascii_digit(d)
    lines = text.split("\n")
    assert len(lines) == 14 and "@" in text


# ----------------------------------------------------------------------------- files


def test_npy_single_and_stack(tmp_path):
    one = tmp_path / "one.npy"
    np.save(one, bar_digit())
    stack = tmp_path / "stack.npy"
    np.save(stack, np.stack([bar_digit(), l_digit(100, 80)]).astype(np.float32) / 255)
    items = read_images([one, stack])
    assert [n for n, _ in items] == [str(one), f"{stack}[0]", f"{stack}[1]"]


def test_npy_wrong_shape_names_the_file(tmp_path):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="bad.npy.*shape"):
        read_image_file(p)
    p2 = tmp_path / "text.npy"
    np.save(p2, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="text.npy"):
        read_image_file(p2)


def test_corrupt_npy_names_the_file(tmp_path):
    p = tmp_path / "broken.npy"
    p.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="broken.npy"):
        read_image_file(p)


def test_idx_files(tmp_path):
    from lenet_native.idx import write_idx
    p = tmp_path / "digits-idx3-ubyte.gz"
    write_idx(p, np.stack([bar_digit(28, 28, 4, 12, 20, 4)] * 3))
    items = read_image_file(p)
    assert len(items) == 3 and items[0][1].shape == (28, 28)
    labels = tmp_path / "labels-idx1-ubyte"
    write_idx(labels, np.arange(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels-idx1-ubyte.*labels file"):
        read_image_file(labels)
    # an IDX file without an IDX-like name is recognised by its content
    q = tmp_path / "digits.bin"
    write_idx(q, bar_digit(28, 28, 4, 12, 20, 4))
    assert len(read_image_file(q)) == 1


def test_unknown_extension_names_the_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt.*unsupported"):
        read_image_file(p)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image_file(tmp_path / "nothere.png")


# ----------------------------------------------------------------------------- Pillow


def test_png_and_jpeg(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    grey = bar_digit(ink=0, bg=255)
    Image.fromarray(grey).save(tmp_path / "d.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "d.jpg", quality=95)
    rgba = np.zeros(grey.shape + (4,), np.uint8)
    rgba[..., 3] = 255 - grey
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    ref = to_mnist(grey)
    (name, png), = read_image_file(tmp_path / "d.png")
    assert name.endswith("d.png")
    np.testing.assert_array_equal(to_mnist(png), ref)
    (_, jpg), = read_image_file(tmp_path / "d.jpg")
    assert np.abs(to_mnist(jpg).astype(int) - ref).mean() < 8  # JPEG artefacts
    (_, a), = read_image_file(tmp_path / "a.png")
    np.testing.assert_array_equal(to_mnist(a), ref)


def test_corrupt_png_names_the_file(tmp_path):
    pytest.importorskip("PIL.Image")
    p = tmp_path / "broken.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ValueError, match="broken.png"):
        read_image_file(p)


def test_missing_pillow_says_how_to_install(tmp_path, monkeypatch):
    import builtins
    p = tmp_path / "d.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n")
    real_import = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(ImportError, match=r"d.png.*pip install 'lenet_native\[images\]'"):
        read_image_file(p)
