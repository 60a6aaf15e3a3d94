/* tir_verify.c: the IR checker.
 *
 * requires: a TirFunc from the builder; produces: true, or diagnostics of the
 * form "internal error: tir: <op>: <problem>" (a verifier failure is always a
 * bug in tilejit, never a user error).
 *
 * Checked: list links and parents; dense, unique value ids; SSA scoping (an
 * arg must be a param, an arg of an enclosing block, or a result defined
 * earlier in the same or an enclosing block); arity and type rules from the
 * op table; the custom rule of every RULE_NONE op; for/if/yield agreement.
 *
 * Block terminators: a FOR body or IF branch that produces values must end in
 * a YIELD carrying them; a block producing nothing may omit the YIELD. A YIELD
 * anywhere else is an error.
 *
 * The checker never trusts the IR it reads: every pointer is checked before
 * use, so it reports rather than crashes on garbage that the builder could
 * produce (NULL args after an arena failure, for example).
 */
#include "tir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_REPORTS = 8 };

typedef struct Verifier {
  const TirFunc *f;
  Diag *d;
  int nerrors;
  // Per value id: the value object that owns the id, and its scope state.
  const TirValue **owner;
  unsigned char *state;  // 0 unseen, 1 in scope, 2 out of scope
} Verifier;

enum { ST_UNSEEN, ST_LIVE, ST_DEAD };

__attribute__((format(printf, 3, 4)))
static void fail(Verifier *v, const TirInst *in, const char *fmt, ...) {
  v->nerrors++;
  if (v->nerrors > MAX_REPORTS) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *op = in && (unsigned)in->op < TIR_OP_COUNT ? tir_op_names[in->op] : NULL;
  const char *fn = v->f && v->f->name ? v->f->name : "?";
  if (in && in->loc.file && in->loc.line > 0) {
    if (op) diag_at(v->d, DIAG_ERROR, in->loc, "internal error: tir: %s: %s: %s", fn, op, msg);
    else diag_at(v->d, DIAG_ERROR, in->loc, "internal error: tir: %s: %s", fn, msg);
  } else {
    if (op) diag_plain(v->d, DIAG_ERROR, "internal error: tir: %s: %s: %s", fn, op, msg);
    else diag_plain(v->d, DIAG_ERROR, "internal error: tir: %s: %s", fn, msg);
  }
}

// Type text for messages; a small rotating set of buffers so one message can
// show several types.
typedef struct TypeText {
  char s[4][64];
  int k;
} TypeText;

static const char *tstr(TypeText *tt, TirType t) {
  StrBuf sb;
  sb_init(&sb);
  tir_type_str(&sb, t);
  char *out = tt->s[tt->k++ & 3];
  snprintf(out, 64, "%s", sb.data ? sb.data : "?");
  sb_free(&sb);
  return out;
}

static bool type_ok(TirType t) {
  if ((unsigned)t.dtype >= DT_COUNT || t.dtype == DT_VOID) return false;
  if (t.rank < 0 || t.rank > TIR_MAX_RANK) return false;
  int64_t n = 1;
  for (int i = 0; i < t.rank; i++) {
    if (t.shape[i] <= 0) return false;
    n *= t.shape[i];
    if (n > (int64_t)1 << 30) return false;
  }
  return true;
}

static bool is_float(TirType t) { return !t.ptr && dtype_is_float(t.dtype); }
static bool is_int(TirType t) { return !t.ptr && dtype_is_int(t.dtype); }
static bool is_bool(TirType t) { return !t.ptr && t.dtype == DT_BOOL; }
static bool is_scalar(TirType t) { return t.rank == 0; }

// Defines v (a result or a block arg) in the current scope.
static void define(Verifier *v, const TirInst *in, const TirValue *x) {
  if (!x) {
    fail(v, in, "null value");
    return;
  }
  if (x->id < 0 || x->id >= v->f->nvalues) {
    fail(v, in, "value id %d out of range 0..%d", x->id, v->f->nvalues - 1);
    return;
  }
  if (v->owner[x->id] && v->owner[x->id] != x) {
    fail(v, in, "two values share id %d", x->id);
    return;
  }
  if (v->state[x->id] != ST_UNSEEN) {
    fail(v, in, "value %%%d defined twice", x->id);
    return;
  }
  if (!type_ok(x->type)) fail(v, in, "value %%%d has an invalid type", x->id);
  v->owner[x->id] = x;
  v->state[x->id] = ST_LIVE;
}

static void undefine(Verifier *v, const TirValue *x) {
  if (x && x->id >= 0 && x->id < v->f->nvalues && v->owner[x->id] == x) v->state[x->id] = ST_DEAD;
}

static bool use_ok(Verifier *v, const TirInst *in, int i) {
  const TirValue *x = in->args ? in->args[i] : NULL;
  if (!x) {
    fail(v, in, "arg %d is null", i);
    return false;
  }
  if (x->id < 0 || x->id >= v->f->nvalues || v->owner[x->id] != x) {
    fail(v, in, "arg %d (value %%%d) is not defined before its use", i, x->id);
    return false;
  }
  if (v->state[x->id] == ST_DEAD) {
    fail(v, in, "arg %d (value %%%d) is used outside the block that defines it", i, x->id);
    return false;
  }
  if (v->state[x->id] != ST_LIVE) {
    fail(v, in, "arg %d (value %%%d) is not defined before its use", i, x->id);
    return false;
  }
  return true;
}

static void verify_block(Verifier *v, const TirBlock *b, const TirInst *owner);

// The yield closing a nested block must carry `n` values of the given types.
static void check_yield(Verifier *v, const TirInst *owner, const TirBlock *b, int n,
                        TirValue *const *types_of, const char *what) {
  TypeText tt = {.k = 0};
  const TirInst *y = b->last;
  if (!y || y->op != TIR_YIELD) {
    if (n > 0) fail(v, owner, "%s does not end in a yield of %d values", what, n);
    return;
  }
  if (y->nargs != n) {
    fail(v, owner, "%s yields %d values, expected %d", what, y->nargs, n);
    return;
  }
  for (int i = 0; i < n; i++) {
    if (!y->args[i] || !types_of[i]) continue;  // reported as a null arg already
    if (!tir_type_eq(y->args[i]->type, types_of[i]->type))
      fail(v, owner, "%s yields %s as value %d, expected %s", what, tstr(&tt, y->args[i]->type), i,
           tstr(&tt, types_of[i]->type));
  }
}

static void check_nres(Verifier *v, const TirInst *in, int want) {
  if (in->nres != want) fail(v, in, "has %d results, expected %d", in->nres, want);
}

// Checks the type rule of one inst whose args and results are non-null.
static void check_types(Verifier *v, const TirInst *in) {
  TypeText tt = {.k = 0};
  TirValue *const *a = in->args;
  const TirType *r = in->nres > 0 ? &in->res[0]->type : NULL;
  int rule = tir_op_rules[in->op];

  switch (rule) {
  case RULE_UNARY:
  case RULE_UNARY_F:
    check_nres(v, in, 1);
    if (!r) return;
    if (!tir_type_eq(a[0]->type, *r))
      fail(v, in, "result %s differs from operand %s", tstr(&tt, *r), tstr(&tt, a[0]->type));
    if (rule == RULE_UNARY_F && !is_float(*r)) fail(v, in, "needs a float operand, got %s", tstr(&tt, *r));
    if (in->op == TIR_NOT && !is_int(*r) && !is_bool(*r))
      fail(v, in, "needs an int or bool operand, got %s", tstr(&tt, *r));
    if ((in->op == TIR_NEG || in->op == TIR_ABS) && !is_int(*r) && !is_float(*r))
      fail(v, in, "needs an int or float operand, got %s", tstr(&tt, *r));
    return;
  case RULE_BINARY:
  case RULE_BINARY_I:
  case RULE_CMP:
  case RULE_TERNARY:
    check_nres(v, in, 1);
    if (!r) return;
    for (int i = 1; i < in->nargs; i++)
      if (!tir_type_eq(a[i]->type, a[0]->type))
        fail(v, in, "operand %d is %s, operand 0 is %s", i, tstr(&tt, a[i]->type), tstr(&tt, a[0]->type));
    if (rule == RULE_CMP) {
      if (!tir_type_eq(*r, tir_with_dtype(a[0]->type, DT_BOOL)))
        fail(v, in, "result %s, expected %s", tstr(&tt, *r), tstr(&tt, tir_with_dtype(a[0]->type, DT_BOOL)));
      if (a[0]->type.ptr) fail(v, in, "compares pointers");
      if ((unsigned)in->pred >= CMP_COUNT) fail(v, in, "bad predicate %d", in->pred);
      return;
    }
    if (!tir_type_eq(*r, a[0]->type))
      fail(v, in, "result %s differs from operands %s", tstr(&tt, *r), tstr(&tt, a[0]->type));
    if (rule == RULE_BINARY && !is_int(*r) && !is_float(*r))
      fail(v, in, "needs int or float operands, got %s", tstr(&tt, *r));
    if (rule == RULE_BINARY_I) {
      bool shift = in->op == TIR_SHL || in->op == TIR_SHR;
      if (!is_int(*r) && (shift || !is_bool(*r)))
        fail(v, in, "needs %s operands, got %s", shift ? "int" : "int or bool", tstr(&tt, *r));
    }
    if (rule == RULE_TERNARY && !is_float(*r)) fail(v, in, "needs float operands, got %s", tstr(&tt, *r));
    return;
  case RULE_NONE:
    break;
  default:
    fail(v, in, "bad rule %d in the op table", rule);
    return;
  }

  switch (in->op) {
  case TIR_CONST:
    check_nres(v, in, 1);
    if (r && r->ptr) fail(v, in, "pointer constant");
    if (r && r->dtype == DT_BOOL && in->cval.i != 0 && in->cval.i != 1)
      fail(v, in, "bool constant %lld is not 0 or 1", (long long)in->cval.i);
    return;
  case TIR_PROGRAM_ID:
  case TIR_NUM_PROGRAMS:
    check_nres(v, in, 1);
    if (in->axis < 0 || in->axis > 2) fail(v, in, "axis %d out of range 0..2", in->axis);
    if (r && !tir_type_eq(*r, tir_scalar(DT_I32))) fail(v, in, "result %s, expected i32", tstr(&tt, *r));
    return;
  case TIR_ARANGE: {
    check_nres(v, in, 1);
    if (in->hi <= in->lo) {
      fail(v, in, "empty range %d..%d", in->lo, in->hi);
      return;
    }
    int n = in->hi - in->lo;
    if (r && !tir_type_eq(*r, tir_type(DT_I32, 1, &n)))
      fail(v, in, "result %s, expected [%d] i32", tstr(&tt, *r), n);
    return;
  }
  case TIR_SPLAT:
    check_nres(v, in, 1);
    if (!r) return;
    if (!is_scalar(a[0]->type)) fail(v, in, "operand %s is not a scalar", tstr(&tt, a[0]->type));
    if (r->dtype != a[0]->type.dtype || r->ptr != a[0]->type.ptr)
      fail(v, in, "result %s has another element type than %s", tstr(&tt, *r), tstr(&tt, a[0]->type));
    return;
  case TIR_BROADCAST:
    check_nres(v, in, 1);
    if (!r) return;
    if (r->dtype != a[0]->type.dtype || r->ptr != a[0]->type.ptr || r->rank != a[0]->type.rank) {
      fail(v, in, "cannot broadcast %s to %s", tstr(&tt, a[0]->type), tstr(&tt, *r));
      return;
    }
    for (int i = 0; i < r->rank; i++)
      if (a[0]->type.shape[i] != r->shape[i] && a[0]->type.shape[i] != 1)
        fail(v, in, "cannot broadcast %s to %s (dim %d)", tstr(&tt, a[0]->type), tstr(&tt, *r), i);
    return;
  case TIR_EXPAND_DIMS: {
    check_nres(v, in, 1);
    if (!r) return;
    TirType t = a[0]->type;
    if (in->axis < 0 || in->axis > t.rank || t.rank >= TIR_MAX_RANK) {
      fail(v, in, "axis %d invalid for %s", in->axis, tstr(&tt, t));
      return;
    }
    TirType want = t;
    want.rank = t.rank + 1;
    for (int i = 0, k = 0; i < want.rank; i++) want.shape[i] = i == in->axis ? 1 : t.shape[k++];
    if (!tir_type_eq(*r, want)) fail(v, in, "result %s, expected %s", tstr(&tt, *r), tstr(&tt, want));
    return;
  }
  case TIR_RESHAPE:
    check_nres(v, in, 1);
    if (!r) return;
    if (r->dtype != a[0]->type.dtype || r->ptr != a[0]->type.ptr || tir_numel(*r) != tir_numel(a[0]->type))
      fail(v, in, "cannot reshape %s to %s", tstr(&tt, a[0]->type), tstr(&tt, *r));
    return;
  case TIR_TRANS: {
    check_nres(v, in, 1);
    if (!r) return;
    TirType t = a[0]->type;
    if (t.rank != 2) {
      fail(v, in, "operand %s is not 2-D", tstr(&tt, t));
      return;
    }
    TirType want = t;
    want.shape[0] = t.shape[1];
    want.shape[1] = t.shape[0];
    if (!tir_type_eq(*r, want)) fail(v, in, "result %s, expected %s", tstr(&tt, *r), tstr(&tt, want));
    return;
  }
  case TIR_PTR_ADD:
    check_nres(v, in, 1);
    if (!r) return;
    if (!a[0]->type.ptr) fail(v, in, "operand 0 %s is not a pointer", tstr(&tt, a[0]->type));
    if (!is_int(a[1]->type)) fail(v, in, "offset %s is not an int", tstr(&tt, a[1]->type));
    if (!tir_shape_eq(a[0]->type, a[1]->type))
      fail(v, in, "shapes differ: %s vs %s", tstr(&tt, a[0]->type), tstr(&tt, a[1]->type));
    if (!tir_type_eq(*r, a[0]->type))
      fail(v, in, "result %s differs from %s", tstr(&tt, *r), tstr(&tt, a[0]->type));
    return;
  case TIR_WHERE:
    check_nres(v, in, 1);
    if (!r) return;
    if (!is_bool(a[0]->type)) fail(v, in, "condition %s is not bool", tstr(&tt, a[0]->type));
    if (!tir_shape_eq(a[0]->type, a[1]->type))
      fail(v, in, "condition %s and value %s differ in shape", tstr(&tt, a[0]->type), tstr(&tt, a[1]->type));
    if (!tir_type_eq(a[1]->type, a[2]->type))
      fail(v, in, "values differ: %s vs %s", tstr(&tt, a[1]->type), tstr(&tt, a[2]->type));
    if (!tir_type_eq(*r, a[1]->type))
      fail(v, in, "result %s differs from %s", tstr(&tt, *r), tstr(&tt, a[1]->type));
    return;
  case TIR_CAST:
  case TIR_BITCAST:
    check_nres(v, in, 1);
    if (!r) return;
    if (r->ptr || a[0]->type.ptr) fail(v, in, "pointer operand or result");
    if (!tir_shape_eq(*r, a[0]->type))
      fail(v, in, "shapes differ: %s vs %s", tstr(&tt, a[0]->type), tstr(&tt, *r));
    if (in->op == TIR_BITCAST &&
        (r->dtype == DT_BOOL || a[0]->type.dtype == DT_BOOL || dtype_bits(r->dtype) != dtype_bits(a[0]->type.dtype)))
      fail(v, in, "%s and %s differ in bit width", tstr(&tt, a[0]->type), tstr(&tt, *r));
    return;
  case TIR_LOAD: {
    if (in->nargs < 1 || in->nargs > 3) {
      fail(v, in, "has %d args, expected 1 to 3", in->nargs);
      return;
    }
    unsigned want = (in->nargs >= 2 ? TIR_HAS_MASK : 0) | (in->nargs == 3 ? TIR_HAS_OTHER : 0);
    if (in->flags != want) fail(v, in, "flags %#x do not match %d args", in->flags, in->nargs);
    check_nres(v, in, 1);
    if (!r) return;
    TirType p = a[0]->type;
    if (!p.ptr) {
      fail(v, in, "address %s is not a pointer", tstr(&tt, p));
      return;
    }
    TirType val = tir_with_dtype(p, p.dtype);
    if (!tir_type_eq(*r, val)) fail(v, in, "result %s, expected %s", tstr(&tt, *r), tstr(&tt, val));
    if (in->nargs >= 2 && !tir_type_eq(a[1]->type, tir_with_dtype(p, DT_BOOL)))
      fail(v, in, "mask %s does not match address %s", tstr(&tt, a[1]->type), tstr(&tt, p));
    if (in->nargs == 3 && !tir_type_eq(a[2]->type, val))
      fail(v, in, "other %s, expected %s", tstr(&tt, a[2]->type), tstr(&tt, val));
    return;
  }
  case TIR_STORE: {
    if (in->nargs < 2 || in->nargs > 3) {
      fail(v, in, "has %d args, expected 2 or 3", in->nargs);
      return;
    }
    unsigned want = in->nargs == 3 ? TIR_HAS_MASK : 0;
    if (in->flags != want) fail(v, in, "flags %#x do not match %d args", in->flags, in->nargs);
    check_nres(v, in, 0);
    TirType p = a[0]->type;
    if (!p.ptr) {
      fail(v, in, "address %s is not a pointer", tstr(&tt, p));
      return;
    }
    TirType val = tir_with_dtype(p, p.dtype);
    if (!tir_type_eq(a[1]->type, val)) fail(v, in, "value %s, expected %s", tstr(&tt, a[1]->type), tstr(&tt, val));
    if (in->nargs == 3 && !tir_type_eq(a[2]->type, tir_with_dtype(p, DT_BOOL)))
      fail(v, in, "mask %s does not match address %s", tstr(&tt, a[2]->type), tstr(&tt, p));
    return;
  }
  case TIR_REDUCE: {
    check_nres(v, in, 1);
    if (!r) return;
    TirType t = a[0]->type;
    if (t.ptr) fail(v, in, "reduces pointers");
    if ((unsigned)in->redop >= RED_COUNT) {
      fail(v, in, "bad reduction %d", in->redop);
      return;
    }
    if (in->axis < 0 || in->axis >= t.rank) {
      fail(v, in, "axis %d invalid for %s", in->axis, tstr(&tt, t));
      return;
    }
    TirType shape = t;
    shape.rank = t.rank - 1;
    for (int i = in->axis; i < shape.rank; i++) shape.shape[i] = t.shape[i + 1];
    if (!tir_shape_eq(*r, shape) || r->ptr) {
      fail(v, in, "result %s, expected shape of %s", tstr(&tt, *r), tstr(&tt, shape));
      return;
    }
    Dtype s = t.dtype, d = r->dtype;
    bool ok;
    switch (in->redop) {
    case RED_SUM:  // may widen: f16 -> f32, i8 -> i32
      ok = (dtype_is_float(s) && dtype_is_float(d) && dtype_bits(d) >= dtype_bits(s)) ||
           ((dtype_is_int(s) || s == DT_BOOL) && dtype_is_int(d) && dtype_bits(d) >= dtype_bits(s));
      break;
    case RED_MAX:
    case RED_MIN:
      ok = d == s && s != DT_BOOL;
      break;
    default:
      ok = d == DT_I32 && s != DT_BOOL;
      break;
    }
    if (!ok) fail(v, in, "%s of %s cannot give %s", tir_redop_names[in->redop], tstr(&tt, t), tstr(&tt, *r));
    return;
  }
  case TIR_DOT: {
    check_nres(v, in, 1);
    if (!r) return;
    TirType ta = a[0]->type, tb = a[1]->type, tc = a[2]->type;
    if (ta.rank != 2 || tb.rank != 2 || tc.rank != 2 || ta.shape[1] != tb.shape[0] ||
        tc.shape[0] != ta.shape[0] || tc.shape[1] != tb.shape[1]) {
      fail(v, in, "shapes %s x %s + %s do not chain", tstr(&tt, ta), tstr(&tt, tb), tstr(&tt, tc));
      return;
    }
    if (!is_float(ta) || ta.dtype == DT_F64 || ta.dtype != tb.dtype)
      fail(v, in, "operands %s and %s must be the same f16, bf16 or f32", tstr(&tt, ta), tstr(&tt, tb));
    if (tc.dtype != DT_F32 || tc.ptr) fail(v, in, "accumulator %s is not f32", tstr(&tt, tc));
    if (!tir_type_eq(*r, tc)) fail(v, in, "result %s differs from accumulator %s", tstr(&tt, *r), tstr(&tt, tc));
    return;
  }
  case TIR_PHILOX:
    check_nres(v, in, 1);
    if (!r) return;
    for (int i = 0; i < 3; i++) {
      if (!is_int(a[i]->type)) fail(v, in, "operand %d %s is not an int", i, tstr(&tt, a[i]->type));
      if (!tir_shape_eq(a[i]->type, *r))
        fail(v, in, "operand %d %s differs in shape from result %s", i, tstr(&tt, a[i]->type), tstr(&tt, *r));
    }
    if (r->dtype != DT_U32 || r->ptr) fail(v, in, "result %s is not u32", tstr(&tt, *r));
    return;
  case TIR_FOR: {
    if (in->nargs < 3) {
      fail(v, in, "has %d args, expected lo, hi, step and inits", in->nargs);
      return;
    }
    TirType it = a[0]->type;
    if (!is_scalar(it) || (it.dtype != DT_I32 && it.dtype != DT_I64) || it.ptr)
      fail(v, in, "bound %s is not an i32 or i64 scalar", tstr(&tt, it));
    for (int i = 1; i < 3; i++)
      if (!tir_type_eq(a[i]->type, it))
        fail(v, in, "%s %s differs from lo %s", i == 1 ? "hi" : "step", tstr(&tt, a[i]->type), tstr(&tt, it));
    int ncar = in->nargs - 3;
    check_nres(v, in, ncar);
    if (in->nblocks != 1 || !in->blocks[0]) {
      fail(v, in, "has %d blocks, expected a body", in->nblocks);
      return;
    }
    const TirBlock *body = in->blocks[0];
    if (body->nargs != ncar + 1) {
      fail(v, in, "body has %d args, expected the induction variable and %d carried", body->nargs, ncar);
      return;
    }
    for (int i = 0; i < body->nargs; i++)
      if (!body->args || !body->args[i]) {
        fail(v, in, "body arg %d is null", i);
        return;
      }
    if (!tir_type_eq(body->args[0]->type, it))
      fail(v, in, "induction variable %s differs from lo %s", tstr(&tt, body->args[0]->type), tstr(&tt, it));
    for (int i = 0; i < ncar && in->nres == ncar; i++) {
      TirType ti = a[3 + i]->type;
      if (!tir_type_eq(body->args[1 + i]->type, ti))
        fail(v, in, "carried %d: body arg %s differs from init %s", i, tstr(&tt, body->args[1 + i]->type), tstr(&tt, ti));
      if (!tir_type_eq(in->res[i]->type, ti))
        fail(v, in, "carried %d: result %s differs from init %s", i, tstr(&tt, in->res[i]->type), tstr(&tt, ti));
    }
    if (in->nres == ncar) check_yield(v, in, body, ncar, in->res, "body");
    return;
  }
  case TIR_IF:
    if (in->nargs != 1) {
      fail(v, in, "has %d args, expected a condition", in->nargs);
      return;
    }
    if (!is_bool(a[0]->type) || !is_scalar(a[0]->type))
      fail(v, in, "condition %s is not a bool scalar", tstr(&tt, a[0]->type));
    if (in->nblocks < 1 || in->nblocks > 2 || !in->blocks[0] || (in->nblocks == 2 && !in->blocks[1])) {
      fail(v, in, "has %d blocks, expected then [and else]", in->nblocks);
      return;
    }
    if (in->nres > 0 && in->nblocks != 2) fail(v, in, "has %d results but no else block", in->nres);
    for (int k = 0; k < in->nblocks; k++) {
      if (in->blocks[k]->nargs != 0) fail(v, in, "%s block has args", k ? "else" : "then");
      check_yield(v, in, in->blocks[k], in->nres, in->res, k ? "else block" : "then block");
    }
    return;
  case TIR_YIELD: {
    check_nres(v, in, 0);
    const TirBlock *b = in->parent;
    if (!b || !b->owner || (b->owner->op != TIR_FOR && b->owner->op != TIR_IF))
      fail(v, in, "outside a for or if block");
    else if (in->next)
      fail(v, in, "is not the last inst of its block");
    return;
  }
  default:
    fail(v, in, "op %d has no type rule", in->op);
    return;
  }
}

static void verify_inst(Verifier *v, const TirBlock *b, const TirInst *in) {
  if ((unsigned)in->op >= TIR_OP_COUNT) {
    fail(v, NULL, "bad op %d", in->op);
    return;
  }
  if (in->parent != b) fail(v, in, "parent link does not point at its block");
  int want = tir_op_nargs[in->op];
  if (want >= 0 && in->nargs != want) {
    fail(v, in, "has %d args, expected %d", in->nargs, want);
    return;
  }
  if (in->nargs < 0 || in->nres < 0 || (in->nargs > 0 && !in->args) || (in->nres > 0 && !in->res)) {
    fail(v, in, "bad arg or result arrays");
    return;
  }
  bool ok = true;
  for (int i = 0; i < in->nargs; i++) ok &= use_ok(v, in, i);
  for (int i = 0; i < in->nres; i++)
    if (!in->res[i] || in->res[i]->def != in || in->res[i]->idx != i) {
      fail(v, in, "result %d is not linked to its inst", i);
      ok = false;
    }
  if (in->nblocks < 0 || in->nblocks > 2) {
    fail(v, in, "has %d blocks", in->nblocks);
    return;
  }
  bool nested = in->op == TIR_FOR || in->op == TIR_IF;
  if (!nested && in->nblocks != 0) fail(v, in, "has nested blocks");
  for (int k = 0; nested && k < in->nblocks; k++)
    if (in->blocks[k] && in->blocks[k]->owner != in) fail(v, in, "block %d is not owned by it", k);

  if (ok) check_types(v, in);

  // Results are visible only after the nested blocks, which cannot use them.
  for (int k = 0; nested && k < in->nblocks; k++)
    if (in->blocks[k]) verify_block(v, in->blocks[k], in);
  for (int i = 0; i < in->nres; i++) define(v, in, in->res[i]);
}

static void verify_block(Verifier *v, const TirBlock *b, const TirInst *owner) {
  if (b->owner != owner) fail(v, owner, "block owner link is wrong");
  if (b->nargs > 0 && !b->args) {
    fail(v, owner, "block arg array is null");
    return;
  }
  for (int i = 0; i < b->nargs; i++) {
    define(v, owner, b->args[i]);
    if (b->args[i] && (b->args[i]->def || b->args[i]->block != b || b->args[i]->idx != i))
      fail(v, owner, "block arg %d is not linked to its block", i);
  }
  const TirInst *prev = NULL;
  for (const TirInst *in = b->first; in; in = in->next) {
    if (in->prev != prev) fail(v, in, "prev link is broken");
    verify_inst(v, b, in);
    prev = in;
    if (v->nerrors > MAX_REPORTS) return;
  }
  if (b->last != prev) fail(v, owner, "block last link is broken");
  // Leaving the block: its values go out of scope.
  for (int i = 0; i < b->nargs; i++) undefine(v, b->args[i]);
  for (const TirInst *in = b->first; in; in = in->next)
    for (int i = 0; i < in->nres; i++) undefine(v, in->res[i]);
}

bool tir_verify(const TirFunc *f, Diag *d) { return tir_verify_status(f, d) == TJ_OK; }

tj_status tir_verify_status(const TirFunc *f, Diag *d) {
  if (!f || !f->body) {
    diag_plain(d, DIAG_ERROR, "internal error: tir: no function body");
    return TJ_ERR_INTERNAL;
  }
  Verifier v = {.f = f, .d = d};
  size_t n = f->nvalues > 0 ? (size_t)f->nvalues : 1;
  v.owner = tj_calloc(n, sizeof *v.owner);
  v.state = tj_calloc(n, 1);
  if (!v.owner || !v.state) {
    tj_free(v.owner);
    tj_free(v.state);
    diag_plain(d, DIAG_ERROR, "out of memory while verifying the tile IR of '%s'", f->name ? f->name : "?");
    return TJ_ERR_NO_MEMORY;
  }
  if (f->body->nargs != f->nparams) fail(&v, NULL, "%d params but %d body args", f->nparams, f->body->nargs);
  for (int i = 0; i < f->nparams && i < f->body->nargs; i++) {
    const TirParam *p = &f->params[i];
    const TirValue *x = f->body->args[i];
    if (p->value != x) fail(&v, NULL, "param %d is not body arg %d", i, i);
    else if (x && (x->type.rank != 0 || x->type.ptr != p->ptr || x->type.dtype != p->dtype))
      fail(&v, NULL, "param '%s' type does not match its value", p->name ? p->name : "?");
  }
  verify_block(&v, f->body, NULL);
  tj_free(v.owner);
  tj_free(v.state);
  if (v.nerrors > MAX_REPORTS)
    diag_plain(d, DIAG_ERROR, "internal error: tir: %d more problems", v.nerrors - MAX_REPORTS);
  return v.nerrors == 0 ? TJ_OK : TJ_ERR_INTERNAL;
}
