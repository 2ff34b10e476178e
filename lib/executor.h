/*
 * executor.h -- the executor half: the concurrent future (cfuture.c) and the
 * pool (pool.c, and its views in view.c). Usable without a loop: nothing
 * here names libevent or a loop, and the only way out to the other half is
 * the on_done hook, which the chain sets.
 */
#ifndef EVEXEC_EXECUTOR_H
#define EVEXEC_EXECUTOR_H

#include "common.h"

/* ---- cfuture.c ---------------------------------------------------------- */

struct evexec__cb_node {
    struct evexec__cb_node *next;
    evexec_cfuture_cb cb;
    void *arg;
};

/* cfuture flags */
#define EVEXEC__CF_WAITERS          0x1u  /* someone may sleep on the stripe */
#define EVEXEC__CF_CALLBACKS        0x2u  /* callbacks list not empty */
#define EVEXEC__CF_CANCEL_REQUESTED 0x4u  /* cancel asked while running */
#define EVEXEC__CF_TAKEN            0x8u  /* result taken by a _take_result */
#define EVEXEC__CF_MANY             0x10u /* evexec_cfuture_wait_many waits for it */
#define EVEXEC__CF_SHUTDOWN_CANCEL  0x20u /* taken by a shutdown, to be cancelled */

/* A task and its concurrent future are one object. */
struct evexec_cfuture {
    struct evexec_cfuture *qnext;      /* pool queue link (pool lock) */
    /* The pointer that points at this task in its pool's queue (the head or
     * the previous task's qnext), NULL when not queued: a request leaves
     * the queue in constant time when it is cancelled (pool lock). */
    struct evexec_cfuture **qlink;
    evexec_work_fn fn;
    void *arg;
    evexec_free_fn free_result;
    evexec_free_fn free_arg;           /* run_in_executor_ex: arg is ours */
    _Atomic int state;                 /* EVEXEC_PENDING ... */
    _Atomic unsigned flags;            /* EVEXEC__CF_* */
    _Atomic unsigned refs;
    int error;                         /* written before state turns FINISHED */
    void *result;
    unsigned fork_gen;
    /* Told when the state is final, in the completing thread, instead of
     * waiters and callbacks; set by chain.c so the executor half needs to
     * know nothing of loops, and by view.c on a view's pumps. Its setter
     * holds a reference until told. */
    void (*on_done)(struct evexec_cfuture *cf);
    struct evexec__cb_node *callbacks; /* stripe lock */
    struct evexec__cb_node **callbacks_tail;
};

/* Inline: it is on every submission's path. */
static inline void evexec__cfuture_init(struct evexec_cfuture *cf, evexec_work_fn fn,
                                        void *arg, evexec_free_fn free_result, unsigned refs)
{
    cf->qnext = NULL;
    cf->qlink = NULL;
    cf->fn = fn;
    cf->arg = arg;
    cf->free_result = free_result;
    cf->free_arg = NULL;
    atomic_init(&cf->state, EVEXEC_PENDING);
    atomic_init(&cf->flags, 0);
    atomic_init(&cf->refs, refs);
    cf->error = 0;
    cf->result = NULL;
    cf->fork_gen = evexec__fork_gen();
    cf->on_done = NULL;
    cf->callbacks = NULL;
    cf->callbacks_tail = &cf->callbacks;
}

/* The one PENDING -> RUNNING transition; false if it was cancelled. */
bool evexec__cfuture_start(struct evexec_cfuture *cf);
/* Run a started task's function on this thread (evexec_cancel_requested()
 * works inside). Its outcome is published by evexec__cfuture_finish_release. */
int evexec__cfuture_execute(struct evexec_cfuture *cf, void **result);
/* Publish the outcome, complete the future and drop the caller's reference,
 * at the moment that lets the other holder drop the last one. If done
 * callbacks are to run, before_callbacks(ctx) (may be NULL) is called first,
 * in this thread: the pool learns that its worker is about to run user code
 * and must no longer count as coming back to the queue. */
void evexec__cfuture_finish_release(struct evexec_cfuture *cf, int err, void *result,
                                    void (*before_callbacks)(void *ctx), void *ctx);
/* Fail a task that could not be run (pool broken, no thread): PENDING ->
 * FINISHED with err. False (no-op) if it was cancelled meanwhile. */
bool evexec__cfuture_fail(struct evexec_cfuture *cf, int err);
/* Free the result now if nobody took it (late result of a cancelled chain). */
void evexec__cfuture_drop_result(struct evexec_cfuture *cf);
/* Drop a reference; true if it was the last one. The caller then frees the
 * contents with evexec__cfuture_destroy_contents and the memory itself. */
bool evexec__cfuture_unref(struct evexec_cfuture *cf);
void evexec__cfuture_destroy_contents(struct evexec_cfuture *cf);
/* Result access shared with the chain: 0, task error, ECANCELED,
 * EINPROGRESS, EVEXEC_ETAKEN. */
int evexec__cfuture_outcome(struct evexec_cfuture *cf, void **result, bool take);

/* ---- pool.c ------------------------------------------------------------- */

/* Queue an initialised cfuture (refs already counts the queue's reference). */
int evexec__pool_submit_cf(struct evexec_pool *pool, struct evexec_cfuture *cf);
/* Take cf out of pool's queue if it is still there, and mark it cancelled;
 * false if it is not queued (running, done, or taken by a shutdown that
 * settles it). cf must have been submitted to pool itself (for a view, the
 * view). Whoever unqueues it delivers its outcome: on_done is not called. */
bool evexec__pool_unqueue(struct evexec_pool *pool, struct evexec_cfuture *cf);
/* Shut down with CANCEL_PENDING, never block, and let the last worker free
 * the pool (the loop's default pool at evexec_loop_free). */
void evexec__pool_orphan(struct evexec_pool *pool);
/* Whether a shut-down pool is done with its work, every outcome of its
 * tasks published: none of its threads is alive, or, for a view, none of its
 * turns is left in its parent (a view has no threads to count). True for a
 * pool of the parent process in a forked child: nothing runs there. */
bool evexec__pool_drained(struct evexec_pool *pool);

#endif /* EVEXEC_EXECUTOR_H */
