/*
 * test_pool.c -- the thread pool: defaults, lazy worker creation, reuse of
 * idle workers, idle timeout above min_workers, FIFO order, the bounded
 * queue, per-worker hooks, a broken pool, shutdown modes, argument checks,
 * and what every worker thread looks like (signal mask, name, priority).
 *
 * Tasks never assert: they record what they saw, and the main thread
 * asserts once the work is done. Waits on other threads use gates
 * (mutex + condvar) with a generous bound, so a hang fails the test instead
 * of blocking it; sleeps are never what decides a pass.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "evexec.h"
#define TESTUTIL_POOL_HELPERS /* new_pool, stats_of, assert_balanced */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(pool, .timeout = 60, .fini = fail_on_leaks);

/* ---- helpers ------------------------------------------------------------ */

static int blocking_task(void *arg, void **result)
{
    (void)result;
    gate_pass(arg);
    return 0;
}

static int noop_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

static int count_task(void *arg, void **result)
{
    (void)result;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* Poll the stats until threads == n (bounded); returns the last stats. */
static struct evexec_pool_stats wait_threads(struct evexec_pool *pool, unsigned n)
{
    struct evexec_pool_stats st = stats_of(pool);
    for (long waited = 0; st.threads != n && waited < HANG_BOUND_MS; waited += 2) {
        sleep_ms(2);
        st = stats_of(pool);
    }
    return st;
}

/* Poll until every live worker is parked (idle == threads, bounded). */
static void wait_all_idle(struct evexec_pool *pool)
{
    struct evexec_pool_stats st = stats_of(pool);
    for (long waited = 0; st.idle != st.threads && waited < HANG_BOUND_MS; waited++) {
        sleep_ms(1);
        st = stats_of(pool);
    }
    cr_assert_eq(st.idle, st.threads, "workers never went idle");
}

/* Restrict this test's process to one CPU (Criterion runs each test in a
 * process of its own) and return how many it may use now. */
static int use_one_cpu(void)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof(set), &set), 0);
    int first = 0;
    while (!CPU_ISSET(first, &set))
        first++;
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0);
    return 1;
}

static void wait_ok(struct evexec_cfuture *cf)
{
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0, "future never completed");
}

/* ---- defaults and lazy creation ----------------------------------------- */

/* With the process on one CPU, the default is 1 + 4 whatever the machine
 * has: the pool counts the CPUs it may use, not the ones online. */
static void check_default_max_workers(const struct evexec_pool_config *cfg)
{
    unsigned max = (unsigned)use_one_cpu() + 4;
    unsigned ntasks = 2 * max + 3;
    struct evexec_pool *pool = evexec_pool_new(cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture **cfs = calloc(ntasks, sizeof(*cfs));
    for (unsigned i = 0; i < ntasks; i++) {
        cfs[i] = evexec_pool_submit(pool, blocking_task, &g, NULL);
        cr_assert_not_null(cfs[i]);
    }
    /* Every worker is stuck at the gate: exactly max of them exist. */
    cr_assert(gate_wait_arrived(&g, max));
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.threads, max);
    cr_assert_eq(st.threads_started, max);
    cr_assert_eq(st.queued, ntasks - max);
    cr_assert_eq(gate_arrived(&g), max);
    gate_open(&g);
    for (unsigned i = 0; i < ntasks; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    /* Counters are updated after the future completes: join first. */
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    st = stats_of(pool);
    cr_assert_eq(st.threads_started, max);
    cr_assert_eq(st.completed, ntasks);
    evexec_pool_free(pool);
    free(cfs);
    gate_destroy(&g);
}

Test(pool, zero_config_max_workers_is_the_usable_cpus_plus_4)
{
    struct evexec_pool_config cfg = {0};
    check_default_max_workers(&cfg);
}

Test(pool, null_config_uses_the_defaults)
{
    check_default_max_workers(NULL);
}

Test(pool, no_thread_starts_before_the_first_submit)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.threads_started, 0);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    st = stats_of(pool);
    cr_assert_eq(st.threads_started, 1);
    cr_assert_eq(st.submitted, 1);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

static void check_idle_worker_reused(unsigned flags)
{
    struct evexec_pool_config cfg = { .max_workers = 4, .flags = flags };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    atomic_int runs = 0;
    for (int i = 0; i < 20; i++) {
        struct evexec_cfuture *cf = evexec_pool_submit(pool, count_task, &runs, NULL);
        cr_assert_not_null(cf);
        wait_ok(cf);
        evexec_cfuture_release(cf);
        /* The worker that ran it is idle before the next submission. */
        wait_all_idle(pool);
    }
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(atomic_load(&runs), 20);
    cr_assert_eq(st.threads_started, 1, "a new worker was made although one was idle");
    cr_assert_eq(st.threads, 1);
    evexec_pool_free(pool);
}

Test(pool, idle_worker_is_reused_before_a_new_one_is_made)
{
    check_idle_worker_reused(0);
}

Test(pool, idle_worker_is_reused_with_no_spin)
{
    check_idle_worker_reused(EVEXEC_POOL_NO_SPIN);
}

/* No waiting for the worker to park: the future completes before the worker
 * is back at the queue, and that worker must still count as available. */
static void check_back_to_back_reuse(unsigned flags)
{
    struct evexec_pool_config cfg = { .max_workers = 4, .flags = flags };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    for (int i = 0; i < 50; i++) {
        struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
        cr_assert_not_null(cf);
        wait_ok(cf);
        evexec_cfuture_release(cf);
    }
    cr_assert_eq(stats_of(pool).threads_started, 1,
                 "sequential submissions made %u workers",
                 (unsigned)stats_of(pool).threads_started);
    evexec_pool_free(pool);
}

Test(pool, back_to_back_submissions_reuse_the_one_worker)
{
    check_back_to_back_reuse(0);
}

Test(pool, back_to_back_submissions_reuse_the_one_worker_with_no_spin)
{
    check_back_to_back_reuse(EVEXEC_POOL_NO_SPIN);
}

/* ---- hooks --------------------------------------------------------------- */

struct hook_counts {
    atomic_int inits, exits;
    int fail_from;           /* thread_init number (1-based) that fails; 0 never */
    struct gate *init_gate;  /* if set, thread_init waits here first */
};

static int counting_init(void *ctx)
{
    struct hook_counts *h = ctx;
    int n = atomic_fetch_add(&h->inits, 1) + 1;
    if (h->init_gate)
        gate_pass(h->init_gate);
    return h->fail_from && n >= h->fail_from ? -1 : 0;
}

static void counting_exit(void *ctx)
{
    struct hook_counts *h = ctx;
    atomic_fetch_add(&h->exits, 1);
}

Test(pool, idle_workers_above_min_exit_after_idle_timeout)
{
    struct hook_counts hooks = {0};
    struct evexec_pool_config cfg = {
        .max_workers = 4, .min_workers = 1, .idle_timeout_ms = 50,
        .thread_init = counting_init, .thread_exit = counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cfs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 4));
    cr_assert_eq(stats_of(pool).threads, 4);
    /* All four go idle at about the same time and time out together. */
    gate_open(&g);
    for (int i = 0; i < 4; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    struct evexec_pool_stats st = wait_threads(pool, 1);
    cr_assert_eq(st.threads, 1, "idle workers above min_workers did not exit");
    /* Several more timeouts later the min_workers worker is still there. */
    sleep_ms(6 * cfg.idle_timeout_ms);
    st = stats_of(pool);
    cr_assert_eq(st.threads, 1, "a worker within min_workers exited");
    cr_assert_eq(atomic_load(&hooks.exits), 3);
    /* And it takes the next task: no new thread. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    cr_assert_eq(stats_of(pool).threads_started, 4);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&hooks.exits), 4);
    gate_destroy(&g);
}

static void slow_counting_exit(void *ctx)
{
    struct hook_counts *h = ctx;
    sleep_ms(200); /* a thread_exit hook that takes its time (flushes, closes) */
    atomic_fetch_add(&h->exits, 1);
}

Test(pool, min_workers_stay_when_thread_exit_is_slow)
{
    struct hook_counts hooks = {0};
    struct evexec_pool_config cfg = {
        .max_workers = 4, .min_workers = 1, .idle_timeout_ms = 50,
        .thread_exit = slow_counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cfs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 4));
    gate_open(&g);
    for (int i = 0; i < 4; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    /* Wait until three workers have run thread_exit, then give a fourth
     * (wrongly) leaving one ample time to show up. */
    for (long waited = 0; atomic_load(&hooks.exits) < 3 && waited < HANG_BOUND_MS; waited += 2)
        sleep_ms(2);
    sleep_ms(6 * cfg.idle_timeout_ms + 400);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(atomic_load(&hooks.exits), 3, "%d workers exited, min_workers is 1",
                 atomic_load(&hooks.exits));
    cr_assert_eq(st.threads, 1);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, idle_worker_without_min_workers_exits_after_idle_timeout)
{
    struct evexec_pool_config cfg = { .max_workers = 2, .idle_timeout_ms = 30 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    struct evexec_pool_stats st = wait_threads(pool, 0);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.threads_started, 1);
    /* A pool whose workers all timed out still takes work. */
    cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    cr_assert_eq(stats_of(pool).threads_started, 2);
    evexec_pool_free(pool);
}

Test(pool, thread_init_and_exit_run_once_per_worker)
{
    struct hook_counts hooks = {0};
    struct evexec_pool_config cfg = {
        .max_workers = 3,
        .thread_init = counting_init, .thread_exit = counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cfs[9];
    for (int i = 0; i < 9; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 3));
    gate_open(&g);
    for (int i = 0; i < 9; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.threads_started, 3);
    cr_assert_eq(atomic_load(&hooks.inits), 3);
    cr_assert_eq(atomic_load(&hooks.exits), 3);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&hooks.exits), 3);
    gate_destroy(&g);
}

Test(pool, failing_thread_init_breaks_the_pool)
{
    struct gate init_gate;
    gate_init(&init_gate);
    struct hook_counts hooks = { .fail_from = 1, .init_gate = &init_gate };
    struct evexec_pool_config cfg = {
        .max_workers = 1,
        .thread_init = counting_init, .thread_exit = counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    /* The worker is inside thread_init: everything is still queued. */
    cr_assert(gate_wait_arrived(&init_gate, 1));
    gate_open(&init_gate);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
        cr_assert_eq(evexec_cfuture_state(cfs[i]), EVEXEC_FINISHED);
        evexec_cfuture_release(cfs[i]);
    }
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, count_task, &runs, NULL));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    evexec_pool_free(pool); /* must not hang */
    cr_assert_eq(atomic_load(&runs), 0);
    cr_assert_eq(atomic_load(&hooks.inits), 1);
    cr_assert_eq(atomic_load(&hooks.exits), 0, "thread_exit ran for a failed thread_init");
    gate_destroy(&init_gate);
}

Test(pool, failing_thread_init_of_a_later_worker_fails_work_without_hanging)
{
    struct hook_counts hooks = { .fail_from = 2 };
    struct evexec_pool_config cfg = {
        .max_workers = 3,
        .thread_init = counting_init, .thread_exit = counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    /* The first worker blocks, so a second one is made and its init fails. */
    struct evexec_cfuture *first = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(first);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_cfuture *second = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(second);
    cr_assert_eq(evexec_cfuture_result(second, HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, noop_task, NULL, NULL));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    /* The task that was already running finishes normally. */
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_result(first, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(first);
    evexec_cfuture_release(second);
    evexec_pool_free(pool);
    int inits = atomic_load(&hooks.inits);
    cr_assert_geq(inits, 2);
    /* Only the workers whose init succeeded (the first) run thread_exit. */
    cr_assert_eq(atomic_load(&hooks.exits), 1);
    gate_destroy(&g);
}

/* ---- queue ---------------------------------------------------------------- */

struct order_log {
    atomic_int next;
    int order[64];
};

struct order_arg {
    struct order_log *log;
    int index;
};

static int record_order_task(void *arg, void **result)
{
    (void)result;
    struct order_arg *a = arg;
    int slot = atomic_fetch_add(&a->log->next, 1);
    if (slot < 64)
        a->log->order[slot] = a->index;
    return 0;
}

Test(pool, single_worker_runs_tasks_in_fifo_order)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1));
    struct order_log log = {0};
    struct order_arg args[50];
    struct evexec_cfuture *cfs[50];
    for (int i = 0; i < 50; i++) {
        args[i] = (struct order_arg){ &log, i };
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, record_order_task, &args[i], NULL));
    }
    cr_assert_eq(stats_of(pool).queued, 50);
    gate_open(&g);
    wait_ok(blocker);
    evexec_cfuture_release(blocker);
    for (int i = 0; i < 50; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&log.next), 50);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(log.order[i], i, "task %d ran in position %d", log.order[i], i);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, full_bounded_queue_rejects_with_eagain)
{
    struct evexec_pool_config cfg = { .max_workers = 1, .max_queued = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    atomic_int runs = 0;
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1)); /* running: the queue is empty */
    struct evexec_cfuture *q1 = evexec_pool_submit(pool, count_task, &runs, NULL);
    struct evexec_cfuture *q2 = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(q1);
    cr_assert_not_null(q2);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, count_task, &runs, NULL));
    cr_assert_eq(errno, EAGAIN);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.submitted, 3, "a rejected task was counted as submitted");
    cr_assert_eq(st.queued, 2);
    gate_open(&g);
    wait_ok(q1);
    wait_ok(q2);
    wait_ok(blocker);
    /* Room again once the queue drained. */
    struct evexec_cfuture *q3 = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(q3);
    wait_ok(q3);
    cr_assert_eq(atomic_load(&runs), 3);
    evexec_cfuture_release(blocker);
    evexec_cfuture_release(q1);
    evexec_cfuture_release(q2);
    evexec_cfuture_release(q3);
    evexec_pool_free(pool);
    gate_destroy(&g);
}


struct load {
    struct evexec_pool *pool;
    atomic_int running, max_running, done;
};

struct load_submitter_arg {
    struct load *load;
    int count;
    int failures; /* written by its submitter thread only, read after join */
};

static int load_task(void *arg, void **result)
{
    (void)result;
    struct load *l = arg;
    int now = atomic_fetch_add(&l->running, 1) + 1;
    int seen = atomic_load(&l->max_running);
    while (now > seen && !atomic_compare_exchange_weak(&l->max_running, &seen, now))
        ;
    sched_yield();
    atomic_fetch_sub(&l->running, 1);
    atomic_fetch_add(&l->done, 1);
    return 0;
}

static void *load_submitter(void *arg)
{
    struct load_submitter_arg *a = arg;
    for (int i = 0; i < a->count; i++) {
        struct evexec_cfuture *cf = evexec_pool_submit(a->load->pool, load_task, a->load, NULL);
        if (!cf) {
            a->failures++;
            continue;
        }
        evexec_cfuture_release(cf);
    }
    return NULL;
}

Test(pool, workers_never_exceed_max_workers_under_load)
{
    struct evexec_pool_config cfg = { .max_workers = 3 };
    struct load load = { .pool = evexec_pool_new(&cfg) };
    cr_assert_not_null(load.pool);
    struct load_submitter_arg args[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct load_submitter_arg){ .load = &load, .count = 300 };
        cr_assert_eq(pthread_create(&threads[i], NULL, load_submitter, &args[i]), 0);
    }
    unsigned max_threads_seen = 0;
    for (int polls = 0; polls < 200; polls++) {
        struct evexec_pool_stats st = stats_of(load.pool);
        if (st.threads > max_threads_seen)
            max_threads_seen = st.threads;
        sched_yield();
    }
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    cr_assert_eq(evexec_pool_shutdown(load.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(load.pool);
    cr_assert_leq(max_threads_seen, 3);
    cr_assert_leq(st.threads_started, 3);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.completed, 4 * 300);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(args[i].failures, 0);
    cr_assert_eq(atomic_load(&load.done), 4 * 300);
    cr_assert_leq(atomic_load(&load.max_running), 3);
    evexec_pool_free(load.pool);
}

Test(pool, stats_count_submitted_completed_and_cancelled)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1));
    struct evexec_cfuture *cfs[6];
    for (int i = 0; i < 6; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, noop_task, NULL, NULL));
    cr_assert(evexec_cfuture_cancel(cfs[1]));
    cr_assert(evexec_cfuture_cancel(cfs[4]));
    gate_open(&g);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.submitted, 7);
    cr_assert_eq(st.completed, 5);
    cr_assert_eq(st.cancelled, 2);
    cr_assert_eq(st.queued, 0);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.idle, 0);
    evexec_cfuture_release(blocker);
    for (int i = 0; i < 6; i++)
        evexec_cfuture_release(cfs[i]);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

/* ---- shutdown -------------------------------------------------------------- */

/* A single worker held at a gate with `n` counting tasks queued behind it. */
struct held_pool {
    struct evexec_pool *pool;
    struct gate gate;
    struct evexec_cfuture *blocker;
    struct evexec_cfuture *queued[8];
    int n;
    atomic_int runs;
};

static void held_pool_init(struct held_pool *h, int n)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    h->pool = evexec_pool_new(&cfg);
    cr_assert_not_null(h->pool);
    gate_init(&h->gate);
    atomic_init(&h->runs, 0);
    h->n = n;
    h->blocker = evexec_pool_submit(h->pool, blocking_task, &h->gate, NULL);
    cr_assert_not_null(h->blocker);
    cr_assert(gate_wait_arrived(&h->gate, 1));
    for (int i = 0; i < n; i++)
        cr_assert_not_null(h->queued[i] = evexec_pool_submit(h->pool, count_task, &h->runs, NULL));
}

static void held_pool_release_futures(struct held_pool *h)
{
    evexec_cfuture_release(h->blocker);
    for (int i = 0; i < h->n; i++)
        evexec_cfuture_release(h->queued[i]);
}

Test(pool, shutdown_without_wait_returns_at_once_and_queued_work_still_runs)
{
    struct held_pool h;
    held_pool_init(&h, 5);
    /* The worker is blocked: a shutdown that waited would never return. */
    cr_assert_eq(evexec_pool_shutdown(h.pool, 0), 0);
    cr_assert_eq(atomic_load(&h.runs), 0);
    gate_open(&h.gate);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(evexec_cfuture_result(h.queued[i], HANG_BOUND_MS, NULL), 0);
        cr_assert_eq(evexec_cfuture_state(h.queued[i]), EVEXEC_FINISHED);
    }
    cr_assert_eq(atomic_load(&h.runs), 5);
    held_pool_release_futures(&h);
    evexec_pool_free(h.pool);
    gate_destroy(&h.gate);
}

Test(pool, shutdown_wait_joins_every_worker)
{
    struct hook_counts hooks = {0};
    struct evexec_pool_config cfg = {
        .max_workers = 3,
        .thread_exit = counting_exit, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cfs[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 3));
    gate_open(&g);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.threads, 0);
    cr_assert_eq(st.idle, 0);
    cr_assert_eq(atomic_load(&hooks.exits), 3);
    for (int i = 0; i < 3; i++) {
        /* Joined workers finished their tasks: no wait needed. */
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), 0);
        evexec_cfuture_release(cfs[i]);
    }
    evexec_pool_free(pool);
    gate_destroy(&g);
}

static void note_final_state(struct evexec_cfuture *cf, void *arg)
{
    atomic_store((atomic_int *)arg, evexec_cfuture_state(cf) + 100);
}

Test(pool, shutdown_cancel_pending_cancels_queued_tasks)
{
    struct held_pool h;
    held_pool_init(&h, 5);
    atomic_int seen[5];
    for (int i = 0; i < 5; i++) {
        atomic_init(&seen[i], 0);
        cr_assert_eq(evexec_cfuture_add_done_callback(h.queued[i], note_final_state, &seen[i]), 0);
    }
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(evexec_cfuture_state(h.queued[i]), EVEXEC_CANCELLED);
        cr_assert_eq(evexec_cfuture_result(h.queued[i], 0, NULL), ECANCELED);
        cr_assert_eq(atomic_load(&seen[i]), EVEXEC_CANCELLED + 100);
    }
    /* The running task is not touched. */
    cr_assert_eq(evexec_cfuture_state(h.blocker), EVEXEC_RUNNING);
    gate_open(&h.gate);
    cr_assert_eq(evexec_cfuture_result(h.blocker, HANG_BOUND_MS, NULL), 0);
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&h.runs), 0, "a task cancelled by shutdown ran");
    cr_assert_eq(stats_of(h.pool).cancelled, 5);
    held_pool_release_futures(&h);
    evexec_pool_free(h.pool);
    gate_destroy(&h.gate);
}

Test(pool, submit_after_shutdown_fails_with_eshutdown)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, noop_task, NULL, NULL));
    cr_assert_eq(errno, ESHUTDOWN);
    cr_assert_eq(stats_of(pool).submitted, 0);
    evexec_pool_free(pool);
}

Test(pool, shutdown_twice_is_harmless_and_may_add_flags)
{
    struct held_pool h;
    held_pool_init(&h, 3);
    cr_assert_eq(evexec_pool_shutdown(h.pool, 0), 0);
    cr_assert_eq(evexec_pool_shutdown(h.pool, 0), 0);
    /* A second call adds CANCEL_PENDING to the first. */
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(evexec_cfuture_state(h.queued[i]), EVEXEC_CANCELLED);
    gate_open(&h.gate);
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(stats_of(h.pool).threads, 0);
    cr_assert_eq(atomic_load(&h.runs), 0);
    held_pool_release_futures(&h);
    evexec_pool_free(h.pool);
    gate_destroy(&h.gate);
}

struct self_shutdown {
    struct evexec_pool *pool;
    unsigned flags;
    int rc;
};

static int shutdown_own_pool_task(void *arg, void **result)
{
    (void)result;
    struct self_shutdown *s = arg;
    s->rc = evexec_pool_shutdown(s->pool, s->flags);
    return 0;
}

Test(pool, shutdown_wait_from_own_worker_is_edeadlk_and_changes_nothing)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1));
    struct self_shutdown s = {
        .pool = pool, .flags = EVEXEC_SHUTDOWN_WAIT | EVEXEC_SHUTDOWN_CANCEL_PENDING, .rc = -1,
    };
    struct evexec_cfuture *self = evexec_pool_submit(pool, shutdown_own_pool_task, &s, NULL);
    atomic_int runs = 0;
    struct evexec_cfuture *behind = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(self);
    cr_assert_not_null(behind);
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_result(self, HANG_BOUND_MS, NULL), 0);
    cr_assert_eq(s.rc, EDEADLK);
    /* Nothing changed: the task queued behind was not cancelled, and the
     * pool still takes work. */
    cr_assert_eq(evexec_cfuture_result(behind, HANG_BOUND_MS, NULL), 0);
    struct evexec_cfuture *later = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(later, "pool refused work after an EDEADLK shutdown");
    cr_assert_eq(evexec_cfuture_result(later, HANG_BOUND_MS, NULL), 0);
    cr_assert_eq(atomic_load(&runs), 2);
    evexec_cfuture_release(blocker);
    evexec_cfuture_release(self);
    evexec_cfuture_release(behind);
    evexec_cfuture_release(later);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, pool_free_null_is_a_noop)
{
    evexec_pool_free(NULL);
}

/* Holds the only worker until the pool is shut down, which it notices by a
 * probing submission failing with ESHUTDOWN. */
struct shutdown_probe {
    struct evexec_pool *pool;
    int probe_errno;
};

static int hold_until_shutdown_task(void *arg, void **result)
{
    (void)result;
    struct shutdown_probe *p = arg;
    for (long waited = 0; waited < HANG_BOUND_MS; waited++) {
        struct evexec_cfuture *probe = evexec_pool_submit(p->pool, noop_task, NULL, NULL);
        if (!probe) {
            p->probe_errno = errno;
            return 0;
        }
        evexec_cfuture_release(probe);
        sleep_ms(1);
    }
    return ETIMEDOUT;
}

Test(pool, pool_free_runs_queued_work_first)
{
    struct evexec_pool_config cfg = { .max_workers = 1 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct shutdown_probe probe = { .pool = pool };
    struct evexec_cfuture *holder = evexec_pool_submit(pool, hold_until_shutdown_task, &probe, NULL);
    cr_assert_not_null(holder);
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[20];
    for (int i = 0; i < 20; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    /* The holder keeps the tasks queued until pool_free shuts the pool down. */
    evexec_pool_free(pool);
    cr_assert_eq(probe.probe_errno, ESHUTDOWN);
    cr_assert_eq(evexec_cfuture_result(holder, 0, NULL), 0);
    cr_assert_eq(atomic_load(&runs), 20);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], 0, NULL), 0);
        evexec_cfuture_release(cfs[i]);
    }
    evexec_cfuture_release(holder);
}

/* ---- bad input ---------------------------------------------------------------- */

Test(pool, submit_with_null_pool_or_null_fn_is_einval)
{
    errno = 0;
    cr_assert_null(evexec_pool_submit(NULL, noop_task, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, NULL, NULL, NULL));
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(stats_of(pool).submitted, 0);
    evexec_pool_free(pool);
}

Test(pool, shutdown_with_unknown_flag_or_null_pool_is_einval)
{
    cr_assert_eq(evexec_pool_shutdown(NULL, 0), EINVAL);
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(evexec_pool_shutdown(pool, 0x80u), EINVAL);
    /* Rejected: the pool still takes work. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(pool, min_workers_above_max_workers_is_einval)
{
    struct evexec_pool_config cfg = { .max_workers = 2, .min_workers = 3 };
    errno = 0;
    cr_assert_null(evexec_pool_new(&cfg));
    cr_assert_eq(errno, EINVAL);
}

Test(pool, get_stats_with_null_argument_is_einval)
{
    struct evexec_pool_stats st;
    cr_assert_eq(evexec_pool_get_stats(NULL, &st), EINVAL);
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    cr_assert_eq(evexec_pool_get_stats(pool, NULL), EINVAL);
    evexec_pool_free(pool);
}

/* ---- what a worker thread looks like ---------------------------------------- */

struct probe_result {
    int unblocked_signal;   /* first asynchronous signal found unblocked, 0 none */
    int blocked_fault;      /* first fault signal found blocked, 0 none */
    char name[32];
    int nice;
    int nice_errno;
    int policy;             /* sched_getscheduler of the worker */
};

/* The synchronous fault signals: a worker must leave them unblocked. */
static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };

static bool is_fault_signal(int sig)
{
    for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]); i++)
        if (fault_signals[i] == sig)
            return true;
    return false;
}

static int probe_worker_task(void *arg, void **result)
{
    (void)result;
    struct probe_result *r = arg;
    sigset_t mask;
    sigemptyset(&mask);
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    r->unblocked_signal = 0;
    r->blocked_fault = 0;
    /* 1..31 are the standard signals; glibc keeps 32 and 33 for itself
     * (they cannot be blocked), the real-time ones start at SIGRTMIN. */
    for (int sig = 1; sig <= 31; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (is_fault_signal(sig)) {
            if (sigismember(&mask, sig) && !r->blocked_fault)
                r->blocked_fault = sig;
        } else if (!sigismember(&mask, sig) && !r->unblocked_signal) {
            r->unblocked_signal = sig;
        }
    }
    for (int sig = SIGRTMIN; sig <= SIGRTMAX && !r->unblocked_signal; sig++)
        if (!sigismember(&mask, sig))
            r->unblocked_signal = sig;
    memset(r->name, 0, sizeof(r->name));
    pthread_getname_np(pthread_self(), r->name, sizeof(r->name));
    errno = 0;
    r->nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    r->nice_errno = errno;
    r->policy = sched_getscheduler(0);
    return 0;
}

static struct probe_result probe_worker(const struct evexec_pool_config *cfg)
{
    struct probe_result r;
    memset(&r, 0, sizeof(r));
    struct evexec_pool *pool = evexec_pool_new(cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, probe_worker_task, &r, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    return r;
}

static int caller_nice(void)
{
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    cr_assert_eq(errno, 0);
    return nice;
}

Test(pool, workers_block_asynchronous_signals_but_not_fault_signals)
{
    /* Whatever the submitting thread's mask: first none blocked, then all. */
    sigset_t mask;
    sigemptyset(&mask);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    struct probe_result r = probe_worker(NULL);
    cr_assert_eq(r.unblocked_signal, 0, "signal %d is not blocked in a worker",
                 r.unblocked_signal);
    cr_assert_eq(r.blocked_fault, 0, "fault signal %d is blocked in a worker", r.blocked_fault);
    sigfillset(&mask);
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    r = probe_worker(NULL);
    cr_assert_eq(r.unblocked_signal, 0, "signal %d is not blocked in a worker",
                 r.unblocked_signal);
    cr_assert_eq(r.blocked_fault, 0, "fault signal %d is blocked in a worker", r.blocked_fault);
}

/* A task that raises SIGSEGV on its own thread, as a fault would: it must
 * reach the program's handler, not stay pending in a blocked mask. (A real
 * invalid access would do the same, but memcheck counts it as an error.) */
static int crashing_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    raise(SIGSEGV);
    return 0;
}

static void exit_42_on_fault(int sig)
{
    (void)sig;
    _exit(42);
}

Test(pool, a_crash_in_a_task_reaches_the_programs_sigsegv_handler)
{
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = exit_42_on_fault;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        struct evexec_pool *pool = evexec_pool_new(NULL);
        if (!pool)
            _exit(1);
        struct evexec_cfuture *cf = evexec_pool_submit(pool, crashing_task, NULL, NULL);
        if (!cf)
            _exit(2);
        evexec_cfuture_wait(cf, HANG_BOUND_MS);
        _exit(3); /* the crash never reached the handler */
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the child died of signal %d, not in its handler",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 42, "the child exited with %d", WEXITSTATUS(status));
}

Test(pool, worker_thread_name_starts_with_configured_prefix)
{
    struct evexec_pool_config cfg = { .thread_name = "crunch" };
    struct probe_result r = probe_worker(&cfg);
    cr_assert_eq(strncmp(r.name, "crunch", 6), 0, "worker is named \"%s\"", r.name);
}

Test(pool, worker_thread_name_defaults_to_evexec)
{
    struct probe_result r = probe_worker(NULL);
    cr_assert_eq(strncmp(r.name, "evexec", 6), 0, "worker is named \"%s\"", r.name);
}

Test(pool, default_worker_nice_lowers_worker_priority)
{
    int mine = caller_nice();
    if (mine + EVEXEC_DEFAULT_WORKER_NICE > 19)
        cr_skip_test("the test runs at nice %d: no room to lower a worker", mine);
    struct probe_result r = probe_worker(NULL);
    cr_assert_eq(r.nice_errno, 0);
    cr_assert_gt(r.nice, mine);
    cr_assert_eq(r.nice, mine + EVEXEC_DEFAULT_WORKER_NICE);
}

Test(pool, configured_worker_nice_is_added_to_the_callers)
{
    int mine = caller_nice();
    if (mine + 2 > 19)
        cr_skip_test("the test runs at nice %d: no room to lower a worker", mine);
    struct evexec_pool_config cfg = { .worker_nice = 2 };
    struct probe_result r = probe_worker(&cfg);
    cr_assert_eq(r.nice_errno, 0);
    cr_assert_eq(r.nice, mine + 2);
}

Test(pool, keep_priority_flag_keeps_the_callers_priority)
{
    int mine = caller_nice();
    struct evexec_pool_config cfg = { .flags = EVEXEC_POOL_KEEP_PRIORITY };
    struct probe_result r = probe_worker(&cfg);
    cr_assert_eq(r.nice_errno, 0);
    cr_assert_eq(r.nice, mine);
}

Test(pool, sched_idle_flag_runs_workers_under_sched_idle)
{
    struct evexec_pool_config cfg = { .flags = EVEXEC_POOL_SCHED_IDLE };
    struct probe_result r = probe_worker(&cfg);
    cr_assert_eq(r.policy, SCHED_IDLE, "worker policy %d", r.policy);
    /* and a pool without the flag keeps its workers SCHED_OTHER */
    struct evexec_pool_config plain = {0};
    r = probe_worker(&plain);
    cr_assert_eq(r.policy, SCHED_OTHER, "worker policy %d", r.policy);
}

Test(pool, no_spin_pool_runs_concurrent_work)
{
    struct evexec_pool_config cfg = { .max_workers = 2, .flags = EVEXEC_POOL_NO_SPIN };
    struct load load = { .pool = evexec_pool_new(&cfg) };
    cr_assert_not_null(load.pool);
    struct load_submitter_arg args[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        args[i] = (struct load_submitter_arg){ .load = &load, .count = 200 };
        cr_assert_eq(pthread_create(&threads[i], NULL, load_submitter, &args[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(args[i].failures, 0);
    }
    evexec_pool_free(load.pool);
    cr_assert_eq(atomic_load(&load.done), 400);
    cr_assert_leq(atomic_load(&load.max_running), 2);
}

/* ---- who takes a task: workers in done callbacks, workers leaving ---------- */

struct callback_submit {
    struct evexec_pool *pool;
    int rc;                 /* what the callback's own submission got */
    atomic_bool done;
};

/* A done callback on the worker that submits to the same pool and waits. */
static void submit_and_wait_callback(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    struct callback_submit *c = arg;
    struct evexec_cfuture *inner = evexec_pool_submit(c->pool, noop_task, NULL, NULL);
    c->rc = inner ? evexec_cfuture_result(inner, HANG_BOUND_MS / 2, NULL) : errno;
    evexec_cfuture_release(inner);
    atomic_store(&c->done, true);
}

Test(pool, a_done_callback_on_the_worker_can_submit_to_its_own_pool_and_wait)
{
    struct evexec_pool_config cfg = { .max_workers = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(cf);
    cr_assert(gate_wait_arrived(&g, 1));
    /* Registered while the task runs: the worker runs it as it finishes. */
    struct callback_submit c = { .pool = pool, .rc = -1 };
    cr_assert_eq(evexec_cfuture_add_done_callback(cf, submit_and_wait_callback, &c), 0);
    gate_open(&g);
    cr_assert_eq(evexec_cfuture_wait(cf, HANG_BOUND_MS), 0);
    for (long waited = 0; !atomic_load(&c.done) && waited < HANG_BOUND_MS; waited += 2)
        sleep_ms(2);
    cr_assert(atomic_load(&c.done), "the callback never returned");
    cr_assert_eq(c.rc, 0, "the callback's task got %s", evexec_strerror(c.rc));
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

static void slow_callback(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    gate_pass(arg);
}

Test(pool, a_submission_while_a_worker_runs_a_slow_callback_goes_to_the_idle_worker)
{
    /* No spinning: the idle worker parks, so only a wakeup reaches it. */
    struct evexec_pool_config cfg = { .max_workers = 2, .flags = EVEXEC_POOL_NO_SPIN };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate ga, gb, in_callback;
    gate_init(&ga);
    gate_init(&gb);
    gate_init(&in_callback);
    struct evexec_cfuture *a = evexec_pool_submit(pool, blocking_task, &ga, NULL);
    cr_assert_not_null(a);
    cr_assert(gate_wait_arrived(&ga, 1));
    struct evexec_cfuture *b = evexec_pool_submit(pool, blocking_task, &gb, NULL);
    cr_assert_not_null(b);
    cr_assert(gate_wait_arrived(&gb, 1));
    cr_assert_eq(evexec_cfuture_add_done_callback(a, slow_callback, &in_callback), 0);
    gate_open(&gb); /* b's worker goes idle */
    wait_ok(b);
    for (long waited = 0; stats_of(pool).idle != 1 && waited < HANG_BOUND_MS; waited++)
        sleep_ms(1);
    cr_assert_eq(stats_of(pool).idle, 1);
    gate_open(&ga); /* a's worker finishes a and stays in its callback */
    cr_assert(gate_wait_arrived(&in_callback, 1));
    struct evexec_cfuture *c = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(c);
    cr_assert_eq(evexec_cfuture_wait(c, HANG_BOUND_MS / 2), 0,
                 "the task waited for the worker in the callback");
    cr_assert_eq(stats_of(pool).threads_started, 2);
    gate_open(&in_callback);
    evexec_cfuture_release(a);
    evexec_cfuture_release(b);
    evexec_cfuture_release(c);
    evexec_pool_free(pool);
    gate_destroy(&ga);
    gate_destroy(&gb);
    gate_destroy(&in_callback);
}

static void gated_exit(void *ctx)
{
    gate_pass(ctx);
}

Test(pool, a_task_submitted_while_the_only_worker_exits_runs_once_it_has_left)
{
    struct gate in_exit;
    gate_init(&in_exit);
    struct evexec_pool_config cfg = {
        .max_workers = 1, .idle_timeout_ms = 20,
        .thread_exit = gated_exit, .thread_ctx = &in_exit,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    /* The worker idles out and is held in thread_exit: it will not take
     * anything, and it still counts against max_workers. */
    cr_assert(gate_wait_arrived(&in_exit, 1));
    atomic_int runs = 0;
    cf = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(cf);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_leq(st.threads, 1, "%u threads alive, max_workers is 1", st.threads);
    cr_assert_eq(st.queued, 1);
    gate_open(&in_exit); /* as it leaves, it makes the worker for the task */
    wait_ok(cf);
    cr_assert_eq(evexec_cfuture_result(cf, 0, NULL), 0);
    cr_assert_eq(atomic_load(&runs), 1);
    cr_assert_eq(stats_of(pool).threads_started, 2);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    gate_destroy(&in_exit);
}

/* ---- statistics balance on every path -------------------------------------- */

static int failing_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return EIO;
}

Test(pool, stats_balance_while_tasks_run_and_after_they_complete)
{
    struct evexec_pool_config cfg = { .max_workers = 2 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *held[2], *more[4];
    for (int i = 0; i < 2; i++)
        cr_assert_not_null(held[i] = evexec_pool_submit(pool, blocking_task, &g, NULL));
    cr_assert(gate_wait_arrived(&g, 2));
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(more[i] = evexec_pool_submit(pool, i % 2 ? failing_task : noop_task,
                                                        NULL, NULL));
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.running, 2);
    cr_assert_eq(st.queued, 4);
    assert_balanced(&st, "two running, four queued");
    gate_open(&g);
    for (int i = 0; i < 4; i++)
        wait_ok(more[i]);
    for (int i = 0; i < 2; i++)
        wait_ok(held[i]);
    st = stats_of(pool);
    assert_balanced(&st, "all done");
    cr_assert_eq(st.completed, 6, "tasks that returned an error count as completed");
    cr_assert_eq(st.running, 0);
    cr_assert_eq(st.failed, 0);
    for (int i = 0; i < 2; i++)
        evexec_cfuture_release(held[i]);
    for (int i = 0; i < 4; i++)
        evexec_cfuture_release(more[i]);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, stats_balance_with_cancelled_tasks_before_and_after_they_leave_the_queue)
{
    struct held_pool h;
    held_pool_init(&h, 4);
    cr_assert(evexec_cfuture_cancel(h.queued[0]));
    cr_assert(evexec_cfuture_cancel(h.queued[2]));
    /* Cancelled but still queued: counted when a worker drops them. */
    struct evexec_pool_stats st = stats_of(h.pool);
    assert_balanced(&st, "cancelled, still queued");
    cr_assert_eq(st.queued, 4);
    gate_open(&h.gate);
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    st = stats_of(h.pool);
    assert_balanced(&st, "joined");
    cr_assert_eq(st.cancelled, 2);
    cr_assert_eq(st.completed, 3);
    held_pool_release_futures(&h);
    evexec_pool_free(h.pool);
    gate_destroy(&h.gate);
}

Test(pool, stats_balance_after_shutdown_cancels_pending_tasks)
{
    struct held_pool h;
    held_pool_init(&h, 5);
    cr_assert(evexec_cfuture_cancel(h.queued[1])); /* cancelled twice over */
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    struct evexec_pool_stats st = stats_of(h.pool);
    assert_balanced(&st, "pending cancelled, one running");
    cr_assert_eq(st.cancelled, 5);
    cr_assert_eq(st.running, 1);
    gate_open(&h.gate);
    cr_assert_eq(evexec_pool_shutdown(h.pool, EVEXEC_SHUTDOWN_WAIT), 0);
    st = stats_of(h.pool);
    assert_balanced(&st, "joined");
    cr_assert_eq(st.completed, 1);
    held_pool_release_futures(&h);
    evexec_pool_free(h.pool);
    gate_destroy(&h.gate);
}

Test(pool, stats_balance_when_a_broken_pool_empties_its_queue)
{
    struct gate init_gate;
    gate_init(&init_gate);
    struct hook_counts hooks = { .fail_from = 1, .init_gate = &init_gate };
    struct evexec_pool_config cfg = {
        .max_workers = 1,
        .thread_init = counting_init, .thread_ctx = &hooks,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cfs[6];
    for (int i = 0; i < 6; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, noop_task, NULL, NULL));
    cr_assert(gate_wait_arrived(&init_gate, 1)); /* all six queued */
    cr_assert(evexec_cfuture_cancel(cfs[2]));
    cr_assert(evexec_cfuture_cancel(cfs[5]));
    gate_open(&init_gate);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL),
                     i == 2 || i == 5 ? ECANCELED : EVEXEC_EBROKEN);
    struct evexec_pool_stats st = stats_of(pool);
    assert_balanced(&st, "broken");
    cr_assert_eq(st.cancelled, 2, "tasks cancelled in a broken pool's queue are counted");
    cr_assert_eq(st.failed, 4);
    cr_assert_eq(st.queued, 0);
    for (int i = 0; i < 6; i++)
        evexec_cfuture_release(cfs[i]);
    evexec_pool_free(pool);
    gate_destroy(&init_gate);
}

/* ---- concurrent shutdown(WAIT) ---------------------------------------------- */

/* Set in thread_init, its destructor runs after the worker's start routine
 * returned: the last thing a worker thread does before it can be joined.
 * The destructor takes its time, so a shutdown(WAIT) that returns before
 * the join sees it missing. */
static pthread_key_t gone_key;
static pthread_once_t gone_once = PTHREAD_ONCE_INIT;
static atomic_int threads_gone;

static void note_thread_gone(void *p)
{
    (void)p;
    sleep_ms(5);
    atomic_fetch_add(&threads_gone, 1);
}

static void make_gone_key(void)
{
    pthread_key_create(&gone_key, note_thread_gone);
}

static int mark_thread_init(void *ctx)
{
    (void)ctx;
    pthread_setspecific(gone_key, &gone_key);
    return 0;
}

struct waiter {
    struct evexec_pool *pool;
    struct gate *start;
    int rc;
    int gone_seen;           /* threads_gone when its shutdown returned */
};

static void *shutdown_waiter(void *arg)
{
    struct waiter *w = arg;
    gate_pass(w->start);
    w->rc = evexec_pool_shutdown(w->pool, EVEXEC_SHUTDOWN_WAIT);
    w->gone_seen = atomic_load(&threads_gone);
    return NULL;
}

Test(pool, concurrent_shutdown_wait_calls_all_return_after_every_worker_is_joined)
{
    pthread_once(&gone_once, make_gone_key);
    for (int round = 0; round < 20; round++) {
        atomic_store(&threads_gone, 0);
        struct evexec_pool_config cfg = { .max_workers = 3, .thread_init = mark_thread_init };
        struct evexec_pool *pool = evexec_pool_new(&cfg);
        cr_assert_not_null(pool);
        struct gate work, start;
        gate_init(&work);
        gate_init(&start);
        struct evexec_cfuture *cfs[3];
        for (int i = 0; i < 3; i++)
            cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, blocking_task, &work, NULL));
        cr_assert(gate_wait_arrived(&work, 3));
        struct waiter w[3];
        pthread_t t[3];
        for (int i = 0; i < 3; i++) {
            w[i] = (struct waiter){ .pool = pool, .start = &start, .rc = -1 };
            cr_assert_eq(pthread_create(&t[i], NULL, shutdown_waiter, &w[i]), 0);
        }
        cr_assert(gate_wait_arrived(&start, 3));
        gate_open(&start);
        sleep_ms(round % 3); /* the waiters get into shutdown first, or not */
        gate_open(&work);
        for (int i = 0; i < 3; i++) {
            pthread_join(t[i], NULL);
            cr_assert_eq(w[i].rc, 0);
            cr_assert_eq(w[i].gone_seen, 3, "round %d: a shutdown(WAIT) returned with %d of "
                         "3 workers gone", round, w[i].gone_seen);
        }
        for (int i = 0; i < 3; i++)
            evexec_cfuture_release(cfs[i]);
        evexec_pool_free(pool);
        gate_destroy(&work);
        gate_destroy(&start);
    }
}

/* ---- room to grow ------------------------------------------------------------ */

Test(pool, nonzero_reserved_config_field_is_einval)
{
    size_t n = sizeof(((struct evexec_pool_config *)0)->reserved) /
               sizeof(((struct evexec_pool_config *)0)->reserved[0]);
    for (size_t i = 0; i < n; i++) {
        struct evexec_pool_config cfg = {0};
        cfg.reserved[i] = 1;
        errno = 0;
        cr_assert_null(evexec_pool_new(&cfg), "reserved[%zu] set was accepted", i);
        cr_assert_eq(errno, EINVAL);
    }
}

Test(pool, stats_reserved_fields_are_zero)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct evexec_pool_stats st = stats_of(pool); /* stats_of fills with 0xff first */
    for (size_t i = 0; i < sizeof(st.reserved) / sizeof(st.reserved[0]); i++)
        cr_assert_eq(st.reserved[i], 0);
    evexec_pool_free(pool);
}

/* ---- per-worker state and index --------------------------------------------- */

struct seen_worker {
    unsigned index;
    void *state;
    unsigned state_value;   /* what the state held then, if it is an index */
};

static void record_worker(struct seen_worker *s)
{
    s->index = evexec_worker_index();
    s->state = evexec_worker_state();
    s->state_value = s->state ? *(unsigned *)s->state : UINT_MAX;
}

struct index_probe {
    struct gate *gate;
    struct seen_worker seen;
};

static int record_worker_task(void *arg, void **result)
{
    (void)result;
    struct index_probe *p = arg;
    record_worker(&p->seen);
    if (p->gate)
        gate_pass(p->gate);
    return 0;
}

static void check_indices(struct evexec_pool *pool, unsigned n)
{
    struct gate g;
    gate_init(&g);
    struct index_probe probes[8];
    struct evexec_cfuture *cfs[8];
    for (unsigned i = 0; i < n; i++) {
        probes[i] = (struct index_probe){ .gate = &g };
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, record_worker_task, &probes[i], NULL));
    }
    cr_assert(gate_wait_arrived(&g, n)); /* n workers at once: n distinct ones */
    gate_open(&g);
    bool seen[8] = {false};
    for (unsigned i = 0; i < n; i++) {
        wait_ok(cfs[i]);
        evexec_cfuture_release(cfs[i]);
        cr_assert_lt(probes[i].seen.index, n, "index %u with %u workers", probes[i].seen.index, n);
        cr_assert(!seen[probes[i].seen.index], "index %u twice", probes[i].seen.index);
        seen[probes[i].seen.index] = true;
    }
    gate_destroy(&g);
}

Test(pool, worker_index_is_the_lowest_free_one_and_is_reused_after_workers_exit)
{
    struct evexec_pool_config cfg = { .max_workers = 4, .idle_timeout_ms = 20 };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    check_indices(pool, 4); /* 0..3 */
    cr_assert_eq(wait_threads(pool, 0).threads, 0, "the workers never idled out");
    check_indices(pool, 2); /* 0 and 1 again, not 4 and 5 */
    cr_assert_eq(stats_of(pool).threads_started, 6);
    evexec_pool_free(pool);
}

struct state_hooks {
    atomic_int made, closed, bad_exit;
};

static int open_state(void *ctx)
{
    struct state_hooks *h = ctx;
    unsigned *state = malloc(sizeof(*state));
    *state = evexec_worker_index();
    atomic_fetch_add(&h->made, 1);
    evexec_worker_set_state(state);
    return 0;
}

static void close_state(void *ctx)
{
    struct state_hooks *h = ctx;
    unsigned *state = evexec_worker_state();
    if (!state || *state != evexec_worker_index())
        atomic_fetch_add(&h->bad_exit, 1);
    free(state);
    atomic_fetch_add(&h->closed, 1);
}

static void record_worker_callback(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    record_worker(arg);
}

Test(pool, worker_state_set_in_thread_init_reaches_tasks_callbacks_and_thread_exit)
{
    struct state_hooks h = {0};
    struct evexec_pool_config cfg = {
        .max_workers = 2, .thread_init = open_state, .thread_exit = close_state,
        .thread_ctx = &h,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct index_probe probes[2] = { { .gate = &g }, { .gate = &g } };
    struct seen_worker in_callback[2];
    struct evexec_cfuture *cfs[2];
    for (int i = 0; i < 2; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, record_worker_task, &probes[i], NULL));
    cr_assert(gate_wait_arrived(&g, 2));
    for (int i = 0; i < 2; i++)
        cr_assert_eq(evexec_cfuture_add_done_callback(cfs[i], record_worker_callback,
                                                      &in_callback[i]), 0);
    gate_open(&g);
    for (int i = 0; i < 2; i++)
        wait_ok(cfs[i]);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_not_null(probes[i].seen.state);
        cr_assert_eq(in_callback[i].state_value, probes[i].seen.index,
                     "a task saw another worker's state");
        cr_assert_eq(in_callback[i].index, probes[i].seen.index);
        cr_assert_eq(in_callback[i].state, probes[i].seen.state);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_neq(probes[0].seen.state, probes[1].seen.state);
    cr_assert_eq(atomic_load(&h.made), 2);
    cr_assert_eq(atomic_load(&h.closed), 2);
    cr_assert_eq(atomic_load(&h.bad_exit), 0, "thread_exit did not get its state back");
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, outside_a_worker_state_is_null_index_is_uint_max_and_set_state_does_nothing)
{
    int x;
    evexec_worker_set_state(&x);
    cr_assert_null(evexec_worker_state());
    cr_assert_eq(evexec_worker_index(), UINT_MAX);
}

/* ---- EVEXEC_POOL_INIT_RETRY ---------------------------------------------------- */

struct flaky_init {
    atomic_int calls;
    int fail_first;          /* the first fail_first calls fail; -1 all of them */
    int code;
    atomic_bool heal;        /* from now on every call succeeds */
    int fail_after;          /* if > 0: calls after the first fail_after fail */
};

static int flaky_thread_init(void *ctx)
{
    struct flaky_init *f = ctx;
    int n = atomic_fetch_add(&f->calls, 1) + 1;
    if (atomic_load(&f->heal))
        return 0;
    if (f->fail_after > 0)
        return n > f->fail_after ? f->code : 0;
    return f->fail_first < 0 || n <= f->fail_first ? f->code : 0;
}

Test(pool, init_retry_a_hook_failing_the_first_3_times_delays_the_work_but_never_fails_it)
{
    struct flaky_init f = { .fail_first = 3, .code = EBUSY };
    struct evexec_pool_config cfg = {
        .max_workers = 2, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[5];
    for (int i = 0; i < 5; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL), 0);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&runs), 5);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.init_failures, 3);
    cr_assert_eq(st.last_init_error, EBUSY);
    cr_assert_eq(st.failed, 0);
    assert_balanced(&st, "after retries");
    /* Not broken: it still takes work. */
    struct evexec_cfuture *cf = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(cf);
    wait_ok(cf);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(pool, init_retry_queued_work_fails_with_the_hooks_error_only_when_no_worker_can_initialise)
{
    struct flaky_init f = { .fail_first = -1, .code = EIO };
    struct evexec_pool_config cfg = {
        .max_workers = 2, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[3];
    for (int i = 0; i < 3; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL), EIO);
        evexec_cfuture_release(cfs[i]);
    }
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_geq(st.init_failures, EVEXEC_POOL_INIT_RETRY_BUDGET);
    cr_assert_eq(st.last_init_error, EIO);
    cr_assert_eq(st.failed, 3);
    assert_balanced(&st, "budget spent");
    /* The pool is not broken: once the hook works again, so does the pool. */
    atomic_store(&f.heal, true);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(cf, "an init-retry pool refused work: %s", evexec_strerror(errno));
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&runs), 1);
    evexec_pool_free(pool);
}

Test(pool, init_retry_a_hook_returning_a_negative_value_fails_the_queued_work_with_evexec_ebroken)
{
    struct flaky_init f = { .fail_first = -1, .code = -1 };
    struct evexec_pool_config cfg = {
        .max_workers = 1, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    atomic_int runs = 0;
    struct evexec_cfuture *cf = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(cf);
    /* A negative value is no error code to hand the task. */
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
    evexec_cfuture_release(cf);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_geq(st.init_failures, EVEXEC_POOL_INIT_RETRY_BUDGET);
    cr_assert_eq(st.last_init_error, -1);
    cr_assert_eq(st.failed, 1);
    assert_balanced(&st, "budget spent");
    /* EVEXEC_EBROKEN here does not mean broken: the pool takes work again. */
    atomic_store(&f.heal, true);
    cf = evexec_pool_submit(pool, count_task, &runs, NULL);
    cr_assert_not_null(cf, "an init-retry pool refused work: %s", evexec_strerror(errno));
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), 0);
    evexec_cfuture_release(cf);
    cr_assert_eq(atomic_load(&runs), 1);
    evexec_pool_free(pool);
}

Test(pool, init_retry_work_waits_for_the_initialised_worker_while_new_ones_fail)
{
    struct flaky_init f = { .fail_after = 1, .code = EBUSY }; /* only the first succeeds */
    struct evexec_pool_config cfg = {
        .max_workers = 3, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    /* New workers fail their init, more than the budget's worth. */
    for (long waited = 0; atomic_load(&f.calls) < EVEXEC_POOL_INIT_RETRY_BUDGET + 3 &&
                          waited < HANG_BOUND_MS; waited += 5)
        sleep_ms(5);
    cr_assert_geq(atomic_load(&f.calls), EVEXEC_POOL_INIT_RETRY_BUDGET + 3);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(evexec_cfuture_state(cfs[i]), EVEXEC_PENDING,
                     "a task failed although a worker had initialised");
    gate_open(&g);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL), 0);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&runs), 4);
    wait_ok(blocker);
    evexec_cfuture_release(blocker);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, init_retry_a_shutdown_keeps_the_backoff_while_an_initialised_worker_is_busy)
{
    struct flaky_init f = { .fail_after = 1, .code = EBUSY }; /* only the first succeeds */
    struct evexec_pool_config cfg = {
        .max_workers = 3, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct gate g;
    gate_init(&g);
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocking_task, &g, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&g, 1));
    atomic_int runs = 0;
    struct evexec_cfuture *cfs[4];
    for (int i = 0; i < 4; i++)
        cr_assert_not_null(cfs[i] = evexec_pool_submit(pool, count_task, &runs, NULL));
    for (long waited = 0; atomic_load(&f.calls) < 3 && waited < HANG_BOUND_MS; waited += 5)
        sleep_ms(5);
    cr_assert_geq(atomic_load(&f.calls), 3);
    /* The queue is the busy worker's: a shutdown must not turn the retries
     * into a loop of threads made and failed back to back. The backoff
     * (4 ms and more by now, doubling) allows a handful of inits in 200 ms;
     * a slow machine makes fewer, never more. It used to be thousands. */
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    int before = atomic_load(&f.calls);
    sleep_ms(200);
    int during = atomic_load(&f.calls) - before;
    cr_assert_lt(during, 50, "%d inits in 200 ms of shutdown", during);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(evexec_cfuture_state(cfs[i]), EVEXEC_PENDING);
    gate_open(&g);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(evexec_cfuture_result(cfs[i], HANG_BOUND_MS, NULL), 0);
        evexec_cfuture_release(cfs[i]);
    }
    cr_assert_eq(atomic_load(&runs), 4);
    /* The queue ran dry: the backoff's sleepers leave at once. */
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(stats_of(pool).threads, 0);
    wait_ok(blocker);
    evexec_cfuture_release(blocker);
    evexec_pool_free(pool);
    gate_destroy(&g);
}

Test(pool, init_retry_shutdown_wait_ends_the_retries)
{
    struct flaky_init f = { .fail_first = -1, .code = EIO };
    struct evexec_pool_config cfg = {
        .max_workers = 1, .flags = EVEXEC_POOL_INIT_RETRY,
        .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EIO);
    evexec_cfuture_release(cf);
    cf = evexec_pool_submit(pool, noop_task, NULL, NULL); /* retries go on, with backoff */
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING |
                                                EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert(evexec_cfuture_wait(cf, 0) == 0, "shutdown(WAIT) left a task pending");
    cr_assert_eq(stats_of(pool).threads, 0);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
}

Test(pool, without_init_retry_a_failed_init_is_counted_and_breaks_the_pool)
{
    struct flaky_init f = { .fail_first = 1, .code = ENOENT };
    struct evexec_pool_config cfg = {
        .max_workers = 2, .thread_init = flaky_thread_init, .thread_ctx = &f,
    };
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, noop_task, NULL, NULL);
    cr_assert_not_null(cf);
    cr_assert_eq(evexec_cfuture_result(cf, HANG_BOUND_MS, NULL), EVEXEC_EBROKEN);
    evexec_cfuture_release(cf);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.init_failures, 1);
    cr_assert_eq(st.last_init_error, ENOENT);
    errno = 0;
    cr_assert_null(evexec_pool_submit(pool, noop_task, NULL, NULL));
    cr_assert_eq(errno, EVEXEC_EBROKEN);
    evexec_pool_free(pool);
}
