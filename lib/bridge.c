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
 * block the loop, and pool threads can only be joined by blocking: a helper
 * thread does the waiting and posts the news to the loop.
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
    if (loop->default_pool_shut)
        return ESHUTDOWN;
    if (loop->default_pool && loop->default_pool_owned)
        return EBUSY; /* the loop made its own and may have work on it */
    loop->default_pool = pool;
    loop->default_pool_owned = false;
    return 0;
}

struct evexec_future *evexec_run_in_executor(struct evexec_loop *loop,
                                             struct evexec_pool *pool, evexec_work_fn fn,
                                             void *arg, evexec_free_fn free_result)
{
    return evexec_run_in_executor_ex(loop, pool, fn, arg, free_result, NULL);
}

struct evexec_future *evexec_run_in_executor_ex(struct evexec_loop *loop,
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

/* ---- evexec_loop_shutdown_default_pool ---------------------------------- */

struct pool_shutdown {
    struct evexec_future f;
    struct evexec__handle joined;  /* posted by the helper thread */
    struct evexec_pool *pool;      /* NULL: there was none to shut down */
    bool owned;
    bool counted;                  /* counts as loop work */
    struct event *timer;           /* the timeout, while armed */
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

/* Cancelled by the user or by evexec_loop_free: the pool keeps shutting
 * down, the future no longer waits for it. */
static void shutdown_cancelled(struct evexec_future *f)
{
    struct pool_shutdown *op = evexec__container_of(f, struct pool_shutdown, f);
    shutdown_stop_timer(op);
    shutdown_uncount(op);
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

static void on_shutdown_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pool_shutdown *op = arg;
    shutdown_stop_timer(op);
    if (op->f.state == EVEXEC__F_PENDING)
        evexec__future_finish(&op->f, NULL, NULL, ETIMEDOUT);
    shutdown_uncount(op); /* the threads go on exiting; nobody waits for them */
}

/* The helper thread has joined every worker (loop thread), or the loop is
 * gone (any thread: touch only the operation's own memory). */
static void on_shutdown_joined(struct evexec__handle *h, bool discard)
{
    struct pool_shutdown *op = evexec__container_of(h, struct pool_shutdown, joined);
    if (!discard) {
        shutdown_stop_timer(op);
        if (op->f.state == EVEXEC__F_PENDING)
            evexec__future_finish(&op->f, NULL, NULL, 0);
        shutdown_uncount(op);
    }
    evexec_future_release(&op->f); /* the helper thread's reference */
}

static void *shutdown_thread(void *arg)
{
    struct pool_shutdown *op = arg;
    if (op->owned)
        evexec_pool_free(op->pool);
    else
        evexec_pool_shutdown(op->pool, EVEXEC_SHUTDOWN_WAIT);
    evexec__loop_post(op->f.loop, &op->joined);
    return NULL;
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
    if (pool && timeout_ms >= 0) {
        op->timer = evtimer_new(loop->base, on_shutdown_timeout, op);
        if (!op->timer) {
            evexec__free(op);
            errno = ENOMEM;
            return NULL;
        }
    }
    evexec__future_init(&op->f, loop, pool ? 2 : 1, &shutdown_ops, NULL); /* caller + helper */
    if (pool) {
        /* The helper blocks every signal, as workers do: signals stay with
         * the loop thread. */
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        err = evexec__thread_create(&t, shutdown_thread, op);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err) {
            shutdown_stop_timer(op);
            evexec__list_remove(&op->f.pending_node);
            evexec__loop_release(loop);
            evexec__free(op);
            errno = err;
            return NULL;
        }
        pthread_detach(t);
        op->counted = true;
        evexec__loop_work_begin(loop);
        if (op->timer) {
            struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
            evtimer_add(op->timer, &tv);
        }
    } else {
        /* Nothing to wait for: done on the next pass, never inside the call. */
        evexec__future_finish(&op->f, NULL, NULL, 0);
    }
    loop->default_pool = NULL;
    loop->default_pool_owned = false;
    loop->default_pool_shut = true;
    return &op->f;
}
