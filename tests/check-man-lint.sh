#!/bin/sh
# tests/check-man-lint.sh -- lints every manual page of man/ in ONE
# `mandoc -Tlint -Wwarning` run (so cross-page problems are seen too) and
# fails on any message at warning level or above. Prints TAP.
#
# configure finds mandoc (HAVE_MANDOC); tests/docs.mk passes its path in
# EVEXEC_MANDOC, empty when it was not found, and then the test is skipped.
srcdir=${top_srcdir:-.}
mandoc=${EVEXEC_MANDOC-}

echo "1..1"
if [ -z "$mandoc" ]; then
    echo "ok 1 - mandoc -Tlint over man/ # SKIP mandoc not found by configure"
    exit 0
fi

pages=$(ls "$srcdir"/man/*.[1-9] 2>/dev/null)
if [ -z "$pages" ]; then
    echo "not ok 1 - mandoc -Tlint over man/: no pages found in $srcdir/man"
    exit 0
fi

# shellcheck disable=SC2086 # one argument per page
out=$("$mandoc" -Tlint -Wwarning $pages 2>&1)
rc=$?
count=$(echo "$pages" | wc -l | tr -d ' ')
if [ $rc -eq 0 ] && [ -z "$out" ]; then
    echo "ok 1 - mandoc -Tlint -Wwarning over $count pages: clean"
else
    echo "not ok 1 - mandoc -Tlint -Wwarning over $count pages (exit $rc)"
    echo "$out" | sed 's/^/# /'
fi
