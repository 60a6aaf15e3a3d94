#!/usr/bin/env bash
# Regenerates the seed corpus in tests/fuzz/corpus/ (docs/fuzzing.md).
#
#   fuzz_frontend, fuzz_codegen: every examples/*.tj, blocks/*.tj,
#     tests/dsl/**/*.tj and the kernels embedded in tests/cpu/*.c
#     (extract_kernels.py), each behind the 5-byte header of fuzz_common.h
#     (one seed per kernel for files with several):
#     frontend seeds ask for the verifier and the interpreter, codegen seeds
#     alternate the arch and the "all" specialisation.
#   fuzz_cache, fuzz_tunestore: files written by the real writers
#     (make_seeds.c), plus truncated and corrupted copies.
#
# usage: tests/fuzz/make_corpus.sh [build-fuzz]   (needs python3 and a fuzz build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
out=tests/fuzz/corpus
cmake --build "$build" --target fuzz_make_seeds >/dev/null
rm -rf "$out"
mkdir -p "$out"/fuzz_frontend "$out"/fuzz_codegen "$out"/fuzz_cache "$out"/fuzz_tunestore
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/tj" "$tmp/work"
for f in examples/*.tj blocks/*.tj $(find tests/dsl -name '*.tj' | sort); do
  cp "$f" "$tmp/tj/$(echo "${f%.tj}" | tr / -).tj"
done
python3 tests/fuzz/extract_kernels.py "$tmp/tj" tests/cpu/*.c
# Header bytes as octal escapes for printf: $1 options, $2 kernel index.
header() { printf "\\$(printf %03o "$1")\\0\\0\\0\\$(printf %03o "$2")"; }
i=0
for f in "$tmp"/tj/*.tj; do
  name=$(basename "$f" .tj)
  nk=$(grep -c '^kernel ' "$f" || true)
  for ((k = 0; k < (nk > 1 ? nk : 1); k++)); do
    seed=$name
    if [ "$nk" -gt 1 ]; then seed=$name-k$k; fi
    # Comment lines go (but "// usage:", whose -D words fuzz_common.h reads):
    # short seeds keep the fuzzers fast (-max_len=4096).
    # frontend: verifier + interpreter, the grid cycling through its shapes
    { header $((0x0c | (i % 4) << 4)) $k; sed -E '/^[[:space:]]*\/\/( usage:)?/{/usage:/!d}' "$f"; } \
      > "$out/fuzz_frontend/$seed"
    # codegen: sm_80 / sm_90a, with and without "all"
    { header $(((i % 4) << 6)) $k; sed -E '/^[[:space:]]*\/\/( usage:)?/{/usage:/!d}' "$f"; } \
      > "$out/fuzz_codegen/$seed"
    i=$((i + 1))
  done
done
"$build"/fuzz_make_seeds "$tmp/work" "$out/fuzz_cache" "$out/fuzz_tunestore"
du -sh "$out"
