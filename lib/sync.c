/*
 * sync.c -- the pool's lock and the wait word its workers sleep on.
 *
 * glibc's pthread_mutex_lock + unlock cost about 55 instructions even when
 * uncontended, and the pool takes its lock twice per task (submit, and the
 * worker's pop). This lock is the classic three-state futex mutex: 0 free,
 * 1 held, 2 held with sleepers; the uncontended path is one compare-and-swap
 * to take it and one exchange to give it back (inline, in the internal
 * header). Contended, it spins briefly, then sleeps in the kernel.
 *
 * A wait word is a sequence number a thread can sleep on until it changes
 * (futex FUTEX_WAIT semantics): the waiter reads it under the pool lock,
 * releases the lock and sleeps unless the word moved; the waker bumps it and
 * wakes. Spurious wakeups are allowed; callers re-check their condition.
 *
 * Where there is no futex (not Linux), both fall back to a small table of
 * pthread mutex/condvar pairs chosen by address: correct, only slower.
 * Building with -DEVEXEC_NO_FUTEX selects the fallback on Linux too, so CI
 * runs the whole suite over it.
 */
#include "common.h"

#include <errno.h>
#include <time.h>

#if defined(__linux__) && !defined(EVEXEC_NO_FUTEX)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

static void futex_wait(_Atomic unsigned *word, unsigned expected, const struct timespec *rel)
{
    syscall(SYS_futex, (void *)(uintptr_t)word, FUTEX_WAIT_PRIVATE, expected, rel, NULL, 0);
}

static void futex_wake(_Atomic unsigned *word, int n)
{
    syscall(SYS_futex, (void *)(uintptr_t)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
#define WAIT_STRIPES 16
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
} wait_stripes[WAIT_STRIPES];
static pthread_once_t wait_once = PTHREAD_ONCE_INIT;

static void wait_reset(void)
{
    for (int i = 0; i < WAIT_STRIPES; i++) {
        pthread_mutex_init(&wait_stripes[i].lock, NULL);
        pthread_cond_init(&wait_stripes[i].cond, NULL);
    }
}

static void wait_init(void)
{
    wait_reset();
    /* A child starts with stripes a parent thread may have held or waited
     * on; the parent's pools refuse to work there, so start afresh. */
    pthread_atfork(NULL, NULL, wait_reset);
}

static unsigned wait_stripe(const void *p)
{
    pthread_once(&wait_once, wait_init);
    return ((uintptr_t)p >> 4) % WAIT_STRIPES;
}

static void futex_wait(_Atomic unsigned *word, unsigned expected, const struct timespec *rel)
{
    unsigned i = wait_stripe(word);
    struct timespec abs;
    if (rel) {
        clock_gettime(CLOCK_REALTIME, &abs);
        abs.tv_sec += rel->tv_sec;
        abs.tv_nsec += rel->tv_nsec;
        if (abs.tv_nsec >= 1000000000L) {
            abs.tv_sec++;
            abs.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&wait_stripes[i].lock);
    if (atomic_load(word) == expected) {
        if (rel)
            pthread_cond_timedwait(&wait_stripes[i].cond, &wait_stripes[i].lock, &abs);
        else
            pthread_cond_wait(&wait_stripes[i].cond, &wait_stripes[i].lock);
    }
    pthread_mutex_unlock(&wait_stripes[i].lock);
}

static void futex_wake(_Atomic unsigned *word, int n)
{
    (void)n;
    unsigned i = wait_stripe(word);
    pthread_mutex_lock(&wait_stripes[i].lock);
    pthread_cond_broadcast(&wait_stripes[i].cond);
    pthread_mutex_unlock(&wait_stripes[i].lock);
}
#endif

void evexec__lock_acquire_slow(struct evexec__lock *l)
{
    /* The holder usually leaves within a few hundred cycles. */
    for (int i = 0; i < 100; i++) {
        evexec__cpu_relax();
        unsigned c = 0;
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->state, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    /* Mark "held with sleepers" and sleep until we take it that way. */
    while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
        futex_wait(&l->state, 2, NULL);
}

void evexec__lock_wake(struct evexec__lock *l)
{
    futex_wake(&l->state, 1);
}

int evexec__word_wait(_Atomic unsigned *word, unsigned seen, const struct timespec *deadline)
{
    if (!deadline) {
        futex_wait(word, seen, NULL);
        return 0;
    }
    struct timespec now, rel;
    clock_gettime(CLOCK_MONOTONIC, &now);
    rel.tv_sec = deadline->tv_sec - now.tv_sec;
    rel.tv_nsec = deadline->tv_nsec - now.tv_nsec;
    if (rel.tv_nsec < 0) {
        rel.tv_sec--;
        rel.tv_nsec += 1000000000L;
    }
    if (rel.tv_sec < 0)
        return ETIMEDOUT;
    futex_wait(word, seen, &rel);
    return 0;
}

void evexec__word_wake(_Atomic unsigned *word, bool all)
{
    atomic_fetch_add_explicit(word, 1, memory_order_release);
    futex_wake(word, all ? 0x7fffffff : 1);
}
