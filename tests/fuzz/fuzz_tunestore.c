/* fuzz_tunestore.c: the autotuner's result-file reader (autotune/store.c)
 * on arbitrary bytes.
 *
 * tune_file_decode is what tune_store_read and tj_tune_list run on a file's
 * contents. As in fuzz_cache, a random file never carries the right BLAKE3
 * line, so each input is decoded again with its last 72 bytes replaced by a
 * correct "blake3 <hex>\n" line, without a key and with the key it names.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autotune/tune.h"
#include "codegen/hash.h"
#include "runtime/rt.h"

enum { SUMLINE = 7 + 64 + 1 };  // "blake3 " hex "\n"

static void decode(const char *buf, size_t len, const char *key) {
  StrBuf why;
  sb_init(&why);
  TuneFile f;
  tj_status s = tune_file_decode(buf, len, key, &f, &why);
  if (s == TJ_OK) {
    if (f.best < -1 || f.best >= f.nconfigs || f.naxes < 0 || f.naxes > TJ_TUNE_MAX_AXES ||
        (f.nconfigs > 0 && !f.configs) || f.key[64] != '\0')
      abort();
    for (int i = 0; i < f.nconfigs; i++)
      if (f.configs[i].error[sizeof f.configs[i].error - 1] != '\0') abort();
    tune_file_free(&f);
  } else if (s != TJ_ERR_CORRUPT && s != TJ_ERR_NO_MEMORY) {
    abort();
  } else if (f.configs) {
    abort();  // a failed decode must leave nothing to free
  }
  sb_free(&why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  decode((const char *)data, size, NULL);
  if (size < SUMLINE) return 0;
  char *fixed = malloc(size);
  if (!fixed) return 0;
  memcpy(fixed, data, size);
  uint8_t sum[32];
  CgHash h;
  cg_hash_init(&h);
  cg_hash_update(&h, fixed, size - SUMLINE);
  cg_hash_final(&h, sum);
  char hex[65];
  cache_key_hex(sum, hex);
  memcpy(fixed + size - SUMLINE, "blake3 ", 7);
  memcpy(fixed + size - SUMLINE + 7, hex, 64);
  fixed[size - 1] = '\n';
  decode(fixed, size, NULL);
  // The key it names, when it names one where a good file does.
  if (size > 19 + SUMLINE && !memcmp(fixed, "tilejit-tune 1\nkey ", 19)) {
    char key[65];
    memcpy(key, fixed + 19, 64 < size - 19 ? 64 : size - 19);
    key[64] = '\0';
    decode(fixed, size, key);
  }
  free(fixed);
  return 0;
}
