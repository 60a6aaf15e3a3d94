/* test_blocks_gpu.c: the block library on the GPU, public API only.
 *
 * Every xFormers benchmark shape (shared/ANCHORS.md) for softmax (plain,
 * causal, log; f16, bf16, f32) and layernorm (f16, bf16, f32, fwd and bwd),
 * rows up to N = 262144 (the looped online kernels), K = 1, 3, 1000, 4096,
 * 12289 (and for the norms 5000, 8193 and 12288: the three-chunk kernels),
 * strided rows, RMSNorm, on a non-default stream, compared with the
 * double references of tests/cpu/blocks_ref.h at ref_tol per dtype; the
 * layernorm backward pass is run twice and compared bit for bit. Exits 77
 * (skipped) without a GPU.
 *
 * Those sweeps pin the heuristic tile configs (tj_blocks_set_autotune(b, 0):
 * tuning each of their hundred-odd keys would take minutes). The *_tuned
 * cases run with the autotuner on, in a fresh cache directory: a set of
 * shapes covering short, medium, long and 12288-wide rows, strided rows and
 * every variant is tuned, checked against the references, then run again by
 * a new handle, which must take every config from the stored results without
 * benchmarking. In-place calls are tuned too (the benchmark must not touch
 * the caller's data).
 */
#define _GNU_SOURCE
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu/blocks_ref.h"
#include "gpu_blocks.h"
#include "testutil.h"


static void check_close(const HostT *got, const double *want, int64_t m, int64_t k, tj_dtype dt,
                        const char *what, double scale_min) {
  double e = ref_err_scaled(got, want, m, k, scale_min);
  ck_assert_msg(e <= ref_tol(dt), "%s (%s, %lld x %lld): error %g > %g", what, tj_dtype_name(dt),
                (long long)m, (long long)k, e, ref_tol(dt));
}

static const tj_dtype dtypes[] = { TJ_F16, TJ_BF16, TJ_F32 };

static void softmax_case(tj_dtype dt, int64_t B, int64_t S, int64_t K, int64_t pad, int log_, int causal,
                         int with_mask, int bwd) {
  DevT x, y, mask;
  int64_t shape[3] = { B, S, K }, xs[3] = { S * (K + pad), K + pad, 1 }, ms[2] = { S, K };
  dev_init(&x, dt, 3, shape, xs);
  dev_init(&y, dt, 3, shape, NULL);
  host_fill(&x.h, 17 + (uint64_t)K, -6.0, 6.0);
  dev_up(&x);
  if (with_mask) {
    dev_init(&mask, dt, 2, ms, NULL);
    host_fill(&mask.h, 5, -2.0, 2.0);
    dev_up(&mask);
  }
  tj_softmax_opts o = { .log = log_, .causal = causal, .mask = with_mask ? &mask.t : NULL };
  OK(tj_softmax_fwd(blk, &x.t, &y.t, &o, stream));
  dev_down(&y);
  int64_t M = B * S;
  double *want = malloc(sizeof(double) * (size_t)(M * K));
  ck_assert_ptr_nonnull(want);
  ref_softmax(&x.h, with_mask ? &mask.h : NULL, log_, causal, want);
  char what[128];
  snprintf(what, sizeof what, "softmax %lldx%lldx%lld log=%d causal=%d mask=%d", (long long)B,
           (long long)S, (long long)K, log_, causal, with_mask);
  check_close(&y.h, want, M, K, dt, what, 0.0);
  if (bwd) {
    DevT dy, dx;
    dev_init(&dy, dt, 3, shape, NULL);
    dev_init(&dx, dt, 3, shape, NULL);
    host_fill(&dy.h, 99, -1.0, 1.0);
    dev_up(&dy);
    OK(tj_softmax_bwd(blk, &y.t, &dy.t, &dx.t, &o, stream));
    dev_down(&dx);
    ref_softmax_bwd(&y.h, &dy.h, log_, causal, want);
    snprintf(what, sizeof what, "softmax_bwd %lldx%lldx%lld log=%d causal=%d", (long long)B, (long long)S,
             (long long)K, log_, causal);
    check_close(&dx.h, want, M, K, dt, what, 0.0);
    dev_free(&dy);
    dev_free(&dx);
  }
  free(want);
  dev_free(&x);
  dev_free(&y);
  if (with_mask) dev_free(&mask);
}

static const int64_t sm_shapes[][3] = {
  { 8, 384, 128 }, { 8, 784, 512 }, { 4, 1024, 768 }, { 4, 2048, 1024 },
  { 2, 2048, 2048 }, { 2, 2048, 4096 }, { 2, 4096, 4096 }, { 1, 2048, 12288 },
};

START_TEST(softmax_xformers_shapes) {
  OK(tj_blocks_set_autotune(blk, 0));
  for (size_t s = 0; s < sizeof sm_shapes / sizeof sm_shapes[0]; s++)
    for (int d = 0; d < 3; d++) {
      const int64_t *sh = sm_shapes[s];
      softmax_case(dtypes[d], sh[0], sh[1], sh[2], 0, 0, 0, 0, d == 0);
      softmax_case(dtypes[d], sh[0], sh[1], sh[2], 0, 0, 1, 0, d == 0);
      softmax_case(dtypes[d], sh[0], sh[1], sh[2], 0, 1, 0, 0, d == 1);
    }
}
END_TEST

START_TEST(softmax_row_lengths) {
  OK(tj_blocks_set_autotune(blk, 0));
  static const int64_t ks[] = { 1, 3, 1000, 4096, 12289, 16384, 16385, 32768, 262144 };
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
    for (int d = 0; d < 3; d++) {
      int64_t K = ks[i];
      int64_t S = K > 16384 ? 3 : 37;
      softmax_case(dtypes[d], 2, S, K, 0, 0, 0, 0, 1);
      softmax_case(dtypes[d], 1, S, K, 5, 1, 1, 1, 1);   // stride > K, every variant at once
    }
  softmax_case(TJ_F16, 1, 1, 262144, 0, 0, 0, 0, 1);    // M = 1
}
END_TEST

static void norm_case(tj_dtype dt, int rms, int64_t M, int64_t K, int64_t pad, int has_w, int has_b,
                      int determinism) {
  DevT x, y, w, b, mean, rstd, dy, dx, dw, db;
  int64_t shape[2] = { M, K }, xs[2] = { K + pad, 1 }, ks[1] = { K }, ms[1] = { M };
  dev_init(&x, dt, 2, shape, xs);
  dev_init(&y, dt, 2, shape, NULL);
  dev_init(&w, dt, 1, ks, NULL);
  dev_init(&b, dt, 1, ks, NULL);
  dev_init(&mean, TJ_F32, 1, ms, NULL);
  dev_init(&rstd, TJ_F32, 1, ms, NULL);
  dev_init(&dy, dt, 2, shape, NULL);
  dev_init(&dx, dt, 2, shape, xs);
  dev_init(&dw, dt, 1, ks, NULL);
  dev_init(&db, dt, 1, ks, NULL);
  host_fill(&x.h, 21 + (uint64_t)K, -2.0, 3.0);
  host_fill(&w.h, 22, 0.5, 1.5);
  host_fill(&b.h, 23, -0.5, 0.5);
  host_fill(&dy.h, 31, -1.0, 1.0);
  dev_up(&x);
  dev_up(&w);
  dev_up(&b);
  dev_up(&dy);
  const DLTensor *wt = has_w ? &w.t : NULL, *bt = has_b ? &b.t : NULL;
  if (rms) OK(tj_rmsnorm_fwd(blk, &x.t, wt, 1e-5, &y.t, &rstd.t, stream));
  else OK(tj_layernorm_fwd(blk, &x.t, wt, bt, 1e-5, &y.t, &mean.t, &rstd.t, stream));
  dev_down(&y);
  dev_down(&rstd);
  if (!rms) dev_down(&mean);
  double *want = malloc(sizeof(double) * (size_t)(M * K));
  double *wdw = malloc(sizeof(double) * (size_t)K), *wdb = malloc(sizeof(double) * (size_t)K);
  ck_assert(want && wdw && wdb);
  ref_norm(&x.h, has_w ? &w.h : NULL, has_b && !rms ? &b.h : NULL, 1e-5, rms, want, NULL, NULL);
  char what[128];
  snprintf(what, sizeof what, "%s %lldx%lld w=%d b=%d", rms ? "rmsnorm" : "layernorm", (long long)M,
           (long long)K, has_w, has_b);
  check_close(&y.h, want, M, K, dt, what, 0.0);

  if (rms) OK(tj_rmsnorm_bwd(blk, &dy.t, &x.t, wt, &rstd.t, &dx.t, &dw.t, stream));
  else OK(tj_layernorm_bwd(blk, &dy.t, &x.t, wt, &mean.t, &rstd.t, &dx.t, &dw.t, &db.t, stream));
  dev_down(&dx);
  dev_down(&dw);
  dev_down(&db);
  ref_norm_bwd(&x.h, &dy.h, has_w ? &w.h : NULL, (const float *)mean.h.buf, (const float *)rstd.h.buf, rms,
               want, wdw, wdb);
  check_close(&dx.h, want, M, K, dt, "dx", ref_norm_bwd_scale(&dy.h, has_w ? &w.h : NULL, (const float *)rstd.h.buf));
  check_close(&dw.h, wdw, 1, K, dt, "dw", 0.0);
  if (!rms) check_close(&db.h, wdb, 1, K, dt, "db", 0.0);
  if (determinism) {
    void *c[3] = { malloc(dx.h.nbytes), malloc(dw.h.nbytes), malloc(db.h.nbytes) };
    ck_assert(c[0] && c[1] && c[2]);
    memcpy(c[0], dx.h.buf, dx.h.nbytes);
    memcpy(c[1], dw.h.buf, dw.h.nbytes);
    memcpy(c[2], db.h.buf, db.h.nbytes);
    for (int run = 0; run < 3; run++) {
      OK(tj_layernorm_bwd(blk, &dy.t, &x.t, wt, &mean.t, &rstd.t, &dx.t, &dw.t, &db.t, stream));
      dev_down(&dx);
      dev_down(&dw);
      dev_down(&db);
      ck_assert(memcmp(c[0], dx.h.buf, dx.h.nbytes) == 0);
      ck_assert(memcmp(c[1], dw.h.buf, dw.h.nbytes) == 0);
      ck_assert(memcmp(c[2], db.h.buf, db.h.nbytes) == 0);
    }
    for (int i = 0; i < 3; i++) free(c[i]);
  }
  free(want);
  free(wdw);
  free(wdb);
  DevT *all[] = { &x, &y, &w, &b, &mean, &rstd, &dy, &dx, &dw, &db };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dev_free(all[i]);
}

static const int64_t ln_shapes[][3] = {
  { 8, 256, 512 }, { 8, 512, 1024 }, { 4, 1024, 1024 }, { 2, 2048, 2048 }, { 2, 4096, 4096 }, { 1, 2048, 12288 },
};

START_TEST(layernorm_xformers_shapes) {
  OK(tj_blocks_set_autotune(blk, 0));
  for (size_t s = 0; s < sizeof ln_shapes / sizeof ln_shapes[0]; s++)
    for (int d = 0; d < 3; d++) {
      const int64_t *sh = ln_shapes[s];
      norm_case(dtypes[d], 0, sh[0] * sh[1], sh[2], 0, 1, 1, s == 4);
    }
}
END_TEST

START_TEST(norm_row_lengths) {
  OK(tj_blocks_set_autotune(blk, 0));
  static const int64_t ks[] = { 1, 3, 1000, 4096, 5000, 8193, 12288, 12289 };
  for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++)
    for (int d = 0; d < 3; d++) {
      norm_case(dtypes[d], 0, 37, ks[i], 3, 0, 0, 0);
      norm_case(dtypes[d], 0, 1, ks[i], 0, 1, 0, 0);
      norm_case(dtypes[d], 1, 37, ks[i], 0, 1, 0, 0);
    }
}
END_TEST

START_TEST(host_pointer_refused) {
  DevT x, y;
  int64_t shape[2] = { 4, 128 };
  dev_init(&x, TJ_F16, 2, shape, NULL);
  dev_init(&y, TJ_F16, 2, shape, NULL);
  DLTensor hx = x.t;
  hx.data = x.h.buf;   // host memory, claimed to be on the GPU
  tj_status st = tj_softmax_fwd(blk, &hx, &y.t, NULL, stream);
  ck_assert_int_eq(st, TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(tj_ctx_last_error(ctx), "x claims kDLCUDA but its data") != NULL, "%s",
                tj_ctx_last_error(ctx));
  dev_free(&x);
  dev_free(&y);
}
END_TEST


// ---------------------------------------------------------------- tuned

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

static int tuning_enabled(void) {
  const char *v = getenv("TILEJIT_AUTOTUNE");
  return !(v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")));
}

// A fresh cache directory (so the first pass tunes), tuning on.
static char *tuned_setup(void) {
  char tmpl[] = "/tmp/tj_blocks_gpu_tune_XXXXXX";
  char *dir = mkdtemp(tmpl);
  ck_assert_ptr_nonnull(dir);
  dir = strdup(dir);
  OK(tj_ctx_set_cache_dir(ctx, dir));
  OK(tj_blocks_set_autotune(blk, 1));
  return dir;
}

// pass 0 tunes (the keys are new), pass 1 is a new handle on the same
// cache: every config comes from disk.
static void tuned_check(int pass) {
  tj_tune_stats st;
  OK(tj_blocks_tune_stats(blk, &st));
  if (!tuning_enabled()) {
    ck_assert_int_eq(st.tunings + st.disk_hits, 0);
    return;
  }
  if (pass == 0) {
    ck_assert_uint_gt(st.tunings, 0);
    ck_assert_uint_gt(st.configs_timed, st.tunings);   // several candidates per key
    ck_assert_uint_eq(st.disk_writes, st.tunings);
  } else {
    ck_assert_uint_eq(st.tunings, 0);
    ck_assert_uint_gt(st.disk_hits, 0);
    ck_assert_uint_eq(st.timing_launches, 0);
  }
}

static void new_handle(void) {
  tj_blocks_free(blk);
  ck_assert_int_eq(tj_blocks_create(ctx, &blk), TJ_OK);
  OK(tj_blocks_set_autotune(blk, 1));
}

START_TEST(softmax_tuned) {
  char *dir = tuned_setup();
  static const int64_t shapes[][4] = {   // B, S, K, pad
    { 8, 384, 128, 0 }, { 4, 1024, 768, 0 }, { 2, 4096, 4096, 0 }, { 1, 2048, 12288, 0 },
    { 2, 37, 1000, 5 }, { 3, 5, 40, 3 },
  };
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      for (int d = 0; d < 3; d++) {
        const int64_t *sh = shapes[i];
        softmax_case(dtypes[d], sh[0], sh[1], sh[2], sh[3], 0, 0, 0, 1);
        if (d == 0) {
          softmax_case(dtypes[d], sh[0], sh[1], sh[2], sh[3], 1, 1, 1, 1);   // log, causal, mask
          softmax_case(dtypes[d], sh[0], sh[1], sh[2], sh[3], 0, 1, 0, 1);
        }
      }
    tuned_check(pass);
    if (pass == 0) new_handle();
  }
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}
END_TEST

START_TEST(norm_tuned) {
  char *dir = tuned_setup();
  static const int64_t shapes[][3] = {   // M, K, pad
    { 2048, 512, 0 }, { 8192, 4096, 0 }, { 2048, 12288, 0 }, { 37, 1000, 3 }, { 4096, 8192, 0 },
  };
  for (int pass = 0; pass < 2; pass++) {
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
      for (int d = 0; d < 3; d++) {
        const int64_t *sh = shapes[i];
        norm_case(dtypes[d], 0, sh[0], sh[1], sh[2], 1, 1, d == 0);
        if (d == 1) norm_case(dtypes[d], 1, sh[0], sh[1], sh[2], 1, 0, 0);
      }
    tuned_check(pass);
    if (pass == 0) new_handle();
  }
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}
END_TEST

// The call that tunes runs in place: the candidates write scratch copies,
// so x is still the input when the chosen config runs.
START_TEST(in_place_tuned) {
  char *dir = tuned_setup();
  for (int d = 0; d < 3; d++) {
    DevT x;
    int64_t shape[2] = { 3000, 2000 };
    dev_init(&x, dtypes[d], 2, shape, NULL);
    host_fill(&x.h, 7, -5.0, 5.0);
    dev_up(&x);
    double *want = malloc(sizeof(double) * 3000 * 2000);
    ck_assert_ptr_nonnull(want);
    ref_softmax(&x.h, NULL, 0, 0, want);
    OK(tj_softmax_fwd(blk, &x.t, &x.t, NULL, stream));
    dev_down(&x);
    check_close(&x.h, want, 3000, 2000, dtypes[d], "softmax in place, tuned", 0.0);
    // The backward pass in place (dx = dy) from the softmax output.
    DevT dy;
    dev_init(&dy, dtypes[d], 2, shape, NULL);
    host_fill(&dy.h, 8, -1.0, 1.0);
    dev_up(&dy);
    ref_softmax_bwd(&x.h, &dy.h, 0, 0, want);
    OK(tj_softmax_bwd(blk, &x.t, &dy.t, &dy.t, NULL, stream));
    dev_down(&dy);
    check_close(&dy.h, want, 3000, 2000, dtypes[d], "softmax_bwd in place, tuned", 0.0);
    free(want);
    dev_free(&dy);
    dev_free(&x);
  }
  tuned_check(0);
  nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(dir);
}
END_TEST

int main(void) {
  int gpu = tj_test_gpu_or_skip("test_blocks_gpu");
  if (gpu != 0) return gpu;
  Suite *s = suite_create("blocks_gpu");
  const TTest *const tests[] = { host_pointer_refused, softmax_row_lengths, norm_row_lengths,
    softmax_xformers_shapes, layernorm_xformers_shapes, softmax_tuned, norm_tuned, in_place_tuned };
  tj_test_add_each(s, tests, (int)(sizeof tests / sizeof tests[0]), setup, teardown, 900);
  return tj_test_run(s);
}
