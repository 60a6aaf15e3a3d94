/* autotune.h: the autotuner of tilejit (public C API).
 *
 * A tuner is built from one compile request (the .tj source, the kernel and
 * the defines that are NOT tuned). Its search space is the product of the
 * kernel's `tunable NAME in {...}` declarations (`tunable num_warps` too),
 * plus axes added in C (tj_tuner_set_axis: a constant's values, or
 * "num_warps" as a launch option when the kernel does not declare it), or an
 * explicit list of configurations (tj_tuner_set_configs). A prune callback
 * drops configurations per tuning key (for example tiles wider than the row).
 *
 * tj_tuner_launch tunes each tuning key once and then launches the best
 * configuration. The tuning key is the kernel's cache identity (tilejit
 * build, LLVM, source, kernel, resolved constants), the device name and
 * compute capability, the parameter dtypes, the search space, and the sizes
 * named as the tuning key, bucketed (by default to the next power of two).
 * Results are kept in memory and on disk under <cache dir>/tune/ (one file
 * per key, written atomically with a checksum; a damaged file is removed and
 * the key re-tuned), so a new process uses the stored best without
 * benchmarking. Unlike Triton, a result survives the process.
 *
 * Benchmarking (on the caller's stream): CUDA events, warm-up launches, an
 * L2 flush (a memset of max(2 x L2, 256 MiB)) before every timed run, and the
 * median of the timed runs. A configuration that fails to compile or to
 * launch (too many registers, too much shared memory) is marked unusable and
 * reported in the results; tuning carries on with the others. Pointer
 * arguments that the kernel writes are replaced by scratch copies while
 * benchmarking (restored before each timed run), so tuning never changes the
 * caller's data: say which with tj_tuner_set_written, else every pointer
 * argument is treated as written and needs its size (tj_arg_ptr(p, nbytes)).
 *
 * Environment: TILEJIT_AUTOTUNE=0 disables tuning: the first configuration
 * that survives pruning is launched, nothing is benchmarked, read or stored.
 * The disk store follows the compile cache (TILEJIT_CACHE_DIR, TILEJIT_CACHE=0
 * keeps results in memory only).
 *
 * A tuner may be used from several threads; tuning runs under its lock.
 */
#ifndef TILEJIT_AUTOTUNE_H
#define TILEJIT_AUTOTUNE_H

#include "tilejit.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tj_tuner tj_tuner;

#define TJ_TUNE_MAX_AXES 8
#define TJ_TUNE_MAX_KEYS 8
#define TJ_TUNE_MAX_CONFIGS 4096

// One point of the space: the value of each axis, in tj_tuner_axis order.
typedef struct tj_tune_config {
  int64_t v[TJ_TUNE_MAX_AXES];
} tj_tune_config;

// The outcome of benchmarking one configuration.
typedef struct tj_tune_result {
  int index;             // configuration index in the tuner's space
  tj_tune_config cfg;
  tj_status status;      // TJ_OK, or why it is unusable (TJ_ERR_COMPILE, TJ_ERR_CUDA, ...)
  double ms;             // median time in milliseconds; < 0 when unusable or not timed
  char error[256];       // first line of the failure message
} tj_tune_result;

typedef struct tj_tune_stats {
  uint64_t launches;         // tj_tuner_launch calls
  uint64_t mem_hits;         // keys answered from the in-memory table
  uint64_t disk_hits;        // keys answered from a stored result (no benchmarking)
  uint64_t tunings;          // keys benchmarked
  uint64_t configs_timed;    // configurations benchmarked successfully
  uint64_t configs_failed;   // configurations that failed to compile or launch
  uint64_t timing_launches;  // kernel launches made for benchmarking (warm-up and timed)
  uint64_t disk_writes;      // results stored
  uint64_t corrupt;          // stored results that failed their checks (removed)
} tj_tune_stats;

// Builds a tuner. base is the compile request without the tuned values (its
// defines must not set an axis unless it is meant to pin it to one value).
// key_names are the sizes that form the tuning key (at most
// TJ_TUNE_MAX_KEYS): names of integer scalar parameters, whose values are
// then read from the launch arguments, or any names when the caller passes
// the sizes explicitly at launch. Runs the front end only (no GPU needed).
TJ_API tj_status tj_tuner_create(tj_ctx *ctx, const tj_compile_opts *base, const char *const *key_names,
                                 int nkey, tj_tuner **out);
TJ_API void tj_tuner_free(tj_tuner *t);

// Adds an axis, or replaces the values of one (a declared tunable: a subset
// of its set). name is a constant of the kernel or "num_warps". Only before
// the first tune or launch.
TJ_API tj_status tj_tuner_set_axis(tj_tuner *t, const char *name, const int64_t *values, int n);
// Replaces the product space with an explicit list (values per axis).
TJ_API tj_status tj_tuner_set_configs(tj_tuner *t, const tj_tune_config *cfgs, int n);

// Returns nonzero to keep cfg for a key with these (bucketed) sizes.
typedef int (*tj_tune_prune_fn)(const tj_tuner *t, const tj_tune_config *cfg, const int64_t *key_sizes,
                                int nkey, void *user);
TJ_API tj_status tj_tuner_set_prune(tj_tuner *t, tj_tune_prune_fn fn, void *user);

// Grids usually depend on the configuration (cdiv(n, BLOCK)). When set, it is
// called for every launch; the grid passed to tj_tuner_launch may be NULL.
typedef tj_status (*tj_tune_grid_fn)(const tj_tuner *t, const tj_tune_config *cfg, const tj_arg *args,
                                     int nargs, unsigned grid[3], void *user);
TJ_API tj_status tj_tuner_set_grid(tj_tuner *t, tj_tune_grid_fn fn, void *user);

// Bit i set: parameter i (a pointer) is written by the kernel. Parameters
// beyond 63 count as written. Default: every pointer parameter is written.
TJ_API tj_status tj_tuner_set_written(tj_tuner *t, uint64_t mask);

// Maps a key size to its bucket. Default: the next power of two (values
// <= 1 stay as they are).
typedef int64_t (*tj_tune_bucket_fn)(const char *name, int64_t value, void *user);
TJ_API tj_status tj_tuner_set_bucket(tj_tuner *t, tj_tune_bucket_fn fn, void *user);
TJ_API int64_t tj_tune_bucket_pow2(int64_t value);

// Warm-up launches and timed runs per configuration (defaults 3 and 25).
TJ_API tj_status tj_tuner_set_bench(tj_tuner *t, int warmup, int reps);

// Called after each configuration of a tuning run (i of n, 0-based).
typedef void (*tj_tune_progress_fn)(const tj_tuner *t, int i, int n, const tj_tune_result *r,
                                    double best_ms, void *user);
TJ_API tj_status tj_tuner_set_progress(tj_tuner *t, tj_tune_progress_fn fn, void *user);

// The space. Axis i's values are owned by t.
TJ_API int tj_tuner_num_axes(const tj_tuner *t);
TJ_API tj_status tj_tuner_axis(const tj_tuner *t, int i, const char **name, const int64_t **values,
                               int *nvalues);
TJ_API int tj_tuner_num_configs(const tj_tuner *t);   // before pruning
TJ_API tj_status tj_tuner_config(const tj_tuner *t, int i, tj_tune_config *out);
// The value of axis `name` in cfg; TJ_ERR_NOT_FOUND when t has no such axis.
TJ_API tj_status tj_tuner_config_value(const tj_tuner *t, const tj_tune_config *cfg, const char *name,
                                       int64_t *out);
// "BLOCK=1024 num_warps=4" into buf (always NUL-terminated).
TJ_API void tj_tuner_config_str(const tj_tuner *t, const tj_tune_config *cfg, char *buf, size_t n);
TJ_API const char *tj_tuner_kernel_name(const tj_tuner *t);

// Tunes (if needed) the key of these arguments and launches the best
// configuration on stream. key_sizes: NULL to read the key from the
// arguments by name, else one value per key name (nkey of them). grid: used
// when no grid callback is set.
TJ_API tj_status tj_tuner_launch(tj_tuner *t, const int64_t *key_sizes, int nkey, const unsigned grid[3],
                                 const tj_arg *args, int nargs, void *stream);

enum {
  TJ_TUNE_FORCE = 1u << 0,   // benchmark even when a result is known (and store the new one)
};
// Tunes without launching the chosen configuration: looks in memory, then on
// disk, else benchmarks. *best (optional) receives the chosen configuration.
TJ_API tj_status tj_tuner_tune(tj_tuner *t, const int64_t *key_sizes, int nkey, const unsigned grid[3],
                               const tj_arg *args, int nargs, void *stream, unsigned flags,
                               tj_tune_config *best);
// The known best for a key (memory, then disk), without benchmarking:
// TJ_ERR_NOT_FOUND when the key was never tuned. *index (optional) is the
// configuration's index in the space.
TJ_API tj_status tj_tuner_best(tj_tuner *t, const int64_t *key_sizes, int nkey, tj_tune_config *out,
                               int *index);
// The results behind the last answer of tj_tuner_tune/launch/best (from
// benchmarking or from the stored file), owned by t until the next call.
TJ_API tj_status tj_tuner_results(tj_tuner *t, const tj_tune_result **out, int *n, int *best);
// Benchmarks one configuration (index into the space) the way tuning does
// and returns its median time; counts as timing launches.
TJ_API tj_status tj_tuner_measure(tj_tuner *t, int index, const unsigned grid[3], const tj_arg *args,
                                  int nargs, void *stream, int reps, double *ms);
// The compiled kernel of configuration `index` (owned by t).
TJ_API tj_status tj_tuner_kernel(tj_tuner *t, int index, tj_kernel **out);
TJ_API tj_status tj_tuner_stats(const tj_tuner *t, tj_tune_stats *out);
// Path of the file for a key ("" when results are not stored on disk);
// computing it needs the device identity (a GPU).
TJ_API tj_status tj_tuner_key_path(tj_tuner *t, const int64_t *key_sizes, int nkey, char *buf, size_t n);

// ---------------------------------------------------------------- stored results

typedef struct tj_tune_entry {
  char key[65];            // hex; the file is <cache dir>/tune/<key>.tjt
  int corrupt;             // 1: the file failed its checks (the fields below may be empty)
  char kernel[64];
  char file[256];          // the .tj path given when it was tuned
  char device[128];
  int cc_major, cc_minor;
  char sizes[128];         // "n=4096 rows=4096" (bucketed)
  char best[128];          // "BLOCK=4096 num_warps=8"
  double best_ms;
  int nconfigs, nfailed;
  uint64_t bytes;
  double age_s;            // seconds since it was written
} tj_tune_entry;

// The stored results, sorted by kernel name; free with tj_tune_list_free.
// Corrupt files are listed (corrupt = 1), not removed.
TJ_API tj_status tj_tune_list(tj_ctx *ctx, tj_tune_entry **out, int *count);
TJ_API void tj_tune_list_free(tj_tune_entry *entries);
// Removes every stored result (and stray temp files); *removed may be NULL.
TJ_API tj_status tj_tune_clear(tj_ctx *ctx, int *removed);
// The directory holding them (<cache dir>/tune); free it with tj_free.
TJ_API tj_status tj_tune_dir(tj_ctx *ctx, char **out);

#ifdef __cplusplus
}
#endif
#endif
