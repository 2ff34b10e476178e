/*
 * test_pool_fault.c -- the pool when no worker thread can be made, with the
 * thread-creation hook of builds configured with --enable-fault-injection
 * (evexec__fault_fail_thread(n): the nth creation from now fails).
 *
 * What must hold: a task that no worker will ever take fails with EAGAIN
 * instead of waiting forever -- also when the only worker alive has
 * already decided to exit -- and the pool's counters balance on that path.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "evexec.h"
#include "testutil.h"

/* The test hooks, exported by fault-injection builds. */
void evexec__fault_fail_thread(long nth);

static void disarm(void)
{
    evexec__fault_fail_thread(0);
    fail_on_leaks();
}

TestSuite(pool_fault, .timeout = 60, .fini = disarm);

static int noop_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static void gated_exit(void *ctx)
{
    gate_pass(ctx);
}

static struct evexec_pool_stats stats_of(struct evexec_pool *pool)
{
    struct evexec_pool_stats st;
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

Test(pool_fault, a_task_submitted_while_the_last_worker_exits_and_no_thread_can_be_made_fails_with_eagain)
{
    struct gate in_exit;
    gate_init(&in_exit);
    struct evexec_pool_config cfg = {
        .max_workers = 2, .idle_timeout_ms = 20,
        .thread_exit = gated_exit, .thread_ctx = &in_exit,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    /* The worker idled out and sits in thread_exit: alive, never to look
     * at the queue again. */
    cr_assert(gate_wait_arrived(&in_exit, 1));
    evexec__fault_fail_thread(1);
    cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    evexec__fault_fail_thread(0);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS / 2, NULL), EAGAIN);
    struct evexec_pool_stats st = stats_of(pool);
    assert_balanced(&st);
    cr_assert_eq(st.failed, 1);
    cr_assert_eq(st.queued, 0);
    evexec_cfuture_release(cf);
    gate_open(&in_exit);
    /* And the pool recovers: the next task gets a thread. */
    cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    gate_destroy(&in_exit);
}

Test(pool_fault, stats_balance_when_tasks_fail_for_want_of_a_thread)
{
    struct evexec_pool_config cfg = { .max_workers = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    for (int i = 0; i < 3; i++) {
        evexec__fault_fail_thread(1);
        struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
        evexec__fault_fail_thread(0);
        cr_assert_not_null(cf);
        cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EAGAIN);
        evexec_cfuture_release(cf);
        struct evexec_pool_stats st = stats_of(pool);
        assert_balanced(&st);
        cr_assert_eq(st.failed, (uint64_t)i + 1);
    }
    evexec_pool_free(pool);
}

Test(pool_fault, a_views_task_fails_with_eagain_when_its_parent_can_make_no_thread)
{
    struct evexec_pool_config cfg = { .max_workers = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_pool *view = evexec_pool_new_limited(pool, 1);
    cr_assert_not_null(view);
    evexec__fault_fail_thread(1);
    struct evexec_cfuture *cf = evexec_pool_submit(view, noop_task, NULL, NULL);
    evexec__fault_fail_thread(0);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EAGAIN);
    evexec_cfuture_release(cf);
    struct evexec_pool_stats st = stats_of(view);
    assert_balanced(&st);
    cr_assert_eq(st.failed, 1);
    /* Both recover: the next task gets a thread. */
    cf = evexec_pool_submit(view, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(view);
    evexec_pool_free(pool);
}
