// Products on GGUF blocks with the activations kept in float32 (the default way, see
// gguf_linear.py): the float32 product of the dequantized weight, summed in another order than
// BLAS, no activation rounding at all. Every format's codes become floats in registers, a block
// of 32 at a time, and meet up to RB activation rows there; the block's scale (and min) is
// factored out of its sum. gguf_kernel.c's driver (gguf_linear_n) prepares the per-block sums of
// x and hands each thread chunks of weight rows (gguf_rows_f32).
#include "gguf_blocks.h"

// The blocks of 32 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) go faster without the row in memory: each block's
// 32 codes become floats in registers and meet up to RB activation rows there: per row
// d * (q . x) + m * sum(x), m the block's min (Q4_1 / Q5_1) or its offset -8d / -16d (Q4_0 / Q5_0;
// none for Q8_0), sum(x) per block of 32 computed once per call (xsum). The same float32 product
// of the dequantized weight, rounded in another order (d and m factored out of each block); at one
// row, one thread, 1.5-1.6x faster than the row through L1 (Q4_1 1536 x 576: 71 vs 113 us; Q8_0
// 49152 x 576: 2.0 vs 3.1 ms), within 1.3x of the int8 way (53 us, 1.6 ms).
#if defined(__AVX512F__)   // 16 lanes: half the conversions and FMAs of AVX2's 8
typedef __m512 vf;
#define VF_ZERO _mm512_setzero_ps()
#define VF_SUM(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 vf;
#define VF_ZERO _mm256_setzero_ps()
#define VF_SUM(v) hsum8(v)
static inline void codes_f32(__m256i codes, int is_signed, __m256 f[4]) {
    __m128i lo = _mm256_castsi256_si128(codes), hi = _mm256_extracti128_si256(codes, 1);
    __m128i part[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int i = 0; i < 4; i++)
        f[i] = _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(part[i]) : _mm256_cvtepu8_epi32(part[i]));
}
#endif

// block i's codes as floats (f[0..]) and its d and m
#define B32_DECODE(i)                                                                          \
    const uint8_t *p = w + size * (i);                                                         \
    const float d = h2f(p), m = q8 ? 0.0f : has_min ? h2f(p + 2) : off * d;                    \
    __m256i codes;                                                                             \
    if (q8) codes = _mm256_loadu_si256((const __m256i *)(p + 2));                              \
    else {                                                                                     \
        const uint8_t *qs = p + 2 + 2 * has_min;                                               \
        codes = five ? _mm256_or_si256(nibbles16(qs + 4),                                      \
                                       _mm256_and_si256(bits_to_bytes(qs), _mm256_set1_epi8(0x10))) \
                     : nibbles16(qs);                                                          \
    }
#if defined(__AVX512F__)
#define B32_BLOCK(i, A, C)                                                                     \
    { B32_DECODE(i)                                                                            \
      const __m128i lo = _mm256_castsi256_si128(codes), hi = _mm256_extracti128_si256(codes, 1); \
      const __m512 f0 = _mm512_cvtepi32_ps(q8 ? _mm512_cvtepi8_epi32(lo) : _mm512_cvtepu8_epi32(lo)); \
      const __m512 f1 = _mm512_cvtepi32_ps(q8 ? _mm512_cvtepi8_epi32(hi) : _mm512_cvtepu8_epi32(hi)); \
      const __m512 vd = _mm512_set1_ps(d);                                                     \
      for (int r = 0; r < R; r++) {                                                            \
          const float *xb = x[r] + 32 * (i);                                                   \
          __m512 q = _mm512_mul_ps(f0, _mm512_loadu_ps(xb));                                   \
          q = _mm512_fmadd_ps(f1, _mm512_loadu_ps(xb + 16), q);                                \
          A[r] = _mm512_fmadd_ps(q, vd, A[r]);                                                 \
          if (!q8) C[r] += m * xsum[r][i];                                                     \
      } }
#else
#define B32_BLOCK(i, A, C)                                                                     \
    { B32_DECODE(i)                                                                            \
      __m256 f[4];                                                                             \
      codes_f32(codes, q8, f);                                                                 \
      const __m256 vd = _mm256_set1_ps(d);                                                     \
      for (int r = 0; r < R; r++) {                                                            \
          const float *xb = x[r] + 32 * (i);                                                   \
          __m256 q = _mm256_mul_ps(f[0], _mm256_loadu_ps(xb));                                 \
          q = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(xb + 8), q);                               \
          q = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(xb + 16), q);                              \
          q = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(xb + 24), q);                              \
          A[r] = _mm256_fmadd_ps(q, vd, A[r]);                                                 \
          if (!q8) C[r] += m * xsum[r][i];                                                     \
      } }
#endif

// type and R are constants in each call (row_f32_dot): the format branches fold away and the
// per-row loops unroll; two accumulator sets alternate block by block (as the int8 rows do)
static inline __attribute__((always_inline)) void row_f32_b32(int type, const uint8_t *w, long nb,
                                                              const float *const *x, const float *const *xsum,
                                                              int R, float *out) {
    const int five = type == T_Q5_0 || type == T_Q5_1, has_min = type == T_Q4_1 || type == T_Q5_1;
    const int q8 = type == T_Q8_0;
    const long size = q8 ? 34 : 18 + 2 * has_min + 4 * five;
    const float off = five ? -16.0f : -8.0f;
    vf a[RB], b[RB];
    float ca[RB], cb[RB];
    for (int r = 0; r < R; r++) { a[r] = b[r] = VF_ZERO; ca[r] = cb[r] = 0.0f; }
    long i = 0;
    for (; i + 1 < nb; i += 2) { B32_BLOCK(i, a, ca) B32_BLOCK(i + 1, b, cb) }
    if (i < nb) { B32_BLOCK(i, a, ca) }
    for (int r = 0; r < R; r++) out[r] = VF_SUM(a[r] + b[r]) + (ca[r] + cb[r]);
}

#define F32_TYPES(R)                                                                           \
    switch (type) {                                                                            \
    case T_Q8_0: row_f32_b32(T_Q8_0, w, K / 32, x, xsum, R, out); break;                       \
    case T_Q4_0: row_f32_b32(T_Q4_0, w, K / 32, x, xsum, R, out); break;                       \
    case T_Q4_1: row_f32_b32(T_Q4_1, w, K / 32, x, xsum, R, out); break;                       \
    case T_Q5_0: row_f32_b32(T_Q5_0, w, K / 32, x, xsum, R, out); break;                       \
    case T_Q5_1: row_f32_b32(T_Q5_1, w, K / 32, x, xsum, R, out); break;                       \
    }

// The K-quants in registers too (before: each weight row dequantized into float32 in L1, then
// dotted). Q4_K / Q5_K: sub-block j of 32 is sc_j q - mn_j, so its dot product is
// sc_j (q . x) - mn_j sum(x) (xsum, as the blocks of 32 use); Q6_K: sub-block s of 16 is
// d sc_s (q - 32), the 32 taken off the codes in int8 (-32..31) before they become floats.
#if defined(__AVX512F__)
#define NF 2   // float vectors per 32 codes
#define CODES_F(codes, sgn, F)                                                                 \
    vf F[2];                                                                                   \
    { const __m128i lo_ = _mm256_castsi256_si128(codes), hi_ = _mm256_extracti128_si256(codes, 1); \
      F[0] = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(lo_) : _mm512_cvtepu8_epi32(lo_));  \
      F[1] = _mm512_cvtepi32_ps(sgn ? _mm512_cvtepi8_epi32(hi_) : _mm512_cvtepu8_epi32(hi_)); }
// acc += s (F . x[0..31]) lane-wise
#define ACC32_1(acc, F, xb, s)                                                                 \
    { vf q_ = _mm512_mul_ps(F[0], _mm512_loadu_ps(xb));                                        \
      q_ = _mm512_fmadd_ps(F[1], _mm512_loadu_ps((xb) + 16), q_);                              \
      acc = _mm512_fmadd_ps(q_, _mm512_set1_ps(s), acc); }
// acc += s0 (F . x[0..15]) + s1 (F . x[16..31])
#define ACC32_2(acc, F, xb, s0, s1)                                                            \
    { acc = _mm512_fmadd_ps(_mm512_mul_ps(F[0], _mm512_loadu_ps(xb)), _mm512_set1_ps(s0), acc); \
      acc = _mm512_fmadd_ps(_mm512_mul_ps(F[1], _mm512_loadu_ps((xb) + 16)), _mm512_set1_ps(s1), acc); }
#else
#define CODES_F(codes, sgn, F) __m256 F[4]; codes_f32(codes, sgn, F);
#define ACC32_1(acc, F, xb, s)                                                                 \
    { __m256 q_ = _mm256_mul_ps(F[0], _mm256_loadu_ps(xb));                                    \
      q_ = _mm256_fmadd_ps(F[1], _mm256_loadu_ps((xb) + 8), q_);                               \
      q_ = _mm256_fmadd_ps(F[2], _mm256_loadu_ps((xb) + 16), q_);                              \
      q_ = _mm256_fmadd_ps(F[3], _mm256_loadu_ps((xb) + 24), q_);                              \
      acc = _mm256_fmadd_ps(q_, _mm256_set1_ps(s), acc); }
#define ACC32_2(acc, F, xb, s0, s1)                                                            \
    { __m256 q0_ = _mm256_fmadd_ps(F[1], _mm256_loadu_ps((xb) + 8), _mm256_mul_ps(F[0], _mm256_loadu_ps(xb))); \
      __m256 q1_ = _mm256_fmadd_ps(F[3], _mm256_loadu_ps((xb) + 24), _mm256_mul_ps(F[2], _mm256_loadu_ps((xb) + 16))); \
      acc = _mm256_fmadd_ps(q0_, _mm256_set1_ps(s0), acc);                                      \
      acc = _mm256_fmadd_ps(q1_, _mm256_set1_ps(s1), acc); }
#endif

static inline __attribute__((always_inline)) void row_f32_kq(int type, const uint8_t *w, long nsb,
                                                             const float *const *x, const float *const *xsum,
                                                             int R, float *out) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const int five = type == T_Q5_K;
    vf a[RB], b[RB];
    float c[RB];
    for (int r = 0; r < R; r++) { a[r] = b[r] = VF_ZERO; c[r] = 0.0f; }
    for (long sb = 0; sb < nsb; sb++) {
        if (type == T_Q6_K) {
            const uint8_t *p = w + 210 * sb;
            const float d = h2f(p + 208);
            const int8_t *sc = (const int8_t *)(p + 192);
            for (int half = 0; half < 2; half++) {
                const uint8_t *ql = p + 64 * half, *qh = p + 128 + 32 * half;
                __m256i qa = _mm256_loadu_si256((const __m256i *)ql), qb = _mm256_loadu_si256((const __m256i *)(ql + 32));
                __m256i h = _mm256_loadu_si256((const __m256i *)qh), g[4];
                g[0] = _mm256_or_si256(_mm256_and_si256(qa, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
                g[1] = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
                g[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qa, 4), m4), _mm256_and_si256(h, m30));
                g[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
                for (int gi = 0; gi < 4; gi++) {
                    const long xb = 8 * sb + 4 * half + gi;
                    const float s0 = d * (float)sc[8 * half + 2 * gi], s1 = d * (float)sc[8 * half + 2 * gi + 1];
                    const __m256i q = _mm256_sub_epi8(g[gi], _mm256_set1_epi8(32));
                    CODES_F(q, 1, F)
                    for (int r = 0; r < R; r++) {
                        if (gi & 1) ACC32_2(b[r], F, x[r] + 32 * xb, s0, s1)
                        else ACC32_2(a[r], F, x[r] + 32 * xb, s0, s1)
                    }
                }
            }
            continue;
        }
        const uint8_t *p = w + (five ? 176 : 144) * sb;
        float sc[8], mn[8];
        k_scales(p, sc, mn);
        const uint8_t *qs = p + (five ? 48 : 16);
        __m256i h = five ? _mm256_loadu_si256((const __m256i *)(p + 16)) : _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i lo, hi;
            k_codes(qs, ch, five, &h, &lo, &hi);
            const long j = 2 * ch, xb = 8 * sb + j;
            CODES_F(lo, 0, FL)
            CODES_F(hi, 0, FH)
            for (int r = 0; r < R; r++) {
                ACC32_1(a[r], FL, x[r] + 32 * xb, sc[j])
                ACC32_1(b[r], FH, x[r] + 32 * (xb + 1), sc[j + 1])
                c[r] -= mn[j] * xsum[r][xb] + mn[j + 1] * xsum[r][xb + 1];
            }
        }
    }
    for (int r = 0; r < R; r++) out[r] = VF_SUM(a[r] + b[r]) + c[r];
}

#define KQ_TYPES(R)                                                                            \
    switch (type) {                                                                            \
    case T_Q4_K: row_f32_kq(T_Q4_K, w, K / 256, x, xsum, R, out); break;                       \
    case T_Q5_K: row_f32_kq(T_Q5_K, w, K / 256, x, xsum, R, out); break;                       \
    case T_Q6_K: row_f32_kq(T_Q6_K, w, K / 256, x, xsum, R, out); break;                       \
    }
static void row_f32_dot(int type, const uint8_t *w, long K, const float *const *x, const float *const *xsum,
                        int R, float *out) {
    switch (R) {
    case 1: F32_TYPES(1) KQ_TYPES(1) break;
    case 2: F32_TYPES(2) KQ_TYPES(2) break;
    case 3: F32_TYPES(3) KQ_TYPES(3) break;
    default: F32_TYPES(4) KQ_TYPES(4) break;
    }
}

void gguf_rows_f32(const gguf_layer *g, long n0, long n1, const float *x, long ldx, long M,
                   const float *xsum, float *y, long ldy) {
    const int type = (int)g->type;
    const long K = g->K, nb = K / 32;
    for (long n = n0; n < n1; n++) {
        const uint8_t *wr = g->w + n * g->ldw;
        prefetch_ahead(g, n);
        const long o = g->out_index ? g->out_index[n] : n;
        const float bo = g->bias ? g->bias[o] : 0.0f;
        for (long m0 = 0; m0 < M; m0 += RB) {
            const int R = M - m0 < RB ? (int)(M - m0) : RB;
            const float *xs[RB], *ss[RB];
            for (int r = 0; r < R; r++) { xs[r] = x + (m0 + r) * ldx; ss[r] = xsum + (m0 + r) * nb; }
            float out[RB];
            row_f32_dot(type, wr, K, xs, ss, R, out);
            for (int r = 0; r < R; r++) y[(m0 + r) * ldy + o] = out[r] + bo;
        }
    }
}
