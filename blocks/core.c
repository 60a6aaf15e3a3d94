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

void blk_set_reg_limit(tj_blocks *b, int64_t elems) { b->reg_limit = elems > 0 ? elems : REG_LIMIT; }

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
//  - a row fits in registers when its power-of-two tile is <= reg_limit
//    elements; else the looped kernels walk it in 4096-element chunks;
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
  // LayerNorm/RMSNorm forward rows that would waste a quarter or more of a
  // tile over 4096 (K = 12288 in 16384) take norm_fwd_loop in 4096-wide
  // chunks, reading x three times but the second and third from L1/L2.
  // H200, 2048 x 12288, GB/s fp16 / bf16: 4096 wide 4 warps 2724 / 2646,
  // 2048 wide 8 warps 2666 / 2525, the best register config (16384 wide,
  // 8 warps) 1955 / 1868; torch.compile 2814 / 2657, Triton 2652 / 2519.
  if (op == BLK_NORM_FWD && block > 4096 && 4 * K <= 3 * block) {
    c.looped = true;
    c.block = gpu ? 4096 : 2048;
    c.rows = 1;
    c.num_warps = 4;
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
  b->sm_count = info.sm_count;
  pthread_mutex_unlock(&b->mu);
  return info.sm_count;
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

// The launcher validates pointers too, but per launch: a call that launches
// two kernels must know before the first that the second will not fail.
tj_status blk_check_device_ptr(tj_blocks *b, const char *op, const char *name, const void *p) {
  tj_ctx *ctx = b->ctx;
  tj_status st = rt_device_ready(ctx);
  if (st != TJ_OK) return st;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  unsigned mt = 0;
  CUresult r = rt_pointer_memtype((CUdeviceptr)(uintptr_t)p, &mt);
  rt_ctx_leave(ctx, pushed);
  if (r != CUDA_SUCCESS || (mt != CU_MEMORYTYPE_DEVICE && mt != CU_MEMORYTYPE_UNIFIED))
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: %s claims kDLCUDA but its data %p is not CUDA device "
                     "memory (a host pointer?)", op, name, p);
  return TJ_OK;
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
      if (b->scratch) tj_device_free(b->ctx, b->scratch);
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
