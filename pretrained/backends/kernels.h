// Shared by rows_kernel.c, rows_bf16.c and encoder.c (compiled together into one library per
// instruction-set variant, see build.py): the float32 vector type of the variant, the sizes,
// and the helpers more than one file uses.
//
// The float32 code is written once against a vector of W floats: W = 16 (a zmm register, with
// mask registers for tails) where the compiler is told AVX-512F, else W = 8 (a ymm register,
// masked loads from a lane mask) with AVX2 + FMA. Which parts a library holds depends only on
// the flags it is compiled with (__AVX512F__, __AVX512BF16__, __AMX_TILE__), never on the
// machine compiling it, so each variant is the same on every CPU.
#ifndef KERNELS_H
#define KERNELS_H
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))   // the rest is hidden (-fvisibility=hidden)
#define ROWS_MAX 16
#define NCHUNK 128   // output features per thread task
#define MAXW 8       // weights per _n call

#if defined(__AVX512F__)
#define W 16
typedef __m512 vf;
typedef __mmask16 vm;
static inline vm vtail(long r) { return (vm)(r >= 16 ? 0xffff : (1u << r) - 1); }
static inline vm vbits(unsigned bits) { return (vm)bits; }   // lane j on where bit j is set
static inline vf vzero(void) { return _mm512_setzero_ps(); }
static inline vf vset1(float f) { return _mm512_set1_ps(f); }
static inline vf vld(const float *p) { return _mm512_loadu_ps(p); }
static inline vf vldm(vm m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
static inline void vst(float *p, vf v) { _mm512_storeu_ps(p, v); }
static inline void vstm(float *p, vm m, vf v) { _mm512_mask_storeu_ps(p, m, v); }
static inline vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm512_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
static inline vf vfnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
static inline vf vabs(vf a) { return _mm512_abs_ps(a); }
static inline vf vround(vf a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline vf vpow2mul(vf p, vf n) { return _mm512_scalef_ps(p, n); }        // p 2^n
static inline vm vlt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
static inline vm vgt(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
static inline vf vblend(vm m, vf a, vf b) { return _mm512_mask_blend_ps(m, a, b); }  // m ? b : a
static inline vf vmaskz(vm m, vf a) { return _mm512_maskz_mov_ps(m, a); }
static inline float vsum(vf a) { return _mm512_reduce_add_ps(a); }
// the sums of a0..a3 as one __m128 [s0 s1 s2 s3]
static inline __m128 hsum4(vf a0, vf a1, vf a2, vf a3) {
    __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 s = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(s01), _mm512_castps_pd(s23))));
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_extractf32x8_ps(s, 1));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define W 8
typedef __m256 vf;
typedef __m256 vm;   // all ones in a lane that is on
static inline vm vbits(unsigned bits) {
    __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i on = _mm256_and_si256(_mm256_set1_epi32((int)bits), lane);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(on, lane));
}
static inline vm vtail(long r) { return vbits(r >= 8 ? 0xff : (1u << r) - 1); }
static inline vf vzero(void) { return _mm256_setzero_ps(); }
static inline vf vset1(float f) { return _mm256_set1_ps(f); }
static inline vf vld(const float *p) { return _mm256_loadu_ps(p); }
static inline vf vldm(vm m, const float *p) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
static inline void vst(float *p, vf v) { _mm256_storeu_ps(p, v); }
static inline void vstm(float *p, vm m, vf v) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), v); }
static inline vf vadd(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vsub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
static inline vf vmax(vf a, vf b) { return _mm256_max_ps(a, b); }
static inline vf vfma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vfnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vabs(vf a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// p 2^n for integral n in [-126, 127] (exp_neg keeps it there): 2^n built from its exponent bits
static inline vf vpow2mul(vf p, vf n) {
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
static inline vm vlt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
static inline vm vgt(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
static inline vf vblend(vm m, vf a, vf b) { return _mm256_blendv_ps(a, b, m); }
static inline vf vmaskz(vm m, vf a) { return _mm256_and_ps(m, a); }
static inline float vsum(vf a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(_mm_hadd_ps(s, s));
}
static inline __m128 hsum4(vf a0, vf a1, vf a2, vf a3) {
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}
#else
#error "rows_kernel needs AVX2 and FMA, or AVX-512F (build.py passes the flags)"
#endif

// exp(y) for y <= 0 by range reduction (flushes to e^-87 below that, callers mask or scale it)
static inline vf exp_neg(vf y) {
    const vf log2e = vset1(1.44269504f), ln2hi = vset1(0.693359375f), ln2lo = vset1(-2.12194440e-4f);
    y = vmax(y, vset1(-87.0f));
    vf n = vround(vmul(y, log2e));
    vf r = vfnma(n, ln2lo, vfnma(n, ln2hi, y));
    vf p = vset1(1.0f / 720);
    static const float c[6] = {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    for (int i = 0; i < 6; i++) p = vfma(p, r, vset1(c[i]));
    return vpow2mul(p, n);
}

// Float32 pieces the encoders share with the linears (rows_kernel.c).
EXPORT int linear_f32_n(const float *x, long M, long ldx, int count, const float *const *ws,
                        const float *const *bs, const long *Ns, long K, float *y, long ldy, int nthreads,
                 int gelu, const float *res, long ldr);
EXPORT int linear_f32(const float *x, long M, long ldx, const float *w, long N, long K,
                      const float *b, float *y, long ldy, int nthreads, int gelu, const float *res, long ldr);
void gelu_rows(float *y, long M, long ldy, long n0, long n1);
// chunks of NCHUNK outputs over count weights: first[i] = weight i's first chunk, col[i] its column
int plan(int count, const long *Ns, long M, long K, long *first, long *col);
// per-thread scratch kept between calls (a fresh malloc of this size would map fresh pages)
void *grow(void **buf, long *cap, long bytes);
float *scratch_floats(long n);

#if defined(__AVX512BF16__)
// 16 bfloat16 values (those in mk, else 0) widened to float32, and back (to nearest even).
static inline __m512 ldbf(const uint16_t *p, __mmask16 mk) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mk, p)), 16));
}
static inline void stbf(uint16_t *p, __mmask16 mk, __m512 v) {
    _mm256_mask_storeu_epi16(p, mk, (__m256i)_mm512_cvtneps_pbh(v));
}
EXPORT int linear_bf16_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                         const uint16_t *const *bs, const long *Ns, long K, uint16_t *y, long ldy,
                  int nthreads);
EXPORT int linear_bf16(const uint16_t *x, long M, long ldx, const uint16_t *w, long N, long K,
                       const uint16_t *b, uint16_t *y, long ldy, int nthreads);
#endif
#endif
