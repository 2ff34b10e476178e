/*
 * chain.c -- joins a concurrent future to a loop future, both ways, as
 * asyncio's _chain_future does.
 *
 *   cfuture done (any thread)  -> post the block's deliver handle to the loop
 *   deliver (loop thread)      -> copy the cfuture's state into the future
 *                                 and run its done callbacks right there, in
 *                                 the drain (one pass per completion), unless
 *                                 the future was cancelled meanwhile: then a
 *                                 run_in_executor result is freed now
 *   loop future cancelled      -> evexec_cfuture_cancel (the future's
 *                                 `cancelled` hook, set here)
 *
 * evexec_run_in_executor makes at most one allocation per call: the task,
 * its concurrent future, the loop future and the deliver handle live in one
 * block, so posting allocates nothing. The block dies with the cfuture's
 * last reference; the loop future holds one. When that last reference goes
 * on the loop thread the block is kept on a short per-loop free list and
 * reused, so a steady stream of tasks makes no allocation at all; a block
 * whose last reference goes elsewhere is simply freed.
 *
 * References while in flight: the future has one for the caller and one for
 * the delivery (dropped after delivery or disposal); the cfuture has one for
 * the pool's queue and one for the future. The thread that posts the
 * delivery holds the loop's memory itself while it needs it (loop.c). Each
 * undelivered chain counts as loop work (evexec__loop_work_begin), so the
 * loop keeps listening until it has been delivered.
 *
 * Teardown: evexec_loop_free cancels every pending future first (bridge.c),
 * so a delivery that arrives after the loop closed finds a settled future;
 * its disposal (run(h, true), on whatever thread posted it) frees the task's
 * argument and late result and drops the delivery's reference -- nothing the
 * loop thread owns.
 */
#include "chain.h"

#include <errno.h>

struct rie_block {
    struct evexec_cfuture cf; /* first: freeing the cfuture frees the block */
    struct evexec_future f;
    struct evexec__handle deliver;
};

struct wrap_block {
    struct evexec_future f;
    struct evexec__handle deliver;
    struct evexec_cfuture *cf;
};

/* Blocks kept per loop for reuse; enough for a burst, small in memory. */
#define SPARE_BLOCKS_MAX 256

/* ---- the loop future's hooks -------------------------------------------- */

static struct evexec_cfuture *chained_cf(struct evexec_future *f);

static void chain_cancelled(struct evexec_future *f)
{
    /* A queued task never runs; a running one is asked to stop. Its delivery
     * still comes and disposes of any late result. */
    evexec_cfuture_cancel(chained_cf(f));
}

static int chain_request_cancel(struct evexec_future *f)
{
    /* Same request, but the future stays pending: the delivery completes it
     * with what the work really did (ECANCELED if it never started). */
    evexec_cfuture_cancel(chained_cf(f));
    return 0;
}

static void rie_release(struct evexec_future *f)
{
    struct rie_block *b = evexec__container_of(f, struct rie_block, f);
    struct evexec_loop *loop = f->loop; /* alive: f still holds its reference */
    if (!evexec__cfuture_unref(&b->cf))
        return; /* the pool's queue still holds it; the worker frees it */
    /* Nothing left inside: the delivery (which came before the future could
     * die) moved the result into the future or freed it, and a cfuture with
     * on_done has no callbacks. The free list is the loop thread's: look
     * at it only from there, and only while the loop lives. */
    if (evexec__loop_on_thread(loop) && !evexec__loop_closed(loop) &&
        loop->nspare < SPARE_BLOCKS_MAX) {
        *(void **)b = loop->spare_blocks;
        loop->spare_blocks = b;
        loop->nspare++;
        return;
    }
    evexec__free(b);
}

static void wrap_release(struct evexec_future *f)
{
    struct wrap_block *b = evexec__container_of(f, struct wrap_block, f);
    struct evexec_cfuture *cf = b->cf;
    evexec__free(b);
    evexec_cfuture_release(cf);
}

static int wrap_outcome(struct evexec_future *f, void **result, bool take)
{
    /* wrap_cfuture borrows: the result stays the cfuture's. */
    return evexec__cfuture_outcome(chained_cf(f), result, take);
}

static const struct evexec__future_ops rie_ops = {
    .cancelled = chain_cancelled,
    .request_cancel = chain_request_cancel,
    .release = rie_release,
    .producer_only = true,
};

static const struct evexec__future_ops wrap_ops = {
    .cancelled = chain_cancelled,
    .request_cancel = chain_request_cancel,
    .outcome = wrap_outcome,
    .release = wrap_release,
    .producer_only = true,
};

static struct evexec_cfuture *chained_cf(struct evexec_future *f)
{
    if (f->ops == &rie_ops)
        return &evexec__container_of(f, struct rie_block, f)->cf;
    return evexec__container_of(f, struct wrap_block, f)->cf;
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

/* ---- delivery ----------------------------------------------------------- */

/* The cfuture's final state, copied into a future still pending. */
static void deliver_outcome(struct evexec_future *f, struct evexec_cfuture *cf, bool owned)
{
    if (atomic_load_explicit(&cf->state, memory_order_acquire) == EVEXEC_CANCELLED) {
        evexec__future_deliver(f, EVEXEC__F_CANCELLED, NULL, NULL, 0);
        return;
    }
    void *result = NULL;
    evexec_free_fn free_result = NULL;
    if (owned) {
        /* Nobody else can see a run_in_executor cfuture: the future owns the
         * result from now on. */
        result = cf->result;
        free_result = cf->free_result;
        cf->result = NULL;
    }
    evexec__future_deliver(f, EVEXEC__F_FINISHED, result, free_result, cf->error);
}

static void rie_deliver(struct evexec__handle *h, bool discard)
{
    struct rie_block *b = evexec__container_of(h, struct rie_block, deliver);
    struct evexec_future *f = &b->f;
    if (b->cf.free_arg) {
        /* Delivered: the task finished, or never started and never will. */
        b->cf.free_arg(b->cf.arg);
        b->cf.free_arg = NULL;
    }
    if (!discard) {
        evexec__loop_work_end(f->loop);
        if (f->state == EVEXEC__F_PENDING)
            deliver_outcome(f, &b->cf, true);
        else
            evexec__cfuture_drop_result(&b->cf); /* cancelled meanwhile */
    } else {
        /* The loop closed; its futures were all settled before that. */
        evexec__cfuture_drop_result(&b->cf);
    }
    evexec_future_release(f); /* the delivery's reference */
}

static void wrap_deliver(struct evexec__handle *h, bool discard)
{
    struct wrap_block *b = evexec__container_of(h, struct wrap_block, deliver);
    struct evexec_future *f = &b->f;
    if (!discard) {
        evexec__loop_work_end(f->loop);
        if (f->state == EVEXEC__F_PENDING)
            deliver_outcome(f, b->cf, false);
    }
    evexec_future_release(f); /* the delivery's reference */
}

static void rie_done(struct evexec_cfuture *cf)
{
    struct rie_block *b = (struct rie_block *)cf;
    evexec__loop_post(b->f.loop, &b->deliver);
}

static void wrapped_done(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    struct wrap_block *b = arg;
    evexec__loop_post(b->f.loop, &b->deliver);
}

/* ---- entry points --------------------------------------------------------- */

struct evexec_future *evexec__chain_run(struct evexec_loop *loop, struct evexec_pool *pool,
                                        evexec_work_fn fn, void *arg,
                                        evexec_free_fn free_result, evexec_free_fn free_arg)
{
    struct rie_block *b = loop->spare_blocks;
    if (b) {
        loop->spare_blocks = *(void **)b;
        loop->nspare--;
    } else if (!(b = evexec__malloc(sizeof(*b)))) {
        return NULL;
    }
    evexec__cfuture_init(&b->cf, fn, arg, free_result, 2); /* queue + future */
    b->cf.on_done = rie_done;
    b->cf.free_arg = free_arg;
    evexec__future_init(&b->f, loop, 2, &rie_ops); /* caller + delivery */
    b->deliver.run = rie_deliver;
    int err = evexec__pool_submit_cf(pool, &b->cf);
    if (err) {
        evexec__list_remove(&b->f.pending_node);
        evexec__loop_release(loop);
        evexec__free(b);
        errno = err;
        return NULL;
    }
    /* After the submission: a task that fails at once (no thread) delivers
     * through the ready queue, never inside this call. */
    evexec__loop_work_begin(loop);
    return &b->f;
}

struct evexec_future *evexec_wrap_cfuture(struct evexec_loop *loop, struct evexec_cfuture *cf)
{
    int err = evexec__loop_check(loop, "evexec_wrap_cfuture");
    if (!err && !cf)
        err = EINVAL;
    if (!err && evexec__forked(cf->fork_gen))
        err = EVEXEC_EFORKED; /* its worker does not exist here: it would never deliver */
    if (err) {
        errno = err;
        return NULL;
    }
    struct wrap_block *b = evexec__malloc(sizeof(*b));
    if (!b)
        return NULL;
    evexec__future_init(&b->f, loop, 2, &wrap_ops); /* caller + delivery */
    b->deliver.run = wrap_deliver;
    evexec_cfuture_retain(cf);
    b->cf = cf;
    /* Counted before the callback can post (it runs now if cf is done). */
    evexec__loop_work_begin(loop);
    err = evexec_cfuture_add_done_callback(cf, wrapped_done, b);
    if (err) {
        evexec__loop_work_end(loop);
        evexec__list_remove(&b->f.pending_node);
        evexec_cfuture_release(cf);
        evexec__loop_release(loop);
        evexec__free(b);
        errno = err;
        return NULL;
    }
    return &b->f;
}
