# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Cython binding of the C kernels (csrc/). Low level: arrays must already be C-contiguous
float32 (int32 for labels and pair lists) of the right shapes; lenet_native.model does the
friendly validation. Every call releases the GIL while the C code runs and turns a
non-zero C status into a Python exception.

Forward wrappers take an optional ``out`` (so tests can pre-fill it with NaN); backward
wrappers return freshly zeroed gradient arrays into which the C code accumulates.

Instruction-set variants: the whole-network functions (forward, loss_grad, hessian_diag,
sdlm_epoch) take ``isa=None`` -- one of ``available_isas()``; None means ``default_isa()``,
chosen once at import: the fastest variant this CPU supports, or the one named by the
environment variable LENET_NATIVE_ISA (portable | vec128 | avx2 | avx512; an unknown, unbuilt or
unsupported name makes the import fail with a ValueError saying why).
"""
import os
import threading

import numpy as np
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.pythread cimport PyThread_get_thread_ident
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uintptr_t

from lenet_native cimport _clenet as lib
from lenet_native._clenet cimport lenet_net, lenet_qnet


NPARAMS = lib.LENET_NPARAMS
F32 = np.dtype(np.float32)   # the (singleton) dtype the kernels take, for cheap `is` checks
NACTS = lib.LENET_NACTS
HEADS = {"softmax": lib.LENET_HEAD_SOFTMAX, "rbf": lib.LENET_HEAD_RBF}
PARAM_OFFSETS = {
    "c1.weight": (lib.LENET_OFF_C1_W, lib.LENET_OFF_C1_B), "c1.bias": (lib.LENET_OFF_C1_B, lib.LENET_OFF_S2_W),
    "s2.weight": (lib.LENET_OFF_S2_W, lib.LENET_OFF_S2_B), "s2.bias": (lib.LENET_OFF_S2_B, lib.LENET_OFF_C3_W),
    "c3.weight": (lib.LENET_OFF_C3_W, lib.LENET_OFF_C3_B), "c3.bias": (lib.LENET_OFF_C3_B, lib.LENET_OFF_S4_W),
    "s4.weight": (lib.LENET_OFF_S4_W, lib.LENET_OFF_S4_B), "s4.bias": (lib.LENET_OFF_S4_B, lib.LENET_OFF_C5_W),
    "c5.weight": (lib.LENET_OFF_C5_W, lib.LENET_OFF_C5_B), "c5.bias": (lib.LENET_OFF_C5_B, lib.LENET_OFF_F6_W),
    "f6.weight": (lib.LENET_OFF_F6_W, lib.LENET_OFF_F6_B), "f6.bias": (lib.LENET_OFF_F6_B, lib.LENET_OFF_OUT_W),
    "out.weight": (lib.LENET_OFF_OUT_W, lib.LENET_OFF_OUT_B), "out.bias": (lib.LENET_OFF_OUT_B, lib.LENET_NPARAMS),
}
ACT_OFFSETS = {
    "c1": (lib.LENET_ACT_C1, lib.LENET_ACT_S2), "s2": (lib.LENET_ACT_S2, lib.LENET_ACT_C3),
    "c3": (lib.LENET_ACT_C3, lib.LENET_ACT_S4), "s4": (lib.LENET_ACT_S4, lib.LENET_ACT_C5),
    "c5": (lib.LENET_ACT_C5, lib.LENET_ACT_F6), "f6": (lib.LENET_ACT_F6, lib.LENET_ACT_OUT),
    "output": (lib.LENET_ACT_OUT, lib.LENET_NACTS),
}

ISAS = tuple(lib.lenet_isa_name(i).decode() for i in range(lib.LENET_NISA))


def compiled_isas():
    """Names of the instruction-set variants built into this extension."""
    return tuple(ISAS[i] for i in range(lib.LENET_NISA) if lib.lenet_isa_compiled(i))


def available_isas():
    """Names of the variants this CPU can run, slowest first ("portable" always)."""
    return tuple(ISAS[i] for i in range(lib.LENET_NISA) if lib.lenet_isa_supported(i))


def best_isa():
    """The fastest variant this CPU can run (what default_isa() is without LENET_NATIVE_ISA)."""
    return ISAS[lib.lenet_best_isa()]


def _isa_code(name, where="isa"):
    """Variant name -> C code; ValueError naming the problem for anything unusable."""
    if not isinstance(name, str) or name.strip().lower() not in ISAS:
        raise ValueError(f"{where}={name!r} is not an instruction-set variant; "
                         f"choose one of {', '.join(ISAS)}")
    code = ISAS.index(name.strip().lower())
    if not lib.lenet_isa_compiled(code):
        raise ValueError(f"{where}={name!r}: this build of lenet_native has no {ISAS[code]} variant "
                         f"(built: {', '.join(compiled_isas())})")
    if not lib.lenet_isa_supported(code):
        raise ValueError(f"{where}={name!r}: this CPU does not support {ISAS[code]} "
                         f"(available here: {', '.join(available_isas())})")
    return code


def _isa_from_environment():
    env = os.environ.get("LENET_NATIVE_ISA", "")
    if env.strip() == "" or env.strip().lower() in ("auto", "best"):
        return lib.lenet_best_isa()
    return _isa_code(env, "LENET_NATIVE_ISA")


cdef int _default_isa = _isa_from_environment()


def default_isa():
    """The variant used when isa=None: LENET_NATIVE_ISA if set, else best_isa()."""
    return ISAS[_default_isa]


cdef int _resolve_isa(isa) except -1:
    if isa is None:
        return _default_isa
    return _isa_code(isa)


# libgomp is not fork-safe: a child forked after the parent ran a parallel region hangs in
# its first parallel region. In such a child the kernels run single-threaded (the results
# do not depend on the thread count, only the speed does).
cdef bint _pool_started = False
cdef bint _pool_unusable = False


def _after_fork_in_child():
    global _pool_unusable
    _pool_unusable = _pool_started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


cdef int _nthreads(int threads):
    global _pool_started
    if _pool_unusable:
        return 1
    if threads > 1:
        _pool_started = True
    return threads


_empty = np.empty
_F32 = np.dtype(np.float32)

# Scratch buffers are cached per Python thread (a model may be shared between threads),
# so repeated calls allocate nothing but their results.
_tls = threading.local()


cdef _scratch(str name, size_t n, dtype=_F32):
    buf = getattr(_tls, name, None)
    if buf is None or <size_t>buf.shape[0] < n:
        buf = np.empty(max(n, <size_t>1), dtype)
        setattr(_tls, name, buf)
    return buf


cdef class _Scratch:
    """A cached float buffer with its pointer already taken (see Net)."""
    cdef float[::1] mem
    cdef size_t n

    def __cinit__(self, size_t n):
        self.mem = np.empty(max(n, <size_t>1), np.float32)
        self.n = n


_MESSAGES = {
    lib.LENET_ERR_SIZE: "a size is negative or inconsistent",
    lib.LENET_ERR_ARG: "an argument is out of its domain (head or C3 pair list)",
    lib.LENET_ERR_LABEL: "a label is outside 0..9",
    lib.LENET_ERR_NULL: "a required buffer is missing",
    lib.LENET_ERR_WORKSPACE: "the workspace is too small",
    lib.LENET_ERR_ISA: "the instruction-set variant is not available on this CPU",
}


cdef int _check(int status, str where) except -1:
    if status == lib.LENET_ERR_NONFINITE:
        raise ValueError(f"{where}: input contains NaN or infinity, or a value too large "
                         f"(|x| must be below 2**61, about 2.3e18)")
    if status != lib.LENET_OK:
        raise ValueError(f"{where}: {_MESSAGES.get(status, 'unknown error')} (C status {status})")
    return 0


def _out(out, shape):
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float32 array of shape {tuple(shape)}")
    return out


# --------------------------------------------------------------------------- layer kernels

def conv5x5_forward(const float[:, :, :, ::1] x not None, const float[:, :, :, ::1] w not None,
                    const float[::1] b not None, int threads=1, out=None):
    """x (N,C,H,W), w (M,C,5,5), b (M,) -> pre-activation (N,M,H-4,W-4)."""
    threads = _nthreads(threads)
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3], M = w.shape[0]
    if w.shape[1] != C or w.shape[2] != 5 or w.shape[3] != 5 or b.shape[0] != M or H < 5 or W < 5:
        raise ValueError("conv5x5_forward: inconsistent shapes")
    res = _out(out, (N, M, H - 4, W - 4))
    cdef float[:, :, :, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_conv5x5_forward(&o[0, 0, 0, 0], &x[0, 0, 0, 0],
                             &w[0, 0, 0, 0], &b[0], N, C, M, H, W, threads)
    _check(st, "conv5x5_forward")
    return res


def conv5x5_backward(const float[:, :, :, ::1] dout not None, const float[:, :, :, ::1] x not None,
                     const float[:, :, :, ::1] w not None):
    """-> (dx, dw, db)."""
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3], M = w.shape[0]
    if (dout.shape[0] != N or dout.shape[1] != M or dout.shape[2] != H - 4 or dout.shape[3] != W - 4
            or w.shape[1] != C or w.shape[2] != 5 or w.shape[3] != 5):
        raise ValueError("conv5x5_backward: inconsistent shapes")
    dx_a = np.zeros((N, C, H, W), np.float32)
    dw_a = np.zeros((M, C, 5, 5), np.float32)
    db_a = np.zeros(M, np.float32)
    cdef float[:, :, :, ::1] dx = dx_a, dw = dw_a
    cdef float[::1] db = db_a
    cdef int st
    if N == 0:
        return dx_a, dw_a, db_a
    with nogil:
        st = lib.lenet_conv5x5_backward(&dx[0, 0, 0, 0], &dw[0, 0, 0, 0], &db[0],
                              &dout[0, 0, 0, 0], &x[0, 0, 0, 0],
                              &w[0, 0, 0, 0], N, C, M, H, W)
    _check(st, "conv5x5_backward")
    return dx_a, dw_a, db_a


def c3_forward(const float[:, :, :, ::1] x not None, const float[:, ::1] w not None, const float[::1] b not None,
               const int32_t[::1] pout not None, const int32_t[::1] pin not None, int threads=1, out=None):
    """x (N,C,H,W), packed w (P,25), b (M,), pair lists (P,) -> (N,M,H-4,W-4)."""
    threads = _nthreads(threads)
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3], M = b.shape[0], P = w.shape[0]
    if w.shape[1] != 25 or pout.shape[0] != P or pin.shape[0] != P or H < 5 or W < 5:
        raise ValueError("c3_forward: inconsistent shapes")
    res = _out(out, (N, M, H - 4, W - 4))
    cdef float[:, :, :, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_c3_forward(&o[0, 0, 0, 0], &x[0, 0, 0, 0],
                        &w[0, 0], &b[0], &pout[0],
                        &pin[0], P, N, C, M, H, W, threads)
    _check(st, "c3_forward")
    return res


def c3_backward(const float[:, :, :, ::1] dout not None, const float[:, :, :, ::1] x not None,
                const float[:, ::1] w not None, const int32_t[::1] pout not None, const int32_t[::1] pin not None):
    """-> (dx, dw packed (P,25), db (M,))."""
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3], M = dout.shape[1], P = w.shape[0]
    if (dout.shape[0] != N or dout.shape[2] != H - 4 or dout.shape[3] != W - 4 or w.shape[1] != 25
            or pout.shape[0] != P or pin.shape[0] != P):
        raise ValueError("c3_backward: inconsistent shapes")
    dx_a = np.zeros((N, C, H, W), np.float32)
    dw_a = np.zeros((P, 25), np.float32)
    db_a = np.zeros(M, np.float32)
    cdef float[:, :, :, ::1] dx = dx_a
    cdef float[:, ::1] dw = dw_a
    cdef float[::1] db = db_a
    cdef int st
    if N == 0:
        return dx_a, dw_a, db_a
    with nogil:
        st = lib.lenet_c3_backward(&dx[0, 0, 0, 0], &dw[0, 0], &db[0],
                         &dout[0, 0, 0, 0], &x[0, 0, 0, 0],
                         &w[0, 0], &pout[0], &pin[0],
                         P, N, C, M, H, W)
    _check(st, "c3_backward")
    return dx_a, dw_a, db_a


def subsample_forward(const float[:, :, :, ::1] x not None, const float[::1] coef not None, const float[::1] bias not None,
                      int threads=1, out=None):
    threads = _nthreads(threads)
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3]
    if coef.shape[0] != C or bias.shape[0] != C or H % 2 or W % 2 or H < 2 or W < 2:
        raise ValueError("subsample_forward: inconsistent shapes")
    res = _out(out, (N, C, H // 2, W // 2))
    cdef float[:, :, :, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_subsample_forward(&o[0, 0, 0, 0], &x[0, 0, 0, 0],
                               &coef[0], &bias[0], N, C, H, W, threads)
    _check(st, "subsample_forward")
    return res


def subsample_backward(const float[:, :, :, ::1] dout not None, const float[:, :, :, ::1] x not None,
                       const float[::1] coef not None, bint second_order=False):
    """-> (dx, dcoef, dbias); with second_order, the Gauss-Newton terms instead."""
    cdef int64_t N = x.shape[0]
    cdef int C = x.shape[1], H = x.shape[2], W = x.shape[3]
    if (dout.shape[0] != N or dout.shape[1] != C or dout.shape[2] * 2 != H or dout.shape[3] * 2 != W
            or coef.shape[0] != C):
        raise ValueError("subsample_backward: inconsistent shapes")
    dx_a = np.zeros((N, C, H, W), np.float32)
    dc_a = np.zeros(C, np.float32)
    dbias_a = np.zeros(C, np.float32)
    cdef float[:, :, :, ::1] dx = dx_a
    cdef float[::1] dc = dc_a, dbias = dbias_a
    cdef int st
    if N == 0:
        return dx_a, dc_a, dbias_a
    with nogil:
        if second_order:
            st = lib.lenet_subsample_backward2(&dx[0, 0, 0, 0], &dc[0], &dbias[0],
                                     &dout[0, 0, 0, 0], &x[0, 0, 0, 0],
                                     &coef[0], N, C, H, W)
        else:
            st = lib.lenet_subsample_backward(&dx[0, 0, 0, 0], &dc[0], &dbias[0],
                                    &dout[0, 0, 0, 0], &x[0, 0, 0, 0],
                                    &coef[0], N, C, H, W)
    _check(st, "subsample_backward")
    return dx_a, dc_a, dbias_a


def squash_forward(const float[::1] a not None, out=None, isa="portable"):
    """f(a) = 1.7159 tanh(2a/3), element-wise over a flat array; isa picks the variant's
    vectorised tanh (default: the portable lenet_tanhf; None: default_isa())."""
    cdef int code = _resolve_isa(isa)
    cdef int64_t n = a.shape[0]
    res = _out(out, (n,))
    cdef float[::1] o = res
    cdef int st
    if n == 0:
        return res
    with nogil:
        st = lib.lenet_squash_forward_isa(&o[0], &a[0], n, code)
    _check(st, "squash_forward")
    return res


def squash_backward(const float[::1] dout not None, const float[::1] y not None, bint second_order=False):
    """dL/da from dL/dy and y = f(a) (or the Gauss-Newton h_a from h_y)."""
    cdef int64_t n = y.shape[0]
    if dout.shape[0] != n:
        raise ValueError("squash_backward: inconsistent shapes")
    res = np.zeros(n, np.float32)
    cdef float[::1] d = res
    cdef int st
    if n == 0:
        return res
    with nogil:
        if second_order:
            st = lib.lenet_squash_backward2(&d[0], &dout[0], &y[0], n)
        else:
            st = lib.lenet_squash_backward(&d[0], &dout[0], &y[0], n)
    _check(st, "squash_backward")
    return res


def dense_forward(const float[:, ::1] x not None, const float[:, ::1] w not None, const float[::1] b not None,
                  int threads=1, out=None):
    threads = _nthreads(threads)
    cdef int64_t N = x.shape[0]
    cdef int K = x.shape[1], M = w.shape[0]
    if w.shape[1] != K or b.shape[0] != M:
        raise ValueError("dense_forward: inconsistent shapes")
    res = _out(out, (N, M))
    cdef float[:, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_dense_forward(&o[0, 0], &x[0, 0], &w[0, 0], &b[0],
                           N, K, M, threads)
    _check(st, "dense_forward")
    return res


def dense_backward(const float[:, ::1] dout not None, const float[:, ::1] x not None, const float[:, ::1] w not None):
    cdef int64_t N = x.shape[0]
    cdef int K = x.shape[1], M = w.shape[0]
    if w.shape[1] != K or dout.shape[0] != N or dout.shape[1] != M:
        raise ValueError("dense_backward: inconsistent shapes")
    dx_a = np.zeros((N, K), np.float32)
    dw_a = np.zeros((M, K), np.float32)
    db_a = np.zeros(M, np.float32)
    cdef float[:, ::1] dx = dx_a, dw = dw_a
    cdef float[::1] db = db_a
    cdef int st
    if N == 0:
        return dx_a, dw_a, db_a
    with nogil:
        st = lib.lenet_dense_backward(&dx[0, 0], &dw[0, 0], &db[0], &dout[0, 0],
                            &x[0, 0], &w[0, 0], N, K, M)
    _check(st, "dense_backward")
    return dx_a, dw_a, db_a


def rbf_forward(const float[:, ::1] x not None, const float[:, ::1] proto not None, int threads=1, out=None):
    threads = _nthreads(threads)
    cdef int64_t N = x.shape[0]
    cdef int K = x.shape[1], M = proto.shape[0]
    if proto.shape[1] != K:
        raise ValueError("rbf_forward: inconsistent shapes")
    res = _out(out, (N, M))
    cdef float[:, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_rbf_forward(&o[0, 0], &x[0, 0], &proto[0, 0], N, K, M, threads)
    _check(st, "rbf_forward")
    return res


def rbf_backward(const float[:, ::1] dout not None, const float[:, ::1] x not None, const float[:, ::1] proto not None):
    cdef int64_t N = x.shape[0]
    cdef int K = x.shape[1], M = proto.shape[0]
    if proto.shape[1] != K or dout.shape[0] != N or dout.shape[1] != M:
        raise ValueError("rbf_backward: inconsistent shapes")
    dx_a = np.zeros((N, K), np.float32)
    cdef float[:, ::1] dx = dx_a
    cdef int st
    if N == 0:
        return dx_a
    with nogil:
        st = lib.lenet_rbf_backward(&dx[0, 0], &dout[0, 0],
                          &x[0, 0], &proto[0, 0], N, K, M)
    _check(st, "rbf_backward")
    return dx_a


def softmax(const float[:, ::1] x not None, float sign=1.0, out=None):
    """Row-wise softmax of sign * x."""
    cdef int64_t N = x.shape[0]
    cdef int M = x.shape[1]
    res = _out(out, (N, M))
    cdef float[:, ::1] o = res
    cdef int st
    if N == 0:
        return res
    with nogil:
        st = lib.lenet_softmax_forward(&o[0, 0], &x[0, 0], sign, N, M)
    _check(st, "softmax")
    return res


def loss_forward_backward(str head, const float[:, ::1] y not None, const int32_t[::1] labels not None, float scale):
    """Per-sample losses and the gradient wrt the head's output (softmax logits or RBF y)."""
    cdef int64_t N = y.shape[0]
    cdef int M = y.shape[1], st
    if head not in HEADS:
        raise ValueError(f"head must be 'softmax' or 'rbf', got {head!r}")
    cdef bint rbf = head == "rbf"
    if labels.shape[0] != N:
        raise ValueError("loss: labels and outputs differ in length")
    losses_a = np.empty(N, np.float32)
    dy_a = np.zeros((N, M), np.float32)
    cdef float[::1] losses = losses_a
    cdef float[:, ::1] dy = dy_a
    if N == 0:
        return losses_a, dy_a
    with nogil:
        if rbf:
            st = lib.lenet_rbfloss_forward(&losses[0], &y[0, 0], &labels[0], lib.LENET_RBF_J, N, M)
            if st == 0:
                st = lib.lenet_rbfloss_backward(&dy[0, 0], &y[0, 0], &labels[0],
                                      lib.LENET_RBF_J, scale, N, M)
        else:
            st = lib.lenet_xent_forward(&losses[0], &y[0, 0], &labels[0], N, M)
            if st == 0:
                st = lib.lenet_xent_backward(&dy[0, 0], &y[0, 0], &labels[0], scale, N, M)
    _check(st, "loss")
    return losses_a, dy_a


def gather_digits(const uint8_t[:, :, ::1] digits not None, index=None, shift=None, out=None):
    """Network input (B, 32, 32) float32 from raw MNIST digits (N, 28, 28) uint8, without a
    float copy of the whole set: the rows ``index`` (int64 (B,); None = all N rows), each
    padded and normalised with the bits of model.preprocess (csrc/digits.c), or placed
    ``shift`` (int8 (B, 2): (dy, dx) in [-2, 2]) pixels off centre. ``out``: None, or a
    C-contiguous float32 (B, 32, 32) array filled in place and returned."""
    if digits.shape[1] != 28 or digits.shape[2] != 28:
        raise ValueError(f"gather_digits: digits must be (N, 28, 28); got {tuple(digits.shape)[:3]}")
    cdef int64_t N = digits.shape[0]
    cdef int64_t B = N
    cdef const int64_t[::1] idx
    cdef const int8_t[:, ::1] sh
    cdef const int64_t *pidx = NULL
    cdef const int8_t *psh = NULL
    if index is not None:
        idx = index
        B = idx.shape[0]
        if B:
            pidx = &idx[0]
    if shift is not None:
        sh = shift
        if sh.shape[0] != B or sh.shape[1] != 2:
            raise ValueError(f"gather_digits: shift must be ({B}, 2); got {tuple(sh.shape)[:2]}")
        if B:
            psh = &sh[0, 0]
    res = _out(out, (B, 32, 32))
    if B == 0:
        return res
    cdef float[:, :, ::1] o = res
    cdef const uint8_t *pd = &digits[0, 0, 0] if N else NULL
    cdef int st
    with nogil:
        st = lib.lenet_digits_gather(&o[0, 0, 0], pd, pidx, psh, B, N)
    if st == lib.LENET_ERR_ARG:
        raise ValueError(f"gather_digits: an index is outside [0, {N}) or a shift outside [-2, 2]")
    _check(st, "gather_digits")
    return res


def warp_rows(const float[:, :, ::1] x not None, const float[::1] ax not None,
              const float[::1] axy not None, const float[::1] ayy not None,
              const float[::1] offx not None, const float[::1] offy not None, float background):
    """The separable affine warp of lenet_native.distort (see warp_rows_forward in lenet.h):
    x (N, H, W) -> new (N, H, W) float32, bit-for-bit the NumPy path's result."""
    cdef int64_t N = x.shape[0]
    cdef int H = x.shape[1], W = x.shape[2]
    if (ax.shape[0] != N or axy.shape[0] != N or ayy.shape[0] != N or offx.shape[0] != N
            or offy.shape[0] != N):
        raise ValueError("warp_rows: the map arrays must have one entry per image")
    if H < 1 or W < 1 or H > 4096 or W > 4096:
        raise ValueError(f"warp_rows: image size must be 1..4096, got {H}x{W}")
    if not np.isfinite(np.concatenate([np.asarray(ax), np.asarray(axy), np.asarray(ayy),
                                       np.asarray(offx), np.asarray(offy)])).all():
        raise ValueError("warp_rows: the maps must be finite")
    res = np.empty((N, H, W), np.float32)
    if N == 0:
        return res
    cdef float[:, :, ::1] o = res
    cdef float[::1] ws = np.empty(W + 3, np.float32)
    cdef int st
    with nogil:
        st = lib.lenet_warp_rows_forward(&o[0, 0, 0], &x[0, 0, 0], &ax[0], &axy[0], &ayy[0], &offx[0],
                                   &offy[0], background, N, H, W, &ws[0])
    _check(st, "warp_rows")
    return res


def sgd_step(float[::1] params not None, float[::1] velocity not None, const float[::1] grad not None,
             const uint8_t[::1] mask not None, float lr, float momentum, float decay, isa=None):
    """v = momentum v + (g + decay p); p -= lr v where mask != 0 (the same bits on every isa)."""
    cdef int64_t n = params.shape[0]
    if velocity.shape[0] != n or grad.shape[0] != n or mask.shape[0] != n:
        raise ValueError("sgd_step: inconsistent shapes")
    cdef int code = _resolve_isa(isa)
    cdef int st
    if n == 0:
        return
    with nogil:
        st = lib.lenet_sgd_update_isa(&params[0], &velocity[0], &grad[0], &mask[0], lr, momentum,
                                      decay, n, code)
    _check(st, "sgd_step")


# --------------------------------------------------------------------------- whole network

cdef lenet_net _net(const float[::1] params, const int32_t[::1] c3_out, const int32_t[::1] c3_in,
                    str head, isa) except *:
    if params.shape[0] != lib.LENET_NPARAMS or c3_out.shape[0] != 60 or c3_in.shape[0] != 60:
        raise ValueError("network: flat parameters must have 60850 entries and 60 C3 pairs")
    if head not in HEADS:
        raise ValueError(f"head must be 'softmax' or 'rbf', got {head!r}")
    cdef lenet_net net
    net.params = &params[0]
    net.c3_out = &c3_out[0]
    net.c3_in = &c3_in[0]
    net.head = HEADS[head]
    net.isa = _resolve_isa(isa)
    return net


def forward(const float[::1] params not None, const int32_t[::1] c3_out not None,
            const int32_t[::1] c3_in not None, str head,
            const float[:, :, ::1] x not None, int threads=1, bint keep_activations=False, out=None,
            isa=None, bint check_finite=False, str where="forward"):
    """x (N,32,32) -> out (N,10); with keep_activations also (N, NACTS) every layer's output.
    check_finite: ValueError "<where>: input contains NaN or infinity ..." if x holds one
    (checked in C as the images stream through, no extra pass)."""
    threads = _nthreads(threads)
    cdef lenet_net net = _net(params, c3_out, c3_in, head, isa)
    cdef int64_t N = x.shape[0]
    if x.shape[1] != 32 or x.shape[2] != 32:
        raise ValueError("forward: x must be (N, 32, 32)")
    res = _out(out, (N, 10))
    cdef float[:, ::1] o = res
    cdef float[:, ::1] acts
    cdef float * actp = NULL
    acts_a = None
    if keep_activations:
        acts_a = np.empty((N, lib.LENET_NACTS), np.float32)
        acts = acts_a
        actp = &acts[0, 0]
    cdef size_t wsz = lib.lenet_forward_workspace_size(threads)
    cdef float[::1] ws = _scratch("forward", wsz)
    cdef int st
    if N == 0:
        return (res, acts_a) if keep_activations else res
    with nogil:
        st = lib.lenet_forward_checked(&o[0, 0], actp, &net, &x[0, 0, 0], N,
                                       threads, check_finite, &ws[0], wsz)
    _check(st, where)
    return (res, acts_a) if keep_activations else res


cdef class Net:
    """A handle on one network for repeated forward passes (the model's single-image fast
    path): the parameter and pair-list buffers are taken once and kept (so are the arrays),
    the workspace is cached per Python thread. The parameters may change in place between
    calls; a handle must be rebuilt when the parameter ARRAY is replaced (see .params)."""
    cdef lenet_net net
    cdef const float[::1] _params
    cdef const int32_t[::1] _c3_out, _c3_in
    cdef readonly object params, c3_out, c3_in, head, isa
    # the workspace of the first thread that runs forward (its ident in _sc_owner): that
    # thread skips the thread-local lookup; any other thread uses its own (_tls)
    cdef _Scratch _sc
    cdef unsigned long _sc_owner

    def __init__(self, params, c3_out, c3_in, str head, isa=None):
        self._params, self._c3_out, self._c3_in = params, c3_out, c3_in
        self.net = _net(self._params, self._c3_out, self._c3_in, head, isa)
        self.params, self.c3_out, self.c3_in, self.head = params, c3_out, c3_in, head
        self.isa = ISAS[self.net.isa]

    def __reduce__(self):
        return (Net, (self.params, self.c3_out, self.c3_in, self.head, self.isa))

    def forward(self, x, int threads=1, bint check_finite=True, str where="forward"):
        """x, a C-contiguous native float32 (N, 32, 32), (N, 1, 32, 32) or (32, 32) buffer
        -> (N, 10) ((1, 10) for one (32, 32) image);
        None if x is not one (the caller then converts it). check_finite/where as for
        forward()."""
        cdef Py_buffer view
        try:
            PyObject_GetBuffer(x, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        except Exception:
            return None
        cdef const char *f
        cdef int64_t N
        try:
            # float32 in native order: "f", "@f" or "=f" (no format: bytes, refused)
            f = view.format
            if f == NULL or not ((f[0] == c'f' and f[1] == 0)
                                 or ((f[0] == c'@' or f[0] == c'=') and f[1] == c'f' and f[2] == 0)):
                return None
            # (N, 32, 32), (N, 1, 32, 32) or one (32, 32) image: the same bytes; aligned
            # floats only (C reads whole floats; the caller copies an unaligned buffer)
            # (an empty buffer may sit anywhere: NumPy calls it aligned, so it is never copied)
            if (view.itemsize != 4
                    or ((<uintptr_t>view.buf) % sizeof(float) != 0 and view.len != 0)
                    or not ((view.ndim == 3 and view.shape[1] == 32 and view.shape[2] == 32)
                            or (view.ndim == 4 and view.shape[1] == 1 and view.shape[2] == 32
                                and view.shape[3] == 32)
                            or (view.ndim == 2 and view.shape[0] == 32 and view.shape[1] == 32))):
                return None
            N = 1 if view.ndim == 2 else view.shape[0]
            res = _empty((N, 10), _F32)
            if N == 0:
                return res
            return self._run(<const float *>view.buf, N, res, threads, check_finite, where)
        finally:
            PyBuffer_Release(&view)

    cdef object _run(self, const float *x, int64_t N, res, int threads, bint check_finite, str where):
        threads = _nthreads(threads)
        cdef Py_buffer out     # res is a fresh C-contiguous float32 (N, 10) array: its buffer
        PyObject_GetBuffer(res, &out, PyBUF_C_CONTIGUOUS)  # is cheaper than a memoryview
        cdef size_t wsz = lib.lenet_forward_workspace_size(threads)
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef _Scratch sc = self._sc if self._sc_owner == me else None
        if sc is None or sc.n < wsz:
            if self._sc is None or self._sc_owner == me:
                sc = _Scratch(wsz)
                self._sc, self._sc_owner = sc, me
            else:
                sc = getattr(_tls, "net", None)
                if sc is None or sc.n < wsz:
                    sc = _Scratch(wsz)
                    _tls.net = sc
        cdef int st
        try:
            with nogil:
                st = lib.lenet_forward_checked(<float *>out.buf, NULL, &self.net, x, N, threads,
                                               check_finite, &sc.mem[0], wsz)
        finally:
            PyBuffer_Release(&out)
        _check(st, where)
        return res


def loss_grad(const float[::1] params not None, const int32_t[::1] c3_out not None, const int32_t[::1] c3_in not None, str head,
              const float[:, :, ::1] x not None, const int32_t[::1] labels not None, float scale, int threads=1,
              grad=None, isa=None):
    """-> (losses (N,), outputs (N,10), grad (NPARAMS,)); grad accumulates scale * d(sum loss)."""
    threads = _nthreads(threads)
    cdef lenet_net net = _net(params, c3_out, c3_in, head, isa)
    cdef int64_t N = x.shape[0]
    if x.shape[1] != 32 or x.shape[2] != 32 or labels.shape[0] != N:
        raise ValueError("loss_grad: x must be (N, 32, 32) and labels (N,)")
    if grad is None:
        grad = np.zeros(lib.LENET_NPARAMS, np.float32)
    cdef float[::1] g = grad
    if g.shape[0] != lib.LENET_NPARAMS:
        raise ValueError("loss_grad: grad must have NPARAMS entries")
    losses_a = np.empty(N, np.float32)
    out_a = np.empty((N, 10), np.float32)
    cdef float[::1] losses = losses_a
    cdef float[:, ::1] out = out_a
    cdef size_t wsz = lib.lenet_grad_workspace_size(N, threads)
    cdef float[::1] ws = _scratch("grad", wsz)
    cdef int st
    if N == 0:
        return losses_a, out_a, grad
    with nogil:
        st = lib.lenet_loss_grad(&g[0], &losses[0], &out[0, 0], &net,
                             &x[0, 0, 0], &labels[0], scale, N,
                             threads, &ws[0], wsz)
    _check(st, "loss_grad")
    return losses_a, out_a, grad


def sgd_train_step(float[::1] params not None, float[::1] velocity not None,
                   const uint8_t[::1] mask not None, float lr, float momentum, float decay,
                   const int32_t[::1] c3_out not None, const int32_t[::1] c3_in not None, str head,
                   const float[:, :, ::1] x not None, const int32_t[::1] labels not None,
                   float scale, int threads=1, isa=None):
    """One SGD step in place: the gradient of scale * (sum of the losses), then
    v = momentum v + (g + decay p); p -= lr v where mask != 0 (the same bits as loss_grad
    into a zeroed buffer followed by sgd_step; an empty batch changes nothing).
    -> (losses (N,), outputs (N, 10))."""
    threads = _nthreads(threads)
    cdef lenet_net net = _net(params, c3_out, c3_in, head, isa)
    cdef int64_t N = x.shape[0]
    if x.shape[1] != 32 or x.shape[2] != 32 or labels.shape[0] != N:
        raise ValueError("sgd_train_step: x must be (N, 32, 32) and labels (N,)")
    if velocity.shape[0] != lib.LENET_NPARAMS or mask.shape[0] != lib.LENET_NPARAMS:
        raise ValueError("sgd_train_step: velocity and mask must have NPARAMS entries")
    losses_a = np.empty(N, np.float32)
    out_a = np.empty((N, 10), np.float32)
    if N == 0:
        return losses_a, out_a
    cdef float[::1] losses = losses_a
    cdef float[:, ::1] out = out_a
    cdef size_t wsz = lib.lenet_grad_workspace_size(N, threads)
    cdef float[::1] ws = _scratch("grad", wsz)
    cdef int st
    with nogil:
        st = lib.lenet_sgd_train_step(&params[0], &velocity[0], &losses[0], &out[0, 0], &mask[0],
                                      lr, momentum, decay, &net, &x[0, 0, 0], &labels[0],
                                      scale, N, threads, &ws[0], wsz)
    _check(st, "sgd_train_step")
    return losses_a, out_a


def batch_stats(const float[::1] losses not None, const float[:, ::1] out not None,
                const int32_t[::1] labels not None, bint nearest=False):
    """-> (the sum of the losses in float64, how many rows' prediction is not their label)
    for a training loop's bookkeeping, without NumPy's per-call dispatch (right after a
    training step, NumPy's sum/argmax/count_nonzero on 64 rows: 27.5 us median, this:
    6.1 us, in one run of benchmarks/test_bench_train.py -k bookkeeping). The
    prediction is a row's first maximum, or with nearest (the RBF head) its first minimum;
    a NaN counts as found first, as in numpy's argmax / argmin."""
    cdef Py_ssize_t n = losses.shape[0], i, m, best
    if out.shape[0] != n or labels.shape[0] != n or (n and out.shape[1] < 1):
        raise ValueError("batch_stats: losses (N,), out (N, M) and labels (N,) must agree")
    cdef Py_ssize_t M = out.shape[1]
    cdef double total = 0.0
    cdef Py_ssize_t errors = 0
    cdef float v, bv
    with nogil:
        for i in range(n):
            total += losses[i]
            best = 0
            bv = out[i, 0]
            if bv == bv:
                for m in range(1, M):
                    v = out[i, m]
                    if v != v:
                        best = m
                        break
                    if (v < bv) if nearest else (v > bv):
                        bv = v
                        best = m
            if best != labels[i]:
                errors += 1
    return total, errors


def hessian_diag(const float[::1] params not None, const int32_t[::1] c3_out not None, const int32_t[::1] c3_in not None,
                 str head, const float[:, :, ::1] x not None, const int32_t[::1] labels not None, float scale, isa=None):
    """Gauss-Newton diagonal: scale * sum over samples, flat (NPARAMS,)."""
    cdef lenet_net net = _net(params, c3_out, c3_in, head, isa)
    cdef int64_t N = x.shape[0]
    if x.shape[1] != 32 or x.shape[2] != 32 or labels.shape[0] != N:
        raise ValueError("hessian_diag: x must be (N, 32, 32) and labels (N,)")
    h_a = np.zeros(lib.LENET_NPARAMS, np.float32)
    cdef float[::1] h = h_a
    cdef size_t wsz = lib.lenet_hessian_workspace_size()
    cdef float[::1] ws = _scratch("hessian", wsz)
    cdef int st
    if N == 0:
        return h_a
    with nogil:
        st = lib.lenet_hessian_diag(&h[0], &net, &x[0, 0, 0], &labels[0],
                                scale, N, &ws[0], wsz)
    _check(st, "hessian_diag")
    return h_a


def sdlm_epoch(float[::1] params not None, const int32_t[::1] c3_out not None, const int32_t[::1] c3_in not None, str head,
               const float[::1] step not None, const float[:, :, ::1] x not None, const int32_t[::1] labels not None,
               const int64_t[::1] order not None, isa=None):
    """One pass of per-sample updates params -= step * g over x[order]; -> per-sample losses."""
    cdef lenet_net net = _net(params, c3_out, c3_in, head, isa)
    cdef int64_t N = order.shape[0], total = x.shape[0]
    if step.shape[0] != lib.LENET_NPARAMS or labels.shape[0] != total or x.shape[1] != 32 or x.shape[2] != 32:
        raise ValueError("sdlm_epoch: inconsistent shapes")
    losses_a = np.empty(N, np.float32)
    cdef float[::1] losses = losses_a
    cdef size_t wsz = lib.lenet_sdlm_workspace_size()
    cdef float[::1] ws = _scratch("sdlm", wsz)
    cdef int st
    if N == 0:
        return losses_a
    with nogil:
        st = lib.lenet_sdlm_epoch(&params[0], &losses[0], &c3_out[0], &c3_in[0], net.head,
                              net.isa, &step[0], &x[0, 0, 0], &labels[0],
                              &order[0], N, total, &ws[0], wsz)
    _check(st, "sdlm_epoch")
    return losses_a


# ----------------------------------------------------------------------------- int8 (csrc/q8.h)

#: Sizes and offsets of the int8 network's arrays (csrc/q8.h); lenet_native.quantize packs them.
Q8_LAYOUT = {
    "nw": lib.LENET_Q8_NW, "nz": lib.LENET_Q8_NZ, "nf": lib.LENET_Q8_NF, "nqa": lib.LENET_Q8_NQA,
    "kbytes": lib.LENET_Q8_KBYTES, "c5m": lib.LENET_Q8_C5M, "f6m": lib.LENET_Q8_F6M,
    "w1": lib.LENET_Q8_OFF_W1, "w3": lib.LENET_Q8_OFF_W3, "w5": lib.LENET_Q8_OFF_W5,
    "w6": lib.LENET_Q8_OFF_W6,
    "z1": lib.LENET_Q8_OFF_Z1, "z3": lib.LENET_Q8_OFF_Z3, "z5": lib.LENET_Q8_OFF_Z5,
    "z6": lib.LENET_Q8_OFF_Z6,
    "mul1": lib.LENET_Q8_OFF_MUL1, "b1": lib.LENET_Q8_OFF_B1, "s2c": lib.LENET_Q8_OFF_S2C,
    "s2b": lib.LENET_Q8_OFF_S2B, "mul3": lib.LENET_Q8_OFF_MUL3, "b3": lib.LENET_Q8_OFF_B3,
    "s4c": lib.LENET_Q8_OFF_S4C, "s4b": lib.LENET_Q8_OFF_S4B, "mul5": lib.LENET_Q8_OFF_MUL5,
    "b5": lib.LENET_Q8_OFF_B5, "mul6": lib.LENET_Q8_OFF_MUL6, "b6": lib.LENET_Q8_OFF_B6,
    "outw": lib.LENET_Q8_OFF_OUTW, "outb": lib.LENET_Q8_OFF_OUTB, "inv2": lib.LENET_Q8_OFF_INV2,
    "inv4": lib.LENET_Q8_OFF_INV4, "inv5": lib.LENET_Q8_OFF_INV5,
    "qa_c1": lib.LENET_Q8_QA_C1, "qa_c3": lib.LENET_Q8_QA_C3, "qa_c5": lib.LENET_Q8_QA_C5,
    "qa_f6": lib.LENET_Q8_QA_F6, "qa_in": lib.LENET_Q8_QA_IN, "qa_s2": lib.LENET_Q8_QA_S2,
    "qa_s4": lib.LENET_Q8_QA_S4, "qa_c5q": lib.LENET_Q8_QA_C5Q,
}


def q8_compiled_isas():
    """Names of the variants with int8 kernels built into this extension."""
    return tuple(ISAS[i] for i in range(lib.LENET_NISA) if lib.lenet_q8_compiled(i))


def q8_available_isas():
    """Names of the int8 variants this CPU can run, slowest first ("portable" always)."""
    return tuple(ISAS[i] for i in range(lib.LENET_NISA) if lib.lenet_q8_supported(i))


def q8_best_isa():
    """The fastest int8 variant this CPU runs (avx512vnni where the CPU has AVX512-VNNI)."""
    return ISAS[lib.lenet_q8_best_isa()]


cdef int _q8_isa_code(isa) except -1:
    if isa is None:
        return lib.lenet_q8_best_isa()
    if not isinstance(isa, str) or isa.strip().lower() not in ISAS:
        raise ValueError(f"isa={isa!r} is not an instruction-set variant; int8 variants: "
                         f"{', '.join(q8_compiled_isas())}")
    cdef int code = ISAS.index(isa.strip().lower())
    if not lib.lenet_q8_compiled(code):
        raise ValueError(f"isa={isa!r}: this build of lenet_native has no int8 kernels for "
                         f"{ISAS[code]} (built: {', '.join(q8_compiled_isas())})")
    if not lib.lenet_q8_supported(code):
        raise ValueError(f"isa={isa!r}: this CPU does not support {ISAS[code]} "
                         f"(int8 variants available here: {', '.join(q8_available_isas())})")
    return code


cdef class QNet:
    """A handle on one int8 network (csrc/q8.h): its packed arrays, kept, and the variant.

    Parameters
    ----------
    w : int8 (Q8_LAYOUT["nw"],), 64-byte aligned
    zw : int32 (Q8_LAYOUT["nz"],)
    f : float32 (Q8_LAYOUT["nf"],)
    c3_out, c3_in : int32 (60,)
    head : {"softmax", "rbf"}
    isa : str, optional
        One of q8_available_isas(); None: q8_best_isa().
    """
    cdef lenet_qnet qn
    cdef const int8_t[::1] _w
    cdef const int32_t[::1] _zw, _c3_out, _c3_in
    cdef const float[::1] _f
    cdef readonly object arrays, head, isa

    def __init__(self, w, zw, f, c3_out, c3_in, str head, isa=None):
        self._w, self._zw, self._f, self._c3_out, self._c3_in = w, zw, f, c3_out, c3_in
        if (self._w.shape[0] != lib.LENET_Q8_NW or self._zw.shape[0] != lib.LENET_Q8_NZ
                or self._f.shape[0] != lib.LENET_Q8_NF or self._c3_out.shape[0] != 60
                or self._c3_in.shape[0] != 60):
            raise ValueError("QNet: arrays of the wrong sizes (see Q8_LAYOUT)")
        if (<uintptr_t>&self._w[0]) % 64 != 0:
            raise ValueError("QNet: the int8 weights must start on a 64-byte boundary")
        if head not in HEADS:
            raise ValueError(f"head must be 'softmax' or 'rbf', got {head!r}")
        self.qn.w = &self._w[0]
        self.qn.zw = &self._zw[0]
        self.qn.f = &self._f[0]
        self.qn.c3_out = &self._c3_out[0]
        self.qn.c3_in = &self._c3_in[0]
        self.qn.head = HEADS[head]
        self.qn.isa = _q8_isa_code(isa)
        self.arrays = (w, zw, f, c3_out, c3_in)
        self.head = head
        self.isa = ISAS[self.qn.isa]

    def forward(self, const float[:, :, ::1] x not None, int threads=1, bint keep=False,
                str where="forward"):
        """x float32 C-contiguous (N, 32, 32) -> out (N, 10) float32, or (out, qa) with
        qa int32 (N, Q8_LAYOUT["nqa"]) if keep (the int32 sums and uint8 codes, csrc/q8.h)."""
        cdef int64_t N = x.shape[0]
        if x.shape[1] != 32 or x.shape[2] != 32:
            raise ValueError(f"{where}: x must be (N, 32, 32)")
        res = np.empty((N, 10), np.float32)
        qa = np.empty((N, lib.LENET_Q8_NQA), np.int32) if keep else None
        if N == 0:
            return (res, qa) if keep else res
        threads = _nthreads(threads)
        cdef float[:, ::1] o = res
        cdef int32_t[:, ::1] q
        cdef int32_t *qp = NULL
        if keep:
            q = qa
            qp = &q[0, 0]
        cdef size_t wsz = lib.lenet_q8_workspace_size(threads)
        cdef unsigned char[::1] scv = _scratch("q8", wsz, np.uint8)
        cdef int st
        with nogil:
            st = lib.lenet_q8_forward(&o[0, 0], qp, &self.qn, &x[0, 0, 0], N, threads,
                                      &scv[0], wsz)
        if st == lib.LENET_ERR_NONFINITE:
            raise ValueError(f"{where}: input contains NaN or infinity")
        _check(st, where)
        return (res, qa) if keep else res
