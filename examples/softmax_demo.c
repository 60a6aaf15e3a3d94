/* softmax_demo: the README's main job, and a minimal use of the C API.
 *
 * Compiles the bundled examples/softmax.tj for f32, prints its tile IR, runs
 * it in the CPU interpreter over a 64 x 1000 matrix (masked tail: 1000 is not
 * a multiple of BLOCK = 1024) and compares with a double-precision C
 * reference. Exit 0 when the largest relative error is below 1e-5. When a GPU
 * is present the kernel also runs there and must agree with the interpreter.
 *
 *   usage: softmax_demo [path/to/softmax.tj]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tilejit/tilejit.h"

#ifndef TJ_SOURCE_DIR
#define TJ_SOURCE_DIR "."
#endif

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : TJ_SOURCE_DIR "/examples/softmax.tj";
  enum { M = 64, N = 1000 };
  tj_ctx *ctx;
  if (tj_ctx_create(&ctx) != TJ_OK) return 1;

  const char *defines[] = { "T=f32", "BLOCK=1024" };
  tj_compile_opts o = { .path = path, .defines = defines, .ndefines = 2,
                        .flags = TJ_COMPILE_FRONTEND };
  tj_kernel *k;
  if (tj_kernel_compile(ctx, &o, &k) != TJ_OK) {
    fprintf(stderr, "%s", tj_ctx_last_error(ctx));
    tj_ctx_free(ctx);
    return 1;
  }
  printf("%s\n", tj_kernel_tir(k));

  float *x = malloc(sizeof(float) * M * N), *y = malloc(sizeof(float) * M * N);
  if (!x || !y) return 1;
  for (int i = 0; i < M * N; i++) x[i] = (float)sin(0.37 * i) * 8.0f;

  // softmax(y, x, stride, n)
  tj_arg args[] = {
    tj_arg_ptr(y, sizeof(float) * M * N), tj_arg_ptr(x, sizeof(float) * M * N),
    tj_arg_int(N), tj_arg_int(N),
  };
  unsigned grid[3] = { M, 1, 1 };
  if (tj_kernel_interpret(ctx, k, grid, args, 4) != TJ_OK) {
    fprintf(stderr, "interpreter: %s\n", tj_ctx_last_error(ctx));
    return 1;
  }

  double worst = 0;
  for (int r = 0; r < M; r++) {
    const float *xr = x + r * N;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < N; j++) mx = fmax(mx, xr[j]);
    for (int j = 0; j < N; j++) sum += exp(xr[j] - mx);
    for (int j = 0; j < N; j++) {
      double want = exp(xr[j] - mx) / sum;
      double err = fabs(y[r * N + j] - want) / fmax(want, 1e-30);
      if (err > worst) worst = err;
    }
  }
  int ok = worst < 1e-5;
  printf("softmax %dx%d in the interpreter: max relative error %.3g vs a double reference: %s\n",
         M, N, worst, ok ? "PASS" : "FAIL");

  // With a GPU, the same kernel through LLVM/NVPTX on the device.
  int ndev = 0;
  if (ok && tj_device_count(ctx, &ndev) == TJ_OK && ndev > 0) {
    tj_kernel *kg;
    o.flags = 0;
    size_t bytes = sizeof(float) * M * N;
    float *yg = malloc(bytes);
    void *dx = NULL, *dy = NULL;
    if (!yg || tj_kernel_compile(ctx, &o, &kg) != TJ_OK || tj_device_malloc(ctx, bytes, &dx) != TJ_OK ||
        tj_device_malloc(ctx, bytes, &dy) != TJ_OK || tj_memcpy_htod(ctx, dx, x, bytes) != TJ_OK) {
      fprintf(stderr, "gpu: %s\n", tj_ctx_last_error(ctx));
      return 1;
    }
    tj_arg dargs[] = { tj_arg_ptr(dy, bytes), tj_arg_ptr(dx, bytes), tj_arg_int(N), tj_arg_int(N) };
    if (tj_kernel_launch(ctx, kg, grid, dargs, 4, NULL) != TJ_OK || tj_stream_synchronize(ctx, NULL) != TJ_OK ||
        tj_memcpy_dtoh(ctx, yg, dy, bytes) != TJ_OK) {
      fprintf(stderr, "gpu: %s\n", tj_ctx_last_error(ctx));
      return 1;
    }
    double gworst = 0;
    for (int i = 0; i < M * N; i++) {
      double err = fabs(yg[i] - y[i]) / fmax(fabs(y[i]), 1e-30);
      if (err > gworst) gworst = err;
    }
    ok = gworst < 1e-5;
    printf("the same kernel on the GPU: max relative difference %.3g vs the interpreter: %s\n", gworst,
           ok ? "PASS" : "FAIL");
    tj_device_free(ctx, dx);
    tj_device_free(ctx, dy);
    tj_kernel_free(kg);
    free(yg);
  }
  free(x);
  free(y);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  return ok ? 0 : 1;
}
