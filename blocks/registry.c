/* registry.c: the blocks listed by name (tj_block_find("softmax")), for
 * tools and bindings that discover blocks at run time, as xFormers' registry
 * did.
 *
 * requires: the typed entry points (softmax.c, norm.c, dropout.c, attention.c); produces: read-only
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

// Scalars p, training, seed, offset, act, act_a, act_b. seed and offset
// arrive as doubles: integers in [0, 2^53] pass exactly, anything else is
// refused rather than rounded.
static tj_status drop_opts(tj_blocks *b, const char *name, const double *s, tj_dropout_opts *o) {
  memset(o, 0, sizeof *o);
  for (int i = 2; i < 5; i++)
    if (s[i] < 0 || s[i] > 9007199254740992.0 || s[i] != floor(s[i]))
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: scalar '%s' must be an integer in [0, 2^53], got %g", name,
                       i == 2 ? "seed" : i == 3 ? "offset" : "act", s[i]);
  o->p = s[0];
  o->training = s[1] != 0.0;
  o->seed = (uint64_t)s[2];
  o->offset = (uint64_t)s[3];
  o->act = s[4] < TJ_ACT_COUNT ? (tj_activation)s[4] : TJ_ACT_COUNT;
  o->act_a = s[5];
  o->act_b = s[6];
  return TJ_OK;
}

static tj_status call_dropout(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  tj_dropout_opts o;
  tj_status st = drop_opts(b, "dropout", s, &o);
  return st != TJ_OK ? st : tj_dropout_fwd(b, t[0], t[1], t[2], &o, stream);
}

static tj_status call_dropout_bwd(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  tj_dropout_opts o;
  tj_status st = drop_opts(b, "dropout_bwd", s, &o);
  return st != TJ_OK ? st : tj_dropout_bwd(b, t[0], t[1], t[2], t[3], t[4], &o, stream);
}

static tj_status call_attention(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  return blk_attn_call(b, false, t, s, stream);
}

static tj_status call_attention_bwd(tj_blocks *b, DLTensor *const *t, const double *s, void *stream) {
  return blk_attn_call(b, true, t, s, stream);
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
static const tj_block_tensor do_t[] = {
  { "x", IN, 0, ROWS_DOC },
  { "bias", IN, 1, "[K], x's dtype" },
  { "y", OUT, 0, "x's shape and dtype; may be x" },
};
static const tj_block_tensor dob_t[] = {
  { "dy", IN, 0, ROWS_DOC },
  { "x", IN, 1, "the forward input (not read when act is none)" },
  { "bias", IN, 1, "[K], the forward bias" },
  { "dx", OUT, 0, "dy's shape and dtype; may be dy" },
  { "dbias", OUT, 1, "[K], x's dtype: the sum of dx over rows (deterministic)" },
};
static const tj_block_scalar do_s[] = {
  { "p", 0.5, "probability of dropping an element, in [0, 1)" },
  { "training", 1.0, "0: no dropout, y = act(x + bias)" },
  { "seed", 0.0, "Philox key (an integer <= 2^53 here)" },
  { "offset", 0.0, "first Philox counter (an integer <= 2^53 here)" },
  { "act", 0.0, "tj_activation: 0 none, 1 relu, 2 leaky_relu, 3 gelu, 4 gelu_tanh, 5 squared_relu, "
    "6 smelu, 7 star_relu" },
  { "act_a", 0.0, "leaky_relu slope, smelu beta (> 0) or star_relu scale" },
  { "act_b", 0.0, "star_relu bias" },
};
#define QKV_DOC "[B, H, S, D] f16/bf16/f32, D 32/64/128, any strides"
#define LAYOUT_DOC "optional u8 host [heads, nb, nb] 0/1 block layout, heads 1 or H, bs = S / nb (NULL: dense)"
static const tj_block_tensor at_t[] = {
  { "q", IN, 0, QKV_DOC },
  { "k", IN, 0, QKV_DOC },
  { "v", IN, 0, QKV_DOC },
  { "layout", IN, 1, LAYOUT_DOC },
  { "o", OUT, 0, "q's shape and dtype" },
  { "lse", OUT, 0, "[B, H, S] f32 logsumexp (-inf for rows with nothing live)" },
};
static const tj_block_tensor atb_t[] = {
  { "q", IN, 0, QKV_DOC },
  { "k", IN, 0, QKV_DOC },
  { "v", IN, 0, QKV_DOC },
  { "o", IN, 0, "the forward output" },
  { "lse", IN, 0, "the forward lse" },
  { "dout", IN, 0, "q's shape and dtype" },
  { "layout", IN, 1, LAYOUT_DOC },
  { "dq", OUT, 0, "q's shape and dtype" },
  { "dk", OUT, 0, "q's shape and dtype" },
  { "dv", OUT, 0, "q's shape and dtype" },
};
static const tj_block_scalar at_s[] = {
  { "scale", 0.0, "score scale; 0: 1 / sqrt(D)" },
  { "causal", 0.0, "1: also mask j > i" },
};

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { MAX_SCALARS = 8 };   // the most scalars an entry takes (tj_block_call copies them)
_Static_assert(N(do_s) <= MAX_SCALARS, "dropout's scalars fit tj_block_call's copy");

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
  { { "dropout", "y = dropout(act(x + bias), p) with a Philox mask keyed by (seed, offset, element index)",
      N(do_t), do_t, N(do_s), do_s }, call_dropout },
  { { "dropout_bwd", "dx (and dbias) of dropout(act(x + bias)), regenerating the mask", N(dob_t), dob_t,
      N(do_s), do_s }, call_dropout_bwd },
  { { "attention", "blocksparse flash attention o = softmax(scale q k^T + mask) v; saves lse (the layout "
      "tensor becomes a temporary tj_attn_layout: the C API reuses one)", N(at_t), at_t, N(at_s), at_s },
    call_attention },
  { { "attention_bwd", "dq, dk, dv of blocksparse attention (deterministic)", N(atb_t), atb_t, N(at_s), at_s },
    call_attention_bwd },
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
  double s[MAX_SCALARS] = { 0 };
  for (int i = 0; i < d->nscalars && i < MAX_SCALARS; i++) {
    s[i] = nscalars ? scalars[i] : d->scalars[i].default_value;
    if (!isfinite(s[i]))
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: scalar '%s' is not finite", d->name, d->scalars[i].name);
  }
  for (int i = 0; i < ntensors; i++)
    if (!tensors[i] && !d->tensors[i].optional)
      return blk_error(b, TJ_ERR_INVALID_ARG, "%s: tensor '%s' is required", d->name, d->tensors[i].name);
  return e->call(b, tensors, s, stream);
}
