/*
 * test_fault.c -- allocation and thread-creation failure, injected with the
 * hooks of builds configured with --enable-fault-injection:
 * evexec__fault_fail_alloc(n) makes the nth library allocation from now fail,
 * evexec__fault_fail_thread(n) the nth worker thread creation.
 *
 * Two kinds of tests:
 *   - named tests fail one chosen allocation (or thread) and check exactly
 *     what the user sees: NULL + errno ENOMEM, an ENOMEM return, or a task
 *     that fails with EAGAIN because no worker could be made;
 *   - sweeps run a scenario once to count its allocations, then once per
 *     allocation N, failing the Nth. Every run must end cleanly: each call
 *     either succeeds or reports ENOMEM (EAGAIN for a task that got no
 *     worker), every done callback that was accepted runs exactly once,
 *     every result the tasks made is freed exactly once, the loop's dispatch
 *     returns (a pending-forever future would hang it: the suite's timeout
 *     catches that), and -- in ASan builds -- LeakSanitizer finds nothing.
 *
 * libevent's own allocations are not hooked, so event_new failures are out
 * of scope. Work functions and callbacks never assert: they count, and the
 * main thread checks the counts after the pools are joined.
 */
#include "config.h"

#include <criterion/criterion.h>

#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evexec.h"

/* The test hooks (lib/common.h), exported by fault-injection builds. */
void evexec__fault_fail_alloc(long nth);
void evexec__fault_fail_thread(long nth);
long evexec__fault_alloc_count(void);
long evexec__fault_thread_count(void);
void evexec__fault_set_alloc_hook(void (*hook)(void));

static void disarm(void)
{
    evexec__fault_fail_alloc(0);
    evexec__fault_fail_thread(0);
    evexec__fault_set_alloc_hook(NULL);
}

TestSuite(fault, .timeout = 120, .fini = disarm);

/* ---- tallies ------------------------------------------------------------ */

static atomic_int results_made, results_freed;
static atomic_int callbacks_accepted, callbacks_run;

static void tally_reset(void)
{
    atomic_store(&results_made, 0);
    atomic_store(&results_freed, 0);
    atomic_store(&callbacks_accepted, 0);
    atomic_store(&callbacks_run, 0);
}

/* Checked once every future of a run is released. A worker of a loop's
 * default pool, detached at evexec_loop_free, may still hold the last
 * reference to a task and free its result a moment later: wait for the
 * counts to settle (bounded), then compare them. */
static void tally_check(const char *what, long n)
{
    for (int i = 0; i < 2000; i++) {
        if (atomic_load(&results_freed) == atomic_load(&results_made) &&
            atomic_load(&callbacks_run) == atomic_load(&callbacks_accepted))
            break;
        struct timespec ts = { 0, 5000000L };
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made),
                 "%s, alloc %ld failed: %d results made, %d freed", what, n,
                 atomic_load(&results_made), atomic_load(&results_freed));
    cr_assert_eq(atomic_load(&callbacks_run), atomic_load(&callbacks_accepted),
                 "%s, alloc %ld failed: %d callbacks accepted, %d ran", what, n,
                 atomic_load(&callbacks_accepted), atomic_load(&callbacks_run));
}

static void assert_no_leaks(void)
{
#ifdef TESTUTIL_LSAN
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks");
#endif
}

static void result_free(void *p)
{
    atomic_fetch_add(&results_freed, 1);
    free(p);
}

static int work_ok(void *arg, void **result)
{
    (void)arg;
    int *r = malloc(sizeof(*r)); /* not the library's: never fails here */
    *r = 7;
    atomic_fetch_add(&results_made, 1);
    *result = r;
    return 0;
}

/* struct gate, gate_init, gate_open, gate_destroy: testutil.h. */

/* Holds its worker until the gate opens, then makes a result. */
static int work_gated(void *arg, void **result)
{
    struct gate *g = arg;
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return work_ok(NULL, result);
}

static void cf_counted(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    (void)arg;
    atomic_fetch_add(&callbacks_run, 1);
}

static void f_counted(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    atomic_fetch_add(&callbacks_run, 1);
}

static void soon_counted(void *arg)
{
    (void)arg;
    atomic_fetch_add(&callbacks_run, 1);
}

/* Register and count what was accepted; a failed registration must be
 * ENOMEM and must never call back. */
static int add_cf_cb(struct evexec_cfuture *cf)
{
    int rc = evexec_cfuture_add_done_callback(cf, cf_counted, NULL);
    if (rc == 0)
        atomic_fetch_add(&callbacks_accepted, 1);
    return rc;
}

static int add_f_cb(struct evexec_future *f)
{
    int rc = evexec_future_add_done_callback(f, f_counted, NULL);
    if (rc == 0)
        atomic_fetch_add(&callbacks_accepted, 1);
    return rc;
}

static struct evexec_pool *pool_of(unsigned max_workers)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = max_workers;
    return evexec_pool_new(&cfg);
}

/* The outcome of a run: 0, or the first error and where it was seen. */
struct run {
    int err;
    const char *where;
    bool from_task; /* the error is a task's outcome, not a call's */
};

static void note(struct run *r, int err, const char *where, bool from_task)
{
    if (err && !r->err) {
        r->err = err;
        r->where = where;
        r->from_task = from_task;
    }
}

/* A call's error must be ENOMEM; a task's may also be EAGAIN (no worker). */
static void check_run(const char *what, long n, const struct run *r)
{
    if (!r->err)
        return;
    if (r->from_task)
        cr_assert(r->err == EAGAIN || r->err == ENOMEM,
                  "%s, alloc %ld failed: task outcome %s at %s", what, n,
                  evexec_strerror(r->err), r->where);
    else
        cr_assert_eq(r->err, ENOMEM, "%s, alloc %ld failed: %s at %s", what, n,
                     evexec_strerror(r->err), r->where);
}

/* ---- scenarios ---------------------------------------------------------- */

/* Pool and concurrent futures: a gated task with a done callback, a second
 * task while the first runs, results read, everything freed. */
static void scenario_pool(struct run *r)
{
    struct evexec_pool *pool = pool_of(2);
    if (!pool) {
        note(r, errno, "evexec_pool_new", false);
        return;
    }
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *a = evexec_pool_submit(pool, work_gated, &g, result_free);
    if (!a)
        note(r, errno, "evexec_pool_submit(a)", false);
    else
        note(r, add_cf_cb(a), "evexec_cfuture_add_done_callback(a)", false);
    struct evexec_cfuture *b = evexec_pool_submit(pool, work_ok, NULL, result_free);
    if (!b)
        note(r, errno, "evexec_pool_submit(b)", false);
    else
        note(r, add_cf_cb(b), "evexec_cfuture_add_done_callback(b)", false);
    gate_open(&g);
    void *res;
    if (a)
        note(r, evexec_cfuture_result(a, -1, &res), "result(a)", true);
    if (b)
        note(r, evexec_cfuture_result(b, -1, &res), "result(b)", true);
    evexec_cfuture_release(a);
    evexec_cfuture_release(b);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

struct poster {
    struct evexec_loop *loop;
    int rc;
};

static void *post_from_foreign(void *arg)
{
    struct poster *p = arg;
    p->rc = evexec_call_soon_threadsafe(p->loop, soon_counted, NULL);
    if (p->rc == 0)
        atomic_fetch_add(&callbacks_accepted, 1);
    return NULL;
}

/* Loop bridge and loop futures: six done callbacks (the array grows twice),
 * call_soon, call_soon_threadsafe from another thread, a result. */
static void scenario_loop(struct run *r)
{
    struct event_base *base = event_base_new();
    cr_assert_not_null(base);
    struct evexec_loop *loop = evexec_loop_new(base);
    if (!loop) {
        note(r, errno, "evexec_loop_new", false);
        event_base_free(base);
        return;
    }
    struct evexec_future *f = evexec_future_new(loop);
    if (!f) {
        note(r, errno, "evexec_future_new", false);
    } else {
        for (int i = 0; i < 6; i++)
            note(r, add_f_cb(f), "evexec_future_add_done_callback", false);
    }
    int rc = evexec_call_soon(loop, soon_counted, NULL);
    if (rc == 0)
        atomic_fetch_add(&callbacks_accepted, 1);
    note(r, rc, "evexec_call_soon", false);

    evexec_loop_ref(loop); /* a foreign producer the loop cannot know of */
    struct poster p = { loop, -1 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_from_foreign, &p), 0);
    pthread_join(t, NULL);
    note(r, p.rc, "evexec_call_soon_threadsafe", false);
    /* Run until call_soon's and the foreign callback ran (f is not done
     * yet, so nothing else can run), then unref. */
    int expected = (rc == 0) + (p.rc == 0);
    while (atomic_load(&callbacks_run) < expected &&
           event_base_loop(base, EVLOOP_ONCE) == 0)
        ;
    evexec_loop_unref(loop);

    if (f) {
        void *res = NULL;
        work_ok(NULL, &res);
        cr_assert_eq(evexec_future_set_result(f, res, result_free), 0);
    }
    cr_assert_neq(event_base_dispatch(base), -1);
    evexec_future_release(f);
    evexec_loop_free(loop);
    event_base_free(base);
}

/* run_in_executor on the loop's default pool and on a private pool at once,
 * each with a done callback; the loop runs until both are done. Then once
 * more on the default pool (reusing a recycled block) and the loop is freed
 * at once, its worker possibly still inside its post, before the private
 * pool is. */
static struct evexec_future *rie_start(struct run *r, struct evexec_loop *loop,
                                       struct evexec_pool *pool, const char *where)
{
    struct evexec_future *f = evexec_run_in_executor(loop, pool, work_ok, NULL, result_free);
    if (!f) {
        note(r, errno, where, false);
        return NULL;
    }
    note(r, add_f_cb(f), "evexec_future_add_done_callback", false);
    return f;
}

static void rie_finish(struct run *r, struct evexec_future *f, const char *where)
{
    if (!f)
        return;
    cr_assert(evexec_future_done(f), "%s: dispatch returned with a pending future", where);
    note(r, evexec_future_result(f, NULL), where, true);
    evexec_future_release(f);
}

static void scenario_run_in_executor(struct run *r)
{
    struct event_base *base = event_base_new();
    cr_assert_not_null(base);
    struct evexec_loop *loop = evexec_loop_new(base);
    if (!loop) {
        note(r, errno, "evexec_loop_new", false);
        event_base_free(base);
        return;
    }
    struct evexec_pool *pool = pool_of(1);
    if (!pool)
        note(r, errno, "evexec_pool_new", false);
    struct evexec_future *fd = rie_start(r, loop, NULL, "run_in_executor(default pool)");
    struct evexec_future *fp = pool ? rie_start(r, loop, pool, "run_in_executor(pool)") : NULL;
    cr_assert_neq(event_base_dispatch(base), -1);
    rie_finish(r, fd, "run_in_executor(default pool)");
    rie_finish(r, fp, "run_in_executor(pool)");
    struct evexec_future *again = rie_start(r, loop, NULL, "run_in_executor(default, again)");
    cr_assert_neq(event_base_dispatch(base), -1);
    rie_finish(r, again, "run_in_executor(default, again)");
    evexec_loop_free(loop);
    evexec_pool_free(pool);
    event_base_free(base);
}

/* wrap_cfuture of a task that is still running, with a done callback. */
static void scenario_wrap(struct run *r)
{
    struct event_base *base = event_base_new();
    cr_assert_not_null(base);
    struct evexec_loop *loop = evexec_loop_new(base);
    if (!loop) {
        note(r, errno, "evexec_loop_new", false);
        event_base_free(base);
        return;
    }
    struct evexec_pool *pool = pool_of(1);
    if (!pool) {
        note(r, errno, "evexec_pool_new", false);
        evexec_loop_free(loop);
        event_base_free(base);
        return;
    }
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_gated, &g, result_free);
    struct evexec_future *f = NULL;
    if (!cf) {
        note(r, errno, "evexec_pool_submit", false);
    } else {
        f = evexec_wrap_cfuture(loop, cf);
        if (!f)
            note(r, errno, "evexec_wrap_cfuture", false);
        else
            note(r, add_f_cb(f), "evexec_future_add_done_callback", false);
    }
    gate_open(&g);
    cr_assert_neq(event_base_dispatch(base), -1);
    if (f) {
        cr_assert(evexec_future_done(f), "dispatch returned with a pending future");
        note(r, evexec_future_result(f, NULL), "future result", true);
    }
    evexec_future_release(f);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
}

/* Count a scenario's allocations, then fail each one in turn. */
static void sweep_allocations(const char *what, void (*scenario)(struct run *))
{
    disarm();
    tally_reset();
    struct run r = {0};
    long before = evexec__fault_alloc_count();
    scenario(&r);
    long total = evexec__fault_alloc_count() - before;
    cr_assert_eq(r.err, 0, "%s without faults: %s at %s", what, evexec_strerror(r.err),
                 r.where ? r.where : "?");
    tally_check(what, 0);
    cr_assert_gt(total, 0, "%s allocates nothing?", what);

    long visible = 0;
    for (long n = 1; n <= total; n++) {
        tally_reset();
        memset(&r, 0, sizeof(r));
        evexec__fault_fail_alloc(n);
        scenario(&r);
        disarm();
        check_run(what, n, &r);
        tally_check(what, n);
        if (r.err)
            visible++;
    }
    cr_log_info("%s: %ld allocations swept, %ld reported a failure, %ld absorbed "
                "(a second worker that could not be made)", what, total, visible,
                total - visible);
    /* Most failures must be reported; only a spare worker may be absorbed. */
    cr_assert_geq(visible, total - 1, "%s: %ld of %ld allocation failures went unreported",
                  what, total - visible, total);
    assert_no_leaks();
}

Test(fault, sweep_every_allocation_of_the_pool_path)
{
    sweep_allocations("pool", scenario_pool);
}

Test(fault, sweep_every_allocation_of_the_loop_and_future_path)
{
    sweep_allocations("loop", scenario_loop);
}

Test(fault, sweep_every_allocation_of_the_run_in_executor_path)
{
    sweep_allocations("run_in_executor", scenario_run_in_executor);
}

Test(fault, sweep_every_allocation_of_the_wrap_cfuture_path)
{
    sweep_allocations("wrap_cfuture", scenario_wrap);
}

/* ---- named allocation failures ------------------------------------------ */

Test(fault, pool_new_reports_enomem)
{
    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_pool_new(NULL));
    cr_assert_eq(errno, ENOMEM);
    disarm();
    assert_no_leaks();
}

Test(fault, submit_reports_enomem_and_the_pool_keeps_working)
{
    tally_reset();
    struct evexec_pool *pool = pool_of(1);
    cr_assert_not_null(pool);
    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, work_ok, NULL, result_free));
    cr_assert_eq(errno, ENOMEM);
    disarm();
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, result_free);
    cr_assert_not_null(cf);
    void *res = NULL;
    cr_assert_eq(evexec_cfuture_result(cf, -1, &res), 0);
    cr_assert_eq(*(int *)res, 7);
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    cr_assert_eq(st.submitted, 1, "the refused task was not counted");
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    tally_check("submit", 1);
    assert_no_leaks();
}

Test(fault, worker_allocation_failure_fails_the_task_with_eagain)
{
    tally_reset();
    struct evexec_pool *pool = pool_of(1);
    cr_assert_not_null(pool);
    evexec__fault_fail_alloc(2); /* 1: the task, 2: its worker */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, result_free);
    disarm();
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), EAGAIN);
    cr_assert_eq(atomic_load(&results_made), 0, "the task never ran");
    evexec_cfuture_release(cf);
    /* The next submission makes its worker. */
    cf = evexec_pool_submit(pool, work_ok, NULL, result_free);
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    tally_check("worker allocation", 2);
    assert_no_leaks();
}

Test(fault, cfuture_done_callback_registration_reports_enomem_and_never_calls)
{
    tally_reset();
    struct evexec_pool *pool = pool_of(1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_gated, &g, result_free);
    cr_assert_not_null(cf);
    evexec__fault_fail_alloc(1);
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, cf_counted, NULL), ENOMEM);
    disarm();
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_wait(cf, 20000), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&callbacks_run), 0);
    gate_destroy(&g);
    tally_check("cfuture callback", 1);
    assert_no_leaks();
}

Test(fault, loop_new_future_new_and_call_soon_report_enomem)
{
    struct event_base *base = event_base_new();
    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_loop_new(base));
    cr_assert_eq(errno, ENOMEM);
    disarm();
    struct evexec_loop *loop = evexec_loop_new(base);
    cr_assert_not_null(loop, "the base takes a bridge after a failed attempt");

    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_future_new(loop));
    cr_assert_eq(errno, ENOMEM);

    tally_reset();
    evexec__fault_fail_alloc(1);
    cr_assert_eq(evexec_call_soon(loop, soon_counted, NULL), ENOMEM);
    evexec__fault_fail_alloc(1);
    cr_assert_eq(evexec_call_soon_threadsafe(loop, soon_counted, NULL), ENOMEM);
    disarm();
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(atomic_load(&callbacks_run), 0, "a refused callback never runs");
    evexec_loop_free(loop);
    event_base_free(base);
    assert_no_leaks();
}

Test(fault, growing_the_done_callback_array_reports_enomem_and_keeps_the_others)
{
    tally_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_future *f = evexec_future_new(loop);
    cr_assert_eq(add_f_cb(f), 0); /* the first slot is inside the future */
    evexec__fault_fail_alloc(1);
    cr_assert_eq(evexec_future_add_done_callback(f, f_counted, NULL), ENOMEM);
    disarm();
    cr_assert_eq(add_f_cb(f), 0);
    cr_assert_eq(evexec_future_set_error(f, EIO), 0);
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert_eq(atomic_load(&callbacks_run), 2, "the accepted callbacks ran, once each");
    evexec_future_release(f);
    evexec_loop_free(loop);
    event_base_free(base);
    assert_no_leaks();
}

Test(fault, run_in_executor_reports_enomem_for_its_block_and_its_default_pool)
{
    tally_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    /* 1: the default pool. */
    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, NULL, work_ok, NULL, result_free));
    cr_assert_eq(errno, ENOMEM);
    /* 1: the block (the default pool exists now). */
    cr_assert_not_null(evexec_loop_default_pool(loop));
    evexec__fault_fail_alloc(1);
    errno = 0;
    cr_assert_null(evexec_run_in_executor(loop, NULL, work_ok, NULL, result_free));
    cr_assert_eq(errno, ENOMEM);
    disarm();
    struct evexec_loop_stats ls;
    cr_assert_eq(evexec_loop_get_stats(loop, &ls), 0);
    cr_assert_eq(ls.in_flight, 0, "a refused call leaves nothing in flight");
    cr_assert_neq(event_base_dispatch(base), -1);
    /* 2: the worker of the default pool: the future fails with EAGAIN. */
    evexec__fault_fail_alloc(2);
    struct evexec_future *f = evexec_run_in_executor(loop, NULL, work_ok, NULL, result_free);
    disarm();
    cr_assert_not_null(f);
    cr_assert_neq(event_base_dispatch(base), -1);
    cr_assert(evexec_future_done(f));
    cr_assert_eq(evexec_future_result(f, NULL), EAGAIN);
    evexec_future_release(f);
    evexec_loop_free(loop);
    event_base_free(base);
    tally_check("run_in_executor", 0);
    assert_no_leaks();
}

Test(fault, wrap_cfuture_reports_enomem_and_keeps_no_reference)
{
    tally_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = pool_of(1);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_gated, &g, result_free);
    for (long n = 1; n <= 2; n++) { /* 1: the future, 2: the cfuture callback */
        evexec__fault_fail_alloc(n);
        errno = 0;
        cr_assert_null(evexec_wrap_cfuture(loop, cf), "alloc %ld", n);
        cr_assert_eq(errno, ENOMEM);
        disarm();
    }
    struct evexec_loop_stats ls;
    cr_assert_eq(evexec_loop_get_stats(loop, &ls), 0);
    cr_assert_eq(ls.in_flight, 0);
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_wait(cf, 20000), 0);
    cr_assert_neq(event_base_dispatch(base), -1);
    evexec_cfuture_release(cf); /* the failed wraps kept no reference */
    evexec_pool_free(pool);         /* joins the worker, which drops the queue's */
    cr_assert_eq(atomic_load(&results_freed), 1);
    evexec_loop_free(loop);
    event_base_free(base);
    gate_destroy(&g);
    assert_no_leaks();
}

/* ---- thread creation ---------------------------------------------------- */

static void scenario_threads(struct run *r)
{
    struct evexec_pool *pool = pool_of(2);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *a = evexec_pool_submit(pool, work_gated, &g, result_free);
    struct evexec_cfuture *b = evexec_pool_submit(pool, work_ok, NULL, result_free);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    note(r, add_cf_cb(a), "add_done_callback(a)", false);
    gate_open(&g);
    note(r, evexec_cfuture_result(a, -1, NULL), "result(a)", true);
    note(r, evexec_cfuture_result(b, -1, NULL), "result(b)", true);
    evexec_cfuture_release(a);
    evexec_cfuture_release(b);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(fault, sweep_every_thread_creation_of_the_pool)
{
    disarm();
    tally_reset();
    struct run r = {0};
    long before = evexec__fault_thread_count();
    scenario_threads(&r);
    long total = evexec__fault_thread_count() - before;
    cr_assert_eq(r.err, 0);
    cr_assert_eq(total, 2, "two tasks, one of them held: two workers");
    for (long n = 1; n <= total; n++) {
        tally_reset();
        memset(&r, 0, sizeof(r));
        evexec__fault_fail_thread(n);
        scenario_threads(&r);
        disarm();
        cr_assert(r.err == 0 || (r.from_task && r.err == EAGAIN),
                  "thread %ld failed: %s at %s", n, evexec_strerror(r.err), r.where);
        tally_check("threads", n);
    }
    assert_no_leaks();
}

/* Fail each worker creation of a loop scenario in turn: the loop futures
 * whose task got no worker fail with EAGAIN on the loop, nothing hangs. */
static void sweep_threads_of(const char *what, void (*scenario)(struct run *))
{
    disarm();
    tally_reset();
    struct run r = {0};
    long before = evexec__fault_thread_count();
    scenario(&r);
    long total = evexec__fault_thread_count() - before;
    cr_assert_eq(r.err, 0, "%s without faults: %s", what, evexec_strerror(r.err));
    cr_assert_gt(total, 0);
    for (long n = 1; n <= total; n++) {
        tally_reset();
        memset(&r, 0, sizeof(r));
        evexec__fault_fail_thread(n);
        scenario(&r);
        disarm();
        cr_assert(r.err == 0 || (r.from_task && r.err == EAGAIN),
                  "%s, thread %ld failed: %s at %s", what, n, evexec_strerror(r.err), r.where);
        tally_check(what, n);
    }
    cr_log_info("%s: %ld thread creations swept", what, total);
    assert_no_leaks();
}

Test(fault, sweep_every_thread_creation_of_run_in_executor_and_wrap_cfuture)
{
    sweep_threads_of("run_in_executor", scenario_run_in_executor);
    sweep_threads_of("wrap_cfuture", scenario_wrap);
}

Test(fault, no_thread_at_all_fails_the_task_with_eagain_then_the_pool_recovers)
{
    tally_reset();
    struct evexec_pool *pool = pool_of(2);
    evexec__fault_fail_thread(1);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_ok, NULL, result_free);
    disarm();
    cr_assert_not_null(cf, "submit itself succeeds");
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), EAGAIN);
    cr_assert_eq(atomic_load(&results_made), 0);
    cr_assert_eq(add_cf_cb(cf), 0, "done: the callback runs at once");
    cr_assert_eq(atomic_load(&callbacks_run), 1);
    evexec_cfuture_release(cf);
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.queued, 0, "the failed task left the queue");

    cf = evexec_pool_submit(pool, work_ok, NULL, result_free);
    cr_assert_eq(evexec_cfuture_result(cf, 20000, NULL), 0, "the next task gets a worker");
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    tally_check("no thread", 1);
    assert_no_leaks();
}

Test(fault, failed_second_thread_leaves_the_work_to_the_first_worker)
{
    tally_reset();
    struct evexec_pool *pool = pool_of(4);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *a = evexec_pool_submit(pool, work_gated, &g, result_free);
    evexec__fault_fail_thread(1); /* every later creation fails once each */
    struct evexec_cfuture *b = evexec_pool_submit(pool, work_ok, NULL, result_free);
    evexec__fault_fail_thread(1);
    struct evexec_cfuture *c = evexec_pool_submit(pool, work_ok, NULL, result_free);
    disarm();
    cr_assert_not_null(b);
    cr_assert_not_null(c);
    cr_assert_eq(evexec_cfuture_wait(b, 50), ETIMEDOUT, "queued behind the held task");
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_result(a, 20000, NULL), 0);
    cr_assert_eq(evexec_cfuture_result(b, 20000, NULL), 0);
    cr_assert_eq(evexec_cfuture_result(c, 20000, NULL), 0);
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    cr_assert_eq(st.threads_started, 1, "only the first worker was made");
    evexec_cfuture_release(a);
    evexec_cfuture_release(b);
    evexec_cfuture_release(c);
    evexec_pool_free(pool);
    gate_destroy(&g);
    tally_check("second thread", 0);
    assert_no_leaks();
}

Test(fault, run_in_executor_without_any_thread_fails_on_the_loop_with_eagain)
{
    tally_reset();
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = evexec_loop_new(base);
    struct evexec_pool *pool = pool_of(1);
    for (int round = 0; round < 2; round++) { /* private pool, then default */
        struct evexec_pool *p = round == 0 ? pool : NULL;
        evexec__fault_fail_thread(1);
        struct evexec_future *f = evexec_run_in_executor(loop, p, work_ok, NULL, result_free);
        disarm();
        cr_assert_not_null(f);
        cr_assert_eq(add_f_cb(f), 0);
        cr_assert_neq(event_base_dispatch(base), -1);
        cr_assert(evexec_future_done(f), "the failure reaches the loop");
        cr_assert_eq(evexec_future_result(f, NULL), EAGAIN);
        evexec_future_release(f);
        /* And the pool serves the next one. */
        f = evexec_run_in_executor(loop, p, work_ok, NULL, result_free);
        cr_assert_not_null(f);
        cr_assert_neq(event_base_dispatch(base), -1);
        cr_assert_eq(evexec_future_result(f, NULL), 0);
        evexec_future_release(f);
    }
    cr_assert_eq(atomic_load(&callbacks_run), 2);
    evexec_loop_free(loop);
    evexec_pool_free(pool);
    event_base_free(base);
    tally_check("run_in_executor threads", 1);
    assert_no_leaks();
}

/* ---- a view of a view whose pump cannot be made ---------------------------- */

/* The submitting thread's allocations are counted; at its third, the hook
 * holds it on this gate while the test lets the other threads move. */
static _Thread_local int nested_allocs_armed;
static struct gate nested_hold;

static void nested_alloc_hook(void)
{
    if (nested_allocs_armed > 0 && --nested_allocs_armed == 0)
        gate_pass(&nested_hold);
}

static int nested_wait_gate(void *arg, void **result)
{
    (void)result;
    gate_pass(arg);
    return 0;
}

static int nested_noop(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

struct nested_submit {
    struct evexec_pool *inner;
    struct evexec_cfuture *y;
};

static void *nested_submitter(void *arg)
{
    struct nested_submit *s = arg;
    /* 1: the task's cfuture, 2: the inner view's pump, 3: the outer view's
     * pump, made once the inner pump is queued in the outer view: held
     * there, then failed. */
    nested_allocs_armed = 3;
    evexec__fault_fail_alloc(3);
    s->y = evexec_pool_submit(s->inner, nested_noop, NULL, NULL);
    nested_allocs_armed = 0;
    return NULL;
}

/* V2 on V1 (two slots, one held) on a pool: a submission to V2 queues V2's
 * pump in V1; while V1's own new pump is being made, V1's running pump runs
 * V2's pump to its end, which frees it; then that new pump cannot be made.
 * The failed submission must not look at the inner pump it queued (it used
 * to read it to see whether it was still queued: a use-after-free that
 * AddressSanitizer reports and a plain build could crash on). */
Test(fault, a_failed_pump_of_a_view_never_touches_the_inner_views_pump_that_already_ran)
{
    struct evexec_pool_config cfg = { .max_workers = 1, .flags = EVEXEC_POOL_NO_SPIN };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_pool *outer = evexec_pool_new_limited(pool, 2);
    struct evexec_pool *inner = evexec_pool_new_limited(outer, 1);
    cr_assert(outer && inner);
    struct gate hold_a;
    gate_init(&hold_a);
    gate_init(&nested_hold);
    struct evexec_cfuture *a = evexec_pool_submit(outer, nested_wait_gate, &hold_a, NULL);
    cr_assert_not_null(a);
    cr_assert(gate_wait_arrived(&hold_a, 1)); /* the outer view's first pump runs a */
    evexec__fault_set_alloc_hook(nested_alloc_hook);
    struct nested_submit s = { inner, NULL };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, nested_submitter, &s), 0);
    cr_assert(gate_wait_arrived(&nested_hold, 1)); /* the inner pump is queued in outer */
    gate_open(&hold_a); /* a ends; outer's pump runs the inner pump, then y */
    cr_assert_eq(evexec_cfuture_wait(a, 10000), 0);
    /* y is not returned yet; wait for the inner view to have run it. */
    struct evexec_pool_stats st;
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(evexec_pool_get_stats(inner, &st), 0);
        if (st.completed == 1 && st.running == 0)
            break;
        sleep_ms(1);
    }
    cr_assert_eq(st.completed, 1, "the inner view's task did not run");
    sleep_ms(20); /* let the inner pump's last reference go */
    gate_open(&nested_hold);
    pthread_join(t, NULL);
    evexec__fault_set_alloc_hook(NULL);
    /* The task ran, so its submission succeeded whatever the outer pump did. */
    cr_assert_not_null(s.y, "the submission failed: %s", evexec_strerror(errno));
    cr_assert_eq(evexec_cfuture_wait(s.y, 10000), 0);
    cr_assert_eq(evexec_cfuture_result(s.y, 0, NULL), 0);
    evexec_cfuture_release(s.y);
    evexec_cfuture_release(a);
    evexec_pool_free(inner);
    evexec_pool_free(outer);
    evexec_pool_free(pool);
    gate_destroy(&hold_a);
    gate_destroy(&nested_hold);
}
