/* The cached Gated PixelCNN in C with AVX2/FMA: both stacks, one row's pixels at a time, sampling included.
 *
 * core/generation/pixelcnn_fused.py calls `pixelcnn_run` for a run of columns c0 .. c0+n-1 of the
 * current row. When c0 = 0 and a row above is complete (r->push), the vertical stack first advances
 * one row, for the whole row at once:
 *
 *     v_0 = embedding(tokens of row R)                               (width, c)
 *     for each layer l:
 *         v_pre = b_v + sum_dy ring_l[row R - s + dy] . W_v,l,dy      ring_l: the layer's input over
 *                                                                     the last s_l + 1 rows, zero-padded
 *         from_above[., l] = v_pre . W_vh,l + b_vh,l + class_h,l      what row R + 1's gates add
 *         v_l = gate(v_pre + class_v,l) goes into ring_{l+1}'s slot for row R
 *
 * Then per pixel (r, c), for each batch row:
 *
 *     for each layer l:
 *         z = from_above[c, l] + window_l . W_h,l            window_l: taps_l columns of layer l's
 *                                                              input along the row, channels last
 *         g = tanh(z_a) * sigmoid(z_b)                        (c)
 *         [h | skip] += g W_out,l + [b_res,l | 0]             (the first layer replaces h instead)
 *         h goes into layer l+1's row buffer at column c      (its mask-B window ends there)
 *     logits = head(skip); x = sample, or the observed value; embedding(x) goes into layer 0's
 *     row buffer at column c (its mask-A window ends at c - 1) and into the row's tokens
 *
 * Layer l's row buffer is (width + s_l, c): column j at s_l + j, zeros on the left, so the window of
 * pixel c is the contiguous taps_l * c floats from column c - s_l. Row R of a ring lives in slot
 * R mod (s_l + 1), (width + 2 s_l, c) with zero sides; slots of rows above the image stay zero. The
 * head runs only for rows with a pixel to draw (or when logits are asked for). Channel counts are
 * padded to multiples of 16, matrices panelled and gates ordered as kernel_common.h says; v_pre is
 * gate-ordered too, so W_vh's input rows are. Threads split the batch rows and never interact.
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
    const int64_t *ring_off; /* (L): layer l's ring within a batch row's rings, in floats */
    int64_t ring_len;       /* floats of one batch row's rings: sum_l (s_l + 1)(width + 2 s_l) c */
    const int64_t *wv_off;  /* (L): layer l's W_v (s_l + 1 blocks of panels of k_l c x 16 covering 2c) */
    const float *w_v, *b_v; /* the blocks wv_off points to; (L, 2c) */
    const float *w_vh;      /* (L, panels of 2c x 16 covering 2c) */
    const float *b_vh;      /* (L, 2c): v_to_h's bias plus h_conv's */
    const float *cls;       /* (batch, L, 2, 2c): the class terms of the vertical and the horizontal gates */
    float *buf;             /* (batch, buf_len) */
    float *rings;           /* (batch, ring_len) */
    float *from_above;      /* (batch, width, L, 2c): what the current row's gates get from above */
    int64_t *row;           /* (batch, width): the current row's tokens */
    uint64_t *rng;          /* (batch): SplitMix64 state per row */
} Model;

typedef struct {
    int64_t c0, n;              /* columns c0 .. c0 + n - 1 of the current row */
    int64_t push;               /* 1: row `above` is complete; advance the vertical stack first */
    int64_t above;              /* its index R */
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

/* The vertical stack takes image b's row R (m->row) and fills m->from_above for row R + 1. */
static void vertical(const Model *m, int64_t b, int64_t R, float **v_pre, float **fa, const float **x, float *z) {
    const int64_t L = m->n_layers, C = m->c, W = m->width;
    float *rings = m->rings + b * m->ring_len;
    for (int64_t l = 0; l < L; l++) {
        const int64_t s = m->pads[l], k = 2 * s + 1, span = (W + 2 * s) * C;
        float *ring = rings + m->ring_off[l];
        if (l == 0) {  /* the layer's input is the row's embedding */
            float *slot = ring + (R % (s + 1)) * span + s * C;
            for (int64_t j = 0; j < W; j++) memcpy(slot + j * C, m->emb + m->row[b * W + j] * C, C * sizeof(float));
        }
        for (int64_t j = 0; j < W; j++) {
            memcpy(v_pre[j], m->b_v + l * 2 * C, 2 * C * sizeof(float));
            fa[j] = m->from_above + ((b * W + j) * L + l) * 2 * C;
            const float *bias = m->b_vh + l * 2 * C, *cls = m->cls + ((b * L + l) * 2 + 1) * 2 * C;
            for (int64_t i = 0; i < 2 * C; i++) fa[j][i] = bias[i] + cls[i];
        }
        for (int64_t dy = 0; dy <= s; dy++) {  /* rows R - s + dy; negative ones are zero slots */
            const float *row = ring + ((R + 1 + dy) % (s + 1)) * span;
            for (int64_t j = 0; j < W; j++) x[j] = row + j * C;  /* columns j - s .. j + s */
            matmul_f32(W, k * C, (const float *const *)x, m->w_v + m->wv_off[l] + dy * k * C * 2 * C, 0,
                       2 * C / PANEL, v_pre);
        }
        matmul_f32(W, 2 * C, (const float *const *)v_pre, m->w_vh + l * 2 * C * 2 * C, 0, 2 * C / PANEL, fa);
        if (l + 1 < L) {  /* v_l into the next layer's ring, at row R */
            const int64_t s1 = m->pads[l + 1];
            float *next = rings + m->ring_off[l + 1] + (R % (s1 + 1)) * (W + 2 * s1) * C + s1 * C;
            const float *cls = m->cls + (b * L + l) * 2 * 2 * C;
            for (int64_t j = 0; j < W; j++) {
                for (int64_t i = 0; i < 2 * C; i++) z[i] = v_pre[j][i] + cls[i];
                gate(z, 0, C / PANEL, next + j * C);
            }
        }
    }
}

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
    if (r->push) {  /* the vertical stack advances one row; the row buffers start afresh */
        const int64_t W = m->width;
        float *vp = malloc((W * 2 * C + 2 * C) * sizeof(float));
        float **v_pre = malloc(3 * W * sizeof(float *)), **fa = v_pre + W;
        const float **vx = (const float **)(fa + W);
        for (int64_t j = 0; j < W; j++) v_pre[j] = vp + j * 2 * C;
        for (int64_t i = 0; i < rows; i++) {
            vertical(m, w->row0 + i, r->above, v_pre, fa, vx, vp + W * 2 * C);
            memset(m->buf + (w->row0 + i) * m->buf_len, 0, m->buf_len * sizeof(float));
        }
        free(v_pre);
        free(vp);
    }
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
                memcpy(z[i], m->from_above + ((b * m->width + col) * L + l) * 2 * C, 2 * C * sizeof(float));
            }
            matmul_f32(rows, k, (const float *const *)x, m->w_h + m->w_off[l], 0, 2 * C / PANEL, z);
            for (int64_t i = 0; i < rows; i++) {
                gate(z[i], 0, C / PANEL, g[i]);
                const float *br = m->b_res + l * C;
                if (l) for (int64_t j = 0; j < C; j++) hs[i][j] += br[j];
                else memcpy(hs[i], br, C * sizeof(float));  /* the first layer has no residual */
            }
            matmul_f32(rows, C, (const float *const *)g, m->w_out + l * C * (C + cs), 0, (C + cs) / PANEL, hs);
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
        matmul_f32(need, cs, (const float *const *)hxs, m->w1, 0, ch / PANEL, hhid);
        for (int64_t i = 0; i < need; i++)
            for (int64_t j = 0; j < ch; j++) hhid[i][j] = relu(hhid[i][j]);
        matmul_f32(need, ch, (const float *const *)hhid, m->w2, 0, qp / PANEL, hlg);
        for (int64_t i = 0; i < rows; i++) {
            const int64_t b = w->row0 + i, at = b * r->n + step;
            if (r->logits_out) memcpy(r->logits_out + at * m->q, lg[i], m->q * sizeof(float));
            const int64_t v = r->obs_mask[at] ? r->obs_val[at]
                                              : draw(lg[i], m->q, r->temperature, r->top_k, m->rng + b, probs);
            r->out[at] = v;
            m->row[b * m->width + col] = v;
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
