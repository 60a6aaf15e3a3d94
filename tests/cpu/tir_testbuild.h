/* tir_testbuild.h: terse helpers for building tile IR by hand in the CPU
 * tests (test_tir.c, test_interp.c). They set the attributes and flags the
 * builder leaves to its callers, the way sema does.
 */
#ifndef TJ_TIR_TESTBUILD_H
#define TJ_TIR_TESTBUILD_H

#include <stdarg.h>
#include <string.h>

#include "dsl/tir.h"

typedef struct TB {
  Arena arena;
  TirFunc *f;
  TirBlock *cur;
  Loc loc;
} TB;

static inline void tb_init(TB *t, const char *name) {
  memset(t, 0, sizeof *t);
  arena_init(&t->arena);
  t->f = tir_func_new(&t->arena, name, "test.tj");
  t->cur = t->f->body;
  t->loc.file = "test.tj";
  t->loc.line = 1;
  t->loc.col = 1;
  t->loc.len = 1;
}

static inline void tb_free(TB *t) { arena_free(&t->arena); }

static inline TirValue *tb_param(TB *t, const char *name, bool ptr, Dtype dt) {
  return tir_func_add_param(t->f, name, ptr, dt, t->loc);
}

// ty(DT_F32, 2, 16, 32) -> [16, 32] f32
static inline TirType ty(Dtype dt, int rank, ...) {
  int shape[TIR_MAX_RANK] = {0};
  va_list ap;
  va_start(ap, rank);
  for (int i = 0; i < rank; i++) shape[i] = va_arg(ap, int);
  va_end(ap);
  return tir_type(dt, rank, shape);
}

static inline TirType ptrty(TirType t) {
  t.ptr = true;
  return t;
}

static inline TirType shape_of(TirType shape, TirType elem) {
  TirType t = shape;
  t.dtype = elem.dtype;
  t.ptr = elem.ptr;
  return t;
}

static inline TirInst *tb_vinst(TB *t, TirOp op, TirType rt, int nargs, va_list ap) {
  TirValue *args[8];
  for (int i = 0; i < nargs && i < 8; i++) args[i] = va_arg(ap, TirValue *);
  int nres = rt.dtype == DT_VOID ? 0 : 1;
  return tir_inst_new(t->f, t->cur, op, args, nargs, &rt, nres, t->loc);
}

// An inst with nargs TirValue* args and one result of type rt (none if void).
static inline TirInst *tb_inst(TB *t, TirOp op, TirType rt, int nargs, ...) {
  va_list ap;
  va_start(ap, nargs);
  TirInst *in = tb_vinst(t, op, rt, nargs, ap);
  va_end(ap);
  return in;
}

// As tb_inst, returning the result value.
static inline TirValue *tb_op(TB *t, TirOp op, TirType rt, int nargs, ...) {
  va_list ap;
  va_start(ap, nargs);
  TirInst *in = tb_vinst(t, op, rt, nargs, ap);
  va_end(ap);
  return in && in->nres ? in->res[0] : NULL;
}

static inline TirValue *tb_un(TB *t, TirOp op, TirValue *a) { return tb_op(t, op, a->type, 1, a); }

static inline TirValue *tb_bin(TB *t, TirOp op, TirValue *a, TirValue *b) {
  return tb_op(t, op, a->type, 2, a, b);
}

static inline TirValue *tb_ci(TB *t, TirType ty_, int64_t v) { return tir_const_int(t->f, t->cur, ty_, v, t->loc); }
static inline TirValue *tb_cf(TB *t, TirType ty_, double v) { return tir_const_float(t->f, t->cur, ty_, v, t->loc); }

static inline TirValue *tb_pid(TB *t, int axis) {
  TirInst *in = tb_inst(t, TIR_PROGRAM_ID, tir_scalar(DT_I32), 0);
  in->axis = axis;
  return in->res[0];
}

static inline TirValue *tb_arange(TB *t, int lo, int hi) {
  TirInst *in = tb_inst(t, TIR_ARANGE, ty(DT_I32, 1, hi - lo), 0);
  in->lo = lo;
  in->hi = hi;
  return in->res[0];
}

static inline TirValue *tb_cmp(TB *t, int pred, TirValue *a, TirValue *b) {
  TirInst *in = tb_inst(t, TIR_CMP, tir_with_dtype(a->type, DT_BOOL), 2, a, b);
  in->pred = pred;
  return in->res[0];
}

// Scalar x splat to the shape of `shape`.
static inline TirValue *tb_splat(TB *t, TirValue *x, TirType shape) {
  return tb_op(t, TIR_SPLAT, shape_of(shape, x->type), 1, x);
}

static inline TirValue *tb_bcast(TB *t, TirValue *x, TirType shape) {
  return tb_op(t, TIR_BROADCAST, shape_of(shape, x->type), 1, x);
}

static inline TirValue *tb_expand(TB *t, TirValue *x, int axis) {
  TirType r = x->type;
  r.rank = x->type.rank + 1;
  for (int i = 0, k = 0; i < r.rank; i++) r.shape[i] = i == axis ? 1 : x->type.shape[k++];
  TirInst *in = tb_inst(t, TIR_EXPAND_DIMS, r, 1, x);
  in->axis = axis;
  return in->res[0];
}

static inline TirValue *tb_cast(TB *t, TirValue *x, Dtype dt) {
  return tb_op(t, TIR_CAST, tir_with_dtype(x->type, dt), 1, x);
}

// ptr (scalar or tile) + offsets; a scalar ptr is splat to the offsets' shape.
static inline TirValue *tb_ptr_add(TB *t, TirValue *p, TirValue *off) {
  if (p->type.rank == 0 && off->type.rank > 0) p = tb_splat(t, p, off->type);
  return tb_op(t, TIR_PTR_ADD, p->type, 2, p, off);
}

static inline TirValue *tb_load(TB *t, TirValue *p, TirValue *mask, TirValue *other) {
  TirType rt = tir_with_dtype(p->type, p->type.dtype);
  TirInst *in = other ? tb_inst(t, TIR_LOAD, rt, 3, p, mask, other)
                : mask ? tb_inst(t, TIR_LOAD, rt, 2, p, mask)
                       : tb_inst(t, TIR_LOAD, rt, 1, p);
  in->flags = (mask ? TIR_HAS_MASK : 0) | (other ? TIR_HAS_OTHER : 0);
  return in->res[0];
}

static inline TirInst *tb_store(TB *t, TirValue *p, TirValue *v, TirValue *mask) {
  TirInst *in = mask ? tb_inst(t, TIR_STORE, tir_scalar(DT_VOID), 3, p, v, mask)
                     : tb_inst(t, TIR_STORE, tir_scalar(DT_VOID), 2, p, v);
  in->flags = mask ? TIR_HAS_MASK : 0;
  return in;
}

static inline TirValue *tb_reduce(TB *t, int redop, TirValue *x, int axis, Dtype rdt) {
  TirType r = x->type;
  r.dtype = rdt;
  r.rank--;
  for (int i = axis; i < r.rank; i++) r.shape[i] = x->type.shape[i + 1];
  TirInst *in = tb_inst(t, TIR_REDUCE, r, 1, x);
  in->redop = redop;
  in->axis = axis;
  return in->res[0];
}

// Opens a FOR: results and carried args take the types of inits. The body
// becomes the current block; its args are iv, carried...
static inline TirInst *tb_for(TB *t, TirValue *lo, TirValue *hi, TirValue *step, int n, TirValue **inits) {
  TirValue *args[16];
  TirType rts[16];
  args[0] = lo, args[1] = hi, args[2] = step;
  for (int i = 0; i < n; i++) args[3 + i] = inits[i], rts[i] = inits[i]->type;
  TirInst *in = tir_inst_new(t->f, t->cur, TIR_FOR, args, 3 + n, rts, n, t->loc);
  TirBlock *body = tir_block_new(t->f);
  tir_block_add_arg(t->f, body, lo->type, "i");
  for (int i = 0; i < n; i++) tir_block_add_arg(t->f, body, inits[i]->type, NULL);
  tir_inst_add_block(in, body);
  t->cur = body;
  return in;
}

static inline void tb_yield(TB *t, int n, TirValue **vals) {
  tir_inst_new(t->f, t->cur, TIR_YIELD, vals, n, NULL, 0, t->loc);
}

static inline void tb_end(TB *t, TirInst *in) { t->cur = in->parent; }

// Opens an IF with then and else blocks; then becomes current.
static inline TirInst *tb_if(TB *t, TirValue *cond, int nres, const TirType *rts) {
  TirInst *in = tir_inst_new(t->f, t->cur, TIR_IF, &cond, 1, rts, nres, t->loc);
  tir_inst_add_block(in, tir_block_new(t->f));
  tir_inst_add_block(in, tir_block_new(t->f));
  t->cur = in->blocks[0];
  return in;
}

static inline void tb_else(TB *t, TirInst *in) { t->cur = in->blocks[1]; }

#endif
