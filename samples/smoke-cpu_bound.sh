#!/bin/sh
# smoke-cpu_bound.sh -- `make check` smoke test of samples/cpu_bound (TAP).
# A small run must count the primes right and report its figures; a run
# interrupted with SIGINT must cancel, say what completed, and exit 130.
# Figures are printed, never asserted.
builddir=${top_builddir:-.}
prog=$builddir/samples/cpu_bound
tmp=${TMPDIR:-/tmp}/smoke-cpu_bound.$$
trap 'rm -f "$tmp".*' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi; }

echo "1..5"

"$prog" --help >"$tmp.out" 2>&1
rc=$?
grep -q -- '--workers' "$tmp.out"
check $(( rc != 0 || $? != 0 )) "--help exits 0 and lists the options (exit $rc)"

"$prog" --chunks 0 >"$tmp.out" 2>&1
rc=$?
check $(( rc != 2 )) "a bad option value exits 2 (exit $rc)"

# 17984 primes below 200000.
"$prog" --workers 2 --chunks 16 --size 200000 >"$tmp.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp.out"
grep -q '^17984 primes below 200000$' "$tmp.out" && grep -q '^speedup:' "$tmp.out" \
    && grep -q 'heartbeat worst lateness' "$tmp.out"
check $(( rc != 0 || $? != 0 )) \
    "a small run counts 17984 primes below 200000 and reports speedup and lateness (exit $rc)"

# SIGINT mid-run. A background job of a non-interactive shell starts with
# SIGINT ignored; the sample's libevent signal event installs its own handler.
"$prog" --workers 2 --chunks 1000 --size 400000000 --no-serial >"$tmp.int" 2>&1 &
pid=$!
i=0
# Wait (bounded) until the run is under way: its first line is printed once
# the signal events are in place and the chunks are being submitted.
while [ $i -lt 600 ] && ! grep -q '^counting primes' "$tmp.int" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
sleep 0.3
kill -INT $pid
# Bounded wait for the exit: the running chunks stop cooperatively.
i=0
while [ $i -lt 300 ] && kill -0 $pid 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
done
if kill -0 $pid 2>/dev/null; then
    kill -KILL $pid
    not_ok "SIGINT ends the run promptly"
else
    ok "SIGINT ends the run promptly"
fi
wait $pid
rc=$?
sed 's/^/# /' "$tmp.int"
grep -q 'run cancelled after .* chunks completed' "$tmp.int"
check $(( rc != 130 || $? != 0 )) "SIGINT cancels, reports what completed and exits 130 (exit $rc)"
exit $failed
