/*
 * test_debug.c -- builds configured with --enable-debug enforce the
 * threading rules: a loop or loop-future function called from a thread other
 * than the loop's (a pool worker or a foreign pthread) aborts with a message
 * naming the function, and evexec_pool_free from one of the pool's own
 * workers aborts too, as does a failed write to the loop's wakeup
 * descriptor.
 *
 * Two kinds of tests: the `.signal = SIGABRT` ones let the misuse kill the
 * test process itself; the `message_names_*` ones run each misuse in a
 * forked child with stderr on a pipe and check both the signal and that the
 * text names the function. Only built when EVEXEC_DEBUG is on.
 */
#include "config.h"

#include <criterion/criterion.h>

#include "testutil.h" /* leakcheck.h, and the wakeup descriptor helpers */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"

TestSuite(debug, .timeout = 60);

/* What the misusing thread does, by name of the function it calls. */
enum misuse {
    CALL_SOON,
    FUTURE_NEW,
    FUTURE_SET_RESULT,
    FUTURE_SET_ERROR,
    FUTURE_CANCEL,
    FUTURE_DONE,
    FUTURE_RESULT,
    FUTURE_ADD_DONE_CALLBACK,
    RUN_IN_EXECUTOR,
    WRAP_CFUTURE,
    LOOP_FREE,
    LOOP_REF,
    LOOP_GET_STATS,
};

static const char *const misuse_name[] = {
    [CALL_SOON] = "evexec_call_soon",
    [FUTURE_NEW] = "evexec_future_new",
    [FUTURE_SET_RESULT] = "evexec_future_set_result",
    [FUTURE_SET_ERROR] = "evexec_future_set_error",
    [FUTURE_CANCEL] = "evexec_future_cancel",
    [FUTURE_DONE] = "evexec_future_done",
    [FUTURE_RESULT] = "evexec_future_result",
    [FUTURE_ADD_DONE_CALLBACK] = "evexec_future_add_done_callback",
    [RUN_IN_EXECUTOR] = "evexec_run_in_executor",
    [WRAP_CFUTURE] = "evexec_wrap_cfuture",
    [LOOP_FREE] = "evexec_loop_free",
    [LOOP_REF] = "evexec_loop_ref",
    [LOOP_GET_STATS] = "evexec_loop_get_stats",
};
#define NMISUSE (sizeof(misuse_name) / sizeof(misuse_name[0]))

struct scene {
    struct event_base *base;
    struct evexec_loop *loop;
    struct evexec_future *future;   /* pending plain future of the loop */
    struct evexec_pool *pool;
    struct evexec_cfuture *cf;      /* finished task of the pool */
    enum misuse what;
};

static void noop_soon(void *arg) { (void)arg; }
static void noop_done(struct evexec_future *f, void *arg) { (void)f; (void)arg; }
static int work_nothing(void *arg, void **result) { (void)arg; (void)result; return 0; }

/* Perform the misuse; only returns if the library did not abort. */
static void misuse_once(struct scene *s)
{
    struct evexec_loop_stats st;
    void *res;
    switch (s->what) {
    case CALL_SOON: (void)evexec_call_soon(s->loop, noop_soon, NULL); break;
    case FUTURE_NEW: evexec_future_release(evexec_future_new(s->loop)); break;
    case FUTURE_SET_RESULT: (void)evexec_future_set_result(s->future, NULL, NULL); break;
    case FUTURE_SET_ERROR: (void)evexec_future_set_error(s->future, EIO); break;
    case FUTURE_CANCEL: (void)evexec_future_cancel(s->future); break;
    case FUTURE_DONE: (void)evexec_future_done(s->future); break;
    case FUTURE_RESULT: (void)evexec_future_result(s->future, &res); break;
    case FUTURE_ADD_DONE_CALLBACK:
        (void)evexec_future_add_done_callback(s->future, noop_done, NULL);
        break;
    case RUN_IN_EXECUTOR:
        evexec_future_release(evexec_run_in_executor(s->loop, s->pool, work_nothing, NULL, NULL));
        break;
    case WRAP_CFUTURE: evexec_future_release(evexec_wrap_cfuture(s->loop, s->cf)); break;
    case LOOP_FREE: evexec_loop_free(s->loop); break;
    case LOOP_REF: evexec_loop_ref(s->loop); break;
    case LOOP_GET_STATS: (void)evexec_loop_get_stats(s->loop, &st); break;
    }
}

static void *foreign_thread(void *arg)
{
    misuse_once(arg);
    return NULL;
}

static int work_misuse(void *arg, void **result)
{
    (void)result;
    misuse_once(arg);
    return 0;
}

static void scene_up(struct scene *s, enum misuse what)
{
    s->what = what;
    s->base = event_base_new();
    cr_assert_not_null(s->base);
    s->loop = evexec_loop_new(s->base);
    cr_assert_not_null(s->loop);
    s->future = evexec_future_new(s->loop);
    cr_assert_not_null(s->future);
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 1;
    s->pool = evexec_pool_new(&cfg);
    cr_assert_not_null(s->pool);
    s->cf = evexec_pool_submit(s->pool, work_nothing, NULL, NULL);
    cr_assert_not_null(s->cf);
    cr_assert_eq(evexec_cfuture_wait(s->cf, 20000), 0);
}

/* Only reached if a misuse did not abort (the test then fails anyway). */
static void scene_down(struct scene *s)
{
    evexec_cfuture_release(s->cf);
    evexec_pool_free(s->pool);
    evexec_future_release(s->future);
    evexec_loop_free(s->loop);
    event_base_free(s->base);
}

/* Misuse from a foreign pthread; the process dies of SIGABRT before join
 * returns. */
static void misuse_from_foreign_thread(enum misuse what)
{
    static struct scene s;
    scene_up(&s, what);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, foreign_thread, &s), 0);
    pthread_join(t, NULL);
    scene_down(&s);
}

/* Misuse from a worker of the pool; the process dies before the wait ends. */
static void misuse_from_worker(enum misuse what)
{
    static struct scene s;
    scene_up(&s, what);
    struct evexec_cfuture *cf = evexec_pool_submit(s.pool, work_misuse, &s, NULL);
    cr_assert_not_null(cf);
    (void)evexec_cfuture_wait(cf, 30000);
    evexec_cfuture_release(cf);
    scene_down(&s);
}

Test(debug, call_soon_from_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(CALL_SOON);
}

Test(debug, future_set_result_from_worker_aborts, .signal = SIGABRT)
{
    misuse_from_worker(FUTURE_SET_RESULT);
}

Test(debug, future_new_from_worker_aborts, .signal = SIGABRT)
{
    misuse_from_worker(FUTURE_NEW);
}

Test(debug, future_cancel_from_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(FUTURE_CANCEL);
}

Test(debug, run_in_executor_from_worker_aborts, .signal = SIGABRT)
{
    misuse_from_worker(RUN_IN_EXECUTOR);
}

Test(debug, loop_free_from_foreign_thread_aborts, .signal = SIGABRT)
{
    misuse_from_foreign_thread(LOOP_FREE);
}

Test(debug, future_add_done_callback_from_worker_aborts, .signal = SIGABRT)
{
    misuse_from_worker(FUTURE_ADD_DONE_CALLBACK);
}

static int work_free_own_pool(void *arg, void **result)
{
    (void)result;
    evexec_pool_free(arg);
    return 0;
}

Test(debug, pool_free_from_its_own_worker_aborts, .signal = SIGABRT)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    cr_assert_not_null(pool);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, work_free_own_pool, pool, NULL);
    cr_assert_not_null(cf);
    (void)evexec_cfuture_wait(cf, 30000);
}

/* The rules allow these from any thread: no abort, and they work. */
static int posted_runs;

static void unref_on_loop(void *arg)
{
    struct scene *s = arg;
    posted_runs++;
    evexec_loop_unref(s->loop);
}

static void *post_from_foreign(void *arg)
{
    struct scene *s = arg;
    intptr_t rc = evexec_call_soon_threadsafe(s->loop, unref_on_loop, s);
    if (rc == 0)
        rc = evexec_cfuture_state(s->cf) == EVEXEC_FINISHED ? 0 : -1;
    return (void *)rc;
}

Test(debug, call_soon_threadsafe_and_cfuture_calls_from_any_thread_do_not_abort)
{
    struct scene s;
    scene_up(&s, CALL_SOON);
    evexec_loop_ref(s.loop);
    pthread_t t;
    void *rc = (void *)1;
    cr_assert_eq(pthread_create(&t, NULL, post_from_foreign, &s), 0);
    pthread_join(t, &rc);
    cr_assert_eq((intptr_t)rc, 0);
    cr_assert_neq(event_base_dispatch(s.base), -1);
    cr_assert_eq(posted_runs, 1);
    scene_down(&s);
}

/* ---- the message names the function ------------------------------------- */

/* Run one misuse in a forked child (from a foreign thread, or a worker),
 * with its stderr on a pipe. Returns the signal that ended it (0 if it
 * exited) and the text in buf. */
static int run_in_child(enum misuse what, bool from_worker, char *buf, size_t size)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        struct scene s;
        s.what = what;
        s.base = event_base_new();
        s.loop = s.base ? evexec_loop_new(s.base) : NULL;
        s.future = s.loop ? evexec_future_new(s.loop) : NULL;
        struct evexec_pool_config cfg = {0};
        cfg.max_workers = 1;
        s.pool = evexec_pool_new(&cfg);
        s.cf = s.pool ? evexec_pool_submit(s.pool, work_nothing, NULL, NULL) : NULL;
        if (!s.future || !s.cf || evexec_cfuture_wait(s.cf, 20000) != 0)
            _exit(2);
        if (from_worker) {
            struct evexec_cfuture *cf = evexec_pool_submit(s.pool, work_misuse, &s, NULL);
            if (cf)
                (void)evexec_cfuture_wait(cf, 20000);
        } else {
            pthread_t t;
            if (pthread_create(&t, NULL, foreign_thread, &s) == 0)
                pthread_join(t, NULL);
        }
        _exit(0); /* no abort: the parent reports it */
    }
    close(fds[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fds[0], buf + len, size - 1 - len);
        if (n > 0 && len + (size_t)n < size - 1) {
            len += (size_t)n;
            continue;
        }
        if (n > 0)
            len += (size_t)n;
        if (n < 0 && errno == EINTR)
            continue;
        break;
    }
    buf[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFSIGNALED(status) ? WTERMSIG(status) : 0;
}

Test(debug, message_names_each_loop_function_called_from_a_foreign_thread)
{
    for (size_t i = 0; i < NMISUSE; i++) {
        char text[4096];
        int sig = run_in_child((enum misuse)i, false, text, sizeof(text));
        cr_expect_eq(sig, SIGABRT, "%s from a foreign thread: signal %d", misuse_name[i], sig);
        /* "libevexec: <function>: ..." -- the function itself, not a prefix
         * of a longer name. */
        char needle[128];
        snprintf(needle, sizeof(needle), "%s:", misuse_name[i]);
        cr_expect_not_null(strstr(text, needle), "%s: stderr was \"%s\"", misuse_name[i], text);
    }
}

Test(debug, message_names_each_loop_function_called_from_a_worker)
{
    for (size_t i = 0; i < NMISUSE; i++) {
        char text[4096];
        int sig = run_in_child((enum misuse)i, true, text, sizeof(text));
        cr_expect_eq(sig, SIGABRT, "%s from a worker: signal %d", misuse_name[i], sig);
        char needle[128];
        snprintf(needle, sizeof(needle), "%s:", misuse_name[i]);
        cr_expect_not_null(strstr(text, needle), "%s: stderr was \"%s\"", misuse_name[i], text);
    }
}

/* ---- a failed wakeup write aborts --------------------------------------- */

static struct evexec_loop *wake_loop;

static void *post_to_wake_loop(void *arg)
{
    (void)arg;
    (void)evexec_call_soon_threadsafe(wake_loop, noop_soon, NULL);
    return NULL;
}

Test(debug, failed_wakeup_write_aborts_with_a_message)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        struct event_base *b = event_base_new();
        int wfd = -1;
        wake_loop = b ? loop_new_with_wakeup_fd(b, &wfd) : NULL;
        if (!wake_loop || wfd < 0 || wakeup_fd_break(wfd) < 0)
            _exit(2);
        pthread_t t;
        if (pthread_create(&t, NULL, post_to_wake_loop, NULL) == 0)
            pthread_join(t, NULL);
        _exit(0); /* no abort: the parent reports it */
    }
    close(fds[1]);
    char text[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(text) - 1 &&
           ((n = read(fds[0], text + len, sizeof(text) - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    text[len] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    cr_assert(!WIFEXITED(status) || WEXITSTATUS(status) != 2, "the child could not break its wakeup");
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "a failed wakeup write did not abort (status %#x): \"%s\"", status, text);
    cr_assert_not_null(strstr(text, "wakeup descriptor"), "stderr was \"%s\"", text);
}
