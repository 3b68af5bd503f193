"""The jobs of docs/dask.md on the other engines: Ray Data (map_batches with a callable class)
and Spark (predict_batch_udf). Each runs a whole engine locally (tens of seconds), so it is
marked slow (``-m slow`` selects them alone, ``-m "not slow"`` leaves them out), and skips,
saying why, where the engine is not installed.

The code under test is the document's own: the test takes the Python blocks of the "Ray
Data" and "Spark" sections of docs/dask.md unchanged (the definitions, then the usage
lines), runs them as a script in a separate process (as a user would: the script is
``__main__``) in a temporary folder holding 3,000 digits under the name the usage lines
read, and checks the labels the script wrote: every image exactly once, each equal to
in-process ``predict``'s. The process (and the engine's daemons, in its session) is killed
if it runs longer than TIMEOUT.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lenet_native as ln
from lenet_native.idx import write_idx

from conftest import child_env

pytestmark = pytest.mark.slow

DOC = Path(__file__).resolve().parent.parent / "docs" / "dask.md"
N = 3000
IDX_NAME = "t10k-images-idx3-ubyte"  # the name the document's usage lines read
TIMEOUT = 300  # seconds for a whole engine job (about 30 s on a loaded 2-core machine)


def doc_blocks(heading):
    """The ```python blocks of the section of docs/dask.md under ``## heading``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 2, f"docs/dask.md, {heading}: expected 2 python blocks " \
                             f"(definitions, usage), found {len(blocks)}"
    return blocks


def kill_session(sid):
    """SIGKILL every process of session ``sid`` (Ray's workers get process groups of their
    own within it; Linux's /proc lists them), then its process group where /proc is absent."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)"
            if int(fields[3]) == sid:  # state, ppid, pgrp, session
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, IndexError, ValueError):
            pass  # gone already
    try:
        os.killpg(sid, signal.SIGKILL)
    except OSError:
        pass


def run_doc(heading, folder):
    """Run the section's blocks, one after the other, as a script in ``folder``."""
    script = folder / "job.py"
    script.write_text("\n".join(doc_blocks(heading)), encoding="utf-8")
    env = child_env()
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network: nothing reported
    proc = subprocess.Popen([sys.executable, str(script)], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)  # the script and the engine's daemons and workers with it
        out, _ = proc.communicate()
        pytest.fail(f"docs/dask.md, {heading}: still running after {TIMEOUT} s; its output "
                    f"ends:\n{out[-4000:]}")
    print(out[-4000:])  # the engine's log, shown with -rP or -s
    assert proc.returncode == 0, f"docs/dask.md, {heading}: exit {proc.returncode}:\n" \
                                 f"{out[-4000:]}"


@pytest.fixture(scope="module")
def digits(mnist_test_sample):
    """3,000 digits: the 500 shipped MNIST test digits, then five copies of them each shifted
    by a random 0..2 pixels, so the labels vary and a misplaced label shows."""
    images = mnist_test_sample[0]
    rng = np.random.default_rng(5)
    copies = [images] + [np.roll(images, tuple(rng.integers(-2, 3, 2)), axis=(1, 2))
                         for _ in range(N // len(images) - 1)]
    return np.concatenate(copies)


@pytest.fixture(scope="module")
def expected(digits):
    labels = ln.LeNet5.pretrained(threads=1).predict(digits)
    assert len(np.unique(labels)) == 10  # a wrong order or a lost block cannot pass unseen
    return labels


@pytest.fixture
def workdir(tmp_path, digits):
    write_idx(tmp_path / IDX_NAME, digits)
    return tmp_path


def read_labels(folder):
    """(ids, labels) of the Parquet files under ``folder``, sorted by id."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder)
    ids, labels = table["id"].to_numpy(), table["label"].to_numpy()
    order = np.argsort(ids, kind="stable")
    return ids[order], labels[order]


def check(folder, expected):
    ids, labels = read_labels(folder)
    np.testing.assert_array_equal(ids, np.arange(N))  # every image exactly once
    np.testing.assert_array_equal(labels, expected)


def test_ray_data_map_batches(workdir, expected):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Ray Data needs it)")
    run_doc("Ray Data", workdir)  # ray.init(): a local instance, this machine's cores
    check(workdir / "labels", expected)


def test_spark_predict_batch_udf(workdir, expected):
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install pyspark; "
                                          "it also needs a Java runtime)")
    pytest.importorskip("pandas", reason="pandas is not installed (Spark's pandas UDFs need it)")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Spark's pandas UDFs need it)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime (java on PATH or JAVA_HOME; Spark needs one)")
    run_doc("Spark", workdir)  # local[2]; its workers run this Python (PYSPARK_PYTHON)
    check(workdir / "labels", expected)
