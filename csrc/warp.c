/*
 * Affine warp of a batch of images whose source row depends on the output row only
 * (translation, scaling, squeezing, horizontal shear: the paper's distortions), with
 * bilinear sampling in two passes: the two source rows blended vertically, then each
 * output pixel sampled horizontally. The float operations are exactly those of
 * lenet_native.distort._warp_rows_then_columns (NumPy, float32, no fused multiply-add:
 * this file is built with -std=c99, so -ffp-contract=off), so both give the same bits.
 */
#include <stdint.h>

#include "lenet.h"

/* t (W + 3,) = the padded rows r and r + 1 (padded row q is image row q - 1, or
 * background outside the image) blended: a + (b - a) fy, as the NumPy form computes it */
static void blend_rows(float *restrict t, const float *restrict img, int r, float fy, int H,
                       int W, float bg)
{
    const float *ra = r >= 1 && r <= H ? img + (int64_t)(r - 1) * W : 0;
    const float *rb = r + 1 >= 1 && r + 1 <= H ? img + (int64_t)r * W : 0;
    const float edge = bg + (bg - bg) * fy;
    t[0] = edge;
    t[W + 1] = edge;
    t[W + 2] = edge;
    float *ti = t + 1;
    if (ra && rb)
        for (int j = 0; j < W; j++) ti[j] = ra[j] + (rb[j] - ra[j]) * fy;
    else if (ra)
        for (int j = 0; j < W; j++) ti[j] = ra[j] + (bg - ra[j]) * fy;
    else if (rb)
        for (int j = 0; j < W; j++) ti[j] = bg + (rb[j] - bg) * fy;
    else
        for (int j = 0; j < W; j++) ti[j] = edge;
}

int lenet_warp_rows_forward(float *restrict out, const float *restrict in, const float *restrict ax,
                            const float *restrict axy, const float *restrict ayy,
                            const float *restrict offx, const float *restrict offy, float background,
                            int64_t N, int H, int W, float *restrict workspace)
{
    if (N < 0 || H < 1 || W < 1 || H > 4096 || W > 4096) return LENET_ERR_SIZE;
    if (N == 0) return LENET_OK;
    if (!out || !in || !ax || !axy || !ayy || !offx || !offy || !workspace) return LENET_ERR_NULL;
    float *t = workspace;
    const float hmax = (float)H + 1.0f, wmax = (float)W + 1.0f;
    for (int64_t b = 0; b < N; b++) {
        const float *img = in + b * (int64_t)H * W;
        float *o = out + b * (int64_t)H * W;
        for (int Y = 0; Y < H; Y++) {
            /* vertical: source row sy = ayy Y + offy, clipped to [0, H + 1] */
            float sy = ayy[b] * (float)Y + offy[b];
            sy = !(sy >= 0.0f) ? 0.0f : sy > hmax ? hmax : sy;   /* NaN -> 0: never an index out of range */
            const int r = (int)sy;            /* sy >= 0: truncation is floor */
            const float y0 = (float)r, fy = sy - y0;
            blend_rows(t, img, r, fy, H, W, background);
            /* horizontal: sx = ax X + (axy Y + offx), clipped to [0, W + 1] */
            const float xoff = axy[b] * (float)Y + offx[b];
            for (int X = 0; X < W; X++) {
                float sx = ax[b] * (float)X + xoff;
                sx = !(sx >= 0.0f) ? 0.0f : sx > wmax ? wmax : sx;
                const int c = (int)sx;
                const float x0 = (float)c, fx = sx - x0;
                const float v = t[c];
                float v1 = t[c + 1] - v;
                v1 = v1 * fx;
                o[(int64_t)Y * W + X] = v + v1;
            }
        }
    }
    return LENET_OK;
}
