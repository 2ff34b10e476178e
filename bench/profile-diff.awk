# profile-diff.awk -- instructions per task by function from two callgrind
# runs that differ only in n (bench/run --extra). Arguments, in this order:
# callgrind_annotate exclusive output at n=20000, at n=40000, inclusive at
# n=20000, at n=40000. Prints "excl|incl|function" per function, per task
# ((Ir at 40000 - Ir at 20000) / 20000), functions that do not scale with n
# left out. Portable awk.

# A data line: "1,234,567 (12.34%)  file:function [object]".
function parse(line,   v) {
    if (line !~ /^ *[0-9,]+ +\(/)
        return 0
    v = line
    sub(/^ */, "", v)
    value = v
    sub(/ .*/, "", value)
    gsub(/,/, "", value)
    key = v
    sub(/^[0-9,]+ +\([^)]*\) +/, "", key)
    sub(/ \[[^]]*\]$/, "", key)
    return key != "" && key !~ /PROGRAM TOTALS/
}

FNR == 1 { file++ }
parse($0) {
    slot = file SUBSEP key
    if (slot in ir) next     # the first line of a name wins
    ir[slot] = value + 0
    keys[key] = 1
}

END {
    for (k in keys) {
        e = (ir[2 SUBSEP k] - ir[1 SUBSEP k]) / 20000
        i = (ir[4 SUBSEP k] - ir[3 SUBSEP k]) / 20000
        if (e < 0.5 && i < 0.5)
            continue
        printf "%9.1f|%9.1f| %s\n", e, i, k
    }
}
