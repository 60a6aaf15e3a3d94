/* tir_eval.h: the element semantics of the tile IR, in one place.
 *
 * Constant folding (tir_opt.c) and the interpreter (codegen/interp*.c) both
 * evaluate ops through these functions, so a folded constant is bit-for-bit
 * what the interpreter would have computed at run time. Everything is static
 * inline so the interpreter's per-element loops inline them.
 *
 * Element representation (TirElem):
 *  - ints and bool: the value in .i, sign-extended for signed types and
 *    zero-extended for unsigned ones and bool (0/1). Every result is put back
 *    into that canonical form (tir_wrap), which is how "ints wrap" happens.
 *  - floats: the value in .f as a double that is exactly representable in the
 *    element type. f32/f16/bf16 ops compute in C float and round to the
 *    element type after every op (tir_round_f); f64 computes in double.
 *
 * Decisions beyond tir.h that the LLVM lowering must match:
 *  - cast to bool is `x != 0` (so NaN -> true), from any type.
 *  - cmp on floats is ordered except ne, which is unordered (C semantics).
 *  - abs of the most negative int is itself (wraps).
 *  - double -> f16/bf16 rounds once (via round-to-odd f32), never twice.
 */
#ifndef TJ_TIR_EVAL_H
#define TJ_TIR_EVAL_H

#include <math.h>
#include <string.h>

#include "tir.h"

typedef union TirElem {
  int64_t i;
  uint64_t u;
  double f;
} TirElem;

// Puts an integer result back into canonical form for dt (wraps).
static inline int64_t tir_wrap(Dtype dt, int64_t v) {
  switch (dt) {
  case DT_BOOL: return v != 0;
  case DT_I8: return (int8_t)(uint8_t)v;
  case DT_I16: return (int16_t)(uint16_t)v;
  case DT_I32: return (int32_t)(uint32_t)v;
  case DT_U8: return (uint8_t)v;
  case DT_U16: return (uint16_t)v;
  case DT_U32: return (uint32_t)v;
  default: return v;
  }
}

// Rounds an f32 result to the element type (f16/bf16 RNE; f32 as is).
static inline double tir_round_f(Dtype dt, float x) {
  switch (dt) {
  case DT_F16: return f16_to_f32(f32_to_f16(x));
  case DT_BF16: return bf16_to_f32(f32_to_bf16(x));
  default: return x;
  }
}

// double -> float rounding to odd: a float that, rounded again to any type of
// at most 22 significant bits (f16, bf16), gives the correctly rounded result of x.
static inline float tir_f32_round_odd(double x) {
  float f = (float)x;
  if ((double)f == x || isnan(x) || isinf(f)) return f;
  uint32_t bits;
  memcpy(&bits, &f, 4);
  if (bits & 1) return f;  // already odd: the neighbour towards x is even
  f = nextafterf(f, x > (double)f ? INFINITY : -INFINITY);
  return f;
}

// Rounds a double value to element type dt (a float type).
static inline double tir_round_d(Dtype dt, double x) {
  switch (dt) {
  case DT_F64: return x;
  case DT_F32: return (float)x;
  case DT_F16: return f16_to_f32(f32_to_f16(tir_f32_round_odd(x)));
  case DT_BF16: return bf16_to_f32(f32_to_bf16(tir_f32_round_odd(x)));
  default: return x;
  }
}

static inline int tir_int_bits(Dtype dt) { return dt == DT_BOOL ? 1 : dtype_bits(dt); }

// Built with unsigned shifts: 1 << 63 in int64_t is undefined behaviour.
static inline int64_t tir_int_min(Dtype dt) {
  return dtype_is_signed(dt) ? (int64_t)(~(uint64_t)0 << (dtype_bits(dt) - 1)) : 0;
}

// Saturating float -> int/bool conversion; NaN -> 0 (bool: NaN -> true).
static inline int64_t tir_f2i(Dtype to, double x) {
  if (to == DT_BOOL) return x != 0;
  if (isnan(x)) return 0;
  int bits = dtype_bits(to);
  if (dtype_is_signed(to)) {
    double lim = ldexp(1.0, bits - 1);  // 2^(bits-1), exact
    if (x >= lim) return (int64_t)(((uint64_t)1 << (bits - 1)) - 1);
    if (x <= -lim) return tir_int_min(to);
    return (int64_t)x;  // truncates; in range
  }
  double lim = ldexp(1.0, bits);
  if (x <= -1.0 || x != x) return 0;
  if (x >= lim) return bits == 64 ? (int64_t)UINT64_MAX : (int64_t)(((uint64_t)1 << bits) - 1);
  if (x < 0) return 0;
  return (int64_t)(uint64_t)x;
}

// int (canonical in `from`) -> float type `to`, round to nearest.
static inline double tir_i2f(Dtype from, Dtype to, int64_t v) {
  bool uns = !dtype_is_signed(from);
  switch (to) {
  case DT_F64: return uns ? (double)(uint64_t)v : (double)v;
  case DT_F32: return uns ? (float)(uint64_t)v : (float)v;
  default: {
    // f16/bf16: exact via double for |v| < 2^53; beyond, the double is
    // already rounded, and round-to-odd keeps the second rounding correct
    // except on exact ties of the double step, far outside f16 range.
    double d = uns ? (double)(uint64_t)v : (double)v;
    return tir_round_d(to, d);
  }
  }
}

static inline TirElem tir_eval_cast(Dtype from, Dtype to, TirElem a) {
  TirElem r;
  if (dtype_is_float(from)) {
    if (dtype_is_float(to)) r.f = tir_round_d(to, a.f);
    else r.i = tir_f2i(to, a.f);
  } else {
    if (dtype_is_float(to)) r.f = tir_i2f(from, to, a.i);
    else r.i = tir_wrap(to, a.i);
  }
  return r;
}

// The raw storage bits of an element (zero-extended to 64).
static inline uint64_t tir_elem_bits(Dtype dt, TirElem a) {
  switch (dt) {
  case DT_F16: return f32_to_f16((float)a.f);
  case DT_BF16: return f32_to_bf16((float)a.f);
  case DT_F32: {
    float f = (float)a.f;
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
  }
  case DT_F64: return a.u;
  default: {
    int b = dtype_bits(dt);
    return b >= 64 ? a.u : a.u & (((uint64_t)1 << b) - 1);
  }
  }
}

static inline TirElem tir_elem_from_bits(Dtype dt, uint64_t bits) {
  TirElem r;
  switch (dt) {
  case DT_F16: r.f = f16_to_f32((uint16_t)bits); break;
  case DT_BF16: r.f = bf16_to_f32((uint16_t)bits); break;
  case DT_F32: {
    uint32_t u = (uint32_t)bits;
    float f;
    memcpy(&f, &u, 4);
    r.f = f;
    break;
  }
  case DT_F64: r.u = bits; break;
  default: r.i = tir_wrap(dt, (int64_t)bits); break;
  }
  return r;
}

static inline TirElem tir_eval_bitcast(Dtype from, Dtype to, TirElem a) {
  return tir_elem_from_bits(to, tir_elem_bits(from, a));
}

static inline TirElem tir_eval_unary(TirOp op, Dtype dt, TirElem a) {
  TirElem r;
  if (dtype_is_float(dt)) {
    if (dt == DT_F64) {
      double x = a.f, y;
      switch (op) {
      case TIR_NEG: y = -x; break;
      case TIR_ABS: y = fabs(x); break;
      case TIR_EXP: y = exp(x); break;
      case TIR_EXP2: y = exp2(x); break;
      case TIR_LOG: y = log(x); break;
      case TIR_LOG2: y = log2(x); break;
      case TIR_SQRT: y = sqrt(x); break;
      case TIR_RSQRT: y = 1.0 / sqrt(x); break;
      case TIR_ERF: y = erf(x); break;
      case TIR_TANH: y = tanh(x); break;
      case TIR_FLOOR: y = floor(x); break;
      case TIR_CEIL: y = ceil(x); break;
      default: y = x; break;
      }
      r.f = y;
      return r;
    }
    float x = (float)a.f, y;
    switch (op) {
    case TIR_NEG: y = -x; break;
    case TIR_ABS: y = fabsf(x); break;
    case TIR_EXP: y = expf(x); break;
    case TIR_EXP2: y = exp2f(x); break;
    case TIR_LOG: y = logf(x); break;
    case TIR_LOG2: y = log2f(x); break;
    case TIR_SQRT: y = sqrtf(x); break;
    case TIR_RSQRT: y = 1.0f / sqrtf(x); break;
    case TIR_ERF: y = erff(x); break;
    case TIR_TANH: y = tanhf(x); break;
    case TIR_FLOOR: y = floorf(x); break;
    case TIR_CEIL: y = ceilf(x); break;
    default: y = x; break;
    }
    r.f = tir_round_f(dt, y);
    return r;
  }
  uint64_t u = a.u;
  switch (op) {
  case TIR_NEG: r.i = tir_wrap(dt, (int64_t)(0 - u)); break;
  case TIR_NOT: r.i = dt == DT_BOOL ? !a.i : tir_wrap(dt, (int64_t)~u); break;
  case TIR_ABS:
    r.i = dtype_is_signed(dt) && a.i < 0 ? tir_wrap(dt, (int64_t)(0 - u)) : a.i;
    break;
  default: r.i = a.i; break;
  }
  return r;
}

// Shift amount as an unsigned count; negative counts are huge.
static inline uint64_t tir_shift_amount(Dtype dt, TirElem b) {
  if (dtype_is_signed(dt) && b.i < 0) return UINT64_MAX;
  return b.u;
}

static inline TirElem tir_eval_binary(TirOp op, Dtype dt, TirElem a, TirElem b) {
  TirElem r;
  if (dtype_is_float(dt)) {
    if (dt == DT_F64) {
      double x = a.f, y = b.f, z;
      switch (op) {
      case TIR_ADD: z = x + y; break;
      case TIR_SUB: z = x - y; break;
      case TIR_MUL: z = x * y; break;
      case TIR_DIV: z = x / y; break;
      case TIR_REM: z = fmod(x, y); break;
      case TIR_MAX: z = fmax(x, y); break;
      case TIR_MIN: z = fmin(x, y); break;
      default: z = x; break;
      }
      r.f = z;
      return r;
    }
    float x = (float)a.f, y = (float)b.f, z;
    switch (op) {
    case TIR_ADD: z = x + y; break;
    case TIR_SUB: z = x - y; break;
    case TIR_MUL: z = x * y; break;
    case TIR_DIV: z = x / y; break;
    case TIR_REM: z = fmodf(x, y); break;
    case TIR_MAX: z = fmaxf(x, y); break;
    case TIR_MIN: z = fminf(x, y); break;
    default: z = x; break;
    }
    r.f = tir_round_f(dt, z);
    return r;
  }
  bool sgn = dtype_is_signed(dt);
  int bits = tir_int_bits(dt);
  uint64_t x = a.u, y = b.u;
  switch (op) {
  case TIR_ADD: r.i = tir_wrap(dt, (int64_t)(x + y)); break;
  case TIR_SUB: r.i = tir_wrap(dt, (int64_t)(x - y)); break;
  case TIR_MUL: r.i = tir_wrap(dt, (int64_t)(x * y)); break;
  case TIR_DIV:
    if (y == 0) r.i = tir_wrap(dt, -1);
    else if (sgn) r.i = (a.i == INT64_MIN && b.i == -1) ? INT64_MIN : tir_wrap(dt, a.i / b.i);
    else r.i = (int64_t)(x / y);
    break;
  case TIR_REM:
    if (y == 0) r.i = a.i;
    else if (sgn) r.i = b.i == -1 ? 0 : a.i % b.i;
    else r.i = (int64_t)(x % y);
    break;
  case TIR_MAX: r.i = sgn ? (a.i > b.i ? a.i : b.i) : (x > y ? a.i : b.i); break;
  case TIR_MIN: r.i = sgn ? (a.i < b.i ? a.i : b.i) : (x < y ? a.i : b.i); break;
  case TIR_AND: r.i = (int64_t)(x & y); break;
  case TIR_OR: r.i = (int64_t)(x | y); break;
  case TIR_XOR: r.i = (int64_t)(x ^ y); break;
  case TIR_SHL: {
    uint64_t s = tir_shift_amount(dt, b);
    r.i = s >= (uint64_t)bits ? 0 : tir_wrap(dt, (int64_t)(x << s));
    break;
  }
  case TIR_SHR: {
    uint64_t s = tir_shift_amount(dt, b);
    if (sgn) {
      // Arithmetic shift written with unsigned ops (>> of a negative value
      // is implementation-defined in C).
      if (s >= (uint64_t)bits) r.i = a.i < 0 ? -1 : 0;
      else r.i = a.i < 0 ? (int64_t)~(~x >> s) : (int64_t)(x >> s);
    } else {
      r.i = s >= (uint64_t)bits ? 0 : (int64_t)(x >> s);
    }
    break;
  }
  default: r.i = a.i; break;
  }
  return r;
}

static inline bool tir_eval_cmp(int pred, Dtype dt, TirElem a, TirElem b) {
  if (dtype_is_float(dt)) {
    double x = a.f, y = b.f;
    switch (pred) {
    case CMP_LT: return x < y;
    case CMP_LE: return x <= y;
    case CMP_GT: return x > y;
    case CMP_GE: return x >= y;
    case CMP_EQ: return x == y;
    default: return x != y;
    }
  }
  if (dtype_is_signed(dt)) {
    int64_t x = a.i, y = b.i;
    switch (pred) {
    case CMP_LT: return x < y;
    case CMP_LE: return x <= y;
    case CMP_GT: return x > y;
    case CMP_GE: return x >= y;
    case CMP_EQ: return x == y;
    default: return x != y;
    }
  }
  uint64_t x = a.u, y = b.u;
  switch (pred) {
  case CMP_LT: return x < y;
  case CMP_LE: return x <= y;
  case CMP_GT: return x > y;
  case CMP_GE: return x >= y;
  case CMP_EQ: return x == y;
  default: return x != y;
  }
}

static inline TirElem tir_eval_fma(Dtype dt, TirElem a, TirElem b, TirElem c) {
  TirElem r;
  if (dt == DT_F64) r.f = fma(a.f, b.f, c.f);
  else r.f = tir_round_f(dt, fmaf((float)a.f, (float)b.f, (float)c.f));
  return r;
}

// Philox-4x32-10 (Salmon et al., Random123).
static inline void tir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n1 = (uint32_t)p1;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    uint32_t n3 = (uint32_t)p0;
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

// philox(seed, ctr, lane) as tir.h defines it. Args are canonical ints, so
// a signed seed or counter narrower than 64 bits is sign-extended before its
// hi32 is taken (an i32 seed of -1 gives key (0xffffffff, 0xffffffff)).
static inline uint32_t tir_eval_philox(uint64_t seed, uint64_t ctr, uint64_t lane) {
  uint32_t c[4] = {(uint32_t)ctr, (uint32_t)(ctr >> 32), 0, 0};
  uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  uint32_t o[4];
  tir_philox4x32_10(c, k, o);
  return o[lane & 3];
}

#endif
