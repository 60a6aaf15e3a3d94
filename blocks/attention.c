/* attention.c: blocksparse flash attention (tj_attention_fwd / _bwd) over
 * blocks/attention.tj, and the layout object with its lookup tables.
 *
 * requires: DLTensors [B, H, S, D] from the caller and a tj_attn_layout;
 * produces: validated launches of attn_fwd, or of attn_bwd_dq (which also
 * writes delta = rowsum(o * do)) followed by attn_bwd_dkdv.
 *
 * Layout blocks and kernel tiles
 * ------------------------------
 * The layout says which bs x bs blocks of the S x S score matrix are active;
 * the kernels work on BM x BN tiles, powers of two chosen for the device
 * (pick_tiles), independent of bs. A plan maps one onto the other, once per
 * (layout, BM, BN, causal, target), and is cached in the layout:
 *  - tile (rt, ct) is active when any element in it is live (its layout bit
 *    on and, under causal, j <= i); it is clean when every element is live,
 *    else masked (the kernel then masks element by element, gathering the
 *    layout bits when a tile spans several blocks: SUB);
 *  - per (layout head, query tile) the kernel reads 4 ints [a0, a1, a2, a3]:
 *    masked [a0, a1), clean [a1, a2), masked [a2, a3). When every row's
 *    active tiles form one run, masked-clean-masked (dense, causal, sliding
 *    windows), these are tile numbers (RANGE: K/V addresses follow the loop
 *    variable, which lets the code generator prefetch); otherwise they index
 *    a list of tile numbers, masked ones first (CSR: meta holds the row
 *    pointers, lut the column indices);
 *  - the same tables, transposed (per key tile, its query tiles), drive the
 *    dK/dV pass.
 * Tiles divide S (pick_tiles halves them until they do; S is a multiple of
 * bs >= 16), so the kernels need no bounds masks.
 *
 * Plans built for GPU tensors live in device memory: the first call with a
 * new (tile config, causal) uploads them with synchronous copies; later
 * calls only look them up. A layout belongs to the tj_blocks handle (and
 * context) that created it.
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_FILE "blocks/attention.tj"

typedef struct AttnPlan {
  int bm, bn;
  bool causal, gpu;
  bool sub;            // some active tile spans layout blocks that are off
  bool range, range_t; // the forward / transposed tables are tile runs
  int nrt, nct;        // query tiles, key tiles
  int64_t tiles;       // active tiles summed over layout heads
  void *meta, *lut, *meta_t, *lut_t, *lay;   // host or device memory
  size_t meta_n, lut_n, meta_t_n, lut_t_n, lay_n;   // bytes
} AttnPlan;

struct tj_attn_layout {
  tj_ctx *ctx;
  tj_blocks *owner;
  int heads, nb, bs;
  uint8_t *bits;       // [heads, nb, nb], 0/1
  int64_t nnz;
  pthread_mutex_t mu;  // guards the plans and the forced config
  AttnPlan *plans;
  int nplans, cap;
  BlkAttnCfg force;    // test hook (bm == 0: the heuristic)
};

// ---------------------------------------------------------------- layout

tj_status tj_attn_layout_create(tj_blocks *b, const uint8_t *bits, int heads, int nb, int bs,
                                tj_attn_layout **out) {
  if (!b) return TJ_ERR_INVALID_ARG;
  if (!out) return blk_error(b, TJ_ERR_INVALID_ARG, "tj_attn_layout_create: out is NULL");
  *out = NULL;
  if (bs != 16 && bs != 32 && bs != 64 && bs != 128)
    return blk_error(b, TJ_ERR_INVALID_ARG, "tj_attn_layout_create: block size %d is not supported; "
                     "it must be 16, 32, 64 or 128", bs);
  if (heads < 1 || nb < 1)
    return blk_error(b, TJ_ERR_INVALID_ARG, "tj_attn_layout_create: the layout needs heads >= 1 and nb >= 1, "
                     "got heads = %d, nb = %d", heads, nb);
  if ((int64_t)nb * bs > INT32_MAX / 2 || (int64_t)heads * nb * nb > INT32_MAX)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "tj_attn_layout_create: a layout of %d x %d x %d blocks of %d "
                     "is too large", heads, nb, nb, bs);
  tj_attn_layout *l = tj_calloc(1, sizeof *l);
  size_t n = (size_t)heads * (size_t)nb * (size_t)nb;
  if (!l || !(l->bits = tj_malloc(n))) {
    tj_free(l);
    return blk_error(b, TJ_ERR_NO_MEMORY, "out of memory (a layout of %zu blocks)", n);
  }
  if (pthread_mutex_init(&l->mu, NULL) != 0) {
    tj_free(l->bits);
    tj_free(l);
    return blk_error(b, TJ_ERR_NO_MEMORY, "tj_attn_layout_create: cannot create a mutex");
  }
  l->ctx = b->ctx;
  l->owner = b;
  l->heads = heads;
  l->nb = nb;
  l->bs = bs;
  for (size_t i = 0; i < n; i++) {
    l->bits[i] = bits ? bits[i] != 0 : 1;
    l->nnz += l->bits[i];
  }
  *out = l;
  return TJ_OK;
}

static void plan_free(tj_ctx *ctx, AttnPlan *p) {
  void *bufs[5] = { p->meta, p->lut, p->meta_t, p->lut_t, p->lay };
  for (int i = 0; i < 5; i++) {
    if (!bufs[i]) continue;
    if (p->gpu) tj_device_free(ctx, bufs[i]);
    else tj_free(bufs[i]);
  }
}

void tj_attn_layout_free(tj_attn_layout *l) {
  if (!l) return;
  for (int i = 0; i < l->nplans; i++) plan_free(l->ctx, &l->plans[i]);
  tj_free(l->plans);
  tj_free(l->bits);
  pthread_mutex_destroy(&l->mu);
  tj_free(l);
}

int64_t tj_attn_layout_nnz(const tj_attn_layout *l) { return l ? l->nnz : 0; }

void blk_attn_force_config(tj_attn_layout *l, const BlkAttnCfg *c) {
  pthread_mutex_lock(&l->mu);
  if (c) l->force = *c;
  else memset(&l->force, 0, sizeof l->force);
  pthread_mutex_unlock(&l->mu);
}

// ---------------------------------------------------------------- plans

enum { T_NONE = 0, T_MASKED = 1, T_CLEAN = 2 };

// Tile (rt, ct) of head slice `bits`: T_NONE, T_MASKED or T_CLEAN. *partial
// is set when the tile is active and some layout block it covers is off
// (the kernel must then gather the layout bits).
static int classify(const tj_attn_layout *l, const uint8_t *bits, int bm, int bn, bool causal, int rt,
                    int ct, bool *partial) {
  int64_t bs = l->bs, r0 = (int64_t)rt * bm, r1 = r0 + bm, c0 = (int64_t)ct * bn, c1 = c0 + bn;
  if (causal && c0 > r1 - 1) return T_NONE;   // wholly above the diagonal
  int64_t I0 = r0 / bs, I1 = (r1 - 1) / bs, J0 = c0 / bs, J1 = (c1 - 1) / bs;
  bool any = false, all = true, off = false;
  for (int64_t I = I0; I <= I1; I++)
    for (int64_t J = J0; J <= J1; J++) {
      int64_t rl = r0 > I * bs ? r0 : I * bs, rh = r1 < (I + 1) * bs ? r1 : (I + 1) * bs;
      int64_t cl = c0 > J * bs ? c0 : J * bs, ch = c1 < (J + 1) * bs ? c1 : (J + 1) * bs;
      bool on = bits[I * l->nb + J] != 0;
      off |= !on;
      any |= on && (!causal || cl <= rh - 1);
      all &= on && (!causal || ch - 1 <= rl);
    }
  if (any && off) *partial = true;
  return !any ? T_NONE : all ? T_CLEAN : T_MASKED;
}

// One direction of the tables from the class matrix cls[nrows][ncols] of
// each layout head (row-major per head): the range form when every row is
// one masked-clean-masked run (returns true), else the CSR form.
static bool build_tables(const uint8_t *cls, int heads, int nrows, int ncols, bool transpose, int32_t *meta,
                         int32_t **lut_out, size_t *lut_n, bool *oom) {
  bool range = true;
  // Range form first; fall back when a row does not fit it.
  for (int h = 0; h < heads && range; h++)
    for (int r = 0; r < nrows && range; r++) {
      const uint8_t *c = cls + (size_t)h * nrows * ncols;
#define CLS(j) (transpose ? c[(size_t)(j) * nrows + r] : c[(size_t)r * ncols + (j)])
      int first = -1, last = -1, cf = -1, cl = -1;
      for (int j = 0; j < ncols; j++) {
        int k = CLS(j);
        if (k == T_NONE) continue;
        if (first < 0) first = j;
        last = j;
        if (k == T_CLEAN) {
          if (cf < 0) cf = j;
          cl = j;
        }
      }
      int32_t *m = meta + ((size_t)h * nrows + r) * 4;
      if (first < 0) {
        m[0] = m[1] = m[2] = m[3] = 0;
        continue;
      }
      for (int j = first; j <= last && range; j++) {
        int k = CLS(j);
        if (k == T_NONE) range = false;
        if (cf >= 0 && j >= cf && j <= cl && k != T_CLEAN) range = false;
      }
      m[0] = first;
      m[1] = cf < 0 ? last + 1 : cf;
      m[2] = cf < 0 ? last + 1 : cl + 1;
      m[3] = last + 1;
    }
  if (range) {
    *lut_out = tj_calloc(1, 4);
    *lut_n = 4;
    if (!*lut_out) *oom = true;
    return true;
  }
  size_t total = 0;
  for (size_t i = 0; i < (size_t)heads * nrows * ncols; i++) total += cls[i] != T_NONE;
  int32_t *lut = tj_malloc((total ? total : 1) * 4);
  if (!lut) {
    *oom = true;
    return false;
  }
  size_t e = 0;
  for (int h = 0; h < heads; h++)
    for (int r = 0; r < nrows; r++) {
      const uint8_t *c = cls + (size_t)h * nrows * ncols;
      int32_t *m = meta + ((size_t)h * nrows + r) * 4;
      m[0] = (int32_t)e;
      for (int j = 0; j < ncols; j++)
        if (CLS(j) == T_MASKED) lut[e++] = j;
      m[1] = (int32_t)e;
      for (int j = 0; j < ncols; j++)
        if (CLS(j) == T_CLEAN) lut[e++] = j;
      m[2] = m[3] = (int32_t)e;
#undef CLS
    }
  *lut_out = lut;
  *lut_n = (total ? total : 1) * 4;
  return false;
}

// Copies n bytes of host data into a new buffer of the plan's target.
static tj_status place(tj_blocks *b, bool gpu, void *host, size_t n, void **out) {
  *out = NULL;
  if (!gpu) {
    *out = host;
    return TJ_OK;
  }
  tj_status st = tj_device_malloc(b->ctx, n, out);
  if (st == TJ_OK) st = tj_memcpy_htod(b->ctx, *out, host, n);
  tj_free(host);
  return st;
}

static tj_status plan_build(tj_blocks *b, tj_attn_layout *l, int bm, int bn, bool causal, bool gpu,
                            AttnPlan *p) {
  memset(p, 0, sizeof *p);
  p->bm = bm;
  p->bn = bn;
  p->causal = causal;
  p->gpu = gpu;
  int64_t S = (int64_t)l->nb * l->bs;
  p->nrt = (int)(S / bm);
  p->nct = (int)(S / bn);
  size_t ncls = (size_t)l->heads * p->nrt * p->nct;
  uint8_t *cls = tj_malloc(ncls ? ncls : 1);
  int32_t *meta = tj_malloc((size_t)l->heads * p->nrt * 16), *meta_t = tj_malloc((size_t)l->heads * p->nct * 16);
  uint8_t *lay = tj_malloc((size_t)l->heads * l->nb * l->nb);
  int32_t *lut = NULL, *lut_t = NULL;
  bool oom = !cls || !meta || !meta_t || !lay;
  if (!oom) {
    memcpy(lay, l->bits, (size_t)l->heads * l->nb * l->nb);
    for (int h = 0; h < l->heads; h++) {
      const uint8_t *bits = l->bits + (size_t)h * l->nb * l->nb;
      for (int rt = 0; rt < p->nrt; rt++)
        for (int ct = 0; ct < p->nct; ct++) {
          int k = classify(l, bits, bm, bn, causal, rt, ct, &p->sub);
          cls[((size_t)h * p->nrt + rt) * p->nct + ct] = (uint8_t)k;
          p->tiles += k != T_NONE;
        }
    }
    p->range = build_tables(cls, l->heads, p->nrt, p->nct, false, meta, &lut, &p->lut_n, &oom);
    if (!oom) p->range_t = build_tables(cls, l->heads, p->nct, p->nrt, true, meta_t, &lut_t, &p->lut_t_n, &oom);
  }
  tj_free(cls);
  if (oom) {
    tj_free(meta);
    tj_free(meta_t);
    tj_free(lay);
    tj_free(lut);
    tj_free(lut_t);
    return blk_error(b, TJ_ERR_NO_MEMORY, "out of memory (attention lookup tables)");
  }
  p->meta_n = (size_t)l->heads * p->nrt * 16;
  p->meta_t_n = (size_t)l->heads * p->nct * 16;
  p->lay_n = (size_t)l->heads * l->nb * l->nb;
  tj_status st = place(b, gpu, meta, p->meta_n, &p->meta);
  tj_status s2 = place(b, gpu, lut, p->lut_n, &p->lut);
  tj_status s3 = place(b, gpu, meta_t, p->meta_t_n, &p->meta_t);
  tj_status s4 = place(b, gpu, lut_t, p->lut_t_n, &p->lut_t);
  tj_status s5 = place(b, gpu, lay, p->lay_n, &p->lay);
  if (st == TJ_OK) st = s2 != TJ_OK ? s2 : s3 != TJ_OK ? s3 : s4 != TJ_OK ? s4 : s5;
  if (st != TJ_OK) plan_free(b->ctx, p);
  return st;
}

// The plan for (bm, bn, causal, gpu), built on first use. The pointer stays
// valid while the layout lives (plans are never removed; the array holds
// pointers' targets by value, so it is copied out under the lock).
static tj_status plan_get(tj_blocks *b, tj_attn_layout *l, int bm, int bn, bool causal, bool gpu,
                          AttnPlan *out) {
  pthread_mutex_lock(&l->mu);
  for (int i = 0; i < l->nplans; i++) {
    AttnPlan *p = &l->plans[i];
    if (p->bm == bm && p->bn == bn && p->causal == causal && p->gpu == gpu) {
      *out = *p;
      pthread_mutex_unlock(&l->mu);
      return TJ_OK;
    }
  }
  tj_status st = TJ_OK;
  if (l->nplans == l->cap) {
    int cap = l->cap ? 2 * l->cap : 4;
    AttnPlan *np = tj_realloc(l->plans, sizeof *np * (size_t)cap);
    if (!np) st = blk_error(b, TJ_ERR_NO_MEMORY, "out of memory");
    else {
      l->plans = np;
      l->cap = cap;
    }
  }
  if (st == TJ_OK) st = plan_build(b, l, bm, bn, causal, gpu, &l->plans[l->nplans]);
  if (st == TJ_OK) *out = l->plans[l->nplans++];
  pthread_mutex_unlock(&l->mu);
  return st;
}

tj_status blk_attn_plan_info(tj_blocks *b, tj_attn_layout *l, int bm, int bn, bool causal, BlkAttnPlanInfo *info) {
  AttnPlan p;
  tj_status st = plan_get(b, l, bm, bn, causal, false, &p);
  if (st != TJ_OK) return st;
  info->sub = p.sub;
  info->range = p.range;
  info->range_t = p.range_t;
  info->tiles = p.tiles;
  return TJ_OK;
}

// ---------------------------------------------------------------- tensors

// A validated [B, H, S, D] (nd = 4) or [B, H, S] (nd = 3) tensor.
typedef struct AttnT {
  BlkView v;            // name, t, data, nbytes, dtype, empty: what blk_device and the args need
  int nd;
  int64_t shape[4], st[4];
} AttnT;

static const char *dl_name(const DLTensor *t, char *buf, size_t n) { return blk_dtype_str(t, buf, n); }

static tj_dtype dl_to_tj(DLDataType dt) {
  if (dt.lanes != 1) return TJ_VOID;
  if (dt.code == kDLFloat && dt.bits == 16) return TJ_F16;
  if (dt.code == kDLFloat && dt.bits == 32) return TJ_F32;
  if (dt.code == kDLBfloat && dt.bits == 16) return TJ_BF16;
  return TJ_VOID;
}

static tj_status attn_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t, int nd,
                           bool f32_only, bool out, AttnT *a) {
  memset(a, 0, sizeof *a);
  a->v.name = name;
  a->v.t = t;
  a->nd = nd;
  if (!t) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
  if (!t->shape && t->ndim > 0) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has a NULL shape", op, name);
  if (t->ndim != nd)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has %d dimensions; it must be %s", op, name, t->ndim,
                     nd == 4 ? "[B, H, S, D]" : "[B, H, S]");
  char buf[32];
  tj_dtype dt = dl_to_tj(t->dtype);
  if (f32_only ? dt != TJ_F32 : dt == TJ_VOID)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s has dtype %s; %s supports %s", name,
                     dl_name(t, buf, sizeof buf), op, f32_only ? "f32" : "f16, bf16, f32");
  a->v.dtype = dt;
  a->v.esize = dt == TJ_F32 ? 4 : 2;
  int64_t run = 1;
  bool empty = false;
  for (int d = nd - 1; d >= 0; d--) {
    a->shape[d] = t->shape[d];
    if (t->shape[d] < 0)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has a negative size: shape[%d] = %" PRId64, op, name,
                       d, t->shape[d]);
    if (t->shape[d] > INT32_MAX)
      return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has shape[%d] = %" PRId64 "; at most 2^31 - 1", op,
                       name, d, t->shape[d]);
    a->st[d] = t->strides ? t->strides[d] : run;
    run *= t->shape[d] > 1 ? t->shape[d] : 1;
    empty |= t->shape[d] == 0;
  }
  a->v.empty = empty;
  if (empty) return TJ_OK;
  int64_t span = 1;
  for (int d = 0; d < nd; d++) {
    if (t->shape[d] > 1 && a->st[d] < 0)
      return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has a negative stride: stride[%d] = %" PRId64, op,
                       name, d, a->st[d]);
    if (t->shape[d] > 1) {
      if (a->st[d] > INT64_MAX / 4 / t->shape[d])
        return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s has a stride too large: stride[%d] = %" PRId64, op,
                         name, d, a->st[d]);
      span += (t->shape[d] - 1) * a->st[d];
    }
  }
  // The kernels compute offsets within one (b, h) slice in i32.
  int64_t inner = 0;
  for (int d = 2; d < nd; d++) inner += (a->shape[d] - 1) * a->st[d];
  if (inner > INT32_MAX)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s spans %" PRId64 " elements within one (batch, head); "
                     "at most 2^31 - 1 are supported", op, name, inner + 1);
  if (out) {
    // No two elements of an output may share an address: sorted by stride,
    // each dimension must step over everything the smaller ones span.
    int order[4] = { 0, 1, 2, 3 };
    for (int i = 1; i < nd; i++)
      for (int j = i; j > 0 && a->st[order[j]] < a->st[order[j - 1]]; j--) {
        int x = order[j];
        order[j] = order[j - 1];
        order[j - 1] = x;
      }
    int64_t covered = 1;
    for (int i = 0; i < nd; i++) {
      int d = order[i];
      if (a->shape[d] <= 1) continue;
      if (a->st[d] < covered)
        return blk_error(b, TJ_ERR_INVALID_ARG, "%s: output %s has overlapping elements: stride[%d] = %" PRId64
                         " with shape[%d] = %" PRId64, op, name, d, a->st[d], d, a->shape[d]);
      covered = a->st[d] * a->shape[d] > covered ? a->st[d] * a->shape[d] : covered;
    }
  }
  if (!t->data) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has NULL data", op, name);
  a->v.data = (char *)t->data + t->byte_offset;
  a->v.nbytes = (size_t)span * (size_t)a->v.esize;
  return TJ_OK;
}

static tj_status same_shape(tj_blocks *b, const char *op, const AttnT *a, const AttnT *ref, int nd) {
  for (int d = 0; d < nd; d++)
    if (a->shape[d] != ref->shape[d]) {
      char sa[96], sr[96];
      blk_shape_str(a->v.t, sa, sizeof sa);
      blk_shape_str(ref->v.t, sr, sizeof sr);
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s shape %s does not match %s shape %s", op, a->v.name, sa,
                       ref->v.name, sr);
    }
  return TJ_OK;
}

static tj_status same_dtype(tj_blocks *b, const char *op, const AttnT *a, const AttnT *ref) {
  if (a->v.dtype == ref->v.dtype) return TJ_OK;
  return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s has dtype %s but %s has %s", op, a->v.name,
                   blk_dt(a->v.dtype), ref->v.name, blk_dt(ref->v.dtype));
}

// No output may share memory with an input or another output (the kernels
// read inputs after other programs have written outputs): checked on the
// tensors' address ranges, so an output interleaved with an input in one
// packed buffer is refused too.
static tj_status check_disjoint(tj_blocks *b, const char *op, AttnT *const *outs, int nout, AttnT *const *ins,
                                int nin) {
  for (int i = 0; i < nout; i++) {
    const BlkView *o = &outs[i]->v;
    for (int j = 0; j < nin + nout; j++) {
      const BlkView *x = j < nin ? &ins[j]->v : &outs[j - nin]->v;
      if (j >= nin && j - nin <= i) continue;   // each pair of outputs once
      if (!o->nbytes || !x->nbytes) continue;
      const char *o0 = o->data, *x0 = x->data;
      if (o0 < x0 + x->nbytes && x0 < o0 + o->nbytes)
        return blk_error(b, TJ_ERR_INVALID_ARG, "%s: output %s overlaps %s %s (their address ranges "
                         "intersect); outputs must not share memory with the inputs or each other", op,
                         o->name, j < nin ? "input" : "output", x->name);
    }
  }
  return TJ_OK;
}

// Shape [B, H, S] of lse against q's [B, H, S, D].
static tj_status check_lse(tj_blocks *b, const char *op, const AttnT *lse, const AttnT *q) {
  for (int d = 0; d < 3; d++)
    if (lse->shape[d] != q->shape[d]) {
      char sa[96], sr[96];
      blk_shape_str(lse->v.t, sa, sizeof sa);
      blk_shape_str(q->v.t, sr, sizeof sr);
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: lse shape %s must be [B, H, S] of q shape %s", op, sa, sr);
    }
  return TJ_OK;
}

// The layout against q: heads 1 or H, nb * bs = S, same handle.
static tj_status check_layout(tj_blocks *b, const char *op, const tj_attn_layout *l, const AttnT *q) {
  if (!l) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: layout is NULL (an all-ones layout gives dense "
                           "attention)", op);
  if (l->ctx != b->ctx)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: the layout was created on another context", op);
  int64_t H = q->shape[1], S = q->shape[2], D = q->shape[3];
  if (D != 32 && D != 64 && D != 128)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: head dimension D = %" PRId64 " is not supported; it must be "
                     "32, 64 or 128", op, D);
  if (S % l->bs != 0)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: sequence length S = %" PRId64 " is not a multiple of the "
                     "layout's block size %d", op, S, l->bs);
  if (S / l->bs != l->nb)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: the layout has %d x %d blocks of %d (S = %" PRId64
                     ") but q has S = %" PRId64, op, l->nb, l->nb, l->bs, (int64_t)l->nb * l->bs, S);
  if (l->heads != 1 && l->heads != H)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: the layout has %d heads but q has H = %" PRId64
                     " (a layout has 1 head, shared, or H)", op, l->heads, H);
  if (q->shape[0] * H > 65535)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: B * H = %" PRId64 " exceeds 65535", op, q->shape[0] * H);
  return TJ_OK;
}

// ---------------------------------------------------------------- config

static int env_cfg(const char *s, int which, int out[3]) {
  // TILEJIT_ATTN_CONFIG="BM,BN,W[;BM,BN,W]": forward, then backward.
  int v[6], n = 0;
  while (s && *s && n < 6) {
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s) break;
    v[n++] = (int)x;
    s = *end ? end + 1 : end;
  }
  if (n < 3 * (which + 1)) return 0;
  for (int i = 0; i < 3; i++) out[i] = v[3 * which + i];
  return 1;
}

static bool pow2_in(int x, int lo, int hi) { return x >= lo && x <= hi && (x & (x - 1)) == 0; }

// Tiles for one pass (bwd: the dQ and dK/dV kernels share them): the
// forced config, else TILEJIT_ATTN_CONFIG, else the heuristic; halved until
// they divide S.
static void pick_tiles(tj_blocks *b, tj_attn_layout *l, bool gpu, bool bwd, bool causal, int64_t BH, int64_t D,
                       int64_t S, int *bm, int *bn, int *nw) {
  pthread_mutex_lock(&l->mu);
  BlkAttnCfg f = l->force;
  pthread_mutex_unlock(&l->mu);
  bool dense = l->nnz == (int64_t)l->heads * l->nb * l->nb;   // every block active
  int c[3];
  if (f.bm > 0) {
    *bm = f.bm;
    *bn = f.bn;
    *nw = f.num_warps > 0 ? f.num_warps : 4;
  } else if (gpu && env_cfg(getenv("TILEJIT_ATTN_CONFIG"), bwd, c) && pow2_in(c[0], 16, 256) &&
             pow2_in(c[1], 16, 256) && pow2_in(c[2], 1, 16)) {
    *bm = c[0];
    *bn = c[1];
    *nw = c[2];
  } else if (gpu && (D == 16 || D == 32 || D == 64) && blk_has_wgmma(b)) {
    // sm_90a: the dots run on wgmma (D 16, 32, 64: K and V rows of 32, 64,
    // 128 bytes, swizzled as wgmma reads them), one m64 tile per warpgroup
    // and k step. H200, B4 H16 S16384
    // D64 fp16, TFLOP/s, forward dense / causal / +-512 window of
    // 128-blocks (ms): 128x64x8 410 / 320 / 0.843, 128x128x8 356 / 347 /
    // 1.041, 256x64x8 351 / 341 / 1.451, 128x64x4 386 / 292 / 0.867,
    // 64x64x4 387 / 227 / 0.884. Backward dense / causal / window (ms):
    // 128x128x8 270 / 247 / -, 64x64x4 243 / 147 / 3.50 (64x64x8, on
    // mma.sync: 6.85 ms). The 128-wide backward tiles need all blocks
    // active (see below). Those causal figures predate the bound of two
    // programs per SM (tj_attention_fwd): 128x64x8 causal now runs at 400
    // TFLOP/s (2026-11-30, D 64), so causal takes the 128x64 tile too.
    *bm = bwd ? (dense ? 128 : 64) : 128;
    *bn = bwd ? *bm : 64;
    *nw = bwd && !dense ? 4 : 8;
  } else if (gpu && !bwd) {
    // Forward: 8 warps against 64 keys per step. With D <= 64 each warp
    // owns 32 query rows (BM = 256), so every K and V fragment it reads
    // from shared memory feeds two m16 tiles, as FlashAttention-2's warps
    // do; with 16 rows per warp (BM = 128) shared-memory reads bound the
    // loop. H200, B4 H16 S16384 D64 fp16 (TFLOP/s, dense / causal):
    // 256x64x8 323 / 317, 128x64x8 275 / 262, 128x64x4 325 / 282,
    // 128x128x8 297 / 298. D = 128 keeps 16 rows per warp (its
    // accumulator and q fragments would not fit 255 registers otherwise).
    // So does a layout with inactive blocks: a 256-row tile spans two or
    // more layout rows and computes the union of their blocks. There 4
    // warps do best (the +-512 window of 128-blocks, D 64: 1.64 ms at
    // 256x64x8, 1.28 ms at 128x64x8, 1.02 ms at 128x64x4). Grids under ~2
    // waves of one program per SM take the smaller tile.
    *bm = D <= 64 && dense ? 256 : 128;
    *bn = 64;
    *nw = D <= 64 && !dense ? 4 : 8;
    while (*bm > 128 && BH * (S / *bm) < 2 * (int64_t)blk_sm_count(b)) *bm /= 2;
  } else if (gpu) {
    // Backward (dQ and dK/dV kernels): square tiles, 8 warps; 128 wide
    // on dense layouts with D <= 64. H200, B4 H16 S16384 D64 fp16, TFLOP/s
    // (2.5x the forward flops), dense / causal: 128x128x8 208 / 186,
    // 64x128x8 192 / 187, 128x64x8 168 / 153, 64x64x8 138 / 120, 64x64x4
    // 206 / 143. On a layout with inactive blocks, tiles that span blocks
    // of which some are off (SUB: the layout bits gathered per element)
    // need 256 KiB of cp.async buffers at 128, over sm_90's 227 KiB.
    *bm = *bn = D <= 64 && dense ? 128 : 64;
    *nw = 8;
  } else {
    *bm = 32;   // the interpreter: small tiles, many programs
    *bn = 32;
    *nw = 4;
  }
  while (*bm > 16 && S % *bm) *bm /= 2;
  while (*bn > 16 && S % *bn) *bn /= 2;
}

static int ilog2(int x) {
  int n = 0;
  while (x > 1) {
    x >>= 1;
    n++;
  }
  return n;
}

static void defs_common(BlkDefs *d, tj_dtype dt, int64_t D, const AttnPlan *p, int bs, bool range,
                        bool unit_d) {
  blk_def(d, "T", blk_dt(dt));
  blk_def_int(d, "D", (int)D);
  blk_def_int(d, "BM", p->bm);
  blk_def_int(d, "BN", p->bn);
  blk_def_int(d, "LBS", ilog2(bs));
  blk_def_bool(d, "CAUSAL", p->causal);
  blk_def_bool(d, "SUB", p->sub);
  blk_def_bool(d, "RANGE", range);
  blk_def_bool(d, "UNIT_D", unit_d);
}

static tj_status run2(tj_blocks *b, tj_kernel *k, bool gpu, unsigned gx, unsigned gy, const tj_arg *a, int n,
                      void *stream) {
  const unsigned g[3] = { gx, gy, 1 };
  if (gx == 0 || gy == 0) return TJ_OK;
  if (gpu) return tj_kernel_launch(b->ctx, k, g, a, n, stream);
  return tj_kernel_interpret(b->ctx, k, g, a, n);
}

static tj_status check_scale(tj_blocks *b, const char *op, double scale, int64_t D, double *out) {
  if (!isfinite(scale)) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: scale must be finite, got %g", op, scale);
  *out = scale == 0.0 ? 1.0 / sqrt((double)D) : scale;
  return TJ_OK;
}

#define BH_ARGS(a) tj_arg_int((a)->st[0]), tj_arg_int((a)->st[1])
#define S_ARG(a) tj_arg_int((a)->st[2])
#define D_ARG(a) tj_arg_int((a)->st[3])
#define PTR(a) blk_ptr_arg(&(a)->v)

static bool unit_d(AttnT *const *t, int n) {
  for (int i = 0; i < n; i++)
    if (t[i]->st[3] != 1 && t[i]->shape[3] > 1) return false;
  return true;
}

// ---------------------------------------------------------------- forward

tj_status tj_attention_fwd(tj_blocks *b, const DLTensor *q, const DLTensor *k, const DLTensor *v,
                           const tj_attn_layout *layout, double scale, int causal, DLTensor *o,
                           DLTensor *lse, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = "attention";
  AttnT tq, tk, tv, to, tl;
  tj_status st;
  if ((st = attn_view(b, op, "q", q, 4, false, false, &tq)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "k", k, 4, false, false, &tk)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "v", v, 4, false, false, &tv)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "o", o, 4, false, true, &to)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "lse", lse, 3, true, true, &tl)) != TJ_OK) return st;
  AttnT *same[3] = { &tk, &tv, &to };
  for (int i = 0; i < 3; i++) {
    if ((st = same_shape(b, op, same[i], &tq, 4)) != TJ_OK) return st;
    if ((st = same_dtype(b, op, same[i], &tq)) != TJ_OK) return st;
  }
  if ((st = check_lse(b, op, &tl, &tq)) != TJ_OK) return st;
  double sc = 0.0;
  if ((st = check_scale(b, op, scale, tq.shape[3], &sc)) != TJ_OK) return st;
  if (tq.shape[0] == 0 || tq.shape[1] == 0) return TJ_OK;   // nothing to compute, nothing to check against
  if ((st = check_layout(b, op, layout, &tq)) != TJ_OK) return st;
  AttnT *fin[3] = { &tq, &tk, &tv }, *fout[2] = { &to, &tl };
  if ((st = check_disjoint(b, op, fout, 2, fin, 3)) != TJ_OK) return st;
  BlkView *all[5] = { &tq.v, &tk.v, &tv.v, &to.v, &tl.v };
  bool gpu;
  if ((st = blk_device(b, op, all, 5, &gpu)) != TJ_OK) return st;

  tj_attn_layout *l = (tj_attn_layout *)layout;
  int64_t B = tq.shape[0], H = tq.shape[1], S = tq.shape[2], D = tq.shape[3];
  int bm, bn, nw;
  pick_tiles(b, l, gpu, false, causal != 0, B * H, D, S, &bm, &bn, &nw);
  AttnPlan p;
  if ((st = plan_get(b, l, bm, bn, causal != 0, gpu, &p)) != TJ_OK) return st;
  AttnT *ts[4] = { &tq, &tk, &tv, &to };
  BlkDefs d = { .n = 0 };
  defs_common(&d, tq.v.dtype, D, &p, l->bs, p.range, unit_d(ts, 4));
  // A causal layout whose masked tiles are only the diagonal ones, at the
  // 8-warp 128 x 64 tile on wgmma with D = 64: ptxas is told to keep two
  // programs per SM, which fits the masked loop in the 128 registers the
  // clean loop uses anyway (143 otherwise, and one program per SM). H200,
  // B4 H16 S16384 D64 fp16, causal: 400.6 TFLOP/s against 328.3 unbounded,
  // one process (2026-11-30). Nowhere else: D = 128 (mma.sync) and f32
  // (FMA) need 230-240 registers and would spill under the bound, and D =
  // 32 fits two programs without it.
  bool half = tq.v.dtype == TJ_F16 || tq.v.dtype == TJ_BF16;
  if (gpu && blk_has_wgmma(b) && half && D == 64 && causal && !p.sub && bm == 128 && bn == 64 && nw == 8)
    blk_def_int(&d, "min_programs_per_sm", 2);
  tj_kernel *kern;
  if ((st = blk_kernel(b, AT_FILE, blk_src_attention, blk_src_attention_len, "attn_fwd", d.p, d.n, nw, gpu,
                       &kern)) != TJ_OK)
    return st;
  tj_arg a[] = {
    PTR(&tk), PTR(&tv), S_ARG(&tk), S_ARG(&tv), BH_ARGS(&tk), BH_ARGS(&tv),
    PTR(&tq), PTR(&to), S_ARG(&tq), S_ARG(&to), BH_ARGS(&tq), BH_ARGS(&to),
    PTR(&tl), BH_ARGS(&tl), S_ARG(&tl),
    tj_arg_ptr(p.meta, p.meta_n), tj_arg_ptr(p.lut, p.lut_n), tj_arg_ptr(p.lay, p.lay_n),
    tj_arg_int(H), tj_arg_int(p.nrt), tj_arg_int(l->nb), tj_arg_int(l->heads),
    tj_arg_float(sc * 1.4426950408889634),
    D_ARG(&tq), D_ARG(&tk), D_ARG(&tv), D_ARG(&to),
  };
  return run2(b, kern, gpu, (unsigned)p.nrt, (unsigned)(B * H), a, (int)(sizeof a / sizeof a[0]), stream);
}

// ---------------------------------------------------------------- backward

tj_status tj_attention_bwd_workspace_size(tj_blocks *b, const DLTensor *q, size_t *bytes) {
  if (!b) return TJ_ERR_INVALID_ARG;
  if (!bytes) return blk_error(b, TJ_ERR_INVALID_ARG, "tj_attention_bwd_workspace_size: bytes is NULL");
  AttnT tq;
  tj_status st = attn_view(b, "attention_bwd", "q", q, 4, false, false, &tq);
  if (st != TJ_OK) return st;
  *bytes = (size_t)(tq.shape[0] * tq.shape[1] * tq.shape[2]) * 4;
  return TJ_OK;
}

tj_status tj_attention_bwd(tj_blocks *b, const DLTensor *q, const DLTensor *k, const DLTensor *v,
                           const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
                           const tj_attn_layout *layout, double scale, int causal, DLTensor *dq,
                           DLTensor *dk, DLTensor *dv, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = "attention_bwd";
  AttnT tq, tk, tv, to, tl, tg, tdq, tdk, tdv;
  tj_status st;
  if ((st = attn_view(b, op, "q", q, 4, false, false, &tq)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "k", k, 4, false, false, &tk)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "v", v, 4, false, false, &tv)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "o", o, 4, false, false, &to)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "lse", lse, 3, true, false, &tl)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "dout", dout, 4, false, false, &tg)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "dq", dq, 4, false, true, &tdq)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "dk", dk, 4, false, true, &tdk)) != TJ_OK) return st;
  if ((st = attn_view(b, op, "dv", dv, 4, false, true, &tdv)) != TJ_OK) return st;
  AttnT *same[7] = { &tk, &tv, &to, &tg, &tdq, &tdk, &tdv };
  for (int i = 0; i < 7; i++) {
    if ((st = same_shape(b, op, same[i], &tq, 4)) != TJ_OK) return st;
    if ((st = same_dtype(b, op, same[i], &tq)) != TJ_OK) return st;
  }
  if ((st = check_lse(b, op, &tl, &tq)) != TJ_OK) return st;
  double sc = 0.0;
  if ((st = check_scale(b, op, scale, tq.shape[3], &sc)) != TJ_OK) return st;
  if (tq.shape[0] == 0 || tq.shape[1] == 0) return TJ_OK;
  if ((st = check_layout(b, op, layout, &tq)) != TJ_OK) return st;
  AttnT *bin[6] = { &tq, &tk, &tv, &to, &tl, &tg }, *bout[3] = { &tdq, &tdk, &tdv };
  if ((st = check_disjoint(b, op, bout, 3, bin, 6)) != TJ_OK) return st;
  BlkView *all[9] = { &tq.v, &tk.v, &tv.v, &to.v, &tl.v, &tg.v, &tdq.v, &tdk.v, &tdv.v };
  bool gpu;
  if ((st = blk_device(b, op, all, 9, &gpu)) != TJ_OK) return st;

  tj_attn_layout *l = (tj_attn_layout *)layout;
  int64_t B = tq.shape[0], H = tq.shape[1], S = tq.shape[2], D = tq.shape[3];
  int bm, bn, nw;
  pick_tiles(b, l, gpu, true, causal != 0, B * H, D, S, &bm, &bn, &nw);
  AttnPlan p;
  if ((st = plan_get(b, l, bm, bn, causal != 0, gpu, &p)) != TJ_OK) return st;
  AttnT *ts[8] = { &tq, &tk, &tv, &to, &tg, &tdq, &tdk, &tdv };
  bool ud = unit_d(ts, 8);
  BlkDefs d1 = { .n = 0 }, d2 = { .n = 0 };
  defs_common(&d1, tq.v.dtype, D, &p, l->bs, p.range, ud);
  defs_common(&d2, tq.v.dtype, D, &p, l->bs, p.range_t, ud);
  tj_kernel *kdq, *kdkv;
  if ((st = blk_kernel(b, AT_FILE, blk_src_attention, blk_src_attention_len, "attn_bwd_dq", d1.p, d1.n, nw, gpu,
                       &kdq)) != TJ_OK)
    return st;
  if ((st = blk_kernel(b, AT_FILE, blk_src_attention, blk_src_attention_len, "attn_bwd_dkdv", d2.p, d2.n, nw,
                       gpu, &kdkv)) != TJ_OK)
    return st;
  size_t dbytes = (size_t)(B * H * S) * 4;
  void *delta;
  bool owned;
  if ((st = blk_scratch(b, gpu, dbytes, &delta, &owned)) != TJ_OK) return st;
  tj_arg delta_arg = tj_arg_ptr(delta, dbytes);
  tj_arg a1[] = {
    PTR(&tk), PTR(&tv), S_ARG(&tk), S_ARG(&tv), BH_ARGS(&tk), BH_ARGS(&tv),
    PTR(&tq), PTR(&tg), PTR(&tdq), S_ARG(&tq), S_ARG(&tg), S_ARG(&tdq),
    BH_ARGS(&tq), BH_ARGS(&tg), BH_ARGS(&tdq),
    PTR(&tl), BH_ARGS(&tl), S_ARG(&tl), delta_arg,
    PTR(&to), S_ARG(&to), BH_ARGS(&to),
    tj_arg_ptr(p.meta, p.meta_n), tj_arg_ptr(p.lut, p.lut_n), tj_arg_ptr(p.lay, p.lay_n),
    tj_arg_int(H), tj_arg_int(p.nrt), tj_arg_int(l->nb), tj_arg_int(l->heads),
    tj_arg_float(sc * 1.4426950408889634), tj_arg_float(sc),
    D_ARG(&tq), D_ARG(&tk), D_ARG(&tv), D_ARG(&to), D_ARG(&tg), D_ARG(&tdq),
  };
  st = run2(b, kdq, gpu, (unsigned)p.nrt, (unsigned)(B * H), a1, (int)(sizeof a1 / sizeof a1[0]), stream);
  tj_arg a2[] = {
    PTR(&tq), PTR(&tg), S_ARG(&tq), S_ARG(&tg), BH_ARGS(&tq), BH_ARGS(&tg),
    PTR(&tl), BH_ARGS(&tl), S_ARG(&tl), delta_arg,
    PTR(&tk), PTR(&tv), S_ARG(&tk), S_ARG(&tv), BH_ARGS(&tk), BH_ARGS(&tv),
    PTR(&tdk), PTR(&tdv), S_ARG(&tdk), S_ARG(&tdv), BH_ARGS(&tdk), BH_ARGS(&tdv),
    tj_arg_ptr(p.meta_t, p.meta_t_n), tj_arg_ptr(p.lut_t, p.lut_t_n), tj_arg_ptr(p.lay, p.lay_n),
    tj_arg_int(H), tj_arg_int(p.nct), tj_arg_int(S), tj_arg_int(l->nb), tj_arg_int(l->heads),
    tj_arg_float(sc * 1.4426950408889634), tj_arg_float(sc),
    D_ARG(&tq), D_ARG(&tk), D_ARG(&tv), D_ARG(&tg), D_ARG(&tdk), D_ARG(&tdv),
  };
  if (st == TJ_OK) st = run2(b, kdkv, gpu, (unsigned)p.nct, (unsigned)(B * H), a2, (int)(sizeof a2 / sizeof a2[0]), stream);
  if (owned) tj_free(delta);
  return st;
}

// ---------------------------------------------------------------- registry

// tensors (fwd): q, k, v, layout, o, lse; (bwd): q, k, v, o, lse, dout,
// layout, dq, dk, dv. scalars: scale, causal. The layout tensor is an
// optional u8 host array [heads, nb, nb] (compact; NULL: dense, bs = 64 or
// the largest block size that divides S); bs = S / nb.
tj_status blk_attn_call(tj_blocks *b, bool bwd, DLTensor *const *t, const double *s, void *stream) {
  const char *op = bwd ? "attention_bwd" : "attention";
  const DLTensor *q = t[0], *lt = t[bwd ? 6 : 3];
  if (!q || q->ndim != 4 || !q->shape)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: q must be [B, H, S, D]", op);
  int64_t S = q->shape[2];
  int heads = 1, nb;
  const uint8_t *bits = NULL;
  if (lt) {
    bool ok = lt->ndim >= 2 && lt->ndim <= 3 && lt->shape && lt->dtype.code == kDLUInt && lt->dtype.bits == 8 &&
              lt->dtype.lanes == 1 && lt->device.device_type == kDLCPU && lt->data;
    if (ok && lt->strides) {
      int64_t run = 1;
      for (int d = lt->ndim - 1; d >= 0; d--) {
        ok &= lt->shape[d] <= 1 || lt->strides[d] == run;
        run *= lt->shape[d];
      }
    }
    if (!ok)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: layout must be a compact u8 host (kDLCPU) tensor "
                       "[heads, nb, nb] or [nb, nb]", op);
    heads = lt->ndim == 3 ? (int)lt->shape[0] : 1;
    nb = (int)lt->shape[lt->ndim - 1];
    if (lt->shape[lt->ndim - 2] != nb || nb < 1)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: layout must be square in its last two dimensions", op);
    if (S % nb != 0)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: S = %" PRId64 " is not a multiple of the layout's %d blocks",
                       op, S, nb);
    bits = (const uint8_t *)lt->data + lt->byte_offset;
  } else {
    int bs = 128;
    while (bs > 16 && S % bs) bs /= 2;
    nb = (int)(S / bs);
    if (S < 1 || S % bs) nb = 1;
  }
  tj_attn_layout *l;
  tj_status st = tj_attn_layout_create(b, bits, heads, nb, nb > 0 && S > 0 ? (int)(S / nb) : 16, &l);
  if (st != TJ_OK) return st;
  if (bwd) st = tj_attention_bwd(b, t[0], t[1], t[2], t[3], t[4], t[5], l, s[0], s[1] != 0.0, t[7], t[8], t[9],
                                 stream);
  else st = tj_attention_fwd(b, t[0], t[1], t[2], l, s[0], s[1] != 0.0, t[4], t[5], stream);
  // The tables must outlive the kernels that read them.
  if (st == TJ_OK && q->device.device_type != kDLCPU) st = tj_stream_synchronize(b->ctx, stream);
  tj_attn_layout_free(l);
  return st;
}
