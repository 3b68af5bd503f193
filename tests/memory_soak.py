#!/usr/bin/env python3
"""Memory soak test of lenet_native (a script, not collected by pytest).

    python tests/memory_soak.py                      # the full soak: 100,000 calls, 100,000-image batch
    python tests/memory_soak.py --calls 5000         # what tests/test_robustness.py runs

Phase 1 makes many small calls on one model -- single-image forward, and every so often
predict, predict_proba, activations, loss_and_grad, hessian_diag and calls that raise --
and prints the resident set size (RSS) at intervals. After a warm-up the RSS must stay
flat: growing more than --margin-mb means something leaks per call.

Phase 2 pushes one batch of --batch images through the C forward pass (lenet_native._core,
which streams the batch image by image through per-thread buffers) and measures the peak
RSS beyond the input and output arrays: it must stay below --batch-margin-mb whatever the
batch size. It then does the same through LeNet5.forward (with its input validation) on
--model-batch images and prints the extra it costs.

Exit status: 0 if every check passed, 1 otherwise. RSS comes from /proc/self/statm and the
peak from /proc/self/status (VmHWM, reset through /proc/self/clear_refs), so Linux only;
elsewhere the script falls back to resource.getrusage and skips the peak measurements.
Meaningless under AddressSanitizer (its allocator keeps freed memory in quarantine).
"""
import argparse
import gc
import os
import sys
import time

import numpy as np

MB = 1 << 20


def rss_bytes():
    """Current resident set size."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        # ru_maxrss is a peak, not the current size: good enough to see steady growth
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def reset_peak():
    """Reset the peak RSS (VmHWM) to the current RSS; False if the OS cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def under_sanitizer():
    try:
        with open("/proc/self/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def soak_calls(calls, threads, margin_mb, out=print):
    import lenet_native as ln

    rng = np.random.default_rng(0)
    model = ln.LeNet5(head="softmax", seed=0, threads=threads)
    rbf = ln.LeNet5(head="rbf", seed=0, threads=threads)
    digit = rng.integers(0, 256, (1, 28, 28), dtype=np.uint8)
    x1 = ln.preprocess(digit)
    x4 = ln.preprocess(rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    label = np.array([3])
    bad = np.full((1, 32, 32), np.nan, np.float32)

    def one(i):
        model.forward(x1)
        if i % 10 == 0:
            model.predict(digit)
            rbf.forward(x1)
        if i % 25 == 0:
            model.predict_proba(x4)
            model.loss_and_grad(x1, label)
        if i % 100 == 0:
            model.activations(x1)
            rbf.loss_and_grad(x4, [1, 2, 3, 4])
        if i % 250 == 0:
            model.hessian_diag(x1, label)
            for call in (lambda: model.forward(bad), lambda: model.loss_and_grad(x1, [10]),
                         lambda: model.forward(np.zeros((1, 28, 28), np.float32))):
                try:
                    call()
                except ValueError:
                    pass
                else:
                    raise AssertionError("a bad call did not raise")

    warmup = max(500, calls // 20)
    for i in range(warmup):
        one(i)
    gc.collect()
    base = rss_bytes()
    out(f"[calls] warm-up of {warmup} calls done; RSS {base / MB:.1f} MB")
    step = max(1, calls // 10)
    t0 = time.perf_counter()
    worst = 0
    for i in range(calls):
        one(i)
        if (i + 1) % step == 0 or i + 1 == calls:
            gc.collect()
            now = rss_bytes()
            worst = max(worst, now - base)
            out(f"[calls] {i + 1:>7} calls  RSS {now / MB:8.1f} MB  ({(now - base) / MB:+.2f} MB)"
                f"  {time.perf_counter() - t0:6.1f} s")
    ok = worst <= margin_mb * MB
    out(f"[calls] growth after warm-up: {worst / MB:+.2f} MB (limit {margin_mb} MB): "
        f"{'ok' if ok else 'FAIL: memory grows with the number of calls'}")
    return ok


def soak_batch(batch, model_batch, threads, margin_mb, out=print):
    import lenet_native as ln
    from lenet_native import _core
    from lenet_native.layout import C3_IN, C3_OUT

    if not reset_peak():
        out("[batch] skipped: the peak RSS cannot be measured here (needs Linux /proc)")
        return True
    model = ln.LeNet5(head="softmax", seed=0, threads=threads)
    pattern = ln.preprocess(np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8))
    x = np.empty((batch, 32, 32), np.float32)
    for k in range(7):  # touch every page without a batch-sized temporary
        x[k::7] = pattern[k]
    ok = True

    # the C forward pass alone: what the kernels allocate for a batch of any size
    gc.collect()
    base = rss_bytes()
    reset_peak()
    t0 = time.perf_counter()
    y = _core.forward(model.params, C3_OUT, C3_IN, model.head, x, threads)
    seconds = time.perf_counter() - t0
    extra = peak_bytes() - base - y.nbytes
    good = extra <= margin_mb * MB
    ok &= good
    out(f"[batch] _core.forward of {batch:,} images ({x.nbytes / MB:.0f} MB in, {y.nbytes / MB:.1f} MB"
        f" out, {threads} threads, {seconds:.1f} s): peak extra {extra / MB:.1f} MB "
        f"(limit {margin_mb} MB): {'ok' if good else 'FAIL'}")
    expect = model.forward(x[:7])
    if not np.array_equal(y[:7], expect) or not np.array_equal(y[7:14], expect):
        out("[batch] FAIL: the batch results differ from the small-batch results")
        ok = False
    del y

    # the whole model call, input validation included
    if model_batch:
        xs = x[:model_batch]
        gc.collect()
        base = rss_bytes()
        reset_peak()
        y = model.forward(xs)
        extra = peak_bytes() - base - y.nbytes
        # The finiteness check of the input currently makes a bool temporary (one byte per
        # input value); anything beyond that and the margin is a regression.
        known = xs.size
        good = extra <= margin_mb * MB + known
        ok &= good
        note = "" if extra <= margin_mb * MB else f" (includes the {known / MB:.0f} MB bool temporary of the finiteness check)"
        out(f"[batch] LeNet5.forward of {model_batch:,} images: peak extra {extra / MB:.1f} MB{note}: "
            f"{'ok' if good else 'FAIL'}")
    return ok


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=100_000, help="number of small calls (phase 1)")
    p.add_argument("--batch", type=int, default=100_000, help="images in the big batch (phase 2); 0 skips")
    p.add_argument("--model-batch", type=int, default=20_000,
                   help="images pushed through LeNet5.forward in phase 2; 0 skips")
    p.add_argument("--threads", type=int, default=2, help="kernel threads for the batch")
    p.add_argument("--margin-mb", type=float, default=8.0, help="allowed RSS growth in phase 1")
    p.add_argument("--batch-margin-mb", type=float, default=32.0, help="allowed peak extra in phase 2")
    args = p.parse_args(argv)
    if under_sanitizer():
        print("warning: running under AddressSanitizer; RSS figures are meaningless")
    ok = True
    if args.calls:
        ok &= soak_calls(args.calls, 1, args.margin_mb)
    if args.batch:
        ok &= soak_batch(args.batch, min(args.model_batch, args.batch), args.threads, args.batch_margin_mb)
    print("memory soak:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
