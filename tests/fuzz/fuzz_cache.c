/* fuzz_cache.c: the compile cache's entry reader (runtime/cache.c) on
 * arbitrary bytes.
 *
 * cache_decode is what cache_disk_read runs on a file's contents, and
 * cache_peek what tj_cache_list runs on a file's first bytes, so this covers
 * the on-disk reader without touching a disk. A random file almost never
 * passes the BLAKE3 checksum, which would leave everything after it
 * unexplored; so each input is also decoded a second time with its last 32
 * bytes replaced by the right checksum, with and without the key it claims.
 * An entry that decodes must encode back to the same bytes (when its name
 * and arch hold no NUL, which the C strings cannot carry, its reserved
 * field is 0, as writers leave it, and its cubin section is empty: an older
 * writer's cubin is checked and skipped, so it does not come back).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/hash.h"
#include "runtime/rt.h"

static void check_roundtrip(const uint8_t *data, size_t size, const RtEntry *e) {
  if (strlen(e->name) + strlen(e->arch) != (size_t)(data[64] | data[65] << 8) + (size_t)(data[68] | data[69] << 8))
    return;  // a NUL inside name or arch: the strings are shorter than stored
  for (int i = 80; i < 96; i++)
    if (data[i]) return;  // the cubin length (80..87) and the reserved field, written as 0
  uint8_t *again = NULL;
  size_t len = 0;
  if (cache_encode(e, &again, &len) != TJ_OK || len != size || memcmp(again, data, size) != 0) {
    fprintf(stderr, "fuzz_cache: a decoded entry does not encode back to the same %zu bytes\n", size);
    abort();
  }
  tj_free(again);
}

static void decode(const uint8_t *data, size_t size, const uint8_t *key) {
  StrBuf why;
  sb_init(&why);
  RtEntry *e = NULL;
  tj_status s = cache_decode(data, size, key, &e, &why);
  if (s == TJ_OK) {
    if (!e || !e->name || !e->arch || !e->ptx) abort();
    check_roundtrip(data, size, e);
  } else if (e || (s != TJ_ERR_CORRUPT && s != TJ_ERR_NO_MEMORY)) {
    abort();
  }
  cache_entry_free(e);
  sb_free(&why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  tj_cache_entry ce;
  memset(&ce, 0, sizeof ce);
  cache_peek(data, size, &ce);
  if (ce.name[sizeof ce.name - 1] || ce.arch[sizeof ce.arch - 1]) abort();

  decode(data, size, NULL);
  if (size < 32) return 0;
  uint8_t *fixed = malloc(size);
  if (!fixed) return 0;
  memcpy(fixed, data, size);
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, fixed, size - 32);
  cg_hash_final(&h, fixed + size - 32);
  decode(fixed, size, NULL);
  if (size >= 48) {
    uint8_t key[32];
    memcpy(key, fixed + 16, 32);
    decode(fixed, size, key);
    key[0] ^= 1;
    decode(fixed, size, key);
  }
  free(fixed);
  return 0;
}
