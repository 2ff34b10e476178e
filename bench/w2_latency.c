/*
 * w2_latency.c -- W2 latency: n round trips with one task in flight. A round
 * trip runs from just before submitting a no-op to the first statement of
 * its completion callback, which submits the next.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

static uint64_t *w2_rtt_ns;
static uint64_t w2_count;
static uint64_t w2_sent_ns;

static void *w2_work(struct bench_job *job)
{
    (void)job;
    return NULL; /* a no-op */
}

static void w2_done(struct bench_job *job);

static void w2_submit(void)
{
    struct bench_job *job = job_new(w2_work, w2_done, 0, NULL);
    w2_sent_ns = now_ns();
    drv_submit(main_loop, job);
}

static void w2_done(struct bench_job *job)
{
    uint64_t t = now_ns(); /* the first statement of the completion callback */
    w2_rtt_ns[w2_count] = t - w2_sent_ns;
    free(job);
    if (++w2_count == opt.n) {
        phase_end();
        return;
    }
    w2_submit();
}

static void w2_start(void)
{
    w2_rtt_ns = xcalloc(opt.n, sizeof(*w2_rtt_ns));
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w2_submit();
}

static void w2_report(void)
{
    uint64_t n = opt.n;
    qsort(w2_rtt_ns, n, sizeof(*w2_rtt_ns), cmp_u64);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++)
        sum += (double)w2_rtt_ns[i];
    printf(" mean_us=%.2f p50_us=%.2f p99_us=%.2f max_us=%.2f min_us=%.2f",
           sum / (double)n / 1e3, (double)w2_rtt_ns[rank_index(n, 50)] / 1e3,
           (double)w2_rtt_ns[rank_index(n, 99)] / 1e3, (double)w2_rtt_ns[n - 1] / 1e3,
           (double)w2_rtt_ns[0] / 1e3);
    free(w2_rtt_ns);
}

const struct bench_workload bench_w2 = {
    .name = "w2",
    .default_n = 20000,
    .default_pool = 2,
    .start = w2_start,
    .report = w2_report,
};
