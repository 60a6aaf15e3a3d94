/* rt.h: internal exports of runtime/ (driver state, launcher, cache).
 *
 * Ownership: a tj_ctx owns one RtDevice (allocated with the context, no
 * driver call), which owns the in-memory cache: RtEntry objects keyed by the
 * 32-byte cache key, each holding PTX and once loaded the
 * CUmodule/CUfunction. Modules live as long as the context. A tj_kernel
 * owns an RtKernel: its source digest (the key without specialisation and
 * arch) and a small table of variants, each pointing at an RtEntry of the
 * context it was launched on.
 */
#ifndef TJ_RT_H
#define TJ_RT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "cuda.h"

typedef struct RtDevice RtDevice;
typedef struct RtKernel RtKernel;

//
// cuda.c: per-context device state
//
typedef struct RtEntry {
  pthread_mutex_t mu;      // guards loading: mod, fn, dyn_smem, spills
  uint8_t key[32];
  char *name;              // kernel (entry) name
  char *arch;              // "sm_90"
  int shared_bytes;        // static + dynamic shared memory the kernel needs
  int num_warps;
  int spill_stores;        // from the JIT's info log; -1 when unknown
  int spill_loads;
  char *ptx;               // NUL-terminated
  size_t ptx_len;          // without the NUL
  // Loaded state (context-specific, never on disk).
  CUmodule mod;
  CUfunction fn;
  int dyn_smem;            // dynamic shared bytes to pass at launch
  struct RtEntry *next;    // hash chain
} RtEntry;

#define RT_BUCKETS 64

typedef struct RtCacheCounters {
  uint64_t mem_hits, disk_hits, misses, writes, corrupt, evictions, warnings;
} RtCacheCounters;

struct RtDevice {
  pthread_mutex_t mu;       // guards everything below except the atomics
  _Atomic int ready;        // 1 once pctx is retained (then dev..pctx are read-only)
  uint64_t serial;          // unique per context in this process (variant tables key on it)
  int queried;              // dev/cc fields valid
  tj_status qstatus;        // outcome of the first device query (sticky)
  CUdevice dev;
  CUcontext pctx;           // the device's primary context, retained
  int cc_major, cc_minor;
  char arch[16];
  _Atomic bool validate;    // check pointer arguments at launch (read lock-free)
  // cache configuration, fixed at context creation (tj_ctx_set_cache_dir changes dir)
  char *cache_dir;          // malloc'd; NULL when no directory could be determined.
                            // Read without the lock: tj_ctx_set_cache_dir must not
                            // race with compiles on the same context.
  bool cache_on;            // TILEJIT_CACHE != 0
  uint64_t cache_max_bytes; // TILEJIT_CACHE_MAX_MB; 0 = unbounded
  bool verbose;             // TILEJIT_VERBOSE: warnings go to stderr
  RtCacheCounters counters;
  RtEntry *buckets[RT_BUCKETS];
};

tj_status rt_ctx_init(tj_ctx *ctx, int device);   // allocates ctx->rt; no driver call
void rt_ctx_fini(tj_ctx *ctx);                    // unloads modules, releases the primary ctx
// Loads the driver and reads the device's compute capability (no context).
tj_status rt_device_query(tj_ctx *ctx);
// rt_device_query + retains the primary context. Cheap once done.
tj_status rt_device_ready(tj_ctx *ctx);
// Makes ctx's primary context current on this thread; *saved is what to
// restore with rt_ctx_leave (pushes only when another context is current).
tj_status rt_ctx_enter(tj_ctx *ctx, CUcontext *saved, bool *pushed);
void rt_ctx_leave(tj_ctx *ctx, bool pushed);
// The arch to compile for: opts_arch if set, else from the device, else
// "sm_80" when there is no driver or device. out has room for 16 bytes.
tj_status rt_default_arch(tj_ctx *ctx, const char *opts_arch, char out[16]);
// Records a warning (counter; stderr line when TILEJIT_VERBOSE is set).
void rt_warn(tj_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// rt_pointer_memtype (cuda.h) in ctx's context, plus the allocation that
// holds p: [*base, *base + *size), size 0 when the driver does not say (one
// without the range attributes). A failed query answers "not CUDA memory"
// (*memtype 0), as the launcher's probe does; a status other than TJ_OK is
// a device or context that could not be made ready (message set).
tj_status rt_pointer_range(tj_ctx *ctx, const void *p, unsigned *memtype, uintptr_t *base, size_t *size);

//
// launch.c: variants, linking, loading
//
#define RT_MAX_VARIANTS 16

typedef struct RtVariant {
  uint64_t ctx_serial;
  uint64_t spec;           // 3 bits per parameter (TIR_SPEC_*), first 21 parameters
  RtEntry *entry;          // owned by that context's cache
} RtVariant;

struct RtKernel {
  pthread_mutex_t mu;      // guards vars/nvars and the TirFunc's spec fields while compiling
  uint8_t digest[32];      // cache key without spec and arch (cache_digest)
  bool has_digest;
  bool no_cache;           // compiled with TJ_COMPILE_NO_CACHE
  bool no_fp_fusion;       // compiled with TJ_COMPILE_NO_FP_FUSION
  RtVariant vars[RT_MAX_VARIANTS];
  int nvars;
  _Atomic(RtVariant *) last;  // fast path: the last variant used
  _Atomic uint64_t *checked;  // per parameter: last pointer that passed validation
};

// Allocates k->rt and computes the source digest (needs the source text,
// so it runs right after the front end).
tj_status rt_kernel_init(tj_ctx *ctx, tj_kernel *k, const char *src, size_t len, unsigned flags);
void rt_kernel_free(tj_kernel *k);
// The variant of k for spec on ctx's device: from ctx's map, the disk
// cache, or LLVM. Requires exclusive use of k->func (the caller holds
// k->rt->mu, or k is not yet shared). *llvm (optional) receives the LLVM IR
// text when LLVM ran and keep_llvm; the entry is owned by ctx.
tj_status rt_compile_variant(tj_ctx *ctx, tj_kernel *k, uint64_t spec, const char *arch,
                             bool keep_llvm, RtEntry **out, char **llvm);
// The spill counts of a JIT info log ("N bytes spill stores, M bytes spill
// loads"); -1 each when absent. (Kernels load through the driver's JIT,
// cuModuleLoadDataEx, whole-program: launch.c says why not the linker.)
void rt_parse_spills(const char *log, int *stores, int *loads);
#define RT_SPEC_BITS 3
#define RT_SPEC_MAX_PARAMS 21

//
// cache.c: keys, in-memory map, on-disk entries
//
typedef struct CacheKeyInputs {
  const char *tilejit_version;
  const char *build_id;        // hex ELF build-id of the library ("" when absent)
  const char *llvm_version;
  const char *source;
  size_t source_len;
  const char *kernel;
  const TirConstDef *consts;
  int nconsts;
  int num_warps;
  const char *options;         // other codegen options, canonical text
} CacheKeyInputs;

// The digest of everything but the specialisation and arch.
void cache_digest(const CacheKeyInputs *in, uint8_t out[32]);
// The full key: digest + spec bits + arch.
void cache_key(const uint8_t digest[32], uint64_t spec, const char *arch, uint8_t out[32]);
void cache_key_hex(const uint8_t key[32], char out[65]);
const char *cache_build_id(void);   // computed once, read-only afterwards

RtEntry *cache_entry_new(void);
void cache_entry_free(RtEntry *e);  // does not unload e->mod

// Serialises/parses the on-disk format (cache.c top comment).
tj_status cache_encode(const RtEntry *e, uint8_t **out, size_t *len);
tj_status cache_decode(const uint8_t *buf, size_t len, const uint8_t key[32], RtEntry **out,
                       StrBuf *why);
// The listing's view of an entry from its first n bytes (name, arch,
// has_cubin; name "(damaged)" without a header); no checksum.
void cache_peek(const uint8_t *buf, size_t n, tj_cache_entry *ce);

// Disk layer. read: TJ_OK, TJ_ERR_NOT_FOUND, TJ_ERR_CORRUPT (the file was
// removed; *why says what was wrong) or TJ_ERR_IO.
tj_status cache_disk_read(const char *dir, const uint8_t key[32], RtEntry **out, StrBuf *why);
tj_status cache_disk_write(const char *dir, const RtEntry *e, StrBuf *why);
// Removes least-recently-used entries until the total is <= max_bytes,
// never the entry named keep. Returns the number removed.
int cache_disk_evict(const char *dir, uint64_t max_bytes, const uint8_t keep[32]);
tj_status cache_path(const char *dir, const uint8_t key[32], StrBuf *out);
// dir/name written atomically: a unique temp file in dir (created if
// missing), fsync, rename over name, fsync of dir (cache.c top comment).
// Shared with the autotuner's store (autotune/store.c).
tj_status cache_write_atomic(const char *dir, const char *name, const uint8_t *buf, size_t len,
                             StrBuf *why);
// The whole file behind fd (malloc'd).
tj_status cache_read_fd(int fd, uint8_t **out, size_t *len, StrBuf *why);

// Context-level: memory first, then disk. TJ_OK with *out (owned by the
// context's map), or TJ_ERR_NOT_FOUND.
tj_status cache_lookup(tj_ctx *ctx, const uint8_t key[32], bool use_disk, RtEntry **out);
// Takes ownership of e (its key must be set); writes it to disk when
// write_disk and the cache is on. Returns the map's entry (e, or an existing
// entry with the same key, in which case e is freed).
RtEntry *cache_insert(tj_ctx *ctx, RtEntry *e, bool write_disk);
// Writes e to the disk cache.
void cache_update_disk(tj_ctx *ctx, const RtEntry *e);
void cache_map_clear(tj_ctx *ctx, bool unload);

//
// timing.c: benchmarking support for autotune/ (CUDA events, L2 flush)
//
typedef struct RtTimer RtTimer;
// n pairs of events and an L2 flush buffer of max(2 x L2 size, 256 MiB) on
// ctx's device (needs rt_device_ready). TJ_ERR_UNSUPPORTED when the driver
// lacks the event API.
tj_status rt_timer_create(tj_ctx *ctx, int n, RtTimer **out);
void rt_timer_free(tj_ctx *ctx, RtTimer *t);   // NULL: no-op
size_t rt_timer_flush_bytes(const RtTimer *t);
// Enqueues a memset of the whole flush buffer on stream, which evicts
// everything a timed kernel could find in L2.
tj_status rt_timer_flush_l2(tj_ctx *ctx, RtTimer *t, void *stream);
// Records the start (end = false) or end event of pair i on stream.
tj_status rt_timer_record(tj_ctx *ctx, RtTimer *t, int i, bool end, void *stream);
// Waits for pair i and returns its time in milliseconds. A failure here is a
// fault of the timed work (sticky on the context).
tj_status rt_timer_elapsed(tj_ctx *ctx, RtTimer *t, int i, float *ms);
tj_status rt_copy_dtod_async(tj_ctx *ctx, void *dst, const void *src, size_t n, void *stream);

#endif
