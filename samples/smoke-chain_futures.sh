#!/bin/sh
# smoke-chain_futures.sh -- `make check` smoke test of samples/chain_futures
# (TAP). The sample checks its own scenes; this runs it and looks at the
# lines that prove each one.
builddir=${top_builddir:-.}
prog=$builddir/samples/chain_futures
tmp=${TMPDIR:-/tmp}/smoke-chain_futures.$$
trap 'rm -f "$tmp".*' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi; }
has() { grep -q -- "$1" "$tmp.out"; }

echo "1..7"

"$prog" --help >"$tmp.out" 2>&1
rc=$?
has '--bad-number'
check $(( rc != 0 || $? != 0 )) "--help exits 0 and lists the options (exit $rc)"

"$prog" --number 1 >"$tmp.out" 2>&1
rc=$?
check $(( rc != 2 )) "an input that cannot succeed is a usage error, exit 2 (exit $rc)"

"$prog" --number 1001 --bad-number 12abc >"$tmp.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp.out"
has 'sum of i\*i for i = 1..1000000 is 333333833333500000'
check $? "a future set from a foreign thread delivers its result"
has 'done callback #1: 9 words' && has 'done callback #2: 9 words' \
    && has 'ran after the adding callback returned'
check $? "a wrapped concurrent future runs its done callbacks in order, never inline"
has 'outer future of "1001": 1001 = 7 \* 11 \* 13' \
    && has 'outer future of "12abc": error: Invalid argument'
check $? "a pipeline passes its result or its first error to the outer future"
has 'evexec_future_cancel(victim) = true; its concurrent future is now CANCELLED' \
    && has 'the victim never ran'
check $? "a cancelled pending task never runs"
has '^all scenes behaved as described$'
check $(( rc != 0 || $? != 0 )) "the run exits 0 (exit $rc)"
exit $failed
