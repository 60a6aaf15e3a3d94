/* cuda.c: loading the CUDA driver and the per-context device state.
 *
 * requires: nothing at build time (no cuda.h, no libcuda); produces: the
 * RtDriver table, each context's RtDevice, the device queries of the public
 * API. The driver is dlopen'd once per process (pthread_once); every entry
 * point checks rt_driver()->status first, so a machine without a driver or
 * without a device gets TJ_ERR_NO_DEVICE and a message, never a crash.
 *
 * Contexts: tilejit uses the device's primary context, the one the CUDA
 * runtime (and so PyTorch and CuPy) uses, so their pointers and streams are
 * valid for us unchanged. Before a driver call we make it current: if the
 * thread has no current context we set ours (as the runtime API would); if
 * another context is current we push ours and pop it afterwards, leaving the
 * caller's state as we found it.
 */
#include "rt.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The one piece of global state in runtime/: written inside drv_once only.
static pthread_once_t drv_once = PTHREAD_ONCE_INIT;
static RtDriver drv;
// Context serial numbers; variant tables compare them instead of pointers,
// which may be reused after tj_ctx_free.
static _Atomic uint64_t next_serial = 1;

static void drv_load(void) {
  drv.status = TJ_ERR_NO_DEVICE;
  const char *path = getenv("TILEJIT_LIBCUDA");
  if (!path || !*path) path = "libcuda.so.1";
  drv.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!drv.lib) {
    const char *e = dlerror();
    snprintf(drv.msg, sizeof drv.msg,
             "no CUDA driver: cannot load %s (%s); a GPU and its driver are needed to run kernels",
             path, e ? e : "unknown error");
    return;
  }
  // dlsym returns void*; store it through a void** to stay within ISO C.
#define RT_DRIVER_LOAD(name, ret, args)                                                 \
  *(void **)(&drv.name) = dlsym(drv.lib, #name);                                        \
  if (!drv.name) {                                                                      \
    snprintf(drv.msg, sizeof drv.msg, "CUDA driver %s lacks %s (driver too old?)", path, \
             #name);                                                                    \
    return;                                                                             \
  }
  RT_DRIVER_FNS(RT_DRIVER_LOAD)
#undef RT_DRIVER_LOAD
#define RT_DRIVER_LOAD_OPT(name, ret, args) *(void **)(&drv.name) = dlsym(drv.lib, #name);
  RT_DRIVER_OPT_FNS(RT_DRIVER_LOAD_OPT)
#undef RT_DRIVER_LOAD_OPT
  // CUDA 12.8+ headers may map cuEventElapsedTime to a _v2 entry point; older
  // drivers only have the plain one. Either has this signature.
  if (!drv.cuEventElapsedTime) *(void **)(&drv.cuEventElapsedTime) = dlsym(drv.lib, "cuEventElapsedTime_v2");
  CUresult r = drv.cuInit(0);
  if (r != CUDA_SUCCESS) {
    char buf[160];
    snprintf(drv.msg, sizeof drv.msg, "CUDA driver loaded but cuInit failed: %s",
             rt_cu_error(&drv, r, buf, sizeof buf));
    return;
  }
  drv.cuDriverGetVersion(&drv.version);
  drv.status = TJ_OK;
}

const RtDriver *rt_driver(void) {
  pthread_once(&drv_once, drv_load);
  return &drv;
}

const char *rt_cu_error(const RtDriver *d, CUresult r, char *buf, size_t n) {
  const char *name = NULL, *str = NULL;
  if (d->cuGetErrorName) d->cuGetErrorName(r, &name);
  if (d->cuGetErrorString) d->cuGetErrorString(r, &str);
  if (name && str) snprintf(buf, n, "%s (%s)", name, str);
  else if (name) snprintf(buf, n, "%s", name);
  else snprintf(buf, n, "CUDA error %d", r);
  return buf;
}

tj_status rt_cu_fail(tj_ctx *ctx, const char *what, CUresult r) {
  char buf[200];
  tj_status s = (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_INVALID_DEVICE) ? TJ_ERR_NO_DEVICE
                                                                              : TJ_ERR_CUDA;
  return api_error(ctx, s, "%s failed: %s", what, rt_cu_error(&drv, r, buf, sizeof buf));
}

void rt_warn(tj_ctx *ctx, const char *fmt, ...) {
  RtDevice *rt = ctx->rt;
  va_list ap;
  va_start(ap, fmt);
  char msg[1024];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&rt->mu);
  rt->counters.warnings++;
  bool verbose = rt->verbose;
  pthread_mutex_unlock(&rt->mu);
  if (verbose) fprintf(stderr, "tilejit: warning: %s\n", msg);
}

static bool env_is_off(const char *name) {
  const char *v = getenv(name);
  return v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no"));
}

// *out NULL when the environment names no directory (no disk cache then).
// Out of memory is an error, not "no disk cache": the context would quietly
// run without one.
static tj_status default_cache_dir(char **out) {
  *out = NULL;
  StrBuf sb;
  sb_init(&sb);
  const char *v = getenv("TILEJIT_CACHE_DIR");
  if (v && *v) {
    sb_puts(&sb, v);
  } else if ((v = getenv("XDG_CACHE_HOME")) && *v) {
    sb_printf(&sb, "%s/tilejit", v);
  } else if ((v = getenv("HOME")) && *v) {
    sb_printf(&sb, "%s/.cache/tilejit", v);
  } else {
    sb_free(&sb);
    return TJ_OK;
  }
  if (sb.failed) { sb_free(&sb); return TJ_ERR_NO_MEMORY; }
  *out = sb_steal(&sb);
  return *out ? TJ_OK : TJ_ERR_NO_MEMORY;
}

tj_status rt_ctx_init(tj_ctx *ctx, int device) {
  RtDevice *rt = tj_calloc(1, sizeof *rt);
  if (!rt) return TJ_ERR_NO_MEMORY;
  if (pthread_mutex_init(&rt->mu, NULL) != 0) { tj_free(rt); return TJ_ERR_NO_MEMORY; }
  rt->serial = atomic_fetch_add(&next_serial, 1);
  atomic_init(&rt->validate, !env_is_off("TILEJIT_VALIDATE"));
  rt->cache_on = !env_is_off("TILEJIT_CACHE");
  rt->verbose = getenv("TILEJIT_VERBOSE") && *getenv("TILEJIT_VERBOSE") &&
                !env_is_off("TILEJIT_VERBOSE");
  if (default_cache_dir(&rt->cache_dir) != TJ_OK) {
    pthread_mutex_destroy(&rt->mu);
    tj_free(rt);
    return TJ_ERR_NO_MEMORY;
  }
  const char *mb = getenv("TILEJIT_CACHE_MAX_MB");
  if (mb && *mb) {
    char *end;
    double v = strtod(mb, &end);
    if (*end == '\0' && v > 0) rt->cache_max_bytes = (uint64_t)(v * 1024.0 * 1024.0);
  }
  ctx->device = device;
  ctx->rt = rt;
  return TJ_OK;
}

void rt_ctx_fini(tj_ctx *ctx) {
  RtDevice *rt = ctx->rt;
  if (!rt) return;
  bool ready = atomic_load(&rt->ready);
  CUcontext saved = NULL;
  bool pushed = false;
  bool entered = ready && rt_ctx_enter(ctx, &saved, &pushed) == TJ_OK;
  cache_map_clear(ctx, entered);
  if (entered) rt_ctx_leave(ctx, pushed);
  if (ready) {
    // If our primary context is current on this thread and we leave it
    // there, a later release could destroy it under the caller; the runtime
    // API handles that case itself, so just release our reference.
    drv.cuDevicePrimaryCtxRelease_v2(rt->dev);
  }
  tj_free(rt->cache_dir);
  pthread_mutex_destroy(&rt->mu);
  tj_free(rt);
  ctx->rt = NULL;
}

static void arch_for_cc(int major, int minor, char out[16]) {
  int cc = major * 10 + minor;
  if (cc < 80) out[0] = '\0';
  // sm_90a (wgmma) runs on 9.0 only; LLVM 19 stops at sm_90, which newer GPUs JIT.
  else if (cc == 90) snprintf(out, 16, "sm_90a");
  else if (cc > 90) snprintf(out, 16, "sm_90");
  else snprintf(out, 16, "sm_%d", cc);
}

// Requires rt->mu held.
static tj_status query_locked(tj_ctx *ctx) {
  RtDevice *rt = ctx->rt;
  if (rt->queried) return TJ_OK;
  const RtDriver *d = rt_driver();
  if (d->status != TJ_OK) return api_error(ctx, d->status, "%s", d->msg);
  int n = 0;
  CUresult r = d->cuDeviceGetCount(&n);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuDeviceGetCount", r);
  if (n == 0) return api_error(ctx, TJ_ERR_NO_DEVICE, "no CUDA device found");
  if (ctx->device < 0 || ctx->device >= n)
    return api_error(ctx, TJ_ERR_NO_DEVICE, "CUDA device %d does not exist (this machine has %d)",
                     ctx->device, n);
  if ((r = d->cuDeviceGet(&rt->dev, ctx->device)) != CUDA_SUCCESS)
    return rt_cu_fail(ctx, "cuDeviceGet", r);
  d->cuDeviceGetAttribute(&rt->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, rt->dev);
  d->cuDeviceGetAttribute(&rt->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, rt->dev);
  arch_for_cc(rt->cc_major, rt->cc_minor, rt->arch);
  rt->queried = 1;
  return TJ_OK;
}

tj_status rt_device_query(tj_ctx *ctx) {
  RtDevice *rt = ctx->rt;
  pthread_mutex_lock(&rt->mu);
  tj_status st = query_locked(ctx);
  pthread_mutex_unlock(&rt->mu);
  return st;
}

tj_status rt_device_ready(tj_ctx *ctx) {
  RtDevice *rt = ctx->rt;
  if (atomic_load_explicit(&rt->ready, memory_order_acquire)) return TJ_OK;
  pthread_mutex_lock(&rt->mu);
  tj_status st = TJ_OK;
  if (!atomic_load_explicit(&rt->ready, memory_order_relaxed)) {
    st = query_locked(ctx);
    if (st == TJ_OK) {
      CUresult r = drv.cuDevicePrimaryCtxRetain(&rt->pctx, rt->dev);
      if (r != CUDA_SUCCESS) st = rt_cu_fail(ctx, "cuDevicePrimaryCtxRetain", r);
      else atomic_store_explicit(&rt->ready, 1, memory_order_release);
    }
  }
  pthread_mutex_unlock(&rt->mu);
  return st;
}

tj_status rt_ctx_enter(tj_ctx *ctx, CUcontext *saved, bool *pushed) {
  RtDevice *rt = ctx->rt;
  *pushed = false;
  CUcontext cur = NULL;
  CUresult r = drv.cuCtxGetCurrent(&cur);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuCtxGetCurrent", r);
  *saved = cur;
  if (cur == rt->pctx) return TJ_OK;
  if (!cur) {
    r = drv.cuCtxSetCurrent(rt->pctx);
    if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuCtxSetCurrent", r);
    return TJ_OK;
  }
  r = drv.cuCtxPushCurrent_v2(rt->pctx);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuCtxPushCurrent", r);
  *pushed = true;
  return TJ_OK;
}

void rt_ctx_leave(tj_ctx *ctx, bool pushed) {
  (void)ctx;
  if (pushed) {
    CUcontext popped;
    drv.cuCtxPopCurrent_v2(&popped);
  }
}

tj_status rt_pointer_range(tj_ctx *ctx, const void *p, unsigned *memtype, uintptr_t *base, size_t *size) {
  *memtype = 0;
  *base = 0;
  *size = 0;
  tj_status st = rt_device_ready(ctx);
  if (st != TJ_OK) return st;
  CUcontext saved;
  bool pushed;
  if ((st = rt_ctx_enter(ctx, &saved, &pushed)) != TJ_OK) return st;
  CUdeviceptr dp = (CUdeviceptr)(uintptr_t)p;
  int attrs[3] = { CU_POINTER_ATTRIBUTE_MEMORY_TYPE, CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
                   CU_POINTER_ATTRIBUTE_RANGE_SIZE };
  unsigned mt = 0;
  CUdeviceptr start = 0;
  size_t sz = 0;
  void *data[3] = { &mt, &start, &sz };
  CUresult r = drv.cuPointerGetAttributes(3, attrs, data, dp);
  if (r != CUDA_SUCCESS) {   // a driver without the range attributes: the memory type alone
    start = 0;
    sz = 0;
    r = rt_pointer_memtype(dp, &mt);
  }
  rt_ctx_leave(ctx, pushed);
  if (r != CUDA_SUCCESS) return TJ_OK;
  *memtype = mt;
  *base = (uintptr_t)start;
  *size = sz;
  return TJ_OK;
}

tj_status rt_default_arch(tj_ctx *ctx, const char *opts_arch, char out[16]) {
  if (opts_arch) {
    size_t n = strlen(opts_arch);
    if (n < 5 || n > 10 || strncmp(opts_arch, "sm_", 3) != 0)
      return api_error(ctx, TJ_ERR_INVALID_ARG, "arch must look like \"sm_80\" .. \"sm_90a\", got \"%s\"",
                       opts_arch);
    memcpy(out, opts_arch, n + 1);
    return TJ_OK;
  }
  tj_status st = rt_device_query(ctx);
  if (st == TJ_ERR_NO_DEVICE) {
    // Compiling (PTX only) needs no GPU; sm_80 PTX runs on every supported one.
    api_clear_error(ctx);
    snprintf(out, 16, "sm_80");
    return TJ_OK;
  }
  if (st != TJ_OK) return st;
  if (!ctx->rt->arch[0])
    return api_error(ctx, TJ_ERR_UNSUPPORTED,
                     "CUDA device %d has compute capability %d.%d; tilejit needs 8.0 or newer",
                     ctx->device, ctx->rt->cc_major, ctx->rt->cc_minor);
  memcpy(out, ctx->rt->arch, 16);
  return TJ_OK;
}

// ---------------------------------------------------------------- public: devices

int tj_ctx_device(const tj_ctx *ctx) { return ctx ? ctx->device : -1; }

tj_status tj_ctx_set_validate(tj_ctx *ctx, int on) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  atomic_store(&ctx->rt->validate, on != 0);
  return TJ_OK;
}

const char *tj_llvm_version(void) {
#ifdef TJ_LLVM_VERSION
  return TJ_LLVM_VERSION;
#else
  return "unknown";
#endif
}

tj_status tj_driver_version(tj_ctx *ctx, int *out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_driver_version: out is NULL");
  *out = 0;
  const RtDriver *d = rt_driver();
  if (d->status != TJ_OK) return api_error(ctx, d->status, "%s", d->msg);
  *out = d->version;
  return TJ_OK;
}

tj_status tj_device_count(tj_ctx *ctx, int *out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_device_count: out is NULL");
  *out = 0;
  const RtDriver *d = rt_driver();
  if (d->status != TJ_OK) return api_error(ctx, d->status, "%s", d->msg);
  int n = 0;
  CUresult r = d->cuDeviceGetCount(&n);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuDeviceGetCount", r);
  *out = n;
  if (n == 0) return api_error(ctx, TJ_ERR_NO_DEVICE, "no CUDA device found");
  return TJ_OK;
}

tj_status tj_device_query(tj_ctx *ctx, int device, tj_device_info *out) {
  if (!ctx) return TJ_ERR_INVALID_ARG;
  if (!out) return api_error(ctx, TJ_ERR_INVALID_ARG, "tj_device_query: out is NULL");
  memset(out, 0, sizeof *out);
  int n = 0;
  tj_status st = tj_device_count(ctx, &n);
  if (st != TJ_OK) return st;
  if (device < 0 || device >= n)
    return api_error(ctx, TJ_ERR_NO_DEVICE, "CUDA device %d does not exist (this machine has %d)",
                     device, n);
  CUdevice dev;
  CUresult r = drv.cuDeviceGet(&dev, device);
  if (r != CUDA_SUCCESS) return rt_cu_fail(ctx, "cuDeviceGet", r);
  if ((r = drv.cuDeviceGetName(out->name, (int)sizeof out->name, dev)) != CUDA_SUCCESS)
    return rt_cu_fail(ctx, "cuDeviceGetName", r);
  drv.cuDeviceGetAttribute(&out->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  drv.cuDeviceGetAttribute(&out->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  drv.cuDeviceGetAttribute(&out->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  drv.cuDeviceGetAttribute(&out->max_shared_per_block,
                           CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
  drv.cuDeviceTotalMem_v2(&out->total_mem, dev);
  arch_for_cc(out->cc_major, out->cc_minor, out->arch);
  return TJ_OK;
}
