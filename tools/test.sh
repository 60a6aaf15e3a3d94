#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every ctest
# test (GPU tests report "skipped" on machines without a GPU), then runs the
# CPU suites again under AddressSanitizer and UndefinedBehaviorSanitizer,
# where the tests of hostile input (overflow, depth, bounds) really bite.
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
