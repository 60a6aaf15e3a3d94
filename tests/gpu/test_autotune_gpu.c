/* test_autotune_gpu: tunes the DSL softmax (tests/dsl/kernels/
 * softmax_tunable.tj, f16, 4096 x 4096) through the public API only.
 *
 * - The space: BLOCK {1024..8192} x num_warps {2,4,8,16}, pruned to blocks
 *   that hold a whole row: 8 configurations, at least 6 must be usable.
 * - Tuning must not touch the caller's output buffer (scratch copies).
 * - The launched result matches a double-precision softmax (f16 output:
 *   |err| <= 2e-3 |want| + 1e-7, half an f16 ulp plus f32 rounding, with
 *   room for subnormal outputs).
 * - Re-measuring every configuration (3 rounds of 100 timed runs, best
 *   median per configuration), the chosen one is within 5% of the fastest.
 * - A fresh context and tuner in this process, and a second process
 *   (this binary run with --reuse), use the stored result: zero timing
 *   launches, one disk hit.
 * The compile and tuning caches live in a temporary directory, so the first
 * phase always benchmarks. Exits 77 (skipped) without a GPU.
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "tilejit/autotune.h"

#define ROWS 4096
#define COLS 4096
#define F16_REL 2e-3
#define F16_ABS 1e-7

static char g_dir[256];   // the temporary cache directory (set in main)

// ---------------------------------------------------------------- f16 on the host

static uint16_t to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x47800000u) return (uint16_t)(sign | 0x7c00u);  // overflow (no NaN inputs here)
  if (absx < 0x38800000u) {                                    // subnormal or zero
    float a;
    memcpy(&a, &absx, 4);
    uint32_t m = (uint32_t)lrintf(a * 16777216.0f);            // units of 2^-24, round to even
    return (uint16_t)(sign | m);
  }
  uint32_t h = sign | (((absx >> 23) - 112) << 10) | ((absx >> 13) & 0x3ffu);
  uint32_t rest = absx & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
  return (uint16_t)h;
}

static double from_f16(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? INFINITY : ldexp(1024 + m, e - 25);
  return h & 0x8000 ? -v : v;
}

// ---------------------------------------------------------------- fixture

typedef struct Data {
  tj_ctx *ctx;
  void *x, *y;
  uint16_t *hx;     // host input
  size_t bytes;
} Data;

// In the second process there is no Check runner, and any ck_* call, even
// a passing one, makes Check exit(2): report and exit instead.
static int g_child;
#define REQUIRE(cond)                                                             \
  do {                                                                            \
    if (g_child) {                                                                \
      if (!(cond)) {                                                              \
        fprintf(stderr, "reuse: %s:%d: %s failed\n", __FILE__, __LINE__, #cond);   \
        exit(3);                                                                  \
      }                                                                           \
    } else {                                                                      \
      ck_assert(cond);                                                            \
    }                                                                             \
  } while (0)
#define DATA_OK(call)                                                             \
  do {                                                                            \
    tj_status st_ = (call);                                                       \
    if (g_child && st_ != TJ_OK) {                                                \
      fprintf(stderr, "reuse: %s: %s\n", #call, tj_status_str(st_));          \
      exit(3);                                                                    \
    }                                                                             \
    if (!g_child) ck_assert_int_eq(st_, TJ_OK);                                   \
  } while (0)

static void data_init(Data *d, tj_ctx *ctx) {
  d->ctx = ctx;
  d->bytes = (size_t)ROWS * COLS * 2;
  d->hx = malloc(d->bytes);
  REQUIRE(d->hx != NULL);
  uint64_t s = 12345;
  for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    d->hx[i] = to_f16((float)((double)(s >> 40) / (double)(1ull << 24) * 8.0 - 4.0));
  }
  DATA_OK(tj_device_malloc(ctx, d->bytes, &d->x));
  DATA_OK(tj_device_malloc(ctx, d->bytes, &d->y));
  DATA_OK(tj_memcpy_htod(ctx, d->x, d->hx, d->bytes));
  DATA_OK(tj_memset_d8(ctx, d->y, 0, d->bytes));
}

static void data_free(Data *d) {
  tj_device_free(d->ctx, d->x);
  tj_device_free(d->ctx, d->y);
  free(d->hx);
}

static void make_args(const Data *d, tj_arg args[4]) {
  args[0] = tj_arg_ptr(d->y, d->bytes);
  args[1] = tj_arg_ptr(d->x, d->bytes);
  args[2] = tj_arg_int(COLS);
  args[3] = tj_arg_int(COLS);
}

// Checks every `step`-th row of y against a double softmax; returns the
// worst error relative to the tolerance (<= 1 passes).
static double check_softmax(const Data *d, int step) {
  uint16_t *hy = malloc(d->bytes);
  REQUIRE(hy != NULL);
  DATA_OK(tj_memcpy_dtoh(d->ctx, hy, d->y, d->bytes));
  double worst = 0;
  double *e = malloc(sizeof *e * COLS);
  for (int r = 0; r < ROWS; r += step) {
    const uint16_t *xr = d->hx + (size_t)r * COLS;
    double mx = -INFINITY, sum = 0;
    for (int c = 0; c < COLS; c++) mx = fmax(mx, from_f16(xr[c]));
    for (int c = 0; c < COLS; c++) sum += e[c] = exp(from_f16(xr[c]) - mx);
    for (int c = 0; c < COLS; c++) {
      double want = e[c] / sum, got = from_f16(hy[(size_t)r * COLS + c]);
      double q = fabs(got - want) / (F16_REL * fabs(want) + F16_ABS);
      if (!(q <= worst)) worst = isnan(q) ? INFINITY : q;
    }
  }
  free(e);
  free(hy);
  return worst;
}

static int keep_whole_rows(const tj_tuner *t, const tj_tune_config *c, const int64_t *sizes, int nkey, void *user) {
  (void)user, (void)nkey;
  int64_t block = 0;
  tj_tuner_config_value(t, c, "BLOCK", &block);
  return block >= sizes[0];
}

// Under compute-sanitizer (tools/gpu_sanitize.sh sets TJ_TEST_SANITIZER)
// kernels run 10-100x slower and timings mean nothing: the tuner and the
// re-measurement take a few runs each, and the 5% check is left out.
static bool under_sanitizer(void) { return getenv("TJ_TEST_SANITIZER") != NULL; }
static int bench_warmup(void) { return under_sanitizer() ? 1 : 5; }
static int bench_reps(void) { return under_sanitizer() ? 2 : 50; }

static tj_tuner *make_tuner(tj_ctx *ctx) {
  char *path = tj_test_path("tests/dsl/kernels/softmax_tunable.tj");
  const char *defs[] = { "T=f16" };
  tj_compile_opts o = { .path = path, .defines = defs, .ndefines = 1 };
  const char *keys[] = { "n" };
  tj_tuner *t = NULL;
  tj_status st = tj_tuner_create(ctx, &o, keys, 1, &t);
  free(path);
  if (st != TJ_OK) return NULL;
  tj_tuner_set_prune(t, keep_whole_rows, NULL);
  tj_tuner_set_written(t, 1u << 0);   // y
  tj_tuner_set_bench(t, bench_warmup(), bench_reps());
  return t;
}

static tj_ctx *make_ctx(void) {
  tj_ctx *ctx = NULL;
  if (tj_ctx_create(&ctx) != TJ_OK) return NULL;
  if (tj_ctx_set_cache_dir(ctx, g_dir) != TJ_OK) {
    fprintf(stderr, "cache dir '%s': %s\n", g_dir, tj_ctx_last_error(ctx));
    tj_ctx_free(ctx);
    return NULL;
  }
  return ctx;
}

// ---------------------------------------------------------------- tests

START_TEST(tune_softmax_and_reuse) {
  tj_ctx *ctx = make_ctx();
  ck_assert_ptr_nonnull(ctx);
  Data d;
  data_init(&d, ctx);
  tj_tuner *t = make_tuner(ctx);
  ck_assert_msg(t != NULL, "%s", tj_ctx_last_error(ctx));
  tj_arg args[4];
  make_args(&d, args);
  unsigned grid[3] = { ROWS, 1, 1 };

  // Tuning alone leaves y as it was (a sentinel pattern).
  uint16_t *sent = malloc(d.bytes), *back = malloc(d.bytes);
  ck_assert(sent && back);
  for (size_t i = 0; i < (size_t)ROWS * COLS; i++) sent[i] = (uint16_t)(0x3c00u + (i & 0xff));
  ck_assert_int_eq(tj_memcpy_htod(ctx, d.y, sent, d.bytes), TJ_OK);
  tj_tune_config chosen;
  tj_status st = tj_tuner_tune(t, NULL, 0, grid, args, 4, NULL, 0, &chosen);
  ck_assert_msg(st == TJ_OK, "tuning failed: %s", tj_ctx_last_error(ctx));
  ck_assert_int_eq(tj_memcpy_dtoh(ctx, back, d.y, d.bytes), TJ_OK);
  ck_assert_msg(memcmp(sent, back, d.bytes) == 0, "tuning wrote to the caller's output buffer");
  free(sent);
  free(back);

  const tj_tune_result *last;
  int nres = 0, best = -1;
  ck_assert_int_eq(tj_tuner_results(t, &last, &nres, &best), TJ_OK);
  ck_assert_int_eq(nres, 8);
  tj_tune_result res[8];   // a copy: the tuner's array is replaced by later calls
  memcpy(res, last, sizeof res);
  int usable = 0;
  char cs[128];
  printf("tuned softmax f16 %dx%d:\n", ROWS, COLS);
  for (int i = 0; i < nres; i++) {
    tj_tuner_config_str(t, &res[i].cfg, cs, sizeof cs);
    if (res[i].status == TJ_OK) {
      usable++;
      printf("  [%2d] %-26s %8.2f us%s\n", res[i].index, cs, res[i].ms * 1e3, res[i].index == best ? "  <- chosen" : "");
    } else {
      printf("  [%2d] %-26s unusable: %s\n", res[i].index, cs, res[i].error);
    }
  }
  ck_assert_int_ge(usable, 6);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.tunings, 1);
  ck_assert_int_eq(s.configs_timed, (uint64_t)usable);
  ck_assert_uint_ge(s.timing_launches, (uint64_t)usable * (uint64_t)(bench_warmup() + bench_reps()));
  ck_assert_int_eq(s.disk_writes, 1);
  char path[1024];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ COLS }, 1, path, sizeof path), TJ_OK);
  ck_assert(access(path, R_OK) == 0);

  // The launch uses the chosen configuration and is correct.
  ck_assert_int_eq(tj_tuner_launch(t, NULL, 0, grid, args, 4, NULL), TJ_OK);
  ck_assert_int_eq(tj_stream_synchronize(ctx, NULL), TJ_OK);
  double q = check_softmax(&d, 1);
  ck_assert_msg(q <= 1.0, "softmax error %.3g x tolerance", q);
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.mem_hits, 1);

  // Re-measure every usable configuration; the chosen one must be within 5%.
  double remeasured[TJ_TUNE_MAX_CONFIGS];
  int n = tj_tuner_num_configs(t);
  ck_assert_int_le(n, TJ_TUNE_MAX_CONFIGS);
  for (int i = 0; i < n; i++) remeasured[i] = -1;
  int rounds = under_sanitizer() ? 1 : 3, reps = under_sanitizer() ? 2 : 100;
  for (int round = 0; round < rounds; round++) {
    for (int i = 0; i < nres; i++) {
      if (res[i].status != TJ_OK) continue;
      double ms = -1;
      st = tj_tuner_measure(t, res[i].index, grid, args, 4, NULL, reps, &ms);
      ck_assert_msg(st == TJ_OK, "re-measuring %d: %s", res[i].index, tj_ctx_last_error(ctx));
      double *m = &remeasured[res[i].index];
      if (*m < 0 || ms < *m) *m = ms;
    }
  }
  double fastest = -1;
  for (int i = 0; i < n; i++)
    if (remeasured[i] > 0 && (fastest < 0 || remeasured[i] < fastest)) fastest = remeasured[i];
  tj_tuner_config_str(t, &chosen, cs, sizeof cs);
  printf("re-measured: chosen %s %.2f us, fastest %.2f us (ratio %.3f)\n", cs, remeasured[best] * 1e3,
         fastest * 1e3, remeasured[best] / fastest);
  ck_assert(fastest > 0 && remeasured[best] > 0);
  ck_assert_msg(under_sanitizer() || remeasured[best] <= 1.05 * fastest,
                "chosen %s is %.1f%% slower than the fastest", cs,
                100.0 * (remeasured[best] / fastest - 1));

  // A fresh context and tuner: the stored best, no benchmarking.
  // (ctx stays alive: its buffers live in the device's primary context.)
  tj_ctx *ctx2 = make_ctx();
  ck_assert_ptr_nonnull(ctx2);
  tj_tuner *t2 = make_tuner(ctx2);
  ck_assert_ptr_nonnull(t2);
  ck_assert_int_eq(tj_memset_d8(ctx, d.y, 0, d.bytes), TJ_OK);
  st = tj_tuner_launch(t2, NULL, 0, grid, args, 4, NULL);
  ck_assert_msg(st == TJ_OK, "%s", tj_ctx_last_error(ctx2));
  ck_assert_int_eq(tj_stream_synchronize(ctx2, NULL), TJ_OK);
  tj_tuner_stats(t2, &s);
  ck_assert_int_eq(s.disk_hits, 1);
  ck_assert_int_eq(s.tunings, 0);
  ck_assert_int_eq(s.timing_launches, 0);
  tj_tune_config again;
  ck_assert_int_eq(tj_tuner_best(t2, (int64_t[]){ COLS }, 1, &again, NULL), TJ_OK);
  ck_assert_mem_eq(&again, &chosen, sizeof again);
  q = check_softmax(&d, 64);
  ck_assert_msg(q <= 1.0, "softmax error %.3g x tolerance (stored configuration)", q);
  tj_tuner_free(t2);
  tj_ctx_free(ctx2);

  // tune --list material.
  tj_tune_entry *e;
  int ne;
  ck_assert_int_eq(tj_tune_list(ctx, &e, &ne), TJ_OK);
  ck_assert_int_eq(ne, 1);
  ck_assert_str_eq(e[0].kernel, "softmax");
  ck_assert_str_eq(e[0].best, cs);
  tj_tune_list_free(e);

  tj_tuner_free(t);
  data_free(&d);
  tj_ctx_free(ctx);

  // A second process reuses the result without benchmarking.
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) {
    execl("/proc/self/exe", "test_autotune_gpu", "--reuse", g_dir, (char *)NULL);
    _exit(127);
  }
  int ws;
  ck_assert(waitpid(pid, &ws, 0) == pid);
  ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "the second process failed (status %d)", ws);
}
END_TEST

// The second process: launch through a fresh tuner; no timing launches.
static int reuse_main(void) {
  tj_ctx *ctx = make_ctx();
  if (!ctx) {
    fprintf(stderr, "reuse: cannot create a context\n");
    return 2;
  }
  Data d;
  data_init(&d, ctx);
  tj_tuner *t = make_tuner(ctx);
  if (!t) {
    fprintf(stderr, "reuse: cannot create the tuner: %s\n", tj_ctx_last_error(ctx));
    return 2;
  }
  tj_arg args[4];
  make_args(&d, args);
  unsigned grid[3] = { ROWS, 1, 1 };
  tj_status st = tj_tuner_launch(t, NULL, 0, grid, args, 4, NULL);
  if (st == TJ_OK) st = tj_stream_synchronize(ctx, NULL);
  if (st != TJ_OK) {
    fprintf(stderr, "reuse: launch failed: %s\n", tj_ctx_last_error(ctx));
    return 1;
  }
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  double q = check_softmax(&d, 64);
  printf("second process: disk hits %llu, tunings %llu, timing launches %llu, error %.3g x tol\n",
         (unsigned long long)s.disk_hits, (unsigned long long)s.tunings, (unsigned long long)s.timing_launches, q);
  int ok = s.disk_hits == 1 && s.tunings == 0 && s.timing_launches == 0 && q <= 1.0;
  tj_tuner_free(t);
  data_free(&d);
  tj_ctx_free(ctx);
  return ok ? 0 : 1;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--reuse")) {
    snprintf(g_dir, sizeof g_dir, "%s", argv[2]);
    g_child = 1;
    return reuse_main();
  }
  // CUDA state does not survive fork(); run every test in this process.
  setenv("CK_FORK", "no", 1);
  unsetenv("TILEJIT_AUTOTUNE");
  tj_ctx *ctx = NULL;
  if (tj_ctx_create(&ctx) != TJ_OK) return 1;
  int n = 0;
  if (tj_device_count(ctx, &n) != TJ_OK) {
    printf("skipped: %s\n", tj_ctx_last_error(ctx));
    tj_ctx_free(ctx);
    return 77;
  }
  tj_ctx_free(ctx);
  char tmpl[] = "/tmp/tj_autotune_gpu_XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  snprintf(g_dir, sizeof g_dir, "%s", tmpl);
  Suite *s = suite_create("autotune_gpu");
  TCase *tc = tcase_create("softmax");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, tune_softmax_and_reuse);
  suite_add_tcase(s, tc);
  int rc = tj_test_run(s);
  nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
