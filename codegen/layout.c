/* layout.c: how tiles are spread over the threads of a program, and the two
 * analyses that run before LLVM IR is built.
 *
 * requires: verified tile IR (rank <= 2 tiles, power-of-two dims);
 * produces: for every value a ValInfo (natural layout, the layouts its users
 * need, axis facts) and the shared-memory scratch size.
 *
 * Layouts
 * -------
 * A program runs on 32 * num_warps threads and every tile value lives in
 * their registers. A layout says which thread holds which elements. Ours are
 * Triton's "blocked" layouts restricted to rank <= 2:
 *
 *   - the threads form a 2-D grid. Lanes of a warp are split tpw[0] x tpw[1]
 *     and warps wpc[0] x wpc[1], grid dim 1 being the fastest (lane =
 *     l0 * tpw[1] + l1, warp = w0 * wpc[1] + w1);
 *   - tile dim d is spread over grid dim gdim[d]: the thread at grid position
 *     p = w * tpw + l holds a run of spt[d] consecutive elements starting at
 *     p * spt[d], and again every cover = spt * tpw * wpc elements (reps);
 *   - a tile smaller than its cover wraps around: the position is taken
 *     modulo the dim, so several threads hold the same elements (replicas).
 *     Replicas are harmless for elementwise work, are excluded when reducing
 *     (only distinct lanes / warps are combined) and are masked off when
 *     storing (cg_owner), so no two threads write one element;
 *   - a thread's elements (slots) are ordered row-major over its per-dim
 *     counts, so the last dim's run of spt elements is consecutive in slot
 *     order and in memory: that run becomes one 128-bit access when the axis
 *     analysis proves the addresses contiguous and aligned.
 *
 * The canonical layout of a shape puts spt = 16 bytes / (narrowest element
 * the kernel loads or stores at that shape) on the last dim, fills the lanes
 * along the last dim first and then the warps, as Triton's default does, so
 * a warp reads 512 contiguous bytes per instruction. Rank-0 values are
 * uniform scalars held by every thread.
 *
 * Reducing axis a of a layout P gives the slice layout: P without dim a,
 * every thread along grid dim gdim[a] holding the same result. The slice
 * remembers what it removed so that expand_dims puts it back and a following
 * broadcast yields P again: `x - max(x, 1)[:, None]` costs no data movement.
 *
 * Where the layouts chosen for two operands truly differ, the value moves
 * through shared memory (lower_smem_shuffle). To keep that rare, cheap values
 * (constants, arange, splats, integer index arithmetic, `/` and `%` included)
 * are "rematerialised": computed afresh in every layout a user asks for,
 * just as Triton rematerialises its index computations. Broadcast and
 * expand_dims are always rematerialised, whatever their operand: they are
 * views (register copies), so a user's layout L is made from the operand in
 * collapse(L) / slice(L), and where something must move it is the small
 * operand, never the broadcast tile. Everything else is computed once, in
 * its natural layout: loads in the layout their users agree on (a [ROWS]
 * load only broadcast into a [ROWS, BLOCK] tile is loaded in the slice of
 * that tile's layout), else the canonical one; reduction results in the
 * slice of their operand; elementwise results in the layout of their first
 * non-remat operand. Stores take their value's layout (layout_store).
 *
 * Axis analysis
 * -------------
 * Triton's AxisInfo: per value and dim, contiguity, divisibility and
 * constancy (see AxisInfo in layout.h), seeded by arange, constants and the
 * parameter specialisations (TIR_SPEC_ALIGN16 pointers are 16-byte aligned,
 * TIR_SPEC_DIV16 ints are multiples of 16, TIR_SPEC_ONE ints are 1) and
 * pushed through add, sub, mul, shl, ptr_add, splat, broadcast, expand_dims,
 * compares and logical ops. Every rule is conservative: a vector access is
 * emitted only when the facts prove it safe.
 */
#include "layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cg_error(Cg *cg, tj_status st, Loc loc, const char *fmt, ...) {
  if (cg->err == TJ_OK) cg->err = st;
  va_list ap;
  va_start(ap, fmt);
  if (loc.file || loc.line)
    diag_vat(cg->d, DIAG_ERROR, loc, fmt, ap);
  else {
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    diag_plain(cg->d, DIAG_ERROR, "%s", buf);
  }
  va_end(ap);
}

int cg_dtype_bytes(Dtype dt) {
  if (dt == DT_BOOL) return 1;
  return dtype_bytes(dt);
}

static int ilog2(int64_t x) {
  int n = 0;
  while (x > 1) {
    x >>= 1;
    n++;
  }
  return n;
}
static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }
static int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------- layouts

static void layout_finish(Layout *L) {
  L->nelem = 1;
  for (int d = 0; d < L->rank; d++) {
    int g = L->gdim[d];
    if (L->spt[d] < 1) L->spt[d] = 1;
    L->espt[d] = imin(L->spt[d], L->shape[d]);
    L->cover[d] = g < 0 ? L->espt[d] : L->espt[d] * L->tpw[g] * L->wpc[g];
    L->cnt[d] = L->shape[d] >= L->cover[d] ? L->shape[d] / L->cover[d] * L->espt[d] : L->espt[d];
    L->nelem *= L->cnt[d];
  }
}

static bool layout_same(const Layout *a, const Layout *b) {
  if (a->rank != b->rank || a->sl_dim != b->sl_dim || a->sl_spt != b->sl_spt ||
      a->sl_gdim != b->sl_gdim)
    return false;
  for (int g = 0; g < 2; g++)
    if (a->tpw[g] != b->tpw[g] || a->wpc[g] != b->wpc[g]) return false;
  for (int d = 0; d < a->rank; d++)
    if (a->shape[d] != b->shape[d] || a->spt[d] != b->spt[d] || a->gdim[d] != b->gdim[d])
      return false;
  return true;
}

// Stands in for a layout that could not be allocated: cg->err is set then,
// and every pass stops before using it for more than a comparison.
static const Layout oom_layout = {.rank = 0, .nelem = 1, .tpw = {1, 32}, .wpc = {1, 1}};

static const Layout *intern(Cg *cg, Layout *L) {
  layout_finish(L);
  for (int i = 0; i < cg->nlayouts; i++)
    if (layout_same(cg->layouts[i], L)) return cg->layouts[i];
  if (cg->nlayouts == cg->caplayouts) {
    int cap = cg->caplayouts ? cg->caplayouts * 2 : 32;
    const Layout **n = arena_alloc(cg->a, sizeof *n * cap);
    if (!n) {
      cg->err = TJ_ERR_NO_MEMORY;
      return &oom_layout;
    }
    if (cg->nlayouts) memcpy(n, cg->layouts, sizeof *n * cg->nlayouts);
    cg->layouts = n;
    cg->caplayouts = cap;
  }
  Layout *c = arena_alloc(cg->a, sizeof *c);
  if (!c) {
    cg->err = TJ_ERR_NO_MEMORY;
    return &oom_layout;
  }
  *c = *L;
  cg->layouts[cg->nlayouts++] = c;
  return c;
}

static Layout blank(void) {
  Layout L;
  memset(&L, 0, sizeof L);
  L.tpw[0] = L.tpw[1] = 1;
  L.wpc[0] = L.wpc[1] = 1;
  L.gdim[0] = L.gdim[1] = -1;
  L.sl_dim = L.sl_spt = L.sl_gdim = -1;
  return L;
}

const Layout *layout_scalar(Cg *cg) {
  Layout L = blank();
  L.tpw[1] = 32;
  L.wpc[1] = cg->num_warps;
  return intern(cg, &L);
}

const Layout *layout_canonical(Cg *cg, int rank, const int *shape, int vec) {
  Layout L = blank();
  L.rank = rank;
  int nw = cg->num_warps;
  if (rank == 1) {
    L.shape[0] = shape[0];
    L.spt[0] = imin(vec, shape[0]);
    L.gdim[0] = 1;
    L.tpw[1] = 32;
    L.wpc[1] = nw;
  } else {
    int n = shape[1];
    L.shape[0] = shape[0];
    L.shape[1] = n;
    L.spt[1] = imin(vec, n);
    L.spt[0] = 1;
    L.tpw[1] = imin(32, n / L.spt[1]);
    L.tpw[0] = 32 / L.tpw[1];
    L.wpc[1] = imin(nw, imax(1, n / (L.spt[1] * L.tpw[1])));
    L.wpc[0] = nw / L.wpc[1];
    L.gdim[0] = 0;
    L.gdim[1] = 1;
  }
  return intern(cg, &L);
}

static int vec_bytes_for(Cg *cg, int rank, const int *shape) {
  int best = 0;
  for (int i = 0; i < cg->nvecs; i++) {
    struct CgVec *v = &cg->vecs[i];
    if (v->rank != rank) continue;
    bool same = true;
    for (int d = 0; d < rank; d++) same &= v->shape[d] == shape[d];
    if (same && (best == 0 || v->minbytes < best)) best = v->minbytes;
  }
  return best ? best : 4;
}

const Layout *layout_default(Cg *cg, TirType t) {
  if (t.rank == 0) return layout_scalar(cg);
  int vec = 16 / vec_bytes_for(cg, t.rank, t.shape);
  return layout_canonical(cg, t.rank, t.shape, vec < 1 ? 1 : vec);
}

const Layout *layout_slice(Cg *cg, const Layout *P, int axis) {
  if (P->rank <= 1) return layout_scalar(cg);
  Layout L = *P;
  int k = 1 - axis;
  L.rank = 1;
  L.shape[0] = P->shape[k];
  L.spt[0] = P->spt[k];
  L.gdim[0] = P->gdim[k];
  L.shape[1] = L.spt[1] = 0;
  L.gdim[1] = -1;
  L.sl_dim = axis;
  L.sl_spt = P->spt[axis];
  L.sl_gdim = P->gdim[axis];
  return intern(cg, &L);
}

const Layout *layout_expand(Cg *cg, const Layout *P, int axis) {
  Layout L = *P;
  L.rank = P->rank + 1;
  if (P->rank == 0) {  // scalar -> [1]: every thread holds it
    L.shape[0] = 1;
    L.spt[0] = 1;
    L.gdim[0] = -1;
  } else {
    int k = 1 - axis;  // where the old dim goes
    L.shape[k] = P->shape[0];
    L.spt[k] = P->spt[0];
    L.gdim[k] = P->gdim[0];
    L.shape[axis] = 1;
    if (P->sl_dim == axis) {
      L.spt[axis] = P->sl_spt;
      L.gdim[axis] = P->sl_gdim;
    } else {
      L.spt[axis] = 1;
      L.gdim[axis] = -1;
    }
  }
  L.sl_dim = L.sl_spt = L.sl_gdim = -1;
  return intern(cg, &L);
}

const Layout *layout_collapse(Cg *cg, const Layout *P, const int *shape) {
  Layout L = *P;
  for (int d = 0; d < P->rank; d++)
    if (shape[d] == 1) L.shape[d] = 1;
  return intern(cg, &L);
}

const Layout *layout_mma(Cg *cg, int M, int N, int wm, int wn) {
  Layout L = blank();
  L.rank = 2;
  L.shape[0] = M;
  L.shape[1] = N;
  L.spt[0] = 1;
  L.spt[1] = 2;
  L.gdim[0] = 0;
  L.gdim[1] = 1;
  L.tpw[0] = 8;
  L.tpw[1] = 4;
  L.wpc[0] = wm;
  L.wpc[1] = wn;
  return intern(cg, &L);
}

// Where the bits of grid dim g sit in the lane and warp ids.
static int lane_shift(const Layout *L, int g) { return g == 1 ? 0 : ilog2(L->tpw[1]); }
static int warp_shift(const Layout *L, int g) { return g == 1 ? 0 : ilog2(L->wpc[1]); }

// Same elements in the same slots of the same threads.
bool layout_eq(const Layout *a, const Layout *b) {
  if (a == b) return true;
  if (a->rank != b->rank || a->nelem != b->nelem) return false;
  for (int d = 0; d < a->rank; d++) {
    if (a->shape[d] != b->shape[d]) return false;
    if (a->shape[d] == 1) continue;
    if (a->espt[d] != b->espt[d] || a->cnt[d] != b->cnt[d]) return false;
    int ga = a->gdim[d], gb = b->gdim[d];
    int na = ga < 0 ? 1 : a->tpw[ga] * a->wpc[ga];
    int nb = gb < 0 ? 1 : b->tpw[gb] * b->wpc[gb];
    if (na == 1 && nb == 1) continue;
    if (ga < 0 || gb < 0) return false;
    if (a->tpw[ga] != b->tpw[gb] || a->wpc[ga] != b->wpc[gb]) return false;
    if (a->tpw[ga] > 1 && lane_shift(a, ga) != lane_shift(b, gb)) return false;
    if (a->wpc[ga] > 1 && warp_shift(a, ga) != warp_shift(b, gb)) return false;
  }
  return true;
}

int layout_off(const Layout *L, int slot, int d) {
  int k = L->rank == 2 ? (d == 0 ? slot / L->cnt[1] : slot % L->cnt[1]) : slot;
  return (k / L->espt[d]) * L->cover[d] + k % L->espt[d];
}

int layout_lanes(const Layout *L, int d) {
  int g = L->gdim[d];
  if (g < 0) return 1;
  return imin(L->tpw[g], imax(1, L->shape[d] / L->espt[d]));
}

int layout_warps(const Layout *L, int d) {
  int g = L->gdim[d];
  if (g < 0) return 1;
  return imin(L->wpc[g], imax(1, L->shape[d] / (L->espt[d] * L->tpw[g])));
}

// ---------------------------------------------------------------- axis analysis

static int64_t pow2div(int64_t v) {
  if (v == 0) return AX_DIV_MAX;
  int64_t p = 1;
  while (!(v & p) && p < AX_DIV_MAX) p <<= 1;
  return p;
}

static AxisInfo ax_unknown(int rank, const int *shape) {
  AxisInfo a;
  memset(&a, 0, sizeof a);
  for (int d = 0; d < 2; d++) {
    a.contig[d] = 1;
    a.cnst[d] = 1;
    a.div[d] = 1;
  }
  (void)rank;
  (void)shape;
  return a;
}

// Divisibility of the first value of each aligned group of length c, given
// x's facts: inside a longer contiguous run, only c-alignment survives.
static int64_t eff_div(const AxisInfo *x, int d, int c) {
  return x->contig[d] > c ? lmin(x->div[d], c) : x->div[d];
}

static int64_t cap(int64_t v) { return v > AX_DIV_MAX ? AX_DIV_MAX : v; }

static AxisInfo *AX(Cg *cg, TirValue *v) { return &cg->vi[v->id].ax; }

static void axis_inst(Cg *cg, TirInst *in) {
  if (in->nres < 1) return;
  TirValue *r = in->res[0];
  TirType t = r->type;
  AxisInfo o = ax_unknown(t.rank, t.shape);
  AxisInfo *a = in->nargs > 0 ? AX(cg, in->args[0]) : NULL;
  AxisInfo *b = in->nargs > 1 ? AX(cg, in->args[1]) : NULL;
  int rank = t.rank;
  bool isint = t.ptr || dtype_is_int(t.dtype);
  switch (in->op) {
  case TIR_CONST:
    if (!dtype_is_float(t.dtype)) {
      for (int d = 0; d < 2; d++) {
        o.cnst[d] = rank > d ? t.shape[d] : 1;
        o.div[d] = pow2div(in->cval.i);
      }
      o.known = true;
      o.kval = in->cval.i;
    }
    break;
  case TIR_ARANGE:
    o.contig[0] = t.shape[0];
    o.div[0] = pow2div(in->lo);
    break;
  case TIR_SPLAT:
    for (int d = 0; d < rank; d++) {
      o.cnst[d] = t.shape[d];
      o.div[d] = a->div[0];
    }
    o.known = a->known;
    o.kval = a->kval;
    break;
  case TIR_BROADCAST: {
    TirType at = in->args[0]->type;
    for (int d = 0; d < rank; d++) {
      if (at.shape[d] == 1 && t.shape[d] != 1) {
        o.contig[d] = 1;
        o.cnst[d] = t.shape[d];
        // every element of the old size-1 dim: its per-element divisibility
        int64_t e = AX_DIV_MAX;
        for (int k = 0; k < at.rank; k++) e = lmin(e, eff_div(a, k, 1));
        o.div[d] = e;
      } else {
        o.contig[d] = a->contig[d];
        o.cnst[d] = a->cnst[d];
        o.div[d] = a->div[d];
      }
    }
    o.known = a->known;
    o.kval = a->kval;
    break;
  }
  case TIR_EXPAND_DIMS: {
    TirType at = in->args[0]->type;
    int64_t e = AX_DIV_MAX;
    for (int k = 0; k < at.rank; k++) e = lmin(e, eff_div(a, k, 1));
    if (at.rank == 0) e = a->div[0];
    int src = 0;
    for (int d = 0; d < rank; d++) {
      if (d == in->axis) {
        o.contig[d] = 1;
        o.cnst[d] = 1;
        o.div[d] = e;
      } else {
        o.contig[d] = a->contig[src];
        o.cnst[d] = a->cnst[src];
        o.div[d] = a->div[src];
        src++;
      }
    }
    o.known = a->known;
    o.kval = a->kval;
    break;
  }
  case TIR_ADD:
  case TIR_SUB:
  case TIR_PTR_ADD: {
    if (!isint && in->op != TIR_PTR_ADD) break;
    int64_t scale = in->op == TIR_PTR_ADD ? cg_dtype_bytes(in->args[0]->type.dtype) : 1;
    for (int d = 0; d < (rank ? rank : 1); d++) {
      int c = imin(a->contig[d], b->cnst[d]);
      if (in->op != TIR_SUB) c = imax(c, imin(b->contig[d], a->cnst[d]));
      if (rank == 0) c = 1;
      o.contig[d] = c;
      o.div[d] = lmin(eff_div(a, d, c), cap(eff_div(b, d, c) * scale));
      o.cnst[d] = imin(a->cnst[d], b->cnst[d]);
    }
    if (a->known && b->known && in->op != TIR_PTR_ADD) {
      o.known = true;
      o.kval = in->op == TIR_ADD ? a->kval + b->kval : a->kval - b->kval;
    }
    break;
  }
  case TIR_MUL:
  case TIR_SHL:
    if (!isint) break;
    for (int d = 0; d < (rank ? rank : 1); d++) {
      o.cnst[d] = imin(a->cnst[d], b->cnst[d]);
      if (in->op == TIR_MUL) {
        if (b->known && b->kval == 1) {
          o.contig[d] = a->contig[d];
          o.div[d] = a->div[d];
        } else if (a->known && a->kval == 1) {
          o.contig[d] = b->contig[d];
          o.div[d] = b->div[d];
        } else {
          o.div[d] = cap(eff_div(a, d, 1) * eff_div(b, d, 1));
        }
      } else if (b->known && b->kval >= 0 && b->kval < 30) {
        o.div[d] = cap(eff_div(a, d, 1) << b->kval);
      }
    }
    if (a->known && b->known && in->op == TIR_MUL) {
      o.known = true;
      o.kval = a->kval * b->kval;
    }
    break;
  case TIR_CMP:
    for (int d = 0; d < rank; d++) {
      o.cnst[d] = imin(a->cnst[d], b->cnst[d]);
      // x < n (or x >= n) over an aligned contiguous x with n constant and
      // a multiple of the group: the comparison cannot flip inside a group.
      const AxisInfo *x = NULL, *n = NULL;
      if (in->pred == CMP_LT || in->pred == CMP_GE) x = a, n = b;
      else if (in->pred == CMP_GT || in->pred == CMP_LE) x = b, n = a;
      if (x && !dtype_is_float(in->args[0]->type.dtype)) {
        int g = imin(x->contig[d], n->cnst[d]);
        g = (int)lmin(g, lmin(x->div[d], eff_div(n, d, 1)));
        if (x->contig[d] > 1 && g > o.cnst[d]) o.cnst[d] = g;
      }
    }
    break;
  case TIR_AND:
  case TIR_OR:
  case TIR_XOR:
  case TIR_NOT:
  case TIR_WHERE:
  case TIR_CAST:
  case TIR_DIV:  // elementwise: constant where every operand is
  case TIR_REM:
  case TIR_MAX:
  case TIR_MIN:
    for (int d = 0; d < rank; d++) {
      int c = a->cnst[d];
      for (int k = 1; k < in->nargs; k++) c = imin(c, AX(cg, in->args[k])->cnst[d]);
      o.cnst[d] = c;
    }
    if (in->op == TIR_CAST && isint) {
      // Widening int casts keep the values, so also the increments.
      Dtype from = in->args[0]->type.dtype;
      if (dtype_is_int(from) && dtype_bits(t.dtype) >= dtype_bits(from) &&
          (dtype_is_signed(from) || !dtype_is_signed(t.dtype) || dtype_bits(t.dtype) > dtype_bits(from))) {
        for (int d = 0; d < 2; d++) {
          o.contig[d] = a->contig[d];
          o.div[d] = a->div[d];
        }
        o.known = a->known;
        o.kval = a->kval;
      }
    }
    break;
  default:
    break;
  }
  cg->vi[r->id].ax = o;
}

// ---------------------------------------------------------------- layout analysis

// Ops recomputed in every layout a user wants when all their tile operands
// are themselves recomputable. Integer `/` and `%` count as index arithmetic
// (row = i / seq, col = i % seq), as in Triton: a few instructions per
// element are far cheaper than moving the tile through shared memory.
static bool is_cheap(const TirInst *in) {
  switch (in->op) {
  case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_AND: case TIR_OR: case TIR_XOR:
  case TIR_SHL: case TIR_SHR: case TIR_CMP: case TIR_PTR_ADD: case TIR_WHERE:
  case TIR_CAST: case TIR_BITCAST: case TIR_NEG: case TIR_NOT: case TIR_ABS:
  case TIR_MAX: case TIR_MIN:
    return true;
  case TIR_DIV: case TIR_REM:
    return !dtype_is_float(in->res[0]->type.dtype);
  default:
    return false;
  }
}

static ValInfo *VI(Cg *cg, TirValue *v) { return &cg->vi[v->id]; }

static void add_scratch(Cg *cg, int64_t bytes, Loc loc) {
  if (bytes > cg_smem_limit(cg)) {
    cg_error(cg, TJ_ERR_UNSUPPORTED, loc,
             "codegen: this needs %lld bytes of shared memory (more than the %d KiB of %s)",
             (long long)bytes, cg_smem_limit(cg) / 1024, cg->opt->arch ? cg->opt->arch : "sm_80");
    return;
  }
  if (bytes > cg->scratch_bytes) cg->scratch_bytes = (int)bytes;
}

static bool has_req(ValInfo *v, const Layout *L) {
  for (int i = 0; i < v->nreq; i++)
    if (layout_eq(v->req[i], L)) return true;
  return false;
}

static void push_req(Cg *cg, ValInfo *v, const Layout *L) {
  if (v->nreq == v->capreq) {
    int cap = v->capreq ? v->capreq * 2 : 4;
    const Layout **n = arena_alloc(cg->a, sizeof *n * cap);
    if (!n) {
      cg->err = TJ_ERR_NO_MEMORY;
      return;
    }
    if (v->nreq) memcpy(n, v->req, sizeof *n * v->nreq);
    v->req = n;
    v->capreq = cap;
  }
  v->req[v->nreq++] = L;
}

// Records that a user needs v in layout L, and for a remat value what its
// operands must then be materialised in.
static void request(Cg *cg, TirValue *v, const Layout *L, Loc loc) {
  if (v->type.rank == 0) return;
  ValInfo *vi = VI(cg, v);
  if (!vi->remat) {
    if (layout_eq(vi->nat, L) || has_req(vi, L)) return;
    push_req(cg, vi, L);
    add_scratch(cg, tir_numel(v->type) * (v->type.ptr ? 8 : cg_dtype_bytes(v->type.dtype)), loc);
    return;
  }
  if (has_req(vi, L)) return;
  push_req(cg, vi, L);
  TirInst *in = v->def;
  switch (in->op) {
  case TIR_BROADCAST:
    request(cg, in->args[0], layout_collapse(cg, L, in->args[0]->type.shape), loc);
    break;
  case TIR_EXPAND_DIMS:
    request(cg, in->args[0], layout_slice(cg, L, in->axis), loc);
    break;
  case TIR_CONST: case TIR_ARANGE: case TIR_SPLAT:
    break;
  default:
    for (int i = 0; i < in->nargs; i++) request(cg, in->args[i], L, loc);
    break;
  }
}

// The layout a value is computed in when a consumer may choose.
static const Layout *nat_or_default(Cg *cg, TirValue *v) {
  ValInfo *vi = VI(cg, v);
  if (v->type.rank == 0) return layout_scalar(cg);
  return vi->remat ? layout_default(cg, v->type) : vi->nat;
}

// The layout in which every user of v takes it without a conversion, when
// they agree: a [ROWS] load that is only broadcast into a [ROWS, BLOCK] tile
// is loaded straight in the slice of that tile's layout, and nothing moves.
// Stores take any layout, so they do not vote; other users veto (NULL).
static const Layout *user_layout(Cg *cg, TirValue *v, int depth) {
  ValInfo *vi = VI(cg, v);
  const Layout *h = NULL;
  if (depth > 4) return NULL;
  for (int i = 0; i < vi->nusers; i++) {
    TirInst *u = vi->users[i];
    const Layout *x = NULL;
    if (u->op == TIR_STORE && u->args[0] != v) continue;
    if (u->op == TIR_EXPAND_DIMS) {
      x = user_layout(cg, u->res[0], depth + 1);
      x = x && x->rank == 2 ? layout_slice(cg, x, u->axis) : NULL;
    } else if (u->op == TIR_BROADCAST) {
      x = layout_collapse(cg, layout_default(cg, u->res[0]->type), v->type.shape);
    } else if (lower_is_elementwise(u->op) && u->nres == 1 && u->res[0]->type.rank == v->type.rank) {
      // v decides the layout of u only if every other operand is cheap
      for (int k = 0; k < u->nargs; k++)
        if (u->args[k] != v && u->args[k]->type.rank > 0 && !VI(cg, u->args[k])->remat) return NULL;
      x = user_layout(cg, u->res[0], depth + 1);
    }
    if (!x || (h && !layout_eq(h, x))) return NULL;
    h = x;
  }
  return h;
}

// A store goes in the layout its value already has, so a reduction's slice
// is stored without moving it; only when that would narrow the vector
// accesses of a small tile does the value move to the canonical layout.
const Layout *layout_store(Cg *cg, const TirInst *in) {
  TirValue *ptr = in->args[0];
  const Layout *D = layout_default(cg, ptr->type);
  for (int i = 1; i >= 0; i--) {  // the value's layout, else the pointers'
    TirValue *v = in->args[i];
    ValInfo *vi = VI(cg, v);
    if (v->type.rank != ptr->type.rank || vi->remat || !vi->nat || vi->nat->rank != D->rank) continue;
    const Layout *L = vi->nat;
    int d = D->rank - 1;
    int64_t bytes = tir_numel(v->type) * (v->type.ptr ? 8 : cg_dtype_bytes(v->type.dtype));
    if (L->espt[d] >= D->espt[d] || bytes > 16 * 1024) return L;
  }
  return D;
}

static void analyse_block(Cg *cg, TirBlock *blk);

static void clear_block(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in; in = in->next) {
    for (int i = 0; i < in->nres; i++) VI(cg, in->res[i])->nreq = 0;
    for (int k = 0; k < in->nblocks; k++) clear_block(cg, in->blocks[k]);
  }
}

TirInst *cg_yield_of(TirBlock *blk) {
  return blk && blk->last && blk->last->op == TIR_YIELD ? blk->last : NULL;
}
static TirInst *yield_of(TirBlock *blk) { return cg_yield_of(blk); }

static void analyse_for(Cg *cg, TirInst *in) {
  TirBlock *body = in->blocks[0];
  int nc = in->nargs - 3;
  const Layout **Lc = arena_alloc(cg->a, sizeof *Lc * (nc + 1));
  if (!Lc || body->nargs != nc + 1) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: malformed for");
    return;
  }
  bool *soft = arena_alloc(cg->a, sizeof *soft * (nc + 1));
  if (!soft) {
    cg->err = TJ_ERR_NO_MEMORY;
    return;
  }
  for (int j = 0; j < nc; j++) {
    Lc[j] = nat_or_default(cg, in->args[3 + j]);
    soft[j] = in->args[3 + j]->type.rank > 0 && VI(cg, in->args[3 + j])->remat;
  }
  // An accumulator that starts as a constant and is yielded by a dot of the
  // body starts in the dot's layout: no conversion is requested (and its
  // scratch reserved) in a first pass only to be dropped in the second.
  TirInst *y0 = yield_of(body);
  for (int j = 0; j < nc && y0 && y0->nargs == nc; j++) {
    TirInst *d = y0->args[j]->def;
    if (VI(cg, in->args[3 + j])->remat && d && d->op == TIR_DOT && d->parent == body) {
      Lc[j] = lower_dot_result_layout(cg, d);
      soft[j] = false;
    }
  }
  for (int pass = 0; pass < 2; pass++) {
    ValInfo *iv = VI(cg, body->args[0]);
    iv->nat = layout_scalar(cg);
    iv->ax = ax_unknown(0, NULL);
    // i = lo + k * step: a multiple of whatever divides both
    iv->ax.div[0] = lmin(AX(cg, in->args[0])->div[0], AX(cg, in->args[2])->div[0]);
    for (int j = 0; j < nc; j++) {
      ValInfo *c = VI(cg, body->args[1 + j]);
      c->remat = false;
      c->soft = soft[j];
      c->nreq = 0;
      c->nat = Lc[j];
      c->ax = ax_unknown(0, NULL);
    }
    analyse_block(cg, body);
    // The body stopped at an error: its values have no layouts to compare.
    if (cg->err != TJ_OK) return;
    TirInst *y = yield_of(body);
    if ((y ? y->nargs : 0) != nc) {  // no yield is an empty one
      cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: for yields %d values for %d carried",
               y ? y->nargs : 0, nc);
      return;
    }
    bool again = false;
    for (int j = 0; j < nc; j++) {
      TirValue *init = in->args[3 + j], *yv = y->args[j];
      if (init->type.rank == 0 || !VI(cg, init)->remat) continue;
      if (yv->type.rank == 0 || VI(cg, yv)->remat || yv->block == body) continue;
      if (!layout_eq(VI(cg, yv)->nat, Lc[j])) {
        Lc[j] = VI(cg, yv)->nat;
        again = true;
      }
    }
    if (!again) break;
    clear_block(cg, body);
  }
  TirInst *y = yield_of(body);
  for (int j = 0; j < nc && cg->err == TJ_OK; j++) {
    request(cg, in->args[3 + j], Lc[j], in->loc);
    request(cg, y->args[j], Lc[j], y->loc);
    ValInfo *r = VI(cg, in->res[j]);
    r->remat = false;
    r->nat = Lc[j];
    r->ax = ax_unknown(0, NULL);
  }
}

static void analyse_if(Cg *cg, TirInst *in) {
  for (int k = 0; k < in->nblocks; k++) analyse_block(cg, in->blocks[k]);
  if (cg->err != TJ_OK) return;
  TirInst *yt = yield_of(in->blocks[0]);
  TirInst *ye = in->nblocks > 1 ? yield_of(in->blocks[1]) : NULL;
  for (int j = 0; j < in->nres; j++) {
    if (!yt || !ye || yt->nargs != in->nres || ye->nargs != in->nres) {
      cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: if without yields");
      return;
    }
    TirValue *a = yt->args[j], *b = ye->args[j];
    const Layout *L;
    if (in->res[j]->type.rank == 0) L = layout_scalar(cg);
    else if (!VI(cg, a)->remat) L = VI(cg, a)->nat;
    else if (!VI(cg, b)->remat) L = VI(cg, b)->nat;
    else L = layout_default(cg, in->res[j]->type);
    request(cg, a, L, yt->loc);
    request(cg, b, L, ye->loc);
    ValInfo *r = VI(cg, in->res[j]);
    r->remat = false;
    r->nat = L;
    r->ax = ax_unknown(0, NULL);
  }
}

static void analyse_inst(Cg *cg, TirInst *in) {
  for (int i = 0; i < in->nres; i++) {
    if (in->res[i]->type.rank > 2) {
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc,
               "codegen: tiles of rank %d are not supported (at most 2)", in->res[i]->type.rank);
      return;
    }
  }
  for (int i = 0; i < in->nargs; i++) {
    if (in->args[i]->type.rank > 2) {
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc,
               "codegen: tiles of rank %d are not supported (at most 2)", in->args[i]->type.rank);
      return;
    }
  }
  axis_inst(cg, in);
  if (in->op == TIR_FOR) return analyse_for(cg, in);
  if (in->op == TIR_IF) return analyse_if(cg, in);
  if (in->op == TIR_YIELD || in->op == TIR_STORE) {
    if (in->op == TIR_STORE && in->args[0]->type.rank > 0) {
      const Layout *L = layout_store(cg, in);
      for (int i = 0; i < in->nargs; i++) request(cg, in->args[i], L, in->loc);
    }
    return;
  }
  if (in->nres != 1) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: %s with %d results",
             tir_op_names[in->op], in->nres);
    return;
  }
  TirValue *r = in->res[0];
  ValInfo *vi = VI(cg, r);
  vi->remat = false;
  vi->nreq = 0;
  if (r->type.rank == 0) {
    vi->nat = layout_scalar(cg);
    if (in->op == TIR_REDUCE) {
      const Layout *La = nat_or_default(cg, in->args[0]);
      request(cg, in->args[0], La, in->loc);
      add_scratch(cg, lower_reduce_scratch(cg, in, La), in->loc);
    }
    for (int i = 0; i < in->nargs; i++)
      if (in->args[i]->type.rank > 0 && in->op != TIR_REDUCE) {
        cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: %s of a tile to a scalar",
                 tir_op_names[in->op]);
        return;
      }
    return;
  }
  switch (in->op) {
  case TIR_CONST: case TIR_ARANGE: case TIR_SPLAT:
    vi->remat = true;
    break;
  case TIR_BROADCAST: case TIR_EXPAND_DIMS:
    // Views, rematerialised whatever their operand: a user's layout L is
    // built from the operand in collapse(L) / slice(L) by copying registers,
    // so only the small operand ever moves (and not at all when it is a
    // slice of L, as a reduction's result is), never the broadcast tile.
    vi->remat = true;
    break;
  case TIR_LOAD: {
    const Layout *L = user_layout(cg, r, 0);
    if (!L || L->rank != r->type.rank) L = layout_default(cg, r->type);
    vi->nat = L;
    for (int i = 0; i < in->nargs; i++) request(cg, in->args[i], L, in->loc);
    break;
  }
  case TIR_REDUCE: {
    const Layout *La = nat_or_default(cg, in->args[0]);
    request(cg, in->args[0], La, in->loc);
    vi->nat = layout_slice(cg, La, in->axis);
    add_scratch(cg, lower_reduce_scratch(cg, in, La), in->loc);
    break;
  }
  case TIR_DOT: {
    for (int i = 0; i < 2; i++) request(cg, in->args[i], nat_or_default(cg, in->args[i]), in->loc);
    const Layout *L = lower_dot_layout(cg, in);  // tensor-core or canonical
    request(cg, in->args[2], L, in->loc);
    vi->nat = L;
    add_scratch(cg, lower_dot_scratch(cg, in), in->loc);
    break;
  }
  case TIR_RESHAPE: case TIR_TRANS: {
    TirValue *a = in->args[0];
    if (a->type.rank == 0) {
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: %s of a scalar", tir_op_names[in->op]);
      return;
    }
    request(cg, a, nat_or_default(cg, a), in->loc);
    vi->nat = layout_default(cg, r->type);
    // A trans that MMA dots read as B untransposed costs no scratch (mma.c).
    if (!mma_trans_b(cg, in))
      add_scratch(cg, tir_numel(r->type) * (r->type.ptr ? 8 : cg_dtype_bytes(r->type.dtype)), in->loc);
    break;
  }
  case TIR_PROGRAM_ID: case TIR_NUM_PROGRAMS:
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: tile-valued %s",
             tir_op_names[in->op]);
    return;
  default: {
    if (!lower_is_elementwise(in->op)) {
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: op %s is not supported",
               tir_op_names[in->op]);
      return;
    }
    // The first operand computed here decides; a carried value whose layout
    // is a guess (soft) only when nothing else does, so that a running max
    // m = maximum(m, max(s, 1)) settles in the reduction's layout.
    const Layout *L = NULL, *Lsoft = NULL;
    for (int i = 0; i < in->nargs && !L; i++) {
      TirValue *a = in->args[i];
      if (a->type.rank == 0 || VI(cg, a)->remat) continue;
      if (!VI(cg, a)->soft) L = VI(cg, a)->nat;
      else if (!Lsoft) Lsoft = VI(cg, a)->nat;
    }
    if (!L) L = Lsoft;
    if (!L && is_cheap(in)) {
      vi->remat = true;
      break;
    }
    if (!L) L = layout_default(cg, r->type);
    vi->nat = L;
    for (int i = 0; i < in->nargs; i++) request(cg, in->args[i], L, in->loc);
    break;
  }
  }
  if (vi->remat) vi->nat = layout_default(cg, r->type);
}

static void analyse_block(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in && cg->err == TJ_OK; in = in->next) analyse_inst(cg, in);
}

static void note_vec(Cg *cg, TirType t) {
  if (t.rank == 0 || t.rank > 2) return;
  int bytes = cg_dtype_bytes(t.dtype);
  for (int i = 0; i < cg->nvecs; i++) {
    struct CgVec *v = &cg->vecs[i];
    if (v->rank == t.rank && v->shape[0] == t.shape[0] && (t.rank < 2 || v->shape[1] == t.shape[1])) {
      if (bytes < v->minbytes) v->minbytes = bytes;
      return;
    }
  }
  if (cg->nvecs == cg->capvecs) {
    int cap = cg->capvecs ? cg->capvecs * 2 : 8;
    struct CgVec *n = arena_alloc(cg->a, sizeof *n * cap);
    if (!n) return;
    if (cg->nvecs) memcpy(n, cg->vecs, sizeof *n * cg->nvecs);
    cg->vecs = n;
    cg->capvecs = cap;
  }
  struct CgVec *v = &cg->vecs[cg->nvecs++];
  v->rank = t.rank;
  v->shape[0] = t.shape[0];
  v->shape[1] = t.rank > 1 ? t.shape[1] : 0;
  v->minbytes = bytes;
}

static void scan_vecs(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in; in = in->next) {
    if ((in->op == TIR_LOAD || in->op == TIR_STORE) && in->nargs > 0) note_vec(cg, in->args[0]->type);
    for (int k = 0; k < in->nblocks; k++) scan_vecs(cg, in->blocks[k]);
  }
}

static void collect_users(Cg *cg, TirBlock *blk, bool fill) {
  for (TirInst *in = blk->first; in; in = in->next) {
    for (int i = 0; i < in->nargs; i++) {
      ValInfo *v = VI(cg, in->args[i]);
      if (!fill) v->nusers++;
      else if (v->users) v->users[v->nusers++] = in;
    }
    for (int k = 0; k < in->nblocks; k++) collect_users(cg, in->blocks[k], fill);
  }
}

bool layout_analyse(Cg *cg) {
  const TirFunc *f = cg->f;
  cg->vi = arena_alloc(cg->a, sizeof *cg->vi * (f->nvalues + 1));
  if (!cg->vi) {
    cg->err = TJ_ERR_NO_MEMORY;
    return false;
  }
  collect_users(cg, f->body, false);
  for (int i = 0; i < f->nvalues; i++) {
    ValInfo *v = &cg->vi[i];
    if (!v->nusers) continue;
    v->users = arena_alloc(cg->a, sizeof *v->users * v->nusers);
    if (!v->users) {
      cg->err = TJ_ERR_NO_MEMORY;
      return false;
    }
    v->nusers = 0;
  }
  collect_users(cg, f->body, true);
  mma_mark_rows(cg, f->body);  // before any layout: mma_supported reads it
  // Before any tile is placed: with wgmma, tiles start on 1024 bytes.
  cg->wgmma = mma_any_wgmma(cg, f->body);
  cg->tile_align = cg->wgmma ? 1024 : 128;
  scan_vecs(cg, f->body);
  for (int i = 0; i < f->nparams; i++) {
    const TirParam *p = &f->params[i];
    ValInfo *vi = VI(cg, p->value);
    vi->nat = layout_scalar(cg);
    vi->ax = ax_unknown(0, NULL);
    if (p->ptr) {
      vi->ax.div[0] = (p->spec & TIR_SPEC_ALIGN16) ? 16 : cg_dtype_bytes(p->dtype);
    } else if (dtype_is_int(p->dtype)) {
      if (p->spec & TIR_SPEC_ONE) {
        vi->ax.known = true;
        vi->ax.kval = 1;
      } else if (p->spec & TIR_SPEC_DIV16) {
        vi->ax.div[0] = 16;
      }
    }
  }
  analyse_block(cg, f->body);
  if (cg->err == TJ_OK) pipe_finish(cg);  // stage buffers go after the scratch
  return cg->err == TJ_OK;
}
