/* tir_opt.c: cleanup passes run after sema.
 *
 * requires: verified IR; produces: verified IR with the same observable
 * behaviour (the stores it performs, in order, and their values).
 *
 * tir_fold: an op whose operands are all CONST becomes a CONST, evaluated
 *   with the interpreter's own element functions (tir_eval.h), so folding
 *   never changes a result. CONSTs of tile type are uniform (splats), so
 *   elementwise ops and splat/broadcast/reshape of them fold too. The inst is
 *   rewritten in place: its result value, and so every use, stays.
 * tir_cse: merges a pure single-result inst with an identical earlier one in
 *   the same block or an enclosing block (which dominates it). LOAD is not
 *   pure (a store may come between); STORE, FOR, IF and YIELD never merge.
 * tir_dce: liveness from the roots (every STORE, and the loops and ifs that
 *   contain one). Everything not feeding a root goes, unused LOADs included:
 *   a load has no side effect, and the backends would drop it anyway. Dead
 *   loop-carried values and dead if results are removed from their FOR/IF.
 *
 * tir_cse and tir_dce allocate scratch tables with tj_malloc. If that fails
 * they leave the function unchanged and set the arena's sticky failed flag,
 * as a failed arena allocation would: the compilation then ends with
 * TJ_ERR_NO_MEMORY. Skipping the pass quietly would also be correct, but the
 * kernel would differ from the one the same source normally gives, and the
 * compile cache would store it under the normal key.
 */
#include "tir.h"

#include <stdlib.h>
#include <string.h>

#include "tir_eval.h"

// Reports that a pass could not get its scratch memory (see the top).
static void scratch_failed(TirFunc *f) {
  if (f->arena) f->arena->failed = true;
}

// ---------------------------------------------------------------- fold

static bool is_const(const TirValue *v) { return v && v->def && v->def->op == TIR_CONST; }

static TirElem const_elem(const TirValue *v) {
  // Builders may store a float constant unrounded (0.1 for an f32); every
  // consumer rounds it to the element type first, as the interpreter does.
  TirElem e;
  if (dtype_is_float(v->type.dtype)) e.f = tir_round_d(v->type.dtype, v->def->cval.f);
  else e.i = tir_wrap(v->type.dtype, v->def->cval.i);
  return e;
}

// Evaluates a foldable op on constant operands; false when the op does not fold.
static bool fold_eval(const TirInst *in, TirElem *out) {
  TirElem a[3] = {{0}, {0}, {0}};
  for (int i = 0; i < in->nargs && i < 3; i++) a[i] = const_elem(in->args[i]);
  Dtype dt = in->nargs > 0 ? in->args[0]->type.dtype : DT_VOID;
  Dtype rt = in->res[0]->type.dtype;
  switch (in->op) {
  case TIR_SPLAT: case TIR_BROADCAST: case TIR_EXPAND_DIMS: case TIR_RESHAPE: case TIR_TRANS:
    if (in->args[0]->type.ptr) return false;
    *out = a[0];
    return true;
  case TIR_NEG: case TIR_NOT: case TIR_ABS: case TIR_EXP: case TIR_EXP2: case TIR_LOG:
  case TIR_LOG2: case TIR_SQRT: case TIR_RSQRT: case TIR_ERF: case TIR_TANH: case TIR_FLOOR:
  case TIR_CEIL:
    *out = tir_eval_unary(in->op, dt, a[0]);
    return true;
  case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_DIV: case TIR_REM: case TIR_MAX:
  case TIR_MIN: case TIR_AND: case TIR_OR: case TIR_XOR: case TIR_SHL: case TIR_SHR:
    *out = tir_eval_binary(in->op, dt, a[0], a[1]);
    return true;
  case TIR_CMP:
    out->i = tir_eval_cmp(in->pred, dt, a[0], a[1]);
    return true;
  case TIR_FMA:
    *out = tir_eval_fma(dt, a[0], a[1], a[2]);
    return true;
  case TIR_WHERE:
    if (in->args[1]->type.ptr) return false;
    *out = a[0].i ? a[1] : a[2];
    return true;
  case TIR_CAST:
    *out = tir_eval_cast(dt, rt, a[0]);
    return true;
  case TIR_BITCAST:
    *out = tir_eval_bitcast(dt, rt, a[0]);
    return true;
  case TIR_PHILOX:
    out->i = tir_eval_philox(a[0].u, a[1].u, a[2].u);
    return true;
  case TIR_CONST: case TIR_PROGRAM_ID: case TIR_NUM_PROGRAMS: case TIR_ARANGE: case TIR_PTR_ADD:
  case TIR_LOAD: case TIR_STORE: case TIR_REDUCE: case TIR_DOT: case TIR_FOR: case TIR_IF:
  case TIR_YIELD: case TIR_OP_COUNT:
    return false;
  }
  return false;
}

static void fold_block(TirBlock *b) {
  for (TirInst *in = b->first; in; in = in->next) {
    for (int k = 0; k < in->nblocks; k++)
      if (in->blocks[k]) fold_block(in->blocks[k]);
    if (in->op == TIR_CONST || in->nres != 1 || in->nargs == 0) continue;
    bool all = true;
    for (int i = 0; i < in->nargs; i++) all &= is_const(in->args[i]);
    TirElem r;
    if (!all || !fold_eval(in, &r)) continue;
    in->op = TIR_CONST;
    in->nargs = 0;
    in->args = NULL;
    in->flags = 0;
    in->axis = in->lo = in->hi = in->pred = in->redop = 0;  // so CSE sees equal consts as equal
    if (dtype_is_float(in->res[0]->type.dtype)) in->cval.f = r.f;
    else in->cval.i = r.i;
  }
}

void tir_fold(TirFunc *f) {
  if (f && f->body) fold_block(f->body);
}

// ---------------------------------------------------------------- cse

typedef struct CseEntry {
  TirInst *in;
  uint64_t hash;
  struct CseEntry *next;
} CseEntry;

typedef struct Cse {
  CseEntry **tab;
  size_t mask;
  CseEntry *stack;  // entries, pushed in walk order, popped at scope exit
  int top;
  TirValue **map;   // value id -> replacement (NULL: itself)
} Cse;

static bool cse_pure(const TirInst *in) {
  switch (in->op) {
  case TIR_LOAD: case TIR_STORE: case TIR_FOR: case TIR_IF: case TIR_YIELD: case TIR_OP_COUNT:
    return false;
  default:
    return in->nres == 1;
  }
}

static uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  return h;
}

static uint64_t cse_hash(const TirInst *in) {
  uint64_t h = mix(0, (uint64_t)in->op);
  for (int i = 0; i < in->nargs; i++) h = mix(h, (uint64_t)in->args[i]->id);
  const TirType *t = &in->res[0]->type;
  h = mix(h, (uint64_t)t->dtype * 2 + t->ptr);
  for (int i = 0; i < t->rank; i++) h = mix(h, (uint64_t)t->shape[i]);
  uint64_t c;
  memcpy(&c, &in->cval, sizeof c);
  h = mix(h, c);
  h = mix(h, ((uint64_t)(uint32_t)in->axis << 32) | (uint32_t)in->pred);
  h = mix(h, ((uint64_t)(uint32_t)in->lo << 32) | (uint32_t)in->hi);
  h = mix(h, ((uint64_t)(uint32_t)in->redop << 32) | in->flags);
  return h;
}

static bool cse_same(const TirInst *a, const TirInst *b) {
  if (a->op != b->op || a->nargs != b->nargs || a->nres != b->nres) return false;
  for (int i = 0; i < a->nargs; i++)
    if (a->args[i] != b->args[i]) return false;
  if (!tir_type_eq(a->res[0]->type, b->res[0]->type)) return false;
  return memcmp(&a->cval, &b->cval, sizeof a->cval) == 0 && a->axis == b->axis && a->lo == b->lo &&
         a->hi == b->hi && a->pred == b->pred && a->redop == b->redop && a->flags == b->flags;
}

static void cse_block(Cse *c, TirBlock *b) {
  int mark = c->top;
  TirInst *next;
  for (TirInst *in = b->first; in; in = next) {
    next = in->next;
    for (int i = 0; i < in->nargs; i++) {
      TirValue *r = in->args[i] ? c->map[in->args[i]->id] : NULL;
      if (r) in->args[i] = r;
    }
    for (int k = 0; k < in->nblocks; k++)
      if (in->blocks[k]) cse_block(c, in->blocks[k]);
    if (!cse_pure(in)) continue;
    uint64_t h = cse_hash(in);
    CseEntry **slot = &c->tab[h & c->mask];
    TirInst *same = NULL;
    for (CseEntry *e = *slot; e; e = e->next)
      if (e->hash == h && cse_same(e->in, in)) {
        same = e->in;
        break;
      }
    if (same) {
      c->map[in->res[0]->id] = same->res[0];
      tir_inst_remove(in);
      continue;
    }
    CseEntry *e = &c->stack[c->top++];
    e->in = in;
    e->hash = h;
    e->next = *slot;
    *slot = e;
  }
  // Leaving the block: its insts no longer dominate what follows. Entries
  // are popped in reverse, so each is at the head of its bucket.
  while (c->top > mark) {
    CseEntry *e = &c->stack[--c->top];
    c->tab[e->hash & c->mask] = e->next;
  }
}

static int count_insts(const TirBlock *b) {
  int n = 0;
  for (const TirInst *in = b->first; in; in = in->next) {
    n++;
    for (int k = 0; k < in->nblocks; k++)
      if (in->blocks[k]) n += count_insts(in->blocks[k]);
  }
  return n;
}

void tir_cse(TirFunc *f) {
  if (!f || !f->body) return;
  int n = count_insts(f->body);
  size_t cap = 16;
  while (cap < (size_t)n * 2) cap <<= 1;
  Cse c = {0};
  c.mask = cap - 1;
  c.tab = tj_calloc(cap, sizeof *c.tab);
  c.stack = tj_malloc((size_t)(n + 1) * sizeof *c.stack);
  c.map = tj_calloc((size_t)f->nvalues + 1, sizeof *c.map);
  if (c.tab && c.stack && c.map) cse_block(&c, f->body);
  else scratch_failed(f);
  tj_free(c.tab);
  tj_free(c.stack);
  tj_free(c.map);
}

// ---------------------------------------------------------------- dce

typedef struct Dce {
  unsigned char *live;  // per value id
  TirValue **work;
  int nwork;
} Dce;

static void dce_mark(Dce *d, TirValue *v) {
  if (!v || d->live[v->id]) return;
  d->live[v->id] = 1;
  d->work[d->nwork++] = v;
}

static TirInst *yield_of(const TirBlock *b) {
  return b && b->last && b->last->op == TIR_YIELD ? b->last : NULL;
}

// Loop-carried position i of a FOR lives or dies as a whole: init, body arg,
// yielded value and result.
static void dce_carried(Dce *d, TirInst *fo, int i) {
  TirBlock *body = fo->blocks[0];
  TirInst *y = yield_of(body);
  dce_mark(d, fo->args[3 + i]);
  dce_mark(d, fo->res[i]);
  dce_mark(d, body->args[1 + i]);
  if (y && i < y->nargs) dce_mark(d, y->args[i]);
}

static void dce_keep_control(Dce *d, TirInst *in) {
  if (in->op == TIR_FOR)
    for (int i = 0; i < 3; i++) dce_mark(d, in->args[i]);
  else if (in->op == TIR_IF)
    dce_mark(d, in->args[0]);
}

static void dce_process(Dce *d, TirValue *v) {
  TirInst *in = v->def;
  if (!in) {
    TirBlock *b = v->block;
    TirInst *fo = b ? b->owner : NULL;
    if (!fo || fo->op != TIR_FOR) return;  // a param
    dce_keep_control(d, fo);
    if (v->idx >= 1) dce_carried(d, fo, v->idx - 1);
    return;
  }
  switch (in->op) {
  case TIR_FOR:
    dce_keep_control(d, in);
    dce_carried(d, in, v->idx);
    return;
  case TIR_IF:
    dce_keep_control(d, in);
    for (int k = 0; k < in->nblocks; k++) {
      TirInst *y = yield_of(in->blocks[k]);
      if (y && v->idx < y->nargs) dce_mark(d, y->args[v->idx]);
    }
    return;
  default:
    for (int i = 0; i < in->nargs; i++) dce_mark(d, in->args[i]);
    return;
  }
}

// Marks the roots (stores and the control flow around them); returns whether
// b contains a store.
static bool dce_roots(Dce *d, TirBlock *b) {
  bool any = false;
  for (TirInst *in = b->first; in; in = in->next) {
    if (in->op == TIR_STORE) {
      for (int i = 0; i < in->nargs; i++) dce_mark(d, in->args[i]);
      any = true;
    }
    bool inner = false;
    for (int k = 0; k < in->nblocks; k++)
      if (in->blocks[k]) inner |= dce_roots(d, in->blocks[k]);
    if (inner) {
      dce_keep_control(d, in);
      any = true;
    }
  }
  return any;
}

static bool has_store(const TirBlock *b) {
  for (const TirInst *in = b->first; in; in = in->next) {
    if (in->op == TIR_STORE) return true;
    for (int k = 0; k < in->nblocks; k++)
      if (in->blocks[k] && has_store(in->blocks[k])) return true;
  }
  return false;
}

static bool any_res_live(const Dce *d, const TirInst *in) {
  for (int i = 0; i < in->nres; i++)
    if (d->live[in->res[i]->id]) return true;
  return false;
}

// Drops the dead result positions of a live FOR or IF.
static void dce_compact(Dce *d, TirInst *in) {
  int n = in->nres, k = 0;
  bool is_for = in->op == TIR_FOR;
  TirBlock *body = is_for ? in->blocks[0] : NULL;
  TirInst *ys[2] = {NULL, NULL};
  for (int b = 0; b < in->nblocks; b++) ys[b] = yield_of(in->blocks[b]);
  for (int i = 0; i < n; i++) {
    if (!d->live[in->res[i]->id]) continue;
    in->res[k] = in->res[i];
    in->res[k]->idx = k;
    if (is_for) {
      in->args[3 + k] = in->args[3 + i];
      body->args[1 + k] = body->args[1 + i];
      body->args[1 + k]->idx = 1 + k;
    }
    for (int b = 0; b < 2; b++)
      if (ys[b] && i < ys[b]->nargs) ys[b]->args[k] = ys[b]->args[i];
    k++;
  }
  if (k == n) return;
  in->nres = k;
  if (is_for) {
    in->nargs = 3 + k;
    body->nargs = 1 + k;
  }
  for (int b = 0; b < 2; b++)
    if (ys[b]) ys[b]->nargs = k;
}

static void dce_sweep(Dce *d, TirBlock *b) {
  TirInst *next;
  for (TirInst *in = b->first; in; in = next) {
    next = in->next;
    switch (in->op) {
    case TIR_STORE:
    case TIR_YIELD:
      continue;
    case TIR_FOR:
    case TIR_IF:
      if (!any_res_live(d, in) && !(in->nblocks > 0 && in->blocks[0] && has_store(in->blocks[0])) &&
          !(in->nblocks > 1 && in->blocks[1] && has_store(in->blocks[1]))) {
        tir_inst_remove(in);
        continue;
      }
      for (int k = 0; k < in->nblocks; k++)
        if (in->blocks[k]) dce_sweep(d, in->blocks[k]);
      dce_compact(d, in);
      continue;
    default:
      if (!any_res_live(d, in)) tir_inst_remove(in);
      continue;
    }
  }
}

void tir_dce(TirFunc *f) {
  if (!f || !f->body) return;
  Dce d = {0};
  size_t n = (size_t)f->nvalues + 1;
  d.live = tj_calloc(n, 1);
  d.work = tj_malloc(n * sizeof *d.work);
  if (d.live && d.work) {
    dce_roots(&d, f->body);
    while (d.nwork > 0) dce_process(&d, d.work[--d.nwork]);
    dce_sweep(&d, f->body);
  } else {
    scratch_failed(f);
  }
  tj_free(d.live);
  tj_free(d.work);
}
