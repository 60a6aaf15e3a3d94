/* registry.c: the blocks listed by name (tj_block_find("softmax")), for
 * tools and bindings that discover blocks at run time, as xFormers' registry
 * did.
 *
 * requires: the typed entry points (softmax.c, norm.c); produces: read-only
 * descriptors and tj_block_call, which maps a descriptor's tensor and scalar
 * lists onto the typed call. The table is const: nothing here is mutable.
 */
#include "blocks_int.h"

#include <math.h>
#include <string.h>

typedef tj_status (*BlkCall)(tj_blocks *b, DLTensor *const *t, const double *s, void *stream);

typedef struct BlkEntry {
  tj_block_desc desc;
  BlkCall call;
} BlkEntry;

static tj_softmax_opts sm_opts(DLTensor *mask, const double *s) {
  tj_softmax_opts o;
  memset(&o, 0, sizeof o);
  o.log = s[0] != 0.0;
  o.causal = s[1] != 0.0;
  o.mask = mask;
  return o;
}

static tj_status call_softmax(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  tj_softmax_opts o = sm_opts(t[2], s);
  return tj_softmax_fwd(b, t[0], t[1], &o, stream);
}

static tj_status call_softmax_bwd(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  tj_softmax_opts o = sm_opts(NULL, s);
  return tj_softmax_bwd(b, t[0], t[1], t[2], &o, stream);
}

static tj_status call_layernorm(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  return tj_layernorm_fwd(b, t[0], t[1], t[2], s[0], t[3], t[4], t[5], stream);
}

static tj_status call_layernorm_bwd(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  (void)s;
  return tj_layernorm_bwd(b, t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], stream);
}

static tj_status call_rmsnorm(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  return tj_rmsnorm_fwd(b, t[0], t[1], s[0], t[2], t[3], stream);
}

static tj_status call_rmsnorm_bwd(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  (void)s;
  return tj_rmsnorm_bwd(b, t[0], t[1], t[2], t[3], t[4], t[5], stream);
}

#define IN TJ_ROLE_IN
#define OUT TJ_ROLE_OUT
#define ROWS_DOC "[..., K] f16/bf16/f32"

static const tj_block_tensor sm_t[] = {
  { "x", IN, 0, ROWS_DOC },
  { "y", OUT, 0, "x's shape and dtype; may be x" },
  { "mask", IN, 1, "[seq, K] or [K] additive mask, f16/bf16/f32, broadcast over the batch" },
};
static const tj_block_tensor smb_t[] = {
  { "y", IN, 0, "forward output, " ROWS_DOC },
  { "dy", IN, 0, "y's shape and dtype" },
  { "dx", OUT, 0, "y's shape and dtype; may be dy" },
};
static const tj_block_scalar sm_s[] = {
  { "log", 0.0, "1: log-softmax" },
  { "causal", 0.0, "1: mask j > i within the last two dimensions" },
};
static const tj_block_tensor ln_t[] = {
  { "x", IN, 0, ROWS_DOC },
  { "w", IN, 1, "[K], x's dtype" },
  { "b", IN, 1, "[K], x's dtype" },
  { "y", OUT, 0, "x's shape and dtype" },
  { "mean", OUT, 0, "x.shape[:-1] f32, contiguous" },
  { "rstd", OUT, 0, "x.shape[:-1] f32, contiguous" },
};
static const tj_block_tensor lnb_t[] = {
  { "dy", IN, 0, "x's shape and dtype" },
  { "x", IN, 0, ROWS_DOC },
  { "w", IN, 1, "[K], x's dtype" },
  { "mean", IN, 0, "from the forward pass" },
  { "rstd", IN, 0, "from the forward pass" },
  { "dx", OUT, 0, "x's shape and dtype" },
  { "dw", OUT, 1, "[K], x's dtype" },
  { "db", OUT, 1, "[K], x's dtype" },
};
static const tj_block_tensor rms_t[] = {
  { "x", IN, 0, ROWS_DOC },
  { "w", IN, 1, "[K], x's dtype" },
  { "y", OUT, 0, "x's shape and dtype" },
  { "rstd", OUT, 0, "x.shape[:-1] f32, contiguous" },
};
static const tj_block_tensor rmsb_t[] = {
  { "dy", IN, 0, "x's shape and dtype" },
  { "x", IN, 0, ROWS_DOC },
  { "w", IN, 1, "[K], x's dtype" },
  { "rstd", IN, 0, "from the forward pass" },
  { "dx", OUT, 0, "x's shape and dtype" },
  { "dw", OUT, 1, "[K], x's dtype" },
};
static const tj_block_scalar eps_s[] = { { "eps", 1e-5, "added to the variance" } };

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const BlkEntry entries[] = {
  { { "softmax", "softmax or log-softmax over the last dimension, optionally causal and with an "
      "additive mask", N(sm_t), sm_t, N(sm_s), sm_s }, call_softmax },
  { { "softmax_bwd", "gradient of softmax / log-softmax from its output y and dy", N(smb_t), smb_t,
      N(sm_s), sm_s }, call_softmax_bwd },
  { { "layernorm", "y = (x - mean) * rstd * w + b over the last dimension; saves mean and rstd",
      N(ln_t), ln_t, N(eps_s), eps_s }, call_layernorm },
  { { "layernorm_bwd", "dx, dw, db of layernorm (deterministic)", N(lnb_t), lnb_t, 0, NULL },
    call_layernorm_bwd },
  { { "rmsnorm", "y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps); saves rstd", N(rms_t), rms_t,
      N(eps_s), eps_s }, call_rmsnorm },
  { { "rmsnorm_bwd", "dx, dw of rmsnorm (deterministic)", N(rmsb_t), rmsb_t, 0, NULL },
    call_rmsnorm_bwd },
};

int tj_block_count(void) { return N(entries); }

const tj_block_desc *tj_block_at(int i) {
  return i >= 0 && i < N(entries) ? &entries[i].desc : NULL;
}

const tj_block_desc *tj_block_find(const char *name) {
  if (!name) return NULL;
  for (int i = 0; i < N(entries); i++)
    if (!strcmp(entries[i].desc.name, name)) return &entries[i].desc;
  return NULL;
}

tj_status tj_block_call(tj_blocks *b, const tj_block_desc *d, DLTensor *const *tensors, int ntensors,
                        const double *scalars, int nscalars, void *stream) {
  if (!b) return TJ_ERR_INVALID_ARG;
  const BlkEntry *e = NULL;
  for (int i = 0; i < N(entries); i++)
    if (d == &entries[i].desc) e = &entries[i];
  if (!e) return blk_error(b, TJ_ERR_INVALID_ARG, "tj_block_call: not a block descriptor (use tj_block_find)");
  if (ntensors != d->ntensors)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s takes %d tensors, got %d", d->name, d->ntensors, ntensors);
  if (ntensors > 0 && !tensors)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: tensors is NULL", d->name);
  if (nscalars != 0 && nscalars != d->nscalars)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s takes %d scalars (or 0 for the defaults), got %d", d->name,
                     d->nscalars, nscalars);
  if (nscalars > 0 && !scalars)
    return blk_error(b, TJ_ERR_INVALID_ARG, "%s: scalars is NULL", d->name);
  double s[4] = { 0 };
  for (int i = 0; i < d->nscalars && i < 4; i++) {
    s[i] = nscalars ? scalars[i] : d->scalars[i].default_value;
    if (!isfinite(s[i]))
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: scalar '%s' is not finite", d->name, d->scalars[i].name);
  }
  for (int i = 0; i < ntensors; i++)
    if (!tensors[i] && !d->tensors[i].optional)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: tensor '%s' is required", d->name, d->tensors[i].name);
  return e->call(b, tensors, s, stream);
}
