/* pipeline.c: software pipelining of the global loads that feed a
 * tensor-core dot inside a for loop, with cp.async over num_stages buffers.
 *
 * requires: the layout and axis analyses up to the dot (pipe_consider runs
 * from the layout pass, after the loads and their operands were analysed);
 * produces: the loads lowered as asynchronous copies into swizzled stage
 * buffers that lower_dot_mma reads with ldmatrix, and the buffers' place
 * in the shared memory (after everything else, pipe_finish).
 *
 * A load is pipelined when it sits in a for body, feeds only MMA dots there
 * (directly, or as B through a trans that they read untransposed; several
 * dots may read one load's stage buffer),
 * has no `other` but zero, the body stores nothing (so fetching early cannot
 * miss a write), its pointer and mask are computed in the body from the
 * induction variable and loop invariants only by elementwise ops (so they
 * can be computed for any iteration), and it moves at least 4 bytes per
 * copy (cp.async does 4, 8 or 16; the axis facts prove contiguity,
 * alignment and mask constancy, as for vector loads). With S stages and
 * iteration i (i = (iv - lo) / step):
 *
 *   preheader: for s < S-1: copy iteration s into stage s; commit
 *   body:      wait until at most S-2 groups are in flight (iteration i's
 *              copies landed); barrier (everyone's landed, and everyone is
 *              done reading stage (i-1) % S); if iteration i+S-1 exists,
 *              copy it into stage (i+S-1) % S; commit; dot reads stage i % S
 *
 * Masked-off elements are copied with source size 0, which writes zeros
 * and reads nothing: the `other` = 0 of the load. Preheader copies for
 * iterations past the end are all masked off (no branch there: lower_for
 * owns the block structure around the loop); in the body a branch skips
 * them, so nothing is in flight once the loop has run. The address of a
 * later iteration comes from lowering the pointer's (and mask's) defining
 * ops again with the induction variable replaced: their lowered forms are
 * set aside and restored around that (eval_at).
 *
 * All loads of one loop form one group: one wait, barrier and commit per
 * iteration. Each group has its own S stage buffers after the scratch that
 * layout changes and staging use, so nothing else in the loop touches them.
 */
#include "layout.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct PipeLoad {
  TirInst *load;
  int group;
  int off;       // byte offset of the tile in a stage
  int rowbytes;  // of the [rows][cols] tile
  int vec;       // bytes per cp.async: 4, 8 or 16
} PipeLoad;

typedef struct PipeGroup {
  TirInst *loop;
  int stage_bytes;
  int base;          // byte offset of stage 0 in the shared buffer
  bool issued;       // the body's wait/prefetch/commit are emitted
  LLVMValueRef cur;  // i32 byte offset of this iteration's stage
} PipeGroup;

struct PipeState {
  int stages;
  PipeLoad *loads;
  int nloads, caploads;
  PipeGroup *groups;
  int ngroups, capgroups;
};

int cg_smem_limit(const Cg *cg) {
  const char *a = cg->opt && cg->opt->arch ? cg->opt->arch : "sm_80";
  if (!strncmp(a, "sm_90", 5)) return 227 * 1024;
  if (!strcmp(a, "sm_86") || !strcmp(a, "sm_89")) return 99 * 1024;
  return 163 * 1024;  // sm_80, sm_87
}

static int num_stages(const Cg *cg) {
  int s = cg->f->num_stages;
  if (s == 0) return 3;
  if (s < 1) return 1;
  return s > 8 ? 8 : s;
}

static PipeLoad *find_load(const Cg *cg, const TirInst *ld) {
  const struct PipeState *ps = cg->pipe;
  if (!ps || !ld) return NULL;
  for (int i = 0; i < ps->nloads; i++)
    if (ps->loads[i].load == ld) return &ps->loads[i];
  return NULL;
}

// The value operand i of the dot reads from memory: B looks through a
// trans that mma.c folds into its ldmatrix.
static TirValue *operand_source(Cg *cg, const TirInst *dot, int i) {
  bool nk;
  return i == 1 ? mma_b_source(cg, dot, &nk) : dot->args[i];
}

static PipeLoad *operand_load(Cg *cg, const TirInst *dot, int i) {
  TirValue *x = operand_source(cg, dot, i);
  return x->def && x->def->op == TIR_LOAD ? find_load(cg, x->def) : NULL;
}

// ---------------------------------------------------------------- analysis

static int count_uses(const TirBlock *blk, const TirValue *v) {
  int n = 0;
  for (const TirInst *in = blk->first; in; in = in->next) {
    for (int i = 0; i < in->nargs; i++) n += in->args[i] == v;
    for (int k = 0; k < in->nblocks; k++) n += count_uses(in->blocks[k], v);
  }
  return n;
}

// Every use of x is in the body itself, by MMA dots reading it from
// shared memory: as A (unless that dot takes A from registers) or B, or
// through a trans they fold. Then several dots share one stage buffer.
static bool dot_uses_only(Cg *cg, const TirBlock *body, const TirValue *x) {
  int n = 0;
  for (const TirInst *in = body->first; in; in = in->next) {
    for (int k = 0; k < in->nblocks; k++)
      if (count_uses(in->blocks[k], x)) return false;
    bool uses = false;
    for (int i = 0; i < in->nargs; i++) uses |= in->args[i] == x;
    if (!uses) continue;
    n++;
    int wm, wn;
    if (in->op == TIR_TRANS) {
      if (!mma_trans_b(cg, in)) return false;
    } else if (in->op == TIR_DOT) {
      if (in->args[2] == x || !mma_supported(cg, in, &wm, &wn)) return false;
      if (in->args[0] == x && mma_a_in_regs(cg, in)) return false;
    } else {
      return false;
    }
  }
  return n > 0;
}

static bool inside(const TirBlock *body, const TirValue *v) {
  return v->def ? v->def->parent == body : v->block == body;
}

// v is computable for any iteration: the induction variable, loop
// invariants, and elementwise ops (scalars, or tiles the layout pass
// rematerialises) over those.
static bool cone_ok(Cg *cg, const TirBlock *body, TirValue *v, char *seen) {
  if (seen[v->id]) return true;
  seen[v->id] = 1;
  if (!inside(body, v)) return true;
  if (!v->def) return v == body->args[0];  // carried values change per iteration
  TirInst *in = v->def;
  if (in->nres != 1 || in->nargs > 3 || !lower_is_elementwise(in->op)) return false;
  if (v->type.rank > 0 && !cg->vi[v->id].remat) return false;
  for (int i = 0; i < in->nargs; i++)
    if (!cone_ok(cg, body, in->args[i], seen)) return false;
  return true;
}

static bool is_zero(const TirValue *v) {
  const TirInst *in = v->def;
  if (in && in->op == TIR_SPLAT) in = in->args[0]->def;
  if (!in || in->op != TIR_CONST) return false;
  if (dtype_is_float(v->type.dtype)) return in->cval.f == 0.0 && !signbit(in->cval.f);
  return in->cval.i == 0;
}

// Bytes per copy of the load's elements in layout L (as vector_width in
// lower_memory.c): contiguous, aligned and under one mask value.
static int copy_bytes(Cg *cg, const Layout *L, TirValue *ptr, TirValue *mask, int eb) {
  const AxisInfo *pa = &cg->vi[ptr->id].ax;
  int vec = L->espt[1] < pa->contig[1] ? L->espt[1] : pa->contig[1];
  if (vec < 1 || L->cnt[1] % vec) vec = 1;
  while (vec > 1 && (vec * eb > 16 || pa->div[1] < (int64_t)vec * eb)) vec /= 2;
  if (mask) {
    const AxisInfo *ma = &cg->vi[mask->id].ax;
    while (vec > 1 && ma->cnst[1] < vec) vec /= 2;
  }
  return vec * eb;
}

void pipe_consider(Cg *cg, TirInst *dot, int i) {
  int S = num_stages(cg);
  if (i == 0 && mma_a_in_regs(cg, dot)) return;
  TirValue *x = operand_source(cg, dot, i);
  TirInst *ld = x->def;
  if (S < 2 || !ld || ld->op != TIR_LOAD || ld->parent != dot->parent || find_load(cg, ld)) return;
  TirBlock *body = ld->parent;
  TirInst *loop = body->owner;
  if (!loop || loop->op != TIR_FOR || body->nargs < 1 || x->type.rank != 2 || x->type.ptr) return;
  if (ld->nargs < 1 || ld->args[0]->type.rank != 2) return;
  if (!dot_uses_only(cg, body, x) || tir_block_has(body, TIR_STORE)) return;
  TirValue *ptr = ld->args[0];
  TirValue *mask = (ld->flags & TIR_HAS_MASK) && ld->nargs > 1 ? ld->args[1] : NULL;
  TirValue *other = (ld->flags & TIR_HAS_OTHER) && ld->nargs > 2 ? ld->args[2] : NULL;
  if (other && !is_zero(other)) return;
  char *seen = arena_alloc(cg->a, (size_t)cg->f->nvalues + 1);
  if (!seen) return;
  memset(seen, 0, (size_t)cg->f->nvalues + 1);
  if (!cone_ok(cg, body, ptr, seen) || (mask && !cone_ok(cg, body, mask, seen))) return;
  const Layout *L = cg->vi[x->id].nat;
  int eb = dtype_bytes(x->type.dtype);
  int vec = copy_bytes(cg, L, ptr, mask, eb);
  if (vec < 4) return;

  if (!cg->pipe) {
    cg->pipe = arena_alloc(cg->a, sizeof *cg->pipe);
    if (!cg->pipe) return;
    memset(cg->pipe, 0, sizeof *cg->pipe);
    cg->pipe->stages = S;
  }
  struct PipeState *ps = cg->pipe;
  int g = -1;
  for (int k = 0; k < ps->ngroups; k++)
    if (ps->groups[k].loop == loop) g = k;
  if (g < 0) {
    if (ps->ngroups == ps->capgroups) {
      int cap = ps->capgroups ? ps->capgroups * 2 : 4;
      PipeGroup *n = arena_alloc(cg->a, sizeof *n * cap);
      if (!n) return;
      if (ps->ngroups) memcpy(n, ps->groups, sizeof *n * ps->ngroups);
      ps->groups = n;
      ps->capgroups = cap;
    }
    g = ps->ngroups++;
    memset(&ps->groups[g], 0, sizeof ps->groups[g]);
    ps->groups[g].loop = loop;
  }
  if (ps->nloads == ps->caploads) {
    int cap = ps->caploads ? ps->caploads * 2 : 4;
    PipeLoad *n = arena_alloc(cg->a, sizeof *n * cap);
    if (!n) return;
    if (ps->nloads) memcpy(n, ps->loads, sizeof *n * ps->nloads);
    ps->loads = n;
    ps->caploads = cap;
  }
  PipeLoad *pl = &ps->loads[ps->nloads++];
  pl->load = ld;
  pl->group = g;
  pl->rowbytes = x->type.shape[1] * eb;
  pl->off = ps->groups[g].stage_bytes;
  pl->vec = vec;
  ps->groups[g].stage_bytes += cg_tile_pad(cg, x->type.shape[0] * pl->rowbytes);
}

void pipe_finish(Cg *cg) {
  struct PipeState *ps = cg->pipe;
  if (!ps || ps->ngroups == 0) return;
  // Fewer stages where the buffers would not fit (down to two).
  for (;;) {
    int64_t total = cg_tile_pad(cg, cg->scratch_bytes);
    for (int g = 0; g < ps->ngroups; g++) total += (int64_t)ps->stages * ps->groups[g].stage_bytes;
    if (total <= cg_smem_limit(cg)) break;
    if (ps->stages == 2) {
      const TirInst *ld = ps->loads[0].load;
      cg_error(cg, TJ_ERR_UNSUPPORTED, ld->loc,
               "codegen: the dot's cp.async stage buffers need %lld bytes of shared memory "
               "(more than the %d KiB of %s); use smaller blocks",
               (long long)total, cg_smem_limit(cg) / 1024, cg->opt->arch ? cg->opt->arch : "sm_80");
      return;
    }
    ps->stages--;
  }
  int base = cg_tile_pad(cg, cg->scratch_bytes);
  for (int g = 0; g < ps->ngroups; g++) {
    ps->groups[g].base = base;
    base += ps->stages * ps->groups[g].stage_bytes;
  }
  cg->scratch_bytes = base;
}

bool pipe_operand(Cg *cg, const TirInst *in, int i) { return operand_load(cg, in, i) != NULL; }

LLVMValueRef pipe_operand_offset(Cg *cg, const TirInst *in, int i) {
  PipeLoad *pl = operand_load(cg, in, i);
  PipeGroup *g = pl ? &cg->pipe->groups[pl->group] : NULL;
  if (!g || !g->cur) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: dot before its pipelined load");
    return cg_i32(cg, 0);
  }
  return LLVMBuildAdd(cg->b, g->cur, cg_i32(cg, pl->off), "");
}

// ---------------------------------------------------------------- lowering

static void mark_cone(const TirBlock *body, TirValue *v, char *mark, TirValue **list, int *n) {
  if (mark[v->id] || !inside(body, v)) return;
  mark[v->id] = 1;
  list[(*n)++] = v;
  if (v->def)
    for (int i = 0; i < v->def->nargs; i++) mark_cone(body, v->def->args[i], mark, list, n);
}

typedef struct Saved {
  Tile *tiles;
  int ntiles, captiles;
} Saved;

// The load's pointers and mask (in its layout L) for the iteration whose
// induction value is iv, emitted at the builder's position: the body ops
// they depend on are lowered again with iv in place of the loop's phi.
static bool eval_at(Cg *cg, TirInst *ld, LLVMValueRef iv, LLVMValueRef **P, LLVMValueRef **Mk) {
  TirBlock *body = ld->parent;
  TirValue *ptr = ld->args[0];
  TirValue *mask = (ld->flags & TIR_HAS_MASK) && ld->nargs > 1 ? ld->args[1] : NULL;
  const Layout *L = cg->vi[ld->res[0]->id].nat;
  int nv = cg->f->nvalues + 1;
  char *mark = arena_alloc(cg->a, (size_t)nv);
  TirValue **list = arena_alloc(cg->a, sizeof *list * (size_t)(nv + 1));
  Saved *sv = arena_alloc(cg->a, sizeof *sv * (size_t)(nv + 1));
  if (!mark || !list || !sv) {
    cg->err = TJ_ERR_NO_MEMORY;
    return false;
  }
  memset(mark, 0, (size_t)nv);
  int n = 0;
  mark_cone(body, ptr, mark, list, &n);
  if (mask) mark_cone(body, mask, mark, list, &n);
  TirValue *ivv = body->args[0];
  if (!mark[ivv->id]) {
    mark[ivv->id] = 1;
    list[n++] = ivv;
  }
  for (int k = 0; k < n; k++) {
    ValInfo *vi = &cg->vi[list[k]->id];
    sv[k] = (Saved){vi->tiles, vi->ntiles, vi->captiles};
    vi->tiles = NULL;
    vi->ntiles = vi->captiles = 0;
  }
  LLVMValueRef *e = cg_alloc_elems(cg, 1);
  if (e) {
    e[0] = iv;
    cg_set(cg, ivv, layout_scalar(cg), e);
    for (TirInst *in = body->first; in && cg->err == TJ_OK; in = in->next)
      if (in->nres == 1 && mark[in->res[0]->id]) lower_elementwise_inst(cg, in);
    *P = cg_get(cg, ptr, L);
    *Mk = mask ? cg_get(cg, mask, L) : NULL;
  }
  for (int k = 0; k < n; k++) {
    ValInfo *vi = &cg->vi[list[k]->id];
    vi->tiles = sv[k].tiles;
    vi->ntiles = sv[k].ntiles;
    vi->captiles = sv[k].captiles;
  }
  return cg->err == TJ_OK && *P && (!mask || *Mk);
}

// `@own cp.async` of vec bytes (src-size `size`) from global p to shared dst.
static void owned_copy(Cg *cg, int vec, LLVMValueRef dst, LLVMValueRef p, LLVMValueRef size, LLVMValueRef own) {
  char text[96];
  snprintf(text, sizeof text, "@$3 cp.async.%s.shared.global [$0], [$1], %d, $2;", vec == 16 ? "cg" : "ca", vec);
  static const char cons[] = "l,l,r,b,~{memory}";
  LLVMTypeRef at[4] = {LLVMTypeOf(dst), LLVMTypeOf(p), cg->i32, cg->i1};
  LLVMValueRef args[4] = {dst, p, size, own};
  LLVMTypeRef fty = LLVMFunctionType(cg->voidt, at, 4, 0);
  LLVMValueRef asmv = LLVMGetInlineAsm(fty, text, strlen(text), (char *)cons, strlen(cons), 1, 0,
                                       LLVMInlineAsmDialectATT, 0);
  LLVMBuildCall2(cg->b, fty, asmv, args, 4, "");
}

// cp.async of the load's tile (pointers P, mask Mk) into the stage at byte
// offset `stage` (i32); `valid` (i1, may be NULL) masks off every element.
static void issue(Cg *cg, const PipeLoad *pl, LLVMValueRef stage, LLVMValueRef *P, LLVMValueRef *Mk,
                  LLVMValueRef valid) {
  LLVMBuilderRef b = cg->b;
  const Layout *L = cg->vi[pl->load->res[0]->id].nat;
  int eb = dtype_bytes(pl->load->res[0]->type.dtype), ve = pl->vec / eb;
  const char *name = pl->vec == 16 ? "llvm.nvvm.cp.async.cg.shared.global.16.s"
                     : pl->vec == 8 ? "llvm.nvvm.cp.async.ca.shared.global.8.s"
                                    : "llvm.nvvm.cp.async.ca.shared.global.4.s";
  LLVMValueRef base = LLVMBuildAdd(b, stage, cg_i32(cg, pl->off), "");
  // A replicated layout (a tile smaller than the thread grid) copies from
  // the owning threads only: replicas would write the same bytes again, a
  // write-write hazard (compute-sanitizer racecheck) and wasted traffic.
  // A replica may not take the zero-size form, which zero-fills: it skips
  // the instruction (a predicated cp.async).
  LLVMValueRef own = cg_owner(cg, L);
  if (LLVMIsAConstantInt(own) && LLVMConstIntGetZExtValue(own)) own = NULL;
  for (int i = 0; i < L->nelem; i += ve) {
    LLVMValueRef row = cg_coord(cg, L, i, 0), col = cg_coord(cg, L, i, 1);
    LLVMValueRef cb = LLVMBuildMul(b, col, cg_i32(cg, eb), "");
    LLVMValueRef off = LLVMBuildAdd(b, base, mma_swizzle(cg, row, cb, pl->rowbytes), "");
    LLVMValueRef pred = Mk ? Mk[i] : NULL;
    if (valid) pred = pred ? LLVMBuildAnd(b, pred, valid, "") : valid;
    LLVMValueRef size = pred ? LLVMBuildSelect(b, pred, cg_i32(cg, pl->vec), cg_i32(cg, 0), "")
                             : cg_i32(cg, pl->vec);
    if (own) {
      owned_copy(cg, pl->vec, cg_smem_ptr(cg, off), P[i], size, own);
      continue;
    }
    LLVMValueRef args[3] = {cg_smem_ptr(cg, off), P[i], size};
    cg_intrinsic(cg, name, NULL, 0, args, 3);
  }
}

// The block that enters the loop whose induction phi is `ivphi`: while the
// body is being lowered, its branch is the only use of the loop header.
static LLVMValueRef preheader_branch(LLVMValueRef ivphi) {
  if (!ivphi || !LLVMIsAPHINode(ivphi)) return NULL;
  LLVMBasicBlockRef head = LLVMGetInstructionParent(ivphi);
  LLVMUseRef u = LLVMGetFirstUse(LLVMBasicBlockAsValue(head));
  if (!u || LLVMGetNextUse(u)) return NULL;
  LLVMValueRef br = LLVMGetUser(u);
  return br && LLVMIsABranchInst(br) ? br : NULL;
}

// a + k * step < hi without overflow (in 64 bits for narrower ivs).
static LLVMValueRef iter_exists(Cg *cg, LLVMValueRef a, int k, LLVMValueRef step, LLVMValueRef hi, bool sg) {
  LLVMBuilderRef b = cg->b;
  if (LLVMGetIntTypeWidth(LLVMTypeOf(a)) < 64) {
    a = sg ? LLVMBuildSExt(b, a, cg->i64, "") : LLVMBuildZExt(b, a, cg->i64, "");
    step = sg ? LLVMBuildSExt(b, step, cg->i64, "") : LLVMBuildZExt(b, step, cg->i64, "");
    hi = sg ? LLVMBuildSExt(b, hi, cg->i64, "") : LLVMBuildZExt(b, hi, cg->i64, "");
  }
  LLVMValueRef x = LLVMBuildAdd(b, a, LLVMBuildMul(b, step, LLVMConstInt(LLVMTypeOf(step), (unsigned long long)k, 0), ""), "");
  return LLVMBuildICmp(b, sg ? LLVMIntSLT : LLVMIntULT, x, hi, "");
}

static void commit(Cg *cg) { cg_intrinsic(cg, "llvm.nvvm.cp.async.commit.group", NULL, 0, NULL, 0); }

bool pipe_lower_load(Cg *cg, TirInst *in) {
  PipeLoad *pl = find_load(cg, in);
  if (!pl) return false;
  struct PipeState *ps = cg->pipe;
  PipeGroup *g = &ps->groups[pl->group];
  if (g->issued) return true;  // another load of the group issued this one's copies
  g->issued = true;
  LLVMBuilderRef b = cg->b;
  TirInst *loop = g->loop;
  TirBlock *body = loop->blocks[0];
  TirValue *ivv = body->args[0];
  int S = ps->stages;
  Dtype it = ivv->type.dtype;
  bool sg = dtype_is_signed(it);
  LLVMTypeRef ity = cg_type(cg, it);
  LLVMValueRef iv = cg_get0(cg, ivv);
  LLVMValueRef lo = lower_convert(cg, cg_get0(cg, loop->args[0]), loop->args[0]->type.dtype, it);
  LLVMValueRef hi = lower_convert(cg, cg_get0(cg, loop->args[1]), loop->args[1]->type.dtype, it);
  LLVMValueRef st = lower_convert(cg, cg_get0(cg, loop->args[2]), loop->args[2]->type.dtype, it);
  LLVMValueRef br = preheader_branch(iv);
  if (!br) {
    cg_error(cg, TJ_ERR_INTERNAL, in->loc, "internal error: codegen: no preheader for a pipelined loop");
    return true;
  }

  // Prologue, before the loop: iterations 0 .. S-2 into stages 0 .. S-2.
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(b);
  LLVMPositionBuilderBefore(b, br);
  for (int s = 0; s < S - 1 && cg->err == TJ_OK; s++) {
    LLVMValueRef ivs = LLVMBuildAdd(b, lo, LLVMBuildMul(b, st, LLVMConstInt(ity, (unsigned long long)s, 0), ""), "");
    LLVMValueRef valid = iter_exists(cg, lo, s, st, hi, sg);
    for (int k = 0; k < ps->nloads; k++) {
      PipeLoad *q = &ps->loads[k];
      LLVMValueRef *P, *Mk;
      if (q->group != pl->group || !eval_at(cg, q->load, ivs, &P, &Mk)) continue;
      issue(cg, q, cg_i32(cg, g->base + s * g->stage_bytes), P, Mk, valid);
    }
    commit(cg);
  }
  LLVMPositionBuilderAtEnd(b, cur);
  if (cg->err != TJ_OK) return true;

  // This iteration: its stage, then the copies for iteration i + S - 1.
  LLVMValueRef one = LLVMConstInt(ity, 1, 0);
  LLVMValueRef stp = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, st, LLVMConstNull(ity), ""), one, st, "");
  LLVMValueRef k = LLVMBuildUDiv(b, LLVMBuildSub(b, iv, lo, ""), stp, "");
  LLVMValueRef Sv = LLVMConstInt(ity, (unsigned long long)S, 0);
  LLVMValueRef cs = LLVMBuildURem(b, k, Sv, "");
  if (LLVMGetIntTypeWidth(ity) != 32) cs = LLVMBuildTrunc(b, cs, cg->i32, "");
  LLVMValueRef kn = LLVMBuildAdd(b, k, LLVMConstInt(ity, (unsigned long long)(S - 1), 0), "");
  LLVMValueRef ns = LLVMBuildURem(b, kn, Sv, "");
  if (LLVMGetIntTypeWidth(ity) != 32) ns = LLVMBuildTrunc(b, ns, cg->i32, "");
  g->cur = LLVMBuildAdd(b, cg_i32(cg, g->base), LLVMBuildMul(b, cs, cg_i32(cg, g->stage_bytes), ""), "");
  LLVMValueRef nxt = LLVMBuildAdd(b, cg_i32(cg, g->base), LLVMBuildMul(b, ns, cg_i32(cg, g->stage_bytes), ""), "");
  LLVMValueRef wn = cg_i32(cg, S - 2);
  cg_intrinsic(cg, "llvm.nvvm.cp.async.wait.group", NULL, 0, &wn, 1);
  cg_barrier(cg);
  LLVMValueRef valid = iter_exists(cg, iv, S - 1, st, hi, sg);
  LLVMBasicBlockRef thenb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "pipe.fetch");
  LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "pipe.join");
  LLVMBuildCondBr(b, valid, thenb, join);
  LLVMPositionBuilderAtEnd(b, thenb);
  LLVMValueRef ivn = LLVMBuildAdd(b, iv, LLVMBuildMul(b, st, LLVMConstInt(ity, (unsigned long long)(S - 1), 0), ""), "");
  for (int q = 0; q < ps->nloads && cg->err == TJ_OK; q++) {
    PipeLoad *p = &ps->loads[q];
    LLVMValueRef *P, *Mk;
    if (p->group != pl->group || !eval_at(cg, p->load, ivn, &P, &Mk)) continue;
    issue(cg, p, nxt, P, Mk, NULL);
  }
  LLVMBuildBr(b, join);
  LLVMPositionBuilderAtEnd(b, join);
  commit(cg);
  return true;
}
