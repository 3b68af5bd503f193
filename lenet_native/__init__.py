"""lenet_native: LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998) with C kernels.

    >>> import lenet_native as ln
    >>> model = ln.LeNet5(head="softmax", seed=0)
    >>> model.forward(ln.preprocess(digits))      # (N, 10) logits
"""
from .model import C3_TABLE, LeNet5, preprocess

__version__ = "0.1.0"
__all__ = ["LeNet5", "preprocess", "C3_TABLE", "__version__"]
