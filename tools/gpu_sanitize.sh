#!/usr/bin/env bash
# The GPU test suites under NVIDIA compute-sanitizer, on the GPU machine,
# after tools/gpu_build.sh here (shared/GPU.md): memcheck (out-of-bounds and
# misaligned global/shared accesses, leaks of device memory) and racecheck
# (shared-memory hazards: the reductions, the ldmatrix/mma staging, the
# cp.async pipelines). Logs go to $1 (default gpu-out/).
#
#   usage: tools/gpu_sanitize.sh [OUTDIR] [--full]
#
# Under the sanitizer kernels run 10-100x slower, so by default the cases
# that run the same kernels on the xFormers-sized and 32768x4096 tensors
# (more programs, no new code paths) are left out; --full runs every case.
# Tuning is off (TILEJIT_AUTOTUNE=0): it would only time the same kernels.
set -uo pipefail
out=${1:-gpu-out}
full=${2:-}
mkdir -p "$out"
cs=${COMPUTE_SANITIZER:-compute-sanitizer}
export CK_FORK=no TILEJIT_AUTOTUNE=0 TJ_TEST_SANITIZER=1 TILEJIT_CACHE_DIR=${TILEJIT_CACHE_DIR:-/tmp/tilejit-sanitize}
b=build-gpu/tests
memcheck_cases=(
  "test_kernels:"
  "test_runtime:"
  "test_autotune_gpu:"
  "test_blocks_gpu:host_pointer_refused"
  "test_blocks_gpu:softmax_row_lengths"
  "test_blocks_gpu:norm_row_lengths"
  "test_dropout_gpu:host_pointer_refused"
  "test_dropout_gpu:gpu_matches_interpreter"
  "test_attention_gpu:dense_and_causal"
  "test_attention_gpu:pattern_layouts"
  "test_attention_gpu:random_layout_empty_rows"
)
racecheck_cases=(
  "test_kernels:"
  "test_blocks_gpu:norm_row_lengths"
  "test_dropout_gpu:gpu_matches_interpreter"
  "test_attention_gpu:dense_and_causal"
  "test_attention_gpu:random_layout_empty_rows"
)
if [ "$full" = --full ]; then
  memcheck_cases+=("test_blocks_gpu:softmax_xformers_shapes" "test_blocks_gpu:layernorm_xformers_shapes"
                   "test_dropout_gpu:benchmark_shape_masks")
fi
fail=0
run() {  # run TOOL BIN:CASE
  local tool=$1 bin=${2%%:*} case=${2#*:}
  local log="$out/sanitize-$tool-$bin${case:+-$case}.log" t0=$SECONDS
  local extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  env ${case:+CK_RUN_CASE=$case} "$cs" --tool "$tool" --error-exitcode 99 --print-limit 20 "${extra[@]}" \
    "$b/$bin" > "$log" 2>&1
  local rc=$?
  local summary
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -n 1)
  echo "== $tool $bin ${case:-all}: exit $rc ($((SECONDS - t0)) s) ${summary}"
  [ $rc -eq 0 ] || { fail=1; tail -n 30 "$log"; }
}
for c in "${memcheck_cases[@]}"; do run memcheck "$c"; done
for c in "${racecheck_cases[@]}"; do run racecheck "$c"; done
exit $fail
