// Linear layers on a few rows (M <= 16): y[m, n] = sum_k x[m, k] * w[n, k] + b[n], in float32
// (this file, AVX-512 or AVX2), bfloat16 (rows_bf16.c) and whole post-LayerNorm encoder stacks
// (BERT's) on them, all layers in one call (encoder.c).
//
// Built by build.py (cc -O3 -fopenmp with one variant's instruction-set flags, at setup or first
// use), called via ctypes (rows.py).
// Why: at a handful of rows a linear layer is bound by streaming its weight from memory, and the
// BLAS kernels behind F.linear copy the weight into their own layout on every call. These read
// nn.Linear's (out, in) weight where it lies, once, prefetching the next rows, and use every
// weight they load for all rows of x. No second copy of the weights.
//
// Threads take chunks of NCHUNK output features as they free up (a core slowed by another process
// does less); each output is summed by one thread in one fixed order, so results do not depend
// on the thread count or the schedule.
#include <omp.h>
#include <stdlib.h>

#include "kernels.h"

EXPORT const char *variant_name(void) {   // build.py checks a library is the variant it asked for
#if defined(__AMX_TILE__)
    return "amx";
#elif defined(__AVX512BF16__)
    return "avx512bf16";
#elif defined(__AVX512F__)
    return "avx512";
#else
    return "avx2";
#endif
}

// ---- float32 ----------------------------------------------------------------------------------
// Blocks of 4 weight rows x up to MB_MAX input rows (4 MB_MAX accumulators: 24 of AVX-512's 32
// registers, 8 of AVX2's 16), a dot product along k reduced at the end, k in chunks of KCHUNK so
// the chunk of x stays in L1 while the weight streams past.
#define KCHUNK 384
#if W == 16
#define MB_MAX 6
#else
#define MB_MAX 2
#endif

#define DEF4(MB)                                                                              \
static void b4_##MB(const float *x, long ldx, const float *w, long K, float *y, long ldy,     \
                    const float *b, long n, long nend, long k0, long k1) {                    \
    const float *pw = w + (n + 4 < nend ? n + 4 : n) * K; /* next block */                    \
    vf acc[MB][4];                                                                             \
    for (int i = 0; i < MB; i++) for (int j = 0; j < 4; j++) acc[i][j] = vzero();             \
    long k = k0;                                                                               \
    for (; k + W <= k1; k += W) {                                                              \
        vf wv[4];                                                                              \
        for (int j = 0; j < 4; j++) { wv[j] = vld(w + (n + j) * K + k);                        \
            if (W == 16 || !(k & 15)) /* once per 64-byte line */                              \
                _mm_prefetch((const char *)(pw + j * K + k), _MM_HINT_T1); }                   \
        for (int i = 0; i < MB; i++) { vf xv = vld(x + i * ldx + k);                           \
            for (int j = 0; j < 4; j++) acc[i][j] = vfma(xv, wv[j], acc[i][j]); }              \
    }                                                                                          \
    if (k < k1) {                                                                              \
        vm mk = vtail(k1 - k);                                                                 \
        vf wv[4];                                                                              \
        for (int j = 0; j < 4; j++) wv[j] = vldm(mk, w + (n + j) * K + k);                     \
        for (int i = 0; i < MB; i++) { vf xv = vldm(mk, x + i * ldx + k);                      \
            for (int j = 0; j < 4; j++) acc[i][j] = vfma(xv, wv[j], acc[i][j]); }              \
    }                                                                                          \
    __m128 base = k0 == 0 && b ? _mm_loadu_ps(b + n) : _mm_setzero_ps();                       \
    for (int i = 0; i < MB; i++) {                                                             \
        __m128 s = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);                          \
        float *yp = y + i * ldy + n;                                                           \
        _mm_storeu_ps(yp, k0 == 0 ? _mm_add_ps(s, base) : _mm_add_ps(_mm_loadu_ps(yp), s));    \
    }                                                                                          \
}
typedef void (*blk)(const float *, long, const float *, long, float *, long, const float *, long, long, long, long);
DEF4(1) DEF4(2)
#if MB_MAX == 6
DEF4(3) DEF4(4) DEF4(5) DEF4(6)
static const blk B4[MB_MAX + 1] = {0, b4_1, b4_2, b4_3, b4_4, b4_5, b4_6};
#else
static const blk B4[MB_MAX + 1] = {0, b4_1, b4_2};
#endif

// one output feature n (the N % 4 past the blocks) for all M rows
static void tail1(const float *x, long M, long ldx, const float *w, long K, float *y, long ldy, const float *b, long n, long k0, long k1) {
    for (long m = 0; m < M; m++) {
        vf a = vzero(); long k = k0;
        for (; k + W <= k1; k += W) a = vfma(vld(x + m * ldx + k), vld(w + n * K + k), a);
        if (k < k1) { vm mk = vtail(k1 - k); a = vfma(vldm(mk, x + m * ldx + k), vldm(mk, w + n * K + k), a); }
        float s = vsum(a);
        y[m * ldy + n] = k0 == 0 ? s + (b ? b[n] : 0.0f) : y[m * ldy + n] + s;
    }
}

// Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, fused into the float32 kernel's last step (the
// separate pass would read the output back from memory): within a few float32 ulps of torch's.
static inline vf gelu_v(vf x) {
    // erfc(z), z = |x| / sqrt 2, as t exp(-z^2 + P(t)), t = 1 / (1 + z / 2): Numerical Recipes'
    // Chebyshev fit, relative error < 1.2e-7 everywhere, so the negative tail stays accurate
    static const float c[10] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                                -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
    vf z = vmul(vabs(x), vset1(0.70710678f));
    vf t = vdiv(vset1(1.0f), vfma(z, vset1(0.5f), vset1(1.0f)));
    vf q = vset1(c[0]);
    for (int i = 1; i < 10; i++) q = vfma(q, t, vset1(c[i]));
    vf erfc = vmul(t, exp_neg(vfnma(z, z, q)));
    erfc = vblend(vgt(z, vset1(10.0f)), erfc, vzero());   // below float32's range there
    // 1 + erf(x / sqrt 2): 2 - erfc for x >= 0, erfc for x < 0
    vf one_plus = vblend(vlt(x, vzero()), vsub(vset1(2.0f), erfc), erfc);
    return vmul(vmul(x, vset1(0.5f)), one_plus);
}

void gelu_rows(float *y, long M, long ldy, long n0, long n1) {
    for (long m = 0; m < M; m++)
        for (long n = n0; n < n1; n += W) {
            vm mk = vtail(n1 - n);
            vstm(y + m * ldy + n, mk, gelu_v(vldm(mk, y + m * ldy + n)));
        }
}

// The residual sum of the layer after the projection, while the chunk is still in cache.
static void add_rows(float *y, long M, long ldy, const float *r, long ldr, long n0, long n1) {
    for (long m = 0; m < M; m++)
        for (long n = n0; n < n1; n += W) {
            vm mk = vtail(n1 - n);
            vstm(y + m * ldy + n, mk, vadd(vldm(mk, y + m * ldy + n), vldm(mk, r + m * ldr + n)));
        }
}

// Several weights of one input in one call (q/k/v, gate/up): y holds their outputs side by side,
// weight i's at column offset N_0 + ... + N_{i-1}; chunks of all weights share one thread team.
// Also refuses what the loops below cannot take (rows.py checks first; this keeps C safe alone).
int plan(int count, const long *Ns, long M, long K, long *first, long *col) {
    if (count < 1 || count > MAXW || M < 1 || M > ROWS_MAX || K < 1) return -1;
    first[0] = col[0] = 0;
    for (int i = 0; i < count; i++) {
        if (Ns[i] < 1) return -1;
        first[i + 1] = first[i] + (Ns[i] + NCHUNK - 1) / NCHUNK;
        col[i + 1] = col[i] + Ns[i];
    }
    return 0;
}

// Float32 post-ops: gelu (exact), then + res.
int linear_f32_n(const float *x, long M, long ldx, int count, const float *const *ws,
                 const float *const *bs, const long *Ns, long K, float *y, long ldy, int nthreads,
                 int gelu, const float *res, long ldr) {
    long first[MAXW + 1], col[MAXW + 1];
    if (plan(count, Ns, M, K, first, col)) return -1;
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
                for (long m = 0; m < M; m += MB_MAX)
                    B4[M - m < MB_MAX ? M - m : MB_MAX](x + m * ldx, ldx, w, K, yi + m * ldy, ldy, b, n, n1, k0, k1);
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

// Scratch per calling thread, kept between calls: *buf grown to at least bytes (NULL if that fails).
void *grow(void **buf, long *cap, long bytes) {
    if (bytes > *cap) {
        free(*buf);
        *buf = aligned_alloc(64, ((bytes + 63) / 64) * 64);
        *cap = *buf ? bytes : 0;
    }
    return *buf;
}
static __thread void *scratch;
static __thread long scratch_len;
float *scratch_floats(long n) { return grow(&scratch, &scratch_len, n * 4); }
