/*
 * cpu_bound.c -- CPU-heavy work offloaded to a pool while the loop stays live.
 *
 * What it demonstrates
 *   - Splitting a real computation (counting the primes below N by trial
 *     division) into chunks, each run with evexec_run_in_executor() on a pool
 *     of --workers threads; results come back on the loop thread as futures.
 *   - The loop stays responsive meanwhile: a 1 ms heartbeat timer measures
 *     how late it fires (worst lateness is printed at the end), and a progress
 *     bar is redrawn on a terminal (plain progress lines when stdout is not one).
 *   - The same chunks then run one after another on a 1-worker pool, so the
 *     program can print the speedup of the parallel run over the serial one.
 *   - The loop waits for all the chunks with evexec_gather() (asyncio.gather):
 *     one future that finishes when every chunk has, or fails with the first
 *     chunk that failed.
 *   - Ctrl-C, caught with a libevent signal event on the loop thread, cancels
 *     the run by cancelling the gather, which cancels every chunk: chunks
 *     still queued never run; running ones notice evexec_cancel_requested()
 *     and stop early. The program reports what completed and exits with 130
 *     (128 + SIGINT).
 *
 * How to run it
 *   samples/cpu_bound                          # primes below 10,000,000
 *   samples/cpu_bound --workers 4 --chunks 128 --size 20000000
 *   samples/cpu_bound --no-serial              # skip the serial baseline
 *   Press Ctrl-C during a run to see cancellation.
 *   For sub-millisecond timer figures run it with EVENT_PRECISE_TIMER=1
 *   (libevent's default monotonic clock may be coarse).
 *
 * Exit status: 0 done, 1 runtime failure, 2 usage error, 130 interrupted by
 * SIGINT (143 by SIGTERM).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <evexec.h>

#define HEARTBEAT_US  1000     /* the loop's 1 ms heartbeat */
#define REDRAW_MS     100      /* progress bar refresh on a terminal */
#define BAR_WIDTH     32

/* What a worker did with a chunk; written by the worker, read by main()
 * only after the pool has been joined. */
enum chunk_outcome { CHUNK_NOT_RUN = 0, CHUNK_FINISHED, CHUNK_STOPPED };

struct phase;

/* One slice [lo, hi) of the number range. It outlives its pool, so a worker
 * may still write it after the loop side has cancelled the future. */
struct chunk {
    struct phase         *phase;
    uint64_t              lo, hi;
    uint64_t              primes;      /* the worker's result */
    atomic_int            outcome;     /* enum chunk_outcome */
    struct evexec_future *future;
};

/* One run of all the chunks on one pool. */
struct phase {
    const char         *name;
    struct app         *app;
    struct chunk       *chunks;
    unsigned            n_chunks;
    struct evexec_future *all;         /* evexec_gather() of the chunks */
    unsigned            done;          /* futures done (any outcome) */
    unsigned            succeeded;     /* futures with a result */
    uint64_t            primes;        /* sum over succeeded chunks */
    double              started, wall; /* seconds */
    double              last_tick;     /* heartbeat bookkeeping */
    double              worst_late;    /* seconds */
    uint64_t            ticks;
    unsigned            printed_decile;
};

struct app {
    struct event_base  *base;
    struct evexec_loop *loop;
    struct event       *heartbeat, *redraw, *sigint, *sigterm;
    struct phase       *current;       /* the phase being run, or NULL */
    bool                tty;
    int                 signal_caught; /* 0, SIGINT or SIGTERM */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the work: runs on a worker thread ---------------------------------- */

static bool is_prime(uint64_t n)
{
    if (n < 4)
        return n >= 2;
    if (n % 2 == 0 || n % 3 == 0)
        return false;
    for (uint64_t d = 5; d * d <= n; d += 6)
        if (n % d == 0 || n % (d + 2) == 0)
            return false;
    return true;
}

static int count_primes_chunk(void *arg, void **result)
{
    struct chunk *c = arg;
    uint64_t count = 0;

    (void)result;  /* the count goes into the chunk, which outlives the task */
    for (uint64_t n = c->lo; n < c->hi; n++) {
        /* Cooperative cancellation: a running task cannot be killed, but it
         * can look now and then whether its future was cancelled. */
        if ((n & 4095) == 0 && evexec_cancel_requested()) {
            atomic_store(&c->outcome, CHUNK_STOPPED);
            return ECANCELED;
        }
        count += is_prime(n);
    }
    c->primes = count;
    atomic_store(&c->outcome, CHUNK_FINISHED);
    return 0;
}

/* ---- the loop side ------------------------------------------------------- */

static void draw_progress(struct phase *ph, bool final)
{
    struct app *app = ph->app;
    /* Progress counts chunks with a result; cancelled ones are done too, but
     * did not progress anything. */
    unsigned pct = ph->n_chunks ? ph->succeeded * 100 / ph->n_chunks : 100;

    if (app->tty) {
        unsigned filled = ph->n_chunks ? ph->succeeded * BAR_WIDTH / ph->n_chunks : BAR_WIDTH;
        char cancelled[32] = "";
        if (ph->done > ph->succeeded)
            snprintf(cancelled, sizeof cancelled, ", %u cancelled", ph->done - ph->succeeded);
        char bar[BAR_WIDTH + 1];
        for (unsigned i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : (i == filled ? '>' : '.');
        bar[BAR_WIDTH] = '\0';
        /* \r and "erase to end of line": redraw in place. */
        printf("\r%-8s [%s] %3u%% %u/%u chunks%s, %" PRIu64 " primes, "
               "heartbeat worst %.2f ms\033[K%s",
               ph->name, bar, pct, ph->succeeded, ph->n_chunks, cancelled, ph->primes,
               ph->worst_late * 1e3, final ? "\n" : "");
        fflush(stdout);
        return;
    }
    /* Not a terminal: one plain line per 10 % step. */
    unsigned decile = pct / 10;
    if (decile > ph->printed_decile) {
        ph->printed_decile = decile;
        printf("%s: %3u%% (%u/%u chunks, %" PRIu64 " primes so far)\n",
               ph->name, pct, ph->succeeded, ph->n_chunks, ph->primes);
        fflush(stdout);
    }
}

/* 1 ms heartbeat: lateness of a tick = time since the previous one - 1 ms. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    struct phase *ph = app->current;
    double t = now_s();

    (void)fd;
    (void)what;
    if (ph == NULL)
        return;
    if (ph->ticks++ > 0) {
        double late = t - ph->last_tick - HEARTBEAT_US / 1e6;
        if (late > ph->worst_late)
            ph->worst_late = late;
    }
    ph->last_tick = t;
}

static void on_redraw(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;

    (void)fd;
    (void)what;
    if (app->current != NULL)
        draw_progress(app->current, false);
}

/* Done callback of one chunk's loop future: runs on the loop thread. */
static void on_chunk_done(struct evexec_future *f, void *arg)
{
    struct chunk *c = arg;
    struct phase *ph = c->phase;
    void *unused;
    int err = evexec_future_result(f, &unused);

    if (err == 0) {
        ph->succeeded++;
        ph->primes += c->primes;
    } else if (err != ECANCELED) {
        fprintf(stderr, "\ncpu_bound: chunk [%" PRIu64 ", %" PRIu64 ") failed: %s\n",
                c->lo, c->hi, evexec_strerror(err));
    }
    ph->done++;
    if (!ph->app->tty && ph->app->signal_caught == 0)
        draw_progress(ph, false);
}

/* Queued behind the chunks' done callbacks: every chunk is counted by now.
 * Leave event_base_dispatch(); cancelled chunks that are still running
 * finish when the pool is freed. */
static void phase_over(void *arg)
{
    struct phase *ph = arg;
    event_base_loopbreak(ph->app->base);
}

/* Done callback of the gather: every chunk finished, one failed, or the run
 * was cancelled (the gather cancelled every chunk). */
static void on_all_done(struct evexec_future *f, void *arg)
{
    struct phase *ph = arg;
    int err = evexec_future_result(f, NULL);

    ph->wall = now_s() - ph->started;
    if (err != 0 && err != ECANCELED) {
        /* A chunk failed; as in asyncio the others keep running: stop them. */
        for (unsigned i = 0; i < ph->n_chunks; i++)
            evexec_future_cancel(ph->chunks[i].future);
    }
    if (evexec_call_soon(ph->app->loop, phase_over, ph) != 0)
        event_base_loopbreak(ph->app->base);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    struct app *app = arg;
    struct phase *ph = app->current;

    (void)what;
    if (app->signal_caught != 0 || ph == NULL)
        return;
    app->signal_caught = (int)signo;
    printf("%s%s: cancelling the remaining chunks...\n", app->tty ? "\n" : "",
           signo == SIGINT ? "interrupted" : "terminated");
    fflush(stdout);
    /* Cancelling the gather cancels every chunk: queued ones become
     * cancelled and never run; running ones see evexec_cancel_requested()
     * turn true. Either way the futures are done now and their done
     * callbacks are already scheduled. */
    evexec_future_cancel(ph->all);
}

/* One future for the whole run: the gather takes its own references on the
 * chunks' futures, which stay ours. On failure the chunks are cancelled. */
static int gather_chunks(struct app *app, struct phase *ph)
{
    int err = ENOMEM;
    struct evexec_future **fs = malloc(ph->n_chunks * sizeof *fs);

    if (fs != NULL) {
        for (unsigned i = 0; i < ph->n_chunks; i++)
            fs[i] = ph->chunks[i].future;
        ph->all = evexec_gather(app->loop, fs, ph->n_chunks);
        err = ph->all ? evexec_future_add_done_callback(ph->all, on_all_done, ph) : errno;
        free(fs);
    }
    if (err != 0) {
        fprintf(stderr, "cpu_bound: cannot gather the chunks: %s\n", evexec_strerror(err));
        evexec_future_release(ph->all);
        ph->all = NULL;
        for (unsigned i = 0; i < ph->n_chunks; i++)
            evexec_future_cancel(ph->chunks[i].future);
    }
    return err;
}

/* Run every chunk of ph on pool and dispatch the loop until all are done.
 * Returns 0, or an error code if the chunks could not be submitted. */
static int run_phase(struct app *app, struct phase *ph, struct evexec_pool *pool)
{
    struct timeval beat = {0, HEARTBEAT_US}, redraw = {0, REDRAW_MS * 1000};
    int err = 0;

    app->current = ph;
    ph->started = now_s();
    ph->last_tick = ph->started;
    event_add(app->heartbeat, &beat);
    if (app->tty)
        event_add(app->redraw, &redraw);

    for (unsigned i = 0; i < ph->n_chunks; i++) {
        struct chunk *c = &ph->chunks[i];
        c->future = evexec_run_in_executor(app->loop, pool, count_primes_chunk, c, NULL);
        if (c->future == NULL ||
            (err = evexec_future_add_done_callback(c->future, on_chunk_done, c)) != 0) {
            if (c->future == NULL)
                err = errno;
            fprintf(stderr, "cpu_bound: cannot submit a chunk: %s\n", evexec_strerror(err));
            /* Cancel what was submitted; their callbacks still count them. */
            for (unsigned j = 0; j <= i; j++)
                evexec_future_cancel(ph->chunks[j].future);
            ph->n_chunks = i + (c->future != NULL);
            break;
        }
    }
    if (ph->n_chunks > 0 && err == 0)
        err = gather_chunks(app, ph);
    if (ph->all != NULL)
        event_base_dispatch(app->base);   /* until phase_over() */
    else
        ph->wall = now_s() - ph->started;

    event_del(app->heartbeat);
    event_del(app->redraw);
    if (app->signal_caught == 0 || app->tty)
        draw_progress(ph, true);
    app->current = NULL;
    return err;
}

static struct phase *phase_new(struct app *app, const char *name, uint64_t size,
                               unsigned n_chunks)
{
    struct phase *ph = calloc(1, sizeof *ph);
    if (ph == NULL)
        return NULL;
    ph->chunks = calloc(n_chunks, sizeof *ph->chunks);
    if (ph->chunks == NULL) {
        free(ph);
        return NULL;
    }
    ph->name = name;
    ph->app = app;
    ph->n_chunks = n_chunks;
    for (unsigned i = 0; i < n_chunks; i++) {
        struct chunk *c = &ph->chunks[i];
        c->phase = ph;
        c->lo = size * i / n_chunks;
        c->hi = size * (i + 1) / n_chunks;
        atomic_init(&c->outcome, CHUNK_NOT_RUN);
    }
    return ph;
}

static void phase_free(struct phase *ph)
{
    if (ph == NULL)
        return;
    evexec_future_release(ph->all);
    for (unsigned i = 0; i < ph->n_chunks; i++)
        evexec_future_release(ph->chunks[i].future);
    free(ph->chunks);
    free(ph);
}

/* After an interruption, with the pool joined: say what happened to each chunk. */
static void report_interrupted(const struct phase *ph, uint64_t size)
{
    unsigned finished = 0, stopped = 0, never_ran = 0;
    uint64_t covered = 0;

    for (unsigned i = 0; i < ph->n_chunks; i++) {
        const struct chunk *c = &ph->chunks[i];
        switch (atomic_load(&c->outcome)) {
        case CHUNK_FINISHED: finished++; break;
        case CHUNK_STOPPED:  stopped++; break;
        default:             never_ran++; break;
        }
        if (evexec_future_result(c->future, &(void *){NULL}) == 0)
            covered += c->hi - c->lo;
    }
    printf("%s run cancelled after %.3f s: %u of %u chunks completed "
           "(%" PRIu64 " primes in %" PRIu64 " of %" PRIu64 " numbers), "
           "%u stopped while running, %u cancelled before they ran",
           ph->name, ph->wall, ph->succeeded, ph->n_chunks, ph->primes, covered,
           size, stopped, never_ran);
    if (finished > ph->succeeded)
        printf(", %u finished after the cancel (result dropped)", finished - ph->succeeded);
    printf("\n");
}

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
        "Usage: %s [--workers N] [--chunks N] [--size N] [--no-serial]\n"
        "Count the primes below --size on a pool of worker threads while the\n"
        "event loop keeps a 1 ms heartbeat and a progress display running.\n"
        "\n"
        "  -w, --workers N   worker threads (default: number of CPUs)\n"
        "  -c, --chunks N    pieces the range is split into (default 64)\n"
        "  -s, --size N      count primes below N (default 10000000)\n"
        "      --no-serial   skip the serial baseline (no speedup figure)\n"
        "  -h, --help        this text\n"
        "\n"
        "Ctrl-C cancels the run: queued chunks never run, running ones stop.\n"
        "Exit status: 0 done, 1 failure, 2 usage, 130 interrupted (SIGINT).\n",
        argv0);
}

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"workers", required_argument, NULL, 'w'},
        {"chunks", required_argument, NULL, 'c'},
        {"size", required_argument, NULL, 's'},
        {"no-serial", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t workers = cpus > 0 ? (uint64_t)cpus : 2, chunks = 64, size = 10000000;
    bool serial = true;
    int opt, status = 0;

    while ((opt = getopt_long(argc, argv, "w:c:s:h", options, NULL)) != -1) {
        switch (opt) {
        case 'w':
            if (!parse_u64(optarg, 1, 256, &workers)) {
                fprintf(stderr, "cpu_bound: --workers wants 1..256\n");
                return 2;
            }
            break;
        case 'c':
            if (!parse_u64(optarg, 1, 100000, &chunks)) {
                fprintf(stderr, "cpu_bound: --chunks wants 1..100000\n");
                return 2;
            }
            break;
        case 's':
            if (!parse_u64(optarg, 1, UINT64_C(1) << 40, &size)) {
                fprintf(stderr, "cpu_bound: --size wants 1..2^40\n");
                return 2;
            }
            break;
        case 'S':
            serial = false;
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (chunks > size)
        chunks = size;

    struct app app = {.tty = isatty(STDOUT_FILENO) == 1};
    struct phase *parallel = NULL, *serial_ph = NULL;
    struct evexec_pool *pool = NULL, *pool1 = NULL;

    /* A precise timer, so the heartbeat's lateness means something. */
    struct event_config *cfg = event_config_new();
    if (cfg != NULL) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        app.base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (app.base == NULL || (app.loop = evexec_loop_new(app.base)) == NULL) {
        fprintf(stderr, "cpu_bound: cannot set up the event loop: %s\n", strerror(errno));
        status = 1;
        goto out;
    }
    app.heartbeat = event_new(app.base, -1, EV_PERSIST, on_heartbeat, &app);
    app.redraw = event_new(app.base, -1, EV_PERSIST, on_redraw, &app);
    app.sigint = evsignal_new(app.base, SIGINT, on_signal, &app);
    app.sigterm = evsignal_new(app.base, SIGTERM, on_signal, &app);
    if (!app.heartbeat || !app.redraw || !app.sigint || !app.sigterm ||
        event_add(app.sigint, NULL) != 0 || event_add(app.sigterm, NULL) != 0) {
        fprintf(stderr, "cpu_bound: cannot create events\n");
        status = 1;
        goto out;
    }

    struct evexec_pool_config pcfg = {.max_workers = (unsigned)workers,
                                      .thread_name = "primes"};
    pool = evexec_pool_new(&pcfg);
    parallel = phase_new(&app, "parallel", size, (unsigned)chunks);
    if (pool == NULL || parallel == NULL) {
        fprintf(stderr, "cpu_bound: out of memory\n");
        status = 1;
        goto out;
    }

    printf("counting primes below %" PRIu64 " in %u chunks on %u worker%s\n",
           size, (unsigned)chunks, (unsigned)workers, workers == 1 ? "" : "s");
    fflush(stdout);
    if (run_phase(&app, parallel, pool) != 0)
        status = 1;
    /* Joins the workers: a cancelled chunk that was running stops at its
     * next evexec_cancel_requested() check, so this is quick. */
    evexec_pool_free(pool);
    pool = NULL;

    if (app.signal_caught != 0) {
        report_interrupted(parallel, size);
        status = 128 + app.signal_caught;
        goto out;
    }
    printf("%" PRIu64 " primes below %" PRIu64 "\n", parallel->primes, size);
    printf("parallel: %.3f s wall on %u workers, heartbeat worst lateness %.3f ms "
           "(%" PRIu64 " ticks)\n", parallel->wall, (unsigned)workers,
           parallel->worst_late * 1e3, parallel->ticks);
    if (!serial || status != 0)
        goto out;

    pcfg.max_workers = 1;
    pool1 = evexec_pool_new(&pcfg);
    serial_ph = phase_new(&app, "serial", size, (unsigned)chunks);
    if (pool1 == NULL || serial_ph == NULL) {
        fprintf(stderr, "cpu_bound: out of memory\n");
        status = 1;
        goto out;
    }
    if (run_phase(&app, serial_ph, pool1) != 0)
        status = 1;
    evexec_pool_free(pool1);
    pool1 = NULL;
    if (app.signal_caught != 0) {
        report_interrupted(serial_ph, size);
        status = 128 + app.signal_caught;
        goto out;
    }
    if (serial_ph->primes != parallel->primes) {
        fprintf(stderr, "cpu_bound: serial and parallel counts differ!\n");
        status = 1;
    }
    printf("serial:   %.3f s wall on 1 worker, heartbeat worst lateness %.3f ms\n",
           serial_ph->wall, serial_ph->worst_late * 1e3);
    printf("speedup:  %.2fx with %u workers\n",
           parallel->wall > 0 ? serial_ph->wall / parallel->wall : 0.0, (unsigned)workers);

out:
    evexec_pool_free(pool);
    evexec_pool_free(pool1);
    if (app.sigint)
        event_free(app.sigint);
    if (app.sigterm)
        event_free(app.sigterm);
    if (app.heartbeat)
        event_free(app.heartbeat);
    if (app.redraw)
        event_free(app.redraw);
    /* Futures stay valid after the loop is freed, until released. */
    evexec_loop_free(app.loop);
    phase_free(parallel);
    phase_free(serial_ph);
    if (app.base)
        event_base_free(app.base);
    return status;
}
