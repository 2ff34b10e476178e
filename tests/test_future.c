/*
 * test_future.c -- the loop future (evexec_future) on its own: states,
 * results and errors, cancellation, done callbacks (registration order, loop
 * thread, never synchronous), result ownership and reference counting, and
 * what a future does once its loop is freed.
 *
 * Dispatches are bounded by a watchdog thread that posts a loopbreak through
 * the bridge after 20 s and records the failure.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evexec.h"

#define TESTUTIL_LOOP_FIXTURE /* base, loop, make_loop, free_loop, dispatch */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(future, .fini = fail_on_leaks);

static struct evexec_future *new_future(void)
{
    struct evexec_future *f = evexec_future_new(loop);
    cr_assert_not_null(f, "evexec_future_new: %s", strerror(errno));
    return f;
}

/* ---- counted results and recording callbacks ---------------------------- */

static int results_freed;
static void free_counted(void *result)
{
    results_freed++;
    free(result);
}

static void *new_result(void)
{
    void *r = malloc(16);
    cr_assert_not_null(r);
    return r;
}

#define MAX_RECORD 64
static int record[MAX_RECORD];
static int nrecord;
static bool in_call;           /* set around calls that must not run callbacks */
static bool ran_inside_call;
static bool ran_off_loop_thread;
static pthread_t loop_thread;

static void record_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    if (in_call)
        ran_inside_call = true;
    if (!pthread_equal(pthread_self(), loop_thread))
        ran_off_loop_thread = true;
    if (nrecord < MAX_RECORD)
        record[nrecord] = (int)(intptr_t)arg;
    nrecord++;
}

static void reset_record(void)
{
    nrecord = 0;
    in_call = false;
    ran_inside_call = false;
    ran_off_loop_thread = false;
    loop_thread = pthread_self();
}

/* ======================================================================== */

Test(future, new_future_is_pending)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert(!evexec_future_done(f));
    cr_assert(!evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_loop(f), loop);
    evexec_future_release(f);
    free_loop();
}

Test(future, new_with_null_loop_fails_with_einval)
{
    errno = 0;
    cr_assert_null(evexec_future_new(NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(future, result_before_done_is_einprogress)
{
    make_loop();
    struct evexec_future *f = new_future();
    void *r = (void *)0x1;
    cr_assert_eq(evexec_future_result(f, &r), EINPROGRESS);
    cr_assert_eq(evexec_future_take_result(f, &r), EINPROGRESS);
    cr_assert_eq(r, (void *)0x1, "a pending future wrote the result");
    evexec_future_release(f);
    free_loop();
}

Test(future, set_result_completes_with_that_result)
{
    make_loop();
    struct evexec_future *f = new_future();
    void *mine = new_result();
    results_freed = 0;
    cr_assert_eq(evexec_future_set_result(f, mine, free_counted), 0);
    cr_assert(evexec_future_done(f));
    cr_assert(!evexec_future_cancelled(f));
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(r, mine);
    /* Reading does not take: the future still owns and frees it. */
    cr_assert_eq(evexec_future_result(f, &r), 0);
    evexec_future_release(f);
    cr_assert_eq(results_freed, 1);
    free_loop();
}

Test(future, set_error_completes_with_that_error)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    cr_assert(evexec_future_done(f));
    cr_assert(!evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_result(f, NULL), EIO);
    cr_assert_eq(evexec_future_take_result(f, NULL), EIO);
    evexec_future_release(f);
    free_loop();
}

Test(future, setting_a_done_future_fails_with_einval)
{
    make_loop();
    results_freed = 0;
    struct evexec_future *f = new_future();
    void *first = new_result(), *second = new_result();
    cr_assert_eq(evexec_future_set_result(f, first, free_counted), 0);
    cr_assert_eq(evexec_future_set_result(f, second, free_counted), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, EIO), EINVAL);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(r, first, "a second set replaced the result");

    struct evexec_future *g = new_future();
    cr_assert_eq(evexec_future_set_error(g, EIO), 0);
    cr_assert_eq(evexec_future_set_error(g, EPERM), EINVAL);
    cr_assert_eq(evexec_future_set_result(g, second, free_counted), EINVAL);
    cr_assert_eq(evexec_future_result(g, NULL), EIO);

    evexec_future_release(f);
    evexec_future_release(g);
    /* The rejected result stayed the caller's: only the first was freed. */
    cr_assert_eq(results_freed, 1);
    free(second);
    free_loop();
}

Test(future, set_error_with_zero_or_negative_code_fails_with_einval)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_error(f, 0), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, -5), EINVAL);
    cr_assert(!evexec_future_done(f), "a rejected set_error completed the future");
    evexec_future_release(f);
    free_loop();
}

Test(future, null_future_arguments_are_rejected)
{
    cr_assert_eq(evexec_future_set_result(NULL, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_set_error(NULL, EIO), EINVAL);
    cr_assert_eq(evexec_future_result(NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_take_result(NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_add_done_callback(NULL, record_cb, NULL), EINVAL);
    cr_assert(!evexec_future_cancel(NULL));
    cr_assert(!evexec_future_done(NULL));
    cr_assert(!evexec_future_cancelled(NULL));
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, NULL, NULL), EINVAL);
    evexec_future_release(f);
    free_loop();
}

Test(future, cancel_pending_future_makes_it_cancelled)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert(evexec_future_cancel(f));
    cr_assert(evexec_future_done(f));
    cr_assert(evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
    cr_assert_eq(evexec_future_take_result(f, NULL), ECANCELED);
    /* Cancelled is done: it can no longer be set. */
    cr_assert_eq(evexec_future_set_error(f, EIO), EINVAL);
    evexec_future_release(f);
    free_loop();
}

Test(future, cancel_twice_returns_true_both_times)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert(evexec_future_cancel(f));
    cr_assert(evexec_future_cancel(f));
    cr_assert(evexec_future_cancelled(f));
    evexec_future_release(f);
    free_loop();
}

Test(future, cancel_after_done_returns_false_and_keeps_outcome)
{
    make_loop();
    results_freed = 0;
    struct evexec_future *f = new_future();
    void *mine = new_result();
    cr_assert_eq(evexec_future_set_result(f, mine, free_counted), 0);
    cr_assert(!evexec_future_cancel(f));
    cr_assert(!evexec_future_cancelled(f));
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(r, mine);

    struct evexec_future *g = new_future();
    cr_assert_eq(evexec_future_set_error(g, EIO), 0);
    cr_assert(!evexec_future_cancel(g));
    cr_assert_eq(evexec_future_result(g, NULL), EIO);
    evexec_future_release(f);
    evexec_future_release(g);
    cr_assert_eq(results_freed, 1);
    free_loop();
}

Test(future, done_callbacks_run_in_registration_order_on_loop_thread)
{
    make_loop();
    reset_record();
    struct evexec_future *f = new_future();
    /* More than a handful, so the callback storage has to grow. */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)(intptr_t)i), 0);
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    dispatch();
    cr_assert_eq(nrecord, 20);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(record[i], i, "position %d ran callback %d", i, record[i]);
    cr_assert(!ran_off_loop_thread);
    evexec_future_release(f);
    free_loop();
}

Test(future, done_callbacks_never_run_inside_set_result_or_cancel)
{
    make_loop();
    reset_record();
    results_freed = 0;
    struct evexec_future *a = new_future(), *b = new_future(), *c = new_future();
    cr_assert_eq(evexec_future_add_done_callback(a, record_cb, (void *)1), 0);
    cr_assert_eq(evexec_future_add_done_callback(b, record_cb, (void *)2), 0);
    cr_assert_eq(evexec_future_add_done_callback(c, record_cb, (void *)3), 0);
    in_call = true;
    cr_assert_eq(evexec_future_set_result(a, new_result(), free_counted), 0);
    cr_assert_eq(evexec_future_set_error(b, EIO), 0);
    cr_assert(evexec_future_cancel(c));
    in_call = false;
    cr_assert_eq(nrecord, 0, "a done callback ran synchronously");
    dispatch();
    cr_assert_eq(nrecord, 3);
    cr_assert(!ran_inside_call);
    /* Completed in the order a, b, c: their callbacks ran in that order. */
    cr_assert_eq(record[0], 1);
    cr_assert_eq(record[1], 2);
    cr_assert_eq(record[2], 3);
    evexec_future_release(a);
    evexec_future_release(b);
    evexec_future_release(c);
    cr_assert_eq(results_freed, 1);
    free_loop();
}

Test(future, done_callback_added_to_done_future_runs_later_not_inside_the_call)
{
    make_loop();
    reset_record();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    in_call = true;
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)1), 0);
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)2), 0);
    in_call = false;
    cr_assert_eq(nrecord, 0, "a callback added to a done future ran synchronously");
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert_eq(record[0], 1);
    cr_assert_eq(record[1], 2);
    cr_assert(!ran_off_loop_thread);
    evexec_future_release(f);
    free_loop();
}

/* A callback that adds another callback to the same (done) future. */
static void add_more_cb(struct evexec_future *f, void *arg)
{
    record_cb(f, arg);
    in_call = true;
    evexec_future_add_done_callback(f, record_cb, (void *)2);
    in_call = false;
}

Test(future, callback_added_from_a_done_callback_runs_after_it)
{
    make_loop();
    reset_record();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, add_more_cb, (void *)1), 0);
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert_eq(record[0], 1);
    cr_assert_eq(record[1], 2);
    cr_assert(!ran_inside_call);
    evexec_future_release(f);
    free_loop();
}

Test(future, each_done_callback_runs_exactly_once)
{
    make_loop();
    reset_record();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)1), 0);
    cr_assert(evexec_future_cancel(f));
    cr_assert(evexec_future_cancel(f)); /* a second cancel schedules nothing new */
    dispatch();
    cr_assert_eq(nrecord, 1);
    /* A later callback runs once too; the earlier one does not run again. */
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)2), 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert_eq(record[1], 2);
    evexec_future_release(f);
    free_loop();
}

Test(future, take_result_transfers_ownership)
{
    make_loop();
    results_freed = 0;
    struct evexec_future *f = new_future();
    void *mine = new_result();
    cr_assert_eq(evexec_future_set_result(f, mine, free_counted), 0);
    void *taken = NULL;
    cr_assert_eq(evexec_future_take_result(f, &taken), 0);
    cr_assert_eq(taken, mine);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_take_result(f, &r), EVEXEC_ETAKEN);
    evexec_future_release(f);
    cr_assert_eq(results_freed, 0, "the future freed a result it no longer owned");
    free(taken);
    free_loop();
}

Test(future, result_is_freed_exactly_once_when_last_reference_goes)
{
    make_loop();
    results_freed = 0;
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_result(f, new_result(), free_counted), 0);
    evexec_future_retain(f);
    evexec_future_retain(f);
    evexec_future_release(f);
    evexec_future_release(f);
    cr_assert_eq(results_freed, 0, "freed while a reference remained");
    cr_assert_eq(evexec_future_result(f, NULL), 0);
    evexec_future_release(f);
    cr_assert_eq(results_freed, 1);
    free_loop();
}

Test(future, null_free_function_leaves_result_alone)
{
    make_loop();
    static int token;
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_result(f, &token, NULL), 0);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_eq(r, &token);
    evexec_future_release(f);
    free_loop();
}

Test(future, release_null_is_a_noop)
{
    evexec_future_release(NULL);
    evexec_future_retain(NULL);
}

Test(future, pending_future_released_unset_is_freed)
{
    make_loop();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, NULL), 0);
    evexec_future_release(f); /* leak checkers verify it is gone */
    reset_record();
    dispatch();
    cr_assert_eq(nrecord, 0);
    free_loop();
}

Test(future, loop_free_cancels_pending_futures_without_running_callbacks)
{
    make_loop();
    reset_record();
    results_freed = 0;
    struct evexec_future *pending = new_future(), *done = new_future();
    cr_assert_eq(evexec_future_add_done_callback(pending, record_cb, (void *)1), 0);
    cr_assert_eq(evexec_future_add_done_callback(done, record_cb, (void *)2), 0);
    cr_assert_eq(evexec_future_set_result(done, new_result(), free_counted), 0);
    evexec_loop_free(loop);
    loop = NULL;
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(nrecord, 0, "a done callback ran after evexec_loop_free");
    /* Futures stay valid until released. */
    cr_assert(evexec_future_cancelled(pending));
    cr_assert_eq(evexec_future_result(pending, NULL), ECANCELED);
    cr_assert(!evexec_future_cancelled(done));
    cr_assert_eq(evexec_future_result(done, NULL), 0);
    evexec_future_release(pending);
    evexec_future_release(done);
    cr_assert_eq(results_freed, 1);
    event_base_free(base);
}

Test(future, add_done_callback_after_loop_free_fails_with_eclosed)
{
    make_loop();
    reset_record();
    struct evexec_future *pending = new_future(), *done = new_future();
    cr_assert_eq(evexec_future_set_error(done, EIO), 0);
    evexec_loop_free(loop);
    loop = NULL;
    cr_assert_eq(evexec_future_add_done_callback(pending, record_cb, NULL), EVEXEC_ECLOSED);
    cr_assert_eq(evexec_future_add_done_callback(done, record_cb, NULL), EVEXEC_ECLOSED);
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(nrecord, 0);
    evexec_future_release(pending);
    evexec_future_release(done);
    event_base_free(base);
}

Test(future, future_may_outlive_its_loop_and_base)
{
    make_loop();
    results_freed = 0;
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_result(f, new_result(), free_counted), 0);
    struct evexec_loop *was = loop;
    free_loop();
    cr_assert_eq(evexec_future_loop(f), was);
    evexec_future_release(f);
    cr_assert_eq(results_freed, 1);
}

/* A done callback may release the last reference of its own future. */
static void release_in_cb(struct evexec_future *f, void *arg)
{
    record_cb(f, arg);
    evexec_future_release(f);
}

Test(future, done_callback_may_release_its_future)
{
    make_loop();
    reset_record();
    results_freed = 0;
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, release_in_cb, NULL), 0);
    cr_assert_eq(evexec_future_set_result(f, new_result(), free_counted), 0);
    dispatch();
    cr_assert_eq(nrecord, 1);
    cr_assert_eq(results_freed, 1);
    free_loop();
}

static void record_soon(void *arg)
{
    record_cb(NULL, arg);
}

Test(future, done_callbacks_keep_fifo_order_with_call_soon)
{
    make_loop();
    reset_record();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)2), 0);
    cr_assert_eq(evexec_call_soon(loop, record_soon, (void *)1), 0);
    cr_assert_eq(evexec_future_set_error(f, EIO), 0); /* queues its callbacks now */
    cr_assert_eq(evexec_call_soon(loop, record_soon, (void *)3), 0);
    dispatch();
    cr_assert_eq(nrecord, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(record[i], i + 1, "position %d ran callback %d", i, record[i]);
    evexec_future_release(f);
    free_loop();
}
