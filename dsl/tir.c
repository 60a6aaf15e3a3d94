/* tir.c: tile IR types, builder and printer.
 *
 * requires: an Arena (TirFunc.arena) for every node; produces: IR that the
 * verifier (tir_verify.c) checks and the backends consume.
 *
 * The builder does not check types: sema and the passes build IR, and the
 * verifier is the single place that decides whether it is well formed. An
 * arena allocation failure is sticky in the arena; the builder then returns
 * NULL and the caller checks arena->failed once at the pass boundary.
 *
 * The printed text is read by golden tests, so it is deterministic and
 * carries no source locations. Values are renumbered in print order (params
 * print by name), so the text does not depend on the dense ids, which keep
 * gaps after DCE. Multi-result ops print each result (`%4, %5 = for ...`).
 */
#include "tir.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tir_op_names[TIR_OP_COUNT] = {
#define X(id, name, nargs, rule) name,
    TIR_OPS(X)
#undef X
};
const signed char tir_op_nargs[TIR_OP_COUNT] = {
#define X(id, name, nargs, rule) nargs,
    TIR_OPS(X)
#undef X
};
const unsigned char tir_op_rules[TIR_OP_COUNT] = {
#define X(id, name, nargs, rule) rule,
    TIR_OPS(X)
#undef X
};

#define X(id, name, nargs, rule) +1
_Static_assert(0 TIR_OPS(X) == TIR_OP_COUNT, "op table rows and TirOp differ");
#undef X
_Static_assert(sizeof tir_op_names / sizeof tir_op_names[0] == TIR_OP_COUNT, "tir_op_names");
_Static_assert(sizeof tir_op_nargs / sizeof tir_op_nargs[0] == TIR_OP_COUNT, "tir_op_nargs");
_Static_assert(sizeof tir_op_rules / sizeof tir_op_rules[0] == TIR_OP_COUNT, "tir_op_rules");

const char *const tir_cmp_names[CMP_COUNT] = {"lt", "le", "gt", "ge", "eq", "ne"};
const char *const tir_redop_names[RED_COUNT] = {"sum", "max", "min", "argmax", "argmin"};
_Static_assert(sizeof tir_cmp_names / sizeof tir_cmp_names[0] == CMP_COUNT, "tir_cmp_names");
_Static_assert(sizeof tir_redop_names / sizeof tir_redop_names[0] == RED_COUNT, "tir_redop_names");

// ---------------------------------------------------------------- types

TirType tir_type(Dtype dt, int rank, const int *shape) {
  TirType t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  if (rank < 0) rank = 0;
  if (rank > TIR_MAX_RANK) rank = TIR_MAX_RANK;
  t.rank = rank;
  for (int i = 0; i < rank; i++) t.shape[i] = shape[i];
  return t;
}

TirType tir_scalar(Dtype dt) { return tir_type(dt, 0, NULL); }

TirType tir_with_dtype(TirType t, Dtype dt) {
  t.dtype = dt;
  t.ptr = false;
  return t;
}

bool tir_shape_eq(TirType a, TirType b) {
  if (a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; i++)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

bool tir_type_eq(TirType a, TirType b) {
  return a.dtype == b.dtype && a.ptr == b.ptr && tir_shape_eq(a, b);
}

int64_t tir_numel(TirType t) {
  int64_t n = 1;
  for (int i = 0; i < t.rank; i++) n *= t.shape[i];
  return n;
}

static const char *dt_name(Dtype d) {
  const char *s = (unsigned)d < DT_COUNT ? dtype_name(d) : NULL;
  return s ? s : "?";
}

void tir_type_str(StrBuf *sb, TirType t) {
  if (t.rank > 0) {
    sb_putc(sb, '[');
    for (int i = 0; i < t.rank; i++) sb_printf(sb, "%s%d", i ? ", " : "", t.shape[i]);
    sb_puts(sb, "] ");
  }
  if (t.ptr) sb_putc(sb, '*');
  sb_puts(sb, dt_name(t.dtype));
}

// ---------------------------------------------------------------- builder

TirFunc *tir_func_new(Arena *a, const char *name, const char *file) {
  TirFunc *f = arena_alloc(a, sizeof *f);
  if (!f) return NULL;
  f->arena = a;
  f->name = name;
  f->file = file;
  f->num_warps = 4;
  f->body = tir_block_new(f);
  if (!f->body) return NULL;
  return f;
}

static TirValue *value_new(TirFunc *f, TirType t) {
  TirValue *v = arena_alloc(f->arena, sizeof *v);
  if (!v) return NULL;
  v->id = f->nvalues++;
  v->type = t;
  return v;
}

// Grows an arena array of pointers by one. Arrays here are short (block args,
// params), so copying on each append is fine.
static bool grow(Arena *a, void ***arr, int n, size_t elem) {
  void **na = arena_alloc(a, (size_t)(n + 1) * elem);
  if (!na) return false;
  if (n) memcpy(na, *arr, (size_t)n * elem);
  *arr = na;
  return true;
}

TirValue *tir_func_add_param(TirFunc *f, const char *name, bool ptr, Dtype dt, Loc loc) {
  if (!f) return NULL;
  TirType t = tir_scalar(dt);
  t.ptr = ptr;
  TirValue *v = tir_block_add_arg(f, f->body, t, name);
  if (!v) return NULL;
  void *params = f->params;
  if (!grow(f->arena, (void ***)&params, f->nparams, sizeof(TirParam))) return NULL;
  f->params = params;
  TirParam *p = &f->params[f->nparams++];
  memset(p, 0, sizeof *p);
  p->name = name;
  p->ptr = ptr;
  p->dtype = dt;
  p->value = v;
  p->loc = loc;
  return v;
}

TirBlock *tir_block_new(TirFunc *f) {
  if (!f) return NULL;
  return arena_alloc(f->arena, sizeof(TirBlock));
}

TirValue *tir_block_add_arg(TirFunc *f, TirBlock *b, TirType t, const char *name) {
  if (!f || !b) return NULL;
  TirValue *v = value_new(f, t);
  if (!v) return NULL;
  if (!grow(f->arena, (void ***)&b->args, b->nargs, sizeof(TirValue *))) return NULL;
  v->block = b;
  v->idx = b->nargs;
  v->name = name;
  b->args[b->nargs++] = v;
  return v;
}

TirInst *tir_inst_new(TirFunc *f, TirBlock *b, TirOp op, TirValue **args, int nargs,
                      const TirType *rtypes, int nres, Loc loc) {
  if (!f || !b) return NULL;
  TirInst *in = arena_alloc(f->arena, sizeof *in);
  if (!in) return NULL;
  in->op = op;
  in->loc = loc;
  in->nargs = nargs;
  in->nres = nres;
  if (nargs > 0) {
    in->args = arena_alloc(f->arena, (size_t)nargs * sizeof(TirValue *));
    if (!in->args) return NULL;
    if (args) memcpy(in->args, args, (size_t)nargs * sizeof(TirValue *));
  }
  if (nres > 0) {
    in->res = arena_alloc(f->arena, (size_t)nres * sizeof(TirValue *));
    if (!in->res) return NULL;
    for (int i = 0; i < nres; i++) {
      TirValue *v = value_new(f, rtypes[i]);
      if (!v) return NULL;
      v->def = in;
      v->idx = i;
      in->res[i] = v;
    }
  }
  in->parent = b;
  in->prev = b->last;
  if (b->last) b->last->next = in;
  else b->first = in;
  b->last = in;
  return in;
}

TirValue *tir_emit(TirFunc *f, TirBlock *b, TirOp op, TirType rt, TirValue **args, int nargs,
                   Loc loc) {
  bool has_res = rt.dtype != DT_VOID;
  TirInst *in = tir_inst_new(f, b, op, args, nargs, &rt, has_res ? 1 : 0, loc);
  if (!in || !has_res) return NULL;
  return in->res[0];
}

TirValue *tir_const_int(TirFunc *f, TirBlock *b, TirType t, int64_t v, Loc loc) {
  TirInst *in = tir_inst_new(f, b, TIR_CONST, NULL, 0, &t, 1, loc);
  if (!in) return NULL;
  if (dtype_is_float(t.dtype)) in->cval.f = (double)v;
  else in->cval.i = t.dtype == DT_BOOL ? (v != 0) : v;
  return in->res[0];
}

TirValue *tir_const_float(TirFunc *f, TirBlock *b, TirType t, double v, Loc loc) {
  TirInst *in = tir_inst_new(f, b, TIR_CONST, NULL, 0, &t, 1, loc);
  if (!in) return NULL;
  if (dtype_is_float(t.dtype)) in->cval.f = v;
  else in->cval.i = (int64_t)v;  // callers pass ints through tir_const_int
  return in->res[0];
}

void tir_inst_remove(TirInst *in) {
  if (!in || !in->parent) return;
  TirBlock *b = in->parent;
  if (in->prev) in->prev->next = in->next;
  else b->first = in->next;
  if (in->next) in->next->prev = in->prev;
  else b->last = in->prev;
  in->next = in->prev = NULL;
  in->parent = NULL;
}

void tir_inst_add_block(TirInst *in, TirBlock *b) {
  if (!in || !b || in->nblocks >= 2) return;
  in->blocks[in->nblocks++] = b;
  b->owner = in;
}

bool tir_block_has(const TirBlock *b, TirOp op) {
  for (const TirInst *in = b ? b->first : NULL; in; in = in->next) {
    if (in->op == op) return true;
    for (int k = 0; k < in->nblocks; k++)
      if (tir_block_has(in->blocks[k], op)) return true;
  }
  return false;
}

bool tir_in_loop(const TirInst *in) {
  for (const TirBlock *b = in ? in->parent : NULL; b && b->owner; b = b->owner->parent)
    if (b->owner->op == TIR_FOR) return true;
  return false;
}

void tir_replace_uses(TirBlock *b, TirValue *from, TirValue *to) {
  if (!b) return;
  for (TirInst *in = b->first; in; in = in->next) {
    for (int i = 0; i < in->nargs; i++)
      if (in->args[i] == from) in->args[i] = to;
    for (int k = 0; k < in->nblocks; k++) tir_replace_uses(in->blocks[k], from, to);
  }
}

// ---------------------------------------------------------------- printer

// Shortest text that reads back as the same double; always has a '.', 'e',
// "inf" or "nan" so a float constant never looks like an int.
void tir_format_double(char *buf, size_t n, double v) {
  if (isnan(v)) {
    snprintf(buf, n, "%snan", signbit(v) ? "-" : "");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, n, "%sinf", v < 0 ? "-" : "");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  if (!strpbrk(buf, ".en")) {
    size_t l = strlen(buf);
    if (l + 3 <= n) memcpy(buf + l, ".0", 3);
  }
}

typedef struct Printer {
  StrBuf *sb;
  const TirFunc *f;
  int *num;   // print number per value id; -1 = unnumbered
  int next;
} Printer;

static int number(Printer *p, const TirValue *v) {
  if (!p->num || v->id < 0 || v->id >= p->f->nvalues) return -1;
  if (p->num[v->id] < 0) p->num[v->id] = p->next++;
  return p->num[v->id];
}

static void put_value(Printer *p, const TirValue *v) {
  if (!v) {
    sb_puts(p->sb, "%<null>");
    return;
  }
  // Params print by name; detected by being an arg of the function body.
  if (!v->def && v->block == p->f->body && v->name) {
    sb_printf(p->sb, "%%%s", v->name);
    return;
  }
  int k = number(p, v);
  if (k < 0) sb_printf(p->sb, "%%?%d", v->id);
  else sb_printf(p->sb, "%%%d", k);
}

static void put_args(Printer *p, const TirInst *in, int from) {
  for (int i = from; i < in->nargs; i++) {
    if (i > from) sb_puts(p->sb, ", ");
    put_value(p, in->args[i]);
  }
}

static void indent(Printer *p, int depth) {
  for (int i = 0; i < depth; i++) sb_puts(p->sb, "  ");
}

static void put_const(Printer *p, const TirInst *in) {
  Dtype dt = in->nres ? in->res[0]->type.dtype : DT_VOID;
  if (dtype_is_float(dt)) {
    char buf[40];
    tir_format_double(buf, sizeof buf, in->cval.f);
    sb_puts(p->sb, buf);
  } else if (dt == DT_BOOL) {
    sb_puts(p->sb, in->cval.i ? "true" : "false");
  } else if (dt == DT_U64) {
    sb_printf(p->sb, "%" PRIu64, (uint64_t)in->cval.i);
  } else {
    sb_printf(p->sb, "%" PRId64, in->cval.i);
  }
}

static void put_types(Printer *p, const TirInst *in) {
  if (in->nres == 0) return;
  sb_puts(p->sb, " : ");
  if (in->nres == 1 && in->op != TIR_FOR && in->op != TIR_IF) {
    tir_type_str(p->sb, in->res[0]->type);
    return;
  }
  sb_putc(p->sb, '(');
  for (int i = 0; i < in->nres; i++) {
    if (i) sb_puts(p->sb, ", ");
    tir_type_str(p->sb, in->res[i]->type);
  }
  sb_putc(p->sb, ')');
}

static void print_block(Printer *p, const TirBlock *b, int depth);

// A trailing comment with the source names of the results, when sema left
// any: it makes dumps of real kernels readable without affecting numbering.
static void put_names(Printer *p, const TirInst *in) {
  bool any = false;
  for (int i = 0; i < in->nres; i++)
    if (in->res[i]->name) any = true;
  if (!any) return;
  sb_puts(p->sb, "  //");
  for (int i = 0; i < in->nres; i++) sb_printf(p->sb, " %s", in->res[i]->name ? in->res[i]->name : "_");
}

static void print_inst(Printer *p, const TirInst *in, int depth) {
  StrBuf *sb = p->sb;
  indent(p, depth);
  for (int i = 0; i < in->nres; i++) {
    if (i) sb_puts(sb, ", ");
    put_value(p, in->res[i]);
  }
  if (in->nres) sb_puts(sb, " = ");
  const char *name = (unsigned)in->op < TIR_OP_COUNT ? tir_op_names[in->op] : "?op";
  sb_puts(sb, name);
  switch (in->op) {
  case TIR_CONST:
    sb_putc(sb, ' ');
    put_const(p, in);
    break;
  case TIR_PROGRAM_ID:
  case TIR_NUM_PROGRAMS:
    sb_printf(sb, " %d", in->axis);
    break;
  case TIR_ARANGE:
    sb_printf(sb, " %d, %d", in->lo, in->hi);
    break;
  case TIR_EXPAND_DIMS:
    sb_putc(sb, ' ');
    put_args(p, in, 0);
    sb_printf(sb, ", axis=%d", in->axis);
    break;
  case TIR_CMP:
    sb_printf(sb, " %s ", (unsigned)in->pred < CMP_COUNT ? tir_cmp_names[in->pred] : "?pred");
    put_args(p, in, 0);
    break;
  case TIR_REDUCE:
    sb_printf(sb, " %s ", (unsigned)in->redop < RED_COUNT ? tir_redop_names[in->redop] : "?redop");
    put_args(p, in, 0);
    sb_printf(sb, ", axis=%d", in->axis);
    break;
  case TIR_FOR: {
    sb_putc(sb, ' ');
    const TirBlock *body = in->nblocks > 0 ? in->blocks[0] : NULL;
    if (body && body->nargs > 0) put_value(p, body->args[0]);
    else sb_puts(sb, "%<no-iv>");
    sb_puts(sb, " = ");
    if (in->nargs > 0) put_value(p, in->args[0]);
    sb_puts(sb, " to ");
    if (in->nargs > 1) put_value(p, in->args[1]);
    sb_puts(sb, " step ");
    if (in->nargs > 2) put_value(p, in->args[2]);
    if (in->nargs > 3) {
      sb_puts(sb, " iter(");
      for (int i = 3; i < in->nargs; i++) {
        if (i > 3) sb_puts(sb, ", ");
        if (body && i - 2 < body->nargs) put_value(p, body->args[i - 2]);
        else sb_puts(sb, "%<no-arg>");
        sb_puts(sb, " = ");
        put_value(p, in->args[i]);
      }
      sb_putc(sb, ')');
    }
    put_types(p, in);
    sb_puts(sb, " {");
    put_names(p, in);
    sb_putc(sb, '\n');
    if (body) print_block(p, body, depth + 1);
    indent(p, depth);
    sb_puts(sb, "}\n");
    return;
  }
  case TIR_IF: {
    sb_putc(sb, ' ');
    put_args(p, in, 0);
    put_types(p, in);
    sb_puts(sb, " {");
    put_names(p, in);
    sb_putc(sb, '\n');
    if (in->nblocks > 0) print_block(p, in->blocks[0], depth + 1);
    indent(p, depth);
    const TirBlock *els = in->nblocks > 1 ? in->blocks[1] : NULL;
    // An else that only yields nothing is noise: `if %c { ... }`.
    bool show_else = els && (els->first != els->last || (els->first && (els->first->op != TIR_YIELD ||
                                                                         els->first->nargs > 0)));
    if (show_else) {
      sb_puts(sb, "} else {\n");
      print_block(p, els, depth + 1);
      indent(p, depth);
    }
    sb_puts(sb, "}\n");
    return;
  }
  case TIR_SPLAT: case TIR_BROADCAST: case TIR_RESHAPE: case TIR_TRANS:
  case TIR_NEG: case TIR_NOT: case TIR_ABS: case TIR_EXP: case TIR_EXP2:
  case TIR_LOG: case TIR_LOG2: case TIR_SQRT: case TIR_RSQRT: case TIR_ERF:
  case TIR_TANH: case TIR_FLOOR: case TIR_CEIL: case TIR_ADD: case TIR_SUB:
  case TIR_MUL: case TIR_DIV: case TIR_REM: case TIR_MAX: case TIR_MIN:
  case TIR_AND: case TIR_OR: case TIR_XOR: case TIR_SHL: case TIR_SHR:
  case TIR_PTR_ADD: case TIR_FMA: case TIR_WHERE: case TIR_CAST: case TIR_BITCAST:
  case TIR_LOAD: case TIR_STORE: case TIR_DOT: case TIR_PHILOX: case TIR_YIELD:
  case TIR_OP_COUNT:
    if (in->nargs) sb_putc(sb, ' ');
    put_args(p, in, 0);
    break;
  }
  put_types(p, in);
  put_names(p, in);
  sb_putc(sb, '\n');
}

static void print_block(Printer *p, const TirBlock *b, int depth) {
  for (const TirInst *in = b->first; in; in = in->next) print_inst(p, in, depth);
}

void tir_print(StrBuf *sb, const TirFunc *f) {
  if (!f) return;
  Printer p = {sb, f, NULL, 0};
  if (f->nvalues > 0) {
    p.num = tj_malloc((size_t)f->nvalues * sizeof(int));
    if (!p.num) {
      sb->failed = true;
      return;
    }
    for (int i = 0; i < f->nvalues; i++) p.num[i] = -1;
  }
  sb_printf(sb, "kernel %s(", f->name ? f->name : "?");
  for (int i = 0; i < f->nparams; i++) {
    const TirParam *pa = &f->params[i];
    sb_printf(sb, "%s%%%s: %s%s", i ? ", " : "", pa->name ? pa->name : "?", pa->ptr ? "*" : "",
              dt_name(pa->dtype));
    if (pa->spec & TIR_SPEC_ALIGN16) sb_puts(sb, " align16");
    if (pa->spec & TIR_SPEC_DIV16) sb_puts(sb, " div16");
    if (pa->spec & TIR_SPEC_ONE) sb_puts(sb, " one");
  }
  sb_printf(sb, ") num_warps=%d\n", f->num_warps);
  if (f->nconsts > 0) {
    sb_puts(sb, "  const ");
    for (int i = 0; i < f->nconsts; i++)
      sb_printf(sb, "%s%s = %s", i ? ", " : "", f->consts[i].name, f->consts[i].text);
    sb_putc(sb, '\n');
  }
  for (int i = 0; i < f->ntunables; i++) {
    const TirTunable *t = &f->tunables[i];
    sb_printf(sb, "  tunable %s in {", t->name);
    for (int k = 0; k < t->nvalues; k++) sb_printf(sb, "%s%" PRId64, k ? ", " : "", t->values[k]);
    sb_puts(sb, "}\n");
  }
  sb_puts(sb, "{\n");
  if (f->body) print_block(&p, f->body, 1);
  sb_puts(sb, "}\n");
  tj_free(p.num);
}
