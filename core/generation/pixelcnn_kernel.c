/* The PixelCNN's horizontal stack in C with AVX2/FMA: the pixels of one row, sampling included.
 *
 * core/generation/pixelcnn_fused.py calls `pixelcnn_run` for a run of columns c0 .. c0+n-1 of the
 * current row, after the vertical stack of the row above has been turned (in PyTorch, one batched
 * matmul per layer) into `from_above` (batch, width, L, 2c): each layer's gate input from above,
 * with the class and both biases in it. Per pixel (r, c), for each batch row:
 *
 *     for each layer l:
 *         z = from_above[c, l] + window_l . W_h,l            window_l: taps_l columns of layer l's
 *                                                              input along the row, channels last
 *         g = tanh(z_a) * sigmoid(z_b)                        (c)
 *         [h | skip] += g W_out,l + [b_res,l | 0]             (the first layer replaces h instead)
 *         h goes into layer l+1's row buffer at column c      (its mask-B window ends there)
 *     logits = head(skip); x = sample, or the observed value; embedding(x) goes into layer 0's
 *     row buffer at column c (its mask-A window ends at c - 1)
 *
 * Layer l's row buffer is (width + s_l, c): column j at s_l + j, zeros on the left, so the window of
 * pixel c is the contiguous taps_l * c floats from column c - s_l. The head runs only for rows with
 * a pixel to draw (or when logits are asked for). Channel counts are padded to multiples of 16 and
 * matrices panelled (kernel_common.h). Threads split the batch rows and never interact.
 */
#include <pthread.h>
#include <stdlib.h>

#include "kernel_common.h"

#define MAX_THREADS 16

typedef struct {
    int64_t batch, n_layers, width, c, c_skip, c_head, q, q_pad; /* padded, but q: the real level count */
    const int64_t *pads;    /* (L): s_l, the buffer's left padding */
    const int64_t *taps;    /* (L): window width, s_l (mask A) or s_l + 1 (mask B) */
    const int64_t *buf_off; /* (L): layer l's row buffer within a batch row's buffers, in floats */
    int64_t buf_len;        /* floats of one batch row's buffers: sum_l (width + s_l) c */
    const int64_t *w_off;   /* (L): layer l's W_h within w_h, in floats */
    const float *emb;       /* (q, c) */
    const float *w_h;       /* per layer, panels of taps_l c x 16 covering 2c, gate-ordered */
    const float *w_out;     /* (L, panels of c x 16 covering c + c_skip): [residual | skip] */
    const float *b_res;     /* (L, c) */
    const float *b_skip;    /* (c_skip): the skip biases of all layers, summed */
    const float *w1, *b1;   /* panels of c_skip x 16 covering c_head; (c_head) */
    const float *w2, *b2;   /* panels of c_head x 16 covering q_pad; (q_pad) */
    float *buf;             /* (batch, buf_len) */
    uint64_t *rng;          /* (batch): SplitMix64 state per row */
} Model;

typedef struct {
    int64_t c0, n;              /* columns c0 .. c0 + n - 1 of the current row */
    const float *from_above;    /* (batch, width, L, 2c) */
    const uint8_t *obs_mask;    /* (batch, n) */
    const int64_t *obs_val;     /* (batch, n) */
    double temperature;         /* 0 = greedy */
    int64_t top_k;              /* 0 = all */
    int64_t *out;               /* (batch, n) */
    float *logits_out;          /* (batch, n, q) or NULL */
    int64_t threads;
} Run;

typedef struct {
    const Model *m;
    const Run *r;
    int64_t row0, rows;
} Work;

static void *pixels(void *arg) {
    const Work *w = arg;
    const Model *m = w->m;
    const Run *r = w->r;
    const int64_t rows = w->rows, L = m->n_layers, C = m->c, cs = m->c_skip, ch = m->c_head, qp = m->q_pad;
    const int64_t per_row = 2 * C + C + C + cs + cs + ch + qp;
    float *scratch = malloc(((size_t)rows * per_row + qp) * sizeof(float));
    float **z = malloc(10 * rows * sizeof(float *));
    float **g = z + rows, **hs = g + rows, **xs = hs + rows, **hid = xs + rows, **lg = hid + rows;
    float **hxs = lg + rows, **hhid = hxs + rows, **hlg = hhid + rows;  /* the rows whose head runs */
    const float **x = (const float **)(hlg + rows);
    float *probs = scratch + rows * per_row;
    for (int64_t i = 0; i < rows; i++) {  /* per row: z, g, [h | skip], relu(skip), hidden, logits */
        z[i] = scratch + i * per_row; g[i] = z[i] + 2 * C; hs[i] = g[i] + C; xs[i] = hs[i] + C + cs;
        hid[i] = xs[i] + cs; lg[i] = hid[i] + ch;
    }
    for (int64_t step = 0; step < r->n; step++) {
        const int64_t col = r->c0 + step;
        for (int64_t i = 0; i < rows; i++) memcpy(hs[i] + C, m->b_skip, cs * sizeof(float));
        for (int64_t l = 0; l < L; l++) {
            const int64_t s = m->pads[l], k = m->taps[l] * C;
            for (int64_t i = 0; i < rows; i++) {
                const int64_t b = w->row0 + i;
                float *buf = m->buf + b * m->buf_len + m->buf_off[l];
                if (l) memcpy(buf + (s + col) * C, hs[i], C * sizeof(float));  /* h_{l-1} at this column */
                x[i] = buf + col * C;  /* columns col - s .. col - s + taps - 1 */
                memcpy(z[i], r->from_above + ((b * m->width + col) * L + l) * 2 * C, 2 * C * sizeof(float));
            }
            matmul(rows, k, (const float *const *)x, m->w_h + m->w_off[l], 0, 2 * C / PANEL, z);
            for (int64_t i = 0; i < rows; i++) {
                gate(z[i], 0, C / PANEL, g[i]);
                const float *br = m->b_res + l * C;
                if (l) for (int64_t j = 0; j < C; j++) hs[i][j] += br[j];
                else memcpy(hs[i], br, C * sizeof(float));  /* the first layer has no residual */
            }
            matmul(rows, C, (const float *const *)g, m->w_out + l * C * (C + cs), 0, (C + cs) / PANEL, hs);
        }
        int64_t need = 0;  /* the rows whose logits are wanted, packed first */
        for (int64_t i = 0; i < rows; i++) {
            const int64_t at = (w->row0 + i) * r->n + step;
            if (r->logits_out || !r->obs_mask[at]) {
                for (int64_t j = 0; j < cs; j++) xs[i][j] = relu(hs[i][C + j]);
                memcpy(hid[i], m->b1, ch * sizeof(float));
                memcpy(lg[i], m->b2, qp * sizeof(float));
                hxs[need] = xs[i]; hhid[need] = hid[i]; hlg[need] = lg[i]; need++;
            }
        }
        matmul(need, cs, (const float *const *)hxs, m->w1, 0, ch / PANEL, hhid);
        for (int64_t i = 0; i < need; i++)
            for (int64_t j = 0; j < ch; j++) hhid[i][j] = relu(hhid[i][j]);
        matmul(need, ch, (const float *const *)hhid, m->w2, 0, qp / PANEL, hlg);
        for (int64_t i = 0; i < rows; i++) {
            const int64_t b = w->row0 + i, at = b * r->n + step;
            if (r->logits_out) memcpy(r->logits_out + at * m->q, lg[i], m->q * sizeof(float));
            const int64_t v = r->obs_mask[at] ? r->obs_val[at]
                                              : draw(lg[i], m->q, r->temperature, r->top_k, m->rng + b, probs);
            r->out[at] = v;
            memcpy(m->buf + b * m->buf_len + m->buf_off[0] + (m->pads[0] + col) * C, m->emb + v * C,
                   C * sizeof(float));
        }
    }
    free(z);
    free(scratch);
    return NULL;
}

/* Run r->n pixels of the current row for every batch row. */
void pixelcnn_run(const Model *m, const Run *r) {
    int64_t threads = r->threads < 1 ? 1 : (r->threads > MAX_THREADS ? MAX_THREADS : r->threads);
    if (threads > m->batch) threads = m->batch;
    Work work[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    for (int64_t i = 0; i < threads; i++) {
        const int64_t a = m->batch * i / threads, b = m->batch * (i + 1) / threads;
        work[i] = (Work){m, r, a, b - a};
    }
    int64_t started = 1;
    while (started < threads && pthread_create(&ids[started], NULL, pixels, &work[started]) == 0) started++;
    pixels(&work[0]);
    for (int64_t i = 1; i < started; i++) pthread_join(ids[i], NULL);
    for (int64_t i = started; i < threads; i++) pixels(&work[i]);  /* rows whose thread did not start */
}

int pixelcnn_cpu_ok(void) { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
