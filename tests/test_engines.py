"""The jobs of docs/dask.md on the other engines: Ray Data (map_batches with a callable class)
and Spark (predict_batch_udf). Each runs a whole engine locally (tens of seconds), so it is
marked slow, and skips, saying why, where the engine is not installed. The code under test is
the code the document shows; the answers must equal in-process predict's.
"""
import shutil

import numpy as np
import pytest

import lenet_native as ln
from lenet_native.idx import open_idx, write_idx

pytestmark = pytest.mark.slow

N = 3000


@pytest.fixture(scope="module")
def model():
    return ln.LeNet5(seed=11, threads=1)


@pytest.fixture(scope="module")
def images_file(tmp_path_factory):
    digits = np.random.default_rng(5).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    path = tmp_path_factory.mktemp("engines") / "images-idx3-ubyte"
    write_idx(path, digits)
    return path


class ScoreIdx:
    """Ray Data callable class (docs/dask.md): each actor unpickles the model once and
    memory-maps the IDX file once; a batch of ids becomes a batch of labels."""

    def __init__(self, model, path):
        self.model = model
        self.images = open_idx(path)

    def __call__(self, batch):
        ids = batch["id"]
        return {"id": ids, "label": self.model.predict(self.images[ids])}  # reads these only


def test_ray_data_map_batches(model, images_file):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        n = open_idx(images_file).shape[0]
        ds = ray.data.range(n).map_batches(
            ScoreIdx, fn_constructor_args=(model, str(images_file)), concurrency=2,
            batch_size=500, batch_format="numpy")
        ids, labels = [], []
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ids.append(batch["id"])
            labels.append(batch["label"])
    finally:
        ray.shutdown()
    ids, labels = np.concatenate(ids), np.concatenate(labels)
    order = np.argsort(ids)
    np.testing.assert_array_equal(ids[order], np.arange(n))  # every image exactly once
    np.testing.assert_array_equal(labels[order], model.predict(np.asarray(open_idx(images_file))))


def test_spark_predict_batch_udf(model, images_file):
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install pyspark; "
                                          "it also needs a Java runtime)")
    pytest.importorskip("pandas", reason="pandas is not installed (Spark's pandas UDFs need it)")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (Spark's pandas UDFs need it)")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH (Spark needs one)")
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql.types import LongType

    spark = (SparkSession.builder.master("local[2]").appName("lenet_native")
             .config("spark.ui.enabled", "false").getOrCreate())
    try:
        weights = spark.sparkContext.broadcast(model)  # pickled by its weights, ~240 KB

        def make_predict_fn():
            net = weights.value  # once per Python worker

            def predict(images):  # (B, 28, 28) from the flat array<int> column
                return net.predict(images.astype(np.uint8))
            return predict

        classify = predict_batch_udf(make_predict_fn, return_type=LongType(), batch_size=1024,
                                     input_tensor_shapes=[[28, 28]])
        digits = np.asarray(open_idx(images_file))
        df = spark.createDataFrame([(i, d.ravel().tolist()) for i, d in enumerate(digits)],
                                   "id long, image array<int>")
        rows = df.withColumn("label", classify("image")).select("id", "label").collect()
    finally:
        spark.stop()
    got = np.array([r["label"] for r in sorted(rows, key=lambda r: r["id"])])
    assert len(rows) == len(digits)
    np.testing.assert_array_equal(got, model.predict(digits))
