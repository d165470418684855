// Linear8bit's int8 rows (pretrained/quantization/int8.py) on 1 to ROWS_MAX activation rows, with
// the activations quantized to int8 too: LLM.int8(), the algorithm bitsandbytes runs for an int8
// linear in inference (its CPU path too: int8_vectorwise_quant, torch._int_mm, int8_mm_dequant,
// then the outlier columns' float product), here number for number as llm_int8_linear:
//
//   x16 = x rounded to float16 (bitsandbytes casts the input to float16 first);
//   outliers: elements with |x16| >= threshold (threshold > 0; else none), their columns leave
//   the int8 product for every row and are multiplied in float32 from x itself instead;
//   rmax[m] = max |x16[m]| over the row's non-outlier elements,
//   q[m, k] = round-to-nearest-even(x16[m, k] * (127 / rmax[m])), 0 in outlier columns;
//   y[m, n] = float(sum_k q[m, k] w[n, k]) * (rmax[m] * SCB[n]) * 6.200124e-05 + bias[n]
//             + sum_{c outlier} x[m, c] * (float(w[n, c]) * SCB[n] * 7.874016e-03).
//
// The int32 sums are exact: AVX-512 VNNI's vpdpbusd (variants avx512bf16 and amx) multiplies
// unsigned bytes by signed ones, so q goes in as q + 128 and 128 times the weight row's sum (summed
// in the same pass, the first block of rows) comes off; the other variants use AVX2's vpmaddubsw
// on |w| and q with w's sign (products <= 128 * 127, pair sums never saturate) + vpmaddwd.
// Each weight row is loaded for 4 activation rows at once, 4 weight rows at a time (VNNI) or 2
// (AVX2), and reduced to 4 sums in one go. Threads take chunks of output features.
//
// int8_rows also runs the weight-only way (act8 = 0: float32 activations, sum(x * w) * SCB / 127,
// bnb_kernel.c's rows) so the whole-encoder call (encoder.c) takes either.
#include <omp.h>
#include <stdlib.h>

#include "kernels.h"

#define I8CHUNK 16    // output features per thread task
#define INV127 7.874015718698502e-3f
#define INV127SQ 6.200124e-05f

// bnb_kernel.c: weight-only int8 rows on float32 activations (rows K apart)
void bnb_rows_8bit(const int8_t *w, long n0, long n1, long N, long K, const float *scale, const float *xf,
                   long M, const float *bias, void *y, long ldy, int ybf16);

// ---- x rounded to float16 and back ------------------------------------------------------------
#if W == 16
static inline vf round_f16(vf v) {
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#else
// no F16C in the avx2 variant's flags: the rounding by hand (to nearest even; float16 subnormals
// are multiples of 2^-24; 65520 and above overflow to infinity)
static inline vf round_f16(vf v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, v);
    const __m256i u = _mm256_castps_si256(a);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 13), _mm256_set1_epi32(1));
    __m256 r = _mm256_castsi256_ps(_mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0xfff))),
                                                    _mm256_set1_epi32((int)0xffffe000u)));
    const __m256 sub = _mm256_mul_ps(_mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(16777216.0f)),
                                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                     _mm256_set1_ps(5.9604644775390625e-08f));
    r = _mm256_blendv_ps(r, sub, _mm256_cmp_ps(a, _mm256_set1_ps(6.103515625e-05f), _CMP_LT_OQ));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(a, _mm256_set1_ps(65520.0f), _CMP_GE_OQ));
    return _mm256_or_ps(r, _mm256_and_ps(sign, v));
}
#endif

static inline unsigned vmask_bits(vm m) {
#if W == 16
    return (unsigned)m;
#else
    return (unsigned)_mm256_movemask_ps(m);
#endif
}
static inline vm vge(vf a, vf b) {   // false where either is NaN, as torch's >=
#if W == 16
    return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ);
#else
    return _mm256_cmp_ps(a, b, _CMP_GE_OQ);
#endif
}

// ---- the activations quantized ----------------------------------------------------------------
// xq: M rows Kp apart (Kp: K rounded up to 64, the pad 0); VNNI: q + 128 as unsigned bytes, else q.
// rmax[m] the row's maximum; cols / returned count: the outlier columns, ascending.
static long quantize_rows(const float *x, long M, long ldx, long K, float th, uint8_t *xq, long Kp,
                          float *rmax, uint8_t *flag, long *cols) {
    long nc = 0;
    int any = 0;
    for (long m = 0; m < M; m++) {
        const float *p = x + m * ldx;
        vf mx = vzero();
        for (long k = 0; k < K; k += W) {
            const vm mk = vtail(K - k);
            const vf a = vabs(round_f16(vldm(mk, p + k)));
            unsigned out = 0;
            if (th > 0.0f) out = vmask_bits(vge(a, vset1(th)));
            if (out) {   // rare: mark the columns, leave the elements out of the maximum
                if (!any) { memset(flag, 0, K); any = 1; }
                for (int j = 0; j < W && k + j < K; j++) if (out >> j & 1) flag[k + j] = 1;
                mx = vmax(mx, vmaskz(vbits(~out & ((1u << W) - 1)), a));
            } else mx = vmax(mx, a);
        }
        float m_ = 0.0f, tmp[W];
        vst(tmp, mx);
        for (int j = 0; j < W; j++) m_ = tmp[j] > m_ ? tmp[j] : m_;
        rmax[m] = m_;
    }
    if (any)
        for (long k = 0; k < K; k++) if (flag[k]) cols[nc++] = k;
    for (long m = 0; m < M; m++) {
        const float *p = x + m * ldx;
        uint8_t *q = xq + m * Kp;
        // 127 / rmax as torch computes a scalar over a tensor: (1 / rmax) * 127, two roundings
        const vf inv = vset1(rmax[m] > 0.0f ? (1.0f / rmax[m]) * 127.0f : 0.0f);
        long k = 0;
#if W == 16
        const __m128i off = _mm_set1_epi8((char)0x80);
        for (; k < K; k += 16) {
            const __mmask16 mk = vtail(K - k);
            const __m512i i = _mm512_cvtps_epi32(vmul(round_f16(vldm(mk, p + k)), inv));   // to nearest even
            __m128i b = _mm512_cvtsepi32_epi8(i);
#if defined(__AVX512VNNI__)
            b = _mm_xor_si128(b, off);
#else
            (void)off;
#endif
            _mm_mask_storeu_epi8(q + k, mk, b);
        }
#else
        for (; k < K; k += 8) {
            int8_t t[8];
            const vm mk = vtail(K - k);
            const __m256i i = _mm256_cvtps_epi32(vmul(round_f16(vldm(mk, p + k)), inv));
            const __m128i s = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
            _mm_storel_epi64((__m128i *)t, _mm_packs_epi16(s, s));
            for (int j = 0; j < 8 && k + j < K; j++) q[k + j] = (uint8_t)t[j];
        }
#endif
        for (long c = 0; c < nc; c++) q[cols[c]] = 0;
#if defined(__AVX512VNNI__)
        for (long c = 0; c < nc; c++) q[cols[c]] = 0x80;   // q = 0, offset by 128
#endif
        memset(q + K, 0, Kp - K);
    }
    return nc;
}

// ---- int32 dot products: I8NW weight rows x 4 activation rows ------------------------------------
#if defined(__AVX512VNNI__)
#define I8NW 4
// lanes summed: [s(a0) s(a1) s(a2) s(a3)]
static inline __m128i hsum4_i32(__m512i a0, __m512i a1, __m512i a2, __m512i a3) {
    const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
    const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
    const __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}
// sums[r * I8NW + j] = xq row r . w row j, for R <= 4 rows; wsum[j]: the weight rows' sums, when asked
static inline __attribute__((always_inline)) void dots(const int8_t *w, long K, int nw, const uint8_t *xq,
                                                       long Kp, int R, int32_t *sums, int32_t *wsum) {
    __m512i acc[4][I8NW], ws[I8NW];
    for (int r = 0; r < 4; r++) for (int j = 0; j < I8NW; j++) acc[r][j] = _mm512_setzero_si512();
    for (int j = 0; j < I8NW; j++) ws[j] = _mm512_setzero_si512();
    const __m512i ones = _mm512_set1_epi8(1);
    for (long k = 0; k < Kp; k += 64) {
        const __mmask64 mk = K - k >= 64 ? ~0ULL : (1ULL << (K - k)) - 1;
        __m512i wv[I8NW];
        for (int j = 0; j < I8NW; j++) wv[j] = j < nw ? _mm512_maskz_loadu_epi8(mk, w + j * K + k) : _mm512_setzero_si512();
        for (int r = 0; r < R; r++) {
            const __m512i xv = _mm512_loadu_si512(xq + r * Kp + k);
            for (int j = 0; j < I8NW; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], xv, wv[j]);
        }
        if (wsum)
            for (int j = 0; j < I8NW; j++) ws[j] = _mm512_dpbusd_epi32(ws[j], ones, wv[j]);
    }
    for (int r = 0; r < R; r++) _mm_storeu_si128((__m128i *)(sums + r * I8NW), hsum4_i32(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
    if (wsum) _mm_storeu_si128((__m128i *)wsum, hsum4_i32(ws[0], ws[1], ws[2], ws[3]));
}
#else
#define I8NW 2
static inline __attribute__((always_inline)) void dots(const int8_t *w, long K, int nw, const uint8_t *xq,
                                                       long Kp, int R, int32_t *sums, int32_t *wsum) {
    __m256i acc[4][I8NW];
    for (int r = 0; r < 4; r++) for (int j = 0; j < I8NW; j++) acc[r][j] = _mm256_setzero_si256();
    const __m256i one16 = _mm256_set1_epi16(1);
    for (long k = 0; k < Kp; k += 32) {
        __m256i wv[I8NW], wa[I8NW];
        for (int j = 0; j < I8NW; j++) {
            if (j >= nw) wv[j] = _mm256_setzero_si256();
            else if (K - k >= 32) wv[j] = _mm256_loadu_si256((const __m256i *)(w + j * K + k));
            else {   // the row's last bytes, zero beyond K
                int8_t t[32] = {0};
                if (k < K) memcpy(t, w + j * K + k, K - k);
                wv[j] = _mm256_loadu_si256((const __m256i *)t);
            }
            wa[j] = _mm256_sign_epi8(wv[j], wv[j]);
        }
        for (int r = 0; r < R; r++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + r * Kp + k));
            for (int j = 0; j < I8NW; j++)
                acc[r][j] = _mm256_add_epi32(acc[r][j], _mm256_madd_epi16(
                    _mm256_maddubs_epi16(wa[j], _mm256_sign_epi8(xv, wv[j])), one16));
        }
    }
    for (int r = 0; r < R; r++)
        for (int j = 0; j < I8NW; j++) {
            __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[r][j]), _mm256_extracti128_si256(acc[r][j], 1));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
            s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
            sums[r * I8NW + j] = _mm_cvtsi128_si32(s);
        }
    if (wsum) for (int j = 0; j < I8NW; j++) wsum[j] = 0;
}
#endif

// y = int32 sums scaled as int8_mm_dequant (kept apart: no fused multiply-add where torch rounds twice)
__attribute__((optimize("fp-contract=off")))
static float dequant(int32_t s, float rm, float scb, float b) {
    const float v = (float)s * (rm * scb) * INV127SQ;
    return v + b;
}
__attribute__((optimize("fp-contract=off")))
static float outlier_sum(const float *x, const int8_t *w, float scb, const long *cols, long nc) {
    float s = 0.0f;
    for (long c = 0; c < nc; c++) {
        const float wd = (float)w[cols[c]] * scb * INV127;
        s += x[cols[c]] * wd;
    }
    return s;
}

// weight rows n0 .. n1 - 1 (of one weight) against the M quantized rows
static void rows_i8(const int8_t *w, long n0, long n1, long K, const float *scb, const float *bias,
                    const uint8_t *xq, long Kp, long M, const float *rmax, const float *x, long ldx,
                    const long *cols, long nc, float *y, long ldy) {
    for (long n = n0; n < n1; n += I8NW) {
        const int nw = n1 - n < I8NW ? (int)(n1 - n) : I8NW;
        int32_t wsum[I8NW], sums[4 * I8NW];
        for (long m0 = 0; m0 < M; m0 += 4) {
            const int R = M - m0 < 4 ? (int)(M - m0) : 4;
            int32_t *ws = m0 == 0 ? wsum : NULL;
            switch (R) {
            case 1: dots(w + n * K, K, nw, xq + m0 * Kp, Kp, 1, sums, ws); break;
            case 2: dots(w + n * K, K, nw, xq + m0 * Kp, Kp, 2, sums, ws); break;
            case 3: dots(w + n * K, K, nw, xq + m0 * Kp, Kp, 3, sums, ws); break;
            default: dots(w + n * K, K, nw, xq + m0 * Kp, Kp, 4, sums, ws); break;
            }
            for (int r = 0; r < R; r++)
                for (int j = 0; j < nw; j++) {
                    const long m = m0 + r, o = n + j;
#if defined(__AVX512VNNI__)
                    const int32_t s = sums[r * I8NW + j] - 128 * wsum[j];
#else
                    const int32_t s = sums[r * I8NW + j];
#endif
                    if (!scb) { ((int32_t *)y)[m * ldy + o] = s; continue; }   // the sums themselves (tests)
                    float v = dequant(s, rmax[m], scb[o], bias ? bias[o] : 0.0f);
                    if (nc) v += outlier_sum(x + m * ldx, w + o * K, scb[o], cols, nc);
                    y[m * ldy + o] = v;
                }
        }
    }
}

#if defined(__AMX_TILE__)
// ---- AMX-INT8 tiles (the amx variant, where the CPU has AMX-INT8) -----------------------------
// C^T = W q^T, as rows_bf16.c's bfloat16 tiles: A = 16 weight rows x 64 k straight from the
// weight, B = q re-laid out once per call in fours of k (the tiles' VNNI layout, rows past M zero),
// C = 16 features x 16 rows of exact int32 sums (tdpbssd: signed x signed). One tile product is
// 16 x 16 x 64 multiply-adds: the weight stream, not the arithmetic, bounds a call.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

static int amx8_state;   // 0: not asked yet, 1: usable, -1: not (no AMX-INT8, tiles refused, turned off)
static int amx8_ready(void) {
    if (!amx8_state) {
        unsigned a, b, c, d;
        const int ok = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 24 & 1) && (d >> 25 & 1)
                       && syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
        amx8_state = ok ? 1 : -1;
    }
    return amx8_state > 0;
}
// on: 1 lets int8_rows use the tiles where they apply, 0 keeps the vpdpbusd rows (tests compare
// the two); returns whether the tiles are used now.
EXPORT int int8_tiles(int on) {
    if (!on) amx8_state = -1;
    else if (amx8_state < 0) amx8_state = 0;
    return amx8_ready();
}
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tilecfg8;
#define OUTLIERS_VEC 32   // outlier columns summed 16 features at a time (more: one feature at a time)

// features 16 nb .. of block c (16 features) from the int32 tile c (cbuf: C[n][m])
__attribute__((optimize("fp-contract=off")))
static void amx_store(const int32_t *cbuf, long n, long M, const float *rmax, const float *scb,
                      const float *bias, const float *x, long ldx, const int8_t *w, long K,
                      const long *cols, long nc, float *y, long ldy) {
    const __m512i idx = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(16));
    const __m512 sc = _mm512_loadu_ps(scb + n), b = bias ? _mm512_loadu_ps(bias + n) : _mm512_setzero_ps();
    // outlier columns (a real model's LayerNorm outputs have some in every row): their weights
    // dequantized once per block, as outlier_sum does, then summed for every row 16 features at a time
    __m512 wd[OUTLIERS_VEC];
    const int vec = nc <= OUTLIERS_VEC;
    if (nc && vec)
        for (long c = 0; c < nc; c++) {
            int32_t q[16];
            for (int j = 0; j < 16; j++) q[j] = w[(n + j) * K + cols[c]];
            wd[c] = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(q)), sc), _mm512_set1_ps(INV127));
        }
    for (long m = 0; m < M; m++) {
        const __m512i s = _mm512_i32gather_epi32(_mm512_add_epi32(idx, _mm512_set1_epi32((int)m)), cbuf, 4);
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(_mm512_set1_ps(rmax[m]), sc));
        v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(INV127SQ)), b);
        if (nc && vec) {
            __m512 o = _mm512_setzero_ps();
            for (long c = 0; c < nc; c++) o = _mm512_add_ps(o, _mm512_mul_ps(_mm512_set1_ps(x[m * ldx + cols[c]]), wd[c]));
            v = _mm512_add_ps(v, o);
        } else if (nc) {
            float t[16];
            _mm512_storeu_ps(t, v);
            for (int j = 0; j < 16; j++) t[j] += outlier_sum(x + m * ldx, w + (n + j) * K, scb[n + j], cols, nc);
            v = _mm512_loadu_ps(t);
        }
        _mm512_storeu_ps(y + m * ldy + n, v);
    }
}

// tile pair p (features 32 p .. 32 p + 31, or the last block alone) of one weight with `blocks`
// full blocks of 16 (K % 64 == 0), xb the re-laid q; the tiles configured by tiles_on()
static void amx_pair(const int8_t *w, long blocks, long p, long K, const float *scb, const float *bias,
                     const int8_t *xb, long M, const float *rmax, const float *x, long ldx, const long *cols,
                     long nc, float *y, long ldy) {
    int32_t cbuf[2][256];
    const long nb = 2 * p;
    const int two = nb + 1 < blocks;
    const int8_t *w0 = w + nb * 16 * K, *w1 = w0 + 16 * K;
    const int8_t *pf = w + (nb + 2 < blocks ? nb + 2 : nb) * 16 * K;   // the next pair
    _tile_zero(0);
    _tile_zero(1);
    for (long k = 0; k < K; k += 64) {
        _tile_loadd(4, xb + k * 16, 64);
        _tile_loadd(2, w0 + k, K);
        _tile_dpbssd(0, 2, 4);
        if (two) { _tile_loadd(3, w1 + k, K); _tile_dpbssd(1, 3, 4); }
        for (int r = 0; r < 32; r++) _mm_prefetch((const char *)(pf + r * K + k), _MM_HINT_T0);
    }
    _tile_stored(0, cbuf[0], 64);
    if (two) _tile_stored(1, cbuf[1], 64);
    for (int h = 0; h <= two; h++)
        amx_store(cbuf[h], (nb + h) * 16, M, rmax, scb, bias, x, ldx, w, K, cols, nc, y, ldy);
}
static void tiles_on(void) {   // tiles 0, 1: C; 2, 3: weight blocks; 4: q
    tilecfg8 cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 5; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
}
#else
EXPORT int int8_tiles(int on) { (void)on; return 0; }
#endif

static __thread void *i8_buf;
static __thread long i8_cap;
#if defined(__AMX_TILE__)
static __thread void *i8_tiles_buf;
static __thread long i8_tiles_cap;
#endif
#define TILE_ROWS 4   // fewer rows: the vpdpbusd rows (3072 x 768 streamed, 1 thread: 2 rows 144 vs 168 us, 4: 201 vs 170)

// count int8 weights (ws[i]: Ns[i] x K, row-major; scbs[i]: SCB per row; biases[i] float32 or NULL)
// of one float32 input x (M rows, ldx apart), their outputs side by side in y (rows ldy apart):
// act8: LLM.int8() as above (threshold <= 0: no outliers); scbs[i] NULL there writes the exact
// int32 sums of q . w (as int32) instead. act8 = 0: weight-only, sum(x * w) * (SCB / 127) + bias.
// Nonzero where it cannot.
EXPORT int int8_rows(int count, const int8_t *const *ws, const float *const *scbs, const float *const *biases,
                     const long *Ns, long K, const float *x, long M, long ldx, float th, int act8,
                     float *y, long ldy, int nthreads) {
    if (M < 1 || M > ROWS_MAX || K < 1 || count < 1 || count > MAXW) return 1;
    long Nsum = 0;
    for (int i = 0; i < count; i++) {
        if (Ns[i] < 1 || (!act8 && !scbs[i])) return 1;
        Nsum += Ns[i];
    }
    const long Kp = (K + 63) / 64 * 64;
    // xq, rmax, flags and columns; or (weight-only) a copy of x K apart and the scales
    const long bytes = act8 ? M * Kp + M * 4 + K + K * 8 + 192 : (ldx != K ? M * K * 4 : 0) + Nsum * 4 + 192;
    uint8_t *buf = grow(&i8_buf, &i8_cap, bytes);
    if (!buf) return 2;
    int nt = nthreads < 1 ? 1 : nthreads;
    long col = 0;
    if (act8) {
        float *rmax = (float *)buf;
        long *cols = (long *)(buf + M * 4 + 8 - (M * 4) % 8);
        uint8_t *flag = (uint8_t *)(cols + K), *xq = flag + K + 64 - K % 64;
        const long nc = quantize_rows(x, M, ldx, K, th, xq, Kp, rmax, flag, cols);
#if defined(__AMX_TILE__)
        int8_t *xb = NULL;
        // the tiles from TILE_ROWS rows (below, the row dots stream the weight as fast), with every
        // scale there (not the int32 sums of the tests)
        int all_scb = 1;
        for (int i = 0; i < count; i++) all_scb &= scbs[i] != NULL;
        if (M >= TILE_ROWS && K % 64 == 0 && all_scb && amx8_ready()) {
            xb = grow(&i8_tiles_buf, &i8_tiles_cap, K * 16);
            if (!xb) return 2;
            // xb[(k / 4) * 64 + 4 m + j] = q[m, k + j] (signed), rows of B past M zero
            for (long k4 = 0; k4 < K / 4; k4++)
                for (long m = 0; m < 16; m++) {
                    uint32_t v = 0;
                    if (m < M) {
                        memcpy(&v, xq + m * Kp + 4 * k4, 4);
#if defined(__AVX512VNNI__)
                        v ^= 0x80808080u;   // back from the + 128 of the vpdpbusd rows
#endif
                    }
                    memcpy(xb + k4 * 64 + 4 * m, &v, 4);
                }
        }
#endif
        // one parallel region for every weight: tasks are, per weight, its tile pairs (where the
        // tiles run) and then chunks of I8CHUNK features of the rest
        long first[MAXW + 1], pairs[MAXW], done[MAXW], at[MAXW];
        first[0] = 0;
        for (int i = 0; i < count; i++) {
            int tiled = 0;
#if defined(__AMX_TILE__)
            tiled = xb != NULL;
#endif
            done[i] = tiled ? Ns[i] / 16 * 16 : 0;
            pairs[i] = (done[i] / 16 + 1) / 2;
            at[i] = col;
            col += Ns[i];
            first[i + 1] = first[i] + pairs[i] + (Ns[i] - done[i] + I8CHUNK - 1) / I8CHUNK;
        }
        #pragma omp parallel num_threads(nt) if (nt > 1 && first[count] > 1)
        {
            int configured = 0;
            #pragma omp for schedule(dynamic, 1)
            for (long t = 0; t < first[count]; t++) {
                int i = 0;
                while (t >= first[i + 1]) i++;
                const long j = t - first[i];
                if (j < pairs[i]) {
#if defined(__AMX_TILE__)
                    if (!configured) { tiles_on(); configured = 1; }
                    amx_pair(ws[i], done[i] / 16, j, K, scbs[i], biases[i], xb, M, rmax, x, ldx, cols, nc,
                             y + at[i], ldy);
#endif
                    continue;
                }
                const long n0 = done[i] + (j - pairs[i]) * I8CHUNK, n1 = n0 + I8CHUNK < Ns[i] ? n0 + I8CHUNK : Ns[i];
                rows_i8(ws[i], n0, n1, K, scbs[i], biases[i], xq, Kp, M, rmax, x, ldx, cols, nc, y + at[i], ldy);
            }
#if defined(__AMX_TILE__)
            if (configured) _tile_release();
#else
            (void)configured;
#endif
        }
        return 0;
    }
    float *scale = (float *)buf, *xf = (float *)x;
    long first[MAXW + 1];
    first[0] = 0;
    for (int i = 0; i < count; i++) {   // every weight's scales, as SCB * (1 / 127) computes them
        for (long n = 0; n < Ns[i]; n++) scale[col + n] = scbs[i][n] * (float)(1.0 / 127.0);
        col += Ns[i];
        first[i + 1] = first[i] + (Ns[i] + I8CHUNK - 1) / I8CHUNK;
    }
    if (ldx != K) {
        xf = scale + col + 16 - col % 16;
        for (long m = 0; m < M; m++) memcpy(xf + m * K, x + m * ldx, K * 4);
    }
    #pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1 && first[count] > 1)
    for (long t = 0; t < first[count]; t++) {
        int i = 0;
        long at = 0;
        while (t >= first[i + 1]) at += Ns[i++];
        const long n0 = (t - first[i]) * I8CHUNK, n1 = n0 + I8CHUNK < Ns[i] ? n0 + I8CHUNK : Ns[i];
        bnb_rows_8bit(ws[i], n0, n1, Ns[i], K, scale + at, xf, M, biases[i], y + at, ldy, 0);
    }
    return 0;
}
