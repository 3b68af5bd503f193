"""Shared data for the benchmarks (built outside the timed calls).

libgomp's default wait policy (spin, then sleep) makes a thread that is spinning on a busy,
shared machine miss its turn for whole scheduler slices; benchmarks therefore default to
OMP_WAIT_POLICY=PASSIVE (set before lenet_native loads libgomp). Export it yourself to
compare.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import lenet_native as ln  # noqa: E402
from lenet_native import _core  # noqa: E402
from lenet_native.model import _C3_IN, _C3_OUT  # noqa: E402

IMPLS = ["reference", "native"]
ISAS = _core.available_isas()


class Net:
    """One random network (paper initialisation) and data for every benchmark."""

    def __init__(self, head="softmax", seed=0):
        self.model = ln.LeNet5(head=head, seed=seed, threads=1)
        self.state = self.model.state_dict()
        self.flat = self.model._flat
        self.head = head
        rng = np.random.default_rng(seed)
        self.digits = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
        self.x = ln.preprocess(self.digits)
        self.labels = rng.integers(0, 10, 10000).astype(np.int32)
        # every layer's input, from the native forward of the first 64 images
        acts = self.model.activations(self.x[:64])
        layer_in = {"c1": self.x[:64, None], "s2": acts["c1"], "c3": acts["s2"], "s4": acts["c3"],
                    "c5": acts["s4"].reshape(64, 400), "f6": acts["c5"], "head": acts["f6"]}
        self.layer_in = {k: np.ascontiguousarray(v) for k, v in layer_in.items()}

    def forward(self, x, threads=1, isa=None):
        return _core.forward(self.flat, _C3_OUT, _C3_IN, self.head, x, threads, isa=isa)


@pytest.fixture(scope="session")
def net():
    return Net()


@pytest.fixture(scope="session")
def net_rbf():
    return Net(head="rbf")
