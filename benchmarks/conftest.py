"""Shared data for the benchmarks (built outside the timed calls).

The OpenMP wait policy is whatever the environment says (OMP_WAIT_POLICY; unset: libgomp's
default, spin a while and then sleep). native and PyTorch share the process's one libgomp,
so the comparisons run both under the same policy; PASSIVE costs PyTorch's training loop
about 40 % here, so it is not set for them (benchmarks/README.md, "Measuring on a shared
machine").

Where the real MNIST files are (option ``--data``, fixture ``mnist_path``): tests/mnist_data.py,
the one place that looks, loaded here by its path.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import lenet_native as ln
from lenet_native import _core
from lenet_native.layout import C3_IN, C3_OUT

_spec = importlib.util.spec_from_file_location(
    "mnist_data", Path(__file__).resolve().parents[1] / "tests" / "mnist_data.py")
_mnist_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mnist_data)
pytest_addoption = _mnist_data.pytest_addoption
pytest_configure = _mnist_data.pytest_configure
pytest_report_header = _mnist_data.pytest_report_header
mnist_path = _mnist_data.mnist_path

IMPLS = ["reference", "native"]
ISAS = _core.available_isas()


class Net:
    """One random network (paper initialisation) and data for every benchmark."""

    def __init__(self, head="softmax", seed=0):
        self.model = ln.LeNet5(head=head, seed=seed, threads=1)
        self.state = self.model.state_dict()
        self.flat = self.model.params
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
        return _core.forward(self.flat, C3_OUT, C3_IN, self.head, x, threads, isa=isa)


@pytest.fixture(scope="session")
def net():
    return Net()


@pytest.fixture(scope="session")
def net_rbf():
    return Net(head="rbf")


def torch_epoch(torch, net, opt, xt, yt, batch):
    """One PyTorch eager epoch, the obvious loop (randperm, index, forward, cross-entropy,
    backward, SGD step) over the tensors xt (N, 1, 32, 32) and yt (N,); -> seconds."""
    import time
    t0 = time.perf_counter()
    perm = torch.randperm(len(xt))
    for lo in range(0, len(xt), batch):
        idx = perm[lo:lo + batch]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
        opt.step()
    return time.perf_counter() - t0
