/* core.c: the block handle: kernel cache, tile configs, launching.
 *
 * requires: validated views (tensor.c); produces: compiled specialisations
 * kept per handle, and launches on the interpreter or the GPU.
 *
 * A handle keeps every specialisation it compiled (keyed by kernel, the -D
 * defines, num_warps and target), so a steady-state call is a lookup and a
 * launch. GPU specialisations are full compiles (the runtime's cache makes
 * the second process cheap); interpreter ones stop after the tile IR.
 *
 * The heuristic tile config lives in blk_pick_config alone; on the GPU the
 * autotuner (tuning.c) searches around it.
 *
 * The host cost of a steady-state call. A block call must cost about one
 * tj_kernel_launch, so the work a call repeats with the same inputs is
 * remembered per handle, in fixed arrays (a call allocates nothing):
 *
 *  - the kernel choice (blk_memo_*): the entries key it on their variant
 *    (dtypes, options, target) and exact sizes, and a hit skips building
 *    the -D defines, the tuner lookup and the kernel table's string key.
 *    A choice is a pure function of that key and of handle state (the
 *    autotune switch, reg_limit, the SM count, set once before the first
 *    GPU choice, dropout's forced config), which is stamped on the entry
 *    (BlkMemoStamp) or resets the table. Every row block goes through it
 *    (blk_memo_kernel; blk_memo_choose for the tuned row kernels): softmax,
 *    the norms and dropout, each kernel under its own key.
 *    Kernels stay in b->kernels until tj_blocks_free, so a remembered
 *    pointer never dangles. A tuned choice stays what the tuner gave: its
 *    in-memory table never changes a key's best either.
 *
 *  - the device check of each tensor's data (blk_check_device_ptr): a
 *    cuPointerGetAttributes per tensor per call, which the launcher's own
 *    check (the last address of each parameter) does not spare when a call
 *    passes new tensors. The query also returns the allocation's range
 *    (CU_POINTER_ATTRIBUTE_RANGE_START_ADDR / _SIZE), and a pointer inside a
 *    range the driver called device or managed memory is accepted without
 *    asking again. Why that stays true after the allocation is freed and
 *    its addresses reused: what the check establishes is "this address is
 *    CUDA device memory, not host memory". With unified addressing (every
 *    GPU tilejit supports; the launcher assumes it too) the driver carves
 *    device and managed allocations out of virtual address ranges it
 *    reserves in the process, so that no host allocation (malloc, mmap,
 *    pinned cuMemAllocHost, registered host memory, all of which live at
 *    addresses the OS gave out) can land there while the reservation is
 *    held, and the driver keeps its reservations for the context's life:
 *    an address once inside a device allocation can later be inside another
 *    device allocation (possibly smaller, or one starting elsewhere), or
 *    unmapped, never host memory. So a cached range may only make a hit
 *    for what the old query answered: "device memory"; a host pointer (the
 *    refusal docs/reliability.md promises) is never inside one and always
 *    reaches the driver. What a hit does not notice is a dangling pointer
 *    (use after free): the uncached check did not either when the address
 *    had been reused, and the launcher's per-parameter memo has always
 *    accepted a repeated address without asking. Memory the handle frees
 *    itself (the norm scratch) is dropped from the cache anyway
 *    (blk_forget_ptr), and the cache dies with the handle. A driver that
 *    does not answer the range attributes gets the memory type alone, and
 *    nothing is cached.
 */
#include "blocks_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/api.h"
#include "../runtime/rt.h"

enum { REG_LIMIT = 16384 };   // elements of a row kept in registers

tj_status blk_error(tj_blocks *b, tj_status s, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return api_error(b->ctx, s, "%s", buf);
}

const char *blk_dt(tj_dtype d) { return tj_dtype_name(d); }

tj_status tj_blocks_create(tj_ctx *ctx, tj_blocks **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_blocks_create: out is NULL");
  *out = NULL;
  tj_blocks *b = tj_calloc(1, sizeof *b);
  if (!b) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  if (pthread_mutex_init(&b->mu, NULL) != 0) {
    tj_free(b);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "tj_blocks_create: cannot create a mutex");
  }
  b->ctx = ctx;
  b->reg_limit = REG_LIMIT;
  b->autotune = blk_autotune_default();
  *out = b;
  return TJ_OK;
}

void tj_blocks_free(tj_blocks *b) {
  if (!b) return;
  for (int i = 0; i < b->nkernels; i++) {
    tj_kernel_free(b->kernels[i].k);
    tj_free(b->kernels[i].key);
  }
  tj_free(b->kernels);
  blk_tuners_free(b);
  if (b->scratch) tj_device_free(b->ctx, b->scratch);
  pthread_mutex_destroy(&b->mu);
  tj_free(b);
}

tj_ctx *tj_blocks_ctx(const tj_blocks *b) { return b ? b->ctx : NULL; }

const char *tj_blocks_last_error(const tj_blocks *b) {
  return b ? tj_ctx_last_error(b->ctx) : "tj_blocks_last_error: handle is NULL";
}

int tj_blocks_num_kernels(const tj_blocks *b) {
  if (!b) return 0;
  pthread_mutex_lock((pthread_mutex_t *)&b->mu);
  int n = b->nkernels;
  pthread_mutex_unlock((pthread_mutex_t *)&b->mu);
  return n;
}

void blk_set_reg_limit(tj_blocks *b, int64_t elems) {
  pthread_mutex_lock(&b->mu);
  b->reg_limit = elems > 0 ? elems : REG_LIMIT;
  blk_memo_reset_locked(b);
  pthread_mutex_unlock(&b->mu);
}

// ---------------------------------------------------------------- the remembered kernel choices

// The slot of a new entry in a fixed table of cap: the next free one, else
// the entries in turn (the memos and the device ranges).
static int table_slot(int *n, int *next, int cap) {
  if (*n < cap) return (*n)++;
  int i = *next;
  *next = (*next + 1) % cap;
  return i;
}

void blk_memo_reset_locked(tj_blocks *b) {
  b->nmemos = b->memo_next = 0;
  b->memo_gen++;
}

static bool memo_key_eq(const BlkMemoKey *a, const BlkMemoKey *b) {
  return a->kernel == b->kernel && a->variant == b->variant && a->M == b->M && a->K == b->K &&
         a->rows_cap == b->rows_cap;
}

bool blk_memo_get(tj_blocks *b, const BlkMemoKey *key, tj_kernel **k, BlkConfig *c, BlkMemoStamp *stamp) {
  pthread_mutex_lock(&b->mu);
  BlkMemoStamp now = { .autotune = b->autotune, .gen = b->memo_gen };
  for (int i = 0; i < b->nmemos; i++) {
    const BlkMemo *m = &b->memos[i];
    if (memo_key_eq(&m->key, key) && m->stamp.autotune == now.autotune && m->stamp.gen == now.gen) {
      *k = m->k;
      *c = m->c;
      pthread_mutex_unlock(&b->mu);
      return true;
    }
  }
  pthread_mutex_unlock(&b->mu);
  *stamp = now;
  return false;
}

void blk_memo_put(tj_blocks *b, const BlkMemoKey *key, const BlkMemoStamp *stamp, tj_kernel *k,
                  const BlkConfig *c) {
  pthread_mutex_lock(&b->mu);
  if (stamp->gen == b->memo_gen) {   // else the table was reset meanwhile: this choice may be stale
    int i;
    for (i = 0; i < b->nmemos; i++)
      if (memo_key_eq(&b->memos[i].key, key) && b->memos[i].stamp.autotune == stamp->autotune) break;
    if (i == b->nmemos) i = table_slot(&b->nmemos, &b->memo_next, BLK_MEMOS);
    b->memos[i] = (BlkMemo){ .key = *key, .stamp = *stamp, .k = k, .c = *c };
  }
  pthread_mutex_unlock(&b->mu);
}

// The one get / choose / put bracket: every memoised kernel choice goes
// through here, so the stamp is always read before the choice is made.
tj_status blk_memo_kernel(tj_blocks *b, const BlkMemoKey *key, BlkMemoBuild build, const void *u,
                          tj_kernel **k, BlkConfig *c) {
  BlkMemoStamp stamp;
  if (blk_memo_get(b, key, k, c, &stamp)) return TJ_OK;
  tj_status st = build(b, u, k, c);
  if (st == TJ_OK) blk_memo_put(b, key, &stamp, *k, c);
  return st;
}

tj_status blk_row_kernel(tj_blocks *b, const BlkTuneReq *req, const BlkRowKernels *rk, bool gpu, tj_kernel **k,
                         BlkConfig *c) {
  BlkDefs d = { .n = 0 };
  rk->defs(&d, rk->u);
  BlkTuneReq r = *req;
  r.defines = d.p;
  r.ndefines = d.n;
  BlkConfig t = blk_choose_config(b, &r, gpu);
  if (rk->tile) {
    *c = *rk->tile;
    if (t.block == c->block && t.rows == c->rows) c->num_warps = t.num_warps;
  } else {
    *c = t;
  }
  blk_def_int(&d, "BLOCK", c->block);
  // A kernel that does not declare ROWS would reject the define.
  if (!c->looped) blk_def_int(&d, "ROWS", c->rows);
  const char *name = c->looped ? rk->looped : c->split3 ? rk->split3 : req->kernel;
  if (!name) return blk_error(b, TJ_ERR_INTERNAL, "internal error: blocks: %s has no kernel for this tile",
                              req->kernel);
  return blk_kernel(b, req->file, req->src, req->srclen, name, d.p, d.n, c->num_warps, gpu, k);
}

typedef struct RowChoice {
  const BlkTuneReq *req;
  const BlkRowKernels *rk;
  bool gpu;
} RowChoice;

static tj_status build_row_kernel(tj_blocks *b, const void *u, tj_kernel **k, BlkConfig *c) {
  const RowChoice *rc = u;
  return blk_row_kernel(b, rc->req, rc->rk, rc->gpu, k, c);
}

tj_status blk_memo_choose(tj_blocks *b, const BlkMemoKey *key, const BlkTuneReq *req, const BlkRowKernels *rk,
                          bool gpu, tj_kernel **k, BlkConfig *c) {
  RowChoice rc = { req, rk, gpu };
  return blk_memo_kernel(b, key, build_row_kernel, &rc, k, c);
}

int64_t blk_pow2_ceil(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

int64_t blk_pow2_floor(int64_t x) {
  int64_t p = 1;
  while (p * 2 <= x) p <<= 1;
  return p;
}

static int clampi(int64_t v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

// The heuristic (the tile config itself with TILEJIT_AUTOTUNE=0 and on the
// interpreter; the centre of the autotuner's search otherwise):
//  - a softmax row fits in registers when its power-of-two tile is <=
//    reg_limit elements; else the looped kernels walk it in 4096-element
//    chunks;
//  - a norm row that would pad its tile over 4096 by a quarter or more is
//    held as three quarter-tile chunks instead (split3);
//  - short rows are packed ROWS to a program up to ~2048 elements per tile,
//    but not below ~4 programs per SM, so small problems still fill the GPU;
//  - num_warps gives each thread ~8 elements (one 128-bit access of 16-bit
//    data), up to 16 warps (32 for the backward norm tile, which keeps
//    five row-sized values live).
BlkConfig blk_pick_config(const tj_blocks *b, BlkOp op, tj_dtype dt, int64_t M, int64_t K,
                          int64_t rows_cap, bool gpu) {
  BlkConfig c = { 0 };
  int64_t block = blk_pow2_ceil(K < 16 ? 16 : K);
  (void)dt;
  if (block > b->reg_limit && (op == BLK_SOFTMAX_FWD || op == BLK_SOFTMAX_BWD)) {
    c.looped = true;
    c.block = (int)(b->reg_limit < 4096 ? blk_pow2_floor(b->reg_limit) : 4096);
    c.rows = 1;
    c.num_warps = gpu ? 8 : 4;
    return c;
  }
  // LayerNorm/RMSNorm rows that would waste a quarter or more of a tile over
  // 4096 (K = 12288 in 16384, K = 6144 in 8192) take norm_fwd3/norm_bwd3:
  // the row in registers as three quarter-tile chunks. H200, 2048 x 12288,
  // of the copy bandwidth, fp16 / bf16 (2026-11-30, same process as the
  // peers): forward LayerNorm 0.91-0.93 / 0.87-0.88 at 4 or 8 warps (16:
  // 0.80), against 0.79 / 0.74 for the best looped kernel (three reads of
  // x), 0.63-0.71 for the padded tile, Triton 0.78 / 0.73; RMSNorm 0.96 /
  // 0.91 at 8 warps. Backward (x, dy read, dx written) LayerNorm 0.69 / 0.68
  // at 16 warps, 8 elements a thread per chunk (8 warps: 0.61 / 0.56),
  // against 0.15 for the padded tile, which spilled; torch 0.38.
  if ((op == BLK_NORM_FWD || op == BLK_NORM_BWD) && block > 4096 && 4 * K <= 3 * block) {
    c.split3 = true;
    c.block = (int)(block / 4);
    c.rows = 1;
    c.num_warps = op == BLK_NORM_FWD ? (gpu ? 8 : 4) : clampi(c.block / 256, 1, 16);
    return c;
  }
  c.block = (int)block;
  int64_t rows = block >= 2048 ? 1 : 2048 / block;
  int64_t min_programs = gpu ? 4 * (int64_t)(b->sm_count > 0 ? b->sm_count : 132) : 1;
  while (rows > 1 && (M + rows - 1) / rows < min_programs) rows /= 2;
  if (rows > rows_cap) rows = rows_cap;
  int64_t mp2 = blk_pow2_ceil(M > 0 ? M : 1);
  if (rows > mp2) rows = mp2;
  if (!gpu && rows > 8) rows = 8;   // the interpreter's cost grows with the tile, not the grid
  c.rows = (int)rows;
  int64_t numel = rows * block;
  // Threads per element measured on the H200 (bench/bench_rows.py): softmax
  // rows are fastest at 16 elements per thread (4096 wide: 8 warps), the
  // norms, which hold more live values per element, at 32 (8192 wide: 8
  // warps). The autotuner (tuning.c) tries the neighbours of this choice.
  int per_thread = (op == BLK_SOFTMAX_FWD || op == BLK_SOFTMAX_BWD) ? 512 : 1024;
  c.num_warps = clampi(numel / per_thread, 1, op == BLK_NORM_BWD ? 32 : 16);
  return c;
}

int blk_sm_count(tj_blocks *b) {
  pthread_mutex_lock(&b->mu);
  int n = b->sm_count;
  pthread_mutex_unlock(&b->mu);
  if (n > 0) return n;
  tj_device_info info;
  if (tj_device_query(b->ctx, tj_ctx_device(b->ctx), &info) != TJ_OK || info.sm_count <= 0) return 1;
  pthread_mutex_lock(&b->mu);
  b->wgmma = !strcmp(info.arch, "sm_90a");
  if (b->sm_count != info.sm_count) blk_memo_reset_locked(b);   // choices made without it are stale
  b->sm_count = info.sm_count;
  pthread_mutex_unlock(&b->mu);
  return info.sm_count;
}

bool blk_has_wgmma(tj_blocks *b) {
  blk_sm_count(b);
  pthread_mutex_lock(&b->mu);
  bool w = b->wgmma;
  pthread_mutex_unlock(&b->mu);
  return w;
}

tj_status blk_kernel(tj_blocks *b, const char *file, const char *src, size_t srclen,
                     const char *name, const char *const *defines, int ndefines, int num_warps,
                     bool gpu, tj_kernel **out) {
  char key[512];
  size_t used = (size_t)snprintf(key, sizeof key, "%s|%s|", file, name);
  for (int i = 0; i < ndefines && used < sizeof key; i++)
    used += (size_t)snprintf(key + used, sizeof key - used, "%s,", defines[i]);
  if (used < sizeof key) used += (size_t)snprintf(key + used, sizeof key - used, "|%d|%d", num_warps, gpu);
  if (used >= sizeof key) return blk_error(b, TJ_ERR_INTERNAL, "internal error: blocks: kernel key too long");

  pthread_mutex_lock(&b->mu);
  for (int i = 0; i < b->nkernels; i++) {
    if (!strcmp(b->kernels[i].key, key)) {
      *out = b->kernels[i].k;
      pthread_mutex_unlock(&b->mu);
      return TJ_OK;
    }
  }
  // Compiled under the lock: two threads asking for one specialisation get
  // one compilation, and first calls are rare.
  tj_compile_opts o;
  memset(&o, 0, sizeof o);
  o.source = src;
  o.source_len = srclen;
  o.path = file;
  o.kernel = name;
  o.defines = defines;
  o.ndefines = ndefines;
  o.num_warps = num_warps;
  o.flags = gpu ? 0 : TJ_COMPILE_FRONTEND;
  tj_kernel *k = NULL;
  tj_status st = tj_kernel_compile(b->ctx, &o, &k);
  if (st == TJ_OK && b->nkernels == b->cap) {
    int cap = b->cap ? 2 * b->cap : 16;
    BlkKernel *nk = tj_realloc(b->kernels, sizeof *nk * (size_t)cap);
    if (!nk) st = api_error(b->ctx, TJ_ERR_NO_MEMORY, "out of memory");
    else { b->kernels = nk; b->cap = cap; }
  }
  char *kcopy = st == TJ_OK ? tj_strdup(key) : NULL;
  if (st == TJ_OK && !kcopy) st = api_error(b->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  if (st != TJ_OK) {
    pthread_mutex_unlock(&b->mu);
    tj_kernel_free(k);
    return st;
  }
  b->kernels[b->nkernels].key = kcopy;
  b->kernels[b->nkernels].k = k;
  b->nkernels++;
  pthread_mutex_unlock(&b->mu);
  *out = k;
  return TJ_OK;
}

tj_status blk_run(tj_blocks *b, tj_kernel *k, bool gpu, unsigned grid, const tj_arg *args,
                  int nargs, void *stream) {
  const unsigned g[3] = { grid, 1, 1 };
  if (grid == 0) return TJ_OK;
  if (gpu) return tj_kernel_launch(b->ctx, k, g, args, nargs, stream);
  return tj_kernel_interpret(b->ctx, k, g, args, nargs);
}

void blk_def(BlkDefs *d, const char *name, const char *fmt_value) {
  if (d->n == BLK_MAX_DEFS) {
    snprintf(d->buf[BLK_MAX_DEFS - 1], sizeof d->buf[0], "(more than %d block defines)", BLK_MAX_DEFS);
    return;
  }
  snprintf(d->buf[d->n], sizeof d->buf[0], "%s=%s", name, fmt_value);
  d->p[d->n] = d->buf[d->n];
  d->n++;
}

void blk_def_int(BlkDefs *d, const char *name, int v) {
  char s[16];
  snprintf(s, sizeof s, "%d", v);
  blk_def(d, name, s);
}

void blk_def_bool(BlkDefs *d, const char *name, bool v) { blk_def(d, name, v ? "true" : "false"); }

BlkRows blk_plan_rows(BlkView *const *v, int n, bool need_seq) {
  BlkRows r = { v[0]->seq, INT32_MAX, !need_seq };
  for (int i = 0; i < n && r.flat; i++) {
    int64_t rs;
    if (!blk_uniform_rows(v[i], &rs)) r.flat = false;
  }
  if (r.flat) {
    r.seq = v[0]->M;
    return r;
  }
  if (v[0]->M > r.seq) r.rows_cap = blk_pow2_floor(r.seq);
  return r;
}

// s_b, s_r of v under plan r.
void blk_row_strides(const BlkRows *r, const BlkView *v, int64_t *sb, int64_t *sr) {
  if (r->flat) {
    *sb = 0;
    blk_uniform_rows(v, sr);
  } else {
    *sb = v->s_b;
    *sr = v->s_r;
  }
}

// ---------------------------------------------------------------- the device check

// The driver's answer for p (runtime/: rt_pointer_range), as a BlkPtrQuery.
static tj_status driver_query(tj_blocks *b, const void *p, unsigned *mt, uintptr_t *base, size_t *size,
                              void *user) {
  (void)user;
  return rt_pointer_range(b->ctx, p, mt, base, size);
}

// Requires b->mu.
static bool range_hit(const tj_blocks *b, uintptr_t a) {
  for (int i = 0; i < b->nranges; i++)
    if (a >= b->ranges[i].base && a < b->ranges[i].end) return true;
  return false;
}

// The launcher validates pointers too, but per launch: a call that launches
// two kernels must know before the first that the second will not fail.
tj_status blk_check_device_ptr(tj_blocks *b, const char *op, const char *name, const void *p) {
  uintptr_t a = (uintptr_t)p;
  pthread_mutex_lock(&b->mu);
  bool hit = range_hit(b, a);
  BlkPtrQuery q = b->ptr_query;
  void *qu = b->ptr_query_user;
  if (!hit) b->ptr_queries++;
  pthread_mutex_unlock(&b->mu);
  if (hit) return TJ_OK;
  unsigned mt = 0;
  uintptr_t base = 0;
  size_t size = 0;
  tj_status st = (q ? q : driver_query)(b, p, &mt, &base, &size, qu);
  if (st != TJ_OK) return st;
  if (mt != CU_MEMORYTYPE_DEVICE && mt != CU_MEMORYTYPE_UNIFIED)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s claims kDLCUDA but its data %p is not CUDA device "
                     "memory (a host pointer?)", op, name, p);
  // Only a range that holds p (the driver's answer for p) is remembered.
  if (size > 0 && a >= base && a - base < size) {
    pthread_mutex_lock(&b->mu);
    if (!range_hit(b, a))
      b->ranges[table_slot(&b->nranges, &b->range_next, BLK_RANGES)] =
          (BlkRange){ base, base + size < base ? UINTPTR_MAX : base + size };
    pthread_mutex_unlock(&b->mu);
  }
  return TJ_OK;
}

// Requires b->mu.
static void forget_locked(tj_blocks *b, const void *p, size_t bytes) {
  uintptr_t lo = (uintptr_t)p, hi = lo + (bytes ? bytes : 1);
  for (int i = 0; i < b->nranges;) {
    if (b->ranges[i].base < hi && lo < b->ranges[i].end) {
      b->ranges[i] = b->ranges[--b->nranges];
    } else {
      i++;
    }
  }
  b->range_next = 0;
}

void blk_forget_ptr(tj_blocks *b, const void *p, size_t bytes) {
  pthread_mutex_lock(&b->mu);
  forget_locked(b, p, bytes);
  pthread_mutex_unlock(&b->mu);
}

void blk_set_ptr_query(tj_blocks *b, BlkPtrQuery fn, void *user) {
  pthread_mutex_lock(&b->mu);
  b->ptr_query = fn;
  b->ptr_query_user = user;
  b->nranges = b->range_next = 0;
  pthread_mutex_unlock(&b->mu);
}

tj_status tj_norm_bwd_workspace(tj_blocks *b, void *workspace, size_t bytes) {
  if (!b) return TJ_ERR_INVALID_ARG;
  if (workspace && ((uintptr_t)workspace & 15))
    return blk_error(b, TJ_ERR_INVALID_ARG, "tj_norm_bwd_workspace: workspace %p is not 16-byte aligned",
                     workspace);
  pthread_mutex_lock(&b->mu);
  b->user_ws = workspace;
  b->user_ws_bytes = workspace ? bytes : 0;
  pthread_mutex_unlock(&b->mu);
  return TJ_OK;
}

tj_status blk_scratch(tj_blocks *b, bool gpu, size_t bytes, void **out, bool *owned) {
  *out = NULL;
  *owned = false;
  if (bytes == 0) return TJ_OK;
  if (!gpu) {
    *out = tj_malloc(bytes);
    *owned = true;
    return *out ? TJ_OK : blk_error(b, TJ_ERR_NO_MEMORY, "out of memory (%zu bytes of scratch)", bytes);
  }
  pthread_mutex_lock(&b->mu);
  tj_status st = TJ_OK;
  if (b->user_ws) {
    if (b->user_ws_bytes < bytes)
      st = blk_error(b, TJ_ERR_INVALID_ARG, "the workspace has %zu bytes; this backward pass needs %zu",
                     b->user_ws_bytes, bytes);
    else
      *out = b->user_ws;
  } else {
    if (b->scratch_bytes < bytes) {
      if (b->scratch) {
        forget_locked(b, b->scratch, b->scratch_bytes);
        tj_device_free(b->ctx, b->scratch);
      }
      b->scratch = NULL;
      b->scratch_bytes = 0;
      st = tj_device_malloc(b->ctx, bytes, &b->scratch);
      if (st == TJ_OK) b->scratch_bytes = bytes;
    }
    *out = b->scratch;
  }
  pthread_mutex_unlock(&b->mu);
  return st;
}
