/*
 * chain.c -- joins a concurrent future to a loop future, both ways, as
 * asyncio's _chain_future does.
 *
 *   cfuture done (any thread)  -> post the future's deliver_handle to its loop
 *   deliver (loop thread)      -> copy the cfuture's state into the future
 *                                 and run its done callbacks right there, in
 *                                 the drain (one pass per completion), unless
 *                                 the future was cancelled meanwhile: then a
 *                                 run_in_executor result is freed now
 *   loop future cancelled      -> evexec_cfuture_cancel (future.c)
 *
 * evexec_run_in_executor makes at most one allocation per call: the task,
 * its concurrent future and the loop future live in one block, and the
 * deliver handle is a member of the future, so posting allocates nothing.
 * The block dies with the cfuture's last reference; the loop future holds
 * one. When that last reference goes on the loop thread the block is kept on
 * a short per-loop free list and reused, so a steady stream of tasks makes
 * no allocation at all; a block whose last reference goes on a worker is
 * simply freed.
 *
 * References while in flight: the future has one for the caller and one for
 * the delivery (dropped after delivery or disposal); the cfuture has one for
 * the pool's queue and one for the future. The thread that posts the
 * delivery holds the loop's memory itself while it needs it (loop.c). loop->in_flight counts undelivered
 * chains so the loop keeps listening until each has been disposed of.
 */
#include "evexec-internal.h"

#include <errno.h>

struct rie_block {
    struct evexec_cfuture cf; /* first: freeing the cfuture frees the block */
    struct evexec_future f;
};

/* Blocks kept per loop for reuse; enough for a burst, small in memory. */
#define SPARE_BLOCKS_MAX 256

static void post_delivery(struct evexec_future *f)
{
    evexec__loop_post(f->loop, &f->deliver_handle);
}

static void rie_done(struct evexec_cfuture *cf)
{
    post_delivery(&((struct rie_block *)cf)->f);
}

static void wrapped_done(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    post_delivery(arg);
}

void evexec__chain_release_block(struct evexec_future *f)
{
    struct evexec_loop *loop = f->loop; /* alive: f still holds its reference */
    struct rie_block *b = evexec__container_of(f, struct rie_block, f);
    if (!evexec__cfuture_unref(&b->cf))
        return; /* the pool's queue still holds it; the worker frees it */
    /* Nothing left inside: the delivery (which came before the future could
     * die) moved the result into the future or freed it, and a cfuture with
     * on_done has no callbacks. The free list is the loop thread's: look
     * at it only from there. */
    if (evexec__loop_on_thread(loop) && !evexec__loop_closed(loop) &&
        loop->nspare < SPARE_BLOCKS_MAX) {
        *(void **)b = loop->spare_blocks;
        loop->spare_blocks = b;
        loop->nspare++;
        return;
    }
    evexec__free(b);
}

void evexec__chain_free_spares(struct evexec_loop *loop)
{
    while (loop->spare_blocks) {
        void *b = loop->spare_blocks;
        loop->spare_blocks = *(void **)b;
        evexec__free(b);
    }
    loop->nspare = 0;
}

void evexec__chain_deliver(struct evexec__handle *h, bool discard)
{
    struct evexec_future *f = evexec__container_of(h, struct evexec_future, deliver_handle);
    struct evexec_loop *loop = f->loop;
    struct evexec_cfuture *cf = f->cf;
    if (f->embedded && cf->free_arg) {
        /* Delivered: the task finished, or never started and never will. */
        cf->free_arg(cf->arg);
        cf->free_arg = NULL;
    }
    if (!discard) {
        loop->in_flight--;
        if (f->state == EVEXEC__F_PENDING) {
            if (atomic_load_explicit(&cf->state, memory_order_acquire) == EVEXEC_CANCELLED) {
                f->state = EVEXEC__F_CANCELLED;
            } else {
                f->state = EVEXEC__F_FINISHED;
                f->error = cf->error;
                if (f->embedded) {
                    /* Nobody else can see this cfuture: the future owns the
                     * result from now on. */
                    f->result = cf->result;
                    f->free_result = cf->free_result;
                    cf->result = NULL;
                }
            }
            evexec__pending_unlink(f);
            /* Completed by the bridge's own drain, not by a user call: its
             * callbacks run now, later in this same drain. */
            evexec__future_run_callbacks(f);
        } else if (f->embedded) {
            evexec__cfuture_drop_result(cf);
        }
    } else if (f->embedded) {
        /* The loop is gone and the future was cancelled with it. */
        evexec__cfuture_drop_result(cf);
    }
    evexec_future_release(f); /* the delivery's reference */
}

/* Common checks of the loop-side entry points; 0 or an error code. */
static int check_loop(struct evexec_loop *loop, const char *func)
{
    if (!loop)
        return EINVAL;
    if (loop->fork_gen != evexec__fork_gen())
        return EVEXEC_EFORKED;
    if (evexec__loop_closed(loop))
        return EVEXEC_ECLOSED;
    EVEXEC__ASSERT_LOOP_THREAD(loop, func);
    (void)func;
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
    int err = check_loop(loop, "evexec_run_in_executor");
    if (!err && !fn)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    if (!pool && !(pool = evexec_loop_default_pool(loop)))
        return NULL;
    struct rie_block *b = loop->spare_blocks;
    if (b) {
        loop->spare_blocks = *(void **)b;
        loop->nspare--;
    } else if (!(b = evexec__malloc(sizeof(*b)))) {
        return NULL;
    }
    evexec__cfuture_init(&b->cf, fn, arg, free_result, 2); /* queue + future */
    b->cf.embedded = true;
    b->cf.on_done = rie_done;
    b->cf.free_arg = free_arg;
    evexec__future_init(&b->f, loop, 2); /* caller + delivery */
    b->f.embedded = true;
    b->f.cf = &b->cf;
    loop->in_flight++;
    err = evexec__pool_submit_cf(pool, &b->cf);
    if (err) {
        loop->in_flight--;
        evexec__pending_unlink(&b->f);
        evexec__loop_release(loop);
        evexec__free(b);
        errno = err;
        return NULL;
    }
    if (!loop->listening)
        evexec__loop_update_listening(loop);
    return &b->f;
}

struct evexec_future *evexec_wrap_cfuture(struct evexec_loop *loop, struct evexec_cfuture *cf)
{
    int err = check_loop(loop, "evexec_wrap_cfuture");
    if (!err && !cf)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    struct evexec_future *f = evexec__malloc(sizeof(*f));
    if (!f)
        return NULL;
    evexec__future_init(f, loop, 2); /* caller + delivery */
    evexec_cfuture_retain(cf);
    f->cf = cf;
    loop->in_flight++;
    err = evexec_cfuture_add_done_callback(cf, wrapped_done, f);
    if (err) {
        loop->in_flight--;
        evexec__pending_unlink(f);
        evexec_cfuture_release(cf);
        evexec__loop_release(loop);
        evexec__free(f);
        errno = err;
        return NULL;
    }
    evexec__loop_update_listening(loop);
    return f;
}
