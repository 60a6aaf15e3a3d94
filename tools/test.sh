#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every ctest
# test (GPU tests report "skipped" on machines without a GPU), then runs the
# CPU suites again under AddressSanitizer and UndefinedBehaviorSanitizer,
# where the tests of hostile input (overflow, depth, bounds) really bite,
# and last the libFuzzer targets: their regression inputs and seeds, then
# 45 seconds of fuzzing each (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
# install_test is left out: it builds a program without the sanitizer
# runtime against the instrumented library.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTILEJIT_SANITIZE=ON
cmake --build build-asan -j"$(nproc)"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -L cpu -E install_test
# The fuzz build is clang's (libFuzzer) and instruments everything; only the
# fuzz targets are built. A crash, leak or UB report fails the suite.
CC=clang-19 CXX=clang++-19 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTILEJIT_FUZZ=ON -DTILEJIT_BUILD_TESTS=OFF
cmake --build build-fuzz -j"$(nproc)" --target fuzz_targets
bash tests/fuzz/run.sh build-fuzz 45
