"""Tests for lenet_native.datasets: IDX reading/writing, MNIST finding,
loading, verification and (offline, with a fake opener) downloading."""

import gzip
import hashlib
import io
import os
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lenet_native import datasets, fileio
from lenet_native.datasets import (
    MNIST_FILES,
    MNIST_SHA256,
    default_data_dirs,
    download_mnist,
    find_mnist,
    load_mnist,
    uncompressed_sha256,
    verify_mnist,
)
from lenet_native.idx import read_idx, write_idx

ALL_NAMES = [n for pair in MNIST_FILES.values() for n in pair]

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def header(code, dims, ndim=None):
    ndim = len(dims) if ndim is None else ndim
    return bytes([0, 0, code, ndim]) + struct.pack(f">{len(dims)}I", *dims)


def put(path, data, gz=None):
    """Write raw bytes, gzip-compressed if gz (default: if the name ends .gz)."""
    path = Path(path)
    if gz is None:
        gz = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Keep the user's real environment and cache out of every test."""
    monkeypatch.delenv(datasets.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "xdg-cache"))

    def no_network(url, timeout=None):
        raise AssertionError(f"test tried to use the network: {url}")

    monkeypatch.setattr(datasets, "urlopen", no_network)


# ---------------------------------------------------------------- round trip

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_dtypes(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    p = tmp_path / f"a-idx3{suffix}"
    write_idx(p, a)
    b = read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable and b.flags.c_contiguous


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_uint8_images_and_labels(tmp_path, suffix):
    images = np.arange(5 * 28 * 28, dtype=np.uint8).reshape(5, 28, 28)
    labels = np.array([0, 9, 3, 3, 7], np.uint8)
    write_idx(tmp_path / f"img{suffix}", images)
    write_idx(tmp_path / f"lbl{suffix}", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / f"img{suffix}"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / f"lbl{suffix}"), labels)
    assert (tmp_path / f"img{suffix}").read_bytes()[:2] == (
        b"\x1f\x8b" if suffix else b"\x00\x00")


def test_written_bytes_are_standard_idx(tmp_path):
    write_idx(tmp_path / "x", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32))
    assert (tmp_path / "x").read_bytes() == (
        header(0x0C, [2, 3]) + struct.pack(">6i", 1, 2, 3, 4, 5, 6))
    write_idx(tmp_path / "y", np.array([1.5], dtype="<f8"))
    assert (tmp_path / "y").read_bytes() == header(0x0E, [1]) + struct.pack(">d", 1.5)


def test_reads_big_endian_bytes_written_by_hand(tmp_path):
    p = put(tmp_path / "h", header(0x0B, [2, 2]) + struct.pack(">4h", -1, 2, -300, 4))
    np.testing.assert_array_equal(read_idx(p), np.array([[-1, 2], [-300, 4]], np.int16))


def test_gzip_detected_by_content_and_raw_in_gz_name(tmp_path):
    data = header(0x08, [3]) + b"\x01\x02\x03"
    # gzip content under a plain name
    np.testing.assert_array_equal(read_idx(put(tmp_path / "plain", data, gz=True)), [1, 2, 3])
    # already-decompressed content under a .gz name (browsers do this)
    np.testing.assert_array_equal(read_idx(put(tmp_path / "x.gz", data, gz=False)), [1, 2, 3])


def test_zero_sized_dimension(tmp_path):
    write_idx(tmp_path / "e.gz", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "e.gz").shape == (0, 28, 28)


def test_accepts_str_path(tmp_path):
    write_idx(str(tmp_path / "s"), np.arange(4, dtype=np.uint8))
    assert read_idx(str(tmp_path / "s")).tolist() == [0, 1, 2, 3]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from([np.dtype(d) for d in DTYPES]
                              + [np.dtype(">i4"), np.dtype(">f8"), np.dtype("<i2")]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    gz=st.booleans(),
)
def test_round_trip_property(tmp_path, arr, gz):
    p = tmp_path / ("p.gz" if gz else "p")
    write_idx(p, arr)
    back = read_idx(p)
    assert back.shape == arr.shape
    assert back.dtype == arr.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, arr)  # NaNs compare equal here


def test_write_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "a", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "a", np.zeros(3, bool))
    with pytest.raises(ValueError, match="dimension"):
        write_idx(tmp_path / "a", np.zeros((1,) * 5, np.uint8))
    with pytest.raises(ValueError, match="dimension"):
        write_idx(tmp_path / "a", np.uint8(3))
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    p = tmp_path / "keep.gz"
    write_idx(p, np.arange(3, dtype=np.uint8))
    before = p.read_bytes()

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_idx(p, np.arange(10, dtype=np.uint8))
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.gz"]  # temp removed


# --------------------------------------------------------------- error paths

def read_error(path):
    with pytest.raises(ValueError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    return msg


@pytest.mark.parametrize("gz", [False, True])
def test_wrong_magic(tmp_path, gz):
    p = put(tmp_path / "m", b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", gz=gz)
    assert "magic" in read_error(p)
    p = put(tmp_path / "m2", b"PK\x03\x04 not an idx file at all", gz=gz)
    assert "magic" in read_error(p)


def test_wrong_magic_in_gz_name_mentions_not_gzip(tmp_path):
    p = put(tmp_path / "x.gz", b"<html>404 Not Found</html>", gz=False)
    msg = read_error(p)
    assert "magic" in msg and "not gzip" in msg


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_bad_dtype_code(tmp_path, code):
    p = put(tmp_path / "d", header(code, [1]) + b"\x00" * 8)
    assert "data type code" in read_error(p)


@pytest.mark.parametrize("ndim", [0, 5, 255])
def test_bad_ndim(tmp_path, ndim):
    p = put(tmp_path / "n", header(0x08, [1] * min(ndim, 5), ndim=ndim) + b"\x00")
    assert "number of dimensions" in read_error(p)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    p = put(tmp_path / "t", header(0x08, [60000, 28, 28]) + b"\x00" * 1234, gz=gz)
    msg = read_error(p)
    assert "truncated" in msg and "60000x28x28 uint8 = 47040000 bytes" in msg
    assert "1234" in msg


def test_truncated_multibyte(tmp_path):
    p = put(tmp_path / "t", header(0x0C, [4]) + b"\x00" * 15)
    msg = read_error(p)
    assert "truncated" in msg and "4 int32 = 16 bytes" in msg and "15" in msg


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_header(tmp_path, gz):
    assert "truncated header" in read_error(put(tmp_path / "a", b"\x00\x00", gz=gz))
    p = put(tmp_path / "b", header(0x08, [3, 3])[:9], gz=gz)
    assert "truncated header" in read_error(p)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, gz):
    p = put(tmp_path / "x", header(0x08, [2, 2]) + b"\x00" * 4 + b"junk!", gz=gz)
    msg = read_error(p)
    assert "5 trailing bytes" in msg and "2x2 uint8 = 4 bytes" in msg


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("code,dims", [
    (0x08, [0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF]),
    (0x0E, [0x7FFFFFFF] * 4),
])
def test_header_lying_about_huge_size(tmp_path, gz, code, dims):
    # Must fail fast with ValueError, never try to allocate the claimed size.
    p = put(tmp_path / "huge", header(code, dims) + b"\x00" * 100, gz=gz)
    msg = read_error(p)
    assert "truncated" in msg and "100" in msg


def test_dimension_with_sign_bit_set(tmp_path):
    p = put(tmp_path / "neg", header(0x08, [0xFFFFFFFF]) + b"\x00")
    assert "dimension 0" in read_error(p)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(header(0x08, [100]) + bytes(range(100)))
    # valid gzip header (10 bytes) followed by garbage
    p = tmp_path / "c.gz"
    p.write_bytes(good[:10] + b"\xde\xad\xbe\xef" * 20)
    assert "gzip" in read_error(p)
    # valid stream cut short
    p.write_bytes(good[:-12])
    assert "gzip" in read_error(p)
    # bad CRC
    bad_crc = bytearray(good)
    bad_crc[-8] ^= 0xFF
    p.write_bytes(bytes(bad_crc))
    assert "gzip" in read_error(p)
    # garbage appended after the gzip member
    p.write_bytes(good + b"garbage after the end")
    assert "gzip" in read_error(p)


@pytest.mark.parametrize("name", ["empty", "empty.gz"])
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    assert "empty" in read_error(p)


def test_empty_gzip_stream(tmp_path):
    p = put(tmp_path / "e.gz", b"")
    assert "empty" in read_error(p)


def test_missing_file(tmp_path):
    p = tmp_path / "nope-idx1-ubyte.gz"
    with pytest.raises(FileNotFoundError) as info:
        read_idx(p)
    assert str(p) in str(info.value)


# ------------------------------------------------------------- fake MNIST

def make_fake_mnist(folder, n_train=12, n_test=7, gz=True, seed=0):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        img_name, lbl_name = MNIST_FILES[split]
        if not gz:
            img_name, lbl_name = img_name[:-3], lbl_name[:-3]
        write_idx(folder / img_name, images)
        write_idx(folder / lbl_name, labels)
        data[split] = (images, labels)
    return data


def check_loaded(data, folder_arg, split):
    images, labels = load_mnist(folder_arg, split=split)
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, data[split][0])
    np.testing.assert_array_equal(labels, data[split][1])


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_via_path(tmp_path, gz):
    data = make_fake_mnist(tmp_path / "m", gz=gz)
    check_loaded(data, tmp_path / "m", "train")
    check_loaded(data, str(tmp_path / "m"), "test")
    assert find_mnist(tmp_path / "m") == tmp_path / "m"


def test_load_mnist_default_split_is_train(tmp_path):
    data = make_fake_mnist(tmp_path)
    images, _ = load_mnist(tmp_path)
    assert len(images) == len(data["train"][0])


def test_load_mnist_via_env(tmp_path, monkeypatch):
    data = make_fake_mnist(tmp_path / "envdata")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "envdata"))
    check_loaded(data, None, "train")
    check_loaded(data, None, "test")
    assert find_mnist() == tmp_path / "envdata"


def test_load_mnist_via_xdg_cache(tmp_path, monkeypatch):
    cache = tmp_path / "xdg-cache" / "lenet_native" / "mnist"
    data = make_fake_mnist(cache)
    assert datasets.cache_dir() == cache
    check_loaded(data, None, "test")
    # an incomplete env folder is skipped in favour of the cache
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / MNIST_FILES["test"][0], data["test"][0])
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "partial"))
    assert find_mnist() == cache


def test_cache_dir_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.name != "nt":
        assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "lenet_native" / "mnist"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
        assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "lenet_native" / "mnist"


def test_default_data_dirs_order(tmp_path, monkeypatch):
    cache = datasets.cache_dir()
    assert default_data_dirs() == [cache]
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "env"))
    assert default_data_dirs() == [tmp_path / "env", cache]
    assert default_data_dirs(tmp_path / "arg") == [tmp_path / "arg", tmp_path / "env", cache]


def test_find_mnist_explicit_path_does_not_fall_back(tmp_path, monkeypatch):
    make_fake_mnist(tmp_path / "good")
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "good"))
    (tmp_path / "partial").mkdir()
    write_idx(tmp_path / "partial" / MNIST_FILES["train"][0], np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "partial", "train")
    msg = str(info.value)
    assert str(tmp_path / "partial") in msg and MNIST_FILES["train"][1] in msg
    assert MNIST_FILES["train"][0] not in msg.split("missing:")[1].split("(")[0]
    assert "download_mnist" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_mnist(tmp_path / "nowhere")
    # only the requested split's files are needed
    write_idx(tmp_path / "partial" / MNIST_FILES["train"][1], np.zeros(1, np.uint8))
    assert find_mnist(tmp_path / "partial", split="train") == tmp_path / "partial"
    with pytest.raises(FileNotFoundError):
        find_mnist(tmp_path / "partial")


def test_find_mnist_not_found_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.ENV_VAR, str(tmp_path / "envdir"))
    with pytest.raises(FileNotFoundError) as info:
        find_mnist()
    msg = str(info.value)
    assert str(tmp_path / "envdir") in msg
    assert str(datasets.cache_dir()) in msg
    assert "download_mnist" in msg and datasets.ENV_VAR in msg
    with pytest.raises(FileNotFoundError):
        load_mnist(split="test")


def test_load_mnist_bad_split(tmp_path):
    make_fake_mnist(tmp_path)
    for split in ["val", "t10k", "TRAIN", None, 0]:
        with pytest.raises(ValueError, match="split"):
            load_mnist(tmp_path, split=split)


def test_load_mnist_mismatched_lengths(tmp_path):
    make_fake_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train"][1], np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="12 images but .* 11 labels"):
        load_mnist(tmp_path, "train")


def test_load_mnist_labels_out_of_range(tmp_path):
    make_fake_mnist(tmp_path)
    labels = np.zeros(7, np.uint8)
    labels[4] = 10
    write_idx(tmp_path / MNIST_FILES["test"][1], labels)
    with pytest.raises(ValueError, match=r"outside 0\.\.9.*index 4 with value 10") as info:
        load_mnist(tmp_path, "test")
    assert MNIST_FILES["test"][1] in str(info.value)


@pytest.mark.parametrize("bad", [
    np.zeros((12, 28, 27), np.uint8),
    np.zeros((12, 784), np.uint8),
    np.zeros((12, 28, 28), np.float32),
])
def test_load_mnist_bad_image_shape_or_dtype(tmp_path, bad):
    make_fake_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train"][0], bad)
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        load_mnist(tmp_path, "train")


def test_load_mnist_bad_label_shape(tmp_path):
    make_fake_mnist(tmp_path)
    write_idx(tmp_path / MNIST_FILES["train"][1], np.zeros((12, 1), np.uint8))
    with pytest.raises(ValueError, match=r"labels of shape \(N,\)"):
        load_mnist(tmp_path, "train")


def test_load_mnist_corrupt_file_names_it(tmp_path):
    make_fake_mnist(tmp_path)
    p = tmp_path / MNIST_FILES["test"][0]
    p.write_bytes(p.read_bytes()[:-20])
    with pytest.raises(ValueError) as info:
        load_mnist(tmp_path, "test")
    assert str(p) in str(info.value)


def test_uncompressed_sha256(tmp_path):
    data = header(0x08, [3]) + b"abc"
    digest = hashlib.sha256(data).hexdigest()
    assert uncompressed_sha256(put(tmp_path / "a.gz", data)) == digest
    assert uncompressed_sha256(put(tmp_path / "a", data)) == digest


def test_verify_mnist_rejects_fake_files(tmp_path):
    make_fake_mnist(tmp_path)
    with pytest.raises(ValueError) as info:
        verify_mnist(tmp_path)
    msg = str(info.value)
    assert all(name in msg for name in ALL_NAMES)


# ------------------------------------------------------------------ download

def fake_contents(seed=0):
    """Valid-looking gzip IDX files for the four MNIST names, and their SHA-256."""
    rng = np.random.default_rng(seed)
    files, sums = {}, {}
    for split, n in (("train", 6), ("test", 4)):
        img, lbl = MNIST_FILES[split]
        for name, arr in ((img, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          (lbl, (np.arange(n) % 10).astype(np.uint8))):
            raw = header(0x08, arr.shape) + arr.tobytes()
            files[name] = gzip.compress(raw)
            sums[name] = hashlib.sha256(raw).hexdigest()
    return files, sums


class FakeWeb:
    """Opener serving bytes per URL; records every request."""

    def __init__(self, sites):
        self.sites = sites  # url prefix -> {name: bytes or Exception}
        self.calls = []

    def __call__(self, url, timeout=None):
        assert timeout is not None
        self.calls.append(url)
        for prefix, files in self.sites.items():
            if url.startswith(prefix):
                body = files.get(url[len(prefix):])
                if isinstance(body, Exception):
                    raise body
                if body is None:
                    raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
                return io.BytesIO(body)
        raise urllib.error.URLError("unknown host")


def corrupt(data):
    """Same length, a flipped bit in the compressed body."""
    b = bytearray(data)
    b[len(b) // 2] ^= 0x10
    return bytes(b)


def test_download_good(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)
    web = FakeWeb({"https://a.example/mnist/": files})
    out = download_mnist(tmp_path / "dl", mirrors=["https://a.example/mnist"], opener=web)
    assert out == tmp_path / "dl"
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_NAMES)
    for name in ALL_NAMES:
        assert (out / name).read_bytes() == files[name]
    assert verify_mnist(out).keys() == set(ALL_NAMES)
    images, labels = load_mnist(out, "train")
    assert images.shape == (6, 28, 28) and labels.tolist() == [0, 1, 2, 3, 4, 5]
    # second call: everything present and verified, nothing fetched
    web.calls.clear()
    download_mnist(out, mirrors=["https://a.example/mnist/"], opener=web)
    assert web.calls == []


def test_download_default_folder_and_monkeypatched_urlopen(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)
    web = FakeWeb({datasets.MNIST_MIRRORS[0]: files})
    monkeypatch.setattr(datasets, "urlopen", web)
    out = download_mnist()
    assert out == datasets.cache_dir()
    assert find_mnist() == out
    assert len(web.calls) == 4 and all(c.startswith(datasets.MNIST_MIRRORS[0]) for c in web.calls)


def test_download_corrupt_then_next_mirror(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)
    bad = {name: corrupt(body) for name, body in files.items()}
    bad[ALL_NAMES[1]] = gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 5)  # valid gzip, wrong data
    web = FakeWeb({
        "https://down.example/": {n: urllib.error.URLError("timed out") for n in ALL_NAMES},
        "https://bad.example/": bad,
        "https://good.example/": files,
    })
    out = download_mnist(tmp_path, mirrors=["https://down.example/", "https://bad.example/",
                                            "https://good.example/"], opener=web)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_NAMES)
    for name in ALL_NAMES:
        assert (out / name).read_bytes() == files[name]
        assert [c for c in web.calls if c.endswith(name)] == [
            f"https://{h}.example/{name}" for h in ("down", "bad", "good")]


def test_download_all_mirrors_fail(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)
    truncated = {n: b[: len(b) // 2] for n, b in files.items()}
    web = FakeWeb({
        "https://bad.example/": {n: corrupt(b) for n, b in files.items()},
        "https://cut.example/": truncated,
        "https://html.example/": {n: b"<html>moved</html>" for n in ALL_NAMES},
    })
    mirrors = ["https://bad.example/", "https://cut.example/", "https://html.example/",
               "https://missing.example/"]
    folder = tmp_path / "dl"
    with pytest.raises(RuntimeError) as info:
        download_mnist(folder, mirrors=mirrors, opener=web)
    msg = str(info.value)
    for name in ALL_NAMES:
        for m in mirrors:
            assert m + name in msg
    assert "checksum mismatch" in msg and "unknown host" in msg
    assert list(folder.iterdir()) == []  # no partial or temporary files


def test_download_real_checksums_reject_corrupt(tmp_path):
    # The genuine MNIST_SHA256 refuses content that is not genuine MNIST.
    files, _ = fake_contents()
    web = FakeWeb({"https://x.example/": files})
    with pytest.raises(RuntimeError, match="checksum mismatch"):
        download_mnist(tmp_path, mirrors=["https://x.example/"], opener=web)
    assert list(tmp_path.iterdir()) == []


def test_download_error_mid_stream_leaves_nothing(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)

    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset")
            return super().read(10)

    def opener(url, timeout=None):
        return Broken(files[url.rsplit("/", 1)[1]])

    with pytest.raises(RuntimeError, match="connection reset"):
        download_mnist(tmp_path, mirrors=["https://x.example/"], opener=opener)
    assert list(tmp_path.iterdir()) == []


def test_download_replaces_bad_existing_and_keeps_good(tmp_path, monkeypatch):
    files, sums = fake_contents()
    monkeypatch.setattr(datasets, "MNIST_SHA256", sums)
    good_name, bad_name = ALL_NAMES[0], ALL_NAMES[1]
    (tmp_path / good_name).write_bytes(files[good_name])
    (tmp_path / bad_name).write_bytes(b"junk")
    web = FakeWeb({"https://x.example/": files})
    download_mnist(tmp_path, mirrors=["https://x.example/"], opener=web)
    assert not any(c.endswith(good_name) for c in web.calls)
    assert (tmp_path / bad_name).read_bytes() == files[bad_name]
    verify_mnist(tmp_path)


# --------------------------------------------------------------- real MNIST
# (the fixture mnist_path: found by tests/mnist_data.py)


def test_the_tests_look_for_mnist_in_data_then_the_environment_then_beside_the_checkout():
    import mnist_data as conf
    env = {conf.ENV_VAR: "/env/mnist"}
    assert conf.mnist_candidate("/opt/m", env, "/cwd") == (Path("/opt/m"), "--data")
    assert conf.mnist_candidate("m", env, "/cwd") == (Path("/cwd/m"), "--data")
    assert conf.mnist_candidate(None, env, "/cwd") == (Path("/env/mnist"), "$" + conf.ENV_VAR)
    assert conf.mnist_candidate(None, {conf.ENV_VAR: ""}, "/cwd") == (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist", "default")
    assert conf.ENV_VAR == datasets.ENV_VAR


EXPECTED_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_real_mnist(split, n, mnist_path):
    images, labels = load_mnist(mnist_path, split=split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == EXPECTED_COUNTS[split]
    assert images.max() == 255 and images.min() == 0


def test_real_mnist_checksums(mnist_path):
    checked = verify_mnist(mnist_path)
    assert set(checked) == set(ALL_NAMES)
    for name in ALL_NAMES:
        assert uncompressed_sha256(checked[name]) == MNIST_SHA256[name]


def test_real_mnist_via_env(monkeypatch, mnist_path):
    monkeypatch.setenv(datasets.ENV_VAR, str(mnist_path))
    images, labels = load_mnist(split="test")
    assert images.shape == (10000, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_download_with_genuine_files_from_fake_opener(tmp_path, mnist_path):
    files = {n: p.read_bytes() for n, p in verify_mnist(mnist_path).items()}
    files = {n: b if b[:2] == b"\x1f\x8b" else gzip.compress(b) for n, b in files.items()}
    web = FakeWeb({"https://bad.example/": {n: corrupt(b) for n, b in files.items()},
                   "https://good.example/": files})
    out = download_mnist(tmp_path, mirrors=["https://bad.example/", "https://good.example/"],
                         opener=web)
    assert sorted(p.name for p in out.iterdir()) == sorted(ALL_NAMES)
    verify_mnist(out)
    assert len(web.calls) == 8
