/*
 * w7_head_of_line.c -- W7 head of line: long tasks (usleep) are kept
 * submitted --in-flight at a time for --duration-ms, each completion
 * submitting a new one; every --period-ms a timer submits a short no-op and
 * its round trip is recorded. With --view=N the long tasks go to a view of
 * the pool that runs at most N of them at once (where the library has
 * one), the short ones to the pool itself.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t w7_t0_ns;
static uint64_t w7_long_submitted, w7_long_done, w7_short_submitted, w7_short_done;
static uint64_t *w7_rtt_ns;
static uint64_t w7_rtt_cap;
static bool w7_stopped;

static void *w7_long_work(struct bench_job *job)
{
    usleep(opt.sleep_us);
    return job;
}

static void *w7_short_work(struct bench_job *job)
{
    (void)job;
    return NULL; /* a no-op */
}

static void w7_maybe_end(void)
{
    if (w7_stopped && w7_long_done == w7_long_submitted && w7_short_done == w7_short_submitted) {
        phase.tasks = phase.harness_allocs = w7_long_submitted + w7_short_submitted;
        opt.n = w7_short_done; /* W7 has no n of its own: the line shows the short tasks */
        phase_end();
    }
}

static void w7_long_done_cb(struct bench_job *job);

static void w7_submit_long(void)
{
    struct bench_job *job = job_new(w7_long_work, w7_long_done_cb, 0, NULL);
    w7_long_submitted++;
    if (opt.view)
        drv_submit_view(main_loop, job);
    else
        drv_submit(main_loop, job);
}

static void w7_long_done_cb(struct bench_job *job)
{
    free(job);
    w7_long_done++;
    if (!w7_stopped)
        w7_submit_long(); /* keep opt.in_flight long tasks submitted */
    else
        w7_maybe_end();
}

static void w7_short_done_cb(struct bench_job *job)
{
    uint64_t t = now_ns(); /* the first statement of the completion callback */
    if (w7_short_done < w7_rtt_cap)
        w7_rtt_ns[w7_short_done] = t - job->arg;
    free(job);
    w7_short_done++;
    w7_maybe_end();
}

static void w7_tick(void *arg)
{
    (void)arg;
    if (now_ns() - w7_t0_ns >= (uint64_t)opt.duration_ms * 1000000u) {
        w7_stopped = true;
        drv_timer_stop(main_loop);
        w7_maybe_end();
        return;
    }
    struct bench_job *job = job_new(w7_short_work, w7_short_done_cb, 0, NULL);
    w7_short_submitted++;
    job->arg = now_ns();
    drv_submit(main_loop, job);
}

static void w7_start(void)
{
    w7_rtt_cap = opt.duration_ms / opt.period_ms + 16;
    w7_rtt_ns = xcalloc(w7_rtt_cap, sizeof(*w7_rtt_ns));
    phase_begin();
    w7_t0_ns = phase.t0;
    for (unsigned i = 0; i < opt.in_flight; i++)
        w7_submit_long();
    drv_timer_start(main_loop, opt.period_ms, w7_tick, NULL);
}

static void w7_report(void)
{
    uint64_t kept = w7_short_done < w7_rtt_cap ? w7_short_done : w7_rtt_cap;
    double p50 = 0, p99 = 0, max = 0;
    if (kept) {
        qsort(w7_rtt_ns, kept, sizeof(*w7_rtt_ns), cmp_u64);
        p50 = (double)w7_rtt_ns[rank_index(kept, 50)] / 1e6;
        p99 = (double)w7_rtt_ns[rank_index(kept, 99)] / 1e6;
        max = (double)w7_rtt_ns[kept - 1] / 1e6;
    }
    printf(" view=%u duration_ms=%u period_ms=%u sleep_us=%u in_flight=%u short_tasks=%" PRIu64
           " long_tasks=%" PRIu64 " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
           opt.view, opt.duration_ms, opt.period_ms, opt.sleep_us, opt.in_flight, w7_short_done,
           w7_long_done, p50, p99, max);
    free(w7_rtt_ns);
}

const struct bench_workload bench_w7 = {
    .name = "w7",
    .default_pool = 2,
    .default_period_ms = 10,
    .default_sleep_us = 50000,
    .start = w7_start,
    .report = w7_report,
};
