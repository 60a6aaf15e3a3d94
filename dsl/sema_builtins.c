/* sema_builtins.c: calls: the builtin functions and inlining of fn helpers.
 *
 * requires: sema_expr.c for evaluation and conversions; produces: SVals,
 * emitting tile IR for runtime results.
 *
 * A call binds its arguments (positional first, then name=value) against the
 * builtin's parameter list, evaluates them in source order and dispatches on
 * the builtin's code. Constant arguments fold where the result is a constant
 * (exp(1.0), cdiv(N, BLOCK), cast(3, f16)); everything else emits IR. Errors
 * point at the offending argument; the argument-count error points at the
 * call.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sema_int.h"

typedef enum BCode {
  B_PROGRAM_ID, B_NUM_PROGRAMS, B_ARANGE, B_FULL, B_ZEROS, B_LOAD, B_STORE,
  B_EXP, B_EXP2, B_LOG, B_LOG2, B_SQRT, B_RSQRT, B_ERF, B_TANH, B_FLOOR, B_CEIL,
  B_ABS, B_MAXIMUM, B_MINIMUM, B_FMA, B_WHERE, B_SIGMOID, B_CAST, B_BITCAST,
  B_TRANS, B_RESHAPE, B_SUM, B_MAX, B_MIN, B_ARGMAX, B_ARGMIN, B_DOT,
  B_PHILOX, B_RAND, B_RANDINT, B_CDIV,
} BCode;

typedef struct Builtin {
  const char *name;
  BCode code;
  int nreq, nmax;
  const char *params[3];
} Builtin;

static const Builtin builtins[] = {
  {"program_id", B_PROGRAM_ID, 1, 1, {"axis"}},
  {"num_programs", B_NUM_PROGRAMS, 1, 1, {"axis"}},
  {"arange", B_ARANGE, 2, 2, {"lo", "hi"}},
  {"full", B_FULL, 3, 3, {"shape", "value", "dtype"}},
  {"zeros", B_ZEROS, 2, 2, {"shape", "dtype"}},
  {"load", B_LOAD, 1, 3, {"ptr", "mask", "other"}},
  {"store", B_STORE, 2, 3, {"ptr", "value", "mask"}},
  {"exp", B_EXP, 1, 1, {"x"}},
  {"exp2", B_EXP2, 1, 1, {"x"}},
  {"log", B_LOG, 1, 1, {"x"}},
  {"log2", B_LOG2, 1, 1, {"x"}},
  {"sqrt", B_SQRT, 1, 1, {"x"}},
  {"rsqrt", B_RSQRT, 1, 1, {"x"}},
  {"erf", B_ERF, 1, 1, {"x"}},
  {"tanh", B_TANH, 1, 1, {"x"}},
  {"floor", B_FLOOR, 1, 1, {"x"}},
  {"ceil", B_CEIL, 1, 1, {"x"}},
  {"abs", B_ABS, 1, 1, {"x"}},
  {"maximum", B_MAXIMUM, 2, 2, {"a", "b"}},
  {"minimum", B_MINIMUM, 2, 2, {"a", "b"}},
  {"fma", B_FMA, 3, 3, {"a", "b", "c"}},
  {"where", B_WHERE, 3, 3, {"cond", "a", "b"}},
  {"sigmoid", B_SIGMOID, 1, 1, {"x"}},
  {"cast", B_CAST, 2, 2, {"x", "dtype"}},
  {"bitcast", B_BITCAST, 2, 2, {"x", "dtype"}},
  {"trans", B_TRANS, 1, 1, {"x"}},
  {"reshape", B_RESHAPE, 2, 2, {"x", "shape"}},
  {"sum", B_SUM, 1, 2, {"x", "axis"}},
  {"max", B_MAX, 1, 2, {"x", "axis"}},
  {"min", B_MIN, 1, 2, {"x", "axis"}},
  {"argmax", B_ARGMAX, 1, 2, {"x", "axis"}},
  {"argmin", B_ARGMIN, 1, 2, {"x", "axis"}},
  {"dot", B_DOT, 2, 3, {"a", "b", "acc"}},
  {"philox", B_PHILOX, 3, 3, {"seed", "ctr", "lane"}},
  {"rand", B_RAND, 2, 2, {"seed", "offsets"}},
  {"randint", B_RANDINT, 2, 2, {"seed", "offsets"}},
  {"cdiv", B_CDIV, 2, 2, {"a", "b"}},
};
enum { NBUILTINS = sizeof builtins / sizeof builtins[0] };

static const Builtin *find_builtin(const char *name) {
  for (int i = 0; i < NBUILTINS; i++)
    if (!strcmp(builtins[i].name, name)) return &builtins[i];
  return NULL;
}

bool builtin_exists(const char *name) { return find_builtin(name) != NULL; }

// One call being lowered: bound arguments and where they came from.
typedef struct Call {
  Sema *s;
  const Node *n;
  const char *name;
  SVal v[3];
  const Node *an[3];  // NULL when the argument was not given
  Loc loc;            // the call's span
} Call;

static Loc arg_loc(const Call *c, int i) { return c->an[i] ? expr_span(c->an[i]) : c->loc; }
static bool given(const Call *c, int i) { return c->an[i] != NULL; }

// The span of `name` in a `name=value` argument: the parser keeps no token
// for it, so walk back from the value over '=' in the source text.
static Loc argname_loc(const Node *arg) {
  Loc l = expr_span(arg);
  if (!l.src) return l;
  int p = l.offset - 1;
  while (p >= 0 && (l.src[p] == ' ' || l.src[p] == '\t')) p--;
  if (p < 0 || l.src[p] != '=') return l;
  p--;
  while (p >= 0 && (l.src[p] == ' ' || l.src[p] == '\t')) p--;
  int end = p + 1;
  while (p >= 0 && (l.src[p] == '_' || (l.src[p] >= 'a' && l.src[p] <= 'z') ||
                    (l.src[p] >= 'A' && l.src[p] <= 'Z') || (l.src[p] >= '0' && l.src[p] <= '9')))
    p--;
  int begin = p + 1;
  if (begin >= end || l.col - (l.offset - begin) < 1) return l;
  l.col -= l.offset - begin;
  l.offset = begin;
  l.len = end - begin;
  return l;
}

// Binds the call's arguments to up to 3 parameter slots. Returns false after
// reporting a problem.
static bool bind_args(Sema *s, const Node *n, const char *what, int nreq, int nmax,
                      const char *const *params, const Node **slots) {
  int count = 0;
  for (const Node *a = n->args; a; a = a->next) count++;
  if (count < nreq || count > nmax) {
    if (nreq == nmax)
      diag_at(s->d, DIAG_ERROR, n->loc, "%s takes %d argument%s, got %d", what, nreq,
              nreq == 1 ? "" : "s", count);
    else
      diag_at(s->d, DIAG_ERROR, n->loc, "%s takes %d to %d arguments, got %d", what, nreq, nmax,
              count);
    return false;
  }
  int pos = 0;
  bool seen_kw = false, ok = true;
  for (const Node *a = n->args; a; a = a->next) {
    if (!a->argname) {
      if (seen_kw) {
        diag_at(s->d, DIAG_ERROR, expr_span(a), "positional argument after a keyword argument");
        ok = false;
        continue;
      }
      slots[pos++] = a;
      continue;
    }
    seen_kw = true;
    int k = -1;
    for (int i = 0; i < nmax; i++)
      if (params[i] && !strcmp(params[i], a->argname)) k = i;
    if (k < 0) {
      diag_at(s->d, DIAG_ERROR, argname_loc(a), "unknown keyword argument '%s' for %s", a->argname,
              what);
      ok = false;
    } else if (slots[k]) {
      diag_at(s->d, DIAG_ERROR, argname_loc(a), "argument '%s' of %s given twice", a->argname, what);
      ok = false;
    } else {
      slots[k] = a;
    }
  }
  for (int i = 0; ok && i < nreq; i++) {
    if (!slots[i]) {
      diag_at(s->d, DIAG_ERROR, n->loc, "%s is missing argument '%s'", what, params[i]);
      ok = false;
    }
  }
  return ok;
}

// ---------------------------------------------------------------- helpers

static SVal err(Call *c, int i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static SVal err(Call *c, int i, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_vat(c->s->d, DIAG_ERROR, i >= 0 ? arg_loc(c, i) : c->loc, fmt, ap);
  va_end(ap);
  return sv_poison();
}

static bool const_int(Call *c, int i, int64_t *out) {
  if (c->v[i].kind != SV_INT) return false;
  *out = c->v[i].i;
  return true;
}

// A shape argument: a list of constant powers of two ([] is a scalar).
static bool get_shape(Call *c, int i, TirType *out) {
  Sema *s = c->s;
  SVal v = c->v[i];
  if (v.kind != SV_LIST) {
    err(c, i, "%s shape must be a list of constants like [64, 64], got %s", c->name, sv_desc(s, v));
    return false;
  }
  if (v.nlist > TIR_MAX_RANK) {
    err(c, i, "tiles have at most %d dims, got %d", TIR_MAX_RANK, v.nlist);
    return false;
  }
  TirType t = tir_scalar(DT_VOID);
  t.rank = v.nlist;
  int64_t numel = 1;
  const Node *e = c->an[i]->args;
  for (int k = 0; k < v.nlist; k++, e = e ? e->next : NULL) {
    Loc l = e ? expr_span(e) : arg_loc(c, i);
    if (v.list[k].kind != SV_INT) {
      diag_at(s->d, DIAG_ERROR, l, "shape dimensions must be integer constants, got %s",
              sv_desc(s, v.list[k]));
      return false;
    }
    int64_t d = v.list[k].i;
    if (!is_pow2(d)) {
      diag_at(s->d, DIAG_ERROR, l, "tile size %lld is not a power of two", (long long)d);
      return false;
    }
    if (d > SEMA_MAX_NUMEL || (numel *= d) > SEMA_MAX_NUMEL) {
      diag_at(s->d, DIAG_ERROR, arg_loc(c, i), "tile of %lld elements is too large (at most %d)",
              (long long)(numel > d ? numel : d), SEMA_MAX_NUMEL);
      return false;
    }
    t.shape[k] = (int)d;
  }
  *out = t;
  return true;
}

static bool get_dtype(Call *c, int i, Dtype *out) {
  if (c->v[i].kind != SV_DTYPE) {
    err(c, i, "%s needs a dtype such as f32 here, got %s", c->name, sv_desc(c->s, c->v[i]));
    return false;
  }
  *out = c->v[i].dt;
  return true;
}

// A numeric operand (constant or non-pointer value).
static bool numeric(Call *c, int i) {
  SVal v = c->v[i];
  if (sv_is_num_const(v)) return true;
  if (v.kind == SV_VALUE && !v.v->type.ptr) return true;
  err(c, i, "%s needs a numeric operand, got %s", c->name,
      v.kind == SV_VALUE ? "a pointer" : sv_desc(c->s, v));
  return false;
}

static SVal emit_val(Sema *s, TirOp op, TirType rt, TirValue **args, int n, Loc loc) {
  return sv_value(emit1(s, op, rt, args, n, loc));
}

// ---------------------------------------------------------------- math

static double fold_unary(BCode b, double x) {
  switch (b) {
  case B_EXP: return exp(x);
  case B_EXP2: return exp2(x);
  case B_LOG: return log(x);
  case B_LOG2: return log2(x);
  case B_SQRT: return sqrt(x);
  case B_RSQRT: return 1.0 / sqrt(x);
  case B_ERF: return erf(x);
  case B_TANH: return tanh(x);
  case B_FLOOR: return floor(x);
  case B_CEIL: return ceil(x);
  case B_SIGMOID: return 1.0 / (1.0 + exp(-x));
  default: return x;
  }
}

static TirOp unary_tir(BCode b) {
  switch (b) {
  case B_EXP: return TIR_EXP;
  case B_EXP2: return TIR_EXP2;
  case B_LOG: return TIR_LOG;
  case B_LOG2: return TIR_LOG2;
  case B_SQRT: return TIR_SQRT;
  case B_RSQRT: return TIR_RSQRT;
  case B_ERF: return TIR_ERF;
  case B_TANH: return TIR_TANH;
  case B_FLOOR: return TIR_FLOOR;
  default: return TIR_CEIL;
  }
}

static SVal float_unary(Call *c, BCode b) {
  Sema *s = c->s;
  if (!numeric(c, 0)) return sv_poison();
  SVal x = c->v[0];
  Dtype dt = sv_dtype(x);
  if (!dtype_is_float(dt)) return err(c, 0, "%s needs a float operand, got %s", c->name, dtype_name(dt));
  if (x.kind == SV_FLOAT) {
    double r = fold_unary(b, x.f);
    return x.weak ? sv_float(r, dt, true) : const_convert(sv_float(r, DT_F64, false), dt);
  }
  TirValue *v = x.v;
  if (b != B_SIGMOID) return emit_val(s, unary_tir(b), v->type, &v, 1, c->loc);
  // sigmoid(x) = 1 / (1 + exp(-x)), composed so every backend shares it.
  TirValue *t = emit1(s, TIR_NEG, v->type, &v, 1, c->loc);
  t = emit1(s, TIR_EXP, v->type, &t, 1, c->loc);
  TirValue *one = tir_const_float(s->f, s->blk, v->type, 1.0, c->loc);
  TirValue *a2[2] = {one, t};
  t = emit1(s, TIR_ADD, v->type, a2, 2, c->loc);
  a2[1] = t;
  return emit_val(s, TIR_DIV, v->type, a2, 2, c->loc);
}

static SVal abs_call(Call *c) {
  if (!numeric(c, 0)) return sv_poison();
  SVal x = c->v[0];
  Dtype dt = sv_dtype(x);
  if (dt == DT_BOOL) return err(c, 0, "abs needs a numeric operand, got bool");
  if (x.kind == SV_FLOAT) return sv_float(fabs(x.f), dt, x.weak);
  if (x.kind == SV_INT) {
    if (x.weak) return sv_int(x.i < 0 ? sema_neg(x.i) : x.i, dt, true);
    return dtype_is_signed(dt) && x.i < 0 ? const_convert(sv_int(sema_neg(x.i), DT_I64, false), dt) : x;
  }
  if (!dtype_is_signed(dt) && !dtype_is_float(dt)) return x;
  return emit_val(c->s, TIR_ABS, x.v->type, &x.v, 1, c->loc);
}

// maximum / minimum / fma: elementwise over unified operands.
static SVal nary_math(Call *c, BCode b, int n) {
  Sema *s = c->s;
  for (int i = 0; i < n; i++)
    if (!numeric(c, i)) return sv_poison();
  bool allc = true;
  for (int i = 0; i < n; i++) allc &= sv_is_num_const(c->v[i]);
  if (allc) {
    // Fold by promoting through the shared rules: a + 0 style via binary_op
    // would emit; compute directly instead.
    bool weak = c->v[0].weak;
    Dtype dt = c->v[0].dt;
    for (int i = 1; i < n; i++) {
      dt = promote(dt, weak, c->v[i].dt, c->v[i].weak, &weak);
      if (dt == DT_VOID) return err(c, i, "%s cannot combine %s and %s", c->name, dtype_name(c->v[0].dt), dtype_name(c->v[i].dt));
    }
    if (dt == DT_BOOL) return err(c, 0, "%s needs numeric operands, got bool", c->name);
    if (b == B_FMA && !dtype_is_float(dt)) return err(c, 0, "fma needs float operands, got %s", dtype_name(dt));
    SVal x[3];
    for (int i = 0; i < n; i++) x[i] = weak ? c->v[i] : const_convert(c->v[i], dt);
    if (dtype_is_float(dt)) {
      double a[3];
      for (int i = 0; i < n; i++) a[i] = x[i].kind == SV_FLOAT ? x[i].f : (double)x[i].i;
      double r = b == B_FMA ? fma(a[0], a[1], a[2]) : b == B_MAXIMUM ? fmax(a[0], a[1]) : fmin(a[0], a[1]);
      return weak ? sv_float(r, dt, true) : const_convert(sv_float(r, DT_F64, false), dt);
    }
    bool uns = !weak && !dtype_is_signed(dt);
    bool first = uns ? (uint64_t)x[0].i > (uint64_t)x[1].i : x[0].i > x[1].i;
    if (b == B_MINIMUM) first = !first;
    SVal r = first ? x[0] : x[1];
    r.dt = dt;
    r.weak = weak;
    return r;
  }
  TirValue *xv[3];
  Dtype dt;
  if (!unify(s, c->v, n, c->loc, c->name, xv, &dt)) return sv_poison();
  if (dt == DT_BOOL) return err(c, 0, "%s needs numeric operands, got bool", c->name);
  if (b == B_FMA && !dtype_is_float(dt)) return err(c, 0, "fma needs float operands, got %s", dtype_name(dt));
  TirOp op = b == B_FMA ? TIR_FMA : b == B_MAXIMUM ? TIR_MAX : TIR_MIN;
  return emit_val(s, op, xv[0]->type, xv, n, c->loc);
}

static SVal where_call(Call *c) {
  Sema *s = c->s;
  SVal cond = c->v[0];
  if (sv_dtype(cond) != DT_BOOL || (cond.kind == SV_VALUE && cond.v->type.ptr))
    return err(c, 0, "where condition must be bool, got %s", sv_desc(s, cond));
  for (int i = 1; i < 3; i++)
    if (!sv_is_num_const(c->v[i]) && c->v[i].kind != SV_VALUE)
      return err(c, i, "where needs tile or scalar values, got %s", sv_desc(s, c->v[i]));
  if (cond.kind == SV_BOOL && sv_is_num_const(c->v[1]) && sv_is_num_const(c->v[2])) {
    bool weak;
    Dtype dt = promote(c->v[1].dt, c->v[1].weak, c->v[2].dt, c->v[2].weak, &weak);
    if (dt == DT_VOID)
      return err(c, 2, "where cannot combine %s and %s", dtype_name(c->v[1].dt), dtype_name(c->v[2].dt));
    SVal r = c->v[cond.i ? 1 : 2];
    return weak ? r : const_convert(r, dt);
  }
  // Values first (dtype and their shape), then the condition's shape joins.
  TirType sh;
  if (!broadcast_shapes(sv_type(c->v[1]), sv_type(c->v[2]), &sh) ||
      !broadcast_shapes(sh, sv_type(cond), &sh)) {
    TirType a = sv_type(c->v[1]), b = sv_type(c->v[2]), t;
    if (broadcast_shapes(a, b, &t)) a = t, b = sv_type(cond);
    diag_at(s->d, DIAG_ERROR, c->loc, "cannot broadcast tile shapes %s and %s", shape_str(s, a),
            shape_str(s, b));
    return sv_poison();
  }
  SVal ops[2] = {c->v[1], c->v[2]};
  TirValue *xv[2];
  Dtype dt;
  if (!unify(s, ops, 2, c->loc, "where", xv, &dt)) return sv_poison();
  TirValue *a = coerce(s, sv_value(xv[0]), dt, sh, c->loc);
  TirValue *b = coerce(s, sv_value(xv[1]), dt, sh, c->loc);
  TirValue *cv = coerce(s, cond, DT_BOOL, sh, c->loc);
  TirValue *args[3] = {cv, a, b};
  if (!cv || !a || !b) return sv_poison();
  return emit_val(s, TIR_WHERE, a->type, args, 3, c->loc);
}

static SVal cast_call(Call *c, bool bit) {
  Sema *s = c->s;
  Dtype dt;
  if (!get_dtype(c, 1, &dt)) return sv_poison();
  SVal x = c->v[0];
  if (!numeric(c, 0)) return sv_poison();
  if (!bit) {
    if (sv_is_num_const(x)) return const_convert(x, dt);
    if (x.v->type.dtype == dt) return x;
    return emit_val(s, TIR_CAST, tir_with_dtype(x.v->type, dt), &x.v, 1, c->loc);
  }
  Dtype from = sv_dtype(x);
  if (sv_is_num_const(x) && x.weak) from = x.kind == SV_FLOAT ? DT_F32 : x.dt;
  if (from == DT_BOOL || dt == DT_BOOL || dtype_bits(from) != dtype_bits(dt))
    return err(c, 0, "bitcast needs types of equal width, got %s (%d bits) and %s (%d bits)",
               dtype_name(from), from == DT_BOOL ? 1 : dtype_bits(from), dtype_name(dt),
               dt == DT_BOOL ? 1 : dtype_bits(dt));
  TirValue *v = sv_is_num_const(x) ? coerce(s, x, from, tir_scalar(from), c->loc) : x.v;
  if (!v) return sv_poison();
  if (from == dt) return sv_value(v);
  return emit_val(s, TIR_BITCAST, tir_with_dtype(v->type, dt), &v, 1, c->loc);
}

// ---------------------------------------------------------------- tiles

static SVal program_id_call(Call *c, TirOp op) {
  int64_t axis;
  if (!const_int(c, 0, &axis) || axis < 0 || axis > 2)
    return err(c, 0, "%s axis must be a constant 0, 1 or 2", c->name);
  TirValue *v = emit1(c->s, op, tir_scalar(DT_I32), NULL, 0, c->loc);
  if (v) v->def->axis = (int)axis;
  return sv_value(v);
}

static SVal arange_call(Call *c) {
  int64_t lo, hi;
  if (!const_int(c, 0, &lo)) return err(c, 0, "arange bounds must be constants");
  if (!const_int(c, 1, &hi)) return err(c, 1, "arange bounds must be constants");
  if (lo < INT32_MIN || hi > INT32_MAX || hi <= lo)
    return err(c, -1, "arange needs lo < hi within i32, got arange(%lld, %lld)", (long long)lo,
               (long long)hi);
  int64_t n = hi - lo;
  if (!is_pow2(n)) return err(c, -1, "tile size %lld is not a power of two", (long long)n);
  if (n > SEMA_MAX_NUMEL)
    return err(c, -1, "tile of %lld elements is too large (at most %d)", (long long)n, SEMA_MAX_NUMEL);
  int sh = (int)n;
  TirValue *v = emit1(c->s, TIR_ARANGE, tir_type(DT_I32, 1, &sh), NULL, 0, c->loc);
  if (v) {
    v->def->lo = (int)lo;
    v->def->hi = (int)hi;
  }
  return sv_value(v);
}

static SVal full_call(Call *c, bool zeros) {
  Sema *s = c->s;
  TirType sh;
  Dtype dt;
  if (!get_shape(c, 0, &sh)) return sv_poison();
  if (!get_dtype(c, zeros ? 1 : 2, &dt)) return sv_poison();
  SVal val = zeros ? sv_int(0, DT_I32, true) : c->v[1];
  if (!zeros) {
    if (!sv_is_num_const(val) && !(val.kind == SV_VALUE && !val.v->type.ptr))
      return err(c, 1, "full value must be a scalar, got %s", sv_desc(s, val));
    if (val.kind == SV_VALUE && val.v->type.rank != 0)
      return err(c, 1, "full value must be a scalar, got %s", sv_desc(s, val));
  }
  sh.dtype = dt;
  return sv_value(coerce(s, val, dt, sh, c->loc));
}

static bool ptr_arg(Call *c, int i) {
  SVal p = c->v[i];
  if (p.kind == SV_VALUE && p.v->type.ptr) return true;
  err(c, i, "%s needs a pointer, got %s", c->name, sv_desc(c->s, p));
  return false;
}

// A mask argument: bool, constant or tile. *drop is set for a constant true.
static bool mask_arg(Call *c, int i, bool *drop) {
  SVal m = c->v[i];
  *drop = false;
  if (m.kind == SV_BOOL) {
    *drop = m.i != 0;
    return true;
  }
  if (m.kind == SV_VALUE && !m.v->type.ptr && m.v->type.dtype == DT_BOOL) return true;
  err(c, i, "%s mask must be bool, got %s", c->name, sv_desc(c->s, m));
  return false;
}

static bool join_shape(Call *c, TirType *sh, int i) {
  TirType r;
  if (broadcast_shapes(*sh, sv_type(c->v[i]), &r)) {
    *sh = r;
    return true;
  }
  diag_at(c->s->d, DIAG_ERROR, arg_loc(c, i), "cannot broadcast tile shapes %s and %s",
          shape_str(c->s, *sh), shape_str(c->s, sv_type(c->v[i])));
  return false;
}

static SVal load_call(Call *c) {
  Sema *s = c->s;
  if (!ptr_arg(c, 0)) return sv_poison();
  TirType sh = c->v[0].v->type;
  Dtype et = sh.dtype;
  bool has_mask = given(c, 1), drop = false;
  if (has_mask && (!mask_arg(c, 1, &drop) || !join_shape(c, &sh, 1))) return sv_poison();
  if (drop) has_mask = false;
  bool has_other = has_mask && given(c, 2);
  if (given(c, 2)) {
    SVal o = c->v[2];
    if (!sv_is_num_const(o) && !(o.kind == SV_VALUE && !o.v->type.ptr))
      return err(c, 2, "load other must be a number or a tile, got %s", sv_desc(s, o));
    if (!join_shape(c, &sh, 2)) return sv_poison();
  }
  TirValue *args[3];
  int n = 0;
  args[n++] = coerce(s, c->v[0], et, sh, c->loc);
  if (has_mask) args[n++] = coerce(s, c->v[1], DT_BOOL, sh, arg_loc(c, 1));
  if (has_other) args[n++] = coerce(s, c->v[2], et, sh, arg_loc(c, 2));
  TirValue *v = emit1(s, TIR_LOAD, tir_with_dtype(sh, et), args, n, c->loc);
  if (v) v->def->flags = (has_mask ? TIR_HAS_MASK : 0) | (has_other ? TIR_HAS_OTHER : 0);
  return sv_value(v);
}

static SVal store_call(Call *c) {
  Sema *s = c->s;
  if (!ptr_arg(c, 0)) return sv_poison();
  TirType sh = c->v[0].v->type;
  Dtype et = sh.dtype;
  SVal val = c->v[1];
  if (!sv_is_num_const(val) && !(val.kind == SV_VALUE && !val.v->type.ptr))
    return err(c, 1, "store value must be a number or a tile, got %s", sv_desc(s, val));
  Dtype vt = sv_dtype(val);
  if ((vt == DT_BOOL) != (et == DT_BOOL))
    return err(c, 1, "cannot store %s through a pointer to %s", sv_desc(s, val), dtype_name(et));
  if (!join_shape(c, &sh, 1)) return sv_poison();
  bool has_mask = given(c, 2), drop = false;
  if (has_mask && (!mask_arg(c, 2, &drop) || !join_shape(c, &sh, 2))) return sv_poison();
  if (drop) has_mask = false;
  TirValue *args[3];
  int n = 0;
  args[n++] = coerce(s, c->v[0], et, sh, c->loc);
  args[n++] = coerce(s, val, et, sh, arg_loc(c, 1));
  if (has_mask) args[n++] = coerce(s, c->v[2], DT_BOOL, sh, arg_loc(c, 2));
  for (int i = 0; i < n; i++)
    if (!args[i]) return sv_poison();
  TirInst *in = tir_inst_new(s->f, s->blk, TIR_STORE, args, n, NULL, 0, c->loc);
  if (in) in->flags = has_mask ? TIR_HAS_MASK : 0;
  return sv_void();
}

static bool tile_arg(Call *c, int i) {
  SVal x = c->v[i];
  if (x.kind == SV_VALUE && !x.v->type.ptr && x.v->type.rank > 0) return true;
  err(c, i, "%s needs a tile, got %s", c->name, x.kind == SV_VALUE && x.v->type.ptr
                                                     ? "a pointer" : sv_desc(c->s, x));
  return false;
}

static SVal trans_call(Call *c) {
  if (!tile_arg(c, 0)) return sv_poison();
  TirValue *x = c->v[0].v;
  if (x->type.rank != 2) return err(c, 0, "trans needs a 2-D tile, got %s", type_str(c->s, x->type));
  TirType t = x->type;
  t.shape[0] = x->type.shape[1];
  t.shape[1] = x->type.shape[0];
  return emit_val(c->s, TIR_TRANS, t, &x, 1, c->loc);
}

static SVal reshape_call(Call *c) {
  Sema *s = c->s;
  SVal x = c->v[0];
  if (!numeric(c, 0)) return sv_poison();
  TirType sh;
  if (!get_shape(c, 1, &sh)) return sv_poison();
  TirValue *v = materialize(s, x, c->loc);
  if (!v) return sv_poison();
  if (tir_numel(v->type) != tir_numel(sh))
    return err(c, 1, "cannot reshape %s (%lld elements) to %s (%lld elements)",
               shape_str(s, v->type), (long long)tir_numel(v->type), shape_str(s, sh),
               (long long)tir_numel(sh));
  sh.dtype = v->type.dtype;
  if (tir_shape_eq(sh, v->type)) return sv_value(v);
  return emit_val(s, TIR_RESHAPE, sh, &v, 1, c->loc);
}

static SVal reduce_call(Call *c, BCode b) {
  Sema *s = c->s;
  if (!tile_arg(c, 0)) return sv_poison();
  TirValue *x = c->v[0].v;
  Dtype dt = x->type.dtype;
  int rank = x->type.rank;
  if (dt == DT_BOOL && b != B_SUM)
    return err(c, 0, "%s needs a numeric tile, got %s", c->name, type_str(s, x->type));
  int axis = -1;
  if (given(c, 1)) {
    int64_t a;
    if (!const_int(c, 1, &a)) return err(c, 1, "%s axis must be a constant", c->name);
    if (a < -rank || a >= rank)
      return err(c, 1, "reduction axis %lld is out of range for a tile of rank %d", (long long)a, rank);
    axis = (int)(a < 0 ? a + rank : a);
  }
  // sum widens small types so it cannot overflow or lose precision.
  if (b == B_SUM) {
    Dtype to = dt;
    if (dt == DT_F16 || dt == DT_BF16) to = DT_F32;
    else if (dt == DT_BOOL || (dtype_is_int(dt) && dtype_bits(dt) < 32)) to = DT_I32;
    if (to != dt) x = emit1(s, TIR_CAST, tir_with_dtype(x->type, to), &x, 1, c->loc);
    if (!x) return sv_poison();
  }
  if (axis < 0) {
    // Every axis: flatten (row-major, so argmax indices are flat) and reduce once.
    if (rank > 1) {
      int n = (int)tir_numel(x->type);
      TirType t = tir_type(x->type.dtype, 1, &n);
      x = emit1(s, TIR_RESHAPE, t, &x, 1, c->loc);
      if (!x) return sv_poison();
    }
    axis = 0;
  }
  TirType rt = x->type;
  for (int i = axis; i < rt.rank - 1; i++) rt.shape[i] = rt.shape[i + 1];
  rt.rank--;
  int redop = b == B_SUM ? RED_SUM : b == B_MAX ? RED_MAX : b == B_MIN ? RED_MIN
            : b == B_ARGMAX ? RED_ARGMAX : RED_ARGMIN;
  if (redop == RED_ARGMAX || redop == RED_ARGMIN) rt.dtype = DT_I32;
  TirValue *v = emit1(s, TIR_REDUCE, rt, &x, 1, c->loc);
  if (v) {
    v->def->redop = redop;
    v->def->axis = axis;
  }
  return sv_value(v);
}

static SVal dot_call(Call *c) {
  Sema *s = c->s;
  if (!tile_arg(c, 0) || !tile_arg(c, 1)) return sv_poison();
  TirValue *a = c->v[0].v, *b = c->v[1].v;
  TirType ta = a->type, tb = b->type;
  if (ta.rank != 2) return err(c, 0, "dot needs 2-D tiles, got %s", type_str(s, ta));
  if (tb.rank != 2) return err(c, 1, "dot needs 2-D tiles, got %s", type_str(s, tb));
  if (ta.shape[1] != tb.shape[0])
    return err(c, -1, "dot shapes differ: %s x %s", shape_str(s, ta), shape_str(s, tb));
  for (int i = 0; i < 2; i++) {
    Dtype d = i ? tb.dtype : ta.dtype;
    if (d != DT_F16 && d != DT_BF16 && d != DT_F32)
      return err(c, i, "dot needs f16, bf16 or f32 operands, got %s", dtype_name(d));
  }
  if (ta.dtype != tb.dtype)
    return err(c, -1, "dot operands must have the same dtype, got %s and %s", dtype_name(ta.dtype),
               dtype_name(tb.dtype));
  if (ta.shape[0] < 16 || ta.shape[1] < 16 || tb.shape[1] < 16)
    return err(c, -1, "dot dimensions must be at least 16, got %s x %s", shape_str(s, ta),
               shape_str(s, tb));
  int mn[2] = {ta.shape[0], tb.shape[1]};
  TirType rt = tir_type(DT_F32, 2, mn);
  TirValue *acc;
  if (given(c, 2)) {
    SVal av = c->v[2];
    if (sv_is_num_const(av)) {
      acc = coerce(s, av, DT_F32, rt, arg_loc(c, 2));
    } else if (av.kind == SV_VALUE && tir_type_eq(av.v->type, rt)) {
      acc = av.v;
    } else {
      return err(c, 2, "dot accumulator must be %s, got %s", type_str(s, rt), sv_desc(s, av));
    }
  } else {
    acc = tir_const_float(s->f, s->blk, rt, 0.0, c->loc);
  }
  TirValue *args[3] = {a, b, acc};
  return emit_val(s, TIR_DOT, rt, args, 3, c->loc);
}

// philox(seed, ctr, lane) and the rand/randint built on it. Seed and counter
// go in as 64-bit ints so the key and counter words are well defined.
static SVal philox_call(Call *c, BCode b) {
  Sema *s = c->s;
  int n = b == B_PHILOX ? 3 : 2;
  for (int i = 0; i < n; i++) {
    SVal x = c->v[i];
    if (!(x.kind == SV_INT || (x.kind == SV_VALUE && !x.v->type.ptr && dtype_is_int(x.v->type.dtype))))
      return err(c, i, "%s needs integer operands, got %s", c->name,
                 x.kind == SV_VALUE && x.v->type.ptr ? "a pointer" : sv_desc(s, x));
  }
  TirType sh = sv_type(c->v[0]);
  for (int i = 1; i < n; i++)
    if (!join_shape(c, &sh, i)) return sv_poison();
  TirValue *args[3];
  for (int i = 0; i < 2; i++) {
    Dtype d = sv_dtype(c->v[i]);
    if (c->v[i].kind == SV_INT || dtype_bits(d) < 64) d = dtype_is_signed(d) || c->v[i].kind == SV_INT ? DT_I64 : DT_U64;
    args[i] = coerce(s, c->v[i], d, sh, arg_loc(c, i));
  }
  args[2] = b == B_PHILOX ? coerce(s, c->v[2], c->v[2].kind == SV_INT ? DT_I32 : sv_dtype(c->v[2]), sh, arg_loc(c, 2))
                          : coerce(s, sv_int(0, DT_I32, true), DT_I32, sh, c->loc);
  if (!args[0] || !args[1] || !args[2]) return sv_poison();
  TirType ut = tir_with_dtype(sh, DT_U32);
  TirValue *r = emit1(s, TIR_PHILOX, ut, args, 3, c->loc);
  if (b != B_RAND) return sv_value(r);
  // rand = (bits >> 8) * 2^-24: 24 random bits exactly representable in f32.
  TirValue *a2[2] = {r, tir_const_int(s->f, s->blk, ut, 8, c->loc)};
  TirValue *t = emit1(s, TIR_SHR, ut, a2, 2, c->loc);
  TirType ft = tir_with_dtype(sh, DT_F32);
  t = emit1(s, TIR_CAST, ft, &t, 1, c->loc);
  a2[0] = t;
  a2[1] = tir_const_float(s->f, s->blk, ft, ldexp(1.0, -24), c->loc);
  return emit_val(s, TIR_MUL, ft, a2, 2, c->loc);
}

static SVal cdiv_call(Call *c) {
  Sema *s = c->s;
  for (int i = 0; i < 2; i++) {
    Dtype d = sv_dtype(c->v[i]);
    if (!numeric(c, i)) return sv_poison();
    if (!dtype_is_int(d)) return err(c, i, "cdiv needs integer operands, got %s", dtype_name(d));
  }
  // (a + b - 1) / b, through the ordinary operators so constants fold.
  SVal t = binary_op(s, P_PLUS, c->v[0], c->v[1], c->loc);
  t = binary_op(s, P_MINUS, t, sv_int(1, DT_I32, true), c->loc);
  return binary_op(s, P_SLASH, t, c->v[1], c->loc);
}

// ---------------------------------------------------------------- fn inlining

static SVal inline_fn(Sema *s, const Node *n, const Func *fn) {
  const char *params[64] = {0};
  int np = 0;
  for (const Param *p = fn->params; p && np < 64; p = p->next) params[np++] = p->name;
  const Node *slots[64] = {0};
  if (!bind_args(s, n, fn->name, np, np, params, slots)) return sv_poison();
  SVal vals[64];
  bool bad = false;
  for (int i = 0; i < np; i++) {
    vals[i] = eval(s, slots[i]);
    if (vals[i].kind == SV_POISON) bad = true;
  }
  // depth_failed stops the other branches of a runaway recursion from
  // repeating it (2^32 inlinings); it clears at the outermost call.
  if (bad || (s->depth_failed && s->depth > 0)) return sv_poison();
  s->depth_failed = false;
  if (s->depth >= SEMA_MAX_DEPTH) {
    diag_at(s->d, DIAG_ERROR, n->loc, "recursion too deep: '%s' inlined more than %d levels deep",
            fn->name, SEMA_MAX_DEPTH);
    s->depth_failed = true;
    return sv_poison();
  }
  // An fn sees only its parameters and the predeclared names: lexical scope.
  Frame *saved = s->scope;
  bool saved_in_fn = s->in_fn;
  s->scope = s->globals;
  scope_push(s);
  int i = 0;
  for (const Param *p = fn->params; p && i < np; p = p->next, i++)
    scope_bind(s, p->name, vals[i], BIND_FNPARAM, p->loc);
  s->depth++;
  s->in_fn = true;
  SVal ret = sv_void();
  int errors0 = s->d->nerrors;
  lower_stmts(s, fn->body ? fn->body->body : NULL, &ret);
  // An error in the body was reported there; the call's value is unusable.
  if (s->d->nerrors > errors0) ret = sv_poison();
  s->depth--;
  s->in_fn = saved_in_fn;
  s->scope = saved;
  return ret;
}

// ---------------------------------------------------------------- dispatch

SVal eval_call(Sema *s, const Node *n) {
  const Func *fn = module_find(s->m, n->name);
  const Builtin *b = find_builtin(n->name);
  // fn helpers may shadow builtins; a kernel of a builtin's name does not.
  if (fn && fn->is_kernel && b) fn = NULL;
  if (fn && fn->is_kernel) {
    diag_at(s->d, DIAG_ERROR, n->loc, "cannot call kernel '%s'; only fn helpers can be called",
            n->name);
    return sv_poison();
  }
  if (fn) return inline_fn(s, n, fn);
  if (!b) {
    diag_at(s->d, DIAG_ERROR, n->loc, "unknown function '%s'", n->name);
    return sv_poison();
  }
  Call c;
  memset(&c, 0, sizeof c);
  c.s = s;
  c.n = n;
  c.name = b->name;
  c.loc = expr_span(n);
  if (!bind_args(s, n, b->name, b->nreq, b->nmax, b->params, c.an)) return sv_poison();
  bool bad = false;
  // `None` for an optional argument means "not given" (sum(x, axis=None)).
  for (int i = 0; i < 3; i++) {
    if (!c.an[i] || c.an[i]->kind != ND_NONE) continue;
    if (i < b->nreq) {
      diag_at(s->d, DIAG_ERROR, c.an[i]->loc, "argument '%s' of %s cannot be None", b->params[i],
              b->name);
      bad = true;
    }
    c.an[i] = NULL;
  }
  // Evaluate in source order so IR and errors follow the text.
  for (const Node *a = n->args; a; a = a->next)
    for (int i = 0; i < 3; i++)
      if (c.an[i] == a) {
        c.v[i] = eval(s, a);
        if (c.v[i].kind == SV_POISON) bad = true;
      }
  if (bad) return sv_poison();
  switch (b->code) {
  case B_PROGRAM_ID: return program_id_call(&c, TIR_PROGRAM_ID);
  case B_NUM_PROGRAMS: return program_id_call(&c, TIR_NUM_PROGRAMS);
  case B_ARANGE: return arange_call(&c);
  case B_FULL: return full_call(&c, false);
  case B_ZEROS: return full_call(&c, true);
  case B_LOAD: return load_call(&c);
  case B_STORE: return store_call(&c);
  case B_EXP: case B_EXP2: case B_LOG: case B_LOG2: case B_SQRT: case B_RSQRT:
  case B_ERF: case B_TANH: case B_FLOOR: case B_CEIL: case B_SIGMOID:
    return float_unary(&c, b->code);
  case B_ABS: return abs_call(&c);
  case B_MAXIMUM: case B_MINIMUM: return nary_math(&c, b->code, 2);
  case B_FMA: return nary_math(&c, b->code, 3);
  case B_WHERE: return where_call(&c);
  case B_CAST: return cast_call(&c, false);
  case B_BITCAST: return cast_call(&c, true);
  case B_TRANS: return trans_call(&c);
  case B_RESHAPE: return reshape_call(&c);
  case B_SUM: case B_MAX: case B_MIN: case B_ARGMAX: case B_ARGMIN:
    return reduce_call(&c, b->code);
  case B_DOT: return dot_call(&c);
  case B_PHILOX: case B_RAND: case B_RANDINT: return philox_call(&c, b->code);
  case B_CDIV: return cdiv_call(&c);
  }
  diag_at(s->d, DIAG_ERROR, n->loc, "internal error: builtin '%s' has no lowering", b->name);
  return sv_poison();
}
