/*
 * test_misuse.c -- bad input and misuse of every public function, as listed
 * in tests/MISUSE.md: NULL handles, NULL callbacks, the wrong state (set
 * twice, result before done, cancel after done), use after pool shutdown and
 * after the loop was freed. Each case must give the error code the header
 * documents and never crash; _free(NULL) and _release(NULL) do nothing; a
 * call that fails never calls the callback it was given.
 *
 * One test per row group of the table, named after the behaviour. Only the
 * main thread asserts; work functions record what they saw.
 */
#include "config.h"

#include <criterion/criterion.h>

#define TESTUTIL_POOL_HELPERS /* new_pool, stats_of, assert_balanced */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "evexec.h"

TestSuite(misuse, .timeout = 60, .fini = fail_on_leaks);

/* ---- helpers ------------------------------------------------------------ */

static int work_ok(void *arg, void **result)
{
    (void)arg;
    int *r = malloc(sizeof(*r));
    if (!r)
        return ENOMEM;
    *r = 42;
    *result = r;
    return 0;
}

static int work_fail(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return EPERM;
}

/* A task that blocks until the main thread opens its gate (struct gate and
 * its helpers: testutil.h). */
static int work_gated(void *arg, void **result)
{
    struct gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    *result = NULL;
    return 0;
}

static atomic_int frees;
static void count_free(void *p)
{
    atomic_fetch_add(&frees, 1);
    free(p);
}

static atomic_int callback_calls;
static void never_cfuture_cb(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    (void)arg;
    atomic_fetch_add(&callback_calls, 1);
}
static void never_future_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&callback_calls, 1);
}
static void never_soon_cb(void *arg)
{
    (void)arg;
    atomic_fetch_add(&callback_calls, 1);
}

/* A base and its loop, freed in the right order. */
struct fixture {
    struct event_base *base;
    struct evexec_loop *loop;
};

static void fixture_up(struct fixture *fx)
{
    fx->base = event_base_new();
    cr_assert_not_null(fx->base);
    fx->loop = evexec_loop_new(fx->base);
    cr_assert_not_null(fx->loop, "evexec_loop_new: %s", evexec_strerror(errno));
}

static void fixture_down(struct fixture *fx)
{
    evexec_loop_free(fx->loop);
    event_base_free(fx->base);
}

/* ---- errors and version ------------------------------------------------- */

Test(misuse, strerror_names_every_code_and_never_returns_null)
{
    const int own[] = { EVEXEC_EBROKEN, EVEXEC_EFORKED, EVEXEC_ETAKEN, EVEXEC_ECLOSED };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        const char *s = evexec_strerror(own[i]);
        cr_assert_not_null(s);
        cr_assert(strlen(s) > 0);
        /* A code of the library's own has its own text, not "unknown". */
        cr_assert_str_neq(s, evexec_strerror(EVEXEC_ERRNO_BASE + 1000));
    }
    const int odd[] = { 0, -1, -100000, EVEXEC_ERRNO_BASE, EVEXEC_ERRNO_BASE + 1000,
                        0x7fffffff, ENOMEM, EINVAL, ESHUTDOWN };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        cr_assert_not_null(evexec_strerror(odd[i]));
    cr_assert_str_eq(evexec_strerror(ENOMEM), strerror(ENOMEM));
    cr_assert_not_null(evexec_version());
}

/* ---- NULL handles ------------------------------------------------------- */

Test(misuse, free_and_release_of_null_are_no_ops)
{
    evexec_pool_free(NULL);
    evexec_loop_free(NULL);
    evexec_cfuture_release(NULL);
    evexec_cfuture_retain(NULL);
    evexec_future_release(NULL);
    evexec_future_retain(NULL);
    evexec_loop_ref(NULL);
    evexec_loop_unref(NULL);
}

Test(misuse, pool_functions_reject_null_pool_with_einval)
{
    errno = 0;
    cr_assert_null(evexec_pool_submit(NULL, work_ok, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(evexec_pool_shutdown(NULL, 0), EINVAL);
    cr_assert_eq(evexec_pool_shutdown(NULL, EVEXEC_SHUTDOWN_WAIT), EINVAL);
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(NULL, &st), EINVAL);
}

Test(misuse, cfuture_functions_reject_null_future)
{
    void *res = (void *)&res;
    cr_assert_eq(evexec_cfuture_state(NULL), -1);
    cr_assert_eq(evexec_cfuture_cancel(NULL), false);
    cr_assert_eq(evexec_cfuture_wait(NULL, 0), EINVAL);
    cr_assert_eq(evexec_cfuture_wait(NULL, -1), EINVAL);
    cr_assert_eq(evexec_cfuture_result(NULL, -1, &res), EINVAL);
    cr_assert_eq(evexec_cfuture_take_result(NULL, -1, &res), EINVAL);
    cr_assert_eq(res, (void *)&res, "a failed call must not write *result");
    atomic_store(&callback_calls, 0);
    cr_assert_eq(evexec_cfuture_add_done_callback(NULL, never_cfuture_cb, NULL), EINVAL);
    cr_assert_eq(atomic_load(&callback_calls), 0);
}

Test(misuse, loop_functions_reject_null_loop_with_einval)
{
    errno = 0;
    cr_assert_null(evexec_loop_new(NULL));
    cr_assert_eq(errno, EINVAL);
    atomic_store(&callback_calls, 0);
    cr_assert_eq(evexec_call_soon(NULL, never_soon_cb, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon_threadsafe(NULL, never_soon_cb, NULL), EINVAL);
    struct evexec_loop_stats st;
    cr_assert_eq(evexec_loop_get_stats(NULL, &st), EINVAL);
    errno = 0;
    cr_assert_null(evexec_loop_default_pool(NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_loop_base(NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_future_new(NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(NULL, NULL, work_ok, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(atomic_load(&callback_calls), 0);
}

Test(misuse, wrap_cfuture_rejects_null_loop_or_null_cfuture)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool *pool = new_pool(1);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf);
    errno = 0;
    cr_assert_null(evexec_wrap_cfuture(NULL, cf));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_wrap_cfuture(fx.loop, NULL));
    cr_assert_eq(errno, EINVAL);
    /* The failed wraps took no reference: once the pool dropped the
     * queue's (pool_free joins its worker), one release frees it. */
    cr_assert_eq(evexec_cfuture_wait(cf, 20000), 0);
    evexec_pool_free(pool);
    atomic_store(&frees, 0);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&frees), 1);
    fixture_down(&fx);
}

Test(misuse, future_functions_reject_null_future)
{
    void *res = (void *)&res;
    cr_assert_eq(evexec_future_set_result(NULL, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_set_error(NULL, EIO), EINVAL);
    cr_assert_eq(evexec_future_cancel(NULL), false);
    cr_assert_eq(evexec_future_done(NULL), false);
    cr_assert_eq(evexec_future_cancelled(NULL), false);
    cr_assert_eq(evexec_future_result(NULL, &res), EINVAL);
    cr_assert_eq(evexec_future_take_result(NULL, &res), EINVAL);
    cr_assert_eq(res, (void *)&res);
    atomic_store(&callback_calls, 0);
    cr_assert_eq(evexec_future_add_done_callback(NULL, never_future_cb, NULL), EINVAL);
    errno = 0;
    cr_assert_null(evexec_future_loop(NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(atomic_load(&callback_calls), 0);
}

/* ---- NULL callbacks, NULL out-parameters, bad arguments ----------------- */

Test(misuse, null_callbacks_and_work_functions_give_einval_and_take_nothing)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool *pool = new_pool(1);

    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, NULL, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(fx.loop, pool, NULL, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(fx.loop, NULL, NULL, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(evexec_call_soon(fx.loop, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon_threadsafe(fx.loop, NULL, NULL), EINVAL);

    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, NULL, NULL), EINVAL);
    struct evexec_future *f = evexec_future_new(fx.loop);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, NULL, NULL), EINVAL);

    /* The failed calls left nothing behind: the loop has nothing to run
     * and nothing in flight. */
    struct evexec_loop_stats ls;
    cr_assert_eq(evexec_loop_get_stats(fx.loop, &ls), 0);
    cr_assert_eq(ls.in_flight, 0);
    cr_assert_eq(event_base_dispatch(fx.base), 1, "an idle bridge keeps no event");
    cr_assert_eq(evexec_loop_get_stats(fx.loop, &ls), 0);
    cr_assert_eq(ls.callbacks_run, 0);

    struct evexec_pool_stats ps;
    cr_assert_eq(evexec_pool_get_stats(pool, NULL), EINVAL);
    cr_assert_eq(evexec_loop_get_stats(fx.loop, NULL), EINVAL);
    cr_assert_eq(evexec_cfuture_wait(cf, 20000), 0);
    cr_assert_eq(evexec_pool_get_stats(pool, &ps), 0);
    cr_assert_eq(ps.submitted, 1, "failed submits are not counted");

    evexec_future_release(f);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    fixture_down(&fx);
}

Test(misuse, bad_pool_config_and_flags_give_einval)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 2;
    cfg.min_workers = 3;
    errno = 0;
    cr_assert_null(evexec_pool_new(&cfg));
    cr_assert_eq(errno, EINVAL);

    cfg.min_workers = 0;
    cfg.flags = 0x80000000u;
    errno = 0;
    cr_assert_null(evexec_pool_new(&cfg));
    cr_assert_eq(errno, EINVAL, "an unknown flag is refused");

    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_pool_shutdown(pool, 0x80u), EINVAL);
    /* An unknown flag changed nothing: the pool still accepts work. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf);
    void *res = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, 20000, &res), 0);
    cr_assert_eq(*(int *)res, 42);
    evexec_cfuture_release(cf);

    /* Negative timeouts other than -1 are invalid. */
    cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_wait(cf, -2), EINVAL);
    cr_assert_eq(evexec_cfuture_result(cf, -5, &res), EINVAL);
    cr_assert_eq(evexec_cfuture_wait(cf, -1), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(misuse, error_codes_of_set_error_must_be_positive)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_future *f = evexec_future_new(fx.loop);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_set_error(f, 0), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, -EIO), EINVAL);
    cr_assert_eq(evexec_future_done(f), false, "a rejected error leaves it pending");
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    cr_assert_eq(evexec_future_result(f, NULL), EIO);
    evexec_future_release(f);
    fixture_down(&fx);
}

Test(misuse, second_loop_on_one_base_gives_eexist)
{
    struct fixture fx;
    fixture_up(&fx);
    errno = 0;
    cr_assert_null(evexec_loop_new(fx.base));
    cr_assert_eq(errno, EEXIST);
    fixture_down(&fx);
    /* Once freed, the base may have a bridge again. */
    struct event_base *base = event_base_new();
    struct evexec_loop *a = evexec_loop_new(base);
    cr_assert_not_null(a);
    evexec_loop_free(a);
    struct evexec_loop *b = evexec_loop_new(base);
    cr_assert_not_null(b, "after evexec_loop_free the base takes a new bridge");
    evexec_loop_free(b);
    event_base_free(base);
}

/* ---- wrong state: loop futures ------------------------------------------ */

Test(misuse, setting_a_done_future_gives_einval_and_leaves_the_result_to_the_caller)
{
    struct fixture fx;
    fixture_up(&fx);
    atomic_store(&frees, 0);
    struct evexec_future *f = evexec_future_new(fx.loop);
    cr_assert_not_null(f);
    int *first = malloc(sizeof(*first)), *second = malloc(sizeof(*second));
    *first = 1;
    *second = 2;
    cr_assert_eq(evexec_future_set_result(f, first, count_free), 0);
    cr_assert_eq(evexec_future_set_result(f, second, count_free), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, EIO), EINVAL);
    cr_assert_eq(evexec_future_cancel(f), false, "cancel after done");
    void *res = NULL;
    cr_assert_eq(evexec_future_result(f, &res), 0);
    cr_assert_eq(res, first, "the first outcome stays");
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&frees), 1, "only the accepted result is the future's");
    free(second);

    /* Set error, then result and error again. */
    f = evexec_future_new(fx.loop);
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, EPERM), EINVAL);
    cr_assert_eq(evexec_future_result(f, NULL), EIO);
    evexec_future_release(f);

    /* Cancelled, then set. */
    f = evexec_future_new(fx.loop);
    cr_assert_eq(evexec_future_cancel(f), true);
    cr_assert_eq(evexec_future_cancel(f), true, "cancelling twice is still true");
    cr_assert_eq(evexec_future_set_result(f, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_set_error(f, EIO), EINVAL);
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);
    cr_assert(evexec_future_cancelled(f));
    evexec_future_release(f);
    fixture_down(&fx);
}

static int work_gated_value(void *arg, void **result)
{
    work_gated(arg, result);
    return work_ok(NULL, result);
}

Test(misuse, setting_a_chained_future_gives_einval_and_only_its_work_completes_it)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    atomic_store(&frees, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_gated_value, &g, count_free);
    struct evexec_future *wrapped = evexec_wrap_cfuture(fx.loop, cf);
    struct evexec_future *chained = evexec_run_in_executor(fx.loop, pool, work_ok, NULL, count_free);
    cr_assert_not_null(wrapped);
    cr_assert_not_null(chained);
    int *mine = malloc(sizeof(*mine));
    struct evexec_future *both[] = { wrapped, chained };
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(evexec_future_set_result(both[i], mine, count_free), EINVAL);
        cr_assert_eq(evexec_future_set_error(both[i], EIO), EINVAL);
        cr_assert_eq(evexec_future_done(both[i]), false);
    }
    gate_open(&g);
    cr_assert_neq(event_base_dispatch(fx.base), -1);
    void *res = NULL;
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(evexec_future_result(both[i], &res), 0, "the work's outcome, not ours");
        cr_assert_eq(*(int *)res, 42);
        cr_assert_eq(evexec_future_set_result(both[i], mine, count_free), EINVAL);
        evexec_future_release(both[i]);
    }
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&frees), 2, "the two work results, never the refused one");
    free(mine);
    gate_destroy(&g);
    fixture_down(&fx);
}

Test(misuse, a_result_taken_through_one_side_of_a_chain_is_gone_from_both)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool *pool = new_pool(1);
    atomic_store(&frees, 0);

    /* Taken from the wrapped loop future: the cfuture says ETAKEN. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    struct evexec_future *wrapped = evexec_wrap_cfuture(fx.loop, cf);
    cr_assert_not_null(wrapped);
    cr_assert_neq(event_base_dispatch(fx.base), -1);
    void *res = NULL, *again = NULL;
    cr_assert_eq(evexec_future_take_result(wrapped, &res), 0);
    cr_assert_eq(*(int *)res, 42);
    cr_assert_eq(evexec_cfuture_result(cf, 0, &again), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &again), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_result(wrapped, &again), EVEXEC_ETAKEN);
    evexec_future_release(wrapped);
    evexec_cfuture_release(cf);
    free(res);

    /* Taken from the cfuture: the wrapped loop future says ETAKEN. */
    cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    wrapped = evexec_wrap_cfuture(fx.loop, cf);
    cr_assert_neq(event_base_dispatch(fx.base), -1);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &res), 0);
    cr_assert_eq(evexec_future_result(wrapped, &again), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_take_result(wrapped, &again), EVEXEC_ETAKEN);
    evexec_future_release(wrapped);
    evexec_cfuture_release(cf);
    free(res);

    /* run_in_executor: taken, then asked again. */
    struct evexec_future *f = evexec_run_in_executor(fx.loop, pool, work_ok, NULL, count_free);
    cr_assert_neq(event_base_dispatch(fx.base), -1);
    cr_assert_eq(evexec_future_take_result(f, &res), 0);
    cr_assert_eq(evexec_future_take_result(f, &again), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_result(f, &again), EVEXEC_ETAKEN);
    evexec_future_release(f);
    free(res);

    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&frees), 0, "a taken result is never freed by the library");
    fixture_down(&fx);
}

Test(misuse, result_before_done_gives_einprogress_and_take_twice_gives_etaken)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_future *f = evexec_future_new(fx.loop);
    void *res = (void *)&res;
    cr_assert_eq(evexec_future_result(f, &res), EINPROGRESS);
    cr_assert_eq(evexec_future_take_result(f, &res), EINPROGRESS);
    cr_assert_eq(res, (void *)&res);
    cr_assert_eq(evexec_future_done(f), false);

    int *value = malloc(sizeof(*value));
    atomic_store(&frees, 0);
    cr_assert_eq(evexec_future_set_result(f, value, count_free), 0);
    cr_assert_eq(evexec_future_take_result(f, &res), 0);
    cr_assert_eq(res, value);
    cr_assert_eq(evexec_future_take_result(f, &res), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_future_result(f, &res), EVEXEC_ETAKEN);
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&frees), 0, "a taken result is the caller's");
    free(value);
    fixture_down(&fx);
}

/* ---- wrong state: concurrent futures ------------------------------------ */

Test(misuse, cfuture_result_before_done_times_out_and_cancel_after_done_is_false)
{
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *running = evexec_pool_submit(pool, work_gated, &g, NULL);
    struct evexec_cfuture *queued = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(running);
    cr_assert_not_null(queued);
    cr_assert(gate_wait_arrived(&g, 1));

    void *res = (void *)&res;
    cr_assert_eq(evexec_cfuture_result(running, 0, &res), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_take_result(running, 0, &res), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_wait(running, 0), ETIMEDOUT);
    cr_assert_eq(evexec_cfuture_wait(running, 10), ETIMEDOUT);
    cr_assert_eq(res, (void *)&res);

    /* Cancel of a running task is false, of a queued one true, twice true. */
    cr_assert_eq(evexec_cfuture_cancel(running), false);
    cr_assert_eq(evexec_cfuture_cancel(queued), true);
    cr_assert_eq(evexec_cfuture_cancel(queued), true);
    cr_assert_eq(evexec_cfuture_result(queued, 0, &res), ECANCELED);
    cr_assert_eq(evexec_cfuture_state(queued), EVEXEC_CANCELLED);

    gate_open(&g);
    cr_assert_eq(evexec_cfuture_wait(running, 20000), 0);
    cr_assert_eq(evexec_cfuture_cancel(running), false, "cancel after done");
    cr_assert_eq(evexec_cfuture_state(running), EVEXEC_FINISHED);

    /* Take twice. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    atomic_store(&frees, 0);
    cr_assert_eq(evexec_cfuture_take_result(cf, 20000, &res), 0);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &res), EVEXEC_ETAKEN);
    cr_assert_eq(evexec_cfuture_result(cf, 0, &res), EVEXEC_ETAKEN);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&frees), 0);
    free(res);

    /* A failed task reports its error, every time. */
    cf = evexec_pool_submit(pool, work_fail, NULL, count_free);
    cr_assert_eq(evexec_cfuture_result(cf, 20000, &res), EPERM);
    cr_assert_eq(evexec_cfuture_take_result(cf, 0, &res), EPERM);
    evexec_cfuture_release(cf);

    evexec_cfuture_release(running);
    evexec_cfuture_release(queued);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

/* ---- after shutdown ----------------------------------------------------- */

static int work_shutdown_wait_own_pool(void *arg, void **result)
{
    (void)result;
    return evexec_pool_shutdown(arg, EVEXEC_SHUTDOWN_WAIT) == EDEADLK ? 0 : EIO;
}

Test(misuse, after_shutdown_submits_fail_with_eshutdown_and_shutdown_is_repeatable)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool *pool = new_pool(2);

    /* WAIT from one of its own workers: EDEADLK, and nothing changes. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_shutdown_wait_own_pool, pool, NULL);
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), 0, "EDEADLK seen in the worker");
    evexec_cfuture_release(cf);
    cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf, "the pool still accepts work after EDEADLK");
    evexec_cfuture_release(cf);

    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);

    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, work_ok, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(fx.loop, pool, work_ok, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    cr_assert_eq(st.threads, 0, "WAIT joined every worker");

    /* The failed run_in_executor left nothing in flight: dispatch returns. */
    struct evexec_loop_stats ls;
    cr_assert_eq(evexec_loop_get_stats(fx.loop, &ls), 0);
    cr_assert_eq(ls.in_flight, 0);
    cr_assert_eq(event_base_dispatch(fx.base), 1);

    evexec_pool_free(pool);
    fixture_down(&fx);
}

struct shutdown_probe {
    struct evexec_pool *pool;
    atomic_int rc;
};

static void shutdown_wait_from_callback(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    struct shutdown_probe *p = arg;
    atomic_store(&p->rc, evexec_pool_shutdown(p->pool, EVEXEC_SHUTDOWN_WAIT));
}

Test(misuse, shutdown_wait_from_a_done_callback_running_on_a_worker_gives_edeadlk)
{
    struct evexec_pool *pool = new_pool(1);
    struct gate g;
    gate_init(&g);
    struct shutdown_probe probe = { pool, -1 };
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_gated, &g, NULL);
    cr_assert(gate_wait_arrived(&g, 1));
    /* Registered while it runs: the callback runs in the worker that
     * completes it. */
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, shutdown_wait_from_callback, &probe), 0);
    gate_open(&g);
    evexec_pool_free(pool); /* joins: the callback has run */
    cr_assert_eq(atomic_load(&probe.rc), EDEADLK);
    evexec_cfuture_release(cf);
    gate_destroy(&g);
}

Test(misuse, bounded_queue_full_gives_eagain_from_submit_and_run_in_executor)
{
    struct fixture fx;
    fixture_up(&fx);
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    cfg.max_queued = 1;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *running = evexec_pool_submit(pool, work_gated, &g, NULL);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_cfuture *queued = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(queued);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, work_ok, NULL, count_free));
    cr_assert_eq(errno, EAGAIN);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(fx.loop, pool, work_ok, NULL, count_free));
    cr_assert_eq(errno, EAGAIN);
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_wait(queued, 20000), 0);
    evexec_cfuture_release(running);
    evexec_cfuture_release(queued);
    evexec_pool_free(pool);
    gate_destroy(&g);
    fixture_down(&fx);
}

static int broken_init(void *ctx)
{
    (void)ctx;
    return 1;
}

Test(misuse, broken_pool_fails_submits_with_ebroken)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    cfg.thread_init = broken_init;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, count_free);
    cr_assert_not_null(cf, "the pool is not known broken before a worker starts");
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), EVEXEC_EBROKEN);
    evexec_cfuture_release(cf);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, work_ok, NULL, count_free));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    evexec_pool_free(pool);
}

/* ---- after the loop is freed -------------------------------------------- */

Test(misuse, futures_outliving_their_loop_answer_eclosed_and_stay_readable)
{
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_future *pending = evexec_future_new(loop);
    struct evexec_future *finished = evexec_future_new(loop);
    cr_assert_not_null(pending);
    cr_assert_not_null(finished);
    int *value = malloc(sizeof(*value));
    atomic_store(&frees, 0);
    cr_assert_eq(evexec_future_set_result(finished, value, count_free), 0);
    evexec_loop_free(loop);

    atomic_store(&callback_calls, 0);
    cr_assert_eq(evexec_future_add_done_callback(pending, never_future_cb, NULL),
                 EVEXEC_ECLOSED);
    cr_assert_eq(evexec_future_add_done_callback(finished, never_future_cb, NULL),
                 EVEXEC_ECLOSED);
    /* loop_free cancelled the pending one. */
    cr_assert(evexec_future_done(pending));
    cr_assert(evexec_future_cancelled(pending));
    cr_assert_eq(evexec_future_result(pending, NULL), ECANCELED);
    cr_assert_eq(evexec_future_set_result(pending, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_future_cancel(pending), true);
    void *res = NULL;
    cr_assert_eq(evexec_future_result(finished, &res), 0);
    cr_assert_eq(res, value);
    cr_assert_eq(evexec_future_loop(finished), loop, "kept for comparison");

    evexec_future_release(pending);
    evexec_future_release(finished);
    cr_assert_eq(atomic_load(&frees), 1);
    cr_assert_eq(event_base_dispatch(base), 1, "nothing of the freed bridge is left");
    cr_assert_eq(atomic_load(&callback_calls), 0);
    event_base_free(base);
}

/* ---- a failed call never calls its callback ----------------------------- */

Test(misuse, failed_calls_never_call_their_callbacks)
{
    struct fixture fx;
    fixture_up(&fx);
    atomic_store(&callback_calls, 0);
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_null(evexec_pool_submit(pool, work_ok, NULL, NULL));
    cr_assert_eq(evexec_cfuture_add_done_callback(NULL, never_cfuture_cb, NULL), EINVAL);
    cr_assert_eq(evexec_future_add_done_callback(NULL, never_future_cb, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon(NULL, never_soon_cb, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon_threadsafe(NULL, never_soon_cb, NULL), EINVAL);
    cr_assert_eq(event_base_dispatch(fx.base), 1);
    cr_assert_eq(atomic_load(&callback_calls), 0);
    evexec_pool_free(pool);
    fixture_down(&fx);
}
