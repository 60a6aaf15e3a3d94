#!/usr/bin/env bash
# First run on a fresh Debian 12 machine: installs what is missing, builds,
# and runs the main job (compile the bundled softmax kernel, print its tile
# IR, run it in the CPU interpreter against a C reference).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"
./build/softmax_demo
