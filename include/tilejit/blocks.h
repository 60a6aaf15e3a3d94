/* blocks.h: the tilejit block library: fused softmax, LayerNorm and RMSNorm,
 * and dropout(activation(x + bias)), forward and backward, written in the
 * tilejit language and callable from C.
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
 *
 * Tile configs. On the GPU, softmax (forward and backward) and LayerNorm /
 * RMSNorm (forward and backward) take their tile (rows per program,
 * num_warps) from the autotuner (autotune.h): the first call on a new
 * (op, dtype, variant, bucketed row length, bucketed row count) benchmarks a
 * few candidates around a heuristic choice, on scratch copies of the outputs
 * (the call's inputs and outputs are not disturbed; the call itself then
 * runs as usual), and stores the best on disk beside the compile cache;
 * later calls, and later processes, use the stored best without
 * benchmarking. TILEJIT_AUTOTUNE=0 (or tj_blocks_set_autotune(b, 0)) uses the
 * heuristic alone. A tuning failure falls back to the heuristic (a warning,
 * see TILEJIT_VERBOSE), never an error. The interpreter (kDLCPU) never
 * tunes. Benchmarks should make one call per shape before timing. Two
 * kinds of rows keep the heuristic's config untuned: softmax rows longer
 * than the register limit (the looped online kernels), and norm rows whose
 * power-of-two tile over 4096 would be a quarter or more padding (K =
 * 12288: three 4096-wide chunks in registers).
 */
#ifndef TILEJIT_BLOCKS_H
#define TILEJIT_BLOCKS_H

#include <dlpack/dlpack.h>

#include "autotune.h"
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
// on = 0: the heuristic tile configs from now on; on = 1: tuned ones (the
// default unless TILEJIT_AUTOTUNE=0 was set when b was created).
TJ_API tj_status tj_blocks_set_autotune(tj_blocks *b, int on);
// The autotuner's counters, summed over b's tuners (zeros before any tuned
// call): tunings (keys benchmarked), disk_hits (keys answered from a stored
// result), mem_hits, configs_timed...
TJ_API tj_status tj_blocks_tune_stats(const tj_blocks *b, tj_tune_stats *out);

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

// ---------------------------------------------------------------- attention
//
// Blocksparse attention, one fused flash-style kernel per pass (no S x S
// matrix is ever stored):
//     o = softmax(scale * q k^T + M) v,   lse = logsumexp(scale * q k^T + M) per row
// q, k, v, o: [B, H, S, D] with any non-negative strides (outputs must not
// overlap themselves, each other or the inputs: refused with
// TJ_ERR_INVALID_ARG, judged by address range, so an output packed into one
// buffer with the inputs is refused too), f16, bf16 (the fast path: tensor-core
// dot operands, f32 accumulation) or f32; D = 32, 64 or 128. lse: [B, H, S]
// f32. M is 0 where element (i, j) is live and -inf elsewhere; (i, j) is live
// when the layout block (i / bs, j / bs) is 1 and, with causal, j <= i.
// scale = 0 means 1 / sqrt(D).
//
// Rows with no live element (an empty layout row, or one whose blocks all
// lie above the diagonal under causal) give o = 0 and lse = -inf, and zero
// gradients in the backward pass. S must be a multiple of bs.
//
// The layout is a 0/1 array [heads, nb, nb] with heads = 1 (shared by all
// heads) or H, nb = S / bs, bs in {16, 32, 64, 128}. A tj_attn_layout copies
// it and builds its lookup tables (CSR: per head and query tile, the active
// key tiles split into clean and masked ones; and the transposed lists for
// the dK/dV pass) once per kernel tile config and causal flag, on the first
// call that needs them (GPU: uploaded with synchronous copies), and reuses
// them afterwards. The kernel tiles are independent of bs: tiles larger than
// bs mask the off blocks element by element, smaller ones split a block. An
// all-ones layout (bits = NULL) is dense, exact, memory-efficient attention;
// layouts whose rows are single runs of blocks (dense, causal, sliding
// windows) take a variant whose K/V addresses the compiler can prefetch.
// A layout belongs to the handle that created it (and its context), is used
// read-only by calls (several threads may share it), and is freed with
// tj_attn_layout_free before the context.
//
// Backward: dq, dk, dv from q, k, v, o, lse (the forward's) and dout, with
// the forward's layout, scale and causal flag. Deterministic, no atomics: a
// first kernel writes dq and delta = rowsum(o * dout) (f32 scratch of
// B * H * S floats from the handle, as the norms' backward pass uses: see
// tj_norm_bwd_workspace), a second one dk and dv, each program owning its
// rows. Gradients are computed in f32 and rounded once.
//
// Environment: TILEJIT_ATTN_CONFIG="BM,BN,W;BM,BN,W" overrides the GPU tile
// (query rows, key rows, warps) of the forward and backward passes.

typedef struct tj_attn_layout tj_attn_layout;

// bits: [heads, nb, nb] row-major, nonzero = active; NULL: all ones.
TJ_API tj_status tj_attn_layout_create(tj_blocks *b, const uint8_t *bits, int heads, int nb, int bs,
                                       tj_attn_layout **out);
TJ_API void tj_attn_layout_free(tj_attn_layout *l);
// Active blocks, summed over the layout's heads.
TJ_API int64_t tj_attn_layout_nnz(const tj_attn_layout *l);

TJ_API tj_status tj_attention_fwd(tj_blocks *b, const DLTensor *q, const DLTensor *k, const DLTensor *v,
                                  const tj_attn_layout *layout, double scale, int causal, DLTensor *o,
                                  DLTensor *lse, void *stream);
TJ_API tj_status tj_attention_bwd(tj_blocks *b, const DLTensor *q, const DLTensor *k, const DLTensor *v,
                                  const DLTensor *o, const DLTensor *lse, const DLTensor *dout,
                                  const tj_attn_layout *layout, double scale, int causal, DLTensor *dq,
                                  DLTensor *dk, DLTensor *dv, void *stream);
// Bytes of scratch the backward pass for q's shape needs (B * H * S * 4).
TJ_API tj_status tj_attention_bwd_workspace_size(tj_blocks *b, const DLTensor *q, size_t *bytes);

// ---------------------------------------------------------------- attention patterns
//
// Element masks as xFormers' attention_patterns defines them, and their
// pooled block layouts, computed on the host. Each function writes
//   mask:   u8 [S, S] (query i, key j; 1 = attend), or [heads, S, S] where a
//           pattern is drawn per head; NULL to skip it;
//   layout: u8 [nb, nb] (or [heads, nb, nb]), nb = S / bs: 1 where any element
//           of the bs x bs block is 1 (max pooling, xFormers'
//           pattern_to_layout); NULL to skip it (bs is then ignored).
// Bad parameters give TJ_ERR_INVALID_ARG, with a message on b when b is not
// NULL. 2-D patterns take an H x W grid, S = H * W, token t at row t / W,
// column t % W; below, (r_i, c_i) is query i's position, (r_j, c_j) key j's.
//
//   local_1d     |i - j| <= window / 2             (window odd: self + 2 wings)
//   causal_1d    j <= i
//   random       u(seed, (h * S + i) * S + j) < density, per head h, where
//                u(seed, n) = (splitmix64(seed + (n + 1) * 0x9E3779B97F4A7C15) >> 11) * 2^-53
//                (splitmix64: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
//                z *= 0x94D049BB133111EB; z ^= z >> 31, all mod 2^64).
//                (xFormers drew torch.rand > sparsity; density = 1 - sparsity.)
//                Element-wise random masks pool to nearly dense layouts; for a
//                random *block* layout call it with S = nb and bs = 1 and use the
//                mask as the layout.
//   global       g(i) || g(j), g = the listed global tokens (in [0, S))
//   bigbird      random || local_1d || global
//   longformer   local_1d || global                 (sliding window + global tokens)
//   axial_2d     dim < 0: r_i == r_j || c_i == c_j  (xFormers' axial_2d_pattern);
//                dim 0: c_i == c_j (attend along H); dim 1: r_i == r_j (along W)
//   local_2d     ||(r_i - r_j, c_i - c_j)||_p < distance, in double: p = 1 sum of
//                |.|, p = 2 sqrt of squares, p = inf the max, p = 0 the number of
//                differing coordinates, else (|dr|^p + |dc|^p)^(1/p); p >= 0
//   swin         windows of window x window, shifted: with s = (window - shift) %
//                window, same (floor((r + s) / window), floor((c + s) / window))
//                for i and j (the nearest-anchor rule of xFormers'
//                swin_attention_pattern in closed form); H and W multiples of
//                window, 0 <= shift < window
//   dilated_2d   |r_i - r_j| % k == 0 && |c_i - c_j| % k == 0, k >= 1

TJ_API tj_status tj_pattern_local_1d(tj_blocks *b, int64_t S, int64_t window, int64_t bs, uint8_t *mask,
                                     uint8_t *layout);
TJ_API tj_status tj_pattern_causal_1d(tj_blocks *b, int64_t S, int64_t bs, uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_random(tj_blocks *b, int64_t S, int heads, double density, uint64_t seed,
                                   int64_t bs, uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_global(tj_blocks *b, int64_t S, const int64_t *tokens, int ntokens, int64_t bs,
                                   uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_bigbird(tj_blocks *b, int64_t S, int heads, int64_t window, const int64_t *tokens,
                                    int ntokens, double density, uint64_t seed, int64_t bs, uint8_t *mask,
                                    uint8_t *layout);
TJ_API tj_status tj_pattern_longformer(tj_blocks *b, int64_t S, int64_t window, const int64_t *tokens,
                                       int ntokens, int64_t bs, uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_axial_2d(tj_blocks *b, int64_t H, int64_t W, int dim, int64_t bs, uint8_t *mask,
                                     uint8_t *layout);
TJ_API tj_status tj_pattern_local_2d(tj_blocks *b, int64_t H, int64_t W, double distance, double p,
                                     int64_t bs, uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_swin(tj_blocks *b, int64_t H, int64_t W, int64_t window, int64_t shift,
                                 int64_t bs, uint8_t *mask, uint8_t *layout);
TJ_API tj_status tj_pattern_dilated_2d(tj_blocks *b, int64_t H, int64_t W, int64_t k, int64_t bs,
                                       uint8_t *mask, uint8_t *layout);
// The pooled layout [heads, S / bs, S / bs] of an element mask [heads, S, S].
TJ_API tj_status tj_pattern_to_layout(tj_blocks *b, const uint8_t *mask, int heads, int64_t S, int64_t bs,
                                      uint8_t *layout);

#ifdef __cplusplus
}
#endif
#endif
