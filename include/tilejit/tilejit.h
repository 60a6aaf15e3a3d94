/* tilejit.h: the public C API of tilejit, a tile-level JIT for GPU kernels.
 *
 * Conventions: every call that can fail returns a tj_status; the message of
 * the last failure on a context is tj_ctx_last_error(ctx). Handles are
 * opaque; every *_free(NULL) is a no-op. No call aborts or exits the process
 * on bad input.
 */
#ifndef TILEJIT_H
#define TILEJIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TJ_API __attribute__((visibility("default")))
#else
#define TJ_API
#endif

#define TILEJIT_VERSION_MAJOR 0
#define TILEJIT_VERSION_MINOR 1
#define TILEJIT_VERSION_PATCH 0

typedef enum tj_status {
  TJ_OK = 0,
  TJ_ERR_INVALID_ARG,   // a null pointer, a bad option, an argument of the wrong kind
  TJ_ERR_COMPILE,       // the .tj source has errors (message: rendered diagnostics)
  TJ_ERR_NOT_FOUND,     // no such kernel, block, file or cache entry
  TJ_ERR_NO_MEMORY,
  TJ_ERR_IO,            // reading or writing a file failed
  TJ_ERR_BOUNDS,        // the interpreter caught an out-of-bounds access
  TJ_ERR_NO_DEVICE,     // no CUDA driver or no device
  TJ_ERR_CUDA,          // the driver reported an error (message has its name)
  TJ_ERR_UNSUPPORTED,   // valid input that this build or device cannot handle
  TJ_ERR_CORRUPT,       // a cache or tuning file failed its checksum
  TJ_ERR_INTERNAL,      // a bug in tilejit: please report it
  TJ_STATUS_COUNT
} tj_status;

// Element types; the numbering is stable (it appears in cache keys).
typedef enum tj_dtype {
  TJ_VOID = 0, TJ_BOOL,
  TJ_I8, TJ_I16, TJ_I32, TJ_I64,
  TJ_U8, TJ_U16, TJ_U32, TJ_U64,
  TJ_F16, TJ_BF16, TJ_F32, TJ_F64,
  TJ_DTYPE_COUNT
} tj_dtype;

typedef struct tj_ctx tj_ctx;        // compiler + runtime state; one per device
typedef struct tj_kernel tj_kernel;  // one compiled specialisation of a kernel

TJ_API const char *tj_version(void);            // "0.1.0"
TJ_API const char *tj_status_str(tj_status s);  // "TJ_ERR_COMPILE"
TJ_API const char *tj_dtype_name(tj_dtype d);   // "f16"; "?" when out of range

// ---------------------------------------------------------------- memory
//
// Every heap allocation tilejit makes itself goes through one allocator, the
// C library's unless replaced. The hook is process-global: set it once,
// before creating any context (or tuner, block handle...), and do not change
// it while memory obtained under the previous one is still alive. LLVM's own
// allocations (during PTX generation) and the CUDA driver's are not covered.
// Blocks must be aligned for any type, as malloc's are. alloc is never
// called with size 0 and realloc never with p NULL or size 0;
// a NULL return means out of memory, which calls report as TJ_ERR_NO_MEMORY
// (message "out of memory") and recover from: no leak, no crash.
typedef struct tj_allocator {
  void *(*alloc)(void *user, size_t size);
  void *(*realloc)(void *user, void *p, size_t size);
  void (*free)(void *user, void *p);   // p is never NULL
  void *user;
} tj_allocator;
// Installs a (copied; every function must be set, else TJ_ERR_INVALID_ARG;
// TJ_ERR_NO_MEMORY if the C library cannot hold the copy); NULL restores
// malloc/realloc/free. Calls racing with it are free of data races (each
// allocation sees the old hook or the new one, whole), but memory from one
// hook freed through another is the caller's error: hence the rule above.
TJ_API tj_status tj_set_allocator(const tj_allocator *a);
// Frees memory the API returns for the caller to free (tj_kernel_info_text,
// tj_tune_dir) through the current allocator. NULL: no-op.
TJ_API void tj_free(void *p);

// Creates a context. It does not touch the GPU: the driver is loaded on the
// first call that needs it, so contexts work on machines without CUDA.
TJ_API tj_status tj_ctx_create(tj_ctx **out);
TJ_API void tj_ctx_free(tj_ctx *ctx);
// The message of the last failed call on ctx ("" if none). Valid until the
// next call on ctx.
TJ_API const char *tj_ctx_last_error(const tj_ctx *ctx);

// ---------------------------------------------------------------- compile

enum {
  TJ_COMPILE_NO_CACHE = 1u << 0,  // neither read nor write the compile cache (the driver's own
                                  // JIT cache of PTX -> SASS still applies: CUDA_CACHE_DISABLE=1)
  TJ_COMPILE_FRONTEND = 1u << 1,  // stop after the tile IR (no LLVM, no PTX)
  TJ_COMPILE_DEBUG = 1u << 2,     // run the IR verifier after every pass
  // Round every f32/f64 add, sub and mul on its own. By default the GPU
  // backend may contract a*b + c into one fma (one rounding instead of two),
  // as nvcc (--fmad=true) and Triton (enable_fp_fusion) do: fewer
  // instructions, slightly different last bits from the interpreter.
  TJ_COMPILE_NO_FP_FUSION = 1u << 3,
};

typedef struct tj_compile_opts {
  const char *source;       // .tj text; or NULL and set path
  size_t source_len;        // 0: strlen(source)
  const char *path;         // file to read when source is NULL; also the name in messages
  const char *kernel;       // which kernel; NULL: the file's only kernel
  const char *const *defines;  // "NAME=VALUE" strings for constants and tunables
  int ndefines;
  int num_warps;            // 0: the kernel's `tunable num_warps` or 4
  const char *arch;         // "sm_80".."sm_90a"; NULL: the context's device, else sm_80
  unsigned flags;           // TJ_COMPILE_*
  // Specialisation of the PTX returned by tj_kernel_ptx (launches pick their
  // own from the actual arguments): NULL or "" for none; "all" for every
  // pointer 16-byte aligned and every integer a multiple of 16, the variant
  // typical tensors get; or a list such as "x=16,n=16,stride=1" (pointer
  // =16: aligned; integer =16: divisible by 16, =1: equal to 1).
  const char *assume;
} tj_compile_opts;

// Compiles one specialisation. On TJ_ERR_COMPILE the rendered diagnostics
// (file:line:col, source line and caret) are in tj_ctx_last_error(ctx).
TJ_API tj_status tj_kernel_compile(tj_ctx *ctx, const tj_compile_opts *opts, tj_kernel **out);
TJ_API void tj_kernel_free(tj_kernel *k);

TJ_API const char *tj_kernel_name(const tj_kernel *k);
TJ_API const char *tj_kernel_tir(const tj_kernel *k);   // tile IR text
TJ_API const char *tj_kernel_llvm(const tj_kernel *k);  // LLVM IR text, NULL if frontend only
TJ_API const char *tj_kernel_ptx(const tj_kernel *k);   // PTX text, NULL if frontend only
TJ_API int tj_kernel_num_warps(const tj_kernel *k);
// The PTX with each referenced .tj source line inserted as a comment before
// the instructions generated from it (from the PTX's .loc lines). Owned by k.
TJ_API const char *tj_kernel_ptx_annotated(tj_kernel *k);

typedef struct tj_param_info {
  const char *name;
  int is_ptr;          // 1: pointer to dtype; 0: scalar of dtype
  tj_dtype dtype;
} tj_param_info;

TJ_API int tj_kernel_num_params(const tj_kernel *k);
TJ_API tj_status tj_kernel_param(const tj_kernel *k, int i, tj_param_info *out);

// ---------------------------------------------------------------- arguments

typedef enum tj_arg_kind { TJ_ARG_PTR = 1, TJ_ARG_INT, TJ_ARG_FLOAT } tj_arg_kind;

typedef struct tj_arg {
  tj_arg_kind kind;
  union {
    struct {
      void *ptr;
      size_t nbytes;   // size of the buffer behind ptr; 0 = unknown (no bounds checks)
    } buf;
    int64_t i;
    double f;
  } u;
} tj_arg;

static inline tj_arg tj_arg_ptr(void *p, size_t nbytes) {
  tj_arg a; a.kind = TJ_ARG_PTR; a.u.buf.ptr = p; a.u.buf.nbytes = nbytes; return a;
}
static inline tj_arg tj_arg_int(int64_t v) { tj_arg a; a.kind = TJ_ARG_INT; a.u.i = v; return a; }
static inline tj_arg tj_arg_float(double v) { tj_arg a; a.kind = TJ_ARG_FLOAT; a.u.f = v; return a; }

// ---------------------------------------------------------------- interpreter

// Runs the kernel on the CPU over the whole grid, on host memory, with the
// reference semantics (docs/language.md). Pointer arguments with nbytes > 0
// are bounds-checked: an access outside them fails with TJ_ERR_BOUNDS and a
// message naming the source line, program id and element.
TJ_API tj_status tj_kernel_interpret(tj_ctx *ctx, const tj_kernel *k, const unsigned grid[3],
                                     const tj_arg *args, int nargs);

// ---------------------------------------------------------------- runtime (CUDA)
//
// The CUDA driver (libcuda.so.1) is loaded on first use; without it every
// call below returns TJ_ERR_NO_DEVICE with a message, nothing crashes. A
// context uses its device's primary context, so device pointers and streams
// from PyTorch, CuPy or the CUDA runtime can be passed as they are. Streams
// are CUstream values passed as void*; NULL is the legacy default stream.

// Creates a context bound to CUDA device `device` (tj_ctx_create = device 0).
// Like tj_ctx_create it makes no driver call; the device is checked on first
// use. The environment is read here: TILEJIT_CACHE_DIR (else
// $XDG_CACHE_HOME/tilejit, else ~/.cache/tilejit), TILEJIT_CACHE=0 (no
// compile cache), TILEJIT_CACHE_MAX_MB (LRU size cap), TILEJIT_VERBOSE
// (warnings to stderr), TILEJIT_VALIDATE=0 (no pointer checks at launch).
TJ_API tj_status tj_ctx_create_device(int device, tj_ctx **out);
TJ_API int tj_ctx_device(const tj_ctx *ctx);  // -1 when ctx is NULL
// Pointer validation at launch (on by default): every pointer argument must
// be device or managed memory (cuPointerGetAttributes); a host pointer gives
// TJ_ERR_INVALID_ARG. The answer is remembered per kernel argument slot while
// the same address is passed again, so steady-state launches skip the query.
// It catches host pointers, not use-after-free.
TJ_API tj_status tj_ctx_set_validate(tj_ctx *ctx, int on);

TJ_API const char *tj_llvm_version(void);                  // "19.1.7"
TJ_API tj_status tj_driver_version(tj_ctx *ctx, int *out);  // 12040 = CUDA 12.4
TJ_API tj_status tj_device_count(tj_ctx *ctx, int *out);    // NO_DEVICE when 0 or no driver

typedef struct tj_device_info {
  char name[256];
  int cc_major, cc_minor;      // compute capability
  int sm_count;
  size_t total_mem;            // bytes
  int max_shared_per_block;    // opt-in maximum, bytes
  char arch[16];               // what tilejit compiles for on it: "sm_90a" on 9.0
} tj_device_info;
TJ_API tj_status tj_device_query(tj_ctx *ctx, int device, tj_device_info *out);

// Device memory for C users without the CUDA toolkit; all synchronous except
// what runs on a stream: a copy or memset has reached the device when it
// returns, so a kernel launched next on any stream sees it. (The call waits
// for the legacy default stream, and so for earlier work on blocking
// streams; not for non-blocking streams.) Pointers are CUdeviceptr values
// as void*.
TJ_API tj_status tj_device_malloc(tj_ctx *ctx, size_t nbytes, void **out);
TJ_API tj_status tj_device_free(tj_ctx *ctx, void *p);   // NULL: no-op
TJ_API tj_status tj_memcpy_htod(tj_ctx *ctx, void *dst, const void *src, size_t nbytes);
TJ_API tj_status tj_memcpy_dtoh(tj_ctx *ctx, void *dst, const void *src, size_t nbytes);
TJ_API tj_status tj_memcpy_dtod(tj_ctx *ctx, void *dst, const void *src, size_t nbytes);
TJ_API tj_status tj_memset_d8(tj_ctx *ctx, void *dst, unsigned char value, size_t nbytes);
TJ_API tj_status tj_stream_create(tj_ctx *ctx, void **out);   // a non-blocking stream
TJ_API tj_status tj_stream_destroy(tj_ctx *ctx, void *stream);
TJ_API tj_status tj_stream_synchronize(tj_ctx *ctx, void *stream);  // NULL: whole device

// Launches k over grid[0] x grid[1] x grid[2] programs of 32 * num_warps
// threads on `stream`. Arguments are marshalled from the kernel's signature:
// pointers as device addresses, scalars converted to the parameter's dtype
// (f16/bf16 rounded to nearest even). Like Triton, pointer arguments that are
// 16-byte aligned and integers divisible by 16 (or equal to 1) select a
// specialised variant, compiled (through the cache) on first use; the text
// from tj_kernel_ptx is the unspecialised variant. A grid with a 0 dimension
// does nothing. Asynchronous: errors of the kernel itself show up at the
// next synchronisation.
TJ_API tj_status tj_kernel_launch(tj_ctx *ctx, tj_kernel *k, const unsigned grid[3],
                                  const tj_arg *args, int nargs, void *stream);

typedef struct tj_kernel_resources {
  char arch[16];               // the cubin's target
  int num_regs;                // registers per thread
  int spill_stores, spill_loads;  // bytes, from the JIT info log; -1 when unknown
  int local_bytes;             // local memory per thread (spills, stack)
  int static_shared_bytes;
  int dynamic_shared_bytes;    // requested at launch (opted in above 48 KB)
  int max_threads_per_block;   // for this kernel on this device
  int block_threads;           // what tilejit launches: 32 * num_warps
  int binary_version;          // 90 = sm_90 SASS
} tj_kernel_resources;
// Resources of k's most recently launched variant on ctx, or of the
// unspecialised variant (loading it) when k was not launched yet. Needs a GPU.
TJ_API tj_status tj_kernel_info(tj_ctx *ctx, tj_kernel *k, tj_kernel_resources *out);
// The same as readable text ("registers: 32\n..."); free it with tj_free.
TJ_API tj_status tj_kernel_info_text(tj_ctx *ctx, tj_kernel *k, char **out);

// ---------------------------------------------------------------- compile cache
//
// Entries are keyed by a BLAKE3 hash of the tilejit version and build, the
// LLVM version, the source, the resolved constants, the kernel name, the
// specialisation, the arch and num_warps. One file per entry, written
// atomically (temp file + rename) with a checksum; a damaged entry is
// removed and rebuilt. On a cache hit tj_kernel_compile skips LLVM, so
// tj_kernel_llvm returns NULL (set TILEJIT_DUMP=llvm or TJ_COMPILE_NO_CACHE
// to get it).

typedef struct tj_cache_entry {
  char key[65];                // hex
  char name[64];               // kernel name (truncated)
  char arch[16];
  uint64_t bytes;              // file size
  double age_s;                // seconds since last use (mtime)
  int has_cubin;               // written by an older tilejit with the linker's cubin (unused now:
                               // kernels are JIT-compiled from the PTX, see docs/architecture.md)
} tj_cache_entry;

typedef struct tj_cache_summary {
  int enabled;                 // 0 when TILEJIT_CACHE=0 or no directory
  int entries;                 // on disk
  uint64_t bytes;              // on disk
  uint64_t max_bytes;          // TILEJIT_CACHE_MAX_MB, 0 = no cap
  // this context's counters
  uint64_t mem_hits, disk_hits, misses, writes, corrupt, evictions, warnings;
} tj_cache_summary;

// The directory (owned by ctx). TJ_ERR_NOT_FOUND when none can be determined.
TJ_API tj_status tj_cache_dir(tj_ctx *ctx, const char **out);
// Overrides the directory for this context; call it before compiling on
// ctx, not concurrently with compiles or launches on it.
TJ_API tj_status tj_ctx_set_cache_dir(tj_ctx *ctx, const char *dir);
// Entries sorted by name; free the array with tj_cache_list_free.
TJ_API tj_status tj_cache_list(tj_ctx *ctx, tj_cache_entry **out, int *count);
TJ_API void tj_cache_list_free(tj_cache_entry *entries);
// Removes every entry (and stray temp files); *removed may be NULL.
TJ_API tj_status tj_cache_clear(tj_ctx *ctx, int *removed);
TJ_API tj_status tj_cache_stats(tj_ctx *ctx, tj_cache_summary *out);

#ifdef __cplusplus
}
#endif
#endif
