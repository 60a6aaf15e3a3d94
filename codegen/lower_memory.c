/* lower_memory.c: global loads and stores, and moving tiles between layouts
 * through shared memory.
 *
 * requires: the layout pass (a load's layout is its natural one, a store's
 * layout_store) and the axis facts of their operands; produces: vector accesses
 * where contiguity, alignment and mask constancy are proven, else scalar
 * ones.
 *
 * A thread's run of espt consecutive elements along the last dim is split
 * into vectors of `vec` elements, vec being the largest power of two with
 *   vec <= run, vec <= contiguity of the pointers, vec * size <= 16 bytes,
 *   the run start provably aligned to vec * size (divisibility), and the
 *   mask constant over aligned groups of vec (constancy).
 * Unmasked vectors are plain LLVM loads/stores of <n x i32> with that
 * alignment (ld.global.v4.b32 for 16 bytes). Masked ones are predicated
 * inline PTX, as Triton emits them: `@p ld.global.v4.b32 {...}, [a]` after
 * zeroing the destinations, then `other` is selected in per element. The asm
 * is marked as having side effects so LLVM never moves a load across a store
 * (kernels may work in place). One-byte elements use a branch instead.
 * Replicated layouts store from the owning thread only (cg_owner).
 */
#include "layout.h"

#include <stdio.h>
#include <string.h>

static int imin(int a, int b) { return a < b ? a : b; }

// Every shared memory access goes through here (or sets smem_used itself, as
// mma.c's wgmma descriptors do), so a reduction can tell that nothing read
// the scratch before it. Code placed out of program order (the cp.async
// prologue in a loop's preheader) touches only its own stage buffers.
LLVMValueRef cg_smem_ptr(Cg *cg, LLVMValueRef byte_off) {
  cg->smem_used = true;
  return LLVMBuildGEP2(cg->b, cg->i8, cg->smem, &byte_off, 1, "");
}

// Vector width in elements for the accesses of a load/store in layout L.
static int vector_width(Cg *cg, const Layout *L, TirValue *ptr, TirValue *mask, int eb) {
  int d = L->rank - 1;
  const AxisInfo *pa = &cg->vi[ptr->id].ax;
  int vec = imin(L->espt[d], pa->contig[d]);
  if (L->cnt[d] % vec) vec = 1;
  while (vec > 1 && (vec * eb > 16 || pa->div[d] < (int64_t)vec * eb)) vec /= 2;
  if (mask) {
    const AxisInfo *ma = &cg->vi[mask->id].ax;
    while (vec > 1 && ma->cnst[d] < vec) vec /= 2;
  }
  return vec;
}

// Type of a whole vector access of `bytes` bytes (>= 2).
static LLVMTypeRef word_type(Cg *cg, int bytes) {
  if (bytes == 2) return cg->i16;
  if (bytes == 4) return cg->i32;
  return LLVMVectorType(cg->i32, (unsigned)(bytes / 4));
}

// Predicated global load of `bytes` (2..16) at p; masked-off gives zeros.
static LLVMValueRef asm_load(Cg *cg, LLVMValueRef p, LLVMValueRef pred, int bytes) {
  char text[512], cons[128];
  int n = bytes >= 4 ? bytes / 4 : 1;
  const char *reg = bytes >= 4 ? "r" : "h";
  const char *w = bytes >= 4 ? "b32" : "b16";
  size_t t = 0, c = 0;
  for (int i = 0; i < n; i++) {
    t += (size_t)snprintf(text + t, sizeof text - t, "mov.%s $%d, 0x0;\n\t", bytes >= 4 ? "u32" : "u16", i);
    c += (size_t)snprintf(cons + c, sizeof cons - c, "=%s,", reg);
  }
  if (n == 1)
    t += (size_t)snprintf(text + t, sizeof text - t, "@$%d ld.global.%s $0, [ $%d + 0 ];", n + 1, w, n);
  else {
    t += (size_t)snprintf(text + t, sizeof text - t, "@$%d ld.global.v%d.%s { ", n + 1, n, w);
    for (int i = 0; i < n; i++) t += (size_t)snprintf(text + t, sizeof text - t, "$%d%s", i, i + 1 < n ? ", " : " ");
    t += (size_t)snprintf(text + t, sizeof text - t, "}, [ $%d + 0 ];", n);
  }
  snprintf(cons + c, sizeof cons - c, "l,b");
  LLVMTypeRef et = bytes >= 4 ? cg->i32 : cg->i16;
  LLVMTypeRef rt;
  if (n == 1) rt = et;
  else {
    LLVMTypeRef els[4] = {et, et, et, et};
    rt = LLVMStructTypeInContext(cg->ctx, els, (unsigned)n, 0);
  }
  LLVMTypeRef at[2] = {cg->gptr, cg->i1};
  LLVMTypeRef fty = LLVMFunctionType(rt, at, 2, 0);
  LLVMValueRef asmv = LLVMGetInlineAsm(fty, text, strlen(text), cons, strlen(cons), 1, 0,
                                       LLVMInlineAsmDialectATT, 0);
  LLVMValueRef args[2] = {p, pred};
  LLVMValueRef r = LLVMBuildCall2(cg->b, fty, asmv, args, 2, "");
  LLVMTypeRef wt = word_type(cg, bytes);
  if (n == 1) return r;
  LLVMValueRef v = LLVMGetUndef(wt);
  for (int i = 0; i < n; i++)
    v = LLVMBuildInsertElement(cg->b, v, LLVMBuildExtractValue(cg->b, r, (unsigned)i, ""), cg_i32(cg, i), "");
  return v;
}

static void asm_store(Cg *cg, LLVMValueRef p, LLVMValueRef word, LLVMValueRef pred, int bytes) {
  char text[256], cons[128];
  int n = bytes >= 4 ? bytes / 4 : 1;
  const char *reg = bytes >= 4 ? "r" : "h";
  const char *w = bytes >= 4 ? "b32" : "b16";
  size_t t = 0, c = 0;
  c += (size_t)snprintf(cons + c, sizeof cons - c, "l,");
  if (n == 1)
    t += (size_t)snprintf(text, sizeof text, "@$2 st.global.%s [ $0 + 0 ], $1;", w);
  else {
    t += (size_t)snprintf(text, sizeof text, "@$%d st.global.v%d.%s [ $0 + 0 ], { ", n + 1, n, w);
    for (int i = 0; i < n; i++) t += (size_t)snprintf(text + t, sizeof text - t, "$%d%s", i + 1, i + 1 < n ? ", " : " ");
    t += (size_t)snprintf(text + t, sizeof text - t, "};");
  }
  for (int i = 0; i < n; i++) c += (size_t)snprintf(cons + c, sizeof cons - c, "%s,", reg);
  snprintf(cons + c, sizeof cons - c, "b");
  LLVMTypeRef et = bytes >= 4 ? cg->i32 : cg->i16;
  LLVMTypeRef at[6] = {cg->gptr};
  LLVMValueRef args[6] = {p};
  for (int i = 0; i < n; i++) {
    at[1 + i] = et;
    args[1 + i] = n == 1 ? word : LLVMBuildExtractElement(cg->b, word, cg_i32(cg, i), "");
  }
  at[n + 1] = cg->i1;
  args[n + 1] = pred;
  LLVMTypeRef fty = LLVMFunctionType(cg->voidt, at, (unsigned)n + 2, 0);
  LLVMValueRef asmv = LLVMGetInlineAsm(fty, text, strlen(text), cons, strlen(cons), 1, 0,
                                       LLVMInlineAsmDialectATT, 0);
  LLVMBuildCall2(cg->b, fty, asmv, args, (unsigned)n + 2, "");
}

// Masked scalar access by a branch (one-byte elements, scalars).
static LLVMValueRef branch_load(Cg *cg, LLVMTypeRef mt, LLVMValueRef p, LLVMValueRef pred, int align) {
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(cg->b);
  LLVMBasicBlockRef thenb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "ld.then");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "ld.join");
  LLVMBuildCondBr(cg->b, pred, thenb, join);
  LLVMPositionBuilderAtEnd(cg->b, thenb);
  LLVMValueRef v = LLVMBuildLoad2(cg->b, mt, p, "");
  LLVMSetAlignment(v, (unsigned)align);
  LLVMBuildBr(cg->b, join);
  LLVMPositionBuilderAtEnd(cg->b, join);
  LLVMValueRef phi = LLVMBuildPhi(cg->b, mt, "");
  LLVMValueRef vals[2] = {LLVMConstNull(mt), v};
  LLVMBasicBlockRef bbs[2] = {cur, thenb};
  LLVMAddIncoming(phi, vals, bbs, 2);
  return phi;
}

static void branch_store(Cg *cg, LLVMValueRef p, LLVMValueRef v, LLVMValueRef pred, int align) {
  LLVMBasicBlockRef thenb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "st.then");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "st.join");
  LLVMBuildCondBr(cg->b, pred, thenb, join);
  LLVMPositionBuilderAtEnd(cg->b, thenb);
  LLVMValueRef s = LLVMBuildStore(cg->b, v, p);
  LLVMSetAlignment(s, (unsigned)align);
  LLVMBuildBr(cg->b, join);
  LLVMPositionBuilderAtEnd(cg->b, join);
}

static bool is_true(LLVMValueRef v) {
  return v && LLVMIsAConstantInt(v) && LLVMConstIntGetZExtValue(v) == 1;
}

// Memory form -> register form of one element.
static LLVMValueRef from_mem(Cg *cg, LLVMValueRef v, Dtype dt) {
  if (dt == DT_BOOL) return LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstInt(cg->i8, 0, 0), "");
  return v;
}
static LLVMValueRef to_mem(Cg *cg, LLVMValueRef v, Dtype dt) {
  if (dt == DT_BOOL) return LLVMBuildZExt(cg->b, v, cg->i8, "");
  return v;
}

void lower_load(Cg *cg, TirInst *in) {
  TirValue *r = in->res[0];
  TirValue *ptr = in->args[0];
  TirValue *mask = (in->flags & TIR_HAS_MASK) && in->nargs > 1 ? in->args[1] : NULL;
  TirValue *other = (in->flags & TIR_HAS_OTHER) && in->nargs > 2 ? in->args[2] : NULL;
  Dtype dt = r->type.dtype;
  LLVMTypeRef mt = cg_mem_type(cg, dt);
  int eb = cg_dtype_bytes(dt);
  const Layout *L = cg->vi[r->id].nat;
  LLVMValueRef *out = cg_alloc_elems(cg, L->nelem);
  if (!out) return;
  if (r->type.rank == 0) {
    LLVMValueRef p = cg_get0(cg, ptr), v;
    if (mask) v = branch_load(cg, mt, p, cg_get0(cg, mask), eb);
    else {
      v = LLVMBuildLoad2(cg->b, mt, p, "");
      LLVMSetAlignment(v, (unsigned)eb);
    }
    v = from_mem(cg, v, dt);
    if (other && mask) v = LLVMBuildSelect(cg->b, cg_get0(cg, mask), v, cg_get0(cg, other), "");
    out[0] = v;
    cg_set(cg, r, L, out);
    return;
  }
  LLVMValueRef *P = cg_get(cg, ptr, L);
  LLVMValueRef *M = mask ? cg_get(cg, mask, L) : NULL;
  LLVMValueRef *O = other ? cg_get(cg, other, L) : NULL;
  if (!P || (mask && !M) || (other && !O)) return;
  int vec = vector_width(cg, L, ptr, mask, eb);
  int bytes = vec * eb;
  for (int i = 0; i < L->nelem; i += vec) {
    LLVMValueRef pred = M ? M[i] : NULL;
    if (is_true(pred)) pred = NULL;
    if (bytes == 1 || (vec == 1 && !pred)) {
      LLVMValueRef v;
      if (pred) v = branch_load(cg, mt, P[i], pred, eb);
      else {
        v = LLVMBuildLoad2(cg->b, mt, P[i], "");
        LLVMSetAlignment(v, (unsigned)eb);
      }
      out[i] = v;
      continue;
    }
    LLVMValueRef w;
    LLVMTypeRef wt = word_type(cg, bytes);
    if (pred) {
      w = asm_load(cg, P[i], pred, bytes);
    } else {
      w = LLVMBuildLoad2(cg->b, wt, P[i], "");
      LLVMSetAlignment(w, (unsigned)bytes);
    }
    if (vec == 1) {
      out[i] = LLVMBuildBitCast(cg->b, w, mt, "");
    } else {
      LLVMValueRef vv = LLVMBuildBitCast(cg->b, w, LLVMVectorType(mt, (unsigned)vec), "");
      for (int k = 0; k < vec; k++) out[i + k] = LLVMBuildExtractElement(cg->b, vv, cg_i32(cg, k), "");
    }
  }
  for (int i = 0; i < L->nelem; i++) {
    out[i] = from_mem(cg, out[i], dt);
    if (O && M) out[i] = LLVMBuildSelect(cg->b, M[i], out[i], O[i], "");
  }
  cg_set(cg, r, L, out);
}

void lower_store(Cg *cg, TirInst *in) {
  TirValue *ptr = in->args[0], *val = in->args[1];
  TirValue *mask = (in->flags & TIR_HAS_MASK) && in->nargs > 2 ? in->args[2] : NULL;
  Dtype dt = ptr->type.dtype;
  if (val->type.dtype != dt && !val->type.ptr) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: store of %s through *%s",
             dtype_name(val->type.dtype), dtype_name(dt));
    return;
  }
  LLVMTypeRef mt = cg_mem_type(cg, dt);
  int eb = cg_dtype_bytes(dt);
  if (ptr->type.rank == 0) {
    // Every thread holds the scalar: thread 0 writes it.
    LLVMValueRef pred = LLVMBuildICmp(cg->b, LLVMIntEQ, cg->tid, cg_i32(cg, 0), "");
    if (mask) pred = LLVMBuildAnd(cg->b, pred, cg_get0(cg, mask), "");
    branch_store(cg, cg_get0(cg, ptr), to_mem(cg, cg_get0(cg, val), dt), pred, eb);
    return;
  }
  const Layout *L = layout_store(cg, in);
  LLVMValueRef *P = cg_get(cg, ptr, L);
  LLVMValueRef *V = cg_get(cg, val, L);
  LLVMValueRef *M = mask ? cg_get(cg, mask, L) : NULL;
  if (!P || !V || (mask && !M)) return;
  LLVMValueRef own = cg_owner(cg, L);
  if (is_true(own)) own = NULL;
  int vec = vector_width(cg, L, ptr, mask, eb);
  int bytes = vec * eb;
  for (int i = 0; i < L->nelem; i += vec) {
    LLVMValueRef pred = M ? M[i] : NULL;
    if (is_true(pred)) pred = NULL;
    if (own) pred = pred ? LLVMBuildAnd(cg->b, pred, own, "") : own;
    if (bytes == 1 || (vec == 1 && !pred)) {
      LLVMValueRef v = to_mem(cg, V[i], dt);
      if (pred) branch_store(cg, P[i], v, pred, eb);
      else LLVMSetAlignment(LLVMBuildStore(cg->b, v, P[i]), (unsigned)eb);
      continue;
    }
    LLVMValueRef vv;
    if (vec == 1) {
      vv = to_mem(cg, V[i], dt);
    } else {
      vv = LLVMGetUndef(LLVMVectorType(mt, (unsigned)vec));
      for (int k = 0; k < vec; k++)
        vv = LLVMBuildInsertElement(cg->b, vv, to_mem(cg, V[i + k], dt), cg_i32(cg, k), "");
    }
    LLVMValueRef w = LLVMBuildBitCast(cg->b, vv, word_type(cg, bytes), "");
    if (pred) asm_store(cg, P[i], w, pred, bytes);
    else LLVMSetAlignment(LLVMBuildStore(cg->b, w, P[i]), (unsigned)bytes);
  }
}

// ---------------------------------------------------------------- shared memory

static LLVMValueRef linear_index(Cg *cg, const Layout *L, int slot, bool trans) {
  if (L->rank == 1) return cg_coord(cg, L, slot, 0);
  LLVMValueRef c0 = cg_coord(cg, L, slot, 0), c1 = cg_coord(cg, L, slot, 1);
  if (trans)  // element (c0, c1) of the source sits at (c1, c0) of the result
    return LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, c1, cg_i32(cg, L->shape[0]), ""), c0, "");
  return LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, c0, cg_i32(cg, L->shape[1]), ""), c1, "");
}

LLVMValueRef *lower_smem_shuffle(Cg *cg, const LLVMValueRef *src, const Layout *Ls,
                                 const Layout *Ld, Dtype dt, int mode) {
  if (!cg->smem) {
    cg_error(cg, TJ_ERR_INTERNAL, (Loc){0}, "internal error: codegen: no scratch for a layout change");
    return NULL;
  }
  LLVMValueRef *out = cg_alloc_elems(cg, Ld->nelem);
  if (!out) return NULL;
  LLVMTypeRef mt = cg_mem_type(cg, dt);
  int eb = cg_dtype_bytes(dt);
  LLVMValueRef ebv = cg_i32(cg, eb);
  // The first barrier retires earlier readers of the scratch buffer.
  cg_barrier(cg);
  for (int i = 0; i < Ls->nelem; i++) {
    LLVMValueRef idx = linear_index(cg, Ls, i, mode == SHUF_TRANS);
    LLVMValueRef p = cg_smem_ptr(cg, LLVMBuildMul(cg->b, idx, ebv, ""));
    LLVMValueRef v = dt == DT_BOOL ? LLVMBuildZExt(cg->b, src[i], cg->i8, "") : src[i];
    LLVMSetAlignment(LLVMBuildStore(cg->b, v, p), (unsigned)eb);
  }
  cg_barrier(cg);
  for (int i = 0; i < Ld->nelem; i++) {
    LLVMValueRef idx = linear_index(cg, Ld, i, false);
    LLVMValueRef p = cg_smem_ptr(cg, LLVMBuildMul(cg->b, idx, ebv, ""));
    LLVMValueRef v = LLVMBuildLoad2(cg->b, mt, p, "");
    LLVMSetAlignment(v, (unsigned)eb);
    out[i] = from_mem(cg, v, dt);
  }
  return out;
}

void lower_reshape_trans(Cg *cg, TirInst *in) {
  TirValue *a = in->args[0], *r = in->res[0];
  const Layout *La = cg->vi[a->id].remat ? layout_default(cg, a->type) : cg->vi[a->id].nat;
  const Layout *Ld = cg->vi[r->id].nat;
  LLVMValueRef *src = cg_get(cg, a, La);
  if (!src) return;
  Dtype dt = a->type.ptr ? DT_U64 : a->type.dtype;
  LLVMValueRef *tmp = src;
  if (a->type.ptr) {
    tmp = cg_alloc_elems(cg, La->nelem);
    if (!tmp) return;
    for (int k = 0; k < La->nelem; k++) tmp[k] = LLVMBuildPtrToInt(cg->b, src[k], cg->i64, "");
  }
  LLVMValueRef *out = lower_smem_shuffle(cg, tmp, La, Ld, dt, in->op == TIR_TRANS ? SHUF_TRANS : SHUF_RESHAPE);
  if (!out) return;
  if (a->type.ptr)
    for (int k = 0; k < Ld->nelem; k++) out[k] = LLVMBuildIntToPtr(cg->b, out[k], cg->gptr, "");
  cg_set(cg, r, Ld, out);
}
