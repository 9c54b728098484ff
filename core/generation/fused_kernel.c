/* The fused WaveNet generation loop in C with AVX2/FMA: n cached steps, sampling included.
 *
 * core/generation/c_kernels.py compiles this file once per machine (gcc -O3 -mavx2 -mfma), with
 * kernel_common.h (the math, the float32 products and the sampler it shares with the PixelCNN
 * kernel), caches the shared library on disk; core/generation/fused.py calls `fused_run` through
 * ctypes. Every array comes from numpy, packed and zero-padded by core/generation/fused.py (with
 * c_kernels.py and fused_pack.py) so that every channel count is a multiple of 16:
 *
 *   matrices are "panelled": a (K, N) matrix is stored as N/16 panels, each (K, 16) row-major,
 *   so the micro-kernel streams every weight exactly once per step, in order.
 *   z = (K_conv * C_res inputs) x (2 C_dil outputs): columns in blocks of 16, each tanh block
 *   followed by its sigmoid block, so that one run of panels yields whole gates.
 *   out = C_dil x (C_res + C_skip): columns [residual | skip]; h and skip of a row are one
 *   contiguous vector hs = [h | skip] so one product updates both.
 *
 * Zero padding is exact: padded inputs are 0, padded z columns are 0 so their gates are
 * tanh(0) * sigmoid(0) = 0, and padded logits are never sampled.
 *
 * Threads: rows never interact, so at batch > 1 each thread runs its own rows with no
 * synchronisation. At batch 1 with several threads (opt-in from core/generation/fused.py) the threads
 * split each product's output panels and meet at a spin barrier twice per layer; that halves
 * the weights each core streams per sample.
 *
 * Precision (Model.precision): 0 = float32 weights, AVX2/FMA (every CPU the kernel runs on);
 * 1 = bfloat16 weights and inputs, products summed in float32 by AVX-512 `vdpbf16ps`;
 * 2 = int8 weights with a float32 scale per output column, each input vector quantised to
 * uint8 with its own scale and offset, products summed exactly in int32 by AVX-512 VNNI
 * `vpdpbusd`. Everything between products (biases, gates, residuals, head, sampling) stays
 * float32. The AVX-512 functions are compiled for that target only (`AVX512` below) and run
 * only where fused_cpu_features() reports it: core/generation/fused.py checks before it asks.
 * With Model.tiles set (a CPU with AMX-BF16 whose kernel lets this process use it), a bfloat16
 * product of AMX_MIN_ROWS rows or more runs on the AMX tile unit instead (`tdpbf16ps`: a block
 * of up to 16 rows times 32 inputs times one 16-column panel per instruction), with the same
 * bfloat16 operands and float32 sums; fewer rows stay on vdpbf16ps, which is as fast there.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#ifndef FUSED_NO_AVX512
#ifndef FUSED_NO_AMX
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

#include "kernel_common.h"

#define MAX_THREADS 16

typedef struct {
    int64_t batch, n_layers, kernel, k_in;
    int64_t c_res, c_dil, c_skip, c_head, q, q_pad; /* padded, but q: the real level count */
    int64_t precision;    /* 0 float32, 1 bfloat16, 2 int8: the element type of w_z, w_out, w1, w2 */
    const float *in_tab;  /* (k_in, q + 2, c_res) */
    const float *in_b;    /* (c_res) */
    const void *w_z;      /* (L, panels of kernel*c_res x 16 covering 2 c_dil) */
    const float *b_z;     /* (L, 2 c_dil) */
    const void *w_out;    /* (L, panels of c_dil x 16 covering c_res + c_skip) */
    const float *b_res;   /* (L, c_res) */
    const float *b_skip;  /* (c_skip): the skip biases of all layers, summed */
    const void *w1;       /* panels of c_skip x 16 covering c_head */
    const float *b1;      /* (c_head) */
    const void *w2;       /* panels of c_head x 16 covering q_pad */
    const float *b2;      /* (q_pad) */
    const int64_t *offs, *sizes, *dils; /* (L): ring offset, ring size (kernel-1)*d, dilation */
    float *buf;           /* (batch, sum sizes, c_res): each layer's past inputs */
    float *scratch;       /* (batch, 2 c_dil + c_dil + c_res + c_skip + c_head + q_pad): z, g, [h | skip], hid, logits */
    int64_t *tokens;      /* (batch, k_in): the input conv's last k_in tokens */
    int64_t *prev;        /* (batch): the last token */
    uint64_t *rng;        /* (batch): SplitMix64 state per row */
    /* int8 only, per output column of each matrix: the weight scale and the sum of the column's int8 weights */
    const float *s_z, *c_z, *s_out, *c_out, *s1, *c1, *s2, *c2;  /* (L, 2 c_dil), (L, c_res + c_skip), ... */
    int64_t tiles;        /* 1: bfloat16 products of AMX_MIN_ROWS rows or more on AMX tiles (fused_cpu_features & 4) */
} Model;

typedef struct {
    int64_t n, t0, cond_steps;     /* steps, time of the first, 1 or n conditioning rows */
    const float *cond;             /* (batch, cond_steps, L, 2 c_dil) added to z */
    const uint8_t *obs_mask;       /* (batch, n) */
    const int64_t *obs_val;        /* (batch, n) */
    double temperature;            /* 0 = greedy */
    int64_t top_k;                 /* 0 = all */
    int64_t *out;                  /* (batch, n) */
    float *logits_out;             /* (batch, n, q) or NULL */
    int64_t threads;
} Run;

/* ---------------------------------------------------------------- reduced-precision products (AVX-512) */

/* A compiler too old for these targets builds the file with -DFUSED_NO_AVX512: float32 only. */
#ifndef FUSED_NO_AVX512
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx512vnni")))

/* Panel layouts: bfloat16 panels are (k/2, 16 columns, 2 rows), so one 64-byte load holds
 * rows 2i and 2i+1 of all 16 columns, the operand of vdpbf16ps; int8 panels are (k/4, 16
 * columns, 4 rows) for vpdpbusd. An input vector is converted once per product into pairs of
 * bfloat16 (or quads of uint8), each read as one 32-bit word and broadcast to every column. */

/* y[m][16 (p + j) ..] += x[m] . W[:, panel p + j] for MR rows and NP panels, in bfloat16. */
#define TILE_BF16(MR, NP)                                                                      \
    AVX512 static inline void bf16_##MR##_##NP(int64_t pairs, const uint32_t *const *x, const uint16_t *w, \
                                               int64_t stride, float *const *y, int64_t p) {  \
        __m512 acc[MR * NP];                                                                   \
        w += p * stride;                                                                       \
        for (int m = 0; m < MR; m++)                                                           \
            for (int j = 0; j < NP; j++) acc[m * NP + j] = _mm512_loadu_ps(y[m] + (p + j) * PANEL); \
        for (int64_t i = 0; i < pairs; i++) {                                                  \
            __m512bh wv[NP];                                                                   \
            for (int j = 0; j < NP; j++) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * stride + i * 2 * PANEL); \
            for (int m = 0; m < MR; m++) {                                                     \
                const __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[m][i]);                 \
                for (int j = 0; j < NP; j++) acc[m * NP + j] = _mm512_dpbf16_ps(acc[m * NP + j], xv, wv[j]); \
            }                                                                                  \
        }                                                                                      \
        for (int m = 0; m < MR; m++)                                                           \
            for (int j = 0; j < NP; j++) _mm512_storeu_ps(y[m] + (p + j) * PANEL, acc[m * NP + j]); \
    }

/* The same in int8: int32 sums of uint8 inputs times int8 weights, then
 * y += scale_col * (x_scale * sum + x_lo * colsum_col), since x = x_lo + x_scale * x_u8. */
#define TILE_I8(MR, NP)                                                                        \
    AVX512 static inline void i8_##MR##_##NP(int64_t quads, const uint32_t *const *x, const float *xs, \
                                             const float *xlo, const int8_t *w, int64_t stride, \
                                             const float *scale, const float *colsum, float *const *y, int64_t p) { \
        __m512i acc[MR * NP];                                                                  \
        w += p * stride;                                                                       \
        for (int a = 0; a < MR * NP; a++) acc[a] = _mm512_setzero_si512();                     \
        for (int64_t i = 0; i < quads; i++) {                                                  \
            __m512i wv[NP];                                                                    \
            for (int j = 0; j < NP; j++) wv[j] = _mm512_loadu_si512(w + j * stride + i * 4 * PANEL); \
            for (int m = 0; m < MR; m++) {                                                     \
                const __m512i xv = _mm512_set1_epi32((int)x[m][i]);                            \
                for (int j = 0; j < NP; j++) acc[m * NP + j] = _mm512_dpbusd_epi32(acc[m * NP + j], xv, wv[j]); \
            }                                                                                  \
        }                                                                                      \
        for (int j = 0; j < NP; j++) {                                                         \
            const int64_t col = (p + j) * PANEL;                                               \
            const __m512 sc = _mm512_loadu_ps(scale + col), cs = _mm512_loadu_ps(colsum + col); \
            for (int m = 0; m < MR; m++) {                                                     \
                __m512 v = _mm512_fmadd_ps(_mm512_set1_ps(xs[m]), _mm512_cvtepi32_ps(acc[m * NP + j]), \
                                           _mm512_mul_ps(_mm512_set1_ps(xlo[m]), cs));          \
                _mm512_storeu_ps(y[m] + col, _mm512_fmadd_ps(sc, v, _mm512_loadu_ps(y[m] + col))); \
            }                                                                                  \
        }                                                                                      \
    }

#define TILES(T, MR) T(MR, 1) T(MR, 2) T(MR, 4)
TILES(TILE_BF16, 1) TILES(TILE_BF16, 2) TILES(TILE_BF16, 3) TILES(TILE_BF16, 4)
TILES(TILE_I8, 1) TILES(TILE_I8, 2) TILES(TILE_I8, 3) TILES(TILE_I8, 4)

/* Panels [p0, p1) for MR rows: four at a time, then two, then one. */
#define PANELS(KIND, MR, ...)                                                                  \
    do {                                                                                       \
        int64_t p = p0;                                                                        \
        for (; p + 4 <= p1; p += 4) KIND##_##MR##_4(__VA_ARGS__, p);                           \
        for (; p + 2 <= p1; p += 2) KIND##_##MR##_2(__VA_ARGS__, p);                           \
        for (; p < p1; p++) KIND##_##MR##_1(__VA_ARGS__, p);                                   \
    } while (0)

/* x[:k] -> k bfloat16 (round to nearest even), read as k/2 words; k is a multiple of 16. */
AVX512 static void to_bf16(const float *x, int64_t k, uint32_t *out) {
    for (int64_t i = 0; i < k; i += 16)
        _mm256_storeu_si256((__m256i *)((uint16_t *)out + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
}

/* x[:k] -> k uint8 with x ~ lo + scale * u (read as k/4 words): the range [min, max] in 255 steps. */
AVX512 static void to_u8(const float *x, int64_t k, uint32_t *out, float *scale, float *lo) {
    __m512 mn = _mm512_loadu_ps(x), mx = mn;
    for (int64_t i = 16; i < k; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        mn = _mm512_min_ps(mn, v);
        mx = _mm512_max_ps(mx, v);
    }
    /* A range under 1e-30 counts as constant (every u = 0): 1/s must stay finite. */
    const float a = _mm512_reduce_min_ps(mn), b = _mm512_reduce_max_ps(mx);
    const float s = b - a > 1e-30f ? (b - a) / 255.0f : 1.0f;
    const __m512 inv = _mm512_set1_ps(1.0f / s), a16 = _mm512_set1_ps(a);
    for (int64_t i = 0; i < k; i += 16) {
        const __m512i u = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), a16), inv));
        _mm_storeu_si128((__m128i *)((uint8_t *)out + i), _mm512_cvtusepi32_epi8(u));
    }
    *scale = s;
    *lo = a;
}

/* y[m] += x[m] . W over panels [p0, p1), W bfloat16; q: room for 4 converted rows of k/2 words. */
AVX512 static void matmul_bf16(int64_t rows, int64_t k, const float *const *x, const uint16_t *w, int64_t p0,
                               int64_t p1, float *const *y, uint32_t *q) {
    const int64_t stride = k * PANEL, pairs = k / 2;
    for (int64_t m = 0; m < rows; m += 4) {
        const int64_t mr = rows - m < 4 ? rows - m : 4;
        const uint32_t *xq[4];
        for (int64_t r = 0; r < mr; r++) {
            to_bf16(x[m + r], k, q + r * pairs);
            xq[r] = q + r * pairs;
        }
        float *const *ym = y + m;
        switch (mr) {
            case 1: PANELS(bf16, 1, pairs, xq, w, stride, ym); break;
            case 2: PANELS(bf16, 2, pairs, xq, w, stride, ym); break;
            case 3: PANELS(bf16, 3, pairs, xq, w, stride, ym); break;
            default: PANELS(bf16, 4, pairs, xq, w, stride, ym);
        }
    }
}

/* y[m] += x[m] . W over panels [p0, p1), W int8 with per-column scale and colsum. */
AVX512 static void matmul_i8(int64_t rows, int64_t k, const float *const *x, const int8_t *w, const float *scale,
                             const float *colsum, int64_t p0, int64_t p1, float *const *y, uint32_t *q) {
    const int64_t stride = k * PANEL, quads = k / 4;
    for (int64_t m = 0; m < rows; m += 4) {
        const int64_t mr = rows - m < 4 ? rows - m : 4;
        const uint32_t *xq[4];
        float xs[4], xlo[4];
        for (int64_t r = 0; r < mr; r++) {
            to_u8(x[m + r], k, q + r * quads, xs + r, xlo + r);
            xq[r] = q + r * quads;
        }
        float *const *ym = y + m;
        switch (mr) {
            case 1: PANELS(i8, 1, quads, xq, xs, xlo, w, stride, scale, colsum, ym); break;
            case 2: PANELS(i8, 2, quads, xq, xs, xlo, w, stride, scale, colsum, ym); break;
            case 3: PANELS(i8, 3, quads, xq, xs, xlo, w, stride, scale, colsum, ym); break;
            default: PANELS(i8, 4, quads, xq, xs, xlo, w, stride, scale, colsum, ym);
        }
    }
}

/* ---------------------------------------------------------------- bfloat16 products on AMX tiles */

/* A compiler that knows AVX-512 BF16 but not AMX builds the file with -DFUSED_NO_AMX. */
#ifndef FUSED_NO_AMX
#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define AMX_MIN_ROWS 4

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

static __thread int64_t tile_rows;  /* the row count this thread's tiles are configured for; 0 = none */

/* Tiles: 0 = C, mr rows x 16 float32 sums; 1 = A, mr rows x 32 bfloat16 inputs; 2 = B, 16 pairs of
 * weight rows x 16 columns (one panel's 64-byte rows, as vdpbf16ps reads them); 3 and 4 = A and B
 * for the last 16 inputs when k is an odd multiple of 16. */
AMX static void tiles_for(int64_t mr) {
    if (tile_rows == mr) return;
    TileConfig c = {.palette = 1};
    const uint8_t rows[5] = {mr, mr, 16, mr, 8};
    const uint16_t colsb[5] = {64, 64, 64, 32, 64};
    for (int i = 0; i < 5; i++) {
        c.rows[i] = rows[i];
        c.colsb[i] = colsb[i];
    }
    _tile_loadconfig(&c);
    tile_rows = mr;
}

AMX static void tiles_release(void) {
    if (tile_rows) _tile_release();
    tile_rows = 0;
}

/* y[m] += x[m] . W over panels [p0, p1), W bfloat16, blocks of up to 16 rows; q: room for 16 converted rows. */
AMX static void matmul_amx(int64_t rows, int64_t k, const float *const *x, const uint16_t *w, int64_t p0,
                           int64_t p1, float *const *y, uint32_t *q) {
    const int64_t stride = k * PANEL, pairs = k / 2, whole = k / 32;
    float sums[16 * PANEL] __attribute__((aligned(64)));
    for (int64_t m = 0; m < rows; m += 16) {
        const int64_t mr = rows - m < 16 ? rows - m : 16;
        for (int64_t r = 0; r < mr; r++) to_bf16(x[m + r], k, q + r * pairs);
        tiles_for(mr);
        for (int64_t p = p0; p < p1; p++) {
            const uint16_t *wp = w + p * stride;  /* 32 PANEL weights per 32 inputs */
            _tile_zero(0);
            for (int64_t i = 0; i < whole; i++) {
                _tile_loadd(1, (const char *)q + 64 * i, 4 * pairs);
                _tile_loadd(2, wp + 32 * PANEL * i, 64);
                _tile_dpbf16ps(0, 1, 2);
            }
            if (k % 32) {
                _tile_loadd(3, (const char *)q + 64 * whole, 4 * pairs);
                _tile_loadd(4, wp + 32 * PANEL * whole, 64);
                _tile_dpbf16ps(0, 3, 4);
            }
            _tile_stored(0, sums, 64);
            for (int64_t r = 0; r < mr; r++) {
                float *out = y[m + r] + p * PANEL;
                _mm512_storeu_ps(out, _mm512_add_ps(_mm512_loadu_ps(out), _mm512_load_ps(sums + r * PANEL)));
            }
        }
    }
}

/* AMX-BF16 on this CPU, and the kernel's leave for this process to use the tile registers (Linux 5.16+). */
static int amx_usable(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
}
#endif

#endif

/* One weight matrix of the model: panels at `w` (element type by Model.precision) and, for
 * int8, its columns' scales and sums. */
typedef struct {
    const void *w;
    const float *scale, *colsum;
} Mat;

/* Matrix l of a stack of k x cols matrices (l = 0 for one alone). */
static inline Mat mat(const Model *m, const void *w, const float *scale, const float *colsum, int64_t l, int64_t k,
                      int64_t cols) {
    static const int64_t bytes[] = {4, 2, 1};
    return (Mat){(const char *)w + l * k * cols * bytes[m->precision], scale + l * cols, colsum + l * cols};
}

/* y[m] += x[m] . W over panels [p0, p1) at the model's precision; q: a thread's conversion room. */
static void matmul(const Model *m, int64_t rows, int64_t k, const float *const *x, Mat w, int64_t p0, int64_t p1,
                   float *const *y, uint32_t *q) {
    if (p0 >= p1) return;
#ifndef FUSED_NO_AVX512
#ifndef FUSED_NO_AMX
    if (m->precision == 1 && m->tiles && rows >= AMX_MIN_ROWS) { matmul_amx(rows, k, x, w.w, p0, p1, y, q); return; }
#endif
    if (m->precision == 1) { matmul_bf16(rows, k, x, w.w, p0, p1, y, q); return; }
    if (m->precision == 2) { matmul_i8(rows, k, x, w.w, w.scale, w.colsum, p0, p1, y, q); return; }
#endif
    matmul_f32(rows, k, x, w.w, p0, p1, y);
}

/* ---------------------------------------------------------------- barrier */

typedef struct {
    int count __attribute__((aligned(64)));
    int sense __attribute__((aligned(64)));
} Barrier;

static void barrier_wait(Barrier *b, int64_t threads, int *local_sense) {
    if (threads == 1) return;
    *local_sense = !*local_sense;
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == threads) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, *local_sense, __ATOMIC_RELEASE);
        return;
    }
    for (int spins = 0; __atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != *local_sense; spins++) {
        _mm_pause();
        if (spins > 2000) sched_yield();  /* the other thread lost its core: stop burning ours */
    }
}

/* ---------------------------------------------------------------- the loop */

typedef struct {
    const Model *m;
    const Run *r;
    int64_t row0, rows;   /* the rows this worker runs */
    int64_t tid, threads; /* its share of every product's panels, among `threads` */
    Barrier *bar;
    int *go;              /* helper threads wait for 1 (run) or -1 (give up) */
} Work;

static inline void share(int64_t panels, int64_t tid, int64_t threads, int64_t *p0, int64_t *p1) {
    *p0 = panels * tid / threads;
    *p1 = panels * (tid + 1) / threads;
}

static void *steps(void *arg) {
    const Work *w = arg;
    if (w->tid > 0) {
        int go;
        while ((go = __atomic_load_n(w->go, __ATOMIC_ACQUIRE)) == 0) _mm_pause();
        if (go < 0) return NULL;
    }
    const Model *m = w->m;
    const Run *r = w->r;
    const int64_t rows = w->rows, tid = w->tid, nt = w->threads, L = m->n_layers, K = m->kernel;
    const int64_t cr = m->c_res, cd = m->c_dil, cs = m->c_skip, ch = m->c_head, qp = m->q_pad;
    const int64_t ring = m->offs[L - 1] + m->sizes[L - 1], hs_len = cr + cs;
    const int64_t per_row = 2 * cd + cd + hs_len + ch + qp;
    /* Shared per row (panel-splitting threads of batch 1 share row 0): z, g, [h | skip], hid, logits. */
    float **z = malloc(8 * rows * sizeof(float *));
    float **g = z + rows, **hs = g + rows, **hid = hs + rows, **lg = hid + rows;
    float **xz = lg + rows, **xs = xz + rows, **xh = xs + rows;
    /* Private: each row's conv input [past taps | now] and relu(skip), and a probability vector. */
    float *mine = malloc(((size_t)rows * (K * cr + cs) + qp) * sizeof(float));
    float *probs = mine + rows * (K * cr + cs);
    int64_t widest = K * cr;  /* the longest input of any product, for its bfloat16 or uint8 copies */
    if (cd > widest) widest = cd;
    if (cs > widest) widest = cs;
    if (ch > widest) widest = ch;
    uint32_t *q = malloc(8 * widest * sizeof(uint32_t));  /* 16 rows of bfloat16 pairs (AMX), or 4 of uint8 quads */
    for (int64_t i = 0; i < rows; i++) {
        float *s = m->scratch + (w->row0 + i) * per_row;
        z[i] = s; g[i] = s + 2 * cd; hs[i] = g[i] + cd; hid[i] = hs[i] + hs_len; lg[i] = hid[i] + ch;
        xz[i] = mine + i * (K * cr + cs); xs[i] = xz[i] + K * cr; xh[i] = hid[i];
    }
    int64_t zp0, zp1, op0, op1, hp0, hp1, lp0, lp1;
    share(cd / PANEL, tid, nt, &zp0, &zp1);   /* gate blocks: z panels [2 zp0, 2 zp1) */
    share(hs_len / PANEL, tid, nt, &op0, &op1);
    share(ch / PANEL, tid, nt, &hp0, &hp1);
    share(qp / PANEL, tid, nt, &lp0, &lp1);
    const int64_t c0 = op0 * PANEL < cr ? op0 * PANEL : cr, c1 = op1 * PANEL < cr ? op1 * PANEL : cr;
    int sense = 0;

    for (int64_t step = 0; step < r->n; step++) {
        const int64_t t = r->t0 + step;
        if (tid == 0) {  /* the input layer: K_in lookup-table rows, and the skip sum's bias */
            for (int64_t i = 0; i < rows; i++) {
                const int64_t b = w->row0 + i;
                int64_t *tok = m->tokens + b * m->k_in;
                memmove(tok, tok + 1, (m->k_in - 1) * sizeof(int64_t));
                tok[m->k_in - 1] = m->prev[b];
                float *h = hs[i];
                memcpy(h, m->in_b, cr * sizeof(float));
                for (int64_t k = 0; k < m->k_in; k++) {
                    const float *row = m->in_tab + (k * (m->q + 2) + tok[k]) * cr;
                    for (int64_t c = 0; c < cr; c++) h[c] += row[c];
                }
                memcpy(h + cr, m->b_skip, cs * sizeof(float));
            }
        }
        barrier_wait(w->bar, nt, &sense);
        for (int64_t l = 0; l < L; l++) {
            const int64_t off = m->offs[l], size = m->sizes[l], d = m->dils[l];
            for (int64_t i = 0; i < rows; i++) {  /* z = b + cond, and the input [past taps | now] */
                const int64_t b = w->row0 + i, ci = r->cond_steps == 1 ? 0 : step;
                const float *cond = r->cond + ((b * r->cond_steps + ci) * L + l) * 2 * cd;
                const float *bz = m->b_z + l * 2 * cd;
                for (int64_t c = 2 * PANEL * zp0; c < 2 * PANEL * zp1; c++) z[i][c] = bz[c] + cond[c];
                for (int64_t j = 1; j < K; j++)
                    memcpy(xz[i] + (j - 1) * cr, m->buf + (b * ring + off + (t - j * d + size) % size) * cr,
                           cr * sizeof(float));
                memcpy(xz[i] + (K - 1) * cr, hs[i], cr * sizeof(float));
            }
            matmul(m, rows, K * cr, (const float *const *)xz, mat(m, m->w_z, m->s_z, m->c_z, l, K * cr, 2 * cd),
                   2 * zp0, 2 * zp1, z, q);
            for (int64_t i = 0; i < rows; i++) gate(z[i], zp0, zp1, g[i]);
            barrier_wait(w->bar, nt, &sense);  /* every gate is known and every ring read is done */
            for (int64_t i = 0; i < rows; i++) {
                /* This step's input takes the oldest slot; each thread stores the h columns it owns. */
                float *slot = m->buf + ((w->row0 + i) * ring + off + t % size) * cr;
                memcpy(slot + c0, hs[i] + c0, (c1 - c0) * sizeof(float));
                const float *br = m->b_res + l * cr;
                for (int64_t c = c0; c < c1; c++) hs[i][c] += br[c];
            }
            matmul(m, rows, cd, (const float *const *)g, mat(m, m->w_out, m->s_out, m->c_out, l, cd, hs_len), op0, op1,
                   hs, q);
            barrier_wait(w->bar, nt, &sense);  /* h and skip are whole again */
        }
        for (int64_t i = 0; i < rows; i++) {  /* the head: relu, 1x1, relu, 1x1 */
            for (int64_t c = 0; c < cs; c++) xs[i][c] = relu(hs[i][cr + c]);
            memcpy(hid[i] + hp0 * PANEL, m->b1 + hp0 * PANEL, (hp1 - hp0) * PANEL * sizeof(float));
        }
        matmul(m, rows, cs, (const float *const *)xs, mat(m, m->w1, m->s1, m->c1, 0, cs, ch), hp0, hp1, hid, q);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t c = hp0 * PANEL; c < hp1 * PANEL; c++) hid[i][c] = relu(hid[i][c]);
        barrier_wait(w->bar, nt, &sense);
        for (int64_t i = 0; i < rows; i++)
            memcpy(lg[i] + lp0 * PANEL, m->b2 + lp0 * PANEL, (lp1 - lp0) * PANEL * sizeof(float));
        matmul(m, rows, ch, (const float *const *)xh, mat(m, m->w2, m->s2, m->c2, 0, ch, qp), lp0, lp1, lg, q);
        barrier_wait(w->bar, nt, &sense);
        if (tid == 0) {
            for (int64_t i = 0; i < rows; i++) {
                const int64_t b = w->row0 + i, at = b * r->n + step;
                if (r->logits_out) memcpy(r->logits_out + at * m->q, lg[i], m->q * sizeof(float));
                const int64_t x = r->obs_mask[at] ? r->obs_val[at]
                                                   : draw(lg[i], m->q, r->temperature, r->top_k, m->rng + b, probs);
                r->out[at] = x;
                m->prev[b] = x;
            }
        }
    }
#if !defined(FUSED_NO_AVX512) && !defined(FUSED_NO_AMX)
    if (m->tiles) tiles_release();
#endif
    free(q);
    free(mine);
    free(z);
    return NULL;
}

/* Run r->n steps for every row. */
void fused_run(const Model *m, const Run *r) {
    int64_t threads = r->threads < 1 ? 1 : (r->threads > MAX_THREADS ? MAX_THREADS : r->threads);
    if (threads > m->batch && m->batch > 1) threads = m->batch;
    const int split_rows = m->batch > 1;  /* else batch 1: the threads split its panels */
    Work work[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    Barrier bar = {0, 0};
    int go = 0;
    for (int64_t i = 0; i < threads; i++) {
        const int64_t a = m->batch * i / threads, b = m->batch * (i + 1) / threads;
        work[i] = split_rows ? (Work){m, r, a, b - a, 0, 1, &bar, &go}
                             : (Work){m, r, 0, 1, i, threads, &bar, &go};
    }
    int64_t started = 1;
    while (started < threads && pthread_create(&ids[started], NULL, steps, &work[started]) == 0) started++;
    if (started < threads && !split_rows) {  /* a panel worker is missing: run on one thread */
        __atomic_store_n(&go, -1, __ATOMIC_RELEASE);
        for (int64_t i = 1; i < started; i++) pthread_join(ids[i], NULL);
        work[0].threads = 1;
        started = 1;
    } else {
        __atomic_store_n(&go, 1, __ATOMIC_RELEASE);
    }
    steps(&work[0]);
    for (int64_t i = 1; i < started; i++) pthread_join(ids[i], NULL);
    for (int64_t i = started; i < threads && split_rows; i++) steps(&work[i]);  /* rows whose thread did not start */
}

int fused_cpu_ok(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

/* Which reduced-precision products this CPU runs: 1 = bfloat16 (AVX-512 BF16), 2 = int8 (AVX-512 VNNI),
 * 4 = bfloat16 on AMX tiles (asks the kernel for the tile registers once: the answer holds for the process). */
int fused_cpu_features(void) {
#ifdef FUSED_NO_AVX512
    return 0;
#else
    const int base = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                     && __builtin_cpu_supports("avx512vl");
    const int bf16 = base && __builtin_cpu_supports("avx512bf16");
    int tiles = 0;
#ifndef FUSED_NO_AMX
    static int amx = -1;
    if (amx < 0) amx = amx_usable();
    tiles = bf16 && amx;
#endif
    return (bf16 ? 1 : 0) | (base && __builtin_cpu_supports("avx512vnni") ? 2 : 0) | (tiles ? 4 : 0);
#endif
}
