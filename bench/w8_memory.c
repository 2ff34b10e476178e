/*
 * w8_memory.c -- W8 memory at scale: with every worker held by a blocker
 * task, n no-op tasks are queued at once and the resident set size is read
 * before and after; then the workers are released and the n tasks drain.
 * Every result is checked and every job freed; with alloc_count.so
 * preloaded, the allocations the library still holds once the loop is idle
 * are counted too.
 */
#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The pool's workers each run a blocker that holds them until the n tasks
 * are queued and measured. */
static pthread_mutex_t w8_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t w8_cond = PTHREAD_COND_INITIALIZER;
static unsigned w8_blocking;
static bool w8_released;
static uint64_t w8_jobs_made, w8_jobs_freed, w8_wrong_results, w8_completed;
static uint64_t w8_rss_before, w8_rss_queued, w8_submit_ns;

/* Resident set size in bytes, from /proc/self/statm (its second field). */
static uint64_t rss_bytes(void)
{
    unsigned long size, resident;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        bench_die("cannot open /proc/self/statm: %s", strerror(errno));
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (got != 2)
        bench_die("cannot read /proc/self/statm");
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void *w8_block_work(struct bench_job *job)
{
    pthread_mutex_lock(&w8_lock);
    w8_blocking++;
    while (!w8_released)
        pthread_cond_wait(&w8_cond, &w8_lock);
    pthread_mutex_unlock(&w8_lock);
    return job;
}

static void *w8_work(struct bench_job *job)
{
    return job;
}

static void w8_done(struct bench_job *job)
{
    if (job->result != job)
        w8_wrong_results++;
    free(job);
    w8_jobs_freed++;
    if (++w8_completed == opt.n + opt.pool)
        phase_end();
}

/* Polled from a timer, so the loop thread never blocks on the workers. */
static void w8_tick(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&w8_lock);
    bool held = w8_blocking == opt.pool;
    pthread_mutex_unlock(&w8_lock);
    if (!held)
        return;
    drv_timer_stop(main_loop);
    w8_rss_before = rss_bytes();
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < opt.n; i++) {
        drv_submit(main_loop, job_new(w8_work, w8_done, i, NULL));
        w8_jobs_made++;
    }
    w8_submit_ns = now_ns() - t;
    w8_rss_queued = rss_bytes();
    phase_begin();
    pthread_mutex_lock(&w8_lock);
    w8_released = true;
    pthread_cond_broadcast(&w8_cond);
    pthread_mutex_unlock(&w8_lock);
}

static void w8_start(void)
{
    /* The allocation counts run from before the blockers to the idle loop:
     * whatever the library keeps per task must be back by then. */
    phase.count_until_idle = true;
    phase.tasks = opt.n;
    phase.harness_allocs = opt.n + opt.pool;
    bench_count_start();
    for (unsigned i = 0; i < opt.pool; i++) {
        drv_submit(main_loop, job_new(w8_block_work, w8_done, i, NULL));
        w8_jobs_made++;
    }
    drv_timer_start(main_loop, 1, w8_tick, NULL);
}

static void w8_report(void)
{
    double n = (double)opt.n;
    int64_t grown = (int64_t)w8_rss_queued - (int64_t)w8_rss_before;
    uint64_t jobs_unfreed = w8_jobs_made - w8_jobs_freed;
    printf(" rss_before_kb=%" PRIu64 " rss_queued_kb=%" PRIu64 " bytes_per_task=%.1f"
           " submit_s=%.4f drain_s=%.4f drain_tasks_per_s=%.0f wrong_results=%" PRIu64
           " jobs_unfreed=%" PRIu64,
           w8_rss_before / 1024, w8_rss_queued / 1024, (double)grown / n,
           (double)w8_submit_ns / 1e9, phase_wall_s(), n / phase_wall_s(), w8_wrong_results,
           jobs_unfreed);
    if (bench_counting_available()) {
        /* Allocations from before the blockers that are still held once
         * the loop is idle: whatever a library caches for reuse (freed when
         * it is torn down). Per-task memory left behind would show here as a
         * figure near n. */
        printf(" kept_allocs=%" PRId64, (int64_t)(phase.allocs - phase.frees));
    }
    printf(" check=%s", !w8_wrong_results && !jobs_unfreed ? "ok" : "MISMATCH");
}

const struct bench_workload bench_w8 = {
    .name = "w8",
    .default_n = 1000000,
    .default_pool = 2,
    .start = w8_start,
    .report = w8_report,
};
