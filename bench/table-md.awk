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
    # The workload label may hold spaces: find the 'better' column, which
    # follows the metric.
    k = 0
    for (i = 2; i <= NF; i++)
        if ($i == "higher" || $i == "lower") { k = i; break }
    if (k < 3 || index(keep, " " $(k - 1) " ") == 0)
        next
    label = $1
    for (i = 2; i <= k - 2; i++)
        label = label " " $i
    i = k + 1
    ev = $i; i++
    if (substr($i, 1, 1) == "[") { ev = ev " " $i; i++ }
    uv = $i; i++
    if (substr($i, 1, 1) == "[") { uv = uv " " $i; i++ }
    printf "| %s | %s | %s | %s | %s |\n", label, $(k - 1), ev, uv, $i
}
