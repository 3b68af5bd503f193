"""The paper's random distortions (translation, scaling, squeezing, horizontal shear) of a
batch of 1,024 digits: the C warp (csrc/warp.c, what distort() uses) against its NumPy
form (same bits), same maps. The random draws are made outside the timed call.

    pytest benchmarks/test_bench_distort.py --benchmark-group-by=group
"""
import numpy as np
import pytest

import lenet_native as ln
from lenet_native import distort as D

N = 1024


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = ln.preprocess(rng.integers(0, 256, (N, 28, 28), dtype=np.uint8))
    A, t = D.random_affine(N, rng)
    det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
    Ai = np.stack([np.stack([A[:, 1, 1] / det, -A[:, 0, 1] / det], 1),
                   np.stack([-A[:, 1, 0] / det, A[:, 0, 0] / det], 1)], 1)
    off = -(Ai @ (t + [15.5, 15.5])[:, :, None])[:, :, 0] + [16.5, 16.5]
    return x, Ai, off


@pytest.mark.parametrize("impl", ["reference", "native"])
def test_distort_batch(benchmark, batch, impl):
    benchmark.group = f"distort {N} images"
    benchmark.extra_info["images"] = N
    x, Ai, off = batch
    fn = D._warp_rows_then_columns if impl == "native" else D._warp_rows_then_columns_numpy
    benchmark(fn, x, Ai, off, D.BACKGROUND, np.float32, False)
