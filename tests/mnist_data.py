"""pytest hooks and the fixture shared by tests/ and benchmarks/ (both conftest.py files take
them from here): where the real MNIST files are.

This file is not a conftest.py at the root of the checkout on purpose: pytest would put the
checkout first on sys.path to import it, and the tests would then import the uncompiled
sources instead of the installed package.

This is the one place that looks for them, in this order:

1. ``--data DIR`` on the pytest command line;
2. the environment variable ``LENET_NATIVE_DATA`` (the package's own, see
   lenet_native.datasets);
3. ``../shared/data/mnist`` beside the checkout.

A folder named by 1 or 2 must hold the four MNIST files (``.gz`` or not): the tests that
use it fail if it does not. When neither is given and 3 does not hold them either, the
tests that need the real data are skipped (the others never need it).
"""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BESIDE_THE_CHECKOUT = ROOT.parent / "shared" / "data" / "mnist"
ENV_VAR = "LENET_NATIVE_DATA"
_MNIST = pytest.StashKey()


def pytest_addoption(parser):
    try:
        parser.addoption("--data", metavar="DIR", default=None,
                         help=f"folder holding the MNIST files for the tests that need them "
                              f"(default ${ENV_VAR}, else ../shared/data/mnist beside the checkout)")
    except ValueError:  # tests/ and benchmarks/ in one run: both conftests add it
        pass


def mnist_candidate(option, environ, invocation_dir):
    """(folder, where it came from) for the first of ``--data``, ``$LENET_NATIVE_DATA`` and
    ../shared/data/mnist that is given; a relative folder is taken from ``invocation_dir``."""
    for value, source in ((option, "--data"), (environ.get(ENV_VAR), f"${ENV_VAR}")):
        if value:
            folder = Path(value).expanduser()
            return (folder if folder.is_absolute() else Path(invocation_dir) / folder), source
    return BESIDE_THE_CHECKOUT, "default"


def pytest_configure(config):
    # read once, before any test's monkeypatch can change the environment
    config.stash[_MNIST] = mnist_candidate(config.getoption("--data"), os.environ,
                                           config.invocation_params.dir)


def pytest_report_header(config):
    folder, source = config.stash[_MNIST]
    return f"MNIST: {folder} ({'../shared/data/mnist' if source == 'default' else source})"


@pytest.fixture(scope="session")
def mnist_path(pytestconfig):
    """The folder holding the real MNIST files (all four). Skips the test when none was
    named and ../shared/data/mnist does not hold them; fails when ``--data`` or
    ``$LENET_NATIVE_DATA`` names a folder that does not."""
    from lenet_native.datasets import find_mnist

    folder, source = pytestconfig.stash[_MNIST]
    try:
        return find_mnist(folder)
    except FileNotFoundError as exc:
        if source == "default":
            pytest.skip(f"real MNIST not in {folder} (pass --data DIR or set {ENV_VAR})")
        pytest.fail(f"{source} names a folder without MNIST: {exc}", pytrace=False)
