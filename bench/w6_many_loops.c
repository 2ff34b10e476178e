/*
 * w6_many_loops.c -- W6 many loops on one pool: --loops threads each make
 * their own loop and run W1 on it against the one shared pool. The loops
 * are made first, then all start together; the clock runs from the first
 * submit of any loop to the last completion of any loop, and the loops'
 * counters add up.
 */
#include "harness.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct w6_thread {
    pthread_t tid;
    struct w1_run run;
    struct bench_driver_counters c0, c1;
};

static struct w6_thread *w6_threads;
/* Every loop made -> the main thread starts the phase -> every loop starts. */
static pthread_barrier_t w6_ready, w6_go;

static void w6_finished(struct w1_run *run)
{
    (void)run; /* t_last_ns is set; the loop runs dry and drv_run returns */
}

static void *w6_thread_main(void *arg)
{
    struct w6_thread *t = arg;
    t->run.loop = drv_loop_new();
    pthread_barrier_wait(&w6_ready);
    pthread_barrier_wait(&w6_go);
    drv_counters(t->run.loop, &t->c0);
    w1_begin(&t->run);
    drv_run(t->run.loop);
    if (t->run.completed != t->run.n)
        bench_die("w6: a loop returned after %" PRIu64 " of %" PRIu64 " tasks",
                  t->run.completed, t->run.n);
    drv_counters(t->run.loop, &t->c1);
    drv_loop_free(t->run.loop);
    return NULL;
}

/* The main loop is idle after the warm-up: run the loops in their threads. */
static void w6_run(void)
{
    int err;
    w6_threads = xcalloc(opt.loops, sizeof(*w6_threads));
    if ((err = pthread_barrier_init(&w6_ready, NULL, opt.loops + 1)) ||
        (err = pthread_barrier_init(&w6_go, NULL, opt.loops + 1)))
        bench_die("pthread_barrier_init: %s", strerror(err));
    for (unsigned i = 0; i < opt.loops; i++) {
        struct w6_thread *t = &w6_threads[i];
        t->run = (struct w1_run){.n = opt.n, .window = opt.window, .finished = w6_finished};
        if ((err = pthread_create(&t->tid, NULL, w6_thread_main, t)))
            bench_die("pthread_create: %s", strerror(err));
    }
    pthread_barrier_wait(&w6_ready);
    phase.tasks = phase.harness_allocs = (uint64_t)opt.loops * opt.n;
    phase_begin();
    pthread_barrier_wait(&w6_go);
    for (unsigned i = 0; i < opt.loops; i++)
        pthread_join(w6_threads[i].tid, NULL);
    phase_end();
    uint64_t first = UINT64_MAX, last = 0, writes = 0, drains = 0, cut = 0;
    for (unsigned i = 0; i < opt.loops; i++) {
        struct w6_thread *t = &w6_threads[i];
        if (t->run.t_first_ns < first)
            first = t->run.t_first_ns;
        if (t->run.t_last_ns > last)
            last = t->run.t_last_ns;
        writes += t->c1.wakeup_writes - t->c0.wakeup_writes;
        drains += t->c1.drains - t->c0.drains;
        cut += t->c1.passes_cut - t->c0.passes_cut;
    }
    phase.t0 = first;
    phase.t1 = last;
    phase.c0.wakeup_writes = phase.c0.drains = phase.c0.passes_cut = 0;
    phase.c1.has_wakeup_writes = w6_threads[0].c1.has_wakeup_writes;
    phase.c1.wakeup_writes = writes;
    phase.c1.drains = drains;
    phase.c1.passes_cut = cut;
    pthread_barrier_destroy(&w6_ready);
    pthread_barrier_destroy(&w6_go);
    free(w6_threads);
}

static void w6_report(void)
{
    printf(" loops=%u window=%" PRIu64 " tasks=%" PRIu64 " tasks_per_s=%.0f", opt.loops,
           opt.window, phase.tasks, (double)phase.tasks / phase_wall_s());
}

const struct bench_workload bench_w6 = {
    .name = "w6",
    .default_n = 50000,
    .default_pool = 2,
    .default_window = 256,
    .after_warm_up = w6_run,
    .report = w6_report,
};
