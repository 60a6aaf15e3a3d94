/* bench_cpu_compile.c: DSL -> PTX compile time per kernel.
 *
 * For every .tj file in examples/ (or the files named on the command line) it runs
 * lex, parse, sema and the LLVM backend (line info on, as the runtime
 * compiles) 20 times with the defines of the file's `// usage:` line, and
 * prints the median and the minimum in milliseconds. Usage:
 *   bench_cpu_compile [--arch sm_90] [file.tj ...]
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/codegen.h"

#define RUNS 20

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

// One full compilation; returns the status and the milliseconds it took.
static tj_status compile_once(const char *src, const char *file, const char *arch, double *ms,
                              StrBuf *err) {
  double t0 = now_ms();
  Arena a;
  arena_init(&a);
  Define defs[16];
  int nd = 0;
  const char *u = strstr(src, "// usage:");
  const char *eol = u ? strchr(u, '\n') : NULL;
  for (const char *p = u; p && p < eol && nd < 16; p++) {
    if (strncmp(p, "-D ", 3) != 0) continue;
    p += 3;
    const char *eq = strchr(p, '='), *end = p;
    while (end < eol && *end != ' ') end++;
    if (!eq || eq > end) continue;
    defs[nd].name = arena_strndup(&a, p, (size_t)(eq - p));
    defs[nd].value = arena_strndup(&a, eq + 1, (size_t)(end - eq - 1));
    nd++;
  }
  Diag d;
  diag_init(&d);
  tj_status st = TJ_ERR_COMPILE;
  Token *toks = lex_tokenize(&a, &d, file, src, strlen(src));
  Module *m = toks ? parse_module(&a, &d, toks) : NULL;
  SemaOptions so = {NULL, defs, nd, 0};
  TirFunc *f = m && !d.nerrors ? sema_lower(&a, &d, m, &so) : NULL;
  if (f) {
    for (int i = 0; i < f->nparams; i++) {
      TirParam *p = &f->params[i];
      p->spec = p->ptr ? TIR_SPEC_ALIGN16 : dtype_is_int(p->dtype) ? TIR_SPEC_DIV16 : 0;
    }
    CgOptions o = {.arch = arch, .line_info = true};
    CgResult r;
    st = cg_llvm_compile(f, &o, &r, &d);
    cg_result_free(&r);
  }
  if (st != TJ_OK && d.text.data) sb_puts(err, d.text.data);
  diag_free(&d);
  arena_free(&a);
  *ms = now_ms() - t0;
  return st;
}

static int bench_file(const char *path, const char *arch) {
  char *src = NULL;
  size_t len;
  StrBuf err;
  sb_init(&err);
  if (util_read_file(path, &src, &len, &err) != TJ_OK) {
    fprintf(stderr, "%s\n", err.data ? err.data : path);
    sb_free(&err);
    return 1;
  }
  double t[RUNS];
  for (int i = 0; i < RUNS; i++) {
    if (compile_once(src, path, arch, &t[i], &err) != TJ_OK) {
      fprintf(stderr, "%s: compile failed:\n%s\n", path, err.data ? err.data : "");
      free(src);
      sb_free(&err);
      return 1;
    }
  }
  qsort(t, RUNS, sizeof t[0], cmp_double);
  const char *base = strrchr(path, '/');
  printf("%-28s %-7s median %7.2f ms   min %7.2f ms\n", base ? base + 1 : path, arch, t[RUNS / 2], t[0]);
  free(src);
  sb_free(&err);
  return 0;
}

int main(int argc, char **argv) {
  const char *arch = "sm_90";
  int rc = 0, nfiles = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--arch") && i + 1 < argc) {
      arch = argv[++i];
      continue;
    }
    rc |= bench_file(argv[i], arch);
    nfiles++;
  }
  if (nfiles) return rc;
  const char *dir = TJ_SOURCE_DIR "/examples";
  DIR *dp = opendir(dir);
  if (!dp) {
    fprintf(stderr, "cannot open %s\n", dir);
    return 1;
  }
  struct dirent *de;
  char *names[256];
  int n = 0;
  while ((de = readdir(dp)) && n < 256) {
    size_t len = strlen(de->d_name);
    if (len > 3 && !strcmp(de->d_name + len - 3, ".tj")) names[n++] = strdup(de->d_name);
  }
  closedir(dp);
  for (int i = 0; i < n; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    rc |= bench_file(path, arch);
    free(names[i]);
  }
  return rc;
}
