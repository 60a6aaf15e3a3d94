/* tuning.c: the GPU tile configs of the row blocks, from the autotuner.
 *
 * requires: the heuristic (core.c: blk_pick_config) and autotune/;
 * produces: blk_choose_config, which softmax.c and norm.c call for every
 * launch of a register kernel.
 *
 * One tuner per handle and (kernel, defines without the tile), that is per
 * (op, dtype, variant). Its space is the product BLOCK x ROWS x num_warps
 * over powers of two, the same for every tuner; the prune callback keeps,
 * per key, a small neighbourhood of the heuristic's choice at that key:
 *   - BLOCK is the row's tile (the power of two >= K): a wider tile only
 *     loads masked lanes, a narrower one would not hold the row;
 *   - ROWS from half to four times the heuristic's, within the rows cap of
 *     the call (batch-strided views) and M, and the tile within the register
 *     budget (16384 elements, or the heuristic's tile if larger); the norm
 *     backward pass keeps the heuristic's ROWS, which fixes its grid G, the
 *     scratch layout and the summation order of dw and db;
 *   - num_warps from half to twice what the heuristic gives that tile, with
 *     every thread owning at least one and at most 64 elements (more spills).
 * The heuristic's own config always survives, so a key is never empty. That
 * is about ten candidates: a few seconds of tuning for a new key.
 *
 * The key is (K, M, rows cap), bucketed: K to its tile, M to the next power
 * of two, the rows cap to at most the largest ROWS. The autotuner adds the
 * kernel's identity (source, dtype, variant), the device and the space.
 *
 * Benchmarks run on the call's own arguments; the written pointers (the
 * outputs, the norm backward scratch) are replaced by scratch copies, so the
 * call's data is untouched until the chosen config runs for real.
 *
 * Off: TILEJIT_AUTOTUNE=0 or tj_blocks_set_autotune(b, 0) (the environment
 * wins), the interpreter, the looped softmax kernels and the three-chunk norm
 * kernels (split3: their own kernel, not the tuner's) take the heuristic
 * unchanged, without building a tuner. A tuner that cannot be built, or a
 * key whose tuning fails, warns (rt_warn) and falls back to the heuristic
 * for that tuner from then on.
 */
#include "blocks_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../autotune/tune.h"
#include "../runtime/api.h"
#include "../runtime/rt.h"

enum { TILE_MAX = 16384, MAX_PER_THREAD = 64 };

struct BlkTuner {
  char *id;            // "kernel|define,define,..."
  tj_tuner *t;
  tj_blocks *b;
  BlkOp op;
  tj_dtype dt;
  int m_arg;
  bool failed;         // warned once; the heuristic from then on
};

static const int64_t ax_block[] = { 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384 };
static const int64_t ax_rows[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256 };
static const int64_t ax_warps[] = { 1, 2, 4, 8, 16, 32 };
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bool env_off(const char *name) {
  const char *v = getenv(name);
  return v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no"));
}

bool blk_autotune_default(void) { return !env_off("TILEJIT_AUTOTUNE"); }

int64_t blk_tune_bucket(const char *name, int64_t v, void *user) {
  (void)user;
  if (!strcmp(name, "K")) return blk_pow2_ceil(v < 16 ? 16 : v);
  if (!strcmp(name, "rcap")) {
    int64_t top = ax_rows[NELEM(ax_rows) - 1];
    return v >= top ? top : blk_pow2_floor(v < 1 ? 1 : v);
  }
  return tj_tune_bucket_pow2(v);
}

static bool is_softmax(BlkOp op) { return op == BLK_SOFTMAX_FWD || op == BLK_SOFTMAX_BWD; }

bool blk_tune_keep(const tj_blocks *b, BlkOp op, tj_dtype dt, const int64_t ks[BLK_TK_N], int64_t block,
                   int64_t rows, int64_t nw) {
  int64_t M = ks[BLK_TK_M], cap = ks[BLK_TK_RCAP];
  BlkConfig h = blk_pick_config(b, op, dt, M, ks[BLK_TK_K], cap, true);
  if (h.looped || h.split3 || block != h.block) return false;
  if (rows == h.rows && nw == h.num_warps) return true;
  if (op == BLK_NORM_BWD) {
    if (rows != h.rows) return false;
  } else {
    if (rows > cap || rows > blk_pow2_ceil(M > 0 ? M : 1)) return false;
    if (2 * rows < h.rows || rows > 4 * (int64_t)h.rows) return false;
  }
  int64_t numel = rows * block, hnumel = (int64_t)h.rows * h.block;
  if (numel > (hnumel > TILE_MAX ? hnumel : TILE_MAX)) return false;
  // The heuristic's warps for this tile (core.c), and its neighbours.
  int64_t per = is_softmax(op) ? 512 : 1024, top = op == BLK_NORM_BWD ? 32 : 16;
  int64_t hn = numel / per;
  hn = hn < 1 ? 1 : hn > top ? top : hn;
  if (nw != hn && nw != 2 * hn && 2 * nw != hn) return false;
  return numel >= 32 * nw && numel <= (int64_t)MAX_PER_THREAD * 32 * nw;
}

static int prune_cb(const tj_tuner *t, const tj_tune_config *cfg, const int64_t *ks, int nkey, void *user) {
  (void)t;
  BlkTuner *bt = user;
  if (nkey != BLK_TK_N) return 0;
  return blk_tune_keep(bt->b, bt->op, bt->dt, ks, cfg->v[0], cfg->v[1], cfg->v[2]);
}

// cdiv(M, ROWS) programs, except the norm backward pass, whose grid is the
// G argument (it does not change with the candidates: their ROWS is fixed).
static tj_status grid_cb(const tj_tuner *t, const tj_tune_config *cfg, const tj_arg *args, int nargs,
                         unsigned grid[3], void *user) {
  BlkTuner *bt = user;
  if (bt->m_arg < 0 || bt->m_arg >= nargs || args[bt->m_arg].kind != TJ_ARG_INT)
    return api_error(t->ctx, TJ_ERR_INTERNAL, "internal error: blocks: no row count argument for the grid");
  int64_t n = args[bt->m_arg].u.i;
  int64_t rows = cfg->v[1] > 0 ? cfg->v[1] : 1;
  grid[0] = (unsigned)(bt->op == BLK_NORM_BWD ? n : (n + rows - 1) / rows);
  grid[1] = grid[2] = 1;
  return TJ_OK;
}

static void tuner_free(BlkTuner *bt) {
  if (!bt) return;
  tj_tuner_free(bt->t);
  tj_free(bt->id);
  tj_free(bt);
}

void blk_tuners_free(tj_blocks *b) {
  for (int i = 0; i < b->ntuners; i++) tuner_free(b->tuners[i]);
  tj_free(b->tuners);
  b->tuners = NULL;
  b->ntuners = b->tuners_cap = 0;
}

static tj_status tuner_create(tj_blocks *b, const BlkTuneReq *r, BlkTuner *bt) {
  // The front end needs every constant; the axes replace these two.
  const char **defs = tj_calloc((size_t)r->ndefines + 2, sizeof *defs);
  if (!defs) return blk_error(b, TJ_ERR_NO_MEMORY, "out of memory");
  for (int i = 0; i < r->ndefines; i++) defs[i] = r->defines[i];
  defs[r->ndefines] = "BLOCK=16";
  defs[r->ndefines + 1] = "ROWS=1";
  tj_compile_opts o;
  memset(&o, 0, sizeof o);
  o.source = r->src;
  o.source_len = r->srclen;
  o.path = r->file;
  o.kernel = r->kernel;
  o.defines = defs;
  o.ndefines = r->ndefines + 2;
  static const char *const keys[BLK_TK_N] = { "K", "M", "rcap" };
  tj_status st = tj_tuner_create(b->ctx, &o, keys, BLK_TK_N, &bt->t);
  tj_free(defs);
  if (st == TJ_OK) st = tj_tuner_set_axis(bt->t, "BLOCK", ax_block, NELEM(ax_block));
  if (st == TJ_OK) st = tj_tuner_set_axis(bt->t, "ROWS", ax_rows, NELEM(ax_rows));
  if (st == TJ_OK) st = tj_tuner_set_axis(bt->t, "num_warps", ax_warps, NELEM(ax_warps));
  if (st == TJ_OK) st = tj_tuner_set_prune(bt->t, prune_cb, bt);
  if (st == TJ_OK) st = tj_tuner_set_grid(bt->t, grid_cb, bt);
  if (st == TJ_OK) st = tj_tuner_set_bucket(bt->t, blk_tune_bucket, NULL);
  if (st == TJ_OK) st = tj_tuner_set_written(bt->t, r->written);
  return st;
}

// Requires b->mu.
static BlkTuner *tuner_find(tj_blocks *b, const char *id) {
  for (int i = 0; i < b->ntuners; i++)
    if (!strcmp(b->tuners[i]->id, id)) return b->tuners[i];
  return NULL;
}

static BlkTuner *tuner_get(tj_blocks *b, const BlkTuneReq *r) {
  char id[512];
  size_t used = (size_t)snprintf(id, sizeof id, "%s|", r->kernel);
  for (int i = 0; i < r->ndefines && used < sizeof id; i++)
    used += (size_t)snprintf(id + used, sizeof id - used, "%s,", r->defines[i]);
  if (used >= sizeof id) return NULL;
  pthread_mutex_lock(&b->mu);
  BlkTuner *bt = tuner_find(b, id);
  if (bt) {
    pthread_mutex_unlock(&b->mu);
    return bt;
  }
  // Built under the lock (the front end only): first calls are rare.
  bt = tj_calloc(1, sizeof *bt);
  tj_status st = bt ? TJ_OK : TJ_ERR_NO_MEMORY;
  if (bt) {
    bt->b = b;
    bt->op = r->op;
    bt->dt = r->dt;
    bt->m_arg = r->m_arg;
    bt->id = tj_strdup(id);
    if (!bt->id) st = TJ_ERR_NO_MEMORY;
  }
  if (st == TJ_OK) st = tuner_create(b, r, bt);
  if (st == TJ_OK && b->ntuners == b->tuners_cap) {
    int cap = b->tuners_cap ? 2 * b->tuners_cap : 8;
    BlkTuner **nt = tj_realloc(b->tuners, sizeof *nt * (size_t)cap);
    if (!nt) st = TJ_ERR_NO_MEMORY;
    else b->tuners = nt, b->tuners_cap = cap;
  }
  if (st != TJ_OK) {
    // Remembered as failed, so the warning comes once.
    const char *why = tj_ctx_last_error(b->ctx);
    rt_warn(b->ctx, "blocks: cannot build the autotuner of %s (%s); using the heuristic tile configs", r->kernel,
            *why ? why : tj_status_str(st));
    if (bt && bt->id && b->ntuners < b->tuners_cap) {
      tj_tuner_free(bt->t);
      bt->t = NULL;
      bt->failed = true;
      b->tuners[b->ntuners++] = bt;
    } else {
      tuner_free(bt);
      bt = NULL;
    }
    pthread_mutex_unlock(&b->mu);
    api_clear_error(b->ctx);
    return bt;
  }
  b->tuners[b->ntuners++] = bt;
  pthread_mutex_unlock(&b->mu);
  return bt;
}

struct tj_tuner *blk_tuner_for(tj_blocks *b, const BlkTuneReq *r) {
  BlkTuner *bt = tuner_get(b, r);
  return bt ? bt->t : NULL;
}

BlkConfig blk_choose_config(tj_blocks *b, const BlkTuneReq *r, bool gpu) {
  BlkConfig h = blk_pick_config(b, r->op, r->dt, r->M, r->K, r->rows_cap, gpu);
  if (!gpu || h.looped || h.split3) return h;
  pthread_mutex_lock(&b->mu);
  bool on = b->autotune;
  pthread_mutex_unlock(&b->mu);
  if (!on) return h;
  BlkTuner *bt = tuner_get(b, r);
  if (!bt) return h;
  pthread_mutex_lock(&b->mu);
  bool failed = bt->failed;
  pthread_mutex_unlock(&b->mu);
  if (failed || !bt->t) return h;
  int64_t ks[BLK_TK_N] = { r->K, r->M, r->rows_cap };
  tj_tune_config best;
  tj_status st = tj_tuner_tune(bt->t, ks, BLK_TK_N, NULL, r->args, r->nargs, r->stream, 0, &best);
  if (st != TJ_OK) {
    const char *why = tj_ctx_last_error(b->ctx);
    rt_warn(b->ctx, "blocks: autotuning %s failed (%s); using the heuristic tile configs", r->kernel,
            *why ? why : tj_status_str(st));
    pthread_mutex_lock(&b->mu);
    bt->failed = true;
    pthread_mutex_unlock(&b->mu);
    api_clear_error(b->ctx);
    return h;
  }
  BlkConfig c = { .looped = false, .block = (int)best.v[0], .rows = (int)best.v[1], .num_warps = (int)best.v[2] };
  // The candidates were pruned at the bucketed sizes: what the launch needs
  // exactly (the tile, the rows cap, the norm backward pass's ROWS) is
  // checked again at the real ones.
  if (c.block != h.block || c.rows > r->rows_cap) return h;
  if (r->op == BLK_NORM_BWD) c.rows = h.rows;
  return c;
}

tj_status tj_blocks_set_autotune(tj_blocks *b, int on) {
  if (!b) return TJ_ERR_INVALID_ARG;
  pthread_mutex_lock(&b->mu);
  b->autotune = on && blk_autotune_default();
  pthread_mutex_unlock(&b->mu);
  return TJ_OK;
}

tj_status tj_blocks_tune_stats(const tj_blocks *b, tj_tune_stats *out) {
  if (!b || !out) return TJ_ERR_INVALID_ARG;
  memset(out, 0, sizeof *out);
  tj_blocks *mb = (tj_blocks *)b;
  pthread_mutex_lock(&mb->mu);
  for (int i = 0; i < b->ntuners; i++) {
    tj_tune_stats s;
    if (!b->tuners[i]->t || tj_tuner_stats(b->tuners[i]->t, &s) != TJ_OK) continue;
    out->launches += s.launches;
    out->mem_hits += s.mem_hits;
    out->disk_hits += s.disk_hits;
    out->tunings += s.tunings;
    out->configs_timed += s.configs_timed;
    out->configs_failed += s.configs_failed;
    out->timing_launches += s.timing_launches;
    out->disk_writes += s.disk_writes;
    out->corrupt += s.corrupt;
  }
  pthread_mutex_unlock(&mb->mu);
  return TJ_OK;
}
