/* test_alloc_fail.c: every allocation failure is survived (Lua's
 * fault-injecting allocator, through tj_set_allocator).
 *
 * A counting allocator is installed for the whole process. Each operation is
 * first run once to count the allocations it makes through the hook; then,
 * for N = 1..count, it is run again with only the N-th allocation failing.
 * The sweep runs twice: with the N-th allocation alone failing, and with
 * it and every later one failing (so cleanup code runs out of memory too).
 * A run in which an injected failure was hit must return TJ_ERR_NO_MEMORY
 * with a message (the context's last error) that says "out of memory"; a
 * run in which none was hit must succeed. It must never crash, and it must
 * not leak: the allocator counts live blocks, and the count after the
 * operation has freed its handles must equal the count before (the sanitizer
 * build's LeakSanitizer then checks the whole process at exit too).
 *
 * TJ_OK after a failure is accepted only where named (check_outcome's
 * ok_allowed), and then the result must equal the unfailed run's:
 *   - the compile cache, read or written (best effort by design): the
 *     kernel's tile IR and PTX, and what a fresh context reads back;
 *   - the interpreter (its buffer pool is best effort): every buffer;
 *   - block calls (they run the interpreter): every tensor;
 *   - the tune store write (best effort): the choice, and the tuner's
 *     copy of its results (tj_tuner_results), which is not.
 *
 * Operations: tj_ctx_create (with a default disk cache directory); every
 * examples/NAME.tj compiled to PTX for sm_80 (no cache: front end, tile IR,
 * LLVM lowering, PTX copy) and run on the interpreter; a compile with
 * TJ_COMPILE_DEBUG (the IR verifier); a compile that writes the cache and
 * one that reads it back; tj_cache_list with tj_cache_stats; tj_cache_clear;
 * the autotuner's store written (two keys, then a hit in memory) and read
 * back (tuning with the benchmark hook of autotune/tune.h, no GPU);
 * tj_blocks_create and softmax, layernorm, rmsnorm, dropout and
 * attention fwd + bwd on small kDLCPU tensors (the interpreter, the
 * single-pass kernels only: no looped variants, no GPU scratch) with a
 * fresh handle each time (so the block kernels are compiled in the sweep).
 *
 * The hook sees only tilejit's own allocations: LLVM allocates with new, so
 * the LLVM stage of a compile contributes few points (the PTX copy, the
 * arena chunks of the lowering) and a full sweep stays fast. Every point is
 * swept (stride 1); TJ_ALLOC_FAIL_STRIDE=k in the environment sweeps every
 * k-th one for a quick run.
 */
#define _GNU_SOURCE
#include <check.h>
#include <execinfo.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autotune/tune.h"
#include "blocks_ref.h"
#include "testutil.h"
#include "tilejit/blocks.h"

// ---------------------------------------------------------------- the allocator

typedef struct Counter {
  long calls;      // allocations (alloc and realloc) while armed
  long fail_at;    // 1-based call that fails; 0: none
  int sticky;      // 1: every call from fail_at on fails too
  long failed;     // how many calls failed
  long live;       // blocks alive (armed or not)
  int armed;
  void *where[24];  // the call stack of the first failed call, for messages
  int nwhere;
} Counter;

static Counter g;

static bool should_fail(void) {
  if (!g.armed) return false;
  ++g.calls;
  return g.fail_at && (g.calls == g.fail_at || (g.sticky && g.calls > g.fail_at));
}

// Each block carries a 16-byte header with a tag, so that a free of memory
// the hook did not hand out (or a double free) is caught here.
enum { HDR = 16 };
static const uint64_t TAG = 0x7a11fa11c0ffee01ull, DEAD = 0xdeadbeefdeadbeefull;

static void note_failure(void) {
  if (!g.failed++) g.nwhere = backtrace(g.where, 24);
}

static void *c_alloc(void *user, size_t n) {
  (void)user;
  if (should_fail()) {
    note_failure();
    return NULL;
  }
  unsigned char *p = malloc(HDR + n);
  if (!p) return NULL;
  memcpy(p, &TAG, 8);
  g.live++;
  return p + HDR;
}

static unsigned char *header(void *p, const char *what) {
  unsigned char *h = (unsigned char *)p - HDR;
  uint64_t tag;
  memcpy(&tag, h, 8);
  if (tag != TAG) {
    fprintf(stderr, "alloc_fail: %s of a block the hook did not allocate (%s)\n", what,
            tag == DEAD ? "double free" : "foreign pointer");
    abort();
  }
  return h;
}

static void *c_realloc(void *user, void *p, size_t n) {
  (void)user;
  unsigned char *h = header(p, "realloc");
  if (should_fail()) {
    note_failure();
    return NULL;
  }
  unsigned char *q = realloc(h, HDR + n);
  return q ? q + HDR : NULL;
}

static void c_free(void *user, void *p) {
  (void)user;
  unsigned char *h = header(p, "free");
  memcpy(h, &DEAD, 8);
  g.live--;
  free(h);
}

static void arm(void) { g.armed = 1; }
static void disarm(void) { g.armed = 0; }

static void install(void) {
  memset(&g, 0, sizeof g);
  tj_allocator a = { c_alloc, c_realloc, c_free, NULL };
  ck_assert_int_eq(tj_set_allocator(&a), TJ_OK);
}

static void uninstall(void) {
  ck_assert_msg(g.live == 0, "%ld blocks still alive at the end of the test", g.live);
  ck_assert_int_eq(tj_set_allocator(NULL), TJ_OK);
}

// One operation of a sweep: sets up (disarmed), runs the calls under test
// between arm() and disarm(), checks a failure's message and frees
// everything. Returns the status of the calls under test.
typedef tj_status (*OpFn)(void *user);

// Checks the outcome of one run. A run in which an injected failure was hit
// (g.failed) must return TJ_ERR_NO_MEMORY with a message that says "out of
// memory"; a run in which none was hit must succeed. TJ_OK after a failure
// is accepted only where the caller passes ok_allowed: work that is best
// effort by design (reading or writing the compile cache, writing the tuning
// store) may absorb the failure, and the caller then checks that the result
// is still complete. Returns whether the run succeeded.
static bool check_outcome(tj_status st, const char *msg, const char *what, bool ok_allowed) {
  const char *how = g.sticky ? " and after" : "";
  if (!g.failed) {
    ck_assert_msg(st == TJ_OK, "%s: no allocation failed, yet: %s: '%s'", what, tj_status_str(st),
                  msg ? msg : "(no message)");
    return true;
  }
  if (st == TJ_OK) {
    if (!ok_allowed) {
      fprintf(stderr, "alloc_fail: %s: the allocation that failed:\n", what);
      backtrace_symbols_fd(g.where, g.nwhere, 2);
    }
    ck_assert_msg(ok_allowed, "%s (fail at %ld%s): returned TJ_OK after an allocation failed", what,
                  g.fail_at, how);
    return true;
  }
  ck_assert_msg(st == TJ_ERR_NO_MEMORY && msg && strstr(msg, "out of memory"), "%s (fail at %ld%s): %s: '%s'",
                what, g.fail_at, how, tj_status_str(st), msg ? msg : "(no message)");
  return false;
}

static long sweep_stride(void) {
  const char *s = getenv("TJ_ALLOC_FAIL_STRIDE");
  long k = s ? strtol(s, NULL, 10) : 1;
  return k > 0 ? k : 1;
}

// Counts op's allocations, then fails each in turn. Returns the count.
static long sweep(const char *what, OpFn op, void *user) {
  g.fail_at = 0;
  g.calls = 0;
  g.failed = 0;
  long live0 = g.live;
  tj_status st = op(user);
  disarm();
  ck_assert_msg(st == TJ_OK, "%s: the unfailed run failed: %s", what, tj_status_str(st));
  ck_assert_msg(g.live == live0, "%s: unfailed run leaks %ld blocks", what, g.live - live0);
  long count = g.calls;
  ck_assert_msg(count > 0, "%s: no allocation went through the hook", what);
  long k = sweep_stride();
  for (int sticky = 0; sticky < 2; sticky++)
    for (long n = 1; n <= count; n += k) {
      g.calls = 0;
      g.failed = 0;
      g.fail_at = n;
      g.sticky = sticky;
      op(user);
      disarm();
      ck_assert_msg(g.live == live0, "%s: failing allocation %ld%s of %ld leaks %ld blocks", what, n,
                    sticky ? " and all after it" : "", count, g.live - live0);
    }
  g.fail_at = 0;
  g.sticky = 0;
  return count;
}

// ---------------------------------------------------------------- helpers

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}
static void rm_rf(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static tj_ctx *new_ctx(const char *cache_dir) {
  tj_ctx *ctx = NULL;
  ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK);
  ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, cache_dir ? cache_dir : "/tmp/tj-alloc-fail-unused"), TJ_OK);
  return ctx;
}

// A failure may leave a long-lived context without a message block (its
// last error then reads "out of memory" without one); an unarmed failing call
// gives it one again, so the live count compares equal.
static void settle(tj_ctx *ctx) { ck_assert_int_eq(tj_ctx_set_cache_dir(ctx, ""), TJ_ERR_INVALID_ARG); }

// The texts of the first (unfailed) run's kernel, and a check that a later
// successful run produced the same: a pass skipped for want of memory shows
// in the tile IR even where LLVM would hide it in the PTX.
typedef struct KernelText {
  char *tir, *ptx;
} KernelText;

static void same_kernel(KernelText *ref, const tj_kernel *k, const char *what) {
  const char *tir = tj_kernel_tir(k), *ptx = tj_kernel_ptx(k);
  ck_assert_ptr_nonnull(tir);
  ck_assert_ptr_nonnull(ptx);
  if (!ref->tir) {
    ref->tir = strdup(tir);
    ref->ptx = strdup(ptx);
    return;
  }
  ck_assert_msg(!strcmp(ref->tir, tir), "%s (fail at %ld%s): the tile IR differs from the unfailed run's", what,
                g.fail_at, g.sticky ? " and after" : "");
  ck_assert_msg(!strcmp(ref->ptx, ptx), "%s (fail at %ld%s): the PTX differs from the unfailed run's", what,
                g.fail_at, g.sticky ? " and after" : "");
}

static void kernel_text_free(KernelText *t) {
  free(t->tir);
  free(t->ptx);
  t->tir = t->ptx = NULL;
}

// ---------------------------------------------------------------- context

static tj_status op_ctx_create(void *user) {
  (void)user;
  tj_ctx *ctx = (tj_ctx *)0x1;
  arm();
  tj_status st = tj_ctx_create(&ctx);
  disarm();
  // No context, no message: the status alone says it. Building the default
  // cache directory's path (runtime/cuda.c default_cache_dir) is one of the
  // points: running out there must not give a context without a disk cache.
  ck_assert_msg(st == (g.failed ? TJ_ERR_NO_MEMORY : TJ_OK), "tj_ctx_create (fail at %ld%s): %s", g.fail_at,
                g.sticky ? " and after" : "", tj_status_str(st));
  if (st != TJ_OK) {
    ck_assert_ptr_null(ctx);
  } else {
    const char *dir = NULL;
    ck_assert_int_eq(tj_cache_dir(ctx, &dir), TJ_OK);
    ck_assert_str_eq(dir, "/tmp/tj-alloc-fail-default");
  }
  tj_ctx_free(ctx);
  return st;
}

START_TEST(ctx_create) {
  install();
  setenv("TILEJIT_CACHE_DIR", "/tmp/tj-alloc-fail-default", 1);  // nothing is written there
  long n = sweep("tj_ctx_create", op_ctx_create, NULL);
  unsetenv("TILEJIT_CACHE_DIR");
  fprintf(stderr, "alloc_fail: tj_ctx_create: %ld points\n", n);
  uninstall();
}
END_TEST

// ---------------------------------------------------------------- examples

typedef struct Example {
  const char *name;
  const char *defines[8];
} Example;

// Small tiles: the interpreter is slow and the sweep runs each point again.
static const Example examples[] = {
  { "argmax", { "BLOCK=64" } },
  { "broadcast2d", { "BM=16", "BN=16" } },
  { "dropout", { "BLOCK=256" } },
  { "layernorm", { "T=f32", "BLOCK=64" } },
  { "matmul", { "T=f16", "BLOCK_M=32", "BLOCK_N=32", "BLOCK_K=16", "num_warps=4", "num_stages=2" } },
  { "softmax", { "T=f16", "BLOCK=64" } },
  { "softmax_online", { "BLOCK=64" } },
  { "vector_add", { "BLOCK=256" } },
};
enum { NEXAMPLES = sizeof examples / sizeof examples[0] };

typedef struct ExRun {
  const Example *ex;
  char path[512];
  char *src;
  tj_kernel *k;     // the front end, for the interpreter
  tj_ctx *ctx;
  KernelText ref;   // the unfailed compile's
  unsigned char *out_ref[16];  // the unfailed interpreter run's buffers
} ExRun;

static tj_compile_opts ex_opts(const ExRun *r, unsigned flags) {
  int nd = 0;
  while (nd < 8 && r->ex->defines[nd]) nd++;
  tj_compile_opts o = { .source = r->src, .path = r->path, .defines = r->ex->defines, .ndefines = nd,
                        .arch = "sm_80", .flags = flags };
  return o;
}

// A fresh context each time: the first compile on a context sets up state
// that lives as long as the context.
static tj_status op_compile_ptx(void *user) {
  ExRun *r = user;
  tj_ctx *ctx = new_ctx(NULL);
  tj_compile_opts o = ex_opts(r, TJ_COMPILE_NO_CACHE);
  tj_kernel *k = NULL;
  arm();
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  disarm();
  // Every source must fail with TJ_ERR_NO_MEMORY (a string literal cut
  // short by out of memory fails the compile too: dsl/lex.c lex_string).
  if (check_outcome(st, tj_ctx_last_error(ctx), r->ex->name, false)) same_kernel(&r->ref, k, r->ex->name);
  else ck_assert_ptr_null(k);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  return st;
}

enum { BUF = 64 * 1024 };

static tj_status op_interpret(void *user) {
  ExRun *r = user;
  int np = tj_kernel_num_params(r->k);
  tj_arg args[16];
  void *bufs[16] = { 0 };
  ck_assert_int_le(np, 16);
  for (int i = 0; i < np; i++) {
    tj_param_info pi;
    ck_assert_int_eq(tj_kernel_param(r->k, i, &pi), TJ_OK);
    if (pi.is_ptr) {
      bufs[i] = calloc(1, BUF);
      args[i] = tj_arg_ptr(bufs[i], BUF);
    } else if (pi.dtype == TJ_F32 || pi.dtype == TJ_F64 || pi.dtype == TJ_F16) {
      args[i] = tj_arg_float(0.25);
    } else {
      args[i] = tj_arg_int(16);   // sizes and strides: 16 x 16 elements fit every buffer
    }
  }
  unsigned grid[3] = { 2, 1, 1 };
  arm();
  tj_status st = tj_kernel_interpret(r->ctx, r->k, grid, args, np);
  disarm();
  // The interpreter's buffer pool is best effort: a size class it cannot
  // record leaves the buffer unpooled (freed at the end), so a run may
  // absorb a failure. What it stored must be the unfailed run's.
  if (check_outcome(st, tj_ctx_last_error(r->ctx), r->ex->name, true))
    for (int i = 0; i < np; i++) {
      if (!bufs[i]) continue;
      if (!r->out_ref[i]) {
        r->out_ref[i] = malloc(BUF);
        memcpy(r->out_ref[i], bufs[i], BUF);
      } else {
        ck_assert_msg(!memcmp(r->out_ref[i], bufs[i], BUF), "%s (fail at %ld%s): interpreter output %d differs",
                      r->ex->name, g.fail_at, g.sticky ? " and after" : "", i);
      }
    }
  settle(r->ctx);
  for (int i = 0; i < np; i++) free(bufs[i]);
  return st;
}

START_TEST(examples_compile_and_interpret) {
  install();
  const Example *ex = &examples[_i];
  ExRun r = { .ex = ex };
  snprintf(r.path, sizeof r.path, "examples/%s.tj", ex->name);
  r.src = tj_test_read_file(r.path, NULL);
  ck_assert_ptr_nonnull(r.src);
  r.ctx = new_ctx(NULL);
  long nc = sweep(ex->name, op_compile_ptx, &r);

  tj_compile_opts o = ex_opts(&r, TJ_COMPILE_FRONTEND);
  ck_assert_msg(tj_kernel_compile(r.ctx, &o, &r.k) == TJ_OK, "%s", tj_ctx_last_error(r.ctx));
  long ni = sweep(ex->name, op_interpret, &r);
  fprintf(stderr, "alloc_fail: %s: %ld points (compile to PTX), %ld (interpreter)\n", ex->name, nc, ni);
  tj_kernel_free(r.k);
  tj_ctx_free(r.ctx);
  kernel_text_free(&r.ref);
  for (int i = 0; i < 16; i++) free(r.out_ref[i]);
  free(r.src);
  uninstall();
}
END_TEST

// ---------------------------------------------------------------- compile cache

static const char *const CSRC =
    "kernel scale(y: *f32, x: *f32, n: i32) {\n"
    "    let o = program_id(0) * 128 + arange(0, 128);\n"
    "    store(y + o, load(x + o, o < n) * 2.0, o < n);\n"
    "}\n";

typedef struct CacheRun {
  char dir[64];
  int clear;        // 1: empty the cache first (the compile writes), 0: it reads
  KernelText ref;   // the unfailed compile's
} CacheRun;

static tj_status op_cache(void *user) {
  CacheRun *c = user;
  tj_ctx *ctx = new_ctx(c->dir);
  if (c->clear) ck_assert_int_eq(tj_cache_clear(ctx, NULL), TJ_OK);
  tj_compile_opts o = { .source = CSRC, .path = "scale.tj", .arch = "sm_80" };
  tj_kernel *k = NULL;
  arm();
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  disarm();
  // The cache is best effort: a read that runs out of memory compiles
  // instead, a write that does leaves no entry. Either way the kernel must be
  // the unfailed run's, and so must whatever entry the write left.
  const char *what = c->clear ? "cache write" : "cache read";
  if (check_outcome(st, tj_ctx_last_error(ctx), what, true)) {
    same_kernel(&c->ref, k, what);
    if (g.failed && c->clear) {
      tj_kernel *again = NULL;
      tj_ctx *fresh = new_ctx(c->dir);
      ck_assert_int_eq(tj_kernel_compile(fresh, &o, &again), TJ_OK);
      same_kernel(&c->ref, again, "cache write, read back");
      tj_kernel_free(again);
      tj_ctx_free(fresh);
    }
  }
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  return st;
}

// TJ_COMPILE_DEBUG runs the IR verifier on the front end's result: its
// scratch running out is TJ_ERR_NO_MEMORY, not an internal error.
static tj_status op_compile_debug(void *user) {
  KernelText *ref = user;
  tj_ctx *ctx = new_ctx(NULL);
  tj_compile_opts o = { .source = CSRC, .path = "scale.tj", .arch = "sm_80",
                        .flags = TJ_COMPILE_NO_CACHE | TJ_COMPILE_DEBUG };
  tj_kernel *k = NULL;
  arm();
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  disarm();
  if (check_outcome(st, tj_ctx_last_error(ctx), "compile with TJ_COMPILE_DEBUG", false))
    same_kernel(ref, k, "compile with TJ_COMPILE_DEBUG");
  else ck_assert_ptr_null(k);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  return st;
}

START_TEST(compile_debug) {
  install();
  KernelText ref = { 0 };
  long n = sweep("compile with TJ_COMPILE_DEBUG", op_compile_debug, &ref);
  fprintf(stderr, "alloc_fail: compile with TJ_COMPILE_DEBUG: %ld points\n", n);
  kernel_text_free(&ref);
  uninstall();
}
END_TEST

static tj_status op_cache_list(void *user) {
  CacheRun *c = user;
  tj_ctx *ctx = new_ctx(c->dir);
  tj_cache_entry *e = NULL;
  int n = 0;
  tj_cache_summary s;
  arm();
  tj_status st = tj_cache_list(ctx, &e, &n);
  if (st == TJ_OK) st = tj_cache_stats(ctx, &s);
  disarm();
  if (check_outcome(st, tj_ctx_last_error(ctx), "cache list", false)) {
    // The one entry the write left, listed whole.
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(e[0].name, "scale");
    ck_assert_int_eq(s.entries, 1);
    ck_assert_uint_eq(s.bytes, e[0].bytes);
  }
  tj_cache_list_free(e);
  tj_ctx_free(ctx);
  return st;
}

// Three entry files and a stray temp file, then tj_cache_clear.
static tj_status op_cache_clear(void *user) {
  CacheRun *c = user;
  char path[160];
  for (int i = 0; i < 4; i++) {
    if (i < 3) snprintf(path, sizeof path, "%s/%064d.tjc", c->dir, i);
    else snprintf(path, sizeof path, "%s/.x.tjc.tmp.1", c->dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not an entry", f);
    fclose(f);
  }
  tj_ctx *ctx = new_ctx(c->dir);
  int removed = -1;
  arm();
  tj_status st = tj_cache_clear(ctx, &removed);
  disarm();
  if (check_outcome(st, tj_ctx_last_error(ctx), "cache clear", false)) {
    ck_assert_int_eq(removed, 3);
    ck_assert_int_eq(rmdir(c->dir), 0);  // empty: the temp file went too
    ck_assert_int_eq(mkdir(c->dir, 0700), 0);
  }
  tj_ctx_free(ctx);
  return st;
}

START_TEST(compile_cache) {
  install();
  CacheRun c = { .dir = "/tmp/tj_alloc_cache_XXXXXX", .clear = 1 };
  ck_assert_ptr_nonnull(mkdtemp(c.dir));
  long nw = sweep("cache write", op_cache, &c);
  // A successful write, then reads of it (a fresh context: no memory hit).
  op_cache(&c);
  c.clear = 0;
  long nr = sweep("cache read", op_cache, &c);
  long nl = sweep("cache list", op_cache_list, &c);
  rm_rf(c.dir);
  ck_assert_int_eq(mkdir(c.dir, 0700), 0);
  long nc = sweep("cache clear", op_cache_clear, &c);
  fprintf(stderr, "alloc_fail: cache: %ld points (write), %ld (read), %ld (list), %ld (clear)\n", nw, nr, nl, nc);
  rm_rf(c.dir);
  kernel_text_free(&c.ref);
  uninstall();
}
END_TEST

// ---------------------------------------------------------------- autotune store

static const char *const TSRC =
    "kernel scale(y: *f32, x: *f32, n: i32) {\n"
    "    tunable BLOCK in {64, 128};\n"
    "    let o = program_id(0) * BLOCK + arange(0, BLOCK);\n"
    "    store(y + o, load(x + o, o < n) * 2.0, o < n);\n"
    "}\n";

static tj_status fake_bench(tj_tuner *t, int index, double *ms, StrBuf *err, void *user) {
  (void)t, (void)err, (void)user;
  *ms = 1.0 + index;
  return TJ_OK;
}

typedef struct StoreRun {
  char dir[64];
  int write;        // 1: tune two keys (and store), then the first again; 0: read the first back
} StoreRun;

// fake_bench makes configuration 0 (BLOCK 64) the fastest.
static const int64_t BEST_BLOCK = 64;

static tj_status op_tune(void *user) {
  StoreRun *r = user;
  tj_ctx *ctx = new_ctx(r->dir);
  tj_compile_opts o = { .source = TSRC, .path = "scale.tj" };
  const char *keys[] = { "n" };
  tj_tuner *t = NULL;
  unsetenv("TILEJIT_AUTOTUNE");  // read the store: main turns tuning off for the blocks
  ck_assert_int_eq(tj_tuner_create(ctx, &o, keys, 1, &t), TJ_OK);
  setenv("TILEJIT_AUTOTUNE", "0", 1);
  tune_set_device(t, "Fake GPU", 9, 0, "sm_90");
  tune_set_bench_hook(t, fake_bench, NULL);
  // Compile the configurations unarmed: the compile sweeps cover them.
  for (int i = 0; i < tj_tuner_num_configs(t); i++) {
    tj_kernel *k;
    ck_assert_int_eq(tj_tuner_kernel(t, i, &k), TJ_OK);
  }
  int64_t n = 1000, other = 100;
  tj_tune_config best;
  tj_status st;
  arm();
  if (r->write) {
    // The last tune is a hit in memory on another key than the one before:
    // the tuner copies that entry's results again (autotune/tuner.c set_last).
    st = tj_tuner_tune(t, &n, 1, NULL, NULL, 0, NULL, TJ_TUNE_FORCE, &best);
    if (st == TJ_OK) st = tj_tuner_tune(t, &other, 1, NULL, NULL, 0, NULL, TJ_TUNE_FORCE, &best);
    if (st == TJ_OK) st = tj_tuner_tune(t, &n, 1, NULL, NULL, 0, NULL, 0, &best);
  } else {
    st = tj_tuner_best(t, &n, 1, &best, NULL);
    if (st == TJ_OK) {
      tj_tune_entry *e = NULL;
      int ne = 0;
      st = tj_tune_list(ctx, &e, &ne);
      tj_tune_list_free(e);
    }
    if (st == TJ_OK) {
      char *dir = NULL;
      st = tj_tune_dir(ctx, &dir);
      tj_free(dir);
    }
  }
  disarm();
  // Writing the store is best effort, so a write may absorb a failure; the
  // choice must be right and the results behind it (the tuner's own copy,
  // which is not best effort) complete.
  if (check_outcome(st, tj_ctx_last_error(ctx), r->write ? "tune store write" : "tune store read", r->write)) {
    ck_assert_int_eq(best.v[0], BEST_BLOCK);
    const tj_tune_result *res = NULL;
    int nres = 0, bi = -1;
    ck_assert_int_eq(tj_tuner_results(t, &res, &nres, &bi), TJ_OK);
    ck_assert_int_eq(nres, tj_tuner_num_configs(t));
    ck_assert_int_eq(bi, 0);
    ck_assert_int_eq(res[0].cfg.v[0], BEST_BLOCK);
  }
  tj_tuner_free(t);
  tj_ctx_free(ctx);
  return st;
}

START_TEST(autotune_store) {
  install();
  StoreRun r = { .dir = "/tmp/tj_alloc_tune_XXXXXX", .write = 1 };
  ck_assert_ptr_nonnull(mkdtemp(r.dir));
  long nw = sweep("tune store write", op_tune, &r);
  op_tune(&r);
  r.write = 0;
  long nr = sweep("tune store read", op_tune, &r);
  fprintf(stderr, "alloc_fail: autotune store: %ld points (write), %ld (read)\n", nw, nr);
  rm_rf(r.dir);
  uninstall();
}
END_TEST

// ---------------------------------------------------------------- blocks

static tj_status op_blocks_create(void *user) {
  tj_ctx *ctx = user;
  tj_blocks *b = (tj_blocks *)0x1;
  arm();
  tj_status st = tj_blocks_create(ctx, &b);
  disarm();
  check_outcome(st, tj_ctx_last_error(ctx), "tj_blocks_create", false);
  if (st != TJ_OK) ck_assert_ptr_null(b);
  settle(ctx);
  tj_blocks_free(b);
  return st;
}

typedef enum BlockOp { B_SOFTMAX, B_LAYERNORM, B_RMSNORM, B_DROPOUT, B_ATTENTION, B_COUNT } BlockOp;
static const char *const block_names[B_COUNT] = { "softmax", "layernorm", "rmsnorm", "dropout", "attention" };

typedef struct BlockRun {
  BlockOp op;
  tj_ctx *ctx;
  HostT t[8];
  unsigned char *before[8];  // every tensor before the first run, restored before each
  unsigned char *after[8];   // and after the unfailed run
} BlockRun;

static tj_status op_block(void *user) {
  BlockRun *r = user;
  tj_blocks *b = NULL;
  ck_assert_int_eq(tj_blocks_create(r->ctx, &b), TJ_OK);
  HostT *t = r->t;
  tj_status st = TJ_OK;
  tj_attn_layout *l = NULL;
  if (r->op == B_ATTENTION) ck_assert_int_eq(tj_attn_layout_create(b, NULL, 1, 2, 16, &l), TJ_OK);
  for (int i = 0; i < 8; i++) {
    if (!t[i].buf) continue;
    if (!r->before[i]) {
      r->before[i] = malloc(t[i].nbytes);
      memcpy(r->before[i], t[i].buf, t[i].nbytes);
    } else {
      memcpy(t[i].buf, r->before[i], t[i].nbytes);
    }
  }
  arm();
  switch (r->op) {
  case B_SOFTMAX: {
    tj_softmax_opts o = { .causal = 1 };
    st = tj_softmax_fwd(b, &t[0].t, &t[1].t, &o, NULL);
    if (st == TJ_OK) st = tj_softmax_bwd(b, &t[1].t, &t[2].t, &t[3].t, &o, NULL);
    break;
  }
  case B_LAYERNORM:
    // x, w, bias, y, mean, rstd; then dy (t[2] reused as dx's source) dx dw db
    st = tj_layernorm_fwd(b, &t[0].t, &t[1].t, &t[2].t, 1e-5, &t[3].t, &t[4].t, &t[5].t, NULL);
    if (st == TJ_OK)
      st = tj_layernorm_bwd(b, &t[3].t, &t[0].t, &t[1].t, &t[4].t, &t[5].t, &t[6].t, &t[7].t, &t[2].t, NULL);
    break;
  case B_RMSNORM:
    // x, w, y, rstd; then dy (y reused) dx dw
    st = tj_rmsnorm_fwd(b, &t[0].t, &t[1].t, 1e-5, &t[2].t, &t[3].t, NULL);
    if (st == TJ_OK) st = tj_rmsnorm_bwd(b, &t[2].t, &t[0].t, &t[1].t, &t[3].t, &t[4].t, &t[5].t, NULL);
    break;
  case B_DROPOUT: {
    tj_dropout_opts o = { .p = 0.5, .training = 1, .seed = 7, .act = TJ_ACT_GELU };
    st = tj_dropout_fwd(b, &t[0].t, &t[1].t, &t[2].t, &o, NULL);
    if (st == TJ_OK) st = tj_dropout_bwd(b, &t[2].t, &t[0].t, &t[1].t, &t[3].t, &t[4].t, &o, NULL);
    break;
  }
  case B_ATTENTION:
    st = tj_attention_fwd(b, &t[0].t, &t[1].t, &t[2].t, l, 0.0, 1, &t[3].t, &t[4].t, NULL);
    if (st == TJ_OK)
      st = tj_attention_bwd(b, &t[0].t, &t[1].t, &t[2].t, &t[3].t, &t[4].t, &t[3].t, l, 0.0, 1, &t[5].t, &t[6].t,
                            &t[7].t, NULL);
    break;
  default:
    break;
  }
  disarm();
  // Block calls run the interpreter (whose buffer pool is best effort, see
  // op_interpret), so a call may absorb a failure; every tensor must then
  // hold the unfailed run's bytes.
  if (check_outcome(st, tj_ctx_last_error(r->ctx), block_names[r->op], true))
    for (int i = 0; i < 8; i++) {
      if (!t[i].buf) continue;
      if (!r->after[i]) {
        r->after[i] = malloc(t[i].nbytes);
        memcpy(r->after[i], t[i].buf, t[i].nbytes);
      } else {
        ck_assert_msg(!memcmp(r->after[i], t[i].buf, t[i].nbytes), "%s (fail at %ld%s): tensor %d differs",
                      block_names[r->op], g.fail_at, g.sticky ? " and after" : "", i);
      }
    }
  settle(r->ctx);
  tj_attn_layout_free(l);
  tj_blocks_free(b);
  return st;
}

static void block_tensors(BlockRun *r) {
  HostT *t = r->t;
  switch (r->op) {
  case B_SOFTMAX: {
    int64_t shape[2] = { 3, 40 };
    for (int i = 0; i < 4; i++) host_init(&t[i], TJ_F16, 2, shape, NULL), host_fill(&t[i], 1 + (uint64_t)i, -2, 2);
    break;
  }
  case B_LAYERNORM: {
    int64_t shape[2] = { 3, 40 }, k[1] = { 40 }, m[1] = { 3 };
    host_init(&t[0], TJ_F32, 2, shape, NULL);
    host_init(&t[1], TJ_F32, 1, k, NULL);
    host_init(&t[2], TJ_F32, 1, k, NULL);
    host_init(&t[3], TJ_F32, 2, shape, NULL);
    host_init(&t[4], TJ_F32, 1, m, NULL);
    host_init(&t[5], TJ_F32, 1, m, NULL);
    host_init(&t[6], TJ_F32, 2, shape, NULL);
    host_init(&t[7], TJ_F32, 1, k, NULL);
    for (int i = 0; i < 8; i++) host_fill(&t[i], 3 + (uint64_t)i, 0.5, 1.5);
    break;
  }
  case B_RMSNORM: {
    int64_t shape[2] = { 3, 40 }, k[1] = { 40 }, m[1] = { 3 };
    host_init(&t[0], TJ_F32, 2, shape, NULL);
    host_init(&t[1], TJ_F32, 1, k, NULL);
    host_init(&t[2], TJ_F32, 2, shape, NULL);
    host_init(&t[3], TJ_F32, 1, m, NULL);
    host_init(&t[4], TJ_F32, 2, shape, NULL);
    host_init(&t[5], TJ_F32, 1, k, NULL);
    for (int i = 0; i < 6; i++) host_fill(&t[i], 4 + (uint64_t)i, 0.5, 1.5);
    break;
  }
  case B_DROPOUT: {
    int64_t shape[2] = { 3, 40 }, k[1] = { 40 };
    host_init(&t[0], TJ_BF16, 2, shape, NULL);
    host_init(&t[1], TJ_BF16, 1, k, NULL);
    host_init(&t[2], TJ_BF16, 2, shape, NULL);
    host_init(&t[3], TJ_BF16, 2, shape, NULL);
    host_init(&t[4], TJ_BF16, 1, k, NULL);
    for (int i = 0; i < 5; i++) host_fill(&t[i], 5 + (uint64_t)i, -1, 1);
    break;
  }
  case B_ATTENTION: {
    int64_t shape[4] = { 1, 1, 32, 32 }, lshape[3] = { 1, 1, 32 };
    for (int i = 0; i < 8; i++) {
      if (i == 4) host_init(&t[i], TJ_F32, 3, lshape, NULL);
      else host_init(&t[i], TJ_F16, 4, shape, NULL), host_fill(&t[i], 9 + (uint64_t)i, -1, 1);
    }
    break;
  }
  default:
    break;
  }
}

START_TEST(blocks_create) {
  install();
  tj_ctx *ctx = new_ctx(NULL);
  long n = sweep("tj_blocks_create", op_blocks_create, ctx);
  fprintf(stderr, "alloc_fail: tj_blocks_create: %ld points\n", n);
  tj_ctx_free(ctx);
  uninstall();
}
END_TEST

START_TEST(blocks_calls) {
  install();
  BlockRun r;
  memset(&r, 0, sizeof r);
  r.op = (BlockOp)_i;
  r.ctx = new_ctx(NULL);
  block_tensors(&r);
  long n = sweep(block_names[r.op], op_block, &r);
  fprintf(stderr, "alloc_fail: %s block (fwd + bwd): %ld points\n", block_names[r.op], n);
  for (int i = 0; i < 8; i++) {
    host_free(&r.t[i]);
    free(r.before[i]);
    free(r.after[i]);
  }
  tj_ctx_free(r.ctx);
  uninstall();
}
END_TEST

// ---------------------------------------------------------------- the hook itself

START_TEST(set_allocator_rejects_partial) {
  tj_allocator a = { c_alloc, NULL, c_free, NULL };
  ck_assert_int_eq(tj_set_allocator(&a), TJ_ERR_INVALID_ARG);
  ck_assert_int_eq(tj_set_allocator(NULL), TJ_OK);
  tj_free(NULL);
}
END_TEST

static Suite *alloc_fail_suite(void) {
  Suite *s = suite_create("alloc_fail");
  TCase *tc = tcase_create("sweep");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, set_allocator_rejects_partial);
  tcase_add_test(tc, ctx_create);
  tcase_add_loop_test(tc, examples_compile_and_interpret, 0, NEXAMPLES);
  tcase_add_test(tc, compile_debug);
  tcase_add_test(tc, compile_cache);
  tcase_add_test(tc, autotune_store);
  tcase_add_test(tc, blocks_create);
  tcase_add_loop_test(tc, blocks_calls, 0, B_COUNT);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  // No driver, even on a GPU machine: the sweeps never touch CUDA.
  setenv("TILEJIT_LIBCUDA", "/nonexistent/libcuda.so.1", 1);
  setenv("TILEJIT_AUTOTUNE", "0", 1);
  return tj_test_run(alloc_fail_suite());
}
