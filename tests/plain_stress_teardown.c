/*
 * plain_stress_teardown.c -- evexec_loop_free against outcomes that arrive
 * on worker threads at every moment of the teardown.
 *
 * Each round makes a base and a loop, starts 8-63 tasks of 0-20 us (spinning)
 * on a shared pool of 2, runs the loop once without blocking, and frees the
 * loop while the tasks are queued, running or finishing. The round sweeps
 * the window where a worker completes a task while the loop thread is
 * tearing down. Rounds vary:
 *   - run_in_executor futures, or evexec_wrap_cfuture futures of submitted
 *     cfutures, or both mixed;
 *   - futures released at once, or held across evexec_loop_free and
 *     released after it (by the loop thread, while workers may still be
 *     disposing of their deliveries);
 *   - run_in_executor_ex with an argument the library frees.
 * Checked: no crash, no hang, no sanitizer report; every result a task
 * produced is freed exactly once and every owned argument is freed exactly
 * once, counted after the pool has drained (evexec_pool_shutdown(WAIT)); no
 * done callback runs after evexec_loop_free returned.
 *
 * Bounded by rounds and by time; the seed is printed and read from
 * EVEXEC_STRESS_SEED. This is the program of the outside review that crashed
 * 6 of 6 plain runs before the teardown was reordered.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "evexec.h"
#include "testutil.h"

#define ROUNDS_MAX 3000
#define SECONDS_MAX 8.0
#define HELD_MAX 64

static _Atomic long results_made, results_freed;
static _Atomic long args_made, args_freed;
static _Atomic long late_callbacks;
static _Atomic bool loop_freed;

/* Busy for the number of microseconds in arg, then make a result. */
static int spin_work(void *arg, void **result)
{
    long us = (long)(intptr_t)arg;
    spin_us(us);
    *result = malloc(16);
    atomic_fetch_add(&results_made, 1);
    return 0;
}

static void free_result(void *p)
{
    free(p);
    atomic_fetch_add(&results_freed, 1);
}

struct owned_arg {
    long us;
};

static int owned_work(void *arg, void **result)
{
    struct owned_arg *a = arg;
    return spin_work((void *)(intptr_t)a->us, result);
}

static void free_arg(void *p)
{
    free(p);
    atomic_fetch_add(&args_freed, 1);
}

static void on_done(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    if (atomic_load(&loop_freed))
        atomic_fetch_add(&late_callbacks, 1);
}

enum kind { KIND_RIE, KIND_RIE_EX, KIND_WRAP, KIND_MIXED };

static struct evexec_future *start_one(struct evexec_loop *loop, struct evexec_pool *pool,
                                       enum kind kind)
{
    long us = (long)(rnd() % 21);
    if (kind == KIND_MIXED)
        kind = (enum kind)(rnd() % 3);
    switch (kind) {
    case KIND_RIE:
        return evexec_run_in_executor(loop, pool, spin_work, (void *)(intptr_t)us, free_result);
    case KIND_RIE_EX: {
        struct owned_arg *a = malloc(sizeof(*a));
        a->us = us;
        struct evexec_future *f =
            evexec_run_in_executor_ex(loop, pool, owned_work, a, free_result, free_arg);
        if (f)
            atomic_fetch_add(&args_made, 1);
        else
            free(a);
        return f;
    }
    default: {
        struct evexec_cfuture *cf =
            evexec_pool_submit(pool, spin_work, (void *)(intptr_t)us, free_result);
        if (!cf)
            return NULL;
        struct evexec_future *f = evexec_wrap_cfuture(loop, cf);
        evexec_cfuture_release(cf); /* the wrapper keeps its own reference */
        return f;
    }
    }
}

int main(void)
{
    const char *env = getenv("EVEXEC_STRESS_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    rnd_state = seed;
    printf("1..5\n# seed %" PRIu64 " (EVEXEC_STRESS_SEED replays it)\n", seed);

    struct evexec_pool *pool = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
    if (!pool) {
        printf("Bail out! evexec_pool_new: %s\n", strerror(errno));
        return 1;
    }
    double start = now_s();
    int rounds = 0, failed_starts = 0;
    long started = 0;
    for (; rounds < ROUNDS_MAX && now_s() - start < SECONDS_MAX; rounds++) {
        struct event_base *base = event_base_new();
        struct evexec_loop *loop = evexec_loop_new(base);
        if (!base || !loop) {
            printf("Bail out! loop: %s\n", strerror(errno));
            return 1;
        }
        atomic_store(&loop_freed, false);
        enum kind kind = (enum kind)(rnd() % 4);
        bool hold = rnd() % 2;
        bool with_callbacks = rnd() % 2;
        int n = 8 + (int)(rnd() % 56);
        struct evexec_future *held[HELD_MAX];
        int nheld = 0;
        for (int i = 0; i < n; i++) {
            struct evexec_future *f = start_one(loop, pool, kind);
            if (!f) {
                failed_starts++;
                continue;
            }
            started++;
            if (with_callbacks)
                evexec_future_add_done_callback(f, on_done, NULL);
            if (hold && nheld < HELD_MAX)
                held[nheld++] = f;
            else
                evexec_future_release(f);
        }
        /* Sometimes let part of the work be delivered first. */
        if (rnd() % 2)
            event_base_loop(base, EVLOOP_NONBLOCK);
        evexec_loop_free(loop);
        atomic_store(&loop_freed, true);
        for (int i = 0; i < nheld; i++)
            evexec_future_release(held[i]);
        event_base_free(base);
    }
    /* Every task has ended once the pool has joined its workers; late
     * deliveries are disposed of by the workers before that. */
    int rc = evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    evexec_pool_free(pool);

    tap(rc == 0, "the pool drained after %d rounds, %ld tasks (%.1f s)", rounds, started,
        now_s() - start);
    tap(failed_starts == 0, "every task was accepted (%d refused)", failed_starts);
    tap(atomic_load(&results_made) == atomic_load(&results_freed),
        "every result was freed exactly once (%ld made, %ld freed)", atomic_load(&results_made),
        atomic_load(&results_freed));
    tap(atomic_load(&args_made) == atomic_load(&args_freed),
        "every owned argument was freed exactly once (%ld given, %ld freed)",
        atomic_load(&args_made), atomic_load(&args_freed));
    tap(atomic_load(&late_callbacks) == 0, "no done callback ran after evexec_loop_free (%ld)",
        atomic_load(&late_callbacks));
    return tap_failed ? 1 : 0;
}
