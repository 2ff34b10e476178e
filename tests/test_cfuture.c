/*
 * test_cfuture.c -- the concurrent future: its states, cancellation (of
 * pending, running, finished and cancelled tasks; cooperative stop), waits
 * with and without timeouts, results and errors, taking ownership of a
 * result, freeing untaken results exactly once, done callbacks (once, in
 * the completing thread, in registration order), reference counting, and
 * the library's error texts and version.
 *
 * Tasks never assert: they record what they saw, and the main thread
 * asserts once the work is done. Waits on other threads use gates
 * (mutex + condvar) with a generous bound; sleeps never decide a pass.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evexec.h"
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(cfuture, .timeout = 60, .fini = fail_on_leaks);

/* ---- helpers ------------------------------------------------------------ */

/* A result that counts how often it is freed. */
struct counted {
    atomic_int *frees;
    int value;
};

static void free_counted(void *p)
{
    struct counted *c = p;
    atomic_fetch_add(c->frees, 1);
    free(c);
}

/* What a task does, and what it saw. */
struct task {
    struct gate *gate;        /* pass it first, if set */
    int error;                /* returned */
    bool store_result;        /* store a struct counted */
    int value;
    atomic_int *frees;
    atomic_int runs;
    pthread_t thread;         /* the worker that ran it */
    bool cancel_seen_at_start;
};

static int task_fn(void *arg, void **result)
{
    struct task *t = arg;
    t->thread = pthread_self();
    t->cancel_seen_at_start = evexec_cancel_requested();
    if (t->gate)
        gate_pass(t->gate);
    atomic_fetch_add(&t->runs, 1);
    if (t->store_result) {
        struct counted *c = malloc(sizeof(*c));
        c->frees = t->frees;
        c->value = t->value;
        *result = c;
    }
    return t->error;
}

/* A one-worker pool, its worker held at a gate by a blocker task, so that
 * whatever is submitted next stays PENDING until the gate opens. */
struct fixture {
    struct evexec_pool *pool;
    struct gate hold;
    struct task blocker_task;
    struct evexec_cfuture *blocker;
};

static void fixture_init(struct fixture *fx)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    fx->pool = evexec_pool_new(&cfg);
    cr_assert_not_null(fx->pool);
    gate_init(&fx->hold);
    memset(&fx->blocker_task, 0, sizeof(fx->blocker_task));
    fx->blocker_task.gate = &fx->hold;
    fx->blocker = evexec_pool_submit(fx->pool, task_fn, &fx->blocker_task, NULL);
    cr_assert_not_null(fx->blocker);
    cr_assert(gate_wait_arrived(&fx->hold, 1));
}

/* Let everything run, join the workers, free the pool. */
static void fixture_finish(struct fixture *fx)
{
    gate_open(&fx->hold);
    evexec_pool_free(fx->pool);
    evexec_cfuture_release(fx->blocker);
    gate_destroy(&fx->hold);
}

static struct evexec_cfuture *submit(struct evexec_pool *pool, struct task *t,
                                     evexec_free_fn free_result)
{
    struct evexec_cfuture *cf = evexec_pool_submit(pool, task_fn, t, free_result);
    cr_assert_not_null(cf, "submit failed: %s", evexec_strerror(errno));
    return cf;
}

/* Done-callback recorder. */
struct cb_log {
    atomic_int calls;
    pthread_t thread;
    int state;                 /* state seen inside the callback */
    atomic_int *sequence;      /* shared counter for ordering checks */
    int position;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void cb_log_init(struct cb_log *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, NULL);
}

static void cb_log_destroy(struct cb_log *l)
{
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}

static void record_done(struct evexec_cfuture *cf, void *arg)
{
    struct cb_log *l = arg;
    pthread_mutex_lock(&l->lock);
    l->thread = pthread_self();
    l->state = evexec_cfuture_state(cf);
    if (l->sequence)
        l->position = atomic_fetch_add(l->sequence, 1);
    atomic_fetch_add(&l->calls, 1);
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* A done callback may still be running when a wait returns: wait for it. */
static bool cb_log_wait(struct cb_log *l)
{
    struct timespec deadline;
    deadline_in(&deadline, HANG_BOUND_MS);
    pthread_mutex_lock(&l->lock);
    while (atomic_load(&l->calls) == 0)
        if (pthread_cond_timedwait(&l->cond, &l->lock, &deadline) == ETIMEDOUT)
            break;
    bool called = atomic_load(&l->calls) > 0;
    pthread_mutex_unlock(&l->lock);
    return called;
}

/* ---- states ------------------------------------------------------------- */

Test(cfuture, state_goes_pending_running_finished)
{
    struct fixture fx;
    fixture_init(&fx);
    struct gate inside;
    gate_init(&inside);
    struct task t = { .gate = &inside };
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_PENDING);
    gate_open(&fx.hold);
    cr_assert(gate_wait_arrived(&inside, 1));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_RUNNING);
    gate_open(&inside);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
    gate_destroy(&inside);
}

Test(cfuture, state_goes_pending_cancelled)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_PENDING);
    cr_assert(evexec_cfuture_cancel(cf));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED);
    fixture_finish(&fx);
    /* Still cancelled after the worker reached it and dropped it. */
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED);
    evexec_cfuture_release(cf);
}

Test(cfuture, state_of_null_is_minus_one)
{
    cr_assert_eq(evexec_cfuture_state(NULL), -1);
}

/* ---- cancel ------------------------------------------------------------- */

Test(cfuture, cancel_pending_returns_true_and_task_never_runs)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert(evexec_cfuture_cancel(cf));
    fixture_finish(&fx); /* joins the worker: it passed the task by */
    cr_assert_eq(atomic_load(&t.runs), 0, "a cancelled task ran");
    evexec_cfuture_release(cf);
}

Test(cfuture, cancel_of_cancelled_returns_true)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert(evexec_cfuture_cancel(cf));
    cr_assert(evexec_cfuture_cancel(cf));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED);
    fixture_finish(&fx);
    cr_assert(evexec_cfuture_cancel(cf));
    cr_assert_eq(atomic_load(&t.runs), 0);
    evexec_cfuture_release(cf);
}

Test(cfuture, cancel_of_finished_returns_false)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    cr_assert_not(evexec_cfuture_cancel(cf));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

/* Runs until it is asked to stop (bounded), then stops with ECANCELED. */
struct cooperative {
    struct gate started;
    bool cancel_seen_before;
    bool cancel_seen;
};

static int cooperative_task(void *arg, void **result)
{
    (void)result;
    struct cooperative *c = arg;
    c->cancel_seen_before = evexec_cancel_requested();
    pthread_mutex_lock(&c->started.lock);
    c->started.arrived++;
    pthread_cond_broadcast(&c->started.cond);
    pthread_mutex_unlock(&c->started.lock);
    for (long waited = 0; waited < HANG_BOUND_MS; waited++) {
        if (evexec_cancel_requested()) {
            c->cancel_seen = true;
            return ECANCELED;
        }
        sleep_ms(1);
    }
    return 0;
}

Test(cfuture, cancel_of_running_returns_false_and_requests_a_cooperative_stop)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct cooperative c = {0};
    gate_init(&c.started);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, cooperative_task, &c, NULL);
    cr_assert_not_null(cf);
    cr_assert(gate_wait_arrived(&c.started, 1));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_RUNNING);
    cr_assert_not(evexec_cfuture_cancel(cf));
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), ECANCELED);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    cr_assert_not(c.cancel_seen_before);
    cr_assert(c.cancel_seen, "evexec_cancel_requested() never turned true");
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    gate_destroy(&c.started);
}

Test(cfuture, cancel_requested_is_false_outside_work_functions)
{
    cr_assert_not(evexec_cancel_requested());
}

Test(cfuture, cancel_requested_is_false_in_a_task_nobody_cancelled)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    cr_assert_not(t.cancel_seen_at_start);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

/* ---- waits -------------------------------------------------------------- */

Test(cfuture, wait_with_timeout_times_out_then_succeeds)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_wait(cf, 20), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_PENDING);
    gate_open(&fx.hold);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

Test(cfuture, wait_zero_polls)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_wait(cf, 0), ETIMEDOUT);
    gate_open(&fx.hold);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    cr_assert_eq(evexec_cfuture_wait(cf, 0), 0);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

struct opener {
    struct gate *gate;
    struct evexec_cfuture *cf;
};

/* Opens the gate once the main thread is about to wait. */
static void *open_later(void *arg)
{
    struct opener *o = arg;
    sleep_ms(20); /* most likely the main thread sleeps in wait(-1) by now */
    gate_open(o->gate);
    return NULL;
}

Test(cfuture, wait_minus_one_waits_until_done)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    struct opener o = { &fx.hold, cf };
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, open_later, &o), 0);
    cr_assert_eq(evexec_cfuture_wait(cf, -1), 0);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    cr_assert_eq(atomic_load(&t.runs), 1);
    pthread_join(thread, NULL);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

Test(cfuture, wait_on_cancelled_returns_at_once)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert(evexec_cfuture_cancel(cf));
    /* The worker is still held: done means cancelled, not run. */
    cr_assert_eq(evexec_cfuture_wait(cf, 0), 0);
    cr_assert_eq(evexec_cfuture_wait(cf, -1), 0);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

struct waiter {
    struct evexec_cfuture *cf;
    int rc;
};

static void *wait_forever(void *arg)
{
    struct waiter *w = arg;
    w->rc = evexec_cfuture_wait(w->cf, -1);
    return NULL;
}

Test(cfuture, every_waiting_thread_wakes_when_done)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    struct waiter waiters[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        waiters[i] = (struct waiter){ cf, -1 };
        cr_assert_eq(pthread_create(&threads[i], NULL, wait_forever, &waiters[i]), 0);
    }
    gate_open(&fx.hold);
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(waiters[i].rc, 0);
    }
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

struct result_waiter {
    struct evexec_cfuture *cf;
    bool take;
    struct gate *start;      /* waits here first, if set */
    void *result;
    int rc;
};

static void *wait_for_result(void *arg)
{
    struct result_waiter *w = arg;
    if (w->start)
        gate_pass(w->start);
    w->rc = w->take ? evexec_cfuture_take_result(w->cf, -1, &w->result)
                    : evexec_cfuture_result(w->cf, -1, &w->result);
    return NULL;
}

Test(cfuture, cancel_wakes_threads_waiting_for_the_result)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    struct gate started;
    gate_init(&started);
    gate_open(&started); /* only counts arrivals */
    struct result_waiter w[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (struct result_waiter){ .cf = cf, .start = &started, .rc = -1 };
        cr_assert_eq(pthread_create(&threads[i], NULL, wait_for_result, &w[i]), 0);
    }
    cr_assert(gate_wait_arrived(&started, 3));
    /* The worker is still held, so only the cancel can wake them. */
    cr_assert(evexec_cfuture_cancel(cf));
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(w[i].rc, ECANCELED);
    }
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
    cr_assert_eq(atomic_load(&t.runs), 0);
    gate_destroy(&started);
}

Test(cfuture, concurrent_take_result_gives_the_result_to_one_thread_only)
{
    struct fixture fx;
    fixture_init(&fx);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .value = 5, .frees = &frees };
    struct evexec_cfuture *cf = submit(fx.pool, &t, free_counted);
    struct result_waiter w[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct result_waiter){ .cf = cf, .take = true, .rc = -1 };
        cr_assert_eq(pthread_create(&threads[i], NULL, wait_for_result, &w[i]), 0);
    }
    gate_open(&fx.hold);
    int winners = 0;
    void *taken = NULL;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        if (w[i].rc == 0) {
            winners++;
            taken = w[i].result;
        } else {
            cr_assert_eq(w[i].rc, EVEXEC_ETAKEN);
        }
    }
    cr_assert_eq(winners, 1);
    cr_assert_not_null(taken);
    cr_assert_eq(((struct counted *)taken)->value, 5);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
    cr_assert_eq(atomic_load(&frees), 0, "the future freed a taken result");
    free_counted(taken);
}

Test(cfuture, wait_with_bad_arguments_is_einval)
{
    cr_assert_eq(evexec_cfuture_wait(NULL, 0), EINVAL);
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_wait(cf, -2), EINVAL);
    cr_assert_eq(evexec_cfuture_result(NULL, 0, NULL), EINVAL);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

/* ---- results ------------------------------------------------------------- */

Test(cfuture, result_returns_the_tasks_value)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .value = 42, .frees = &frees };
    struct evexec_cfuture *cf = submit(pool, &t, free_counted);
    void *result = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, &result), 0);
    cr_assert_not_null(result);
    cr_assert_eq(((struct counted *)result)->value, 42);
    /* Reading it again gives the same result: the future keeps it. */
    void *again = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, 0, &again), 0);
    cr_assert_eq(again, result);
    cr_assert_eq(atomic_load(&frees), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool); /* the worker may hold a reference until joined */
    cr_assert_eq(atomic_load(&frees), 1);
}

Test(cfuture, result_returns_the_tasks_error)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = { .error = EIO };
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EIO);
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_FINISHED);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(cfuture, result_of_cancelled_is_ecanceled)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert(evexec_cfuture_cancel(cf));
    void *result = (void *)&t;
    cr_assert_eq(evexec_cfuture_result(cf, -1, &result), ECANCELED);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &result), ECANCELED);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

Test(cfuture, result_times_out_while_pending)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_result(cf, 10, NULL), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, NULL), ETIMEDOUT);
    gate_open(&fx.hold);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    fixture_finish(&fx);
}

Test(cfuture, take_result_transfers_ownership)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .value = 7, .frees = &frees };
    struct evexec_cfuture *cf = submit(pool, &t, free_counted);
    void *result = NULL;
    cr_assert_eq(evexec_cfuture_take_result(cf, HANG_BOUND_MS, &result), 0);
    cr_assert_not_null(result);
    cr_assert_eq(((struct counted *)result)->value, 7);
    void *again = NULL;
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &again), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_cfuture_result(cf, 0, &again), EVEXEC_ETAKEN);
    cr_assert_null(again);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&frees), 0, "the future freed a result it gave away");
    free_counted(result);
    cr_assert_eq(atomic_load(&frees), 1);
    evexec_pool_free(pool);
}

Test(cfuture, untaken_result_is_freed_once_on_the_last_release)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .frees = &frees };
    struct evexec_cfuture *cf = submit(pool, &t, free_counted);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    evexec_cfuture_retain(cf);
    evexec_cfuture_retain(cf);
    evexec_cfuture_release(cf);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&frees), 0, "freed while a reference remained");
    cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), 0);
    evexec_pool_free(pool); /* drops the pool's own references, if any */
    cr_assert_eq(atomic_load(&frees), 0);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&frees), 1);
}

Test(cfuture, result_stored_with_an_error_is_freed_once)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .error = EPROTO, .frees = &frees };
    struct evexec_cfuture *cf = submit(pool, &t, free_counted);
    void *result = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, &result), EPROTO);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &result), EPROTO);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&frees), 1);
}

Test(cfuture, release_before_completion_does_not_cancel_and_frees_the_result)
{
    struct fixture fx;
    fixture_init(&fx);
    atomic_int frees = 0;
    struct task t = { .store_result = true, .frees = &frees };
    struct evexec_cfuture *cf = submit(fx.pool, &t, free_counted);
    evexec_cfuture_release(cf); /* nobody holds it any more but the pool */
    fixture_finish(&fx);
    cr_assert_eq(atomic_load(&t.runs), 1, "releasing cancelled the task");
    cr_assert_eq(atomic_load(&frees), 1);
}

Test(cfuture, release_null_is_a_noop)
{
    evexec_cfuture_release(NULL);
}

/* ---- done callbacks -------------------------------------------------------- */

Test(cfuture, done_callback_runs_once_in_the_completing_thread)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    struct cb_log log;
    cb_log_init(&log);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, record_done, &log), 0);
    cr_assert_eq(atomic_load(&log.calls), 0);
    gate_open(&fx.hold);
    cr_assert(cb_log_wait(&log));
    fixture_finish(&fx); /* the worker is gone: no second call can come */
    cr_assert_eq(atomic_load(&log.calls), 1);
    cr_assert(pthread_equal(log.thread, t.thread), "callback ran outside the worker");
    cr_assert_not(pthread_equal(log.thread, pthread_self()));
    cr_assert_eq(log.state, EVEXEC_FINISHED);
    evexec_cfuture_release(cf);
    cb_log_destroy(&log);
}

Test(cfuture, done_callback_on_a_done_future_runs_at_once_in_the_caller)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    struct cb_log log;
    cb_log_init(&log);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, record_done, &log), 0);
    cr_assert_eq(atomic_load(&log.calls), 1, "not called before add returned");
    cr_assert(pthread_equal(log.thread, pthread_self()));
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&log.calls), 1);
    evexec_cfuture_release(cf);
    cb_log_destroy(&log);
}

Test(cfuture, done_callback_of_a_cancelled_future_runs_in_the_cancelling_thread)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    struct cb_log log;
    cb_log_init(&log);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, record_done, &log), 0);
    cr_assert(evexec_cfuture_cancel(cf));
    cr_assert_eq(atomic_load(&log.calls), 1, "not called before cancel returned");
    cr_assert(pthread_equal(log.thread, pthread_self()));
    cr_assert_eq(log.state, EVEXEC_CANCELLED);
    cr_assert(evexec_cfuture_cancel(cf)); /* cancelling again calls nothing */
    fixture_finish(&fx);
    cr_assert_eq(atomic_load(&log.calls), 1);
    evexec_cfuture_release(cf);
    cb_log_destroy(&log);
}

Test(cfuture, done_callbacks_run_in_registration_order)
{
    struct fixture fx;
    fixture_init(&fx);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(fx.pool, &t, NULL);
    atomic_int sequence = 0;
    struct cb_log logs[10];
    for (int i = 0; i < 10; i++) {
        cb_log_init(&logs[i]);
        logs[i].sequence = &sequence;
        cr_assert_eq(evexec_cfuture_add_done_callback(cf, record_done, &logs[i]), 0);
    }
    gate_open(&fx.hold);
    cr_assert(cb_log_wait(&logs[9]));
    fixture_finish(&fx);
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(atomic_load(&logs[i].calls), 1);
        cr_assert_eq(logs[i].position, i, "callback %d ran in position %d", i,
                     logs[i].position);
        cb_log_destroy(&logs[i]);
    }
    evexec_cfuture_release(cf);
}

Test(cfuture, done_callback_added_while_completing_runs_exactly_once)
{
    /* Registration races with completion: each callback runs exactly once,
     * whichever side wins. */
    struct evexec_pool_config cfg = { .max_workers = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    enum { ROUNDS = 300 };
    static struct cb_log logs[ROUNDS];
    static struct task tasks[ROUNDS];
    struct evexec_cfuture *cfs[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        cb_log_init(&logs[i]);
        memset(&tasks[i], 0, sizeof(tasks[i]));
        cfs[i] = submit(pool, &tasks[i], NULL);
        cr_assert_eq(evexec_cfuture_add_done_callback(cfs[i], record_done, &logs[i]), 0);
    }
    evexec_pool_free(pool);
    for (int i = 0; i < ROUNDS; i++) {
        cr_assert_eq(atomic_load(&logs[i].calls), 1, "round %d: %d calls", i,
                     atomic_load(&logs[i].calls));
        evexec_cfuture_release(cfs[i]);
        cb_log_destroy(&logs[i]);
    }
}

static void release_in_callback(struct evexec_cfuture *cf, void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    evexec_cfuture_release(cf);
}

Test(cfuture, done_callback_may_drop_the_callers_reference)
{
    struct fixture fx;
    fixture_init(&fx);
    atomic_int frees = 0, calls = 0;
    struct task t = { .store_result = true, .frees = &frees };
    struct evexec_cfuture *cf = submit(fx.pool, &t, free_counted);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, release_in_callback, &calls), 0);
    fixture_finish(&fx); /* cf is gone now; do not touch it */
    cr_assert_eq(atomic_load(&calls), 1);
    cr_assert_eq(atomic_load(&t.runs), 1);
    cr_assert_eq(atomic_load(&frees), 1);
}

Test(cfuture, add_done_callback_with_bad_arguments_is_einval)
{
    struct cb_log log;
    cb_log_init(&log);
    cr_assert_eq(evexec_cfuture_add_done_callback(NULL, record_done, &log), EINVAL);
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct task t = {0};
    struct evexec_cfuture *cf = submit(pool, &t, NULL);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, NULL, &log), EINVAL);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&log.calls), 0);
    cb_log_destroy(&log);
}

/* ---- errors and version ------------------------------------------------------ */

Test(cfuture, strerror_names_the_librarys_own_codes)
{
    const int codes[] = { EVEXEC_EBROKEN, EVEXEC_EFORKED, EVEXEC_ETAKEN, EVEXEC_ECLOSED };
    const char *texts[4];
    for (int i = 0; i < 4; i++) {
        cr_assert_gt(codes[i], EVEXEC_ERRNO_BASE - 1);
        texts[i] = evexec_strerror(codes[i]);
        cr_assert_not_null(texts[i]);
        cr_assert_gt(strlen(texts[i]), 0);
        /* Not libc's "Unknown error NNN". */
        cr_assert_null(strstr(texts[i], "Unknown"), "code %d: \"%s\"", codes[i], texts[i]);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(texts[i], texts[j]);
    }
}

Test(cfuture, strerror_names_errno_codes_as_strerror_does)
{
    const int codes[] = { EINVAL, ESHUTDOWN, EAGAIN, ETIMEDOUT, ECANCELED, EDEADLK, ENOMEM };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *text = evexec_strerror(codes[i]);
        cr_assert_not_null(text);
        cr_assert_str_eq(text, strerror(codes[i]));
    }
    cr_assert_not_null(evexec_strerror(EVEXEC_ERRNO_BASE + 999));
    cr_assert_not_null(evexec_strerror(-1));
}

Test(cfuture, version_matches_the_header)
{
    cr_assert_str_eq(evexec_version(), EVEXEC_VERSION_STRING);
    char hex[32];
    snprintf(hex, sizeof(hex), "%d.%d.%d", (EVEXEC_VERSION_HEX >> 16) & 0xff,
             (EVEXEC_VERSION_HEX >> 8) & 0xff, EVEXEC_VERSION_HEX & 0xff);
    cr_assert_str_eq(hex, EVEXEC_VERSION_STRING);
}
