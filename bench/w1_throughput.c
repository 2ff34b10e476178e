/*
 * w1_throughput.c -- W1 throughput: n no-op tasks (the work returns its
 * argument), `window` of them in flight; each completion checks its result
 * and submits the next while fewer than n were submitted. The clock runs
 * from before the first submit to the n-th completion. The engine (struct
 * w1_run) also drives W5's flood and each of W6's loops.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static struct w1_run w1;

static void *w1_work(struct bench_job *job)
{
    return job; /* the work function returns its argument */
}

static void w1_done(struct bench_job *job);

static void w1_submit_one(struct w1_run *run)
{
    run->submitted++;
    drv_submit(run->loop, job_new(w1_work, w1_done, 0, run));
}

static void w1_done(struct bench_job *job)
{
    struct w1_run *run = job->ctx;
    if (job->result != job)
        bench_die("w1: wrong result");
    free(job);
    if (++run->completed == run->n) {
        run->t_last_ns = now_ns();
        run->finished(run);
        return;
    }
    if (run->submitted < run->n)
        w1_submit_one(run);
}

void w1_begin(struct w1_run *run)
{
    uint64_t first = run->n < run->window ? run->n : run->window;
    run->t_first_ns = now_ns();
    for (uint64_t i = 0; i < first; i++)
        w1_submit_one(run);
}

static void w1_finished(struct w1_run *run)
{
    (void)run;
    phase_end();
}

static void w1_start(void)
{
    w1 = (struct w1_run){.loop = main_loop, .n = opt.n, .window = opt.window,
                         .finished = w1_finished};
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w1_begin(&w1);
}

static void w1_report(void)
{
    printf(" window=%" PRIu64 " tasks_per_s=%.0f", opt.window, (double)opt.n / phase_wall_s());
}

const struct bench_workload bench_w1 = {
    .name = "w1",
    .default_n = 200000,
    .default_pool = 2,
    .start = w1_start,
    .report = w1_report,
};
