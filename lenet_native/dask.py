"""Scoring on Dask: the model travels once per worker, each chunk of images is one task.

    >>> import lenet_native as ln, lenet_native.dask as lnd
    >>> from dask.distributed import Client, LocalCluster
    >>> client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    >>> images = lnd.open_idx_dask("t10k-images-idx3-ubyte", chunks=10_000)  # lazy, on disk
    >>> labels = lnd.predict(ln.LeNet5.pretrained(), images)                  # lazy
    >>> labels.compute()                                                     # (N,) int64

Needs the optional extra ``[dask]`` (``dask[array,distributed]``; ``distributed`` only for a
cluster: the functions here also run under dask's local schedulers).

How the graph is built: the model is one task key (``dask.delayed(model)``), which every
chunk task depends on, so the scheduler moves it to each worker once (a worker keeps the
data of a key it has; about 240 KB, :class:`~lenet_native.model.LeNet5` pickles by its
weights) and recomputes it if the worker holding it dies. The chunk tasks run the C batch
forward, which releases the GIL, on ``threads`` OpenMP threads each (default 1: one per
dask thread). ``meta`` and ``dtype`` are given, so dask never calls the model to guess them.
"""
from __future__ import annotations

import copy

import numpy as np

__all__ = ["predict", "predict_proba", "open_idx_dask", "write_labels", "connect",
           "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 10_000  # images per task: 7.8 MB of uint8 digits, 41 MB as network input

_INSTALL = "pip install 'lenet_native[dask]'  (that is: dask[array,distributed])"


def _dask():
    """dask, dask.array and dask.delayed, or ImportError naming the extra."""
    try:
        import dask
        import dask.array as da
        from dask import delayed
    except ImportError as exc:
        raise ImportError(f"lenet_native.dask needs dask with dask.array: {_INSTALL} "
                          f"({exc})") from exc
    return dask, da, delayed


def _as_image_array(images, where):
    """A dask array (N, 28, 28) uint8 or (N, 32, 32) float, whole images in every chunk."""
    _, da, _ = _dask()
    if not isinstance(images, da.Array):
        images = da.asarray(images)
    if images.ndim != 3 or images.shape[1:] not in ((28, 28), (32, 32)):
        raise ValueError(f"{where}: images must be a dask array of shape (N, 28, 28) uint8 "
                         f"digits or (N, 32, 32) float network input; got shape {images.shape}")
    kind = images.dtype
    if images.shape[1:] == (28, 28) and kind != np.uint8:
        raise TypeError(f"{where}: (N, 28, 28) images must be uint8 MNIST digits "
                        f"(0 = background, 255 = ink); got dtype {kind}")
    if images.shape[1:] == (32, 32) and not np.issubdtype(kind, np.floating):
        raise TypeError(f"{where}: (N, 32, 32) network input must be float (float32); "
                        f"got dtype {kind}")
    if np.isnan(images.shape[0]):
        raise ValueError(f"{where}: the number of images is unknown (nan chunks); "
                         f"call images.compute_chunk_sizes() first")
    if len(images.chunks[1]) > 1 or len(images.chunks[2]) > 1:
        images = images.rechunk({1: -1, 2: -1})  # a chunk must hold whole images
    return images


def _model_for_tasks(model, threads):
    """A copy of the model with the per-task thread count, wrapped as one graph key."""
    from .checks import check_threads
    from .model import LeNet5
    if not isinstance(model, LeNet5):
        raise TypeError(f"model must be a lenet_native.LeNet5; got {type(model).__name__}")
    threads = check_threads(threads)
    dask, _, delayed = _dask()
    travelling = copy.copy(model)  # shares the weights; only the thread count differs
    travelling.threads = threads
    # the key from the weights themselves (dask would otherwise pickle the model twice to
    # tokenize it): equal models share a key, a changed weight gives a new one
    token = dask.base.tokenize(type(model).__module__, type(model).__qualname__, model.head,
                               threads, model._flat)
    return delayed(travelling, pure=True, traverse=False, name=f"lenet5-model-{token}")


def _score_block(block, model, method, block_info=None):
    """One task: the model's predict / predict_proba on one chunk; a ValueError (NaN,
    infinity) names the chunk and the images it holds."""
    try:
        return getattr(model, method)(block)
    except ValueError as exc:
        where = ""
        if block_info is not None:
            lo, hi = block_info[0]["array-location"][0]
            where = f" chunk {block_info[0]['chunk-location'][0]} (images {lo}..{hi - 1})"
        raise ValueError(f"lenet_native.dask.{method}:{where}: {exc}") from None


def _score(model, images, threads, method):
    _, da, _ = _dask()
    images = _as_image_array(images, f"lenet_native.dask.{method}")
    travelling = _model_for_tasks(model, threads)
    if method == "predict":
        dtype, chunks, meta = np.int64, (images.chunks[0],), np.empty((0,), np.int64)
        drop = [1, 2]
    else:
        dtype, chunks, meta = np.float32, (images.chunks[0], (10,)), np.empty((0, 0), np.float32)
        drop = [2]
    return da.map_blocks(_score_block, images, travelling, method, dtype=dtype, chunks=chunks,
                         drop_axis=drop, meta=meta, token=f"lenet-{method}")


def predict(model, images, threads=1):
    """Lazy class labels of a dask array of images.

    Parameters
    ----------
    model : lenet_native.LeNet5
        Copied into the graph once (one key; each worker receives it once).
    images : dask.array.Array
        (N, 28, 28) uint8 MNIST digits or (N, 32, 32) float32 network input, any chunking
        along N (a chunking that splits images is merged along the image axes). A NumPy
        array is wrapped whole (one chunk): pass a chunked dask array for large inputs.
    threads : int, optional
        OpenMP threads of the C forward in each task (default 1: one per dask thread).

    Returns
    -------
    dask.array.Array
        (N,) int64, chunked like ``images`` along N. Computing it raises the model's
        ``ValueError`` for a chunk holding NaN or infinity, naming the chunk's image range.
    """
    return _score(model, images, threads, "predict")


def predict_proba(model, images, threads=1):
    """Lazy class probabilities (N, 10) float32 of a dask array of images; parameters as
    :func:`predict`."""
    return _score(model, images, threads, "predict_proba")


class _IdxSlices:
    """An uncompressed IDX file as an array-like that pickles by its path: each process
    (dask worker) maps the file itself on first use, so no image data travels in the graph.
    The file is re-validated there and must still have the header seen here."""

    def __init__(self, path):
        from .idx import open_idx
        self.path = str(path)
        mapped = open_idx(self.path)
        self.shape, self.dtype = mapped.shape, mapped.dtype.newbyteorder("=")
        self.ndim = len(self.shape)
        self._mapped = mapped

    def __getstate__(self):
        return {"path": self.path, "shape": self.shape, "dtype": self.dtype, "ndim": self.ndim}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._mapped = None

    def __getitem__(self, index):
        if self._mapped is None:
            from .idx import open_idx
            mapped = open_idx(self.path)
            if mapped.shape != self.shape or mapped.dtype.newbyteorder("=") != self.dtype:
                raise ValueError(f"{self.path}: changed since it was opened: now "
                                 f"{mapped.dtype.name} {mapped.shape}, was "
                                 f"{self.dtype.name} {self.shape}")
            self._mapped = mapped
        return np.asarray(self._mapped[index], dtype=self.dtype)  # native order, in memory


def open_idx_dask(path, chunks=DEFAULT_CHUNK):
    """A dask array over an uncompressed IDX file, memory-mapped where each chunk is read
    (:func:`lenet_native.idx.open_idx`): memory goes as the chunk size, not the file's.

    Parameters
    ----------
    path : str or os.PathLike
        The file; on a cluster, every worker must see it under the same path.
    chunks : int
        Items (images) per chunk along the first axis; the other axes are never split.

    Returns
    -------
    dask.array.Array
        Native byte order, the file's dtype and shape. Header and size errors raise
        ``ValueError`` naming the file here, before any task runs.
    """
    import os

    from .checks import check_int

    dask, da, _ = _dask()
    chunks = check_int("chunks", chunks, 1)
    source = _IdxSlices(path)
    st = os.stat(source.path)  # the key changes when the file does
    token = dask.base.tokenize(source.path, st.st_size, st.st_mtime_ns, chunks)
    return da.from_array(source, chunks=(chunks,) + source.shape[1:], lock=False,
                         asarray=False, meta=np.empty((0,) * source.ndim, source.dtype),
                         name=f"idx-{token}")


# ----------------------------------------------------------------------------- the command


def connect(address):
    """A dask.distributed client, for ``lenet-native predict --dask ADDRESS``.

    Parameters
    ----------
    address : str
        A scheduler address (``tcp://host:8786``) or ``"local"``: a new LocalCluster of one
        single-threaded worker process per core.

    Returns
    -------
    (distributed.Client, distributed.LocalCluster or None)
        For the caller to close (the cluster too, when there is one).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError(f"--dask needs dask.distributed: {_INSTALL} ({exc})") from exc
    if address == "local":
        cluster = LocalCluster(threads_per_worker=1, processes=True)
        return Client(cluster), cluster
    return Client(address, timeout=60), None


def write_labels(labels, path, client) -> None:
    """Compute lazy labels into a .npy file, chunk by chunk.

    The chunks are written at their offsets in whatever order they finish; the client holds
    one chunk of labels at a time, and each is released on its worker once written. The file
    is written atomically (``fileio.atomic_write``): readers see the old file or the whole
    new one, and a failed chunk leaves ``path`` as it was.

    Parameters
    ----------
    labels : dask.array.Array
        (N,) integers, e.g. from :func:`predict`.
    path : str or os.PathLike
        The .npy file (int64, little-endian).
    client : distributed.Client
    """
    from distributed import as_completed

    from .fileio import atomic_write

    n = labels.shape[0]
    blocks = labels.to_delayed().ravel()
    starts = np.concatenate([[0], np.cumsum(labels.chunks[0])[:-1]]).astype(np.int64)

    def write(f):
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<i8", "fortran_order": False, "shape": (n,)})
        data = f.tell()
        f.truncate(data + 8 * n)
        futures = client.compute(list(blocks))
        where = {fut.key: int(lo) for fut, lo in zip(futures, starts)}
        finished = as_completed(futures)
        del futures  # each chunk's labels are released on the workers once written
        for fut in finished:
            block = np.ascontiguousarray(fut.result(), dtype="<i8")
            f.seek(data + 8 * where[fut.key])
            f.write(block.tobytes())
            fut.release()

    atomic_write(path, write)
