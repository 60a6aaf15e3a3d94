/* api.h: the structs behind the public handles, shared by the runtime/ sources.
 *
 * A tj_ctx owns everything that outlives one compilation; a tj_kernel owns
 * its arena (tile IR, signature) and the text products (tir, llvm, ptx).
 */
#ifndef TJ_API_INTERNAL_H
#define TJ_API_INTERNAL_H

#include <pthread.h>

#include "../codegen/codegen.h"

struct tj_ctx {
  pthread_mutex_t lock;   // guards err (the runtime state has its own lock, RtDevice.mu)
  char *err;              // last error message (tj_malloc'd), "" when none
  bool err_oom;           // the last message could not be allocated: "out of memory"
  int device;             // CUDA device ordinal this context is bound to
  struct RtDevice *rt;    // driver and cache state (runtime/rt.h); allocated with the
                          // context, no driver call until first GPU use
};

struct tj_kernel {
  Arena arena;            // holds the tile IR and everything it points to
  TirFunc *func;
  char *name;
  char *tir;              // malloc'd tile IR text
  char *llvm;             // malloc'd, NULL when frontend only
  char *ptx;              // malloc'd, NULL when frontend only
  char *arch;             // "sm_90" when ptx was produced
  int num_warps;
  int shared_bytes;
  struct RtKernel *rt;    // cache digest and launch variants (runtime/rt.h); set by
                          // tj_kernel_compile, never NULL on a returned kernel
  char *ptx_annotated;    // malloc'd on first tj_kernel_ptx_annotated (annotate.c)
};

// Sets ctx->err from a printf format and returns s (for `return set_error(...)`).
tj_status api_error(tj_ctx *ctx, tj_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void api_clear_error(tj_ctx *ctx);
// TILEJIT_DUMP=tir,llvm,ptx (or all): whether stage is requested, and the
// dump itself (to stderr, framed with the kernel name).
bool api_dump_wanted(const char *stage);
void api_dump(const char *stage, const char *kernel, const char *text);
// Checks args against the kernel's signature (count and kinds).
tj_status api_check_args(tj_ctx *ctx, const tj_kernel *k, const tj_arg *args, int nargs);

#endif
