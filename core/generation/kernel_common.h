/* What the C kernels of core/generation share: AVX2 math, the float32 panelled products and the sampler.
 *
 * Included by fused_kernel.c (WaveNet) and pixelcnn_kernel.c (PixelCNN); core/generation/c_kernels.py
 * hashes this file with each kernel's source, so a change here rebuilds both.
 *
 * Panels: a (K, N) matrix is stored as N/16 panels, each (K, 16) row-major, so the micro-kernel
 * streams every weight exactly once per product, in order. A gate's pre-activations come in blocks
 * of 16: each tanh block followed by its sigmoid block, so one run of panels yields whole gates.
 */
#ifndef KERNEL_COMMON_H
#define KERNEL_COMMON_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define PANEL 16

/* ---------------------------------------------------------------- math */

/* e^x for 8 lanes: x = k ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor polynomial
 * (relative error about 1e-7), 2^k put into the exponent bits. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static inline __m256 sigmoid8(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* Gates of blocks [p0, p1): g[16 p + i] = tanh(a) sigmoid(b) with a = z[32 p + i], b = z[32 p + 16 + i];
 * tanh(a) = 2 sigmoid(2a) - 1. */
static void gate(const float *z, int64_t p0, int64_t p1, float *g) {
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f);
    for (int64_t p = p0; p < p1; p++)
        for (int64_t i = 0; i < PANEL; i += 8) {
            __m256 a = _mm256_loadu_ps(z + 2 * PANEL * p + i), b = _mm256_loadu_ps(z + 2 * PANEL * p + PANEL + i);
            __m256 th = _mm256_fmsub_ps(two, sigmoid8(_mm256_mul_ps(two, a)), one);
            _mm256_storeu_ps(g + PANEL * p + i, _mm256_mul_ps(th, sigmoid8(b)));
        }
}

/* ---------------------------------------------------------------- products */

/* y[m][16 p ..] += x[m][:k] . W[:, panel p] for MR rows and NP consecutive panels, all of
 * the MR x 16 NP accumulators in registers. */
#define TILE(MR, NP)                                                                           \
    static inline void tile_##MR##_##NP(int64_t k, const float *const *x, const float *w,     \
                                        int64_t stride, float *const *y, int64_t col) {       \
        __m256 acc[MR * 2 * NP];                                                               \
        for (int m = 0; m < MR; m++)                                                           \
            for (int j = 0; j < 2 * NP; j++) acc[m * 2 * NP + j] = _mm256_loadu_ps(y[m] + col + 8 * j); \
        for (int64_t i = 0; i < k; i++) {                                                      \
            __m256 wv[2 * NP];                                                                 \
            for (int j = 0; j < NP; j++) {                                                     \
                wv[2 * j] = _mm256_loadu_ps(w + j * stride + i * PANEL);                        \
                wv[2 * j + 1] = _mm256_loadu_ps(w + j * stride + i * PANEL + 8);                \
            }                                                                                  \
            for (int m = 0; m < MR; m++) {                                                     \
                __m256 xv = _mm256_broadcast_ss(x[m] + i);                                     \
                for (int j = 0; j < 2 * NP; j++) acc[m * 2 * NP + j] = _mm256_fmadd_ps(xv, wv[j], acc[m * 2 * NP + j]); \
            }                                                                                  \
        }                                                                                      \
        for (int m = 0; m < MR; m++)                                                           \
            for (int j = 0; j < 2 * NP; j++) _mm256_storeu_ps(y[m] + col + 8 * j, acc[m * 2 * NP + j]); \
    }
TILE(1, 1) TILE(1, 2) TILE(1, 4) TILE(2, 1) TILE(2, 2) TILE(3, 1)

/* Four rows by one panel, written out: from the array form gcc spills these accumulators. */
static inline void tile_4_1(int64_t k, const float *const *x, const float *w, float *const *y, int64_t col) {
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    __m256 a0 = _mm256_loadu_ps(y[0] + col), a1 = _mm256_loadu_ps(y[0] + col + 8);
    __m256 b0 = _mm256_loadu_ps(y[1] + col), b1 = _mm256_loadu_ps(y[1] + col + 8);
    __m256 c0 = _mm256_loadu_ps(y[2] + col), c1 = _mm256_loadu_ps(y[2] + col + 8);
    __m256 d0 = _mm256_loadu_ps(y[3] + col), d1 = _mm256_loadu_ps(y[3] + col + 8);
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = _mm256_loadu_ps(w + i * PANEL), w1 = _mm256_loadu_ps(w + i * PANEL + 8);
        __m256 v = _mm256_broadcast_ss(x0 + i);
        a0 = _mm256_fmadd_ps(v, w0, a0); a1 = _mm256_fmadd_ps(v, w1, a1);
        v = _mm256_broadcast_ss(x1 + i);
        b0 = _mm256_fmadd_ps(v, w0, b0); b1 = _mm256_fmadd_ps(v, w1, b1);
        v = _mm256_broadcast_ss(x2 + i);
        c0 = _mm256_fmadd_ps(v, w0, c0); c1 = _mm256_fmadd_ps(v, w1, c1);
        v = _mm256_broadcast_ss(x3 + i);
        d0 = _mm256_fmadd_ps(v, w0, d0); d1 = _mm256_fmadd_ps(v, w1, d1);
    }
    _mm256_storeu_ps(y[0] + col, a0); _mm256_storeu_ps(y[0] + col + 8, a1);
    _mm256_storeu_ps(y[1] + col, b0); _mm256_storeu_ps(y[1] + col + 8, b1);
    _mm256_storeu_ps(y[2] + col, c0); _mm256_storeu_ps(y[2] + col + 8, c1);
    _mm256_storeu_ps(y[3] + col, d0); _mm256_storeu_ps(y[3] + col + 8, d1);
}

/* y[m] += x[m] . W over panels [p0, p1) for m < rows; W has k rows. */
static void matmul_f32(int64_t rows, int64_t k, const float *const *x, const float *w, int64_t p0, int64_t p1,
                       float *const *y) {
    const int64_t stride = k * PANEL;
    for (int64_t m = 0; m < rows; m += 4) {
        const int64_t mr = rows - m < 4 ? rows - m : 4;
        const float *const *xm = x + m;
        float *const *ym = y + m;
        int64_t p = p0;
        if (mr == 1) {
            for (; p + 4 <= p1; p += 4) tile_1_4(k, xm, w + p * stride, stride, ym, p * PANEL);
            for (; p + 2 <= p1; p += 2) tile_1_2(k, xm, w + p * stride, stride, ym, p * PANEL);
            for (; p < p1; p++) tile_1_1(k, xm, w + p * stride, stride, ym, p * PANEL);
        } else if (mr == 2) {
            for (; p + 2 <= p1; p += 2) tile_2_2(k, xm, w + p * stride, stride, ym, p * PANEL);
            for (; p < p1; p++) tile_2_1(k, xm, w + p * stride, stride, ym, p * PANEL);
        } else if (mr == 3) {
            for (; p < p1; p++) tile_3_1(k, xm, w + p * stride, stride, ym, p * PANEL);
        } else {
            for (; p < p1; p++) tile_4_1(k, xm, w + p * stride, ym, p * PANEL);
        }
    }
}

/* ---------------------------------------------------------------- sampling */

static inline double uniform(uint64_t *state) {  /* SplitMix64 -> [0, 1) */
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* The k-th largest of v[:q] (quickselect on the copy `tmp`). */
static float kth_largest(const float *v, int64_t q, int64_t k, float *tmp) {
    memcpy(tmp, v, q * sizeof(float));
    int64_t lo = 0, hi = q - 1, want = k - 1;
    while (lo < hi) {
        float pivot = tmp[(lo + hi) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (tmp[i] > pivot) i++;
            while (tmp[j] < pivot) j--;
            if (i <= j) { float s = tmp[i]; tmp[i] = tmp[j]; tmp[j] = s; i++; j--; }
        }
        if (want <= j) hi = j; else if (want >= i) lo = i; else break;
    }
    return tmp[want];
}

/* One draw from softmax(logits / T) over the top k levels, by inverse CDF; probs: q_pad floats. */
static int64_t draw(const float *logits, int64_t q, double temperature, int64_t top_k, uint64_t *rng,
                    float *probs) {
    int64_t best = 0;
    for (int64_t c = 1; c < q; c++) if (logits[c] > logits[best]) best = c;
    if (temperature == 0.0) return best;
    const float cut = (top_k > 0 && top_k < q) ? kth_largest(logits, q, top_k, probs) : -INFINITY;
    const __m256 top = _mm256_set1_ps(logits[best]), inv_t = _mm256_set1_ps((float)(1.0 / temperature));
    const __m256 cut8 = _mm256_set1_ps(cut);
    int64_t c = 0;
    for (; c + 8 <= q; c += 8) {
        __m256 l = _mm256_loadu_ps(logits + c);
        __m256 p = exp8(_mm256_mul_ps(_mm256_sub_ps(l, top), inv_t));
        _mm256_storeu_ps(probs + c, _mm256_and_ps(p, _mm256_cmp_ps(l, cut8, _CMP_GE_OQ)));
    }
    for (; c < q; c++) {  /* the last q mod 8 levels, through one padded lane vector */
        float lane[8] = {0}, out[8];
        lane[0] = logits[c];
        __m256 p = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(lane), top), inv_t));
        _mm256_storeu_ps(out, p);
        probs[c] = logits[c] >= cut ? out[0] : 0.0f;
    }
    double total = 0.0;
    for (c = 0; c < q; c++) total += probs[c];
    const double u = uniform(rng) * total;
    double acc = 0.0;
    int64_t last = best;
    for (c = 0; c < q; c++) {
        if (probs[c] == 0.0f) continue;
        acc += probs[c];
        last = c;
        if (u < acc) return c;
    }
    return last;  /* u landed past the end by rounding: the last allowed level */
}

static inline float relu(float v) { return v > 0 ? v : 0; }

#endif
