/*
 * test_combine.c -- futures composed of timers and futures: evexec_sleep,
 * evexec_wait_for, evexec_gather, evexec_wait, evexec_future_remove_done_callback,
 * and, for threads without a loop, evexec_cfuture_wait_many.
 *
 * What each test checks is in its name. The common threads: a combinator
 * never completes inside the call that made it, its futures stay the
 * caller's (results freed once, by their own futures), bad input gets its
 * documented error, and evexec_loop_free with combinators pending frees
 * everything and runs nothing (the suite fails on a leak under ASan).
 *
 * No test passes or fails on how long something took: the timers here are
 * either short (they only have to fire) or far longer than the watchdog, so
 * that a timer left running shows up as a dispatch that does not return.
 * Worker threads only record; the main thread asserts.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"

#define TESTUTIL_LOOP_FIXTURE /* base, loop, make_loop, free_loop, dispatch */
#define TESTUTIL_POOL_HELPERS   /* new_pool, stats_of, assert_balanced */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(combine, .fini = fail_on_leaks);

/* Far beyond the watchdog: a timer of this length that is not stopped keeps
 * the dispatch running until the watchdog fails the test. */
#define FOREVER_MS (10L * 60 * 1000)

/* ---- futures, counted results, recording callbacks ------------------------ */

static struct evexec_future *new_future(void)
{
    struct evexec_future *f = evexec_future_new(loop);
    cr_assert_not_null(f, "evexec_future_new: %s", strerror(errno));
    return f;
}

static atomic_int results_freed;
static void free_counted(void *result)
{
    atomic_fetch_add(&results_freed, 1);
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

static void record_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    if (in_call)
        ran_inside_call = true;
    if (nrecord < MAX_RECORD)
        record[nrecord] = (int)(intptr_t)arg;
    nrecord++;
}

static void reset(void)
{
    nrecord = 0;
    in_call = false;
    ran_inside_call = false;
    atomic_store(&results_freed, 0);
}

static void add_record(struct evexec_future *f, int id)
{
    cr_assert_eq(evexec_future_add_done_callback(f, record_cb, (void *)(intptr_t)id), 0);
}

/* Completions from the loop's queue, in the order they were queued. */
static void set_value_soon_cb(void *arg)
{
    cr_assert_eq(evexec_future_set_result(arg, new_result(), free_counted), 0);
}
static void set_eio_soon_cb(void *arg)
{
    cr_assert_eq(evexec_future_set_error(arg, EIO), 0);
}
static void set_eperm_soon_cb(void *arg)
{
    cr_assert_eq(evexec_future_set_error(arg, EPERM), 0);
}
static void cancel_soon_cb(void *arg)
{
    cr_assert(evexec_future_cancel(arg));
}

static void soon(evexec_callback_fn cb, struct evexec_future *f)
{
    cr_assert_eq(evexec_call_soon(loop, cb, f), 0);
}

/* A callback that sets another future when this one is done. */
static void set_other_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    cr_assert_eq(evexec_future_set_result(arg, new_result(), free_counted), 0);
}

/* A callback on a combinator that records whether another future was done
 * when the combinator completed. */
static int nprobe;
static bool probe_other_done;
static void probe_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    nprobe++;
    probe_other_done = evexec_future_done(arg);
}

static void add_probe(struct evexec_future *comb, struct evexec_future *other)
{
    nprobe = 0;
    probe_other_done = false;
    cr_assert_eq(evexec_future_add_done_callback(comb, probe_cb, other), 0);
}

/* When a future is done, fail another one with EIO. */
static void fail_other_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    cr_assert_eq(evexec_future_set_error(arg, EIO), 0);
}

static int error_of(struct evexec_future *f)
{
    return evexec_future_result(f, NULL);
}

/* ---- pools and work ------------------------------------------------------ */

static struct gate gate = GATE_INITIALIZER;
static atomic_bool saw_cancel;
static atomic_int task_runs;

/* Arrives at the gate, then runs until its future is cancelled (bounded). */
static int cancel_aware_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    atomic_fetch_add(&task_runs, 1);
    gate_pass(&gate);
    for (int i = 0; i < HANG_BOUND_MS && !evexec_cancel_requested(); i++)
        usleep(1000);
    atomic_store(&saw_cancel, evexec_cancel_requested());
    return evexec_cancel_requested() ? ECANCELED : 0;
}

static int counting_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&task_runs, 1);
    *result = malloc(8);
    return 0;
}

static int gated_value_task(void *arg, void **result)
{
    (void)arg;
    gate_pass(&gate);
    *result = malloc(8);
    return 0;
}

static int gated_error_task(void *arg, void **result)
{
    (void)result;
    gate_pass(&gate);
    return (int)(intptr_t)arg;
}

static void reset_gate(void)
{
    gate_destroy(&gate);
    gate_init(&gate);
    atomic_store(&saw_cancel, false);
    atomic_store(&task_runs, 0);
}

/* ======================================================================== */
/* evexec_sleep                                                              */

Test(combine, sleep_finishes_with_null_result_after_dispatch_not_inside_the_call)
{
    make_loop();
    reset();
    in_call = true;
    struct evexec_future *s = evexec_sleep(loop, 1);
    cr_assert_not_null(s, "evexec_sleep: %s", strerror(errno));
    add_record(s, 1);
    cr_assert(!evexec_future_done(s));
    in_call = false;
    dispatch();
    cr_assert(evexec_future_done(s));
    cr_assert(!evexec_future_cancelled(s));
    void *r = (void *)0x1;
    cr_assert_eq(evexec_future_result(s, &r), 0);
    cr_assert_null(r);
    cr_assert_eq(nrecord, 1);
    cr_assert(!ran_inside_call);
    evexec_future_release(s);
    free_loop();
}

Test(combine, sleep_zero_finishes_on_the_next_pass)
{
    make_loop();
    struct evexec_future *s = evexec_sleep(loop, 0);
    cr_assert_not_null(s);
    cr_assert(!evexec_future_done(s));
    dispatch();
    cr_assert(evexec_future_done(s));
    cr_assert_eq(error_of(s), 0);
    evexec_future_release(s);
    free_loop();
}

/* The sleep alone keeps event_base_dispatch running: it returns only once
 * the sleep is done. */
Test(combine, pending_sleep_keeps_the_loop_alive)
{
    make_loop();
    struct evexec_future *s = evexec_sleep(loop, 20);
    cr_assert_not_null(s);
    dispatch();
    cr_assert(evexec_future_done(s), "dispatch returned while the sleep was pending");
    evexec_future_release(s);
    free_loop();
}

/* A sleep far longer than the watchdog: dispatch returns (the watchdog does
 * not fire) only if the cancel stopped the timer. */
Test(combine, cancelled_sleep_stops_its_timer_at_once)
{
    make_loop();
    reset();
    struct evexec_future *s = evexec_sleep(loop, FOREVER_MS);
    cr_assert_not_null(s);
    add_record(s, 1);
    cr_assert(evexec_future_cancel(s));
    cr_assert(evexec_future_cancelled(s));
    cr_assert_eq(error_of(s), ECANCELED);
    dispatch();
    cr_assert_eq(nrecord, 1);
    evexec_future_release(s);
    free_loop();
}

Test(combine, sleep_released_while_pending_still_runs_its_callbacks_and_is_freed)
{
    make_loop();
    reset();
    struct evexec_future *s = evexec_sleep(loop, 1);
    cr_assert_not_null(s);
    add_record(s, 7);
    evexec_future_release(s);
    dispatch();
    cr_assert_eq(nrecord, 1);
    cr_assert_eq(record[0], 7);
    free_loop();
}

Test(combine, sleep_rejects_a_null_loop_and_negative_times)
{
    errno = 0;
    cr_assert_null(evexec_sleep(NULL, 1));
    cr_assert_eq(errno, EINVAL);
    make_loop();
    errno = 0;
    cr_assert_null(evexec_sleep(loop, -1));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_sleep(loop, -5));
    cr_assert_eq(errno, EINVAL);
    free_loop();
}

Test(combine, sleep_cannot_be_completed_by_the_user)
{
    make_loop();
    struct evexec_future *s = evexec_sleep(loop, FOREVER_MS);
    cr_assert_not_null(s);
    cr_assert_eq(evexec_future_set_result(s, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_set_error(s, EIO), EINVAL);
    cr_assert(!evexec_future_done(s));
    cr_assert(evexec_future_cancel(s));
    evexec_future_release(s);
    free_loop();
}

/* ======================================================================== */
/* evexec_wait_for                                                           */

Test(combine, wait_for_has_the_result_of_its_future_and_borrows_it)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    in_call = true;
    struct evexec_future *w = evexec_wait_for(f, FOREVER_MS);
    cr_assert_not_null(w, "evexec_wait_for: %s", strerror(errno));
    add_record(w, 1);
    in_call = false;
    soon(set_value_soon_cb, f);
    dispatch(); /* returns at once: the success stopped the long timer */
    cr_assert(!ran_inside_call);
    cr_assert_eq(nrecord, 1);
    void *rf = NULL, *rw = NULL;
    cr_assert_eq(evexec_future_result(f, &rf), 0);
    cr_assert_eq(evexec_future_result(w, &rw), 0);
    cr_assert_eq(rw, rf, "wait_for does not show its future's result");
    /* The result stays f's: freed once, when the last of the two goes. */
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 0);
    cr_assert_eq(evexec_future_result(w, &rw), 0);
    cr_assert_eq(rw, rf);
    evexec_future_release(w);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

Test(combine, take_through_wait_for_takes_the_result_from_its_future)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, -1);
    cr_assert_not_null(w);
    soon(set_value_soon_cb, f);
    dispatch();
    void *r = NULL;
    cr_assert_eq(evexec_future_take_result(w, &r), 0);
    cr_assert_not_null(r);
    cr_assert_eq(evexec_future_result(f, NULL), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_result(w, NULL), EVEXEC_ETAKEN);
    evexec_future_release(w);
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 0, "a taken result was freed");
    free_counted(r);
    free_loop();
}

Test(combine, wait_for_reports_the_error_of_its_future)
{
    make_loop();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, FOREVER_MS);
    cr_assert_not_null(w);
    soon(set_eio_soon_cb, f);
    dispatch();
    cr_assert_eq(error_of(w), EIO);
    cr_assert(!evexec_future_cancelled(w));
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_timeout_cancels_its_future_and_fails_with_etimedout)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    add_record(f, 1);
    struct evexec_future *w = evexec_wait_for(f, 5);
    cr_assert_not_null(w);
    add_record(w, 2);
    dispatch();
    cr_assert(evexec_future_cancelled(f), "the timeout did not cancel the future");
    cr_assert_eq(error_of(w), ETIMEDOUT);
    cr_assert(!evexec_future_cancelled(w));
    cr_assert_eq(nrecord, 2);
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_timeout_cancels_the_work_of_a_chained_future)
{
    make_loop();
    reset_gate();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *f =
        evexec_run_in_executor(loop, pool, cancel_aware_task, NULL, NULL);
    cr_assert_not_null(f);
    cr_assert(gate_wait_arrived(&gate, 1));
    gate_open(&gate);
    struct evexec_future *w = evexec_wait_for(f, 5);
    cr_assert_not_null(w);
    dispatch(); /* returns once the cancelled task has ended */
    cr_assert_eq(error_of(w), ETIMEDOUT);
    cr_assert(evexec_future_cancelled(f));
    evexec_pool_free(pool);
    cr_assert(atomic_load(&saw_cancel), "the running task never saw the cancel");
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, cancelling_wait_for_cancels_its_future_and_stops_the_timer)
{
    make_loop();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, FOREVER_MS);
    cr_assert_not_null(w);
    cr_assert(evexec_future_cancel(w));
    cr_assert(evexec_future_cancelled(w));
    cr_assert(evexec_future_cancelled(f));
    dispatch();
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_of_a_future_cancelled_elsewhere_is_cancelled)
{
    make_loop();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, FOREVER_MS);
    cr_assert_not_null(w);
    soon(cancel_soon_cb, f);
    dispatch();
    cr_assert(evexec_future_cancelled(w));
    cr_assert_eq(error_of(w), ECANCELED);
    evexec_future_release(f);
    evexec_future_release(w);
    free_loop();
}

/* -1: the future decides, however long it takes (here: after a sleep). */
Test(combine, wait_for_without_timeout_waits_for_its_future)
{
    make_loop();
    struct evexec_future *f = new_future();
    struct evexec_future *s = evexec_sleep(loop, 20);
    cr_assert_not_null(s);
    cr_assert_eq(evexec_future_add_done_callback(s, set_other_cb, f), 0);
    struct evexec_future *w = evexec_wait_for(f, -1);
    cr_assert_not_null(w);
    dispatch();
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(s);
    evexec_future_release(w);
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

Test(combine, wait_for_zero_timeout_gives_a_done_future_its_outcome_on_the_next_pass)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_error(f, EPERM), 0);
    in_call = true;
    struct evexec_future *w = evexec_wait_for(f, 0);
    cr_assert_not_null(w);
    add_record(w, 1);
    cr_assert(!evexec_future_done(w), "wait_for completed inside the call");
    in_call = false;
    dispatch();
    cr_assert(!ran_inside_call);
    cr_assert_eq(error_of(w), EPERM);
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_zero_timeout_times_a_pending_future_out_on_the_next_pass)
{
    make_loop();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, 0);
    cr_assert_not_null(w);
    cr_assert(!evexec_future_done(w));
    dispatch();
    cr_assert_eq(error_of(w), ETIMEDOUT);
    cr_assert(evexec_future_cancelled(f));
    evexec_future_release(w);
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_rejects_a_null_future_and_timeouts_below_minus_one)
{
    errno = 0;
    cr_assert_null(evexec_wait_for(NULL, 10));
    cr_assert_eq(errno, EINVAL);
    make_loop();
    struct evexec_future *f = new_future();
    errno = 0;
    cr_assert_null(evexec_wait_for(f, -2));
    cr_assert_eq(errno, EINVAL);
    cr_assert(!evexec_future_done(f), "a failed call touched the future");
    evexec_future_release(f);
    free_loop();
}

Test(combine, wait_for_keeps_its_future_alive_after_the_caller_released_it)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    struct evexec_future *w = evexec_wait_for(f, FOREVER_MS);
    cr_assert_not_null(w);
    soon(set_value_soon_cb, f);
    evexec_future_release(f);
    dispatch();
    void *r = NULL;
    cr_assert_eq(evexec_future_result(w, &r), 0);
    cr_assert_not_null(r);
    cr_assert_eq(atomic_load(&results_freed), 0);
    evexec_future_release(w);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

/* ======================================================================== */
/* evexec_gather                                                             */

Test(combine, gather_finishes_with_null_result_when_all_finish)
{
    make_loop();
    reset();
    struct evexec_future *fs[3] = {new_future(), new_future(), new_future()};
    in_call = true;
    struct evexec_future *g = evexec_gather(loop, fs, 3);
    cr_assert_not_null(g, "evexec_gather: %s", strerror(errno));
    add_record(g, 1);
    in_call = false;
    soon(set_value_soon_cb, fs[2]);
    soon(set_value_soon_cb, fs[0]);
    soon(set_value_soon_cb, fs[1]);
    dispatch();
    cr_assert(!ran_inside_call);
    cr_assert_eq(nrecord, 1);
    void *r = (void *)0x1;
    cr_assert_eq(evexec_future_result(g, &r), 0);
    cr_assert_null(r);
    /* The results stay with their futures. */
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(evexec_future_result(fs[i], &r), 0);
        cr_assert_not_null(r);
    }
    evexec_future_release(g);
    cr_assert_eq(atomic_load(&results_freed), 0);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    cr_assert_eq(atomic_load(&results_freed), 3);
    free_loop();
}

/* fs[1] fails first, then fs[2]: gather reports fs[1]'s error, at once,
 * while fs[0] is still pending and later finishes untouched. */
Test(combine, gather_fails_at_once_with_the_first_error_in_completion_order)
{
    make_loop();
    reset();
    struct evexec_future *fs[3] = {new_future(), new_future(), new_future()};
    struct evexec_future *g = evexec_gather(loop, fs, 3);
    cr_assert_not_null(g);
    add_record(g, 1);
    add_probe(g, fs[0]);
    cr_assert_eq(evexec_future_add_done_callback(g, set_other_cb, fs[0]), 0);
    soon(set_eperm_soon_cb, fs[1]);
    soon(set_eio_soon_cb, fs[2]);
    dispatch();
    cr_assert_eq(nprobe, 1);
    cr_assert(!probe_other_done, "gather did not fail at once, or touched a future");
    cr_assert_eq(error_of(g), EPERM);
    cr_assert_eq(error_of(fs[0]), 0, "the others keep running");
    cr_assert_eq(error_of(g), EPERM);
    cr_assert_eq(nrecord, 1);
    evexec_future_release(g);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    cr_assert_eq(atomic_load(&results_freed), 1);
    free_loop();
}

Test(combine, gather_counts_a_cancelled_future_as_the_error_ecanceled)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *g = evexec_gather(loop, fs, 2);
    cr_assert_not_null(g);
    soon(cancel_soon_cb, fs[0]);
    dispatch();
    cr_assert_eq(error_of(g), ECANCELED);
    cr_assert(!evexec_future_cancelled(g), "gather itself was not cancelled");
    cr_assert(!evexec_future_done(fs[1]));
    evexec_future_release(g);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, cancelling_gather_cancels_every_future_it_gathers)
{
    make_loop();
    reset_gate();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_future *fs[3];
    fs[0] = new_future();
    fs[1] = evexec_run_in_executor(loop, pool, cancel_aware_task, NULL, NULL);
    fs[2] = evexec_run_in_executor(loop, pool, counting_task, NULL, free);
    cr_assert(fs[1] && fs[2]);
    cr_assert(gate_wait_arrived(&gate, 1));
    gate_open(&gate);
    struct evexec_future *g = evexec_gather(loop, fs, 3);
    cr_assert_not_null(g);
    cr_assert(evexec_future_cancel(g));
    for (int i = 0; i < 3; i++)
        cr_assert(evexec_future_cancelled(fs[i]), "future %d not cancelled", i);
    dispatch();
    evexec_pool_free(pool);
    cr_assert(atomic_load(&saw_cancel), "the running task never saw the cancel");
    cr_assert_eq(atomic_load(&task_runs), 1, "a queued task ran after gather was cancelled");
    evexec_future_release(g);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, gather_of_nothing_finishes_on_the_next_pass)
{
    make_loop();
    struct evexec_future *g = evexec_gather(loop, NULL, 0);
    cr_assert_not_null(g);
    cr_assert(!evexec_future_done(g));
    dispatch();
    cr_assert(evexec_future_done(g));
    cr_assert_eq(error_of(g), 0);
    evexec_future_release(g);
    free_loop();
}

Test(combine, gather_over_done_futures_completes_on_the_next_pass_not_inside_the_call)
{
    make_loop();
    reset();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(evexec_future_set_result(fs[i], NULL, NULL), 0);
    in_call = true;
    struct evexec_future *g = evexec_gather(loop, fs, 2);
    cr_assert_not_null(g);
    add_record(g, 1);
    cr_assert(!evexec_future_done(g));
    in_call = false;
    dispatch();
    cr_assert(!ran_inside_call);
    cr_assert_eq(nrecord, 1);
    cr_assert_eq(error_of(g), 0);
    evexec_future_release(g);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, gather_counts_a_future_given_twice_once)
{
    make_loop();
    struct evexec_future *a = new_future(), *b = new_future();
    struct evexec_future *fs[4] = {a, b, a, a};
    struct evexec_future *g = evexec_gather(loop, fs, 4);
    cr_assert_not_null(g);
    add_probe(g, b);
    cr_assert_eq(evexec_future_add_done_callback(a, set_other_cb, b), 0);
    soon(set_value_soon_cb, a);
    dispatch();
    cr_assert_eq(nprobe, 1);
    cr_assert(probe_other_done, "gather finished before b: a repeated future counted more than once");
    cr_assert_eq(error_of(g), 0);
    evexec_future_release(g);
    evexec_future_release(a);
    evexec_future_release(b);
    cr_assert_eq(atomic_load(&results_freed), 2);
    free_loop();
}

Test(combine, gather_rejects_bad_input_with_einval)
{
    errno = 0;
    cr_assert_null(evexec_gather(NULL, NULL, 0));
    cr_assert_eq(errno, EINVAL);
    make_loop();
    errno = 0;
    cr_assert_null(evexec_gather(loop, NULL, 2));
    cr_assert_eq(errno, EINVAL);
    struct evexec_future *f = new_future();
    struct evexec_future *with_null[2] = {f, NULL};
    errno = 0;
    cr_assert_null(evexec_gather(loop, with_null, 2));
    cr_assert_eq(errno, EINVAL);

    struct event_base *base2 = event_base_new();
    struct evexec_loop *loop2 = evexec_loop_new(base2);
    cr_assert_not_null(loop2);
    struct evexec_future *other = evexec_future_new(loop2);
    cr_assert_not_null(other);
    struct evexec_future *mixed[2] = {f, other};
    errno = 0;
    cr_assert_null(evexec_gather(loop, mixed, 2));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_wait(loop, mixed, 2, EVEXEC_ALL_COMPLETED, -1));
    cr_assert_eq(errno, EINVAL);
    evexec_future_release(other);
    evexec_loop_free(loop2);
    event_base_free(base2);

    /* A failed call left f as it was and holds nothing: it can go now. */
    cr_assert(!evexec_future_done(f));
    evexec_future_release(f);
    free_loop();
}

Test(combine, gather_released_while_pending_is_freed_once_its_futures_finish)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *g = evexec_gather(loop, fs, 2);
    cr_assert_not_null(g);
    evexec_future_release(g);
    soon(set_value_soon_cb, fs[0]);
    soon(set_value_soon_cb, fs[1]);
    dispatch();
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop(); /* the leak check after the test sees whether g went */
}

/* ======================================================================== */
/* evexec_wait                                                               */

Test(combine, wait_first_completed_finishes_when_one_is_done)
{
    make_loop();
    struct evexec_future *fs[3] = {new_future(), new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 3, EVEXEC_FIRST_COMPLETED, -1);
    cr_assert_not_null(w, "evexec_wait: %s", strerror(errno));
    soon(set_eio_soon_cb, fs[1]);
    dispatch();
    cr_assert_eq(error_of(w), 0, "wait finishes whatever the outcome");
    cr_assert(!evexec_future_done(fs[0]) && !evexec_future_done(fs[2]),
              "wait touched the futures it waits on");
    evexec_future_release(w);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_first_exception_finishes_when_one_fails)
{
    make_loop();
    struct evexec_future *fs[3] = {new_future(), new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 3, EVEXEC_FIRST_EXCEPTION, -1);
    cr_assert_not_null(w);
    add_probe(w, fs[2]);
    cr_assert_eq(evexec_future_add_done_callback(fs[0], fail_other_cb, fs[2]), 0);
    soon(set_value_soon_cb, fs[0]);
    dispatch();
    cr_assert_eq(nprobe, 1);
    cr_assert(probe_other_done, "a success ended a FIRST_EXCEPTION wait");
    cr_assert_eq(error_of(w), 0);
    cr_assert(!evexec_future_done(fs[1]));
    evexec_future_release(w);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_first_exception_counts_a_cancelled_future_as_failed)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 2, EVEXEC_FIRST_EXCEPTION, -1);
    cr_assert_not_null(w);
    soon(cancel_soon_cb, fs[1]);
    dispatch();
    cr_assert_eq(error_of(w), 0);
    cr_assert(!evexec_future_done(fs[0]));
    evexec_future_release(w);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_first_exception_finishes_when_all_are_done_without_failure)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 2, EVEXEC_FIRST_EXCEPTION, -1);
    cr_assert_not_null(w);
    soon(set_value_soon_cb, fs[0]);
    soon(set_value_soon_cb, fs[1]);
    dispatch();
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(w);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_all_completed_waits_for_every_future_failed_or_not)
{
    make_loop();
    struct evexec_future *fs[3] = {new_future(), new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 3, EVEXEC_ALL_COMPLETED, -1);
    cr_assert_not_null(w);
    add_probe(w, fs[2]);
    cr_assert_eq(evexec_future_add_done_callback(fs[1], set_other_cb, fs[2]), 0);
    soon(set_eio_soon_cb, fs[0]);
    soon(cancel_soon_cb, fs[1]);
    dispatch();
    cr_assert_eq(nprobe, 1);
    cr_assert(probe_other_done, "wait finished before every future was done");
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(w);
    for (int i = 0; i < 3; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_times_out_with_etimedout_and_cancels_nothing)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 2, EVEXEC_ALL_COMPLETED, 5);
    cr_assert_not_null(w);
    soon(set_value_soon_cb, fs[0]);
    dispatch();
    cr_assert_eq(error_of(w), ETIMEDOUT);
    cr_assert(!evexec_future_done(fs[1]), "a timed-out wait cancelled a future");
    evexec_future_release(w);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, cancelling_wait_cancels_none_of_its_futures_and_stops_its_timer)
{
    make_loop();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    struct evexec_future *w = evexec_wait(loop, fs, 2, EVEXEC_ALL_COMPLETED, FOREVER_MS);
    cr_assert_not_null(w);
    cr_assert(evexec_future_cancel(w));
    for (int i = 0; i < 2; i++)
        cr_assert(!evexec_future_done(fs[i]));
    dispatch();
    evexec_future_release(w);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_of_nothing_finishes_on_the_next_pass)
{
    make_loop();
    struct evexec_future *w = evexec_wait(loop, NULL, 0, EVEXEC_FIRST_COMPLETED, FOREVER_MS);
    cr_assert_not_null(w);
    cr_assert(!evexec_future_done(w));
    dispatch();
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(w);
    free_loop();
}

/* The condition holds already: the wait finishes on the next pass and a
 * zero timeout does not turn that into ETIMEDOUT. */
Test(combine, wait_whose_condition_holds_already_finishes_on_the_next_pass_even_with_zero_timeout)
{
    make_loop();
    reset();
    struct evexec_future *fs[2] = {new_future(), new_future()};
    cr_assert_eq(evexec_future_set_result(fs[0], NULL, NULL), 0);
    in_call = true;
    struct evexec_future *w = evexec_wait(loop, fs, 2, EVEXEC_FIRST_COMPLETED, 0);
    cr_assert_not_null(w);
    add_record(w, 1);
    cr_assert(!evexec_future_done(w));
    in_call = false;
    dispatch();
    cr_assert(!ran_inside_call);
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(w);
    for (int i = 0; i < 2; i++)
        evexec_future_release(fs[i]);
    free_loop();
}

Test(combine, wait_counts_a_future_given_twice_once)
{
    make_loop();
    struct evexec_future *a = new_future(), *b = new_future();
    struct evexec_future *fs[3] = {a, a, b};
    struct evexec_future *w = evexec_wait(loop, fs, 3, EVEXEC_ALL_COMPLETED, -1);
    cr_assert_not_null(w);
    add_probe(w, b);
    cr_assert_eq(evexec_future_add_done_callback(a, set_other_cb, b), 0);
    soon(set_value_soon_cb, a);
    dispatch();
    cr_assert_eq(nprobe, 1);
    cr_assert(probe_other_done, "wait finished before b: a repeated future counted more than once");
    cr_assert_eq(error_of(w), 0);
    evexec_future_release(w);
    evexec_future_release(a);
    evexec_future_release(b);
    free_loop();
}

Test(combine, wait_rejects_unknown_return_when_bad_timeouts_and_bad_arrays)
{
    errno = 0;
    cr_assert_null(evexec_wait(NULL, NULL, 0, EVEXEC_ALL_COMPLETED, -1));
    cr_assert_eq(errno, EINVAL);
    make_loop();
    struct evexec_future *f = new_future();
    const unsigned bad_when[] = {0, 4, 0x100};
    for (size_t i = 0; i < sizeof(bad_when) / sizeof(bad_when[0]); i++) {
        errno = 0;
        cr_assert_null(evexec_wait(loop, &f, 1, bad_when[i], -1));
        cr_assert_eq(errno, EINVAL, "return_when %u", bad_when[i]);
    }
    errno = 0;
    cr_assert_null(evexec_wait(loop, &f, 1, EVEXEC_ALL_COMPLETED, -2));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_wait(loop, NULL, 1, EVEXEC_ALL_COMPLETED, -1));
    cr_assert_eq(errno, EINVAL);
    struct evexec_future *with_null[2] = {NULL, f};
    errno = 0;
    cr_assert_null(evexec_wait(loop, with_null, 2, EVEXEC_ALL_COMPLETED, -1));
    cr_assert_eq(errno, EINVAL);
    evexec_future_release(f);
    free_loop();
}

/* ======================================================================== */
/* composition, ownership and teardown                                       */

/* gather of a wait_for of a run_in_executor: the layers pass their outcomes
 * up and every result is freed once. */
Test(combine, combinators_compose_and_free_every_result_once)
{
    make_loop();
    reset();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_future *work[4], *timed[4];
    for (int i = 0; i < 4; i++) {
        work[i] = evexec_run_in_executor(loop, pool, counting_task, NULL, free_counted);
        cr_assert_not_null(work[i]);
        timed[i] = evexec_wait_for(work[i], FOREVER_MS);
        cr_assert_not_null(timed[i]);
        evexec_future_release(work[i]); /* wait_for keeps it */
    }
    struct evexec_future *g = evexec_gather(loop, timed, 4);
    cr_assert_not_null(g);
    dispatch();
    cr_assert_eq(error_of(g), 0);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        cr_assert_eq(evexec_future_result(timed[i], &r), 0);
        cr_assert_not_null(r);
        evexec_future_release(timed[i]);
    }
    evexec_future_release(g);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 4);
    free_loop();
}

/* Pending combinators of every kind, over plain futures and running work,
 * with callbacks: evexec_loop_free frees them (the leak check proves it),
 * runs none of their callbacks, and the results that arrive later are
 * freed once. */
Test(combine, loop_free_with_combinators_pending_frees_everything_and_runs_nothing)
{
    make_loop();
    reset();
    reset_gate();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_future *plain = new_future();
    struct evexec_future *running =
        evexec_run_in_executor(loop, pool, gated_value_task, NULL, free_counted);
    cr_assert_not_null(running);
    cr_assert(gate_wait_arrived(&gate, 1));
    struct evexec_future *fs[2] = {plain, running};
    struct evexec_future *made[6];
    made[0] = evexec_sleep(loop, FOREVER_MS);
    made[1] = evexec_wait_for(plain, FOREVER_MS);
    made[2] = evexec_wait_for(running, -1);
    made[3] = evexec_gather(loop, fs, 2);
    made[4] = evexec_wait(loop, fs, 2, EVEXEC_ALL_COMPLETED, FOREVER_MS);
    made[5] = evexec_gather(loop, made, 5); /* a combinator of combinators */
    for (int i = 0; i < 6; i++) {
        cr_assert_not_null(made[i], "combinator %d: %s", i, strerror(errno));
        add_record(made[i], i);
    }
    add_record(plain, 10);
    add_record(running, 11);
    /* Some released by the caller already, some not. */
    evexec_future_release(made[0]);
    evexec_future_release(made[3]);
    evexec_future_release(plain);
    evexec_loop_free(loop);
    loop = NULL;
    gate_open(&gate);
    evexec_pool_free(pool); /* the task ends; its late result is freed */
    cr_assert_eq(nrecord, 0, "a callback ran after evexec_loop_free");
    cr_assert_eq(atomic_load(&results_freed), 1);
    for (int i = 0; i < 6; i++)
        if (i != 0 && i != 3)
            evexec_future_release(made[i]);
    evexec_future_release(running);
    event_base_free(base);
    base = NULL;
}

/* A combinator over futures that are done already, its callbacks queued:
 * evexec_loop_free before the next pass runs nothing and frees it. */
Test(combine, loop_free_before_the_next_pass_of_a_combinator_over_done_futures_runs_nothing)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_result(f, new_result(), free_counted), 0);
    struct evexec_future *g = evexec_gather(loop, &f, 1);
    struct evexec_future *w = evexec_wait_for(f, 0);
    struct evexec_future *n = evexec_gather(loop, NULL, 0);
    cr_assert(g && w && n);
    add_record(g, 1);
    add_record(w, 2);
    add_record(n, 3);
    evexec_loop_free(loop);
    loop = NULL;
    cr_assert_eq(nrecord, 0);
    cr_assert(evexec_future_cancelled(g));
    cr_assert(evexec_future_cancelled(w));
    cr_assert(evexec_future_cancelled(n));
    evexec_future_release(g);
    evexec_future_release(w);
    evexec_future_release(n);
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 1);
    event_base_free(base);
    base = NULL;
}

Test(combine, combinators_on_a_freed_loop_fail_with_eclosed)
{
    make_loop();
    struct evexec_future *f = new_future();
    evexec_loop_free(loop);
    errno = 0;
    cr_assert_null(evexec_sleep(loop, 1));
    cr_assert_eq(errno, EVEXEC_ECLOSED);
    errno = 0;
    cr_assert_null(evexec_wait_for(f, 1));
    cr_assert_eq(errno, EVEXEC_ECLOSED);
    errno = 0;
    cr_assert_null(evexec_gather(loop, &f, 1));
    cr_assert_eq(errno, EVEXEC_ECLOSED);
    errno = 0;
    cr_assert_null(evexec_wait(loop, &f, 1, EVEXEC_ALL_COMPLETED, -1));
    cr_assert_eq(errno, EVEXEC_ECLOSED);
    evexec_future_release(f);
    loop = NULL;
    event_base_free(base);
    base = NULL;
}

/* ======================================================================== */
/* evexec_future_remove_done_callback                                       */

Test(combine, remove_done_callback_removes_every_matching_registration_and_counts_them)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    add_record(f, 1);
    add_record(f, 2);
    add_record(f, 1);
    add_record(f, 3);
    add_record(f, 1);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)1), 3);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)1), 0);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert_eq(record[0], 2, "the others keep their order");
    cr_assert_eq(record[1], 3);
    evexec_future_release(f);
    free_loop();
}

Test(combine, remove_done_callback_matches_both_callback_and_argument)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    struct evexec_future *other = new_future();
    add_record(f, 1);
    cr_assert_eq(evexec_future_add_done_callback(f, set_other_cb, other), 0);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)2), 0);
    cr_assert_eq(evexec_future_remove_done_callback(f, set_other_cb, NULL), 0);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 1);
    cr_assert(evexec_future_done(other));
    evexec_future_release(f);
    evexec_future_release(other);
    free_loop();
}

/* Removed while queued to run: it does not run. */
Test(combine, remove_done_callback_of_a_done_future_before_the_pass_stops_it)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), 0);
    add_record(f, 1);
    add_record(f, 2);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)1), 1);
    dispatch();
    cr_assert_eq(nrecord, 1);
    cr_assert_eq(record[0], 2);
    evexec_future_release(f);
    free_loop();
}

Test(combine, remove_done_callback_after_it_ran_removes_nothing)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    add_record(f, 1);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 1);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)1), 0);
    evexec_future_release(f);
    free_loop();
}

/* A callback that removes one registered after it, on the same future. */
static void remove_next_cb(struct evexec_future *f, void *arg)
{
    (void)arg;
    record_cb(f, (void *)(intptr_t)9);
    cr_assert_eq(evexec_future_remove_done_callback(f, record_cb, (void *)(intptr_t)2), 1);
}

Test(combine, remove_done_callback_from_a_running_callback_stops_a_later_one)
{
    make_loop();
    reset();
    struct evexec_future *f = new_future();
    cr_assert_eq(evexec_future_add_done_callback(f, remove_next_cb, NULL), 0);
    add_record(f, 2);
    add_record(f, 3);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert_eq(record[0], 9);
    cr_assert_eq(record[1], 3);
    evexec_future_release(f);
    free_loop();
}

Test(combine, remove_done_callback_of_a_null_future_fails_with_einval)
{
    errno = 0;
    cr_assert_eq(evexec_future_remove_done_callback(NULL, record_cb, NULL), -1);
    cr_assert_eq(errno, EINVAL);
}

/* ======================================================================== */
/* evexec_cfuture_wait_many (any thread, no loop)                             */

static struct evexec_cfuture *submit(struct evexec_pool *pool, evexec_work_fn fn, long arg)
{
    struct evexec_cfuture *cf = evexec_pool_submit(pool, fn, (void *)(intptr_t)arg, free);
    cr_assert_not_null(cf, "evexec_pool_submit: %s", strerror(errno));
    return cf;
}

Test(combine, wait_many_first_completed_returns_when_one_is_done)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_cfuture *cfs[2] = {submit(pool, gated_value_task, 0),
                                     submit(pool, counting_task, 0)};
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 2, EVEXEC_FIRST_COMPLETED, HANG_BOUND_MS), 0);
    cr_assert_eq(evexec_cfuture_state(cfs[1]), EVEXEC_FINISHED);
    cr_assert_neq(evexec_cfuture_state(cfs[0]), EVEXEC_FINISHED, "the gated task finished");
    gate_open(&gate);
    evexec_pool_free(pool);
    for (int i = 0; i < 2; i++)
        evexec_cfuture_release(cfs[i]);
}

Test(combine, wait_many_all_completed_waits_for_every_future)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(3);
    struct evexec_cfuture *cfs[3] = {submit(pool, gated_value_task, 0),
                                     submit(pool, gated_error_task, EIO),
                                     submit(pool, counting_task, 0)};
    cr_assert(gate_wait_arrived(&gate, 2));
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 3, EVEXEC_ALL_COMPLETED, 0), ETIMEDOUT);
    gate_open(&gate);
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 3, EVEXEC_ALL_COMPLETED, -1), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(evexec_cfuture_state(cfs[i]), EVEXEC_FINISHED);
    evexec_pool_free(pool);
    for (int i = 0; i < 3; i++)
        evexec_cfuture_release(cfs[i]);
}

Test(combine, wait_many_first_exception_returns_when_one_fails)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_cfuture *cfs[2] = {submit(pool, gated_value_task, 0),
                                     submit(pool, gated_error_task, EIO)};
    cr_assert(gate_wait_arrived(&gate, 2));
    gate_open(&gate);
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 2, EVEXEC_FIRST_EXCEPTION, HANG_BOUND_MS), 0);
    cr_assert_eq(evexec_cfuture_result(cfs[1], 0, NULL), EIO);
    evexec_pool_free(pool);
    for (int i = 0; i < 2; i++)
        evexec_cfuture_release(cfs[i]);
}

Test(combine, wait_many_first_exception_counts_a_cancelled_future_and_not_a_success)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cfs[3] = {submit(pool, gated_value_task, 0),
                                     submit(pool, counting_task, 0),
                                     submit(pool, counting_task, 0)};
    cr_assert(gate_wait_arrived(&gate, 1));
    /* Nothing failed yet, nothing done: only looking times out. */
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 3, EVEXEC_FIRST_EXCEPTION, 0), ETIMEDOUT);
    cr_assert(evexec_cfuture_cancel(cfs[2]));
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 3, EVEXEC_FIRST_EXCEPTION, 0), 0);
    gate_open(&gate);
    evexec_pool_free(pool);
    for (int i = 0; i < 3; i++)
        evexec_cfuture_release(cfs[i]);
}

Test(combine, wait_many_times_out_with_etimedout)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = submit(pool, gated_value_task, 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, EVEXEC_ALL_COMPLETED, 10), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, EVEXEC_FIRST_COMPLETED, 0), ETIMEDOUT);
    gate_open(&gate);
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, EVEXEC_FIRST_COMPLETED, -1), 0);
    evexec_pool_free(pool);
    evexec_cfuture_release(cf);
}

Test(combine, wait_many_of_nothing_returns_at_once)
{
    cr_assert_eq(evexec_cfuture_wait_many(NULL, 0, EVEXEC_FIRST_COMPLETED, -1), 0);
    cr_assert_eq(evexec_cfuture_wait_many(NULL, 0, EVEXEC_ALL_COMPLETED, 0), 0);
}

Test(combine, wait_many_counts_a_future_given_twice_once)
{
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = submit(pool, counting_task, 0);
    struct evexec_cfuture *cfs[3] = {cf, cf, cf};
    cr_assert_eq(evexec_cfuture_wait_many(cfs, 3, EVEXEC_ALL_COMPLETED, HANG_BOUND_MS), 0);
    evexec_pool_free(pool);
    evexec_cfuture_release(cf);
}

Test(combine, wait_many_rejects_bad_input_with_einval)
{
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = submit(pool, counting_task, 0);
    struct evexec_cfuture *with_null[2] = {cf, NULL};
    cr_assert_eq(evexec_cfuture_wait_many(NULL, 1, EVEXEC_ALL_COMPLETED, -1), EINVAL);
    cr_assert_eq(evexec_cfuture_wait_many(with_null, 2, EVEXEC_ALL_COMPLETED, -1), EINVAL);
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, 0, -1), EINVAL);
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, 4, -1), EINVAL);
    cr_assert_eq(evexec_cfuture_wait_many(&cf, 1, EVEXEC_ALL_COMPLETED, -2), EINVAL);
    evexec_pool_free(pool);
    evexec_cfuture_release(cf);
}

/* Several threads wait for the same set while a worker completes it; each
 * waiter is woken (none sleeps through a completion). */
struct many_waiter {
    pthread_t thread;
    struct evexec_cfuture **cfs;
    size_t n;
    int rc;
};

static void *many_waiter_main(void *arg)
{
    struct many_waiter *w = arg;
    w->rc = evexec_cfuture_wait_many(w->cfs, w->n, EVEXEC_ALL_COMPLETED, HANG_BOUND_MS);
    return NULL;
}

Test(combine, wait_many_wakes_every_thread_waiting_for_the_same_futures)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_cfuture *cfs[2] = {submit(pool, gated_value_task, 0),
                                     submit(pool, gated_value_task, 0)};
    struct many_waiter w[3];
    for (int i = 0; i < 3; i++) {
        w[i].cfs = cfs;
        w[i].n = 2;
        w[i].rc = -1;
        cr_assert_eq(pthread_create(&w[i].thread, NULL, many_waiter_main, &w[i]), 0);
    }
    cr_assert(gate_wait_arrived(&gate, 2));
    sleep_ms(5); /* pacing only: lets the waiters go to sleep first */
    gate_open(&gate);
    for (int i = 0; i < 3; i++) {
        pthread_join(w[i].thread, NULL);
        cr_assert_eq(w[i].rc, 0, "waiter %d: %s", i, evexec_strerror(w[i].rc));
    }
    evexec_pool_free(pool);
    for (int i = 0; i < 2; i++)
        evexec_cfuture_release(cfs[i]);
}

/* In a forked child the parent's task never completes: the wait says so
 * instead of sleeping, whatever the condition (as every call on an
 * inherited cfuture does). */
Test(combine, wait_many_on_pending_cfutures_inherited_through_fork_fails_with_eforked)
{
    reset_gate();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_cfuture *cfs[2] = {submit(pool, counting_task, 0),
                                     submit(pool, gated_value_task, 0)};
    cr_assert_eq(evexec_cfuture_wait(cfs[0], HANG_BOUND_MS), 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int code = 0;
        if (evexec_cfuture_wait_many(cfs, 2, EVEXEC_ALL_COMPLETED, -1) != EVEXEC_EFORKED)
            code |= 1;
        if (evexec_cfuture_wait_many(cfs, 2, EVEXEC_FIRST_COMPLETED, -1) != EVEXEC_EFORKED)
            code |= 2;
        _exit(code);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    gate_open(&gate);
    cr_assert(WIFEXITED(status), "the child did not exit");
    cr_assert_eq(WEXITSTATUS(status), 0, "child checks failed: %d", WEXITSTATUS(status));
    evexec_pool_free(pool);
    for (int i = 0; i < 2; i++)
        evexec_cfuture_release(cfs[i]);
}

/* ======================================================================== */
/* allocation failures (builds configured with --enable-fault-injection)     */

#ifdef EVEXEC_FAULT_INJECTION
void evexec__fault_fail_alloc(long nth);
long evexec__fault_alloc_count(void);

/* Four futures, each with a callback of the test already (so a combinator's
 * registration has to grow the callback array), and four combinators over
 * them with the nth allocation from now failing (0: none). A combinator that
 * fails reports ENOMEM and leaves the futures as they were; the others work.
 * @return how many combinators failed. */
static int combinators_with_failing_allocation(long nth)
{
    make_loop();
    reset();
    struct evexec_future *fs[4];
    for (int i = 0; i < 4; i++) {
        fs[i] = new_future();
        add_record(fs[i], i);
    }
    struct evexec_future *made[4];
    evexec__fault_fail_alloc(nth);
    made[0] = evexec_gather(loop, fs, 4);
    int e0 = errno;
    made[1] = evexec_wait(loop, fs, 4, EVEXEC_ALL_COMPLETED, FOREVER_MS);
    int e1 = errno;
    made[2] = evexec_wait_for(fs[3], FOREVER_MS);
    int e2 = errno;
    made[3] = evexec_sleep(loop, 0);
    int e3 = errno;
    evexec__fault_fail_alloc(0);
    const int errs[4] = {e0, e1, e2, e3};
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        if (made[i]) {
            add_record(made[i], 10 + i);
            continue;
        }
        failed++;
        cr_assert_eq(errs[i], ENOMEM, "combinator %d failed with %s at allocation %ld", i,
                     strerror(errs[i]), nth);
    }
    for (int i = 0; i < 4; i++)
        cr_assert_eq(evexec_future_set_result(fs[i], new_result(), free_counted), 0);
    dispatch();
    /* The test's own callbacks ran once each, and those of each combinator
     * that was made. */
    cr_assert_eq(nrecord, 4 + (4 - failed), "allocation %ld: %d callbacks ran", nth, nrecord);
    for (int i = 0; i < 4; i++) {
        if (made[i])
            cr_assert_eq(error_of(made[i]), 0);
        evexec_future_release(made[i]);
    }
    for (int i = 0; i < 4; i++)
        evexec_future_release(fs[i]);
    cr_assert_eq(atomic_load(&results_freed), 4);
    free_loop();
    return failed;
}

Test(combine, sweep_every_allocation_of_the_combinators)
{
    /* Count what the four calls allocate, then fail each allocation once. */
    make_loop();
    struct evexec_future *fs[4];
    for (int i = 0; i < 4; i++) {
        fs[i] = new_future();
        add_record(fs[i], i);
    }
    long before = evexec__fault_alloc_count();
    struct evexec_future *made[4] = {
        evexec_gather(loop, fs, 4),
        evexec_wait(loop, fs, 4, EVEXEC_ALL_COMPLETED, FOREVER_MS),
        evexec_wait_for(fs[3], FOREVER_MS),
        evexec_sleep(loop, 0),
    };
    long total = evexec__fault_alloc_count() - before;
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(made[i]);
        evexec_future_cancel(made[i]);
        evexec_future_release(made[i]);
    }
    for (int i = 0; i < 4; i++)
        evexec_future_release(fs[i]);
    free_loop();
    cr_assert_gt(total, 4, "the combinators allocate %ld times?", total);

    cr_assert_eq(combinators_with_failing_allocation(0), 0);
    for (long n = 1; n <= total; n++)
        cr_assert_eq(combinators_with_failing_allocation(n), 1,
                     "allocation %ld of %ld: not exactly one combinator failed", n, total);
}
#endif /* EVEXEC_FAULT_INJECTION */

/* ======================================================================== */
/* debug builds enforce the loop thread                                      */

#ifdef EVEXEC_DEBUG
enum misuse { MISUSE_SLEEP, MISUSE_WAIT_FOR, MISUSE_GATHER, MISUSE_WAIT, MISUSE_REMOVE };

struct misuse_ctx {
    enum misuse what;
    struct evexec_future *f;
};

static void *misuse_main(void *arg)
{
    struct misuse_ctx *m = arg;
    struct evexec_future *r = NULL;
    switch (m->what) {
    case MISUSE_SLEEP:
        r = evexec_sleep(loop, 1);
        break;
    case MISUSE_WAIT_FOR:
        r = evexec_wait_for(m->f, 1);
        break;
    case MISUSE_GATHER:
        r = evexec_gather(loop, &m->f, 1);
        break;
    case MISUSE_WAIT:
        r = evexec_wait(loop, &m->f, 1, EVEXEC_ALL_COMPLETED, -1);
        break;
    case MISUSE_REMOVE:
        (void)evexec_future_remove_done_callback(m->f, record_cb, NULL);
        break;
    }
    (void)r;
    return NULL;
}

static void misuse_from_foreign_thread(enum misuse what)
{
    make_loop();
    struct misuse_ctx m = {what, new_future()};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, misuse_main, &m), 0);
    pthread_join(t, NULL);
    cr_assert_fail("the misuse did not abort");
}

Test(combine, sleep_from_a_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(MISUSE_SLEEP);
}

Test(combine, wait_for_from_a_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(MISUSE_WAIT_FOR);
}

Test(combine, gather_from_a_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(MISUSE_GATHER);
}

Test(combine, wait_from_a_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(MISUSE_WAIT);
}

Test(combine, remove_done_callback_from_a_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(MISUSE_REMOVE);
}
#endif /* EVEXEC_DEBUG */
