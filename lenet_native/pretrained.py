"""The pretrained LeNet-5 weights shipped inside the package.

    >>> from lenet_native import load_pretrained
    >>> model = load_pretrained()            # softmax head
    >>> model.predict(digits)                # uint8 (N, 28, 28) MNIST-style digits
    >>> model.meta["training"]               # how it was trained: command, seed, error curve

The files live in ``lenet_native/data/lenet5_<head>.npz`` (the weight file of
``LeNet5.save``); lenet_native.weights finds them through importlib.resources, so they
work from a wheel, an editable install or a zip.
"""
from __future__ import annotations

from .model import LeNet5
from .weights import available_heads, pretrained_path, weight_file_name

__all__ = ["load_pretrained", "load_model", "available_heads", "pretrained_path",
           "weight_file_name"]


def load_pretrained(head: str = "softmax", threads=None) -> LeNet5:
    """The shipped pretrained LeNet-5 (:meth:`LeNet5.pretrained`).

    Parameters
    ----------
    head : {"softmax", "rbf"}
    threads : int, optional
        Threads of the C kernels; default $LENET_NATIVE_THREADS or the CPU count.

    Returns
    -------
    LeNet5
        Its ``meta["training"]`` records how it was trained and its test error.

    Raises
    ------
    ValueError
        Naming the head, if this installation ships no weights for it.
    """
    return LeNet5.pretrained(head, threads=threads)


def load_model(weights=None, head: str = "softmax", threads=None) -> LeNet5:
    """A weight file if one is given, else the shipped model with that head.

    The choice the demo and predict commands offer with ``--weights`` / ``--head``.

    Parameters
    ----------
    weights : str or os.PathLike, optional
        A .npz weight file (then ``head`` is the file's).
    head : {"softmax", "rbf"}
    threads : int, optional
    """
    if weights:
        return LeNet5.load(weights, threads=threads)
    return load_pretrained(head, threads=threads)
