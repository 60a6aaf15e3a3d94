/* testutil.h: helpers shared by the Check suites. */
#ifndef TJ_TESTUTIL_H
#define TJ_TESTUTIL_H

#include <check.h>
#include <stddef.h>

#include "tilejit/tilejit.h"

// Runs every test of s and returns the process exit code (0 when all passed).
int tj_test_run(Suite *s);
// Adds each of the n tests to s as its own TCase, named after the test,
// with the fixture and timeout: tests/CMakeLists.txt then registers one
// ctest entry per test (CK_RUN_CASE=name), which ctest -j runs in parallel.
// Without CK_RUN_CASE the program runs them all.
void tj_test_add_each(Suite *s, const TTest *const *tests, int n, SFun setup, SFun teardown, double timeout);
// A failing API call: the status it returned must be `want`, and the
// context must hold a message saying why.
#define ASSERT_ERR(ctx, call, want)                                                   \
  do {                                                                                \
    tj_status s_ = (call);                                                            \
    ck_assert_msg(s_ == (want), "%s: got %s, want %s (%s)", #call, tj_status_str(s_), \
                  tj_status_str(want), tj_ctx_last_error(ctx));                       \
    ck_assert_msg(*tj_ctx_last_error(ctx), "%s: no message", #call);                  \
  } while (0)

// Reads a file given relative to the source tree (or absolute); malloc'd,
// NUL-terminated; NULL on failure. *len may be NULL.
char *tj_test_read_file(const char *rel, size_t *len);
// Absolute path of a file in the source tree (static buffer per call site is
// not safe: returns malloc'd).
char *tj_test_path(const char *rel);
// Largest |got - want| / max(|want|, floor) over n doubles.
double tj_test_max_rel_err(const double *got, const double *want, size_t n, double floor);

// For a GPU suite's main(): 0 when a GPU is present; 77 (ctest's "skipped")
// when there is no driver or no device, after saying so; 1 when the driver
// is there but fails, which must not pass as a skip.
int tj_test_gpu_or_skip(const char *suite);

// Runs `ptxas -v -arch=ARCH` on ptx (ptxas from $PTXAS, /usr/local/cuda/bin
// or /usr/bin) and leaves its output in log. Returns -1 when no ptxas is
// installed (CI machines skip the step), else 0 when it assembled.
int tj_test_ptxas(const char *ptx, const char *arch, char *log, size_t nlog);
// Occurrences of needle in s (not overlapping).
int tj_test_count(const char *s, const char *needle);
// From a ptxas -v log: registers used and spill bytes (stores + loads).
void tj_test_ptxas_usage(const char *log, int *regs, int *spill);

#endif
