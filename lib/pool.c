/*
 * pool.c -- worker threads and the FIFO work queue.
 *
 * One lock (pool->lock, a futex mutex from sync.c) guards the queue, the
 * worker lists and the counters. Workers are made lazily, one per submission
 * that finds nobody to take it, up to max_workers threads alive. A worker
 * with nothing to do first spins for a few tens of microseconds (a cross-CPU
 * wakeup costs more than that on a small VM) -- one worker at a time, and
 * never when the process may use only one CPU -- then parks on a wait word
 * of its own in the idle stack. A submitter claims the most recently parked
 * worker and signals only that one, so the workers at the bottom of the
 * stack stay idle long enough to time out and exit (above min_workers).
 *
 * Who will take a queued task: a spinning worker, a worker coming back from
 * a task ("returning": it counts itself before it publishes the outcome, so
 * whoever that outcome wakes and submits again finds it counted), a claimed
 * idle worker, or a new thread. A returning worker about to run done
 * callbacks -- user code, which may block or wait for the pool -- stops
 * counting itself and dispatches what it was counted for. A worker that
 * decided to exit counts for nothing; when it leaves it dispatches what is
 * still queued, so no task waits for a thread that is gone.
 *
 * The fast path: while every worker the pool may have is alive and busy
 * (none parked, none to be made, not stopping or broken, no queue bound), a
 * submission would only append to the queue and wake nobody. Then it skips
 * the lock: one compare-and-swap pushes the task on `incoming`, a stack that
 * whoever next looks at the queue under the lock moves to its tail, in push
 * order (take_incoming). `fast_submit` says whether the path is open; it is
 * recomputed under the lock at every change of what it depends on
 * (update_fast), and closing it moves `incoming` to the queue at once. A
 * submitter re-reads the flag after its push: these two seq_cst pairs (push
 * then read the flag; clear the flag then take the stack) mean that either
 * a worker that stops being busy takes the task, or the submitter sees the
 * path closed and finishes the submission under the lock as the slow path
 * does (dispatch, or ESHUTDOWN if the pool stopped before the task reached
 * it). A busy worker takes the stack when it comes back for its next task.
 *
 * Cancellation of a cfuture never touches the queue: a cancelled task stays
 * queued until a worker pops it, fails the PENDING -> RUNNING transition and
 * drops it. A request (work.c) is unlinked instead (evexec__pool_unqueue).
 * Every task is counted as it leaves the queue, under the lock, so the
 * statistics balance at every read.
 *
 * A failed thread_init breaks the pool, or, with EVEXEC_POOL_INIT_RETRY,
 * fails only that worker: the next one waits a backoff (1 ms doubling up to
 * 1 s) before its own init, and the queue fails with the hook's error only
 * when no initialised worker is alive and EVEXEC_POOL_INIT_RETRY_BUDGET
 * inits in a row failed.
 *
 * A view (view.c) is a struct evexec_pool with a parent and no threads,
 * whose tasks run on the parent's workers as internal tasks of the parent.
 * Where a public function below treats a view differently, it calls the
 * view's view_ops (pool.h), so this file never names view.c; the pool's
 * side of a view is the refusing word, which the view reads to learn that
 * its parent stopped or broke.
 *
 * Lifetime: evexec_pool_free() joins every worker. An orphaned pool (the
 * loop's default pool at evexec_loop_free, or a pool freed by its own worker)
 * detaches its workers instead and the last one to exit frees it. The
 * memory of a pool is counted (its owner, each view made on it), so a parent
 * freed before its views stays readable, refusing work, until the last one
 * is freed.
 *
 * Locks are never nested. No user code (tasks, hooks, free functions,
 * callbacks) runs under a lock.
 */
#include "pool.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct worker {
    struct evexec__list idle_node;        /* idle stack (pool lock) */
    struct evexec__list node;             /* live workers by index, or zombies */
    struct evexec_pool *pool;
    pthread_t thread;
    _Atomic unsigned wake_word;           /* bumped to wake it */
    unsigned index;                       /* lowest free at spawn, in [0, max_workers) */
    bool claimed;                         /* a submitter woke it for work */
    bool returning;                       /* counted in pool->nreturning */
    bool initialised;                     /* thread_init succeeded: counted in ninit */
    void *state;                          /* evexec_worker_set_state() */
};

/* The init backoff doubles from 1 ms up to this. */
#define INIT_BACKOFF_MAX_NS 1000000000u

/* The worker this thread is (EDEADLK, evexec_worker_state/index). */
static EVEXEC__TLS struct worker *current_worker;

/* True on a thread that runs a task of pool (or a done callback of one):
 * waiting there for pool's tasks to end would wait for itself. */
static bool inside_own_task(const struct evexec_pool *pool)
{
    if (pool->view_ops)
        return pool->view_ops->inside_own_task(pool);
    return current_worker && current_worker->pool == pool;
}

/* min(32, CPUs + 4), counting the CPUs this process may use (affinity and
 * cgroup quota): a container limited to 2 CPUs on a 64-CPU host gets 6. */
static unsigned default_max_workers(void)
{
    int cpus = evexec__cpus_allowed();
    if (cpus < 1)
        cpus = 1;
    return cpus + 4 < 32 ? (unsigned)cpus + 4 : 32;
}

static bool reserved_zero(const struct evexec_pool_config *c)
{
    for (size_t i = 0; i < sizeof(c->reserved) / sizeof(c->reserved[0]); i++)
        if (c->reserved[i])
            return false;
    return true;
}

struct evexec_pool *evexec_pool_new(const struct evexec_pool_config *cfg)
{
    evexec__fork_init();
    struct evexec_pool_config c = {0};
    if (cfg)
        c = *cfg;
    if (!c.max_workers)
        c.max_workers = default_max_workers();
    if (!c.idle_timeout_ms)
        c.idle_timeout_ms = 10000;
    if (!c.spin_us)
        c.spin_us = EVEXEC_DEFAULT_SPIN_US;
    if (!c.worker_nice)
        c.worker_nice = EVEXEC_DEFAULT_WORKER_NICE;
    if (c.min_workers > c.max_workers || !reserved_zero(&c) ||
        (c.flags & ~(EVEXEC_POOL_NO_SPIN | EVEXEC_POOL_KEEP_PRIORITY | EVEXEC_POOL_SCHED_IDLE |
                     EVEXEC_POOL_INIT_RETRY))) {
        errno = EINVAL;
        return NULL;
    }
    struct evexec_pool *pool = evexec__calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->cfg = c;
    evexec__list_init(&pool->idle);
    evexec__list_init(&pool->live);
    evexec__list_init(&pool->zombies);
    if (!(c.flags & EVEXEC_POOL_NO_SPIN) && evexec__cpus_allowed() > 1)
        pool->spin_ns = (uint64_t)c.spin_us * 1000u;
    /* A thread name has 15 characters; leave room for "-NNN". */
    snprintf(pool->name, 12, "%s", c.thread_name ? c.thread_name : "evexec");
    pool->cfg.thread_name = pool->name;
    pool->fork_gen = evexec__fork_gen();
    atomic_init(&pool->refs, 1);
    return pool;
}

static bool forked(const struct evexec_pool *pool)
{
    return evexec__forked(pool->fork_gen);
}

/* ---- queue (pool lock held) --------------------------------------------- */

/* Move the fast path's submissions to the tail of the queue, oldest first:
 * one pass that reverses the stack and links it, then one splice (the
 * counters and the spinners' hint are written once, not per task). */
static void take_incoming_now(struct evexec_pool *pool)
{
    struct evexec_cfuture *list = atomic_exchange(&pool->incoming, NULL);
    if (!list)
        return;
    struct evexec_cfuture *newest = list, *fifo = NULL;
    size_t n = 0;
    while (list) {
        struct evexec_cfuture *cf = list;
        list = cf->qnext;
        cf->qnext = fifo; /* the newest ends the queue: its qnext is NULL */
        if (fifo)
            fifo->qlink = &cf->qnext;
        fifo = cf;
        n++;
    }
    fifo->qlink = pool->qtail ? &pool->qtail->qnext : &pool->qhead;
    *fifo->qlink = fifo;
    pool->qtail = newest;
    pool->queued += n;
    pool->submitted += n;
    atomic_store_explicit(&pool->queued_hint, pool->queued, memory_order_relaxed);
}

/* The same, after a cheap look: for whoever does not depend on seeing a push
 * that races with it (a worker that misses one parks, and parking takes the
 * stack with the seq_cst exchange). */
static void take_incoming(struct evexec_pool *pool)
{
    if (atomic_load_explicit(&pool->incoming, memory_order_relaxed))
        take_incoming_now(pool);
}

/* Whether a submission may skip the lock; closing the path takes what it
 * let in. Called wherever what it reads changes. */
static void update_fast(struct evexec_pool *pool)
{
    bool fast = !pool->stopping && !pool->broken && !pool->cfg.max_queued &&
                pool->nidle == 0 && pool->nthreads == pool->cfg.max_workers &&
                pool->nalive == pool->nthreads;
    if (fast == atomic_load_explicit(&pool->fast_submit, memory_order_relaxed))
        return;
    atomic_store(&pool->fast_submit, fast);
    if (!fast)
        take_incoming_now(pool); /* after the store: the other half of the pair */
}

/* The queue's head, after the fast path's submissions joined it. */
static struct evexec_cfuture *queue_pop(struct evexec_pool *pool)
{
    take_incoming(pool);
    return evexec__pool_queue_pop(pool);
}

static struct evexec_cfuture *queue_take_all(struct evexec_pool *pool)
{
    take_incoming(pool);
    struct evexec_cfuture *list = pool->qhead;
    for (struct evexec_cfuture *cf = list; cf; cf = cf->qnext)
        cf->qlink = NULL; /* out of the queue: no cancel can unlink it now */
    pool->qhead = pool->qtail = NULL;
    pool->queued = 0;
    atomic_store_explicit(&pool->queued_hint, 0, memory_order_relaxed);
    return list;
}

bool evexec__pool_unqueue(struct evexec_pool *pool, struct evexec_cfuture *cf)
{
    evexec__lock_acquire(&pool->lock);
    take_incoming(pool);
    bool queued = cf->qlink != NULL;
    if (queued) {
        evexec__pool_queue_remove(pool, cf);
        /* Out of every queue, under the lock its poppers take: nobody can
         * start it any more. */
        atomic_store(&cf->state, EVEXEC_CANCELLED);
        pool->cancelled++;
    }
    evexec__lock_release(&pool->lock);
    return queued;
}

struct evexec_cfuture *evexec__pool_take_to_fail(struct evexec_pool *pool)
{
    struct evexec_cfuture *list = queue_take_all(pool);
    for (struct evexec_cfuture *cf = list; cf; cf = cf->qnext) {
        if (evexec__cfuture_start(cf))
            pool->failed++;
        else
            pool->cancelled++;
    }
    return list;
}

struct evexec_cfuture *evexec__pool_take_to_cancel(struct evexec_pool *pool)
{
    struct evexec_cfuture *list = queue_take_all(pool);
    for (struct evexec_cfuture *cf = list; cf; cf = cf->qnext) {
        /* Out of the queue but still PENDING until evexec__pool_cancel_list
         * reaches it: a request's cancel meanwhile must know it never runs. */
        atomic_fetch_or_explicit(&cf->flags, EVEXEC__CF_SHUTDOWN_CANCEL, memory_order_relaxed);
        pool->cancelled++;
    }
    return list;
}

void evexec__pool_fail_list(struct evexec_cfuture *list, int err)
{
    while (list) {
        struct evexec_cfuture *cf = list;
        list = cf->qnext;
        if (atomic_load(&cf->state) == EVEXEC_RUNNING)
            evexec__cfuture_finish_release(cf, err, NULL, NULL, NULL);
        else
            evexec_cfuture_release(cf);
    }
}

void evexec__pool_cancel_list(struct evexec_cfuture *list)
{
    while (list) {
        struct evexec_cfuture *cf = list;
        list = cf->qnext;
        if (cf->on_done) {
            /* Its owner holds a reference until told, and may reuse the
             * memory as soon as it is: drop the queue's first. */
            evexec__cfuture_unref(cf);
            evexec_cfuture_cancel(cf);
        } else {
            evexec_cfuture_cancel(cf);
            evexec_cfuture_release(cf); /* the queue's reference */
        }
    }
}

/* ---- worker lists (pool lock held) -------------------------------------- */

static void idle_push(struct evexec_pool *pool, struct worker *w)
{
    evexec__list_push_front(&pool->idle, &w->idle_node);
    pool->nidle++;
    update_fast(pool);
}

static void idle_remove(struct evexec_pool *pool, struct worker *w)
{
    evexec__list_remove(&w->idle_node);
    pool->nidle--;
    update_fast(pool);
}

/* Put w in the live list, which is kept sorted by index, at the lowest free
 * index. Indices are at most nalive < max_workers, so they stay in range. */
static void live_insert_lowest(struct evexec_pool *pool, struct worker *w)
{
    unsigned index = 0;
    struct evexec__list *at = pool->live.next;
    for (; at != &pool->live; at = at->next, index++)
        if (evexec__list_entry(at, struct worker, node)->index != index)
            break;
    w->index = index;
    evexec__list_push_back(at, &w->node); /* before `at` */
}

/* Detach a list of exited workers into *out (pool lock held). */
static void take_zombies(struct evexec_pool *pool, struct evexec__list *out)
{
    evexec__list_init(out);
    if (evexec__list_empty(&pool->zombies))
        return;
    out->next = pool->zombies.next;
    out->prev = pool->zombies.prev;
    out->next->prev = out;
    out->prev->next = out;
    evexec__list_init(&pool->zombies);
}

static void join_list(struct evexec__list *list)
{
    struct evexec__list *n;
    while ((n = evexec__list_first(list))) {
        struct worker *w = evexec__list_entry(n, struct worker, node);
        evexec__list_remove(n);
        pthread_join(w->thread, NULL);
        evexec__free(w);
    }
}

void evexec__pool_unref(struct evexec_pool *pool)
{
    while (pool && atomic_fetch_sub_explicit(&pool->refs, 1, memory_order_acq_rel) == 1) {
        struct evexec_pool *parent = pool->parent;
        evexec__free(pool);
        pool = parent;
    }
}

/* ---- dispatch (pool lock held) ------------------------------------------ */

static void *worker_main(void *arg);

/* The signals a worker must never block: a fault in a task must reach the
 * program's crash handler, or kill the process with a report, as it would
 * on any other thread. */
static const int fault_signals[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };

/* Start one worker. Returns 0 or an error of pthread_create. */
static int spawn_worker(struct evexec_pool *pool)
{
    struct worker *w = evexec__calloc(1, sizeof(*w));
    if (!w)
        return ENOMEM;
    w->pool = pool;
    evexec__list_init(&w->idle_node);
    live_insert_lowest(pool, w);

    /* Workers inherit a mask that blocks every asynchronous signal, so
     * signals keep going to the loop thread. */
    sigset_t mask, old;
    sigfillset(&mask);
    for (size_t i = 0; i < sizeof(fault_signals) / sizeof(fault_signals[0]); i++)
        sigdelset(&mask, fault_signals[i]);
    pthread_sigmask(SIG_SETMASK, &mask, &old);
    int rc = evexec__thread_create(&w->thread, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        evexec__list_remove(&w->node);
        evexec__free(w);
        return rc;
    }
    pool->nthreads++;
    pool->nalive++;
    pool->threads_started++;
    update_fast(pool);
    return 0;
}

/* Work is queued: make sure somebody will take it. Returns a list for
 * evexec__pool_fail_list(.., EAGAIN) if no worker will look at the queue
 * again and no thread could be made. */
static struct evexec_cfuture *dispatch(struct evexec_pool *pool)
{
    if (pool->queued <= pool->nspinning +
                           atomic_load_explicit(&pool->nreturning, memory_order_relaxed))
        return NULL; /* a spinning or returning worker will take it */
    struct evexec__list *top = evexec__list_first(&pool->idle);
    if (top) {
        struct worker *w = evexec__list_entry(top, struct worker, idle_node);
        idle_remove(pool, w);
        w->claimed = true;
        evexec__word_wake(&w->wake_word, false);
        return NULL;
    }
    if (pool->nalive >= pool->cfg.max_workers)
        return NULL; /* the busy workers come back to it; a leaving one dispatches it */
    if (spawn_worker(pool) == 0 || pool->nthreads > 0)
        return NULL; /* the workers that stay will get to it */
    return evexec__pool_take_to_fail(pool);
}

/* ---- workers ------------------------------------------------------------ */

static void worker_setup(struct worker *w)
{
    struct evexec_pool *pool = w->pool;
#ifdef HAVE_PTHREAD_SETNAME_NP
    char name[32];
    snprintf(name, sizeof(name), "%s-%u", pool->name, w->index % 1000);
    name[15] = '\0'; /* the kernel keeps 15 characters */
    pthread_setname_np(pthread_self(), name);
#endif
#ifdef SCHED_IDLE
    if ((pool->cfg.flags & EVEXEC_POOL_SCHED_IDLE) &&
        !(pool->cfg.flags & EVEXEC_POOL_KEEP_PRIORITY)) {
        struct sched_param param = {0};
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0)
            return;
    }
#endif
    if (!(pool->cfg.flags & EVEXEC_POOL_KEEP_PRIORITY) && pool->cfg.worker_nice > 0) {
        /* On Linux the nice value belongs to the thread: lower the worker,
         * not the process. Failure only costs loop latency; ignore it. */
        pid_t tid = (pid_t)syscall(SYS_gettid);
        errno = 0;
        int prio = getpriority(PRIO_PROCESS, (id_t)tid);
        if (errno == 0)
            (void)setpriority(PRIO_PROCESS, (id_t)tid, prio + pool->cfg.worker_nice);
    }
}

/* Whether a shutdown makes waiting out the init backoff pointless (lock
 * held): nothing is left to run, or no initialised worker is alive to run
 * it, so an init now either serves or spends the retry budget at once.
 * While an initialised worker is alive the queue is its, and the backoff
 * holds: a worker that skipped it would fail, leave, and have the next one
 * made at once, again and again, for as long as that worker's task runs. */
static bool backoff_cut_short(const struct evexec_pool *pool)
{
    return pool->stopping && (!pool->qhead || pool->ninit == 0);
}

/* With EVEXEC_POOL_INIT_RETRY, wait out the backoff of earlier failures
 * (cut short by a shutdown, see above). Lock held. False if the pool stopped
 * with nothing left to run, so there is no point in an init. */
static bool worker_backoff(struct worker *w)
{
    struct evexec_pool *pool = w->pool;
    uint64_t now = evexec__now_ns();
    if (pool->init_retry_at > now && !backoff_cut_short(pool)) {
        struct timespec deadline;
        evexec__deadline(&deadline, (long)((pool->init_retry_at - now + 999999u) / 1000000u));
        int rc = 0;
        while (rc != ETIMEDOUT && !backoff_cut_short(pool)) {
            unsigned seen = atomic_load_explicit(&w->wake_word, memory_order_relaxed);
            evexec__lock_release(&pool->lock);
            rc = evexec__word_wait(&w->wake_word, seen, &deadline);
            evexec__lock_acquire(&pool->lock);
        }
    }
    return !pool->stopping || pool->qhead;
}

/* Run thread_init; false if the worker is not to serve. A failure breaks
 * the pool (what is queued fails with EVEXEC_EBROKEN, and so does every
 * later submission), or, with EVEXEC_POOL_INIT_RETRY, only this worker:
 * the next one retries after a backoff, and the queue fails with the hook's
 * error once the retry budget is spent with no initialised worker alive. */
static bool worker_init(struct worker *w)
{
    struct evexec_pool *pool = w->pool;
    bool retry = pool->cfg.flags & EVEXEC_POOL_INIT_RETRY;
    if (!pool->cfg.thread_init)
        goto ready;
    if (retry) {
        evexec__lock_acquire(&pool->lock);
        bool go = worker_backoff(w);
        if (!go) {
            pool->nthreads--;
            update_fast(pool);
        }
        evexec__lock_release(&pool->lock);
        if (!go)
            return false;
    }
    int rc = pool->cfg.thread_init(pool->cfg.thread_ctx);
    if (rc == 0)
        goto ready;
    w->state = NULL; /* a failed init closes what it opened itself */
    evexec__lock_acquire(&pool->lock);
    pool->init_failures++;
    pool->last_init_error = rc;
    pool->nthreads--;
    struct evexec_cfuture *list = NULL;
    int err = EVEXEC_EBROKEN;
    if (!retry)
        pool->broken = true;
    update_fast(pool);
    if (!retry) {
        atomic_store(&pool->refusing, EVEXEC_EBROKEN);
        list = evexec__pool_take_to_fail(pool);
    } else {
        unsigned shift = pool->init_streak < 10 ? pool->init_streak : 10;
        uint64_t delay = (uint64_t)1000000u << shift; /* 1 ms, doubling */
        pool->init_streak++;
        pool->init_retry_at = evexec__now_ns() +
                              (delay < INIT_BACKOFF_MAX_NS ? delay : INIT_BACKOFF_MAX_NS);
        if (pool->ninit == 0 && ++pool->init_budget >= EVEXEC_POOL_INIT_RETRY_BUDGET) {
            pool->init_budget = 0;
            list = evexec__pool_take_to_fail(pool);
            if (rc > 0)
                err = rc;
        }
    }
    evexec__lock_release(&pool->lock);
    evexec__pool_fail_list(list, err);
    return false;

ready:
    evexec__lock_acquire(&pool->lock);
    w->initialised = true;
    pool->ninit++;
    pool->init_streak = 0;
    pool->init_budget = 0;
    pool->init_retry_at = 0;
    evexec__lock_release(&pool->lock);
    return true;
}

/* before_callbacks hook of a finished task: the worker is about to run done
 * callbacks, which may take long or wait for this very pool, so it stops
 * counting as returning, and what a submission left to it is dispatched
 * now. */
static void worker_runs_callbacks(void *ctx)
{
    struct worker *w = ctx;
    struct evexec_pool *pool = w->pool;
    evexec__lock_acquire(&pool->lock);
    w->returning = false;
    atomic_fetch_sub_explicit(&pool->nreturning, 1, memory_order_relaxed);
    struct evexec_cfuture *failed = pool->queued ? dispatch(pool) : NULL;
    evexec__lock_release(&pool->lock);
    evexec__pool_fail_list(failed, EAGAIN);
}

/* Run one popped task. Lock held on entry and on return, not in between. */
static void worker_run(struct worker *w, struct evexec_cfuture *cf)
{
    struct evexec_pool *pool = w->pool;
    bool started = evexec__cfuture_start(cf);
    if (started)
        pool->started++;
    else
        pool->cancelled++;
    evexec__lock_release(&pool->lock);
    if (started) {
        void *result = NULL;
        int err = evexec__cfuture_execute(cf, &result);
        /* Before the outcome is visible: whoever it wakes and submits again
         * must find this worker counted as coming. */
        w->returning = true;
        atomic_fetch_add_explicit(&pool->nreturning, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->completed, 1, memory_order_relaxed);
        /* + the queue's reference */
        evexec__cfuture_finish_release(cf, err, result, worker_runs_callbacks, w);
    } else {
        evexec_cfuture_release(cf); /* the queue's reference */
    }
    evexec__lock_acquire(&pool->lock);
    if (w->returning) {
        w->returning = false;
        atomic_fetch_sub_explicit(&pool->nreturning, 1, memory_order_relaxed);
    }
}

static bool queue_nonempty(const void *ctx)
{
    return evexec__pool_work_waiting(ctx);
}

/* Spin outside the lock for work to come, if worthwhile (one spinner is
 * enough to catch the next task). Lock held on entry and return; true if
 * work is queued. */
static bool worker_spin(struct evexec_pool *pool)
{
    if (!pool->spin_ns || pool->nspinning > 0 || !evexec__backoff_ready(&pool->spin))
        return false;
    pool->nspinning++;
    evexec__lock_release(&pool->lock);
    bool caught = evexec__spin_until(queue_nonempty, pool, pool->spin_ns);
    evexec__lock_acquire(&pool->lock);
    pool->nspinning--;
    evexec__backoff_outcome(&pool->spin, caught);
    take_incoming(pool);
    return pool->qhead != NULL;
}

/* Park until claimed, stopping, or idle timeout. Lock held. Returns false if
 * the worker should exit because it idled too long. */
static bool worker_park(struct evexec_pool *pool, struct worker *w)
{
    w->claimed = false;
    idle_push(pool, w);
    if (pool->qhead) {
        /* Parking closed the fast path, whose submissions joined the queue. */
        idle_remove(pool, w);
        return true;
    }
    bool timed = pool->nthreads > pool->cfg.min_workers;
    struct timespec deadline;
    if (timed)
        evexec__deadline(&deadline, pool->cfg.idle_timeout_ms);
    while (!w->claimed && !pool->stopping) {
        unsigned seen = atomic_load_explicit(&w->wake_word, memory_order_relaxed);
        evexec__lock_release(&pool->lock);
        int rc = evexec__word_wait(&w->wake_word, seen, timed ? &deadline : NULL);
        evexec__lock_acquire(&pool->lock);
        if (rc == ETIMEDOUT && !w->claimed && !pool->stopping) {
            if (pool->qhead)
                break; /* left to a returning worker meanwhile: take it */
            if (pool->nthreads > pool->cfg.min_workers) {
                idle_remove(pool, w);
                return false;
            }
            timed = false;
        }
    }
    if (!w->claimed)
        idle_remove(pool, w); /* woken by shutdown or timeout, still on the stack */
    return true;
}

/* Take and run tasks until the pool stops or the worker idles out. The
 * decision to leave and nthreads-- happen under one lock hold: workers
 * timing out together must not all leave below min_workers. */
static void worker_serve(struct worker *w)
{
    struct evexec_pool *pool = w->pool;
    evexec__lock_acquire(&pool->lock);
    for (;;) {
        struct evexec_cfuture *cf = queue_pop(pool);
        if (cf) {
            worker_run(w, cf);
            continue;
        }
        if (pool->stopping || pool->broken)
            break;
        if (worker_spin(pool))
            continue;
        if (!worker_park(pool, w))
            break;
    }
    pool->nthreads--;
    update_fast(pool);
    evexec__lock_release(&pool->lock);
}

/* The exit path: leave the live list, dispatch what is still queued (it was
 * not this worker's to take), hand the thread to be joined, and, in an
 * orphaned pool, free what is left. */
static void worker_leave(struct worker *w)
{
    struct evexec_pool *pool = w->pool;
    evexec__lock_acquire(&pool->lock);
    evexec__list_remove(&w->node);
    pool->nalive--;
    if (w->initialised)
        pool->ninit--;
    update_fast(pool);
    struct evexec_cfuture *failed = pool->queued ? dispatch(pool) : NULL;
    bool last = pool->nalive == 0;
    bool orphan = pool->orphan;
    if (pool->stopping) {
        /* The queue may be empty now, or no initialised worker left: a
         * worker waiting out an init backoff looks again. */
        for (struct evexec__list *n = pool->live.next; n != &pool->live; n = n->next)
            evexec__word_wake(&evexec__list_entry(n, struct worker, node)->wake_word, false);
    }
    struct evexec__list to_join;
    evexec__list_init(&to_join);
    if (!orphan) {
        /* Join the workers that exited before us; the next exiting worker
         * or the shutdown joins us. */
        take_zombies(pool, &to_join);
        evexec__list_push_back(&pool->zombies, &w->node);
    }
    if (last)
        evexec__word_wake(&pool->exit_word, true);
    evexec__lock_release(&pool->lock);
    evexec__pool_fail_list(failed, EAGAIN);
    join_list(&to_join);
    if (orphan) {
        evexec__free(w);
        if (last)
            evexec__pool_unref(pool);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct evexec_pool *pool = w->pool;
    current_worker = w;
    worker_setup(w);
    if (worker_init(w)) {
        worker_serve(w);
        if (pool->cfg.thread_exit)
            pool->cfg.thread_exit(pool->cfg.thread_ctx);
    }
    current_worker = NULL;
    w->state = NULL;
    worker_leave(w);
    return NULL;
}

/* ---- per-worker state ----------------------------------------------------- */

void evexec_worker_set_state(void *state)
{
    if (current_worker)
        current_worker->state = state;
}

void *evexec_worker_state(void)
{
    return current_worker ? current_worker->state : NULL;
}

unsigned evexec_worker_index(void)
{
    return current_worker ? current_worker->index : UINT_MAX;
}

/* ---- the public side ---------------------------------------------------- */

/* The fast path (see the top of this file): true if cf was pushed while the
 * path was open, and it still was after the push. */
static bool submit_fast(struct evexec_pool *pool, struct evexec_cfuture *cf, bool *pushed)
{
    *pushed = false;
    if (!atomic_load_explicit(&pool->fast_submit, memory_order_relaxed))
        return false;
    struct evexec_cfuture *old = atomic_load_explicit(&pool->incoming, memory_order_relaxed);
    do
        cf->qnext = old;
    while (!atomic_compare_exchange_weak(&pool->incoming, &old, cf));
    *pushed = true;
    return atomic_load(&pool->fast_submit);
}

int evexec__pool_submit_cf(struct evexec_pool *pool, struct evexec_cfuture *cf)
{
    if (forked(pool))
        return EVEXEC_EFORKED;
    if (pool->view_ops)
        return pool->view_ops->submit(pool, cf);
    bool pushed;
    if (submit_fast(pool, cf, &pushed))
        return 0;
    evexec__lock_acquire(&pool->lock);
    /* A task the fast path let in before it closed joins the queue here, if
     * whoever closed it has not moved it already. */
    take_incoming(pool);
    int err = 0;
    if (pool->broken)
        err = EVEXEC_EBROKEN;
    else if (pool->stopping)
        err = ESHUTDOWN;
    else if (!pushed && pool->cfg.max_queued && pool->queued >= pool->cfg.max_queued)
        err = EAGAIN;
    if (err && pushed && !cf->qlink) {
        /* The pool stopped after cf reached it: it ran, or the shutdown
         * settles it. (Every submitter holds cf until the call returns.) */
        evexec__lock_release(&pool->lock);
        return 0;
    }
    if (err) {
        if (pushed) {
            evexec__pool_queue_remove(pool, cf);
            pool->submitted--;
        }
        evexec__lock_release(&pool->lock);
        return err;
    }
    if (!pushed) {
        evexec__pool_queue_push(pool, cf);
        pool->submitted++;
    }
    struct evexec_cfuture *failed = dispatch(pool);
    evexec__lock_release(&pool->lock);
    evexec__pool_fail_list(failed, EAGAIN);
    return 0;
}

struct evexec_cfuture *evexec_pool_submit(struct evexec_pool *pool, evexec_work_fn fn,
                                          void *arg, evexec_free_fn free_result)
{
    if (!pool || !fn) {
        errno = EINVAL;
        return NULL;
    }
    if (forked(pool)) {
        errno = EVEXEC_EFORKED;
        return NULL;
    }
    struct evexec_cfuture *cf = evexec__malloc(sizeof(*cf));
    if (!cf)
        return NULL;
    evexec__cfuture_init(cf, fn, arg, free_result, 2); /* caller + queue */
    int err = evexec__pool_submit_cf(pool, cf);
    if (err) {
        evexec__free(cf);
        errno = err;
        return NULL;
    }
    return cf;
}

/* Stop accepting work and wake every parked worker. Returns what
 * CANCEL_PENDING took from the queue, for evexec__pool_cancel_list(). */
static struct evexec_cfuture *begin_shutdown(struct evexec_pool *pool, unsigned flags)
{
    struct evexec_cfuture *cancelled = NULL;
    evexec__lock_acquire(&pool->lock);
    pool->stopping = true;
    if (!pool->broken)
        atomic_store(&pool->refusing, ESHUTDOWN);
    update_fast(pool);
    if (flags & EVEXEC_SHUTDOWN_CANCEL_PENDING)
        cancelled = evexec__pool_take_to_cancel(pool);
    /* Parked workers, and workers waiting out an init backoff. */
    for (struct evexec__list *n = pool->live.next; n != &pool->live; n = n->next)
        evexec__word_wake(&evexec__list_entry(n, struct worker, node)->wake_word, false);
    evexec__lock_release(&pool->lock);
    return cancelled;
}

/* Until every worker has exited and been joined -- by this caller or by
 * another one waiting too: the last of them returns only after the others'
 * joins are done. */
static void wait_all_joined(struct evexec_pool *pool)
{
    evexec__lock_acquire(&pool->lock);
    for (;;) {
        if (!evexec__list_empty(&pool->zombies)) {
            struct evexec__list zombies;
            take_zombies(pool, &zombies);
            pool->njoining++;
            evexec__lock_release(&pool->lock);
            join_list(&zombies);
            evexec__lock_acquire(&pool->lock);
            if (--pool->njoining == 0)
                evexec__word_wake(&pool->exit_word, true);
            continue;
        }
        if (pool->nalive == 0 && pool->njoining == 0)
            break;
        unsigned seen = atomic_load_explicit(&pool->exit_word, memory_order_relaxed);
        evexec__lock_release(&pool->lock);
        evexec__word_wait(&pool->exit_word, seen, NULL);
        evexec__lock_acquire(&pool->lock);
    }
    evexec__lock_release(&pool->lock);
}

int evexec_pool_shutdown(struct evexec_pool *pool, unsigned flags)
{
    if (!pool || (flags & ~(EVEXEC_SHUTDOWN_WAIT | EVEXEC_SHUTDOWN_CANCEL_PENDING)))
        return EINVAL;
    if (forked(pool))
        return EVEXEC_EFORKED;
    if ((flags & EVEXEC_SHUTDOWN_WAIT) && inside_own_task(pool))
        return EDEADLK;
    if (pool->view_ops)
        return pool->view_ops->shutdown(pool, flags);
    evexec__pool_cancel_list(begin_shutdown(pool, flags));
    if (flags & EVEXEC_SHUTDOWN_WAIT)
        wait_all_joined(pool);
    return 0;
}

void evexec__pool_orphan(struct evexec_pool *pool)
{
    if (pool->view_ops) {
        pool->view_ops->orphan(pool);
        return;
    }
    evexec__pool_cancel_list(begin_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING));
    evexec__lock_acquire(&pool->lock);
    pool->orphan = true;
    for (struct evexec__list *n = pool->live.next; n != &pool->live; n = n->next)
        pthread_detach(evexec__list_entry(n, struct worker, node)->thread);
    struct evexec__list zombies;
    take_zombies(pool, &zombies);
    bool none_left = pool->nalive == 0;
    evexec__lock_release(&pool->lock);
    join_list(&zombies); /* already exited: this does not wait for work */
    if (none_left)
        evexec__pool_unref(pool);
}

bool evexec__pool_drained(struct evexec_pool *pool)
{
    if (forked(pool))
        return true;
    if (pool->view_ops)
        return pool->view_ops->drained(pool);
    evexec__lock_acquire(&pool->lock);
    bool drained = pool->nalive == 0;
    evexec__lock_release(&pool->lock);
    return drained;
}

void evexec_pool_free(struct evexec_pool *pool)
{
    if (!pool)
        return;
    if (forked(pool))
        return; /* its threads do not exist here: leaked, as documented */
    if (inside_own_task(pool)) {
        EVEXEC__ASSERT(false, "evexec_pool_free", "called from one of the pool's own tasks");
        evexec__pool_orphan(pool);
        return;
    }
    evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    evexec__pool_unref(pool);
}

int evexec_pool_get_stats(struct evexec_pool *pool, struct evexec_pool_stats *stats)
{
    if (!pool || !stats)
        return EINVAL;
    if (forked(pool))
        return EVEXEC_EFORKED;
    memset(stats, 0, sizeof(*stats));
    evexec__lock_acquire(&pool->lock);
    take_incoming(pool);
    uint64_t completed = atomic_load_explicit(&pool->completed, memory_order_relaxed);
    stats->threads = pool->nalive;
    stats->idle = pool->nidle;
    stats->queued = pool->queued;
    stats->submitted = pool->submitted;
    stats->completed = completed;
    stats->cancelled = pool->cancelled;
    stats->failed = pool->failed;
    stats->running = (unsigned)(pool->started - completed);
    stats->threads_started = pool->threads_started;
    stats->init_failures = pool->init_failures;
    stats->last_init_error = pool->last_init_error;
    evexec__lock_release(&pool->lock);
    return 0;
}
