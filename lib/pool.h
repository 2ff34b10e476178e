/*
 * pool.h -- the insides of a pool, shared by the pool (pool.c) and its views
 * (view.c), and by nobody else: the rest of the library sees a pool only
 * through executor.h.
 *
 * A view is a struct evexec_pool with a parent and view_ops set. pool.c
 * never calls view.c by name: where a public function meets a view, it goes
 * through view_ops, so the dependency runs one way, from view to pool.
 */
#ifndef EVEXEC_POOL_H
#define EVEXEC_POOL_H

#include "executor.h"

/* What a view does where a pool does its own thing; set by view.c. */
struct evexec__view_ops {
    int (*submit)(struct evexec_pool *view, struct evexec_cfuture *cf);
    int (*shutdown)(struct evexec_pool *view, unsigned flags);
    void (*orphan)(struct evexec_pool *view);
    /* True on a thread that runs one of view's tasks now. */
    bool (*inside_own_task)(const struct evexec_pool *view);
    /* evexec__pool_drained. */
    bool (*drained)(struct evexec_pool *view);
};

struct evexec_pool {
    struct evexec__lock lock;
    struct evexec_cfuture *qhead, *qtail;
    size_t queued;
    struct evexec__list idle;             /* parked workers, most recent first */
    struct evexec__list live;             /* every worker not yet gone, by index */
    struct evexec__list zombies;          /* exited, not yet joined */
    unsigned nthreads;                    /* workers that will look at the queue again */
    unsigned nalive;                      /* threads not yet finished: at most max_workers */
    unsigned nidle, nspinning;
    /* Workers between the end of a task and taking the lock again: about to
     * look at the queue, so a submission need not wake or make another. */
    _Atomic unsigned nreturning;
    unsigned njoining;                    /* shutdown(WAIT) callers joining zombies */
    _Atomic unsigned exit_word;           /* bumped when nalive or njoining reaches 0 */
    bool stopping, broken, orphan;
    /* What a view on this pool gets when it asks for a pump: 0, ESHUTDOWN or
     * EVEXEC_EBROKEN; read without the lock by the views. */
    _Atomic int refusing;
    _Atomic unsigned refs;                /* the owner + each view made on it */
    uint64_t submitted, started, cancelled, failed, threads_started;
    uint64_t init_failures;
    int last_init_error;
    unsigned ninit;                       /* initialised workers alive */
    unsigned init_streak;                 /* inits failed since the last success */
    unsigned init_budget;                 /* of which while no initialised worker lived */
    uint64_t init_retry_at;               /* no init before (CLOCK_MONOTONIC ns) */
    /* A view's: its parent, its operations (NULL on a pool with threads),
     * how many pumps it may have in the parent and has, and how many lists
     * of tasks its last pump stranded are being settled outside the lock. */
    struct evexec_pool *parent;
    const struct evexec__view_ops *view_ops;
    unsigned max_running, npumps, nsettling;
    /* Counted before the outcome is published, so a reader that saw every
     * future done sees them all counted. */
    _Atomic uint64_t completed;
    unsigned fork_gen;
    /* Read by spinning workers without the lock. */
    _Alignas(EVEXEC__CACHELINE) _Atomic size_t queued_hint;
    /* The lock-free submission path (pool.c): tasks pushed while every
     * worker is busy, newest first, moved into the queue under the lock by
     * whoever looks at it next; and whether that path is open. */
    _Alignas(EVEXEC__CACHELINE) _Atomic(struct evexec_cfuture *) incoming;
    _Atomic bool fast_submit;
    _Alignas(EVEXEC__CACHELINE) struct evexec_pool_config cfg;
    uint64_t spin_ns;
    struct evexec__backoff spin;          /* pool lock: skips spins after fruitless ones */
    char name[16];
};

/* Without the lock: whether pool has tasks waiting for a worker, in its queue
 * or on its lock-free path (pool.c). */
static inline bool evexec__pool_work_waiting(const struct evexec_pool *pool)
{
    return atomic_load_explicit(&pool->queued_hint, memory_order_relaxed) > 0 ||
           atomic_load_explicit(&pool->incoming, memory_order_relaxed) != NULL;
}

/* ---- the FIFO queue (pool lock held) --------------------------------------- */

static inline void evexec__pool_queue_push(struct evexec_pool *pool,
                                           struct evexec_cfuture *cf)
{
    cf->qnext = NULL;
    cf->qlink = pool->qtail ? &pool->qtail->qnext : &pool->qhead;
    *cf->qlink = cf;
    pool->qtail = cf;
    pool->queued++;
    atomic_store_explicit(&pool->queued_hint, pool->queued, memory_order_relaxed);
}

/* Unlink cf, which is in pool's queue (cf->qlink != NULL). */
static inline void evexec__pool_queue_remove(struct evexec_pool *pool,
                                             struct evexec_cfuture *cf)
{
    *cf->qlink = cf->qnext;
    if (cf->qnext)
        cf->qnext->qlink = cf->qlink;
    else
        pool->qtail = cf->qlink == &pool->qhead
                          ? NULL
                          : evexec__container_of(cf->qlink, struct evexec_cfuture, qnext);
    cf->qlink = NULL;
    pool->queued--;
    atomic_store_explicit(&pool->queued_hint, pool->queued, memory_order_relaxed);
}

static inline struct evexec_cfuture *evexec__pool_queue_pop(struct evexec_pool *pool)
{
    struct evexec_cfuture *cf = pool->qhead;
    if (cf)
        evexec__pool_queue_remove(pool, cf);
    return cf;
}

/* Empty the queue of tasks that cannot run (broken pool, no thread): each is
 * started here, so nobody can cancel it any more, and counted as failed (or
 * as cancelled if it was already); evexec__pool_fail_list() then publishes
 * the error outside the lock. */
struct evexec_cfuture *evexec__pool_take_to_fail(struct evexec_pool *pool);
/* Empty the queue for shutdown(CANCEL_PENDING); evexec__pool_cancel_list()
 * then cancels them outside the lock. */
struct evexec_cfuture *evexec__pool_take_to_cancel(struct evexec_pool *pool);

/* Outside the lock: publish err on the tasks evexec__pool_take_to_fail()
 * started, drop the ones that were cancelled, and the queue's reference of
 * each. */
void evexec__pool_fail_list(struct evexec_cfuture *list, int err);
void evexec__pool_cancel_list(struct evexec_cfuture *list);

/* Drop a reference to the memory of pool: its owner's (free, or the last
 * worker of an orphan) or a view's, which then drops its parent's. */
void evexec__pool_unref(struct evexec_pool *pool);

#endif /* EVEXEC_POOL_H */
