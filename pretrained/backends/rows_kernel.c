// Linear layers on a few rows (M <= 16): y[m, n] = sum_k x[m, k] * w[n, k] + b[n]; and whole
// post-LayerNorm encoder stacks (BERT's) on them, all layers in one call (encoder_f32/_bf16).
//
// Built by rows_kernel.py (cc -O3 -march=native -fopenmp, at setup or first use), called via ctypes.
// Why: at a handful of rows a linear layer is bound by streaming its weight from memory, and the
// BLAS kernels behind F.linear copy the weight into their own layout on every call. These read
// nn.Linear's (out, in) weight where it lies, once, prefetching the next rows, and use every
// weight they load for all rows of x. No second copy of the weights.
//
// Threads take chunks of NCHUNK output features as they free up (a core slowed by another process
// does less); each output is summed by one thread in one fixed order, so results do not depend
// on the thread count or the schedule.
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

// ---- float32 (AVX-512F) ---------------------------------------------------------------------
// Blocks of 4 weight rows x up to 6 input rows (24 zmm accumulators), a dot product along k
// reduced at the end, k in chunks of KCHUNK so the chunk of x stays in L1 while the weight streams past.
#define KCHUNK 384
#define ROWS_MAX 16
#define NCHUNK 128

// sum of each of a0..a3 -> one __m128 [s0 s1 s2 s3]
static inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1)); // a0 a1 a0 a1 per lane
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))));
    // each 128-bit lane: [a0 a1 a2 a3] partials
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#define DEF4(MB)                                                                              \
static void b4_##MB(const float *x, long ldx, const float *w, long K, float *y, long ldy,     \
                    const float *b, long n, long nend, long k0, long k1) {                    \
    const float *pw = w + (n + 4 < nend ? n + 4 : n) * K; /* next block */                          \
    __m512 acc[MB][4];                                                                         \
    for (int i = 0; i < MB; i++) for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();   \
    long k = k0;                                                                               \
    for (; k + 16 <= k1; k += 16) {                                                            \
        __m512 wv[4];                                                                          \
        for (int j = 0; j < 4; j++) { wv[j] = _mm512_loadu_ps(w + (n + j) * K + k);             \
            _mm_prefetch((const char *)(pw + j * K + k), _MM_HINT_T1); }                              \
        for (int i = 0; i < MB; i++) { __m512 xv = _mm512_loadu_ps(x + i * ldx + k);            \
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]); }    \
    }                                                                                          \
    if (k < k1) {                                                                              \
        __mmask16 mk = (__mmask16)((1u << (k1 - k)) - 1);                                      \
        __m512 wv[4];                                                                          \
        for (int j = 0; j < 4; j++) wv[j] = _mm512_maskz_loadu_ps(mk, w + (n + j) * K + k);     \
        for (int i = 0; i < MB; i++) { __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * ldx + k);  \
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]); }    \
    }                                                                                          \
    __m128 base = k0 == 0 ? (b ? _mm_loadu_ps(b + n) : _mm_setzero_ps()) : _mm_setzero_ps();    \
    for (int i = 0; i < MB; i++) {                                                             \
        __m128 s = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);                          \
        float *yp = y + i * ldy + n;                                                           \
        _mm_storeu_ps(yp, k0 == 0 ? _mm_add_ps(s, base) : _mm_add_ps(_mm_loadu_ps(yp), s));     \
    }                                                                                          \
}
DEF4(1) DEF4(2) DEF4(3) DEF4(4) DEF4(5) DEF4(6)
typedef void (*blk)(const float *, long, const float *, long, float *, long, const float *, long, long, long, long);
static const blk B4[7] = {0, b4_1, b4_2, b4_3, b4_4, b4_5, b4_6};
static void tail1(const float *x, long M, long ldx, const float *w, long K, float *y, long ldy, const float *b, long n, long k0, long k1) {
    for (long m = 0; m < M; m++) {
        __m512 a = _mm512_setzero_ps(); long k = k0;
        for (; k + 16 <= k1; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(x + m * ldx + k), _mm512_loadu_ps(w + n * K + k), a);
        if (k < k1) { __mmask16 mk = (__mmask16)((1u << (k1 - k)) - 1);
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, x + m * ldx + k), _mm512_maskz_loadu_ps(mk, w + n * K + k), a); }
        float s = _mm512_reduce_add_ps(a);
        y[m * ldy + n] = k0 == 0 ? s + (b ? b[n] : 0.0f) : y[m * ldy + n] + s;
    }
}
// Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, fused into the float32 kernel's last step (the
// separate pass would read the output back from memory), with exp by range reduction: within
// a few float32 ulps of torch's gelu.
static inline __m512 exp_neg(__m512 y) {  // exp(y) for y <= 0 (flushes below e^-87)
    const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2hi = _mm512_set1_ps(0.693359375f),
                 ln2lo = _mm512_set1_ps(-2.12194440e-4f);
    y = _mm512_max_ps(y, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2hi, y);
    r = _mm512_fnmadd_ps(n, ln2lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline __m512 gelu16(__m512 x) {
    // erfc(z), z = |x| / sqrt 2, as t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): Numerical Recipes'
    // Chebyshev fit, relative error < 1.2e-7 everywhere, so the negative tail stays accurate
    static const float c[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678f));
    __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
    __m512 q = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 10; i++) q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(c[i]));
    __m512 erfc = _mm512_mul_ps(t, exp_neg(_mm512_fnmadd_ps(z, z, q)));
    erfc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_set1_ps(10.0f), _CMP_GT_OQ), erfc,
                                _mm512_setzero_ps());   // below float32's range there
    // 1 + erf(x / sqrt 2): 2 - erfc for x >= 0, erfc for x < 0
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __m512 one_plus = _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(2.0f), erfc), erfc);
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), one_plus);
}

static void gelu_rows(float *y, long M, long ldy, long n0, long n1) {
    for (long m = 0; m < M; m++) {
        float *p = y + m * ldy;
        long n = n0;
        for (; n + 16 <= n1; n += 16) _mm512_storeu_ps(p + n, gelu16(_mm512_loadu_ps(p + n)));
        if (n < n1) {
            __mmask16 mk = (__mmask16)((1u << (n1 - n)) - 1);
            _mm512_mask_storeu_ps(p + n, mk, gelu16(_mm512_maskz_loadu_ps(mk, p + n)));
        }
    }
}

// The residual sum of the layer after the projection, while the chunk is still in cache.
static void add_rows(float *y, long M, long ldy, const float *r, long ldr, long n0, long n1) {
    for (long m = 0; m < M; m++) {
        float *p = y + m * ldy;
        const float *q = r + m * ldr;
        long n = n0;
        for (; n + 16 <= n1; n += 16)
            _mm512_storeu_ps(p + n, _mm512_add_ps(_mm512_loadu_ps(p + n), _mm512_loadu_ps(q + n)));
        if (n < n1) {
            __mmask16 mk = (__mmask16)((1u << (n1 - n)) - 1);
            _mm512_mask_storeu_ps(p + n, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, p + n),
                                                           _mm512_maskz_loadu_ps(mk, q + n)));
        }
    }
}

// Several weights of one input in one call (q/k/v, gate/up): y holds their outputs side by side,
// weight i's at column offset N_0 + ... + N_{i-1}. Float32 post-ops: gelu (exact), then + res. Chunks of all weights share one thread team.
#define MAXW 8
static int plan(int count, const long *Ns, long per_chunk, long *first, long *col) {
    if (count < 1 || count > MAXW) return -1;
    first[0] = col[0] = 0;
    for (int i = 0; i < count; i++) {
        first[i + 1] = first[i] + (Ns[i] + per_chunk - 1) / per_chunk;
        col[i + 1] = col[i] + Ns[i];
    }
    return 0;
}

int linear_f32_n(const float *x, long M, long ldx, int count, const float *const *ws,
                 const float *const *bs, const long *Ns, long K, float *y, long ldy, int nthreads,
                 int gelu, const float *res, long ldr) {
    long first[MAXW + 1], col[MAXW + 1];
    if (plan(count, Ns, NCHUNK, first, col)) return -1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (long c = 0; c < first[count]; c++) {
        int i = 0;
        while (c >= first[i + 1]) i++;
        const float *w = ws[i], *b = bs[i];
        float *yi = y + col[i];
        long N = Ns[i], n0 = (c - first[i]) * NCHUNK, n1 = n0 + NCHUNK < N ? n0 + NCHUNK : N;
        for (long k0 = 0; k0 < K; k0 += KCHUNK) {
            long k1 = k0 + KCHUNK < K ? k0 + KCHUNK : K;
            long n = n0;
            for (; n + 4 <= n1; n += 4)
                for (long m = 0; m < M; m += 6)
                    B4[M - m < 6 ? M - m : 6](x + m * ldx, ldx, w, K, yi + m * ldy, ldy, b, n, n1, k0, k1);
            for (; n < n1; n++) tail1(x, M, ldx, w, K, yi, ldy, b, n, k0, k1);
        }
        if (gelu) gelu_rows(yi, M, ldy, n0, n1);
        if (res) add_rows(yi, M, ldy, res + col[i], ldr, n0, n1);
    }
    return 0;
}

int linear_f32(const float *x, long M, long ldx, const float *w, long N, long K, const float *b,
               float *y, long ldy, int nthreads, int gelu, const float *res, long ldr) {
    return linear_f32_n(x, M, ldx, 1, &w, &b, &N, K, y, ldy, nthreads, gelu, res, ldr);
}

// ---- a post-LayerNorm encoder layer (BERT's) on a few rows, float32 ---------------------------
// x -> LN1(x + O attn(x)) = h -> LN2(h + Down gelu(Up h)), q/k/v in one kernel call. At <= 16
// rows the layer's own math besides the linears (attention over <= 16 keys, two LayerNorms) is
// microseconds, while doing it as ~15 torch ops costs more than that: each op also finds its
// code and data evicted from the caches by the weight stream of the linear before it.
static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
static inline __mmask16 tailmask(long r) { return (__mmask16)(r >= 16 ? 0xffff : (1u << r) - 1); }

// y = (y - mean) / sqrt(var + eps) * g + b over each row of H (biased variance, as torch)
static void layer_norm_rows(float *y, long M, long H, const float *g, const float *b, float eps) {
    for (long m = 0; m < M; m++) {
        float *p = y + m * H;
        __m512 s = _mm512_setzero_ps();
        for (long i = 0; i < H; i += 16) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tailmask(H - i), p + i));
        __m512 mean = _mm512_set1_ps(hsum(s) / H), v = _mm512_setzero_ps();
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = tailmask(H - i);
            __m512 d = _mm512_maskz_sub_ps(mk, _mm512_maskz_loadu_ps(mk, p + i), mean);
            v = _mm512_fmadd_ps(d, d, v);
        }
        __m512 r = _mm512_set1_ps(1.0f / sqrtf(hsum(v) / H + eps));
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = tailmask(H - i);
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, p + i), mean), r);
            if (g) d = _mm512_mul_ps(d, _mm512_maskz_loadu_ps(mk, g + i));
            if (b) d = _mm512_add_ps(d, _mm512_maskz_loadu_ps(mk, b + i));
            _mm512_mask_storeu_ps(p + i, mk, d);
        }
    }
}

// Attention over at most 16 keys: the scores of one query for all keys are one vector.
// kt: the head's keys transposed (D x 16, zero past T), so a score vector is D broadcast FMAs.
// p: exp(s - max) per key (0 where masked); returns 1 / their sum, 0 when no key may be
// attended to (that query's output is zeros, as SDPA gives).
static inline float softmax_keys(__m512 s, __mmask16 valid, float *p) {
    if (!valid) { _mm512_storeu_ps(p, _mm512_setzero_ps()); return 0.0f; }
    s = _mm512_mask_blend_ps(valid, _mm512_set1_ps(-INFINITY), s);
    __m512 e = _mm512_maskz_mov_ps(valid, exp_neg(_mm512_sub_ps(s, _mm512_set1_ps(_mm512_mask_reduce_max_ps(valid, s)))));
    _mm512_storeu_ps(p, e);
    return 1.0f / hsum(e);
}

static inline __mmask16 key_mask(const unsigned char *keep, long T) {
    __mmask16 valid = tailmask(T);
    if (keep)
        for (long j = 0; j < T; j++)
            if (!keep[j]) valid &= (__mmask16)~(1u << j);
    return valid;
}

// softmax(q k^T / sqrt(D) where keep) v per sequence and head, heads across the threads; qkv
// rows are [q | k | v] (3H wide). Queries: every position, or (first_only) each sequence's first.
// round_p: the weights of v rounded to bfloat16 first, as torch's CPU SDPA kernel does in bfloat16.
static void attention_rows(const float *qkv, long B, long T, long H, int nh, const unsigned char *keep,
                           int first_only, int round_p, float *ctx, int nthreads) {
    long D = H / nh, ld = 3 * H, tq = first_only ? 1 : T;
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for collapse(2) schedule(static) num_threads(nthreads)
    for (long bi = 0; bi < B; bi++)
        for (int h = 0; h < nh; h++) {
            float kt[D * 16], p[16];
            const float *base = qkv + bi * T * ld + h * D;
            for (long d = 0; d < D; d++)
                for (long j = 0; j < 16; j++) kt[d * 16 + j] = j < T ? base[j * ld + H + d] : 0.0f;
            __mmask16 valid = key_mask(keep ? keep + bi * T : NULL, T);
            for (long i = 0; i < tq; i++) {
                const float *q = base + i * ld;
                __m512 sv = _mm512_setzero_ps();
                for (long d = 0; d < D; d++) sv = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), _mm512_loadu_ps(kt + d * 16), sv);
                float inv = softmax_keys(_mm512_mul_ps(sv, _mm512_set1_ps(scale)), valid, p);
                if (round_p) {  // to nearest even (p is finite, in [0, 1])
                    __m512i u = _mm512_castps_si512(_mm512_loadu_ps(p));
                    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                             _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
                    _mm512_storeu_ps(p, _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xffff0000u))));
                }
                float *o = ctx + (bi * tq + i) * H + h * D;
                for (long d = 0; d < D; d += 16) {
                    __mmask16 mk = tailmask(D - d);
                    __m512 a = _mm512_setzero_ps();
                    for (long j = 0; j < T; j++)
                        a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), _mm512_maskz_loadu_ps(mk, base + j * ld + 2 * H + d), a);
                    _mm512_mask_storeu_ps(o + d, mk, _mm512_mul_ps(a, _mm512_set1_ps(inv)));
                }
            }
        }
}

// One layer: x (M = B x T rows) -> y (Mo rows: M, or B with first_only); buf: scratch.
static void encoder_layer(const float *x, long B, long T, long H, int nh, long I,
                          const float *const *w, const float *const *bias, const float *const *ln,
                          const float *eps, const unsigned char *keep, int first_only, float *y,
                          float *buf, int nthreads) {
    long M = B * T, Mo = first_only ? B : M, Ns[3] = {H, H, H};
    float *qkv = buf, *ctx = qkv + M * 3 * H, *h = ctx + Mo * H, *inter = h + Mo * H;
    linear_f32_n(x, M, H, 3, w, bias, Ns, H, qkv, 3 * H, nthreads, 0, NULL, 0);
    attention_rows(qkv, B, T, H, nh, keep, first_only, 0, ctx, nthreads);
    // + x: every row, or each sequence's first (rows T * H apart)
    linear_f32(ctx, Mo, H, w[3], H, H, bias[3], h, H, nthreads, 0, x, first_only ? T * H : H);
    layer_norm_rows(h, Mo, H, ln[0], ln[1], eps[0]);
    linear_f32(h, Mo, H, w[4], I, H, bias[4], inter, I, nthreads, 1, NULL, 0);
    linear_f32(inter, Mo, I, w[5], H, I, bias[5], y, H, nthreads, 0, h, H);
    layer_norm_rows(y, Mo, H, ln[2], ln[3], eps[1]);
}

// Scratch per calling thread, kept between calls (a malloc of this size would map fresh pages):
// *buf grown to at least bytes (NULL if that fails).
static void *grow(void **buf, long *cap, long bytes) {
    if (bytes > *cap) {
        free(*buf);
        *buf = aligned_alloc(64, ((bytes + 63) / 64) * 64);
        *cap = *buf ? bytes : 0;
    }
    return *buf;
}
static __thread void *scratch;
static __thread long scratch_len;
static float *scratch_floats(long n) { return grow(&scratch, &scratch_len, n * 4); }

// L layers in turn. Per layer l: w[6l..6l+5], bias[6l..]: q, k, v, o, up, down (a NULL bias is
// zero); ln[4l..]: gamma1, beta1, gamma2, beta2 (NULL: 1 and 0); eps[2l], eps[2l+1].
// keep: B x T, nonzero where a key may be attended to, or NULL for all. y: B x T x H, or B x 1 x H
// with first_only (the last layer at each sequence's first position only: all a pooler reads;
// its attention still reads every position).
int encoder_f32(const float *x, long B, long T, long H, int nh, long I, int L,
                const float *const *w, const float *const *bias, const float *const *ln,
                const float *eps, const unsigned char *keep, int first_only, float *y,
                int nthreads) {
    long M = B * T;
    if (M > ROWS_MAX || M < 1 || nh < 1 || H % nh || L < 1) return -1;
    long layer_len = M * 3 * H + 2 * M * H + M * I;
    if (!scratch_floats(layer_len + 2 * M * H)) return -1;
    const float *cur = x;
    for (int l = 0; l < L; l++) {
        float *out = l == L - 1 ? y : (float *)scratch + layer_len + (l & 1) * M * H;
        encoder_layer(cur, B, T, H, nh, I, w + 6 * l, bias + 6 * l, ln + 4 * l, eps + 2 * l, keep,
                      first_only && l == L - 1, out, scratch, nthreads);
        cur = out;
    }
    return 0;
}

// ---- bfloat16 (AMX) ---------------------------------------------------------------------------
// C^T = W x^T on tiles: A = 16 weight rows x 32 k, loaded straight from the weight; B = x re-laid
// out once per call in pairs of k (the tiles' VNNI layout); C = 16 features x 16 rows, float32.
// Accumulates in the order oneDNN's bf16 matmul does here: equal to F.linear bit for bit in tests.
// Needs M <= 16 and K % 32 == 0 (rows_kernel.py checks); the N % 16 rows past the last tile
// take a plain vector dot product.
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
int has_amx(void) { return 1; }
int amx_init(void) {  // ask Linux for the AMX tile state; 0 on success
    return (int)syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */);
}
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tilecfg;

// 16 bfloat16 values (those in mk, else 0) widened to float32, and back (to nearest even).
static inline __m512 ldbf(const uint16_t *p, __mmask16 mk) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, p)), 16));
}
static inline void stbf(uint16_t *p, __mmask16 mk, __m512 v) {
    _mm256_mask_storeu_epi16(p, mk, (__m256i)_mm512_cvtneps_pbh(v));
}

// One output past the last full tile: bf16 products summed in float32 (vector lanes, then
// reduced), + bias, rounded to nearest even: within an ulp of the tiles' order.
static uint16_t bf16_row_dot(const uint16_t *x, const uint16_t *w, long K, uint16_t bias) {
    __m512 acc = _mm512_setzero_ps();
    for (long k = 0; k < K; k += 16)   // K % 32 == 0
        acc = _mm512_fmadd_ps(ldbf(x + k, 0xffff), ldbf(w + k, 0xffff), acc);
    uint16_t out;
    stbf(&out, 1, _mm512_add_ps(_mm512_set1_ps(_mm512_reduce_add_ps(acc)), ldbf(&bias, 1)));
    return out;
}

// y[m, n] = bf16(sum_k x[m,k] w[n,k] + b[n]); M <= 16, K % 32 == 0.
int linear_bf16_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                  const uint16_t *const *bs, const long *Ns, long K, uint16_t *y, long ldy,
                  int nthreads) {
    long first[MAXW + 1], col[MAXW + 1];
    if (plan(count, Ns, NCHUNK, first, col)) return -1;
    uint32_t *xb = aligned_alloc(64, (size_t)K * 16 * 4);
    if (!xb) return -1;
    // B tile rows: xb[kp * 16 + j] = (x[j, 2kp], x[j, 2kp+1]) for j < M, zero for j >= M
    for (long kp = 0; kp < K / 2; kp++)
        for (long j = 0; j < 16; j++)
            if (j < M) memcpy(xb + kp * 16 + j, x + j * ldx + 2 * kp, 4); else xb[kp * 16 + j] = 0;
#pragma omp parallel num_threads(nthreads)
    {
        tilecfg cfg; memset(&cfg, 0, sizeof cfg); cfg.palette = 1;
        for (int t = 0; t < 6; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
        _tile_loadconfig(&cfg);
        float cbuf[2][16 * 16];
        long sw = K * 2;  // weight row stride in bytes
#pragma omp for schedule(dynamic, 1)
        for (long c = 0; c < first[count]; c++) {
            int i = 0;
            while (c >= first[i + 1]) i++;
            const uint16_t *w = ws[i], *b = bs[i];
            uint16_t *yi = y + col[i];
            long blocks = Ns[i] / 16, c0 = (c - first[i]) * (NCHUNK / 16);
            long nb1 = c0 + NCHUNK / 16 < blocks ? c0 + NCHUNK / 16 : blocks;
            for (long nb = c0; nb < nb1; nb += 2) {
                int two = nb + 1 < nb1;
                const uint16_t *w0 = w + nb * 16 * K, *w1 = w0 + 16 * K;
                const uint16_t *pf = w + (nb + 2 < blocks ? nb + 2 : nb) * 16 * K;  // the next two blocks
                _tile_zero(0); _tile_zero(1);
                for (long k = 0; k < K; k += 32) {
                    _tile_loadd(4, xb + (k / 2) * 16, 64);
                    _tile_loadd(2, w0 + k, sw);
                    _tile_dpbf16ps(0, 2, 4);
                    if (two) { _tile_loadd(3, w1 + k, sw); _tile_dpbf16ps(1, 3, 4); }
                    for (int r = 0; r < 32; r++) _mm_prefetch((const char *)(pf + r * K + k), _MM_HINT_T1);
                }
                _tile_stored(0, cbuf[0], 64);
                if (two) _tile_stored(1, cbuf[1], 64);
                for (int h = 0; h <= two; h++) {
                    long n = (nb + h) * 16;
                    __m512 bias = b ? ldbf(b + n, 0xffff) : _mm512_setzero_ps();
                    __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                     _mm512_set1_epi32(16));
                    for (long m = 0; m < M; m++) {  // column m of C: features n..n+15 of row m
                        __m512 cm = _mm512_i32gather_ps(_mm512_add_epi32(idx, _mm512_set1_epi32((int)m)), cbuf[h], 4);
                        __m256bh r = _mm512_cvtneps_pbh(_mm512_add_ps(cm, bias));
                        _mm256_storeu_si256((__m256i *)(yi + m * ldy + n), (__m256i)r);
                    }
                }
            }
            if (c == first[i + 1] - 1)   // the last chunk also takes the N % 16 rows past the tiles
                for (long n = blocks * 16; n < Ns[i]; n++)
                    for (long m = 0; m < M; m++) yi[m * ldy + n] = bf16_row_dot(x + m * ldx, w + n * K, K, b ? b[n] : 0);
        }
        _tile_release();
    }
    free(xb);
    return 0;
}

int linear_bf16(const uint16_t *x, long M, long ldx, const uint16_t *w, long N, long K,
                const uint16_t *b, uint16_t *y, long ldy, int nthreads) {
    return linear_bf16_n(x, M, ldx, 1, &w, &b, &N, K, y, ldy, nthreads);
}
// ---- the post-LayerNorm encoder layers in bfloat16 ---------------------------------------------

static void to_f32(const uint16_t *src, long n, float *dst) {
    for (long i = 0; i < n; i += 16) _mm512_mask_storeu_ps(dst + i, tailmask(n - i), ldbf(src + i, tailmask(n - i)));
}
static void to_bf16(const float *src, long n, uint16_t *dst) {
    for (long i = 0; i < n; i += 16) stbf(dst + i, tailmask(n - i), _mm512_maskz_loadu_ps(tailmask(n - i), src + i));
}

// y (bfloat16, M x H) <- LN(bf16(y + r)): torch rounds the sum, then normalises in float32
// (gamma and beta, bfloat16, already widened into g and b) and rounds the result.
static void add_norm_bf16(uint16_t *y, long M, long H, const uint16_t *r, long ldr, const float *g,
                          const float *b, float eps, float *f) {
    for (long m = 0; m < M; m++)
        for (long i = 0; i < H; i += 16) {
            __mmask16 mk = tailmask(H - i);
            stbf(y + m * H + i, mk, _mm512_add_ps(ldbf(y + m * H + i, mk), ldbf(r + m * ldr + i, mk)));
        }
    to_f32(y, M * H, f);
    layer_norm_rows(f, M, H, g, b, eps);
    to_bf16(f, M * H, y);
}

static __thread void *scratch_bf;
static __thread long scratch_bf_len;

// As encoder_f32, in bfloat16 (weights, biases, LayerNorm parameters, x and y); H % 32 == 0 and
// I % 32 == 0 (the tiles' depth). The linears run on the AMX tiles (equal to F.linear); the rest
// in float32 from bfloat16 values, rounded to bfloat16 where torch's bfloat16 ops round: each
// linear's output, the attention output, the residual sums, GELU and the LayerNorms.
int encoder_bf16(const uint16_t *x, long B, long T, long H, int nh, long I, int L,
                 const uint16_t *const *w, const uint16_t *const *bias, const uint16_t *const *ln,
                 const float *eps, const unsigned char *keep, int first_only, uint16_t *y,
                 int nthreads) {
    long M = B * T;
    if (M > ROWS_MAX || M < 1 || nh < 1 || H % nh || L < 1 || H % 32 || I % 32) return -1;
    long layer_len = M * 3 * H + 2 * M * H + M * I;
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
int has_amx(void) { return 0; }
int amx_init(void) { return -1; }
int linear_bf16_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                  const uint16_t *const *bs, const long *Ns, long K, uint16_t *y, long ldy,
                  int nthreads) { return -1; }
int linear_bf16(const uint16_t *x, long M, long ldx, const uint16_t *w, long N, long K,
                const uint16_t *b, uint16_t *y, long ldy, int nthreads) { return -1; }
int encoder_bf16(const uint16_t *x, long B, long T, long H, int nh, long I, int L,
                 const uint16_t *const *w, const uint16_t *const *bias, const uint16_t *const *ln,
                 const float *eps, const unsigned char *keep, int first_only, uint16_t *y,
                 int nthreads) { return -1; }
#endif
