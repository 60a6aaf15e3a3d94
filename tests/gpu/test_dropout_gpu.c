/* test_dropout_gpu.c: the dropout block on the GPU, public API only.
 *
 * - GPU against the interpreter (the same calls on kDLCPU tensors): every
 *   activation, dtype, with and without bias, K % 4 == 0 and not, padded and
 *   batch-strided rows. The mask must agree bit for bit (every element the
 *   reference Philox drops is +0 on both), and so must the outputs of the
 *   activations made of exact IEEE operations; gelu and gelu_tanh (erf,
 *   tanh and exp differ between libm and the GPU's polynomials) within
 *   ref_tol. dbias against the double reference.
 * - The benchmark shapes (xFormers' layernorm shapes and 32768 x 4096):
 *   the whole mask against the reference Philox, the kept fraction and the
 *   row correlation at that size, gelu values on sampled rows, and dx/dbias
 *   run three times bit for bit.
 * Exits 77 (skipped) without a GPU.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu/dropout_ref.h"
#include "gpu_blocks.h"
#include "testutil.h"


static const tj_dtype dtypes[] = { TJ_F16, TJ_BF16, TJ_F32 };

static int exact_act(tj_activation a) { return a != TJ_ACT_GELU && a != TJ_ACT_GELU_TANH; }

// got (GPU) against cpu (interpreter), both M x K views: dropped elements +0
// on both, and bitwise equal (exact activations) or within ref_tol.
static void check_vs_interp(const HostT *got, const HostT *cpu, const tj_dropout_opts *o, int64_t M, int64_t K,
                            const char *what) {
  double *c = malloc(sizeof(double) * (size_t)(M * K));
  ck_assert_ptr_nonnull(c);
  for (int64_t r = 0; r < M; r++)
    for (int64_t j = 0; j < K; j++) {
      double g = host_get(got, r, j), w = host_get(cpu, r, j);
      c[r * K + j] = w;
      if (o->training && o->p > 0 && !ref_keep(o->seed, o->offset, (uint64_t)(r * K + j), o->p))
        ck_assert_msg(g == 0 && !signbit(g) && w == 0 && !signbit(w), "%s: (%lld, %lld) dropped, gpu %g cpu %g",
                      what, (long long)r, (long long)j, g, w);
      if (exact_act(o->act))
        ck_assert_msg(memcmp(&g, &w, sizeof g) == 0 || (g != g && w != w), "%s: (%lld, %lld) gpu %.9g cpu %.9g",
                      what, (long long)r, (long long)j, g, w);
    }
  double e = ref_err(got, c, M, K);
  ck_assert_msg(e <= ref_tol(got->dt), "%s: gpu vs interpreter error %g", what, e);
  free(c);
}

// x [B, S, K] (rows padded by pad, and a batch gap when gap), on both
// devices; fwd and bwd with dbias.
static void vs_interp_case(tj_dtype dt, int64_t B, int64_t S, int64_t K, int64_t pad, int64_t gap, int has_bias,
                           const tj_dropout_opts *o) {
  int64_t shape[3] = { B, S, K }, xs[3] = { S * (K + pad) + gap, K + pad, 1 }, ks[1] = { K }, M = B * S;
  DevT x, b, y, dy, dx, db;
  dev_init(&x, dt, 3, shape, xs);
  dev_init(&b, dt, 1, ks, NULL);
  dev_init(&y, dt, 3, shape, NULL);
  dev_init(&dy, dt, 3, shape, NULL);
  dev_init(&dx, dt, 3, shape, xs);
  dev_init(&db, dt, 1, ks, NULL);
  host_fill(&x.h, 11 + (uint64_t)K, -3, 3);
  host_fill(&b.h, 12, -0.5, 0.5);
  host_fill(&dy.h, 13, -1, 1);
  dev_up(&x), dev_up(&b), dev_up(&dy);
  HostT cy, cdx, cdb;
  host_init(&cy, dt, 3, shape, NULL);
  host_init(&cdx, dt, 3, shape, xs);
  host_init(&cdb, dt, 1, ks, NULL);
  const DLTensor *gb = has_bias ? &b.t : NULL, *hb = has_bias ? &b.h.t : NULL;
  char what[160];
  snprintf(what, sizeof what, "%s %s bias=%d %lldx%lldx%lld p=%g", tj_dtype_name(dt), tj_activation_name(o->act),
           has_bias, (long long)B, (long long)S, (long long)K, o->p);
  OK(tj_dropout_fwd(blk, &x.t, gb, &y.t, o, stream));
  OK(tj_dropout_fwd(blk, &x.h.t, hb, &cy.t, o, NULL));
  dev_down(&y);
  check_vs_interp(&y.h, &cy, o, M, K, what);
  OK(tj_dropout_bwd(blk, &dy.t, &x.t, gb, &dx.t, &db.t, o, stream));
  OK(tj_dropout_bwd(blk, &dy.h.t, &x.h.t, hb, &cdx.t, &cdb.t, o, NULL));
  dev_down(&dx), dev_down(&db);
  strncat(what, " dx", sizeof what - strlen(what) - 1);
  check_vs_interp(&dx.h, &cdx, o, M, K, what);
  double *wdx = malloc(sizeof(double) * (size_t)(M * K)), *wdb = malloc(sizeof(double) * (size_t)K);
  ck_assert(wdx && wdb);
  ref_dropout_bwd(&dy.h, &x.h, has_bias ? &b.h : NULL, o, wdx, wdb);
  double terms = 0, e = 0;
  for (int64_t i = 0; i < M * K; i++) terms = fmax(terms, fabs(wdx[i]));
  for (int64_t j = 0; j < K; j++) e = fmax(e, fabs(host_get_at(&db.h, j) - wdb[j]) / (fabs(wdb[j]) + terms + 1e-30));
  ck_assert_msg(e <= ref_tol(dt), "%s dbias: error %g", what, e);
  free(wdx), free(wdb);
  host_free(&cy), host_free(&cdx), host_free(&cdb);
  DevT *all[] = { &x, &b, &y, &dy, &dx, &db };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dev_free(all[i]);
}

START_TEST(gpu_matches_interpreter) {
  for (int d = 0; d < 3; d++)
    for (int a = 0; a < TJ_ACT_COUNT; a++) {
      tj_dropout_opts o = opts_of((tj_activation)a, a % 2 ? 0.1 : 0.5, 1000 + (uint64_t)a, 1ull << 33);
      vs_interp_case(dtypes[d], 1, 64, 1000, 0, 0, 1, &o);
      vs_interp_case(dtypes[d], 3, 5, 4096, 8, 13, a % 2, &o);   // batch-strided: rows wrap per program
      vs_interp_case(dtypes[d], 1, 33, 12289, 3, 0, 1, &o);       // K % 4 != 0, several column blocks
      vs_interp_case(dtypes[d], 2, 40, 36, 0, 0, 0, &o);          // short rows, many per program
    }
  tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.0, 1, 1);            // p = 0
  vs_interp_case(TJ_F16, 1, 64, 1000, 0, 0, 1, &o);
  o = opts_of(TJ_ACT_SQUARED_RELU, 0.3, ~0ull, ~0ull - 100);      // counters wrap
  vs_interp_case(TJ_BF16, 1, 64, 1000, 0, 0, 1, &o);
}
END_TEST

static double corr_rows(const uint8_t *m, int64_t M, int64_t K, int64_t lag) {
  double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
  int64_t n = (M - lag) * K;
  for (int64_t i = 0; i < n; i++) {
    double x = m[i], y = m[i + lag * K];
    sa += x, sb += y, sab += x * y, saa += x * x, sbb += y * y;
  }
  double cov = sab / n - (sa / n) * (sb / n);
  return cov / sqrt((saa / n - (sa / n) * (sa / n)) * (sbb / n - (sb / n) * (sb / n)));
}

// The full mask of an M x K f16 call against the reference, with its rate
// and row correlations.
static void big_mask_case(int64_t M, int64_t K, double p, uint64_t seed, uint64_t offset) {
  int64_t shape[2] = { M, K }, n = M * K;
  DevT x, y;
  dev_init(&x, TJ_F16, 2, shape, NULL);
  dev_init(&y, TJ_F16, 2, shape, NULL);
  uint16_t one = ref_f32_to_f16(1.0f);
  for (int64_t i = 0; i < n; i++) memcpy((char *)x.h.buf + 2 * i, &one, 2);
  dev_up(&x);
  tj_dropout_opts o = opts_of(TJ_ACT_NONE, p, seed, offset);
  OK(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &o, stream));
  dev_down(&y);
  uint8_t *m = malloc((size_t)n);
  ck_assert_ptr_nonnull(m);
  int64_t kept = 0;
  const uint16_t *yv = y.h.buf;
  for (int64_t i = 0; i < n; i++) {
    m[i] = yv[i] != 0;
    kept += m[i];
    if (m[i] != ref_keep(seed, offset, (uint64_t)i, p))
      ck_abort_msg("%lldx%lld p=%g: element %lld is %s", (long long)M, (long long)K, p, (long long)i,
                   m[i] ? "kept, the reference drops it" : "dropped, the reference keeps it");
  }
  double sd = sqrt(p * (1 - p) / n);
  ck_assert_msg(fabs((double)kept / n - (1 - p)) <= 5 * sd + 1e-12, "kept fraction %g, want %g", (double)kept / n,
                1 - p);
  static const int64_t lags[] = { 1, 16, 32, 64, 128 };
  for (size_t i = 0; i < 5 && lags[i] < M; i++) {
    double c = corr_rows(m, M, K, lags[i]);
    ck_assert_msg(fabs(c) <= 6 / sqrt((double)((M - lags[i]) * K)), "rows i, i+%lld: correlation %g",
                  (long long)lags[i], c);
  }
  free(m);
  dev_free(&x), dev_free(&y);
}

static const int64_t bench_shapes[][3] = {
  { 8, 256, 512 }, { 8, 512, 1024 }, { 4, 1024, 1024 }, { 2, 2048, 2048 }, { 2, 4096, 4096 }, { 1, 2048, 12288 },
  { 1, 32768, 4096 },
};

START_TEST(benchmark_shape_masks) {
  for (size_t s = 0; s < sizeof bench_shapes / sizeof bench_shapes[0]; s++) {
    const int64_t *sh = bench_shapes[s];
    big_mask_case(sh[0] * sh[1], sh[2], 0.1, 0x5eed + s, 77);
    if (s == 6) big_mask_case(sh[0] * sh[1], sh[2], 0.5, 3, 1ull << 40);
  }
}
END_TEST

// gelu with bias on the benchmark shapes: values on sampled rows against
// the reference, then the backward pass three times bit for bit.
START_TEST(benchmark_shape_values_and_determinism) {
  for (size_t s = 0; s < sizeof bench_shapes / sizeof bench_shapes[0]; s++)
    for (int d = 0; d < 2; d++) {
      const int64_t *sh = bench_shapes[s];
      int64_t M = sh[0] * sh[1], K = sh[2], shape[2] = { M, K }, ks[1] = { K };
      tj_dtype dt = dtypes[d];
      DevT x, b, y, dy, dx, db;
      dev_init(&x, dt, 2, shape, NULL);
      dev_init(&b, dt, 1, ks, NULL);
      dev_init(&y, dt, 2, shape, NULL);
      dev_init(&dy, dt, 2, shape, NULL);
      dev_init(&dx, dt, 2, shape, NULL);
      dev_init(&db, dt, 1, ks, NULL);
      host_fill(&x.h, 1, -3, 3);
      host_fill(&b.h, 2, -0.5, 0.5);
      host_fill(&dy.h, 3, -1, 1);
      dev_up(&x), dev_up(&b), dev_up(&dy);
      tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.1, 99 + s, 0);
      OK(tj_dropout_fwd(blk, &x.t, &b.t, &y.t, &o, stream));
      dev_down(&y);
      // Rows 0, 97, 194, ... as a [rows, K] strided view of the host copies.
      int64_t step = 97, nr = (M + step - 1) / step;
      HostT xs = x.h, ys = y.h;
      xs.t.shape = xs.shape, ys.t.shape = ys.shape;
      xs.t.strides = xs.strides, ys.t.strides = ys.strides;
      xs.shape[0] = ys.shape[0] = nr;
      xs.strides[0] = ys.strides[0] = step * K;
      double *want = malloc(sizeof(double) * (size_t)(nr * K));
      ck_assert_ptr_nonnull(want);
      for (int64_t r = 0; r < nr; r++)
        for (int64_t j = 0; j < K; j++) {
          double v = host_get(&xs, r, j) + host_get_at(&b.h, j);
          double a = ref_act(TJ_ACT_GELU, v, 0, 0);
          want[r * K + j] = ref_keep(o.seed, o.offset, (uint64_t)(r * step * K + j), o.p) ? a * (float)(1 / 0.9) : 0;
        }
      double e = ref_err(&ys, want, nr, K);
      ck_assert_msg(e <= ref_tol(dt), "gelu %s %lldx%lld: error %g", tj_dtype_name(dt), (long long)M, (long long)K, e);
      free(want);
      OK(tj_dropout_bwd(blk, &dy.t, &x.t, &b.t, &dx.t, &db.t, &o, stream));
      dev_down(&dx), dev_down(&db);
      void *c0 = malloc(dx.h.nbytes), *c1 = malloc(db.h.nbytes);
      ck_assert(c0 && c1);
      memcpy(c0, dx.h.buf, dx.h.nbytes);
      memcpy(c1, db.h.buf, db.h.nbytes);
      for (int run = 0; run < 3; run++) {
        OK(tj_dropout_bwd(blk, &dy.t, &x.t, &b.t, &dx.t, &db.t, &o, stream));
        dev_down(&dx), dev_down(&db);
        ck_assert(memcmp(c0, dx.h.buf, dx.h.nbytes) == 0);
        ck_assert_msg(memcmp(c1, db.h.buf, db.h.nbytes) == 0, "dbias differs between runs (%lldx%lld)",
                      (long long)M, (long long)K);
      }
      // dbias against the double reference on the full tensor (cheap enough
      // for all but the largest shape, which the smaller ones cover).
      if (M * K <= (1 << 24)) {
        double *wdx = malloc(sizeof(double) * (size_t)(M * K)), *wdb = malloc(sizeof(double) * (size_t)K);
        ck_assert(wdx && wdb);
        ref_dropout_bwd(&dy.h, &x.h, &b.h, &o, wdx, wdb);
        double terms = 0, err = 0;
        for (int64_t i = 0; i < M * K; i++) terms = fmax(terms, fabs(wdx[i]));
        for (int64_t j = 0; j < K; j++)
          err = fmax(err, fabs(host_get_at(&db.h, j) - wdb[j]) / (fabs(wdb[j]) + terms + 1e-30));
        ck_assert_msg(err <= ref_tol(dt), "dbias %lldx%lld: error %g", (long long)M, (long long)K, err);
        ck_assert_msg(ref_err(&dx.h, wdx, M, K) <= ref_tol(dt), "dx %lldx%lld", (long long)M, (long long)K);
        free(wdx), free(wdb);
      }
      free(c0), free(c1);
      DevT *all[] = { &x, &b, &y, &dy, &dx, &db };
      for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) dev_free(all[i]);
    }
}
END_TEST

START_TEST(host_pointer_refused) {
  DevT x, y;
  int64_t shape[2] = { 4, 128 };
  dev_init(&x, TJ_F16, 2, shape, NULL);
  dev_init(&y, TJ_F16, 2, shape, NULL);
  DLTensor hx = x.t;
  hx.data = x.h.buf;
  tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.1, 1, 0);
  ck_assert_int_eq(tj_dropout_fwd(blk, &hx, NULL, &y.t, &o, stream), TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(tj_ctx_last_error(ctx), "x claims kDLCUDA but its data") != NULL, "%s", tj_ctx_last_error(ctx));
  dev_free(&x), dev_free(&y);
}
END_TEST

int main(void) {
  int gpu = tj_test_gpu_or_skip("test_dropout_gpu");
  if (gpu != 0) return gpu;
  Suite *s = suite_create("dropout_gpu");
  const TTest *const tests[] = { host_pointer_refused, gpu_matches_interpreter, benchmark_shape_masks,
    benchmark_shape_values_and_determinism };
  tj_test_add_each(s, tests, (int)(sizeof tests / sizeof tests[0]), setup, teardown, 1200);
  return tj_test_run(s);
}
