/* The particle filter of the FIVO paper's two models in C: every step of the model (core/models/vrnn.py or
 * srnn.py) and of the SMC engine (core/inference/smc.py) for a whole batch of sequences, forward and backward,
 * for core/inference/fused_filter.py. It computes what those compute, in float32 with the weights'
 * bookkeeping in double, without one Python or autograd call per timestep.
 *
 * Sizes: B sequences, N particles, R = N * B rows (particle-major: row n * B + b), T steps, H the
 * latent size (the LSTM, the latent and every MLP's hidden layer; a multiple of 16), D the frame size,
 * E the emission's outputs (D logits, or D means then D raw deviations) and EP = E padded to 16.
 *
 * Forward, per step t and row r (sequence b). The backbone gives a = [prior | proposal | emission] (3H), the
 * first-layer terms of the three MLPs that do not read z_t:
 *   VRNN (lstm = 1): rec = [enc_z, h] of the previous step (after resampling)                       (2H)
 *         gates = seq[b, t] + rec . W_rec; i, f, g, o = sig, sig, tanh, sig; c = f c_prev + i g; h = o tanh(c)
 *         a = h . W_fh + b_fh, its proposal block plus c_term[b, t]
 *   SRNN (lstm = 0): rec = enc_z of the previous step; a = seq[b, t] + [rec . W_rec | 0]  (its LSTM reads
 *         the data only, so seq holds every term that reads h_t or c_t, for all t at once)
 * then, alike:
 *   p = relu(a_prior) . W_p + b_p = [mu_p | raw sd_p];  q likewise from a_proposal = [offset | raw sd_q]
 *   z = mu_p + offset + sd_q eps;  log_ratio = sum log(sd_q / sd_p) - u^2 / 2 + eps^2 / 2, u = (z - mu_p) / sd_p
 *   e1 = z . W_ei + b_ei;  enc_z = relu(e1) . W_eo + b_eo;  eh = a_emission + enc_z . W_ez
 *   par = relu(eh) . W_em + b_em;  increment = log p(x[b, t] | par) + log_ratio
 * then the engine's bookkeeping per sequence: weights accumulate, masked past the sequence's end; the ESS
 * criterion decides; ancestors are drawn from the given uniforms (multinomial: one per particle,
 * systematic: one per sequence) by inverse CDF; the state (enc_z, and the VRNN's h, c) is gathered by them.
 * sd = softplus(raw) everywhere (the 0.5 offsets are in the biases), except the Gaussian emission's
 * softplus(raw + 0.5).
 *
 * Everything the backward pass reads is saved per step (T, R, ...); without one, one step's worth is reused.
 * The backward pass walks the steps in reverse and writes, per step, the gradient of log p-hat with respect
 * to each layer's output (dY); the Python side turns those into weight gradients with one matrix product per
 * layer over all steps.
 * Weights arrive as panels (core/generation/kernel_common.h); each also transposed for the backward.
 */
#include <stdlib.h>

#include "../generation/kernel_common.h"

typedef struct {
    int64_t B, T, N, H, D, E, EP, gaussian, mode; /* mode: 0 never resample, 1 multinomial, 2 systematic */
    int64_t lstm;                                 /* 1: the VRNN's backbone, 0: the SRNN's (see the top) */
    int64_t saved_steps;                          /* T when a backward pass follows, else 1 (scratch) */
    double threshold;                             /* resample when sum w^2 >= 1 / (threshold N) */
    const int64_t *lengths;                       /* (B) */
    const float *seq, *c_term, *x, *eps, *uniforms; /* (B,T,4H or 3H) (B,T,H) (B,T,D) (T,R,H) (T,B,N) or (T,B) */
    const float *w_rec, *w_fh, *w_p, *w_q, *w_ei, *w_eo, *w_ez, *w_em; /* panels of (in, out) */
    const float *t_rec, *t_fh, *t_p, *t_q, *t_ei, *t_eo, *t_ez, *t_em; /* panels of (out, in) */
    const float *b_fh, *b_p, *b_q, *b_ei, *b_eo, *b_em;                /* biases, b_em padded to EP */
    /* saved by the forward pass, (T, R, ...) */
    float *rec, *c_prev, *gates, *c, *h, *a, *p, *q, *z, *e1, *enc_z, *eh, *par;
    float *log_w;     /* (T, N, B) weights since the last resampling, before any reset */
    float *log_w_end; /* (N, B) the weights left after the last step */
    uint8_t *flags;   /* (T, B) resampled after step t */
    int64_t *ancestors; /* (T, N, B) */
    double *log_p_hat;  /* (B) */
    /* the backward pass: grad (B) in, dY (T, R, ...) out */
    const float *grad;
    float *d_gates, *d_a, *d_p, *d_q, *d_e1, *d_enc_z, *d_eh, *d_par;
} Filter;

static inline float softplus(float v) { return v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v)); }
static inline float sig(float v) { return 1.0f / (1.0f + expf(-v)); }

/* ------------------------------------------------ 8-lane math (exp8 and sigmoid8 are kernel_common.h's) */

#define SET(v) _mm256_set1_ps(v)

/* 2 atanh(s) for |s| <= 1/3 by its odd series to s^15 (error below 1e-9): log((1 + s) / (1 - s)). */
static inline __m256 two_atanh8(__m256 s) {
    const __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = SET(1.0f / 15);
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 13));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 11));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 9));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 7));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 5));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f / 3));
    p = _mm256_fmadd_ps(p, s2, SET(1.0f));
    return _mm256_mul_ps(_mm256_mul_ps(SET(2.0f), s), p);
}

/* log x for normal positive x: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh((m - 1) / (m + 1)). */
static inline __m256 log8(__m256 x) {
    const __m256i bits = _mm256_castps_si256(x);
    const __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x7fffff)),
                                                   _mm256_set1_epi32(0x3f800000)));
    const __m256 big = _mm256_cmp_ps(m, SET(1.41421356f), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, SET(0.5f)), big);
    const __m256 ef = _mm256_add_ps(_mm256_cvtepi32_ps(e), _mm256_and_ps(big, SET(1.0f)));
    const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, SET(1.0f)), _mm256_add_ps(m, SET(1.0f)));
    return _mm256_fmadd_ps(ef, SET(0.69314718f), two_atanh8(s));
}

/* softplus(v) = max(v, 0) + log(1 + a), a = e^-|v| in (0, 1], through 2 atanh(a / (2 + a)): exact for tiny a. */
static inline __m256 softplus8(__m256 v) {
    const __m256 a = exp8(_mm256_or_ps(v, SET(-0.0f)));
    const __m256 log1p_a = two_atanh8(_mm256_div_ps(a, _mm256_add_ps(SET(2.0f), a)));
    return _mm256_add_ps(_mm256_max_ps(v, _mm256_setzero_ps()), log1p_a);
}

static inline __m256 tanh8(__m256 v) {
    return _mm256_fmsub_ps(SET(2.0f), sigmoid8(_mm256_mul_ps(SET(2.0f), v)), SET(1.0f));
}

static inline float sum8(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

/* y[r] = init[r] (or 0), then y[r] += x[r] . W for R rows of strides sx, sy: W panels of (k, n). */
static void product(int64_t R, int64_t k, int64_t n, const float *x, int64_t sx, const float *w, float *y, int64_t sy,
                    const float *init, int64_t s_init, const float **xp, float **yp) {
    for (int64_t r = 0; r < R; r++) {
        xp[r] = x + r * sx;
        yp[r] = y + r * sy;
        if (init) memcpy(yp[r], init + r * s_init, n * sizeof(float));
        else memset(yp[r], 0, n * sizeof(float));
    }
    matmul_f32(R, k, xp, w, 0, n / PANEL, yp);
}

static void relu_rows(int64_t R, int64_t n, const float *x, int64_t sx, float *y) {
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < n; j++) y[r * n + j] = relu(x[r * sx + j]);
}

/* log-sum-exp of the N weights of sequence b, column b of (N, B) */
static double log_sum_exp(const float *w, int64_t N, int64_t B, int64_t b) {
    double top = -INFINITY, s = 0;
    for (int64_t n = 0; n < N; n++) top = w[n * B + b] > top ? w[n * B + b] : top;
    for (int64_t n = 0; n < N; n++) s += exp(w[n * B + b] - top);
    return top + log(s);
}

/* Normalised weights of column b into cdf as a running sum (cdf[N-1] = 1); returns sum w^2. */
static double weights_cdf(const float *w, int64_t N, int64_t B, int64_t b, double *cdf) {
    const double lse = log_sum_exp(w, N, B, b);
    double acc = 0, s2 = 0;
    for (int64_t n = 0; n < N; n++) {
        const double wn = exp(w[n * B + b] - lse);
        acc += wn;
        s2 += wn * wn;
        cdf[n] = acc;
    }
    for (int64_t n = 0; n < N; n++) cdf[n] /= acc;
    return s2;
}

/* The first i with cdf[i] > u (u in [0, 1), cdf[N-1] = 1). */
static int64_t lookup(const double *cdf, int64_t N, double u) {
    int64_t lo = 0, hi = N - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi) / 2;
        if (cdf[mid] > u) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* The LSTM cell's nonlinearities for R rows: gate pre-activations G (R, 4H) -> activated gates, c, h. */
static void lstm_cell(int64_t R, int64_t H, const float *G, const float *c_prev, float *gates, float *c, float *h) {
    for (int64_t r = 0; r < R; r++) {
        const float *g = G + r * 4 * H;
        float *act = gates + r * 4 * H;
        for (int64_t j = 0; j < H; j += 8) {
            __m256 i = sigmoid8(_mm256_loadu_ps(g + j)), f = sigmoid8(_mm256_loadu_ps(g + H + j));
            __m256 u = tanh8(_mm256_loadu_ps(g + 2 * H + j));
            __m256 o = sigmoid8(_mm256_loadu_ps(g + 3 * H + j));
            __m256 cn = _mm256_fmadd_ps(f, _mm256_loadu_ps(c_prev + r * H + j), _mm256_mul_ps(i, u));
            _mm256_storeu_ps(act + j, i);
            _mm256_storeu_ps(act + H + j, f);
            _mm256_storeu_ps(act + 2 * H + j, u);
            _mm256_storeu_ps(act + 3 * H + j, o);
            _mm256_storeu_ps(c + r * H + j, cn);
            _mm256_storeu_ps(h + r * H + j, _mm256_mul_ps(o, tanh8(cn)));
        }
    }
}

/* log p(x | par) of one row: eight frame values at a time, the last D mod 8 one by one. */
static float emission_log_prob(const Filter *F, const float *par, const float *x) {
    const int64_t D = F->D, D8 = D / 8 * 8;
    __m256 acc = _mm256_setzero_ps();
    double s = 0;
    if (F->gaussian) {
        for (int64_t d = 0; d < D8; d += 8) {
            const __m256 sd = softplus8(_mm256_add_ps(_mm256_loadu_ps(par + D + d), SET(0.5f)));
            const __m256 u = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(par + d)), sd);
            acc = _mm256_sub_ps(acc, _mm256_fmadd_ps(SET(0.5f), _mm256_mul_ps(u, u), log8(sd)));
        }
        for (int64_t d = D8; d < D; d++) {
            const float sd = softplus(par[D + d] + 0.5f), u = (x[d] - par[d]) / sd;
            s += -0.5f * u * u - logf(sd);
        }
        return (float)(s + sum8(acc) - 0.91893853320467274 * D);
    }
    for (int64_t d = 0; d < D8; d += 8) {
        const __m256 l = _mm256_loadu_ps(par + d);
        acc = _mm256_add_ps(acc, _mm256_fmsub_ps(_mm256_loadu_ps(x + d), l, softplus8(l)));
    }
    for (int64_t d = D8; d < D; d++) s += x[d] * par[d] - softplus(par[d]);
    return (float)(s + sum8(acc));
}

#define AT(name, t, width) (F->name + (t) * R * (width))
/* A saved array's step t: every step's when training (saved_steps = T), else one step's, reused. */
#define SAVED(name, t, width) (F->name + ((t) % F->saved_steps) * R * (width))

/* The VRNN's backbone at step t: the LSTM over rec = [enc_z, h] of the previous step (state after resampling),
 * then a = h . W_fh + b_fh with c_term[b, t] added to its proposal block. */
static void lstm_backbone(const Filter *F, int64_t t, const float *st_h, const float *st_c, const float *st_ez,
                          float *G, const float **xp, float **yp) {
    const int64_t B = F->B, R = F->N * B, H = F->H, T = F->T;
    float *rec = SAVED(rec, t, 2 * H), *cp = SAVED(c_prev, t, H), *c = SAVED(c, t, H), *h = SAVED(h, t, H);
    float *a = SAVED(a, t, 3 * H);
    for (int64_t r = 0; r < R; r++) {
        memcpy(rec + r * 2 * H, st_ez + r * H, H * 4);
        memcpy(rec + r * 2 * H + H, st_h + r * H, H * 4);
        memcpy(cp + r * H, st_c + r * H, H * 4);
        memcpy(G + r * 4 * H, F->seq + ((r % B) * T + t) * 4 * H, 4 * H * 4);
    }
    for (int64_t r = 0; r < R; r++) { xp[r] = rec + r * 2 * H; yp[r] = G + r * 4 * H; }
    matmul_f32(R, 2 * H, xp, F->w_rec, 0, 4 * H / PANEL, yp);
    lstm_cell(R, H, G, cp, SAVED(gates, t, 4 * H), c, h);
    product(R, H, 3 * H, h, H, F->w_fh, a, 3 * H, F->b_fh, 0, xp, yp);
    for (int64_t r = 0; r < R; r++) {
        const float *ct = F->c_term + ((r % B) * T + t) * H;
        for (int64_t j = 0; j < H; j++) a[r * 3 * H + H + j] += ct[j];
    }
}

/* The SRNN's backbone at step t: a = seq[b, t] (the terms reading h_t and c_t, computed for every t at once),
 * plus rec . W_rec in its prior and proposal blocks, rec = enc_z of the previous step (state after resampling). */
static void markov_backbone(const Filter *F, int64_t t, const float *st_ez, const float **xp, float **yp) {
    const int64_t B = F->B, R = F->N * B, H = F->H, T = F->T;
    float *rec = SAVED(rec, t, H), *a = SAVED(a, t, 3 * H);
    memcpy(rec, st_ez, R * H * 4);
    for (int64_t r = 0; r < R; r++) {
        memcpy(a + r * 3 * H, F->seq + ((r % B) * T + t) * 3 * H, 3 * H * 4);
        xp[r] = rec + r * H;
        yp[r] = a + r * 3 * H;
    }
    matmul_f32(R, H, xp, F->w_rec, 0, 2 * H / PANEL, yp);
}

void filter_forward(Filter *F) {
    const int64_t B = F->B, N = F->N, R = N * B, H = F->H, EP = F->EP, T = F->T;
    float *st_h = calloc(R * H, 4), *st_c = calloc(R * H, 4), *st_ez = calloc(R * H, 4);
    float *G = malloc(R * 4 * H * 4), *X = malloc(R * H * 4), *inc = malloc(R * 4), *lw = calloc(N * B, 4);
    const float **xp = malloc(R * sizeof(float *));
    float **yp = malloc(R * sizeof(float *));
    double *cdf = malloc(N * sizeof(double));
    for (int64_t b = 0; b < B; b++) F->log_p_hat[b] = 0;
    for (int64_t t = 0; t < T; t++) {
        float *a = SAVED(a, t, 3 * H), *p = SAVED(p, t, 2 * H), *q = SAVED(q, t, 2 * H), *z = SAVED(z, t, H);
        float *e1 = SAVED(e1, t, H), *ez = SAVED(enc_z, t, H), *eh = SAVED(eh, t, H), *par = SAVED(par, t, EP);
        const float *eps = F->eps + t * R * H;
        if (F->lstm) lstm_backbone(F, t, st_h, st_c, st_ez, G, xp, yp);
        else markov_backbone(F, t, st_ez, xp, yp);
        relu_rows(R, H, a, 3 * H, X);
        product(R, H, 2 * H, X, H, F->w_p, p, 2 * H, F->b_p, 0, xp, yp);
        relu_rows(R, H, a + H, 3 * H, X);
        product(R, H, 2 * H, X, H, F->w_q, q, 2 * H, F->b_q, 0, xp, yp);
        for (int64_t r = 0; r < R; r++) {
            const float *pr = p + r * 2 * H, *qr = q + r * 2 * H, *er = eps + r * H;
            __m256 ratio = _mm256_setzero_ps();
            for (int64_t j = 0; j < H; j += 8) {
                const __m256 sd_p = softplus8(_mm256_loadu_ps(pr + H + j));
                const __m256 sd_q = softplus8(_mm256_loadu_ps(qr + H + j));
                const __m256 e = _mm256_loadu_ps(er + j), step = _mm256_fmadd_ps(sd_q, e, _mm256_loadu_ps(qr + j));
                const __m256 u = _mm256_div_ps(step, sd_p);
                _mm256_storeu_ps(z + r * H + j, _mm256_add_ps(_mm256_loadu_ps(pr + j), step));
                const __m256 squares = _mm256_fmsub_ps(e, e, _mm256_mul_ps(u, u));  /* eps^2 - u^2 */
                ratio = _mm256_add_ps(ratio, _mm256_fmadd_ps(SET(0.5f), squares, log8(_mm256_div_ps(sd_q, sd_p))));
            }
            inc[r] = sum8(ratio);
        }
        product(R, H, H, z, H, F->w_ei, e1, H, F->b_ei, 0, xp, yp);
        relu_rows(R, H, e1, H, X);
        product(R, H, H, X, H, F->w_eo, ez, H, F->b_eo, 0, xp, yp);
        product(R, H, H, ez, H, F->w_ez, eh, H, a + 2 * H, 3 * H, xp, yp);
        relu_rows(R, H, eh, H, X);
        product(R, H, EP, X, H, F->w_em, par, EP, F->b_em, 0, xp, yp);
        for (int64_t r = 0; r < R; r++)
            inc[r] += emission_log_prob(F, par + r * EP, F->x + ((r % B) * T + t) * F->D);

        /* the engine: accumulate, decide, draw ancestors, gather the state */
        int any = 0;
        for (int64_t b = 0; b < B; b++) {
            const int active = t < F->lengths[b];
            for (int64_t n = 0; n < N; n++) {
                if (active) lw[n * B + b] += inc[n * B + b];
                F->log_w[(t * N + n) * B + b] = lw[n * B + b];
                F->ancestors[(t * N + n) * B + b] = n;
            }
            int flag = 0;
            if (F->mode && active && F->threshold > 0) {
                const double s2 = weights_cdf(lw, N, B, b, cdf);
                flag = s2 >= 1.0 / (F->threshold * N);
            }
            F->flags[t * B + b] = (uint8_t)flag;
            if (!flag) continue;
            any = 1;
            for (int64_t n = 0; n < N; n++) {
                const double u = F->mode == 1 ? F->uniforms[(t * B + b) * N + n] : (n + F->uniforms[t * B + b]) / N;
                F->ancestors[(t * N + n) * B + b] = lookup(cdf, N, u);
            }
            F->log_p_hat[b] += log_sum_exp(lw, N, B, b) - log((double)N);
            for (int64_t n = 0; n < N; n++) lw[n * B + b] = 0;
        }
        for (int64_t r = 0; r < R; r++) {
            const int64_t from = any ? F->ancestors[t * R + r] * B + r % B : r;
            memcpy(st_ez + r * H, ez + from * H, H * 4);
            if (!F->lstm) continue;
            memcpy(st_h + r * H, SAVED(h, t, H) + from * H, H * 4);
            memcpy(st_c + r * H, SAVED(c, t, H) + from * H, H * 4);
        }
    }
    for (int64_t b = 0; b < B; b++) F->log_p_hat[b] += log_sum_exp(lw, N, B, b) - log((double)N);
    memcpy(F->log_w_end, lw, N * B * 4);
    free(st_h); free(st_c); free(st_ez); free(G); free(X); free(inc); free(lw); free(xp); free(yp); free(cdf);
}

/* d increment / d par, times g, for one row: Bernoulli x - sigmoid(logit); Gaussian via mean and raw sd. */
static void emission_grad(const Filter *F, const float *par, const float *x, float g, float *d_par) {
    const int64_t D = F->D, D8 = D / 8 * 8;
    const __m256 g8 = SET(g);
    memset(d_par, 0, F->EP * 4);
    if (!F->gaussian) {
        for (int64_t d = 0; d < D8; d += 8)
            _mm256_storeu_ps(d_par + d, _mm256_mul_ps(g8, _mm256_sub_ps(_mm256_loadu_ps(x + d),
                                                                         sigmoid8(_mm256_loadu_ps(par + d)))));
        for (int64_t d = D8; d < D; d++) d_par[d] = g * (x[d] - sig(par[d]));
        return;
    }
    for (int64_t d = 0; d < D8; d += 8) {
        const __m256 raw = _mm256_add_ps(_mm256_loadu_ps(par + D + d), SET(0.5f)), sd = softplus8(raw);
        const __m256 inv = _mm256_div_ps(SET(1.0f), sd);
        const __m256 diff = _mm256_sub_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(par + d));
        const __m256 w = _mm256_mul_ps(_mm256_mul_ps(diff, inv), inv);  /* diff / sd^2 */
        _mm256_storeu_ps(d_par + d, _mm256_mul_ps(g8, w));
        const __m256 d_sd = _mm256_mul_ps(_mm256_fmsub_ps(w, diff, SET(1.0f)), inv);  /* diff^2 / sd^3 - 1 / sd */
        _mm256_storeu_ps(d_par + D + d, _mm256_mul_ps(_mm256_mul_ps(g8, d_sd), sigmoid8(raw)));
    }
    for (int64_t d = D8; d < D; d++) {
        const float raw = par[D + d] + 0.5f, sd = softplus(raw), diff = x[d] - par[d];
        d_par[d] = g * diff / (sd * sd);
        d_par[D + d] = g * (diff * diff / (sd * sd * sd) - 1.0f / sd) * sig(raw);
    }
}

/* Back through the VRNN's backbone at step t, from d_a: the state's gradients (dh, dc, dez) for step t - 1 and
 * d_gates[t]. tmp and drec are scratch. */
static void lstm_backbone_grad(const Filter *F, int64_t t, float *dh, float *dc, float *dez, float *tmp, float *drec,
                               const float **xp, float **yp) {
    const int64_t R = F->N * F->B, H = F->H;
    const float *gates = SAVED(gates, t, 4 * H), *c = SAVED(c, t, H), *cp = SAVED(c_prev, t, H);
    float *d_g = AT(d_gates, t, 4 * H);
    product(R, 3 * H, H, AT(d_a, t, 3 * H), 3 * H, F->t_fh, tmp, H, dh, H, xp, yp);
    for (int64_t r = 0; r < R; r++) {
        const float *act = gates + r * 4 * H;
        float *g = d_g + r * 4 * H;
        for (int64_t j = 0; j < H; j += 8) {
            const __m256 one = SET(1.0f), i = _mm256_loadu_ps(act + j), f = _mm256_loadu_ps(act + H + j);
            const __m256 u = _mm256_loadu_ps(act + 2 * H + j), o = _mm256_loadu_ps(act + 3 * H + j);
            const __m256 tc = tanh8(_mm256_loadu_ps(c + r * H + j)), dhj = _mm256_loadu_ps(tmp + r * H + j);
            const __m256 dcj = _mm256_fmadd_ps(_mm256_mul_ps(dhj, o), _mm256_fnmadd_ps(tc, tc, one),
                                               _mm256_loadu_ps(dc + r * H + j));
            _mm256_storeu_ps(g + j, _mm256_mul_ps(_mm256_mul_ps(dcj, u), _mm256_mul_ps(i, _mm256_sub_ps(one, i))));
            _mm256_storeu_ps(g + H + j, _mm256_mul_ps(_mm256_mul_ps(dcj, _mm256_loadu_ps(cp + r * H + j)),
                                                      _mm256_mul_ps(f, _mm256_sub_ps(one, f))));
            _mm256_storeu_ps(g + 2 * H + j, _mm256_mul_ps(_mm256_mul_ps(dcj, i), _mm256_fnmadd_ps(u, u, one)));
            _mm256_storeu_ps(g + 3 * H + j, _mm256_mul_ps(_mm256_mul_ps(dhj, tc),
                                                          _mm256_mul_ps(o, _mm256_sub_ps(one, o))));
            _mm256_storeu_ps(dc + r * H + j, _mm256_mul_ps(dcj, f));
        }
    }
    product(R, 4 * H, 2 * H, d_g, 4 * H, F->t_rec, drec, 2 * H, NULL, 0, xp, yp);
    for (int64_t r = 0; r < R; r++) {
        memcpy(dez + r * H, drec + r * 2 * H, H * 4);
        memcpy(dh + r * H, drec + r * 2 * H + H, H * 4);
    }
}

void filter_backward(Filter *F) {
    const int64_t B = F->B, N = F->N, R = N * B, H = F->H, EP = F->EP, T = F->T;
    float *dh = calloc(R * H, 4), *dc = calloc(R * H, 4), *dez = calloc(R * H, 4), *tmp = malloc(R * H * 4);
    float *dz = malloc(R * H * 4), *drec = malloc(R * 2 * H * 4), *ginc = malloc(R * 4), *wgrad = malloc(N * B * 4);
    const float **xp = malloc(R * sizeof(float *));
    float **yp = malloc(R * sizeof(float *));
    for (int64_t b = 0; b < B; b++) {
        const double lse = log_sum_exp(F->log_w_end, N, B, b);
        for (int64_t n = 0; n < N; n++) wgrad[n * B + b] = (float)(F->grad[b] * exp(F->log_w_end[n * B + b] - lse));
    }
    for (int64_t t = T - 1; t >= 0; t--) {
        int any = 0;
        for (int64_t b = 0; b < B; b++) any |= F->flags[t * B + b];
        if (any) { /* the state's gradient flows back to the ancestors that were copied */
            float *grads[3] = {dez, dh, dc};  /* the SRNN's state is enc_z alone */
            for (int s = 0; s < (F->lstm ? 3 : 1); s++) {
                memset(tmp, 0, R * H * 4);
                for (int64_t r = 0; r < R; r++) {
                    const int64_t from = F->ancestors[t * R + r] * B + r % B;
                    for (int64_t j = 0; j < H; j++) tmp[from * H + j] += grads[s][r * H + j];
                }
                memcpy(grads[s], tmp, R * H * 4);
            }
        }
        for (int64_t b = 0; b < B; b++) {
            if (F->flags[t * B + b]) {
                const double lse = log_sum_exp(F->log_w + t * N * B, N, B, b);
                for (int64_t n = 0; n < N; n++)
                    wgrad[n * B + b] = (float)(F->grad[b] * exp(F->log_w[(t * N + n) * B + b] - lse));
            }
            for (int64_t n = 0; n < N; n++) ginc[n * B + b] = t < F->lengths[b] ? wgrad[n * B + b] : 0.0f;
        }
        const float *a = SAVED(a, t, 3 * H), *p = SAVED(p, t, 2 * H), *q = SAVED(q, t, 2 * H);
        const float *e1 = SAVED(e1, t, H), *eh = SAVED(eh, t, H);
        const float *par = SAVED(par, t, EP), *eps = F->eps + t * R * H;
        float *d_par = AT(d_par, t, EP), *d_eh = AT(d_eh, t, H), *d_ez = AT(d_enc_z, t, H), *d_e1 = AT(d_e1, t, H);
        float *d_p = AT(d_p, t, 2 * H), *d_q = AT(d_q, t, 2 * H), *d_a = AT(d_a, t, 3 * H);
        for (int64_t r = 0; r < R; r++)
            emission_grad(F, par + r * EP, F->x + ((r % B) * T + t) * F->D, ginc[r], d_par + r * EP);
        product(R, EP, H, d_par, EP, F->t_em, d_eh, H, NULL, 0, xp, yp);
        for (int64_t i = 0; i < R * H; i++) d_eh[i] = eh[i] > 0 ? d_eh[i] : 0.0f;
        product(R, H, H, d_eh, H, F->t_ez, d_ez, H, dez, H, xp, yp);
        product(R, H, H, d_ez, H, F->t_eo, d_e1, H, NULL, 0, xp, yp);
        for (int64_t i = 0; i < R * H; i++) d_e1[i] = e1[i] > 0 ? d_e1[i] : 0.0f;
        product(R, H, H, d_e1, H, F->t_ei, dz, H, NULL, 0, xp, yp);
        for (int64_t r = 0; r < R; r++) {
            const float *pr = p + r * 2 * H, *qr = q + r * 2 * H, *er = eps + r * H;
            float *dp = d_p + r * 2 * H, *dq = d_q + r * 2 * H;
            const __m256 g = SET(ginc[r]);
            for (int64_t j = 0; j < H; j += 8) {
                const __m256 raw_p = _mm256_loadu_ps(pr + H + j), raw_q = _mm256_loadu_ps(qr + H + j);
                const __m256 inv_p = _mm256_div_ps(SET(1.0f), softplus8(raw_p)), sd_q = softplus8(raw_q);
                const __m256 e = _mm256_loadu_ps(er + j), dzj = _mm256_loadu_ps(dz + r * H + j);
                const __m256 u = _mm256_mul_ps(_mm256_fmadd_ps(sd_q, e, _mm256_loadu_ps(qr + j)), inv_p);
                const __m256 g_inv_p = _mm256_mul_ps(g, inv_p);
                _mm256_storeu_ps(dp + j, dzj);
                _mm256_storeu_ps(dp + H + j, _mm256_mul_ps(_mm256_mul_ps(g_inv_p, _mm256_fmsub_ps(u, u, SET(1.0f))),
                                                           sigmoid8(raw_p)));
                _mm256_storeu_ps(dq + j, _mm256_fnmadd_ps(g_inv_p, u, dzj));
                const __m256 d_sd_q = _mm256_fmadd_ps(dzj, e, _mm256_fnmadd_ps(g_inv_p, _mm256_mul_ps(u, e),
                                                                               _mm256_div_ps(g, sd_q)));
                _mm256_storeu_ps(dq + H + j, _mm256_mul_ps(d_sd_q, sigmoid8(raw_q)));
            }
        }
        for (int64_t r = 0; r < R; r++) {
            xp[r] = d_p + r * 2 * H;
            yp[r] = d_a + r * 3 * H;
            memset(yp[r], 0, 2 * H * 4);
        }
        matmul_f32(R, 2 * H, xp, F->t_p, 0, H / PANEL, yp);
        for (int64_t r = 0; r < R; r++) { xp[r] = d_q + r * 2 * H; yp[r] = d_a + r * 3 * H + H; }
        matmul_f32(R, 2 * H, xp, F->t_q, 0, H / PANEL, yp);
        for (int64_t r = 0; r < R; r++) {
            for (int64_t j = 0; j < 2 * H; j++) if (a[r * 3 * H + j] <= 0) d_a[r * 3 * H + j] = 0.0f;
            memcpy(d_a + r * 3 * H + 2 * H, d_eh + r * H, H * 4);
        }
        if (F->lstm) lstm_backbone_grad(F, t, dh, dc, dez, tmp, drec, xp, yp);
        else product(R, 2 * H, H, d_a, 3 * H, F->t_rec, dez, H, NULL, 0, xp, yp);  /* the SRNN's: rec . W_rec */
    }
    free(dh); free(dc); free(dez); free(tmp); free(dz); free(drec); free(ginc); free(wgrad); free(xp); free(yp);
}

int filter_kernel_cpu_ok(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
