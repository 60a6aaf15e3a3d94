/* c_app: a C program using an installed tilejit, with no CUDA toolkit.
 *
 * Loads examples/vector_add.tj at run time, compiles it for the GPU it finds,
 * runs z = x + y on device buffers it allocates through tilejit, checks the
 * result against the CPU and prints OK. Exits 77 when there is no GPU.
 *
 *   usage: c_app [path/to/vector_add.tj] [n]
 */
#include <stdio.h>
#include <stdlib.h>

#include <tilejit/tilejit.h>

#ifndef VECTOR_ADD_TJ
#define VECTOR_ADD_TJ "vector_add.tj"
#endif

static int fail(tj_ctx *ctx, const char *what, tj_status st) {
  fprintf(stderr, "c_app: %s failed: %s\n%s\n", what, tj_status_str(st), tj_ctx_last_error(ctx));
  return 1;
}

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : VECTOR_ADD_TJ;
  int n = argc > 2 ? atoi(argv[2]) : 1000003;
  if (n <= 0) {
    fprintf(stderr, "c_app: n must be positive\n");
    return 2;
  }
  tj_ctx *ctx = NULL;
  tj_status st = tj_ctx_create(&ctx);
  if (st != TJ_OK) return 1;
  int ndev = 0;
  if (tj_device_count(ctx, &ndev) != TJ_OK) {
    printf("c_app: skipped, no GPU: %s\n", tj_ctx_last_error(ctx));
    tj_ctx_free(ctx);
    return 77;
  }

  // BLOCK is the kernel's tunable; 1024 elements per program.
  const char *defines[] = { "BLOCK=1024" };
  tj_compile_opts opts = { .path = path, .defines = defines, .ndefines = 1 };
  tj_kernel *k = NULL;
  if ((st = tj_kernel_compile(ctx, &opts, &k)) != TJ_OK) return fail(ctx, "compile", st);

  size_t bytes = (size_t)n * sizeof(float);
  float *x = malloc(bytes), *y = malloc(bytes), *z = malloc(bytes);
  if (!x || !y || !z) return 1;
  for (int i = 0; i < n; i++) {
    x[i] = (float)(i % 1000) * 0.5f;
    y[i] = 1.0f - (float)(i % 7);
  }
  void *dx = NULL, *dy = NULL, *dz = NULL;
  if ((st = tj_device_malloc(ctx, bytes, &dx)) != TJ_OK ||
      (st = tj_device_malloc(ctx, bytes, &dy)) != TJ_OK ||
      (st = tj_device_malloc(ctx, bytes, &dz)) != TJ_OK)
    return fail(ctx, "tj_device_malloc", st);
  if ((st = tj_memcpy_htod(ctx, dx, x, bytes)) != TJ_OK || (st = tj_memcpy_htod(ctx, dy, y, bytes)) != TJ_OK)
    return fail(ctx, "tj_memcpy_htod", st);

  // vector_add(z: *f32, x: *f32, y: *f32, n: i32), one program per 1024 elements.
  tj_arg args[4] = { tj_arg_ptr(dz, bytes), tj_arg_ptr(dx, bytes), tj_arg_ptr(dy, bytes), tj_arg_int(n) };
  unsigned grid[3] = { (unsigned)((n + 1023) / 1024), 1, 1 };
  if ((st = tj_kernel_launch(ctx, k, grid, args, 4, NULL)) != TJ_OK) return fail(ctx, "launch", st);
  if ((st = tj_stream_synchronize(ctx, NULL)) != TJ_OK) return fail(ctx, "synchronize", st);
  if ((st = tj_memcpy_dtoh(ctx, z, dz, bytes)) != TJ_OK) return fail(ctx, "tj_memcpy_dtoh", st);

  int bad = 0;
  for (int i = 0; i < n; i++) {
    if (z[i] != x[i] + y[i]) {  // one f32 addition: exact agreement expected
      if (bad++ < 5) fprintf(stderr, "c_app: z[%d] = %g, want %g\n", i, z[i], x[i] + y[i]);
    }
  }
  tj_device_free(ctx, dx);
  tj_device_free(ctx, dy);
  tj_device_free(ctx, dz);
  free(x);
  free(y);
  free(z);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  if (bad) {
    fprintf(stderr, "c_app: %d of %d elements wrong\n", bad, n);
    return 1;
  }
  printf("OK (%d elements)\n", n);
  return 0;
}
