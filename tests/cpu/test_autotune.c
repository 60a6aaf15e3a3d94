/* test_autotune: the autotuner without a GPU. The benchmark is replaced by a
 * hook (tune_set_bench_hook) that returns a deterministic time per
 * configuration, and the device identity is set by hand
 * (tune_set_device), so the key, the space, pruning, the choice, the disk
 * store, corruption recovery and TILEJIT_AUTOTUNE=0 are all checked here;
 * configurations are still compiled for real (LLVM, PTX). main() points
 * TILEJIT_LIBCUDA at a missing file, so the no-GPU errors are checked too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autotune/tune.h"
#include "testutil.h"
#include "tilejit/autotune.h"

// 4 x 3 = 12 configurations; cheap to compile.
static const char *SCALE_SRC =
    "kernel scale(y: *f32, x: *f32, n: i32) {\n"
    "    tunable BLOCK in {64, 128, 256, 512};\n"
    "    tunable num_warps in {1, 2, 4};\n"
    "    let o = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    store(y + o, load(x + o, o < n) * 2.0, o < n);\n"
    "}\n";

// BLOCK=512 fails its static_assert: a configuration that does not compile.
static const char *ASSERT_SRC =
    "kernel wide(y: *f32, n: i32) {\n"
    "    tunable BLOCK in {128, 256, 512};\n"
    "    static_assert(BLOCK <= 256, \"BLOCK too wide for this kernel\");\n"
    "    let o = arange(0, BLOCK);\n"
    "    store(y + o, 1.0, o < n);\n"
    "}\n";

typedef struct Hook {
  int calls;
  int forbid;          // the test fails if the benchmark runs
  int64_t fail_block;  // simulate a launch failure for this BLOCK (0: none)
} Hook;

// Fastest at BLOCK=256, num_warps=2 (configuration 7 of SCALE_SRC).
static tj_status fake_bench(tj_tuner *t, int index, double *ms, StrBuf *err, void *user) {
  Hook *h = user;
  h->calls++;
  ck_assert_msg(!h->forbid, "benchmark ran for configuration %d", index);
  tj_tune_config c;
  ck_assert_int_eq(tj_tuner_config(t, index, &c), TJ_OK);
  int64_t block = 0, warps = 1;
  tj_tuner_config_value(t, &c, "BLOCK", &block);
  tj_tuner_config_value(t, &c, "num_warps", &warps);
  if (block == h->fail_block) {
    sb_puts(err, "cuLaunchKernel failed: CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES (too many resources requested)");
    return TJ_ERR_CUDA;
  }
  int lg = 0;
  while ((1 << lg) < block) lg++;
  *ms = 1.0 + 0.1 * abs(lg - 8) + 0.01 * (double)llabs(warps - 2);
  return TJ_OK;
}

static char *make_tmpdir(void) {
  char tmpl[] = "/tmp/tj_autotune_XXXXXX";
  char *d = mkdtemp(tmpl);
  ck_assert_ptr_nonnull(d);
  return strdup(d);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

typedef struct Fix {
  char *dir;
  tj_ctx *ctx;
} Fix;

static Fix fix_new(void) {
  Fix f = { make_tmpdir(), NULL };
  ck_assert_int_eq(tj_ctx_create(&f.ctx), TJ_OK);
  ck_assert_int_eq(tj_ctx_set_cache_dir(f.ctx, f.dir), TJ_OK);
  return f;
}
static void fix_free(Fix *f) {
  tj_ctx_free(f->ctx);
  rm_rf(f->dir);
  free(f->dir);
}

static tj_tuner *scale_tuner(tj_ctx *ctx, const char *dev, Hook *h) {
  tj_compile_opts o = { .source = SCALE_SRC, .path = "scale.tj" };
  const char *keys[] = { "n" };
  tj_tuner *t = NULL;
  tj_status st = tj_tuner_create(ctx, &o, keys, 1, &t);
  ck_assert_msg(st == TJ_OK, "%s", tj_ctx_last_error(ctx));
  if (dev) tune_set_device(t, dev, 9, 0, "sm_90");
  if (h) tune_set_bench_hook(t, fake_bench, h);
  return t;
}

static tj_status tune_n(tj_tuner *t, int64_t n, tj_tune_config *best) {
  return tj_tuner_tune(t, &n, 1, NULL, NULL, 0, NULL, 0, best);
}

static bool file_exists(const char *p) {
  struct stat st;
  return p[0] && stat(p, &st) == 0;
}

// ---------------------------------------------------------------- key

START_TEST(bucket_next_power_of_two) {
  const int64_t in[] = { -5, 0, 1, 2, 3, 4, 5, 1000, 1024, 1025, 4096, 4097, (int64_t)1 << 40 };
  const int64_t want[] = { -5, 0, 1, 2, 4, 4, 8, 1024, 1024, 2048, 4096, 8192, (int64_t)1 << 40 };
  for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
    ck_assert_int_eq(tj_tune_bucket_pow2(in[i]), want[i]);
}
END_TEST

static void key_of(tj_tuner *t, int64_t n, uint8_t out[32]) {
  int64_t b[TJ_TUNE_MAX_KEYS];
  pthread_mutex_lock(&t->mu);
  ck_assert_int_eq(tune_freeze(t), TJ_OK);
  ck_assert_int_eq(tune_ident(t), TJ_OK);
  ck_assert_int_eq(tune_buckets(t, &n, 1, NULL, 0, b), TJ_OK);
  tune_key(t, b, out);
  pthread_mutex_unlock(&t->mu);
}

static int64_t exact_bucket(const char *name, int64_t v, void *user) {
  (void)name, (void)user;
  return v;
}

START_TEST(key_covers_sizes_device_dtypes_space) {
  Fix f = fix_new();
  tj_tuner *a = scale_tuner(f.ctx, "Fake GPU", NULL);
  uint8_t k3000[32], k4096[32], k5000[32];
  key_of(a, 3000, k3000);
  key_of(a, 4096, k4096);
  key_of(a, 5000, k5000);
  ck_assert_mem_eq(k3000, k4096, 32);        // same bucket
  ck_assert(memcmp(k4096, k5000, 32) != 0);  // 8192 bucket

  // Another device name, another compute capability.
  tj_tuner *b = scale_tuner(f.ctx, "Other GPU", NULL);
  uint8_t kb[32];
  key_of(b, 4096, kb);
  ck_assert(memcmp(kb, k4096, 32) != 0);
  tj_tuner *c = scale_tuner(f.ctx, NULL, NULL);
  tune_set_device(c, "Fake GPU", 8, 0, "sm_90");
  uint8_t kc[32];
  key_of(c, 4096, kc);
  ck_assert(memcmp(kc, k4096, 32) != 0);
  // The same identity gives the same key (a new tuner, a new process).
  tj_tuner *d = scale_tuner(f.ctx, "Fake GPU", NULL);
  uint8_t kd[32];
  key_of(d, 4096, kd);
  ck_assert_mem_eq(kd, k4096, 32);
  // A restricted space is another key.
  tj_tuner *e = scale_tuner(f.ctx, "Fake GPU", NULL);
  ck_assert_int_eq(tj_tuner_set_axis(e, "num_warps", (int64_t[]){ 2, 4 }, 2), TJ_OK);
  uint8_t ke[32];
  key_of(e, 4096, ke);
  ck_assert(memcmp(ke, k4096, 32) != 0);
  // Exact buckets separate 3000 from 4096.
  tj_tuner *g = scale_tuner(f.ctx, "Fake GPU", NULL);
  tj_tuner_set_bucket(g, exact_bucket, NULL);
  uint8_t g3000[32], g4096[32];
  key_of(g, 3000, g3000);
  key_of(g, 4096, g4096);
  ck_assert(memcmp(g3000, g4096, 32) != 0);
  ck_assert_mem_eq(g4096, k4096, 32);
  // Compiled without fma contraction: other code, another key.
  tj_compile_opts nf = { .source = SCALE_SRC, .path = "scale.tj", .flags = TJ_COMPILE_NO_FP_FUSION };
  tj_tuner *h = NULL;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &nf, (const char *[]){ "n" }, 1, &h), TJ_OK);
  tune_set_device(h, "Fake GPU", 9, 0, "sm_90");
  uint8_t kh[32];
  key_of(h, 4096, kh);
  ck_assert(memcmp(kh, k4096, 32) != 0);
  for (tj_tuner **p = (tj_tuner *[]){ a, b, c, d, e, g, h, NULL }; *p; p++) tj_tuner_free(*p);

  // Dtypes: the same source with T=f16 and T=f32.
  char *path = tj_test_path("tests/dsl/kernels/softmax_tunable.tj");
  uint8_t kt[2][32];
  for (int i = 0; i < 2; i++) {
    const char *defs[] = { i ? "T=f32" : "T=f16" };
    tj_compile_opts o = { .path = path, .defines = defs, .ndefines = 1 };
    tj_tuner *t = NULL;
    ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n" }, 1, &t), TJ_OK);
    tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
    key_of(t, 4096, kt[i]);
    tj_tuner_free(t);
  }
  ck_assert(memcmp(kt[0], kt[1], 32) != 0);
  free(path);
  fix_free(&f);
}
END_TEST

START_TEST(key_sizes_from_arguments) {
  Fix f = fix_new();
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", NULL);
  int64_t b[TJ_TUNE_MAX_KEYS];
  tj_arg args[] = { tj_arg_ptr(NULL, 0), tj_arg_ptr(NULL, 0), tj_arg_int(3000) };
  pthread_mutex_lock(&t->mu);
  ck_assert_int_eq(tune_buckets(t, NULL, 0, args, 3, b), TJ_OK);
  ck_assert_int_eq(b[0], 4096);
  ck_assert_int_eq(tune_buckets(t, (int64_t[]){ 1, 2 }, 2, NULL, 0, b), TJ_ERR_INVALID_ARG);
  pthread_mutex_unlock(&t->mu);
  tj_tuner_free(t);
  // A key name that is a pointer parameter is refused; an unknown name must
  // be passed explicitly.
  tj_compile_opts o = { .source = SCALE_SRC };
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "y" }, 1, &t), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "pointer"));
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "rows" }, 1, &t), TJ_OK);
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  pthread_mutex_lock(&t->mu);
  ck_assert_int_eq(tune_buckets(t, NULL, 0, args, 3, b), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "explicitly"));
  ck_assert_int_eq(tune_buckets(t, (int64_t[]){ 100 }, 1, NULL, 0, b), TJ_OK);
  ck_assert_int_eq(b[0], 128);
  pthread_mutex_unlock(&t->mu);
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

// ---------------------------------------------------------------- space

START_TEST(space_from_tunables) {
  Fix f = fix_new();
  char *path = tj_test_path("tests/dsl/kernels/softmax_tunable.tj");
  const char *defs[] = { "T=f16" };
  tj_compile_opts o = { .path = path, .defines = defs, .ndefines = 1 };
  tj_tuner *t = NULL;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n" }, 1, &t), TJ_OK);
  ck_assert_str_eq(tj_tuner_kernel_name(t), "softmax");
  ck_assert_int_eq(tj_tuner_num_axes(t), 2);
  const char *name;
  const int64_t *vals;
  int n;
  ck_assert_int_eq(tj_tuner_axis(t, 0, &name, &vals, &n), TJ_OK);
  ck_assert_str_eq(name, "BLOCK");
  ck_assert_int_eq(n, 4);
  ck_assert_int_eq(vals[0], 1024);
  ck_assert_int_eq(tj_tuner_axis(t, 1, &name, &vals, &n), TJ_OK);
  ck_assert_str_eq(name, "num_warps");
  ck_assert_int_eq(n, 4);
  ck_assert_int_eq(tj_tuner_num_configs(t), 16);
  // Errors: a value outside the declared set, an unknown name, bad warps.
  ck_assert_int_eq(tj_tuner_set_axis(t, "BLOCK", (int64_t[]){ 4096, 3000 }, 2), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "not in the tunable set"));
  ck_assert_int_eq(tj_tuner_set_axis(t, "ROWS", (int64_t[]){ 1 }, 1), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 3 }, 1), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 4, 4 }, 2), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 8, 4 }, 2), TJ_OK);
  ck_assert_int_eq(tj_tuner_num_configs(t), 8);
  // Order: first axis slowest; configuration 0 is every axis's first value.
  tj_tune_config c;
  ck_assert_int_eq(tj_tuner_config(t, 0, &c), TJ_OK);
  ck_assert_int_eq(c.v[0], 1024);
  ck_assert_int_eq(c.v[1], 8);
  ck_assert_int_eq(tj_tuner_config(t, 3, &c), TJ_OK);
  ck_assert_int_eq(c.v[0], 2048);
  ck_assert_int_eq(c.v[1], 4);
  char buf[64];
  tj_tuner_config_str(t, &c, buf, sizeof buf);
  ck_assert_str_eq(buf, "BLOCK=2048 num_warps=4");
  // Frozen after first use.
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 4 }, 1), TJ_ERR_INVALID_ARG);
  tj_tuner_free(t);

  // A -D of a tunable pins it.
  const char *pin[] = { "T=f16", "BLOCK=4096" };
  o.defines = pin;
  o.ndefines = 2;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, 0, &t), TJ_OK);
  ck_assert_int_eq(tj_tuner_num_configs(t), 4);
  ck_assert_int_eq(tj_tuner_axis(t, 0, &name, &vals, &n), TJ_OK);
  ck_assert_int_eq(n, 1);
  ck_assert_int_eq(vals[0], 4096);
  tj_tuner_free(t);

  // examples/softmax.tj declares no tunable: axes from C (a constant and
  // num_warps as a launch option).
  free(path);
  path = tj_test_path("examples/softmax.tj");
  o.path = path;
  o.defines = defs;
  o.ndefines = 1;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, 0, &t), TJ_OK);
  ck_assert_int_eq(tj_tuner_num_axes(t), 0);
  ck_assert_int_eq(tj_tuner_num_configs(t), 1);
  ck_assert_int_eq(tj_tuner_set_axis(t, "BLOCK", (int64_t[]){ 1024, 2048 }, 2), TJ_OK);
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 2, 4, 8 }, 3), TJ_OK);
  ck_assert_int_eq(tj_tuner_set_axis(t, "T", (int64_t[]){ 1 }, 1), TJ_ERR_INVALID_ARG);  // a dtype
  ck_assert_int_eq(tj_tuner_num_configs(t), 6);
  tj_kernel *k = NULL;
  ck_assert_int_eq(tj_tuner_config(t, 5, &c), TJ_OK);
  ck_assert_int_eq(tj_tuner_kernel(t, 5, &k), TJ_OK);
  ck_assert_int_eq(tj_kernel_num_warps(k), 8);
  ck_assert_ptr_nonnull(strstr(tj_kernel_tir(k), "2048"));
  tj_tuner_free(t);

  // An explicit list replaces the product.
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, 0, &t), TJ_OK);
  ck_assert_int_eq(tj_tuner_set_axis(t, "BLOCK", (int64_t[]){ 1024, 2048 }, 2), TJ_OK);
  ck_assert_int_eq(tj_tuner_set_axis(t, "num_warps", (int64_t[]){ 2, 4 }, 2), TJ_OK);
  tj_tune_config list[3] = { { { 2048, 4 } }, { { 1024, 2 } }, { { 2048, 2 } } };
  ck_assert_int_eq(tj_tuner_set_configs(t, list, 3), TJ_OK);
  ck_assert_int_eq(tj_tuner_num_configs(t), 3);
  ck_assert_int_eq(tj_tuner_config(t, 0, &c), TJ_OK);
  ck_assert_int_eq(c.v[0], 2048);
  ck_assert_int_eq(c.v[1], 4);
  tj_tuner_free(t);
  free(path);
  fix_free(&f);
}
END_TEST

static int drop_narrow(const tj_tuner *t, const tj_tune_config *c, const int64_t *sizes, int nkey, void *user) {
  (void)user;
  int64_t block;
  ck_assert_int_eq(nkey, 1);
  ck_assert_int_eq(tj_tuner_config_value(t, c, "BLOCK", &block), TJ_OK);
  return block >= sizes[0];  // one program per row needs the whole row
}

START_TEST(pruning) {
  Fix f = fix_new();
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  tj_tuner_set_prune(t, drop_narrow, NULL);
  tj_tune_config best;
  ck_assert_int_eq(tune_n(t, 300, &best), TJ_OK);  // bucket 512: only BLOCK=512 survives
  ck_assert_int_eq(h.calls, 3);
  ck_assert_int_eq(best.v[0], 512);
  ck_assert_int_eq(best.v[1], 2);
  const tj_tune_result *r;
  int n, bi;
  ck_assert_int_eq(tj_tuner_results(t, &r, &n, &bi), TJ_OK);
  ck_assert_int_eq(n, 3);
  for (int i = 0; i < n; i++) ck_assert_int_eq(r[i].cfg.v[0], 512);
  // Bucket 128: BLOCK 128, 256, 512 (9 configurations), 256 wins.
  h.calls = 0;
  ck_assert_int_eq(tune_n(t, 100, &best), TJ_OK);
  ck_assert_int_eq(h.calls, 9);
  ck_assert_int_eq(best.v[0], 256);
  // Everything pruned: a clear error.
  ck_assert_int_eq(tune_n(t, 1000, &best), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "pruned"));
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

// ---------------------------------------------------------------- choice and persistence

START_TEST(persist_and_reload) {
  Fix f = fix_new();
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  tj_tune_config best;
  ck_assert_int_eq(tune_n(t, 4000, &best), TJ_OK);
  ck_assert_int_eq(h.calls, 12);
  ck_assert_int_eq(best.v[0], 256);
  ck_assert_int_eq(best.v[1], 2);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.tunings, 1);
  ck_assert_int_eq(s.configs_timed, 12);
  ck_assert_int_eq(s.disk_writes, 1);
  char path[1024];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ 4000 }, 1, path, sizeof path), TJ_OK);
  ck_assert_msg(file_exists(path), "%s", path);
  ck_assert_ptr_nonnull(strstr(path, "/tune/"));
  // Same tuner again: memory.
  ck_assert_int_eq(tune_n(t, 4096, &best), TJ_OK);
  ck_assert_int_eq(h.calls, 12);
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.mem_hits, 1);
  // Never tuned: not found, nothing benchmarked.
  ck_assert_int_eq(tj_tuner_best(t, (int64_t[]){ 10 }, 1, &best, NULL), TJ_ERR_NOT_FOUND);
  ck_assert_int_eq(h.calls, 12);
  tj_tuner_free(t);

  // A new tuner (as in a new process): the stored best, no benchmark.
  Hook h2 = { .forbid = 1 };
  t = scale_tuner(f.ctx, "Fake GPU", &h2);
  int idx = -1;
  ck_assert_int_eq(tj_tuner_best(t, (int64_t[]){ 3000 }, 1, &best, &idx), TJ_OK);
  ck_assert_int_eq(best.v[0], 256);
  ck_assert_int_eq(best.v[1], 2);
  ck_assert_int_eq(idx, 7);
  ck_assert_int_eq(tune_n(t, 4096, &best), TJ_OK);
  ck_assert_int_eq(h2.calls, 0);
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.disk_hits, 1);
  ck_assert_int_eq(s.tunings, 0);
  ck_assert_int_eq(s.timing_launches, 0);
  const tj_tune_result *r;
  int n, bi;
  ck_assert_int_eq(tj_tuner_results(t, &r, &n, &bi), TJ_OK);
  ck_assert_int_eq(n, 12);   // the stored table comes back too
  ck_assert_int_eq(bi, 7);
  for (int i = 0; i < n; i++) {
    ck_assert_int_eq(r[i].status, TJ_OK);
    if (r[i].index == 7) ck_assert_double_eq_tol(r[i].ms, 1.0, 1e-9);
  }
  tj_tuner_free(t);

  // Listed.
  tj_tune_entry *e;
  int ne;
  ck_assert_int_eq(tj_tune_list(f.ctx, &e, &ne), TJ_OK);
  ck_assert_int_eq(ne, 1);
  ck_assert_str_eq(e[0].kernel, "scale");
  ck_assert_str_eq(e[0].best, "BLOCK=256 num_warps=2");
  ck_assert_str_eq(e[0].sizes, "n=4096");
  ck_assert_str_eq(e[0].device, "Fake GPU");
  ck_assert_int_eq(e[0].nconfigs, 12);
  ck_assert_int_eq(e[0].corrupt, 0);
  tj_tune_list_free(e);
  // FORCE benchmarks again and rewrites.
  Hook h3 = { 0 };
  t = scale_tuner(f.ctx, "Fake GPU", &h3);
  ck_assert_int_eq(tj_tuner_tune(t, (int64_t[]){ 4096 }, 1, NULL, NULL, 0, NULL, TJ_TUNE_FORCE, &best), TJ_OK);
  ck_assert_int_eq(h3.calls, 12);
  tj_tuner_free(t);
  int removed = -1;
  ck_assert_int_eq(tj_tune_clear(f.ctx, &removed), TJ_OK);
  ck_assert_int_eq(removed, 1);
  ck_assert(!file_exists(path));
  fix_free(&f);
}
END_TEST

START_TEST(unusable_configs_reported) {
  Fix f = fix_new();
  tj_compile_opts o = { .source = ASSERT_SRC, .path = "wide.tj" };
  tj_tuner *t = NULL;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n" }, 1, &t), TJ_OK);
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  Hook h = { .fail_block = 128 };  // launch failure; 512 fails to compile
  tune_set_bench_hook(t, fake_bench, &h);
  tj_tune_config best;
  ck_assert_int_eq(tune_n(t, 100, &best), TJ_OK);
  ck_assert_int_eq(best.v[0], 256);
  const tj_tune_result *r;
  int n, bi;
  tj_tuner_results(t, &r, &n, &bi);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(r[0].status, TJ_ERR_CUDA);
  ck_assert_ptr_nonnull(strstr(r[0].error, "OUT_OF_RESOURCES"));
  ck_assert_int_eq(r[1].status, TJ_OK);
  ck_assert_int_eq(r[2].status, TJ_ERR_COMPILE);
  ck_assert_msg(strstr(r[2].error, "BLOCK too wide") != NULL, "%s", r[2].error);
  ck_assert(r[2].ms < 0);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.configs_failed, 2);
  ck_assert_int_eq(s.configs_timed, 1);
  tj_tuner_free(t);
  // The failures are stored and come back with their reasons.
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n" }, 1, &t), TJ_OK);
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  Hook none = { .forbid = 1 };
  tune_set_bench_hook(t, fake_bench, &none);
  ck_assert_int_eq(tune_n(t, 100, &best), TJ_OK);
  tj_tuner_results(t, &r, &n, &bi);
  ck_assert_int_eq(n, 3);
  ck_assert_int_eq(r[2].status, TJ_ERR_COMPILE);
  ck_assert_ptr_nonnull(strstr(r[2].error, "BLOCK too wide"));
  tj_tuner_free(t);
  // Every configuration unusable: an error, no crash, nothing stored.
  ck_assert_int_eq(tj_tune_clear(f.ctx, NULL), TJ_OK);
  const char *pin[] = { "BLOCK=512" };
  o.defines = pin;
  o.ndefines = 1;
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n" }, 1, &t), TJ_ERR_COMPILE);
  ck_assert_int_eq(tj_tuner_create(f.ctx, &(tj_compile_opts){ .source = ASSERT_SRC }, (const char *[]){ "n" }, 1, &t),
                   TJ_OK);
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  ck_assert_int_eq(tj_tuner_set_axis(t, "BLOCK", (int64_t[]){ 512 }, 1), TJ_OK);
  tune_set_bench_hook(t, fake_bench, &h);
  ck_assert_int_eq(tune_n(t, 100, &best), TJ_ERR_UNSUPPORTED);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "none of its 1 configurations"));
  tj_tune_entry *e;
  int ne;
  ck_assert_int_eq(tj_tune_list(f.ctx, &e, &ne), TJ_OK);
  ck_assert_int_eq(ne, 0);
  tj_tune_list_free(e);
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

static char *slurp(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  ck_assert_ptr_nonnull(fp);
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  ck_assert_int_eq(fread(b, 1, (size_t)n, fp), (size_t)n);
  b[n] = '\0';
  fclose(fp);
  *len = (size_t)n;
  return b;
}

static void spit(const char *path, const char *b, size_t n) {
  FILE *fp = fopen(path, "wb");
  ck_assert_ptr_nonnull(fp);
  ck_assert_int_eq(fwrite(b, 1, n, fp), n);
  fclose(fp);
}

START_TEST(file_decode_rejects_damage) {
  Fix f = fix_new();
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  ck_assert_int_eq(tune_n(t, 4096, NULL), TJ_OK);
  char path[1024];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ 4096 }, 1, path, sizeof path), TJ_OK);
  size_t len;
  char *good = slurp(path, &len);
  const char *base = strrchr(path, '/') + 1;
  char key[65];
  memcpy(key, base, 64);
  key[64] = '\0';
  TuneFile tf;
  StrBuf why;
  sb_init(&why);
  ck_assert_int_eq(tune_file_decode(good, len, key, &tf, &why), TJ_OK);
  ck_assert_int_eq(tf.nconfigs, 12);
  ck_assert_int_eq(tf.best, 7);
  ck_assert_str_eq(tf.kernel, "scale");
  ck_assert_str_eq(tf.axes[1], "num_warps");
  tune_file_free(&tf);
  // Another key in the right place is refused.
  char other[65];
  memcpy(other, key, 65);
  other[0] = other[0] == 'a' ? 'b' : 'a';
  ck_assert_int_eq(tune_file_decode(good, len, other, &tf, &why), TJ_ERR_CORRUPT);
  // Every single flipped byte and every truncation is caught.
  char *bad = malloc(len);
  for (size_t i = 0; i < len; i++) {
    memcpy(bad, good, len);
    bad[i] ^= 0x20;
    why.len = 0;
    ck_assert_msg(tune_file_decode(bad, len, key, &tf, &why) == TJ_ERR_CORRUPT, "flip at %zu accepted", i);
  }
  for (size_t n = 0; n < len; n += 7) {
    why.len = 0;
    ck_assert_msg(tune_file_decode(good, n, key, &tf, &why) == TJ_ERR_CORRUPT, "truncation to %zu accepted", n);
  }
  free(bad);
  sb_free(&why);
  free(good);
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

// Damages the stored file with fn, then checks that a new tuner removes it,
// warns (counter), tunes again and stores a good file.
static void damage_and_recover(void (*fn)(const char *path, char *buf, size_t len)) {
  Fix f = fix_new();
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  ck_assert_int_eq(tune_n(t, 4096, NULL), TJ_OK);
  char path[1024];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ 4096 }, 1, path, sizeof path), TJ_OK);
  tj_tuner_free(t);
  size_t len;
  char *buf = slurp(path, &len);
  fn(path, buf, len);
  free(buf);
  // tune --list shows it as damaged without removing it.
  tj_tune_entry *e;
  int ne;
  ck_assert_int_eq(tj_tune_list(f.ctx, &e, &ne), TJ_OK);
  ck_assert_int_eq(ne, 1);
  ck_assert_int_eq(e[0].corrupt, 1);
  tj_tune_list_free(e);
  tj_cache_summary cs0;
  tj_cache_stats(f.ctx, &cs0);

  Hook h2 = { 0 };
  t = scale_tuner(f.ctx, "Fake GPU", &h2);
  tj_tune_config best;
  ck_assert_int_eq(tune_n(t, 4096, &best), TJ_OK);
  ck_assert_int_eq(h2.calls, 12);   // tuned again
  ck_assert_int_eq(best.v[0], 256);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.corrupt, 1);
  ck_assert_int_eq(s.disk_hits, 0);
  ck_assert_int_eq(s.disk_writes, 1);
  tj_cache_summary cs1;
  tj_cache_stats(f.ctx, &cs1);
  ck_assert_uint_gt(cs1.warnings, cs0.warnings);  // warned (stderr with TILEJIT_VERBOSE)
  tj_tuner_free(t);
  // The rewritten file is good.
  Hook h3 = { .forbid = 1 };
  t = scale_tuner(f.ctx, "Fake GPU", &h3);
  ck_assert_int_eq(tune_n(t, 4096, &best), TJ_OK);
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.disk_hits, 1);
  tj_tuner_free(t);
  fix_free(&f);
}

static void flip_byte(const char *path, char *buf, size_t len) {
  buf[len / 3] ^= 0x01;
  spit(path, buf, len);
}
static void truncate_half(const char *path, char *buf, size_t len) { spit(path, buf, len / 2); }
static void zero_length(const char *path, char *buf, size_t len) {
  (void)buf, (void)len;
  spit(path, "", 0);
}
static void garbage(const char *path, char *buf, size_t len) {
  memset(buf, 0xff, len);
  spit(path, buf, len);
}

START_TEST(corrupt_flip_recovers) { damage_and_recover(flip_byte); }
END_TEST
START_TEST(corrupt_truncated_recovers) { damage_and_recover(truncate_half); }
END_TEST
START_TEST(corrupt_empty_recovers) { damage_and_recover(zero_length); }
END_TEST
START_TEST(corrupt_garbage_recovers) { damage_and_recover(garbage); }
END_TEST

START_TEST(autotune_disabled_uses_first) {
  Fix f = fix_new();
  setenv("TILEJIT_AUTOTUNE", "0", 1);
  Hook h = { .forbid = 1 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  unsetenv("TILEJIT_AUTOTUNE");
  tj_tune_config best;
  ck_assert_int_eq(tune_n(t, 4096, &best), TJ_OK);
  ck_assert_int_eq(best.v[0], 64);
  ck_assert_int_eq(best.v[1], 1);
  // With pruning: the first configuration that survives.
  tj_tuner_set_prune(t, drop_narrow, NULL);
  ck_assert_int_eq(tune_n(t, 200, &best), TJ_OK);
  ck_assert_int_eq(best.v[0], 256);
  ck_assert_int_eq(best.v[1], 1);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.tunings, 0);
  ck_assert_int_eq(s.disk_writes, 0);
  ck_assert_int_eq(s.timing_launches, 0);
  tj_tune_entry *e;
  int ne;
  ck_assert_int_eq(tj_tune_list(f.ctx, &e, &ne), TJ_OK);
  ck_assert_int_eq(ne, 0);
  tj_tune_list_free(e);
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

START_TEST(no_cache_keeps_results_in_memory) {
  setenv("TILEJIT_CACHE", "0", 1);
  Fix f = fix_new();
  unsetenv("TILEJIT_CACHE");
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  ck_assert_int_eq(tune_n(t, 4096, NULL), TJ_OK);
  ck_assert_int_eq(tune_n(t, 4096, NULL), TJ_OK);
  ck_assert_int_eq(h.calls, 12);
  tj_tune_stats s;
  tj_tuner_stats(t, &s);
  ck_assert_int_eq(s.disk_writes, 0);
  ck_assert_int_eq(s.mem_hits, 1);
  char path[1024];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ 4096 }, 1, path, sizeof path), TJ_OK);
  ck_assert_str_eq(path, "");
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

// ---------------------------------------------------------------- without a GPU

START_TEST(no_gpu_clear_error) {
  Fix f = fix_new();
  tj_tuner *t = scale_tuner(f.ctx, NULL, NULL);  // the real device query
  float dummy[4];
  tj_arg args[] = { tj_arg_ptr(dummy, sizeof dummy), tj_arg_ptr(dummy, sizeof dummy), tj_arg_int(4) };
  unsigned grid[3] = { 1, 1, 1 };
  ck_assert_int_eq(tj_tuner_launch(t, NULL, 0, grid, args, 3, NULL), TJ_ERR_NO_DEVICE);
  const char *msg = tj_ctx_last_error(f.ctx);
  ck_assert_msg(strstr(msg, "autotuning kernel 'scale' needs a CUDA device") != NULL, "%s", msg);
  ck_assert_int_eq(tj_tuner_tune(t, (int64_t[]){ 4 }, 1, grid, args, 3, NULL, 0, NULL), TJ_ERR_NO_DEVICE);
  char path[256];
  ck_assert_int_eq(tj_tuner_key_path(t, (int64_t[]){ 4 }, 1, path, sizeof path), TJ_ERR_NO_DEVICE);
  double ms;
  ck_assert_int_eq(tj_tuner_measure(t, 0, grid, args, 3, NULL, 5, &ms), TJ_ERR_NO_DEVICE);
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

START_TEST(written_argument_needs_size) {
  Fix f = fix_new();
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", NULL);  // real benchmark path
  float dummy[4];
  tj_arg args[] = { tj_arg_ptr(dummy, 0), tj_arg_ptr(dummy, sizeof dummy), tj_arg_int(4) };
  unsigned grid[3] = { 1, 1, 1 };
  ck_assert_int_eq(tj_tuner_launch(t, NULL, 0, grid, args, 3, NULL), TJ_ERR_INVALID_ARG);
  const char *msg = tj_ctx_last_error(f.ctx);
  ck_assert_msg(strstr(msg, "argument 0 ('y')") && strstr(msg, "size is unknown") && strstr(msg, "tj_arg_ptr"), "%s",
                msg);
  // Wrong arguments are reported before anything else.
  ck_assert_int_eq(tj_tuner_launch(t, NULL, 0, grid, args, 2, NULL), TJ_ERR_INVALID_ARG);
  // No grid and no callback.
  args[0] = tj_arg_ptr(dummy, sizeof dummy);
  ck_assert_int_eq(tj_tuner_launch(t, NULL, 0, NULL, args, 3, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "grid"));
  tj_tuner_free(t);
  fix_free(&f);
}
END_TEST

START_TEST(bad_requests) {
  Fix f = fix_new();
  tj_tuner *t = NULL;
  ck_assert_int_eq(tj_tuner_create(f.ctx, NULL, NULL, 0, &t), TJ_ERR_INVALID_ARG);
  tj_compile_opts o = { .path = "no/such/file.tj" };
  tj_kernel *k = NULL;
  tj_status want = tj_kernel_compile(f.ctx, &o, &k);  // the same status as compiling it
  ck_assert_int_ne(want, TJ_OK);
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, 0, &t), want);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "no/such/file.tj"));
  o = (tj_compile_opts){ .source = "kernel k(x: *f32) { tunable B in {}; }" };
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, 0, &t), TJ_ERR_COMPILE);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(f.ctx), "has no values"));
  o = (tj_compile_opts){ .source = SCALE_SRC };
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, (const char *[]){ "n", "n" }, 2, &t), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_create(f.ctx, &o, NULL, TJ_TUNE_MAX_KEYS + 1, &t), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_null(t);
  tj_tuner_free(NULL);
  ck_assert_int_eq(tj_tuner_set_bench(NULL, 1, 1), TJ_ERR_INVALID_ARG);
  fix_free(&f);
}
END_TEST

// ---------------------------------------------------------------- CLI

typedef struct Run {
  int status;
  char *out, *err;
} Run;

static char *read_fd(int fd) {
  off_t n = lseek(fd, 0, SEEK_END);
  lseek(fd, 0, SEEK_SET);
  char *b = calloc(1, (size_t)n + 1);
  ck_assert_ptr_nonnull(b);
  ck_assert_int_eq(read(fd, b, (size_t)n), n);
  return b;
}

static Run run_cli(const char *cache_dir, const char *const *args) {
  const char *bin = getenv("TILEJIT_BIN");
  ck_assert_msg(bin != NULL, "TILEJIT_BIN is not set (run through ctest)");
  char op[] = "/tmp/tj_at_outXXXXXX", ep[] = "/tmp/tj_at_errXXXXXX";
  int ofd = mkstemp(op), efd = mkstemp(ep);
  ck_assert(ofd >= 0 && efd >= 0);
  unlink(op);
  unlink(ep);
  const char *argv[32] = { bin, "tune" };
  int n = 2;
  for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) {
    dup2(ofd, 1);
    dup2(efd, 2);
    setenv("TILEJIT_CACHE_DIR", cache_dir, 1);
    if (chdir(TJ_SOURCE_DIR) != 0) _exit(126);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int ws;
  waitpid(pid, &ws, 0);
  Run r = { WIFEXITED(ws) ? WEXITSTATUS(ws) : -1, read_fd(ofd), read_fd(efd) };
  close(ofd);
  close(efd);
  return r;
}

static void run_free(Run *r) {
  free(r->out);
  free(r->err);
}

START_TEST(cli_help_list_errors) {
  Fix f = fix_new();
  Run r = run_cli(f.dir, (const char *[]){ "--help", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: tilejit tune"));
  ck_assert_ptr_nonnull(strstr(r.out, "--buffer"));
  run_free(&r);

  // --list: empty, then one stored result (made through the API).
  r = run_cli(f.dir, (const char *[]){ "--list", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "(0)"));
  run_free(&r);
  Hook h = { 0 };
  tj_tuner *t = scale_tuner(f.ctx, "Fake GPU", &h);
  ck_assert_int_eq(tune_n(t, 4096, NULL), TJ_OK);
  tj_tuner_free(t);
  r = run_cli(f.dir, (const char *[]){ "--list", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_msg(strstr(r.out, "scale") && strstr(r.out, "BLOCK=256 num_warps=2") && strstr(r.out, "n=4096") &&
                strstr(r.out, "Fake GPU") && strstr(r.out, "1000.00"), "%s", r.out);
  run_free(&r);
  r = run_cli(f.dir, (const char *[]){ "--clear", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "removed 1"));
  run_free(&r);

  const char *K = "tests/dsl/kernels/softmax_tunable.tj";
  const char *const usage[][12] = {
    { NULL },                                                              // no input
    { K, "-D", "T=f16", "--size", "n=4096", NULL },                        // no --grid
    { K, "--frob", NULL },                                                 // unknown option
    { K, "-D", "T=f16", "--size", "rows=8", "--size", "n=8", "--grid", "rows", NULL },  // stride missing
    { K, "-D", "T=f16", "--size", "n=8", "--size", "stride=8", "--grid", "cdiv(n,BLOK)", NULL },
    { K, "-D", "T=f16", "--size", "n=8", "--size", "stride=8", "--grid", "n,", NULL },
    { K, "--size", "n", "--grid", "1", NULL },                             // not NAME=VALUE
    { K, "-D", "T=f16", "--size", "n=8", "--size", "stride=8", "--grid", "1", "--buffer", "q=4", NULL },
    { K, "--list", NULL },
  };
  for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
    r = run_cli(f.dir, usage[i]);
    ck_assert_msg(r.status == 2, "case %zu: exit %d, stderr: %s", i, r.status, r.err);
    ck_assert_msg(strstr(r.err, "tilejit: error:") != NULL, "case %zu: stderr: %s", i, r.err);
    run_free(&r);
  }
  // A compile error in the kernel: exit 1, rendered diagnostics.
  r = run_cli(f.dir, (const char *[]){ K, "-D", "T=f16", "-D", "BLOCK=3", "--size", "n=8", "--grid", "1", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_msg(strstr(r.err, "not in the tunable set") != NULL, "%s", r.err);
  run_free(&r);
  // Everything right but no GPU: exit 1 and says so.
  r = run_cli(f.dir, (const char *[]){ K, "-D", "T=f16", "--size", "rows=64", "--size", "n=1000", "--size",
                                       "stride=1000", "--grid", "rows", "--num-warps", "4,8", NULL });
  ck_assert_int_eq(r.status, 1);  // --num-warps restricts the declared tunable, then: no GPU
  ck_assert_msg(strstr(r.err, "tuning needs a CUDA GPU") != NULL, "%s", r.err);
  run_free(&r);
  r = run_cli(f.dir, (const char *[]){ K, "-D", "T=f16", "--size", "n=8", "--size", "stride=8", "--grid", "1",
                                       "--num-warps", "3", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_msg(strstr(r.err, "power of two") != NULL, "%s", r.err);
  run_free(&r);
  r = run_cli(f.dir, (const char *[]){ K, "-D", "T=f16", "--size", "rows=64", "--size", "n=1000", "--size",
                                       "stride=1000", "--grid", "rows", "--axis", "BLOCK=1024,2048", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_msg(strstr(r.err, "tuning needs a CUDA GPU") != NULL, "%s", r.err);
  ck_assert_str_eq(r.out, "");
  run_free(&r);
  fix_free(&f);
}
END_TEST

Suite *autotune_suite(void) {
  Suite *s = suite_create("autotune");
  TCase *key = tcase_create("key");
  tcase_add_test(key, bucket_next_power_of_two);
  tcase_add_test(key, key_covers_sizes_device_dtypes_space);
  tcase_add_test(key, key_sizes_from_arguments);
  suite_add_tcase(s, key);
  TCase *tc = tcase_create("tuner");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, space_from_tunables);
  tcase_add_test(tc, pruning);
  tcase_add_test(tc, persist_and_reload);
  tcase_add_test(tc, unusable_configs_reported);
  tcase_add_test(tc, file_decode_rejects_damage);
  tcase_add_test(tc, corrupt_flip_recovers);
  tcase_add_test(tc, corrupt_truncated_recovers);
  tcase_add_test(tc, corrupt_empty_recovers);
  tcase_add_test(tc, corrupt_garbage_recovers);
  tcase_add_test(tc, autotune_disabled_uses_first);
  tcase_add_test(tc, no_cache_keeps_results_in_memory);
  tcase_add_test(tc, no_gpu_clear_error);
  tcase_add_test(tc, written_argument_needs_size);
  tcase_add_test(tc, bad_requests);
  suite_add_tcase(s, tc);
  TCase *cli = tcase_create("cli");
  tcase_set_timeout(cli, 120);
  tcase_add_test(cli, cli_help_list_errors);
  suite_add_tcase(s, cli);
  return s;
}

int main(void) {
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);  // no GPU, on any machine
  unsetenv("TILEJIT_AUTOTUNE");
  return tj_test_run(autotune_suite());
}
