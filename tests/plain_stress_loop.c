/*
 * plain_stress_loop.c -- a stress run of the loop half, written for
 * ThreadSanitizer (a plain TAP program: Criterion cannot run under TSan),
 * and run by every build.
 *
 * Phase A: a loop drives run_in_executor and wrap_cfuture tasks on a pool of
 * 2-4 workers, cancelling and releasing futures at random points, while 2-4
 * foreign threads post with evexec_call_soon_threadsafe. Checked at the end:
 *   - every done callback ran exactly once;
 *   - no task ran after a cancel that found it queued: for wrapped tasks, a
 *     cfuture left CANCELLED by the cancel must never run; for every task,
 *     one that starts after its loop-side cancel returned must see
 *     evexec_cancel_requested() (else the cancel found it queued and it ran
 *     anyway);
 *   - no task ran twice;
 *   - every foreign post arrived, in per-producer order;
 *   - every result produced was freed exactly once (ASan/valgrind catch a
 *     double free; the counters catch a leak or a stray free).
 * Phase B: the same traffic, then evexec_loop_free while work is in flight
 * (own pool and the loop's default pool): no callback runs after it, every
 * late result is freed.
 * Phase C: more loops than CPUs, each in its own thread with a window of
 * tasks in flight on one shared pool and a foreign producer: the wakeups of
 * loops that yield their CPU before a drain (see phase_c) lose nothing.
 *
 * Bounded by counts and by time (phases stop starting work after a few
 * seconds); a watchdog breaks a dispatch that runs away. The seed is printed
 * and read from EVEXEC_STRESS_SEED to replay a run.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"
#include "testutil.h"

/* ---- randomness -------------------------------------------------------------- */

/* The seed of every stream (rnd_next, testutil.h): each stream is one
 * thread's or one task's, never shared. */
static uint64_t seed;

static uint64_t loop_rng; /* loop thread only */

/* A dispatch runs under a watchdog (testutil.h) with this bound: more than
 * the Criterion suites' 20 s, as a phase itself runs for seconds. */
#define STRESS_WATCHDOG_SECONDS 40

/* ---- tasks ----------------------------------------------------------------- */

static atomic_long results_produced;
static atomic_long results_freed;

static void free_result(void *r)
{
    atomic_fetch_add(&results_freed, 1);
    free(r);
}

struct task {
    /* shared with the worker */
    uint64_t rng_seed;              /* what the work does, decided up front */
    atomic_int runs;                /* times the work function was entered */
    atomic_bool cancel_returned;    /* the loop-side cancel returned true */
    atomic_bool ran_after_cancel;   /* started after it, without a cancel request */
    /* loop thread only */
    struct evexec_future *f;        /* NULL once the test released it */
    struct evexec_cfuture *cf;      /* wrapped tasks: the cfuture we submitted */
    bool submitted;
    bool cf_cancelled_by_cancel;    /* our cancel left cf CANCELLED: it must never run */
    int done_runs;
    bool take;                      /* take the result in the done callback */
};

/* Work: a little spinning or sleeping, sometimes an error, usually a result;
 * long ones poll evexec_cancel_requested(). */
static int task_work(void *arg, void **result)
{
    struct task *t = arg;
    /* Entered: look at the loop's cancel only now. If it returned before we
     * started, our cfuture was RUNNING when cancelled (else we would not
     * run), so the cancel request must be visible. */
    atomic_fetch_add(&t->runs, 1);
    if (atomic_load(&t->cancel_returned) && !evexec_cancel_requested())
        atomic_store(&t->ran_after_cancel, true);
    uint64_t st = t->rng_seed;
    unsigned kind = rnd_below(&st, 20);
    if (kind == 0) {
        /* long: up to 5 ms, stops early when cancelled */
        for (int i = 0; i < 50 && !evexec_cancel_requested(); i++)
            usleep(100);
    } else if (kind < 6) {
        usleep(rnd_below(&st, 100));
    } else {
        volatile unsigned spin = rnd_below(&st, 2000);
        while (spin)
            spin = spin - 1;
    }
    if (kind == 18)
        return EIO;
    if (kind == 19) {
        /* an error with a result stored anyway: the library frees it */
        *result = malloc(16);
        if (*result)
            atomic_fetch_add(&results_produced, 1);
        return EPERM;
    }
    *result = malloc(16);
    if (!*result)
        return ENOMEM;
    atomic_fetch_add(&results_produced, 1);
    return 0;
}

/* ---- foreign producers ------------------------------------------------------ */

#define MAX_PRODUCERS 4

struct producer {
    int id;
    long max_posts;
    double stop_at;
    struct evexec_loop *loop;
    /* producer thread */
    long posted;
    long failures;
    /* loop thread */
    long next_seq;
    long arrived;
    long out_of_order;
    bool finished;    /* its end marker arrived */
    long end_count;   /* what the end marker said it posted */
};

static struct producer producers[MAX_PRODUCERS];
static int nproducers;
static int producers_finished;
static void producers_maybe_done(struct evexec_loop *loop);

static void producer_item(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    struct producer *p = &producers[v >> 40];
    long seq = (long)(v & ((1ull << 40) - 1));
    if (seq != p->next_seq)
        p->out_of_order++;
    p->next_seq = seq + 1;
    p->arrived++;
}

static void producer_end(void *arg)
{
    struct producer *p = arg;
    p->finished = true;
    p->end_count = p->posted; /* written before the post: FIFO makes it visible */
    producers_finished++;
    producers_maybe_done(p->loop);
}

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    for (long seq = 0; seq < p->max_posts; seq++) {
        if ((seq & 255) == 0 && now_s() > p->stop_at)
            break;
        uintptr_t v = ((uintptr_t)p->id << 40) | (uintptr_t)seq;
        if (evexec_call_soon_threadsafe(p->loop, producer_item, (void *)v) != 0) {
            p->failures++;
            break;
        }
        p->posted++;
        if ((seq & 1023) == 0)
            sched_yield();
    }
    evexec_call_soon_threadsafe(p->loop, producer_end, p);
    return NULL;
}

/* ---- phase A ------------------------------------------------------------------ */

struct phase {
    struct event_base *base;
    struct evexec_loop *loop;
    struct evexec_pool *pool;
    struct task *tasks;
    int ntasks;
    int next;                 /* next task to submit */
    int settled;              /* tasks whose done callback ran */
    int nsubmitted;           /* tasks submitted successfully */
    int submit_failures;
    double stop_submitting_at;
    struct event *driver;
    bool producers_done;
    bool tasks_done;
    bool use_default_pool;    /* phase B: some tasks on the loop's default pool */
};

static struct phase A, B;

static void phase_maybe_finish(struct phase *ph)
{
    if (ph->tasks_done && ph->producers_done && ph->driver) {
        event_del(ph->driver);
        evexec_loop_unref(ph->loop);
        ph->driver = NULL; /* freed by the phase */
    }
}

static void producers_maybe_done(struct evexec_loop *loop)
{
    (void)loop;
    if (producers_finished == nproducers) {
        A.producers_done = true;
        phase_maybe_finish(&A);
    }
}

static void task_done(struct evexec_future *f, void *arg)
{
    struct task *t = arg;
    t->done_runs++;
    if (t->done_runs == 1)
        A.settled++;
    void *r = NULL;
    if (t->take && evexec_future_take_result(f, &r) == 0)
        free_result(r); /* ours now: counted like the library's frees */
    else
        (void)evexec_future_result(f, &r);
    /* Sometimes drop our reference right here, inside the callback. */
    if (t->f == f && rnd_below(&loop_rng, 3) == 0) {
        evexec_future_release(f);
        t->f = NULL;
    }
}

static void submit_one(struct phase *ph, struct task *t, evexec_future_cb done)
{
    t->rng_seed = rnd_next(&loop_rng);
    t->take = rnd_below(&loop_rng, 4) == 0;
    struct evexec_pool *pool = ph->pool;
    if (ph->use_default_pool && rnd_below(&loop_rng, 3) == 0)
        pool = NULL;
    if (pool && rnd_below(&loop_rng, 3) == 0) {
        t->cf = evexec_pool_submit(pool, task_work, t, free_result);
        t->f = t->cf ? evexec_wrap_cfuture(ph->loop, t->cf) : NULL;
    } else {
        t->f = evexec_run_in_executor(ph->loop, pool, task_work, t, free_result);
    }
    if (!t->f || evexec_future_add_done_callback(t->f, done, t) != 0) {
        ph->submit_failures++;
        return;
    }
    t->submitted = true;
    ph->nsubmitted++;
    /* Sometimes release at once: in-flight work keeps its own reference. */
    if (rnd_below(&loop_rng, 5) == 0) {
        evexec_future_release(t->f);
        t->f = NULL;
    }
}

static void cancel_one(struct task *t)
{
    if (!t->f)
        return; /* released: we can no longer cancel it */
    if (evexec_future_cancel(t->f)) {
        atomic_store(&t->cancel_returned, true);
        if (t->cf && evexec_cfuture_state(t->cf) == EVEXEC_CANCELLED)
            t->cf_cancelled_by_cancel = true;
    }
}

/* Every millisecond: submit a batch, cancel a few, release a few. */
static void drive(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct phase *ph = arg;
    if (ph->next < ph->ntasks && now_s() > ph->stop_submitting_at)
        ph->ntasks = ph->next; /* out of time: stop starting work */
    unsigned batch = 1 + rnd_below(&loop_rng, 16);
    for (unsigned i = 0; i < batch && ph->next < ph->ntasks; i++)
        submit_one(ph, &ph->tasks[ph->next++], task_done);
    for (int i = 0; i < 4 && ph->next > 0; i++) {
        /* Mostly recent tasks, which are likely still queued or running. */
        unsigned span = (unsigned)ph->next;
        if (rnd_below(&loop_rng, 4) != 0 && span > 32)
            span = 32;
        struct task *t = &ph->tasks[ph->next - 1 - (int)rnd_below(&loop_rng, span)];
        if (rnd_below(&loop_rng, 2) == 0)
            cancel_one(t);
        else if (t->f && rnd_below(&loop_rng, 4) == 0) {
            evexec_future_release(t->f);
            t->f = NULL;
        }
    }
    if (ph->next == ph->ntasks && ph->settled == ph->nsubmitted) {
        ph->tasks_done = true;
        phase_maybe_finish(ph);
    }
}

static void phase_check_tasks(struct phase *ph, const char *name, bool callbacks_exactly_once)
{
    int bad_done = 0, ran_twice = 0, ran_after_cancel = 0, cf_ran = 0, cancelled = 0;
    for (int i = 0; i < ph->next; i++) {
        struct task *t = &ph->tasks[i];
        if (!t->submitted)
            continue;
        if (callbacks_exactly_once ? t->done_runs != 1 : t->done_runs > 1)
            bad_done++;
        if (atomic_load(&t->runs) > 1)
            ran_twice++;
        if (atomic_load(&t->ran_after_cancel))
            ran_after_cancel++;
        if (t->cf_cancelled_by_cancel && atomic_load(&t->runs) != 0)
            cf_ran++;
        cancelled += atomic_load(&t->cancel_returned);
    }
    tap(bad_done == 0, "%s: every done callback ran %s (%d wrong of %d tasks, %d cancelled)",
        name, callbacks_exactly_once ? "exactly once" : "at most once", bad_done, ph->next,
        cancelled);
    tap(ran_twice == 0, "%s: no task ran twice (%d did)", name, ran_twice);
    tap(ran_after_cancel == 0 && cf_ran == 0,
        "%s: no task ran after a cancel that found it queued (%d without cancel request, "
        "%d cancelled cfutures ran)", name, ran_after_cancel, cf_ran);
}

static void release_all(struct phase *ph)
{
    for (int i = 0; i < ph->next; i++) {
        evexec_future_release(ph->tasks[i].f);
        ph->tasks[i].f = NULL;
        evexec_cfuture_release(ph->tasks[i].cf);
        ph->tasks[i].cf = NULL;
    }
}

static void phase_a(unsigned workers, int ntasks, long posts_each, double seconds)
{
    memset(&A, 0, sizeof(A));
    A.base = event_base_new();
    A.loop = A.base ? evexec_loop_new(A.base) : NULL;
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = workers;
    A.pool = evexec_pool_new(&cfg);
    A.tasks = calloc((size_t)ntasks, sizeof(*A.tasks));
    if (!A.loop || !A.pool || !A.tasks) {
        tap(false, "phase A: setup");
        return;
    }
    A.ntasks = ntasks;
    A.stop_submitting_at = now_s() + seconds;
    struct event *driver = event_new(A.base, -1, EV_PERSIST, drive, &A);
    A.driver = driver;
    struct timeval ms = {0, 1000};
    event_add(driver, &ms);
    evexec_loop_ref(A.loop); /* the producers are foreign: keep listening */

    producers_finished = 0;
    pthread_t threads[MAX_PRODUCERS];
    for (int i = 0; i < nproducers; i++) {
        producers[i] = (struct producer){.id = i, .max_posts = posts_each,
                                         .stop_at = now_s() + seconds, .loop = A.loop};
        if (pthread_create(&threads[i], NULL, producer_main, &producers[i]) != 0) {
            tap(false, "phase A: producer thread");
            exit(1);
        }
    }

    double t0 = now_s();
    bool ended = dispatch_bounded(A.base, A.loop, STRESS_WATCHDOG_SECONDS);
    double took = now_s() - t0;
    for (int i = 0; i < nproducers; i++)
        pthread_join(threads[i], NULL);
    tap(ended, "phase A: dispatch ended by itself (%.2f s)", took);

    phase_check_tasks(&A, "phase A", ended);
    tap(A.submit_failures == 0, "phase A: %d tasks submitted, %d submissions failed", A.next,
        A.submit_failures);

    long out_of_order = 0, missing = 0, failures = 0, total = 0;
    for (int i = 0; i < nproducers; i++) {
        struct producer *p = &producers[i];
        out_of_order += p->out_of_order;
        failures += p->failures;
        total += p->arrived;
        if (!p->finished || p->arrived != p->end_count)
            missing += p->finished ? p->end_count - p->arrived : 1;
    }
    tap(out_of_order == 0 && missing == 0 && failures == 0,
        "phase A: %ld foreign posts from %d producers arrived in per-producer order "
        "(%ld out of order, %ld missing, %ld failed)", total, nproducers, out_of_order, missing,
        failures);

    struct evexec_loop_stats st;
    evexec_loop_get_stats(A.loop, &st);
    printf("# phase A: %" PRIu64 " callbacks, %" PRIu64 " foreign posts, %" PRIu64
           " wakeup writes, %" PRIu64 " drains\n", st.callbacks_run, st.foreign_posts,
           st.wakeup_writes, st.drains);

    release_all(&A);
    if (A.driver) {
        event_del(A.driver);
        evexec_loop_unref(A.loop);
    }
    event_free(driver);
    evexec_loop_free(A.loop);
    evexec_pool_free(A.pool);
    event_base_free(A.base);
    long produced = atomic_load(&results_produced), freed = atomic_load(&results_freed);
    tap(produced == freed, "phase A: every result freed exactly once (%ld produced, %ld freed)",
        produced, freed);
    free(A.tasks);
}

/* ---- phase B: loop_free with work in flight ---------------------------------- */

static bool b_loop_freed;
static int b_callbacks_after_free;

static void task_done_b(struct evexec_future *f, void *arg)
{
    struct task *t = arg;
    if (b_loop_freed)
        b_callbacks_after_free++;
    t->done_runs++;
    void *r = NULL;
    (void)evexec_future_result(f, &r);
}

static void stop_b(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void phase_b(unsigned workers, int ntasks)
{
    memset(&B, 0, sizeof(B));
    long produced0 = atomic_load(&results_produced), freed0 = atomic_load(&results_freed);
    B.base = event_base_new();
    B.loop = B.base ? evexec_loop_new(B.base) : NULL;
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = workers;
    B.pool = evexec_pool_new(&cfg);
    B.tasks = calloc((size_t)ntasks, sizeof(*B.tasks));
    if (!B.loop || !B.pool || !B.tasks) {
        tap(false, "phase B: setup");
        return;
    }
    B.use_default_pool = true;
    B.ntasks = ntasks;
    for (int i = 0; i < ntasks; i++)
        submit_one(&B, &B.tasks[B.next++], task_done_b);
    /* Let a part of it run and be delivered, then tear down mid-flight. */
    struct event *stop = evtimer_new(B.base, stop_b, B.base);
    struct timeval few_ms = {0, (long)(1000 + rnd_below(&loop_rng, 5000))};
    evtimer_add(stop, &few_ms);
    for (int i = 0; i < ntasks / 4; i++)
        cancel_one(&B.tasks[rnd_below(&loop_rng, (unsigned)ntasks)]);
    bool ended = dispatch_bounded(B.base, B.loop, STRESS_WATCHDOG_SECONDS);
    event_free(stop);
    struct evexec_loop_stats st;
    evexec_loop_get_stats(B.loop, &st);
    printf("# phase B: loop freed with %" PRIu64 " tasks in flight\n", st.in_flight);

    evexec_loop_free(B.loop);
    b_loop_freed = true;
    event_base_loop(B.base, EVLOOP_NONBLOCK); /* nothing of the loop may run now */
    evexec_pool_free(B.pool);                 /* late results come in meanwhile */
    tap(ended, "phase B: dispatch bounded");
    tap(b_callbacks_after_free == 0, "phase B: no done callback after evexec_loop_free (%d ran)",
        b_callbacks_after_free);
    phase_check_tasks(&B, "phase B", false);
    release_all(&B);
    /* The default pool's workers finish their last task on their own. */
    for (int i = 0; i < 2000; i++) {
        if (atomic_load(&results_produced) - produced0 == atomic_load(&results_freed) - freed0)
            break;
        usleep(5000);
    }
    long produced = atomic_load(&results_produced) - produced0;
    long freed = atomic_load(&results_freed) - freed0;
    tap(produced == freed, "phase B: every late result freed exactly once (%ld produced, %ld freed)",
        produced, freed);
    event_base_free(B.base);
    /* Default-pool workers may still be ending their tasks, which read these
     * records: leave them allocated. */
}

/* ---- phase C: more loops than CPUs, each with a window in flight -------- */

/*
 * With as many loops as CPUs or more, a loop woken while most of its work is
 * still out first gives the CPU back (sched_yield) and only then takes its
 * completions; it stays `draining` meanwhile, so workers push without
 * writing the wakeup. A completion or a foreign post lost in that window
 * would leave its loop waiting forever: the watchdog ends the dispatch and
 * the checks fail. Each loop has its own thread, window (1-64), task mix
 * (instant to a short sleep) and foreign producer; all share one pool. All
 * loops exist before any starts and until every one has ended, so the count
 * of loops stays at or above the CPUs throughout.
 */

#define C_MAX_LOOPS 12

struct c_loop {
    int id;
    pthread_t thread, producer;
    struct event_base *base;
    struct evexec_loop *loop;
    uint64_t rng;              /* this loop's thread only */
    unsigned window;
    long ntasks, submitted, done;
    unsigned char *done_runs;  /* per task: done callbacks that saw its result */
    long wrong_results, submit_failures;
    double stop_at;
    /* foreign producer: its thread writes posted before the end marker */
    long max_posts, posted, post_failures;
    long next_seq, arrived, out_of_order, end_count;
    bool producer_started, producer_finished, unreffed;
    bool ended;
    struct evexec_loop_stats st;
};

static struct c_loop c_loops[C_MAX_LOOPS];
static struct evexec_pool *c_pool;
static pthread_barrier_t c_all_made, c_all_ended;

static uintptr_t c_task_arg(const struct c_loop *c, long seq)
{
    return ((uintptr_t)c->id << 40 | (uintptr_t)seq) + 1;
}

/* Mostly instant, sometimes a spin, rarely a short sleep: completions come
 * in runs and in trickles. The result is the argument, checked on delivery. */
static int c_work(void *arg, void **result)
{
    uint64_t st = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    unsigned kind = rnd_below(&st, 32);
    if (kind == 0) {
        usleep(rnd_below(&st, 50));
    } else if (kind < 8) {
        volatile unsigned spin = rnd_below(&st, 3000);
        while (spin)
            spin = spin - 1;
    }
    *result = arg;
    return 0;
}

static void c_maybe_finish(struct c_loop *c)
{
    if (!c->unreffed && c->producer_finished && c->done == c->ntasks) {
        c->unreffed = true;
        evexec_loop_unref(c->loop); /* nothing more to come: dispatch may end */
    }
}

static void c_submit(struct c_loop *c);

static void c_done(struct evexec_future *f, void *arg)
{
    struct c_loop *c = &c_loops[((uintptr_t)arg - 1) >> 40];
    long seq = (long)(((uintptr_t)arg - 1) & ((1ull << 40) - 1));
    void *r = NULL;
    if (evexec_future_result(f, &r) == 0 && r == arg)
        c->done_runs[seq]++;
    else
        c->wrong_results++;
    evexec_future_release(f);
    c->done++;
    if (c->submitted < c->ntasks && now_s() > c->stop_at)
        c->ntasks = c->submitted; /* out of time: stop starting work */
    /* Now and then the loop takes a few completions before it refills. */
    if (rnd_below(&c->rng, 8) != 0 || c->done == c->submitted)
        while (c->submitted < c->ntasks && c->submitted - c->done < (long)c->window)
            c_submit(c);
    c_maybe_finish(c);
}

static void c_submit(struct c_loop *c)
{
    void *arg = (void *)c_task_arg(c, c->submitted);
    struct evexec_future *f = evexec_run_in_executor(c->loop, c_pool, c_work, arg, NULL);
    if (!f || evexec_future_add_done_callback(f, c_done, arg) != 0) {
        c->submit_failures++;
        c->ntasks = c->submitted; /* stop here: the checks report it */
        return;
    }
    c->submitted++;
}

static void c_item(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    struct c_loop *c = &c_loops[v >> 40];
    long seq = (long)(v & ((1ull << 40) - 1));
    if (seq != c->next_seq)
        c->out_of_order++;
    c->next_seq = seq + 1;
    c->arrived++;
}

static void c_producer_end(void *arg)
{
    struct c_loop *c = arg;
    c->end_count = c->posted; /* written before the post: FIFO makes it visible */
    c->producer_finished = true;
    c_maybe_finish(c);
}

static void *c_producer_main(void *arg)
{
    struct c_loop *c = arg;
    for (long seq = 0; seq < c->max_posts; seq++) {
        if ((seq & 255) == 0 && now_s() > c->stop_at)
            break;
        uintptr_t v = ((uintptr_t)c->id << 40) | (uintptr_t)seq;
        if (evexec_call_soon_threadsafe(c->loop, c_item, (void *)v) != 0) {
            c->post_failures++;
            break;
        }
        c->posted++;
        if ((seq & 63) == 0)
            usleep(20); /* come in bursts, between the loop's wakeups too */
    }
    if (evexec_call_soon_threadsafe(c->loop, c_producer_end, c) != 0)
        c->post_failures++;
    return NULL;
}

static void *c_loop_main(void *arg)
{
    struct c_loop *c = arg;
    c->base = event_base_new();
    c->loop = c->base ? evexec_loop_new(c->base) : NULL;
    c->done_runs = calloc((size_t)c->ntasks, 1);
    pthread_barrier_wait(&c_all_made);
    if (c->loop && c->done_runs) {
        evexec_loop_ref(c->loop); /* the producer is foreign: keep listening */
        c->producer_started = pthread_create(&c->producer, NULL, c_producer_main, c) == 0;
        if (!c->producer_started)
            c->producer_finished = true;
        while (c->submitted < c->ntasks && c->submitted < (long)c->window)
            c_submit(c);
        c_maybe_finish(c);
        c->ended = dispatch_bounded(c->base, c->loop, STRESS_WATCHDOG_SECONDS);
        if (c->producer_started)
            pthread_join(c->producer, NULL);
        evexec_loop_get_stats(c->loop, &c->st);
    }
    pthread_barrier_wait(&c_all_ended);
    if (c->loop)
        evexec_loop_free(c->loop);
    if (c->base)
        event_base_free(c->base);
    return NULL;
}

static int cpus_usable(void)
{
    cpu_set_t set;
    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

static void phase_c(unsigned workers, long tasks_each, long posts_each, double seconds)
{
    int nloops = cpus_usable() + 1 + (int)rnd_below(&loop_rng, 3);
    if (nloops > C_MAX_LOOPS)
        nloops = C_MAX_LOOPS;
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = workers;
    cfg.min_workers = workers;
    c_pool = evexec_pool_new(&cfg);
    if (!c_pool || pthread_barrier_init(&c_all_made, NULL, (unsigned)nloops) != 0 ||
        pthread_barrier_init(&c_all_ended, NULL, (unsigned)nloops) != 0) {
        tap(false, "phase C: setup");
        exit(1);
    }
    double stop_at = now_s() + seconds;
    for (int i = 0; i < nloops; i++) {
        struct c_loop *c = &c_loops[i];
        *c = (struct c_loop){.id = i, .rng = rnd_next(&loop_rng), .ntasks = tasks_each,
                             .max_posts = posts_each, .stop_at = stop_at};
        unsigned w = rnd_below(&c->rng, 4);
        c->window = w == 0 ? 1 : w == 1 ? 1 + rnd_below(&c->rng, 8) : 8 + rnd_below(&c->rng, 57);
    }
    double t0 = now_s();
    for (int i = 0; i < nloops; i++) {
        if (pthread_create(&c_loops[i].thread, NULL, c_loop_main, &c_loops[i]) != 0) {
            tap(false, "phase C: loop thread");
            exit(1);
        }
    }
    /* A lost wakeup can hide the watchdog's own post too: bound the phase
     * here as well, and fail instead of hanging. */
    struct timespec deadline;
    deadline_in(&deadline, (STRESS_WATCHDOG_SECONDS + 20) * 1000L);
    for (int i = 0; i < nloops; i++) {
        if (pthread_timedjoin_np(c_loops[i].thread, NULL, &deadline) != 0) {
            tap(false, "phase C: loop %d still running after %d s: a wakeup was lost", i,
                STRESS_WATCHDOG_SECONDS + 20);
            _exit(1);
        }
    }
    double took = now_s() - t0;
    evexec_pool_free(c_pool);
    pthread_barrier_destroy(&c_all_made);
    pthread_barrier_destroy(&c_all_ended);

    int not_ended = 0;
    long tasks = 0, bad = 0, failures = 0, posts = 0, lost = 0, disorder = 0;
    uint64_t writes = 0, drains = 0;
    for (int i = 0; i < nloops; i++) {
        struct c_loop *c = &c_loops[i];
        not_ended += !c->ended;
        tasks += c->done;
        bad += c->wrong_results;
        failures += c->submit_failures + c->post_failures;
        for (long k = 0; c->done_runs && k < c->submitted; k++)
            bad += c->done_runs[k] != 1;
        if (!c->done_runs)
            failures++;
        posts += c->arrived;
        lost += c->producer_finished ? c->end_count - c->arrived : 1;
        disorder += c->out_of_order;
        writes += c->st.wakeup_writes;
        drains += c->st.drains;
        free(c->done_runs);
    }
    tap(not_ended == 0, "phase C: %d loops on %d CPUs, %u workers: every dispatch ended by "
        "itself (%d did not, %.2f s)", nloops, cpus_usable(), workers, not_ended, took);
    tap(bad == 0 && failures == 0, "phase C: every task delivered exactly once with its "
        "result (%ld tasks, %ld wrong, %ld failures)", tasks, bad, failures);
    tap(lost == 0 && disorder == 0, "phase C: every foreign post arrived in order (%ld posts, "
        "%ld missing, %ld out of order)", posts, lost, disorder);
    printf("# phase C: %" PRIu64 " wakeup writes, %" PRIu64 " drains for %ld tasks and %ld "
           "posts\n", writes, drains, tasks, posts);
}

int main(void)
{
    const char *env = getenv("EVEXEC_STRESS_SEED");
    seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    loop_rng = seed;
    unsigned workers = 2 + rnd_below(&loop_rng, 3);
    nproducers = 2 + (int)rnd_below(&loop_rng, 3);
    const char *quick = getenv("EVEXEC_STRESS_QUICK");
    int ntasks = quick ? 500 : 4000;
    long posts = quick ? 5000 : 50000;

    printf("1..%d\n", 16);
    printf("# seed %" PRIu64 " (EVEXEC_STRESS_SEED=%" PRIu64 " to replay), %u workers, "
           "%d producers\n", seed, seed, workers, nproducers);
    fflush(stdout);
    phase_a(workers, ntasks, posts, 5.0);
    phase_b(workers, quick ? 100 : 400);
    phase_c(2, quick ? 2000 : 20000, quick ? 2000 : 20000, 5.0);
    return tap_failed ? 1 : 0;
}
