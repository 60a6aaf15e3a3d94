/* key.c: what a tuning result is keyed on.
 *
 * requires: a tuner with a frozen space; produces: the identity digest and
 * per-size keys.
 *
 * A stored best may only be reused where it would be chosen again, so the
 * key covers everything that changes the code or the machine: the kernel's
 * cache identity (tilejit version and build, LLVM version, source text,
 * kernel name, the resolved constants that are not tuned, num_warps when it
 * is not tuned, the target arch), the device name and compute capability,
 * the parameter names and dtypes, the search space itself (a different set
 * of candidates may have a different winner), and the key sizes after
 * bucketing. Buckets trade precision for reuse: by default a size maps to
 * the next power of two, so n = 3000 and n = 4096 share a result.
 */
#include "tune.h"

#include <stdio.h>
#include <string.h>

#include "../codegen/hash.h"
#include "../runtime/rt.h"

#define TUNE_KEY_FORMAT 2u   // 2: the fp fusion setting

int64_t tj_tune_bucket_pow2(int64_t v) {
  if (v <= 1) return v;
  if (v > ((int64_t)1 << 62)) return v;  // no power of two above it fits
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

void tune_set_device(tj_tuner *t, const char *name, int cc_major, int cc_minor, const char *arch) {
  pthread_mutex_lock(&t->mu);
  snprintf(t->dev_name, sizeof t->dev_name, "%s", name ? name : "");
  t->cc_major = cc_major;
  t->cc_minor = cc_minor;
  snprintf(t->dev_arch, sizeof t->dev_arch, "%s", arch ? arch : "");
  t->have_dev = true;
  t->have_ident = false;
  pthread_mutex_unlock(&t->mu);
}

void tune_set_bench_hook(tj_tuner *t, TuneBenchFn fn, void *user) {
  pthread_mutex_lock(&t->mu);
  t->bench_hook = fn;
  t->bench_user = user;
  pthread_mutex_unlock(&t->mu);
}

// Requires t->mu.
tj_status tune_device(tj_tuner *t) {
  if (t->have_dev) return TJ_OK;
  tj_device_info di;
  tj_status st = tj_device_query(t->ctx, tj_ctx_device(t->ctx), &di);
  if (st != TJ_OK) {
    const char *why = tj_ctx_last_error(t->ctx);
    return api_error(t->ctx, st, "autotuning kernel '%s' needs a CUDA device: %s", t->base->name,
                     *why ? why : tj_status_str(st));
  }
  snprintf(t->dev_name, sizeof t->dev_name, "%s", di.name);
  t->cc_major = di.cc_major;
  t->cc_minor = di.cc_minor;
  snprintf(t->dev_arch, sizeof t->dev_arch, "%s", t->arch ? t->arch : di.arch);
  t->have_dev = true;
  return TJ_OK;
}

// Requires t->mu, a frozen space and the device.
tj_status tune_ident(tj_tuner *t) {
  if (t->have_ident) return TJ_OK;
  const TirFunc *f = t->base->func;
  CgHash h;
  cg_hash_init(&h);
  cg_hash_str(&h, "tilejit-tune-key");
  uint32_t fmt = TUNE_KEY_FORMAT;
  cg_hash_field(&h, &fmt, sizeof fmt);
  // The kernel's cache identity, without the tuned constants.
  cg_hash_str(&h, tj_version());
  cg_hash_str(&h, cache_build_id());
  cg_hash_str(&h, tj_llvm_version());
  cg_hash_field(&h, t->source, t->source_len);
  cg_hash_str(&h, f->name);
  for (int i = 0; i < f->nconsts; i++) {
    if (tune_axis_index(t, f->consts[i].name) >= 0) continue;
    cg_hash_str(&h, f->consts[i].name);
    cg_hash_str(&h, f->consts[i].text);
  }
  int32_t nw = tune_axis_index(t, "num_warps") >= 0 ? 0 : t->base->num_warps;
  cg_hash_field(&h, &nw, sizeof nw);
  uint32_t fusion = (t->flags & TJ_COMPILE_NO_FP_FUSION) ? 0 : 1;   // other code, maybe another winner
  cg_hash_field(&h, &fusion, sizeof fusion);
  cg_hash_str(&h, t->dev_arch);
  // The device.
  cg_hash_str(&h, t->dev_name);
  int32_t cc[2] = { t->cc_major, t->cc_minor };
  cg_hash_field(&h, cc, sizeof cc);
  // The signature.
  for (int i = 0; i < f->nparams; i++) {
    cg_hash_str(&h, f->params[i].name);
    int32_t pd[2] = { f->params[i].ptr, (int32_t)f->params[i].dtype };
    cg_hash_field(&h, pd, sizeof pd);
  }
  // The space.
  for (int a = 0; a < t->naxes; a++) {
    cg_hash_str(&h, t->axes[a].name);
    int32_t lw = t->axes[a].launch_warps;
    cg_hash_field(&h, &lw, sizeof lw);
  }
  int32_t nc = t->nconfigs;
  cg_hash_field(&h, &nc, sizeof nc);
  for (int i = 0; i < t->nconfigs; i++) cg_hash_field(&h, t->configs[i].v, sizeof(int64_t) * (size_t)t->naxes);
  // The key's names (their values are added per key).
  for (int k = 0; k < t->nkey; k++) cg_hash_str(&h, t->key_names[k]);
  cg_hash_final(&h, t->ident);
  t->have_ident = true;
  return TJ_OK;
}

void tune_key(const tj_tuner *t, const int64_t *buckets, uint8_t out[32]) {
  CgHash h;
  cg_hash_init(&h);
  cg_hash_field(&h, t->ident, 32);
  for (int k = 0; k < t->nkey; k++) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)buckets[k] >> (8 * i));
    cg_hash_field(&h, b, 8);
  }
  cg_hash_final(&h, out);
}

// Requires t->mu.
tj_status tune_buckets(tj_tuner *t, const int64_t *key_sizes, int nkey, const tj_arg *args, int nargs,
                       int64_t out[TJ_TUNE_MAX_KEYS]) {
  memset(out, 0, sizeof(int64_t) * TJ_TUNE_MAX_KEYS);
  const char *kn = t->base->name;
  if (key_sizes) {
    if (nkey != t->nkey)
      return api_error(t->ctx, TJ_ERR_INVALID_ARG, "kernel '%s' is tuned on %d key sizes, got %d", kn, t->nkey, nkey);
  } else {
    for (int k = 0; k < t->nkey; k++) {
      int p = t->key_param[k];
      if (p < 0)
        return api_error(t->ctx, TJ_ERR_INVALID_ARG, "key size '%s' is not a parameter of kernel '%s': pass the key "
                         "sizes explicitly", t->key_names[k], kn);
      if (!args || p >= nargs || args[p].kind != TJ_ARG_INT)
        return api_error(t->ctx, TJ_ERR_INVALID_ARG, "key size '%s' needs integer argument %d of kernel '%s'",
                         t->key_names[k], p, kn);
    }
  }
  for (int k = 0; k < t->nkey; k++) {
    int64_t v = key_sizes ? key_sizes[k] : args[t->key_param[k]].u.i;
    out[k] = t->bucket ? t->bucket(t->key_names[k], v, t->bucket_user) : tj_tune_bucket_pow2(v);
  }
  return TJ_OK;
}

void tune_sizes_text(const tj_tuner *t, const int64_t *buckets, StrBuf *sb) {
  if (t->nkey == 0) sb_putc(sb, '-');
  for (int k = 0; k < t->nkey; k++)
    sb_printf(sb, "%s%s=%lld", k ? " " : "", t->key_names[k], (long long)buckets[k]);
}
