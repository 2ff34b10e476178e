#!/bin/sh
# tests/man-examples/extract.sh PAGE -- print the C program of PAGE's
# EXAMPLES section: its first `.Bd -literal` display, with the roff escapes
# a C program needs (\e for a backslash, \& before a leading dot, \-)
# turned back into C. For a Markdown file (README.md) it prints the first
# ```c block instead. tests/docs.mk builds and runs what this prints, so the
# program in the documentation is the one that is tested.
page=$1
[ -r "$page" ] || { echo "extract.sh: cannot read $page" >&2; exit 1; }
case $page in
*.md)
    printf '/* Extracted from %s by tests/man-examples/extract.sh: edit it there. */\n' \
        "${page##*/}"
    awk '
        !done && /^```c[ \t]*$/ { in_block = 1; next }
        in_block && /^```/ { in_block = 0; done = 1; next }
        in_block { print; found = 1 }
        END { if (!found) { print "extract.sh: no ```c block" > "/dev/stderr"; exit 1 } }
    ' "$page"
    exit
    ;;
esac
printf '/* Extracted from %s by tests/man-examples/extract.sh: edit the page. */\n' \
    "${page##*/}"
awk '
    /^\.Sh / { in_examples = ($0 == ".Sh EXAMPLES"); next }
    in_examples && !done && /^\.Bd -literal/ { in_display = 1; next }
    in_display && /^\.Ed/ { in_display = 0; done = 1; next }
    in_display { print; found = 1 }
    END { if (!found) { print "extract.sh: no EXAMPLES display" > "/dev/stderr"; exit 1 } }
' "$page" | sed -e 's/\\&//g' -e 's/\\-/-/g' -e 's/\\e/\\/g'
