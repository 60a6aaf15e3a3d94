/* lower_reduce.c: sum / max / min / argmax / argmin along one axis.
 *
 * requires: the operand in its natural layout La; produces: the result in
 * slice(La, axis) (a uniform scalar for a rank-1 operand).
 *
 * Three stages, as Triton does them: combine a thread's own elements, then
 * the distinct lanes along the axis with shfl.sync.bfly butterflies (every
 * lane ends with the full value), then the distinct warps through shared
 * memory (each warp writes its partial, every thread combines all partials
 * in warp order, so all threads agree bit for bit). Replicated lanes and
 * warps (tiles smaller than the thread grid) are left out of the butterfly
 * and the shared-memory step, so nothing is counted twice.
 *
 * argmax/argmin carry (value, index) pairs; the combine takes the larger
 * (smaller) value, the smaller index on ties, and ignores NaN like max/min
 * (maxNum) unless both are NaN. The combine is symmetric, so the order of
 * the butterfly does not change the answer.
 */
#include "layout.h"

#include <string.h>

typedef struct Red {
  int op;          // TirRedop
  Dtype vt;        // value dtype being combined
  bool arg;        // argmax / argmin
} Red;

static bool is_arg(int op) { return op == RED_ARGMAX || op == RED_ARGMIN; }

static Dtype value_dtype(const TirInst *in) {
  return is_arg(in->redop) ? in->args[0]->type.dtype : in->res[0]->type.dtype;
}

int lower_reduce_scratch(Cg *cg, const TirInst *in, const Layout *La) {
  int axis = in->axis;
  int nw = layout_warps(La, axis);
  if (nw <= 1) return 0;
  int nout = in->res[0]->type.rank == 0 ? 1 : in->res[0]->type.shape[0];
  int vb = cg_dtype_bytes(value_dtype(in));
  int bytes = (nout * nw * vb + 15) / 16 * 16;
  if (is_arg(in->redop)) bytes += nout * nw * 4;
  return bytes;
}

static LLVMValueRef call2(Cg *cg, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef a[2] = {x, y};
  return cg_intrinsic(cg, name, &t, 1, a, 2);
}

// Combines (v, i) with (w, j) into *v, *i.
static void combine(Cg *cg, const Red *r, LLVMValueRef *v, LLVMValueRef *i, LLVMValueRef w,
                    LLVMValueRef j) {
  LLVMBuilderRef b = cg->b;
  Dtype dt = r->vt;
  bool fl = dtype_is_float(dt), sg = dtype_is_signed(dt);
  bool narrow = dt == DT_F16 || dt == DT_BF16;
  if (!r->arg) {
    switch (r->op) {
    case RED_SUM:
      if (fl) {
        if (narrow) {  // (only reached if sema kept a narrow sum type)
          LLVMValueRef s = LLVMBuildFAdd(b, LLVMBuildFPExt(b, *v, cg->f32, ""), LLVMBuildFPExt(b, w, cg->f32, ""), "");
          *v = LLVMBuildFPTrunc(b, s, cg_type(cg, dt), "");
        } else {
          *v = cg_contract(cg, LLVMBuildFAdd(b, *v, w, ""));
        }
      } else if (dt == DT_BOOL) {
        *v = LLVMBuildOr(b, *v, w, "");
      } else {
        *v = LLVMBuildAdd(b, *v, w, "");
      }
      return;
    case RED_MAX:
      *v = call2(cg, fl ? "llvm.maxnum" : sg ? "llvm.smax" : "llvm.umax", *v, w);
      return;
    default:
      *v = call2(cg, fl ? "llvm.minnum" : sg ? "llvm.smin" : "llvm.umin", *v, w);
      return;
    }
  }
  bool mx = r->op == RED_ARGMAX;
  LLVMValueRef better, equal;
  if (fl) {
    LLVMValueRef a = narrow ? LLVMBuildFPExt(b, *v, cg->f32, "") : *v;
    LLVMValueRef c = narrow ? LLVMBuildFPExt(b, w, cg->f32, "") : w;
    better = LLVMBuildFCmp(b, mx ? LLVMRealOGT : LLVMRealOLT, c, a, "");
    equal = LLVMBuildFCmp(b, LLVMRealOEQ, c, a, "");
    LLVMValueRef an = LLVMBuildFCmp(b, LLVMRealUNO, a, a, "");
    LLVMValueRef cn = LLVMBuildFCmp(b, LLVMRealUNO, c, c, "");
    // a NaN loses to a number; two NaNs tie
    better = LLVMBuildOr(b, better, LLVMBuildAnd(b, an, LLVMBuildNot(b, cn, ""), ""), "");
    equal = LLVMBuildOr(b, equal, LLVMBuildAnd(b, an, cn, ""), "");
  } else {
    LLVMIntPredicate p = mx ? (sg ? LLVMIntSGT : LLVMIntUGT) : (sg ? LLVMIntSLT : LLVMIntULT);
    better = LLVMBuildICmp(b, p, w, *v, "");
    equal = LLVMBuildICmp(b, LLVMIntEQ, w, *v, "");
  }
  LLVMValueRef first = LLVMBuildICmp(b, LLVMIntSLT, j, *i, "");
  LLVMValueRef take = LLVMBuildOr(b, better, LLVMBuildAnd(b, equal, first, ""), "");
  *v = LLVMBuildSelect(b, take, w, *v, "");
  *i = LLVMBuildSelect(b, take, j, *i, "");
}

// shfl.sync.bfly of any scalar type (split into 32-bit words).
static LLVMValueRef shfl(Cg *cg, LLVMValueRef x, int mask) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef args[4] = {cg_i32(cg, -1), NULL, cg_i32(cg, mask), cg_i32(cg, 0x1f)};
  if (t == cg->f32 || t == cg->i32) {
    args[1] = x;
    return cg_intrinsic(cg, t == cg->f32 ? "llvm.nvvm.shfl.sync.bfly.f32" : "llvm.nvvm.shfl.sync.bfly.i32",
                        NULL, 0, args, 4);
  }
  if (t == cg->f64 || t == cg->i64) {
    LLVMTypeRef v2 = LLVMVectorType(cg->i32, 2);
    LLVMValueRef v = LLVMBuildBitCast(b, x, v2, "");
    LLVMValueRef r = LLVMGetUndef(v2);
    for (int k = 0; k < 2; k++) {
      args[1] = LLVMBuildExtractElement(b, v, cg_i32(cg, k), "");
      LLVMValueRef s = cg_intrinsic(cg, "llvm.nvvm.shfl.sync.bfly.i32", NULL, 0, args, 4);
      r = LLVMBuildInsertElement(b, r, s, cg_i32(cg, k), "");
    }
    return LLVMBuildBitCast(b, r, t, "");
  }
  // narrower: i1 / i8 / i16 / f16 / bf16
  LLVMValueRef w = x;
  bool isfp = LLVMGetTypeKind(t) == LLVMHalfTypeKind || LLVMGetTypeKind(t) == LLVMBFloatTypeKind;
  if (isfp) w = LLVMBuildBitCast(b, x, cg->i16, "");
  args[1] = LLVMBuildZExt(b, w, cg->i32, "");
  LLVMValueRef s = cg_intrinsic(cg, "llvm.nvvm.shfl.sync.bfly.i32", NULL, 0, args, 4);
  s = LLVMBuildTrunc(b, s, isfp ? cg->i16 : t, "");
  return isfp ? LLVMBuildBitCast(b, s, t, "") : s;
}

void lower_reduce(Cg *cg, TirInst *in) {
  LLVMBuilderRef b = cg->b;
  TirValue *a = in->args[0], *res = in->res[0];
  int axis = in->axis;
  if (axis < 0 || axis >= a->type.rank) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: reduce axis %d", axis);
    return;
  }
  const Layout *La = cg->vi[a->id].remat ? layout_default(cg, a->type) : cg->vi[a->id].nat;
  const Layout *Lr = cg->vi[res->id].nat;
  LLVMValueRef *X = cg_get(cg, a, La);
  if (!X) return;
  Red r = {in->redop, value_dtype(in), is_arg(in->redop)};
  Dtype in_dt = a->type.dtype;
  int nout = Lr->nelem;
  LLVMValueRef *V = cg_alloc_elems(cg, nout), *I = cg_alloc_elems(cg, nout);
  if (!V || !I) return;
  for (int j = 0; j < nout; j++) V[j] = I[j] = NULL;

  // 1. within the thread, in increasing coordinate order
  for (int s = 0; s < La->nelem; s++) {
    int j;
    if (La->rank == 1) j = 0;
    else j = axis == 1 ? s / La->cnt[1] : s % La->cnt[1];
    LLVMValueRef v = r.arg ? X[s] : lower_convert(cg, X[s], in_dt, r.vt);
    LLVMValueRef idx = r.arg ? cg_coord(cg, La, s, axis) : NULL;
    if (!V[j]) {
      V[j] = v;
      I[j] = idx;
    } else {
      combine(cg, &r, &V[j], &I[j], v, idx);
    }
  }
  // 2. across the distinct lanes along the axis
  int g = La->gdim[axis];
  int nl = layout_lanes(La, axis);
  int shift = g == 1 ? 0 : cg_ilog2(La->tpw[1]);
  for (int m = 1; m < nl; m <<= 1) {
    for (int j = 0; j < nout; j++) {
      LLVMValueRef w = shfl(cg, V[j], m << shift);
      LLVMValueRef wi = r.arg ? shfl(cg, I[j], m << shift) : NULL;
      combine(cg, &r, &V[j], &I[j], w, wi);
    }
  }
  // 3. across the distinct warps along the axis
  int nw = layout_warps(La, axis);
  if (nw > 1) {
    LLVMValueRef wc;
    if (g == 1) wc = LLVMBuildAnd(b, cg->warp, cg_i32(cg, nw - 1), "");
    else wc = LLVMBuildAnd(b, LLVMBuildLShr(b, cg->warp, cg_i32(cg, cg_ilog2(La->wpc[1])), ""), cg_i32(cg, nw - 1), "");
    LLVMTypeRef vt = cg_mem_type(cg, r.vt);
    int vb = cg_dtype_bytes(r.vt);
    int nall = res->type.rank == 0 ? 1 : res->type.shape[0];
    int ioff = (nall * nw * vb + 15) / 16 * 16;
    // The first barrier retires earlier readers of the scratch. Code is
    // emitted in program order, so a reduction outside any loop with no
    // shared memory access before it (a kernel's first) has none.
    if (cg->smem_used || tir_in_loop(in)) cg_barrier(cg);
    LLVMValueRef *oc = cg_alloc_elems(cg, nout);
    if (!oc) return;
    for (int j = 0; j < nout; j++) {
      oc[j] = Lr->rank == 0 ? cg_i32(cg, 0) : cg_coord(cg, Lr, j, 0);
      LLVMValueRef slot = LLVMBuildAdd(b, LLVMBuildMul(b, oc[j], cg_i32(cg, nw), ""), wc, "");
      LLVMValueRef v = r.vt == DT_BOOL ? LLVMBuildZExt(b, V[j], cg->i8, "") : V[j];
      LLVMSetAlignment(LLVMBuildStore(b, v, cg_smem_ptr(cg, LLVMBuildMul(b, slot, cg_i32(cg, vb), ""))), (unsigned)vb);
      if (r.arg) {
        LLVMValueRef off = LLVMBuildAdd(b, cg_i32(cg, ioff), LLVMBuildMul(b, slot, cg_i32(cg, 4), ""), "");
        LLVMSetAlignment(LLVMBuildStore(b, I[j], cg_smem_ptr(cg, off)), 4);
      }
    }
    cg_barrier(cg);
    for (int j = 0; j < nout; j++) {
      LLVMValueRef acc = NULL, acci = NULL;
      for (int w = 0; w < nw; w++) {
        LLVMValueRef slot = LLVMBuildAdd(b, LLVMBuildMul(b, oc[j], cg_i32(cg, nw), ""), cg_i32(cg, w), "");
        LLVMValueRef v = LLVMBuildLoad2(b, vt, cg_smem_ptr(cg, LLVMBuildMul(b, slot, cg_i32(cg, vb), "")), "");
        LLVMSetAlignment(v, (unsigned)vb);
        if (r.vt == DT_BOOL) v = LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstInt(cg->i8, 0, 0), "");
        LLVMValueRef vi = NULL;
        if (r.arg) {
          LLVMValueRef off = LLVMBuildAdd(b, cg_i32(cg, ioff), LLVMBuildMul(b, slot, cg_i32(cg, 4), ""), "");
          vi = LLVMBuildLoad2(b, cg->i32, cg_smem_ptr(cg, off), "");
          LLVMSetAlignment(vi, 4);
        }
        if (!acc) {
          acc = v;
          acci = vi;
        } else {
          combine(cg, &r, &acc, &acci, v, vi);
        }
      }
      V[j] = acc;
      I[j] = acci;
    }
  }
  cg_set(cg, res, Lr, r.arg ? I : V);
}
