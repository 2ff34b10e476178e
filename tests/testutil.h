/*
 * testutil.h -- helpers shared by the test programs of both halves: bounded
 * waits (a deadline, a sleep, a gate that holds worker threads), a dispatch
 * of an event_base bounded by a watchdog thread, the loop's wakeup
 * descriptor found and broken from outside, a counting allocator, TAP
 * output, seeded choices and clocks for the plain programs, and the
 * LeakSanitizer check the Criterion suites run after each test.
 *
 * Header only, every function static inline: each test program is one .c
 * file plus this header, so no extra object has to be built per program (the
 * TSan, ASan and plain builds compile each program with its own flags).
 * Nothing here asserts: the helpers report, and the caller (on the main
 * thread) asserts, so the header serves the plain TAP programs as well as
 * the Criterion suites.
 */
#ifndef EVEXEC_TESTUTIL_H
#define EVEXEC_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"

/* RUNNING_ON_VALGRIND: true under valgrind, where tests scale their loops
 * down (memcheck is some fifty times slower). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Upper bound on any wait for another thread: far above what a loaded
 * machine needs, below the Criterion timeouts, so a hang fails a test
 * instead of blocking it. */
#define HANG_BOUND_MS 20000

/* ---- time ---------------------------------------------------------------- */

/* An absolute CLOCK_REALTIME deadline ms from now, for
 * pthread_cond_timedwait. */
static inline void deadline_in(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Sleep ms, resumed after a signal. Only for pacing and polling: no test
 * passes or fails on how long something took. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- gate: holds worker threads until the test opens it ------------------ */

/* Threads that pass the gate count themselves as arrived and block until
 * the test opens it; the test waits for a number of arrivals first, so it
 * knows which tasks are running. Every wait is bounded by HANG_BOUND_MS. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned arrived;
    bool open;
};

/* For a gate with static storage (a program-wide gate). */
#define GATE_INITIALIZER {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false}

static inline void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->arrived = 0;
    g->open = false;
}

static inline void gate_destroy(struct gate *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

/* Worker side: arrive, then block until the gate opens (bounded: a worker
 * is never left hanging by a failed test). */
static inline void gate_pass(struct gate *g)
{
    struct timespec deadline;
    deadline_in(&deadline, HANG_BOUND_MS);
    pthread_mutex_lock(&g->lock);
    g->arrived++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &deadline) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&g->lock);
}

/* Test side: wait until at least n threads arrived; false on the bound. */
static inline bool gate_wait_arrived(struct gate *g, unsigned n)
{
    struct timespec deadline;
    deadline_in(&deadline, HANG_BOUND_MS);
    pthread_mutex_lock(&g->lock);
    while (g->arrived < n)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &deadline) == ETIMEDOUT)
            break;
    bool ok = g->arrived >= n;
    pthread_mutex_unlock(&g->lock);
    return ok;
}

static inline unsigned gate_arrived(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    unsigned n = g->arrived;
    pthread_mutex_unlock(&g->lock);
    return n;
}

static inline void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* ---- a dispatch bounded by a watchdog ------------------------------------ */

/* A thread that, unless stopped first, breaks the loop after its time: a bug
 * that keeps event_base_dispatch running then fails a test instead of
 * hanging it. It breaks the loop through the bridge itself
 * (call_soon_threadsafe), the way a foreign thread is meant to reach it. */
struct watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    atomic_bool fired;
    int seconds;
    struct evexec_loop *loop;
    struct event_base *base;
};

static inline void watchdog_break(void *arg)
{
    struct watchdog *wd = arg;
    event_base_loopbreak(wd->base);
}

static inline void *watchdog_main(void *arg)
{
    struct watchdog *wd = arg;
    struct timespec deadline;
    deadline_in(&deadline, wd->seconds * 1000L);
    pthread_mutex_lock(&wd->lock);
    while (!wd->stop) {
        if (pthread_cond_timedwait(&wd->cond, &wd->lock, &deadline) == ETIMEDOUT) {
            if (!wd->stop) {
                atomic_store(&wd->fired, true);
                evexec_call_soon_threadsafe(wd->loop, watchdog_break, wd);
            }
            break;
        }
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

/* Start a watchdog on loop/base; @return pthread_create's result (0: it
 * runs, and watchdog_stop must follow). */
static inline int watchdog_start(struct watchdog *wd, struct evexec_loop *loop,
                                 struct event_base *base, int seconds)
{
    pthread_mutex_init(&wd->lock, NULL);
    pthread_cond_init(&wd->cond, NULL);
    wd->stop = false;
    atomic_init(&wd->fired, false);
    wd->seconds = seconds;
    wd->loop = loop;
    wd->base = base;
    int rc = pthread_create(&wd->thread, NULL, watchdog_main, wd);
    if (rc != 0) {
        pthread_mutex_destroy(&wd->lock);
        pthread_cond_destroy(&wd->cond);
    }
    return rc;
}

/* Stop and join the watchdog; @return true if it had to break the loop. */
static inline bool watchdog_stop(struct watchdog *wd)
{
    pthread_mutex_lock(&wd->lock);
    wd->stop = true;
    pthread_cond_signal(&wd->cond);
    pthread_mutex_unlock(&wd->lock);
    pthread_join(wd->thread, NULL);
    pthread_mutex_destroy(&wd->lock);
    pthread_cond_destroy(&wd->cond);
    return atomic_load(&wd->fired);
}

/* Dispatch base under a watchdog of the given seconds; @return true if the
 * dispatch ended by itself without error, false if it failed, had to be
 * broken, or the watchdog could not start. */
static inline bool dispatch_bounded(struct event_base *base, struct evexec_loop *loop,
                                    int seconds)
{
    struct watchdog wd;
    if (watchdog_start(&wd, loop, base, seconds) != 0)
        return false;
    int rc = event_base_dispatch(base);
    bool fired = watchdog_stop(&wd);
    return rc != -1 && !fired;
}

/* ---- the bridge suites' fixture (Criterion) ------------------------------ */

/*
 * The suites that need a loop (test_loop, test_future, test_chain, test_work
 * and others) define TESTUTIL_LOOP_FIXTURE before including this header
 * (after <criterion/criterion.h>) to get one event_base with its bridge in the globals base and loop, made and freed by
 * each test, and dispatch(), which runs the loop under a watchdog of
 * WATCHDOG_SECONDS and fails the test if it had to break it. The globals
 * stay out of the other programs, whose own "base" and "loop" they would
 * shadow.
 */
#ifdef TESTUTIL_LOOP_FIXTURE

#define WATCHDOG_SECONDS 20

static struct event_base *base;
static struct evexec_loop *loop;

static inline void make_loop(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    loop = evexec_loop_new(base);
    cr_assert_not_null(loop, "evexec_loop_new: %s", strerror(errno));
}

static inline void free_loop(void)
{
    evexec_loop_free(loop);
    loop = NULL;
    event_base_free(base);
    base = NULL;
}

static inline void dispatch(void)
{
    struct watchdog wd;
    cr_assert_eq(watchdog_start(&wd, loop, base, WATCHDOG_SECONDS), 0);
    int rc = event_base_dispatch(base);
    cr_assert(!watchdog_stop(&wd), "dispatch did not return within %d s", WATCHDOG_SECONDS);
    cr_assert_neq(rc, -1);
}

#endif /* TESTUTIL_LOOP_FIXTURE */

/* ---- pools (Criterion) ----------------------------------------------------- */

/*
 * Suites that make plain pools and check their statistics define
 * TESTUTIL_POOL_HELPERS before including this header (after
 * <criterion/criterion.h>): new_pool, stats_of, and assert_balanced, the
 * invariant every path must keep (each submitted task is completed,
 * cancelled, failed, queued or running).
 */
#ifdef TESTUTIL_POOL_HELPERS

static inline struct evexec_pool *new_pool(unsigned max_workers)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = max_workers;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    cr_assert_not_null(pool, "evexec_pool_new: %s", evexec_strerror(errno));
    return pool;
}

/* The stats, filled with 0xff first so a field left unwritten shows. */
static inline struct evexec_pool_stats stats_of(struct evexec_pool *pool)
{
    struct evexec_pool_stats st;
    memset(&st, 0xff, sizeof(st));
    cr_assert_eq(evexec_pool_get_stats(pool, &st), 0);
    return st;
}

static inline void assert_balanced(const struct evexec_pool_stats *st, const char *when)
{
    cr_assert_eq(st->submitted, st->completed + st->cancelled + st->failed + st->queued +
                                    st->running,
                 "%s: submitted %llu != completed %llu + cancelled %llu + failed %llu + "
                 "queued %zu + running %u", when, (unsigned long long)st->submitted,
                 (unsigned long long)st->completed, (unsigned long long)st->cancelled,
                 (unsigned long long)st->failed, st->queued, st->running);
}

#endif /* TESTUTIL_POOL_HELPERS */

/* ---- a counting allocator ------------------------------------------------ */

/*
 * test_chain and test_work define TESTUTIL_COUNTING_MALLOC before including
 * this header to count allocations: malloc, calloc and realloc of the
 * program, which forward to glibc's own allocator (__libc_malloc and
 * friends) and, being in the executable, are what libevexec's calls bind to.
 * They count into counted_allocs only on threads that set count_this_thread
 * (the loop thread while measuring, pool workers through
 * count_allocs_on_worker as thread_init). TESTUTIL_NO_INTERPOSING says the
 * build cannot replace libc's functions (sanitizers replace them themselves;
 * a libc other than glibc): the allocator is compiled out, and a program
 * interposing anything else checks the same macro. Under valgrind, which
 * replaces the allocator too, nothing is counted (see counting_malloc_works).
 */
#ifdef TESTUTIL_COUNTING_MALLOC

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TESTUTIL_NO_INTERPOSING 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TESTUTIL_NO_INTERPOSING 1
#endif
#endif
#if !defined(__GLIBC__)
#define TESTUTIL_NO_INTERPOSING 1
#endif

static atomic_long counted_allocs;
static __thread bool count_this_thread;

#ifndef TESTUTIL_NO_INTERPOSING
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);

void *malloc(size_t size)
{
    if (count_this_thread)
        atomic_fetch_add_explicit(&counted_allocs, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    if (count_this_thread)
        atomic_fetch_add_explicit(&counted_allocs, 1, memory_order_relaxed);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    if (count_this_thread)
        atomic_fetch_add_explicit(&counted_allocs, 1, memory_order_relaxed);
    return __libc_realloc(p, size);
}

void free(void *p)
{
    __libc_free(p);
}
#endif

/* A pool's thread_init that makes its workers count. */
static inline int count_allocs_on_worker(void *ctx)
{
    (void)ctx;
    count_this_thread = true;
    return 0;
}

/* A pool of one worker, started at once and kept, that counts its
 * allocations; NULL and errno as evexec_pool_new. */
static inline struct evexec_pool *counting_pool_new(void)
{
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    cfg.min_workers = 1;
    cfg.thread_init = count_allocs_on_worker;
    return evexec_pool_new(&cfg);
}

#ifndef TESTUTIL_NO_INTERPOSING
/* Whether the counting allocator is in effect for this process (not under
 * valgrind: ask RUNNING_ON_VALGRIND first): one malloc through a pointer the
 * compiler cannot see through counts exactly once. */
static inline bool counting_malloc_works(void)
{
    count_this_thread = true;
    long before = atomic_load(&counted_allocs);
    void *(*volatile do_malloc)(size_t) = malloc;
    free(do_malloc(32));
    count_this_thread = false;
    return atomic_load(&counted_allocs) - before == 1;
}
#endif

#endif /* TESTUTIL_COUNTING_MALLOC */

/* ---- the loop's wakeup descriptor, found and broken from outside ---------- */

/* Tests that the library copes with its wakeup descriptor closed or broken
 * behind its back need that descriptor: evexec_loop_new makes it (an eventfd,
 * or a pipe with --with-wakeup=pipe) and does not say which it is, so the
 * tests compare the process's descriptors before and after. */
#define TESTUTIL_MAX_FDS 4096

static inline void fds_open(bool *open_now)
{
    memset(open_now, 0, TESTUTIL_MAX_FDS * sizeof(*open_now));
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= 0 && fd < TESTUTIL_MAX_FDS && fd != dirfd(d))
            open_now[fd] = true;
    }
    closedir(d);
}

/* Make a loop on base and find the descriptor it writes to wake itself:
 * the new eventfd, or the write end of the new pipe. *wfd is -1 if none was
 * found (no /proc). */
static inline struct evexec_loop *loop_new_with_wakeup_fd(struct event_base *b, int *wfd)
{
    static bool before[TESTUTIL_MAX_FDS], after[TESTUTIL_MAX_FDS];
    fds_open(before);
    struct evexec_loop *l = evexec_loop_new(b);
    fds_open(after);
    *wfd = -1;
    for (int fd = 0; l && fd < TESTUTIL_MAX_FDS && *wfd < 0; fd++) {
        if (!after[fd] || before[fd])
            continue;
        char path[64], link[128];
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        if (n <= 0)
            continue;
        link[n] = '\0';
        if (strcmp(link, "anon_inode:[eventfd]") == 0 ||
            (strncmp(link, "pipe:", 5) == 0 && (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY))
            *wfd = fd;
    }
    return l;
}

/* Put /dev/null, opened read-only, where wfd was, so writes to wfd fail
 * (EBADF); @return a copy of the real descriptor for wakeup_fd_restore, or -1. */
static inline int wakeup_fd_break(int wfd)
{
    int saved = dup(wfd);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (saved < 0 || null_fd < 0 || dup2(null_fd, wfd) < 0) {
        if (saved >= 0)
            close(saved);
        saved = -1;
    }
    if (null_fd >= 0)
        close(null_fd);
    return saved;
}

/* Put the real descriptor back (the event loop's registration stays valid:
 * the descriptor's file was kept open by the copy). */
static inline void wakeup_fd_restore(int wfd, int saved)
{
    dup2(saved, wfd);
    close(saved);
}

/* ---- seeded choices, clocks and settings for the plain programs ---------- */

/* splitmix64: the next number of the stream whose state is *state. A stress
 * program seeds its streams from one printed seed (EVEXEC_STRESS_SEED
 * replays it), so a run can be repeated choice for choice. */
static inline uint64_t rnd_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline unsigned rnd_below(uint64_t *state, unsigned n)
{
    return (unsigned)(rnd_next(state) % n);
}

/* The program's main stream, for the one thread that makes its choices;
 * main sets rnd_state to the seed. */
static uint64_t rnd_state;

static inline uint64_t rnd(void)
{
    return rnd_next(&rnd_state);
}

/* Seconds on the monotonic clock, for bounding a program's run. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Busy (not asleep) for us microseconds: keeps a worker on its CPU. */
static inline void spin_us(long us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000 < us);
}

/* The positive whole number in the environment variable name, else
 * fallback. */
static inline long env_long(const char *name, long fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == '\0' && n > 0 ? n : fallback;
}

/* ---- TAP for the plain programs ------------------------------------------ */

/* The plain programs (tests/plain_*) print TAP themselves; they print the
 * plan, call tap() once a check, and exit nonzero if tap_failed. */
static int tap_count;
static int tap_failed;

static inline void tap(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void tap(bool ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", ok ? "" : "not ", ++tap_count);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!ok)
        tap_failed++;
}

#include "leakcheck.h"

#endif /* EVEXEC_TESTUTIL_H */
