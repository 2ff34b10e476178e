/*
 * future.h -- the loop future (future.c). A future knows its loop and its
 * callbacks, nothing of what completes it: a producer (the chain, a
 * combinator) that needs to hear of cancellation, own the future's memory or
 * keep its result elsewhere gives the future a table of hooks.
 */
#ifndef EVEXEC_FUTURE_H
#define EVEXEC_FUTURE_H

#include "loop.h"

enum { EVEXEC__F_PENDING, EVEXEC__F_FINISHED, EVEXEC__F_CANCELLED };

struct evexec__done_cb {
    evexec_future_cb cb;
    void *arg;
};

/* A producer's hooks. Every one is optional; all but release run on the loop
 * thread. */
struct evexec__future_ops {
    /* The future was just cancelled -- by evexec_future_cancel, a combinator,
     * or evexec_loop_free (then the loop is closing and no callback will
     * run) -- and its callbacks are scheduled: stop what would complete it. */
    void (*cancelled)(struct evexec_future *f);
    /* evexec_future_request_cancel (NULL: ENOTSUP). */
    int (*request_cancel)(struct evexec_future *f);
    /* The result lives with the producer (wrap_cfuture): evexec_future_result
     * and _take_result of a finished future without error ask here. */
    int (*outcome)(struct evexec_future *f, void **result, bool take);
    /* The last reference went and the future's own contents are freed: free
     * the memory (f is part of the producer's block). NULL: evexec__free(f).
     * Runs on whatever thread dropped the last reference; after
     * evexec_loop_free that may be a worker, so it must not touch loop-owned
     * state there. */
    void (*release)(struct evexec_future *f);
    /* Only the producer completes it: evexec_future_set_* answer EINVAL. */
    bool producer_only;
};

struct evexec_future {
    struct evexec_loop *loop;
    _Atomic unsigned refs;             /* atomic: the last one may go on a worker after loop free */
    unsigned char state;               /* EVEXEC__F_* */
    bool done_queued;                  /* done_handle is in a queue (holds a ref) */
    bool taken;                        /* own result taken */
    int error;
    void *result;                      /* own result */
    evexec_free_fn free_result;
    const struct evexec__future_ops *ops; /* NULL: a plain future */
    struct evexec__done_cb first_cb;   /* the common case needs no allocation */
    struct evexec__done_cb *more_cbs;
    unsigned ncbs, cap, nrun;
    struct evexec__handle done_handle;
    struct evexec__list pending_node;  /* in loop->pending while pending */
};

/* Initialise a future in the producer's memory, pending, with refs
 * references; it holds the loop's memory until its last release. */
void evexec__future_init(struct evexec_future *f, struct evexec_loop *loop, unsigned refs,
                         const struct evexec__future_ops *ops);
/* Complete a pending future (loop thread): FINISHED with a result or an
 * error, or CANCELLED; schedules the callbacks (never runs them here). A
 * cancellation through here does not call the cancelled hook. */
void evexec__future_finish(struct evexec_future *f, void *result, evexec_free_fn free_result,
                           int error);
void evexec__future_settle_cancelled(struct evexec_future *f);
/* Complete a pending future from the drain that delivers its outcome (state
 * EVEXEC__F_FINISHED or _CANCELLED) and run its callbacks right here, later
 * in the same drain: completed by the bridge, not by a user call, so a
 * completion costs one pass, not two. */
void evexec__future_deliver(struct evexec_future *f, unsigned char state, void *result,
                            evexec_free_fn free_result, int error);
/* evexec_future_release for a reference the library itself holds (never on
 * an inherited future): no argument checks on the hot path. */
void evexec__future_drop(struct evexec_future *f);
/* evexec_loop_free: cancel every pending future of the loop (their hooks
 * run), before the loop is closed. */
void evexec__future_cancel_all(struct evexec_loop *loop);

#endif /* EVEXEC_FUTURE_H */
