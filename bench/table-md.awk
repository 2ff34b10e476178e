# table-md.awk -- the main figures of bench/run's table.txt as a Markdown
# table, for the README: awk -f bench/table-md.awk bench/results/table.txt
# Columns as in table.txt: workload, metric, libevexec median [min-max],
# libuv median [min-max], ratio (libevexec / libuv). Portable awk.
BEGIN {
    keep = " tasks_per_s cpu_us_per_task wakeups_per_task p50_us p99_us speedup" \
           " late_busy_max_ms wall_over_ideal late_p99_ms late_max_ms ticks" \
           " writes_per_task p99_ms bytes_per_task drain_s "
    print "| workload | metric | libevexec median [min–max] | libuv median [min–max] | ratio |"
    print "|---|---|---|---|---|"
}
/^#/ || /^workload / { next }
{
    # Split on runs of two or more spaces: labels hold single spaces.
    n = 0
    line = $0
    while (length(line) > 0) {
        if (match(line, /  +/)) {
            field[++n] = substr(line, 1, RSTART - 1)
            line = substr(line, RSTART + RLENGTH)
        } else {
            field[++n] = line
            line = ""
        }
    }
    if (n < 6 || index(keep, " " field[2] " ") == 0)
        next
    printf "| %s | %s | %s | %s | %s |\n", field[1], field[2], field[4], field[5], field[6]
}
