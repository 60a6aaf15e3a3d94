/* hash.h: BLAKE3 for the runtime's cache keys and entry checksums.
 *
 * The hash itself is LLVM's (llvm-c/blake3.h, exported by libLLVM). The
 * LLVM-C headers may only be included under codegen/, so this wrapper keeps
 * the hasher state opaque to its callers: CgHash is a fixed-size buffer
 * large enough for llvm_blake3_hasher (checked by a static_assert in hash.c).
 */
#ifndef TJ_CODEGEN_HASH_H
#define TJ_CODEGEN_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct CgHash {
  _Alignas(16) unsigned char state[2048];
} CgHash;

void cg_hash_init(CgHash *h);
void cg_hash_update(CgHash *h, const void *data, size_t len);
// Hashes a length prefix and then the bytes, so that consecutive fields
// cannot run into one another ("ab"+"c" differs from "a"+"bc"). NULL hashes
// like an absent field, distinct from "".
void cg_hash_field(CgHash *h, const void *data, size_t len);
void cg_hash_str(CgHash *h, const char *s);
void cg_hash_final(CgHash *h, uint8_t out[32]);

// One-shot: the fields parts[0..n) each hashed with cg_hash_field.
void cg_blake3(const void *const parts[], const size_t lens[], int n, uint8_t out[32]);

#endif
