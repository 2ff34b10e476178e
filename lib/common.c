/*
 * common.c -- what every component needs: error texts, the version, the fork
 * generation, clocks, and the allocation hooks.
 *
 * Owns two pieces of global state: the fork generation (bumped in a child by
 * a pthread_atfork handler, read everywhere with a relaxed load) and, in the
 * fault-injection build only, the failure countdowns the tests set.
 */
#include "evexec-internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *evexec_version(void)
{
    return EVEXEC_VERSION_STRING;
}

const char *evexec_strerror(int err)
{
    switch (err) {
    case EVEXEC_EBROKEN:
        return "Pool is broken: a worker's thread_init hook failed";
    case EVEXEC_EFORKED:
        return "Object was created before fork() and is unusable in the child";
    case EVEXEC_ETAKEN:
        return "Result was already taken out of the future";
    case EVEXEC_ECLOSED:
        return "The future's loop was freed";
    case 0:
        return "Success";
    default:
        /* strerror() is not thread-safe for unknown codes in every libc;
         * glibc's strerror returns static strings for known codes. */
        if (err > 0 && err < EVEXEC_ERRNO_BASE)
            return strerror(err);
        return "Unknown libevexec error";
    }
}

/* ---- fork --------------------------------------------------------------- */

_Atomic unsigned evexec__fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_prepare(void)
{
    evexec__loop_atfork_prepare();
    evexec__cfuture_atfork_prepare();
}

static void on_fork_parent(void)
{
    evexec__cfuture_atfork_parent();
    evexec__loop_atfork_parent();
}

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&evexec__fork_generation, 1, memory_order_relaxed);
    evexec__cfuture_atfork_child();
    evexec__loop_atfork_child();
}

static void fork_register(void)
{
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

void evexec__fork_init(void)
{
    pthread_once(&fork_once, fork_register);
}

/* ---- clocks ------------------------------------------------------------- */

void evexec__deadline(struct timespec *ts, long timeout_ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

uint64_t evexec__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int evexec__cpus_allowed(void)
{
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void evexec__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void evexec__misuse(const char *func, const char *what)
{
    fprintf(stderr, "libevexec: %s: %s\n", func, what);
    abort();
}

/* ---- allocation and thread creation ------------------------------------- */

#ifdef EVEXEC_FAULT_INJECTION
static _Atomic long alloc_countdown, thread_countdown;
static _Atomic long alloc_count, thread_count;

void evexec__fault_fail_alloc(long nth)
{
    atomic_store(&alloc_countdown, nth);
}

void evexec__fault_fail_thread(long nth)
{
    atomic_store(&thread_countdown, nth);
}

long evexec__fault_alloc_count(void)
{
    return atomic_load(&alloc_count);
}

long evexec__fault_thread_count(void)
{
    return atomic_load(&thread_count);
}

/* True if this attempt is the one that must fail. */
static bool fault_hit(_Atomic long *countdown, _Atomic long *count)
{
    atomic_fetch_add(count, 1);
    long n = atomic_load(countdown);
    while (n > 0) {
        if (atomic_compare_exchange_weak(countdown, &n, n - 1))
            return n == 1;
    }
    return false;
}
#endif

void *evexec__malloc(size_t size)
{
#ifdef EVEXEC_FAULT_INJECTION
    if (fault_hit(&alloc_countdown, &alloc_count)) {
        errno = ENOMEM;
        return NULL;
    }
#endif
    return malloc(size);
}

void *evexec__calloc(size_t n, size_t size)
{
#ifdef EVEXEC_FAULT_INJECTION
    if (fault_hit(&alloc_countdown, &alloc_count)) {
        errno = ENOMEM;
        return NULL;
    }
#endif
    return calloc(n, size);
}

void evexec__free(void *p)
{
    free(p);
}

int evexec__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
#ifdef EVEXEC_FAULT_INJECTION
    if (fault_hit(&thread_countdown, &thread_count))
        return EAGAIN;
#endif
    return pthread_create(t, NULL, fn, arg);
}
