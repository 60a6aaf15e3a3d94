/* test_runtime.c: the CUDA runtime layer on a real GPU (public API only).
 *
 * Exits 77 (skipped) when there is no driver or device. Run with
 * CK_FORK=no (ctest sets it): CUDA state does not survive a fork, so every
 * test creates its own tilejit context. Results are compared exactly with a
 * double-precision C reference rounded to f32: one f32 addition is exact
 * after that rounding, so the tolerance is 0.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tilejit/tilejit.h"

static const char *const ADD1 =
    "kernel add_scalar(y: *f32, x: *f32, a: f32, n: i32) {\n"
    "    tunable BLOCK in {256};\n"
    "    let offs = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    let mask = offs < n;\n"
    "    store(y + offs, load(x + offs, mask) + a, mask);\n"
    "}\n";

static tj_ctx *new_ctx(void) {
  tj_ctx *ctx = NULL;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  return ctx;
}

#define CK(ctx, call)                                                                        \
  do {                                                                                       \
    tj_status s_ = (call);                                                                   \
    ck_assert_msg(s_ == TJ_OK, "%s: %s: %s", #call, tj_status_str(s_), tj_ctx_last_error(ctx)); \
  } while (0)

static tj_kernel *compile_file(tj_ctx *ctx, const char *rel, const char *define) {
  char *path = tj_test_path(rel);
  const char *defs[] = { define };
  tj_compile_opts o = { .path = path, .defines = defs, .ndefines = define ? 1 : 0 };
  tj_kernel *k = NULL;
  CK(ctx, tj_kernel_compile(ctx, &o, &k));
  free(path);
  return k;
}

static tj_kernel *compile_src(tj_ctx *ctx, const char *src) {
  tj_compile_opts o = { .source = src, .path = "inline.tj" };
  tj_kernel *k = NULL;
  CK(ctx, tj_kernel_compile(ctx, &o, &k));
  return k;
}

static void fill(float *v, int n, float scale) {
  for (int i = 0; i < n; i++) v[i] = scale * (float)((i * 37) % 1001) - 3.0f;
}

// z = x + y with vector_add.tj (BLOCK 1024) for n elements on `stream`; s
// scales the inputs (runs that reuse freed buffers see new data).
static void run_vector_add(tj_ctx *ctx, tj_kernel *k, int n, void *stream, float s) {
  size_t bytes = (size_t)n * sizeof(float);
  float *x = malloc(bytes), *y = malloc(bytes), *z = malloc(bytes);
  fill(x, n, 0.5f * s);
  fill(y, n, -0.25f * s);
  void *dx, *dy, *dz;
  CK(ctx, tj_device_malloc(ctx, bytes, &dx));
  CK(ctx, tj_device_malloc(ctx, bytes, &dy));
  CK(ctx, tj_device_malloc(ctx, bytes, &dz));
  CK(ctx, tj_memcpy_htod(ctx, dx, x, bytes));
  CK(ctx, tj_memcpy_htod(ctx, dy, y, bytes));
  CK(ctx, tj_memset_d8(ctx, dz, 0xff, bytes));  // NaNs: every element must be written
  tj_arg args[4] = { tj_arg_ptr(dz, bytes), tj_arg_ptr(dx, bytes), tj_arg_ptr(dy, bytes), tj_arg_int(n) };
  unsigned grid[3] = { (unsigned)((n + 1023) / 1024), 1, 1 };
  CK(ctx, tj_kernel_launch(ctx, k, grid, args, 4, stream));
  CK(ctx, tj_stream_synchronize(ctx, stream));
  CK(ctx, tj_memcpy_dtoh(ctx, z, dz, bytes));
  for (int i = 0; i < n; i++)
    ck_assert_msg(z[i] == (float)((double)x[i] + (double)y[i]), "n=%d: z[%d] = %g, want %g", n, i,
                  z[i], (double)x[i] + y[i]);
  CK(ctx, tj_device_free(ctx, dx));
  CK(ctx, tj_device_free(ctx, dy));
  CK(ctx, tj_device_free(ctx, dz));
  free(x);
  free(y);
  free(z);
}

START_TEST(launch_on_caller_stream) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = compile_file(ctx, "examples/vector_add.tj", "BLOCK=1024");
  void *stream = NULL;
  CK(ctx, tj_stream_create(ctx, &stream));
  ck_assert_ptr_nonnull(stream);
  // n divisible by 16 and not: two specialisations of the same kernel.
  run_vector_add(ctx, k, 1 << 20, stream, 1.0f);
  run_vector_add(ctx, k, 100003, stream, 1.0f);
  run_vector_add(ctx, k, 1, stream, 1.0f);
  // The default stream too.
  run_vector_add(ctx, k, 5000, NULL, 1.0f);
  // tj_memcpy_htod and tj_memset_d8 are synchronous: a kernel launched right
  // after them on a non-blocking stream reads what they wrote. (A copy from
  // pageable memory returns from the driver before its last chunk reaches
  // the device, and a memset is asynchronous: without the wait in memory.c
  // this read stale inputs now and then, or had its output overwritten.)
  // 64 MiB per tensor, four rounds with new contents.
  for (int round = 1; round <= 4; round++) run_vector_add(ctx, k, 1 << 24, stream, (float)round);
  CK(ctx, tj_stream_destroy(ctx, stream));
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

// Several kernels back to back on one stream, each consuming the previous
// one's output, synchronised once at the end.
START_TEST(kernels_back_to_back) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *va = compile_file(ctx, "examples/vector_add.tj", "BLOCK=256");
  tj_kernel *as = compile_src(ctx, ADD1);
  enum { N = 3000 };
  size_t bytes = N * sizeof(float);
  float x[N], out[N];
  fill(x, N, 1.0f);
  void *dx, *d1, *d2, *stream;
  CK(ctx, tj_stream_create(ctx, &stream));
  CK(ctx, tj_device_malloc(ctx, bytes, &dx));
  CK(ctx, tj_device_malloc(ctx, bytes, &d1));
  CK(ctx, tj_device_malloc(ctx, bytes, &d2));
  CK(ctx, tj_memcpy_htod(ctx, dx, x, bytes));
  unsigned g256[3] = { (N + 255) / 256, 1, 1 };
  // d1 = x + 2; d2 = d1 + x; d1 = d2 + 0.5; d2 = d1 + d1
  tj_arg a1[4] = { tj_arg_ptr(d1, bytes), tj_arg_ptr(dx, bytes), tj_arg_float(2.0), tj_arg_int(N) };
  CK(ctx, tj_kernel_launch(ctx, as, g256, a1, 4, stream));
  tj_arg a2[4] = { tj_arg_ptr(d2, bytes), tj_arg_ptr(d1, bytes), tj_arg_ptr(dx, bytes), tj_arg_int(N) };
  CK(ctx, tj_kernel_launch(ctx, va, g256, a2, 4, stream));
  tj_arg a3[4] = { tj_arg_ptr(d1, bytes), tj_arg_ptr(d2, bytes), tj_arg_float(0.5), tj_arg_int(N) };
  CK(ctx, tj_kernel_launch(ctx, as, g256, a3, 4, stream));
  tj_arg a4[4] = { tj_arg_ptr(d2, bytes), tj_arg_ptr(d1, bytes), tj_arg_ptr(d1, bytes), tj_arg_int(N) };
  CK(ctx, tj_kernel_launch(ctx, va, g256, a4, 4, stream));
  CK(ctx, tj_stream_synchronize(ctx, stream));
  CK(ctx, tj_memcpy_dtoh(ctx, out, d2, bytes));
  for (int i = 0; i < N; i++) {
    float t1 = x[i] + 2.0f, t2 = t1 + x[i], t3 = t2 + 0.5f, want = t3 + t3;
    ck_assert_msg(out[i] == want, "out[%d] = %g, want %g", i, out[i], want);
  }
  // dtod and memset helpers.
  CK(ctx, tj_memcpy_dtod(ctx, d1, d2, bytes));
  CK(ctx, tj_memcpy_dtoh(ctx, x, d1, bytes));
  ck_assert_mem_eq(x, out, bytes);
  CK(ctx, tj_memset_d8(ctx, d1, 0, bytes));
  CK(ctx, tj_memcpy_dtoh(ctx, x, d1, bytes));
  for (int i = 0; i < N; i++) ck_assert(x[i] == 0.0f);
  CK(ctx, tj_device_free(ctx, dx));
  CK(ctx, tj_device_free(ctx, d1));
  CK(ctx, tj_device_free(ctx, d2));
  CK(ctx, tj_stream_destroy(ctx, stream));
  tj_kernel_free(va);
  tj_kernel_free(as);
  tj_ctx_free(ctx);
}
END_TEST

// Memory and a stream made by another user of the primary context (here
// the driver API directly, as the CUDA runtime or PyTorch would).
START_TEST(interop_foreign_memory_and_stream) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  ck_assert_ptr_nonnull(lib);
  int (*cuDeviceGet)(int *, int) = (int (*)(int *, int))dlsym(lib, "cuDeviceGet");
  int (*retain)(void **, int) = (int (*)(void **, int))dlsym(lib, "cuDevicePrimaryCtxRetain");
  int (*release)(int) = (int (*)(int))dlsym(lib, "cuDevicePrimaryCtxRelease_v2");
  int (*setcur)(void *) = (int (*)(void *))dlsym(lib, "cuCtxSetCurrent");
  int (*memalloc)(unsigned long long *, size_t) =
      (int (*)(unsigned long long *, size_t))dlsym(lib, "cuMemAlloc_v2");
  int (*memfree)(unsigned long long) = (int (*)(unsigned long long))dlsym(lib, "cuMemFree_v2");
  int (*screate)(void **, unsigned) = (int (*)(void **, unsigned))dlsym(lib, "cuStreamCreate");
  int (*sdestroy)(void *) = (int (*)(void *))dlsym(lib, "cuStreamDestroy_v2");
  ck_assert(cuDeviceGet && retain && release && setcur && memalloc && memfree && screate && sdestroy);
  int dev;
  void *pctx;
  ck_assert_int_eq(cuDeviceGet(&dev, 0), 0);
  ck_assert_int_eq(retain(&pctx, dev), 0);
  ck_assert_int_eq(setcur(pctx), 0);
  enum { N = 4096 };
  size_t bytes = N * sizeof(float);
  unsigned long long fx, fy;
  void *fs;
  ck_assert_int_eq(memalloc(&fx, bytes), 0);
  ck_assert_int_eq(memalloc(&fy, bytes), 0);
  ck_assert_int_eq(screate(&fs, 0), 0);

  tj_ctx *ctx = new_ctx();
  tj_kernel *k = compile_src(ctx, ADD1);
  float x[N], y[N];
  fill(x, N, 0.75f);
  CK(ctx, tj_memcpy_htod(ctx, (void *)(uintptr_t)fx, x, bytes));
  tj_arg args[4] = { tj_arg_ptr((void *)(uintptr_t)fy, bytes), tj_arg_ptr((void *)(uintptr_t)fx, bytes),
                     tj_arg_float(-1.5), tj_arg_int(N) };
  unsigned grid[3] = { N / 256, 1, 1 };
  CK(ctx, tj_kernel_launch(ctx, k, grid, args, 4, fs));
  CK(ctx, tj_stream_synchronize(ctx, fs));
  CK(ctx, tj_memcpy_dtoh(ctx, y, (void *)(uintptr_t)fy, bytes));
  for (int i = 0; i < N; i++) ck_assert_msg(y[i] == x[i] - 1.5f, "y[%d] = %g", i, y[i]);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  // Our context released its reference; the caller's is intact.
  ck_assert_int_eq(sdestroy(fs), 0);
  ck_assert_int_eq(memfree(fx), 0);
  ck_assert_int_eq(memfree(fy), 0);
  ck_assert_int_eq(setcur(NULL), 0);
  ck_assert_int_eq(release(dev), 0);
  dlclose(lib);
}
END_TEST

typedef struct ThreadJob {
  tj_ctx *ctx;
  tj_kernel *k;
  void *dx, *dy;
  tj_status st;
} ThreadJob;

static void *thread_launch(void *p) {
  ThreadJob *j = p;
  // A fresh thread has no current CUDA context: tilejit must set its own.
  tj_arg args[4] = { tj_arg_ptr(j->dy, 0), tj_arg_ptr(j->dx, 0), tj_arg_float(1.0), tj_arg_int(256) };
  unsigned grid[3] = { 1, 1, 1 };
  j->st = tj_kernel_launch(j->ctx, j->k, grid, args, 4, NULL);
  if (j->st == TJ_OK) j->st = tj_stream_synchronize(j->ctx, NULL);
  return NULL;
}

START_TEST(launch_from_other_thread_and_context) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = compile_src(ctx, ADD1);
  void *dx, *dy;
  float x[256], y[256];
  fill(x, 256, 2.0f);
  CK(ctx, tj_device_malloc(ctx, sizeof x, &dx));
  CK(ctx, tj_device_malloc(ctx, sizeof y, &dy));
  CK(ctx, tj_memcpy_htod(ctx, dx, x, sizeof x));
  ThreadJob j = { ctx, k, dx, dy, TJ_ERR_INTERNAL };
  pthread_t t;
  ck_assert_int_eq(pthread_create(&t, NULL, thread_launch, &j), 0);
  pthread_join(t, NULL);
  ck_assert_msg(j.st == TJ_OK, "%s", tj_ctx_last_error(ctx));
  CK(ctx, tj_memcpy_dtoh(ctx, y, dy, sizeof y));
  for (int i = 0; i < 256; i++) ck_assert(y[i] == x[i] + 1.0f);
  // A second context on the same device shares the primary context: the
  // same kernel and pointers work there.
  tj_ctx *ctx2 = NULL;
  CK(ctx, tj_ctx_create_device(0, &ctx2));
  j.ctx = ctx2;
  j.st = TJ_ERR_INTERNAL;
  CK(ctx, tj_memset_d8(ctx, dy, 0, sizeof y));
  thread_launch(&j);
  ck_assert_msg(j.st == TJ_OK, "%s", tj_ctx_last_error(ctx2));
  CK(ctx, tj_memcpy_dtoh(ctx, y, dy, sizeof y));
  for (int i = 0; i < 256; i++) ck_assert(y[i] == x[i] + 1.0f);
  tj_ctx_free(ctx2);
  CK(ctx, tj_device_free(ctx, dx));
  CK(ctx, tj_device_free(ctx, dy));
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(host_pointer_rejected) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = compile_src(ctx, ADD1);
  float *host = malloc(1024 * sizeof(float));
  void *dev;
  CK(ctx, tj_device_malloc(ctx, 1024 * sizeof(float), &dev));
  unsigned grid[3] = { 4, 1, 1 };
  tj_arg args[4] = { tj_arg_ptr(dev, 0), tj_arg_ptr(host, 0), tj_arg_float(1.0), tj_arg_int(1024) };
  tj_status st = tj_kernel_launch(ctx, k, grid, args, 4, NULL);
  ck_assert_int_eq(st, TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "'x'"));
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "host"));
  // After a good launch with a device pointer in that slot, a host pointer
  // is still caught (the remembered address is a different one).
  args[1] = tj_arg_ptr(dev, 0);
  CK(ctx, tj_kernel_launch(ctx, k, grid, args, 4, NULL));
  args[1] = tj_arg_ptr(host, 0);
  ck_assert_int_eq(tj_kernel_launch(ctx, k, grid, args, 4, NULL), TJ_ERR_INVALID_ARG);
  CK(ctx, tj_stream_synchronize(ctx, NULL));
  // A device that does not exist.
  int n = 0;
  CK(ctx, tj_device_count(ctx, &n));
  tj_ctx *bad = NULL;
  CK(ctx, tj_ctx_create_device(n, &bad));
  args[1] = tj_arg_ptr(dev, 0);
  ck_assert_int_eq(tj_kernel_launch(bad, k, grid, args, 4, NULL), TJ_ERR_NO_DEVICE);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(bad), "does not exist"));
  tj_ctx_free(bad);
  CK(ctx, tj_device_free(ctx, dev));
  free(host);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(kernel_info_and_devices) {
  tj_ctx *ctx = new_ctx();
  int n = 0;
  CK(ctx, tj_device_count(ctx, &n));
  ck_assert_int_ge(n, 1);
  tj_device_info di;
  CK(ctx, tj_device_query(ctx, 0, &di));
  ck_assert(strlen(di.name) > 0);
  ck_assert_int_ge(di.cc_major, 8);
  ck_assert_int_gt(di.sm_count, 0);
  ck_assert_uint_gt(di.total_mem, (size_t)1 << 30);
  int ver = 0;
  CK(ctx, tj_driver_version(ctx, &ver));
  ck_assert_int_ge(ver, 12000);

  tj_kernel *k = compile_file(ctx, "examples/vector_add.tj", "BLOCK=512");
  tj_kernel_resources r;
  CK(ctx, tj_kernel_info(ctx, k, &r));
  ck_assert_str_eq(r.arch, di.arch);  // compiled for this device by default
  ck_assert_int_gt(r.num_regs, 0);
  ck_assert_int_le(r.num_regs, 255);
  ck_assert_int_eq(r.block_threads, 32 * tj_kernel_num_warps(k));
  ck_assert_int_ge(r.max_threads_per_block, r.block_threads);
  ck_assert_int_eq(r.binary_version, di.cc_major * 10 + di.cc_minor);
  // A vector add does not spill. The counts come from the JIT's info log
  // (empty under compute-sanitizer, and when the driver's JIT cache
  // answers); without a log, no local memory still proves 0.
  ck_assert_int_eq(r.local_bytes, 0);
  ck_assert_msg(r.spill_stores == 0 && r.spill_loads == 0, "spills %d / %d", r.spill_stores, r.spill_loads);
  char *text = NULL;
  CK(ctx, tj_kernel_info_text(ctx, k, &text));
  ck_assert_ptr_nonnull(strstr(text, "registers:"));
  tj_free(text);
  tj_kernel_free(k);

  // A second compile of the same kernel is a disk-cache hit (the PTX; the
  // driver JIT-compiles it, or its own JIT cache answers): same resources.
  tj_ctx *ctx2 = new_ctx();
  k = compile_file(ctx2, "examples/vector_add.tj", "BLOCK=512");
  tj_kernel_resources r2;
  CK(ctx2, tj_kernel_info(ctx2, k, &r2));
  ck_assert_int_eq(r2.num_regs, r.num_regs);
  tj_cache_summary cs;
  CK(ctx2, tj_cache_stats(ctx2, &cs));
  if (cs.enabled) ck_assert_uint_ge(cs.disk_hits, 1);
  tj_kernel_free(k);
  tj_ctx_free(ctx2);
  tj_ctx_free(ctx);
}
END_TEST

static Suite *runtime_suite(void) {
  Suite *s = suite_create("runtime");
  TCase *tc = tcase_create("gpu");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, launch_on_caller_stream);
  tcase_add_test(tc, kernels_back_to_back);
  tcase_add_test(tc, interop_foreign_memory_and_stream);
  tcase_add_test(tc, launch_from_other_thread_and_context);
  tcase_add_test(tc, host_pointer_rejected);
  tcase_add_test(tc, kernel_info_and_devices);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  // CUDA state does not survive fork(); run every test in this process.
  setenv("CK_FORK", "no", 1);
  tj_ctx *ctx = NULL;
  if (tj_ctx_create(&ctx) != TJ_OK) return 1;
  int n = 0;
  tj_status st = tj_device_count(ctx, &n);
  if (st != TJ_OK) {
    printf("skipped: %s\n", tj_ctx_last_error(ctx));
    tj_ctx_free(ctx);
    return 77;
  }
  tj_ctx_free(ctx);
  return tj_test_run(runtime_suite());
}
