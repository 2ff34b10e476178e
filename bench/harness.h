/*
 * harness.h -- what the workloads (bench/w*.c) share with the harness
 * (bench/harness.c): the options, the main loop, the measured phase, jobs,
 * clocks and percentiles, and the description of a workload. The harness
 * owns main(): it parses the options, makes the pool and the main loop, runs
 * the warm-up, hands over to the workload and prints the line. A workload
 * only measures: it never judges.
 */
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include "bench.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

/* The command line. Defaults that depend on the workload come from its
 * struct bench_workload. */
struct bench_options {
    uint64_t n;
    unsigned pool;
    uint64_t window;
    uint64_t iters;        /* W3 hash chain length */
    unsigned period_ms;    /* W3, W5 timer period; W7 time between short tasks */
    unsigned idle_ms;      /* W3 time the timer runs alone */
    unsigned sleep_us;     /* W4 per-task sleep; W7 long-task sleep */
    unsigned loops;        /* W6 loops (and threads) */
    unsigned duration_ms;  /* W7 time long tasks keep being submitted */
    unsigned in_flight;    /* W7 long tasks kept submitted */
    unsigned view;         /* W7: long tasks on a view of this max_running; 0 = none */
    struct bench_driver_opts drv;
};
extern struct bench_options opt;

/* The loop of the main thread: the warm-up and every workload but W6. */
extern struct bench_loop *main_loop;

/* The measured phase: its clock, its rusage, the library's counters (of the
 * main loop unless the workload fills them in) and, when alloc_count.so is
 * preloaded, the allocations and write(2) calls made during it. */
struct bench_phase {
    bool begun, ended;
    uint64_t t0, t1;
    struct rusage ru0, ru1;
    struct bench_driver_counters c0, c1;
    uint64_t tasks;                 /* tasks the per-task figures divide by */
    uint64_t harness_allocs;        /* jobs the harness allocated in the phase */
    bool count_until_idle;          /* W8: the counts cover the drain to the idle loop */
    uint64_t allocs, frees, writes; /* from the shim, if preloaded */
};
extern struct bench_phase phase;

void phase_begin(void);
void phase_end(void);
double phase_wall_s(void);
double phase_cpu_s(void);
/* True when alloc_count.so is preloaded; bench_count_start() then starts
 * counting (W8 counts from before its phase, phase.count_until_idle). */
bool bench_counting_available(void);
void bench_count_start(void);

/* A job, malloc'ed; the done callback frees it. Workloads count their own
 * jobs (W6 makes them on several threads at once). */
struct bench_job *job_new(bench_work_fn work, bench_done_fn done, uint64_t arg, void *ctx);
void *xcalloc(size_t n, size_t size);
uint64_t now_ns(void);
/* EVENT_PRECISE_TIMER as the line shows it ("1" or "unset"). */
const char *precise_timer(void);

/* Nearest rank: the index of the smallest of n sorted samples with at
 * least pct% of the samples <= it. */
uint64_t rank_index(uint64_t n, unsigned pct);
int cmp_u64(const void *a, const void *b);
int cmp_i64(const void *a, const void *b);

/* One workload, as the harness drives it. */
struct bench_workload {
    const char *name;            /* as --workload= takes it: "w1" ... */
    const char *alias;           /* another name, or NULL */
    uint64_t default_n;          /* 0: no --n; the line's n is set by the workload */
    unsigned default_pool;
    uint64_t default_window;     /* 0: 1024 */
    unsigned default_period_ms;  /* 0: 1 */
    unsigned default_sleep_us;   /* 0: 10000 */
    bool precise_timer;          /* measures a 1 ms timer: EVENT_PRECISE_TIMER=1 */
    void (*prepare)(void);       /* before the pool exists (W3's serial baseline), or NULL */
    void (*start)(void);         /* from the last warm-up completion, main loop; or NULL */
    void (*after_warm_up)(void); /* once the main loop is idle again (W6), or NULL */
    void (*report)(void);        /* prints its own keys of the line */
};

extern const struct bench_workload bench_w1, bench_w2, bench_w3, bench_w4, bench_w5, bench_w6,
    bench_w7, bench_w8;

/* The W1 engine, also run by W5 (with a timer beside it) and by each loop
 * of W6: keep `window` tasks in flight on one loop until n are done. */
struct w1_run {
    struct bench_loop *loop;
    uint64_t n, window, submitted, completed;
    uint64_t t_first_ns, t_last_ns;
    void (*finished)(struct w1_run *run); /* after the n-th completion */
};
/* Submit the first min(n, window); t_first_ns is taken just before. */
void w1_begin(struct w1_run *run);

#endif /* BENCH_HARNESS_H */
