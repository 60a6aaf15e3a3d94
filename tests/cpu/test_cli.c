/* test_cli: the tilejit command-line tool as a user runs it: exit codes,
 * stdout/stderr separation, diagnostics with carets, and agreement with the
 * C API. The binary's path comes from $TILEJIT_BIN (set by ctest). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "tilejit/tilejit.h"

typedef struct Run {
  int status;   // exit code, or -1 if it did not exit normally
  char *out, *err;
} Run;

static char *slurp_fd(int fd) {
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  ssize_t got;
  lseek(fd, 0, SEEK_SET);
  while (buf && (got = read(fd, buf + n, cap - n - 1)) > 0) {
    n += (size_t)got;
    if (n + 1 >= cap) buf = realloc(buf, cap *= 2);
  }
  if (buf) buf[n] = '\0';
  return buf;
}

// Runs the CLI with argv (NULL-terminated, without argv[0]) from the source dir.
static Run run_cli(const char *const *args) {
  Run r = { -1, NULL, NULL };
  const char *bin = getenv("TILEJIT_BIN");
  ck_assert_msg(bin != NULL, "TILEJIT_BIN is not set (run through ctest)");
  char outp[] = "/tmp/tj_cli_outXXXXXX", errp[] = "/tmp/tj_cli_errXXXXXX";
  int ofd = mkstemp(outp), efd = mkstemp(errp);
  ck_assert(ofd >= 0 && efd >= 0);
  unlink(outp);
  unlink(errp);
  const char *argv[32];
  int n = 0;
  argv[n++] = bin;
  for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  ck_assert(pid >= 0);
  if (pid == 0) {
    dup2(ofd, 1);
    dup2(efd, 2);
    if (chdir(TJ_SOURCE_DIR) != 0) _exit(126);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int ws;
  waitpid(pid, &ws, 0);
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  r.out = slurp_fd(ofd);
  r.err = slurp_fd(efd);
  close(ofd);
  close(efd);
  return r;
}

static void run_free(Run *r) {
  free(r->out);
  free(r->err);
}

START_TEST(help_and_usage) {
  Run r = run_cli((const char *[]){ "--help", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: tilejit"));
  run_free(&r);
  r = run_cli((const char *[]){ "compile", "--help", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "--emit"));
  ck_assert_ptr_nonnull(strstr(r.out, "--no-fp-fusion"));
  run_free(&r);
  for (int bench = 0; bench < 2; bench++) {
    r = run_cli((const char *[]){ bench ? "bench" : "tune", "--help", NULL });
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "--no-fp-fusion"));
    run_free(&r);
  }
  r = run_cli((const char *[]){ NULL });
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "usage: tilejit"));
  run_free(&r);
  r = run_cli((const char *[]){ "frobnicate", NULL });
  ck_assert_int_eq(r.status, 2);
  ck_assert_ptr_nonnull(strstr(r.err, "unknown command 'frobnicate'"));
  run_free(&r);
  r = run_cli((const char *[]){ "--version", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, tj_version()));
  run_free(&r);
}
END_TEST

START_TEST(usage_errors) {
  const char *const cases[][6] = {
    { "compile", NULL },                                            // no input
    { "compile", "examples/softmax.tj", "--emit", "bogus", NULL },  // bad stage
    { "compile", "examples/softmax.tj", "-D", NULL },               // -D without value
    { "compile", "examples/softmax.tj", "--num-warps", "3", NULL }, // not a power of two
    { "compile", "examples/softmax.tj", "--frob", NULL },           // unknown option
    { "compile", "a.tj", "b.tj", NULL },                            // two inputs
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    Run r = run_cli(cases[i]);
    ck_assert_msg(r.status == 2, "case %zu: exit %d, stderr: %s", i, r.status, r.err);
    ck_assert_msg(strstr(r.err, "tilejit: error:") != NULL, "case %zu: stderr: %s", i, r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
  }
}
END_TEST

// tilejit bench: help, usage errors (exit 2, nothing on stdout), and a
// well-formed request on a machine without a GPU (exit 1, says so). The
// GPU run is tests/gpu/cli_bench.sh.
START_TEST(bench_usage_and_errors) {
  Run r = run_cli((const char *[]){ "bench", "--help", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: tilejit bench"));
  ck_assert_ptr_nonnull(strstr(r.out, "--bytes EXPR"));
  run_free(&r);
  r = run_cli((const char *[]){ "--help", NULL });
  ck_assert_ptr_nonnull(strstr(r.out, "bench FILE.tj"));
  run_free(&r);
  const char *V = "examples/vector_add.tj";
  const char *const usage[][12] = {
    { "bench", NULL },                                                          // no input
    { "bench", V, "--size", "n=64", NULL },                                     // no --grid
    { "bench", V, "--list", NULL },                                             // a tune option
    { "bench", V, "--key", "n", "--size", "n=64", "--grid", "1", NULL },        // a tune option
    { "bench", V, "--size", "n=64", "--grid", "1", "--bytes", "4*q", NULL },    // unknown name
    { "bench", V, "--size", "n=64", "--grid", "1", "--flops", "n+", NULL },     // bad expression
    { "bench", V, "--size", "n=64", "--grid", "1", "--bytes", NULL },           // no value
    { "bench", V, "--frob", NULL },                                             // unknown option
  };
  for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
    r = run_cli(usage[i]);
    ck_assert_msg(r.status == 2, "case %zu: exit %d, stderr: %s", i, r.status, r.err);
    ck_assert_msg(strstr(r.err, "tilejit: error:") != NULL, "case %zu: stderr: %s", i, r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
  }
  r = run_cli((const char *[]){ "bench", V, "--size", "n=4096", "--grid", "cdiv(n,BLOCK)", "--bytes", "12*n",
                                "--flops", "n", NULL });
  tj_ctx *ctx;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  int ndev = 0;
  if (tj_device_count(ctx, &ndev) != TJ_OK || ndev == 0) {   // no GPU here: says so
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "benchmarking needs a CUDA GPU") != NULL, "%s", r.err);
    ck_assert_str_eq(r.out, "");
  }
  tj_ctx_free(ctx);
  run_free(&r);
}
END_TEST

START_TEST(missing_file) {
  Run r = run_cli((const char *[]){ "compile", "no/such/file.tj", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_ptr_nonnull(strstr(r.err, "no/such/file.tj"));
  ck_assert_str_eq(r.out, "");
  run_free(&r);
}
END_TEST

START_TEST(diagnostics_with_carets) {
  Run r = run_cli((const char *[]){ "compile", "tests/dsl/cli/bad.tj", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_str_eq(r.out, "");
  // Both errors: a syntax error (line 6) is found by the parser, which stops
  // before sema, so only the parse error is guaranteed; it must have a caret.
  ck_assert_msg(strstr(r.err, "tests/dsl/cli/bad.tj:6:22: error: expected expression") != NULL,
                "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "    6 |     store(x + i, v * , i < n);\n") != NULL, "stderr: %s", r.err);
  ck_assert_msg(strstr(r.err, "      |                      ^\n") != NULL, "stderr: %s", r.err);
  run_free(&r);
}
END_TEST

START_TEST(codegen_errors_are_diagnostics) {
  Run r = run_cli((const char *[]){ "compile", "tests/dsl/cli/rank3.tj", "--emit", "ptx", "--no-cache", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_msg(strncmp(r.err, "tests/dsl/cli/rank3.tj:5:13: error: codegen: tiles of rank 3", 60) == 0,
                "stderr: %s", r.err);
  ck_assert_ptr_nonnull(strstr(r.err, "      |             ^~~~"));
  run_free(&r);
}
END_TEST

// A codegen warning (a dot kept off wgmma) goes to stderr with its caret,
// and the compile still succeeds with the PTX on stdout, the warning at its
// head as comments.
START_TEST(codegen_warnings_on_stderr) {
  Run r = run_cli((const char *[]){ "compile", "tests/dsl/kernels/attn_chain.tj", "-D", "T=f16", "-D", "CAUSAL=true",
                                    "-D", "BM=64", "-D", "BN=64", "-D", "D=64", "--arch", "sm_90a", "--num-warps",
                                    "4", "--emit", "ptx", "--no-cache", NULL });
  ck_assert_int_eq(r.status, 0);
  ck_assert_msg(strstr(r.err, "tests/dsl/kernels/attn_chain.tj:26:17: warning: this dot runs on mma.sync") != NULL,
                "stderr: %s", r.err);
  ck_assert_ptr_nonnull(strstr(r.err, "      |                 ^~~~"));
  ck_assert_msg(strncmp(r.out, "// tests/dsl/kernels/attn_chain.tj:26:17: warning:", 50) == 0, "%.200s", r.out);
  ck_assert_ptr_nonnull(strstr(r.out, ".entry attn_chain"));
  run_free(&r);
}
END_TEST

// The layernorm forward's sum of squares and affine output contract into
// fma by default; --no-fp-fusion keeps every multiply and add apart.
START_TEST(fp_fusion_option) {
  for (int off = 0; off < 2; off++) {
    const char *args[32] = { "compile", "blocks/layernorm.tj", "--kernel", "norm_fwd", "-D", "T=f16", "-D",
                             "BLOCK=1024", "-D", "ROWS=1", "-D", "RMS=false", "-D", "HAS_W=true", "-D",
                             "HAS_B=true", "-D", "FLAT=true", "--arch", "sm_90", "--emit", "ptx", "--no-cache",
                             off ? "--no-fp-fusion" : NULL };
    Run r = run_cli(args);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    // 1024 / 128 threads: 8 elements a thread. Fused: v - sum * rk (8),
    // the sum of squares (7, its first term a mul), var * rk + eps (1) and
    // (d * r) * w + b (8) are fmas; apart, each is a mul and an add.
    ck_assert_int_eq(tj_test_count(r.out, "fma.rn.f32"), off ? 0 : 24);
    ck_assert_int_eq(tj_test_count(r.out, "mul.rn.f32"), off ? 26 : 10);
    ck_assert_int_eq(tj_test_count(r.out, "add.rn.f32") + tj_test_count(r.out, "sub.rn.f32"), off ? 47 : 23);
    run_free(&r);
  }
}
END_TEST

START_TEST(tir_matches_api) {
  Run r = run_cli((const char *[]){ "compile", "examples/softmax.tj", "-D", "T=f16", "-DBLOCK=1024",
                                    "--emit", "tir", NULL });
  ck_assert_msg(r.status == 0, "stderr: %s", r.err);
  ck_assert_str_eq(r.err, "");
  tj_ctx *ctx;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  const char *defs[] = { "T=f16", "BLOCK=1024" };
  tj_compile_opts o = { .path = TJ_SOURCE_DIR "/examples/softmax.tj", .defines = defs, .ndefines = 2,
                        .flags = TJ_COMPILE_FRONTEND };
  tj_kernel *k;
  ck_assert_msg(tj_kernel_compile(ctx, &o, &k) == TJ_OK, "%s", tj_ctx_last_error(ctx));
  ck_assert_ptr_nonnull(strstr(r.out, "kernel softmax"));
  ck_assert_ptr_nonnull(strstr(r.out, tj_kernel_tir(k)));
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  run_free(&r);
}
END_TEST

START_TEST(ptx_with_source_and_assumptions) {
  // Unspecialised PTX cannot prove alignment; with --assume all the loads
  // become 128-bit, and ptx+src interleaves the .tj lines.
  Run r = run_cli((const char *[]){ "compile", "examples/softmax.tj", "-D", "T=f16", "-D", "BLOCK=4096",
                                    "--num-warps", "8", "--emit", "ptx+src", "--assume", "all",
                                    "--no-cache", NULL });
  ck_assert_msg(r.status == 0, "stderr: %s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "ld.global.v4.b32"));
  ck_assert_ptr_nonnull(strstr(r.out, "// softmax.tj:11: let v = cast(load(x + row * stride + cols, mask, -inf), f32);"));
  run_free(&r);
  r = run_cli((const char *[]){ "compile", "examples/softmax.tj", "-D", "T=f16", "--emit", "ptx",
                                "--no-cache", NULL });
  ck_assert_msg(r.status == 0, "stderr: %s", r.err);
  ck_assert_ptr_null(strstr(r.out, "ld.global.v4"));
  run_free(&r);
  r = run_cli((const char *[]){ "compile", "examples/softmax.tj", "-D", "T=f16", "--emit", "ptx",
                                "--assume", "n=16,q=16", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_ptr_nonnull(strstr(r.err, "kernel 'softmax' has no parameter 'q'"));
  run_free(&r);
  r = run_cli((const char *[]){ "compile", "examples/softmax.tj", "-D", "T=f16", "--emit", "ptx",
                                "--assume", "x=1", NULL });
  ck_assert_int_eq(r.status, 1);
  ck_assert_ptr_nonnull(strstr(r.err, "pointer 'x' can only be assumed =16"));
  run_free(&r);
}
END_TEST

START_TEST(num_stages_tunable) {
  // `tunable num_stages` reaches the pipeliner: 1 turns cp.async off.
  const char *base[] = { "compile", "examples/matmul.tj", "-D", "T=f16", "-D", "BLOCK_M=64", "-D", "BLOCK_N=64",
                         "-D", "BLOCK_K=32", "--assume", "all", "--emit", "ptx", "--no-cache", "-D", NULL, NULL };
  base[16] = "num_stages=1";
  Run r = run_cli(base);
  ck_assert_msg(r.status == 0, "stderr: %s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "mma.sync.aligned.m16n8k16"));
  ck_assert_ptr_null(strstr(r.out, "cp.async"));
  run_free(&r);
  base[16] = "num_stages=3";
  r = run_cli(base);
  ck_assert_msg(r.status == 0, "stderr: %s", r.err);
  ck_assert_ptr_nonnull(strstr(r.out, "cp.async"));
  run_free(&r);
  base[16] = "num_stages=5";
  r = run_cli(base);
  ck_assert_int_eq(r.status, 1);
  ck_assert_ptr_nonnull(strstr(r.err, "-D num_stages=5 is not in the tunable set {3, 2, 4, 1}"));
  run_free(&r);
}
END_TEST

static Suite *suite(void) {
  Suite *s = suite_create("cli");
  TCase *tc = tcase_create("cli");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, help_and_usage);
  tcase_add_test(tc, usage_errors);
  tcase_add_test(tc, bench_usage_and_errors);
  tcase_add_test(tc, missing_file);
  tcase_add_test(tc, diagnostics_with_carets);
  tcase_add_test(tc, tir_matches_api);
  tcase_add_test(tc, codegen_errors_are_diagnostics);
  tcase_add_test(tc, codegen_warnings_on_stderr);
  tcase_add_test(tc, fp_fusion_option);
  tcase_add_test(tc, ptx_with_source_and_assumptions);
  tcase_add_test(tc, num_stages_tunable);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tj_test_run(suite()); }
