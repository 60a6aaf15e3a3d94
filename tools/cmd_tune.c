/* cmd_tune.c: `tilejit tune` (a tuning run from the command line),
 * `tilejit tune --list|--clear` (the stored results), and `tilejit bench`
 * (the same setup, every configuration timed, nothing stored, with GB/s,
 * TFLOP/s and the copy of the same bytes as a yardstick).
 *
 * Public API only (tilejit/autotune.h). To benchmark a kernel the command
 * needs its arguments: integer scalars come from --size NAME=VALUE, pointer
 * parameters get device buffers filled with random data (floats uniform in
 * [-1, 1), integers 0), sized by --buffer NAME=ELEMS or a default (see
 * usage). Sizes not named after a parameter (rows) are variables for the
 * --grid and --buffer expressions, which understand integers, names, + - *
 * / % ( ) and cdiv/min/max; inside --grid the tuned values (BLOCK) and
 * integer -D values are names too. Exit codes: 0 ok, 1 error, 2 usage.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "tilejit/autotune.h"

#define MAX_NAMED 64

typedef struct Named {
  const char *name;   // points into argv
  size_t len;
  const char *text;   // the value text
} Named;

typedef struct Tune {
  Named sizes[MAX_NAMED];
  int nsizes;
  Named buffers[MAX_NAMED];
  int nbuffers;
  const char **defines;
  int ndefines;
  char *grid_expr[3];
  int ngrid;
  tj_tuner *tuner;
  const tj_tune_config *cfg;  // during grid evaluation
  char err[256];
  int tty;
  tj_param_info *pinfo;       // names strdup'd
  int np;
} Tune;

static void tune_usage(FILE *f) {
  fputs("usage: tilejit tune FILE.tj [options] --size NAME=VALUE... --grid EXPR[,EXPR[,EXPR]]\n"
        "       tilejit tune --list | --clear\n"
        "\n"
        "Benchmarks every configuration of a kernel's tunables (`tunable NAME in {...}`, and\n"
        "num_warps) on the GPU, stores the best beside the compile cache (later runs and\n"
        "tj_tuner_launch reuse it without benchmarking) and prints a table of all of them.\n"
        "\n"
        "options:\n"
        "  -D NAME=VALUE        a constant that is not tuned (repeatable); setting a tunable pins it\n"
        "  --kernel NAME        the kernel, when the file has several\n"
        "  --size NAME=VALUE    an integer scalar parameter, or a size used in --grid/--buffer\n"
        "                       expressions (repeatable); float scalar parameters take a float\n"
        "  --buffer NAME=ELEMS  elements of pointer parameter NAME (an expression over sizes).\n"
        "                       Default: the product of the sizes that are not parameters times the\n"
        "                       largest size that is a parameter (rows=4096 and n=4096: 4096*4096)\n"
        "  --grid EXPR,...      programs per axis; may use tuned values: --grid 'cdiv(n,BLOCK)'\n"
        "  --key NAME,...       the sizes that form the tuning key (default: every --size)\n"
        "  --axis NAME=V,V,...  tune a constant over these values, or restrict a tunable\n"
        "  --num-warps N,N,...  tune num_warps as a launch option (kernels without the tunable)\n"
        "  --warmup N --reps N  launches before timing and timed runs per configuration (3, 25)\n"
        "  --no-fp-fusion       compile without fma contraction (see 'tilejit compile --help')\n"
        "  --list               list stored results; --clear removes them\n"
        "  -h, --help           show this help\n"
        "\n"
        "example:\n"
        "  tilejit tune tests/dsl/kernels/softmax_tunable.tj -D T=f16 --size rows=4096 \\\n"
        "      --size n=4096 --size stride=4096 --grid rows --axis BLOCK=4096,8192\n"
        "  (the CLI does not prune: restrict axes whose values would be wrong for the sizes)\n",
        f);
}

static void bench_usage(FILE *f) {
  fputs("usage: tilejit bench FILE.tj [options] --size NAME=VALUE... --grid EXPR[,EXPR[,EXPR]]\n"
        "                     [--bytes EXPR] [--flops EXPR]\n"
        "\n"
        "Times a kernel on the GPU: each configuration of its tunables that -D, --axis and\n"
        "--num-warps leave (pin them all with -D for one), the way the autotuner times (L2\n"
        "flushed before each run, the median), on device buffers of random data. Nothing is\n"
        "stored. With --bytes (the bytes the kernel must move) it prints GB/s and the ratio to\n"
        "copying that many bytes (half read, half written) with a DSL copy kernel timed the\n"
        "same way in the same run; with --flops, TFLOP/s.\n"
        "\n"
        "options: as 'tilejit tune' (-D, --kernel, --size, --buffer, --grid, --axis, --num-warps,\n"
        "--warmup, --reps, --no-fp-fusion), and:\n"
        "  --bytes EXPR         bytes moved per launch, over sizes and tuned values: --bytes '4*n'\n"
        "  --flops EXPR         floating-point operations per launch\n"
        "  -h, --help           show this help\n"
        "\n"
        "example:\n"
        "  tilejit bench examples/softmax.tj -D T=f16 -D BLOCK=4096 --size rows=4096 \\\n"
        "      --size n=4096 --size stride=4096 --grid rows --num-warps 4,8,16 --bytes '2*2*rows*n'\n",
        f);
}

// ---------------------------------------------------------------- expressions

typedef struct Expr {
  const char *p;
  Tune *tu;
  bool with_cfg;
  const char *err;
  char errbuf[160];
} Expr;

static bool lookup_named(const Named *v, int n, const char *name, size_t len, int64_t *out) {
  for (int i = n - 1; i >= 0; i--) {
    if (v[i].len != len || strncmp(v[i].name, name, len) != 0) continue;
    char *end;
    long long x = strtoll(v[i].text, &end, 0);
    if (*end) return false;
    *out = x;
    return true;
  }
  return false;
}

static bool lookup(Expr *e, const char *name, size_t len, int64_t *out) {
  Tune *tu = e->tu;
  if (lookup_named(tu->sizes, tu->nsizes, name, len, out)) return true;
  if (e->with_cfg && tu->cfg) {
    char nm[64];
    if (len < sizeof nm) {
      memcpy(nm, name, len);
      nm[len] = '\0';
      if (tj_tuner_config_value(tu->tuner, tu->cfg, nm, out) == TJ_OK) return true;
    }
  }
  for (int i = tu->ndefines - 1; i >= 0; i--) {
    const char *d = tu->defines[i];
    if (strncmp(d, name, len) != 0 || d[len] != '=') continue;
    char *end;
    long long x = strtoll(d + len + 1, &end, 0);
    if (*end) return false;
    *out = x;
    return true;
  }
  return false;
}

static void skip_ws(Expr *e) {
  while (*e->p == ' ' || *e->p == '\t') e->p++;
}

static int64_t expr_add(Expr *e);

static int64_t fail(Expr *e, const char *fmt, const char *a, size_t n) {
  if (!e->err) {
    snprintf(e->errbuf, sizeof e->errbuf, fmt, (int)n, a);
    e->err = e->errbuf;
  }
  return 0;
}

// primary = INT | NAME | NAME "(" add "," add ")" | "(" add ")" | "-" primary
static int64_t expr_primary(Expr *e) {
  skip_ws(e);
  if (e->err) return 0;
  if (*e->p == '-') {
    e->p++;
    return -expr_primary(e);
  }
  if (*e->p == '(') {
    e->p++;
    int64_t v = expr_add(e);
    skip_ws(e);
    if (*e->p != ')') return fail(e, "expected ')' at '%.*s'", e->p, strlen(e->p));
    e->p++;
    return v;
  }
  if (*e->p >= '0' && *e->p <= '9') {
    char *end;
    long long v = strtoll(e->p, &end, 0);
    e->p = end;
    return v;
  }
  const char *s = e->p;
  while ((*e->p >= 'a' && *e->p <= 'z') || (*e->p >= 'A' && *e->p <= 'Z') || *e->p == '_' ||
         (e->p > s && *e->p >= '0' && *e->p <= '9'))
    e->p++;
  size_t n = (size_t)(e->p - s);
  if (n == 0) return fail(e, "unexpected '%.*s'", s, *s ? strlen(s) : 0);
  skip_ws(e);
  if (*e->p == '(') {
    bool cdiv = n == 4 && !strncmp(s, "cdiv", 4), mx = n == 3 && !strncmp(s, "max", 3),
         mn = n == 3 && !strncmp(s, "min", 3);
    if (!cdiv && !mx && !mn) return fail(e, "unknown function '%.*s' (cdiv, min, max)", s, n);
    e->p++;
    int64_t a = expr_add(e);
    skip_ws(e);
    if (*e->p != ',') return fail(e, "'%.*s' takes two arguments", s, n);
    e->p++;
    int64_t b = expr_add(e);
    skip_ws(e);
    if (*e->p != ')') return fail(e, "expected ')' after the arguments of '%.*s'", s, n);
    e->p++;
    if (cdiv) {
      if (b == 0) return fail(e, "%.*sdivision by zero in cdiv", "", 0);
      return (a + b - 1) / b;
    }
    return mx ? (a > b ? a : b) : (a < b ? a : b);
  }
  int64_t v;
  if (!lookup(e, s, n, &v)) return fail(e, "unknown name '%.*s' (define it with --size)", s, n);
  return v;
}

static int64_t expr_mul(Expr *e) {
  int64_t v = expr_primary(e);
  for (;;) {
    skip_ws(e);
    char op = *e->p;
    if (e->err || (op != '*' && op != '/' && op != '%')) return v;
    e->p++;
    int64_t r = expr_primary(e);
    if (op != '*' && r == 0) return fail(e, "%.*sdivision by zero", "", 0);
    v = op == '*' ? v * r : op == '/' ? v / r : v % r;
  }
}

static int64_t expr_add(Expr *e) {
  int64_t v = expr_mul(e);
  for (;;) {
    skip_ws(e);
    char op = *e->p;
    if (e->err || (op != '+' && op != '-')) return v;
    e->p++;
    int64_t r = expr_mul(e);
    v = op == '+' ? v + r : v - r;
  }
}

static bool eval(Tune *tu, const char *text, bool with_cfg, int64_t *out, char *err, size_t errn) {
  Expr e = { .p = text, .tu = tu, .with_cfg = with_cfg };
  int64_t v = expr_add(&e);
  skip_ws(&e);
  if (!e.err && *e.p) fail(&e, "unexpected '%.*s'", e.p, strlen(e.p));
  if (e.err) {
    snprintf(err, errn, "in '%s': %s", text, e.err);
    return false;
  }
  *out = v;
  return true;
}

static tj_status grid_cb(const tj_tuner *t, const tj_tune_config *cfg, const tj_arg *args, int nargs,
                         unsigned grid[3], void *user) {
  (void)t, (void)args, (void)nargs;
  Tune *tu = user;
  tu->cfg = cfg;
  grid[0] = grid[1] = grid[2] = 1;
  for (int i = 0; i < tu->ngrid; i++) {
    int64_t v;
    if (!eval(tu, tu->grid_expr[i], true, &v, tu->err, sizeof tu->err)) return TJ_ERR_INVALID_ARG;
    if (v < 0 || v > 0x7fffffff) {
      snprintf(tu->err, sizeof tu->err, "grid '%s' is %lld", tu->grid_expr[i], (long long)v);
      return TJ_ERR_INVALID_ARG;
    }
    grid[i] = (unsigned)v;
  }
  return TJ_OK;
}

// Splits "a,cdiv(n,B),c" at top-level commas (at most 3 parts).
static bool split_grid(Tune *tu, const char *s) {
  int depth = 0;
  const char *start = s;
  for (const char *p = s;; p++) {
    if (*p == '(') depth++;
    if (*p == ')') depth--;
    if ((*p == ',' && depth == 0) || !*p) {
      if (tu->ngrid == 3 || p == start) return false;
      size_t n = (size_t)(p - start);
      tu->grid_expr[tu->ngrid] = malloc(n + 1);
      if (!tu->grid_expr[tu->ngrid]) return false;
      memcpy(tu->grid_expr[tu->ngrid], start, n);
      tu->grid_expr[tu->ngrid][n] = '\0';
      tu->ngrid++;
      if (!*p) return true;
      start = p + 1;
    }
  }
}

// ---------------------------------------------------------------- buffers

static size_t dtype_size(tj_dtype d) {
  switch (d) {
  case TJ_BOOL: case TJ_I8: case TJ_U8: return 1;
  case TJ_I16: case TJ_U16: case TJ_F16: case TJ_BF16: return 2;
  case TJ_I32: case TJ_U32: case TJ_F32: return 4;
  default: return 8;
  }
}

static uint16_t f32_to_f16_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
  uint32_t man = x & 0x7fffffu;
  if (exp <= 0) return (uint16_t)sign;            // tiny values: zero is fine for test data
  if (exp >= 31) return (uint16_t)(sign | 0x7c00u);
  uint32_t h = sign | (uint32_t)exp << 10 | man >> 13;
  uint32_t rest = man & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
  return (uint16_t)h;
}

static uint16_t f32_to_bf16_bits(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  x += 0x7fffu + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

// Floats uniform in [-1, 1); integers and bools 0 (safe as indices or flags).
static void fill_random(void *buf, size_t elems, tj_dtype d, uint64_t *state) {
  for (size_t i = 0; i < elems; i++) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    float v = (float)((double)(*state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
    switch (d) {
    case TJ_F16: ((uint16_t *)buf)[i] = f32_to_f16_bits(v); break;
    case TJ_BF16: ((uint16_t *)buf)[i] = f32_to_bf16_bits(v); break;
    case TJ_F32: ((float *)buf)[i] = v; break;
    case TJ_F64: ((double *)buf)[i] = v; break;
    default: memset((char *)buf + i * dtype_size(d), 0, dtype_size(d)); break;
    }
  }
}

// ---------------------------------------------------------------- output

static void progress_cb(const tj_tuner *t, int i, int n, const tj_tune_result *r, double best_ms, void *user) {
  (void)user;
  char cs[160];
  tj_tuner_config_str(t, &r->cfg, cs, sizeof cs);
  if (r->status == TJ_OK)
    fprintf(stderr, "\r\033[Ktune: config %d of %d  %s  %.2f us  (best %.2f us)", i + 1, n, cs, r->ms * 1e3,
            best_ms * 1e3);
  else
    fprintf(stderr, "\r\033[Ktune: config %d of %d  %s  unusable: %s", i + 1, n, cs, r->error);
  // Keep failures and the last line on screen; the others are overwritten.
  if (i + 1 == n || r->status != TJ_OK) fputc('\n', stderr);
  fflush(stderr);
}

static void print_table(tj_tuner *t, const char *dev, const char *sizes, const tj_tune_result *r, int n, int best) {
  double best_ms = -1;
  for (int i = 0; i < n; i++)
    if (r[i].index == best) best_ms = r[i].ms;
  printf("kernel %s on %s, sizes %s: %d configurations\n", tj_tuner_kernel_name(t), dev, sizes, n);
  int na = tj_tuner_num_axes(t);
  printf("  %4s", "#");
  for (int a = 0; a < na; a++) {
    const char *name;
    tj_tuner_axis(t, a, &name, NULL, NULL);
    printf("  %10s", name);
  }
  printf("  %12s  %8s\n", "time (us)", "vs best");
  for (int i = 0; i < n; i++) {
    printf("  %4d", r[i].index);
    for (int a = 0; a < na; a++) printf("  %10lld", (long long)r[i].cfg.v[a]);
    if (r[i].status == TJ_OK) {
      if (r[i].index == best) printf("  %12.2f  %8s\n", r[i].ms * 1e3, "best *");
      else printf("  %12.2f  %7.2fx\n", r[i].ms * 1e3, best_ms > 0 ? r[i].ms / best_ms : 0.0);
    } else {
      printf("  unusable: %s: %s\n", tj_status_str(r[i].status), r[i].error);
    }
  }
}

// ---------------------------------------------------------------- bench

// The yardstick of --bytes: y = x in 16-byte vectors, 2048 i32 per
// program, timed by tj_tuner_measure exactly as the kernel is.
static const char COPY_SRC[] =
    "kernel tj_bench_copy(y: *i32, x: *i32, n: i64) {\n"
    "    let o = cast(program_id(0), i64) * 2048 + cast(arange(0, 2048), i64);\n"
    "    let m = o < n;\n"
    "    store(y + o, load(x + o, m), m);\n"
    "}\n";

// GB/s of moving `bytes` in all by copying (bytes / 2 read, bytes / 2
// written); negative with the reason in err when it could not be measured.
static double copy_gbps(tj_ctx *ctx, int64_t bytes, int warmup, int reps, char *err, size_t errn) {
  int64_t n = bytes / 8;   // i32 elements per buffer
  if (n < 1 || (n + 2047) / 2048 > 0x7fffffff) {
    snprintf(err, errn, "%lld bytes: not a size to copy", (long long)bytes);
    return -1;
  }
  size_t nb = (size_t)n * 4;
  void *x = NULL, *y = NULL;
  tj_tuner *t = NULL;
  tj_compile_opts o = { .source = COPY_SRC, .path = "<tilejit bench copy>", .num_warps = 4 };
  double ms = 0, gbps = -1;
  tj_status st = tj_device_malloc(ctx, nb, &x);
  if (st == TJ_OK) st = tj_device_malloc(ctx, nb, &y);
  if (st == TJ_OK) st = tj_memset_d8(ctx, x, 0, nb);
  if (st == TJ_OK) st = tj_tuner_create(ctx, &o, NULL, 0, &t);
  if (st == TJ_OK) st = tj_tuner_set_bench(t, warmup, reps);
  if (st == TJ_OK) st = tj_tuner_set_written(t, 0);
  if (st == TJ_OK) {
    tj_arg a[3] = { tj_arg_ptr(y, nb), tj_arg_ptr(x, nb), tj_arg_int(n) };
    unsigned g[3] = { (unsigned)((n + 2047) / 2048), 1, 1 };
    st = tj_tuner_measure(t, 0, g, a, 3, NULL, reps, &ms);
  }
  if (st == TJ_OK && ms > 0) gbps = (double)nb * 2 / (ms * 1e-3) / 1e9;
  else snprintf(err, errn, "%s", st != TJ_OK ? tj_ctx_last_error(ctx) : "no time measured");
  tj_tuner_free(t);
  if (y) tj_device_free(ctx, y);
  if (x) tj_device_free(ctx, x);
  return gbps;
}

// Times every configuration of tu->tuner (nothing stored) and prints a
// table; 0 when at least one configuration ran.
static int run_bench(tj_ctx *ctx, Tune *tu, const char *dev, const tj_arg *args, int np, const char *bytes_expr,
                     const char *flops_expr, int warmup, int reps) {
  tj_tuner *t = tu->tuner;
  int nc = tj_tuner_num_configs(t), na = tj_tuner_num_axes(t), ok = 0;
  char err[256];
  double copy = -1;
  if (bytes_expr) {   // the yardstick for configuration 0's byte count
    tj_tune_config c0;
    int64_t b0 = 0;
    tu->cfg = tj_tuner_config(t, 0, &c0) == TJ_OK ? &c0 : NULL;
    if (tu->cfg && eval(tu, bytes_expr, true, &b0, err, sizeof err)) copy = copy_gbps(ctx, b0, warmup, reps, err, sizeof err);
    if (copy < 0) fprintf(stderr, "tilejit: warning: the copy was not measured: %s\n", err);
  }
  printf("kernel %s on %s: %d configuration%s, median of %d runs, L2 flushed before each\n",
         tj_tuner_kernel_name(t), dev, nc, nc == 1 ? "" : "s", reps);
  printf("  %4s", "#");
  for (int a = 0; a < na; a++) {
    const char *name;
    tj_tuner_axis(t, a, &name, NULL, NULL);
    printf("  %10s", name);
  }
  printf("  %12s", "time (us)");
  if (bytes_expr) printf("  %9s%s", "GB/s", copy > 0 ? "   of copy" : "");
  if (flops_expr) printf("  %9s", "TFLOP/s");
  putchar('\n');
  for (int i = 0; i < nc; i++) {
    tj_tune_config cfg;
    unsigned g[3];
    double ms = 0;
    tj_status st = tj_tuner_config(t, i, &cfg);
    printf("  %4d", i);
    for (int a = 0; a < na; a++) printf("  %10lld", st == TJ_OK ? (long long)cfg.v[a] : 0LL);
    if (st == TJ_OK && (st = grid_cb(t, &cfg, args, np, g, tu)) != TJ_OK) {
      printf("  unusable: --grid %s\n", tu->err);
      continue;
    }
    if (st == TJ_OK) st = tj_tuner_measure(t, i, g, args, np, NULL, reps, &ms);
    if (st != TJ_OK) {
      printf("  unusable: %s: %s\n", tj_status_str(st), tj_ctx_last_error(ctx));
      continue;
    }
    ok++;
    printf("  %12.2f", ms * 1e3);
    int64_t v;
    if (bytes_expr && eval(tu, bytes_expr, true, &v, err, sizeof err)) {
      double gbps = (double)v / (ms * 1e-3) / 1e9;
      printf("  %9.1f", gbps);
      if (copy > 0) printf("  %7.1f%%", 100.0 * gbps / copy);
    }
    if (flops_expr && eval(tu, flops_expr, true, &v, err, sizeof err))
      printf("  %9.2f", (double)v / (ms * 1e-3) / 1e12);
    putchar('\n');
  }
  if (copy > 0) printf("copy of the same bytes (a DSL copy kernel, timed the same way): %.1f GB/s\n", copy);
  return ok ? 0 : 1;
}

static int tune_list(tj_ctx *ctx) {
  tj_tune_entry *e = NULL;
  int n = 0;
  if (tj_tune_list(ctx, &e, &n) != TJ_OK) {
    fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
    return 1;
  }
  char *dir = NULL;
  tj_tune_dir(ctx, &dir);
  printf("tuning results: %s (%d)\n", dir ? dir : "?", n);
  tj_free(dir);
  if (n) printf("  %-20s %-24s %-28s %10s %6s  %-24s %s\n", "kernel", "sizes", "best", "time (us)", "tried", "device", "key");
  for (int i = 0; i < n; i++) {
    if (e[i].corrupt) {
      printf("  %-20s %-24s %-28s %10s %6s  %-24s %.16s\n", "?", "(damaged: re-tuned on next use)", "", "", "", "",
             e[i].key);
      continue;
    }
    char tried[32];
    snprintf(tried, sizeof tried, "%d", e[i].nconfigs - e[i].nfailed);
    char tm[32] = "-";
    if (e[i].best_ms >= 0) snprintf(tm, sizeof tm, "%.2f", e[i].best_ms * 1e3);
    printf("  %-20s %-24s %-28s %10s %6s  %-24s %.16s\n", e[i].kernel, e[i].sizes, e[i].best, tm, tried, e[i].device,
           e[i].key);
  }
  tj_tune_list_free(e);
  return 0;
}

// ---------------------------------------------------------------- the command

static bool parse_named(const char *opt, const char *v, Named *out) {
  const char *eq = strchr(v, '=');
  if (!eq || eq == v || !eq[1]) {
    fprintf(stderr, "tilejit: error: %s needs NAME=VALUE, got '%s'\n", opt, v);
    return false;
  }
  out->name = v;
  out->len = (size_t)(eq - v);
  out->text = eq + 1;
  return true;
}

static bool parse_list(const char *opt, const char *v, int64_t *vals, int *n) {
  *n = 0;
  for (const char *p = v; *p;) {
    char *end;
    long long x = strtoll(p, &end, 0);
    if (end == p || (*end && *end != ',') || *n == 64) {
      fprintf(stderr, "tilejit: error: %s needs a list of integers like 1,2,4, got '%s'\n", opt, v);
      return false;
    }
    vals[(*n)++] = x;
    p = *end ? end + 1 : end;
  }
  return *n > 0;
}

static const char *opt_val(int argc, char **argv, int *i, const char *name, bool *bad) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n] != '\0') return NULL;
  if (*i + 1 >= argc) {
    fprintf(stderr, "tilejit: error: %s needs a value\n", name);
    *bad = true;
    return NULL;
  }
  return argv[++*i];
}

typedef struct AxisOpt {
  const char *name;
  size_t len;
  int64_t vals[64];
  int n;
} AxisOpt;

static int tune_main(int argc, char **argv, bool bench) {
  const char *cmd = bench ? "bench" : "tune";
  Tune tu;
  memset(&tu, 0, sizeof tu);
  const char *file = NULL, *kernel = NULL, *keyopt = NULL, *grid = NULL, *bytes_expr = NULL, *flops_expr = NULL;
  bool list = false, clear = false, bad = false;
  int warmup = 3, reps = 25;
  unsigned flags = 0;
  AxisOpt axes[TJ_TUNE_MAX_AXES + 1];
  int naxes = 0;
  tu.defines = calloc((size_t)argc + 1, sizeof *tu.defines);
  if (!tu.defines) return 1;
  int rc = 2;
  tj_ctx *ctx = NULL;
  void *bufs[64] = { 0 };
  int nbufs = 0;
  tj_arg *args = NULL;

  for (int i = 1; i < argc && !bad; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      if (bench) bench_usage(stdout);
      else tune_usage(stdout);
      rc = 0;
      goto out;
    } else if (bench && (!strcmp(a, "--list") || !strcmp(a, "--clear") || !strncmp(a, "--key", 5))) {
      fprintf(stderr, "tilejit: error: '%s' is an option of 'tilejit tune'; bench stores nothing\n", a);
      goto out;
    } else if (bench && (v = opt_val(argc, argv, &i, "--bytes", &bad))) {
      bytes_expr = v;
    } else if (bench && (v = opt_val(argc, argv, &i, "--flops", &bad))) {
      flops_expr = v;
    } else if (!strcmp(a, "--list")) {
      list = true;
    } else if (!strcmp(a, "--clear")) {
      clear = true;
    } else if (!strcmp(a, "-D")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "tilejit: error: -D needs NAME=VALUE\n");
        goto out;
      }
      tu.defines[tu.ndefines++] = argv[++i];
    } else if (!strncmp(a, "-D", 2)) {
      tu.defines[tu.ndefines++] = a + 2;
    } else if ((v = opt_val(argc, argv, &i, "--size", &bad))) {
      if (tu.nsizes == MAX_NAMED || !parse_named("--size", v, &tu.sizes[tu.nsizes])) goto out;
      tu.nsizes++;
    } else if ((v = opt_val(argc, argv, &i, "--buffer", &bad))) {
      if (tu.nbuffers == MAX_NAMED || !parse_named("--buffer", v, &tu.buffers[tu.nbuffers])) goto out;
      tu.nbuffers++;
    } else if ((v = opt_val(argc, argv, &i, "--grid", &bad))) {
      grid = v;
    } else if ((v = opt_val(argc, argv, &i, "--kernel", &bad))) {
      kernel = v;
    } else if ((v = opt_val(argc, argv, &i, "--key", &bad))) {
      keyopt = v;
    } else if ((v = opt_val(argc, argv, &i, "--axis", &bad)) || (v = opt_val(argc, argv, &i, "--num-warps", &bad))) {
      bool warps = !strncmp(a, "--num-warps", 11);
      if (naxes == TJ_TUNE_MAX_AXES) {
        fprintf(stderr, "tilejit: error: at most %d axes\n", TJ_TUNE_MAX_AXES);
        goto out;
      }
      AxisOpt *ax = &axes[naxes];
      const char *list_text = v;
      if (warps) {
        ax->name = "num_warps";
        ax->len = 9;
      } else {
        const char *eq = strchr(v, '=');
        if (!eq || eq == v) {
          fprintf(stderr, "tilejit: error: --axis needs NAME=V,V,..., got '%s'\n", v);
          goto out;
        }
        ax->name = v;
        ax->len = (size_t)(eq - v);
        list_text = eq + 1;
      }
      if (!parse_list(warps ? "--num-warps" : "--axis", list_text, ax->vals, &ax->n)) goto out;
      naxes++;
    } else if ((v = opt_val(argc, argv, &i, "--warmup", &bad)) || (v = opt_val(argc, argv, &i, "--reps", &bad))) {
      char *end;
      long n = strtol(v, &end, 10);
      bool w = !strncmp(a, "--warmup", 8);
      if (*end || n < (w ? 0 : 1) || n > 10000) {
        fprintf(stderr, "tilejit: error: %s needs a number from %d to 10000, got '%s'\n", w ? "--warmup" : "--reps",
                w ? 0 : 1, v);
        goto out;
      }
      if (w) warmup = (int)n;
      else reps = (int)n;
    } else if (!strcmp(a, "--no-fp-fusion")) {
      flags |= TJ_COMPILE_NO_FP_FUSION;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "tilejit: error: unknown option '%s' (see 'tilejit %s --help')\n", a, cmd);
      goto out;
    } else if (!file) {
      file = a;
    } else {
      fprintf(stderr, "tilejit: error: more than one input file ('%s' and '%s')\n", file, a);
      goto out;
    }
  }
  if (bad) goto out;
  if ((list || clear) && file) {
    fprintf(stderr, "tilejit: error: --list and --clear take no input file\n");
    goto out;
  }
  if (!list && !clear) {
    if (!file) {
      fprintf(stderr, "tilejit: error: no input file (see 'tilejit %s --help')\n", cmd);
      goto out;
    }
    if (!grid) {
      fprintf(stderr, "tilejit: error: --grid is needed (programs per axis, e.g. --grid rows or "
                      "--grid 'cdiv(n,BLOCK)')\n");
      goto out;
    }
    if (!split_grid(&tu, grid)) {
      fprintf(stderr, "tilejit: error: --grid takes 1 to 3 comma-separated expressions, got '%s'\n", grid);
      goto out;
    }
  }

  rc = 1;
  if (tj_ctx_create(&ctx) != TJ_OK) {
    fprintf(stderr, "tilejit: error: cannot create a context\n");
    goto out;
  }
  if (list) {
    rc = tune_list(ctx);
    goto out;
  }
  if (clear) {
    int removed = 0;
    if (tj_tune_clear(ctx, &removed) != TJ_OK) {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      goto out;
    }
    printf("removed %d tuning result%s\n", removed, removed == 1 ? "" : "s");
    rc = 0;
    goto out;
  }

  // The key: every --size unless --key names some.
  const char *key_names[TJ_TUNE_MAX_KEYS];
  int64_t key_vals[TJ_TUNE_MAX_KEYS];
  char keybuf[512];
  char names[TJ_TUNE_MAX_KEYS][64];
  int nkey = 0;
  if (keyopt) {
    snprintf(keybuf, sizeof keybuf, "%s", keyopt);
    char *save = NULL;
    for (char *tok = strtok_r(keybuf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      int64_t v;
      if (nkey == TJ_TUNE_MAX_KEYS || !lookup_named(tu.sizes, tu.nsizes, tok, strlen(tok), &v)) {
        fprintf(stderr, "tilejit: error: --key '%s' is not an integer --size (at most %d keys)\n", tok,
                TJ_TUNE_MAX_KEYS);
        rc = 2;
        goto out;
      }
      key_names[nkey] = tok;
      key_vals[nkey++] = v;
    }
  } else if (!bench) {   // bench stores nothing: no key
    for (int i = 0; i < tu.nsizes; i++) {
      int64_t v;
      bool dup = false;
      for (int j = i + 1; j < tu.nsizes; j++)
        dup |= tu.sizes[j].len == tu.sizes[i].len && !strncmp(tu.sizes[j].name, tu.sizes[i].name, tu.sizes[i].len);
      if (dup || !lookup_named(tu.sizes, tu.nsizes, tu.sizes[i].name, tu.sizes[i].len, &v)) continue;
      if (nkey == TJ_TUNE_MAX_KEYS || tu.sizes[i].len >= sizeof names[0]) {
        fprintf(stderr, "tilejit: error: more than %d sizes; name the key with --key\n", TJ_TUNE_MAX_KEYS);
        rc = 2;
        goto out;
      }
      memcpy(names[nkey], tu.sizes[i].name, tu.sizes[i].len);
      names[nkey][tu.sizes[i].len] = '\0';
      key_names[nkey] = names[nkey];
      key_vals[nkey++] = v;
    }
  }

  tj_compile_opts o = { .path = file, .kernel = kernel, .defines = tu.defines, .ndefines = tu.ndefines,
                        .flags = flags };
  tj_status st = tj_tuner_create(ctx, &o, key_names, nkey, &tu.tuner);
  if (st != TJ_OK) {
    const char *msg = tj_ctx_last_error(ctx);
    if (st == TJ_ERR_COMPILE) fputs(msg, stderr);
    else fprintf(stderr, "tilejit: error: %s\n", *msg ? msg : tj_status_str(st));
    goto out;
  }
  for (int i = 0; i < naxes; i++) {
    char nm[64];
    snprintf(nm, sizeof nm, "%.*s", (int)axes[i].len, axes[i].name);
    if (tj_tuner_set_axis(tu.tuner, nm, axes[i].vals, axes[i].n) != TJ_OK) {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      goto out;
    }
  }
  tj_tuner_set_bench(tu.tuner, warmup, reps);
  tj_tuner_set_grid(tu.tuner, grid_cb, &tu);

  // Arguments: scalars from --size, buffers sized by --buffer or the default.
  // The signature is the same in every configuration: take it from the
  // front end of the base request.
  int np = 0;
  tj_param_info pinfo[64];
  {
    tj_compile_opts fo = o;
    fo.flags = flags | TJ_COMPILE_FRONTEND;
    tj_kernel *k0 = NULL;
    if ((st = tj_kernel_compile(ctx, &fo, &k0)) != TJ_OK) {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      goto out;
    }
    np = tj_kernel_num_params(k0);
    if (np > 64) {
      fprintf(stderr, "tilejit: error: kernel has %d parameters; tune handles at most 64\n", np);
      tj_kernel_free(k0);
      goto out;
    }
    // Names stay valid while k0 lives: copy them into the argv-lifetime pool.
    for (int i = 0; i < np; i++) tj_kernel_param(k0, i, &pinfo[i]);
    for (int i = 0; i < np; i++) pinfo[i].name = strdup(pinfo[i].name ? pinfo[i].name : "?");
    tj_kernel_free(k0);
    tu.pinfo = pinfo;
    tu.np = np;
    for (int i = 0; i < np; i++)
      if (!pinfo[i].name) goto out;
  }
  int64_t prod_other = 1, max_param = 1;
  for (int i = 0; i < tu.nsizes; i++) {
    int64_t v;
    if (!lookup_named(tu.sizes, tu.nsizes, tu.sizes[i].name, tu.sizes[i].len, &v)) continue;
    bool is_param = false;
    for (int p = 0; p < np; p++)
      is_param |= strlen(pinfo[p].name) == tu.sizes[i].len && !strncmp(pinfo[p].name, tu.sizes[i].name, tu.sizes[i].len);
    if (is_param) max_param = v > max_param ? v : max_param;
    else prod_other *= v;
  }
  args = calloc((size_t)np + 1, sizeof *args);
  if (!args) goto out;
  for (int i = 0; i < np; i++) {
    const tj_param_info *p = &pinfo[i];
    size_t nl = strlen(p->name);
    if (!p->is_ptr) {
      const Named *s = NULL;
      for (int j = 0; j < tu.nsizes; j++)
        if (tu.sizes[j].len == nl && !strncmp(tu.sizes[j].name, p->name, nl)) s = &tu.sizes[j];
      if (!s) {
        fprintf(stderr, "tilejit: error: scalar parameter '%s' needs a value: pass --size %s=VALUE\n", p->name, p->name);
        rc = 2;
        goto out;
      }
      char *end;
      if (p->dtype == TJ_F16 || p->dtype == TJ_BF16 || p->dtype == TJ_F32 || p->dtype == TJ_F64) {
        double d = strtod(s->text, &end);
        if (*end) {
          fprintf(stderr, "tilejit: error: --size %s needs a number, got '%s'\n", p->name, s->text);
          rc = 2;
          goto out;
        }
        args[i] = tj_arg_float(d);
      } else {
        long long v = strtoll(s->text, &end, 0);
        if (*end) {
          fprintf(stderr, "tilejit: error: --size %s needs an integer, got '%s'\n", p->name, s->text);
          rc = 2;
          goto out;
        }
        args[i] = tj_arg_int(v);
      }
      continue;
    }
    int64_t elems = prod_other * max_param;
    for (int j = 0; j < tu.nbuffers; j++) {
      if (tu.buffers[j].len != nl || strncmp(tu.buffers[j].name, p->name, nl) != 0) continue;
      char err[256];
      if (!eval(&tu, tu.buffers[j].text, false, &elems, err, sizeof err)) {
        fprintf(stderr, "tilejit: error: --buffer %s: %s\n", p->name, err);
        rc = 2;
        goto out;
      }
    }
    if (elems <= 0 || elems > ((int64_t)1 << 40)) {
      fprintf(stderr, "tilejit: error: buffer '%s' would have %lld elements\n", p->name, (long long)elems);
      goto out;
    }
    args[i] = tj_arg_ptr(NULL, (size_t)elems * dtype_size(p->dtype));
  }
  for (int j = 0; j < tu.nbuffers; j++) {
    bool known = false;
    for (int i = 0; i < np; i++)
      known |= pinfo[i].is_ptr && strlen(pinfo[i].name) == tu.buffers[j].len &&
               !strncmp(pinfo[i].name, tu.buffers[j].name, tu.buffers[j].len);
    if (!known) {
      fprintf(stderr, "tilejit: error: --buffer %.*s: kernel '%s' has no pointer parameter of that name\n",
              (int)tu.buffers[j].len, tu.buffers[j].name, tj_tuner_kernel_name(tu.tuner));
      rc = 2;
      goto out;
    }
  }
  // Check the grid expressions once, with the first configuration.
  {
    unsigned g[3];
    tj_tune_config c0;
    if (tj_tuner_config(tu.tuner, 0, &c0) != TJ_OK) {
      fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
      goto out;
    }
    if (grid_cb(tu.tuner, &c0, args, np, g, &tu) != TJ_OK) {
      fprintf(stderr, "tilejit: error: --grid %s\n", tu.err);
      rc = 2;
      goto out;
    }
    const char *exprs[2] = { bytes_expr, flops_expr }, *opts[2] = { "--bytes", "--flops" };
    for (int i = 0; i < 2; i++) {
      int64_t x;
      char err[256];
      if (exprs[i] && !eval(&tu, exprs[i], true, &x, err, sizeof err)) {
        fprintf(stderr, "tilejit: error: %s %s\n", opts[i], err);
        rc = 2;
        goto out;
      }
    }
  }

  // From here on a GPU is needed.
  tj_device_info di;
  if ((st = tj_device_query(ctx, tj_ctx_device(ctx), &di)) != TJ_OK) {
    fprintf(stderr, "tilejit: error: %s needs a CUDA GPU: %s\n", bench ? "benchmarking" : "tuning",
            tj_ctx_last_error(ctx));
    goto out;
  }
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < np; i++) {
    if (!pinfo[i].is_ptr) continue;
    size_t bytes = args[i].u.buf.nbytes;
    void *host = malloc(bytes);
    void *dev = NULL;
    if (!host) {
      fprintf(stderr, "tilejit: error: out of memory for buffer '%s' (%zu bytes)\n", pinfo[i].name, bytes);
      goto out;
    }
    fill_random(host, bytes / dtype_size(pinfo[i].dtype), pinfo[i].dtype, &seed);
    st = tj_device_malloc(ctx, bytes, &dev);
    if (st == TJ_OK) bufs[nbufs++] = dev;
    if (st == TJ_OK) st = tj_memcpy_htod(ctx, dev, host, bytes);
    free(host);
    if (st != TJ_OK) {
      fprintf(stderr, "tilejit: error: buffer '%s' (%zu bytes): %s\n", pinfo[i].name, bytes, tj_ctx_last_error(ctx));
      goto out;
    }
    args[i].u.buf.ptr = dev;
  }
  // The buffers are ours: no scratch copies needed.
  tj_tuner_set_written(tu.tuner, 0);
  if (bench) {
    char devdesc[300];
    snprintf(devdesc, sizeof devdesc, "%s (cc %d.%d)", di.name, di.cc_major, di.cc_minor);
    rc = run_bench(ctx, &tu, devdesc, args, np, bytes_expr, flops_expr, warmup, reps);
    goto out;
  }
  tu.tty = isatty(2);
  if (tu.tty) tj_tuner_set_progress(tu.tuner, progress_cb, &tu);

  st = tj_tuner_tune(tu.tuner, key_vals, nkey, NULL, args, np, NULL, TJ_TUNE_FORCE, NULL);
  const tj_tune_result *res = NULL;
  int nres = 0, best = -1;
  tj_tuner_results(tu.tuner, &res, &nres, &best);
  char sizes[256] = "-";
  size_t used = 0;
  for (int i = 0; i < nkey && used < sizeof sizes; i++) {
    int w = snprintf(sizes + used, sizeof sizes - used, "%s%s=%lld", i ? " " : "", key_names[i], (long long)key_vals[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
  char devdesc[300];
  snprintf(devdesc, sizeof devdesc, "%s (cc %d.%d)", di.name, di.cc_major, di.cc_minor);
  if (nres) print_table(tu.tuner, devdesc, sizes, res, nres, best);
  if (st != TJ_OK) {
    fprintf(stderr, "tilejit: error: %s\n", tj_ctx_last_error(ctx));
    goto out;
  }
  char path[1024];
  if (tj_tuner_key_path(tu.tuner, key_vals, nkey, path, sizeof path) == TJ_OK && path[0])
    printf("stored: %s\n", path);
  else
    printf("not stored (the compile cache is off)\n");
  rc = 0;
out:
  for (int i = 0; i < nbufs; i++) tj_device_free(ctx, bufs[i]);
  free(args);
  for (int i = 0; i < tu.np; i++) free((char *)tu.pinfo[i].name);
  tj_tuner_free(tu.tuner);
  tj_ctx_free(ctx);
  for (int i = 0; i < tu.ngrid; i++) free(tu.grid_expr[i]);
  free(tu.defines);
  return rc;
}

int cmd_tune(int argc, char **argv) { return tune_main(argc, argv, false); }
int cmd_bench(int argc, char **argv) { return tune_main(argc, argv, true); }
