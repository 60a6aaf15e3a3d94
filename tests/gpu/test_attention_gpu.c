/* test_attention_gpu.c: blocksparse attention on the GPU, public API only.
 *
 * Shapes larger than the interpreter suite's (S 256 .. 1024, D 32 / 64 /
 * 128, B x H up to 8), f16 and bf16, on a non-default stream, with the GPU
 * tile configs: dense, causal, a sliding window and BigBird from the
 * pattern functions (bs 16 under 128 x 64 tiles: the masked SUB path), a
 * per-head random layout with empty rows (the LUT path), strided q/o. Each is
 * compared with the double reference of tests/cpu/attention_ref.h at the
 * tolerances of test_attention.c (outputs 4 x ref_tol, gradients f16 2e-2,
 * bf16 1.2e-1, lse 1e-4 relative + absolute: the GPU's ex2.approx/lg2.approx
 * stay far inside it), and the backward pass is run twice and compared bit
 * for bit. Exits 77 (skipped) without a GPU.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu/attention_ref.h"
#include "gpu_blocks.h"
#include "testutil.h"

static double out_tol(tj_dtype dt) { return 4.0 * ref_tol(dt); }
static double grad_tol(tj_dtype dt) { return dt == TJ_F16 ? 2e-2 : 1.2e-1; }

static void check_t(const HostT *got, const double *want, int64_t rows, int64_t k, double tol, const char *what,
                    const char *name) {
  double e = ref_err(got, want, rows, k);
  ck_assert_msg(e <= tol, "%s: %s (%s): error %g > %g", what, name, tj_dtype_name(got->dt), e, tol);
}

typedef struct Case {
  tj_dtype dt;
  int64_t B, H, S, D;
  const uint8_t *bits;   // NULL: all ones
  int lheads, bs, causal, bwd, q_bshd;
  const char *what;
} Case;

static void tensor(DevT *t, const Case *c, int bshd) {
  int64_t sh[4] = { c->B, c->H, c->S, c->D };
  int64_t st[4] = { c->S * c->H * c->D, c->D, c->H * c->D, 1 };
  dev_init(t, c->dt, 4, sh, bshd ? st : NULL);
}

static void run_case(const Case *c) {
  DevT q, k, v, o, lse;
  tensor(&q, c, c->q_bshd);
  tensor(&k, c, 0);
  tensor(&v, c, 0);
  tensor(&o, c, c->q_bshd);
  int64_t ls[3] = { c->B, c->H, c->S };
  dev_init(&lse, TJ_F32, 3, ls, NULL);
  host_fill(&q.h, 21, -2.0, 2.0);
  host_fill(&k.h, 22, -2.0, 2.0);
  host_fill(&v.h, 23, -1.0, 1.0);
  dev_up(&q);
  dev_up(&k);
  dev_up(&v);
  int nb = (int)(c->S / c->bs);
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, c->bits, c->bits ? c->lheads : 1, nb, c->bs, &l));
  OK(tj_attention_fwd(blk, &q.t, &k.t, &v.t, l, 0, c->causal, &o.t, &lse.t, stream));
  // A second call reuses the layout's tables and the compiled kernel.
  int nk = tj_blocks_num_kernels(blk);
  OK(tj_attention_fwd(blk, &q.t, &k.t, &v.t, l, 0, c->causal, &o.t, &lse.t, stream));
  ck_assert_int_eq(tj_blocks_num_kernels(blk), nk);
  dev_down(&o);
  dev_down(&lse);

  uint8_t *ones = NULL;
  if (!c->bits) {
    ones = malloc((size_t)nb * nb);
    memset(ones, 1, (size_t)nb * nb);
  }
  RefLayout L = { c->bits ? c->bits : ones, c->bits ? c->lheads : 1, nb, c->bs, c->causal };
  double scale = 1.0 / sqrt((double)c->D);
  size_t n = (size_t)(c->B * c->H * c->S * c->D), nr = (size_t)(c->B * c->H * c->S);
  double *wo = malloc(sizeof(double) * n), *wl = malloc(sizeof(double) * nr);
  ref_attention_fwd(&q.h, &k.h, &v.h, &L, scale, wo, wl);
  check_t(&o.h, wo, (int64_t)nr, c->D, out_tol(c->dt), c->what, "o");
  const float *lf = lse.h.buf;
  for (size_t r = 0; r < nr; r++) {
    if (isinf(wl[r])) ck_assert_msg(isinf(lf[r]) && lf[r] < 0, "%s: lse[%zu] = %g, want -inf", c->what, r, lf[r]);
    else ck_assert_msg(fabs(lf[r] - wl[r]) <= 1e-4 * (1.0 + fabs(wl[r])), "%s: lse[%zu] = %.7g, want %.7g",
                       c->what, r, lf[r], wl[r]);
  }

  if (c->bwd) {
    DevT g, dq, dk, dv;
    tensor(&g, c, 0);
    tensor(&dq, c, c->q_bshd);
    tensor(&dk, c, 0);
    tensor(&dv, c, 0);
    host_fill(&g.h, 24, -1.0, 1.0);
    dev_up(&g);
    OK(tj_attention_bwd(blk, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, l, 0, c->causal, &dq.t, &dk.t, &dv.t,
                        stream));
    dev_down(&dq);
    dev_down(&dk);
    dev_down(&dv);
    double *wdq = malloc(sizeof(double) * n), *wdk = malloc(sizeof(double) * n), *wdv = malloc(sizeof(double) * n);
    ref_attention_bwd(&q.h, &k.h, &v.h, &g.h, &L, scale, wdq, wdk, wdv);
    check_t(&dq.h, wdq, (int64_t)nr, c->D, grad_tol(c->dt), c->what, "dq");
    check_t(&dk.h, wdk, (int64_t)nr, c->D, grad_tol(c->dt), c->what, "dk");
    check_t(&dv.h, wdv, (int64_t)nr, c->D, grad_tol(c->dt), c->what, "dv");
    // Bit-identical on a second run.
    void *keep[3] = { malloc(dq.h.nbytes), malloc(dk.h.nbytes), malloc(dv.h.nbytes) };
    memcpy(keep[0], dq.h.buf, dq.h.nbytes);
    memcpy(keep[1], dk.h.buf, dk.h.nbytes);
    memcpy(keep[2], dv.h.buf, dv.h.nbytes);
    OK(tj_attention_bwd(blk, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, l, 0, c->causal, &dq.t, &dk.t, &dv.t,
                        stream));
    dev_down(&dq);
    dev_down(&dk);
    dev_down(&dv);
    ck_assert_msg(!memcmp(keep[0], dq.h.buf, dq.h.nbytes) && !memcmp(keep[1], dk.h.buf, dk.h.nbytes) &&
                  !memcmp(keep[2], dv.h.buf, dv.h.nbytes), "%s: backward not bit-identical", c->what);
    for (int i = 0; i < 3; i++) free(keep[i]);
    free(wdq);
    free(wdk);
    free(wdv);
    dev_free(&g);
    dev_free(&dq);
    dev_free(&dk);
    dev_free(&dv);
  }
  free(wo);
  free(wl);
  free(ones);
  tj_attn_layout_free(l);
  dev_free(&q);
  dev_free(&k);
  dev_free(&v);
  dev_free(&o);
  dev_free(&lse);
}

static const tj_dtype dtypes[] = { TJ_F16, TJ_BF16 };

START_TEST(dense_and_causal) {
  for (int d = 0; d < 2; d++) {
    Case c = { .dt = dtypes[d], .B = 2, .H = 4, .S = 512, .D = 64, .bs = 64, .bwd = 1, .what = "dense" };
    run_case(&c);
    c.causal = 1;
    c.what = "causal";
    run_case(&c);
  }
  Case c128 = { .dt = TJ_F16, .B = 1, .H = 2, .S = 256, .D = 128, .bs = 128, .bwd = 1, .what = "dense D128" };
  run_case(&c128);
  Case c32 = { .dt = TJ_BF16, .B = 2, .H = 2, .S = 1024, .D = 32, .bs = 32, .causal = 1, .bwd = 1,
               .q_bshd = 1, .what = "causal D32, q [B, S, H, D]" };
  run_case(&c32);
}
END_TEST

START_TEST(pattern_layouts) {
  enum { S = 512, BS = 16, NB = S / BS };
  uint8_t *lay = malloc(2 * NB * NB);
  OK(tj_pattern_local_1d(blk, S, 129, BS, NULL, lay));
  Case c = { .dt = TJ_F16, .B = 1, .H = 4, .S = S, .D = 64, .bits = lay, .lheads = 1, .bs = BS, .bwd = 1,
             .what = "sliding window 129, bs 16" };
  run_case(&c);
  c.causal = 1;
  c.what = "sliding window, causal";
  run_case(&c);
  int64_t glob[2] = { 0, 300 };
  OK(tj_pattern_bigbird(blk, S, 2, 33, glob, 2, 0.0002, 5, BS, NULL, lay));
  Case bb = { .dt = TJ_BF16, .B = 2, .H = 2, .S = S, .D = 64, .bits = lay, .lheads = 2, .bs = BS, .bwd = 1,
              .what = "bigbird, bs 16" };
  run_case(&bb);
  free(lay);
}
END_TEST

START_TEST(random_layout_empty_rows) {
  enum { H = 4, S = 512, BS = 64, NB = S / BS };
  uint8_t bits[H * NB * NB];
  uint64_t s = 99;
  for (int i = 0; i < H * NB * NB; i++) bits[i] = ref_rand(&s, 0, 1) < 0.3;
  for (int j = 0; j < NB; j++) bits[2 * NB * NB + 5 * NB + j] = 0;
  for (int d = 0; d < 2; d++) {
    Case c = { .dt = dtypes[d], .B = 2, .H = H, .S = S, .D = 64, .bits = bits, .lheads = H, .bs = BS, .bwd = 1,
               .what = "random per-head layout" };
    run_case(&c);
    c.causal = 1;
    c.what = "random per-head layout, causal";
    run_case(&c);
  }
}
END_TEST

// The forward pass's 256-row tiles (32 query rows per warp), which the
// heuristic takes only for dense layouts with grids of >= 2 programs per SM
// (B x H x S / 256 >= 264 on the H200): too large for the double reference,
// so the tile is forced through TILEJIT_ATTN_CONFIG on the shapes above,
// every path (a forced tile applies to any layout): dense, causal diagonal
// tiles, a bs 16 window and a per-head random layout with empty rows
// (masked SUB and LUT tiles), D 32 and 64.
START_TEST(wide_query_tiles) {
  setenv("TILEJIT_ATTN_CONFIG", "256,64,8;64,64,8", 1);
  Case c = { .dt = TJ_F16, .B = 2, .H = 2, .S = 512, .D = 64, .bs = 64, .what = "dense, 256-row tiles" };
  run_case(&c);
  c.causal = 1;
  c.dt = TJ_BF16;
  c.what = "causal, 256-row tiles";
  run_case(&c);
  Case c32 = { .dt = TJ_F16, .B = 1, .H = 2, .S = 1024, .D = 32, .bs = 32, .causal = 1, .q_bshd = 1,
               .what = "causal D32, q [B, S, H, D], 256-row tiles" };
  run_case(&c32);
  enum { S = 512, BS = 16, NB = S / BS, H = 2 };
  uint8_t *lay = malloc((size_t)H * NB * NB);
  OK(tj_pattern_local_1d(blk, S, 129, BS, NULL, lay));
  Case w = { .dt = TJ_F16, .B = 1, .H = 2, .S = S, .D = 64, .bits = lay, .lheads = 1, .bs = BS, .causal = 1,
             .what = "sliding window bs 16, causal, 256-row tiles" };
  run_case(&w);
  uint64_t sd = 7;
  for (int i = 0; i < H * NB * NB; i++) lay[i] = ref_rand(&sd, 0, 1) < 0.2;
  for (int j = 0; j < NB; j++) lay[NB * NB + 3 * NB + j] = 0;   // head 1, layout row 3: empty
  Case r = { .dt = TJ_F16, .B = 1, .H = H, .S = S, .D = 64, .bits = lay, .lheads = H, .bs = BS,
             .what = "random per-head layout bs 16, empty rows, 256-row tiles" };
  run_case(&r);
  free(lay);
  unsetenv("TILEJIT_ATTN_CONFIG");
}
END_TEST

START_TEST(host_pointer_refused) {
  DevT q, o, lse;
  Case c = { .dt = TJ_F16, .B = 1, .H = 1, .S = 64, .D = 64 };
  tensor(&q, &c, 0);
  tensor(&o, &c, 0);
  int64_t ls[3] = { 1, 1, 64 };
  dev_init(&lse, TJ_F32, 3, ls, NULL);
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, NULL, 1, 1, 64, &l));
  DLTensor hq = q.t;
  hq.data = q.h.buf;
  ck_assert_int_eq(tj_attention_fwd(blk, &hq, &q.t, &q.t, l, 0, 0, &o.t, &lse.t, stream), TJ_ERR_INVALID_ARG);
  ck_assert_msg(strstr(tj_ctx_last_error(ctx), "q claims kDLCUDA but its data") != NULL, "%s",
                tj_ctx_last_error(ctx));
  tj_attn_layout_free(l);
  dev_free(&q);
  dev_free(&o);
  dev_free(&lse);
}
END_TEST

// wide_query_tiles forces a tile through the environment: a failed check
// there must not leave it set for the cases after it (CK_FORK=no).
static void attn_teardown(void) {
  unsetenv("TILEJIT_ATTN_CONFIG");
  teardown();
}

int main(void) {
  int gpu = tj_test_gpu_or_skip("test_attention_gpu");
  if (gpu != 0) return gpu;
  Suite *s = suite_create("attention_gpu");
  const TTest *const tests[] = { host_pointer_refused, dense_and_causal, pattern_layouts,
    random_layout_empty_rows, wide_query_tiles };
  tj_test_add_each(s, tests, (int)(sizeof tests / sizeof tests[0]), setup, attn_teardown, 900);
  return tj_test_run(s);
}
