// Products on GGUF's quantized blocks as they lie in the file: y[m, n] = sum_k x[m, k] w[n, k] + b[n]
// for the block types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (blocks of 32) and Q4_K, Q5_K, Q6_K
// (super-blocks of 256), without a float copy of the weight (gguf_linear.py calls it via ctypes).
//
// The activations are quantized first, per block of 32 values, to int8 with one float scale
// (d = max|x| / 127, q = round-to-nearest-even(x / d)), as llama.cpp does for its integer dot
// products; the sum of each block's (and half-block's) q is kept for the formats whose weights
// carry an offset (Q4_0's -8, Q4_1's min, the K-quants' mins, Q6_K's -32). Each 32-value block
// of a weight row is then unpacked to 32 small integers in a ymm register and its dot product with
// the activation block is summed in int32, exactly: AVX-512 VNNI's vpdpbusd where the variant has
// it (avx512bf16 and amx), else AVX2's vpmaddubsw + vpmaddwd (products of an unsigned weight code
// <= 63 and |q| <= 127: the int16 pair sums never saturate). The int32 sum is scaled once per block
// in float32: d_w * d_x * sum, the offset term from the block sums. The only rounding beyond
// the activation quantization is float32's in those per-block scalings.
//
// Threads take chunks of output features; each output is summed by one thread in one fixed
// order, so results do not depend on the thread count. One weight row is unpacked once for up to
// four activation rows (a small batch reads and unpacks the weight once per four rows).
//
// gguf_linear_n is the one call both ways go through: several layers of one input (q/k/v,
// gate/up) in one call, the activations quantized (or summed per block) once for all of them,
// the threads taking chunks of every layer's outputs. float32 activations: gguf_float.c.
#include <omp.h>
#include <stdlib.h>

#include "gguf_blocks.h"

float gguf_f16_table[65536];
static float h2f_slow(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, em = h & 0x7fff;
    union { uint32_t u; float f; } o;
    if (em >= 0x7c00) o.u = sign | 0x7f800000u | ((em & 0x3ff) << 13);
    else if (em >= 0x0400) o.u = sign | ((em << 13) + (112u << 23));
    else { o.f = (float)em * 5.9604644775390625e-08f; o.u |= sign; }
    return o.f;
}
__attribute__((constructor)) static void f16_table_init(void) {
    for (uint32_t h = 0; h < 65536; h++) gguf_f16_table[h] = h2f_slow((uint16_t)h);
}

// ---- the integer dot product of 32 unsigned weight codes and 32 int8 activations ----------------
// 8 int32 partial sums (lanes 0-3: values 0-15, lanes 4-7: values 16-31).
static inline __m256i dot_us(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// signed x signed (Q8_0): |a| times b with a's sign
static inline __m256i dot_ss(__m256i a, __m256i b) {
    return dot_us(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

// ---- quantized activations --------------------------------------------------------------------
// One row: q[K] int8, d[K/32] the scales, ds[K/32] = d * (sum of the block's q), s16[K/16] the
// sums of q over each 16 values.
typedef struct { const int8_t *q; const float *d, *ds; const int16_t *s16; } xrow;

static void quantize_row(const float *x, long K, int8_t *q, float *d, float *ds, int16_t *s16) {
    for (long b = 0; b < K / 32; b++) {
        const float *p = x + 32 * b;
        __m256 v[4], mx = _mm256_setzero_ps();
        const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(p + 8 * i);
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[i], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], vid));   // to nearest even
        __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], vid));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], vid));
        __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        packed = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), packed);
        int s0 = 0, s1 = 0;
        for (int i = 0; i < 16; i++) { s0 += q[32 * b + i]; s1 += q[32 * b + 16 + i]; }
        d[b] = dd;
        ds[b] = dd * (float)(s0 + s1);
        s16[2 * b] = (int16_t)s0;
        s16[2 * b + 1] = (int16_t)s1;
    }
}

// ---- one weight row against R activation rows, one function per block type -------------------
// Two sets of accumulators, alternating block by block, so consecutive blocks' float FMAs do not
// wait on each other's latency: a[r]/b[r] the 8 float lanes of scaled block sums, ca[r]/cb[r] the
// offset terms; out[r] is their sum.
#define ROW_BEGIN                                                                              \
    __m256 a[RB], b[RB]; float ca[RB], cb[RB];                                                 \
    for (int r = 0; r < R; r++) { a[r] = b[r] = _mm256_setzero_ps(); ca[r] = cb[r] = 0.0f; }
#define ROW_END for (int r = 0; r < R; r++) out[r] = hsum8(_mm256_add_ps(a[r], b[r])) + (ca[r] + cb[r]);
// blocks of 32 in pairs: BLOCK(i, acc, c) for block i into one set of accumulators
#define PAIRS(nb, BLOCK)                                                                       \
    { long i = 0;                                                                              \
      for (; i + 1 < (nb); i += 2) { BLOCK(i, a, ca) BLOCK(i + 1, b, cb) }                     \
      if (i < (nb)) { BLOCK(i, a, ca) } }
#define XQ(r, blk) _mm256_loadu_si256((const __m256i *)(x[r].q + 32 * (blk)))
#define FMA(acc, r, isum, scale) acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(scale), acc[r])

static inline __attribute__((always_inline)) void row_q8_0(const uint8_t *w, long nb, const xrow *x, int R, float *out) {
    ROW_BEGIN
#define Q8_BLOCK(i, acc, c)                                                                    \
    { const uint8_t *p = w + 34 * (i); const float dw = h2f(p);                                 \
      const __m256i q = _mm256_loadu_si256((const __m256i *)(p + 2));                          \
      for (int r = 0; r < R; r++) FMA(acc, r, dot_ss(q, XQ(r, i)), dw * x[r].d[i]); }
    PAIRS(nb, Q8_BLOCK)
    ROW_END
}

// Q4_0 / Q5_0: x = (q - off) d;  Q4_1 / Q5_1: x = q d + m
static inline __attribute__((always_inline)) void row_q4_q5(const uint8_t *w, long nb, const xrow *x, int R, float *out,
                                                            int five, int has_min) {
    const long size = 18 + 2 * has_min + 4 * five;
    const float off = five ? -16.0f : -8.0f;
    ROW_BEGIN
#define Q45_BLOCK(i, acc, c)                                                                   \
    { const uint8_t *p = w + size * (i);                                                       \
      const float dw = h2f(p), mw = has_min ? h2f(p + 2) : off * dw;                           \
      const uint8_t *qs = p + 2 + 2 * has_min;                                                 \
      __m256i q = five ? _mm256_or_si256(nibbles16(qs + 4),                                    \
                                         _mm256_and_si256(bits_to_bytes(qs), _mm256_set1_epi8(0x10))) \
                       : nibbles16(qs);                                                        \
      for (int r = 0; r < R; r++) { FMA(acc, r, dot_us(q, XQ(r, i)), dw * x[r].d[i]);          \
                                    c[r] += mw * x[r].ds[i]; } }
    PAIRS(nb, Q45_BLOCK)
    ROW_END
}

static inline __attribute__((always_inline)) void row_qk(const uint8_t *w, long nb, const xrow *x, int R, float *out,
                                                         int five) {
    const long size = five ? 176 : 144;
    ROW_BEGIN
    for (long sb = 0; sb < nb; sb++, w += size) {
        float sc[8], mn[8];
        k_scales(w, sc, mn);
        const uint8_t *qs = w + (five ? 48 : 16);
        __m256i h = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i lo, hi;
            k_codes(qs, ch, five, &h, &lo, &hi);
            const long j = 2 * ch, xb = 8 * sb + j;
            for (int r = 0; r < R; r++) {
                FMA(a, r, dot_us(lo, XQ(r, xb)), sc[j] * x[r].d[xb]);
                FMA(b, r, dot_us(hi, XQ(r, xb + 1)), sc[j + 1] * x[r].d[xb + 1]);
                ca[r] -= mn[j] * x[r].ds[xb];
                cb[r] -= mn[j + 1] * x[r].ds[xb + 1];
            }
        }
    }
    ROW_END
}

// Q6_K: 16 sub-blocks of 16 with int8 scales; x = d sc (q - 32), q in 0..63
static inline __attribute__((always_inline)) void row_q6_k(const uint8_t *w, long nb, const xrow *x, int R, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    ROW_BEGIN
    for (long sb = 0; sb < nb; sb++, w += 210) {
        const float d = h2f(w + 208);
        const int8_t *sc = (const int8_t *)(w + 192);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = w + 64 * half, *qh = w + 128 + 32 * half;
            __m256i qa = _mm256_loadu_si256((const __m256i *)ql), qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i g[4];
            g[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
            g[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
            g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(h, m30));
            g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
            for (int gi = 0; gi < 4; gi++) {
                const long xb = 8 * sb + 4 * half + gi;
                const int s0 = sc[8 * half + 2 * gi], s1 = sc[8 * half + 2 * gi + 1];
                const __m256 scv = _mm256_setr_m128(_mm_set1_ps(d * (float)s0), _mm_set1_ps(d * (float)s1));
                for (int r = 0; r < R; r++) {
                    __m256 p = _mm256_cvtepi32_ps(dot_us(g[gi], XQ(r, xb)));
                    __m256 f = _mm256_mul_ps(scv, _mm256_set1_ps(x[r].d[xb]));
                    float corr = 32.0f * d * x[r].d[xb] * (float)(s0 * x[r].s16[2 * xb] + s1 * x[r].s16[2 * xb + 1]);
                    if (gi & 1) { b[r] = _mm256_fmadd_ps(p, f, b[r]); cb[r] -= corr; }
                    else { a[r] = _mm256_fmadd_ps(p, f, a[r]); ca[r] -= corr; }
                }
            }
        }
    }
    ROW_END
}

// one weight row (K values) against R <= RB activation rows: R is a constant in each call below,
// so the per-row loops unroll
#define DISPATCH(R)                                                                            \
    switch (type) {                                                                            \
    case T_Q8_0: row_q8_0(w, K / 32, x, R, out); break;                                        \
    case T_Q4_0: row_q4_q5(w, K / 32, x, R, out, 0, 0); break;                                 \
    case T_Q4_1: row_q4_q5(w, K / 32, x, R, out, 0, 1); break;                                 \
    case T_Q5_0: row_q4_q5(w, K / 32, x, R, out, 1, 0); break;                                 \
    case T_Q5_1: row_q4_q5(w, K / 32, x, R, out, 1, 1); break;                                 \
    case T_Q4_K: row_qk(w, K / 256, x, R, out, 0); break;                                      \
    case T_Q5_K: row_qk(w, K / 256, x, R, out, 1); break;                                      \
    case T_Q6_K: row_q6_k(w, K / 256, x, R, out); break;                                       \
    }
static void row_dot(int type, const uint8_t *w, long K, const xrow *x, int R, float *out) {
    switch (R) {
    case 1: DISPATCH(1) break;
    case 2: DISPATCH(2) break;
    case 3: DISPATCH(3) break;
    default: DISPATCH(4) break;
    }
}

// The activations of M rows, quantized (for tests: the same arithmetic the products use).
EXPORT int gguf_quantize(const float *x, long M, long K, long ldx, int8_t *q, float *d, float *ds, int16_t *s16) {
    if (K % 32) return 1;
    for (long m = 0; m < M; m++)
        quantize_row(x + m * ldx, K, q + m * K, d + m * (K / 32), ds + m * (K / 32), s16 + m * (K / 16));
    return 0;
}// ---- dequantizing (the prefill path: tiles of a weight into float32 for a BLAS product) ---------
// 32 codes (unsigned bytes, or signed for Q8_0) -> floats code * s + o, (s0, o0) for values 0-15,
// (s1, o1) for 16-31
static inline void put32(__m256i codes, int is_signed, float s0, float o0, float s1, float o1, float *dst) {
    __m128i lo = _mm256_castsi256_si128(codes), hi = _mm256_extracti128_si256(codes, 1);
    __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++) {
        __m256i v = is_signed ? _mm256_cvtepi8_epi32(part[i]) : _mm256_cvtepu8_epi32(part[i]);
        __m256 s = _mm256_set1_ps(i < 2 ? s0 : s1), o = _mm256_set1_ps(i < 2 ? o0 : o1);
        _mm256_storeu_ps(dst + 8 * i, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), s), o));
    }
}

void gguf_dequant_row(int type, const uint8_t *w, long K, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(0x01), m30 = _mm256_set1_epi8(0x30);
    switch (type) {
    case T_Q8_0:
        for (long i = 0; i < K / 32; i++, w += 34, out += 32) {
            float d = h2f(w);
            put32(_mm256_loadu_si256((const __m256i *)(w + 2)), 1, d, 0.0f, d, 0.0f, out);
        }
        break;
    case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: {
        const int five = type == T_Q5_0 || type == T_Q5_1, has_min = type == T_Q4_1 || type == T_Q5_1;
        const long size = 18 + 2 * has_min + 4 * five;
        for (long i = 0; i < K / 32; i++, w += size, out += 32) {
            float d = h2f(w), m = has_min ? h2f(w + 2) : (five ? -16.0f : -8.0f) * d;
            const uint8_t *qs = w + 2 + 2 * has_min;
            __m256i q = five ? _mm256_or_si256(nibbles16(qs + 4), _mm256_and_si256(bits_to_bytes(qs), _mm256_set1_epi8(0x10)))
                             : nibbles16(qs);
            put32(q, 0, d, m, d, m, out);
        }
        break;
    }
    case T_Q4_K: case T_Q5_K: {
        const int five = type == T_Q5_K;
        for (long sb = 0; sb < K / 256; sb++, w += five ? 176 : 144) {
            float sc[8], mn[8];
            k_scales(w, sc, mn);
            const uint8_t *qs = w + (five ? 48 : 16);
            __m256i h = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
            for (int ch = 0; ch < 4; ch++, out += 64) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * ch));
                __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (five) {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(h, m1), 4));
                    h = _mm256_srli_epi16(h, 1);
                    hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(h, m1), 4));
                    h = _mm256_srli_epi16(h, 1);
                }
                put32(lo, 0, sc[2 * ch], -mn[2 * ch], sc[2 * ch], -mn[2 * ch], out);
                put32(hi, 0, sc[2 * ch + 1], -mn[2 * ch + 1], sc[2 * ch + 1], -mn[2 * ch + 1], out + 32);
            }
        }
        break;
    }
    case T_Q6_K:
        for (long sb = 0; sb < K / 256; sb++, w += 210) {
            const float d = h2f(w + 208);
            const int8_t *sc = (const int8_t *)(w + 192);
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = w + 64 * half, *qh = w + 128 + 32 * half;
                __m256i qa = _mm256_loadu_si256((const __m256i *)ql), qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                __m256i g[4];
                g[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
                g[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
                g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(h, m30));
                g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
                for (int gi = 0; gi < 4; gi++, out += 32) {
                    float s0 = d * (float)sc[8 * half + 2 * gi], s1 = d * (float)sc[8 * half + 2 * gi + 1];
                    put32(g[gi], 0, s0, -32.0f * s0, s1, -32.0f * s1, out);
                }
            }
        }
        break;
    }
}

// rows of a weight (ldw bytes apart) as float32 rows of K values (ldo floats apart)
EXPORT int gguf_dequantize(int type, const uint8_t *w, long rows, long K, long ldw, float *out, long ldo, int nthreads) {
    if (!known(type, K)) return 1;
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > 1 && rows * K < (1L << 16)) nt = 1;   // too little work to share
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (long r = 0; r < rows; r++) gguf_dequant_row(type, w + r * ldw, K, out + r * ldo);
    return 0;
}

// ---- the driver: count layers of one input in one call -------------------------------------------
static __thread void *sscratch;
static __thread long sscratch_len;

// the int8 way for weight rows n0 .. n1 - 1 of layer g (the activations quantized already)
static void rows_int8(const gguf_layer *g, long n0, long n1, const int8_t *q, const float *d, const float *ds,
                      const int16_t *s16, long M, float *y, long ldy) {
    const long K = g->K, nb = K / 32;
    for (long n = n0; n < n1; n++) {
        const uint8_t *wr = g->w + n * g->ldw;
        prefetch_ahead(g, n);
        const long o = g->out_index ? g->out_index[n] : n;
        const float bo = g->bias ? g->bias[o] : 0.0f;
        for (long m0 = 0; m0 < M; m0 += RB) {
            const int R = M - m0 < RB ? (int)(M - m0) : RB;
            xrow xs[RB];
            for (int r = 0; r < R; r++) {
                const long m = m0 + r;
                xs[r] = (xrow){q + m * K, d + m * nb, ds + m * nb, s16 + m * 2 * nb};
            }
            float out[RB];
            row_dot((int)g->type, wr, K, xs, R, out);
            for (int r = 0; r < R; r++) y[(m0 + r) * ldy + o] = out[r] + bo;
        }
    }
}

// y[m, L[l].col + idx(n)] = x[m] . w_l[n] + b_l[idx(n)] for count (<= GMAXL) layers of one input x
// (M rows, K = every layer's K), idx(n) = out_index[n] where given (rows stored in another order
// than the outputs), else n. int8: llama.cpp's quantized activations, else float32 (gguf_float.c).
// Returns nonzero where it cannot (an unknown type, K not a multiple of the block, no memory).
EXPORT int gguf_linear_n(const gguf_layer *L, long count, const float *x, long M, long ldx, float *y, long ldy,
                         int nthreads, int int8) {
    if (count < 1 || count > GMAXL || M <= 0) return 1;
    const long K = L[0].K, nb = K / 32;
    long first[GMAXL + 1];   // layer l's chunks are first[l] .. first[l + 1] - 1
    first[0] = 0;
    for (long l = 0; l < count; l++) {
        if (!known(L[l].type, K) || L[l].K != K || L[l].N <= 0) return 1;
        first[l + 1] = first[l] + (L[l].N + GCHUNK - 1) / GCHUNK;
    }
    // the activations, prepared once for every layer of the call
    int8_t *q = NULL; float *d = NULL, *ds = NULL, *xsum = NULL; int16_t *s16 = NULL;
    if (int8) {
        char *buf = grow(&sscratch, &sscratch_len, M * (K + 8 * nb + 8 * nb + 64));
        if (!buf) return 2;
        q = (int8_t *)buf;
        d = (float *)(buf + ((M * K + 63) & ~63L)), ds = d + M * nb;
        s16 = (int16_t *)(ds + M * nb);
        for (long m = 0; m < M; m++)
            quantize_row(x + m * ldx, K, q + m * K, d + m * nb, ds + m * nb, s16 + m * 2 * nb);
    } else {   // sum(x) per block of 32, per row (the formats with an offset or a min)
        xsum = grow(&sscratch, &sscratch_len, M * nb * 4);
        if (!xsum) return 2;
        for (long m = 0; m < M; m++)
            for (long b = 0; b < nb; b++) {
                const float *p = x + m * ldx + 32 * b;
                __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)),
                                         _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)));
                xsum[m * nb + b] = hsum8(v);
            }
    }
    const long chunks = first[count];
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > chunks) nt = (int)chunks;
    // (one thread: no parallel region at all; libgomp's costs a few microseconds a call)
    #pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long ch = 0; ch < chunks; ch++) {
        long l = 0;
        while (ch >= first[l + 1]) l++;
        const gguf_layer *g = L + l;
        const long n0 = (ch - first[l]) * GCHUNK, n1 = n0 + GCHUNK < g->N ? n0 + GCHUNK : g->N;
        if (int8) rows_int8(g, n0, n1, q, d, ds, s16, M, y + g->col, ldy);
        else gguf_rows_f32(g, n0, n1, x, ldx, M, xsum, y + g->col, ldy);
    }
    return 0;
}

// one layer (tests and callers without a prepared layer description)
static int one_layer(int type, const uint8_t *w, long N, long K, long ldw, const float *x, long M, long ldx,
                     const float *bias, const int32_t *out_index, float *y, long ldy, int nthreads, int int8) {
    const gguf_layer g = {type, w, N, K, ldw, bias, out_index, 0};
    return gguf_linear_n(&g, 1, x, M, ldx, y, ldy, nthreads, int8);
}
EXPORT int gguf_matmul(int type, const uint8_t *w, long N, long K, long ldw, const float *x, long M, long ldx,
                       const float *bias, const int32_t *out_index, float *y, long ldy, int nthreads) {
    return one_layer(type, w, N, K, ldw, x, M, ldx, bias, out_index, y, ldy, nthreads, 1);
}
EXPORT int gguf_matmul_f32(int type, const uint8_t *w, long N, long K, long ldw, const float *x, long M, long ldx,
                           const float *bias, const int32_t *out_index, float *y, long ldy, int nthreads) {
    return one_layer(type, w, N, K, ldw, x, M, ldx, bias, out_index, y, ldy, nthreads, 0);
}
