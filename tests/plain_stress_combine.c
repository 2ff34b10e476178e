/*
 * plain_stress_combine.c -- the combinators (evexec_sleep, evexec_wait_for,
 * evexec_gather, evexec_wait) mixed with timeouts, cancels and
 * evexec_loop_free while their work is in flight.
 *
 * Each round makes a base and a loop and 4-23 leaf futures: run_in_executor
 * and wrap_cfuture tasks of 0-200 us on a shared pool of 2, sleeps of 0-3 ms,
 * and plain futures that call_soon callbacks finish, fail or cancel (some
 * are never completed). Over them it builds 2-13 combinators on random
 * subsets, with random timeouts (-1, 0, 1-5 ms), return_when values,
 * repeated futures and nesting (combinators of combinators), and queues
 * random cancels of leaves and combinators. Futures are released at once
 * or held. Then the round either dispatches until the loop runs dry, or runs
 * a few passes and frees the loop with work in flight.
 *
 * Checked, under TSan in the TSan build:
 *   - every done callback runs at most once, and exactly once for every
 *     future that was done when the loop ran dry;
 *   - no callback runs after evexec_loop_free returned;
 *   - what a combinator reports agrees with its futures when its callback
 *     runs (gather OK: all finished OK; wait OK: its condition holds;
 *     wait_for OK: the same result as its future);
 *   - every result a task or the test made is freed exactly once, counted
 *     after the pool has drained;
 *   - no crash, no hang, no sanitizer report (ASan's leak check included).
 *
 * A second part does the same for evexec_cfuture_wait_many, which threads
 * call without a loop: waiter threads wait for random sets of submitted
 * tasks with random return_when values and timeouts while workers complete
 * them and another thread cancels some. Checked: a wait that returns 0 finds
 * its condition true; a wait bounded by HANG_BOUND_MS never times out (no
 * lost wakeup); every result is freed once.
 *
 * Bounded by rounds and by time; the seed is printed and read from
 * EVEXEC_STRESS_SEED.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evexec.h"
#include "testutil.h"

#define ROUNDS_MAX 2000
#define SECONDS_MAX 6.0
#define LEAVES_MAX 24
#define COMBS_MAX 14
#define ALL_MAX (LEAVES_MAX + COMBS_MAX)
#define CANCELS_MAX 8

static _Atomic long results_made, results_freed;
static long late_callbacks, double_callbacks, missed_callbacks, wrong_outcomes;
static bool loop_freed;
/* How the combinators ended, to show the paths the run took. */
static long ended_ok, ended_error, ended_timedout, ended_cancelled;

static void free_result(void *p)
{
    free(p);
    atomic_fetch_add(&results_freed, 1);
}

static void *make_result(void)
{
    void *r = malloc(16);
    atomic_fetch_add(&results_made, 1);
    return r;
}

/* Busy for the number of microseconds in arg, then make a result; stops
 * early (ECANCELED) once cancelled. */
static int spin_work(void *arg, void **result)
{
    long us = (long)(intptr_t)arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        if (evexec_cancel_requested())
            return ECANCELED;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
    *result = make_result();
    return 0;
}

/* ---- what the round knows of each future --------------------------------- */

enum kind { LEAF, SLEEP, WAIT_FOR, GATHER, WAIT };

struct node {
    struct evexec_future *f;
    bool held;                  /* the round still holds its reference */
    bool is_child;              /* another node's outcome check reads it */
    enum kind kind;
    unsigned return_when;
    int calls;                  /* done callback runs */
    struct evexec_future *children[ALL_MAX];
    size_t nchildren;
};

static struct node nodes[ALL_MAX];
static size_t nnodes;

static int outcome_of(struct evexec_future *f)
{
    return evexec_future_result(f, NULL);
}

/* Does what the combinator says agree with its futures, now? */
static bool outcome_agrees(const struct node *n)
{
    int err = outcome_of(n->f);
    switch (n->kind) {
    case GATHER:
        if (err != 0)
            return true; /* the first error: the others may be anything */
        for (size_t i = 0; i < n->nchildren; i++)
            if (outcome_of(n->children[i]) != 0)
                return false;
        return true;
    case WAIT: {
        if (err != 0)
            return err == ETIMEDOUT || evexec_future_cancelled(n->f);
        size_t done = 0;
        bool failed = false;
        for (size_t i = 0; i < n->nchildren; i++) {
            if (!evexec_future_done(n->children[i]))
                continue;
            done++;
            failed |= outcome_of(n->children[i]) != 0;
        }
        switch (n->return_when) {
        case EVEXEC_FIRST_COMPLETED:
            return done > 0 || n->nchildren == 0;
        case EVEXEC_FIRST_EXCEPTION:
            return failed || done == n->nchildren;
        default:
            return done == n->nchildren;
        }
    }
    case WAIT_FOR: {
        if (err != 0)
            return true;
        void *mine = NULL, *theirs = NULL;
        return evexec_future_result(n->f, &mine) == 0 &&
               evexec_future_result(n->children[0], &theirs) == 0 && mine == theirs;
    }
    default:
        return true;
    }
}

static void on_done(struct evexec_future *f, void *arg)
{
    struct node *n = arg;
    (void)f;
    if (loop_freed) {
        late_callbacks++;
        return;
    }
    if (++n->calls > 1)
        double_callbacks++;
    if (n->kind != LEAF) {
        int err = outcome_of(n->f);
        if (evexec_future_cancelled(n->f))
            ended_cancelled++;
        else if (err == ETIMEDOUT)
            ended_timedout++;
        else if (err != 0)
            ended_error++;
        else
            ended_ok++;
    }
    if (!outcome_agrees(n))
        wrong_outcomes++;
}

/* ---- building a round ---------------------------------------------------- */

struct plain_op {
    struct evexec_future *f;
    int what;                   /* 0 result, 1 error, 2 cancel */
};
static struct plain_op plain_ops[LEAVES_MAX];
static size_t nplain_ops;
static struct evexec_future *cancels[CANCELS_MAX];
static size_t ncancels;

static void run_plain_op(void *arg)
{
    struct plain_op *op = arg;
    if (loop_freed) {
        late_callbacks++;
        return;
    }
    switch (op->what) {
    case 0: {
        void *r = make_result();
        if (evexec_future_set_result(op->f, r, free_result) != 0)
            free_result(r); /* already done (cancelled by a combinator) */
        break;
    }
    case 1:
        (void)evexec_future_set_error(op->f, EIO);
        break;
    default:
        evexec_future_cancel(op->f);
        break;
    }
}

static void run_cancel(void *arg)
{
    if (loop_freed) {
        late_callbacks++;
        return;
    }
    evexec_future_cancel(arg);
}

static long random_timeout(void)
{
    switch (rnd() % 4) {
    case 0:
        return -1;
    case 1:
        return 0;
    default:
        return 1 + (long)(rnd() % 5);
    }
}

static struct evexec_future *make_leaf(struct evexec_loop *loop, struct evexec_pool *pool)
{
    long us = (long)(rnd() % 201);
    switch (rnd() % 4) {
    case 0:
        return evexec_run_in_executor(loop, pool, spin_work, (void *)(intptr_t)us, free_result);
    case 1: {
        struct evexec_cfuture *cf =
            evexec_pool_submit(pool, spin_work, (void *)(intptr_t)us, free_result);
        if (!cf)
            return NULL;
        struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
        evexec_cfuture_release(cf);
        return f;
    }
    case 2:
        return evexec_sleep(loop, (long)(rnd() % 4));
    default: {
        struct evexec_future *f = evexec_future_new(loop);
        if (f && rnd() % 4 != 0 && nplain_ops < LEAVES_MAX) {
            /* Completed from the loop's queue; one in four never is. */
            struct plain_op *op = &plain_ops[nplain_ops++];
            op->f = f;
            op->what = (int)(rnd() % 3);
            if (evexec_call_soon(loop, run_plain_op, op) != 0)
                nplain_ops--;
        }
        return f;
    }
    }
}

static struct evexec_future *pick_child(void)
{
    struct node *c = &nodes[rnd() % nnodes];
    c->is_child = true;
    return c->f;
}

static struct evexec_future *make_comb(struct evexec_loop *loop, struct node *n)
{
    /* Children from what exists already: leaves and earlier combinators,
     * sometimes the same one twice. */
    size_t k = rnd() % 6;
    n->nchildren = 0;
    for (size_t i = 0; i < k && n->nchildren < ALL_MAX; i++)
        n->children[n->nchildren++] = pick_child();
    switch (rnd() % 4) {
    case 0:
        n->kind = SLEEP;
        n->nchildren = 0;
        return evexec_sleep(loop, (long)(rnd() % 4));
    case 1:
        n->kind = WAIT_FOR;
        n->children[0] = pick_child();
        n->nchildren = 1;
        return evexec_wait_for(n->children[0], random_timeout());
    case 2:
        n->kind = GATHER;
        return evexec_gather(loop, n->children, n->nchildren);
    default:
        n->kind = WAIT;
        n->return_when = 1 + (unsigned)(rnd() % 3);
        return evexec_wait(loop, n->children, n->nchildren, n->return_when, random_timeout());
    }
}

/* Keep f (held until the round ends) and watch it; false if f is NULL or
 * its callback could not be added. */
static bool add_node(struct evexec_future *f, struct node *n)
{
    if (!f)
        return false;
    n->f = f;
    n->held = true;
    n->calls = 0;
    nnodes++;
    if (evexec_future_add_done_callback(f, on_done, n) != 0) {
        n->calls = -1; /* counted as refused; not checked */
        return false;
    }
    return true;
}

/* ---- evexec_cfuture_wait_many from threads ------------------------------ */

#define MANY_ROUNDS_MAX 1500
#define MANY_SECONDS_MAX 3.0
#define MANY_TASKS 12
#define MANY_WAITERS 3

static struct evexec_cfuture *many_cfs[MANY_TASKS];
static _Atomic long many_wrong, many_lost, many_errors;

static bool many_failed(struct evexec_cfuture *cf)
{
    int state = evexec_cfuture_state(cf);
    if (state == EVEXEC_CANCELLED)
        return true;
    return state == EVEXEC_FINISHED && evexec_cfuture_result(cf, 0, NULL) != 0;
}

static bool many_holds(struct evexec_cfuture *const *cfs, size_t n, unsigned return_when)
{
    size_t done = 0;
    bool failed = false;
    for (size_t i = 0; i < n; i++) {
        int state = evexec_cfuture_state(cfs[i]);
        if (state != EVEXEC_FINISHED && state != EVEXEC_CANCELLED)
            continue;
        done++;
        failed |= many_failed(cfs[i]);
    }
    switch (return_when) {
    case EVEXEC_FIRST_COMPLETED:
        return done > 0 || n == 0;
    case EVEXEC_FIRST_EXCEPTION:
        return failed || done == n;
    default:
        return done == n;
    }
}

struct many_waiter {
    pthread_t thread;
    uint64_t seed;
};

/* A waiter's own generator: the threads must not share the main one. */
static void *many_waiter_main(void *arg)
{
    struct many_waiter *w = arg;
    struct evexec_cfuture *set[MANY_TASKS];
    size_t n = 1 + rnd_next(&w->seed) % MANY_TASKS;
    for (size_t i = 0; i < n; i++)
        set[i] = many_cfs[rnd_next(&w->seed) % MANY_TASKS];
    unsigned when = 1 + (unsigned)(rnd_next(&w->seed) % 3);
    bool bounded = rnd_next(&w->seed) % 2;
    long timeout = bounded ? HANG_BOUND_MS : (long)(rnd_next(&w->seed) % 3) - 1; /* -1, 0, 1 */
    if (timeout < 0)
        timeout = HANG_BOUND_MS; /* "forever", but a lost wakeup must not hang the run */
    int rc = evexec_cfuture_wait_many(set, n, when, timeout);
    if (rc == 0) {
        if (!many_holds(set, n, when))
            atomic_fetch_add(&many_wrong, 1);
    } else if (rc == ETIMEDOUT) {
        if (timeout == HANG_BOUND_MS)
            atomic_fetch_add(&many_lost, 1);
    } else {
        atomic_fetch_add(&many_errors, 1);
    }
    return NULL;
}

static int failing_work(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return EIO;
}

/* @return the rounds run; counts into the many_* counters. */
static int stress_wait_many(struct evexec_pool *pool)
{
    double start = now_s();
    int rounds = 0;
    for (; rounds < MANY_ROUNDS_MAX && now_s() - start < MANY_SECONDS_MAX; rounds++) {
        for (size_t i = 0; i < MANY_TASKS; i++) {
            bool fails = rnd() % 5 == 0;
            many_cfs[i] = evexec_pool_submit(pool, fails ? failing_work : spin_work,
                                             (void *)(intptr_t)(rnd() % 51), free_result);
            if (!many_cfs[i]) {
                printf("Bail out! evexec_pool_submit: %s\n", strerror(errno));
                exit(1);
            }
        }
        struct many_waiter w[MANY_WAITERS];
        for (size_t i = 0; i < MANY_WAITERS; i++) {
            w[i].seed = rnd();
            if (pthread_create(&w[i].thread, NULL, many_waiter_main, &w[i]) != 0) {
                printf("Bail out! pthread_create\n");
                exit(1);
            }
        }
        /* This thread cancels a few, racing the workers and the waiters. */
        for (size_t i = rnd() % 4; i > 0; i--)
            evexec_cfuture_cancel(many_cfs[rnd() % MANY_TASKS]);
        for (size_t i = 0; i < MANY_WAITERS; i++)
            pthread_join(w[i].thread, NULL);
        for (size_t i = 0; i < MANY_TASKS; i++)
            evexec_cfuture_release(many_cfs[i]);
    }
    return rounds;
}

int main(void)
{
    const char *env = getenv("EVEXEC_STRESS_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    rnd_state = seed;
    printf("1..9\n# seed %" PRIu64 " (EVEXEC_STRESS_SEED replays it)\n", seed);

    struct evexec_pool *pool = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
    if (!pool) {
        printf("Bail out! evexec_pool_new: %s\n", strerror(errno));
        return 1;
    }
    double start = now_s();
    int rounds = 0, freed_early = 0, hung = 0;
    long made = 0, failed_makes = 0;
    for (; rounds < ROUNDS_MAX && now_s() - start < SECONDS_MAX; rounds++) {
        struct event_base *base = event_base_new();
        struct evexec_loop *loop = base ? evexec_loop_new(base) : NULL;
        if (!loop) {
            printf("Bail out! loop: %s\n", strerror(errno));
            return 1;
        }
        loop_freed = false;
        nnodes = 0;
        nplain_ops = 0;
        ncancels = 0;
        size_t nleaves = 4 + rnd() % (LEAVES_MAX - 4);
        for (size_t i = 0; i < nleaves; i++) {
            struct node *n = &nodes[nnodes];
            memset(n, 0, sizeof(*n));
            n->kind = LEAF;
            if (add_node(make_leaf(loop, pool), n))
                made++;
            else
                failed_makes++;
        }
        size_t ncombs = 2 + rnd() % (COMBS_MAX - 2);
        for (size_t i = 0; i < ncombs && nnodes > 0; i++) {
            struct node *n = &nodes[nnodes];
            memset(n, 0, sizeof(*n));
            if (add_node(make_comb(loop, n), n))
                made++;
            else
                failed_makes++;
        }
        /* Some combinators nobody else reads are released at once: they
         * must still complete, run their callbacks and be freed. */
        for (size_t i = 0; i < nnodes; i++) {
            if (nodes[i].kind != LEAF && !nodes[i].is_child && nodes[i].calls == 0 &&
                rnd() % 3 == 0) {
                evexec_future_release(nodes[i].f);
                nodes[i].held = false;
            }
        }
        /* Cancels from the loop's queue, of anything still held. */
        size_t nc = rnd() % CANCELS_MAX;
        for (size_t i = 0; i < nc && nnodes > 0; i++) {
            struct node *t = &nodes[rnd() % nnodes];
            if (t->held && evexec_call_soon(loop, run_cancel, t->f) == 0)
                cancels[ncancels++] = t->f;
        }

        bool free_early = rnd() % 2;
        if (free_early) {
            freed_early++;
            int passes = (int)(rnd() % 4);
            for (int p = 0; p < passes; p++)
                event_base_loop(base, EVLOOP_NONBLOCK);
        } else {
            if (!dispatch_bounded(base, loop, 30))
                hung++;
            /* The loop ran dry: every future done by now has had its
             * callbacks. */
            for (size_t i = 0; i < nnodes; i++)
                if (nodes[i].held && nodes[i].calls >= 0 && evexec_future_done(nodes[i].f) &&
                    nodes[i].calls != 1)
                    missed_callbacks++;
        }
        evexec_loop_free(loop);
        loop_freed = true;
        for (size_t i = 0; i < nnodes; i++)
            if (nodes[i].held)
                evexec_future_release(nodes[i].f);
        event_base_free(base);
    }
    double many_start = now_s();
    int many_rounds = stress_wait_many(pool);

    /* Every task has ended once the pool has joined its workers; late
     * outcomes are disposed of before that. */
    int rc = evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    evexec_pool_free(pool);

    tap(rc == 0 && hung == 0,
        "%d rounds (%d freed with work in flight), %ld futures, %d dispatches broken (%.1f s)",
        rounds, freed_early, made, hung, now_s() - start);
    printf("# combinators ended: %ld ok, %ld with an error, %ld timed out, %ld cancelled\n",
           ended_ok, ended_error, ended_timedout, ended_cancelled);
    tap(failed_makes == 0, "every future and combinator was made (%ld refused)", failed_makes);
    tap(double_callbacks == 0, "no done callback ran twice (%ld)", double_callbacks);
    tap(missed_callbacks == 0, "every future done when the loop ran dry had its callback (%ld missed)",
        missed_callbacks);
    tap(late_callbacks == 0, "nothing ran after evexec_loop_free (%ld)", late_callbacks);
    tap(wrong_outcomes == 0, "every combinator's outcome agreed with its futures (%ld did not)",
        wrong_outcomes);
    tap(atomic_load(&many_wrong) == 0 && atomic_load(&many_errors) == 0,
        "%d wait_many rounds of %d threads (%.1f s): every wait that returned 0 found its "
        "condition true (%ld did not, %ld errors)",
        many_rounds, MANY_WAITERS, now_s() - many_start, atomic_load(&many_wrong),
        atomic_load(&many_errors));
    tap(atomic_load(&many_lost) == 0, "no wait_many slept through a completion (%ld timed out)",
        atomic_load(&many_lost));
    tap(atomic_load(&results_made) == atomic_load(&results_freed),
        "every result was freed exactly once (%ld made, %ld freed)", atomic_load(&results_made),
        atomic_load(&results_freed));
    return tap_failed ? 1 : 0;
}
