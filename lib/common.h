/*
 * common.h -- what every component of libevexec shares: allocation hooks,
 * clocks, the fork generation, the futex lock and wait word (sync.c), the
 * intrusive list and the spin-with-backoff policy. Internal non-static names
 * start with evexec__.
 *
 * The internal headers follow the layering, so a component can only name
 * what it may use:
 *   common.h    common.c, sync.c                     (everyone)
 *   executor.h  cfuture.c, pool.c,    the executor half: no libevent, no loop
 *               view.c
 *   pool.h      pool.c, view.c        the pool's insides, for its views only
 *   loop.h      loop.c                the loop bridge: a plain scheduler
 *   future.h    future.c              the loop future (uses the loop)
 *   chain.h     chain.c, bridge.c     the only part that knows both halves
 * tests/check-layering.sh checks each object's undefined symbols against
 * this order.
 */
#ifndef EVEXEC_COMMON_H
#define EVEXEC_COMMON_H

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
 * dlopen()ed late, and needs only a few pointers of static TLS). */
#if defined(__GNUC__)
#define EVEXEC__TLS _Thread_local __attribute__((tls_model("initial-exec")))
#define evexec__unlikely(x) __builtin_expect(!!(x), 0)
#else
#define EVEXEC__TLS _Thread_local
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
 * were made in and refuse to work in another one (EVEXEC_EFORKED). Each
 * component that keeps process-wide locks registers its own child handler
 * with evexec__atfork_child(); nothing is held across fork(). */
extern _Atomic unsigned evexec__fork_generation;
void evexec__fork_init(void);
static inline unsigned evexec__fork_gen(void)
{
    return atomic_load_explicit(&evexec__fork_generation, memory_order_relaxed);
}
static inline bool evexec__forked(unsigned gen)
{
    return gen != evexec__fork_gen();
}

/* Absolute CLOCK_MONOTONIC deadline timeout_ms from now (timeout_ms >= 0). */
void evexec__deadline(struct timespec *ts, long timeout_ms);
uint64_t evexec__now_ns(void);
/* How many CPUs this process may use (affinity mask and cgroup CPU quota):
 * spinning on one CPU only steals it from the thread being waited for. */
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
/* Called before every allocation (NULL: none), so a test can hold a thread
 * at an exact point of the library to order a race. */
EVEXEC_EXPORT void evexec__fault_set_alloc_hook(void (*hook)(void));
#endif

/* ---- sync.c ------------------------------------------------------------- */

/* A futex mutex: 0 free, 1 held, 2 held with sleepers. */
struct evexec__lock {
    _Atomic unsigned state;
};
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

/* ---- intrusive doubly linked list --------------------------------------- */

/* A circular list with a sentinel head; a node that is in no list points to
 * itself, so removing it twice is harmless. */
struct evexec__list {
    struct evexec__list *prev, *next;
};

static inline void evexec__list_init(struct evexec__list *l)
{
    l->prev = l->next = l;
}

static inline bool evexec__list_empty(const struct evexec__list *l)
{
    return l->next == l;
}

static inline void evexec__list_push_front(struct evexec__list *head, struct evexec__list *n)
{
    n->prev = head;
    n->next = head->next;
    head->next->prev = n;
    head->next = n;
}

static inline void evexec__list_push_back(struct evexec__list *head, struct evexec__list *n)
{
    n->next = head;
    n->prev = head->prev;
    head->prev->next = n;
    head->prev = n;
}

static inline void evexec__list_remove(struct evexec__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* The first node, or NULL if the list is empty. */
static inline struct evexec__list *evexec__list_first(const struct evexec__list *head)
{
    return head->next == head ? NULL : head->next;
}

#define evexec__list_entry(node, type, member) evexec__container_of(node, type, member)

/* ---- spinning with backoff ---------------------------------------------- */

/* Whoever polls for work before sleeping (an idle worker, the loop at the
 * end of a pass) asks evexec__backoff_ready() first: after a spin that
 * caught nothing the next ones are skipped for a number of turns that doubles
 * each time (up to 1024), so work that comes slowly, or a machine too busy to
 * run the other side, costs almost no CPU, and work that comes fast is soon
 * caught again. Not thread-safe: its owner guards it. */
struct evexec__backoff {
    unsigned skip, backoff;
};

static inline bool evexec__backoff_ready(struct evexec__backoff *b)
{
    if (b->skip > 0) {
        b->skip--;
        return false;
    }
    return true;
}

static inline void evexec__backoff_outcome(struct evexec__backoff *b, bool caught)
{
    if (caught) {
        b->backoff = 0;
        return;
    }
    b->backoff = b->backoff ? b->backoff * 2 : 1;
    if (b->backoff > 1024)
        b->backoff = 1024;
    b->skip = b->backoff;
}

/* Call ready(ctx) until it returns true or spin_ns passed; true if it did.
 * Every 64 polls (a few microseconds) the spinner also yields its CPU: a
 * thread it shares the CPU with -- often the very one it waits for, the loop
 * or the worker about to post -- runs at once instead of after the spin.
 * With nothing else runnable the yield returns at once. */
bool evexec__spin_until(bool (*ready)(const void *ctx), const void *ctx, uint64_t spin_ns);

#endif /* EVEXEC_COMMON_H */
