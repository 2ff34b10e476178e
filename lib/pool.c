/*
 * pool.c -- worker threads and the FIFO work queue.
 *
 * One lock (pool->lock, a futex mutex from sync.c) guards the queue, the
 * worker lists and the counters. Workers are made lazily, one per submission
 * that finds nobody to take it, up to max_workers. A worker with nothing to
 * do first spins for a few tens of microseconds (a cross-CPU wakeup costs
 * more than that on a small VM) -- one worker at a time, and never when the
 * process may use only one CPU -- then parks on a wait word of its own in
 * the idle stack. A submitter claims the most recently parked worker and signals only that one, so the
 * workers at the bottom of the stack stay idle long enough to time out and
 * exit (above min_workers).
 *
 * Cancellation never touches the queue: a cancelled task stays queued until
 * a worker pops it, fails the PENDING -> RUNNING transition and drops it.
 *
 * Lifetime: evexec_pool_free() joins every worker. An orphaned pool (the
 * loop's default pool at evexec_loop_free, or a pool freed by its own worker)
 * detaches its workers instead and the last one to exit frees it.
 *
 * Lock order: pool->lock, then nothing. No user code (tasks, hooks, free
 * functions, callbacks) runs under it.
 */
#include "executor.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_SYS_PRCTL_H
#include <sys/prctl.h>
#endif

struct worker {
    struct worker *idle_prev, *idle_next; /* idle stack (pool lock) */
    struct worker *all_prev, *all_next;   /* live workers, or zombies */
    struct evexec_pool *pool;
    pthread_t thread;
    _Atomic unsigned wake_word;           /* bumped to wake it */
    unsigned index;
    bool claimed;                         /* a submitter woke it for work */
};

struct evexec_pool {
    struct evexec__lock lock;
    struct evexec_cfuture *qhead, *qtail;
    size_t queued;
    struct worker *idle_top;              /* most recently parked */
    struct worker *live;                  /* every running worker */
    struct worker *zombies;               /* exited, not yet joined */
    unsigned nthreads;                    /* workers that mean to stay: the policy count */
    unsigned nalive;                      /* threads not yet finished: the lifetime count */
    unsigned nidle, nspinning;
    /* Workers between the end of a task and taking the lock again: about to
     * look at the queue, so a submission need not wake or make another. */
    _Atomic unsigned nreturning;
    _Atomic unsigned exit_word;           /* bumped when nalive reaches 0 */
    bool stopping, broken, orphan;
    uint64_t submitted, cancelled, threads_started;
    /* Counted before the outcome is published, so a reader that saw every
     * future done sees them all counted. */
    _Atomic uint64_t completed;
    unsigned next_index;
    unsigned fork_gen;
    /* Read by spinning workers without the lock. */
    _Alignas(EVEXEC__CACHELINE) _Atomic size_t queued_hint;
    _Alignas(EVEXEC__CACHELINE) struct evexec_pool_config cfg;
    uint64_t spin_ns;
    unsigned spin_skip, spin_backoff;     /* pool lock: after a fruitless spin */
    char name[16];
};

/* The pool whose worker this thread is, for EDEADLK. */
static EVEXEC__TLS struct evexec_pool *current_pool;

static unsigned default_max_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    return cpus + 4 < 32 ? (unsigned)cpus + 4 : 32;
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
    if (c.min_workers > c.max_workers ||
        (c.flags & ~(EVEXEC_POOL_NO_SPIN | EVEXEC_POOL_KEEP_PRIORITY | EVEXEC_POOL_SCHED_IDLE))) {
        errno = EINVAL;
        return NULL;
    }
    struct evexec_pool *pool = evexec__calloc(1, sizeof(*pool));
    if (!pool)
        return NULL;
    pool->cfg = c;
    if (!(c.flags & EVEXEC_POOL_NO_SPIN) && evexec__cpus_allowed() > 1)
        pool->spin_ns = (uint64_t)c.spin_us * 1000u;
    /* A thread name has 15 characters; leave room for "-NN". */
    snprintf(pool->name, 12, "%s", c.thread_name ? c.thread_name : "evexec");
    pool->cfg.thread_name = pool->name;
    pool->fork_gen = evexec__fork_gen();
    return pool;
}

static bool forked(const struct evexec_pool *pool)
{
    return pool->fork_gen != evexec__fork_gen();
}

/* ---- queue (pool lock held) --------------------------------------------- */

static void queue_push(struct evexec_pool *pool, struct evexec_cfuture *cf)
{
    cf->qnext = NULL;
    if (pool->qtail)
        pool->qtail->qnext = cf;
    else
        pool->qhead = cf;
    pool->qtail = cf;
    pool->queued++;
    atomic_store_explicit(&pool->queued_hint, pool->queued, memory_order_relaxed);
}

static struct evexec_cfuture *queue_pop(struct evexec_pool *pool)
{
    struct evexec_cfuture *cf = pool->qhead;
    if (!cf)
        return NULL;
    pool->qhead = cf->qnext;
    if (!pool->qhead)
        pool->qtail = NULL;
    pool->queued--;
    atomic_store_explicit(&pool->queued_hint, pool->queued, memory_order_relaxed);
    return cf;
}

static struct evexec_cfuture *queue_take_all(struct evexec_pool *pool)
{
    struct evexec_cfuture *list = pool->qhead;
    pool->qhead = pool->qtail = NULL;
    pool->queued = 0;
    atomic_store_explicit(&pool->queued_hint, 0, memory_order_relaxed);
    return list;
}

/* Outside the lock: fail (or cancel) every task of a detached list. */
static void fail_list(struct evexec_cfuture *list, int err)
{
    while (list) {
        struct evexec_cfuture *cf = list;
        list = cf->qnext;
        if (err == ECANCELED)
            evexec_cfuture_cancel(cf);
        else
            evexec__cfuture_fail(cf, err);
        evexec_cfuture_release(cf); /* the queue's reference */
    }
}

/* ---- idle stack and worker lists (pool lock held) ----------------------- */

static void idle_push(struct evexec_pool *pool, struct worker *w)
{
    w->idle_prev = NULL;
    w->idle_next = pool->idle_top;
    if (pool->idle_top)
        pool->idle_top->idle_prev = w;
    pool->idle_top = w;
    pool->nidle++;
}

static void idle_remove(struct evexec_pool *pool, struct worker *w)
{
    if (w->idle_prev)
        w->idle_prev->idle_next = w->idle_next;
    else
        pool->idle_top = w->idle_next;
    if (w->idle_next)
        w->idle_next->idle_prev = w->idle_prev;
    w->idle_prev = w->idle_next = NULL;
    pool->nidle--;
}

static void list_insert(struct worker **head, struct worker *w)
{
    w->all_prev = NULL;
    w->all_next = *head;
    if (*head)
        (*head)->all_prev = w;
    *head = w;
}

static void list_remove(struct worker **head, struct worker *w)
{
    if (w->all_prev)
        w->all_prev->all_next = w->all_next;
    else
        *head = w->all_next;
    if (w->all_next)
        w->all_next->all_prev = w->all_prev;
}

static void join_list(struct worker *list)
{
    while (list) {
        struct worker *w = list;
        list = w->all_next;
        pthread_join(w->thread, NULL);
        evexec__free(w);
    }
}

static void pool_destroy(struct evexec_pool *pool)
{
    evexec__free(pool);
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

/* Spin outside the lock until work may be there or spin_ns passed; true if
 * work came. */
static bool worker_spin(struct evexec_pool *pool)
{
    uint64_t start = evexec__now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&pool->queued_hint, memory_order_relaxed) > 0)
            return true;
        evexec__cpu_relax();
        if ((i & 63) == 0 && evexec__now_ns() - start >= pool->spin_ns)
            return false;
    }
}

/* Whether an idle worker should spin now (lock held). A fruitless spin
 * makes the next ones wait a number of idle turns that doubles each time (up
 * to 1024), so work that comes slowly, or a machine too busy to run the
 * submitter, costs almost no CPU; work that comes fast is soon caught again. */
static bool spin_worthwhile(struct evexec_pool *pool)
{
    if (!pool->spin_ns || pool->nspinning > 0)
        return false; /* one spinner is enough to catch the next task */
    if (pool->spin_skip > 0) {
        pool->spin_skip--;
        return false;
    }
    return true;
}

static void spin_outcome(struct evexec_pool *pool, bool caught)
{
    if (caught) {
        pool->spin_backoff = 0;
        return;
    }
    pool->spin_backoff = pool->spin_backoff ? pool->spin_backoff * 2 : 1;
    if (pool->spin_backoff > 1024)
        pool->spin_backoff = 1024;
    pool->spin_skip = pool->spin_backoff;
}

/* Park until claimed, stopping, or idle timeout. Lock held. Returns false if
 * the worker should exit because it idled too long. */
static bool worker_park(struct evexec_pool *pool, struct worker *w)
{
    w->claimed = false;
    idle_push(pool, w);
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
            if (pool->nthreads > pool->cfg.min_workers) {
                /* Count the decision now, not when the thread is gone:
                 * workers timing out together must not all leave. */
                pool->nthreads--;
                idle_remove(pool, w);
                return false;
            }
            timed = false;
        }
    }
    if (!w->claimed)
        idle_remove(pool, w); /* woken by shutdown, still on the stack */
    return true;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct evexec_pool *pool = w->pool;
    current_pool = pool;
    worker_setup(w);

    bool init_ok = true;
    if (pool->cfg.thread_init && pool->cfg.thread_init(pool->cfg.thread_ctx) != 0) {
        init_ok = false;
        evexec__lock_acquire(&pool->lock);
        pool->broken = true;
        struct evexec_cfuture *list = queue_take_all(pool);
        evexec__lock_release(&pool->lock);
        fail_list(list, EVEXEC_EBROKEN);
    }

    bool idled_out = false;
    evexec__lock_acquire(&pool->lock);
    while (init_ok) {
        struct evexec_cfuture *cf = queue_pop(pool);
        if (cf) {
            bool started = evexec__cfuture_start(cf);
            if (!started)
                pool->cancelled++;
            evexec__lock_release(&pool->lock);
            if (started) {
                void *result = NULL;
                int err = evexec__cfuture_execute(cf, &result);
                /* Before the outcome is visible: whoever it wakes and
                 * submits again must find this worker counted as coming. */
                atomic_fetch_add_explicit(&pool->nreturning, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&pool->completed, 1, memory_order_relaxed);
                evexec__cfuture_finish_release(cf, err, result); /* + the queue's ref */
            } else {
                atomic_fetch_add_explicit(&pool->nreturning, 1, memory_order_relaxed);
                evexec_cfuture_release(cf); /* the queue's reference */
            }
            evexec__lock_acquire(&pool->lock);
            atomic_fetch_sub_explicit(&pool->nreturning, 1, memory_order_relaxed);
            continue;
        }
        if (pool->stopping || pool->broken)
            break;
        if (spin_worthwhile(pool)) {
            pool->nspinning++;
            evexec__lock_release(&pool->lock);
            bool caught = worker_spin(pool);
            evexec__lock_acquire(&pool->lock);
            pool->nspinning--;
            spin_outcome(pool, caught);
            if (pool->qhead)
                continue;
        }
        if (!worker_park(pool, w)) {
            idled_out = true;
            break;
        }
    }
    if (!idled_out)
        pool->nthreads--;
    evexec__lock_release(&pool->lock);

    if (init_ok && pool->cfg.thread_exit)
        pool->cfg.thread_exit(pool->cfg.thread_ctx);

    evexec__lock_acquire(&pool->lock);
    list_remove(&pool->live, w);
    bool last = --pool->nalive == 0;
    struct worker *to_join = NULL;
    bool orphan = pool->orphan;
    if (!orphan) {
        /* Join the workers that exited before us; the next exiting worker
         * or the shutdown joins us. */
        to_join = pool->zombies;
        pool->zombies = NULL;
        list_insert(&pool->zombies, w);
    }
    if (last)
        evexec__word_wake(&pool->exit_word, true);
    evexec__lock_release(&pool->lock);
    join_list(to_join);
    if (orphan) {
        evexec__free(w);
        if (last)
            pool_destroy(pool);
    }
    return NULL;
}

/* Start one worker. Lock held. Returns 0 or an error of pthread_create. */
static int spawn_worker(struct evexec_pool *pool)
{
    struct worker *w = evexec__calloc(1, sizeof(*w));
    if (!w)
        return ENOMEM;
    w->pool = pool;
    w->index = pool->next_index++;

    /* Workers inherit a mask that blocks every signal, so signals keep going
     * to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = evexec__thread_create(&w->thread, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        evexec__free(w);
        return rc;
    }
    list_insert(&pool->live, w);
    pool->nthreads++;
    pool->nalive++;
    pool->threads_started++;
    return 0;
}

/* A task was queued: make sure somebody will take it. Lock held. Returns a
 * list of tasks to fail with EAGAIN if no thread exists and none could be
 * made. */
static struct evexec_cfuture *dispatch(struct evexec_pool *pool)
{
    if (pool->queued <= pool->nspinning +
                           atomic_load_explicit(&pool->nreturning, memory_order_relaxed))
        return NULL; /* a spinning or returning worker will take it */
    if (pool->idle_top) {
        struct worker *w = pool->idle_top;
        idle_remove(pool, w);
        w->claimed = true;
        evexec__word_wake(&w->wake_word, false);
        return NULL;
    }
    if (pool->nthreads >= pool->cfg.max_workers)
        return NULL;
    if (spawn_worker(pool) == 0 || pool->nalive > 0)
        return NULL; /* the workers we have will get to it */
    return queue_take_all(pool);
}

int evexec__pool_submit_cf(struct evexec_pool *pool, struct evexec_cfuture *cf)
{
    if (forked(pool))
        return EVEXEC_EFORKED;
    evexec__lock_acquire(&pool->lock);
    int err = 0;
    if (pool->broken)
        err = EVEXEC_EBROKEN;
    else if (pool->stopping)
        err = ESHUTDOWN;
    else if (pool->cfg.max_queued && pool->queued >= pool->cfg.max_queued)
        err = EAGAIN;
    if (err) {
        evexec__lock_release(&pool->lock);
        return err;
    }
    queue_push(pool, cf);
    pool->submitted++;
    struct evexec_cfuture *failed = dispatch(pool);
    evexec__lock_release(&pool->lock);
    fail_list(failed, EAGAIN);
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

/* Stop accepting work and wake every parked worker. */
static struct evexec_cfuture *begin_shutdown(struct evexec_pool *pool, unsigned flags)
{
    struct evexec_cfuture *cancelled = NULL;
    evexec__lock_acquire(&pool->lock);
    pool->stopping = true;
    if (flags & EVEXEC_SHUTDOWN_CANCEL_PENDING) {
        cancelled = queue_take_all(pool);
        for (struct evexec_cfuture *cf = cancelled; cf; cf = cf->qnext)
            pool->cancelled++;
    }
    for (struct worker *w = pool->idle_top; w; w = w->idle_next)
        evexec__word_wake(&w->wake_word, false);
    evexec__lock_release(&pool->lock);
    return cancelled;
}

int evexec_pool_shutdown(struct evexec_pool *pool, unsigned flags)
{
    if (!pool || (flags & ~(EVEXEC_SHUTDOWN_WAIT | EVEXEC_SHUTDOWN_CANCEL_PENDING)))
        return EINVAL;
    if (forked(pool))
        return EVEXEC_EFORKED;
    if ((flags & EVEXEC_SHUTDOWN_WAIT) && current_pool == pool)
        return EDEADLK;
    fail_list(begin_shutdown(pool, flags), ECANCELED);
    if (flags & EVEXEC_SHUTDOWN_WAIT) {
        evexec__lock_acquire(&pool->lock);
        while (pool->nalive > 0) {
            unsigned seen = atomic_load_explicit(&pool->exit_word, memory_order_relaxed);
            evexec__lock_release(&pool->lock);
            evexec__word_wait(&pool->exit_word, seen, NULL);
            evexec__lock_acquire(&pool->lock);
        }
        struct worker *zombies = pool->zombies;
        pool->zombies = NULL;
        evexec__lock_release(&pool->lock);
        join_list(zombies);
    }
    return 0;
}

void evexec__pool_orphan(struct evexec_pool *pool)
{
    fail_list(begin_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING), ECANCELED);
    evexec__lock_acquire(&pool->lock);
    pool->orphan = true;
    for (struct worker *w = pool->live; w; w = w->all_next)
        pthread_detach(w->thread);
    struct worker *zombies = pool->zombies;
    pool->zombies = NULL;
    bool none_left = pool->nalive == 0;
    evexec__lock_release(&pool->lock);
    join_list(zombies); /* already exited: this does not wait for work */
    if (none_left)
        pool_destroy(pool);
}

void evexec_pool_free(struct evexec_pool *pool)
{
    if (!pool)
        return;
    if (forked(pool))
        return; /* its threads do not exist here: leaked, as documented */
    if (current_pool == pool) {
        EVEXEC__ASSERT(false, "evexec_pool_free", "called from one of the pool's own workers");
        evexec__pool_orphan(pool);
        return;
    }
    evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    pool_destroy(pool);
}

int evexec_pool_get_stats(struct evexec_pool *pool, struct evexec_pool_stats *stats)
{
    if (!pool || !stats)
        return EINVAL;
    if (forked(pool))
        return EVEXEC_EFORKED;
    evexec__lock_acquire(&pool->lock);
    stats->threads = pool->nalive;
    stats->idle = pool->nidle;
    stats->queued = pool->queued;
    stats->submitted = pool->submitted;
    stats->completed = atomic_load_explicit(&pool->completed, memory_order_relaxed);
    stats->cancelled = pool->cancelled;
    stats->threads_started = pool->threads_started;
    evexec__lock_release(&pool->lock);
    return 0;
}
