/*
 * test_loop.c -- the loop bridge (evexec_loop): one bridge per event_base,
 * call_soon / call_soon_threadsafe ordering and wakeup coalescing, passes
 * that never starve I/O, liveness of event_base_dispatch (evexec_loop_new(3)), and
 * teardown with work still queued or in flight.
 *
 * Every dispatch is bounded by a watchdog thread that, after 20 s, posts a
 * loopbreak through the bridge itself and records the failure, so a bug
 * fails a test instead of hanging it (Criterion's timeout is the outer
 * bound). Worker and producer threads only record; the main thread asserts.
 */
#include "config.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>

#include "evexec.h"

#define TESTUTIL_LOOP_FIXTURE /* base, loop, make_loop, free_loop, dispatch */
#include "testutil.h"

/* Under AddressSanitizer a leaking test fails the suite (testutil.h). */
TestSuite(loop, .fini = fail_on_leaks);

static struct evexec_loop_stats stats_now(void)
{
    struct evexec_loop_stats st;
    cr_assert_eq(evexec_loop_get_stats(loop, &st), 0);
    return st;
}

/* A gate that blocks worker threads until the test opens it (testutil.h). */
static struct gate gate = GATE_INITIALIZER;

/* ---- results whose frees are counted ----------------------------------- */

static atomic_int results_freed;

static void free_counted(void *result)
{
    atomic_fetch_add(&results_freed, 1);
    free(result);
}

static atomic_int task_runs;
static atomic_bool task_saw_cancel;

/* Work: reach the gate, wait for it to open, then produce a result. */
static int gated_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&task_runs, 1);
    gate_pass(&gate);
    atomic_store(&task_saw_cancel, evexec_cancel_requested());
    *result = malloc(sizeof(int));
    return 0;
}

static int quick_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&task_runs, 1);
    *result = malloc(sizeof(int));
    return 0;
}

static struct evexec_pool *one_worker_pool(void)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    return pool;
}

/* ---- recording callbacks ------------------------------------------------ */

#define MAX_RECORD 256
static int record[MAX_RECORD];
static int nrecord;
static bool in_call; /* set around a call that must not run callbacks */
static bool ran_inside_call;

static void record_cb(void *arg)
{
    if (in_call)
        ran_inside_call = true;
    if (nrecord < MAX_RECORD)
        record[nrecord] = (int)(intptr_t)arg;
    nrecord++;
}

static void never_cb(void *arg)
{
    (void)arg;
    nrecord += 1000;
}

/* ======================================================================== */

Test(loop, new_with_null_base_fails_with_einval)
{
    errno = 0;
    cr_assert_null(evexec_loop_new(NULL));
    cr_assert_eq(errno, EINVAL);
}

Test(loop, second_loop_on_same_base_fails_with_eexist)
{
    make_loop();
    errno = 0;
    cr_assert_null(evexec_loop_new(base));
    cr_assert_eq(errno, EEXIST);
    free_loop();
}

Test(loop, new_loop_on_same_base_works_after_free)
{
    make_loop();
    evexec_loop_free(loop);
    loop = evexec_loop_new(base);
    cr_assert_not_null(loop, "%s", strerror(errno));
    cr_assert_eq(evexec_loop_base(loop), base);
    nrecord = 0;
    cr_assert_eq(evexec_call_soon(loop, record_cb, (void *)7), 0);
    dispatch();
    cr_assert_eq(nrecord, 1);
    free_loop();
}

Test(loop, loops_on_different_bases_coexist)
{
    make_loop();
    struct event_base *base2 = event_base_new();
    struct evexec_loop *loop2 = evexec_loop_new(base2);
    cr_assert_not_null(loop2);
    cr_assert_eq(evexec_loop_base(loop2), base2);
    evexec_loop_free(loop2);
    event_base_free(base2);
    free_loop();
}

Test(loop, free_null_is_a_noop)
{
    evexec_loop_free(NULL);
}

Test(loop, call_soon_rejects_null_loop_or_callback)
{
    make_loop();
    cr_assert_eq(evexec_call_soon(NULL, record_cb, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon(loop, NULL, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon_threadsafe(NULL, record_cb, NULL), EINVAL);
    cr_assert_eq(evexec_call_soon_threadsafe(loop, NULL, NULL), EINVAL);
    free_loop();
}

Test(loop, call_soon_runs_callbacks_in_fifo_order)
{
    make_loop();
    nrecord = 0;
    for (int i = 0; i < 100; i++)
        cr_assert_eq(evexec_call_soon(loop, record_cb, (void *)(intptr_t)i), 0);
    dispatch();
    cr_assert_eq(nrecord, 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(record[i], i, "position %d ran callback %d", i, record[i]);
    free_loop();
}

Test(loop, call_soon_never_runs_the_callback_inside_the_call)
{
    make_loop();
    nrecord = 0;
    ran_inside_call = false;
    in_call = true;
    cr_assert_eq(evexec_call_soon(loop, record_cb, NULL), 0);
    cr_assert_eq(evexec_call_soon_threadsafe(loop, record_cb, NULL), 0);
    in_call = false;
    cr_assert_eq(nrecord, 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert(!ran_inside_call);
    free_loop();
}

/* From inside a callback too: the callback queued runs after it returns. */
static void queue_from_inside_cb(void *arg)
{
    (void)arg;
    in_call = true;
    evexec_call_soon(loop, record_cb, (void *)1);
    in_call = false;
    if (nrecord < MAX_RECORD)
        record[nrecord] = 0;
    nrecord++;
}

Test(loop, call_soon_from_a_callback_runs_after_it_returns)
{
    make_loop();
    nrecord = 0;
    ran_inside_call = false;
    cr_assert_eq(evexec_call_soon(loop, queue_from_inside_cb, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 2);
    cr_assert(!ran_inside_call);
    cr_assert_eq(record[0], 0);
    cr_assert_eq(record[1], 1);
    free_loop();
}

Test(loop, call_soon_on_loop_thread_makes_no_wakeup_write)
{
    make_loop();
    nrecord = 0;
    uint64_t before = stats_now().wakeup_writes;
    for (int i = 0; i < 50; i++)
        cr_assert_eq(evexec_call_soon(loop, record_cb, NULL), 0);
    /* call_soon_threadsafe on the loop thread is call_soon: no write either. */
    for (int i = 0; i < 50; i++)
        cr_assert_eq(evexec_call_soon_threadsafe(loop, record_cb, NULL), 0);
    dispatch();
    cr_assert_eq(nrecord, 100);
    struct evexec_loop_stats after = stats_now();
    cr_assert_eq(after.wakeup_writes, before, "%llu wakeup writes for loop-thread calls",
                 (unsigned long long)(after.wakeup_writes - before));
    cr_assert_geq(after.callbacks_run, 100);
    free_loop();
}

/* Interleave both kinds of call, from outside and from inside a drain. */
static void interleave_from_cb(void *arg)
{
    int start = (int)(intptr_t)arg;
    for (int i = start; i < start + 50; i++) {
        if (i % 2)
            evexec_call_soon(loop, record_cb, (void *)(intptr_t)i);
        else
            evexec_call_soon_threadsafe(loop, record_cb, (void *)(intptr_t)i);
    }
}

Test(loop, call_soon_threadsafe_on_loop_thread_keeps_order_with_call_soon)
{
    make_loop();
    nrecord = 0;
    for (int i = 0; i < 50; i++) {
        int rc = (i % 3 == 0) ? evexec_call_soon_threadsafe(loop, record_cb, (void *)(intptr_t)i)
                              : evexec_call_soon(loop, record_cb, (void *)(intptr_t)i);
        cr_assert_eq(rc, 0);
    }
    cr_assert_eq(evexec_call_soon(loop, interleave_from_cb, (void *)50), 0);
    dispatch();
    cr_assert_eq(nrecord, 100);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(record[i], i, "position %d ran callback %d", i, record[i]);
    free_loop();
}

/* ---- foreign producers -------------------------------------------------- */

#define PRODUCERS 4
static long per_producer;           /* posts per producer */
static int active_producers;
static long expected_seq[PRODUCERS];
static long order_violations;
static long total_arrived;
static atomic_long post_failures;

static void producer_cb(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    int id = (int)(v >> 32);
    long seq = (long)(v & 0xffffffffu);
    if (seq != expected_seq[id])
        order_violations++;
    expected_seq[id] = seq + 1;
    if (++total_arrived == active_producers * per_producer)
        evexec_loop_unref(loop); /* all arrived: let dispatch return */
}

static void *producer_main(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (long seq = 0; seq < per_producer; seq++)
        if (evexec_call_soon_threadsafe(loop, producer_cb, (void *)((id << 32) | (uintptr_t)seq)))
            atomic_fetch_add(&post_failures, 1);
    return NULL;
}

static void run_producers(int nproducers, long posts_each)
{
    per_producer = posts_each;
    active_producers = nproducers;
    memset(expected_seq, 0, sizeof(expected_seq));
    order_violations = 0;
    total_arrived = 0;
    atomic_store(&post_failures, 0);
    evexec_loop_ref(loop);
    pthread_t threads[PRODUCERS];
    for (int i = 0; i < nproducers; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, producer_main, (void *)(uintptr_t)i), 0);
    dispatch();
    for (int i = 0; i < nproducers; i++)
        pthread_join(threads[i], NULL);
}

Test(loop, foreign_producers_each_keep_fifo_order, .timeout = 90)
{
    make_loop();
    long posts = RUNNING_ON_VALGRIND ? 5000 : 100000;
    run_producers(PRODUCERS, posts);
    cr_assert_eq(atomic_load(&post_failures), 0);
    cr_assert_eq(total_arrived, PRODUCERS * posts);
    cr_assert_eq(order_violations, 0, "%ld callbacks out of producer order", order_violations);
    for (int i = 0; i < PRODUCERS; i++)
        cr_assert_eq(expected_seq[i], posts);
    struct evexec_loop_stats st = stats_now();
    cr_assert_eq(st.foreign_posts, (uint64_t)(PRODUCERS * posts));
    free_loop();
}

Test(loop, foreign_flood_coalesces_wakeup_writes, .timeout = 60)
{
    make_loop();
    long posts = RUNNING_ON_VALGRIND ? 20000 : 100000;
    uint64_t before = stats_now().wakeup_writes;
    run_producers(1, posts);
    cr_assert_eq(total_arrived, posts);
    uint64_t writes = stats_now().wakeup_writes - before;
    cr_assert_geq(writes, 1, "a foreign post must wake the loop at least once");
    cr_assert_lt(writes, (uint64_t)posts / 10, "%llu wakeup writes for %ld posts",
                 (unsigned long long)writes, posts);
    free_loop();
}

/* ---- passes: a callback that re-queues itself cannot starve I/O --------- */

#define REQUEUE_CAP 1000
static int requeue_runs;
static int requeue_runs_when_event_ran = -1;
static struct event *probe_ev;
static evutil_socket_t probe_fds[2];

static void probe_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    requeue_runs_when_event_ran = requeue_runs;
}

static void probe_read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 1);
    requeue_runs_when_event_ran = requeue_runs;
}

/* Re-queues itself until the probe event ran (or the cap: starvation). */
static void requeue_cb(void *arg)
{
    bool use_io = arg != NULL;
    requeue_runs++;
    if (requeue_runs == 1) {
        /* Make the event ready only now, from inside a drain. */
        if (use_io) {
            char c = 'x';
            send(probe_fds[1], &c, 1, 0);
        } else {
            static const struct timeval zero = {0, 0};
            evtimer_add(probe_ev, &zero);
        }
    }
    if (requeue_runs_when_event_ran < 0 && requeue_runs < REQUEUE_CAP)
        evexec_call_soon(loop, requeue_cb, arg);
}

Test(loop, requeued_callback_lets_a_timer_run_between_passes)
{
    make_loop();
    probe_ev = evtimer_new(base, probe_timer_cb, NULL);
    cr_assert_eq(evexec_call_soon(loop, requeue_cb, NULL), 0);
    dispatch();
    cr_assert_geq(requeue_runs_when_event_ran, 1,
                  "the timer never ran (callback ran %d times)", requeue_runs);
    cr_assert_leq(requeue_runs_when_event_ran, 3,
                  "the timer waited for %d passes of a self-requeuing callback",
                  requeue_runs_when_event_ran);
    event_free(probe_ev);
    free_loop();
}

Test(loop, requeued_callback_lets_io_run_between_passes)
{
    make_loop();
    cr_assert_eq(evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, probe_fds), 0);
    evutil_make_socket_nonblocking(probe_fds[0]);
    probe_ev = event_new(base, probe_fds[0], EV_READ, probe_read_cb, NULL);
    cr_assert_eq(event_add(probe_ev, NULL), 0);
    cr_assert_eq(evexec_call_soon(loop, requeue_cb, (void *)1), 0);
    dispatch();
    cr_assert_geq(requeue_runs_when_event_ran, 1,
                  "the read event never ran (callback ran %d times)", requeue_runs);
    cr_assert_leq(requeue_runs_when_event_ran, 3,
                  "the read event waited for %d passes of a self-requeuing callback",
                  requeue_runs_when_event_ran);
    event_free(probe_ev);
    evutil_closesocket(probe_fds[0]);
    evutil_closesocket(probe_fds[1]);
    free_loop();
}

/* ---- passes: a long batch is cut by time, so a due timer runs inside it -- */

#define LONG_BATCH 64
static int long_batch_order[LONG_BATCH];
static int long_batch_ran;
static int long_batch_ran_when_timer_ran = -1;

static void busy_us(long us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

static void long_batch_cb(void *arg)
{
    long_batch_order[long_batch_ran++] = (int)(intptr_t)arg;
    busy_us(50); /* 64 x 50 us: far past one pass's budget of about 200 us */
}

static void due_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    long_batch_ran_when_timer_ran = long_batch_ran;
}

Test(loop, long_batch_is_cut_by_time_so_a_due_timer_runs_in_between)
{
    make_loop();
    static const struct timeval zero = {0, 0};
    struct event *timer = evtimer_new(base, due_timer_cb, NULL);
    cr_assert_eq(evtimer_add(timer, &zero), 0); /* due before the batch runs */
    for (int i = 0; i < LONG_BATCH; i++)
        cr_assert_eq(evexec_call_soon(loop, long_batch_cb, (void *)(intptr_t)i), 0);
    dispatch();
    cr_assert_eq(long_batch_ran, LONG_BATCH);
    for (int i = 0; i < LONG_BATCH; i++)
        cr_assert_eq(long_batch_order[i], i, "FIFO order broken at %d by the cut", i);
    /* The timer may run before the batch's first pass or inside it, never
     * after the whole batch: each callback busy-waits, so a pass reaches its
     * budget within a few of them, whatever the machine's load. */
    cr_assert_geq(long_batch_ran_when_timer_ran, 0, "the due timer never ran");
    cr_assert_lt(long_batch_ran_when_timer_ran, LONG_BATCH,
                 "the due timer waited for the whole batch of %d callbacks", LONG_BATCH);
    struct evexec_loop_stats st;
    cr_assert_eq(evexec_loop_get_stats(loop, &st), 0);
    cr_assert_geq(st.passes_cut, 1, "no pass was cut");
    event_free(timer);
    free_loop();
}

static uint64_t drains_seen_by_first = UINT64_MAX, drains_seen_by_second = UINT64_MAX;

static void second_of_pass_cb(void *arg)
{
    (void)arg;
    struct evexec_loop_stats st;
    evexec_loop_get_stats(loop, &st);
    drains_seen_by_second = st.drains;
}

static void first_of_pass_cb(void *arg)
{
    (void)arg;
    struct evexec_loop_stats st;
    evexec_loop_get_stats(loop, &st);
    drains_seen_by_first = st.drains;
    evexec_call_soon(loop, second_of_pass_cb, NULL);
}

Test(loop, one_drain_runs_only_what_was_queued_when_it_started)
{
    make_loop();
    cr_assert_eq(evexec_call_soon(loop, first_of_pass_cb, NULL), 0);
    dispatch();
    cr_assert_neq(drains_seen_by_first, UINT64_MAX);
    cr_assert_neq(drains_seen_by_second, UINT64_MAX);
    /* The drains counter grows as each pass ends: a callback queued during a
     * pass must see a larger count than the one that queued it. */
    cr_assert_gt(drains_seen_by_second, drains_seen_by_first,
                 "a callback queued during a drain ran in that same drain");
    free_loop();
}

/* ---- liveness ----------------------------------------------------------- */

Test(loop, dispatch_returns_at_once_when_bridge_is_idle, .timeout = 30)
{
    make_loop();
    /* No watchdog here: it is exactly what must not keep dispatch alive, and
     * with nothing but an idle bridge dispatch reports "no events" (1). */
    cr_assert_eq(event_base_dispatch(base), 1);
    free_loop();
}

static int chain_depth;
static void chained_soon_cb(void *arg)
{
    (void)arg;
    if (++chain_depth < 3)
        evexec_call_soon(loop, chained_soon_cb, NULL);
}

Test(loop, queued_call_soon_keeps_dispatch_running)
{
    make_loop();
    chain_depth = 0;
    cr_assert_eq(evexec_call_soon(loop, chained_soon_cb, NULL), 0);
    dispatch();
    cr_assert_eq(chain_depth, 3);
    free_loop();
}

static int sleepy_task(void *arg, void **result)
{
    (void)arg;
    usleep(100 * 1000);
    *result = malloc(sizeof(int));
    return 0;
}

static int future_cb_runs;
static void count_future_cb(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    future_cb_runs++;
}

Test(loop, in_flight_run_in_executor_keeps_dispatch_running)
{
    make_loop();
    struct evexec_pool *pool = one_worker_pool();
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, sleepy_task, NULL, free_counted);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, count_future_cb, NULL), 0);
    cr_assert_eq(stats_now().in_flight, 1);
    dispatch();
    cr_assert(evexec_future_done(f), "dispatch returned before the result was delivered");
    cr_assert_eq(future_cb_runs, 1);
    cr_assert_eq(stats_now().in_flight, 0);
    void *r = NULL;
    cr_assert_eq(evexec_future_result(f, &r), 0);
    cr_assert_not_null(r);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool); /* the pool's queue reference may be the last one */
    cr_assert_eq(atomic_load(&results_freed), 1);
}

static int delayed_arrivals;
static void unref_cb(void *arg)
{
    (void)arg;
    delayed_arrivals++;
    evexec_loop_unref(loop);
}

static void *delayed_poster(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    evexec_call_soon_threadsafe(loop, unref_cb, NULL);
    return NULL;
}

Test(loop, loop_ref_keeps_dispatch_running_until_unref)
{
    make_loop();
    delayed_arrivals = 0;
    evexec_loop_ref(loop);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, delayed_poster, NULL), 0);
    dispatch();
    pthread_join(t, NULL);
    cr_assert_eq(delayed_arrivals, 1, "dispatch returned before the referenced loop got its post");
    free_loop();
}

Test(loop, loop_ref_is_counted)
{
    make_loop();
    delayed_arrivals = 0;
    evexec_loop_ref(loop);
    evexec_loop_ref(loop);
    evexec_loop_unref(loop); /* one ref left: still listening */
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, delayed_poster, NULL), 0);
    dispatch();
    pthread_join(t, NULL);
    cr_assert_eq(delayed_arrivals, 1);
    free_loop();
}

static void *immediate_poster(void *arg)
{
    evexec_call_soon_threadsafe(loop, (evexec_callback_fn)arg, NULL);
    return NULL;
}

Test(loop, post_while_not_listening_runs_when_loop_listens_again)
{
    make_loop();
    delayed_arrivals = 0;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, immediate_poster, (void *)unref_cb), 0);
    pthread_join(t, NULL);
    cr_assert_eq(delayed_arrivals, 0);
    evexec_loop_ref(loop); /* listen again; unref_cb drops it */
    dispatch();
    cr_assert_eq(delayed_arrivals, 1, "the post made while not listening was lost");
    free_loop();
}

Test(loop, works_with_evthread_use_pthreads)
{
    /* Process-global; Criterion runs each test in a process of its own. */
    cr_assert_eq(evthread_use_pthreads(), 0);
    make_loop();
    run_producers(2, 10000);
    cr_assert_eq(total_arrived, 20000);
    cr_assert_eq(order_violations, 0);

    struct evexec_pool *pool = one_worker_pool();
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, quick_task, NULL, free_counted);
    cr_assert_not_null(f);
    dispatch();
    cr_assert(evexec_future_done(f));
    cr_assert_eq(evexec_future_result(f, NULL), 0);
    evexec_future_release(f);
    free_loop();
    evexec_pool_free(pool); /* the pool's queue reference may be the last one */
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(loop, stats_count_callbacks_and_foreign_posts)
{
    make_loop();
    cr_assert_eq(evexec_loop_get_stats(loop, NULL), EINVAL);
    cr_assert_eq(evexec_loop_get_stats(NULL, &(struct evexec_loop_stats){0}), EINVAL);
    struct evexec_loop_stats before = stats_now();
    nrecord = 0;
    for (int i = 0; i < 5; i++)
        evexec_call_soon(loop, record_cb, NULL);
    run_producers(1, 7);
    struct evexec_loop_stats after = stats_now();
    cr_assert_eq(after.callbacks_run - before.callbacks_run, 12);
    cr_assert_eq(after.foreign_posts - before.foreign_posts, 7);
    cr_assert_geq(after.drains - before.drains, 1);
    cr_assert_eq(after.in_flight, 0);
    free_loop();
}

/* ---- teardown ------------------------------------------------------------ */

Test(loop, free_discards_queued_callbacks_without_running_them)
{
    make_loop();
    nrecord = 0;
    for (int i = 0; i < 3; i++)
        cr_assert_eq(evexec_call_soon(loop, never_cb, NULL), 0);
    /* Foreign posts made while nobody listens are queued too. */
    pthread_t t;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(pthread_create(&t, NULL, immediate_poster, (void *)never_cb), 0);
        pthread_join(t, NULL);
    }
    evexec_loop_free(loop);
    loop = NULL;
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(nrecord, 0, "a callback ran after (or during) evexec_loop_free");
    event_base_free(base);
}

static int blocker_task(void *arg, void **result)
{
    (void)arg;
    (void)result;
    gate_pass(&gate);
    return 0;
}

static atomic_int queued_task_runs;
static int counted_task(void *arg, void **result)
{
    (void)arg;
    atomic_fetch_add(&queued_task_runs, 1);
    *result = malloc(sizeof(int));
    return 0;
}

Test(loop, free_cancels_pending_run_in_executor_and_its_task_never_runs)
{
    make_loop();
    struct evexec_pool *pool = one_worker_pool();
    struct evexec_cfuture *blocker = evexec_pool_submit(pool, blocker_task, NULL, NULL);
    cr_assert_not_null(blocker);
    cr_assert(gate_wait_arrived(&gate, 1), "the blocker never started");
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, counted_task, NULL, free_counted);
    cr_assert_not_null(f);
    future_cb_runs = 0;
    cr_assert_eq(evexec_future_add_done_callback(f, count_future_cb, NULL), 0);

    evexec_loop_free(loop);
    loop = NULL;
    cr_assert(evexec_future_cancelled(f));
    cr_assert_eq(evexec_future_result(f, NULL), ECANCELED);

    gate_open(&gate);
    evexec_pool_free(pool); /* joins the worker: the queue was reached */
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(atomic_load(&queued_task_runs), 0, "a cancelled queued task ran");
    cr_assert_eq(future_cb_runs, 0, "a done callback ran after evexec_loop_free");
    evexec_future_release(f);
    evexec_cfuture_release(blocker);
    cr_assert_eq(atomic_load(&results_freed), 0);
    event_base_free(base);
}

Test(loop, free_with_running_work_frees_the_late_result_exactly_once)
{
    make_loop();
    struct evexec_pool *pool = one_worker_pool();
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, gated_task, NULL, free_counted);
    cr_assert_not_null(f);
    future_cb_runs = 0;
    cr_assert_eq(evexec_future_add_done_callback(f, count_future_cb, NULL), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the task never started");

    evexec_loop_free(loop);
    loop = NULL;
    gate_open(&gate);
    evexec_pool_free(pool); /* the task ends; its late result is disposed of */
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(atomic_load(&task_runs), 1);
    cr_assert(atomic_load(&task_saw_cancel), "the running task was not asked to stop");
    cr_assert_eq(atomic_load(&results_freed), 1);
    cr_assert_eq(future_cb_runs, 0, "a done callback ran after evexec_loop_free");
    evexec_future_release(f);
    cr_assert_eq(atomic_load(&results_freed), 1, "the late result was freed twice");
    event_base_free(base);
}

Test(loop, free_with_completed_undelivered_work_frees_the_result_exactly_once)
{
    make_loop();
    struct evexec_pool *pool = one_worker_pool();
    atomic_store(&results_freed, 0);
    struct evexec_future *f = evexec_run_in_executor(loop, pool, quick_task, NULL, free_counted);
    cr_assert_not_null(f);
    future_cb_runs = 0;
    cr_assert_eq(evexec_future_add_done_callback(f, count_future_cb, NULL), 0);
    /* Join the worker: the task is complete, its delivery waits on the loop. */
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&task_runs), 1);
    cr_assert_eq(atomic_load(&results_freed), 0);

    evexec_loop_free(loop);
    loop = NULL;
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(future_cb_runs, 0);
    evexec_future_release(f);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
    event_base_free(base);
}

/* ---- the end-of-pass spin and the number of loops ------------------------ */

#define SPIN_CHAIN 300
static int spin_chain_left;
static struct evexec_pool *spin_pool;

static void spin_chain_next(struct evexec_future *f, void *arg)
{
    (void)arg;
    evexec_future_release(f);
    if (--spin_chain_left <= 0)
        return;
    struct evexec_future *g = evexec_run_in_executor(loop, spin_pool, quick_task, NULL, free);
    cr_assert_not_null(g);
    cr_assert_eq(evexec_future_add_done_callback(g, spin_chain_next, NULL), 0);
}

/* Quick tasks one after another from the loop; the spins the loop tried. */
static uint64_t spins_tried_over_a_chain(void)
{
    spin_pool = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 1});
    cr_assert_not_null(spin_pool);
    spin_chain_left = SPIN_CHAIN;
    struct evexec_future *f = evexec_run_in_executor(loop, spin_pool, quick_task, NULL, free);
    cr_assert_not_null(f);
    cr_assert_eq(evexec_future_add_done_callback(f, spin_chain_next, NULL), 0);
    dispatch();
    cr_assert_eq(spin_chain_left, 0);
    evexec_pool_free(spin_pool);
    struct evexec_loop_stats st = stats_now();
    return st.spins + st.spins_missed;
}

static int cpus_usable(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

Test(loop, a_lone_loop_spins_for_completions_at_the_end_of_a_pass)
{
    if (cpus_usable() < 2)
        cr_skip_test("one CPU: the loop never spins");
    make_loop();
    cr_assert_gt(spins_tried_over_a_chain(), 0, "the loop never polled for a completion");
    free_loop();
}

Test(loop, no_loop_spins_while_there_are_as_many_loops_as_cpus)
{
    int n = cpus_usable();
    if (n > 64)
        cr_skip_test("too many CPUs to make as many loops");
    make_loop();
    struct event_base *bases[64];
    struct evexec_loop *others[64];
    for (int i = 0; i < n - 1; i++) {
        bases[i] = event_base_new();
        others[i] = evexec_loop_new(bases[i]);
        cr_assert_not_null(others[i]);
    }
    cr_assert_eq(spins_tried_over_a_chain(), 0,
                 "a loop spun while %d loops shared %d CPUs", n, n);
    for (int i = 0; i < n - 1; i++) {
        evexec_loop_free(others[i]);
        event_base_free(bases[i]);
    }
    free_loop();
}

/* With as many loops as CPUs, a loop woken while most of its work is out
 * yields its CPU before it takes the completions, and workers push without
 * writing meanwhile: a window of quick tasks kept full, with foreign posts
 * beside it, must all arrive (a lost one hangs the dispatch: the watchdog,
 * or Criterion's timeout, fails the test). */
#define YIELD_WINDOW 32
#define YIELD_TASKS 4000
static int yield_submitted, yield_done;
static struct evexec_pool *yield_pool;

static void yield_task_done(struct evexec_future *f, void *arg);

/* Keep YIELD_WINDOW tasks in flight until YIELD_TASKS were submitted. */
static void yield_refill(void)
{
    while (yield_submitted < YIELD_TASKS && yield_submitted - yield_done < YIELD_WINDOW) {
        struct evexec_future *g =
            evexec_run_in_executor(loop, yield_pool, quick_task, NULL, free);
        cr_assert_not_null(g);
        cr_assert_eq(evexec_future_add_done_callback(g, yield_task_done, NULL), 0);
        yield_submitted++;
    }
}

static void yield_task_done(struct evexec_future *f, void *arg)
{
    (void)arg;
    evexec_future_release(f);
    yield_done++;
    yield_refill();
}

Test(loop, a_loop_among_as_many_loops_as_cpus_gets_every_completion_and_post, .timeout = 60)
{
    int n = cpus_usable();
    if (n > 64)
        cr_skip_test("too many CPUs to make as many loops");
    make_loop();
    struct event_base *bases[64];
    struct evexec_loop *others[64];
    for (int i = 0; i < n - 1; i++) {
        bases[i] = event_base_new();
        others[i] = evexec_loop_new(bases[i]);
        cr_assert_not_null(others[i]);
    }
    yield_pool = evexec_pool_new(&(struct evexec_pool_config){.min_workers = 2, .max_workers = 2});
    cr_assert_not_null(yield_pool);
    yield_submitted = yield_done = 0;
    yield_refill();
    long posts = RUNNING_ON_VALGRIND ? 2000 : 20000;
    run_producers(1, posts); /* dispatches until the posts and the tasks are in */
    cr_assert_eq(yield_done, YIELD_TASKS, "%d of %d completions arrived", yield_done, YIELD_TASKS);
    cr_assert_eq(atomic_load(&post_failures), 0);
    cr_assert_eq(total_arrived, posts);
    cr_assert_eq(order_violations, 0);
    evexec_pool_free(yield_pool);
    for (int i = 0; i < n - 1; i++) {
        evexec_loop_free(others[i]);
        event_base_free(bases[i]);
    }
    free_loop();
}

/* ---- a wakeup descriptor broken behind the library's back ----------------- */

static void *post_record_1(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)evexec_call_soon_threadsafe(loop, record_cb, (void *)1);
}

Test(loop, failed_wakeup_writes_are_counted_and_the_callback_runs_with_the_next_pass)
{
#ifdef EVEXEC_DEBUG
    cr_skip_test("debug builds abort on a failed wakeup write (test_debug.c checks it)");
#endif
    base = event_base_new();
    cr_assert_not_null(base);
    int wfd;
    loop = loop_new_with_wakeup_fd(base, &wfd);
    cr_assert_not_null(loop);
    cr_assert_geq(wfd, 0, "the loop's wakeup descriptor was not found in /proc/self/fd");
    int saved = wakeup_fd_break(wfd);
    cr_assert_geq(saved, 0, "could not put /dev/null in place of the wakeup descriptor");
    /* What the library will get: a read-only descriptor refuses writes. */
    char byte = 0;
    errno = 0;
    cr_assert_eq(write(wfd, &byte, 1), -1);
    cr_assert_eq(errno, EBADF, "writing the broken descriptor gave errno %d", errno);

    pthread_t t;
    void *rc = (void *)-1;
    cr_assert_eq(pthread_create(&t, NULL, post_record_1, NULL), 0);
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, 0, "the post itself was refused");
    struct evexec_loop_stats st = stats_now();
    cr_assert_geq(st.wakeup_errors, 1, "a failed wakeup write was not counted");
    wakeup_fd_restore(wfd, saved);

    /* Nothing woke the loop; the post stayed queued and runs with the next
     * pass, which a callback of the loop thread makes. */
    cr_assert_eq(nrecord, 0);
    cr_assert_eq(evexec_call_soon(loop, record_cb, (void *)2), 0);
    dispatch();
    cr_assert_eq(nrecord, 2, "the post made while the wakeup was broken was lost");
    /* FIFO holds per producer thread only: either order. */
    cr_assert_eq(record[0] + record[1], 3);
    cr_assert_eq(stats_now().wakeup_errors, st.wakeup_errors, "a working wakeup was counted as failed");
    free_loop();
}

Test(loop, wakeup_errors_stay_zero_while_the_descriptor_works)
{
    make_loop();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_record_1, NULL), 0);
    pthread_join(t, NULL);
    evexec_loop_ref(loop);
    evexec_loop_unref(loop);
    cr_assert_eq(evexec_call_soon(loop, record_cb, (void *)2), 0);
    dispatch();
    struct evexec_loop_stats st = stats_now();
    cr_assert_geq(st.wakeup_writes, 1);
    cr_assert_eq(st.wakeup_errors, 0);
    free_loop();
}
