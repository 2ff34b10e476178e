/*
 * bench.h -- the interface between the harness and its workloads
 * (bench/harness.c, bench/w*.c: one source for every library;
 * bench/README.md defines the workloads) and a library driver
 * (bench/driver_evexec.c, bench/driver_uv.c). A driver knows how to
 * make one pool of exactly N workers, any number of loops that share it
 * (each run by the thread that made it), run a job on the pool -- or on a
 * limited view of it, where the library has one -- and call the job back on
 * its loop's thread, run a repeating timer on a loop, and run a loop.
 * Everything else -- clocks, counters, job allocation, the workloads
 * themselves -- lives in the harness, so the libraries are measured by the
 * same code and the only difference is the library.
 */
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room a driver may use inside each job for its request: the larger of
 * libuv's uv_work_t (128 bytes on x86-64) and libevexec's struct evexec_work
 * (192 bytes on x86-64), so both programs allocate the same size whichever
 * way they submit. Each driver asserts that its request fits. */
#define BENCH_JOB_DRIVER_BYTES 192

struct bench_job;

/* One event loop of a driver. Every function taking one is called on the
 * thread that made it with drv_loop_new(), which is the thread running it. */
struct bench_loop;

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
    void *ctx;         /* the workload's state for this job's loop */
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
    /* libevexec: submit through the request layer (evexec_queue_work with
     * the request inside the job) instead of evexec_run_in_executor() + a
     * done callback. Drivers with one way of submitting ignore it. */
    bool requests;
};

/* Counters a driver can read from its library; has_* says which exist. */
struct bench_driver_counters {
    bool has_wakeup_writes;
    uint64_t wakeup_writes;   /* of the loop asked about */
    uint64_t drains;          /* of the loop asked about */
    uint64_t passes_cut;      /* of the loop asked about: passes stopped by their time budget */
    unsigned workers;         /* worker threads of the pool alive (0 if unknown) */
};

/* ---- implemented by each driver ---------------------------------------- */

/* Library name for the output ("evexec", "uv"). */
const char *drv_name(void);
/* Make the pool every loop shares. Exits the program on failure. */
void drv_init(const struct bench_driver_opts *opts);
/* Make a view of the pool on which at most max_running of its jobs run at
 * once, for drv_submit_view(). Returns NULL when made, or a sentence saying
 * why the library or this build of it has none. Before any submit. */
const char *drv_view_new(unsigned max_running);
/* Make a loop, run by the calling thread. Exits the program on failure. */
struct bench_loop *drv_loop_new(void);
/* Run job->work on the pool, then job->done on the loop's thread. */
void drv_submit(struct bench_loop *loop, struct bench_job *job);
/* The same on the view made by drv_view_new(). */
void drv_submit_view(struct bench_loop *loop, struct bench_job *job);
/* Start a repeating timer on the loop: cb(arg) every period_ms. One per loop. */
void drv_timer_start(struct bench_loop *loop, unsigned period_ms, void (*cb)(void *arg),
                     void *arg);
/* Stop and release the loop's timer (from its callback or any loop callback). */
void drv_timer_stop(struct bench_loop *loop);
/* Run the loop until nothing is left to do. */
void drv_run(struct bench_loop *loop);
/* Read the library's counters for this loop and the pool. */
void drv_counters(struct bench_loop *loop, struct bench_driver_counters *out);
/* Free a loop that has nothing left to do. */
void drv_loop_free(struct bench_loop *loop);
/* Extra key=value pairs describing the driver's setup, or "". */
const char *drv_describe(void);
/* Tear the view and the pool down, once every loop is freed. */
void drv_fini(void);

/* ---- implemented by harness.c ------------------------------------------ */

/* Print a message and exit(2). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* BENCH_H */
