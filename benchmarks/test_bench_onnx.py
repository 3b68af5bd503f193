"""The two ONNX forms of C3 in ONNX Runtime (lenet_native.interop.onnx_model): a dense Conv
with Table I's zeros in its kernel against three grouped Convs over gathered S2 maps joined
by a Concat. The calls alternate (one of each per round), so load on a shared machine hits
both alike; extra_info holds each median and the grouped / dense ratio (printed with -s).
docs/interop.md records the figures and why the dense form is the one exported.

    pytest benchmarks/test_bench_onnx.py -s --benchmark-group-by=group
"""
import time

import numpy as np
import pytest

from lenet_native import interop

BATCHES = (1, 64, 1024)


@pytest.mark.parametrize("batch", BATCHES)
def test_onnx_c3_dense_against_grouped(benchmark, net, batch):
    ort = pytest.importorskip("onnxruntime")
    benchmark.group = f"onnxruntime C3 form, batch {batch}, 1 thread, interleaved"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sessions = {form: ort.InferenceSession(interop.onnx_model(net.model, c3=form).SerializeToString(),
                                           opts, providers=["CPUExecutionProvider"])
                for form in interop.C3_FORMS}
    x = np.ascontiguousarray(net.x[:batch, None])
    want = net.model.forward(net.x[:batch])
    times = {form: [] for form in sessions}
    for sess in sessions.values():
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)

    def pair():
        for form, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, {"x": x})
            times[form].append(time.perf_counter() - t)

    benchmark.pedantic(pair, rounds=max(5, 2000 // batch), iterations=1, warmup_rounds=2)
    med = {form: float(np.median(v)) for form, v in times.items()}
    benchmark.extra_info.update({f"{form}_us_per_image": med[form] / batch * 1e6 for form in med})
    benchmark.extra_info["grouped_over_dense"] = med["grouped"] / med["dense"]
    print(f"\nbatch {batch}: dense {med['dense'] / batch * 1e6:.1f} us/image, grouped "
          f"{med['grouped'] / batch * 1e6:.1f} us/image, grouped / dense {med['grouped'] / med['dense']:.2f}")
