"""``lenet-native predict FILE...``: classify your own digit images (lenet_native.images).

    $ lenet-native predict seven.png digits.npy t10k-images-idx3-ubyte.gz
    $ lenet-native predict --dask local t10k-images-idx3-ubyte --out labels.npy

With ``--dask ADDRESS`` one uncompressed IDX file is scored on a dask cluster, a chunk at a
time (lenet_native.dask), the labels going to a .npy file.
"""
from __future__ import annotations

import sys

from ..images import classify, read_image_file
from ..pretrained import load_model
from ..terminal import ascii_digit
from .options import (EXIT_ERROR, EXIT_OK, PROG, CommandError, add_head, add_threads,
                      add_weights, positive_int)


def add_arguments(parser) -> None:
    """The options of ``lenet-native predict``."""
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="images (PNG/JPEG/... need Pillow), .npy arrays (2-D one image, "
                             "3-D a stack; uint8 0..255 or float 0..1) or IDX files")
    add_head(parser, help="which pretrained model (default softmax)")
    add_weights(parser, "use this weight file instead of the pretrained model")
    parser.add_argument("--no-normalize", action="store_true",
                        help="feed 28x28 images as they are (already MNIST-format: ink bright "
                             "on black, centred) instead of converting them like MNIST")
    parser.add_argument("--show", action="store_true",
                        help="also draw each digit as the network sees it (28x28, in text)")
    add_threads(parser, help="threads of the C kernels (default $LENET_NATIVE_THREADS or all "
                             "CPUs; with --dask: per task, default 1)")
    parser.add_argument("--dask", metavar="ADDRESS", default=None,
                        help="score ONE uncompressed IDX file on a dask cluster (a scheduler "
                             "address like tcp://host:8786, or 'local' for a LocalCluster on "
                             "this machine), memory-mapped a chunk at a time; needs --out and "
                             "the [dask] extra")
    parser.add_argument("--out", metavar="LABELS.npy", default=None,
                        help="with --dask: where the (N,) int64 labels go (written atomically)")
    parser.add_argument("--chunk-size", type=positive_int, default=None, metavar="N",
                        help="with --dask: images per task (default 10000)")


def run(args, out=None, err=None) -> int:
    """One line per image, ``name<TAB>digit<TAB>probability``.

    Files that cannot be read are reported on ``err`` (default stderr), naming them, and
    the others still classified.

    Returns
    -------
    int
        2 if a file could not be read, else 0.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if args.dask is not None:
        return run_dask(args, out)
    if args.out is not None or args.chunk_size is not None:
        raise CommandError("--out and --chunk-size go with --dask ADDRESS")
    model = load_model(args.weights, args.head, args.threads)
    failed = 0
    for path in args.files:
        try:
            items = read_image_file(path)
            names = [n for n, _ in items]
            digits, pred, prob = classify(model, [im for _, im in items],
                                          normalize=not args.no_normalize, names=names)
        except (ValueError, OSError, ImportError) as exc:
            failed += 1
            msg = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"{PROG}: error: {' '.join(msg.split())}", file=err, flush=True)
            continue
        for name, d, p, digit in zip(names, pred, prob, digits):
            print(f"{name}\t{int(d)}\t{float(p):.4f}", file=out)
            if args.show:
                print(ascii_digit(digit), file=out)
        out.flush()
    return EXIT_ERROR if failed else EXIT_OK


def run_dask(args, out) -> int:
    """``predict --dask ADDRESS IMAGES --out LABELS.npy``: the labels of every image of one
    uncompressed IDX file, scored on a dask cluster (``local``: a LocalCluster for the run)
    and written atomically to a .npy file, the client holding one chunk at a time.

    Returns
    -------
    int
        0; errors (a bad file, a chunk of NaN, no scheduler) raise and leave --out as it was.
    """
    import time
    from pathlib import Path

    from .. import dask as lnd

    if len(args.files) != 1:
        raise CommandError(f"--dask scores one IDX file; got {len(args.files)} files")
    if args.out is None:
        raise CommandError("--dask needs --out LABELS.npy (the labels of every image)")
    if args.show:
        raise CommandError("--show does not go with --dask (the labels go to --out)")
    target = Path(args.out)
    if not target.parent.is_dir():
        raise CommandError(f"{target.parent}: output folder does not exist")
    images = lnd.open_idx_dask(args.files[0], chunks=args.chunk_size or lnd.DEFAULT_CHUNK)
    model = load_model(args.weights, args.head, 1)
    try:
        labels = lnd.predict(model, images, threads=args.threads or 1)
    except (TypeError, ValueError) as exc:
        raise CommandError(f"{args.files[0]}: {exc}") from None
    t0 = time.perf_counter()
    client, cluster = lnd.connect(args.dask)
    try:
        print(f"dask: {len(client.nthreads())} worker(s), dashboard {client.dashboard_link}",
              file=out, flush=True)
        lnd.write_labels(labels, target, client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    seconds = time.perf_counter() - t0
    print(f"{labels.shape[0]} labels -> {target} ({len(labels.chunks[0])} tasks, "
          f"{seconds:.1f} s, {labels.shape[0] / max(seconds, 1e-9):.0f} images/s)", file=out)
    return EXIT_OK
