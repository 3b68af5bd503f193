from pathlib import Path

import numpy as np
import pytest

MNIST_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def big_random_state(model, rng, scale=3.0):
    """Weights larger than the paper's initialisation (x scale) so every layer matters:
    nothing is negligible and tanh is exercised beyond its linear part."""
    state = model.state_dict()
    from lenet_native.model import C3_TABLE

    for k, v in state.items():
        if k in ("c3.table", "out.prototypes"):
            continue
        bound = np.abs(v).max() if v.size else 1.0
        state[k] = (rng.uniform(-1, 1, v.shape) * bound * scale).astype(np.float32)
    state["c3.weight"] *= C3_TABLE[:, :, None, None]
    return state


@pytest.fixture(scope="session")
def mnist_test_sample():
    """200 genuine MNIST test digits when ../shared/data/mnist is present, else None."""
    if not MNIST_DIR.is_dir():
        return None
    from lenet_native.datasets import load_mnist

    images, labels = load_mnist(MNIST_DIR, split="test")
    return images[:200], labels[:200]
