/* bench_cpu_cache.c: what the compile cache saves, without a GPU.
 *
 * Times, for examples/softmax.tj-sized work (vector_add and softmax from
 * examples/): the front end alone, a cold compile (LLVM to PTX, cache
 * miss), a hit from disk (a new context, as a new process would), a hit in
 * memory (same context), and the key computation itself. Medians of REPS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/rt.h"

enum { REPS = 15 };

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return v[n / 2];
}

static int compile(tj_ctx *ctx, const char *path, const char *define, unsigned flags, double *ms) {
  const char *defs[] = { define };
  tj_compile_opts o = { .path = path, .defines = defs, .ndefines = define ? 1 : 0, .arch = "sm_90",
                        .flags = flags };
  tj_kernel *k = NULL;
  double t0 = now_ms();
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  *ms = now_ms() - t0;
  if (st != TJ_OK) {
    fprintf(stderr, "bench: %s: %s\n", path, tj_ctx_last_error(ctx));
    return 1;
  }
  tj_kernel_free(k);
  return 0;
}

static int bench_file(const char *rel, const char *define) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", TJ_SOURCE_DIR, rel);
  char dir[] = "/tmp/tj-bench-cache-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  double fe[REPS], cold[REPS], disk[REPS], mem[REPS];
  for (int r = 0; r < REPS; r++) {
    tj_ctx *a = NULL, *b = NULL;
    if (tj_ctx_create(&a) || tj_ctx_create(&b)) return 1;
    tj_ctx_set_cache_dir(a, dir);
    tj_ctx_set_cache_dir(b, dir);
    tj_cache_clear(a, NULL);
    if (compile(a, path, define, TJ_COMPILE_FRONTEND, &fe[r])) return 1;
    if (compile(a, path, define, 0, &cold[r])) return 1;
    if (compile(b, path, define, 0, &disk[r])) return 1;
    if (compile(b, path, define, 0, &mem[r])) return 1;
    tj_ctx_free(a);
    tj_ctx_free(b);
  }
  printf("%-28s %10.3f %10.3f %10.3f %10.3f\n", rel, median(fe, REPS), median(cold, REPS),
         median(disk, REPS), median(mem, REPS));
  tj_ctx *c = NULL;
  tj_ctx_create(&c);
  tj_ctx_set_cache_dir(c, dir);
  tj_cache_clear(c, NULL);
  tj_ctx_free(c);
  rmdir(dir);
  return 0;
}

int main(void) {
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);  // CPU only, on any machine
  printf("compile times in ms (median of %d), arch sm_90\n", REPS);
  printf("%-28s %10s %10s %10s %10s\n", "kernel", "front end", "cold", "disk hit", "mem hit");
  if (bench_file("examples/vector_add.tj", NULL) || bench_file("examples/softmax.tj", "T=f16")) return 1;

  // The key itself: digest of a 4 KB source plus the variant key.
  char src[4096];
  memset(src, 'x', sizeof src);
  TirConstDef consts[3] = { { "BLOCK", "1024" }, { "T", "f16" }, { "num_warps", "4" } };
  CacheKeyInputs in = { .tilejit_version = "0.1.0", .build_id = cache_build_id(), .llvm_version = "19.1.7",
                        .source = src, .source_len = sizeof src, .kernel = "softmax",
                        .consts = consts, .nconsts = 3, .num_warps = 4, .options = "line_info=1" };
  enum { N = 20000 };
  uint8_t d[32], key[32];
  double t0 = now_ms();
  for (int i = 0; i < N; i++) {
    cache_digest(&in, d);
    cache_key(d, (uint64_t)i, "sm_90", key);
  }
  printf("cache key of a 4 KB source: %.2f us\n", (now_ms() - t0) * 1e3 / N);
  return 0;
}
