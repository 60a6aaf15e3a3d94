/* test_dot.c: dot on tensor cores (codegen/mma.c, codegen/pipeline.c).
 *
 * Compiles examples/matmul.tj for f16 and bf16 over several block shapes
 * and warp counts, with and without the launch-time specialisations that
 * make cp.async possible, and checks the PTX: mma.sync m16n8k16 fed by
 * ldmatrix (.trans for B), cp.async stages where the loads allow them,
 * nothing in local memory, the number of mma instructions per iteration,
 * and, when ptxas is there, that it assembles for sm_80 and sm_90 without
 * spilling (ptxas -v). f32 and shapes the tensor cores do not tile stay on
 * the FMA path. Numbers need a GPU: tests/gpu/test_kernels.c.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "testutil.h"

// Every "N bytes spill stores/loads" in a ptxas -v log has N == 0.
static bool no_spills(const char *log) {
  for (const char *p = strstr(log, "bytes spill"); p; p = strstr(p + 1, "bytes spill")) {
    const char *q = p;
    while (q > log && q[-1] == ' ') q--;
    while (q > log && q[-1] >= '0' && q[-1] <= '9') q--;
    if (atoi(q) != 0) return false;
  }
  return strstr(log, "bytes spill") != NULL;
}

typedef struct Mm {
  const char *T;
  int bm, bn, bk, nw;
  bool spec;       // launch-time facts: 16-byte aligned pointers, ints divisible by 16
  int num_stages;  // 0: the default
} Mm;

typedef struct Out {
  tj_status st;
  char *ptx;  // malloc'd
  int shared_bytes;
  char diag[2048];
} Out;

static Out compile_matmul(const Mm *m, const char *arch) {
  Out o;
  memset(&o, 0, sizeof o);
  char *src = tj_test_read_file("examples/matmul.tj", NULL);
  ck_assert_msg(src != NULL, "cannot read examples/matmul.tj");
  Arena a;
  arena_init(&a);
  Diag d;
  diag_init(&d);
  char v[3][32];
  snprintf(v[0], sizeof v[0], "%d", m->bm);
  snprintf(v[1], sizeof v[1], "%d", m->bn);
  snprintf(v[2], sizeof v[2], "%d", m->bk);
  Define defs[4] = {{"T", m->T}, {"BLOCK_M", v[0]}, {"BLOCK_N", v[1]}, {"BLOCK_K", v[2]}};
  Token *t = lex_tokenize(&a, &d, "examples/matmul.tj", src, strlen(src));
  Module *mod = t ? parse_module(&a, &d, t) : NULL;
  SemaOptions so = {NULL, defs, 4, m->nw};  // num_warps through the API: any power of two
  TirFunc *f = mod ? sema_lower(&a, &d, mod, &so) : NULL;
  ck_assert_msg(f != NULL, "matmul front end: %s", d.text.data ? d.text.data : "");
  if (m->spec)
    for (int i = 0; i < f->nparams; i++) f->params[i].spec = f->params[i].ptr ? TIR_SPEC_ALIGN16 : TIR_SPEC_DIV16;
  f->num_stages = m->num_stages;
  CgOptions co;
  memset(&co, 0, sizeof co);
  co.arch = arch;
  co.num_warps = m->nw;
  CgResult r;
  o.st = cg_llvm_compile(f, &co, &r, &d);
  snprintf(o.diag, sizeof o.diag, "%s", d.text.data ? d.text.data : "");
  if (o.st == TJ_OK) {
    const char *dump = getenv("TJ_CG_DUMP");  // debugging: write each PTX to this folder
    if (dump) {
      char path[512];
      snprintf(path, sizeof path, "%s/matmul_%s_%dx%dx%d_nw%d%s_s%d_%s.ptx", dump, m->T, m->bm, m->bn, m->bk, m->nw,
               m->spec ? "_spec" : "", m->num_stages, arch);
      FILE *fp = fopen(path, "w");
      if (fp) {
        fputs(r.ptx, fp);
        fclose(fp);
      }
    }
    o.ptx = strdup(r.ptx);
    o.shared_bytes = r.shared_bytes;
    cg_result_free(&r);
  }
  diag_free(&d);
  arena_free(&a);
  free(src);
  return o;
}

// The tensor-core matmul for m: every feature it must have, on both archs;
// ptxas -v without spills when check_spills.
static void check_mma(const Mm *m, bool want_cp_async, bool check_spills) {
  const char *archs[2] = {"sm_80", "sm_90"};
  for (int ai = 0; ai < 2; ai++) {
    Out o = compile_matmul(m, archs[ai]);
    const char *tag = m->T;
    ck_assert_msg(o.st == TJ_OK, "%s %dx%dx%d nw%d %s: %s", tag, m->bm, m->bn, m->bk, m->nw, archs[ai], o.diag);
    char want[96];
    snprintf(want, sizeof want, "mma.sync.aligned.m16n8k16.row.col.f32.%s.%s.f32", m->T, m->T);
    // mma per warp and loop iteration: (BM/16 x BN/8 tiles) x BK/16 steps / warps
    int per_iter = m->bm * m->bn * m->bk / (16 * 8 * 16) / m->nw;
    ck_assert_msg(tj_test_count(o.ptx, want) == per_iter, "%s: %d x %s, want %d", tag, tj_test_count(o.ptx, want), want,
                  per_iter);
    ck_assert_msg(strstr(o.ptx, "ldmatrix.sync.aligned.m8n8.x4.shared.b16") != NULL, "ldmatrix for A:\n%s", o.ptx);
    ck_assert_msg(strstr(o.ptx, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16") != NULL ||
                      strstr(o.ptx, "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16") != NULL,
                  "ldmatrix.trans for B");
    ck_assert_msg(strstr(o.ptx, "fma.rn.f32") == NULL, "no FMA dot left");
    ck_assert_msg(strstr(o.ptx, ".local") == NULL, "local memory in %s %dx%dx%d", tag, m->bm, m->bn, m->bk);
    if (want_cp_async) {
      ck_assert_msg(strstr(o.ptx, "cp.async.cg.shared.global") != NULL, "cp.async:\n%s", o.ptx);
      ck_assert_msg(strstr(o.ptx, "cp.async.commit_group") != NULL, "commit_group");
      ck_assert_msg(strstr(o.ptx, "cp.async.wait_group") != NULL, "wait_group");
    } else {
      ck_assert_msg(strstr(o.ptx, "cp.async") == NULL, "cp.async without proof of alignment");
    }
    char log[8192];
    int rc = tj_test_ptxas(o.ptx, archs[ai], log, sizeof log);
    if (rc >= 0) {
      ck_assert_msg(rc == 0, "ptxas %s failed:\n%s", archs[ai], log);
      if (check_spills) ck_assert_msg(no_spills(log), "ptxas %s reports spills:\n%s", archs[ai], log);
    }
    free(o.ptx);
  }
}

START_TEST(mma_pipelined_typical) {
  // The two configurations the autotuner favours, both dtypes.
  const char *ts[2] = {"f16", "bf16"};
  for (int i = 0; i < 2; i++) {
    Mm a = {ts[i], 64, 64, 32, 4, true, 0};
    check_mma(&a, true, true);
    Mm b = {ts[i], 128, 128, 32, 8, true, 0};
    check_mma(&b, true, true);
  }
}
END_TEST

START_TEST(mma_pipelined_shapes) {
  // Odd n8 tile counts per warp (x2.trans), rectangular tiles, BK 16 / 64,
  // few and many warps.
  static const Mm ms[] = {
      {"f16", 32, 32, 16, 4, true, 0},  {"bf16", 128, 64, 64, 4, true, 0},
      {"f16", 64, 128, 32, 4, true, 2}, {"bf16", 32, 64, 32, 1, true, 4},
      {"f16", 128, 32, 64, 8, true, 0}, {"bf16", 32, 32, 16, 2, true, 0},
  };
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) check_mma(&ms[i], true, false);
}
END_TEST

START_TEST(mma_unaligned_no_cp_async) {
  // Without the specialisations nothing proves 4-byte alignment of a row:
  // operands go through registers into the swizzled tiles, still on mma.
  Mm a = {"f16", 64, 64, 32, 4, false, 0};
  check_mma(&a, false, true);
  Mm b = {"bf16", 32, 32, 16, 4, false, 0};
  check_mma(&b, false, false);
  // num_stages = 1 turns pipelining off.
  Mm c = {"f16", 64, 64, 32, 4, true, 1};
  check_mma(&c, false, true);
}
END_TEST

START_TEST(mma_shared_memory) {
  // Stage buffers: 3 x (A 128x32 + B 32x128 halves) = 48 KiB; the [128,128]
  // f32 result is stored from its fragments, so there is no 64 KiB
  // conversion buffer: exactly the stages, still static shared memory.
  Mm a = {"f16", 128, 128, 32, 8, true, 0};
  Out o = compile_matmul(&a, "sm_90");
  ck_assert_msg(o.st == TJ_OK, "%s", o.diag);
  ck_assert_int_eq(o.shared_bytes, 3 * 16384);
  ck_assert_msg(strstr(o.ptx, ".extern .shared") == NULL, "static shared memory up to 48 KiB");
  free(o.ptx);
  // Four stages: 64 KiB, the dynamic (extern) buffer sized at launch.
  Mm b = {"f16", 128, 128, 32, 8, true, 4};
  o = compile_matmul(&b, "sm_90");
  ck_assert_msg(o.st == TJ_OK, "%s", o.diag);
  ck_assert_int_eq(o.shared_bytes, 4 * 16384);
  ck_assert_msg(strstr(o.ptx, ".extern .shared") != NULL, "dynamic shared memory above 48 KiB");
  char log[8192];
  int rc = tj_test_ptxas(o.ptx, "sm_90", log, sizeof log);
  ck_assert_msg(rc <= 0, "ptxas: %s", log);
  free(o.ptx);
  // Eight stages of 128x128x64 (8 x 32 KiB) do not fit sm_86's 99 KiB: the
  // stages shrink to what fits (three), down to two at most.
  Mm c = {"bf16", 128, 128, 64, 8, true, 8};
  o = compile_matmul(&c, "sm_86");
  ck_assert_msg(o.st == TJ_OK, "%s", o.diag);
  ck_assert_int_eq(o.shared_bytes, 3 * 32768);
  free(o.ptx);
}
END_TEST

START_TEST(fma_fallbacks) {
  // f32 stays on FMA.
  Mm a = {"f32", 64, 64, 32, 4, true, 0};
  Out o = compile_matmul(&a, "sm_90");
  ck_assert_msg(o.st == TJ_OK, "%s", o.diag);
  ck_assert_msg(strstr(o.ptx, "mma.sync") == NULL && strstr(o.ptx, "fma.rn.f32") != NULL, "f32 dot on FMA");
  ck_assert_msg(strstr(o.ptx, "cp.async") == NULL, "no cp.async for the FMA dot");
  free(o.ptx);
  // 32 warps cannot split a 32x32 tile into m16n8 pieces: FMA, correct.
  Mm b = {"f16", 32, 32, 16, 32, true, 0};
  o = compile_matmul(&b, "sm_80");
  ck_assert_msg(o.st == TJ_OK, "%s", o.diag);
  ck_assert_msg(strstr(o.ptx, "mma.sync") == NULL && strstr(o.ptx, "fma.rn.f32") != NULL, "FMA fallback");
  free(o.ptx);
}
END_TEST

int main(void) {
  Suite *s = suite_create("dot");
  TCase *tc = tcase_create("mma");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, mma_pipelined_typical);
  tcase_add_test(tc, mma_pipelined_shapes);
  tcase_add_test(tc, mma_unaligned_no_cp_async);
  tcase_add_test(tc, mma_shared_memory);
  tcase_add_test(tc, fma_fallbacks);
  suite_add_tcase(s, tc);
  return tj_test_run(s);
}
