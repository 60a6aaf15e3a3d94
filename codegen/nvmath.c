/* nvmath.c: f32 math built from PTX approximations and our own polynomials,
 * so kernels need no libdevice.
 *
 * requires: an LLVM builder positioned in the kernel; produces: f32 values.
 *
 * Error bounds (measured over a dense sweep against double libm, with the
 * PTX approximations' documented errors added):
 *   exp2  ex2.approx.ftz.f32: max 2 ulp (subnormal results flush to 0).
 *   exp   ex2(x * log2 e): 2 ulp plus the rounding of x * log2 e, i.e. a
 *         relative error <= 2^-22 + |x| * 2^-24 (2e-6 at |x| = 30).
 *   log2  lg2.approx.f32: max absolute error 2^-22.6 (PTX ISA), so relative
 *         error grows as x -> 1 where log2 x -> 0.
 *   log   lg2(x) * ln 2: absolute error <= 1.2e-7.
 *   sqrt  sqrt.rn.f32 (IEEE, exact rounding); rsqrt = 1 / sqrt.rn, div.rn:
 *         <= 1 ulp.
 *   tanh  |x| < 0.6: x + x s P(s), s = x^2, a degree-5 least-maximum fit;
 *         otherwise 1 - 2 / (exp(2|x|) + 1) with the sign restored:
 *         <= 1.5 ulp with an exact exp2, <= 3 ulp with ex2.approx.
 *   erf   sign(x) (1 - 2^(t q(t))), t = min(|x|, 4), q of degree 7 (one
 *         branch-free formula over the whole range; nvmath_poly.h has the
 *         fit). Max absolute error 8.9e-8 with an exact exp2 (tested in
 *         test_nvmath.c), plus ex2.approx's 2 ulp of 2^p (= erfc): <=
 *         2.2e-7 (tested too; limit 1e-6). The error is absolute: near 0, where erf(x) is
 *         about 1.13 x, the relative error grows as 2e-7 / |x|. That is the
 *         contract gelu needs (0.5 x (1 + erf) is off by x/2 times erf's
 *         absolute error); an erf accurate to ulps near 0 cost a second
 *         polynomial and a select per element, ~12 more instructions.
 *         erf(x * c) for a constant c > 0 (gelu's x / sqrt 2) folds c into
 *         the coefficients (nvm_erf_scaled): one multiply less per element,
 *         the same bound (test_nvmath.c).
 *   fmod  exact (the result of fmod is always representable), see nvm_fmod.
 * f16/bf16 callers widen to f32 first and round the result (lower_elem).
 */
#include "layout.h"
#include "nvmath_poly.h"

#include <math.h>
#include <string.h>

static LLVMValueRef cf(Cg *cg, double v) { return LLVMConstReal(cg->f32, v); }

static LLVMValueRef fma3(Cg *cg, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[3] = {a, b, c};
  LLVMTypeRef t = cg->f32;
  return cg_intrinsic(cg, "llvm.fma", &t, 1, args, 3);
}

static LLVMValueRef horner(Cg *cg, const float *c, int n, LLVMValueRef x) {
  LLVMValueRef r = cf(cg, c[n - 1]);
  for (int k = n - 2; k >= 0; k--) r = fma3(cg, r, x, cf(cg, c[k]));
  return r;
}

static LLVMValueRef fabs1(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef t = cg->f32;
  return cg_intrinsic(cg, "llvm.fabs", &t, 1, &x, 1);
}

static LLVMValueRef copysign1(Cg *cg, LLVMValueRef mag, LLVMValueRef sgn) {
  LLVMTypeRef t = cg->f32;
  LLVMValueRef a[2] = {mag, sgn};
  return cg_intrinsic(cg, "llvm.copysign", &t, 1, a, 2);
}

LLVMValueRef nvm_exp2(Cg *cg, LLVMValueRef x) {
  return cg_intrinsic(cg, "llvm.nvvm.ex2.approx.ftz.f", NULL, 0, &x, 1);
}

LLVMValueRef nvm_exp(Cg *cg, LLVMValueRef x) {
  return nvm_exp2(cg, LLVMBuildFMul(cg->b, x, cf(cg, 1.4426950408889634), ""));
}

LLVMValueRef nvm_log2(Cg *cg, LLVMValueRef x) {
  return cg_intrinsic(cg, "llvm.nvvm.lg2.approx.f", NULL, 0, &x, 1);
}

LLVMValueRef nvm_log(Cg *cg, LLVMValueRef x) {
  return LLVMBuildFMul(cg->b, nvm_log2(cg, x), cf(cg, 0.6931471805599453), "");
}

LLVMValueRef nvm_sqrt(Cg *cg, LLVMValueRef x) {
  LLVMTypeRef t = cg->f32;
  return cg_intrinsic(cg, "llvm.sqrt", &t, 1, &x, 1);
}

LLVMValueRef nvm_rsqrt(Cg *cg, LLVMValueRef x) {
  return LLVMBuildFDiv(cg->b, cf(cg, 1.0), nvm_sqrt(cg, x), "");
}

static const float tanh_p[6] = {-3.333333273e-01f, 1.333328513e-01f, -5.395726686e-02f,
                                2.176125662e-02f, -8.335189966e-03f, 2.295369827e-03f};

LLVMValueRef nvm_tanh(Cg *cg, LLVMValueRef x) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef a = fabs1(cg, x);
  LLVMValueRef s = LLVMBuildFMul(b, x, x, "");
  LLVMValueRef small = fma3(cg, LLVMBuildFMul(b, x, s, ""), horner(cg, tanh_p, 6, s), x);
  // exp(2a) overflows to inf for a > 44: 2 / inf = 0 gives exactly 1.
  LLVMValueRef e = nvm_exp2(cg, LLVMBuildFMul(b, a, cf(cg, 2.8853900817779268), ""));
  LLVMValueRef big = LLVMBuildFSub(b, cf(cg, 1.0),
                                   LLVMBuildFDiv(b, cf(cg, 2.0), LLVMBuildFAdd(b, e, cf(cg, 1.0), ""), ""), "");
  big = copysign1(cg, big, x);
  // NaN compares false and takes the polynomial, which propagates it.
  LLVMValueRef use_big = LLVMBuildFCmp(b, LLVMRealOGE, a, cf(cg, 0.6), "");
  return LLVMBuildSelect(b, use_big, big, small, "");
}

// t = minimum(|x|, 4) (NaN-propagating: min.NaN.f32 keeps erf(NaN) NaN,
// where minnum would clamp it to 4 and return +-1). The clamp stands in for
// both the |x| >= 4 branch and the abs (FMNMX takes |x| as an operand).
// x = x0 * c (either operand order) with c a constant in [1/64, 64]: the
// scaled coefficients c^(k+1) q_k (up to c^8) then stay normal f32 numbers
// and keep the formula's error bound (far outside, they overflow to inf or
// underflow to subnormals, and the plain multiply is kept).
static bool scaled_by_const(LLVMValueRef x, LLVMValueRef *x0, double *c) {
  if (!LLVMIsAInstruction(x) || LLVMGetInstructionOpcode(x) != LLVMFMul) return false;
  for (unsigned i = 0; i < 2; i++) {
    LLVMValueRef k = LLVMGetOperand(x, i);
    if (!LLVMIsAConstantFP(k)) continue;
    LLVMBool lost;
    double v = LLVMConstRealGetDouble(k, &lost);
    if (!(v >= 1.0 / 64 && v <= 64.0)) return false;
    *x0 = LLVMGetOperand(x, 1 - i);
    *c = v;
    return true;
  }
  return false;
}

LLVMValueRef nvm_erf(Cg *cg, LLVMValueRef x) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef t32 = cg->f32;
  // erf(x0 * c), as gelu writes it: the scale folds into q (nvmath_poly.h).
  float q[NVM_ERF_DEG], clamp = NVM_ERF_CLAMP;
  LLVMValueRef x0;
  double c;
  if (scaled_by_const(x, &x0, &c)) nvm_erf_scaled(c, q, &clamp), x = x0;
  else memcpy(q, nvm_erf_q, sizeof q);
  LLVMValueRef mm[2] = {fabs1(cg, x), cf(cg, clamp)};
  LLVMValueRef t = cg_intrinsic(cg, "llvm.minimum", &t32, 1, mm, 2);
  LLVMValueRef p = LLVMBuildFMul(b, horner(cg, q, NVM_ERF_DEG, t), t, "");
  LLVMValueRef m = LLVMBuildFSub(b, cf(cg, 1.0), nvm_exp2(cg, p), "");
  // m = 1 - 2^p with p <= 0 is +0 or more (or NaN), so or-ing in x's sign
  // bit is copysign: one LOP3, where llvm.copysign becomes abs, neg, a
  // sign test and a select on NVPTX.
  LLVMValueRef sgn = LLVMBuildAnd(b, LLVMBuildBitCast(b, x, cg->i32, ""), LLVMConstInt(cg->i32, 0x80000000u, 0), "");
  return LLVMBuildBitCast(b, LLVMBuildOr(b, LLVMBuildBitCast(b, m, cg->i32, ""), sgn, ""), t32, "");
}

// fmodf by exponent reduction in f64, where every f32 (subnormals too) is
// normal: while r = |x| >= b = |y|, subtract t = b * 2^k, k chosen so that
// t <= r < 2t. By Sterbenz's lemma r - t is exact, and r loses at least one
// binary exponent per step, so at most ~280 steps (|x| / |y| <= 2^277).
// t is built by adding k to b's exponent field: r < 2^128 keeps it finite.
// x infinite or NaN, y zero or NaN: NaN; y infinite: x.
LLVMValueRef nvm_fmod(Cg *cg, LLVMValueRef x, LLVMValueRef y) {
  LLVMBuilderRef b = cg->b;
  LLVMTypeRef d = cg->f64;
  LLVMValueRef ax = fabs1(cg, x), ay = fabs1(cg, y);
  LLVMValueRef special = LLVMBuildOr(b, LLVMBuildFCmp(b, LLVMRealUEQ, ax, cf(cg, INFINITY), ""),
                                     LLVMBuildFCmp(b, LLVMRealUEQ, ay, cf(cg, 0.0), ""), "");
  LLVMValueRef r0 = LLVMBuildSelect(b, special, LLVMConstReal(d, 0.0), LLVMBuildFPExt(b, ax, d, ""), "");
  LLVMValueRef by = LLVMBuildSelect(b, special, LLVMConstReal(d, 1.0), LLVMBuildFPExt(b, ay, d, ""), "");
  LLVMValueRef ybits = LLVMBuildBitCast(b, by, cg->i64, "");
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fmod.head");
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fmod.body");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "fmod.done");
  LLVMBuildBr(b, head);
  LLVMPositionBuilderAtEnd(b, head);
  LLVMValueRef r = LLVMBuildPhi(b, d, "fmod.r");
  LLVMBuildCondBr(b, LLVMBuildFCmp(b, LLVMRealOGE, r, by, ""), body, done);
  LLVMPositionBuilderAtEnd(b, body);
  LLVMValueRef c52 = LLVMConstInt(cg->i64, 52, 0);
  LLVMValueRef rbits = LLVMBuildBitCast(b, r, cg->i64, "");
  LLVMValueRef k = LLVMBuildSub(b, LLVMBuildLShr(b, rbits, c52, ""), LLVMBuildLShr(b, ybits, c52, ""), "");
  LLVMValueRef t = LLVMBuildBitCast(b, LLVMBuildAdd(b, ybits, LLVMBuildShl(b, k, c52, ""), ""), d, "");
  LLVMValueRef big = LLVMBuildFCmp(b, LLVMRealOGT, t, r, "");
  t = LLVMBuildSelect(b, big, LLVMBuildFMul(b, t, LLVMConstReal(d, 0.5), ""), t, "");
  LLVMValueRef rn = LLVMBuildFSub(b, r, t, "");
  LLVMBuildBr(b, head);
  LLVMValueRef in[2] = {r0, rn};
  LLVMBasicBlockRef from[2] = {pre, body};
  LLVMAddIncoming(r, in, from, 2);
  LLVMPositionBuilderAtEnd(b, done);
  LLVMValueRef m = copysign1(cg, LLVMBuildFPTrunc(b, r, cg->f32, ""), x);
  return LLVMBuildSelect(b, special, cf(cg, NAN), m, "");
}

// Both halves of the 64-bit product of u32 a and the u32 constant m, as
// one mul.wide.u32 (one IMAD.WIDE.U32, where mul.hi.u32 + mul.lo.u32 are an
// IMAD.HI and an IMAD: ptxas does not pair them). NVPTX selects mul.wide
// from a multiply of two zero-extended i32; the halves are the two
// registers of the pair, so the shift and truncations cost nothing. `a`
// goes through an empty inline-asm move first: otherwise instcombine folds
// zext(trunc(ctr)) to ctr & 0xffffffff in the first rounds, and the xor of
// a product's high half with the key into a 64-bit xor, and NVPTX emits
// mul.lo.s64, which ptxas turns into IMAD.WIDE.U32 plus an add of a zero
// high half (3 per Philox call, about one instruction per element of a
// dropout kernel). The move costs no SASS: ptxas propagates it. (Hiding the
// multiply itself in asm gave 24-40 more registers.)
static void mul_wide(Cg *cg, LLVMValueRef a, uint32_t m, LLVMValueRef *hi, LLVMValueRef *lo) {
  LLVMBuilderRef b = cg->b;
  if (LLVMIsAConstantInt(a)) {  // round 0's zero words: folded, no asm in the way
    uint64_t p = (uint64_t)(uint32_t)LLVMConstIntGetZExtValue(a) * m;
    *lo = LLVMConstInt(cg->i32, (uint32_t)p, 0);
    *hi = LLVMConstInt(cg->i32, p >> 32, 0);
    return;
  }
  LLVMTypeRef fty = LLVMFunctionType(cg->i32, &cg->i32, 1, 0);
  static const char text[] = "mov.b32 $0, $1;", cons[] = "=r,r";
  LLVMValueRef mov = LLVMGetInlineAsm(fty, (char *)text, sizeof text - 1, (char *)cons, sizeof cons - 1, 0, 0,
                                      LLVMInlineAsmDialectATT, 0);
  a = LLVMBuildCall2(b, fty, mov, &a, 1, "");
  // memory(none) (0: no memory effects), nounwind, willreturn: a pure value,
  // so CSE still merges the four lanes' identical rounds.
  static const char *const attrs[3] = {"memory", "nounwind", "willreturn"};
  for (int k = 0; k < 3; k++) {
    unsigned kind = LLVMGetEnumAttributeKindForName(attrs[k], strlen(attrs[k]));
    LLVMAddCallSiteAttribute(a, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
  }
  LLVMValueRef p = LLVMBuildMul(b, LLVMBuildZExt(b, a, cg->i64, ""), LLVMConstInt(cg->i64, m, 0), "");
  *lo = LLVMBuildTrunc(b, p, cg->i32, "");
  *hi = LLVMBuildTrunc(b, LLVMBuildLShr(b, p, LLVMConstInt(cg->i64, 32, 0), ""), cg->i32, "");
}

// Philox-4x32-10 (Salmon et al., Random123): key = (lo32(seed), hi32(seed)),
// counter = (lo32(ctr), hi32(ctr), 0, 0). Four calls that differ only in the
// lane compute the same rounds, which LLVM's CSE merges into one.
LLVMValueRef nvm_philox(Cg *cg, LLVMValueRef seed, LLVMValueRef ctr, LLVMValueRef lane) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef c32 = LLVMConstInt(cg->i64, 32, 0);
  LLVMValueRef k0 = LLVMBuildTrunc(b, seed, cg->i32, "");
  LLVMValueRef k1 = LLVMBuildTrunc(b, LLVMBuildLShr(b, seed, c32, ""), cg->i32, "");
  LLVMValueRef c[4] = {
      LLVMBuildTrunc(b, ctr, cg->i32, ""),
      LLVMBuildTrunc(b, LLVMBuildLShr(b, ctr, c32, ""), cg->i32, ""),
      LLVMConstInt(cg->i32, 0, 0),
      LLVMConstInt(cg->i32, 0, 0),
  };
  LLVMValueRef w0 = LLVMConstInt(cg->i32, 0x9E3779B9u, 0), w1 = LLVMConstInt(cg->i32, 0xBB67AE85u, 0);
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = LLVMBuildAdd(b, k0, w0, "");
      k1 = LLVMBuildAdd(b, k1, w1, "");
    }
    LLVMValueRef hi0, lo0, hi1, lo1;
    mul_wide(cg, c[0], 0xD2511F53u, &hi0, &lo0);
    mul_wide(cg, c[2], 0xCD9E8D57u, &hi1, &lo1);
    LLVMValueRef n0 = LLVMBuildXor(b, LLVMBuildXor(b, hi1, c[1], ""), k0, "");
    LLVMValueRef n2 = LLVMBuildXor(b, LLVMBuildXor(b, hi0, c[3], ""), k1, "");
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
  }
  if (LLVMIsAConstantInt(lane)) return c[LLVMConstIntGetZExtValue(lane) & 3];
  LLVMValueRef l = LLVMBuildAnd(b, lane, LLVMConstInt(cg->i32, 3, 0), "");
  LLVMValueRef r = c[3];
  for (int k = 2; k >= 0; k--)
    r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, l, LLVMConstInt(cg->i32, (unsigned)k, 0), ""), c[k], r, "");
  return r;
}
