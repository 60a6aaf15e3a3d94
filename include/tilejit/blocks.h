/* blocks.h: the tilejit block library: fused softmax, LayerNorm and RMSNorm,
 * and dropout(activation(x + bias)), forward and backward, written in the tilejit language and callable from C.
 *
 * Tensors are DLPack DLTensors (<dlpack/dlpack.h>, v0.6) with explicit
 * strides (NULL strides mean compact row-major). dtype f16, bf16 or f32; the
 * reduction runs over the last dimension, which must have stride 1; the
 * leading dimensions are flattened into rows (they may have any
 * non-overlapping strides as long as the dimensions before the
 * second-to-last one collapse into one stride, e.g. a [B, M, K] view with
 * padded rows). Values are computed in f32.
 *
 * Where the kernels run follows the tensors: on kDLCPU they run through the
 * tilejit interpreter (reference semantics, slow, used by CI), on kDLCUDA
 * (or kDLCUDAManaged) they are launched on the GPU on `stream` (a CUstream
 * as void*, NULL = the legacy default stream), asynchronously.
 *
 * Every entry point validates every argument before it launches anything;
 * on failure it returns a status and the message is tj_ctx_last_error() of
 * the block handle's context (also tj_blocks_last_error()). A tensor with no
 * elements makes the call a no-op (after the checks of shapes and dtypes).
 *
 * Kernels are compiled on first use, once per specialisation (variant,
 * dtype, tile config) and handle; a tj_blocks handle is safe to use from
 * several threads.
 */
#ifndef TILEJIT_BLOCKS_H
#define TILEJIT_BLOCKS_H

#include <dlpack/dlpack.h>

#include "tilejit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tj_blocks tj_blocks;

// A block handle uses ctx (which must outlive it) for compiling, launching
// and error messages.
TJ_API tj_status tj_blocks_create(tj_ctx *ctx, tj_blocks **out);
TJ_API void tj_blocks_free(tj_blocks *b);
TJ_API tj_ctx *tj_blocks_ctx(const tj_blocks *b);
TJ_API const char *tj_blocks_last_error(const tj_blocks *b);
// Number of kernel specialisations compiled and kept by b so far.
TJ_API int tj_blocks_num_kernels(const tj_blocks *b);

// ---------------------------------------------------------------- softmax

typedef struct tj_softmax_opts {
  int log;               // 1: log-softmax
  int causal;            // 1: element (i, j) of the last two dims is masked when j > i
  const DLTensor *mask;  // optional additive mask, f16/bf16/f32, broadcast over the
                         // batch: [seq, K] with seq = x.shape[-2] (row i of the mask
                         // goes with position i of the sequence), or [K] / [1, K]
                         // for every row; extra leading dims of size 1 allowed
} tj_softmax_opts;

// y = softmax(x) (or log-softmax) along the last dimension. opts may be NULL
// (plain softmax). y may be x (in place).
TJ_API tj_status tj_softmax_fwd(tj_blocks *b, const DLTensor *x, DLTensor *y,
                                const tj_softmax_opts *opts, void *stream);
// dx from the forward output y and the gradient dy, with the forward's log
// and causal options (the mask does not enter the backward pass). dx may be
// dy.
TJ_API tj_status tj_softmax_bwd(tj_blocks *b, const DLTensor *y, const DLTensor *dy,
                                DLTensor *dx, const tj_softmax_opts *opts, void *stream);

// ---------------------------------------------------------------- normalisation
//
// LayerNorm: y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps)
// (biased variance). RMSNorm: y = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps).
// w and b have shape [K] and x's dtype, and may be NULL. mean and rstd are
// f32, contiguous, of shape x.shape[:-1] (or [M], M the number of rows); the
// forward pass writes them and the backward pass reads them.
//
// The backward pass is deterministic (bit-identical run to run): dw and db
// are reduced in two stages through an f32 scratch buffer, without atomics.
// The scratch comes from the handle (grown as needed, on the GPU through
// tj_device_malloc, which synchronises); callers that run backward passes
// concurrently on several streams with one handle pass their own through
// tj_norm_bwd_workspace instead. dw and db may be NULL to skip them.

TJ_API tj_status tj_layernorm_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *w,
                                  const DLTensor *bias, double eps, DLTensor *y, DLTensor *mean,
                                  DLTensor *rstd, void *stream);
TJ_API tj_status tj_layernorm_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x,
                                  const DLTensor *w, const DLTensor *mean, const DLTensor *rstd,
                                  DLTensor *dx, DLTensor *dw, DLTensor *db, void *stream);
TJ_API tj_status tj_rmsnorm_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *w, double eps,
                                DLTensor *y, DLTensor *rstd, void *stream);
TJ_API tj_status tj_rmsnorm_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x,
                                const DLTensor *w, const DLTensor *rstd, DLTensor *dx,
                                DLTensor *dw, void *stream);

// Bytes of scratch the backward pass of x (GPU or CPU) needs; 0 when none.
TJ_API tj_status tj_norm_bwd_workspace_size(tj_blocks *b, const DLTensor *x, size_t *bytes);
// Uses `workspace` (device memory for GPU tensors, at least the size above,
// caller-owned, 16-byte aligned) for the following backward calls on b;
// NULL returns to the handle's own scratch.
TJ_API tj_status tj_norm_bwd_workspace(tj_blocks *b, void *workspace, size_t bytes);

// ---------------------------------------------------------------- dropout
//
// Fused y = dropout(act(x + bias), p) and its backward pass (xFormers'
// FusedDropoutBias). x: [..., K] f16/bf16/f32, leading dimensions flattened
// into rows as above; bias: optional [K] of x's dtype, added to every row.
// Values are computed in f32:
//     v = x + bias,   a = act(v),   y = keep ? a * scale : 0,
// scale = f32(1 / (1 - p)). A dropped element is exactly 0 (even where a is
// inf or NaN). With training = 0, or p = 0, y = act(x + bias) and no random
// number is drawn at all.
//
// The mask. Element i, i = r * K + c its row-major index in the logical
// tensor (flattened row r, column c: strides and the kernels' tiling do not
// enter), is kept when u_i >= p, where
//     ctr_i = offset + floor(i / 4)                 (64-bit, wrapping mod 2^64)
//     w_i   = Philox-4x32-10(key = (lo32(seed), hi32(seed)),
//                            counter = (lo32(ctr_i), hi32(ctr_i), 0, 0)) word i % 4
//     u_i   = (w_i >> 8) * 2^-24                    (24 random bits, in [0, 1))
// (computed as (w_i >> 8) >= ceil(p * 2^24), which is the same test). One
// Philox call thus feeds four consecutive elements. The mask depends on
// (seed, offset, i) alone: it is the same on the GPU and in the interpreter,
// for every tile config, and in the backward pass, which regenerates it (no
// mask is stored). A call uses the counters [offset, offset +
// tj_dropout_counters(numel)); calls whose ranges do not overlap draw
// independent masks, so advance offset by that count after each call (as
// PyTorch advances its Philox offset) or change the seed. Note that offset + 1
// is the same stream shifted by four elements, not a new one.
//
// Activations, with the derivative the backward pass uses (at a kink, the
// left one: relu'(0) = 0 as in torch). Selects keep a NaN input NaN.
//   none          x                                         1
//   relu          max(x, 0)                                 x > 0
//   leaky_relu    x > 0 ? x : a x       (a = act_a, slope)  x > 0 ? 1 : a
//   gelu          x/2 (1 + erf(x / sqrt 2))                 Phi(x) + x phi(x)
//   gelu_tanh     x/2 (1 + tanh(k (x + 0.044715 x^3))),     (1 + t)/2 + x/2 (1 - t^2) k (1 + 0.134145 x^2)
//                 k = sqrt(2 / pi), t = tanh(...)
//   squared_relu  max(x, 0)^2                               2 max(x, 0)
//   smelu         0 (x <= -b); (x + b)^2 / (4 b) (|x| < b);  0; (x + b) / (2 b); 1
//                 x (x >= b)           (b = act_a > 0, beta)
//   star_relu     s max(x, 0)^2 + c    (s = act_a, c = act_b) 2 s max(x, 0)
// (Phi, phi: the standard normal cdf and density; smelu divides by 4b as a
// multiplication by f32(1 / (4b)).)
//
// Backward: dx = dy * keep * scale * act'(x + bias) (the mask regenerated
// from seed and offset, act' recomputed from x and bias), and optionally
// dbias[k] = sum over rows of dx[..., k], summed in f32 before dx is rounded.
// dbias is deterministic, without atomics: each program sums its rows into
// an f32 scratch row, and a second kernel adds the rows in a fixed order, so
// a given shape and device always give the same bits. The scratch comes from
// the handle like the norms' (tj_norm_bwd_workspace's workspace serves both;
// size it with tj_dropout_bwd_workspace_size).
//
// y may be x, and dx may be dy (in place). Limits: at most 2^31 - 2^20 rows.

typedef enum tj_activation {
  TJ_ACT_NONE = 0,
  TJ_ACT_RELU,
  TJ_ACT_LEAKY_RELU,     // act_a: slope
  TJ_ACT_GELU,           // exact (erf)
  TJ_ACT_GELU_TANH,      // tanh approximation
  TJ_ACT_SQUARED_RELU,
  TJ_ACT_SMELU,          // act_a: beta > 0
  TJ_ACT_STAR_RELU,      // act_a: scale, act_b: bias
  TJ_ACT_COUNT
} tj_activation;

typedef struct tj_dropout_opts {
  double p;              // probability of dropping an element, in [0, 1)
  int training;          // 0: no dropout, y = act(x + bias) (a zeroed struct is that)
  uint64_t seed;         // Philox key
  uint64_t offset;       // first Philox counter of this call
  tj_activation act;
  double act_a, act_b;   // activation parameters (see the table); finite
} tj_dropout_opts;

// "gelu_tanh"; "?" when out of range.
TJ_API const char *tj_activation_name(tj_activation a);
// Philox counters one call on numel elements uses: ceil(numel / 4) (0 for
// numel <= 0). Advance the offset by it to get a fresh mask.
TJ_API uint64_t tj_dropout_counters(int64_t numel);

// y = dropout(act(x + bias), p). bias may be NULL.
TJ_API tj_status tj_dropout_fwd(tj_blocks *b, const DLTensor *x, const DLTensor *bias, DLTensor *y,
                                const tj_dropout_opts *opts, void *stream);
// dx (and dbias, when not NULL: [K], x's dtype) from dy, with the forward
// call's x, bias and opts. x may be NULL when act is none (it is not read).
TJ_API tj_status tj_dropout_bwd(tj_blocks *b, const DLTensor *dy, const DLTensor *x,
                                const DLTensor *bias, DLTensor *dx, DLTensor *dbias,
                                const tj_dropout_opts *opts, void *stream);
// Bytes of scratch a backward pass with dbias over a tensor shaped like x
// needs; 0 when none.
TJ_API tj_status tj_dropout_bwd_workspace_size(tj_blocks *b, const DLTensor *x, size_t *bytes);

// ---------------------------------------------------------------- registry
//
// Every block is also listed by name, for tools and bindings: a descriptor
// names its tensors (in call order) and scalars, and tj_block_call runs it.

typedef enum tj_block_role {
  TJ_ROLE_IN = 1,        // read
  TJ_ROLE_OUT = 2,       // written
} tj_block_role;

typedef struct tj_block_tensor {
  const char *name;      // "x", "y", "mask"...
  int role;              // tj_block_role
  int optional;          // 1: may be NULL
  const char *doc;       // one line: shape and dtype
} tj_block_tensor;

typedef struct tj_block_scalar {
  const char *name;      // "log", "causal", "eps"
  double default_value;
  const char *doc;
} tj_block_scalar;

typedef struct tj_block_desc {
  const char *name;          // "softmax", "softmax_bwd", "layernorm", ...
  const char *description;
  int ntensors;
  const tj_block_tensor *tensors;
  int nscalars;
  const tj_block_scalar *scalars;
} tj_block_desc;

TJ_API int tj_block_count(void);
TJ_API const tj_block_desc *tj_block_at(int i);           // NULL when out of range
TJ_API const tj_block_desc *tj_block_find(const char *name);  // NULL when unknown
// Runs block d: tensors[i] follows d->tensors[i] (NULL for an absent
// optional one), scalars[i] d->scalars[i] (scalars may be NULL when
// nscalars is 0: the defaults are used). ntensors must equal d->ntensors and
// nscalars be 0 or d->nscalars.
TJ_API tj_status tj_block_call(tj_blocks *b, const tj_block_desc *d, DLTensor *const *tensors,
                               int ntensors, const double *scalars, int nscalars, void *stream);

#ifdef __cplusplus
}
#endif
#endif
