#!/bin/sh
# tests/check-man-coverage.sh -- every function declared in include/evexec.h
# is named (.Nm, NAME section) by a page of man/, every page has the
# sections a reader relies on, and no page names a function that does not
# exist. Prints TAP: one test per function, per page, and a final
# stale-names test.
srcdir=${top_srcdir:-.}
header=$srcdir/include/evexec.h
tmp=${TMPDIR:-/tmp}/evexec-man-coverage.$$
trap 'rm -f "$tmp".*' EXIT

# Public functions: every declaration starts a line with EVEXEC_EXPORT and
# has the function's name before its first '('.
grep '^EVEXEC_EXPORT ' "$header" >"$tmp.decls"
sed -n 's/^EVEXEC_EXPORT [^(]*[ *]\(evexec_[A-Za-z0-9_]*\)(.*/\1/p' "$tmp.decls" |
    sort -u >"$tmp.funcs"

# Names of each page: "page name" lines from the NAME sections.
: >"$tmp.names"
for page in "$srcdir"/man/*.[1-9]; do
    [ -f "$page" ] || continue
    sed -n '/^\.Sh NAME/,/^\.Nd/s/^\.Nm \([A-Za-z0-9_]*\).*/\1/p' "$page" |
        while read -r name; do
            echo "${page##*/} $name"
        done >>"$tmp.names"
done

nfuncs=$(wc -l <"$tmp.funcs" | tr -d ' ')
ndecls=$(wc -l <"$tmp.decls" | tr -d ' ')
npages=$(ls "$srcdir"/man/*.3 2>/dev/null | wc -l | tr -d ' ')
echo "1..$((nfuncs + npages + 2))"
n=0

n=$((n + 1))
if [ "$nfuncs" -gt 0 ] && [ "$nfuncs" = "$ndecls" ]; then
    echo "ok $n - include/evexec.h: $nfuncs exported functions parsed"
else
    echo "not ok $n - include/evexec.h: $ndecls EVEXEC_EXPORT lines but $nfuncs names parsed"
fi

while read -r func; do
    n=$((n + 1))
    page=$(awk -v f="$func" '$2 == f { print $1; exit }' "$tmp.names")
    if [ -n "$page" ]; then
        echo "ok $n - $func is documented in man/$page"
    else
        echo "not ok $n - $func is named by no page (.Nm in NAME of a man/*.3 page)"
    fi
done <"$tmp.funcs"

# Sections every section-3 page has, and each NAME has a .Fn in SYNOPSIS.
for page in "$srcdir"/man/*.3; do
    [ -f "$page" ] || continue
    n=$((n + 1))
    missing=
    for sec in NAME LIBRARY SYNOPSIS DESCRIPTION "RETURN VALUES" "THREAD SAFETY" \
               EXAMPLES ERRORS "SEE ALSO"; do
        grep -qx "\.Sh $sec" "$page" || missing="$missing '$sec'"
    done
    for name in $(awk -v p="${page##*/}" '$1 == p { print $2 }' "$tmp.names"); do
        sed -n '/^\.Sh SYNOPSIS/,/^\.Sh DESCRIPTION/p' "$page" |
            grep -q "^\.Fn $name " || missing="$missing synopsis-of-$name"
    done
    if [ -z "$missing" ]; then
        echo "ok $n - man/${page##*/} has every section and a synopsis for each name"
    else
        echo "not ok $n - man/${page##*/} lacks:$missing"
    fi
done

n=$((n + 1))
stale=$(awk '$1 ~ /\.3$/ { print $2 }' "$tmp.names" | grep -vxF -f "$tmp.funcs" | tr '\n' ' ')
if [ -z "$stale" ]; then
    echo "ok $n - every name of a section-3 page is a function of include/evexec.h"
else
    echo "not ok $n - pages name functions the header does not declare: $stale"
fi
