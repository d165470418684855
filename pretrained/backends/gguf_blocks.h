// Shared by gguf_kernel.c (int8 activations, dequantizing, the call driver) and gguf_float.c
// (float32 activations): GGUF's block layouts, the unpacking helpers both read blocks with, and
// the layer description one call takes (gguf_linear_n: several layers of one input at once).
#ifndef GGUF_BLOCKS_H
#define GGUF_BLOCKS_H
#include "kernels.h"

enum { T_Q4_0 = 2, T_Q4_1 = 3, T_Q5_0 = 6, T_Q5_1 = 7, T_Q8_0 = 8, T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14 };
#define GCHUNK 32   // output features per thread task
#define RB 4        // activation rows per pass over a weight row
#define GMAXL 8     // layers per gguf_linear_n call

// One packed layer of a call (gguf_linear.py builds these once per module or group, as ctypes
// structures of 8-byte fields): its outputs go to columns col .. col + N - 1 of y, stored row n
// to column col + out_index[n] where out_index is given.
typedef struct {
    int64_t type;
    const uint8_t *w;
    int64_t N, K, ldw;
    const float *bias;
    const int32_t *out_index;
    int64_t col;
} gguf_layer;

// IEEE half -> float, exact (subnormals included), through a table of all 65536 values built when
// the library loads (a scalar conversion costs more than the rest of a block's work; no F16C
// needed, which the AVX2 variant's flags do not promise). Defined in gguf_kernel.c.
extern float gguf_f16_table[65536];
static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return gguf_f16_table[h];
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// byte j = 0xFF where bit j of the 32 bits at p is set
static inline __m256i bits_to_bytes(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return _mm256_movm_epi8((__mmask32)bits);
#else
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), _mm256_setr_epi64x(
        0x0000000000000000LL, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfeLL));   // all but bit j % 8
    return _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1));
#endif
}
// 16 bytes of nibbles -> 32 codes: low nibbles are values 0-15, high nibbles 16-31
static inline __m256i nibbles16(const uint8_t *p) {
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}
// Q4_K / Q5_K: the 6-bit scales and mins of the 8 sub-blocks, times d and dmin
static inline void k_scales(const uint8_t *w, float *sc, float *mn) {
    float d = h2f(w), dmin = h2f(w + 2);
    const uint8_t *s = w + 4;
    for (int j = 0; j < 4; j++) {
        sc[j] = d * (float)(s[j] & 63);
        mn[j] = dmin * (float)(s[j + 4] & 63);
        sc[j + 4] = d * (float)((s[j + 8] & 0x0F) | ((s[j] >> 6) << 4));
        mn[j + 4] = dmin * (float)((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}
/* Q4_K / Q5_K: chunk ``ch`` (of 4) of a super-block's 32-byte code area ``qs`` -> the 4-bit codes of
   its two sub-blocks (``lo``: sub-block 2ch, ``hi``: 2ch + 1); for Q5_K each takes its next bit of
   the qh bytes in ``*h`` as the fifth (``*h`` shifted on for the next chunk). */
static inline __attribute__((always_inline)) void k_codes(const uint8_t *qs, int ch, int five, __m256i *h,
                                                          __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(0x01);
    __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * ch));
    *lo = _mm256_and_si256(raw, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    if (five) {   // sub-block j takes bit j of each qh byte as its fifth bit
        *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(_mm256_and_si256(*h, m1), 4));
        *h = _mm256_srli_epi16(*h, 1);
        *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(_mm256_and_si256(*h, m1), 4));
        *h = _mm256_srli_epi16(*h, 1);
    }
}

static inline int is_b32(int64_t type) {   // the blocks of 32 (else super-blocks of 256)
    return type == T_Q8_0 || type == T_Q4_0 || type == T_Q4_1 || type == T_Q5_0 || type == T_Q5_1;
}
static inline int known(int64_t type, long K) {
    switch (type) {
    case T_Q8_0: case T_Q4_0: case T_Q4_1: case T_Q5_0: case T_Q5_1: return K % 32 == 0;
    case T_Q4_K: case T_Q5_K: case T_Q6_K: return K % 256 == 0;
    }
    return 0;
}

// Every cache line of the weight row PFD rows ahead of row n (the rows are contiguous, so across a
// chunk's end too). The weights stream from memory once per token; the hardware prefetcher alone
// left one thread at ~4.9 GB/s here: one thread, SmolLM2's Q4_1 1536 x 576 from memory 121 ->
// 91 us (82 from cache), its Q8_0 49152 x 576 head 4.9 -> 3.6 ms (2, 8 and 16 rows ahead: slower).
#define PFD 4
static inline void prefetch_ahead(const gguf_layer *g, long n) {
    if (n + PFD >= g->N) return;
    const char *p = (const char *)(g->w + (n + PFD) * g->ldw);
    for (long o = 0; o < g->ldw; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// a row of K values of a weight as float32 (gguf_kernel.c)
void gguf_dequant_row(int type, const uint8_t *w, long K, float *out);
// y[m, col + idx(n)] (+ bias) for weight rows n0 .. n1 - 1 of layer g against M float32 rows of x,
// xsum[m * K / 32 + b] the sum of x's block b (gguf_float.c)
void gguf_rows_f32(const gguf_layer *g, long n0, long n1, const float *x, long ldx, long M,
                   const float *xsum, float *y, long ldy);
#endif
