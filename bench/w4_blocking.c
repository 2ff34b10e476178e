/*
 * w4_blocking.c -- W4 blocking work: n tasks of usleep(--sleep-us), all
 * submitted at once; the wall time beside the ideal, ceil(n / pool) sleeps.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t w4_completed;

static void *w4_work(struct bench_job *job)
{
    usleep(opt.sleep_us);
    return job;
}

static void w4_done(struct bench_job *job)
{
    free(job);
    if (++w4_completed == opt.n)
        phase_end();
}

static void w4_start(void)
{
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    for (uint64_t i = 0; i < opt.n; i++)
        drv_submit(main_loop, job_new(w4_work, w4_done, i, NULL));
}

static void w4_report(void)
{
    double ideal = (double)((opt.n + opt.pool - 1) / opt.pool) * opt.sleep_us / 1e6;
    printf(" sleep_us=%u ideal_s=%.4f wall_over_ideal=%.4f", opt.sleep_us, ideal,
           phase_wall_s() / ideal);
}

const struct bench_workload bench_w4 = {
    .name = "w4",
    .default_n = 256,
    .default_pool = 16,
    .start = w4_start,
    .report = w4_report,
};
