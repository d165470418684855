// A decode step of an encoder-decoder's decoder (Whisper, BART, Marian, mBART, Pegasus) in one
// call: every layer, for one new token per sequence (B <= 16 rows), float32:
//   pre-LN (Whisper, mBART, Pegasus):  x += SA(LN1 x); x += CA(LN2 x); x += fc2 act(fc1 LN3 x)
//   post-LN (BART, Marian):            x = LN1(x + SA x); x = LN2(x + CA x); x = LN3(x + fc2 act(fc1 x))
// SA: q/k/v in one kernel call (biases; Whisper's k has none), the new k/v written into the
// self-attention cache's own storage at slot `start`, attention over slots 0 .. start under keep
// (q . k scaled by `scale`, as the modules' SDPA). CA: q projected, attention over the encoder
// output's keys/values projected once per input and stored in the cache (Be inputs; the B = Be *
// per rows of one input, its beams, read the same keys), the input's padding mask. act: exact
// GELU, ReLU or SiLU. At a handful of rows each layer's ~30 torch ops cost as much as its math.
// Also T5's decoder (t5_decoder_step_f32: RMSNorms, position bias added to unscaled scores).
#include <omp.h>
#include <stdlib.h>

#include "kernels.h"

typedef struct {
    const float *w[3], *b[3];   // self q, k, v (N = H each; a NULL bias is zero)
    const float *wo, *bo;       // self out
    const float *wq, *bq;       // cross q
    const float *wco, *bco;     // cross out
    const float *w1, *b1;       // fc1 (I x H)
    const float *w2, *b2;       // fc2 (H x I)
    const float *ln[6];         // self, cross, final LayerNorm: weight, bias
    float eps[3];
    float pad_;
    float *kc, *vc;             // self cache (B, nh, cap, D)
    int64_t cap;
    const float *ck, *cv;       // cross keys/values (Be, nh, Se, D)
} s2s_layer;

static __thread void *sscratch;
static __thread long sscratch_len;

// y = (x - mean) / sqrt(var + eps) * g + b per row of H (biased variance, as torch)
static void ln_rows(const float *x, long M, long H, const float *g, const float *b, float eps, float *y) {
    for (long m = 0; m < M; m++) {
        const float *p = x + m * H;
        float *q = y + m * H;
        vf s = vzero();
        for (long i = 0; i < H; i += W) s = vadd(s, vldm(vtail(H - i), p + i));
        const vf mean = vset1(vsum(s) / H);
        vf v = vzero();
        for (long i = 0; i < H; i += W) {
            vm mk = vtail(H - i);
            vf d = vmaskz(mk, vsub(vldm(mk, p + i), mean));
            v = vfma(d, d, v);
        }
        const vf r = vset1(1.0f / sqrtf(vsum(v) / H + eps));
        for (long i = 0; i < H; i += W) {
            vm mk = vtail(H - i);
            vf d = vmul(vsub(vldm(mk, p + i), mean), r);
            if (g) d = vmul(d, vldm(mk, g + i));
            if (b) d = vadd(d, vldm(mk, b + i));
            vstm(q + i, mk, d);
        }
    }
}

// softmax(q_i . k_j * scale over the keys j < S that keep marks) . v_j for g query heads that
// share these keys (the beams of one input over its encoder output; g = 1 in self-attention),
// each key and value row read once for all g: q_i at q + i * ldq, out_i at out + i * ldo.
// s: g x S scores, acc: g x D.
// ab: scores to add (T5's position bias), S per query, ldab apart, or NULL.
static void attend(const float *q, long ldq, long g, const float *kc, const float *vc, long S, long D,
                   float scale, const unsigned char *keep, const float *ab, long ldab, float *s, float *acc,
                   float *out, long ldo) {
    float mx[ROWS_MAX], inv[ROWS_MAX];
    for (long i = 0; i < g; i++) mx[i] = -INFINITY;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) {
            for (long i = 0; i < g; i++) s[i * S + j] = -INFINITY;
            continue;
        }
        const float *k = kc + j * D;
        for (long i = 0; i < g; i++) {
            const float *qi = q + i * ldq;
            vf a = vzero();
            for (long d = 0; d < D; d += W) { vm mk = vtail(D - d); a = vfma(vldm(mk, qi + d), vldm(mk, k + d), a); }
            const float v = vsum(a) * scale + (ab ? ab[i * ldab + j] : 0.0f);
            s[i * S + j] = v;
            if (v > mx[i]) mx[i] = v;
        }
    }
    for (long i = 0; i < g; i++) {
        float *si = s + i * S, sum = 0.0f;
        if (mx[i] == -INFINITY) { inv[i] = 0.0f; continue; }   // no key to attend to: zeros
        for (long j = 0; j < S; j++) {
            if (si[j] == -INFINITY) { si[j] = 0.0f; continue; }
            si[j] = expf(si[j] - mx[i]);
            sum += si[j];
        }
        inv[i] = 1.0f / sum;
    }
    for (long i = 0; i < g * D; i++) acc[i] = 0.0f;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) continue;
        const float *v = vc + j * D;
        for (long d = 0; d < D; d += W) {
            vm mk = vtail(D - d);
            const vf vv = vldm(mk, v + d);
            for (long i = 0; i < g; i++)
                vstm(acc + i * D + d, mk, vfma(vset1(s[i * S + j]), vv, vldm(mk, acc + i * D + d)));
        }
    }
    for (long i = 0; i < g; i++)
        for (long d = 0; d < D; d++) out[i * ldo + d] = mx[i] == -INFINITY ? 0.0f : acc[i * D + d] * inv[i];
}

// one key head per task: input e = task / nh's `per` rows (their query heads) over its keys
static void attend_all(const float *q, long ldq, const float *k, const float *v, long cap, long S, long B,
                       long per, long nh, long D, float scale, const unsigned char *keep, long ldk,
                       const float *ab, float *sc, float *ctx, int nt) {
    const long tasks = B / per * nh, H = nh * D;
    const int at = B * nh * S * D >= (1L << 16) ? (nt < tasks ? nt : (int)tasks) : 1;   // short: one thread
    #pragma omp parallel for num_threads(at) schedule(static) if (at > 1)
    for (long task = 0; task < tasks; task++) {
        const long e = task / nh, h = task % nh, base = (e * nh + h) * cap * D;
        float *mine = sc + (at > 1 ? omp_get_thread_num() : 0) * per * (S + D);
        attend(q + e * per * ldq + h * D, ldq, per, k + base, v + base, S, D, scale, keep ? keep + e * ldk : NULL,
               ab ? ab + (e * per * nh + h) * S : NULL, nh * S, mine, mine + per * S, ctx + e * per * H + h * D, H);
    }
}

// 1 gelu (erf), 2 relu, 3 silu, 4 gelu (tanh form)
static inline float act1(float x, int act) {
    return act == 1 ? 0.5f * x * (1.0f + erff(x * 0.70710678118654752f))
         : act == 2 ? (x > 0.0f ? x : 0.0f)
         : act == 3 ? x / (1.0f + expf(-x))
         : 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
}

static void activate(float *y, long n, int act) {
    for (long i = 0; i < n; i++) y[i] = act1(y[i], act);
}

static void add_to(float *y, const float *t, long n) { for (long i = 0; i < n; i++) y[i] += t[i]; }

// y = x + f(LN x) (pre) or LN(x + f x) (post), f's output in t; h: f's input
#define SUBLAYER_IN(x, ln_g, ln_b, eps) (pre ? (ln_rows(x, B, H, ln_g, ln_b, eps, h), h) : (x))

// L layers on x (B x H) -> y (B x H, the last layer's output before the final norm).
// keep: B x (start + 1) bytes for the self-attention (NULL: all); per: rows per encoder input
// (Be = B / per); Se: encoder positions; ckeep: Be x Se bytes (NULL: all). pre: LayerNorm before
// each sublayer; act: 1 gelu, 2 relu, 3 silu. Returns nonzero where it cannot (sizes, memory).
EXPORT int s2s_decoder_step_f32(const s2s_layer *layers, int L, const float *x, long B, long H, int nh,
                                long I, int pre, int act, float scale, long start, const unsigned char *keep,
                                long per, long Se, const unsigned char *ckeep, float *y, int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || H % nh || H / nh > 1024 || I < 1 || start < 0
        || start + 1 > (1L << 20) || per < 1 || B % per || Se < 1 || act < 1 || act > 3)
        return -1;
    const long D = H / nh, S = start + 1, Smax = S > Se ? S : Se;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    const int nt = nthreads < 1 ? 1 : nthreads;
    // h (B x H), qkv (B x 3H), ctx (B x H), inter (B x I), t (B x H), per thread: scores and
    // accumulators of up to B queries (B x (Smax + D))
    float *buf = grow(&sscratch, &sscratch_len, 4 * (B * (6 * H + I) + nt * B * (Smax + D)));
    if (!buf) return -1;
    float *h = buf, *qkv = h + B * H, *ctx = qkv + B * 3 * H, *inter = ctx + B * H, *t = inter + B * I;
    float *sc = t + B * H;
    const long Ns[3] = {H, H, H};
    memcpy(y, x, B * H * sizeof(float));
    for (int l = 0; l < L; l++) {
        const s2s_layer *ly = layers + l;
        // self-attention
        const float *in = SUBLAYER_IN(y, ly->ln[0], ly->ln[1], ly->eps[0]);
        if (linear_f32_n(in, B, H, 3, ly->w, ly->b, Ns, H, qkv, 3 * H, nt, 0, NULL, 0)) return -1;
        for (long b = 0; b < B; b++)
            for (long g = 0; g < nh; g++) {
                const long at = ((b * nh + g) * ly->cap + start) * D;
                memcpy(ly->kc + at, qkv + b * 3 * H + H + g * D, D * sizeof(float));
                memcpy(ly->vc + at, qkv + b * 3 * H + 2 * H + g * D, D * sizeof(float));
            }
        attend_all(qkv, 3 * H, ly->kc, ly->vc, ly->cap, S, B, 1, nh, D, scale, keep, S, NULL, sc, ctx, nt);
        if (linear_f32(ctx, B, H, ly->wo, H, H, ly->bo, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
        if (!pre) ln_rows(y, B, H, ly->ln[0], ly->ln[1], ly->eps[0], y);
        // cross-attention
        in = SUBLAYER_IN(y, ly->ln[2], ly->ln[3], ly->eps[1]);
        if (linear_f32(in, B, H, ly->wq, H, H, ly->bq, qkv, H, nt, 0, NULL, 0)) return -1;
        attend_all(qkv, H, ly->ck, ly->cv, Se, Se, B, per, nh, D, scale, ckeep, Se, NULL, sc, ctx, nt);
        if (linear_f32(ctx, B, H, ly->wco, H, H, ly->bco, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
        if (!pre) ln_rows(y, B, H, ly->ln[2], ly->ln[3], ly->eps[1], y);
        // feed-forward
        in = SUBLAYER_IN(y, ly->ln[4], ly->ln[5], ly->eps[2]);
        if (linear_f32(in, B, H, ly->w1, I, H, ly->b1, inter, I, nt, act == 1, NULL, 0)) return -1;
        if (act != 1) activate(inter, B * I, act);
        if (linear_f32(inter, B, I, ly->w2, H, I, ly->b2, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
        if (!pre) ln_rows(y, B, H, ly->ln[4], ly->ln[5], ly->eps[2], y);
    }
    return 0;
}

// ---- T5's decoder (float32) --------------------------------------------------------------
// x += o attn(RMS1 x; + position bias); x += o cross(RMS2 x); x += wo act(wi RMS3 x) [gated:
// act(wi_0 h) * wi_1 h]. No score scaling, no biases, RMSNorm without the mean.
EXPORT int rmsnorm_f32(const float *x, long M, long ldx, long H, const float *w, float eps, float *y, long ldy);

typedef struct {
    const float *w[3];          // q, k, v (inner x H)
    const float *wo;            // self o (H x inner)
    const float *wq, *wco;      // cross q, o
    const float *wi[2];         // wi (or wi_0, wi_1: gated), F x H
    const float *wff;           // wo (H x F)
    const float *ln[3];         // RMSNorm weights
    float *kc, *vc;             // self cache (B, nh, cap, dk)
    int64_t cap;
    const float *ck, *cv;       // cross keys/values (Be, nh, Se, dk)
} t5_layer;

static __thread void *tscratch;
static __thread long tscratch_len;

// L T5 blocks on x (B x H). ab: the self-attention scores to add, (B, nh, start + 1) (position
// bias and mask); ckeep: Be x Se bytes (NULL: all); gated: wi_0/wi_1; act as act1.
EXPORT int t5_decoder_step_f32(const t5_layer *layers, int L, const float *x, long B, long H, int nh, long dk,
                               long F, int gated, int act, float eps, long start, const float *ab, long per,
                               long Se, const unsigned char *ckeep, float *y, int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || dk < 1 || dk > 1024 || F < 1 || start < 0 || !ab
        || start + 1 > (1L << 20) || per < 1 || B % per || Se < 1 || act < 1 || act > 4)
        return -1;
    const long S = start + 1, Smax = S > Se ? S : Se, in = nh * dk, nF = gated ? 2 : 1;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    const int nt = nthreads < 1 ? 1 : nthreads;
    float *buf = grow(&tscratch, &tscratch_len, 4 * (B * (2 * H + 4 * in + 2 * F) + nt * B * (Smax + dk)));
    if (!buf) return -1;
    float *h = buf, *qkv = h + B * H, *ctx = qkv + B * 3 * in, *ff = ctx + B * in, *t = ff + B * 2 * F;
    float *sc = t + B * H;
    const long Ns[3] = {in, in, in}, Fs[2] = {F, F};
    memcpy(y, x, B * H * sizeof(float));
    for (int l = 0; l < L; l++) {
        const t5_layer *ly = layers + l;
        rmsnorm_f32(y, B, H, H, ly->ln[0], eps, h, H);
        if (linear_f32_n(h, B, H, 3, ly->w, (const float *const *)(const float *[3]){NULL, NULL, NULL}, Ns, H,
                         qkv, 3 * in, nt, 0, NULL, 0)) return -1;
        for (long b = 0; b < B; b++)
            for (long g = 0; g < nh; g++) {
                const long at = ((b * nh + g) * ly->cap + start) * dk;
                memcpy(ly->kc + at, qkv + b * 3 * in + in + g * dk, dk * sizeof(float));
                memcpy(ly->vc + at, qkv + b * 3 * in + 2 * in + g * dk, dk * sizeof(float));
            }
        attend_all(qkv, 3 * in, ly->kc, ly->vc, ly->cap, S, B, 1, nh, dk, 1.0f, NULL, S, ab, sc, ctx, nt);
        if (linear_f32(ctx, B, in, ly->wo, H, in, NULL, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
        rmsnorm_f32(y, B, H, H, ly->ln[1], eps, h, H);
        if (linear_f32(h, B, H, ly->wq, in, H, NULL, qkv, in, nt, 0, NULL, 0)) return -1;
        attend_all(qkv, in, ly->ck, ly->cv, Se, Se, B, per, nh, dk, 1.0f, ckeep, Se, NULL, sc, ctx, nt);
        if (linear_f32(ctx, B, in, ly->wco, H, in, NULL, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
        rmsnorm_f32(y, B, H, H, ly->ln[2], eps, h, H);
        if (linear_f32_n(h, B, H, (int)nF, ly->wi, (const float *const *)(const float *[2]){NULL, NULL}, Fs, H,
                         ff, nF * F, nt, 0, NULL, 0)) return -1;
        for (long b = 0; b < B; b++)
            for (long i = 0; i < F; i++) {
                float *r = ff + b * nF * F;
                r[i] = gated ? act1(r[i], act) * r[F + i] : act1(r[i], act);
            }
        for (long b = 0; b < B && gated; b++)   // (rows F wide for the down projection)
            memmove(ff + b * F, ff + b * 2 * F, F * sizeof(float));
        if (linear_f32(ff, B, F, ly->wff, H, F, NULL, t, H, nt, 0, NULL, 0)) return -1;
        add_to(y, t, B * H);
    }
    return 0;
}

// ---- bfloat16 (variants with AVX512-BF16: the linears are linear_bf16_n's) ------------------
// The same step on bfloat16 weights, norms, caches and residual stream, each part in float32
// from bfloat16 values and rounded to bfloat16 where the modules' bfloat16 ops round: each
// linear's output, each LayerNorm's, the attention output (its softmax weights rounded before
// they meet v, as torch's CPU kernel), the activation, the residual sums.
static inline float s2s_bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t s2s_f2bf(float f) {   // to nearest even
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

#if defined(__AVX512BF16__)
static __thread void *bscratch;
static __thread long bscratch_len;

// LayerNorm of bfloat16 rows in float32 (mean, biased variance, weight, bias), rounded once
static void ln_rows_bf16(const uint16_t *x, long M, long H, const uint16_t *g, const uint16_t *b, float eps,
                         uint16_t *y) {
    for (long m = 0; m < M; m++) {
        const uint16_t *p = x + m * H;
        uint16_t *q = y + m * H;
        __m512 s = _mm512_setzero_ps();
        for (long i = 0; i < H; i += 16) s = _mm512_add_ps(s, ldbf(p + i, vtail(H - i)));
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(s) / H);
        __m512 v = _mm512_setzero_ps();
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = vtail(H - i);
            __m512 d = _mm512_maskz_sub_ps(mk, ldbf(p + i, mk), mean);
            v = _mm512_fmadd_ps(d, d, v);
        }
        const __m512 r = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(v) / H + eps));
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = vtail(H - i);
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(ldbf(p + i, mk), mean), r);
            d = _mm512_fmadd_ps(d, ldbf(g + i, mk), ldbf(b + i, mk));
            stbf(q + i, mk, d);
        }
    }
}

// as attend() on bfloat16 keys/values; q float32 (from bfloat16), out rounded to bfloat16
static void attend_bf16(const float *q, long ldq, long g, const uint16_t *kc, const uint16_t *vc, long S,
                        long D, float scale, const unsigned char *keep, const float *ab, long ldab, float *s,
                        float *acc, uint16_t *out, long ldo) {
    float mx[ROWS_MAX], inv[ROWS_MAX];
    for (long i = 0; i < g; i++) mx[i] = -INFINITY;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) {
            for (long i = 0; i < g; i++) s[i * S + j] = -INFINITY;
            continue;
        }
        const uint16_t *k = kc + j * D;
        for (long i = 0; i < g; i++) {
            const float *qi = q + i * ldq;
            __m512 a = _mm512_setzero_ps();
            for (long d = 0; d < D; d += 16) {
                __mmask16 mk = vtail(D - d);
                a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, qi + d), ldbf(k + d, mk), a);
            }
            const float v = _mm512_reduce_add_ps(a) * scale + (ab ? ab[i * ldab + j] : 0.0f);
            s[i * S + j] = v;
            if (v > mx[i]) mx[i] = v;
        }
    }
    for (long i = 0; i < g; i++) {
        float *si = s + i * S, sum = 0.0f;
        if (mx[i] == -INFINITY) { inv[i] = 0.0f; continue; }
        for (long j = 0; j < S; j++) {
            if (si[j] == -INFINITY) { si[j] = 0.0f; continue; }
            const float e = expf(si[j] - mx[i]);
            sum += e;
            si[j] = s2s_bf2f(s2s_f2bf(e));
        }
        inv[i] = 1.0f / sum;
    }
    for (long i = 0; i < g * D; i++) acc[i] = 0.0f;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) continue;
        const uint16_t *v = vc + j * D;
        for (long d = 0; d < D; d += 16) {
            __mmask16 mk = vtail(D - d);
            const __m512 vv = ldbf(v + d, mk);
            for (long i = 0; i < g; i++)
                _mm512_mask_storeu_ps(acc + i * D + d, mk, _mm512_fmadd_ps(_mm512_set1_ps(s[i * S + j]), vv,
                                                                        _mm512_maskz_loadu_ps(mk, acc + i * D + d)));
        }
    }
    for (long i = 0; i < g; i++)
        for (long d = 0; d < D; d++) out[i * ldo + d] = mx[i] == -INFINITY ? 0 : s2s_f2bf(acc[i * D + d] * inv[i]);
}

static void attend_all_bf16(const float *q, long ldq, const uint16_t *k, const uint16_t *v, long cap, long S,
                            long B, long per, long nh, long D, float scale, const unsigned char *keep, long ldk,
                            const float *ab, float *sc, uint16_t *ctx, int nt) {
    const long tasks = B / per * nh, H = nh * D;
    const int at = B * nh * S * D >= (1L << 16) ? (nt < tasks ? nt : (int)tasks) : 1;   // short: one thread
    #pragma omp parallel for num_threads(at) schedule(static) if (at > 1)
    for (long task = 0; task < tasks; task++) {
        const long e = task / nh, h = task % nh, base = (e * nh + h) * cap * D;
        float *mine = sc + (at > 1 ? omp_get_thread_num() : 0) * per * (S + D);
        attend_bf16(q + e * per * ldq + h * D, ldq, per, k + base, v + base, S, D, scale,
                    keep ? keep + e * ldk : NULL, ab ? ab + (e * per * nh + h) * S : NULL, nh * S, mine,
                    mine + per * S, ctx + e * per * H + h * D, H);
    }
}

static void add_bf16(uint16_t *y, const uint16_t *t, long n) {
    for (long i = 0; i < n; i++) y[i] = s2s_f2bf(s2s_bf2f(y[i]) + s2s_bf2f(t[i]));
}

static void activate_bf16(uint16_t *y, long n, int act) {
    for (long i = 0; i < n; i++) {
        const float x = s2s_bf2f(y[i]);
        y[i] = s2s_f2bf(act == 1 ? 0.5f * x * (1.0f + erff(x * 0.70710678118654752f))
                        : act == 2 ? (x > 0.0f ? x : 0.0f) : x / (1.0f + expf(-x)));
    }
}

static int lin_bf16(const uint16_t *x, long M, long K, const void *w, const void *b, long N, uint16_t *y, int nt) {
    const uint16_t *ws[1] = {(const uint16_t *)w}, *bs[1] = {(const uint16_t *)b};
    long Ns[1] = {N};
    return linear_bf16_n(x, M, K, 1, ws, bs, Ns, K, y, N, nt);
}

// As s2s_decoder_step_f32 in bfloat16 (x, y, weights, norms, caches).
EXPORT int s2s_decoder_step_bf16(const s2s_layer *layers, int L, const uint16_t *x, long B, long H, int nh,
                                 long I, int pre, int act, float scale, long start, const unsigned char *keep,
                                 long per, long Se, const unsigned char *ckeep, uint16_t *y, int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || H % nh || H / nh > 1024 || I < 1 || start < 0
        || start + 1 > (1L << 20) || per < 1 || B % per || Se < 1 || act < 1 || act > 3)
        return -1;
    const long D = H / nh, S = start + 1, Smax = S > Se ? S : Se;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    const int nt = nthreads < 1 ? 1 : nthreads;
    const long halves = (B * (6 * H + I) + 31) & ~31L;   // the floats start 64-byte aligned
    uint16_t *buf = grow(&bscratch, &bscratch_len, 2 * halves + 4 * (B * 3 * H + nt * B * (Smax + D)));
    if (!buf) return -1;
    uint16_t *h = buf, *qkv = h + B * H, *ctx = qkv + B * 3 * H, *inter = ctx + B * H, *t = inter + B * I;
    float *qf = (float *)(buf + halves), *sc = qf + B * 3 * H;
    const long Ns[3] = {H, H, H};
    memcpy(y, x, B * H * sizeof(uint16_t));
    for (int l = 0; l < L; l++) {
        const s2s_layer *ly = layers + l;
        const uint16_t *const *ln = (const uint16_t *const *)ly->ln;
        uint16_t *kc = (uint16_t *)ly->kc, *vc = (uint16_t *)ly->vc;
        const uint16_t *in = y;
        if (pre) { ln_rows_bf16(y, B, H, ln[0], ln[1], ly->eps[0], h); in = h; }
        if (linear_bf16_n(in, B, H, 3, (const uint16_t *const *)ly->w, (const uint16_t *const *)ly->b, Ns, H,
                          qkv, 3 * H, nt)) return -1;
        for (long b = 0; b < B; b++)
            for (long g = 0; g < nh; g++) {
                const long at = ((b * nh + g) * ly->cap + start) * D;
                memcpy(kc + at, qkv + b * 3 * H + H + g * D, D * sizeof(uint16_t));
                memcpy(vc + at, qkv + b * 3 * H + 2 * H + g * D, D * sizeof(uint16_t));
            }
        for (long b = 0; b < B; b++)
            for (long i = 0; i < H; i++) qf[b * H + i] = s2s_bf2f(qkv[b * 3 * H + i]);
        attend_all_bf16(qf, H, kc, vc, ly->cap, S, B, 1, nh, D, scale, keep, S, NULL, sc, ctx, nt);
        if (lin_bf16(ctx, B, H, ly->wo, ly->bo, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
        if (!pre) ln_rows_bf16(y, B, H, ln[0], ln[1], ly->eps[0], y);
        in = y;
        if (pre) { ln_rows_bf16(y, B, H, ln[2], ln[3], ly->eps[1], h); in = h; }
        if (lin_bf16(in, B, H, ly->wq, ly->bq, H, qkv, nt)) return -1;
        for (long i = 0; i < B * H; i++) qf[i] = s2s_bf2f(qkv[i]);
        attend_all_bf16(qf, H, (const uint16_t *)ly->ck, (const uint16_t *)ly->cv, Se, Se, B, per, nh, D, scale,
                        ckeep, Se, NULL, sc, ctx, nt);
        if (lin_bf16(ctx, B, H, ly->wco, ly->bco, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
        if (!pre) ln_rows_bf16(y, B, H, ln[2], ln[3], ly->eps[1], y);
        in = y;
        if (pre) { ln_rows_bf16(y, B, H, ln[4], ln[5], ly->eps[2], h); in = h; }
        if (lin_bf16(in, B, H, ly->w1, ly->b1, I, inter, nt)) return -1;
        activate_bf16(inter, B * I, act);
        if (lin_bf16(inter, B, I, ly->w2, ly->b2, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
        if (!pre) ln_rows_bf16(y, B, H, ln[4], ln[5], ly->eps[2], y);
    }
    return 0;
}

EXPORT int rmsnorm_bf16(const uint16_t *x, long M, long ldx, long H, const uint16_t *w, float eps, uint16_t *y,
                        long ldy);

// As t5_decoder_step_f32 in bfloat16 (x, y, weights, norms, caches; ab float32 from the bfloat16
// bias), rounded where the modules round.
EXPORT int t5_decoder_step_bf16(const t5_layer *layers, int L, const uint16_t *x, long B, long H, int nh, long dk,
                                long F, int gated, int act, float eps, long start, const float *ab, long per,
                                long Se, const unsigned char *ckeep, uint16_t *y, int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || dk < 1 || dk > 1024 || F < 1 || start < 0 || !ab
        || start + 1 > (1L << 20) || per < 1 || B % per || Se < 1 || act < 1 || act > 4 || H > 16384)
        return -1;
    const long S = start + 1, Smax = S > Se ? S : Se, in = nh * dk, nF = gated ? 2 : 1;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    const int nt = nthreads < 1 ? 1 : nthreads;
    const long halves = (B * (2 * H + 4 * in + 2 * F) + 31) & ~31L;
    uint16_t *buf = grow(&bscratch, &bscratch_len, 2 * halves + 4 * (B * in + nt * B * (Smax + dk)));
    if (!buf) return -1;
    uint16_t *h = buf, *qkv = h + B * H, *ctx = qkv + B * 3 * in, *ff = ctx + B * in, *t = ff + B * 2 * F;
    float *qf = (float *)(buf + halves), *sc = qf + B * in;
    const long Ns[3] = {in, in, in}, Fs[2] = {F, F};
    const uint16_t *nob[3] = {NULL, NULL, NULL};
    memcpy(y, x, B * H * sizeof(uint16_t));
    for (int l = 0; l < L; l++) {
        const t5_layer *ly = layers + l;
        uint16_t *kc = (uint16_t *)ly->kc, *vc = (uint16_t *)ly->vc;
        if (rmsnorm_bf16(y, B, H, H, (const uint16_t *)ly->ln[0], eps, h, H)) return -1;
        if (linear_bf16_n(h, B, H, 3, (const uint16_t *const *)ly->w, nob, Ns, H, qkv, 3 * in, nt)) return -1;
        for (long b = 0; b < B; b++) {
            for (long g = 0; g < nh; g++) {
                const long at = ((b * nh + g) * ly->cap + start) * dk;
                memcpy(kc + at, qkv + b * 3 * in + in + g * dk, dk * sizeof(uint16_t));
                memcpy(vc + at, qkv + b * 3 * in + 2 * in + g * dk, dk * sizeof(uint16_t));
            }
            for (long i = 0; i < in; i++) qf[b * in + i] = s2s_bf2f(qkv[b * 3 * in + i]);
        }
        attend_all_bf16(qf, in, kc, vc, ly->cap, S, B, 1, nh, dk, 1.0f, NULL, S, ab, sc, ctx, nt);
        if (lin_bf16(ctx, B, in, ly->wo, NULL, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
        if (rmsnorm_bf16(y, B, H, H, (const uint16_t *)ly->ln[1], eps, h, H)) return -1;
        if (lin_bf16(h, B, H, ly->wq, NULL, in, qkv, nt)) return -1;
        for (long i = 0; i < B * in; i++) qf[i] = s2s_bf2f(qkv[i]);
        attend_all_bf16(qf, in, (const uint16_t *)ly->ck, (const uint16_t *)ly->cv, Se, Se, B, per, nh, dk, 1.0f,
                        ckeep, Se, NULL, sc, ctx, nt);
        if (lin_bf16(ctx, B, in, ly->wco, NULL, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
        if (rmsnorm_bf16(y, B, H, H, (const uint16_t *)ly->ln[2], eps, h, H)) return -1;
        if (linear_bf16_n(h, B, H, (int)nF, (const uint16_t *const *)ly->wi, nob, Fs, H, ff, nF * F, nt)) return -1;
        for (long b = 0; b < B; b++)
            for (long i = 0; i < F; i++) {
                uint16_t *r = ff + b * nF * F;
                const uint16_t a = s2s_f2bf(act1(s2s_bf2f(r[i]), act));
                r[i] = gated ? s2s_f2bf(s2s_bf2f(a) * s2s_bf2f(r[F + i])) : a;
            }
        for (long b = 0; b < B && gated; b++)
            memmove(ff + b * F, ff + b * 2 * F, F * sizeof(uint16_t));
        if (lin_bf16(ff, B, F, ly->wff, NULL, H, t, nt)) return -1;
        add_bf16(y, t, B * H);
    }
    return 0;
}
#else
EXPORT int t5_decoder_step_bf16(const t5_layer *layers, int L, const uint16_t *x, long B, long H, int nh, long dk,
                                long F, int gated, int act, float eps, long start, const float *ab, long per,
                                long Se, const unsigned char *ckeep, uint16_t *y, int nthreads) {
    return -1;
}
EXPORT int s2s_decoder_step_bf16(const s2s_layer *layers, int L, const uint16_t *x, long B, long H, int nh,
                                 long I, int pre, int act, float scale, long start, const unsigned char *keep,
                                 long per, long Se, const unsigned char *ckeep, uint16_t *y, int nthreads) {
    return -1;
}
#endif
