/* softmax.c: tj_softmax_fwd / tj_softmax_bwd over blocks/softmax.tj.
 *
 * requires: DLTensors from the caller; produces: validated launches of the
 * register kernel (several short rows per program) or, for rows longer
 * than the register limit, of the looped online kernel.
 *
 * Rows are passed to the kernels as (seq, s_b, s_r) per tensor (see
 * softmax.tj). When neither the causal nor the additive mask needs the
 * position within the sequence and every tensor's rows are evenly spaced,
 * the whole tensor is one sequence (seq = M): the row packing is then free
 * to take any number of rows. Otherwise rows per program is capped by seq
 * (blk_plan_rows, shared with dropout, whose kernels need it); the softmax
 * kernels themselves divide per row and would take any count.
 *
 * The tile config comes from blk_choose_config (tuning.c): on the GPU the
 * autotuner's, benchmarked on this call's arguments the first time a shape
 * bucket is seen (y, resp. dx, on a scratch copy).
 */
#include "blocks_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SM_FILE "blocks/softmax.tj"

// Picks the configuration (tuned on the GPU, the heuristic otherwise),
// compiles req's kernel, or the looped one for rows past the register
// limit, and runs it over the rows. A call the handle has seen (mk, same
// state) reuses the last choice without building the defines (core.c).
static tj_status run_config(tj_blocks *b, const BlkMemoKey *mk, const BlkTuneReq *req, const BlkRowKernels *rk,
                            bool gpu) {
  tj_kernel *k;
  BlkConfig c;
  tj_status st = blk_memo_choose(b, mk, req, rk, gpu, &k, &c);
  if (st != TJ_OK) return st;
  return blk_run(b, k, gpu, blk_grid(&c, req->M), req->args, req->nargs, req->stream);
}

// The variant of a call: what its -D defines say.
typedef struct SmVariant {
  tj_dtype dt, mdt;
  bool log, causal, has_mask, flat, gpu;
} SmVariant;

static uint64_t sm_variant_bits(const SmVariant *v) {
  return (uint64_t)v->dt | (uint64_t)v->mdt << 8 | (uint64_t)v->log << 16 | (uint64_t)v->causal << 17 |
         (uint64_t)v->has_mask << 18 | (uint64_t)v->flat << 19 | (uint64_t)v->gpu << 20;
}

static void fwd_defs(BlkDefs *d, const void *u) {
  const SmVariant *v = u;
  blk_def(d, "T", blk_dt(v->dt));
  blk_def(d, "MT", blk_dt(v->mdt));
  blk_def_bool(d, "LOG", v->log);
  blk_def_bool(d, "CAUSAL", v->causal);
  blk_def_bool(d, "HAS_MASK", v->has_mask);
  blk_def_bool(d, "FLAT", v->flat);
}

static void bwd_defs(BlkDefs *d, const void *u) {
  const SmVariant *v = u;
  blk_def(d, "T", blk_dt(v->dt));
  blk_def_bool(d, "LOG", v->log);
  blk_def_bool(d, "CAUSAL", v->causal);
  blk_def_bool(d, "FLAT", v->flat);
}

tj_status tj_softmax_fwd(tj_blocks *b, const DLTensor *x, DLTensor *y, const tj_softmax_opts *opts,
                         void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = opts && opts->log ? "log_softmax" : "softmax";
  tj_softmax_opts none;
  memset(&none, 0, sizeof none);
  const tj_softmax_opts *o = opts ? opts : &none;
  BlkView vx, vy, vm;
  tj_status st;
  if ((st = blk_view(b, op, "x", x, BLK_FLOATS, &vx)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "y", y, BLK_FLOATS, &vy)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vy, &vx)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vy, &vx)) != TJ_OK) return st;
  bool has_mask = o->mask != NULL;
  memset(&vm, 0, sizeof vm);
  if (has_mask) {
    if ((st = blk_view(b, op, "mask", o->mask, BLK_FLOATS, &vm)) != TJ_OK) return st;
    const DLTensor *m = o->mask;
    // [seq, K] (one mask row per position in the sequence) or a single row
    // [K] / [1, K] added to every row.
    bool ok = vm.K == vx.K && m->ndim <= (x->ndim > 2 ? x->ndim : 2) &&
              (vm.M == 1 || (vm.M == vx.seq && m->shape[m->ndim - 2] == vx.seq));
    if (!ok) {
      char sm[128], sx[128];
      blk_shape_str(m, sm, sizeof sm);
      blk_shape_str(x, sx, sizeof sx);
      return blk_error(b, TJ_ERR_INVALID_ARG,
                       "mask shape %s does not broadcast over x shape %s: it must be [%" PRId64 ", %" PRId64
                       "] or [%" PRId64 "] (leading dims of size 1 allowed)", sm, sx, vx.seq, vx.K, vx.K);
    }
  }
  BlkView *all[3] = { &vx, &vy, has_mask ? &vm : NULL };
  bool gpu;
  if ((st = blk_device(b, op, all, 3, &gpu)) != TJ_OK) return st;
  if (vx.empty) return TJ_OK;

  BlkView *rv[2] = { &vx, &vy };
  bool mask_rows = has_mask && vm.M > 1;
  BlkRows r = blk_plan_rows(rv, 2, o->causal || mask_rows);
  if (gpu) blk_sm_count(b);
  int64_t sxb, sxr, syb, syr;
  blk_row_strides(&r, &vx, &sxb, &sxr);
  blk_row_strides(&r, &vy, &syb, &syr);
  tj_arg a[11] = {
    blk_ptr_arg(&vy), blk_ptr_arg(&vx), has_mask ? blk_ptr_arg(&vm) : tj_arg_ptr(NULL, 0),
    tj_arg_int(vx.M), tj_arg_int(vx.K), tj_arg_int(r.seq),
    tj_arg_int(sxb), tj_arg_int(sxr), tj_arg_int(syb), tj_arg_int(syr),
    tj_arg_int(mask_rows ? vm.s_r : 0),
  };
  SmVariant v = { .dt = vx.dtype, .mdt = has_mask ? vm.dtype : vx.dtype, .log = o->log != 0,
                  .causal = o->causal != 0, .has_mask = has_mask, .flat = r.flat, .gpu = gpu };
  BlkTuneReq req = { .op = BLK_SOFTMAX_FWD, .dt = vx.dtype, .file = SM_FILE, .src = blk_src_softmax,
                     .srclen = blk_src_softmax_len, .kernel = "softmax_fwd",
                     .M = vx.M, .K = vx.K, .rows_cap = r.rows_cap, .args = a, .nargs = 11, .m_arg = 3,
                     .written = 1u << 0, .stream = stream };
  BlkMemoKey mk = { .kernel = req.kernel, .variant = sm_variant_bits(&v), .M = vx.M, .K = vx.K,
                    .rows_cap = r.rows_cap };
  // The online kernels take one row per program and do not declare ROWS.
  BlkRowKernels rk = { .defs = fwd_defs, .u = &v, .looped = "softmax_fwd_online" };
  return run_config(b, &mk, &req, &rk, gpu);
}

tj_status tj_softmax_bwd(tj_blocks *b, const DLTensor *y, const DLTensor *dy, DLTensor *dx,
                         const tj_softmax_opts *opts, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const char *op = opts && opts->log ? "log_softmax_bwd" : "softmax_bwd";
  tj_softmax_opts none;
  memset(&none, 0, sizeof none);
  const tj_softmax_opts *o = opts ? opts : &none;
  BlkView vy, vg, vd;
  tj_status st;
  if ((st = blk_view(b, op, "y", y, BLK_FLOATS, &vy)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "dy", dy, BLK_FLOATS, &vg)) != TJ_OK) return st;
  if ((st = blk_view(b, op, "dx", dx, BLK_FLOATS, &vd)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vg, &vy)) != TJ_OK) return st;
  if ((st = blk_same_shape(b, &vd, &vy)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vg, &vy)) != TJ_OK) return st;
  if ((st = blk_same_dtype(b, &vd, &vy)) != TJ_OK) return st;
  BlkView *all[3] = { &vy, &vg, &vd };
  bool gpu;
  if ((st = blk_device(b, op, all, 3, &gpu)) != TJ_OK) return st;
  if (vy.empty) return TJ_OK;

  BlkRows r = blk_plan_rows(all, 3, o->causal);
  if (gpu) blk_sm_count(b);
  int64_t s[6];
  blk_row_strides(&r, &vy, &s[0], &s[1]);
  blk_row_strides(&r, &vg, &s[2], &s[3]);
  blk_row_strides(&r, &vd, &s[4], &s[5]);
  tj_arg a[12] = {
    blk_ptr_arg(&vd), blk_ptr_arg(&vy), blk_ptr_arg(&vg),
    tj_arg_int(vy.M), tj_arg_int(vy.K), tj_arg_int(r.seq),
    tj_arg_int(s[0]), tj_arg_int(s[1]), tj_arg_int(s[2]), tj_arg_int(s[3]), tj_arg_int(s[4]),
    tj_arg_int(s[5]),
  };
  SmVariant v = { .dt = vy.dtype, .mdt = vy.dtype, .log = o->log != 0, .causal = o->causal != 0,
                  .flat = r.flat, .gpu = gpu };
  BlkTuneReq req = { .op = BLK_SOFTMAX_BWD, .dt = vy.dtype, .file = SM_FILE, .src = blk_src_softmax,
                     .srclen = blk_src_softmax_len, .kernel = "softmax_bwd",
                     .M = vy.M, .K = vy.K, .rows_cap = r.rows_cap, .args = a, .nargs = 12, .m_arg = 3,
                     .written = 1u << 0, .stream = stream };
  BlkMemoKey mk = { .kernel = req.kernel, .variant = sm_variant_bits(&v), .M = vy.M, .K = vy.K,
                    .rows_cap = r.rows_cap };
  BlkRowKernels rk = { .defs = bwd_defs, .u = &v, .looped = "softmax_bwd_online" };
  return run_config(b, &mk, &req, &rk, gpu);
}
