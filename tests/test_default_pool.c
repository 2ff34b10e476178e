/*
 * test_default_pool.c -- the loop's default pool: choosing it
 * (evexec_loop_set_default_pool) and shutting it down without blocking the
 * loop (evexec_loop_shutdown_default_pool): which pool run_in_executor(NULL)
 * uses, the errors, who frees what, the shutdown future's outcome (finished
 * once the threads exited, ETIMEDOUT, cancelled), that it keeps dispatch
 * running and never completes inside the call, and evexec_loop_free while a
 * shutdown is pending.
 *
 * The shutdown waits on a helper thread of the library. Tests that must know
 * it is gone (to free a given pool, or to let the leak check see everything
 * settled) wait, bounded, until the process has no more threads than before
 * the test began. Dispatches are bounded by a watchdog thread; worker
 * threads only record, the main thread asserts.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "evexec.h"

#define TESTUTIL_LOOP_FIXTURE /* base, loop, make_loop, free_loop, dispatch */
#define TESTUTIL_POOL_HELPERS   /* new_pool, stats_of, assert_balanced */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(default_pool, .fini = fail_on_leaks);

/* A gate that holds worker threads until the test opens it (testutil.h). */
static struct gate gate = GATE_INITIALIZER;

static atomic_int results_freed;
static void free_counted(void *result)
{
    atomic_fetch_add(&results_freed, 1);
    free(result);
}

static atomic_int task_runs;

static int value_task(void *arg, void **result)
{
    atomic_fetch_add(&task_runs, 1);
    long *r = malloc(sizeof(*r));
    if (!r)
        return ENOMEM;
    *r = (long)(intptr_t)arg;
    *result = r;
    return 0;
}

static int gated_task(void *arg, void **result)
{
    gate_pass(&gate);
    return value_task(arg, result);
}

/* ---- threads of the process ---------------------------------------------- */

static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    cr_assert_not_null(d, "no /proc/self/task");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Wait (bounded) until the process has at most n threads: the pool's
 * workers and the library's shutdown helper have exited. */
static bool threads_back_to(int n)
{
    for (int waited = 0; waited < HANG_BOUND_MS; waited += 5) {
        if (thread_count() <= n)
            return true;
        sleep_ms(5);
    }
    return false;
}

/* ---- the shutdown future's callback -------------------------------------- */

static int cb_runs;
static int cb_rc = -1;
static void *cb_result = (void *)1;
static bool in_call;
static bool cb_inside_call;
static struct evexec_pool *stats_pool; /* a given pool to look at when it runs */
static int threads_at_cb = -1;
static bool queued_done_at_cb;
static struct evexec_future *queued_future; /* work queued before the shutdown */
static bool open_gate_in_cb;

static void shutdown_done(struct evexec_future *f, void *arg)
{
    (void)arg;
    cb_runs++;
    if (in_call)
        cb_inside_call = true;
    cb_result = (void *)1;
    cb_rc = evexec_future_result(f, &cb_result);
    if (stats_pool) {
        struct evexec_pool_stats st;
        if (evexec_pool_get_stats(stats_pool, &st) == 0)
            threads_at_cb = (int)st.threads;
    }
    if (queued_future)
        queued_done_at_cb = evexec_future_done(queued_future);
    if (open_gate_in_cb)
        gate_open(&gate);
}

/* ======================================================================== */

Test(default_pool, set_default_pool_is_used_by_run_in_executor_with_a_null_pool)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    cr_assert_eq(evexec_loop_default_pool(loop), pool);
    struct evexec_future *f = evexec_run_in_executor(loop, NULL, value_task, (void *)7,
                                                     free_counted);
    cr_assert_not_null(f, "%s", strerror(errno));
    dispatch();
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    cr_assert_eq(st.submitted, 1, "the task did not go to the given pool");
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(*(long *)r, 7);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(default_pool, set_default_pool_rejects_a_null_loop_or_pool_with_einval)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(NULL, pool), EINVAL);
    cr_assert_eq(evexec_loop_set_default_pool(loop, NULL), EINVAL);
    cr_assert_eq(evexec_loop_set_default_pool(NULL, NULL), EINVAL);
    /* Nothing changed: the loop still makes its own on first use. */
    struct evexec_pool *own = evexec_loop_default_pool(loop);
    cr_assert_not_null(own);
    cr_assert_neq(own, pool);
    free_loop();
    evexec_pool_free(pool);
}

Test(default_pool, set_default_pool_gives_ebusy_once_the_loop_made_its_own)
{
    make_loop();
    struct evexec_pool *own = evexec_loop_default_pool(loop);
    cr_assert_not_null(own);
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), EBUSY);
    cr_assert_eq(evexec_loop_default_pool(loop), own, "EBUSY replaced the loop's own pool");
    free_loop(); /* frees its own pool; the refused one stays ours */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, NULL, free_counted);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(default_pool, set_default_pool_may_replace_a_given_pool)
{
    make_loop();
    struct evexec_pool *a = new_pool(1), *b = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, a), 0);
    cr_assert_eq(evexec_loop_set_default_pool(loop, b), 0);
    cr_assert_eq(evexec_loop_default_pool(loop), b);
    free_loop();
    evexec_pool_free(a);
    evexec_pool_free(b);
}

Test(default_pool, set_default_pool_gives_eshutdown_after_shutdown_default_pool)
{
    make_loop();
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), ESHUTDOWN);
    dispatch();
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
}

Test(default_pool, loop_free_leaves_a_given_pool_running_and_usable)
{
    make_loop();
    struct evexec_pool *pool = new_pool(2);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    struct evexec_future *f = evexec_run_in_executor(loop, NULL, value_task, (void *)1,
                                                     free_counted);
    cr_assert_not_null(f);
    dispatch();
    evexec_future_release(f);
    free_loop();
    /* Not shut down, not freed: it still takes work. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, value_task, (void *)2, free_counted);
    cr_assert_not_null(cf, "the given pool was shut down with the loop: %s", strerror(errno));
    void *r = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, &r), 0);
    cr_assert_eq(*(long *)r, 2);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 2);
}

Test(default_pool, shutdown_default_pool_finishes_with_null_after_the_threads_exited)
{
    make_loop();
    struct evexec_pool *pool = new_pool(3);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    struct evexec_future *work[3];
    for (int i = 0; i < 3; i++) {
        work[i] = evexec_run_in_executor(loop, NULL, gated_task, (void *)(intptr_t)i, free_counted);
        cr_assert_not_null(work[i]);
    }
    cr_assert(gate_wait_arrived(&gate, 3), "the tasks never started");
    stats_pool = pool;
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f, "%s", strerror(errno));
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_rc, 0);
    cr_assert_null(cb_result, "the shutdown future's result is not NULL");
    cr_assert_eq(threads_at_cb, 0, "%d threads still alive when the future finished",
                 threads_at_cb);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(evexec_future_result(work[i], NULL), 0);
        evexec_future_release(work[i]);
    }
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 3);
}

Test(default_pool, shutdown_default_pool_frees_the_loops_own_pool_and_finishes_with_null)
{
    int threads_before = thread_count();
    make_loop();
    struct evexec_future *w = evexec_run_in_executor(loop, NULL, gated_task, (void *)5,
                                                     free_counted);
    cr_assert_not_null(w);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_rc, 0);
    cr_assert_null(cb_result);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(w, &r), 0, "queued work did not run to its end");
    cr_assert_eq(*(long *)r, 5);
    /* The loop's own pool is freed by the helper: its threads are gone. */
    cr_assert(threads_back_to(threads_before), "threads still alive after the shutdown finished");
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(default_pool, shutdown_default_pool_lets_queued_work_run_first)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)1,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    queued_future = evexec_run_in_executor(loop, NULL, value_task, (void *)2, free_counted);
    cr_assert_not_null(queued_future);
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_rc, 0);
    cr_assert(queued_done_at_cb, "the shutdown finished before the queued work was delivered");
    void *r = NULL;
    cr_assert_eq(evexec_future_result(queued_future, &r), 0, "queued work was cancelled");
    cr_assert_eq(*(long *)r, 2);
    cr_assert_eq(atomic_load(&task_runs), 2);
    evexec_future_release(held);
    evexec_future_release(queued_future);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 2);
}

Test(default_pool, shutdown_default_pool_of_a_given_view_waits_for_the_views_tasks)
{
    make_loop();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_pool *view = evexec_pool_new_limited(pool, 1);
    cr_assert_not_null(view);
    cr_assert_eq(evexec_loop_set_default_pool(loop, view), 0);
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)1,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    queued_future = evexec_run_in_executor(loop, NULL, value_task, (void *)2, free_counted);
    cr_assert_not_null(queued_future);
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    /* A view has no threads of its own: its thread count is 0 from the
     * start, and the future used to finish on the first pass. */
    for (int i = 0; i < 20; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        sleep_ms(1);
    }
    cr_assert_eq(cb_runs, 0, "the shutdown finished while the view's task was held");
    gate_open(&gate);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_rc, 0);
    cr_assert(queued_done_at_cb, "the shutdown finished before the view's work was delivered");
    void *r = NULL;
    cr_assert_eq(evexec_future_result(queued_future, &r), 0, "queued work was cancelled");
    cr_assert_eq(*(long *)r, 2);
    cr_assert_eq(atomic_load(&task_runs), 2);
    /* The view stays the program's, shut down but usable for its stats. */
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(view, &st), 0);
    cr_assert_eq(st.completed, 2);
    cr_assert_eq(st.queued + st.running, 0);
    evexec_future_release(held);
    evexec_future_release(queued_future);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(view);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 2);
}

Test(default_pool, shutdown_default_pool_times_out_with_etimedout_while_a_task_is_held)
{
    int threads_before = thread_count();
    make_loop();
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)3,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, 50);
    cr_assert_not_null(f);
    open_gate_in_cb = true; /* only once the timeout has been reported */
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    dispatch(); /* the held task's future keeps it running after the timeout */
    cr_assert_eq(cb_runs, 1);
    cr_assert_eq(cb_rc, ETIMEDOUT);
    cr_assert(!evexec_future_cancelled(f));
    /* The task went on and finished; the threads go on exiting. */
    void *r = NULL;
    cr_assert_eq(evexec_future_result(held, &r), 0);
    cr_assert_eq(*(long *)r, 3);
    evexec_future_release(held);
    evexec_future_release(f);
    free_loop();
    cr_assert(threads_back_to(threads_before), "the pool's threads or the helper never exited");
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(default_pool, shutdown_default_pool_without_a_pool_completes_on_the_next_pass)
{
    make_loop();
    in_call = true;
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    in_call = false;
    cr_assert_eq(cb_runs, 0);
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call, "the callback ran inside the call");
    cr_assert_eq(cb_rc, 0);
    cr_assert_null(cb_result);
    /* A second shutdown has nothing left to wait for either. */
    struct evexec_future *again = evexec_loop_shutdown_default_pool(loop, 10);
    cr_assert_not_null(again);
    cr_assert(!evexec_future_done(again), "completed inside the call");
    dispatch();
    cr_assert_eq(evexec_future_result(again, NULL), 0);
    evexec_future_release(again);
    evexec_future_release(f);
    free_loop();
}

Test(default_pool, shutdown_default_pool_never_completes_inside_the_call)
{
    /* With a pool whose threads have all exited already. */
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    in_call = true;
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    cr_assert(!evexec_future_done(f));
    in_call = false;
    dispatch();
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert_eq(cb_rc, 0);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool);
}

static void *open_gate_later(void *arg)
{
    (void)arg;
    sleep_ms(100);
    gate_open(&gate);
    return NULL;
}

Test(default_pool, shutdown_default_pool_keeps_dispatch_running_while_pending)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    /* Submitted directly: no loop future of its own keeps the loop alive. */
    struct evexec_cfuture *held = evexec_pool_submit(pool, gated_task, NULL, free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    pthread_t opener;
    cr_assert_eq(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    dispatch();
    cr_assert(evexec_future_done(f), "dispatch returned while the shutdown was pending");
    cr_assert_eq(evexec_future_result(f, NULL), 0);
    pthread_join(opener, NULL);
    evexec_future_release(f);
    evexec_cfuture_release(held);
    free_loop();
    evexec_pool_free(pool);
}

Test(default_pool, run_in_executor_with_a_null_pool_fails_with_eshutdown_after_shutdown)
{
    make_loop();
    cr_assert_not_null(evexec_loop_default_pool(loop));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, NULL, value_task, NULL, free_counted));
    cr_assert_eq(errno, ESHUTDOWN);
    errno = 0;
    cr_assert_null(evexec_loop_default_pool(loop));
    cr_assert_eq(errno, ESHUTDOWN, "a new default pool was made after the shutdown");
    /* A pool given explicitly still works. */
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *g = evexec_run_in_executor(loop, pool, value_task, (void *)4,
                                                     free_counted);
    cr_assert_not_null(g);
    dispatch();
    cr_assert_eq(evexec_future_result(f, NULL), 0);
    cr_assert_eq(evexec_future_result(g, NULL), 0);
    cr_assert_eq(atomic_load(&task_runs), 1);
    evexec_future_release(f);
    evexec_future_release(g);
    free_loop();
    evexec_pool_free(pool);
}

Test(default_pool, cancelling_the_shutdown_future_stops_the_wait_not_the_shutdown)
{
    int threads_before = thread_count();
    make_loop();
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)6,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, 60000);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    in_call = true;
    cr_assert(evexec_future_cancel(f));
    in_call = false;
    cr_assert(evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_request_cancel(f), EALREADY);
    open_gate_in_cb = true;
    dispatch(); /* neither the cancelled wait nor its 60 s timer hold it */
    cr_assert_eq(cb_runs, 1);
    cr_assert(!cb_inside_call);
    cr_assert_eq(cb_rc, ECANCELED);
    cr_assert_eq(evexec_future_result(held, NULL), 0);
    /* The shutdown went on: no new default pool, and the threads exit. */
    errno = 0;
    cr_assert_null(evexec_loop_default_pool(loop));
    cr_assert_eq(errno, ESHUTDOWN);
    evexec_future_release(held);
    evexec_future_release(f);
    free_loop();
    cr_assert(threads_back_to(threads_before), "the pool's threads or the helper never exited");
}

Test(default_pool, request_cancel_of_the_shutdown_future_gives_enotsup)
{
    make_loop();
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_request_cancel(f), ENOTSUP);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), EINVAL, "only the shutdown completes it");
    dispatch();
    evexec_future_release(f);
    free_loop();
}

static int never_runs;
static void never_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    never_runs++;
}

Test(default_pool, loop_free_while_a_shutdown_is_pending_leaks_nothing_and_runs_no_callback)
{
    int threads_before = thread_count();
    make_loop();
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)8,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, 60000);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, never_cb, NULL), 0);
    cr_assert_eq(evexec_future_add_done_callback(held, never_cb, NULL), 0);
    free_loop();
    cr_assert(evexec_future_cancelled(f), "the pending shutdown future was not cancelled");
    cr_assert(evexec_future_cancelled(held));
    gate_open(&gate);
    /* The helper joins the worker and frees the pool, then finds the loop
     * gone and drops its reference: wait for it, then for nothing to run. */
    cr_assert(threads_back_to(threads_before), "the pool's threads or the helper never exited");
    cr_assert_eq(never_runs, 0, "a callback ran after evexec_loop_free");
    cr_assert_eq(atomic_load(&results_freed), 1, "the late result was not freed exactly once");
    evexec_future_release(f);
    evexec_future_release(held);
}

Test(default_pool, loop_free_while_a_shutdown_is_pending_with_the_future_released_first)
{
    int threads_before = thread_count();
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    struct evexec_cfuture *held = evexec_pool_submit(pool, gated_task, NULL, free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, never_cb, NULL), 0);
    evexec_future_release(f); /* the helper's reference keeps it */
    free_loop();
    gate_open(&gate);
    cr_assert(threads_back_to(threads_before), "the pool's threads or the helper never exited");
    cr_assert_eq(never_runs, 0);
    evexec_cfuture_release(held);
    evexec_pool_free(pool); /* ours; the helper is done with it */
}

Test(default_pool, shutdown_default_pool_rejects_bad_arguments)
{
    make_loop();
    errno = 0;
    cr_assert_null(evexec_loop_shutdown_default_pool(NULL, -1));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_loop_shutdown_default_pool(loop, -2));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_loop_shutdown_default_pool(loop, -1000));
    cr_assert_eq(errno, EINVAL);
    /* Nothing was shut down by the refused calls. */
    cr_assert_not_null(evexec_loop_default_pool(loop));
    free_loop();
}

Test(default_pool, set_and_shutdown_default_pool_after_loop_free_are_refused)
{
    /* evexec_future_loop keeps the loop's memory for comparison; the
     * functions answer EVEXEC_ECLOSED through a future's loop pointer. */
    make_loop();
    struct evexec_future *keep = evexec_future_new(loop);
    cr_assert_not_null(keep);
    struct evexec_loop *l = loop;
    free_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(l, pool), EVEXEC_ECLOSED);
    errno = 0;
    cr_assert_null(evexec_loop_shutdown_default_pool(l, -1));
    cr_assert_eq(errno, EVEXEC_ECLOSED);
    evexec_future_release(keep);
    evexec_pool_free(pool);
}

Test(default_pool, a_given_pool_may_be_freed_once_its_shutdown_timed_out)
{
    make_loop();
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_loop_set_default_pool(loop, pool), 0);
    struct evexec_future *held = evexec_run_in_executor(loop, NULL, gated_task, (void *)9,
                                                        free_counted);
    cr_assert_not_null(held);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *f = evexec_loop_shutdown_default_pool(loop, 0);
    cr_assert_not_null(f);
    open_gate_in_cb = true;
    cr_assert_eq(evexec_future_add_done_callback(f, shutdown_done, NULL), 0);
    dispatch();
    cr_assert_eq(cb_rc, ETIMEDOUT);
    evexec_future_release(held);
    evexec_future_release(f);
    free_loop();
    /* The shutdown is over as far as the program can tell: the pool is its
     * to free, while the helper may still be waiting on it. */
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
}
