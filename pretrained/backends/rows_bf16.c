// bfloat16 linear layers on a few rows (M <= 16): y[m, n] = bf16(sum_k x[m, k] w[n, k] + b[n]),
// products and sums in float32, rounded to bfloat16 once at the end (to nearest even, as torch).
// Two kernels: vdpbf16ps (AVX512-BF16: AMD Zen 4 and later, Intel since Cooper Lake) on any K,
// and AMX tiles (Intel since Sapphire Rapids) for more than 4 rows where K % 32 == 0 and Linux
// grants the tile state.
#include <omp.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels.h"

#if defined(__AVX512BF16__)
EXPORT int has_bf16(void) { return 1; }

// ---- vdpbf16ps --------------------------------------------------------------------------------
// As the float32 kernel: blocks of 4 weight rows x up to 6 input rows, 24 zmm accumulators of 16
// float32 lanes, each vdpbf16ps adding the products of 32 bfloat16 pairs; k in chunks of KCHUNK
// (the same bytes as the float32 kernel's chunk) so the chunk of x stays in L1. Partial sums
// wait in a float32 block t (M x NCHUNK) of the thread's: y is only written once, rounded.
#define KCHUNK 768

static inline __mmask32 tail32(long r) { return r >= 32 ? 0xffffffffu : (1u << r) - 1; }
static inline __m512bh ld32(const uint16_t *p, __mmask32 mk) { return (__m512bh)_mm512_maskz_loadu_epi16(mk, p); }

#define DEFD(MB)                                                                              \
static void d4_##MB(const uint16_t *x, long ldx, const uint16_t *w, long K, float *t, long n,  \
                    long nt, long nend, long k0, long k1) {                                    \
    const uint16_t *pw = w + (n + 4 < nend ? n + 4 : n) * K; /* next block */                 \
    __m512 acc[MB][4];                                                                         \
    for (int i = 0; i < MB; i++) for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();  \
    long k = k0;                                                                               \
    for (; k + 32 <= k1; k += 32) {                                                            \
        __m512bh wv[4];                                                                        \
        for (int j = 0; j < 4; j++) { wv[j] = (__m512bh)_mm512_loadu_si512(w + (n + j) * K + k); \
            _mm_prefetch((const char *)(pw + j * K + k), _MM_HINT_T1); }                       \
        for (int i = 0; i < MB; i++) { __m512bh xv = (__m512bh)_mm512_loadu_si512(x + i * ldx + k); \
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]); }  \
    }                                                                                          \
    if (k < k1) {   /* masked: the products past k1 are 0 */                                   \
        __mmask32 mk = tail32(k1 - k);                                                         \
        __m512bh wv[4];                                                                        \
        for (int j = 0; j < 4; j++) wv[j] = ld32(w + (n + j) * K + k, mk);                    \
        for (int i = 0; i < MB; i++) { __m512bh xv = ld32(x + i * ldx + k, mk);                \
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv, wv[j]); }  \
    }                                                                                          \
    for (int i = 0; i < MB; i++) {                                                             \
        __m128 s = hsum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);                          \
        float *tp = t + i * NCHUNK + nt;                                                       \
        _mm_storeu_ps(tp, k0 == 0 ? s : _mm_add_ps(_mm_loadu_ps(tp), s));                      \
    }                                                                                          \
}
DEFD(1) DEFD(2) DEFD(3) DEFD(4) DEFD(5) DEFD(6)
typedef void (*dblk)(const uint16_t *, long, const uint16_t *, long, float *, long, long, long, long, long);
static const dblk D4[7] = {0, d4_1, d4_2, d4_3, d4_4, d4_5, d4_6};

// Outputs n0..n1 (at most NCHUNK) of all M rows, + bias, rounded into y.
static void dp_chunk(const uint16_t *x, long M, long ldx, const uint16_t *w, long K,
                     const uint16_t *b, uint16_t *y, long ldy, long n0, long n1) {
    float t[ROWS_MAX * NCHUNK];
    for (long k0 = 0; k0 < K; k0 += KCHUNK) {
        long k1 = k0 + KCHUNK < K ? k0 + KCHUNK : K, n = n0;
        for (; n + 4 <= n1; n += 4)
            for (long m = 0; m < M; m += 6)
                D4[M - m < 6 ? M - m : 6](x + m * ldx, ldx, w, K, t + m * NCHUNK, n, n - n0, n1, k0, k1);
        for (; n < n1; n++)   // the N % 4 past the blocks
            for (long m = 0; m < M; m++) {
                __m512 a = _mm512_setzero_ps();
                for (long k = k0; k < k1; k += 32) {
                    __mmask32 mk = tail32(k1 - k);
                    a = _mm512_dpbf16_ps(a, ld32(x + m * ldx + k, mk), ld32(w + n * K + k, mk));
                }
                float s = _mm512_reduce_add_ps(a);
                t[m * NCHUNK + n - n0] = k0 == 0 ? s : t[m * NCHUNK + n - n0] + s;
            }
    }
    for (long m = 0; m < M; m++)
        for (long n = n0; n < n1; n += 16) {
            __mmask16 mk = vtail(n1 - n);
            __m512 v = _mm512_maskz_loadu_ps(mk, t + m * NCHUNK + n - n0);
            if (b) v = _mm512_add_ps(v, ldbf(b + n, mk));
            stbf(y + m * ldy + n, mk, v);
        }
}

static void dp_linear_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                        const uint16_t *const *bs, const long *Ns, long K, uint16_t *y,
                        const long *first, const long *col, long ldy, int nthreads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (long c = 0; c < first[count]; c++) {
        int i = 0;
        while (c >= first[i + 1]) i++;
        long n0 = (c - first[i]) * NCHUNK, n1 = n0 + NCHUNK < Ns[i] ? n0 + NCHUNK : Ns[i];
        dp_chunk(x, M, ldx, ws[i], K, bs[i], y + col[i], ldy, n0, n1);
    }
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
// ---- AMX tiles --------------------------------------------------------------------------------
// C^T = W x^T on tiles: A = 16 weight rows x 32 k, loaded straight from the weight; B = x re-laid
// out once per call in pairs of k (the tiles' VNNI layout); C = 16 features x 16 rows, float32.
// Accumulates in the order oneDNN's bf16 matmul does here: equal to F.linear bit for bit in tests.
// Needs K % 32 == 0; the N % 16 rows past the last tile take the vdpbf16ps kernel.
static int tiles_granted;
EXPORT int has_amx(void) { return 1; }
EXPORT int amx_init(void) {  // ask Linux for the AMX tile state; 0 on success
    tiles_granted = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
    return tiles_granted ? 0 : -1;
}
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } tilecfg;

static int amx_linear_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                        const uint16_t *const *bs, const long *Ns, long K, uint16_t *y,
                        const long *first, const long *col, long ldy, int nthreads) {
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
                        stbf(yi + m * ldy + n, 0xffff, _mm512_add_ps(cm, bias));
                    }
                }
            }
            if (c == first[i + 1] - 1 && blocks * 16 < Ns[i])   // the last chunk also takes the rest
                dp_chunk(x, M, ldx, w, K, b, yi, ldy, blocks * 16, Ns[i]);
        }
        _tile_release();
    }
    free(xb);
    return 0;
}
#else
EXPORT int has_amx(void) { return 0; }
EXPORT int amx_init(void) { return -1; }
#endif

int linear_bf16_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                  const uint16_t *const *bs, const long *Ns, long K, uint16_t *y, long ldy,
                  int nthreads) {
    long first[MAXW + 1], col[MAXW + 1];
    if (plan(count, Ns, M, K, first, col)) return -1;
#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
    // up to 4 rows the dot products stream the weight faster than the tiles, which pay for
    // re-laying x out and for rows of C they leave empty (SmolLM2's 210 decode projections,
    // weights from memory: 9.4 vs 11.1 ms at 1 row, 11.0 vs 11.7 at 4, 13.3 vs 12.3 at 6)
    if (tiles_granted && K % 32 == 0 && M > 4)
        return amx_linear_n(x, M, ldx, count, ws, bs, Ns, K, y, first, col, ldy, nthreads);
#endif
    dp_linear_n(x, M, ldx, count, ws, bs, Ns, K, y, first, col, ldy, nthreads);
    return 0;
}

int linear_bf16(const uint16_t *x, long M, long ldx, const uint16_t *w, long N, long K,
                const uint16_t *b, uint16_t *y, long ldy, int nthreads) {
    return linear_bf16_n(x, M, ldx, 1, &w, &b, &N, K, y, ldy, nthreads);
}
#else
// No bfloat16 here (build.py reads has_bf16 and leaves bfloat16 to PyTorch).
EXPORT int has_bf16(void) { return 0; }
EXPORT int has_amx(void) { return 0; }
EXPORT int amx_init(void) { return -1; }
EXPORT int linear_bf16_n(const uint16_t *x, long M, long ldx, int count, const uint16_t *const *ws,
                         const uint16_t *const *bs, const long *Ns, long K, uint16_t *y, long ldy,
                         int nthreads) { return -1; }
EXPORT int linear_bf16(const uint16_t *x, long M, long ldx, const uint16_t *w, long N, long K,
                       const uint16_t *b, uint16_t *y, long ldy, int nthreads) { return -1; }
#endif
