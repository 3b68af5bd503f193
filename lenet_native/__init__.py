"""lenet_native: LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998) with C kernels.

    >>> import lenet_native as ln
    >>> model = ln.LeNet5(head="softmax", seed=0)
    >>> model.forward(ln.preprocess(digits))      # (N, 10) logits
    >>> history = ln.train(model, digits, labels, epochs=20)
    >>> ln.evaluate(model, test_digits, test_labels)["error"]
    >>> ln.load_pretrained("rbf").predict(digits)

docs/design.md, "Python modules", maps the modules and which imports which.
"""
# The OpenMP wait policy is left to the user (OMP_WAIT_POLICY, read once by libgomp when it
# loads). A process has one libgomp, shared with PyTorch and any other OpenMP user, so
# setting it here would change their speed too: when this package set PASSIVE (earlier
# versions did), a PyTorch training loop in the same process ran about 40 % slower.
# README, "Reliability", says when PASSIVE helps (a busy machine).

from .checks import preprocess
from .layout import C3_TABLE
from .model import LeNet5
from .pretrained import load_pretrained
from .training import evaluate, train

__version__ = "0.1.0"
__all__ = ["LeNet5", "preprocess", "C3_TABLE", "train", "evaluate", "load_pretrained",
           "__version__"]
