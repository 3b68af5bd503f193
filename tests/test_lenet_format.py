"""The .lenet model file (lenet_native.lenet_format, docs/lenet-format.md) from Python: the
round trip through LeNet5.save / load, the layout the document gives, and every damaged
file refused with a ValueError naming it. tests/test_clib.py feeds the same damaged files
to the C loader."""
import json
import struct
import zlib

import numpy as np
import pytest

from conftest import lenet_mutants
from lenet_native import LeNet5, load_pretrained, preprocess
from lenet_native import lenet_format as lf
from lenet_native.cli import main


@pytest.fixture(scope="module", params=["softmax", "rbf"])
def saved(request, tmp_path_factory):
    """(model, path, bytes) of the shipped model of each head saved as .lenet."""
    model = load_pretrained(request.param, threads=1)
    path = tmp_path_factory.mktemp("lenet") / f"{request.param}.lenet"
    model.save(path)
    return model, path, path.read_bytes()


def test_round_trip_same_outputs_and_meta(saved, mnist_test_sample):
    model, path, _ = saved
    back = LeNet5.load(path, threads=1)
    assert back.head == model.head
    x = preprocess(mnist_test_sample[0][:64])
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    assert back.meta == model.meta
    for name, a in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], a, err_msg=name)


def test_layout_is_the_documented_one(saved):
    model, _, data = saved
    magic, version, head, narrays, meta_len, file_bytes = struct.unpack_from("<8sIIIIQ", data)
    assert magic == b"\x89LENET\r\n" and version == 1 and file_bytes == len(data)
    assert head == {"softmax": 0, "rbf": 1}[model.head]
    assert narrays == {"softmax": 15, "rbf": 14}[model.head]
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])
    meta = json.loads(data[32 + 64 * narrays:32 + 64 * narrays + meta_len])
    assert meta["activation"].startswith("scaled_tanh") and meta["training"] == model.meta["training"]
    state = model.state_dict()
    for i, name in enumerate(lf.array_names(model.head)):
        raw, dtype, ndim, *dims, off, nbytes = struct.unpack_from("<24sII4IQQ", data, 32 + 64 * i)
        assert raw.rstrip(b"\0").decode() == name
        assert tuple(dims[:ndim]) == state[name].shape and not any(dims[ndim:])
        assert off % 64 == 0
        want = state[name].astype("u1" if name == "c3.table" else "<f4").tobytes()
        assert (dtype, data[off:off + nbytes]) == ((2 if name == "c3.table" else 1), want), name


def test_every_truncation_refused(saved):
    _, path, data = saved
    n_head = 32 + 64 * struct.unpack_from("<I", data, 16)[0] + struct.unpack_from("<I", data, 20)[0]
    lengths = list(range(n_head + 8)) + list(range(n_head + 8, len(data), 509))
    for n in lengths:
        with pytest.raises(ValueError, match="truncated|magic"):
            lf.decode(data[:n], source="x.lenet")


def test_flipped_bytes_refused(saved):
    """Every byte of the header and table flipped, and every 4099th byte after: the CRC or
    a header check refuses each."""
    _, _, data = saved
    n_table = 32 + 64 * struct.unpack_from("<I", data, 16)[0]
    b = bytearray(data)
    for i in list(range(n_table)) + list(range(n_table, len(data), 4099)):
        b[i] ^= 0xFF
        with pytest.raises(ValueError, match="x.lenet"):
            lf.decode(bytes(b), source="x.lenet")
        b[i] ^= 0xFF


def test_damaged_files_refused_naming_the_file(saved, tmp_path):
    model, _, data = saved
    for name, (bad, _) in lenet_mutants(data, model.head).items():
        path = tmp_path / f"{name}.lenet"
        path.write_bytes(bad)
        with pytest.raises(ValueError, match=str(path).replace(".", r"\.")):
            LeNet5.load(path)


def test_metadata_must_be_a_json_object(saved):
    model, _, data = saved
    narrays, meta_len = struct.unpack_from("<II", data, 16)
    at = 32 + 64 * narrays
    for junk in (b"[" + b" " * (meta_len - 1), b"\xff" * meta_len):
        b = bytearray(data)
        b[at:at + meta_len] = junk
        b[-4:] = struct.pack("<I", zlib.crc32(bytes(b[:-4])))
        with pytest.raises(ValueError, match="metadata"):
            lf.decode(bytes(b), source="x.lenet")


def test_writer_refuses_an_invalid_state():
    state = LeNet5(seed=0).state_dict()
    state["c1.bias"][2] = np.nan
    with pytest.raises(ValueError, match="c1.bias"):
        lf.encode(state, "softmax")


def test_suffix_chooses_the_format(tmp_path):
    model = LeNet5(seed=3, threads=1)
    model.save(tmp_path / "m.LENET")
    model.save(tmp_path / "m.npz")
    assert (tmp_path / "m.LENET").read_bytes()[:8] == lf.MAGIC
    assert (tmp_path / "m.npz").read_bytes()[:2] == b"PK"
    x = np.random.default_rng(0).uniform(-0.1, 1.1, (3, 32, 32)).astype(np.float32)
    for name in ("m.LENET", "m.npz"):
        np.testing.assert_array_equal(LeNet5.load(tmp_path / name).forward(x), model.forward(x))
    with pytest.raises(FileNotFoundError):
        LeNet5.load(tmp_path / "missing.lenet")


def test_export_command_writes_each_format(tmp_path, capsys):
    for dest in ("m.lenet", "m.npz", "m.c"):
        assert main(["export", "--pretrained", "rbf", str(tmp_path / dest)]) == 0
    assert (tmp_path / "m.h").is_file()
    assert LeNet5.load(tmp_path / "m.lenet").head == "rbf"
    assert main(["export", "--weights", str(tmp_path / "m.lenet"), str(tmp_path / "n.npz")]) == 0
    assert LeNet5.load(tmp_path / "n.npz").head == "rbf"
    assert main(["export", "--pretrained", "softmax", str(tmp_path / "m.txt")]) == 2
    assert ".lenet" in capsys.readouterr().err


def test_eval_reads_a_lenet_file_like_its_npz(tmp_path, capsys):
    from conftest import synthetic_digits, write_mnist_folder

    images, labels = synthetic_digits(300, seed=5)
    data = write_mnist_folder(tmp_path, {"train": (images, labels), "test": (images, labels)})
    model = load_pretrained("softmax")
    model.save(tmp_path / "m.npz")
    model.save(tmp_path / "m.lenet")
    lines = {}
    for name in ("m.npz", "m.lenet"):
        assert main(["eval", str(tmp_path / name), "--data", str(data), "--threads", "1"]) == 0
        lines[name] = capsys.readouterr().out.split("images/s")[0].rsplit("  ", 1)[0]
    assert lines["m.npz"].startswith("test error ") and lines["m.npz"] == lines["m.lenet"]
