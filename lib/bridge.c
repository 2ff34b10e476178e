/*
 * bridge.c -- what ties a loop to pools beyond one task: the loop's default
 * pool (and so evexec_run_in_executor, which may use it), and the order of
 * evexec_loop_free's teardown.
 *
 * Teardown order matters because of the threads that may finish work at any
 * moment. Every pending future is cancelled first, while the loop is still
 * open: the producers' hooks (chain, combinators) run on the loop thread and
 * leave nothing pending. Only then is the loop closed; a worker that delivers
 * after that finds a settled future and disposes of its delivery without
 * touching anything the loop thread owns. The default pool is shut down
 * without waiting (its threads exit as their current task ends).
 *
 * The default pool's shutdown (evexec_loop_shutdown_default_pool) must not
 * block the loop: a helper thread joins the loop's own pool, a given pool is
 * polled from the loop thread (see below why).
 */
#include "chain.h"

#include <errno.h>
#include <signal.h>

#include <event2/event.h>

void evexec_loop_free(struct evexec_loop *loop)
{
    if (!loop || evexec__forked(loop->fork_gen))
        return; /* a forked child leaks the parent's loop, as documented */
    EVEXEC__ASSERT_LOOP_THREAD(loop, "evexec_loop_free");
    if (evexec__loop_closed(loop))
        return;
    evexec__future_cancel_all(loop);
    evexec__requests_loop_free(loop);
    if (loop->default_pool && loop->default_pool_owned)
        evexec__pool_orphan(loop->default_pool);
    loop->default_pool = NULL;
    evexec__loop_close(loop);
    evexec__chain_free_spares(loop);
    evexec__loop_release(loop);
}

struct evexec_pool *evexec_loop_default_pool(struct evexec_loop *loop)
{
    int err = evexec__loop_check(loop, "evexec_loop_default_pool");
    if (err) {
        errno = err;
        return NULL;
    }
    if (loop->default_pool_shut) {
        errno = ESHUTDOWN;
        return NULL;
    }
    if (!loop->default_pool) {
        loop->default_pool = evexec_pool_new(NULL);
        loop->default_pool_owned = loop->default_pool != NULL;
    }
    return loop->default_pool;
}

int evexec_loop_set_default_pool(struct evexec_loop *loop, struct evexec_pool *pool)
{
    int err = evexec__loop_check(loop, "evexec_loop_set_default_pool");
    if (err)
        return err;
    if (!pool)
        return EINVAL;
    struct evexec_pool_stats st;
    if (evexec_pool_get_stats(pool, &st) == EVEXEC_EFORKED)
        return EVEXEC_EFORKED; /* its threads are the parent's: nothing would run */
    if (loop->default_pool_shut)
        return ESHUTDOWN;
    if (loop->default_pool && loop->default_pool_owned)
        return EBUSY; /* the loop made its own and may have work on it */
    loop->default_pool = pool;
    loop->default_pool_owned = false;
    return 0;
}

/* Both entry points, inlined into each: one call less on every task. */
static inline struct evexec_future *run_in_executor(struct evexec_loop *loop,
                                                    struct evexec_pool *pool, evexec_work_fn fn,
                                                    void *arg, evexec_free_fn free_result,
                                                    evexec_free_fn free_arg)
{
    int err = evexec__loop_check(loop, "evexec_run_in_executor");
    if (!err && !fn)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    if (!pool && !(pool = evexec_loop_default_pool(loop)))
        return NULL;
    return evexec__chain_run(loop, pool, fn, arg, free_result, free_arg);
}

struct evexec_future *evexec_run_in_executor(struct evexec_loop *loop,
                                             struct evexec_pool *pool, evexec_work_fn fn,
                                             void *arg, evexec_free_fn free_result)
{
    return run_in_executor(loop, pool, fn, arg, free_result, NULL);
}

struct evexec_future *evexec_run_in_executor_ex(struct evexec_loop *loop,
                                                struct evexec_pool *pool, evexec_work_fn fn,
                                                void *arg, evexec_free_fn free_result,
                                                evexec_free_fn free_arg)
{
    return run_in_executor(loop, pool, fn, arg, free_result, free_arg);
}

int evexec_queue_work(struct evexec_loop *loop, struct evexec_pool *pool,
                      struct evexec_work *req, evexec_work_fn work, evexec_after_fn after)
{
    int err = evexec__loop_check(loop, "evexec_queue_work");
    if (err)
        return err;
    if (!req || !work || !after)
        return EINVAL;
    if (!pool && !(pool = evexec_loop_default_pool(loop)))
        return errno;
    return evexec__work_queue(loop, pool, req, work, after);
}

/* ---- evexec_loop_shutdown_default_pool ---------------------------------- */

/*
 * Two ways to wait, by who owns the pool:
 *   - the loop's own pool: a helper thread frees it (joining its threads)
 *     and posts the news; nobody else can touch that pool, so the helper may
 *     take as long as the threads do;
 *   - a pool given with evexec_loop_set_default_pool: it stays the
 *     program's, which may free it as soon as the future is done (timed out
 *     or cancelled too) or the loop is freed. A helper blocked in it then
 *     would touch freed memory (and may not even have started when the
 *     program frees it). So the loop thread shuts it down without waiting
 *     and polls it on a timer until it is drained (no thread alive; for
 *     a view, no turn left in its parent), stopped when the future
 *     settles: the pool is never touched after that.
 */
#define SHUTDOWN_POLL_MAX_MS 50

struct pool_shutdown {
    struct evexec_future f;
    struct evexec__handle joined;  /* posted by the helper (queued if no pool) */
    struct evexec_pool *pool;      /* NULL: there was none to shut down */
    bool owned;
    bool counted;                  /* counts as loop work */
    struct event *timer;           /* the timeout, while armed */
    struct event *poll;            /* polls a given pool until drained */
    long poll_ms;
};

static void shutdown_stop_timer(struct pool_shutdown *op)
{
    if (op->timer) {
        event_free(op->timer);
        op->timer = NULL;
    }
}

static void shutdown_uncount(struct pool_shutdown *op)
{
    if (op->counted) {
        op->counted = false;
        evexec__loop_work_end(op->f.loop);
    }
}

/* The future settled (finished, timed out, cancelled): stop everything the
 * loop thread does for it. Stopping the poll drops the poll's reference,
 * which may be the last: op may be gone after this. */
static void shutdown_settled(struct pool_shutdown *op)
{
    shutdown_stop_timer(op);
    shutdown_uncount(op);
    if (op->poll) {
        event_free(op->poll);
        op->poll = NULL;
        evexec_future_release(&op->f);
    }
}

/* Cancelled by the user or by evexec_loop_free: the pool keeps shutting
 * down, the future no longer waits for it. */
static void shutdown_cancelled(struct evexec_future *f)
{
    shutdown_settled(evexec__container_of(f, struct pool_shutdown, f));
}

static void shutdown_release(struct evexec_future *f)
{
    evexec__free(evexec__container_of(f, struct pool_shutdown, f));
}

static const struct evexec__future_ops shutdown_ops = {
    .cancelled = shutdown_cancelled,
    .release = shutdown_release,
    .producer_only = true,
};

static void shutdown_finish(struct pool_shutdown *op, int err)
{
    if (op->f.state == EVEXEC__F_PENDING)
        evexec__future_finish(&op->f, NULL, NULL, err);
    shutdown_settled(op);
}

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    /* The threads go on exiting; nobody waits for them. */
    shutdown_finish(arg, ETIMEDOUT);
}

static void on_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool_shutdown *op = arg;
    struct timeval tv = {0, 0};
    /* Not the thread count of the statistics: a view given as the default
     * pool has none, and would seem done while its tasks still run. */
    if (evexec__pool_drained(op->pool)) {
        /* Outcomes the last tasks posted before their threads exited come
         * first, as the helper's post comes after them: outside a drain,
         * an empty foreign stack means they have all been run. */
        if (atomic_load(&op->f.loop->foreign) == NULL) {
            shutdown_finish(op, 0);
            return;
        }
    } else {
        op->poll_ms = op->poll_ms ? op->poll_ms * 2 : 1;
        if (op->poll_ms > SHUTDOWN_POLL_MAX_MS)
            op->poll_ms = SHUTDOWN_POLL_MAX_MS;
        tv.tv_usec = op->poll_ms * 1000;
    }
    evtimer_add(op->poll, &tv);
}

/* The helper thread has freed the loop's own pool, or there was no pool
 * (loop thread); or the loop is gone (any thread: touch only the
 * operation's own memory). */
static void on_shutdown_joined(struct evexec__handle *h, bool discard)
{
    struct pool_shutdown *op = evexec__container_of(h, struct pool_shutdown, joined);
    /* The helper joined every thread; the memory goes here, on the loop
     * thread, which may still be cancelling a request of the pool (that
     * looks at the pool's queue under its lock). */
    if (op->owned)
        evexec_pool_free(op->pool);
    if (!discard)
        shutdown_finish(op, 0);
    evexec_future_release(&op->f); /* the helper's or the pass's reference */
}

static void *shutdown_thread(void *arg)
{
    struct pool_shutdown *op = arg;
    (void)evexec_pool_shutdown(op->pool, EVEXEC_SHUTDOWN_WAIT);
    evexec__loop_post(op->f.loop, &op->joined);
    return NULL;
}

/* The loop's own pool: join its threads on a helper thread. */
static int start_helper(struct pool_shutdown *op)
{
    /* The helper blocks every signal, as workers do: signals stay with the
     * loop thread. */
    pthread_t t;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = evexec__thread_create(&t, shutdown_thread, op);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!err)
        pthread_detach(t);
    return err;
}

struct evexec_future *evexec_loop_shutdown_default_pool(struct evexec_loop *loop,
                                                         long timeout_ms)
{
    int err = evexec__loop_check(loop, "evexec_loop_shutdown_default_pool");
    if (!err && timeout_ms < -1)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    struct pool_shutdown *op = evexec__calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    /* Shut down already, or never made: nothing to wait for. */
    struct evexec_pool *pool = loop->default_pool;
    op->pool = pool;
    op->owned = pool && loop->default_pool_owned;
    op->joined.run = on_shutdown_joined;
    if (pool && timeout_ms >= 0 && !(op->timer = evtimer_new(loop->base, on_shutdown_timeout, op)))
        err = ENOMEM;
    if (!err && pool && !op->owned && !(op->poll = evtimer_new(loop->base, on_shutdown_poll, op)))
        err = ENOMEM;
    if (err) {
        shutdown_stop_timer(op);
        evexec__free(op);
        errno = err;
        return NULL;
    }
    /* caller + (helper, poll or pass) */
    evexec__future_init(&op->f, loop, 2, &shutdown_ops);
    if (op->owned && (err = start_helper(op)) != 0) {
        shutdown_stop_timer(op);
        evexec__list_remove(&op->f.pending_node);
        evexec__loop_release(loop);
        evexec__free(op);
        errno = err;
        return NULL;
    }
    if (pool) {
        if (!op->owned) {
            /* Stop accepting work now; queued work still runs. */
            (void)evexec_pool_shutdown(pool, 0);
            static const struct timeval now = {0, 0};
            evtimer_add(op->poll, &now); /* never inside this call */
        }
        op->counted = true;
        evexec__loop_work_begin(loop);
        if (op->timer) {
            struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
            evtimer_add(op->timer, &tv);
        }
    } else {
        /* Nothing to wait for: done on the next pass, never inside the call
         * (the queued handle completes it as the helper's post would). */
        evexec__loop_schedule(loop, &op->joined);
    }
    loop->default_pool = NULL;
    loop->default_pool_owned = false;
    loop->default_pool_shut = true;
    return &op->f;
}
