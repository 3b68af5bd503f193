"""LeNet-5 in plain NumPy: the test oracle and the benchmark baseline.

This module computes exactly what lenet_native's C kernels compute, written
to be read: one small function per layer (forward and backward), then the
whole network forward, its gradient (back-propagation) and the paper's
Gauss-Newton estimate of the diagonal Hessian.  Everything is vectorised over
the batch and over pixels; the only Python loops are over the 25 taps of a
5x5 kernel and over the layers.

Shapes and names follow the PyTorch convention: images are (N, C, H, W),
conv weights (out_maps, in_maps, 5, 5), dense weights (out, in).  ``params``
is a dict keyed like the weight interchange format (docs/design.md, "Parameter layout"):

    c1.weight (6,1,5,5)   c1.bias (6,)    s2.weight (6,)   s2.bias (6,)
    c3.weight (16,6,5,5)  c3.bias (16,)   s4.weight (16,)  s4.bias (16,)
    c5.weight (120,16,5,5) c5.bias (120,) f6.weight (84,120) f6.bias (84,)
    softmax head: out.weight (10,84), out.bias (10,)
    rbf head:     out.prototypes (10,84)  (fixed, not trained)

"c3.table" may be present and is ignored: this module always uses its own
copy of the paper's Table I (``C3_TABLE``) and multiplies c3.weight by it, so
whatever is stored at unconnected positions has no effect.

The network (LeCun, Bottou, Bengio, Haffner 1998, section II.B):

    input (N,1,32,32)
    C1 = f(conv5x5(input))       (N,6,28,28)
    S2 = f(subsample(C1))        (N,6,14,14)
    C3 = f(conv5x5(S2), Table I) (N,16,10,10)
    S4 = f(subsample(C3))        (N,16,5,5)
    C5 = f(conv5x5(S4))          (N,120)      (the 1x1 maps, flattened)
    F6 = f(dense(C5))            (N,84)
    output: softmax head  logits = dense(F6)            (N,10), cross-entropy
            rbf head      y_i = sum_j (F6_j - w_ij)^2   (N,10), paper eq. 9

with the squashing function f(a) = A * tanh(S * a), A = 1.7159, S = 2/3.

Dtypes: every function computes in the floating dtype of its inputs
(``np.result_type`` of the arrays, at least float32): float32 in -> float32
out, float64 in -> float64 out, which is what finite-difference checks need.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .layout import HEADS

__all__ = [
    "A", "S", "RBF_J", "C3_TABLE", "HEADS",
    "squash", "squash_grad",
    "conv5x5", "conv5x5_backward",
    "subsample", "subsample_backward",
    "dense", "dense_backward",
    "rbf", "rbf_backward",
    "softmax_xent", "rbf_loss",
    "activations", "forward", "loss_and_grad", "hessian_diag",
    "trainable_keys", "init_params",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

#: Squashing function f(a) = A * tanh(S * a); chosen so that f(1) = 1, f(-1) = -1.
A = 1.7159
S = 2.0 / 3.0

#: The constant j of the RBF loss (paper eq. 9).
RBF_J = 0.1

# Paper, Table I: which S2 maps (columns 0..5) each C3 map (rows 0..15) reads.
_C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),  # 3 inputs
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5),            # 4 contiguous
    (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),                          # 4 non-contiguous
    (0, 1, 2, 3, 4, 5),                                                # all 6
)


def _make_c3_table() -> np.ndarray:
    table = np.zeros((16, 6), dtype=bool)
    for c3_map, s2_maps in enumerate(_C3_CONNECTIONS):
        table[c3_map, list(s2_maps)] = True
    table.flags.writeable = False
    return table


#: (16, 6) bool: C3_TABLE[m, c] is True when C3 map m reads S2 map c (60 True).
C3_TABLE = _make_c3_table()
_C3_MASK = C3_TABLE[:, :, None, None]  # broadcasts against (16, 6, 5, 5)

_TRAINABLE_COMMON = (
    "c1.weight", "c1.bias", "s2.weight", "s2.bias",
    "c3.weight", "c3.bias", "s4.weight", "s4.bias",
    "c5.weight", "c5.bias", "f6.weight", "f6.bias",
)


def trainable_keys(head: str) -> tuple[str, ...]:
    """Names of the trainable arrays (the keys of the gradient dict) for ``head``."""
    head = _check_head(head)
    return _TRAINABLE_COMMON + (("out.weight", "out.bias") if head == "softmax" else ())


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def _float_dtype(*arrays) -> np.dtype:
    """The dtype to compute in: the result type of the inputs, at least float32."""
    return np.result_type(*(np.asarray(a) for a in arrays), np.float32)


def _check_head(head: str) -> str:
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return head


def _check_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({n},), "
                         f"got {labels.dtype} {labels.shape}")
    if n and (labels.min() < 0 or labels.max() > 9):
        raise ValueError("labels must be in 0..9")
    return labels


# --------------------------------------------------------------------------
# Squashing function
# --------------------------------------------------------------------------

def squash(a):
    """f(a) = A * tanh(S * a)."""
    a = np.asarray(a)
    return A * np.tanh(S * a)


def squash_grad(a):
    """f'(a) = A * S * (1 - tanh(S * a)**2)."""
    a = np.asarray(a)
    t = np.tanh(S * a)
    return (A * S) * (1 - t * t)


# --------------------------------------------------------------------------
# Layers: forward
# --------------------------------------------------------------------------

def conv5x5(x, w, b):
    """Valid 5x5 cross-correlation plus bias (pre-activation), no kernel flip.

    x (N, C, H, W), w (M, C, 5, 5), b (M,) -> (N, M, H-4, W-4) with

        out[n, m, p, q] = b[m] + sum_{c, i, j} x[n, c, p+i, q+j] * w[m, c, i, j]
    """
    dtype = _float_dtype(x, w, b)
    x, w, b = (np.asarray(v, dtype) for v in (x, w, b))
    if x.ndim != 4 or w.ndim != 4 or w.shape[2:] != (5, 5) or w.shape[1] != x.shape[1] \
            or b.shape != (w.shape[0],):
        raise ValueError(f"conv5x5: bad shapes x {x.shape}, w {w.shape}, b {b.shape}")
    # windows[n, c, p, q, i, j] = x[n, c, p+i, q+j]  (a view, no copy)
    windows = sliding_window_view(x, (5, 5), axis=(2, 3))
    # contract over (c, i, j): result (N, H-4, W-4, M)
    out = np.tensordot(windows, w, axes=([1, 4, 5], [1, 2, 3]))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) + b[None, :, None, None]


def _block_sums(x):
    """Sum of each non-overlapping 2x2 block: (N, C, H, W) -> (N, C, H/2, W/2)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"subsample: H and W must be even, got {x.shape}")
    return x.reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))


def subsample(x, coef, bias):
    """LeNet subsampling (pre-activation): coef[c] * (2x2 block sum) + bias[c].

    x (N, C, H, W) with even H, W; coef, bias (C,) -> (N, C, H/2, W/2).
    """
    dtype = _float_dtype(x, coef, bias)
    x, coef, bias = (np.asarray(v, dtype) for v in (x, coef, bias))
    if x.ndim != 4 or coef.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"subsample: bad shapes x {x.shape}, coef {coef.shape}, "
                         f"bias {bias.shape}")
    return coef[None, :, None, None] * _block_sums(x) + bias[None, :, None, None]


def dense(x, w, b):
    """Fully connected layer (pre-activation): x (N, K), w (M, K), b (M,) -> x @ w.T + b."""
    dtype = _float_dtype(x, w, b)
    x, w, b = (np.asarray(v, dtype) for v in (x, w, b))
    if x.ndim != 2 or w.ndim != 2 or w.shape[1] != x.shape[1] or b.shape != (w.shape[0],):
        raise ValueError(f"dense: bad shapes x {x.shape}, w {w.shape}, b {b.shape}")
    return x @ w.T + b


def rbf(x, prototypes):
    """Euclidean RBF units: x (N, K), prototypes (M, K) -> y (N, M),
    y[n, i] = sum_j (x[n, j] - prototypes[i, j])**2."""
    dtype = _float_dtype(x, prototypes)
    x, p = np.asarray(x, dtype), np.asarray(prototypes, dtype)
    if x.ndim != 2 or p.ndim != 2 or p.shape[1] != x.shape[1]:
        raise ValueError(f"rbf: bad shapes x {x.shape}, prototypes {p.shape}")
    diff = x[:, None, :] - p[None, :, :]  # (N, M, K)
    return np.sum(diff * diff, axis=2)


# --------------------------------------------------------------------------
# Layers: backward (each returns fresh gradient arrays)
# --------------------------------------------------------------------------

def conv5x5_backward(dout, x, w):
    """Gradients of conv5x5: dout (N, M, H-4, W-4) -> (dx, dw, db).

        dw[m, c, i, j] = sum_{n, p, q} dout[n, m, p, q] * x[n, c, p+i, q+j]
        db[m]          = sum_{n, p, q} dout[n, m, p, q]
        dx[n, c, p+i, q+j] += sum_m dout[n, m, p, q] * w[m, c, i, j]   (each tap i, j)
    """
    dtype = _float_dtype(dout, x, w)
    dout, x, w = (np.asarray(v, dtype) for v in (dout, x, w))
    n, c, h, wd = x.shape
    m = w.shape[0]
    ho, wo = h - 4, wd - 4
    if dout.shape != (n, m, ho, wo):
        raise ValueError(f"conv5x5_backward: dout {dout.shape}, expected {(n, m, ho, wo)}")

    windows = sliding_window_view(x, (5, 5), axis=(2, 3))           # (N, C, Ho, Wo, 5, 5)
    dw = np.tensordot(dout, windows, axes=([0, 2, 3], [0, 2, 3]))   # (M, C, 5, 5)
    db = dout.sum(axis=(0, 2, 3))

    # dx: every tap (i, j) of the kernel sends dout back to the input pixels it read.
    dx = np.zeros_like(x)
    dout_nhwm = dout.transpose(0, 2, 3, 1)                           # (N, Ho, Wo, M)
    for i in range(5):
        for j in range(5):
            contrib = dout_nhwm @ w[:, :, i, j]                      # (N, Ho, Wo, C)
            dx[:, :, i:i + ho, j:j + wo] += contrib.transpose(0, 3, 1, 2)
    return dx, dw, db


def subsample_backward(dout, x, coef):
    """Gradients of subsample: dout (N, C, H/2, W/2) -> (dx, dcoef, dbias).

        dcoef[c] = sum dout * (2x2 block sum),  dbias[c] = sum dout,
        dx = coef[c] * dout copied to each of the 4 pixels of its block.
    """
    dtype = _float_dtype(dout, x, coef)
    dout, x, coef = (np.asarray(v, dtype) for v in (dout, x, coef))
    blocks = _block_sums(x)
    if dout.shape != blocks.shape:
        raise ValueError(f"subsample_backward: dout {dout.shape}, expected {blocks.shape}")
    dcoef = np.sum(dout * blocks, axis=(0, 2, 3))
    dbias = dout.sum(axis=(0, 2, 3))
    dx = np.repeat(np.repeat(dout * coef[None, :, None, None], 2, axis=2), 2, axis=3)
    return dx, dcoef, dbias


def dense_backward(dout, x, w):
    """Gradients of dense: dout (N, M) -> (dx = dout @ w, dw = dout.T @ x, db = sum_n dout)."""
    dtype = _float_dtype(dout, x, w)
    dout, x, w = (np.asarray(v, dtype) for v in (dout, x, w))
    if dout.shape != (x.shape[0], w.shape[0]):
        raise ValueError(f"dense_backward: dout {dout.shape}, expected {(x.shape[0], w.shape[0])}")
    return dout @ w, dout.T @ x, dout.sum(axis=0)


def rbf_backward(dy, x, prototypes):
    """Gradient of rbf wrt its input: dx[n, j] = sum_i dy[n, i] * 2 * (x[n, j] - w[i, j]).

    The prototypes are fixed, so no gradient is returned for them.
    """
    dtype = _float_dtype(dy, x, prototypes)
    dy, x, p = (np.asarray(v, dtype) for v in (dy, x, prototypes))
    if dy.shape != (x.shape[0], p.shape[0]):
        raise ValueError(f"rbf_backward: dy {dy.shape}, expected {(x.shape[0], p.shape[0])}")
    # sum_i dy_i * 2 (x - w_i) = 2 * (x * sum_i dy_i - dy @ W)
    return 2 * (x * dy.sum(axis=1, keepdims=True) - dy @ p)


# --------------------------------------------------------------------------
# Losses (mean over the batch; the returned gradient is of the mean)
# --------------------------------------------------------------------------

def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def softmax_xent(logits, labels):
    """Softmax + cross-entropy, averaged over the batch.

    loss = mean_n ( -log softmax(logits[n])[labels[n]] );
    dlogits = (softmax(logits) - onehot(labels)) / N.
    """
    logits = np.asarray(logits)
    logits = logits.astype(_float_dtype(logits), copy=False)
    n = logits.shape[0]
    labels = _check_labels(labels, n)
    logp = _log_softmax(logits)
    rows = np.arange(n)
    loss = -np.mean(logp[rows, labels])
    dlogits = np.exp(logp)
    dlogits[rows, labels] -= 1
    dlogits /= n
    return loss, dlogits


def _rbf_log_terms(y):
    """log q for the RBF loss: column 0 is the constant exp(-j), columns 1.. are
    exp(-y_i); both normalised by Z = exp(-j) + sum_i exp(-y_i). Returns (log q, log Z)."""
    n = y.shape[0]
    z = np.concatenate([np.full((n, 1), -RBF_J, dtype=y.dtype), -y], axis=1)  # (N, 11)
    zmax = z.max(axis=1, keepdims=True)
    log_z = zmax + np.log(np.sum(np.exp(z - zmax), axis=1, keepdims=True))    # (N, 1)
    return z - log_z, log_z[:, 0]


def rbf_loss(y, labels):
    """The paper's RBF loss (eq. 9), averaged over the batch.

        E = y_correct + log( exp(-j) + sum_i exp(-y_i) ),   j = RBF_J = 0.1

    computed with a stable log-sum-exp. With q_i = exp(-y_i) / (exp(-j) + sum_k exp(-y_k)):
        dE/dy_i = [i == correct] - q_i,   returned divided by N (gradient of the mean).
    """
    y = np.asarray(y)
    y = y.astype(_float_dtype(y), copy=False)
    n = y.shape[0]
    labels = _check_labels(labels, n)
    rows = np.arange(n)
    log_q, log_z = _rbf_log_terms(y)
    loss = np.mean(y[rows, labels] + log_z)
    dy = -np.exp(log_q[:, 1:])
    dy[rows, labels] += 1
    dy /= n
    return loss, dy


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------

def _as_images(x, dtype):
    x = np.asarray(x, dtype)
    if x.ndim == 3:
        x = x[:, None, :, :]
    if x.ndim != 4 or x.shape[1:] != (1, 32, 32):
        raise ValueError(f"x must be (N, 32, 32) or (N, 1, 32, 32), got {x.shape}")
    return x


def _run(params, x, head):
    """Forward pass keeping what backward needs.

    Returns (p, w3, pre, act): p the params cast to the compute dtype, w3 the
    masked C3 weights, pre[layer] the pre-activations a, act[layer] the
    outputs (act["input"] is the (N,1,32,32) input, act["output"] the head output).
    """
    head = _check_head(head)
    keys = _TRAINABLE_COMMON + (("out.weight", "out.bias") if head == "softmax"
                                else ("out.prototypes",))
    missing = [k for k in keys if k not in params]
    if missing:
        raise KeyError(f"params lack {missing} (head {head!r})")
    dtype = _float_dtype(x, *(params[k] for k in keys))
    p = {k: np.asarray(params[k], dtype) for k in keys}
    w3 = p["c3.weight"] * _C3_MASK  # Table I: unconnected pairs contribute nothing

    act = {"input": _as_images(x, dtype)}
    pre = {}
    n = act["input"].shape[0]

    pre["c1"] = conv5x5(act["input"], p["c1.weight"], p["c1.bias"])
    act["c1"] = squash(pre["c1"])
    pre["s2"] = subsample(act["c1"], p["s2.weight"], p["s2.bias"])
    act["s2"] = squash(pre["s2"])
    pre["c3"] = conv5x5(act["s2"], w3, p["c3.bias"])
    act["c3"] = squash(pre["c3"])
    pre["s4"] = subsample(act["c3"], p["s4.weight"], p["s4.bias"])
    act["s4"] = squash(pre["s4"])
    pre["c5"] = conv5x5(act["s4"], p["c5.weight"], p["c5.bias"]).reshape(n, 120)
    act["c5"] = squash(pre["c5"])
    pre["f6"] = dense(act["c5"], p["f6.weight"], p["f6.bias"])
    act["f6"] = squash(pre["f6"])
    if head == "softmax":
        act["output"] = dense(act["f6"], p["out.weight"], p["out.bias"])
    else:
        act["output"] = rbf(act["f6"], p["out.prototypes"])
    return p, w3, pre, act


def activations(params, x, head="softmax"):
    """Outputs of every layer for images x ((N, 32, 32) or (N, 1, 32, 32)).

    Returns a dict with keys "c1" (N,6,28,28), "s2" (N,6,14,14), "c3"
    (N,16,10,10), "s4" (N,16,5,5), "c5" (N,120), "f6" (N,84) -- all after the
    squashing function -- and "output" (N,10): the logits (softmax head) or
    the RBF distances y (rbf head).
    """
    _, _, _, act = _run(params, x, head)
    return {k: act[k] for k in ("c1", "s2", "c3", "s4", "c5", "f6", "output")}


def forward(params, x, head="softmax"):
    """The (N, 10) network output: logits (softmax head) or RBF distances (rbf head).

    Prediction is argmax of the logits, or argmin of the distances.
    """
    return _run(params, x, head)[3]["output"]


def loss_and_grad(params, x, labels, head="softmax"):
    """Mean loss over the batch and its gradient wrt every trainable array.

    Returns (loss, grads); grads is keyed like params (``trainable_keys(head)``,
    so no "out.prototypes" or "c3.table"), each array shaped like its parameter.
    grads["c3.weight"] is dense (16,6,5,5) and exactly 0 at unconnected pairs.
    """
    p, w3, pre, act = _run(params, x, head)
    g = {}

    # Output layer and loss.
    if head == "softmax":
        loss, d_out = softmax_xent(act["output"], labels)
        d_f6, g["out.weight"], g["out.bias"] = dense_backward(d_out, act["f6"], p["out.weight"])
    else:
        loss, d_out = rbf_loss(act["output"], labels)
        d_f6 = rbf_backward(d_out, act["f6"], p["out.prototypes"])

    # Each layer: through the squash (d_a = f'(a) * d_out), then the layer itself.
    d_a = d_f6 * squash_grad(pre["f6"])
    d_c5, g["f6.weight"], g["f6.bias"] = dense_backward(d_a, act["c5"], p["f6.weight"])

    d_a = (d_c5 * squash_grad(pre["c5"]))[:, :, None, None]   # C5 maps are 1x1
    d_s4, g["c5.weight"], g["c5.bias"] = conv5x5_backward(d_a, act["s4"], p["c5.weight"])

    d_a = d_s4 * squash_grad(pre["s4"])
    d_c3, g["s4.weight"], g["s4.bias"] = subsample_backward(d_a, act["c3"], p["s4.weight"])

    d_a = d_c3 * squash_grad(pre["c3"])
    d_s2, d_w3, g["c3.bias"] = conv5x5_backward(d_a, act["s2"], w3)
    g["c3.weight"] = d_w3 * _C3_MASK

    d_a = d_s2 * squash_grad(pre["s2"])
    d_c1, g["s2.weight"], g["s2.bias"] = subsample_backward(d_a, act["c1"], p["s2.weight"])

    d_a = d_c1 * squash_grad(pre["c1"])
    _, g["c1.weight"], g["c1.bias"] = conv5x5_backward(d_a, act["input"], p["c1.weight"])

    return loss, {k: g[k] for k in trainable_keys(head)}


def _subsample_hessian(h_a, x, coef):
    """Second-derivative rule of subsample (see hessian_diag): (h_x, h_coef, h_bias)."""
    blocks = _block_sums(x)
    h_coef = np.sum(h_a * blocks * blocks, axis=(0, 2, 3))
    h_bias = h_a.sum(axis=(0, 2, 3))
    h_x = np.repeat(np.repeat(h_a * (coef * coef)[None, :, None, None], 2, axis=2), 2, axis=3)
    return h_x, h_coef, h_bias


def hessian_diag(params, x, labels, head="softmax"):
    """Gauss-Newton estimate of the diagonal second derivatives of the MEAN loss.

    This is the "back-propagation of second derivatives" of LeCun et al. 1998,
    Appendix C (and "Efficient BackProp"), used by the stochastic diagonal
    Levenberg-Marquardt step eta / (mu + h_kk).  Off-diagonal terms are
    dropped and so are the terms "first derivative times second derivative
    of a layer" (Gauss-Newton), which keeps every estimate >= 0.  Writing h_v
    for the estimate of d2E/dv2:

    Output head (per sample):
      softmax + cross-entropy:  h_logit_i = p_i (1 - p_i),  p = softmax(logits);
        then the output dense layer as below.
      rbf (paper eq. 9):  q_i = exp(-y_i) / (exp(-j) + sum_k exp(-y_k)),
        h_y_i = q_i (1 - q_i), and for the F6 output x:
        h_x_j = 2 * 1 + sum_i h_y_i * (2 (x_j - w_ij))^2
        (the 2 * 1 is the exact second derivative of the linear y_correct term:
        d2y_c/dx_j2 = 2 times dE/dy_c = 1 from that term; the log-sum-exp
        part is taken in Gauss-Newton form).

    Through a squash x = f(a):  h_a = f'(a)^2 * h_x.

    Through a weight layer (conv or dense) a_m = b_m + sum_k w_mk x_k, summing
    over all connections (weight sharing: over all positions and samples):
      h_w = sum x^2 * h_a,   h_b = sum h_a,   h_x_prev = sum w^2 * h_a
    -- i.e. the first-derivative rules applied to x^2 and w^2.  C3 uses only
    the connected pairs of Table I (unconnected entries are exactly 0).

    Through subsampling a = coef * s + bias, s = sum of the 2x2 block:
      h_coef = sum s^2 * h_a,   h_bias = sum h_a,
      h_x = coef^2 * h_a for each of the 4 inputs of the block.

    Per-sample values are averaged over the batch (divided by N), matching the
    mean loss.  Returns a dict keyed like the gradients of ``loss_and_grad``.
    The estimate does not depend on the labels (both heads' h are label-free);
    they are taken, and validated, for symmetry with ``loss_and_grad``.
    """
    p, w3, pre, act = _run(params, x, head)
    n = act["input"].shape[0]
    labels = _check_labels(labels, n)
    h = {}

    if head == "softmax":
        prob = np.exp(_log_softmax(act["output"]))
        h_out = prob * (1 - prob) / n
        sq_f6 = act["f6"] ** 2
        h_f6, h["out.weight"], h["out.bias"] = dense_backward(h_out, sq_f6, p["out.weight"] ** 2)
    else:
        log_q, _ = _rbf_log_terms(act["output"])
        q = np.exp(log_q[:, 1:])
        h_y = q * (1 - q) / n
        diff = act["f6"][:, None, :] - p["out.prototypes"][None, :, :]   # (N, 10, 84)
        h_f6 = 2 * 1 / n + np.einsum("ni,nij->nj", h_y, (2 * diff) ** 2)

    h_a = h_f6 * squash_grad(pre["f6"]) ** 2
    h_c5, h["f6.weight"], h["f6.bias"] = dense_backward(h_a, act["c5"] ** 2, p["f6.weight"] ** 2)

    h_a = (h_c5 * squash_grad(pre["c5"]) ** 2)[:, :, None, None]
    h_s4, h["c5.weight"], h["c5.bias"] = conv5x5_backward(h_a, act["s4"] ** 2, p["c5.weight"] ** 2)

    h_a = h_s4 * squash_grad(pre["s4"]) ** 2
    h_c3, h["s4.weight"], h["s4.bias"] = _subsample_hessian(h_a, act["c3"], p["s4.weight"])

    h_a = h_c3 * squash_grad(pre["c3"]) ** 2
    h_s2, h_w3, h["c3.bias"] = conv5x5_backward(h_a, act["s2"] ** 2, w3 ** 2)
    h["c3.weight"] = h_w3 * _C3_MASK

    h_a = h_s2 * squash_grad(pre["s2"]) ** 2
    h_c1, h["s2.weight"], h["s2.bias"] = _subsample_hessian(h_a, act["c1"], p["s2.weight"])

    h_a = h_c1 * squash_grad(pre["c1"]) ** 2
    _, h["c1.weight"], h["c1.bias"] = conv5x5_backward(h_a, act["input"] ** 2, p["c1.weight"] ** 2)

    return {k: h[k] for k in trainable_keys(head)}


# --------------------------------------------------------------------------
# Initialisation (paper): uniform in [-2.4/F, 2.4/F], F = fan-in of the unit
# --------------------------------------------------------------------------

def init_params(rng, head="softmax", dtype=np.float32):
    """Fresh parameters as in the paper: every weight and bias of a unit uniform
    in [-2.4/F, +2.4/F], F its fan-in (C1 25, S2 4, C3 25 * connected S2 maps,
    S4 4, C5 400, F6 120, output 84).  Includes "c3.table"; for the rbf head
    "out.prototypes" is the shipped bitmap set.  ``rng`` is a np.random.Generator.
    """
    head = _check_head(head)

    def uniform(shape, fan_in):
        bound = 2.4 / np.asarray(fan_in, dtype=np.float64)
        return (rng.uniform(-1.0, 1.0, size=shape) * bound).astype(dtype)

    c3_fan_in = 25 * C3_TABLE.sum(axis=1)  # (16,)
    params = {
        "c1.weight": uniform((6, 1, 5, 5), 25), "c1.bias": uniform((6,), 25),
        "s2.weight": uniform((6,), 4), "s2.bias": uniform((6,), 4),
        "c3.weight": uniform((16, 6, 5, 5), c3_fan_in[:, None, None, None]) * _C3_MASK,
        "c3.bias": uniform((16,), c3_fan_in),
        "c3.table": C3_TABLE.copy(),
        "s4.weight": uniform((16,), 4), "s4.bias": uniform((16,), 4),
        "c5.weight": uniform((120, 16, 5, 5), 400), "c5.bias": uniform((120,), 400),
        "f6.weight": uniform((84, 120), 120), "f6.bias": uniform((84,), 120),
    }
    if head == "softmax":
        params["out.weight"] = uniform((10, 84), 84)
        params["out.bias"] = uniform((10,), 84)
    else:
        from lenet_native.prototypes import rbf_prototypes
        params["out.prototypes"] = rbf_prototypes().astype(dtype)
    return params
