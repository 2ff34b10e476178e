/*
 * work.h -- the request layer (work.c): a task whose memory is its owner's,
 * whose outcome reaches the loop thread through one handle, with no
 * allocation and no reference count. The public struct evexec_work holds
 * one; every evexec_run_in_executor block embeds one (chain.c), so there is
 * one delivery path.
 */
#ifndef EVEXEC_WORK_H
#define EVEXEC_WORK_H

#include "executor.h"
#include "loop.h"

/* phase bits (loop thread until evexec_loop_free, then read by disposers) */
#define EVEXEC__REQ_UNQUEUED   0x1u /* cancelled out of its queue; delivery scheduled */
#define EVEXEC__REQ_HOLDS_LOOP 0x2u /* evexec_loop_free left it a loop reference */

struct evexec__request {
    /* The task, first. Its references never reach zero: one is the
     * queue's, the other is never dropped, since the request's memory is
     * its owner's and is given back by the delivery, not by a count. */
    struct evexec_cfuture cf;
    /* Posted when the outcome is final. The owner's run(h, false) calls
     * evexec__request_delivered() and reports; run(h, true) means the loop
     * was freed: report ECANCELED. */
    struct evexec__handle deliver;
    struct evexec_loop *loop;
    struct evexec_pool *pool;          /* the one it was queued on (a view, maybe) */
    unsigned phase;
};

/* on_done of a request's task: post its delivery. */
void evexec__request_done(struct evexec_cfuture *cf);

/* Prepare r to run fn(arg); deliver is its delivery handler. The owner may
 * then set r->cf.free_result and r->cf.free_arg, before the submission.
 * Inline, as the submission: this is the hot path of every task. */
static inline void evexec__request_init(struct evexec__request *r, evexec_work_fn fn, void *arg,
                                        void (*deliver)(struct evexec__handle *h, bool discard))
{
    evexec__cfuture_init(&r->cf, fn, arg, NULL, 2); /* the queue's + one never dropped */
    r->cf.on_done = evexec__request_done;
    r->deliver.run = deliver;
    r->phase = 0;
}

/* Loop thread, loop and pool checked: queue r on pool. 0 or the pool's
 * refusal (then nothing of r is kept anywhere). */
static inline int evexec__request_submit(struct evexec__request *r, struct evexec_loop *loop,
                                         struct evexec_pool *pool)
{
    r->loop = loop;
    r->pool = pool;
    int err = evexec__pool_submit_cf(pool, &r->cf);
    if (err)
        return err;
    /* After the submission: a task failed at once (no thread) is delivered
     * through the ready queue, never inside this call. */
    evexec__loop_work_begin(loop);
    return 0;
}

/* Loop thread: exact cancel. True if r will never run (its delivery is
 * scheduled, or was); false if it runs or ran (a running one is asked to
 * stop through evexec_cancel_requested()). */
bool evexec__request_cancel(struct evexec__request *r);
/* The outcome, read by the delivery: 0, the work's error, ECANCELED, or a
 * pool's EAGAIN / EVEXEC_EBROKEN; *result as the work left it. */
int evexec__request_outcome(const struct evexec__request *r, void **result);
/* Loop thread, first thing of a delivery that is not a disposal. */
static inline void evexec__request_delivered(struct evexec__request *r)
{
    evexec__loop_work_end(r->loop);
}

/* evexec_loop_free, after the futures were cancelled and before the loop
 * closes: the public requests still queued leave their queues and are
 * disposed of by the close; the others keep the loop's memory until they
 * are disposed of. (An evexec_run_in_executor block needs neither: its
 * future was cancelled, and holds the loop's memory itself.) */
void evexec__requests_loop_free(struct evexec_loop *loop);
/* What struct evexec_work's private bytes hold. */
struct evexec__public_request {
    struct evexec__request r;
    evexec_after_fn after;
    struct evexec__list node;          /* loop->requests while in flight */
};

/* The delivery of a public request. */
void evexec__work_deliver(struct evexec__handle *h, bool discard);

/* evexec_queue_work once its arguments are checked and its pool known. */
static inline int evexec__work_queue(struct evexec_loop *loop, struct evexec_pool *pool,
                                     struct evexec_work *req, evexec_work_fn work,
                                     evexec_after_fn after)
{
    struct evexec__public_request *p =
        (struct evexec__public_request *)(void *)req->evexec_private.bytes;
    evexec__request_init(&p->r, work, req, evexec__work_deliver);
    p->after = after;
    int err = evexec__request_submit(&p->r, loop, pool);
    if (!err)
        evexec__list_push_back(&loop->requests, &p->node);
    return err;
}

#endif /* EVEXEC_WORK_H */
