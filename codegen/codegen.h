/* codegen.h: internal exports of the backends.
 *
 * Two backends consume the tile IR (dsl/tir.h): the interpreter, which defines
 * the reference semantics, and the LLVM lowering to PTX. LLVM-C headers are
 * included only by the .c files in codegen/, never by this header.
 */
#ifndef TJ_CODEGEN_H
#define TJ_CODEGEN_H

#include "../dsl/tir.h"

//
// interp.c
//
// Runs f over grid[0] x grid[1] x grid[2] programs on host memory. args
// follow f->params one to one (the caller has checked count and kinds).
// Runtime faults (out-of-bounds access with a known buffer size) are
// reported to d with the source location, program id and element index.
tj_status interp_run(const TirFunc *f, const unsigned grid[3], const tj_arg *args,
                     int nargs, Diag *d);

//
// llvm.c: tile IR -> LLVM IR -> PTX
//
typedef struct CgOptions {
  const char *arch;   // "sm_80" ... "sm_90a"
  int num_warps;      // threads per program = 32 * num_warps
  bool line_info;     // emit debug line info so the PTX carries .loc lines
  bool keep_llvm;     // return the optimised LLVM IR text too
  bool no_fp_fusion;  // no fma contraction of f32/f64 a*b + c (TJ_COMPILE_NO_FP_FUSION)
} CgOptions;

typedef struct CgResult {
  char *llvm_ir;      // malloc'd, NULL unless keep_llvm
  char *ptx;          // malloc'd PTX text
  const char *entry;  // PTX entry name (== kernel name), points into the func
  int shared_bytes;   // static + dynamic shared memory the kernel needs
  int block_threads;  // 32 * num_warps
} CgResult;

tj_status cg_llvm_compile(const TirFunc *f, const CgOptions *opt, CgResult *out, Diag *d);
void cg_result_free(CgResult *r);
const char *cg_llvm_version(void);   // "19.1.7"
// PTX with the .tj source line each `.loc` refers to inserted as a
// `// file:line: text` comment before the first instruction after it
// (PTX from line_info compilations). source is the text of the .tj file the
// .loc lines point into. Returns malloc'd text, NULL on out-of-memory.
char *cg_ptx_annotate(const char *ptx, const char *source);

#endif
