/*
 * driver_evexec.c -- the bench.h driver for libevexec, written the way an
 * application would use it: a libevent base run by the main thread, a
 * struct evexec_loop on it, an explicit pool of exactly `pool` workers
 * (min_workers = max_workers = pool), and evexec_run_in_executor() with a
 * done callback per task. libevent is not told about threads
 * (evthread_use_pthreads): the library never calls it from a worker.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "evexec.h"

static struct event_base *base;
static struct evexec_loop *loop;
static struct evexec_pool *pool;
static struct event *timer_ev;
static void (*timer_cb)(void *arg);
static void *timer_arg;
static char description[160];

const char *drv_name(void)
{
    return "evexec";
}

void drv_init(const struct bench_driver_opts *opts)
{
    base = event_base_new();
    if (!base)
        bench_die("event_base_new failed");
    loop = evexec_loop_new(base);
    if (!loop)
        bench_die("evexec_loop_new: %s", evexec_strerror(errno));
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = opts->pool;
    cfg.min_workers = opts->pool;
    cfg.spin_us = opts->spin_us;
    cfg.worker_nice = opts->worker_nice;
    if (opts->no_spin)
        cfg.flags |= EVEXEC_POOL_NO_SPIN;
    if (opts->keep_priority)
        cfg.flags |= EVEXEC_POOL_KEEP_PRIORITY;
    if (opts->sched_idle)
        cfg.flags |= EVEXEC_POOL_SCHED_IDLE;
    pool = evexec_pool_new(&cfg);
    if (!pool)
        bench_die("evexec_pool_new: %s", evexec_strerror(errno));
    /* The effective tuning: 0 in the config means the library's default. */
    unsigned spin_us = opts->no_spin ? 0 : opts->spin_us ? opts->spin_us : EVEXEC_DEFAULT_SPIN_US;
    int nice = opts->keep_priority ? 0
               : opts->worker_nice ? opts->worker_nice : EVEXEC_DEFAULT_WORKER_NICE;
    snprintf(description, sizeof(description), " version=%s spin_us=%u worker_nice=%d%s",
             evexec_version(), spin_us, nice, opts->sched_idle ? " sched_idle=1" : "");
}

/* The library's work function: run the harness's work, hand its result on. */
static int run_job(void *arg, void **result)
{
    struct bench_job *job = arg;
    *result = job->work(job);
    return 0;
}

/* Loop thread: the task is done; give the harness its job back. */
static void job_done(struct evexec_future *f, void *arg)
{
    struct bench_job *job = arg;
    int err = evexec_future_result(f, &job->result);
    if (err)
        bench_die("task failed: %s", evexec_strerror(err));
    evexec_future_release(f);
    job->done(job);
}

void drv_submit(struct bench_job *job)
{
    struct evexec_future *f = evexec_run_in_executor(loop, pool, run_job, job, NULL);
    if (!f)
        bench_die("evexec_run_in_executor: %s", evexec_strerror(errno));
    int err = evexec_future_add_done_callback(f, job_done, job);
    if (err)
        bench_die("evexec_future_add_done_callback: %s", evexec_strerror(err));
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    timer_cb(timer_arg);
}

void drv_timer_start(unsigned period_ms, void (*cb)(void *arg), void *arg)
{
    struct timeval period = {(time_t)(period_ms / 1000), (suseconds_t)(period_ms % 1000) * 1000};
    timer_cb = cb;
    timer_arg = arg;
    timer_ev = event_new(base, -1, EV_PERSIST, on_timer, NULL);
    if (!timer_ev || event_add(timer_ev, &period) != 0)
        bench_die("cannot start the timer");
}

void drv_timer_stop(void)
{
    event_free(timer_ev); /* deletes it first */
    timer_ev = NULL;
}

void drv_run(void)
{
    if (event_base_dispatch(base) < 0)
        bench_die("event_base_dispatch failed");
}

void drv_counters(struct bench_driver_counters *out)
{
    struct evexec_loop_stats ls;
    struct evexec_pool_stats ps;
    memset(out, 0, sizeof(*out));
    if (evexec_loop_get_stats(loop, &ls) == 0) {
        out->has_wakeup_writes = true;
        out->wakeup_writes = ls.wakeup_writes;
        out->drains = ls.drains;
    }
    if (evexec_pool_get_stats(pool, &ps) == 0)
        out->workers = ps.threads;
}

const char *drv_describe(void)
{
    return description;
}

void drv_fini(void)
{
    evexec_pool_free(pool);
    evexec_loop_free(loop);
    event_base_free(base);
}
