/*
 * work.c -- the request layer: evexec_queue_work and evexec_work_cancel,
 * and the request every evexec_run_in_executor block embeds.
 *
 *   submit (loop thread)      -> the request's task joins its pool's queue;
 *                                the request joins loop->requests and counts
 *                                as loop work (the loop keeps listening)
 *   task done (any thread)    -> on_done posts the request's deliver handle:
 *                                the worker touches nothing of it afterwards
 *   deliver (loop thread)     -> leaves loop->requests, reports the outcome:
 *                                from here the memory is the owner's again
 *   cancel (loop thread)      -> a task still queued is unlinked from its
 *                                pool's queue under the pool's lock (so no
 *                                worker can reach it) and its delivery is
 *                                scheduled on the ready queue; a running one
 *                                is flagged for evexec_cancel_requested()
 *
 * No reference counts: the task's own count starts at two and only the
 * queue's is ever dropped, so the executor half never frees the memory; it
 * goes back to its owner with the delivery, the last moment anything of the
 * library touches it.
 *
 * Teardown (evexec_loop_free, after the loop's futures were cancelled):
 * each request still in flight is either unlinked from its queue, and its
 * delivery scheduled -- the loop's close disposes of the ready queue, so its
 * owner hears ECANCELED inside evexec_loop_free -- or running, or done and
 * on its way: it takes a reference on the loop's memory, which its disposal
 * (run(h, true), on the loop thread in the close or on the worker that posts
 * after it) gives back once the owner has heard ECANCELED.
 */
#include "work.h"

#include <errno.h>

static void request_done(struct evexec_cfuture *cf)
{
    struct evexec__request *r = (struct evexec__request *)cf;
    evexec__loop_post(r->loop, &r->deliver);
}

void evexec__request_init(struct evexec__request *r, evexec_work_fn fn, void *arg,
                          void (*deliver)(struct evexec__handle *h, bool discard))
{
    evexec__cfuture_init(&r->cf, fn, arg, NULL, 2); /* the queue's + one never dropped */
    r->cf.on_done = request_done;
    r->deliver.run = deliver;
    r->phase = 0;
}

int evexec__request_submit(struct evexec__request *r, struct evexec_loop *loop,
                           struct evexec_pool *pool)
{
    r->loop = loop;
    r->pool = pool;
    int err = evexec__pool_submit_cf(pool, &r->cf);
    if (err)
        return err;
    /* After the submission: a task failed at once (no thread) is delivered
     * through the ready queue, never inside this call. */
    evexec__list_push_back(&loop->requests, &r->node);
    evexec__loop_work_begin(loop);
    return 0;
}

bool evexec__request_cancel(struct evexec__request *r)
{
    if (r->phase & EVEXEC__REQ_UNQUEUED)
        return true;
    switch (atomic_load(&r->cf.state)) {
    case EVEXEC_PENDING:
        /* Queued, or taken by a pool shutdown that is about to settle it
         * (then its delivery comes from there). */
        if (!evexec__pool_unqueue(r->pool, &r->cf))
            return false;
        r->phase |= EVEXEC__REQ_UNQUEUED;
        evexec__loop_schedule(r->loop, &r->deliver); /* never inside the call */
        return true;
    case EVEXEC_RUNNING:
        atomic_fetch_or(&r->cf.flags, EVEXEC__CF_CANCEL_REQUESTED);
        return false;
    default:
        return false; /* done: its outcome is on its way */
    }
}

int evexec__request_outcome(const struct evexec__request *r, void **result)
{
    if (atomic_load_explicit(&r->cf.state, memory_order_acquire) == EVEXEC_CANCELLED) {
        *result = NULL;
        return ECANCELED;
    }
    *result = r->cf.result;
    return r->cf.error;
}

void evexec__request_delivered(struct evexec__request *r)
{
    evexec__list_remove(&r->node);
    evexec__loop_work_end(r->loop);
}

struct evexec_loop *evexec__request_held_loop(const struct evexec__request *r)
{
    return (r->phase & EVEXEC__REQ_HOLDS_LOOP) ? r->loop : NULL;
}

void evexec__requests_loop_free(struct evexec_loop *loop)
{
    struct evexec__list *n, *next;
    for (n = loop->requests.next; n != &loop->requests; n = next) {
        next = n->next;
        struct evexec__request *r = evexec__container_of(n, struct evexec__request, node);
        /* Nothing touches the list after this: its head is freed with the
         * loop, and a disposal may run on a worker. */
        evexec__list_init(n);
        if (r->phase & EVEXEC__REQ_UNQUEUED)
            continue; /* its delivery is on the ready queue */
        if (atomic_load(&r->cf.state) == EVEXEC_PENDING &&
            evexec__pool_unqueue(r->pool, &r->cf)) {
            r->phase |= EVEXEC__REQ_UNQUEUED;
            evexec__loop_schedule(loop, &r->deliver);
            continue;
        }
        r->phase |= EVEXEC__REQ_HOLDS_LOOP;
        evexec__loop_retain(loop);
    }
    evexec__list_init(&loop->requests);
}

/* ---- the public request ------------------------------------------------- */

_Static_assert(sizeof(struct evexec__request) <= EVEXEC_WORK_PRIVATE_SIZE,
               "struct evexec_work's private part is too small");
_Static_assert(_Alignof(struct evexec__request) <=
                   _Alignof(((struct evexec_work *)0)->evexec_private),
               "struct evexec_work's private part is not aligned enough");

static struct evexec__request *private_of(struct evexec_work *req)
{
    return (struct evexec__request *)(void *)req->evexec_private.bytes;
}

static struct evexec_work *public_of(struct evexec__request *r)
{
    return evexec__container_of((void *)r, struct evexec_work, evexec_private);
}

static void work_deliver(struct evexec__handle *h, bool discard)
{
    struct evexec__request *r = evexec__container_of(h, struct evexec__request, deliver);
    evexec_after_fn after = r->after;
    void *result;
    int status = evexec__request_outcome(r, &result);
    if (!discard) {
        evexec__request_delivered(r);
        after(public_of(r), status, result);
        return;
    }
    /* The loop was freed: on the loop thread inside evexec_loop_free, or on
     * the worker that finished the work. */
    struct evexec_loop *held = evexec__request_held_loop(r);
    after(public_of(r), ECANCELED, result);
    if (held)
        evexec__loop_release(held);
}

int evexec__work_queue(struct evexec_loop *loop, struct evexec_pool *pool,
                       struct evexec_work *req, evexec_work_fn work, evexec_after_fn after)
{
    struct evexec__request *r = private_of(req);
    evexec__request_init(r, work, req, work_deliver);
    r->after = after;
    return evexec__request_submit(r, loop, pool);
}

bool evexec_work_cancel(struct evexec_work *req)
{
    if (!req) {
        errno = EINVAL;
        return false;
    }
    struct evexec__request *r = private_of(req);
    int err = evexec__loop_check(r->loop, "evexec_work_cancel");
    if (err) {
        errno = err;
        return false;
    }
    return evexec__request_cancel(r);
}
