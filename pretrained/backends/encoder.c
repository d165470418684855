// Post-LayerNorm encoder layers (BERT's) on a few rows, all layers in one call: float32 (every
// variant) and bfloat16 (variants with AVX512-BF16).
// x -> LN1(x + O attn(x)) = h -> LN2(h + Down gelu(Up h)), q/k/v in one kernel call. At <= 16
// rows the layer's own math besides the linears (attention over <= 16 keys, two LayerNorms) is
// microseconds, while doing it as ~15 torch ops costs more than that: each op also finds its
// code and data evicted from the caches by the weight stream of the linear before it.
#include <omp.h>

#include "kernels.h"

// y = (y - mean) / sqrt(var + eps) * g + b over each row of H (biased variance, as torch)
static void layer_norm_rows(float *y, long M, long H, const float *g, const float *b, float eps) {
    for (long m = 0; m < M; m++) {
        float *p = y + m * H;
        vf s = vzero();
        for (long i = 0; i < H; i += W) s = vadd(s, vldm(vtail(H - i), p + i));
        vf mean = vset1(vsum(s) / H), v = vzero();
        for (long i = 0; i < H; i += W) {
            vm mk = vtail(H - i);
            vf d = vmaskz(mk, vsub(vldm(mk, p + i), mean));
            v = vfma(d, d, v);
        }
        vf r = vset1(1.0f / sqrtf(vsum(v) / H + eps));
        for (long i = 0; i < H; i += W) {
            vm mk = vtail(H - i);
            vf d = vmul(vsub(vldm(mk, p + i), mean), r);
            if (g) d = vmul(d, vldm(mk, g + i));
            if (b) d = vadd(d, vldm(mk, b + i));
            vstm(p + i, mk, d);
        }
    }
}

// Attention over at most 16 keys: the scores of one query for all keys are 16 floats (one or
// two vectors). p: exp(s - max) per key (0 where masked); returns 1 / their sum, 0 when no key
// may be attended to (that query's output is zeros, as SDPA gives).
static inline float softmax_keys(const float *s, unsigned valid, float *p) {
    float mx = -INFINITY;
    for (int j = 0; j < 16; j++)
        if (valid >> j & 1 && s[j] > mx) mx = s[j];
    float sum = 0.0f;
    for (int j = 0; j < 16; j += W) {
        vf e = vmaskz(vbits(valid >> j & ((1u << W) - 1)), exp_neg(vsub(vld(s + j), vset1(mx))));
        vst(p + j, e);
        sum += vsum(e);
    }
    return valid ? 1.0f / sum : 0.0f;
}

// bits of the keys a query may attend to: the first T, less those keep marks 0
static inline unsigned key_mask(const unsigned char *keep, long T) {
    unsigned valid = (1u << T) - 1;
    if (keep)
        for (long j = 0; j < T; j++)
            if (!keep[j]) valid &= ~(1u << j);
    return valid;
}

// to nearest even (f is finite: a softmax weight in [0, 1])
static inline float round_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fff + (u >> 16 & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

// softmax(q k^T / sqrt(D) where keep) v per sequence and head, heads across the threads; qkv
// rows are [q | k | v] (3H wide). Queries: every position, or (first_only) each sequence's first.
// kt: the head's keys transposed (D x 16, zero past T), so a score vector is D broadcast FMAs.
// round_p: the weights of v rounded to bfloat16 first, as torch's CPU SDPA kernel does in bfloat16.
static void attention_rows(const float *qkv, long B, long T, long H, int nh, const unsigned char *keep,
                           int first_only, int round_p, float *ctx, int nthreads) {
    long D = H / nh, ld = 3 * H, tq = first_only ? 1 : T;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (long bi = 0; bi < B; bi++)
        for (int h = 0; h < nh; h++) {
            float kt[D * 16], s[16], p[16];
            const float *base = qkv + bi * T * ld + h * D;
            for (long d = 0; d < D; d++)
                for (long j = 0; j < 16; j++) kt[d * 16 + j] = j < T ? base[j * ld + H + d] : 0.0f;
            unsigned valid = key_mask(keep ? keep + bi * T : NULL, T);
            for (long i = 0; i < tq; i++) {
                const float *q = base + i * ld;
                for (int j = 0; j < 16; j += W) {
                    vf sv = vzero();
                    for (long d = 0; d < D; d++) sv = vfma(vset1(q[d]), vld(kt + d * 16 + j), sv);
                    vst(s + j, vmul(sv, vset1(scale)));
                }
                float inv = softmax_keys(s, valid, p);
                if (round_p)
                    for (int j = 0; j < 16; j++) p[j] = round_bf16(p[j]);
                float *o = ctx + (bi * tq + i) * H + h * D;
                for (long d = 0; d < D; d += W) {
                    vm mk = vtail(D - d);
                    vf a = vzero();
                    for (long j = 0; j < T; j++)
                        a = vfma(vset1(p[j]), vldm(mk, base + j * ld + 2 * H + d), a);
                    vstm(o + d, mk, vmul(a, vset1(inv)));
                }
            }
        }
}

static int bad_shape(long B, long T, long H, int nh, long I, int L) {
    long M = B * T;
    return B < 1 || T < 1 || M > ROWS_MAX || nh < 1 || H < 1 || H % nh || I < 1 || L < 1;
}

// One layer: x (M = B x T rows) -> y (Mo rows: M, or B with first_only); buf: scratch.
static int encoder_layer(const float *x, long B, long T, long H, int nh, long I,
                         const float *const *w, const float *const *bias, const float *const *ln,
                         const float *eps, const unsigned char *keep, int first_only, float *y,
                         float *buf, int nthreads) {
    long M = B * T, Mo = first_only ? B : M, Ns[3] = {H, H, H};
    float *qkv = buf, *ctx = qkv + M * 3 * H, *h = ctx + Mo * H, *inter = h + Mo * H;
    if (linear_f32_n(x, M, H, 3, w, bias, Ns, H, qkv, 3 * H, nthreads, 0, NULL, 0)) return -1;
    attention_rows(qkv, B, T, H, nh, keep, first_only, 0, ctx, nthreads);
    // + x: every row, or each sequence's first (rows T * H apart)
    if (linear_f32(ctx, Mo, H, w[3], H, H, bias[3], h, H, nthreads, 0, x, first_only ? T * H : H)) return -1;
    layer_norm_rows(h, Mo, H, ln[0], ln[1], eps[0]);
    if (linear_f32(h, Mo, H, w[4], I, H, bias[4], inter, I, nthreads, 1, NULL, 0)) return -1;
    if (linear_f32(inter, Mo, I, w[5], H, I, bias[5], y, H, nthreads, 0, h, H)) return -1;
    layer_norm_rows(y, Mo, H, ln[2], ln[3], eps[1]);
    return 0;
}

// L layers in turn. Per layer l: w[6l..6l+5], bias[6l..]: q, k, v, o, up, down (a NULL bias is
// zero); ln[4l..]: gamma1, beta1, gamma2, beta2 (NULL: 1 and 0); eps[2l], eps[2l+1].
// keep: B x T, nonzero where a key may be attended to, or NULL for all. y: B x T x H, or B x 1 x H
// with first_only (the last layer at each sequence's first position only: all a pooler reads;
// its attention still reads every position).
EXPORT int encoder_f32(const float *x, long B, long T, long H, int nh, long I, int L,
                       const float *const *w, const float *const *bias, const float *const *ln,
                       const float *eps, const unsigned char *keep, int first_only, float *y,
                       int nthreads) {
    if (bad_shape(B, T, H, nh, I, L)) return -1;
    long M = B * T, layer_len = M * 3 * H + 2 * M * H + M * I;
    float *buf = scratch_floats(layer_len + 2 * M * H);
    if (!buf) return -1;
    const float *cur = x;
    for (int l = 0; l < L; l++) {
        float *out = l == L - 1 ? y : buf + layer_len + (l & 1) * M * H;
        if (encoder_layer(cur, B, T, H, nh, I, w + 6 * l, bias + 6 * l, ln + 4 * l, eps + 2 * l, keep,
                          first_only && l == L - 1, out, buf, nthreads)) return -1;
        cur = out;
    }
    return 0;
}

// ---- the same layers with Linear8bit's int8 weights (float32 activations between them) --------
// int8_rows.c: LLM.int8() (act8) or weight-only int8 products of one input
int int8_rows(int count, const int8_t *const *ws, const float *const *scbs, const float *const *biases,
              const long *Ns, long K, const float *x, long M, long ldx, float th, int act8,
              float *y, long ldy, int nthreads);

static void add_rows(float *y, long M, long H, const float *r, long ldr) {   // y += r, row by row
    for (long m = 0; m < M; m++)
        for (long i = 0; i < H; i += W) {
            vm mk = vtail(H - i);
            vstm(y + m * H + i, mk, vadd(vldm(mk, y + m * H + i), vldm(mk, r + m * ldr + i)));
        }
}

// As encoder_f32, each linear an int8 weight (out, in) with its SCB (the row maxima, float32) and
// a float32 bias: computed as the modules compute it, LLM.int8() where act8 (int8 activations,
// outlier columns at |x| >= th in float32), else weight-only (float32 activations).
EXPORT int encoder_i8(const float *x, long B, long T, long H, int nh, long I, int L,
                      const int8_t *const *w, const float *const *scb, const float *const *bias,
                      const float *const *ln, const float *eps, const unsigned char *keep, int first_only,
                      float *y, int nthreads, float th, int act8) {
    if (bad_shape(B, T, H, nh, I, L)) return -1;
    long M = B * T, layer_len = M * 3 * H + 2 * M * H + M * I;
    float *buf = scratch_floats(layer_len + 2 * M * H);
    if (!buf) return -1;
    const float *cur = x;
    for (int l = 0; l < L; l++) {
        const int8_t *const *wl = w + 6 * l;
        const float *const *sl = scb + 6 * l, *const *bl = bias + 6 * l, *const *nl = ln + 4 * l;
        const int fo = first_only && l == L - 1;
        const long Mo = fo ? B : M, Ns[3] = {H, H, H};
        float *out = l == L - 1 ? y : buf + layer_len + (l & 1) * M * H;
        float *qkv = buf, *ctx = qkv + M * 3 * H, *h = ctx + Mo * H, *inter = h + Mo * H;
        if (int8_rows(3, wl, sl, bl, Ns, H, cur, M, H, th, act8, qkv, 3 * H, nthreads)) return -1;
        attention_rows(qkv, B, T, H, nh, keep, fo, 0, ctx, nthreads);
        if (int8_rows(1, wl + 3, sl + 3, bl + 3, &H, H, ctx, Mo, H, th, act8, h, H, nthreads)) return -1;
        add_rows(h, Mo, H, cur, fo ? T * H : H);
        layer_norm_rows(h, Mo, H, nl[0], nl[1], eps[2 * l]);
        if (int8_rows(1, wl + 4, sl + 4, bl + 4, &I, H, h, Mo, H, th, act8, inter, I, nthreads)) return -1;
        gelu_rows(inter, Mo, I, 0, I);
        if (int8_rows(1, wl + 5, sl + 5, bl + 5, &H, I, inter, Mo, I, th, act8, out, H, nthreads)) return -1;
        add_rows(out, Mo, H, h, H);
        layer_norm_rows(out, Mo, H, nl[2], nl[3], eps[2 * l + 1]);
        cur = out;
    }
    return 0;
}

#if defined(__AVX512BF16__)
// ---- the same layers in bfloat16 (AVX-512 here: W == 16, vm a __mmask16) ----------------------
static void to_f32(const uint16_t *src, long n, float *dst) {
    for (long i = 0; i < n; i += 16) _mm512_mask_storeu_ps(dst + i, vtail(n - i), ldbf(src + i, vtail(n - i)));
}
static void to_bf16(const float *src, long n, uint16_t *dst) {
    for (long i = 0; i < n; i += 16) stbf(dst + i, vtail(n - i), _mm512_maskz_loadu_ps(vtail(n - i), src + i));
}

// y (bfloat16, M x H) <- LN(bf16(y + r)): torch rounds the sum, then normalises in float32
// (gamma and beta, bfloat16, already widened into g and b) and rounds the result.
static void add_norm_bf16(uint16_t *y, long M, long H, const uint16_t *r, long ldr, const float *g,
                          const float *b, float eps, float *f) {
    for (long m = 0; m < M; m++)
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = vtail(H - i);
            stbf(y + m * H + i, mk, _mm512_add_ps(ldbf(y + m * H + i, mk), ldbf(r + m * ldr + i, mk)));
        }
    to_f32(y, M * H, f);
    layer_norm_rows(f, M, H, g, b, eps);
    to_bf16(f, M * H, y);
}

static __thread void *scratch_bf;
static __thread long scratch_bf_len;

// As encoder_f32, in bfloat16 (weights, biases, LayerNorm parameters, x and y). The linears are
// linear_bf16's (AMX tiles or vdpbf16ps); the rest runs in float32 from bfloat16 values, rounded
// to bfloat16 where torch's bfloat16 ops round: each linear's output, the attention output, the
// residual sums, GELU and the LayerNorms.
EXPORT int encoder_bf16(const uint16_t *x, long B, long T, long H, int nh, long I, int L,
                        const uint16_t *const *w, const uint16_t *const *bias, const uint16_t *const *ln,
                        const float *eps, const unsigned char *keep, int first_only, uint16_t *y,
                        int nthreads) {
    if (bad_shape(B, T, H, nh, I, L)) return -1;
    long M = B * T, layer_len = M * 3 * H + 2 * M * H + M * I;
    uint16_t *buf = grow(&scratch_bf, &scratch_bf_len, (layer_len + 2 * M * H) * 2);
    // float32 copies: qkv, the attention output, a row block for the norms and GELU, 4 x gamma/beta
    float *f = scratch_floats(M * 3 * H + M * H + M * (I > H ? I : H) + 4 * H);
    if (!buf || !f) return -1;
    float *qf = f, *cf = qf + M * 3 * H, *rows = cf + M * H, *gb = rows + M * (I > H ? I : H);
    const uint16_t *cur = x;
    for (int l = 0; l < L; l++) {
        const uint16_t *const *wl = w + 6 * l, *const *bl = bias + 6 * l, *const *nl = ln + 4 * l;
        int fo = first_only && l == L - 1;
        long Mo = fo ? B : M, Ns[3] = {H, H, H};
        uint16_t *out = l == L - 1 ? y : buf + layer_len + (l & 1) * M * H;
        uint16_t *qkv = buf, *ctx = qkv + M * 3 * H, *h = ctx + Mo * H, *inter = h + Mo * H;
        for (int j = 0; j < 4; j++) {   // gamma1, beta1, gamma2, beta2 (NULL: 1 and 0)
            if (nl[j]) to_f32(nl[j], H, gb + j * H);
            else for (long i = 0; i < H; i++) gb[j * H + i] = j % 2 ? 0.0f : 1.0f;
        }
        if (linear_bf16_n(cur, M, H, 3, wl, bl, Ns, H, qkv, 3 * H, nthreads)) return -1;
        to_f32(qkv, M * 3 * H, qf);
        attention_rows(qf, B, T, H, nh, keep, fo, 1, cf, nthreads);
        to_bf16(cf, Mo * H, ctx);
        if (linear_bf16(ctx, Mo, H, wl[3], H, H, bl[3], h, H, nthreads)) return -1;
        add_norm_bf16(h, Mo, H, cur, fo ? T * H : H, gb, gb + H, eps[2 * l], rows);
        if (linear_bf16(h, Mo, H, wl[4], I, H, bl[4], inter, I, nthreads)) return -1;
        to_f32(inter, Mo * I, rows);
        gelu_rows(rows, Mo, I, 0, I);
        to_bf16(rows, Mo * I, inter);
        if (linear_bf16(inter, Mo, I, wl[5], H, I, bl[5], out, H, nthreads)) return -1;
        add_norm_bf16(out, Mo, H, h, H, gb + 2 * H, gb + 3 * H, eps[2 * l + 1], rows);
        cur = out;
    }
    return 0;
}
#else
EXPORT int encoder_bf16(const uint16_t *x, long B, long T, long H, int nh, long I, int L,
                        const uint16_t *const *w, const uint16_t *const *bias, const uint16_t *const *ln,
                        const float *eps, const unsigned char *keep, int first_only, uint16_t *y,
                        int nthreads) { return -1; }
#endif
