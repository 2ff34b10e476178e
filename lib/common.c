/*
 * common.c -- what every component needs: error texts, the version, the fork
 * generation, clocks, and the allocation hooks.
 *
 * Owns two pieces of global state: the fork generation (bumped in a child by
 * a pthread_atfork handler, read everywhere with a relaxed load) and, in the
 * fault-injection build only, the failure countdowns the tests set.
 */
#include "common.h"

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

/* Nothing is held across fork(): holding every lock of every component in a
 * prepare handler serialises fork() against all of them and, with 64 stripe
 * locks and more, goes past what ThreadSanitizer can track. Instead objects
 * carry the generation they were made in, refuse to work in another one, and
 * a component with process-wide locks re-initialises them in the child (it is
 * single-threaded there, and no object of the parent's generation will touch
 * what they guarded). */
_Atomic unsigned evexec__fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&evexec__fork_generation, 1, memory_order_relaxed);
}

static void fork_register(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
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

/* The CPU quota of the process's cgroup (v2 "cpu.max": "max 100000" or
 * "QUOTA PERIOD"), rounded up to whole CPUs; 0 if there is none. */
static int cgroup_cpu_quota(void)
{
    char path[512] = "/sys/fs/cgroup";
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[384];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "0::", 3) == 0) { /* the v2 hierarchy */
                line[strcspn(line, "\n")] = '\0';
                snprintf(path, sizeof(path), "/sys/fs/cgroup%s", line + 3);
                break;
            }
        }
        fclose(f);
    }
    size_t len = strlen(path);
    snprintf(path + len, sizeof(path) - len, "/cpu.max");
    f = fopen(path, "r");
    if (!f)
        return 0;
    char quota[32] = "";
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || period <= 0 || strcmp(quota, "max") == 0)
        return 0;
    long q = strtol(quota, NULL, 10);
    if (q <= 0)
        return 0;
    return (int)((q + period - 1) / period);
}

int evexec__cpus_allowed(void)
{
    int cpus = 0;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
#endif
    if (cpus <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cpus = n > 0 ? (int)n : 1;
    }
    int quota = cgroup_cpu_quota();
    return quota > 0 && quota < cpus ? quota : cpus;
}

bool evexec__spin_until(bool (*ready)(const void *ctx), const void *ctx, uint64_t spin_ns)
{
    uint64_t start = evexec__now_ns();
    for (unsigned i = 1;; i++) {
        if (ready(ctx))
            return true;
        evexec__cpu_relax();
        /* Reading the clock costs more than a poll: look every 64 polls,
         * and let whoever shares this CPU run (see common.h). */
        if ((i & 63) == 0) {
            if (evexec__now_ns() - start >= spin_ns)
                return false;
            sched_yield();
        }
    }
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
static void (*_Atomic alloc_hook)(void);

void evexec__fault_set_alloc_hook(void (*hook)(void))
{
    atomic_store(&alloc_hook, hook);
}

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
    void (*hook)(void) = atomic_load(&alloc_hook);
    if (hook && count == &alloc_count)
        hook();
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
