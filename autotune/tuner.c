/* tuner.c: choosing a configuration per key, benchmarking, launching.
 *
 * requires: space.c, key.c, store.c, runtime/timing.c; produces:
 * tj_tuner_launch/tune/best/measure and the results of a tuning run.
 *
 * The order of lookups for a key is memory (the tuner's table), then the
 * disk store, then benchmarking; TILEJIT_AUTOTUNE=0 skips the last two and
 * takes the first configuration that survives pruning. A stored best that
 * is no longer a candidate (the prune callback changed) is ignored.
 *
 * One benchmark of a configuration: compile it (a failure marks it
 * unusable), compute its grid, launch it `warmup` times (at least once, so
 * the specialised variant is compiled and loaded before any timed run; a
 * launch error such as too many resources marks it unusable), synchronise
 * (an error here is a fault of the kernel, sticky on the CUDA context, so
 * tuning stops), then `reps` times: restore the scratch copies of written
 * arguments, flush L2, record start, launch, record end. The time is the
 * median of the event pairs. Everything runs on the caller's stream.
 */
#include "tune.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/rt.h"

// ---------------------------------------------------------------- table

static TuneEntry *table_find(const tj_tuner *t, const int64_t *buckets) {
  for (TuneEntry *e = t->table; e; e = e->next)
    if (!memcmp(e->buckets, buckets, sizeof e->buckets)) return e;
  return NULL;
}

// Takes ownership of results.
static tj_status table_put(tj_tuner *t, const int64_t *buckets, int best, tj_tune_result *results, int n) {
  TuneEntry *e = table_find(t, buckets);
  if (!e) {
    e = tj_calloc(1, sizeof *e);
    if (!e) {
      tj_free(results);
      return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
    }
    memcpy(e->buckets, buckets, sizeof e->buckets);
    e->next = t->table;
    t->table = e;
  } else {
    tj_free(e->results);
  }
  e->best = best;
  e->results = results;
  e->nresults = results ? n : 0;
  return TJ_OK;
}

// TJ_ERR_NO_MEMORY (no message: the caller's own error may take precedence)
// when the copy cannot be made; tj_tuner_results then shows none.
static tj_status set_last(tj_tuner *t, const tj_tune_result *r, int n, int best) {
  t->last_src = NULL;
  tj_free(t->last);
  t->last = NULL;
  t->nlast = 0;
  t->last_best = best;
  if (!r || n <= 0) return TJ_OK;
  t->last = tj_malloc(sizeof *r * (size_t)n);
  if (!t->last) return TJ_ERR_NO_MEMORY;
  memcpy(t->last, r, sizeof *r * (size_t)n);
  t->nlast = n;
  return TJ_OK;
}

// Configurations that survive pruning for these buckets, in space order.
static tj_status candidates(tj_tuner *t, const int64_t *buckets, int **out, int *n) {
  *out = NULL;
  *n = 0;
  int *c = tj_malloc(sizeof *c * (size_t)(t->nconfigs + 1));
  if (!c) return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  int m = 0;
  for (int i = 0; i < t->nconfigs; i++)
    if (!t->prune || t->prune(t, &t->configs[i], buckets, t->nkey, t->prune_user)) c[m++] = i;
  if (m == 0) {
    tj_free(c);
    StrBuf sb;
    sb_init(&sb);
    tune_sizes_text(t, buckets, &sb);
    tj_status st = api_error(t->ctx, TJ_ERR_INVALID_ARG, "every configuration of kernel '%s' was pruned for %s",
                             t->base->name, sb.data ? sb.data : "-");
    sb_free(&sb);
    return st;
  }
  *out = c;
  *n = m;
  return TJ_OK;
}

static void copy_msg(char *dst, size_t cap, const char *msg) {
  if (!msg) msg = "";
  size_t n = strcspn(msg, "\n");
  if (n >= cap) n = cap - 1;
  memcpy(dst, msg, n);
  dst[n] = '\0';
}

// ---------------------------------------------------------------- GPU benchmark

typedef struct Scratch {
  void *orig, *copy;
  size_t n;
} Scratch;

typedef struct Bench {
  tj_tuner *t;
  tj_arg *args;         // the caller's, with written pointers replaced by scratch
  int nargs;
  void *stream;
  const unsigned *grid;
  Scratch *sc;
  int nsc;
  RtTimer *timer;
  int reps;
} Bench;

static void bench_release(Bench *b) {
  tj_ctx *ctx = b->t->ctx;
  for (int i = 0; i < b->nsc; i++) tj_device_free(ctx, b->sc[i].copy);
  tj_free(b->sc);
  tj_free(b->args);
  rt_timer_free(ctx, b->timer);
  memset(b, 0, sizeof *b);
}

static tj_status bench_prepare(tj_tuner *t, const TuneRun *run, int reps, Bench *b) {
  memset(b, 0, sizeof *b);
  b->t = t;
  tj_ctx *ctx = t->ctx;
  const tj_kernel *k = t->base;
  if (!run || (run->nargs > 0 && !run->args))
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tuning kernel '%s' needs its arguments", k->name);
  tj_status st = api_check_args(ctx, k, run->args, run->nargs);
  if (st != TJ_OK) return st;
  if (!t->grid && !run->grid)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tuning kernel '%s' needs a grid or a grid callback", k->name);
  // Check every size before allocating anything.
  for (int i = 0; i < run->nargs; i++) {
    bool written = i >= 64 || (t->written >> i & 1);
    const tj_arg *a = &run->args[i];
    if (a->kind != TJ_ARG_PTR || !written || !a->u.buf.ptr) continue;
    if (a->u.buf.nbytes == 0)
      return api_error(ctx, TJ_ERR_INVALID_ARG,
                       "argument %d ('%s') of kernel '%s' may be written while tuning, but its size is unknown: "
                       "pass tj_arg_ptr(p, nbytes) so it can be benchmarked on a scratch copy, or declare the "
                       "written arguments with tj_tuner_set_written", i, k->func->params[i].name, k->name);
  }
  b->nargs = run->nargs;
  b->stream = run->stream;
  b->grid = run->grid;
  b->reps = reps;
  b->args = tj_malloc(sizeof *b->args * (size_t)(run->nargs + 1));
  b->sc = tj_calloc((size_t)run->nargs + 1, sizeof *b->sc);
  if (!b->args || !b->sc) {
    bench_release(b);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  if (run->nargs) memcpy(b->args, run->args, sizeof *b->args * (size_t)run->nargs);
  if ((st = rt_timer_create(ctx, reps, &b->timer)) != TJ_OK) {
    bench_release(b);
    return st;
  }
  for (int i = 0; i < run->nargs; i++) {
    bool written = i >= 64 || (t->written >> i & 1);
    tj_arg *a = &b->args[i];
    if (a->kind != TJ_ARG_PTR || !written || !a->u.buf.ptr) continue;
    Scratch *s = &b->sc[b->nsc];
    s->orig = a->u.buf.ptr;
    s->n = a->u.buf.nbytes;
    if ((st = tj_device_malloc(ctx, s->n, &s->copy)) != TJ_OK ||
        (st = tj_memcpy_dtod(ctx, s->copy, s->orig, s->n)) != TJ_OK) {
      if (s->copy) b->nsc++;
      bench_release(b);
      return st;
    }
    b->nsc++;
    a->u.buf.ptr = s->copy;
  }
  // An idle GPU runs at low clocks for a few milliseconds: without this the
  // first configuration would be timed slower than it is. 20 flushes of
  // >= 256 MiB keep the memory system busy for several milliseconds.
  for (int i = 0; i < 20 && st == TJ_OK; i++) st = rt_timer_flush_l2(ctx, b->timer, b->stream);
  if (st == TJ_OK) st = tj_stream_synchronize(ctx, b->stream);
  if (st != TJ_OK) {
    bench_release(b);
    return st;
  }
  return TJ_OK;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

// One configuration. A failure that concerns only this configuration
// returns its status with *fatal false; a fault of the device sets *fatal.
static tj_status bench_config(Bench *b, int idx, tj_kernel *k, double *ms, bool *fatal) {
  tj_tuner *t = b->t;
  tj_ctx *ctx = t->ctx;
  *ms = -1;
  *fatal = false;
  unsigned g[3];
  tj_status st;
  if (t->grid) {
    if ((st = t->grid(t, &t->configs[idx], b->args, b->nargs, g, t->grid_user)) != TJ_OK) {
      if (!*tj_ctx_last_error(ctx)) api_error(ctx, st, "the grid callback failed (%s)", tj_status_str(st));
      return st;
    }
  } else {
    memcpy(g, b->grid, sizeof g);
  }
  int warm = t->warmup > 0 ? t->warmup : 1;
  for (int w = 0; w < warm; w++) {
    t->stats.timing_launches++;
    if ((st = tj_kernel_launch(ctx, k, g, b->args, b->nargs, b->stream)) != TJ_OK) return st;
  }
  if ((st = tj_stream_synchronize(ctx, b->stream)) != TJ_OK) {
    *fatal = true;
    return st;
  }
  for (int r = 0; r < b->reps; r++) {
    for (int i = 0; i < b->nsc; i++)
      if ((st = rt_copy_dtod_async(ctx, b->sc[i].copy, b->sc[i].orig, b->sc[i].n, b->stream)) != TJ_OK) {
        *fatal = true;
        return st;
      }
    if ((st = rt_timer_flush_l2(ctx, b->timer, b->stream)) != TJ_OK ||
        (st = rt_timer_record(ctx, b->timer, r, false, b->stream)) != TJ_OK) {
      *fatal = true;
      return st;
    }
    t->stats.timing_launches++;
    if ((st = tj_kernel_launch(ctx, k, g, b->args, b->nargs, b->stream)) != TJ_OK) return st;
    if ((st = rt_timer_record(ctx, b->timer, r, true, b->stream)) != TJ_OK) {
      *fatal = true;
      return st;
    }
  }
  float *v = tj_malloc(sizeof *v * (size_t)b->reps);
  if (!v) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  for (int r = 0; r < b->reps; r++) {
    if ((st = rt_timer_elapsed(ctx, b->timer, r, &v[r])) != TJ_OK) {
      tj_free(v);
      *fatal = true;
      return st;
    }
  }
  qsort(v, (size_t)b->reps, sizeof *v, cmp_float);
  *ms = b->reps % 2 ? v[b->reps / 2] : 0.5 * ((double)v[b->reps / 2 - 1] + (double)v[b->reps / 2]);
  tj_free(v);
  return TJ_OK;
}

// Benchmarks the candidates; *results (malloc'd, one per candidate) even on
// failure. *best is the fastest usable one, or -1.
static tj_status bench_all(tj_tuner *t, const int *cand, int ncand, const TuneRun *run, tj_tune_result **results,
                           int *best) {
  tj_ctx *ctx = t->ctx;
  *best = -1;
  tj_tune_result *res = tj_calloc((size_t)ncand, sizeof *res);
  *results = res;
  if (!res) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  for (int j = 0; j < ncand; j++) {
    res[j].index = cand[j];
    res[j].cfg = t->configs[cand[j]];
    res[j].ms = -1;
    res[j].status = TJ_ERR_INTERNAL;
    snprintf(res[j].error, sizeof res[j].error, "not benchmarked");
  }
  Bench b = { .t = t };
  tj_status st;
  if (!t->bench_hook && (st = bench_prepare(t, run, t->reps, &b)) != TJ_OK) return st;
  t->stats.tunings++;
  double best_ms = -1;
  tj_status fatal_st = TJ_OK;
  for (int j = 0; j < ncand; j++) {
    tj_tune_result *r = &res[j];
    tj_kernel *k = NULL;
    const char *err = "";
    double ms = -1;
    bool fatal = false;
    r->error[0] = '\0';
    st = tune_kernel(t, cand[j], &k, &err);
    if (st == TJ_OK) {
      if (t->bench_hook) {
        StrBuf e;
        sb_init(&e);
        st = t->bench_hook(t, cand[j], &ms, &e, t->bench_user);
        if (st != TJ_OK) api_error(ctx, st, "%s", e.data ? e.data : tj_status_str(st));
        sb_free(&e);
      } else {
        st = bench_config(&b, cand[j], k, &ms, &fatal);
      }
      err = tj_ctx_last_error(ctx);
    }
    r->status = st;
    if (st == TJ_OK && !(ms >= 0 && isfinite(ms))) {
      r->status = TJ_ERR_INTERNAL;
      snprintf(r->error, sizeof r->error, "benchmark returned no time");
    } else if (st != TJ_OK) {
      copy_msg(r->error, sizeof r->error, *err ? err : tj_status_str(st));
    }
    if (r->status == TJ_OK) {
      r->ms = ms;
      t->stats.configs_timed++;
      if (best_ms < 0 || ms < best_ms) {
        best_ms = ms;
        *best = cand[j];
      }
    } else {
      t->stats.configs_failed++;
      char cs[160];
      tj_tuner_config_str(t, &r->cfg, cs, sizeof cs);
      rt_warn(ctx, "autotune: kernel '%s' [%s] is unusable: %s", t->base->name, cs, r->error);
    }
    if (t->progress) t->progress(t, j, ncand, r, best_ms, t->progress_user);
    if (fatal) {
      fatal_st = st;
      break;
    }
  }
  if (!t->bench_hook) bench_release(&b);
  if (fatal_st != TJ_OK) {
    char msg[300];
    copy_msg(msg, sizeof msg, tj_ctx_last_error(ctx));
    return api_error(ctx, fatal_st, "autotuning kernel '%s' stopped: the device reported a fault: %s", t->base->name,
                     msg);
  }
  if (*best < 0) {
    return api_error(ctx, TJ_ERR_UNSUPPORTED, "autotuning kernel '%s': none of its %d configurations is usable "
                     "(first error: %s)", t->base->name, ncand, ncand ? res[0].error : "-");
  }
  api_clear_error(ctx);
  return TJ_OK;
}

// ---------------------------------------------------------------- selection

// Turns a stored file into results over this tuner's space; *best is the
// stored best when it is still a candidate, else -1.
static tj_status from_file(tj_tuner *t, const TuneFile *f, const int *cand, int ncand, tj_tune_result **out,
                           int *n, int *best) {
  *out = NULL;
  *n = 0;
  *best = -1;
  if (f->naxes != t->naxes) return TJ_OK;
  for (int a = 0; a < t->naxes; a++)
    if (strcmp(f->axes[a], t->axes[a].name) != 0) return TJ_OK;
  tj_tune_result *r = tj_calloc((size_t)f->nconfigs + 1, sizeof *r);
  if (!r) return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  int m = 0;
  for (int i = 0; i < f->nconfigs; i++) {
    int idx = tune_find_config(t, f->configs[i].values, f->naxes);
    if (idx < 0) continue;
    r[m].index = idx;
    r[m].cfg = t->configs[idx];
    r[m].status = f->configs[i].status;
    r[m].ms = f->configs[i].ms;
    snprintf(r[m].error, sizeof r[m].error, "%s", f->configs[i].error);
    m++;
    if (i == f->best)
      for (int c = 0; c < ncand; c++)
        if (cand[c] == idx) *best = idx;
  }
  *out = r;
  *n = m;
  return TJ_OK;
}

tj_status tune_select(tj_tuner *t, const int64_t *buckets, const TuneRun *run, unsigned flags, int *best) {
  tj_ctx *ctx = t->ctx;
  *best = -1;
  tj_status st = tune_freeze(t);
  if (st != TJ_OK) return st;
  bool force = flags & TJ_TUNE_FORCE;
  TuneEntry *e = force ? NULL : table_find(t, buckets);
  if (e) {
    t->stats.mem_hits++;
    if (t->last_src != e) {
      if (set_last(t, e->results, e->nresults, e->best) != TJ_OK)
        return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
      t->last_src = e;
    }
    *best = e->best;
    return TJ_OK;
  }
  int *cand = NULL, ncand = 0;
  if ((st = candidates(t, buckets, &cand, &ncand)) != TJ_OK) return st;
  if (t->disabled && !force) {
    *best = cand[0];
    tj_free(cand);
    set_last(t, NULL, 0, *best);
    return table_put(t, buckets, *best, NULL, 0);
  }
  if ((st = tune_device(t)) != TJ_OK || (st = tune_ident(t)) != TJ_OK) {
    tj_free(cand);
    return st;
  }
  uint8_t key[32];
  tune_key(t, buckets, key);
  bool disk = tune_store_enabled(ctx);
  StrBuf why;
  sb_init(&why);
  if (disk && !force) {
    TuneFile f;
    st = tune_store_read(ctx, key, &f, &why);
    if (st == TJ_OK) {
      tj_tune_result *res = NULL;
      int nres = 0, b = -1;
      st = from_file(t, &f, cand, ncand, &res, &nres, &b);
      tune_file_free(&f);
      if (st == TJ_OK && b >= 0) {
        t->stats.disk_hits++;
        tj_free(cand);
        sb_free(&why);
        if (set_last(t, res, nres, b) != TJ_OK) {
          tj_free(res);
          return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
        }
        *best = b;
        st = table_put(t, buckets, b, res, nres);
        t->last_src = table_find(t, buckets);
        return st;
      }
      tj_free(res);
      if (st != TJ_OK) {
        tj_free(cand);
        sb_free(&why);
        return st;
      }
    } else if (st == TJ_ERR_CORRUPT) {
      t->stats.corrupt++;
      char hex[65];
      cache_key_hex(key, hex);
      rt_warn(ctx, "autotune: stored result %s for kernel '%s' was damaged (%s); removed, tuning again", hex,
              t->base->name, why.data ? why.data : "?");
    } else if (st == TJ_ERR_IO) {
      rt_warn(ctx, "autotune: cannot read a stored result: %s", why.data ? why.data : "?");
    } else if (st == TJ_ERR_NO_MEMORY) {
      // Not "never tuned": tj_tuner_best would say TJ_ERR_NOT_FOUND.
      tj_free(cand);
      sb_free(&why);
      return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
    }
  }
  sb_free(&why);
  if (flags & TUNE_NO_BENCH) {
    tj_free(cand);
    return api_error(ctx, TJ_ERR_NOT_FOUND, "kernel '%s' was not tuned for these sizes", t->base->name);
  }
  tj_tune_result *res = NULL;
  int b = -1;
  st = bench_all(t, cand, ncand, run, &res, &b);
  // A failed run's results are kept too; its own error comes first.
  if (set_last(t, res, res ? ncand : 0, b) != TJ_OK && st == TJ_OK)
    st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  tj_free(cand);
  if (st != TJ_OK) {
    tj_free(res);
    return st;
  }
  if (disk) {
    char *text = NULL;
    size_t len = 0;
    StrBuf w;
    sb_init(&w);
    if (tune_file_encode(t, key, buckets, res, ncand, b, &text, &len) == TJ_OK &&
        tune_store_write(ctx, key, text, len, &w) == TJ_OK)
      t->stats.disk_writes++;
    else
      rt_warn(ctx, "autotune: cannot store the result for kernel '%s': %s", t->base->name, w.data ? w.data : "?");
    tj_free(text);
    sb_free(&w);
  }
  *best = b;
  st = table_put(t, buckets, b, res, ncand);
  t->last_src = table_find(t, buckets);
  return st;
}

// ---------------------------------------------------------------- public

static tj_status choose(tj_tuner *t, const int64_t *key_sizes, int nkey, const TuneRun *run, unsigned flags,
                        int *best, tj_kernel **k) {
  int64_t buckets[TJ_TUNE_MAX_KEYS];
  tj_status st = tune_buckets(t, key_sizes, nkey, run ? run->args : NULL, run ? run->nargs : 0, buckets);
  if (st == TJ_OK) st = tune_select(t, buckets, run, flags, best);
  if (st == TJ_OK && k) {
    const char *err;
    st = tune_kernel(t, *best, k, &err);
  }
  return st;
}

tj_status tj_tuner_launch(tj_tuner *t, const int64_t *key_sizes, int nkey, const unsigned grid[3],
                          const tj_arg *args, int nargs, void *stream) {
  if (!t) return TJ_ERR_INVALID_ARG;
  pthread_mutex_lock(&t->mu);
  t->stats.launches++;
  TuneRun run = { grid, args, nargs, stream };
  int best = -1;
  tj_kernel *k = NULL;
  tj_status st = choose(t, key_sizes, nkey, &run, 0, &best, &k);
  tj_tune_grid_fn gfn = t->grid;
  void *guser = t->grid_user;
  tj_tune_config cfg = st == TJ_OK ? t->configs[best] : (tj_tune_config){ { 0 } };
  pthread_mutex_unlock(&t->mu);
  if (st != TJ_OK) return st;
  unsigned g[3];
  if (gfn) {
    if ((st = gfn(t, &cfg, args, nargs, g, guser)) != TJ_OK) return st;
  } else if (!grid) {
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_launch: grid is NULL and no grid callback is set");
  } else {
    memcpy(g, grid, sizeof g);
  }
  return tj_kernel_launch(t->ctx, k, g, args, nargs, stream);
}

tj_status tj_tuner_tune(tj_tuner *t, const int64_t *key_sizes, int nkey, const unsigned grid[3], const tj_arg *args,
                        int nargs, void *stream, unsigned flags, tj_tune_config *best) {
  if (!t) return TJ_ERR_INVALID_ARG;
  pthread_mutex_lock(&t->mu);
  TuneRun run = { grid, args, nargs, stream };
  int b = -1;
  tj_status st = choose(t, key_sizes, nkey, &run, flags & TJ_TUNE_FORCE, &b, NULL);
  if (st == TJ_OK && best) *best = t->configs[b];
  pthread_mutex_unlock(&t->mu);
  return st;
}

tj_status tj_tuner_best(tj_tuner *t, const int64_t *key_sizes, int nkey, tj_tune_config *out, int *index) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!key_sizes && t->nkey > 0)
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_best: needs the %d key sizes", t->nkey);
  pthread_mutex_lock(&t->mu);
  int b = -1;
  tj_status st = choose(t, key_sizes, nkey, NULL, TUNE_NO_BENCH, &b, NULL);
  if (st == TJ_OK) {
    if (out) *out = t->configs[b];
    if (index) *index = b;
  }
  pthread_mutex_unlock(&t->mu);
  return st;
}

tj_status tj_tuner_results(tj_tuner *t, const tj_tune_result **out, int *n, int *best) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!out || !n) return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_results: out or n is NULL");
  pthread_mutex_lock(&t->mu);
  *out = t->last;
  *n = t->nlast;
  if (best) *best = t->last_best;
  pthread_mutex_unlock(&t->mu);
  return TJ_OK;
}

tj_status tj_tuner_measure(tj_tuner *t, int index, const unsigned grid[3], const tj_arg *args, int nargs,
                           void *stream, int reps, double *ms) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!ms) return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_measure: ms is NULL");
  *ms = -1;
  if (reps <= 0 || reps > 10000) return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_measure: reps must be 1..10000");
  pthread_mutex_lock(&t->mu);
  tj_status st = tune_freeze(t);
  tj_kernel *k = NULL;
  const char *err;
  if (st == TJ_OK) st = tune_kernel(t, index, &k, &err);
  if (st == TJ_OK && t->bench_hook) {
    StrBuf e;
    sb_init(&e);
    st = t->bench_hook(t, index, ms, &e, t->bench_user);
    if (st != TJ_OK) api_error(t->ctx, st, "%s", e.data ? e.data : tj_status_str(st));
    sb_free(&e);
  } else if (st == TJ_OK) {
    TuneRun run = { grid, args, nargs, stream };
    Bench b;
    bool fatal;
    if ((st = bench_prepare(t, &run, reps, &b)) == TJ_OK) {
      st = bench_config(&b, index, k, ms, &fatal);
      bench_release(&b);
    }
  }
  pthread_mutex_unlock(&t->mu);
  return st;
}

tj_status tj_tuner_kernel(tj_tuner *t, int index, tj_kernel **out) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_kernel: out is NULL");
  *out = NULL;
  pthread_mutex_lock(&t->mu);
  tj_status st = tune_freeze(t);
  const char *err;
  if (st == TJ_OK) st = tune_kernel(t, index, out, &err);
  pthread_mutex_unlock(&t->mu);
  return st;
}

tj_status tj_tuner_stats(const tj_tuner *t, tj_tune_stats *out) {
  if (!t || !out) return TJ_ERR_INVALID_ARG;
  tj_tuner *mt = (tj_tuner *)t;
  pthread_mutex_lock(&mt->mu);
  *out = t->stats;
  pthread_mutex_unlock(&mt->mu);
  return TJ_OK;
}

tj_status tj_tuner_key_path(tj_tuner *t, const int64_t *key_sizes, int nkey, char *buf, size_t n) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!buf || n == 0) return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_key_path: no buffer");
  buf[0] = '\0';
  if (!key_sizes && t->nkey > 0)
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_key_path: needs the %d key sizes", t->nkey);
  pthread_mutex_lock(&t->mu);
  int64_t buckets[TJ_TUNE_MAX_KEYS];
  tj_status st = tune_freeze(t);
  if (st == TJ_OK) st = tune_buckets(t, key_sizes, nkey, NULL, 0, buckets);
  if (st == TJ_OK) st = tune_device(t);
  if (st == TJ_OK) st = tune_ident(t);
  if (st == TJ_OK && tune_store_enabled(t->ctx)) {
    uint8_t key[32];
    tune_key(t, buckets, key);
    StrBuf p;
    sb_init(&p);
    st = tune_store_path(t->ctx, key, &p);
    if (st == TJ_OK) snprintf(buf, n, "%s", p.data);
    sb_free(&p);
  }
  pthread_mutex_unlock(&t->mu);
  return st;
}
