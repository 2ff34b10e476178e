# plot-svg.awk -- draws the headline figures of bench/run as an SVG bar
# chart, with no plotting program. Input: the plot data of summarize.awk,
# one line per figure: "label words" factor, where factor is libevexec's
# advantage over the other column (> 1 = libevexec better), or n/a for a
# row that was not measured. Variables (-v):
# title, other (the name of the other column).
#
# Advantages range from a few percent to a hundredfold, so the axis is
# logarithmic, centred on 1: a bar to the right means libevexec is better,
# to the left worse, and a doubling is the same length everywhere. Each bar
# is labelled with its factor. Portable awk.

function esc(s) {
    gsub(/&/, "\\&amp;", s)
    gsub(/</, "\\&lt;", s)
    gsub(/>/, "\\&gt;", s)
    gsub(/"/, "\\&quot;", s)
    return s
}

function log2(v) { return log(v) / log(2) }

# x coordinate of a factor on the axis [-span, span] (in doublings).
function xof(v,   l) {
    l = log2(v)
    if (l > span) l = span
    if (l < -span) l = -span
    return left + (l + span) / (2 * span) * width
}

# A power of two as a label: 1/8, 1/2, 1, 4 ...
function power_label(k) {
    if (k >= 0) return sprintf("%d", 2 ^ k)
    return sprintf("1/%d", 2 ^ -k)
}

{
    label = $0
    sub(/[ \t]+[^ \t]+[ \t]*$/, "", label)
    gsub(/^"|"$/, "", label)
    n++
    labels[n] = label
    v = $NF + 0
    if (v <= 0) {          # "n/a": a row that was not measured
        values[n] = 0
        next
    }
    values[n] = v
    l = log2(v); if (l < 0) l = -l
    if (l > maxlog) maxlog = l
}

END {
    if (other == "" || other == "uv") other = "libuv"
    span = int(maxlog) + 1
    if (span < 1) span = 1
    if (span > 10) span = 10
    step = int((span + 4) / 5)   # axis labels on every step-th doubling: room for each
    left = 250; width = 560; top = 56; bar_h = 16; pitch = 24
    height = top + n * pitch + 56
    total_w = left + width + 90
    printf "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n", total_w, height, total_w, height
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"%d\" y=\"22\" font-size=\"14\" text-anchor=\"middle\">%s</text>\n", total_w / 2, esc(title)
    printf "<text x=\"%d\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">right of 1: libevexec better; left: %s better</text>\n", total_w / 2, esc(other)
    # Grid: one line per doubling, the line at 1 darker.
    for (k = -span; k <= span; k++) {
        x = xof(2 ^ k)
        stroke = (k == 0) ? "#333" : "#ddd"
        stroke_w = (k == 0) ? "1.5" : "1"
        printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" stroke-width=\"%s\"/>\n", x, top - 6, x, top + n * pitch, stroke, stroke_w
        if (k % step == 0)
            printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">%s</text>\n", x, top + n * pitch + 16, power_label(k)
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#555\">advantage factor of libevexec over %s</text>\n", left + width / 2, top + n * pitch + 36, esc(other)
    x1 = xof(1)
    for (i = 1; i <= n; i++) {
        y = top + (i - 1) * pitch
        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", left - 8, y + bar_h - 3, esc(labels[i])
        if (values[i] == 0) {
            printf "<text x=\"%.1f\" y=\"%d\" fill=\"#555\">not measured</text>\n", x1 + 4, y + bar_h - 3
            continue
        }
        x = xof(values[i])
        lo = (x < x1) ? x : x1
        w = (x < x1) ? x1 - x : x - x1
        if (w < 1) w = 1
        fill = (values[i] >= 1) ? "#4477aa" : "#cc6677"
        printf "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n", lo, y, w, bar_h, fill
        # A bar cut at the edge of the axis still shows its whole factor.
        shown = (values[i] >= 100) ? sprintf("%.0f", values[i]) : (values[i] >= 0.1) ? sprintf("%.2f", values[i]) : sprintf("%.2g", values[i])
        if (values[i] >= 1)
            printf "<text x=\"%.1f\" y=\"%d\">%s</text>\n", x + 4, y + bar_h - 3, shown
        else
            printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"end\">%s</text>\n", x - 4, y + bar_h - 3, shown
    }
    printf "</svg>\n"
}
