/*
 * driver_uv.c -- the bench.h driver for libuv, the anchor: libuv's global
 * thread pool sized with UV_THREADPOOL_SIZE (set before the first
 * uv_queue_work, which reads it) and shared by every loop; each loop a
 * uv_loop_t made and run by one thread; uv_queue_work() per task with its
 * uv_work_t inside the harness's job; a repeating uv_timer_t. libuv has no
 * limited view of its pool and reports no wakeup counter (bench/run counts
 * its write(2) calls with a preloaded counter or strace instead).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

_Static_assert(sizeof(uv_work_t) <= BENCH_JOB_DRIVER_BYTES,
               "uv_work_t must fit in struct bench_job");

struct bench_loop {
    uv_loop_t loop;
    uv_timer_t timer;
    bool timer_running;
    void (*timer_cb)(void *arg);
    void *timer_arg;
};

static char description[64];

const char *drv_name(void)
{
    return "uv";
}

void drv_init(const struct bench_driver_opts *opts)
{
    char size[16];
    snprintf(size, sizeof(size), "%u", opts->pool);
    if (setenv("UV_THREADPOOL_SIZE", size, 1) != 0)
        bench_die("setenv failed");
    snprintf(description, sizeof(description), " version=%s", uv_version_string());
}

const char *drv_view_new(unsigned max_running)
{
    (void)max_running;
    return "libuv has no limited view of its pool";
}

struct bench_loop *drv_loop_new(void)
{
    struct bench_loop *l = calloc(1, sizeof(*l));
    if (!l)
        bench_die("out of memory");
    int err = uv_loop_init(&l->loop);
    if (err)
        bench_die("uv_loop_init: %s", uv_strerror(err));
    return l;
}

static void run_job(uv_work_t *req)
{
    struct bench_job *job = req->data;
    job->result = job->work(job);
}

static void job_done(uv_work_t *req, int status)
{
    struct bench_job *job = req->data;
    if (status)
        bench_die("task failed: %s", uv_strerror(status));
    job->done(job);
}

void drv_submit(struct bench_loop *l, struct bench_job *job)
{
    uv_work_t *req = (uv_work_t *)(void *)job->driver;
    req->data = job;
    int err = uv_queue_work(&l->loop, req, run_job, job_done);
    if (err)
        bench_die("uv_queue_work: %s", uv_strerror(err));
}

void drv_submit_view(struct bench_loop *l, struct bench_job *job)
{
    (void)l;
    (void)job;
    bench_die("drv_submit_view: libuv has no limited view");
}

static void on_timer(uv_timer_t *t)
{
    struct bench_loop *l = t->data;
    l->timer_cb(l->timer_arg);
}

void drv_timer_start(struct bench_loop *l, unsigned period_ms, void (*cb)(void *arg), void *arg)
{
    if (l->timer_running)
        bench_die("one timer per loop");
    l->timer_cb = cb;
    l->timer_arg = arg;
    int err = uv_timer_init(&l->loop, &l->timer);
    l->timer.data = l;
    if (!err)
        err = uv_timer_start(&l->timer, on_timer, period_ms, period_ms);
    if (err)
        bench_die("cannot start the timer: %s", uv_strerror(err));
    l->timer_running = true;
}

void drv_timer_stop(struct bench_loop *l)
{
    if (!l->timer_running)
        return;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, NULL);
    l->timer_running = false;
}

void drv_run(struct bench_loop *l)
{
    uv_run(&l->loop, UV_RUN_DEFAULT);
}

void drv_counters(struct bench_loop *l, struct bench_driver_counters *out)
{
    (void)l;
    out->has_wakeup_writes = false;
    out->wakeup_writes = 0;
    out->drains = 0;
    out->passes_cut = 0;
    out->workers = 0;
}

void drv_loop_free(struct bench_loop *l)
{
    drv_timer_stop(l);
    uv_run(&l->loop, UV_RUN_NOWAIT); /* lets a timer closed just now finish closing */
    int err = uv_loop_close(&l->loop);
    if (err)
        bench_die("uv_loop_close: %s", uv_strerror(err));
    free(l);
}

const char *drv_describe(void)
{
    return description;
}

void drv_fini(void)
{
}
