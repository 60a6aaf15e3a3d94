/* sema.c: semantic analysis and lowering of one kernel to tile IR.
 *
 * requires: a Module from parse.c (only the chosen kernel and the fns it calls
 * are looked at); produces: a verified TirFunc with params, resolved
 * constants and tunables, or NULL with every problem reported to the Diag.
 *
 * Pipeline (sema_lower): pick the kernel; resolve constant params (-D text
 * or default); add runtime params; lower the body statement by statement;
 * check that every -D name was used; then tir_fold, tir_cse and tir_dce,
 * with the verifier after each in TJ_VERIFY_EACH_PASS builds.
 *
 * Mutable variables and structured control flow. Tile IR is SSA with
 * scf-style FOR and IF ops, so a `var` assigned inside a loop or a runtime
 * `if` must travel through block arguments and results. Before lowering such
 * a body we scan its AST for assignments to names declared outside it (a
 * name declared inside first is local and shadows: the scan tracks that);
 * those vars become the loop's carried values (FOR inits, body args, yields,
 * results) or the IF's results, and after the op the outer bindings rebind
 * to its results. While the body is lowered the outer bindings hold the
 * block arguments, so ordinary assignment code needs no special case. An
 * `if` on a constant is resolved here and only the taken branch is lowered.
 *
 * Every var keeps the type it was declared with (vtype); assignment converts
 * weak literals and broadcasts, and rejects anything that would change the
 * dtype or shape, which is what makes the loop-carried types fixed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sema_int.h"

// ---------------------------------------------------------------- scopes

void scope_push(Sema *s) {
  Frame *f = arena_alloc(s->a, sizeof *f);
  if (!f) return;  // out of memory: reported at the end from a->failed
  f->parent = s->scope;
  s->scope = f;
}

void scope_pop(Sema *s) {
  if (s->scope && s->scope->parent) s->scope = s->scope->parent;
}

Binding *scope_bind(Sema *s, const char *name, SVal v, BindKind kind, Loc loc) {
  Binding *b = arena_alloc(s->a, sizeof *b);
  if (!b || !s->scope) return NULL;
  b->name = name;
  b->val = v;
  b->kind = kind;
  b->loc = loc;
  b->next = s->scope->binds;
  s->scope->binds = b;
  if (kind == BIND_VAR) {
    if (v.kind == SV_VALUE) {
      b->typed = true;
      b->vtype = v.v->type;
    } else if (sv_is_num_const(v)) {
      b->typed = true;
      Dtype dt = v.dt;
      if (v.weak && v.kind == SV_INT) dt = v.i >= INT32_MIN && v.i <= INT32_MAX ? DT_I32 : DT_I64;
      b->vtype = tir_scalar(dt);
    }
  }
  // Name hints for the printed IR; an fn's parameter names would mislabel
  // the caller's values.
  if (v.kind == SV_VALUE && !v.v->name && kind != BIND_FNPARAM) v.v->name = name;
  return b;
}

Binding *scope_lookup(Sema *s, const char *name) {
  for (Frame *f = s->scope; f; f = f->parent)
    for (Binding *b = f->binds; b; b = b->next)
      if (!strcmp(b->name, name)) return b;
  return NULL;
}

const Func *module_find(const Module *m, const char *name) {
  for (const Func *f = m ? m->funcs : NULL; f; f = f->next)
    if (f->name && !strcmp(f->name, name)) return f;
  return NULL;
}

// ---------------------------------------------------------------- constants text

static const char *int_text(Sema *s, int64_t v) { return arena_printf(s->a, "%lld", (long long)v); }

// Shortest text that reads back as the same f32, always looking like a float.
static const char *f32_text(Sema *s, double v) {
  char buf[48];
  float f = (float)v;
  if (isnan(f)) return "nan";
  if (isinf(f)) return f < 0 ? "-inf" : "inf";
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
    if (strtof(buf, NULL) == f) break;
  }
  if (!strpbrk(buf, ".e")) strcat(buf, ".0");
  return arena_strdup(s->a, buf);
}

static void record_const(Sema *s, const char *name, const char *text) {
  TirConstDef *c = arena_alloc(s->a, sizeof *c);
  if (!c) return;
  c->name = name;
  c->text = text;
  vec_push(s->a, &s->consts, c);
}

// -D lookup: the last definition of a name wins, as on a command line.
static const Define *find_define(Sema *s, const char *name) {
  const Define *found = NULL;
  for (int i = 0; i < s->opt->ndefines; i++) {
    if (s->opt->defines[i].name && !strcmp(s->opt->defines[i].name, name)) {
      found = &s->opt->defines[i];
      s->define_used[i] = true;
    }
  }
  return found;
}

// Integer text: optional sign, decimal or 0x hex.
static bool parse_int_text(const char *t, int64_t *out) {
  if (!t) return false;
  bool neg = false;
  const char *p = t;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  int base = 10;
  if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p += 2;
  }
  if (!*p) return false;
  for (const char *q = p; *q; q++) {
    bool ok = base == 16 ? ((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || (*q >= 'A' && *q <= 'F'))
                         : (*q >= '0' && *q <= '9');
    if (!ok) return false;
  }
  errno = 0;
  unsigned long long u = strtoull(p, NULL, base);
  if (errno == ERANGE) return false;
  if (neg ? u > (unsigned long long)INT64_MAX + 1 : u > (unsigned long long)INT64_MAX) return false;
  *out = neg ? (int64_t)(0 - u) : (int64_t)u;
  return true;
}

typedef enum ConstType { CT_I32, CT_I64, CT_F32, CT_BOOL, CT_DTYPE, CT_BAD } ConstType;

static ConstType const_type(const char *t) {
  if (!t) return CT_BAD;
  if (!strcmp(t, "i32")) return CT_I32;
  if (!strcmp(t, "i64")) return CT_I64;
  if (!strcmp(t, "f32")) return CT_F32;
  if (!strcmp(t, "bool")) return CT_BOOL;
  if (!strcmp(t, "dtype")) return CT_DTYPE;
  return CT_BAD;
}

// Parses -D text according to the declared type.
static bool parse_define(ConstType ct, const char *t, SVal *out) {
  int64_t i;
  switch (ct) {
  case CT_I32:
    if (!parse_int_text(t, &i) || i < INT32_MIN || i > INT32_MAX) return false;
    *out = sv_int(i, DT_I32, false);
    return true;
  case CT_I64:
    if (!parse_int_text(t, &i)) return false;
    *out = sv_int(i, DT_I64, false);
    return true;
  case CT_F32: {
    if (!t || !*t) return false;
    char *end;
    double f = strtod(t, &end);
    if (*end) return false;
    *out = sv_float((double)(float)f, DT_F32, false);
    return true;
  }
  case CT_BOOL:
    if (!t) return false;
    if (!strcmp(t, "true") || !strcmp(t, "1")) *out = sv_bool(true);
    else if (!strcmp(t, "false") || !strcmp(t, "0")) *out = sv_bool(false);
    else return false;
    return true;
  case CT_DTYPE: {
    Dtype dt;
    if (!t || !dtype_from_name(t, strlen(t), &dt)) return false;
    *out = sv_poison();
    out->kind = SV_DTYPE;
    out->dt = dt;
    return true;
  }
  case CT_BAD: break;
  }
  return false;
}

static const char *const_text(Sema *s, SVal v) {
  switch (v.kind) {
  case SV_INT: return int_text(s, v.i);
  case SV_FLOAT: return f32_text(s, v.f);
  case SV_BOOL: return v.i ? "true" : "false";
  case SV_DTYPE: return dtype_name(v.dt);
  default: return "?";
  }
}

// Converts a default value to the declared constant type; false if it does
// not fit.
static bool convert_default(ConstType ct, SVal v, SVal *out) {
  switch (ct) {
  case CT_I32:
  case CT_I64:
    if (v.kind != SV_INT) return false;
    if (ct == CT_I32 && (v.i < INT32_MIN || v.i > INT32_MAX)) return false;
    *out = sv_int(v.i, ct == CT_I32 ? DT_I32 : DT_I64, false);
    return true;
  case CT_F32:
    if (v.kind != SV_INT && v.kind != SV_FLOAT) return false;
    *out = const_convert(v, DT_F32);
    return true;
  case CT_BOOL:
  case CT_DTYPE:
    if (v.kind != (ct == CT_BOOL ? SV_BOOL : SV_DTYPE)) return false;
    *out = v;
    return true;
  case CT_BAD: break;
  }
  return false;
}

// ---------------------------------------------------------------- params

static void lower_params(Sema *s, const Func *k) {
  for (const Param *p = k->params; p; p = p->next)
    for (const Param *q = k->params; q != p; q = q->next)
      if (!strcmp(p->name, q->name)) {
        diag_at(s->d, DIAG_ERROR, p->loc, "duplicate parameter '%s'", p->name);
        break;
      }
  // Constants first: runtime params may name a dtype constant declared later
  // (`y: *T, ..., const T: dtype`).
  for (const Param *p = k->params; p; p = p->next) {
    if (p->kind != PARAM_CONST) continue;
    ConstType ct = const_type(p->type);
    if (ct == CT_BAD) {
      diag_at(s->d, DIAG_ERROR, p->typeloc,
              "constant '%s' must have type i32, i64, f32, bool or dtype, got '%s'", p->name,
              p->type ? p->type : "?");
      scope_bind(s, p->name, sv_poison(), BIND_CONST, p->loc);
      continue;
    }
    SVal v = sv_poison();
    const Define *def = find_define(s, p->name);
    if (def) {
      if (!parse_define(ct, def->value, &v)) {
        diag_at(s->d, DIAG_ERROR, p->loc, "-D %s=%s is not a valid %s value", p->name,
                def->value ? def->value : "", p->type);
        v = sv_poison();
      }
    } else if (p->defval) {
      SVal d = eval(s, p->defval);
      if (d.kind != SV_POISON && !convert_default(ct, d, &v)) {
        diag_at(s->d, DIAG_ERROR, expr_span(p->defval),
                "default value of '%s' must be a constant %s, got %s", p->name, p->type,
                d.kind == SV_VALUE ? "a runtime value" : sv_desc(s, d));
        v = sv_poison();
      }
    } else {
      diag_at(s->d, DIAG_ERROR, p->loc, "constant '%s' has no value; pass -D %s=...", p->name,
              p->name);
    }
    if (v.kind != SV_POISON) record_const(s, p->name, const_text(s, v));
    scope_bind(s, p->name, v, BIND_CONST, p->loc);
  }
  for (const Param *p = k->params; p; p = p->next) {
    if (p->kind == PARAM_CONST) continue;
    Dtype dt = DT_VOID;
    bool ok = p->type && dtype_from_name(p->type, strlen(p->type), &dt);
    if (!ok && p->type) {
      Binding *b = scope_lookup(s, p->type);
      if (b && b->kind == BIND_CONST && b->val.kind == SV_DTYPE) {
        dt = b->val.dt;
        ok = true;
      } else if (b && b->kind == BIND_CONST && b->val.kind == SV_POISON) {
        scope_bind(s, p->name, sv_poison(), BIND_PARAM, p->loc);
        continue;  // the constant's own error was reported
      }
    }
    if (!ok) {
      if (p->type && !strcmp(p->type, "dtype"))
        diag_at(s->d, DIAG_ERROR, p->typeloc, "'dtype' parameters must be const: const %s: dtype",
                p->name);
      else
        diag_at(s->d, DIAG_ERROR, p->typeloc, "unknown type '%s'", p->type ? p->type : "?");
      scope_bind(s, p->name, sv_poison(), BIND_PARAM, p->loc);
      continue;
    }
    TirValue *v = tir_func_add_param(s->f, p->name, p->kind == PARAM_PTR, dt, p->loc);
    scope_bind(s, p->name, sv_value(v), BIND_PARAM, p->loc);
  }
}

// ---------------------------------------------------------------- tunables

static const char *set_text(Sema *s, const int64_t *v, int n) {
  StrBuf sb;
  sb_init(&sb);
  sb_putc(&sb, '{');
  for (int i = 0; i < n; i++) sb_printf(&sb, "%s%lld", i ? ", " : "", (long long)v[i]);
  sb_putc(&sb, '}');
  char *r = arena_strndup(s->a, sb.data ? sb.data : "{}", sb.len);
  sb_free(&sb);
  return r ? r : "{}";
}

static void lower_tunable(Sema *s, const Node *n) {
  if (s->in_fn || s->scope != s->kernel_frame) {
    diag_at(s->d, DIAG_ERROR, n->loc, "tunable must be at the top level of a kernel");
    return;
  }
  Binding *prev = scope_lookup(s, n->name);
  if (prev) {
    diag_at(s->d, DIAG_ERROR, n->nameloc, "tunable '%s' is already declared", n->name);
    return;
  }
  bool warps = !strcmp(n->name, "num_warps");
  bool stages = !strcmp(n->name, "num_stages");
  bool minsm = !strcmp(n->name, "min_programs_per_sm");
  int cap = n->rhs ? n->rhs->nargs : 0;
  for (const Node *e = n->rhs ? n->rhs->args : NULL; e; e = e->next) cap++;
  int64_t *vals = arena_alloc(s->a, sizeof(int64_t) * (size_t)(cap + 1));
  if (!vals) return;
  int nv = 0;
  bool ok = true;
  for (const Node *e = n->rhs ? n->rhs->args : NULL; e; e = e->next) {
    SVal v = eval(s, e);
    if (v.kind == SV_POISON) {
      ok = false;
      continue;
    }
    if (v.kind != SV_INT) {
      diag_at(s->d, DIAG_ERROR, expr_span(e), "tunable values must be integer constants, got %s",
              v.kind == SV_VALUE ? "a runtime value" : sv_desc(s, v));
      ok = false;
      continue;
    }
    bool dup = false;
    for (int i = 0; i < nv; i++) dup |= vals[i] == v.i;
    if (dup) {
      diag_at(s->d, DIAG_ERROR, expr_span(e), "duplicate value %lld in tunable '%s'",
              (long long)v.i, n->name);
      ok = false;
      continue;
    }
    if (warps && (!is_pow2(v.i) || v.i > 32)) {
      diag_at(s->d, DIAG_ERROR, expr_span(e),
              "num_warps must be a power of two from 1 to 32, got %lld", (long long)v.i);
      ok = false;
      continue;
    }
    if (minsm && (v.i < 1 || v.i > 32)) {
      diag_at(s->d, DIAG_ERROR, expr_span(e), "min_programs_per_sm must be from 1 to 32, got %lld",
              (long long)v.i);
      ok = false;
      continue;
    }
    if (stages && (v.i < 1 || v.i > 8)) {
      diag_at(s->d, DIAG_ERROR, expr_span(e), "num_stages must be from 1 (no pipelining) to 8, got %lld",
              (long long)v.i);
      ok = false;
      continue;
    }
    vals[nv++] = v.i;
  }
  if (ok && nv == 0) {
    diag_at(s->d, DIAG_ERROR, n->nameloc, "tunable '%s' has no values", n->name);
    ok = false;
  }
  const Define *def = find_define(s, n->name);
  int64_t val = nv ? vals[0] : 0;
  if (ok && def) {
    int64_t dv;
    bool in = parse_int_text(def->value, &dv);
    for (int i = 0; in && i < nv; i++)
      if (vals[i] == dv) break;
      else if (i == nv - 1) in = false;
    if (!in) {
      diag_at(s->d, DIAG_ERROR, n->nameloc, "-D %s=%s is not in the tunable set %s", n->name,
              def->value ? def->value : "", set_text(s, vals, nv));
      ok = false;
    } else {
      val = dv;
    }
  }
  if (warps && s->opt->num_warps > 0) val = s->opt->num_warps;  // the API overrides
  if (!ok) {
    scope_bind(s, n->name, sv_poison(), BIND_CONST, n->nameloc);
    return;
  }
  TirTunable *t = arena_alloc(s->a, sizeof *t);
  if (t) {
    t->name = n->name;
    t->values = vals;
    t->nvalues = nv;
    vec_push(s->a, &s->tunables, t);
  }
  if (warps) s->tunable_warps = (int)val;
  if (stages) s->tunable_stages = (int)val;
  if (minsm) s->tunable_minsm = (int)val;
  record_const(s, n->name, int_text(s, val));
  Dtype dt = val >= INT32_MIN && val <= INT32_MAX ? DT_I32 : DT_I64;
  scope_bind(s, n->name, sv_int(val, dt, false), BIND_CONST, n->nameloc);
}

// ---------------------------------------------------------------- assignment

static const char *bind_kind_name(BindKind k) {
  switch (k) {
  case BIND_LET: return "it was declared with let";
  case BIND_PARAM: return "it is a kernel parameter";
  case BIND_CONST: return "it is a constant";
  case BIND_LOOP: return "it is a loop variable";
  case BIND_FNPARAM: return "it is an fn parameter";
  case BIND_VAR: break;
  }
  return "it is not a var";
}

// Converts v to the var's fixed type. Weak literals convert, scalars and
// lower-rank tiles broadcast; a different dtype or shape is an error.
static SVal assign_convert(Sema *s, Binding *b, SVal v, Loc loc) {
  if (v.kind == SV_POISON) return v;
  if (!b->typed) {
    if (b->val.kind == SV_POISON) return v;
    if (v.kind != b->val.kind) {
      diag_at(s->d, DIAG_ERROR, loc, "assignment changes the type of '%s' from %s to %s", b->name,
              sv_desc(s, b->val), sv_desc(s, v));
      return sv_poison();
    }
    return v;
  }
  TirType t = b->vtype;
  if (v.kind == SV_VOID || (!sv_is_num_const(v) && v.kind != SV_VALUE)) {
    diag_at(s->d, DIAG_ERROR, loc, "cannot assign %s to '%s' of type %s", sv_desc(s, v), b->name,
            type_str(s, t));
    return sv_poison();
  }
  TirType vt = sv_type(v);
  bool ok;
  if (t.ptr || vt.ptr) {
    ok = t.ptr == vt.ptr && t.dtype == vt.dtype;
  } else if (v.weak) {
    bool w;
    ok = promote(t.dtype, false, vt.dtype, true, &w) == t.dtype;
  } else {
    ok = vt.dtype == t.dtype;
  }
  TirType r;
  if (ok) ok = broadcast_shapes(t, vt, &r) && tir_shape_eq(r, t);
  if (!ok) {
    diag_at(s->d, DIAG_ERROR, loc, "assignment changes the type of '%s' from %s to %s", b->name,
            type_str(s, t), sv_is_num_const(v) && v.weak ? dtype_name(vt.dtype) : type_str(s, vt));
    return sv_poison();
  }
  if (sv_is_num_const(v) && t.rank == 0) return const_convert(v, t.dtype);
  return sv_value(coerce(s, v, t.dtype, t, loc));
}

static int compound_op(int op) {
  switch (op) {
  case P_PLUSEQ: return P_PLUS;
  case P_MINUSEQ: return P_MINUS;
  case P_STAREQ: return P_STAR;
  case P_SLASHEQ: return P_SLASH;
  default: return -1;
  }
}

static void lower_assign(Sema *s, const Node *n) {
  Binding *b = scope_lookup(s, n->name);
  SVal v = eval(s, n->rhs);
  if (!b) {
    diag_at(s->d, DIAG_ERROR, n->nameloc, "unknown name '%s'", n->name);
    return;
  }
  if (b->kind != BIND_VAR) {
    diag_at(s->d, DIAG_ERROR, n->nameloc, "cannot assign to '%s': %s", n->name,
            bind_kind_name(b->kind));
    if (b->loc.src) diag_at(s->d, DIAG_NOTE, b->loc, "'%s' is declared here", n->name);
    return;
  }
  int op = compound_op(n->op);
  if (op >= 0) v = binary_op(s, op, b->val, v, n->loc);
  v = assign_convert(s, b, v, n->rhs ? expr_span(n->rhs) : n->loc);
  // After an error the var keeps its old value: its type is still known, so
  // later uses are checked normally.
  if (v.kind == SV_POISON) return;
  b->val = v;
  if (v.kind == SV_VALUE && !v.v->name) v.v->name = b->name;
}

static void lower_decl(Sema *s, const Node *n) {
  SVal v = eval(s, n->lhs);
  if (v.kind == SV_VOID) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->lhs), "cannot bind '%s' to an expression with no value",
            n->name);
    v = sv_poison();
  } else if (v.kind == SV_LIST) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->lhs), "a list can only be used as a shape argument");
    v = sv_poison();
  }
  scope_bind(s, n->name, v, n->kind == ND_VAR ? BIND_VAR : BIND_LET, n->nameloc);
}

// ---------------------------------------------------------------- control flow

// Names assigned in a statement list that are not declared inside it first.
typedef struct Scan {
  Arena *a;
  PtrVec local;
  PtrVec *out;
} Scan;

static bool in_vec(const PtrVec *v, const char *name) {
  for (int i = 0; i < v->len; i++)
    if (!strcmp(v->data[i], name)) return true;
  return false;
}

static void scan_stmt(Scan *sc, const Node *n);

static void scan_list(Scan *sc, const Node *first) {
  int save = sc->local.len;
  for (const Node *n = first; n; n = n->next) scan_stmt(sc, n);
  sc->local.len = save;
}

static void scan_stmt(Scan *sc, const Node *n) {
  if (!n) return;
  switch (n->kind) {
  case ND_LET:
  case ND_VAR:
  case ND_TUNABLE:
    if (n->name) vec_push(sc->a, &sc->local, (void *)n->name);
    break;
  case ND_ASSIGN:
    if (n->name && !in_vec(&sc->local, n->name) && !in_vec(sc->out, n->name))
      vec_push(sc->a, sc->out, (void *)n->name);
    break;
  case ND_BLOCK: scan_list(sc, n->body); break;
  case ND_FOR: {
    int save = sc->local.len;
    if (n->name) vec_push(sc->a, &sc->local, (void *)n->name);
    if (n->body) scan_list(sc, n->body->body);
    sc->local.len = save;
    break;
  }
  case ND_IF:
    if (n->then) scan_list(sc, n->then->body);
    if (n->els) scan_stmt(sc, n->els);
    break;
  default: break;
  }
}

// The outer vars a body (or two branches) may assign: their bindings.
static int carried_vars(Sema *s, const Node *a, const Node *b, Binding ***out, Loc loc) {
  PtrVec names = {0};
  Scan sc = {s->a, {0}, &names};
  scan_stmt(&sc, a);
  scan_stmt(&sc, b);
  Binding **bs = arena_alloc(s->a, sizeof(Binding *) * (size_t)(names.len + 1));
  int n = 0;
  for (int i = 0; bs && i < names.len; i++) {
    Binding *bd = scope_lookup(s, names.data[i]);
    if (!bd || bd->kind != BIND_VAR) continue;  // the assignment reports it
    if (!bd->typed) {
      if (bd->val.kind != SV_POISON)
        diag_at(s->d, DIAG_ERROR, loc, "var '%s' holding a %s cannot be assigned here; only numbers and tiles can change in a loop or runtime if",
                bd->name, sv_desc(s, bd->val));
      continue;
    }
    bs[n++] = bd;
  }
  *out = bs;
  return n;
}

static void lower_block_body(Sema *s, const Node *blk) {
  scope_push(s);
  lower_stmts(s, blk ? blk->body : NULL, NULL);
  scope_pop(s);
}

// Yields the current values of the carried vars (their fallback when an
// error made one poison, so the IR stays well formed).
static void emit_yield(Sema *s, Binding **cv, int nc, TirValue **fallback, Loc loc, bool always) {
  if (nc == 0 && !always) return;
  TirValue **ys = arena_alloc(s->a, sizeof(TirValue *) * (size_t)(nc + 1));
  if (!ys) return;
  for (int i = 0; i < nc; i++) {
    ys[i] = cv[i]->val.kind == SV_POISON ? NULL : coerce(s, cv[i]->val, cv[i]->vtype.dtype, cv[i]->vtype, loc);
    if (!ys[i]) ys[i] = fallback[i];
  }
  tir_inst_new(s->f, s->blk, TIR_YIELD, ys, nc, NULL, 0, loc);
}

static bool range_bound(Sema *s, SVal v, const Node *e, const char *what) {
  if (v.kind == SV_POISON) return false;
  if (v.kind == SV_VALUE && v.v->type.rank > 0) {
    diag_at(s->d, DIAG_ERROR, expr_span(e), "range %s must be a scalar, got %s", what,
            type_str(s, v.v->type));
    return false;
  }
  if (!(v.kind == SV_INT || (v.kind == SV_VALUE && !v.v->type.ptr && dtype_is_int(v.v->type.dtype)))) {
    diag_at(s->d, DIAG_ERROR, expr_span(e), "range %s must be an integer, got %s", what,
            v.kind == SV_VALUE && v.v->type.ptr ? "a pointer" : sv_desc(s, v));
    return false;
  }
  return true;
}

static void lower_for(Sema *s, const Node *n) {
  const Node *e[3] = {0};
  int na = 0;
  for (const Node *a = n->args; a && na < 3; a = a->next) e[na++] = a;
  const Node *lo_n = na >= 2 ? e[0] : NULL, *hi_n = na >= 2 ? e[1] : e[0], *st_n = na == 3 ? e[2] : NULL;
  SVal lo = lo_n ? eval(s, lo_n) : sv_int(0, DT_I32, true);
  SVal hi = hi_n ? eval(s, hi_n) : sv_poison();
  SVal st = st_n ? eval(s, st_n) : sv_int(1, DT_I32, true);
  bool ok = (!lo_n || range_bound(s, lo, lo_n, "start")) & range_bound(s, hi, hi_n, "end") &
            (!st_n || range_bound(s, st, st_n, "step"));
  if (ok && st.kind == SV_INT && st.i <= 0) {
    diag_at(s->d, DIAG_ERROR, expr_span(st_n), "range step must be positive, got %lld",
            (long long)st.i);
    ok = false;
  }
  Dtype it = DT_I32;
  SVal bnd[3] = {lo, hi, st};
  for (int i = 0; ok && i < 3; i++) {
    Dtype d = sv_dtype(bnd[i]);
    if (bnd[i].kind == SV_INT && bnd[i].weak)
      d = bnd[i].i >= INT32_MIN && bnd[i].i <= INT32_MAX ? DT_I32 : DT_I64;
    if (dtype_bits(d) == 64) it = DT_I64;
  }

  Binding **cv;
  int nc = carried_vars(s, n->body, NULL, &cv, n->loc);
  TirValue **args = arena_alloc(s->a, sizeof(TirValue *) * (size_t)(nc + 3));
  TirType *rt = arena_alloc(s->a, sizeof(TirType) * (size_t)(nc + 1));
  if (!args || !rt) return;
  for (int i = 0; ok && i < 3; i++) {
    args[i] = coerce(s, bnd[i], it, tir_scalar(it), n->loc);
    ok = args[i] != NULL;
  }
  for (int i = 0; i < nc; i++) {
    rt[i] = cv[i]->vtype;
    args[3 + i] = ok ? coerce(s, cv[i]->val, rt[i].dtype, rt[i], n->loc) : NULL;
    if (!args[3 + i]) ok = false;
  }

  TirBlock *body = tir_block_new(s->f);
  TirInst *in = NULL;
  TirValue *iv = body ? tir_block_add_arg(s->f, body, tir_scalar(it), n->name) : NULL;
  TirValue **bargs = arena_alloc(s->a, sizeof(TirValue *) * (size_t)(nc + 1));
  if (!body || !bargs) return;
  for (int i = 0; i < nc; i++) bargs[i] = tir_block_add_arg(s->f, body, rt[i], cv[i]->name);
  if (ok) {
    in = tir_inst_new(s->f, s->blk, TIR_FOR, args, nc + 3, rt, nc, n->loc);
    tir_inst_add_block(in, body);
  }
  // With bad bounds the body is still checked, in a detached block.
  TirBlock *outer = s->blk;
  s->blk = body;
  for (int i = 0; i < nc; i++) cv[i]->val = sv_value(bargs[i]);
  scope_push(s);
  scope_bind(s, n->name, ok ? sv_value(iv) : sv_poison(), BIND_LOOP, n->nameloc);
  lower_stmts(s, n->body ? n->body->body : NULL, NULL);
  scope_pop(s);
  // Loop bodies always end in a yield, even an empty one: the verifier
  // allows leaving it out, but the LLVM lowering expects it (see report).
  emit_yield(s, cv, nc, bargs, n->loc, true);
  s->blk = outer;
  for (int i = 0; i < nc; i++) {
    if (in && in->res) {
      cv[i]->val = sv_value(in->res[i]);
      in->res[i]->name = cv[i]->name;
    } else {
      cv[i]->val = sv_poison();
    }
  }
}

static void lower_branch(Sema *s, const Node *br) {
  if (!br) return;
  if (br->kind == ND_IF) lower_stmt(s, br);
  else lower_block_body(s, br);
}

static void lower_if(Sema *s, const Node *n) {
  SVal c = eval(s, n->cond);
  if (c.kind == SV_BOOL) {
    lower_branch(s, c.i ? n->then : n->els);
    return;
  }
  bool ok = c.kind != SV_POISON;
  if (ok && (c.kind != SV_VALUE || c.v->type.ptr || c.v->type.dtype != DT_BOOL)) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->cond), "if condition must be bool, got %s",
            c.kind == SV_VALUE && c.v->type.ptr ? "a pointer" : sv_desc(s, c));
    ok = false;
  } else if (ok && c.v->type.rank > 0) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->cond),
            "if condition must be a scalar, got %s (use where() for tiles)", type_str(s, c.v->type));
    ok = false;
  }
  if (!ok) {
    // Still check both branches; their IR is never used.
    lower_branch(s, n->then);
    lower_branch(s, n->els);
    return;
  }
  Binding **cv;
  int nc = carried_vars(s, n->then, n->els, &cv, n->loc);
  TirType *rt = arena_alloc(s->a, sizeof(TirType) * (size_t)(nc + 1));
  SVal *pre = arena_alloc(s->a, sizeof(SVal) * (size_t)(nc + 1));
  TirValue **fb = arena_alloc(s->a, sizeof(TirValue *) * (size_t)(nc + 1));
  if (!rt || !pre || !fb) return;
  for (int i = 0; i < nc; i++) {
    rt[i] = cv[i]->vtype;
    pre[i] = cv[i]->val;
  }
  // Fallback yields for poisoned vars: anything of the right type defined
  // before the if. Only needed after errors, when the IR is dropped anyway.
  for (int i = 0; i < nc; i++) fb[i] = NULL;
  TirInst *in = tir_inst_new(s->f, s->blk, TIR_IF, &c.v, 1, rt, nc, n->loc);
  TirBlock *outer = s->blk;
  for (int k = 0; k < 2; k++) {
    if (k == 1 && nc == 0 && !n->els) break;
    TirBlock *b = tir_block_new(s->f);
    if (!b || !in) return;
    tir_inst_add_block(in, b);
    s->blk = b;
    for (int i = 0; i < nc; i++) cv[i]->val = pre[i];
    lower_branch(s, k ? n->els : n->then);
    for (int i = 0; i < nc; i++)
      if (!fb[i] && cv[i]->val.kind == SV_POISON)
        fb[i] = coerce(s, sv_int(0, DT_I32, true), rt[i].dtype, rt[i], n->loc);
    emit_yield(s, cv, nc, fb, n->loc, false);
  }
  s->blk = outer;
  for (int i = 0; i < nc; i++) {
    cv[i]->val = sv_value(in->res[i]);
    in->res[i]->name = cv[i]->name;
  }
}

static void lower_static_assert(Sema *s, const Node *n) {
  SVal c = eval(s, n->lhs);
  if (c.kind == SV_POISON) return;
  if (c.kind == SV_VALUE) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->lhs), "static_assert condition must be a constant");
    return;
  }
  if (c.kind != SV_BOOL) {
    diag_at(s->d, DIAG_ERROR, expr_span(n->lhs), "static_assert needs a bool condition, got %s",
            sv_desc(s, c));
    return;
  }
  if (c.i) return;
  if (n->rhs && n->rhs->str)
    diag_at(s->d, DIAG_ERROR, n->loc, "static assertion failed: %s", n->rhs->str);
  else
    diag_at(s->d, DIAG_ERROR, n->loc, "static assertion failed");
}

// ---------------------------------------------------------------- statements

void lower_stmt(Sema *s, const Node *n) {
  s->big_tile_reported = false;
  switch (n->kind) {
  case ND_LET:
  case ND_VAR: lower_decl(s, n); return;
  case ND_ASSIGN: lower_assign(s, n); return;
  case ND_EXPR_STMT: (void)eval(s, n->lhs); return;
  case ND_BLOCK: lower_block_body(s, n); return;
  case ND_FOR: lower_for(s, n); return;
  case ND_IF: lower_if(s, n); return;
  case ND_STATIC_ASSERT: lower_static_assert(s, n); return;
  case ND_TUNABLE: lower_tunable(s, n); return;
  case ND_RETURN:
    if (s->in_fn)
      diag_at(s->d, DIAG_ERROR, n->loc, "'return' must be the last statement of an fn");
    else
      diag_at(s->d, DIAG_ERROR, n->loc, "'return' is not allowed in a kernel");
    if (n->lhs) (void)eval(s, n->lhs);
    return;
  default:
    diag_at(s->d, DIAG_ERROR, n->loc, "internal error: node kind %d is not a statement", (int)n->kind);
    return;
  }
}

void lower_stmts(Sema *s, const Node *first, SVal *ret) {
  for (const Node *n = first; n; n = n->next) {
    if (n->kind == ND_RETURN && ret && !n->next) {
      *ret = n->lhs ? eval(s, n->lhs) : sv_void();
      continue;
    }
    lower_stmt(s, n);
  }
}

// ---------------------------------------------------------------- entry

static const Func *choose_kernel(Sema *s) {
  const Module *m = s->m;
  const char *want = s->opt ? s->opt->kernel : NULL;
  if (want) {
    const Func *f = module_find(m, want);
    if (!f) {
      diag_plain(s->d, DIAG_ERROR, "no kernel named '%s' in %s", want, m->file ? m->file : "the source");
      return NULL;
    }
    if (!f->is_kernel) {
      diag_plain(s->d, DIAG_ERROR, "'%s' is an fn helper, not a kernel", want);
      return NULL;
    }
    return f;
  }
  const Func *found = NULL;
  int n = 0;
  for (const Func *f = m->funcs; f; f = f->next)
    if (f->is_kernel) {
      if (!found) found = f;
      n++;
    }
  if (n == 0) {
    diag_plain(s->d, DIAG_ERROR, "%s has no kernel", m->file ? m->file : "the source");
    return NULL;
  }
  if (n > 1) {
    StrBuf sb;
    sb_init(&sb);
    for (const Func *f = m->funcs; f; f = f->next)
      if (f->is_kernel) sb_printf(&sb, "%s'%s'", sb.len ? ", " : "", f->name);
    diag_plain(s->d, DIAG_ERROR, "%s has %d kernels (%s); choose one", m->file ? m->file : "the source",
               n, sb.data ? sb.data : "");
    sb_free(&sb);
    return NULL;
  }
  return found;
}

static void check_defines(Sema *s) {
  for (int i = 0; i < s->opt->ndefines; i++) {
    if (s->define_used[i]) continue;
    const Define *df = &s->opt->defines[i];
    const char *name = df->name ? df->name : "";
    bool runtime = false;
    for (const Param *p = s->kernel->params; p; p = p->next)
      if (p->kind != PARAM_CONST && !strcmp(p->name, name)) runtime = true;
    if (runtime)
      diag_plain(s->d, DIAG_ERROR, "-D %s: '%s' is a runtime parameter of kernel '%s', not a constant",
                 name, name, s->kernel->name);
    else
      diag_plain(s->d, DIAG_ERROR, "-D %s: kernel '%s' has no constant or tunable named '%s'", name,
                 s->kernel->name, name);
  }
}

// Out of memory, in a pass or in the verifier, is reported through the
// arena's sticky flag: that is what the caller tells apart from malformed IR
// (TJ_ERR_NO_MEMORY, not an internal error).
static bool run_pass(Sema *s, void (*pass)(TirFunc *), const char *name) {
  if (pass) pass(s->f);
  if (s->a->failed) return false;
#ifdef TJ_VERIFY_EACH_PASS
  tj_status st = tir_verify_status(s->f, s->d);
  if (st == TJ_ERR_NO_MEMORY) {
    // The verifier's scratch is not arena memory; the compile is out of
    // memory all the same.
    s->a->failed = true;
    return false;
  }
  if (st != TJ_OK) {
    diag_plain(s->d, DIAG_ERROR, "internal error: the tile IR is malformed after %s", name);
    return false;
  }
#else
  (void)name;
#endif
  return true;
}

struct TirFunc *sema_lower(Arena *a, Diag *d, const Module *m, const SemaOptions *opt) {
  if (!a || !d || !m) return NULL;
  SemaOptions none = {0};
  Sema S = {0}, *s = &S;
  s->a = a;
  s->d = d;
  s->m = m;
  s->opt = opt ? opt : &none;
  int errors0 = d->nerrors;
  s->kernel = choose_kernel(s);
  if (!s->kernel) return NULL;
  if (s->opt->num_warps < 0 || (s->opt->num_warps > 0 && (!is_pow2(s->opt->num_warps) || s->opt->num_warps > 32))) {
    diag_plain(d, DIAG_ERROR, "num_warps must be a power of two from 1 to 32, got %d", s->opt->num_warps);
    return NULL;
  }
  s->define_used = arena_alloc(a, sizeof(bool) * (size_t)(s->opt->ndefines + 1));
  s->f = tir_func_new(a, s->kernel->name, m->file);
  if (!s->f || !s->define_used) {
    diag_plain(d, DIAG_ERROR, "out of memory");
    return NULL;
  }
  s->blk = s->f->body;
  scope_push(s);
  s->globals = s->scope;
  scope_push(s);
  s->kernel_frame = s->scope;

  lower_params(s, s->kernel);
  lower_stmts(s, s->kernel->body ? s->kernel->body->body : NULL, NULL);
  check_defines(s);

  if (a->failed) {
    diag_plain(d, DIAG_ERROR, "out of memory");
    return NULL;
  }
  if (d->nerrors > errors0) return NULL;

  TirFunc *f = s->f;
  f->num_warps = s->opt->num_warps > 0 ? s->opt->num_warps : s->tunable_warps > 0 ? s->tunable_warps : 4;
  // 0 lets codegen pick its default; a `tunable num_stages` is also a
  // constant, so it is part of every cache and tuning key.
  f->num_stages = s->tunable_stages;
  f->min_programs_per_sm = s->tunable_minsm;
  f->nconsts = s->consts.len;
  f->consts = arena_alloc(a, sizeof(TirConstDef) * (size_t)(f->nconsts + 1));
  f->ntunables = s->tunables.len;
  f->tunables = arena_alloc(a, sizeof(TirTunable) * (size_t)(f->ntunables + 1));
  if (!f->consts || !f->tunables) {
    diag_plain(d, DIAG_ERROR, "out of memory");
    return NULL;
  }
  for (int i = 0; i < f->nconsts; i++) f->consts[i] = *(TirConstDef *)s->consts.data[i];
  for (int i = 0; i < f->ntunables; i++) f->tunables[i] = *(TirTunable *)s->tunables.data[i];

  if (!run_pass(s, NULL, "sema") || !run_pass(s, tir_fold, "tir_fold") ||
      !run_pass(s, tir_cse, "tir_cse") || !run_pass(s, tir_dce, "tir_dce")) {
    if (a->failed) diag_plain(d, DIAG_ERROR, "out of memory");
    return NULL;
  }
  return f;
}
