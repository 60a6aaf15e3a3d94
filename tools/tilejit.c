/* tilejit: the command-line tool.
 *
 *   tilejit compile FILE.tj [-D NAME=VALUE]... [--kernel NAME] [--emit WHAT] ...
 *   tilejit info
 *   tilejit cache list|clear
 *   tilejit tune FILE.tj ... | tilejit tune --list
 *   tilejit bench FILE.tj ...
 *
 * It uses the public API only, like any other user of libtilejit. Exit
 * codes: 0 success, 1 the input had errors or an operation failed, 2 usage.
 * Results go to stdout, diagnostics to stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tilejit/tilejit.h"

static void usage(FILE *out) {
  fputs("usage: tilejit <command> [options]\n"
        "\n"
        "commands:\n"
        "  compile FILE.tj   compile a kernel and print a stage (tile IR, LLVM IR, PTX)\n"
        "  info              versions, devices, cache and blocks\n"
        "  cache list|clear  inspect or empty the compile cache\n"
        "  tune FILE.tj      autotune a kernel over its tunables; tune --list shows stored results\n"
        "  bench FILE.tj     time a kernel's configurations: us, GB/s against a copy, TFLOP/s\n"
        "\n"
        "options: --help, --version. Run 'tilejit COMMAND --help' for a command's options.\n",
        out);
}

static void compile_usage(FILE *out) {
  fputs("usage: tilejit compile FILE.tj [options]\n"
        "\n"
        "Compiles one kernel of FILE.tj and prints the requested stage to stdout.\n"
        "\n"
        "options:\n"
        "  -D NAME=VALUE        value of a constant or tunable (repeatable); also -DNAME=VALUE\n"
        "  --kernel NAME        the kernel to compile when the file has several\n"
        "  --emit WHAT          tir (default), llvm, ptx, ptx+src (PTX with .tj lines interleaved),\n"
        "                       cubin-info (registers, spills, shared memory; needs a GPU)\n"
        "  --arch sm_XX         target (sm_80 .. sm_90a); default: the GPU's, else sm_80\n"
        "  --num-warps N        threads per program = 32*N (overrides 'tunable num_warps')\n"
        "  --assume SPEC        specialise the PTX as a launch would for such arguments: 'all'\n"
        "                       (pointers 16-byte aligned, integers multiples of 16, as typical\n"
        "                       tensors are) or a list like 'x=16,n=16' (=1: the integer is 1)\n"
        "  --no-cache           neither read nor write the compile cache\n"
        "  --no-fp-fusion       round each f32 add, sub and mul on its own (by default a*b + c\n"
        "                       may become one fma, as with nvcc and Triton)\n"
        "  -o FILE              write the output to FILE instead of stdout\n"
        "  -h, --help           show this help\n"
        "\n"
        "Warnings (such as a dot kept off wgmma) go to stderr, and also head the PTX as\n"
        "comments; TILEJIT_VERBOSE=0 keeps them off stderr.\n"
        "\n"
        "example:\n"
        "  tilejit compile examples/softmax.tj -D T=f16 -D BLOCK=1024 --emit ptx+src --assume all\n",
        out);
}

// Returns the value of an option written "--opt VALUE" or "--opt=VALUE".
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != '\0') return NULL;
  if (*i + 1 >= argc) {
    fprintf(stderr, "tilejit: error: %s needs a value\n", name);
    return "";
  }
  return argv[++*i];
}

static int write_output(const char *path, const char *text) {
  if (!text) text = "";
  if (!path) {
    fputs(text, stdout);
    size_t n = strlen(text);
    if (n && text[n - 1] != '\n') fputc('\n', stdout);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  // Write beside the target and rename, so an interrupted run never leaves a
  // half-written output file.
  size_t len = strlen(path) + 16;
  char *tmp = malloc(len);
  if (!tmp) return 1;
  snprintf(tmp, len, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "tilejit: error: cannot write '%s'\n", tmp);
    free(tmp);
    return 1;
  }
  int ok = fputs(text, f) >= 0;
  ok = (fclose(f) == 0) && ok;
  if (ok) ok = rename(tmp, path) == 0;
  if (!ok) {
    remove(tmp);
    fprintf(stderr, "tilejit: error: cannot write '%s'\n", path);
  }
  free(tmp);
  return ok ? 0 : 1;
}

int cmd_compile(int argc, char **argv) {
  const char *file = NULL, *kernel = NULL, *emit = "tir", *arch = NULL, *outpath = NULL, *assume = NULL;
  int num_warps = 0;
  unsigned flags = 0;
  const char **defines = calloc((size_t)argc + 1, sizeof *defines);
  int ndefines = 0;
  if (!defines) return 1;
  int rc = 2;

  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      compile_usage(stdout);
      rc = 0;
      goto out;
    } else if (!strcmp(a, "-D")) {
      if (i + 1 >= argc) { fprintf(stderr, "tilejit: error: -D needs NAME=VALUE\n"); goto out; }
      defines[ndefines++] = argv[++i];
    } else if (!strncmp(a, "-D", 2)) {
      defines[ndefines++] = a + 2;
    } else if ((v = opt_value(argc, argv, &i, "--kernel"))) {
      if (!*v) goto out;
      kernel = v;
    } else if ((v = opt_value(argc, argv, &i, "--emit"))) {
      if (!*v) goto out;
      emit = v;
    } else if ((v = opt_value(argc, argv, &i, "--arch"))) {
      if (!*v) goto out;
      arch = v;
    } else if ((v = opt_value(argc, argv, &i, "--num-warps"))) {
      if (!*v) goto out;
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n <= 0 || n > 32 || (n & (n - 1))) {
        fprintf(stderr, "tilejit: error: --num-warps must be a power of two from 1 to 32, got '%s'\n", v);
        goto out;
      }
      num_warps = (int)n;
    } else if ((v = opt_value(argc, argv, &i, "--assume"))) {
      if (!*v) goto out;
      assume = v;
    } else if ((v = opt_value(argc, argv, &i, "-o"))) {
      if (!*v) goto out;
      outpath = v;
    } else if (!strcmp(a, "--no-cache")) {
      flags |= TJ_COMPILE_NO_CACHE;
    } else if (!strcmp(a, "--no-fp-fusion")) {
      flags |= TJ_COMPILE_NO_FP_FUSION;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "tilejit: error: unknown option '%s' (see 'tilejit compile --help')\n", a);
      goto out;
    } else if (!file) {
      file = a;
    } else {
      fprintf(stderr, "tilejit: error: more than one input file ('%s' and '%s')\n", file, a);
      goto out;
    }
  }
  if (!file) {
    fprintf(stderr, "tilejit: error: no input file (see 'tilejit compile --help')\n");
    goto out;
  }
  enum { E_TIR, E_LLVM, E_PTX, E_PTX_SRC, E_CUBIN_INFO } what;
  if (!strcmp(emit, "tir")) what = E_TIR;
  else if (!strcmp(emit, "llvm")) what = E_LLVM;
  else if (!strcmp(emit, "ptx")) what = E_PTX;
  else if (!strcmp(emit, "ptx+src")) what = E_PTX_SRC;
  else if (!strcmp(emit, "cubin-info")) what = E_CUBIN_INFO;
  else {
    fprintf(stderr, "tilejit: error: unknown --emit '%s' (tir, llvm, ptx, ptx+src, cubin-info)\n", emit);
    goto out;
  }
  if (what == E_TIR) flags |= TJ_COMPILE_FRONTEND;
  // The LLVM text is only produced by a real compile, not by a cache hit.
  if (what == E_LLVM) flags |= TJ_COMPILE_NO_CACHE;

  rc = 1;
  // Warnings (codegen's among them) go to stderr unless the user said no.
  setenv("TILEJIT_VERBOSE", "1", 0);
  tj_ctx *ctx = NULL;
  tj_status st = tj_ctx_create(&ctx);
  if (st != TJ_OK) {
    fprintf(stderr, "tilejit: error: cannot create a context: %s\n", tj_status_str(st));
    goto out;
  }
  tj_compile_opts o = {
    .path = file, .kernel = kernel, .defines = defines, .ndefines = ndefines,
    .num_warps = num_warps, .arch = arch, .flags = flags, .assume = assume,
  };
  tj_kernel *k = NULL;
  st = tj_kernel_compile(ctx, &o, &k);
  if (st != TJ_OK) {
    const char *msg = tj_ctx_last_error(ctx);
    // Diagnostics (from the front end, or from codegen for a construct it
    // cannot lower) are already rendered as "file:line:col: error: ...".
    const char *eol = strchr(msg, '\n');
    const char *tag = strstr(msg, ": error: ");
    if (st == TJ_ERR_COMPILE || (tag && (!eol || tag < eol))) fputs(msg, stderr);
    else fprintf(stderr, "tilejit: error: %s\n", *msg ? msg : tj_status_str(st));
    size_t n = strlen(msg);
    if (n && msg[n - 1] != '\n') fputc('\n', stderr);
    tj_ctx_free(ctx);
    goto out;
  }
  switch (what) {
  case E_TIR: rc = write_output(outpath, tj_kernel_tir(k)); break;
  case E_LLVM: rc = write_output(outpath, tj_kernel_llvm(k)); break;
  case E_PTX: rc = write_output(outpath, tj_kernel_ptx(k)); break;
  case E_PTX_SRC: rc = write_output(outpath, tj_kernel_ptx_annotated(k)); break;
  case E_CUBIN_INFO: {
    char *text = NULL;
    st = tj_kernel_info_text(ctx, k, &text);
    if (st != TJ_OK) {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      rc = 1;
    } else {
      rc = write_output(outpath, text);
    }
    tj_free(text);
    break;
  }
  }
  tj_kernel_free(k);
  tj_ctx_free(ctx);
out:
  free(defines);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("tilejit %s\n", tj_version());
    return 0;
  }
  if (!strcmp(cmd, "compile")) return cmd_compile(argc - 1, argv + 1);
  if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
  if (!strcmp(cmd, "cache")) return cmd_cache(argc - 1, argv + 1);
  if (!strcmp(cmd, "tune")) return cmd_tune(argc - 1, argv + 1);
  if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
  fprintf(stderr, "tilejit: error: unknown command '%s'\n\n", cmd);
  usage(stderr);
  return 2;
}
