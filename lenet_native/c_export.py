"""The one-file C export: a model as a self-contained C99 source pair (``lenet-native export
... DEST.c``).

``write_c(model, "digits.c")`` writes ``digits.c`` and ``digits.h``: the weights as
``static const float`` arrays and the portable forward pass, with no heap, no threads, no
library and no other file. The header declares

    int digits_predict(const float x[32 * 32], float out[10]);
    void digits_preprocess(const unsigned char digit[28 * 28], float x[32 * 32]);

``*_predict`` fills ``out`` with the head's outputs (what ``LeNet5.forward`` returns: the
logits, or the RBF distances) and returns the predicted label; ``*_preprocess`` is
``lenet_native.preprocess`` for one digit. The prefix is the stem of DEST's file name (made
a C identifier: other characters become ``_``, a leading digit gets ``m_``). The code is
the portable kernels' arithmetic in the same order (csrc/layers_impl.h: the same
16-partial-sum dot products, the same float32 tanh), so its outputs agree with the
portable variant's to float rounding (bit for bit when the compiler contracts no
multiply-add into an FMA, as C99 mode on x86-64 does by default). It compiles
warning-free with ``cc -std=c99 -pedantic -Wall -Wextra`` and as C++; a program on a
microcontroller needs the 243 KB of constant weights (flash) and about 25 KB of stack.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import fileio
from .layout import C3_IN, C3_OUT, PARAM_OFFSETS

__all__ = ["c_identifier", "c_sources", "write_c"]

# the arrays of the flat parameter vector (csrc/lenet.h), C3 packed by pair
_ARRAYS = ("c1.weight", "c1.bias", "s2.weight", "s2.bias", "c3.weight", "c3.bias", "s4.weight",
           "s4.bias", "c5.weight", "c5.bias", "f6.weight", "f6.bias", "out.weight", "out.bias")
_STACK_FLOATS = 6 * 28 * 28 + 16 * 10 * 10 + 16   # two activation buffers + a dot product's partial sums


def c_identifier(stem: str) -> str:
    """``stem`` as a C identifier: characters other than letters, digits and ``_`` become
    ``_``; a leading digit (or an empty stem) gets the prefix ``m_``."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    return ident if ident and not ident[0].isdigit() else "m_" + ident


def _float_literal(v) -> str:
    text = "%.9g" % float(v)                  # 9 significant digits: the exact float32
    if not any(ch in text for ch in ".en"):
        text += ".0"
    return text + "f"


def _c_array(name, values, per_line=8) -> str:
    vals = [_float_literal(v) for v in np.asarray(values, np.float32).reshape(-1)]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return f"static const float {name}[{len(vals)}] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


_HEADER = """\
/*
 * {header_name}: LeNet-5 ({head} head) exported by lenet_native {version} (`lenet-native export`).
 * Self-contained C99 (also valid C++): {source_name} holds the weights as static const float
 * arrays and the portable forward pass. No heap, no threads, no other file.
 *
 * Memory: {weights_kb} KB of static constant weights ({nparams} floats; read-only, may live
 * in flash); {stack_kb} KB of stack per call of {stem}_predict ({stack_floats} floats); no
 * static mutable data, so calls from several threads at once are safe.
 */
#ifndef {guard}
#define {guard}

#ifdef __cplusplus
extern "C" {{
#endif

/* Classify one preprocessed 32 x 32 image: out gets the head's ten outputs
 * ({outputs}) and the predicted label (0..9) is returned. */
int {stem}_predict(const float x[32 * 32], float out[10]);

/* lenet_native.preprocess for one MNIST-style digit (28 x 28, 0 = background, 255 = ink):
 * 2 pixels of background around it, pixel p mapped to p * (1.275 / 255) - 0.1. */
void {stem}_preprocess(const unsigned char digit[28 * 28], float x[32 * 32]);

#ifdef __cplusplus
}}
#endif
#endif /* {guard} */
"""

_SOURCE = """\
/*
 * {source_name}: LeNet-5 ({head} head) exported by lenet_native {version}; see {header_name}.
 * The arithmetic of lenet_native's portable kernels (csrc/layers_impl.h), in the same order.
 */
#include <math.h>
#include <string.h>

#include "{header_name}"

#define LANES 16   /* partial sums of a dot product, as the kernels */

/* C3 connections (Table I): pair p links C3 map C3_OUT[p] to S2 map C3_IN[p] */
static const unsigned char C3_OUT[60] = {{{c3_out}}};
static const unsigned char C3_IN[60] = {{{c3_in}}};

{arrays}
static float dotf(const float *a, const float *b, int n)
{{
    float acc[LANES] = {{0}};
    int k = 0, l;
    float s = 0.0f;
    for (; k + LANES <= n; k += LANES)
        for (l = 0; l < LANES; l++) acc[l] += a[k + l] * b[k + l];
    for (; k < n; k++) s += a[k] * b[k];
    for (l = 0; l < LANES; l++) s += acc[l];
    return s;
}}

/* tanh in float32 (Cephes tanhf, branch-free) */
static float tanh_f32(float z)
{{
    float az = fabsf(z);
    float t, fn, r, r2, p, big, s, small, two_n;
    int n;
    unsigned int bits;
    az = az < 9.0f ? az : 9.0f;
    t = 2.0f * az;
    n = (int)(t * 1.44269504088896341f + 0.5f);
    fn = (float)n;
    r = t - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    r2 = r * r;
    p = (((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
          + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f) * r2 + r + 1.0f;
    bits = (unsigned int)(n + 127) << 23;
    memcpy(&two_n, &bits, sizeof two_n);
    big = 1.0f - 2.0f / (p * two_n + 1.0f);
    big = z < 0.0f ? -big : big;
    s = z * z;
    small = ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s
              + 1.33314422036e-1f) * s - 3.33332819422e-1f) * s * z + z;
    return az > 0.625f ? big : small;
}}

/* f(a) = A tanh(S a), in place */
static void squash(float *x, int n)
{{
    int k;
    for (k = 0; k < n; k++) x[k] = 1.7159f * tanh_f32(0.66666667f * x[k]);
}}

/* o (H-4, W-4) += the 5x5 valid cross-correlation of ip (H, W) with wp (5, 5) */
static void conv_acc_plane(float *o, const float *ip, const float *wp, int H, int W)
{{
    const int Ho = H - 4, Wo = W - 4;
    int i, ki, kj, j;
    for (i = 0; i < Ho; i++)
        for (ki = 0; ki < 5; ki++)
            for (kj = 0; kj < 5; kj++) {{
                const float wv = wp[ki * 5 + kj];
                for (j = 0; j < Wo; j++) o[i * Wo + j] += wv * ip[(i + ki) * W + j + kj];
            }}
}}

/* trainable 2x2 subsampling: out (C, H/2, W/2) = coef (sum of each 2x2 block) + bias */
static void subsample(float *out, const float *in, const float *coef, const float *bias, int C,
                      int H, int W)
{{
    int c, i, j;
    for (c = 0; c < C; c++)
        for (i = 0; i < H / 2; i++)
            for (j = 0; j < W / 2; j++) {{
                const float *r = in + c * H * W + 2 * i * W + 2 * j;
                out[(c * (H / 2) + i) * (W / 2) + j] = coef[c] * ((r[0] + r[1]) + (r[W] + r[W + 1])) + bias[c];
            }}
}}

/* out (M,) = w (M, K) in + b */
static void dense(float *out, const float *in, const float *w, const float *b, int K, int M)
{{
    int m;
    for (m = 0; m < M; m++) out[m] = b[m] + dotf(in, w + m * K, K);
}}

int {stem}_predict(const float x[32 * 32], float out[10])
{{
    /* two activation buffers, reused layer after layer: C1, C3, C5 in a; S2, S4, F6 in b */
    float a[6 * 28 * 28], b[16 * 10 * 10];
    int m, k, p, best = 0;
    for (m = 0; m < 6; m++) {{                                   /* C1: 6@28x28 */
        for (k = 0; k < 28 * 28; k++) a[m * 784 + k] = C1_B[m];
        conv_acc_plane(a + m * 784, x, C1_W + m * 25, 32, 32);
    }}
    squash(a, 6 * 28 * 28);
    subsample(b, a, S2_W, S2_B, 6, 28, 28);                      /* S2: 6@14x14 */
    squash(b, 6 * 14 * 14);
    for (m = 0; m < 16; m++)                                     /* C3: 16@10x10 */
        for (k = 0; k < 100; k++) a[m * 100 + k] = C3_B[m];
    for (p = 0; p < 60; p++)
        conv_acc_plane(a + C3_OUT[p] * 100, b + C3_IN[p] * 196, C3_W + p * 25, 14, 14);
    squash(a, 16 * 10 * 10);
    subsample(b, a, S4_W, S4_B, 16, 10, 10);                     /* S4: 16@5x5 */
    squash(b, 16 * 5 * 5);
    dense(a, b, C5_W, C5_B, 400, 120);                           /* C5: 120 */
    squash(a, 120);
    dense(b, a, F6_W, F6_B, 120, 84);                            /* F6: 84 */
    squash(b, 84);
{head_code}    for (m = 1; m < 10; m++)
        if ({better}) best = m;
    return best;
}}

void {stem}_preprocess(const unsigned char digit[28 * 28], float x[32 * 32])
{{
    const float scale = (float)(1.275 / 255.0), shift = 0.1f;
    int r, c;
    for (r = 0; r < 32 * 32; r++) x[r] = -shift;
    for (r = 0; r < 28; r++)
        for (c = 0; c < 28; c++) x[(r + 2) * 32 + c + 2] = (float)digit[r * 28 + c] * scale - shift;
}}
"""

_SOFTMAX_HEAD = """\
    dense(out, b, OUT_W, OUT_B, 84, 10);                         /* output: 10 logits */
"""
_RBF_HEAD = """\
    for (m = 0; m < 10; m++) {                                   /* output: 10 RBF distances */
        float acc[LANES] = {0}, s = 0.0f, e;
        for (k = 0; k + LANES <= 84; k += LANES)
            for (p = 0; p < LANES; p++) {
                e = b[k + p] - OUT_W[m * 84 + k + p];
                acc[p] += e * e;
            }
        for (; k < 84; k++) {
            e = b[k] - OUT_W[m * 84 + k];
            s += e * e;
        }
        for (p = 0; p < LANES; p++) s += acc[p];
        out[m] = s;
    }
"""


def c_sources(model, stem: str, source_name=None, header_name=None):
    """The text of the pair: ``(header, source)`` for a model and a C identifier ``stem``
    (the functions' prefix); the files are named ``stem.c`` and ``stem.h`` unless given."""
    from . import __version__
    flat = np.asarray(model._flat, np.float32)
    arrays = []
    for name in _ARRAYS:
        if name == "out.bias" and model.head == "rbf":
            continue
        lo, hi = PARAM_OFFSETS[name]
        arrays.append(_c_array(name.upper().replace(".WEIGHT", "_W").replace(".BIAS", "_B"),
                               flat[lo:hi]))
    rbf = model.head == "rbf"
    nparams = sum(hi - lo for n, (lo, hi) in PARAM_OFFSETS.items() if not (rbf and n == "out.bias"))
    fields = dict(
        stem=stem, head=model.head, source_name=source_name or stem + ".c",
        header_name=header_name or stem + ".h", version=__version__, guard=stem.upper() + "_H",
        nparams=f"{nparams:,}", weights_kb=f"{nparams * 4 / 1000:.0f}",
        stack_floats=f"{_STACK_FLOATS:,}", stack_kb=f"{_STACK_FLOATS * 4 / 1000:.0f}",
        outputs="the RBF distances y_i; the label is the smallest" if rbf
        else "the logits; the label is the largest")
    header = _HEADER.format(**fields)
    source = _SOURCE.format(
        c3_out=", ".join(map(str, C3_OUT)), c3_in=", ".join(map(str, C3_IN)),
        arrays="\n".join(arrays), head_code=_RBF_HEAD if rbf else _SOFTMAX_HEAD,
        better="out[m] < out[best]" if rbf else "out[m] > out[best]", **fields)
    return header, source


def write_c(model, path) -> None:
    """Write ``model`` as ``path`` (a .c file) and the header beside it (``.h`` for
    ``.c``), each atomically (``fileio.atomic_write``; the header first).

    Parameters
    ----------
    model : LeNet5
    path : str or os.PathLike
        Ends in ``.c``; its stem, made a C identifier (:func:`c_identifier`), prefixes the
        functions.
    """
    path = Path(path)
    header_path = path.with_suffix(".h")
    header, source = c_sources(model, c_identifier(path.stem), path.name, header_path.name)
    fileio.atomic_write(header_path, lambda f: f.write(header.encode("ascii")))
    fileio.atomic_write(path, lambda f: f.write(source.encode("ascii")))
