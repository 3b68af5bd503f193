"""Helpers and fixtures shared by the tests. The real MNIST folder (fixture ``mnist_path``,
option ``--data``) is found by tests/mnist_data.py, shared with benchmarks/conftest.py."""
import os
from pathlib import Path

import numpy as np
import pytest
from mnist_data import (mnist_path, pytest_addoption, pytest_configure,  # noqa: F401
                        pytest_report_header)


def synthetic_digits(n, seed):
    """``n`` uint8 (28, 28) digits that a network can learn: faint noise and, for label c,
    a 6x6 block of ink at a place that depends on c. -> (images, labels uint8)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 3 + 10 * (c // 4):9 + 10 * (c // 4), 2 + 6 * (c % 4):8 + 6 * (c % 4)] = 255
    return images, labels


def write_mnist_folder(folder, splits):
    """Write MNIST's four IDX files into ``folder``: ``splits`` maps "train" / "test" to
    (images, labels). -> folder."""
    from lenet_native.datasets import MNIST_FILES
    from lenet_native.idx import write_idx

    for split, (images, labels) in splits.items():
        image_name, label_name = MNIST_FILES[split]
        write_idx(folder / image_name, images)
        write_idx(folder / label_name, labels)
    return folder


def big_random_state(model, rng, scale=3.0):
    """Weights larger than the paper's initialisation (x scale) so every layer matters:
    nothing is negligible and tanh is exercised beyond its linear part."""
    state = model.state_dict()
    from lenet_native.layout import C3_TABLE

    for k, v in state.items():
        if k in ("c3.table", "out.prototypes"):
            continue
        bound = np.abs(v).max() if v.size else 1.0
        state[k] = (rng.uniform(-1, 1, v.shape) * bound * scale).astype(np.float32)
    state["c3.weight"] *= C3_TABLE[:, :, None, None]
    return state


@pytest.fixture(scope="session")
def mnist_test_sample():
    """The first 500 MNIST test digits (uint8) and labels, shipped with the package: genuine
    MNIST in every run, no download (test_pretrained checks they are the test set's start)."""
    from lenet_native.demo import load_sample

    return load_sample()


def lenet_mutants(data: bytes, head: str) -> dict:
    """Damaged copies of the .lenet file ``data``: name -> (bytes, the C status expected,
    lenet_native.h: 10 FORMAT, 11 VERSION, 12 TRUNCATED, 13 CRC, 14 CORRUPT). Each damage
    but the CRC's own and the length changes comes with a correct CRC, so that it is the
    check behind the CRC that must catch it (tests/test_clib.py, tests/test_lenet_format.py)."""
    import struct
    import zlib

    import numpy as np

    from lenet_native import lenet_format as lf

    FORMAT, VERSION, TRUNCATED, CRC, CORRUPT = 10, 11, 12, 13, 14
    names = lf.array_names(head)
    entry = {name: lf.HEADER.size + lf.ENTRY.size * i for i, name in enumerate(names)}

    def with_crc(b):
        b = bytearray(b)
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
        return bytes(b)

    def patch(fmt, at, value):
        b = bytearray(data)
        struct.pack_into(fmt, b, at, value)
        return with_crc(b)

    def offset(name):
        return struct.unpack_from("<Q", data, entry[name] + 48)[0]

    def value(name, index, v, fmt="<f"):
        return patch(fmt, offset(name) + struct.calcsize(fmt) * index, v)

    c3_off = np.flatnonzero(~np.repeat(lf.C3_TABLE.reshape(-1), 25))[0]   # a weight Table I lacks
    out = {
        "empty": (b"", TRUNCATED),
        "magic-only": (data[:5], TRUNCATED),
        "header-only": (data[:32], TRUNCATED),
        "bad-magic": (bytes([data[0] ^ 1]) + data[1:], FORMAT),
        "text": (b"c1.weight = [0.1, 0.2]\n" * 4, FORMAT),
        "version-2": (patch("<I", 8, 2), VERSION),
        "head-7": (patch("<I", 12, 7), CORRUPT),
        "narrays-absurd": (patch("<I", 16, 0xFFFFFFFF), CORRUPT),
        "narrays-0": (patch("<I", 16, 0), CORRUPT),
        "meta-absurd": (patch("<I", 20, 0xFFFFFFFF), CORRUPT),
        "file-bytes-absurd": (patch("<Q", 24, 1 << 63), CORRUPT),
        "file-bytes-small": (patch("<Q", 24, 40), CORRUPT),
        "truncated-tail": (data[:-100], TRUNCATED),
        "trailing-byte": (data + b"\0", CORRUPT),
        "wrong-crc": (data[:-1] + bytes([data[-1] ^ 0x10]), CRC),
        "flipped-weight-bit": (data[:offset("c5.weight") + 7] + bytes([data[offset("c5.weight") + 7] ^ 4])
                               + data[offset("c5.weight") + 8:], CRC),
        "renamed-array": (patch("<24s", entry["c1.weight"], b"c1.weigh"), CORRUPT),
        "swapped-names": (patch("<24s", entry["c1.bias"], b"s2.bias"), CORRUPT),
        "wrong-dtype": (patch("<I", entry["c5.weight"] + 24, 2), CORRUPT),
        "wrong-ndim": (patch("<I", entry["c5.weight"] + 28, 2), CORRUPT),
        "wrong-dim": (patch("<I", entry["c5.weight"] + 32, 121), CORRUPT),
        "dim-absurd": (patch("<I", entry["f6.weight"] + 36, 0xFFFFFFFF), CORRUPT),
        "nbytes-absurd": (patch("<Q", entry["c5.weight"] + 56, (1 << 64) - 4), CORRUPT),
        "offset-absurd": (patch("<Q", entry["c5.weight"] + 48, (1 << 64) - 64), CORRUPT),
        "offset-past-end": (patch("<Q", entry["c3.table"] + 48, len(data) - 50), CORRUPT),
        "offset-overlap": (patch("<Q", entry["c1.bias"] + 48, offset("c1.weight")), CORRUPT),
        "offset-into-table": (patch("<Q", entry["c1.weight"] + 48, 64), CORRUPT),
        "offset-misaligned": (patch("<Q", entry["c1.weight"] + 48, offset("c1.weight") + 1), CORRUPT),
        "nan-weight": (value("c5.weight", 1234, float("nan")), CORRUPT),
        "inf-bias": (value("f6.bias", 3, float("-inf")), CORRUPT),
        "c3-outside-table-i": (value("c3.weight", int(c3_off), 0.5), CORRUPT),
        "c3-table-changed": (value("c3.table", 3, 1, "<B"), CORRUPT),
        "c3-table-two": (value("c3.table", 0, 2, "<B"), CORRUPT),
    }
    if head == "rbf":
        out["prototype-half"] = (value("out.prototypes", 17, 0.5), CORRUPT)
    return out


def child_env(**extra):
    """Environment for a child Python process that imports the same lenet_native as this one
    (the installed package in CI, an in-place build here): its folder first on PYTHONPATH.
    Run such a child outside the checkout (``cwd=tmp_path``): ``python -m`` and ``-c`` put
    the working folder first, and the checkout's sources have no compiled extension.
    ``extra``: variables to set (a value of None removes the variable)."""
    import lenet_native

    env = dict(os.environ)
    root = str(Path(lenet_native.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env
