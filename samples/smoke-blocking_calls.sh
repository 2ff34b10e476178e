#!/bin/sh
# smoke-blocking_calls.sh -- `make check` smoke test of samples/blocking_calls
# (TAP). No network: it resolves only localhost (answered from /etc/hosts).
# A call slower than the timeout must be reported as timed out (exit 3), a
# failing call as failed (exit 1), and a clean run must exit 0.
builddir=${top_builddir:-.}
srcdir=${top_srcdir:-..}
prog=$builddir/samples/blocking_calls
tmp=${TMPDIR:-/tmp}/smoke-blocking_calls.$$
trap 'rm -f "$tmp".*' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
check() { if [ "$1" -eq 0 ]; then ok "$2"; else not_ok "$2"; fi; }

echo "1..5"

"$prog" --help >"$tmp.out" 2>&1
rc=$?
grep -q -- '--timeout' "$tmp.out"
check $(( rc != 0 || $? != 0 )) "--help exits 0 and lists the options (exit $rc)"

"$prog" --timeout nope >"$tmp.out" 2>&1
rc=$?
check $(( rc != 2 )) "a bad option value exits 2 (exit $rc)"

# Every call succeeds.
"$prog" localhost --file "$srcdir/samples/local.mk" --db 20 --db 50 --timeout 20000 \
    >"$tmp.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp.out"
grep -q 'ok  *resolve localhost' "$tmp.out" \
    && grep -q 'ok  *hash .*local.mk  *[0-9]* bytes' "$tmp.out" \
    && grep -q '^4 calls in .*: 4 ok, 0 failed, 0 timed out' "$tmp.out"
check $(( rc != 0 || $? != 0 )) "a run where every call succeeds exits 0 (exit $rc)"

# A database stand-in slower than the timeout: cancelled, reported, exit 3.
"$prog" localhost --file "$srcdir/samples/local.mk" --db 20 --db 60000 --timeout 300 \
    >"$tmp.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp.out"
grep -q 'TIMEOUT  *db query (60000 ms) *no answer within 300 ms, cancelled' "$tmp.out" \
    && grep -q '3 ok, 0 failed, 1 timed out (db query (60000 ms))' "$tmp.out"
check $(( rc != 3 || $? != 0 )) "a call slower than its timeout is cancelled and reported (exit $rc)"

# A call that fails: its error reaches the loop.
"$prog" localhost --file "$srcdir/samples/no-such-file" --db 10 --timeout 20000 \
    >"$tmp.out" 2>&1
rc=$?
sed 's/^/# /' "$tmp.out"
grep -q 'FAILED  *hash .*no-such-file  *No such file or directory' "$tmp.out"
check $(( rc != 1 || $? != 0 )) "a failing call reports its error and the run exits 1 (exit $rc)"
exit $failed
