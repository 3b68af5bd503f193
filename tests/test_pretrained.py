"""The pretrained weights shipped in the package: loading, provenance, accuracy."""
import time
from importlib import resources

import numpy as np
import pytest

from lenet_native import LeNet5
from lenet_native.demo import load_sample
from lenet_native.pretrained import available_heads, load_pretrained, pretrained_path


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


def test_both_heads_are_shipped_and_small():
    assert available_heads() == ("softmax", "rbf")
    for head in available_heads():
        f = resources.files("lenet_native").joinpath("data", f"lenet5_{head}.npz")
        assert f.is_file()
        assert len(f.read_bytes()) < 300_000


def test_loads_as_a_lenet5_with_its_training_record(model):
    assert isinstance(model, LeNet5) and model.head == "softmax"
    info = model.meta["pretrained"]
    assert info["test_error"] <= 0.008
    assert "lenet-native train" in info["command"] and "--distort" in info["command"]
    assert isinstance(info["seed"], int)
    curve = info["test_error_per_epoch"]
    assert len(curve) == info["epochs"] and curve[-1] == pytest.approx(info["test_error"])
    with pretrained_path("softmax") as p:
        again = LeNet5.load(p)
    np.testing.assert_array_equal(again.params, model.params)


def test_threads_argument():
    assert load_pretrained(threads=1).threads == 1


def test_unknown_or_missing_head_names_it(monkeypatch):
    with pytest.raises(ValueError, match="'linear'"):
        load_pretrained("linear")
    from lenet_native import weights
    shipped = weights.pretrained_resource
    monkeypatch.setattr(weights, "pretrained_resource",  # an installation without the rbf file
                        lambda head: shipped("missing" if head == "rbf" else head))
    with pytest.raises(ValueError, match="'rbf' head.*available: 'softmax'"):
        load_pretrained("rbf")


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_accuracy_on_the_shipped_sample(head):
    m = load_pretrained(head)
    assert m.head == head and m.meta["pretrained"]["test_error"] <= 0.008
    images, labels = load_sample()
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8
    t0 = time.perf_counter()
    pred = m.predict(images)
    assert time.perf_counter() - t0 < 5
    assert np.mean(pred == labels) >= 0.99


@pytest.mark.parametrize("head", ["softmax", "rbf"])
def test_error_on_the_full_test_set(head, mnist_path):
    from lenet_native.datasets import load_mnist
    images, labels = load_mnist(mnist_path, split="test")
    m = load_pretrained(head)
    err = np.mean(m.predict(images) != labels)
    assert err <= 0.008, f"{head}: test error {100 * err:.2f}%"
    # the recorded error (up to a few digits that float rounding of other kernels may flip)
    assert err == pytest.approx(m.meta["pretrained"]["test_error"], abs=5e-4)


def test_sample_is_the_start_of_the_mnist_test_set(mnist_path):
    from lenet_native.datasets import load_mnist
    images, labels = load_mnist(mnist_path, split="test")
    s_img, s_lab = load_sample()
    np.testing.assert_array_equal(s_img, images[:500])
    np.testing.assert_array_equal(s_lab, labels[:500])
