/* bench_cpu_frontend: time of the front end plus tile IR (lex, parse, sema,
 * fold/CSE/DCE, print) for the bundled examples. Goal: < 1 ms for softmax.
 *
 *   usage: bench_cpu_frontend [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tilejit/tilejit.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int bench(tj_ctx *ctx, const char *name, const char *file, const char **defs, int ndefs, int iters) {
  double *t = malloc(sizeof(double) * (size_t)iters);
  if (!t) return 1;
  for (int i = 0; i < iters; i++) {
    tj_compile_opts o = { .path = file, .defines = defs, .ndefines = ndefs,
                          .flags = TJ_COMPILE_FRONTEND | TJ_COMPILE_NO_CACHE };
    tj_kernel *k;
    double t0 = now_ms();
    tj_status st = tj_kernel_compile(ctx, &o, &k);
    t[i] = now_ms() - t0;
    if (st != TJ_OK) {
      fprintf(stderr, "%s: %s\n", name, tj_ctx_last_error(ctx));
      free(t);
      return 1;
    }
    tj_kernel_free(k);
  }
  qsort(t, (size_t)iters, sizeof(double), cmp_double);
  printf("%-14s front end + tile IR: median %.3f ms, p90 %.3f ms, min %.3f ms (%d runs)\n", name,
         t[iters / 2], t[iters * 9 / 10], t[0], iters);
  free(t);
  return 0;
}

int main(int argc, char **argv) {
  int iters = argc > 1 ? atoi(argv[1]) : 200;
  if (iters < 1) iters = 1;
  tj_ctx *ctx;
  if (tj_ctx_create(&ctx) != TJ_OK) return 1;
  const char *sm[] = { "T=f16", "BLOCK=1024" };
  const char *mm[] = { "T=f16" };
  int rc = bench(ctx, "softmax", TJ_SOURCE_DIR "/examples/softmax.tj", sm, 2, iters);
  rc |= bench(ctx, "matmul", TJ_SOURCE_DIR "/examples/matmul.tj", mm, 1, iters);
  tj_ctx_free(ctx);
  return rc;
}
