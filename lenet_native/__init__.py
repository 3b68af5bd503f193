"""lenet_native: LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998) with C kernels.

    >>> import lenet_native as ln
    >>> model = ln.LeNet5(head="softmax", seed=0)
    >>> model.forward(ln.preprocess(digits))      # (N, 10) logits
"""
# The OpenMP wait policy is left to the user (OMP_WAIT_POLICY, read once by libgomp when it
# loads). A process has one libgomp, shared with PyTorch and any other OpenMP user, so
# setting it here would change their speed too: when this package set PASSIVE (earlier
# versions did), a PyTorch training loop in the same process ran about 40 % slower.
# README, "Reliability", says when PASSIVE helps (a busy machine).

from .model import C3_TABLE, LeNet5, preprocess

__version__ = "0.1.0"
__all__ = ["LeNet5", "preprocess", "C3_TABLE", "__version__"]
