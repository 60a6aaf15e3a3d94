/* layout.h: internal interface of the LLVM backend (llvm.c, layout.c,
 * the lower_ files and nvmath.c). Includes LLVM-C, so only the .c files of
 * codegen/ may include it. See the essay at the top of layout.c for what a layout is.
 */
#ifndef TJ_CG_LAYOUT_H
#define TJ_CG_LAYOUT_H

#include <llvm-c/Core.h>
#include <llvm-c/DebugInfo.h>

#include "codegen.h"

// A distribution of a rank-0..2 tile over the threads of a program.
// Threads form a 2-D grid: lane = l0 * tpw[1] + l1, warp = w0 * wpc[1] + w1
// (grid dim 1 is the fastest). Tile dim d is spread over grid dim gdim[d]
// (or over no grid dim when gdim[d] < 0: every thread holds the whole dim).
typedef struct Layout {
  int rank;
  int shape[2];
  int spt[2];      // sizePerThread (contiguous run) per tile dim
  int gdim[2];     // grid dim per tile dim, -1 none
  int tpw[2];      // threadsPerWarp per grid dim, tpw[0] * tpw[1] == 32
  int wpc[2];      // warpsPerCTA per grid dim, product == num_warps
  // what slice() removed, so that expand_dims restores the parent exactly
  int sl_dim, sl_spt, sl_gdim;
  // derived by layout_finish()
  int espt[2];     // effective run: min(spt, shape)
  int cover[2];    // spt * tpw * wpc of the grid dim (spt when gdim < 0)
  int cnt[2];      // elements per thread per dim
  int nelem;       // elements per thread
} Layout;

// Per value and dim facts of the axis analysis (Triton's AxisInfo). All are
// powers of two. contig: values rise by 1 over aligned groups of this length;
// div: the first value of each such group is a multiple of this (bytes for
// pointers); cnst: values are equal over aligned groups of this length.
typedef struct AxisInfo {
  int contig[2], cnst[2];
  int64_t div[2];
  bool known;       // rank 0 or splat of a known integer
  int64_t kval;
} AxisInfo;

#define AX_DIV_MAX ((int64_t)1 << 30)

// Lowered form of a value in one layout: nelem LLVM values in slot order
// (slot = k0 * cnt[1] + k1).
typedef struct Tile {
  const Layout *L;
  LLVMValueRef *v;
} Tile;

typedef struct ValInfo {
  bool remat;            // cheap: computed afresh in every layout a user wants
  const Layout *nat;     // natural layout (non-remat), rank 0: the scalar layout
  const Layout **req;    // layouts users need
  int nreq, capreq;
  Tile *tiles;           // lowered forms
  int ntiles, captiles;
  AxisInfo ax;
  TirInst **users;       // insts that read the value (a load's layout follows them)
  int nusers;
  // A loop-carried value whose layout is only a guess (its init is a
  // constant tile): an elementwise op prefers any other operand's layout.
  bool soft;
  // Dot results: the row-wise warp split (layout_mma with all the warps it
  // can take along M), for dots whose result feeds a row reduction or the A
  // operand of another dot (attention): reductions along rows then need no
  // shared memory and the result can serve as the next dot's A from registers.
  bool mma_rows;
  // A loop-invariant A operand of an MMA dot in a loop: its fragments are
  // read once, right after it is computed, and kept in registers (mma.c).
  int afrag_wm, afrag_wn;  // the dot's warp split (0: no fragments wanted)
  LLVMValueRef *afrag;     // mt * (K/16) * 4 i32 registers once lowered
} ValInfo;

// All state of one compilation (no globals: the autotuner compiles in parallel).
typedef struct Cg {
  const TirFunc *f;
  const CgOptions *opt;
  Diag *d;
  Arena *a;
  int num_warps, nthreads;
  tj_status err;           // first error; lowering stops at it
  ValInfo *vi;             // indexed by TirValue id
  const Layout **layouts;  // interned layouts
  int nlayouts, caplayouts;
  int scratch_bytes;       // shared memory scratch the lowering needs
  bool smem_used;          // a shared memory access has been emitted (cg_smem_ptr, wgmma descriptors)
  struct CgVec { int rank, shape[2], minbytes; } *vecs;  // per shape: narrowest access
  int nvecs, capvecs;
  // LLVM
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMValueRef smem;       // [scratch] i8 addrspace(3), or NULL
  LLVMValueRef tid, lane, warp;
  LLVMDIBuilderRef dib;
  LLVMMetadataRef disub;
  LLVMTypeRef i1, i8, i16, i32, i64, f16, bf16, f32, f64, gptr, sptr, voidt;
  struct PipeState *pipe;  // cp.async pipelining of loads feeding dot (pipeline.c)
  // sm_90a: dots whose shapes allow it run on wgmma (mma.c), and shared
  // tiles start at multiples of tile_align (the 1024-byte repeat of the
  // 128-byte swizzle) so that a matrix descriptor can address them.
  bool wgmma_ok;           // the arch has wgmma
  bool wgmma;              // some dot uses it: barriers fence the async proxy
  int tile_align;          // 128, or 1024 with wgmma
} Cg;

//
// layout.c
//
const Layout *layout_scalar(Cg *cg);
const Layout *layout_canonical(Cg *cg, int rank, const int *shape, int vec);
const Layout *layout_default(Cg *cg, TirType t);  // canonical with the kernel's vector width
const Layout *layout_slice(Cg *cg, const Layout *L, int axis);
const Layout *layout_expand(Cg *cg, const Layout *L, int axis);
// L with dims whose size is 1 in shape collapsed (the operand of a broadcast).
const Layout *layout_collapse(Cg *cg, const Layout *L, const int *shape);
// The tensor-core accumulator layout of an [M, N] tile: the blocked layout
// spt [1, 2], tpw [8, 4], wpc [wm, wn] (see mma.c for why it is one).
const Layout *layout_mma(Cg *cg, int M, int N, int wm, int wn);
bool layout_eq(const Layout *a, const Layout *b);
// Compile-time part of a slot's coordinate along dim d.
int layout_off(const Layout *L, int slot, int d);
// Grid position along tile dim d (before the modulo) and the number of
// distinct lane / warp positions along it.
int layout_lanes(const Layout *L, int d);
int layout_warps(const Layout *L, int d);
// Runs the layout and axis analyses over f. Returns false on error (reported).
bool layout_analyse(Cg *cg);
// The layout a tile STORE is done in (its pointers, value and mask are
// requested in it).
const Layout *layout_store(Cg *cg, const TirInst *in);
// The body's YIELD, or NULL where it is left out (allowed when nothing is
// carried or returned: an empty yield).
TirInst *cg_yield_of(TirBlock *blk);
int cg_dtype_bytes(Dtype dt);
void cg_error(Cg *cg, tj_status st, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

//
// llvm.c: helpers shared by the lowering files
//
LLVMTypeRef cg_type(Cg *cg, Dtype dt);       // register type (bool -> i1)
LLVMTypeRef cg_mem_type(Cg *cg, Dtype dt);   // memory type (bool -> i8)
LLVMTypeRef cg_val_type(Cg *cg, TirType t);  // element register type (ptr -> gptr)
LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *ovl, int novl,
                          LLVMValueRef *args, int nargs);
LLVMValueRef cg_sreg(Cg *cg, const char *name);
// v (an fadd, fsub or fmul just built) marked `contract`, so that LLVM may
// fuse a multiply into the add that uses it (fma: one rounding), unless the
// kernel was compiled with TJ_COMPILE_NO_FP_FUSION. Returns v.
LLVMValueRef cg_contract(Cg *cg, LLVMValueRef v);
int cg_ilog2(int x);                         // floor(log2(x)) for x >= 1; 0 for x <= 1
LLVMValueRef cg_i32(Cg *cg, int64_t v);
// bar.sync; with wgmma in the kernel, preceded by a proxy fence that makes
// this thread's shared memory writes visible to wgmma's operand reads.
LLVMValueRef cg_barrier(Cg *cg);
// Marks an inline-asm call that all threads of a warp (group) must reach
// together (wgmma, fences): LLVM keeps it out of divergent code.
void cg_convergent(Cg *cg, LLVMValueRef call);
// bytes rounded up to the start of the next shared tile (cg->tile_align).
int cg_tile_pad(const Cg *cg, int bytes);
// Runtime coordinate of slot along tile dim d of L.
LLVMValueRef cg_coord(Cg *cg, const Layout *L, int slot, int d);
// true on the threads that own their elements (not replicas), per slot run.
LLVMValueRef cg_owner(Cg *cg, const Layout *L);
// The lowered form of v in layout L (which the layout pass requested).
LLVMValueRef *cg_get(Cg *cg, TirValue *v, const Layout *L);
LLVMValueRef cg_get0(Cg *cg, TirValue *v);   // rank-0 value
void cg_set(Cg *cg, TirValue *v, const Layout *L, LLVMValueRef *elems);
LLVMValueRef *cg_alloc_elems(Cg *cg, int n);
void cg_lower_block(Cg *cg, TirBlock *blk);
// Materialises a non-remat value in every other layout its users need.
void cg_convert_requests(Cg *cg, TirValue *v);

//
// lower_elementwise.c
//
bool lower_is_elementwise(TirOp op);
// Lowers one element of an elementwise op (args are register values).
LLVMValueRef lower_elem(Cg *cg, const TirInst *in, LLVMValueRef *args);
LLVMValueRef lower_convert(Cg *cg, LLVMValueRef x, Dtype from, Dtype to);
void lower_remat(Cg *cg, TirInst *in, const Layout *L);
void lower_elementwise_inst(Cg *cg, TirInst *in);

//
// lower_memory.c
//
void lower_load(Cg *cg, TirInst *in);
void lower_store(Cg *cg, TirInst *in);
// Moves a tile between layouts through shared memory. idx_src / idx_dst map
// a coordinate to the linear scratch index: row-major over shape unless
// transposed (trans: the source is indexed as its transpose).
LLVMValueRef *lower_smem_shuffle(Cg *cg, const LLVMValueRef *src, const Layout *Ls,
                                 const Layout *Ld, Dtype dt, int mode);
enum { SHUF_CONVERT, SHUF_TRANS, SHUF_RESHAPE };
void lower_reshape_trans(Cg *cg, TirInst *in);
// Byte offset b in the scratch buffer as an addrspace(3) pointer.
LLVMValueRef cg_smem_ptr(Cg *cg, LLVMValueRef byte_off);

//
// lower_reduce.c
//
void lower_reduce(Cg *cg, TirInst *in);
int lower_reduce_scratch(Cg *cg, const TirInst *in, const Layout *Lin);

//
// lower_dot.c
//
void lower_dot(Cg *cg, TirInst *in);
// Layout pass: picks the implementation of a dot (tensor cores or FMA), and
// with it the result's layout and the scratch bytes it stages operands in.
const Layout *lower_dot_layout(Cg *cg, TirInst *in);
// The same layout, without side effects (what a loop carrying it starts in).
const Layout *lower_dot_result_layout(Cg *cg, const TirInst *in);
int lower_dot_scratch(Cg *cg, const TirInst *in);

//
// mma.c: dot on tensor cores (mma.sync m16n8k16, ldmatrix, swizzled smem)
//
// true when dot `in` runs on tensor cores; *wm x *wn warps tile [M, N].
bool mma_supported(Cg *cg, const TirInst *in, int *wm, int *wn);
void lower_dot_mma(Cg *cg, TirInst *in, int wm, int wn);
// Layout pass, before the walk: marks the dots that want the row-wise split.
void mma_mark_rows(Cg *cg, TirBlock *blk);
// A `trans` whose every user is an MMA dot taking it as B: no transpose is
// done; the dot reads its [N][K] operand with ldmatrix without .trans.
bool mma_trans_b(Cg *cg, const TirInst *trans);
// The dot's B operand as it sits in memory: the operand of a folded trans,
// else B itself; *nk tells which.
TirValue *mma_b_source(Cg *cg, const TirInst *dot, bool *nk);
// The dot's A operand is an accumulator-layout value in registers (the
// result of an earlier dot, cast to f16/bf16): no shared memory for it.
bool mma_a_in_regs(Cg *cg, const TirInst *dot);
// Layout pass: asks for A's fragments to be hoisted when A is invariant in
// a loop around the dot.
void mma_consider_hoist(Cg *cg, TirInst *dot);
// Lowering, right after v is computed: reads the hoisted fragments.
void mma_hoist_frags(Cg *cg, TirValue *v);
// true when dot `in`, split wm x wn by mma_supported, runs on wgmma (sm_90a).
bool mma_use_wgmma(Cg *cg, const TirInst *in, int wm, int wn);
// Layout pass, after mma_mark_rows: does any dot in blk run on wgmma?
bool mma_any_wgmma(Cg *cg, TirBlock *blk);
// Byte offset in a swizzled [rows][rowbytes] f16/bf16 tile of the 16-byte
// chunk holding byte `colbyte` of row `row` (both runtime i32 values).
LLVMValueRef mma_swizzle(Cg *cg, LLVMValueRef row, LLVMValueRef colbyte, int rowbytes);

//
// pipeline.c: cp.async pipelining of the loads that feed dot in a loop
//
// Largest shared memory per block the arch allows (bytes).
int cg_smem_limit(const Cg *cg);
// Layout pass: tries to pipeline operand i of dot `in` (an MMA dot).
void pipe_consider(Cg *cg, TirInst *in, int i);
// Layout pass, at the end: places the stage buffers after the scratch.
void pipe_finish(Cg *cg);
// true when operand i of dot `in` comes from stage buffers.
bool pipe_operand(Cg *cg, const TirInst *in, int i);
// Byte offset (i32) of operand i's tile in the current stage.
LLVMValueRef pipe_operand_offset(Cg *cg, const TirInst *in, int i);
// Lowers a pipelined load (issuing the copies); false when `in` is not one.
bool pipe_lower_load(Cg *cg, TirInst *in);

//
// lower_control.c
//
void lower_for(Cg *cg, TirInst *in);
void lower_if(Cg *cg, TirInst *in);

//
// nvmath.c: f32 math with documented error
//
LLVMValueRef nvm_exp2(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_exp(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_log2(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_log(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_sqrt(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_rsqrt(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_erf(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_tanh(Cg *cg, LLVMValueRef x);
LLVMValueRef nvm_philox(Cg *cg, LLVMValueRef seed64, LLVMValueRef ctr64, LLVMValueRef lane);
// fmodf(x, y), exact (as C's), for f32 x and y. Emits a loop.
LLVMValueRef nvm_fmod(Cg *cg, LLVMValueRef x, LLVMValueRef y);

#endif
