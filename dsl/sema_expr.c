/* sema_expr.c: expressions: constants, promotion, implicit conversions, operators.
 *
 * requires: an AST from parse.c and a Sema context with an insertion block;
 * produces: SVals (sema_int.h), emitting tile IR for runtime values.
 *
 * Typing in one paragraph (the brief's rules, implemented by promote() and
 * coerce() and nowhere else): literals are weak and take the type of the
 * other operand (a weak float meeting a strong int gives f32); strong types
 * promote to the wider of the same kind, int with float gives the float,
 * signed with unsigned of the same width gives the unsigned one; bool mixes
 * with nothing. Shapes broadcast like numpy: align right, a dim is equal or
 * 1, missing leading dims count as 1. coerce() then spells the conversion out
 * in IR (cast, splat, expand_dims at the front, broadcast) because tile IR
 * ops need identical operand types.
 *
 * Constants fold here in int64 / double. Weak int arithmetic is exact in
 * int64 (a literal has no width yet); strong results wrap to their width and
 * strong f16/bf16/f32 results round after every op, as the runtime would.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sema_int.h"

// ---------------------------------------------------------------- SVals

SVal sv_poison(void) {
  SVal v;
  memset(&v, 0, sizeof v);
  v.kind = SV_POISON;
  return v;
}

SVal sv_void(void) {
  SVal v = sv_poison();
  v.kind = SV_VOID;
  return v;
}

SVal sv_int(int64_t i, Dtype dt, bool weak) {
  SVal v = sv_poison();
  v.kind = SV_INT;
  v.i = i;
  v.dt = dt;
  v.weak = weak;
  return v;
}

SVal sv_float(double f, Dtype dt, bool weak) {
  SVal v = sv_poison();
  v.kind = SV_FLOAT;
  v.f = f;
  v.dt = dt;
  v.weak = weak;
  return v;
}

SVal sv_bool(bool b) {
  SVal v = sv_poison();
  v.kind = SV_BOOL;
  v.i = b;
  v.dt = DT_BOOL;
  return v;
}

SVal sv_value(TirValue *t) {
  if (!t) return sv_poison();  // out of memory: the arena flag reports it
  SVal v = sv_poison();
  v.kind = SV_VALUE;
  v.v = t;
  v.dt = t->type.dtype;
  return v;
}

bool sv_is_num_const(SVal v) { return v.kind == SV_INT || v.kind == SV_FLOAT || v.kind == SV_BOOL; }

Dtype sv_dtype(SVal v) {
  if (v.kind == SV_VALUE) return v.v->type.dtype;
  if (sv_is_num_const(v)) return v.dt;
  return DT_VOID;
}

TirType sv_type(SVal v) {
  if (v.kind == SV_VALUE) return v.v->type;
  return tir_scalar(sv_is_num_const(v) ? v.dt : DT_VOID);
}

const char *shape_str(Sema *s, TirType t) {
  StrBuf sb;
  sb_init(&sb);
  sb_putc(&sb, '[');
  for (int i = 0; i < t.rank; i++) sb_printf(&sb, "%s%d", i ? ", " : "", t.shape[i]);
  sb_putc(&sb, ']');
  char *r = arena_strndup(s->a, sb.data ? sb.data : "[]", sb.len);
  sb_free(&sb);
  return r ? r : "?";
}

const char *type_str(Sema *s, TirType t) {
  StrBuf sb;
  sb_init(&sb);
  tir_type_str(&sb, t);
  char *r = arena_strndup(s->a, sb.data ? sb.data : "", sb.len);
  sb_free(&sb);
  return r ? r : "?";
}

const char *sv_desc(Sema *s, SVal v) {
  switch (v.kind) {
  case SV_INT: case SV_FLOAT: case SV_BOOL: return dtype_name(v.dt);
  case SV_VALUE: return type_str(s, v.v->type);
  case SV_DTYPE: return "dtype";
  case SV_STRING: return "string";
  case SV_LIST: return "list";
  case SV_VOID: return "no value";
  case SV_POISON: return "<error>";
  }
  return "?";
}

bool is_pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

TirValue *emit1(Sema *s, TirOp op, TirType rt, TirValue **args, int nargs, Loc loc) {
  for (int i = 0; i < nargs; i++)
    if (!args[i]) return NULL;
  // Shapes from literals are checked where they are written (full, arange);
  // broadcasting and dot can still multiply two legal dims into a tile no
  // backend can hold, so every tile sema creates is checked here.
  int64_t n = tir_numel(rt);
  if (n > SEMA_MAX_NUMEL) {
    // Each operand's broadcast would fail the same way: one report per statement.
    if (!s->big_tile_reported)
      diag_at(s->d, DIAG_ERROR, loc, "tile of %lld elements is too large (at most %d)", (long long)n,
              SEMA_MAX_NUMEL);
    s->big_tile_reported = true;
    return NULL;
  }
  return tir_emit(s->f, s->blk, op, rt, args, nargs, loc);
}

// ---------------------------------------------------------------- promotion

Dtype promote(Dtype a, bool aw, Dtype b, bool bw, bool *weak) {
  *weak = false;
  if (a == DT_BOOL || b == DT_BOOL) return a == b ? DT_BOOL : DT_VOID;
  bool af = dtype_is_float(a), bf = dtype_is_float(b);
  if (aw && bw) {
    *weak = true;
    if (af || bf) return DT_F32;
    return a == DT_I64 || b == DT_I64 ? DT_I64 : DT_I32;
  }
  if (aw || bw) {
    Dtype w = aw ? a : b, st = aw ? b : a;
    if (!dtype_is_float(w)) return st;
    return dtype_is_float(st) ? st : DT_F32;
  }
  if (a == b) return a;
  if (af && bf) {
    if (dtype_bits(a) == dtype_bits(b)) return DT_F32;  // f16 with bf16
    return dtype_bits(a) > dtype_bits(b) ? a : b;
  }
  if (af) return a;
  if (bf) return b;
  // Same signedness and width would be the same type, handled above.
  if (dtype_bits(a) != dtype_bits(b)) return dtype_bits(a) > dtype_bits(b) ? a : b;
  return dtype_is_signed(a) ? b : a;
}

bool broadcast_shapes(TirType a, TirType b, TirType *out) {
  TirType r = a;
  int rank = a.rank > b.rank ? a.rank : b.rank;
  r.rank = rank;
  for (int i = 0; i < rank; i++) {
    int ai = i - (rank - a.rank), bi = i - (rank - b.rank);
    int da = ai >= 0 ? a.shape[ai] : 1, db = bi >= 0 ? b.shape[bi] : 1;
    if (da != db && da != 1 && db != 1) return false;
    r.shape[i] = da == 1 ? db : da;
  }
  *out = r;
  return true;
}

// ---------------------------------------------------------------- constants

static int64_t wrap_int(int64_t v, Dtype dt) {
  int bits = dtype_bits(dt);
  if (bits >= 64 || bits <= 0) return v;
  uint64_t m = ((uint64_t)1 << bits) - 1, u = (uint64_t)v & m;
  if (dtype_is_signed(dt) && (u >> (bits - 1)) & 1) u |= ~m;
  return (int64_t)u;
}

static double round_float(double f, Dtype dt) {
  switch (dt) {
  case DT_F32: return (double)(float)f;
  case DT_F16: return f16_to_f32(f32_to_f16((float)f));
  case DT_BF16: return bf16_to_f32(f32_to_bf16((float)f));
  default: return f;
  }
}

// float -> int saturates and maps NaN to 0, as the IR's cast does.
static int64_t float_to_int(double f, Dtype dt) {
  if (isnan(f)) return 0;
  int bits = dtype_bits(dt);
  if (dtype_is_signed(dt)) {
    double lo = -ldexp(1.0, bits - 1), hi = ldexp(1.0, bits - 1);
    if (f <= lo) return bits >= 64 ? INT64_MIN : (int64_t)lo;
    if (f >= hi) return bits >= 64 ? INT64_MAX : (int64_t)hi - 1;
    return (int64_t)f;
  }
  if (f <= 0) return 0;
  double hi = ldexp(1.0, bits);
  if (f >= hi) return bits >= 64 ? -1 : (int64_t)(hi - 1);
  return bits >= 64 ? (int64_t)(uint64_t)f : (int64_t)f;
}

static double int_to_double(int64_t i, Dtype dt) {
  return dt == DT_U64 ? (double)(uint64_t)i : (double)i;
}

SVal const_convert(SVal c, Dtype dt) {
  if (dt == DT_BOOL) {
    if (c.kind == SV_FLOAT) return sv_bool(c.f != 0);
    return sv_bool(c.i != 0);
  }
  if (dtype_is_float(dt)) {
    double f = c.kind == SV_FLOAT ? c.f : int_to_double(c.i, c.dt);
    return sv_float(round_float(f, dt), dt, false);
  }
  if (c.kind == SV_FLOAT) return sv_int(float_to_int(c.f, dt), dt, false);
  return sv_int(wrap_int(c.i, dt), dt, false);
}

// The natural type of a weak int literal: i32 when it fits.
static Dtype weak_int_dtype(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX ? DT_I32 : DT_I64; }

TirValue *coerce(Sema *s, SVal v, Dtype dt, TirType shape, Loc loc) {
  if (v.kind == SV_POISON) return NULL;
  if (sv_is_num_const(v)) {
    TirType t = shape;
    t.ptr = false;
    t.dtype = dt;
    SVal c = const_convert(v, dt);
    if (c.kind == SV_FLOAT) return tir_const_float(s->f, s->blk, t, c.f, loc);
    return tir_const_int(s->f, s->blk, t, c.i, loc);
  }
  if (v.kind != SV_VALUE) return NULL;
  TirValue *x = v.v;
  if (!x->type.ptr && x->type.dtype != dt)
    x = emit1(s, TIR_CAST, tir_with_dtype(x->type, dt), &x, 1, loc);
  if (!x) return NULL;
  if (x->type.rank == 0 && shape.rank > 0) {
    TirType t = shape;
    t.dtype = x->type.dtype;
    t.ptr = x->type.ptr;
    return emit1(s, TIR_SPLAT, t, &x, 1, loc);
  }
  while (x && x->type.rank < shape.rank) {
    TirType t = x->type;
    memmove(t.shape + 1, t.shape, sizeof(int) * (size_t)t.rank);
    t.shape[0] = 1;
    t.rank++;
    x = emit1(s, TIR_EXPAND_DIMS, t, &x, 1, loc);
    if (x) x->def->axis = 0;
  }
  if (x && !tir_shape_eq(x->type, shape)) {
    TirType t = shape;
    t.dtype = x->type.dtype;
    t.ptr = x->type.ptr;
    x = emit1(s, TIR_BROADCAST, t, &x, 1, loc);
  }
  return x;
}

TirValue *materialize(Sema *s, SVal v, Loc loc) {
  if (v.kind == SV_VALUE) return v.v;
  if (!sv_is_num_const(v)) return NULL;
  Dtype dt = v.dt;
  if (v.weak && v.kind == SV_INT) dt = weak_int_dtype(v.i);
  return coerce(s, v, dt, tir_scalar(dt), loc);
}

bool unify(Sema *s, SVal *ops, int n, Loc loc, const char *what, TirValue **out, Dtype *dtp) {
  for (int i = 0; i < n; i++) {
    if (ops[i].kind == SV_POISON) return false;
    if (!sv_is_num_const(ops[i]) && ops[i].kind != SV_VALUE) {
      diag_at(s->d, DIAG_ERROR, loc, "%s needs tile or scalar operands, got %s", what,
              sv_desc(s, ops[i]));
      return false;
    }
  }
  bool anyptr = false;
  for (int i = 0; i < n; i++)
    if (ops[i].kind == SV_VALUE && ops[i].v->type.ptr) anyptr = true;
  Dtype dt = sv_dtype(ops[0]);
  bool weak = ops[0].weak;
  for (int i = 1; i < n; i++) {
    Dtype b = sv_dtype(ops[i]);
    bool w;
    Dtype nd = promote(dt, weak, b, ops[i].weak, &w);
    if (anyptr) {
      bool pa = ops[0].kind == SV_VALUE && ops[0].v->type.ptr;
      bool pb = ops[i].kind == SV_VALUE && ops[i].v->type.ptr;
      nd = pa && pb && dt == b ? dt : DT_VOID;
      if (nd == DT_VOID) {
        diag_at(s->d, DIAG_ERROR, loc, "%s cannot combine %s and %s", what, sv_desc(s, ops[0]),
                sv_desc(s, ops[i]));
        return false;
      }
    } else if (nd == DT_VOID) {
      diag_at(s->d, DIAG_ERROR, loc, "%s cannot combine %s and %s", what, dtype_name(dt),
              dtype_name(b));
      return false;
    }
    dt = nd;
    weak = w;
  }
  TirType sh = sv_type(ops[0]);
  for (int i = 1; i < n; i++) {
    TirType t = sv_type(ops[i]), r;
    if (!broadcast_shapes(sh, t, &r)) {
      diag_at(s->d, DIAG_ERROR, loc, "cannot broadcast tile shapes %s and %s", shape_str(s, sh),
              shape_str(s, t));
      return false;
    }
    sh = r;
  }
  for (int i = 0; i < n; i++) {
    // A literal adopts the other operand's type, but must not silently wrap
    // to a different number there (negative values may wrap into unsigned).
    int bits = dtype_bits(dt);
    if (ops[i].kind == SV_INT && ops[i].weak && dtype_is_int(dt) && bits < 64) {
      int64_t v = ops[i].i, lo = -((int64_t)1 << (bits - 1));
      int64_t hi = dtype_is_signed(dt) ? ((int64_t)1 << (bits - 1)) - 1 : ((int64_t)1 << bits) - 1;
      if (v < lo || v > hi) {
        diag_at(s->d, DIAG_ERROR, loc, "integer literal %lld does not fit in %s", (long long)v,
                dtype_name(dt));
        return false;
      }
    }
  }
  for (int i = 0; i < n; i++) {
    out[i] = coerce(s, ops[i], dt, sh, loc);
    if (!out[i]) return false;
  }
  *dtp = dt;
  return true;
}

// ---------------------------------------------------------------- spans

static void span_union(const Node *n, int *lo, int *hi, const Loc **first) {
  if (!n) return;
  if (n->loc.src && n->loc.offset >= 0) {
    if (n->loc.offset < *lo) {
      *lo = n->loc.offset;
      *first = &n->loc;
    }
    if (n->loc.offset + n->loc.len > *hi) *hi = n->loc.offset + n->loc.len;
  }
  int inner_hi = *hi;
  int sublo = *lo, subhi = inner_hi;
  const Loc *dummy = *first;
  span_union(n->lhs, &sublo, &subhi, &dummy);
  span_union(n->rhs, &sublo, &subhi, &dummy);
  for (const Node *a = n->args; a; a = a->next) span_union(a, &sublo, &subhi, &dummy);
  if (sublo < *lo) {
    *lo = sublo;
    *first = dummy;
  }
  if (subhi > *hi) *hi = subhi;
  // A call, subscript or list ends at its closing bracket, which is no node:
  // find it in the source text.
  if (n->kind == ND_CALL || n->kind == ND_INDEX || n->kind == ND_LIST) {
    const char *src = n->loc.src;
    if (!src) return;
    int p = *hi;
    char close = n->kind == ND_CALL ? ')' : ']';
    if (n->kind == ND_LIST && n->loc.offset >= 0 && src[n->loc.offset] == '{') close = '}';
    while (src[p] == ' ' || src[p] == '\t' || src[p] == '\n' || src[p] == '\r') p++;
    if (n->kind == ND_CALL && !n->args && src[p] == '(') {
      p++;
      while (src[p] == ' ' || src[p] == '\t') p++;
    }
    while (src[p] == ' ' || src[p] == '\t' || src[p] == '\n' || src[p] == '\r' || src[p] == ',') p++;
    if (src[p] == close) *hi = p + 1;
  }
}

Loc expr_span(const Node *n) {
  Loc l = n->loc;
  if (!l.src) return l;
  int lo = l.offset, hi = l.offset + l.len;
  const Loc *first = &n->loc;
  span_union(n, &lo, &hi, &first);
  l = *first;
  l.len = hi - lo;
  if (l.len < 1) l.len = 1;
  return l;
}

// ---------------------------------------------------------------- folding

static const char *op_str(int op) { return lex_punct_str(op); }

static bool is_arith(int op) {
  return op == P_PLUS || op == P_MINUS || op == P_STAR || op == P_SLASH || op == P_PERCENT;
}
static bool is_bitwise(int op) { return op == P_AMP || op == P_PIPE || op == P_CARET; }
static bool is_shift(int op) { return op == P_SHL || op == P_SHR; }
static bool is_cmp(int op) { return op >= P_LT && op <= P_NE; }
static bool is_logic(int op) { return op == P_ANDAND || op == P_OROR; }

static int cmp_pred(int op) {
  switch (op) {
  case P_LT: return CMP_LT;
  case P_LE: return CMP_LE;
  case P_GT: return CMP_GT;
  case P_GE: return CMP_GE;
  case P_EQEQ: return CMP_EQ;
  default: return CMP_NE;
  }
}

// Checks that dtype dt suits operator op; reports and returns false if not.
static bool op_accepts(Sema *s, int op, Dtype dt, Loc loc) {
  const char *o = op_str(op);
  if (is_arith(op) && dt == DT_BOOL) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' needs numeric operands, got bool", o);
    return false;
  }
  if (is_bitwise(op) && dtype_is_float(dt)) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' needs integer or bool operands, got %s", o,
            dtype_name(dt));
    return false;
  }
  if (is_shift(op) && !dtype_is_int(dt)) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' needs integer operands, got %s", o, dtype_name(dt));
    return false;
  }
  if (is_logic(op) && dt != DT_BOOL) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' needs bool operands, got %s", o, dtype_name(dt));
    return false;
  }
  return true;
}

static SVal fold_binary(Sema *s, int op, SVal l, SVal r, Loc loc) {
  bool weak;
  Dtype dt = promote(l.dt, l.weak, r.dt, r.weak, &weak);
  if (dt == DT_VOID) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' cannot combine %s and %s", op_str(op),
            dtype_name(l.dt), dtype_name(r.dt));
    return sv_poison();
  }
  if (!op_accepts(s, op, dt, loc)) return sv_poison();
  if (dtype_is_float(dt)) {
    double a = l.kind == SV_FLOAT ? l.f : int_to_double(l.i, l.dt);
    double b = r.kind == SV_FLOAT ? r.f : int_to_double(r.i, r.dt);
    if (!weak) {
      a = round_float(a, dt);
      b = round_float(b, dt);
    }
    if (is_cmp(op)) {
      switch (cmp_pred(op)) {
      case CMP_LT: return sv_bool(a < b);
      case CMP_LE: return sv_bool(a <= b);
      case CMP_GT: return sv_bool(a > b);
      case CMP_GE: return sv_bool(a >= b);
      case CMP_EQ: return sv_bool(a == b);
      default: return sv_bool(a != b);
      }
    }
    double v = 0;
    switch (op) {
    case P_PLUS: v = a + b; break;
    case P_MINUS: v = a - b; break;
    case P_STAR: v = a * b; break;
    case P_SLASH: v = a / b; break;
    case P_PERCENT: v = fmod(a, b); break;
    default: break;
    }
    return sv_float(weak ? v : round_float(v, dt), dt, weak);
  }
  if (dt == DT_BOOL) {
    bool a = l.i != 0, b = r.i != 0;
    switch (op) {
    case P_AMP: case P_ANDAND: return sv_bool(a && b);
    case P_PIPE: case P_OROR: return sv_bool(a || b);
    case P_CARET: case P_NE: return sv_bool(a != b);
    case P_EQEQ: return sv_bool(a == b);
    case P_LT: return sv_bool(a < b);
    case P_LE: return sv_bool(a <= b);
    case P_GT: return sv_bool(a > b);
    default: return sv_bool(a >= b);
    }
  }
  // Integers. Weak results stay exact in int64; strong ones wrap.
  int64_t a = weak ? l.i : wrap_int(l.i, dt), b = weak ? r.i : wrap_int(r.i, dt);
  bool uns = !weak && !dtype_is_signed(dt);
  uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
  if (is_cmp(op)) {
    bool lt = uns ? ua < ub : a < b, eq = a == b;
    switch (cmp_pred(op)) {
    case CMP_LT: return sv_bool(lt);
    case CMP_LE: return sv_bool(lt || eq);
    case CMP_GT: return sv_bool(!lt && !eq);
    case CMP_GE: return sv_bool(!lt);
    case CMP_EQ: return sv_bool(eq);
    default: return sv_bool(!eq);
    }
  }
  int bits = weak ? 64 : dtype_bits(dt);
  uint64_t v = 0;
  switch (op) {
  case P_PLUS: v = ua + ub; break;
  case P_MINUS: v = ua - ub; break;
  case P_STAR: v = ua * ub; break;
  case P_SLASH:
  case P_PERCENT:
    if (b == 0) {
      diag_at(s->d, DIAG_ERROR, loc, "division by zero in a constant expression");
      return sv_poison();
    }
    if (uns) v = op == P_SLASH ? ua / ub : ua % ub;
    else if (a == INT64_MIN && b == -1) v = op == P_SLASH ? (uint64_t)INT64_MIN : 0;
    else v = (uint64_t)(op == P_SLASH ? a / b : a % b);
    break;
  case P_AMP: v = ua & ub; break;
  case P_PIPE: v = ua | ub; break;
  case P_CARET: v = ua ^ ub; break;
  case P_SHL: v = b < 0 || b >= bits ? 0 : ua << b; break;
  case P_SHR:
    if (uns) {
      // Shift the value as its width sees it: wrap_int made it non-negative.
      v = b < 0 || b >= bits ? 0 : ua >> b;
    } else {
      int64_t sh = b < 0 || b >= bits ? bits - 1 : b;
      v = (uint64_t)(a < 0 ? ~(~a >> sh) : a >> sh);
    }
    break;
  default: break;
  }
  int64_t res = (int64_t)v;
  if (weak) return sv_int(res, weak_int_dtype(res) == DT_I64 || dt == DT_I64 ? DT_I64 : DT_I32, true);
  return sv_int(wrap_int(res, dt), dt, false);
}

// ---------------------------------------------------------------- operators

static bool is_ptr(SVal v) { return v.kind == SV_VALUE && v.v->type.ptr; }

static SVal ptr_arith(Sema *s, int op, SVal l, SVal r, Loc loc) {
  if (is_ptr(l) && is_ptr(r)) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' cannot combine two pointers", op_str(op));
    return sv_poison();
  }
  if (op != P_PLUS && !(op == P_MINUS && is_ptr(l))) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' cannot be applied to a pointer", op_str(op));
    return sv_poison();
  }
  SVal p = is_ptr(l) ? l : r, o = is_ptr(l) ? r : l;
  Dtype odt = sv_dtype(o);
  if (!(o.kind == SV_INT || (o.kind == SV_VALUE && dtype_is_int(odt)))) {
    diag_at(s->d, DIAG_ERROR, loc, "pointer offset must be an integer, got %s", sv_desc(s, o));
    return sv_poison();
  }
  TirType sh;
  if (!broadcast_shapes(sv_type(p), sv_type(o), &sh)) {
    diag_at(s->d, DIAG_ERROR, loc, "cannot broadcast tile shapes %s and %s",
            shape_str(s, sv_type(p)), shape_str(s, sv_type(o)));
    return sv_poison();
  }
  if (o.kind == SV_INT) {
    if (op == P_MINUS) o.i = sema_neg(o.i);
    if (o.weak) odt = weak_int_dtype(o.i);
  }
  TirValue *pv = coerce(s, p, p.v->type.dtype, sh, loc);
  TirValue *ov = coerce(s, o, odt, sh, loc);
  if (op == P_MINUS && o.kind == SV_VALUE) {
    ov = emit1(s, TIR_NEG, ov ? ov->type : sh, &ov, 1, loc);
  }
  if (!pv || !ov) return sv_poison();
  TirValue *args[2] = {pv, ov};
  return sv_value(emit1(s, TIR_PTR_ADD, pv->type, args, 2, loc));
}

SVal binary_op(Sema *s, int op, SVal l, SVal r, Loc loc) {
  if (l.kind == SV_POISON || r.kind == SV_POISON) return sv_poison();
  if ((op == P_PLUS || op == P_MINUS || is_ptr(l) || is_ptr(r)) && (is_ptr(l) || is_ptr(r)))
    return ptr_arith(s, op, l, r, loc);
  // dtype constants compare for (in)equality, folded: `if T == bf16 {...}`
  // specialises a kernel per dtype.
  if (l.kind == SV_DTYPE && r.kind == SV_DTYPE && (op == P_EQEQ || op == P_NE))
    return sv_bool((l.dt == r.dt) == (op == P_EQEQ));
  for (int k = 0; k < 2; k++) {
    SVal x = k ? r : l;
    if (!sv_is_num_const(x) && x.kind != SV_VALUE) {
      diag_at(s->d, DIAG_ERROR, loc, "operator '%s' cannot be applied to %s", op_str(op),
              sv_desc(s, x));
      return sv_poison();
    }
  }
  if (sv_is_num_const(l) && sv_is_num_const(r)) return fold_binary(s, op, l, r, loc);
  // Check the operator against the promoted dtype before emitting anything.
  bool weak;
  Dtype pdt = promote(sv_dtype(l), l.weak, sv_dtype(r), r.weak, &weak);
  if (pdt == DT_VOID) {
    diag_at(s->d, DIAG_ERROR, loc, "operator '%s' cannot combine %s and %s", op_str(op),
            dtype_name(sv_dtype(l)), dtype_name(sv_dtype(r)));
    return sv_poison();
  }
  if (!op_accepts(s, op, pdt, loc)) return sv_poison();
  char what[32];
  snprintf(what, sizeof what, "operator '%s'", op_str(op));
  SVal ops[2] = {l, r};
  TirValue *xv[2];
  Dtype dt;
  if (!unify(s, ops, 2, loc, what, xv, &dt)) return sv_poison();
  TirType rt = xv[0]->type;
  if (is_cmp(op)) {
    TirValue *v = emit1(s, TIR_CMP, tir_with_dtype(rt, DT_BOOL), xv, 2, loc);
    if (v) v->def->pred = cmp_pred(op);
    return sv_value(v);
  }
  TirOp top;
  switch (op) {
  case P_PLUS: top = TIR_ADD; break;
  case P_MINUS: top = TIR_SUB; break;
  case P_STAR: top = TIR_MUL; break;
  case P_SLASH: top = TIR_DIV; break;
  case P_PERCENT: top = TIR_REM; break;
  case P_AMP: case P_ANDAND: top = TIR_AND; break;
  case P_PIPE: case P_OROR: top = TIR_OR; break;
  case P_CARET: top = TIR_XOR; break;
  case P_SHL: top = TIR_SHL; break;
  case P_SHR: top = TIR_SHR; break;
  default:
    diag_at(s->d, DIAG_ERROR, loc, "internal error: unknown binary operator '%s'", op_str(op));
    return sv_poison();
  }
  return sv_value(emit1(s, top, rt, xv, 2, loc));
}

static SVal unary_op(Sema *s, const Node *n) {
  SVal x = eval(s, n->lhs);
  if (x.kind == SV_POISON) return x;
  const char *o = op_str(n->op);
  if (!sv_is_num_const(x) && x.kind != SV_VALUE) {
    diag_at(s->d, DIAG_ERROR, n->loc, "operator '%s' cannot be applied to %s", o, sv_desc(s, x));
    return sv_poison();
  }
  if (is_ptr(x)) {
    diag_at(s->d, DIAG_ERROR, n->loc, "operator '%s' cannot be applied to a pointer", o);
    return sv_poison();
  }
  Dtype dt = sv_dtype(x);
  switch (n->op) {
  case P_PLUS:
  case P_MINUS:
    if (dt == DT_BOOL) {
      diag_at(s->d, DIAG_ERROR, n->loc, "operator '%s' needs a numeric operand, got bool", o);
      return sv_poison();
    }
    if (n->op == P_PLUS) return x;
    if (x.kind == SV_INT) return sv_int(x.weak ? sema_neg(x.i) : wrap_int(sema_neg(x.i), dt), dt, x.weak);
    if (x.kind == SV_FLOAT) return sv_float(-x.f, dt, x.weak);
    return sv_value(emit1(s, TIR_NEG, x.v->type, &x.v, 1, n->loc));
  case P_BANG:
    if (dt != DT_BOOL) {
      diag_at(s->d, DIAG_ERROR, n->loc, "operator '!' needs a bool operand, got %s", dtype_name(dt));
      return sv_poison();
    }
    if (x.kind == SV_BOOL) return sv_bool(!x.i);
    return sv_value(emit1(s, TIR_NOT, x.v->type, &x.v, 1, n->loc));
  case P_TILDE:
    if (dtype_is_float(dt)) {
      diag_at(s->d, DIAG_ERROR, n->loc, "operator '~' needs an integer or bool operand, got %s",
              dtype_name(dt));
      return sv_poison();
    }
    if (x.kind == SV_BOOL) return sv_bool(!x.i);
    if (x.kind == SV_INT) return sv_int(x.weak ? ~x.i : wrap_int(~x.i, dt), dt, x.weak);
    return sv_value(emit1(s, TIR_NOT, x.v->type, &x.v, 1, n->loc));
  default:
    diag_at(s->d, DIAG_ERROR, n->loc, "internal error: unknown unary operator '%s'", o);
    return sv_poison();
  }
}

// x[:, None]: every ':' keeps an axis, every None inserts one.
static SVal index_op(Sema *s, const Node *n) {
  SVal x = eval(s, n->lhs);
  if (x.kind == SV_POISON) return x;
  if (sv_is_num_const(x)) x = sv_value(materialize(s, x, n->loc));
  if (x.kind != SV_VALUE) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->lhs), "cannot subscript %s", sv_desc(s, x));
    return sv_poison();
  }
  int nslice = 0, nnone = 0;
  for (const Node *a = n->args; a; a = a->next) {
    if (a->kind == ND_SLICE) nslice++;
    else nnone++;
  }
  int rank = x.v->type.rank;
  if (nslice != rank) {
    diag_at(s->d, DIAG_ERROR, expr_span(n), "subscript has %d ':' but the tile %s has rank %d",
            nslice, type_str(s, x.v->type), rank);
    return sv_poison();
  }
  if (rank + nnone > TIR_MAX_RANK) {
    diag_at(s->d, DIAG_ERROR, expr_span(n), "subscript gives rank %d; tiles have at most %d dims",
            rank + nnone, TIR_MAX_RANK);
    return sv_poison();
  }
  TirValue *v = x.v;
  int k = 0;
  for (const Node *a = n->args; a && v; a = a->next, k++) {
    if (a->kind == ND_SLICE) continue;
    TirType t = v->type;
    memmove(t.shape + k + 1, t.shape + k, sizeof(int) * (size_t)(t.rank - k));
    t.shape[k] = 1;
    t.rank++;
    v = emit1(s, TIR_EXPAND_DIMS, t, &v, 1, a->loc);
    if (v) v->def->axis = k;
  }
  return sv_value(v);
}

static SVal eval_name(Sema *s, const Node *n) {
  Binding *b = scope_lookup(s, n->name);
  if (b) return b->val;
  if (!strcmp(n->name, "inf")) return sv_float(INFINITY, DT_F32, true);
  if (!strcmp(n->name, "nan")) return sv_float(NAN, DT_F32, true);
  Dtype dt;
  if (dtype_from_name(n->name, strlen(n->name), &dt)) {
    SVal v = sv_poison();
    v.kind = SV_DTYPE;
    v.dt = dt;
    return v;
  }
  if (builtin_exists(n->name) || module_find(s->m, n->name))
    diag_at(s->d, DIAG_ERROR, n->loc, "'%s' is a function; call it with (...)", n->name);
  else
    diag_at(s->d, DIAG_ERROR, n->loc, "unknown name '%s'", n->name);
  return sv_poison();
}

static SVal eval_node(Sema *s, const Node *n);

SVal eval(Sema *s, const Node *n) {
  if (!n) return sv_poison();
  if (s->eval_depth >= SEMA_MAX_EVAL_DEPTH) {
    if (!s->eval_depth_failed)
      diag_at(s->d, DIAG_ERROR, n->loc,
              "expression nested too deeply (more than %d levels, counting inlined fn calls)",
              SEMA_MAX_EVAL_DEPTH);
    s->eval_depth_failed = true;
    return sv_poison();
  }
  s->eval_depth++;
  SVal v = eval_node(s, n);
  s->eval_depth--;
  return v;
}

static SVal eval_node(Sema *s, const Node *n) {
  switch (n->kind) {
  case ND_INT: return sv_int(n->ival, weak_int_dtype(n->ival), true);
  case ND_FLOAT: return sv_float(n->fval, DT_F32, true);
  case ND_BOOL: return sv_bool(n->ival != 0);
  case ND_STRING: {
    SVal v = sv_poison();
    v.kind = SV_STRING;
    v.s = n->str;
    return v;
  }
  case ND_NAME: return eval_name(s, n);
  case ND_UNARY: return unary_op(s, n);
  case ND_BINARY: {
    SVal l = eval(s, n->lhs);
    SVal r = eval(s, n->rhs);
    return binary_op(s, n->op, l, r, n->loc);
  }
  case ND_CALL: return eval_call(s, n);
  case ND_INDEX: return index_op(s, n);
  case ND_LIST: {
    SVal v = sv_poison();
    v.kind = SV_LIST;
    v.nlist = n->nargs;
    if (v.nlist == 0)
      for (const Node *a = n->args; a; a = a->next) v.nlist++;
    v.list = arena_alloc(s->a, sizeof(SVal) * (size_t)(v.nlist + 1));
    if (!v.list) return sv_poison();
    int i = 0;
    bool bad = false;
    for (const Node *a = n->args; a && i < v.nlist; a = a->next, i++) {
      v.list[i] = eval(s, a);
      if (v.list[i].kind == SV_POISON) bad = true;
    }
    v.nlist = i;
    return bad ? sv_poison() : v;
  }
  case ND_SLICE:
  case ND_NONE:
    diag_at(s->d, DIAG_ERROR, n->loc, "'%s' is only allowed in a subscript",
            n->kind == ND_SLICE ? ":" : "None");
    return sv_poison();
  default:
    diag_at(s->d, DIAG_ERROR, n->loc, "internal error: node kind %d is not an expression",
            (int)n->kind);
    return sv_poison();
  }
}
