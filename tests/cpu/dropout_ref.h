/* dropout_ref.h: the double-precision reference of the dropout block
 * (include/tilejit/blocks.h) for tests/cpu/test_dropout.c and
 * tests/gpu/test_dropout_gpu.c. Header-only, public API only.
 *
 * Philox-4x32-10 is written here from the Random123 description, apart
 * from the library's (dsl/tir_eval.h), and checked against Random123's
 * known-answer vectors; the mask follows the definition in blocks.h
 * literally (u >= p in double), not the kernels' integer threshold.
 */
#ifndef TJ_DROPOUT_REF_H
#define TJ_DROPOUT_REF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "blocks_ref.h"

static inline void ref_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t x[4] = { ctr[0], ctr[1], ctr[2], ctr[3] };
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < 10; r++) {
    uint64_t a = (uint64_t)x[0] * 0xD2511F53u, b = (uint64_t)x[2] * 0xCD9E8D57u;
    uint32_t y0 = (uint32_t)(b >> 32) ^ x[1] ^ k0, y2 = (uint32_t)(a >> 32) ^ x[3] ^ k1;
    x[0] = y0;
    x[1] = (uint32_t)b;
    x[2] = y2;
    x[3] = (uint32_t)a;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  for (int i = 0; i < 4; i++) out[i] = x[i];
}

// Whether element i (row-major index in the logical tensor) is kept.
static inline int ref_keep(uint64_t seed, uint64_t offset, uint64_t i, double p) {
  uint64_t c = offset + i / 4;
  uint32_t ctr[4] = { (uint32_t)c, (uint32_t)(c >> 32), 0, 0 }, key[2] = { (uint32_t)seed, (uint32_t)(seed >> 32) };
  uint32_t w[4];
  ref_philox(ctr, key, w);
  double u = (double)(w[i % 4] >> 8) * (1.0 / 16777216.0);
  return u >= p;
}

static inline double ref_relu(double v) { return v > 0 ? v : 0.0; }

// act(v) with parameters a (slope / beta / scale) and b (star_relu bias).
static inline double ref_act(tj_activation act, double v, double a, double b) {
  const double k = sqrt(2.0 / M_PI);
  switch (act) {
  case TJ_ACT_NONE: return v;
  case TJ_ACT_RELU: return ref_relu(v);
  case TJ_ACT_LEAKY_RELU: return v > 0 ? v : a * v;
  case TJ_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
  case TJ_ACT_GELU_TANH: return 0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v)));
  case TJ_ACT_SQUARED_RELU: return ref_relu(v) * ref_relu(v);
  case TJ_ACT_SMELU: return v <= -a ? 0.0 : v >= a ? v : (v + a) * (v + a) / (4.0 * a);
  case TJ_ACT_STAR_RELU: return a * ref_relu(v) * ref_relu(v) + b;
  default: return NAN;
  }
}

static inline double ref_act_grad(tj_activation act, double v, double a, double b) {
  (void)b;
  const double k = sqrt(2.0 / M_PI);
  switch (act) {
  case TJ_ACT_NONE: return 1.0;
  case TJ_ACT_RELU: return v > 0 ? 1.0 : 0.0;
  case TJ_ACT_LEAKY_RELU: return v > 0 ? 1.0 : a;
  case TJ_ACT_GELU: return 0.5 * (1.0 + erf(v / sqrt(2.0))) + v * exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
  case TJ_ACT_GELU_TANH: {
    double t = tanh(k * (v + 0.044715 * v * v * v));
    return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
  }
  case TJ_ACT_SQUARED_RELU: return 2.0 * ref_relu(v);
  case TJ_ACT_SMELU: return v <= -a ? 0.0 : v >= a ? 1.0 : (v + a) / (2.0 * a);
  case TJ_ACT_STAR_RELU: return 2.0 * a * ref_relu(v);
  default: return NAN;
  }
}

// Typical parameters per activation (act_a, act_b), as the tests use them.
static inline void ref_act_params(tj_activation act, double *a, double *b) {
  *a = act == TJ_ACT_LEAKY_RELU ? 0.1 : act == TJ_ACT_SMELU ? 1.5 : act == TJ_ACT_STAR_RELU ? 0.8944 : 0.0;
  *b = act == TJ_ACT_STAR_RELU ? -0.4472 : 0.0;
}

// Training-mode options for act with its test parameters.
static inline tj_dropout_opts opts_of(tj_activation act, double p, uint64_t seed, uint64_t offset) {
  tj_dropout_opts o;
  memset(&o, 0, sizeof o);
  o.p = p;
  o.training = 1;
  o.seed = seed;
  o.offset = offset;
  o.act = act;
  ref_act_params(act, &o.act_a, &o.act_b);
  return o;
}

// y = dropout(act(x + bias)) in double from the stored inputs; x is M x K
// rows (any strides), bias NULL or [K]. The scale is the kernels' f32 one.
static inline void ref_dropout_fwd(const HostT *x, const HostT *bias, const tj_dropout_opts *o, double *y) {
  int64_t m = host_rows(x), k = host_k(x);
  int drop = o->training && o->p > 0;
  double scale = (float)(1.0 / (1.0 - o->p));
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < k; c++) {
      double v = host_get(x, r, c) + (bias ? host_get_at(bias, c) : 0.0);
      double a = ref_act(o->act, v, o->act_a, o->act_b);
      y[r * k + c] = !drop ? a : ref_keep(o->seed, o->offset, (uint64_t)(r * k + c), o->p) ? a * scale : 0.0;
    }
}

// dx (M x K) and dbias ([K], may be NULL) in double.
static inline void ref_dropout_bwd(const HostT *dy, const HostT *x, const HostT *bias, const tj_dropout_opts *o,
                                   double *dx, double *dbias) {
  int64_t m = host_rows(dy), k = host_k(dy);
  int drop = o->training && o->p > 0;
  double scale = (float)(1.0 / (1.0 - o->p));
  if (dbias)
    for (int64_t c = 0; c < k; c++) dbias[c] = 0;
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < k; c++) {
      double g = host_get(dy, r, c);
      if (o->act != TJ_ACT_NONE) {
        double v = host_get(x, r, c) + (bias ? host_get_at(bias, c) : 0.0);
        g *= ref_act_grad(o->act, v, o->act_a, o->act_b);
      }
      if (drop) g = ref_keep(o->seed, o->offset, (uint64_t)(r * k + c), o->p) ? g * scale : 0.0;
      dx[r * k + c] = g;
      if (dbias) dbias[c] += g;
    }
}

#endif
