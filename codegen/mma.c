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
 *
 * Chained dots (flash attention)
 * ------------------------------
 * s = dot(q, trans(k)); p = exp2(s - max(s, 1)); o = dot(cast(p), v, o) is
 * kept out of shared memory as FlashAttention-2 keeps it:
 *  - Row-wise split. A dot whose result reaches a reduction along its rows
 *    or the A operand of another dot takes every warp it can along M
 *    (wpc [nw, 1]): a row then lives in the four lanes of one lane%4 group,
 *    so max/sum along it are two shuffles (lower_reduce), and every
 *    elementwise op, the rescaling by a [M] vector included, stays in the
 *    accumulator layout.
 *  - A from registers. With wn == 1 the accumulator's n tiles 2kk and
 *    2kk+1 of a thread are, pair by pair, exactly its m16k16 A fragment of
 *    k step kk: c0,c1 of tile 2kk (row g, k 2t..2t+1) = a0, c2,c3 (row g+8)
 *    = a1, the same of tile 2kk+1 (k + 8) = a2, a3. An A operand whose
 *    layout is layout_mma(M, K, wm, 1) of a dot split wm x 1 is packed to
 *    f16x2 / bf16x2 pairs (lower element in the low half) and used as is.
 *  - trans(x) as B. B [K][N] = trans(x) with x [N][K] row-major in shared
 *    memory: a B fragment (b0: k 2t..2t+1 of column g; b1: k + 8) is what
 *    ldmatrix without .trans gives for an 8x8 matrix whose rows are n and
 *    whose 16-byte rows hold k, the way A is read. So the transpose is
 *    never done: x is staged (or copied by cp.async) as it is and read
 *    with ldmatrix.x4 over (tile u, k lo), (u, k hi), (u+1, k lo),
 *    (u+1, k hi). mma_trans_b says when every user of the trans allows it.
 *  - Hoisted A. An A operand computed outside a loop around the dot (q)
 *    has its fragments read once, right after it is computed, and kept in
 *    registers: the loop neither restages it nor waits at a barrier for it.
 *
 * wgmma (sm_90a)
 * --------------
 * A dot split over rows only (wn == 1) in whole warpgroups, whose B tile
 * has rows of 32, 64 or 128 bytes and N <= 256, runs on
 * wgmma.mma_async.m64nNk16 instead of mma.sync (wgmma_dot):
 *  - A from registers: the fragments above are wgmma's register A as they
 *    are. wgmma's m64 tile is four warps' m16 tiles, warp w' of the group
 *    giving and getting its own 16 rows, so which logical rows those are
 *    does not matter: a warpgroup's instruction for m tile t uses its warps'
 *    tile t. Its accumulator registers for n tile u are mma.sync's c0..c3
 *    of that tile: the accumulator layout is unchanged.
 *  - B from shared memory through a matrix descriptor: the swizzle above
 *    is the hardware's 128-, 64- and 32-byte swizzle for rows of that many
 *    bytes (chunk bits XOR row bits of the address), so the staged tile or
 *    the cp.async stage buffer is read in place, K-major for trans(x)
 *    (trans-b 0) and N-major for [K][N] (trans-b 1). Tiles start on the
 *    1024-byte swizzle repeat (cg->tile_align), and the barriers before a
 *    read are preceded by fence.proxy.async (wgmma reads through the async
 *    proxy what cp.async and st.shared wrote through the generic one).
 *  - One asm statement per dot: fence, every k step and m tile, commit,
 *    wait 0. It has side effects, so it stays between its barriers.
 *  - Not in a loop that holds a runtime if (in_loop_with_if): there the
 *    H200 gave wrong rows on wgmma and exact ones on mma.sync.
 */
#include "layout.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bool mma_supported(Cg *cg, const TirInst *in, int *wm, int *wn) {
  TirType a = in->args[0]->type, b = in->args[1]->type, r = in->res[0]->type;
  if (a.rank != 2 || b.rank != 2 || r.rank != 2 || a.ptr || b.ptr) return false;
  if (a.dtype != b.dtype || (a.dtype != DT_F16 && a.dtype != DT_BF16) || r.dtype != DT_F32) return false;
  int M = a.shape[0], K = a.shape[1], N = b.shape[1];
  if (K % 16 || M % 16 || N % 8 || b.shape[0] != K || r.shape[0] != M || r.shape[1] != N) return false;
  // Warps split the tile so that each warp's part is as square as it can
  // be (fewest ldmatrix per mma); ties go to M.
  // A row-wise dot (mma_mark_rows) gives M every warp it can take.
  bool rows = cg->vi && cg->vi[in->res[0]->id].mma_rows;
  int w0 = 1, w1 = 1;
  while (w0 * w1 < cg->num_warps) {
    bool can0 = M % (16 * w0 * 2) == 0, can1 = N % (8 * w1 * 2) == 0;
    if (!can0 && !can1) return false;  // more warps than m16n8 tiles
    if (can0 && (rows || !can1 || M / w0 >= N / w1)) w0 *= 2;
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
  LLVMValueRef x = per > 1 ? LLVMBuildLShr(cg->b, r, cg_i32(cg, cg_ilog2(per)), "") : r;
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

// ---------------------------------------------------------------- wgmma

// The descriptor swizzle mode of a tile with rows of `rowbytes`: our swizzle
// (chunk ^= (row / per) % phases) is the hardware's 128-, 64- and 32-byte
// swizzle for rows of 128, 64 and 32 bytes. 0: no descriptor form.
static int wg_swizzle(int rowbytes) {
  return rowbytes == 128 ? 1 : rowbytes == 64 ? 2 : rowbytes == 32 ? 3 : 0;
}

// A dot in a for body that also holds a runtime if stays on mma.sync. On
// the H200 (CUDA 13 driver) such loops computed wrong results on wgmma when
// the score tile and the accumulator had the same shape (BN == D), though
// the PTX reads right and mma.sync is exact on the same code: see
// attn_chain CAUSAL in tests/gpu/test_kernels.c, which compares them with
// the interpreter. Until that is understood, correctness wins.
static bool in_loop_with_if(const TirInst *in) {
  for (const TirBlock *b = in->parent; b && b->owner; b = b->owner->parent)
    if (b->owner->op == TIR_FOR && tir_block_has(b, TIR_IF)) return true;
  return false;
}

// Everything wgmma needs but the runtime-if guard.
static bool wgmma_fits(Cg *cg, const TirInst *in, int wn) {
  if (!cg->wgmma_ok || wn != 1 || cg->num_warps % 4) return false;
  int K = in->args[0]->type.shape[1], N = in->args[1]->type.shape[1];
  bool nk;
  mma_b_source(cg, in, &nk);
  return N <= 256 && wg_swizzle(nk ? K * 2 : N * 2) != 0;
}

bool mma_use_wgmma(Cg *cg, const TirInst *in, int wm, int wn) {
  (void)wm;
  return wgmma_fits(cg, in, wn) && !in_loop_with_if(in);
}

// acc += A * B on wgmma: for every k step and m tile, one
// wgmma.mma_async.m64nNk16 per warpgroup, A from registers (the mma.sync A
// fragments af, which are exactly wgmma's: each warp of a warpgroup gives
// the 16 rows it owns, so the warpgroup's m64 tile is its warps' m tile t),
// B through a descriptor of the swizzled shared tile at byte `bbase`; the
// accumulator registers of n tile u are mma.sync's c0..c3 of that tile. All
// are issued in one asm statement and waited for at its end.
// Appends to buf (cap bytes) at len; returns the new length, which stays
// at cap once the text no longer fits (the caller checks len < cap).
static size_t add(char *buf, size_t cap, size_t len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static size_t add(char *buf, size_t cap, size_t len, const char *fmt, ...) {
  if (len >= cap) return cap;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf + len, cap - len, fmt, ap);
  va_end(ap);
  return n < 0 || (size_t)n >= cap - len ? cap : len + (size_t)n;
}

static void wgmma_dot(Cg *cg, Loc loc, Dtype dt, bool nk, int rb, LLVMValueRef bbase, const LLVMValueRef *af, int mt,
                      int nt, int ks, int cnt1, LLVMValueRef *acc) {
  LLVMBuilderRef b = cg->b;
  int N = nt * 8, nd = mt * nt * 4, na = mt * ks * 4;
  // A zero accumulator (s = dot(q, k^T)) is not read: the first k step
  // runs with scale-d false (D = A * B), and no registers are tied.
  bool zero = true;
  for (int i = 0; i < mt * 2 * cnt1 && zero; i++) {
    LLVMBool loses;
    zero = LLVMIsAConstantFP(acc[i]) && LLVMConstRealGetDouble(acc[i], &loses) == 0.0;
  }
  int nd_in = zero ? 0 : nd, nops = nd + nd_in + na + ks + 1;
  // The descriptor: start address >> 4 (bits 0-13), leading byte offset
  // >> 4 (16-29), stride byte offset >> 4 (32-45), swizzle (62-63). B as
  // [N][K] is K-major: 8-row groups of N are 8 * rb apart, the leading
  // offset is unused; each k step starts 32 bytes further. B as [K][N] is
  // N-major (trans-b): N is one swizzle row wide, 8-row groups of K are
  // 8 * rb apart (both offsets say so, the other is unused); each k step
  // starts 16 rows further.
  int grp = 8 * rb >> 4;
  uint64_t hi = (uint64_t)grp | (uint64_t)wg_swizzle(rb) << 30;
  uint64_t lbo = nk ? 1 : (uint64_t)grp;
  cg->smem_used = true;
  LLVMValueRef addr = LLVMBuildAdd(b, LLVMBuildPtrToInt(b, cg->smem, cg->i32, ""), bbase, "");
  LLVMValueRef lo = LLVMBuildAnd(b, LLVMBuildLShr(b, addr, cg_i32(cg, 4), ""), cg_i32(cg, 0x3fff), "");
  LLVMValueRef desc = LLVMBuildOr(b, LLVMBuildZExt(b, lo, cg->i64, ""),
                                  LLVMConstInt(cg->i64, lbo << 16 | hi << 32, 0), "");

  LLVMTypeRef *at = arena_alloc(cg->a, sizeof *at * (size_t)nops);
  LLVMValueRef *args = arena_alloc(cg->a, sizeof *args * (size_t)nops);
  LLVMTypeRef *rt = arena_alloc(cg->a, sizeof *rt * (size_t)nd);
  // operand references are at most "$NNNNN," (7 bytes) per register
  size_t tcap = (size_t)(mt * ks) * (size_t)(nd / mt * 8 + 200) + 256, ccap = (size_t)nops * 8 + 16;
  char *text = arena_alloc(cg->a, tcap), *cons = arena_alloc(cg->a, ccap);
  int *slot = arena_alloc(cg->a, sizeof *slot * (size_t)nd);
  if (!at || !args || !rt || !text || !cons || !slot) {
    cg_error(cg, TJ_ERR_NO_MEMORY, loc, "codegen: out of memory");
    return;
  }
  for (int t = 0; t < mt; t++)
    for (int u = 0; u < nt; u++) {
      int s0 = 2 * t * cnt1 + 2 * u, s1 = (2 * t + 1) * cnt1 + 2 * u, *o = &slot[(t * nt + u) * 4];
      o[0] = s0, o[1] = s0 + 1, o[2] = s1, o[3] = s1 + 1;
    }
  size_t tl = 0, cl = 0;
  const char *ty = dt == DT_BF16 ? "bf16" : "f16";
  // p: accumulate (the operand is 1); z: do not (first k step of a zero D).
  tl = add(text, tcap, tl,
           "{\n.reg .pred p, z;\nsetp.ne.b32 p, $%d, 0;\nsetp.eq.b32 z, $%d, 0;\nwgmma.fence.sync.aligned;\n",
           nops - 1, nops - 1);
  for (int kk = 0; kk < ks; kk++)
    for (int t = 0; t < mt; t++) {
      tl = add(text, tcap, tl, "wgmma.mma_async.sync.aligned.m64n%dk16.f32.%s.%s {", N, ty, ty);
      for (int i = 0; i < nt * 4; i++)
        tl = add(text, tcap, tl, "%s$%d", i ? "," : "", t * nt * 4 + i);
      int a0 = nd + nd_in + (kk * mt + t) * 4;
      tl = add(text, tcap, tl, "}, {$%d,$%d,$%d,$%d}, $%d, %s, 1, 1, %d;\n", a0, a0 + 1, a0 + 2,
                             a0 + 3, nd + nd_in + na + kk, zero && kk == 0 ? "z" : "p", nk ? 0 : 1);
    }
  tl = add(text, tcap, tl, "wgmma.commit_group.sync.aligned;\nwgmma.wait_group.sync.aligned 0;\n}");
  for (int i = 0; i < nd; i++) cl = add(cons, ccap, cl, "=f,");
  for (int i = 0; i < nd_in; i++) cl = add(cons, ccap, cl, "%d,", i);
  for (int i = 0; i < na; i++) cl = add(cons, ccap, cl, "r,");
  for (int i = 0; i < ks; i++) cl = add(cons, ccap, cl, "l,");
  cl = add(cons, ccap, cl, "r,~{memory}");
  if (tl >= tcap || cl >= ccap) {
    cg_error(cg, TJ_ERR_INTERNAL, loc, "internal error: codegen: wgmma text overflow");
    return;
  }
  for (int i = 0; i < nd; i++) rt[i] = cg->f32;
  for (int i = 0; i < nd_in; i++) at[i] = cg->f32, args[i] = acc[slot[i]];
  for (int i = 0; i < na; i++) at[nd_in + i] = cg->i32, args[nd_in + i] = af[i];
  for (int kk = 0; kk < ks; kk++) {
    // k step kk of B starts 32 bytes (K-major) or 16 rows (N-major) further.
    uint64_t step = (uint64_t)(nk ? 32 * kk : 16 * kk * rb) >> 4;
    at[nd_in + na + kk] = cg->i64;
    args[nd_in + na + kk] = LLVMBuildAdd(b, desc, LLVMConstInt(cg->i64, step, 0), "");
  }
  at[nd_in + na + ks] = cg->i32;
  args[nd_in + na + ks] = cg_i32(cg, 1);
  LLVMTypeRef st = LLVMStructTypeInContext(cg->ctx, rt, (unsigned)nd, 0);
  int nin = nd_in + na + ks + 1;
  LLVMTypeRef fty = LLVMFunctionType(st, at, (unsigned)nin, 0);
  // Side effects: it reads shared memory, so it must stay between the
  // barriers around the tile it reads.
  LLVMValueRef asmv = LLVMGetInlineAsm(fty, text, tl, cons, cl, 1, 0, LLVMInlineAsmDialectATT, 0);
  LLVMValueRef r = LLVMBuildCall2(b, fty, asmv, args, (unsigned)nin, "");
  cg_convergent(cg, r);
  for (int i = 0; i < nd; i++) acc[slot[i]] = LLVMBuildExtractValue(b, r, (unsigned)i, "");
}

bool mma_any_wgmma(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in; in = in->next) {
    int wm, wn;
    if (in->op == TIR_DOT && mma_supported(cg, in, &wm, &wn) && mma_use_wgmma(cg, in, wm, wn)) return true;
    for (int k = 0; k < in->nblocks; k++)
      if (mma_any_wgmma(cg, in->blocks[k])) return true;
  }
  return false;
}

// ---------------------------------------------------------------- analysis

// v reaches, through same-shape elementwise ops and the results of the ifs
// that yield it, a reduction along its rows or the A operand of a dot
// (which is marked row-wise too).
static bool feeds_rows(Cg *cg, TirValue *v, int depth) {
  ValInfo *vi = &cg->vi[v->id];
  bool hit = false;
  if (depth > 8 || v->type.rank != 2) return false;
  for (int i = 0; i < vi->nusers; i++) {
    TirInst *u = vi->users[i];
    if (u->op == TIR_REDUCE && u->axis == 1) {
      hit = true;
    } else if (u->op == TIR_DOT && u->args[0] == v && u->nres == 1) {
      cg->vi[u->res[0]->id].mma_rows = true;
      hit = true;
    } else if (lower_is_elementwise(u->op) && u->op != TIR_BROADCAST && u->op != TIR_EXPAND_DIMS &&
               u->nres == 1 && u->res[0]->type.rank == 2) {
      hit |= feeds_rows(cg, u->res[0], depth + 1);
    } else if (u->op == TIR_YIELD && u->parent && u->parent->owner && u->parent->owner->op == TIR_IF) {
      // s = where(keep, s, -inf) under a runtime if: the if's result is s.
      TirInst *f = u->parent->owner;
      for (int j = 0; j < u->nargs && j < f->nres; j++)
        if (u->args[j] == v) hit |= feeds_rows(cg, f->res[j], depth + 1);
    }
  }
  return hit;
}

void mma_mark_rows(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in; in = in->next) {
    if (in->op == TIR_DOT && in->nres == 1 && feeds_rows(cg, in->res[0], 0))
      cg->vi[in->res[0]->id].mma_rows = true;
    for (int k = 0; k < in->nblocks; k++) mma_mark_rows(cg, in->blocks[k]);
  }
}

bool mma_trans_b(Cg *cg, const TirInst *t) {
  if (!t || t->op != TIR_TRANS || t->nres != 1 || t->nargs != 1) return false;
  TirValue *r = t->res[0];
  if (r->type.rank != 2 || r->type.ptr || (r->type.dtype != DT_F16 && r->type.dtype != DT_BF16)) return false;
  ValInfo *vi = &cg->vi[r->id];
  if (vi->nusers == 0) return false;
  for (int i = 0; i < vi->nusers; i++) {
    TirInst *u = vi->users[i];
    int wm, wn;
    if (u->op != TIR_DOT || u->args[1] != r || u->args[0] == r || !mma_supported(cg, u, &wm, &wn)) return false;
  }
  return true;
}

TirValue *mma_b_source(Cg *cg, const TirInst *dot, bool *nk) {
  TirValue *B = dot->args[1];
  *nk = B->def && mma_trans_b(cg, B->def);
  return *nk ? B->def->args[0] : B;
}

bool mma_a_in_regs(Cg *cg, const TirInst *dot) {
  int wm, wn;
  TirValue *A = dot->args[0];
  ValInfo *vi = &cg->vi[A->id];
  if (!mma_supported(cg, dot, &wm, &wn) || wn != 1 || vi->remat || !vi->nat) return false;
  return layout_eq(vi->nat, layout_mma(cg, A->type.shape[0], A->type.shape[1], wm, 1));
}

void mma_consider_hoist(Cg *cg, TirInst *dot) {
  TirValue *A = dot->args[0];
  ValInfo *vi = &cg->vi[A->id];
  int wm, wn;
  if (!A->def || A->type.rank != 2 || vi->remat || !mma_supported(cg, dot, &wm, &wn)) return;
  if (mma_a_in_regs(cg, dot) || pipe_operand(cg, dot, 0)) return;
  // Worth it only across a loop: A's block must enclose a for around the dot.
  TirBlock *ab = A->def->parent;
  bool loop = false, found = false;
  for (TirBlock *b = dot->parent; b; b = b->owner ? b->owner->parent : NULL) {
    if (b == ab) {
      found = true;
      break;
    }
    if (b->owner && b->owner->op == TIR_FOR) loop = true;
  }
  if (!found || !loop) return;
  // Nothing but such dots may use A (its tile then dies at the fragments).
  for (int i = 0; i < vi->nusers; i++) {
    TirInst *u = vi->users[i];
    int um, un;
    if (u->op != TIR_DOT || u->args[0] != A || u->args[1] == A || !mma_supported(cg, u, &um, &un) ||
        um != wm || un != wn)
      return;
  }
  vi->afrag_wm = wm;
  vi->afrag_wn = wn;
}

// ---------------------------------------------------------------- lowering

// This lane's ids: warp position (w0, w1) in the wm x wn grid; r = lane % 8
// (row of an 8x8 matrix it addresses), jlo / jhi the bits of lane / 8 (which
// of the four matrices).
typedef struct Lane {
  LLVMValueRef w0, w1, r, jlo, jhi;
} Lane;

static Lane lane_ids(Cg *cg, int wm, int wn) {
  LLVMBuilderRef b = cg->b;
  Lane l;
  l.w1 = LLVMBuildAnd(b, cg->warp, cg_i32(cg, wn - 1), "");
  l.w0 = LLVMBuildAnd(b, LLVMBuildLShr(b, cg->warp, cg_i32(cg, cg_ilog2(wn)), ""), cg_i32(cg, wm - 1), "");
  l.r = LLVMBuildAnd(b, cg->lane, cg_i32(cg, 7), "");
  LLVMValueRef j = LLVMBuildLShr(b, cg->lane, cg_i32(cg, 3), "");
  l.jlo = LLVMBuildAnd(b, j, cg_i32(cg, 1), "");
  l.jhi = LLVMBuildLShr(b, j, cg_i32(cg, 1), "");
  return l;
}

// Reads A fragments of k step kk from the swizzled [M][K] tile at byte
// `abase` into af[t * 4 + 0..3] for every m tile t.
typedef struct AReader {
  LLVMValueRef base_l, ya;
  int ra, wm, mt;
} AReader;

static AReader a_reader(Cg *cg, const Lane *l, LLVMValueRef abase, int M, int K, int wm) {
  LLVMBuilderRef b = cg->b;
  AReader ar = {NULL, NULL, K * 2, wm, M / (16 * wm)};
  // This lane's row of m tile 0 is w0*8 + r + jlo*8*wm; its chunk in k step
  // kk is (2*kk + jhi) ^ phase = (2*kk) ^ (jhi ^ phase).
  LLVMValueRef rowa = LLVMBuildAdd(b, LLVMBuildShl(b, l->w0, cg_i32(cg, 3), ""),
                                   LLVMBuildAdd(b, l->r, LLVMBuildMul(b, l->jlo, cg_i32(cg, 8 * wm), ""), ""), "");
  ar.base_l = LLVMBuildAdd(b, abase, LLVMBuildMul(b, rowa, cg_i32(cg, ar.ra), ""), "");
  ar.ya = LLVMBuildXor(b, l->jhi, swz_phase(cg, l->r, ar.ra), "");
  return ar;
}

static void read_a_step(Cg *cg, const AReader *ar, int kk, LLVMValueRef *af) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef cha = LLVMBuildShl(b, LLVMBuildXor(b, cg_i32(cg, 2 * kk), ar->ya, ""), cg_i32(cg, 4), "");
  for (int t = 0; t < ar->mt; t++) {
    LLVMValueRef off = LLVMBuildAdd(b, ar->base_l, cg_i32(cg, 2 * t * 8 * ar->wm * ar->ra), "");
    ldmatrix(cg, LLVMBuildAdd(b, off, cha, ""), 4, false, &af[t * 4]);
  }
}

void mma_hoist_frags(Cg *cg, TirValue *v) {
  ValInfo *vi = &cg->vi[v->id];
  if (!vi->afrag_wm || vi->afrag || v->type.rank != 2 || cg->err != TJ_OK) return;
  int wm = vi->afrag_wm, wn = vi->afrag_wn, M = v->type.shape[0], K = v->type.shape[1];
  LLVMValueRef *af = cg_alloc_elems(cg, M / (16 * wm) * (K / 16) * 4);
  if (!af) return;
  cg_barrier(cg);  // earlier readers of the scratch are done
  stage(cg, v, 0, K * 2);
  cg_barrier(cg);
  Lane l = lane_ids(cg, wm, wn);
  AReader ar = a_reader(cg, &l, cg_i32(cg, 0), M, K, wm);
  for (int kk = 0; kk < K / 16; kk++) read_a_step(cg, &ar, kk, &af[kk * (M / (16 * wm)) * 4]);
  vi->afrag = af;
}

// x (f16 / bf16 elements e0, e1) packed as one i32: e0 in the low half.
static LLVMValueRef pack2(Cg *cg, Dtype dt, LLVMValueRef e0, LLVMValueRef e1) {
  LLVMTypeRef vt = LLVMVectorType(cg_type(cg, dt), 2);
  LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), e0, cg_i32(cg, 0), "");
  v = LLVMBuildInsertElement(cg->b, v, e1, cg_i32(cg, 1), "");
  return LLVMBuildBitCast(cg->b, v, cg->i32, "");
}

void lower_dot_mma(Cg *cg, TirInst *in, int wm, int wn) {
  LLVMBuilderRef b = cg->b;
  TirValue *A = in->args[0], *C = in->args[2], *R = in->res[0];
  Dtype dt = A->type.dtype;
  int M = A->type.shape[0], K = A->type.shape[1], N = in->args[1]->type.shape[1];
  bool nk;
  TirValue *Bs = mma_b_source(cg, in, &nk);  // [K][N], or [N][K] under a folded trans
  int ra = K * 2, rb = nk ? K * 2 : N * 2;    // row bytes of the shared tiles
  const Layout *Lc = cg->vi[R->id].nat;
  if (Lc->nelem != M * N / (32 * wm * wn) || Lc->cnt[1] != 2 * (N / (8 * wn))) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: dot result not in the MMA layout");
    return;
  }
  LLVMValueRef *cv = cg_get(cg, C, Lc);
  if (!cv) return;
  ValInfo *avi = &cg->vi[A->id];
  bool areg = mma_a_in_regs(cg, in);
  bool ahoist = !areg && avi->afrag && avi->afrag_wm == wm && avi->afrag_wn == wn;
  bool pa = !areg && !ahoist && pipe_operand(cg, in, 0), pb = pipe_operand(cg, in, 1);
  bool sa = !areg && !ahoist && !pa;
  LLVMValueRef *ae = NULL;
  if (areg) {
    ae = cg_get(cg, A, avi->nat);
    if (!ae) return;
  }
  int boff = 0;
  if (sa || !pb) {
    cg_barrier(cg);  // earlier readers of the scratch are done
    if (sa) {
      stage(cg, A, 0, ra);
      boff = cg_tile_pad(cg, M * ra);
    }
    if (!pb) stage(cg, Bs, boff, rb);
    cg_barrier(cg);
  }
  LLVMValueRef abase = pa ? pipe_operand_offset(cg, in, 0) : cg_i32(cg, 0);
  LLVMValueRef bbase = pb ? pipe_operand_offset(cg, in, 1) : cg_i32(cg, boff);
  if (cg->err != TJ_OK) return;

  int mt = M / (16 * wm), nt = N / (8 * wn), cnt1 = 2 * nt, ks = K / 16;
  Lane l = lane_ids(cg, wm, wn);
  LLVMValueRef *af = cg_alloc_elems(cg, 4 * mt * ks), *bf = cg_alloc_elems(cg, 2 * nt);
  LLVMValueRef *bcol = cg_alloc_elems(cg, nt);  // per tile pair: this lane's byte offset
  LLVMValueRef *acc = cg_alloc_elems(cg, Lc->nelem);
  if (!bcol || !af || !bf || !acc) return;
  AReader ar = {NULL, NULL, 0, 0, 0};
  if (sa || pa) {
    ar = a_reader(cg, &l, abase, M, K, wm);
  } else if (ahoist) {
    for (int i = 0; i < 4 * mt * ks; i++) af[i] = avi->afrag[i];
  } else {
    // The accumulator-layout A: row slots 2t, 2t+1 are m tile t's rows g and
    // g + 8 (per m16 tile), column slots 4kk..4kk+3 the k 2t..2t+1 pairs of
    // n tiles 2kk and 2kk+1 (see the essay).
    int ca = avi->nat->cnt[1];
    for (int kk = 0; kk < ks; kk++)
      for (int t = 0; t < mt; t++) {
        const LLVMValueRef *r0 = &ae[2 * t * ca + 4 * kk], *r1 = &ae[(2 * t + 1) * ca + 4 * kk];
        LLVMValueRef *o = &af[(kk * mt + t) * 4];
        o[0] = pack2(cg, dt, r0[0], r0[1]);
        o[1] = pack2(cg, dt, r1[0], r1[1]);
        o[2] = pack2(cg, dt, r0[2], r0[3]);
        o[3] = pack2(cg, dt, r1[2], r1[3]);
      }
  }
  for (int i = 0; i < Lc->nelem; i++) acc[i] = cv[i];
  // The guard costs speed without a word otherwise: say so where the dot is
  // (the CLI prints it; a library compile under TILEJIT_VERBOSE).
  bool fits = wgmma_fits(cg, in, wn), fenced = fits && in_loop_with_if(in);
  if (fenced)
    diag_at(cg->d, DIAG_WARNING, in->loc, "this dot runs on mma.sync, not wgmma: its loop holds a runtime "
            "'if', and wgmma in such loops gave wrong results on sm_90a (docs/architecture.md); a where() "
            "or an 'if' outside the loop keeps wgmma");
  if (fits && !fenced) {   // mma_use_wgmma
    if (sa || pa)
      for (int kk = 0; kk < ks; kk++) read_a_step(cg, &ar, kk, &af[kk * mt * 4]);
    wgmma_dot(cg, in->loc, dt, nk, rb, bbase, af, mt, nt, ks, cnt1, acc);
    cg_set(cg, R, Lc, acc);
    return;
  }
  // B, [K][N] (.trans): this lane's k row is kk*16 + r + jlo*8; n tile u
  // sits at chunk w1 + u*wn, lanes 16-31 addressing the second tile of an
  // x4 pair. B as [N][K] (no .trans): this lane's n row is w1*8 + (u +
  // jhi)*8*wn + r, its chunk 2*kk + jlo, as A reads its rows.
  LLVMValueRef xb = swz_phase(cg, l.r, rb), bbase_l, yb = NULL;
  if (!nk) {
    LLVMValueRef krow = LLVMBuildAdd(b, l.r, LLVMBuildShl(b, l.jlo, cg_i32(cg, 3), ""), "");
    bbase_l = LLVMBuildAdd(b, bbase, LLVMBuildMul(b, krow, cg_i32(cg, rb), ""), "");
  } else {
    bbase_l = LLVMBuildAdd(b, bbase, LLVMBuildMul(b, LLVMBuildAdd(b, LLVMBuildShl(b, l.w1, cg_i32(cg, 3), ""),
                                                                  l.r, ""), cg_i32(cg, rb), ""), "");
    yb = LLVMBuildXor(b, l.jlo, xb, "");
  }
  for (int u = 0; u < nt; u += 2) {
    LLVMValueRef t = u + 1 < nt ? LLVMBuildAdd(b, cg_i32(cg, u), l.jhi, "") : cg_i32(cg, u);
    if (!nk) {
      LLVMValueRef ch = LLVMBuildAdd(b, l.w1, LLVMBuildMul(b, t, cg_i32(cg, wn), ""), "");
      bcol[u] = LLVMBuildShl(b, LLVMBuildXor(b, ch, xb, ""), cg_i32(cg, 4), "");
    } else {
      bcol[u] = LLVMBuildMul(b, t, cg_i32(cg, 8 * wn * rb), "");
    }
  }
  for (int kk = 0; kk < ks; kk++) {
    if (sa || pa) read_a_step(cg, &ar, kk, &af[kk * mt * 4]);
    for (int u = 0; u < nt; u += 2) {
      LLVMValueRef off;
      if (!nk) {
        off = LLVMBuildAdd(b, LLVMBuildAdd(b, bbase_l, cg_i32(cg, kk * 16 * rb), ""), bcol[u], "");
      } else {
        LLVMValueRef ch = LLVMBuildShl(b, LLVMBuildXor(b, cg_i32(cg, 2 * kk), yb, ""), cg_i32(cg, 4), "");
        off = LLVMBuildAdd(b, LLVMBuildAdd(b, bbase_l, bcol[u], ""), ch, "");
      }
      if (u + 1 < nt) {
        LLVMValueRef q[4];
        ldmatrix(cg, off, 4, !nk, q);
        bf[2 * u] = q[0], bf[2 * u + 1] = q[1], bf[2 * u + 2] = q[2], bf[2 * u + 3] = q[3];
      } else {
        ldmatrix(cg, off, 2, !nk, &bf[2 * u]);
      }
    }
    for (int t = 0; t < mt; t++)
      for (int u = 0; u < nt; u++) {
        int s0 = 2 * t * cnt1 + 2 * u, s1 = (2 * t + 1) * cnt1 + 2 * u;
        LLVMValueRef c[4] = {acc[s0], acc[s0 + 1], acc[s1], acc[s1 + 1]};
        mma16816(cg, dt, &af[(kk * mt + t) * 4], &bf[2 * u], c);
        acc[s0] = c[0], acc[s0 + 1] = c[1], acc[s1] = c[2], acc[s1 + 1] = c[3];
      }
  }
  cg_set(cg, R, Lc, acc);
}
