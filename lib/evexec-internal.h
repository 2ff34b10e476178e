/*
 * evexec-internal.h -- what the components of libevexec share and nothing
 * else includes. Internal non-static names start with evexec__.
 *
 * Components and who calls whom (one way only):
 *   common.c   errors, version, fork generation, allocation hooks
 *   cfuture.c  concurrent future: state machine, waits, done callbacks
 *   pool.c     worker threads and the FIFO work queue (uses cfuture.c)
 *   loop.c     the loop bridge: ready queue, foreign MPSC stack, wakeup fd
 *   future.c   loop future (uses loop.c)
 *   chain.c    run_in_executor / wrap_cfuture: joins cfuture and future
 * The executor half (cfuture.c, pool.c) includes nothing of libevent.
 */
#ifndef EVEXEC_INTERNAL_H
#define EVEXEC_INTERNAL_H

#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "evexec.h"

#define EVEXEC__CACHELINE 64
#define evexec__container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Thread-locals of the library: initial-exec, so reading one is a single
 * load instead of a __tls_get_addr call (the library is linked, not
 * dlopen()ed late, and needs only two pointers of static TLS). */
#if defined(__GNUC__)
#define EVEXEC__TLS _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define EVEXEC__TLS _Thread_local
#endif

#if defined(__GNUC__)
#define evexec__likely(x)   __builtin_expect(!!(x), 1)
#define evexec__unlikely(x) __builtin_expect(!!(x), 0)
#else
#define evexec__likely(x)   (x)
#define evexec__unlikely(x) (x)
#endif

/* ---- common.c ----------------------------------------------------------- */

/* Every allocation of the library goes through these, so the fault-injection
 * build can make the Nth one fail. */
void *evexec__malloc(size_t size);
void *evexec__calloc(size_t n, size_t size);
void  evexec__free(void *p);
int   evexec__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

/* Bumped in every child after fork(); objects remember the generation they
 * were made in and refuse to work in another one (EVEXEC_EFORKED). */
extern _Atomic unsigned evexec__fork_generation;
void evexec__fork_init(void);
static inline unsigned evexec__fork_gen(void)
{
    return atomic_load_explicit(&evexec__fork_generation, memory_order_relaxed);
}
/* Locks that fork handlers must take in the parent and reset in the child. */
void evexec__cfuture_atfork_prepare(void);
void evexec__cfuture_atfork_parent(void);
void evexec__cfuture_atfork_child(void);
void evexec__loop_atfork_prepare(void);
void evexec__loop_atfork_parent(void);
void evexec__loop_atfork_child(void);

/* Absolute CLOCK_MONOTONIC deadline timeout_ms from now (timeout_ms >= 0). */
void evexec__deadline(struct timespec *ts, long timeout_ms);
uint64_t evexec__now_ns(void);
/* How many CPUs this process may run on: spinning on one CPU only steals
 * it from the thread being waited for. */
int evexec__cpus_allowed(void);
void evexec__cpu_relax(void);

#ifdef EVEXEC_DEBUG
#define EVEXEC__ASSERT(cond, func, what) \
    do { if (!(cond)) evexec__misuse((func), (what)); } while (0)
#else
#define EVEXEC__ASSERT(cond, func, what) do { (void)sizeof(cond); } while (0)
#endif
void evexec__misuse(const char *func, const char *what) __attribute__((noreturn));

#ifdef EVEXEC_FAULT_INJECTION
/* Test hooks: the nth allocation (or thread creation) from now fails, 0 turns
 * it off; the counters tell how many were attempted. */
EVEXEC_EXPORT void evexec__fault_fail_alloc(long nth);
EVEXEC_EXPORT void evexec__fault_fail_thread(long nth);
EVEXEC_EXPORT long evexec__fault_alloc_count(void);
EVEXEC_EXPORT long evexec__fault_thread_count(void);
#endif

/* ---- sync.c ------------------------------------------------------------- */

/* A futex mutex: 0 free, 1 held, 2 held with sleepers. */
struct evexec__lock {
    _Atomic unsigned state;
};
#define EVEXEC__LOCK_INIT {0}
void evexec__lock_acquire_slow(struct evexec__lock *l);
void evexec__lock_wake(struct evexec__lock *l);

static inline void evexec__lock_acquire(struct evexec__lock *l)
{
    unsigned c = 0;
    if (evexec__unlikely(!atomic_compare_exchange_strong_explicit(
            &l->state, &c, 1, memory_order_acquire, memory_order_relaxed)))
        evexec__lock_acquire_slow(l);
}

static inline void evexec__lock_release(struct evexec__lock *l)
{
    if (evexec__unlikely(atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2))
        evexec__lock_wake(l);
}

/* Sleep while *word == seen, until woken or the CLOCK_MONOTONIC deadline
 * (NULL: none); may return early. 0, or ETIMEDOUT once the deadline passed. */
int evexec__word_wait(_Atomic unsigned *word, unsigned seen, const struct timespec *deadline);
/* Change *word and wake one sleeper (or all). */
void evexec__word_wake(_Atomic unsigned *word, bool all);

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

/* A task and its concurrent future are one object. */
struct evexec_cfuture {
    struct evexec_cfuture *qnext;      /* pool queue link (pool lock) */
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
    bool embedded;                     /* heads a run_in_executor block (chain.c frees it) */
    /* Told when the state is final, in the completing thread, instead of
     * waiters and callbacks; set by chain.c so the executor half needs to
     * know nothing of loops. Its setter holds a reference until told. */
    void (*on_done)(struct evexec_cfuture *cf);
    struct evexec__cb_node *callbacks; /* stripe lock */
    struct evexec__cb_node **callbacks_tail;
};

void evexec__cfuture_init(struct evexec_cfuture *cf, evexec_work_fn fn, void *arg,
                          evexec_free_fn free_result, unsigned refs);
/* The one PENDING -> RUNNING transition; false if it was cancelled. */
bool evexec__cfuture_start(struct evexec_cfuture *cf);
/* Run a started task's function on this thread (evexec_cancel_requested()
 * works inside), then publish its outcome and complete it. */
int evexec__cfuture_execute(struct evexec_cfuture *cf, void **result);
/* ... and drop the caller's reference, at the moment that lets the other
 * holder drop the last one. */
void evexec__cfuture_finish_release(struct evexec_cfuture *cf, int err, void *result);
/* Fail a task that could not be run (pool broken, no thread): PENDING ->
 * FINISHED with err. No-op if it was cancelled meanwhile. */
void evexec__cfuture_fail(struct evexec_cfuture *cf, int err);
/* Free the result now if nobody took it (late result of a cancelled chain). */
void evexec__cfuture_drop_result(struct evexec_cfuture *cf);
/* Drop a reference; true if it was the last one. The caller then frees the
 * contents with evexec__cfuture_destroy_contents and the memory itself. */
bool evexec__cfuture_unref(struct evexec_cfuture *cf);
void evexec__cfuture_destroy_contents(struct evexec_cfuture *cf);
/* Result access shared with future.c: 0, task error, ECANCELED, EINPROGRESS,
 * EVEXEC_ETAKEN. */
int evexec__cfuture_outcome(struct evexec_cfuture *cf, void **result, bool take);

/* ---- pool.c ------------------------------------------------------------- */

/* Queue an initialised cfuture (refs already counts the queue's reference). */
int evexec__pool_submit_cf(struct evexec_pool *pool, struct evexec_cfuture *cf);
/* Shut down with CANCEL_PENDING, never block, and let the last worker free
 * the pool (the loop's default pool at evexec_loop_free). */
void evexec__pool_orphan(struct evexec_pool *pool);

/* ---- loop.c ------------------------------------------------------------- */

/* A node of the loop's queues. run(h, false) runs it on the loop thread;
 * run(h, true) disposes of it without running user code (teardown), from
 * whatever thread tears down. */
struct evexec__handle {
    struct evexec__handle *next;
    void (*run)(struct evexec__handle *h, bool discard);
};

struct evexec_loop {
    /* Written by other threads: kept on lines of their own. */
    _Alignas(EVEXEC__CACHELINE) _Atomic(struct evexec__handle *) foreign;
    _Atomic bool draining;             /* loop is in a drain: posters need not write */
    _Atomic uint64_t wakeup_writes;
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
    bool spin_ok;                      /* the next pass may spin */
    unsigned spin_skip;                /* passes to go before spinning again */
    unsigned spin_backoff;             /* doubles with each missed poll */
    uint64_t spins, spins_missed;
    bool listening;
    unsigned user_refs;
    size_t in_flight;
    struct evexec_future *pending;     /* pending futures, cancelled at free */
    struct evexec_pool *default_pool;
    void *spare_blocks;                /* recycled run_in_executor blocks */
    unsigned nspare;
    uint64_t callbacks_run, foreign_posts, drains;
    struct evexec_loop *registry_next;
};

static inline bool evexec__loop_on_thread(const struct evexec_loop *loop)
{
    return pthread_equal(pthread_self(), loop->thread);
}
#define EVEXEC__ASSERT_LOOP_THREAD(loop, func) \
    EVEXEC__ASSERT(evexec__loop_on_thread(loop), (func), "called outside the loop thread")

/* Loop thread: queue h at the end of the ready queue. */
void evexec__loop_schedule(struct evexec_loop *loop, struct evexec__handle *h);
/* Any thread: hand h to the loop, waking it if needed; disposes of it if the
 * loop is closed. */
void evexec__loop_post(struct evexec_loop *loop, struct evexec__handle *h);
/* Loop thread: start or stop listening on the wakeup fd as work requires. */
void evexec__loop_update_listening(struct evexec_loop *loop);
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
static inline bool evexec__loop_closed(struct evexec_loop *loop)
{
    return atomic_load_explicit(&loop->closed, memory_order_acquire);
}

/* ---- future.c ----------------------------------------------------------- */

enum { EVEXEC__F_PENDING, EVEXEC__F_FINISHED, EVEXEC__F_CANCELLED };

struct evexec__done_cb {
    evexec_future_cb cb;
    void *arg;
};

struct evexec_future {
    struct evexec_loop *loop;
    _Atomic unsigned refs;             /* atomic: the last one may go on a worker after loop free */
    unsigned char state;               /* EVEXEC__F_* */
    bool done_queued;                  /* done_handle is in a queue (holds a ref) */
    bool embedded;                     /* lives in a run_in_executor block */
    bool taken;                        /* own result taken */
    int error;
    void *result;                      /* own result (not chained) */
    evexec_free_fn free_result;
    struct evexec_cfuture *cf;         /* chained concurrent future, or NULL */
    struct evexec__done_cb first_cb;   /* the common case needs no allocation */
    struct evexec__done_cb *more_cbs;
    unsigned ncbs, cap, nrun;
    struct evexec__handle done_handle;
    struct evexec__handle deliver_handle;
    struct evexec_future *pend_prev, *pend_next;
};

void evexec__future_init(struct evexec_future *f, struct evexec_loop *loop, unsigned refs);
/* Mark done and schedule callbacks (loop thread). */
void evexec__future_settle(struct evexec_future *f, unsigned char state, int error);
/* Run the callbacks not yet run, now (a chain delivery, from the drain). */
void evexec__future_run_callbacks(struct evexec_future *f);
/* Cancel without touching the chained cfuture's chain (loop teardown too). */
bool evexec__future_cancel(struct evexec_future *f);
void evexec__pending_unlink(struct evexec_future *f);

/* ---- chain.c ------------------------------------------------------------ */

/* The deliver handle's body. */
void evexec__chain_deliver(struct evexec__handle *h, bool discard);
/* Release an embedded future's block reference (future.c's last release). */
void evexec__chain_release_block(struct evexec_future *f);
/* Free the loop's recycled blocks (evexec_loop_free). */
void evexec__chain_free_spares(struct evexec_loop *loop);

#endif /* EVEXEC_INTERNAL_H */
