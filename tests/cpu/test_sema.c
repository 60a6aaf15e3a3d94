/* test_sema.c: sema (type checking and lowering to tile IR).
 *
 * Three kinds of tests:
 *  1. Error files: every .tj file in tests/dsl/sema carries its expectations in
 *     comments, and the test checks that exactly those errors are reported:
 *       // expect-error: LINE:COL: message
 *       // expect-plain-error: message        (diag_plain: no position)
 *       // define: NAME=VALUE                  (a -D for this file)
 *       // kernel: NAME                        (SemaOptions.kernel)
 *     plus one golden rendered diagnostic, caret line included, byte for byte.
 *  2. Golden tile IR: tests/golden/NAME.tir is the printed IR of
 *     examples/NAME.tj compiled with the -D values of the example's usage
 *     line. Run with TJ_UPDATE_GOLDEN=1 to rewrite the goldens instead of
 *     comparing (then review the diff).
 *  3. Kernels run through the DSL on the interpreter over the whole grid and
 *     compared with plain C double references at a stated tolerance.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "dsl/tir.h"
#include "testutil.h"

// ---------------------------------------------------------------- pipeline

typedef struct Comp {
  Arena a;
  Diag d;
  TirFunc *f;
} Comp;

// Lex, parse and (when parsing succeeded) lower. defs are "NAME=VALUE".
static TirFunc *compile_src(Comp *c, const char *file, const char *src, const char *const *defs,
                            int nd, const char *kernel) {
  arena_init(&c->a);
  diag_init(&c->d);
  c->f = NULL;
  Define *dv = arena_alloc(&c->a, sizeof(Define) * (size_t)(nd + 1));
  for (int i = 0; i < nd; i++) {
    const char *eq = strchr(defs[i], '=');
    dv[i].name = eq ? arena_strndup(&c->a, defs[i], (size_t)(eq - defs[i])) : defs[i];
    dv[i].value = eq ? eq + 1 : "";
  }
  Token *t = lex_tokenize(&c->a, &c->d, file, src, strlen(src));
  Module *m = t ? parse_module(&c->a, &c->d, t) : NULL;
  if (!m || c->d.nerrors) return NULL;
  SemaOptions o = {kernel, dv, nd, 0};
  c->f = sema_lower(&c->a, &c->d, m, &o);
  // Release builds skip the per-pass verifier: the tests always verify.
  if (c->f && !tir_verify(c->f, &c->d)) c->f = NULL;
  return c->f;
}

static void comp_free(Comp *c) {
  diag_free(&c->d);
  arena_free(&c->a);
}

static const char *diag_text(Comp *c) { return c->d.text.data ? c->d.text.data : ""; }

static char *print_ir(const TirFunc *f) {
  StrBuf sb;
  sb_init(&sb);
  tir_print(&sb, f);
  return sb_steal(&sb);
}

// ---------------------------------------------------------------- 1. error files

#define MAX_FILES 64
static char *g_files[MAX_FILES];
static int g_nfiles;

static void list_error_files(void) {
  char *dir = tj_test_path("tests/dsl/sema");
  DIR *d = opendir(dir);
  free(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) && g_nfiles < MAX_FILES) {
    size_t n = strlen(e->d_name);
    if (n > 3 && !strcmp(e->d_name + n - 3, ".tj")) g_files[g_nfiles++] = strdup(e->d_name);
  }
  closedir(d);
  // Sorted, so loop indices name the same file on every run.
  for (int i = 0; i < g_nfiles; i++)
    for (int j = i + 1; j < g_nfiles; j++)
      if (strcmp(g_files[j], g_files[i]) < 0) {
        char *t = g_files[i];
        g_files[i] = g_files[j];
        g_files[j] = t;
      }
}

typedef struct Expect {
  char text[512];  // "L:C: message" or "-: message" for plain errors
  bool matched;
} Expect;

static void trim(char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
}

START_TEST(test_error_file) {
  ck_assert_msg(g_nfiles > 0, "no tests/dsl/sema/*.tj files found");
  const char *name = g_files[_i];
  char rel[256];
  snprintf(rel, sizeof rel, "tests/dsl/sema/%s", name);
  char *src = tj_test_read_file(rel, NULL);
  ck_assert_msg(src != NULL, "cannot read %s", rel);

  static Expect want[64];
  int nwant = 0;
  const char *defs[16];
  char defbuf[16][128];
  int nd = 0;
  char kernel[64] = "";
  for (const char *line = src; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char buf[600];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < 599 ? len : 599), line);
    const char *p;
    if ((p = strstr(buf, "// expect-error: ")) && nwant < 64) {
      snprintf(want[nwant].text, sizeof want[nwant].text, "%s", p + 17);
      trim(want[nwant].text);
      want[nwant++].matched = false;
    } else if ((p = strstr(buf, "// expect-plain-error: ")) && nwant < 64) {
      snprintf(want[nwant].text, sizeof want[nwant].text, "-: %s", p + 23);
      trim(want[nwant].text);
      want[nwant++].matched = false;
    } else if ((p = strstr(buf, "// define: ")) && nd < 16) {
      snprintf(defbuf[nd], sizeof defbuf[nd], "%s", p + 11);
      trim(defbuf[nd]);
      defs[nd] = defbuf[nd];
      nd++;
    } else if ((p = strstr(buf, "// kernel: "))) {
      snprintf(kernel, sizeof kernel, "%s", p + 11);
      trim(kernel);
    }
    line = end ? end + 1 : line + len;
  }
  ck_assert_msg(nwant > 0, "%s has no expect-error lines", name);

  Comp c;
  TirFunc *f = compile_src(&c, name, src, defs, nd, kernel[0] ? kernel : NULL);
  ck_assert_msg(f == NULL, "%s compiled without errors", name);

  // Match reported errors against the expectations (as a multiset).
  StrBuf bad;
  sb_init(&bad);
  const char *t = diag_text(&c);
  size_t flen = strlen(name);
  for (const char *line = t; *line;) {
    const char *end = strchr(line, '\n');
    size_t len = end ? (size_t)(end - line) : strlen(line);
    char buf[700], got[800];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < 699 ? len : 699), line);
    got[0] = 0;
    int l, col, off = 0;
    if (!strncmp(buf, "tilejit: error: ", 16)) {
      snprintf(got, sizeof got, "-: %s", buf + 16);
    } else if (!strncmp(buf, name, flen) && buf[flen] == ':' &&
               sscanf(buf + flen, ":%d:%d: error: %n", &l, &col, &off) == 2 && off > 0) {
      snprintf(got, sizeof got, "%d:%d: %s", l, col, buf + flen + off);
    }
    if (got[0]) {
      bool ok = false;
      for (int i = 0; i < nwant && !ok; i++)
        if (!want[i].matched && !strcmp(want[i].text, got)) ok = want[i].matched = true;
      if (!ok) sb_printf(&bad, "  unexpected: %s\n", got);
    }
    line = end ? end + 1 : line + len;
  }
  for (int i = 0; i < nwant; i++)
    if (!want[i].matched) sb_printf(&bad, "  missing:    %s\n", want[i].text);
  ck_assert_msg(bad.len == 0, "%s:\n%s--- full output:\n%s", name, bad.data, t);
  sb_free(&bad);
  comp_free(&c);
  free(src);
}
END_TEST

// The rendered form of two errors: an operator span and an argument span.
START_TEST(test_rendered_diagnostic) {
  const char *src =
      "kernel k(x: *f32) {\n"
      "    let a = arange(0, 128);\n"
      "    let b = arange(0, 64);\n"
      "    store(x + a, a + b);\n"
      "    let v = load(x + a, a * 2);\n"
      "}\n";
  const char *want =
      "golden.tj:4:20: error: cannot broadcast tile shapes [128] and [64]\n"
      "    4 |     store(x + a, a + b);\n"
      "      |                    ^\n"
      "golden.tj:5:25: error: load mask must be bool, got [128] i32\n"
      "    5 |     let v = load(x + a, a * 2);\n"
      "      |                         ^~~~~\n";
  Comp c;
  ck_assert_ptr_null(compile_src(&c, "golden.tj", src, NULL, 0, NULL));
  ck_assert_str_eq(diag_text(&c), want);
  comp_free(&c);
}
END_TEST

// ---------------------------------------------------------------- 2. golden IR

static const char *const examples[] = {
  "vector_add", "softmax", "softmax_online", "layernorm", "matmul", "broadcast2d", "dropout", "argmax",
};
enum { NEXAMPLES = sizeof examples / sizeof examples[0] };

// The -D arguments of the "// usage: ..." first line.
static int usage_defines(const char *src, char buf[][128], const char **defs, int max) {
  const char *end = strchr(src, '\n');
  size_t n = end ? (size_t)(end - src) : strlen(src);
  int nd = 0;
  for (const char *p = src; p < src + n && nd < max; p++) {
    if (strncmp(p, "-D ", 3) != 0) continue;
    p += 3;
    size_t k = 0;
    while (p < src + n && *p != ' ' && k < 127) buf[nd][k++] = *p++;
    buf[nd][k] = 0;
    defs[nd] = buf[nd];
    nd++;
  }
  return nd;
}

START_TEST(test_golden_ir) {
  const char *name = examples[_i];
  char path[256];
  snprintf(path, sizeof path, "examples/%s.tj", name);
  char *src = tj_test_read_file(path, NULL);
  ck_assert_msg(src != NULL, "cannot read %s", path);
  ck_assert_msg(!strncmp(src, "// usage: tilejit compile ", 26), "%s lacks its usage line", path);
  char buf[16][128];
  const char *defs[16];
  int nd = usage_defines(src, buf, defs, 16);
  Comp c;
  TirFunc *f = compile_src(&c, path, src, defs, nd, NULL);
  ck_assert_msg(f != NULL, "%s failed:\n%s", path, diag_text(&c));
  char *ir = print_ir(f);
  char gpath[256];
  snprintf(gpath, sizeof gpath, "tests/golden/%s.tir", name);
  const char *upd = getenv("TJ_UPDATE_GOLDEN");
  if (upd && !strcmp(upd, "1")) {
    char *abs = tj_test_path(gpath);
    FILE *fp = fopen(abs, "wb");
    ck_assert_msg(fp != NULL, "cannot write %s", abs);
    fputs(ir, fp);
    fclose(fp);
    free(abs);
  } else {
    char *golden = tj_test_read_file(gpath, NULL);
    ck_assert_msg(golden != NULL, "missing %s (run with TJ_UPDATE_GOLDEN=1 to create it)", gpath);
    ck_assert_msg(!strcmp(golden, ir), "%s differs from the printed IR:\n%s", gpath, ir);
    free(golden);
  }
  free(ir);
  comp_free(&c);
  free(src);
}
END_TEST

// ---------------------------------------------------------------- lowering details

static TirFunc *compile_ok(Comp *c, const char *src, const char *const *defs, int nd) {
  TirFunc *f = compile_src(c, "t.tj", src, defs, nd, NULL);
  ck_assert_msg(f != NULL, "compile failed:\n%s", diag_text(c));
  return f;
}

// Each fn inlining re-walks the body's expression: 32 levels of a 1000-link
// chain overflowed the C stack (found by fuzzing). sema bounds the walk in
// total; ordinary inlining depth stays legal.
START_TEST(test_eval_depth_limit) {
  StrBuf sb;
  sb_init(&sb);
  sb_puts(&sb, "fn f(x) {\n    return f(x)");
  for (int i = 0; i < 999; i++) sb_puts(&sb, " + x");
  sb_puts(&sb, ";\n}\nkernel k(y: *f32, n: i32) {\n    store(y, f(n));\n}\n");
  Comp c;
  ck_assert_ptr_null(compile_src(&c, "deep.tj", sb.data, NULL, 0, NULL));
  ck_assert_msg(strstr(diag_text(&c), "deep.tj:2:17: error: expression nested too deeply (more than 2000 "
                                      "levels, counting inlined fn calls)") != NULL,
                "%.600s", diag_text(&c));
  ck_assert_int_eq(c.d.nerrors, 1);
  comp_free(&c);
  sb_free(&sb);

  // 31 inlinings of a 50-link chain: deep but legal.
  sb_init(&sb);
  sb_puts(&sb, "fn g0(x) { return x; }\n");
  for (int d = 1; d < 31; d++) {
    sb_printf(&sb, "fn g%d(x) { return g%d(x)", d, d - 1);
    for (int i = 0; i < 50; i++) sb_puts(&sb, " + 1");
    sb_puts(&sb, "; }\n");
  }
  sb_puts(&sb, "kernel k(y: *i32, n: i32) { store(y, g30(n)); }\n");
  TirFunc *f = compile_src(&c, "ok.tj", sb.data, NULL, 0, NULL);
  ck_assert_msg(f != NULL, "%.600s", diag_text(&c));
  comp_free(&c);
  sb_free(&sb);
}
END_TEST

// Folding -x and abs(x) of INT64_MIN negated a signed int64 in C, undefined
// behaviour that UBSan aborts on (found by fuzzing). They wrap like the IR.
START_TEST(test_fold_int64_min) {
  const char *src =
      "kernel k(o: *i64, q: *i64) {\n"
      "    store(o, abs(-9223372036854775807 - 1));\n"
      "    store(o + 1, -(-9223372036854775807 - 1));\n"
      "    store(o + 2, abs(cast(-9223372036854775807 - 1, i64)));\n"
      "    store(q - (-9223372036854775807 - 1), 1);\n"
      "}\n";
  Comp c;
  TirFunc *f = compile_src(&c, "min.tj", src, NULL, 0, NULL);
  ck_assert_msg(f != NULL, "%s", diag_text(&c));
  char *ir = print_ir(f);
  // CSE leaves one constant, used by the three stores and the pointer offset.
  ck_assert_msg(strstr(ir, "%0 = const -9223372036854775808 : i64\n  store %o, %0\n") != NULL, "%s", ir);
  ck_assert_msg(strstr(ir, "ptr_add %q, %0 : *i64") != NULL, "%s", ir);
  int n = 0;
  for (const char *p = ir; (p = strstr(p, "const -9223372036854775808")); p++) n++;
  ck_assert_int_eq(n, 1);
  free(ir);
  comp_free(&c);
}
END_TEST

// dtype constants compare with == and != at compile time (a kernel
// specialised per dtype); ordering them is an error with a caret.
START_TEST(test_dtype_compare) {
  const char *src =
      "kernel k(o: *f32, const T: dtype) {\n"
      "    if T == bf16 {\n"
      "        store(o, 1.0);\n"
      "    } else if T != f32 {\n"
      "        store(o, 2.0);\n"
      "    }\n"
      "}\n";
  const struct { const char *def, *want; } cases[] = {
    { "T=bf16", "const 1.0 : f32" }, { "T=f16", "const 2.0 : f32" }, { "T=f32", NULL },
  };
  for (int i = 0; i < 3; i++) {
    Comp c;
    const char *defs[1] = { cases[i].def };
    TirFunc *f = compile_ok(&c, src, defs, 1);
    char *ir = print_ir(f);
    if (cases[i].want) ck_assert_msg(strstr(ir, cases[i].want) != NULL, "%s: %s", cases[i].def, ir);
    else ck_assert_msg(strstr(ir, "store") == NULL, "%s: %s", cases[i].def, ir);
    free(ir);
    comp_free(&c);
  }
  Comp c;
  const char *defs[1] = { "T=f16" };
  ck_assert_ptr_null(compile_src(&c, "cmp.tj", "kernel k(o: *f32, const T: dtype) {\n    if T < bf16 { store(o, 1.0); }\n}\n",
                                 defs, 1, NULL));
  ck_assert_msg(strstr(diag_text(&c), "cmp.tj:2:10: error: operator '<' cannot be applied to dtype") != NULL, "%s",
                diag_text(&c));
  comp_free(&c);
}
END_TEST

START_TEST(test_constants_and_tunables) {
  const char *src =
      "kernel k(x: *T, n: i32, const T: dtype, const EPS: f32 = 1e-5, const OFF: i64 = -3,\n"
      "         const FLAG: bool = false, const B: i32 = 64) {\n"
      "    tunable num_warps in {2, 4, 8};\n"
      "    tunable W in {16, 32};\n"
      "    static_assert(B * 2 == 128 || B != 64, \"folding\");\n"
      "    let offs = arange(0, B * 2);\n"
      "    if FLAG { store(x + offs, 1.0); } else { store(x + offs, EPS); }\n"
      "}\n";
  const char *defs[] = {"T=bf16", "B=0x40", "EPS=1e-5", "W=32", "num_warps=8"};
  Comp c;
  TirFunc *f = compile_ok(&c, src, defs, 5);
  ck_assert_int_eq(f->num_warps, 8);
  ck_assert_int_eq(f->nparams, 2);
  ck_assert(f->params[0].ptr && f->params[0].dtype == DT_BF16);
  ck_assert_int_eq(f->nconsts, 7);
  const char *names[] = {"T", "EPS", "OFF", "FLAG", "B", "num_warps", "W"};
  const char *texts[] = {"bf16", "1e-05", "-3", "false", "64", "8", "32"};
  for (int i = 0; i < 7; i++) {
    ck_assert_str_eq(f->consts[i].name, names[i]);
    ck_assert_str_eq(f->consts[i].text, texts[i]);
  }
  ck_assert_int_eq(f->ntunables, 2);
  ck_assert_int_eq(f->tunables[1].nvalues, 2);
  char *ir = print_ir(f);
  // Static if: only the else branch, and arange(0, B*2) folded to 128.
  ck_assert_msg(strstr(ir, "arange 0, 128") && !strstr(ir, " if ") && strstr(ir, "bf16"), "%s", ir);
  free(ir);
  comp_free(&c);

  // Without -D num_warps the first tunable value applies; the option wins.
  const char *defs2[] = {"T=f32"};
  f = compile_ok(&c, src, defs2, 1);
  ck_assert_int_eq(f->num_warps, 2);
  comp_free(&c);
}
END_TEST

START_TEST(test_loop_carried_types) {
  const char *src =
      "fn twice(v) { let t = v * 2; return t; }\n"
      "kernel k(out: *f32, n: i32, big: i64) {\n"
      "    var acc = zeros([16], f32);\n"
      "    var s = 0;\n"
      "    for i in range(n) { acc += 1; s = s + i; }\n"
      "    for j in range(0, big, 2) { s += 1; }\n"
      "    if n > 3 { acc = twice(acc); }\n"
      "    store(out + arange(0, 16), acc + s + sum(zeros([4, 8], f32), axis=None));\n"
      "}\n";
  Comp c;
  TirFunc *f = compile_ok(&c, src, NULL, 0);
  char *ir = print_ir(f);
  // axis=None flattens, then reduces once to a scalar.
  ck_assert_msg(strstr(ir, "reshape") || strstr(ir, ": [32] f32"), "%s", ir);
  ck_assert_msg(strstr(ir, "iter(") && strstr(ir, ": ([16] f32, i32)"), "%s", ir);
  ck_assert_msg(strstr(ir, "for %") && strstr(ir, "= if %"), "%s", ir);
  // The second loop has an i64 induction variable (big is i64) and carries s.
  ck_assert_msg(strstr(ir, ": i64") != NULL, "%s", ir);
  free(ir);
  comp_free(&c);
}
END_TEST

// ---------------------------------------------------------------- 3. interpreter

static TirFunc *compile_example(Comp *c, const char *name, const char *const *defs, int nd) {
  char path[256];
  snprintf(path, sizeof path, "examples/%s.tj", name);
  char *src = tj_test_read_file(path, NULL);
  ck_assert_msg(src != NULL, "cannot read %s", path);
  TirFunc *f = compile_src(c, path, src, defs, nd, NULL);
  ck_assert_msg(f != NULL, "%s failed:\n%s", path, diag_text(c));
  free(src);  // the arena keeps its own copy of everything sema needs
  return f;
}

static void run(Comp *c, TirFunc *f, unsigned gx, unsigned gy, const tj_arg *args, int nargs) {
  unsigned grid[3] = {gx, gy, 1};
  Diag d;
  diag_init(&d);
  tj_status st = interp_run(f, grid, args, nargs, &d);
  ck_assert_msg(st == TJ_OK, "interp_run: %d\n%s", (int)st, d.text.data ? d.text.data : "");
  diag_free(&d);
  (void)c;
}

// Deterministic inputs in [-1, 1).
static double rnd(unsigned *state) {
  *state = *state * 1664525u + 1013904223u;
  return (double)(*state >> 8) / (double)(1u << 24) * 2.0 - 1.0;
}

static double max_rel_f(const float *got, const double *want, size_t n, double floor) {
  double *g = malloc(n * sizeof *g);
  for (size_t i = 0; i < n; i++) g[i] = got[i];
  double e = tj_test_max_rel_err(g, want, n, floor);
  free(g);
  return e;
}

START_TEST(test_interp_vector_add) {
  const char *defs[] = {"BLOCK=256"};
  Comp c;
  TirFunc *f = compile_example(&c, "vector_add", defs, 1);
  enum { N = 1000 };  // not a multiple of 256: the tail is masked
  float *x = malloc(N * 4), *y = malloc(N * 4), *z = malloc(N * 4);
  double *want = malloc(N * sizeof(double));
  unsigned st = 1;
  for (int i = 0; i < N; i++) {
    x[i] = (float)rnd(&st);
    y[i] = (float)rnd(&st);
    z[i] = -7;
    want[i] = (double)x[i] + (double)y[i];
  }
  tj_arg args[] = {tj_arg_ptr(z, N * 4), tj_arg_ptr(x, N * 4), tj_arg_ptr(y, N * 4), tj_arg_int(N)};
  run(&c, f, (N + 255) / 256, 1, args, 4);
  // One f32 rounding of an exact sum: within 2^-24 relative.
  ck_assert_double_le(max_rel_f(z, want, N, 1e-6), 1e-7);
  free(x), free(y), free(z), free(want);
  comp_free(&c);
}
END_TEST

static void softmax_ref(const double *x, int n, double *out) {
  double m = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) m = fmax(m, x[i]);
  for (int i = 0; i < n; i++) s += exp(x[i] - m);
  for (int i = 0; i < n; i++) out[i] = exp(x[i] - m) / s;
}

START_TEST(test_interp_softmax_f32_f16) {
  enum { ROWS = 5, N = 1000, STRIDE = 1003 };
  for (int half = 0; half < 2; half++) {
    const char *defs[] = {half ? "T=f16" : "T=f32", "BLOCK=1024"};
    Comp c;
    TirFunc *f = compile_example(&c, "softmax", defs, 2);
    size_t es = half ? 2 : 4, nb = (size_t)ROWS * STRIDE * es;
    unsigned char *x = calloc(1, nb), *y = calloc(1, nb);
    double *xin = malloc(sizeof(double) * N), *want = malloc(sizeof(double) * ROWS * N);
    double *got = malloc(sizeof(double) * ROWS * N);
    unsigned st = 7;
    for (int r = 0; r < ROWS; r++) {
      for (int i = 0; i < N; i++) {
        float v = (float)(3.0 * rnd(&st));
        size_t k = (size_t)r * STRIDE + (size_t)i;
        if (half) {
          uint16_t h = f32_to_f16(v);
          memcpy(x + k * 2, &h, 2);
          xin[i] = f16_to_f32(h);
        } else {
          memcpy(x + k * 4, &v, 4);
          xin[i] = v;
        }
      }
      softmax_ref(xin, N, want + (size_t)r * N);
    }
    tj_arg args[] = {tj_arg_ptr(y, nb), tj_arg_ptr(x, nb), tj_arg_int(STRIDE), tj_arg_int(N)};
    run(&c, f, ROWS, 1, args, 4);
    for (int r = 0; r < ROWS; r++)
      for (int i = 0; i < N; i++) {
        size_t k = (size_t)r * STRIDE + (size_t)i;
        if (half) {
          uint16_t h;
          memcpy(&h, y + k * 2, 2);
          got[r * N + i] = f16_to_f32(h);
        } else {
          float v;
          memcpy(&v, y + k * 4, 4);
          got[r * N + i] = v;
        }
      }
    // f32: a few ulps through exp and the sum; f16: one f16 rounding of the
    // result (2^-11), relative to values of at least 1e-4.
    double tol = half ? 1e-3 : 1e-5;
    double err = tj_test_max_rel_err(got, want, (size_t)ROWS * N, half ? 1e-4 : 1e-7);
    ck_assert_msg(err <= tol, "%s softmax rel err %g > %g", half ? "f16" : "f32", err, tol);
    free(x), free(y), free(xin), free(want), free(got);
    comp_free(&c);
  }
}
END_TEST

START_TEST(test_interp_softmax_online) {
  enum { ROWS = 3, N = 1000, STRIDE = 1000 };  // 3 full chunks of 256 and a partial one
  const char *defs[] = {"BLOCK=256"};
  Comp c;
  TirFunc *f = compile_example(&c, "softmax_online", defs, 1);
  float *x = malloc(sizeof(float) * ROWS * STRIDE), *y = malloc(sizeof(float) * ROWS * STRIDE);
  double *xin = malloc(sizeof(double) * N), *want = malloc(sizeof(double) * ROWS * N);
  unsigned st = 11;
  for (int r = 0; r < ROWS; r++) {
    for (int i = 0; i < N; i++) {
      // A rising trend makes the running max grow chunk by chunk.
      x[r * STRIDE + i] = (float)(4.0 * rnd(&st) + i * 0.01);
      xin[i] = x[r * STRIDE + i];
    }
    softmax_ref(xin, N, want + r * N);
  }
  size_t nb = sizeof(float) * ROWS * STRIDE;
  tj_arg args[] = {tj_arg_ptr(y, nb), tj_arg_ptr(x, nb), tj_arg_int(STRIDE), tj_arg_int(N)};
  run(&c, f, ROWS, 1, args, 4);
  double err = max_rel_f(y, want, (size_t)ROWS * N, 1e-7);
  ck_assert_msg(err <= 1e-5, "online softmax rel err %g", err);
  free(x), free(y), free(xin), free(want);
  comp_free(&c);
}
END_TEST

START_TEST(test_interp_layernorm) {
  enum { ROWS = 4, N = 777, STRIDE = 800 };
  const char *defs[] = {"BLOCK=1024"};
  Comp c;
  TirFunc *f = compile_example(&c, "layernorm", defs, 1);
  float *x = calloc(ROWS * STRIDE, 4), *y = calloc(ROWS * STRIDE, 4), *w = malloc(N * 4),
        *b = malloc(N * 4), mean[ROWS], rstd[ROWS];
  double *want = calloc(ROWS * STRIDE, sizeof(double)), wmean[ROWS], wrstd[ROWS];
  unsigned st = 3;
  for (int i = 0; i < N; i++) {
    w[i] = (float)(1.0 + 0.5 * rnd(&st));
    b[i] = (float)(0.1 * rnd(&st));
  }
  const double eps = 1e-5;
  for (int r = 0; r < ROWS; r++) {
    double s = 0, q = 0;
    for (int i = 0; i < N; i++) {
      x[r * STRIDE + i] = (float)(2.0 * rnd(&st) + r);
      s += x[r * STRIDE + i];
    }
    wmean[r] = s / N;
    for (int i = 0; i < N; i++) q += (x[r * STRIDE + i] - wmean[r]) * (x[r * STRIDE + i] - wmean[r]);
    wrstd[r] = 1.0 / sqrt(q / N + (double)(float)eps);
    for (int i = 0; i < N; i++)
      want[r * STRIDE + i] = (x[r * STRIDE + i] - wmean[r]) * wrstd[r] * w[i] + b[i];
  }
  size_t nb = (size_t)ROWS * STRIDE * 4;
  tj_arg args[] = {tj_arg_ptr(y, nb), tj_arg_ptr(x, nb), tj_arg_ptr(w, N * 4), tj_arg_ptr(b, N * 4),
                   tj_arg_ptr(mean, sizeof mean), tj_arg_ptr(rstd, sizeof rstd),
                   tj_arg_int(STRIDE), tj_arg_int(N), tj_arg_float(eps)};
  run(&c, f, ROWS, 1, args, 9);
  // f32 sums of ~800 terms: 1e-5 relative, against values of order 1.
  double err = max_rel_f(y, want, (size_t)ROWS * STRIDE, 1e-1);
  ck_assert_msg(err <= 1e-4, "layernorm y rel err %g", err);
  ck_assert_double_le(max_rel_f(mean, wmean, ROWS, 1e-1), 1e-5);
  ck_assert_double_le(max_rel_f(rstd, wrstd, ROWS, 1e-1), 1e-5);
  free(x), free(y), free(w), free(b), free(want);
  comp_free(&c);
}
END_TEST

START_TEST(test_interp_matmul) {
  enum { M = 100, N = 70, K = 50 };
  for (int half = 0; half < 2; half++) {
    const char *defs[] = {half ? "T=f16" : "T=f32", "BLOCK_M=32", "BLOCK_N=32", "BLOCK_K=16"};
    Comp c;
    TirFunc *f = compile_example(&c, "matmul", defs, 4);
    size_t es = half ? 2 : 4;
    unsigned char *a = malloc(M * K * es), *b = malloc(K * N * es);
    double *ad = malloc(sizeof(double) * M * K), *bd = malloc(sizeof(double) * K * N);
    float *cm = malloc(sizeof(float) * M * N);
    double *want = malloc(sizeof(double) * M * N);
    unsigned st = 5;
    for (int i = 0; i < M * K + K * N; i++) {
      float v = (float)rnd(&st);
      bool in_a = i < M * K;
      int k = in_a ? i : i - M * K;
      unsigned char *dst = in_a ? a : b;
      double *dd = in_a ? ad : bd;
      if (half) {
        uint16_t h = f32_to_f16(v);
        memcpy(dst + k * 2, &h, 2);
        dd[k] = f16_to_f32(h);
      } else {
        memcpy(dst + k * 4, &v, 4);
        dd[k] = v;
      }
    }
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += ad[i * K + k] * bd[k * N + j];
        want[i * N + j] = s;
      }
    // Exact buffer sizes: a masked-off lane touching memory would fail the
    // interpreter's bounds check.
    tj_arg args[] = {tj_arg_ptr(cm, sizeof(float) * M * N), tj_arg_ptr(a, M * K * es),
                     tj_arg_ptr(b, K * N * es), tj_arg_int(M), tj_arg_int(N), tj_arg_int(K),
                     tj_arg_int(K), tj_arg_int(N), tj_arg_int(N)};
    run(&c, f, (M + 31) / 32, (N + 31) / 32, args, 9);
    // f32 accumulation of 50 products of magnitude <= 1: 1e-5 of the scale 1.
    double err = max_rel_f(cm, want, M * N, 1.0);
    ck_assert_msg(err <= 1e-5, "%s matmul err %g", half ? "f16" : "f32", err);
    free(a), free(b), free(ad), free(bd), free(cm), free(want);
    comp_free(&c);
  }
}
END_TEST

START_TEST(test_interp_broadcast2d) {
  enum { M = 50, N = 40 };
  const char *defs[] = {"BM=32", "BN=16"};
  Comp c;
  TirFunc *f = compile_example(&c, "broadcast2d", defs, 2);
  float x[M], y[N], b[N], *out = malloc(sizeof(float) * M * N);
  double *want = malloc(sizeof(double) * M * N);
  unsigned st = 9;
  for (int i = 0; i < M; i++) x[i] = (float)rnd(&st);
  for (int j = 0; j < N; j++) y[j] = (float)rnd(&st), b[j] = (float)rnd(&st);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) want[i * N + j] = (double)x[i] * y[j] + b[j];
  tj_arg args[] = {tj_arg_ptr(out, sizeof(float) * M * N), tj_arg_ptr(x, sizeof x),
                   tj_arg_ptr(y, sizeof y), tj_arg_ptr(b, sizeof b), tj_arg_int(M), tj_arg_int(N)};
  run(&c, f, (M + 31) / 32, (N + 15) / 16, args, 6);
  // Two f32 roundings (mul, add) of values of order 1.
  ck_assert_double_le(max_rel_f(out, want, M * N, 1.0), 2.5e-7);
  free(out), free(want);
  comp_free(&c);
}
END_TEST

START_TEST(test_interp_argmax) {
  enum { ROWS = 4, N = 300, STRIDE = 301 };
  const char *defs[] = {"BLOCK=512"};
  Comp c;
  TirFunc *f = compile_example(&c, "argmax", defs, 1);
  float x[ROWS * STRIDE], vmax[ROWS];
  int32_t idx[ROWS];
  unsigned st = 13;
  for (int i = 0; i < ROWS * STRIDE; i++) x[i] = (float)rnd(&st);
  // Ties: the first index wins.
  x[0 * STRIDE + 17] = 5, x[0 * STRIDE + 200] = 5;
  x[1 * STRIDE + 299] = 9;             // the last element
  x[2 * STRIDE + 0] = 3, x[2 * STRIDE + 1] = 3;
  x[3 * STRIDE + 300] = 100;           // past n (row padding): must be ignored
  tj_arg args[] = {tj_arg_ptr(idx, sizeof idx), tj_arg_ptr(vmax, sizeof vmax), tj_arg_ptr(x, sizeof x),
                   tj_arg_int(STRIDE), tj_arg_int(N)};
  run(&c, f, ROWS, 1, args, 5);
  for (int r = 0; r < ROWS; r++) {
    int bi = 0;
    for (int i = 1; i < N; i++)
      if (x[r * STRIDE + i] > x[r * STRIDE + bi]) bi = i;
    ck_assert_int_eq(idx[r], bi);
    ck_assert_float_eq(vmax[r], x[r * STRIDE + bi]);
  }
  ck_assert_int_eq(idx[0], 17);
  ck_assert_int_eq(idx[1], 299);
  ck_assert_int_eq(idx[2], 0);
  comp_free(&c);
}
END_TEST

// Philox-4x32-10 as Random123 defines it, for the reference of rand().
static uint32_t philox_ref(uint64_t seed, uint64_t ctr, int lane) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; r++) {
    if (r) k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
    uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1, c3 = (uint32_t)p0, c0 = n0, c2 = n2;
  }
  uint32_t o[4] = {c0, c1, c2, c3};
  return o[lane & 3];
}

static void dropout_run(Comp *c, TirFunc *f, int64_t seed, float *y, const float *x, const float *bias,
                        int n, int ncols, float p) {
  tj_arg args[] = {tj_arg_ptr(y, (size_t)n * 4), tj_arg_ptr((void *)x, (size_t)n * 4),
                   tj_arg_ptr((void *)bias, (size_t)ncols * 4), tj_arg_int(n), tj_arg_int(ncols),
                   tj_arg_float(p), tj_arg_int(seed)};
  run(c, f, (unsigned)((n + 255) / 256), 1, args, 7);
}

START_TEST(test_interp_dropout) {
  enum { N = 3000, NCOLS = 100 };
  const char *defs[] = {"BLOCK=256"};
  Comp c;
  TirFunc *f = compile_example(&c, "dropout", defs, 1);
  float *x = malloc(N * 4), bias[NCOLS], *y1 = malloc(N * 4), *y2 = malloc(N * 4), *y3 = malloc(N * 4);
  double *want = malloc(N * sizeof(double));
  unsigned st = 21;
  for (int i = 0; i < N; i++) x[i] = (float)(1.0 + rnd(&st));  // gelu > 0: dropped == exactly 0
  for (int j = 0; j < NCOLS; j++) bias[j] = (float)(0.5 + 0.25 * rnd(&st));
  const float p = 0.3f;
  const int64_t seed = 0x123456789abLL;
  dropout_run(&c, f, seed, y1, x, bias, N, NCOLS, p);
  dropout_run(&c, f, seed, y2, x, bias, N, NCOLS, p);
  dropout_run(&c, f, seed + 1, y3, x, bias, N, NCOLS, p);
  int kept = 0, same_other = 0;
  for (int i = 0; i < N; i++) {
    double u = (double)(philox_ref((uint64_t)seed, (uint64_t)i, 0) >> 8) * ldexp(1.0, -24);
    double v = (double)x[i] + bias[i % NCOLS];
    double g = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    want[i] = u >= p ? g / (1.0 - p) : 0.0;
    kept += u >= p;
    ck_assert_msg((y1[i] != 0) == (u >= p), "element %d: mask differs from the philox reference", i);
    ck_assert_msg(memcmp(&y1[i], &y2[i], 4) == 0, "element %d differs between equal seeds", i);
    same_other += (y1[i] != 0) == (y3[i] != 0);
  }
  // gelu via erf in f32: a few ulps.
  ck_assert_double_le(max_rel_f(y1, want, N, 1e-3), 2e-6);
  ck_assert_msg(kept > N * 0.65 && kept < N * 0.75, "kept %d of %d at p=0.3", kept, N);
  ck_assert_msg(same_other < N * 0.7, "another seed gives nearly the same mask (%d/%d)", same_other, N);
  free(x), free(y1), free(y2), free(y3), free(want);
  comp_free(&c);
}
END_TEST

// Runtime if inside a loop, a scalar and a tile carried through both.
START_TEST(test_interp_if_in_loop) {
  const char *src =
      "kernel k(out: *i32, n: i32) {\n"
      "    var acc = 0;\n"
      "    var t = zeros([16], i32);\n"
      "    for i in range(0, n) {\n"
      "        if i % 2 == 0 { acc += i; } else { t = t + 1; }\n"
      "    }\n"
      "    store(out + arange(0, 16), t + acc);\n"
      "}\n";
  Comp c;
  TirFunc *f = compile_ok(&c, src, NULL, 0);
  int32_t out[16];
  tj_arg args[] = {tj_arg_ptr(out, sizeof out), tj_arg_int(11)};
  run(&c, f, 1, 1, args, 2);
  // i = 0..10: even sum 30, 5 odd values.
  for (int i = 0; i < 16; i++) ck_assert_int_eq(out[i], 35);
  comp_free(&c);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("sema");
  list_error_files();
  TCase *tc = tcase_create("errors");
  tcase_add_loop_test(tc, test_error_file, 0, g_nfiles > 0 ? g_nfiles : 1);
  tcase_add_test(tc, test_rendered_diagnostic);
  suite_add_tcase(s, tc);
  tc = tcase_create("golden");
  tcase_add_loop_test(tc, test_golden_ir, 0, NEXAMPLES);
  tcase_add_test(tc, test_constants_and_tunables);
  tcase_add_test(tc, test_dtype_compare);
  tcase_add_test(tc, test_eval_depth_limit);
  tcase_add_test(tc, test_fold_int64_min);
  tcase_add_test(tc, test_loop_carried_types);
  suite_add_tcase(s, tc);
  tc = tcase_create("interp");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_interp_vector_add);
  tcase_add_test(tc, test_interp_softmax_f32_f16);
  tcase_add_test(tc, test_interp_softmax_online);
  tcase_add_test(tc, test_interp_layernorm);
  tcase_add_test(tc, test_interp_matmul);
  tcase_add_test(tc, test_interp_broadcast2d);
  tcase_add_test(tc, test_interp_argmax);
  tcase_add_test(tc, test_interp_dropout);
  tcase_add_test(tc, test_interp_if_in_loop);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
