"""Forward-pass throughput: lenet_native's C kernels against the NumPy reference and, when
they are installed (optional extras ``torch``, ``onnxruntime`` + ``onnx``), PyTorch and ONNX
Runtime -- all on the SAME weights in the same run, after checking that their outputs agree.

    >>> from lenet_native.bench import run_bench
    >>> print(run_bench(batches=(1, 64, 1024)))

PyTorch runs the equivalent ``nn.Module`` of :func:`lenet_native.interop.to_torch`; ONNX
Runtime runs the graph of :func:`lenet_native.interop.onnx_model` (the ``onnx`` helper API,
no PyTorch needed).
The command line is ``lenet-native bench`` (see add_bench_arguments / bench_main).
"""
from __future__ import annotations

import copy
import gc
import json as _json
import os
import platform
import time

import numpy as np

from . import _core, fileio, interop, reference
from .checks import preprocess
from .commands.options import add_head, add_precision, add_threads
from .model import LeNet5

__all__ = ["ENGINES", "cpu_name", "time_interleaved", "run_bench", "measure", "measure_scaling",
           "add_bench_arguments", "bench_main"]

ENGINES = ("native", "reference", "torch", "onnxruntime")
DEFAULT_BATCHES = (1, 64, 1024, 10000)


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows: every
    figure is printed with it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# ----------------------------------------------------------------------------- engines

def _engine(name, model, threads):
    """(callable x (N, 32, 32) float32 -> (N, 10) float32, description) for one engine, or
    the reason it is skipped. Engines are made one at a time, just before they are timed:
    another runtime's idle thread pool (ONNX Runtime's threads spin after a run) would
    otherwise take a core from the engine being timed on a 2-core machine."""
    state = model.state_dict()
    head = model.head
    if name == "native":
        return (lambda x: model.forward(x), f"C kernels, {_core.default_isa()}, {threads} thread(s)")
    if name == "reference":
        return (lambda x: reference.forward(state, x, head).astype(np.float32, copy=False),
                "NumPy reference (float32)")
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    if name == "torch":
        if torch is None:
            return 'skipped: PyTorch is not installed (pip install "lenet_native[torch]")'
        module = interop.to_torch(model).eval()

        def run_torch(x):
            with torch.inference_mode():
                return module(torch.from_numpy(x).view(-1, 1, 32, 32)).numpy()
        return (run_torch, f"PyTorch {torch.__version__}, {threads} thread(s)")
    # onnxruntime
    try:
        import onnxruntime as ort
    except ImportError:
        return 'skipped: ONNX Runtime is not installed (pip install "lenet_native[onnx]")'
    try:
        blob = interop.onnx_model(model).SerializeToString()
    except ImportError:
        return 'skipped: building the ONNX graph needs the onnx package (pip install "lenet_native[onnx]")'
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])

    def run_ort(x):
        return sess.run([interop.OUTPUT_NAME], {interop.INPUT_NAME: x.reshape(-1, 1, 32, 32)})[0]
    return (run_ort, f"ONNX Runtime {ort.__version__} (lenet_native.interop's graph), "
                     f"{threads} thread(s)")


# ----------------------------------------------------------------------------- measuring

def time_interleaved(fns, x, min_time, max_reps):
    """-> ([median seconds per call of each of fns on x], rounds): the calls take turns (one
    of each per round), so that load changes on a shared machine hit every fn alike."""
    for fn in fns:
        fn(x[: min(len(x), 64)])
    times, start = [[] for _ in fns], time.perf_counter()
    while len(times[0]) < max_reps and (not times[0] or time.perf_counter() - start < min_time * len(fns)):
        for fn, ts in zip(fns, times):
            t = time.perf_counter()
            fn(x)
            ts.append(time.perf_counter() - t)
    return [float(np.median(ts)) for ts in times], len(times[0])


def measure_scaling(batch=1024, threads=None, head="softmax", seed=0, min_time=0.3, max_reps=200):
    """Native forward at `batch` with 1 thread and with `threads` (default: the model's
    default), calls interleaved: a dict batch, threads, one_thread_images_per_s,
    images_per_s, speedup (ratio of the medians), rounds."""
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer; got {batch!r}")
    model = LeNet5(head=head, seed=seed, threads=threads)
    x = preprocess(np.random.default_rng(seed).integers(0, 256, (int(batch), 28, 28), dtype=np.uint8))
    return _scaling(model, x, min_time, max_reps)


def _scaling(model, x, min_time, max_reps):
    """measure_scaling's figures for `model` (its threads) on the batch x."""
    one = copy.copy(model)      # the same parameter array, one thread
    one.threads = 1
    (t1, tn), rounds = time_interleaved([one.forward, model.forward], x, min_time, max_reps)
    n = len(x)
    return {"batch": n, "threads": model.threads, "one_thread_images_per_s": n / t1,
            "images_per_s": n / tn, "speedup": t1 / tn, "rounds": rounds}


def measure(batches=DEFAULT_BATCHES, threads=None, engines=ENGINES, head="softmax", seed=0,
            min_time=0.3, max_reps=200):
    """The measurements behind run_bench: (rows, notes). Each row is a dict: engine, batch,
    images_per_s, us_per_image, reps (median over reps calls)."""
    rows, notes, _, _ = _measure(batches, threads, engines, head, seed, min_time, max_reps)
    return rows, notes


def _measure(batches, threads, engines, head, seed, min_time, max_reps=200, scaling=False,
             precision="fp32"):
    """measure()'s (rows, notes), then with scaling=True the native thread scaling
    (measure_scaling) at the largest batch up to 1024, taken right after native's timings,
    before any other engine has run (None with one thread or without native), and the
    thread count used."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise ValueError(f"unknown engine {unknown[0]!r}; choose from {', '.join(ENGINES)}")
    batches = [int(b) for b in batches]
    if not batches or min(batches) < 1:
        raise ValueError("batches must be positive integers")
    model = LeNet5(head=head, seed=seed, threads=threads)
    threads = model.threads
    rng = np.random.default_rng(seed)
    x = preprocess(rng.integers(0, 256, (max(batches), 28, 28), dtype=np.uint8))
    notes, rows, scaled = [], [], None
    scaling_batch = max([b for b in batches if b <= 1024] or [min(batches)]) if scaling else None
    # the same weights everywhere: every engine is checked against the native output first
    check = x[:16]
    want = model.forward(check)
    scale = max(1.0, float(np.abs(want).max()))
    # one engine at a time, native first; each given a moment for the previous one's
    # spinning threads to go to sleep
    for name in [e for e in ENGINES if e in engines]:
        entry = _engine(name, model, threads)
        if isinstance(entry, str):
            notes.append(f"{name}: {entry}")
            continue
        fn, desc = entry
        got = np.asarray(fn(check), np.float32)
        err = float(np.abs(got - want).max())
        if got.shape != want.shape or not err <= 1e-4 * scale:
            notes.append(f"{name}: skipped: its outputs disagree with native (max difference {err:.3g})")
            continue
        notes.append(f"{name}: {desc}; outputs agree with native (max difference {err:.2g})")
        if name == "torch" and omp_wait_policy().strip().upper() == "PASSIVE":
            notes.append(PASSIVE_TORCH_NOTE)
        time.sleep(0.2)
        for b in batches:
            (sec,), reps = time_interleaved([fn], x[:b], min_time,
                                             max_reps if name != "reference" or b < 5000 else 3)
            rows.append({"engine": name, "batch": b, "images_per_s": b / sec, "us_per_image": sec / b * 1e6,
                         "reps": reps})
        if name == "native" and scaling_batch and threads > 1:
            scaled = _scaling(model, x[:scaling_batch], min_time, max_reps)
        del fn, entry
        gc.collect()   # an ONNX Runtime session joins its threads when it goes
    if precision == "int8":
        rows += _int8_rows(model, x, batches, notes, min_time, max_reps)
    order = ENGINES + ("native-int8",)
    rows.sort(key=lambda r: (r["batch"], order.index(r["engine"])))
    return rows, notes, scaled, threads


def _int8_rows(model, x, batches, notes, min_time, max_reps):
    """Rows of engine "native-int8" (lenet_native.quantize), each batch timed interleaved
    with fp32 native, the ratio in the notes."""
    from .quantize import quantize
    q = quantize(model)
    agree = float((q.forward(x[:256]).argmax(1) == model.forward(x[:256]).argmax(1)).mean())
    notes.append(f"native-int8: C kernels, int8 {q.isa}, {q.threads} thread(s); the same class "
                 f"as fp32 native on {100 * agree:.1f}% of 256 inputs")
    rows = []
    for b in batches:
        (t32, t8), reps = time_interleaved([model.forward, q.forward], x[:b], min_time, max_reps)
        rows.append({"engine": "native-int8", "batch": b, "images_per_s": b / t8,
                     "us_per_image": t8 / b * 1e6, "reps": reps})
        notes.append(f"int8 / fp32 native at batch {b}: {t32 / t8:.2f}x (calls interleaved, "
                     f"medians of {reps} rounds)")
    return rows


PASSIVE_TORCH_NOTE = ("torch: OMP_WAIT_POLICY=PASSIVE holds for PyTorch's threads too (one "
                      "libgomp per process) and lowers its figures; unset it to compare like "
                      "with like")


def omp_wait_policy() -> str:
    """The environment's OMP_WAIT_POLICY, or "default" (libgomp: spin a while, then sleep).
    libgomp reads it once, when it loads; native and PyTorch share that one libgomp."""
    return os.environ.get("OMP_WAIT_POLICY") or "default"


def _table(rows, notes, threads):
    lines = [f"LeNet-5 forward, {cpu_name()}, {platform.machine()} ({os.cpu_count()} CPUs), threads={threads}, "
             f"isa={_core.default_isa()}, OMP_WAIT_POLICY={omp_wait_policy()}"]
    lines += ["  " + n for n in notes]
    lines.append(f"{'engine':<12}{'batch':>8}{'images/s':>14}{'us/image':>12}{'vs native':>11}")
    native = {r["batch"]: r["images_per_s"] for r in rows if r["engine"] == "native"}
    for r in rows:
        ratio = native.get(r["batch"])
        rel = f"{r['images_per_s'] / ratio:.3g}x" if ratio else "-"
        lines.append(f"{r['engine']:<12}{r['batch']:>8}{r['images_per_s']:>14,.0f}{r['us_per_image']:>12.2f}{rel:>11}")
    return "\n".join(lines)


def _chart(rows, path, threads):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        pts = [(r["batch"], r["images_per_s"]) for r in rows if r["engine"] == engine]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=engine)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (images)")
    ax.set_ylabel("images / s")
    ax.set_title(f"LeNet-5 forward throughput ({threads} thread(s))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    # the format from the name, as savefig(path) would pick it (a file object has no name)
    fmt = os.path.splitext(str(path))[1][1:].lower() or None
    try:
        fileio.atomic_write(path, lambda f: fig.savefig(f, dpi=120, format=fmt))
    finally:
        plt.close(fig)
    return f"chart written to {path}"


def run_bench(batches=DEFAULT_BATCHES, threads=None, json=False, chart=None, engines=ENGINES,
              head="softmax", seed=0, min_time=0.3, precision="fp32"):
    """Measure every engine at every batch size; return a table (or, with json=True, a JSON
    document) of images/s and us/image. chart: a PNG path for throughput vs batch size
    (needs matplotlib). Engines that are not installed are skipped, and the output says so.
    precision="int8" adds the int8 model (engine "native-int8"), timed interleaved with fp32
    native."""
    rows, notes, scaling, threads = _measure(batches, threads, engines, head, seed, min_time,
                                             scaling=True, precision=precision)
    if scaling is not None:
        # the thread-scaling question, asked interleaved
        notes.append(f"native scaling at batch {scaling['batch']}: {threads} threads "
                     f"{scaling['images_per_s']:,.0f} images/s, 1 thread "
                     f"{scaling['one_thread_images_per_s']:,.0f} images/s: {scaling['speedup']:.2f}x "
                     f"(calls interleaved, medians of {scaling['rounds']} rounds)")
    if chart:
        notes.append(_chart(rows, chart, threads))
    if json:
        return _json.dumps({"threads": threads, "isa": _core.default_isa(), "head": head,
                            "omp_wait_policy": omp_wait_policy(),
                            "notes": notes, "results": rows, "scaling": scaling}, indent=2)
    return _table(rows, notes, threads)


# ----------------------------------------------------------------------------- command line

def add_bench_arguments(parser):
    """Options of `lenet-native bench` on an argparse parser."""
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)),
                        help="comma-separated batch sizes (default: %(default)s)")
    add_threads(parser, help="threads for every engine (default: $LENET_NATIVE_THREADS or the "
                             "CPU count)")
    parser.add_argument("--engines", default=",".join(ENGINES),
                        help="comma-separated, from: " + ", ".join(ENGINES) + " (default: all; "
                             "torch and onnxruntime are skipped when not installed)")
    add_head(parser)
    add_precision(parser, help="int8: also time the int8 model (lenet_native.quantize), "
                               "interleaved with fp32 native")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--chart", metavar="PNG", default=None,
                        help="write a chart of throughput vs batch size (needs matplotlib)")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds of timed calls per engine and batch (median; default %(default)s)")
    return parser


def bench_main(args):
    """Run `lenet-native bench` with the parsed arguments; print the result; exit status 0."""
    batches = []
    for b in str(args.batches).split(","):
        if b.strip():
            try:
                batches.append(int(b))
            except ValueError:
                raise ValueError(f"--batches: {b.strip()!r} is not an integer "
                                 f"(give comma-separated batch sizes, e.g. 1,64,1024)") from None
    engines = [e.strip() for e in str(args.engines).split(",") if e.strip()]
    print(run_bench(batches=batches, threads=args.threads, json=args.json, chart=args.chart,
                    engines=engines, head=args.head, min_time=args.min_time,
                    precision=args.precision))
    return 0


if __name__ == "__main__":  # python -m lenet_native.bench
    import argparse
    raise SystemExit(bench_main(add_bench_arguments(argparse.ArgumentParser(prog="lenet_native.bench")).parse_args()))
