/*
 * test_chain.c -- the chain between the two halves: evexec_run_in_executor
 * and evexec_wrap_cfuture. Results and errors delivered on the loop thread,
 * the loop's default pool, cancellation both ways (a queued task never runs,
 * a running one sees evexec_cancel_requested()), late results freed exactly
 * once, borrowed and taken results of wrapped cfutures, two loops sharing one
 * pool, and the allocations a run_in_executor call makes.
 *
 * The allocation count uses the counting malloc of testutil.h, linked into
 * this program, which libevexec's calls bind to. It counts only on threads
 * that opted in (the loop thread while measuring, and pool workers through
 * thread_init). It is compiled out under sanitizers, and the test skips under
 * valgrind, which replace the allocator themselves.
 *
 * Worker threads only record; the main thread asserts. Dispatches are bounded
 * by a watchdog thread that posts a loopbreak through the bridge after 20 s.
 */
#include <criterion/criterion.h>

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

#define TESTUTIL_LOOP_FIXTURE   /* base, loop, make_loop, free_loop, dispatch */
#define TESTUTIL_POOL_HELPERS   /* new_pool, stats_of, assert_balanced */
#define TESTUTIL_COUNTING_MALLOC /* counted_allocs, count_this_thread */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(chain, .fini = fail_on_leaks);

/* ---- the gate ---------------------------------------------------------- */

/* A gate that holds worker threads until the test opens it (testutil.h). */
static struct gate gate = GATE_INITIALIZER;

/* ---- work functions and counted results ---------------------------------- */

static atomic_int results_freed;
static void free_counted(void *result)
{
    atomic_fetch_add(&results_freed, 1);
    free(result);
}

/* A result that remembers the value and the thread that made it. */
struct result {
    long value;
    pthread_t maker;
};

static atomic_int task_runs;

static int value_task(void *arg, void **result)
{
    atomic_fetch_add(&task_runs, 1);
    struct result *r = malloc(sizeof(*r));
    if (!r)
        return ENOMEM;
    r->value = (long)(intptr_t)arg;
    r->maker = pthread_self();
    *result = r;
    return 0;
}

static int failing_task(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add(&task_runs, 1);
    return (int)(intptr_t)arg;
}

/* Fails but stores a result anyway: the result must be freed, not leaked. */
static int failing_task_with_result(void *arg, void **result)
{
    (void)arg;
    *result = malloc(8);
    return EIO;
}

static int blocker_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    gate_pass(&gate);
    return 0;
}

static atomic_bool saw_cancel;

/* Waits (bounded) for its future's cancellation, then returns a result. */
static int cancel_aware_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&task_runs, 1);
    gate_pass(&gate); /* tells the test it runs; the test opens the gate at once */
    for (int i = 0; i < HANG_BOUND_MS && !evexec_cancel_requested(); i++)
        usleep(1000);
    atomic_store(&saw_cancel, evexec_cancel_requested());
    *result = malloc(8);
    return 0;
}

/* ---- done callbacks ------------------------------------------------------ */

static int cb_runs;
static bool cb_on_loop_thread;
static bool cb_inside_call;
static bool in_call;
static pthread_t loop_thread;
static int cb_result_rc;
static void *cb_result;

static void record_done(struct evexec_future *f, void *arg)
{
    (void)arg;
    cb_runs++;
    cb_on_loop_thread = pthread_equal(pthread_self(), loop_thread);
    if (in_call)
        cb_inside_call = true;
    cb_result = NULL;
    cb_result_rc = evexec_future_result(f, &cb_result);
}

static void reset_record(void)
{
    cb_runs = 0;
    cb_on_loop_thread = false;
    cb_inside_call = false;
    in_call = false;
    loop_thread = pthread_self();
    cb_result_rc = -1;
    cb_result = NULL;
}

/* ======================================================================== */

Test(chain, run_in_executor_delivers_result_on_loop_thread)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(2);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, (void *)42,
                                                     free_counted);
    cr_assert_not_null(f, "%s", strerror(errno));
    cr_assert(!evexec_future_done(f));
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(cb_on_loop_thread, "the done callback ran off the loop thread");
    cr_assert_eq(cb_result_rc, 0);
    struct result *r = cb_result;
    cr_assert_not_null(r);
    cr_assert_eq(r->value, 42);
    cr_assert(!pthread_equal(r->maker, loop_thread), "the task ran on the loop thread");
    cr_assert(evexec_future_done(f));
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool); /* the pool's queue reference may be the last one */
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(chain, task_error_becomes_the_future_error)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, failing_task, (void *)EPERM, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_result_rc, EPERM);
    cr_assert(!evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_take_result(f, NULL), EPERM);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, result_stored_by_a_failing_task_is_freed)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, failing_task_with_result, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    dispatch();
    cr_assert_eq(evexec_future_result(f, NULL), EIO);
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

Test(chain, run_in_executor_rejects_bad_arguments)
{
    make_loop();
    errno = 0;
    cr_assert_null(evexec_run_in_executor(NULL, NULL, value_task, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, NULL, NULL, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_wrap_cfuture(loop, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_wrap_cfuture(NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    free_loop();
}

Test(chain, run_in_executor_on_shut_down_pool_fails_with_eshutdown)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, pool, value_task, NULL, free_counted));
    cr_assert_eq(errno, ESHUTDOWN);
    cr_assert_eq(atomic_load(&task_runs), 0);
    /* Nothing is in flight: dispatch returns at once. */
    dispatch();
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, null_pool_uses_the_loop_default_pool)
{
    make_loop();
    reset_record();
    struct evexec_pool *dflt = evexec_loop_default_pool(loop);
    cr_assert_not_null(dflt);
    cr_assert_eq(evexec_loop_default_pool(loop), dflt, "a second default pool was made");
    struct evexec_pool_stats before, after;
    cr_assert_eq(evexec_pool_get_stats(dflt, &before), 0);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, NULL, value_task, (void *)7, free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    dispatch();
    cr_assert_eq(evexec_pool_get_stats(dflt, &after), 0);
    cr_assert_eq(after.submitted - before.submitted, 1, "the task did not go to the default pool");
    cr_assert_eq(cb_result_rc, 0);
    cr_assert_eq(((struct result *)cb_result)->value, 7);
    evexec_future_release(f);
    /* Join the default pool's worker, whose reference may be the last. */
    cr_assert_eq(evexec_pool_shutdown(dflt, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop(); /* owns and frees the default pool */
}

Test(chain, result_is_freed_once_even_if_future_released_before_delivery)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, NULL, free_counted);
    cr_assert_not_null(f);
    evexec_future_release(f); /* releasing never cancels */
    dispatch();                /* still in flight: dispatch waits for it */
    cr_assert_eq(atomic_load(&task_runs), 1);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

Test(chain, take_result_of_chained_future_transfers_ownership)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, (void *)5, free_counted);
    cr_assert_not_null(f);
    dispatch();
    struct result *r = NULL;
    cr_assert_eq(evexec_future_take_result(f, (void **)&r), 0);
    cr_assert_not_null(r);
    cr_assert_eq(r->value, 5);
    cr_assert_eq(evexec_future_result(f, NULL), EVEXEC_ETAKEN);
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 0, "a taken result was freed by the library");
    free(r);
    free_loop();
}

Test(chain, cancel_pending_chained_future_means_task_never_runs)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1), "the blocker never started");
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, NULL, free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    in_call = true;
    cr_assert(evexec_future_cancel(f));
    in_call = false;
    cr_assert(evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert_eq(cb_result_rc, ECANCELED);
    evexec_pool_free(pool); /* the worker reached the cancelled task */
    cr_assert_eq(atomic_load(&task_runs), 0, "a cancelled queued task ran");
    cr_assert_eq(atomic_load(&results_freed), 0);
    evexec_future_release(f);
    evexec_cfuture_release(blocker);
    free_loop();
}

Test(chain, cancel_running_chained_future_requests_cancel_and_frees_late_result_once)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the task never started");
    gate_open(&gate);
    cr_assert(evexec_future_cancel(f), "a loop future is cancelled whatever its task does");
    cr_assert(evexec_future_cancelled(f));
    dispatch(); /* the late delivery keeps the loop alive until disposed of */
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_result_rc, ECANCELED);
    cr_assert(atomic_load(&saw_cancel), "evexec_cancel_requested() never turned true");
    cr_assert_eq(atomic_load(&task_runs), 1);
    cr_assert(evexec_future_cancelled(f), "the late result overwrote the cancellation");
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1, "the late result was freed twice");
    free_loop();
}

Test(chain, in_flight_counts_undelivered_chains)
{
    make_loop();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_future *f[3];
    for (int i = 0; i < 3; i++) {
        f[i] = evexec_run_in_executor(loop, pool, value_task, NULL, free_counted);
        cr_assert_not_null(f[i]);
    }
    struct evexec_loop_stats st;
    cr_assert_eq(evexec_loop_get_stats(loop, &st), 0);
    cr_assert_eq(st.in_flight, 3);
    dispatch();
    cr_assert_eq(evexec_loop_get_stats(loop, &st), 0);
    cr_assert_eq(st.in_flight, 0);
    for (int i = 0; i < 3; i++) {
        cr_assert(evexec_future_done(f[i]));
        evexec_future_release(f[i]);
    }
    free_loop();
    evexec_pool_free(pool);
}

/* A task that reports progress to the loop before it returns: the worker
 * posts the progress and then (through the chain) the result, so per-producer
 * FIFO puts every progress callback before the future's done callback. */
#define PROGRESS_POSTS 50
static int progress_seen;
static int progress_seen_at_done;
static atomic_int progress_post_failures;

static void progress_cb(void *arg)
{
    (void)arg;
    progress_seen++;
}

static int progress_task(void *arg, void **result)
{
    (void)result;
    for (int i = 0; i < PROGRESS_POSTS; i++)
        if (evexec_call_soon_threadsafe(arg, progress_cb, NULL) != 0)
            atomic_fetch_add(&progress_post_failures, 1);
    return 0;
}

static void progress_done(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    progress_seen_at_done = progress_seen;
}

Test(chain, posts_from_a_task_arrive_before_its_result)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    progress_seen_at_done = -1;
    struct evexec_future *f = evexec_run_in_executor(loop, pool, progress_task, loop, NULL);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, progress_done, NULL), 0);
    dispatch();
    cr_assert_eq(atomic_load(&progress_post_failures), 0);
    cr_assert_eq(progress_seen, PROGRESS_POSTS);
    cr_assert_eq(progress_seen_at_done, PROGRESS_POSTS,
                 "the result overtook %d of the task's own posts",
                 PROGRESS_POSTS - progress_seen_at_done);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
}

/* ---- wrap_cfuture ---------------------------------------------------------- */

Test(chain, wrap_cfuture_mirrors_result_and_borrows_it)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)9, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f, "%s", strerror(errno));
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(cb_on_loop_thread);
    cr_assert_eq(cb_result_rc, 0);
    void *from_cf = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, 0, &from_cf), 0);
    cr_assert_eq(cb_result, from_cf, "the loop future does not show the cfuture's result");
    cr_assert_eq(((struct result *)from_cf)->value, 9);
    /* Borrowed: releasing the loop future leaves the result to the cfuture. */
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 0);
    cr_assert_eq(evexec_cfuture_result(cf, 0, &from_cf), 0);
    evexec_cfuture_release(cf);
    free_loop();
    evexec_pool_free(pool); /* the pool's queue reference may be the last one */
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(chain, wrap_cfuture_mirrors_error)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, failing_task, (void *)ENOENT, NULL);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    evexec_cfuture_release(cf); /* the loop future holds its own reference */
    dispatch();
    cr_assert_eq(evexec_future_result(f, NULL), ENOENT);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, take_through_wrapping_future_takes_from_the_cfuture_too)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)3, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    dispatch();
    void *taken = NULL;
    cr_assert_eq(evexec_future_take_result(f, &taken), 0);
    cr_assert_not_null(taken);
    void *r = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, 0, &r), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &r), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_result(f, &r), EVEXEC_ETAKEN);
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&results_freed), 0, "a taken result was freed by the library");
    free(taken);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, take_through_cfuture_shows_as_taken_in_wrapping_future)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)3, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    dispatch();
    void *taken = NULL;
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &taken), 0);
    cr_assert_eq(evexec_future_result(f, NULL), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_take_result(f, NULL), EVEXEC_ETAKEN);
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&results_freed), 0);
    free(taken);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, wrap_of_already_done_cfuture_still_delivers_asynchronously)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)11, free_counted);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_wait(cf, -1), 0);
    in_call = true;
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    in_call = false;
    cr_assert(!evexec_future_done(f), "wrapping a done cfuture completed the future synchronously");
    cr_assert_eq(cb_runs, 0);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert_eq(cb_result_rc, 0);
    cr_assert_eq(((struct result *)cb_result)->value, 11);
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, wrap_of_cancelled_cfuture_is_cancelled)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, NULL, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    cr_assert(evexec_cfuture_cancel(cf));
    dispatch();
    cr_assert(evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
    gate_open(&gate);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&task_runs), 0);
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    evexec_cfuture_release(blocker);
    free_loop();
}

Test(chain, cancelling_wrapping_future_cancels_the_pending_cfuture)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1), "the blocker never started");
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, NULL, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(evexec_future_cancel(f));
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED);
    cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), ECANCELED);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_result_rc, ECANCELED);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&task_runs), 0, "the cancelled cfuture's task ran");
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    evexec_cfuture_release(blocker);
    free_loop();
}

/* ---- two loops, two threads, one pool ------------------------------------- */

#define LOOP_TASKS 200

struct loop_thread_ctx {
    struct evexec_pool *pool;
    long id;
    /* recorded by the thread, checked by the main thread */
    bool setup_ok;
    bool dispatch_ok;
    int delivered;
    int wrong_value;
    int wrong_thread;
    pthread_t self;
};

static void two_loops_done(struct evexec_future *f, void *arg)
{
    struct loop_thread_ctx *ctx = arg;
    void *r = NULL;
    ctx->delivered++;
    if (!pthread_equal(pthread_self(), ctx->self))
        ctx->wrong_thread++;
    if (evexec_future_result(f, &r) != 0 || ((struct result *)r)->value / 1000 != ctx->id)
        ctx->wrong_value++;
    evexec_future_release(f);
}

static void *loop_thread_main(void *arg)
{
    struct loop_thread_ctx *ctx = arg;
    ctx->self = pthread_self();
    struct event_base *b = event_base_new();
    struct evexec_loop *l = b ? evexec_loop_new(b) : NULL;
    if (!l) {
        if (b)
            event_base_free(b);
        return NULL;
    }
    ctx->setup_ok = true;
    for (long i = 0; i < LOOP_TASKS; i++) {
        struct evexec_future *f = evexec_run_in_executor(l, ctx->pool, value_task,
                                                         (void *)(intptr_t)(ctx->id * 1000 + i),
                                                         free_counted);
        if (!f || evexec_future_add_done_callback(f, two_loops_done, ctx) != 0) {
            ctx->setup_ok = false;
            evexec_future_release(f);
        }
    }
    ctx->dispatch_ok = dispatch_bounded(b, l, WATCHDOG_SECONDS);
    evexec_loop_free(l);
    event_base_free(b);
    return NULL;
}

Test(chain, two_loops_in_two_threads_share_one_pool, .timeout = 60)
{
    struct evexec_pool *pool = new_pool(2);
    atomic_store(&results_freed, 0);
    struct loop_thread_ctx ctx[2] = {{.pool = pool, .id = 1}, {.pool = pool, .id = 2}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, loop_thread_main, &ctx[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert(ctx[i].setup_ok, "loop %d: setup failed", i);
        cr_assert(ctx[i].dispatch_ok, "loop %d: dispatch hung", i);
        cr_assert_eq(ctx[i].delivered, LOOP_TASKS, "loop %d", i);
        cr_assert_eq(ctx[i].wrong_thread, 0, "loop %d: delivered on another thread", i);
        cr_assert_eq(ctx[i].wrong_value, 0, "loop %d: got the other loop's results", i);
    }
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 2 * LOOP_TASKS);
}

/* ---- allocations per run_in_executor ----------------------------------- */

static int static_result_task(void *arg, void **result)
{
    static int token;
    (void)arg;
    *result = &token;
    return 0;
}

#define ALLOC_ROUNDS 100

static struct evexec_pool *alloc_pool;
static int alloc_rounds;
static long alloc_max_per_call, alloc_total, alloc_before_all;
static bool alloc_submit_failed;

static void alloc_round_done(struct evexec_future *f, void *arg);

static void alloc_submit_next(void)
{
    long before = atomic_load(&counted_allocs);
    struct evexec_future *f = evexec_run_in_executor(loop, alloc_pool, static_result_task, NULL,
                                                     NULL);
    long made = atomic_load(&counted_allocs) - before;
    if (made > alloc_max_per_call)
        alloc_max_per_call = made;
    if (!f || evexec_future_add_done_callback(f, alloc_round_done, NULL) != 0) {
        alloc_submit_failed = true;
        evexec_future_release(f);
        count_this_thread = false;
    }
}

/* Each delivery releases its future and submits the next task, so the whole
 * round trip -- submit, run, deliver, release -- is counted on the loop
 * thread and on the worker, and nothing else runs meanwhile. */
static void alloc_round_done(struct evexec_future *f, void *arg)
{
    (void)arg;
    evexec_future_release(f);
    if (++alloc_rounds < ALLOC_ROUNDS) {
        alloc_submit_next();
        return;
    }
    alloc_total = atomic_load(&counted_allocs) - alloc_before_all;
    count_this_thread = false;
}

static __attribute__((unused)) void alloc_start(void *arg)
{
    (void)arg;
    count_this_thread = true;
    alloc_before_all = atomic_load(&counted_allocs);
    alloc_submit_next();
}

Test(chain, run_in_executor_makes_at_most_one_allocation_per_call)
{
#ifdef TESTUTIL_NO_INTERPOSING
    cr_skip_test("allocations are not counted in sanitizer builds");
#else
    if (RUNNING_ON_VALGRIND)
        cr_skip_test("valgrind replaces the allocator: allocations are not counted");
    cr_assert(counting_malloc_works(), "the counting malloc is not in effect");

    make_loop();
    alloc_pool = counting_pool_new();
    cr_assert_not_null(alloc_pool, "evexec_pool_new: %s", evexec_strerror(errno));
    /* Warm up: the worker thread, libevent's bookkeeping for the wakeup fd. */
    struct evexec_future *f = evexec_run_in_executor(loop, alloc_pool, static_result_task, NULL,
                                                     NULL);
    cr_assert_not_null(f);
    dispatch();
    evexec_future_release(f);

    cr_assert_eq(evexec_call_soon(loop, alloc_start, NULL), 0);
    dispatch();
    cr_assert(!alloc_submit_failed);
    cr_assert_eq(alloc_rounds, ALLOC_ROUNDS);
    cr_log_info("run_in_executor: at most %ld allocation(s) per call, %ld over %d round trips",
                alloc_max_per_call, alloc_total, ALLOC_ROUNDS);
    cr_assert_leq(alloc_max_per_call, 1, "a run_in_executor call made %ld allocations",
                  alloc_max_per_call);
    cr_assert_leq(alloc_total, ALLOC_ROUNDS, "%ld allocations over %d round trips", alloc_total,
                  ALLOC_ROUNDS);
    free_loop();
    evexec_pool_free(alloc_pool);
#endif
}

/* A chained future is completed by its work only: setting it fails and the
 * value stays the caller's (it used to be accepted and leaked on a wrap). */
Test(chain, setting_a_chained_future_gives_einval_and_leaves_the_value_to_the_caller)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)5, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *wrapped = evexec_wrap_cfuture(loop, cf);
    struct evexec_future *direct = evexec_run_in_executor(loop, pool, value_task, (void *)6,
                                                          free_counted);
    cr_assert_not_null(wrapped);
    cr_assert_not_null(direct);
    int mine = 0;
    cr_assert_eq(evexec_future_set_result(wrapped, &mine, free_counted), EINVAL);
    cr_assert_eq(evexec_future_set_result(direct, &mine, free_counted), EINVAL);
    cr_assert_eq(evexec_future_set_error(wrapped, EIO), EINVAL);
    cr_assert_eq(evexec_future_set_error(direct, EIO), EINVAL);
    cr_assert(!evexec_future_done(wrapped));
    cr_assert(!evexec_future_done(direct));
    dispatch();
    void *r = NULL;
    cr_assert_eq(evexec_future_result(wrapped, &r), 0);
    cr_assert_eq(((struct result *)r)->value, 5, "the work's result, not the value set");
    cr_assert_eq(evexec_future_result(direct, &r), 0);
    cr_assert_eq(((struct result *)r)->value, 6);
    evexec_future_release(wrapped);
    evexec_future_release(direct);
    evexec_cfuture_release(cf);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 2, "only the two work results are freed");
}

/* ---- run_in_executor_ex: the library owns arg ----------------------------- */

struct owned_arg {
    atomic_int in_use;     /* 1 while the task reads it */
    atomic_int freed;      /* times free_arg ran */
    atomic_int used_after_free;
};
static struct owned_arg owned;

static void owned_free(void *arg)
{
    struct owned_arg *a = arg;
    if (atomic_load(&a->in_use))
        atomic_fetch_add(&a->used_after_free, 1);
    atomic_fetch_add(&a->freed, 1);
}

/* Uses its argument until its future is cancelled, like a task that reads a
 * request buffer. */
static int arg_reading_task(void *arg, void **result)
{
    struct owned_arg *a = arg;
    atomic_store(&a->in_use, 1);
    gate_pass(&gate);
    for (int i = 0; i < HANG_BOUND_MS && !evexec_cancel_requested(); i++)
        usleep(1000);
    usleep(2000); /* still reading after the cancel was seen */
    atomic_store(&a->in_use, 0);
    (void)result;
    return ECANCELED;
}

Test(chain, run_in_executor_ex_frees_arg_only_after_a_cancelled_running_task_returns)
{
    make_loop();
    reset_record();
    memset(&owned, 0, sizeof(owned));
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *f = evexec_run_in_executor_ex(loop, pool, arg_reading_task, &owned,
                                                        NULL, owned_free);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the task never started");
    gate_open(&gate);
    cr_assert(evexec_future_cancel(f));
    cr_assert_eq(atomic_load(&owned.freed), 0, "arg freed while the task still runs");
    dispatch(); /* runs until the late outcome is delivered */
    cr_assert_eq(atomic_load(&owned.freed), 1);
    cr_assert_eq(atomic_load(&owned.used_after_free), 0);
    cr_assert_eq(cb_result_rc, ECANCELED);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&owned.freed), 1, "free_arg ran more than once");
}

Test(chain, run_in_executor_ex_frees_arg_of_a_task_cancelled_before_it_started)
{
    make_loop();
    reset_record();
    memset(&owned, 0, sizeof(owned));
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *blocker = evexec_run_in_executor(loop, pool, blocker_task, NULL, NULL);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_run_in_executor_ex(loop, pool, arg_reading_task, &owned,
                                                        NULL, owned_free);
    cr_assert_not_null(f);
    cr_assert(evexec_future_cancel(f));
    gate_open(&gate);
    dispatch();
    cr_assert_eq(atomic_load(&owned.freed), 1);
    cr_assert_eq(atomic_load(&owned.in_use), 0, "a task cancelled while queued ran");
    evexec_future_release(f);
    evexec_future_release(blocker);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&owned.freed), 1);
}

Test(chain, run_in_executor_ex_leaves_arg_to_the_caller_when_it_fails)
{
    make_loop();
    memset(&owned, 0, sizeof(owned));
    struct evexec_pool *pool = new_pool(1);
    evexec_pool_shutdown(pool, 0);
    errno = 0;
    cr_assert_null(evexec_run_in_executor_ex(loop, pool, arg_reading_task, &owned, NULL,
                                             owned_free));
    cr_assert_eq(errno, ESHUTDOWN);
    cr_assert_eq(atomic_load(&owned.freed), 0);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&owned.freed), 0);
}

/* ---- evexec_future_request_cancel ------------------------------------------ */

/* Waits (bounded) for the cancel request, then honours it: stores a result
 * anyway (the library must free it) and returns ECANCELED. */
static int cancel_honouring_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&task_runs, 1);
    gate_pass(&gate);
    for (int i = 0; i < HANG_BOUND_MS && !evexec_cancel_requested(); i++)
        usleep(1000);
    atomic_store(&saw_cancel, evexec_cancel_requested());
    *result = malloc(8);
    return ECANCELED;
}

Test(chain, request_cancel_of_a_queued_task_means_it_never_runs_and_the_future_completes_later_with_ecanceled)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1), "the blocker never started");
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, NULL, free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    in_call = true;
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    in_call = false;
    cr_assert(!evexec_future_done(f), "request_cancel completed the future at once");
    cr_assert_eq(evexec_future_result(f, NULL), EINPROGRESS);
    cr_assert_eq(cb_runs, 0);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert(cb_on_loop_thread);
    cr_assert_eq(cb_result_rc, ECANCELED);
    cr_assert(evexec_future_cancelled(f), "a task that never started reads as cancelled");
    evexec_pool_free(pool); /* the worker reached the cancelled task */
    cr_assert_eq(atomic_load(&task_runs), 0, "a request-cancelled queued task ran");
    cr_assert_eq(atomic_load(&results_freed), 0);
    evexec_future_release(f);
    evexec_cfuture_release(blocker);
    free_loop();
}

Test(chain, request_cancel_of_a_running_task_that_ignores_it_completes_with_its_result)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the task never started");
    gate_open(&gate);
    in_call = true;
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    in_call = false;
    cr_assert(!evexec_future_done(f), "request_cancel completed the future at once");
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert(atomic_load(&saw_cancel), "evexec_cancel_requested() never turned true");
    cr_assert_eq(cb_result_rc, 0, "the task's own outcome, not ECANCELED");
    cr_assert_not_null(cb_result);
    cr_assert(!evexec_future_cancelled(f));
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(r, cb_result);
    cr_assert_eq(atomic_load(&results_freed), 0, "the future's result was freed while it lives");
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1, "the result was not freed exactly once");
    free_loop();
}

Test(chain, request_cancel_of_a_running_task_that_honours_it_completes_with_its_error)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, cancel_honouring_task, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the task never started");
    gate_open(&gate);
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    cr_assert(!evexec_future_done(f));
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(atomic_load(&saw_cancel));
    cr_assert_eq(atomic_load(&task_runs), 1);
    cr_assert_eq(cb_result_rc, ECANCELED);
    /* It ran: finished with the task's error, unlike a task that never
     * started (which reads as cancelled). */
    cr_assert(!evexec_future_cancelled(f), "a task that ran and failed reads as never started");
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1, "the result stored with the error leaked");
    free_loop();
}

Test(chain, request_cancelled_task_result_is_owned_by_the_future_and_freed_once)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    /* Released before delivery: the future's delivery reference keeps it,
     * and its result is freed with it. */
    struct evexec_future *f = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    cr_assert(gate_wait_arrived(&gate, 1));
    gate_open(&gate);
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    evexec_future_release(f);
    /* Taken: the caller owns it, the library never frees it. */
    struct evexec_future *g = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL,
                                                     free_counted);
    cr_assert_not_null(g);
    cr_assert(gate_wait_arrived(&gate, 2));
    cr_assert_eq(evexec_future_request_cancel(g), 0);
    dispatch();
    cr_assert_eq(atomic_load(&task_runs), 2);
    void *taken = NULL;
    cr_assert_eq(evexec_future_take_result(g, &taken), 0);
    cr_assert_not_null(taken);
    cr_assert_eq(evexec_future_result(g, NULL), EVEXEC_ETAKEN);
    evexec_future_release(g);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1, "freed %d times; want once (the released one)",
                 atomic_load(&results_freed));
    free(taken);
    free_loop();
}

Test(chain, request_cancel_of_a_done_future_gives_ealready)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, value_task, (void *)1,
                                                     free_counted);
    struct evexec_future *cancelled = evexec_run_in_executor(loop, pool, value_task, (void *)2,
                                                             free_counted);
    struct evexec_future *plain = evexec_future_new(loop);
    cr_assert(f && cancelled && plain);
    cr_assert(evexec_future_cancel(cancelled));
    cr_assert_eq(evexec_future_request_cancel(cancelled), EALREADY);
    cr_assert_eq(evexec_future_set_result(plain, NULL, NULL), 0);
    cr_assert_eq(evexec_future_request_cancel(plain), EALREADY);
    dispatch();
    cr_assert_eq(evexec_future_request_cancel(f), EALREADY);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0, "EALREADY changed the outcome");
    cr_assert_eq(((struct result *)r)->value, 1);
    evexec_future_release(f);
    evexec_future_release(cancelled);
    evexec_future_release(plain);
    free_loop();
    evexec_pool_free(pool);
}

Test(chain, request_cancel_of_a_plain_future_gives_enotsup_and_leaves_it_pending)
{
    make_loop();
    struct evexec_future *f = evexec_future_new(loop);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_request_cancel(f), ENOTSUP);
    cr_assert(!evexec_future_done(f));
    cr_assert_eq(evexec_future_set_error(f, EIO), 0, "the plain future is still the caller's to set");
    cr_assert_eq(evexec_future_result(f, NULL), EIO);
    evexec_future_release(f);
    free_loop();
}

Test(chain, request_cancel_of_null_gives_einval)
{
    cr_assert_eq(evexec_future_request_cancel(NULL), EINVAL);
}

Test(chain, request_cancel_of_a_wrapped_queued_cfuture_cancels_it_and_completes_later)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1), "the blocker never started");
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, NULL, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    in_call = true;
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    in_call = false;
    cr_assert_eq(evexec_cfuture_state(cf), EVEXEC_CANCELLED, "the queued cfuture was not cancelled");
    cr_assert(!evexec_future_done(f), "request_cancel completed the future at once");
    cr_assert_eq(cb_runs, 0);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert_eq(cb_result_rc, ECANCELED);
    cr_assert(evexec_future_cancelled(f));
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&task_runs), 0, "the cancelled cfuture's task ran");
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    evexec_cfuture_release(blocker);
    free_loop();
}

Test(chain, request_cancel_of_a_wrapped_running_cfuture_completes_with_the_borrowed_result)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, cancel_aware_task, NULL, free_counted);
    cr_assert_not_null(cf);
    struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    gate_open(&gate);
    in_call = true;
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    in_call = false;
    cr_assert(!evexec_future_done(f));
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert(atomic_load(&saw_cancel));
    cr_assert_eq(cb_result_rc, 0);
    void *from_cf = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, 0, &from_cf), 0);
    cr_assert_eq(cb_result, from_cf, "the wrapping future does not borrow the cfuture's result");
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 0, "a borrowed result was freed with the future");
    evexec_cfuture_release(cf);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(chain, request_cancel_twice_is_harmless_and_a_later_cancel_still_wins)
{
    make_loop();
    reset_record();
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL,
                                                     free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, record_done, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    cr_assert_eq(evexec_future_request_cancel(f), 0);
    cr_assert(!evexec_future_done(f));
    cr_assert(evexec_future_cancel(f), "cancel after a request still cancels at once");
    cr_assert(evexec_future_cancelled(f));
    gate_open(&gate);
    dispatch(); /* the late result is disposed of */
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_result_rc, ECANCELED);
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1, "the late result was not freed exactly once");
    free_loop();
}
