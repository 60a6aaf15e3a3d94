/* test_codegen.c: the LLVM backend (codegen/llvm.c and friends).
 *
 * Builds tile IR by hand, compiles it for sm_80 and sm_90 and checks the PTX
 * for the features performance depends on (128-bit accesses, warp shuffles,
 * no local memory), and, when ptxas is available, that it assembles.
 * Numerical checks of the generated code need a GPU (tests/gpu).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "testutil.h"
#include "tir_testbuild.h"

// Assembles ptx for arch; true when it assembles or no ptxas is installed.
static bool ptxas_ok(const char *ptx, const char *arch, char *log, size_t nlog) {
  return tj_test_ptxas(ptx, arch, log, nlog) <= 0;
}

typedef struct Built {
  CgResult r;
  tj_status st;
  char diag[2048];
} Built;

static Built compile(TirFunc *f, const char *arch, int nw, bool line_info) {
  Built b;
  memset(&b, 0, sizeof b);
  Diag d;
  diag_init(&d);
  CgOptions o = {.arch = arch, .num_warps = nw, .line_info = line_info};
  b.st = cg_llvm_compile(f, &o, &b.r, &d);
  snprintf(b.diag, sizeof b.diag, "%s", d.text.data ? d.text.data : "");
  diag_free(&d);
  return b;
}

// Compiles for sm_80 and sm_90, asserts success and ptxas acceptance, and
// returns the sm_90 PTX (malloc'd).
static char *compile_both(TirFunc *f, int nw) {
  char *keep = NULL;
  const char *archs[2] = {"sm_80", "sm_90"};
  ck_assert_msg(tir_verify(f, &(Diag){0}) || 1, "verify");
  for (int i = 0; i < 2; i++) {
    Built b = compile(f, archs[i], nw, false);
    ck_assert_msg(b.st == TJ_OK, "%s: compile failed (%d): %s", archs[i], b.st, b.diag);
    ck_assert_ptr_nonnull(b.r.ptx);
    ck_assert_msg(strstr(b.r.ptx, ".entry") != NULL, "no .entry");
    char log[4096];
    ck_assert_msg(ptxas_ok(b.r.ptx, archs[i], log, sizeof log), "ptxas %s failed:\n%.1500s\n%.2000s", archs[i], log,
                  b.r.ptx);
    const char *dump = getenv("TJ_CG_DUMP");  // debugging: write each PTX to this folder
    if (dump) {
      char path[512];
      snprintf(path, sizeof path, "%s/%s_nw%d_%s.ptx", dump, f->name, nw, archs[i]);
      FILE *fp = fopen(path, "w");
      if (fp) {
        fputs(b.r.ptx, fp);
        fclose(fp);
      }
    }
    if (i == 1) keep = strdup(b.r.ptx);
    cg_result_free(&b.r);
  }
  return keep;
}


// ---------------------------------------------------------------- kernels

// out[i] = x[i] + y[i], i < n, BLOCK elements per program.
static TirFunc *build_vecadd(TB *t, int block, Dtype dt, unsigned spec_ptr, unsigned spec_n) {
  tb_init(t, "vecadd");
  TirValue *x = tb_param(t, "x", true, dt), *y = tb_param(t, "y", true, dt);
  TirValue *o = tb_param(t, "out", true, dt), *n = tb_param(t, "n", false, DT_I32);
  for (int i = 0; i < 3; i++) t->f->params[i].spec = spec_ptr;
  t->f->params[3].spec = spec_n;
  TirType T = ty(DT_I32, 1, block);
  TirValue *pid = tb_pid(t, 0);
  TirValue *base = tb_bin(t, TIR_MUL, pid, tb_ci(t, tir_scalar(DT_I32), block));
  TirValue *offs = tb_bin(t, TIR_ADD, tb_splat(t, base, T), tb_arange(t, 0, block));
  TirValue *mask = tb_cmp(t, CMP_LT, offs, tb_splat(t, n, T));
  TirValue *a = tb_load(t, tb_ptr_add(t, x, offs), mask, NULL);
  TirValue *b = tb_load(t, tb_ptr_add(t, y, offs), mask, NULL);
  tb_store(t, tb_ptr_add(t, o, offs), tb_bin(t, TIR_ADD, a, b), mask);
  return t->f;
}

// One row per program: y = softmax(x) with f32 math on dt storage.
static TirFunc *build_softmax(TB *t, int block, Dtype dt) {
  tb_init(t, "softmax");
  TirValue *y = tb_param(t, "y", true, dt), *x = tb_param(t, "x", true, dt);
  TirValue *stride = tb_param(t, "stride", false, DT_I32), *n = tb_param(t, "n", false, DT_I32);
  t->f->params[0].spec = t->f->params[1].spec = TIR_SPEC_ALIGN16;
  t->f->params[2].spec = t->f->params[3].spec = TIR_SPEC_DIV16;
  TirType T = ty(DT_I32, 1, block);
  TirValue *row = tb_pid(t, 0);
  TirValue *cols = tb_arange(t, 0, block);
  TirValue *mask = tb_cmp(t, CMP_LT, cols, tb_splat(t, n, T));
  TirValue *roff = tb_splat(t, tb_bin(t, TIR_MUL, row, stride), T);
  TirValue *offs = tb_bin(t, TIR_ADD, roff, cols);
  TirValue *ninf = tb_cf(t, ty(dt, 1, block), -INFINITY);
  TirValue *v = tb_cast(t, tb_load(t, tb_ptr_add(t, x, offs), mask, ninf), DT_F32);
  TirValue *m = tb_reduce(t, RED_MAX, v, 0, DT_F32);
  TirValue *e = tb_op(t, TIR_EXP, v->type, 1, tb_bin(t, TIR_SUB, v, tb_splat(t, m, v->type)));
  TirValue *s = tb_reduce(t, RED_SUM, e, 0, DT_F32);
  TirValue *r = tb_cast(t, tb_bin(t, TIR_DIV, e, tb_splat(t, s, e->type)), dt);
  tb_store(t, tb_ptr_add(t, y, offs), r, mask);
  return t->f;
}

START_TEST(vecadd_f32) {
  TB t;
  char *ptx = compile_both(build_vecadd(&t, 1024, DT_F32, TIR_SPEC_ALIGN16, TIR_SPEC_DIV16), 4);
  ck_assert_msg(strstr(ptx, ".entry vecadd") != NULL, "entry name");
  ck_assert_msg(strstr(ptx, ".maxntid 128") != NULL, "maxntid:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "ld.global.v4.b32") != NULL, "128-bit loads:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "st.global.v4.b32") != NULL, "128-bit stores:\n%s", ptx);
  ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
  free(ptx);
  tb_free(&t);
}
END_TEST

// Without the specialisations nothing proves alignment: scalar accesses.
START_TEST(vecadd_unaligned_scalar) {
  TB t;
  char *ptx = compile_both(build_vecadd(&t, 256, DT_F32, 0, 0), 4);
  ck_assert_msg(strstr(ptx, ".v4") == NULL && strstr(ptx, ".v2") == NULL, "vector access without proof:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "ld.global.b32") != NULL, "predicated scalar loads:\n%s", ptx);
  free(ptx);
  tb_free(&t);
}
END_TEST

START_TEST(softmax_f16_4096) {
  int nws[2] = {8, 16};
  for (int k = 0; k < 2; k++) {
    TB t;
    char *ptx = compile_both(build_softmax(&t, 4096, DT_F16), nws[k]);
    ck_assert_msg(strstr(ptx, "ld.global.v4.b32") != NULL, "128-bit loads:\n%s", ptx);
    ck_assert_msg(strstr(ptx, "st.global.v4.b32") != NULL, "128-bit stores:\n%s", ptx);
    ck_assert_msg(strstr(ptx, "shfl.sync.bfly") != NULL, "warp shuffles:\n%s", ptx);
    ck_assert_msg(strstr(ptx, "ex2.approx") != NULL, "ex2:\n%s", ptx);
    ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory in softmax nw=%d:\n%s", nws[k], ptx);
    ck_assert_msg(strstr(ptx, "bar.sync") != NULL || strstr(ptx, "barrier.sync") != NULL, "cross-warp barrier");
    // 4096 / (32 * nw * 8) vectors in, the same out
    int nvec = 4096 / (32 * nws[k] * 8);
    ck_assert_int_eq(tj_test_count(ptx, "ld.global.v4.b32"), nvec);
    ck_assert_int_eq(tj_test_count(ptx, "st.global.v4.b32"), nvec);
    free(ptx);
    tb_free(&t);
  }
}
END_TEST

START_TEST(softmax_f32_small) {
  TB t;  // 128 elements over 256 threads: replicas must not store
  char *ptx = compile_both(build_softmax(&t, 128, DT_F32), 8);
  ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
  free(ptx);
  tb_free(&t);
}
END_TEST

// y[r] = sum(x[r, :]), idx[c] = argmax(x[:, c]) over a [32, 64] f32 tile.
START_TEST(reduce_2d) {
  TB t;
  tb_init(&t, "red2d");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *ix = tb_param(&t, "ix", true, DT_I32);
  for (int i = 0; i < 3; i++) t.f->params[i].spec = TIR_SPEC_ALIGN16;
  TirType T2 = ty(DT_I32, 2, 32, 64);
  TirValue *r = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 32), 1), T2);
  TirValue *c = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 64), 0), T2);
  TirValue *off = tb_bin(&t, TIR_ADD, tb_bin(&t, TIR_MUL, r, tb_ci(&t, T2, 64)), c);
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, off), NULL, NULL);
  TirValue *s = tb_reduce(&t, RED_SUM, v, 1, DT_F32);
  TirValue *am = tb_reduce(&t, RED_ARGMAX, v, 0, DT_I32);
  tb_store(&t, tb_ptr_add(&t, y, tb_arange(&t, 0, 32)), s, NULL);
  tb_store(&t, tb_ptr_add(&t, ix, tb_arange(&t, 0, 64)), am, NULL);
  char *ptx = compile_both(t.f, 4);
  ck_assert_msg(strstr(ptx, "ld.global.v4") != NULL, "vector loads:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "shfl.sync.bfly") != NULL, "shuffles");
  free(ptx);
  tb_free(&t);
}
END_TEST

// acc = 0; for i in range(0, n): acc += x[i * 256 + arange]; y = acc
START_TEST(loop_carried) {
  TB t;
  tb_init(&t, "loopsum");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *n = tb_param(&t, "n", false, DT_I32);
  t.f->params[0].spec = t.f->params[1].spec = TIR_SPEC_ALIGN16;
  TirType T = ty(DT_F32, 1, 256);
  TirValue *acc0 = tb_cf(&t, T, 0.0);
  TirValue *cnt0 = tb_ci(&t, tir_scalar(DT_I32), 0);
  TirValue *inits[2] = {acc0, cnt0};
  TirInst *loop = tb_for(&t, tb_ci(&t, tir_scalar(DT_I32), 0), n, tb_ci(&t, tir_scalar(DT_I32), 1), 2, inits);
  TirBlock *body = loop->blocks[0];
  TirValue *i = body->args[0];
  TirValue *base = tb_bin(&t, TIR_MUL, i, tb_ci(&t, tir_scalar(DT_I32), 256));
  TirValue *offs = tb_bin(&t, TIR_ADD, tb_splat(&t, base, ty(DT_I32, 1, 256)), tb_arange(&t, 0, 256));
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, offs), NULL, NULL);
  TirValue *nx[2] = {tb_bin(&t, TIR_ADD, body->args[1], v),
                     tb_bin(&t, TIR_ADD, body->args[2], tb_ci(&t, tir_scalar(DT_I32), 1))};
  tb_yield(&t, 2, nx);
  tb_end(&t, loop);
  TirValue *out = tb_bin(&t, TIR_MUL, loop->res[0],
                         tb_splat(&t, tb_cast(&t, loop->res[1], DT_F32), T));
  tb_store(&t, tb_ptr_add(&t, y, tb_arange(&t, 0, 256)), out, NULL);
  char *ptx = compile_both(t.f, 2);
  ck_assert_msg(strstr(ptx, "ld.global.v4") != NULL, "vector loads in the loop:\n%s", ptx);
  ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
  free(ptx);
  tb_free(&t);
}
END_TEST


// A carried [32] value takes the slice layout of the row sums it adds up
// (the layout pass's second look at the loop) and is also stored inside the
// loop and after it in the canonical layout (layout changes on block args).
START_TEST(loop_carried_slice) {
  TB t;
  tb_init(&t, "rowsums");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *n = tb_param(&t, "n", false, DT_I32);
  t.f->params[0].spec = t.f->params[1].spec = TIR_SPEC_ALIGN16;
  TirType T2 = ty(DT_I32, 2, 32, 64);
  TirValue *zero = tb_cf(&t, ty(DT_F32, 1, 32), 0.0);
  TirInst *loop = tb_for(&t, tb_ci(&t, tir_scalar(DT_I32), 0), n, tb_ci(&t, tir_scalar(DT_I32), 1), 1, &zero);
  TirBlock *body = loop->blocks[0];
  TirValue *r = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 32), 1), T2);
  TirValue *c = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 64), 0), T2);
  TirValue *off = tb_bin(&t, TIR_ADD, tb_bin(&t, TIR_MUL, r, tb_ci(&t, T2, 64)), c);
  off = tb_bin(&t, TIR_ADD, off, tb_splat(&t, tb_bin(&t, TIR_MUL, body->args[0], tb_ci(&t, tir_scalar(DT_I32), 2048)), T2));
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, off), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, y, tb_arange(&t, 32, 64)), body->args[1], NULL);
  TirValue *nx = tb_bin(&t, TIR_ADD, body->args[1], tb_reduce(&t, RED_SUM, v, 1, DT_F32));
  tb_yield(&t, 1, &nx);
  tb_end(&t, loop);
  tb_store(&t, tb_ptr_add(&t, y, tb_arange(&t, 0, 32)), loop->res[0], NULL);
  char *ptx = compile_both(t.f, 4);
  ck_assert_msg(strstr(ptx, ".local") == NULL, "local memory");
  free(ptx);
  tb_free(&t);
}
END_TEST

// if pid < 2 { v = x * 2 } else { v = x - 1 }; masked store of bool flags too.
START_TEST(if_and_masked_store) {
  TB t;
  tb_init(&t, "branchy");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *flags = tb_param(&t, "flags", true, DT_BOOL), *n = tb_param(&t, "n", false, DT_I32);
  TirType T = ty(DT_I32, 1, 128), TF = ty(DT_F32, 1, 128);
  TirValue *offs = tb_arange(&t, 0, 128);
  TirValue *mask = tb_cmp(&t, CMP_LT, offs, tb_splat(&t, n, T));
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, offs), mask, NULL);
  TirValue *cond = tb_cmp(&t, CMP_LT, tb_pid(&t, 0), tb_ci(&t, tir_scalar(DT_I32), 2));
  TirInst *br = tb_if(&t, cond, 1, &TF);
  TirValue *a = tb_bin(&t, TIR_MUL, v, tb_cf(&t, TF, 2.0));
  tb_yield(&t, 1, &a);
  tb_else(&t, br);
  TirValue *b = tb_bin(&t, TIR_SUB, v, tb_cf(&t, TF, 1.0));
  tb_yield(&t, 1, &b);
  tb_end(&t, br);
  tb_store(&t, tb_ptr_add(&t, y, offs), br->res[0], mask);
  TirValue *pos = tb_cmp(&t, CMP_GT, br->res[0], tb_cf(&t, TF, 0.0));
  tb_store(&t, tb_ptr_add(&t, flags, offs), pos, mask);
  char *ptx = compile_both(t.f, 4);
  ck_assert_msg(strstr(ptx, "st.global.b32") != NULL || strstr(ptx, "st.global.f32") != NULL, "stores:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "st.global.u8") != NULL || strstr(ptx, "st.global.b8") != NULL, "bool stores:\n%s", ptx);
  free(ptx);
  tb_free(&t);
}
END_TEST

// c = dot(a[32,16], b[16,32]) in f16, stored as f32.
START_TEST(dot_fma) {
  Dtype dts[2] = {DT_F16, DT_F32};
  for (int k = 0; k < 2; k++) {
    TB t;
    tb_init(&t, "dot");
    TirValue *a = tb_param(&t, "a", true, dts[k]), *b = tb_param(&t, "b", true, dts[k]);
    TirValue *c = tb_param(&t, "c", true, DT_F32);
    TirType TA = ty(DT_I32, 2, 32, 16), TB2 = ty(DT_I32, 2, 16, 32), TC = ty(DT_I32, 2, 32, 32);
    TirValue *ra = tb_bcast(&t, tb_expand(&t, tb_bin(&t, TIR_MUL, tb_arange(&t, 0, 32), tb_ci(&t, ty(DT_I32, 1, 32), 16)), 1), TA);
    TirValue *ca = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 16), 0), TA);
    TirValue *av = tb_load(&t, tb_ptr_add(&t, a, tb_bin(&t, TIR_ADD, ra, ca)), NULL, NULL);
    TirValue *rb = tb_bcast(&t, tb_expand(&t, tb_bin(&t, TIR_MUL, tb_arange(&t, 0, 16), tb_ci(&t, ty(DT_I32, 1, 16), 32)), 1), TB2);
    TirValue *cb = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 32), 0), TB2);
    TirValue *bv = tb_load(&t, tb_ptr_add(&t, b, tb_bin(&t, TIR_ADD, rb, cb)), NULL, NULL);
    TirValue *acc = tb_cf(&t, ty(DT_F32, 2, 32, 32), 0.0);
    TirValue *d = tb_op(&t, TIR_DOT, ty(DT_F32, 2, 32, 32), 3, av, bv, acc);
    TirValue *rc = tb_bcast(&t, tb_expand(&t, tb_bin(&t, TIR_MUL, tb_arange(&t, 0, 32), tb_ci(&t, ty(DT_I32, 1, 32), 32)), 1), TC);
    TirValue *cc = tb_bcast(&t, tb_expand(&t, tb_arange(&t, 0, 32), 0), TC);
    tb_store(&t, tb_ptr_add(&t, c, tb_bin(&t, TIR_ADD, rc, cc)), d, NULL);
    char *ptx = compile_both(t.f, 4);
    // f16 may take the tensor-core path (mma.c), f32 always the FMA one.
    ck_assert_msg(strstr(ptx, "fma.rn.f32") != NULL || (dts[k] == DT_F16 && strstr(ptx, "mma.sync") != NULL),
                  "fma or mma:\n%.2000s", ptx);
    ck_assert_msg(strstr(ptx, ".shared") != NULL, "operands through shared memory");
    free(ptx);
    tb_free(&t);
  }
}
END_TEST

// Unary math, integer corner cases and philox all assemble.
START_TEST(math_int_philox) {
  TB t;
  tb_init(&t, "mathk");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *q = tb_param(&t, "q", true, DT_I32), *h = tb_param(&t, "h", true, DT_BF16);
  TirValue *seed = tb_param(&t, "seed", false, DT_I64);
  TirType T = ty(DT_F32, 1, 256), TI = ty(DT_I32, 1, 256);
  TirValue *offs = tb_arange(&t, 0, 256);
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, offs), NULL, NULL);
  TirOp ops[] = {TIR_ERF, TIR_TANH, TIR_LOG, TIR_LOG2, TIR_SQRT, TIR_RSQRT, TIR_EXP2, TIR_FLOOR, TIR_CEIL, TIR_ABS};
  TirValue *acc = v;
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    acc = tb_bin(&t, TIR_ADD, acc, tb_op(&t, ops[i], T, 1, v));
  tb_store(&t, tb_ptr_add(&t, y, offs), acc, NULL);
  TirValue *hv = tb_load(&t, tb_ptr_add(&t, h, offs), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, h, offs), tb_op(&t, TIR_TANH, hv->type, 1, hv), NULL);
  TirValue *qi = tb_load(&t, tb_ptr_add(&t, q, offs), NULL, NULL);
  TirValue *dv = tb_bin(&t, TIR_DIV, qi, tb_bin(&t, TIR_SUB, offs, tb_ci(&t, TI, 3)));
  TirValue *rm = tb_bin(&t, TIR_REM, dv, qi);
  TirValue *sh = tb_bin(&t, TIR_SHL, rm, offs);
  TirValue *sr = tb_bin(&t, TIR_SHR, sh, qi);
  TirValue *fi = tb_cast(&t, v, DT_I32);
  TirValue *pr = tb_op(&t, TIR_PHILOX, ty(DT_U32, 1, 256), 3, tb_splat(&t, seed, ty(DT_I64, 1, 256)),
                       tb_cast(&t, offs, DT_I64), tb_ci(&t, TI, 1));
  TirValue *mix = tb_bin(&t, TIR_XOR, tb_bin(&t, TIR_ADD, sr, fi), tb_op(&t, TIR_BITCAST, TI, 1, pr));
  tb_store(&t, tb_ptr_add(&t, q, offs), mix, NULL);
  char *ptx = compile_both(t.f, 4);
  ck_assert_msg(strstr(ptx, "lg2.approx") != NULL, "lg2");
  ck_assert_msg(strstr(ptx, "sqrt.rn.f32") != NULL, "sqrt.rn");
  ck_assert_msg(strstr(ptx, "mul.hi.u32") != NULL || strstr(ptx, "mul.wide.u32") != NULL, "philox mulhi:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "cvt.rzi.sat.s32.f32") != NULL || strstr(ptx, "cvt.rzi.s32.f32") != NULL, "saturating cast");
  free(ptx);
  tb_free(&t);
}
END_TEST

START_TEST(line_info_and_annotate) {
  TB t;
  TirFunc *f = build_vecadd(&t, 512, DT_F16, TIR_SPEC_ALIGN16, TIR_SPEC_DIV16);
  // give the insts distinct lines
  int line = 3;
  for (TirInst *in = f->body->first; in; in = in->next) in->loc.line = line++ / 2;
  Built b = compile(f, "sm_90", 4, true);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_msg(strstr(b.r.ptx, ".loc") != NULL, ".loc lines:\n%s", b.r.ptx);
  ck_assert_msg(strstr(b.r.ptx, ".file") != NULL, ".file");
  char log[4096];
  ck_assert_msg(ptxas_ok(b.r.ptx, "sm_90", log, sizeof log), "ptxas: %s", log);
  StrBuf src;
  sb_init(&src);
  for (int i = 1; i < 40; i++) sb_printf(&src, "source line %d\n", i);
  char *ann = cg_ptx_annotate(b.r.ptx, src.data);
  ck_assert_ptr_nonnull(ann);
  ck_assert_msg(strstr(ann, "// test.tj:") != NULL, "annotation:\n%s", ann);
  ck_assert_msg(strstr(ann, ": source line ") != NULL, "source text:\n%s", ann);
  ck_assert_msg(ptxas_ok(ann, "sm_90", log, sizeof log), "annotated ptx assembles: %s", log);
  free(ann);
  sb_free(&src);
  cg_result_free(&b.r);
  tb_free(&t);
}
END_TEST


typedef struct Job {
  TirFunc *f;
  char *ptx;
  tj_status st;
} Job;

static void *compile_job(void *arg) {
  Job *j = arg;
  for (int i = 0; i < 3; i++) {
    Built b = compile(j->f, "sm_90", 8, true);
    j->st = b.st;
    if (b.st != TJ_OK) break;
    free(j->ptx);
    j->ptx = strdup(b.r.ptx);
    cg_result_free(&b.r);
  }
  return NULL;
}

// The autotuner compiles variants on several threads at once: each
// compilation owns its LLVM context, so they must neither crash nor differ.
START_TEST(concurrent_compiles) {
  TB t;
  TirFunc *f = build_softmax(&t, 2048, DT_BF16);
  Job jobs[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    jobs[i] = (Job){f, NULL, TJ_OK};
    ck_assert_int_eq(pthread_create(&th[i], NULL, compile_job, &jobs[i]), 0);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(jobs[i].st, TJ_OK);
    ck_assert_ptr_nonnull(jobs[i].ptx);
    ck_assert_str_eq(jobs[i].ptx, jobs[0].ptx);
  }
  for (int i = 0; i < 4; i++) free(jobs[i].ptx);
  tb_free(&t);
}
END_TEST

START_TEST(unsupported_is_reported) {
  TB t;
  tb_init(&t, "rank3");
  TirValue *x = tb_param(&t, "x", true, DT_F32);
  TirValue *z = tb_cf(&t, ty(DT_F32, 3, 2, 2, 2), 0.0);
  TirValue *s = tb_reduce(&t, RED_SUM, z, 0, DT_F32);
  (void)s;
  (void)x;
  Built b = compile(t.f, "sm_90", 4, false);
  ck_assert_int_eq(b.st, TJ_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(b.diag, "rank 3") != NULL, "%s", b.diag);
  ck_assert_ptr_null(b.r.ptx);
  Built c = compile(t.f, "sm_70", 4, false);
  ck_assert_int_eq(c.st, TJ_ERR_UNSUPPORTED);
  tb_free(&t);
}
END_TEST


// Lowers one .tj file with the defines of its `// usage:` line. Pointer and
// int params get the runtime's specialisations when spec is set.
static TirFunc *frontend(Arena *a, const char *src, const char *file, unsigned spec, char *err, size_t nerr) {
  Define defs[16];
  int nd = 0;
  const char *u = strstr(src, "// usage:");
  const char *eol = u ? strchr(u, '\n') : NULL;
  for (const char *p = u; p && p < eol && nd < 16; p++) {
    if (strncmp(p, "-D ", 3) != 0) continue;
    p += 3;
    const char *eq = strchr(p, '='), *end = p;
    while (end < eol && *end != ' ') end++;
    if (!eq || eq > end) continue;
    defs[nd].name = arena_strndup(a, p, (size_t)(eq - p));
    defs[nd].value = arena_strndup(a, eq + 1, (size_t)(end - eq - 1));
    nd++;
  }
  Diag d;
  diag_init(&d);
  Token *toks = lex_tokenize(a, &d, file, src, strlen(src));
  Module *m = toks ? parse_module(a, &d, toks) : NULL;
  SemaOptions so = {NULL, defs, nd, 0};
  TirFunc *f = m && !d.nerrors ? sema_lower(a, &d, m, &so) : NULL;
  snprintf(err, nerr, "%s", d.text.data ? d.text.data : "");
  diag_free(&d);
  if (!f) return NULL;
  for (int i = 0; i < f->nparams; i++) {
    TirParam *p = &f->params[i];
    p->spec = !spec ? 0 : p->ptr ? TIR_SPEC_ALIGN16 : dtype_is_int(p->dtype) ? TIR_SPEC_DIV16 : 0;
  }
  return f;
}

// Every .tj file of a folder compiles for sm_80 and sm_90 and assembles, with
// and without the runtime's alignment specialisations. Returns the count.
static int compile_dir(const char *reldir) {
  char *dir = tj_test_path(reldir);
  DIR *dp = opendir(dir);
  ck_assert_msg(dp != NULL, "cannot open %s", dir);
  struct dirent *de;
  int n = 0;
  while ((de = readdir(dp))) {
    size_t len = strlen(de->d_name);
    if (len < 4 || strcmp(de->d_name + len - 3, ".tj") != 0) continue;
    char rel[512];
    snprintf(rel, sizeof rel, "%s/%s", reldir, de->d_name);
    char *src = tj_test_read_file(rel, NULL);
    ck_assert_ptr_nonnull(src);
    for (unsigned spec = 0; spec < 2; spec++) {
      Arena a;
      arena_init(&a);
      char err[2048];
      TirFunc *f = frontend(&a, src, rel, spec, err, sizeof err);
      ck_assert_msg(f != NULL, "%s: front end failed: %s", rel, err);
      const char *archs[2] = {"sm_80", "sm_90"};
      for (int k = 0; k < 2; k++) {
        Built b = compile(f, archs[k], 0, true);
        ck_assert_msg(b.st == TJ_OK, "%s %s: %s", rel, archs[k], b.diag);
        char log[4096];
        ck_assert_msg(ptxas_ok(b.r.ptx, archs[k], log, sizeof log), "%s %s ptxas:\n%s", rel, archs[k], log);
        ck_assert_msg(strstr(b.r.ptx, ".local") == NULL, "%s: local memory", rel);
        const char *dump = getenv("TJ_CG_DUMP");
        if (dump) {
          char path[768];
          snprintf(path, sizeof path, "%s/ex_%s_spec%u_%s.ptx", dump, de->d_name, spec, archs[k]);
          FILE *fp = fopen(path, "w");
          if (fp) {
            fputs(b.r.ptx, fp);
            fclose(fp);
          }
        }
        cg_result_free(&b.r);
      }
      arena_free(&a);
    }
    free(src);
    n++;
  }
  closedir(dp);
  free(dir);
  return n;
}

START_TEST(examples_compile) { ck_assert_int_gt(compile_dir("examples"), 0); }
END_TEST

// The GPU-vs-interpreter test kernels too, so CI checks they assemble.
START_TEST(test_kernels_compile) { ck_assert_int_gt(compile_dir("tests/dsl/kernels"), 0); }
END_TEST

// ---------------------------------------------------------------- regressions

// Front end + backend for one DSL source (defines from its `// usage:`
// line, runtime specialisations on). The PTX of a successful compile is
// checked with ptxas.
static Built compile_src(const char *src, const char *arch, int nw) {
  Arena a;
  arena_init(&a);
  char err[2048];
  TirFunc *f = frontend(&a, src, "regress.tj", 1, err, sizeof err);
  ck_assert_msg(f != NULL, "front end failed: %s", err);
  Built b = compile(f, arch, nw, false);
  if (b.st == TJ_OK) {
    char log[4096];
    ck_assert_msg(ptxas_ok(b.r.ptx, arch, log, sizeof log), "ptxas %s failed:\n%s", arch, log);
    ck_assert_msg(strstr(b.r.ptx, ".local") == NULL, "local memory (spills):\n%s", b.r.ptx);
  }
  arena_free(&a);
  return b;
}

// A for that carries nothing may leave out its yield (tir.h): codegen takes
// it as an empty one. for i in range(0, n): y[i * 128 + arange] = x[...] * 2
START_TEST(for_without_yield) {
  TB t;
  tb_init(&t, "noyield");
  TirValue *x = tb_param(&t, "x", true, DT_F32), *y = tb_param(&t, "y", true, DT_F32);
  TirValue *n = tb_param(&t, "n", false, DT_I32);
  t.f->params[0].spec = t.f->params[1].spec = TIR_SPEC_ALIGN16;
  TirType TI = ty(DT_I32, 1, 128);
  TirInst *loop = tb_for(&t, tb_ci(&t, tir_scalar(DT_I32), 0), n, tb_ci(&t, tir_scalar(DT_I32), 1), 0, NULL);
  TirBlock *body = loop->blocks[0];
  TirValue *base = tb_bin(&t, TIR_MUL, body->args[0], tb_ci(&t, tir_scalar(DT_I32), 128));
  TirValue *offs = tb_bin(&t, TIR_ADD, tb_splat(&t, base, TI), tb_arange(&t, 0, 128));
  TirValue *v = tb_load(&t, tb_ptr_add(&t, x, offs), NULL, NULL);
  tb_store(&t, tb_ptr_add(&t, y, offs), tb_bin(&t, TIR_MUL, v, tb_cf(&t, v->type, 2.0)), NULL);
  tb_end(&t, loop);  // no tb_yield
  ck_assert_ptr_null(body->last->op == TIR_YIELD ? body->last : NULL);
  Diag d;
  diag_init(&d);
  ck_assert_msg(tir_verify(t.f, &d), "verifier: %s", d.text.data ? d.text.data : "");
  diag_free(&d);
  char *ptx = compile_both(t.f, 4);
  ck_assert_msg(strstr(ptx, "ld.global.v4") != NULL && strstr(ptx, "st.global.v4") != NULL, "vector loop body:\n%s", ptx);
  ck_assert_msg(strstr(ptx, "bra") != NULL, "a loop:\n%s", ptx);
  free(ptx);
  tb_free(&t);
}
END_TEST

// Tile-wide integer / and % are index arithmetic: rematerialised in the
// [ROWS, BLOCK] layout their broadcast is used in, not moved through shared
// memory (which needed 32 KiB at BLOCK = 4096 and spilled).
START_TEST(int_divrem_remat) {
  static const char src[] =
      "// usage: -D ROWS=4 -D BLOCK=4096\n"
      "kernel k(y: *f32, x: *f32, seq: i32, s_b: i64, s_r: i64, const ROWS: i32, const BLOCK: i32) {\n"
      "    let r = program_id(0) * ROWS + arange(0, ROWS);\n"
      "    let cols = arange(0, BLOCK);\n"
      "    let off = cast(r / seq, i64) * s_b + cast(r % seq, i64) * s_r;\n"
      "    let rb = r[:, None] + zeros([1, BLOCK], i32);\n"
      "    let xv = load((x + off)[:, None] + cols[None, :], rb % seq < 1000, 0.0);\n"
      "    store((y + off)[:, None] + cols[None, :], xv * cast(rb / seq, f32));\n"
      "}\n";
  Built b = compile_src(src, "sm_90", 8);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_eq(b.r.shared_bytes, 0);
  ck_assert_msg(strstr(b.r.ptx, ".shared") == NULL, "shared memory:\n%s", b.r.ptx);
  ck_assert_msg(strstr(b.r.ptx, "ld.global.v4") != NULL && strstr(b.r.ptx, "st.global.v4") != NULL, "vectors");
  cg_result_free(&b.r);
}
END_TEST

// A [ROWS] load broadcast to [ROWS, BLOCK] is loaded in the slice of the
// tile's layout, and a [BLOCK] reduction result is stored in its own
// layout: at BLOCK = 16384 neither may go through shared memory (the whole
// tile took more than 48 KiB).
START_TEST(broadcast_small_operand) {
  static const char src[] =
      "// usage: -D ROWS=4 -D BLOCK=16384\n"
      "kernel k(y: *f32, s: *f32, x: *f32, r: *f32, K: i32, const ROWS: i32, const BLOCK: i32) {\n"
      "    let rows = arange(0, ROWS);\n"
      "    let cols = arange(0, BLOCK);\n"
      "    let cm = cols < K;\n"
      "    let rv = load(r + rows);\n"
      "    let p = rows[:, None] * BLOCK + cols[None, :];\n"
      "    let xv = load(x + p, cm[None, :], 0.0) * rv[:, None];\n"
      "    store(y + p, xv - rv[:, None]);\n"
      "    store(s + cols, sum(xv, 0), cm);\n"
      "}\n";
  int nws[2] = {16, 32};
  for (int k = 0; k < 2; k++) {
    Built b = compile_src(src, "sm_90", nws[k]);
    ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
    ck_assert_msg(b.r.shared_bytes == 0, "nw %d: %d bytes of shared memory:\n%s", nws[k], b.r.shared_bytes, b.r.ptx);
    ck_assert_msg(strstr(b.r.ptx, "ld.global.v4") != NULL && strstr(b.r.ptx, "st.global.v4") != NULL, "vectors");
    cg_result_free(&b.r);
  }
  // Where the operand must move, only the operand does: [64] f32, not the tile.
  static const char src2[] =
      "// usage: -D ROWS=64 -D BLOCK=1024\n"
      "kernel k2(y: *f32, x: *f32, r: *f32, const ROWS: i32, const BLOCK: i32) {\n"
      "    let rows = arange(0, ROWS);\n"
      "    let cols = arange(0, BLOCK);\n"
      "    let rv = load(r + rows);\n"
      "    store(r + rows, rv + 1.0);\n"
      "    let p = rows[:, None] * BLOCK + cols[None, :];\n"
      "    store(y + p, load(x + p) * exp(rv)[:, None]);\n"
      "}\n";
  Built b = compile_src(src2, "sm_90", 8);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_msg(b.r.shared_bytes <= 64 * 4, "%d bytes of shared memory", b.r.shared_bytes);
  cg_result_free(&b.r);
}
END_TEST

// An f32 tile stored as f16/bf16 is narrowed two elements at a time
// (cvt.rn.f16x2.f32 / cvt.rn.bf16x2.f32, the pair a 32-bit word of the
// store), one the kernel reads again keeps the scalar conversion.
START_TEST(narrow_pairs_for_stores) {
  static const char *const ts[] = {"f16", "bf16"};
  for (int k = 0; k < 2; k++) {
    char src[1024];
    snprintf(src, sizeof src,
             "kernel k(y: *%s, z: *%s, x: *f32) {\n"
             "    let cols = arange(0, 1024);\n"
             "    let v = load(x + cols) * 2.0;\n"
             "    store(y + cols, v);\n"
             "    let h = cast(v + 1.0, %s);\n"
             "    store(z + cols, cast(cast(h, f32) * 3.0, %s));\n"
             "}\n", ts[k], ts[k], ts[k], ts[k]);
    Built b = compile_src(src, "sm_90", 4);
    ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
    char pair[32], one[32];
    snprintf(pair, sizeof pair, "cvt.rn.%sx2.f32", ts[k]);
    snprintf(one, sizeof one, "cvt.rn.%s.f32", ts[k]);
    // 1024 / 128 threads: 8 elements a thread; y and z's values in pairs,
    // h element by element.
    ck_assert_int_eq(tj_test_count(b.r.ptx, pair), 8);
    ck_assert_int_eq(tj_test_count(b.r.ptx, one), 8);
    ck_assert_int_eq(tj_test_count(b.r.ptx, "st.global.v4.b32"), 2);
    cg_result_free(&b.r);
  }
  // Rank 2 with a runtime mask (stores of pairs unpacked where the mask
  // splits them): [4, 256] over 4 warps is 8 elements a thread, 4 pairs.
  static const char src2[] =
      "kernel k(y: *bf16, x: *f32, K: i32) {\n"
      "    let cols = arange(0, 256);\n"
      "    let p = arange(0, 4)[:, None] * K + cols[None, :];\n"
      "    let m = (cols < K)[None, :] & (arange(0, 4) < 4)[:, None];\n"
      "    store(y + p, load(x + p, m, 0.0) + 1.0, m);\n"
      "}\n";
  Built b = compile_src(src2, "sm_90", 4);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_eq(tj_test_count(b.r.ptx, "cvt.rn.bf16x2.f32"), 4);
  ck_assert_int_eq(tj_test_count(b.r.ptx, "cvt.rn.bf16.f32"), 0);
  cg_result_free(&b.r);
}
END_TEST

// A cross-warp reduction writes the shared scratch between two barriers;
// the first retires earlier readers, and the kernel's first reduction
// outside a loop has none: one barrier for it, two for the next, two for
// every one in a loop (the previous iteration read the scratch).
START_TEST(first_reduction_barrier) {
  static const char src[] =
      "kernel k(y: *f32, x: *f32, n: i32) {\n"
      "    let c = arange(0, 1024);\n"
      "    let v = load(x + c);\n"
      "    let s = sum(v, 0);\n"
      "    let m = max(v - s, 0);\n"
      "    var acc = 0.0;\n"
      "    for i in range(0, n) {\n"
      "        acc = acc + sum(v * cast(i, f32), 0);\n"
      "    }\n"
      "    store(y, s + m + acc);\n"
      "}\n";
  Built b = compile_src(src, "sm_90", 4);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_eq(tj_test_count(b.r.ptx, "bar.sync"), 1 + 2 + 2);
  cg_result_free(&b.r);
  // In an if in a loop: both.
  static const char in_if[] =
      "kernel k(y: *f32, x: *f32, n: i32) {\n"
      "    let v = load(x + arange(0, 1024));\n"
      "    var acc = 0.0;\n"
      "    for i in range(0, n) {\n"
      "        if i > 2 {\n"
      "            acc = acc + sum(v * cast(i, f32), 0);\n"
      "        }\n"
      "    }\n"
      "    store(y, acc);\n"
      "}\n";
  b = compile_src(in_if, "sm_90", 4);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_eq(tj_test_count(b.r.ptx, "bar.sync"), 2);
  cg_result_free(&b.r);
  // After a dot (which stages its operands in shared memory) the first
  // reduction keeps it: one barrier more than with the reduction first.
  int n[2];
  for (int after = 0; after < 2; after++) {
    char dsrc[1024];
    snprintf(dsrc, sizeof dsrc,
             "kernel k(y: *f32, a: *f16, b: *f16, x: *f32) {\n"
             "    let r = arange(0, 64);\n"
             "    let p = r[:, None] * 64 + r[None, :];\n"
             "    let v = load(x + p);\n"
             "    %s\n    %s\n"
             "    store(y + p, c + s);\n"
             "}\n",
             after ? "let c = dot(load(a + p), load(b + p));" : "let s = sum(sum(v, 1), 0);",
             after ? "let s = sum(sum(v, 1), 0);" : "let c = dot(load(a + p), load(b + p));");
    b = compile_src(dsrc, "sm_90", 4);
    ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
    n[after] = tj_test_count(b.r.ptx, "bar.sync");
    cg_result_free(&b.r);
  }
  ck_assert_int_eq(n[1], n[0] + 1);
}
END_TEST

// f32 a * b + c is one fma; f16 and bf16 round after the multiply, as the
// interpreter does, so they never fuse (LLVM would shrink a contractable
// widened op back to a half one and fuse that).
START_TEST(fp_contraction) {
  static const char *const ts[] = {"f32", "f16", "bf16"};
  static const char *const archs[] = {"sm_80", "sm_90"};
  for (int k = 0; k < 3; k++)
    for (int a = 0; a < 2; a++) {
      char src[512];
      snprintf(src, sizeof src,
               "kernel k(y: *%s, a: *%s, b: *%s, c: *%s) {\n"
               "    let o = arange(0, 128);\n"
               "    store(y + o, load(a + o) * load(b + o) + load(c + o));\n"
               "}\n", ts[k], ts[k], ts[k], ts[k]);
      Built b = compile_src(src, archs[a], 4);
      ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
      ck_assert_msg(tj_test_count(b.r.ptx, "fma.rn") == (k == 0 ? 4 : 0), "%s %s:\n%s", ts[k], archs[a], b.r.ptx);
      cg_result_free(&b.r);
    }
}
END_TEST

// More shared memory than the arch has is reported, also from inside a
// loop whose carried value the failing op feeds (the layout pass used to
// dereference the unanalysed yield and crash).
START_TEST(smem_error_in_loop) {
  static const char src[] =
      "// usage: -D N=1024\n"
      "kernel k(y: *f32, x: *f32, n: i32, const N: i32) {\n"
      "    let p = arange(0, N)[:, None] * N + arange(0, N)[None, :];\n"
      "    var acc = zeros([N, N], f32);\n"
      "    for i in range(0, n) {\n"
      "        acc = acc + trans(load(x + p));\n"
      "    }\n"
      "    store(y + p, acc);\n"
      "}\n";
  // 32 warps keep the tile at the per-thread limit (1024 elements), so the
  // shared-memory check, not the tile-size check, is what refuses it.
  Built b = compile_src(src, "sm_90", 32);
  ck_assert_int_eq(b.st, TJ_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(b.diag, "shared memory") != NULL, "%s", b.diag);
  ck_assert_msg(strstr(b.diag, "4194304 bytes") != NULL, "%s", b.diag);
  ck_assert_ptr_null(b.r.ptx);
}
END_TEST

// A tile that would give each thread more than 1024 elements is refused
// before LLVM runs (it used to take minutes and spill), with the fix named.
START_TEST(tile_too_large_per_thread) {
  static const char src[] =
      "// usage: -D BLOCK=262144\n"
      "kernel k(y: *f32, x: *f32, const BLOCK: i32) {\n"
      "    let i = arange(0, BLOCK);\n"
      "    store(y + i, load(x + i) * 2.0);\n"
      "}\n";
  Built b = compile_src(src, "sm_90", 4);
  ck_assert_int_eq(b.st, TJ_ERR_UNSUPPORTED);
  ck_assert_msg(strstr(b.diag, "regress.tj:3:13: error: codegen: tile [262144] i32 spreads 2048 elements over "
                              "each of 128 threads (at most 1024): use more warps or smaller tiles") != NULL,
                "%s", b.diag);
  ck_assert_ptr_null(b.r.ptx);
  b = compile_src(src, "sm_90", 8);   // 1024 per thread: accepted
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  cg_result_free(&b.r);
}
END_TEST

// Between 48 KiB and the arch's limit the scratch is dynamic shared memory
// (an extern array) and shared_bytes says how much to pass at launch.
START_TEST(dynamic_shared_memory) {
  static const char src[] =
      "// usage: -D M=128 -D N=256\n"
      "kernel k(y: *f32, x: *f32, const M: i32, const N: i32) {\n"
      "    let p = arange(0, M)[:, None] * N + arange(0, N)[None, :];\n"
      "    let q = arange(0, N)[:, None] * M + arange(0, M)[None, :];\n"
      "    store(y + q, trans(load(x + p)));\n"
      "}\n";
  Built b = compile_src(src, "sm_90", 8);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_ge(b.r.shared_bytes, 128 * 256 * 4);
  ck_assert_msg(strstr(b.r.ptx, ".extern .shared") != NULL, "dynamic shared array:\n%.2000s", b.r.ptx);
  cg_result_free(&b.r);
  // Small scratch stays static.
  static const char small[] =
      "// usage: -D M=16 -D N=32\n"
      "kernel k(y: *f32, x: *f32, const M: i32, const N: i32) {\n"
      "    let p = arange(0, M)[:, None] * N + arange(0, N)[None, :];\n"
      "    let q = arange(0, N)[:, None] * M + arange(0, M)[None, :];\n"
      "    store(y + q, trans(load(x + p)));\n"
      "}\n";
  b = compile_src(small, "sm_90", 4);
  ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
  ck_assert_int_eq(b.r.shared_bytes, 16 * 32 * 4);
  ck_assert_msg(strstr(b.r.ptx, ".extern") == NULL && strstr(b.r.ptx, ".shared") != NULL, "static shared array");
  cg_result_free(&b.r);
}
END_TEST

// Float % is an exact fmod (PTX has none; LLVM's frem expansion rounds):
// an exponent-reduction loop in f64.
START_TEST(float_rem_exact) {
  static const char src[] =
      "// usage: -D T=f32\n"
      "kernel k(y: *T, x: *T, d: *T, n: i32, const T: dtype) {\n"
      "    let o = arange(0, 256);\n"
      "    store(y + o, load(x + o) % load(d + o), o < n);\n"
      "}\n";
  const char *ts[3] = {"// usage: -D T=f32", "// usage: -D T=f16", "// usage: -D T=bf16"};
  for (int k = 0; k < 3; k++) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s", ts[k], strchr(src, '\n'));
    Built b = compile_src(buf, "sm_80", 4);
    ck_assert_msg(b.st == TJ_OK, "%s", b.diag);
    ck_assert_msg(strstr(b.r.ptx, "sub.rn.f64") != NULL || strstr(b.r.ptx, "sub.f64") != NULL, "f64 reduction:\n%s", b.r.ptx);
    ck_assert_msg(strstr(b.r.ptx, "cvt.rzi") == NULL && strstr(b.r.ptx, "div.") == NULL, "no trunc(x / y) expansion:\n%s", b.r.ptx);
    cg_result_free(&b.r);
  }
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("codegen");
  TCase *tc = tcase_create("ptx");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, vecadd_f32);
  tcase_add_test(tc, vecadd_unaligned_scalar);
  tcase_add_test(tc, softmax_f16_4096);
  tcase_add_test(tc, softmax_f32_small);
  tcase_add_test(tc, reduce_2d);
  tcase_add_test(tc, loop_carried);
  tcase_add_test(tc, loop_carried_slice);
  tcase_add_test(tc, if_and_masked_store);
  tcase_add_test(tc, dot_fma);
  tcase_add_test(tc, math_int_philox);
  tcase_add_test(tc, line_info_and_annotate);
  tcase_add_test(tc, unsupported_is_reported);
  tcase_add_test(tc, examples_compile);
  tcase_add_test(tc, tile_too_large_per_thread);
  tcase_add_test(tc, test_kernels_compile);
  tcase_add_test(tc, concurrent_compiles);
  tcase_add_test(tc, for_without_yield);
  tcase_add_test(tc, int_divrem_remat);
  tcase_add_test(tc, broadcast_small_operand);
  tcase_add_test(tc, smem_error_in_loop);
  tcase_add_test(tc, narrow_pairs_for_stores);
  tcase_add_test(tc, first_reduction_barrier);
  tcase_add_test(tc, fp_contraction);
  tcase_add_test(tc, dynamic_shared_memory);
  tcase_add_test(tc, float_rem_exact);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
