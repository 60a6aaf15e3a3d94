/* hash.c: the BLAKE3 wrapper declared in hash.h (see there for why it lives
 * in codegen/). requires: libLLVM (llvm_blake3_*); produces: 32-byte digests.
 */
#include "hash.h"

#include <string.h>

#include <llvm-c/blake3.h>

_Static_assert(sizeof(llvm_blake3_hasher) <= sizeof(((CgHash *)0)->state),
               "CgHash too small for llvm_blake3_hasher");
_Static_assert(LLVM_BLAKE3_OUT_LEN == 32, "BLAKE3 digest is 32 bytes");

void cg_hash_init(CgHash *h) { llvm_blake3_hasher_init((llvm_blake3_hasher *)h->state); }

void cg_hash_update(CgHash *h, const void *data, size_t len) {
  if (len) llvm_blake3_hasher_update((llvm_blake3_hasher *)h->state, data, len);
}

void cg_hash_field(CgHash *h, const void *data, size_t len) {
  uint64_t n = data ? (uint64_t)len : UINT64_MAX;
  cg_hash_update(h, &n, sizeof n);
  if (data) cg_hash_update(h, data, len);
}

void cg_hash_str(CgHash *h, const char *s) { cg_hash_field(h, s, s ? strlen(s) : 0); }

void cg_hash_final(CgHash *h, uint8_t out[32]) {
  llvm_blake3_hasher_finalize((llvm_blake3_hasher *)h->state, out, 32);
}

void cg_blake3(const void *const parts[], const size_t lens[], int n, uint8_t out[32]) {
  CgHash h;
  cg_hash_init(&h);
  for (int i = 0; i < n; i++) cg_hash_field(&h, parts[i], lens[i]);
  cg_hash_final(&h, out);
}
