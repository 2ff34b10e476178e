/*
 * harness.c -- main() of both bench programs (bench_evexec, bench_uv): the
 * options, the pool and the main loop, the warm-up, the measured phase and
 * the output line. The workloads themselves are in bench/w*.c, written once
 * against the driver interface of bench.h; bench/README.md defines them.
 *
 * Every run: [prepare: W3 runs its work serially, for the baseline] -> a
 * pool of exactly --pool workers and the main loop -> warm-up (--pool tasks
 * meet at a barrier of --pool parties, so every worker exists and has run
 * once) -> the workload starts from the last warm-up completion callback, on
 * the main loop's thread with the loop running (W6 instead starts its own
 * loops in their own threads once the main loop is idle). Each task is one
 * malloc'ed struct bench_job, freed in its completion callback. Clocks are
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
#include "harness.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Provided by bench/alloc_count.so when it is preloaded; NULL otherwise. */
extern void bench_count_on(int on) __attribute__((weak));
extern void bench_count_read(uint64_t *allocs, uint64_t *frees, uint64_t *writes)
    __attribute__((weak));

static const struct bench_workload *const workloads[] = {
    &bench_w1, &bench_w2, &bench_w3, &bench_w4, &bench_w5, &bench_w6, &bench_w7, &bench_w8,
};
#define N_WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

struct bench_options opt;
struct bench_loop *main_loop;
struct bench_phase phase;
static const struct bench_workload *workload;

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

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p)
        bench_die("out of memory");
    return p;
}

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

uint64_t rank_index(uint64_t n, unsigned pct)
{
    uint64_t rank = (pct * n + 99) / 100;
    return rank < 1 ? 0 : rank - 1;
}

const char *precise_timer(void)
{
    const char *precise = getenv("EVENT_PRECISE_TIMER");
    return precise ? precise : "unset";
}

struct bench_job *job_new(bench_work_fn work, bench_done_fn done, uint64_t arg, void *ctx)
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

/* ---- the measured phase ------------------------------------------------- */

bool bench_counting_available(void)
{
    return bench_count_on != NULL;
}

void bench_count_start(void)
{
    if (bench_count_on)
        bench_count_on(1);
}

static void count_stop(void)
{
    if (bench_count_on) {
        bench_count_on(0);
        bench_count_read(&phase.allocs, &phase.frees, &phase.writes);
    }
}

void phase_begin(void)
{
    drv_counters(main_loop, &phase.c0);
    getrusage(RUSAGE_SELF, &phase.ru0);
    if (!phase.count_until_idle)
        bench_count_start();
    phase.begun = true;
    phase.t0 = now_ns();
}

void phase_end(void)
{
    phase.t1 = now_ns();
    if (!phase.count_until_idle)
        count_stop();
    getrusage(RUSAGE_SELF, &phase.ru1);
    drv_counters(main_loop, &phase.c1);
    phase.ended = true;
}

double phase_wall_s(void)
{
    return (double)(phase.t1 - phase.t0) / 1e9;
}

double phase_cpu_s(void)
{
    return tv_s(phase.ru1.ru_utime) - tv_s(phase.ru0.ru_utime) +
           tv_s(phase.ru1.ru_stime) - tv_s(phase.ru0.ru_stime);
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
    /* Every worker exists and has run once: start the workload. */
    if (++warm_completed == opt.pool && workload->start)
        workload->start();
}

/* ---- report ----------------------------------------------------------------- */

static unsigned cpus_allowed(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    return (unsigned)CPU_COUNT(&set);
}

static void report(void)
{
    struct rusage now;
    getrusage(RUSAGE_SELF, &now);
    double wall = phase_wall_s(), cpu = phase_cpu_s();
    double n = (double)phase.tasks;
    printf("bench lib=%s workload=%s n=%" PRIu64 " pool=%u cpus=%u%s", drv_name(),
           workload->name, opt.n, opt.pool, cpus_allowed(), drv_describe());
    workload->report();
    printf(" wall_s=%.6f cpu_s=%.4f cpu_us_per_task=%.3f vcsw=%ld ivcsw=%ld maxrss_kb=%ld",
           wall, cpu, cpu / n * 1e6, phase.ru1.ru_nvcsw - phase.ru0.ru_nvcsw,
           phase.ru1.ru_nivcsw - phase.ru0.ru_nivcsw, now.ru_maxrss);
    if (phase.c1.workers)
        printf(" workers=%u", phase.c1.workers);
    if (phase.c1.has_wakeup_writes) {
        uint64_t writes = phase.c1.wakeup_writes - phase.c0.wakeup_writes;
        printf(" wakeup_writes=%" PRIu64 " wakeups_per_task=%.5f drains=%" PRIu64
               " passes_cut=%" PRIu64, writes, (double)writes / n,
               phase.c1.drains - phase.c0.drains, phase.c1.passes_cut - phase.c0.passes_cut);
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

/* The line of a run that asked for a view the library does not have. */
static void report_no_view(const char *why)
{
    printf("bench lib=%s workload=%s n=0 pool=%u cpus=%u%s view=unavailable\n", drv_name(),
           workload->name, opt.pool, cpus_allowed(), drv_describe());
    fflush(stdout);
    fprintf(stderr, "bench_%s: --view: %s\n", drv_name(), why);
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
        "  --submit=futures|requests  libevexec: evexec_run_in_executor + a done callback\n"
        "                   (futures, the default) or evexec_queue_work with the request\n"
        "                   inside the job (requests); ignored by other libraries\n"
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

static const struct bench_workload *find_workload(const char *s)
{
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        const struct bench_workload *w = workloads[i];
        if (strcasecmp(s, w->name) == 0 || (w->alias && strcasecmp(s, w->alias) == 0))
            return w;
    }
    bench_die("--workload: w1 to w%zu (or flood), not %s", N_WORKLOADS, s);
}

static void parse_options(int argc, char **argv)
{
    enum { O_WORKLOAD = 1, O_N, O_POOL, O_WINDOW, O_ITERS, O_PERIOD, O_IDLE, O_SLEEP,
           O_LOOPS, O_DURATION, O_INFLIGHT, O_VIEW,
           O_SPIN, O_NOSPIN, O_NICE, O_KEEPPRIO, O_SCHEDIDLE, O_SUBMIT, O_HELP };
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
        {"submit", required_argument, NULL, O_SUBMIT},
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
        case O_WORKLOAD: workload = find_workload(optarg); break;
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
        case O_SUBMIT:
            if (strcmp(optarg, "requests") == 0)
                opt.drv.requests = true;
            else if (strcmp(optarg, "futures") == 0)
                opt.drv.requests = false;
            else
                bench_die("--submit: futures or requests, not %s", optarg);
            break;
        case O_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc || !workload) {
        usage(stderr);
        exit(2);
    }
    const struct bench_workload *w = workload;
    opt.n = n ? n : w->default_n;
    opt.pool = pool ? pool : w->default_pool;
    opt.window = window ? window : w->default_window ? w->default_window : 1024;
    opt.period_ms = period ? period : w->default_period_ms ? w->default_period_ms : 1;
    opt.sleep_us = sleep_us ? sleep_us : w->default_sleep_us ? w->default_sleep_us : 10000;
    if (opt.pool > 1024)
        bench_die("--pool must be 1..1024");
    if (w->default_n && !opt.n)
        bench_die("--n must be above 0");
    if (!w->default_n && n)
        bench_die("--n: %s takes none", w->name);
    if (!opt.loops || opt.loops > 1024)
        bench_die("--loops must be 1..1024");
    if (!opt.in_flight || !opt.duration_ms)
        bench_die("--in-flight and --duration-ms must be above 0");
    if (opt.view && w != &bench_w7)
        bench_die("--view is for w7");
    opt.drv.pool = opt.pool;
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    if (workload->precise_timer) {
        /* libevent's default monotonic clock is coarse (4 ms here). */
        setenv("EVENT_PRECISE_TIMER", "1", 0);
    }
    if (workload->prepare)
        workload->prepare();
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
    if (workload->after_warm_up)
        workload->after_warm_up();
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
