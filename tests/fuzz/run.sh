#!/usr/bin/env bash
# Runs the fuzz targets of a TILEJIT_FUZZ build for a bounded time each
# (docs/fuzzing.md); tools/test.sh calls it. Per target: every regression
# input (tests/fuzz/regress/<target>/) and every seed (tests/fuzz/corpus/
# <target>/) once, then fuzzing for SECONDS from the seeds, new inputs going
# to a scratch directory (the committed corpus is never written). Any
# crash, leak, UB report or timeout fails the run; the input that caused it
# is left in the scratch directory and its path printed.
#
# usage: tests/fuzz/run.sh [build dir] [seconds per target] [target...]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
secs=${2:-45}
shift $(($# < 2 ? $# : 2))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(fuzz_frontend fuzz_codegen fuzz_cache fuzz_tunestore); fi
scratch=$(mktemp -d /tmp/tilejit-fuzzrun.XXXXXX)
failed=0
for t in "${targets[@]}"; do
  bin=$build/$t
  seeds=tests/fuzz/corpus/$t
  regress=tests/fuzz/regress/$t
  log=$scratch/$t.log
  mkdir -p "$scratch/$t"
  opts=(-timeout=10 -print_final_stats=1 -artifact_prefix="$scratch/$t-")
  # Short inputs keep the compiling targets fast (a kernel fits in 1 KB);
  # the seed pass has no limit, so longer seeds run whole.
  case $t in
    fuzz_frontend|fuzz_codegen) maxlen=1024 ;;
    *) maxlen=4096 ;;
  esac
  # Every regression input and seed once.
  inputs=()
  if [ -d "$regress" ]; then
    while IFS= read -r f; do inputs+=("$f"); done < <(find "$regress" -type f | sort)
  fi
  if ! { [ ${#inputs[@]} -eq 0 ] || "$bin" "${opts[@]}" "${inputs[@]}"; } >"$log" 2>&1 ||
     ! "$bin" "${opts[@]}" -runs=0 "$seeds" >>"$log" 2>&1; then
    echo "fuzz: $t FAILED on a regression input or seed; log: $log" >&2
    tail -40 "$log" >&2
    failed=1
    continue
  fi
  if ! "$bin" "${opts[@]}" -max_len=$maxlen -max_total_time="$secs" "$scratch/$t" "$seeds" >"$log" 2>&1; then
    echo "fuzz: $t FAILED; log: $log" >&2
    grep -A40 -m1 -E '^==[0-9]+==|runtime error|^fuzz:' "$log" >&2 || tail -40 "$log" >&2
    ls "$scratch/$t"-* 2>/dev/null | sed 's/^/fuzz: crashing input: /' >&2 || true
    failed=1
    continue
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  printf 'fuzz: %-15s ok: %s executions in %ss, %s exec/s, %s regression inputs\n' \
    "$t" "$runs" "$secs" "$rate" "${#inputs[@]}"
done
if [ "$failed" -eq 0 ]; then rm -rf "$scratch"; fi
exit "$failed"
