/* test_api_errors.c: the invalid inputs of the public entry points that the
 * module suites (test_api.c, test_autotune.c, test_blocks.c, test_dropout.c,
 * test_attention.c) do not already reject, so that every row of
 * docs/errors.md is backed by a test: null handles and out-pointers, counts
 * and indices out of range, queries on a front-end-only kernel, and values a
 * handle-less call can only answer with a sentinel.
 *
 * main() points TILEJIT_LIBCUDA at a missing file: "no GPU" everywhere.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tilejit/autotune.h"
#include "tilejit/blocks.h"

static const char *const KSRC =
    "kernel scale(y: *f32, x: *f32, n: i32) {\n"
    "    tunable BLOCK in {64, 128};\n"
    "    let o = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    store(y + o, load(x + o, o < n) * 2.0, o < n);\n"
    "}\n";

static tj_ctx *new_ctx(void) {
  tj_ctx *ctx = NULL;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, "/tmp/tj-test-api-errors-cache"), TJ_OK);
  return ctx;
}

// ---------------------------------------------------------------- tilejit.h

START_TEST(strings_and_allocator) {
  ck_assert_str_eq(tj_dtype_name((tj_dtype)-1), "?");
  ck_assert_str_eq(tj_dtype_name(TJ_DTYPE_COUNT), "?");
  ck_assert_str_eq(tj_dtype_name(TJ_BF16), "bf16");
  ck_assert_str_eq(tj_status_str((tj_status)-1), "TJ_ERR_UNKNOWN");
  ck_assert_str_eq(tj_status_str(TJ_ERR_NO_MEMORY), "TJ_ERR_NO_MEMORY");
  // An allocator with a missing function is refused; NULL restores malloc.
  tj_allocator partial = { 0 };
  ck_assert_int_eq(tj_set_allocator(&partial), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_set_allocator(NULL), TJ_OK);
  tj_free(NULL);
}
END_TEST

// Copies of 0 bytes succeed without touching the driver (there is none here),
// whatever the pointers.
START_TEST(memcpy_zero_bytes) {
  tj_ctx *ctx = new_ctx();
  char host[8] = { 0 };
  ck_assert_int_eq(tj_memcpy_dtoh(ctx, NULL, NULL, 0), TJ_OK);
  ck_assert_int_eq(tj_memcpy_dtoh(ctx, host, (void *)0x1000, 0), TJ_OK);
  ck_assert_int_eq(tj_memcpy_htod(ctx, (void *)0x1000, host, 0), TJ_OK);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(kernel_text_queries) {
  tj_ctx *ctx = new_ctx();
  ck_assert_ptr_null(tj_kernel_tir(NULL));
  ck_assert_ptr_null(tj_kernel_llvm(NULL));
  ck_assert_ptr_null(tj_kernel_ptx_annotated(NULL));
  ck_assert_int_eq(tj_kernel_num_warps(NULL), 0);
  const char *defs[] = { "BLOCK=64" };
  tj_compile_opts o = { .source = KSRC, .defines = defs, .ndefines = 1, .flags = TJ_COMPILE_FRONTEND };
  tj_kernel *k = NULL;
  ck_assert_int_eq(tj_kernel_compile(ctx, &o, &k), TJ_OK);
  // Front end only: no LLVM, no PTX, so nothing to annotate.
  ck_assert_ptr_null(tj_kernel_llvm(k));
  ck_assert_ptr_null(tj_kernel_ptx_annotated(k));
  char *text = (char *)0x1;
  ck_assert_int_eq(tj_kernel_info_text(NULL, k, &text), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info_text(ctx, NULL, &text), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info_text(ctx, k, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_kernel_info_text(ctx, k, &text), TJ_ERR_NO_DEVICE);
  ck_assert_ptr_null(text);
  tj_kernel_free(k);
  ck_assert_int_eq(tj_ctx_set_validate(ctx, 0), TJ_OK);
  tj_ctx_free(ctx);
}
END_TEST

// ---------------------------------------------------------------- autotune.h

static tj_tuner *new_tuner(tj_ctx *ctx) {
  tj_compile_opts o = { .source = KSRC, .path = "scale.tj" };
  const char *keys[] = { "n" };
  tj_tuner *t = NULL;
  ck_assert_int_eq(tj_tuner_create(ctx, &o, keys, 1, &t), TJ_OK);
  return t;
}

static int keep_all(const tj_tuner *t, const tj_tune_config *c, const int64_t *k, int n, void *u) {
  (void)t, (void)c, (void)k, (void)n, (void)u;
  return 1;
}

START_TEST(tuner_null_handles) {
  tj_tune_config c = { { 64 } };
  int64_t v = 0;
  char buf[64] = "x";
  ck_assert_int_eq(tj_tuner_create(NULL, NULL, NULL, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_axis(NULL, "BLOCK", (int64_t[]){ 64 }, 1), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_configs(NULL, &c, 1), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_prune(NULL, keep_all, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_grid(NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_written(NULL, 1), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_bucket(NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_progress(NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_num_axes(NULL), 0);
  ck_assert_int_eq(tj_tuner_axis(NULL, 0, NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_num_configs(NULL), 0);
  ck_assert_int_eq(tj_tuner_config(NULL, 0, &c), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_config_value(NULL, &c, "BLOCK", &v), TJ_ERR_INVALID_ARG);
  tj_tuner_config_str(NULL, &c, buf, sizeof buf);
  ck_assert_str_eq(buf, "");
  ck_assert_ptr_null(tj_tuner_kernel_name(NULL));
  ck_assert_int_eq(tj_tuner_launch(NULL, NULL, 0, NULL, NULL, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_tune(NULL, NULL, 0, NULL, NULL, 0, NULL, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_best(NULL, NULL, 0, &c, NULL), TJ_ERR_INVALID_ARG);
  const tj_tune_result *r;
  int n, best;
  ck_assert_int_eq(tj_tuner_results(NULL, &r, &n, &best), TJ_ERR_INVALID_ARG);
  double ms;
  ck_assert_int_eq(tj_tuner_measure(NULL, 0, NULL, NULL, 0, NULL, 1, &ms), TJ_ERR_INVALID_ARG);
  tj_kernel *k;
  ck_assert_int_eq(tj_tuner_kernel(NULL, 0, &k), TJ_ERR_INVALID_ARG);
  tj_tune_stats s;
  ck_assert_int_eq(tj_tuner_stats(NULL, &s), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_key_path(NULL, NULL, 0, buf, sizeof buf), TJ_ERR_INVALID_ARG);
  tj_tune_entry *e;
  ck_assert_int_eq(tj_tune_list(NULL, &e, &n), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tune_clear(NULL, NULL), TJ_ERR_INVALID_ARG);
  char *dir;
  ck_assert_int_eq(tj_tune_dir(NULL, &dir), TJ_ERR_INVALID_ARG);
  tj_tune_list_free(NULL);
  tj_tuner_free(NULL);
  // Buckets: values <= 1 stay as they are.
  ck_assert_int_eq(tj_tune_bucket_pow2(-5), -5);
  ck_assert_int_eq(tj_tune_bucket_pow2(0), 0);
  ck_assert_int_eq(tj_tune_bucket_pow2(1000), 1024);
}
END_TEST

START_TEST(tuner_bad_arguments) {
  tj_ctx *ctx = new_ctx();
  tj_tuner *t = new_tuner(ctx);
  tj_tune_config c;
  memset(&c, 0, sizeof c);
  int64_t v;
  // The space: indices, names and lists out of range.
  ASSERT_ERR(ctx, tj_tuner_set_axis(t, NULL, (int64_t[]){ 64 }, 1), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_axis(t, "BLOCK", NULL, 1), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_axis(t, "BLOCK", (int64_t[]){ 64 }, 0), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_configs(t, NULL, 1), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_configs(t, &c, 0), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_configs(t, &c, TJ_TUNE_MAX_CONFIGS + 1), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_bench(t, -1, 5), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_set_bench(t, 1, 0), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_set_prune(t, NULL, NULL), TJ_OK);     // NULL: no pruning
  ck_assert_int_eq(tj_tuner_set_grid(t, NULL, NULL), TJ_OK);      // NULL: the launch's grid
  ck_assert_int_eq(tj_tuner_set_bucket(t, NULL, NULL), TJ_OK);    // NULL: next power of two
  ck_assert_int_eq(tj_tuner_set_progress(t, NULL, NULL), TJ_OK);  // NULL: none
  ck_assert_int_eq(tj_tuner_set_written(t, 1), TJ_OK);
  const char *name;
  const int64_t *vals;
  int nv;
  // tj_tuner_axis, tj_tuner_config with a NULL out, tj_tuner_config_value
  // and tj_tuner_stats answer with the status only (docs/errors.md says so).
  ck_assert_int_eq(tj_tuner_axis(t, -1, &name, &vals, &nv), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_axis(t, tj_tuner_num_axes(t), &name, &vals, &nv), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_config(t, -1, &c), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_config(t, tj_tuner_num_configs(t), &c), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_config(t, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_config(t, 0, &c), TJ_OK);
  ck_assert_int_eq(tj_tuner_config_value(t, &c, "NOPE", &v), TJ_ERR_NOT_FOUND);
  ck_assert_int_eq(tj_tuner_config_value(t, NULL, "BLOCK", &v), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_config_value(t, &c, NULL, &v), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_config_value(t, &c, "BLOCK", NULL), TJ_ERR_INVALID_ARG);
  char small[4];
  tj_tuner_config_str(t, &c, small, sizeof small);   // truncated, terminated
  ck_assert_int_eq(strlen(small), 3);
  ck_assert_str_eq(tj_tuner_kernel_name(t), "scale");
  // Queries before any tuning, and kernels out of range.
  const tj_tune_result *r;
  int n, best;
  ck_assert_int_eq(tj_tuner_results(t, &r, &n, &best), TJ_OK);   // nothing tuned yet: empty
  ck_assert_int_eq(n, 0);
  ASSERT_ERR(ctx, tj_tuner_results(t, NULL, &n, &best), TJ_ERR_INVALID_ARG);
  tj_kernel *k;
  ASSERT_ERR(ctx, tj_tuner_kernel(t, -1, &k), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_kernel(t, 99, &k), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_kernel(t, 0, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_tuner_stats(t, NULL), TJ_ERR_INVALID_ARG);
  tj_tune_config best_c;
  ASSERT_ERR(ctx, tj_tuner_best(t, NULL, 0, &best_c, NULL), TJ_ERR_INVALID_ARG);   // n not in the args
  ASSERT_ERR(ctx, tj_tuner_best(t, (int64_t[]){ 4, 4 }, 2, &best_c, NULL), TJ_ERR_INVALID_ARG);
  char path[256];
  ASSERT_ERR(ctx, tj_tuner_key_path(t, (int64_t[]){ 4 }, 1, NULL, 0), TJ_ERR_INVALID_ARG);
  double ms;
  const unsigned grid[3] = { 1, 1, 1 };
  ASSERT_ERR(ctx, tj_tuner_measure(t, 99, grid, NULL, 0, NULL, 1, &ms), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tuner_measure(t, 0, grid, NULL, 0, NULL, 1, NULL), TJ_ERR_INVALID_ARG);
  (void)path;
  // The store's public calls with out-pointers missing.
  ASSERT_ERR(ctx, tj_tune_list(ctx, NULL, &n), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_tune_dir(ctx, NULL), TJ_ERR_INVALID_ARG);
  tj_tuner_free(t);
  tj_ctx_free(ctx);
}
END_TEST

// ---------------------------------------------------------------- blocks.h

START_TEST(blocks_null_handles) {
  tj_blocks *b = (tj_blocks *)0x1;
  ck_assert_int_eq(tj_blocks_create(NULL, &b), TJ_ERR_INVALID_ARG);
  tj_ctx *ctx = new_ctx();
  ck_assert_int_eq(tj_blocks_create(ctx, NULL), TJ_ERR_INVALID_ARG);
  tj_blocks_free(NULL);
  ck_assert_ptr_null(tj_blocks_ctx(NULL));
  ck_assert(strlen(tj_blocks_last_error(NULL)) > 0);
  ck_assert_int_eq(tj_blocks_num_kernels(NULL), 0);
  ck_assert_int_eq(tj_blocks_set_autotune(NULL, 1), TJ_ERR_INVALID_ARG);
  tj_tune_stats s;
  ck_assert_int_eq(tj_blocks_tune_stats(NULL, &s), TJ_ERR_INVALID_ARG);
  DLTensor x;
  memset(&x, 0, sizeof x);
  size_t bytes;
  ck_assert_int_eq(tj_softmax_fwd(NULL, &x, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_softmax_bwd(NULL, &x, &x, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_layernorm_fwd(NULL, &x, NULL, NULL, 1e-5, &x, &x, &x, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_layernorm_bwd(NULL, &x, &x, NULL, &x, &x, &x, NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_rmsnorm_fwd(NULL, &x, NULL, 1e-5, &x, &x, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_rmsnorm_bwd(NULL, &x, &x, NULL, &x, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_norm_bwd_workspace_size(NULL, &x, &bytes), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_norm_bwd_workspace(NULL, NULL, 0), TJ_ERR_INVALID_ARG);
  tj_dropout_opts d = { 0 };
  ck_assert_int_eq(tj_dropout_fwd(NULL, &x, NULL, &x, &d, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_dropout_bwd(NULL, &x, &x, NULL, &x, NULL, &d, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_dropout_bwd_workspace_size(NULL, &x, &bytes), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_block_call(NULL, tj_block_find("softmax"), NULL, 0, NULL, 0, NULL), TJ_ERR_INVALID_ARG);
  tj_attn_layout *l = (tj_attn_layout *)0x1;
  ck_assert_int_eq(tj_attn_layout_create(NULL, NULL, 1, 2, 16, &l), TJ_ERR_INVALID_ARG);
  tj_attn_layout_free(NULL);
  ck_assert_int_eq(tj_attn_layout_nnz(NULL), 0);
  ck_assert_int_eq(tj_attention_fwd(NULL, &x, &x, &x, NULL, 0, 0, &x, &x, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_attention_bwd(NULL, &x, &x, &x, &x, &x, &x, NULL, 0, 0, &x, &x, &x, NULL),
                   TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_attention_bwd_workspace_size(NULL, &x, &bytes), TJ_ERR_INVALID_ARG);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(blocks_bad_arguments) {
  tj_ctx *ctx = new_ctx();
  tj_blocks *b = NULL;
  ck_assert_int_eq(tj_blocks_create(ctx, &b), TJ_OK);
  ck_assert_ptr_eq(tj_blocks_ctx(b), ctx);
  ck_assert_int_eq(tj_blocks_set_autotune(b, 0), TJ_OK);
  ck_assert_int_eq(tj_blocks_tune_stats(b, NULL), TJ_ERR_INVALID_ARG);
  // Names and counters of the registry and dropout.
  ck_assert_str_eq(tj_activation_name((tj_activation)-1), "?");
  ck_assert_str_eq(tj_activation_name(TJ_ACT_COUNT), "?");
  ck_assert_int_eq(tj_dropout_counters(-7), 0);
  ck_assert_int_eq(tj_dropout_counters(0), 0);
  ck_assert_int_eq(tj_dropout_counters(5), 2);
  ck_assert_ptr_null(tj_block_at(-1));
  ck_assert_ptr_null(tj_block_at(tj_block_count()));
  ck_assert_ptr_null(tj_block_find(NULL));
  ck_assert_ptr_null(tj_block_find("no_such_block"));
  ASSERT_ERR(ctx, tj_block_call(b, NULL, NULL, 0, NULL, 0, NULL), TJ_ERR_INVALID_ARG);
  // Workspace queries: missing tensor or out-pointer.
  int64_t shape[2] = { 4, 32 };
  float buf[128];
  DLTensor x = { .data = buf, .device = { kDLCPU, 0 }, .ndim = 2, .dtype = { kDLFloat, 32, 1 }, .shape = shape };
  size_t bytes;
  ASSERT_ERR(ctx, tj_norm_bwd_workspace_size(b, NULL, &bytes), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_norm_bwd_workspace_size(b, &x, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_norm_bwd_workspace_size(b, &x, &bytes), TJ_OK);
  ASSERT_ERR(ctx, tj_dropout_bwd_workspace_size(b, NULL, &bytes), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_dropout_bwd_workspace_size(b, &x, NULL), TJ_ERR_INVALID_ARG);
  // A misaligned workspace.
  ASSERT_ERR(ctx, tj_norm_bwd_workspace(b, (char *)buf + 4, 64), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_norm_bwd_workspace(b, NULL, 0), TJ_OK);
  // Attention: a 3-D q is not [B, H, S, D].
  int64_t q3s[3] = { 1, 32, 32 };
  DLTensor q3 = x;
  q3.ndim = 3;
  q3.shape = q3s;
  ASSERT_ERR(ctx, tj_attention_bwd_workspace_size(b, &q3, &bytes), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_attention_bwd_workspace_size(b, NULL, &bytes), TJ_ERR_INVALID_ARG);
  // Softmax backward and RMSNorm backward: missing tensors.
  ASSERT_ERR(ctx, tj_softmax_bwd(b, NULL, &x, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_softmax_bwd(b, &x, &x, NULL, NULL, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_rmsnorm_bwd(b, NULL, &x, NULL, &x, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_rmsnorm_bwd(b, &x, &x, NULL, NULL, &x, NULL, NULL), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_blocks_num_kernels(b), 0);   // nothing was compiled
  ck_assert_str_eq(tj_blocks_last_error(b), tj_ctx_last_error(ctx));
  tj_blocks_free(b);
  tj_ctx_free(ctx);
}
END_TEST

START_TEST(patterns_bad_arguments) {
  tj_ctx *ctx = new_ctx();
  tj_blocks *b = NULL;
  ck_assert_int_eq(tj_blocks_create(ctx, &b), TJ_OK);
  uint8_t m[64 * 64], lay[64];
  int64_t tok = 0, bad_tok = 99;
  ASSERT_ERR(ctx, tj_pattern_bigbird(b, 8, 1, 3, &bad_tok, 1, 0.5, 1, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_bigbird(b, 8, 0, 3, &tok, 1, 0.5, 1, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_longformer(b, 8, 3, NULL, 1, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_longformer(b, 0, 3, &tok, 1, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_axial_2d(b, 4, 4, 2, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_axial_2d(b, 4, 4, 0, 3, NULL, lay), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_local_2d(b, 4, 4, 2.0, -1.0, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_local_2d(b, -4, 4, 2.0, 2.0, 4, m, NULL), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_to_layout(b, NULL, 1, 8, 4, lay), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_to_layout(b, m, 1, 8, 3, lay), TJ_ERR_INVALID_ARG);
  ASSERT_ERR(ctx, tj_pattern_to_layout(b, m, 0, 8, 4, lay), TJ_ERR_INVALID_ARG);
  // Without a handle: the status alone.
  ck_assert_int_eq(tj_pattern_to_layout(NULL, m, 1, 8, 3, lay), TJ_ERR_INVALID_ARG);
  tj_blocks_free(b);
  tj_ctx_free(ctx);
}
END_TEST

static Suite *api_errors_suite(void) {
  Suite *s = suite_create("api_errors");
  TCase *tc = tcase_create("errors");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, strings_and_allocator);
  tcase_add_test(tc, memcpy_zero_bytes);
  tcase_add_test(tc, kernel_text_queries);
  tcase_add_test(tc, tuner_null_handles);
  tcase_add_test(tc, tuner_bad_arguments);
  tcase_add_test(tc, blocks_null_handles);
  tcase_add_test(tc, blocks_bad_arguments);
  tcase_add_test(tc, patterns_bad_arguments);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  return tj_test_run(api_errors_suite());
}
