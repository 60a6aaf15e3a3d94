/* attention_ref.h: double-precision reference of blocksparse attention, its
 * gradients, and the liveness rule, for tests/cpu/test_attention.c and
 * tests/gpu/test_attention_gpu.c. Header-only, public API only (builds on
 * blocks_ref.h's HostT).
 *
 * Element (i, j) of head h is live when bits[hl][i / bs][j / bs] != 0 (hl =
 * h, or 0 for a shared layout) and, under causal, j <= i. The reference
 * computes the exact function from the tensors' stored (rounded) values:
 *   s = scale q k^T over live elements, p = softmax(s), o = p v,
 *   lse = log sum exp s (-inf and o = 0 for a row with nothing live),
 *   dp = dout v^T, ds = p (dp - rowsum(p dp)), dq = scale ds k,
 *   dk = scale ds^T q, dv = p^T dout.
 * Outputs are compact doubles: o, dq, dk, dv [B, H, S, D], lse [B, H, S].
 */
#ifndef TJ_ATTENTION_REF_H
#define TJ_ATTENTION_REF_H

#include <math.h>
#include <stdlib.h>

#include "blocks_ref.h"

typedef struct RefLayout {
  const uint8_t *bits;   // [heads, nb, nb]
  int heads, nb, bs;
  int causal;
} RefLayout;

static inline int ref_live(const RefLayout *L, int64_t h, int64_t i, int64_t j) {
  int64_t hl = L->heads == 1 ? 0 : h;
  if (L->causal && j > i) return 0;
  return L->bits[((size_t)hl * L->nb + (size_t)(i / L->bs)) * L->nb + (size_t)(j / L->bs)] != 0;
}

static inline double ref_at(const HostT *t, int64_t b, int64_t h, int64_t s, int64_t d) {
  return host_get_at(t, b * t->strides[0] + h * t->strides[1] + s * t->strides[2] + d * t->strides[3]);
}

// Row i of head (b, h): p[j] (0 where not live) and the row's lse.
static inline double ref_row_p(const HostT *q, const HostT *k, const RefLayout *L, double scale, int64_t b,
                               int64_t h, int64_t i, double *p) {
  int64_t S = q->shape[2], D = q->shape[3];
  double mx = -INFINITY;
  for (int64_t j = 0; j < S; j++) {
    p[j] = -INFINITY;
    if (!ref_live(L, h, i, j)) continue;
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += ref_at(q, b, h, i, d) * ref_at(k, b, h, j, d);
    p[j] = s * scale;
    if (p[j] > mx) mx = p[j];
  }
  if (mx == -INFINITY) {
    for (int64_t j = 0; j < S; j++) p[j] = 0;
    return -INFINITY;
  }
  double sum = 0;
  for (int64_t j = 0; j < S; j++) sum += p[j] == -INFINITY ? 0.0 : exp(p[j] - mx);
  for (int64_t j = 0; j < S; j++) p[j] = p[j] == -INFINITY ? 0.0 : exp(p[j] - mx) / sum;
  return mx + log(sum);
}

static inline void ref_attention_fwd(const HostT *q, const HostT *k, const HostT *v, const RefLayout *L,
                                     double scale, double *o, double *lse) {
  int64_t B = q->shape[0], H = q->shape[1], S = q->shape[2], D = q->shape[3];
  double *p = malloc(sizeof(double) * (size_t)S);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < S; i++) {
        double l = ref_row_p(q, k, L, scale, b, h, i, p);
        size_t r = (size_t)((b * H + h) * S + i);
        if (lse) lse[r] = l;
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t j = 0; j < S; j++)
            if (p[j] != 0.0) acc += p[j] * ref_at(v, b, h, j, d);
          o[r * (size_t)D + (size_t)d] = acc;
        }
      }
  free(p);
}

static inline void ref_attention_bwd(const HostT *q, const HostT *k, const HostT *v, const HostT *dout,
                                     const RefLayout *L, double scale, double *dq, double *dk, double *dv) {
  int64_t B = q->shape[0], H = q->shape[1], S = q->shape[2], D = q->shape[3];
  size_t n = (size_t)(B * H * S * D);
  for (size_t i = 0; i < n; i++) dq[i] = dk[i] = dv[i] = 0;
  double *p = malloc(sizeof(double) * (size_t)S), *dp = malloc(sizeof(double) * (size_t)S);
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++) {
      size_t base = (size_t)((b * H + h) * S * D);
      for (int64_t i = 0; i < S; i++) {
        ref_row_p(q, k, L, scale, b, h, i, p);
        double rs = 0;
        for (int64_t j = 0; j < S; j++) {
          dp[j] = 0;
          if (p[j] == 0.0) continue;
          for (int64_t d = 0; d < D; d++) dp[j] += ref_at(dout, b, h, i, d) * ref_at(v, b, h, j, d);
          rs += p[j] * dp[j];
        }
        for (int64_t j = 0; j < S; j++) {
          if (p[j] == 0.0) continue;
          double ds = p[j] * (dp[j] - rs);
          for (int64_t d = 0; d < D; d++) {
            dq[base + (size_t)(i * D + d)] += scale * ds * ref_at(k, b, h, j, d);
            dk[base + (size_t)(j * D + d)] += scale * ds * ref_at(q, b, h, i, d);
            dv[base + (size_t)(j * D + d)] += p[j] * ref_at(dout, b, h, i, d);
          }
        }
      }
    }
  free(p);
  free(dp);
}

#endif
