// A decode step of a Llama-family decoder (Llama, Mistral, Qwen2, Qwen3) in one call: every
// layer, for one new token per sequence (B <= 16 rows), float32 activations:
//   h = RMSNorm1(x); q, k, v = h Wq, h Wk, h Wv (+ biases); [Qwen3: RMSNorm of each q/k head]
//   q, k rotated by the step's cos/sin; k, v written into the KV cache at slot `start`
//   x += Wo attention(q, cached k, v) (grouped heads, keep mask); x += Wd (silu(h2 Wg) * h2 Wu)
// The linears are GGUF blocks (gguf_linear_n, float32 activations), float32 weights
// (linear_f32_n), LLM.int8() rows (int8_rows) or NF4 / FP4 codes (bnb_linear): at a handful
// of rows a layer's ~15 other torch ops cost more than their math.
// The cache storage is the KV cache's own (B, kv_heads, capacity, head_dim) float32 tensors, so
// the module path, beam reordering and cropping see what was written here.
#include <omp.h>
#include <stdlib.h>

#include "gguf_blocks.h"

int gguf_linear_n(const gguf_layer *L, long count, const float *x, long M, long ldx, float *y, long ldy,
                  int nthreads, int int8);
EXPORT int int8_rows(int count, const int8_t *const *ws, const float *const *scbs, const float *const *biases,
                     const long *Ns, long K, const float *x, long M, long ldx, float th, int act8,
                     float *y, long ldy, int nthreads);
EXPORT int bnb_linear(int bits, const void *w, long N, long K, const float *scale, int log2bs, int wbf16,
                      const float *qmap, const void *x, long M, long ldx, int xbf16, const float *bias,
                      void *y, long ldy, int ybf16, int nthreads);

// Linears of one input of one kind, outputs side by side from column col.
typedef struct {
    int64_t kind;               // 1: float32 weights (N, K); 2: GGUF blocks (layers[count]); 3: bfloat16
                                // weights; 4: LLM.int8() (w int8 (N, K), s SCB, th; int8_rows.c);
                                // 5: 4-bit codes (w packed, s absmax per block, qmap, log2bs; bnb_kernel.c);
                                // 6: weight-only int8 (w int8, s SCB; float32 steps: int8_rows' act8 0)
    int64_t count;              // <= 3
    int64_t int8;               // GGUF: the activations quantized to int8 (llama.cpp's way)
    const gguf_layer *layers;   // GGUF
    const float *w[3];          // float32 / bfloat16 / int8 / 4-bit codes
    const float *b[3];          // kinds 4 and 5: float32 biases
    int64_t N[3];
    int64_t col;
    const float *s[3];          // kind 4: SCB per row; kind 5: float32 absmax per block
    const float *qmap[3];       // kind 5: the 16 code values
    int64_t log2bs[3];          // kind 5: log2 of the block size
    int64_t wbf16;              // kind 5: each weight rounded to bfloat16 (as the plain math's cast)
    double th;                  // kind 4: the outlier threshold as float16 sees it (0: none)
} dec_part;

// Several linears of one input (q/k/v, gate/up, or one), in runs of one kind (a GGUF file may
// hold one of them as float32): their outputs side by side in y.
typedef struct {
    int64_t nparts;
    dec_part p[3];
} dec_linear;

typedef struct {
    dec_linear qkv, o, gu, down;   // q|k|v, o, gate|up, down
    const float *ln1, *ln2;        // RMSNorm weights (H)
    const float *qn, *kn;          // per-head RMSNorm weights (D) or NULL
    float *kc, *vc;                // cache storage (B, nkv, cap, D)
    int64_t cap;
} dec_layer;

static __thread void *dscratch;
static __thread long dscratch_len;

// kinds 4 and 5 on float32 (xbf16 0) or bfloat16 rows, outputs float32 or bfloat16 (ybf16), as the
// modules call them: 4-bit codes take either as they are (CpuLinear4bit, the step's dtype its
// compute dtype); LLM.int8() quantizes the rows' float32 values and its float32 outputs are rounded
// once to bfloat16 (llm_int8_matmul on bfloat16 rows)
static __thread void *qscratch;
static __thread long qscratch_len;
static int run_bnb(const dec_part *p, const void *x, int xbf16, long M, long K, void *y, long ldy, int ybf16,
                   int nt) {
    if (p->count < 1 || p->count > 3) return -1;
    if (p->kind == 5) {
        long at = 0;
        for (long j = 0; j < p->count; j++) {
            void *yj = ybf16 ? (void *)((uint16_t *)y + at) : (void *)((float *)y + at);
            if (bnb_linear(4, p->w[j], p->N[j], K, p->s[j], (int)p->log2bs[j], (int)p->wbf16, p->qmap[j], x, M, K,
                           xbf16, p->b[j], yj, ldy, ybf16, nt))
                return -1;
            at += p->N[j];
        }
        return 0;
    }
    long Ns[3] = {p->N[0], p->N[1], p->N[2]}, n = 0;
    for (long j = 0; j < p->count; j++) n += Ns[j];
    if (!xbf16 && !ybf16)
        return int8_rows((int)p->count, (const int8_t *const *)p->w, p->s, p->b, Ns, K, x, M, K, (float)p->th, 1,
                         y, ldy, nt) ? -1 : 0;
    float *buf = grow(&qscratch, &qscratch_len, 4 * (M * K + M * n));
    if (!buf) return -1;
    float *xf = buf, *yf = buf + M * K;
    for (long i = 0; i < M * K; i++) {
        if (xbf16) {
            const uint32_t u = (uint32_t)((const uint16_t *)x)[i] << 16;
            memcpy(xf + i, &u, 4);
        } else xf[i] = ((const float *)x)[i];
    }
    if (int8_rows((int)p->count, (const int8_t *const *)p->w, p->s, p->b, Ns, K, xf, M, K, (float)p->th, 1, yf, n, nt))
        return -1;
    for (long m = 0; m < M; m++)
        for (long i = 0; i < n; i++) {   // to nearest even (finite values), as Tensor.to(bfloat16)
            uint32_t u;
            memcpy(&u, yf + m * n + i, 4);
            u = (u & 0x7fffffffu) > 0x7f800000u ? (u | 0x400000u) : u + 0x7fffu + ((u >> 16) & 1u);
            ((uint16_t *)y)[m * ldy + i] = (uint16_t)(u >> 16);
        }
    return 0;
}

static int run_linear(const dec_linear *l, const float *x, long M, long K, float *y, long ldy, int nt) {
    if (l->nparts < 1 || l->nparts > 3) return -1;
    for (long i = 0; i < l->nparts; i++) {
        const dec_part *p = l->p + i;
        int err = -1;
        if (p->kind == 2)
            err = gguf_linear_n(p->layers, p->count, x, M, K, y + p->col, ldy, nt, (int)p->int8);
        else if (p->kind == 1) {
            long Ns[3] = {p->N[0], p->N[1], p->N[2]};
            err = linear_f32_n(x, M, K, (int)p->count, (const float *const *)p->w, (const float *const *)p->b,
                               Ns, K, y + p->col, ldy, nt, 0, NULL, 0);
        } else if (p->kind == 4 || p->kind == 5)
            err = run_bnb(p, x, 0, M, K, y + p->col, ldy, 0, nt);
        else if (p->kind == 6) {   // (the modules' bnb_linear 8-bit rows: the same row kernel and scales)
            long Ns[3] = {p->N[0], p->N[1], p->N[2]};
            err = int8_rows((int)p->count, (const int8_t *const *)p->w, p->s, p->b, Ns, K, x, M, K, 0.0f, 0,
                            y + p->col, ldy, nt);
        }
        if (err) return -1;
    }
    return 0;
}

// y = w * (x * (1 / sqrt(mean(x^2) + eps))) per row of n (the product rounded before w's, as
// the module's two ops)
static void rms_rows(const float *x, long M, long ldx, long n, const float *w, float eps, float *y, long ldy) {
    for (long m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        float *yr = y + m * ldy;
        vf acc = vzero();
        for (long k = 0; k < n; k += W) { vf v = vldm(vtail(n - k), xr + k); acc = vfma(v, v, acc); }
        const vf r = vset1(1.0f / sqrtf(vsum(acc) / (float)n + eps));
        for (long k = 0; k < n; k += W) {
            vm mk = vtail(n - k);
            vstm(yr + k, mk, vmul(vldm(mk, w + k), vmul(vldm(mk, xr + k), r)));
        }
    }
}

// x (D) <- x * cos + roll(x, D / 2) * sin (the module's rotation: sin's first half negated)
static void rope_head(float *x, const float *c, const float *s, long D) {
    float t[D];
    const long h = D / 2;
    for (long i = 0; i < D; i++) t[i] = x[i] * c[i] + x[i < h ? i + h : i - h] * s[i];
    memcpy(x, t, D * sizeof(float));
}

// silu(g) * u over n values: g / (1 + e^-g), e^-|g| from exp_neg (its argument <= 0)
static void swiglu(const float *g, const float *u, float *y, long n) {
    const vf one = vset1(1.0f), zero = vzero();
    for (long i = 0; i < n; i += W) {
        vm mk = vtail(n - i);
        vf x = vldm(mk, g + i);
        vf e = exp_neg(vsub(zero, vabs(x)));   // e^-|x|
        vf sig = vblend(vlt(x, zero), vdiv(one, vadd(one, e)), vdiv(e, vadd(one, e)));
        vstm(y + i, mk, vmul(vmul(x, sig), vldm(mk, u + i)));
    }
}

// softmax(q . k_j * scale over the keys j < S that keep marks) . v_j for one query head
static void attend(const float *q, const float *kc, const float *vc, long S, long D, float scale,
                   const unsigned char *keep, float *s, float *out) {
    float mx = -INFINITY;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) { s[j] = -INFINITY; continue; }
        const float *k = kc + j * D;
        vf a = vzero();
        for (long d = 0; d < D; d += W) { vm mk = vtail(D - d); a = vfma(vldm(mk, q + d), vldm(mk, k + d), a); }
        s[j] = vsum(a) * scale;
        if (s[j] > mx) mx = s[j];
    }
    for (long d = 0; d < D; d++) out[d] = 0.0f;
    if (mx == -INFINITY) return;   // no key to attend to: zeros
    float sum = 0.0f;
    for (long j = 0; j < S; j++) {
        if (s[j] == -INFINITY) continue;
        s[j] = expf(s[j] - mx);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    for (long d = 0; d < D; d += W) {
        vm mk = vtail(D - d);
        vf a = vzero();
        for (long j = 0; j < S; j++)
            if (s[j] != -INFINITY) a = vfma(vset1(s[j]), vldm(mk, vc + j * D + d), a);
        vstm(out + d, mk, vmul(a, vset1(inv)));
    }
}

// query head `task` (sequence task / nh) of one layer
static void attention_task(const dec_layer *ly, const float *qkv, long task, long nh, long nkv, long grp,
                           long S, long D, long wq, long nq, float scale, const unsigned char *keep,
                           float *s, float *ctx) {
    const long b = task / nh, hq = task % nh, g = hq / grp, base = (b * nkv + g) * ly->cap * D;
    attend(qkv + b * wq + hq * D, ly->kc + base, ly->vc + base, S, D, scale, keep ? keep + b * S : NULL, s,
           ctx + b * nq + hq * D);
}

// L layers on x (B x H) -> y (B x H, the last layer's output before the final norm).
// cos, sin: (B, D) this step's tables; the new token's keys/values go to slot `start` of each
// layer's cache and attention reads slots 0 .. start; keep: B x (start + 1) bytes, nonzero where
// a key may be attended to (NULL: all). Returns nonzero where it cannot (sizes, memory, a linear).
EXPORT int decoder_step_f32(const dec_layer *layers, int L, const float *x, long B, long H, int nh, int nkv,
                            long D, long I, float eps, float qk_eps, float scale, const float *cos,
                            const float *sin, long start, const unsigned char *keep, float *y, int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || nkv < 1 || nh % nkv || D < 2 || D % 2 || D > 1024
        || start < 0 || start + 1 > (1L << 20))
        return -1;
    const long S = start + 1, nq = nh * D, nk = nkv * D, wq = nq + 2 * nk, grp = nh / nkv;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    // h (B x H, also B x I... the widest row), qkv (B x wq), ctx (B x nq), gu (B x 2I), t (B x H)
    const long wide = H > I ? H : I;
    const int nt = nthreads < 1 ? 1 : nthreads;
    float *buf = grow(&dscratch, &dscratch_len, 4 * (B * (wide + wq + nq + 2 * I + H) + nt * S));
    if (!buf) return -1;
    float *h = buf, *qkv = h + B * wide, *ctx = qkv + B * wq, *gu = ctx + B * nq, *t = gu + B * 2 * I;
    float *sc = t + B * H;   // attention scores, S per thread
    memcpy(y, x, B * H * sizeof(float));
    for (int l = 0; l < L; l++) {
        const dec_layer *ly = layers + l;
        rms_rows(y, B, H, H, ly->ln1, eps, h, H);
        if (run_linear(&ly->qkv, h, B, H, qkv, wq, nt)) return -1;
        for (long b = 0; b < B; b++) {
            float *row = qkv + b * wq;
            if (ly->qn) {
                rms_rows(row, nh, D, D, ly->qn, qk_eps, row, D);
                rms_rows(row + nq, nkv, D, D, ly->kn, qk_eps, row + nq, D);
            }
            for (long hd = 0; hd < nh + nkv; hd++) rope_head(row + hd * D, cos + b * D, sin + b * D, D);
            for (long g = 0; g < nkv; g++) {
                const long at = ((b * nkv + g) * ly->cap + start) * D;
                memcpy(ly->kc + at, row + nq + g * D, D * sizeof(float));
                memcpy(ly->vc + at, row + nq + nk + g * D, D * sizeof(float));
            }
        }
        const long tasks = B * nh;
        const int at = tasks * S * D >= (1L << 16) ? (nt < tasks ? nt : (int)tasks) : 1;   // short: one thread
        if (at == 1) {
            for (long task = 0; task < tasks; task++) attention_task(ly, qkv, task, nh, nkv, grp, S, D, wq, nq,
                                                                     scale, keep, sc, ctx);
        } else {
            #pragma omp parallel for num_threads(at) schedule(static)
            for (long task = 0; task < tasks; task++)
                attention_task(ly, qkv, task, nh, nkv, grp, S, D, wq, nq, scale, keep,
                               sc + omp_get_thread_num() * S, ctx);
        }
        if (run_linear(&ly->o, ctx, B, nq, t, H, nt)) return -1;
        for (long i = 0; i < B * H; i++) y[i] += t[i];
        rms_rows(y, B, H, H, ly->ln2, eps, h, H);
        if (run_linear(&ly->gu, h, B, H, gu, 2 * I, nt)) return -1;
        for (long b = 0; b < B; b++) swiglu(gu + b * 2 * I, gu + b * 2 * I + I, h + b * I, I);
        if (run_linear(&ly->down, h, B, I, t, H, nt)) return -1;
        for (long i = 0; i < B * H; i++) y[i] += t[i];
    }
    return 0;
}

// ---- bfloat16 (variants with AVX512-BF16: linear_bf16_n, or the quantized kinds 4 and 5) -------
// The same step on bfloat16 weights, norms, cache and residual stream, every part in float32 from
// bfloat16 values and rounded to bfloat16 where the modules' bfloat16 ops round: each linear's
// output, the norms (rmsnorm_bf16), each product and the sum of the rotation, the attention
// output (its softmax weights rounded before they meet v, as torch's CPU kernel), silu and its
// product, the residual sums.
EXPORT int rmsnorm_bf16(const uint16_t *x, long M, long ldx, long H, const uint16_t *w, float eps,
                        uint16_t *y, long ldy);

static inline float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint16_t f2bf(float f) {   // to nearest even (finite values)
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static inline float rbf(float f) { return bf2f(f2bf(f)); }

#if defined(__AVX512BF16__)
static int run_linear_bf16(const dec_linear *l, const uint16_t *x, long M, long K, uint16_t *y, long ldy, int nt) {
    if (l->nparts < 1 || l->nparts > 3) return -1;
    for (long i = 0; i < l->nparts; i++) {
        const dec_part *p = l->p + i;
        long Ns[3] = {p->N[0], p->N[1], p->N[2]};
        if (p->kind == 4 || p->kind == 5) {
            if (run_bnb(p, x, 1, M, K, y + p->col, ldy, 1, nt)) return -1;
            continue;
        }
        if (p->kind != 3 || linear_bf16_n(x, M, K, (int)p->count, (const uint16_t *const *)p->w,
                                          (const uint16_t *const *)p->b, Ns, K, y + p->col, ldy, nt))
            return -1;
    }
    return 0;
}

static void attend_bf16(const float *q, const uint16_t *kc, const uint16_t *vc, long S, long D, float scale,
                        const unsigned char *keep, float *s, float *acc, uint16_t *out) {
    float mx = -INFINITY;
    for (long j = 0; j < S; j++) {
        if (keep && !keep[j]) { s[j] = -INFINITY; continue; }
        const uint16_t *k = kc + j * D;
        __m512 a = _mm512_setzero_ps();
        for (long d = 0; d < D; d += 16) {
            __mmask16 mk = vtail(D - d);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, q + d), ldbf(k + d, mk), a);
        }
        s[j] = _mm512_reduce_add_ps(a) * scale;
        if (s[j] > mx) mx = s[j];
    }
    if (mx == -INFINITY) {
        for (long d = 0; d < D; d++) out[d] = 0;
        return;
    }
    float sum = 0.0f;
    for (long j = 0; j < S; j++) {
        if (s[j] == -INFINITY) continue;
        const float e = expf(s[j] - mx);
        sum += e;
        s[j] = rbf(e);
    }
    const float inv = 1.0f / sum;
    for (long d = 0; d < D; d++) acc[d] = 0.0f;
    for (long j = 0; j < S; j++) {
        if (s[j] == -INFINITY) continue;
        const __m512 p = _mm512_set1_ps(s[j]);
        for (long d = 0; d < D; d += 16) {
            __mmask16 mk = vtail(D - d);
            _mm512_mask_storeu_ps(acc + d, mk, _mm512_fmadd_ps(p, ldbf(vc + j * D + d, mk),
                                                               _mm512_maskz_loadu_ps(mk, acc + d)));
        }
    }
    for (long d = 0; d < D; d++) out[d] = f2bf(acc[d] * inv);
}

// x (D) <- bf16(bf16(x cos) + bf16(roll(x, D / 2) sin))
static void rope_head_bf16(uint16_t *x, const uint16_t *c, const uint16_t *s, long D) {
    uint16_t t[D];
    const long h = D / 2;
    for (long i = 0; i < D; i++)
        t[i] = f2bf(rbf(bf2f(x[i]) * bf2f(c[i])) + rbf(bf2f(x[i < h ? i + h : i - h]) * bf2f(s[i])));
    memcpy(x, t, D * sizeof(uint16_t));
}

static void add_bf16(uint16_t *y, const uint16_t *t, long n) {
    for (long i = 0; i < n; i++) y[i] = f2bf(bf2f(y[i]) + bf2f(t[i]));
}

static __thread void *bscratch;
static __thread long bscratch_len;

// As decoder_step_f32 in bfloat16 (x, y, cos, sin, the weights, norms and cache).
EXPORT int decoder_step_bf16(const dec_layer *layers, int L, const uint16_t *x, long B, long H, int nh, int nkv,
                             long D, long I, float eps, float qk_eps, float scale, const uint16_t *cos,
                             const uint16_t *sin, long start, const unsigned char *keep, uint16_t *y,
                             int nthreads) {
    if (L < 1 || B < 1 || B > ROWS_MAX || nh < 1 || nkv < 1 || nh % nkv || D < 2 || D % 2 || D > 1024
        || start < 0 || start + 1 > (1L << 20) || H > 16384)
        return -1;
    const long S = start + 1, nq = nh * D, nk = nkv * D, wq = nq + 2 * nk, grp = nh / nkv;
    for (int l = 0; l < L; l++)
        if (layers[l].cap < S) return -1;
    const long wide = H > I ? H : I;
    const int nt = nthreads < 1 ? 1 : nthreads;
    const long halves = (B * (wide + wq + nq + 2 * I + H) + 31) & ~31L;   // the floats start 64-byte aligned
    const long per = S + D;   // a thread's scores and accumulator
    uint16_t *buf = grow(&bscratch, &bscratch_len, 2 * halves + 4 * (B * nq + nt * per));
    if (!buf) return -1;
    uint16_t *h = buf, *qkv = h + B * wide, *ctx = qkv + B * wq, *gu = ctx + B * nq, *t = gu + B * 2 * I;
    float *qf = (float *)(buf + halves), *sc = qf + B * nq;
    memcpy(y, x, B * H * sizeof(uint16_t));
    for (int l = 0; l < L; l++) {
        const dec_layer *ly = layers + l;
        const uint16_t *kcb = (const uint16_t *)ly->kc, *vcb = (const uint16_t *)ly->vc;
        if (rmsnorm_bf16(y, B, H, H, (const uint16_t *)ly->ln1, eps, h, H)) return -1;
        if (run_linear_bf16(&ly->qkv, h, B, H, qkv, wq, nt)) return -1;
        for (long b = 0; b < B; b++) {
            uint16_t *row = qkv + b * wq;
            if (ly->qn) {
                if (rmsnorm_bf16(row, nh, D, D, (const uint16_t *)ly->qn, qk_eps, row, D)) return -1;
                if (rmsnorm_bf16(row + nq, nkv, D, D, (const uint16_t *)ly->kn, qk_eps, row + nq, D)) return -1;
            }
            for (long hd = 0; hd < nh + nkv; hd++) rope_head_bf16(row + hd * D, cos + b * D, sin + b * D, D);
            for (long g = 0; g < nkv; g++) {
                const long at = ((b * nkv + g) * ly->cap + start) * D;
                memcpy((uint16_t *)ly->kc + at, row + nq + g * D, D * sizeof(uint16_t));
                memcpy((uint16_t *)ly->vc + at, row + nq + nk + g * D, D * sizeof(uint16_t));
            }
            for (long i = 0; i < nq; i++) qf[b * nq + i] = bf2f(row[i]);
        }
        const long tasks = B * nh;
        const int at = tasks * S * D >= (1L << 16) ? (nt < tasks ? nt : (int)tasks) : 1;   // short: one thread
        #pragma omp parallel for num_threads(at) schedule(static) if (at > 1)
        for (long task = 0; task < tasks; task++) {
            const long b = task / nh, hq = task % nh, g = hq / grp, base = (b * nkv + g) * ly->cap * D;
            float *mine = sc + (at > 1 ? omp_get_thread_num() : 0) * per;
            attend_bf16(qf + b * nq + hq * D, kcb + base, vcb + base, S, D, scale, keep ? keep + b * S : NULL,
                        mine, mine + S, ctx + b * nq + hq * D);
        }
        if (run_linear_bf16(&ly->o, ctx, B, nq, t, H, nt)) return -1;
        add_bf16(y, t, B * H);
        if (rmsnorm_bf16(y, B, H, H, (const uint16_t *)ly->ln2, eps, h, H)) return -1;
        if (run_linear_bf16(&ly->gu, h, B, H, gu, 2 * I, nt)) return -1;
        for (long b = 0; b < B; b++)
            for (long i = 0; i < I; i++) {
                const float g = bf2f(gu[b * 2 * I + i]);
                h[b * I + i] = f2bf(rbf(g / (1.0f + expf(-g))) * bf2f(gu[b * 2 * I + I + i]));
            }
        if (run_linear_bf16(&ly->down, h, B, I, t, H, nt)) return -1;
        add_bf16(y, t, B * H);
    }
    return 0;
}
#else
EXPORT int decoder_step_bf16(const dec_layer *layers, int L, const uint16_t *x, long B, long H, int nh, int nkv,
                             long D, long I, float eps, float qk_eps, float scale, const uint16_t *cos,
                             const uint16_t *sin, long start, const unsigned char *keep, uint16_t *y,
                             int nthreads) { return -1; }
#endif
