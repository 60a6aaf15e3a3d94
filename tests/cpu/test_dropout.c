/* test_dropout.c: the dropout block (blocks/dropout.c, dropout.tj) through
 * the interpreter.
 *
 * Values are compared with the double references of dropout_ref.h at the
 * tolerance of ref_tol (f32 2e-5, f16 2e-3, bf16 1.6e-2, relative with a
 * floor at 5% of the tensor's largest value); the mask is compared exactly,
 * element by element, with the reference Philox (itself checked against
 * Random123's known-answer vectors). Statistical checks use 2^20-element
 * masks and bounds of 5 to 6 standard deviations, so a correct generator
 * fails them with probability below 1e-6.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/blocks_int.h"
#include "dropout_ref.h"
#include "blocks_fixture.h"
#include "testutil.h"

static void setup(void) { fixture_open(); }
static void teardown(void) { fixture_close(); }

static const tj_dtype dtypes[] = { TJ_F32, TJ_F16, TJ_BF16 };

static void check_close(const HostT *got, const double *want, int64_t m, int64_t k, tj_dtype dt,
                        const char *what) {
  double e = ref_err(got, want, m, k);
  ck_assert_msg(e <= ref_tol(dt), "%s (%s, %lld x %lld): error %g > %g", what, tj_dtype_name(dt),
                (long long)m, (long long)k, e, ref_tol(dt));
}

// Every element the reference drops is exactly +0 in got.
static void check_dropped_zero(const HostT *got, const double *want, const tj_dropout_opts *o, int64_t m,
                               int64_t k, const char *what) {
  if (!o->training || o->p == 0) return;
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < k; c++) {
      if (ref_keep(o->seed, o->offset, (uint64_t)(r * k + c), o->p)) continue;
      double g = host_get(got, r, c);
      ck_assert_msg(g == 0.0 && !signbit(g) && want[r * k + c] == 0.0, "%s: element (%lld, %lld) is dropped "
                    "but holds %g", what, (long long)r, (long long)c, g);
    }
}

// ---------------------------------------------------------------- Philox and the activations themselves

START_TEST(philox_known_answers) {
  // Random123 kat_vectors, philox4x32 10 rounds: counter, key -> output.
  static const uint32_t kat[3][10] = {
    { 0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 },
    { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
      0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd },
    { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
      0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 },
  };
  for (int t = 0; t < 3; t++) {
    uint32_t out[4];
    ref_philox(kat[t], kat[t] + 4, out);
    for (int i = 0; i < 4; i++)
      ck_assert_msg(out[i] == kat[t][6 + i], "vector %d word %d: %08x, want %08x", t, i, out[i], kat[t][6 + i]);
  }
}
END_TEST

// The reference derivatives against central differences of the reference
// activations, away from the kinks.
START_TEST(activation_derivatives) {
  for (int a = 0; a < TJ_ACT_COUNT; a++) {
    double pa, pb;
    ref_act_params((tj_activation)a, &pa, &pb);
    for (double v = -4.0; v <= 4.0; v += 0.0625 + 1.0 / 1024) {
      if (fabs(v) < 1e-3 || (a == TJ_ACT_SMELU && fabs(fabs(v) - pa) < 1e-3)) continue;
      double h = 1e-5;
      double num = (ref_act((tj_activation)a, v + h, pa, pb) - ref_act((tj_activation)a, v - h, pa, pb)) / (2 * h);
      double an = ref_act_grad((tj_activation)a, v, pa, pb);
      ck_assert_msg(fabs(num - an) <= 1e-7 * (1.0 + fabs(an)), "%s'(%g) = %.12g, central difference %.12g",
                    tj_activation_name((tj_activation)a), v, an, num);
    }
  }
  ck_assert_str_eq(tj_activation_name(TJ_ACT_GELU_TANH), "gelu_tanh");
  ck_assert_str_eq(tj_activation_name(TJ_ACT_COUNT), "?");
  ck_assert_uint_eq(tj_dropout_counters(0), 0);
  ck_assert_uint_eq(tj_dropout_counters(9), 3);
  ck_assert_uint_eq(tj_dropout_counters(12), 3);
}
END_TEST

// ---------------------------------------------------------------- forward and backward against the reference

// x [B, S, K] with rows padded by pad, bias [K] (or none), every output
// compact; forward, then backward with dbias.
static void fwd_bwd_case(tj_dtype dt, int64_t B, int64_t S, int64_t K, int64_t pad, int has_bias,
                         const tj_dropout_opts *o) {
  HostT x, y, bias, dy, dx, db;
  int64_t shape[3] = { B, S, K }, xs[3] = { S * (K + pad), K + pad, 1 }, ks[1] = { K };
  int64_t M = B * S;
  host_init(&x, dt, 3, shape, xs);
  host_init(&y, dt, 3, shape, NULL);
  host_init(&bias, dt, 1, ks, NULL);
  host_init(&dy, dt, 3, shape, NULL);
  host_init(&dx, dt, 3, shape, xs);
  host_init(&db, dt, 1, ks, NULL);
  host_fill(&x, 7 + (uint64_t)K, -3.0, 3.0);
  host_fill(&bias, 8, -0.5, 0.5);
  host_fill(&dy, 9, -1.0, 1.0);
  const DLTensor *bt = has_bias ? &bias.t : NULL;
  char what[160];
  snprintf(what, sizeof what, "dropout %s p=%g train=%d bias=%d %lldx%lldx%lld pad=%lld",
           tj_activation_name(o->act), o->p, o->training, has_bias, (long long)B, (long long)S, (long long)K,
           (long long)pad);

  OK(tj_dropout_fwd(blk, &x.t, bt, &y.t, o, NULL));
  double *want = malloc(sizeof(double) * (size_t)(M * K)), *wdb = malloc(sizeof(double) * (size_t)K);
  ck_assert(want && wdb);
  ref_dropout_fwd(&x, has_bias ? &bias : NULL, o, want);
  check_close(&y, want, M, K, dt, what);
  check_dropped_zero(&y, want, o, M, K, what);

  OK(tj_dropout_bwd(blk, &dy.t, &x.t, bt, &dx.t, &db.t, o, NULL));
  ref_dropout_bwd(&dy, &x, has_bias ? &bias : NULL, o, want, wdb);
  strncat(what, " bwd dx", sizeof what - strlen(what) - 1);
  check_close(&dx, want, M, K, dt, what);
  check_dropped_zero(&dx, want, o, M, K, what);
  // dbias sums M rows: judged against the scale of its terms.
  double e = 0, terms = 0;
  for (int64_t i = 0; i < M * K; i++) terms = fmax(terms, fabs(want[i]));
  for (int64_t c = 0; c < K; c++)
    e = fmax(e, fabs(host_get_at(&db, c) - wdb[c]) / (fabs(wdb[c]) + terms + 1e-30));
  ck_assert_msg(e <= ref_tol(dt), "%s dbias: error %g", what, e);

  // Deterministic: a second backward pass gives the same bits.
  HostT dx2, db2;
  host_init(&dx2, dt, 3, shape, xs);
  host_init(&db2, dt, 1, ks, NULL);
  OK(tj_dropout_bwd(blk, &dy.t, &x.t, bt, &dx2.t, &db2.t, o, NULL));
  ck_assert(memcmp(dx.buf, dx2.buf, dx.nbytes) == 0);
  ck_assert(memcmp(db.buf, db2.buf, db.nbytes) == 0);
  HostT *all[] = { &x, &y, &bias, &dy, &dx, &db, &dx2, &db2 };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
  free(want);
  free(wdb);
}

START_TEST(every_activation) {
  for (int d = 0; d < 3; d++)
    for (int a = 0; a < TJ_ACT_COUNT; a++) {
      tj_dropout_opts o = opts_of((tj_activation)a, 0.25, 1234 + (uint64_t)a, 77);
      fwd_bwd_case(dtypes[d], 2, 5, 96, 8, 1, &o);     // K % 4 == 0, padded rows
      fwd_bwd_case(dtypes[d], 1, 6, 37, 0, a % 2, &o); // K % 4 != 0: per-element counters
    }
}
END_TEST

START_TEST(shapes_and_modes) {
  for (int d = 0; d < 3; d++) {
    tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.1, 42, 0);
    fwd_bwd_case(dtypes[d], 1, 3, 1, 0, 1, &o);       // K = 1
    fwd_bwd_case(dtypes[d], 1, 7, 3, 2, 1, &o);       // K = 3
    fwd_bwd_case(dtypes[d], 1, 4, 1000, 5, 1, &o);    // K = 1000
    fwd_bwd_case(dtypes[d], 1, 1, 4100, 0, 0, &o);    // one row, several column blocks
    o.training = 0;
    fwd_bwd_case(dtypes[d], 2, 3, 40, 0, 1, &o);      // eval: act only
    o.training = 1;
    o.p = 0.0;
    fwd_bwd_case(dtypes[d], 2, 3, 40, 0, 1, &o);      // p = 0
    o = opts_of(TJ_ACT_SQUARED_RELU, 0.5, ~0ull, ~0ull - 5);   // counters wrap past 2^64
    fwd_bwd_case(dtypes[d], 2, 3, 40, 0, 1, &o);
  }
}
END_TEST

// ---------------------------------------------------------------- masks

// The mask of an M x K call: x = 1, act none, no bias, so y = scale or 0.
static uint8_t *mask_of(int64_t M, int64_t K, double p, uint64_t seed, uint64_t offset) {
  HostT x, y;
  int64_t shape[2] = { M, K };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  for (int64_t i = 0; i < M * K; i++) host_set_at(&x, i, 1.0);
  tj_dropout_opts o = opts_of(TJ_ACT_NONE, p, seed, offset);
  OK(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &o, NULL));
  uint8_t *m = malloc((size_t)(M * K));
  ck_assert_ptr_nonnull(m);
  double scale = (float)(1.0 / (1.0 - p));
  for (int64_t i = 0; i < M * K; i++) {
    double v = host_get_at(&y, i);
    ck_assert_msg(v == 0.0 || v == (double)ref_f16_to_f32(ref_f32_to_f16((float)scale)), "y[%lld] = %g",
                  (long long)i, v);
    m[i] = v != 0.0;
  }
  host_free(&x);
  host_free(&y);
  return m;
}

// Pearson correlation of a[i] and b[i] over n pairs (strided views).
static double corr(const uint8_t *a, const uint8_t *b, int64_t n, int64_t stride_a, int64_t stride_b) {
  double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = a[i * stride_a], y = b[i * stride_b];
    sa += x, sb += y, sab += x * y, saa += x * x, sbb += y * y;
  }
  double cov = sab / n - (sa / n) * (sb / n);
  double va = saa / n - (sa / n) * (sa / n), vb = sbb / n - (sb / n) * (sb / n);
  return cov / sqrt(va * vb);
}

START_TEST(mask_matches_reference_and_rate) {
  const int64_t M = 1024, K = 1024, n = M * K;
  static const double ps[] = { 0.1, 0.5 };
  for (int t = 0; t < 2; t++) {
    double p = ps[t];
    uint8_t *m = mask_of(M, K, p, 0x123456789abcdefull, 1000);
    int64_t kept = 0, lane_kept[4] = { 0 };
    for (int64_t i = 0; i < n; i++) {
      ck_assert_msg(m[i] == ref_keep(0x123456789abcdefull, 1000, (uint64_t)i, p), "element %lld", (long long)i);
      kept += m[i];
      lane_kept[i % 4] += m[i];
    }
    double sd = sqrt(p * (1 - p) / n);
    ck_assert_msg(fabs((double)kept / n - (1 - p)) <= 5 * sd, "p = %g: kept %g", p, (double)kept / n);
    for (int l = 0; l < 4; l++)
      ck_assert_msg(fabs((double)lane_kept[l] / (n / 4) - (1 - p)) <= 5 * 2 * sd, "p = %g lane %d: kept %g", p, l,
                    (double)lane_kept[l] / (n / 4));
    free(m);
  }
}
END_TEST

// xFormers once repeated one mask in every 32-row tile: rows i and i + k
// must be uncorrelated for every k, and so must nearby columns.
START_TEST(mask_rows_and_columns_independent) {
  const int64_t M = 1024, K = 1024;
  uint8_t *m = mask_of(M, K, 0.5, 7, 0);
  static const int64_t lags[] = { 1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512 };
  for (size_t i = 0; i < sizeof lags / sizeof lags[0]; i++) {
    int64_t k = lags[i], n = (M - k) * K;
    double c = corr(m, m + k * K, n, 1, 1);
    ck_assert_msg(fabs(c) <= 6 / sqrt((double)n), "rows i and i+%lld: correlation %g", (long long)k, c);
  }
  for (int64_t k = 1; k <= 8; k++) {
    // columns j and j + k over all rows, as one long sequence
    int64_t n = M * K - k;
    double c = corr(m, m + k, n, 1, 1);
    ck_assert_msg(fabs(c) <= 6 / sqrt((double)n), "elements i and i+%lld: correlation %g", (long long)k, c);
  }
  // 32-row tiles: tile t and tile t + 1 agree on about half their elements.
  int64_t same = 0, n = (M - 32) * K;
  for (int64_t i = 0; i < n; i++) same += m[i] == m[i + 32 * K];
  ck_assert_msg(fabs((double)same / n - 0.5) <= 6 * 0.5 / sqrt((double)n), "32-row tiles agree on %g",
                (double)same / n);
  free(m);
}
END_TEST

START_TEST(mask_offsets_and_seeds) {
  const int64_t M = 512, K = 512, n = M * K;
  uint64_t adv = tj_dropout_counters(n);
  uint8_t *a = mask_of(M, K, 0.5, 99, 5000);
  uint8_t *b = mask_of(M, K, 0.5, 99, 5000 + adv);          // the next call, as PyTorch advances
  uint8_t *c = mask_of(M, K, 0.5, 99, 5000 + (1ull << 40)); // far away
  uint8_t *d = mask_of(M, K, 0.5, 100, 5000);               // another seed
  uint8_t *e = mask_of(M, K, 0.5, 99, 5001);                // one counter on
  uint8_t *a2 = mask_of(M, K, 0.5, 99, 5000);
  ck_assert(memcmp(a, a2, (size_t)n) == 0);                  // reproducible
  const uint8_t *others[3] = { b, c, d };
  for (int i = 0; i < 3; i++) {
    double r = corr(a, others[i], n, 1, 1);
    ck_assert_msg(fabs(r) <= 6 / sqrt((double)n), "mask %d correlates with the first: %g", i, r);
  }
  // offset + 1 is the same stream four elements on (documented in blocks.h).
  ck_assert(memcmp(e, a + 4, (size_t)(n - 4)) == 0);
  free(a), free(b), free(c), free(d), free(e), free(a2);
}
END_TEST

// y of a fixed problem: x [3, 5, K] batch-strided with padded rows.
static void run_fixed(int64_t K, tj_activation act, tj_dtype dt, HostT *y, int strided) {
  HostT x, bias;
  int64_t shape[3] = { 3, 5, K }, xs[3] = { 5 * (K + 3) + 11, K + 3, 1 }, ks[1] = { K };
  host_init(&x, dt, 3, shape, strided ? xs : NULL);
  host_init(&bias, dt, 1, ks, NULL);
  host_init(y, dt, 3, shape, NULL);
  host_fill(&x, 5, -2.0, 2.0);
  host_fill(&bias, 6, -0.5, 0.5);
  tj_dropout_opts o = opts_of(act, 0.3, 555, 3);
  OK(tj_dropout_fwd(blk, &x.t, &bias.t, &y->t, &o, NULL));
  host_free(&x);
  host_free(&bias);
}

// The mask, and so every output bit, is the same whatever the tile config,
// the strides, or the counter formula (per element or per group of four).
START_TEST(mask_independent_of_config) {
  static const BlkDropCfg cfgs[] = {
    { 8, 1, 8, 1, false }, { 16, 2, 8, 2, true }, { 64, 4, 4, 1, false }, { 256, 1, 4, 4, false },
    { 32, 8, 4, 2, true }, { 4, 16, 4, 1, false },
  };
  static const int64_t ks[] = { 3, 64, 100 };
  for (int d = 0; d < 3; d++)
    for (size_t ki = 0; ki < 3; ki++) {
      HostT ref;
      blk_dropout_force_config(blk, NULL);
      run_fixed(ks[ki], TJ_ACT_RELU, dtypes[d], &ref, 0);
      for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (int strided = 0; strided < 2; strided++) {
          HostT y;
          blk_dropout_force_config(blk, &cfgs[c]);
          run_fixed(ks[ki], TJ_ACT_RELU, dtypes[d], &y, strided);
          ck_assert_msg(memcmp(y.buf, ref.buf, y.nbytes) == 0, "K = %lld, config %zu, strided %d: y differs",
                        (long long)ks[ki], c, strided);
          host_free(&y);
        }
      host_free(&ref);
    }
  blk_dropout_force_config(blk, NULL);
}
END_TEST

// A forced config reaches the next call: the kernel choice a call
// remembers (core.c's memo) is dropped when the config changes, so the
// second call compiles the forced tile, and a third with the same config
// reuses it.
START_TEST(forced_config_not_remembered_past) {
  HostT y;
  blk_dropout_force_config(blk, NULL);
  run_fixed(64, TJ_ACT_RELU, TJ_F32, &y, 0);
  host_free(&y);
  int n0 = tj_blocks_num_kernels(blk);
  static const BlkDropCfg cfg = { 16, 2, 8, 2, true };
  blk_dropout_force_config(blk, &cfg);
  run_fixed(64, TJ_ACT_RELU, TJ_F32, &y, 0);
  host_free(&y);
  int n1 = tj_blocks_num_kernels(blk);
  ck_assert_int_gt(n1, n0);
  run_fixed(64, TJ_ACT_RELU, TJ_F32, &y, 0);
  host_free(&y);
  ck_assert_int_eq(tj_blocks_num_kernels(blk), n1);
  blk_dropout_force_config(blk, NULL);
}
END_TEST

// The backward pass regenerates the forward mask: with act none and dy = 1,
// dx is scale exactly where y is nonzero.
START_TEST(mask_forward_equals_backward) {
  for (int d = 0; d < 3; d++)
    for (int64_t K = 61; K <= 64; K++) {
      HostT x, y, dy, dx;
      int64_t shape[2] = { 9, K };
      host_init(&x, dtypes[d], 2, shape, NULL);
      host_init(&y, dtypes[d], 2, shape, NULL);
      host_init(&dy, dtypes[d], 2, shape, NULL);
      host_init(&dx, dtypes[d], 2, shape, NULL);
      host_fill(&x, 3, 0.5, 2.0);
      for (int64_t i = 0; i < 9 * K; i++) host_set_at(&dy, i, 1.0);
      tj_dropout_opts o = opts_of(TJ_ACT_NONE, 0.4, 31337, 12);
      OK(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &o, NULL));
      BlkDropCfg cfg = { 16, 2, 4, 1, false };
      blk_dropout_force_config(blk, &cfg);   // another config for the backward pass
      OK(tj_dropout_bwd(blk, &dy.t, NULL, NULL, &dx.t, NULL, &o, NULL));
      blk_dropout_force_config(blk, NULL);
      for (int64_t i = 0; i < 9 * K; i++)
        ck_assert_msg((host_get_at(&y, i) != 0) == (host_get_at(&dx, i) != 0), "K = %lld element %lld", (long long)K,
                      (long long)i);
      host_free(&x), host_free(&y), host_free(&dy), host_free(&dx);
    }
}
END_TEST

// p = 0 and training = 0 give act(x + bias) exactly, from kernels with no
// Philox at all.
START_TEST(no_rng_without_dropout) {
  HostT x, b, y1, y2, y3;
  int64_t shape[2] = { 6, 50 }, ks[1] = { 50 };
  host_init(&x, TJ_F32, 2, shape, NULL);
  host_init(&b, TJ_F32, 1, ks, NULL);
  host_init(&y1, TJ_F32, 2, shape, NULL);
  host_init(&y2, TJ_F32, 2, shape, NULL);
  host_init(&y3, TJ_F32, 2, shape, NULL);
  host_fill(&x, 1, -2, 2);
  host_fill(&b, 2, -1, 1);
  tj_dropout_opts o = opts_of(TJ_ACT_LEAKY_RELU, 0.0, 1, 0);
  OK(tj_dropout_fwd(blk, &x.t, &b.t, &y1.t, &o, NULL));
  o.p = 0.7;
  o.training = 0;
  OK(tj_dropout_fwd(blk, &x.t, &b.t, &y2.t, &o, NULL));
  ck_assert(memcmp(y1.buf, y2.buf, y1.nbytes) == 0);
  for (int64_t r = 0; r < 6; r++)
    for (int64_t c = 0; c < 50; c++) {
      float v = (float)host_get(&x, r, c) + (float)host_get_at(&b, c);
      float want = v <= 0 ? v * (float)o.act_a : v;
      ck_assert_msg(host_get(&y1, r, c) == want, "(%lld, %lld): %g, want %g", (long long)r, (long long)c,
                    host_get(&y1, r, c), want);
    }
  int with = 0, without = 0;
  for (int i = 0; i < blk->nkernels; i++) {
    const char *tir = tj_kernel_tir(blk->kernels[i].k);
    ck_assert(strstr(blk->kernels[i].key, "DROP=false") != NULL);
    without += strstr(tir, "philox") == NULL;
  }
  o.training = 1;
  OK(tj_dropout_fwd(blk, &x.t, &b.t, &y3.t, &o, NULL));
  for (int i = 0; i < blk->nkernels; i++)
    with += strstr(blk->kernels[i].key, "DROP=true") && strstr(tj_kernel_tir(blk->kernels[i].k), "philox");
  ck_assert_int_eq(without, 1);
  ck_assert_int_eq(with, 1);
  HostT *all[] = { &x, &b, &y1, &y2, &y3 };
  for (size_t i = 0; i < 5; i++) host_free(all[i]);
}
END_TEST

START_TEST(in_place) {
  HostT x, x0, dy;
  int64_t shape[2] = { 4, 40 };
  host_init(&x, TJ_BF16, 2, shape, NULL);
  host_init(&x0, TJ_BF16, 2, shape, NULL);
  host_init(&dy, TJ_BF16, 2, shape, NULL);
  host_fill(&x, 4, -2, 2);
  memcpy(x0.buf, x.buf, x.nbytes);
  host_fill(&dy, 5, -1, 1);
  tj_dropout_opts o = opts_of(TJ_ACT_GELU_TANH, 0.2, 8, 8);
  double want[160];
  ref_dropout_fwd(&x0, NULL, &o, want);
  OK(tj_dropout_fwd(blk, &x.t, NULL, &x.t, &o, NULL));
  check_close(&x, want, 4, 40, TJ_BF16, "dropout in place");
  ref_dropout_bwd(&dy, &x0, NULL, &o, want, NULL);
  OK(tj_dropout_bwd(blk, &dy.t, &x0.t, NULL, &dy.t, NULL, &o, NULL));
  check_close(&dy, want, 4, 40, TJ_BF16, "dropout_bwd in place");
  host_free(&x), host_free(&x0), host_free(&dy);
}
END_TEST

// ---------------------------------------------------------------- edges, errors, registry

START_TEST(empty_and_no_rows) {
  HostT x, y, db;
  int64_t shape[2] = { 0, 24 }, ks[1] = { 24 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  host_init(&db, TJ_F16, 1, ks, NULL);
  x.t.data = y.t.data = NULL;
  tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.5, 1, 1);
  OK(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &o, NULL));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);
  // dbias over no rows is zero.
  OK(tj_dropout_bwd(blk, &x.t, &x.t, NULL, &y.t, &db.t, &o, NULL));
  for (int c = 0; c < 24; c++) ck_assert(host_get_at(&db, c) == 0.0);
  host_free(&x), host_free(&y), host_free(&db);
}
END_TEST

START_TEST(bad_inputs) {
  HostT x, y, y2, x64, b, b2, b32, dy, db2;
  int64_t shape[2] = { 4, 128 }, shape2[2] = { 4, 100 }, ks[1] = { 128 }, ks2[1] = { 129 };
  host_init(&x, TJ_F16, 2, shape, NULL);
  host_init(&y, TJ_F16, 2, shape, NULL);
  host_init(&y2, TJ_F16, 2, shape2, NULL);
  host_init(&x64, TJ_F64, 2, shape, NULL);
  host_init(&b, TJ_F16, 1, ks, NULL);
  host_init(&b2, TJ_F16, 1, ks2, NULL);
  host_init(&b32, TJ_F32, 1, ks, NULL);
  host_init(&dy, TJ_F16, 2, shape, NULL);
  host_init(&db2, TJ_F16, 1, ks2, NULL);
  host_fill(&x, 1, -1, 1);
  host_fill(&dy, 2, -1, 1);
  unsigned char sentinel[4 * 128 * 2];
  memcpy(sentinel, y.buf, sizeof sentinel);
  tj_dropout_opts o = opts_of(TJ_ACT_GELU, 0.1, 1, 0);

  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, NULL, NULL), TJ_ERR_INVALID_ARG, "dropout: opts is NULL");
  expect_error(tj_dropout_fwd(blk, &x64.t, NULL, &y.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "x has dtype f64; dropout supports f16, bf16, f32");
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y2.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "y shape [4, 100] differs from x shape [4, 128]");
  expect_error(tj_dropout_fwd(blk, NULL, NULL, &y.t, &o, NULL), TJ_ERR_INVALID_ARG, "dropout: x is NULL");
  expect_error(tj_dropout_fwd(blk, &x.t, &b2.t, &y.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "bias shape [129] differs from [K] = [128]");
  expect_error(tj_dropout_fwd(blk, &x.t, &b32.t, &y.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "bias has dtype f32 but x has f16");
  static const double bad_p[] = { 1.0, -0.1, 1.5 };
  for (int i = 0; i < 3; i++) {
    tj_dropout_opts q = o;
    q.p = bad_p[i];
    expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG, "dropout: p must be in [0, 1)");
  }
  tj_dropout_opts q = o;
  q.p = NAN;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG, "p must be in [0, 1), got nan");
  q = o;
  q.act = (tj_activation)99;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG,
               "dropout: unknown activation 99 (0 .. 7)");
  q = opts_of(TJ_ACT_SMELU, 0.1, 1, 0);
  q.act_a = 0.0;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG,
               "dropout: smelu needs beta = act_a > 0");
  q.act_a = -1.0;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG, "got -1");
  q = opts_of(TJ_ACT_LEAKY_RELU, 0.1, 1, 0);
  q.act_a = INFINITY;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG,
               "dropout: leaky_relu needs a finite act_a, got inf");
  q = opts_of(TJ_ACT_STAR_RELU, 0.1, 1, 0);
  q.act_b = NAN;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &q, NULL), TJ_ERR_INVALID_ARG,
               "dropout: star_relu needs a finite act_b, got nan");
  y.t.device.device_type = kDLCUDA;
  expect_error(tj_dropout_fwd(blk, &x.t, NULL, &y.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "y is on kDLCUDA:0 but x is on kDLCPU:0");
  y.t.device.device_type = kDLCPU;

  // Backward.
  expect_error(tj_dropout_bwd(blk, &dy.t, NULL, NULL, &y.t, NULL, &o, NULL), TJ_ERR_INVALID_ARG,
               "dropout_bwd: x is NULL");
  expect_error(tj_dropout_bwd(blk, &dy.t, &x.t, NULL, &y.t, &db2.t, &o, NULL), TJ_ERR_INVALID_ARG,
               "dbias shape [129] differs from [K] = [128]");
  expect_error(tj_dropout_bwd(blk, &dy.t, &x.t, NULL, &y2.t, NULL, &o, NULL), TJ_ERR_INVALID_ARG,
               "dx shape [4, 100] differs from dy shape [4, 128]");
  expect_error(tj_dropout_bwd(blk, &dy.t, &y2.t, NULL, &y.t, NULL, &o, NULL), TJ_ERR_INVALID_ARG,
               "x shape [4, 100] differs from dy shape [4, 128]");
  expect_error(tj_dropout_bwd(blk, &dy.t, &x.t, &b32.t, &y.t, NULL, &o, NULL), TJ_ERR_INVALID_ARG,
               "bias has dtype f32 but dy has f16");
  q = o;
  q.p = 1.0;
  expect_error(tj_dropout_bwd(blk, &dy.t, &x.t, NULL, &y.t, NULL, &q, NULL), TJ_ERR_INVALID_ARG,
               "dropout_bwd: p must be in [0, 1), got 1");
  size_t ws = 1;
  expect_error(tj_dropout_bwd_workspace_size(blk, &x64.t, &ws), TJ_ERR_INVALID_ARG, "x has dtype f64");

  ck_assert(memcmp(sentinel, y.buf, sizeof sentinel) == 0);   // nothing was written
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);             // nor compiled
  OK(tj_dropout_bwd_workspace_size(blk, &x.t, &ws));
  ck_assert_uint_gt(ws, 0);
  ck_assert_uint_le(ws, 4 * 128 * 4);
  HostT *all[] = { &x, &y, &y2, &x64, &b, &b2, &b32, &dy, &db2 };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
}
END_TEST

START_TEST(registry) {
  const tj_block_desc *d = tj_block_find("dropout"), *db = tj_block_find("dropout_bwd");
  ck_assert_ptr_nonnull(d);
  ck_assert_ptr_nonnull(db);
  ck_assert_int_eq(d->ntensors, 3);
  ck_assert_int_eq(db->ntensors, 5);
  ck_assert_int_eq(d->nscalars, 7);
  ck_assert_str_eq(d->scalars[4].name, "act");
  HostT x, b, y, y2;
  int64_t shape[2] = { 5, 36 }, ks[1] = { 36 };
  host_init(&x, TJ_F32, 2, shape, NULL);
  host_init(&b, TJ_F32, 1, ks, NULL);
  host_init(&y, TJ_F32, 2, shape, NULL);
  host_init(&y2, TJ_F32, 2, shape, NULL);
  host_fill(&x, 2, -1, 1);
  host_fill(&b, 3, -1, 1);
  DLTensor *ts[3] = { &x.t, &b.t, &y.t };
  double sc[7] = { 0.3, 1, 77, 12, TJ_ACT_SMELU, 1.5, 0 };
  OK(tj_block_call(blk, d, ts, 3, sc, 7, NULL));
  tj_dropout_opts o = opts_of(TJ_ACT_SMELU, 0.3, 77, 12);
  OK(tj_dropout_fwd(blk, &x.t, &b.t, &y2.t, &o, NULL));
  ck_assert(memcmp(y.buf, y2.buf, y.nbytes) == 0);
  sc[2] = 1.5;
  expect_error(tj_block_call(blk, d, ts, 3, sc, 7, NULL), TJ_ERR_INVALID_ARG,
               "dropout: scalar 'seed' must be an integer in [0, 2^53], got 1.5");
  sc[2] = 77;
  sc[4] = 8;
  expect_error(tj_block_call(blk, d, ts, 3, sc, 7, NULL), TJ_ERR_INVALID_ARG, "dropout: unknown activation 8");
  // Defaults: p = 0.5, training, act none.
  DLTensor *tn[3] = { &x.t, NULL, &y.t };
  OK(tj_block_call(blk, d, tn, 3, NULL, 0, NULL));
  DLTensor *tb[5] = { &x.t, NULL, NULL, &y2.t, NULL };
  OK(tj_block_call(blk, db, tb, 5, NULL, 0, NULL));
  // With x = dy, no bias and act none, dx = y.
  ck_assert(memcmp(y.buf, y2.buf, y.nbytes) == 0);
  host_free(&x), host_free(&b), host_free(&y), host_free(&y2);
}
END_TEST

// One Philox call feeds four elements in the generated code too: with K4 a
// thread's four slots that share a counter compute the rounds once. Each
// round has two mul.hi, so a program step of 4096 f16 elements over 128
// threads (32 each, 8 counters) has at most 8 * 20 of them per thread; the
// per-element formula has four times as many. The multiplies are counted by
// their Philox constants, whatever form they take (mul.wide.u32, or
// mul.lo.s64 where LLVM widened the first rounds).
static int count_mul(const char *ptx, const char *needle) {
  int n = 0;
  for (const char *p = ptx; (p = strstr(p, needle)) != NULL; p++) n++;
  return n;
}

static int count_mulhi(bool k4) {
  const char *defs[] = { "T=f16", "BLOCK=4096", "ROWS=1", "VEC=8", "BGS=9", "ACT=3", "HAS_BIAS=true",
                         "DROP=true", k4 ? "K4=true" : "K4=false", "FLAT=true" };
  tj_compile_opts co;
  memset(&co, 0, sizeof co);
  co.source = blk_src_dropout;
  co.source_len = blk_src_dropout_len;
  co.path = "blocks/dropout.tj";
  co.kernel = "dropout_fwd";
  co.defines = defs;
  co.ndefines = 10;
  co.num_warps = 4;
  co.arch = "sm_90";
  co.flags = TJ_COMPILE_NO_CACHE;
  tj_kernel *k;
  OK(tj_kernel_compile(ctx, &co, &k));
  const char *ptx = tj_kernel_ptx(k);
  int n = count_mul(ptx, ", -766435501;") + count_mul(ptx, ", 3528531795;") + count_mul(ptx, ", -845247145;") +
          count_mul(ptx, ", 3449720151;");
  tj_kernel_free(k);
  return n;
}

START_TEST(one_philox_per_four_elements) {
  int grouped = count_mulhi(true), single = count_mulhi(false);
  ck_assert_msg(grouped > 0 && grouped <= 8 * 20, "K4: %d Philox multiplies per thread, want <= 160", grouped);
  ck_assert_msg(single >= 3 * grouped, "per element: %d Philox multiplies, grouped %d", single, grouped);
}
END_TEST

START_TEST(embedded_source_current) {
  size_t len;
  char *s = tj_test_read_file("blocks/dropout.tj", &len);
  ck_assert_ptr_nonnull(s);
  ck_assert_uint_eq(len, blk_src_dropout_len);
  ck_assert(memcmp(s, blk_src_dropout, len) == 0);
  free(s);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("dropout");
  TCase *tc = tcase_create("interp");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, philox_known_answers);
  tcase_add_test(tc, activation_derivatives);
  tcase_add_test(tc, every_activation);
  tcase_add_test(tc, shapes_and_modes);
  tcase_add_test(tc, mask_matches_reference_and_rate);
  tcase_add_test(tc, mask_rows_and_columns_independent);
  tcase_add_test(tc, mask_offsets_and_seeds);
  tcase_add_test(tc, mask_independent_of_config);
  tcase_add_test(tc, forced_config_not_remembered_past);
  tcase_add_test(tc, mask_forward_equals_backward);
  tcase_add_test(tc, no_rng_without_dropout);
  tcase_add_test(tc, in_place);
  tcase_add_test(tc, empty_and_no_rows);
  tcase_add_test(tc, bad_inputs);
  tcase_add_test(tc, registry);
  tcase_add_test(tc, one_philox_per_four_elements);
  tcase_add_test(tc, embedded_source_current);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
