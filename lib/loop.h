/*
 * loop.h -- the loop bridge (loop.c): a plain scheduler of callbacks on the
 * thread of one event_base. It knows nothing of futures, cfutures or pools;
 * the fields marked with another component's name are that component's
 * data, which the loop only carries.
 */
#ifndef EVEXEC_LOOP_H
#define EVEXEC_LOOP_H

#include "common.h"

#include <errno.h>

struct event;
struct event_base;

/* How long one pass may run callbacks before it lets libevent poll and run
 * its due timers: a fifth of the 1 ms tick servers commonly use. */
#define EVEXEC__PASS_BUDGET_US 200

/* A node of the loop's queues. run(h, false) runs it on the loop thread;
 * run(h, true) disposes of it without running user code (teardown), from
 * whatever thread tears down: it must touch nothing the loop thread owns. */
struct evexec__handle {
    struct evexec__handle *next;
    void (*run)(struct evexec__handle *h, bool discard);
};

struct evexec_loop {
    /* Written by other threads: kept on lines of their own. */
    _Alignas(EVEXEC__CACHELINE) _Atomic(struct evexec__handle *) foreign;
    _Atomic bool draining;             /* loop is in a drain: posters need not write */
    _Atomic uint64_t wakeup_writes;
    _Atomic uint64_t wakeup_errors;    /* writes that failed for another reason than EAGAIN */
    _Alignas(EVEXEC__CACHELINE) _Atomic unsigned refs; /* the loop + every future */
    _Atomic bool closed;               /* evexec_loop_free has begun */
    int wake_rfd, wake_wfd;            /* equal for eventfd */
    unsigned fork_gen;

    /* Loop thread only. */
    _Alignas(EVEXEC__CACHELINE) struct event_base *base;
    pthread_t thread;
    struct event *wake_ev;             /* EV_READ on wake_rfd, added while listening */
    struct event *run_ev;              /* runs the ready queue */
    struct evexec__handle *ready_head, **ready_tail;
    struct evexec__handle *batch_head, **batch_tail; /* the drain in progress */
    bool run_scheduled;
    bool in_drain;
    uint64_t spin_ns;                  /* poll for completions before sleeping */
    uint64_t pass_budget_ns;           /* a pass stops running callbacks after this */
    unsigned cpus;                     /* the process may use; no spin with as many loops */
    struct evexec__backoff spin_backoff;
    uint64_t spins, spins_missed;
    struct evexec__backoff yield_backoff; /* yield before a drain: drain() */
    uint64_t pass_start_ns;            /* when the last pass began */
    bool listening;
    unsigned user_refs;
    size_t in_flight;                  /* producers' work the loop must wait for */
    uint64_t callbacks_run, foreign_posts, drains, passes_cut;
    struct evexec_loop *registry_next;

    /* Carried for other components (loop thread only). */
    struct evexec__list pending;       /* future.c: pending futures */
    struct evexec__list requests;      /* work.c: requests in flight */
    void *spare_blocks;                /* chain.c: recycled run_in_executor blocks */
    unsigned nspare;
    struct evexec_pool *default_pool;  /* bridge.c */
    bool default_pool_owned;           /* made by the loop, not given to it */
    bool default_pool_shut;            /* evexec_loop_shutdown_default_pool was called */
};

static inline bool evexec__loop_on_thread(const struct evexec_loop *loop)
{
    return pthread_equal(pthread_self(), loop->thread);
}
#define EVEXEC__ASSERT_LOOP_THREAD(loop, func) \
    EVEXEC__ASSERT(evexec__loop_on_thread(loop), (func), "called outside the loop thread")

static inline bool evexec__loop_closed(const struct evexec_loop *loop)
{
    return atomic_load_explicit(&loop->closed, memory_order_acquire);
}

/* The preconditions of every loop-thread entry point: 0, EINVAL (NULL),
 * EVEXEC_EFORKED, EVEXEC_ECLOSED; debug builds assert the thread. Inline:
 * it heads every submission. */
static inline int evexec__loop_check(const struct evexec_loop *loop, const char *func)
{
    if (!loop)
        return EINVAL;
    if (evexec__forked(loop->fork_gen))
        return EVEXEC_EFORKED;
    if (evexec__loop_closed(loop))
        return EVEXEC_ECLOSED;
    EVEXEC__ASSERT_LOOP_THREAD(loop, func);
    (void)func;
    return 0;
}

/* Loop thread: queue h at the end of the ready queue. */
void evexec__loop_schedule(struct evexec_loop *loop, struct evexec__handle *h);
/* Any thread: hand h to the loop, waking it if needed; once the loop is
 * closed, h is disposed of (run(h, true)) by whoever finds it. */
void evexec__loop_post(struct evexec_loop *loop, struct evexec__handle *h);
/* Loop thread: start or stop listening on the wakeup fd as work requires. */
void evexec__loop_update_listening(struct evexec_loop *loop);
/* Loop thread: producers' work the loop waits for (keeps it listening). */
static inline void evexec__loop_work_begin(struct evexec_loop *loop)
{
    loop->in_flight++;
    if (!loop->listening)
        evexec__loop_update_listening(loop);
}
static inline void evexec__loop_work_end(struct evexec_loop *loop)
{
    loop->in_flight--;
    /* A drain updates listening when it ends. */
    if (!loop->in_drain)
        evexec__loop_update_listening(loop);
}
/* Loop thread, evexec_loop_free: mark the loop closed, take it out of the
 * registry, dispose of every queued handle and free its events. What is
 * posted later is disposed of by its poster. */
void evexec__loop_close(struct evexec_loop *loop);

void evexec__loop_destroy(struct evexec_loop *loop);
static inline void evexec__loop_retain(struct evexec_loop *loop)
{
    atomic_fetch_add_explicit(&loop->refs, 1, memory_order_relaxed);
}
static inline void evexec__loop_release(struct evexec_loop *loop)
{
    if (atomic_fetch_sub_explicit(&loop->refs, 1, memory_order_acq_rel) == 1)
        evexec__loop_destroy(loop);
}

#endif /* EVEXEC_LOOP_H */
