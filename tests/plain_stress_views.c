/*
 * plain_stress_views.c -- views of a pool under concurrent producers,
 * written for ThreadSanitizer (no Criterion, prints TAP).
 *
 * One pool of 4 workers carries a strand (max_running 1), a limited view
 * (max_running 2) and a strand made on the limited view. Four producer
 * threads submit numbered tasks to them and to the pool itself, at random;
 * some tasks they cancel at once or later, some futures they release at
 * once, others after a wait. Strand tasks write a plain (non-atomic) log:
 * a strand's tasks must see each other's memory, which ThreadSanitizer
 * checks, and the log must keep each producer's order.
 *
 * A second phase frees the parent while producers still submit to its
 * strand: no task may be lost (each accepted one runs, or ends cancelled
 * or failed), and the view is freed after its parent.
 *
 * A third phase has the parent's CANCEL_PENDING take a view's queue down on
 * one thread while another waits for the view with shutdown(WAIT): the wait
 * returns only once every task of the view is settled.
 *
 * Checked at the end:
 *   - every accepted task ran once or was cancelled (never both, never
 *     twice), as its future says;
 *   - no view ever ran more tasks at once than its max_running (atomic
 *     gauges), the nested strand counting against its parent view;
 *   - the strand ran each producer's tasks in that producer's order;
 *   - every result was freed exactly once;
 *   - every view's and the pool's counters balance.
 *
 * Bounded by EVEXEC_STRESS_TASKS (or argv[1], default 40000) tasks and
 * EVEXEC_STRESS_SECONDS (default 8) seconds; the seed comes from
 * EVEXEC_STRESS_SEED or the clock and is printed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evexec.h"
#include "testutil.h"

#define PRODUCERS 4
#define HOLD 16              /* futures a producer keeps before waiting on them */

enum { T_POOL, T_STRAND, T_LIMITED, T_NESTED, NTARGETS };

struct record {
    atomic_int ran;
    atomic_int result_freed;
    int target, producer;
    long seq;                /* the producer's own count of strand tasks */
    int outcome;             /* set by the producer after the wait: 0, ECANCELED, ... */
    bool accepted;
};

struct gauge {
    atomic_int now, max;
};

static struct record *records;
static long total_tasks;
static atomic_long next_task;
static uint64_t deadline_ns;
static struct evexec_pool *targets[NTARGETS];
static struct gauge strand_gauge, limited_gauge, nested_gauge;
static atomic_long unexpected;

/* The strand's log: plain memory, written only by strand tasks. */
static long *strand_log;
static long strand_next;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void gauge_enter(struct gauge *g)
{
    int n = atomic_fetch_add(&g->now, 1) + 1;
    int seen = atomic_load(&g->max);
    while (n > seen && !atomic_compare_exchange_weak(&g->max, &seen, n))
        ;
}

static void free_result(void *p)
{
    struct record *rec = p;
    atomic_fetch_add(&rec->result_freed, 1);
}

static int work(void *arg, void **result)
{
    struct record *rec = arg;
    atomic_fetch_add(&rec->ran, 1);
    struct gauge *g = rec->target == T_STRAND ? &strand_gauge
                      : rec->target == T_NESTED ? &nested_gauge : NULL;
    bool in_limited = rec->target == T_LIMITED || rec->target == T_NESTED;
    if (g)
        gauge_enter(g);
    if (in_limited)
        gauge_enter(&limited_gauge);
    if (rec->target == T_STRAND)
        strand_log[strand_next++] = rec - records;
    for (int i = 0; i < (int)((rec - records) % 4); i++)
        sched_yield();
    if (in_limited)
        atomic_fetch_sub(&limited_gauge.now, 1);
    if (g)
        atomic_fetch_sub(&g->now, 1);
    *result = rec; /* counted through free_result */
    return 0;
}

struct held {
    struct evexec_cfuture *cf;
    struct record *rec;
};

static void settle(struct held *h)
{
    int rc = evexec_cfuture_result(h->cf, HANG_BOUND_MS, NULL);
    h->rec->outcome = rc;
    if (rc != 0 && rc != ECANCELED)
        atomic_fetch_add(&unexpected, 1);
    evexec_cfuture_release(h->cf);
}

static void *producer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    int me = (int)(seed % PRODUCERS);
    long strand_seq = 0;
    struct held held[HOLD];
    int nheld = 0;
    for (;;) {
        long n = atomic_fetch_add(&next_task, 1);
        if (n >= total_tasks || now_ns() > deadline_ns)
            break;
        struct record *rec = &records[n];
        rec->target = rand_r(&seed) % NTARGETS;
        rec->producer = me;
        if (rec->target == T_STRAND)
            rec->seq = strand_seq++;
        struct evexec_cfuture *cf;
        while (!(cf = evexec_pool_submit(targets[rec->target], work, rec, free_result))) {
            if (errno != EAGAIN) {
                atomic_fetch_add(&unexpected, 1);
                break;
            }
            sched_yield();
        }
        if (!cf) {
            if (rec->target == T_STRAND)
                strand_seq--;
            continue;
        }
        rec->accepted = true;
        int choice = rand_r(&seed) % 8;
        if (choice == 0)
            evexec_cfuture_cancel(cf);
        held[nheld++] = (struct held){ cf, rec };
        if (choice == 1 && nheld > 1)
            evexec_cfuture_cancel(held[rand_r(&seed) % (nheld - 1)].cf);
        if (nheld == HOLD) {
            for (int i = 0; i < nheld; i++)
                settle(&held[i]);
            nheld = 0;
        }
    }
    for (int i = 0; i < nheld; i++)
        settle(&held[i]);
    return NULL;
}

static bool balanced(struct evexec_pool *p)
{
    struct evexec_pool_stats st;
    if (evexec_pool_get_stats(p, &st) != 0)
        return false;
    return st.submitted == st.completed + st.cancelled + st.failed + st.queued + st.running;
}

/* ---- phase 2: the parent freed while producers submit to its strand ----- */

struct loser {
    struct evexec_pool *strand;
    long accepted, settled, bad;
};

static int tiny(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add((atomic_long *)arg, 1);
    return 0;
}

static atomic_long phase2_ran;

static void *lose_producer(void *arg)
{
    struct loser *l = arg;
    struct evexec_cfuture *cfs[64];
    int n = 0;
    for (int i = 0; i < 64; i++) {
        struct evexec_cfuture *cf = evexec_pool_submit(l->strand, tiny, &phase2_ran, NULL);
        if (!cf) {
            if (errno != ESHUTDOWN)
                l->bad++;
            break;
        }
        cfs[n++] = cf;
    }
    l->accepted = n;
    for (int i = 0; i < n; i++) {
        int rc = evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL);
        if (rc == 0 || rc == ECANCELED || rc == ESHUTDOWN)
            l->settled++;
        else
            l->bad++;
        evexec_cfuture_release(cfs[i]);
    }
    return NULL;
}

static long parent_freed_first_rounds(long rounds, uint64_t until, long *done, long *lost)
{
    long bad = 0;
    *done = 0;
    *lost = 0;
    for (long r = 0; r < rounds && now_ns() < until; r++) {
        struct evexec_pool_config cfg = { .max_workers = 2 };
        struct evexec_pool *pool = evexec_pool_new(&cfg);
        struct evexec_pool *strand = pool ? evexec_pool_new_limited(pool, 1) : NULL;
        if (!strand) {
            bad++;
            evexec_pool_free(pool);
            break;
        }
        struct loser l[2] = { { .strand = strand }, { .strand = strand } };
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, lose_producer, &l[i]);
        evexec_pool_free(pool);
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            bad += l[i].bad;
            *lost += l[i].accepted - l[i].settled;
        }
        if (!balanced(strand))
            bad++;
        evexec_pool_free(strand);
        (*done)++;
    }
    return bad;
}

/* Phase 3: the parent's CANCEL_PENDING strands a view's queue (its turn was
 * waiting behind a held worker) while this thread waits for the view with
 * shutdown(WAIT). The wait must return only once every task of the view is
 * settled: it used to return as soon as the turn was gone, with the tasks
 * still being cancelled on the other thread. */
#define STRANDED_TASKS 48

static struct evexec_pool *stranding_parent;

static void *cancel_parent(void *arg)
{
    (void)arg;
    evexec_pool_shutdown(stranding_parent, EVEXEC_SHUTDOWN_CANCEL_PENDING);
    return NULL;
}

static int held_task(void *arg, void **result)
{
    (void)result;
    gate_pass(arg);
    return 0;
}

static int noop_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static long stranded_rounds(long rounds, uint64_t until, long *done)
{
    long early = 0;
    *done = 0;
    for (long r = 0; r < rounds && now_ns() < until; r++) {
        struct gate g;
        gate_init(&g);
        struct evexec_pool_config cfg = { .max_workers = 1 };
        struct evexec_pool *pool = evexec_pool_new(&cfg);
        struct evexec_pool *view = pool ? evexec_pool_new_limited(pool, 1 + r % 2) : NULL;
        struct evexec_cfuture *held =
            view ? evexec_pool_submit(pool, held_task, &g, NULL) : NULL;
        if (!held || !gate_wait_arrived(&g, 1)) {
            early++;
            evexec_pool_free(view);
            evexec_pool_free(pool);
            gate_destroy(&g);
            break;
        }
        struct evexec_cfuture *cfs[STRANDED_TASKS];
        int n = 0;
        for (int i = 0; i < STRANDED_TASKS; i++)
            if ((cfs[n] = evexec_pool_submit(view, noop_task, NULL, NULL)) != NULL)
                n++;
        stranding_parent = pool;
        pthread_t t;
        pthread_create(&t, NULL, cancel_parent, NULL);
        evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT);
        for (int i = 0; i < n; i++)
            if (evexec_cfuture_state(cfs[i]) == EVEXEC_PENDING) {
                early++;
                break;
            }
        pthread_join(t, NULL);
        gate_open(&g);
        for (int i = 0; i < n; i++)
            evexec_cfuture_release(cfs[i]);
        evexec_cfuture_release(held);
        evexec_pool_free(view);
        evexec_pool_free(pool);
        gate_destroy(&g);
        (*done)++;
    }
    return early;
}

/* A positive number from the environment, or fallback. */
int main(int argc, char **argv)
{
    total_tasks = env_long("EVEXEC_STRESS_TASKS", 40000);
    if (argc > 1 && atol(argv[1]) > 0)
        total_tasks = atol(argv[1]);
    long seconds = env_long("EVEXEC_STRESS_SECONDS", 8);
    unsigned seed = (unsigned)env_long("EVEXEC_STRESS_SEED", (long)(time(NULL) & 0x7fffffff));

    printf("1..8\n");
    printf("# seed %u (EVEXEC_STRESS_SEED=%u to replay the choices), %ld tasks, %ld s bound\n",
           seed, seed, total_tasks, seconds);
    fflush(stdout);

    records = calloc((size_t)total_tasks, sizeof(*records));
    strand_log = calloc((size_t)total_tasks, sizeof(*strand_log));
    struct evexec_pool_config cfg = { .max_workers = 4, .max_queued = 256 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    if (!records || !strand_log || !pool) {
        printf("Bail out! setup failed: %s\n", evexec_strerror(errno));
        return 1;
    }
    struct evexec_view_config limited_cfg = { .max_running = 2, .max_queued = 128 };
    targets[T_POOL] = pool;
    targets[T_STRAND] = evexec_pool_new_limited(pool, 1);
    targets[T_LIMITED] = evexec_pool_new_view(pool, &limited_cfg);
    targets[T_NESTED] = targets[T_LIMITED] ? evexec_pool_new_limited(targets[T_LIMITED], 1)
                                           : NULL;
    for (int i = 0; i < NTARGETS; i++)
        if (!targets[i]) {
            printf("Bail out! view %d: %s\n", i, evexec_strerror(errno));
            return 1;
        }

    uint64_t start = now_ns();
    deadline_ns = start + (uint64_t)seconds * 1000000000u / 2;
    pthread_t threads[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++)
        if (pthread_create(&threads[i], NULL, producer,
                           (void *)(uintptr_t)(seed * PRODUCERS + (unsigned)i))) {
            printf("Bail out! pthread_create failed\n");
            return 1;
        }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    bool all_balanced = true;
    for (int i = NTARGETS - 1; i >= 0; i--) {
        if (evexec_pool_shutdown(targets[i], EVEXEC_SHUTDOWN_WAIT) != 0 || !balanced(targets[i]))
            all_balanced = false;
    }
    double elapsed = (double)(now_ns() - start) / 1e9;

    long claimed = atomic_load(&next_task);
    long considered = claimed < total_tasks ? claimed : total_tasks;
    long accepted = 0, ran = 0, cancelled = 0, bad_runs = 0, bad_frees = 0;
    for (long n = 0; n < considered; n++) {
        struct record *rec = &records[n];
        if (!rec->accepted)
            continue;
        accepted++;
        int r = atomic_load(&rec->ran);
        if (r > 1 || (r == 1) != (rec->outcome == 0) || (r == 0 && rec->outcome != ECANCELED))
            bad_runs++;
        ran += r;
        cancelled += r == 0;
        if (atomic_load(&rec->result_freed) != r)
            bad_frees++;
    }
    /* The strand's log: each producer's strand tasks in its own order. */
    long last[PRODUCERS], out_of_order = 0;
    for (int p = 0; p < PRODUCERS; p++)
        last[p] = -1;
    for (long i = 0; i < strand_next; i++) {
        struct record *rec = &records[strand_log[i]];
        if (rec->seq <= last[rec->producer])
            out_of_order++;
        last[rec->producer] = rec->seq;
    }

    tap(accepted > 0 && atomic_load(&unexpected) == 0,
        "%ld tasks accepted from %d producers in %.1f s (%ld unexpected outcomes)", accepted,
        PRODUCERS, elapsed, atomic_load(&unexpected));
    tap(bad_runs == 0, "every task ran once or was cancelled, as its future says "
        "(%ld ran, %ld cancelled, %ld wrong)", ran, cancelled, bad_runs);
    tap(atomic_load(&strand_gauge.max) <= 1 && atomic_load(&nested_gauge.max) <= 1 &&
        atomic_load(&limited_gauge.max) <= 2,
        "no view exceeded max_running (strand %d/1, limited %d/2, nested %d/1)",
        atomic_load(&strand_gauge.max), atomic_load(&limited_gauge.max),
        atomic_load(&nested_gauge.max));
    tap(out_of_order == 0, "the strand kept each producer's order (%ld strand tasks, "
        "%ld out of order)", strand_next, out_of_order);
    tap(bad_frees == 0, "every result freed exactly once (%ld tasks wrong)", bad_frees);
    tap(all_balanced, "the pool's and every view's counters balance");
    for (int i = NTARGETS - 1; i >= 0; i--)
        evexec_pool_free(targets[i]);

    long rounds_done = 0, lost = 0;
    long bad = parent_freed_first_rounds(100, now_ns() + (uint64_t)seconds * 1000000000u / 4,
                                         &rounds_done, &lost);
    tap(rounds_done > 0 && bad == 0 && lost == 0,
        "parent freed while producers submit to its strand: no task lost "
        "(%ld rounds, %ld tasks ran, %ld lost, %ld wrong)", rounds_done,
        atomic_load(&phase2_ran), lost, bad);
    long stranded_done = 0;
    long early = stranded_rounds(300, now_ns() + (uint64_t)seconds * 1000000000u / 4,
                                 &stranded_done);
    tap(stranded_done > 0 && early == 0,
        "a view's shutdown(WAIT) returns only after its parent's cancel settled the "
        "view's queue (%ld rounds, %ld early)", stranded_done, early);
    free(records);
    free(strand_log);
    return tap_failed ? 1 : 0;
}
