/*
 * w3_cpu_bound.c -- W3 CPU-bound work and loop responsiveness: n tasks of an
 * integer hash chain (about 20 ms each), run serially first for the
 * baseline. A repeating timer runs alone for --idle-ms, then its callback
 * submits all n tasks; its lateness is recorded while they run and before.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t w3_hash(uint64_t seed, uint64_t iters)
{
    uint64_t x = seed;
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 29;
        x += i;
    }
    return x;
}

static double w3_serial_s;
static uint64_t w3_serial_sum, w3_sum, w3_completed;
static uint64_t w3_timer_start_ns, w3_prev_tick_ns;
static bool w3_busy, w3_submitted;
static int64_t w3_late_idle_max = INT64_MIN, w3_late_busy_max = INT64_MIN;
static int64_t w3_late_busy_total;
static uint64_t w3_idle_ticks, w3_busy_ticks;

static void *w3_work(struct bench_job *job)
{
    return (void *)(uintptr_t)w3_hash(job->arg + 1, opt.iters);
}

/* Before the pool exists: the baseline and the expected results. */
static void w3_serial(void)
{
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < opt.n; i++)
        w3_serial_sum ^= w3_hash(i + 1, opt.iters);
    w3_serial_s = (double)(now_ns() - t0) / 1e9;
}

static void w3_done(struct bench_job *job)
{
    w3_sum ^= (uint64_t)(uintptr_t)job->result;
    free(job);
    if (++w3_completed == opt.n) {
        phase_end();
        w3_busy = false;
        drv_timer_stop(main_loop);
    }
}

static void w3_tick(void *arg)
{
    (void)arg;
    uint64_t t = now_ns();
    int64_t late = (int64_t)(t - w3_prev_tick_ns) - (int64_t)opt.period_ms * 1000000;
    w3_prev_tick_ns = t;
    if (w3_busy) {
        w3_busy_ticks++;
        w3_late_busy_total += late;
        if (late > w3_late_busy_max)
            w3_late_busy_max = late;
    } else if (!w3_submitted) {
        w3_idle_ticks++;
        if (late > w3_late_idle_max)
            w3_late_idle_max = late;
        if (t - w3_timer_start_ns >= (uint64_t)opt.idle_ms * 1000000u) {
            /* The timer ran alone long enough: now submit everything. */
            w3_submitted = true;
            w3_busy = true;
            phase.tasks = phase.harness_allocs = opt.n;
            phase_begin();
            for (uint64_t i = 0; i < opt.n; i++)
                drv_submit(main_loop, job_new(w3_work, w3_done, i, NULL));
        }
    }
}

static void w3_start(void)
{
    w3_timer_start_ns = w3_prev_tick_ns = now_ns();
    drv_timer_start(main_loop, opt.period_ms, w3_tick, NULL);
}

static void w3_report(void)
{
    double wall = phase_wall_s();
    printf(" iters=%" PRIu64 " serial_s=%.4f speedup=%.3f parallelism=%.3f"
           " late_busy_max_ms=%.3f late_busy_mean_ms=%.3f late_idle_max_ms=%.3f"
           " busy_ticks=%" PRIu64 " idle_ticks=%" PRIu64 " precise_timer=%s check=%s",
           opt.iters, w3_serial_s, w3_serial_s / wall, phase_cpu_s() / wall,
           w3_busy_ticks ? (double)w3_late_busy_max / 1e6 : 0.0,
           w3_busy_ticks ? (double)w3_late_busy_total / (double)w3_busy_ticks / 1e6 : 0.0,
           w3_idle_ticks ? (double)w3_late_idle_max / 1e6 : 0.0, w3_busy_ticks, w3_idle_ticks,
           precise_timer(), w3_sum == w3_serial_sum ? "ok" : "MISMATCH");
}

const struct bench_workload bench_w3 = {
    .name = "w3",
    .default_n = 64,
    .default_pool = 2,
    .precise_timer = true,
    .prepare = w3_serial,
    .start = w3_start,
    .report = w3_report,
};
