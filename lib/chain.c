/*
 * chain.c -- joins a concurrent future to a loop future, both ways, as
 * asyncio's _chain_future does; evexec_run_in_executor's future is a loop
 * future over a request (work.c), so it is delivered as requests are.
 *
 *   request delivered (loop)   -> copy its outcome into the future and run
 *                                 the future's done callbacks right there, in
 *                                 the drain (one pass per completion), unless
 *                                 the future was cancelled meanwhile: then a
 *                                 late result is freed now
 *   cfuture done (wrap_cfuture, any thread) -> post the block's deliver
 *                                 handle, which does the same
 *   loop future cancelled      -> cancel the request (exact: a queued one
 *                                 never runs) or evexec_cfuture_cancel (the
 *                                 future's `cancelled` hook, set here)
 *
 * evexec_run_in_executor makes at most one allocation per call: the request
 * and the loop future live in one block, so posting allocates nothing. The
 * block dies with the future's last reference: the caller's and the
 * delivery's (dropped after delivery or disposal); the request's task holds
 * none, since its memory comes back with the delivery. When that last
 * reference goes on the loop thread the block is kept on a short per-loop
 * free list and reused, so a steady stream of tasks makes no allocation at
 * all; a block whose last reference goes elsewhere is simply freed.
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
    struct evexec__request req;
    struct evexec_future f;
};

struct wrap_block {
    struct evexec_future f;
    struct evexec__handle deliver;
    struct evexec_cfuture *cf;
};

/* Blocks kept per loop for reuse; enough for a burst, small in memory. */
#define SPARE_BLOCKS_MAX 256

/* ---- the loop future's hooks -------------------------------------------- */

static struct evexec_cfuture *wrapped_cf(struct evexec_future *f);

static void rie_cancelled(struct evexec_future *f)
{
    /* A queued task never runs; a running one is asked to stop. Its delivery
     * still comes and disposes of any late result. */
    (void)evexec__request_cancel(&evexec__container_of(f, struct rie_block, f)->req);
}

static int rie_request_cancel(struct evexec_future *f)
{
    /* Same request, but the future stays pending: the delivery completes it
     * with what the work really did (cancelled if it never started). */
    rie_cancelled(f);
    return 0;
}

static void wrap_cancelled(struct evexec_future *f)
{
    evexec_cfuture_cancel(wrapped_cf(f));
}

static int wrap_request_cancel(struct evexec_future *f)
{
    evexec_cfuture_cancel(wrapped_cf(f));
    return 0;
}

static void rie_release(struct evexec_future *f)
{
    struct rie_block *b = evexec__container_of(f, struct rie_block, f);
    struct evexec_loop *loop = f->loop; /* alive: f still holds its reference */
    /* The delivery came before the future could die: the request is out of
     * every queue and its result was moved into the future or freed. The
     * free list is the loop thread's: look at it only from there, and only
     * while the loop lives. */
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
    return evexec__cfuture_outcome(wrapped_cf(f), result, take);
}

static const struct evexec__future_ops rie_ops = {
    .cancelled = rie_cancelled,
    .request_cancel = rie_request_cancel,
    .release = rie_release,
    .producer_only = true,
};

static const struct evexec__future_ops wrap_ops = {
    .cancelled = wrap_cancelled,
    .request_cancel = wrap_request_cancel,
    .outcome = wrap_outcome,
    .release = wrap_release,
    .producer_only = true,
};

static struct evexec_cfuture *wrapped_cf(struct evexec_future *f)
{
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
    if (owned && !cf->error) {
        /* Nobody else can see a run_in_executor cfuture: the future owns the
         * result from now on. (With an error, finish() freed any result
         * there was a free function for.) */
        result = cf->result;
        free_result = cf->free_result;
        cf->result = NULL;
    }
    evexec__future_deliver(f, EVEXEC__F_FINISHED, result, free_result, cf->error);
}

static void rie_deliver(struct evexec__handle *h, bool discard)
{
    struct rie_block *b = evexec__container_of(h, struct rie_block, req.deliver);
    struct evexec_future *f = &b->f;
    struct evexec_cfuture *cf = &b->req.cf;
    if (cf->free_arg) {
        /* Delivered: the task finished, or never started and never will. */
        cf->free_arg(cf->arg);
        cf->free_arg = NULL;
    }
    if (!discard) {
        evexec__request_delivered(&b->req);
        if (f->state == EVEXEC__F_PENDING)
            deliver_outcome(f, cf, true);
        else
            evexec__cfuture_drop_result(cf); /* cancelled meanwhile */
    } else {
        /* The loop closed; its futures were all settled before that. The
         * future holds the loop's memory until it dies. */
        evexec__cfuture_drop_result(cf);
    }
    evexec__future_drop(f); /* the delivery's reference */
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
    evexec__future_drop(f); /* the delivery's reference */
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
    evexec__request_init(&b->req, fn, arg, rie_deliver);
    b->req.cf.free_result = free_result;
    b->req.cf.free_arg = free_arg;
    evexec__future_init(&b->f, loop, 2, &rie_ops); /* caller + delivery */
    int err = evexec__request_submit(&b->req, loop, pool);
    if (err) {
        evexec__list_remove(&b->f.pending_node);
        evexec__loop_release(loop);
        evexec__free(b);
        errno = err;
        return NULL;
    }
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
