/*
 * chain_futures.c -- the future API on its own, one small scene at a time.
 *
 * What it demonstrates (each scene starts when the previous one is done, from
 * a done callback, so the whole program is one chain of futures):
 *   1. evexec_future_new(): a bare loop future completed by a thread the
 *      library knows nothing about. The thread posts the result with
 *      evexec_call_soon_threadsafe(); the loop sets it. evexec_loop_ref() keeps
 *      the loop listening for that thread meanwhile.
 *   2. evexec_wrap_cfuture(): a task submitted straight to a pool with
 *      evexec_pool_submit() (a concurrent future) seen from the loop as a loop
 *      future. Done callbacks run in registration order, on the loop thread,
 *      and never inside the call that adds them -- even on a done future.
 *   3. Error propagation: a two-step pipeline (parse on the pool, then factor
 *      on the pool) whose outer future gets the first error of any step.
 *   4. Cancelling a pending task: on a 1-worker pool held busy, the loop
 *      future of a queued task is cancelled; the concurrent future becomes
 *      CANCELLED at once and the task never runs.
 * When the last scene is done nothing keeps the loop alive any more, and
 * event_base_dispatch() returns by itself.
 *
 * How to run it
 *   samples/chain_futures
 *   samples/chain_futures --number 1001 --bad-number 12abc
 *
 * Exit status: 0 every scene behaved as described, 1 something did not
 * (the line saying what starts with "UNEXPECTED"), 2 usage or setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include <evexec.h>

struct app {
    struct event_base  *base;
    struct evexec_loop *loop;
    struct evexec_pool *pool;        /* 2 workers, for scenes 2 and 3 */
    struct evexec_pool *pool1;       /* 1 worker, for scene 4 */
    const char         *number, *bad_number;
    int                 failures;

    /* scene 1 */
    pthread_t             producer;
    bool                  producer_started;
    uint64_t              produced;  /* written by the producer before it posts */
    struct evexec_future *foreign;

    /* scene 2 */
    struct evexec_future *wrapped;
    int                   callbacks_seen;

    /* scene 3: two pipelines */
    struct pipeline      *pipelines[2];
    unsigned              pipelines_done;

    /* scene 4 */
    pthread_mutex_t       gate_lock;
    pthread_cond_t        gate_cond;
    bool                  gate_open;
    atomic_bool           victim_ran;
    struct evexec_future *blocker, *victim;
    struct evexec_cfuture *victim_cf;
};

static void expect(struct app *app, bool ok, const char *what)
{
    if (!ok) {
        printf("UNEXPECTED: %s\n", what);
        app->failures++;
    }
}

static void scene2(struct app *app);
static void scene3(struct app *app);
static void scene4(struct app *app);

/* ---- scene 1: a future set by a foreign thread ---------------------------- */

/* Runs on the loop thread, posted by the producer thread. */
static void deliver_on_loop(void *arg)
{
    struct app *app = arg;
    uint64_t *value = malloc(sizeof *value);

    if (value == NULL) {
        evexec_future_set_error(app->foreign, ENOMEM);
    } else {
        *value = app->produced;    /* published by the queue: no lock needed */
        evexec_future_set_result(app->foreign, value, free);
    }
    evexec_loop_unref(app->loop);  /* that thread will post nothing more */
}

static void *producer_main(void *arg)
{
    struct app *app = arg;
    uint64_t sum = 0;

    for (uint64_t i = 1; i <= 1000000; i++)
        sum += i * i;
    app->produced = sum;
    /* The only library call a foreign thread may make on a loop. */
    int err = evexec_call_soon_threadsafe(app->loop, deliver_on_loop, app);
    if (err != 0)
        fprintf(stderr, "chain_futures: call_soon_threadsafe: %s\n", evexec_strerror(err));
    return NULL;
}

static void on_foreign_done(struct evexec_future *f, void *arg)
{
    struct app *app = arg;
    void *result;
    int err = evexec_future_result(f, &result);

    if (err == 0)
        printf("[1] done callback: sum of i*i for i = 1..1000000 is %" PRIu64 "\n",
               *(uint64_t *)result);
    else
        printf("[1] done callback: error %s\n", evexec_strerror(err));
    expect(app, err == 0 && *(uint64_t *)result == UINT64_C(333333833333500000),
           "scene 1 result");
    pthread_join(app->producer, NULL);   /* it has posted, so it is ending */
    app->producer_started = false;
    scene2(app);
}

static void scene1(struct app *app)
{
    printf("[1] evexec_future_new: a pending future; a plain pthread will complete it\n");
    app->foreign = evexec_future_new(app->loop);
    if (app->foreign == NULL ||
        evexec_future_add_done_callback(app->foreign, on_foreign_done, app) != 0) {
        expect(app, false, "scene 1 setup");
        return;
    }
    /* The loop cannot know about this thread: keep it listening until the
     * result has been posted, or dispatch would return for lack of events. */
    evexec_loop_ref(app->loop);
    if (pthread_create(&app->producer, NULL, producer_main, app) != 0) {
        evexec_loop_unref(app->loop);
        evexec_future_set_error(app->foreign, EAGAIN);   /* the callback goes on */
        return;
    }
    app->producer_started = true;
}

/* ---- scene 2: wrap a concurrent future ------------------------------------- */

static int work_word_count(void *arg, void **result)
{
    const char *text = arg;
    size_t *count = malloc(sizeof *count);
    if (count == NULL)
        return ENOMEM;
    *count = 0;
    for (const char *p = text; *p != '\0'; p++)
        if (*p != ' ' && (p == text || p[-1] == ' '))
            (*count)++;
    *result = count;
    return 0;
}

static void on_wrapped_late(struct evexec_future *f, void *arg)
{
    struct app *app = arg;
    (void)f;
    printf("[2]   callback added to the done future: ran after the adding callback returned\n");
    expect(app, app->callbacks_seen == 2, "late callback ran after the others");
    scene3(app);
}

static void on_wrapped_done(struct evexec_future *f, void *arg)
{
    struct app *app = arg;
    void *result;
    int n = ++app->callbacks_seen;
    int err = evexec_future_result(f, &result);

    printf("[2]   done callback #%d: %zu words\n", n, err == 0 ? *(size_t *)result : 0);
    expect(app, err == 0 && *(size_t *)result == 9, "scene 2 word count");
    if (n == 2) {
        /* Adding to a done future schedules the callback; it does not run
         * inside this call. */
        evexec_future_add_done_callback(f, on_wrapped_late, app);
        printf("[2]   added a callback to the done future from callback #2\n");
    }
}

static void scene2(struct app *app)
{
    static const char text[] = "the quick brown fox jumps over the lazy dog";

    printf("[2] evexec_pool_submit + evexec_wrap_cfuture: count words on the pool\n");
    struct evexec_cfuture *cf = evexec_pool_submit(app->pool, work_word_count,
                                                   (void *)(uintptr_t)text, free);
    if (cf == NULL) {
        expect(app, false, "scene 2 submit");
        return;
    }
    app->wrapped = evexec_wrap_cfuture(app->loop, cf);
    /* The loop future holds its own reference on cf and borrows its result. */
    evexec_cfuture_release(cf);
    if (app->wrapped == NULL) {
        expect(app, false, "scene 2 wrap");
        return;
    }
    evexec_future_add_done_callback(app->wrapped, on_wrapped_done, app);
    evexec_future_add_done_callback(app->wrapped, on_wrapped_done, app);
}

/* ---- scene 3: a pipeline and its errors ------------------------------------ */

/* parse (pool) -> factor (pool) -> outer future. Each step's done callback
 * starts the next one, or fails the outer future with the step's error. */
struct pipeline {
    struct app           *app;
    const char           *input;
    long                  value;      /* parse's result, copied out */
    struct evexec_future *step;       /* the step running now */
    struct evexec_future *outer;      /* what the caller waits for */
};

static int work_parse(void *arg, void **result)
{
    const char *text = arg;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return EINVAL;
    if (v < 2)
        return EDOM;
    long *out = malloc(sizeof *out);
    if (out == NULL)
        return ENOMEM;
    *out = v;
    *result = out;
    return 0;
}

static int work_factor(void *arg, void **result)
{
    long n = *(const long *)arg;
    char *text = malloc(256);
    size_t len = 0;
    if (text == NULL)
        return ENOMEM;
    text[0] = '\0';
    for (long p = 2; p <= n / p; p++) {
        int k = 0;
        while (n % p == 0) {
            n /= p;
            k++;
        }
        if (k > 0 && len < 200)
            len += (size_t)snprintf(text + len, 256 - len, k > 1 ? "%s%ld^%d" : "%s%ld",
                                    len ? " * " : "", p, k);
    }
    if (n > 1 && len < 200)
        snprintf(text + len, 256 - len, "%s%ld", len ? " * " : "", n);
    *result = text;
    return 0;
}

static void on_factor_done(struct evexec_future *f, void *arg)
{
    struct pipeline *p = arg;
    char *text = NULL;
    int err = evexec_future_take_result(f, (void **)&text);   /* now ours */

    if (err == 0)
        evexec_future_set_result(p->outer, text, free);       /* now the outer's */
    else
        evexec_future_set_error(p->outer, err);
}

static void on_parse_done(struct evexec_future *f, void *arg)
{
    struct pipeline *p = arg;
    void *result;
    int err = evexec_future_result(f, &result);

    if (err != 0) {
        /* The error travels to the outer future; the next step never starts. */
        printf("[3]   \"%s\": parse step failed, passing the error on\n", p->input);
        evexec_future_set_error(p->outer, err);
        return;
    }
    p->value = *(long *)result;
    evexec_future_release(p->step);
    p->step = evexec_run_in_executor(p->app->loop, p->app->pool, work_factor, &p->value, free);
    if (p->step == NULL) {
        evexec_future_set_error(p->outer, errno);
        return;
    }
    evexec_future_add_done_callback(p->step, on_factor_done, p);
}

static void on_pipeline_done(struct evexec_future *f, void *arg)
{
    struct pipeline *p = arg;
    struct app *app = p->app;
    void *result;
    int err = evexec_future_result(f, &result);

    if (err == 0)
        printf("[3]   outer future of \"%s\": %s = %s\n", p->input, p->input, (char *)result);
    else
        printf("[3]   outer future of \"%s\": error: %s\n", p->input, evexec_strerror(err));
    if (p == app->pipelines[0])
        expect(app, err == 0, "scene 3 good input succeeds");
    else
        expect(app, err == EINVAL || err == EDOM, "scene 3 bad input fails with its parse error");
    if (++app->pipelines_done == 2)
        scene4(app);
}

static struct pipeline *pipeline_start(struct app *app, const char *input)
{
    struct pipeline *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->app = app;
    p->input = input;
    p->outer = evexec_future_new(app->loop);
    p->step = evexec_run_in_executor(app->loop, app->pool, work_parse, (void *)(uintptr_t)input,
                                     free);
    if (p->outer == NULL || p->step == NULL) {
        evexec_future_cancel(p->step);
        evexec_future_release(p->step);
        evexec_future_release(p->outer);
        free(p);
        return NULL;
    }
    evexec_future_add_done_callback(p->outer, on_pipeline_done, p);
    evexec_future_add_done_callback(p->step, on_parse_done, p);
    return p;
}

static void pipeline_free(struct pipeline *p)
{
    if (p == NULL)
        return;
    evexec_future_release(p->step);
    evexec_future_release(p->outer);
    free(p);
}

static void scene3(struct app *app)
{
    printf("[3] error propagation: parse -> factor, for \"%s\" and \"%s\"\n", app->number,
           app->bad_number);
    app->pipelines[0] = pipeline_start(app, app->number);
    app->pipelines[1] = pipeline_start(app, app->bad_number);
    if (app->pipelines[0] == NULL || app->pipelines[1] == NULL) {
        expect(app, false, "scene 3 setup");
        /* A pipeline that did start still completes; count the other as done. */
        app->pipelines_done += (app->pipelines[0] == NULL) + (app->pipelines[1] == NULL);
        if (app->pipelines_done == 2)
            scene4(app);
    }
}

/* ---- scene 4: cancel a task that has not started ---------------------------- */

static int work_blocker(void *arg, void **result)
{
    struct app *app = arg;
    (void)result;
    pthread_mutex_lock(&app->gate_lock);
    while (!app->gate_open)
        pthread_cond_wait(&app->gate_cond, &app->gate_lock);
    pthread_mutex_unlock(&app->gate_lock);
    return 0;
}

static int work_victim(void *arg, void **result)
{
    struct app *app = arg;
    (void)result;
    atomic_store(&app->victim_ran, true);
    return 0;
}

static const char *state_name(int state)
{
    switch (state) {
    case EVEXEC_PENDING:   return "PENDING";
    case EVEXEC_RUNNING:   return "RUNNING";
    case EVEXEC_CANCELLED: return "CANCELLED";
    case EVEXEC_FINISHED:  return "FINISHED";
    default:               return "?";
    }
}

static void on_victim_done(struct evexec_future *f, void *arg)
{
    struct app *app = arg;
    void *result;
    int err = evexec_future_result(f, &result);
    printf("[4]   victim's done callback: %s\n", evexec_strerror(err));
    expect(app, err == ECANCELED, "victim reports ECANCELED");
}

static void on_blocker_done(struct evexec_future *f, void *arg)
{
    void *result;
    (void)arg;
    printf("[4]   blocker finished (%s); the worker is free, and nothing else is queued\n",
           evexec_strerror(evexec_future_result(f, &result)));
    /* Nothing more is chained: event_base_dispatch() returns by itself. */
}

static void scene4(struct app *app)
{
    printf("[4] cancelling a pending task on a 1-worker pool held busy\n");
    app->blocker = evexec_run_in_executor(app->loop, app->pool1, work_blocker, app, NULL);
    app->victim_cf = evexec_pool_submit(app->pool1, work_victim, app, NULL);
    if (app->blocker == NULL || app->victim_cf == NULL ||
        (app->victim = evexec_wrap_cfuture(app->loop, app->victim_cf)) == NULL) {
        expect(app, false, "scene 4 setup");
        pthread_mutex_lock(&app->gate_lock);
        app->gate_open = true;
        pthread_cond_signal(&app->gate_cond);
        pthread_mutex_unlock(&app->gate_lock);
        return;
    }
    evexec_future_add_done_callback(app->blocker, on_blocker_done, app);
    evexec_future_add_done_callback(app->victim, on_victim_done, app);

    printf("[4]   victim queued behind the blocker: state %s\n",
           state_name(evexec_cfuture_state(app->victim_cf)));
    bool cancelled = evexec_future_cancel(app->victim);   /* the loop-side future */
    printf("[4]   evexec_future_cancel(victim) = %s; its concurrent future is now %s\n",
           cancelled ? "true" : "false", state_name(evexec_cfuture_state(app->victim_cf)));
    expect(app, cancelled && evexec_cfuture_state(app->victim_cf) == EVEXEC_CANCELLED,
           "pending task cancelled");

    pthread_mutex_lock(&app->gate_lock);   /* let the blocker finish */
    app->gate_open = true;
    pthread_cond_signal(&app->gate_cond);
    pthread_mutex_unlock(&app->gate_lock);
}

/* ---- main -------------------------------------------------------------------- */

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
        "Usage: %s [--number N] [--bad-number TEXT]\n"
        "Walk through the future API: a future set from a foreign thread, a\n"
        "wrapped concurrent future, done callbacks, error propagation, and the\n"
        "cancellation of a pending task.\n"
        "\n"
        "  -n, --number N          input of the pipeline that works (default 360)\n"
        "  -b, --bad-number TEXT   input of the pipeline that fails, anything but\n"
        "                          an integer >= 2 (default 12x)\n"
        "  -h, --help              this text\n"
        "\n"
        "Exit status: 0 all scenes behaved as described, 1 one did not,\n"
        "2 usage or setup error.\n",
        argv0);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"number", required_argument, NULL, 'n'},
        {"bad-number", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct app app = {.number = "360", .bad_number = "12x"};
    int opt;

    while ((opt = getopt_long(argc, argv, "n:b:h", options, NULL)) != -1) {
        switch (opt) {
        case 'n': app.number = optarg; break;
        case 'b': app.bad_number = optarg; break;
        case 'h': usage(stdout, argv[0]); return 0;
        default:  usage(stderr, argv[0]); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        return 2;
    }
    /* The scenes assert what happens to each input, so check them up front
     * (work_parse is a plain function; here it runs on the main thread). */
    void *parsed = NULL;
    if (work_parse((void *)(uintptr_t)app.number, &parsed) != 0) {
        fprintf(stderr, "chain_futures: --number wants an integer >= 2\n");
        return 2;
    }
    free(parsed);
    parsed = NULL;
    if (work_parse((void *)(uintptr_t)app.bad_number, &parsed) == 0) {
        free(parsed);
        fprintf(stderr, "chain_futures: --bad-number wants text that is not an integer >= 2\n");
        return 2;
    }

    pthread_mutex_init(&app.gate_lock, NULL);
    pthread_cond_init(&app.gate_cond, NULL);
    atomic_init(&app.victim_ran, false);
    struct evexec_pool_config two = {.max_workers = 2}, one = {.max_workers = 1};
    app.base = event_base_new();
    app.loop = app.base ? evexec_loop_new(app.base) : NULL;
    app.pool = evexec_pool_new(&two);
    app.pool1 = evexec_pool_new(&one);
    if (app.loop == NULL || app.pool == NULL || app.pool1 == NULL) {
        fprintf(stderr, "chain_futures: setup failed: %s\n", strerror(errno));
        app.failures = -1;
        goto out;
    }

    scene1(&app);
    /* Runs until the chain of scenes has nothing left in flight. */
    event_base_dispatch(app.base);

    /* Join the workers, then look whether the cancelled task ever ran. */
    evexec_pool_free(app.pool1);
    app.pool1 = NULL;
    printf("[4]   after joining the pool: the victim %s\n",
           atomic_load(&app.victim_ran) ? "RAN (it should not have)" : "never ran");
    expect(&app, !atomic_load(&app.victim_ran), "cancelled task never ran");
    expect(&app, app.pipelines_done == 2 && app.blocker != NULL &&
                 evexec_future_done(app.blocker), "every scene finished");
    printf("%s\n", app.failures == 0 ? "all scenes behaved as described"
                                     : "some scene did not behave as described");

out:
    if (app.producer_started)
        pthread_join(app.producer, NULL);
    evexec_pool_free(app.pool);
    evexec_pool_free(app.pool1);
    evexec_loop_free(app.loop);
    evexec_future_release(app.foreign);
    evexec_future_release(app.wrapped);
    pipeline_free(app.pipelines[0]);
    pipeline_free(app.pipelines[1]);
    evexec_future_release(app.blocker);
    evexec_future_release(app.victim);
    evexec_cfuture_release(app.victim_cf);
    if (app.base)
        event_base_free(app.base);
    pthread_mutex_destroy(&app.gate_lock);
    pthread_cond_destroy(&app.gate_cond);
    return app.failures < 0 ? 2 : app.failures > 0 ? 1 : 0;
}
