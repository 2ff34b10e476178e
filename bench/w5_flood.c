/*
 * w5_flood.c -- W5 timers under a completion flood: W1 at full speed on the
 * main loop with a repeating timer (1 ms) beside it, from just before the
 * first submit to the n-th completion. Every tick's lateness is recorded:
 * a drain of completions that holds the loop past a due timer shows here.
 */
#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Room for a minute of 1 ms ticks, allocated before the phase. */
#define W5_MAX_TICKS 65536

static struct w1_run w5_flood;
static int64_t *w5_late_ns;
static uint64_t w5_ticks, w5_prev_tick_ns;

static void w5_tick(void *arg)
{
    (void)arg;
    uint64_t t = now_ns();
    int64_t late = (int64_t)(t - w5_prev_tick_ns) - (int64_t)opt.period_ms * 1000000;
    w5_prev_tick_ns = t;
    if (w5_ticks < W5_MAX_TICKS)
        w5_late_ns[w5_ticks] = late;
    w5_ticks++;
}

static void w5_finished(struct w1_run *run)
{
    (void)run;
    phase_end();
    drv_timer_stop(main_loop);
}

static void w5_start(void)
{
    w5_late_ns = xcalloc(W5_MAX_TICKS, sizeof(*w5_late_ns));
    w5_flood = (struct w1_run){.loop = main_loop, .n = opt.n, .window = opt.window,
                               .finished = w5_finished};
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w5_prev_tick_ns = now_ns();
    drv_timer_start(main_loop, opt.period_ms, w5_tick, NULL);
    w1_begin(&w5_flood);
}

static void w5_report(void)
{
    uint64_t kept = w5_ticks < W5_MAX_TICKS ? w5_ticks : W5_MAX_TICKS;
    double p50 = 0, p99 = 0, max = 0, mean = 0, wall = phase_wall_s();
    double expected = wall * 1e3 / opt.period_ms; /* ticks of a timer that never waited */
    if (kept) {
        qsort(w5_late_ns, kept, sizeof(*w5_late_ns), cmp_i64);
        double sum = 0;
        for (uint64_t i = 0; i < kept; i++)
            sum += (double)w5_late_ns[i];
        mean = sum / (double)kept / 1e6;
        p50 = (double)w5_late_ns[rank_index(kept, 50)] / 1e6;
        p99 = (double)w5_late_ns[rank_index(kept, 99)] / 1e6;
        max = (double)w5_late_ns[kept - 1] / 1e6;
    }
    printf(" window=%" PRIu64 " tasks_per_s=%.0f period_ms=%u ticks=%" PRIu64
           " ticks_expected=%.0f ticks_share=%.3f late_p50_ms=%.3f late_p99_ms=%.3f"
           " late_max_ms=%.3f late_mean_ms=%.3f precise_timer=%s",
           opt.window, (double)opt.n / wall, opt.period_ms, w5_ticks, expected,
           expected > 0 ? (double)w5_ticks / expected : 0.0, p50, p99, max, mean,
           precise_timer());
    free(w5_late_ns);
}

const struct bench_workload bench_w5 = {
    .name = "w5",
    .alias = "flood",
    .default_n = 1000000,
    .default_pool = 2,
    .precise_timer = true,
    .start = w5_start,
    .report = w5_report,
};
