/*
 * workloads.c -- the benchmark workloads W1-W8 (bench/README.md defines
 * them), written once against the driver interface of bench.h and linked
 * into one program per library (bench_evexec, bench_uv). It measures; it
 * never judges.
 *
 * Every run: [W3: the work serially, for the baseline] -> a pool of exactly
 * --pool workers and the main loop -> warm-up (--pool tasks meet at a
 * barrier of --pool parties, so every worker exists and has run once) -> the
 * workload starts from the last warm-up completion callback, on the main
 * loop's thread with the loop running (W6 instead starts its own loops in
 * their own threads once the main loop is idle). Each task is one malloc'ed
 * struct bench_job, freed in its completion callback. Clocks are
 * CLOCK_MONOTONIC; CPU time and context switches come from
 * getrusage(RUSAGE_SELF) (all threads) over the measured phase.
 *
 * Output: one line per run, "bench key=value key=value ...", documented in
 * bench/README.md. When bench/alloc_count.so is preloaded, the allocations
 * made during the measured phase are reported too, the harness's own one
 * per job subtracted, and so are the write(2) calls of every thread (the
 * harness makes none during the phase: they are the libraries' wakeups).
 */
#define _GNU_SOURCE 1
#include "bench.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Provided by bench/alloc_count.so when it is preloaded; NULL otherwise. */
extern void bench_count_on(int on) __attribute__((weak));
extern void bench_count_read(uint64_t *allocs, uint64_t *frees, uint64_t *writes)
    __attribute__((weak));

enum workload { W1 = 1, W2, W3, W4, W5, W6, W7, W8 };
#define WORKLOADS 8

static struct {
    enum workload workload;
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
} opt;

/* The loop of the main thread: the warm-up and every workload but W6. */
static struct bench_loop *main_loop;

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_%s: ", drv_name());
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        bench_die("out of memory");
    return p;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the index of the smallest value with at least pct% of the
 * n sorted samples <= it. */
static uint64_t rank_index(uint64_t n, unsigned pct)
{
    uint64_t rank = (pct * n + 99) / 100;
    return rank < 1 ? 0 : rank - 1;
}

static uint64_t nearest_rank(const uint64_t *sorted, uint64_t n, unsigned pct)
{
    return sorted[rank_index(n, pct)];
}

/* ---- the measured phase ------------------------------------------------- */

static struct {
    bool begun, ended;
    uint64_t t0, t1;
    struct rusage ru0, ru1;
    struct bench_driver_counters c0, c1;
    uint64_t tasks;                 /* tasks the per-task figures divide by */
    uint64_t harness_allocs;        /* jobs the harness allocated in the phase */
    bool count_until_idle;          /* W8: the counts cover the drain to the end */
    uint64_t allocs, frees, writes; /* from the shim, if preloaded */
} phase;

static void count_stop(void)
{
    if (bench_count_on) {
        bench_count_on(0);
        bench_count_read(&phase.allocs, &phase.frees, &phase.writes);
    }
}

static void phase_begin(void)
{
    drv_counters(main_loop, &phase.c0);
    getrusage(RUSAGE_SELF, &phase.ru0);
    if (bench_count_on && !phase.count_until_idle)
        bench_count_on(1);
    phase.begun = true;
    phase.t0 = now_ns();
}

static void phase_end(void)
{
    phase.t1 = now_ns();
    if (!phase.count_until_idle)
        count_stop();
    getrusage(RUSAGE_SELF, &phase.ru1);
    drv_counters(main_loop, &phase.c1);
    phase.ended = true;
}

static double phase_wall_s(void)
{
    return (double)(phase.t1 - phase.t0) / 1e9;
}

static double phase_cpu_s(void)
{
    return tv_s(phase.ru1.ru_utime) - tv_s(phase.ru0.ru_utime) +
           tv_s(phase.ru1.ru_stime) - tv_s(phase.ru0.ru_stime);
}

/* Jobs are counted by the workloads that make them (W6 makes them on eight
 * threads at once), not here. */
static struct bench_job *job_new(bench_work_fn work, bench_done_fn done, uint64_t arg, void *ctx)
{
    struct bench_job *job = malloc(sizeof(*job));
    if (!job)
        bench_die("out of memory");
    job->work = work;
    job->done = done;
    job->result = NULL;
    job->arg = arg;
    job->ctx = ctx;
    return job;
}

/* ---- W1 throughput (also the flood of W5 and each loop of W6) ------------ */

/* One loop's share of a W1 run. */
struct w1_run {
    struct bench_loop *loop;
    uint64_t n, window, submitted, completed;
    uint64_t t_first_ns, t_last_ns;
    void (*finished)(struct w1_run *run); /* after the n-th completion */
};

static struct w1_run w1;

static void *w1_work(struct bench_job *job)
{
    return job; /* the work function returns its argument */
}

static void w1_done(struct bench_job *job);

static void w1_submit_one(struct w1_run *run)
{
    run->submitted++;
    drv_submit(run->loop, job_new(w1_work, w1_done, 0, run));
}

static void w1_done(struct bench_job *job)
{
    struct w1_run *run = job->ctx;
    if (job->result != job)
        bench_die("w1: wrong result");
    free(job);
    if (++run->completed == run->n) {
        run->t_last_ns = now_ns();
        run->finished(run);
        return;
    }
    if (run->submitted < run->n)
        w1_submit_one(run);
}

static void w1_begin(struct w1_run *run)
{
    uint64_t first = run->n < run->window ? run->n : run->window;
    run->t_first_ns = now_ns();
    for (uint64_t i = 0; i < first; i++)
        w1_submit_one(run);
}

static void w1_finished(struct w1_run *run)
{
    (void)run;
    phase_end();
}

static void w1_start(void)
{
    w1 = (struct w1_run){.loop = main_loop, .n = opt.n, .window = opt.window,
                         .finished = w1_finished};
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w1_begin(&w1);
}

/* ---- W2 latency --------------------------------------------------------- */

static uint64_t *w2_rtt_ns;
static uint64_t w2_count;
static uint64_t w2_sent_ns;

static void *w2_work(struct bench_job *job)
{
    (void)job;
    return NULL; /* a no-op */
}

static void w2_done(struct bench_job *job);

static void w2_submit(void)
{
    struct bench_job *job = job_new(w2_work, w2_done, 0, NULL);
    w2_sent_ns = now_ns();
    drv_submit(main_loop, job);
}

static void w2_done(struct bench_job *job)
{
    uint64_t t = now_ns(); /* the first statement of the completion callback */
    w2_rtt_ns[w2_count] = t - w2_sent_ns;
    free(job);
    if (++w2_count == opt.n) {
        phase_end();
        return;
    }
    w2_submit();
}

static void w2_start(void)
{
    w2_rtt_ns = xcalloc(opt.n, sizeof(*w2_rtt_ns));
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w2_submit();
}

/* ---- W3 CPU-bound work and loop responsiveness --------------------------- */

static uint64_t w3_hash(uint64_t seed, uint64_t iters)
{
    uint64_t x = seed;
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 29;
        x += i;
    }
    return x;
}

static double w3_serial_s;
static uint64_t w3_serial_sum, w3_sum, w3_completed;
static uint64_t w3_timer_start_ns, w3_prev_tick_ns;
static bool w3_busy, w3_submitted;
static int64_t w3_late_idle_max = INT64_MIN, w3_late_busy_max = INT64_MIN;
static int64_t w3_late_busy_total;
static uint64_t w3_idle_ticks, w3_busy_ticks;

static void *w3_work(struct bench_job *job)
{
    return (void *)(uintptr_t)w3_hash(job->arg + 1, opt.iters);
}

static void w3_serial(void)
{
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < opt.n; i++)
        w3_serial_sum ^= w3_hash(i + 1, opt.iters);
    w3_serial_s = (double)(now_ns() - t0) / 1e9;
}

static void w3_done(struct bench_job *job)
{
    w3_sum ^= (uint64_t)(uintptr_t)job->result;
    free(job);
    if (++w3_completed == opt.n) {
        phase_end();
        w3_busy = false;
        drv_timer_stop(main_loop);
    }
}

static void w3_tick(void *arg)
{
    (void)arg;
    uint64_t t = now_ns();
    int64_t late = (int64_t)(t - w3_prev_tick_ns) - (int64_t)opt.period_ms * 1000000;
    w3_prev_tick_ns = t;
    if (w3_busy) {
        w3_busy_ticks++;
        w3_late_busy_total += late;
        if (late > w3_late_busy_max)
            w3_late_busy_max = late;
    } else if (!w3_submitted) {
        w3_idle_ticks++;
        if (late > w3_late_idle_max)
            w3_late_idle_max = late;
        if (t - w3_timer_start_ns >= (uint64_t)opt.idle_ms * 1000000u) {
            /* The timer ran alone long enough: now submit everything. */
            w3_submitted = true;
            w3_busy = true;
            phase.tasks = phase.harness_allocs = opt.n;
            phase_begin();
            for (uint64_t i = 0; i < opt.n; i++)
                drv_submit(main_loop, job_new(w3_work, w3_done, i, NULL));
        }
    }
}

static void w3_start(void)
{
    w3_timer_start_ns = w3_prev_tick_ns = now_ns();
    drv_timer_start(main_loop, opt.period_ms, w3_tick, NULL);
}

/* ---- W4 blocking work ------------------------------------------------------ */

static uint64_t w4_completed;

static void *w4_work(struct bench_job *job)
{
    usleep(opt.sleep_us);
    return job;
}

static void w4_done(struct bench_job *job)
{
    free(job);
    if (++w4_completed == opt.n)
        phase_end();
}

static void w4_start(void)
{
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    for (uint64_t i = 0; i < opt.n; i++)
        drv_submit(main_loop, job_new(w4_work, w4_done, i, NULL));
}

/* ---- W5 timers under a completion flood ---------------------------------- */

/* The flood is W1; a repeating timer on the same loop records how late each
 * tick is. Room for a minute of 1 ms ticks, allocated before the phase. */
#define W5_MAX_TICKS 65536
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
    w1 = (struct w1_run){.loop = main_loop, .n = opt.n, .window = opt.window,
                         .finished = w5_finished};
    phase.tasks = phase.harness_allocs = opt.n;
    phase_begin();
    w5_prev_tick_ns = now_ns();
    drv_timer_start(main_loop, opt.period_ms, w5_tick, NULL);
    w1_begin(&w1);
}

/* ---- W6 many loops on one pool -------------------------------------------- */

struct w6_thread {
    pthread_t tid;
    struct w1_run run;
    struct bench_driver_counters c0, c1;
};

static struct w6_thread *w6_threads;
/* Every loop made -> the main thread starts the clock -> every loop starts. */
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

/* Called once the main loop is idle after the warm-up. */
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
    /* The clock runs from the first submit of any loop to the last
     * completion of any loop; the loops' counters add up. */
    uint64_t first = UINT64_MAX, last = 0, writes = 0, drains = 0;
    for (unsigned i = 0; i < opt.loops; i++) {
        struct w6_thread *t = &w6_threads[i];
        if (t->run.t_first_ns < first)
            first = t->run.t_first_ns;
        if (t->run.t_last_ns > last)
            last = t->run.t_last_ns;
        writes += t->c1.wakeup_writes - t->c0.wakeup_writes;
        drains += t->c1.drains - t->c0.drains;
    }
    phase.t0 = first;
    phase.t1 = last;
    phase.c0.wakeup_writes = phase.c0.drains = 0;
    phase.c1.has_wakeup_writes = w6_threads[0].c1.has_wakeup_writes;
    phase.c1.wakeup_writes = writes;
    phase.c1.drains = drains;
    pthread_barrier_destroy(&w6_ready);
    pthread_barrier_destroy(&w6_go);
    free(w6_threads);
}

/* ---- W7 head of line ----------------------------------------------------- */

static uint64_t w7_t0_ns;
static uint64_t w7_long_submitted, w7_long_done, w7_short_submitted, w7_short_done;
static uint64_t *w7_rtt_ns;
static uint64_t w7_rtt_cap;
static bool w7_stopped;

static void *w7_long_work(struct bench_job *job)
{
    usleep(opt.sleep_us);
    return job;
}

static void *w7_short_work(struct bench_job *job)
{
    (void)job;
    return NULL; /* a no-op */
}

static void w7_maybe_end(void)
{
    if (w7_stopped && w7_long_done == w7_long_submitted && w7_short_done == w7_short_submitted) {
        phase.tasks = phase.harness_allocs = w7_long_submitted + w7_short_submitted;
        phase_end();
    }
}

static void w7_long_done_cb(struct bench_job *job);

static void w7_submit_long(void)
{
    struct bench_job *job = job_new(w7_long_work, w7_long_done_cb, 0, NULL);
    w7_long_submitted++;
    if (opt.view)
        drv_submit_view(main_loop, job);
    else
        drv_submit(main_loop, job);
}

static void w7_long_done_cb(struct bench_job *job)
{
    free(job);
    w7_long_done++;
    if (!w7_stopped)
        w7_submit_long(); /* keep opt.in_flight long tasks submitted */
    else
        w7_maybe_end();
}

static void w7_short_done_cb(struct bench_job *job)
{
    uint64_t t = now_ns(); /* the first statement of the completion callback */
    if (w7_short_done < w7_rtt_cap)
        w7_rtt_ns[w7_short_done] = t - job->arg;
    free(job);
    w7_short_done++;
    w7_maybe_end();
}

static void w7_tick(void *arg)
{
    (void)arg;
    if (now_ns() - w7_t0_ns >= (uint64_t)opt.duration_ms * 1000000u) {
        w7_stopped = true;
        drv_timer_stop(main_loop);
        w7_maybe_end();
        return;
    }
    struct bench_job *job = job_new(w7_short_work, w7_short_done_cb, 0, NULL);
    w7_short_submitted++;
    job->arg = now_ns();
    drv_submit(main_loop, job);
}

static void w7_start(void)
{
    w7_rtt_cap = opt.duration_ms / opt.period_ms + 16;
    w7_rtt_ns = xcalloc(w7_rtt_cap, sizeof(*w7_rtt_ns));
    phase_begin();
    w7_t0_ns = phase.t0;
    for (unsigned i = 0; i < opt.in_flight; i++)
        w7_submit_long();
    drv_timer_start(main_loop, opt.period_ms, w7_tick, NULL);
}

/* ---- W8 memory at scale --------------------------------------------------- */

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
    if (bench_count_on)
        bench_count_on(1);
    for (unsigned i = 0; i < opt.pool; i++) {
        drv_submit(main_loop, job_new(w8_block_work, w8_done, i, NULL));
        w8_jobs_made++;
    }
    drv_timer_start(main_loop, 1, w8_tick, NULL);
}

/* ---- warm-up -------------------------------------------------------------- */

static pthread_barrier_t warm_barrier;
static unsigned warm_completed;

static void *warm_work(struct bench_job *job)
{
    pthread_barrier_wait(&warm_barrier);
    return job;
}

static void warm_done(struct bench_job *job)
{
    free(job);
    if (++warm_completed < opt.pool)
        return;
    /* Every worker exists and has run once: start the workload. */
    switch (opt.workload) {
    case W1: w1_start(); break;
    case W2: w2_start(); break;
    case W3: w3_start(); break;
    case W4: w4_start(); break;
    case W5: w5_start(); break;
    case W6: break; /* once the main loop is idle: w6_run() */
    case W7: w7_start(); break;
    case W8: w8_start(); break;
    }
}

/* ---- report ----------------------------------------------------------------- */

static unsigned cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    return (unsigned)CPU_COUNT(&set);
}

static const char *workload_name(enum workload w)
{
    static const char *names[] = {"", "w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"};
    return names[w];
}

static const char *precise_timer(void)
{
    const char *precise = getenv("EVENT_PRECISE_TIMER");
    return precise ? precise : "unset";
}

static void report_w5(void)
{
    uint64_t kept = w5_ticks < W5_MAX_TICKS ? w5_ticks : W5_MAX_TICKS;
    double p50 = 0, p99 = 0, max = 0, mean = 0;
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
           " ticks_expected=%.0f late_p50_ms=%.3f late_p99_ms=%.3f late_max_ms=%.3f"
           " late_mean_ms=%.3f precise_timer=%s",
           opt.window, (double)opt.n / phase_wall_s(), opt.period_ms, w5_ticks,
           phase_wall_s() * 1e3 / opt.period_ms, p50, p99, max, mean, precise_timer());
    free(w5_late_ns);
}

static void report_w7(void)
{
    uint64_t kept = w7_short_done < w7_rtt_cap ? w7_short_done : w7_rtt_cap;
    double p50 = 0, p99 = 0, max = 0;
    if (kept) {
        qsort(w7_rtt_ns, kept, sizeof(*w7_rtt_ns), cmp_u64);
        p50 = (double)nearest_rank(w7_rtt_ns, kept, 50) / 1e6;
        p99 = (double)nearest_rank(w7_rtt_ns, kept, 99) / 1e6;
        max = (double)w7_rtt_ns[kept - 1] / 1e6;
    }
    printf(" view=%u duration_ms=%u period_ms=%u sleep_us=%u in_flight=%u short_tasks=%" PRIu64
           " long_tasks=%" PRIu64 " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f",
           opt.view, opt.duration_ms, opt.period_ms, opt.sleep_us, opt.in_flight, w7_short_done,
           w7_long_done, p50, p99, max);
    free(w7_rtt_ns);
}

static void report_w8(void)
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
    if (bench_count_on) {
        /* Allocations from before the blockers that are still held once
         * the loop is idle: whatever a library caches for reuse (freed when
         * it is torn down). Per-task memory left behind would show here as a
         * figure near n. */
        printf(" kept_allocs=%" PRId64, (int64_t)(phase.allocs - phase.frees));
    }
    printf(" check=%s", !w8_wrong_results && !jobs_unfreed ? "ok" : "MISMATCH");
}

static void report(void)
{
    struct rusage now;
    getrusage(RUSAGE_SELF, &now);
    double wall = phase_wall_s(), cpu = phase_cpu_s();
    double n = (double)phase.tasks;
    printf("bench lib=%s workload=%s n=%" PRIu64 " pool=%u cpus=%u%s",
           drv_name(), workload_name(opt.workload), opt.workload == W7 ? w7_short_done : opt.n,
           opt.pool, cpus_allowed(), drv_describe());
    switch (opt.workload) {
    case W1:
        printf(" window=%" PRIu64 " tasks_per_s=%.0f", opt.window, n / wall);
        break;
    case W2: {
        qsort(w2_rtt_ns, opt.n, sizeof(*w2_rtt_ns), cmp_u64);
        double sum = 0;
        for (uint64_t i = 0; i < opt.n; i++)
            sum += (double)w2_rtt_ns[i];
        printf(" mean_us=%.2f p50_us=%.2f p99_us=%.2f max_us=%.2f min_us=%.2f",
               sum / n / 1e3, (double)nearest_rank(w2_rtt_ns, opt.n, 50) / 1e3,
               (double)nearest_rank(w2_rtt_ns, opt.n, 99) / 1e3,
               (double)w2_rtt_ns[opt.n - 1] / 1e3, (double)w2_rtt_ns[0] / 1e3);
        free(w2_rtt_ns);
        break;
    }
    case W3:
        printf(" iters=%" PRIu64 " serial_s=%.4f speedup=%.3f parallelism=%.3f"
               " late_busy_max_ms=%.3f late_busy_mean_ms=%.3f late_idle_max_ms=%.3f"
               " busy_ticks=%" PRIu64 " idle_ticks=%" PRIu64 " precise_timer=%s check=%s",
               opt.iters, w3_serial_s, w3_serial_s / wall, cpu / wall,
               w3_busy_ticks ? (double)w3_late_busy_max / 1e6 : 0.0,
               w3_busy_ticks ? (double)w3_late_busy_total / (double)w3_busy_ticks / 1e6 : 0.0,
               w3_idle_ticks ? (double)w3_late_idle_max / 1e6 : 0.0,
               w3_busy_ticks, w3_idle_ticks, precise_timer(),
               w3_sum == w3_serial_sum ? "ok" : "MISMATCH");
        break;
    case W4: {
        double ideal = (double)((opt.n + opt.pool - 1) / opt.pool) * opt.sleep_us / 1e6;
        printf(" sleep_us=%u ideal_s=%.4f wall_over_ideal=%.4f", opt.sleep_us, ideal,
               wall / ideal);
        break;
    }
    case W5: report_w5(); break;
    case W6:
        printf(" loops=%u window=%" PRIu64 " tasks=%" PRIu64 " tasks_per_s=%.0f", opt.loops,
               opt.window, phase.tasks, n / wall);
        break;
    case W7: report_w7(); break;
    case W8: report_w8(); break;
    }
    printf(" wall_s=%.6f cpu_s=%.4f cpu_us_per_task=%.3f vcsw=%ld ivcsw=%ld maxrss_kb=%ld",
           wall, cpu, cpu / n * 1e6, phase.ru1.ru_nvcsw - phase.ru0.ru_nvcsw,
           phase.ru1.ru_nivcsw - phase.ru0.ru_nivcsw, now.ru_maxrss);
    if (phase.c1.workers)
        printf(" workers=%u", phase.c1.workers);
    if (phase.c1.has_wakeup_writes) {
        uint64_t writes = phase.c1.wakeup_writes - phase.c0.wakeup_writes;
        printf(" wakeup_writes=%" PRIu64 " wakeups_per_task=%.5f drains=%" PRIu64, writes,
               (double)writes / n, phase.c1.drains - phase.c0.drains);
    }
    if (bench_count_on) {
        /* The harness's own malloc per job and its free are not the library's. */
        uint64_t lib_allocs = phase.allocs - phase.harness_allocs;
        printf(" allocs=%" PRIu64 " harness_allocs=%" PRIu64 " allocs_per_task=%.4f"
               " writes=%" PRIu64 " writes_per_task=%.5f",
               phase.allocs, phase.harness_allocs, (double)lib_allocs / n, phase.writes,
               (double)phase.writes / n);
    }
    putchar('\n');
    fflush(stdout);
}

/* The line of a W7 run asked for a view the library does not have. */
static void report_no_view(const char *why)
{
    printf("bench lib=%s workload=w7 n=0 pool=%u cpus=%u%s view=unavailable\n", drv_name(),
           opt.pool, cpus_allowed(), drv_describe());
    fflush(stdout);
    fprintf(stderr, "bench_%s: w7 --view: %s\n", drv_name(), why);
}

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: bench_%s --workload=w1|...|w8 [options]   (w5 is also called flood)\n"
        "  --n=N            tasks (defaults: w1 200000, w2 20000, w3 64, w4 256, w5 1000000,\n"
        "                   w6 50000 per loop, w8 1000000; w7 has none)\n"
        "  --pool=N         workers (defaults: w4 16, the others 2)\n"
        "  --window=N       w1, w5, w6: tasks in flight per loop (1024; w6 256)\n"
        "  --iters=N        w3: hash iterations per task (9000000)\n"
        "  --period-ms=N    w3, w5: timer period (1); w7: time between short tasks (10)\n"
        "  --idle-ms=N      w3: time the timer runs alone before the submit (200)\n"
        "  --sleep-us=N     w4: per-task sleep (10000); w7: long-task sleep (50000)\n"
        "  --loops=N        w6: loops, each in its own thread (8)\n"
        "  --duration-ms=N  w7: how long long tasks keep being submitted (2000)\n"
        "  --in-flight=N    w7: long tasks kept submitted (8)\n"
        "  --view=N         w7: long tasks on a view of the pool running N at most\n"
        "  libevexec pool tuning (ignored by other libraries):\n"
        "  --spin-us=N  --no-spin  --nice=N  --keep-priority  --sched-idle\n"
        "Prints one line: bench key=value ... (see bench/README.md).\n",
        drv_name());
}

static uint64_t parse_u64(const char *name, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        bench_die("--%s: not a number: %s", name, s);
    return v;
}

static unsigned parse_unsigned(const char *name, const char *s)
{
    uint64_t v = parse_u64(name, s);
    if (v > 0xffffffffu)
        bench_die("--%s: too large: %s", name, s);
    return (unsigned)v;
}

static enum workload parse_workload(const char *s)
{
    if (strcmp(s, "flood") == 0)
        return W5;
    if (strlen(s) == 2 && (s[0] == 'w' || s[0] == 'W') && s[1] >= '1' && s[1] <= '0' + WORKLOADS)
        return (enum workload)(s[1] - '0');
    bench_die("--workload: w1 to w%d (or flood), not %s", WORKLOADS, s);
}

static void parse_options(int argc, char **argv)
{
    enum { O_WORKLOAD = 1, O_N, O_POOL, O_WINDOW, O_ITERS, O_PERIOD, O_IDLE, O_SLEEP,
           O_LOOPS, O_DURATION, O_INFLIGHT, O_VIEW,
           O_SPIN, O_NOSPIN, O_NICE, O_KEEPPRIO, O_SCHEDIDLE, O_HELP };
    static const struct option longopts[] = {
        {"workload", required_argument, NULL, O_WORKLOAD},
        {"n", required_argument, NULL, O_N},
        {"pool", required_argument, NULL, O_POOL},
        {"window", required_argument, NULL, O_WINDOW},
        {"iters", required_argument, NULL, O_ITERS},
        {"period-ms", required_argument, NULL, O_PERIOD},
        {"idle-ms", required_argument, NULL, O_IDLE},
        {"sleep-us", required_argument, NULL, O_SLEEP},
        {"loops", required_argument, NULL, O_LOOPS},
        {"duration-ms", required_argument, NULL, O_DURATION},
        {"in-flight", required_argument, NULL, O_INFLIGHT},
        {"view", required_argument, NULL, O_VIEW},
        {"spin-us", required_argument, NULL, O_SPIN},
        {"no-spin", no_argument, NULL, O_NOSPIN},
        {"nice", required_argument, NULL, O_NICE},
        {"keep-priority", no_argument, NULL, O_KEEPPRIO},
        {"sched-idle", no_argument, NULL, O_SCHEDIDLE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t n = 0, window = 0;
    unsigned pool = 0, period = 0, sleep_us = 0;
    opt.iters = 9000000;
    opt.idle_ms = 200;
    opt.loops = 8;
    opt.duration_ms = 2000;
    opt.in_flight = 8;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_WORKLOAD: opt.workload = parse_workload(optarg); break;
        case O_N: n = parse_u64("n", optarg); break;
        case O_POOL: pool = parse_unsigned("pool", optarg); break;
        case O_WINDOW: window = parse_u64("window", optarg); break;
        case O_ITERS: opt.iters = parse_u64("iters", optarg); break;
        case O_PERIOD: period = parse_unsigned("period-ms", optarg); break;
        case O_IDLE: opt.idle_ms = parse_unsigned("idle-ms", optarg); break;
        case O_SLEEP: sleep_us = parse_unsigned("sleep-us", optarg); break;
        case O_LOOPS: opt.loops = parse_unsigned("loops", optarg); break;
        case O_DURATION: opt.duration_ms = parse_unsigned("duration-ms", optarg); break;
        case O_INFLIGHT: opt.in_flight = parse_unsigned("in-flight", optarg); break;
        case O_VIEW: opt.view = parse_unsigned("view", optarg); break;
        case O_SPIN: opt.drv.spin_us = parse_unsigned("spin-us", optarg); break;
        case O_NOSPIN: opt.drv.no_spin = true; break;
        case O_NICE: opt.drv.worker_nice = atoi(optarg); break;
        case O_KEEPPRIO: opt.drv.keep_priority = true; break;
        case O_SCHEDIDLE: opt.drv.sched_idle = true; break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc || !opt.workload) {
        usage(stderr);
        exit(2);
    }
    static const uint64_t default_n[] = {0, 200000, 20000, 64, 256, 1000000, 50000, 0, 1000000};
    enum workload w = opt.workload;
    opt.n = n ? n : default_n[w];
    opt.pool = pool ? pool : w == W4 ? 16 : 2;
    opt.window = window ? window : w == W6 ? 256 : 1024;
    opt.period_ms = period ? period : w == W7 ? 10 : 1;
    opt.sleep_us = sleep_us ? sleep_us : w == W7 ? 50000 : 10000;
    if (opt.pool > 1024 || !opt.window || !opt.period_ms)
        bench_die("--pool must be 1..1024; --window and --period-ms above 0");
    if (w != W7 && !opt.n)
        bench_die("--n must be above 0");
    if (w == W6 && (!opt.loops || opt.loops > 1024))
        bench_die("--loops must be 1..1024");
    if (w == W7 && (!opt.in_flight || !opt.duration_ms))
        bench_die("--in-flight and --duration-ms must be above 0");
    if (opt.view && w != W7)
        bench_die("--view is for w7");
    opt.drv.pool = opt.pool;
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    if (opt.workload == W3 || opt.workload == W5) {
        /* libevent's default monotonic clock is coarse (4 ms here). */
        setenv("EVENT_PRECISE_TIMER", "1", 0);
    }
    if (opt.workload == W3)
        w3_serial();
    drv_init(&opt.drv);
    if (opt.view) {
        const char *why = drv_view_new(opt.view);
        if (why) {
            report_no_view(why);
            drv_fini();
            return 0;
        }
    }
    main_loop = drv_loop_new();
    int err = pthread_barrier_init(&warm_barrier, NULL, opt.pool);
    if (err)
        bench_die("pthread_barrier_init: %s", strerror(err));
    for (unsigned i = 0; i < opt.pool; i++)
        drv_submit(main_loop, job_new(warm_work, warm_done, i, NULL));
    drv_run(main_loop);
    if (opt.workload == W6)
        w6_run();
    if (phase.count_until_idle)
        count_stop();
    if (!phase.ended)
        bench_die("the loop returned before the workload finished");
    report();
    drv_loop_free(main_loop);
    drv_fini();
    pthread_barrier_destroy(&warm_barrier);
    return 0;
}
