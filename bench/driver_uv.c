/*
 * driver_uv.c -- the bench.h driver for libuv, the anchor: a uv_loop_t run
 * by the main thread, libuv's global thread pool sized with
 * UV_THREADPOOL_SIZE (set before the first uv_queue_work, which reads it),
 * uv_queue_work() per task with its uv_work_t inside the harness's job, and
 * a repeating uv_timer_t. libuv reports no wakeup counter; bench/run counts
 * its eventfd writes with strace instead.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

_Static_assert(sizeof(uv_work_t) <= BENCH_JOB_DRIVER_BYTES,
               "uv_work_t must fit in struct bench_job");

static uv_loop_t loop;
static uv_timer_t timer;
static bool timer_running;
static void (*timer_cb)(void *arg);
static void *timer_arg;
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
    int err = uv_loop_init(&loop);
    if (err)
        bench_die("uv_loop_init: %s", uv_strerror(err));
    snprintf(description, sizeof(description), " version=%s", uv_version_string());
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

void drv_submit(struct bench_job *job)
{
    uv_work_t *req = (uv_work_t *)(void *)job->driver;
    req->data = job;
    int err = uv_queue_work(&loop, req, run_job, job_done);
    if (err)
        bench_die("uv_queue_work: %s", uv_strerror(err));
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
    timer_cb(timer_arg);
}

void drv_timer_start(unsigned period_ms, void (*cb)(void *arg), void *arg)
{
    timer_cb = cb;
    timer_arg = arg;
    int err = uv_timer_init(&loop, &timer);
    if (!err)
        err = uv_timer_start(&timer, on_timer, period_ms, period_ms);
    if (err)
        bench_die("cannot start the timer: %s", uv_strerror(err));
    timer_running = true;
}

void drv_timer_stop(void)
{
    if (!timer_running)
        return;
    uv_timer_stop(&timer);
    uv_close((uv_handle_t *)&timer, NULL);
    timer_running = false;
}

void drv_run(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
}

void drv_counters(struct bench_driver_counters *out)
{
    out->has_wakeup_writes = false;
    out->wakeup_writes = 0;
    out->drains = 0;
    out->workers = 0;
}

const char *drv_describe(void)
{
    return description;
}

void drv_fini(void)
{
    int err = uv_loop_close(&loop);
    if (err)
        bench_die("uv_loop_close: %s", uv_strerror(err));
}
