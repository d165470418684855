// RMSNorm (Llama family) over a few rows in one call: y = w * (x * rsqrt(mean(x^2) + eps)), in
// float32 as the reference computes it (for bfloat16: x widened, x * rsqrt(...) rounded to
// bfloat16, then w * that rounded again, as torch's two bfloat16 ops round). A decode step runs
// two per layer on one row each; as torch ops that is six kernel calls of microseconds apiece.
// The sum of squares is taken in another order than torch's (a float32 ulp or so apart).
#include "kernels.h"

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {   // round to nearest even, NaN kept quiet
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float sum_squares(const float *x, long H) {
    vf acc = vzero();
    long k = 0;
    for (; k + W <= H; k += W) { vf v = vld(x + k); acc = vfma(v, v, acc); }
    if (k < H) { vf v = vldm(vtail(H - k), x + k); acc = vfma(v, v, acc); }
    return vsum(acc);
}

EXPORT int rmsnorm_f32(const float *x, long M, long ldx, long H, const float *w, float eps,
                       float *y, long ldy) {
    if (M < 1 || H < 1) return -1;
    for (long m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        float r = 1.0f / sqrtf(sum_squares(xr, H) / (float)H + eps);
        for (long k = 0; k < H; k++) {
            float t = xr[k] * r;   // rounded before the weight's product, as torch's two ops
            yr[k] = w[k] * t;
        }
    }
    return 0;
}

EXPORT int rmsnorm_bf16(const uint16_t *x, long M, long ldx, long H, const uint16_t *w, float eps,
                        uint16_t *y, long ldy) {
    if (M < 1 || H < 1 || H > 16384) return -1;   // the row is widened on the stack
    float row[H];
    for (long m = 0; m < M; m++) {
        const uint16_t *xr = x + m * ldx;
        uint16_t *yr = y + m * ldy;
        for (long k = 0; k < H; k++) row[k] = bf16_to_f32(xr[k]);
        float r = 1.0f / sqrtf(sum_squares(row, H) / (float)H + eps);
        for (long k = 0; k < H; k++) {
            float t = bf16_to_f32(f32_to_bf16(row[k] * r));
            yr[k] = f32_to_bf16(bf16_to_f32(w[k]) * t);
        }
    }
    return 0;
}
