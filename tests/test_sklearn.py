"""lenet_native.sklearn.LeNet5Classifier: scikit-learn's estimator checks (each one that cannot
apply to an image model listed with its reason, strictly: one that starts passing fails the
run), then the same properties those checks look for, tested on real digits, and Pipeline /
GridSearchCV. Skipped, saying why, when scikit-learn is not installed."""
from __future__ import annotations

import importlib
import pickle
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6",
                    reason="scikit-learn >= 1.6 is not installed (pip install \"lenet_native[sklearn]\")")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from lenet_native.sklearn import LeNet5Classifier  # noqa: E402

FAST = dict(epochs=1, random_state=0, threads=2)
# enough steps to leave the initial plateau on a few hundred digits (~0.1 s a fit): the rbf
# head, batches of 8, 3 epochs reach 70-78 % on the held-out digits (seeds 0, 1)
LEARNS = dict(head="rbf", batch_size=8, epochs=3, random_state=0, threads=2)

# The checks make their own data: 2 to 10 random features per sample. A LeNet-5 reads 28x28
# images (784 pixels) and refuses anything else, so every check that fits on such data fails
# at the feature count before it looks at what it checks. Each property they look for is
# tested below on real digits instead (the test named beside it).
_FEATURES = "fits on 2-10 random features; the model takes 784-pixel images"
NOT_FOR_IMAGES = {
    "check_fit_score_takes_y": _FEATURES + " (test_fit_returns_self_and_score_takes_y)",
    "check_estimators_overwrite_params": _FEATURES + " (test_fit_leaves_params_alone)",
    "check_dont_overwrite_parameters": _FEATURES + " (test_fit_leaves_params_alone)",
    "check_estimators_fit_returns_self": _FEATURES + " (test_fit_returns_self_and_score_takes_y)",
    "check_readonly_memmap_input": _FEATURES + " (test_input_forms)",
    "check_n_features_in_after_fitting": _FEATURES + " (test_wrong_inputs_are_refused)",
    "check_positive_only_tag_during_fit": _FEATURES + " (test_input_forms: negative floats)",
    "check_estimators_dtypes": _FEATURES + " (test_input_forms)",
    "check_dtype_object": _FEATURES + " (test_input_forms)",
    "check_pipeline_consistency": _FEATURES + " (test_reproducible_and_picklable)",
    "check_estimators_nan_inf": _FEATURES + " (test_wrong_inputs_are_refused)",
    "check_estimators_pickle": _FEATURES + " (test_reproducible_and_picklable)",
    "check_f_contiguous_array_estimator": _FEATURES + " (test_input_forms)",
    "check_classifiers_one_label": _FEATURES + " (test_one_class_and_one_sample)",
    "check_classifiers_classes": _FEATURES + " (test_any_label_values)",
    "check_estimators_partial_fit_n_features": _FEATURES + " (test_partial_fit)",
    "check_classifiers_train": _FEATURES + " (test_any_label_values, test_predict_proba)",
    "check_supervised_y_2d": _FEATURES + " (test_wrong_inputs_are_refused)",
    "check_methods_sample_order_invariance": _FEATURES + " (test_subsets_and_order)",
    "check_methods_subset_invariance": _FEATURES + " (test_subsets_and_order)",
    "check_fit2d_1sample": _FEATURES + " (test_one_class_and_one_sample)",
    "check_dict_unchanged": _FEATURES + " (test_fit_leaves_params_alone)",
    "check_fit_idempotent": _FEATURES + " (test_reproducible_and_picklable)",
    "check_fit_check_is_fitted": _FEATURES + " (test_unfitted)",
    "check_n_features_in": _FEATURES + " (test_wrong_inputs_are_refused)",
    "check_fit2d_predict1d": _FEATURES + " (test_wrong_inputs_are_refused)",
    "check_classifier_data_not_an_array": _FEATURES + " (test_input_forms: lists)",
}


@parametrize_with_checks([LeNet5Classifier(**FAST)],
                         expected_failed_checks=lambda est: NOT_FOR_IMAGES, xfail_strict=True)
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits(mnist_test_sample):
    """The first 500 MNIST test digits, shipped with the package (tests/conftest.py)."""
    images, labels = mnist_test_sample
    return images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def fitted(digits):
    images, labels = digits
    return LeNet5Classifier(**FAST).fit(images[:300].reshape(300, 784), labels[:300])


def test_any_label_values(digits):
    """Labels of any kind (strings here, not 0..9) come back as they went in; a few hundred
    digits already classify well above chance (0.1)."""
    images, labels = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = LeNet5Classifier(**LEARNS).fit(images[:400], names[labels[:400]])
    assert list(clf.classes_) == sorted(names)
    pred = clf.predict(images[400:])
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    assert clf.score(images[400:], names[labels[400:]]) > 0.5
    # three classes with odd values: outputs 0..2 of the network, the rest unused
    keep = np.isin(labels, [3, 5, 8])
    y = labels[keep] * 10 + 7
    clf3 = LeNet5Classifier(**FAST).fit(images[keep], y)
    assert list(clf3.classes_) == [37, 57, 87]
    assert set(clf3.predict(images[keep])) <= {37, 57, 87}
    assert clf3.predict_proba(images[keep]).shape == (keep.sum(), 3)


def test_more_than_ten_classes_is_a_clear_error(digits):
    images, _ = digits
    with pytest.raises(ValueError, match="10 outputs, so at most 10 classes; y has 11"):
        LeNet5Classifier(**FAST).fit(images[:22], np.arange(22) % 11)
    with pytest.raises(ValueError, match="at most 10 classes; y has 12"):
        LeNet5Classifier(**FAST).partial_fit(images[:5], np.zeros(5), classes=np.arange(12))


def test_predict_proba(fitted, digits):
    images, _ = digits
    p = fitted.predict_proba(images[300:])
    assert p.shape == (200, 10) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(fitted.classes_[p.argmax(axis=1)], fitted.predict(images[300:]))
    np.testing.assert_allclose(np.exp(fitted.predict_log_proba(images[300:])), p, rtol=1e-10)
    # the model's own probabilities when all ten classes are present
    np.testing.assert_allclose(p, fitted.model_.predict_proba(images[300:]), rtol=1e-5, atol=1e-7)


def test_rbf_head(digits):
    images, labels = digits
    clf = LeNet5Classifier(head="rbf", **FAST).fit(images[:300], labels[:300])
    out = clf.model_.forward(clf._validate(images[300:]))
    assert np.array_equal(clf.predict(images[300:]), out.argmin(axis=1))   # nearest prototype
    np.testing.assert_allclose(clf.predict_proba(images[300:]).sum(axis=1), 1.0)


def test_fit_returns_self_and_score_takes_y(digits):
    images, labels = digits
    clf = LeNet5Classifier(**FAST)
    assert clf.fit(images[:100], labels[:100]) is clf
    assert clf.partial_fit(images[:100], labels[:100]) is clf
    assert 0.0 <= clf.score(images[100:200], labels[100:200]) <= 1.0
    assert clf.n_features_in_ == 784 and clf.n_epochs_ == 2 and len(clf.history_) == 2


def test_fit_leaves_params_alone(digits):
    images, labels = digits
    clf = LeNet5Classifier(**FAST)
    params = clf.get_params()
    clf.fit(images[:64], labels[:64])
    assert clf.get_params() == params
    before = dict(clf.__dict__)
    clf.predict(images[:10]), clf.predict_proba(images[:10]), clf.score(images[:10], labels[:10])
    assert clf.__dict__.keys() == before.keys()
    assert all(clf.__dict__[k] is v for k, v in before.items())


def test_reproducible_and_picklable(fitted, digits):
    """Same random_state: the same weights bit for bit (any thread count), fit twice gives the
    same model; pickling and clone keep what they should."""
    images, labels = digits
    X, y = images[:300].reshape(300, 784), labels[:300]
    one = LeNet5Classifier(epochs=1, random_state=0, threads=1).fit(X, y)
    assert np.array_equal(one.predict_proba(images[300:]), fitted.predict_proba(images[300:]))
    again = clone(fitted).fit(X, y)
    assert np.array_equal(again.predict_proba(images[300:]), fitted.predict_proba(images[300:]))
    other = LeNet5Classifier(epochs=1, random_state=1, threads=2).fit(X, y)
    assert not np.array_equal(other.predict_proba(images[300:]), fitted.predict_proba(images[300:]))
    restored = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(restored.predict_proba(images[300:]), fitted.predict_proba(images[300:]))
    assert list(restored.classes_) == list(fitted.classes_)
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "model_")


def test_unfitted(digits):
    clf = LeNet5Classifier()
    for method in ("predict", "predict_proba", "predict_log_proba"):
        with pytest.raises(NotFittedError):
            getattr(clf, method)(digits[0][:3])


def test_input_forms(fitted, digits):
    """(n, 784) and (n, 28, 28); uint8, int, float32/64 on the 0..pixel_max scale (255, or 1.0
    for digits scaled to [0, 1]); lists, read-only and Fortran-ordered arrays."""
    images = digits[0][300:340]
    want = fitted.predict_proba(images)
    flat = images.reshape(40, 784)
    for X in (flat, flat.astype(np.int64), flat.astype(np.float32), flat.astype(np.float64),
              np.asfortranarray(flat), flat.tolist(), images.tolist()):
        np.testing.assert_allclose(fitted.predict_proba(X), want, rtol=1e-6, atol=1e-9)
    ro = flat.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(fitted.predict_proba(ro), want)
    scaled = clone(fitted).set_params(pixel_max=1.0)
    scaled.model_, scaled.classes_, scaled.n_features_in_ = fitted.model_, fitted.classes_, 784
    np.testing.assert_allclose(scaled.predict_proba(flat / 255.0), want, rtol=1e-5, atol=1e-7)
    # values outside 0..pixel_max are extrapolated, not refused (the network is linear there)
    assert fitted.predict(-flat.astype(np.float64)).shape == (40,)


def test_wrong_inputs_are_refused(fitted, digits):
    images, labels = digits
    with pytest.raises(ValueError, match="X has 100 features, but LeNet5Classifier is expecting 784"):
        fitted.predict(np.zeros((3, 100)))
    with pytest.raises(ValueError, match="784 columns .* n_features = 10"):
        LeNet5Classifier(**FAST).fit(np.zeros((3, 10)), [0, 1, 2])
    with pytest.raises(ValueError, match="28x28 images"):
        fitted.predict(np.zeros((3, 32, 32)))
    bad = images[:4].reshape(4, 784).astype(np.float64)
    bad[1, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(bad)
    bad[1, 5] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        LeNet5Classifier(**FAST).fit(bad, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="2D array"):
        fitted.predict(images[0].reshape(784))
    with pytest.raises(ValueError, match="Unknown label type"):
        LeNet5Classifier(**FAST).fit(images[:4], [0.5, 1.5, 2.5, 3.5])
    with pytest.raises(ValueError, match="requires y"):
        LeNet5Classifier(**FAST).fit(images[:4], None)
    with pytest.warns(Warning, match="column-vector y"):
        LeNet5Classifier(**FAST).fit(images[:10], labels[:10, None])
    for name, value in (("epochs", 0), ("batch_size", 1.5), ("lr", -1.0), ("head", "svm"),
                        ("pixel_max", 0), ("distort", "yes")):
        with pytest.raises(ValueError, match=name):
            LeNet5Classifier(**{**FAST, name: value}).fit(images[:4], labels[:4])


def test_subsets_and_order(fitted, digits):
    images = digits[0][300:364]
    p = fitted.predict_proba(images)
    np.testing.assert_array_equal(fitted.predict_proba(images[:7]), p[:7])
    order = np.random.default_rng(0).permutation(64)
    np.testing.assert_array_equal(fitted.predict_proba(images[order]), p[order])


def test_one_class_and_one_sample(digits):
    images, labels = digits
    clf = LeNet5Classifier(**FAST).fit(images[:20], np.full(20, 4))
    assert np.all(clf.predict(images[20:30]) == 4)
    np.testing.assert_array_equal(clf.predict_proba(images[20:30]), 1.0)
    assert LeNet5Classifier(**FAST).fit(images[:1], labels[:1]).predict(images[:2]).shape == (2,)


def test_partial_fit(digits):
    images, labels = digits
    clf = LeNet5Classifier(random_state=0, threads=2)
    with pytest.raises(ValueError, match="first call needs classes="):
        clf.partial_fit(images[:50], labels[:50])
    clf.partial_fit(images[:150], labels[:150], classes=np.arange(10))
    first = clf.model_.state_dict()
    clf.partial_fit(images[150:300], labels[150:300])
    assert clf.n_epochs_ == 2 and len(clf.history_) == 2
    assert clf.history_[0]["lr"] == clf.history_[1]["lr"]                  # constant rate
    assert not np.array_equal(first["c1.weight"], clf.model_.state_dict()["c1.weight"])
    with pytest.raises(ValueError, match="not in classes_"):
        LeNet5Classifier(**FAST).partial_fit(images[:5], [0, 1, 2, 3, 9], classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="expecting 784 features"):
        clf.partial_fit(np.zeros((2, 5)), [0, 1])
    with pytest.raises(ValueError, match="differ from the first call"):
        clf.partial_fit(images[:5], labels[:5], classes=[0, 1])


def test_warm_start(digits):
    images, labels = digits
    X, y = images[:200], labels[:200]
    cold = LeNet5Classifier(**FAST).fit(X, y)
    warm = LeNet5Classifier(**FAST, warm_start=True).fit(X, y)
    assert np.array_equal(warm.predict_proba(images[300:]), cold.predict_proba(images[300:]))
    model = warm.model_
    warm.fit(X, y)
    assert warm.model_ is model and warm.n_epochs_ == 2
    assert not np.array_equal(warm.predict_proba(images[300:]), cold.predict_proba(images[300:]))
    with pytest.raises(ValueError, match="warm_start"):
        warm.fit(X[:40], np.where(y[:40] == 0, 0, 1) + 20)


def test_pipeline_and_grid_search(digits):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    images, labels = digits
    pipe = make_pipeline(FunctionTransformer(lambda X: np.asarray(X, np.float64) / 255.0),
                         LeNet5Classifier(pixel_max=1.0, **LEARNS))
    grid = GridSearchCV(pipe, {"lenet5classifier__batch_size": [8, 64],
                               "lenet5classifier__head": ["softmax", "rbf"]}, cv=2)
    grid.fit(images[:300].reshape(300, 784), labels[:300])
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_[-1].n_epochs_ == 3
    assert grid.score(images[300:].reshape(200, 784), labels[300:]) > 0.4
    assert grid.predict(images[300:].reshape(200, 784)).shape == (200,)


def test_missing_extra(monkeypatch):
    monkeypatch.delitem(sys.modules, "lenet_native.sklearn")
    monkeypatch.setitem(sys.modules, "sklearn", None)
    for name in [m for m in sys.modules if m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "lenet_native\[sklearn\]"'):
        importlib.import_module("lenet_native.sklearn")
