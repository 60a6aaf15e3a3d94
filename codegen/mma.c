/* mma.c: dot on tensor cores: mma.sync.aligned.m16n8k16 with f16/bf16
 * operands and f32 accumulation, the operands read by ldmatrix from
 * swizzled shared memory (sm_80 and later).
 *
 * requires: the layout pass, which gave the dot's result layout_mma(M, N,
 * wm, wn) (mma_supported chose wm x wn) and decided through pipe_consider
 * which operands arrive in cp.async stage buffers; produces: the result in
 * that layout, in registers.
 *
 * The accumulator layout
 * ----------------------
 * An m16n8 C fragment gives lane l the rows l/4 and l/4 + 8 and the columns
 * (l%4)*2 + {0, 1}. ldmatrix takes one row address per lane, so the two
 * 8-row halves of an m16 tile may be any two rows of the tile: we take the
 * rows p and p + 8*wm with p = w0*8 + l/4 (w0 the warp's row in the wm x wn
 * warp grid). The columns of an n8 tile are w1*8 + (l%4)*2 + {0,1} + u*8*wn.
 * That is exactly the blocked layout spt [1, 2], tpw [8, 4], wpc [wm, wn]:
 * the thread's row slots 2t and 2t+1 form m tile t, its column slots 2u and
 * 2u+1 n tile u. So the accumulator needs no layout kind of its own; loops
 * carry it, elementwise ops use it and conversions move it like any other.
 *
 * Shared tiles
 * ------------
 * A is kept as [M][K] and B as [K][N], row-major, in 16-byte chunks (eight
 * elements) whose position in the row is XOR-swizzled:
 *   chunk' = chunk ^ ((row / per) % phases),
 *   per = max(1, 128 / rowbytes), phases = min(8, rowbytes / 16).
 * One ldmatrix 8x8 matrix reads the same logical chunk of eight consecutive
 * rows; per * phases == 8, so those eight 16-byte reads land in eight
 * different 16-byte groups of the 128-byte bank window: conflict-free, and
 * likewise the 16-byte stores and cp.async copies that fill the tile. The
 * swizzle depends on row % 8 only, which keeps the lane address terms out
 * of the unrolled k loop.
 *
 * Fragments: A by ldmatrix.x4 (matrices rows 0-7/k 0-7, rows 8-15/k 0-7,
 * rows 0-7/k 8-15, rows 8-15/k 8-15 = registers a0..a3); B by
 * ldmatrix.x4.trans over two n8 tiles (k 0-7 and k 8-15 of each), .x2.trans
 * for an odd last tile. Products are exact and sums are f32, in an order
 * that differs from the interpreter's k loop (results agree to rounding).
 */
#include "layout.h"

#include <stdio.h>
#include <string.h>

static int ilog2i(int x) {
  int n = 0;
  while (x > 1) {
    x >>= 1;
    n++;
  }
  return n;
}

static int pad128(int x) { return (x + 127) / 128 * 128; }

bool mma_supported(Cg *cg, const TirInst *in, int *wm, int *wn) {
  TirType a = in->args[0]->type, b = in->args[1]->type, r = in->res[0]->type;
  if (a.rank != 2 || b.rank != 2 || r.rank != 2 || a.ptr || b.ptr) return false;
  if (a.dtype != b.dtype || (a.dtype != DT_F16 && a.dtype != DT_BF16) || r.dtype != DT_F32) return false;
  int M = a.shape[0], K = a.shape[1], N = b.shape[1];
  if (K % 16 || M % 16 || N % 8 || b.shape[0] != K || r.shape[0] != M || r.shape[1] != N) return false;
  // Warps split the tile so that each warp's part is as square as it can
  // be (fewest ldmatrix per mma); ties go to M.
  int w0 = 1, w1 = 1;
  while (w0 * w1 < cg->num_warps) {
    bool can0 = M % (16 * w0 * 2) == 0, can1 = N % (8 * w1 * 2) == 0;
    if (!can0 && !can1) return false;  // more warps than m16n8 tiles
    if (can0 && (!can1 || M / w0 >= N / w1)) w0 *= 2;
    else w1 *= 2;
  }
  *wm = w0;
  *wn = w1;
  return true;
}

// Row phase of the swizzle for row % 8 == r (r an i32 value in 0..7).
static LLVMValueRef swz_phase(Cg *cg, LLVMValueRef r, int rowbytes) {
  int per = rowbytes >= 128 ? 1 : 128 / rowbytes;
  int phases = rowbytes / 16 < 8 ? rowbytes / 16 : 8;
  LLVMValueRef x = per > 1 ? LLVMBuildLShr(cg->b, r, cg_i32(cg, ilog2i(per)), "") : r;
  return LLVMBuildAnd(cg->b, x, cg_i32(cg, phases - 1), "");
}

LLVMValueRef mma_swizzle(Cg *cg, LLVMValueRef row, LLVMValueRef colbyte, int rowbytes) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef x = swz_phase(cg, LLVMBuildAnd(b, row, cg_i32(cg, 7), ""), rowbytes);
  LLVMValueRef chunk = LLVMBuildXor(b, LLVMBuildLShr(b, colbyte, cg_i32(cg, 4), ""), x, "");
  LLVMValueRef off = LLVMBuildAdd(b, LLVMBuildMul(b, row, cg_i32(cg, rowbytes), ""),
                                  LLVMBuildShl(b, chunk, cg_i32(cg, 4), ""), "");
  return LLVMBuildAdd(b, off, LLVMBuildAnd(b, colbyte, cg_i32(cg, 15), ""), "");
}

// Integer type of a vector access of `bytes` (2, 4, 8 or 16).
static LLVMTypeRef word_type(Cg *cg, int bytes) {
  if (bytes == 2) return cg->i16;
  if (bytes == 4) return cg->i32;
  return LLVMVectorType(cg->i32, (unsigned)(bytes / 4));
}

// Writes the register tile v into the swizzled shared tile at byte `base`,
// each thread's runs of consecutive columns as vectors of up to 16 bytes.
static void stage(Cg *cg, TirValue *v, int base, int rowbytes) {
  const Layout *L = cg->vi[v->id].remat ? layout_default(cg, v->type) : cg->vi[v->id].nat;
  LLVMValueRef *e = cg_get(cg, v, L);
  if (!e) return;
  LLVMTypeRef et = cg_type(cg, v->type.dtype);
  int pe = L->espt[1] < 8 ? L->espt[1] : 8;  // elements per store, within one chunk
  LLVMTypeRef wt = word_type(cg, pe * 2);
  for (int i = 0; i < L->nelem; i += pe) {
    LLVMValueRef row = cg_coord(cg, L, i, 0), col = cg_coord(cg, L, i, 1);
    LLVMValueRef off = mma_swizzle(cg, row, LLVMBuildShl(cg->b, col, cg_i32(cg, 1), ""), rowbytes);
    off = LLVMBuildAdd(cg->b, off, cg_i32(cg, base), "");
    LLVMValueRef w;
    if (pe == 1) {
      w = LLVMBuildBitCast(cg->b, e[i], cg->i16, "");
    } else {
      LLVMValueRef vv = LLVMGetUndef(LLVMVectorType(et, (unsigned)pe));
      for (int k = 0; k < pe; k++) vv = LLVMBuildInsertElement(cg->b, vv, e[i + k], cg_i32(cg, k), "");
      w = LLVMBuildBitCast(cg->b, vv, wt, "");
    }
    LLVMSetAlignment(LLVMBuildStore(cg->b, w, cg_smem_ptr(cg, off)), (unsigned)(pe * 2));
  }
}

// ldmatrix of n (1, 2, 4) 8x8 b16 matrices; out[k] is register k.
static void ldmatrix(Cg *cg, LLVMValueRef off, int n, bool trans, LLVMValueRef *out) {
  char name[96];
  snprintf(name, sizeof name, "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x%d%s.b16", n, trans ? ".trans" : "");
  LLVMValueRef p = cg_smem_ptr(cg, off);
  LLVMTypeRef pt = cg->sptr;
  LLVMValueRef r = cg_intrinsic(cg, name, &pt, 1, &p, 1);
  for (int k = 0; k < n; k++) out[k] = n == 1 ? r : LLVMBuildExtractValue(cg->b, r, (unsigned)k, "");
}

// c += a * b on one m16n8k16 tile (a: 4 regs, b: 2 regs, c: 4 f32).
static void mma16816(Cg *cg, Dtype dt, LLVMValueRef *a, LLVMValueRef *bb, LLVMValueRef *c) {
  const char *ty = dt == DT_BF16 ? "bf16" : "f16";
  char text[256];
  snprintf(text, sizeof text,
           "mma.sync.aligned.m16n8k16.row.col.f32.%s.%s.f32 {$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, "
           "{$10,$11,$12,$13};",
           ty, ty);
  static const char cons[] = "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3";
  LLVMTypeRef f4[4] = {cg->f32, cg->f32, cg->f32, cg->f32};
  LLVMTypeRef rt = LLVMStructTypeInContext(cg->ctx, f4, 4, 0);
  LLVMTypeRef at[10];
  LLVMValueRef args[10];
  for (int k = 0; k < 4; k++) at[k] = cg->i32, args[k] = a[k];
  for (int k = 0; k < 2; k++) at[4 + k] = cg->i32, args[4 + k] = bb[k];
  for (int k = 0; k < 4; k++) at[6 + k] = cg->f32, args[6 + k] = c[k];
  LLVMTypeRef fty = LLVMFunctionType(rt, at, 10, 0);
  // Pure: a function of its operands, so LLVM may schedule it freely.
  LLVMValueRef asmv = LLVMGetInlineAsm(fty, text, strlen(text), (char *)cons, strlen(cons), 0, 0,
                                       LLVMInlineAsmDialectATT, 0);
  LLVMValueRef r = LLVMBuildCall2(cg->b, fty, asmv, args, 10, "");
  for (int k = 0; k < 4; k++) c[k] = LLVMBuildExtractValue(cg->b, r, (unsigned)k, "");
}

void lower_dot_mma(Cg *cg, TirInst *in, int wm, int wn) {
  LLVMBuilderRef b = cg->b;
  TirValue *A = in->args[0], *B = in->args[1], *C = in->args[2], *R = in->res[0];
  Dtype dt = A->type.dtype;
  int M = A->type.shape[0], K = A->type.shape[1], N = B->type.shape[1];
  int ra = K * 2, rb = N * 2;  // row bytes of the shared tiles
  const Layout *Lc = cg->vi[R->id].nat;
  if (Lc->nelem != M * N / (32 * wm * wn) || Lc->cnt[1] != 2 * (N / (8 * wn))) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: dot result not in the MMA layout");
    return;
  }
  LLVMValueRef *cv = cg_get(cg, C, Lc);
  if (!cv) return;
  bool pa = pipe_operand(cg, in, 0), pb = pipe_operand(cg, in, 1);
  int boff = 0;
  if (!pa || !pb) {
    cg_barrier(cg);  // earlier readers of the scratch are done
    if (!pa) {
      stage(cg, A, 0, ra);
      boff = pad128(M * ra);
    }
    if (!pb) stage(cg, B, boff, rb);
    cg_barrier(cg);
  }
  LLVMValueRef abase = pa ? pipe_operand_offset(cg, in, 0) : cg_i32(cg, 0);
  LLVMValueRef bbase = pb ? pipe_operand_offset(cg, in, 1) : cg_i32(cg, boff);
  if (cg->err != TJ_OK) return;

  int mt = M / (16 * wm), nt = N / (8 * wn), cnt1 = 2 * nt;
  LLVMValueRef w1 = LLVMBuildAnd(b, cg->warp, cg_i32(cg, wn - 1), "");
  LLVMValueRef w0 = LLVMBuildAnd(b, LLVMBuildLShr(b, cg->warp, cg_i32(cg, ilog2i(wn)), ""), cg_i32(cg, wm - 1), "");
  LLVMValueRef r = LLVMBuildAnd(b, cg->lane, cg_i32(cg, 7), "");
  LLVMValueRef j = LLVMBuildLShr(b, cg->lane, cg_i32(cg, 3), "");
  LLVMValueRef jlo = LLVMBuildAnd(b, j, cg_i32(cg, 1), "");
  LLVMValueRef jhi = LLVMBuildLShr(b, j, cg_i32(cg, 1), "");
  // A: this lane's row of m tile 0 is w0*8 + r + jlo*8*wm; its chunk in
  // k step kk is (2*kk + jhi) ^ phase = (2*kk) ^ (jhi ^ phase).
  LLVMValueRef rowa = LLVMBuildAdd(b, LLVMBuildShl(b, w0, cg_i32(cg, 3), ""),
                                   LLVMBuildAdd(b, r, LLVMBuildMul(b, jlo, cg_i32(cg, 8 * wm), ""), ""), "");
  LLVMValueRef abase_l = LLVMBuildAdd(b, abase, LLVMBuildMul(b, rowa, cg_i32(cg, ra), ""), "");
  LLVMValueRef ya = LLVMBuildXor(b, jhi, swz_phase(cg, r, ra), "");
  // B: this lane's k row is kk*16 + r + jlo*8; n tile u sits at chunk
  // w1 + u*wn, lanes 16-31 addressing the second tile of an x4 pair.
  LLVMValueRef krow = LLVMBuildAdd(b, r, LLVMBuildShl(b, jlo, cg_i32(cg, 3), ""), "");
  LLVMValueRef bbase_l = LLVMBuildAdd(b, bbase, LLVMBuildMul(b, krow, cg_i32(cg, rb), ""), "");
  LLVMValueRef xb = swz_phase(cg, r, rb);
  LLVMValueRef *bcol = cg_alloc_elems(cg, nt);  // byte offset of this lane's chunk of tile u (pair start)
  LLVMValueRef *af = cg_alloc_elems(cg, 4 * mt), *bf = cg_alloc_elems(cg, 2 * nt);
  LLVMValueRef *acc = cg_alloc_elems(cg, Lc->nelem);
  if (!bcol || !af || !bf || !acc) return;
  for (int u = 0; u < nt; u += 2) {
    LLVMValueRef t = u + 1 < nt ? LLVMBuildAdd(b, cg_i32(cg, u), jhi, "") : cg_i32(cg, u);
    LLVMValueRef ch = LLVMBuildAdd(b, w1, LLVMBuildMul(b, t, cg_i32(cg, wn), ""), "");
    bcol[u] = LLVMBuildShl(b, LLVMBuildXor(b, ch, xb, ""), cg_i32(cg, 4), "");
  }
  for (int i = 0; i < Lc->nelem; i++) acc[i] = cv[i];

  for (int kk = 0; kk < K / 16; kk++) {
    LLVMValueRef cha = LLVMBuildShl(b, LLVMBuildXor(b, cg_i32(cg, 2 * kk), ya, ""), cg_i32(cg, 4), "");
    for (int t = 0; t < mt; t++) {
      LLVMValueRef off = LLVMBuildAdd(b, abase_l, cg_i32(cg, 2 * t * 8 * wm * ra), "");
      ldmatrix(cg, LLVMBuildAdd(b, off, cha, ""), 4, false, &af[4 * t]);
    }
    for (int u = 0; u < nt; u += 2) {
      LLVMValueRef off = LLVMBuildAdd(b, bbase_l, cg_i32(cg, kk * 16 * rb), "");
      off = LLVMBuildAdd(b, off, bcol[u], "");
      if (u + 1 < nt) {
        LLVMValueRef q[4];
        ldmatrix(cg, off, 4, true, q);
        bf[2 * u] = q[0], bf[2 * u + 1] = q[1], bf[2 * u + 2] = q[2], bf[2 * u + 3] = q[3];
      } else {
        ldmatrix(cg, off, 2, true, &bf[2 * u]);
      }
    }
    for (int t = 0; t < mt; t++)
      for (int u = 0; u < nt; u++) {
        int s0 = 2 * t * cnt1 + 2 * u, s1 = (2 * t + 1) * cnt1 + 2 * u;
        LLVMValueRef c[4] = {acc[s0], acc[s0 + 1], acc[s1], acc[s1 + 1]};
        mma16816(cg, dt, &af[4 * t], &bf[2 * u], c);
        acc[s0] = c[0], acc[s0 + 1] = c[1], acc[s1] = c[2], acc[s1 + 1] = c[3];
      }
  }
  cg_set(cg, R, Lc, acc);
}
