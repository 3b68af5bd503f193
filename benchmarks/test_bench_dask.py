"""1,000,000 digits through a LocalCluster of two single-threaded worker processes against
in-process predict with two threads, in the same run, rounds alternating (docs/dask.md).

    pytest benchmarks/test_bench_dask.py -s --benchmark-group-by=group

Both read the same memory-mapped IDX file (synthetic uint8 digits, 784 MB, written before
timing; the page cache holds it after the warm-up), in chunks of CHUNK images: the
in-process loop calls model.predict on each slice, dask runs one task per chunk
(lenet_native.dask.predict over open_idx_dask). The cluster starts, and its workers import
lenet_native, outside the timed calls. Rounds: $LENET_DASK_BENCH_ROUNDS (default 2).

Where the time goes comes from dask's task stream: each task's compute time on its worker
(the file slice read plus the C forward: getter and predict are fused into one task), the
transfers (the model, once per worker), and what is left of two workers x the wall time
(scheduling, messages, idle workers at the start and the end). A second benchmark repeats
the dask run on 200,000 digits at three chunk sizes.
"""
import os
import time

import numpy as np
import pytest

import lenet_native as ln
from lenet_native.bench import cpu_name
from lenet_native.idx import open_idx, write_idx

lnd = pytest.importorskip("lenet_native.dask")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

N = 1_000_000
CHUNK = 10_000
ROUNDS = int(os.environ.get("LENET_DASK_BENCH_ROUNDS", "2"))



@pytest.fixture(scope="module")
def images_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("dask_bench") / "digits-idx3-ubyte"
    digits = np.empty((N, 28, 28), np.uint8)
    for lo in range(0, N, 100_000):  # a million random digits, built a slice at a time
        digits[lo:lo + 100_000] = rng.integers(0, 256, (100_000, 28, 28), dtype=np.uint8)
    write_idx(path, digits)
    return path


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    c = distributed.Client(cluster)
    c.wait_for_workers(2, timeout=120)
    yield c
    c.close()
    cluster.close()


def in_process(model, mapped, chunk):
    out = np.empty(mapped.shape[0], np.int64)
    for lo in range(0, mapped.shape[0], chunk):
        out[lo:lo + chunk] = model.predict(mapped[lo:lo + chunk])
    return out


def on_dask(client, model, path, chunk, n=None):
    """(labels, wall seconds, breakdown) of one dask computation."""
    images = lnd.open_idx_dask(path, chunks=chunk)
    if n is not None:
        images = images[:n]
    labels = lnd.predict(model, images, threads=1)
    with distributed.get_task_stream(client) as ts:
        t0 = time.time()
        got = labels.compute()
        wall = time.time() - t0
    spans = {"compute": 0.0, "transfer": 0.0, "deserialize": 0.0}
    first = last = None
    for task in ts.data:
        for ss in task["startstops"]:
            if ss["action"] in spans:
                spans[ss["action"]] += ss["stop"] - ss["start"]
            first = ss["start"] if first is None else min(first, ss["start"])
            last = ss["stop"] if last is None else max(last, ss["stop"])
    spans["tasks"] = len(ts.data)
    spans["before_first_task"] = first - t0
    spans["after_last_task"] = t0 + wall - last
    spans["unaccounted"] = 2 * wall - spans["compute"] - spans["transfer"] - spans["deserialize"]
    return got, wall, spans


def test_dask_vs_in_process_1m(benchmark, images_file, client):
    benchmark.group = "1,000,000 digits: LocalCluster 2x1 vs in-process 2 threads, interleaved"
    model = ln.LeNet5(seed=0, threads=2)
    mapped = open_idx(images_file)
    on_dask(client, model, images_file, CHUNK, n=4 * CHUNK)  # warm-up: imports, model on workers
    want = in_process(model, mapped, CHUNK)  # warm-up: page cache
    times = {"in_process": [], "dask": []}
    spans = []

    def pair():
        t0 = time.perf_counter()
        got = in_process(model, mapped, CHUNK)
        times["in_process"].append(time.perf_counter() - t0)
        np.testing.assert_array_equal(got, want)
        got, wall, s = on_dask(client, model, images_file, CHUNK)
        times["dask"].append(wall)
        spans.append(s)
        np.testing.assert_array_equal(got, want)

    benchmark.pedantic(pair, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    s = min(spans, key=lambda d: d["compute"])
    info = {"cpu": cpu_name(), "images": N, "chunk": CHUNK, "rounds": ROUNDS,
            "in_process_images_per_s": N / med["in_process"],
            "dask_images_per_s": N / med["dask"],
            "dask_over_in_process_time": med["dask"] / med["in_process"],
            "dask_task_compute_s": s["compute"], "dask_transfer_s": s["transfer"],
            "dask_deserialize_s": s["deserialize"], "dask_tasks": s["tasks"],
            "dask_before_first_task_s": s["before_first_task"],
            "dask_after_last_task_s": s["after_last_task"],
            "dask_unaccounted_worker_s": s["unaccounted"]}
    benchmark.extra_info.update(info)
    print(f"\n{cpu_name()}: {N:,} digits, chunks of {CHUNK:,}, {ROUNDS} round(s), medians:\n"
          f"  in-process predict, 2 threads:         {med['in_process']:6.1f} s  "
          f"{info['in_process_images_per_s']:9,.0f} images/s\n"
          f"  LocalCluster, 2 workers x 1 thread:    {med['dask']:6.1f} s  "
          f"{info['dask_images_per_s']:9,.0f} images/s\n"
          f"  dask / in-process time: {info['dask_over_in_process_time']:.2f}x\n"
          f"  dask run with the least compute: {s['tasks']} tasks, compute {s['compute']:.1f} "
          f"worker-s ({1e3 * s['compute'] / s['tasks']:.0f} ms per task), transfers "
          f"{s['transfer']:.3f} s, deserialisation {s['deserialize']:.3f} s, "
          f"{s['before_first_task']:.2f} s before the first task, {s['after_last_task']:.2f} s "
          f"after the last, worker time not in tasks {s['unaccounted']:.1f} worker-s")


@pytest.mark.parametrize("chunk", [1_000, 10_000, 100_000])
def test_dask_chunk_size(benchmark, images_file, client, chunk):
    n = 200_000
    benchmark.group = f"{n:,} digits on a LocalCluster 2x1: chunk size"
    model = ln.LeNet5(seed=0, threads=1)
    result = {}

    def run():
        result["labels"], result["wall"], result["spans"] = on_dask(client, model, images_file,
                                                                    chunk, n=n)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    s = result["spans"]
    benchmark.extra_info.update({"cpu": cpu_name(), "images": n, "chunk": chunk, **s,
                                 "images_per_s": n / result["wall"]})
    print(f"\nchunk {chunk:>7,}: {s['tasks']:4d} tasks, {result['wall']:.1f} s, "
          f"{n / result['wall']:,.0f} images/s, compute {s['compute']:.1f} worker-s, not in "
          f"tasks {s['unaccounted']:.1f} worker-s ({1e3 * s['unaccounted'] / s['tasks']:.1f} ms "
          f"per task)")
    np.testing.assert_array_equal(result["labels"], model.predict(open_idx(images_file)[:n]))
