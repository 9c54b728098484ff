/* The fused WaveNet generation loop in C with AVX2/FMA: n cached steps, sampling included.
 *
 * core/generation/c_kernels.py compiles this file once per machine (gcc -O3 -mavx2 -mfma), with
 * kernel_common.h (the math, the products and the sampler it shares with the PixelCNN kernel),
 * caches the shared library on disk; core/generation/fused.py calls `fused_run` through ctypes.
 * Every array comes from numpy, packed and zero-padded by core/generation/fused.py so that every
 * channel count is a multiple of 16:
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
 * synchronisation. At batch 1 with several threads (opt-in from core/fused.py) the threads
 * split each product's output panels and meet at a spin barrier twice per layer; that halves
 * the weights each core streams per sample.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "kernel_common.h"

#define MAX_THREADS 16

typedef struct {
    int64_t batch, n_layers, kernel, k_in;
    int64_t c_res, c_dil, c_skip, c_head, q, q_pad; /* padded, but q: the real level count */
    const float *in_tab;  /* (k_in, q + 2, c_res) */
    const float *in_b;    /* (c_res) */
    const float *w_z;     /* (L, panels of kernel*c_res x 16 covering 2 c_dil) */
    const float *b_z;     /* (L, 2 c_dil) */
    const float *w_out;   /* (L, panels of c_dil x 16 covering c_res + c_skip) */
    const float *b_res;   /* (L, c_res) */
    const float *b_skip;  /* (c_skip): the skip biases of all layers, summed */
    const float *w1, *b1; /* panels of c_skip x 16 covering c_head; (c_head) */
    const float *w2, *b2; /* panels of c_head x 16 covering q_pad; (q_pad) */
    const int64_t *offs, *sizes, *dils; /* (L): ring offset, ring size (kernel-1)*d, dilation */
    float *buf;           /* (batch, sum sizes, c_res): each layer's past inputs */
    float *scratch;       /* (batch, 2 c_dil + c_dil + c_res + c_skip + c_head + q_pad): z, g, [h | skip], hid, logits */
    int64_t *tokens;      /* (batch, k_in): the input conv's last k_in tokens */
    int64_t *prev;        /* (batch): the last token */
    uint64_t *rng;        /* (batch): SplitMix64 state per row */
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
            matmul(rows, K * cr, (const float *const *)xz, m->w_z + l * K * cr * 2 * cd, 2 * zp0, 2 * zp1, z);
            for (int64_t i = 0; i < rows; i++) gate(z[i], zp0, zp1, g[i]);
            barrier_wait(w->bar, nt, &sense);  /* every gate is known and every ring read is done */
            for (int64_t i = 0; i < rows; i++) {
                /* This step's input takes the oldest slot; each thread stores the h columns it owns. */
                float *slot = m->buf + ((w->row0 + i) * ring + off + t % size) * cr;
                memcpy(slot + c0, hs[i] + c0, (c1 - c0) * sizeof(float));
                const float *br = m->b_res + l * cr;
                for (int64_t c = c0; c < c1; c++) hs[i][c] += br[c];
            }
            matmul(rows, cd, (const float *const *)g, m->w_out + l * cd * hs_len, op0, op1, hs);
            barrier_wait(w->bar, nt, &sense);  /* h and skip are whole again */
        }
        for (int64_t i = 0; i < rows; i++) {  /* the head: relu, 1x1, relu, 1x1 */
            for (int64_t c = 0; c < cs; c++) xs[i][c] = relu(hs[i][cr + c]);
            memcpy(hid[i] + hp0 * PANEL, m->b1 + hp0 * PANEL, (hp1 - hp0) * PANEL * sizeof(float));
        }
        matmul(rows, cs, (const float *const *)xs, m->w1, hp0, hp1, hid);
        for (int64_t i = 0; i < rows; i++)
            for (int64_t c = hp0 * PANEL; c < hp1 * PANEL; c++) hid[i][c] = relu(hid[i][c]);
        barrier_wait(w->bar, nt, &sense);
        for (int64_t i = 0; i < rows; i++)
            memcpy(lg[i] + lp0 * PANEL, m->b2 + lp0 * PANEL, (lp1 - lp0) * PANEL * sizeof(float));
        matmul(rows, ch, (const float *const *)xh, m->w2, lp0, lp1, lg);
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
