#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
