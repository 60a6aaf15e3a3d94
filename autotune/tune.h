/* tune.h: internals of the autotuner (prefix tune_), shared by the autotune/ sources
 * and the CPU tests.
 *
 * Files: space.c (the tuner object, axes, the configuration list, compiling
 * a configuration), key.c (device identity, buckets, the tuning key),
 * store.c (the on-disk result files), tuner.c (choosing: memory, disk,
 * benchmark; launching; the GPU benchmark).
 *
 * Configurations are numbered in the order of the product of the axes, the
 * first axis varying slowest; configuration 0 takes every axis's first value,
 * which is what the kernel compiles to without -D, so "the first
 * configuration" (TILEJIT_AUTOTUNE=0) is the kernel's own default.
 */
#ifndef TJ_TUNE_H
#define TJ_TUNE_H

#include <pthread.h>
#include <stdbool.h>

#include "../runtime/api.h"
#include "tilejit/autotune.h"

typedef struct TuneAxis {
  char *name;
  int64_t *values;
  int n;
  bool declared;       // a `tunable` of the kernel (passed as -D NAME=V)
  bool launch_warps;   // "num_warps" the kernel does not declare: tj_compile_opts.num_warps
} TuneAxis;

// One tuned key in memory. The rest of the key (identity, device, space) is
// fixed per tuner, so the buckets alone tell entries apart.
typedef struct TuneEntry {
  int64_t buckets[TJ_TUNE_MAX_KEYS];
  int best;                  // configuration index
  tj_tune_result *results;   // NULL when chosen without benchmarking
  int nresults;
  struct TuneEntry *next;
} TuneEntry;

// Replaces the GPU benchmark of one configuration (tests without a GPU).
typedef tj_status (*TuneBenchFn)(tj_tuner *t, int index, double *ms, StrBuf *err, void *user);

struct tj_tuner {
  pthread_mutex_t mu;          // guards everything below after creation
  tj_ctx *ctx;
  // the compile request (copied)
  char *source;
  size_t source_len;
  char *path;                  // NULL when given as text
  char *kernel;
  char **defines;
  int ndefines;
  int num_warps;
  char *arch;
  unsigned flags;
  tj_kernel *base;             // front end only: signature, tunables, constants
  // the space
  TuneAxis axes[TJ_TUNE_MAX_AXES];
  int naxes;
  tj_tune_config *configs;
  int nconfigs;
  bool explicit_list;
  bool frozen;                 // space fixed (first tune or launch)
  tj_kernel **kernels;         // per configuration, compiled on demand
  tj_status *kstatus;          // TJ_OK, or why it failed to compile
  char **kerr;                 // first line of the compile error
  // the key
  char *key_names[TJ_TUNE_MAX_KEYS];
  int key_param[TJ_TUNE_MAX_KEYS];   // parameter index, or -1 (given explicitly)
  int nkey;
  // callbacks and options
  tj_tune_prune_fn prune;
  void *prune_user;
  tj_tune_grid_fn grid;
  void *grid_user;
  tj_tune_bucket_fn bucket;
  void *bucket_user;
  tj_tune_progress_fn progress;
  void *progress_user;
  uint64_t written;
  int warmup, reps;
  bool disabled;               // TILEJIT_AUTOTUNE=0
  // device identity, on first use (tests may set it: tune_set_device)
  bool have_dev;
  char dev_name[256];
  int cc_major, cc_minor;
  char dev_arch[16];
  bool have_ident;
  uint8_t ident[32];           // everything in the key but the sizes
  TuneBenchFn bench_hook;
  void *bench_user;
  // results
  TuneEntry *table;
  tj_tune_result *last;        // copy of the last answer's results
  int nlast, last_best;
  const TuneEntry *last_src;   // the entry `last` was copied from (skips recopying on hits)
  tj_tune_stats stats;
};

//
// space.c
//
// Fixes the space (builds the product); later set_axis calls fail.
tj_status tune_freeze(tj_tuner *t);
// The kernel of configuration i, compiling it on first use; a failure is
// remembered (status and message) and returned again without recompiling.
tj_status tune_kernel(tj_tuner *t, int i, tj_kernel **out, const char **err);
int tune_axis_index(const tj_tuner *t, const char *name);
// Index of the configuration with these values, or -1.
int tune_find_config(const tj_tuner *t, const int64_t *values, int nvalues);

//
// key.c
//
// Fills the device identity from tj_device_query (TJ_ERR_NO_DEVICE with a
// message naming the kernel when there is none).
tj_status tune_device(tj_tuner *t);
void tune_set_device(tj_tuner *t, const char *name, int cc_major, int cc_minor, const char *arch);
void tune_set_bench_hook(tj_tuner *t, TuneBenchFn fn, void *user);
// The identity digest (needs the device and a frozen space).
tj_status tune_ident(tj_tuner *t);
// Bucketed key sizes: from key_sizes when given, else from args by name.
tj_status tune_buckets(tj_tuner *t, const int64_t *key_sizes, int nkey, const tj_arg *args, int nargs,
                       int64_t out[TJ_TUNE_MAX_KEYS]);
// The full key from the identity and the buckets.
void tune_key(const tj_tuner *t, const int64_t *buckets, uint8_t out[32]);
// "n=4096 rows=4096" ("-" without key sizes).
void tune_sizes_text(const tj_tuner *t, const int64_t *buckets, StrBuf *sb);

//
// store.c: one file per key, <cache dir>/tune/<hex key>.tjt (top comment there)
//
typedef struct TuneFileConfig {
  int64_t values[TJ_TUNE_MAX_AXES];
  tj_status status;
  double ms;
  char error[256];
} TuneFileConfig;

typedef struct TuneFile {
  char key[65];
  char kernel[64], file[256], device[128], arch[16], sizes[128];
  int cc_major, cc_minor;
  char axes[TJ_TUNE_MAX_AXES][64];
  int naxes;
  TuneFileConfig *configs;     // malloc'd
  int nconfigs;
  int best;                    // index into configs, -1 when none
  int64_t written;             // unix time
} TuneFile;

void tune_file_free(TuneFile *f);
// Serialises a result: the tuner provides kernel, device and axes.
tj_status tune_file_encode(const tj_tuner *t, const uint8_t key[32], const int64_t *buckets,
                           const tj_tune_result *res, int nres, int best, char **out, size_t *len);
// Parses and checks a file (magic, fields, checksum, key when want_key).
tj_status tune_file_decode(const char *buf, size_t len, const char *want_key, TuneFile *out, StrBuf *why);
// <dir>/tune, malloc'd; NULL when the context has no cache directory.
char *tune_store_dir(tj_ctx *ctx);
// Whether results go to disk (compile cache on and a directory known).
bool tune_store_enabled(tj_ctx *ctx);
// TJ_OK, TJ_ERR_NOT_FOUND, TJ_ERR_CORRUPT (removed; *why says why), TJ_ERR_IO.
tj_status tune_store_read(tj_ctx *ctx, const uint8_t key[32], TuneFile *out, StrBuf *why);
tj_status tune_store_write(tj_ctx *ctx, const uint8_t key[32], const char *buf, size_t len, StrBuf *why);
tj_status tune_store_path(tj_ctx *ctx, const uint8_t key[32], StrBuf *out);

//
// tuner.c
//
// Chooses the configuration for a key (memory, disk, benchmark). args may
// be NULL with a bench hook.
typedef struct TuneRun {
  const unsigned *grid;
  const tj_arg *args;
  int nargs;
  void *stream;
} TuneRun;
// Internal flag: answer from memory or disk only (TJ_ERR_NOT_FOUND otherwise).
#define TUNE_NO_BENCH (1u << 16)
// Requires t->mu (recursive: callbacks may call back into the tuner).
tj_status tune_select(tj_tuner *t, const int64_t *buckets, const TuneRun *run, unsigned flags, int *best);

#endif
