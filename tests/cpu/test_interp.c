/* test_interp.c: the CPU interpreter on hand-built IR, against plain C
 * references in double precision.
 *
 * Tolerances: f32 results 1e-5 relative (a few ulp after exp/sum chains),
 * f16 storage 2e-3 relative (two f16 roundings, 2^-11 each, plus f32 error),
 * exact where the semantics are exact (ints, single f16/bf16 roundings,
 * philox, dot over small integers).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"
#include "dsl/tir_eval.h"
#include "testutil.h"
#include "tir_testbuild.h"

static const unsigned grid1[3] = {1, 1, 1};

// Runs f and returns the status; *msg gets the diagnostics (malloc'd).
static tj_status run(const TirFunc *f, const unsigned grid[3], const tj_arg *args, int nargs, char **msg) {
  Diag d;
  diag_init(&d);
  tj_status st = interp_run(f, grid, args, nargs, &d);
  char *text = sb_steal(&d.text);
  diag_free(&d);
  if (msg) *msg = text;
  else free(text);
  return st;
}

static void run_ok(const TirFunc *f, const unsigned grid[3], const tj_arg *args, int nargs) {
  char *msg;
  tj_status st = run(f, grid, args, nargs, &msg);
  ck_assert_msg(st == TJ_OK, "interp_run failed (%d):\n%s", st, msg);
  free(msg);
}

// offs = pid * B + arange(0, B)
static TirValue *block_offsets(TB *t, int B) {
  TirValue *pid = tb_pid(t, 0);
  TirValue *start = tb_bin(t, TIR_MUL, pid, tb_ci(t, tir_scalar(DT_I32), B));
  TirValue *s = tb_splat(t, start, ty(DT_I32, 1, B));
  return tb_bin(t, TIR_ADD, s, tb_arange(t, 0, B));
}

// ---------------------------------------------------------------- vadd

static void build_vadd(TB *t, int B) {
  tb_init(t, "vadd");
  TirValue *x = tb_param(t, "x", true, DT_F32);
  TirValue *y = tb_param(t, "y", true, DT_F32);
  TirValue *out = tb_param(t, "out", true, DT_F32);
  TirValue *n = tb_param(t, "n", false, DT_I32);
  TirValue *offs = block_offsets(t, B);
  TirValue *mask = tb_cmp(t, CMP_LT, offs, tb_splat(t, n, offs->type));
  TirValue *a = tb_load(t, tb_ptr_add(t, x, offs), mask, NULL);
  TirValue *b = tb_load(t, tb_ptr_add(t, y, offs), mask, NULL);
  TirValue *s = tb_bin(t, TIR_ADD, a, b);
  tb_store(t, tb_ptr_add(t, out, offs), s, mask);
}

START_TEST(test_vadd_masked_tail) {
  enum { N = 1000, B = 128 };
  TB t;
  build_vadd(&t, B);
  float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *out = malloc(1024 * sizeof(float));
  for (int i = 0; i < N; i++) x[i] = (float)i * 0.5f, y[i] = 1.0f / (float)(i + 1);
  for (int i = 0; i < 1024; i++) out[i] = -7.0f;
  // Buffers sized exactly N: the masked tail must not be touched or checked.
  tj_arg args[4] = {tj_arg_ptr(x, N * sizeof(float)), tj_arg_ptr(y, N * sizeof(float)),
                    tj_arg_ptr(out, N * sizeof(float)), tj_arg_int(N)};
  unsigned grid[3] = {(N + B - 1) / B, 1, 1};
  run_ok(t.f, grid, args, 4);
  for (int i = 0; i < N; i++) {
    double want = (double)x[i] + (double)y[i];
    ck_assert_msg(fabs(out[i] - want) <= 1e-6 * fabs(want) + 1e-7, "out[%d] = %g, want %g", i, out[i], want);
  }
  for (int i = N; i < 1024; i++) ck_assert(out[i] == -7.0f);
  free(x), free(y), free(out);
  tb_free(&t);
}
END_TEST

// The CI-sized case: 2^20 elements in 1024 programs. Also a rough speed check
// (printed, not asserted: CI machines vary).
START_TEST(test_vadd_large) {
  enum { N = 1 << 20, B = 1024 };
  TB t;
  build_vadd(&t, B);
  float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *out = malloc(N * sizeof(float));
  ck_assert(x && y && out);
  for (int i = 0; i < N; i++) x[i] = (float)(i % 1000), y[i] = (float)(i % 7) * 0.25f;
  tj_arg args[4] = {tj_arg_ptr(x, N * sizeof(float)), tj_arg_ptr(y, N * sizeof(float)),
                    tj_arg_ptr(out, N * sizeof(float)), tj_arg_int(N)};
  unsigned grid[3] = {N / B, 1, 1};
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  run_ok(t.f, grid, args, 4);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
  fprintf(stderr, "interp: vadd of 2^20 f32 took %.1f ms\n", ms);
  int bad = -1;  // one assertion, not 2^20: each Check assertion costs a write
  for (int i = 0; i < N && bad < 0; i++)
    if (out[i] != x[i] + y[i]) bad = i;  // exact: small values
  ck_assert_msg(bad < 0, "out[%d] = %g, want %g", bad, out[bad < 0 ? 0 : bad], x[bad < 0 ? 0 : bad] + y[bad < 0 ? 0 : bad]);
  free(x), free(y), free(out);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- 2-D broadcast

// out[i, j] = a[i] * b[j] + c for a [16, 32] tile, via expand_dims + broadcast.
START_TEST(test_broadcast_2d) {
  enum { M = 16, N = 32 };
  TB t;
  tb_init(&t, "outer");
  TirValue *pa = tb_param(&t, "a", true, DT_F32);
  TirValue *pb = tb_param(&t, "b", true, DT_F32);
  TirValue *po = tb_param(&t, "out", true, DT_F32);
  TirValue *c = tb_param(&t, "c", false, DT_F32);
  TirType mn = ty(DT_I32, 2, M, N);
  TirValue *rows = tb_expand(&t, tb_arange(&t, 0, M), 1);  // [M, 1]
  TirValue *cols = tb_expand(&t, tb_arange(&t, 0, N), 0);  // [1, N]
  TirValue *av = tb_load(&t, tb_ptr_add(&t, pa, rows), NULL, NULL);  // [M, 1] f32
  TirValue *bv = tb_load(&t, tb_ptr_add(&t, pb, cols), NULL, NULL);  // [1, N] f32
  TirValue *ab = tb_bcast(&t, av, mn);
  TirValue *bb = tb_bcast(&t, bv, mn);
  TirValue *prod = tb_bin(&t, TIR_MUL, ab, bb);
  TirValue *cs = tb_splat(&t, c, prod->type);
  TirValue *val = tb_bin(&t, TIR_ADD, prod, cs);
  // Store through a pointer tile built by broadcasting a [M, 1] pointer
  // column, so pointer provenance flows through broadcast too.
  TirValue *prow = tb_ptr_add(&t, po, tb_bin(&t, TIR_MUL, rows, tb_ci(&t, rows->type, N)));
  TirValue *pm = tb_ptr_add(&t, tb_bcast(&t, prow, mn), tb_bcast(&t, cols, mn));
  tb_store(&t, pm, val, NULL);
  float a[M], b[N], out[M * N];
  for (int i = 0; i < M; i++) a[i] = (float)(i + 1) / 3.0f;
  for (int j = 0; j < N; j++) b[j] = (float)j - 10.5f;
  tj_arg args[4] = {tj_arg_ptr(a, sizeof a), tj_arg_ptr(b, sizeof b), tj_arg_ptr(out, sizeof out),
                    tj_arg_float(0.25)};
  run_ok(t.f, grid1, args, 4);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double want = (double)a[i] * b[j] + 0.25;
      ck_assert_msg(fabs(out[i * N + j] - want) <= 1e-6 * fabs(want) + 1e-6, "out[%d][%d] = %g, want %g", i, j,
                    out[i * N + j], want);
    }
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- softmax

// One program per row: y = exp(x - max(x)) / sum(exp(x - max(x))) over the
// first n columns of a BLOCK-wide tile; storage dtype dt, math in f32.
static void build_softmax(TB *t, Dtype dt, int BLOCK) {
  tb_init(t, "softmax");
  TirValue *py = tb_param(t, "y", true, dt);
  TirValue *px = tb_param(t, "x", true, dt);
  TirValue *stride = tb_param(t, "stride", false, DT_I32);
  TirValue *n = tb_param(t, "n", false, DT_I32);
  TirType blk = ty(DT_I32, 1, BLOCK);
  TirValue *row = tb_pid(t, 0);
  TirValue *base = tb_bin(t, TIR_MUL, row, stride);
  TirValue *cols = tb_arange(t, 0, BLOCK);
  TirValue *mask = tb_cmp(t, CMP_LT, cols, tb_splat(t, n, blk));
  TirValue *offs = tb_bin(t, TIR_ADD, tb_splat(t, base, blk), cols);
  TirValue *ninf = tb_cf(t, ty(dt, 1, BLOCK), -INFINITY);
  TirValue *xv = tb_load(t, tb_ptr_add(t, px, offs), mask, ninf);
  TirValue *xf = dt == DT_F32 ? xv : tb_cast(t, xv, DT_F32);
  TirValue *mx = tb_reduce(t, RED_MAX, xf, 0, DT_F32);
  TirValue *sh = tb_bin(t, TIR_SUB, xf, tb_splat(t, mx, xf->type));
  TirValue *e = tb_op(t, TIR_EXP, sh->type, 1, sh);
  TirValue *sum = tb_reduce(t, RED_SUM, e, 0, DT_F32);
  TirValue *r = tb_bin(t, TIR_DIV, e, tb_splat(t, sum, e->type));
  TirValue *rs = dt == DT_F32 ? r : tb_cast(t, r, dt);
  tb_store(t, tb_ptr_add(t, py, offs), rs, mask);
}

static void check_softmax(Dtype dt, double tol) {
  enum { ROWS = 5, N = 100, STRIDE = 112, BLOCK = 128 };
  TB t;
  build_softmax(&t, dt, BLOCK);
  int esz = dtype_bytes(dt);
  unsigned char *x = calloc(ROWS * STRIDE, (size_t)esz), *y = calloc(ROWS * STRIDE, (size_t)esz);
  double xs[ROWS][N];
  for (int r = 0; r < ROWS; r++)
    for (int c = 0; c < N; c++) {
      double v = sin(r * 7.1 + c * 0.37) * (r + 1) * 2.0;
      if (dt == DT_F32) {
        float f = (float)v;
        memcpy(x + (size_t)(r * STRIDE + c) * 4, &f, 4);
        xs[r][c] = f;
      } else {
        uint16_t h = f32_to_f16((float)v);
        memcpy(x + (size_t)(r * STRIDE + c) * 2, &h, 2);
        xs[r][c] = f16_to_f32(h);
      }
    }
  // The last row's buffer ends right after its n elements: masked lanes of
  // that row lie beyond the buffer and must not be checked.
  size_t nbytes = (size_t)((ROWS - 1) * STRIDE + N) * (size_t)esz;
  tj_arg args[4] = {tj_arg_ptr(y, nbytes), tj_arg_ptr(x, nbytes), tj_arg_int(STRIDE), tj_arg_int(N)};
  unsigned grid[3] = {ROWS, 1, 1};
  run_ok(t.f, grid, args, 4);
  for (int r = 0; r < ROWS; r++) {
    double mx = -INFINITY, s = 0;
    for (int c = 0; c < N; c++) mx = fmax(mx, xs[r][c]);
    for (int c = 0; c < N; c++) s += exp(xs[r][c] - mx);
    for (int c = 0; c < N; c++) {
      double want = exp(xs[r][c] - mx) / s, got;
      if (dt == DT_F32) {
        float f;
        memcpy(&f, y + (size_t)(r * STRIDE + c) * 4, 4);
        got = f;
      } else {
        uint16_t h;
        memcpy(&h, y + (size_t)(r * STRIDE + c) * 2, 2);
        got = f16_to_f32(h);
      }
      ck_assert_msg(fabs(got - want) <= tol * want + 1e-7, "%s row %d col %d: %.9g, want %.9g", dtype_name(dt), r,
                    c, got, want);
    }
  }
  free(x), free(y);
  tb_free(&t);
}

START_TEST(test_softmax_f32) { check_softmax(DT_F32, 1e-5); }
END_TEST

START_TEST(test_softmax_f16) { check_softmax(DT_F16, 2e-3); }
END_TEST

// ---------------------------------------------------------------- reductions

START_TEST(test_reduce_arg_ties) {
  enum { N = 8 };
  TB t;
  tb_init(&t, "argred");
  TirValue *px = tb_param(&t, "x", true, DT_F32);
  TirValue *pi = tb_param(&t, "ix", true, DT_I32);
  TirValue *po = tb_param(&t, "out", true, DT_I32);
  TirValue *pm = tb_param(&t, "m", true, DT_I32);
  TirValue *r = tb_arange(&t, 0, N);
  TirValue *xv = tb_load(&t, tb_ptr_add(&t, px, r), NULL, NULL);
  TirValue *iv = tb_load(&t, tb_ptr_add(&t, pi, r), NULL, NULL);
  TirValue *res[4];
  res[0] = tb_reduce(&t, RED_ARGMAX, xv, 0, DT_I32);
  res[1] = tb_reduce(&t, RED_ARGMIN, xv, 0, DT_I32);
  res[2] = tb_reduce(&t, RED_ARGMAX, iv, 0, DT_I32);
  res[3] = tb_reduce(&t, RED_ARGMIN, iv, 0, DT_I32);
  for (int i = 0; i < 4; i++) tb_store(&t, tb_ptr_add(&t, po, tb_ci(&t, tir_scalar(DT_I32), i)), res[i], NULL);
  // 2-D: max and min along axis 0 of [4, 8] (the int tile reshaped), and
  // the argmax along axis 1.
  TirValue *m2 = tb_op(&t, TIR_RESHAPE, ty(DT_I32, 2, 2, 4), 1, iv);
  TirValue *mx = tb_reduce(&t, RED_MAX, m2, 0, DT_I32);  // [4]
  TirValue *mn = tb_reduce(&t, RED_MIN, m2, 0, DT_I32);
  TirValue *am = tb_reduce(&t, RED_ARGMAX, m2, 1, DT_I32);  // [2]
  TirValue *sm = tb_reduce(&t, RED_SUM, m2, 1, DT_I64);     // [2] widened
  tb_store(&t, tb_ptr_add(&t, pm, tb_arange(&t, 0, 4)), mx, NULL);
  tb_store(&t, tb_ptr_add(&t, pm, tb_arange(&t, 4, 8)), mn, NULL);
  tb_store(&t, tb_ptr_add(&t, pm, tb_arange(&t, 8, 10)), am, NULL);
  tb_store(&t, tb_ptr_add(&t, pm, tb_arange(&t, 10, 12)), tb_cast(&t, sm, DT_I32), NULL);
  float x[N] = {NAN, 3, 7, 7, -1, 7, -1, NAN};
  int32_t ix[N] = {5, -2, 9, 9, -2, 0, 1, 9};
  int32_t out[4] = {0}, m[12] = {0};
  tj_arg args[4] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(ix, sizeof ix), tj_arg_ptr(out, sizeof out),
                    tj_arg_ptr(m, sizeof m)};
  run_ok(t.f, grid1, args, 4);
  ck_assert_int_eq(out[0], 2);  // first 7; NaN ignored
  ck_assert_int_eq(out[1], 4);  // first -1
  ck_assert_int_eq(out[2], 2);
  ck_assert_int_eq(out[3], 1);
  // rows {5,-2,9,9} {-2,0,1,9}: max {5,0,9,9}, min {-2,-2,1,9}, argmax {2,3}, sum {21,8}
  int32_t w2[12] = {5, 0, 9, 9, -2, -2, 1, 9, 2, 3, 21, 8};
  for (int i = 0; i < 12; i++) ck_assert_msg(m[i] == w2[i], "m[%d] = %d, want %d", i, m[i], w2[i]);
  tb_free(&t);
}
END_TEST

// The f32 sum is a halving tree: with values chosen so that serial and tree
// order differ, the tree's answer is the one we get.
START_TEST(test_reduce_sum_tree) {
  TB t;
  tb_init(&t, "sumtree");
  TirValue *px = tb_param(&t, "x", true, DT_F32);
  TirValue *po = tb_param(&t, "out", true, DT_F32);
  TirValue *xv = tb_load(&t, tb_ptr_add(&t, px, tb_arange(&t, 0, 4)), NULL, NULL);
  tb_store(&t, po, tb_reduce(&t, RED_SUM, xv, 0, DT_F32), NULL);
  float x[4] = {1e8f, 1.0f, -1e8f, 1.0f}, out = 0;
  // tree: (1e8 + -1e8) + (1 + 1) = 2; serial: ((1e8 + 1) - 1e8) + 1 = 1.
  tj_arg args[2] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(&out, sizeof out)};
  run_ok(t.f, grid1, args, 2);
  ck_assert(out == 2.0f);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- dot

START_TEST(test_dot) {
  enum { M = 16, K = 32, N = 16 };
  TB t;
  tb_init(&t, "mm");
  TirValue *pa = tb_param(&t, "a", true, DT_F16);
  TirValue *pb = tb_param(&t, "b", true, DT_F16);
  TirValue *pc = tb_param(&t, "c", true, DT_F32);
  TirValue *rm = tb_expand(&t, tb_arange(&t, 0, M), 1);
  TirValue *rk0 = tb_expand(&t, tb_arange(&t, 0, K), 0);
  TirValue *rk1 = tb_expand(&t, tb_arange(&t, 0, K), 1);
  TirValue *rn = tb_expand(&t, tb_arange(&t, 0, N), 0);
  TirType mk = ty(DT_I32, 2, M, K), kn = ty(DT_I32, 2, K, N), mn = ty(DT_I32, 2, M, N);
  TirValue *t1 = tb_bcast(&t, tb_bin(&t, TIR_MUL, rm, tb_ci(&t, rm->type, K)), mk);
  TirValue *oa = tb_bin(&t, TIR_ADD, t1, tb_bcast(&t, rk0, mk));
  TirValue *t2 = tb_bcast(&t, tb_bin(&t, TIR_MUL, rk1, tb_ci(&t, rk1->type, N)), kn);
  TirValue *ob = tb_bin(&t, TIR_ADD, t2, tb_bcast(&t, rn, kn));
  TirValue *t3 = tb_bcast(&t, tb_bin(&t, TIR_MUL, rm, tb_ci(&t, rm->type, N)), mn);
  TirValue *oc = tb_bin(&t, TIR_ADD, t3, tb_bcast(&t, rn, mn));
  TirValue *a = tb_load(&t, tb_ptr_add(&t, pa, oa), NULL, NULL);
  TirValue *b = tb_load(&t, tb_ptr_add(&t, pb, ob), NULL, NULL);
  TirValue *acc0 = tb_load(&t, tb_ptr_add(&t, pc, oc), NULL, NULL);
  TirValue *d = tb_op(&t, TIR_DOT, acc0->type, 3, a, b, acc0);
  tb_store(&t, tb_ptr_add(&t, pc, oc), d, NULL);
  uint16_t ha[M * K], hb[K * N];
  float c[M * N];
  double da[M * K], db[K * N];
  for (int i = 0; i < M * K; i++) ha[i] = f32_to_f16((float)((i * 7) % 13 - 6) * 0.125f), da[i] = f16_to_f32(ha[i]);
  for (int i = 0; i < K * N; i++) hb[i] = f32_to_f16((float)((i * 5) % 11 - 5)), db[i] = f16_to_f32(hb[i]);
  for (int i = 0; i < M * N; i++) c[i] = (float)i * 0.5f;
  tj_arg args[3] = {tj_arg_ptr(ha, sizeof ha), tj_arg_ptr(hb, sizeof hb), tj_arg_ptr(c, sizeof c)};
  run_ok(t.f, grid1, args, 3);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double want = (double)(i * N + j) * 0.5;
      for (int k = 0; k < K; k++) want += da[i * K + k] * db[k * N + j];
      // Exact: every partial sum is a multiple of 1/8 well inside f32's 24 bits.
      ck_assert_msg(c[i * N + j] == want, "c[%d][%d] = %g, want %g", i, j, c[i * N + j], want);
    }
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- loops, if

// out[0:64] = sum over rows r in range(0, n, step) of x[r, 0:64]; count[0] =
// number of iterations (an i32 carried value).
static void build_rowsum(TB *t) {
  tb_init(t, "rowsum");
  TirValue *x = tb_param(t, "x", true, DT_F32);
  TirValue *out = tb_param(t, "out", true, DT_F32);
  TirValue *cnt = tb_param(t, "count", true, DT_I32);
  TirValue *n = tb_param(t, "n", false, DT_I32);
  TirValue *step = tb_param(t, "step", false, DT_I32);
  TirType i32 = tir_scalar(DT_I32), blk = ty(DT_I32, 1, 64);
  TirValue *inits[2];
  inits[0] = tb_cf(t, ty(DT_F32, 1, 64), 0.0);
  inits[1] = tb_ci(t, i32, 0);
  TirInst *fo = tb_for(t, tb_ci(t, i32, 0), n, step, 2, inits);
  TirBlock *body = fo->blocks[0];
  TirValue *row = tb_bin(t, TIR_MUL, body->args[0], tb_ci(t, i32, 64));
  TirValue *srow = tb_splat(t, row, blk);
  TirValue *offs = tb_bin(t, TIR_ADD, srow, tb_arange(t, 0, 64));
  TirValue *v = tb_load(t, tb_ptr_add(t, x, offs), NULL, NULL);
  TirValue *ys[2];
  ys[0] = tb_bin(t, TIR_ADD, body->args[1], v);
  ys[1] = tb_bin(t, TIR_ADD, body->args[2], tb_ci(t, i32, 1));
  tb_yield(t, 2, ys);
  tb_end(t, fo);
  tb_store(t, tb_ptr_add(t, out, tb_arange(t, 0, 64)), fo->res[0], NULL);
  tb_store(t, cnt, fo->res[1], NULL);
}

START_TEST(test_loop) {
  enum { R = 9 };
  TB t;
  build_rowsum(&t);
  float x[R * 64], out[64];
  int32_t count = -1;
  for (int i = 0; i < R * 64; i++) x[i] = (float)(i % 64) + (float)(i / 64) * 100.0f;
  for (int step = 1; step <= 4; step++) {
    tj_arg args[5] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(out, sizeof out), tj_arg_ptr(&count, sizeof count),
                      tj_arg_int(R), tj_arg_int(step)};
    run_ok(t.f, grid1, args, 5);
    int iters = 0;
    for (int r = 0; r < R; r += step) iters++;
    ck_assert_int_eq(count, iters);
    for (int c = 0; c < 64; c++) {
      double want = 0;
      for (int r = 0; r < R; r += step) want += x[r * 64 + c];
      ck_assert_msg(out[c] == want, "step %d col %d: %g, want %g", step, c, out[c], want);
    }
  }
  // Zero trips: the inits come out.
  tj_arg args0[5] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(out, sizeof out), tj_arg_ptr(&count, sizeof count),
                     tj_arg_int(0), tj_arg_int(1)};
  run_ok(t.f, grid1, args0, 5);
  ck_assert_int_eq(count, 0);
  ck_assert(out[5] == 0.0f);
  // A non-positive step is a runtime error, not a hang.
  tj_arg argsz[5] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(out, sizeof out), tj_arg_ptr(&count, sizeof count),
                     tj_arg_int(R), tj_arg_int(0)};
  char *msg;
  ck_assert_int_eq(run(t.f, grid1, argsz, 5, &msg), TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(msg, "for loop step must be positive, got 0: program (0, 0, 0)"), "%s", msg);
  free(msg);
  tb_free(&t);
}
END_TEST

// out[pid] = pid odd ? pid * 10 : -pid, via an if with a result, plus a
// store inside an if without results.
START_TEST(test_if) {
  TB t;
  tb_init(&t, "branch");
  TirValue *po = tb_param(&t, "out", true, DT_I32);
  TirValue *pf = tb_param(&t, "flag", true, DT_I32);
  TirType i32 = tir_scalar(DT_I32);
  TirValue *pid = tb_pid(&t, 0);
  TirValue *odd = tb_cmp(&t, CMP_EQ, tb_bin(&t, TIR_AND, pid, tb_ci(&t, i32, 1)), tb_ci(&t, i32, 1));
  TirInst *in = tb_if(&t, odd, 1, &i32);
  TirValue *a = tb_bin(&t, TIR_MUL, pid, tb_ci(&t, i32, 10));
  tb_yield(&t, 1, &a);
  tb_else(&t, in);
  TirValue *b = tb_un(&t, TIR_NEG, pid);
  tb_yield(&t, 1, &b);
  tb_end(&t, in);
  tb_store(&t, tb_ptr_add(&t, po, pid), in->res[0], NULL);
  TirValue *is3 = tb_cmp(&t, CMP_EQ, pid, tb_ci(&t, i32, 3));
  TirInst *in2 = tb_if(&t, is3, 0, NULL);
  tb_store(&t, pf, tb_ci(&t, i32, 42), NULL);
  tb_end(&t, in2);
  int32_t out[6] = {0}, flag = 0;
  tj_arg args[2] = {tj_arg_ptr(out, sizeof out), tj_arg_ptr(&flag, sizeof flag)};
  unsigned grid[3] = {6, 1, 1};
  run_ok(t.f, grid, args, 2);
  int32_t want[6] = {0, 10, -2, 30, -4, 50};
  for (int i = 0; i < 6; i++) ck_assert_int_eq(out[i], want[i]);
  ck_assert_int_eq(flag, 42);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- int semantics

// Evaluates scalar ops on runtime i32 params (so nothing folds) and stores
// them to out[k].
START_TEST(test_int_semantics) {
  TB t;
  tb_init(&t, "ints");
  TirValue *po = tb_param(&t, "out", true, DT_I32);
  TirValue *a = tb_param(&t, "a", false, DT_I32);  // INT32_MAX
  TirValue *z = tb_param(&t, "z", false, DT_I32);  // 0
  TirValue *m = tb_param(&t, "m", false, DT_I32);  // INT32_MIN
  TirValue *neg = tb_param(&t, "neg", false, DT_I32);  // -1
  TirValue *f = tb_param(&t, "f", false, DT_F32);  // 3e9
  TirValue *nan = tb_param(&t, "nan", false, DT_F32);
  TirType i32 = tir_scalar(DT_I32);
  TirValue *v[20];
  int k = 0;
  TirValue *one = tb_ci(&t, i32, 1);
  v[k++] = tb_bin(&t, TIR_ADD, a, one);            // wraps to INT32_MIN
  v[k++] = tb_bin(&t, TIR_MUL, a, a);              // 1
  v[k++] = tb_bin(&t, TIR_DIV, a, z);              // -1
  v[k++] = tb_bin(&t, TIR_REM, a, z);              // a
  v[k++] = tb_bin(&t, TIR_DIV, m, neg);            // INT32_MIN (wraps)
  v[k++] = tb_bin(&t, TIR_REM, m, neg);            // 0
  TirValue *c7 = tb_ci(&t, i32, -7), *c2 = tb_ci(&t, i32, 2);
  v[k++] = tb_bin(&t, TIR_DIV, c7, c2);            // -3 (truncates)
  v[k++] = tb_bin(&t, TIR_REM, c7, c2);            // -1
  TirValue *c32 = tb_ci(&t, i32, 32), *c31 = tb_ci(&t, i32, 31);
  v[k++] = tb_bin(&t, TIR_SHL, one, c32);          // 0
  v[k++] = tb_bin(&t, TIR_SHL, one, c31);          // INT32_MIN
  v[k++] = tb_bin(&t, TIR_SHR, m, c32);            // -1 (sign fill)
  v[k++] = tb_bin(&t, TIR_SHR, a, c32);            // 0
  v[k++] = tb_bin(&t, TIR_SHR, m, c31);            // -1
  v[k++] = tb_bin(&t, TIR_SHL, one, neg);          // 0 (negative = huge)
  v[k++] = tb_cast(&t, f, DT_I32);                 // saturates: INT32_MAX
  v[k++] = tb_cast(&t, tb_un(&t, TIR_NEG, f), DT_I32);  // INT32_MIN
  v[k++] = tb_cast(&t, nan, DT_I32);               // 0
  // u32: logical shift and unsigned compare via a cast.
  TirValue *mu = tb_cast(&t, m, DT_U32);
  TirValue *lsr = tb_bin(&t, TIR_SHR, mu, tb_ci(&t, tir_scalar(DT_U32), 28));  // 8
  v[k++] = tb_cast(&t, lsr, DT_I32);
  TirValue *u8 = tb_cast(&t, a, DT_U8);            // 255
  TirValue *u8s = tb_bin(&t, TIR_ADD, u8, tb_ci(&t, tir_scalar(DT_U8), 3));  // 2
  v[k++] = tb_cast(&t, u8s, DT_I32);
  TirValue *ab = tb_un(&t, TIR_ABS, m);            // INT32_MIN
  v[k++] = ab;
  for (int i = 0; i < k; i++) tb_store(&t, tb_ptr_add(&t, po, tb_ci(&t, i32, i)), v[i], NULL);
  int32_t out[20];
  memset(out, 0x55, sizeof out);
  tj_arg args[7] = {tj_arg_ptr(out, sizeof out), tj_arg_int(INT32_MAX), tj_arg_int(0), tj_arg_int(INT32_MIN),
                    tj_arg_int(-1), tj_arg_float(3e9), tj_arg_float(NAN)};
  run_ok(t.f, grid1, args, 7);
  int32_t want[20] = {INT32_MIN, 1,         -1, INT32_MAX, INT32_MIN, 0, -3,        -1, 0, INT32_MIN,
                      -1,        0,         -1, 0,         INT32_MAX, INT32_MIN, 0, 8,  2, INT32_MIN};
  ck_assert_int_eq(k, 20);
  for (int i = 0; i < k; i++) ck_assert_msg(out[i] == want[i], "out[%d] = %d, want %d", i, out[i], want[i]);

  // The folded form of the same IR computes the same values.
  int32_t out2[20];
  memset(out2, 0x55, sizeof out2);
  tj_arg args2[7] = {tj_arg_ptr(out2, sizeof out2), tj_arg_int(INT32_MAX), tj_arg_int(0), tj_arg_int(INT32_MIN),
                     tj_arg_int(-1), tj_arg_float(3e9), tj_arg_float(NAN)};
  tir_fold(t.f);
  tir_cse(t.f);
  tir_dce(t.f);
  run_ok(t.f, grid1, args2, 7);
  ck_assert(memcmp(out, out2, sizeof out) == 0);
  tb_free(&t);
}
END_TEST

// float -> i64 saturating at the bottom computed INT64_MIN as -(1 << 63) in
// int64_t, undefined behaviour that UBSan aborts on (found by fuzzing).
START_TEST(test_f2i_int64_limits) {
  ck_assert(tir_int_min(DT_I64) == INT64_MIN);
  ck_assert(tir_int_min(DT_I8) == -128);
  ck_assert(tir_int_min(DT_U64) == 0);
  TB t;
  tb_init(&t, "f2i64");
  TirValue *pd = tb_param(&t, "d", true, DT_F64);
  TirValue *po = tb_param(&t, "o", true, DT_I64);
  TirValue *r = tb_arange(&t, 0, 4);
  TirValue *dv = tb_load(&t, tb_ptr_add(&t, pd, r), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, po, r), tb_cast(&t, dv, DT_I64), NULL);
  double d[4] = {-1e30, 1e30, NAN, -9223372036854775808.0};
  int64_t o[4];
  tj_arg args[2] = {tj_arg_ptr(d, sizeof d), tj_arg_ptr(o, sizeof o)};
  run_ok(t.f, grid1, args, 2);
  ck_assert(o[0] == INT64_MIN);
  ck_assert(o[1] == INT64_MAX);
  ck_assert(o[2] == 0);
  ck_assert(o[3] == INT64_MIN);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- f16 / bf16

START_TEST(test_half_rounding) {
  TB t;
  tb_init(&t, "halfadd");
  TirValue *ph = tb_param(&t, "h", true, DT_F16);
  TirValue *pg = tb_param(&t, "g", true, DT_F16);
  TirValue *pb = tb_param(&t, "b", true, DT_BF16);
  TirValue *pc = tb_param(&t, "c", true, DT_BF16);
  TirValue *r = tb_arange(&t, 0, 4);
  TirValue *hv = tb_load(&t, tb_ptr_add(&t, ph, r), NULL, NULL);
  TirValue *gv = tb_load(&t, tb_ptr_add(&t, pg, r), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, ph, r), tb_bin(&t, TIR_ADD, hv, gv), NULL);
  TirValue *bv = tb_load(&t, tb_ptr_add(&t, pb, r), NULL, NULL);
  TirValue *cv = tb_load(&t, tb_ptr_add(&t, pc, r), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, pb, r), tb_bin(&t, TIR_ADD, bv, cv), NULL);
  // f16: 1 + 2^-11 ties to even (1.0); (1 + 2^-10) + 2^-11 ties to 1 + 2^-9;
  // 65504 + 16 ties up to inf; 2^-24 + 2^-24 = 2^-23 (subnormals).
  uint16_t h[4] = {0x3C00, 0x3C01, 0x7BFF, 0x0001}, g[4] = {0x1000, 0x1000, 0x4C00, 0x0001};
  // bf16: 1 + 2^-8 ties to 1.0; (1 + 2^-7) + 2^-8 ties to 1 + 2^-6; 1 + 3*2^-9
  // (0.75 ulp) rounds up to 1 + 2^-7; max + max overflows to inf.
  uint16_t b[4] = {0x3F80, 0x3F81, 0x3F80, 0x7F7F}, c[4] = {0x3B80, 0x3B80, 0x3BC0, 0x7F7F};
  tj_arg args[4] = {tj_arg_ptr(h, sizeof h), tj_arg_ptr(g, sizeof g), tj_arg_ptr(b, sizeof b),
                    tj_arg_ptr(c, sizeof c)};
  run_ok(t.f, grid1, args, 4);
  ck_assert_uint_eq(h[0], 0x3C00);
  ck_assert_uint_eq(h[1], 0x3C02);
  ck_assert_uint_eq(h[2], 0x7C00);
  ck_assert_uint_eq(h[3], 0x0002);
  ck_assert_uint_eq(b[0], 0x3F80);
  ck_assert_uint_eq(b[1], 0x3F82);
  ck_assert_uint_eq(b[2], 0x3F81);
  ck_assert_uint_eq(b[3], 0x7F80);
  tb_free(&t);
}
END_TEST

// Casts: f32 -> f16 rounding, f64 -> f16 rounds once (round-to-odd path),
// bitcast round trip.
START_TEST(test_casts) {
  TB t;
  tb_init(&t, "casts");
  TirValue *pd = tb_param(&t, "d", true, DT_F64);
  TirValue *ph = tb_param(&t, "h", true, DT_F16);
  TirValue *pi = tb_param(&t, "i", true, DT_I16);
  TirValue *r = tb_arange(&t, 0, 2);
  TirValue *dv = tb_load(&t, tb_ptr_add(&t, pd, r), NULL, NULL);
  TirValue *hv = tb_cast(&t, dv, DT_F16);
  tb_store(&t, tb_ptr_add(&t, ph, r), hv, NULL);
  tb_store(&t, tb_ptr_add(&t, pi, r), tb_op(&t, TIR_BITCAST, tir_with_dtype(hv->type, DT_I16), 1, hv), NULL);
  // 1 + 2^-11 + 2^-40: just above the f16 tie, so it rounds up to 1 + 2^-10.
  // Via f32 first it would become exactly the tie and round to even (1.0).
  double d[2] = {1.0 + ldexp(1, -11) + ldexp(1, -40), -2.0};
  uint16_t h[2];
  int16_t i[2];
  tj_arg args[3] = {tj_arg_ptr(d, sizeof d), tj_arg_ptr(h, sizeof h), tj_arg_ptr(i, sizeof i)};
  run_ok(t.f, grid1, args, 3);
  ck_assert_uint_eq(h[0], 0x3C01);
  ck_assert_uint_eq(h[1], 0xC000);
  ck_assert_int_eq(i[0], 0x3C01);
  ck_assert_int_eq(i[1], (int16_t)0xC000);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- philox

START_TEST(test_philox_kat) {
  // Random123 known-answer vectors for philox4x32_10.
  static const uint32_t ctr[3][4] = {
      {0, 0, 0, 0}, {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}};
  static const uint32_t key[3][2] = {{0, 0}, {0xffffffff, 0xffffffff}, {0xa4093822, 0x299f31d0}};
  static const uint32_t want[3][4] = {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
                                      {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
                                      {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int v = 0; v < 3; v++) {
    uint32_t out[4];
    tir_philox4x32_10(ctr[v], key[v], out);
    for (int i = 0; i < 4; i++)
      ck_assert_msg(out[i] == want[v][i], "vector %d word %d: %08x, want %08x", v, i, out[i], want[v][i]);
  }

  // The PHILOX op: seed 0, ctr 0 gives vector 0 by lane; other seeds and
  // counters split into key and counter words as tir.h says.
  TB t;
  tb_init(&t, "rng");
  TirValue *po = tb_param(&t, "out", true, DT_U32);
  TirValue *seed = tb_param(&t, "seed", false, DT_I64);
  TirValue *c0 = tb_param(&t, "ctr", false, DT_I64);
  TirType blk = ty(DT_I32, 1, 8);
  TirValue *lane = tb_arange(&t, 0, 8);
  TirValue *ss = tb_splat(&t, seed, blk);
  TirValue *cs = tb_splat(&t, c0, blk);
  TirValue *ph = tb_op(&t, TIR_PHILOX, ty(DT_U32, 1, 8), 3, ss, cs, lane);
  tb_store(&t, tb_ptr_add(&t, po, lane), ph, NULL);
  uint32_t out[8];
  tj_arg args[3] = {tj_arg_ptr(out, sizeof out), tj_arg_int(0), tj_arg_int(0)};
  run_ok(t.f, grid1, args, 3);
  for (int i = 0; i < 8; i++) ck_assert_uint_eq(out[i], want[0][i & 3]);
  int64_t sd = (int64_t)0x299f31d0a4093822ull, ct = (int64_t)0x85a308d3243f6a88ull;
  tj_arg args2[3] = {tj_arg_ptr(out, sizeof out), tj_arg_int(sd), tj_arg_int(ct)};
  run_ok(t.f, grid1, args2, 3);
  uint32_t c2[4] = {0x243f6a88, 0x85a308d3, 0, 0}, ref[4];
  tir_philox4x32_10(c2, key[2], ref);
  for (int i = 0; i < 8; i++) ck_assert_uint_eq(out[i], ref[i & 3]);
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- faults

// x[pid * 128 + arange + 1647]: program 3 element 17 reads offset 2048 of a
// 2048-float buffer.
START_TEST(test_bounds_load) {
  TB t;
  tb_init(&t, "oob");
  t.loc.line = 3;
  t.loc.col = 5;
  TirValue *x = tb_param(&t, "x", true, DT_F32);
  TirValue *y = tb_param(&t, "y", true, DT_F32);
  TirValue *offs = block_offsets(&t, 128);
  TirValue *sh = tb_bin(&t, TIR_ADD, offs, tb_ci(&t, offs->type, 1647));
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, sh), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, y, offs), v, NULL);
  float *xb = calloc(2048, sizeof(float)), *yb = calloc(2048, sizeof(float));
  tj_arg args[2] = {tj_arg_ptr(xb, 2048 * sizeof(float)), tj_arg_ptr(yb, 2048 * sizeof(float))};
  unsigned grid[3] = {8, 1, 1};
  char *msg;
  ck_assert_int_eq(run(t.f, grid, args, 2, &msg), TJ_ERR_BOUNDS);
  ck_assert_msg(strstr(msg, "test.tj:3:5: error: load out of bounds: program (3, 0, 0), element 17 reads 4 bytes at "
                            "offset 8192 of 'x' (8192 bytes)"),
                "got: %s", msg);
  free(msg);
  // Unknown size (nbytes 0): no check; the first three programs alone are
  // in bounds anyway.
  unsigned grid3[3] = {3, 1, 1};
  tj_arg args0[2] = {tj_arg_ptr(xb, 0), tj_arg_ptr(yb, 0)};
  run_ok(t.f, grid3, args0, 2);
  free(xb), free(yb);
  tb_free(&t);
}
END_TEST

START_TEST(test_bounds_store) {
  TB t;
  tb_init(&t, "oob");
  TirValue *y = tb_param(&t, "y", true, DT_I16);
  TirValue *o = tb_param(&t, "o", false, DT_I32);
  TirValue *r = tb_arange(&t, 0, 16);
  TirValue *off = tb_bin(&t, TIR_ADD, r, tb_splat(&t, o, r->type));
  TirValue *m = tb_cmp(&t, CMP_NE, r, tb_ci(&t, r->type, 5));
  TirValue *p = tb_ptr_add(&t, y, off);
  tb_store(&t, p, tb_cast(&t, r, DT_I16), m);
  int16_t yb[16];
  memset(yb, 0, sizeof yb);
  // Offset -5: element 5 would write at -0 ... but it is masked; element 4
  // writes at offset -2 bytes, element 0 first at -10.
  tj_arg args[2] = {tj_arg_ptr(yb, sizeof yb), tj_arg_int(-5)};
  char *msg;
  ck_assert_int_eq(run(t.f, grid1, args, 2, &msg), TJ_ERR_BOUNDS);
  ck_assert_msg(strstr(msg, "store out of bounds: program (0, 0, 0), element 0 writes 2 bytes at offset -10 of 'y' "
                            "(32 bytes)"),
                "got: %s", msg);
  free(msg);
  for (int i = 0; i < 16; i++) ck_assert_int_eq(yb[i], 0);  // nothing written
  // Offset 1 with a 16-element buffer: element 15 writes at byte 32.
  tj_arg args1[2] = {tj_arg_ptr(yb, sizeof yb), tj_arg_int(1)};
  ck_assert_int_eq(run(t.f, grid1, args1, 2, &msg), TJ_ERR_BOUNDS);
  ck_assert_msg(strstr(msg, "element 15 writes 2 bytes at offset 32 of 'y' (32 bytes)"), "got: %s", msg);
  free(msg);
  // Offset 0: every lane in bounds; lane 5 masked off.
  tj_arg args2[2] = {tj_arg_ptr(yb, sizeof yb), tj_arg_int(0)};
  run_ok(t.f, grid1, args2, 2);
  for (int i = 0; i < 16; i++) ck_assert_int_eq(yb[i], i == 5 ? 0 : i);
  tb_free(&t);
}
END_TEST

START_TEST(test_misaligned) {
  TB t;
  tb_init(&t, "mis");
  TirValue *x = tb_param(&t, "x", true, DT_F32);
  TirValue *y = tb_param(&t, "y", true, DT_F32);
  TirValue *r = tb_arange(&t, 0, 4);
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, r), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, y, r), v, NULL);
  _Alignas(16) unsigned char buf[64] = {0};
  float yb[4];
  tj_arg args[2] = {tj_arg_ptr(buf + 2, 32), tj_arg_ptr(yb, sizeof yb)};
  char *msg;
  ck_assert_int_eq(run(t.f, grid1, args, 2, &msg), TJ_ERR_BOUNDS);
  ck_assert_msg(strstr(msg, "misaligned load: program (0, 0, 0), element 0 reads 4 bytes at offset 0 of 'x' (address "
                            "not a multiple of 4)"),
                "got: %s", msg);
  free(msg);
  tb_free(&t);
}
END_TEST

// where() over pointers from two params keeps per-element provenance: the
// bounds check names the buffer each lane really points into.
START_TEST(test_where_provenance) {
  TB t;
  tb_init(&t, "prov");
  TirValue *a = tb_param(&t, "a", true, DT_I32);
  TirValue *b = tb_param(&t, "b", true, DT_I32);
  TirValue *out = tb_param(&t, "out", true, DT_I32);
  TirValue *r = tb_arange(&t, 0, 8);
  TirValue *odd = tb_cmp(&t, CMP_EQ, tb_bin(&t, TIR_AND, r, tb_ci(&t, r->type, 1)), tb_ci(&t, r->type, 1));
  TirValue *pa = tb_ptr_add(&t, a, r);
  TirValue *pb = tb_ptr_add(&t, b, r);
  TirValue *p = tb_op(&t, TIR_WHERE, pa->type, 3, odd, pb, pa);
  tb_store(&t, tb_ptr_add(&t, out, r), tb_load(&t, p, NULL, NULL), NULL);
  int32_t ab[8] = {0, 1, 2, 3, 4, 5, 6, 7}, bb[8] = {10, 11, 12, 13, 14, 15, 16, 17}, ob[8];
  tj_arg args[3] = {tj_arg_ptr(ab, sizeof ab), tj_arg_ptr(bb, sizeof bb), tj_arg_ptr(ob, sizeof ob)};
  run_ok(t.f, grid1, args, 3);
  for (int i = 0; i < 8; i++) ck_assert_int_eq(ob[i], i & 1 ? 10 + i : i);
  // b only 6 elements long: lane 7 (odd, from b) is out of bounds of 'b'.
  tj_arg args2[3] = {tj_arg_ptr(ab, sizeof ab), tj_arg_ptr(bb, 6 * sizeof(int32_t)), tj_arg_ptr(ob, sizeof ob)};
  char *msg;
  ck_assert_int_eq(run(t.f, grid1, args2, 3, &msg), TJ_ERR_BOUNDS);
  ck_assert_msg(strstr(msg, "element 7 reads 4 bytes at offset 28 of 'b' (24 bytes)"), "got: %s", msg);
  free(msg);
  tb_free(&t);
}
END_TEST

START_TEST(test_bad_args) {
  TB t;
  build_vadd(&t, 16);
  float x[16];
  tj_arg args[4] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(x, sizeof x), tj_arg_ptr(x, sizeof x), tj_arg_float(1)};
  char *msg;
  ck_assert_int_eq(run(t.f, grid1, args, 3, &msg), TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(msg, "kernel 'vadd' takes 4 arguments, got 3"), "got: %s", msg);
  free(msg);
  ck_assert_int_eq(run(t.f, grid1, args, 4, &msg), TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(msg, "argument 3 ('n') must be an integer (i32)"), "got: %s", msg);
  free(msg);
  // Broken IR is refused, not run.
  t.f->body->last->args[1] = t.f->body->last->args[0];
  ck_assert_int_eq(run(t.f, grid1, args, 4, &msg), TJ_ERR_INTERNAL);
  ck_assert_msg(strstr(msg, "internal error: tir:"), "got: %s", msg);
  free(msg);
  tb_free(&t);
}
END_TEST

// Transpose and reshape move data (and keep per-element order row-major).
START_TEST(test_trans_reshape) {
  TB t;
  tb_init(&t, "tr");
  TirValue *px = tb_param(&t, "x", true, DT_I32);
  TirValue *po = tb_param(&t, "out", true, DT_I32);
  TirValue *r = tb_arange(&t, 0, 8);
  TirValue *v = tb_load(&t, tb_ptr_add(&t, px, r), NULL, NULL);
  TirValue *m = tb_op(&t, TIR_RESHAPE, ty(DT_I32, 2, 2, 4), 1, v);
  TirValue *tr = tb_op(&t, TIR_TRANS, ty(DT_I32, 2, 4, 2), 1, m);
  TirValue *flat = tb_op(&t, TIR_RESHAPE, ty(DT_I32, 1, 8), 1, tr);
  tb_store(&t, tb_ptr_add(&t, po, r), flat, NULL);
  int32_t x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, out[8];
  tj_arg args[2] = {tj_arg_ptr(x, sizeof x), tj_arg_ptr(out, sizeof out)};
  run_ok(t.f, grid1, args, 2);
  int32_t want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int i = 0; i < 8; i++) ck_assert_int_eq(out[i], want[i]);
  tb_free(&t);
}
END_TEST

static Suite *interp_suite(void) {
  Suite *s = suite_create("interp");
  TCase *tc = tcase_create("kernels");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_vadd_masked_tail);
  tcase_add_test(tc, test_vadd_large);
  tcase_add_test(tc, test_broadcast_2d);
  tcase_add_test(tc, test_softmax_f32);
  tcase_add_test(tc, test_softmax_f16);
  tcase_add_test(tc, test_reduce_arg_ties);
  tcase_add_test(tc, test_reduce_sum_tree);
  tcase_add_test(tc, test_dot);
  tcase_add_test(tc, test_loop);
  tcase_add_test(tc, test_if);
  tcase_add_test(tc, test_int_semantics);
  tcase_add_test(tc, test_f2i_int64_limits);
  tcase_add_test(tc, test_half_rounding);
  tcase_add_test(tc, test_casts);
  tcase_add_test(tc, test_philox_kat);
  tcase_add_test(tc, test_trans_reshape);
  suite_add_tcase(s, tc);
  TCase *tf = tcase_create("faults");
  tcase_add_test(tf, test_bounds_load);
  tcase_add_test(tf, test_bounds_store);
  tcase_add_test(tf, test_misaligned);
  tcase_add_test(tf, test_where_provenance);
  tcase_add_test(tf, test_bad_args);
  suite_add_tcase(s, tf);
  return s;
}

int main(void) { return tj_test_run(interp_suite()); }
