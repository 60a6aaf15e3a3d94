/* norm.c: LayerNorm and RMSNorm, forward and backward, over
 * blocks/layernorm.tj.
 *
 * requires: DLTensors from the caller; produces: validated launches of
 * norm_fwd (norm_fwd3 for rows held as three chunks, core.c's split3), or of
 * norm_bwd (norm_bwd3) followed by norm_bwd_dwdb.
 *
 * The backward pass is split so that it is deterministic without atomics:
 * G programs each own a fixed run of rpp = cdiv(M, G) rows and write their
 * partial column sums of dy * xhat and dy into row p of an f32 scratch
 * ([2, G, K]); the second kernel adds the G rows of each column in a fixed
 * order. G depends only on the shape and the device (about two programs per
 * SM, one for the 16-warp three-chunk kernel), so a given problem on a given
 * GPU with a given tile config always gives the same bits. The autotuner
 * (tuning.c) picks num_warps of both passes' row kernels, never ROWS of the
 * backward one (it sets G); a tuned config is stored, so it too stays the
 * same run to run.
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LN_FILE "blocks/layernorm.tj"

// mean, rstd: f32, compact, shape x.shape[:-1] or [M].
static tj_status stat_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t,
                           const BlkView *vx, BlkView *v) {
  memset(v, 0, sizeof *v);
  if (!t) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
  tj_status st = blk_view(b, op, name, t, BLK_F32, v);
  if (st != TJ_OK) return st;
  const DLTensor *x = vx->t;
  bool ok = t->ndim == 1 && t->shape[0] == vx->M;
  if (!ok && t->ndim == x->ndim - 1) {
    ok = true;
    for (int d = 0; d < t->ndim; d++) ok = ok && t->shape[d] == x->shape[d];
  }
  if (!ok) {
    char s[128], sx[128];
    blk_shape_str(t, s, sizeof s);
    blk_shape_str(x, sx, sizeof sx);
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s shape %s does not match x shape %s: it must be x's shape "
                     "without the last dimension, or [%" PRId64 "]", name, s, sx, vx->M);
  }
  if (t->strides) {
    int64_t run = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
      if (t->shape[d] > 1 && t->strides[d] != run)
        return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: %s must be contiguous; stride[%d] = %" PRId64
                         ", expected %" PRId64, op, name, d, t->strides[d], run);
      run *= t->shape[d] > 1 ? t->shape[d] : 1;
    }
  }
  v->nbytes = (size_t)vx->M * 4;
  return TJ_OK;
}

static tj_status check_k(tj_blocks *b, const char *op, const BlkView *vx) {
  if (vx->K > b->reg_limit && blk_pow2_ceil(vx->K) > 16384)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: rows of %" PRId64 " elements are longer than the "
                     "16384 this block keeps in registers", op, vx->K);
  return TJ_OK;
}

// What a norm kernel's defines say besides the tile (and, with the sizes,
// its memo key). The forward kernels take HAS_B, the backward ones DW, DB.
typedef struct NormVariant {
  tj_dtype dt;
  bool bwd, rms, has_w, has_b, dw, db, flat, gpu;
} NormVariant;

static uint64_t norm_variant_bits(const NormVariant *v) {
  return (uint64_t)v->dt | (uint64_t)v->rms << 8 | (uint64_t)v->has_w << 9 | (uint64_t)v->has_b << 10 |
         (uint64_t)v->dw << 11 | (uint64_t)v->db << 12 | (uint64_t)v->flat << 13 | (uint64_t)v->gpu << 14;
}

static void norm_defs(BlkDefs *d, const void *u) {
  const NormVariant *v = u;
  blk_def(d, "T", blk_dt(v->dt));
  blk_def_bool(d, "RMS", v->rms);
  blk_def_bool(d, "HAS_W", v->has_w);
  if (v->bwd) {
    blk_def_bool(d, "DW", v->dw);
    blk_def_bool(d, "DB", v->db);
  } else {
    blk_def_bool(d, "HAS_B", v->has_b);
  }
  blk_def_bool(d, "FLAT", v->flat);
}

static tj_status norm_fwd(tj_blocks *b, bool rms, const DLTensor *x, const DLTensor *w,
                          const DLTensor *bias, double eps, DLTensor *y, DLTensor *mean,
                          DLTensor *rstd, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = rms ? "rmsnorm" : "layernorm";
  BlkView vx, vy, vw, vb, vm, vr;
  tj_status st;
  if ((st = blk_view(b, op, "x", x, BLK_FLOATS, &vx)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "y", y, BLK_FLOATS, &vy)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vy, &vx)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vy, &vx)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "w", w, &vx, &vw)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "b", bias, &vx, &vb)) != TJ_OK) return st;
  memset(&vm, 0, sizeof vm);
  if (!rms && (st = stat_view(b, op, "mean", mean, &vx, &vm)) != TJ_OK) return st;
  if ((st = stat_view(b, op, "rstd", rstd, &vx, &vr)) != TJ_OK) return st;
  if (!(eps >= 0.0))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: eps must be >= 0, got %g", op, eps);
  if ((st = check_k(b, op, &vx)) != TJ_OK) return st;
  BlkView *all[6] = { &vx, &vy, w ? &vw : NULL, bias ? &vb : NULL, rms ? NULL : &vm, &vr };
  bool gpu;
  if ((st = blk_device(b, op, all, 6, &gpu)) != TJ_OK) return st;
  if (vx.empty) return TJ_OK;

  BlkView *rv[2] = { &vx, &vy };
  BlkRows r = blk_plan_rows(rv, 2, false);
  if (gpu) blk_sm_count(b);
  int64_t sxb, sxr, syb, syr;
  blk_row_strides(&r, &vx, &sxb, &sxr);
  blk_row_strides(&r, &vy, &syb, &syr);
  tj_arg a[14] = {
    blk_ptr_arg(&vy), blk_ptr_arg(&vx), blk_ptr_arg(&vw), blk_ptr_arg(&vb), blk_ptr_arg(&vm),
    blk_ptr_arg(&vr), tj_arg_int(vx.M), tj_arg_int(vx.K), tj_arg_int(r.seq),
    tj_arg_int(sxb), tj_arg_int(sxr), tj_arg_int(syb), tj_arg_int(syr), tj_arg_float(eps),
  };
  // A call seen before (same variant, sizes and handle state) reuses the
  // kernel chosen then (core.c).
  static const char *const kname = "norm_fwd";
  NormVariant v = { .dt = vx.dtype, .rms = rms, .has_w = w != NULL, .has_b = bias != NULL, .flat = r.flat,
                    .gpu = gpu };
  BlkMemoKey mk = { .kernel = kname, .variant = norm_variant_bits(&v), .M = vx.M, .K = vx.K,
                    .rows_cap = r.rows_cap };
  BlkTuneReq req = { .op = BLK_NORM_FWD, .dt = vx.dtype, .file = LN_FILE, .src = blk_src_layernorm,
                     .srclen = blk_src_layernorm_len, .kernel = kname,
                     .M = vx.M, .K = vx.K, .rows_cap = r.rows_cap, .args = a, .nargs = 14, .m_arg = 6,
                     .written = 1u << 0 | 1u << 4 | 1u << 5, .stream = stream };
  BlkRowKernels rk = { .defs = norm_defs, .u = &v, .split3 = "norm_fwd3" };
  tj_kernel *k;
  BlkConfig c;
  if ((st = blk_memo_choose(b, &mk, &req, &rk, gpu, &k, &c)) != TJ_OK) return st;
  return blk_run(b, k, gpu, blk_grid(&c, vx.M), a, 14, stream);
}

tj_status tj_layernorm_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *w, const DLTensor *bias,
                           double eps, DLTensor *y, DLTensor *mean, DLTensor *rstd, void *stream) {
  return norm_fwd(b, false, x, w, bias, eps, y, mean, rstd, stream);
}

tj_status tj_rmsnorm_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *w, double eps, DLTensor *y,
                         DLTensor *rstd, void *stream) {
  return norm_fwd(b, true, x, w, NULL, eps, y, NULL, rstd, stream);
}

tj_status blk_norm_bwd_plan(tj_blocks *b, const BlkView *x, bool gpu, BlkConfig *cfg, int *G,
                            size_t *scratch_bytes) {
  int64_t rows_cap = cfg->rows > 0 ? cfg->rows : INT32_MAX;
  // The SM count first: the tile's ROWS depends on it, and a first call
  // that guessed it would sum dw and db in another order than the next.
  if (gpu) blk_sm_count(b);
  *cfg = blk_pick_config(b, BLK_NORM_BWD, x->dtype, x->M, x->K, rows_cap, gpu);
  int64_t progs = (x->M + cfg->rows - 1) / cfg->rows;
  // About two programs per SM; the 16-warp three-chunk kernel (4096-wide
  // chunks) takes a whole SM's registers (128 a thread), and one per SM
  // measured 10% faster than two waves of them (H200, 2048 x 12288).
  int64_t per_sm = cfg->split3 && cfg->num_warps >= 16 ? 1 : 2;
  int64_t gmax = gpu ? per_sm * (int64_t)blk_sm_count(b) : 3;
  int64_t g = progs < gmax ? progs : gmax;
  if (g < 1) g = 1;
  int64_t rpp = (x->M + g - 1) / g;
  g = (x->M + rpp - 1) / rpp;
  *G = (int)g;
  // The bound for any rows per program: the workspace query does not know
  // the other tensors' strides.
  int64_t gbound = x->M < gmax ? x->M : gmax;
  if (gbound < 1) gbound = 1;
  *scratch_bytes = (size_t)(2 * gbound * x->K * 4);
  return TJ_OK;
}

tj_status tj_norm_bwd_workspace_size(tj_blocks *b, const DLTensor *x, size_t *bytes) {
  if (!b) return TJ_ERR_INVALID_ARG;
  if (!bytes) return blk_error(b, TJ_ERR_INVALID_ARG, "tj_norm_bwd_workspace_size: bytes is NULL");
  *bytes = 0;
  BlkView vx;
  tj_status st = blk_view(b, "norm_bwd", "x", x, BLK_FLOATS, &vx);
  if (st != TJ_OK) return st;
  if (vx.empty) return TJ_OK;
  BlkConfig c = { .rows = 0 };
  int G;
  return blk_norm_bwd_plan(b, &vx, x->device.device_type != kDLCPU, &c, &G, bytes);
}

static const char *const bwd_name = "norm_bwd";
static const char *const dwdb_name = "norm_bwd_dwdb";

// norm_bwd_dwdb: a fixed tile per target (BLOCK_G partial rows by BLOCK_N
// columns, in c's rows and block), 4 warps.
static tj_status build_dwdb(tj_blocks *b, const void *u, tj_kernel **k, BlkConfig *c) {
  const NormVariant *v = u;
  *c = (BlkConfig){ .block = v->gpu ? 64 : 16, .rows = v->gpu ? 32 : 4, .num_warps = 4 };
  BlkDefs d = { .n = 0 };
  blk_def(&d, "T", blk_dt(v->dt));
  blk_def_int(&d, "BLOCK_G", c->rows);
  blk_def_int(&d, "BLOCK_N", c->block);
  blk_def_bool(&d, "DW", v->dw);
  blk_def_bool(&d, "DB", v->db);
  return blk_kernel(b, LN_FILE, blk_src_layernorm, blk_src_layernorm_len, dwdb_name, d.p, d.n, c->num_warps,
                    v->gpu, k);
}

// Its defines depend on the dtype, dw, db and the target alone.
static tj_status dwdb_kernel(tj_blocks *b, const NormVariant *v, tj_kernel **k, BlkConfig *c) {
  NormVariant kv = { .dt = v->dt, .dw = v->dw, .db = v->db, .gpu = v->gpu };
  BlkMemoKey mk = { .kernel = dwdb_name, .variant = norm_variant_bits(&kv) };
  return blk_memo_kernel(b, &mk, build_dwdb, &kv, k, c);
}

static tj_status norm_bwd(tj_blocks *b, bool rms, const DLTensor *dy, const DLTensor *x,
                          const DLTensor *w, const DLTensor *mean, const DLTensor *rstd, DLTensor *dx,
                          DLTensor *dw, DLTensor *db, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = rms ? "rmsnorm_bwd" : "layernorm_bwd";
  BlkView vx, vg, vd, vw, vm, vr, vdw, vdb;
  tj_status st;
  if ((st = blk_view(b, op, "x", x, BLK_FLOATS, &vx)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "dy", dy, BLK_FLOATS, &vg)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "dx", dx, BLK_FLOATS, &vd)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vg, &vx)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vd, &vx)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vg, &vx)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vd, &vx)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "w", w, &vx, &vw)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "dw", dw, &vx, &vdw)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "db", db, &vx, &vdb)) != TJ_OK) return st;
  memset(&vm, 0, sizeof vm);
  if (!rms && (st = stat_view(b, op, "mean", mean, &vx, &vm)) != TJ_OK) return st;
  if ((st = stat_view(b, op, "rstd", rstd, &vx, &vr)) != TJ_OK) return st;
  if ((st = check_k(b, op, &vx)) != TJ_OK) return st;
  BlkView *all[8] = { &vx, &vg, &vd, w ? &vw : NULL, dw ? &vdw : NULL, db ? &vdb : NULL,
                      rms ? NULL : &vm, &vr };
  bool gpu;
  if ((st = blk_device(b, op, all, 8, &gpu)) != TJ_OK) return st;
  bool want_dw = dw != NULL, want_db = db != NULL;
  if (vx.empty && (vx.K == 0 || !(want_dw || want_db))) return TJ_OK;

  BlkView *rv[3] = { &vx, &vg, &vd };
  BlkRows r = { 1, INT32_MAX, true };
  BlkConfig c = { .rows = 1 };
  NormVariant v = { .dt = vx.dtype, .bwd = true, .rms = rms, .has_w = w != NULL, .dw = want_dw, .db = want_db,
                    .gpu = gpu };
  BlkMemoKey mk = { .kernel = bwd_name };
  BlkMemoStamp stamp;
  tj_kernel *k1 = NULL, *k2 = NULL;
  int G = 0;
  size_t bytes;
  if (!vx.empty) {
    r = blk_plan_rows(rv, 3, false);
    v.flat = r.flat;
    mk = (BlkMemoKey){ .kernel = bwd_name, .variant = norm_variant_bits(&v), .M = vx.M, .K = vx.K,
                       .rows_cap = r.rows_cap };
    // The stamp is read before the plan, which may learn the SM count (and
    // reset the memo), so a choice made on the old count is not remembered.
    BlkConfig mc;
    bool hit = blk_memo_get(b, &mk, &k1, &mc, &stamp);
    c.rows = (int)(r.rows_cap < INT32_MAX ? r.rows_cap : 0);
    if ((st = blk_norm_bwd_plan(b, &vx, gpu, &c, &G, &bytes)) != TJ_OK) return st;
    if (hit) c = mc;   // the plan's tile (same key and state), perhaps with the tuner's num_warps
  } else {
    c = blk_pick_config(b, BLK_NORM_BWD, vx.dtype, 1, vx.K, 1, gpu);
  }
  void *part = NULL;
  bool owned = false;
  size_t need = (size_t)2 * (size_t)G * (size_t)vx.K * 4;
  if ((want_dw || want_db) && (st = blk_scratch(b, gpu, need, &part, &owned)) != TJ_OK) return st;

  int64_t s[6] = { 0 };
  if (!vx.empty) {
    blk_row_strides(&r, &vx, &s[0], &s[1]);
    blk_row_strides(&r, &vg, &s[2], &s[3]);
    blk_row_strides(&r, &vd, &s[4], &s[5]);
  }
  int64_t rpp = G > 0 ? (vx.M + G - 1) / G : 0;
  tj_arg a[18] = {
    blk_ptr_arg(&vd), blk_ptr_arg(&vg), blk_ptr_arg(&vx), blk_ptr_arg(&vw), blk_ptr_arg(&vm),
    blk_ptr_arg(&vr), tj_arg_ptr(part, part ? need : 0),
    tj_arg_int(vx.M), tj_arg_int(vx.K), tj_arg_int(r.seq), tj_arg_int(rpp), tj_arg_int(G),
    tj_arg_int(s[0]), tj_arg_int(s[1]), tj_arg_int(s[2]), tj_arg_int(s[3]), tj_arg_int(s[4]),
    tj_arg_int(s[5]),
  };
  if (!vx.empty && !k1) {
    // Only num_warps is tuned here: ROWS fixes G (blk_norm_bwd_plan).
    BlkTuneReq req = { .op = BLK_NORM_BWD, .dt = vx.dtype, .file = LN_FILE, .src = blk_src_layernorm,
                       .srclen = blk_src_layernorm_len, .kernel = bwd_name,
                       .M = vx.M, .K = vx.K, .rows_cap = r.rows_cap, .args = a, .nargs = 18, .m_arg = 11,
                       .written = 1u << 0 | 1u << 6, .stream = stream };
    BlkConfig plan = c;
    BlkRowKernels rk = { .defs = norm_defs, .u = &v, .split3 = "norm_bwd3", .tile = &plan };
    st = blk_row_kernel(b, &req, &rk, gpu, &k1, &c);
    if (st == TJ_OK) blk_memo_put(b, &mk, &stamp, k1, &c);
  }
  BlkConfig cg = { .rows = 1 };   // norm_bwd_dwdb's tile: rows BLOCK_G, block BLOCK_N
  if (st == TJ_OK && (want_dw || want_db)) st = dwdb_kernel(b, &v, &k2, &cg);
  // No rows but dw or db wanted: they are sums over nothing, which the
  // second kernel writes when G = 0.
  if (vx.empty) G = 0;
  if (st == TJ_OK && G > 0) st = blk_run(b, k1, gpu, (unsigned)G, a, 18, stream);
  if (st == TJ_OK && k2) {
    tj_arg a2[5] = {
      blk_ptr_arg(&vdw), blk_ptr_arg(&vdb), tj_arg_ptr(part, need), tj_arg_int(G), tj_arg_int(vx.K),
    };
    st = blk_run(b, k2, gpu, (unsigned)((vx.K + cg.block - 1) / cg.block), a2, 5, stream);
  }
  if (owned) tj_free(part);
  return st;
}

tj_status tj_layernorm_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x, const DLTensor *w,
                           const DLTensor *mean, const DLTensor *rstd, DLTensor *dx, DLTensor *dw,
                           DLTensor *db, void *stream) {
  return norm_bwd(b, false, dy, x, w, mean, rstd, dx, dw, db, stream);
}

tj_status tj_rmsnorm_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x, const DLTensor *w,
                         const DLTensor *rstd, DLTensor *dx, DLTensor *dw, void *stream) {
  return norm_bwd(b, true, dy, x, w, NULL, rstd, dx, dw, NULL, stream);
}
