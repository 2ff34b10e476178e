#!/bin/sh
# tests/man-examples/run.sh -- runs the EXAMPLES programs of evexec(7),
# evexec_run_in_executor(3), evexec_sleep(3), evexec_gather(3),
# evexec_cfuture_wait_many(3), evexec_pool_new_limited(3) and
# evexec_queue_work(3) and the example of README.md, which `make check`
# extracted from those documents and compiled with -Wall -Wextra -Werror
# against the built library, and checks what they print. Prints TAP.
builddir=${top_builddir:-.}
dir=$builddir/tests/man-examples

echo "1..8"
n=0
# check PROGRAM EXPECTED-OUTPUT DESCRIPTION (lines shown joined by '/')
check() {
    n=$((n + 1))
    prog=$dir/$1
    if [ ! -x "$prog" ]; then
        echo "not ok $n - $3: $prog was not built"
        return
    fi
    if command -v timeout >/dev/null 2>&1; then
        out=$(timeout 60 "$prog" 2>&1)
    else
        out=$("$prog" 2>&1)
    fi
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "$2" ]; then
        echo "ok $n - $3 compiles (-Wall -Wextra -Werror), runs and prints '$(printf '%s' "$2" | tr '\n' '/')'"
    else
        echo "not ok $n - $3: exit $rc, expected '$(printf '%s' "$2" | tr '\n' '/')'"
        echo "$out" | sed 's/^/# /'
    fi
}
check evexec_7 "sum = 333833500" "evexec(7) EXAMPLES"
check evexec_run_in_executor_3 "Operation canceled" "evexec_run_in_executor(3) EXAMPLES"
check evexec_pool_new_limited_3 "found; 1 2 3 4 5" "evexec_pool_new_limited(3) EXAMPLES"
check readme "144" "README.md example"
check evexec_sleep_3 "lookup: Connection timed out" "evexec_sleep(3) EXAMPLES"
check evexec_gather_3 "sum = 8000002000000
first: disk (peer still pending)" "evexec_gather(3) EXAMPLES"
check evexec_cfuture_wait_many_3 "check 1: Input/output error" "evexec_cfuture_wait_many(3) EXAMPLES"
check evexec_queue_work_3 "job 1: 1
job 2: 4
job 3: Operation canceled
job 4: 16" "evexec_queue_work(3) EXAMPLES"
