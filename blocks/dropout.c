/* dropout.c: tj_dropout_fwd / tj_dropout_bwd over blocks/dropout.tj.
 *
 * requires: DLTensors and tj_dropout_opts from the caller; produces:
 * validated launches of dropout_fwd, or of dropout_bwd followed (for dbias)
 * by dropout_dbias.
 *
 * The kernels are elementwise over a [rows, K] view, a program covering
 * ROWS x BLOCK elements per step (see dropout.tj for the tile and the mask).
 * Programs loop over row groups of rpp rows, so the bias is loaded once per
 * program and the setup is amortised (elementwise_groups). With dbias, G
 * row groups of rpp rows each loop over their rows and leave one f32
 * partial row per group and column block,
 * which dropout_dbias adds in a fixed order. G depends only on the shape,
 * the config and the device, so dbias is bit-identical run to run.
 *
 * The mask never depends on the config: the config is free to change (an
 * autotuner may pick it), and tests force several through
 * blk_dropout_force_config to check exactly that.
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DO_FILE "blocks/dropout.tj"

enum { MAX_ROWS = INT32_MAX - (1 << 20) };   // r0 + rpp must not overflow i32 in the kernels

static const char *const act_names[TJ_ACT_COUNT] = {
  "none", "relu", "leaky_relu", "gelu", "gelu_tanh", "squared_relu", "smelu", "star_relu",
};
_Static_assert(sizeof act_names / sizeof act_names[0] == TJ_ACT_COUNT, "one name per activation");

const char *tj_activation_name(tj_activation a) {
  return (unsigned)a < TJ_ACT_COUNT ? act_names[a] : "?";
}

uint64_t tj_dropout_counters(int64_t numel) {
  return numel > 0 ? ((uint64_t)numel + 3) / 4 : 0;
}

void blk_dropout_force_config(tj_blocks *b, const BlkDropCfg *c) {
  pthread_mutex_lock(&b->mu);
  if (c) b->drop_cfg = *c;
  else memset(&b->drop_cfg, 0, sizeof b->drop_cfg);
  blk_memo_reset_locked(b);   // the remembered kernels were built for the old config
  pthread_mutex_unlock(&b->mu);
}

// What the kernels take from the options.
typedef struct DropParams {
  bool drop;          // draw a mask (training and p > 0)
  uint32_t thresh;    // ceil(p * 2^24)
  float scale;        // 1 / (1 - p)
  float a0, a1;       // activation parameters as the kernels take them
} DropParams;

static tj_status check_opts(tj_blocks *b, const char *op, const tj_dropout_opts *o, DropParams *dp) {
  memset(dp, 0, sizeof *dp);
  if (!o) return blk_error(b, TJ_ERR_INVALID_ARG, "%s: opts is NULL", op);
  if (!(o->p >= 0.0 && o->p < 1.0))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: p must be in [0, 1), got %g", op, o->p);
  if ((unsigned)o->act >= TJ_ACT_COUNT)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: unknown activation %d (0 .. %d)", op, (int)o->act,
                     TJ_ACT_COUNT - 1);
  const char *an = act_names[o->act];
  bool uses_a = o->act == TJ_ACT_LEAKY_RELU || o->act == TJ_ACT_SMELU || o->act == TJ_ACT_STAR_RELU;
  if (uses_a && !isfinite(o->act_a))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s needs a finite act_a, got %g", op, an, o->act_a);
  if (o->act == TJ_ACT_STAR_RELU && !isfinite(o->act_b))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: star_relu needs a finite act_b, got %g", op, o->act_b);
  if (o->act == TJ_ACT_SMELU && !(o->act_a > 0.0 && (float)(0.25 / o->act_a) > 0.0f &&
                                  isfinite((float)(0.25 / o->act_a))))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: smelu needs beta = act_a > 0 (and 1 / (4 beta) a "
                     "normal f32), got %g", op, o->act_a);
  dp->drop = o->training && o->p > 0.0;
  // p * 2^24 is exact in double, so the ceiling is the exact threshold on
  // the 24-bit integer (w >> 8).
  dp->thresh = (uint32_t)ceil(o->p * 16777216.0);
  dp->scale = (float)(1.0 / (1.0 - o->p));
  dp->a0 = (float)o->act_a;
  dp->a1 = o->act == TJ_ACT_SMELU ? (float)(0.25 / o->act_a) : (float)o->act_b;
  return TJ_OK;
}

static tj_status check_rows(tj_blocks *b, const char *op, const BlkView *vx) {
  if (vx->M > MAX_ROWS)
    return blk_error(b, TJ_ERR_UNSUPPORTED, "%s: x has %" PRId64 " rows; at most %d are supported", op,
                     vx->M, MAX_ROWS);
  return TJ_OK;
}

static int vec_of(tj_dtype dt) { return dt == TJ_F32 ? 4 : 8; }

// Columns per tile for rows of K: the whole (power-of-two) row when it fits
// in `tile`, else the block among tile/4 .. tile that pads the row least.
static int pick_block(int64_t K, int vec, int tile) {
  int64_t kp = blk_pow2_ceil(K > vec ? K : vec);
  if (kp <= tile) return (int)kp;
  int best = tile;
  int64_t best_pad = INT64_MAX;
  for (int blk = tile; blk >= tile / 4 && blk >= vec; blk /= 2) {
    int64_t pad = (K + blk - 1) / blk * blk - K;
    if (pad < best_pad) best = blk, best_pad = pad;
  }
  return best;
}

// The heuristic (or the forced config): ~4096 elements per program step on
// the GPU, one 16-byte run (vec) per thread four times over; fewer rows per
// step while that would leave fewer than ~4 programs per SM. The
// interpreter gets small steps (its cost grows with the tile).
static BlkDropCfg pick_config(tj_blocks *b, tj_dtype dt, int64_t M, int64_t K, int64_t rows_cap, bool gpu) {
  pthread_mutex_lock(&b->mu);
  BlkDropCfg c = b->drop_cfg;
  pthread_mutex_unlock(&b->mu);
  int64_t mp2 = blk_pow2_ceil(M > 0 ? M : 1);
  if (c.block > 0) {
    if (c.rows > rows_cap) c.rows = (int)rows_cap;
    return c;
  }
  c.vec = vec_of(dt);
  int tile = gpu ? 4096 : 1024;
  c.block = pick_block(K, c.vec, tile);
  int64_t rows = tile / c.block;
  if (rows > mp2) rows = mp2;
  if (gpu) {
    int64_t ncb = (K + c.block - 1) / c.block;
    int64_t want = 4 * (int64_t)blk_sm_count(b);
    while (rows > 1 && (M + rows - 1) / rows * ncb < want) rows /= 2;
  }
  if (rows > rows_cap) rows = rows_cap;
  c.rows = (int)(rows < 1 ? 1 : rows);
  int64_t groups = (int64_t)c.rows * c.block / c.vec;
  int64_t nw = groups / (32 * 4);
  c.num_warps = nw < 1 ? 1 : nw > 8 ? 8 : (int)nw;
  return c;
}

static int ilog2i(int v) {
  int n = 0;
  while (v > 1) v >>= 1, n++;
  return n;
}

// What a dropout kernel's defines say besides its tile, which pick_config
// derives from the sizes and the handle state (the forced config, the SM
// count): the memo key of drop_kernel.
typedef struct DropVariant {
  const char *kernel;   // drop_fwd or drop_bwd
  tj_dtype dt;
  tj_activation act;
  bool has_bias, drop, flat, dbias, gpu;   // dbias: dropout_bwd's DBIAS
  int64_t M, K, rows_cap;
} DropVariant;

static const char *const drop_fwd = "dropout_fwd";
static const char *const drop_bwd = "dropout_bwd";
static const char *const drop_dbias = "dropout_dbias";

static uint64_t drop_variant_bits(const DropVariant *v) {
  return (uint64_t)v->dt | (uint64_t)v->act << 8 | (uint64_t)v->has_bias << 16 | (uint64_t)v->drop << 17 |
         (uint64_t)v->flat << 18 | (uint64_t)v->dbias << 19 | (uint64_t)v->gpu << 20;
}

// The tile config of v and its kernel (a miss of drop_kernel).
static tj_status build_drop(tj_blocks *b, const void *u, tj_kernel **k, BlkConfig *bc) {
  const DropVariant *v = u;
  BlkDropCfg c = pick_config(b, v->dt, v->M, v->K, v->rows_cap, v->gpu);
  BlkDefs d = { .n = 0 };
  blk_def(&d, "T", blk_dt(v->dt));
  blk_def_int(&d, "BLOCK", c.block);
  blk_def_int(&d, "ROWS", c.rows);
  blk_def_int(&d, "VEC", c.vec);
  blk_def_int(&d, "BGS", ilog2i(c.block / c.vec));
  blk_def_int(&d, "ACT", (int)v->act);
  blk_def_bool(&d, "HAS_BIAS", v->has_bias);
  blk_def_bool(&d, "DROP", v->drop);
  blk_def_bool(&d, "K4", v->K % 4 == 0 && !c.per_element);
  blk_def_bool(&d, "FLAT", v->flat);
  if (v->kernel == drop_bwd) blk_def_bool(&d, "DBIAS", v->dbias);
  // What the launch needs of the tile: block and rows (vec and per_element
  // only enter the defines).
  *bc = (BlkConfig){ .block = c.block, .rows = c.rows, .num_warps = c.num_warps };
  return blk_kernel(b, DO_FILE, blk_src_dropout, blk_src_dropout_len, v->kernel, d.p, d.n, c.num_warps, v->gpu,
                    k);
}

// The kernel of v and its tile, remembered by the handle (core.c).
static tj_status drop_kernel(tj_blocks *b, const DropVariant *v, tj_kernel **k, BlkConfig *c) {
  BlkMemoKey mk = { .kernel = v->kernel, .variant = drop_variant_bits(v), .M = v->M, .K = v->K,
                    .rows_cap = v->rows_cap };
  return blk_memo_kernel(b, &mk, build_drop, v, k, c);
}

// dropout_dbias: a fixed tile per target (BLOCK_G partial rows by BLOCK_N
// columns, in c's rows and block).
static tj_status build_dbias(tj_blocks *b, const void *u, tj_kernel **k, BlkConfig *c) {
  const DropVariant *v = u;
  *c = (BlkConfig){ .block = v->gpu ? 32 : 16, .rows = v->gpu ? 128 : 4, .num_warps = v->gpu ? 8 : 4 };
  BlkDefs d = { .n = 0 };
  blk_def(&d, "T", blk_dt(v->dt));
  blk_def_int(&d, "BLOCK_G", c->rows);
  blk_def_int(&d, "BLOCK_N", c->block);
  return blk_kernel(b, DO_FILE, blk_src_dropout, blk_src_dropout_len, drop_dbias, d.p, d.n, c->num_warps,
                    v->gpu, k);
}

// Its defines depend on the dtype and the target alone.
static tj_status dbias_kernel(tj_blocks *b, tj_dtype dt, bool gpu, tj_kernel **k, BlkConfig *c) {
  DropVariant v = { .kernel = drop_dbias, .dt = dt, .gpu = gpu };
  BlkMemoKey mk = { .kernel = drop_dbias, .variant = drop_variant_bits(&v) };
  return blk_memo_kernel(b, &mk, build_dbias, &v, k, c);
}

// Row groups of rpp rows (a multiple of rows), and their count, for `groups`
// wanted groups (0: one step per program).
static void plan_groups(int64_t M, int rows, int64_t ncb, int64_t groups, int64_t *rpp, int64_t *G) {
  int64_t steps = (M + rows - 1) / rows;
  int64_t g = groups > 0 ? (groups < steps ? groups : steps) : steps;
  if (g < 1) g = 1;
  int64_t s = (steps + g - 1) / g;
  // The grid is G * ncb programs in one dimension.
  while ((steps + s - 1) / s * ncb > INT32_MAX) s *= 2;
  *rpp = s * rows;
  *G = (M + *rpp - 1) / *rpp;
}

// Row groups for per_sm programs per SM, over ncb column blocks (3 groups on
// the interpreter, so the CPU tests exercise the loops and the two-stage
// dbias sum).
static int64_t row_groups(tj_blocks *b, int64_t ncb, bool gpu, int per_sm) {
  int64_t target = gpu ? per_sm * (int64_t)blk_sm_count(b) : 3;
  int64_t g = (target + ncb - 1) / ncb;
  return g < 1 ? 1 : g;
}

// The dbias backward pass: ~8 programs per SM.
static int64_t dbias_groups(tj_blocks *b, int64_t ncb, bool gpu) { return row_groups(b, ncb, gpu, 8); }

// A pass without dbias. Programs loop over row groups: a program loads its
// bias tile once, before its loop over rows (with one step per program
// every step would read the bias again, from L2), and a few steps per
// program amortise its setup. ~64 groups per SM: the H200, fp16 32768 x
// 4096 gelu, p = 0.1, GB/s in one run (before d441789, which took 2579 to
// 2887): with bias 2469 (one step per program), 2476 (8/SM), 2534 (16),
// 2556 (32), 2579 (64), 2566 (128); without bias 2572 (16), 2621 (32).
static int64_t elementwise_groups(tj_blocks *b, int64_t ncb, bool gpu) { return row_groups(b, ncb, gpu, 64); }

static tj_arg seed_arg(uint64_t v) { return tj_arg_int((int64_t)v); }

tj_status tj_dropout_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *bias, DLTensor *y,
                         const tj_dropout_opts *opts, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = "dropout";
  DropParams dp;
  BlkView vx, vy, vb;
  tj_status st;
  if ((st = blk_view(b, op, "x", x, BLK_FLOATS, &vx)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "y", y, BLK_FLOATS, &vy)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vy, &vx)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vy, &vx)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "bias", bias, &vx, &vb)) != TJ_OK) return st;
  if ((st = check_opts(b, op, opts, &dp)) != TJ_OK) return st;
  if ((st = check_rows(b, op, &vx)) != TJ_OK) return st;
  BlkView *all[3] = { &vx, &vy, bias ? &vb : NULL };
  bool gpu;
  if ((st = blk_device(b, op, all, 3, &gpu)) != TJ_OK) return st;
  if (vx.empty) return TJ_OK;

  BlkView *rv[2] = { &vx, &vy };
  BlkRows r = blk_plan_rows(rv, 2, false);
  DropVariant v = { .kernel = drop_fwd, .dt = vx.dtype, .act = opts->act, .has_bias = bias != NULL,
                    .drop = dp.drop, .flat = r.flat, .gpu = gpu, .M = vx.M, .K = vx.K, .rows_cap = r.rows_cap };
  tj_kernel *k;
  BlkConfig c;
  if ((st = drop_kernel(b, &v, &k, &c)) != TJ_OK) return st;
  int64_t ncb = (vx.K + c.block - 1) / c.block, rpp, G;
  plan_groups(vx.M, c.rows, ncb, elementwise_groups(b, ncb, gpu), &rpp, &G);
  int64_t sxb, sxr, syb, syr;
  blk_row_strides(&r, &vx, &sxb, &sxr);
  blk_row_strides(&r, &vy, &syb, &syr);
  tj_arg a[19] = {
    blk_ptr_arg(&vy), blk_ptr_arg(&vx), blk_ptr_arg(&vb),
    tj_arg_int(vx.M), tj_arg_int(vx.K), tj_arg_int(r.seq), tj_arg_int(rpp), tj_arg_int(ncb),
    tj_arg_int(sxb), tj_arg_int(sxr), tj_arg_int(syb), tj_arg_int(syr),
    seed_arg(opts->seed), seed_arg(opts->offset), tj_arg_int(dp.thresh), tj_arg_float(dp.scale),
    tj_arg_float(dp.a0), tj_arg_float(dp.a1), tj_arg_float(0.0),
  };
  return blk_run(b, k, gpu, (unsigned)(G * ncb), a, 19, stream);
}

// The dbias plan for x's shape (used by the call and the workspace query).
static void dbias_plan(tj_blocks *b, const BlkView *vx, const BlkConfig *c, bool gpu, int64_t *rpp,
                       int64_t *G, int64_t *ncb) {
  *ncb = (vx->K + c->block - 1) / c->block;
  plan_groups(vx->M, c->rows, *ncb, dbias_groups(b, *ncb, gpu), rpp, G);
}

tj_status tj_dropout_bwd_workspace_size(tj_blocks *b, const DLTensor *x, size_t *bytes) {
  if (!b) return TJ_ERR_INVALID_ARG;
  if (!bytes) return blk_error(b, TJ_ERR_INVALID_ARG, "tj_dropout_bwd_workspace_size: bytes is NULL");
  *bytes = 0;
  BlkView vx;
  tj_status st = blk_view(b, "dropout_bwd", "x", x, BLK_FLOATS, &vx);
  if (st != TJ_OK) return st;
  if (vx.empty) return TJ_OK;
  bool gpu = x->device.device_type != kDLCPU;
  BlkDropCfg c = pick_config(b, vx.dtype, vx.M, vx.K, INT32_MAX, gpu);
  // G is at most the wanted group count whatever rows per step the other
  // tensors' strides allow (which this query does not know).
  int64_t ncb = (vx.K + c.block - 1) / c.block;
  int64_t g = dbias_groups(b, ncb, gpu);
  if (g > vx.M) g = vx.M;
  *bytes = (size_t)g * (size_t)vx.K * 4;
  return TJ_OK;
}

tj_status tj_dropout_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x, const DLTensor *bias,
                         DLTensor *dx, DLTensor *dbias, const tj_dropout_opts *opts, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = "dropout_bwd";
  DropParams dp;
  BlkView vg, vx, vd, vb, vdb;
  tj_status st;
  if ((st = blk_view(b, op, "dy", dy, BLK_FLOATS, &vg)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "dx", dx, BLK_FLOATS, &vd)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vd, &vg)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vd, &vg)) != TJ_OK) return st;
  if ((st = check_opts(b, op, opts, &dp)) != TJ_OK) return st;
  bool need_x = opts->act != TJ_ACT_NONE;
  memset(&vx, 0, sizeof vx);
  if (x || need_x) {
    if ((st = blk_view(b, op, "x", x, BLK_FLOATS, &vx)) != TJ_OK) return st;
    if ((st = blk_same_shape(b, &vx, &vg)) != TJ_OK) return st;
    if ((st = blk_same_dtype(b, &vx, &vg)) != TJ_OK) return st;
  }
  if ((st = blk_vec_view(b, op, "bias", bias, &vg, &vb)) != TJ_OK) return st;
  if ((st = blk_vec_view(b, op, "dbias", dbias, &vg, &vdb)) != TJ_OK) return st;
  if ((st = check_rows(b, op, &vg)) != TJ_OK) return st;
  BlkView *all[5] = { &vg, &vd, x ? &vx : NULL, bias ? &vb : NULL, dbias ? &vdb : NULL };
  bool gpu;
  if ((st = blk_device(b, op, all, 5, &gpu)) != TJ_OK) return st;
  bool want_db = dbias != NULL;
  if (vg.empty && (vg.K == 0 || !want_db)) return TJ_OK;

  // x is not read without an activation: its view does not enter the plan.
  BlkView *rv[3] = { &vg, &vd, &vx };
  BlkRows r = { 1, INT32_MAX, true };
  tj_kernel *k1 = NULL, *k2 = NULL;
  BlkConfig c;
  int64_t rpp = 0, G = 0, ncb = 0;
  if (!vg.empty) {
    r = blk_plan_rows(rv, need_x ? 3 : 2, false);
    DropVariant v = { .kernel = drop_bwd, .dt = vg.dtype, .act = opts->act, .has_bias = bias != NULL,
                      .drop = dp.drop, .flat = r.flat, .dbias = want_db, .gpu = gpu, .M = vg.M, .K = vg.K,
                      .rows_cap = r.rows_cap };
    if ((st = drop_kernel(b, &v, &k1, &c)) != TJ_OK) return st;
    ncb = (vg.K + c.block - 1) / c.block;
    if (want_db) dbias_plan(b, &vg, &c, gpu, &rpp, &G, &ncb);
    else plan_groups(vg.M, c.rows, ncb, elementwise_groups(b, ncb, gpu), &rpp, &G);
  }
  void *part = NULL;
  bool owned = false;
  size_t need = want_db ? (size_t)G * (size_t)vg.K * 4 : 0;
  if (need && (st = blk_scratch(b, gpu, need, &part, &owned)) != TJ_OK) return st;

  BlkConfig cd = { .block = 1 };   // dropout_dbias's tile
  if (want_db) st = dbias_kernel(b, vg.dtype, gpu, &k2, &cd);
  if (st == TJ_OK && k1) {
    int64_t s[6] = { 0 };
    blk_row_strides(&r, &vd, &s[0], &s[1]);
    blk_row_strides(&r, &vg, &s[2], &s[3]);
    if (need_x) blk_row_strides(&r, &vx, &s[4], &s[5]);
    tj_arg a[23] = {
      blk_ptr_arg(&vd), blk_ptr_arg(&vg), blk_ptr_arg(&vx), blk_ptr_arg(&vb),
      tj_arg_ptr(part, need),
      tj_arg_int(vg.M), tj_arg_int(vg.K), tj_arg_int(r.seq), tj_arg_int(rpp), tj_arg_int(ncb),
      tj_arg_int(s[0]), tj_arg_int(s[1]), tj_arg_int(s[2]), tj_arg_int(s[3]), tj_arg_int(s[4]),
      tj_arg_int(s[5]),
      seed_arg(opts->seed), seed_arg(opts->offset), tj_arg_int(dp.thresh), tj_arg_float(dp.scale),
      tj_arg_float(dp.a0), tj_arg_float(dp.a1), tj_arg_float(0.0),
    };
    st = blk_run(b, k1, gpu, (unsigned)(G * ncb), a, 23, stream);
  }
  if (st == TJ_OK && k2) {
    tj_arg a2[4] = { blk_ptr_arg(&vdb), tj_arg_ptr(part, need), tj_arg_int(G), tj_arg_int(vg.K) };
    st = blk_run(b, k2, gpu, (unsigned)((vg.K + cd.block - 1) / cd.block), a2, 4, stream);
  }
  if (owned) tj_free(part);
  return st;
}
