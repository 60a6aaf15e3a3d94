/* blocks_int.h: internal exports of blocks/ (the block library behind
 * include/tilejit/blocks.h).
 *
 * The data path of one call: the entry (softmax.c, norm.c) turns each
 * DLTensor into a BlkView (tensor.c: validation, rows x K with strides),
 * checks the views against each other and the device, picks a tile config
 * (tuning.c: blk_choose_config, the autotuner on the GPU around core.c's
 * heuristic blk_pick_config), gets
 * the compiled specialisation from the handle's cache (blk_kernel) and runs
 * it on the CPU interpreter or the GPU (blk_run). Nothing is launched until
 * every check of the call has passed.
 */
#ifndef TJ_BLOCKS_INT_H
#define TJ_BLOCKS_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tilejit/blocks.h"
#include "../dsl/dsl.h"  // tj_malloc and friends: every allocation goes through the hook

// The .tj sources, embedded at build time (blocks.cmake -> blocks_sources.c).
extern const char blk_src_softmax[];
extern const size_t blk_src_softmax_len;
extern const char blk_src_layernorm[];
extern const size_t blk_src_layernorm_len;
extern const char blk_src_dropout[];
extern const size_t blk_src_dropout_len;
extern const char blk_src_attention[];
extern const size_t blk_src_attention_len;

// The tile config of the dropout kernels (dropout.c, dropout.tj).
typedef struct BlkDropCfg {
  int block;          // columns per tile: a power of two, a multiple of vec
  int rows;           // rows per tile: a power of two
  int vec;            // consecutive elements per thread run: 4 or 8
  int num_warps;
  bool per_element;   // the per-element counter formula even when K % 4 == 0
} BlkDropCfg;

typedef struct BlkKernel {
  char *key;          // "file|kernel|defines|nw|gpu"
  tj_kernel *k;
} BlkKernel;

typedef struct BlkTuner BlkTuner;   // tuning.c
typedef struct BlkTuneReq BlkTuneReq;   // tuning.c

// A device allocation blk_check_device_ptr found to be device or managed
// memory: [base, end). core.c explains why a hit may be trusted.
typedef struct BlkRange {
  uintptr_t base, end;
} BlkRange;
enum { BLK_RANGES = 16 };

// What a block call's kernel choice depends on (besides the handle state
// in BlkMemo): the entry's kernel (a string constant, compared by address),
// its variant packed by the entry (dtypes, options, target) and the sizes.
typedef struct BlkMemoKey {
  const char *kernel;
  uint64_t variant;
  int64_t M, K, rows_cap;
} BlkMemoKey;

// The handle state a remembered choice was made under.
typedef struct BlkMemoStamp {
  bool autotune;
  uint32_t gen;           // tj_blocks.memo_gen
} BlkMemoStamp;

typedef struct BlkConfig {
  bool looped;      // row too long for registers: the online kernel
  bool split3;      // the row as three BLOCK-wide chunks, 2 * BLOCK < K <= 3 * BLOCK (the norms)
  int block;        // columns per tile (power of two)
  int rows;         // rows per program (power of two)
  int num_warps;
} BlkConfig;

typedef struct BlkMemo {
  BlkMemoKey key;
  BlkMemoStamp stamp;
  tj_kernel *k;           // owned by the handle's kernel table
  BlkConfig c;
} BlkMemo;
// Every row block remembers its choices here (softmax, the norms, dropout:
// up to two entries a call), so a model's few shapes must all fit: a
// workload that cycles through more keys than this misses on every call.
enum { BLK_MEMOS = 32 };

// Answers blk_check_device_ptr's question about p without the driver (test
// hook): *memtype a CU_MEMORYTYPE_* value (0: not CUDA memory), *base and
// *size the allocation (size 0: unknown). A status other than TJ_OK is a
// failed query (message set).
typedef tj_status (*BlkPtrQuery)(tj_blocks *b, const void *p, unsigned *memtype, uintptr_t *base,
                                 size_t *size, void *user);

struct tj_blocks {
  tj_ctx *ctx;
  pthread_mutex_t mu;     // guards everything below
  BlkKernel *kernels;
  int nkernels, cap;
  int sm_count;           // 0 until queried
  bool wgmma;             // the device's arch is sm_90a (set with sm_count)
  void *scratch;          // device scratch for the norm backward pass
  size_t scratch_bytes;
  void *user_ws;          // tj_norm_bwd_workspace
  size_t user_ws_bytes;
  int64_t reg_limit;      // largest row kept in registers (elements); tests lower it
  BlkDropCfg drop_cfg;    // blk_dropout_force_config (block 0: the heuristic)
  bool autotune;          // GPU tile configs from the autotuner (TILEJIT_AUTOTUNE, tj_blocks_set_autotune)
  BlkTuner **tuners;      // one per (kernel, fixed defines); tuning.c
  int ntuners, tuners_cap;
  // The host-cost caches of a steady-state call (core.c): allocations known
  // to be device memory, and the last kernel choices. Fixed arrays: a call
  // allocates nothing.
  BlkRange ranges[BLK_RANGES];
  int nranges, range_next;
  uint64_t ptr_queries;   // driver queries made by blk_check_device_ptr (tests, benchmarks)
  BlkPtrQuery ptr_query;  // NULL: the driver
  void *ptr_query_user;
  BlkMemo memos[BLK_MEMOS];
  int nmemos, memo_next;
  uint32_t memo_gen;      // bumped when state a choice depends on changes (reg_limit, the SM count, drop_cfg)
};

// ---------------------------------------------------------------- tensor.c

enum { BLK_F16 = 1u << 0, BLK_BF16 = 1u << 1, BLK_F32 = 1u << 2, BLK_FLOATS = 7u };

// A tensor seen as M rows of K elements: row r starts at
// (r / seq) * s_b + (r % seq) * s_r elements from data.
typedef struct BlkView {
  const char *name;
  const DLTensor *t;
  void *data;           // t->data + byte_offset (NULL when empty)
  tj_dtype dtype;
  int esize;
  int64_t M, K, seq, s_b, s_r;
  size_t nbytes;        // bytes spanned from data (interpreter bounds checks)
  bool empty;
} BlkView;

// Validates t (non-NULL, dtype in `allowed`, shape, strides: unit stride on
// the last dim, rows that do not overlap, leading dims that flatten) and
// fills v. op names the block in messages ("softmax").
tj_status blk_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t,
                   unsigned allowed, BlkView *v);
// a must have ref's shape / dtype.
tj_status blk_same_shape(tj_blocks *b, const BlkView *a, const BlkView *ref);
tj_status blk_same_dtype(tj_blocks *b, const BlkView *a, const BlkView *ref);
// An optional [K] vector (w, bias, dbias...) of vx's dtype.
tj_status blk_vec_view(tj_blocks *b, const char *op, const char *name, const DLTensor *t,
                       const BlkView *vx, BlkView *v);
// Whether v's rows are evenly spaced; *rs gets the spacing.
bool blk_uniform_rows(const BlkView *v, int64_t *rs);
// Checks that all non-NULL views live on one device that b can run on;
// *gpu tells which path. GPU: the device must be ctx's and every non-empty
// pointer device or managed memory.
tj_status blk_device(tj_blocks *b, const char *op, BlkView *const *v, int n, bool *gpu);
// "[4, 128]"
void blk_shape_str(const DLTensor *t, char *buf, size_t n);
const char *blk_dtype_str(const DLTensor *t, char *buf, size_t n);

// ---------------------------------------------------------------- core.c

typedef enum BlkOp {
  BLK_SOFTMAX_FWD, BLK_SOFTMAX_BWD, BLK_NORM_FWD, BLK_NORM_BWD,
} BlkOp;

// BlkConfig (a tile config) is defined above, with the handle.

// The tile config for op on an M x K problem. rows_cap bounds rows (a power
// of two >= 1); gpu tells the target (the interpreter wants small programs).
BlkConfig blk_pick_config(const tj_blocks *b, BlkOp op, tj_dtype dt, int64_t M, int64_t K,
                          int64_t rows_cap, bool gpu);
int64_t blk_pow2_ceil(int64_t x);
int64_t blk_pow2_floor(int64_t x);

// The compiled specialisation of kernel `name` of source `src` (a
// blk_src_* text, `file` its name in messages) for defines / num_warps, for
// the GPU or the interpreter; compiled on first use and kept by b.
tj_status blk_kernel(tj_blocks *b, const char *file, const char *src, size_t srclen,
                     const char *name, const char *const *defines, int ndefines, int num_warps,
                     bool gpu, tj_kernel **out);
tj_status blk_run(tj_blocks *b, tj_kernel *k, bool gpu, unsigned grid, const tj_arg *args,
                  int nargs, void *stream);
// TJ_OK when p is CUDA device or managed memory (the driver's answer, or
// an allocation it gave that answer for before: see core.c).
tj_status blk_check_device_ptr(tj_blocks *b, const char *op, const char *name, const void *p);
// Drops the remembered allocations that overlap [p, p + bytes) (memory the
// handle frees itself).
void blk_forget_ptr(tj_blocks *b, const void *p, size_t bytes);
// Test hook: answer pointer queries with fn (NULL: the driver again); also
// empties the remembered allocations.
void blk_set_ptr_query(tj_blocks *b, BlkPtrQuery fn, void *user);

// The kernel and tile config remembered for key under the current handle
// state: true on a hit. On a miss *stamp gets the state to pass to
// blk_memo_put once the choice is made (read before choosing, so a choice
// made while the state changed is remembered under the old state).
bool blk_memo_get(tj_blocks *b, const BlkMemoKey *key, tj_kernel **k, BlkConfig *c, BlkMemoStamp *stamp);
void blk_memo_put(tj_blocks *b, const BlkMemoKey *key, const BlkMemoStamp *stamp, tj_kernel *k,
                  const BlkConfig *c);
// Forget every remembered choice (under b->mu).
void blk_memo_reset_locked(tj_blocks *b);
// Programs of a row kernel launch with config c over M rows (looped and
// split3 configs have one row a program).
static inline unsigned blk_grid(const BlkConfig *c, int64_t M) { return (unsigned)((M + c->rows - 1) / c->rows); }
// Multiprocessor count of ctx's device (cached); 1 on error.
int blk_sm_count(tj_blocks *b);
// true when kernels for this device are built for sm_90a, where tensor-core
// dots split over rows run on wgmma (codegen/mma.c).
bool blk_has_wgmma(tj_blocks *b);
// f32 scratch for the norm backward pass: the user workspace, else the
// handle's (grown). Host memory (malloc'd, caller frees) when !gpu.
tj_status blk_scratch(tj_blocks *b, bool gpu, size_t bytes, void **out, bool *owned);
tj_status blk_error(tj_blocks *b, tj_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *blk_dt(tj_dtype d);   // "f16"

enum { BLK_MAX_DEFS = 16 };   // the most a kernel takes: dropout_bwd's 11
typedef struct BlkDefs {
  char buf[BLK_MAX_DEFS][32];
  const char *p[BLK_MAX_DEFS];
  int n;
} BlkDefs;

// "NAME=value" into the next slot. A define past BLK_MAX_DEFS turns the last
// slot into one the compiler rejects (TJ_ERR_INVALID_ARG: "not of the form
// NAME=VALUE"), so too many fail with a status, never past the arrays.
void blk_def(BlkDefs *d, const char *name, const char *value);
void blk_def_int(BlkDefs *d, const char *name, int v);
void blk_def_bool(BlkDefs *d, const char *name, bool v);   // "true" / "false"

// Makes the choice remembered under key on a miss (*k and *c; TJ_OK or a
// status with the message set). u is build's own.
typedef tj_status (*BlkMemoBuild)(tj_blocks *b, const void *u, tj_kernel **k, BlkConfig *c);
// The remembered choice for key, else build's, remembered (blk_memo_get,
// build, blk_memo_put). A build that needs work between the stamp and the
// choice (norm.c's backward pass) calls get and put itself.
tj_status blk_memo_kernel(tj_blocks *b, const BlkMemoKey *key, BlkMemoBuild build, const void *u,
                          tj_kernel **k, BlkConfig *c);
// How a row op's kernel is built: its defines, its looped (online) twin for
// rows past the register limit, and its three-chunk twin.
typedef struct BlkRowKernels {
  void (*defs)(BlkDefs *d, const void *u);   // every define but BLOCK and ROWS
  const void *u;
  const char *looped;     // the kernel of a looped config (it does not declare ROWS)
  const char *split3;     // the kernel of a split3 config (it declares ROWS)
  // NULL: the tile blk_choose_config gives. Else this tile, with the tuned
  // num_warps when the tuner's tile agrees (the norm backward pass: its ROWS
  // fixes G).
  const BlkConfig *tile;
} BlkRowKernels;
// The tile config of req (blk_choose_config, or rk->tile) and its compiled
// kernel, without the memo.
tj_status blk_row_kernel(tj_blocks *b, const BlkTuneReq *req, const BlkRowKernels *rk, bool gpu, tj_kernel **k,
                         BlkConfig *c);
// blk_row_kernel, remembered under key.
tj_status blk_memo_choose(tj_blocks *b, const BlkMemoKey *key, const BlkTuneReq *req, const BlkRowKernels *rk,
                          bool gpu, tj_kernel **k, BlkConfig *c);

// The row addressing shared by all tensors of a call: either one sequence
// with uniform strides, or the natural (seq, s_b, s_r) of each view.
typedef struct BlkRows {
  int64_t seq;
  int64_t rows_cap;      // rows per program may not exceed it
  bool flat;            // one sequence: seq = M, s_b = 0
} BlkRows;

BlkRows blk_plan_rows(BlkView *const *v, int n, bool need_seq);
// s_b, s_r of v under plan r.
void blk_row_strides(const BlkRows *r, const BlkView *v, int64_t *sb, int64_t *sr);
static inline tj_arg blk_ptr_arg(const BlkView *v) { return tj_arg_ptr(v->data, v->nbytes); }

// Test hook: rows longer than `elems` use the looped kernels (0: default).
void blk_set_reg_limit(tj_blocks *b, int64_t elems);

// ---------------------------------------------------------------- tuning.c

// What a call asks of blk_choose_config: the kernel without its tile (the
// defines exclude BLOCK and ROWS) and the arguments one launch takes, so
// that the tuner can benchmark candidates on them (written pointers on
// scratch copies).
typedef struct BlkTuneReq {
  BlkOp op;
  tj_dtype dt;
  const char *file;
  const char *src;
  size_t srclen;
  const char *kernel;
  const char *const *defines;
  int ndefines;
  int64_t M, K, rows_cap;
  const tj_arg *args;
  int nargs;
  int m_arg;           // index of the argument M (grid = cdiv(M, ROWS)); for BLK_NORM_BWD, of G (grid = G)
  uint64_t written;    // bit i: argument i is written
  void *stream;
} BlkTuneReq;

// The tile config of a call: blk_pick_config's, except on the GPU with
// tuning on and a register kernel, where the tuner's best for the bucketed
// (K, M, rows cap) is used, tuning that key first if it is new. A tuning
// failure warns and falls back to the heuristic; it never fails the call.
BlkConfig blk_choose_config(tj_blocks *b, const BlkTuneReq *r, bool gpu);

// The parts, exported for the CPU tests.
enum { BLK_TK_K, BLK_TK_M, BLK_TK_RCAP, BLK_TK_N };   // key sizes, in order
// Bucket of one key size ("K", "M" or "rcap").
int64_t blk_tune_bucket(const char *name, int64_t v, void *user);
// Whether (block, rows, num_warps) is a candidate for op at bucketed key
// sizes ks (the prune rule; h: the heuristic at ks).
bool blk_tune_keep(const tj_blocks *b, BlkOp op, tj_dtype dt, const int64_t ks[BLK_TK_N], int64_t block,
                   int64_t rows, int64_t num_warps);
// The tuner of r's (kernel, defines), created on first use (NULL and a
// warning if it cannot be). Owned by b.
struct tj_tuner *blk_tuner_for(tj_blocks *b, const BlkTuneReq *r);
void blk_tuners_free(tj_blocks *b);
// TILEJIT_AUTOTUNE is not off.
bool blk_autotune_default(void);

// ---------------------------------------------------------------- norm.c

// Rows-per-program count of the backward pass (G) for x's shape and the
// resulting scratch size; shared with tj_norm_bwd_workspace_size.
tj_status blk_norm_bwd_plan(tj_blocks *b, const BlkView *x, bool gpu, BlkConfig *cfg, int *G,
                            size_t *scratch_bytes);

// ---------------------------------------------------------------- dropout.c

// Test hook: the tile config of b's later dropout calls (NULL: back to the
// heuristic). Rows are still capped where the row addressing needs it.
void blk_dropout_force_config(tj_blocks *b, const BlkDropCfg *c);

// ---------------------------------------------------------------- attention.c

// Test hook: the kernel tiles of later calls with layout l (bm 0: the
// heuristic); tiles are still halved until they divide S.
typedef struct BlkAttnCfg {
  int bm, bn;         // query rows, key rows per tile: powers of two >= 16
  int num_warps;      // 0: 4
} BlkAttnCfg;
void blk_attn_force_config(tj_attn_layout *l, const BlkAttnCfg *c);

// What the tables of l for tiles bm x bn look like (CPU plan; built if new).
typedef struct BlkAttnPlanInfo {
  bool sub;           // some tile spans layout blocks that are off
  bool range, range_t;   // forward / transposed tables are tile runs
  int64_t tiles;      // active tiles, summed over the layout's heads
} BlkAttnPlanInfo;
tj_status blk_attn_plan_info(tj_blocks *b, tj_attn_layout *l, int bm, int bn, bool causal,
                             BlkAttnPlanInfo *info);
// tj_block_call of "attention" (bwd false) and "attention_bwd": the layout
// arrives as an optional u8 host tensor, turned into a temporary layout.
tj_status blk_attn_call(tj_blocks *b, bool bwd, DLTensor *const *t, const double *s, void *stream);

#endif
