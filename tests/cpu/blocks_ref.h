/* blocks_ref.h: host tensors and double-precision references for the block
 * tests (tests/cpu/test_blocks.c, tests/gpu/test_blocks.c). Header-only and
 * public-API only, so the GPU suite (linked against the shared library) can
 * use it too.
 *
 * A HostT is a DLTensor on kDLCPU over a malloc'd buffer, with explicit
 * strides. Values are stored rounded to the dtype, and the references read
 * them back, so kernel and reference see the same inputs; what remains is
 * the kernel's f32 arithmetic and the rounding of its output, which the
 * per-dtype tolerance (ref_tol) covers.
 */
#ifndef TJ_BLOCKS_REF_H
#define TJ_BLOCKS_REF_H

#include <dlpack/dlpack.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tilejit/blocks.h"

static inline uint16_t ref_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to inf
  if (ax < 0x38800000u) {                                      // subnormal or zero in f16
    float af;
    memcpy(&af, &ax, 4);
    float scaled = af * 16777216.0f;                           // 2^24: units of the f16 subnormal step
    uint32_t m = (uint32_t)nearbyintf(scaled);
    return (uint16_t)(sign | m);
  }
  uint32_t e = ((ax >> 23) - 112) << 10;
  uint32_t m = ax & 0x7fffffu;
  uint32_t h = e | (m >> 13);
  uint32_t rest = m & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
  return (uint16_t)(sign | h);
}

static inline float ref_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = ldexpf((float)m, -24);
    return sign ? -f : f;
  }
  uint32_t x = e == 31 ? (sign | 0x7f800000u | (m << 13)) : (sign | ((e + 112) << 23) | (m << 13));
  memcpy(&f, &x, 4);
  return f;
}

static inline uint16_t ref_f32_to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

static inline float ref_bf16_to_f32(uint16_t h) {
  uint32_t x = (uint32_t)h << 16;
  float f;
  memcpy(&f, &x, 4);
  return f;
}

typedef struct HostT {
  DLTensor t;
  int64_t shape[4];
  int64_t strides[4];
  void *buf;
  size_t nbytes;      // allocation (covers the strided span)
  tj_dtype dt;
} HostT;

static inline DLDataType ref_dl_dtype(tj_dtype dt) {
  DLDataType d;
  d.lanes = 1;
  d.code = dt == TJ_BF16 ? kDLBfloat : kDLFloat;
  d.bits = dt == TJ_F32 ? 32 : dt == TJ_F64 ? 64 : 16;
  return d;
}

static inline int ref_esize(tj_dtype dt) { return dt == TJ_F32 ? 4 : dt == TJ_F64 ? 8 : 2; }

// strides NULL: compact. The buffer covers the span and is filled with a
// sentinel (NaN-ish pattern 0xAB) so that unwritten elements stand out.
static inline void host_init(HostT *a, tj_dtype dt, int nd, const int64_t *shape, const int64_t *strides) {
  memset(a, 0, sizeof *a);
  a->dt = dt;
  int64_t span = 1, run = 1;
  bool empty = false;
  for (int d = nd - 1; d >= 0; d--) {
    a->shape[d] = shape[d];
    a->strides[d] = strides ? strides[d] : run;
    run *= shape[d] > 1 ? shape[d] : 1;
    if (shape[d] == 0) empty = true;
    else span += (shape[d] - 1) * a->strides[d];
  }
  if (empty) span = 0;
  a->nbytes = (size_t)(span > 0 ? span : 1) * (size_t)ref_esize(dt);
  a->buf = malloc(a->nbytes);
  memset(a->buf, 0xAB, a->nbytes);
  a->t.data = a->buf;
  a->t.device.device_type = kDLCPU;
  a->t.device.device_id = 0;
  a->t.ndim = nd;
  a->t.dtype = ref_dl_dtype(dt);
  a->t.shape = a->shape;
  a->t.strides = a->strides;
  a->t.byte_offset = 0;
}

static inline void host_free(HostT *a) { free(a->buf); a->buf = NULL; }

static inline int64_t host_rows(const HostT *a) {
  int64_t m = 1;
  for (int d = 0; d < a->t.ndim - 1; d++) m *= a->shape[d];
  return m;
}
static inline int64_t host_k(const HostT *a) { return a->shape[a->t.ndim - 1]; }

// Element offset of (row r, column j), rows flattened over the leading dims.
static inline int64_t host_off(const HostT *a, int64_t r, int64_t j) {
  int64_t off = j * a->strides[a->t.ndim - 1];
  for (int d = a->t.ndim - 2; d >= 0; d--) {
    off += (r % a->shape[d]) * a->strides[d];
    r /= a->shape[d];
  }
  return off;
}

static inline double host_get_at(const HostT *a, int64_t off) {
  const char *p = (const char *)a->buf + off * ref_esize(a->dt);
  uint16_t h;
  float f;
  switch (a->dt) {
  case TJ_F16: memcpy(&h, p, 2); return ref_f16_to_f32(h);
  case TJ_BF16: memcpy(&h, p, 2); return ref_bf16_to_f32(h);
  case TJ_F32: memcpy(&f, p, 4); return f;
  default: { double v; memcpy(&v, p, 8); return v; }
  }
}

static inline void host_set_at(HostT *a, int64_t off, double v) {
  char *p = (char *)a->buf + off * ref_esize(a->dt);
  uint16_t h;
  float f = (float)v;
  switch (a->dt) {
  case TJ_F16: h = ref_f32_to_f16(f); memcpy(p, &h, 2); break;
  case TJ_BF16: h = ref_f32_to_bf16(f); memcpy(p, &h, 2); break;
  case TJ_F32: memcpy(p, &f, 4); break;
  default: memcpy(p, &v, 8); break;
  }
}

static inline double host_get(const HostT *a, int64_t r, int64_t j) { return host_get_at(a, host_off(a, r, j)); }
static inline void host_set(HostT *a, int64_t r, int64_t j, double v) { host_set_at(a, host_off(a, r, j), v); }

// Deterministic pseudo-random values in [lo, hi).
static inline double ref_rand(uint64_t *s, double lo, double hi) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return lo + (hi - lo) * (double)(*s >> 11) / 9007199254740992.0;
}

static inline void host_fill(HostT *a, uint64_t seed, double lo, double hi) {
  int64_t m = host_rows(a), k = host_k(a);
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < k; j++) host_set(a, r, j, ref_rand(&seed, lo, hi));
}

// Relative tolerance per dtype: the output rounding (f16 2^-11, bf16 2^-8)
// with a factor of 4 for the f32 arithmetic before it; f32 allows the GPU's
// approximate exp/log/rsqrt.
static inline double ref_tol(tj_dtype dt) {
  return dt == TJ_F16 ? 4.0 * 4.9e-4 : dt == TJ_BF16 ? 4.0 * 3.9e-3 : 2e-5;
}

// Largest error of got against want (m x k doubles, row-major), scaled as
// |g - w| / (|w| + 0.05 * max|want| + 1e-30): relative for large values,
// absolute (against the tensor's scale) for the small ones that rounding to
// f16/bf16 makes coarse. NaN in either counts as infinite unless both are
// the same infinity.
// scale_min raises the floor where the result is a small difference of
// large terms (the norm backward pass at K = 1): the error is then judged
// against the terms.
static inline double ref_err_scaled(const HostT *got, const double *want, int64_t m, int64_t k,
                                    double scale_min) {
  double scale = scale_min;
  for (int64_t i = 0; i < m * k; i++)
    if (isfinite(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
  // Below the smallest normal f16 (6.1e-5) the spacing is fixed at 2^-24, so
  // half of it is the rounding any correct result may carry there (softmax
  // of a 262144-wide row lives in that range).
  double quantum = got->dt == TJ_F16 ? ldexp(1.0, -25) : 0.0;
  double worst = 0.0;
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < k; j++) {
      double g = host_get(got, r, j), w = want[r * k + j];
      if (isinf(w) && g == w) continue;
      double e = fmax(fabs(g - w) - quantum, 0.0) / (fabs(w) + 0.05 * scale + 1e-30);
      if (!(e == e)) return INFINITY;
      if (e > worst) worst = e;
    }
  return worst;
}

static inline double ref_err(const HostT *got, const double *want, int64_t m, int64_t k) {
  return ref_err_scaled(got, want, m, k, 0.0);
}

// The size of the terms of the norm backward pass: max |dy * w * rstd|.
static inline double ref_norm_bwd_scale(const HostT *dy, const HostT *w, const float *rstd) {
  int64_t m = host_rows(dy), k = host_k(dy);
  double s = 0;
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < k; j++) {
      double t = fabs(host_get(dy, r, j) * (w ? host_get_at(w, j) : 1.0) * rstd[r]);
      if (t > s) s = t;
    }
  return s;
}

// ---------------------------------------------------------------- references

// softmax over row r of x (K = k), row index within the sequence i (for
// causal), mask row (NULL: none).
static inline void ref_softmax(const HostT *x, const HostT *mask, int log_, int causal, double *out) {
  int64_t m = host_rows(x), k = host_k(x);
  int64_t seq = x->t.ndim >= 2 ? x->shape[x->t.ndim - 2] : 1;
  int64_t mrows = mask ? host_rows(mask) : 0;
  for (int64_t r = 0; r < m; r++) {
    int64_t i = r % seq;
    int64_t lim = causal ? (i + 1 < k ? i + 1 : k) : k;
    double mx = -INFINITY;
    double *o = out + r * k;
    for (int64_t j = 0; j < k; j++) {
      double v = -INFINITY;
      if (j < lim) v = host_get(x, r, j) + (mask ? host_get(mask, mrows == 1 ? 0 : i, j) : 0.0);
      o[j] = v;
      if (v > mx) mx = v;
    }
    double s = 0;
    for (int64_t j = 0; j < k; j++) s += j < lim ? exp(o[j] - mx) : 0.0;
    for (int64_t j = 0; j < k; j++)
      o[j] = log_ ? (j < lim ? o[j] - mx - log(s) : -INFINITY) : (j < lim ? exp(o[j] - mx) / s : 0.0);
  }
}

static inline void ref_softmax_bwd(const HostT *y, const HostT *dy, int log_, int causal, double *out) {
  int64_t m = host_rows(y), k = host_k(y);
  int64_t seq = y->t.ndim >= 2 ? y->shape[y->t.ndim - 2] : 1;
  for (int64_t r = 0; r < m; r++) {
    int64_t i = r % seq, lim = causal ? (i + 1 < k ? i + 1 : k) : k;
    double s = 0;
    for (int64_t j = 0; j < lim; j++) s += log_ ? host_get(dy, r, j) : host_get(y, r, j) * host_get(dy, r, j);
    for (int64_t j = 0; j < k; j++) {
      double g = host_get(dy, r, j), p = host_get(y, r, j);
      out[r * k + j] = j >= lim ? 0.0 : log_ ? g - exp(p) * s : p * (g - s);
    }
  }
}

// LayerNorm (rms = 0) or RMSNorm forward; mean/rstd per row.
static inline void ref_norm(const HostT *x, const HostT *w, const HostT *b, double eps, int rms,
                            double *y, double *mean, double *rstd) {
  int64_t m = host_rows(x), k = host_k(x);
  for (int64_t r = 0; r < m; r++) {
    double mu = 0, var = 0;
    if (!rms) {
      for (int64_t j = 0; j < k; j++) mu += host_get(x, r, j);
      mu /= (double)k;
    }
    for (int64_t j = 0; j < k; j++) {
      double d = host_get(x, r, j) - mu;
      var += d * d;
    }
    double rs = 1.0 / sqrt(var / (double)k + eps);
    if (mean) mean[r] = mu;
    if (rstd) rstd[r] = rs;
    for (int64_t j = 0; j < k; j++) {
      double v = (host_get(x, r, j) - mu) * rs;
      if (w) v *= host_get_at(w, j);
      if (b) v += host_get_at(b, j);
      y[r * k + j] = v;
    }
  }
}

// Backward from x, dy and the saved statistics (taken from the tensors the
// forward kernel wrote, so only the backward pass is being checked).
static inline void ref_norm_bwd(const HostT *x, const HostT *dy, const HostT *w, const float *mean,
                                const float *rstd, int rms, double *dx, double *dw, double *db) {
  int64_t m = host_rows(x), k = host_k(x);
  if (dw) for (int64_t j = 0; j < k; j++) dw[j] = 0;
  if (db) for (int64_t j = 0; j < k; j++) db[j] = 0;
  for (int64_t r = 0; r < m; r++) {
    double mu = rms ? 0.0 : mean[r], rs = rstd[r];
    double c1 = 0, c2 = 0;
    for (int64_t j = 0; j < k; j++) {
      double xh = (host_get(x, r, j) - mu) * rs;
      double wg = host_get(dy, r, j) * (w ? host_get_at(w, j) : 1.0);
      c1 += xh * wg;
      c2 += wg;
    }
    c1 /= (double)k;
    c2 /= (double)k;
    for (int64_t j = 0; j < k; j++) {
      double xh = (host_get(x, r, j) - mu) * rs;
      double g = host_get(dy, r, j);
      double wg = g * (w ? host_get_at(w, j) : 1.0);
      dx[r * k + j] = (wg - xh * c1 - (rms ? 0.0 : c2)) * rs;
      if (dw) dw[j] += g * xh;
      if (db) db[j] += g;
    }
  }
}

#endif
