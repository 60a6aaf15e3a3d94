/* space.c: the tuner object and its search space.
 *
 * requires: a compile request (tj_compile_opts); produces: a tj_tuner whose
 * axes come from the kernel's `tunable` declarations (found by running the
 * front end once, which needs no GPU) and from tj_tuner_set_axis, the
 * configuration list (product or explicit), and a compiled kernel per
 * configuration on demand.
 *
 * A configuration is compiled as the base request plus one -D NAME=VALUE per
 * axis (base defines naming an axis are dropped, the axis decides), except a
 * num_warps axis the kernel does not declare, which is a launch option
 * (tj_compile_opts.num_warps). A base define that sets a declared tunable
 * pins that axis to the one value: the caller chose it.
 */
#include "tune.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool env_off(const char *name) {
  const char *v = getenv(name);
  return v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no"));
}

static bool parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return false;
  char *end;
  long long v = strtoll(s, &end, 0);
  if (*end) return false;
  *out = v;
  return true;
}

static bool is_pow2_warps(int64_t v) { return v >= 1 && v <= 32 && (v & (v - 1)) == 0; }

static char *dup_str(const char *s) { return s ? tj_strdup(s) : NULL; }

// The value a base define gives to name, if any.
static const char *base_define(const tj_tuner *t, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < t->ndefines; i++)
    if (!strncmp(t->defines[i], name, n) && t->defines[i][n] == '=') return t->defines[i] + n + 1;
  return NULL;
}

static tj_status set_values(tj_tuner *t, TuneAxis *ax, const int64_t *v, int n) {
  int64_t *nv = tj_malloc(sizeof *nv * (size_t)n);
  if (!nv) return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  memcpy(nv, v, sizeof *nv * (size_t)n);
  tj_free(ax->values);
  ax->values = nv;
  ax->n = n;
  return TJ_OK;
}

static tj_status axes_from_kernel(tj_tuner *t) {
  const TirFunc *f = t->base->func;
  for (int i = 0; i < f->ntunables; i++) {
    const TirTunable *tu = &f->tunables[i];
    if (t->naxes == TJ_TUNE_MAX_AXES)
      return api_error(t->ctx, TJ_ERR_UNSUPPORTED, "kernel '%s' declares more than %d tunables", f->name,
                       TJ_TUNE_MAX_AXES);
    TuneAxis *ax = &t->axes[t->naxes];
    ax->name = tj_strdup(tu->name);
    ax->declared = true;
    if (!ax->name) return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
    t->naxes++;
    int64_t pin;
    const char *d = base_define(t, tu->name);
    bool warps = !strcmp(tu->name, "num_warps");
    tj_status st;
    // Sema already checked that a define is in the set.
    if (d && parse_i64(d, &pin)) st = set_values(t, ax, &pin, 1);
    else if (warps && t->num_warps > 0) st = set_values(t, ax, &(int64_t){ t->num_warps }, 1);
    else st = set_values(t, ax, tu->values, tu->nvalues);
    if (st != TJ_OK) return st;
  }
  return TJ_OK;
}

tj_status tj_tuner_create(tj_ctx *ctx, const tj_compile_opts *base, const char *const *key_names, int nkey,
                          tj_tuner **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_create: out is NULL");
  *out = NULL;
  if (!base) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_create: base is NULL");
  if (!base->source && !base->path)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_create: neither source nor path is set");
  if (nkey < 0 || nkey > TJ_TUNE_MAX_KEYS || (nkey > 0 && !key_names))
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_create: the key has %d sizes; 0 to %d allowed (with names)",
                     nkey, TJ_TUNE_MAX_KEYS);
  if (base->ndefines < 0 || (base->ndefines > 0 && !base->defines))
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_create: bad defines");

  tj_tuner *t = tj_calloc(1, sizeof *t);
  if (!t) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  // Recursive: prune, grid and progress callbacks may call tj_tuner_* on t.
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  int mr = pthread_mutex_init(&t->mu, &ma);
  pthread_mutexattr_destroy(&ma);
  if (mr != 0) {
    tj_free(t);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  t->ctx = ctx;
  t->warmup = 3;
  t->reps = 25;
  t->written = ~(uint64_t)0;
  t->disabled = env_off("TILEJIT_AUTOTUNE");
  t->last_best = -1;
  tj_status st = TJ_OK;

  // Keep the text, not the path: every configuration compiles the same
  // source even if the file changes during a tuning run.
  if (base->source) {
    t->source_len = base->source_len ? base->source_len : strlen(base->source);
    t->source = tj_malloc(t->source_len + 1);
    if (t->source) {
      memcpy(t->source, base->source, t->source_len);
      t->source[t->source_len] = '\0';
    }
  } else {
    StrBuf err;
    sb_init(&err);
    st = util_read_file(base->path, &t->source, &t->source_len, &err);
    if (st != TJ_OK) api_error(ctx, st, "%s", err.data ? err.data : "cannot read file");
    sb_free(&err);
    if (st != TJ_OK) goto fail;
  }
  t->path = dup_str(base->path);
  t->kernel = dup_str(base->kernel);
  t->arch = dup_str(base->arch);
  t->num_warps = base->num_warps;
  t->flags = base->flags & ~(unsigned)TJ_COMPILE_FRONTEND;
  t->ndefines = base->ndefines;
  t->defines = tj_calloc((size_t)base->ndefines + 1, sizeof *t->defines);
  if (!t->source || !t->defines || (base->path && !t->path) || (base->kernel && !t->kernel) ||
      (base->arch && !t->arch)) {
    st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
    goto fail;
  }
  for (int i = 0; i < base->ndefines; i++) {
    if (!base->defines[i]) {
      st = api_error(ctx, TJ_ERR_INVALID_ARG, "define %d is NULL", i);
      goto fail;
    }
    if (!(t->defines[i] = tj_strdup(base->defines[i]))) {
      st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
      goto fail;
    }
  }

  tj_compile_opts o = { .source = t->source, .source_len = t->source_len, .path = t->path,
                        .kernel = t->kernel, .defines = (const char *const *)t->defines,
                        .ndefines = t->ndefines, .num_warps = t->num_warps, .arch = t->arch,
                        .flags = t->flags | TJ_COMPILE_FRONTEND };
  if ((st = tj_kernel_compile(ctx, &o, &t->base)) != TJ_OK) goto fail;
  if ((st = axes_from_kernel(t)) != TJ_OK) goto fail;

  const TirFunc *f = t->base->func;
  t->nkey = nkey;
  for (int i = 0; i < nkey; i++) {
    if (!key_names[i] || !*key_names[i]) {
      st = api_error(ctx, TJ_ERR_INVALID_ARG, "key size %d has no name", i);
      goto fail;
    }
    if (!(t->key_names[i] = tj_strdup(key_names[i]))) {
      st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
      goto fail;
    }
    t->key_param[i] = -1;
    for (int j = 0; j < f->nparams; j++) {
      if (strcmp(f->params[j].name, key_names[i]) != 0) continue;
      if (f->params[j].ptr || !dtype_is_int(f->params[j].dtype)) {
        st = api_error(ctx, TJ_ERR_INVALID_ARG, "key size '%s' of kernel '%s' is a %s parameter; a key size "
                       "must be an integer scalar parameter or a name passed explicitly", key_names[i],
                       f->name, f->params[j].ptr ? "pointer" : dtype_name(f->params[j].dtype));
        goto fail;
      }
      t->key_param[i] = j;
    }
    for (int j = 0; j < i; j++)
      if (!strcmp(t->key_names[j], key_names[i])) {
        st = api_error(ctx, TJ_ERR_INVALID_ARG, "key size '%s' is named twice", key_names[i]);
        goto fail;
      }
  }
  *out = t;
  return TJ_OK;
fail:
  tj_tuner_free(t);
  return st;
}

static void free_entries(TuneEntry *e) {
  while (e) {
    TuneEntry *n = e->next;
    tj_free(e->results);
    tj_free(e);
    e = n;
  }
}

void tj_tuner_free(tj_tuner *t) {
  if (!t) return;
  for (int i = 0; t->kernels && i < t->nconfigs; i++) tj_kernel_free(t->kernels[i]);
  for (int i = 0; t->kerr && i < t->nconfigs; i++) tj_free(t->kerr[i]);
  tj_free(t->kernels);
  tj_free(t->kstatus);
  tj_free(t->kerr);
  tj_kernel_free(t->base);
  for (int i = 0; i < t->naxes; i++) {
    tj_free(t->axes[i].name);
    tj_free(t->axes[i].values);
  }
  for (int i = 0; i < t->nkey; i++) tj_free(t->key_names[i]);
  for (int i = 0; t->defines && i < t->ndefines; i++) tj_free(t->defines[i]);
  tj_free(t->defines);
  tj_free(t->configs);
  tj_free(t->source);
  tj_free(t->path);
  tj_free(t->kernel);
  tj_free(t->arch);
  tj_free(t->last);
  free_entries(t->table);
  pthread_mutex_destroy(&t->mu);
  tj_free(t);
}

int tune_axis_index(const tj_tuner *t, const char *name) {
  for (int i = 0; i < t->naxes; i++)
    if (!strcmp(t->axes[i].name, name)) return i;
  return -1;
}

static bool const_is_int(const TirFunc *f, const char *name) {
  int64_t v;
  for (int i = 0; i < f->nconsts; i++)
    if (!strcmp(f->consts[i].name, name)) return parse_i64(f->consts[i].text, &v);
  return false;
}

tj_status tj_tuner_set_axis(tj_tuner *t, const char *name, const int64_t *values, int n) {
  if (!t) return TJ_ERR_INVALID_ARG;
  tj_ctx *ctx = t->ctx;
  if (!name || !values || n <= 0)
    return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_axis: needs a name and at least one value");
  pthread_mutex_lock(&t->mu);
  tj_status st = TJ_OK;
  if (t->frozen) {
    st = api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_axis: the space of '%s' is fixed after the first tune "
                   "or launch", t->base->name);
    goto out;
  }
  if (t->explicit_list) {
    st = api_error(ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_axis: set the axes before tj_tuner_set_configs");
    goto out;
  }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < i; j++)
      if (values[i] == values[j]) {
        st = api_error(ctx, TJ_ERR_INVALID_ARG, "axis '%s': value %lld is given twice", name, (long long)values[i]);
        goto out;
      }
  bool warps = !strcmp(name, "num_warps");
  if (warps)
    for (int i = 0; i < n; i++)
      if (!is_pow2_warps(values[i])) {
        st = api_error(ctx, TJ_ERR_INVALID_ARG, "num_warps must be a power of two from 1 to 32, got %lld",
                       (long long)values[i]);
        goto out;
      }
  const TirFunc *f = t->base->func;
  int ai = tune_axis_index(t, name);
  if (ai >= 0 && t->axes[ai].declared) {
    // A declared tunable: the values must come from its set.
    const TirTunable *tu = NULL;
    for (int i = 0; i < f->ntunables; i++)
      if (!strcmp(f->tunables[i].name, name)) tu = &f->tunables[i];
    for (int i = 0; tu && i < n; i++) {
      bool in = false;
      for (int j = 0; j < tu->nvalues; j++) in |= tu->values[j] == values[i];
      if (!in) {
        st = api_error(ctx, TJ_ERR_INVALID_ARG, "axis '%s': %lld is not in the tunable set of kernel '%s'", name,
                       (long long)values[i], f->name);
        goto out;
      }
    }
  } else if (ai < 0) {
    if (!warps && !const_is_int(f, name)) {
      st = api_error(ctx, TJ_ERR_INVALID_ARG, "axis '%s': kernel '%s' has no integer constant or tunable of that "
                     "name (nor is it num_warps)", name, f->name);
      goto out;
    }
    if (t->naxes == TJ_TUNE_MAX_AXES) {
      st = api_error(ctx, TJ_ERR_UNSUPPORTED, "a tuner has at most %d axes", TJ_TUNE_MAX_AXES);
      goto out;
    }
    ai = t->naxes;
    TuneAxis *ax = &t->axes[ai];
    memset(ax, 0, sizeof *ax);
    if (!(ax->name = tj_strdup(name))) {
      st = api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
      goto out;
    }
    ax->launch_warps = warps;
    t->naxes++;
  }
  st = set_values(t, &t->axes[ai], values, n);
out:
  pthread_mutex_unlock(&t->mu);
  return st;
}

tj_status tj_tuner_set_configs(tj_tuner *t, const tj_tune_config *cfgs, int n) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (!cfgs || n <= 0 || n > TJ_TUNE_MAX_CONFIGS)
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_configs: needs 1 to %d configurations",
                     TJ_TUNE_MAX_CONFIGS);
  pthread_mutex_lock(&t->mu);
  tj_status st = TJ_OK;
  if (t->frozen) {
    st = api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_configs: the space is fixed after the first tune or launch");
  } else if (t->naxes == 0) {
    st = api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_configs: kernel '%s' has no axes to configure",
                   t->base->name);
  } else {
    for (int i = 0; i < n && st == TJ_OK; i++)
      for (int a = 0; a < t->naxes; a++)
        if (!strcmp(t->axes[a].name, "num_warps") && !is_pow2_warps(cfgs[i].v[a]))
          st = api_error(t->ctx, TJ_ERR_INVALID_ARG, "configuration %d: num_warps must be a power of two from 1 to 32", i);
    tj_tune_config *c = st == TJ_OK ? tj_malloc(sizeof *c * (size_t)n) : NULL;
    if (st == TJ_OK && !c) st = api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
    if (st == TJ_OK) {
      memcpy(c, cfgs, sizeof *c * (size_t)n);
      for (int i = 0; i < n; i++)
        for (int a = t->naxes; a < TJ_TUNE_MAX_AXES; a++) c[i].v[a] = 0;
      tj_free(t->configs);
      t->configs = c;
      t->nconfigs = n;
      t->explicit_list = true;
    }
  }
  pthread_mutex_unlock(&t->mu);
  return st;
}

#define SETTER(fn_name, type, field, ufield)                   \
  tj_status fn_name(tj_tuner *t, type fn, void *user) {        \
    if (!t) return TJ_ERR_INVALID_ARG;                          \
    pthread_mutex_lock(&t->mu);                                 \
    t->field = fn;                                              \
    t->ufield = user;                                           \
    pthread_mutex_unlock(&t->mu);                               \
    return TJ_OK;                                               \
  }
SETTER(tj_tuner_set_prune, tj_tune_prune_fn, prune, prune_user)
SETTER(tj_tuner_set_grid, tj_tune_grid_fn, grid, grid_user)
SETTER(tj_tuner_set_bucket, tj_tune_bucket_fn, bucket, bucket_user)
SETTER(tj_tuner_set_progress, tj_tune_progress_fn, progress, progress_user)
#undef SETTER

tj_status tj_tuner_set_written(tj_tuner *t, uint64_t mask) {
  if (!t) return TJ_ERR_INVALID_ARG;
  pthread_mutex_lock(&t->mu);
  t->written = mask;
  pthread_mutex_unlock(&t->mu);
  return TJ_OK;
}

tj_status tj_tuner_set_bench(tj_tuner *t, int warmup, int reps) {
  if (!t) return TJ_ERR_INVALID_ARG;
  if (warmup < 0 || warmup > 1000 || reps < 1 || reps > 10000)
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "tj_tuner_set_bench: warmup 0..1000 and reps 1..10000, got %d and %d",
                     warmup, reps);
  pthread_mutex_lock(&t->mu);
  t->warmup = warmup;
  t->reps = reps;
  pthread_mutex_unlock(&t->mu);
  return TJ_OK;
}

// Requires t->mu.
tj_status tune_freeze(tj_tuner *t) {
  if (t->frozen) return TJ_OK;
  if (!t->explicit_list) {
    int64_t total = 1;
    for (int a = 0; a < t->naxes; a++) {
      total *= t->axes[a].n;
      if (total > TJ_TUNE_MAX_CONFIGS)
        return api_error(t->ctx, TJ_ERR_UNSUPPORTED, "the space of kernel '%s' has more than %d configurations; "
                         "narrow it with tj_tuner_set_axis", t->base->name, TJ_TUNE_MAX_CONFIGS);
    }
    tj_tune_config *c = tj_calloc((size_t)total, sizeof *c);
    if (!c) return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
    for (int64_t i = 0; i < total; i++) {
      int64_t rest = i;
      for (int a = t->naxes - 1; a >= 0; a--) {
        c[i].v[a] = t->axes[a].values[rest % t->axes[a].n];
        rest /= t->axes[a].n;
      }
    }
    tj_free(t->configs);
    t->configs = c;
    t->nconfigs = (int)total;
  }
  t->kernels = tj_calloc((size_t)t->nconfigs, sizeof *t->kernels);
  t->kstatus = tj_calloc((size_t)t->nconfigs, sizeof *t->kstatus);
  t->kerr = tj_calloc((size_t)t->nconfigs, sizeof *t->kerr);
  if (!t->kernels || !t->kstatus || !t->kerr) {
    tj_free(t->kernels), tj_free(t->kstatus), tj_free(t->kerr);
    t->kernels = NULL, t->kstatus = NULL, t->kerr = NULL;
    return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  t->frozen = true;
  return TJ_OK;
}

int tune_find_config(const tj_tuner *t, const int64_t *values, int nvalues) {
  if (nvalues != t->naxes) return -1;
  for (int i = 0; i < t->nconfigs; i++)
    if (!memcmp(t->configs[i].v, values, sizeof *values * (size_t)nvalues)) return i;
  return -1;
}

// The first line of a message, for tables and result files.
static char *first_line(const char *msg) {
  if (!msg) msg = "";
  size_t n = strcspn(msg, "\n");
  char *s = tj_malloc(n + 1);
  if (!s) return NULL;
  memcpy(s, msg, n);
  s[n] = '\0';
  return s;
}

// Requires t->mu and a frozen space.
tj_status tune_kernel(tj_tuner *t, int i, tj_kernel **out, const char **err) {
  *out = NULL;
  if (err) *err = "";
  if (i < 0 || i >= t->nconfigs)
    return api_error(t->ctx, TJ_ERR_INVALID_ARG, "configuration %d does not exist (kernel '%s' has %d)", i,
                     t->base->name, t->nconfigs);
  if (t->kernels[i]) {
    *out = t->kernels[i];
    return TJ_OK;
  }
  if (t->kstatus[i] != TJ_OK) {
    if (err) *err = t->kerr[i] ? t->kerr[i] : "";
    return api_error(t->ctx, t->kstatus[i], "%s", t->kerr[i] ? t->kerr[i] : tj_status_str(t->kstatus[i]));
  }
  // Base defines minus the axes, then one define per (non-launch) axis.
  const char **defs = tj_calloc((size_t)(t->ndefines + t->naxes) + 1, sizeof *defs);
  char (*own)[96] = tj_calloc((size_t)t->naxes + 1, sizeof *own);
  if (!defs || !own) {
    tj_free(defs);
    tj_free(own);
    return api_error(t->ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  int nd = 0, warps = t->num_warps;
  for (int d = 0; d < t->ndefines; d++) {
    size_t n = strcspn(t->defines[d], "=");
    bool is_axis = false;
    for (int a = 0; a < t->naxes; a++)
      is_axis |= strlen(t->axes[a].name) == n && !strncmp(t->axes[a].name, t->defines[d], n);
    if (!is_axis) defs[nd++] = t->defines[d];
  }
  for (int a = 0; a < t->naxes; a++) {
    int64_t v = t->configs[i].v[a];
    if (!strcmp(t->axes[a].name, "num_warps")) warps = (int)v;
    if (t->axes[a].launch_warps) continue;
    snprintf(own[a], sizeof own[a], "%s=%lld", t->axes[a].name, (long long)v);
    defs[nd++] = own[a];
  }
  tj_compile_opts o = { .source = t->source, .source_len = t->source_len, .path = t->path,
                        .kernel = t->kernel, .defines = defs, .ndefines = nd, .num_warps = warps,
                        .arch = t->arch, .flags = t->flags };
  tj_status st = tj_kernel_compile(t->ctx, &o, &t->kernels[i]);
  tj_free(defs);
  tj_free(own);
  if (st != TJ_OK) {
    t->kernels[i] = NULL;
    t->kstatus[i] = st;
    t->kerr[i] = first_line(tj_ctx_last_error(t->ctx));
    if (err) *err = t->kerr[i] ? t->kerr[i] : "";
    return st;
  }
  *out = t->kernels[i];
  return TJ_OK;
}

// ---------------------------------------------------------------- queries

int tj_tuner_num_axes(const tj_tuner *t) { return t ? t->naxes : 0; }

tj_status tj_tuner_axis(const tj_tuner *t, int i, const char **name, const int64_t **values, int *nvalues) {
  if (!t || i < 0 || i >= t->naxes) return TJ_ERR_INVALID_ARG;
  if (name) *name = t->axes[i].name;
  if (values) *values = t->axes[i].values;
  if (nvalues) *nvalues = t->axes[i].n;
  return TJ_OK;
}

int tj_tuner_num_configs(const tj_tuner *t) {
  if (!t) return 0;
  if (t->frozen || t->explicit_list) return t->nconfigs;
  int64_t total = 1;
  for (int a = 0; a < t->naxes; a++) {
    total *= t->axes[a].n;
    if (total > TJ_TUNE_MAX_CONFIGS) return TJ_TUNE_MAX_CONFIGS + 1;
  }
  return (int)total;
}

tj_status tj_tuner_config(const tj_tuner *t, int i, tj_tune_config *out) {
  if (!t || !out) return TJ_ERR_INVALID_ARG;
  tj_tuner *mt = (tj_tuner *)t;  // freezing is the lazy construction of the list
  pthread_mutex_lock(&mt->mu);
  tj_status st = tune_freeze(mt);
  if (st == TJ_OK && (i < 0 || i >= t->nconfigs))
    st = api_error(t->ctx, TJ_ERR_INVALID_ARG, "configuration %d does not exist (%d)", i, t->nconfigs);
  if (st == TJ_OK) *out = t->configs[i];
  pthread_mutex_unlock(&mt->mu);
  return st;
}

tj_status tj_tuner_config_value(const tj_tuner *t, const tj_tune_config *cfg, const char *name, int64_t *out) {
  if (!t || !cfg || !name || !out) return TJ_ERR_INVALID_ARG;
  int a = tune_axis_index(t, name);
  if (a < 0) return TJ_ERR_NOT_FOUND;
  *out = cfg->v[a];
  return TJ_OK;
}

void tj_tuner_config_str(const tj_tuner *t, const tj_tune_config *cfg, char *buf, size_t n) {
  if (!buf || n == 0) return;
  buf[0] = '\0';
  if (!t || !cfg) return;
  size_t used = 0;
  for (int a = 0; a < t->naxes && used < n; a++) {
    int w = snprintf(buf + used, n - used, "%s%s=%lld", a ? " " : "", t->axes[a].name, (long long)cfg->v[a]);
    if (w < 0) break;
    used += (size_t)w;
  }
  if (t->naxes == 0) snprintf(buf, n, "(default)");
}

const char *tj_tuner_kernel_name(const tj_tuner *t) { return t && t->base ? t->base->name : NULL; }
