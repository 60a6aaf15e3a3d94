#!/usr/bin/env bash
# The GPU test suite under NVIDIA compute-sanitizer, on the GPU machine,
# after tools/gpu_build.sh here (shared/GPU.md): memcheck (out-of-bounds and
# misaligned global/shared accesses, leaks of device memory) and racecheck
# (shared-memory hazards: the reductions, the ldmatrix/mma staging, the
# cp.async pipelines). Logs go to OUTDIR (default gpu-out/).
#
#   usage: tools/gpu_sanitize.sh [OUTDIR] [--quick]
#
# The cases are every GPU entry ctest has in build-gpu/ (one test case of a
# Check suite each, CK_RUN_CASE, with ctest's environment), except those
# that run python3. Each runs under both tools, JOBS (default 8) at a time,
# each stopped after CASE_TIMEOUT seconds (default 540), which counts as a
# failure. --quick leaves out the cases that run the same kernels on the
# xFormers-sized and 32768x4096 tensors (more programs, no new code paths):
# under the sanitizer kernels run 10-100x slower. CASES (an extended regex)
# keeps only the cases whose names match it. Tuning is off
# (TILEJIT_AUTOTUNE=0): it would only time the same kernels.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-out}
quick=${2:-}
if [ "$out" = --quick ]; then out=gpu-out; quick=--quick; fi
mkdir -p "$out"
cs=${COMPUTE_SANITIZER:-compute-sanitizer}
jobs=${JOBS:-8}
tmo=${CASE_TIMEOUT:-540}
export TILEJIT_AUTOTUNE=0 TJ_TEST_SANITIZER=1 TILEJIT_CACHE_DIR=${TILEJIT_CACHE_DIR:-/tmp/tilejit-sanitize}
big='xformers_shapes|benchmark_shape'

# One line per case: NAME<TAB>COMMAND<TAB>ENV (space-separated NAME=VALUE).
cases=$( (cd build-gpu && ctest -L gpu --show-only=json-v1) | python3 -c '
import json, sys
for t in json.load(sys.stdin)["tests"]:
    cmd = t.get("command") or []
    if not cmd or "python" in cmd[0]:
        continue
    env = [v for p in t.get("properties", []) if p["name"] == "ENVIRONMENT" for v in p["value"]]
    env = [e for e in env if not e.startswith("TILEJIT_CACHE_DIR=")]
    print(t["name"] + "\t" + " ".join(cmd) + "\t" + " ".join(env))
')
[ -n "$cases" ] || { echo "gpu_sanitize: no GPU cases in build-gpu (run tools/gpu_build.sh here first)" >&2; exit 2; }

run() {  # run TOOL NAME COMMAND ENV: one line of result, the log and an exit-status file in $out
  local tool=$1 name=$2 cmd=$3 envs=$4 t0=$SECONDS
  local base="$out/sanitize-$tool-${name//[:\/]/-}" extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  # shellcheck disable=SC2086
  env $envs timeout "$tmo" "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 "${extra[@]}" $cmd \
    > "$base.log" 2>&1
  local rc=$? summary
  echo "$rc" > "$base.rc"
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$base.log" | tail -n 1)
  # One write per report, so parallel jobs do not interleave within it.
  if [ $rc -eq 0 ]; then
    echo "== $tool $name: exit 0 ($((SECONDS - t0)) s) ${summary}"
  else
    printf '== %s %s: exit %d (%d s) %s\nFAIL %s %s\n%s\n' "$tool" "$name" "$rc" "$((SECONDS - t0))" \
      "$summary" "$tool" "$name" "$(tail -n 30 "$base.log")"
  fi
  return 0
}
export -f run
export out cs tmo

rm -f "$out"/sanitize-*.rc
while IFS=$'\t' read -r name cmd envs; do
  [ "$quick" = --quick ] && [[ "$name" =~ $big ]] && continue
  [ -n "${CASES:-}" ] && ! [[ "$name" =~ $CASES ]] && continue
  for tool in memcheck racecheck; do printf '%s\t%s\t%s\t%s\n' "$tool" "$name" "$cmd" "$envs"; done
done <<< "$cases" > "$out/cases.tsv"
runs=$(wc -l < "$out/cases.tsv")
if [ "$runs" -eq 0 ]; then
  echo "gpu_sanitize: no GPU case matches${CASES:+ CASES='$CASES'}" >&2
  exit 2
fi
echo "gpu_sanitize: $runs runs, $jobs at a time"
tr '\t\n' '\0\0' < "$out/cases.tsv" | xargs -0 -r -n 4 -P "$jobs" bash -c 'run "$@"' _ | tee "$out/summary.txt"
# The verdict comes from the status files, not from the interleaved output.
done_runs=$(find "$out" -maxdepth 1 -name 'sanitize-*.rc' | wc -l)
failed=$(cat "$out"/sanitize-*.rc 2>/dev/null | grep -cv '^0$')
if [ "$failed" -ne 0 ] || [ "$done_runs" -ne "$runs" ]; then
  echo "gpu_sanitize: $failed failing runs, $((runs - done_runs)) without a result"
  exit 1
fi
echo "gpu_sanitize: all $runs runs clean"
