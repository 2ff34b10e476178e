/*
 * workloads.c -- the benchmark workloads W1-W4 of ../shared/WORKLOADS.md,
 * written once against the driver interface of bench.h and linked into one
 * program per library (bench_evexec, bench_uv). It measures; it never judges.
 *
 * Every run: [W3: the work serially, for the baseline] -> loop and pool of
 * exactly --pool workers -> warm-up (--pool tasks meet at a barrier of --pool
 * parties, so every worker exists and has run once) -> the workload starts
 * from the last warm-up completion callback, on the loop thread with the loop
 * running. Each task is one malloc'ed struct bench_job, freed in its
 * completion callback. Clocks are CLOCK_MONOTONIC; CPU time and context
 * switches come from getrusage(RUSAGE_SELF) (all threads) over the measured
 * phase.
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

enum workload { W1 = 1, W2, W3, W4 };

static struct {
    enum workload workload;
    uint64_t n;
    unsigned pool;
    uint64_t window;
    uint64_t iters;      /* W3 hash chain length */
    unsigned period_ms;  /* W3 timer period */
    unsigned idle_ms;    /* W3 time the timer runs alone */
    unsigned sleep_us;   /* W4 per-task sleep */
    struct bench_driver_opts drv;
} opt;

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

/* ---- the measured phase ------------------------------------------------- */

static struct {
    bool begun, ended;
    uint64_t t0, t1;
    struct rusage ru0, ru1;
    struct bench_driver_counters c0, c1;
    uint64_t harness_allocs;        /* jobs allocated during the phase */
    uint64_t allocs, frees, writes; /* from the shim, if preloaded */
} phase;

static void phase_begin(void)
{
    drv_counters(&phase.c0);
    getrusage(RUSAGE_SELF, &phase.ru0);
    if (bench_count_on)
        bench_count_on(1);
    phase.begun = true;
    phase.t0 = now_ns();
}

static void phase_end(void)
{
    phase.t1 = now_ns();
    if (bench_count_on) {
        bench_count_on(0);
        bench_count_read(&phase.allocs, &phase.frees, &phase.writes);
    }
    getrusage(RUSAGE_SELF, &phase.ru1);
    drv_counters(&phase.c1);
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

static struct bench_job *job_new(bench_work_fn work, bench_done_fn done, uint64_t arg)
{
    struct bench_job *job = malloc(sizeof(*job));
    if (!job)
        bench_die("out of memory");
    job->work = work;
    job->done = done;
    job->result = NULL;
    job->arg = arg;
    if (phase.begun && !phase.ended)
        phase.harness_allocs++;
    return job;
}

/* ---- W1 throughput ------------------------------------------------------ */

static uint64_t w1_submitted, w1_completed;

static void *w1_work(struct bench_job *job)
{
    return job; /* the work function returns its argument */
}

static void w1_done(struct bench_job *job);

static void w1_submit_one(void)
{
    w1_submitted++;
    drv_submit(job_new(w1_work, w1_done, 0));
}

static void w1_done(struct bench_job *job)
{
    if (job->result != job)
        bench_die("w1: wrong result");
    free(job);
    if (++w1_completed == opt.n) {
        phase_end();
        return;
    }
    if (w1_submitted < opt.n)
        w1_submit_one();
}

static void w1_start(void)
{
    uint64_t first = opt.n < opt.window ? opt.n : opt.window;
    phase_begin();
    for (uint64_t i = 0; i < first; i++)
        w1_submit_one();
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
    struct bench_job *job = job_new(w2_work, w2_done, 0);
    w2_sent_ns = now_ns();
    drv_submit(job);
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
    w2_rtt_ns = calloc(opt.n, sizeof(*w2_rtt_ns));
    if (!w2_rtt_ns)
        bench_die("out of memory");
    phase_begin();
    w2_submit();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the smallest value with at least pct% of samples <= it. */
static uint64_t nearest_rank(const uint64_t *sorted, uint64_t n, unsigned pct)
{
    uint64_t rank = (pct * n + 99) / 100;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
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
        drv_timer_stop();
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
            phase_begin();
            for (uint64_t i = 0; i < opt.n; i++)
                drv_submit(job_new(w3_work, w3_done, i));
        }
    }
}

static void w3_start(void)
{
    w3_timer_start_ns = w3_prev_tick_ns = now_ns();
    drv_timer_start(opt.period_ms, w3_tick, NULL);
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
    phase_begin();
    for (uint64_t i = 0; i < opt.n; i++)
        drv_submit(job_new(w4_work, w4_done, i));
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

static const char *workload_name(void)
{
    static const char *names[] = {"", "w1", "w2", "w3", "w4"};
    return names[opt.workload];
}

static void report(void)
{
    struct rusage now;
    getrusage(RUSAGE_SELF, &now);
    double wall = phase_wall_s(), cpu = phase_cpu_s();
    double n = (double)opt.n;
    printf("bench lib=%s workload=%s n=%" PRIu64 " pool=%u cpus=%u%s",
           drv_name(), workload_name(), opt.n, opt.pool, cpus_allowed(), drv_describe());
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
    case W3: {
        const char *precise = getenv("EVENT_PRECISE_TIMER");
        printf(" iters=%" PRIu64 " serial_s=%.4f speedup=%.3f parallelism=%.3f"
               " late_busy_max_ms=%.3f late_busy_mean_ms=%.3f late_idle_max_ms=%.3f"
               " busy_ticks=%" PRIu64 " idle_ticks=%" PRIu64 " precise_timer=%s check=%s",
               opt.iters, w3_serial_s, w3_serial_s / wall, cpu / wall,
               w3_busy_ticks ? (double)w3_late_busy_max / 1e6 : 0.0,
               w3_busy_ticks ? (double)w3_late_busy_total / (double)w3_busy_ticks / 1e6 : 0.0,
               w3_idle_ticks ? (double)w3_late_idle_max / 1e6 : 0.0,
               w3_busy_ticks, w3_idle_ticks, precise ? precise : "unset",
               w3_sum == w3_serial_sum ? "ok" : "MISMATCH");
        break;
    }
    case W4: {
        double ideal = (double)((opt.n + opt.pool - 1) / opt.pool) * opt.sleep_us / 1e6;
        printf(" sleep_us=%u ideal_s=%.4f wall_over_ideal=%.4f", opt.sleep_us, ideal,
               wall / ideal);
        break;
    }
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

/* ---- options ---------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: bench_%s --workload=w1|w2|w3|w4 [options]\n"
        "  --n=N          tasks (defaults: w1 200000, w2 20000, w3 64, w4 256)\n"
        "  --pool=N       workers (defaults: w1-w3 2, w4 16)\n"
        "  --window=N     w1: tasks in flight (1024)\n"
        "  --iters=N      w3: hash iterations per task (9000000)\n"
        "  --period-ms=N  w3: timer period (1)\n"
        "  --idle-ms=N    w3: time the timer runs alone before the submit (200)\n"
        "  --sleep-us=N   w4: per-task sleep (10000)\n"
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

static void parse_options(int argc, char **argv)
{
    enum { O_WORKLOAD = 1, O_N, O_POOL, O_WINDOW, O_ITERS, O_PERIOD, O_IDLE, O_SLEEP,
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
        {"spin-us", required_argument, NULL, O_SPIN},
        {"no-spin", no_argument, NULL, O_NOSPIN},
        {"nice", required_argument, NULL, O_NICE},
        {"keep-priority", no_argument, NULL, O_KEEPPRIO},
        {"sched-idle", no_argument, NULL, O_SCHEDIDLE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    uint64_t n = 0, pool = 0;
    opt.window = 1024;
    opt.iters = 9000000;
    opt.period_ms = 1;
    opt.idle_ms = 200;
    opt.sleep_us = 10000;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case O_WORKLOAD:
            if (strlen(optarg) == 2 && (optarg[0] == 'w' || optarg[0] == 'W') &&
                optarg[1] >= '1' && optarg[1] <= '4')
                opt.workload = (enum workload)(optarg[1] - '0');
            else
                bench_die("--workload: w1, w2, w3 or w4, not %s", optarg);
            break;
        case O_N: n = parse_u64("n", optarg); break;
        case O_POOL: pool = parse_u64("pool", optarg); break;
        case O_WINDOW: opt.window = parse_u64("window", optarg); break;
        case O_ITERS: opt.iters = parse_u64("iters", optarg); break;
        case O_PERIOD: opt.period_ms = (unsigned)parse_u64("period-ms", optarg); break;
        case O_IDLE: opt.idle_ms = (unsigned)parse_u64("idle-ms", optarg); break;
        case O_SLEEP: opt.sleep_us = (unsigned)parse_u64("sleep-us", optarg); break;
        case O_SPIN: opt.drv.spin_us = (unsigned)parse_u64("spin-us", optarg); break;
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
    static const uint64_t default_n[] = {0, 200000, 20000, 64, 256};
    opt.n = n ? n : default_n[opt.workload];
    opt.pool = (unsigned)(pool ? pool : opt.workload == W4 ? 16 : 2);
    if (!opt.pool || opt.pool > 1024 || !opt.window || !opt.period_ms)
        bench_die("--pool must be 1..1024; --window and --period-ms above 0");
    opt.drv.pool = opt.pool;
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    if (opt.workload == W3) {
        /* libevent's default monotonic clock is coarse (4 ms here). */
        setenv("EVENT_PRECISE_TIMER", "1", 0);
        w3_serial();
    }
    drv_init(&opt.drv);
    int err = pthread_barrier_init(&warm_barrier, NULL, opt.pool);
    if (err)
        bench_die("pthread_barrier_init: %s", strerror(err));
    for (unsigned i = 0; i < opt.pool; i++)
        drv_submit(job_new(warm_work, warm_done, i));
    drv_run();
    if (!phase.ended)
        bench_die("the loop returned before the workload finished");
    report();
    drv_fini();
    pthread_barrier_destroy(&warm_barrier);
    return 0;
}
