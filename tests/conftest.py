"""Helpers and fixtures shared by the tests. The real MNIST folder (fixture ``mnist_path``,
option ``--data``) is found by the conftest.py at the root of the checkout."""
import numpy as np
import pytest


def big_random_state(model, rng, scale=3.0):
    """Weights larger than the paper's initialisation (x scale) so every layer matters:
    nothing is negligible and tanh is exercised beyond its linear part."""
    state = model.state_dict()
    from lenet_native.layout import C3_TABLE

    for k, v in state.items():
        if k in ("c3.table", "out.prototypes"):
            continue
        bound = np.abs(v).max() if v.size else 1.0
        state[k] = (rng.uniform(-1, 1, v.shape) * bound * scale).astype(np.float32)
    state["c3.weight"] *= C3_TABLE[:, :, None, None]
    return state


@pytest.fixture(scope="session")
def mnist_test_sample():
    """The first 500 MNIST test digits (uint8) and labels, shipped with the package: genuine
    MNIST in every run, no download (test_pretrained checks they are the test set's start)."""
    from lenet_native.demo import load_sample

    return load_sample()
