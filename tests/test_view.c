/*
 * test_view.c -- views of a pool (evexec_pool_new_limited / _new_view): the
 * serial queue's order and memory under several producers, the cap on
 * running tasks, cancel, every shutdown mode, stats, a bounded queue, views
 * of views, freeing the parent first, run_in_executor on a view, fork, and
 * what a view's task sees of its worker.
 *
 * Tasks never assert: they record, and the main thread asserts once the
 * work is done. Waits use gates with a generous bound; sleeps never decide
 * a pass.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"
#define TESTUTIL_LOOP_FIXTURE
#include "testutil.h"

TestSuite(view, .timeout = 60, .fini = fail_on_leaks);

/* ---- helpers ------------------------------------------------------------ */

static struct evexec_pool *pool_of(unsigned max_workers)
{
    struct evexec_pool_config cfg = { .max_workers = max_workers };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    return pool;
}

static struct evexec_pool *limited(struct evexec_pool *parent, unsigned max_running)
{
    struct evexec_pool *view = evexec_pool_new_limited(parent, max_running);
    cr_assert_not_null(view, "evexec_pool_new_limited: %s", evexec_strerror(errno));
    return view;
}

static struct evexec_pool_stats stats_of(struct evexec_pool *pool)
{
    struct evexec_pool_stats st;
    memset(&st, 0xff, sizeof(st));
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    return st;
}

static void assert_balanced(const struct evexec_pool_stats *st)
{
    cr_assert_eq(st->submitted, st->completed + st->cancelled + st->failed + st->queued +
                                    st->running,
                 "submitted %llu, completed %llu, cancelled %llu, failed %llu, queued %zu, "
                 "running %u", (unsigned long long)st->submitted,
                 (unsigned long long)st->completed, (unsigned long long)st->cancelled,
                 (unsigned long long)st->failed, st->queued, st->running);
}

static int blocking_task(void *arg, void **result)
{
    (void)result;
    gate_pass(arg);
    return 0;
}

static int count_task(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static int noop_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static void wait_ok(struct evexec_cfuture *cf)
{
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0, "task did not succeed");
}

/* How many run at once, at most. */
struct gauge {
    atomic_int now, max;
};

static void gauge_enter(struct gauge *g)
{
    int n = atomic_fetch_add(&g->now, 1) + 1;
    int seen = atomic_load(&g->max);
    while (n > seen && !atomic_compare_exchange_weak(&g->max, &seen, n))
        ;
}

static void gauge_leave(struct gauge *g)
{
    atomic_fetch_sub(&g->now, 1);
}

/* ---- the serial queue --------------------------------------------------- */

#define PRODUCERS 4
#define PER_PRODUCER 250

/* Written by the tasks without atomics: a strand's tasks see each other's
 * memory, and never run at once (the gauge checks that). */
struct strand_log {
    struct gauge gauge;
    int next;
    int producer[PRODUCERS * PER_PRODUCER];
    int seq[PRODUCERS * PER_PRODUCER];
};

struct strand_item {
    struct strand_log *log;
    int producer, seq;
};

static int strand_task(void *arg, void **result)
{
    (void)result;
    struct strand_item *it = arg;
    struct strand_log *log = it->log;
    gauge_enter(&log->gauge);
    int at = log->next;
    if (at < PRODUCERS * PER_PRODUCER) {
        log->producer[at] = it->producer;
        log->seq[at] = it->seq;
    }
    sched_yield(); /* give another task the chance to overlap, if it could */
    log->next = at + 1;
    gauge_leave(&log->gauge);
    return 0;
}

struct producer {
    struct evexec_pool *view;
    struct strand_item items[PER_PRODUCER];
    struct evexec_cfuture *cfs[PER_PRODUCER];
    int failures;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < PER_PRODUCER; i++) {
        p->cfs[i] = evexec_pool_submit(p->view, strand_task, &p->items[i], NULL);
        if (!p->cfs[i])
            p->failures++;
    }
    return NULL;
}

Test(view, strand_runs_tasks_one_at_a_time_in_submission_order_under_4_producers)
{
    struct evexec_pool *pool = pool_of(4);
    struct evexec_pool *strand = limited(pool, 1);
    struct strand_log *log = calloc(1, sizeof(*log));
    struct producer *prods = calloc(PRODUCERS, sizeof(*prods));
    pthread_t threads[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        prods[p].view = strand;
        for (int i = 0; i < PER_PRODUCER; i++)
            prods[p].items[i] = (struct strand_item){ log, p, i };
        cr_assert_eq(pthread_create(&threads[p], NULL, produce, &prods[p]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(threads[p], NULL);
    for (int p = 0; p < PRODUCERS; p++) {
        cr_assert_eq(prods[p].failures, 0);
        for (int i = 0; i < PER_PRODUCER; i++) {
            wait_ok(prods[p].cfs[i]);
            evexec_cfuture_release(prods[p].cfs[i]);
        }
    }
    cr_assert_eq(atomic_load(&log->gauge.max), 1, "%d strand tasks ran at once",
                 atomic_load(&log->gauge.max));
    cr_assert_eq(log->next, PRODUCERS * PER_PRODUCER);
    int last[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++)
        last[p] = -1;
    for (int at = 0; at < PRODUCERS * PER_PRODUCER; at++) {
        int p = log->producer[at];
        cr_assert_eq(log->seq[at], last[p] + 1, "producer %d: task %d ran after task %d", p,
                     log->seq[at], last[p]);
        last[p] = log->seq[at];
    }
    evexec_pool_free(strand);
    evexec_pool_free(pool);
    free(log);
    free(prods);
}

struct order_log {
    int next;
    int order[64];
};

struct order_item {
    struct order_log *log;
    int index;
};

static int order_task(void *arg, void **result)
{
    (void)result;
    struct order_item *it = arg;
    it->log->order[it->log->next++] = it->index;
    return 0;
}

Test(view, strand_starts_each_task_after_the_previous_one_and_its_callbacks_finished)
{
    struct evexec_pool *pool = pool_of(3);
    struct evexec_pool *strand = limited(pool, 1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *first = evexec_pool_submit(strand, blocking_task, &g, NULL);
    cr_assert_not_null(first);
    cr_assert(gate_wait_arrived(&g, 1));
    struct order_log log = {0};
    struct order_item items[40];
    struct evexec_cfuture *cfs[40];
    for (int i = 0; i < 40; i++) {
        items[i] = (struct order_item){ &log, i };
        cr_assert_not_null(cfs[i] = evexec_pool_submit(strand, order_task, &items[i], NULL));
    }
    /* Free threads in the parent, but the strand holds them back. */
    struct evexec_pool_stats st = stats_of(strand);
    cr_assert_eq(st.queued, 40);
    cr_assert_eq(st.running, 1);
    gate_open(&g);
    for (int i = 0; i < 40; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    wait_ok(first);
    evexec_cfuture_release(first);
    for (int i = 0; i < 40; i++)
        cr_assert_eq(log.order[i], i);
    evexec_pool_free(strand);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

/* ---- limited views ------------------------------------------------------ */

struct capped {
    struct gauge gauge;
    struct gate *gate;
};

static int capped_task(void *arg, void **result)
{
    (void)result;
    struct capped *c = arg;
    gauge_enter(&c->gauge);
    if (c->gate)
        gate_pass(c->gate);
    else
        sched_yield();
    gauge_leave(&c->gauge);
    return 0;
}

Test(view, limited_view_never_runs_more_than_max_running_at_once)
{
    struct evexec_pool *pool = pool_of(4);
    struct evexec_pool *view = limited(pool, 2);
    struct gate g;
    gate_init(&g);
    struct capped held = { .gate = &g };
    struct evexec_cfuture *cfs[6];
    for (int i = 0; i < 6; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(view, capped_task, &held, NULL));
    cr_assert(gate_wait_arrived(&g, 2));
    struct evexec_pool_stats st = stats_of(view);
    cr_assert_eq(st.running, 2);
    cr_assert_eq(st.queued, 4, "the view let more than 2 tasks go");
    assert_balanced(&st);
    gate_open(&g);
    for (int i = 0; i < 6; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&held.gauge.max), 2);
    /* And under load from several threads, with yielding tasks. */
    struct capped free_running = {0};
    struct evexec_cfuture *more[300];
    for (int i = 0; i < 300; i++)
        cr_assert_not_null(more[i] = evexec_pool_submit(view, capped_task, &free_running, NULL));
    for (int i = 0; i < 300; i++) {
        wait_ok(more[i]);
        evexec_cfuture_release(more[i]);
    }
    cr_assert_leq(atomic_load(&free_running.gauge.max), 2);
    st = stats_of(view);
    assert_balanced(&st);
    cr_assert_eq(st.completed, 306);
    cr_assert_eq(st.threads, 0, "a view has no threads of its own");
    cr_assert_eq(st.threads_started, 0);
    evexec_pool_free(view);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(view, slow_work_on_a_limited_view_leaves_the_parents_other_threads_free)
{
    struct evexec_pool *pool = pool_of(3);
    struct evexec_pool *slow = limited(pool, 2);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *scans[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(scans[i] = evexec_pool_submit(slow, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 2));
    /* Two threads are stuck in slow work; the third serves everyone else. */
    atomic_int runs = 0;
    for (int i = 0; i < 10; i++) {
        struct evexec_cfuture *quick = evexec_pool_submit(pool, count_task, &runs, NULL);
        cr_assert_not_null(quick);
        cr_assert_eq(evexec_cfuture_result(quick, HANG_BOUND_MS / 2, NULL), 0,
                     "quick work waited behind the slow view");
        evexec_cfuture_release(quick);
    }
    cr_assert_eq(gate_arrived(&g), 2);
    gate_open(&g);
    for (int i = 0; i < 5; i++) {
        wait_ok(scans[i]);
        evexec_cfuture_release(scans[i]);
    }
    evexec_pool_free(slow);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(view, full_view_queue_rejects_with_eagain)
{
    struct evexec_pool *pool = pool_of(2);
    struct evexec_view_config cfg = { .max_running = 1, .max_queued = 2 };
    struct evexec_pool *view = evexec_pool_new_view(pool, &cfg);
    cr_assert_not_null(view);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *running = evexec_pool_submit(view, blocking_task, &g, NULL);
    cr_assert_not_null(running);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *q1 = evexec_pool_submit(view, count_task, &runs, NULL);
    struct evexec_cfuture *q2 = evexec_pool_submit(view, count_task, &runs, NULL);
    cr_assert_not_null(q1);
    cr_assert_not_null(q2);
    errno = 0;
    cr_assert_null(evexec_pool_submit(view, count_task, &runs, NULL));
    cr_assert_eq(errno, EAGAIN);
    /* The parent's own queue is not the view's. */
    struct evexec_cfuture *direct = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(direct);
    wait_ok(direct);
    gate_open(&g);
    wait_ok(q1);
    wait_ok(q2);
    wait_ok(running);
    cr_assert_eq(atomic_load(&runs), 3);
    cr_assert_eq(stats_of(view).submitted, 3);
    evexec_cfuture_release(running);
    evexec_cfuture_release(q1);
    evexec_cfuture_release(q2);
    evexec_cfuture_release(direct);
    evexec_pool_free(view);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

/* ---- cancel and shutdown ------------------------------------------------ */

/* A strand held by a gated first task, with n counting tasks queued. */
struct held_view {
    struct evexec_pool *pool, *view;
    struct gate gate;
    struct evexec_cfuture *blocker;
    struct evexec_cfuture *queued[8];
    int n;
    atomic_int runs;
};

static void held_view_init(struct held_view *h, unsigned parent_workers, int n)
{
    h->pool = pool_of(parent_workers);
    h->view = limited(h->pool, 1);
    gate_init(&h->gate);
    atomic_init(&h->runs, 0);
    h->n = n;
    h->blocker = evexec_pool_submit(h->view, blocking_task, &h->gate, NULL);
    cr_assert_not_null(h->blocker);
    cr_assert(gate_wait_arrived(&h->gate, 1));
    for (int i = 0; i < n; i++)
        cr_assert_not_null(h->queued[i] = evexec_pool_submit(h->view, count_task, &h->runs, NULL));
}

static void held_view_fini(struct held_view *h)
{
    evexec_cfuture_release(h->blocker);
    for (int i = 0; i < h->n; i++)
        evexec_cfuture_release(h->queued[i]);
    evexec_pool_free(h->view);
    evexec_pool_free(h->pool);
    gate_destroy(&h->gate);
}

Test(view, cancelled_queued_view_task_never_runs)
{
    struct held_view h;
    held_view_init(&h, 2, 3);
    cr_assert(evexec_cfuture_cancel(h.queued[1]));
    gate_open(&h.gate);
    wait_ok(h.queued[0]);
    wait_ok(h.queued[2]);
    cr_assert_eq(evexec_cfuture_result(h.queued[1], 0, NULL), ECANCELED);
    cr_assert_eq(evexec_pool_shutdown(h.view, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&h.runs), 2);
    struct evexec_pool_stats st = stats_of(h.view);
    assert_balanced(&st);
    cr_assert_eq(st.cancelled, 1);
    held_view_fini(&h);
}

Test(view, view_shutdown_cancel_pending_cancels_its_queue_and_leaves_the_parent_working)
{
    struct held_view h;
    held_view_init(&h, 2, 4);
    cr_assert_eq(evexec_pool_shutdown(h.view, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(evexec_cfuture_state(h.queued[i]), EVEXEC_CANCELLED);
    cr_assert_eq(evexec_cfuture_state(h.blocker), EVEXEC_RUNNING);
    errno = 0;
    cr_assert_null(evexec_pool_submit(h.view, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    struct evexec_cfuture *direct = evexec_pool_submit(h.pool, noop_task, NULL, NULL);
    cr_assert_not_null(direct, "the parent stopped with its view");
    wait_ok(direct);
    evexec_cfuture_release(direct);
    gate_open(&h.gate);
    cr_assert_eq(evexec_pool_shutdown(h.view, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&h.runs), 0);
    struct evexec_pool_stats st = stats_of(h.view);
    assert_balanced(&st);
    cr_assert_eq(st.cancelled, 4);
    held_view_fini(&h);
}

Test(view, view_shutdown_without_wait_still_runs_its_queue_and_refuses_new_work)
{
    struct held_view h;
    held_view_init(&h, 2, 4);
    cr_assert_eq(evexec_pool_shutdown(h.view, 0), 0);
    errno = 0;
    cr_assert_null(evexec_pool_submit(h.view, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    gate_open(&h.gate);
    for (int i = 0; i < 4; i++)
        wait_ok(h.queued[i]);
    cr_assert_eq(atomic_load(&h.runs), 4);
    held_view_fini(&h);
}

Test(view, view_shutdown_wait_waits_for_the_views_tasks_not_the_parents)
{
    struct evexec_pool *pool = pool_of(3);
    struct evexec_pool *view = limited(pool, 1);
    struct gate parent_gate, view_gate;
    gate_init(&parent_gate);
    gate_init(&view_gate);
    /* The parent has a task of its own that stays blocked throughout. */
    struct evexec_cfuture *own = evexec_pool_submit(pool, blocking_task, &parent_gate, NULL);
    cr_assert_not_null(own);
    cr_assert(gate_wait_arrived(&parent_gate, 1));
    struct evexec_cfuture *vt = evexec_pool_submit(view, blocking_task, &view_gate, NULL);
    cr_assert_not_null(vt);
    atomic_int runs = 0;
    struct evexec_cfuture *behind = evexec_pool_submit(view, count_task, &runs, NULL);
    cr_assert_not_null(behind);
    cr_assert(gate_wait_arrived(&view_gate, 1));
    gate_open(&view_gate);
    cr_assert_eq(evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT), 0);
    /* Returned: the view's tasks are done, the parent's is still running. */
    cr_assert_eq(evexec_cfuture_result(vt, 0, NULL), 0);
    cr_assert_eq(evexec_cfuture_result(behind, 0, NULL), 0);
    cr_assert_eq(evexec_cfuture_state(own), EVEXEC_RUNNING);
    gate_open(&parent_gate);
    wait_ok(own);
    evexec_cfuture_release(own);
    evexec_cfuture_release(vt);
    evexec_cfuture_release(behind);
    evexec_pool_free(view);
    evexec_pool_free(pool);
    gate_destroy(&parent_gate);
    gate_destroy(&view_gate);
}

struct self_wait {
    struct evexec_pool *target;
    int rc;
};

static int shutdown_wait_task(void *arg, void **result)
{
    (void)result;
    struct self_wait *s = arg;
    s->rc = evexec_pool_shutdown(s->target, EVEXEC_SHUTDOWN_WAIT);
    return 0;
}

Test(view, view_shutdown_wait_from_its_own_task_or_a_nested_views_task_is_edeadlk)
{
    struct evexec_pool *pool = pool_of(2);
    struct evexec_pool *outer = limited(pool, 2);
    struct evexec_pool *inner = limited(outer, 1);
    struct self_wait own = { outer, -1 }, nested = { outer, -1 }, parent = { pool, -1 };
    struct evexec_cfuture *a = evexec_pool_submit(outer, shutdown_wait_task, &own, NULL);
    struct evexec_cfuture *b = evexec_pool_submit(inner, shutdown_wait_task, &nested, NULL);
    struct evexec_cfuture *c = evexec_pool_submit(inner, shutdown_wait_task, &parent, NULL);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_not_null(c);
    wait_ok(a);
    wait_ok(b);
    wait_ok(c);
    cr_assert_eq(own.rc, EDEADLK);
    cr_assert_eq(nested.rc, EDEADLK);
    cr_assert_eq(parent.rc, EDEADLK, "a view's task runs on the parent's worker");
    /* Nothing changed: the view still takes work. */
    struct evexec_cfuture *later = evexec_pool_submit(outer, noop_task, NULL, NULL);
    cr_assert_not_null(later);
    wait_ok(later);
    evexec_cfuture_release(a);
    evexec_cfuture_release(b);
    evexec_cfuture_release(c);
    evexec_cfuture_release(later);
    evexec_pool_free(inner);
    evexec_pool_free(outer);
    evexec_pool_free(pool);
}

/* ---- the parent goes first ---------------------------------------------- */

static void *free_pool_thread(void *arg)
{
    evexec_pool_free(arg);
    return NULL;
}

Test(view, freeing_the_parent_first_runs_the_views_queue_then_the_view_refuses_work)
{
    struct evexec_pool *pool = pool_of(2);
    struct evexec_pool *view = limited(pool, 1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *first = evexec_pool_submit(view, blocking_task, &g, NULL);
    cr_assert_not_null(first);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(view, count_task, &runs, NULL));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_pool_thread, pool), 0);
    gate_open(&g);
    pthread_join(t, NULL); /* the parent is freed */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), 0, "a view task was lost");
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&runs), 5);
    errno = 0;
    cr_assert_null(evexec_pool_submit(view, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    struct evexec_pool_stats st = stats_of(view);
    assert_balanced(&st);
    cr_assert_eq(evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT), 0);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(view, 1));
    cr_assert_eq(errno, ESHUTDOWN);
    evexec_cfuture_release(first);
    evexec_pool_free(view); /* frees the parent's memory too */
    gate_destroy(&g);
}

Test(view, parent_shutdown_cancel_pending_cancels_the_views_queued_tasks)
{
    struct evexec_pool *pool = pool_of(1);
    struct gate g;
    gate_init(&g);
    /* The parent's only worker is held, so the view's turn stays queued. */
    struct evexec_cfuture *own = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(own);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_pool *view = limited(pool, 2);
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(view, count_task, &runs, NULL));
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), ECANCELED);
    struct evexec_pool_stats st = stats_of(view);
    assert_balanced(&st);
    cr_assert_eq(st.cancelled, 4);
    cr_assert_eq(st.queued, 0);
    errno = 0;
    cr_assert_null(evexec_pool_submit(view, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    gate_open(&g);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&runs), 0);
    for (int i = 0; i < 4; i++)
        evexec_cfuture_release(cfs[i]);
    evexec_cfuture_release(own);
    evexec_pool_free(view);
    gate_destroy(&g);
}

/* Done callback of a task its parent's CANCEL_PENDING strands: waits for
 * the view from there, and records what the shutdown said. */
struct stranded_cb {
    struct evexec_pool *view;
    int rc;
    atomic_int runs;
};

static void wait_for_view_cb(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    struct stranded_cb *s = arg;
    if (atomic_fetch_add(&s->runs, 1) > 0)
        return;
    s->rc = evexec_pool_shutdown(s->view, EVEXEC_SHUTDOWN_WAIT);
}

Test(view, shutdown_wait_from_the_callback_of_a_task_its_parent_stranded_is_edeadlk)
{
    struct evexec_pool *pool = pool_of(1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *own = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(own);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_pool *view = limited(pool, 1);
    struct evexec_cfuture *cfs[3];
    struct stranded_cb s = { .view = view, .rc = -1 };
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(view, noop_task, NULL, NULL));
    cr_assert_eq(evexec_cfuture_add_done_callback(cfs[0], wait_for_view_cb, &s), 0);
    /* The cancelled turn takes the view's queue down on this thread, and the
     * first task's callback runs before the others are cancelled: a wait
     * there would wait for this very thread. It used to return 0 with the
     * view's other tasks still pending. */
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    cr_assert_eq(atomic_load(&s.runs), 1);
    cr_assert_eq(s.rc, EDEADLK, "shutdown(WAIT) from the callback gave %d", s.rc);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), ECANCELED);
    /* Once the settling is over, the view is idle and a wait returns. */
    cr_assert_eq(evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT), 0);
    gate_open(&g);
    evexec_pool_free(pool);
    for (int i = 0; i < 3; i++)
        evexec_cfuture_release(cfs[i]);
    evexec_cfuture_release(own);
    evexec_pool_free(view);
    gate_destroy(&g);
}

static int failing_init(void *ctx)
{
    (void)ctx;
    return 1;
}

Test(view, tasks_of_a_view_on_a_broken_pool_fail_with_evexec_ebroken)
{
    struct evexec_pool_config cfg = { .max_workers = 1, .thread_init = failing_init };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_pool *view = limited(pool, 1);
    struct evexec_cfuture *a = evexec_pool_submit(view, noop_task, NULL, NULL);
    cr_assert_not_null(a);
    cr_assert_eq(evexec_cfuture_result(a, HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
    errno = 0;
    cr_assert_null(evexec_pool_submit(view, noop_task, NULL, NULL));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(pool, 1));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    struct evexec_pool_stats st = stats_of(view);
    assert_balanced(&st);
    cr_assert_eq(st.failed, 1);
    evexec_cfuture_release(a);
    evexec_pool_free(view);
    evexec_pool_free(pool);
}

/* ---- views of views ----------------------------------------------------- */

struct two_gauges {
    struct gauge outer, inner;
};

static int nested_task(void *arg, void **result)
{
    (void)result;
    struct gauge *g = arg;
    gauge_enter(g);
    for (int i = 0; i < 20; i++)
        sched_yield();
    gauge_leave(g);
    return 0;
}

Test(view, a_view_of_a_view_obeys_both_limits)
{
    struct evexec_pool *pool = pool_of(4);
    struct evexec_pool *outer = limited(pool, 2);
    struct evexec_pool *inner = limited(outer, 1);
    struct gauge both = {0}, in_inner = {0};
    struct evexec_cfuture *cfs[200];
    for (int i = 0; i < 200; i++) {
        /* Half go to the inner strand, half straight to the outer view; the
         * outer gauge counts both. */
        cfs[i] = evexec_pool_submit(i % 2 ? inner : outer, nested_task,
                                    i % 2 ? &in_inner : &both, NULL);
        cr_assert_not_null(cfs[i]);
    }
    for (int i = 0; i < 200; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&in_inner.max), 1);
    cr_assert_leq(atomic_load(&both.max), 2);
    struct evexec_pool_stats st = stats_of(inner);
    assert_balanced(&st);
    cr_assert_eq(st.completed, 100);
    evexec_pool_free(inner);
    evexec_pool_free(outer);
    evexec_pool_free(pool);
}

/* ---- the loop side, workers, fork, bad input ---------------------------- */

struct rie_record {
    int next;
    int order[32];
};

struct rie_item {
    struct rie_record *rec;
    int index;
};

static int rie_task(void *arg, void **result)
{
    struct rie_item *it = arg;
    it->rec->order[it->rec->next++] = it->index;
    int *r = malloc(sizeof(*r));
    *r = it->index;
    *result = r;
    return 0;
}

static void count_done(struct evexec_future *f, void *arg)
{
    (void)f;
    (*(int *)arg)++;
}

Test(view, run_in_executor_on_a_strand_delivers_every_outcome_once_in_order)
{
    make_loop();
    struct evexec_pool *pool = pool_of(3);
    struct evexec_pool *strand = limited(pool, 1);
    struct rie_record rec = {0};
    struct rie_item items[20];
    struct evexec_future *fs[20];
    int done = 0;
    for (int i = 0; i < 20; i++) {
        items[i] = (struct rie_item){ &rec, i };
        fs[i] = evexec_run_in_executor(loop, strand, rie_task, &items[i], free);
        cr_assert_not_null(fs[i]);
        cr_assert_eq(evexec_future_add_done_callback(fs[i], count_done, &done), 0);
    }
    evexec_future_cancel(fs[19]); /* queued or not: one outcome either way */
    dispatch();
    cr_assert_eq(done, 20, "%d done callbacks for 20 futures", done);
    for (int i = 0; i < 19; i++) {
        void *r = NULL;
        cr_assert_eq(evexec_future_result(fs[i], &r), 0);
        cr_assert_eq(*(int *)r, i);
        evexec_future_release(fs[i]);
    }
    cr_assert(evexec_future_cancelled(fs[19]));
    evexec_future_release(fs[19]);
    for (int i = 0; i < rec.next; i++)
        cr_assert_eq(rec.order[i], i);
    free_loop();
    evexec_pool_free(strand);
    evexec_pool_free(pool);
}

struct where {
    unsigned index;
    void *state;
};

static int where_task(void *arg, void **result)
{
    (void)result;
    struct where *w = arg;
    w->index = evexec_worker_index();
    w->state = evexec_worker_state();
    return 0;
}

static int state_init(void *ctx)
{
    evexec_worker_set_state(ctx);
    return 0;
}

Test(view, a_views_task_sees_the_parents_worker_index_and_state)
{
    int marker;
    struct evexec_pool_config cfg = { .max_workers = 1, .thread_init = state_init,
                                      .thread_ctx = &marker };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_pool *middle = limited(pool, 1);
    struct evexec_pool *view = limited(middle, 1);
    struct where w = { UINT_MAX, NULL };
    struct evexec_cfuture *cf = evexec_pool_submit(view, where_task, &w, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    cr_assert_eq(w.index, 0);
    cr_assert_eq(w.state, &marker);
    evexec_pool_free(view);
    evexec_pool_free(middle);
    evexec_pool_free(pool);
}

Test(view, an_inherited_view_answers_evexec_eforked_in_the_child)
{
    struct evexec_pool *pool = pool_of(1);
    struct evexec_pool *view = limited(pool, 1);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int bad = 0;
        errno = 0;
        if (evexec_pool_submit(view, noop_task, NULL, NULL) || errno != EVEXEC_EFORKED)
            bad |= 1;
        errno = 0;
        if (evexec_pool_new_limited(pool, 1) || errno != EVEXEC_EFORKED)
            bad |= 2;
        struct evexec_pool_stats st;
        if (evexec_pool_get_stats(view, &st) != EVEXEC_EFORKED)
            bad |= 4;
        if (evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT) != EVEXEC_EFORKED)
            bad |= 8;
        evexec_pool_free(view); /* leaked, as documented; must not hang */
        _exit(bad);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    cr_assert_eq(WEXITSTATUS(status), 0, "child's checks failed: mask %d", WEXITSTATUS(status));
    evexec_pool_free(view);
    evexec_pool_free(pool);
}

Test(view, bad_arguments_to_new_limited_and_new_view_are_einval)
{
    struct evexec_pool *pool = pool_of(1);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(NULL, 1));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(pool, 0));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_pool_new_view(pool, NULL));
    cr_assert_eq(errno, EINVAL);
    struct evexec_view_config cfg = { .max_running = 1 };
    cfg.reserved[0] = 1;
    errno = 0;
    cr_assert_null(evexec_pool_new_view(pool, &cfg));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(pool, 1));
    cr_assert_eq(errno, ESHUTDOWN);
    evexec_pool_free(pool);
}

/* Two levels up: the view in between is still open, so the refusal can only
 * come from the root. */
Test(view, a_view_whose_grandparent_shut_down_or_broke_refuses_new_views_and_work_with_its_error)
{
    struct evexec_pool *stopped = pool_of(1);
    struct evexec_pool *middle = limited(stopped, 2);
    struct evexec_pool *inner = limited(middle, 1);
    cr_assert_eq(evexec_pool_shutdown(stopped, 0), 0);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(inner, 1));
    cr_assert_eq(errno, ESHUTDOWN);
    errno = 0;
    cr_assert_null(evexec_pool_submit(inner, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    evexec_pool_free(inner);
    evexec_pool_free(middle);
    evexec_pool_free(stopped);

    struct evexec_pool_config cfg = { .max_workers = 1, .thread_init = failing_init };
    struct evexec_pool *broken = evexec_pool_new(&cfg);
    cr_assert_not_null(broken);
    middle = limited(broken, 2);
    inner = limited(middle, 1);
    /* The first task's worker fails its init and breaks the root. */
    struct evexec_cfuture *first = evexec_pool_submit(broken, noop_task, NULL, NULL);
    cr_assert_not_null(first);
    cr_assert_eq(evexec_cfuture_result(first, HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
    errno = 0;
    cr_assert_null(evexec_pool_new_limited(inner, 1));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    errno = 0;
    cr_assert_null(evexec_pool_submit(inner, noop_task, NULL, NULL));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    evexec_cfuture_release(first);
    evexec_pool_free(inner);
    evexec_pool_free(middle);
    evexec_pool_free(broken);
}

struct self_free {
    struct evexec_pool *view;
    struct gate *gate;
};

static int free_own_view_task(void *arg, void **result)
{
    (void)result;
    struct self_free *s = arg;
    gate_pass(s->gate);
    evexec_pool_free(s->view);
    return 0;
}

Test(view, a_view_freed_from_its_own_task_cancels_its_queue_and_goes_with_its_last_task)
{
#ifdef EVEXEC_DEBUG
    cr_skip_test("debug builds abort on evexec_pool_free from a pool's own task");
#endif
    struct evexec_pool *pool = pool_of(2);
    struct evexec_pool *view = limited(pool, 1);
    struct gate g;
    gate_init(&g);
    struct self_free s = { view, &g };
    struct evexec_cfuture *self = evexec_pool_submit(view, free_own_view_task, &s, NULL);
    cr_assert_not_null(self);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *behind = evexec_pool_submit(view, count_task, &runs, NULL);
    cr_assert_not_null(behind);
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_result(self, HANG_BOUND_MS, NULL), 0);
    cr_assert_eq(evexec_cfuture_result(behind, HANG_BOUND_MS, NULL), ECANCELED);
    cr_assert_eq(atomic_load(&runs), 0);
    evexec_cfuture_release(self);
    evexec_cfuture_release(behind);
    evexec_pool_free(pool); /* the view is gone already; valgrind sees no leak */
    gate_destroy(&g);
}

Test(view, freeing_the_middle_of_three_first_runs_the_inner_views_queue)
{
    struct evexec_pool *pool = pool_of(2);
    struct evexec_pool *middle = limited(pool, 2);
    struct evexec_pool *inner = limited(middle, 1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *first = evexec_pool_submit(inner, blocking_task, &g, NULL);
    cr_assert_not_null(first);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[6];
    for (int i = 0; i < 6; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(inner, count_task, &runs, NULL));
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, free_pool_thread, middle), 0);
    gate_open(&g);
    pthread_join(t, NULL);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), 0, "an inner task was lost");
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&runs), 6);
    errno = 0;
    cr_assert_null(evexec_pool_submit(inner, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    /* The root is untouched. */
    struct evexec_cfuture *direct = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(direct);
    wait_ok(direct);
    evexec_cfuture_release(direct);
    evexec_cfuture_release(first);
    evexec_pool_free(inner);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

/* The order the tasks of the next test ran in. */
static _Atomic unsigned yield_seq;
struct yield_task {
    struct gate *gate; /* the first one holds the only worker */
    unsigned ran_at;
};

static int yield_work(void *arg, void **result)
{
    (void)result;
    struct yield_task *t = arg;
    if (t->gate)
        gate_pass(t->gate);
    t->ran_at = atomic_fetch_add(&yield_seq, 1);
    return 0;
}

/* While every worker is busy the parent takes submissions without its lock;
 * such a task must still count as the parent's other work, to which a
 * view's pump hands its slot after each task. */
Test(view, a_views_slot_goes_to_parent_work_submitted_while_every_worker_was_busy)
{
    struct evexec_pool *pool = pool_of(1);
    struct evexec_pool *view = limited(pool, 1);
    struct gate gate;
    gate_init(&gate);
    struct yield_task v1 = { &gate, 0 }, v2 = { NULL, 0 }, v3 = { NULL, 0 }, p1 = { NULL, 0 };
    struct evexec_cfuture *f[4];
    cr_assert_not_null(f[0] = evexec_pool_submit(view, yield_work, &v1, NULL));
    cr_assert(gate_wait_arrived(&gate, 1));
    cr_assert_not_null(f[1] = evexec_pool_submit(view, yield_work, &v2, NULL));
    cr_assert_not_null(f[2] = evexec_pool_submit(view, yield_work, &v3, NULL));
    cr_assert_not_null(f[3] = evexec_pool_submit(pool, yield_work, &p1, NULL));
    gate_open(&gate);
    for (int i = 0; i < 4; i++) {
        wait_ok(f[i]);
        evexec_cfuture_release(f[i]);
    }
    cr_assert_eq(v1.ran_at, 0);
    cr_assert_eq(p1.ran_at, 1, "the parent's task ran %u-th, after the view's queue",
                 p1.ran_at + 1);
    cr_assert(v2.ran_at < v3.ran_at);
    evexec_pool_free(view);
    evexec_pool_free(pool);
    gate_destroy(&gate);
}
