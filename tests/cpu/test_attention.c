/* test_attention.c: blocksparse attention (blocks/attention.c) through the
 * interpreter, and the attention patterns (blocks/patterns.c).
 *
 * Attention runs on kDLCPU tensors (bounds-checked interpreter) and is
 * compared with the double reference of attention_ref.h, which evaluates
 * the exact function from the same rounded inputs. Tolerances, as
 * ref_err_scaled measures them (relative, floored at 5% of the tensor's
 * largest value): outputs f32 2e-5, f16 7.8e-3, bf16 6.2e-2 (4 x ref_tol:
 * p is rounded to the operand dtype before p.v, one more rounding of the
 * size of the output's own); gradients f32 1e-4, f16 2e-2, bf16 1.2e-1
 * (ds = p (dp - delta) is rounded to the operand dtype before ds.k and
 * ds^T.q, and delta comes from the rounded o); lse
 * 1e-4 absolute. Shapes are small (S <= 128, D 32/64): the interpreter runs
 * dot exactly but slowly.
 *
 * Patterns are checked against a direct evaluation of each definition in
 * this file (xFormers' formulas, the Swin one through its nearest-anchor
 * argmin rather than the closed form) and against hand-written masks.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_ref.h"
#include "blocks/blocks_int.h"
#include "blocks_fixture.h"
#include "testutil.h"

static void setup(void) { fixture_open(); }
static void teardown(void) { fixture_close(); }

static double grad_tol(tj_dtype dt) { return dt == TJ_F32 ? 1e-4 : dt == TJ_F16 ? 2e-2 : 1.2e-1; }
static double out_tol(tj_dtype dt) { return dt == TJ_F32 ? ref_tol(dt) : 4.0 * ref_tol(dt); }

// ---------------------------------------------------------------- cases

typedef struct Case {
  tj_dtype dt;
  int64_t B, H, S, D;
  const uint8_t *bits;   // NULL: all ones
  int lheads, bs;
  int causal;
  double scale;          // 0: 1 / sqrt(D)
  BlkAttnCfg cfg;        // tiles (bm 0: default)
  int layout_q;          // q, o, dq as [B, S, H, D] storage (transposed heads)
  int strided_kv;        // k with padded rows, v with D not unit-stride ([B, H, D, S] storage)
  int bwd;
  const char *what;
} Case;

// [B, H, S, D] tensor with storage order perm (0: compact; 1: [B, S, H, D];
// 2: [B, H, D, S]; 3: rows padded by 8).
static void attn_tensor(HostT *t, tj_dtype dt, const Case *c, int storage) {
  int64_t shape[4] = { c->B, c->H, c->S, c->D };
  int64_t st[4];
  int64_t B = c->B, H = c->H, S = c->S, D = c->D;
  (void)B;
  switch (storage) {
  case 1: st[0] = S * H * D; st[1] = D; st[2] = H * D; st[3] = 1; break;
  case 2: st[0] = H * D * S; st[1] = D * S; st[2] = 1; st[3] = S; break;
  case 3: st[0] = H * S * (D + 8); st[1] = S * (D + 8); st[2] = D + 8; st[3] = 1; break;
  default: st[3] = 1; st[2] = D; st[1] = S * D; st[0] = H * S * D; break;
  }
  host_init(t, dt, 4, shape, st);
}

static void check_t(const HostT *got, const double *want, int64_t rows, int64_t k, double tol, const char *what,
                    const char *name) {
  double e = ref_err(got, want, rows, k);
  ck_assert_msg(e <= tol, "%s: %s (%s): error %g > %g", what, name, tj_dtype_name(got->dt), e, tol);
}

static void check_lse(const HostT *lse, const double *want, int64_t n, const char *what) {
  const float *l = (const float *)lse->buf;
  for (int64_t r = 0; r < n; r++) {
    if (isinf(want[r])) {
      ck_assert_msg(isinf(l[r]) && l[r] < 0, "%s: lse[%lld] = %g, want -inf", what, (long long)r, l[r]);
      continue;
    }
    ck_assert_msg(fabs(l[r] - want[r]) <= 1e-4 * (1.0 + fabs(want[r])), "%s: lse[%lld] = %.7g, want %.7g",
                  what, (long long)r, l[r], want[r]);
  }
}

// Runs one case forward (and backward), checks against the reference;
// returns the layout so callers can inspect its plans (freed by them).
static void run_case(const Case *c) {
  HostT q, k, v, o, lse;
  attn_tensor(&q, c->dt, c, c->layout_q ? 1 : 0);
  attn_tensor(&k, c->dt, c, c->strided_kv ? 3 : 0);
  attn_tensor(&v, c->dt, c, c->strided_kv ? 2 : 0);
  attn_tensor(&o, c->dt, c, c->layout_q ? 1 : 0);
  int64_t lshape[3] = { c->B, c->H, c->S };
  host_init(&lse, TJ_F32, 3, lshape, NULL);
  host_fill(&q, 11 + (uint64_t)c->S, -1.5, 1.5);
  host_fill(&k, 12 + (uint64_t)c->D, -1.5, 1.5);
  host_fill(&v, 13, -1.0, 1.0);
  int nb = (int)(c->S / c->bs);
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, c->bits, c->bits ? c->lheads : 1, nb, c->bs, &l));
  if (c->cfg.bm) blk_attn_force_config(l, &c->cfg);
  OK(tj_attention_fwd(blk, &q.t, &k.t, &v.t, l, c->scale, c->causal, &o.t, &lse.t, NULL));

  uint8_t *ones = NULL;
  if (!c->bits) {
    ones = malloc((size_t)nb * nb);
    memset(ones, 1, (size_t)nb * nb);
  }
  RefLayout L = { c->bits ? c->bits : ones, c->bits ? c->lheads : 1, nb, c->bs, c->causal };
  double scale = c->scale != 0 ? c->scale : 1.0 / sqrt((double)c->D);
  size_t n = (size_t)(c->B * c->H * c->S * c->D), nr = (size_t)(c->B * c->H * c->S);
  double *wo = malloc(sizeof(double) * n), *wl = malloc(sizeof(double) * nr);
  ref_attention_fwd(&q, &k, &v, &L, scale, wo, wl);
  check_t(&o, wo, (int64_t)nr, c->D, out_tol(c->dt), c->what, "o");
  check_lse(&lse, wl, (int64_t)nr, c->what);

  if (c->bwd) {
    HostT g, dq, dk, dv, dq2, dk2, dv2;
    attn_tensor(&g, c->dt, c, 0);
    attn_tensor(&dq, c->dt, c, c->layout_q ? 1 : 0);
    attn_tensor(&dk, c->dt, c, c->strided_kv ? 3 : 0);
    attn_tensor(&dv, c->dt, c, c->strided_kv ? 2 : 0);
    attn_tensor(&dq2, c->dt, c, c->layout_q ? 1 : 0);
    attn_tensor(&dk2, c->dt, c, c->strided_kv ? 3 : 0);
    attn_tensor(&dv2, c->dt, c, c->strided_kv ? 2 : 0);
    host_fill(&g, 14, -1.0, 1.0);
    OK(tj_attention_bwd(blk, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, l, c->scale, c->causal, &dq.t, &dk.t, &dv.t,
                        NULL));
    double *wdq = malloc(sizeof(double) * n), *wdk = malloc(sizeof(double) * n), *wdv = malloc(sizeof(double) * n);
    ref_attention_bwd(&q, &k, &v, &g, &L, scale, wdq, wdk, wdv);
    double tol = grad_tol(c->dt);
    check_t(&dq, wdq, (int64_t)nr, c->D, tol, c->what, "dq");
    check_t(&dk, wdk, (int64_t)nr, c->D, tol, c->what, "dk");
    check_t(&dv, wdv, (int64_t)nr, c->D, tol, c->what, "dv");
    // Deterministic: the same bits again.
    OK(tj_attention_bwd(blk, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, l, c->scale, c->causal, &dq2.t, &dk2.t,
                        &dv2.t, NULL));
    ck_assert_msg(!memcmp(dq.buf, dq2.buf, dq.nbytes) && !memcmp(dk.buf, dk2.buf, dk.nbytes) &&
                  !memcmp(dv.buf, dv2.buf, dv.nbytes), "%s: backward not bit-identical run to run", c->what);
    free(wdq);
    free(wdk);
    free(wdv);
    HostT *gs[] = { &g, &dq, &dk, &dv, &dq2, &dk2, &dv2 };
    for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) host_free(gs[i]);
  }
  free(wo);
  free(wl);
  free(ones);
  tj_attn_layout_free(l);
  HostT *all[] = { &q, &k, &v, &o, &lse };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
}

static const tj_dtype dtypes[] = { TJ_F16, TJ_BF16, TJ_F32 };

// ---------------------------------------------------------------- forward and backward

START_TEST(dense) {
  for (int d = 0; d < 3; d++) {
    Case c = { .dt = dtypes[d], .B = 2, .H = 2, .S = 64, .D = 32, .bs = 32, .bwd = 1, .what = "dense" };
    run_case(&c);
  }
  Case c = { .dt = TJ_F16, .B = 1, .H = 2, .S = 128, .D = 64, .bs = 64, .scale = 0.3, .what = "dense S128 D64" };
  run_case(&c);
}
END_TEST

START_TEST(causal) {
  for (int d = 0; d < 3; d++) {
    Case c = { .dt = dtypes[d], .B = 1, .H = 2, .S = 64, .D = 32, .bs = 16, .causal = 1, .bwd = 1,
               .what = "causal" };
    run_case(&c);
  }
  // Query tiles taller than key tiles and the reverse, across the diagonal.
  Case c1 = { .dt = TJ_F16, .B = 1, .H = 1, .S = 128, .D = 64, .bs = 32, .causal = 1, .bwd = 1,
              .cfg = { 64, 16, 4 }, .what = "causal 64x16" };
  run_case(&c1);
  Case c2 = { .dt = TJ_BF16, .B = 1, .H = 1, .S = 128, .D = 32, .bs = 128, .causal = 1, .bwd = 1,
              .cfg = { 16, 64, 4 }, .what = "causal 16x64" };
  run_case(&c2);
}
END_TEST

// A per-head random block layout (a LUT, not a range), with empty rows.
START_TEST(random_layout) {
  enum { H = 3, NB = 8 };
  uint8_t bits[H * NB * NB];
  uint64_t s = 42;
  for (int i = 0; i < H * NB * NB; i++) bits[i] = ref_rand(&s, 0, 1) < 0.35;
  for (int j = 0; j < NB; j++) bits[1 * NB * NB + 2 * NB + j] = 0;   // head 1, block row 2: empty
  for (int d = 0; d < 3; d++) {
    Case c = { .dt = dtypes[d], .B = 2, .H = H, .S = 128, .D = 32, .bits = bits, .lheads = H, .bs = 16,
               .bwd = 1, .what = "random layout" };
    run_case(&c);
    c.causal = 1;
    c.what = "random layout, causal";
    run_case(&c);
  }
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, bits, H, NB, 16, &l));
  BlkAttnPlanInfo pi;
  OK(blk_attn_plan_info(blk, l, 16, 16, false, &pi));
  ck_assert(!pi.range && !pi.sub);
  int64_t nnz = 0;
  for (int i = 0; i < H * NB * NB; i++) nnz += bits[i];
  ck_assert_int_eq(tj_attn_layout_nnz(l), nnz);
  ck_assert_int_eq(pi.tiles, nnz);
  tj_attn_layout_free(l);
}
END_TEST

// Block sizes other than the kernel tile: tiles spanning several blocks
// (SUB: the off blocks are masked element by element) and tiles inside one.
START_TEST(block_size_vs_tile) {
  enum { NB = 8 };
  uint8_t bits[NB * NB];
  uint64_t s = 7;
  for (int i = 0; i < NB * NB; i++) bits[i] = ref_rand(&s, 0, 1) < 0.5;
  // bs 16 under 32x32 tiles (SUB), LUT form.
  Case c = { .dt = TJ_F16, .B = 1, .H = 2, .S = 128, .D = 32, .bits = bits, .lheads = 1, .bs = 16,
             .cfg = { 32, 32, 4 }, .bwd = 1, .what = "bs 16, tiles 32x32" };
  run_case(&c);
  c.causal = 1;
  c.what = "bs 16, tiles 32x32, causal";
  run_case(&c);
  c.cfg = (BlkAttnCfg){ 64, 16, 4 };
  c.what = "bs 16, tiles 64x16, causal";
  run_case(&c);
  // bs 64 under 16x32 tiles: a block splits into several tiles.
  uint8_t b4[4] = { 1, 0, 1, 1 };
  Case c2 = { .dt = TJ_BF16, .B = 1, .H = 2, .S = 128, .D = 64, .bits = b4, .lheads = 1, .bs = 64,
              .cfg = { 16, 32, 4 }, .bwd = 1, .what = "bs 64, tiles 16x32" };
  run_case(&c2);

  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, bits, 1, NB, 16, &l));
  BlkAttnPlanInfo pi;
  OK(blk_attn_plan_info(blk, l, 32, 32, false, &pi));
  ck_assert(pi.sub);
  OK(blk_attn_plan_info(blk, l, 16, 16, false, &pi));
  ck_assert(!pi.sub);
  tj_attn_layout_free(l);
}
END_TEST

// Sliding windows and causal layouts are runs of tiles: the RANGE variant,
// forward and transposed; the kernels' keys say which variant ran.
START_TEST(range_variant) {
  enum { S = 128, BS = 16, NB = S / BS };
  uint8_t lay[NB * NB];
  OK(tj_pattern_local_1d(blk, S, 33, BS, NULL, lay));
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, lay, 1, NB, BS, &l));
  BlkAttnPlanInfo pi;
  OK(blk_attn_plan_info(blk, l, 32, 32, false, &pi));
  ck_assert(pi.range && pi.range_t && pi.sub);
  OK(blk_attn_plan_info(blk, l, 32, 32, true, &pi));
  ck_assert(pi.range && pi.range_t);
  tj_attn_layout_free(l);
  Case c = { .dt = TJ_F16, .B = 1, .H = 2, .S = S, .D = 32, .bits = lay, .lheads = 1, .bs = BS,
             .cfg = { 32, 32, 4 }, .bwd = 1, .what = "sliding window" };
  run_case(&c);
  c.causal = 1;
  c.what = "sliding window, causal";
  run_case(&c);
  bool range = false;
  for (int i = 0; i < blk->nkernels; i++) range |= strstr(blk->kernels[i].key, "RANGE=true") != NULL;
  ck_assert(range);
}
END_TEST

// Rows with nothing live: o = 0 and lse = -inf, zero gradients.
START_TEST(empty_rows) {
  enum { NB = 4 };
  // Row 1 empty; row 3 has only block (3, 3)... and with causal, row 0 has
  // only an above-diagonal block, so it is empty too.
  uint8_t bits[NB * NB] = {
    0, 1, 0, 0,
    0, 0, 0, 0,
    1, 0, 1, 0,
    0, 0, 0, 1,
  };
  for (int causal = 0; causal < 2; causal++) {
    Case c = { .dt = TJ_F16, .B = 1, .H = 1, .S = 64, .D = 32, .bits = bits, .lheads = 1, .bs = 16,
               .causal = causal, .bwd = 1, .what = causal ? "empty rows, causal" : "empty rows" };
    run_case(&c);
  }
  // Explicitly: zeros, -inf and zero dq rows where nothing is live.
  HostT q, k, v, o, lse, g, dq, dk, dv;
  int64_t sh[4] = { 1, 1, 64, 32 }, ls[3] = { 1, 1, 64 };
  HostT *ts[] = { &q, &k, &v, &o, &g, &dq, &dk, &dv };
  for (int i = 0; i < 8; i++) host_init(ts[i], TJ_F32, 4, sh, NULL);
  host_init(&lse, TJ_F32, 3, ls, NULL);
  host_fill(&q, 1, -1, 1);
  host_fill(&k, 2, -1, 1);
  host_fill(&v, 3, -1, 1);
  host_fill(&g, 4, -1, 1);
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, bits, 1, NB, 16, &l));
  OK(tj_attention_fwd(blk, &q.t, &k.t, &v.t, l, 0, 1, &o.t, &lse.t, NULL));
  OK(tj_attention_bwd(blk, &q.t, &k.t, &v.t, &o.t, &lse.t, &g.t, l, 0, 1, &dq.t, &dk.t, &dv.t, NULL));
  const float *of = o.buf, *lf = lse.buf, *dqf = dq.buf;
  for (int i = 0; i < 32; i++) {   // rows 0 .. 31: block rows 0 and 1
    ck_assert_msg(isinf(lf[i]) && lf[i] < 0, "lse[%d] = %g", i, lf[i]);
    for (int d = 0; d < 32; d++) {
      ck_assert_msg(of[i * 32 + d] == 0.0f, "o[%d, %d] = %g", i, d, of[i * 32 + d]);
      ck_assert_msg(dqf[i * 32 + d] == 0.0f, "dq[%d, %d] = %g", i, d, dqf[i * 32 + d]);
    }
  }
  ck_assert(isfinite(lf[40]));
  tj_attn_layout_free(l);
  for (int i = 0; i < 8; i++) host_free(ts[i]);
  host_free(&lse);
}
END_TEST

// Strides: q, o, dq stored [B, S, H, D]; k rows padded; v stored [B, H, D, S]
// (D not unit-stride: the UNIT_D = false kernels); a shared layout; and k
// broadcast over heads (stride 0).
START_TEST(strides) {
  Case c = { .dt = TJ_F16, .B = 2, .H = 2, .S = 64, .D = 32, .bs = 32, .layout_q = 1, .strided_kv = 1,
             .causal = 1, .bwd = 1, .what = "strided views" };
  run_case(&c);
  bool generic = false;
  for (int i = 0; i < blk->nkernels; i++) generic |= strstr(blk->kernels[i].key, "UNIT_D=false") != NULL;
  ck_assert(generic);

  HostT q, k, v, o, lse;
  int64_t sh[4] = { 1, 3, 64, 32 }, kst[4] = { 64 * 32, 0, 32, 1 }, ls[3] = { 1, 3, 64 };
  host_init(&q, TJ_F32, 4, sh, NULL);
  host_init(&k, TJ_F32, 4, sh, kst);
  host_init(&v, TJ_F32, 4, sh, NULL);
  host_init(&o, TJ_F32, 4, sh, NULL);
  host_init(&lse, TJ_F32, 3, ls, NULL);
  host_fill(&q, 5, -1, 1);
  host_fill(&k, 6, -1, 1);
  host_fill(&v, 7, -1, 1);
  tj_attn_layout *l;
  OK(tj_attn_layout_create(blk, NULL, 1, 2, 32, &l));
  OK(tj_attention_fwd(blk, &q.t, &k.t, &v.t, l, 0, 0, &o.t, &lse.t, NULL));
  uint8_t ones[4] = { 1, 1, 1, 1 };
  RefLayout L = { ones, 1, 2, 32, 0 };
  double wo[3 * 64 * 32], wl[3 * 64];
  ref_attention_fwd(&q, &k, &v, &L, 1.0 / sqrt(32.0), wo, wl);
  check_t(&o, wo, 3 * 64, 32, ref_tol(TJ_F32), "k broadcast over heads", "o");
  tj_attn_layout_free(l);
  HostT *all[] = { &q, &k, &v, &o, &lse };
  for (size_t i = 0; i < 5; i++) host_free(all[i]);
}
END_TEST

// Each pattern's pooled layout drives the kernel (f16, forward and backward).
START_TEST(pattern_layouts) {
  enum { S = 64, BS = 16, NB = S / BS };
  uint8_t lay[2 * NB * NB];
  int64_t glob[2] = { 0, 37 };
  const char *names[] = { "local_1d", "causal_1d", "global", "bigbird", "longformer", "axial_2d",
                          "local_2d", "swin", "dilated_2d", "random" };
  for (int pi = 0; pi < 10; pi++) {
    int heads = 1;
    switch (pi) {
    case 0: OK(tj_pattern_local_1d(blk, S, 15, BS, NULL, lay)); break;
    case 1: OK(tj_pattern_causal_1d(blk, S, BS, NULL, lay)); break;
    case 2: OK(tj_pattern_global(blk, S, glob, 2, BS, NULL, lay)); break;
    case 3: heads = 2; OK(tj_pattern_bigbird(blk, S, 2, 3, glob, 1, 0.002, 9, BS, NULL, lay)); break;
    case 4: OK(tj_pattern_longformer(blk, S, 9, glob + 1, 1, BS, NULL, lay)); break;
    case 5: OK(tj_pattern_axial_2d(blk, 8, 8, -1, BS, NULL, lay)); break;
    case 6: OK(tj_pattern_local_2d(blk, 8, 8, 2.5, 2.0, BS, NULL, lay)); break;
    case 7: OK(tj_pattern_swin(blk, 8, 8, 4, 2, BS, NULL, lay)); break;
    case 8: OK(tj_pattern_dilated_2d(blk, 8, 8, 3, BS, NULL, lay)); break;
    default: heads = 2; OK(tj_pattern_random(blk, NB, 2, 0.4, 3, 1, lay, NULL)); break;
    }
    char what[64];
    snprintf(what, sizeof what, "%s layout", names[pi]);
    Case c = { .dt = TJ_F16, .B = 1, .H = 2, .S = S, .D = 32, .bits = lay, .lheads = heads, .bs = BS,
               .bwd = 1, .what = what };
    run_case(&c);
  }
}
END_TEST

// Through the registry: the layout as a u8 host tensor.
START_TEST(registry_call) {
  const tj_block_desc *d = tj_block_find("attention");
  ck_assert_ptr_nonnull(d);
  ck_assert_ptr_nonnull(tj_block_find("attention_bwd"));
  HostT q, k, v, o, lse;
  int64_t sh[4] = { 1, 2, 64, 32 }, ls[3] = { 1, 2, 64 };
  host_init(&q, TJ_F16, 4, sh, NULL);
  host_init(&k, TJ_F16, 4, sh, NULL);
  host_init(&v, TJ_F16, 4, sh, NULL);
  host_init(&o, TJ_F16, 4, sh, NULL);
  host_init(&lse, TJ_F32, 3, ls, NULL);
  host_fill(&q, 1, -1, 1);
  host_fill(&k, 2, -1, 1);
  host_fill(&v, 3, -1, 1);
  uint8_t bits[4] = { 1, 0, 1, 1 };
  int64_t lsh[2] = { 2, 2 };
  DLTensor lt = { .data = bits, .device = { kDLCPU, 0 }, .ndim = 2, .dtype = { kDLUInt, 8, 1 }, .shape = lsh };
  DLTensor *ts[6] = { &q.t, &k.t, &v.t, &lt, &o.t, &lse.t };
  double sc[2] = { 0.25, 1 };
  OK(tj_block_call(blk, d, ts, 6, sc, 2, NULL));
  RefLayout L = { bits, 1, 2, 32, 1 };
  double wo[2 * 64 * 32], wl[2 * 64];
  ref_attention_fwd(&q, &k, &v, &L, 0.25, wo, wl);
  check_t(&o, wo, 128, 32, out_tol(TJ_F16), "attention by name", "o");
  HostT *all[] = { &q, &k, &v, &o, &lse };
  for (size_t i = 0; i < 5; i++) host_free(all[i]);
}
END_TEST

// ---------------------------------------------------------------- errors

START_TEST(bad_inputs) {
  HostT q, k, o, lse, q48, q64, k2, lse16, q3;
  int64_t sh[4] = { 1, 2, 64, 32 }, ls[3] = { 1, 2, 64 };
  int64_t sh48[4] = { 1, 2, 64, 48 }, sh64[4] = { 1, 2, 64, 32 }, shS[4] = { 1, 2, 96, 32 }, sh3[3] = { 1, 2, 64 };
  host_init(&q, TJ_F16, 4, sh, NULL);
  host_init(&k, TJ_F16, 4, sh, NULL);
  host_init(&o, TJ_F16, 4, sh, NULL);
  host_init(&lse, TJ_F32, 3, ls, NULL);
  host_init(&q48, TJ_F16, 4, sh48, NULL);
  host_init(&q64, TJ_F64, 4, sh64, NULL);
  host_init(&k2, TJ_F16, 4, shS, NULL);
  host_init(&lse16, TJ_F16, 3, ls, NULL);
  host_init(&q3, TJ_F16, 3, sh3, NULL);
  unsigned char sentinel[2 * 64 * 32 * 2];
  memcpy(sentinel, o.buf, sizeof sentinel);
  tj_attn_layout *l, *l48, *lh3;
  OK(tj_attn_layout_create(blk, NULL, 1, 2, 32, &l));
  OK(tj_attn_layout_create(blk, NULL, 1, 3, 16, &l48));
  OK(tj_attn_layout_create(blk, NULL, 3, 2, 32, &lh3));

  expect_error(tj_attention_fwd(blk, &q64.t, &k.t, &k.t, l, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "q has dtype f64; attention supports f16, bf16, f32");
  expect_error(tj_attention_fwd(blk, &q3.t, &k.t, &k.t, l, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: q has 3 dimensions; it must be [B, H, S, D]");
  expect_error(tj_attention_fwd(blk, &q.t, &k2.t, &k.t, l, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: k shape [1, 2, 96, 32] does not match q shape [1, 2, 64, 32]");
  expect_error(tj_attention_fwd(blk, &q48.t, &q48.t, &q48.t, l, 0, 0, &q48.t, &lse.t, NULL), TJ_ERR_UNSUPPORTED,
               "head dimension D = 48 is not supported; it must be 32, 64 or 128");
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l48, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "the layout has 3 x 3 blocks of 16 (S = 48) but q has S = 64");
  expect_error(tj_attention_fwd(blk, &k2.t, &k2.t, &k2.t, l48, 0, 0, &k2.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "lse shape [1, 2, 64] must be [B, H, S] of q shape [1, 2, 96, 32]");
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, lh3, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "the layout has 3 heads but q has H = 2");
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, NULL, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: layout is NULL");
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, 0, 0, &o.t, &lse16.t, NULL), TJ_ERR_INVALID_ARG,
               "lse has dtype f16; attention supports f32");
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, NAN, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: scale must be finite");
  HostT ov;
  int64_t ovs[4] = { 2048, 1024, 16, 1 };   // rows of 32 elements 16 apart: overlap
  host_init(&ov, TJ_F16, 4, sh, ovs);
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, 0, 0, &ov.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: output o has overlapping elements");
  // S not a multiple of bs: 40 tokens, blocks of 16.
  HostT q40, lse40;
  int64_t sh40[4] = { 1, 2, 40, 32 }, ls40[3] = { 1, 2, 40 };
  host_init(&q40, TJ_F16, 4, sh40, NULL);
  host_init(&lse40, TJ_F32, 3, ls40, NULL);
  tj_attn_layout *l16;
  OK(tj_attn_layout_create(blk, NULL, 1, 2, 16, &l16));
  expect_error(tj_attention_fwd(blk, &q40.t, &q40.t, &q40.t, l16, 0, 0, &q40.t, &lse40.t, NULL), TJ_ERR_INVALID_ARG,
               "sequence length S = 40 is not a multiple of the layout's block size 16");
  tj_attn_layout *l24 = (tj_attn_layout *)0x1;
  expect_error(tj_attn_layout_create(blk, NULL, 1, 4, 24, &l24), TJ_ERR_INVALID_ARG,
               "block size 24 is not supported; it must be 16, 32, 64 or 128");
  ck_assert_ptr_null(l24);
  o.t.device.device_type = kDLCUDA;
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, 0, 0, &o.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "o is on kDLCUDA:0 but q is on kDLCPU:0");
  o.t.device.device_type = kDLCPU;
  expect_error(tj_attention_bwd(blk, &q.t, &k.t, &k.t, &o.t, &lse.t, &k2.t, l, 0, 0, &q.t, &k.t, &o.t, NULL),
               TJ_ERR_INVALID_ARG, "attention_bwd: dout shape [1, 2, 96, 32] does not match q shape");
  expect_error(tj_attention_bwd(blk, &q.t, &k.t, &k.t, &o.t, &lse.t, &k.t, l, 0, 0, &q.t, &ov.t, &o.t, NULL),
               TJ_ERR_INVALID_ARG, "attention_bwd: output dk has overlapping elements");

  // Outputs sharing memory with an input or with each other.
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, 0, 0, &q.t, &lse.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: output o overlaps input q (their address ranges intersect)");
  HostT lse_in_o = lse;   // lse's view placed inside o's bytes
  lse_in_o.t.data = o.buf;
  expect_error(tj_attention_fwd(blk, &q.t, &k.t, &k.t, l, 0, 0, &o.t, &lse_in_o.t, NULL), TJ_ERR_INVALID_ARG,
               "attention: output o overlaps output lse");
  HostT dq, dk;
  host_init(&dq, TJ_F16, 4, sh, NULL);
  host_init(&dk, TJ_F16, 4, sh, NULL);
  expect_error(tj_attention_bwd(blk, &q.t, &k.t, &k.t, &o.t, &lse.t, &o.t, l, 0, 0, &dq.t, &dk.t, &k.t, NULL),
               TJ_ERR_INVALID_ARG, "attention_bwd: output dv overlaps input k");
  expect_error(tj_attention_bwd(blk, &q.t, &k.t, &k.t, &o.t, &lse.t, &o.t, l, 0, 0, &dq.t, &dk.t, &dq.t, NULL),
               TJ_ERR_INVALID_ARG, "attention_bwd: output dq overlaps output dv");
  host_free(&dq);
  host_free(&dk);

  ck_assert(memcmp(sentinel, o.buf, sizeof sentinel) == 0);   // nothing was written
  ck_assert_int_eq(tj_blocks_num_kernels(blk), 0);             // nor compiled

  // Patterns.
  uint8_t m[64];
  expect_error(tj_pattern_local_1d(blk, 8, 4, 4, m, NULL), TJ_ERR_INVALID_ARG,
               "the window must be odd and >= 1 (self plus two wings), got 4");
  expect_error(tj_pattern_causal_1d(blk, 8, 3, NULL, m), TJ_ERR_INVALID_ARG,
               "S = 8 is not a multiple of the block size 3");
  int64_t bad = 9;
  expect_error(tj_pattern_global(blk, 8, &bad, 1, 4, m, NULL), TJ_ERR_INVALID_ARG,
               "global token 9 (entry 0) is outside [0, 8)");
  expect_error(tj_pattern_random(blk, 8, 1, 1.5, 0, 4, m, NULL), TJ_ERR_INVALID_ARG, "density must be in [0, 1]");
  expect_error(tj_pattern_swin(blk, 4, 6, 4, 0, 4, NULL, NULL), TJ_ERR_INVALID_ARG,
               "H = 4 and W = 6 must be multiples of the window 4");
  expect_error(tj_pattern_swin(blk, 4, 4, 4, 4, 4, NULL, NULL), TJ_ERR_INVALID_ARG, "shift must be in [0, window = 4)");
  expect_error(tj_pattern_dilated_2d(blk, 4, 4, 0, 4, NULL, NULL), TJ_ERR_INVALID_ARG, "k must be >= 1, got 0");
  ck_assert_int_eq(tj_pattern_local_1d(NULL, 8, 4, 4, m, NULL), TJ_ERR_INVALID_ARG);   // no handle: status only

  tj_attn_layout_free(l);
  tj_attn_layout_free(l48);
  tj_attn_layout_free(lh3);
  tj_attn_layout_free(l16);
  tj_attn_layout_free(NULL);
  HostT *all[] = { &q, &k, &o, &lse, &q48, &q64, &k2, &lse16, &q3, &ov, &q40, &lse40 };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) host_free(all[i]);
}
END_TEST

// ---------------------------------------------------------------- patterns

// Direct evaluations of the definitions (xFormers' attention_patterns).
static int def_swin(int64_t H, int64_t W, int64_t ws, int64_t shift, int64_t i, int64_t j) {
  // Nearest anchor by L2 distance, first on ties, as torch.cdist(...).argmin(1).
  int extra = shift % ws != 0;
  int64_t gh = H / ws + extra, gw = W / ws + extra;
  int64_t s = ((-shift) % ws + ws) % ws;
  double offset = ws / 2.0 - (double)s;
  int64_t id[2];
  int64_t tok[2] = { i, j };
  for (int t = 0; t < 2; t++) {
    double y = (double)(tok[t] / W) + 0.5, x = (double)(tok[t] % W) + 0.5, best = INFINITY;
    for (int64_t a = 0; a < gh; a++)
      for (int64_t c = 0; c < gw; c++) {
        double dy = y - (a * ws + offset), dx = x - (c * ws + offset), d = sqrt(dy * dy + dx * dx);
        if (d < best) {
          best = d;
          id[t] = a * gw + c;
        }
      }
  }
  return id[0] == id[1];
}

static double cdist_p(double dr, double dc, double p) {
  if (p == 0) return (dr != 0) + (dc != 0);
  if (isinf(p)) return fmax(dr, dc);
  return pow(pow(dr, p) + pow(dc, p), 1.0 / p);
}

static void expect_mask(const uint8_t *got, const uint8_t *want, int64_t S, const char *what) {
  for (int64_t i = 0; i < S; i++)
    for (int64_t j = 0; j < S; j++)
      ck_assert_msg(got[i * S + j] == want[i * S + j], "%s: mask[%lld, %lld] = %d, want %d", what, (long long)i,
                    (long long)j, got[i * S + j], want[i * S + j]);
}

// The layout the function returned equals pooling its own mask, and
// pooling through tj_pattern_to_layout.
static void expect_pooled(const uint8_t *mask, const uint8_t *layout, int heads, int64_t S, int64_t bs,
                          const char *what) {
  int64_t nb = S / bs;
  uint8_t *want = malloc((size_t)(heads * nb * nb)), *via = malloc((size_t)(heads * nb * nb));
  for (int h = 0; h < heads; h++)
    for (int64_t I = 0; I < nb; I++)
      for (int64_t J = 0; J < nb; J++) {
        int on = 0;
        for (int64_t i = I * bs; i < (I + 1) * bs; i++)
          for (int64_t j = J * bs; j < (J + 1) * bs; j++) on |= mask[(h * S + i) * S + j];
        want[(h * nb + I) * nb + J] = (uint8_t)on;
      }
  OK(tj_pattern_to_layout(blk, mask, heads, S, bs, via));
  for (int64_t x = 0; x < heads * nb * nb; x++) {
    ck_assert_msg(layout[x] == want[x], "%s: layout[%lld] = %d, want %d", what, (long long)x, layout[x], want[x]);
    ck_assert_int_eq(via[x], want[x]);
  }
  free(want);
  free(via);
}

START_TEST(patterns_hand_checked) {
  // local_1d, S 5, window 3: the tridiagonal band.
  uint8_t m[25], want[25] = {
    1, 1, 0, 0, 0,
    1, 1, 1, 0, 0,
    0, 1, 1, 1, 0,
    0, 0, 1, 1, 1,
    0, 0, 0, 1, 1,
  };
  OK(tj_pattern_local_1d(blk, 5, 3, 1, m, NULL));
  expect_mask(m, want, 5, "local_1d(5, 3)");
  // global tokens {1}: row 1 and column 1.
  int64_t g = 1;
  uint8_t wg[16] = { 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0 };
  OK(tj_pattern_global(blk, 4, &g, 1, 1, m, NULL));
  expect_mask(m, wg, 4, "global(4, {1})");
  // axial on a 2 x 2 grid: everything but the anti-diagonal pairs (0,3), (1,2).
  uint8_t wa[16] = { 1, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 1 };
  OK(tj_pattern_axial_2d(blk, 2, 2, -1, 1, m, NULL));
  expect_mask(m, wa, 4, "axial_2d(2, 2)");
  // axial dim 1 (same row) on 2 x 2: two 2 x 2 blocks.
  uint8_t wr[16] = { 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1 };
  OK(tj_pattern_axial_2d(blk, 2, 2, 1, 1, m, NULL));
  expect_mask(m, wr, 4, "axial_2d(2, 2, dim 1)");
  // swin 1 x 4 grid... H must be a multiple: 2 x 4, window 2, shift 1:
  // s = 1, column windows {0}, {1, 2}, {3}; rows {0}, {1}.
  uint8_t sw[64];
  OK(tj_pattern_swin(blk, 2, 4, 2, 1, 1, sw, NULL));
  ck_assert(sw[1 * 8 + 2] == 1 && sw[0 * 8 + 1] == 0 && sw[2 * 8 + 3] == 0 && sw[0 * 8 + 4] == 0);
  // dilated, 1 x 5 grid is not 2-D enough: 3 x 3 grid, k 2: corners and centre-free.
  uint8_t dm[81];
  OK(tj_pattern_dilated_2d(blk, 3, 3, 2, 1, dm, NULL));
  ck_assert(dm[0 * 9 + 2] && dm[0 * 9 + 8] && !dm[0 * 9 + 1] && !dm[0 * 9 + 4] && dm[4 * 9 + 4]);
  // causal pooled at bs 2 over S 4: [[1, 0], [1, 1]].
  uint8_t cl[4];
  OK(tj_pattern_causal_1d(blk, 4, 2, NULL, cl));
  ck_assert(cl[0] == 1 && cl[1] == 0 && cl[2] == 1 && cl[3] == 1);
  // random: density 0 and 1 are empty and full; the documented PRNG.
  uint8_t r[16];
  OK(tj_pattern_random(blk, 4, 1, 0.0, 5, 1, r, NULL));
  for (int i = 0; i < 16; i++) ck_assert_int_eq(r[i], 0);
  OK(tj_pattern_random(blk, 4, 1, 1.0, 5, 1, r, NULL));
  for (int i = 0; i < 16; i++) ck_assert_int_eq(r[i], 1);
}
END_TEST

static uint64_t sm64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ull;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

START_TEST(patterns_vs_definitions) {
  enum { GH = 8, GW = 8, S = GH * GW, BS = 8 };
  uint8_t *m = malloc(2 * S * S), *w = malloc(2 * S * S), lay[2 * (S / BS) * (S / BS)];
  int64_t glob[3] = { 0, 5, 63 };
  for (int pi = 0; pi < 12; pi++) {
    int heads = 1;
    const char *what = "?";
    switch (pi) {
    case 0: what = "local_1d"; OK(tj_pattern_local_1d(blk, S, 7, BS, m, lay)); break;
    case 1: what = "causal_1d"; OK(tj_pattern_causal_1d(blk, S, BS, m, lay)); break;
    case 2: what = "random"; heads = 2; OK(tj_pattern_random(blk, S, 2, 0.1, 77, BS, m, lay)); break;
    case 3: what = "global"; OK(tj_pattern_global(blk, S, glob, 3, BS, m, lay)); break;
    case 4: what = "bigbird"; heads = 2; OK(tj_pattern_bigbird(blk, S, 2, 5, glob, 3, 0.05, 3, BS, m, lay)); break;
    case 5: what = "longformer"; OK(tj_pattern_longformer(blk, S, 9, glob, 2, BS, m, lay)); break;
    case 6: what = "axial_2d"; OK(tj_pattern_axial_2d(blk, GH, GW, -1, BS, m, lay)); break;
    case 7: what = "local_2d p2"; OK(tj_pattern_local_2d(blk, GH, GW, 2.5, 2.0, BS, m, lay)); break;
    case 8: what = "local_2d p1"; OK(tj_pattern_local_2d(blk, GH, GW, 3.0, 1.0, BS, m, lay)); break;
    case 9: what = "swin shift 2"; OK(tj_pattern_swin(blk, GH, GW, 4, 2, BS, m, lay)); break;
    case 10: what = "swin shift 0"; OK(tj_pattern_swin(blk, GH, GW, 4, 0, BS, m, lay)); break;
    default: what = "dilated_2d"; OK(tj_pattern_dilated_2d(blk, GH, GW, 3, BS, m, lay)); break;
    }
    for (int h = 0; h < heads; h++)
      for (int64_t i = 0; i < S; i++)
        for (int64_t j = 0; j < S; j++) {
          int64_t ri = i / GW, ci = i % GW, rj = j / GW, cj = j % GW, v = 0;
          int gl = 0;
          for (int t = 0; t < 3; t++) gl |= glob[t] == i || glob[t] == j;
          uint64_t n = ((uint64_t)h * S + (uint64_t)i) * S + (uint64_t)j;
          double u = (double)(sm64(n * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull + 77) >> 11) * 0x1p-53;
          double u3 = (double)(sm64(3 + (n + 1) * 0x9E3779B97F4A7C15ull) >> 11) * 0x1p-53;
          switch (pi) {
          case 0: v = llabs(i - j) < 7 / 2 + 1; break;
          case 1: v = j <= i; break;
          case 2: v = u < 0.1; break;
          case 3: v = gl; break;
          case 4: v = llabs(i - j) <= 2 || gl || u3 < 0.05; break;
          case 5: {
            int g2 = glob[0] == i || glob[0] == j || glob[1] == i || glob[1] == j;
            v = llabs(i - j) <= 4 || g2;
            break;
          }
          case 6: v = cdist_p((double)llabs(ri - rj), (double)llabs(ci - cj), 0) < 2; break;
          case 7: v = cdist_p((double)llabs(ri - rj), (double)llabs(ci - cj), 2) < 2.5; break;
          case 8: v = cdist_p((double)llabs(ri - rj), (double)llabs(ci - cj), 1) < 3.0; break;
          case 9: v = def_swin(GH, GW, 4, 2, i, j); break;
          case 10: v = def_swin(GH, GW, 4, 0, i, j); break;
          default: v = llabs(ri - rj) % 3 == 0 && llabs(ci - cj) % 3 == 0; break;
          }
          w[(h * S + i) * S + j] = (uint8_t)v;
        }
    for (int h = 0; h < heads; h++) expect_mask(m + h * S * S, w + h * S * S, S, what);
    expect_pooled(m, lay, heads, S, BS, what);
    // The layout alone (no mask) is the same.
    uint8_t lay2[sizeof lay];
    switch (pi) {
    case 0: OK(tj_pattern_local_1d(blk, S, 7, BS, NULL, lay2)); break;
    case 9: OK(tj_pattern_swin(blk, GH, GW, 4, 2, BS, NULL, lay2)); break;
    case 4: OK(tj_pattern_bigbird(blk, S, 2, 5, glob, 3, 0.05, 3, BS, NULL, lay2)); break;
    default: memcpy(lay2, lay, sizeof lay); break;
    }
    ck_assert(memcmp(lay, lay2, (size_t)(heads * (S / BS) * (S / BS))) == 0);
  }
  // random: the density is about right and heads differ.
  uint8_t *r = malloc(2 * 128 * 128);
  OK(tj_pattern_random(blk, 128, 2, 0.3, 1, 1, r, NULL));
  int64_t on = 0, diff = 0;
  for (int i = 0; i < 128 * 128; i++) {
    on += r[i];
    diff += r[i] != r[128 * 128 + i];
  }
  ck_assert_msg(fabs((double)on / (128 * 128) - 0.3) < 0.02, "random density %g", (double)on / (128 * 128));
  ck_assert_int_gt(diff, 1000);
  free(r);
  free(m);
  free(w);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("attention");
  TCase *tc = tcase_create("attention");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, dense);
  tcase_add_test(tc, causal);
  tcase_add_test(tc, random_layout);
  tcase_add_test(tc, block_size_vs_tile);
  tcase_add_test(tc, range_variant);
  tcase_add_test(tc, empty_rows);
  tcase_add_test(tc, strides);
  tcase_add_test(tc, pattern_layouts);
  tcase_add_test(tc, registry_call);
  tcase_add_test(tc, bad_inputs);
  tcase_add_test(tc, patterns_hand_checked);
  tcase_add_test(tc, patterns_vs_definitions);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
