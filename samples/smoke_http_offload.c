/*
 * smoke_http_offload.c -- `make check` smoke test of samples/http_offload,
 * driven with libevent's own HTTP client. Prints TAP.
 *
 * For each mode (offload with a 2-worker pool, then --inline) it starts the
 * server on an ephemeral port of 127.0.0.1 (the port is parsed from the
 * server's first line), then:
 *   - /ping answers "pong";
 *   - six concurrent /hash requests run while /ping probes go out every 5 ms,
 *     each on a connection of its own; in offload mode it asserts that some
 *     /ping was answered while more /hash requests were outstanding than the
 *     pool has workers (the pool saturated, the loop still serving). Ping latencies during the load
 *     are printed as TAP comments for both modes -- figures, never asserted;
 *   - the /hash answers agree between the two modes;
 *   - /file serves a file of the served directory and refuses traversal with
 *     400 ("..", absolute names), 404 for a missing name;
 *   - offload only: a client that disconnects while its /hash runs is noticed
 *     and its work cancelled (polled through /stats, no sleeps); SIGTERM with
 *     two requests in flight answers both (200 or, past the grace period,
 *     503) and the server exits 0;
 *   - /append (offload, with --log in a temporary directory): a line within
 *     the deadline is answered 200 and is in the log; bad bodies are 400,
 *     too long 413, GET 405, and write nothing; without --log (inline) 404;
 *   - with --deadline 1000: a /hash that would take seconds is answered 504
 *     and counted as timed out, and the server goes on serving /ping and a
 *     short /hash; with --append-delay 1500, three concurrent appends on two
 *     workers each say whether they wrote (200 "written after the deadline"
 *     or 504 "nothing was written") and the log, read after the answer,
 *     agrees, with nothing but whole lines in it.
 *
 * Usage: smoke_http_offload [--server PATH] [--dir DIR]
 * Defaults come from the environment `make check` sets: $top_builddir and
 * $top_srcdir (the served directory is $top_srcdir/samples).
 */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define WORKERS          2
#define LOAD_REQUESTS    6
#define LOAD_ROUNDS      "5000000"    /* a few tens of ms per request */
#define HUGE_ROUNDS      "2000000000" /* seconds: only ever cancelled */
#define SMALL_ROUNDS     "1000"       /* microseconds */
#define DEADLINE_MS      "1000"       /* far above SMALL_ROUNDS, far below HUGE_ROUNDS */
#define APPEND_DELAY_MS  "1500"       /* above DEADLINE_MS */
#define MAX_PINGS        1024
#define STEP_TIMEOUT_S   60           /* hang guard of each step */

static int tap_n;
static int tap_failed;

static void tap(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tap(bool ok, const char *fmt, ...)
{
    va_list ap;
    printf("%sok %d - ", ok ? "" : "not ", ++tap_n);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok)
        tap_failed++;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- the server process ------------------------------------------------------- */

struct server {
    pid_t pid;
    int   out_fd;          /* its stdout */
    int   port;
    char  output[8192];    /* everything it printed */
    size_t output_len;
};

/* Read what the server printed, waiting up to timeout_ms for more. */
static bool server_read(struct server *s, int timeout_ms)
{
    struct pollfd pfd = {.fd = s->out_fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return false;
    ssize_t n = read(s->out_fd, s->output + s->output_len, sizeof s->output - 1 - s->output_len);
    if (n <= 0)
        return false;
    s->output_len += (size_t)n;
    s->output[s->output_len] = '\0';
    return true;
}

/* Start path with the common options and then extra (NULL-terminated). */
static bool server_start(struct server *s, const char *path, const char *dir,
                         const char *const *extra)
{
    int fds[2];
    memset(s, 0, sizeof *s);
    if (pipe(fds) != 0)
        return false;
    fflush(stdout);
    s->pid = fork();
    if (s->pid < 0)
        return false;
    if (s->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        const char *common[] = {path, "--port", "0", "--workers", "2", "--grace", "1000",
                                "--dir", dir};
        enum { N_COMMON = sizeof common / sizeof common[0], MAX_EXTRA = 16 };
        /* execv() wants writable strings: copy them. */
        char *args[N_COMMON + MAX_EXTRA + 1];
        size_t n = 0;
        for (size_t i = 0; i < N_COMMON; i++)
            args[n++] = strdup(common[i]);
        for (size_t i = 0; extra != NULL && extra[i] != NULL && i < MAX_EXTRA; i++)
            args[n++] = strdup(extra[i]);
        args[n] = NULL;
        execv(path, args);
        fprintf(stderr, "smoke_http_offload: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    s->out_fd = fds[0];
    /* The first line names the port: "... listening on http://127.0.0.1:PORT/ ...". */
    double deadline = now_ms() + STEP_TIMEOUT_S * 1000.0;
    while (strchr(s->output, '\n') == NULL && now_ms() < deadline)
        if (!server_read(s, 1000) && waitpid(s->pid, NULL, WNOHANG) != 0)
            return false;
    const char *at = strstr(s->output, "127.0.0.1:");
    return at != NULL && sscanf(at, "127.0.0.1:%d", &s->port) == 1 && s->port > 0;
}

/* Signal the server and wait (bounded) for its exit status; -1 on a hang. */
static int server_stop(struct server *s, int signo)
{
    if (signo != 0)
        kill(s->pid, signo);
    double deadline = now_ms() + STEP_TIMEOUT_S * 1000.0;
    int status;
    for (;;) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid)
            break;
        if (now_ms() > deadline) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            status = -1;
            break;
        }
        server_read(s, 50);
    }
    while (server_read(s, 0))
        ;
    close(s->out_fd);
    if (status == -1)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- a small asynchronous HTTP client on libevent ------------------------------ */

struct client;

struct call {
    struct client            *client;
    struct evhttp_connection *conn;
    struct evhttp_request    *req;
    int                       code;     /* 0 = no answer (yet) */
    bool                      done;
    char                      body[256];
    size_t                    body_len; /* full length, even when truncated */
    double                    sent_ms, latency_ms;
    void                    (*then)(struct call *);
    void                     *user;     /* for then() */
};

struct client {
    struct event_base *base;
    int                port;
    unsigned           outstanding;
};

static void on_response(struct evhttp_request *req, void *arg)
{
    struct call *c = arg;
    c->done = true;
    c->latency_ms = now_ms() - c->sent_ms;
    c->req = NULL;   /* libevent frees it after this callback */
    if (req != NULL) {
        c->code = evhttp_request_get_response_code(req);
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        c->body_len = evbuffer_get_length(in);
        size_t n = c->body_len < sizeof c->body - 1 ? c->body_len : sizeof c->body - 1;
        evbuffer_copyout(in, c->body, n);
        c->body[n] = '\0';
    }
    c->client->outstanding--;
    if (c->then)
        c->then(c);
}

/* Send uri on a connection of its own: a GET, or with data a POST of len bytes. */
static bool call_send_data(struct client *cl, struct call *c, const char *uri,
                           const char *data, size_t len)
{
    c->client = cl;
    c->done = false;
    c->code = 0;
    if (c->conn == NULL)
        c->conn = evhttp_connection_base_new(cl->base, NULL, "127.0.0.1", (ev_uint16_t)cl->port);
    c->req = c->conn ? evhttp_request_new(on_response, c) : NULL;
    if (c->req == NULL)
        return false;
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Host", "127.0.0.1");
    if (data != NULL)
        evbuffer_add(evhttp_request_get_output_buffer(c->req), data, len);
    c->sent_ms = now_ms();
    if (evhttp_make_request(c->conn, c->req, data ? EVHTTP_REQ_POST : EVHTTP_REQ_GET, uri) != 0) {
        c->req = NULL;   /* freed by evhttp_make_request on failure */
        return false;
    }
    cl->outstanding++;
    return true;
}

static bool call_send(struct client *cl, struct call *c, const char *uri)
{
    return call_send_data(cl, c, uri, NULL, 0);
}

static void call_close(struct call *c)
{
    if (c->conn)
        evhttp_connection_free(c->conn);
    c->conn = NULL;
}

static void on_step_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run the loop until `one` is answered (or, with one NULL, every call), or
 * the hang guard fires. */
static bool client_wait(struct client *cl, const struct call *one)
{
    bool timed_out = false;
    struct timeval tv = {STEP_TIMEOUT_S, 0};
    struct event *guard = evtimer_new(cl->base, on_step_timeout, &timed_out);
    evtimer_add(guard, &tv);
    while (!timed_out && (one ? !one->done : cl->outstanding > 0))
        event_base_loop(cl->base, EVLOOP_ONCE);
    event_free(guard);
    return one ? one->done : cl->outstanding == 0;
}

static bool client_run(struct client *cl)
{
    return client_wait(cl, NULL);
}

/* One request, synchronously: a GET, or with data a POST; returns the status
 * code (0 = no answer). */
static int request(struct client *cl, const char *uri, const char *data, size_t len,
                   char *body, size_t size)
{
    struct call c = {0};
    if (!call_send_data(cl, &c, uri, data, len)) {
        call_close(&c);
        return 0;
    }
    client_wait(cl, &c);
    if (body != NULL)
        snprintf(body, size, "%s", c.body);
    if (c.req != NULL) {         /* hang guard fired: drop the request */
        evhttp_cancel_request(c.req);
        cl->outstanding--;
    }
    call_close(&c);
    return c.code;
}

static int get(struct client *cl, const char *uri, char *body, size_t size)
{
    return request(cl, uri, NULL, 0, body, size);
}

static int post(struct client *cl, const char *uri, const char *data, char *body, size_t size)
{
    return request(cl, uri, data, strlen(data), body, size);
}

/* A counter out of /stats. */
static long stat_of(struct client *cl, const char *key)
{
    char body[256], pat[32];
    if (get(cl, "/stats", body, sizeof body) != 200)
        return -1;
    snprintf(pat, sizeof pat, "%s=", key);
    const char *at = strstr(body, pat);
    return at ? strtol(at + strlen(pat), NULL, 10) : -1;
}

/* ---- the load step: /hash requests and /ping probes ----------------------------- */

/* Probes go out open-loop, one every PROBE_INTERVAL_US on a connection of its
 * own, for as long as /hash requests are outstanding: a blocked loop then
 * shows as a queue of late pings, not as one. */
#define PROBE_INTERVAL_US 5000

struct load {
    struct client *cl;
    struct call    hashes[LOAD_REQUESTS];
    struct call    pings[MAX_PINGS];
    unsigned       n_sent;
    unsigned       hashes_left;
    double         latencies[MAX_PINGS];
    unsigned       n_pings;
    unsigned       pings_while_saturated;
    struct event  *probe_timer;
};

static void on_ping_answer(struct call *c)
{
    struct load *ld = c->user;
    if (c->code == 200 && strcmp(c->body, "pong\n") == 0) {
        ld->latencies[ld->n_pings++] = c->latency_ms;
        if (ld->hashes_left > WORKERS)
            ld->pings_while_saturated++;
    }
}

static void send_probe(evutil_socket_t fd, short what, void *arg)
{
    struct load *ld = arg;
    (void)fd;
    (void)what;
    if (ld->hashes_left == 0 || ld->n_sent == MAX_PINGS) {
        event_del(ld->probe_timer);
        ld->cl->outstanding--;     /* the timer was counted as outstanding */
        return;
    }
    struct call *c = &ld->pings[ld->n_sent++];
    c->then = on_ping_answer;
    c->user = ld;
    call_send(ld->cl, c, "/ping");   /* a failed send just has no answer */
}

static void on_hash_answer(struct call *c)
{
    struct load *ld = c->user;
    ld->hashes_left--;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs the load; returns false if some request got no answer. */
static bool run_load(struct client *cl, struct load *ld)
{
    memset(ld, 0, sizeof *ld);
    ld->cl = cl;
    ld->probe_timer = event_new(cl->base, -1, EV_PERSIST, send_probe, ld);
    bool sent = ld->probe_timer != NULL;
    for (unsigned i = 0; i < LOAD_REQUESTS && sent; i++) {
        ld->hashes[i].then = on_hash_answer;
        ld->hashes[i].user = ld;
        sent = call_send(cl, &ld->hashes[i], "/hash?rounds=" LOAD_ROUNDS);
        ld->hashes_left += sent;
    }
    if (sent) {
        struct timeval tv = {0, PROBE_INTERVAL_US};
        event_add(ld->probe_timer, &tv);
        cl->outstanding++;            /* until the timer stops itself */
        send_probe(-1, 0, ld);        /* the first probe right away */
    }
    bool answered = sent && client_run(cl);
    for (unsigned i = 0; i < LOAD_REQUESTS; i++) {
        if (ld->hashes[i].req != NULL)
            evhttp_cancel_request(ld->hashes[i].req);
        call_close(&ld->hashes[i]);
    }
    for (unsigned i = 0; i < ld->n_sent; i++) {
        if (ld->pings[i].req != NULL)
            evhttp_cancel_request(ld->pings[i].req);
        call_close(&ld->pings[i]);
    }
    if (ld->probe_timer)
        event_free(ld->probe_timer);
    cl->outstanding = 0;
    return answered;
}

static void print_latencies(const char *mode, struct load *ld)
{
    if (ld->n_pings == 0) {
        printf("# %s: no /ping answered during the load\n", mode);
        return;
    }
    qsort(ld->latencies, ld->n_pings, sizeof *ld->latencies, cmp_double);
    printf("# %s: /ping round trip (new connection, one every %d ms) while %d x "
           "/hash?rounds=%s ran (%d workers): n=%u min=%.3f p50=%.3f p90=%.3f max=%.3f ms\n",
           mode, PROBE_INTERVAL_US / 1000, LOAD_REQUESTS, LOAD_ROUNDS, WORKERS, ld->n_pings, ld->latencies[0],
           ld->latencies[ld->n_pings / 2], ld->latencies[ld->n_pings * 9 / 10],
           ld->latencies[ld->n_pings - 1]);
}

/* ---- the steps -------------------------------------------------------------------- */

static char offload_hash[256];   /* the /hash answer in offload mode */

static void check_files(struct client *cl, const char *mode, const char *dir)
{
    char body[256], path[4096], expected[256] = "";
    snprintf(path, sizeof path, "%s/local.mk", dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        size_t n = fread(expected, 1, sizeof expected - 1, f);
        expected[n] = '\0';
        fclose(f);
    }
    int code = get(cl, "/file?name=local.mk", body, sizeof body);
    tap(code == 200 && expected[0] != '\0' && strncmp(body, expected, 200) == 0,
        "%s: /file?name=local.mk serves the file (HTTP %d)", mode, code);
    code = get(cl, "/file?name=../configure.ac", NULL, 0);
    tap(code == 400, "%s: /file?name=../configure.ac is refused with 400 (HTTP %d)", mode, code);
    code = get(cl, "/file?name=%2Fetc%2Fpasswd", NULL, 0);
    tap(code == 400, "%s: /file?name=/etc/passwd is refused with 400 (HTTP %d)", mode, code);
    code = get(cl, "/file?name=a/../../configure.ac", NULL, 0);
    tap(code == 400, "%s: /file?name=a/../../configure.ac is refused with 400 (HTTP %d)",
        mode, code);
    code = get(cl, "/file?name=no-such-file", NULL, 0);
    tap(code == 404, "%s: /file?name=no-such-file is 404 (HTTP %d)", mode, code);
}

/* ---- /append and its log ------------------------------------------------------------ */

static char log_dir[4096];       /* a temporary directory for the logs */

/* How many lines of the file at path are exactly `line`; -1 if it cannot be
 * read or does not end with a whole line. */
static int count_lines(const char *path, const char *line)
{
    char buf[2048];
    int n = 0, last = '\n';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    while (fgets(buf, sizeof buf, f) != NULL) {
        size_t len = strlen(buf);
        last = buf[len - 1];
        if (last == '\n')
            buf[len - 1] = '\0';
        n += strcmp(buf, line) == 0;
    }
    fclose(f);
    return last == '\n' ? n : -1;
}

static long file_size(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    return size;
}

/* Offload only: appends within the deadline, and bad input. */
static void check_append(struct client *cl, const char *log)
{
    char body[256], long_line[2001];
    int code = post(cl, "/append", "hello from the smoke test", body, sizeof body);
    tap(code == 200 && strncmp(body, "written", 7) == 0 &&
        count_lines(log, "hello from the smoke test") == 1,
        "offload: POST /append within the deadline answers 200 and the line is in the log "
        "(HTTP %d)", code);
    long size = file_size(log);
    int empty = post(cl, "/append", "", NULL, 0), ctrl = post(cl, "/append", "a\001b", NULL, 0),
        two = post(cl, "/append", "two\nlines", NULL, 0);
    tap(empty == 400 && ctrl == 400 && two == 400 && file_size(log) == size,
        "offload: an empty body, a control character or two lines are refused with 400 and "
        "nothing is written (HTTP %d %d %d)", empty, ctrl, two);
    memset(long_line, 'x', sizeof long_line - 1);
    long_line[sizeof long_line - 1] = '\0';
    code = post(cl, "/append", long_line, NULL, 0);
    tap(code == 413 && file_size(log) == size,
        "offload: a line over 1024 bytes is refused with 413 (HTTP %d)", code);
    code = get(cl, "/append", NULL, 0);
    tap(code == 405, "offload: GET /append is refused with 405 (HTTP %d)", code);
}

/* Deadline server: more appends than workers, each slower than the
 * deadline. Whatever each answer says -- written after the deadline, or
 * nothing written -- the log must agree, once the answer is in. */
#define SLOW_APPENDS 3
static void check_append_past_deadline(struct client *cl, const char *log)
{
    struct call calls[SLOW_APPENDS] = {{0}};
    char lines[SLOW_APPENDS][32];
    bool sent = true;
    for (int i = 0; i < SLOW_APPENDS && sent; i++) {
        snprintf(lines[i], sizeof lines[i], "slow line %d", i + 1);
        sent = call_send_data(cl, &calls[i], "/append", lines[i], strlen(lines[i]));
    }
    bool answered = sent && client_run(cl);
    int n_written = 0, n_not = 0;
    for (int i = 0; i < SLOW_APPENDS; i++) {
        struct call *c = &calls[i];
        /* Only now, after the answer: the file must say the same. */
        int in_log = count_lines(log, lines[i]);
        bool says_written = c->code == 200 && strncmp(c->body, "written", 7) == 0;
        bool says_not = c->code == 504 && strstr(c->body, "nothing was written") != NULL;
        n_written += says_written;
        n_not += says_not;
        tap(answered && ((says_written && in_log == 1) || (says_not && in_log == 0)),
            "deadline: an /append slower than the deadline is answered truthfully "
            "(HTTP %d, %s; in the log %d times)",
            c->code, says_written ? "written" : says_not ? "nothing written" : "unclear",
            in_log);
        printf("#   \"%s\": %.*s\n", lines[i], (int)strcspn(c->body, "\n"), c->body);
        if (c->req != NULL)
            evhttp_cancel_request(c->req);
        call_close(c);
    }
    cl->outstanding = 0;
    long expected = 0;
    for (int i = 0; i < SLOW_APPENDS; i++)
        expected += calls[i].code == 200 ? (long)strlen(lines[i]) + 1 : 0;
    long size = file_size(log);
    tap(answered && size == expected,
        "deadline: the log holds whole lines, exactly those answered written "
        "(%d written, %d not; %ld bytes, %ld expected)", n_written, n_not, size, expected);
}

/* Offload only: a client hangs up while its work runs. */
static void check_client_gone(struct client *cl)
{
    struct call c = {0};
    bool sent = call_send(cl, &c, "/hash?rounds=" HUGE_ROUNDS);
    /* Wait until the server has it in flight, then hang up. */
    long in_flight = 0;
    for (int i = 0; sent && i < 2000 && (in_flight = stat_of(cl, "in_flight")) < 1; i++)
        ;
    if (c.req != NULL)
        evhttp_cancel_request(c.req);   /* closes the connection; no callback */
    c.req = NULL;
    call_close(&c);
    cl->outstanding = 0;
    /* The server notices and cancels the work: poll until nothing is in flight. */
    long gone = -1;
    for (int i = 0; in_flight >= 1 && i < 20000; i++) {
        if (stat_of(cl, "in_flight") == 0) {
            gone = stat_of(cl, "gone");
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    tap(in_flight >= 1 && gone == 1,
        "offload: a client that hangs up mid-work has its work cancelled (gone=%ld)", gone);
    char body[64];
    tap(get(cl, "/ping", body, sizeof body) == 200, "offload: /ping still answers afterwards");
}

/* Offload only: SIGTERM with two requests in flight. */
static void check_shutdown(struct client *cl, struct server *srv)
{
    struct call quick = {0}, slow = {0};
    bool sent = call_send(cl, &quick, "/hash?rounds=" LOAD_ROUNDS) &&
                call_send(cl, &slow, "/hash?rounds=" HUGE_ROUNDS);
    long in_flight = 0;
    for (int i = 0; sent && i < 2000 && (in_flight = stat_of(cl, "in_flight")) < 2; i++)
        ;
    kill(srv->pid, SIGTERM);
    bool answered = in_flight >= 1 && client_run(cl);
    tap(answered && (quick.code == 200 || quick.code == 503) && slow.code == 503,
        "offload: SIGTERM with requests in flight answers them (quick %d, slow %d)",
        quick.code, slow.code);
    if (quick.req != NULL)
        evhttp_cancel_request(quick.req);
    if (slow.req != NULL)
        evhttp_cancel_request(slow.req);
    call_close(&quick);
    call_close(&slow);
    cl->outstanding = 0;
}

/* A server with a short --deadline: a /hash that misses it is answered 504,
 * its work cancelled, and the server goes on serving; /append on storage
 * slower than the deadline says truthfully whether it wrote. */
static void run_deadline(const char *server_path, const char *dir)
{
    char log[sizeof log_dir + 32];
    snprintf(log, sizeof log, "%s/deadline.log", log_dir);
    const char *const args[] = {"--deadline", DEADLINE_MS, "--log", log,
                                "--append-delay", APPEND_DELAY_MS, NULL};
    struct server srv;
    struct client cl = {0};
    char body[256];

    bool started = server_start(&srv, server_path, dir, args);
    tap(started, "deadline: server started with --deadline " DEADLINE_MS ", port %d", srv.port);
    if (!started) {
        if (srv.pid > 0)
            server_stop(&srv, SIGKILL);
        return;
    }
    cl.base = event_base_new();
    cl.port = srv.port;

    int code = get(&cl, "/hash?rounds=" HUGE_ROUNDS, body, sizeof body);
    tap(code == 504 && strstr(body, "deadline") != NULL,
        "deadline: a /hash longer than the deadline is answered 504 (HTTP %d)", code);
    long timed_out = stat_of(&cl, "timed_out"), in_flight = stat_of(&cl, "in_flight");
    tap(timed_out == 1 && in_flight == 0,
        "deadline: the request is counted as timed out and no longer in flight "
        "(timed_out=%ld in_flight=%ld)", timed_out, in_flight);
    code = get(&cl, "/ping", body, sizeof body);
    tap(code == 200, "deadline: /ping still answers afterwards (HTTP %d)", code);
    code = get(&cl, "/hash?rounds=" SMALL_ROUNDS, body, sizeof body);
    tap(code == 200 && strncmp(body, "rounds=" SMALL_ROUNDS " ", strlen("rounds=" SMALL_ROUNDS " ")) == 0,
        "deadline: a short /hash within the deadline is answered 200 (HTTP %d)", code);
    check_append_past_deadline(&cl, log);

    int status = server_stop(&srv, SIGTERM);
    tap(status == 0, "deadline: server exits 0 after SIGTERM (status %d)", status);
    const char *summary = strstr(srv.output, "http_offload: served");
    if (summary != NULL)
        printf("# %.*s\n", (int)strcspn(summary, "\n"), summary);
    event_base_free(cl.base);
}

static void run_mode(const char *server_path, const char *dir, bool inline_mode)
{
    const char *mode = inline_mode ? "inline" : "offload";
    struct server srv;
    struct client cl = {0};
    char body[256];

    char log[sizeof log_dir + 32];
    snprintf(log, sizeof log, "%s/offload.log", log_dir);
    /* The inline server has no --log. */
    const char *const offload_args[] = {"--log", log, NULL}, *const inline_args[] = {"--inline", NULL};
    bool started = server_start(&srv, server_path, dir, inline_mode ? inline_args : offload_args);
    tap(started, "%s: server started, port %d", mode, srv.port);
    if (!started) {
        if (srv.pid > 0)
            server_stop(&srv, SIGKILL);
        return;
    }
    cl.base = event_base_new();
    cl.port = srv.port;

    int code = get(&cl, "/ping", body, sizeof body);
    tap(code == 200 && strcmp(body, "pong\n") == 0, "%s: /ping answers pong (HTTP %d)", mode, code);

    struct load *ld = calloc(1, sizeof *ld);
    bool answered = ld != NULL && run_load(&cl, ld);
    bool same = answered;
    for (unsigned i = 0; answered && i < LOAD_REQUESTS; i++)
        same = same && ld->hashes[i].code == 200 &&
               strcmp(ld->hashes[i].body, ld->hashes[0].body) == 0;
    tap(same, "%s: %d concurrent /hash requests all answered alike", mode, LOAD_REQUESTS);
    if (!inline_mode) {
        tap(ld != NULL && ld->pings_while_saturated > 0,
            "offload: /ping answered while the pool was saturated (%u times)",
            ld ? ld->pings_while_saturated : 0);
        snprintf(offload_hash, sizeof offload_hash, "%s", same ? ld->hashes[0].body : "");
    } else {
        tap(same && strcmp(ld->hashes[0].body, offload_hash) == 0,
            "inline: /hash answers as in offload mode");
    }
    if (ld != NULL)
        print_latencies(mode, ld);
    free(ld);

    code = get(&cl, "/hash?rounds=zero", NULL, 0);
    tap(code == 400, "%s: /hash?rounds=zero is refused with 400 (HTTP %d)", mode, code);
    check_files(&cl, mode, dir);

    if (inline_mode) {
        code = post(&cl, "/append", "no log here", body, sizeof body);
        tap(code == 404, "inline: POST /append without --log is 404 (HTTP %d)", code);
    } else {
        check_append(&cl, log);
    }
    if (!inline_mode) {
        check_client_gone(&cl);
        check_shutdown(&cl, &srv);
    }
    int status = server_stop(&srv, inline_mode ? SIGINT : 0);
    tap(status == 0, "%s: server exits 0 after %s (status %d)", mode,
        inline_mode ? "SIGINT" : "SIGTERM", status);
    const char *summary = strstr(srv.output, "http_offload: served");
    if (summary != NULL)
        printf("# %.*s\n", (int)strcspn(summary, "\n"), summary);
    event_base_free(cl.base);
}

int main(int argc, char **argv)
{
    const char *builddir = getenv("top_builddir"), *srcdir = getenv("top_srcdir");
    char server_path[4096], dir[4096];

    snprintf(server_path, sizeof server_path, "%s/samples/http_offload", builddir ? builddir : ".");
    snprintf(dir, sizeof dir, "%s/samples", srcdir ? srcdir : ".");
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--server") == 0)
            snprintf(server_path, sizeof server_path, "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            snprintf(dir, sizeof dir, "%s", argv[i + 1]);
    }
    signal(SIGPIPE, SIG_IGN);

    const char *tmp = getenv("TMPDIR");
    snprintf(log_dir, sizeof log_dir, "%s/smoke_http_offload.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(log_dir) == NULL) {
        printf("Bail out! cannot make a directory for the logs: %s\n", strerror(errno));
        return 1;
    }

    printf("1..%d\n", 18 + 12 + 6 + SLOW_APPENDS + 1);
    run_mode(server_path, dir, false);
    run_mode(server_path, dir, true);
    run_deadline(server_path, dir);

    char path[sizeof log_dir + 32];
    snprintf(path, sizeof path, "%s/offload.log", log_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/deadline.log", log_dir);
    unlink(path);
    rmdir(log_dir);
    return tap_failed ? 1 : 0;
}
