/*
 * plain_stress_default_pool.c -- the loop's default pool torn down while its
 * work is in flight: evexec_loop_shutdown_default_pool (its helper thread
 * for the loop's own pool, its poll timer for a given one) and
 * evexec_loop_free, against outcomes that workers deliver at every moment.
 *
 * Each round makes a base and a loop and picks the default pool:
 *   - the loop's own (made on first use), sometimes with a view made on it;
 *   - a pool of its own, given with evexec_loop_set_default_pool;
 *   - a view (1 or 2 running) of a pool shared by every round, given the
 *     same way.
 * It starts 4-39 run_in_executor(_ex) tasks of 0-40 us on the default pool
 * (or on the round's view of it), some watched by evexec_wait_for with a
 * timeout of 0-2 ms or by an evexec_gather, and then, at random:
 *   - shuts the default pool down (timeout -1, 0, 1 or 5 ms) and runs the
 *     loop until it is dry;
 *   - shuts it down, runs a pass or two and frees the loop in flight;
 *   - frees the loop in flight without a shutdown.
 * Futures are released at once or held across evexec_loop_free.
 *
 * Checked: when the shutdown future finishes without error, every task of
 * the default pool has been delivered (a view given as the default pool
 * used to finish its shutdown at once); no done callback runs after
 * evexec_loop_free returned; every result and every owned argument is freed
 * exactly once, counted once the helpers and orphaned workers are gone
 * (bounded wait); no crash, hang or sanitizer report.
 *
 * Bounded by rounds and by time; the seed is printed and read from
 * EVEXEC_STRESS_SEED.
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

#define ROUNDS_MAX 1500
#define SECONDS_MAX 8.0
#define TASKS_MAX 40
#define HELD_MAX (2 * TASKS_MAX + 2)

static _Atomic long results_made, results_freed;
static _Atomic long args_made, args_freed;
static long late_callbacks, early_shutdowns, dry_failures;
static long ended_ok, ended_timedout, ended_in_flight;
static bool loop_freed;

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

static int owned_work(void *arg, void **result)
{
    return spin_work((void *)(intptr_t)*(long *)arg, result);
}

static void free_arg(void *p)
{
    free(p);
    atomic_fetch_add(&args_freed, 1);
}

/* The round's tasks on the default pool, for the shutdown's callback. */
static struct evexec_future *tasks[TASKS_MAX];
static int ntasks;

static void on_done(struct evexec_future *f, void *arg)
{
    (void)f;
    (void)arg;
    if (loop_freed)
        late_callbacks++;
}

static void on_shutdown(struct evexec_future *f, void *arg)
{
    (void)arg;
    on_done(f, NULL);
    int rc = evexec_future_result(f, NULL);
    if (rc == ETIMEDOUT) {
        ended_timedout++;
        return;
    }
    ended_ok++;
    for (int i = 0; i < ntasks; i++)
        if (tasks[i] && !evexec_future_done(tasks[i]))
            early_shutdowns++;
}

enum choice { OWN, OWN_WITH_VIEW, GIVEN, GIVEN_VIEW, NCHOICES };

static struct evexec_future *start_task(struct evexec_loop *loop, struct evexec_pool *pool)
{
    long us = (long)(rnd() % 41);
    if (rnd() % 3)
        return evexec_run_in_executor(loop, pool, spin_work, (void *)(intptr_t)us, free_result);
    long *a = malloc(sizeof(*a));
    *a = us;
    struct evexec_future *f =
        evexec_run_in_executor_ex(loop, pool, owned_work, a, free_result, free_arg);
    if (f)
        atomic_fetch_add(&args_made, 1);
    else
        free(a);
    return f;
}

static void round_once(struct evexec_pool *shared)
{
    struct event_base *base = event_base_new();
    struct evexec_loop *loop = base ? evexec_loop_new(base) : NULL;
    if (!loop) {
        printf("Bail out! loop: %s\n", strerror(errno));
        exit(1);
    }
    loop_freed = false;
    enum choice choice = (enum choice)(rnd() % NCHOICES);
    /* The round's own, freed at its end: a given pool is shut down with
     * the default pool, so the shared one is only ever a view's parent. */
    struct evexec_pool *view = NULL, *given = NULL;
    if (choice == GIVEN || choice == GIVEN_VIEW) {
        if (choice == GIVEN_VIEW)
            given = view = evexec_pool_new_limited(shared, 1 + (unsigned)(rnd() % 2));
        else
            given = evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
        if (!given || evexec_loop_set_default_pool(loop, given) != 0) {
            printf("Bail out! set_default_pool\n");
            exit(1);
        }
    } else if (choice == OWN_WITH_VIEW) {
        view = evexec_pool_new_limited(evexec_loop_default_pool(loop), 1);
    }
    struct evexec_future *held[HELD_MAX];
    int nheld = 0;
    ntasks = 4 + (int)(rnd() % (TASKS_MAX - 4));
    for (int i = 0; i < ntasks; i++) {
        /* The own pool's view is no default pool: the shutdown does not
         * wait for it. */
        bool on_view = choice == OWN_WITH_VIEW && rnd() % 2;
        struct evexec_future *f = start_task(loop, on_view ? view : NULL);
        tasks[i] = on_view ? NULL : f;
        if (!f)
            continue;
        evexec_future_add_done_callback(f, on_done, NULL);
        if (rnd() % 4 == 0) {
            struct evexec_future *w = evexec_wait_for(f, (long)(rnd() % 3));
            if (w) {
                evexec_future_add_done_callback(w, on_done, NULL);
                held[nheld++] = w;
            }
        }
        held[nheld++] = f; /* tasks[] reads it: released at the round's end */
    }
    if (nheld > 1 && rnd() % 3 == 0) {
        struct evexec_future *g = evexec_gather(loop, held, (size_t)nheld);
        if (g) {
            evexec_future_add_done_callback(g, on_done, NULL);
            evexec_future_release(g);
        }
    }
    int ending = (int)(rnd() % 3);
    struct evexec_future *sd = NULL;
    if (ending < 2) {
        static const long timeouts[] = {-1, 0, 1, 5};
        sd = evexec_loop_shutdown_default_pool(loop, timeouts[rnd() % 4]);
        if (sd)
            evexec_future_add_done_callback(sd, on_shutdown, NULL);
    }
    if (ending == 0 && sd) {
        if (!dispatch_bounded(base, loop, 20))
            dry_failures++;
    } else {
        ended_in_flight++;
        for (int passes = (int)(rnd() % 3); passes > 0; passes--)
            event_base_loop(base, EVLOOP_NONBLOCK);
    }
    evexec_loop_free(loop);
    loop_freed = true;
    for (int i = 0; i < nheld; i++)
        evexec_future_release(held[i]);
    if (sd)
        evexec_future_release(sd);
    evexec_pool_free(view);
    if (given != view)
        evexec_pool_free(given);
    event_base_free(base);
}

int main(void)
{
    const char *env = getenv("EVEXEC_STRESS_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    rnd_state = seed;
    printf("1..4\n# seed %" PRIu64 " (EVEXEC_STRESS_SEED replays it)\n", seed);

    struct evexec_pool *shared =
        evexec_pool_new(&(struct evexec_pool_config){.max_workers = 2});
    if (!shared) {
        printf("Bail out! evexec_pool_new: %s\n", strerror(errno));
        return 1;
    }
    double start = now_s();
    int rounds = 0;
    for (; rounds < ROUNDS_MAX && now_s() - start < SECONDS_MAX; rounds++)
        round_once(shared);
    evexec_pool_free(shared);
    /* The loops' own pools are freed by their last workers or by the
     * shutdown helpers, which nobody joins: wait for their last frees. */
    for (double t0 = now_s(); now_s() - t0 < HANG_BOUND_MS / 1000.0;) {
        if (atomic_load(&results_freed) == atomic_load(&results_made) &&
            atomic_load(&args_freed) == atomic_load(&args_made))
            break;
        sleep_ms(1);
    }
    printf("# %d rounds; shutdowns: %ld finished, %ld timed out, %ld rounds freed in flight\n",
           rounds, ended_ok, ended_timedout, ended_in_flight);
    tap(early_shutdowns == 0 && dry_failures == 0,
        "a finished shutdown had every task delivered (%ld early, %ld loops not dry)",
        early_shutdowns, dry_failures);
    tap(late_callbacks == 0, "no done callback after evexec_loop_free (%ld)", late_callbacks);
    tap(atomic_load(&results_freed) == atomic_load(&results_made),
        "every result freed once (%ld made, %ld freed)", atomic_load(&results_made),
        atomic_load(&results_freed));
    tap(atomic_load(&args_freed) == atomic_load(&args_made),
        "every owned argument freed once (%ld made, %ld freed)", atomic_load(&args_made),
        atomic_load(&args_freed));
    return tap_failed ? 1 : 0;
}
