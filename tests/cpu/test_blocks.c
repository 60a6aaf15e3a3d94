/* test_blocks.c: the block library (blocks/) through the interpreter.
 *
 * Every block and variant runs on kDLCPU tensors, so through
 * tj_kernel_interpret with bounds-checked buffers, and is compared with the
 * double-precision references of blocks_ref.h at the tolerance of ref_tol
 * (f32 2e-5, f16 2e-3, bf16 1.6e-2, relative with a floor at 5% of the
 * tensor's largest value). Shapes are small (the interpreter is slow): K =
 * 1, 3, 1000; M = 1; rows with stride > K; batch-strided views. The looped
 * (online) softmax kernels are reached by lowering the register limit.
 *
 * The "tuning" case checks the GPU autotuning of the tile configs without a
 * GPU: the candidate rule and the key buckets directly, and the whole path
 * (tuner, pruning, choice, disk store, fallback) with the device identity
 * set by hand and the benchmark replaced by a hook (autotune/tune.h), the
 * candidates still compiled to PTX for real.
 */
#define _GNU_SOURCE
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autotune/tune.h"
#include "blocks/blocks_int.h"
#include "blocks_ref.h"
#include "blocks_fixture.h"
#include "testutil.h"

static void setup(void) { fixture_open(); }
static void teardown(void) { fixture_close(); }

static const tj_dtype dtypes[] = { TJ_F32, TJ_F16, TJ_BF16 };

static void check_close_scaled(const HostT *got, const double *want, int64_t m, int64_t k, tj_dtype dt,
                               const char *what, double scale_min) {
  double e = ref_err_scaled(got, want, m, k, scale_min);
  ck_assert_msg(e <= ref_tol(dt), "%s (%s, %lld x %lld): error %g > %g", what, tj_dtype_name(dt),
                (long long)m, (long long)k, e, ref_tol(dt));
}

static void check_close(const HostT *got, const double *want, int64_t m, int64_t k, tj_dtype dt,
                        const char *what) {
  check_close_scaled(got, want, m, k, dt, what, 0.0);
}

static void norm_case(tj_dtype dt, int rms, int64_t M, int64_t K, int64_t pad, int has_w, int has_b);

// ---------------------------------------------------------------- softmax

// x of shape [B, S, K] (rows padded to K + pad), y compact; every variant.
static void softmax_case(tj_dtype dt, int64_t B, int64_t S, int64_t K, int64_t pad, int log_, int causal,
                         int with_mask) {
  HostT x, y, mask;
  int64_t shape[3] = { B, S, K };
  int64_t xs[3] = { S * (K + pad), K + pad, 1 };
  host_init(&x, dt, 3, shape, xs);
  host_init(&y, dt, 3, shape, NULL);
  host_fill(&x, 17 + (uint64_t)K, -4.0, 4.0);
  int64_t mshape[2] = { S, K };
  if (with_mask) {
    host_init(&mask, TJ_F32, 2, mshape, NULL);
    host_fill(&mask, 5, -2.0, 2.0);
  }
  tj_softmax_opts o = { .log = log_, .causal = causal, .mask = with_mask ? &mask.t : NULL };
  OK(tj_softmax_fwd(blk, &x.t, &y.t, &o, NULL));
  double *want = malloc(sizeof(double) * (size_t)(B * S * K));
  ref_softmax(&x, with_mask ? &mask : NULL, log_, causal, want);
  char what[96];
  snprintf(what, sizeof what, "softmax log=%d causal=%d mask=%d pad=%lld", log_, causal, with_mask,
           (long long)pad);
  check_close(&y, want, B * S, K, dt, what);

  // Backward from the kernel's own y.
  HostT dy, dx;
  host_init(&dy, dt, 3, shape, NULL);
  host_init(&dx, dt, 3, shape, xs);
  host_fill(&dy, 99, -1.0, 1.0);
  OK(tj_softmax_bwd(blk, &y.t, &dy.t, &dx.t, &o, NULL));
  ref_softmax_bwd(&y, &dy, log_, causal, want);
  snprintf(what, sizeof what, "softmax_bwd log=%d causal=%d", log_, causal);
  check_close(&dx, want, B * S, K, dt, what);
  free(want);
  host_free(&x);
  host_free(&y);
  host_free(&dy);
  host_free(&dx);
  if (with_mask) host_free(&mask);
}

START_TEST(softmax_register_kernel) {
  static const int64_t ks[] = { 1, 3, 1000 };
  for (int d = 0; d < 3; d++)
    for (int i = 0; i < 3; i++) {
      softmax_case(dtypes[d], 2, 3, ks[i], 0, 0, 0, 0);
      softmax_case(dtypes[d], 2, 3, ks[i], 5, 1, 0, 0);
      softmax_case(dtypes[d], 2, 3, ks[i], 0, 0, 1, 0);
      softmax_case(dtypes[d], 1, 3, ks[i], 3, 0, 0, 1);
      softmax_case(dtypes[d], 2, 3, ks[i], 0, 1, 1, 1);
    }
}
END_TEST

START_TEST(softmax_looped_kernel) {
  blk_set_reg_limit(blk, 64);   // rows of more than 64 use the online kernels (chunks of 64)
  for (int d = 0; d < 3; d++) {
    softmax_case(dtypes[d], 1, 2, 1000, 0, 0, 0, 0);
    softmax_case(dtypes[d], 1, 2, 1000, 7, 1, 0, 0);
    softmax_case(dtypes[d], 2, 3, 200, 0, 0, 1, 1);
    softmax_case(dtypes[d], 1, 3, 130, 0, 1, 1, 0);
  }
  bool fwd = false, bwd = false;
  for (int i = 0; i < blk->nkernels; i++) {
    fwd |= strstr(blk->kernels[i].key, "|softmax_fwd_online|") != NULL;
    bwd |= strstr(blk->kernels[i].key, "|softmax_bwd_online|") != NULL;
  }
  ck_assert(fwd && bwd);
}
END_TEST

// The long rows of the GPU list, a few rows each: 4096 and 12289 in
// registers (tiles of 4096 and 16384), and 12289 through the looped softmax
// kernels.
START_TEST(softmax_long_rows) {
  softmax_case(TJ_F16, 1, 2, 4096, 0, 0, 0, 0);
  softmax_case(TJ_BF16, 1, 2, 12289, 3, 1, 1, 0);
  norm_case(TJ_F16, 0, 2, 4096, 0, 1, 1);
  norm_case(TJ_BF16, 0, 2, 12289, 0, 1, 1);
  norm_case(TJ_F32, 1, 2, 12289, 0, 1, 0);
  // The three-chunk layernorm/rmsnorm kernels, forward and backward
  // (norm_fwd3, norm_bwd3: a tile over 4096 padded by a quarter or more):
  // a masked third chunk, padded row strides, RMS, no w or b, K = 12288 in
  // whole chunks, and K = 2 * 4096 + 1, one column into the third.
  norm_case(TJ_F16, 0, 3, 5000, 24, 1, 1);
  norm_case(TJ_F32, 1, 3, 5000, 8, 1, 0);
  norm_case(TJ_BF16, 0, 2, 12288, 0, 0, 1);
  norm_case(TJ_F32, 0, 2, 8193, 0, 1, 0);
  // Seven rows: the interpreter's three backward programs walk several rows
  // each through norm_bwd3's loop; RMS without w; K = 6144 in whole chunks.
  norm_case(TJ_F32, 1, 7, 5000, 0, 0, 0);
  norm_case(TJ_F16, 0, 7, 6144, 5, 1, 1);
  for (int op = BLK_NORM_FWD; op <= BLK_NORM_BWD; op++) {
    BlkConfig c = blk_pick_config(blk, (BlkOp)op, TJ_F16, 3, 5000, INT32_MAX, false);
    ck_assert(c.split3 && !c.looped && c.block == 2048 && c.rows == 1);
    c = blk_pick_config(blk, (BlkOp)op, TJ_F16, 2048, 12288, INT32_MAX, true);
    ck_assert(c.split3 && c.block == 4096);
    ck_assert_int_eq(c.num_warps, op == BLK_NORM_FWD ? 8 : 16);
    // Past three quarters of the tile, or at most 4096: one padded tile.
    ck_assert(!blk_pick_config(blk, (BlkOp)op, TJ_F16, 3, 12289, INT32_MAX, true).split3);
    ck_assert(!blk_pick_config(blk, (BlkOp)op, TJ_F16, 3, 3000, INT32_MAX, true).split3);
  }
  blk_set_reg_limit(blk, 4096);
  softmax_case(TJ_F32, 1, 2, 12289, 0, 0, 1, 1);
}
END_TEST

// One row: x of shape [K] (1-D) and [1, K].
START_TEST(softmax_single_row) {
  for (int d = 0; d < 3; d++) {
    HostT x, y;
    int64_t shape[1] = { 1000 };
    host_init(&x, dtypes[d], 1, shape, NULL);
    host_init(&y, dtypes[d], 1, shape, NULL);
    host_fill(&x, 3, -8.0, 8.0);
    OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
    double want[1000];
    ref_softmax(&x, NULL, 0, 0, want);
    check_close(&y, want, 1, 1000, dtypes[d], "softmax [1000]");
    host_free(&x);
    host_free(&y);
    softmax_case(dtypes[d], 1, 1, 1000, 0, 1, 0, 0);
  }
}
END_TEST

// Rows of a batch that do not flatten to one stride: [2, 3, K] with padded
// rows and a batch gap, so row packing must wrap into the next batch
// (rows per program capped at seq) and the causal index restart.
START_TEST(softmax_batch_strided_view) {
  for (int d = 0; d < 3; d++) {
    int64_t K = 40;
    HostT x, y;
    int64_t shape[3] = { 3, 5, K }, xs[3] = { 5 * (K + 3) + 11, K + 3, 1 }, ys[3] = { 5 * K + 7, K, 1 };
    host_init(&x, dtypes[d], 3, shape, xs);
    host_init(&y, dtypes[d], 3, shape, ys);
    host_fill(&x, 8, -3.0, 3.0);
    for (int causal = 0; causal < 2; causal++) {
      tj_softmax_opts o = { .causal = causal };
      OK(tj_softmax_fwd(blk, &x.t, &y.t, &o, NULL));
      double want[3 * 5 * 40];
      ref_softmax(&x, NULL, 0, causal, want);
      check_close(&y, want, 15, K, dtypes[d], "softmax batch-strided");
    }
    host_free(&x);
    host_free(&y);
  }
}
END_TEST

START_TEST(softmax_in_place_and_row_mask) {
  HostT x, mask;
  int64_t shape[2] = { 6, 100 }, mshape[1] = { 100 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&mask, TJ_F16, 1, mshape, NULL);
  host_fill(&x, 4, -2.0, 2.0);
  host_fill(&mask, 6, -1.0, 1.0);
  double want[600];
  ref_softmax(&x, &mask, 0, 0, want);
  tj_softmax_opts o = { .mask = &mask.t };
  OK(tj_softmax_fwd(blk, &x.t, &x.t, &o, NULL));
  check_close(&x, want, 6, 100, TJ_F16, "softmax in place, [K] mask");
  host_free(&x);
  host_free(&mask);
}
END_TEST

// ---------------------------------------------------------------- norms

static void norm_case(tj_dtype dt, int rms, int64_t M, int64_t K, int64_t pad, int has_w, int has_b) {
  HostT x, y, w, b, mean, rstd;
  int64_t shape[2] = { M, K }, xs[2] = { K + pad, 1 }, kshape[1] = { K }, mshape[1] = { M };
  host_init(&x, dt, 2, shape, xs);
  host_init(&y, dt, 2, shape, NULL);
  host_init(&w, dt, 1, kshape, NULL);
  host_init(&b, dt, 1, kshape, NULL);
  host_init(&mean, TJ_F32, 1, mshape, NULL);
  host_init(&rstd, TJ_F32, 1, mshape, NULL);
  host_fill(&x, 21 + (uint64_t)K, -2.0, 3.0);
  host_fill(&w, 22, 0.5, 1.5);
  host_fill(&b, 23, -0.5, 0.5);
  const DLTensor *wt = has_w ? &w.t : NULL, *bt = has_b ? &b.t : NULL;
  double eps = 1e-5;
  if (rms) OK(tj_rmsnorm_fwd(blk, &x.t, wt, eps, &y.t, &rstd.t, NULL));
  else OK(tj_layernorm_fwd(blk, &x.t, wt, bt, eps, &y.t, &mean.t, &rstd.t, NULL));
  double *want = malloc(sizeof(double) * (size_t)(M * K));
  double *wm = malloc(sizeof(double) * (size_t)M), *wr = malloc(sizeof(double) * (size_t)M);
  ref_norm(&x, has_w ? &w : NULL, (has_b && !rms) ? &b : NULL, eps, rms, want, wm, wr);
  char what[96];
  snprintf(what, sizeof what, "%s w=%d b=%d pad=%lld", rms ? "rmsnorm" : "layernorm", has_w, has_b,
           (long long)pad);
  check_close(&y, want, M, K, dt, what);
  for (int64_t r = 0; r < M; r++) {
    double gr = host_get_at(&rstd, r);
    ck_assert_msg(fabs(gr - wr[r]) <= 1e-4 * wr[r], "rstd[%lld] = %g, want %g", (long long)r, gr, wr[r]);
    if (!rms) {
      double gm = host_get_at(&mean, r);
      ck_assert_msg(fabs(gm - wm[r]) <= 1e-5 * (fabs(wm[r]) + 1.0), "mean[%lld] = %g, want %g",
                    (long long)r, gm, wm[r]);
    }
  }

  // Backward, against the reference from the saved statistics.
  HostT dy, dx, dw, db;
  host_init(&dy, dt, 2, shape, NULL);
  host_init(&dx, dt, 2, shape, xs);
  host_init(&dw, dt, 1, kshape, NULL);
  host_init(&db, dt, 1, kshape, NULL);
  host_fill(&dy, 31, -1.0, 1.0);
  if (rms) OK(tj_rmsnorm_bwd(blk, &dy.t, &x.t, wt, &rstd.t, &dx.t, &dw.t, NULL));
  else OK(tj_layernorm_bwd(blk, &dy.t, &x.t, wt, &mean.t, &rstd.t, &dx.t, &dw.t, &db.t, NULL));
  double *wdx = malloc(sizeof(double) * (size_t)(M * K));
  double *wdw = malloc(sizeof(double) * (size_t)K), *wdb = malloc(sizeof(double) * (size_t)K);
  ref_norm_bwd(&x, &dy, has_w ? &w : NULL, (const float *)mean.buf, (const float *)rstd.buf, rms, wdx, wdw,
               wdb);
  snprintf(what, sizeof what, "%s_bwd dx w=%d", rms ? "rmsnorm" : "layernorm", has_w);
  check_close_scaled(&dx, wdx, M, K, dt, what,
                     ref_norm_bwd_scale(&dy, has_w ? &w : NULL, (const float *)rstd.buf));
  check_close(&dw, wdw, 1, K, dt, "dw");
  if (!rms) check_close(&db, wdb, 1, K, dt, "db");

  // Deterministic: a second run gives the same bits.
  HostT dx2, dw2, db2;
  host_init(&dx2, dt, 2, shape, xs);
  host_init(&dw2, dt, 1, kshape, NULL);
  host_init(&db2, dt, 1, kshape, NULL);
  if (rms) OK(tj_rmsnorm_bwd(blk, &dy.t, &x.t, wt, &rstd.t, &dx2.t, &dw2.t, NULL));
  else OK(tj_layernorm_bwd(blk, &dy.t, &x.t, wt, &mean.t, &rstd.t, &dx2.t, &dw2.t, &db2.t, NULL));
  ck_assert(memcmp(dx.buf, dx2.buf, dx.nbytes) == 0);
  ck_assert(memcmp(dw.buf, dw2.buf, dw.nbytes) == 0);
  ck_assert(memcmp(db.buf, db2.buf, db.nbytes) == 0);

  HostT *all[] = { &x, &y, &w, &b, &mean, &rstd, &dy, &dx, &dw, &db, &dx2, &dw2, &db2 };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
  free(want);
  free(wm);
  free(wr);
  free(wdx);
  free(wdw);
  free(wdb);
}

START_TEST(layernorm_fwd_bwd) {
  static const int64_t ks[] = { 1, 3, 1000 };
  for (int d = 0; d < 3; d++)
    for (int i = 0; i < 3; i++) {
      norm_case(dtypes[d], 0, 7, ks[i], 0, 1, 1);
      norm_case(dtypes[d], 0, 5, ks[i], 4, 0, 0);
      norm_case(dtypes[d], 0, 1, ks[i], 0, 1, 0);
    }
}
END_TEST

START_TEST(rmsnorm_fwd_bwd) {
  static const int64_t ks[] = { 1, 3, 1000 };
  for (int d = 0; d < 3; d++)
    for (int i = 0; i < 3; i++) {
      norm_case(dtypes[d], 1, 6, ks[i], 0, 1, 0);
      norm_case(dtypes[d], 1, 1, ks[i], 2, 0, 0);
    }
}
END_TEST

// ---------------------------------------------------------------- edges and errors

START_TEST(empty_is_noop) {
  HostT x, y;
  int64_t shape[2] = { 0, 128 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  x.t.data = NULL;
  y.t.data = NULL;
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  OK(tj_softmax_bwd(blk, &x.t, &x.t, &y.t, NULL, NULL));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);
  host_free(&x);
  host_free(&y);
}
END_TEST

// Each bad call fails with the status and message, and writes nothing.
START_TEST(bad_inputs) {
  HostT x, y, y2, x64, m;
  int64_t shape[2] = { 4, 128 }, shape2[2] = { 4, 100 }, ovl[2] = { 64, 1 }, mshape[2] = { 3, 128 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  host_init(&y2, TJ_F16, 2, shape2, NULL);
  host_init(&x64, TJ_F64, 2, shape, NULL);
  host_init(&m, TJ_F16, 2, mshape, NULL);
  host_fill(&x, 1, -1, 1);
  unsigned char sentinel[4 * 128 * 2];
  memcpy(sentinel, y.buf, sizeof sentinel);

  expect_error(tj_softmax_fwd(blk, &x64.t, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "x has dtype f64; softmax supports f16, bf16, f32");
  expect_error(tj_softmax_fwd(blk, &x.t, &y2.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "y shape [4, 100] differs from x shape [4, 128]");
  HostT xo;
  host_init(&xo, TJ_F16, 2, shape, ovl);
  expect_error(tj_softmax_fwd(blk, &xo.t, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "x rows overlap: stride[0] = 64 < K = 128");
  HostT y32;
  host_init(&y32, TJ_F32, 2, shape, NULL);
  expect_error(tj_softmax_fwd(blk, &x.t, &y32.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "y has dtype f32 but x has f16");
  void *keep = x.t.data;
  x.t.data = NULL;
  expect_error(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG, "softmax: x has NULL data");
  x.t.data = keep;
  expect_error(tj_softmax_fwd(blk, NULL, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG, "softmax: x is NULL");
  tj_softmax_opts o = { .mask = &m.t };
  expect_error(tj_softmax_fwd(blk, &x.t, &y.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "mask shape [3, 128] does not broadcast over x shape [4, 128]");
  int64_t cs[2] = { 256, 2 };
  HostT xc;
  host_init(&xc, TJ_F16, 2, shape, cs);
  expect_error(tj_softmax_fwd(blk, &xc.t, &y.t, NULL, NULL), TJ_ERR_UNSUPPORTED,
               "x has stride[1] = 2 along the reduced dimension");
  y.t.device.device_type = kDLCUDA;
  expect_error(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "y is on kDLCUDA:0 but x is on kDLCPU:0");
  y.t.device.device_type = kDLCPU;
  x.t.device.device_type = kDLOpenCL;
  y.t.device.device_type = kDLOpenCL;
  expect_error(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL), TJ_ERR_UNSUPPORTED,
               "x is on kDLOpenCL (4); blocks run on kDLCPU and kDLCUDA");
  x.t.device.device_type = kDLCPU;
  y.t.device.device_type = kDLCPU;
  // A host pointer claimed as CUDA memory: without a GPU the device check
  // itself fails; with one the pointer check does. Either way nothing runs.
  x.t.device.device_type = kDLCUDA;
  y.t.device.device_type = kDLCUDA;
  tj_status st = tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL);
  ck_assert_msg(st == TJ_ERR_NO_DEVICE || st == TJ_ERR_INVALID_ARG, "host pointer as CUDA: %s",
                tj_status_str(st));
  x.t.device.device_type = kDLCPU;
  y.t.device.device_type = kDLCPU;

  // Norms.
  HostT w, mean, rstd, mean16;
  int64_t wshape[1] = { 100 }, mshape1[1] = { 4 };
  host_init(&w, TJ_F16, 1, wshape, NULL);
  host_init(&mean, TJ_F32, 1, mshape1, NULL);
  host_init(&rstd, TJ_F32, 1, mshape1, NULL);
  host_init(&mean16, TJ_F16, 1, mshape1, NULL);
  expect_error(tj_layernorm_fwd(blk, &x.t, &w.t, NULL, 1e-5, &y.t, &mean.t, &rstd.t, NULL),
               TJ_ERR_INVALID_ARG, "w shape [100] differs from [K] = [128]");
  expect_error(tj_layernorm_fwd(blk, &x.t, NULL, NULL, 1e-5, &y.t, &mean16.t, &rstd.t, NULL),
               TJ_ERR_INVALID_ARG, "mean has dtype f16; layernorm supports f32");
  expect_error(tj_layernorm_fwd(blk, &x.t, NULL, NULL, -1.0, &y.t, &mean.t, &rstd.t, NULL),
               TJ_ERR_INVALID_ARG, "layernorm: eps must be >= 0, got -1");
  expect_error(tj_rmsnorm_fwd(blk, &x.t, NULL, 1e-5, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG,
               "rmsnorm: rstd is NULL");
  expect_error(tj_layernorm_bwd(blk, &y2.t, &x.t, NULL, &mean.t, &rstd.t, &y.t, NULL, NULL, NULL),
               TJ_ERR_INVALID_ARG, "dy shape [4, 100] differs from x shape [4, 128]");

  ck_assert(memcmp(sentinel, y.buf, sizeof sentinel) == 0);   // nothing was written
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);             // nor compiled

  HostT *all[] = { &x, &y, &y2, &x64, &m, &xo, &y32, &xc, &w, &mean, &rstd, &mean16 };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
}
END_TEST

START_TEST(registry) {
  ck_assert_int_eq(tj_block_count(), 10);   // and dropout, dropout_bwd (tests/cpu/test_dropout.c),
                                            // attention, attention_bwd (tests/cpu/test_attention.c)
  const char *names[] = { "softmax", "softmax_bwd", "layernorm", "layernorm_bwd", "rmsnorm", "rmsnorm_bwd" };
  for (int i = 0; i < 6; i++) {
    const tj_block_desc *d = tj_block_find(names[i]);
    ck_assert_ptr_nonnull(d);
    ck_assert_ptr_eq(d, tj_block_at(i));
    ck_assert_int_gt(d->ntensors, 0);
  }
  ck_assert_ptr_null(tj_block_find("no_such_block"));
  ck_assert_ptr_null(tj_block_at(10));

  // Call softmax by name: log-softmax, causal, through the descriptor.
  const tj_block_desc *d = tj_block_find("softmax");
  ck_assert_str_eq(d->tensors[0].name, "x");
  ck_assert_str_eq(d->scalars[1].name, "causal");
  HostT x, y;
  int64_t shape[2] = { 5, 33 };
  host_init(&x, TJ_F32, 2, shape, NULL);
  host_init(&y, TJ_F32, 2, shape, NULL);
  host_fill(&x, 2, -1, 1);
  DLTensor *ts[3] = { &x.t, &y.t, NULL };
  double sc[2] = { 1, 1 };
  OK(tj_block_call(blk, d, ts, 3, sc, 2, NULL));
  double want[5 * 33];
  ref_softmax(&x, NULL, 1, 1, want);
  check_close(&y, want, 5, 33, TJ_F32, "softmax by name");
  expect_error(tj_block_call(blk, d, ts, 2, sc, 2, NULL), TJ_ERR_INVALID_ARG, "softmax takes 3 tensors, got 2");
  DLTensor *ts2[3] = { &x.t, NULL, NULL };
  expect_error(tj_block_call(blk, d, ts2, 3, NULL, 0, NULL), TJ_ERR_INVALID_ARG,
               "softmax: tensor 'y' is required");

  // layernorm by name with the default eps.
  const tj_block_desc *ln = tj_block_find("layernorm");
  HostT mean, rstd;
  int64_t ms[1] = { 5 };
  host_init(&mean, TJ_F32, 1, ms, NULL);
  host_init(&rstd, TJ_F32, 1, ms, NULL);
  DLTensor *lt[6] = { &x.t, NULL, NULL, &y.t, &mean.t, &rstd.t };
  OK(tj_block_call(blk, ln, lt, 6, NULL, 0, NULL));
  double wm[5], wr[5];
  ref_norm(&x, NULL, NULL, 1e-5, 0, want, wm, wr);
  check_close(&y, want, 5, 33, TJ_F32, "layernorm by name");
  host_free(&x);
  host_free(&y);
  host_free(&mean);
  host_free(&rstd);
}
END_TEST

// One compilation per specialisation: repeated calls reuse it.
START_TEST(kernel_cache) {
  HostT x, y;
  int64_t shape[2] = { 3, 50 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  host_fill(&x, 2, -1, 1);
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  int n = tj_blocks_num_kernels(blk);
  ck_assert_int_eq(n, 1);
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 1);
  tj_softmax_opts o = { .log = 1 };
  OK(tj_softmax_fwd(blk, &x.t, &y.t, &o, NULL));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 2);
  host_free(&x);
  host_free(&y);
}
END_TEST

// More defines than BlkDefs holds fail with a status at compile time, and
// nothing is written past the arrays (ASan in the sanitizer build).
START_TEST(too_many_defines) {
  BlkDefs d = { .n = 0 };
  char name[16];
  for (int i = 0; i < BLK_MAX_DEFS + 3; i++) {
    snprintf(name, sizeof name, "D%d", i);
    blk_def_int(&d, name, i);
  }
  ck_assert_int_eq(d.n, BLK_MAX_DEFS);
  tj_kernel *k = NULL;
  ck_assert_int_eq(blk_kernel(blk, "blocks/softmax.tj", blk_src_softmax, blk_src_softmax_len, "softmax_fwd", d.p,
                              d.n, 4, false, &k), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_blocks_last_error(blk), "more than 16 block defines"));
}
END_TEST

// The embedded sources are the files in blocks/ (the build regenerates them).
START_TEST(embedded_sources_current) {
  size_t len;
  char *s = tj_test_read_file("blocks/softmax.tj", &len);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(len, blk_src_softmax_len);
  ck_assert(memcmp(s, blk_src_softmax, len) == 0);
  free(s);
  s = tj_test_read_file("blocks/layernorm.tj", &len);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(len, blk_src_layernorm_len);
  ck_assert(memcmp(s, blk_src_layernorm, len) == 0);
  free(s);
}
END_TEST


// ---------------------------------------------------------------- tuning

static const BlkOp all_ops[] = { BLK_SOFTMAX_FWD, BLK_SOFTMAX_BWD, BLK_NORM_FWD, BLK_NORM_BWD };

static void bucket3(int64_t K, int64_t M, int64_t cap, int64_t ks[BLK_TK_N]) {
  ks[BLK_TK_K] = blk_tune_bucket("K", K, NULL);
  ks[BLK_TK_M] = blk_tune_bucket("M", M, NULL);
  ks[BLK_TK_RCAP] = blk_tune_bucket("rcap", cap, NULL);
}

typedef struct Cands {
  int n;
  int64_t v[600][3];   // block, rows, num_warps
} Cands;

// Every point of the tuners' space (tuning.c's axes) that the rule keeps.
static void candidates_of(BlkOp op, const int64_t ks[BLK_TK_N], Cands *c) {
  c->n = 0;
  for (int64_t blk_ = 16; blk_ <= 16384; blk_ *= 2)
    for (int64_t r = 1; r <= 256; r *= 2)
      for (int64_t w = 1; w <= 32; w *= 2)
        if (blk_tune_keep(blk, op, TJ_F16, ks, blk_, r, w)) {
          c->v[c->n][0] = blk_, c->v[c->n][1] = r, c->v[c->n][2] = w;
          c->n++;
        }
}

static bool has_cand(const Cands *c, int64_t block, int64_t rows, int64_t w) {
  for (int i = 0; i < c->n; i++)
    if (c->v[i][0] == block && c->v[i][1] == rows && c->v[i][2] == w) return true;
  return false;
}

START_TEST(tune_key_buckets) {
  ck_assert_int_eq(blk_tune_bucket("K", 1, NULL), 16);
  ck_assert_int_eq(blk_tune_bucket("K", 3, NULL), 16);
  ck_assert_int_eq(blk_tune_bucket("K", 1000, NULL), 1024);
  ck_assert_int_eq(blk_tune_bucket("K", 1025, NULL), 2048);
  ck_assert_int_eq(blk_tune_bucket("K", 12289, NULL), 16384);
  ck_assert_int_eq(blk_tune_bucket("M", 1, NULL), 1);
  ck_assert_int_eq(blk_tune_bucket("M", 3000, NULL), 4096);
  ck_assert_int_eq(blk_tune_bucket("M", 4096, NULL), 4096);
  ck_assert_int_eq(blk_tune_bucket("rcap", INT32_MAX, NULL), 256);
  ck_assert_int_eq(blk_tune_bucket("rcap", 1000, NULL), 256);
  ck_assert_int_eq(blk_tune_bucket("rcap", 256, NULL), 256);
  ck_assert_int_eq(blk_tune_bucket("rcap", 3, NULL), 2);
  ck_assert_int_eq(blk_tune_bucket("rcap", 1, NULL), 1);
}
END_TEST

// The rule, per op and shape: the heuristic always kept, a handful of
// neighbours, the row's tile only, and nothing beyond the rows cap, the
// register budget or 1..64 elements per thread.
START_TEST(tune_space_pruning) {
  static const int64_t Ks[] = { 1, 3, 100, 256, 1000, 4096, 8192, 12289, 16384 };
  static const int64_t Ms[] = { 1, 37, 4096, 65536 };
  static const int64_t caps[] = { INT32_MAX, 2 };
  Cands *c = malloc(sizeof *c);
  ck_assert_ptr_nonnull(c);
  for (int o = 0; o < 4; o++)
    for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
      for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (int ci = 0; ci < 2; ci++) {
          BlkOp op = all_ops[o];
          int64_t ks[BLK_TK_N];
          bucket3(Ks[ki], Ms[mi], caps[ci], ks);
          BlkConfig h = blk_pick_config(blk, op, TJ_F16, ks[BLK_TK_M], ks[BLK_TK_K], ks[BLK_TK_RCAP], true);
          candidates_of(op, ks, c);
          ck_assert_msg(has_cand(c, h.block, h.rows, h.num_warps), "op %d K %lld M %lld: heuristic pruned", o,
                        (long long)Ks[ki], (long long)Ms[mi]);
          ck_assert_msg(c->n >= 1 && c->n <= 16, "op %d K %lld M %lld: %d candidates", o, (long long)Ks[ki],
                        (long long)Ms[mi], c->n);
          for (int i = 0; i < c->n; i++) {
            int64_t b_ = c->v[i][0], r = c->v[i][1], w = c->v[i][2];
            ck_assert_int_eq(b_, h.block);
            if (op == BLK_NORM_BWD) ck_assert_int_eq(r, h.rows);
            ck_assert(r <= ks[BLK_TK_RCAP] && r <= ks[BLK_TK_M] && r <= 4 * h.rows && 2 * r >= h.rows);
            if (r != h.rows || w != h.num_warps) {
              ck_assert(r * b_ <= 16384);
              ck_assert(r * b_ >= 32 * w && r * b_ <= 64 * 32 * w);
            }
          }
        }
  int64_t ks[BLK_TK_N];
  // Softmax 4096 wide (H200: 8 warps best, 16 close): 4, 8, 16 warps at one row.
  bucket3(4096, 4096, INT32_MAX, ks);
  candidates_of(BLK_SOFTMAX_FWD, ks, c);
  ck_assert(has_cand(c, 4096, 1, 4) && has_cand(c, 4096, 1, 8) && has_cand(c, 4096, 1, 16));
  // LayerNorm's 16384 bucket (K = 12288 itself takes the three-chunk
  // kernel, untuned; K = 16384 keeps the register one): 8 and 32 warps besides the
  // heuristic's 16.
  bucket3(12288, 2048, INT32_MAX, ks);
  candidates_of(BLK_NORM_FWD, ks, c);
  ck_assert(has_cand(c, 16384, 1, 8) && has_cand(c, 16384, 1, 16) && has_cand(c, 16384, 1, 32));
  ck_assert(!has_cand(c, 16384, 1, 4));   // 128 elements per thread
  // Short rows: several rows per program, more than the heuristic's too.
  bucket3(256, 4096, INT32_MAX, ks);
  candidates_of(BLK_SOFTMAX_FWD, ks, c);
  BlkConfig h = blk_pick_config(blk, BLK_SOFTMAX_FWD, TJ_F16, 4096, 256, INT32_MAX, true);
  bool more = false;
  for (int i = 0; i < c->n; i++) more |= c->v[i][1] > h.rows;
  ck_assert(h.rows > 1 && more);
  // Batch-strided views cap the rows.
  bucket3(256, 4096, 2, ks);
  candidates_of(BLK_SOFTMAX_FWD, ks, c);
  for (int i = 0; i < c->n; i++) ck_assert_int_le(c->v[i][1], 2);
  // Rows beyond the register limit (looped softmax): nothing is tuned.
  blk_set_reg_limit(blk, 1024);
  bucket3(4096, 4096, INT32_MAX, ks);
  candidates_of(BLK_SOFTMAX_FWD, ks, c);
  ck_assert_int_eq(c->n, 0);
  free(c);
}
END_TEST

// A request as softmax.c makes it (no arguments: the benchmark is a hook).
static BlkTuneReq sm_req(const char *const *defs, int ndefs, int64_t M, int64_t K) {
  BlkTuneReq r = { .op = BLK_SOFTMAX_FWD, .dt = TJ_F16, .file = "blocks/softmax.tj", .src = blk_src_softmax,
                   .srclen = blk_src_softmax_len, .kernel = "softmax_fwd", .defines = defs, .ndefines = ndefs,
                   .M = M, .K = K, .rows_cap = INT32_MAX, .m_arg = 3, .written = 1 };
  return r;
}

static const char *const sm_defs[] = { "T=f16", "MT=f16", "LOG=false", "CAUSAL=false", "HAS_MASK=false",
                                       "FLAT=true" };

// TILEJIT_AUTOTUNE=0 and the interpreter take the heuristic as it is and
// build no tuner.
START_TEST(tune_off_is_heuristic) {
  static const int64_t Ks[] = { 3, 256, 1000, 4096, 12288 };
  for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++) {
    BlkTuneReq r = sm_req(sm_defs, 6, 4096, Ks[i]);
    BlkConfig want = blk_pick_config(blk, BLK_SOFTMAX_FWD, TJ_F16, 4096, Ks[i], INT32_MAX, false);
    BlkConfig got = blk_choose_config(blk, &r, false);   // the interpreter, tuning on
    ck_assert(memcmp(&want, &got, sizeof want) == 0);
  }
  ck_assert_int_eq(blk->ntuners, 0);
  softmax_case(TJ_F16, 2, 3, 100, 0, 0, 0, 0);
  norm_case(TJ_F16, 0, 7, 100, 0, 1, 1);
  ck_assert_int_eq(blk->ntuners, 0);

  setenv("TILEJIT_AUTOTUNE", "0", 1);
  tj_blocks *b2;
  ck_assert_int_eq(tj_blocks_create(ctx, &b2), TJ_OK);
  ck_assert_int_eq(tj_blocks_set_autotune(b2, 1), TJ_OK);   // the environment wins
  for (size_t i = 0; i < sizeof Ks / sizeof Ks[0]; i++)
    for (int o = 0; o < 4; o++) {
      BlkTuneReq r = sm_req(sm_defs, 6, 4096, Ks[i]);
      r.op = all_ops[o];
      BlkConfig want = blk_pick_config(b2, r.op, TJ_F16, 4096, Ks[i], INT32_MAX, true);
      BlkConfig got = blk_choose_config(b2, &r, true);
      ck_assert(memcmp(&want, &got, sizeof want) == 0);
    }
  ck_assert_int_eq(b2->ntuners, 0);
  tj_blocks_free(b2);
  unsetenv("TILEJIT_AUTOTUNE");
  ck_assert_int_eq(tj_blocks_set_autotune(blk, 0), TJ_OK);
  BlkTuneReq r = sm_req(sm_defs, 6, 4096, 4096);
  BlkConfig want = blk_pick_config(blk, BLK_SOFTMAX_FWD, TJ_F16, 4096, 4096, INT32_MAX, true);
  BlkConfig got = blk_choose_config(blk, &r, true);
  ck_assert(memcmp(&want, &got, sizeof want) == 0);
  ck_assert_int_eq(blk->ntuners, 0);
}
END_TEST

typedef struct FakeBench {
  int calls;
  bool forbid, fail;
  int64_t rows, warps;   // the configuration made fastest
} FakeBench;

static tj_status fake_bench(tj_tuner *t, int index, double *ms, StrBuf *err, void *user) {
  FakeBench *f = user;
  f->calls++;
  ck_assert_msg(!f->forbid, "benchmarked configuration %d", index);
  if (f->fail) {
    sb_puts(err, "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES");
    return TJ_ERR_CUDA;
  }
  tj_tune_config c;
  ck_assert_int_eq(tj_tuner_config(t, index, &c), TJ_OK);
  int64_t rows = 0, warps = 0;
  ck_assert_int_eq(tj_tuner_config_value(t, &c, "ROWS", &rows), TJ_OK);
  ck_assert_int_eq(tj_tuner_config_value(t, &c, "num_warps", &warps), TJ_OK);
  *ms = rows == f->rows && warps == f->warps ? 1.0 : 2.0 + 0.01 * (double)(rows + warps);
  return TJ_OK;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

// A GPU-less tuner: a fake device and the benchmark hook.
static tj_tuner *fake_tuner(tj_blocks *b, const BlkTuneReq *r, FakeBench *f) {
  tj_tuner *t = blk_tuner_for(b, r);
  ck_assert_msg(t != NULL, "%s", tj_ctx_last_error(ctx));
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  tune_set_bench_hook(t, fake_bench, f);
  return t;
}

// The first call of a key tunes (the hook's favourite wins), later calls and
// a new handle (as a new process would) use the stored best unbenchmarked.
START_TEST(tune_choice_persists) {
  char dir[] = "/tmp/tj_blocks_tune_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  OK(tj_ctx_set_cache_dir(ctx, dir));
  ck_assert_int_eq(tj_blocks_set_autotune(blk, 1), TJ_OK);
  BlkTuneReq r = sm_req(sm_defs, 6, 4096, 4096);
  FakeBench f = { .rows = 2, .warps = 16 };
  fake_tuner(blk, &r, &f);
  BlkConfig c = blk_choose_config(blk, &r, true);
  ck_assert_int_eq(c.block, 4096);
  ck_assert_int_eq(c.rows, 2);
  ck_assert_int_eq(c.num_warps, 16);
  ck_assert(!c.looped);
  int ncand = f.calls;
  ck_assert_int_ge(ncand, 3);
  f.forbid = true;
  r.M = 3000;   // same bucket
  c = blk_choose_config(blk, &r, true);
  ck_assert(c.rows == 2 && c.num_warps == 16);
  tj_tune_stats s;
  ck_assert_int_eq(tj_blocks_tune_stats(blk, &s), TJ_OK);
  ck_assert_int_eq(s.tunings, 1);
  ck_assert_int_eq(s.mem_hits, 1);
  ck_assert_int_eq(s.disk_writes, 1);
  ck_assert_int_eq(s.configs_timed, (uint64_t)ncand);

  tj_blocks *b2;
  ck_assert_int_eq(tj_blocks_create(ctx, &b2), TJ_OK);
  FakeBench f2 = { .forbid = true };
  r.M = 4096;
  fake_tuner(b2, &r, &f2);
  c = blk_choose_config(b2, &r, true);
  ck_assert(c.block == 4096 && c.rows == 2 && c.num_warps == 16);
  ck_assert_int_eq(tj_blocks_tune_stats(b2, &s), TJ_OK);
  ck_assert_int_eq(s.disk_hits, 1);
  ck_assert_int_eq(s.tunings, 0);
  // Another variant is another tuner, and another key tunes anew.
  const char *log_defs[] = { "T=f16", "MT=f16", "LOG=true", "CAUSAL=false", "HAS_MASK=false", "FLAT=true" };
  BlkTuneReq rl = sm_req(log_defs, 6, 4096, 4096);
  FakeBench f3 = { .rows = 1, .warps = 4 };
  fake_tuner(b2, &rl, &f3);
  c = blk_choose_config(b2, &rl, true);
  ck_assert(c.rows == 1 && c.num_warps == 4);
  ck_assert_int_eq(b2->ntuners, 2);
  tj_blocks_free(b2);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

// A tuning failure warns and falls back to the heuristic, once: the call
// succeeds and later calls do not retry.
START_TEST(tune_failure_falls_back) {
  char dir[] = "/tmp/tj_blocks_tune_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  OK(tj_ctx_set_cache_dir(ctx, dir));
  ck_assert_int_eq(tj_blocks_set_autotune(blk, 1), TJ_OK);
  static const char *const ln_defs[] = { "T=bf16", "RMS=false", "HAS_W=true", "HAS_B=true", "FLAT=true" };
  BlkTuneReq r = { .op = BLK_NORM_FWD, .dt = TJ_BF16, .file = "blocks/layernorm.tj", .src = blk_src_layernorm,
                   .srclen = blk_src_layernorm_len, .kernel = "norm_fwd", .defines = ln_defs, .ndefines = 5,
                   .M = 2048, .K = 8192, .rows_cap = INT32_MAX, .m_arg = 6, .written = 0x31 };
  FakeBench f = { .fail = true };
  fake_tuner(blk, &r, &f);
  tj_cache_summary before, after;
  OK(tj_cache_stats(ctx, &before));
  BlkConfig want = blk_pick_config(blk, BLK_NORM_FWD, TJ_BF16, 2048, 8192, INT32_MAX, true);
  BlkConfig c = blk_choose_config(blk, &r, true);
  ck_assert(memcmp(&want, &c, sizeof c) == 0);
  ck_assert_str_eq(tj_ctx_last_error(ctx), "");
  OK(tj_cache_stats(ctx, &after));
  ck_assert_uint_gt(after.warnings, before.warnings);
  int calls = f.calls;
  ck_assert_int_ge(calls, 3);   // 8, 16 and 32 warps were tried
  c = blk_choose_config(blk, &r, true);
  ck_assert(memcmp(&want, &c, sizeof c) == 0);
  ck_assert_int_eq(f.calls, calls);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

// ---------------------------------------------------------------- host-cost caches (core.c)

// A stand-in for the driver's pointer query: allocations with a memory type,
// and a count of the questions asked.
typedef struct FakeMem {
  struct { uintptr_t base; size_t size; unsigned mt; } a[40];
  int n;
  int queries;
  bool fail;
  bool no_range;   // a driver that does not give the range
} FakeMem;

static tj_status fake_query(tj_blocks *b, const void *p, unsigned *mt, uintptr_t *base, size_t *size,
                            void *user) {
  FakeMem *f = user;
  f->queries++;
  if (f->fail) return blk_error(b, TJ_ERR_CUDA, "cuPointerGetAttributes failed: CUDA_ERROR_FAKE");
  *mt = 0, *base = 0, *size = 0;
  for (int i = 0; i < f->n; i++)
    if ((uintptr_t)p >= f->a[i].base && (uintptr_t)p < f->a[i].base + f->a[i].size) {
      *mt = f->a[i].mt;
      if (!f->no_range) *base = f->a[i].base, *size = f->a[i].size;
    }
  return TJ_OK;
}

static uintptr_t fake_alloc(FakeMem *f, uintptr_t base, size_t size, unsigned mt) {
  f->a[f->n].base = base, f->a[f->n].size = size, f->a[f->n].mt = mt;
  f->n++;
  return base;
}

#define DEV(a) ((const void *)(uintptr_t)(a))

// A pointer inside an allocation the driver called device (or managed)
// memory is not asked about again; host pointers always are, and are refused.
START_TEST(ptr_cache_hits_and_refusals) {
  FakeMem f = { .n = 0 };
  blk_set_ptr_query(blk, fake_query, &f);
  uintptr_t d0 = fake_alloc(&f, 0x7f0000000000u, 1 << 20, 2);   // CU_MEMORYTYPE_DEVICE
  uintptr_t m0 = fake_alloc(&f, 0x7f1000000000u, 4096, 4);      // CU_MEMORYTYPE_UNIFIED
  uintptr_t h0 = fake_alloc(&f, 0x7f2000000000u, 4096, 1);      // pinned host memory
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(d0)));
  ck_assert_int_eq(f.queries, 1);
  OK(blk_check_device_ptr(blk, "softmax", "y", DEV(d0 + 4096)));
  OK(blk_check_device_ptr(blk, "softmax", "y", DEV(d0 + (1 << 20) - 1)));
  ck_assert_int_eq(f.queries, 1);
  // Past the end: asked, and refused (nothing there).
  expect_error(blk_check_device_ptr(blk, "softmax", "x", DEV(d0 + (1 << 20))), TJ_ERR_INVALID_ARG, "host pointer?");
  ck_assert_int_eq(f.queries, 2);
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(m0 + 8)));
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(m0 + 16)));
  ck_assert_int_eq(f.queries, 3);
  for (int i = 0; i < 3; i++) {   // never remembered
    int q = f.queries;
    expect_error(blk_check_device_ptr(blk, "softmax", "y", DEV(h0)), TJ_ERR_INVALID_ARG, "y claims kDLCUDA");
    expect_error(blk_check_device_ptr(blk, "softmax", "y", &f), TJ_ERR_INVALID_ARG, "not CUDA device memory");
    ck_assert_int_eq(f.queries, q + 2);
  }
  ck_assert_int_eq((int)blk->ptr_queries, f.queries);
  // A failed query is the call's failure.
  f.fail = true;
  expect_error(blk_check_device_ptr(blk, "softmax", "x", DEV(0x7f3000000000u)), TJ_ERR_CUDA, "CUDA_ERROR_FAKE");
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(d0 + 64)));   // remembered: no query
  f.fail = false;
  // Without the range, nothing is remembered.
  blk_set_ptr_query(blk, fake_query, &f);
  f.no_range = true;
  f.queries = 0;
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(d0)));
  OK(blk_check_device_ptr(blk, "softmax", "x", DEV(d0)));
  ck_assert_int_eq(f.queries, 2);
  blk_set_ptr_query(blk, NULL, NULL);
}
END_TEST

// The cache holds BLK_RANGES allocations, replaced in turn; memory the
// handle frees leaves it; another handle starts empty.
START_TEST(ptr_cache_eviction_and_forget) {
  FakeMem f = { .n = 0 };
  blk_set_ptr_query(blk, fake_query, &f);
  for (int i = 0; i < BLK_RANGES + 1; i++) fake_alloc(&f, 0x7f0000000000u + (uintptr_t)i * 0x100000, 4096, 2);
  for (int i = 0; i < BLK_RANGES; i++) OK(blk_check_device_ptr(blk, "op", "x", DEV(f.a[i].base)));
  ck_assert_int_eq(f.queries, BLK_RANGES);
  for (int i = 0; i < BLK_RANGES; i++) OK(blk_check_device_ptr(blk, "op", "x", DEV(f.a[i].base + 1)));
  ck_assert_int_eq(f.queries, BLK_RANGES);
  OK(blk_check_device_ptr(blk, "op", "x", DEV(f.a[BLK_RANGES].base)));   // replaces the oldest
  ck_assert_int_eq(blk->nranges, BLK_RANGES);
  OK(blk_check_device_ptr(blk, "op", "x", DEV(f.a[0].base)));
  ck_assert_int_eq(f.queries, BLK_RANGES + 2);
  OK(blk_check_device_ptr(blk, "op", "x", DEV(f.a[5].base)));
  ck_assert_int_eq(f.queries, BLK_RANGES + 2);
  // Freed by the handle (and reused as host memory): asked again, refused.
  blk_forget_ptr(blk, DEV(f.a[5].base + 100), 10);
  f.a[5].mt = 1;
  expect_error(blk_check_device_ptr(blk, "op", "x", DEV(f.a[5].base)), TJ_ERR_INVALID_ARG, "not CUDA device memory");
  ck_assert_int_eq(f.queries, BLK_RANGES + 3);
  tj_blocks *b2;
  OK(tj_blocks_create(ctx, &b2));
  blk_set_ptr_query(b2, fake_query, &f);
  OK(blk_check_device_ptr(b2, "op", "x", DEV(f.a[6].base)));
  ck_assert_int_eq(f.queries, BLK_RANGES + 4);
  tj_blocks_free(b2);
  blk_set_ptr_query(blk, NULL, NULL);
}
END_TEST

// A block call on kDLCUDA tensors: a host pointer among cached device ones
// is still refused, naming the tensor, before anything is compiled or
// launched; a cached call asks the driver nothing.
START_TEST(ptr_cache_in_block_calls) {
  FakeMem f = { .n = 0 };
  blk_set_ptr_query(blk, fake_query, &f);
  uintptr_t d0 = fake_alloc(&f, 0x7f0000000000u, 1 << 20, 2);
  int64_t shape[2] = { 4, 64 };
  DLTensor x = { .data = (void *)d0, .device = { kDLCUDA, 0 }, .ndim = 2, .dtype = { kDLFloat, 16, 1 },
                 .shape = shape };
  DLTensor y = x;
  y.data = (void *)(d0 + 65536);
  DLTensor h = x;
  h.data = &f;   // host memory
  expect_error(tj_softmax_fwd(blk, &x, &h, NULL, NULL), TJ_ERR_INVALID_ARG, "softmax: y claims kDLCUDA");
  expect_error(tj_softmax_fwd(blk, &h, &y, NULL, NULL), TJ_ERR_INVALID_ARG, "softmax: x claims kDLCUDA");
  DLTensor bad = y;
  int64_t other[2] = { 4, 32 };
  bad.shape = other;
  expect_error(tj_softmax_fwd(blk, &x, &bad, NULL, NULL), TJ_ERR_INVALID_ARG, "differs from");
  bad = y;
  bad.dtype.bits = 32;
  expect_error(tj_softmax_fwd(blk, &x, &bad, NULL, NULL), TJ_ERR_INVALID_ARG, "dtype");
  bad = y;
  bad.data = NULL;
  expect_error(tj_softmax_fwd(blk, &x, &bad, NULL, NULL), TJ_ERR_INVALID_ARG, "NULL data");
  int64_t overlap[2] = { 8, 1 };
  bad = y;
  bad.strides = overlap;
  expect_error(tj_softmax_fwd(blk, &x, &bad, NULL, NULL), TJ_ERR_INVALID_ARG, "overlap");
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);   // nothing compiled, so nothing launched
  int q = f.queries;
  BlkView vx, vy;
  OK(blk_view(blk, "softmax", "x", &x, BLK_FLOATS, &vx));
  OK(blk_view(blk, "softmax", "y", &y, BLK_FLOATS, &vy));
  BlkView *all[2] = { &vx, &vy };
  bool gpu = false;
  OK(blk_device(blk, "softmax", all, 2, &gpu));
  ck_assert(gpu);
  ck_assert_int_eq(f.queries, q);
  blk_set_ptr_query(blk, NULL, NULL);
}
END_TEST

// The last kernel choices are remembered per (variant, sizes), and
// forgotten when the state they depend on changes.
START_TEST(choice_memo) {
  HostT x, y;
  int64_t shape[2] = { 3, 50 }, shape2[2] = { 4, 50 };   // both 4 rows per program
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  host_fill(&x, 2, -1, 1);
  double want[3 * 50];
  ref_softmax(&x, NULL, 0, 0, want);
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  ck_assert_int_eq(blk->nmemos, 1);
  memset(y.buf, 0, y.nbytes);
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));   // a hit: same result
  check_close(&y, want, 3, 50, TJ_F16, "softmax from the remembered choice");
  ck_assert_int_eq(blk->nmemos, 1);
  tj_softmax_opts o = { .log = 1 };
  OK(tj_softmax_fwd(blk, &x.t, &y.t, &o, NULL));
  ck_assert_int_eq(blk->nmemos, 2);
  HostT x2, y2;
  host_init(&x2, TJ_F16, 2, shape2, NULL);
  host_init(&y2, TJ_F16, 2, shape2, NULL);
  host_fill(&x2, 3, -1, 1);
  OK(tj_softmax_fwd(blk, &x2.t, &y2.t, NULL, NULL));
  ck_assert_int_eq(blk->nmemos, 3);
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 2);   // same specialisation, other sizes
  // The register limit changes the kernel: the memo starts over, the call
  // takes the looped kernel and is still right.
  blk_set_reg_limit(blk, 32);
  ck_assert_int_eq(blk->nmemos, 0);
  memset(y.buf, 0, y.nbytes);
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  check_close(&y, want, 3, 50, TJ_F16, "softmax after the register limit changed");
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 3);
  blk_set_reg_limit(blk, 0);
  // The autotune switch is part of the stamp.
  int n = blk->nmemos;
  OK(tj_blocks_set_autotune(blk, !blk->autotune));
  OK(tj_softmax_fwd(blk, &x.t, &y.t, NULL, NULL));
  ck_assert_int_eq(blk->nmemos, n + 1);
  // Every memo slot in use, then replaced in turn.
  for (int i = 0; i < BLK_MEMOS + 2; i++) {
    int64_t sh[2] = { 1 + i, 50 };
    HostT a, c;
    host_init(&a, TJ_F16, 2, sh, NULL);
    host_init(&c, TJ_F16, 2, sh, NULL);
    host_fill(&a, 4, -1, 1);
    OK(tj_softmax_fwd(blk, &a.t, &c.t, NULL, NULL));
    host_free(&a);
    host_free(&c);
  }
  ck_assert_int_eq(blk->nmemos, BLK_MEMOS);
  // Norm forward: rms and layernorm share a kernel name but not a choice.
  int64_t ms[1] = { 3 };
  HostT r, m;
  host_init(&r, TJ_F32, 1, ms, NULL);
  host_init(&m, TJ_F32, 1, ms, NULL);
  OK(tj_rmsnorm_fwd(blk, &x.t, NULL, 1e-6, &y.t, &r.t, NULL));
  int k0 = tj_blocks_num_kernels(blk);
  OK(tj_layernorm_fwd(blk, &x.t, NULL, NULL, 1e-5, &y.t, &m.t, &r.t, NULL));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), k0 + 1);
  double wy[3 * 50], wm[3], wr[3];
  ref_norm(&x, NULL, NULL, 1e-5, 0, wy, wm, wr);
  check_close(&y, wy, 3, 50, TJ_F16, "layernorm after rmsnorm");
  host_free(&r);
  host_free(&m);
  host_free(&x);
  host_free(&y);
  host_free(&x2);
  host_free(&y2);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("blocks");
  TCase *tc = tcase_create("interp");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, softmax_register_kernel);
  tcase_add_test(tc, softmax_looped_kernel);
  tcase_add_test(tc, softmax_long_rows);
  tcase_add_test(tc, softmax_single_row);
  tcase_add_test(tc, softmax_batch_strided_view);
  tcase_add_test(tc, softmax_in_place_and_row_mask);
  tcase_add_test(tc, layernorm_fwd_bwd);
  tcase_add_test(tc, rmsnorm_fwd_bwd);
  tcase_add_test(tc, empty_is_noop);
  tcase_add_test(tc, bad_inputs);
  tcase_add_test(tc, registry);
  tcase_add_test(tc, kernel_cache);
  tcase_add_test(tc, too_many_defines);
  tcase_add_test(tc, embedded_sources_current);
  tcase_add_test(tc, ptr_cache_hits_and_refusals);
  tcase_add_test(tc, ptr_cache_eviction_and_forget);
  tcase_add_test(tc, ptr_cache_in_block_calls);
  tcase_add_test(tc, choice_memo);
  suite_add_tcase(s, tc);
  TCase *tt = tcase_create("tuning");
  tcase_add_checked_fixture(tt, setup, teardown);
  tcase_set_timeout(tt, 300);
  tcase_add_test(tt, tune_key_buckets);
  tcase_add_test(tt, tune_space_pruning);
  tcase_add_test(tt, tune_off_is_heuristic);
  tcase_add_test(tt, tune_choice_persists);
  tcase_add_test(tt, tune_failure_falls_back);
  suite_add_tcase(s, tt);
  return s;
}

int main(void) { return tj_test_run(suite()); }
