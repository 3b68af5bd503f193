"""Damaged, hostile and half-written files: weight files (.npz) and IDX files.

Every bad file must give a ValueError that names the file and says what is wrong (never
another exception type, never a MemoryError, never a silently different model); a pickle
inside a weight file must never be unpickled; a failed save must leave the previous file
intact and no temporary file behind. tests/test_model.py and tests/test_datasets.py hold
the basic cases; this file covers every array, every damage and every failure point.
"""
import errno
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

import lenet_native as ln
from lenet_native import fileio
from lenet_native.idx import read_idx, write_idx
from lenet_native.layout import C3_TABLE, SHAPES
from lenet_native.weights import FORMAT_NAME, FORMAT_VERSION
from conftest import child_env

HEADS = ["softmax", "rbf"]
FLOAT_KEYS = {
    "softmax": sorted(SHAPES),
    "rbf": sorted([k for k in SHAPES if not k.startswith("out.")] + ["out.prototypes"]),
}


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def good_arrays(head="softmax", seed=0):
    arrays = ln.LeNet5(head=head, seed=seed).state_dict()
    arrays["meta"] = np.array(json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION,
                                          "head": head}))
    return arrays


def write_npz(path, arrays, compressed=False):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return Path(path)


def load_error(path, *needles):
    """LeNet5.load(path) must raise ValueError naming the file and every needle."""
    with pytest.raises(ValueError) as info:
        ln.LeNet5.load(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def open_fds():
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux
        return None


def listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


# ============================================================ damaged weight files


def test_truncated_anywhere(tmp_path):
    """Cut at the start, inside the local headers, inside array data, inside the central
    directory and inside the end record: always a ValueError naming the file."""
    good = tmp_path / "good.npz"
    ln.LeNet5(head="rbf", seed=1).save(good)
    data = good.read_bytes()
    n = len(data)
    cuts = {0, 1, 2, 3, 4, 10, 29, 30, 31, 64, 100, 200, 1000}
    cuts |= {n * i // 40 for i in range(1, 40)}
    cuts |= {n - k for k in (1, 2, 10, 21, 22, 23, 46, 50, 100, 500, 1000, 2000)}
    bad = tmp_path / "cut.npz"
    for cut in sorted(c for c in cuts if 0 <= c < n):
        bad.write_bytes(data[:cut])
        load_error(bad)


@FUZZ
@given(data=st.data())
def test_random_corruption_is_caught_or_harmless(tmp_path, data):
    """Flip bits or overwrite bytes anywhere (data, headers, central directory): the load
    raises ValueError naming the file, or succeeds with exactly the saved weights (the zip
    CRC catches any change that matters). No file handle is left open either way."""
    head = data.draw(st.sampled_from(HEADS))
    good = tmp_path / f"good-{head}.npz"
    if not good.exists():
        ln.LeNet5(head=head, seed=2).save(good)
    original = good.read_bytes()
    b = bytearray(original)
    region = data.draw(st.sampled_from(["anywhere", "start", "end"]))
    for _ in range(data.draw(st.integers(1, 4))):
        if region == "start":
            pos = data.draw(st.integers(0, min(400, len(b) - 1)))
        elif region == "end":
            pos = len(b) - 1 - data.draw(st.integers(0, 2500))
        else:
            pos = data.draw(st.integers(0, len(b) - 1))
        if data.draw(st.booleans()):
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            b[pos] = data.draw(st.integers(0, 255))
    bad = tmp_path / "damaged.npz"
    bad.write_bytes(bytes(b))
    fds = open_fds()
    try:
        loaded = ln.LeNet5.load(bad)
    except ValueError as exc:
        assert str(bad) in str(exc)
    else:
        assert same_weights(loaded, ln.LeNet5.load(good))
    assert open_fds() == fds


@pytest.mark.parametrize("what", ["empty", "text", "npy", "gzip_of_npz", "idx", "empty_zip",
                                  "zip_of_text", "directory", "pickle"])
def test_not_a_weight_file(tmp_path, what):
    p = tmp_path / f"{what}.npz"
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    if what == "empty":
        p.write_bytes(b"")
    elif what == "text":
        p.write_text("c1.weight = [0.1, 0.2]\n")
    elif what == "npy":
        np.save(tmp_path / "x.npy", np.zeros(3, np.float32))
        (tmp_path / "x.npy").rename(p)
    elif what == "gzip_of_npz":
        p.write_bytes(gzip.compress(good.read_bytes()))
    elif what == "idx":
        write_idx(p, np.zeros((2, 28, 28), np.uint8))
    elif what == "empty_zip":
        zipfile.ZipFile(p, "w").close()
    elif what == "zip_of_text":
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("readme.txt", "hello")
    elif what == "directory":
        p.mkdir()
    elif what == "pickle":
        import pickle
        p.write_bytes(pickle.dumps({"c1.weight": np.zeros((6, 1, 5, 5), np.float32)}))
    load_error(p)


def _every_key(head):
    return [(head, k) for k in FLOAT_KEYS[head] + ["meta"]]


@pytest.mark.parametrize("head, key", _every_key("softmax") + _every_key("rbf"))
def test_missing_array(tmp_path, head, key):
    arrays = good_arrays(head)
    del arrays[key]
    load_error(write_npz(tmp_path / "m.npz", arrays), repr(key))


def test_head_mismatch_arrays(tmp_path):
    """A softmax file with RBF prototypes, an RBF file with a softmax output layer."""
    arrays = good_arrays("softmax")
    arrays["out.prototypes"] = good_arrays("rbf")["out.prototypes"]
    load_error(write_npz(tmp_path / "a.npz", arrays), "'out.prototypes'")
    arrays = good_arrays("rbf")
    arrays["out.weight"] = good_arrays("softmax")["out.weight"]
    load_error(write_npz(tmp_path / "b.npz", arrays), "'out.weight'")


def _wrong_shapes(shape):
    yield shape[::-1] if len(shape) > 1 and shape[::-1] != shape else shape + (1,)
    yield (int(np.prod(shape)),) if len(shape) > 1 else (shape[0], 1)
    yield (1,) + shape
    yield ()
    yield tuple(d + 1 for d in shape)


@pytest.mark.parametrize("head", HEADS)
def test_wrong_shape_for_every_array(tmp_path, head):
    for key in FLOAT_KEYS[head] + ["c3.table"]:
        shape = good_arrays(head)[key].shape
        for bad_shape in _wrong_shapes(shape):
            arrays = good_arrays(head)
            arrays[key] = np.zeros(bad_shape, arrays[key].dtype)
            load_error(write_npz(tmp_path / "s.npz", arrays), repr(key), "shape")


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.uint8, bool, np.complex64,
                                   ">f4", "U3", "datetime64[s]", [("a", "<f4")]])
def test_wrong_dtype_for_every_array(tmp_path, dtype):
    for head in HEADS:
        for key in FLOAT_KEYS[head]:
            arrays = good_arrays(head)
            arrays[key] = np.zeros(arrays[key].shape, dtype)
            load_error(write_npz(tmp_path / "d.npz", arrays), repr(key), "dtype")


def test_wrong_dtype_for_c3_table(tmp_path):
    arrays = good_arrays()
    arrays["c3.table"] = C3_TABLE.astype(np.uint8)
    load_error(write_npz(tmp_path / "t.npz", arrays), "'c3.table'", "dtype")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_in_every_array(tmp_path, bad):
    for head in HEADS:
        for key in FLOAT_KEYS[head]:
            arrays = good_arrays(head)
            a = arrays[key].copy()
            a.reshape(-1)[a.size // 2] = bad
            arrays[key] = a
            load_error(write_npz(tmp_path / "n.npz", arrays), repr(key), "NaN or infinity")


def test_every_unconnected_c3_pair_is_rejected(tmp_path):
    """Any non-zero weight where Table I has no connection, even the smallest denormal,
    is refused naming the pair; -0.0 is zero and loads."""
    unconnected = np.argwhere(~C3_TABLE)
    assert len(unconnected) == 96 - 60
    for i, (m, c) in enumerate(unconnected):
        arrays = good_arrays()
        w = arrays["c3.weight"].copy()
        w[m, c, i % 5, (i * 3) % 5] = np.float32(1e-45) if i % 2 else np.float32(-1.0)
        arrays["c3.weight"] = w
        load_error(write_npz(tmp_path / "c3.npz", arrays), f"C3 map {m}, S2 map {c}")
    arrays = good_arrays()
    w = arrays["c3.weight"].copy()
    w[~C3_TABLE] = np.float32(-0.0)
    arrays["c3.weight"] = w
    loaded = ln.LeNet5.load(write_npz(tmp_path / "negzero.npz", arrays))
    assert same_weights(loaded, ln.LeNet5(seed=0))


def test_rbf_prototypes_must_be_plus_minus_one(tmp_path):
    for bad in (0.0, 1.0000001, -2.0):
        arrays = good_arrays("rbf")
        p = arrays["out.prototypes"].copy()
        p[3, 7] = bad
        arrays["out.prototypes"] = p
        load_error(write_npz(tmp_path / "p.npz", arrays), "'out.prototypes'")


@pytest.mark.parametrize("meta, needle", [
    (np.array(b'{"format": "lenet_native.lenet5", "version": 1, "head": "softmax"}'), "'meta'"),
    (np.array(['{"format": "lenet_native.lenet5", "version": 1, "head": "softmax"}']), "'meta'"),
    (np.array(7), "'meta'"),
    (np.array("[1, 2, 3]"), "JSON object"),
    (np.array('"just a string"'), "JSON object"),
    (np.array(json.dumps({"format": "lenet_native.lenet5", "version": 1})), "head"),
    (np.array(json.dumps({"format": "lenet_native.lenet5", "version": 1, "head": "relu"})), "head"),
    (np.array(json.dumps({"format": "lenet_native.lenet5", "head": "softmax"})), "version"),
    (np.array("[" * 100_000 + "]" * 100_000), "'meta'"),      # would blow the recursion limit
    (np.array("\x00\x01 not json"), "JSON"),
])
def test_bad_meta(tmp_path, meta, needle):
    arrays = good_arrays()
    arrays["meta"] = meta
    load_error(write_npz(tmp_path / "meta.npz", arrays), needle)


def _rewrite_member(src, dst, member, new_bytes):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = new_bytes if info.filename == member else zin.read(info.filename)
            zout.writestr(info.filename, data)
    return Path(dst)


@pytest.mark.parametrize("claimed", [(10**12,), (10**9,), (2**62, 4), (100,), (120, 16, 5, 6)])
def test_npy_header_lying_about_its_size(tmp_path, claimed):
    """A .npy member whose header claims more (or less) data than it holds is refused before
    anything is allocated: ValueError, not MemoryError."""
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    with zipfile.ZipFile(good) as z:
        raw = z.read("c5.weight.npy")
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": claimed})
    body = raw[len(raw) - 120 * 16 * 5 * 5 * 4:]
    bad = _rewrite_member(good, tmp_path / "lying.npz", "c5.weight.npy", header.getvalue() + body)
    load_error(bad, "'c5.weight'")


def test_member_that_is_not_npy(tmp_path):
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    bad = _rewrite_member(good, tmp_path / "raw.npz", "f6.bias.npy", b"\x00" * 336)
    load_error(bad, "'f6.bias'")


def test_duplicate_member(tmp_path):
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    bad = tmp_path / "dup.npz"
    bad.write_bytes(good.read_bytes())
    buf = io.BytesIO()
    np.save(buf, np.full(6, 0.5, np.float32))
    with pytest.warns(UserWarning, match="Duplicate"), zipfile.ZipFile(bad, "a") as z:
        z.writestr("c1.bias.npy", buf.getvalue())
    load_error(bad, "'c1.bias'")


def test_compressed_and_fortran_order_files_load_exactly(tmp_path):
    """Other valid writers: np.savez_compressed, Fortran-ordered arrays."""
    model = ln.LeNet5(head="rbf", seed=4)
    arrays = good_arrays("rbf", seed=4)
    fortran = {k: np.asfortranarray(v) if v.ndim else v for k, v in arrays.items()}
    assert not fortran["c5.weight"].flags.c_contiguous
    for name, arrs, comp in [("z.npz", arrays, True), ("f.npz", fortran, False)]:
        assert same_weights(ln.LeNet5.load(write_npz(tmp_path / name, arrs, comp)), model)


def test_corrupt_deflate_stream(tmp_path):
    p = write_npz(tmp_path / "z.npz", good_arrays(), compressed=True)
    b = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.getinfo("c5.weight.npy")
    start = info.header_offset + 30 + len(info.filename) + 40
    for k in range(16):
        b[start + k * 7] ^= 0x55
    p.write_bytes(bytes(b))
    load_error(p)


def test_no_file_handles_leak_on_bad_files(tmp_path):
    if open_fds() is None:
        pytest.skip("needs /proc/self/fd")
    good = tmp_path / "good.npz"
    ln.LeNet5(seed=0).save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.npz"
    before = open_fds()
    errors = []
    for k in range(60):
        bad.write_bytes(data[: len(data) - 1 - 37 * k])  # central directory missing
        try:
            ln.LeNet5.load(bad)
        except ValueError as exc:
            errors.append(exc)  # keep the exceptions (and their tracebacks) alive
    assert len(errors) == 60
    assert open_fds() == before


# ============================================================ pickles are never loaded


class Payload:
    """Unpickling this object creates the file `marker` (a harmless stand-in for any code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("where", ["c1.weight", "meta", "extra", "structured", "raw_member"])
def test_pickle_is_never_unpickled(tmp_path, where):
    marker = tmp_path / "PWNED"
    arrays = good_arrays()
    if where == "c1.weight":
        arrays["c1.weight"] = np.array([Payload(marker)] * 150, dtype=object).reshape(6, 1, 5, 5)
    elif where == "meta":
        arrays["meta"] = np.array(Payload(marker), dtype=object)
    elif where == "extra":
        arrays["evil"] = np.array([Payload(marker)], dtype=object)
    elif where == "structured":
        a = np.zeros(6, dtype=[("x", "<f4"), ("o", object)])
        a["o"] = [Payload(marker)] * 6
        arrays["c1.bias"] = a
    p = tmp_path / "evil.npz"
    if where == "raw_member":
        import pickle
        write_npz(p, arrays)
        p = _rewrite_member(p, tmp_path / "evil2.npz", "c1.bias.npy", pickle.dumps(Payload(marker)))
    else:
        write_npz(p, arrays)
    assert not marker.exists()
    load_error(p)
    assert not marker.exists(), "lenet_native unpickled an object from a weight file"
    # the payload is live: numpy with allow_pickle=True does run it
    if where == "raw_member":
        import pickle
        with zipfile.ZipFile(p) as z:
            pickle.loads(z.read("c1.bias.npy"))
    else:
        key = {"extra": "evil", "structured": "c1.bias"}.get(where, where)
        with np.load(p, allow_pickle=True) as z:
            z[key]
    assert marker.exists()


# ============================================================ atomic saving


@pytest.fixture
def saved(tmp_path):
    """A folder holding m.npz written by model A; returns (path, its bytes)."""
    path = tmp_path / "m.npz"
    ln.LeNet5(seed=1).save(path)
    return path, path.read_bytes()


def _check_untouched(path, before):
    assert path.read_bytes() == before
    assert listing(path.parent) == [path.name], "a temporary file was left behind"
    assert same_weights(ln.LeNet5.load(path), ln.LeNet5(seed=1))


def test_failure_during_write(saved, monkeypatch):
    """np.savez writes part of the file, then the disk is full."""
    path, before = saved
    real = np.savez

    def half_then_enospc(f, **arrays):
        buf = io.BytesIO()
        real(buf, **arrays)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", half_then_enospc)
    with pytest.raises(OSError, match="No space"):
        ln.LeNet5(seed=2).save(path)
    _check_untouched(path, before)


def test_ctrl_c_during_write(saved, monkeypatch):
    path, before = saved
    real = np.savez

    def interrupted(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ln.LeNet5(seed=2).save(path)
    monkeypatch.setattr(np, "savez", real)
    _check_untouched(path, before)


class FailingFile:
    """Wraps a real file object; write() fails (OSError EIO) once `budget` bytes are written."""

    def __init__(self, f, budget):
        self._f, self._budget = f, budget

    def write(self, b):
        if len(b) > self._budget:
            self._f.write(bytes(b)[: self._budget])
            raise OSError(errno.EIO, "simulated failure at write")
        self._budget -= len(b)
        return self._f.write(b)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def failing_fdopen(module, monkeypatch, budget):
    real = os.fdopen
    monkeypatch.setattr(module.os, "fdopen", lambda fd, *a, **k: FailingFile(real(fd, *a, **k), budget))


@pytest.mark.parametrize("step", ["write@0", "write@100", "write@50000", "fsync", "chmod", "replace"])
def test_failure_at_each_step(saved, monkeypatch, step):
    """The OS fails at each step of the save in turn: the old file stays, nothing is left."""
    path, before = saved
    if step.startswith("write@"):
        failing_fdopen(fileio, monkeypatch, int(step[6:]))
        step = "write"
    else:
        def fail(*args, **kwargs):
            raise OSError(errno.EIO, f"simulated failure at {step}")
        monkeypatch.setattr(fileio.os, step, fail)
    with pytest.raises(OSError, match=f"simulated failure at {step}"):
        ln.LeNet5(seed=2).save(path)
    monkeypatch.undo()
    _check_untouched(path, before)


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        ln.LeNet5(seed=0).save(tmp_path / "new.npz")
    assert listing(tmp_path) == []


def test_save_into_missing_folder_or_over_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        ln.LeNet5(seed=0).save(tmp_path / "nowhere" / "m.npz")
    assert listing(tmp_path) == []
    (tmp_path / "d.npz").mkdir()
    (tmp_path / "d.npz" / "keep").write_text("x")
    with pytest.raises(OSError):
        ln.LeNet5(seed=0).save(tmp_path / "d.npz")
    assert listing(tmp_path) == ["d.npz"] and listing(tmp_path / "d.npz") == ["keep"]


def test_saved_file_mode(tmp_path):
    """A new file gets the usual 0666 & ~umask (not mkstemp's 0600); an existing file keeps
    its mode when it is replaced."""
    if os.name != "posix":
        pytest.skip("POSIX modes")
    mask = os.umask(0o022)
    os.umask(mask)
    p = tmp_path / "m.npz"
    ln.LeNet5(seed=0).save(p)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    os.chmod(p, 0o640)
    ln.LeNet5(seed=1).save(p)
    assert p.stat().st_mode & 0o777 == 0o640


def test_readers_never_see_a_partial_file(tmp_path):
    """One thread saves models A and B in turn over the same path while others load it:
    every load succeeds and is exactly A or B."""
    path = tmp_path / "m.npz"
    a, b = ln.LeNet5(seed=10), ln.LeNet5(seed=11)
    a.save(path)
    stop = threading.Event()
    problems = []

    def writer():
        try:
            for i in range(40):
                (a if i % 2 else b).save(path)
        except BaseException as exc:  # pragma: no cover - reported below
            problems.append(("writer", repr(exc)))
        finally:
            stop.set()

    def reader():
        loads = 0
        while not stop.is_set() or loads == 0:
            try:
                m = ln.LeNet5.load(path)
            except BaseException as exc:
                problems.append(("reader", repr(exc)))
                return
            if not (same_weights(m, a) or same_weights(m, b)):
                problems.append(("reader", "a mixture of A and B"))
                return
            loads += 1

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert problems == []
    assert [n for n in listing(tmp_path) if n != "m.npz"] == []


SAVER = textwrap.dedent("""
    import sys, lenet_native as ln
    path = sys.argv[1]
    models = [ln.LeNet5(seed=20), ln.LeNet5(seed=21)]
    models[0].save(path)
    print("ready", flush=True)
    i = 0
    while True:
        models[i % 2].save(path)
        i += 1
""")


def test_sigkill_while_saving_leaves_a_complete_file(tmp_path):
    """A process killed hard (SIGKILL, no clean-up at all) in the middle of saving in a loop:
    the file is always a complete, valid weight file (the old or the new one). A stale
    temporary file may remain after such a kill; it is never mistaken for the file."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("POSIX signals")
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    path = tmp_path / "m.npz"
    a, b = ln.LeNet5(seed=20), ln.LeNet5(seed=21)
    for delay in (0.05, 0.13, 0.31):
        proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE,
                                env=child_env())
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(delay)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
        m = ln.LeNet5.load(path)
        assert same_weights(m, a) or same_weights(m, b)
        others = [n for n in listing(tmp_path) if n not in ("m.npz", "saver.py")]
        assert all(n.startswith(".m.npz.") and n.endswith(".tmp") for n in others), others


# ============================================================ IDX files


@FUZZ
@given(data=st.data())
def test_idx_random_damage_is_caught(tmp_path, data):
    """Truncate, flip, insert or append bytes in a raw or gzip IDX file: read_idx returns an
    array or raises ValueError naming the file; never another exception type."""
    gz = data.draw(st.booleans())
    dtype = data.draw(st.sampled_from([np.uint8, np.int16, np.float32, np.float64]))
    good = tmp_path / ("g.gz" if gz else "g")
    write_idx(good, np.arange(60).astype(dtype).reshape(3, 4, 5))
    b = bytearray(good.read_bytes())
    op = data.draw(st.sampled_from(["truncate", "flip", "insert", "append", "header"]))
    if op == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    elif op == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            b[data.draw(st.integers(0, len(b) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "insert":
        pos = data.draw(st.integers(0, len(b)))
        b[pos:pos] = data.draw(st.binary(min_size=1, max_size=12))
    elif op == "append":
        b += data.draw(st.binary(min_size=1, max_size=40))
    else:  # raw header bytes, possibly gzip-wrapped
        raw = data.draw(st.binary(min_size=0, max_size=24))
        b = bytearray(gzip.compress(raw) if gz else raw)
    bad = tmp_path / ("bad.gz" if gz else "bad")
    bad.write_bytes(bytes(b))
    try:
        out = read_idx(bad)
    except ValueError as exc:
        assert str(bad) in str(exc)
    else:
        assert isinstance(out, np.ndarray) and out.dtype.isnative


def test_idx_directory_and_missing(tmp_path):
    with pytest.raises(OSError) as info:
        read_idx(tmp_path)
    assert str(tmp_path) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


@pytest.mark.parametrize("step", ["fsync", "write@0", "write@7"])
def test_idx_failed_write_keeps_old_file(tmp_path, monkeypatch, step):
    """write_idx failing at fsync or in the middle of writing (tests/test_datasets.py covers
    os.replace): the old file stays, no temporary file remains."""
    for name in ("k.gz", "k"):
        p = tmp_path / name
        write_idx(p, np.arange(5, dtype=np.uint8))
        before = p.read_bytes()
        with monkeypatch.context() as mp:
            if step == "fsync":
                def fail(fd):
                    raise OSError(errno.EIO, "simulated failure at fsync")
                mp.setattr(fileio.os, "fsync", fail)
            else:
                failing_fdopen(fileio, mp, int(step[6:]))
            with pytest.raises(OSError, match="simulated failure"):
                write_idx(p, np.arange(1000, dtype=np.uint8))
        assert p.read_bytes() == before
    assert listing(tmp_path) == ["k", "k.gz"]
