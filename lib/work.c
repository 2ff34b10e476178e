/*
 * work.c -- the request layer: evexec_queue_work and evexec_work_cancel,
 * and the request every evexec_run_in_executor block embeds.
 *
 *   submit (loop thread)      -> the request's task joins its pool's queue
 *                                and counts as loop work (the loop keeps
 *                                listening); a public one joins
 *                                loop->requests
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
 * Teardown (evexec_loop_free, after the loop's futures were cancelled,
 * which cancelled their requests): each public request still in flight is
 * either unlinked from its queue, and its delivery scheduled -- the loop's
 * close disposes of the ready queue, so its owner hears ECANCELED inside
 * evexec_loop_free -- or running, or done and on its way: it takes a reference on the loop's memory, which its disposal
 * (run(h, true), on the loop thread in the close or on the worker that posts
 * after it) gives back once the owner has heard ECANCELED.
 */
#include "work.h"

#include <errno.h>

void evexec__request_done(struct evexec_cfuture *cf)
{
    struct evexec__request *r = (struct evexec__request *)cf;
    evexec__loop_post(r->loop, &r->deliver);
}

bool evexec__request_cancel(struct evexec__request *r)
{
    if (r->phase & EVEXEC__REQ_UNQUEUED)
        return true;
    int state = atomic_load(&r->cf.state);
    for (;;) {
        switch (state) {
        case EVEXEC_PENDING:
            if (evexec__pool_unqueue(r->pool, &r->cf)) {
                r->phase |= EVEXEC__REQ_UNQUEUED;
                evexec__loop_schedule(r->loop, &r->deliver); /* never inside the call */
                return true;
            }
            /* Not queued any more: a worker started it after the state
             * was read (ask it to stop), or a pool shutdown took it to
             * cancel it (flagged under the lock unqueue took; its delivery
             * comes from there), or to fail it (then it is RUNNING). */
            state = atomic_load(&r->cf.state);
            if (state == EVEXEC_PENDING)
                return atomic_load_explicit(&r->cf.flags, memory_order_relaxed) &
                       EVEXEC__CF_SHUTDOWN_CANCEL;
            continue;
        case EVEXEC_RUNNING:
            atomic_fetch_or(&r->cf.flags, EVEXEC__CF_CANCEL_REQUESTED);
            return false;
        case EVEXEC_CANCELLED:
            return true; /* a pool shutdown cancelled it: it never runs */
        default:
            return false; /* done: its outcome is on its way */
        }
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

/* ---- the public request ------------------------------------------------- */

void evexec__requests_loop_free(struct evexec_loop *loop)
{
    struct evexec__list *n, *next;
    for (n = loop->requests.next; n != &loop->requests; n = next) {
        next = n->next;
        struct evexec__public_request *p = evexec__container_of(n, struct evexec__public_request, node);
        struct evexec__request *r = &p->r;
        /* Nothing touches the list after this: its head is freed with the
         * loop, and a disposal may run on a worker. */
        evexec__list_init(n);
        /* As a cancel: one still queued leaves its queue, its delivery on
         * the ready queue that the close disposes of; a running one is
         * asked to stop. Any other delivery comes from another thread. */
        if (evexec__request_cancel(r) && (r->phase & EVEXEC__REQ_UNQUEUED))
            continue;
        r->phase |= EVEXEC__REQ_HOLDS_LOOP;
        evexec__loop_retain(loop);
    }
    evexec__list_init(&loop->requests);
}

_Static_assert(sizeof(struct evexec__public_request) <= EVEXEC_WORK_PRIVATE_SIZE,
               "struct evexec_work's private part is too small");
_Static_assert(sizeof(void *) != 8 || sizeof(struct evexec_work) == 192,
               "struct evexec_work must keep the size its header promises");
_Static_assert(_Alignof(struct evexec__public_request) <=
                   _Alignof(((struct evexec_work *)0)->evexec_private),
               "struct evexec_work's private part is not aligned enough");

static struct evexec__public_request *private_of(struct evexec_work *req)
{
    return (struct evexec__public_request *)(void *)req->evexec_private.bytes;
}

static struct evexec_work *public_of(struct evexec__public_request *p)
{
    return evexec__container_of((void *)p, struct evexec_work, evexec_private);
}

void evexec__work_deliver(struct evexec__handle *h, bool discard)
{
    struct evexec__public_request *p =
        evexec__container_of(h, struct evexec__public_request, r.deliver);
    evexec_after_fn after = p->after;
    void *result;
    int status = evexec__request_outcome(&p->r, &result);
    if (!discard) {
        evexec__list_remove(&p->node);
        evexec__request_delivered(&p->r);
        after(public_of(p), status, result);
        return;
    }
    /* The loop was freed: on the loop thread inside evexec_loop_free, or on
     * the worker that finished the work. Read before after, which may free
     * the request. */
    struct evexec_loop *held = (p->r.phase & EVEXEC__REQ_HOLDS_LOOP) ? p->r.loop : NULL;
    after(public_of(p), ECANCELED, result);
    if (held)
        evexec__loop_release(held);
}

bool evexec_work_cancel(struct evexec_work *req)
{
    if (!req) {
        errno = EINVAL;
        return false;
    }
    struct evexec__request *r = &private_of(req)->r;
    int err = evexec__loop_check(r->loop, "evexec_work_cancel");
    if (err) {
        errno = err;
        return false;
    }
    return evexec__request_cancel(r);
}
