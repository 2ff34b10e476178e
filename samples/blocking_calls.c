/*
 * blocking_calls.c -- the classic offload: blocking calls a libevent program
 * must not make on its loop thread, run on the loop's default pool.
 *
 * What it demonstrates
 *   - evexec_run_in_executor(loop, NULL, ...) -- pool NULL means the loop's
 *     default pool, made on first use -- for three kinds of blocking call:
 *       resolve   getaddrinfo() of a host name;
 *       hash      reading a whole file and hashing it (FNV-1a, 64 bit);
 *       db        a sleep standing in for a slow database query.
 *   - Results are printed on the loop thread, in the order the calls complete,
 *     from each future's done callback. Errors travel as error codes.
 *   - A per-call timeout with evexec_wait_for() (asyncio.wait_for): the
 *     program waits on a future that has the call's outcome, or fails with
 *     ETIMEDOUT after cancelling the call; it says which calls timed out. A
 *     call that is still running sees evexec_cancel_requested() and gives up
 *     early (the database stand-in checks it between 10 ms naps;
 *     getaddrinfo() cannot be stopped, its late result is simply dropped).
 *   - event_base_dispatch() returns by itself once every call is settled: the
 *     library keeps the loop alive only while work is in flight.
 *   - At the end, evexec_loop_shutdown_default_pool() lets the default pool's
 *     threads exit without blocking the loop (asyncio's
 *     shutdown_default_executor), with a time limit.
 *
 * How to run it
 *   samples/blocking_calls                     # names from /etc/hosts, no network
 *   samples/blocking_calls localhost example.org --file /etc/passwd \
 *       --db 100 --db 3000 --timeout 1500
 *   Without arguments it resolves names listed in /etc/hosts (answered from
 *   the file, no network needed), hashes /etc/hosts and its own executable,
 *   and runs database stand-ins of 100, 400 and 2500 ms with a 1000 ms
 *   timeout, so the last one times out.
 *
 * Exit status: 0 every call succeeded, 1 some call failed, 2 usage or setup
 * error, 3 some call timed out (and none failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <evexec.h>

#define MAX_CALLS        64
#define MAX_HOSTS_NAMES  3      /* names taken from /etc/hosts by default */
#define RESULT_MAX       256

enum call_kind { CALL_RESOLVE, CALL_HASH, CALL_DB };

enum call_outcome { OUT_PENDING, OUT_OK, OUT_FAILED, OUT_TIMED_OUT };

struct app;

/* One blocking call. It lives until main() returns, after the loop has
 * settled every call, so a worker may use it for as long as its task runs. */
struct call {
    struct app           *app;
    enum call_kind        kind;
    const char           *what;        /* host name or path */
    unsigned              delay_ms;    /* CALL_DB */
    char                  label[96];
    int                   gai_error;   /* CALL_RESOLVE: getaddrinfo() code */
    struct evexec_future *future;      /* the call itself */
    struct evexec_future *in_time;     /* its outcome, or ETIMEDOUT */
    struct timespec       started;
    enum call_outcome     outcome;
};

struct app {
    struct event_base  *base;
    struct evexec_loop *loop;
    struct call         calls[MAX_CALLS];
    unsigned            n_calls;
    unsigned            timeout_ms;
    struct timespec     started;
};

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---- work functions: run on worker threads ------------------------------- */

/* Each returns 0 and a malloc'd text line, or an error code. */

static int work_resolve(void *arg, void **result)
{
    struct call *c = arg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;

    int rc = getaddrinfo(c->what, NULL, &hints, &list);
    if (rc != 0) {
        c->gai_error = rc;
        return rc == EAI_SYSTEM ? errno : rc == EAI_MEMORY ? ENOMEM : ENOENT;
    }
    char *text = malloc(RESULT_MAX);
    if (text == NULL) {
        freeaddrinfo(list);
        return ENOMEM;
    }
    size_t len = 0;
    text[0] = '\0';
    for (struct addrinfo *ai = list; ai != NULL && len + INET6_ADDRSTRLEN + 3 < RESULT_MAX;
         ai = ai->ai_next) {
        char addr[INET6_ADDRSTRLEN];
        const void *raw = ai->ai_family == AF_INET
            ? (const void *)&((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr
            : (const void *)&((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
        if (inet_ntop(ai->ai_family, raw, addr, sizeof addr) == NULL)
            continue;
        if (strstr(text, addr) != NULL)   /* one line per address, not per socktype */
            continue;
        len += (size_t)snprintf(text + len, RESULT_MAX - len, "%s%s", len ? ", " : "", addr);
    }
    freeaddrinfo(list);
    *result = text;
    return 0;
}

static int work_hash_file(void *arg, void **result)
{
    struct call *c = arg;
    int fd = open(c->what, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;

    uint64_t hash = UINT64_C(0xcbf29ce484222325);   /* FNV-1a 64 */
    uint64_t total = 0;
    unsigned char buf[16384];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(fd);
            return err;
        }
        if (evexec_cancel_requested()) {   /* nobody wants the answer any more */
            close(fd);
            return ECANCELED;
        }
        for (ssize_t i = 0; i < n; i++) {
            hash ^= buf[i];
            hash *= UINT64_C(0x100000001b3);
        }
        total += (uint64_t)n;
    }
    close(fd);

    char *text = malloc(RESULT_MAX);
    if (text == NULL)
        return ENOMEM;
    snprintf(text, RESULT_MAX, "%" PRIu64 " bytes, fnv1a64 %016" PRIx64, total, hash);
    *result = text;
    return 0;
}

static int work_db_query(void *arg, void **result)
{
    struct call *c = arg;
    unsigned slept = 0;

    /* Sleep in short naps so that a cancelled query stops early. */
    while (slept < c->delay_ms) {
        if (evexec_cancel_requested())
            return ECANCELED;
        unsigned nap = c->delay_ms - slept < 10 ? c->delay_ms - slept : 10;
        struct timespec ts = {0, (long)nap * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        slept += nap;
    }
    char *text = malloc(RESULT_MAX);
    if (text == NULL)
        return ENOMEM;
    snprintf(text, RESULT_MAX, "%u rows", 1 + c->delay_ms % 97);
    *result = text;
    return 0;
}

/* ---- loop side ----------------------------------------------------------- */

/* Done callback of the evexec_wait_for() future: the call finished, failed,
 * or did not answer in time (then wait_for has cancelled it). */
static void on_call_done(struct evexec_future *f, void *arg)
{
    struct call *c = arg;
    void *result = NULL;
    /* wait_for borrows the call's result: it stays the call future's. */
    int err = evexec_future_result(f, &result);

    if (err == 0) {
        c->outcome = OUT_OK;
        printf("%7.1f ms  ok       %-32s %s\n", ms_since(&c->started), c->label,
               (const char *)result);
    } else if (err == ETIMEDOUT) {
        /* If the call is still queued it never runs; if it runs it sees
         * evexec_cancel_requested(); either way its result is dropped. */
        c->outcome = OUT_TIMED_OUT;
        printf("%7.1f ms  TIMEOUT  %-32s no answer within %u ms, cancelled\n",
               ms_since(&c->started), c->label, c->app->timeout_ms);
    } else {
        c->outcome = OUT_FAILED;
        printf("%7.1f ms  FAILED   %-32s %s\n", ms_since(&c->started), c->label,
               c->gai_error != 0 ? gai_strerror(c->gai_error) : evexec_strerror(err));
    }
    fflush(stdout);
}

static struct call *add_call(struct app *app, enum call_kind kind, const char *what,
                             unsigned delay_ms)
{
    if (app->n_calls == MAX_CALLS) {
        fprintf(stderr, "blocking_calls: at most %d calls\n", MAX_CALLS);
        return NULL;
    }
    struct call *c = &app->calls[app->n_calls++];
    c->app = app;
    c->kind = kind;
    c->what = what;
    c->delay_ms = delay_ms;
    switch (kind) {
    case CALL_RESOLVE: snprintf(c->label, sizeof c->label, "resolve %s", what); break;
    case CALL_HASH:    snprintf(c->label, sizeof c->label, "hash %s", what); break;
    case CALL_DB:      snprintf(c->label, sizeof c->label, "db query (%u ms)", delay_ms); break;
    }
    return c;
}

/* Start one call on the default pool, with its timeout. */
static int start_call(struct app *app, struct call *c)
{
    static const evexec_work_fn work[] = {
        [CALL_RESOLVE] = work_resolve, [CALL_HASH] = work_hash_file, [CALL_DB] = work_db_query,
    };
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    /* pool NULL: the loop's default pool. The future owns the result and
     * frees it with free() when the last reference goes. */
    c->future = evexec_run_in_executor(app->loop, NULL, work[c->kind], c, free);
    if (c->future == NULL)
        return errno;
    /* The call's outcome, or ETIMEDOUT once timeout_ms passed first. */
    c->in_time = evexec_wait_for(c->future, app->timeout_ms);
    if (c->in_time == NULL) {
        int err = errno;
        evexec_future_cancel(c->future);
        return err;
    }
    int err = evexec_future_add_done_callback(c->in_time, on_call_done, c);
    if (err != 0) {
        evexec_future_cancel(c->in_time);   /* cancels the call too */
        return err;
    }
    return 0;
}

/* Up to max names from /etc/hosts (the names after each address), which the
 * resolver answers from the file without touching the network. */
static unsigned names_from_hosts(char names[][64], unsigned max)
{
    FILE *f = fopen("/etc/hosts", "r");
    char line[512];
    unsigned n = 0;

    if (f == NULL)
        return 0;
    while (n < max && fgets(line, sizeof line, f) != NULL) {
        char *hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        char *save = NULL;
        char *tok = strtok_r(line, " \t\r\n", &save);   /* the address */
        while (n < max && tok != NULL && (tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
            bool seen = strlen(tok) >= 64;
            for (unsigned i = 0; i < n && !seen; i++)
                seen = strcmp(names[i], tok) == 0;
            if (!seen)
                snprintf(names[n++], 64, "%s", tok);
        }
    }
    fclose(f);
    return n;
}

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
        "Usage: %s [options] [HOSTNAME...]\n"
        "Run blocking calls on the event loop's default thread pool and print\n"
        "each result on the loop thread as it arrives.\n"
        "\n"
        "  HOSTNAME...        names to resolve (default: names in /etc/hosts)\n"
        "  -f, --file PATH    a file to read and hash (repeatable;\n"
        "                     default: /etc/hosts and this program)\n"
        "  -d, --db MS        a database stand-in taking MS ms (repeatable;\n"
        "                     default: 100, 400 and 2500)\n"
        "  -t, --timeout MS   per-call timeout (default 1000)\n"
        "  -h, --help         this text\n"
        "\n"
        "Exit status: 0 all calls succeeded, 1 a call failed, 2 usage error,\n"
        "3 a call timed out (the defaults include one that does).\n",
        argv0);
}

static bool parse_ms(const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > 3600000)
        return false;
    *out = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"file", required_argument, NULL, 'f'},
        {"db", required_argument, NULL, 'd'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const unsigned default_db_ms[] = {100, 400, 2500};
    static struct app app;   /* static: MAX_CALLS calls are a few KiB */
    const char *files[MAX_CALLS];
    unsigned dbs[MAX_CALLS];
    unsigned n_files = 0, n_dbs = 0;
    char hosts_names[MAX_HOSTS_NAMES][64];
    int opt, status = 0;

    app.timeout_ms = 1000;
    while ((opt = getopt_long(argc, argv, "f:d:t:h", options, NULL)) != -1) {
        switch (opt) {
        case 'f':
            if (n_files < MAX_CALLS)
                files[n_files++] = optarg;
            break;
        case 'd':
            if (n_dbs == MAX_CALLS || !parse_ms(optarg, &dbs[n_dbs])) {
                fprintf(stderr, "blocking_calls: --db wants milliseconds\n");
                return 2;
            }
            n_dbs++;
            break;
        case 't':
            if (!parse_ms(optarg, &app.timeout_ms) || app.timeout_ms == 0) {
                fprintf(stderr, "blocking_calls: --timeout wants milliseconds > 0\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout, argv[0]);
            return 0;
        default:
            usage(stderr, argv[0]);
            return 2;
        }
    }

    /* The calls: names, files, queries, in that order of submission. */
    bool ok = true;
    if (optind < argc) {
        for (int i = optind; i < argc && ok; i++)
            ok = add_call(&app, CALL_RESOLVE, argv[i], 0) != NULL;
    } else {
        unsigned n = names_from_hosts(hosts_names, MAX_HOSTS_NAMES);
        if (n == 0)
            ok = add_call(&app, CALL_RESOLVE, "localhost", 0) != NULL;
        for (unsigned i = 0; i < n && ok; i++)
            ok = add_call(&app, CALL_RESOLVE, hosts_names[i], 0) != NULL;
    }
    if (n_files == 0) {
        files[n_files++] = "/etc/hosts";
        files[n_files++] = argv[0];
    }
    for (unsigned i = 0; i < n_files && ok; i++)
        ok = add_call(&app, CALL_HASH, files[i], 0) != NULL;
    if (n_dbs == 0)
        for (size_t i = 0; i < sizeof default_db_ms / sizeof *default_db_ms; i++)
            dbs[n_dbs++] = default_db_ms[i];
    for (unsigned i = 0; i < n_dbs && ok; i++)
        ok = add_call(&app, CALL_DB, NULL, dbs[i]) != NULL;
    if (!ok)
        return 2;

    app.base = event_base_new();
    if (app.base == NULL || (app.loop = evexec_loop_new(app.base)) == NULL) {
        fprintf(stderr, "blocking_calls: cannot set up the event loop\n");
        if (app.base)
            event_base_free(app.base);
        return 2;
    }

    printf("%u calls on the default pool, timeout %u ms each\n", app.n_calls, app.timeout_ms);
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &app.started);
    for (unsigned i = 0; i < app.n_calls; i++) {
        struct call *c = &app.calls[i];
        int err = start_call(&app, c);
        if (err != 0) {
            c->outcome = OUT_FAILED;
            printf("             FAILED   %-32s cannot start: %s\n", c->label,
                   evexec_strerror(err));
        }
    }

    /* Returns once every future is done, every timeout stopped, and every
     * late result of a cancelled call disposed of. */
    event_base_dispatch(app.base);
    struct evexec_pool_stats stats = {0};
    evexec_pool_get_stats(evexec_loop_default_pool(app.loop), &stats);

    /* Let the default pool's threads go without blocking the loop: a
     * getaddrinfo() that ignored its cancel may still be running. */
    struct evexec_future *pool_gone = evexec_loop_shutdown_default_pool(app.loop, 2000);
    if (pool_gone != NULL) {
        event_base_dispatch(app.base);   /* until its threads exited, or 2 s */
        if (evexec_future_result(pool_gone, NULL) == ETIMEDOUT)
            printf("default pool: a thread was still busy after 2 s; not waiting\n");
        evexec_future_release(pool_gone);
    }

    unsigned n_ok = 0, n_failed = 0, n_timed_out = 0;
    for (unsigned i = 0; i < app.n_calls; i++) {
        struct call *c = &app.calls[i];
        n_ok += c->outcome == OUT_OK;
        n_failed += c->outcome == OUT_FAILED || c->outcome == OUT_PENDING;
        n_timed_out += c->outcome == OUT_TIMED_OUT;
    }
    printf("%u calls in %.1f ms: %u ok, %u failed, %u timed out",
           app.n_calls, ms_since(&app.started), n_ok, n_failed, n_timed_out);
    for (unsigned i = 0, first = 1; i < app.n_calls; i++) {
        if (app.calls[i].outcome == OUT_TIMED_OUT) {
            printf("%s%s", first ? " (" : ", ", app.calls[i].label);
            first = 0;
        }
    }
    printf("%s\n", n_timed_out ? ")" : "");
    printf("default pool: made on first use, %u worker threads started\n",
           (unsigned)stats.threads_started);
    status = n_failed ? 1 : n_timed_out ? 3 : 0;

    for (unsigned i = 0; i < app.n_calls; i++) {
        evexec_future_release(app.calls[i].in_time);
        evexec_future_release(app.calls[i].future);   /* frees the result */
    }
    evexec_loop_free(app.loop);
    event_base_free(app.base);
    return status;
}
