/*
 * evexec.h -- run blocking or CPU-heavy work on a thread pool and get the
 * result back on a libevent 2.1 loop thread as a future.
 *
 * libevexec has four parts, usable separately or chained:
 *
 *   - a pool of worker threads (struct evexec_pool), thread-safe;
 *   - a concurrent future (struct evexec_cfuture), what evexec_pool_submit()
 *     returns; thread-safe, with blocking waits;
 *   - a loop bridge (struct evexec_loop), one per struct event_base: a queue
 *     of callbacks run on the loop thread, fed from that thread
 *     (evexec_call_soon) or from any thread (evexec_call_soon_threadsafe);
 *   - a loop future (struct evexec_future), owned by the loop thread, whose
 *     done callbacks always run from the loop's queue.
 *
 * evexec_run_in_executor() joins them: it submits a work function to a pool
 * and returns a loop future that completes on the loop thread when the work
 * is done. Cancelling that future cancels the work: queued work never runs,
 * running work sees evexec_cancel_requested() turn true.
 *
 * Conventions
 *   - Functions returning int return 0 on success or a positive error code:
 *     an errno value or one of the EVEXEC_E* codes below
 *     (evexec_strerror() names both).
 *   - Functions returning a pointer return NULL on failure and set errno.
 *   - If a function that takes a callback fails, the callback is never called.
 *   - _free(NULL) and _release(NULL) do nothing.
 *
 * Threading rules
 *   - Pool and concurrent-future functions: any thread.
 *   - evexec_call_soon_threadsafe(): any thread.
 *   - Every other loop and loop-future function: the loop thread only, which
 *     is the thread that called evexec_loop_new() and must be the thread that
 *     runs the event_base. Builds configured with --enable-debug abort with a
 *     message naming the function when this rule is broken.
 *   - The library never calls libevent from a worker thread, so it works with
 *     or without evthread_use_pthreads().
 *   - Workers block the asynchronous signals, so the program's handlers and
 *     libevent's signal events keep running on the loop thread; the
 *     synchronous fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
 *     SIGSYS) stay unblocked, so a crash in a task reaches the program's
 *     crash handler (or a sanitizer's report).
 *
 * See evexec(7) for the whole picture.
 */
#ifndef EVEXEC_H
#define EVEXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define EVEXEC_EXPORT __attribute__((visibility("default")))
#define EVEXEC_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define EVEXEC_EXPORT
#define EVEXEC_WARN_UNUSED
#endif

struct event_base;

/** @name Version */
/**@{*/
#define EVEXEC_VERSION_MAJOR 0
#define EVEXEC_VERSION_MINOR 2
#define EVEXEC_VERSION_PATCH 0
#define EVEXEC_VERSION_STRING "0.2.0"
/** (major << 16) | (minor << 8) | patch, for compile-time comparisons. */
#define EVEXEC_VERSION_HEX \
    ((EVEXEC_VERSION_MAJOR << 16) | (EVEXEC_VERSION_MINOR << 8) | EVEXEC_VERSION_PATCH)

/**
 * The version of the library the program runs with ("0.2.0"), which may
 * differ from EVEXEC_VERSION_STRING, the one it was compiled against.
 * @return a static string. Any thread.
 */
EVEXEC_EXPORT const char *evexec_version(void);
/**@}*/

/** @name Errors */
/**@{*/
/** First code of the library's own; every errno value is below it. */
#define EVEXEC_ERRNO_BASE 0x4500
/** The pool is broken: a worker's thread_init hook failed. */
#define EVEXEC_EBROKEN (EVEXEC_ERRNO_BASE + 1)
/** The object was created before fork(); in the child it is unusable. */
#define EVEXEC_EFORKED (EVEXEC_ERRNO_BASE + 2)
/** The result was already taken out of the future by a _take_result call. */
#define EVEXEC_ETAKEN  (EVEXEC_ERRNO_BASE + 3)
/** The future's loop was freed. */
#define EVEXEC_ECLOSED (EVEXEC_ERRNO_BASE + 4)

/**
 * Text for any code the library returns: errno values (as strerror()) and
 * the EVEXEC_E* codes. Never NULL; thread-safe.
 */
EVEXEC_EXPORT const char *evexec_strerror(int err);
/**@}*/

/**
 * A work function, run on a worker thread.
 * @param arg     the argument given at submission.
 * @param result  where to store the result (initially NULL).
 * @return 0 on success, else a positive error code that the future reports.
 * A function that stops early because evexec_cancel_requested() is true
 * should return ECANCELED. If it returns an error and still stored a
 * result, the result is freed with the free function given at submission.
 */
typedef int (*evexec_work_fn)(void *arg, void **result);
/** Frees a result; called at most once per result, from any thread. */
typedef void (*evexec_free_fn)(void *result);

/* ------------------------------------------------------------------------ */
/** @name Pool */
/**@{*/

struct evexec_pool;

/**
 * Pool configuration. Zero-filled means "default" for every field, so
 * initialise it with `= {0}` and set what you need.
 */
struct evexec_pool_config {
    unsigned    max_workers;      /**< 0 → min(32, CPUs + 4) */
    unsigned    min_workers;      /**< kept alive while idle; 0 → none */
    unsigned    idle_timeout_ms;  /**< idle workers above min exit after this; 0 → 10000 */
    size_t      max_queued;       /**< queued (not yet running) tasks; 0 → unbounded */
    const char *thread_name;      /**< worker thread name prefix; NULL → "evexec" */
    /** Run once by each worker before its first task; it may give the worker
     *  a state of its own with evexec_worker_set_state() and learn its index
     *  with evexec_worker_index(). Nonzero → the pool is broken: queued and
     *  later tasks fail with EVEXEC_EBROKEN; with EVEXEC_POOL_INIT_RETRY only
     *  this worker fails, and a later one retries. */
    int  (*thread_init)(void *ctx);
    /** Run once by each worker as it exits (not if its thread_init failed);
     *  evexec_worker_state() gives it the worker's state back to close. */
    void (*thread_exit)(void *ctx);
    void       *thread_ctx;       /**< passed to thread_init and thread_exit */
    /* Fields below go beyond the basic configuration; zero still means default. */
    /** How long an idle worker keeps polling the queue before it sleeps,
     *  in microseconds; 0 → EVEXEC_DEFAULT_SPIN_US. Spinning trades a little
     *  CPU for a much faster hand-off of the next task; a spinning worker
     *  yields its CPU every few microseconds, so a thread that shares it
     *  (the loop, often) is not held back. */
    unsigned    spin_us;
    /** Nice increment of worker threads (Linux: per thread), so the loop
     *  thread wins the CPU when both want it; 0 → EVEXEC_DEFAULT_WORKER_NICE. */
    int         worker_nice;
    /** EVEXEC_POOL_* flags. */
    unsigned    flags;
    /** Room for fields to come without an ABI break: must be zero
     *  (evexec_pool_new() fails with EINVAL otherwise, so a program that
     *  sets a field this version does not know learns it). */
    uintptr_t   reserved[8];
};

/** Default of evexec_pool_config.spin_us. */
#define EVEXEC_DEFAULT_SPIN_US 50
/** Default of evexec_pool_config.worker_nice. */
#define EVEXEC_DEFAULT_WORKER_NICE 5
/** Flag: workers never spin; they sleep as soon as the queue is empty. */
#define EVEXEC_POOL_NO_SPIN        0x1u
/** Flag: workers keep the priority of the thread that created them. */
#define EVEXEC_POOL_KEEP_PRIORITY  0x2u
/** Flag (Linux): workers run under SCHED_IDLE instead of a nice increment, so
 *  the loop thread preempts them the moment it wakes. They then get CPU only
 *  when no normal thread of any process wants it: for a machine that runs
 *  little else. */
#define EVEXEC_POOL_SCHED_IDLE     0x4u
/** Flag: a failed thread_init fails only its worker, which exits (without
 *  thread_exit); the next worker retries after a backoff (1 ms, doubling up
 *  to 1 s, reset by a success). Queued tasks wait for a worker that
 *  initialised; they fail with the hook's return value (EVEXEC_EBROKEN if it
 *  is not positive) only when no initialised worker is alive and
 *  EVEXEC_POOL_INIT_RETRY_BUDGET inits in a row failed -- the count then
 *  starts again for the tasks that come next. The pool never breaks. */
#define EVEXEC_POOL_INIT_RETRY     0x8u
/** Failed inits in a row, with no initialised worker alive, after which the
 *  queued tasks of an EVEXEC_POOL_INIT_RETRY pool fail. */
#define EVEXEC_POOL_INIT_RETRY_BUDGET 8

/** evexec_pool_shutdown() flag: join every worker before returning. */
#define EVEXEC_SHUTDOWN_WAIT           0x1u
/** evexec_pool_shutdown() flag: queued tasks become CANCELLED, never run. */
#define EVEXEC_SHUTDOWN_CANCEL_PENDING 0x2u

/**
 * Make a pool. No thread starts until work is submitted: workers are made
 * lazily up to max_workers, an idle worker is reused before a new one is made.
 * @param cfg NULL or a configuration (copied; thread_name is copied too, cut
 *   to 11 characters so that "-NNN" fits the kernel's 15).
 * @return the pool, or NULL with errno EINVAL (min_workers > max_workers,
 *         or an unknown bit in flags) or ENOMEM. Any thread.
 */
EVEXEC_EXPORT struct evexec_pool *evexec_pool_new(const struct evexec_pool_config *cfg)
    EVEXEC_WARN_UNUSED;

struct evexec_cfuture;

/**
 * Queue fn(arg) on the pool.
 * @param free_result called on the result if nobody takes it (may be NULL).
 * @return a concurrent future holding one reference for the caller (drop it
 *   with evexec_cfuture_release()), or NULL with errno EINVAL (NULL pool or
 *   fn), ESHUTDOWN (after evexec_pool_shutdown of the pool or, for a view,
 *   of a pool it is a view of), EAGAIN (max_queued reached),
 *   EVEXEC_EBROKEN (a thread_init failed), EVEXEC_EFORKED, ENOMEM.
 * If no worker thread will look at the queue again and none can be created,
 * the future fails with EAGAIN (counted in evexec_pool_stats.failed). Any
 * thread.
 */
EVEXEC_EXPORT struct evexec_cfuture *evexec_pool_submit(struct evexec_pool *pool,
    evexec_work_fn fn, void *arg, evexec_free_fn free_result) EVEXEC_WARN_UNUSED;

/**
 * Stop accepting work. Flags: 0 (return at once; queued work still runs),
 * EVEXEC_SHUTDOWN_WAIT (also join every worker), EVEXEC_SHUTDOWN_CANCEL_PENDING
 * (queued tasks become CANCELLED). Calling it again is harmless and may add
 * flags.
 * @return 0, EINVAL (NULL pool or unknown flag), EDEADLK (WAIT asked from one
 *   of the pool's own workers; nothing changed), EVEXEC_EFORKED. Any thread.
 */
EVEXEC_EXPORT int evexec_pool_shutdown(struct evexec_pool *pool, unsigned flags);

/**
 * evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT), then free the pool.
 * Futures it returned stay valid until released. Never call it from one of
 * the pool's own workers (debug builds abort). NULL is a no-op.
 */
EVEXEC_EXPORT void evexec_pool_free(struct evexec_pool *pool);

/**
 * Counters of a pool, read with evexec_pool_get_stats(). Tasks are counted
 * when they leave the queue, all under one lock, so every read balances:
 * submitted == completed + cancelled + failed + queued + running.
 */
struct evexec_pool_stats {
    unsigned threads;        /**< worker threads alive now */
    unsigned idle;           /**< of which waiting for work */
    size_t   queued;         /**< tasks queued, not yet taken by a worker
                                  (a cancelled one stays until a worker drops it) */
    uint64_t submitted;      /**< tasks accepted since creation */
    uint64_t completed;      /**< tasks run to completion (success or error) */
    uint64_t cancelled;      /**< tasks cancelled before they ran */
    uint64_t threads_started;/**< worker threads created since creation */
    uint64_t failed;         /**< tasks failed without running: EAGAIN (no
                                  thread) or EVEXEC_EBROKEN (broken pool) */
    unsigned running;        /**< tasks a worker runs now */
    uint64_t init_failures;  /**< thread_init calls that failed */
    int      last_init_error;/**< what the last failed thread_init returned; 0 none */
    uint64_t reserved[8];    /**< room to grow without an ABI break; zero */
};

/** Fill *stats. A view has no threads of its own: its threads, idle and
 *  threads_started are 0, its parent counts the turns its tasks take.
 *  @return 0, EINVAL, EVEXEC_EFORKED. Any thread. */
EVEXEC_EXPORT int evexec_pool_get_stats(struct evexec_pool *pool,
                                        struct evexec_pool_stats *stats);

/**
 * Configuration of a view (evexec_pool_new_view). Unlike the pool's, a zero
 * max_running is an error: say how many of its tasks may run at once.
 */
struct evexec_view_config {
    unsigned  max_running;    /**< at most this many of its tasks run at once; >= 1 */
    size_t    max_queued;     /**< its queued tasks; 0 → unbounded */
    uintptr_t reserved[6];    /**< must be zero (EINVAL otherwise) */
};

/**
 * A view of parent: a struct evexec_pool with a FIFO queue of its own whose
 * tasks run on parent's threads, at most max_running at once. With 1 it is
 * a serial queue (a strand): each task starts after the previous one
 * finished (its done callbacks included), in submission order, and sees its
 * memory. With more, tasks start in the order of the queue and finish in
 * any order. Every pool function works on it: submit, run_in_executor,
 * cancel (a queued task never runs), shutdown (WAIT waits for the view's
 * tasks, not for the parent's threads), stats, free. Views of views nest.
 * Freeing the parent first is safe: its shutdown runs the tasks the views
 * had queued (or cancels them, with CANCEL_PENDING); the views then refuse
 * work with ESHUTDOWN, and the parent's memory lives until the last view is
 * freed. Tasks a view accepted but can no longer hand to its parent fail
 * with the parent's error (ESHUTDOWN, EVEXEC_EBROKEN, EAGAIN, ENOMEM) or are
 * cancelled if the parent cancelled them. Tasks of a view see the parent's
 * worker in evexec_worker_state() and evexec_worker_index().
 * @return the view, or NULL with errno EINVAL (NULL parent, max_running 0),
 *   ESHUTDOWN or EVEXEC_EBROKEN (parent, or one of its ancestors, shut down
 *   or broken), EVEXEC_EFORKED, ENOMEM. Free it with evexec_pool_free().
 *   Any thread.
 */
EVEXEC_EXPORT struct evexec_pool *evexec_pool_new_limited(struct evexec_pool *parent,
                                                          unsigned max_running)
    EVEXEC_WARN_UNUSED;

/** As evexec_pool_new_limited(), with a configuration (copied): a bound on
 *  the view's queue (a submission beyond it fails with EAGAIN). EINVAL also
 *  for a NULL cfg or a nonzero reserved field. */
EVEXEC_EXPORT struct evexec_pool *evexec_pool_new_view(struct evexec_pool *parent,
    const struct evexec_view_config *cfg) EVEXEC_WARN_UNUSED;

/**
 * Per-worker state: give the calling worker a pointer of its own (typically
 * in thread_init: a connection, a buffer). Outside a worker thread it does
 * nothing. The library never looks at it; close it in thread_exit.
 */
EVEXEC_EXPORT void evexec_worker_set_state(void *state);
/** The calling worker's state (NULL until set), in work functions, done
 *  callbacks that run on a worker, thread_init and thread_exit; NULL on any
 *  other thread. On a view's task: the state of the parent's worker. */
EVEXEC_EXPORT void *evexec_worker_state(void);
/** The calling worker's index: in [0, max_workers), the lowest free one when
 *  the worker was made, reused once a worker has exited (so "worker 0 is the
 *  writer" works). UINT_MAX outside a worker thread. */
EVEXEC_EXPORT unsigned evexec_worker_index(void);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Concurrent future */
/**@{*/

/** States of a concurrent future. */
#define EVEXEC_PENDING   0  /**< queued */
#define EVEXEC_RUNNING   1  /**< a worker runs it */
#define EVEXEC_CANCELLED 2  /**< cancelled before it ran; it never will */
#define EVEXEC_FINISHED  3  /**< ran; it has a result or an error */

/** Done callback of a concurrent future. */
typedef void (*evexec_cfuture_cb)(struct evexec_cfuture *cf, void *arg);

/** @return the state (EVEXEC_PENDING ...), or -1 with errno EINVAL (NULL) or
 *  EVEXEC_EFORKED (made before fork()). Any thread. */
EVEXEC_EXPORT int evexec_cfuture_state(struct evexec_cfuture *cf);

/**
 * Cancel. A pending task becomes CANCELLED and will never run; its done
 * callbacks run now, in this thread. A running task cannot be stopped, but
 * from now on evexec_cancel_requested() returns true inside it.
 * @return true if the future is cancelled after the call (it was pending or
 *   already cancelled), false if it is running or finished, or with errno
 *   EINVAL (NULL) or EVEXEC_EFORKED (made before fork()). Any thread.
 */
EVEXEC_EXPORT bool evexec_cfuture_cancel(struct evexec_cfuture *cf);

/**
 * Wait until the future is done (finished or cancelled).
 * @param timeout_ms -1 waits forever, 0 polls.
 * @return 0 when done, ETIMEDOUT, EINVAL (NULL, or timeout_ms < -1),
 *   EVEXEC_EFORKED (made before fork(), done or not). Any thread.
 */
EVEXEC_EXPORT int evexec_cfuture_wait(struct evexec_cfuture *cf, long timeout_ms);

/**
 * Wait (as evexec_cfuture_wait) and read the outcome.
 * @param result set to the result on success; the future keeps ownership.
 * @return 0, the task's error code, ECANCELED, ETIMEDOUT, EVEXEC_ETAKEN
 *   (taken by a _take_result call), EINVAL, EVEXEC_EFORKED. Any thread.
 */
EVEXEC_EXPORT int evexec_cfuture_result(struct evexec_cfuture *cf, long timeout_ms,
                                        void **result);

/**
 * As evexec_cfuture_result(), but the caller takes ownership of the result:
 * the future will not free it, and later result calls return EVEXEC_ETAKEN.
 */
EVEXEC_EXPORT int evexec_cfuture_take_result(struct evexec_cfuture *cf, long timeout_ms,
                                             void **result);

/**
 * Call cb(cf, arg) exactly once when the future is done: in the thread that
 * completes it (a worker, or the thread that cancels it), or at once, in this
 * thread, if it is done already. Callbacks run in registration order.
 * @return 0, EINVAL, ENOMEM, EVEXEC_EFORKED (made before fork(): nothing
 *   would call back). Any thread.
 */
EVEXEC_EXPORT int evexec_cfuture_add_done_callback(struct evexec_cfuture *cf,
                                                   evexec_cfuture_cb cb, void *arg);

/** @name When a wait over several futures ends (evexec_wait,
 *  evexec_cfuture_wait_many) */
/**@{*/
/** As soon as one of them is done. */
#define EVEXEC_FIRST_COMPLETED 1u
/** As soon as one of them failed (an error, or cancelled), or all are done. */
#define EVEXEC_FIRST_EXCEPTION 2u
/** When all of them are done. */
#define EVEXEC_ALL_COMPLETED   3u
/**@}*/

/**
 * Wait for several concurrent futures (concurrent.futures.wait) until
 * return_when holds: EVEXEC_FIRST_COMPLETED, EVEXEC_FIRST_EXCEPTION (a
 * cancelled future counts as failed; a taken result does not) or
 * EVEXEC_ALL_COMPLETED. It only waits: the caller then inspects each future.
 * n == 0 holds at once; a future given twice counts once.
 * @param timeout_ms -1 waits forever, 0 only looks.
 * @return 0 when the condition holds, ETIMEDOUT, EINVAL (cfs NULL with
 *   n > 0, a NULL entry, an unknown return_when, timeout_ms < -1),
 *   EVEXEC_EFORKED (one of them was made before fork(); as every other call
 *   on such a future). Any thread.
 */
EVEXEC_EXPORT int evexec_cfuture_wait_many(struct evexec_cfuture *const *cfs, size_t n,
                                           unsigned return_when, long timeout_ms);

/** Take one more reference. Any thread. Made before fork(): no-op. */
EVEXEC_EXPORT void evexec_cfuture_retain(struct evexec_cfuture *cf);
/** Drop one reference; the last frees the future and any result nobody took.
 *  The worker that ran the task holds a reference of its own until it has
 *  run the done callbacks, so the last release may be that worker's, a
 *  moment after a wait returned. Releasing does not cancel. NULL, or a
 *  future made before fork() (leaked in the child), is a no-op. Any thread. */
EVEXEC_EXPORT void evexec_cfuture_release(struct evexec_cfuture *cf);

/**
 * Inside a work function: true once the task's future was cancelled while
 * the task ran (cooperative cancellation). False outside work functions.
 */
EVEXEC_EXPORT bool evexec_cancel_requested(void);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Loop bridge */
/**@{*/

struct evexec_loop;

/** A callback queued on a loop. */
typedef void (*evexec_callback_fn)(void *arg);

/**
 * Make the bridge for base. Call it on the thread that will run the base.
 * @return the loop, or NULL with errno EINVAL (NULL base), EEXIST (base has
 *   one already), EMFILE/ENFILE (no descriptor for the wakeup), ENOMEM.
 */
EVEXEC_EXPORT struct evexec_loop *evexec_loop_new(struct event_base *base)
    EVEXEC_WARN_UNUSED;

/**
 * Tear the bridge down, with work still in flight if need be: pending loop
 * futures are cancelled (their queued tasks never run), callbacks still queued
 * are discarded without being called, results that arrive later are freed,
 * and no callback of this loop runs after it returns. It never blocks on
 * running work: the default pool is shut down with
 * EVEXEC_SHUTDOWN_CANCEL_PENDING and its threads exit as their current task
 * ends. Futures stay valid until released. Loop thread; NULL is a no-op.
 */
EVEXEC_EXPORT void evexec_loop_free(struct evexec_loop *loop);

/** @return the loop's event_base, or NULL with errno EINVAL. Loop thread. */
EVEXEC_EXPORT struct event_base *evexec_loop_base(struct evexec_loop *loop);

/**
 * Queue cb(arg) to run on the loop thread, after everything queued before
 * it. Makes no system call. Loop thread.
 * @return 0, EINVAL, ENOMEM, EVEXEC_ECLOSED, EVEXEC_EFORKED.
 */
EVEXEC_EXPORT int evexec_call_soon(struct evexec_loop *loop, evexec_callback_fn cb,
                                   void *arg);

/**
 * Queue cb(arg) to run on the loop thread from any thread, and wake the loop
 * (at most one write per batch). FIFO per producer thread; from the loop
 * thread it is evexec_call_soon(). A callback posted while nothing keeps the
 * loop listening (see evexec_loop_ref) runs when it listens again.
 * The loop must outlive the call: stop such producers (join them) before
 * evexec_loop_free(); EVEXEC_ECLOSED is a courtesy, not a shutdown signal.
 * @return 0, EINVAL, ENOMEM, EVEXEC_ECLOSED, EVEXEC_EFORKED. Any thread.
 */
EVEXEC_EXPORT int evexec_call_soon_threadsafe(struct evexec_loop *loop,
                                              evexec_callback_fn cb, void *arg);

/**
 * Keep the loop listening for producers it cannot know about (threads that
 * post with evexec_call_soon_threadsafe on their own): while referenced,
 * event_base_dispatch() does not return for lack of events. Counted; each
 * ref needs one unref. Loop thread. NULL, a freed or a forked loop: no-op.
 */
EVEXEC_EXPORT void evexec_loop_ref(struct evexec_loop *loop);
/** Undo one evexec_loop_ref(). Loop thread. An unref without a ref is
 *  ignored (debug builds abort). */
EVEXEC_EXPORT void evexec_loop_unref(struct evexec_loop *loop);

/**
 * Let the loop poll for completions for up to spin_us microseconds at the end
 * of a pass, instead of going back to libevent at once -- only while work is
 * in flight, nothing else is queued, and recent completions came that fast.
 * When work completes quickly this saves the worker a wakeup write and the
 * loop a sleep and a cross-CPU wakeup (tens of microseconds on a VM); the
 * price is up to spin_us of CPU per pass and as much delay for other events
 * (the spinning loop yields its CPU every few microseconds to threads that
 * share it). 0 turns it off. The default is EVEXEC_DEFAULT_LOOP_SPIN_US, or 0 when the
 * process may run on one CPU only.
 * @return 0, EINVAL, EVEXEC_ECLOSED, EVEXEC_EFORKED. Loop thread.
 */
EVEXEC_EXPORT int evexec_loop_set_spin(struct evexec_loop *loop, unsigned spin_us);
/** Default of evexec_loop_set_spin(). */
#define EVEXEC_DEFAULT_LOOP_SPIN_US 50

/** Counters of a loop, read with evexec_loop_get_stats(). */
struct evexec_loop_stats {
    uint64_t callbacks_run;   /**< callbacks run from the queue */
    uint64_t foreign_posts;   /**< items received from other threads */
    uint64_t wakeup_writes;   /**< writes to the wakeup descriptor */
    uint64_t drains;          /**< passes over the queue */
    uint64_t in_flight;       /**< futures and requests waiting for their work */
    uint64_t spins;           /**< end-of-pass polls that caught a completion */
    uint64_t spins_missed;    /**< end-of-pass polls that timed out */
    /** Wakeup writes that failed for another reason than a full descriptor
     *  (it was closed or broken behind the library's back); debug builds
     *  abort instead. The callbacks stay queued and run with the next wakeup. */
    uint64_t wakeup_errors;
    /** Passes stopped at their time budget (about 200 us of callbacks), the
     *  rest of their callbacks left for the next pass so that libevent polls
     *  and runs its due timers in between. */
    uint64_t passes_cut;
    uint64_t reserved[8];     /**< room to grow without an ABI break; zero */
};

/** Fill *stats. @return 0, EINVAL, EVEXEC_EFORKED. Loop thread. */
EVEXEC_EXPORT int evexec_loop_get_stats(struct evexec_loop *loop,
                                        struct evexec_loop_stats *stats);

/**
 * The loop's default pool (made on first use with default configuration),
 * used by evexec_run_in_executor() when its pool argument is NULL.
 * @return the pool (owned by the loop) or NULL with errno. Loop thread.
 */
EVEXEC_EXPORT struct evexec_pool *evexec_loop_default_pool(struct evexec_loop *loop);

/**
 * Make pool the loop's default pool (asyncio loop.set_default_executor()).
 * The loop does not own a pool it was given: the caller frees it, after
 * evexec_loop_free() or after evexec_loop_shutdown_default_pool() finished.
 * @return 0, EINVAL (NULL loop or pool), EBUSY (the loop already made its
 *   own default pool: set it before the first evexec_run_in_executor() with
 *   a NULL pool), ESHUTDOWN (after evexec_loop_shutdown_default_pool()),
 *   EVEXEC_ECLOSED, EVEXEC_EFORKED (loop or pool made before fork()).
 *   Loop thread.
 */
EVEXEC_EXPORT int evexec_loop_set_default_pool(struct evexec_loop *loop,
                                               struct evexec_pool *pool);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Loop future (loop thread only) */
/**@{*/

struct evexec_future;

/** Done callback of a loop future; runs on the loop thread. */
typedef void (*evexec_future_cb)(struct evexec_future *f, void *arg);

/**
 * A pending loop future (asyncio loop.create_future()), with one reference
 * for the caller.
 * @return the future or NULL with errno EINVAL, ENOMEM, EVEXEC_ECLOSED,
 *   EVEXEC_EFORKED.
 */
EVEXEC_EXPORT struct evexec_future *evexec_future_new(struct evexec_loop *loop)
    EVEXEC_WARN_UNUSED;

/**
 * Complete with a result, owned by the future from now on (freed with
 * free_result, which may be NULL, unless someone takes it).
 * @return 0, or EINVAL (NULL future; already done; or a future of
 *   evexec_run_in_executor / evexec_wrap_cfuture, which only its work
 *   completes: the result then stays the caller's), EVEXEC_EFORKED.
 */
EVEXEC_EXPORT int evexec_future_set_result(struct evexec_future *f, void *result,
                                           evexec_free_fn free_result);
/** Complete with an error (a positive code). @return 0, or EINVAL (NULL,
 *  err <= 0, already done, or chained to work), EVEXEC_EFORKED. */
EVEXEC_EXPORT int evexec_future_set_error(struct evexec_future *f, int err);

/**
 * Cancel: a pending future becomes cancelled and its done callbacks are
 * scheduled; a chained one also cancels its concurrent future.
 * @return true if the future is cancelled after the call; false if it is
 *   finished, or with errno EINVAL (NULL) or EVEXEC_EFORKED.
 */
EVEXEC_EXPORT bool evexec_future_cancel(struct evexec_future *f);
/**
 * Ask the work behind a future to stop without completing the future: a
 * queued task never runs, a running one sees evexec_cancel_requested(). The
 * future completes later with what the work really did -- its result, its
 * error, or ECANCELED if it never started -- for work whose side effects
 * matter (a write that may have committed). Beyond asyncio.
 * @return 0 (asked), EINVAL (NULL), EALREADY (the future is done), ENOTSUP
 *   (no work behind it: a future of evexec_future_new() or a combinator),
 *   EVEXEC_EFORKED. Loop thread.
 */
EVEXEC_EXPORT int evexec_future_request_cancel(struct evexec_future *f);

/**
 * Shut the loop's default pool down without blocking (asyncio
 * loop.shutdown_default_executor(timeout)): queued work still runs, later
 * evexec_run_in_executor() calls with a NULL pool fail with ESHUTDOWN. A
 * pool the loop made is freed once its threads exit; a pool given with
 * evexec_loop_set_default_pool() is shut down but stays the caller's, who
 * may free it once the future is done (whatever its outcome): the library
 * no longer touches it then.
 * @param timeout_ms -1: no limit; >= 0: the future fails with ETIMEDOUT if
 *   the threads have not all exited by then (they go on exiting).
 * @return a future (one reference for the caller) that finishes (result
 *   NULL) once every thread of the default pool has exited (a view: once
 *   its tasks are done) -- on the next pass if there is none -- or NULL with errno EINVAL, ENOMEM, EAGAIN (no
 *   thread to wait with), EVEXEC_ECLOSED, EVEXEC_EFORKED. While pending it
 *   keeps the loop alive. Loop thread.
 */
EVEXEC_EXPORT struct evexec_future *evexec_loop_shutdown_default_pool(struct evexec_loop *loop,
    long timeout_ms) EVEXEC_WARN_UNUSED;

/** True once finished, failed or cancelled; false for NULL. */
EVEXEC_EXPORT bool evexec_future_done(struct evexec_future *f);
/** True if cancelled; false for NULL. */
EVEXEC_EXPORT bool evexec_future_cancelled(struct evexec_future *f);

/**
 * Read the outcome without blocking.
 * @param result set to the result on success; the future keeps ownership.
 * @return 0, the error, ECANCELED, EINPROGRESS (not done), EVEXEC_ETAKEN, EINVAL,
 *   EVEXEC_EFORKED (made before fork(), done or not).
 */
EVEXEC_EXPORT int evexec_future_result(struct evexec_future *f, void **result);
/**
 * As evexec_future_result(), but the caller takes ownership of the result,
 * from the future and from the concurrent future it is chained to; later
 * result calls on either return EVEXEC_ETAKEN.
 */
EVEXEC_EXPORT int evexec_future_take_result(struct evexec_future *f, void **result);

/**
 * Call cb(f, arg) on the loop thread once the future is done, from the loop's
 * queue, in registration order -- never inside this call, even if the future
 * is done already.
 * @return 0, EINVAL, ENOMEM, EVEXEC_ECLOSED (the loop was freed),
 *   EVEXEC_EFORKED.
 */
EVEXEC_EXPORT int evexec_future_add_done_callback(struct evexec_future *f,
                                                  evexec_future_cb cb, void *arg);

/**
 * Remove every registration of (cb, arg) on f that has not run yet
 * (asyncio remove_done_callback); the others keep their order.
 * @return how many were removed (0 if none), or -1 with errno EINVAL (NULL
 *   f) or EVEXEC_EFORKED.
 */
EVEXEC_EXPORT int evexec_future_remove_done_callback(struct evexec_future *f,
                                                     evexec_future_cb cb, void *arg);

/** Take one more reference. */
EVEXEC_EXPORT void evexec_future_retain(struct evexec_future *f);
/** Drop one reference. In-flight work keeps its own reference, so releasing
 *  never cancels; the last reference frees the future and any result nobody
 *  took. NULL is a no-op. */
EVEXEC_EXPORT void evexec_future_release(struct evexec_future *f);

/** @return the future's loop (even after evexec_loop_free, for comparison
 *  only), or NULL with errno EINVAL if f is NULL. */
EVEXEC_EXPORT struct evexec_loop *evexec_future_loop(struct evexec_future *f);

/**
 * A loop future that mirrors cf (asyncio wrap_future): it completes on the
 * loop thread when cf does; cancelling it cancels cf. It holds a reference on
 * cf and borrows cf's result, which stays cf's.
 * @return the future or NULL with errno EINVAL, ENOMEM, EVEXEC_ECLOSED,
 *   EVEXEC_EFORKED.
 */
EVEXEC_EXPORT struct evexec_future *evexec_wrap_cfuture(struct evexec_loop *loop,
                                                        struct evexec_cfuture *cf)
    EVEXEC_WARN_UNUSED;

/**
 * Run fn(arg) on pool (NULL → the loop's default pool) and return a loop
 * future for its outcome (asyncio loop.run_in_executor). arg stays the
 * caller's; after a cancel the task may still be using it (see
 * evexec_run_in_executor_ex to have it freed when the task is done with it). One allocation per
 * call. Until the future is done the loop stays alive (event_base_dispatch
 * does not return). If the future is cancelled the task never runs if it was
 * still queued, sees evexec_cancel_requested() if it runs, and any late
 * result is freed.
 * @return the future or NULL with errno: EINVAL, ENOMEM, and every error of
 *   evexec_pool_submit(); EVEXEC_ECLOSED; EVEXEC_EFORKED (loop or pool made
 *   before fork()).
 */
EVEXEC_EXPORT struct evexec_future *evexec_run_in_executor(struct evexec_loop *loop,
    struct evexec_pool *pool, evexec_work_fn fn, void *arg,
    evexec_free_fn free_result) EVEXEC_WARN_UNUSED;

/**
 * As evexec_run_in_executor(), and the library owns arg: free_arg(arg) is
 * called exactly once, when the task can no longer touch it -- it finished,
 * or it was cancelled before it started. That matters after a cancel: the
 * future is done at once, but a running task goes on using arg until it
 * returns, so freeing arg in a done callback would be a use-after-free.
 * free_arg runs on the loop thread as the outcome is delivered (also for a
 * future cancelled earlier), or, after evexec_loop_free, in the thread that
 * disposes of the late outcome. If the call fails, free_arg is not called
 * and arg stays the caller's.
 * @return as evexec_run_in_executor(). Loop thread.
 */
EVEXEC_EXPORT struct evexec_future *evexec_run_in_executor_ex(struct evexec_loop *loop,
    struct evexec_pool *pool, evexec_work_fn fn, void *arg, evexec_free_fn free_result,
    evexec_free_fn free_arg) EVEXEC_WARN_UNUSED;
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Requests: caller-owned work without a future (loop thread only)
 *
 * The layer under evexec_run_in_executor(), for hot paths that cannot afford
 * a future per task (libuv's uv_queue_work): the caller owns the request's
 * memory, the library allocates nothing and counts no references, and one
 * callback, after, reports the outcome on the loop thread. Every
 * evexec_run_in_executor() future is built on a request, so both deliver
 * the same way.
 *
 * The request is the caller's again once after has been called, and not
 * before: after may free it, or queue it again. Queueing a request that is
 * still in flight is undefined. A pool must outlive the requests queued on
 * it (free it once their afters ran, or on the loop thread): a cancel looks
 * at the pool's queue.
 *
 * When evexec_loop_free() is called with requests in flight, every one of
 * them still gets its after, exactly once, with status ECANCELED: those still
 * queued are taken out of their pool's queue and never run, and their after
 * is called on the loop thread inside evexec_loop_free(), as is the after of
 * one whose work had returned; one that is still running is asked to stop
 * (evexec_cancel_requested() turns true) and gets its after on the worker
 * thread that ran it, as soon as its work returns. The result is
 * whatever the work stored (NULL if it did not run), for after to free. So
 * the request memory is reusable exactly when after has been called, as
 * always.
 */
/**@{*/

/** How many bytes of struct evexec_work are the library's. */
#define EVEXEC_WORK_PRIVATE_SIZE 184

/**
 * A request: embed it in your own struct, or allocate it; data is yours.
 * The rest is private and keeps its size across releases of the same
 * soname (192 bytes on 64-bit systems).
 */
struct evexec_work {
    void *data;
    union {
        unsigned char bytes[EVEXEC_WORK_PRIVATE_SIZE];
        void *align_ptr;
        uint64_t align_u64;
    } evexec_private;
};

/**
 * The outcome of a request, on the loop thread. status is 0 or the error
 * code the work returned, ECANCELED if the request was cancelled before it
 * ran or its loop was freed, EAGAIN if no worker thread could be made to run
 * it, EVEXEC_EBROKEN if its pool broke first. result is whatever the work
 * stored (NULL if it did not run), also with an error status: after owns
 * it and frees it.
 */
typedef void (*evexec_after_fn)(struct evexec_work *req, int status, void *result);

/**
 * Queue req to run work on pool (NULL → the loop's default pool), then
 * after on the loop thread. work is called on a worker as
 * work(req, &result), and may call evexec_cancel_requested(); it returns 0
 * or an error code, and after receives both. after is called
 * exactly once per accepted request, never inside this call, and from the
 * loop's queue like every callback (see evexec_loop_free() above for the
 * one exception). No allocation is made. Until after is called the loop
 * stays alive (event_base_dispatch() does not return).
 * @return 0, or EINVAL (a NULL loop, req, work or after), ESHUTDOWN,
 *   EVEXEC_EBROKEN, EAGAIN (a bounded queue is full), EVEXEC_ECLOSED,
 *   EVEXEC_EFORKED (loop or pool made before fork()), or an error of
 *   evexec_loop_default_pool(); on error after is never called, req is
 *   the program's again and req->data was not touched (a request refused
 *   for its arguments or its loop is not touched at all).
 */
EVEXEC_EXPORT int evexec_queue_work(struct evexec_loop *loop, struct evexec_pool *pool,
                                    struct evexec_work *req, evexec_work_fn work,
                                    evexec_after_fn after);

/**
 * Cancel req if it has not started (uv_cancel): it is taken out of its
 * pool's queue at once, will never run, and its after is called with
 * ECANCELED on a later pass of the loop. @return true if so (also when it was
 * cancelled already); false if it is running -- evexec_cancel_requested()
 * then turns true inside its work, and after reports what the work did -- or
 * done, or, with errno EINVAL or EVEXEC_EFORKED, if req is NULL or the loop
 * was made before fork(). Only between evexec_queue_work() and after; loop
 * thread.
 */
EVEXEC_EXPORT bool evexec_work_cancel(struct evexec_work *req);
/**@}*/

/* ------------------------------------------------------------------------ */
/** @name Composing loop futures (loop thread only)
 *
 * Timeouts and combinators built from loop futures, as asyncio's sleep,
 * wait_for, gather and wait. Each returns a new future with one reference
 * for the caller. A combinator takes references of its own on the futures it
 * is given, which stay the caller's; their results stay theirs. A pending
 * one with a timeout keeps event_base_dispatch() running (its timer is a
 * libevent timer on the loop's base); cancelling it, or evexec_loop_free(),
 * stops its timer and lets go of its futures at once. The new future never
 * completes inside the call that made it, even over futures that are done
 * already: at the earliest on the loop's next pass. Timeouts are in
 * milliseconds: -1 means none, 0 means "on the next pass".
 * Every one fails with NULL and errno EINVAL (a NULL loop or future, fs NULL
 * with n > 0, a future of another loop, a timeout below -1), EVEXEC_ECLOSED,
 * EVEXEC_EFORKED or ENOMEM.
 */
/**@{*/

/**
 * A future that finishes, with result NULL, ms milliseconds from now
 * (asyncio.sleep). @return the future, or NULL with errno (EINVAL for
 * ms < 0).
 */
EVEXEC_EXPORT struct evexec_future *evexec_sleep(struct evexec_loop *loop, long ms)
    EVEXEC_WARN_UNUSED;

/**
 * A future with f's outcome, unless timeout_ms passes first: then f is
 * cancelled (which cancels its work) and the new future fails with
 * ETIMEDOUT (asyncio.wait_for). Cancelling the new future cancels f; f
 * cancelled by someone else makes it cancelled too. When f finished without
 * error, the new future borrows f's result, which stays f's: taking it
 * through either future takes it from both.
 */
EVEXEC_EXPORT struct evexec_future *evexec_wait_for(struct evexec_future *f, long timeout_ms)
    EVEXEC_WARN_UNUSED;

/**
 * A future that finishes, with result NULL, when all n futures of fs have
 * finished without error (asyncio.gather). It fails at once with the first
 * error in completion order -- a future that was cancelled counts as the
 * error ECANCELED -- and the others keep running. Cancelling it cancels them
 * all. n == 0 finishes on the next pass; a future given twice counts once.
 */
EVEXEC_EXPORT struct evexec_future *evexec_gather(struct evexec_loop *loop,
    struct evexec_future *const *fs, size_t n) EVEXEC_WARN_UNUSED;

/**
 * A future that finishes, with result NULL, when return_when holds for the n
 * futures of fs (asyncio.wait): EVEXEC_FIRST_COMPLETED, EVEXEC_FIRST_EXCEPTION
 * (one failed with an error or was cancelled, or all are done) or
 * EVEXEC_ALL_COMPLETED; or that fails with ETIMEDOUT when timeout_ms passes
 * first. It never cancels the futures it waits on, not even when it is
 * cancelled: the caller inspects each one. n == 0 finishes on the next pass;
 * a future given twice counts once. An unknown return_when: EINVAL.
 */
EVEXEC_EXPORT struct evexec_future *evexec_wait(struct evexec_loop *loop,
    struct evexec_future *const *fs, size_t n, unsigned return_when, long timeout_ms)
    EVEXEC_WARN_UNUSED;
/**@}*/

#ifdef __cplusplus
}
#endif

#endif /* EVEXEC_H */
