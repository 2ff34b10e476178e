/*
 * driver_evexec.c -- the bench.h driver for libevexec, written the way an
 * application would use it: one explicit pool of exactly `pool` workers
 * (min_workers = max_workers = pool) shared by every loop; each loop a
 * libevent base with a struct evexec_loop on it, made and run by one
 * thread; per task either evexec_run_in_executor() with a done callback
 * (the default) or, with --submit=requests, evexec_queue_work() with the
 * struct evexec_work inside the harness's job, as a libuv program keeps its
 * uv_work_t; the limited view is evexec_pool_new_limited(pool,
 * max_running). libevent
 * is not told about threads (evthread_use_pthreads): each base is used by
 * its own thread only, and the library never calls it from a worker.
 */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "evexec.h"

_Static_assert(sizeof(struct evexec_work) <= BENCH_JOB_DRIVER_BYTES,
               "struct evexec_work must fit in struct bench_job");
_Static_assert(_Alignof(struct evexec_work) <= 16,
               "struct bench_job's driver space is 16-byte aligned");

struct bench_loop {
    struct event_base *base;
    struct evexec_loop *loop;
    struct event *timer_ev;
    void (*timer_cb)(void *arg);
    void *timer_arg;
};

static struct evexec_pool *pool;
static struct evexec_pool *view;
static bool use_requests;
static char description[200];

const char *drv_name(void)
{
    return "evexec";
}

void drv_init(const struct bench_driver_opts *opts)
{
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
    use_requests = opts->requests;
    snprintf(description, sizeof(description),
             " version=%s submit=%s spin_us=%u worker_nice=%d%s", evexec_version(),
             use_requests ? "requests" : "futures", spin_us, nice,
             opts->sched_idle ? " sched_idle=1" : "");
}

const char *drv_view_new(unsigned max_running)
{
    view = evexec_pool_new_limited(pool, max_running);
    if (!view)
        bench_die("evexec_pool_new_limited: %s", evexec_strerror(errno));
    return NULL;
}

struct bench_loop *drv_loop_new(void)
{
    struct bench_loop *l = calloc(1, sizeof(*l));
    if (!l)
        bench_die("out of memory");
    l->base = event_base_new();
    if (!l->base)
        bench_die("event_base_new failed");
    l->loop = evexec_loop_new(l->base);
    if (!l->loop)
        bench_die("evexec_loop_new: %s", evexec_strerror(errno));
    return l;
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

/* --submit=requests: the request lives in the job, so nothing is allocated
 * per task beyond the harness's job. */
static int run_request(void *arg, void **result)
{
    struct evexec_work *req = arg;
    struct bench_job *job = req->data;
    *result = job->work(job);
    return 0;
}

/* Loop thread: the request is done and the job is the harness's again. */
static void request_done(struct evexec_work *req, int status, void *result)
{
    struct bench_job *job = req->data;
    if (status)
        bench_die("task failed: %s", evexec_strerror(status));
    job->result = result;
    job->done(job);
}

static void submit_to(struct bench_loop *l, struct evexec_pool *p, struct bench_job *job)
{
    if (use_requests) {
        struct evexec_work *req = (struct evexec_work *)(void *)job->driver;
        req->data = job;
        int err = evexec_queue_work(l->loop, p, req, run_request, request_done);
        if (err)
            bench_die("evexec_queue_work: %s", evexec_strerror(err));
        return;
    }
    struct evexec_future *f = evexec_run_in_executor(l->loop, p, run_job, job, NULL);
    if (!f)
        bench_die("evexec_run_in_executor: %s", evexec_strerror(errno));
    int err = evexec_future_add_done_callback(f, job_done, job);
    if (err)
        bench_die("evexec_future_add_done_callback: %s", evexec_strerror(err));
}

void drv_submit(struct bench_loop *l, struct bench_job *job)
{
    submit_to(l, pool, job);
}

void drv_submit_view(struct bench_loop *l, struct bench_job *job)
{
    if (!view)
        bench_die("drv_submit_view without a view");
    submit_to(l, view, job);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bench_loop *l = arg;
    l->timer_cb(l->timer_arg);
}

void drv_timer_start(struct bench_loop *l, unsigned period_ms, void (*cb)(void *arg), void *arg)
{
    struct timeval period = {(time_t)(period_ms / 1000), (suseconds_t)(period_ms % 1000) * 1000};
    if (l->timer_ev)
        bench_die("one timer per loop");
    l->timer_cb = cb;
    l->timer_arg = arg;
    l->timer_ev = event_new(l->base, -1, EV_PERSIST, on_timer, l);
    if (!l->timer_ev || event_add(l->timer_ev, &period) != 0)
        bench_die("cannot start the timer");
}

void drv_timer_stop(struct bench_loop *l)
{
    if (!l->timer_ev)
        return;
    event_free(l->timer_ev); /* deletes it first */
    l->timer_ev = NULL;
}

void drv_run(struct bench_loop *l)
{
    if (event_base_dispatch(l->base) < 0)
        bench_die("event_base_dispatch failed");
}

void drv_counters(struct bench_loop *l, struct bench_driver_counters *out)
{
    struct evexec_loop_stats ls;
    struct evexec_pool_stats ps;
    memset(out, 0, sizeof(*out));
    if (evexec_loop_get_stats(l->loop, &ls) == 0) {
        out->has_wakeup_writes = true;
        out->wakeup_writes = ls.wakeup_writes;
        out->drains = ls.drains;
        out->passes_cut = ls.passes_cut;
    }
    if (evexec_pool_get_stats(pool, &ps) == 0)
        out->workers = ps.threads;
}

void drv_loop_free(struct bench_loop *l)
{
    drv_timer_stop(l);
    evexec_loop_free(l->loop);
    event_base_free(l->base);
    free(l);
}

const char *drv_describe(void)
{
    return description;
}

void drv_fini(void)
{
    evexec_pool_free(view); /* a view before its parent; NULL is a no-op */
    evexec_pool_free(pool);
}
