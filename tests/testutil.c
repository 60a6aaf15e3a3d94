#include "testutil.h"

#include <math.h>
#include <stdbool.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tj_test_add_each(Suite *s, const TTest *const *tests, int n, SFun setup, SFun teardown, double timeout) {
  for (int i = 0; i < n; i++) {
    TCase *tc = tcase_create(tests[i]->name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout);
    tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
  }
}

int tj_test_run(Suite *s) {
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *tj_test_path(const char *rel) {
  if (rel[0] == '/') return strdup(rel);
  size_t n = strlen(TJ_SOURCE_DIR) + strlen(rel) + 2;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/%s", TJ_SOURCE_DIR, rel);
  return p;
}

char *tj_test_read_file(const char *rel, size_t *len) {
  char *path = tj_test_path(rel);
  if (!path) return NULL;
  FILE *f = fopen(path, "rb");
  free(path);
  if (!f) return NULL;
  char *buf = NULL;
  size_t cap = 0, n = 0;
  for (;;) {
    if (n + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); fclose(f); return NULL; }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  fclose(f);
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

double tj_test_max_rel_err(const double *got, const double *want, size_t n, double floor) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]);
    double s = fabs(want[i]) > floor ? fabs(want[i]) : floor;
    if (isnan(got[i]) != isnan(want[i])) return INFINITY;
    if (!isnan(d) && d / s > worst) worst = d / s;
  }
  return worst;
}

static const char *ptxas_path(void) {
  static const char *const cands[] = { "/usr/local/cuda/bin/ptxas", "/usr/bin/ptxas" };
  const char *env = getenv("PTXAS");
  if (env && access(env, X_OK) == 0) return env;
  for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
    if (access(cands[i], X_OK) == 0) return cands[i];
  return NULL;
}

int tj_test_ptxas(const char *ptx, const char *arch, char *log, size_t nlog) {
  const char *px = ptxas_path();
  if (nlog) log[0] = 0;
  if (!px) return -1;
  char path[] = "/tmp/tj_ptxas_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 1;
  size_t n = strlen(ptx);
  bool ok = write(fd, ptx, n) == (ssize_t)n;
  close(fd);
  char cmd[512], lpath[64];
  snprintf(lpath, sizeof lpath, "%s.log", path);
  snprintf(cmd, sizeof cmd, "%s -v -arch=%s %s -o /dev/null > %s 2>&1", px, arch, path, lpath);
  int st = ok ? system(cmd) : 1;
  FILE *f = fopen(lpath, "r");
  if (f && nlog) {
    size_t got = fread(log, 1, nlog - 1, f);
    log[got] = 0;
  }
  if (f) fclose(f);
  unlink(path);
  unlink(lpath);
  return st == 0 ? 0 : 1;
}

void tj_test_ptxas_usage(const char *log, int *regs, int *spill) {
  *regs = *spill = 0;
  const char *p = strstr(log, "Used ");
  if (p) *regs = atoi(p + 5);
  for (p = strstr(log, "bytes spill"); p; p = strstr(p + 1, "bytes spill")) {
    const char *q = p;
    while (q > log && q[-1] == ' ') q--;
    while (q > log && q[-1] >= '0' && q[-1] <= '9') q--;
    *spill += atoi(q);
  }
}

int tj_test_gpu_or_skip(const char *suite) {
  tj_ctx *probe;
  if (tj_ctx_create(&probe) != TJ_OK) return 1;
  int n = 0;
  tj_status st = tj_device_count(probe, &n);
  if (st == TJ_ERR_NO_DEVICE || (st == TJ_OK && n == 0)) {
    printf("%s: no GPU (%s), skipped\n", suite, tj_ctx_last_error(probe));
    tj_ctx_free(probe);
    return 77;
  }
  if (st != TJ_OK) fprintf(stderr, "%s: the CUDA driver failed: %s\n", suite, tj_ctx_last_error(probe));
  tj_ctx_free(probe);
  return st == TJ_OK ? 0 : 1;
}

int tj_test_count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
  return n;
}
