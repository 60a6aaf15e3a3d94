/* llvm.c: the LLVM backend driver: tile IR -> LLVM IR (nvptx64) -> PTX.
 *
 * requires: verified tile IR; produces: PTX text with one entry named after
 * the kernel.
 *
 * Pipeline, top to bottom (cg_llvm_compile): check options -> layout and
 * axis analyses (layout.c) -> build the kernel (params, thread ids, debug
 * info) -> lower the body (lower_*.c) -> LLVMVerifyModule -> a lean pass
 * pipeline (pass_pipeline, why below) -> PTX through the target machine.
 *
 * Kernel ABI: parameters follow TirFunc.params in order. Pointers are
 * `ptr addrspace(1)` (global), never noalias since users may pass aliasing
 * buffers for in-place work, and `align 16` only under TIR_SPEC_ALIGN16.
 * Scalars have their natural size; bool is one byte (0 or 1), f16/bf16 two.
 * The block is 32 * num_warps threads in x; program_id(a) is ctaid.{x,y,z}.
 * Shared memory is one buffer of CgResult.shared_bytes: static up to 48 KiB,
 * dynamic (extern) beyond, which the launcher then passes at launch.
 *
 * Thread safety: every compilation has its own LLVMContext, module, target
 * machine and Cg; the only process-wide step, registering the NVPTX target,
 * runs once under pthread_once. The target machine is not cached per arch:
 * creating it (with the context and the layout pass) took under 0.2 ms of a
 * 15-25 ms compile, and a shared one would need a lock around emission,
 * serialising the autotuner's parallel compiles.
 */
#include "layout.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t target_once = PTHREAD_ONCE_INIT;

static void init_target(void) {
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();
}

const char *cg_llvm_version(void) {
#ifdef TJ_LLVM_VERSION
  return TJ_LLVM_VERSION;
#else
  return "19";
#endif
}

void cg_result_free(CgResult *r) {
  if (!r) return;
  tj_free(r->llvm_ir);
  tj_free(r->ptx);
  memset(r, 0, sizeof *r);
}

// The lowest PTX ISA each arch needs (what LLVM 19 knows: up to ptx85).
// The lowest version keeps the PTX loadable by the oldest driver that can
// run the arch.
// The IR we build is straight-line code per tile with a few loops, already
// vectorised and unrolled by construction, so most of `default<O3>` (inlining,
// loop transforms, SLP, the second GVN) finds nothing and cost 60% of a
// compile. What pays: CSE of the index arithmetic every element repeats
// (philox's four lanes too), instcombine, LICM of addresses out of loops,
// and infer-alignment, which lets NVPTX's load/store vectoriser merge the
// shared-memory accesses of reductions and dot staging. Measured against
// O3 on examples/: the same or fewer PTX instructions, the same vector
// accesses, no spills. The codegen level is Default, not Aggressive: the
// only difference on NVPTX is GVN instead of EarlyCSE inside the code
// generator, which found nothing more after this pipeline (same PTX).
static const char pass_pipeline[] =
    "function(early-cse<memssa>,instcombine<no-verify-fixpoint>,simplifycfg,"
    "loop-mssa(licm),early-cse,infer-alignment,adce)";

static const struct { const char *arch, *ptx; } archs[] = {
    {"sm_80", "+ptx70"}, {"sm_86", "+ptx71"}, {"sm_87", "+ptx74"},
    {"sm_89", "+ptx78"}, {"sm_90", "+ptx78"}, {"sm_90a", "+ptx80"},
};

// ---------------------------------------------------------------- helpers

LLVMTypeRef cg_type(Cg *cg, Dtype dt) {
  switch (dt) {
  case DT_BOOL: return cg->i1;
  case DT_I8: case DT_U8: return cg->i8;
  case DT_I16: case DT_U16: return cg->i16;
  case DT_I32: case DT_U32: return cg->i32;
  case DT_I64: case DT_U64: return cg->i64;
  case DT_F16: return cg->f16;
  case DT_BF16: return cg->bf16;
  case DT_F32: return cg->f32;
  case DT_F64: return cg->f64;
  default: return cg->i32;
  }
}

LLVMTypeRef cg_mem_type(Cg *cg, Dtype dt) { return dt == DT_BOOL ? cg->i8 : cg_type(cg, dt); }

LLVMTypeRef cg_val_type(Cg *cg, TirType t) { return t.ptr ? cg->gptr : cg_type(cg, t.dtype); }

LLVMValueRef cg_i32(Cg *cg, int64_t v) { return LLVMConstInt(cg->i32, (unsigned long long)v, 1); }

LLVMValueRef cg_intrinsic(Cg *cg, const char *name, LLVMTypeRef *ovl, int novl,
                          LLVMValueRef *args, int nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id) {
    cg_error(cg, TJ_ERR_INTERNAL, (Loc){0}, "internal error: codegen: no intrinsic %s", name);
    return LLVMGetPoison(cg->i32);
  }
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, ovl, (size_t)novl);
  LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, ovl, (size_t)novl);
  return LLVMBuildCall2(cg->b, fty, fn, args, (unsigned)nargs, "");
}

LLVMValueRef cg_contract(Cg *cg, LLVMValueRef v) {
  // A constant-folded result is no instruction and carries no flags. Only
  // for f32/f64 values: see lower_elem.
  if (!cg->opt->no_fp_fusion && LLVMIsAInstruction(v) && LLVMCanValueUseFastMathFlags(v))
    LLVMSetFastMathFlags(v, LLVMFastMathAllowContract);
  return v;
}

LLVMValueRef cg_sreg(Cg *cg, const char *name) {
  char buf[96];
  snprintf(buf, sizeof buf, "llvm.nvvm.read.ptx.sreg.%s", name);
  return cg_intrinsic(cg, buf, NULL, 0, NULL, 0);
}

LLVMValueRef cg_barrier(Cg *cg) {
  if (cg->wgmma) {
    static const char text[] = "fence.proxy.async.shared::cta;";
    LLVMTypeRef fty = LLVMFunctionType(cg->voidt, NULL, 0, 0);
    LLVMValueRef asmv = LLVMGetInlineAsm(fty, (char *)text, sizeof text - 1, (char *)"~{memory}", 9, 1, 0,
                                         LLVMInlineAsmDialectATT, 0);
    cg_convergent(cg, LLVMBuildCall2(cg->b, fty, asmv, NULL, 0, ""));
  }
  return cg_intrinsic(cg, "llvm.nvvm.barrier0", NULL, 0, NULL, 0);
}

void cg_convergent(Cg *cg, LLVMValueRef call) {
  unsigned kind = LLVMGetEnumAttributeKindForName("convergent", 10);
  LLVMAddCallSiteAttribute(call, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

int cg_tile_pad(const Cg *cg, int bytes) {
  int a = cg->tile_align > 0 ? cg->tile_align : 128;
  return (bytes + a - 1) / a * a;
}

int cg_ilog2(int x) {
  int n = 0;
  while (x > 1) {
    x >>= 1;
    n++;
  }
  return n;
}

// Position of this thread along grid dim g of L: warp coord * tpw + lane coord.
static LLVMValueRef grid_pos(Cg *cg, const Layout *L, int g) {
  LLVMBuilderRef b = cg->b;
  LLVMValueRef l, w;
  if (g == 1) {
    l = LLVMBuildAnd(b, cg->lane, cg_i32(cg, L->tpw[1] - 1), "");
    w = LLVMBuildAnd(b, cg->warp, cg_i32(cg, L->wpc[1] - 1), "");
  } else {
    l = LLVMBuildLShr(b, cg->lane, cg_i32(cg, cg_ilog2(L->tpw[1])), "");
    w = LLVMBuildLShr(b, cg->warp, cg_i32(cg, cg_ilog2(L->wpc[1])), "");
    w = LLVMBuildAnd(b, w, cg_i32(cg, L->wpc[0] - 1), "");
  }
  if (L->wpc[g] == 1) return l;
  if (L->tpw[g] == 1) return w;
  return LLVMBuildAdd(b, LLVMBuildMul(b, w, cg_i32(cg, L->tpw[g]), ""), l, "");
}

LLVMValueRef cg_coord(Cg *cg, const Layout *L, int slot, int d) {
  int off = layout_off(L, slot, d);
  int g = L->gdim[d];
  if (g < 0 || L->tpw[g] * L->wpc[g] == 1 || L->shape[d] <= L->espt[d]) return cg_i32(cg, off);
  LLVMValueRef base = LLVMBuildMul(cg->b, grid_pos(cg, L, g), cg_i32(cg, L->espt[d]), "");
  if (L->shape[d] < L->cover[d]) base = LLVMBuildAnd(cg->b, base, cg_i32(cg, L->shape[d] - 1), "");
  return off ? LLVMBuildAdd(cg->b, base, cg_i32(cg, off), "") : base;
}

LLVMValueRef cg_owner(Cg *cg, const Layout *L) {
  LLVMValueRef ok = NULL;
  for (int g = 0; g < 2; g++) {
    int n = L->tpw[g] * L->wpc[g];
    if (n == 1) continue;
    int d = -1;
    for (int k = 0; k < L->rank; k++)
      if (L->gdim[k] == g && L->shape[k] > 1) d = k;
    LLVMValueRef c = NULL;
    if (d < 0) {
      c = LLVMBuildICmp(cg->b, LLVMIntEQ, grid_pos(cg, L, g), cg_i32(cg, 0), "");
    } else if (L->shape[d] < L->cover[d]) {
      c = LLVMBuildICmp(cg->b, LLVMIntULT, grid_pos(cg, L, g),
                        cg_i32(cg, L->shape[d] / L->espt[d]), "");
    }
    if (c) ok = ok ? LLVMBuildAnd(cg->b, ok, c, "") : c;
  }
  return ok ? ok : LLVMConstInt(cg->i1, 1, 0);
}

LLVMValueRef *cg_alloc_elems(Cg *cg, int n) {
  LLVMValueRef *v = arena_alloc(cg->a, sizeof *v * (n > 0 ? n : 1));
  if (!v) cg->err = TJ_ERR_NO_MEMORY;
  return v;
}

void cg_set(Cg *cg, TirValue *v, const Layout *L, LLVMValueRef *elems) {
  ValInfo *vi = &cg->vi[v->id];
  if (!elems) return;
  if (vi->ntiles == vi->captiles) {
    int cap = vi->captiles ? vi->captiles * 2 : 2;
    Tile *n = arena_alloc(cg->a, sizeof *n * cap);
    if (!n) {
      cg->err = TJ_ERR_NO_MEMORY;
      return;
    }
    if (vi->ntiles) memcpy(n, vi->tiles, sizeof *n * vi->ntiles);
    vi->tiles = n;
    vi->captiles = cap;
  }
  vi->tiles[vi->ntiles].L = L;
  vi->tiles[vi->ntiles].v = elems;
  vi->ntiles++;
}

// An error placeholder of the right size and type, so lowering can go on
// to the end of the block and report once.
static LLVMValueRef *poison_elems(Cg *cg, TirValue *v, const Layout *L) {
  int n = L ? L->nelem : 1;
  LLVMValueRef *e = cg_alloc_elems(cg, n);
  if (!e) return NULL;
  for (int i = 0; i < n; i++) e[i] = LLVMGetPoison(cg_val_type(cg, v->type));
  return e;
}

LLVMValueRef *cg_get(Cg *cg, TirValue *v, const Layout *L) {
  ValInfo *vi = &cg->vi[v->id];
  if (v->type.rank == 0) {
    LLVMValueRef s = cg_get0(cg, v);
    LLVMValueRef *e = cg_alloc_elems(cg, L->nelem);
    if (e)
      for (int i = 0; i < L->nelem; i++) e[i] = s;
    return e;
  }
  for (int i = vi->ntiles - 1; i >= 0; i--)
    if (layout_eq(vi->tiles[i].L, L)) return vi->tiles[i].v;
  if (cg->err == TJ_OK)
    cg_error(cg, TJ_ERR_INTERNAL, v->def ? v->def->loc : (Loc){0},
             "internal error: codegen: value %%%d not lowered in the layout its user needs", v->id);
  return poison_elems(cg, v, L);
}

LLVMValueRef cg_get0(Cg *cg, TirValue *v) {
  ValInfo *vi = &cg->vi[v->id];
  if (vi->ntiles > 0 && vi->tiles[0].v) return vi->tiles[0].v[0];
  if (cg->err == TJ_OK)
    cg_error(cg, TJ_ERR_INTERNAL, v->def ? v->def->loc : (Loc){0},
             "internal error: codegen: scalar %%%d used before it is lowered", v->id);
  return LLVMGetPoison(cg_val_type(cg, v->type));
}

void cg_convert_requests(Cg *cg, TirValue *v) {
  ValInfo *vi = &cg->vi[v->id];
  if (v->type.rank == 0 || vi->remat) return;
  for (int i = 0; i < vi->nreq && cg->err == TJ_OK; i++) {
    const Layout *L = vi->req[i];
    if (layout_eq(L, vi->nat)) continue;
    LLVMValueRef *src = cg_get(cg, v, vi->nat);
    Dtype dt = v->type.ptr ? DT_U64 : v->type.dtype;
    LLVMValueRef *tmp = src;
    if (v->type.ptr) {
      tmp = cg_alloc_elems(cg, vi->nat->nelem);
      if (!tmp) return;
      for (int k = 0; k < vi->nat->nelem; k++) tmp[k] = LLVMBuildPtrToInt(cg->b, src[k], cg->i64, "");
    }
    LLVMValueRef *dst = lower_smem_shuffle(cg, tmp, vi->nat, L, dt, SHUF_CONVERT);
    if (dst && v->type.ptr)
      for (int k = 0; k < L->nelem; k++) dst[k] = LLVMBuildIntToPtr(cg->b, dst[k], cg->gptr, "");
    cg_set(cg, v, L, dst);
  }
}

// ---------------------------------------------------------------- lowering walk

static void set_loc(Cg *cg, Loc loc) {
  if (!cg->dib || loc.line <= 0) return;
  LLVMMetadataRef dl =
      LLVMDIBuilderCreateDebugLocation(cg->ctx, (unsigned)loc.line, (unsigned)loc.col, cg->disub, NULL);
  LLVMSetCurrentDebugLocation2(cg->b, dl);
}

static void lower_inst(Cg *cg, TirInst *in) {
  set_loc(cg, in->loc);
  switch (in->op) {
  case TIR_PROGRAM_ID:
  case TIR_NUM_PROGRAMS: {
    static const char *const xyz[3] = {"x", "y", "z"};
    char name[32];
    int ax = in->axis < 0 || in->axis > 2 ? 0 : in->axis;
    snprintf(name, sizeof name, "%s.%s", in->op == TIR_PROGRAM_ID ? "ctaid" : "nctaid", xyz[ax]);
    LLVMValueRef *e = cg_alloc_elems(cg, 1);
    if (!e) return;
    e[0] = cg_sreg(cg, name);
    cg_set(cg, in->res[0], layout_scalar(cg), e);
    return;
  }
  case TIR_LOAD:
    if (!pipe_lower_load(cg, in)) lower_load(cg, in);  // pipelined: cp.async (pipeline.c)
    break;
  case TIR_STORE: lower_store(cg, in); return;
  case TIR_REDUCE: lower_reduce(cg, in); break;
  case TIR_DOT: lower_dot(cg, in); break;
  case TIR_FOR: lower_for(cg, in); break;
  case TIR_IF: lower_if(cg, in); break;
  case TIR_RESHAPE: case TIR_TRANS:
    // A trans only MMA dots read as B is never done (mma.c reads its operand).
    if (!mma_trans_b(cg, in)) lower_reshape_trans(cg, in);
    break;
  case TIR_YIELD: return;
  default:
    lower_elementwise_inst(cg, in);
    break;
  }
  for (int i = 0; i < in->nres; i++) {
    cg_convert_requests(cg, in->res[i]);
    mma_hoist_frags(cg, in->res[i]);
  }
}

void cg_lower_block(Cg *cg, TirBlock *blk) {
  for (TirInst *in = blk->first; in && cg->err == TJ_OK; in = in->next) lower_inst(cg, in);
}

// ---------------------------------------------------------------- kernel

static void add_annotation(Cg *cg, const char *key, int val) {
  LLVMValueRef md[3] = {
      cg->fn,
      LLVMMDStringInContext(cg->ctx, key, (unsigned)strlen(key)),
      LLVMConstInt(cg->i32, (unsigned long long)val, 0),
  };
  LLVMAddNamedMetadataOperand(cg->mod, "nvvm.annotations", LLVMMDNodeInContext(cg->ctx, md, 3));
}

static void split_path(const char *path, char *dir, size_t ndir, const char **base) {
  const char *slash = strrchr(path, '/');
  if (!slash) {
    snprintf(dir, ndir, ".");
    *base = path;
    return;
  }
  size_t n = (size_t)(slash - path);
  if (n >= ndir) n = ndir - 1;
  memcpy(dir, path, n);
  dir[n] = 0;
  *base = slash + 1;
}

static void build_debug_info(Cg *cg) {
  const TirFunc *f = cg->f;
  const char *file = f->file ? f->file : "kernel.tj";
  char dir[512];
  const char *base;
  split_path(file, dir, sizeof dir, &base);
  cg->dib = LLVMCreateDIBuilder(cg->mod);
  LLVMMetadataRef df = LLVMDIBuilderCreateFile(cg->dib, base, strlen(base), dir, strlen(dir));
  // Kind 3 is DebugDirectivesOnly in LLVM's C++ enum (the C enum stops at
  // LineTablesOnly): NVPTX then emits .file/.loc without DWARF sections.
  LLVMMetadataRef cu = LLVMDIBuilderCreateCompileUnit(
      cg->dib, LLVMDWARFSourceLanguageC, df, "tilejit", 7, 1, "", 0, 0, "", 0,
      (LLVMDWARFEmissionKind)3, 0, 0, 0, "", 0, "", 0);
  (void)cu;
  LLVMMetadataRef sty = LLVMDIBuilderCreateSubroutineType(cg->dib, df, NULL, 0, LLVMDIFlagZero);
  int line = f->nparams > 0 && f->params[0].loc.line > 0 ? f->params[0].loc.line : 1;
  cg->disub = LLVMDIBuilderCreateFunction(cg->dib, df, f->name, strlen(f->name), f->name,
                                          strlen(f->name), df, (unsigned)line, sty, 0, 1,
                                          (unsigned)line, LLVMDIFlagZero, 1);
  LLVMSetSubprogram(cg->fn, cg->disub);
  LLVMAddModuleFlag(cg->mod, LLVMModuleFlagBehaviorWarning, "Debug Info Version", 18,
                    LLVMValueAsMetadata(LLVMConstInt(cg->i32, LLVMDebugMetadataVersion(), 0)));
  LLVMAddModuleFlag(cg->mod, LLVMModuleFlagBehaviorWarning, "Dwarf Version", 13,
                    LLVMValueAsMetadata(LLVMConstInt(cg->i32, 2, 0)));
  LLVMMetadataRef dl = LLVMDIBuilderCreateDebugLocation(cg->ctx, (unsigned)line, 1, cg->disub, NULL);
  LLVMSetCurrentDebugLocation2(cg->b, dl);
}

static bool build_kernel(Cg *cg) {
  const TirFunc *f = cg->f;
  int np = f->nparams;
  LLVMTypeRef *pt = arena_alloc(cg->a, sizeof *pt * (np + 1));
  if (!pt) {
    cg->err = TJ_ERR_NO_MEMORY;
    return false;
  }
  for (int i = 0; i < np; i++) {
    const TirParam *p = &f->params[i];
    pt[i] = p->ptr ? cg->gptr : cg_mem_type(cg, p->dtype);
  }
  LLVMTypeRef fty = LLVMFunctionType(cg->voidt, pt, (unsigned)np, 0);
  cg->fn = LLVMAddFunction(cg->mod, f->name, fty);
  LLVMSetFunctionCallConv(cg->fn, LLVMPTXKernelCallConv);
  add_annotation(cg, "kernel", 1);
  add_annotation(cg, "maxntidx", cg->nthreads);
  // `tunable min_programs_per_sm`: ptxas caps registers so that many fit.
  // 1 states nothing (and ptxas reads .minnctapersm 1 as leave to spend
  // more registers), so it is not emitted.
  if (f->min_programs_per_sm > 1) add_annotation(cg, "minctasm", f->min_programs_per_sm);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry");
  LLVMPositionBuilderAtEnd(cg->b, entry);
  if (cg->opt->line_info) build_debug_info(cg);

  for (int i = 0; i < np; i++) {
    const TirParam *p = &f->params[i];
    LLVMValueRef v = LLVMGetParam(cg->fn, (unsigned)i);
    LLVMSetValueName2(v, p->name, strlen(p->name));
    if (p->ptr && (p->spec & TIR_SPEC_ALIGN16)) {
      unsigned kind = LLVMGetEnumAttributeKindForName("align", 5);
      LLVMAddAttributeAtIndex(cg->fn, (unsigned)i + 1, LLVMCreateEnumAttribute(cg->ctx, kind, 16));
    }
    if (!p->ptr && p->dtype == DT_BOOL) v = LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstInt(cg->i8, 0, 0), "");
    if (!p->ptr && dtype_is_int(p->dtype) && (p->spec & TIR_SPEC_ONE))
      v = LLVMConstInt(cg_type(cg, p->dtype), 1, 0);
    LLVMValueRef *e = cg_alloc_elems(cg, 1);
    if (!e) return false;
    e[0] = v;
    cg_set(cg, p->value, layout_scalar(cg), e);
  }
  cg->tid = cg_sreg(cg, "tid.x");
  cg->lane = LLVMBuildAnd(cg->b, cg->tid, cg_i32(cg, 31), "lane");
  cg->warp = LLVMBuildLShr(cg->b, cg->tid, cg_i32(cg, 5), "warp");
  if (cg->scratch_bytes > 0) {
    // Static shared memory stops at 48 KiB; beyond it the buffer is the
    // dynamic one (extern, sized at launch from CgResult.shared_bytes).
    bool dyn = cg->scratch_bytes > 48 * 1024;
    LLVMTypeRef at = LLVMArrayType2(cg->i8, dyn ? 0 : (uint64_t)cg->scratch_bytes);
    cg->smem = LLVMAddGlobalInAddressSpace(cg->mod, at, "tj_smem", 3);
    if (dyn) {
      LLVMSetLinkage(cg->smem, LLVMExternalLinkage);
    } else {
      LLVMSetLinkage(cg->smem, LLVMInternalLinkage);
      LLVMSetInitializer(cg->smem, LLVMGetUndef(at));
    }
    // Swizzled MMA tiles assume 128-byte rows of banks; wgmma's descriptors
    // the 1024-byte swizzle repeat (tile_align).
    LLVMSetAlignment(cg->smem, (unsigned)cg->tile_align);
  }
  cg_lower_block(cg, f->body);
  if (cg->err != TJ_OK) return false;
  LLVMBuildRetVoid(cg->b);
  if (cg->dib) LLVMDIBuilderFinalize(cg->dib);
  return true;
}

static char *dup_msg(const char *s) {
  size_t n = strlen(s);
  char *c = tj_malloc(n + 1);
  if (c) memcpy(c, s, n + 1);
  return c;
}

// Each thread holds at least numel / nthreads elements of a tile. Past a
// thousand or so that means hundreds of spilled registers and minutes in
// LLVM (fuzzing found 2^20-element tiles on 128 threads taking over a
// minute), so such tiles are refused up front with a message that says what
// to change, rather than compiled into something useless.
enum { MAX_ELEMS_PER_THREAD = 1024 };

static tj_status check_tile_sizes(const TirFunc *f, const TirBlock *b, int nthreads, Diag *d) {
  for (const TirInst *in = b ? b->first : NULL; in; in = in->next) {
    for (int r = 0; r < in->nres; r++) {
      int64_t per = (tir_numel(in->res[r]->type) + nthreads - 1) / nthreads;
      if (per > MAX_ELEMS_PER_THREAD) {
        StrBuf sb;
        sb_init(&sb);
        tir_type_str(&sb, in->res[r]->type);
        diag_at(d, DIAG_ERROR, in->loc,
                "codegen: tile %s spreads %lld elements over each of %d threads (at most %d): use more warps "
                "or smaller tiles",
                sb.data ? sb.data : "?", (long long)per, nthreads, MAX_ELEMS_PER_THREAD);
        sb_free(&sb);
        return TJ_ERR_UNSUPPORTED;
      }
    }
    for (int k = 0; k < in->nblocks; k++) {
      tj_status st = check_tile_sizes(f, in->blocks[k], nthreads, d);
      if (st != TJ_OK) return st;
    }
  }
  return TJ_OK;
}

tj_status cg_llvm_compile(const TirFunc *f, const CgOptions *opt, CgResult *out, Diag *d) {
  if (!f || !opt || !out || !d) return TJ_ERR_INVALID_ARG;
  memset(out, 0, sizeof *out);
  const char *arch = opt->arch ? opt->arch : "sm_80";
  const char *feat = NULL;
  for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
    if (!strcmp(archs[i].arch, arch)) feat = archs[i].ptx;
  if (!feat) {
    diag_plain(d, DIAG_ERROR, "codegen: unsupported arch '%s' (sm_80, sm_86, sm_87, sm_89, sm_90, sm_90a)", arch);
    return TJ_ERR_UNSUPPORTED;
  }
  int nw = opt->num_warps > 0 ? opt->num_warps : (f->num_warps > 0 ? f->num_warps : 4);
  if (nw > 32 || (nw & (nw - 1))) {
    diag_plain(d, DIAG_ERROR, "codegen: num_warps must be a power of two in 1..32, got %d", nw);
    return TJ_ERR_INVALID_ARG;
  }
  tj_status big = check_tile_sizes(f, f->body, 32 * nw, d);
  if (big != TJ_OK) return big;
  pthread_once(&target_once, init_target);

  Arena arena;
  arena_init(&arena);
  Cg cg;
  memset(&cg, 0, sizeof cg);
  cg.f = f;
  cg.opt = opt;
  cg.d = d;
  cg.a = &arena;
  cg.num_warps = nw;
  cg.nthreads = 32 * nw;
  cg.wgmma_ok = !strcmp(arch, "sm_90a");
  cg.tile_align = 128;  // layout_analyse raises it for wgmma
  tj_status st = TJ_OK;
  LLVMTargetMachineRef tm = NULL;
  LLVMPassBuilderOptionsRef pbo = NULL;
  char *err = NULL;

  if (!layout_analyse(&cg)) {
    st = cg.err ? cg.err : TJ_ERR_INTERNAL;
    arena_free(&arena);
    return st;
  }

  cg.ctx = LLVMContextCreate();
  cg.mod = LLVMModuleCreateWithNameInContext(f->name, cg.ctx);
  cg.b = LLVMCreateBuilderInContext(cg.ctx);
  cg.i1 = LLVMInt1TypeInContext(cg.ctx);
  cg.i8 = LLVMInt8TypeInContext(cg.ctx);
  cg.i16 = LLVMInt16TypeInContext(cg.ctx);
  cg.i32 = LLVMInt32TypeInContext(cg.ctx);
  cg.i64 = LLVMInt64TypeInContext(cg.ctx);
  cg.f16 = LLVMHalfTypeInContext(cg.ctx);
  cg.bf16 = LLVMBFloatTypeInContext(cg.ctx);
  cg.f32 = LLVMFloatTypeInContext(cg.ctx);
  cg.f64 = LLVMDoubleTypeInContext(cg.ctx);
  cg.voidt = LLVMVoidTypeInContext(cg.ctx);
  cg.gptr = LLVMPointerTypeInContext(cg.ctx, 1);
  cg.sptr = LLVMPointerTypeInContext(cg.ctx, 3);

  const char *triple = "nvptx64-nvidia-cuda";
  LLVMTargetRef target;
  if (LLVMGetTargetFromTriple(triple, &target, &err)) {
    diag_plain(d, DIAG_ERROR, "codegen: no NVPTX target in this LLVM: %s", err ? err : "?");
    st = TJ_ERR_UNSUPPORTED;
    goto done;
  }
  tm = LLVMCreateTargetMachine(target, triple, arch, feat, LLVMCodeGenLevelDefault,
                               LLVMRelocDefault, LLVMCodeModelDefault);
  LLVMSetTarget(cg.mod, triple);
  {
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(cg.mod, td);
    LLVMDisposeTargetData(td);
  }

  if (!build_kernel(&cg)) {
    st = cg.err ? cg.err : TJ_ERR_INTERNAL;
    goto done;
  }
  if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &err)) {
    diag_plain(d, DIAG_ERROR, "internal error: codegen: invalid LLVM IR: %s", err ? err : "?");
    st = TJ_ERR_INTERNAL;
    goto done;
  }
  if (err) {
    LLVMDisposeMessage(err);
    err = NULL;
  }
  pbo = LLVMCreatePassBuilderOptions();
  LLVMErrorRef perr = LLVMRunPasses(cg.mod, pass_pipeline, tm, pbo);
  if (perr) {
    char *m = LLVMGetErrorMessage(perr);
    diag_plain(d, DIAG_ERROR, "internal error: codegen: LLVM passes: %s", m);
    LLVMDisposeErrorMessage(m);
    st = TJ_ERR_INTERNAL;
    goto done;
  }
  if (opt->keep_llvm) {
    char *ir = LLVMPrintModuleToString(cg.mod);
    out->llvm_ir = dup_msg(ir);
    LLVMDisposeMessage(ir);
  }
  LLVMMemoryBufferRef buf = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(tm, cg.mod, LLVMAssemblyFile, &err, &buf)) {
    diag_plain(d, DIAG_ERROR, "internal error: codegen: PTX emission: %s", err ? err : "?");
    st = TJ_ERR_INTERNAL;
    goto done;
  }
  {
    // Codegen's warnings (a dot kept off wgmma, say) head the PTX as
    // comments, so whoever reads it, and every cache hit, sees them too.
    size_t n = LLVMGetBufferSize(buf), nn = 0;
    const char *notes = d->nwarnings && d->text.data ? d->text.data : "";
    for (const char *c = notes; *c; c++) nn += *c == '\n' ? 4 : 1;
    out->ptx = tj_malloc(nn + 4 + n + 1);
    if (!out->ptx) {
      st = TJ_ERR_NO_MEMORY;
    } else {
      char *w = out->ptx;
      for (const char *c = notes; *c; c++) {
        if (c == notes || c[-1] == '\n') w += sprintf(w, "// ");
        *w++ = *c;
      }
      if (*notes && w[-1] != '\n') *w++ = '\n';
      memcpy(w, LLVMGetBufferStart(buf), n);
      w[n] = 0;
    }
    LLVMDisposeMemoryBuffer(buf);
  }
  out->entry = f->name;
  out->shared_bytes = cg.scratch_bytes;
  out->block_threads = cg.nthreads;
  if (st == TJ_OK && opt->keep_llvm && !out->llvm_ir) st = TJ_ERR_NO_MEMORY;

done:
  if (err) LLVMDisposeMessage(err);
  if (pbo) LLVMDisposePassBuilderOptions(pbo);
  if (cg.dib) LLVMDisposeDIBuilder(cg.dib);
  LLVMDisposeBuilder(cg.b);
  LLVMDisposeModule(cg.mod);
  if (tm) LLVMDisposeTargetMachine(tm);
  LLVMContextDispose(cg.ctx);
  arena_free(&arena);
  if (st != TJ_OK) cg_result_free(out);
  return st;
}

// ---------------------------------------------------------------- annotation

// Text of line `line` (1-based) of src, without its newline.
static const char *source_line(const char *src, int line, size_t *len) {
  const char *p = src;
  for (int l = 1; l < line && p; l++) {
    p = strchr(p, '\n');
    if (p) p++;
  }
  if (!p || !*p) return NULL;
  const char *e = strchr(p, '\n');
  *len = e ? (size_t)(e - p) : strlen(p);
  return p;
}

char *cg_ptx_annotate(const char *ptx, const char *source) {
  if (!ptx) return NULL;
  StrBuf sb;
  sb_init(&sb);
  char files[16][256];
  memset(files, 0, sizeof files);
  int pending = 0, last = 0, lastfile = -1;
  // NVPTX prints the .file directives at the end, after the code.
  for (const char *q = strstr(ptx, ".file"); q; q = strstr(q + 5, ".file")) {
    int fi;
    char name[256];
    if ((q == ptx || q[-1] == '\n' || q[-1] == '\t' || q[-1] == ' ') &&
        sscanf(q, ".file %d \"%255[^\"]\"", &fi, name) == 2 && fi >= 0 && fi < 16)
      snprintf(files[fi], sizeof files[fi], "%s", name);
  }
  const char *p = ptx;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    const char *s = p;
    while (s < p + n && (*s == ' ' || *s == '\t')) s++;
    int fi, li;
    char name[256];
    if (sscanf(s, ".file %d \"%255[^\"]\"", &fi, name) == 2 && fi >= 0 && fi < 16) {
      snprintf(files[fi], sizeof files[fi], "%s", name);
    } else if (sscanf(s, ".loc %d %d", &fi, &li) == 2) {
      if (li > 0 && (li != last || fi != lastfile)) pending = li;
      last = li;
      lastfile = fi;
    } else if (pending && s < p + n && *s != '.' && *s != '/' && *s != '$' && *s != '{' &&
               *s != '}' && *s != ')' && *s != '(') {
      size_t ln;
      const char *txt = source ? source_line(source, pending, &ln) : NULL;
      const char *fname = lastfile >= 0 && lastfile < 16 && files[lastfile][0] ? files[lastfile] : "?";
      const char *base = strrchr(fname, '/');
      base = base ? base + 1 : fname;
      if (txt) {
        while (ln > 0 && (*txt == ' ' || *txt == '\t')) txt++, ln--;
        sb_printf(&sb, "\t// %s:%d: %.*s\n", base, pending, (int)ln, txt);
      } else {
        sb_printf(&sb, "\t// %s:%d\n", base, pending);
      }
      pending = 0;
    }
    sb_putn(&sb, p, n);
    sb_putc(&sb, '\n');
    if (!e) break;
    p = e + 1;
  }
  if (sb.failed) {
    sb_free(&sb);
    return NULL;
  }
  return sb_steal(&sb);
}
