// Products on bitsandbytes-layout weights (pretrained/quantization: Linear4bit's NF4 / FP4 codes,
// Linear8bit's int8 rows) for up to ROWS_MAX activation rows, the weight read once per call for
// every row: its codes become float32 in registers and meet the rows there (float32 sums).
//
// 4-bit: the flattened (out, in) weight, two codes a byte, the first in the high nibble, one
// absmax per block of `blocksize` (a power of two >= 32) flattened values. A code's value is
// the 16-entry table (quant_map) times its block's absmax: the table is multiplied by the absmax
// once per 32 codes (and rounded to bfloat16 there when the plain math's weight is bfloat16) and
// the codes index the scaled table directly (AVX-512: one vpermps looks up 16 codes; AVX2: two
// 8-entry vpermps and a blend on the code's bit 3), so each weight is exactly the one the plain
// dequantization makes. Needs in % 32 == 0 (a row's 32-code groups then never straddle a block).
// 8-bit: int8 codes widened to float32, the row's scale (SCB / 127) applied to the row's sum.
// Activations float32 or bfloat16 (widened once per call), outputs float32 or bfloat16 (rounded
// to nearest even), bias float32.
#include "kernels.h"
#include <omp.h>

#define BCHUNK 16   // output features per thread task
#define BPFD 4      // weight rows prefetched ahead (as gguf_blocks.h's prefetch_ahead)

static inline uint16_t f2bf(float f) {   // round to nearest even, NaN kept quiet
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if defined(__AVX512F__)
#define RP 8   // activation rows per pass over a weight row (2 accumulators each)
#define SPLIT_X 1   // the 4-bit rows read x split per group of 32: 16 even-index values, 16 odd
// v rounded to bfloat16's precision (to nearest even), kept in float32 lanes
static inline __m512 round_bf16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
}
// 32 codes (16 bytes): byte j widened to lane j is the odd code 2j + 1 in its low nibble, and
// shifted right by 4 the even code 2j; vpermps reads only an index's low 4 bits, so no masking.
// One widening and two lookups (port 5) per 32 codes, against the even / odd halves of x's group.
#define NF4_GROUP(i, A, B)                                                                     \
    { __m512 t_ = _mm512_mul_ps(table, _mm512_set1_ps(absmax[(f0 + (i)) >> shift]));           \
      if (wbf16) t_ = round_bf16(t_);                                                          \
      const __m512i v_ = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + (i) / 2))); \
      const __m512 we_ = _mm512_permutexvar_ps(_mm512_srli_epi32(v_, 4), t_);                 \
      const __m512 wo_ = _mm512_permutexvar_ps(v_, t_);                                        \
      for (int r = 0; r < R; r++) {                                                            \
          A[r] = _mm512_fmadd_ps(we_, _mm512_loadu_ps(x[r] + (i)), A[r]);                      \
          B[r] = _mm512_fmadd_ps(wo_, _mm512_loadu_ps(x[r] + (i) + 16), B[r]);                 \
      } }
static inline __attribute__((always_inline)) void nf4_row(const uint8_t *w, const float *absmax, long f0,
                                                          int shift, int wbf16, long K, const float *qmap,
                                                          const float *const *x, int R, float *out) {
    const __m512 table = _mm512_loadu_ps(qmap);
    __m512 a[RP], b[RP], c[RP], d[RP];   // c, d: a second group in flight where R is small
    for (int r = 0; r < R; r++) a[r] = b[r] = c[r] = d[r] = _mm512_setzero_ps();
    long i = 0;
    if (R <= 4)
        for (; i + 64 <= K; i += 64) { NF4_GROUP(i, a, b) NF4_GROUP(i + 32, c, d) }
    for (; i < K; i += 32) NF4_GROUP(i, a, b)
    for (int r = 0; r < R; r++)
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[r], b[r]), _mm512_add_ps(c[r], d[r])));
}
static inline __attribute__((always_inline)) float int8_tail(const int8_t *w, long i, long K, const float *x) {
    float s = 0.0f;
    for (; i < K; i++) s += (float)w[i] * x[i];
    return s;
}
static inline __attribute__((always_inline)) void int8_row(const int8_t *w, long K, const float *const *x,
                                                           int R, float *out) {
    __m512 a[RP], b[RP];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
    long i = 0;
    for (; i + 32 <= K; i += 32) {
        const __m256i c = _mm256_loadu_si256((const __m256i *)(w + i));
        const __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(c)));
        const __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(c, 1)));
        for (int r = 0; r < R; r++) {
            a[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + i), a[r]);
            b[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[r] + i + 16), b[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a[r], b[r])) + int8_tail(w, i, K, x[r]);
}
#else
#define RP 4
// 8 codes (their low 3 bits index an 8-entry table) -> values of the 16-entry table lo | hi
static inline __m256 look8(__m128i codes8, __m256 lo, __m256 hi) {
    const __m256i idx = _mm256_cvtepu8_epi32(codes8);
    const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));   // bit 3 -> the sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, idx), _mm256_permutevar8x32_ps(hi, idx), sel);
}
static inline __m256 round_bf16(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff)));
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
}
static inline __attribute__((always_inline)) void nf4_row(const uint8_t *w, const float *absmax, long f0,
                                                          int shift, int wbf16, long K, const float *qmap,
                                                          const float *const *x, int R, float *out) {
    const __m256 tlo = _mm256_loadu_ps(qmap), thi = _mm256_loadu_ps(qmap + 8);
    __m256 a[RP], b[RP];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm256_setzero_ps();
    for (long i = 0; i < K; i += 32) {
        const __m256 s = _mm256_set1_ps(absmax[(f0 + i) >> shift]);
        __m256 lo = _mm256_mul_ps(tlo, s), hi = _mm256_mul_ps(thi, s);
        if (wbf16) { lo = round_bf16(lo); hi = round_bf16(hi); }
        const __m128i bb = _mm_loadu_si128((const __m128i *)(w + i / 2)), h = _mm_srli_epi16(bb, 4);
        const __m128i u0 = _mm_unpacklo_epi8(h, bb), u1 = _mm_unpackhi_epi8(h, bb);
        const __m256 w0 = look8(u0, lo, hi), w1 = look8(_mm_srli_si128(u0, 8), lo, hi);
        const __m256 w2 = look8(u1, lo, hi), w3 = look8(_mm_srli_si128(u1, 8), lo, hi);
        for (int r = 0; r < R; r++) {
            const float *xr = x[r] + i;
            a[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), a[r]);
            b[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + 8), b[r]);
            a[r] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr + 16), a[r]);
            b[r] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr + 24), b[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = vsum(_mm256_add_ps(a[r], b[r]));
}
static inline __attribute__((always_inline)) void int8_row(const int8_t *w, long K, const float *const *x,
                                                           int R, float *out) {
    __m256 a[RP], b[RP];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm256_setzero_ps();
    long i = 0;
    for (; i + 16 <= K; i += 16) {
        const __m128i c = _mm_loadu_si128((const __m128i *)(w + i));
        const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c));
        const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(c, 8)));
        for (int r = 0; r < R; r++) {
            a[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[r] + i), a[r]);
            b[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[r] + i + 8), b[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        float s = 0.0f;
        for (long j = i; j < K; j++) s += (float)w[j] * x[r][j];
        out[r] = vsum(_mm256_add_ps(a[r], b[r])) + s;
    }
}
#endif

// R is a constant in each case: the per-row loops unroll and the accumulators stay in registers
#define BY_R(CALL)                                                                             \
    switch (R) {                                                                               \
    case 1: { enum { R_ = 1 }; CALL; } break;                                                  \
    case 2: { enum { R_ = 2 }; CALL; } break;                                                  \
    case 3: { enum { R_ = 3 }; CALL; } break;                                                  \
    case 4: { enum { R_ = 4 }; CALL; } break;                                                  \
    RP_CASES(CALL)                                                                             \
    }
#if RP == 8
#define RP_CASES(CALL)                                                                         \
    case 5: { enum { R_ = 5 }; CALL; } break;                                                  \
    case 6: { enum { R_ = 6 }; CALL; } break;                                                  \
    case 7: { enum { R_ = 7 }; CALL; } break;                                                  \
    default: { enum { R_ = 8 }; CALL; } break;
#else
#define RP_CASES(CALL) default: { enum { R_ = 4 }; CALL; } break;
#endif

// the output rows' values of weight row n (stored with its bias, in float32 or bfloat16)
static inline void store(void *y, long ldy, int ybf16, long m0, int R, long n, const float *out, float mul, float bo) {
    for (int r = 0; r < R; r++) {
        const long at = (m0 + r) * ldy + n;
        const float v = out[r] * mul + bo;
        if (ybf16) ((uint16_t *)y)[at] = f2bf(v);
        else ((float *)y)[at] = v;
    }
}

// weight rows n0 .. n1 - 1 against the M float32 rows of x (K apart)
static void rows_4bit(const uint8_t *w, long n0, long n1, long N, long K, const float *absmax, int shift,
                      int wbf16, const float *qmap, const float *xf, long M,
                      const float *bias, void *y, long ldy, int ybf16) {
    for (long n = n0; n < n1; n++) {
        const uint8_t *wr = w + n * K / 2;
        if (n + BPFD < N)
            for (long o = 0; o < K / 2; o += 64) _mm_prefetch((const char *)(wr + BPFD * K / 2 + o), _MM_HINT_T0);
        const float bo = bias ? bias[n] : 0.0f;
        for (long m0 = 0; m0 < M; m0 += RP) {
            const int R = M - m0 < RP ? (int)(M - m0) : RP;
            float out[RP];
            const float *xs[RP];
            for (int r = 0; r < R; r++) xs[r] = xf + (m0 + r) * K;
            BY_R(nf4_row(wr, absmax, n * K, shift, wbf16, K, qmap, xs, R_, out))
            store(y, ldy, ybf16, m0, R, n, out, 1.0f, bo);
        }
    }
}

#if defined(__AVX512F__)
// Several rows (a batch, a sentence): 4 weight rows widened once per 16 codes for up to 6
// activation rows (24 accumulators), so each code is converted once per 6 rows instead of once
// per row pass and the loads of x serve 4 weight rows (one row at a time, x's loads bound it).
#define I8R 6
static inline __attribute__((always_inline)) void int8_rows4(const int8_t *const *wr, long K, const float *const *x,
                                                             int R, float *out) {
    __m512 acc[I8R][4];
    for (int r = 0; r < R; r++) for (int j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    for (long i = 0; i < K; i += 16) {
        const __mmask16 mk = K - i >= 16 ? 0xffff : (__mmask16)((1u << (K - i)) - 1);
        __m512 wv[4];
        for (int j = 0; j < 4; j++)
            wv[j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(mk, wr[j] + i)));
        for (int r = 0; r < R; r++) {
            const __m512 xv = _mm512_maskz_loadu_ps(mk, x[r] + i);
            for (int j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
        }
    }
    for (int r = 0; r < R; r++) _mm_storeu_ps(out + 4 * r, hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
}

static void rows_8bit4(const int8_t *w, long n0, long n1, long N, long K, const float *scale, const float *xf,
                       long M, const float *bias, void *y, long ldy, int ybf16) {
    for (long n = n0; n < n1; n += 4) {
        const int nw = n1 - n < 4 ? (int)(n1 - n) : 4;
        const int8_t *wr[4];
        for (int j = 0; j < 4; j++) wr[j] = w + (n + (j < nw ? j : 0)) * K;   // a short block repeats its first row
        if (n + 4 + BPFD < N)
            for (long o = 0; o < 4 * K; o += 64) _mm_prefetch((const char *)(w + (n + BPFD) * K + o), _MM_HINT_T0);
        for (long m0 = 0; m0 < M; m0 += I8R) {
            const int R = M - m0 < I8R ? (int)(M - m0) : I8R;
            float out[4 * I8R], col[I8R];
            const float *xs[I8R];
            for (int r = 0; r < R; r++) xs[r] = xf + (m0 + r) * K;
            switch (R) {
            case 1: int8_rows4(wr, K, xs, 1, out); break;
            case 2: int8_rows4(wr, K, xs, 2, out); break;
            case 3: int8_rows4(wr, K, xs, 3, out); break;
            case 4: int8_rows4(wr, K, xs, 4, out); break;
            case 5: int8_rows4(wr, K, xs, 5, out); break;
            default: int8_rows4(wr, K, xs, 6, out); break;
            }
            for (int j = 0; j < nw; j++) {
                for (int r = 0; r < R; r++) col[r] = out[4 * r + j];
                store(y, ldy, ybf16, m0, R, n + j, col, scale[n + j], bias ? bias[n + j] : 0.0f);
            }
        }
    }
}
#endif

static void rows_8bit(const int8_t *w, long n0, long n1, long N, long K, const float *scale, const float *xf,
                      long M, const float *bias, void *y, long ldy, int ybf16) {
#if defined(__AVX512F__)
    if (M >= 2) {
        rows_8bit4(w, n0, n1, N, K, scale, xf, M, bias, y, ldy, ybf16);
        return;
    }
#endif
    for (long n = n0; n < n1; n++) {
        const int8_t *wr = w + n * K;
        if (n + BPFD < N)
            for (long o = 0; o < K; o += 64) _mm_prefetch((const char *)(wr + BPFD * K + o), _MM_HINT_T0);
        const float bo = bias ? bias[n] : 0.0f;
        for (long m0 = 0; m0 < M; m0 += RP) {
            const int R = M - m0 < RP ? (int)(M - m0) : RP;
            float out[RP];
            const float *xs[RP];
            for (int r = 0; r < R; r++) xs[r] = xf + (m0 + r) * K;
            BY_R(int8_row(wr, K, xs, R_, out))
            store(y, ldy, ybf16, m0, R, n, out, scale[n], bo);
        }
    }
}

// rows_8bit for int8_rows.c's weight-only way (the whole-encoder call takes int8 linears too)
void bnb_rows_8bit(const int8_t *w, long n0, long n1, long N, long K, const float *scale, const float *xf,
                   long M, const float *bias, void *y, long ldy, int ybf16) {
    rows_8bit(w, n0, n1, N, K, scale, xf, M, bias, y, ldy, ybf16);
}

// y[m, n] = x[m] . w[n] + bias[n] for M (1 .. ROWS_MAX) rows of x (K values each, rows ldx apart,
// float32, or bfloat16 where xbf16) and the N rows of a weight:
//   bits 4: w the packed codes (N * K / 2 bytes), scale the absmax per block of 1 << log2bs
//           flattened values, qmap the 16 code values (K a multiple of 32, log2bs >= 5);
//           wbf16: each weight (code value * absmax) rounded to bfloat16 as the plain math's
//           cast of the dequantized weight does;
//   bits 8: w int8 (N, K) row-major, scale per row (SCB / 127), qmap unused.
// y float32 or bfloat16 (ybf16), rows ldy apart; bias float32 or NULL. Nonzero where it cannot.
EXPORT int bnb_linear(int bits, const void *w, long N, long K, const float *scale, int log2bs, int wbf16,
                      const float *qmap, const void *x, long M, long ldx, int xbf16, const float *bias,
                      void *y, long ldy, int ybf16, int nthreads) {
    if (M < 1 || M > ROWS_MAX || N < 1 || K < 1) return 1;
    if (bits == 4 ? (K % 32 || log2bs < 5 || log2bs > 30) : bits != 8) return 1;
    // the activations as float32 rows K apart (a copy only when they are bfloat16 or strided, or
    // for the 4-bit rows of AVX-512, which read each group of 32 split into its even and odd values;
    // vdpbf16ps on the bfloat16 rows as they are was slower here: 8 rows of 1536 x 576 nf4, one
    // thread, 272 vs 194 us, int8 255 vs 176 us)
    const float *xf = (const float *)x;
#if defined(SPLIT_X)
    const int split = bits == 4;
#else
    const int split = 0;
#endif
    if (xbf16 || ldx != K || split) {
        float *buf = scratch_floats(M * K);
        if (!buf) return 2;
        for (long m = 0; m < M; m++) {
            float *dst = buf + m * K;
            if (xbf16) {
                const uint16_t *src = (const uint16_t *)x + m * ldx;
                for (long k = 0; k < K; k++) {
                    const uint32_t u = (uint32_t)src[k] << 16;
                    memcpy(dst + k, &u, 4);
                }
            } else memcpy(dst, (const float *)x + m * ldx, K * sizeof(float));
            if (split) {   // in place, one group of 32 at a time
                for (long g = 0; g < K; g += 32) {
                    float tmp[32];
                    for (int j = 0; j < 16; j++) { tmp[j] = dst[g + 2 * j]; tmp[16 + j] = dst[g + 2 * j + 1]; }
                    memcpy(dst + g, tmp, sizeof(tmp));
                }
            }
        }
        xf = buf;
    }
    const long chunks = (N + BCHUNK - 1) / BCHUNK;
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > chunks) nt = (int)chunks;
    #pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
    for (long ch = 0; ch < chunks; ch++) {
        const long n0 = ch * BCHUNK, n1 = n0 + BCHUNK < N ? n0 + BCHUNK : N;
        if (bits == 4)
            rows_4bit((const uint8_t *)w, n0, n1, N, K, scale, log2bs, wbf16, qmap, xf, M, bias, y, ldy, ybf16);
        else rows_8bit((const int8_t *)w, n0, n1, N, K, scale, xf, M, bias, y, ldy, ybf16);
    }
    return 0;
}
