/*
 * plain_stress_work.c -- the request layer where two threads meet: the loop
 * thread cancelling, freeing its loop or queueing again while workers pop,
 * run and complete requests.
 *
 * Each round makes a base and a loop and queues 8-63 requests of 0-20 us
 * (spinning) on a shared pool of 2 or on a limited view of it (1 or 2 at a
 * time). Every request owns an argument in req->data and lives in memory of
 * its own, which its last after frees (it also frees the argument and the
 * result). Rounds vary:
 *   - cancel: requests are cancelled (some twice) right after queueing or
 *     after a random delay of 0-20 us, while the workers pop them;
 *   - loop_free: the loop is freed after zero or more non-blocking passes,
 *     with requests queued, running and finished-undelivered;
 *   - requeue: each after queues its request again 1-4 times, and sometimes
 *     the loop is freed half-way;
 *   - shutdown: a pool of the round's own (or a view of it) is shut down
 *     with EVEXEC_SHUTDOWN_CANCEL_PENDING from another thread while the loop
 *     thread cancels.
 * Checked per request, every round: after ran exactly once per accepted
 * queueing; a cancel that returned true means the work never ran and after
 * got ECANCELED with no result, a second cancel at once answers the same,
 * one that returned false means it ran; a request that never ran got ECANCELED; one that ran in a round nobody disturbed got 0
 * and its result; every after at or after evexec_loop_free got ECANCELED,
 * and one on a worker only for a request that ran; the argument was
 * untouched; a view never ran more than its limit at once. At the end: every
 * result and every argument freed exactly once, the pool drained. No hang:
 * every wait is bounded.
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
#define SECONDS_MAX 8.0
#define REQS_MAX 64
#define DISPATCH_SECONDS 20

/* ---- what happened to each request of a round -------------------------- */

struct slot {
    atomic_int ran;
    atomic_int afters;
    int accepted;        /* successful evexec_queue_work calls (loop thread) */
    int cancel_first;    /* -1 not tried, else what the first cancel returned */
    int cancel_second;   /* -1 not tried */
    int status;          /* of the last after */
    bool had_result;
    bool on_worker;      /* the last after ran off the loop thread */
    bool after_freeing;  /* the last after ran once evexec_loop_free had begun */
    bool bad_arg;        /* req->data was not the request's argument */
    int requeue_failures;
};

static struct slot slots[REQS_MAX];
static _Atomic long afters_total;
static _Atomic long results_made, results_freed;
static _Atomic long args_made, args_freed;
static atomic_bool freeing; /* evexec_loop_free has begun for this round */
static pthread_t loop_thread;
static struct evexec_loop *round_loop;

struct arg {
    int id;
    int round;
};

struct sreq {
    struct evexec_work req;
    int id;
    int round;
    long us;
    int requeues; /* left to do */
    struct evexec_pool *target;
    struct arg *arg;
    atomic_int *gauge_now, *gauge_max;
};

/* Concurrency of the requests of each view. */
static atomic_int view_now[2], view_max[2];

static void gauge_enter(atomic_int *now, atomic_int *max)
{
    int n = atomic_fetch_add(now, 1) + 1;
    int seen = atomic_load(max);
    while (n > seen && !atomic_compare_exchange_weak(max, &seen, n))
        ;
}

static int stress_work(void *arg, void **result)
{
    struct sreq *r = arg;
    atomic_fetch_add(&slots[r->id].ran, 1);
    if (r->gauge_now)
        gauge_enter(r->gauge_now, r->gauge_max);
    spin_us(r->us);
    if (r->gauge_now)
        atomic_fetch_sub(r->gauge_now, 1);
    *result = malloc(16);
    atomic_fetch_add(&results_made, 1);
    /* Honour a cancel request, and still hand the result over. */
    return evexec_cancel_requested() ? ECANCELED : 0;
}

static void stress_after(struct evexec_work *req, int status, void *result);

static int queue_req(struct sreq *r)
{
    int rc = evexec_queue_work(round_loop, r->target, &r->req, stress_work, stress_after);
    if (rc == 0)
        slots[r->id].accepted++;
    return rc;
}

static void stress_after(struct evexec_work *req, int status, void *result)
{
    struct sreq *r = (struct sreq *)(void *)req;
    struct slot *s = &slots[r->id];
    s->status = status;
    s->had_result = result != NULL;
    s->on_worker = !pthread_equal(pthread_self(), loop_thread);
    s->after_freeing = atomic_load(&freeing);
    struct arg *a = req->data;
    if (a != r->arg || a->id != r->id || a->round != r->round)
        s->bad_arg = true;
    if (result) {
        free(result);
        atomic_fetch_add(&results_freed, 1);
    }
    bool again = status == 0 && r->requeues > 0 && !s->on_worker && !s->after_freeing;
    if (again) {
        r->requeues--;
        if (queue_req(r) != 0) {
            s->requeue_failures++;
            again = false;
        }
    }
    if (!again) {
        free(a);
        atomic_fetch_add(&args_freed, 1);
        memset(r, 0xa5, sizeof(*r));
        free(r);
    }
    atomic_fetch_add(&s->afters, 1);
    atomic_fetch_add(&afters_total, 1);
}

/* ---- the pool shutdown of the shutdown rounds, from another thread ------ */

struct shutter {
    struct evexec_pool *pool;
    long delay_us;
    atomic_bool go;
    int rc;
};

static void *shutter_main(void *arg)
{
    struct shutter *sh = arg;
    while (!atomic_load(&sh->go))
        ;
    spin_us(sh->delay_us);
    sh->rc = evexec_pool_shutdown(sh->pool, EVEXEC_SHUTDOWN_CANCEL_PENDING);
    return NULL;
}

/* ---- tallies over the whole run ---------------------------------------- */

enum scenario { SC_CANCEL, SC_LOOP_FREE, SC_REQUEUE, SC_SHUTDOWN, SC_COUNT };
static const char *const scenario_names[SC_COUNT] = {"cancel", "loop_free", "requeue",
                                                     "shutdown"};

static long rounds_of[SC_COUNT];
static long refused, hangs, wrong_after_count, cancel_true_ran, cancel_true_wrong_outcome,
    cancel_changed_mind, cancel_changed_mind_shutdown, never_ran_not_cancelled,
    undisturbed_wrong, freeing_not_cancelled, worker_after_unexpected, bad_args,
    requeue_failures, view_over_limit, shutdown_errors, cancel_false_unrun,
    cancel_false_unrun_shutdown;
static long cancels_true, cancels_false, worker_afters, requeues_done, shutdown_refusals;
static int first_failed_round = -1;
static enum scenario round_scenario, first_failed_scenario;

static void note_failure(int round, long *counter)
{
    (*counter)++;
    if (first_failed_round < 0) {
        first_failed_round = round;
        first_failed_scenario = round_scenario;
    }
}

/* Wait (bounded) until afters_total reaches want. */
static bool afters_reach(long want)
{
    for (int i = 0; i < HANG_BOUND_MS && atomic_load(&afters_total) < want; i++)
        sleep_ms(1);
    return atomic_load(&afters_total) >= want;
}

static long accepted_total(int n)
{
    long t = 0;
    for (int i = 0; i < n; i++)
        t += slots[i].accepted;
    return t;
}

static void check_round(int round, enum scenario sc, int n, bool loop_was_freed)
{
    for (int i = 0; i < n; i++) {
        struct slot *s = &slots[i];
        int ran = atomic_load(&s->ran);
        if (atomic_load(&s->afters) != s->accepted || ran > s->accepted)
            note_failure(round, &wrong_after_count);
        if (s->cancel_first == 1 && ran != 0)
            note_failure(round, &cancel_true_ran);
        if (s->cancel_first == 1 && (s->status != ECANCELED || s->had_result))
            note_failure(round, &cancel_true_wrong_outcome);
        if (s->cancel_first >= 0 && s->cancel_second >= 0 &&
            s->cancel_first != s->cancel_second)
            note_failure(round, sc == SC_SHUTDOWN ? &cancel_changed_mind_shutdown
                                                  : &cancel_changed_mind);
        /* false means running or done: it ran (nothing fails in these
         * pools, so a request done without running was cancelled). */
        if (s->cancel_first == 0 && ran == 0)
            note_failure(round, sc == SC_SHUTDOWN ? &cancel_false_unrun_shutdown
                                                  : &cancel_false_unrun);
        /* Only a request's last queueing can have been left unrun (an after
         * with ECANCELED queues nothing again), and s->status and
         * s->had_result are what the last after saw. */
        if (ran < s->accepted && (s->status != ECANCELED || s->had_result))
            note_failure(round, &never_ran_not_cancelled);
        if (s->accepted > 0 && ran == s->accepted && !s->had_result)
            note_failure(round, &undisturbed_wrong); /* a result made got lost */
        if (sc != SC_SHUTDOWN && !loop_was_freed && s->cancel_first < 0 && s->status != 0)
            note_failure(round, &undisturbed_wrong);
        if (s->after_freeing && s->status != ECANCELED)
            note_failure(round, &freeing_not_cancelled);
        if (s->on_worker && (!s->after_freeing || ran == 0))
            note_failure(round, &worker_after_unexpected);
        if (s->on_worker)
            worker_afters++;
        if (s->bad_arg)
            note_failure(round, &bad_args);
        if (s->requeue_failures)
            note_failure(round, &requeue_failures);
        if (s->cancel_first == 1)
            cancels_true++;
        else if (s->cancel_first == 0)
            cancels_false++;
        if (s->accepted > 1)
            requeues_done += s->accepted - 1;
    }
}

static struct sreq *new_req(int id, int round, struct evexec_pool *target, int view_index)
{
    struct sreq *r = malloc(sizeof(*r));
    struct arg *a = malloc(sizeof(*a));
    if (!r || !a) {
        printf("Bail out! out of memory\n");
        exit(1);
    }
    memset(r, 0, sizeof(*r));
    a->id = id;
    a->round = round;
    r->id = id;
    r->round = round;
    r->us = (long)(rnd() % 21);
    r->target = target;
    r->arg = a;
    r->req.data = a;
    if (view_index >= 0) {
        r->gauge_now = &view_now[view_index];
        r->gauge_max = &view_max[view_index];
    }
    return r;
}

static void cancel_req(struct sreq *r)
{
    struct slot *s = &slots[r->id];
    bool ok = evexec_work_cancel(&r->req);
    if (s->cancel_first < 0) {
        s->cancel_first = ok;
        /* Sometimes at once again: a cancelled request stays cancelled. */
        if (rnd() % 4 == 0)
            s->cancel_second = evexec_work_cancel(&r->req);
    }
}

int main(void)
{
    const char *env = getenv("EVEXEC_STRESS_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    rnd_state = seed;
    printf("1..15\n# seed %" PRIu64 " (EVEXEC_STRESS_SEED replays it)\n", seed);
    loop_thread = pthread_self();

    struct evexec_pool *pool = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
    struct evexec_pool *views[2] = {
        pool ? evexec_pool_new_limited(pool, 1) : NULL,
        pool ? evexec_pool_new_limited(pool, 2) : NULL,
    };
    const int view_limit[2] = {1, 2};
    if (!pool || !views[0] || !views[1]) {
        printf("Bail out! pools: %s\n", strerror(errno));
        return 1;
    }
    double start = now_s();
    int rounds = 0;
    long requests = 0;
    for (; rounds < ROUNDS_MAX && now_s() - start < SECONDS_MAX; rounds++) {
        struct event_base *base = event_base_new();
        struct evexec_loop *loop = base ? evexec_loop_new(base) : NULL;
        if (!loop) {
            printf("Bail out! loop: %s\n", strerror(errno));
            return 1;
        }
        round_loop = loop;
        atomic_store(&freeing, false);
        atomic_store(&afters_total, 0);
        memset(slots, 0, sizeof(slots));
        enum scenario sc = (enum scenario)(rnd() % SC_COUNT);
        rounds_of[sc]++;
        round_scenario = sc;
        int n = 8 + (int)(rnd() % (REQS_MAX - 8));
        for (int i = 0; i < n; i++)
            slots[i].cancel_first = slots[i].cancel_second = -1;

        /* Where the round's requests go. */
        struct evexec_pool *own = NULL, *own_view = NULL, *target = pool;
        int view_index = -1;
        if (sc == SC_SHUTDOWN) {
            own = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
            own_view = own && rnd() % 2 ? evexec_pool_new_limited(own, 1 + (unsigned)(rnd() % 2))
                                        : NULL;
            if (!own) {
                printf("Bail out! pool: %s\n", strerror(errno));
                return 1;
            }
            target = own_view ? own_view : own;
        } else if (rnd() % 2) {
            view_index = (int)(rnd() % 2);
            target = views[view_index];
        }

        struct shutter sh = {.pool = target, .delay_us = (long)(rnd() % 40)};
        pthread_t shutter_thread;
        if (sc == SC_SHUTDOWN &&
            pthread_create(&shutter_thread, NULL, shutter_main, &sh) != 0) {
            printf("Bail out! pthread_create\n");
            return 1;
        }

        struct sreq *reqs[REQS_MAX];
        for (int i = 0; i < n; i++) {
            reqs[i] = new_req(i, rounds, target, view_index);
            if (sc == SC_REQUEUE)
                reqs[i]->requeues = 1 + (int)(rnd() % 4);
            atomic_fetch_add(&args_made, 1);
            int qrc = queue_req(reqs[i]);
            if (qrc != 0) {
                /* The other thread may have shut the pool down already. */
                if (sc == SC_SHUTDOWN && qrc == ESHUTDOWN && atomic_load(&sh.go))
                    shutdown_refusals++;
                else
                    note_failure(rounds, &refused);
                free(reqs[i]->arg);
                free(reqs[i]);
                atomic_fetch_add(&args_freed, 1);
                reqs[i] = NULL;
                continue;
            }
            requests++;
            if (i == n / 2 && sc == SC_SHUTDOWN)
                atomic_store(&sh.go, true);
            /* Cancel some at once, others a moment later. */
            if ((sc == SC_CANCEL || sc == SC_SHUTDOWN) && rnd() % 4 == 0) {
                spin_us((long)(rnd() % 21));
                cancel_req(reqs[i]);
            }
        }
        if (sc == SC_SHUTDOWN)
            atomic_store(&sh.go, true);
        if (sc == SC_CANCEL || sc == SC_SHUTDOWN || (sc == SC_LOOP_FREE && rnd() % 2)) {
            for (int i = 0; i < n; i++) {
                if (!reqs[i] || slots[i].cancel_first >= 0 || rnd() % 3 != 0)
                    continue;
                spin_us((long)(rnd() % 21));
                cancel_req(reqs[i]);
            }
        }

        bool free_early = sc == SC_LOOP_FREE || (sc == SC_REQUEUE && rnd() % 3 == 0);
        bool loop_was_freed = false;
        if (free_early) {
            /* Let part of the work be delivered, or none. */
            int passes = (int)(rnd() % 4);
            for (int p = 0; p < passes; p++) {
                spin_us((long)(rnd() % 30));
                event_base_loop(base, EVLOOP_NONBLOCK);
            }
            atomic_store(&freeing, true);
            evexec_loop_free(loop);
            loop_was_freed = true;
            /* Requests that were running finish on their workers. */
            if (!afters_reach(accepted_total(n)))
                note_failure(rounds, &hangs);
        } else {
            if (!dispatch_bounded(base, loop, DISPATCH_SECONDS))
                note_failure(rounds, &hangs);
            if (atomic_load(&afters_total) != accepted_total(n))
                note_failure(rounds, &hangs); /* dispatch returned early */
            atomic_store(&freeing, true);
            evexec_loop_free(loop);
        }
        if (sc == SC_SHUTDOWN) {
            pthread_join(shutter_thread, NULL);
            if (sh.rc != 0)
                note_failure(rounds, &shutdown_errors);
            evexec_pool_free(own_view);
            evexec_pool_free(own);
        }
        event_base_free(base);
        check_round(rounds, sc, n, loop_was_freed);
        for (int v = 0; v < 2; v++)
            if (atomic_load(&view_max[v]) > view_limit[v])
                note_failure(rounds, &view_over_limit);
    }
    int rc = evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    evexec_pool_free(views[0]);
    evexec_pool_free(views[1]);
    evexec_pool_free(pool);

    printf("# rounds: cancel %ld, loop_free %ld, requeue %ld, shutdown %ld; cancels true %ld, "
           "false %ld; afters on a worker %ld; requeues %ld; refused by a shutdown %ld\n",
           rounds_of[SC_CANCEL],
           rounds_of[SC_LOOP_FREE], rounds_of[SC_REQUEUE], rounds_of[SC_SHUTDOWN], cancels_true,
           cancels_false, worker_afters, requeues_done, shutdown_refusals);
    if (first_failed_round >= 0)
        printf("# first failure in round %d (%s)\n", first_failed_round,
               scenario_names[first_failed_scenario]);
    tap(rc == 0, "the pool drained after %d rounds, %ld requests (%.1f s)", rounds, requests,
        now_s() - start);
    tap(refused == 0, "every request was accepted (%ld refused)", refused);
    tap(hangs == 0, "every round ended with every after run (%ld hung)", hangs);
    tap(wrong_after_count == 0, "after ran exactly once per accepted request (%ld wrong)",
        wrong_after_count);
    tap(cancel_true_ran == 0 && cancel_true_wrong_outcome == 0,
        "a cancel that returned true: never ran (%ld wrong), ECANCELED and no result (%ld "
        "wrong)", cancel_true_ran, cancel_true_wrong_outcome);
    tap(cancel_changed_mind == 0 && cancel_changed_mind_shutdown == 0,
        "a second cancel at once answered as the first (%ld wrong; %ld of them in a pool "
        "shutdown)", cancel_changed_mind + cancel_changed_mind_shutdown,
        cancel_changed_mind_shutdown);
    tap(cancel_false_unrun == 0 && cancel_false_unrun_shutdown == 0,
        "a cancel that returned false: the request ran (%ld wrong; %ld of them cancelled "
        "already by a pool shutdown)", cancel_false_unrun + cancel_false_unrun_shutdown,
        cancel_false_unrun_shutdown);
    tap(never_ran_not_cancelled == 0, "a request that never ran got ECANCELED and no result "
        "(%ld wrong)", never_ran_not_cancelled);
    tap(undisturbed_wrong == 0, "a request left alone got 0 and its result; no result was "
        "lost (%ld wrong)", undisturbed_wrong);
    tap(freeing_not_cancelled == 0 && worker_after_unexpected == 0,
        "afters from evexec_loop_free on got ECANCELED, on a worker only for a request that "
        "ran (%ld, %ld wrong)", freeing_not_cancelled, worker_after_unexpected);
    tap(bad_args == 0, "req->data was the request's own argument in every after (%ld wrong)",
        bad_args);
    tap(requeue_failures == 0, "every request queued again from its after was accepted "
        "(%ld refused)", requeue_failures);
    tap(view_over_limit == 0 && shutdown_errors == 0,
        "views kept their limit (max %d of 1, %d of 2); shutdowns succeeded (%ld failed)",
        atomic_load(&view_max[0]), atomic_load(&view_max[1]), shutdown_errors);
    tap(atomic_load(&results_made) == atomic_load(&results_freed),
        "every result was freed exactly once (%ld made, %ld freed)", atomic_load(&results_made),
        atomic_load(&results_freed));
    tap(atomic_load(&args_made) == atomic_load(&args_freed),
        "every argument was freed exactly once (%ld given, %ld freed)", atomic_load(&args_made),
        atomic_load(&args_freed));
    return tap_failed ? 1 : 0;
}
