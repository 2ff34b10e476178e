/*
 * bench.h -- the interface between the workloads of ../shared/WORKLOADS.md
 * (bench/workloads.c, one source for every library) and a library driver
 * (bench/driver_evexec.c, bench/driver_uv.c). A driver knows how to make a
 * loop and a pool of exactly N workers, run a job on the pool and call the
 * job back on the loop thread, run a repeating timer, and run the loop.
 * Everything else -- clocks, counters, job allocation, the workloads
 * themselves -- lives in workloads.c, so the libraries are measured by the
 * same code and the only difference is the library.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room a driver may use inside each job for its request (libuv's
 * uv_work_t is 128 bytes on x86-64). Both programs allocate the same size. */
#define BENCH_JOB_DRIVER_BYTES 128

struct bench_job;

/* Runs on a worker thread; its return value becomes job->result. */
typedef void *(*bench_work_fn)(struct bench_job *job);
/* Runs on the loop thread once the work is done; it frees the job. */
typedef void (*bench_done_fn)(struct bench_job *job);

/* One task: allocated with malloc by the workload, freed in its done
 * callback (the same per-task overhead for every library). */
struct bench_job {
    bench_work_fn work;
    bench_done_fn done;
    void *result;      /* set by the driver before done runs */
    uint64_t arg;      /* the workload's own argument */
    _Alignas(16) unsigned char driver[BENCH_JOB_DRIVER_BYTES];
};

/* Options a driver may look at (the rest belong to the workloads). */
struct bench_driver_opts {
    unsigned pool;        /* exactly this many workers */
    /* libevexec pool tuning; 0 / false = the library's defaults. */
    unsigned spin_us;
    bool no_spin;
    int worker_nice;
    bool keep_priority;
    bool sched_idle;
};

/* Counters a driver can read from its library; has_* says which exist. */
struct bench_driver_counters {
    bool has_wakeup_writes;
    uint64_t wakeup_writes;
    uint64_t drains;
    unsigned workers;     /* worker threads alive (0 if unknown) */
};

/* ---- implemented by each driver ---------------------------------------- */

/* Library name for the output ("evexec", "uv"). */
const char *drv_name(void);
/* Make the loop and the pool. Exits the program on failure. */
void drv_init(const struct bench_driver_opts *opts);
/* Run job->work on the pool, then job->done on the loop thread. */
void drv_submit(struct bench_job *job);
/* Start a repeating timer on the loop: cb(arg) every period_ms. One at most. */
void drv_timer_start(unsigned period_ms, void (*cb)(void *arg), void *arg);
/* Stop and release the timer (from its callback or any loop callback). */
void drv_timer_stop(void);
/* Run the loop until nothing is left to do. */
void drv_run(void);
/* Read the library's counters (loop thread). */
void drv_counters(struct bench_driver_counters *out);
/* Extra key=value pairs describing the driver's setup, or "". */
const char *drv_describe(void);
/* Tear everything down. */
void drv_fini(void);

/* ---- implemented by workloads.c ---------------------------------------- */

/* Print a message and exit(2). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* BENCH_H */
