/* interp.c: the CPU interpreter, which defines the reference semantics of
 * the tile IR.
 *
 * requires: verified IR (interp_run verifies first and refuses bad IR);
 * produces: the kernel's stores into host memory, or a diagnostic.
 *
 * Execution model. Programs run one after another, x fastest, over the whole
 * grid. Every value is a dense row-major array of TirElem (tir_eval.h:
 * canonical ints, floats as exactly-representable doubles); pointer values
 * carry a parallel array with, per element, the index of the param the
 * pointer was derived from, which is how loads and stores are bounds-checked
 * against the caller's buffer sizes. Element ops go through tir_eval.h, the
 * same functions constant folding uses.
 *
 * Memory. The IR is first compiled into IBlock/IInst arrays that carry, per
 * inst, the list of values whose last use it is. A value's buffer comes from
 * a pool of free buffers keyed by size and goes back right after its last
 * use, so the working set is the live set of one program, and after the
 * first program (or loop iteration) no more mallocs happen. Loop-carried
 * values are copied into fresh buffers at each yield, so a body value never
 * outlives its iteration.
 *
 * Decisions the GPU backend approximates rather than matches bit for bit:
 *  - reduce sum over floats is a pairwise halving tree in f32 (element i is
 *    combined with element i + n/2, the pattern of a butterfly reduction;
 *    non-power-of-two lengths are padded with zeros), each partial rounded to
 *    the result type; f64 sums do the same in double; int sums wrap.
 *  - dot accumulates acc + a[m,0]*b[0,n] + a[m,1]*b[1,n] + ... in f32, k
 *    ascending, each product rounded to f32 before the add (no fma).
 *  - stores of one inst happen in ascending element order, so when several
 *    active lanes write one address the highest element wins.
 *  - a `for` runs while iv < hi, iv stepping from lo; the iv never wraps (the
 *    loop stops before iv + step would overflow).
 * Every access is checked before any element of an inst is performed, so a
 * faulting load or store has no partial effect.
 */
#include "codegen.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../dsl/tir_eval.h"

typedef TirElem Elem;

// ---------------------------------------------------------------- buffers

typedef struct Buf {
  struct Buf *next_free;
  struct Buf *next_all;
  size_t bytes;
  _Alignas(16) unsigned char data[];
} Buf;

typedef struct SizeClass {
  size_t bytes;
  Buf *free;
} SizeClass;

typedef struct Pool {
  Buf *all;
  SizeClass *cls;
  int ncls, capcls;
} Pool;

typedef struct Slot {
  Elem *e;
  int32_t *base;  // pointer values: param index per element (-1: unknown)
  Buf *buf;       // owned buffer, NULL for block args that alias a loop's
} Slot;

static Buf *pool_get(Pool *p, size_t bytes) {
  for (int i = 0; i < p->ncls; i++)
    if (p->cls[i].bytes == bytes) {
      Buf *b = p->cls[i].free;
      if (b) {
        p->cls[i].free = b->next_free;
        return b;
      }
      break;
    }
  Buf *b = tj_malloc(sizeof(Buf) + bytes);
  if (!b) return NULL;
  b->bytes = bytes;
  b->next_free = NULL;
  b->next_all = p->all;
  p->all = b;
  return b;
}

static void pool_put(Pool *p, Buf *b) {
  for (int i = 0; i < p->ncls; i++)
    if (p->cls[i].bytes == b->bytes) {
      b->next_free = p->cls[i].free;
      p->cls[i].free = b;
      return;
    }
  if (p->ncls == p->capcls) {
    int cap = p->capcls ? p->capcls * 2 : 16;
    SizeClass *nc = tj_realloc(p->cls, (size_t)cap * sizeof *nc);
    if (!nc) return;  // stays on the all-list, freed at the end
    p->cls = nc;
    p->capcls = cap;
  }
  b->next_free = NULL;
  p->cls[p->ncls].bytes = b->bytes;
  p->cls[p->ncls].free = b;
  p->ncls++;
}

static void pool_free(Pool *p) {
  for (Buf *b = p->all, *n; b; b = n) {
    n = b->next_all;
    tj_free(b);
  }
  tj_free(p->cls);
  memset(p, 0, sizeof *p);
}

// ---------------------------------------------------------------- compiled IR

typedef struct IBlock IBlock;

typedef struct IInst {
  const TirInst *in;
  int *kill;  // value ids whose last use is this inst
  int nkill;
  IBlock *blk[2];
  Slot *cur, *nxt;  // FOR: carried buffers of this and the next iteration
} IInst;

struct IBlock {
  const TirBlock *b;
  IInst *insts;
  int n;
};

typedef struct Interp {
  const TirFunc *f;
  Diag *d;
  const tj_arg *args;
  unsigned grid[3], pid[3];
  Slot *slots;  // per value id
  Pool pool;
  Arena arena;  // compiled IR
  int *last;    // compile scratch: per value id, index of its last use
  float *tmpf;  // reduce / dot scratch
  size_t ntmpf;
} Interp;

static void last_uses(Interp *ip, const TirBlock *b, const TirInst *in, int j) {
  for (int i = 0; i < in->nargs; i++) {
    const TirValue *v = in->args[i];
    if (v->def && v->def->parent == b) ip->last[v->id] = j;
  }
  for (int k = 0; k < in->nblocks; k++)
    for (const TirInst *x = in->blocks[k]->first; x; x = x->next) last_uses(ip, b, x, j);
}

static IBlock *compile_block(Interp *ip, const TirBlock *b) {
  Arena *a = &ip->arena;
  IBlock *blk = arena_alloc(a, sizeof *blk);
  if (!blk) return NULL;
  blk->b = b;
  for (const TirInst *in = b->first; in; in = in->next) blk->n++;
  blk->insts = arena_alloc(a, (size_t)(blk->n + 1) * sizeof(IInst));
  if (!blk->insts) return NULL;
  int j = 0;
  for (const TirInst *in = b->first; in; in = in->next, j++) {
    IInst *ii = &blk->insts[j];
    ii->in = in;
    for (int k = 0; k < in->nblocks; k++) {
      ii->blk[k] = compile_block(ip, in->blocks[k]);
      if (!ii->blk[k]) return NULL;
    }
    if (in->op == TIR_FOR && in->nres > 0) {
      ii->cur = arena_alloc(a, (size_t)in->nres * sizeof(Slot));
      ii->nxt = arena_alloc(a, (size_t)in->nres * sizeof(Slot));
      if (!ii->cur || !ii->nxt) return NULL;
    }
    for (int i = 0; i < in->nres; i++) ip->last[in->res[i]->id] = j;  // unused: dies at once
  }
  j = 0;
  for (const TirInst *in = b->first; in; in = in->next, j++) last_uses(ip, b, in, j);
  int *count = tj_calloc((size_t)blk->n + 1, sizeof *count);
  if (!count) return NULL;
  for (const TirInst *in = b->first; in; in = in->next)
    for (int i = 0; i < in->nres; i++) count[ip->last[in->res[i]->id]]++;
  for (j = 0; j < blk->n; j++) {
    if (count[j]) {
      blk->insts[j].kill = arena_alloc(a, (size_t)count[j] * sizeof(int));
      if (!blk->insts[j].kill) {
        tj_free(count);
        return NULL;
      }
    }
  }
  tj_free(count);
  for (const TirInst *in = b->first; in; in = in->next)
    for (int i = 0; i < in->nres; i++) {
      IInst *k = &blk->insts[ip->last[in->res[i]->id]];
      k->kill[k->nkill++] = in->res[i]->id;
    }
  return blk;
}

// ---------------------------------------------------------------- helpers

static size_t numel(TirType t) { return (size_t)tir_numel(t); }

static tj_status alloc_slot(Interp *ip, Slot *s, TirType t) {
  size_t n = numel(t);
  size_t bytes = n * sizeof(Elem) + (t.ptr ? (n * sizeof(int32_t) + 15) & ~(size_t)15 : 0);
  Buf *b = pool_get(&ip->pool, bytes);
  if (!b) return TJ_ERR_NO_MEMORY;
  s->buf = b;
  s->e = (Elem *)b->data;
  s->base = t.ptr ? (int32_t *)(b->data + n * sizeof(Elem)) : NULL;
  return TJ_OK;
}

static tj_status alloc_value(Interp *ip, const TirValue *v) {
  return alloc_slot(ip, &ip->slots[v->id], v->type);
}

static void release_slot(Interp *ip, Slot *s) {
  if (s->buf) pool_put(&ip->pool, s->buf);
  memset(s, 0, sizeof *s);
}

static void copy_slot(Slot *dst, const Slot *src, TirType t) {
  size_t n = numel(t);
  memcpy(dst->e, src->e, n * sizeof(Elem));
  if (t.ptr) memcpy(dst->base, src->base, n * sizeof(int32_t));
}

static Slot *S(Interp *ip, const TirValue *v) { return &ip->slots[v->id]; }

static float *tmp_floats(Interp *ip, size_t n) {
  if (n > ip->ntmpf) {
    float *t = tj_realloc(ip->tmpf, n * sizeof(float));
    if (!t) return NULL;
    ip->tmpf = t;
    ip->ntmpf = n;
  }
  return ip->tmpf;
}

__attribute__((format(printf, 4, 5)))
static tj_status fault(Interp *ip, tj_status st, const TirInst *in, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  diag_at(ip->d, DIAG_ERROR, in->loc, "%s", msg);
  return st;
}

// ---------------------------------------------------------------- memory ops

static Elem read_elem(Dtype dt, uintptr_t addr) {
  const void *p = (const void *)addr;
  Elem r;
  switch (dt) {
  case DT_BOOL: { uint8_t v; memcpy(&v, p, 1); r.i = v != 0; break; }
  case DT_I8: { int8_t v; memcpy(&v, p, 1); r.i = v; break; }
  case DT_U8: { uint8_t v; memcpy(&v, p, 1); r.i = v; break; }
  case DT_I16: { int16_t v; memcpy(&v, p, 2); r.i = v; break; }
  case DT_U16: { uint16_t v; memcpy(&v, p, 2); r.i = v; break; }
  case DT_I32: { int32_t v; memcpy(&v, p, 4); r.i = v; break; }
  case DT_U32: { uint32_t v; memcpy(&v, p, 4); r.i = v; break; }
  case DT_I64: case DT_U64: { memcpy(&r.i, p, 8); break; }
  case DT_F16: { uint16_t v; memcpy(&v, p, 2); r.f = f16_to_f32(v); break; }
  case DT_BF16: { uint16_t v; memcpy(&v, p, 2); r.f = bf16_to_f32(v); break; }
  case DT_F32: { float v; memcpy(&v, p, 4); r.f = v; break; }
  case DT_F64: { memcpy(&r.f, p, 8); break; }
  default: r.i = 0; break;
  }
  return r;
}

static void write_elem(Dtype dt, uintptr_t addr, Elem x) {
  void *p = (void *)addr;
  switch (dt) {
  case DT_BOOL: case DT_I8: case DT_U8: { uint8_t v = (uint8_t)x.i; memcpy(p, &v, 1); break; }
  case DT_I16: case DT_U16: { uint16_t v = (uint16_t)x.i; memcpy(p, &v, 2); break; }
  case DT_I32: case DT_U32: { uint32_t v = (uint32_t)x.i; memcpy(p, &v, 4); break; }
  case DT_I64: case DT_U64: memcpy(p, &x.i, 8); break;
  case DT_F16: { uint16_t v = f32_to_f16((float)x.f); memcpy(p, &v, 2); break; }
  case DT_BF16: { uint16_t v = f32_to_bf16((float)x.f); memcpy(p, &v, 2); break; }
  case DT_F32: { float v = (float)x.f; memcpy(p, &v, 4); break; }
  case DT_F64: memcpy(p, &x.f, 8); break;
  default: break;
  }
}

// Checks every active lane of a load or store before any is performed.
static tj_status check_access(Interp *ip, const TirInst *in, const Slot *ptr, const Slot *mask,
                              size_t n, Dtype dt, bool store) {
  size_t size = (size_t)dtype_bytes(dt);
  const char *what = store ? "store" : "load";
  const char *verb = store ? "writes" : "reads";
  for (size_t k = 0; k < n; k++) {
    if (mask && !mask->e[k].i) continue;
    uintptr_t addr = (uintptr_t)ptr->e[k].u;
    int b = ptr->base[k];
    const TirParam *pa = b >= 0 && b < ip->f->nparams ? &ip->f->params[b] : NULL;
    const tj_arg *arg = pa ? &ip->args[b] : NULL;
    const char *name = pa && pa->name ? pa->name : "?";
    uintptr_t start = arg ? (uintptr_t)arg->u.buf.ptr : 0;
    int64_t off = (int64_t)(addr - start);
    if (arg && arg->u.buf.nbytes > 0) {
      size_t nb = arg->u.buf.nbytes;
      if (off < 0 || (uint64_t)off > nb || nb - (uint64_t)off < size)
        return fault(ip, TJ_ERR_BOUNDS, in,
                     "%s out of bounds: program (%u, %u, %u), element %zu %s %zu bytes at offset %" PRId64
                     " of '%s' (%zu bytes)",
                     what, ip->pid[0], ip->pid[1], ip->pid[2], k, verb, size, off, name, nb);
    }
    if (addr < 4096)
      return fault(ip, TJ_ERR_BOUNDS, in,
                   "%s through a null pointer: program (%u, %u, %u), element %zu %s %zu bytes at offset %" PRId64
                   " of '%s'",
                   what, ip->pid[0], ip->pid[1], ip->pid[2], k, verb, size, off, name);
    if (addr % size != 0)
      return fault(ip, TJ_ERR_BOUNDS, in,
                   "misaligned %s: program (%u, %u, %u), element %zu %s %zu bytes at offset %" PRId64
                   " of '%s' (address not a multiple of %zu)",
                   what, ip->pid[0], ip->pid[1], ip->pid[2], k, verb, size, off, name, size);
  }
  return TJ_OK;
}

static tj_status exec_load(Interp *ip, const TirInst *in) {
  TirType rt = in->res[0]->type;
  size_t n = numel(rt);
  Slot *p = S(ip, in->args[0]);
  Slot *m = in->nargs >= 2 ? S(ip, in->args[1]) : NULL;
  Slot *o = in->nargs >= 3 ? S(ip, in->args[2]) : NULL;
  tj_status st = check_access(ip, in, p, m, n, rt.dtype, false);
  if (st != TJ_OK) return st;
  Elem *r = S(ip, in->res[0])->e;
  for (size_t k = 0; k < n; k++) {
    if (m && !m->e[k].i) {
      if (o) r[k] = o->e[k];
      else r[k].i = 0;  // 0 and 0.0 share the all-zero bits
    } else {
      r[k] = read_elem(rt.dtype, (uintptr_t)p->e[k].u);
    }
  }
  return TJ_OK;
}

static tj_status exec_store(Interp *ip, const TirInst *in) {
  TirType vt = in->args[1]->type;
  size_t n = numel(vt);
  Slot *p = S(ip, in->args[0]);
  Slot *v = S(ip, in->args[1]);
  Slot *m = in->nargs >= 3 ? S(ip, in->args[2]) : NULL;
  tj_status st = check_access(ip, in, p, m, n, vt.dtype, true);
  if (st != TJ_OK) return st;
  for (size_t k = 0; k < n; k++)
    if (!m || m->e[k].i) write_elem(vt.dtype, (uintptr_t)p->e[k].u, v->e[k]);
  return TJ_OK;
}

// ---------------------------------------------------------------- shape ops

static void exec_broadcast(const Slot *a, TirType at, Slot *r, TirType rt) {
  // Pad both shapes to rank 4 on the left; broadcast dims read stride 0.
  int dims[4], strides[4];
  int pad = 4 - rt.rank;
  int64_t s = 1;
  for (int i = 3; i >= 0; i--) {
    int d = i < pad ? 1 : rt.shape[i - pad];
    int ad = i < pad ? 1 : at.shape[i - pad];
    dims[i] = d;
    strides[i] = ad == 1 && d != 1 ? 0 : (int)s;
    s *= ad;
  }
  size_t k = 0;
  for (int i0 = 0; i0 < dims[0]; i0++)
    for (int i1 = 0; i1 < dims[1]; i1++)
      for (int i2 = 0; i2 < dims[2]; i2++) {
        size_t src = (size_t)i0 * strides[0] + (size_t)i1 * strides[1] + (size_t)i2 * strides[2];
        for (int i3 = 0; i3 < dims[3]; i3++, k++) {
          size_t x = src + (size_t)i3 * strides[3];
          r->e[k] = a->e[x];
          if (rt.ptr) r->base[k] = a->base[x];
        }
      }
}

static void exec_trans(const Slot *a, TirType at, Slot *r) {
  int m = at.shape[0], n = at.shape[1];
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      r->e[(size_t)j * m + i] = a->e[(size_t)i * n + j];
      if (at.ptr) r->base[(size_t)j * m + i] = a->base[(size_t)i * n + j];
    }
}

// ---------------------------------------------------------------- elementwise

static void exec_unary(const TirInst *in, const Elem *a, Elem *r, size_t n) {
  Dtype dt = in->res[0]->type.dtype;
  TirOp op = in->op;
  if (dt == DT_F32 && op == TIR_EXP) {
    for (size_t k = 0; k < n; k++) r[k].f = expf((float)a[k].f);
    return;
  }
  for (size_t k = 0; k < n; k++) r[k] = tir_eval_unary(op, dt, a[k]);
}

// The common f32 and i32 cases get loops of their own; everything else goes
// through the generic element function.
#define F32_LOOP(expr)                                   \
  for (size_t k = 0; k < n; k++) {                       \
    float x = (float)a[k].f, y = (float)b[k].f;          \
    r[k].f = (expr);                                     \
  }                                                      \
  return
#define I32_LOOP(expr)                                   \
  for (size_t k = 0; k < n; k++) {                       \
    uint32_t x = (uint32_t)a[k].u, y = (uint32_t)b[k].u; \
    r[k].i = (int32_t)(expr);                            \
  }                                                      \
  return

static void exec_binary(const TirInst *in, const Elem *a, const Elem *b, Elem *r, size_t n) {
  Dtype dt = in->res[0]->type.dtype;
  TirOp op = in->op;
  if (dt == DT_F32) {
    switch (op) {
    case TIR_ADD: F32_LOOP(x + y);
    case TIR_SUB: F32_LOOP(x - y);
    case TIR_MUL: F32_LOOP(x * y);
    case TIR_DIV: F32_LOOP(x / y);
    case TIR_MAX: F32_LOOP(fmaxf(x, y));
    case TIR_MIN: F32_LOOP(fminf(x, y));
    default: break;
    }
  } else if (dt == DT_I32) {
    switch (op) {
    case TIR_ADD: I32_LOOP(x + y);
    case TIR_SUB: I32_LOOP(x - y);
    case TIR_MUL: I32_LOOP(x * y);
    default: break;
    }
  }
  for (size_t k = 0; k < n; k++) r[k] = tir_eval_binary(op, dt, a[k], b[k]);
}

static void exec_cmp(const TirInst *in, const Elem *a, const Elem *b, Elem *r, size_t n) {
  Dtype dt = in->args[0]->type.dtype;
  int pred = in->pred;
  if (dt == DT_I32 && pred == CMP_LT) {
    for (size_t k = 0; k < n; k++) r[k].i = a[k].i < b[k].i;
    return;
  }
  for (size_t k = 0; k < n; k++) r[k].i = tir_eval_cmp(pred, dt, a[k], b[k]);
}

// ---------------------------------------------------------------- reduce, dot

// Halving-tree sum of t[0..n) in place, n padded to a power of two by the
// caller; each partial rounded to dt.
static float tree_sum_f(float *t, size_t n, Dtype dt) {
  for (size_t len = n / 2; len >= 1; len /= 2)
    for (size_t i = 0; i < len; i++) t[i] = (float)tir_round_f(dt, t[i] + t[i + len]);
  return t[0];
}

static size_t pow2_ceil(size_t n) {
  size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

static tj_status exec_reduce(Interp *ip, const TirInst *in) {
  TirType at = in->args[0]->type;
  Dtype st = at.dtype, rt = in->res[0]->type.dtype;
  int axis = in->axis;
  size_t outer = 1, inner = 1, len = (size_t)at.shape[axis];
  for (int i = 0; i < axis; i++) outer *= (size_t)at.shape[i];
  for (int i = axis + 1; i < at.rank; i++) inner *= (size_t)at.shape[i];
  const Elem *a = S(ip, in->args[0])->e;
  Elem *r = S(ip, in->res[0])->e;
  size_t p2 = pow2_ceil(len);
  bool fsum = in->redop == RED_SUM && dtype_is_float(rt) && rt != DT_F64;
  float *t = NULL;
  if (fsum) {
    t = tmp_floats(ip, p2);
    if (!t) return TJ_ERR_NO_MEMORY;
  }
  bool isf = dtype_is_float(st);
  for (size_t o = 0; o < outer; o++)
    for (size_t i = 0; i < inner; i++) {
      const Elem *x = a + o * len * inner + i;
      Elem res;
      res.i = 0;
      switch (in->redop) {
      case RED_SUM:
        if (fsum) {
          for (size_t k = 0; k < len; k++) t[k] = (float)x[k * inner].f;  // exact: source <= f32
          for (size_t k = len; k < p2; k++) t[k] = 0;
          res.f = tree_sum_f(t, p2, rt);
        } else if (rt == DT_F64) {
          // Same tree in double; the scratch holds doubles as pairs of floats.
          double *td = (double *)tmp_floats(ip, 2 * p2);
          if (!td) return TJ_ERR_NO_MEMORY;
          for (size_t k = 0; k < len; k++) td[k] = x[k * inner].f;
          for (size_t k = len; k < p2; k++) td[k] = 0;
          for (size_t l = p2 / 2; l >= 1; l /= 2)
            for (size_t k = 0; k < l; k++) td[k] += td[k + l];
          res.f = td[0];
        } else {
          uint64_t s = 0;
          for (size_t k = 0; k < len; k++) s += x[k * inner].u;  // canonical, wraps mod 2^64
          res.i = tir_wrap(rt, (int64_t)s);
        }
        break;
      case RED_MAX:
      case RED_MIN: {
        TirOp op = in->redop == RED_MAX ? TIR_MAX : TIR_MIN;
        res = x[0];
        for (size_t k = 1; k < len; k++) res = tir_eval_binary(op, st, res, x[k * inner]);
        break;
      }
      case RED_ARGMAX:
      case RED_ARGMIN: {
        int pred = in->redop == RED_ARGMAX ? CMP_GT : CMP_LT;
        size_t best = 0;
        bool have = false;
        for (size_t k = 0; k < len; k++) {
          Elem v = x[k * inner];
          if (isf && isnan(v.f)) continue;
          if (!have || tir_eval_cmp(pred, st, v, x[best * inner])) best = k, have = true;
        }
        res.i = (int64_t)best;
        break;
      }
      default:
        break;
      }
      r[o * inner + i] = res;
    }
  return TJ_OK;
}

static tj_status exec_dot(Interp *ip, const TirInst *in) {
  TirType ta = in->args[0]->type, tb = in->args[1]->type;
  size_t M = (size_t)ta.shape[0], K = (size_t)ta.shape[1], N = (size_t)tb.shape[1];
  const Elem *a = S(ip, in->args[0])->e, *b = S(ip, in->args[1])->e, *c = S(ip, in->args[2])->e;
  Elem *r = S(ip, in->res[0])->e;
  // Floats in contiguous rows: a as is, b transposed.
  float *t = tmp_floats(ip, M * K + K * N);
  if (!t) return TJ_ERR_NO_MEMORY;
  float *fa = t, *fb = t + M * K;
  for (size_t i = 0; i < M * K; i++) fa[i] = (float)a[i].f;
  for (size_t k = 0; k < K; k++)
    for (size_t j = 0; j < N; j++) fb[j * K + k] = (float)b[k * N + j].f;
  for (size_t i = 0; i < M; i++)
    for (size_t j = 0; j < N; j++) {
      float s = (float)c[i * N + j].f;
      const float *x = fa + i * K, *y = fb + j * K;
      for (size_t k = 0; k < K; k++) {
        float p = x[k] * y[k];
        s = s + p;
      }
      r[i * N + j].f = s;
    }
  return TJ_OK;
}

// ---------------------------------------------------------------- control flow

static tj_status exec_block(Interp *ip, const IBlock *blk, Slot *dst);

static tj_status exec_for(Interp *ip, const IInst *ii) {
  const TirInst *in = ii->in;
  int64_t lo = S(ip, in->args[0])->e[0].i;
  int64_t hi = S(ip, in->args[1])->e[0].i;
  int64_t step = S(ip, in->args[2])->e[0].i;
  if (step <= 0)
    return fault(ip, TJ_ERR_INVALID_ARG, in,
                 "for loop step must be positive, got %" PRId64 ": program (%u, %u, %u)", step,
                 ip->pid[0], ip->pid[1], ip->pid[2]);
  const TirBlock *body = in->blocks[0];
  int ncar = in->nres;
  tj_status st;
  for (int i = 0; i < ncar; i++) {
    TirType t = in->res[i]->type;
    if ((st = alloc_slot(ip, &ii->cur[i], t)) != TJ_OK) return st;
    copy_slot(&ii->cur[i], S(ip, in->args[3 + i]), t);
  }
  Slot *iv = S(ip, body->args[0]);
  if ((st = alloc_slot(ip, iv, body->args[0]->type)) != TJ_OK) return st;
  for (int64_t k = lo; k < hi;) {
    iv->e[0].i = k;
    for (int i = 0; i < ncar; i++) {
      Slot *arg = S(ip, body->args[1 + i]);
      *arg = ii->cur[i];
      arg->buf = NULL;  // the loop owns the buffer
      if ((st = alloc_slot(ip, &ii->nxt[i], in->res[i]->type)) != TJ_OK) return st;
    }
    if ((st = exec_block(ip, ii->blk[0], ii->nxt)) != TJ_OK) return st;
    for (int i = 0; i < ncar; i++) {
      release_slot(ip, &ii->cur[i]);
      ii->cur[i] = ii->nxt[i];
    }
    if (k > INT64_MAX - step) break;
    k += step;
  }
  release_slot(ip, iv);
  for (int i = 0; i < ncar; i++) {
    ip->slots[in->res[i]->id] = ii->cur[i];
    memset(&ii->cur[i], 0, sizeof(Slot));
    memset(S(ip, body->args[1 + i]), 0, sizeof(Slot));
  }
  return TJ_OK;
}

static tj_status exec_if(Interp *ip, const IInst *ii) {
  const TirInst *in = ii->in;
  bool c = S(ip, in->args[0])->e[0].i != 0;
  tj_status st;
  for (int i = 0; i < in->nres; i++)
    if ((st = alloc_value(ip, in->res[i])) != TJ_OK) return st;
  const IBlock *blk = c ? ii->blk[0] : (in->nblocks > 1 ? ii->blk[1] : NULL);
  if (!blk) return TJ_OK;
  // The yield writes straight into the result slots.
  Slot *dst = in->nres > 0 ? &ip->slots[in->res[0]->id] : NULL;
  if (in->nres <= 1) return exec_block(ip, blk, dst);
  Slot stack[8];
  Slot *tmp = in->nres <= 8 ? stack : tj_malloc((size_t)in->nres * sizeof(Slot));
  if (!tmp) return TJ_ERR_NO_MEMORY;
  for (int i = 0; i < in->nres; i++) tmp[i] = ip->slots[in->res[i]->id];
  st = exec_block(ip, blk, tmp);
  if (tmp != stack) tj_free(tmp);
  return st;
}

// ---------------------------------------------------------------- dispatch

static tj_status exec_inst(Interp *ip, const IInst *ii, Slot *dst) {
  const TirInst *in = ii->in;
  tj_status st;
  if (in->op != TIR_FOR && in->op != TIR_IF)
    for (int i = 0; i < in->nres; i++)
      if ((st = alloc_value(ip, in->res[i])) != TJ_OK) return st;
  Slot *r = in->nres > 0 ? S(ip, in->res[0]) : NULL;
  Slot *a = in->nargs > 0 ? S(ip, in->args[0]) : NULL;
  Slot *b = in->nargs > 1 ? S(ip, in->args[1]) : NULL;
  Slot *c = in->nargs > 2 ? S(ip, in->args[2]) : NULL;
  TirType rt = r ? in->res[0]->type : tir_scalar(DT_VOID);
  size_t n = r ? numel(rt) : 0;

  switch (in->op) {
  case TIR_CONST: {
    Elem v;
    if (dtype_is_float(rt.dtype)) v.f = tir_round_d(rt.dtype, in->cval.f);
    else v.i = tir_wrap(rt.dtype, in->cval.i);
    for (size_t k = 0; k < n; k++) r->e[k] = v;
    return TJ_OK;
  }
  case TIR_PROGRAM_ID:
    r->e[0].i = tir_wrap(DT_I32, ip->pid[in->axis]);
    return TJ_OK;
  case TIR_NUM_PROGRAMS:
    r->e[0].i = tir_wrap(DT_I32, ip->grid[in->axis]);
    return TJ_OK;
  case TIR_ARANGE:
    for (size_t k = 0; k < n; k++) r->e[k].i = in->lo + (int64_t)k;
    return TJ_OK;
  case TIR_SPLAT:
    for (size_t k = 0; k < n; k++) r->e[k] = a->e[0];
    if (rt.ptr)
      for (size_t k = 0; k < n; k++) r->base[k] = a->base[0];
    return TJ_OK;
  case TIR_BROADCAST:
    exec_broadcast(a, in->args[0]->type, r, rt);
    return TJ_OK;
  case TIR_EXPAND_DIMS:
  case TIR_RESHAPE:
    copy_slot(r, a, rt);
    return TJ_OK;
  case TIR_TRANS:
    exec_trans(a, in->args[0]->type, r);
    return TJ_OK;
  case TIR_NEG: case TIR_NOT: case TIR_ABS: case TIR_EXP: case TIR_EXP2: case TIR_LOG:
  case TIR_LOG2: case TIR_SQRT: case TIR_RSQRT: case TIR_ERF: case TIR_TANH: case TIR_FLOOR:
  case TIR_CEIL:
    exec_unary(in, a->e, r->e, n);
    return TJ_OK;
  case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_DIV: case TIR_REM: case TIR_MAX:
  case TIR_MIN: case TIR_AND: case TIR_OR: case TIR_XOR: case TIR_SHL: case TIR_SHR:
    exec_binary(in, a->e, b->e, r->e, n);
    return TJ_OK;
  case TIR_CMP:
    exec_cmp(in, a->e, b->e, r->e, n);
    return TJ_OK;
  case TIR_PTR_ADD: {
    uint64_t size = (uint64_t)dtype_bytes(rt.dtype);
    for (size_t k = 0; k < n; k++) {
      r->e[k].u = a->e[k].u + b->e[k].u * size;  // canonical offsets: wraps like two's complement
      r->base[k] = a->base[k];
    }
    return TJ_OK;
  }
  case TIR_FMA:
    for (size_t k = 0; k < n; k++) r->e[k] = tir_eval_fma(rt.dtype, a->e[k], b->e[k], c->e[k]);
    return TJ_OK;
  case TIR_WHERE:
    for (size_t k = 0; k < n; k++) {
      bool t = a->e[k].i != 0;
      r->e[k] = t ? b->e[k] : c->e[k];
      if (rt.ptr) r->base[k] = t ? b->base[k] : c->base[k];
    }
    return TJ_OK;
  case TIR_CAST: {
    Dtype from = in->args[0]->type.dtype;
    for (size_t k = 0; k < n; k++) r->e[k] = tir_eval_cast(from, rt.dtype, a->e[k]);
    return TJ_OK;
  }
  case TIR_BITCAST: {
    Dtype from = in->args[0]->type.dtype;
    for (size_t k = 0; k < n; k++) r->e[k] = tir_eval_bitcast(from, rt.dtype, a->e[k]);
    return TJ_OK;
  }
  case TIR_LOAD:
    return exec_load(ip, in);
  case TIR_STORE:
    return exec_store(ip, in);
  case TIR_REDUCE:
    return exec_reduce(ip, in);
  case TIR_DOT:
    return exec_dot(ip, in);
  case TIR_PHILOX:
    for (size_t k = 0; k < n; k++) r->e[k].i = tir_eval_philox(a->e[k].u, b->e[k].u, c->e[k].u);
    return TJ_OK;
  case TIR_FOR:
    return exec_for(ip, ii);
  case TIR_IF:
    return exec_if(ip, ii);
  case TIR_YIELD:
    for (int i = 0; i < in->nargs; i++) copy_slot(&dst[i], S(ip, in->args[i]), in->args[i]->type);
    return TJ_OK;
  case TIR_OP_COUNT:
    break;
  }
  return fault(ip, TJ_ERR_INTERNAL, in, "internal error: interp: unknown op %d", in->op);
}

static tj_status exec_block(Interp *ip, const IBlock *blk, Slot *dst) {
  for (int j = 0; j < blk->n; j++) {
    const IInst *ii = &blk->insts[j];
    tj_status st = exec_inst(ip, ii, dst);
    if (st != TJ_OK) return st;
    for (int k = 0; k < ii->nkill; k++) release_slot(ip, &ip->slots[ii->kill[k]]);
  }
  return TJ_OK;
}

// ---------------------------------------------------------------- entry

static tj_status bind_params(Interp *ip, const tj_arg *args) {
  const TirFunc *f = ip->f;
  for (int i = 0; i < f->nparams; i++) {
    const TirParam *p = &f->params[i];
    const tj_arg *a = &args[i];
    Slot *s = S(ip, p->value);
    tj_status st = alloc_value(ip, p->value);
    if (st != TJ_OK) return st;
    const char *name = p->name ? p->name : "?";
    if (p->ptr) {
      if (a->kind != TJ_ARG_PTR) {
        diag_at(ip->d, DIAG_ERROR, p->loc, "argument %d ('%s') must be a pointer", i, name);
        return TJ_ERR_INVALID_ARG;
      }
      s->e[0].u = (uint64_t)(uintptr_t)a->u.buf.ptr;
      s->base[0] = i;
    } else if (dtype_is_float(p->dtype)) {
      if (a->kind == TJ_ARG_FLOAT) s->e[0].f = tir_round_d(p->dtype, a->u.f);
      else if (a->kind == TJ_ARG_INT) s->e[0].f = tir_i2f(DT_I64, p->dtype, a->u.i);
      else {
        diag_at(ip->d, DIAG_ERROR, p->loc, "argument %d ('%s') must be a %s scalar", i, name,
                dtype_name(p->dtype));
        return TJ_ERR_INVALID_ARG;
      }
    } else {
      if (a->kind != TJ_ARG_INT) {
        diag_at(ip->d, DIAG_ERROR, p->loc, "argument %d ('%s') must be an integer (%s)", i, name,
                dtype_name(p->dtype));
        return TJ_ERR_INVALID_ARG;
      }
      s->e[0].i = tir_wrap(p->dtype, a->u.i);
    }
  }
  return TJ_OK;
}

tj_status interp_run(const TirFunc *f, const unsigned grid[3], const tj_arg *args, int nargs, Diag *d) {
  if (!f || !grid || (nargs > 0 && !args) || !d) return TJ_ERR_INVALID_ARG;
  if (nargs != f->nparams) {
    diag_plain(d, DIAG_ERROR, "kernel '%s' takes %d arguments, got %d", f->name ? f->name : "?",
               f->nparams, nargs);
    return TJ_ERR_INVALID_ARG;
  }
  tj_status vst = tir_verify_status(f, d);
  if (vst != TJ_OK) return vst;

  Interp ip;
  memset(&ip, 0, sizeof ip);
  ip.f = f;
  ip.d = d;
  ip.args = args;
  for (int i = 0; i < 3; i++) ip.grid[i] = grid[i];
  arena_init(&ip.arena);
  tj_status st = TJ_ERR_NO_MEMORY;
  size_t nv = (size_t)f->nvalues + 1;
  ip.slots = tj_calloc(nv, sizeof *ip.slots);
  ip.last = tj_calloc(nv, sizeof *ip.last);
  IBlock *body = ip.slots && ip.last ? compile_block(&ip, f->body) : NULL;
  tj_free(ip.last);
  ip.last = NULL;
  if (!body) goto out;
  st = bind_params(&ip, args);
  if (st != TJ_OK) goto out;
  for (unsigned z = 0; z < grid[2] && st == TJ_OK; z++)
    for (unsigned y = 0; y < grid[1] && st == TJ_OK; y++)
      for (unsigned x = 0; x < grid[0] && st == TJ_OK; x++) {
        ip.pid[0] = x, ip.pid[1] = y, ip.pid[2] = z;
        st = exec_block(&ip, body, NULL);
      }
out:
  if (st == TJ_ERR_NO_MEMORY)
    diag_plain(d, DIAG_ERROR, "out of memory while interpreting '%s'", f->name ? f->name : "?");
  pool_free(&ip.pool);
  arena_free(&ip.arena);
  tj_free(ip.slots);
  tj_free(ip.tmpf);
  return st;
}
