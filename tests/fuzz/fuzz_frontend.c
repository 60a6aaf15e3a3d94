/* fuzz_frontend.c: arbitrary bytes as a .tj kernel through the front end
 * (lex, parse, sema, the tile IR passes with the verifier after each in
 * this RelWithDebInfo build) and, where it compiles and is cheap, the CPU
 * interpreter on a grid of at most 2x2 programs with 64-element buffers.
 * Input format: fuzz_common.h.
 *
 * The interpreter runs only when the work is bounded: every loop's bounds
 * must be known before running (from constants, scalar arguments and the
 * program id through + - * / % min max casts, per program), and the
 * estimated element operations (tile sizes times trip counts) must stay
 * under FUZZ_BUDGET, so that no input turns into a
 * billion-iteration loop that libFuzzer would report as a timeout.
 */
#include "fuzz_common.h"

#include "dsl/tir_eval.h"

enum { FUZZ_ELEMS = 64 };
#define FUZZ_BUDGET 2e4

// Scalar int arguments, small and positive so masks and loops stay short.
static const int64_t fuzz_scalars[8] = {4, 1, 0, 16, 3, 2, 8, 5};

// What the cost estimate knows: the arguments and the program it runs.
typedef struct Est {
  const TirFunc *f;
  const tj_arg *args;
  unsigned pid[3], grid[3];
} Est;

static bool small(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// The value of an integer scalar when it follows from constants, arguments
// and the program id through a few ops; false otherwise.
static bool known_int(const Est *e, const TirValue *v, int depth, int64_t *out) {
  if (v->type.rank != 0 || v->type.ptr || depth > 16 || !dtype_is_int(v->type.dtype)) return false;
  Dtype dt = v->type.dtype;
  if (!v->def) {
    if (v->block != e->f->body || v->idx < 0 || v->idx >= e->f->nparams || e->args[v->idx].kind != TJ_ARG_INT)
      return false;
    *out = tir_wrap(dt, e->args[v->idx].u.i);
    return true;
  }
  const TirInst *in = v->def;
  int64_t a, b;
  switch (in->op) {
  case TIR_CONST: *out = tir_wrap(dt, in->cval.i); return true;
  case TIR_PROGRAM_ID:
  case TIR_NUM_PROGRAMS:
    if (in->axis < 0 || in->axis > 2) return false;
    *out = in->op == TIR_PROGRAM_ID ? e->pid[in->axis] : e->grid[in->axis];
    return true;
  case TIR_CAST:
    if (!known_int(e, in->args[0], depth + 1, &a)) return false;
    *out = tir_wrap(dt, a);
    return true;
  case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_DIV: case TIR_REM: case TIR_MIN: case TIR_MAX:
    if (!known_int(e, in->args[0], depth + 1, &a) || !known_int(e, in->args[1], depth + 1, &b)) return false;
    // Beyond +-2^31 the loop is too much work anyway; unsigned semantics
    // of div/rem/min/max are not worth modelling.
    if (!small(a) || !small(b) || (!dtype_is_signed(dt) && (a < 0 || b < 0))) return false;
    switch (in->op) {
    case TIR_ADD: *out = a + b; break;
    case TIR_SUB: *out = a - b; break;
    case TIR_MUL: *out = a * b; break;
    case TIR_DIV: *out = b ? a / b : -1; break;
    case TIR_REM: *out = b ? a % b : a; break;
    case TIR_MIN: *out = a < b ? a : b; break;
    default: *out = a > b ? a : b; break;
    }
    *out = tir_wrap(dt, *out);
    return true;
  default:
    return false;
  }
}

// Estimated element operations of one run of block b; < 0 when unbounded.
static double block_cost(const Est *e, const TirBlock *b) {
  double cost = 0;
  for (const TirInst *in = b->first; in; in = in->next) {
    double c = 1;
    for (int i = 0; i < in->nres; i++) c += (double)tir_numel(in->res[i]->type);
    for (int i = 0; i < in->nargs; i++) c += (double)tir_numel(in->args[i]->type);
    if (in->op == TIR_DOT && in->args[0]->type.rank == 2)
      c += (double)tir_numel(in->res[0]->type) * in->args[0]->type.shape[1];
    if (in->op == TIR_FOR) {
      int64_t lo, hi, step;
      if (in->nblocks < 1 || in->nargs < 3 || !known_int(e, in->args[0], 0, &lo) ||
          !known_int(e, in->args[1], 0, &hi) || !known_int(e, in->args[2], 0, &step))
        return -1;
      double trips = step > 0 && hi > lo ? ((double)hi - (double)lo) / (double)step + 1 : 1;
      double body = block_cost(e, in->blocks[0]);
      if (body < 0) return -1;
      c += trips * (body + 1);
    } else {
      for (int i = 0; i < in->nblocks; i++) {
        double body = block_cost(e, in->blocks[i]);
        if (body < 0) return -1;
        c += body;
      }
    }
    cost += c;
    if (cost > FUZZ_BUDGET) return -1;
  }
  return cost;
}

// The whole grid's cost, program by program (loop bounds may depend on the
// program id); < 0 when unbounded or over the budget.
static double grid_cost(const TirFunc *f, const tj_arg *args, const unsigned grid[3]) {
  Est e = { f, args, {0, 0, 0}, {grid[0], grid[1], grid[2]} };
  double total = 0;
  for (e.pid[1] = 0; e.pid[1] < grid[1]; e.pid[1]++)
    for (e.pid[0] = 0; e.pid[0] < grid[0]; e.pid[0]++) {
      double c = block_cost(&e, f->body);
      if (c < 0 || (total += c) > FUZZ_BUDGET) return -1;
    }
  return total;
}

static void interpret(tj_ctx *ctx, const tj_kernel *k, const uint8_t *hdr, const uint8_t *data, size_t size) {
  const TirFunc *f = k->func;
  static const unsigned grids[4][3] = {{1, 1, 1}, {2, 1, 1}, {1, 2, 1}, {2, 2, 1}};
  const unsigned *grid = grids[(hdr[0] >> 4) & 3];
  tj_arg *args = calloc((size_t)f->nparams + 1, sizeof *args);
  void **bufs = calloc((size_t)f->nparams + 1, sizeof *bufs);
  if (!args || !bufs) goto out;
  for (int i = 0; i < f->nparams; i++) {
    const TirParam *p = &f->params[i];
    if (p->ptr) {
      size_t n = FUZZ_ELEMS * (size_t)dtype_bytes(p->dtype);
      uint8_t *b = malloc(n);
      if (!b) goto out;
      // Contents from the input (the source bytes, cycled): NaNs and
      // denormals included.
      for (size_t j = 0; j < n; j++) b[j] = size ? data[(j * 7 + (size_t)i) % size] : (uint8_t)j;
      bufs[i] = b;
      args[i] = tj_arg_ptr(b, n);
    } else if (dtype_is_float(p->dtype)) {
      args[i] = tj_arg_float(i & 1 ? -0.5 : 1.5);
    } else {
      args[i] = tj_arg_int(fuzz_scalars[(i + hdr[1]) & 7]);
    }
  }
  if (grid_cost(f, args, grid) < 0) {
    if (getenv("TJ_FUZZ_VERBOSE")) fprintf(stderr, "fuzz: not interpreted: unbounded or too costly\n");
    goto out;
  }
  tj_status st = tj_kernel_interpret(ctx, k, grid, args, f->nparams);
  fuzz_check(ctx, st, "interpret");
out:
  if (bufs)
    for (int i = 0; i < f->nparams; i++) free(bufs[i]);
  free(bufs);
  free(args);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fuzz_env();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *hdr = data;
  char *src;
  size_t len;
  tj_ctx *ctx;
  if (!fuzz_open(data, size, &src, &len, &ctx)) return 0;
  tj_kernel *k = fuzz_compile(ctx, hdr, len ? src : "", len, false);
  if (k && (hdr[0] & FUZZ_INTERP)) interpret(ctx, k, hdr, data + FUZZ_HEADER, len);
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  free(src);
  return 0;
}
