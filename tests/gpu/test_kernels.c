/* test_kernels: every interpreter kernel also runs on the GPU, and the two
 * agree: exactly for integers, within a stated tolerance for floats.
 *
 * The harness is generic: a case names a .tj file, its defines, a grid and
 * one spec per kernel parameter. Buffers are filled deterministically, copied
 * to the device, the kernel runs there and in the interpreter on host copies,
 * and then EVERY buffer (inputs too) is compared element by element, so a
 * stray write anywhere shows up. Odd sizes and masked tails are the norm.
 *
 * Exits 77 (skipped) when there is no GPU.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tilejit/tilejit.h"

// Param spec: "buf:N:rand" | "buf:N:zero" | "buf:N:rand:offK" (pointer K
// elements into the allocation, to defeat 16-byte alignment) | "int:V" |
// "float:V".
typedef struct Case {
  const char *name, *file;
  const char *defs[8];
  unsigned grid[3];
  const char *args[16];
  double rtol, atol;  // float tolerance: |gpu - interp| <= atol + rtol * |interp|
} Case;

#define F32_TOL 2e-5, 2e-6
#define F16_TOL 2e-3, 2e-3   // one f16 ulp at the rounding boundary
#define BF16_TOL 1e-2, 1e-2  // one bf16 ulp

static const Case cases[] = {
  { "vector_add", "examples/vector_add.tj", { "BLOCK=1024" }, { 10, 1, 1 },
    { "buf:10007:zero", "buf:10007:rand", "buf:10007:rand", "int:10007" }, F32_TOL },
  { "vector_add_unaligned", "examples/vector_add.tj", { "BLOCK=256" }, { 40, 1, 1 },
    { "buf:10001:zero:off1", "buf:10001:rand:off3", "buf:10001:rand", "int:9999" }, F32_TOL },
  { "softmax_f16", "examples/softmax.tj", { "T=f16", "BLOCK=1024" }, { 37, 1, 1 },
    { "buf:37000:zero", "buf:37000:rand", "int:1000", "int:1000" }, F16_TOL },
  { "softmax_f32_4096", "examples/softmax.tj", { "T=f32", "BLOCK=4096" }, { 8, 1, 1 },
    { "buf:32768:zero", "buf:32768:rand", "int:4096", "int:4096" }, F32_TOL },
  { "softmax_bf16_stride", "examples/softmax.tj", { "T=bf16", "BLOCK=128" }, { 9, 1, 1 },
    { "buf:900:zero", "buf:900:rand", "int:100", "int:77" }, BF16_TOL },
  { "softmax_online", "examples/softmax_online.tj", { "BLOCK=256" }, { 5, 1, 1 },
    { "buf:25000:zero", "buf:25000:rand", "int:5000", "int:4999" }, F32_TOL },
  { "layernorm", "examples/layernorm.tj", { "BLOCK=1024" }, { 13, 1, 1 },
    { "buf:13000:zero", "buf:13000:rand", "buf:1000:rand", "buf:1000:rand", "buf:13:zero",
      "buf:13:zero", "int:1000", "int:1000", "float:1e-5" }, 1e-4, 1e-5 },
  { "matmul_f16", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=32", "BLOCK_N=32", "BLOCK_K=16", "num_warps=4" }, { 4, 3, 1 },
    { "buf:7000:zero", "buf:5000:rand", "buf:3500:rand", "int:100", "int:70", "int:50", "int:50",
      "int:70", "int:70" }, 1e-4, 1e-3 },
  { "matmul_bf16", "examples/matmul.tj",
    { "T=bf16", "BLOCK_M=64", "BLOCK_N=64", "BLOCK_K=32", "num_warps=4" }, { 2, 2, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "int:128", "int:128", "int:128",
      "int:128", "int:128", "int:128" }, 1e-4, 1e-3 },
  { "matmul_f32", "examples/matmul.tj",
    { "T=f32", "BLOCK_M=32", "BLOCK_N=64", "BLOCK_K=16", "num_warps=4" }, { 2, 1, 1 },
    { "buf:4096:zero", "buf:3200:rand", "buf:3200:rand", "int:64", "int:64", "int:50", "int:50",
      "int:64", "int:64" }, 1e-4, 1e-3 },
  { "broadcast2d", "examples/broadcast2d.tj", { "BM=32", "BN=32" }, { 4, 3, 1 },
    { "buf:7000:zero", "buf:100:rand", "buf:70:rand", "buf:70:rand", "int:100", "int:70" }, F32_TOL },
  { "dropout", "examples/dropout.tj", { "BLOCK=1024" }, { 10, 1, 1 },
    { "buf:10000:zero", "buf:10000:rand", "buf:100:rand", "int:10000", "int:100", "float:0.3",
      "int:1234" }, 1e-5, 1e-5 },
  { "argmax", "examples/argmax.tj", { "BLOCK=1024" }, { 9, 1, 1 },
    { "buf:9:zero", "buf:9:zero", "buf:9000:rand", "int:1000", "int:999" }, 0, 0 },
  { "int_ops", "tests/dsl/kernels/int_ops.tj", { "BLOCK=256" }, { 4, 1, 1 },
    { "buf:7000:zero", "buf:2000:zero", "buf:1000:rand", "buf:1000:rand", "buf:1000:rand", "int:1000" }, 0, 0 },
  { "reduce2d", "tests/dsl/kernels/reduce2d.tj", {}, { 4, 1, 1 },
    { "buf:64:zero", "buf:256:zero", "buf:64:zero", "buf:4:zero", "buf:3000:rand", "int:50", "int:60" },
    1e-5, 1e-5 },
  { "control_taken", "tests/dsl/kernels/control.tj", {}, { 3, 1, 1 },
    { "buf:300:zero", "buf:3:zero", "buf:300:rand", "int:300", "int:1", "int:5" }, F32_TOL },
  { "control_not_taken", "tests/dsl/kernels/control.tj", { "DOUBLE=false" }, { 3, 1, 1 },
    { "buf:300:zero", "buf:3:zero", "buf:300:rand", "int:257", "int:0", "int:0" }, F32_TOL },
  { "math_f32", "tests/dsl/kernels/math.tj", { "T=f32" }, { 2, 1, 1 },
    { "buf:10000:zero", "buf:1000:rand", "int:1000" }, 2e-5, 2e-6 },
  { "math_f16", "tests/dsl/kernels/math.tj", { "T=f16" }, { 2, 1, 1 },
    { "buf:10000:zero", "buf:1000:rand", "int:1000" }, F16_TOL },
  { "math_bf16", "tests/dsl/kernels/math.tj", { "T=bf16" }, { 2, 1, 1 },
    { "buf:10000:zero", "buf:1000:rand", "int:1000" }, BF16_TOL },
  { "philox", "tests/dsl/kernels/philox.tj", {}, { 4, 1, 1 },
    { "buf:4000:zero", "buf:1000:zero", "int:1000", "int:81985529216486895" }, 0, 0 },
  { "dtypes", "tests/dsl/kernels/dtypes.tj", {}, { 4, 1, 1 },
    { "buf:256:zero", "buf:256:zero", "buf:256:zero", "buf:256:zero", "buf:256:zero", "buf:1024:zero",
      "buf:256:rand", "buf:256:rand", "buf:256:rand", "buf:256:rand", "buf:8:rand", "buf:256:rand",
      "int:200" }, BF16_TOL },
  // fmod is exact on both sides: bit for bit (NaN for zero divisors).
  { "fmod_f32", "tests/dsl/kernels/fmod.tj", { "T=f32" }, { 4, 1, 1 },
    { "buf:5000:zero", "buf:1000:rand", "buf:1000:rand", "int:1000" }, 0, 0 },
  { "fmod_f16", "tests/dsl/kernels/fmod.tj", { "T=f16" }, { 4, 1, 1 },
    { "buf:5000:zero", "buf:1000:rand", "buf:1000:rand", "int:1000" }, 0, 0 },
  // [ROWS] loads broadcast to tiles, tile-wide / and % offsets, a [BLOCK]
  // reduction stored in its own layout (rows at (r / 7) * s_b + (r % 7) * s_r).
  { "bcast_rows", "tests/dsl/kernels/bcast_rows.tj", { "ROWS=4", "BLOCK=1024" }, { 13, 1, 1 },
    { "buf:50026:zero", "buf:13000:zero", "buf:50000:rand", "buf:50:rand", "int:50", "int:1000", "int:7",
      "int:7000", "int:1000" }, F32_TOL },
  { "bcast_rows_16", "tests/dsl/kernels/bcast_rows.tj", { "ROWS=16", "BLOCK=128" }, { 4, 1, 1 },
    { "buf:5008:zero", "buf:400:zero", "buf:5000:rand", "buf:50:rand", "int:50", "int:100", "int:7",
      "int:700", "int:100" }, F32_TOL },
  // Tensor-core matmul (mma.sync + ldmatrix; cp.async stages where the
  // launch proves 16-byte rows: K and N multiples of 16). Args: c, a, b, M,
  // N, K, stride_am = K, stride_bk = N, stride_cm = N. Tensor cores sum the
  // exact products in another order than the interpreter's k loop: the
  // tolerance is f32 accumulation error over K terms of up to 16.
  { "mma_f16_64", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=64", "BLOCK_N=64", "BLOCK_K=32", "num_warps=4" }, { 1, 1, 1 },
    { "buf:4096:zero", "buf:4096:rand", "buf:4096:rand", "int:64", "int:64", "int:64", "int:64",
      "int:64", "int:64" }, 1e-3, 1e-2 },
  { "mma_bf16_64_one_iter", "examples/matmul.tj",  // one iteration: the second stage is never used
    { "T=bf16", "BLOCK_M=64", "BLOCK_N=64", "BLOCK_K=64", "num_warps=4" }, { 1, 1, 1 },
    { "buf:4096:zero", "buf:4096:rand", "buf:4096:rand", "int:64", "int:64", "int:64", "int:64",
      "int:64", "int:64" }, 1e-3, 1e-2 },
  { "mma_f16_128", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=128", "BLOCK_N=128", "BLOCK_K=32", "num_warps=8" }, { 1, 1, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "int:128", "int:128", "int:128", "int:128",
      "int:128", "int:128" }, 1e-3, 1e-2 },
  { "mma_bf16_128", "examples/matmul.tj",
    { "T=bf16", "BLOCK_M=64", "BLOCK_N=64", "BLOCK_K=32", "num_warps=4" }, { 2, 2, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "int:128", "int:128", "int:128", "int:128",
      "int:128", "int:128" }, 1e-3, 1e-2 },
  { "mma_f16_128_bk16", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=32", "BLOCK_N=64", "BLOCK_K=16", "num_warps=4" }, { 4, 2, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "int:128", "int:128", "int:128", "int:128",
      "int:128", "int:128" }, 1e-3, 1e-2 },
  // 1000: rows of 2000 bytes are only 8-byte aligned; nothing proves it, so
  // operands go through registers (no cp.async); masked tails everywhere.
  { "mma_f16_1000", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=64", "BLOCK_N=64", "BLOCK_K=32", "num_warps=4" }, { 16, 16, 1 },
    { "buf:1000000:zero", "buf:1000000:rand", "buf:1000000:rand", "int:1000", "int:1000", "int:1000",
      "int:1000", "int:1000", "int:1000" }, 1e-3, 1e-1 },
  { "mma_bf16_1000", "examples/matmul.tj",
    { "T=bf16", "BLOCK_M=128", "BLOCK_N=64", "BLOCK_K=32", "num_warps=4" }, { 8, 16, 1 },
    { "buf:1000000:zero", "buf:1000000:rand", "buf:1000000:rand", "int:1000", "int:1000", "int:1000",
      "int:1000", "int:1000", "int:1000" }, 1e-3, 1e-1 },
  // M = 1000 rows masked, both operands pipelined (K = N = 128).
  { "mma_f16_rows1000_pipelined", "examples/matmul.tj",
    { "T=f16", "BLOCK_M=64", "BLOCK_N=128", "BLOCK_K=64", "num_warps=4" }, { 16, 1, 1 },
    { "buf:128000:zero", "buf:128000:rand", "buf:16384:rand", "int:1000", "int:128", "int:128", "int:128",
      "int:128", "int:128" }, 1e-3, 1e-2 },
  // A pipelined with a masked K tail (208 = 6.5 x 32: zero-filled copies),
  // B (N = 1000) through registers, in one loop.
  // Chained dots, the attention inner loop (tests/dsl/kernels/attn_chain.tj):
  // args o, q, k, v, n, scale; q, k, v [n, D]; grid n / BM. wn == 1 splits
  // take p from the accumulator registers; trans(k) is read untransposed and
  // prefetched with v; q's fragments are hoisted. p is rounded to T on both
  // sides, but exp2 differs in the last bits, so a p at a rounding boundary
  // may round the other way: the tolerance is a few T ulps of o.
  { "attn_chain_f16_128x64_nw8", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=128", "BN=64", "D=64", "num_warps=8" }, { 2, 1, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "buf:16384:rand", "int:256", "float:0.25" },
    1e-2, 1e-2 },
  { "attn_chain_bf16_multi", "tests/dsl/kernels/attn_chain.tj",  // k feeds both dots
    { "T=bf16", "BM=64", "BN=64", "D=64", "MULTI=true", "num_warps=4" }, { 4, 1, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "buf:16384:rand", "int:256", "float:0.25" },
    5e-2, 5e-2 },
  { "attn_chain_f16_d32", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=64", "BN=32", "D=32", "num_warps=4" }, { 3, 1, 1 },
    { "buf:6144:zero", "buf:6144:rand", "buf:6144:rand", "buf:6144:rand", "int:192", "float:0.3" },
    1e-2, 1e-2 },
  // k 2 bytes off 16-byte alignment: no cp.async, trans(k) staged as is.
  { "attn_chain_f16_unaligned_k", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=64", "BN=32", "D=32", "num_warps=4" }, { 3, 1, 1 },
    { "buf:6144:zero", "buf:6144:rand", "buf:6144:rand:off1", "buf:6144:rand", "int:192", "float:0.3" },
    1e-2, 1e-2 },
  // 2 x 2 warps (wn = 2): p through shared memory, reductions across warps;
  // BN = 16 gives one n8 tile per warp (ldmatrix .x2 of the untransposed k).
  { "attn_chain_f16_split", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=32", "BN=16", "D=32", "num_warps=4" }, { 4, 1, 1 },
    { "buf:4096:zero", "buf:4096:rand", "buf:4096:rand", "buf:4096:rand", "int:128", "float:0.3" },
    1e-2, 1e-2 },
  { "attn_chain_f16_nw2", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=32", "BN=16", "D=16", "num_warps=2" }, { 4, 1, 1 },
    { "buf:2048:zero", "buf:2048:rand", "buf:2048:rand", "buf:2048:rand", "int:128", "float:0.3" },
    1e-2, 1e-2 },
  { "attn_chain_f16_nw1", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=16", "BN=16", "D=16", "num_warps=1" }, { 4, 1, 1 },
    { "buf:1024:zero", "buf:1024:rand", "buf:1024:rand", "buf:1024:rand", "int:64", "float:0.3" },
    1e-2, 1e-2 },
  // On sm_90a the wn == 1 cases above run their dots on wgmma (D 32 and 64:
  // 64- and 128-byte swizzled B tiles); these add two m64 tiles per
  // warpgroup, N = 128 per wgmma, and the mma.sync path on the same GPU.
  { "attn_chain_f16_256x64_nw8", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=256", "BN=64", "D=64", "num_warps=8" }, { 2, 1, 1 },
    { "buf:32768:zero", "buf:32768:rand", "buf:32768:rand", "buf:32768:rand", "int:512", "float:0.25" },
    1e-2, 1e-2 },
  { "attn_chain_bf16_128x128_nw8", "tests/dsl/kernels/attn_chain.tj",
    { "T=bf16", "BM=128", "BN=128", "D=64", "num_warps=8" }, { 3, 1, 1 },
    { "buf:24576:zero", "buf:24576:rand", "buf:24576:rand", "buf:24576:rand", "int:384", "float:0.25" },
    5e-2, 5e-2 },
  // A runtime if between the dots (CAUSAL: the diagonal key tiles masked),
  // with the score tile and the accumulator of one shape (BN == D): the
  // case that computed wrong rows on wgmma. Such loops stay on mma.sync
  // (mma.c, in_loop_with_if); these compare them with the interpreter.
  { "attn_chain_f16_causal_if_128x64", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=128", "BN=64", "D=64", "CAUSAL=true", "num_warps=8" }, { 4, 1, 1 },
    { "buf:32768:zero", "buf:32768:rand", "buf:32768:rand", "buf:32768:rand", "int:512", "float:0.25" },
    1e-2, 1e-2 },
  { "attn_chain_bf16_causal_if_64x64", "tests/dsl/kernels/attn_chain.tj",
    { "T=bf16", "BM=64", "BN=64", "D=64", "CAUSAL=true", "num_warps=4" }, { 4, 1, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "buf:16384:rand", "int:256", "float:0.25" },
    5e-2, 5e-2 },
  { "attn_chain_f16_128x64_nw8_sm90", "tests/dsl/kernels/attn_chain.tj",
    { "T=f16", "BM=128", "BN=64", "D=64", "num_warps=8", "arch=sm_90" }, { 2, 1, 1 },
    { "buf:16384:zero", "buf:16384:rand", "buf:16384:rand", "buf:16384:rand", "int:256", "float:0.25" },
    1e-2, 1e-2 },
  { "mma_bf16_ktail_mixed", "examples/matmul.tj",
    { "T=bf16", "BLOCK_M=128", "BLOCK_N=128", "BLOCK_K=32", "num_warps=8" }, { 1, 8, 1 },
    { "buf:128000:zero", "buf:26624:rand", "buf:208000:rand", "int:128", "int:1000", "int:208", "int:208",
      "int:1000", "int:1000" }, 1e-3, 1e-2 },
};

// ---------------------------------------------------------------- values

static uint64_t rng_next(uint64_t *s) {  // splitmix64
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static int dtype_size(tj_dtype d) {
  switch (d) {
  case TJ_BOOL: case TJ_I8: case TJ_U8: return 1;
  case TJ_I16: case TJ_U16: case TJ_F16: case TJ_BF16: return 2;
  case TJ_I32: case TJ_U32: case TJ_F32: return 4;
  default: return 8;
  }
}

static double f16_value(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
  return (h & 0x8000) ? -v : v;
}

static double bf16_value(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// Random values in about [-4, 4): built from bits, so no conversion code is
// needed for f16/bf16. Ints in [-1000, 1000], bools 0/1.
static void fill_random(void *p, tj_dtype d, size_t n, uint64_t *s) {
  for (size_t i = 0; i < n; i++) {
    uint64_t r = rng_next(s);
    switch (d) {
    case TJ_F16: ((uint16_t *)p)[i] = (uint16_t)(((r & 1) << 15) | ((13 + (r >> 1) % 4) << 10) | ((r >> 8) & 1023)); break;
    case TJ_BF16: ((uint16_t *)p)[i] = (uint16_t)(((r & 1) << 15) | ((125 + (r >> 1) % 4) << 7) | ((r >> 8) & 127)); break;
    case TJ_F32: ((float *)p)[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 8.0 - 4.0); break;
    case TJ_F64: ((double *)p)[i] = (double)(r >> 11) / 9007199254740992.0 * 8.0 - 4.0; break;
    case TJ_BOOL: ((uint8_t *)p)[i] = (uint8_t)(r & 1); break;
    case TJ_I8: case TJ_U8: ((uint8_t *)p)[i] = (uint8_t)r; break;
    case TJ_I16: case TJ_U16: ((uint16_t *)p)[i] = (uint16_t)r; break;
    case TJ_I32: case TJ_U32: ((int32_t *)p)[i] = (int32_t)(r % 2001) - 1000; break;
    default: ((int64_t *)p)[i] = (int64_t)(r % 2000001) - 1000000; break;
    }
  }
}

static double float_at(const void *p, tj_dtype d, size_t i) {
  switch (d) {
  case TJ_F16: return f16_value(((const uint16_t *)p)[i]);
  case TJ_BF16: return bf16_value(((const uint16_t *)p)[i]);
  case TJ_F32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}

static int is_float(tj_dtype d) { return d == TJ_F16 || d == TJ_BF16 || d == TJ_F32 || d == TJ_F64; }

// ---------------------------------------------------------------- harness

typedef struct Buf {
  size_t n, off, bytes;  // elements, offset in elements, allocation bytes
  tj_dtype dt;
  unsigned char *host, *ref;
  void *dev;
} Buf;

static tj_ctx *ctx;

static void run_case(const Case *c) {
  // "arch=sm_XX" among the defines is the target (default: the device's,
  // sm_90a on an H100/H200, where wn == 1 dots run on wgmma).
  const char *defs[8], *arch = NULL;
  int ndefs = 0;
  for (int i = 0; i < 8 && c->defs[i]; i++) {
    if (!strncmp(c->defs[i], "arch=", 5)) arch = c->defs[i] + 5;
    else defs[ndefs++] = c->defs[i];
  }
  if (arch) {   // a forced target the device cannot run (sm_90 on an A100): nothing to compare
    tj_device_info info;
    ck_assert_int_eq(tj_device_query(ctx, tj_ctx_device(ctx), &info), TJ_OK);
    if (atoi(arch + 3) > atoi(info.arch + 3)) {
      fprintf(stderr, "%s: skipped, %s code does not run on %s\n", c->name, arch, info.arch);
      return;
    }
  }
  tj_compile_opts o = { .path = c->file, .defines = defs, .ndefines = ndefs, .arch = arch };
  tj_kernel *k = NULL;
  tj_status st = tj_kernel_compile(ctx, &o, &k);
  ck_assert_msg(st == TJ_OK, "%s: compile: %s", c->name, tj_ctx_last_error(ctx));
  int np = tj_kernel_num_params(k);
  tj_arg dargs[16], hargs[16];
  Buf bufs[16];
  memset(bufs, 0, sizeof bufs);
  uint64_t seed = 0x5eed;
  for (int i = 0; i < np; i++) {
    tj_param_info pi;
    ck_assert_int_eq(tj_kernel_param(k, i, &pi), TJ_OK);
    const char *spec = c->args[i];
    ck_assert_msg(spec != NULL, "%s: no spec for param %d (%s)", c->name, i, pi.name);
    if (!strncmp(spec, "int:", 4)) {
      dargs[i] = hargs[i] = tj_arg_int(strtoll(spec + 4, NULL, 10));
      continue;
    }
    if (!strncmp(spec, "float:", 6)) {
      dargs[i] = hargs[i] = tj_arg_float(strtod(spec + 6, NULL));
      continue;
    }
    ck_assert_msg(pi.is_ptr, "%s: param %s is not a pointer but spec is %s", c->name, pi.name, spec);
    Buf *b = &bufs[i];
    char mode[16] = "";
    unsigned off = 0;
    int got = sscanf(spec, "buf:%zu:%15[a-z]:off%u", &b->n, mode, &off);
    ck_assert_msg(got >= 2, "%s: bad spec %s", c->name, spec);
    b->dt = pi.dtype;
    b->off = off;
    size_t es = (size_t)dtype_size(pi.dtype);
    b->bytes = (b->n + off) * es;
    b->host = calloc(1, b->bytes);
    b->ref = malloc(b->bytes);
    ck_assert(b->host && b->ref);
    if (!strcmp(mode, "rand")) fill_random(b->host, b->dt, b->n + off, &seed);
    memcpy(b->ref, b->host, b->bytes);
    ck_assert_int_eq(tj_device_malloc(ctx, b->bytes, &b->dev), TJ_OK);
    ck_assert_int_eq(tj_memcpy_htod(ctx, b->dev, b->host, b->bytes), TJ_OK);
    dargs[i] = tj_arg_ptr((char *)b->dev + off * es, b->n * es);
    hargs[i] = tj_arg_ptr(b->ref + off * es, b->n * es);
  }
  st = tj_kernel_interpret(ctx, k, c->grid, hargs, np);
  ck_assert_msg(st == TJ_OK, "%s: interpreter: %s", c->name, tj_ctx_last_error(ctx));
  st = tj_kernel_launch(ctx, k, c->grid, dargs, np, NULL);
  ck_assert_msg(st == TJ_OK, "%s: launch: %s", c->name, tj_ctx_last_error(ctx));
  ck_assert_int_eq(tj_stream_synchronize(ctx, NULL), TJ_OK);

  for (int i = 0; i < np; i++) {
    Buf *b = &bufs[i];
    if (!b->dev) continue;
    ck_assert_int_eq(tj_memcpy_dtoh(ctx, b->host, b->dev, b->bytes), TJ_OK);
    size_t es = (size_t)dtype_size(b->dt);
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t j = 0; j < b->n + b->off; j++) {
      int ok;
      if (is_float(b->dt)) {
        double g = float_at(b->host, b->dt, j), w = float_at(b->ref, b->dt, j);
        if (isnan(w) || isnan(g)) {
          ok = isnan(w) && isnan(g);
        } else if (isinf(w) || isinf(g)) {
          ok = g == w;
        } else {
          double d = fabs(g - w);
          ok = d <= c->atol + c->rtol * fabs(w);
          if (d > worst) worst = d;
        }
      } else {
        ok = !memcmp(b->host + j * es, b->ref + j * es, es);
      }
      if (!ok && bad++ == 0) first = j;
    }
    if (bad) {
      tj_param_info pi;
      tj_kernel_param(k, i, &pi);
      double g = is_float(b->dt) ? float_at(b->host, b->dt, first) : 0;
      double w = is_float(b->dt) ? float_at(b->ref, b->dt, first) : 0;
      long long gi = 0, wi = 0;
      memcpy(&gi, b->host + first * es, es);
      memcpy(&wi, b->ref + first * es, es);
      ck_abort_msg("%s: buffer '%s' (%s): %zu of %zu elements differ; first at %zu: gpu %.9g (bits %llx) "
                   "vs interpreter %.9g (bits %llx)",
                   c->name, pi.name, tj_dtype_name(b->dt), bad, b->n + b->off, first, g, gi, w, wi);
    }
    tj_device_free(ctx, b->dev);
    free(b->host);
    free(b->ref);
  }
  tj_kernel_free(k);
}

START_TEST(gpu_matches_interpreter) { run_case(&cases[_i]); }
END_TEST

static void setup(void) { ck_assert_int_eq(tj_ctx_create(&ctx), TJ_OK); }
static void teardown(void) { tj_ctx_free(ctx); }

int main(void) {
  int gpu = tj_test_gpu_or_skip("test_kernels");
  if (gpu != 0) return gpu;
  Suite *s = suite_create("kernels_gpu");
  TCase *tc = tcase_create("gpu_vs_interp");
  tcase_set_timeout(tc, 300);
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_loop_test(tc, gpu_matches_interpreter, 0, (int)(sizeof cases / sizeof cases[0]));
  suite_add_tcase(s, tc);
  return tj_test_run(s);
}
