/* lower_control.c: structured for / if -> LLVM basic blocks and phis.
 *
 * requires: the layout pass, which gave every loop-carried value and if
 * result one layout (the yields were converted to it where they differ);
 * produces: one phi per element of each carried value / result.
 *
 * for i in range(lo, hi, step): preheader -> header (phis, i < hi) -> body ->
 * latch (i += step) -> header; the results are the header's phis on exit.
 * Bounds and conditions are rank-0, so uniform over the program: barriers
 * inside loops and ifs (layout changes, reductions) are reached by every
 * thread or by none.
 */
#include "layout.h"

static int nelem_of(Cg *cg, TirValue *v) {
  return v->type.rank == 0 ? 1 : cg->vi[v->id].nat->nelem;
}

static LLVMValueRef *elems_of(Cg *cg, TirValue *v, const Layout *L) {
  return v->type.rank == 0 ? cg_get(cg, v, layout_scalar(cg)) : cg_get(cg, v, L);
}

void lower_for(Cg *cg, TirInst *in) {
  LLVMBuilderRef b = cg->b;
  TirBlock *body = in->blocks[0];
  int nc = in->nargs - 3;
  TirInst *y = cg_yield_of(body);  // may be left out when nothing is carried
  if ((y ? y->nargs : 0) != nc || body->nargs != nc + 1 || in->nres != nc) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: malformed for");
    return;
  }
  TirValue *ivv = body->args[0];
  LLVMTypeRef it = cg_type(cg, ivv->type.dtype);
  LLVMValueRef lo = cg_get0(cg, in->args[0]), hi = cg_get0(cg, in->args[1]), st = cg_get0(cg, in->args[2]);
  Dtype bd = in->args[0]->type.dtype;
  lo = lower_convert(cg, lo, bd, ivv->type.dtype);
  hi = lower_convert(cg, hi, in->args[1]->type.dtype, ivv->type.dtype);
  st = lower_convert(cg, st, in->args[2]->type.dtype, ivv->type.dtype);
  bool sg = dtype_is_signed(ivv->type.dtype);

  const Layout **L = (const Layout **)cg_alloc_elems(cg, nc + 1);
  LLVMValueRef **init = (LLVMValueRef **)cg_alloc_elems(cg, nc + 1);
  LLVMValueRef **phi = (LLVMValueRef **)cg_alloc_elems(cg, nc + 1);
  if (!L || !init || !phi) return;
  for (int j = 0; j < nc; j++) {
    TirValue *r = in->res[j];
    L[j] = r->type.rank == 0 ? layout_scalar(cg) : cg->vi[r->id].nat;
    init[j] = elems_of(cg, in->args[3 + j], L[j]);
    if (!init[j]) return;
  }
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "for.head");
  LLVMBasicBlockRef bodyb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "for.body");
  LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "for.exit");
  LLVMBuildBr(b, head);
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef iv = LLVMBuildPhi(b, it, "i");
  for (int j = 0; j < nc; j++) {
    int n = nelem_of(cg, in->res[j]);
    phi[j] = cg_alloc_elems(cg, n);
    if (!phi[j]) return;
    LLVMTypeRef t = cg_val_type(cg, in->res[j]->type);
    for (int e = 0; e < n; e++) phi[j][e] = LLVMBuildPhi(b, t, "");
  }
  LLVMValueRef cond = LLVMBuildICmp(b, sg ? LLVMIntSLT : LLVMIntULT, iv, hi, "");
  LLVMBuildCondBr(b, cond, bodyb, exit);

  LLVMPositionBuilderAtEnd(b, bodyb);
  LLVMValueRef *ive = cg_alloc_elems(cg, 1);
  if (!ive) return;
  ive[0] = iv;
  cg_set(cg, ivv, layout_scalar(cg), ive);
  for (int j = 0; j < nc; j++) {
    cg_set(cg, body->args[1 + j], L[j], phi[j]);
    cg_convert_requests(cg, body->args[1 + j]);
  }
  cg_lower_block(cg, body);
  if (cg->err != TJ_OK) return;
  LLVMValueRef **next = (LLVMValueRef **)cg_alloc_elems(cg, nc + 1);
  if (!next) return;
  for (int j = 0; j < nc; j++) {
    next[j] = elems_of(cg, y->args[j], L[j]);
    if (!next[j]) return;
  }
  LLVMValueRef ivn = LLVMBuildAdd(b, iv, st, "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMBuildBr(b, head);
  LLVMBasicBlockRef bbs[2] = {pre, latch};
  LLVMValueRef ivin[2] = {lo, ivn};
  LLVMAddIncoming(iv, ivin, bbs, 2);
  for (int j = 0; j < nc; j++) {
    int n = nelem_of(cg, in->res[j]);
    for (int e = 0; e < n; e++) {
      LLVMValueRef vin[2] = {init[j][e], next[j][e]};
      LLVMAddIncoming(phi[j][e], vin, bbs, 2);
    }
  }
  LLVMPositionBuilderAtEnd(b, exit);
  for (int j = 0; j < nc; j++) cg_set(cg, in->res[j], L[j], phi[j]);
}

void lower_if(Cg *cg, TirInst *in) {
  LLVMBuilderRef b = cg->b;
  if (in->nargs < 1 || in->args[0]->type.rank != 0) {
    cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: if needs a scalar condition");
    return;
  }
  int nr = in->nres;
  if (nr > 0 && in->nblocks < 2) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: if with results but no else");
    return;
  }
  LLVMValueRef cond = cg_get0(cg, in->args[0]);
  LLVMBasicBlockRef thenb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "if.then");
  LLVMBasicBlockRef elseb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "if.else");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "if.join");
  LLVMBuildCondBr(b, cond, thenb, elseb);
  LLVMValueRef **vals[2] = {NULL, NULL};
  LLVMBasicBlockRef ends[2];
  for (int k = 0; k < 2; k++) {
    LLVMPositionBuilderAtEnd(b, k == 0 ? thenb : elseb);
    vals[k] = (LLVMValueRef **)cg_alloc_elems(cg, nr + 1);
    if (!vals[k]) return;
    if (k < in->nblocks) {
      TirBlock *blk = in->blocks[k];
      cg_lower_block(cg, blk);
      if (cg->err != TJ_OK) return;
      TirInst *y = cg_yield_of(blk);
      if (nr > 0 && (!y || y->nargs != nr)) {
        cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: if branch without yield");
        return;
      }
      for (int j = 0; j < nr; j++) {
        TirValue *r = in->res[j];
        const Layout *L = r->type.rank == 0 ? layout_scalar(cg) : cg->vi[r->id].nat;
        vals[k][j] = elems_of(cg, y->args[j], L);
        if (!vals[k][j]) return;
      }
    }
    ends[k] = LLVMGetInsertBlock(b);
    LLVMBuildBr(b, join);
  }
  LLVMPositionBuilderAtEnd(b, join);
  for (int j = 0; j < nr; j++) {
    TirValue *r = in->res[j];
    const Layout *L = r->type.rank == 0 ? layout_scalar(cg) : cg->vi[r->id].nat;
    int n = nelem_of(cg, r);
    LLVMValueRef *out = cg_alloc_elems(cg, n);
    if (!out) return;
    for (int e = 0; e < n; e++) {
      out[e] = LLVMBuildPhi(b, cg_val_type(cg, r->type), "");
      LLVMValueRef v2[2] = {vals[0][j][e], vals[1][j][e]};
      LLVMAddIncoming(out[e], v2, ends, 2);
    }
    cg_set(cg, r, L, out);
  }
}
