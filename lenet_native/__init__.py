"""lenet_native: LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998) with C kernels.

    >>> import lenet_native as ln
    >>> model = ln.LeNet5(head="softmax", seed=0)
    >>> model.forward(ln.preprocess(digits))      # (N, 10) logits
"""
import os as _os

# libgomp's default wait policy spins idle threads before sleeping; on a loaded or shared
# machine (CI, a 2-core VM) that collapses multi-threaded calls (measured 85k -> 3.4k
# images/s at batch 64). Passive waiting is set before the extension loads libgomp; a
# value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .model import C3_TABLE, LeNet5, preprocess  # noqa: E402

__version__ = "0.1.0"
__all__ = ["LeNet5", "preprocess", "C3_TABLE", "__version__"]
