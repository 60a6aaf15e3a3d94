/* lower_dot.c: dot(a[M,K], b[K,N], acc[M,N]) -> f32 [M,N].
 *
 * requires: the layout pass, which asked lower_dot_layout for the result's
 * layout and got acc in it; produces: the result in that layout.
 *
 * lower_dot picks one of two implementations, the same way for the layout
 * pass (lower_dot_layout) and for the lowering:
 *  - lower_dot_mma (mma.c): tensor cores, for f16/bf16 operands whose
 *    shapes tile into m16n8k16 steps over the program's warps. The result
 *    lives in the MMA layout (layout_mma); loads feeding it inside a loop
 *    may be pipelined through cp.async stage buffers (pipeline.c); an A
 *    in the accumulator layout comes from registers, trans(x) as B is
 *    read from x untransposed, a loop-invariant A once (mma.c's essay).
 *  - dot_fma: everything else (f32, odd shapes). It stages a and b in shared
 *    memory (row-major, their own dtype) and lets each thread run a k loop
 *    of outer products over its accumulator elements: per k it loads one a
 *    value per distinct row and one b value per distinct column it owns and
 *    issues rows x cols f32 FMAs. Products are formed in f32 (f16/bf16
 *    widened exactly) and accumulated in k order with fma. The result is in
 *    the canonical layout.
 */
#include "layout.h"

static int pad16(int x) { return (x + 15) / 16 * 16; }

const Layout *lower_dot_result_layout(Cg *cg, const TirInst *in) {
  int wm, wn;
  if (!mma_supported(cg, in, &wm, &wn)) return layout_default(cg, in->res[0]->type);
  return layout_mma(cg, in->res[0]->type.shape[0], in->res[0]->type.shape[1], wm, wn);
}

const Layout *lower_dot_layout(Cg *cg, TirInst *in) {
  int wm, wn;
  if (mma_supported(cg, in, &wm, &wn)) {
    pipe_consider(cg, in, 0);
    pipe_consider(cg, in, 1);
    mma_consider_hoist(cg, in);
  }
  return lower_dot_result_layout(cg, in);
}

int lower_dot_scratch(Cg *cg, const TirInst *in) {
  TirType a = in->args[0]->type, b = in->args[1]->type;
  int eb = dtype_bytes(a.dtype);
  int wm, wn;
  if (mma_supported(cg, in, &wm, &wn)) {
    // Operands not in stage buffers are staged (a hoisted A once, before
    // the loop, in the same place); an A in registers needs nothing.
    int n = 0;
    if (!pipe_operand(cg, in, 0) && !mma_a_in_regs(cg, in)) n += cg_tile_pad(cg, a.shape[0] * a.shape[1] * eb);
    if (!pipe_operand(cg, in, 1)) n += b.shape[0] * b.shape[1] * eb;
    return n;
  }
  return pad16(a.shape[0] * a.shape[1] * eb) + b.shape[0] * b.shape[1] * eb;
}

static void stage(Cg *cg, const LLVMValueRef *src, const Layout *L, int base, int eb) {
  for (int i = 0; i < L->nelem; i++) {
    LLVMValueRef c0 = cg_coord(cg, L, i, 0), c1 = cg_coord(cg, L, i, 1);
    LLVMValueRef idx = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, c0, cg_i32(cg, L->shape[1]), ""), c1, "");
    LLVMValueRef off = LLVMBuildAdd(cg->b, cg_i32(cg, base), LLVMBuildMul(cg->b, idx, cg_i32(cg, eb), ""), "");
    LLVMSetAlignment(LLVMBuildStore(cg->b, src[i], cg_smem_ptr(cg, off)), (unsigned)eb);
  }
}

static LLVMValueRef load_f32(Cg *cg, Dtype dt, LLVMValueRef off) {
  LLVMValueRef v = LLVMBuildLoad2(cg->b, cg_type(cg, dt), cg_smem_ptr(cg, off), "");
  LLVMSetAlignment(v, (unsigned)dtype_bytes(dt));
  return dt == DT_F32 ? v : LLVMBuildFPExt(cg->b, v, cg->f32, "");
}

static void dot_fma(Cg *cg, TirInst *in) {
  LLVMBuilderRef b = cg->b;
  TirValue *A = in->args[0], *B = in->args[1], *C = in->args[2], *R = in->res[0];
  Dtype dt = A->type.dtype;
  int M = A->type.shape[0], K = A->type.shape[1], N = B->type.shape[1];
  int eb = dtype_bytes(dt);
  const Layout *La = cg->vi[A->id].remat ? layout_default(cg, A->type) : cg->vi[A->id].nat;
  const Layout *Lb = cg->vi[B->id].remat ? layout_default(cg, B->type) : cg->vi[B->id].nat;
  const Layout *Lc = cg->vi[R->id].nat;
  LLVMValueRef *av = cg_get(cg, A, La), *bv = cg_get(cg, B, Lb), *cv = cg_get(cg, C, Lc);
  if (!av || !bv || !cv) return;
  int boff = pad16(M * K * eb);
  cg_barrier(cg);
  stage(cg, av, La, 0, eb);
  stage(cg, bv, Lb, boff, eb);
  cg_barrier(cg);

  int n0 = Lc->cnt[0], n1 = Lc->cnt[1], n = Lc->nelem;
  LLVMValueRef *row = cg_alloc_elems(cg, n0), *col = cg_alloc_elems(cg, n1);
  LLVMValueRef *acc = cg_alloc_elems(cg, n), *out = cg_alloc_elems(cg, n);
  if (!row || !col || !acc || !out) return;
  for (int i = 0; i < n0; i++)  // byte offset of a[row][0]
    row[i] = LLVMBuildMul(b, cg_coord(cg, Lc, i * n1, 0), cg_i32(cg, K * eb), "");
  for (int j = 0; j < n1; j++)  // byte offset of b[0][col]
    col[j] = LLVMBuildAdd(b, cg_i32(cg, boff), LLVMBuildMul(b, cg_coord(cg, Lc, j, 1), cg_i32(cg, eb), ""), "");

  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "dot.k");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "dot.done");
  LLVMBuildBr(b, loop);
  LLVMPositionBuilderAtEnd(b, loop);
  LLVMValueRef k = LLVMBuildPhi(b, cg->i32, "k");
  for (int i = 0; i < n; i++) acc[i] = LLVMBuildPhi(b, cg->f32, "");
  LLVMValueRef *ak = cg_alloc_elems(cg, n0), *bk = cg_alloc_elems(cg, n1);
  if (!ak || !bk) return;
  LLVMValueRef kb = LLVMBuildMul(b, k, cg_i32(cg, eb), "");
  LLVMValueRef kn = LLVMBuildMul(b, k, cg_i32(cg, N * eb), "");
  for (int i = 0; i < n0; i++) ak[i] = load_f32(cg, dt, LLVMBuildAdd(b, row[i], kb, ""));
  for (int j = 0; j < n1; j++) bk[j] = load_f32(cg, dt, LLVMBuildAdd(b, col[j], kn, ""));
  LLVMTypeRef ft = cg->f32;
  for (int i = 0; i < n0; i++)
    for (int j = 0; j < n1; j++) {
      LLVMValueRef args[3] = {ak[i], bk[j], acc[i * n1 + j]};
      out[i * n1 + j] = cg_intrinsic(cg, "llvm.fma", &ft, 1, args, 3);
    }
  LLVMValueRef k1 = LLVMBuildAdd(b, k, cg_i32(cg, 1), "");
  LLVMBasicBlockRef end = LLVMGetInsertBlock(b);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, k1, cg_i32(cg, K), ""), loop, done);
  LLVMValueRef z = cg_i32(cg, 0);
  LLVMBasicBlockRef bbs[2] = {pre, end};
  LLVMValueRef kin[2] = {z, k1};
  LLVMAddIncoming(k, kin, bbs, 2);
  for (int i = 0; i < n; i++) {
    LLVMValueRef in2[2] = {cv[i], out[i]};
    LLVMAddIncoming(acc[i], in2, bbs, 2);
  }
  LLVMPositionBuilderAtEnd(b, done);
  cg_set(cg, R, Lc, out);
}

void lower_dot(Cg *cg, TirInst *in) {
  TirType a = in->args[0]->type, bt = in->args[1]->type, r = in->res[0]->type;
  if (a.rank != 2 || bt.rank != 2 || r.dtype != DT_F32 || a.dtype != bt.dtype ||
      !(a.dtype == DT_F16 || a.dtype == DT_BF16 || a.dtype == DT_F32)) {
    cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: dot of %s x %s -> %s is not supported",
             dtype_name(a.dtype), dtype_name(bt.dtype), dtype_name(r.dtype));
    return;
  }
  int wm, wn;
  if (mma_supported(cg, in, &wm, &wn)) lower_dot_mma(cg, in, wm, wn);
  else dot_fma(cg, in);
}
