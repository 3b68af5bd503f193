"""Helpers and fixtures shared by the tests. The real MNIST folder (fixture ``mnist_path``,
option ``--data``) is found by the conftest.py at the root of the checkout."""
import numpy as np
import pytest


def synthetic_digits(n, seed):
    """``n`` uint8 (28, 28) digits that a network can learn: faint noise and, for label c,
    a 6x6 block of ink at a place that depends on c. -> (images, labels uint8)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 3 + 10 * (c // 4):9 + 10 * (c // 4), 2 + 6 * (c % 4):8 + 6 * (c % 4)] = 255
    return images, labels


def write_mnist_folder(folder, splits):
    """Write MNIST's four IDX files into ``folder``: ``splits`` maps "train" / "test" to
    (images, labels). -> folder."""
    from lenet_native.datasets import MNIST_FILES
    from lenet_native.idx import write_idx

    for split, (images, labels) in splits.items():
        image_name, label_name = MNIST_FILES[split]
        write_idx(folder / image_name, images)
        write_idx(folder / label_name, labels)
    return folder


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
