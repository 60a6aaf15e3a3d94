/* test_tir.c: the tile IR builder, printer, verifier and cleanup passes,
 * on IR built by hand. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tir_testbuild.h"

static char *print_func(const TirFunc *f) {
  StrBuf sb;
  sb_init(&sb);
  tir_print(&sb, f);
  return sb_steal(&sb);
}

// Compares printed IR with the expectation; on a mismatch, prints the whole
// text to stderr and fails naming the first differing line (Check's own
// message buffer is too small for whole functions).
static void assert_tir_text(const TirFunc *f, const char *want, int line) {
  char *got = print_func(f);
  if (strcmp(got, want) != 0) {
    fprintf(stderr, "--- printed IR (test line %d):\n%s---\n", line, got);
    const char *g = got, *w = want;
    int ln = 1;
    while (*g && *g == *w) {
      if (*g == '\n') ln++;
      g++, w++;
    }
    const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
    int gl = ge ? (int)(ge - g) : (int)strlen(g), wl = we ? (int)(we - w) : (int)strlen(w);
    char msg[512];
    snprintf(msg, sizeof msg, "IR text differs at line %d: got '...%.*s', want '...%.*s'", ln, gl > 200 ? 200 : gl,
             g, wl > 200 ? 200 : wl, w);
    free(got);
    ck_abort_msg("%s", msg);
  }
  free(got);
}
#define ck_assert_tir(f, want) assert_tir_text((f), (want), __LINE__)

// Returns the rendered diagnostics of a failed verification ("" when it
// passed); malloc'd.
static char *verify_text(const TirFunc *f, bool *ok) {
  Diag d;
  diag_init(&d);
  *ok = tir_verify(f, &d);
  char *s = sb_steal(&d.text);
  diag_free(&d);
  return s;
}

static void assert_verifies(const TirFunc *f) {
  bool ok;
  char *msg = verify_text(f, &ok);
  ck_assert_msg(ok, "verifier rejected valid IR:\n%s", msg);
  free(msg);
}

static void assert_rejects(const TirFunc *f, const char *needle) {
  bool ok;
  char *msg = verify_text(f, &ok);
  ck_assert_msg(!ok, "verifier accepted broken IR");
  ck_assert_msg(strstr(msg, "internal error: tir: ") != NULL, "no internal-error prefix in:\n%s", msg);
  ck_assert_msg(strstr(msg, needle) != NULL, "expected '%s' in:\n%s", needle, msg);
  free(msg);
}

// out[i] = x[i] + y[i] for i < n, BLOCK = 128.
static void build_vadd(TB *t) {
  tb_init(t, "vadd");
  TirValue *x = tb_param(t, "x", true, DT_F32);
  TirValue *y = tb_param(t, "y", true, DT_F32);
  TirValue *out = tb_param(t, "out", true, DT_F32);
  TirValue *n = tb_param(t, "n", false, DT_I32);
  TirType blk = ty(DT_I32, 1, 128);
  TirValue *pid = tb_pid(t, 0);
  TirValue *start = tb_bin(t, TIR_MUL, pid, tb_ci(t, tir_scalar(DT_I32), 128));
  // Builder calls are sequenced one per statement: C leaves the order of
  // evaluation of function arguments unspecified, and it decides numbering.
  TirValue *sst = tb_splat(t, start, blk);
  TirValue *offs = tb_bin(t, TIR_ADD, sst, tb_arange(t, 0, 128));
  TirValue *mask = tb_cmp(t, CMP_LT, offs, tb_splat(t, n, blk));
  TirValue *a = tb_load(t, tb_ptr_add(t, x, offs), mask, NULL);
  TirValue *py = tb_ptr_add(t, y, offs);
  TirValue *b = tb_load(t, py, mask, tb_cf(t, ty(DT_F32, 1, 128), 0.0));
  TirValue *po = tb_ptr_add(t, out, offs);
  tb_store(t, po, tb_bin(t, TIR_ADD, a, b), mask);
}

static const char *vadd_text =
    "kernel vadd(%x: *f32, %y: *f32, %out: *f32, %n: i32) num_warps=4\n"
    "{\n"
    "  %0 = program_id 0 : i32\n"
    "  %1 = const 128 : i32\n"
    "  %2 = mul %0, %1 : i32\n"
    "  %3 = splat %2 : [128] i32\n"
    "  %4 = arange 0, 128 : [128] i32\n"
    "  %5 = add %3, %4 : [128] i32\n"
    "  %6 = splat %n : [128] i32\n"
    "  %7 = cmp lt %5, %6 : [128] bool\n"
    "  %8 = splat %x : [128] *f32\n"
    "  %9 = ptr_add %8, %5 : [128] *f32\n"
    "  %10 = load %9, %7 : [128] f32\n"
    "  %11 = splat %y : [128] *f32\n"
    "  %12 = ptr_add %11, %5 : [128] *f32\n"
    "  %13 = const 0.0 : [128] f32\n"
    "  %14 = load %12, %7, %13 : [128] f32\n"
    "  %15 = splat %out : [128] *f32\n"
    "  %16 = ptr_add %15, %5 : [128] *f32\n"
    "  %17 = add %10, %14 : [128] f32\n"
    "  store %16, %17, %7\n"
    "}\n";

START_TEST(test_print_vadd) {
  TB t;
  build_vadd(&t);
  ck_assert(!t.arena.failed);
  ck_assert_tir(t.f, vadd_text);
  assert_verifies(t.f);
  tb_free(&t);
}
END_TEST

// acc: [64] f32 and count: i32 carried over i in range(0, n, 2).
static TirInst *build_loop(TB *t) {
  tb_init(t, "loopsum");
  TirValue *x = tb_param(t, "x", true, DT_F32);
  TirValue *out = tb_param(t, "out", true, DT_F32);
  TirValue *n = tb_param(t, "n", false, DT_I32);
  TirType blk = ty(DT_I32, 1, 64);
  TirType i32 = tir_scalar(DT_I32);
  TirValue *inits[2];
  inits[0] = tb_cf(t, ty(DT_F32, 1, 64), 0.0);
  inits[1] = tb_ci(t, i32, 0);
  TirValue *lo = tb_ci(t, i32, 0);
  TirInst *fo = tb_for(t, lo, n, tb_ci(t, i32, 2), 2, inits);
  TirBlock *body = fo->blocks[0];
  TirValue *i = body->args[0], *acc = body->args[1], *cnt = body->args[2];
  TirValue *row = tb_bin(t, TIR_MUL, i, tb_ci(t, i32, 64));
  TirValue *srow = tb_splat(t, row, blk);
  TirValue *offs = tb_bin(t, TIR_ADD, srow, tb_arange(t, 0, 64));
  TirValue *v = tb_load(t, tb_ptr_add(t, x, offs), NULL, NULL);
  TirValue *ys[2];
  ys[0] = tb_bin(t, TIR_ADD, acc, v);
  ys[1] = tb_bin(t, TIR_ADD, cnt, tb_ci(t, i32, 1));
  tb_yield(t, 2, ys);
  tb_end(t, fo);
  TirValue *c = tb_cast(t, tb_splat(t, fo->res[1], blk), DT_F32);
  TirValue *po = tb_ptr_add(t, out, tb_arange(t, 0, 64));
  tb_store(t, po, tb_bin(t, TIR_DIV, fo->res[0], c), NULL);
  return fo;
}

static const char *loop_text =
    "kernel loopsum(%x: *f32, %out: *f32, %n: i32) num_warps=4\n"
    "{\n"
    "  %0 = const 0.0 : [64] f32\n"
    "  %1 = const 0 : i32\n"
    "  %2 = const 0 : i32\n"
    "  %3 = const 2 : i32\n"
    "  %4, %5 = for %6 = %2 to %n step %3 iter(%7 = %0, %8 = %1) : ([64] f32, i32) {\n"
    "    %9 = const 64 : i32\n"
    "    %10 = mul %6, %9 : i32\n"
    "    %11 = splat %10 : [64] i32\n"
    "    %12 = arange 0, 64 : [64] i32\n"
    "    %13 = add %11, %12 : [64] i32\n"
    "    %14 = splat %x : [64] *f32\n"
    "    %15 = ptr_add %14, %13 : [64] *f32\n"
    "    %16 = load %15 : [64] f32\n"
    "    %17 = add %7, %16 : [64] f32\n"
    "    %18 = const 1 : i32\n"
    "    %19 = add %8, %18 : i32\n"
    "    yield %17, %19\n"
    "  }\n"
    "  %20 = splat %5 : [64] i32\n"
    "  %21 = cast %20 : [64] f32\n"
    "  %22 = arange 0, 64 : [64] i32\n"
    "  %23 = splat %out : [64] *f32\n"
    "  %24 = ptr_add %23, %22 : [64] *f32\n"
    "  %25 = div %4, %21 : [64] f32\n"
    "  store %24, %25\n"
    "}\n";

START_TEST(test_print_loop) {
  TB t;
  build_loop(&t);
  ck_assert_tir(t.f, loop_text);
  assert_verifies(t.f);
  tb_free(&t);
}
END_TEST

// out[0] = c ? a + 1 : a * 2 (scalar), with an if that also has a store-only
// branch.
static TirInst *build_if(TB *t) {
  tb_init(t, "branch");
  TirValue *out = tb_param(t, "out", true, DT_I64);
  TirValue *a = tb_param(t, "a", false, DT_I64);
  TirType i64 = tir_scalar(DT_I64);
  TirValue *c = tb_cmp(t, CMP_GT, a, tb_ci(t, i64, 10));
  TirInst *in = tb_if(t, c, 1, &i64);
  TirValue *y1 = tb_bin(t, TIR_ADD, a, tb_ci(t, i64, 1));
  tb_yield(t, 1, &y1);
  tb_else(t, in);
  TirValue *y2 = tb_bin(t, TIR_MUL, a, tb_ci(t, i64, 2));
  tb_yield(t, 1, &y2);
  tb_end(t, in);
  tb_store(t, out, in->res[0], NULL);
  TirInst *in2 = tb_if(t, c, 0, NULL);
  tb_store(t, out, a, NULL);
  tb_end(t, in2);
  return in;
}

static const char *if_text =
    "kernel branch(%out: *i64, %a: i64) num_warps=4\n"
    "{\n"
    "  %0 = const 10 : i64\n"
    "  %1 = cmp gt %a, %0 : bool\n"
    "  %2 = if %1 : (i64) {\n"
    "    %3 = const 1 : i64\n"
    "    %4 = add %a, %3 : i64\n"
    "    yield %4\n"
    "  } else {\n"
    "    %5 = const 2 : i64\n"
    "    %6 = mul %a, %5 : i64\n"
    "    yield %6\n"
    "  }\n"
    "  store %out, %2\n"
    "  if %1 {\n"
    "    store %out, %a\n"
    "  }\n"
    "}\n";

START_TEST(test_print_if) {
  TB t;
  build_if(&t);
  ck_assert_tir(t.f, if_text);
  assert_verifies(t.f);
  tb_free(&t);
}
END_TEST

START_TEST(test_print_attrs) {
  TB t;
  tb_init(&t, "attrs");
  TirValue *p = tb_param(&t, "p", true, DT_F16);
  t.f->params[0].spec = TIR_SPEC_ALIGN16 | TIR_SPEC_DIV16;
  t.f->num_warps = 8;
  TirConstDef cd[2] = {{"T", "f16"}, {"BLOCK", "32"}};
  t.f->consts = cd;
  t.f->nconsts = 2;
  int64_t tv[2] = {2, 4};
  TirTunable tun = {"num_warps", tv, 2};
  t.f->tunables = &tun;
  t.f->ntunables = 1;
  TirType f32 = tir_scalar(DT_F32);
  tb_cf(&t, f32, 0.1);
  tb_cf(&t, f32, -INFINITY);
  tb_cf(&t, f32, INFINITY);
  tb_cf(&t, f32, NAN);
  tb_cf(&t, tir_scalar(DT_F64), 1e-5);
  tb_cf(&t, tir_scalar(DT_F64), -2.5e300);
  tb_cf(&t, f32, 3.0);
  tb_ci(&t, tir_scalar(DT_BOOL), 1);
  tb_ci(&t, tir_scalar(DT_U64), -1);
  tb_ci(&t, tir_scalar(DT_I64), INT64_MIN);
  TirValue *np = tb_op(&t, TIR_NUM_PROGRAMS, tir_scalar(DT_I32), 0);
  np->def->axis = 2;
  TirValue *r = tb_arange(&t, 0, 32);
  TirValue *e = tb_expand(&t, r, 0);
  TirValue *b = tb_bcast(&t, e, ty(DT_I32, 2, 16, 32));
  TirValue *tr = tb_op(&t, TIR_TRANS, ty(DT_I32, 2, 32, 16), 1, b);
  TirValue *rs = tb_op(&t, TIR_RESHAPE, ty(DT_I32, 1, 512), 1, tr);
  TirValue *m = tb_reduce(&t, RED_ARGMAX, b, 1, DT_I32);
  (void)rs;
  (void)m;
  TirValue *s = tb_reduce(&t, RED_SUM, tb_cast(&t, b, DT_F16), 0, DT_F32);
  TirValue *ph = tb_op(&t, TIR_PHILOX, ty(DT_U32, 1, 32), 3, r, r, r);
  TirValue *ne = tb_cmp(&t, CMP_NE, s, s);
  TirValue *w = tb_op(&t, TIR_WHERE, s->type, 3, ne, s, s);
  TirValue *fm = tb_op(&t, TIR_FMA, s->type, 3, w, w, w);
  TirValue *h = tb_cast(&t, fm, DT_F16);
  TirValue *bc = tb_op(&t, TIR_BITCAST, tir_with_dtype(h->type, DT_I16), 1, h);
  (void)ph;
  (void)bc;
  TirValue *one = tb_cf(&t, tir_scalar(DT_F16), 1.0);
  TirValue *a = tb_cast(&t, tb_op(&t, TIR_SPLAT, ty(DT_F16, 2, 16, 16), 1, one), DT_F16);
  TirValue *acc = tb_cf(&t, ty(DT_F32, 2, 16, 16), 0.0);
  TirValue *dt = tb_op(&t, TIR_DOT, acc->type, 3, a, a, acc);
  TirValue *pp = tb_ptr_add(&t, p, tb_arange(&t, 0, 32));
  tb_store(&t, pp, tb_cast(&t, ph, DT_F16), NULL);
  (void)dt;
  ck_assert_tir(t.f,
                "kernel attrs(%p: *f16 align16 div16) num_warps=8\n"
                "  const T = f16, BLOCK = 32\n"
                "  tunable num_warps in {2, 4}\n"
                "{\n"
                "  %0 = const 0.1 : f32\n"
                "  %1 = const -inf : f32\n"
                "  %2 = const inf : f32\n"
                "  %3 = const nan : f32\n"
                "  %4 = const 1e-05 : f64\n"
                "  %5 = const -2.5e+300 : f64\n"
                "  %6 = const 3.0 : f32\n"
                "  %7 = const true : bool\n"
                "  %8 = const 18446744073709551615 : u64\n"
                "  %9 = const -9223372036854775808 : i64\n"
                "  %10 = num_programs 2 : i32\n"
                "  %11 = arange 0, 32 : [32] i32\n"
                "  %12 = expand_dims %11, axis=0 : [1, 32] i32\n"
                "  %13 = broadcast %12 : [16, 32] i32\n"
                "  %14 = trans %13 : [32, 16] i32\n"
                "  %15 = reshape %14 : [512] i32\n"
                "  %16 = reduce argmax %13, axis=1 : [16] i32\n"
                "  %17 = cast %13 : [16, 32] f16\n"
                "  %18 = reduce sum %17, axis=0 : [32] f32\n"
                "  %19 = philox %11, %11, %11 : [32] u32\n"
                "  %20 = cmp ne %18, %18 : [32] bool\n"
                "  %21 = where %20, %18, %18 : [32] f32\n"
                "  %22 = fma %21, %21, %21 : [32] f32\n"
                "  %23 = cast %22 : [32] f16\n"
                "  %24 = bitcast %23 : [32] i16\n"
                "  %25 = const 1.0 : f16\n"
                "  %26 = splat %25 : [16, 16] f16\n"
                "  %27 = cast %26 : [16, 16] f16\n"
                "  %28 = const 0.0 : [16, 16] f32\n"
                "  %29 = dot %27, %27, %28 : [16, 16] f32\n"
                "  %30 = arange 0, 32 : [32] i32\n"
                "  %31 = splat %p : [32] *f16\n"
                "  %32 = ptr_add %31, %30 : [32] *f16\n"
                "  %33 = cast %19 : [32] f16\n"
                "  store %32, %33\n"
                "}\n");
  assert_verifies(t.f);
  tb_free(&t);
}
END_TEST

START_TEST(test_format_double) {
  char buf[40];
  tir_format_double(buf, sizeof buf, 0.1);
  ck_assert_str_eq(buf, "0.1");
  tir_format_double(buf, sizeof buf, (double)0.1f);
  ck_assert_str_eq(buf, "0.10000000149011612");
  tir_format_double(buf, sizeof buf, -0.0);
  ck_assert_str_eq(buf, "-0.0");
  tir_format_double(buf, sizeof buf, 1e100);
  ck_assert_str_eq(buf, "1e+100");
  tir_format_double(buf, sizeof buf, 123456789.0);
  ck_assert_str_eq(buf, "123456789.0");
  for (double v = 1e-300; v < 1e300; v *= -7.3) {
    tir_format_double(buf, sizeof buf, v);
    ck_assert(strtod(buf, NULL) == v);
    v = -v;
  }
}
END_TEST

// ---------------------------------------------------------------- verifier

START_TEST(test_verify_wrong_types) {
  TB t;
  tb_init(&t, "bad");
  TirValue *a = tb_cf(&t, tir_scalar(DT_F32), 1.0);
  TirValue *b = tb_ci(&t, tir_scalar(DT_I32), 1);
  tb_op(&t, TIR_ADD, a->type, 2, a, b);
  assert_rejects(t.f, "add: operand 1 is i32, operand 0 is f32");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *i = tb_ci(&t, tir_scalar(DT_I32), 1);
  tb_op(&t, TIR_EXP, i->type, 1, i);
  assert_rejects(t.f, "exp: needs a float operand, got i32");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *x = tb_arange(&t, 0, 16);
  tb_op(&t, TIR_BROADCAST, ty(DT_I32, 1, 32), 1, x);
  assert_rejects(t.f, "broadcast: cannot broadcast [16] i32 to [32] i32");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *r16 = tb_arange(&t, 0, 16);
  TirValue *c = tb_cmp(&t, CMP_LT, r16, r16);
  TirValue *w1 = tb_cf(&t, ty(DT_F32, 1, 16), 1), *w2 = tb_cf(&t, ty(DT_F16, 1, 16), 1);
  tb_op(&t, TIR_WHERE, ty(DT_F32, 1, 16), 3, c, w1, w2);
  assert_rejects(t.f, "where: values differ: [16] f32 vs [16] f16");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *p = tb_param(&t, "p", true, DT_F32);
  TirValue *lp = tb_load(&t, p, NULL, NULL);
  lp->def->flags = TIR_HAS_MASK;
  assert_rejects(t.f, "load: flags 0x1 do not match 1 args");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *m = tb_op(&t, TIR_SPLAT, ty(DT_F16, 2, 16, 32), 1, tb_cf(&t, tir_scalar(DT_F16), 1));
  TirValue *z = tb_cf(&t, ty(DT_F32, 2, 16, 32), 0);
  tb_op(&t, TIR_DOT, ty(DT_F32, 2, 16, 32), 3, m, m, z);
  assert_rejects(t.f, "dot: shapes [16, 32] f16 x [16, 32] f16 + [16, 32] f32 do not chain");
  tb_free(&t);

  tb_init(&t, "bad");
  TirValue *q = tb_arange(&t, 0, 16);
  tb_reduce(&t, RED_ARGMAX, q, 0, DT_I64);
  assert_rejects(t.f, "reduce: argmax of [16] i32 cannot give i64");
  tb_free(&t);
}
END_TEST

START_TEST(test_verify_use_before_def) {
  TB t;
  tb_init(&t, "bad");
  TirValue *a = tb_ci(&t, tir_scalar(DT_I32), 1);
  TirInst *add = tb_inst(&t, TIR_ADD, a->type, 2, a, a);
  TirValue *b = tb_ci(&t, tir_scalar(DT_I32), 2);
  add->args[1] = b;  // b is defined after its use
  assert_rejects(t.f, "add: arg 1 (value %2) is not defined before its use");
  tb_free(&t);

  // A value defined in a loop body used after the loop.
  tb_init(&t, "bad");
  TirType i32 = tir_scalar(DT_I32);
  TirValue *lo = tb_ci(&t, i32, 0), *hi = tb_ci(&t, i32, 4);
  TirInst *fo = tb_for(&t, lo, hi, tb_ci(&t, i32, 1), 0, NULL);
  TirValue *inner = tb_bin(&t, TIR_ADD, fo->blocks[0]->args[0], fo->blocks[0]->args[0]);
  tb_end(&t, fo);
  tb_bin(&t, TIR_ADD, inner, inner);
  assert_rejects(t.f, "is used outside the block that defines it");
  tb_free(&t);
}
END_TEST

START_TEST(test_verify_bad_yield) {
  TB t;
  build_loop(&t);
  // Drop the last yield operand: count mismatch.
  TirInst *fo = t.f->body->first;
  while (fo->op != TIR_FOR) fo = fo->next;
  TirInst *y = fo->blocks[0]->last;
  y->nargs = 1;
  assert_rejects(t.f, "for: body yields 1 values, expected 2");
  // Swap the operands: type mismatch.
  y->nargs = 2;
  TirValue *tmp = y->args[0];
  y->args[0] = y->args[1];
  y->args[1] = tmp;
  assert_rejects(t.f, "for: body yields i32 as value 0, expected [64] f32");
  tb_free(&t);

  TirInst *in;
  build_if(&t);
  in = t.f->body->first->next->next;
  ck_assert_int_eq(in->op, TIR_IF);
  tir_inst_remove(in->blocks[1]->last);  // else without its yield
  assert_rejects(t.f, "if: else block does not end in a yield of 1 values");
  tb_free(&t);

  tb_init(&t, "bad");
  tb_yield(&t, 0, NULL);
  assert_rejects(t.f, "yield: outside a for or if block");
  tb_free(&t);
}
END_TEST

// ---------------------------------------------------------------- passes

START_TEST(test_fold) {
  TB t;
  tb_init(&t, "fold");
  TirValue *out = tb_param(&t, "out", true, DT_I32);
  TirType i32 = tir_scalar(DT_I32), f32 = tir_scalar(DT_F32);
  TirValue *a = tb_bin(&t, TIR_ADD, tb_ci(&t, i32, 2), tb_ci(&t, i32, 3));
  TirValue *w = tb_bin(&t, TIR_MUL, tb_ci(&t, i32, 0x10000), tb_ci(&t, i32, 0x10001));  // wraps
  TirValue *dz = tb_bin(&t, TIR_DIV, a, tb_ci(&t, i32, 0));                               // -1
  TirValue *sh = tb_bin(&t, TIR_SHL, a, tb_ci(&t, i32, 40));                              // 0
  TirValue *sat = tb_cast(&t, tb_cf(&t, f32, 1e10), DT_I32);                             // INT32_MAX
  TirValue *nan0 = tb_cast(&t, tb_cf(&t, f32, NAN), DT_I32);                             // 0
  TirValue *lt = tb_cmp(&t, CMP_LT, a, dz);                                             // false
  TirValue *sp = tb_splat(&t, a, ty(DT_I32, 1, 4));
  TirValue *sum = tb_bin(&t, TIR_ADD, sp, tb_splat(&t, w, ty(DT_I32, 1, 4)));
  TirValue *h = tb_bin(&t, TIR_ADD, tb_cf(&t, tir_scalar(DT_F16), 1.0), tb_cf(&t, tir_scalar(DT_F16), 1.0 / 2048));
  TirValue *vals[] = {a, w, dz, sh, sat, nan0, NULL, NULL};
  vals[6] = tb_cast(&t, lt, DT_I32);
  vals[7] = tb_cast(&t, h, DT_I32);
  for (int i = 0; i < 8; i++) tb_store(&t, tb_ptr_add(&t, out, tb_ci(&t, i32, i)), vals[i], NULL);
  tb_store(&t, tb_ptr_add(&t, out, tb_arange(&t, 0, 4)), sum, NULL);
  tir_fold(t.f);
  assert_verifies(t.f);
  tir_dce(t.f);
  assert_verifies(t.f);
  ck_assert_tir(t.f,
                "kernel fold(%out: *i32) num_warps=4\n"
                "{\n"
                "  %0 = const 5 : i32\n"
                "  %1 = const 65536 : i32\n"
                "  %2 = const -1 : i32\n"
                "  %3 = const 0 : i32\n"
                "  %4 = const 2147483647 : i32\n"
                "  %5 = const 0 : i32\n"
                "  %6 = const 65541 : [4] i32\n"
                "  %7 = const 0 : i32\n"
                "  %8 = const 1 : i32\n"
                "  %9 = const 0 : i32\n"
                "  %10 = ptr_add %out, %9 : *i32\n"
                "  store %10, %0\n"
                "  %11 = const 1 : i32\n"
                "  %12 = ptr_add %out, %11 : *i32\n"
                "  store %12, %1\n"
                "  %13 = const 2 : i32\n"
                "  %14 = ptr_add %out, %13 : *i32\n"
                "  store %14, %2\n"
                "  %15 = const 3 : i32\n"
                "  %16 = ptr_add %out, %15 : *i32\n"
                "  store %16, %3\n"
                "  %17 = const 4 : i32\n"
                "  %18 = ptr_add %out, %17 : *i32\n"
                "  store %18, %4\n"
                "  %19 = const 5 : i32\n"
                "  %20 = ptr_add %out, %19 : *i32\n"
                "  store %20, %5\n"
                "  %21 = const 6 : i32\n"
                "  %22 = ptr_add %out, %21 : *i32\n"
                "  store %22, %7\n"
                "  %23 = const 7 : i32\n"
                "  %24 = ptr_add %out, %23 : *i32\n"
                "  store %24, %8\n"
                "  %25 = arange 0, 4 : [4] i32\n"
                "  %26 = splat %out : [4] *i32\n"
                "  %27 = ptr_add %26, %25 : [4] *i32\n"
                "  store %27, %6\n"
                "}\n");
  tb_free(&t);
}
END_TEST

START_TEST(test_cse) {
  TB t;
  tb_init(&t, "cse");
  TirValue *p = tb_param(&t, "p", true, DT_F32);
  TirType f32 = tir_scalar(DT_F32);
  TirValue *l1 = tb_load(&t, p, NULL, NULL);
  TirValue *l2 = tb_load(&t, p, NULL, NULL);  // loads never merge
  TirValue *a1 = tb_bin(&t, TIR_ADD, l1, tb_cf(&t, f32, 1.0));
  TirValue *a2 = tb_bin(&t, TIR_ADD, l1, tb_cf(&t, f32, 1.0));  // same const, same add
  TirValue *z1 = tb_cf(&t, f32, 0.0);
  TirValue *z2 = tb_cf(&t, f32, -0.0);  // differs in bits: kept
  TirValue *mu = tb_bin(&t, TIR_MUL, a1, a2);
  TirValue *su = tb_bin(&t, TIR_SUB, z1, z2);
  TirValue *s = tb_bin(&t, TIR_ADD, mu, tb_bin(&t, TIR_ADD, l2, su));
  TirType i32 = tir_scalar(DT_I32);
  TirValue *lo = tb_ci(&t, i32, 0), *hi = tb_ci(&t, i32, 4);
  TirInst *fo = tb_for(&t, lo, hi, tb_ci(&t, i32, 1), 1, &s);
  TirValue *inner = tb_bin(&t, TIR_ADD, l1, tb_cf(&t, f32, 1.0));  // same as a1, in a nested block
  TirValue *y = tb_bin(&t, TIR_ADD, fo->blocks[0]->args[1], inner);
  tb_yield(&t, 1, &y);
  tb_end(&t, fo);
  tb_store(&t, p, fo->res[0], NULL);
  tir_cse(t.f);
  assert_verifies(t.f);
  tir_dce(t.f);
  assert_verifies(t.f);
  ck_assert_tir(t.f,
                "kernel cse(%p: *f32) num_warps=4\n"
                "{\n"
                "  %0 = load %p : f32\n"
                "  %1 = load %p : f32\n"
                "  %2 = const 1.0 : f32\n"
                "  %3 = add %0, %2 : f32\n"
                "  %4 = const 0.0 : f32\n"
                "  %5 = const -0.0 : f32\n"
                "  %6 = mul %3, %3 : f32\n"
                "  %7 = sub %4, %5 : f32\n"
                "  %8 = add %1, %7 : f32\n"
                "  %9 = add %6, %8 : f32\n"
                "  %10 = const 0 : i32\n"
                "  %11 = const 4 : i32\n"
                "  %12 = const 1 : i32\n"
                "  %13 = for %14 = %10 to %11 step %12 iter(%15 = %9) : (f32) {\n"
                "    %16 = add %15, %3 : f32\n"
                "    yield %16\n"
                "  }\n"
                "  store %p, %13\n"
                "}\n");
  tb_free(&t);
}
END_TEST

START_TEST(test_dce) {
  TB t;
  tb_init(&t, "dce");
  TirValue *p = tb_param(&t, "p", true, DT_I32);
  TirType i32 = tir_scalar(DT_I32);
  TirValue *x = tb_load(&t, p, NULL, NULL);
  TirValue *dead = tb_bin(&t, TIR_MUL, x, x);
  tb_bin(&t, TIR_ADD, dead, dead);
  tb_load(&t, p, NULL, NULL);  // an unused load goes too
  // Loop with a live carried value, a dead one (only feeds itself) and a
  // store inside.
  TirValue *inits[2] = {x, NULL};
  inits[1] = tb_ci(&t, i32, 7);
  TirValue *lo = tb_ci(&t, i32, 0), *hi = tb_ci(&t, i32, 3), *st = tb_ci(&t, i32, 1);
  TirInst *fo = tb_for(&t, lo, hi, st, 2, inits);
  TirBlock *body = fo->blocks[0];
  TirValue *ys[2];
  ys[0] = tb_bin(&t, TIR_ADD, body->args[1], body->args[0]);
  ys[1] = tb_bin(&t, TIR_MUL, body->args[2], body->args[2]);
  tb_yield(&t, 2, ys);
  tb_end(&t, fo);
  // A loop without stores whose results are unused disappears.
  TirInst *fo2 = tb_for(&t, lo, hi, st, 1, &x);
  TirValue *y2 = tb_bin(&t, TIR_ADD, fo2->blocks[0]->args[1], x);
  tb_yield(&t, 1, &y2);
  tb_end(&t, fo2);
  // An if with a dead result but a store in one branch stays, minus the result.
  TirValue *cnd = tb_cmp(&t, CMP_GT, x, tb_ci(&t, i32, 0));
  TirInst *in = tb_if(&t, cnd, 1, &i32);
  tb_store(&t, p, x, NULL);
  tb_yield(&t, 1, &x);
  tb_else(&t, in);
  TirValue *e = tb_bin(&t, TIR_SUB, x, x);
  tb_yield(&t, 1, &e);
  tb_end(&t, in);
  tb_store(&t, p, fo->res[0], NULL);
  tir_dce(t.f);
  assert_verifies(t.f);
  ck_assert_tir(t.f,
                "kernel dce(%p: *i32) num_warps=4\n"
                "{\n"
                "  %0 = load %p : i32\n"
                "  %1 = const 0 : i32\n"
                "  %2 = const 3 : i32\n"
                "  %3 = const 1 : i32\n"
                "  %4 = for %5 = %1 to %2 step %3 iter(%6 = %0) : (i32) {\n"
                "    %7 = add %6, %5 : i32\n"
                "    yield %7\n"
                "  }\n"
                "  %8 = const 0 : i32\n"
                "  %9 = cmp gt %0, %8 : bool\n"
                "  if %9 {\n"
                "    store %p, %0\n"
                "    yield\n"
                "  }\n"
                "  store %p, %4\n"
                "}\n");
  tb_free(&t);
}
END_TEST

START_TEST(test_op_tables) {
  for (int i = 0; i < TIR_OP_COUNT; i++) {
    ck_assert_ptr_nonnull(tir_op_names[i]);
    ck_assert_int_ge(tir_op_nargs[i], -1);
  }
  ck_assert_str_eq(tir_op_names[TIR_PTR_ADD], "ptr_add");
  ck_assert_int_eq(tir_op_nargs[TIR_FMA], 3);
  ck_assert_int_eq(tir_op_rules[TIR_CMP], RULE_CMP);
  ck_assert_str_eq(tir_cmp_names[CMP_GE], "ge");
  ck_assert_str_eq(tir_redop_names[RED_ARGMIN], "argmin");
  StrBuf sb;
  sb_init(&sb);
  tir_type_str(&sb, ptrty(ty(DT_F16, 1, 64)));
  sb_puts(&sb, "|");
  tir_type_str(&sb, ty(DT_BF16, 2, 128, 64));
  sb_puts(&sb, "|");
  tir_type_str(&sb, ptrty(tir_scalar(DT_F32)));
  ck_assert_str_eq(sb.data, "[64] *f16|[128, 64] bf16|*f32");
  sb_free(&sb);
}
END_TEST

static Suite *tir_suite(void) {
  Suite *s = suite_create("tir");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_op_tables);
  tcase_add_test(tc, test_print_vadd);
  tcase_add_test(tc, test_print_loop);
  tcase_add_test(tc, test_print_if);
  tcase_add_test(tc, test_print_attrs);
  tcase_add_test(tc, test_format_double);
  tcase_add_test(tc, test_verify_wrong_types);
  tcase_add_test(tc, test_verify_use_before_def);
  tcase_add_test(tc, test_verify_bad_yield);
  tcase_add_test(tc, test_fold);
  tcase_add_test(tc, test_cse);
  tcase_add_test(tc, test_dce);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(tir_suite()); }
