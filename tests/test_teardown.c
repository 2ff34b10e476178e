/*
 * test_teardown.c -- tearing things down with work in flight, and re-entrant
 * calls from done callbacks:
 *   - evexec_loop_free with queued, running and completed-but-undelivered
 *     work, queued call_soon callbacks and queued done callbacks: nothing of
 *     the loop runs afterwards, queued tasks never run, late results are
 *     freed exactly once, and it never blocks on running work;
 *   - evexec_pool_free (and shutdown with CANCEL_PENDING) while a loop still
 *     holds chained futures: the loop delivers them afterwards;
 *   - pool shutdown, release, cancel and submit from inside done callbacks;
 *     a done callback that frees its loop's other futures; one that frees
 *     the loop itself;
 *   - cancel racing completion, 10k times, on concurrent futures and on loop
 *     futures: the invariants (cancel true => the task never ran; every
 *     result freed exactly once; every done callback run exactly once) are
 *     asserted; the split between the two outcomes is reported.
 *
 * Also run under valgrind (VALGRIND_SUITES), where the race loops are
 * shortened. Work functions and callbacks record; the main thread asserts.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#define TESTUTIL_POOL_HELPERS /* new_pool, stats_of, assert_balanced */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"

TestSuite(teardown, .timeout = 120, .fini = fail_on_leaks);

/* ---- helpers (sleep_ms, HANG_BOUND_MS and the gate: testutil.h) -------- */

/* Results: counted when made and when freed. */
static atomic_int results_made, results_freed;

static void result_free(void *p)
{
    atomic_fetch_add(&results_freed, 1);
    free(p);
}

static int *make_result(int value)
{
    int *r = malloc(sizeof(*r));
    *r = value;
    atomic_fetch_add(&results_made, 1);
    return r;
}

/* A task that records that it ran and returns its argument as a result. */
struct task {
    atomic_int ran;
    int value;
    struct gate *gate; /* NULL: do not wait */
};

static int work_task(void *arg, void **result)
{
    struct task *t = arg;
    atomic_fetch_add(&t->ran, 1);
    if (t->gate) {
        pthread_mutex_lock(&t->gate->lock);
        t->gate->arrived++;
        pthread_cond_broadcast(&t->gate->cond);
        while (!t->gate->open)
            pthread_cond_wait(&t->gate->cond, &t->gate->lock);
        pthread_mutex_unlock(&t->gate->lock);
    }
    *result = make_result(t->value);
    return 0;
}

static void counts_reset(void)
{
    atomic_store(&results_made, 0);
    atomic_store(&results_freed, 0);
}

/* Results freed by a detached default-pool worker may lag: settle, bounded. */
static void assert_results_balanced(void)
{
    for (int i = 0; i < HANG_BOUND_MS / 5; i++) {
        if (atomic_load(&results_freed) == atomic_load(&results_made))
            break;
        sleep_ms(5);
    }
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made),
                 "%d results made, %d freed", atomic_load(&results_made),
                 atomic_load(&results_freed));
}

/* In ASan builds, LeakSanitizer must find nothing at the end of a test
 * (a leak at exit alone would not fail it). */
static void assert_no_leaks(void)
{
#ifdef TESTUTIL_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks");
#endif
}

/* A done callback counting its runs in an int the test owns. */
static void count_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    (*(int *)arg)++;
}

static void count_soon(void *arg)
{
    (*(int *)arg)++;
}

/* Wait (bounded) until the pool counted n tasks as done or cancelled: its
 * workers are then past posting their completions. */
static void pool_wait_settled(struct evexec_pool *pool, uint64_t n)
{
    struct evexec_pool_stats st;
    for (int i = 0; i < HANG_BOUND_MS; i++) {
        cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
        if (st.completed + st.cancelled >= n)
            return;
        sleep_ms(1);
    }
    cr_assert_fail("pool did not settle: %llu done of %llu",
                   (unsigned long long)(st.completed + st.cancelled), (unsigned long long)n);
}

/* ---- evexec_loop_free with work in flight ------------------------------- */

Test(teardown, loop_free_cancels_queued_running_and_undelivered_work_and_runs_nothing_after)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *busy = new_pool(1), *quick = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct task running = { .value = 1, .gate = &g };
    struct task queued1 = { .value = 2 }, queued2 = { .value = 3 }, undelivered = { .value = 4 };
    int cbs = 0, soon = 0;

    struct evexec_future *f_running = evexec_run_in_executor(loop, busy, work_task, &running, result_free);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_future *f_q1 = evexec_run_in_executor(loop, busy, work_task, &queued1, result_free);
    struct evexec_future *f_q2 = evexec_run_in_executor(loop, busy, work_task, &queued2, result_free);
    struct evexec_future *f_und = evexec_run_in_executor(loop, quick, work_task, &undelivered, result_free);
    cr_assert_not_null(f_running);
    cr_assert_not_null(f_q1);
    cr_assert_not_null(f_q2);
    cr_assert_not_null(f_und);
    pool_wait_settled(quick, 1); /* finished and posted, never drained */

    /* A plain future done with its callbacks queued, and a queued call_soon. */
    struct evexec_future *f_done = evexec_future_new(loop);
    cr_assert_eq(evexec_future_set_result(f_done, make_result(5), result_free), 0);
    struct evexec_future *all[] = { f_running, f_q1, f_q2, f_und, f_done };
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(evexec_future_add_done_callback(all[i], count_cb, &cbs), 0);
    cr_assert_eq(evexec_call_soon(loop, count_soon, &soon), 0);

    evexec_loop_free(loop);

    for (size_t i = 0; i < 4; i++) {
        cr_assert(evexec_future_done(all[i]), "future %zu left pending", i);
        cr_assert(evexec_future_cancelled(all[i]), "future %zu not cancelled", i);
        cr_assert_eq(evexec_future_result(all[i], NULL), ECANCELED);
    }
    cr_assert_eq(evexec_future_result(f_done, NULL), 0, "a done future stays done");
    cr_assert_eq(atomic_load(&results_freed), 1, "the undelivered result was freed at once");

    /* The running task ends later: its result is disposed of, once. */
    gate_open(&g);
    evexec_pool_free(busy);
    evexec_pool_free(quick);
    cr_assert_eq(atomic_load(&running.ran), 1);
    cr_assert_eq(atomic_load(&queued1.ran), 0, "a queued task ran after loop_free");
    cr_assert_eq(atomic_load(&queued2.ran), 0, "a queued task ran after loop_free");
    cr_assert_eq(atomic_load(&results_freed), 2, "the late result is freed by the time its pool is");

    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(cbs, 0, "a done callback ran after evexec_loop_free");
    cr_assert_eq(soon, 0, "a call_soon callback ran after evexec_loop_free");
    for (size_t i = 0; i < 5; i++)
        evexec_future_release(all[i]);
    assert_results_balanced();
    event_base_free(base);
    gate_destroy(&g);
    assert_no_leaks();
}

Test(teardown, loop_free_never_blocks_on_running_default_pool_work)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    /* The default pool has min(32, CPUs + 4) workers: hold them all and
     * queue one more task behind them. */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = cpus < 1 ? 5 : (cpus + 4 < 32 ? (unsigned)cpus + 4 : 32);
    static struct gate g; /* touched by detached workers after the test's frame */
    gate_init(&g);
    static struct task held[33];           /* static: see the end */
    static struct evexec_future *fs[33];
    int cbs = 0;
    for (unsigned i = 0; i <= nthreads; i++) {
        held[i].value = (int)i;
        held[i].gate = &g;
        fs[i] = evexec_run_in_executor(loop, NULL, work_task, &held[i], result_free);
        cr_assert_not_null(fs[i]);
        cr_assert_eq(evexec_future_add_done_callback(fs[i], count_cb, &cbs), 0);
        if (i < nthreads)
            cr_assert(gate_wait_arrived(&g, i + 1), "worker %u never started", i);
    }
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(evexec_loop_default_pool(loop), &st), 0);
    cr_assert_eq(st.threads, nthreads);
    cr_assert_eq(st.queued, 1);

    evexec_loop_free(loop); /* the gate is closed: returning proves it did not wait */

    for (unsigned i = 0; i <= nthreads; i++)
        cr_assert(evexec_future_cancelled(fs[i]));
    gate_open(&g);
    for (unsigned i = 0; i <= nthreads; i++)
        evexec_future_release(fs[i]);
    /* The detached workers finish their tasks and free the late results. */
    for (int i = 0; i < HANG_BOUND_MS / 5 && atomic_load(&results_made) < (int)nthreads; i++)
        sleep_ms(5);
    cr_assert_eq(atomic_load(&results_made), (int)nthreads);
    assert_results_balanced();
    cr_assert_eq(atomic_load(&held[nthreads].ran), 0, "the queued task ran after loop_free");
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(cbs, 0);
    event_base_free(base);
    assert_no_leaks();
    /* held[] is static: a detached worker may still be returning from its
     * task when the test ends. */
}

static int work_nothing(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

/* Regression (a bug fixed in commits 5203488 and 10b7559): a
 * worker still inside its post while the loop already delivered the
 * completion, the program released the future and freed the loop. Two
 * workers completing together make the window wide; ASan sees the rest. */
Test(teardown, loop_free_right_after_completions_from_two_workers)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    int rounds = RUNNING_ON_VALGRIND ? 30 : 300;
    for (int i = 0; i < rounds; i++) {
        struct evexec_pool *a = evexec_pool_new(&cfg), *b = evexec_pool_new(&cfg);
        struct event_base *base = event_base_new();
        struct evexec_loop *loop = evexec_loop_new(base);
        struct evexec_future *fa = evexec_run_in_executor(loop, a, work_nothing, NULL, NULL);
        struct evexec_future *fb = evexec_run_in_executor(loop, b, work_nothing, NULL, NULL);
        cr_assert_not_null(fa);
        cr_assert_not_null(fb);
        cr_assert_neq(event_base_dispatch(base), -1);
        cr_assert(evexec_future_done(fa) && evexec_future_done(fb));
        evexec_future_release(fa);
        evexec_future_release(fb);
        evexec_loop_free(loop); /* the workers may still be posting */
        event_base_free(base);
        evexec_pool_free(a);
        evexec_pool_free(b);
    }
    assert_no_leaks();
}

/* ---- pools freed while loops hold chained futures ----------------------- */

Test(teardown, pool_freed_first_then_the_loop_delivers_every_result)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(2);
    enum { N = 8 };
    struct task tasks[N];
    struct evexec_future *fs[N];
    int cbs = 0;
    memset(tasks, 0, sizeof(tasks));
    for (int i = 0; i < N; i++) {
        tasks[i].value = 100 + i;
        fs[i] = evexec_run_in_executor(loop, pool, work_task, &tasks[i], result_free);
        cr_assert_not_null(fs[i]);
        cr_assert_eq(evexec_future_add_done_callback(fs[i], count_cb, &cbs), 0);
    }
    evexec_pool_free(pool); /* runs every queued task, joins, frees the pool */
    cr_assert_eq(cbs, 0, "callbacks wait for the loop");
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(cbs, N);
    for (int i = 0; i < N; i++) {
        void *res = NULL;
        cr_assert_eq(evexec_future_result(fs[i], &res), 0);
        cr_assert_eq(*(int *)res, 100 + i);
        evexec_future_release(fs[i]);
    }
    evexec_loop_free(loop);
    event_base_free(base);
    assert_results_balanced();
    assert_no_leaks();
}

Test(teardown, pool_shutdown_cancel_pending_then_free_delivers_cancellations_to_the_loop)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct task running = { .value = 1, .gate = &g }, q1 = { .value = 2 }, q2 = { .value = 3 };
    struct evexec_future *fr = evexec_run_in_executor(loop, pool, work_task, &running, result_free);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_future *f1 = evexec_run_in_executor(loop, pool, work_task, &q1, result_free);
    struct evexec_future *f2 = evexec_run_in_executor(loop, pool, work_task, &q2, result_free);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    gate_open(&g);
    evexec_pool_free(pool);
    cr_assert_neq(event_base_dispatch(base), -1);
    void *res = NULL;
    cr_assert_eq(evexec_future_result(fr, &res), 0);
    cr_assert_eq(*(int *)res, 1);
    cr_assert(evexec_future_cancelled(f1));
    cr_assert(evexec_future_cancelled(f2));
    cr_assert_eq(atomic_load(&q1.ran) + atomic_load(&q2.ran), 0);
    evexec_future_release(fr);
    evexec_future_release(f1);
    evexec_future_release(f2);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
    assert_results_balanced();
    assert_no_leaks();
}

/* ---- re-entrancy from done callbacks ------------------------------------ */

struct shutdown_ctx {
    struct evexec_pool *pool;
    struct gate *gate;
    int shutdown_rc;
    int cbs;
};

static void shutdown_from_callback(struct evexec_future *f, void *arg)
{
    (void)f;
    struct shutdown_ctx *c = arg;
    c->cbs++;
    /* Cancel what is queued, let the running task finish, and join. */
    if (!gate_wait_arrived(c->gate, 1)) {
        c->shutdown_rc = -1;
        return;
    }
    c->shutdown_rc = evexec_pool_shutdown(c->pool, EVEXEC_SHUTDOWN_CANCEL_PENDING);
    gate_open(c->gate);
    if (c->shutdown_rc == 0)
        c->shutdown_rc = evexec_pool_shutdown(c->pool, EVEXEC_SHUTDOWN_WAIT);
}

Test(teardown, pool_shutdown_from_a_done_callback_on_the_loop)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct shutdown_ctx c = { pool, &g, -2, 0 };
    struct task first = { .value = 1 }, held = { .value = 2, .gate = &g };
    struct task later[3];
    memset(later, 0, sizeof(later));
    struct evexec_future *f1 = evexec_run_in_executor(loop, pool, work_task, &first, result_free);
    struct evexec_future *fh = evexec_run_in_executor(loop, pool, work_task, &held, result_free);
    struct evexec_future *fl[3];
    int cbs = 0;
    for (int i = 0; i < 3; i++) {
        fl[i] = evexec_run_in_executor(loop, pool, work_task, &later[i], result_free);
        cr_assert_eq(evexec_future_add_done_callback(fl[i], count_cb, &cbs), 0);
    }
    cr_assert_eq(evexec_future_add_done_callback(f1, shutdown_from_callback, &c), 0);
    cr_assert_eq(evexec_future_add_done_callback(fh, count_cb, &cbs), 0);
    cr_assert_neq(event_base_dispatch(base), -1);

    cr_assert_eq(c.cbs, 1);
    cr_assert_eq(c.shutdown_rc, 0, "shutdown from the loop thread: %d", c.shutdown_rc);
    cr_assert_eq(cbs, 4, "every other future delivered its callback once");
    cr_assert_eq(evexec_future_result(fh, NULL), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert(evexec_future_cancelled(fl[i]));
        cr_assert_eq(atomic_load(&later[i].ran), 0);
        evexec_future_release(fl[i]);
    }
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, pool, work_task, &first, result_free));
    cr_assert_eq(errno, ESHUTDOWN);
    evexec_future_release(f1);
    evexec_future_release(fh);
    evexec_pool_free(pool);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
    assert_results_balanced();
    assert_no_leaks();
}

/* A callback that releases its own future, cancels a queued one, adds a
 * callback to its own (done) future, and submits the next step of a chain. */
struct reentry {
    struct evexec_loop *loop;
    struct evexec_pool *pool;
    struct evexec_future *to_cancel;
    struct gate *gate;  /* opened once to_cancel is cancelled */
    bool cancel_rc;
    int steps_left;
    int steps_done;
    int late_cb_runs;
    bool late_cb_ran_inside;
    bool in_callback;
    struct task step_task;
    struct evexec_future *last;
};

static void late_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    struct reentry *r = arg;
    r->late_cb_runs++;
    if (r->in_callback)
        r->late_cb_ran_inside = true;
}

static void step_cb(struct evexec_future *f, void *arg)
{
    struct reentry *r = arg;
    r->in_callback = true;
    r->steps_done++;
    if (r->to_cancel) {
        r->cancel_rc = evexec_future_cancel(r->to_cancel);
        r->to_cancel = NULL;
        gate_open(r->gate);
    }
    if (evexec_future_add_done_callback(f, late_cb, r) != 0)
        r->late_cb_runs = -1000;
    /* The callback owns the caller's reference of each step: drop it here. */
    evexec_future_release(f);
    if (--r->steps_left > 0) {
        struct evexec_future *next =
            evexec_run_in_executor(r->loop, r->pool, work_task, &r->step_task, result_free);
        if (!next || evexec_future_add_done_callback(next, step_cb, r) != 0)
            r->steps_left = -1000;
    }
    r->in_callback = false;
}

Test(teardown, release_cancel_submit_and_add_callbacks_from_inside_done_callbacks)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(1);
    struct evexec_pool *blocked = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct task hold = { .value = 9, .gate = &g }, never = { .value = 10 };
    struct evexec_future *fhold = evexec_run_in_executor(loop, blocked, work_task, &hold, result_free);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_future *fnever = evexec_run_in_executor(loop, blocked, work_task, &never, result_free);
    int never_cbs = 0;
    cr_assert_eq(evexec_future_add_done_callback(fnever, count_cb, &never_cbs), 0);

    struct reentry r;
    memset(&r, 0, sizeof(r));
    r.loop = loop;
    r.pool = pool;
    r.to_cancel = fnever;
    r.gate = &g;
    r.steps_left = 50;
    r.step_task.value = 7;
    struct evexec_future *first = evexec_run_in_executor(loop, pool, work_task, &r.step_task, result_free);
    cr_assert_eq(evexec_future_add_done_callback(first, step_cb, &r), 0);

    /* The first step cancels fnever (queued behind fhold), then opens the
     * gate; fhold is delivered afterwards. */
    cr_assert_neq(event_base_dispatch(base), -1);

    cr_assert_eq(r.steps_left, 0, "a step failed to submit the next (%d)", r.steps_left);
    cr_assert_eq(r.steps_done, 50);
    cr_assert_eq(atomic_load(&r.step_task.ran), 50);
    cr_assert_eq(r.late_cb_runs, 50, "a callback added from a callback runs, once");
    cr_assert_eq(r.late_cb_ran_inside, false, "it must not run inside the call that added it");
    cr_assert(r.cancel_rc);
    cr_assert(evexec_future_cancelled(fnever));
    cr_assert_eq(never_cbs, 1);
    evexec_pool_free(blocked);
    cr_assert_eq(atomic_load(&never.ran), 0, "cancelled from a callback while queued: never runs");
    evexec_future_release(fhold);
    evexec_future_release(fnever);
    evexec_pool_free(pool);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
    assert_results_balanced();
    assert_no_leaks();
}

/* A done callback that drops the last references of the loop's other
 * futures: a pending plain one, a done one whose callbacks are queued, and a
 * chained one still running. */
struct dropper {
    struct evexec_future *victims[3];
    int runs;
};

static void drop_others(struct evexec_future *f, void *arg)
{
    (void)f;
    struct dropper *d = arg;
    d->runs++;
    for (int i = 0; i < 3; i++) {
        evexec_future_release(d->victims[i]);
        d->victims[i] = NULL;
    }
}

Test(teardown, done_callback_releasing_the_loops_other_futures)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct task chained = { .value = 3, .gate = &g };
    struct dropper d = { { NULL, NULL, NULL }, 0 };
    int pending_cbs = 0, done_cbs = 0, chained_cbs = 0;

    struct evexec_future *trigger = evexec_future_new(loop);
    struct evexec_future *pending = evexec_future_new(loop);
    struct evexec_future *done = evexec_future_new(loop);
    struct evexec_future *running = evexec_run_in_executor(loop, pool, work_task, &chained, result_free);
    cr_assert(gate_wait_arrived(&g, 1));
    cr_assert_eq(evexec_future_add_done_callback(trigger, drop_others, &d), 0);
    cr_assert_eq(evexec_future_add_done_callback(pending, count_cb, &pending_cbs), 0);
    cr_assert_eq(evexec_future_add_done_callback(done, count_cb, &done_cbs), 0);
    cr_assert_eq(evexec_future_add_done_callback(running, count_cb, &chained_cbs), 0);
    d.victims[0] = pending;
    d.victims[1] = done;
    d.victims[2] = running;
    cr_assert_eq(evexec_future_set_result(trigger, make_result(1), result_free), 0);
    cr_assert_eq(evexec_future_set_result(done, make_result(2), result_free), 0);

    cr_assert_neq(event_base_loop(base, EVLOOP_NONBLOCK), -1);
    cr_assert_eq(d.runs, 1);
    gate_open(&g); /* the released chained future still completes */
    cr_assert_neq(event_base_dispatch(base), -1);

    cr_assert_eq(pending_cbs, 0, "a released pending future never completes");
    cr_assert_eq(done_cbs, 1, "releasing does not cancel queued callbacks");
    cr_assert_eq(chained_cbs, 1, "releasing does not cancel in-flight work");
    cr_assert_eq(atomic_load(&chained.ran), 1);
    evexec_future_release(trigger);
    evexec_pool_free(pool);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
    assert_results_balanced();
    assert_no_leaks();
}

/* A done callback that frees its own loop. */
struct killer {
    struct evexec_loop *loop;
    int runs;
};

static void free_own_loop(struct evexec_future *f, void *arg)
{
    (void)f;
    struct killer *k = arg;
    k->runs++;
    evexec_loop_free(k->loop);
}

static void free_own_loop_soon(void *arg)
{
    free_own_loop(NULL, arg);
}

static void loop_freed_from_callback(bool from_chained)
{
    counts_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(1), *quick = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct task running = { .value = 1, .gate = &g }, queued = { .value = 2 }, fast = { .value = 3 };
    struct killer k = { loop, 0 };
    int after_cbs = 0, after_soon = 0, running_cbs = 0;

    struct evexec_future *fr = evexec_run_in_executor(loop, pool, work_task, &running, result_free);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_future *fq = evexec_run_in_executor(loop, pool, work_task, &queued, result_free);
    cr_assert_eq(evexec_future_add_done_callback(fr, count_cb, &running_cbs), 0);
    cr_assert_eq(evexec_future_add_done_callback(fq, count_cb, &running_cbs), 0);

    struct evexec_future *trigger, *second;
    if (from_chained) {
        /* Delivered through the wakeup: the callbacks run in the same drain
         * as the delivery. second stays pending: loop_free cancels it. */
        trigger = evexec_run_in_executor(loop, quick, work_task, &fast, result_free);
        second = evexec_future_new(loop);
        cr_assert_eq(evexec_future_add_done_callback(trigger, free_own_loop, &k), 0);
        cr_assert_eq(evexec_future_add_done_callback(trigger, count_cb, &after_cbs), 0);
        cr_assert_eq(evexec_future_add_done_callback(second, count_cb, &after_cbs), 0);
        pool_wait_settled(quick, 1);
    } else {
        /* Queued in this order: trigger's callbacks, second's, call_soon. */
        trigger = evexec_future_new(loop);
        second = evexec_future_new(loop);
        cr_assert_eq(evexec_future_add_done_callback(trigger, free_own_loop, &k), 0);
        cr_assert_eq(evexec_future_add_done_callback(trigger, count_cb, &after_cbs), 0);
        cr_assert_eq(evexec_future_add_done_callback(second, count_cb, &after_cbs), 0);
        cr_assert_eq(evexec_future_set_result(trigger, make_result(5), result_free), 0);
        cr_assert_eq(evexec_future_set_result(second, make_result(6), result_free), 0);
        cr_assert_eq(evexec_call_soon(loop, count_soon, &after_soon), 0);
    }

    cr_assert_neq(event_base_dispatch(base), -1, "dispatch returns after the bridge is gone");
    cr_assert_eq(k.runs, 1);
    cr_assert_eq(after_cbs, 0, "a callback ran after evexec_loop_free");
    cr_assert_eq(after_soon, 0);
    cr_assert_eq(running_cbs, 0);
    cr_assert(evexec_future_cancelled(fr));
    cr_assert(evexec_future_cancelled(fq));
    gate_open(&g);
    evexec_pool_free(pool);
    evexec_pool_free(quick);
    cr_assert_eq(atomic_load(&queued.ran), 0);
    cr_assert_eq(atomic_load(&running.ran), 1);
    cr_assert_eq(running_cbs, 0);
    evexec_future_release(fr);
    evexec_future_release(fq);
    evexec_future_release(trigger);
    evexec_future_release(second);
    event_base_free(base);
    gate_destroy(&g);
    assert_results_balanced();
    assert_no_leaks();
}

Test(teardown, done_callback_freeing_its_own_loop)
{
    loop_freed_from_callback(false);
}

Test(teardown, done_callback_of_a_delivered_future_freeing_its_own_loop)
{
    loop_freed_from_callback(true);
}

Test(teardown, call_soon_callback_freeing_its_own_loop_discards_the_rest)
{
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct killer k = { loop, 0 };
    int after = 0;
    cr_assert_eq(evexec_call_soon(loop, count_soon, &after), 0);
    cr_assert_eq(evexec_call_soon(loop, free_own_loop_soon, &k), 0);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(evexec_call_soon(loop, count_soon, &after), 0);
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(k.runs, 1);
    cr_assert_eq(after, 1, "only the callback queued before the free ran");
    event_base_free(base);
    assert_no_leaks();
}

/* ---- cancel racing completion ------------------------------------------- */

static int race_iterations(void)
{
    return RUNNING_ON_VALGRIND ? 500 : 10000;
}

struct race_task {
    atomic_int ran;
};

static int work_race(void *arg, void **result)
{
    struct race_task *t = arg;
    atomic_fetch_add(&t->ran, 1);
    *result = make_result(1);
    return 0;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i++)
        ;
}

Test(teardown, cfuture_cancel_racing_completion_keeps_the_invariants)
{
    counts_reset();
    int n = race_iterations();
    struct evexec_pool *pool = new_pool(2);
    struct race_task *tasks = calloc((size_t)n, sizeof(*tasks));
    bool *cancelled = calloc((size_t)n, sizeof(*cancelled));
    int cancel_true = 0, cancel_false = 0;
    for (int i = 0; i < n; i++) {
        struct evexec_cfuture *cf = evexec_pool_submit(pool, work_race, &tasks[i], result_free);
        cr_assert_not_null(cf);
        spin((unsigned)(i % 7) * 200u); /* vary the moment of the cancel */
        cancelled[i] = evexec_cfuture_cancel(cf);
        if (cancelled[i]) {
            cancel_true++;
            cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED);
            cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), ECANCELED);
        } else {
            cancel_false++;
            cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
        }
        evexec_cfuture_release(cf);
    }
    evexec_pool_free(pool); /* every queued task popped: a cancelled one must not run */
    for (int i = 0; i < n; i++) {
        int ran = atomic_load(&tasks[i].ran);
        cr_assert(ran <= 1, "task %d ran %d times", i, ran);
        if (cancelled[i])
            cr_assert_eq(ran, 0, "task %d ran after its cancel returned true", i);
        else
            cr_assert_eq(ran, 1, "task %d: cancel returned false but it never ran", i);
    }
    cr_assert_eq(atomic_load(&results_made), cancel_false);
    assert_results_balanced();
    cr_log_info("cfuture cancel race: %d iterations, cancel won %d, completion won %d",
                n, cancel_true, cancel_false);
    free(tasks);
    free(cancelled);
    assert_no_leaks();
}

struct race_cb {
    int runs;
    bool saw_cancelled;
};

static void race_done(struct evexec_future *f, void *arg)
{
    struct race_cb *c = arg;
    c->runs++;
    c->saw_cancelled = evexec_future_cancelled(f);
}

Test(teardown, loop_future_cancel_racing_delivery_keeps_the_invariants)
{
    counts_reset();
    int n = race_iterations();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = new_pool(2);
    struct race_task *tasks = calloc((size_t)n, sizeof(*tasks));
    int cancel_true = 0, cancel_false = 0, cancelled_before_start = 0;
    for (int i = 0; i < n; i++) {
        struct race_cb c = { 0, false };
        struct evexec_future *f = evexec_run_in_executor(loop, pool, work_race, &tasks[i], result_free);
        cr_assert_not_null(f);
        cr_assert_eq(evexec_future_add_done_callback(f, race_done, &c), 0);
        spin((unsigned)(i % 11) * 300u);
        if (i % 2)
            (void)event_base_loop(base, EVLOOP_NONBLOCK); /* may deliver */
        bool ran_before = atomic_load(&tasks[i].ran) != 0;
        bool cancel = evexec_future_cancel(f);
        cr_assert_neq(event_base_dispatch(base), -1);
        cr_assert_eq(c.runs, 1, "iteration %d: callback ran %d times", i, c.runs);
        cr_assert(evexec_future_done(f));
        if (cancel) {
            cancel_true++;
            cr_assert(c.saw_cancelled);
            cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
            if (!ran_before && atomic_load(&tasks[i].ran) == 0)
                cancelled_before_start++;
        } else {
            cancel_false++;
            void *res = NULL;
            cr_assert_eq(evexec_future_result(f, &res), 0);
            cr_assert_eq(*(int *)res, 1);
            cr_assert_eq(atomic_load(&tasks[i].ran), 1);
        }
        evexec_future_release(f);
    }
    evexec_pool_free(pool);
    for (int i = 0; i < n; i++)
        cr_assert(atomic_load(&tasks[i].ran) <= 1, "task %d ran twice", i);
    assert_results_balanced();
    cr_log_info("loop future cancel race: %d iterations, cancel true %d (task never ran: %d), "
                "delivery first %d", n, cancel_true, cancelled_before_start, cancel_false);
    evexec_loop_free(loop);
    event_base_free(base);
    free(tasks);
    assert_no_leaks();
}
