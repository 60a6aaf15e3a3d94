#!/usr/bin/env bash
# The GPU machine's checklist, run from the repository root on it after
# tools/gpu_build.sh here (shared/GPU.md): every gpu test, the CLI's
# cubin-info, the install test (examples/c_app built against an installed
# tilejit and run), then the benchmarks. Logs and JSON go to $1 (default
# gpu-out/), each step's output as soon as it ends, so a run cut short
# still returns what it finished.
# Everything is also packed into OUTDIR.tgz beside OUTDIR (with the device
# tool, pass $OUT/check: only 8 files come back, $OUT/check.tgz among them).
#   usage: tools/gpu_check.sh [OUTDIR] [--quick]
set -uo pipefail
out=${1:-gpu-out}
quick=${2:-}
mkdir -p "$out"
export TILEJIT_CACHE_DIR=${TILEJIT_CACHE_DIR:-/tmp/tilejit-gpu-check}
step() {  # step NAME COMMAND...: runs, logs to $out/NAME.log, prints a summary line
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc ($((SECONDS - t0)) s)"
  tail -n 12 "$out/$name.log"
}
# Timing-sensitive suites alone, the long reference-heavy ones in parallel.
step ctest_gpu bash -c "cd build-gpu && ctest -L gpu -E autotune -j8 --output-on-failure"
step ctest_autotune bash -c "cd build-gpu && ctest -L gpu -R autotune --output-on-failure"
step cubin_info ./build-gpu/tilejit compile examples/softmax.tj -D T=f16 -D BLOCK=4096 --emit cubin-info
step install_test sh tests/install_test.sh build-gpu
step bench_rows python3 bench/bench_rows.py --json "$out/rows.json"
step bench_dropout python3 bench/bench_dropout.py --quick --json "$out/dropout.json"
step bench_attention python3 bench/bench_attention.py $quick --json "$out/attention.json"
step bench_blocks python3 bench/bench_blocks.py --quick --json "$out/blocks.json"
step bench_matmul python3 bench/bench_matmul.py --json "$out/matmul.json"
step bench_launch ./build-gpu/bench_gpu_launch
# The side-by-side harness (every part; about 5 minutes with these options)
# and its report: docs/benchmarks.md and the plots, written under $out.
if [ "$quick" != --quick ]; then
  step harness python3 bench/harness.py --warmup 10 --rep 30 --json-dir "$out/bench-json"
  step report python3 bench/report.py "$out/bench-json" --md "$out/benchmarks.md"
fi
# Device budgets cap what comes back (8 files): pack everything in one.
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")" && echo "packed: $out.tgz"
