"""Writing a model in the format a file name's suffix names (``lenet-native export``,
:mod:`lenet_native.commands.export`).

The formats are one table, ``WRITERS``: suffix -> "module:function", the function called as
``function(model, path)`` and imported only when its format is asked for (so an optional
extra is needed only by its own format). A new format is one line here; every writer
writes through :func:`lenet_native.fileio.atomic_write`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["WRITERS", "write", "writer_for", "save"]

WRITERS = {
    ".npz": "lenet_native.export:save",           # the weight interchange file
    ".onnx": "lenet_native.interop:to_onnx",      # ONNX graph, opset 17 (extra: onnx)
    ".lenet": "lenet_native.export:save",         # the binary file liblenet loads
    ".c": "lenet_native.c_export:write_c",        # C99 source pair DEST.c + DEST.h
}


def save(model, path) -> None:
    """``model.save(path)``: the .npz weight file or the .lenet file, by the suffix (the
    formats ``LeNet5.load`` reads back).

    Parameters
    ----------
    model : LeNet5
    path : str or os.PathLike
    """
    model.save(path)


def writer_for(path):
    """The writer of ``path``'s suffix.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    callable
        ``writer(model, path)``, its module imported.

    Raises
    ------
    ValueError
        For a suffix not in ``WRITERS``, naming the known ones.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in WRITERS:
        raise ValueError(f"{path}: unknown format {suffix or '(no suffix)'!r}; the file name must "
                         f"end in one of {', '.join(WRITERS)}")
    module, function = WRITERS[suffix].split(":")
    return getattr(importlib.import_module(module), function)


def write(model, path) -> None:
    """Write ``model`` to ``path`` in the format its suffix names (see ``WRITERS``).

    Parameters
    ----------
    model : LeNet5
    path : str or os.PathLike
    """
    writer_for(path)(model, path)
