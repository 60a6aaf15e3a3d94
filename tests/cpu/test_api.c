/* test_api.c: every public entry point rejects bad input with a status and
 * a message, and the runtime calls fail cleanly without a CUDA driver.
 *
 * main() points TILEJIT_LIBCUDA at a file that does not exist, so these
 * tests see "no driver" even on the GPU machine. The launcher's argument
 * marshalling is checked through its error paths (counts, kinds, ranges),
 * which all run before the driver is needed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include "runtime/rt.h"

static const char *const KSRC =
    "kernel scale(y: *f32, x: *f32, a: f16, b: i8, n: i32) {\n"
    "    tunable BLOCK in {128, 256};\n"
    "    let offs = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    let mask = offs < n;\n"
    "    let v = load(x + offs, mask) * cast(a, f32) + cast(b, f32);\n"
    "    store(y + offs, v, mask);\n"
    "}\n";

static tj_ctx *new_ctx(void) {
  tj_ctx *ctx = NULL;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_ptr_nonnull(ctx);
  ck_assert_str_eq(tj_ctx_last_error(ctx), "");
  // Keep these tests' compiles out of the shared cache.
  ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, "/tmp/tj-test-api-cache"), TJ_OK);
  return ctx;
}

static tj_kernel *frontend(tj_ctx *ctx) {
  tj_compile_opts o = { .source = KSRC, .path = "scale.tj", .flags = TJ_COMPILE_FRONTEND };
  tj_kernel *k = NULL;
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  ck_assert_msg(st == TJ_OK, "front end failed: %s", tj_ctx_last_error(ctx));
  return k;
}

START_TEST(context_and_strings) {
  ck_assert_int_eq(tj_ctx_create(NULL), TJ_ERR_INVALID_ARG);
  tj_ctx *ctx = (tj_ctx *)0x1;
  ck_assert_int_eq(tj_ctx_create_device(-1, &ctx), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  ck_assert_int_eq(tj_ctx_create_device(0, NULL), TJ_ERR_INVALID_ARG);
  // Creating a context for a device that does not exist succeeds: no driver
  // call happens until one is needed.
  ck_assert_int_eq(tj_ctx_create_device(7, &ctx), TJ_OK);
  ck_assert_int_eq(tj_ctx_device(ctx), 7);
  tj_ctx_free(ctx);
  tj_ctx_free(NULL);
  tj_kernel_free(NULL);
  ck_assert_int_eq(tj_ctx_device(NULL), -1);
  ck_assert(strlen(tj_ctx_last_error(NULL)) > 0);
  ck_assert_str_eq(tj_status_str(TJ_ERR_NO_DEVICE), "TJ_ERR_NO_DEVICE");
  ck_assert_str_eq(tj_status_str((tj_status)999), "TJ_ERR_UNKNOWN");
  ck_assert_str_eq(tj_version(), "0.1.0");
  ck_assert(strlen(tj_llvm_version()) > 0);
  ck_assert_int_eq(tj_ctx_set_validate(NULL, 1), TJ_ERR_INVALID_ARG);
}
END_TEST

START_TEST(compile_bad_input) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = (tj_kernel *)0x1;
  tj_compile_opts o = { .source = KSRC };
  ck_assert_int_eq(tj_kernel_compile(NULL, &o, &k), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, NULL, &k), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_null(k);
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &o, NULL), TJ_ERR_INVALID_ARG);
  tj_compile_opts none = {0};
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &none, &k), TJ_ERR_INVALID_ARG);

  const int bad_warps[] = { -1, 3, 6, 64 };
  for (int i = 0; i < 4; i++) {
    tj_compile_opts w = { .source = KSRC, .num_warps = bad_warps[i], .flags = TJ_COMPILE_FRONTEND };
    ASSERT_ERR(ctx, tj_kernel_compile(ctx, &w, &k), TJ_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "num_warps"));
  }

  const char *bad_defs[][1] = { { "BLOCK" }, { "=128" }, { "BLOCK=" }, { NULL } };
  for (int i = 0; i < 4; i++) {
    tj_compile_opts d = { .source = KSRC, .defines = bad_defs[i], .ndefines = 1,
                          .flags = TJ_COMPILE_FRONTEND };
    ASSERT_ERR(ctx, tj_kernel_compile(ctx, &d, &k), TJ_ERR_INVALID_ARG);
  }
  tj_compile_opts nd = { .source = KSRC, .ndefines = -1, .flags = TJ_COMPILE_FRONTEND };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &nd, &k), TJ_ERR_INVALID_ARG);
  tj_compile_opts nullset = { .source = KSRC, .ndefines = 2, .flags = TJ_COMPILE_FRONTEND };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &nullset, &k), TJ_ERR_INVALID_ARG);
  // A define outside the tunable's set, and one naming nothing.
  const char *out_of_set[] = { "BLOCK=100" };
  tj_compile_opts os = { .source = KSRC, .defines = out_of_set, .ndefines = 1,
                         .flags = TJ_COMPILE_FRONTEND };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &os, &k), TJ_ERR_COMPILE);
  const char *unknown[] = { "NOPE=1" };
  tj_compile_opts un = { .source = KSRC, .defines = unknown, .ndefines = 1,
                         .flags = TJ_COMPILE_FRONTEND };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &un, &k), TJ_ERR_COMPILE);

  tj_compile_opts missing = { .path = "/nonexistent/dir/k.tj" };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &missing, &k), TJ_ERR_IO);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "/nonexistent/dir/k.tj"));

  tj_compile_opts syntax = { .source = "kernel f( {", .path = "bad.tj" };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &syntax, &k), TJ_ERR_COMPILE);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "bad.tj:1:"));

  tj_compile_opts flags = { .source = KSRC, .flags = TJ_COMPILE_FRONTEND | (1u << 9) };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &flags, &k), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "unknown flags 0x200"));
  tj_compile_opts badassume = { .source = KSRC, .assume = "nosuch=16" };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &badassume, &k), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "no parameter 'nosuch'"));

  tj_compile_opts arch = { .source = KSRC, .arch = "compute_80" };
  ASSERT_ERR(ctx, tj_kernel_compile(ctx, &arch, &k), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_null(k);

  // A good compile clears the previous message.
  k = frontend(ctx);
  ck_assert_str_eq(tj_ctx_last_error(ctx), "");
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(kernel_queries_bad_input) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = frontend(ctx);
  ck_assert_str_eq(tj_kernel_name(k), "scale");
  ck_assert_ptr_null(tj_kernel_ptx(k));  // front end only
  ck_assert_ptr_null(tj_kernel_name(NULL));
  ck_assert_ptr_null(tj_kernel_ptx(NULL));
  ck_assert_int_eq(tj_kernel_num_params(NULL), 0);
  ck_assert_int_eq(tj_kernel_num_params(k), 5);
  tj_param_info pi;
  ck_assert_int_eq(tj_kernel_param(k, 5, &pi), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_kernel_param(k, -1, &pi), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_kernel_param(k, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_kernel_param(NULL, 0, &pi), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_kernel_param(k, 2, &pi), TJ_OK);
  ck_assert_str_eq(pi.name, "a");
  ck_assert_int_eq(pi.dtype, TJ_F16);
  tj_kernel_resources r;
  ck_assert_int_eq(tj_kernel_info(NULL, k, &r), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info(ctx, NULL, &r), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info(ctx, k, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info(ctx, k, &r), TJ_ERR_NO_DEVICE);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(launch_bad_arguments) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = frontend(ctx);
  float buf[4];
  const unsigned grid[3] = { 1, 1, 1 };
  tj_arg good[5] = { tj_arg_ptr(buf, sizeof buf), tj_arg_ptr(buf, sizeof buf), tj_arg_float(0.5),
                     tj_arg_int(3), tj_arg_int(4) };
  ck_assert_int_eq(tj_kernel_launch(NULL, k, grid, good, 5, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, NULL, grid, good, 5, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, NULL, good, 5, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, good, 4, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "takes 5 arguments, got 4"));
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, good, -1, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, NULL, 5, NULL), TJ_ERR_INVALID_ARG);

  tj_arg wrong[5];
  memcpy(wrong, good, sizeof wrong);
  wrong[0] = tj_arg_int(0);  // pointer expected
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "'y'"));
  memcpy(wrong, good, sizeof wrong);
  wrong[4] = tj_arg_float(4.0);  // integer expected
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);
  memcpy(wrong, good, sizeof wrong);
  wrong[2] = tj_arg_ptr(buf, 0);  // float expected
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);
  memcpy(wrong, good, sizeof wrong);
  wrong[3].kind = (tj_arg_kind)42;
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);

  // Integers must fit the parameter's dtype (b: i8, n: i32).
  memcpy(wrong, good, sizeof wrong);
  wrong[3] = tj_arg_int(128);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "does not fit in i8"));
  memcpy(wrong, good, sizeof wrong);
  wrong[4] = tj_arg_int((int64_t)1 << 31);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "does not fit in i32"));

  // An empty grid is a no-op, even without a GPU.
  const unsigned empty[3] = { 0, 1, 1 };
  ck_assert_int_eq(tj_kernel_launch(ctx, k, empty, good, 5, NULL), TJ_OK);
  // Everything checks out, but there is no driver.
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, good, 5, NULL), TJ_ERR_NO_DEVICE);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "no CUDA driver"));
  // An integer where a float is expected is accepted (converted).
  memcpy(wrong, good, sizeof wrong);
  wrong[2] = tj_arg_int(2);
  ASSERT_ERR(ctx, tj_kernel_launch(ctx, k, grid, wrong, 5, NULL), TJ_ERR_NO_DEVICE);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(interpret_bad_arguments) {
  tj_ctx *ctx = new_ctx();
  tj_kernel *k = frontend(ctx);
  float x[4] = {0}, y[4] = {0};
  const unsigned grid[3] = { 1, 1, 1 };
  tj_arg args[5] = { tj_arg_ptr(y, sizeof y), tj_arg_ptr(x, sizeof x), tj_arg_float(0.5),
                     tj_arg_int(3), tj_arg_int(4) };
  ck_assert_int_eq(tj_kernel_interpret(NULL, k, grid, args, 5), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_interpret(ctx, NULL, grid, args, 5), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_interpret(ctx, k, NULL, args, 5), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_interpret(ctx, k, grid, args, 3), TJ_ERR_INVALID_ARG);
  args[1] = tj_arg_int(1);
  ASSERT_ERR(ctx, tj_kernel_interpret(ctx, k, grid, args, 5), TJ_ERR_INVALID_ARG);
  args[1] = tj_arg_ptr(NULL, 16);
  ASSERT_ERR(ctx, tj_kernel_interpret(ctx, k, grid, args, 5), TJ_ERR_INVALID_ARG);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(device_calls_without_driver) {
  tj_ctx *ctx = new_ctx();
  int n = -1;
  ck_assert_int_eq(tj_device_count(NULL, &n), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_device_count(ctx, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_device_count(ctx, &n), TJ_ERR_NO_DEVICE);
  ck_assert_int_eq(n, 0);
  ck_assert_ptr_nonnull(strstr(tj_ctx_last_error(ctx), "/nonexistent/libcuda.so.1"));
  int v = -1;
  ASSERT_ERR(ctx, tj_driver_version(ctx, &v), TJ_ERR_NO_DEVICE);
  ck_assert_int_eq(v, 0);
  ASSERT_ERR(ctx, tj_driver_version(ctx, NULL), TJ_ERR_INVALID_ARG);
  tj_device_info di;
  ASSERT_ERR(ctx, tj_device_query(ctx, 0, &di), TJ_ERR_NO_DEVICE);
  ASSERT_ERR(ctx, tj_device_query(ctx, 0, NULL), TJ_ERR_INVALID_ARG);

  void *p = (void *)0x1;
  ck_assert_int_eq(tj_device_malloc(NULL, 16, &p), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_device_malloc(ctx, 16, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_device_malloc(ctx, 0, &p), TJ_ERR_INVALID_ARG);
  ck_assert_ptr_null(p);
  ASSERT_ERR(ctx, tj_device_malloc(ctx, 16, &p), TJ_ERR_NO_DEVICE);
  ck_assert_int_eq(tj_device_free(ctx, NULL), TJ_OK);
  ASSERT_ERR(ctx, tj_device_free(ctx, (void *)0x1000), TJ_ERR_NO_DEVICE);
  char host[8];
  ASSERT_ERR(ctx, tj_memcpy_htod(ctx, NULL, host, 8), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_memcpy_dtoh(ctx, host, NULL, 8), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_memcpy_dtod(ctx, NULL, NULL, 8), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_memset_d8(ctx, NULL, 0, 8), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_memcpy_htod(ctx, NULL, NULL, 0), TJ_OK);  // nothing to copy
  ASSERT_ERR(ctx, tj_memcpy_htod(ctx, (void *)0x1000, host, 8), TJ_ERR_NO_DEVICE);
  ASSERT_ERR(ctx, tj_memcpy_dtoh(ctx, host, (void *)0x1000, 8), TJ_ERR_NO_DEVICE);
  ASSERT_ERR(ctx, tj_memset_d8(ctx, (void *)0x1000, 0, 8), TJ_ERR_NO_DEVICE);
  void *s = (void *)0x1;
  ASSERT_ERR(ctx, tj_stream_create(ctx, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_stream_create(ctx, &s), TJ_ERR_NO_DEVICE);
  ck_assert_ptr_null(s);
  ASSERT_ERR(ctx, tj_stream_synchronize(ctx, NULL), TJ_ERR_NO_DEVICE);
  ck_assert_int_eq(tj_stream_destroy(ctx, NULL), TJ_OK);
  ck_assert_int_eq(tj_stream_synchronize(NULL, NULL), TJ_ERR_INVALID_ARG);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(cache_calls_bad_input) {
  tj_ctx *ctx = new_ctx();
  const char *dir = NULL;
  ck_assert_int_eq(tj_cache_dir(NULL, &dir), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_cache_dir(ctx, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_cache_dir(ctx, &dir), TJ_OK);
  ck_assert_str_eq(dir, "/tmp/tj-test-api-cache");
  ASSERT_ERR(ctx, tj_ctx_set_cache_dir(ctx, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_ctx_set_cache_dir(ctx, ""), TJ_ERR_INVALID_ARG);
  tj_cache_entry *e;
  int n;
  ck_assert_int_eq(tj_cache_list(NULL, &e, &n), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_cache_list(ctx, NULL, &n), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_cache_list(ctx, &e, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_cache_clear(NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_cache_stats(NULL, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_cache_stats(ctx, NULL), TJ_ERR_INVALID_ARG);
  tj_cache_list_free(NULL);
  // A directory that does not exist is an empty cache, not an error.
  ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, "/nonexistent/tilejit-cache"), TJ_OK);
  ck_assert_int_eq(tj_cache_list(ctx, &e, &n), TJ_OK);
  ck_assert_int_eq(n, 0);
  tj_cache_list_free(e);
  // No HOME and no overrides: no directory, said so.
  const char *home = getenv("HOME");
  char *saved = home ? strdup(home) : NULL;
  unsetenv("HOME");
  unsetenv("XDG_CACHE_HOME");
  unsetenv("TILEJIT_CACHE_DIR");
  tj_ctx *bare = NULL;
  ck_assert_int_eq(tj_ctx_create(&bare), TJ_OK);
  ASSERT_ERR(bare, tj_cache_dir(bare, &dir), TJ_ERR_NOT_FOUND);
  tj_cache_summary s;
  ck_assert_int_eq(tj_cache_stats(bare, &s), TJ_OK);
  ck_assert_int_eq(s.enabled, 0);
  tj_ctx_free(bare);
  setenv("XDG_CACHE_HOME", "/tmp/xdg", 1);
  ck_assert_int_eq(tj_ctx_create(&bare), TJ_OK);
  ck_assert_int_eq(tj_cache_dir(bare, &dir), TJ_OK);
  ck_assert_str_eq(dir, "/tmp/xdg/tilejit");
  tj_ctx_free(bare);
  if (saved) setenv("HOME", saved, 1);
  free(saved);
  tj_ctx_free(ctx);
}
END_TEST

// Without a device, compiling picks sm_80 unless opts->arch says otherwise.
START_TEST(default_arch_without_device) {
  tj_ctx *ctx = new_ctx();
  char arch[16];
  ck_assert_int_eq(rt_default_arch(ctx, NULL, arch), TJ_OK);
  ck_assert_str_eq(arch, "sm_80");
  ck_assert_str_eq(tj_ctx_last_error(ctx), "");
  ck_assert_int_eq(rt_default_arch(ctx, "sm_90a", arch), TJ_OK);
  ck_assert_str_eq(arch, "sm_90a");
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(dump_env_parsing) {
  setenv("TILEJIT_DUMP", "tir,ptx", 1);
  ck_assert(api_dump_wanted("tir"));
  ck_assert(api_dump_wanted("ptx"));
  ck_assert(!api_dump_wanted("llvm"));
  ck_assert(!api_dump_wanted("pt"));
  setenv("TILEJIT_DUMP", "all", 1);
  ck_assert(api_dump_wanted("llvm"));
  unsetenv("TILEJIT_DUMP");
  ck_assert(!api_dump_wanted("tir"));
}
END_TEST

static Suite *api_suite(void) {
  Suite *s = suite_create("api");
  TCase *tc = tcase_create("bad_input");
  tcase_add_test(tc, context_and_strings);
  tcase_add_test(tc, compile_bad_input);
  tcase_add_test(tc, kernel_queries_bad_input);
  tcase_add_test(tc, launch_bad_arguments);
  tcase_add_test(tc, interpret_bad_arguments);
  tcase_add_test(tc, device_calls_without_driver);
  tcase_add_test(tc, cache_calls_bad_input);
  tcase_add_test(tc, default_arch_without_device);
  tcase_add_test(tc, dump_env_parsing);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  return tj_test_run(api_suite());
}
