/* patterns.c: attention patterns (element masks) and their pooled block
 * layouts, as xFormers' attention_patterns built them (include/tilejit/
 * blocks.h gives every formula).
 *
 * requires: nothing but the parameters; produces: u8 masks and layouts on
 * the host. Pure functions of their arguments: no state, no device.
 *
 * Every pattern is a predicate on (head, i, j), evaluated by one driver
 * (fill): the mask element by element, the layout block by block, stopping
 * at the first live element of a block, so a layout never needs the S x S
 * mask behind it (S = 16384 layouts cost a few hundred ms of predicates at
 * most, the sparse ones far less than the dense ones).
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum PatKind {
  PAT_LOCAL_1D, PAT_CAUSAL_1D, PAT_RANDOM, PAT_GLOBAL, PAT_BIGBIRD, PAT_LONGFORMER,
  PAT_AXIAL_2D, PAT_LOCAL_2D, PAT_SWIN, PAT_DILATED_2D,
} PatKind;

typedef struct Pat {
  PatKind kind;
  int64_t S, W;          // tokens; grid width for the 2-D patterns
  int64_t half;          // local_1d: window / 2
  int64_t win, shift;    // swin: window, shift as s = (window - shift) % window
  int64_t k;             // dilated
  int dim;               // axial
  double dist, p;        // local_2d
  double density;
  uint64_t seed;
  const uint8_t *g;      // global token flags [S], or NULL
} Pat;

static tj_status perr(tj_blocks *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static tj_status perr(tj_blocks *b, const char *fmt, ...) {
  if (!b) return TJ_ERR_INVALID_ARG;
  char buf[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return blk_error(b, TJ_ERR_INVALID_ARG, "%s", buf);
}

static uint64_t splitmix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double pat_uniform(uint64_t seed, uint64_t n) {
  return (double)(splitmix64(seed + (n + 1) * 0x9E3779B97F4A7C15ull) >> 11) * 0x1p-53;
}

static bool random_at(const Pat *p, int h, int64_t i, int64_t j) {
  uint64_t n = ((uint64_t)h * (uint64_t)p->S + (uint64_t)i) * (uint64_t)p->S + (uint64_t)j;
  return pat_uniform(p->seed, n) < p->density;
}

static int64_t iabs(int64_t x) { return x < 0 ? -x : x; }

static bool local_1d_at(const Pat *p, int64_t i, int64_t j) { return iabs(i - j) <= p->half; }

static bool global_at(const Pat *p, int64_t i, int64_t j) { return p->g && (p->g[i] || p->g[j]); }

static bool local_2d_at(const Pat *p, int64_t i, int64_t j) {
  double dr = (double)iabs(i / p->W - j / p->W), dc = (double)iabs(i % p->W - j % p->W), d;
  if (p->p == 0.0) d = (dr != 0.0) + (dc != 0.0);
  else if (p->p == 1.0) d = dr + dc;
  else if (p->p == 2.0) d = sqrt(dr * dr + dc * dc);
  else if (isinf(p->p)) d = dr > dc ? dr : dc;
  else d = pow(pow(dr, p->p) + pow(dc, p->p), 1.0 / p->p);
  return d < p->dist;
}

static bool pat_at(const Pat *p, int h, int64_t i, int64_t j) {
  switch (p->kind) {
  case PAT_LOCAL_1D: return local_1d_at(p, i, j);
  case PAT_CAUSAL_1D: return j <= i;
  case PAT_RANDOM: return random_at(p, h, i, j);
  case PAT_GLOBAL: return global_at(p, i, j);
  case PAT_BIGBIRD: return local_1d_at(p, i, j) || global_at(p, i, j) || random_at(p, h, i, j);
  case PAT_LONGFORMER: return local_1d_at(p, i, j) || global_at(p, i, j);
  case PAT_AXIAL_2D: {
    bool row = i / p->W == j / p->W, col = i % p->W == j % p->W;
    return p->dim < 0 ? row || col : p->dim == 0 ? col : row;
  }
  case PAT_LOCAL_2D: return local_2d_at(p, i, j);
  case PAT_SWIN:
    return (i / p->W + p->shift) / p->win == (j / p->W + p->shift) / p->win &&
           (i % p->W + p->shift) / p->win == (j % p->W + p->shift) / p->win;
  case PAT_DILATED_2D:
    return iabs(i / p->W - j / p->W) % p->k == 0 && iabs(i % p->W - j % p->W) % p->k == 0;
  }
  return false;
}

// Checks the sizes the outputs imply and fills them.
static tj_status fill(tj_blocks *b, const char *op, const Pat *p, int heads, int64_t bs, uint8_t *mask,
                      uint8_t *layout) {
  int64_t S = p->S;
  if (S < 1) return perr(b, "%s: S must be >= 1, got %" PRId64, op, S);
  if (mask && (S > (int64_t)1 << 31 || (uint64_t)S * (uint64_t)S > SIZE_MAX / (size_t)heads))
    return perr(b, "%s: a mask of %d x %" PRId64 " x %" PRId64 " elements is too large", op, heads, S, S);
  if (layout && (bs < 1 || S % bs != 0))
    return perr(b, "%s: S = %" PRId64 " is not a multiple of the block size %" PRId64, op, S, bs);
  if (mask)
    for (int h = 0; h < heads; h++)
      for (int64_t i = 0; i < S; i++) {
        uint8_t *row = mask + ((size_t)h * (size_t)S + (size_t)i) * (size_t)S;
        for (int64_t j = 0; j < S; j++) row[j] = pat_at(p, h, i, j);
      }
  if (layout) {
    int64_t nb = S / bs;
    for (int h = 0; h < heads; h++)
      for (int64_t I = 0; I < nb; I++)
        for (int64_t J = 0; J < nb; J++) {
          bool on = false;
          for (int64_t i = I * bs; i < (I + 1) * bs && !on; i++)
            for (int64_t j = J * bs; j < (J + 1) * bs && !on; j++)
              on = mask ? mask[((size_t)h * (size_t)S + (size_t)i) * (size_t)S + (size_t)j] != 0
                        : pat_at(p, h, i, j);
          layout[((size_t)h * (size_t)nb + (size_t)I) * (size_t)nb + (size_t)J] = on;
        }
  }
  return TJ_OK;
}

static tj_status check_window(tj_blocks *b, const char *op, int64_t window) {
  if (window < 1 || window % 2 == 0)
    return perr(b, "%s: the window must be odd and >= 1 (self plus two wings), got %" PRId64, op, window);
  return TJ_OK;
}

static tj_status check_heads(tj_blocks *b, const char *op, int heads) {
  if (heads < 1) return perr(b, "%s: heads must be >= 1, got %d", op, heads);
  return TJ_OK;
}

static tj_status check_density(tj_blocks *b, const char *op, double density) {
  if (!(density >= 0.0 && density <= 1.0))
    return perr(b, "%s: density must be in [0, 1], got %g", op, density);
  return TJ_OK;
}

// Global token flags [S] from the list (malloc'd into *out; NULL when none).
static tj_status global_flags(tj_blocks *b, const char *op, int64_t S, const int64_t *tokens, int n,
                              uint8_t **out) {
  *out = NULL;
  if (n < 0 || (n > 0 && !tokens)) return perr(b, "%s: the global token list is invalid (n = %d)", op, n);
  if (S < 1) return perr(b, "%s: S must be >= 1, got %" PRId64, op, S);
  if (n == 0) return TJ_OK;
  uint8_t *g = tj_calloc((size_t)S, 1);
  if (!g) return b ? blk_error(b, TJ_ERR_NO_MEMORY, "out of memory") : TJ_ERR_NO_MEMORY;
  for (int t = 0; t < n; t++) {
    if (tokens[t] < 0 || tokens[t] >= S) {
      tj_free(g);
      return perr(b, "%s: global token %" PRId64 " (entry %d) is outside [0, %" PRId64 ")", op, tokens[t], t, S);
    }
    g[tokens[t]] = 1;
  }
  *out = g;
  return TJ_OK;
}

static tj_status check_grid(tj_blocks *b, const char *op, int64_t H, int64_t W, Pat *p) {
  if (H < 1 || W < 1 || H > INT32_MAX / W)
    return perr(b, "%s: the grid must be H x W with H, W >= 1, got %" PRId64 " x %" PRId64, op, H, W);
  p->S = H * W;
  p->W = W;
  return TJ_OK;
}

tj_status tj_pattern_local_1d(tj_blocks *b, int64_t S, int64_t window, int64_t bs, uint8_t *mask,
                              uint8_t *layout) {
  const char *op = "tj_pattern_local_1d";
  tj_status st = check_window(b, op, window);
  if (st != TJ_OK) return st;
  Pat p = { .kind = PAT_LOCAL_1D, .S = S, .half = window / 2 };
  return fill(b, op, &p, 1, bs, mask, layout);
}

tj_status tj_pattern_causal_1d(tj_blocks *b, int64_t S, int64_t bs, uint8_t *mask, uint8_t *layout) {
  Pat p = { .kind = PAT_CAUSAL_1D, .S = S };
  return fill(b, "tj_pattern_causal_1d", &p, 1, bs, mask, layout);
}

tj_status tj_pattern_random(tj_blocks *b, int64_t S, int heads, double density, uint64_t seed, int64_t bs,
                            uint8_t *mask, uint8_t *layout) {
  const char *op = "tj_pattern_random";
  tj_status st;
  if ((st = check_heads(b, op, heads)) != TJ_OK || (st = check_density(b, op, density)) != TJ_OK) return st;
  Pat p = { .kind = PAT_RANDOM, .S = S, .density = density, .seed = seed };
  return fill(b, op, &p, heads, bs, mask, layout);
}

tj_status tj_pattern_global(tj_blocks *b, int64_t S, const int64_t *tokens, int ntokens, int64_t bs,
                            uint8_t *mask, uint8_t *layout) {
  const char *op = "tj_pattern_global";
  uint8_t *g;
  tj_status st = global_flags(b, op, S, tokens, ntokens, &g);
  if (st != TJ_OK) return st;
  Pat p = { .kind = PAT_GLOBAL, .S = S, .g = g };
  st = fill(b, op, &p, 1, bs, mask, layout);
  tj_free(g);
  return st;
}

tj_status tj_pattern_bigbird(tj_blocks *b, int64_t S, int heads, int64_t window, const int64_t *tokens,
                             int ntokens, double density, uint64_t seed, int64_t bs, uint8_t *mask,
                             uint8_t *layout) {
  const char *op = "tj_pattern_bigbird";
  tj_status st;
  if ((st = check_heads(b, op, heads)) != TJ_OK || (st = check_density(b, op, density)) != TJ_OK ||
      (st = check_window(b, op, window)) != TJ_OK)
    return st;
  uint8_t *g;
  if ((st = global_flags(b, op, S, tokens, ntokens, &g)) != TJ_OK) return st;
  Pat p = { .kind = PAT_BIGBIRD, .S = S, .half = window / 2, .g = g, .density = density, .seed = seed };
  st = fill(b, op, &p, heads, bs, mask, layout);
  tj_free(g);
  return st;
}

tj_status tj_pattern_longformer(tj_blocks *b, int64_t S, int64_t window, const int64_t *tokens, int ntokens,
                                int64_t bs, uint8_t *mask, uint8_t *layout) {
  const char *op = "tj_pattern_longformer";
  tj_status st = check_window(b, op, window);
  if (st != TJ_OK) return st;
  uint8_t *g;
  if ((st = global_flags(b, op, S, tokens, ntokens, &g)) != TJ_OK) return st;
  Pat p = { .kind = PAT_LONGFORMER, .S = S, .half = window / 2, .g = g };
  st = fill(b, op, &p, 1, bs, mask, layout);
  tj_free(g);
  return st;
}

tj_status tj_pattern_axial_2d(tj_blocks *b, int64_t H, int64_t W, int dim, int64_t bs, uint8_t *mask,
                              uint8_t *layout) {
  const char *op = "tj_pattern_axial_2d";
  Pat p = { .kind = PAT_AXIAL_2D, .dim = dim };
  tj_status st = check_grid(b, op, H, W, &p);
  if (st != TJ_OK) return st;
  if (dim > 1) return perr(b, "%s: dim must be -1 (both axes), 0 or 1, got %d", op, dim);
  return fill(b, op, &p, 1, bs, mask, layout);
}

tj_status tj_pattern_local_2d(tj_blocks *b, int64_t H, int64_t W, double distance, double p_norm, int64_t bs,
                              uint8_t *mask, uint8_t *layout) {
  const char *op = "tj_pattern_local_2d";
  Pat p = { .kind = PAT_LOCAL_2D, .dist = distance, .p = p_norm };
  tj_status st = check_grid(b, op, H, W, &p);
  if (st != TJ_OK) return st;
  if (!(p_norm >= 0.0)) return perr(b, "%s: p must be >= 0 (or inf), got %g", op, p_norm);
  if (isnan(distance)) return perr(b, "%s: distance is NaN", op);
  return fill(b, op, &p, 1, bs, mask, layout);
}

tj_status tj_pattern_swin(tj_blocks *b, int64_t H, int64_t W, int64_t window, int64_t shift, int64_t bs,
                          uint8_t *mask, uint8_t *layout) {
  const char *op = "tj_pattern_swin";
  Pat p = { .kind = PAT_SWIN, .win = window };
  tj_status st = check_grid(b, op, H, W, &p);
  if (st != TJ_OK) return st;
  if (window < 1 || H % window || W % window)
    return perr(b, "%s: H = %" PRId64 " and W = %" PRId64 " must be multiples of the window %" PRId64, op, H,
                W, window);
  if (shift < 0 || shift >= window)
    return perr(b, "%s: shift must be in [0, window = %" PRId64 "), got %" PRId64, op, window, shift);
  p.shift = (window - shift) % window;
  return fill(b, op, &p, 1, bs, mask, layout);
}

tj_status tj_pattern_dilated_2d(tj_blocks *b, int64_t H, int64_t W, int64_t k, int64_t bs, uint8_t *mask,
                                uint8_t *layout) {
  const char *op = "tj_pattern_dilated_2d";
  Pat p = { .kind = PAT_DILATED_2D, .k = k };
  tj_status st = check_grid(b, op, H, W, &p);
  if (st != TJ_OK) return st;
  if (k < 1) return perr(b, "%s: k must be >= 1, got %" PRId64, op, k);
  return fill(b, op, &p, 1, bs, mask, layout);
}

tj_status tj_pattern_to_layout(tj_blocks *b, const uint8_t *mask, int heads, int64_t S, int64_t bs,
                               uint8_t *layout) {
  const char *op = "tj_pattern_to_layout";
  tj_status st = check_heads(b, op, heads);
  if (st != TJ_OK) return st;
  if (!mask || !layout) return perr(b, "%s: mask and layout must not be NULL", op);
  if (S < 1 || bs < 1 || S % bs != 0)
    return perr(b, "%s: S = %" PRId64 " is not a multiple of the block size %" PRId64, op, S, bs);
  int64_t nb = S / bs;
  for (int h = 0; h < heads; h++)
    for (int64_t I = 0; I < nb; I++)
      for (int64_t J = 0; J < nb; J++) {
        bool on = false;
        for (int64_t i = I * bs; i < (I + 1) * bs && !on; i++) {
          const uint8_t *row = mask + ((size_t)h * (size_t)S + (size_t)i) * (size_t)S;
          for (int64_t j = J * bs; j < (J + 1) * bs && !on; j++) on = row[j] != 0;
        }
        layout[((size_t)h * (size_t)nb + (size_t)I) * (size_t)nb + (size_t)J] = on;
      }
  return TJ_OK;
}
