/* launch.c: the generic launcher, kernel variants, PTX -> loaded module.
 *
 * requires: a tj_kernel from tj_kernel_compile (tile IR + signature, k->rt
 * with the source digest); produces: loaded CUfunctions, launches.
 *
 * One launcher serves every kernel: arguments are marshalled from the
 * TirParam signature into 8-byte slots (pointers as CUdeviceptr, scalars
 * converted to the parameter dtype), so no per-signature code is generated.
 *
 * Specialisation (as in Triton): a pointer argument that is 16-byte aligned
 * and an integer argument divisible by 16 (or equal to 1) are facts the
 * code generator can use (vector loads, fewer masks). The launcher computes
 * those bits for the actual arguments with a few bit tests, packs 3 bits per
 * parameter into a uint64_t (first 21 parameters; later ones stay generic,
 * which is always correct), and picks the kernel's variant for that spec.
 * Variants live in a small per-kernel table (mutex-protected, compiled
 * through the cache on a miss); the last-used variant is an atomic pointer
 * checked without a lock, which is the steady-state path. When the table is
 * full, new specs fall back to the generic variant (spec 0).
 *
 * Pointer validation (tj_ctx_set_validate) costs a cuPointerGetAttributes per
 * pointer; to keep the launch path within ~1 us of raw cuLaunchKernel the
 * last validated address of each parameter is remembered (atomically), so
 * only a new address is queried.
 */
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAUNCH_PARAMS 256

tj_status rt_kernel_init(tj_ctx *ctx, tj_kernel *k, const char *src, size_t len, unsigned flags) {
  RtKernel *kr = tj_calloc(1, sizeof *kr);
  if (!kr) return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  if (pthread_mutex_init(&kr->mu, NULL) != 0) {
    tj_free(kr);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  int np = k->func->nparams;
  kr->checked = tj_calloc((size_t)(np ? np : 1), sizeof *kr->checked);
  if (!kr->checked) {
    pthread_mutex_destroy(&kr->mu);
    tj_free(kr);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  for (int i = 0; i < np; i++) atomic_init(&kr->checked[i], 0);
  atomic_init(&kr->last, NULL);
  kr->no_cache = (flags & TJ_COMPILE_NO_CACHE) != 0;
  kr->no_fp_fusion = (flags & TJ_COMPILE_NO_FP_FUSION) != 0;
  CacheKeyInputs in = {
    .tilejit_version = tj_version(),
    .build_id = cache_build_id(),
    .llvm_version = tj_llvm_version(),
    .source = src,
    .source_len = len,
    .kernel = k->name,
    .consts = k->func->consts,
    .nconsts = k->func->nconsts,
    .num_warps = k->num_warps,
    .options = kr->no_fp_fusion ? "line_info=1,fp_fusion=0" : "line_info=1,fp_fusion=1",
  };
  cache_digest(&in, kr->digest);
  kr->has_digest = true;
  k->rt = kr;
  return TJ_OK;
}

void rt_kernel_free(tj_kernel *k) {
  RtKernel *kr = k->rt;
  if (!kr) return;
  tj_free((void *)kr->checked);
  pthread_mutex_destroy(&kr->mu);
  tj_free(kr);
  k->rt = NULL;
}

static void set_spec(TirFunc *f, uint64_t spec) {
  for (int i = 0; i < f->nparams; i++)
    f->params[i].spec = i < RT_SPEC_MAX_PARAMS ? (unsigned)(spec >> (RT_SPEC_BITS * i)) & 7u : 0;
}

tj_status rt_compile_variant(tj_ctx *ctx, tj_kernel *k, uint64_t spec, const char *arch,
                             bool keep_llvm, RtEntry **out, char **llvm) {
  RtKernel *kr = k->rt;
  *out = NULL;
  if (llvm) *llvm = NULL;
  if (!kr || !kr->has_digest) return api_error(ctx, TJ_ERR_INTERNAL, "internal error: kernel has no cache digest");
  uint8_t key[32];
  cache_key(kr->digest, spec, arch, key);
  bool dump_llvm = api_dump_wanted("llvm");
  bool use_cache = !kr->no_cache && ctx->rt->cache_on;
  // A requested LLVM dump needs LLVM to run; the result is still cached.
  if (!dump_llvm && use_cache && cache_lookup(ctx, key, true, out) == TJ_OK) {
    if (api_dump_wanted("ptx")) api_dump("ptx", k->name, (*out)->ptx);
    return TJ_OK;
  }

  set_spec(k->func, spec);
  Diag d;
  diag_init(&d);
  CgOptions co = { .arch = arch, .num_warps = k->num_warps, .line_info = true, .no_fp_fusion = kr->no_fp_fusion,
                   .keep_llvm = keep_llvm || dump_llvm };
  CgResult r = {0};
  tj_status st = cg_llvm_compile(k->func, &co, &r, &d);
  set_spec(k->func, 0);
  if (st != TJ_OK || !r.ptx) {
    if (st == TJ_OK) st = TJ_ERR_INTERNAL;
    const char *text = d.text.data && *d.text.data ? d.text.data : "LLVM backend failed";
    if (st == TJ_ERR_NO_MEMORY) api_error(ctx, st, "out of memory in the LLVM backend");
    else api_error(ctx, st, "%s", text);
    cg_result_free(&r);
    diag_free(&d);
    return st;
  }
  // Codegen warnings: counted, shown under TILEJIT_VERBOSE (the CLI sets
  // it), and kept as comments at the head of the PTX.
  if (d.nwarnings && d.text.data) {
    size_t n = strlen(d.text.data);
    while (n && d.text.data[n - 1] == '\n') d.text.data[--n] = 0;
    rt_warn(ctx, "compiling '%s':\n%s", k->name, d.text.data);
  }
  diag_free(&d);
  if (dump_llvm && r.llvm_ir) api_dump("llvm", k->name, r.llvm_ir);
  if (api_dump_wanted("ptx")) api_dump("ptx", k->name, r.ptx);

  RtEntry *e = cache_entry_new();
  if (!e) { cg_result_free(&r); return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory"); }
  memcpy(e->key, key, 32);
  e->name = tj_strdup(r.entry ? r.entry : k->name);
  e->arch = tj_strdup(arch);
  e->ptx = r.ptx;
  e->ptx_len = strlen(r.ptx);
  r.ptx = NULL;
  e->shared_bytes = r.shared_bytes;
  e->num_warps = k->num_warps;
  if (llvm && keep_llvm) {
    *llvm = r.llvm_ir;
    r.llvm_ir = NULL;
  }
  cg_result_free(&r);
  if (!e->name || !e->arch) {
    cache_entry_free(e);
    if (llvm) { tj_free(*llvm); *llvm = NULL; }
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  *out = cache_insert(ctx, e, use_cache);
  return TJ_OK;
}

// The number just before `what` in a JIT info log; -1 when absent.
static int parse_before(const char *log, const char *what) {
  const char *p = log ? strstr(log, what) : NULL;
  if (!p) return -1;
  const char *q = p;
  while (q > log && q[-1] == ' ') q--;
  const char *digits_end = q;
  while (q > log && q[-1] >= '0' && q[-1] <= '9') q--;
  if (q == digits_end) return -1;
  return atoi(q);
}

void rt_parse_spills(const char *log, int *stores, int *loads) {
  *stores = parse_before(log, "bytes spill stores");
  *loads = parse_before(log, "bytes spill loads");
}

// PTX -> module through the driver's JIT (cuModuleLoadDataEx), which
// compiles a whole program. Not through the driver's linker (cuLinkCreate /
// cuLinkAddData / cuLinkComplete), which would hand back a cubin to cache
// but compiles PTX as relocatable code, as `ptxas -c` does: on the H200 that
// took 10-50% more registers for the same PTX (layernorm 8192 wide 80 ->
// 120: 2 programs of 8 warps per SM instead of 3; dropout 123 -> 144;
// softmax 50 -> 56). No driver call returns the whole-program cubin, so
// the disk cache keeps the PTX and the driver's own JIT cache
// (CUDA_CACHE_PATH, ~/.nv/ComputeCache) the SASS: a later process loading
// the same PTX skips the compile. The verbose info log gives the spill
// counts when the JIT ran; on a JIT-cache hit it is empty and the counts
// stay as the disk entry had them. *logged: the log had them.
static tj_status jit_load(tj_ctx *ctx, RtEntry *e, CUmodule *mod, bool *logged) {
  const RtDriver *d = rt_driver();
  *logged = false;
  enum { LOG = 1 << 15 };
  char *info = tj_calloc(1, LOG), *err = tj_calloc(1, LOG);
  if (!info || !err) {
    tj_free(info);
    tj_free(err);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  int opts[] = { CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                 CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE };
  void *vals[] = { info, (void *)(uintptr_t)(LOG - 1), err, (void *)(uintptr_t)(LOG - 1),
                   (void *)(uintptr_t)1 };
  tj_status st = TJ_OK;
  char ebuf[200];
  CUresult r = d->cuModuleLoadDataEx(mod, e->ptx, 5, opts, vals);
  if (r == CUDA_SUCCESS) {
    int s, l;
    rt_parse_spills(info, &s, &l);
    if (s >= 0 && l >= 0) {
      *logged = s != e->spill_stores || l != e->spill_loads;
      e->spill_stores = s;
      e->spill_loads = l;
    }
  } else {
    *mod = NULL;
    st = api_error(ctx, r == CUDA_ERROR_OUT_OF_MEMORY ? TJ_ERR_NO_MEMORY : TJ_ERR_CUDA,
                   "PTX JIT of kernel '%s' for %s failed: %s%s%s", e->name, e->arch,
                   rt_cu_error(d, r, ebuf, sizeof ebuf), err[0] ? "\n" : "", err);
  }
  tj_free(info);
  tj_free(err);
  return st;
}

// Requires e->mu and ctx's context current. write_back: rewrite the disk
// entry when the JIT log told spill counts it did not have (an entry is
// written at compile time, before its first JIT).
static tj_status load_locked(tj_ctx *ctx, RtEntry *e, bool write_back) {
  const RtDriver *d = rt_driver();
  CUmodule mod = NULL;
  bool logged = false;
  tj_status st = jit_load(ctx, e, &mod, &logged);
  if (st != TJ_OK) return st;
  if (logged && write_back) cache_update_disk(ctx, e);
  CUresult r;
  CUfunction fn = NULL;
  r = d->cuModuleGetFunction(&fn, mod, e->name);
  if (r != CUDA_SUCCESS) {
    d->cuModuleUnload(mod);
    char buf[200];
    return api_error(ctx, TJ_ERR_INTERNAL, "internal error: PTX has no entry '%s': %s", e->name,
                     rt_cu_error(d, r, buf, sizeof buf));
  }
  int stat_smem = 0;
  d->cuFuncGetAttribute(&stat_smem, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn);
  int dyn = e->shared_bytes > stat_smem ? e->shared_bytes - stat_smem : 0;
  if (dyn > 48 * 1024) {
    r = d->cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dyn);
    if (r != CUDA_SUCCESS) {
      int optin = 0;
      d->cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, ctx->rt->dev);
      d->cuModuleUnload(mod);
      return api_error(ctx, TJ_ERR_UNSUPPORTED,
                       "kernel '%s' needs %d bytes of shared memory; device %d allows %d per block",
                       e->name, e->shared_bytes, ctx->device, optin);
    }
  }
  e->mod = mod;
  e->dyn_smem = dyn;
  e->fn = fn;
  return TJ_OK;
}

static tj_status entry_load(tj_ctx *ctx, RtEntry *e, bool write_back) {
  CUcontext saved;
  bool pushed;
  tj_status st = rt_ctx_enter(ctx, &saved, &pushed);
  if (st != TJ_OK) return st;
  pthread_mutex_lock(&e->mu);
  if (!e->fn) st = load_locked(ctx, e, write_back && ctx->rt->cache_on);
  pthread_mutex_unlock(&e->mu);
  rt_ctx_leave(ctx, pushed);
  return st;
}

// The arch variants are built for: the kernel's own when it was compiled
// for one (an explicit "sm_90a" stays), else the device's.
static tj_status variant_arch(tj_ctx *ctx, const tj_kernel *k, const char **arch) {
  if (k->arch) { *arch = k->arch; return TJ_OK; }
  if (!ctx->rt->arch[0])
    return api_error(ctx, TJ_ERR_UNSUPPORTED,
                     "CUDA device %d has compute capability %d.%d; tilejit needs 8.0 or newer",
                     ctx->device, ctx->rt->cc_major, ctx->rt->cc_minor);
  *arch = ctx->rt->arch;
  return TJ_OK;
}

// Slow path: finds or builds the variant for spec on ctx.
static tj_status get_variant(tj_ctx *ctx, tj_kernel *k, uint64_t spec, RtVariant **out) {
  RtKernel *kr = k->rt;
  uint64_t serial = ctx->rt->serial;
  tj_status st = TJ_OK;
  pthread_mutex_lock(&kr->mu);
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < kr->nvars; i++) {
      if (kr->vars[i].ctx_serial == serial && kr->vars[i].spec == spec) {
        *out = &kr->vars[i];
        atomic_store_explicit(&kr->last, *out, memory_order_release);
        goto done;
      }
    }
    // Keep the last slot for the generic variant, which fits any arguments.
    if (kr->nvars < RT_MAX_VARIANTS - 1 || (spec == 0 && kr->nvars < RT_MAX_VARIANTS)) break;
    spec = 0;
  }
  if (kr->nvars >= RT_MAX_VARIANTS) {
    st = api_error(ctx, TJ_ERR_UNSUPPORTED, "kernel '%s' has %d variants loaded (the most per kernel); "
                   "compile it again for another context", k->name, kr->nvars);
    goto done;
  }
  const char *arch = NULL;
  if ((st = variant_arch(ctx, k, &arch)) != TJ_OK) goto done;
  RtEntry *e;
  if ((st = rt_compile_variant(ctx, k, spec, arch, false, &e, NULL)) != TJ_OK) goto done;
  if ((st = entry_load(ctx, e, !kr->no_cache)) != TJ_OK) goto done;
  RtVariant *v = &kr->vars[kr->nvars];
  v->ctx_serial = serial;
  v->spec = spec;
  v->entry = e;
  kr->nvars++;
  *out = v;
  atomic_store_explicit(&kr->last, v, memory_order_release);
done:
  pthread_mutex_unlock(&kr->mu);
  return st;
}

typedef union Slot { uint64_t u64; int64_t i64; double f64; float f32; uint32_t u32; uint16_t u16; uint8_t u8; } Slot;

static tj_status int_range_error(tj_ctx *ctx, const tj_kernel *k, int i, int64_t v) {
  const TirParam *p = &k->func->params[i];
  return api_error(ctx, TJ_ERR_INVALID_ARG, "argument %d ('%s') of kernel '%s': %lld does not fit in %s",
                   i, p->name, k->name, (long long)v, dtype_name(p->dtype));
}

// Fills slot i from args[i] per the parameter's dtype and returns its spec bits.
static tj_status marshal(tj_ctx *ctx, const tj_kernel *k, int i, const tj_arg *a, Slot *s, unsigned *bits) {
  const TirParam *p = &k->func->params[i];
  *bits = 0;
  s->u64 = 0;
  if (p->ptr) {
    uintptr_t v = (uintptr_t)a->u.buf.ptr;
    s->u64 = (uint64_t)v;
    if ((v & 15) == 0) *bits = TIR_SPEC_ALIGN16;
    return TJ_OK;
  }
  if (dtype_is_float(p->dtype)) {
    double x = a->kind == TJ_ARG_FLOAT ? a->u.f : (double)a->u.i;
    switch (p->dtype) {
    case DT_F16: s->u16 = f32_to_f16((float)x); break;
    case DT_BF16: s->u16 = f32_to_bf16((float)x); break;
    case DT_F32: s->f32 = (float)x; break;
    default: s->f64 = x; break;
    }
    return TJ_OK;
  }
  int64_t v = a->u.i;
  int bitsz = dtype_bits(p->dtype);
  if (p->dtype == DT_BOOL) {
    s->u8 = v != 0;
    return TJ_OK;
  }
  if (bitsz < 64) {
    int64_t lo = dtype_is_signed(p->dtype) ? -((int64_t)1 << (bitsz - 1)) : 0;
    int64_t hi = dtype_is_signed(p->dtype) ? ((int64_t)1 << (bitsz - 1)) - 1 : ((int64_t)1 << bitsz) - 1;
    if (v < lo || v > hi) return int_range_error(ctx, k, i, v);
  } else if (p->dtype == DT_I64 || p->dtype == DT_U64) {
    // u64 takes the int64 bit pattern: the only way to pass values >= 2^63.
  }
  switch (bitsz) {
  case 8: s->u8 = (uint8_t)v; break;
  case 16: s->u16 = (uint16_t)v; break;
  case 32: s->u32 = (uint32_t)v; break;
  default: s->i64 = v; break;
  }
  if (v % 16 == 0) *bits |= TIR_SPEC_DIV16;
  if (v == 1) *bits |= TIR_SPEC_ONE;
  return TJ_OK;
}

// cuPointerGetAttributes, unlike cuPointerGetAttribute, answers 0 for a
// pointer the driver does not know instead of failing: refusing a host
// pointer then makes no failing CUDA call (compute-sanitizer reports those).
CUresult rt_pointer_memtype(CUdeviceptr p, unsigned *mt) {
  int attr = CU_POINTER_ATTRIBUTE_MEMORY_TYPE;
  void *data[1] = { mt };
  *mt = 0;
  return rt_driver()->cuPointerGetAttributes(1, &attr, data, p);
}

static tj_status check_pointer(tj_ctx *ctx, const tj_kernel *k, int i, uint64_t v) {
  RtKernel *kr = k->rt;
  if (v == 0 || atomic_load_explicit(&kr->checked[i], memory_order_relaxed) == v) return TJ_OK;
  unsigned mt = 0;
  CUresult r = rt_pointer_memtype((CUdeviceptr)v, &mt);
  const TirParam *p = &k->func->params[i];
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuPointerGetAttributes", r);
  if (mt == 0)
    return api_error(ctx, TJ_ERR_INVALID_ARG,
                     "argument %d ('%s') of kernel '%s' is not CUDA memory (a host pointer?): pass device "
                     "or managed memory", i, p->name, k->name);
  if (mt != CU_MEMORYTYPE_DEVICE && mt != CU_MEMORYTYPE_UNIFIED)
    return api_error(ctx, TJ_ERR_INVALID_ARG,
                     "argument %d ('%s') of kernel '%s' is host memory (memory type %u): pass device "
                     "or managed memory", i, p->name, k->name, mt);
  atomic_store_explicit(&kr->checked[i], v, memory_order_relaxed);
  return TJ_OK;
}

tj_status tj_kernel_launch(tj_ctx *ctx, tj_kernel *k, const unsigned grid[3], const tj_arg *args,
                           int nargs, void *stream) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!k || !k->func || !k->rt) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_launch: kernel is NULL");
  if (!grid) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_launch: grid is NULL");
  tj_status st = api_check_args(ctx, k, args, nargs);
  if (st != TJ_OK) return st;
  if (nargs > MAX_LAUNCH_PARAMS)
    return api_error(ctx, TJ_ERR_UNSUPPORTED, "kernel '%s' has %d parameters; at most %d are supported",
                     k->name, nargs, MAX_LAUNCH_PARAMS);
  Slot slots[MAX_LAUNCH_PARAMS];
  void *params[MAX_LAUNCH_PARAMS];
  uint64_t spec = 0;
  for (int i = 0; i < nargs; i++) {
    unsigned bits;
    if ((st = marshal(ctx, k, i, &args[i], &slots[i], &bits)) != TJ_OK) return st;
    if (i < RT_SPEC_MAX_PARAMS) spec |= (uint64_t)bits << (RT_SPEC_BITS * i);
    params[i] = &slots[i];
  }
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return TJ_OK;

  RtDevice *rt = ctx->rt;
  if (!atomic_load_explicit(&rt->ready, memory_order_acquire) && (st = rt_device_ready(ctx)) != TJ_OK)
    return st;
  RtKernel *kr = k->rt;
  RtVariant *v = atomic_load_explicit(&kr->last, memory_order_acquire);
  if (!v || v->ctx_serial != rt->serial || v->spec != spec) {
    if ((st = get_variant(ctx, k, spec, &v)) != TJ_OK) return st;
  }
  const RtEntry *e = v->entry;

  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  if (atomic_load_explicit(&rt->validate, memory_order_relaxed)) {
    for (int i = 0; i < nargs; i++) {
      if (!k->func->params[i].ptr) continue;
      if ((st = check_pointer(ctx, k, i, slots[i].u64)) != TJ_OK) {
        rt_ctx_leave(ctx, pushed);
        return st;
      }
    }
  }
  CUresult r = rt_driver()->cuLaunchKernel(e->fn, grid[0], grid[1], grid[2], 32u * (unsigned)e->num_warps,
                                           1, 1, (unsigned)e->dyn_smem, (CUstream)stream, params, NULL);
  rt_ctx_leave(ctx, pushed);
  if (r != CUDA_SUCCESS) {
    char buf[200];
    return api_error(ctx, TJ_ERR_CUDA, "cuLaunchKernel of '%s' (grid %u x %u x %u, %d threads) failed: %s",
                     k->name, grid[0], grid[1], grid[2], 32 * e->num_warps,
                     rt_cu_error(rt_driver(), r, buf, sizeof buf));
  }
  return TJ_OK;
}

tj_status tj_kernel_info(tj_ctx *ctx, tj_kernel *k, tj_kernel_resources *out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!k || !k->func || !k->rt) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_info: kernel is NULL");
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_info: out is NULL");
  memset(out, 0, sizeof *out);
  tj_status st = rt_device_ready(ctx);
  if (st != TJ_OK) return st;
  RtVariant *v = atomic_load_explicit(&k->rt->last, memory_order_acquire);
  if (!v || v->ctx_serial != ctx->rt->serial) {
    if ((st = get_variant(ctx, k, 0, &v)) != TJ_OK) return st;
  }
  RtEntry *e = v->entry;
  const RtDriver *d = rt_driver();
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  d->cuFuncGetAttribute(&out->num_regs, CU_FUNC_ATTRIBUTE_NUM_REGS, e->fn);
  bool local_known = d->cuFuncGetAttribute(&out->local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, e->fn) ==
                     CUDA_SUCCESS;
  d->cuFuncGetAttribute(&out->static_shared_bytes, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, e->fn);
  d->cuFuncGetAttribute(&out->max_threads_per_block, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, e->fn);
  d->cuFuncGetAttribute(&out->binary_version, CU_FUNC_ATTRIBUTE_BINARY_VERSION, e->fn);
  rt_ctx_leave(ctx, pushed);
  pthread_mutex_lock(&e->mu);
  out->spill_stores = e->spill_stores;
  out->spill_loads = e->spill_loads;
  pthread_mutex_unlock(&e->mu);
  // When the driver's JIT cache answered there is no log; no local memory
  // at all still proves there are no spills.
  if (out->spill_stores < 0 && local_known && out->local_bytes == 0) out->spill_stores = out->spill_loads = 0;
  out->dynamic_shared_bytes = e->dyn_smem;
  out->block_threads = 32 * e->num_warps;
  snprintf(out->arch, sizeof out->arch, "%s", e->arch);
  return TJ_OK;
}

tj_status tj_kernel_info_text(tj_ctx *ctx, tj_kernel *k, char **out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_kernel_info_text: out is NULL");
  *out = NULL;
  tj_kernel_resources r;
  tj_status st = tj_kernel_info(ctx, k, &r);
  if (st != TJ_OK) return st;
  StrBuf sb;
  sb_init(&sb);
  sb_printf(&sb, "kernel: %s\narch: %s (SASS sm_%d)\nregisters: %d per thread\n", k->name, r.arch,
            r.binary_version, r.num_regs);
  if (r.spill_stores >= 0)
    sb_printf(&sb, "spills: %d bytes stores, %d bytes loads\n", r.spill_stores, r.spill_loads);
  else
    sb_puts(&sb, "spills: unknown (the driver's JIT cache answered; see local memory)\n");
  sb_printf(&sb, "local memory: %d bytes per thread\n", r.local_bytes);
  sb_printf(&sb, "shared memory: %d bytes static, %d bytes dynamic\n", r.static_shared_bytes,
            r.dynamic_shared_bytes);
  sb_printf(&sb, "threads: %d per block (this kernel allows up to %d)\n", r.block_threads,
            r.max_threads_per_block);
  if (sb.failed) {
    sb_free(&sb);
    return api_error(ctx, TJ_ERR_NO_MEMORY, "out of memory");
  }
  *out = sb_steal(&sb);
  return TJ_OK;
}
