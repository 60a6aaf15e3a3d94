/* fuzz_codegen.c: as fuzz_frontend, but what passes the front end goes on
 * through layouts, the LLVM lowering, LLVM's passes and the NVPTX backend to
 * PTX (no GPU involved: PTX is text). Input format: fuzz_common.h (the
 * options byte also picks the arch and the "all" specialisation).
 *
 * LLVM takes milliseconds per kernel where the front end takes
 * microseconds, which is why this is a target of its own: most mutated
 * inputs fail in the front end and stay cheap, the rest cost LLVM time.
 */
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  fuzz_env();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *src;
  size_t len;
  tj_ctx *ctx;
  if (!fuzz_open(data, size, &src, &len, &ctx)) return 0;
  tj_kernel *k = fuzz_compile(ctx, data, len ? src : "", len, true);
  if (k && !tj_kernel_ptx(k)) abort();
  tj_kernel_free(k);
  tj_ctx_free(ctx);
  free(src);
  return 0;
}
