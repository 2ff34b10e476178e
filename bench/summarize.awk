# summarize.awk -- turns the raw lines of bench/run (raw.txt) into the table
# of medians and min-max per library, with the ratio evexec/uv.
#
# Input lines: "round=R row=ROW bench lib=LIB workload=W key=value ...".
# Variables (-v): rows="w1p2 w1p2pin ..." (order of the table),
#   other=uv (the library in the second column: "uv", or "base" for a
#   baseline build of libevexec given to bench/run --baseline),
#   plotdata=FILE (optional: one line per headline figure for
#   bench/plot-svg.awk:
#   label, advantage factor of evexec over uv, >1 = evexec better).
# Portable awk (Debian's default is mawk): no gawk extensions.

function metrics_of(w) {
    if (w == "w1") return "tasks_per_s:higher cpu_us_per_task:lower vcsw:lower ivcsw:lower wakeups_per_task:lower"
    if (w == "w2") return "p50_us:lower mean_us:lower p99_us:lower max_us:lower cpu_us_per_task:lower"
    if (w == "w3") return "speedup:higher parallelism:higher wall_s:lower late_busy_max_ms:lower late_idle_max_ms:lower serial_s:lower"
    if (w == "w4") return "wall_s:lower wall_over_ideal:lower"
    if (w == "w5") return "late_p99_ms:lower late_p50_ms:lower late_max_ms:lower ticks:higher ticks_share:higher tasks_per_s:higher wakeups_per_task:lower"
    if (w == "w6") return "tasks_per_s:higher cpu_us_per_task:lower wakeups_per_task:lower writes_per_task:lower allocs_per_task:lower vcsw:lower ivcsw:lower"
    if (w == "w7") return "p99_ms:lower p50_ms:lower max_ms:lower short_tasks:higher long_tasks:higher"
    if (w == "w8") return "bytes_per_task:lower drain_s:lower submit_s:lower kept_allocs:lower jobs_unfreed:lower wrong_results:lower"
    return ""
}

# The figures drawn in the plot.
function headline(w, m) {
    return (w == "w1" && m == "tasks_per_s") || (w == "w2" && m == "p50_us") ||
           (w == "w3" && (m == "speedup" || m == "late_busy_max_ms")) ||
           (w == "w4" && m == "wall_s") || (w == "w5" && m == "late_p99_ms") ||
           (w == "w6" && m == "tasks_per_s") || (w == "w7" && m == "p99_ms") ||
           (w == "w8" && (m == "bytes_per_task" || m == "drain_s"))
}

function label_of(row) {
    if (row == "w1p2") return "W1 pool=2"
    if (row == "w1p2pin") return "W1 pool=2 pinned"
    if (row == "w1p2work") return "W1 pool=2 requests"
    if (row == "w1p2workpin") return "W1 pool=2 req pinned"
    if (row == "w1p4") return "W1 pool=4"
    if (row == "w2") return "W2 pool=2"
    if (row == "w3") return "W3 pool=2"
    if (row == "w4") return "W4 pool=16"
    if (row == "w5") return "W5 flood pool=2"
    if (row == "w6") return "W6 8 loops pool=2"
    if (row == "w7") return "W7 pool=2"
    if (row == "w7view") return "W7 view=1 pool=2"
    if (row == "w3idle") return "W3 sched_idle pool=2"
    if (row == "w8") return "W8 pool=2"
    if (row == "w8work") return "W8 pool=2 requests"
    return row
}

# Bar labels of the plot.
function short_label(row, m,   l) {
    if (m == "tasks_per_s") m = "tasks/s"
    else if (m == "p50_us") m = "p50"
    else if (m == "late_busy_max_ms") m = "timer late"
    else if (m == "wall_s") m = "wall"
    else if (m == "late_p99_ms") m = "timer late p99"
    else if (m == "p99_ms") m = "short p99"
    else if (m == "bytes_per_task") m = "bytes/task"
    else if (m == "drain_s") m = "drain"
    l = label_of(row)
    sub(/ pool=/, " p", l)
    sub(/ pinned/, " pin", l)
    sub(/ requests/, " req", l)
    return l " " m
}

# Short, readable numbers.
function fmt(v,   a) {
    if (v == "") return "-"
    if (v == 0) return "0"
    a = v < 0 ? -v : v
    if (a >= 1e6) return sprintf("%.2fM", v / 1e6)
    if (a >= 1e4) return sprintf("%.1fk", v / 1e3)
    if (a >= 100) return sprintf("%.0f", v)
    if (a >= 10) return sprintf("%.1f", v)
    if (a >= 1) return sprintf("%.2f", v)
    if (a >= 0.01) return sprintf("%.3f", v)
    return sprintf("%.5f", v)
}

# Sort vals[1..n] numerically (insertion sort: five values or so).
function sortn(vals, n,   i, j, t) {
    for (i = 2; i <= n; i++) {
        t = vals[i]
        for (j = i - 1; j >= 1 && vals[j] + 0 > t + 0; j--)
            vals[j + 1] = vals[j]
        vals[j + 1] = t
    }
}

# Sets med, lo, hi from the samples of key k; returns the sample count.
function stats(k,   n, i, vals, parts) {
    if (!(k in samples)) { med = lo = hi = ""; return 0 }
    n = split(samples[k], parts, " ")
    for (i = 1; i <= n; i++) vals[i] = parts[i] + 0
    sortn(vals, n)
    lo = vals[1]; hi = vals[n]
    med = (n % 2) ? vals[(n + 1) / 2] : (vals[n / 2] + vals[n / 2 + 1]) / 2
    return n
}

{
    row = ""; lib = ""; w = ""
    for (i = 1; i <= NF; i++) {
        eq = index($i, "=")
        if (!eq) continue
        key = substr($i, 1, eq - 1); val = substr($i, eq + 1)
        if (key == "row") row = val
        else if (key == "lib") lib = val
        else if (key == "workload") w = val
        kv[key] = val
    }
    if (row == "" || lib == "" || w == "") { delete kv; next }
    workload[row] = w
    seenlib[lib] = 1
    split(metrics_of(w), ms, " ")
    for (m in ms) {
        split(ms[m], p, ":")
        if (p[1] in kv) {
            k = row SUBSEP lib SUBSEP p[1]
            samples[k] = (k in samples) ? samples[k] " " kv[p[1]] : kv[p[1]]
        }
    }
    if ("status" in kv) failed[row SUBSEP lib]++
    if (kv["check"] == "MISMATCH") mismatch[row SUBSEP lib]++
    if (kv["view"] == "unavailable") unavailable[row SUBSEP lib] = 1
    delete kv
}

END {
    if (other == "") other = "uv"
    oname = (other == "uv") ? "libuv" : other
    nrows = split(rows, order, " ")
    printf "%-20s %-17s %-6s  %-26s  %-26s  %s\n", "workload", "metric", "better", \
        "evexec median [min-max]", oname " median [min-max]", "evexec/" other
    for (r = 1; r <= nrows; r++) {
        row = order[r]
        if (!(row in workload)) continue
        w = workload[row]
        if ((row SUBSEP "evexec") in unavailable) {
            printf "%-20s %s\n", label_of(row), "not measured: the libevexec program has no limited view (view=unavailable)"
            if (plotdata != "")
                printf "\"%s\" n/a\n", short_label(row, "p99_ms") > plotdata
            continue
        }
        nm = split(metrics_of(w), ms, " ")
        for (i = 1; i <= nm; i++) {
            split(ms[i], p, ":")
            m = p[1]; better = p[2]
            ne = stats(row SUBSEP "evexec" SUBSEP m); emed = med; elo = lo; ehi = hi
            nu = stats(row SUBSEP other SUBSEP m); umed = med; ulo = lo; uhi = hi
            if (!ne && !nu) continue
            ecol = ne ? sprintf("%s [%s-%s]", fmt(emed), fmt(elo), fmt(ehi)) : "-"
            ucol = nu ? sprintf("%s [%s-%s]", fmt(umed), fmt(ulo), fmt(uhi)) : "-"
            ratio = "-"
            # A ratio of figures that can be negative (a timer tick earlier
            # than its period) would mean nothing.
            if (ne && nu && umed > 0 && emed >= 0)
                ratio = sprintf(emed / umed < 0.1 ? "%.2g" : "%.2f", emed / umed)
            printf "%-20s %-17s %-6s  %-26s  %-26s  %s\n", label_of(row), m, better, ecol, ucol, ratio
            if (plotdata != "" && headline(w, m) && ne && nu && umed > 0 && emed > 0) {
                adv = (better == "higher") ? emed / umed : umed / emed
                printf "\"%s\" %.4f\n", short_label(row, m), adv > plotdata
            }
        }
    }
    for (k in failed) {
        split(k, p, SUBSEP)
        printf "FAILED runs: %s %s: %d\n", label_of(p[1]), p[2], failed[k]
    }
    for (k in mismatch) {
        split(k, p, SUBSEP)
        printf "CHECK FAILED (W3: wrong hashes; W8: a wrong result or a job not freed): %s %s: %d run(s)\n", label_of(p[1]), p[2], mismatch[k]
    }
}
