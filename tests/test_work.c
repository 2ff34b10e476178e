/*
 * test_work.c -- the request layer: evexec_queue_work and evexec_work_cancel.
 *
 * One test per promise of the header: after runs on the loop thread exactly
 * once per accepted request, with what the work returned and stored, and
 * never inside evexec_queue_work (not even when the pool fails the request
 * at once); work receives the request; cancel is exact (a queued request
 * never runs, a running one sees evexec_cancel_requested(), a finished one
 * reports what it did); the request may be queued again or freed in its
 * after; every refusal (EINVAL, EAGAIN, ESHUTDOWN, EVEXEC_EBROKEN,
 * EVEXEC_EFORKED) never calls after and leaves data untouched (EINVAL the
 * whole request); the
 * loop stays alive until every after ran; evexec_loop_free and a pool
 * shutdown with requests in flight; limited views; pool statistics; no
 * allocation per request; requests and run_in_executor futures delivered in
 * submission order.
 *
 * Each request is embedded in a struct job of the test, found again from
 * the request with job_of(); req->data holds a sentinel the library must
 * leave alone. Work functions and afters record, the main thread asserts.
 *
 * The allocation count uses the counting malloc of testutil.h (it forwards
 * to glibc's own allocator) and, in builds
 * configured with --enable-fault-injection, the library's own count of its
 * allocations; the "pool fails at once" case makes worker creation fail
 * with the fault-injection hook when the library has it, or with a
 * pthread_create of this program that fails on request. The interposed
 * functions are compiled out under sanitizers, which replace them
 * themselves; a test with no way left to count or to fail skips.
 */
#include "config.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"

#define TESTUTIL_LOOP_FIXTURE   /* base, loop, make_loop, free_loop, dispatch */
#define TESTUTIL_POOL_HELPERS   /* new_pool, stats_of, assert_balanced */
#define TESTUTIL_COUNTING_MALLOC /* counted_allocs, count_this_thread */
#include "testutil.h"

TestSuite(work, .timeout = 60, .fini = fail_on_leaks);

/* ---- interposed thread creation (not under sanitizers) ------------------- */

/* Thread creation fails (EAGAIN) while this is set. */
static atomic_bool refuse_threads;

#ifndef TESTUTIL_NO_INTERPOSING
int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    typedef int (*create_fn)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    static _Atomic(create_fn) real;
    if (atomic_load(&refuse_threads))
        return EAGAIN;
    create_fn f = atomic_load(&real);
    if (!f) {
        *(void **)&f = dlsym(RTLD_NEXT, "pthread_create");
        atomic_store(&real, f);
    }
    return f(t, attr, fn, arg);
}
#endif

#ifdef EVEXEC_FAULT_INJECTION
void evexec__fault_fail_thread(long nth);
#endif

/* Make the pool's next worker creation fail; false if this build cannot. */
static bool refuse_next_thread(void)
{
#ifdef EVEXEC_FAULT_INJECTION
    evexec__fault_fail_thread(1);
    return true;
#elif !defined(TESTUTIL_NO_INTERPOSING)
    atomic_store(&refuse_threads, true);
    return true;
#else
    return false;
#endif
}

static void allow_threads(void)
{
#ifdef EVEXEC_FAULT_INJECTION
    evexec__fault_fail_thread(0);
#endif
    atomic_store(&refuse_threads, false);
}

/* ---- the gate ------------------------------------------------------------ */

/* Holds worker threads until the test opens it (testutil.h). */
static struct gate gate = GATE_INITIALIZER;

/* ---- results ------------------------------------------------------------- */

static atomic_int results_made, results_freed;

static void *make_result(int value)
{
    int *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    *r = value;
    atomic_fetch_add(&results_made, 1);
    return r;
}

static void free_result(void *r)
{
    atomic_fetch_add(&results_freed, 1);
    free(r);
}

/* ---- jobs: a request and what happened to it ------------------------------ */

static pthread_t loop_thread;
static atomic_bool in_call; /* set by the test around a library call */

struct job {
    int id;
    /* what the work does */
    int status;          /* returned by the work */
    bool store_result;   /* the work stores make_result(id) */
    bool wait_cancel;    /* the work waits (bounded) for a cancel request */
    struct gate *gate;   /* the work passes it first (NULL: no) */
    int requeue;         /* after queues the request again this many times */
    struct evexec_pool *pool; /* for requeue */
    /* what the work saw */
    atomic_int ran;
    atomic_bool work_done;
    void *work_arg;
    void *data_at_work;
    bool cancel_at_start;
    bool saw_cancel;
    void *stored;
    /* what after saw (after_calls last: it publishes the rest) */
    int after_status;
    void *after_result;
    struct evexec_work *after_req;
    void *data_at_after;
    pthread_t after_thread;
    bool after_in_call;
    int requeue_rc;
    atomic_int after_calls;
    /* the request, with the library's private part */
    struct evexec_work req;
};

static struct job *job_of(struct evexec_work *req)
{
    return (struct job *)(void *)((char *)req - offsetof(struct job, req));
}

/* A value the library must leave in req->data. */
static void *sentinel_of(struct job *j)
{
    return (char *)j + 1;
}

static void job_init(struct job *j, int id)
{
    memset(j, 0, sizeof(*j));
    j->id = id;
    j->store_result = true;
    j->req.data = sentinel_of(j);
}

static int job_work(void *arg, void **result)
{
    struct job *j = job_of(arg);
    j->work_arg = arg;
    j->data_at_work = ((struct evexec_work *)arg)->data;
    j->cancel_at_start = evexec_cancel_requested();
    atomic_fetch_add(&j->ran, 1);
    if (j->gate)
        gate_pass(j->gate);
    if (j->wait_cancel) {
        for (int i = 0; i < HANG_BOUND_MS && !evexec_cancel_requested(); i++)
            usleep(1000);
        j->saw_cancel = evexec_cancel_requested();
    }
    if (j->store_result) {
        j->stored = make_result(j->id);
        *result = j->stored;
    }
    atomic_store(&j->work_done, true);
    return j->status;
}

static void job_after(struct evexec_work *req, int status, void *result);

static int queue_job(struct evexec_pool *pool, struct job *j)
{
    return evexec_queue_work(loop, pool, &j->req, job_work, job_after);
}

static void job_after(struct evexec_work *req, int status, void *result)
{
    struct job *j = job_of(req);
    j->after_status = status;
    j->after_result = result;
    j->after_req = req;
    j->data_at_after = req->data;
    j->after_thread = pthread_self();
    j->after_in_call = in_call;
    if (result)
        free_result(result);
    if (j->requeue > 0 && status == 0) {
        j->requeue--;
        j->requeue_rc = queue_job(j->pool, j);
    }
    atomic_fetch_add(&j->after_calls, 1);
}

static bool on_loop_thread(pthread_t t)
{
    return pthread_equal(t, loop_thread);
}

/* Wait (bounded) until j's after has run n times. */
static bool after_calls_reach(struct job *j, int n)
{
    for (int i = 0; i < HANG_BOUND_MS && atomic_load(&j->after_calls) < n; i++)
        sleep_ms(1);
    return atomic_load(&j->after_calls) >= n;
}

static void setup(void)
{
    make_loop();
    loop_thread = pthread_self();
    in_call = false;
}

/* Queue n jobs on pool, with ids first_id on. */
static void queue_jobs(struct evexec_pool *pool, struct job *jobs, int n, int first_id)
{
    for (int i = 0; i < n; i++) {
        job_init(&jobs[i], first_id + i);
        cr_assert_eq(queue_job(pool, &jobs[i]), 0);
    }
}

/* Run loop passes (bounded) until j's after ran: a cancelled request's after
 * is due on a later pass, without waiting for a worker. */
static void run_passes_until_after(struct job *j)
{
    for (int i = 0; i < 100 && atomic_load(&j->after_calls) == 0; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
}

/* ---- a pool whose only worker is held ------------------------------------- */

/* A task of no loop that holds a worker on the gate. */
static int gate_task(void *arg, void **result)
{
    (void)result;
    gate_pass(arg);
    return 0;
}

/* A pool (or view) whose only worker is held on the fixture's gate, so what a
 * test queues behind it stays queued until the gate opens. The blocker is a
 * request of the loop (hold: its after can be checked, and it keeps the loop
 * alive) or a task of no loop (hold_with_task: for tests whose loop must see
 * only their own requests). */
struct held_pool {
    struct evexec_pool *pool;
    struct gate gate;
    struct job blocker;          /* the blocking request (hold) */
    struct evexec_cfuture *task; /* the blocking task (hold_with_task), else NULL */
};

static void hold(struct held_pool *hp, struct evexec_pool *pool, int blocker_id)
{
    hp->pool = pool;
    hp->task = NULL;
    gate_init(&hp->gate);
    job_init(&hp->blocker, blocker_id);
    hp->blocker.gate = &hp->gate;
    cr_assert_eq(queue_job(pool, &hp->blocker), 0);
    cr_assert(gate_wait_arrived(&hp->gate, 1), "the blocker never started");
}

static void hold_with_task(struct held_pool *hp, struct evexec_pool *pool)
{
    hp->pool = pool;
    gate_init(&hp->gate);
    job_init(&hp->blocker, -1); /* not queued */
    hp->task = evexec_pool_submit(pool, gate_task, &hp->gate, NULL);
    cr_assert_not_null(hp->task);
    cr_assert(gate_wait_arrived(&hp->gate, 1), "the blocker never started");
}

static void let_go(struct held_pool *hp)
{
    gate_open(&hp->gate);
}

/* Open the gate, free the pool (which joins its workers: after this nothing
 * queued on it runs any more), then the blocker. */
static void held_pool_fini(struct held_pool *hp)
{
    gate_open(&hp->gate);
    evexec_pool_free(hp->pool);
    evexec_cfuture_release(hp->task);
    gate_destroy(&hp->gate);
}

/* ========================================================================== */

Test(work, after_runs_on_the_loop_thread_exactly_once_with_the_works_status_and_result)
{
    setup();
    struct evexec_pool *pool = new_pool(2);
    enum { N = 6 };
    struct job jobs[N];
    static const int statuses[N] = {0, EIO, 0, ENOENT, 0, EPERM};
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], i);
        jobs[i].status = statuses[i];
        jobs[i].store_result = i != 2; /* one success without a result */
        cr_assert_eq(queue_job(pool, &jobs[i]), 0);
    }
    dispatch();
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        cr_assert_eq(atomic_load(&j->after_calls), 1, "job %d: after ran %d times", i,
                     atomic_load(&j->after_calls));
        cr_assert(on_loop_thread(j->after_thread), "job %d: after ran off the loop thread", i);
        cr_assert_eq(atomic_load(&j->ran), 1);
        cr_assert_eq(j->after_status, statuses[i], "job %d: status %d", i, j->after_status);
        cr_assert_eq(j->after_result, j->stored, "job %d: after got another result", i);
        cr_assert_eq(j->after_req, &j->req);
    }
    cr_assert_null(jobs[2].after_result);
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made),
                 "results stored with an error reach after too");
    free_loop();
    evexec_pool_free(pool);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&jobs[i].after_calls), 1, "after ran again later");
}

Test(work, work_receives_the_request_and_data_is_untouched)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct job j;
    job_init(&j, 1);
    cr_assert_eq(queue_job(pool, &j), 0);
    dispatch();
    cr_assert_eq(j.work_arg, &j.req, "work was not given the request");
    cr_assert_eq(j.data_at_work, sentinel_of(&j), "data changed before the work ran");
    cr_assert_eq(j.data_at_after, sentinel_of(&j), "data changed before after");
    cr_assert_eq(j.req.data, sentinel_of(&j));
    cr_assert(!j.cancel_at_start, "evexec_cancel_requested() true in a request nobody cancelled");
    free_loop();
    evexec_pool_free(pool);
}

Test(work, after_is_never_called_inside_queue_work)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    /* A request the worker finishes at once: still nothing before the loop
     * runs its queue. */
    struct job fast;
    job_init(&fast, 1);
    in_call = true;
    cr_assert_eq(queue_job(pool, &fast), 0);
    in_call = false;
    for (int i = 0; i < HANG_BOUND_MS && !atomic_load(&fast.work_done); i++)
        sleep_ms(1);
    cr_assert(atomic_load(&fast.work_done));
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0); /* posted its outcome */
    cr_assert_eq(atomic_load(&fast.after_calls), 0, "after ran before the loop did");
    dispatch();
    cr_assert_eq(atomic_load(&fast.after_calls), 1);
    cr_assert(!fast.after_in_call);
    evexec_pool_free(pool);
    free_loop();
}

Test(work, after_is_never_called_inside_queue_work_even_when_the_pool_fails_at_once)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    if (!refuse_next_thread()) {
        free_loop();
        evexec_pool_free(pool);
        cr_skip_test("thread creation cannot be made to fail in this build");
    }
    struct job j;
    job_init(&j, 1);
    in_call = true;
    int rc = queue_job(pool, &j);
    in_call = false;
    allow_threads();
    cr_assert_eq(rc, 0, "the request was refused (%s) instead of failing later",
                 evexec_strerror(rc));
    cr_assert_eq(atomic_load(&j.after_calls), 0, "after ran inside evexec_queue_work");
    dispatch();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert(!j.after_in_call);
    cr_assert(on_loop_thread(j.after_thread));
    cr_assert_eq(j.after_status, EAGAIN, "status %s", evexec_strerror(j.after_status));
    cr_assert_null(j.after_result);
    cr_assert_eq(atomic_load(&j.ran), 0);
    struct evexec_pool_stats st = stats_of(pool);
    cr_assert_eq(st.failed, 1);
    assert_balanced(&st, "failed at once");
    free_loop();
    evexec_pool_free(pool);
}

Test(work, a_queued_request_that_is_cancelled_never_runs_and_its_after_gets_ecanceled_on_a_later_pass)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 0);
    struct job j;
    queue_jobs(hp.pool, &j, 1, 1);
    in_call = true;
    cr_assert(evexec_work_cancel(&j.req));
    in_call = false;
    cr_assert_eq(atomic_load(&j.after_calls), 0, "after ran inside evexec_work_cancel");
    run_passes_until_after(&j);
    cr_assert_eq(atomic_load(&j.after_calls), 1, "the cancelled request's after waited for "
                 "the worker");
    cr_assert_eq(j.after_status, ECANCELED);
    cr_assert_null(j.after_result);
    cr_assert(!j.after_in_call);
    cr_assert(on_loop_thread(j.after_thread));
    let_go(&hp);
    dispatch();
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&j.ran), 0, "a cancelled queued request ran");
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(atomic_load(&hp.blocker.after_calls), 1);
    free_loop();
}

Test(work, cancel_of_a_running_request_returns_false_and_the_work_sees_cancel_requested)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct job j;
    job_init(&j, 1);
    j.gate = &gate;
    j.wait_cancel = true;
    cr_assert_eq(queue_job(pool, &j), 0);
    cr_assert(gate_wait_arrived(&gate, 1), "the request never started");
    gate_open(&gate);
    cr_assert(!evexec_work_cancel(&j.req), "cancel of a running request returned true");
    dispatch();
    cr_assert(j.saw_cancel, "evexec_cancel_requested() never turned true in the work");
    cr_assert(!j.cancel_at_start);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, 0, "after reports what the work did, not ECANCELED");
    cr_assert_eq(j.after_result, j.stored);
    cr_assert_not_null(j.after_result);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
}

/* Queue j on a new pool of one worker and join the worker: j has run and
 * its outcome is on its way to the loop, not delivered yet. @return the
 * pool, shut down. */
static struct evexec_pool *finished_undelivered(struct job *j)
{
    struct evexec_pool *pool = new_pool(1);
    cr_assert_eq(queue_job(pool, j), 0);
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    cr_assert_eq(atomic_load(&j->ran), 1);
    cr_assert_eq(atomic_load(&j->after_calls), 0);
    return pool;
}

Test(work, cancel_of_a_finished_but_undelivered_request_returns_false_and_after_reports_the_result)
{
    setup();
    struct job j;
    job_init(&j, 1);
    j.status = EIO;
    struct evexec_pool *pool = finished_undelivered(&j);
    cr_assert(!evexec_work_cancel(&j.req), "cancel of a finished request returned true");
    dispatch();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, EIO, "status %s", evexec_strerror(j.after_status));
    cr_assert_eq(j.after_result, j.stored);
    cr_assert_not_null(j.after_result);
    evexec_pool_free(pool);
    free_loop();
}

Test(work, cancel_twice_returns_true_both_times_and_after_runs_once)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 0);
    struct job j;
    queue_jobs(hp.pool, &j, 1, 1);
    cr_assert(evexec_work_cancel(&j.req));
    cr_assert(evexec_work_cancel(&j.req), "a second cancel of a cancelled request returned false");
    let_go(&hp);
    dispatch();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, ECANCELED);
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&j.ran), 0);
    free_loop();
}

Test(work, a_request_can_be_queued_again_from_its_after)
{
    setup();
    struct evexec_pool *pool = new_pool(2);
    enum { AGAIN = 50 };
    struct job j;
    job_init(&j, 1);
    j.requeue = AGAIN;
    j.pool = pool;
    cr_assert_eq(queue_job(pool, &j), 0);
    dispatch(); /* each requeue keeps the loop alive */
    cr_assert_eq(j.requeue_rc, 0, "queueing again from after: %s", evexec_strerror(j.requeue_rc));
    cr_assert_eq(j.requeue, 0);
    cr_assert_eq(atomic_load(&j.ran), AGAIN + 1);
    cr_assert_eq(atomic_load(&j.after_calls), AGAIN + 1);
    cr_assert_eq(j.after_status, 0);
    cr_assert_eq(j.data_at_after, sentinel_of(&j));
    cr_assert_eq(atomic_load(&results_freed), AGAIN + 1);
    free_loop();
    evexec_pool_free(pool);
}

/* A request in memory of its own, freed by its after. */
struct heap_req {
    struct evexec_work req;
    int *afters;
    int *statuses;
    int index;
};

static int heap_work(void *arg, void **result)
{
    (void)arg;
    *result = make_result(1);
    return 0;
}

static void heap_after(struct evexec_work *req, int status, void *result)
{
    struct heap_req *h = (struct heap_req *)(void *)req;
    h->afters[h->index]++;
    h->statuses[h->index] = status;
    if (result)
        free_result(result);
    memset(h, 0xa5, sizeof(*h)); /* what a reuse of the memory would do */
    free(h);
}

static struct heap_req *heap_req_new(int *afters, int *statuses, int index)
{
    struct heap_req *h = malloc(sizeof(*h));
    cr_assert_not_null(h);
    memset(h, 0, sizeof(*h));
    h->afters = afters;
    h->statuses = statuses;
    h->index = index;
    return h;
}

Test(work, the_request_memory_can_be_freed_in_after)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 0);
    int afters[4] = {0}, statuses[4] = {0};
    struct heap_req *h[4];
    for (int i = 0; i < 4; i++) {
        h[i] = heap_req_new(afters, statuses, i);
        cr_assert_eq(evexec_queue_work(loop, hp.pool, &h[i]->req, heap_work, heap_after), 0);
    }
    cr_assert(evexec_work_cancel(&h[1]->req)); /* freed on the cancel path */
    cr_assert(evexec_work_cancel(&h[3]->req));
    let_go(&hp);
    dispatch();
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(afters[i], 1, "request %d: after ran %d times", i, afters[i]);
        cr_assert_eq(statuses[i], i % 2 ? ECANCELED : 0, "request %d: %s", i,
                     evexec_strerror(statuses[i]));
    }
    free_loop();
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made));
}

static void never_after(struct evexec_work *req, int status, void *result)
{
    (void)status;
    (void)result;
    job_of(req)->after_calls++;
}

/* Fill the request with a pattern the library must leave as it is. */
static void scribble(struct job *j)
{
    memset(&j->req, 0x5c, sizeof(j->req));
    j->req.data = sentinel_of(j);
}

/* A request refused for its arguments was not even looked at. */
static bool untouched(const struct job *j)
{
    struct evexec_work want;
    memset(&want, 0x5c, sizeof(want));
    want.data = sentinel_of((struct job *)(uintptr_t)j);
    return memcmp(&want, &j->req, sizeof(want)) == 0;
}

/* One a pool refused had its private part prepared for the pool, but data
 * is the program's, always. */
static bool data_untouched(const struct job *j)
{
    return j->req.data == sentinel_of((struct job *)(uintptr_t)j);
}

Test(work, bad_input_returns_einval_and_after_is_never_called)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct job j;
    job_init(&j, 1);
    scribble(&j);
    cr_assert_eq(evexec_queue_work(NULL, pool, &j.req, job_work, never_after), EINVAL);
    cr_assert_eq(evexec_queue_work(NULL, NULL, &j.req, job_work, never_after), EINVAL);
    cr_assert_eq(evexec_queue_work(loop, pool, NULL, job_work, never_after), EINVAL);
    cr_assert_eq(evexec_queue_work(loop, NULL, NULL, job_work, never_after), EINVAL);
    cr_assert_eq(evexec_queue_work(loop, pool, &j.req, NULL, never_after), EINVAL);
    cr_assert_eq(evexec_queue_work(loop, pool, &j.req, job_work, NULL), EINVAL);
    cr_assert_eq(evexec_queue_work(loop, NULL, &j.req, NULL, NULL), EINVAL);
    cr_assert(untouched(&j), "a refused request was written to");
    errno = 0;
    cr_assert(!evexec_work_cancel(NULL));
    cr_assert_eq(errno, EINVAL);
    dispatch(); /* nothing in flight: returns at once */
    cr_assert_eq(j.after_calls, 0);
    cr_assert_eq(atomic_load(&j.ran), 0);
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(j.after_calls, 0);
    cr_assert_eq(atomic_load(&j.ran), 0);
}

Test(work, a_full_bounded_queue_returns_eagain)
{
    setup();
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    cfg.max_queued = 2;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct held_pool hp;
    hold(&hp, pool, 0);
    struct job q[2], over;
    queue_jobs(pool, q, 2, 1);
    job_init(&over, 3);
    scribble(&over);
    cr_assert_eq(evexec_queue_work(loop, pool, &over.req, job_work, never_after), EAGAIN);
    cr_assert(data_untouched(&over));
    /* A cancelled request leaves the queue at once: its place is free. */
    cr_assert(evexec_work_cancel(&q[0].req));
    struct job again;
    job_init(&again, 4);
    cr_assert_eq(queue_job(pool, &again), 0, "the cancelled request still took a place");
    let_go(&hp);
    dispatch();
    cr_assert_eq(over.after_calls, 0);
    cr_assert_eq(atomic_load(&over.ran), 0);
    cr_assert_eq(atomic_load(&q[1].after_calls), 1);
    cr_assert_eq(atomic_load(&again.after_calls), 1);
    cr_assert_eq(q[0].after_status, ECANCELED);

    /* The same on a view with a bounded queue. */
    struct evexec_view_config vcfg = {0};
    vcfg.max_running = 1;
    vcfg.max_queued = 1;
    struct evexec_pool *view = evexec_pool_new_view(pool, &vcfg);
    cr_assert_not_null(view);
    struct held_pool vhp;
    hold(&vhp, view, 10);
    struct job vq, vover;
    queue_jobs(view, &vq, 1, 11);
    job_init(&vover, 12);
    scribble(&vover);
    cr_assert_eq(evexec_queue_work(loop, view, &vover.req, job_work, never_after), EAGAIN);
    cr_assert(data_untouched(&vover));
    let_go(&vhp);
    dispatch();
    cr_assert_eq(vover.after_calls, 0);
    cr_assert_eq(atomic_load(&vq.after_calls), 1);
    free_loop();
    held_pool_fini(&vhp);
    held_pool_fini(&hp);
}

Test(work, a_shut_down_pool_returns_eshutdown)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct evexec_pool *view = evexec_pool_new_limited(pool, 1);
    cr_assert_not_null(view);
    cr_assert_eq(evexec_pool_shutdown(pool, 0), 0);
    struct job j, v;
    job_init(&j, 1);
    scribble(&j);
    job_init(&v, 2);
    scribble(&v);
    cr_assert_eq(evexec_queue_work(loop, pool, &j.req, job_work, never_after), ESHUTDOWN);
    cr_assert_eq(evexec_queue_work(loop, view, &v.req, job_work, never_after), ESHUTDOWN,
                 "a view of a shut-down pool accepted a request");
    cr_assert(data_untouched(&j));
    cr_assert(data_untouched(&v));
    dispatch();
    cr_assert_eq(j.after_calls, 0);
    cr_assert_eq(v.after_calls, 0);
    free_loop();
    evexec_pool_free(view);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&j.ran) + atomic_load(&v.ran), 0);
}

static int failing_init(void *ctx)
{
    (void)ctx;
    return EPERM;
}

Test(work, a_broken_pool_fails_accepted_requests_with_ebroken_and_refuses_new_ones)
{
    setup();
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    cfg.thread_init = failing_init;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool);
    struct job j;
    job_init(&j, 1);
    cr_assert_eq(queue_job(pool, &j), 0);
    dispatch();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, EVEXEC_EBROKEN, "status %s", evexec_strerror(j.after_status));
    cr_assert_null(j.after_result);
    cr_assert_eq(atomic_load(&j.ran), 0);
    struct job later;
    job_init(&later, 2);
    scribble(&later);
    cr_assert_eq(evexec_queue_work(loop, pool, &later.req, job_work, never_after),
                 EVEXEC_EBROKEN);
    cr_assert(data_untouched(&later));
    free_loop();
    evexec_pool_free(pool);
    cr_assert_eq(later.after_calls, 0);
}

Test(work, a_null_pool_uses_the_default_pool)
{
    setup();
    struct evexec_pool *dflt = evexec_loop_default_pool(loop);
    cr_assert_not_null(dflt);
    struct evexec_pool_stats before = stats_of(dflt);
    struct job j;
    job_init(&j, 7);
    cr_assert_eq(queue_job(NULL, &j), 0);
    dispatch();
    struct evexec_pool_stats after = stats_of(dflt);
    cr_assert_eq(after.submitted - before.submitted, 1, "the request did not go to the default pool");
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, 0);
    cr_assert_not_null(j.after_result);
    cr_assert_eq(j.after_result, j.stored);
    free_loop(); /* owns and frees the default pool */
}

Test(work, a_null_pool_after_the_default_pool_was_shut_down_returns_eshutdown)
{
    setup();
    struct evexec_future *down = evexec_loop_shutdown_default_pool(loop, -1);
    cr_assert_not_null(down);
    struct job j;
    job_init(&j, 1);
    scribble(&j);
    cr_assert_eq(evexec_queue_work(loop, NULL, &j.req, job_work, never_after), ESHUTDOWN);
    cr_assert(untouched(&j));
    dispatch();
    cr_assert(evexec_future_done(down));
    evexec_future_release(down);
    cr_assert_eq(j.after_calls, 0);
    free_loop();
}

Test(work, the_request_keeps_its_documented_size)
{
    /* Part of the ABI: a program compiled against this header embeds it. */
    cr_assert_eq(sizeof(((struct evexec_work *)0)->evexec_private), EVEXEC_WORK_PRIVATE_SIZE);
    if (sizeof(void *) == 8)
        cr_assert_eq(sizeof(struct evexec_work), 192);
    cr_assert_eq(offsetof(struct evexec_work, data), 0);
}

static int slow_work(void *arg, void **result)
{
    (void)result;
    struct job *j = job_of(arg);
    sleep_ms(50);
    atomic_fetch_add(&j->ran, 1);
    return 0;
}

Test(work, the_loop_stays_alive_until_every_after_ran)
{
    setup();
    struct evexec_pool *pool = new_pool(2);
    enum { N = 4 };
    struct job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], i);
        cr_assert_eq(evexec_queue_work(loop, pool, &jobs[i].req, slow_work, job_after), 0);
    }
    /* A cancelled one too: its after is due on a later pass. */
    struct held_pool one;
    hold(&one, new_pool(1), 10);
    struct job cancelled;
    queue_jobs(one.pool, &cancelled, 1, 11);
    cr_assert(evexec_work_cancel(&cancelled.req));
    let_go(&one);
    dispatch(); /* nothing but the requests keeps the loop alive */
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&jobs[i].after_calls), 1,
                     "event_base_dispatch returned before request %d's after ran", i);
    cr_assert_eq(atomic_load(&cancelled.after_calls), 1);
    cr_assert_eq(atomic_load(&one.blocker.after_calls), 1);
    free_loop();
    evexec_pool_free(pool);
    held_pool_fini(&one);
}

/* evexec_loop_free with in_call set around it; the fixture's globals are
 * cleared as free_loop() does. */
static void free_loop_marked(void)
{
    in_call = true;
    evexec_loop_free(loop);
    in_call = false;
    loop = NULL;
    event_base_free(base);
    base = NULL;
}

Test(work, loop_free_with_queued_requests_calls_each_after_with_ecanceled_inside_loop_free_and_none_runs)
{
    setup();
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    enum { N = 5 };
    struct job jobs[N];
    queue_jobs(hp.pool, jobs, N, 0);
    free_loop_marked();
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        cr_assert_eq(atomic_load(&j->after_calls), 1, "request %d: after ran %d times by the "
                     "end of evexec_loop_free", i, atomic_load(&j->after_calls));
        cr_assert(j->after_in_call, "request %d: after ran outside evexec_loop_free", i);
        cr_assert(on_loop_thread(j->after_thread));
        cr_assert_eq(j->after_status, ECANCELED, "request %d: %s", i,
                     evexec_strerror(j->after_status));
        cr_assert_null(j->after_result);
    }
    held_pool_fini(&hp); /* joins the worker: it saw the rest of the queue */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&jobs[i].ran), 0, "request %d ran after evexec_loop_free", i);
        cr_assert_eq(atomic_load(&jobs[i].after_calls), 1);
    }
}

Test(work, loop_free_with_a_running_request_calls_its_after_on_the_worker_with_ecanceled_and_the_result)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct job j;
    job_init(&j, 1);
    j.gate = &gate;
    cr_assert_eq(queue_job(pool, &j), 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    free_loop_marked(); /* returns with the work still held: it never blocks on it */
    cr_assert_eq(atomic_load(&j.after_calls), 0, "after ran before the work returned");
    gate_open(&gate);
    cr_assert(after_calls_reach(&j, 1), "the running request's after never ran");
    cr_assert(!on_loop_thread(j.after_thread), "after of a request running at "
              "evexec_loop_free ran on the loop thread");
    cr_assert_eq(j.after_status, ECANCELED, "status %s", evexec_strerror(j.after_status));
    cr_assert_not_null(j.after_result, "the work's result did not reach after");
    cr_assert_eq(j.after_result, j.stored);
    cr_assert(!j.after_in_call);
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(atomic_load(&results_freed), 1);
}

Test(work, loop_free_asks_a_running_request_to_stop)
{
    setup();
    struct evexec_pool *pool = new_pool(1);
    struct job j;
    job_init(&j, 1);
    j.gate = &gate;
    j.wait_cancel = true; /* after the gate, until evexec_cancel_requested() */
    cr_assert_eq(queue_job(pool, &j), 0);
    cr_assert(gate_wait_arrived(&gate, 1));
    free_loop_marked();
    gate_open(&gate);
    cr_assert(after_calls_reach(&j, 1), "the running request's after never ran");
    cr_assert(j.saw_cancel, "evexec_loop_free did not ask the running work to stop");
    cr_assert_eq(j.after_status, ECANCELED, "status %s", evexec_strerror(j.after_status));
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
}

Test(work, loop_free_with_a_finished_undelivered_request_calls_its_after_once_with_ecanceled_and_the_result)
{
    setup();
    struct job j;
    job_init(&j, 1);
    struct evexec_pool *pool = finished_undelivered(&j);
    free_loop_marked();
    cr_assert_eq(atomic_load(&j.after_calls), 1, "after ran %d times by the end of "
                 "evexec_loop_free", atomic_load(&j.after_calls));
    cr_assert(j.after_in_call);
    cr_assert(on_loop_thread(j.after_thread));
    cr_assert_eq(j.after_status, ECANCELED, "status %s", evexec_strerror(j.after_status));
    cr_assert_eq(j.after_result, j.stored, "the work's result did not reach after");
    evexec_pool_free(pool);
    cr_assert_eq(atomic_load(&results_freed), 1);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
}

Test(work, a_cancelled_request_whose_after_is_still_due_at_loop_free_gets_it_once_inside_loop_free)
{
    setup();
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    struct job j;
    queue_jobs(hp.pool, &j, 1, 1);
    cr_assert(evexec_work_cancel(&j.req));
    cr_assert_eq(atomic_load(&j.after_calls), 0);
    free_loop_marked();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert(j.after_in_call);
    cr_assert_eq(j.after_status, ECANCELED);
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&j.ran), 0);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
}

Test(work, loop_free_with_requests_queued_and_running_on_the_default_pool_calls_every_after_once)
{
    setup();
    struct evexec_pool *dflt = evexec_loop_default_pool(loop);
    cr_assert_not_null(dflt);
    /* More than the default pool's most workers (32): every worker is held
     * on the gate, the rest stay queued. */
    enum { N = 48 };
    static struct job jobs[N];
    for (int i = 0; i < N; i++) {
        job_init(&jobs[i], i);
        jobs[i].gate = &gate;
        cr_assert_eq(queue_job(NULL, &jobs[i]), 0);
    }
    struct evexec_pool_stats st;
    unsigned running = 0;
    for (int i = 0; i < HANG_BOUND_MS; i++) {
        st = stats_of(dflt);
        if (st.running > 0 && st.running == st.threads && st.idle == 0 &&
            gate_arrived(&gate) == st.running)
            break;
        sleep_ms(1);
    }
    running = st.running;
    cr_assert_gt(running, 0);
    cr_assert_lt(running, N, "every request got a worker: none stayed queued");
    free_loop_marked();
    int inside = 0;
    for (int i = 0; i < N; i++)
        inside += atomic_load(&jobs[i].after_calls);
    cr_assert_geq(inside, N - (int)gate_arrived(&gate),
                  "queued requests of the default pool did not hear ECANCELED inside "
                  "evexec_loop_free");
    gate_open(&gate);
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        cr_assert(after_calls_reach(j, 1), "request %d: no after", i);
        cr_assert_eq(j->after_status, ECANCELED, "request %d: %s", i,
                     evexec_strerror(j->after_status));
        if (atomic_load(&j->ran))
            cr_assert_eq(j->after_result, j->stored);
        else
            cr_assert(j->after_in_call && on_loop_thread(j->after_thread));
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&jobs[i].after_calls), 1, "request %d: after ran %d times", i,
                     atomic_load(&jobs[i].after_calls));
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made));
}

Test(work, loop_free_takes_only_its_own_requests_out_of_a_shared_pool)
{
    setup();
    struct event_base *base_b = event_base_new();
    cr_assert_not_null(base_b);
    struct evexec_loop *loop_b = evexec_loop_new(base_b);
    cr_assert_not_null(loop_b);
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    enum { N = 3 };
    struct job mine[N], theirs[N];
    for (int i = 0; i < N; i++) {
        queue_jobs(hp.pool, &mine[i], 1, i);
        job_init(&theirs[i], 10 + i);
        cr_assert_eq(evexec_queue_work(loop_b, hp.pool, &theirs[i].req, job_work, job_after), 0);
    }
    free_loop_marked(); /* loop A */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&mine[i].after_calls), 1);
        cr_assert_eq(mine[i].after_status, ECANCELED);
        cr_assert_eq(atomic_load(&theirs[i].after_calls), 0, "loop B's request %d was "
                     "delivered by loop A's teardown", i);
    }
    let_go(&hp);
    cr_assert(dispatch_bounded(base_b, loop_b, WATCHDOG_SECONDS));
    for (int i = 0; i < N; i++) {
        cr_assert_eq(atomic_load(&theirs[i].after_calls), 1);
        cr_assert_eq(theirs[i].after_status, 0, "loop B's request %d: %s", i,
                     evexec_strerror(theirs[i].after_status));
        cr_assert_eq(atomic_load(&theirs[i].ran), 1);
        cr_assert_eq(atomic_load(&mine[i].ran), 0);
    }
    evexec_loop_free(loop_b);
    event_base_free(base_b);
    held_pool_fini(&hp);
}

Test(work, pool_shutdown_cancel_pending_gives_queued_requests_ecanceled)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 100);
    struct evexec_pool *pool = hp.pool;
    enum { N = 4 };
    struct job jobs[N];
    queue_jobs(pool, jobs, N, 0);
    in_call = true;
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    in_call = false;
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&jobs[i].after_calls), 0, "after ran inside the shutdown");
    let_go(&hp);
    dispatch();
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        cr_assert_eq(atomic_load(&j->after_calls), 1);
        cr_assert_eq(j->after_status, ECANCELED, "request %d: %s", i,
                     evexec_strerror(j->after_status));
        cr_assert(on_loop_thread(j->after_thread));
        cr_assert(!j->after_in_call);
        cr_assert_null(j->after_result);
    }
    cr_assert_eq(atomic_load(&hp.blocker.after_calls), 1);
    cr_assert_eq(hp.blocker.after_status, 0, "the running request was not cancelled");
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(pool);
    assert_balanced(&st, "after the shutdown");
    cr_assert_eq(st.cancelled, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(atomic_load(&jobs[i].ran), 0);
    free_loop();
    held_pool_fini(&hp);
}

Test(work, cancel_of_a_request_that_a_pool_shutdown_cancelled_returns_true)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 0);
    struct job j;
    queue_jobs(hp.pool, &j, 1, 1);
    cr_assert_eq(evexec_pool_shutdown(hp.pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), 0);
    /* It has not started and never will: it is cancelled already. */
    bool cancelled = evexec_work_cancel(&j.req);
    let_go(&hp);
    dispatch();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(j.after_status, ECANCELED);
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&j.ran), 0);
    cr_assert(cancelled, "evexec_work_cancel returned false for a request that never ran "
              "and was cancelled already (by the pool's shutdown)");
    free_loop();
}

/* The shutdown of the race below, from another thread. */
struct shutter {
    struct evexec_pool *pool;
    atomic_bool started;
};

static void *shutter_main(void *arg)
{
    struct shutter *sh = arg;
    atomic_store(&sh->started, true);
    evexec_pool_shutdown(sh->pool, EVEXEC_SHUTDOWN_CANCEL_PENDING);
    return NULL;
}

/* A shutdown takes the whole queue at once and then cancels the requests one
 * by one: a cancel in between must still answer true, since none of them
 * will ever run. The delays only move the cancels across that window; no
 * outcome depends on them. */
Test(work, cancel_racing_a_pool_shutdown_on_another_thread_returns_true_for_every_request_that_never_runs)
{
    setup();
    enum { N = 4000 };
    static struct job jobs[N];
    static const long delays_us[] = {0, 10, 50, 200, 1000};
    long wrong = 0;
    for (size_t d = 0; d < sizeof(delays_us) / sizeof(delays_us[0]); d++) {
        struct held_pool hp;
        hold_with_task(&hp, new_pool(1));
        for (int i = 0; i < N; i++) {
            job_init(&jobs[i], i);
            jobs[i].store_result = false;
            cr_assert_eq(queue_job(hp.pool, &jobs[i]), 0);
        }
        struct shutter sh = {.pool = hp.pool};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, shutter_main, &sh), 0);
        while (!atomic_load(&sh.started))
            ;
        spin_us(delays_us[d]);
        long falses = 0;
        for (int i = 0; i < N; i++)
            falses += !evexec_work_cancel(&jobs[i].req); /* the only worker is held */
        pthread_join(t, NULL);
        let_go(&hp);
        dispatch();
        for (int i = 0; i < N; i++) {
            cr_assert_eq(atomic_load(&jobs[i].after_calls), 1);
            cr_assert_eq(jobs[i].after_status, ECANCELED);
            cr_assert_eq(atomic_load(&jobs[i].ran), 0);
        }
        if (falses)
            cr_log_warn("delay %ld us: %ld of %d cancels answered false", delays_us[d], falses, N);
        wrong += falses;
        held_pool_fini(&hp);
    }
    cr_assert_eq(wrong, 0, "evexec_work_cancel answered false %ld times for requests that "
                 "never ran (a pool shutdown on another thread was cancelling them)", wrong);
    free_loop();
}

/* What evexec_queue_work answered when an after tried to queue again from
 * inside evexec_loop_free. */
static int requeue_in_free_rc = -1;
static struct evexec_pool *requeue_in_free_pool;

static void requeue_in_free_after(struct evexec_work *req, int status, void *result)
{
    job_after(req, status, result);
    if (status == ECANCELED)
        requeue_in_free_rc = evexec_queue_work(loop, requeue_in_free_pool, req, job_work,
                                               job_after);
}

Test(work, queueing_from_an_after_called_inside_loop_free_returns_eclosed)
{
    setup();
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    requeue_in_free_pool = hp.pool;
    struct job j;
    job_init(&j, 1);
    cr_assert_eq(evexec_queue_work(loop, hp.pool, &j.req, job_work, requeue_in_free_after), 0);
    free_loop_marked();
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    cr_assert_eq(requeue_in_free_rc, EVEXEC_ECLOSED, "got %s",
                 evexec_strerror(requeue_in_free_rc));
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&j.ran), 0);
    cr_assert_eq(atomic_load(&j.after_calls), 1);
}

/* The order in which callbacks and afters ran. */
static int order_log[8];
static int order_len;

static void order_soon(void *arg)
{
    order_log[order_len++] = (int)(intptr_t)arg;
}

static void order_after(struct evexec_work *req, int status, void *result)
{
    job_after(req, status, result);
    order_log[order_len++] = job_of(req)->id;
}

Test(work, a_cancelled_requests_after_keeps_its_place_among_call_soon_callbacks)
{
    setup();
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    struct job j;
    job_init(&j, 2);
    cr_assert_eq(evexec_queue_work(loop, hp.pool, &j.req, job_work, order_after), 0);
    cr_assert_eq(evexec_call_soon(loop, order_soon, (void *)1), 0);
    cr_assert(evexec_work_cancel(&j.req));
    cr_assert_eq(evexec_call_soon(loop, order_soon, (void *)3), 0);
    let_go(&hp);
    dispatch();
    cr_assert_eq(order_len, 3);
    cr_assert_eq(order_log[0], 1);
    cr_assert_eq(order_log[1], 2, "the cancelled request's after left the loop's queue order");
    cr_assert_eq(order_log[2], 3);
    cr_assert_eq(j.after_status, ECANCELED);
    free_loop();
    held_pool_fini(&hp);
}

/* How many works run at once, and the most seen. */
static atomic_int gauge_now, gauge_max;

static int gauged_work(void *arg, void **result)
{
    (void)result;
    struct job *j = job_of(arg);
    int now = atomic_fetch_add(&gauge_now, 1) + 1;
    int seen = atomic_load(&gauge_max);
    while (now > seen && !atomic_compare_exchange_weak(&gauge_max, &seen, now))
        ;
    if (j->gate)
        gate_pass(j->gate);
    else
        sched_yield();
    atomic_fetch_add(&j->ran, 1);
    atomic_fetch_sub(&gauge_now, 1);
    return 0;
}

Test(work, requests_on_a_limited_view_run_at_most_max_running_at_a_time)
{
    setup();
    struct evexec_pool *pool = new_pool(4);
    struct evexec_pool *view = evexec_pool_new_limited(pool, 2);
    cr_assert_not_null(view);
    enum { HELD = 6, FREE = 200 };
    struct job held[HELD];
    for (int i = 0; i < HELD; i++) {
        job_init(&held[i], i);
        held[i].gate = &gate;
        cr_assert_eq(evexec_queue_work(loop, view, &held[i].req, gauged_work, job_after), 0);
    }
    cr_assert(gate_wait_arrived(&gate, 2));
    struct evexec_pool_stats st = stats_of(view);
    cr_assert_eq(st.running, 2);
    cr_assert_eq(st.queued, HELD - 2, "the view let more than 2 requests go");
    assert_balanced(&st, "two running");
    gate_open(&gate);
    dispatch();
    cr_assert_eq(atomic_load(&gauge_max), 2);
    static struct job more[FREE];
    atomic_store(&gauge_max, 0);
    for (int i = 0; i < FREE; i++) {
        job_init(&more[i], i);
        cr_assert_eq(evexec_queue_work(loop, view, &more[i].req, gauged_work, job_after), 0);
    }
    dispatch();
    cr_assert_leq(atomic_load(&gauge_max), 2);
    for (int i = 0; i < FREE; i++)
        cr_assert_eq(atomic_load(&more[i].after_calls), 1);
    for (int i = 0; i < HELD; i++)
        cr_assert_eq(atomic_load(&held[i].after_calls), 1);
    st = stats_of(view);
    assert_balanced(&st, "all done");
    cr_assert_eq(st.completed, HELD + FREE);
    free_loop();
    evexec_pool_free(view);
    evexec_pool_free(pool);
}

Test(work, a_request_queued_in_a_view_that_is_cancelled_never_runs)
{
    setup();
    struct evexec_pool *pool = new_pool(2);
    struct evexec_pool *view = evexec_pool_new_limited(pool, 1);
    cr_assert_not_null(view);
    struct held_pool hp;
    hold(&hp, view, 0);
    struct job j;
    queue_jobs(view, &j, 1, 1);
    cr_assert(evexec_work_cancel(&j.req));
    run_passes_until_after(&j);
    cr_assert_eq(atomic_load(&j.after_calls), 1, "the cancelled request's after waited for "
                 "the view's running request");
    cr_assert_eq(j.after_status, ECANCELED);
    let_go(&hp);
    dispatch();
    cr_assert_eq(evexec_pool_shutdown(view, EVEXEC_SHUTDOWN_WAIT), 0);
    struct evexec_pool_stats st = stats_of(view);
    assert_balanced(&st, "view");
    cr_assert_eq(st.cancelled, 1);
    cr_assert_eq(atomic_load(&j.ran), 0, "a cancelled request of a view ran");
    cr_assert_eq(atomic_load(&j.after_calls), 1);
    free_loop();
    held_pool_fini(&hp);
    evexec_pool_free(pool);
}

/* ---- allocations ------------------------------------------------------ */

#define ALLOC_ROUNDS 100

#ifdef EVEXEC_FAULT_INJECTION
long evexec__fault_alloc_count(void);
#define LIBRARY_ALLOCS() evexec__fault_alloc_count()
#else
#define LIBRARY_ALLOCS() 0L
#endif

static int token_work(void *arg, void **result)
{
    static int token;
    (void)arg;
    *result = &token;
    return 0;
}

static struct evexec_pool *alloc_pool;
static int alloc_rounds, alloc_failures;
static long alloc_before, alloc_total;     /* the counting malloc: every allocation */
static long lib_before, lib_total;         /* the library's own (fault-injection builds) */

/* Each after queues the request again, so the whole round trip -- queue,
 * run, deliver -- is counted on the loop thread and on the worker. */
static void alloc_after(struct evexec_work *req, int status, void *result)
{
    (void)result;
    if (status != 0)
        alloc_failures++;
    if (++alloc_rounds < ALLOC_ROUNDS) {
        if (evexec_queue_work(loop, alloc_pool, req, token_work, alloc_after) != 0)
            alloc_failures++;
        return;
    }
    alloc_total = atomic_load(&counted_allocs) - alloc_before;
    lib_total = LIBRARY_ALLOCS() - lib_before;
    count_this_thread = false;
}

static void alloc_start(void *arg)
{
    count_this_thread = true;
    alloc_before = atomic_load(&counted_allocs);
    lib_before = LIBRARY_ALLOCS();
    if (evexec_queue_work(loop, alloc_pool, arg, token_work, alloc_after) != 0)
        alloc_failures++;
}

static void noop_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Counted two ways, whichever the build allows: every allocation of the
 * process on the loop thread and the worker (a malloc of this program, not
 * under sanitizers or valgrind), and the library's own allocations (the
 * fault-injection build counts every one it makes). */
Test(work, no_allocation_per_request)
{
    bool count_malloc = false, count_library = false;
#ifndef TESTUTIL_NO_INTERPOSING
    if (!RUNNING_ON_VALGRIND) {
        cr_assert(counting_malloc_works(), "the counting malloc is not in effect");
        count_malloc = true;
    }
#endif
#ifdef EVEXEC_FAULT_INJECTION
    count_library = true;
#endif
    if (!count_malloc && !count_library)
        cr_skip_test("allocations cannot be counted in this build (sanitizer or valgrind, "
                     "no fault injection)");

    setup();
    alloc_pool = counting_pool_new();
    cr_assert_not_null(alloc_pool, "evexec_pool_new: %s", evexec_strerror(errno));
    /* Warm up: the worker thread, libevent's bookkeeping for the wakeup,
     * and libevent's timer heap, which the loop uses to run its queue on
     * the next pass when work arrives at the end of a pass (libevent
     * allocates the heap on the first timer of a base, once). */
    struct event *timer = evtimer_new(base, noop_timer, NULL);
    cr_assert_not_null(timer);
    struct timeval later = {1, 0};
    cr_assert_eq(evtimer_add(timer, &later), 0);
    evtimer_del(timer);
    event_free(timer);
    struct job warm;
    job_init(&warm, 0);
    warm.requeue = 10;
    warm.pool = alloc_pool;
    cr_assert_eq(queue_job(alloc_pool, &warm), 0);
    dispatch();
    cr_assert_eq(atomic_load(&warm.after_calls), 11);

    struct evexec_work req;
    memset(&req, 0, sizeof(req));
    cr_assert_eq(evexec_call_soon(loop, alloc_start, &req), 0);
    dispatch();
    cr_assert_eq(alloc_failures, 0);
    cr_assert_eq(alloc_rounds, ALLOC_ROUNDS);
    if (count_malloc) {
        cr_log_info("requests: %ld allocation(s) over %d round trips", alloc_total,
                    ALLOC_ROUNDS);
        cr_assert_eq(alloc_total, 0, "%ld allocations over %d requests", alloc_total,
                     ALLOC_ROUNDS);
    }
    if (count_library) {
        cr_log_info("requests: %ld allocation(s) of the library over %d round trips",
                    lib_total, ALLOC_ROUNDS);
        cr_assert_eq(lib_total, 0, "the library made %ld allocations over %d requests",
                     lib_total, ALLOC_ROUNDS);
    }
    free_loop();
    evexec_pool_free(alloc_pool);
}

/* ---- statistics ----------------------------------------------------------- */

Test(work, pool_stats_balance_after_cancelled_requests)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 0);
    struct evexec_pool *pool = hp.pool;
    enum { N = 4 };
    struct job jobs[N];
    queue_jobs(pool, jobs, N, 1);
    struct evexec_pool_stats st = stats_of(pool);
    assert_balanced(&st, "one running, four queued");
    cr_assert_eq(st.running, 1);
    cr_assert_eq(st.queued, N);
    cr_assert(evexec_work_cancel(&jobs[0].req));
    cr_assert(evexec_work_cancel(&jobs[2].req));
    st = stats_of(pool);
    assert_balanced(&st, "two cancelled");
    let_go(&hp);
    dispatch();
    cr_assert_eq(evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), 0);
    st = stats_of(pool);
    assert_balanced(&st, "joined");
    cr_assert_eq(st.submitted, N + 1);
    cr_assert_eq(st.cancelled, 2);
    cr_assert_eq(st.completed, 3);
    cr_assert_eq(st.queued, 0);
    cr_assert_eq(st.running, 0);
    free_loop();
    held_pool_fini(&hp);
}

/* ---- fork ------------------------------------------------------------------- */

/* In the child: every request entry point refuses the parent's loop, pool
 * and requests with EVEXEC_EFORKED, and the child's own objects work.
 * @return 0, or the number of the first failed check. */
static int child_checks(struct evexec_pool *parent_pool, struct job *parent_queued,
                        struct job *parent_running)
{
    struct evexec_loop *parent_loop = loop;
    struct evexec_pool *pool = evexec_pool_new(NULL);
    struct event_base *b = event_base_new();
    struct evexec_loop *l = b ? evexec_loop_new(b) : NULL;
    if (!pool || !l)
        return 1;
    struct job j;
    job_init(&j, 1);
    scribble(&j);
    if (evexec_queue_work(parent_loop, pool, &j.req, job_work, never_after) != EVEXEC_EFORKED)
        return 2;
    if (evexec_queue_work(parent_loop, NULL, &j.req, job_work, never_after) != EVEXEC_EFORKED)
        return 3;
    if (evexec_queue_work(parent_loop, parent_pool, &j.req, job_work, never_after) !=
        EVEXEC_EFORKED)
        return 4;
    if (evexec_queue_work(l, parent_pool, &j.req, job_work, never_after) != EVEXEC_EFORKED)
        return 5;
    bool j_untouched = data_untouched(&j); /* checked last: the others do not depend on it */
    errno = 0;
    if (evexec_work_cancel(&parent_queued->req) || errno != EVEXEC_EFORKED)
        return 7;
    errno = 0;
    if (evexec_work_cancel(&parent_running->req) || errno != EVEXEC_EFORKED)
        return 8;
    /* The child's own loop and pools. */
    loop = l;
    struct job mine, dflt;
    job_init(&mine, 2);
    job_init(&dflt, 3);
    if (queue_job(pool, &mine) != 0 || queue_job(NULL, &dflt) != 0)
        return 9;
    if (!dispatch_bounded(b, l, WATCHDOG_SECONDS))
        return 10;
    if (atomic_load(&mine.after_calls) != 1 || mine.after_status != 0 ||
        atomic_load(&dflt.after_calls) != 1 || dflt.after_status != 0)
        return 11;
    if (j.after_calls != 0 || atomic_load(&parent_queued->after_calls) != 0 ||
        atomic_load(&parent_running->after_calls) != 0 || atomic_load(&parent_queued->ran) != 0)
        return 12;
    evexec_loop_free(l);
    event_base_free(b);
    evexec_pool_free(pool);
    if (!j_untouched)
        return 6;
    return 0;
}

Test(work, in_a_forked_child_every_request_entry_point_answers_eforked)
{
    setup();
    struct held_pool hp;
    hold(&hp, new_pool(1), 1);
    struct job *running = &hp.blocker;
    struct job queued;
    queue_jobs(hp.pool, &queued, 1, 2);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0)
        _exit(child_checks(hp.pool, &queued, running));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR);
    cr_assert(WIFEXITED(status), "the child died of signal %d",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0, "child check %d failed%s", WEXITSTATUS(status),
                 WEXITSTATUS(status) == 6 ? " (a refused request was written to)" : "");
    /* The parent is unaffected. */
    let_go(&hp);
    dispatch();
    cr_assert_eq(atomic_load(&running->after_calls), 1);
    cr_assert_eq(running->after_status, 0);
    cr_assert_eq(atomic_load(&queued.after_calls), 1);
    cr_assert_eq(queued.after_status, 0);
    free_loop();
    held_pool_fini(&hp);
}

/* ---- requests and futures on one worker ----------------------------------- */

#define MIXED 40

static struct job mixed_jobs[MIXED];
static struct evexec_future *mixed_futures[MIXED];
static bool mixed_is_request[MIXED];
static int mixed_out_of_order;
static int mixed_delivered;

static bool mixed_done(int i)
{
    return mixed_is_request[i] ? atomic_load(&mixed_jobs[i].after_calls) > 0
                               : evexec_future_done(mixed_futures[i]);
}

/* At item k's delivery every earlier item is delivered and no later one. */
static void mixed_check(int k, bool later_too)
{
    for (int i = 0; i < MIXED; i++) {
        if (i == k)
            continue;
        if (i < k && !mixed_done(i))
            mixed_out_of_order++;
        if (later_too && i > k && mixed_done(i))
            mixed_out_of_order++;
    }
}

static void mixed_after(struct evexec_work *req, int status, void *result)
{
    job_after(req, status, result);
    mixed_check(job_of(req)->id, true);
    mixed_delivered++;
}

/* A future's done callbacks run from the loop's queue after it completed,
 * possibly behind later completions: only earlier items are checked here;
 * the later ones are checked when they are delivered. */
static void mixed_future_done(struct evexec_future *f, void *arg)
{
    (void)f;
    mixed_check((int)(intptr_t)arg, false);
    mixed_delivered++;
}

static int value_work(void *arg, void **result)
{
    *result = make_result((int)(intptr_t)arg);
    return 0;
}

Test(work, run_in_executor_futures_and_requests_mixed_on_one_pool_deliver_in_submission_order_on_a_single_worker)
{
    setup();
    struct held_pool hp;
    hold_with_task(&hp, new_pool(1));
    struct evexec_pool *pool = hp.pool;
    for (int i = 0; i < MIXED; i++) {
        mixed_is_request[i] = (i * 7) % 3 != 1;
        if (mixed_is_request[i]) {
            job_init(&mixed_jobs[i], i);
            cr_assert_eq(evexec_queue_work(loop, pool, &mixed_jobs[i].req, job_work, mixed_after),
                         0);
        } else {
            mixed_futures[i] = evexec_run_in_executor(loop, pool, value_work, (void *)(intptr_t)i,
                                                      free_result);
            cr_assert_not_null(mixed_futures[i]);
            cr_assert_eq(evexec_future_add_done_callback(mixed_futures[i], mixed_future_done,
                                                         (void *)(intptr_t)i), 0);
        }
    }
    let_go(&hp); /* one worker drains them all, in order */
    dispatch();
    cr_assert_eq(mixed_delivered, MIXED);
    cr_assert_eq(mixed_out_of_order, 0, "%d deliveries out of submission order",
                 mixed_out_of_order);
    for (int i = 0; i < MIXED; i++) {
        if (mixed_is_request[i]) {
            cr_assert_eq(atomic_load(&mixed_jobs[i].after_calls), 1);
            continue;
        }
        void *r = NULL;
        cr_assert_eq(evexec_future_result(mixed_futures[i], &r), 0);
        cr_assert_eq(*(int *)r, i);
        evexec_future_release(mixed_futures[i]);
    }
    free_loop();
    held_pool_fini(&hp);
    cr_assert_eq(atomic_load(&results_freed), atomic_load(&results_made));
}
