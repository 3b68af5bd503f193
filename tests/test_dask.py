"""lenet_native.dask: lazy scoring of dask arrays, the model pickled by its weights, IDX files
memory-mapped, and the faults of a real cluster (a worker killed mid-way, a chunk of NaN).

The cluster tests share one LocalCluster of two single-threaded worker processes (started
once, a few seconds); the kill test runs last since it leaves a restarted worker behind.
"""
import os
import pickle
import signal
import time

import numpy as np
import pytest

import lenet_native as ln
from lenet_native.idx import open_idx, read_idx, write_idx

da = pytest.importorskip("dask.array", reason="dask[array] is not installed (extra [dask])")
lnd = pytest.importorskip("lenet_native.dask")

TIMEOUT = 120  # seconds for any one cluster computation: generous on a loaded 2-core VM


class CountingLeNet5(ln.LeNet5):
    """A LeNet5 that counts its predict calls in this process and appends the process id
    to a log file every time it is unpickled (in any process)."""

    calls = 0

    def __setstate__(self, state):
        super().__setstate__(state)
        with open(state["_log"], "a") as f:
            f.write(f"{os.getpid()}\n")

    def predict(self, images, backend="native"):
        type(self).calls += 1
        return super().predict(images, backend)

    def predict_proba(self, images, backend="native"):
        type(self).calls += 1
        return super().predict_proba(images, backend)


def unpickled_in(log):
    """Process ids, one per unpickling, from a CountingLeNet5 log."""
    return [int(line) for line in log.read_text().split()] if log.exists() else []


@pytest.fixture(scope="module")
def model():
    return ln.LeNet5(seed=3, threads=1)


@pytest.fixture(scope="module")
def digits():
    return np.random.default_rng(7).integers(0, 256, (2000, 28, 28), dtype=np.uint8)


# ----------------------------------------------------------------------------- pickling


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_model_pickles_by_its_weights(head, digits):
    m = ln.LeNet5(head=head, seed=1, threads=2)
    m.meta = {"note": "kept"}
    before = m.predict_proba(digits[:64])  # builds the native handle: it must not travel
    blob = pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
    assert 200_000 < len(blob) < 300_000  # 61,706 float32 parameters = 246,824 bytes
    back = pickle.loads(blob)
    assert "_net_handle" not in back.__dict__
    assert (back.head, back.threads, back.meta) == (head, 2, {"note": "kept"})
    assert back._flat.tobytes() == m._flat.tobytes()
    assert back.predict_proba(digits[:64]).tobytes() == before.tobytes()  # bit-exact


# ----------------------------------------------------------------------------- lazy graph


def test_graph_construction_never_calls_the_model(tmp_path, model, digits):
    counting = CountingLeNet5(seed=3, threads=1)
    counting._log = str(tmp_path / "log")
    CountingLeNet5.calls = 0
    x = da.from_array(digits, chunks=(300, 28, 28))
    labels = lnd.predict(counting, x)
    proba = lnd.predict_proba(counting, x)
    assert CountingLeNet5.calls == 0  # no call on dummy data to guess dtype or shape
    assert (labels.dtype, labels.shape, labels.chunks) == (np.int64, (2000,), (x.chunks[0],))
    assert type(labels._meta) is np.ndarray and labels._meta.dtype == np.int64
    assert (proba.dtype, proba.shape) == (np.float32, (2000, 10))
    assert proba._meta.dtype == np.float32
    got = labels.compute(scheduler="sync")
    assert CountingLeNet5.calls == len(x.chunks[0])  # once per chunk, nothing more
    np.testing.assert_array_equal(got, model.predict(digits))
    np.testing.assert_array_equal(proba.compute(scheduler="threads"), model.predict_proba(digits))


@pytest.mark.parametrize("chunks", [(1, 28, 28), (333, 28, 28), (700, 7, 28), (2000, 28, 5)])
def test_any_chunking_same_labels(model, digits, chunks):
    x = da.from_array(digits[:700] if chunks[0] == 1 else digits, chunks=chunks)
    want = model.predict(np.asarray(x))
    y = lnd.predict(model, x)
    assert y.chunks == (x.chunks[0],)  # the image axes merged, N's chunking kept
    np.testing.assert_array_equal(y.compute(scheduler="threads"), want)


def test_preprocessed_float_input_and_threads(model, digits):
    x = ln.preprocess(digits[:500])
    y = lnd.predict_proba(model, da.from_array(x, chunks=(128, 32, 32)), threads=2)
    assert y.chunks == ((128, 128, 128, 116), (10,))
    np.testing.assert_array_equal(y.compute(), model.predict_proba(x))
    assert model.threads == 1  # the travelling copy has the task thread count, not the model


def test_bad_arguments(model, digits):
    with pytest.raises(TypeError, match="uint8"):
        lnd.predict(model, da.zeros((4, 28, 28), dtype=np.float32))
    with pytest.raises(TypeError, match="float"):
        lnd.predict(model, da.zeros((4, 32, 32), dtype=np.int32))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        lnd.predict(model, da.zeros((4, 30, 30), dtype=np.uint8))
    with pytest.raises(TypeError, match="LeNet5"):
        lnd.predict(object(), da.from_array(digits))
    with pytest.raises(ValueError, match="threads"):
        lnd.predict(model, da.from_array(digits), threads=0)


def test_nan_chunk_names_its_images_in_process(model, digits):
    x = ln.preprocess(digits[:100])
    x[57, 3, 4] = np.nan
    y = lnd.predict(model, da.from_array(x, chunks=(25, 32, 32)))
    with pytest.raises(ValueError, match=r"chunk 2 \(images 50\.\.74\).*NaN"):
        y.compute(scheduler="sync")


# ----------------------------------------------------------------------------- IDX files


def test_open_idx_maps_what_read_idx_reads(tmp_path, digits):
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, digits)
    mapped = open_idx(path)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    from lenet_native import datasets
    assert datasets.open_idx is open_idx  # the name issue 17 gives it
    np.testing.assert_array_equal(mapped, read_idx(path))
    wide = np.arange(-5, 7, dtype=np.int32).reshape(3, 4)  # big-endian on disk
    write_idx(tmp_path / "wide", wide)
    np.testing.assert_array_equal(open_idx(tmp_path / "wide"), wide)
    write_idx(tmp_path / "empty", np.zeros((0, 28, 28), np.uint8))
    assert open_idx(tmp_path / "empty").shape == (0, 28, 28)
    x = lnd.open_idx_dask(path, chunks=300)
    assert x.chunks[0] == (300,) * 6 + (200,) and x.dtype == np.uint8
    # the graph holds the path, not the data
    assert len(pickle.dumps(dict(x.__dask_graph__()))) < 10_000
    np.testing.assert_array_equal(x.compute(), digits)
    np.testing.assert_array_equal(lnd.open_idx_dask(tmp_path / "wide", chunks=2).compute(), wide)


def test_open_idx_errors(tmp_path, digits):
    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, digits[:10])
    raw = path.read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="short: truncated: header says 10x28x28 uint8"):
        open_idx(tmp_path / "short")
    (tmp_path / "long").write_bytes(raw + b"\0\0")
    with pytest.raises(ValueError, match="long: 2 trailing bytes"):
        open_idx(tmp_path / "long")
    (tmp_path / "magic").write_bytes(b"\1" + raw[1:])
    with pytest.raises(ValueError, match="bad magic number"):
        open_idx(tmp_path / "magic")
    write_idx(tmp_path / "packed.gz", digits[:10])
    with pytest.raises(ValueError, match="packed.gz: gzip-compressed.*read_idx"):
        open_idx(tmp_path / "packed.gz")
    with pytest.raises(FileNotFoundError):
        open_idx(tmp_path / "absent")
    with pytest.raises(ValueError, match="chunks"):
        lnd.open_idx_dask(path, chunks=0)
    x = lnd.open_idx_dask(path, chunks=5)
    write_idx(path, digits[:12])  # replaced after the graph was built
    with pytest.raises(ValueError, match="changed since it was opened"):
        pickle.loads(pickle.dumps(x)).compute(scheduler="sync")  # as a worker would see it


# ----------------------------------------------------------------------------- a real cluster


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    c = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        c.wait_for_workers(2, timeout=TIMEOUT)
        yield c
    finally:
        c.close()
        cluster.close()


def worker_pids(client):
    return client.run(os.getpid)  # {address: pid}


def test_model_goes_to_each_worker_once(tmp_path, client, model, digits):
    counting = CountingLeNet5(seed=3, threads=1)
    counting._log = str(tmp_path / "log")
    x = da.from_array(digits, chunks=(100, 28, 28))  # 20 chunks
    got = lnd.predict(counting, x).compute(timeout=TIMEOUT)
    np.testing.assert_array_equal(got, model.predict(digits))
    pids = unpickled_in(tmp_path / "log")
    on_workers = [p for p in pids if p in worker_pids(client).values()]
    assert 1 <= len(on_workers) <= 2 and len(set(on_workers)) == len(on_workers)
    # the rest happen here (the copy that carries the thread count, the graph's trip to the
    # in-process scheduler): a constant, not one per chunk
    assert len(pids) - len(on_workers) <= 2 and set(pids) - set(on_workers) == {os.getpid()}


def test_nan_chunk_fails_the_compute_and_no_worker_dies(client, model, digits):
    before = worker_pids(client)
    x = ln.preprocess(digits[:600])
    x[431] = np.inf
    x[432, 0, 0] = np.nan
    y = lnd.predict(model, da.from_array(x, chunks=(100, 32, 32)))
    with pytest.raises(ValueError, match=r"chunk 4 \(images 400\.\.499\).*NaN or infinity"):
        y.compute(timeout=TIMEOUT)
    assert worker_pids(client) == before  # same two processes, none restarted
    ok = lnd.predict(model, da.from_array(x[:400], chunks=(100, 32, 32)))
    np.testing.assert_array_equal(ok.compute(timeout=TIMEOUT), model.predict(x[:400]))


def _slow_copy(block, marks):
    """A slowed-down input: each chunk takes 0.3 s and leaves a mark when done."""
    time.sleep(0.3)
    with open(os.path.join(marks, f"{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    return block


def test_worker_killed_mid_computation(tmp_path, client, model, digits):
    marks = tmp_path / "marks"
    marks.mkdir()
    chunks = 20
    x = da.from_array(digits, chunks=(len(digits) // chunks, 28, 28))
    slow = x.map_blocks(_slow_copy, str(marks), dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))
    future = client.compute(lnd.predict(model, slow))
    deadline = time.monotonic() + TIMEOUT
    while len(os.listdir(marks)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert 4 <= len(os.listdir(marks)) and not future.done()
    victim = sorted(worker_pids(client).values())[0]
    os.kill(victim, signal.SIGKILL)
    assert len(os.listdir(marks)) < chunks  # the kill landed mid-way
    got = future.result(timeout=TIMEOUT)
    assert got.shape == (len(digits),)  # nothing lost ...
    np.testing.assert_array_equal(got, model.predict(digits))  # ... nor duplicated or mixed
    client.wait_for_workers(2, timeout=TIMEOUT)  # the nanny restarted the killed worker
    assert victim not in worker_pids(client).values()


# ----------------------------------------------------------------------------- the command


def test_cli_predict_dask_writes_the_labels(tmp_path, client, digits, capsys):
    from lenet_native.cli import main
    from lenet_native.pretrained import load_pretrained

    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, digits)
    out = tmp_path / "labels.npy"
    out.write_bytes(b"old")
    address = client.scheduler.address  # a running scheduler, as on a real cluster
    assert main(["predict", "--dask", address, str(path), "--out", str(out),
                 "--chunk-size", "300"]) == 0
    assert "2000 labels" in capsys.readouterr().out
    got = np.load(out)
    assert got.dtype == np.int64 and got.shape == (2000,)
    np.testing.assert_array_equal(got, load_pretrained("softmax", threads=1).predict(digits))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images-idx3-ubyte", "labels.npy"]

    bad = tmp_path / "float-idx"
    write_idx(bad, ln.preprocess(digits[:10]) * np.float32(np.nan))
    assert main(["predict", "--dask", "local", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "chunk 0 (images 0..9)" in err and "NaN" in err
    np.testing.assert_array_equal(np.load(out), got)  # the old labels left as they were
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float-idx", "images-idx3-ubyte",
                                                          "labels.npy"]


def test_cli_predict_dask_usage_errors(tmp_path, digits, capsys):
    from lenet_native.cli import main

    path = tmp_path / "images-idx3-ubyte"
    write_idx(path, digits[:10])
    write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(10, np.uint8))
    cases = [
        (["predict", "--dask", "local", str(path)], "--out"),
        (["predict", "--dask", "local", str(path), str(path), "--out", "x.npy"], "one IDX file"),
        (["predict", str(path), "--out", "x.npy"], "--dask"),
        (["predict", "--dask", "local", str(path), "--out", str(tmp_path / "no" / "x.npy")],
         "does not exist"),
        (["predict", "--dask", "local", str(tmp_path / "labels-idx1-ubyte"), "--out", "x.npy"],
         "labels-idx1-ubyte: lenet_native.dask.predict: images must be"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
