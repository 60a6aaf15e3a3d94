#!/usr/bin/env bash
# Builds build-gpu/: libtilejit.so with LLVM linked statically, the CLI, the
# tests and the benchmarks, stripped, so the folder runs on the GPU machine
# (Ubuntu 24.04, no LLVM, no Check; see shared/GPU.md). Then checks that no
# binary needs a shared library the GPU machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEJIT_LLVM_STATIC=ON >/dev/null
cmake --build build-gpu -j"$(nproc)"
allowed='linux-vdso|libc\.so|libm\.so|libstdc\+\+|libgcc_s|libz\.so|libzstd\.so|ld-linux|libpthread|libdl\.so|librt\.so|libtilejit\.so'
bad=0
for f in build-gpu/libtilejit.so* build-gpu/tilejit build-gpu/test_* build-gpu/bench_* build-gpu/softmax_demo build-gpu/tests/test_*; do
  [ -f "$f" ] && [ -x "$f" ] || [[ "$f" == *.so* ]] || continue
  [ -L "$f" ] && continue
  strip --strip-unneeded "$f" 2>/dev/null || true
  if ldd "$f" 2>/dev/null | grep -vE "$allowed" | grep -q '=>\|not found'; then
    echo "gpu_build: $f needs a library the GPU machine lacks:" >&2
    ldd "$f" | grep -vE "$allowed" >&2
    bad=1
  fi
done
du -sh build-gpu | cat
exit $bad
