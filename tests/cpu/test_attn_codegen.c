/* test_attn_codegen.c: what codegen/mma.c does for chained dots (flash
 * attention), checked in the PTX, plus the test kernel itself in the
 * interpreter.
 *
 * Compiles tests/dsl/kernels/attn_chain.tj and blocks/attention.tj (forward,
 * dense / causal / sliding-window flavours) for sm_90 with the launch-time
 * specialisations and checks: between the first and the last mma.sync of
 * the dense loop there is no shared-memory store or load and no barrier (p
 * goes to the second dot from registers, the softmax rows reduce with two
 * shuffles per reduction and row, nothing changes layout); K is read by
 * ldmatrix without .trans and prefetched by cp.async with V; q's
 * fragments are read once; ptxas -v reports no spills and at most the
 * registers stated. Before this work the dense forward kernel had 23
 * barriers, 73 shared stores and 232 registers. Whether the numbers are
 * right is checked on a GPU against the interpreter (tests/gpu/
 * test_kernels.c, attn_chain_* cases); here the interpreter runs the test
 * kernel against a double reference so that a GPU mismatch points at codegen.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "testutil.h"

// ptxas -v on ptx: its status (-1 without ptxas), registers, spill bytes.
static int ptxas_regs(const char *ptx, const char *arch, int *regs, int *spill, char *log, size_t nlog) {
  int st = tj_test_ptxas(ptx, arch, log, nlog);
  tj_test_ptxas_usage(log, regs, spill);
  return st;
}

static int count_in(const char *s, const char *e, const char *needle) {
  int n = 0;
  size_t k = strlen(needle);
  for (const char *p = s; (p = strstr(p, needle)) && (!e || p < e); p += k) n++;
  return n;
}

static TirFunc *front(Arena *a, Diag *d, const char *file, const char *kernel, const char *const *defs,
                      int nw, char **src) {
  *src = tj_test_read_file(file, NULL);
  ck_assert_msg(*src != NULL, "cannot read %s", file);
  Define dv[16];
  int nd = 0;
  static char buf[16][64];
  for (; defs[nd] && nd < 16; nd++) {
    snprintf(buf[nd], sizeof buf[nd], "%s", defs[nd]);
    char *eq = strchr(buf[nd], '=');
    ck_assert(eq != NULL);
    *eq = 0;
    dv[nd].name = buf[nd];
    dv[nd].value = eq + 1;
  }
  Token *t = lex_tokenize(a, d, file, *src, strlen(*src));
  Module *mod = t ? parse_module(a, d, t) : NULL;
  SemaOptions so = {kernel, dv, nd, nw};
  TirFunc *f = mod ? sema_lower(a, d, mod, &so) : NULL;
  ck_assert_msg(f != NULL, "%s front end: %s", file, d->text.data ? d->text.data : "");
  return f;
}

// PTX of kernel for arch with 16-byte aligned pointers and ints divisible
// by 16 (what a launch with such arguments specialises to); malloc'd.
static char *ptx_for(const char *arch, const char *file, const char *kernel, const char *const *defs, int nw) {
  Arena a;
  arena_init(&a);
  Diag d;
  diag_init(&d);
  char *src;
  TirFunc *f = front(&a, &d, file, kernel, defs, nw, &src);
  for (int i = 0; i < f->nparams; i++) f->params[i].spec = f->params[i].ptr ? TIR_SPEC_ALIGN16 : TIR_SPEC_DIV16;
  CgOptions co;
  memset(&co, 0, sizeof co);
  co.arch = arch;
  co.num_warps = nw;
  CgResult r;
  tj_status st = cg_llvm_compile(f, &co, &r, &d);
  ck_assert_msg(st == TJ_OK, "%s %s: %s", file, kernel, d.text.data ? d.text.data : "");
  char *ptx = strdup(r.ptx);
  cg_result_free(&r);
  diag_free(&d);
  arena_free(&a);
  free(src);
  return ptx;
}

static char *ptx_of(const char *file, const char *kernel, const char *const *defs, int nw) {
  return ptx_for("sm_90", file, kernel, defs, nw);
}

typedef struct Want {
  int mma;       // mma.sync in the kernel
  int max_regs;  // ptxas -v on sm_90
} Want;

// The dense loop: from the first to the last mma.sync nothing goes through
// shared memory but the ldmatrix of K and V, and both are prefetched.
static void check_chain(const char *ptx, const char *what, Want w) {
  const char *first = strstr(ptx, "mma.sync"), *last = first;
  for (const char *p = first; p && (p = strstr(p + 1, "mma.sync"));) last = p;
  ck_assert_msg(first != NULL, "%s: no mma.sync", what);
  // The iteration starts at the commit of the prefetch (pipe.join): from
  // there on q is not staged again either (its fragments were hoisted).
  const char *join = NULL;
  for (const char *p = ptx; (p = strstr(p, "cp.async.commit_group")) && p < first; p++) join = p;
  ck_assert_msg(join != NULL, "%s: no commit before the dots", what);
  ck_assert_msg(count_in(join, last, "st.shared") == 0 && count_in(join, last, "bar.sync") == 0,
                "%s: q restaged in the loop", what);
  ck_assert_msg(count_in(ptx, NULL, "mma.sync.aligned.m16n8k16") == w.mma, "%s: %d mma, want %d", what,
                count_in(ptx, NULL, "mma.sync.aligned.m16n8k16"), w.mma);
  ck_assert_msg(count_in(first, last, "st.shared") == 0, "%s: shared stores between the dots", what);
  ck_assert_msg(count_in(first, last, "ld.shared") == 0, "%s: shared loads between the dots", what);
  ck_assert_msg(count_in(first, last, "bar.sync") == 0, "%s: barriers between the dots", what);
  // two reductions (max, sum) x two rows per thread x two butterflies
  ck_assert_msg(count_in(first, last, "shfl.sync.bfly") == 8, "%s: %d shuffles, want 8", what,
                count_in(first, last, "shfl.sync.bfly"));
  ck_assert_msg(strstr(ptx, "ldmatrix.sync.aligned.m8n8.x4.shared.b16") != NULL, "%s: K untransposed", what);
  ck_assert_msg(strstr(ptx, "cp.async.cg.shared.global") != NULL, "%s: cp.async", what);
  ck_assert_msg(strstr(ptx, ".local") == NULL, "%s: local memory", what);
  char log[8192];
  int regs, spill;
  int rc = ptxas_regs(ptx, "sm_90", &regs, &spill, log, sizeof log);
  if (rc >= 0) {
    ck_assert_msg(rc == 0, "%s: ptxas failed:\n%s", what, log);
    ck_assert_msg(spill == 0, "%s: spills:\n%s", what, log);
    ck_assert_msg(regs <= w.max_regs, "%s: %d registers, want <= %d", what, regs, w.max_regs);
  }
}

START_TEST(chain_kernel_ptx) {
  const char *d1[] = {"T=f16", "BM=128", "BN=64", "D=64", NULL};
  char *ptx = ptx_of("tests/dsl/kernels/attn_chain.tj", "attn_chain", d1, 8);
  check_chain(ptx, "attn_chain f16 128x64 nw8", (Want){64, 160});
  free(ptx);
  // k feeds both dots (once through trans): one stage buffer for both.
  const char *d2[] = {"T=bf16", "BM=64", "BN=64", "D=64", "MULTI=true", NULL};
  ptx = ptx_of("tests/dsl/kernels/attn_chain.tj", "attn_chain", d2, 4);
  check_chain(ptx, "attn_chain bf16 multi", (Want){64, 200});
  ck_assert_msg(strstr(ptx, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16") != NULL, "k as B: .trans");
  free(ptx);
}
END_TEST

START_TEST(attention_fwd_ptx) {
  // blocks/attention.tj as blocks/attention.c compiles it on a GPU (D 64,
  // 128 x 64 tiles, 8 warps), dense: one loop.
  const char *dense[] = {"T=f16", "D=64", "BM=128", "BN=64", "LBS=6", "CAUSAL=false", "SUB=false",
                         "RANGE=true", "UNIT_D=true", NULL};
  char *ptx = ptx_of("blocks/attention.tj", "attn_fwd", dense, 8);
  check_chain(ptx, "attn_fwd dense", (Want){64, 200});
  free(ptx);
  // causal and sliding window (SUB): the clean loop, then one loop over the
  // masked tiles of both segments, which adds only the mask. Both keep K
  // and V in cp.async stages; nothing spills.
  const char *flav[2][9] = {
      {"T=f16", "D=64", "BM=128", "BN=64", "LBS=6", "CAUSAL=true", "SUB=false", "RANGE=true", "UNIT_D=true"},
      {"T=bf16", "D=64", "BM=128", "BN=64", "LBS=5", "CAUSAL=false", "SUB=true", "RANGE=true", "UNIT_D=true"},
  };
  for (int i = 0; i < 2; i++) {
    const char *defs[10];
    for (int k = 0; k < 9; k++) defs[k] = flav[i][k];
    defs[9] = NULL;
    ptx = ptx_of("blocks/attention.tj", "attn_fwd", defs, 8);
    ck_assert_int_eq(count_in(ptx, NULL, "mma.sync.aligned.m16n8k16"), 2 * 64);
    ck_assert_int_eq(count_in(ptx, NULL, "cp.async.wait_group"), 2);
    ck_assert_int_eq(count_in(ptx, NULL, "ldmatrix.sync.aligned.m8n8.x4.trans"), 2 * 16);
    ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
    char log[8192];
    int regs, spill;
    int rc = ptxas_regs(ptx, "sm_90", &regs, &spill, log, sizeof log);
    if (rc >= 0) {
      ck_assert_msg(rc == 0 && spill == 0, "ptxas:\n%s", log);
      ck_assert_msg(regs <= 240, "%d registers", regs);
    }
    free(ptx);
  }
}
END_TEST

START_TEST(attention_fwd_wgmma_ptx) {
  // sm_90a: both dots of the loop run on wgmma with A from registers (q's
  // hoisted fragments, then p) and B through descriptors of the cp.async
  // stage buffers: K K-major (trans-b 0), V N-major (trans-b 1). 128 x 64
  // tiles, 8 warps: 2 warpgroups of one m64 tile each, 4 k steps per dot.
  const char *defs[] = {"T=f16", "D=64", "BM=128", "BN=64", "LBS=6", "CAUSAL=false", "SUB=false",
                        "RANGE=true", "UNIT_D=true", NULL};
  char *ptx = ptx_for("sm_90a", "blocks/attention.tj", "attn_fwd", defs, 8);
  ck_assert_int_eq(count_in(ptx, NULL, "mma.sync"), 0);
  ck_assert_int_eq(count_in(ptx, NULL, "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16"), 8);
  // s starts from zero: its first k step does not read D (scale-d z)
  ck_assert_int_eq(count_in(ptx, NULL, ", z, 1, 1, 0;"), 1);
  ck_assert_int_eq(count_in(ptx, NULL, ", p, 1, 1, 0;"), 3);
  ck_assert_int_eq(count_in(ptx, NULL, ", p, 1, 1, 1;"), 4);
  ck_assert_int_eq(count_in(ptx, NULL, "wgmma.wait_group.sync.aligned 0"), 2);
  // the stage buffers are written by cp.async (the generic proxy) and read
  // by wgmma (the async proxy): every barrier is fenced
  ck_assert_int_eq(count_in(ptx, NULL, "fence.proxy.async.shared::cta"), count_in(ptx, NULL, "bar.sync"));
  ck_assert_msg(strstr(ptx, ".shared .align 1024") != NULL, "tiles not on the swizzle repeat");
  // min_programs_per_sm at its default (1) states nothing to ptxas
  ck_assert_msg(strstr(ptx, ".minnctapersm") == NULL, ".minnctapersm without the tunable set");
  ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
  char log[8192];
  int regs, spill;
  int rc = ptxas_regs(ptx, "sm_90a", &regs, &spill, log, sizeof log);
  if (rc >= 0) ck_assert_msg(rc == 0 && spill == 0, "ptxas:\n%s", log);
  free(ptx);
  // Causal as attention.c compiles it on sm_90a: the clean loop and the
  // masked one, with ptxas told to keep two programs per SM, which it does
  // in 128 registers without spilling (65536 / (256 * 128)); the LUT form
  // (RANGE false) too.
  for (int range = 0; range < 2; range++) {
    const char *cd[] = {"T=f16", "D=64", "BM=128", "BN=64", "LBS=6", "CAUSAL=true", "SUB=false",
                        range ? "RANGE=true" : "RANGE=false", "UNIT_D=true", "min_programs_per_sm=2", NULL};
    ptx = ptx_for("sm_90a", "blocks/attention.tj", "attn_fwd", cd, 8);
    ck_assert_msg(strstr(ptx, ".minnctapersm 2") != NULL, "no .minnctapersm");
    ck_assert_int_eq(count_in(ptx, NULL, "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16"), 2 * 8);
    rc = ptxas_regs(ptx, "sm_90a", &regs, &spill, log, sizeof log);
    if (rc >= 0)
      ck_assert_msg(rc == 0 && spill == 0 && regs <= 128, "RANGE %d: %d registers\n%s", range, regs, log);
    free(ptx);
  }
  // 256 x 64 tiles (two m64 tiles per warpgroup), bf16, causal: the clean
  // loop and the masked one.
  const char *big[] = {"T=bf16", "D=64", "BM=256", "BN=64", "LBS=6", "CAUSAL=true", "SUB=false",
                       "RANGE=true", "UNIT_D=true", NULL};
  ptx = ptx_for("sm_90a", "blocks/attention.tj", "attn_fwd", big, 8);
  ck_assert_int_eq(count_in(ptx, NULL, "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), 2 * 16);
  ck_assert_int_eq(count_in(ptx, NULL, "mma.sync"), 0);
  rc = ptxas_regs(ptx, "sm_90a", &regs, &spill, log, sizeof log);
  if (rc >= 0) ck_assert_msg(rc == 0 && spill == 0, "ptxas:\n%s", log);
  free(ptx);
  // D = 128: K's 256-byte rows have no descriptor swizzle; mma.sync stays.
  const char *d128[] = {"T=f16", "D=128", "BM=128", "BN=64", "LBS=6", "CAUSAL=false", "SUB=false",
                        "RANGE=true", "UNIT_D=true", NULL};
  ptx = ptx_for("sm_90a", "blocks/attention.tj", "attn_fwd", d128, 8);
  ck_assert_int_eq(count_in(ptx, NULL, "wgmma"), 0);
  ck_assert_int_gt(count_in(ptx, NULL, "mma.sync.aligned.m16n8k16"), 0);
  ck_assert_int_eq(count_in(ptx, NULL, "fence.proxy"), 0);
  ck_assert_msg(strstr(ptx, ".align 1024") == NULL, "1024-byte tiles without wgmma");
  free(ptx);
}
END_TEST

START_TEST(chain_if_ptx) {
  // A runtime if between the dots: the if's result still feeds the row
  // reductions, so the warps split rows only (no more barriers than without
  // the if), and on sm_90a the loop stays on mma.sync (mma.c,
  // in_loop_with_if) while the plain chain takes wgmma.
  const char *plain[] = {"T=f16", "BM=128", "BN=64", "D=64", NULL};
  const char *causal[] = {"T=f16", "BM=128", "BN=64", "D=64", "CAUSAL=true", NULL};
  char *p0 = ptx_for("sm_90", "tests/dsl/kernels/attn_chain.tj", "attn_chain", plain, 8);
  char *p1 = ptx_for("sm_90", "tests/dsl/kernels/attn_chain.tj", "attn_chain", causal, 8);
  ck_assert_int_eq(count_in(p1, NULL, "bar.sync"), count_in(p0, NULL, "bar.sync"));
  ck_assert_int_eq(count_in(p1, NULL, "mma.sync.aligned.m16n8k16"), 64);
  free(p0);
  free(p1);
  p0 = ptx_for("sm_90a", "tests/dsl/kernels/attn_chain.tj", "attn_chain", plain, 8);
  p1 = ptx_for("sm_90a", "tests/dsl/kernels/attn_chain.tj", "attn_chain", causal, 8);
  ck_assert_int_eq(count_in(p0, NULL, "wgmma.mma_async"), 8);
  ck_assert_int_eq(count_in(p1, NULL, "wgmma.mma_async"), 0);
  ck_assert_int_eq(count_in(p1, NULL, "mma.sync.aligned.m16n8k16"), 64);
  // The guard says so, at each dot, in comments heading the PTX; the plain
  // chain (on wgmma) and sm_90 (no wgmma to lose) say nothing.
  const char *warn = "warning: this dot runs on mma.sync, not wgmma: its loop holds a runtime 'if'";
  ck_assert_int_eq(count_in(p1, NULL, warn), 2);
  ck_assert_msg(strncmp(p1, "// tests/dsl/kernels/attn_chain.tj:26:17: warning:", 50) == 0, "%.200s", p1);
  ck_assert_int_eq(count_in(p0, NULL, warn), 0);
  free(p0);
  free(p1);
  p1 = ptx_for("sm_90", "tests/dsl/kernels/attn_chain.tj", "attn_chain", causal, 8);
  ck_assert_int_eq(count_in(p1, NULL, warn), 0);
  free(p1);
}
END_TEST

START_TEST(chain_kernel_interp) {
  // The test kernel against a double reference: o = softmax(q k^T * scale,
  // base 2) v per row. p is rounded to f16 before p.v: 2e-3 relative to
  // o's scale.
  enum { N = 64, D = 16, BM = 16 };
  const char *defs[] = {"T=f16", "BM=16", "BN=16", "D=16", NULL};
  Arena a;
  arena_init(&a);
  Diag d;
  diag_init(&d);
  char *src;
  TirFunc *f = front(&a, &d, "tests/dsl/kernels/attn_chain.tj", "attn_chain", defs, 1, &src);
  static uint16_t q[N * D], k[N * D], v[N * D];
  static float o[N * D];
  double qf[N * D], kf[N * D], vf[N * D];
  unsigned seed = 7;
  for (int i = 0; i < N * D; i++) {
    seed = seed * 1103515245u + 12345u;
    q[i] = f32_to_f16((float)((seed >> 8) % 2001) / 1000.0f - 1.0f);
    seed = seed * 1103515245u + 12345u;
    k[i] = f32_to_f16((float)((seed >> 8) % 2001) / 1000.0f - 1.0f);
    seed = seed * 1103515245u + 12345u;
    v[i] = f32_to_f16((float)((seed >> 8) % 2001) / 1000.0f - 1.0f);
    qf[i] = f16_to_f32(q[i]), kf[i] = f16_to_f32(k[i]), vf[i] = f16_to_f32(v[i]);
  }
  double scale = 0.5;
  tj_arg args[6] = {tj_arg_ptr(o, sizeof o), tj_arg_ptr(q, sizeof q), tj_arg_ptr(k, sizeof k),
                    tj_arg_ptr(v, sizeof v), tj_arg_int(N), tj_arg_float(scale)};
  unsigned grid[3] = {N / BM, 1, 1};
  tj_status st = interp_run(f, grid, args, 6, &d);
  ck_assert_msg(st == TJ_OK, "interp: %s", d.text.data ? d.text.data : "");
  for (int r = 0; r < N; r++) {
    double s[N], mx = -INFINITY, l = 0;
    for (int j = 0; j < N; j++) {
      s[j] = 0;
      for (int c = 0; c < D; c++) s[j] += qf[r * D + c] * kf[j * D + c];
      s[j] *= scale;
      if (s[j] > mx) mx = s[j];
    }
    for (int j = 0; j < N; j++) l += s[j] = exp2(s[j] - mx);
    for (int c = 0; c < D; c++) {
      double ref = 0;
      for (int j = 0; j < N; j++) ref += s[j] * vf[j * D + c];
      ref /= l;
      ck_assert_msg(fabs(o[r * D + c] - ref) <= 2e-3, "o[%d][%d] = %g, want %g", r, c, o[r * D + c], ref);
    }
  }
  diag_free(&d);
  arena_free(&a);
  free(src);
}
END_TEST

int main(void) {
  Suite *s = suite_create("attn_codegen");
  TCase *tc = tcase_create("chain");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, chain_kernel_ptx);
  tcase_add_test(tc, chain_if_ptx);
  tcase_add_test(tc, attention_fwd_ptx);
  tcase_add_test(tc, attention_fwd_wgmma_ptx);
  tcase_add_test(tc, chain_kernel_interp);
  suite_add_tcase(s, tc);
  return tj_test_run(s);
}
