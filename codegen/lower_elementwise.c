/* lower_elementwise.c: constants, index ops, arithmetic, compares, casts,
 * math and philox, one element at a time.
 *
 * requires: the layout pass (layout.c) and operands lowered in the layout
 * asked for; produces: the result's elements in that layout.
 *
 * Every rule here mirrors the interpreter (tir.h semantics): f16/bf16 math is
 * done in f32 and rounded once per op; integer division by zero gives -1 /
 * the dividend; shifts by >= the width give 0 or the sign fill; float->int
 * casts saturate (llvm.fpto[su]i.sat, NaN -> 0). LLVM treats an oversized
 * shift or a zero divisor as poison / UB, so each of those is guarded with a
 * select around a safe operand.
 */
#include "layout.h"

#include <string.h>

bool lower_is_elementwise(TirOp op) {
  switch (op) {
  case TIR_CONST: case TIR_ARANGE: case TIR_SPLAT: case TIR_BROADCAST: case TIR_EXPAND_DIMS:
  case TIR_NEG: case TIR_NOT: case TIR_ABS: case TIR_EXP: case TIR_EXP2: case TIR_LOG:
  case TIR_LOG2: case TIR_SQRT: case TIR_RSQRT: case TIR_ERF: case TIR_TANH: case TIR_FLOOR:
  case TIR_CEIL: case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_DIV: case TIR_REM:
  case TIR_MAX: case TIR_MIN: case TIR_AND: case TIR_OR: case TIR_XOR: case TIR_SHL:
  case TIR_SHR: case TIR_CMP: case TIR_PTR_ADD: case TIR_FMA: case TIR_WHERE: case TIR_CAST:
  case TIR_BITCAST: case TIR_PHILOX:
    return true;
  default:
    return false;
  }
}

static bool narrow_float(Dtype dt) { return dt == DT_F16 || dt == DT_BF16; }

// Register value to the type math is done in (f32 for f16/bf16).
static LLVMValueRef widen(Cg *cg, LLVMValueRef x, Dtype dt) {
  return narrow_float(dt) ? LLVMBuildFPExt(cg->b, x, cg->f32, "") : x;
}
static LLVMValueRef narrow(Cg *cg, LLVMValueRef x, Dtype dt) {
  return narrow_float(dt) ? LLVMBuildFPTrunc(cg->b, x, cg_type(cg, dt), "") : x;
}

LLVMValueRef lower_convert(Cg *cg, LLVMValueRef x, Dtype from, Dtype to) {
  LLVMBuilderRef b = cg->b;
  if (from == to) return x;
  LLVMTypeRef tt = cg_type(cg, to);
  if (to == DT_BOOL) {
    if (dtype_is_float(from))
      return LLVMBuildFCmp(b, LLVMRealUNE, x, LLVMConstNull(cg_type(cg, from)), "");
    return LLVMBuildICmp(b, LLVMIntNE, x, LLVMConstNull(cg_type(cg, from)), "");
  }
  if (from == DT_BOOL) {
    if (dtype_is_float(to)) return LLVMBuildUIToFP(b, x, tt, "");
    return LLVMBuildZExt(b, x, tt, "");
  }
  bool fi = dtype_is_float(from), ti = dtype_is_float(to);
  if (!fi && !ti) {
    int fb = dtype_bits(from), tb = dtype_bits(to);
    if (tb < fb) return LLVMBuildTrunc(b, x, tt, "");
    if (tb == fb) return x;
    return dtype_is_signed(from) ? LLVMBuildSExt(b, x, tt, "") : LLVMBuildZExt(b, x, tt, "");
  }
  if (!fi && ti) {
    // One rounding straight to the target type, as the interpreter's
    // (double)int -> target conversion does for every int that fits a double.
    return dtype_is_signed(from) ? LLVMBuildSIToFP(b, x, tt, "") : LLVMBuildUIToFP(b, x, tt, "");
  }
  if (fi && !ti) {
    LLVMValueRef w = widen(cg, x, from);
    LLVMTypeRef ovl[2] = {tt, LLVMTypeOf(w)};
    return cg_intrinsic(cg, dtype_is_signed(to) ? "llvm.fptosi.sat" : "llvm.fptoui.sat", ovl, 2, &w, 1);
  }
  // float -> float
  if (narrow_float(from) && narrow_float(to)) return LLVMBuildFPTrunc(b, widen(cg, x, from), tt, "");
  if (dtype_bits(to) > dtype_bits(from)) return LLVMBuildFPExt(b, x, tt, "");
  return LLVMBuildFPTrunc(b, x, tt, "");
}

static LLVMValueRef const_elem(Cg *cg, const TirInst *in) {
  TirType t = in->res[0]->type;
  if (t.ptr) return LLVMConstNull(cg->gptr);
  LLVMTypeRef ty = cg_type(cg, t.dtype);
  if (dtype_is_float(t.dtype)) return LLVMConstReal(ty, in->cval.f);
  if (t.dtype == DT_BOOL) return LLVMConstInt(ty, in->cval.i != 0, 0);
  return LLVMConstInt(ty, (unsigned long long)in->cval.i, 0);
}

static LLVMValueRef call1(Cg *cg, const char *name, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return cg_intrinsic(cg, name, &t, 1, &x, 1);
}
static LLVMValueRef call2(Cg *cg, const char *name, LLVMValueRef x, LLVMValueRef y) {
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef a[2] = {x, y};
  return cg_intrinsic(cg, name, &t, 1, a, 2);
}

static LLVMValueRef int_divrem(Cg *cg, bool div, bool sgn, LLVMValueRef x, LLVMValueRef y) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef t = LLVMTypeOf(x);
  LLVMValueRef zero = LLVMConstNull(t), one = LLVMConstInt(t, 1, 0);
  LLVMValueRef yz = LLVMBuildICmp(b, LLVMIntEQ, y, zero, "");
  LLVMValueRef bad = yz;
  if (sgn) {
    // INT_MIN / -1 overflows (UB in LLVM); wrapping gives INT_MIN, rem 0,
    // which dividing by 1 reproduces for the quotient (rem via x % 1 = 0).
    unsigned w = LLVMGetIntTypeWidth(t);
    LLVMValueRef minv = LLVMConstInt(t, 1ull << (w - 1), 0);
    LLVMValueRef ov = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntEQ, x, minv, ""),
                                   LLVMBuildICmp(b, LLVMIntEQ, y, LLVMConstAllOnes(t), ""), "");
    bad = LLVMBuildOr(b, bad, ov, "");
  }
  LLVMValueRef ys = LLVMBuildSelect(b, bad, one, y, "");
  LLVMValueRef r;
  if (div) r = sgn ? LLVMBuildSDiv(b, x, ys, "") : LLVMBuildUDiv(b, x, ys, "");
  else r = sgn ? LLVMBuildSRem(b, x, ys, "") : LLVMBuildURem(b, x, ys, "");
  return LLVMBuildSelect(b, yz, div ? LLVMConstAllOnes(t) : x, r, "");
}

static LLVMValueRef int_shift(Cg *cg, TirOp op, bool sgn, LLVMValueRef x, LLVMValueRef y) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef t = LLVMTypeOf(x);
  unsigned w = LLVMGetIntTypeWidth(t);
  LLVMValueRef big = LLVMBuildICmp(b, LLVMIntUGE, y, LLVMConstInt(t, w, 0), "");
  LLVMValueRef ys = LLVMBuildSelect(b, big, LLVMConstInt(t, w - 1, 0), y, "");
  if (op == TIR_SHL) return LLVMBuildSelect(b, big, LLVMConstNull(t), LLVMBuildShl(b, x, ys, ""), "");
  if (sgn) return LLVMBuildAShr(b, x, ys, "");  // w-1 gives the sign fill
  return LLVMBuildSelect(b, big, LLVMConstNull(t), LLVMBuildLShr(b, x, ys, ""), "");
}

static LLVMValueRef unary_math(Cg *cg, const TirInst *in, LLVMValueRef x, Dtype dt) {
  if (dt == DT_F64) {
    switch (in->op) {
    case TIR_SQRT: return call1(cg, "llvm.sqrt", x);
    case TIR_RSQRT: return LLVMBuildFDiv(cg->b, LLVMConstReal(cg->f64, 1.0), call1(cg, "llvm.sqrt", x), "");
    case TIR_FLOOR: return call1(cg, "llvm.floor", x);
    case TIR_CEIL: return call1(cg, "llvm.ceil", x);
    default:
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: %s on f64 is not supported on the GPU",
               tir_op_names[in->op]);
      return LLVMGetPoison(cg->f64);
    }
  }
  LLVMValueRef w = widen(cg, x, dt), r;
  switch (in->op) {
  case TIR_EXP: r = nvm_exp(cg, w); break;
  case TIR_EXP2: r = nvm_exp2(cg, w); break;
  case TIR_LOG: r = nvm_log(cg, w); break;
  case TIR_LOG2: r = nvm_log2(cg, w); break;
  case TIR_SQRT: r = nvm_sqrt(cg, w); break;
  case TIR_RSQRT: r = nvm_rsqrt(cg, w); break;
  case TIR_ERF: r = nvm_erf(cg, w); break;
  case TIR_TANH: r = nvm_tanh(cg, w); break;
  case TIR_FLOOR: r = call1(cg, "llvm.floor", w); break;
  default: r = call1(cg, "llvm.ceil", w); break;
  }
  return narrow(cg, r, dt);
}

static LLVMValueRef cmp_elem(Cg *cg, int pred, Dtype dt, LLVMValueRef x, LLVMValueRef y) {
  if (dtype_is_float(dt)) {
    static const LLVMRealPredicate fp[CMP_COUNT] = {LLVMRealOLT, LLVMRealOLE, LLVMRealOGT,
                                                    LLVMRealOGE, LLVMRealOEQ, LLVMRealUNE};
    return LLVMBuildFCmp(cg->b, fp[pred], x, y, "");
  }
  bool s = dtype_is_signed(dt);
  static const LLVMIntPredicate sp[CMP_COUNT] = {LLVMIntSLT, LLVMIntSLE, LLVMIntSGT,
                                                 LLVMIntSGE, LLVMIntEQ, LLVMIntNE};
  static const LLVMIntPredicate up[CMP_COUNT] = {LLVMIntULT, LLVMIntULE, LLVMIntUGT,
                                                 LLVMIntUGE, LLVMIntEQ, LLVMIntNE};
  return LLVMBuildICmp(cg->b, s ? sp[pred] : up[pred], x, y, "");
}

static LLVMValueRef to_u64(Cg *cg, LLVMValueRef x, Dtype dt) {
  if (dt == DT_BOOL) return LLVMBuildZExt(cg->b, x, cg->i64, "");
  if (dtype_bits(dt) >= 64) return x;
  return dtype_is_signed(dt) ? LLVMBuildSExt(cg->b, x, cg->i64, "") : LLVMBuildZExt(cg->b, x, cg->i64, "");
}

LLVMValueRef lower_elem(Cg *cg, const TirInst *in, LLVMValueRef *a) {
  LLVMBuilderRef b = cg->b;
  Dtype dt = in->nargs > 0 ? in->args[0]->type.dtype : DT_VOID;
  Dtype rt = in->nres > 0 ? in->res[0]->type.dtype : DT_VOID;
  bool fl = dtype_is_float(dt), sg = dtype_is_signed(dt);
  switch (in->op) {
  case TIR_CONST: return const_elem(cg, in);
  case TIR_NEG: return fl ? LLVMBuildFNeg(b, a[0], "") : LLVMBuildNeg(b, a[0], "");
  case TIR_NOT: return LLVMBuildNot(b, a[0], "");
  case TIR_ABS:
    if (fl) return call1(cg, "llvm.fabs", a[0]);
    if (!sg || dt == DT_BOOL) return a[0];
    return call2(cg, "llvm.abs", a[0], LLVMConstInt(cg->i1, 0, 0));
  case TIR_EXP: case TIR_EXP2: case TIR_LOG: case TIR_LOG2: case TIR_SQRT: case TIR_RSQRT:
  case TIR_ERF: case TIR_TANH: case TIR_FLOOR: case TIR_CEIL:
    return unary_math(cg, in, a[0], dt);
  case TIR_ADD: case TIR_SUB: case TIR_MUL: case TIR_DIV: case TIR_REM:
    if (fl) {
      LLVMValueRef x = widen(cg, a[0], dt), y = widen(cg, a[1], dt), r;
      switch (in->op) {
      case TIR_ADD: r = LLVMBuildFAdd(b, x, y, ""); break;
      case TIR_SUB: r = LLVMBuildFSub(b, x, y, ""); break;
      case TIR_MUL: r = LLVMBuildFMul(b, x, y, ""); break;
      case TIR_DIV: r = LLVMBuildFDiv(b, x, y, ""); break;
      // PTX has no fmod and LLVM's frem expansion (x - trunc(x / y) * y)
      // is inexact; f64 keeps it for now.
      default: r = dt == DT_F64 ? LLVMBuildFRem(b, x, y, "") : nvm_fmod(cg, x, y); break;
      }
      // f16/bf16 round to their type after every operation: InstCombine
      // would shrink the widened op back to a half one, flag and all, and
      // NVPTX would fuse it (fma.rn.f16), so only f32 and f64 contract.
      if (in->op != TIR_DIV && in->op != TIR_REM && (dt == DT_F32 || dt == DT_F64)) r = cg_contract(cg, r);
      return narrow(cg, r, dt);
    }
    switch (in->op) {
    case TIR_ADD: return LLVMBuildAdd(b, a[0], a[1], "");
    case TIR_SUB: return LLVMBuildSub(b, a[0], a[1], "");
    case TIR_MUL: return LLVMBuildMul(b, a[0], a[1], "");
    case TIR_DIV: return int_divrem(cg, true, sg, a[0], a[1]);
    default: return int_divrem(cg, false, sg, a[0], a[1]);
    }
  case TIR_MAX: case TIR_MIN: {
    bool mx = in->op == TIR_MAX;
    if (fl) return narrow(cg, call2(cg, mx ? "llvm.maxnum" : "llvm.minnum", widen(cg, a[0], dt), widen(cg, a[1], dt)), dt);
    if (sg) return call2(cg, mx ? "llvm.smax" : "llvm.smin", a[0], a[1]);
    return call2(cg, mx ? "llvm.umax" : "llvm.umin", a[0], a[1]);
  }
  case TIR_AND: return LLVMBuildAnd(b, a[0], a[1], "");
  case TIR_OR: return LLVMBuildOr(b, a[0], a[1], "");
  case TIR_XOR: return LLVMBuildXor(b, a[0], a[1], "");
  case TIR_SHL: case TIR_SHR:
    if (dt == DT_BOOL) {  // width 1: any amount >= 1 clears it
      LLVMValueRef z = LLVMBuildICmp(b, LLVMIntEQ, a[1], LLVMConstInt(cg->i1, 0, 0), "");
      return LLVMBuildAnd(b, a[0], z, "");
    }
    return int_shift(cg, in->op, sg, a[0], a[1]);
  case TIR_CMP: return cmp_elem(cg, in->pred, dt, a[0], a[1]);
  case TIR_PTR_ADD: {
    Dtype it = in->args[1]->type.dtype;
    LLVMValueRef idx = a[1];
    if (it == DT_BOOL || dtype_bits(it) < 64)
      idx = (it != DT_BOOL && dtype_is_signed(it)) ? LLVMBuildSExt(b, idx, cg->i64, "")
                                                    : LLVMBuildZExt(b, idx, cg->i64, "");
    return LLVMBuildGEP2(b, cg_mem_type(cg, dt), a[0], &idx, 1, "");
  }
  case TIR_FMA: {
    if (dt == DT_F64) {
      LLVMTypeRef t = cg->f64;
      return cg_intrinsic(cg, "llvm.fma", &t, 1, a, 3);
    }
    LLVMValueRef w[3] = {widen(cg, a[0], dt), widen(cg, a[1], dt), widen(cg, a[2], dt)};
    LLVMTypeRef t = cg->f32;
    return narrow(cg, cg_intrinsic(cg, "llvm.fma", &t, 1, w, 3), dt);
  }
  case TIR_WHERE: return LLVMBuildSelect(b, a[0], a[1], a[2], "");
  case TIR_CAST: return lower_convert(cg, a[0], dt, rt);
  case TIR_BITCAST:
    if (dt == rt) return a[0];
    if (dt == DT_BOOL || rt == DT_BOOL || dtype_bits(dt) != dtype_bits(rt)) {
      cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: bitcast %s -> %s", dtype_name(dt), dtype_name(rt));
      return LLVMGetPoison(cg_type(cg, rt));
    }
    return LLVMBuildBitCast(b, a[0], cg_type(cg, rt), "");
  case TIR_PHILOX: {
    LLVMValueRef seed = to_u64(cg, a[0], in->args[0]->type.dtype);
    LLVMValueRef ctr = to_u64(cg, a[1], in->args[1]->type.dtype);
    LLVMValueRef lane = lower_convert(cg, a[2], in->args[2]->type.dtype, DT_U32);
    if (in->args[2]->type.dtype == DT_BOOL) lane = LLVMBuildZExt(b, a[2], cg->i32, "");
    LLVMValueRef r = nvm_philox(cg, seed, ctr, lane);
    return lower_convert(cg, r, DT_U32, rt);
  }
  default:
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: %s is not elementwise",
             tir_op_names[in->op]);
    return LLVMGetPoison(cg->i32);
  }
}

// f32 -> f16/bf16 two elements at a time, for a value only stored: slots i
// and i + 1 that are neighbours in a thread's run of the last dim, which the
// store packs into one 32-bit word (lower element low). One
// cvt.rn.{bf16,f16}x2.f32 (F2FP.PACK_AB) instead of two conversions and a
// repack; same rounding (to nearest even). Other users (an MMA operand
// packs its own pairs) keep the scalar form: there the pairs need not match,
// and the unpacking cost attention's forward kernel a spill.
static bool narrow_pairs(Cg *cg, const TirInst *in, const Layout *L) {
  if (in->op != TIR_CAST || L->rank == 0 || L->espt[L->rank - 1] % 2 != 0) return false;
  const TirValue *r = in->res[0];
  if (in->args[0]->type.dtype != DT_F32 || !narrow_float(r->type.dtype)) return false;
  const ValInfo *vi = &cg->vi[r->id];
  for (int u = 0; u < vi->nusers; u++)
    if (vi->users[u]->op != TIR_STORE || vi->users[u]->args[1] != r) return false;
  return vi->nusers > 0;
}

static void narrow_pair(Cg *cg, Dtype to, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef out[2]) {
  LLVMValueRef a[2] = {hi, lo};   // cvt d, a, b puts a in the upper half
  LLVMValueRef v = cg_intrinsic(cg, to == DT_BF16 ? "llvm.nvvm.ff2bf16x2.rn" : "llvm.nvvm.ff2f16x2.rn", NULL, 0,
                                a, 2);
  for (int k = 0; k < 2; k++) out[k] = LLVMBuildExtractElement(cg->b, v, cg_i32(cg, k), "");
}

// Computes in's result in layout L from its operands (remat values, or a
// non-remat elementwise op in its natural layout).
static void lower_in_layout(Cg *cg, TirInst *in, const Layout *L) {
  TirValue *r = in->res[0];
  LLVMValueRef *out = cg_alloc_elems(cg, L->nelem);
  if (!out) return;
  switch (in->op) {
  case TIR_CONST: {
    LLVMValueRef c = const_elem(cg, in);
    for (int i = 0; i < L->nelem; i++) out[i] = c;
    break;
  }
  case TIR_ARANGE:
    for (int i = 0; i < L->nelem; i++) {
      LLVMValueRef c = cg_coord(cg, L, i, 0);
      out[i] = in->lo ? LLVMBuildAdd(cg->b, c, cg_i32(cg, in->lo), "") : c;
      if (r->type.dtype != DT_I32) out[i] = lower_convert(cg, out[i], DT_I32, r->type.dtype);
    }
    break;
  case TIR_SPLAT: {
    LLVMValueRef s = cg_get0(cg, in->args[0]);
    for (int i = 0; i < L->nelem; i++) out[i] = s;
    break;
  }
  case TIR_BROADCAST: case TIR_EXPAND_DIMS: {
    TirValue *a = in->args[0];
    if (a->type.rank == 0) {
      LLVMValueRef s = cg_get0(cg, a);
      for (int i = 0; i < L->nelem; i++) out[i] = s;
      break;
    }
    const Layout *La = in->op == TIR_BROADCAST ? layout_collapse(cg, L, a->type.shape)
                                               : layout_slice(cg, L, in->axis);
    LLVMValueRef *src = cg_get(cg, a, La);
    if (!src) return;
    for (int i = 0; i < L->nelem; i++) {
      int k[2] = {0, 0};
      if (L->rank == 2) {
        k[0] = i / L->cnt[1];
        k[1] = i % L->cnt[1];
      } else {
        k[0] = i;
      }
      int j;
      if (in->op == TIR_BROADCAST) {
        for (int d = 0; d < L->rank; d++)
          if (a->type.shape[d] == 1) k[d] = 0;
        j = La->rank == 2 ? k[0] * La->cnt[1] + k[1] : k[0];
      } else {
        j = L->rank == 2 ? k[1 - in->axis] : 0;
      }
      out[i] = src[j];
    }
    break;
  }
  default: {
    LLVMValueRef *args[3] = {NULL, NULL, NULL};
    for (int k = 0; k < in->nargs && k < 3; k++)
      args[k] = in->args[k]->type.rank == 0 ? NULL : cg_get(cg, in->args[k], L);
    LLVMValueRef s[3] = {NULL, NULL, NULL};
    for (int k = 0; k < in->nargs && k < 3; k++)
      if (!args[k]) s[k] = cg_get0(cg, in->args[k]);
    // Where the axis analysis proves the result constant over groups of the
    // last dim (a mask `cols < n` with n a multiple of 16 is constant over
    // each thread's run), compute one element per group and reuse it. LLVM
    // cannot see this (it does not know n % 16 == 0), and without it every
    // element keeps its own predicate alive: 32 predicates where 4 carry the
    // information, which costs registers and occupancy (layernorm lost 20%
    // of its bandwidth to it).
    int d = L->rank - 1, grp = 1;
    if (d >= 0) {
      grp = cg->vi[r->id].ax.cnst[d];
      if (grp > L->espt[d]) grp = L->espt[d];
      if (grp < 1) grp = 1;
    }
    bool pairs = grp == 1 && narrow_pairs(cg, in, L) && args[0];
    for (int i = 0; i < L->nelem && cg->err == TJ_OK; i++) {
      int j = grp > 1 ? layout_off(L, i, d) % grp : 0;
      if (j) {
        out[i] = out[i - j];
        continue;
      }
      if (pairs) {   // the run is even, so slot i is its even half and i + 1 the odd
        narrow_pair(cg, r->type.dtype, args[0][i], args[0][i + 1], &out[i]);
        i++;
        continue;
      }
      LLVMValueRef e[3];
      for (int k = 0; k < in->nargs && k < 3; k++) e[k] = args[k] ? args[k][i] : s[k];
      out[i] = lower_elem(cg, in, e);
    }
    break;
  }
  }
  cg_set(cg, r, L, out);
}

void lower_remat(Cg *cg, TirInst *in, const Layout *L) { lower_in_layout(cg, in, L); }

void lower_elementwise_inst(Cg *cg, TirInst *in) {
  if (!lower_is_elementwise(in->op) || in->nres != 1 || in->nargs > 3) {
    cg_error(cg, TJ_ERR_UNSUPPORTED, in->loc, "codegen: op %s is not supported", tir_op_names[in->op]);
    return;
  }
  TirValue *r = in->res[0];
  ValInfo *vi = &cg->vi[r->id];
  if (r->type.rank == 0) {
    LLVMValueRef e[3];
    for (int k = 0; k < in->nargs; k++) e[k] = cg_get0(cg, in->args[k]);
    LLVMValueRef *out = cg_alloc_elems(cg, 1);
    if (!out) return;
    out[0] = lower_elem(cg, in, e);
    cg_set(cg, r, layout_scalar(cg), out);
    return;
  }
  // Remat values (broadcast and expand_dims always: they are views) are
  // built in each layout a user asked for.
  if (vi->remat) {
    for (int i = 0; i < vi->nreq && cg->err == TJ_OK; i++) lower_in_layout(cg, in, vi->req[i]);
    return;
  }
  lower_in_layout(cg, in, vi->nat);
}
