/* bench_gpu_launch.c: host cost of tj_kernel_launch against raw
 * cuLaunchKernel, in the same run, on an empty kernel.
 *
 * The raw side dlopens libcuda itself and launches the same PTX through
 * cuModuleLoadData/cuLaunchKernel with a prebuilt parameter array. Two
 * measurements per mode:
 *   submit:  the time to enqueue batches of 256 launches (the GPU queue never
 *            fills, so this is pure host cost), synchronising, untimed,
 *            between batches; median over batches, per launch;
 *   stream:  100 000 back-to-back launches then one synchronisation, per
 *            launch (bounded by whichever of host or GPU is slower).
 * Modes: raw; tilejit with pointer validation (same pointers each launch:
 * the remembered-address path); tilejit validating a new address on every
 * launch (two buffers alternating: a cuPointerGetAttributes per launch);
 * tilejit without validation. Goal: submit(tilejit) - submit(raw) <= 1 us.
 *
 * Then the host cost of a block call, same two measurements, on prebuilt
 * DLTensors (the C API's steady state): softmax 8x384x128 f16 (x, y),
 * softmax with y alternating between two buffers (each call a new output
 * address: the device check's allocation cache, blocks/core.c), and
 * LayerNorm 8x384x128 f16 with w, b, mean and rstd (six tensors). Goal: a
 * block call within ~1 us of tj_kernel_launch. The printed "driver
 * queries" are blk_check_device_ptr's cuPointerGetAttributes per call.
 * TILEJIT_LIBCUDA, when set, is the driver on both sides (a stand-in
 * driver measures the host path on a machine without a GPU).
 * Exits 77 without a GPU.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tilejit/blocks.h"
#include "tilejit/tilejit.h"
#include "../blocks/blocks_int.h"   // tj_blocks.ptr_queries

enum { LAUNCHES = 100000, BATCH = 256, WARMUP = 2000 };

static const char *const EMPTY = "kernel empty(x: *f32, y: *f32, n: i32) {\n}\n";

typedef int (*LaunchFn)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                        void *, void **, void **);

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct Bench {
  tj_ctx *ctx;
  tj_kernel *k;
  void *buf[2];
  void *stream;
  // raw
  LaunchFn launch;
  int (*sync)(void *);
  void *fn;
  // blocks
  tj_blocks *blk;
  DLTensor x, y[2], w, bias, mean, rstd;
} Bench;

enum { BM = 8, BS = 384, BK = 128 };
static int64_t shape3[3] = { BM, BS, BK }, shape1[1] = { BK }, shape2[2] = { BM, BS };

static DLTensor dl(void *data, int ndim, int64_t *shape, int bits) {
  DLTensor t = { .data = data, .device = { kDLCUDA, 0 }, .ndim = ndim,
                 .dtype = { kDLFloat, (uint8_t)bits, 1 }, .shape = shape };
  return t;
}

// mode: 0 raw, 1 tilejit, 2 tilejit alternating pointers, 3 tilejit no validation
static int launch_one(Bench *b, int mode, int i) {
  static const unsigned grid[3] = { 1, 1, 1 };
  if (mode == 0) {
    static unsigned long long x, y;
    static int n = 64;
    static void *params[3] = { &x, &y, &n };
    x = (unsigned long long)(uintptr_t)b->buf[0];
    y = (unsigned long long)(uintptr_t)b->buf[1];
    return b->launch(b->fn, 1, 1, 1, 128, 1, 1, 0, b->stream, params, NULL);
  }
  if (mode == 4 || mode == 5)
    return tj_softmax_fwd(b->blk, &b->x, &b->y[mode == 5 ? (i & 1) : 0], NULL, b->stream) != TJ_OK;
  if (mode == 6)
    return tj_layernorm_fwd(b->blk, &b->x, &b->w, &b->bias, 1e-5, &b->y[0], &b->mean, &b->rstd, b->stream) != TJ_OK;
  void *p = b->buf[mode == 2 ? (i & 1) : 0];
  tj_arg args[3] = { tj_arg_ptr(p, 0), tj_arg_ptr(b->buf[1], 0), tj_arg_int(64) };
  return tj_kernel_launch(b->ctx, b->k, grid, args, 3, b->stream) != TJ_OK;
}

static int measure(Bench *b, int mode, double *submit_us, double *stream_us) {
  if (mode == 3) tj_ctx_set_validate(b->ctx, 0);
  if (mode == 1) tj_ctx_set_validate(b->ctx, 1);
  for (int i = 0; i < WARMUP; i++)
    if (launch_one(b, mode, i)) return 1;
  if (b->sync(b->stream)) return 1;
  enum { NB = LAUNCHES / BATCH };
  static double per[NB];
  for (int j = 0; j < NB; j++) {
    double t0 = now_us();
    for (int i = 0; i < BATCH; i++)
      if (launch_one(b, mode, i)) return 1;
    per[j] = (now_us() - t0) / BATCH;
    if (b->sync(b->stream)) return 1;
  }
  qsort(per, NB, sizeof per[0], cmp_d);
  *submit_us = per[NB / 2];
  double t0 = now_us();
  for (int i = 0; i < LAUNCHES; i++)
    if (launch_one(b, mode, i)) return 1;
  if (b->sync(b->stream)) return 1;
  *stream_us = (now_us() - t0) / LAUNCHES;
  return 0;
}

int main(void) {
  Bench b = {0};
  if (tj_ctx_create(&b.ctx) != TJ_OK) return 1;
  int ndev = 0;
  if (tj_device_count(b.ctx, &ndev) != TJ_OK) {
    printf("skipped: %s\n", tj_ctx_last_error(b.ctx));
    tj_ctx_free(b.ctx);
    return 77;
  }
  tj_compile_opts o = { .source = EMPTY, .path = "empty.tj" };
  if (tj_kernel_compile(b.ctx, &o, &b.k) != TJ_OK) goto fail;
  if (tj_device_malloc(b.ctx, 4096, &b.buf[0]) != TJ_OK) goto fail;
  if (tj_device_malloc(b.ctx, 4096, &b.buf[1]) != TJ_OK) goto fail;
  if (tj_stream_create(b.ctx, &b.stream) != TJ_OK) goto fail;
  // The first tilejit launch compiles the specialised variant; do it now.
  {
    const unsigned grid[3] = { 1, 1, 1 };
    tj_arg args[3] = { tj_arg_ptr(b.buf[0], 0), tj_arg_ptr(b.buf[1], 0), tj_arg_int(64) };
    if (tj_kernel_launch(b.ctx, b.k, grid, args, 3, b.stream) != TJ_OK) goto fail;
    if (tj_stream_synchronize(b.ctx, b.stream) != TJ_OK) goto fail;
  }

  // Raw driver side: same PTX, same primary context (made current by the
  // tilejit calls above on this thread).
  const char *libpath = getenv("TILEJIT_LIBCUDA");
  void *lib = dlopen(libpath && *libpath ? libpath : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) { fprintf(stderr, "bench: cannot dlopen libcuda.so.1\n"); return 1; }
  int (*load)(void **, const void *) = (int (*)(void **, const void *))dlsym(lib, "cuModuleLoadData");
  int (*getfn)(void **, void *, const char *) =
      (int (*)(void **, void *, const char *))dlsym(lib, "cuModuleGetFunction");
  *(void **)&b.launch = dlsym(lib, "cuLaunchKernel");
  *(void **)&b.sync = dlsym(lib, "cuStreamSynchronize");
  void *mod = NULL;
  if (!load || !getfn || !b.launch || !b.sync || load(&mod, tj_kernel_ptx(b.k)) ||
      getfn(&b.fn, mod, "empty")) {
    fprintf(stderr, "bench: raw module load failed\n");
    return 1;
  }

  // Block tensors: 8x384x128 f16 x and two y, f16 w and b, f32 mean, rstd.
  void *bx, *by[2], *bw, *bb, *bm, *br;
  size_t nx = (size_t)BM * BS * BK * 2;
  if (tj_device_malloc(b.ctx, nx, &bx) != TJ_OK || tj_device_malloc(b.ctx, nx, &by[0]) != TJ_OK ||
      tj_device_malloc(b.ctx, nx, &by[1]) != TJ_OK || tj_device_malloc(b.ctx, BK * 2, &bw) != TJ_OK ||
      tj_device_malloc(b.ctx, BK * 2, &bb) != TJ_OK || tj_device_malloc(b.ctx, BM * BS * 4, &bm) != TJ_OK ||
      tj_device_malloc(b.ctx, BM * BS * 4, &br) != TJ_OK)
    goto fail;
  if (tj_memset_d8(b.ctx, bx, 0, nx) != TJ_OK || tj_memset_d8(b.ctx, bw, 0, BK * 2) != TJ_OK ||
      tj_memset_d8(b.ctx, bb, 0, BK * 2) != TJ_OK)
    goto fail;
  b.x = dl(bx, 3, shape3, 16);
  b.y[0] = dl(by[0], 3, shape3, 16);
  b.y[1] = dl(by[1], 3, shape3, 16);
  b.w = dl(bw, 1, shape1, 16);
  b.bias = dl(bb, 1, shape1, 16);
  b.mean = dl(bm, 2, shape2, 32);
  b.rstd = dl(br, 2, shape2, 32);
  if (tj_blocks_create(b.ctx, &b.blk) != TJ_OK) goto fail;

  static const char *const names[] = { "raw cuLaunchKernel", "tj_kernel_launch (validate, same ptrs)",
                                       "tj_kernel_launch (validate, new ptr each)",
                                       "tj_kernel_launch (no validation)",
                                       "block tj_softmax_fwd 8x384x128 f16",
                                       "block tj_softmax_fwd, y alternating",
                                       "block tj_layernorm_fwd 8x384x128 f16" };
  enum { NMODES = 7 };
  double submit[NMODES], stream[NMODES], queries[NMODES] = { 0 };
  for (int m = 0; m < NMODES; m++) {
    uint64_t q0 = b.blk->ptr_queries;
    int rc = measure(&b, m, &submit[m], &stream[m]);
    queries[m] = (double)(b.blk->ptr_queries - q0) / (WARMUP + 2.0 * LAUNCHES);
    if (rc) {
      fprintf(stderr, "bench: mode %d failed: %s\n", m, tj_ctx_last_error(b.ctx));
      return 1;
    }
  }
  tj_device_info di;
  tj_device_query(b.ctx, 0, &di);
  printf("launch overhead, empty kernel, %s, %d launches per mode\n", di.name, LAUNCHES);
  printf("%-42s %12s %12s %14s\n", "mode", "submit us", "stream us", "submit - raw");
  for (int m = 0; m < 4; m++)
    printf("%-42s %12.3f %12.3f %+14.3f\n", names[m], submit[m], stream[m], submit[m] - submit[0]);
  double over = submit[1] - submit[0];
  printf("goal <= 1.000 us over raw (validated, steady state): %s (%.3f us)\n", over <= 1.0 ? "met" : "MISSED",
         over);
  printf("\nblock call cost, prebuilt DLTensors, %d calls per mode\n", LAUNCHES);
  printf("%-42s %12s %12s %14s %14s\n", "mode", "submit us", "stream us", "submit - tj", "driver queries");
  for (int m = 4; m < NMODES; m++)
    printf("%-42s %12.3f %12.3f %+14.3f %14.3f\n", names[m], submit[m], stream[m], submit[m] - submit[1],
           queries[m]);
  double bover = submit[4] - submit[1];
  printf("goal <= 1.000 us over tj_kernel_launch (softmax block, steady state): %s (%.3f us)\n",
         bover <= 1.0 ? "met" : "MISSED", bover);
  tj_blocks_free(b.blk);
  tj_device_free(b.ctx, bx);
  tj_device_free(b.ctx, by[0]);
  tj_device_free(b.ctx, by[1]);
  tj_device_free(b.ctx, bw);
  tj_device_free(b.ctx, bb);
  tj_device_free(b.ctx, bm);
  tj_device_free(b.ctx, br);
  tj_stream_destroy(b.ctx, b.stream);
  tj_device_free(b.ctx, b.buf[0]);
  tj_device_free(b.ctx, b.buf[1]);
  tj_kernel_free(b.k);
  tj_ctx_free(b.ctx);
  return 0;
fail:
  fprintf(stderr, "bench: %s\n", tj_ctx_last_error(b.ctx));
  return 1;
}
