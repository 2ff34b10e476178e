/*
 * cfuture.c -- the concurrent future: a task and its outcome, thread-safe.
 *
 * State machine: PENDING -> RUNNING -> FINISHED, or PENDING -> CANCELLED.
 * Both transitions out of PENDING are compare-and-swaps on one atomic, so
 * exactly one of "start" and "cancel" wins: a task whose cancel returned true
 * never runs.
 *
 * Waiting and done callbacks cost nothing when nobody waits: a future has no
 * mutex of its own. Waiters and callback lists are guarded by one of a fixed
 * set of striped mutex/condvar pairs, chosen by address. The completing
 * thread stores the final state and then loads the flags; a waiter or a
 * callback registration sets its flag and then loads the state (both seq_cst),
 * so at least one side sees the other: either the completer takes the stripe
 * lock and wakes / runs them, or the registrant sees "done" itself.
 *
 * evexec_cfuture_wait_many cannot sleep on several stripes at once; it
 * marks each future it waits for with EVEXEC__CF_MANY and sleeps on one
 * process-wide wait word instead, which a completer of a marked future bumps
 * (same store-state / load-flags handshake as above). The mark is never
 * cleared: a future once waited on this way costs its completer a wake.
 *
 * Lock order: a stripe lock is taken alone, never with the pool lock, and no
 * callback runs under it.
 */
#include "executor.h"

#include <errno.h>
#include <time.h>

#define STRIPES 64

struct stripe {
    pthread_mutex_t lock;
    pthread_cond_t cond;
} __attribute__((aligned(EVEXEC__CACHELINE)));

static struct stripe stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_reset(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    for (int i = 0; i < STRIPES; i++) {
        pthread_mutex_init(&stripes[i].lock, NULL);
        pthread_cond_init(&stripes[i].cond, &attr);
    }
    pthread_condattr_destroy(&attr);
}

static void stripes_init(void)
{
    stripes_reset();
    /* In a child, a parent thread may have held a stripe or waited on its
     * condition variable at fork(); its stale state would block or eat the
     * child's wakeups. The parent's cfutures refuse to work there
     * (EVEXEC_EFORKED), so nothing needs what the stripes guarded: start
     * afresh. */
    pthread_atfork(NULL, NULL, stripes_reset);
}

/* Only waiters and callback registrations initialise the stripes; a
 * completer locks one only after seeing a flag they set. */
static struct stripe *stripe_of(const struct evexec_cfuture *cf)
{
    pthread_once(&stripes_once, stripes_init);
    uintptr_t a = (uintptr_t)cf;
    return &stripes[((a >> 6) ^ (a >> 12)) % STRIPES];
}

/* Bumped when a future that evexec_cfuture_wait_many waits for completes.
 * A futex word needs nothing re-initialised after fork(). */
static _Atomic unsigned many_word;

/* The task this worker thread runs now, for evexec_cancel_requested(). */
static EVEXEC__TLS struct evexec_cfuture *current_task;

static bool is_done(int state)
{
    return state == EVEXEC_FINISHED || state == EVEXEC_CANCELLED;
}

/* The state is final: tell the chain, or wake waiters and run callbacks
 * (telling before_callbacks first, if there are any). */
static void complete(struct evexec_cfuture *cf, void (*before_callbacks)(void *ctx), void *ctx)
{
    if (cf->on_done) {
        /* A cfuture with on_done is private to whoever set it (chain.c, or
         * view.c for a view's pump): it has no waiters or callbacks, and
         * may be freed once told. */
        cf->on_done(cf);
        return;
    }
    unsigned flags = atomic_load(&cf->flags);
    if (flags & EVEXEC__CF_MANY)
        evexec__word_wake(&many_word, true);
    if (!(flags & (EVEXEC__CF_WAITERS | EVEXEC__CF_CALLBACKS)))
        return;
    struct stripe *s = stripe_of(cf);
    pthread_mutex_lock(&s->lock);
    struct evexec__cb_node *list = cf->callbacks;
    cf->callbacks = NULL;
    cf->callbacks_tail = &cf->callbacks;
    if (flags & EVEXEC__CF_WAITERS)
        pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (list && before_callbacks)
        before_callbacks(ctx);
    while (list) {
        struct evexec__cb_node *n = list;
        list = n->next;
        n->cb(cf, n->arg);
        evexec__free(n);
    }
}

bool evexec__cfuture_start(struct evexec_cfuture *cf)
{
    int expected = EVEXEC_PENDING;
    return atomic_compare_exchange_strong(&cf->state, &expected, EVEXEC_RUNNING);
}

static void finish(struct evexec_cfuture *cf, int err, void *result,
                   void (*before_callbacks)(void *ctx), void *ctx)
{
    if (err != 0 && result != NULL && cf->free_result) {
        /* An error wins; a result stored anyway is not lost, it is freed.
         * Without a free function it is kept for the owner (a request's
         * after frees it). */
        cf->free_result(result);
        result = NULL;
    }
    cf->error = err;
    cf->result = result;
    atomic_store(&cf->state, EVEXEC_FINISHED);
    complete(cf, before_callbacks, ctx);
}

int evexec__cfuture_execute(struct evexec_cfuture *cf, void **result)
{
    struct evexec_cfuture *outer = current_task;
    current_task = cf;
    int err = cf->fn(cf->arg, result);
    current_task = outer;
    return err;
}

void evexec__cfuture_finish_release(struct evexec_cfuture *cf, int err, void *result,
                                    void (*before_callbacks)(void *ctx), void *ctx)
{
    if (cf->on_done) {
        /* The owner of on_done holds a reference until it has been told, so
         * the caller's can go first; the last reference is then dropped on
         * the owner's side (the loop thread, which recycles the block). */
        evexec__cfuture_unref(cf);
        finish(cf, err, result, NULL, NULL);
        return;
    }
    finish(cf, err, result, before_callbacks, ctx);
    evexec_cfuture_release(cf);
}

bool evexec__cfuture_fail(struct evexec_cfuture *cf, int err)
{
    if (!evexec__cfuture_start(cf))
        return false;
    finish(cf, err, NULL, NULL, NULL);
    return true;
}

/* A cfuture made before fork() (the parent's): its worker does not exist
 * here, so it accepts nothing, not even a wait for an outcome it may have. */
static bool inherited(const struct evexec_cfuture *cf)
{
    return evexec__forked(cf->fork_gen);
}

bool evexec_cancel_requested(void)
{
    struct evexec_cfuture *cf = current_task;
    return cf && (atomic_load_explicit(&cf->flags, memory_order_relaxed) &
                  EVEXEC__CF_CANCEL_REQUESTED);
}

int evexec_cfuture_state(struct evexec_cfuture *cf)
{
    if (!cf) {
        errno = EINVAL;
        return -1;
    }
    if (inherited(cf)) {
        errno = EVEXEC_EFORKED;
        return -1;
    }
    return atomic_load(&cf->state);
}

bool evexec_cfuture_cancel(struct evexec_cfuture *cf)
{
    if (!cf) {
        errno = EINVAL;
        return false;
    }
    if (inherited(cf)) {
        errno = EVEXEC_EFORKED;
        return false;
    }
    int state = atomic_load(&cf->state);
    for (;;) {
        switch (state) {
        case EVEXEC_CANCELLED:
            return true;
        case EVEXEC_FINISHED:
            return false;
        case EVEXEC_RUNNING:
            atomic_fetch_or(&cf->flags, EVEXEC__CF_CANCEL_REQUESTED);
            /* It may have finished meanwhile; either way it ran. */
            return false;
        default:
            if (atomic_compare_exchange_weak(&cf->state, &state, EVEXEC_CANCELLED)) {
                /* The pool's queue still holds the task; a worker that reaches
                 * it fails to start it and drops it. */
                complete(cf, NULL, NULL);
                return true;
            }
        }
    }
}

/* Wait until done or the deadline; 0 or ETIMEDOUT / EVEXEC_EFORKED. */
static int wait_done(struct evexec_cfuture *cf, long timeout_ms)
{
    if (inherited(cf))
        return EVEXEC_EFORKED;
    if (is_done(atomic_load(&cf->state)))
        return 0;
    if (timeout_ms == 0)
        return ETIMEDOUT;
    struct timespec deadline;
    if (timeout_ms > 0)
        evexec__deadline(&deadline, timeout_ms);
    struct stripe *s = stripe_of(cf);
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    atomic_fetch_or(&cf->flags, EVEXEC__CF_WAITERS);
    while (!is_done(atomic_load(&cf->state))) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->cond, &s->lock);
        } else if (pthread_cond_timedwait(&s->cond, &s->lock, &deadline) == ETIMEDOUT) {
            rc = is_done(atomic_load(&cf->state)) ? 0 : ETIMEDOUT;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int evexec_cfuture_wait(struct evexec_cfuture *cf, long timeout_ms)
{
    if (!cf || timeout_ms < -1)
        return EINVAL;
    return wait_done(cf, timeout_ms);
}

int evexec__cfuture_outcome(struct evexec_cfuture *cf, void **result, bool take)
{
    switch (atomic_load(&cf->state)) {
    case EVEXEC_CANCELLED:
        return ECANCELED;
    case EVEXEC_FINISHED:
        break;
    default:
        return EINPROGRESS;
    }
    if (cf->error)
        return cf->error;
    if (take) {
        if (atomic_fetch_or(&cf->flags, EVEXEC__CF_TAKEN) & EVEXEC__CF_TAKEN)
            return EVEXEC_ETAKEN;
    } else if (atomic_load(&cf->flags) & EVEXEC__CF_TAKEN) {
        return EVEXEC_ETAKEN;
    }
    if (result)
        *result = cf->result;
    return 0;
}

static int result_common(struct evexec_cfuture *cf, long timeout_ms, void **result,
                         bool take)
{
    if (!cf || timeout_ms < -1)
        return EINVAL;
    int rc = wait_done(cf, timeout_ms);
    if (rc)
        return rc;
    return evexec__cfuture_outcome(cf, result, take);
}

int evexec_cfuture_result(struct evexec_cfuture *cf, long timeout_ms, void **result)
{
    return result_common(cf, timeout_ms, result, false);
}

int evexec_cfuture_take_result(struct evexec_cfuture *cf, long timeout_ms, void **result)
{
    return result_common(cf, timeout_ms, result, true);
}

void evexec__cfuture_drop_result(struct evexec_cfuture *cf)
{
    if (atomic_fetch_or(&cf->flags, EVEXEC__CF_TAKEN) & EVEXEC__CF_TAKEN)
        return;
    if (cf->result && cf->free_result)
        cf->free_result(cf->result);
    cf->result = NULL;
}

int evexec_cfuture_add_done_callback(struct evexec_cfuture *cf, evexec_cfuture_cb cb,
                                     void *arg)
{
    if (!cf || !cb)
        return EINVAL;
    if (inherited(cf))
        return EVEXEC_EFORKED; /* nothing would ever call it back */
    if (!is_done(atomic_load(&cf->state))) {
        struct evexec__cb_node *n = evexec__malloc(sizeof(*n));
        if (!n)
            return ENOMEM;
        n->next = NULL;
        n->cb = cb;
        n->arg = arg;
        struct stripe *s = stripe_of(cf);
        pthread_mutex_lock(&s->lock);
        atomic_fetch_or(&cf->flags, EVEXEC__CF_CALLBACKS);
        if (!is_done(atomic_load(&cf->state))) {
            *cf->callbacks_tail = n;
            cf->callbacks_tail = &n->next;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
        pthread_mutex_unlock(&s->lock);
        evexec__free(n);
    }
    cb(cf, arg);
    return 0;
}

void evexec_cfuture_retain(struct evexec_cfuture *cf)
{
    if (cf && !inherited(cf))
        atomic_fetch_add_explicit(&cf->refs, 1, memory_order_relaxed);
}

bool evexec__cfuture_unref(struct evexec_cfuture *cf)
{
    return atomic_fetch_sub_explicit(&cf->refs, 1, memory_order_acq_rel) == 1;
}

void evexec__cfuture_destroy_contents(struct evexec_cfuture *cf)
{
    if (!(atomic_load_explicit(&cf->flags, memory_order_relaxed) & EVEXEC__CF_TAKEN) &&
        cf->result && cf->free_result)
        cf->free_result(cf->result);
    /* Nodes are left only if the future never completed (its pool was
     * abandoned in a forked child). */
    for (struct evexec__cb_node *n = cf->callbacks, *next; n; n = next) {
        next = n->next;
        evexec__free(n);
    }
}

void evexec_cfuture_release(struct evexec_cfuture *cf)
{
    if (!cf || inherited(cf) || !evexec__cfuture_unref(cf))
        return; /* an inherited one is leaked: its pool may still hold it */
    evexec__cfuture_destroy_contents(cf);
    /* An embedded cfuture heads its run_in_executor block, so this frees the
     * block; the loop future inside died first (it holds a reference). */
    evexec__free(cf);
}

/* Failed, for EVEXEC_FIRST_EXCEPTION: an error or a cancel (a taken result
 * is a success). */
static bool failed(struct evexec_cfuture *cf)
{
    int state = atomic_load(&cf->state);
    return state == EVEXEC_CANCELLED || (state == EVEXEC_FINISHED && cf->error != 0);
}

/* 0 if return_when holds for cfs, EINPROGRESS if not yet. */
static int many_holds(struct evexec_cfuture *const *cfs, size_t n, unsigned return_when)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_done(atomic_load(&cfs[i]->state)))
            continue;
        done++;
        if (return_when == EVEXEC_FIRST_COMPLETED ||
            (return_when == EVEXEC_FIRST_EXCEPTION && failed(cfs[i])))
            return 0;
    }
    return done == n ? 0 : EINPROGRESS;
}

int evexec_cfuture_wait_many(struct evexec_cfuture *const *cfs, size_t n, unsigned return_when,
                             long timeout_ms)
{
    if ((n > 0 && !cfs) || timeout_ms < -1 ||
        (return_when != EVEXEC_FIRST_COMPLETED && return_when != EVEXEC_FIRST_EXCEPTION &&
         return_when != EVEXEC_ALL_COMPLETED))
        return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!cfs[i])
            return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (inherited(cfs[i]))
            return EVEXEC_EFORKED; /* as every other call on it */
    struct timespec deadline;
    if (timeout_ms > 0)
        evexec__deadline(&deadline, timeout_ms);
    bool marked = false;
    for (;;) {
        /* Read the word before the states: a completion after this read
         * changes it, and the sleep below then returns at once. */
        unsigned seen = atomic_load_explicit(&many_word, memory_order_acquire);
        int rc = many_holds(cfs, n, return_when);
        if (rc != EINPROGRESS)
            return rc;
        if (timeout_ms == 0)
            return ETIMEDOUT;
        if (!marked) {
            /* Mark, then look again before sleeping: a future that completes
             * after its mark is set bumps the word. */
            for (size_t i = 0; i < n; i++)
                if (!is_done(atomic_load(&cfs[i]->state)))
                    atomic_fetch_or(&cfs[i]->flags, EVEXEC__CF_MANY);
            marked = true;
            continue;
        }
        if (evexec__word_wait(&many_word, seen, timeout_ms < 0 ? NULL : &deadline) ==
            ETIMEDOUT) {
            rc = many_holds(cfs, n, return_when);
            return rc == EINPROGRESS ? ETIMEDOUT : rc;
        }
    }
}
