#!/bin/sh
# cli_bench.sh: `tilejit bench` on the GPU, as a user runs it (ctest label
# gpu; exit 77, skipped, without a GPU). vector_add over 2^24 floats with two
# BLOCK values: the table must have a timed row per configuration, GB/s and
# a ratio to the copy of the same bytes, and nothing may be stored.
#   usage: tests/gpu/cli_bench.sh TILEJIT_BINARY   (from the source tree)
bin=$1
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
"$bin" bench examples/vector_add.tj --size n=16777216 --grid 'cdiv(n,BLOCK)' --axis BLOCK=1024,2048 \
  --num-warps 4 --bytes '12*n' --reps 10 >"$out" 2>"$err"
rc=$?
if grep -q "needs a CUDA GPU" "$err"; then cat "$err"; exit 77; fi
fail() { echo "cli_bench: $*"; echo "--- stdout"; cat "$out"; echo "--- stderr"; cat "$err"; exit 1; }
[ "$rc" -eq 0 ] || fail "exit $rc"
grep -q "^kernel vector_add on .*: 2 configurations" "$out" || fail "no header"
grep -q "time (us) *GB/s *of copy" "$out" || fail "no GB/s and copy columns"
# Two rows: index, the two axes (BLOCK, num_warps), time, GB/s, a percentage.
rows=$(grep -cE '^ +[01] +[0-9]+ +[0-9]+ +[0-9]+\.[0-9]{2} +[0-9]+\.[0-9] +[0-9]+\.[0-9]%$' "$out")
[ "$rows" -eq 2 ] || fail "$rows timed rows, want 2"
grep -qE "^copy of the same bytes .*: [0-9]+\.[0-9] GB/s$" "$out" || fail "no copy line"
grep -q "stored" "$out" && fail "bench stored a result"
exit 0
