"""LeNet-5 as a scikit-learn classifier (optional extra: ``pip install "lenet_native[sklearn]"``).

    >>> from lenet_native.sklearn import LeNet5Classifier
    >>> clf = LeNet5Classifier(epochs=5, random_state=0).fit(X_train, y_train)
    >>> clf.score(X_test, y_test)

``X`` holds 28x28 digit images, one per row: (n, 784) or (n, 28, 28), uint8 (0 = background,
255 = ink) or float on the scale 0..``pixel_max`` (255 by default, the scale of
``fetch_openml("mnist_784")``; 1.0 for images already divided by 255). ``y`` may hold any
label values, at most 10 distinct ones (the network has ten outputs); they are kept in
``classes_`` and class i is trained on output i.
"""
from __future__ import annotations

import numbers

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test
    raise ImportError("lenet_native.sklearn needs scikit-learn (1.6 or later), which is not "
                      "installed: pip install \"lenet_native[sklearn]\"") from exc

from .layout import HEADS, N_CLASSES
from .model import LeNet5

__all__ = ["LeNet5Classifier"]

N_OUTPUTS = N_CLASSES
SIDE = 28
_NO_LABELS = object()


class LeNet5Classifier(ClassifierMixin, BaseEstimator):
    """LeNet-5 (LeCun et al., 1998) trained by ``lenet_native``'s C kernels.

    Parameters
    ----------
    head : {"softmax", "rbf"}, default="softmax"
        Output layer: dense + softmax cross-entropy, or the paper's Euclidean RBF units.
    epochs : int, default=20
        Passes over the training data made by ``fit`` (``partial_fit`` makes one).
    lr : float or None, default=None
        Base learning rate of the minibatch SGD; None takes ``lenet_native.train``'s default
        for the head (0.1 softmax, 0.002 rbf). ``fit`` decays it over the epochs (cosine);
        ``partial_fit`` keeps it constant.
    batch_size : int, default=64
        SGD minibatch size.
    distort : bool, default=False
        Train on randomly distorted digits (the paper's affine distortions), drawn afresh
        every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and the shuffling (an int makes ``fit`` reproducible, bit
        for bit, whatever ``threads``).
    threads : int or None, default=None
        Threads of the C kernels; None = $LENET_NATIVE_THREADS or the CPU count.
    warm_start : bool, default=False
        If True, ``fit`` continues from the weights of the previous fit instead of starting
        from a fresh initialisation (the labels must be the same classes).
    pixel_max : float, default=255.0
        The ink value of float images (0 is the background); uint8 images are always 0..255.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen by ``fit`` (sorted); output i of the network is ``classes_[i]``.
    model_ : lenet_native.LeNet5
        The trained network.
    history_ : list of dict
        Per-epoch records of the training (loss, training error, seconds, lr, ...).
    n_epochs_ : int
        Epochs trained so far on these weights.
    n_features_in_ : int
        784.
    """

    def __init__(self, head="softmax", epochs=20, lr=None, batch_size=64, distort=False,
                 random_state=None, threads=None, warm_start=False, pixel_max=255.0):
        self.head = head
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.distort = distort
        self.random_state = random_state
        self.threads = threads
        self.warm_start = warm_start
        self.pixel_max = pixel_max

    # -- scikit-learn protocol ----------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True     # (n, 28, 28) images are taken as they are
        return tags

    def fit(self, X, y):
        """Train for ``epochs`` epochs (from a fresh initialisation unless ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n, 784) or (n, 28, 28)
            Digit images, uint8 or on the scale 0..``pixel_max``.
        y : array-like of shape (n,)
            Labels, any values, at most 10 distinct ones.

        Returns
        -------
        self
        """
        self._check_params()
        x, y = self._validate(X, y, reset=True)
        classes = np.unique(y)
        self._check_class_count(classes)
        fitted = hasattr(self, "model_")
        if self.warm_start and fitted:
            if not np.array_equal(classes, self.classes_):
                raise ValueError(f"warm_start: y has the classes {classes.tolist()}, the "
                                 f"previous fit {self.classes_.tolist()}")
        else:
            self.classes_ = classes
        return self._train(x, y, epochs=self.epochs, schedule=None,
                           fresh=not (self.warm_start and fitted))

    def partial_fit(self, X, y, classes=None):
        """One epoch of SGD over ``X``, ``y`` at the constant rate ``lr``.

        Parameters
        ----------
        X : array-like of shape (n, 784) or (n, 28, 28)
        y : array-like of shape (n,)
        classes : array-like, optional
            Every label the model will ever see; required on the first call, as for
            scikit-learn's other incremental classifiers.

        Returns
        -------
        self
        """
        self._check_params()
        first = not hasattr(self, "model_")
        x, y = self._validate(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("partial_fit: the first call needs classes= (every label the "
                                 "model will be trained on)")
            self.classes_ = np.unique(np.asarray(classes))
            self._check_class_count(self.classes_)
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"partial_fit: classes= {np.unique(classes).tolist()} differ from "
                             f"the first call's {self.classes_.tolist()}")
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(f"partial_fit: y holds labels {unknown.tolist()} that are not in "
                             f"classes_ {self.classes_.tolist()}")
        return self._train(x, y, epochs=1, schedule="constant", fresh=first)

    def predict_proba(self, X):
        """(n, n_classes) class probabilities: the softmax of the outputs of ``classes_``
        (of minus the RBF distances for the rbf head)."""
        z = self._scores(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably."""
        z = self._scores(X)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def predict(self, X):
        """The most likely label of each image (from ``classes_``)."""
        scores = self._scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    # -- internals ----------------------------------------------------------------------

    def _check_params(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(map(repr, HEADS))}; got {self.head!r}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer; got {v!r}")
        for name, allow_none in (("lr", True), ("pixel_max", False)):
            v = getattr(self, name)
            if v is None and allow_none:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive finite number"
                                 f"{' or None' if allow_none else ''}; got {v!r}")
        for name in ("distort", "warm_start"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @staticmethod
    def _check_class_count(classes):
        if len(classes) > N_OUTPUTS:
            raise ValueError(f"LeNet5Classifier has {N_OUTPUTS} outputs, so at most {N_OUTPUTS} "
                             f"classes; y has {len(classes)}")

    def _validate(self, X, y=_NO_LABELS, reset=False):
        """X -> network input (n, 32, 32) float32 (and y -> 1-D labels)."""
        if not hasattr(X, "shape"):   # lists, array-likes: (n, 28, 28) is seen once an array
            X = np.asarray(X)
        if len(X.shape) == 3:
            if tuple(X.shape[1:]) != (SIDE, SIDE):
                raise ValueError(f"LeNet5Classifier takes 28x28 images: X of shape {X.shape}")
            X = np.asarray(X).reshape(X.shape[0], SIDE * SIDE)
        kw = dict(reset=reset, dtype=[np.float64, np.float32, np.uint8], ensure_min_samples=1)
        if y is _NO_LABELS:
            X = validate_data(self, X, **kw)
        else:
            X, y = validate_data(self, X, y, **kw)
            check_classification_targets(y)
        if X.shape[1] != SIDE * SIDE:
            raise ValueError(f"LeNet5Classifier takes 28x28 digit images, one per row: X must "
                             f"have {SIDE * SIDE} columns (or shape (n, 28, 28)); got "
                             f"n_features = {X.shape[1]}")
        x = np.full((len(X), 32, 32), -0.1, dtype=np.float32)
        if X.dtype == np.uint8:
            scale = np.float32(1.275 / 255.0)
        else:
            scale = np.float32(1.275 / self.pixel_max)
        # background 0 -> -0.1, ink -> 1.175, as lenet_native.preprocess does for uint8
        x[:, 2:30, 2:30] = (X.reshape(-1, SIDE, SIDE).astype(np.float32) * scale - np.float32(0.1))
        if not np.isfinite(x).all():
            raise ValueError(f"X holds pixel values too large for float32 once scaled "
                             f"(pixel_max={self.pixel_max})")
        return x if y is _NO_LABELS else (x, y)

    def _train(self, x, y, epochs, schedule, fresh):
        from .distort import make_distorter
        from .training import train

        rng = check_random_state(self.random_state)
        init_seed, shuffle_seed = (int(s) for s in rng.randint(0, 2**31 - 1, size=2))
        if fresh:
            self.model_ = LeNet5(head=self.head, seed=init_seed, threads=self.threads)
            self.history_, self.n_epochs_ = [], 0
        else:
            self.model_.threads = self.threads
        if self.model_.head != self.head:
            raise ValueError(f"warm start: the model has the {self.model_.head!r} head, "
                             f"head={self.head!r} now")
        labels = np.searchsorted(self.classes_, y).astype(np.int32)
        history = train(self.model_, x, labels, epochs=epochs, batch_size=self.batch_size,
                        lr=self.lr, lr_schedule=schedule, seed=(shuffle_seed + self.n_epochs_) % 2**31,
                        threads=self.threads, progress=False,
                        distort=make_distorter() if self.distort else None)
        if history.interrupted:
            raise KeyboardInterrupt
        self.history_ = self.history_ + list(history)
        self.n_epochs_ += len(history)
        return self

    def _scores(self, X):
        check_is_fitted(self, "model_")
        x = self._validate(X, reset=False)
        out = self.model_.forward(x)[:, :len(self.classes_)].astype(np.float64)
        return -out if self.model_.head == "rbf" else out
