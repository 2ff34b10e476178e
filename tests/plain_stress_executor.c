/*
 * plain_stress_executor.c -- the pool and the concurrent future under
 * concurrent abuse, written for ThreadSanitizer (no Criterion, prints TAP).
 *
 * Four threads share one small pool with a bounded queue. Each claims task
 * numbers from a shared counter and, for each, at random: submits it, adds
 * done callbacks before or after completion, cancels it at once or later
 * (also from another thread, through a shared swap slot), waits with a
 * timeout of 0 or forever, reads or takes the result, and releases the
 * future now or later. Tasks store a counted result (sometimes along with an
 * error) and sometimes stop early when cancellation is requested.
 *
 * At the end it checks the promises that must hold on every path:
 *   - every done callback ran exactly once;
 *   - every result produced was freed exactly once (by the library, or by
 *     the test after taking it);
 *   - no task whose cancel returned true ever ran;
 *   - tasks that ran + tasks cancelled == tasks submitted, and the pool's
 *     counters agree and balance (submitted == completed + cancelled +
 *     failed + queued + running);
 *   - several threads calling evexec_pool_shutdown(WAIT) at once on pools
 *     whose workers are still busy all return only once every worker has
 *     finished (round after round, bounded by the same time).
 *
 * Bounded by count and by time: EVEXEC_STRESS_TASKS (or argv[1], default
 * 100000) tasks, at most EVEXEC_STRESS_SECONDS (default 8) seconds of
 * submitting. The seed comes from EVEXEC_STRESS_SEED or the clock and is
 * printed, so a failing run's choices can be replayed (the thread
 * interleaving cannot).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evexec.h"
#include "testutil.h"

#define NTHREADS 4
#define RING 32          /* futures a thread keeps before releasing them */
#define SHARED_SLOTS 16  /* swap slots through which threads hand futures over */

/* What happened to one task. Written by several threads: all atomics. */
struct record {
    atomic_int submitted;    /* accepted by the pool */
    atomic_int ran;          /* times the work function started */
    atomic_int produced;     /* results stored by the work function */
    atomic_int lib_freed;    /* results freed by the library */
    atomic_int taken_freed;  /* results freed by the test after a take */
    atomic_int cancel_true;  /* a cancel of it returned true */
    atomic_int cb_expected;  /* done callbacks registered successfully */
    atomic_int cb_ran;       /* done callbacks run */
    atomic_int final_state;  /* state seen by a done callback, 0 if none */
};

struct token {
    struct record *rec;
};

static struct record *records;
static long total_tasks;
static atomic_long next_task;
static struct evexec_pool *pool;
static uint64_t deadline_ns;
static atomic_bool out_of_time;
static atomic_long rejected_eagain;
static atomic_long unexpected_errors;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void free_token(void *p)
{
    struct token *t = p;
    atomic_fetch_add(&t->rec->lib_freed, 1);
    free(t);
}

/* The work: mostly trivial; some tasks spin a little and honour a cancel
 * request; some fail, with or without a result. The low bits of the task
 * number (not rand) decide, so the work function needs no shared state. */
static int work(void *arg, void **result)
{
    struct record *rec = arg;
    atomic_fetch_add(&rec->ran, 1);
    long n = rec - records;
    if (n % 7 == 3) {
        for (int i = 0; i < 200; i++) {
            if (evexec_cancel_requested())
                return ECANCELED;
            sched_yield();
        }
    }
    if (n % 5 != 4) {
        struct token *t = malloc(sizeof(*t));
        if (!t)
            return ENOMEM;
        t->rec = rec;
        atomic_fetch_add(&rec->produced, 1);
        *result = t;
    }
    return n % 11 == 5 ? EIO : 0;
}

static void on_done(struct evexec_cfuture *cf, void *arg)
{
    struct record *rec = arg;
    atomic_store(&rec->final_state, evexec_cfuture_state(cf) + 1);
    atomic_fetch_add(&rec->cb_ran, 1);
}

static void note_error(void)
{
    atomic_fetch_add(&unexpected_errors, 1);
}

static void add_callback(struct evexec_cfuture *cf, struct record *rec)
{
    /* Count it before adding: it may run inside the call. */
    atomic_fetch_add(&rec->cb_expected, 1);
    if (evexec_cfuture_add_done_callback(cf, on_done, rec) != 0) {
        atomic_fetch_sub(&rec->cb_expected, 1);
        note_error();
    }
}

static void cancel(struct evexec_cfuture *cf, struct record *rec)
{
    if (evexec_cfuture_cancel(cf))
        atomic_store(&rec->cancel_true, 1);
}

/* Read or take the outcome of a done future and check it is coherent. */
static void collect(struct evexec_cfuture *cf, struct record *rec, bool take)
{
    void *result = NULL;
    int rc = take ? evexec_cfuture_take_result(cf, 0, &result)
                  : evexec_cfuture_result(cf, 0, &result);
    switch (rc) {
    case 0:
        if (take && result) {
            struct token *t = result;
            if (t->rec != rec)
                note_error();
            atomic_fetch_add(&rec->taken_freed, 1);
            free(t);
        }
        break;
    case ECANCELED: case EIO: case ENOMEM: case EVEXEC_ETAKEN:
        break;
    default:
        note_error();
    }
}

/* A future a thread holds on to for a while. */
struct slot_entry {
    struct evexec_cfuture *cf;
    struct record *rec;
};

/* A future handed over to whichever thread swaps the same slot next. */
struct handoff {
    struct evexec_cfuture *cf;
    struct record *rec;
};

static _Atomic(struct handoff *) handoff_slots[SHARED_SLOTS];

static void dispose(struct evexec_cfuture *cf, struct record *rec, unsigned *seed)
{
    int r = rand_r(seed) % 8;
    if (r == 0)
        cancel(cf, rec); /* late: pending, running or finished */
    if (r <= 2 && evexec_cfuture_wait(cf, r == 1 ? 0 : -1) == 0)
        collect(cf, rec, r == 2);
    evexec_cfuture_release(cf);
}

static void *submitter(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    struct slot_entry ring[RING];
    int held = 0;
    for (;;) {
        long n = atomic_fetch_add(&next_task, 1);
        if (n >= total_tasks)
            break;
        if ((n & 63) == 0 && now_ns() > deadline_ns) {
            atomic_store(&out_of_time, true);
            break;
        }
        struct record *rec = &records[n];
        struct evexec_cfuture *cf;
        while (!(cf = evexec_pool_submit(pool, work, rec, free_token))) {
            if (errno != EAGAIN) {
                note_error();
                break;
            }
            /* Queue full: let some work drain before retrying. */
            atomic_fetch_add(&rejected_eagain, 1);
            if (held > 0) {
                held--;
                if (evexec_cfuture_wait(ring[held].cf, -1) != 0)
                    note_error();
                dispose(ring[held].cf, ring[held].rec, &seed);
            } else {
                sched_yield();
            }
        }
        if (!cf)
            continue;
        atomic_store(&rec->submitted, 1);

        int r = rand_r(&seed) % 100;
        if (r < 60)
            add_callback(cf, rec);
        if (r < 10)
            add_callback(cf, rec);
        if (r >= 20 && r < 45)
            cancel(cf, rec);
        if (r >= 40 && r < 70) {
            int rc = evexec_cfuture_wait(cf, (r & 1) ? 0 : -1);
            if (rc == 0)
                collect(cf, rec, r & 2);
            else if (rc != ETIMEDOUT)
                note_error();
        }
        if (r >= 60 && r < 80)
            add_callback(cf, rec); /* maybe on a done future: runs here */

        if (r >= 90) {
            /* Hand it to whichever thread comes next; dispose of what was
             * there (another thread's future). */
            struct handoff *h = malloc(sizeof(*h));
            if (!h) {
                evexec_cfuture_release(cf);
                continue;
            }
            h->cf = cf;
            h->rec = rec;
            struct handoff *old =
                atomic_exchange(&handoff_slots[rand_r(&seed) % SHARED_SLOTS], h);
            if (old) {
                dispose(old->cf, old->rec, &seed);
                free(old);
            }
        } else if (r >= 80) {
            evexec_cfuture_release(cf);
        } else {
            if (held == RING) {
                int victim = rand_r(&seed) % RING;
                dispose(ring[victim].cf, ring[victim].rec, &seed);
                ring[victim] = ring[--held];
            }
            ring[held++] = (struct slot_entry){ cf, rec };
        }
    }
    while (held > 0) {
        held--;
        dispose(ring[held].cf, ring[held].rec, &seed);
    }
    return NULL;
}

/* ---- concurrent shutdown(WAIT) ------------------------------------------- */

#define SHUTDOWN_WAITERS 3
#define SHUTDOWN_WORKERS 3

static pthread_key_t gone_key;
static atomic_int threads_gone;

/* Runs after a worker's start routine returned: the thread's last act
 * before it can be joined. */
static void note_thread_gone(void *p)
{
    (void)p;
    sched_yield();
    atomic_fetch_add(&threads_gone, 1);
}

static int mark_thread(void *ctx)
{
    (void)ctx;
    pthread_setspecific(gone_key, &gone_key);
    return 0;
}

static int short_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    for (int i = 0; i < 50; i++)
        sched_yield();
    return 0;
}

struct shutdown_waiter {
    struct evexec_pool *pool;
    int rc;
    int gone_seen;
};

static void *shutdown_waiter_main(void *arg)
{
    struct shutdown_waiter *w = arg;
    w->rc = evexec_pool_shutdown(w->pool, EVEXEC_SHUTDOWN_WAIT);
    w->gone_seen = atomic_load(&threads_gone);
    return NULL;
}

/* Rounds of: a pool with busy workers, SHUTDOWN_WAITERS threads calling
 * shutdown(WAIT) at once; each must see every worker gone. Returns the
 * number of early returns; *rounds_run says how many rounds fitted. */
static long concurrent_shutdown_rounds(long max_rounds, uint64_t until, long *rounds_run)
{
    long early = 0, round = 0;
    pthread_key_create(&gone_key, note_thread_gone);
    for (; round < max_rounds && now_ns() < until; round++) {
        atomic_store(&threads_gone, 0);
        struct evexec_pool_config cfg = { .max_workers = SHUTDOWN_WORKERS,
                                          .thread_init = mark_thread };
        struct evexec_pool *p = evexec_pool_new(&cfg);
        if (!p) {
            early++;
            break;
        }
        for (int i = 0; i < 2 * SHUTDOWN_WORKERS; i++)
            evexec_cfuture_release(evexec_pool_submit(p, short_task, NULL, NULL));
        struct evexec_pool_stats st;
        evexec_pool_get_stats(p, &st);
        int started = (int)st.threads_started;
        struct shutdown_waiter w[SHUTDOWN_WAITERS];
        pthread_t t[SHUTDOWN_WAITERS];
        int nt = 0;
        for (int i = 0; i < SHUTDOWN_WAITERS; i++) {
            w[i] = (struct shutdown_waiter){ .pool = p, .rc = -1 };
            if (pthread_create(&t[i], NULL, shutdown_waiter_main, &w[i]) == 0)
                nt++;
            else
                break;
        }
        for (int i = 0; i < nt; i++) {
            pthread_join(t[i], NULL);
            /* Workers started after the stats read can only be more. */
            evexec_pool_get_stats(p, &st);
            if (w[i].rc != 0 || w[i].gone_seen != (int)st.threads_started ||
                (int)st.threads_started < started)
                early++;
        }
        evexec_pool_free(p);
    }
    pthread_key_delete(gone_key);
    *rounds_run = round;
    return early;
}

int main(int argc, char **argv)
{
    total_tasks = env_long("EVEXEC_STRESS_TASKS", 100000);
    if (argc > 1 && atol(argv[1]) > 0)
        total_tasks = atol(argv[1]);
    long seconds = env_long("EVEXEC_STRESS_SECONDS", 8);
    unsigned seed = (unsigned)env_long("EVEXEC_STRESS_SEED", (long)(time(NULL) & 0x7fffffff));

    printf("1..7\n");
    printf("# seed %u (EVEXEC_STRESS_SEED=%u to replay the choices), %ld tasks, %ld s bound\n",
           seed, seed, total_tasks, seconds);
    fflush(stdout);

    records = calloc((size_t)total_tasks, sizeof(*records));
    if (!records) {
        printf("Bail out! no memory for %ld records\n", total_tasks);
        return 1;
    }
    struct evexec_pool_config cfg = { .max_workers = 3, .max_queued = 64 };
    pool = evexec_pool_new(&cfg);
    if (!pool) {
        printf("Bail out! evexec_pool_new: %s\n", evexec_strerror(errno));
        return 1;
    }

    uint64_t start = now_ns();
    deadline_ns = start + (uint64_t)seconds * 1000000000u;
    pthread_t threads[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        if (pthread_create(&threads[i], NULL, submitter, (void *)(uintptr_t)(seed + 7919u * i))) {
            printf("Bail out! pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < SHARED_SLOTS; i++) {
        struct handoff *h = atomic_exchange(&handoff_slots[i], NULL);
        if (h) {
            unsigned s = seed + (unsigned)i;
            dispose(h->cf, h->rec, &s);
            free(h);
        }
    }
    /* Queued work still runs; join every worker. */
    int shutdown_rc = evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    double elapsed = (double)(now_ns() - start) / 1e9;
    struct evexec_pool_stats st;
    int stats_rc = evexec_pool_get_stats(pool, &st);
    evexec_pool_free(pool);

    long claimed = atomic_load(&next_task);
    long considered = claimed < total_tasks ? claimed : total_tasks;
    long submitted = 0, ran = 0, cancelled = 0, produced = 0;
    long bad_callbacks = 0, bad_frees = 0, cancelled_but_ran = 0, bad_state = 0;
    long callbacks = 0, taken = 0;
    for (long n = 0; n < considered; n++) {
        struct record *rec = &records[n];
        if (!atomic_load(&rec->submitted)) {
            if (atomic_load(&rec->ran))
                bad_state++;
            continue;
        }
        submitted++;
        int r = atomic_load(&rec->ran);
        ran += r;
        int fstate = atomic_load(&rec->final_state) - 1;
        if (atomic_load(&rec->cb_ran) != atomic_load(&rec->cb_expected))
            bad_callbacks++;
        callbacks += atomic_load(&rec->cb_ran);
        int p = atomic_load(&rec->produced);
        produced += p;
        taken += atomic_load(&rec->taken_freed);
        if (p > 1 || atomic_load(&rec->lib_freed) + atomic_load(&rec->taken_freed) != p)
            bad_frees++;
        if (atomic_load(&rec->cancel_true) && r != 0)
            cancelled_but_ran++;
        if (r > 1)
            bad_state++;
        if (r == 0)
            cancelled++;
        /* A callback saw the final state: it must match what happened. */
        if (fstate >= 0 && fstate != (r ? EVEXEC_FINISHED : EVEXEC_CANCELLED))
            bad_state++;
    }

    tap(claimed > 0 && atomic_load(&unexpected_errors) == 0 && shutdown_rc == 0,
        "%ld tasks submitted by %d threads in %.1f s%s (%ld EAGAIN retries, "
        "%ld unexpected return codes)", submitted, NTHREADS, elapsed,
        atomic_load(&out_of_time) ? ", stopped by the time bound" : "",
        atomic_load(&rejected_eagain), atomic_load(&unexpected_errors));
    tap(bad_callbacks == 0, "every done callback ran exactly once "
        "(%ld callbacks, %ld tasks wrong)", callbacks, bad_callbacks);
    tap(bad_frees == 0, "every result freed exactly once "
        "(%ld produced, %ld taken, %ld tasks wrong)", produced, taken, bad_frees);
    tap(cancelled_but_ran == 0, "no task whose cancel returned true ran (%ld did)",
        cancelled_but_ran);
    tap(bad_state == 0 && ran + cancelled == submitted,
        "ran + cancelled == submitted (%ld + %ld vs %ld, %ld incoherent)",
        ran, cancelled, submitted, bad_state);
    tap(stats_rc == 0 && st.submitted == (uint64_t)submitted &&
        st.completed == (uint64_t)ran && st.cancelled == (uint64_t)cancelled &&
        st.failed == 0 && st.running == 0 && st.threads == 0 && st.queued == 0 &&
        st.submitted == st.completed + st.cancelled + st.failed + st.queued + st.running,
        "pool counters agree and balance (submitted %" PRIu64 ", completed %" PRIu64
        ", cancelled %" PRIu64 ", failed %" PRIu64 ", threads %u)",
        st.submitted, st.completed, st.cancelled, st.failed, st.threads);
    long rounds = 0;
    long early = concurrent_shutdown_rounds(200, now_ns() + (uint64_t)seconds * 500000000u,
                                            &rounds);
    tap(rounds > 0 && early == 0, "%d concurrent shutdown(WAIT) calls return after every "
        "worker finished (%ld rounds, %ld early returns)", SHUTDOWN_WAITERS, rounds, early);
    free(records);
    return tap_failed ? 1 : 0;
}
