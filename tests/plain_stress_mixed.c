/*
 * plain_stress_mixed.c -- a bounded, seeded stress of everything at once,
 * written as a plain TAP program so that ThreadSanitizer can run it (the
 * Criterion runner cannot run under TSan).
 *
 * Phase 1 (mixed, time- and count-bounded): four foreign threads submit to
 * a pool with evexec_pool_submit, add cfuture done callbacks, cancel, wait,
 * take results, release, post with evexec_call_soon_threadsafe, and hand
 * cfutures to the loop; the loop thread, on a 1 ms timer, runs work with
 * evexec_run_in_executor (own pool and default pool), wraps the handed-over
 * cfutures with evexec_wrap_cfuture, cancels and releases loop futures.
 * Phase 2 (quiesce): the foreign threads are joined and the loop runs until
 * every loop future of phase 1 is done and every posted callback ran.
 * Phase 3 (teardown in flight): the loop starts slow work on both pools,
 * cancels some, shuts the own pool down with CANCEL_PENDING and frees the
 * loop from inside the timer callback while that work is running or queued.
 *
 * Checked at the end, per task id: every done callback ran exactly once
 * (loop futures of phase 1, every cfuture callback) and none ran after
 * evexec_loop_free; every posted callback ran exactly once; every result
 * was freed exactly once; no task ran after a cancel returned true (or after
 * a wrapped cfuture was seen cancelled); no task ran twice; results matched
 * their task; the pool's counts balance.
 *
 * EVEXEC_STRESS_SEED fixes the seed (else the time; printed either way),
 * EVEXEC_STRESS_SECONDS the length of phase 1 (default 8). The whole run is
 * bounded: phase 1 by time and counts, phases 2 and 3 by deadlines.
 */
#include "config.h"

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
#include <unistd.h>

#include <event2/event.h>

#include "evexec.h"
#include "testutil.h"

#define NFOREIGN 4
#define MAX_IDS (1u << 19)
#define FOREIGN_MAX_OPS 200000
#define LOOP_MAX_TICKS 40000
#define LOOP_OPS_PER_TICK 12
#define MAX_LIVE 2048
#define TEARDOWN_TASKS 48

/* ---- per-id records ----------------------------------------------------- */

typedef _Atomic unsigned char counter8;

static counter8 ran[MAX_IDS];          /* the task started */
static counter8 made[MAX_IDS];         /* it produced a result */
static counter8 freed[MAX_IDS];        /* that result was freed */
static counter8 cancel_won[MAX_IDS];   /* a cancel returned true / cf seen cancelled */
static counter8 cf_cb_expected[MAX_IDS], cf_cb_runs[MAX_IDS];
static counter8 f_cb_expected[MAX_IDS], f_cb_runs[MAX_IDS];
static counter8 posted[MAX_IDS], post_runs[MAX_IDS];
static counter8 phase1_future[MAX_IDS]; /* loop future made in phase 1 */

static atomic_uint next_id = 1;
static atomic_uint tasks_started, tasks_finished;
static atomic_uint wrong_results, unexpected_errors;

static unsigned new_id(void)
{
    unsigned id = atomic_fetch_add(&next_id, 1);
    return id < MAX_IDS ? id : 0;
}

static void bump(counter8 *c)
{
    /* Saturate instead of wrapping: anything above 1 is already wrong. */
    unsigned char v = atomic_load(c);
    while (v < 200 && !atomic_compare_exchange_weak(c, &v, (unsigned char)(v + 1)))
        ;
}

/* ---- random ------------------------------------------------------------- */

static uint64_t seed;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* ---- the task ----------------------------------------------------------- */

struct result {
    unsigned id;
};

static void result_free(void *p)
{
    struct result *r = p;
    if (r->id < MAX_IDS)
        bump(&freed[r->id]);
    free(r);
}

static struct result *make_result(unsigned id)
{
    struct result *r = malloc(sizeof(*r));
    if (!r)
        abort();
    r->id = id;
    bump(&made[id]);
    return r;
}

static atomic_bool slow_tasks; /* phase 3: every task sleeps a little */

/* Behaviour depends on a hash of the id and the seed, so a seed replays. */
static int work(void *arg, void **result)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    atomic_fetch_add(&tasks_started, 1);
    bump(&ran[id]);
    uint64_t h = mix(seed ^ id);
    int rc = 0;
    if (atomic_load(&slow_tasks)) {
        sleep_us(500 + (long)(h % 2500));
    } else if (h % 64 == 0) {
        sleep_us(200 + (long)(h % 800));
    } else if (h % 16 == 1) {
        /* Cooperative: poll for a cancel for up to ~300 us. */
        for (int i = 0; i < 30; i++) {
            if (evexec_cancel_requested()) {
                rc = ECANCELED;
                break;
            }
            sleep_us(10);
        }
    } else {
        for (volatile unsigned i = 0; i < (unsigned)(h % 2000); i++)
            ;
    }
    if (rc == 0 && h % 32 == 2) {
        rc = EIO;                                  /* failure, no result */
    } else if (rc == 0 && h % 64 == 3) {
        rc = EIO;                                  /* failure with a result: */
        *result = make_result(id);                 /* the library frees it */
    } else if (rc == 0) {
        *result = make_result(id);
    }
    atomic_fetch_add(&tasks_finished, 1);
    return rc;
}

static bool expected_task_error(int err)
{
    return err == 0 || err == EIO || err == ECANCELED;
}

/* ---- shared state ------------------------------------------------------- */

static struct event_base *base;
static struct evexec_loop *loop;
static struct evexec_pool *pool;
static struct event *tick_ev;
static atomic_bool stop_foreign;
static bool loop_freed;              /* loop thread only */
static unsigned after_free_callbacks;
static double phase1_end, phase_deadline;
static int phase = 1;
static uint64_t loop_rng;
static unsigned ticks;
static bool quiesced_ok;
static unsigned f_cb_missing_at_quiesce, posts_missing_at_quiesce;

struct live {
    struct evexec_future *f;
    unsigned id;
};
static struct live live[MAX_LIVE];
static unsigned nlive;
static struct live teardown_futures[TEARDOWN_TASKS];
static unsigned nteardown;

/* ---- callbacks ---------------------------------------------------------- */

static void cf_done(struct evexec_cfuture *cf, void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    bump(&cf_cb_runs[id]);
    int st = evexec_cfuture_state(cf);
    if (st != EVEXEC_FINISHED && st != EVEXEC_CANCELLED)
        atomic_fetch_add(&unexpected_errors, 1);
}

static void f_done(struct evexec_future *f, void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    if (loop_freed)
        after_free_callbacks++;
    bump(&f_cb_runs[id]);
    if (!evexec_future_done(f)) {
        atomic_fetch_add(&unexpected_errors, 1);
        return;
    }
    void *res = NULL;
    int rc = evexec_future_result(f, &res);
    if (rc == 0) {
        if (!res || ((struct result *)res)->id != id)
            atomic_fetch_add(&wrong_results, 1);
    } else if (!expected_task_error(rc) && rc != EVEXEC_ETAKEN) {
        atomic_fetch_add(&unexpected_errors, 1);
    }
}

static void post_run(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    if (loop_freed)
        after_free_callbacks++;
    bump(&post_runs[id]);
}

/* A cfuture handed to the loop by a foreign thread (which retained it). */
struct handoff {
    struct evexec_cfuture *cf;
    unsigned id;
};

static void live_add(struct evexec_future *f, unsigned id)
{
    if (nlive < MAX_LIVE) {
        live[nlive].f = f;
        live[nlive].id = id;
        nlive++;
    } else {
        evexec_future_release(f);
    }
}

static void wrap_on_loop(void *arg)
{
    struct handoff *h = arg;
    if (loop_freed)
        after_free_callbacks++;
    bump(&post_runs[h->id]);
    struct evexec_future *f = evexec_wrap_cfuture(loop, h->cf);
    if (!f) {
        atomic_fetch_add(&unexpected_errors, 1);
    } else {
        if (evexec_future_add_done_callback(f, f_done, (void *)(uintptr_t)h->id) == 0) {
            bump(&f_cb_expected[h->id]);
            bump(&phase1_future[h->id]);
        }
        if (xorshift(&loop_rng) % 4 == 0) {
            (void)evexec_future_cancel(f);
            if (evexec_cfuture_state(h->cf) == EVEXEC_CANCELLED)
                bump(&cancel_won[h->id]);
        }
        live_add(f, h->id);
    }
    evexec_cfuture_release(h->cf);
    free(h);
}

/* ---- foreign threads ---------------------------------------------------- */

struct foreign {
    pthread_t thread;
    uint64_t rng;
    unsigned ops;
    struct evexec_cfuture *ring[8];
    unsigned ring_ids[8];
};

static void foreign_release_slot(struct foreign *t, unsigned slot, bool cancel)
{
    struct evexec_cfuture *cf = t->ring[slot];
    if (!cf)
        return;
    if (cancel && evexec_cfuture_cancel(cf))
        bump(&cancel_won[t->ring_ids[slot]]);
    evexec_cfuture_release(cf);
    t->ring[slot] = NULL;
}

static void *foreign_main(void *arg)
{
    struct foreign *t = arg;
    while (!atomic_load(&stop_foreign) && t->ops < FOREIGN_MAX_OPS) {
        t->ops++;
        unsigned r = (unsigned)(xorshift(&t->rng) % 100);
        if (r < 55) {
            unsigned id = new_id();
            if (!id)
                break;
            struct evexec_cfuture *cf =
                evexec_pool_submit(pool, work, (void *)(uintptr_t)id, result_free);
            if (!cf) {
                atomic_fetch_add(&unexpected_errors, 1);
                continue;
            }
            unsigned how = (unsigned)(xorshift(&t->rng) % 10);
            if (how < 3 && evexec_cfuture_add_done_callback(cf, cf_done, (void *)(uintptr_t)id) == 0)
                bump(&cf_cb_expected[id]);
            if (how == 3 || how == 4) {
                if (evexec_cfuture_cancel(cf))
                    bump(&cancel_won[id]);
            } else if (how == 5) {
                void *res = NULL;
                int rc = evexec_cfuture_take_result(cf, (long)(xorshift(&t->rng) % 3), &res);
                if (rc == 0)
                    result_free(res); /* ours now */
                else if (!expected_task_error(rc) && rc != ETIMEDOUT)
                    atomic_fetch_add(&unexpected_errors, 1);
            } else if (how == 6) {
                void *res = NULL;
                int rc = evexec_cfuture_result(cf, 2, &res);
                if (rc == 0 && (!res || ((struct result *)res)->id != id))
                    atomic_fetch_add(&wrong_results, 1);
            } else if (how == 7) {
                /* Hand it to the loop, which wraps it. */
                struct handoff *h = malloc(sizeof(*h));
                evexec_cfuture_retain(cf);
                h->cf = cf;
                h->id = id;
                bump(&posted[id]);
                if (evexec_call_soon_threadsafe(loop, wrap_on_loop, h) != 0) {
                    atomic_fetch_add(&unexpected_errors, 1);
                    evexec_cfuture_release(cf);
                    free(h);
                }
            }
            /* Keep some in a ring, released (maybe cancelled) later. */
            if (how >= 8) {
                unsigned slot = (unsigned)(xorshift(&t->rng) % 8);
                foreign_release_slot(t, slot, xorshift(&t->rng) % 2);
                t->ring[slot] = cf;
                t->ring_ids[slot] = id;
            } else {
                evexec_cfuture_release(cf);
            }
        } else if (r < 85) {
            unsigned id = new_id();
            if (!id)
                break;
            bump(&posted[id]);
            if (evexec_call_soon_threadsafe(loop, post_run, (void *)(uintptr_t)id) != 0)
                atomic_fetch_add(&unexpected_errors, 1);
        } else {
            unsigned slot = (unsigned)(xorshift(&t->rng) % 8);
            foreign_release_slot(t, slot, xorshift(&t->rng) % 2);
        }
    }
    for (unsigned i = 0; i < 8; i++)
        foreign_release_slot(t, i, false);
    return NULL;
}

/* ---- the loop ----------------------------------------------------------- */

static void live_remove(unsigned i)
{
    live[i] = live[--nlive];
}

static void loop_ops(void)
{
    for (int k = 0; k < LOOP_OPS_PER_TICK; k++) {
        unsigned r = (unsigned)(xorshift(&loop_rng) % 100);
        if (r < 40) {
            unsigned id = new_id();
            if (!id || nlive >= MAX_LIVE)
                return;
            struct evexec_pool *p = r < 28 ? pool : NULL;
            struct evexec_future *f =
                evexec_run_in_executor(loop, p, work, (void *)(uintptr_t)id, result_free);
            if (!f) {
                atomic_fetch_add(&unexpected_errors, 1);
                continue;
            }
            if (evexec_future_add_done_callback(f, f_done, (void *)(uintptr_t)id) == 0) {
                bump(&f_cb_expected[id]);
                bump(&phase1_future[id]);
            }
            live_add(f, id);
        } else if (r < 60 && nlive) {
            unsigned i = (unsigned)(xorshift(&loop_rng) % nlive);
            (void)evexec_future_cancel(live[i].f);
        } else if (r < 85 && nlive) {
            unsigned i = (unsigned)(xorshift(&loop_rng) % nlive);
            if (evexec_future_done(live[i].f)) {
                evexec_future_release(live[i].f);
                live_remove(i);
            }
        } else if (nlive) {
            /* Release a possibly pending one: that never cancels it. */
            unsigned i = (unsigned)(xorshift(&loop_rng) % nlive);
            evexec_future_release(live[i].f);
            live_remove(i);
        }
    }
}

static unsigned count_missing(counter8 *expected, counter8 *runs)
{
    unsigned missing = 0;
    unsigned top = atomic_load(&next_id);
    if (top > MAX_IDS)
        top = MAX_IDS;
    for (unsigned id = 1; id < top; id++)
        if (atomic_load(&expected[id]) != atomic_load(&runs[id]))
            missing++;
    return missing;
}

static struct foreign foreigners[NFOREIGN];

static void teardown_in_flight(void)
{
    atomic_store(&slow_tasks, true);
    for (unsigned i = 0; i < TEARDOWN_TASKS; i++) {
        unsigned id = new_id();
        if (!id)
            break;
        struct evexec_pool *p = i % 3 == 0 ? NULL : pool;
        struct evexec_future *f =
            evexec_run_in_executor(loop, p, work, (void *)(uintptr_t)id, result_free);
        if (!f) {
            atomic_fetch_add(&unexpected_errors, 1);
            continue;
        }
        if (evexec_future_add_done_callback(f, f_done, (void *)(uintptr_t)id) == 0)
            bump(&f_cb_expected[id]);
        if (i % 5 == 4)
            (void)evexec_future_cancel(f);
        teardown_futures[nteardown].f = f;
        teardown_futures[nteardown].id = id;
        nteardown++;
    }
    /* Let some start, none finish (they sleep at least 500 us). */
    sleep_us(200);
    if (evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_CANCEL_PENDING) != 0)
        atomic_fetch_add(&unexpected_errors, 1);
    event_del(tick_ev);
    evexec_loop_free(loop);
    loop_freed = true;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    ticks++;
    double now = now_s();
    if (phase == 1) {
        loop_ops();
        if (now >= phase1_end || ticks >= LOOP_MAX_TICKS ||
            atomic_load(&next_id) >= MAX_IDS - 4 * TEARDOWN_TASKS) {
            atomic_store(&stop_foreign, true);
            for (int i = 0; i < NFOREIGN; i++)
                pthread_join(foreigners[i].thread, NULL);
            phase = 2;
            phase_deadline = now + 8.0;
        }
        return;
    }
    if (phase == 2) {
        /* Keep releasing what is done; wait for the rest to complete. */
        for (unsigned i = 0; i < nlive;) {
            if (evexec_future_done(live[i].f)) {
                evexec_future_release(live[i].f);
                live_remove(i);
            } else {
                i++;
            }
        }
        unsigned f_missing = count_missing(f_cb_expected, f_cb_runs);
        unsigned p_missing = count_missing(posted, post_runs);
        if ((nlive == 0 && f_missing == 0 && p_missing == 0) || now >= phase_deadline) {
            quiesced_ok = nlive == 0 && f_missing == 0 && p_missing == 0;
            f_cb_missing_at_quiesce = f_missing;
            posts_missing_at_quiesce = p_missing;
            for (unsigned i = 0; i < nlive; i++)
                evexec_future_release(live[i].f);
            nlive = 0;
            evexec_loop_unref(loop);
            phase = 3;
            teardown_in_flight();
        }
    }
}

/* ---- main --------------------------------------------------------------- */

/* TAP: tap(), tap_count and tap_failed come from testutil.h. */

int main(void)
{
    const char *s = getenv("EVEXEC_STRESS_SEED");
    seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
    if (!seed)
        seed = 1;
    const char *secs = getenv("EVEXEC_STRESS_SECONDS");
    double seconds = secs ? atof(secs) : 8.0;
    if (seconds <= 0 || seconds > 60)
        seconds = 8.0;
    printf("1..9\n# seed %" PRIu64 " (EVEXEC_STRESS_SEED=%" PRIu64 " replays it), phase 1: %.1f s\n",
           seed, seed, seconds);
    fflush(stdout);
    loop_rng = mix(seed) | 1;

    base = event_base_new();
    loop = base ? evexec_loop_new(base) : NULL;
    struct evexec_pool_config cfg = {0};
    cfg.max_workers = 4;
    pool = evexec_pool_new(&cfg);
    if (!loop || !pool) {
        printf("Bail out! setup failed: %s\n", evexec_strerror(errno));
        return 1;
    }
    /* The foreign threads post on their own: keep the loop listening for
     * them until they are joined and their posts have run (phase 2). */
    evexec_loop_ref(loop);
    tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval one_ms = { 0, 1000 };
    event_add(tick_ev, &one_ms);

    double start = now_s();
    phase1_end = start + seconds;
    for (int i = 0; i < NFOREIGN; i++) {
        foreigners[i].rng = mix(seed + (uint64_t)i + 1) | 1;
        if (pthread_create(&foreigners[i].thread, NULL, foreign_main, &foreigners[i]) != 0) {
            printf("Bail out! pthread_create\n");
            return 1;
        }
    }
    event_base_dispatch(base);
    event_free(tick_ev);
    double dispatched = now_s();

    /* Join the own pool (its running teardown tasks finish, queued ones
     * were cancelled) and read its counts. */
    struct evexec_pool_stats st;
    int src = evexec_pool_shutdown(pool, EVEXEC_SHUTDOWN_WAIT);
    int grc = evexec_pool_get_stats(pool, &st);
    evexec_pool_free(pool);

    /* The default pool was detached by evexec_loop_free: its workers may
     * still run teardown tasks. Drop the futures now (the workers dispose of
     * their late results themselves), then wait, bounded, for the counts. */
    unsigned td_ran = 0, td_cancelled = 0;
    for (unsigned i = 0; i < nteardown; i++) {
        struct evexec_future *f = teardown_futures[i].f;
        td_ran += atomic_load(&ran[teardown_futures[i].id]) != 0;
        td_cancelled += evexec_future_cancelled(f);
        if (!evexec_future_done(f))
            atomic_fetch_add(&unexpected_errors, 1); /* loop_free cancels pending ones */
        evexec_future_release(f);
    }
    /* Results of the detached pool's tasks are freed by its workers once
     * the tasks are done. */
    for (int i = 0; i < 20000 && atomic_load(&tasks_finished) != atomic_load(&tasks_started); i++)
        sleep_us(1000);
    unsigned top = atomic_load(&next_id);
    if (top > MAX_IDS)
        top = MAX_IDS;
    unsigned unfreed = 0;
    for (int round = 0; round < 2000; round++) {
        unfreed = 0;
        for (unsigned id = 1; id < top; id++)
            if (atomic_load(&made[id]) != atomic_load(&freed[id]))
                unfreed++;
        if (!unfreed)
            break;
        sleep_us(5000);
    }
    event_base_free(base);

    /* ---- checks ---- */
    unsigned foreign_ops = 0;
    for (int i = 0; i < NFOREIGN; i++)
        foreign_ops += foreigners[i].ops;
    unsigned ids = top - 1;
    printf("# %u ids, %u foreign ops, %u loop ticks, %u tasks run, phase 1+2 %.1f s, total %.1f s\n",
           ids, foreign_ops, ticks, atomic_load(&tasks_started), dispatched - start,
           now_s() - start);
    printf("# teardown: %u tasks in flight at evexec_loop_free, %u of them ran, %u futures "
           "cancelled\n", nteardown, td_ran, td_cancelled);
    tap(foreign_ops > 0 && ticks > 0 && atomic_load(&tasks_started) > 0,
        "the mix ran (%u foreign ops, %u ticks)", foreign_ops, ticks);

    tap(quiesced_ok, "before teardown every phase-1 loop future completed and ran its "
        "done callback exactly once (%u ids off, %u live)", f_cb_missing_at_quiesce, nlive);
    tap(posts_missing_at_quiesce == 0 && count_missing(posted, post_runs) == 0,
        "every call_soon_threadsafe callback ran exactly once (%u off)",
        count_missing(posted, post_runs));

    unsigned f_bad = 0, cf_bad = 0, double_run = 0, ran_after_cancel = 0, free_bad = 0;
    for (unsigned id = 1; id < top; id++) {
        unsigned fe = atomic_load(&f_cb_expected[id]), fr = atomic_load(&f_cb_runs[id]);
        if (fr > fe || (atomic_load(&phase1_future[id]) && fr != fe))
            f_bad++;
        if (atomic_load(&cf_cb_runs[id]) != atomic_load(&cf_cb_expected[id]))
            cf_bad++;
        if (atomic_load(&ran[id]) > 1)
            double_run++;
        if (atomic_load(&cancel_won[id]) && atomic_load(&ran[id]))
            ran_after_cancel++;
        if (atomic_load(&freed[id]) != atomic_load(&made[id]) || atomic_load(&freed[id]) > 1)
            free_bad++;
    }
    tap(after_free_callbacks == 0 && f_bad == 0,
        "loop future callbacks: at most once, exactly once for phase 1, none after "
        "evexec_loop_free (%u ids off, %u after free)", f_bad, after_free_callbacks);
    tap(cf_bad == 0, "every cfuture done callback ran exactly once (%u ids off)", cf_bad);
    tap(free_bad == 0 && unfreed == 0, "every result freed exactly once (%u ids off)", free_bad);
    tap(ran_after_cancel == 0 && double_run == 0,
        "no task ran after its cancel returned true (%u), none ran twice (%u)",
        ran_after_cancel, double_run);
    tap(src == 0 && grc == 0 && st.submitted == st.completed + st.cancelled && st.queued == 0,
        "own pool counts balance: %" PRIu64 " submitted = %" PRIu64 " completed + %" PRIu64
        " cancelled", st.submitted, st.completed, st.cancelled);
    tap(atomic_load(&wrong_results) == 0 && atomic_load(&unexpected_errors) == 0 &&
        atomic_load(&tasks_started) == atomic_load(&tasks_finished),
        "results matched their tasks (%u wrong), no unexpected error (%u), every task "
        "finished (%u/%u)", atomic_load(&wrong_results), atomic_load(&unexpected_errors),
        atomic_load(&tasks_finished), atomic_load(&tasks_started));
    if (tap_failed)
        printf("# FAILED with seed %" PRIu64 "\n", seed);
    return tap_failed ? 1 : 0;
}
