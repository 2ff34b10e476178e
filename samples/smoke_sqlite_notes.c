/*
 * smoke_sqlite_notes.c -- `make check` smoke test of samples/sqlite_notes,
 * driven with libevent's own HTTP client. Prints TAP.
 *
 * It makes a database of 300000 seeded notes in a temporary directory and
 * runs the server on an ephemeral port of 127.0.0.1 (parsed from its first
 * line) three times:
 *   1. the pool mode with a generous deadline: first, with the database
 *      locked by another process for longer than SQLite's busy timeout, the
 *      first worker fails to open its connection and a later one succeeds
 *      once the lock is gone (EVEXEC_POOL_INIT_RETRY); then the routes, then hostile
 *      input -- malformed ids, a 10 MB body, an empty body, invalid UTF-8,
 *      text full of quotes and control characters, LIKE wildcards (%, _, \)
 *      and SQL in q, wrong methods -- each reply checked to be valid JSON
 *      with the right status; a point read answered while /search requests
 *      queue behind the scan limit; a client that hangs up mid-scan has its
 *      query stopped; SIGTERM with a scan in flight and an idle keep-alive
 *      connection open answers the scan and exits 0;
 *   2. the pool mode with a 1 ms deadline: /search answers 504 and its
 *      query is stopped, never run to the end; writes answer 201 or 504, and
 *      exactly the 201s are in the database afterwards;
 *   3. --inline, briefly, then SIGINT.
 * After each run `sqlite_notes --check` must find the database intact
 * (PRAGMA integrity_check) and holding exactly the notes acknowledged.
 * A sanitizer build runs the server under the sanitizer too: a leak makes
 * it exit nonzero, which fails the run's exit test.
 *
 * The hang-up and deadline checks rely on a scan of 300000 rows taking far
 * longer (tens of ms) than noticing a closed socket or a 1 ms timer; the
 * hang-up check is tried up to three times.
 *
 * Usage: smoke_sqlite_notes [--server PATH]
 * The default comes from $top_builddir, which `make check` sets.
 */
#include <errno.h>
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
#include <sqlite3.h>

#define SEED_ROWS       "300000"
#define STEP_TIMEOUT_S  60           /* hang guard of each step */
#define MAX_BODY        (1u << 20)   /* what the client keeps of a reply */

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

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- JSON: a strict validator that can also pick top-level fields ---------------- */

struct json {
    const unsigned char *p, *end;
};

static bool j_ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
    return j->p < j->end;
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool j_hex4(struct json *j, unsigned *out)
{
    if (j->end - j->p < 4)
        return false;
    *out = 0;
    for (int i = 0; i < 4; i++) {
        int v = hexval(*j->p++);
        if (v < 0)
            return false;
        *out = *out * 16 + (unsigned)v;
    }
    return true;
}

static void put_utf8(unsigned cp, char *out, size_t cap, size_t *len)
{
    unsigned char b[4];
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    static const unsigned char lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
    for (size_t i = n - 1; i > 0; i--, cp >>= 6)
        b[i] = (unsigned char)(0x80 | (cp & 0x3f));
    b[0] = (unsigned char)(lead[n] | cp);
    for (size_t i = 0; i < n; i++)
        if (out != NULL && *len < cap)
            out[(*len)++] = (char)b[i];
}

/* A string at j->p (the opening quote), decoded into out (if not NULL). Raw
 * bytes must be well-formed UTF-8, escapes well-formed, surrogates paired. */
static bool j_string(struct json *j, char *out, size_t cap, size_t *len)
{
    size_t dummy = 0;
    if (len == NULL)
        len = &dummy;
    *len = 0;
    if (j->p >= j->end || *j->p++ != '"')
        return false;
    while (j->p < j->end) {
        unsigned char c = *j->p++;
        if (c == '"')
            return true;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (j->p >= j->end)
                return false;
            unsigned char e = *j->p++;
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e != 0 && simple != NULL) {
                static const char decoded[] = "\"\\/\b\f\n\r\t";
                put_utf8((unsigned char)decoded[simple - "\"\\/bfnrt"], out, cap, len);
                continue;
            }
            unsigned cp, lo;
            if (e != 'u' || !j_hex4(j, &cp))
                return false;
            if (cp >= 0xdc00 && cp <= 0xdfff)
                return false;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u')
                    return false;
                j->p += 2;
                if (!j_hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff)
                    return false;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            put_utf8(cp, out, cap, len);
            continue;
        }
        size_t need = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2
                    : c >= 0xf0 && c <= 0xf4 ? 3 : 9;
        if (need == 9 || j->end - j->p < (ptrdiff_t)need)
            return false;
        unsigned char lo8 = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi8 = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (out != NULL && *len < cap)
            out[(*len)++] = (char)c;
        for (size_t i = 0; i < need; i++) {
            unsigned char b = *j->p++;
            if (b < (i == 0 ? lo8 : 0x80) || b > (i == 0 ? hi8 : 0xbf))
                return false;
            if (out != NULL && *len < cap)
                out[(*len)++] = (char)b;
        }
    }
    return false;
}

static bool j_value(struct json *j, int depth);

static bool j_number(struct json *j)
{
    const unsigned char *start = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p < j->end && *j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    else
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > start;
}

static bool j_value(struct json *j, int depth)
{
    if (depth > 64 || !j_ws(j))
        return false;
    unsigned char c = *j->p;
    if (c == '"')
        return j_string(j, NULL, 0, NULL);
    if (c == '{' || c == '[') {
        unsigned char close = c == '{' ? '}' : ']';
        j->p++;
        if (j_ws(j) && *j->p == close) {
            j->p++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                if (!j_ws(j) || !j_string(j, NULL, 0, NULL) || !j_ws(j) || *j->p++ != ':')
                    return false;
            }
            if (!j_value(j, depth + 1) || !j_ws(j))
                return false;
            unsigned char d = *j->p++;
            if (d == close)
                return true;
            if (d != ',')
                return false;
        }
    }
    static const char *const literals[] = {"true", "false", "null"};
    for (size_t i = 0; i < sizeof literals / sizeof *literals; i++) {
        const char *const *lit = &literals[i];
        size_t n = strlen(*lit);
        if ((size_t)(j->end - j->p) >= n && memcmp(j->p, *lit, n) == 0) {
            j->p += n;
            return true;
        }
    }
    return j_number(j);
}

static bool json_valid(const char *s, size_t len)
{
    struct json j = {(const unsigned char *)s, (const unsigned char *)s + len};
    return j_value(&j, 0) && !j_ws(&j);
}

/* Find top-level field key of a valid JSON object; j->p is left on its value. */
static bool json_field(const char *s, size_t len, const char *key, struct json *j)
{
    char name[64];
    size_t n;
    *j = (struct json){(const unsigned char *)s, (const unsigned char *)s + len};
    if (!json_valid(s, len) || !j_ws(j) || *j->p++ != '{')
        return false;
    while (j_ws(j) && *j->p == '"') {
        if (!j_string(j, name, sizeof name - 1, &n) || !j_ws(j) || *j->p++ != ':' || !j_ws(j))
            return false;
        name[n] = '\0';
        if (strcmp(name, key) == 0)
            return true;
        if (!j_value(j, 1) || !j_ws(j) || *j->p++ != ',')
            return false;
    }
    return false;
}

/* A top-level integer field, or -1. */
static long long json_int(const char *s, size_t len, const char *key)
{
    struct json j;
    if (!json_field(s, len, key, &j) || j.p >= j.end || *j.p < '0' || *j.p > '9')
        return -1;
    return strtoll((const char *)j.p, NULL, 10);
}

/* A top-level string field, decoded into out (NUL-terminated); its length or -1. */
static long json_str(const char *s, size_t len, const char *key, char *out, size_t cap)
{
    struct json j;
    size_t n;
    if (!json_field(s, len, key, &j) || !j_string(&j, out, cap - 1, &n))
        return -1;
    out[n] = '\0';
    return (long)n;
}

/* ---- the server process ------------------------------------------------------------ */

struct server {
    pid_t  pid;
    int    out_fd;                 /* its stdout */
    int    port;
    char   output[8192];           /* everything it printed */
    size_t output_len;
};

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

/* Run path with args (NULL-terminated, argv[0] excluded), stdout to a pipe. */
static bool spawn(struct server *s, const char *path, char *const *args)
{
    int fds[2];
    char *argv[16];
    size_t n = 0;
    memset(s, 0, sizeof *s);
    argv[n++] = (char *)(uintptr_t)path;
    while (*args != NULL && n < 15)
        argv[n++] = *args++;
    argv[n] = NULL;
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
        execv(path, argv);
        fprintf(stderr, "smoke_sqlite_notes: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    s->out_fd = fds[0];
    return true;
}

/* Wait (bounded) for the exit status after signo (0: none); -1 on a hang. */
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
        server_read(s, 20);
    }
    while (server_read(s, 0))
        ;
    close(s->out_fd);
    if (status == -1)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Start the server and parse "listening on 127.0.0.1:PORT" from its output. */
static bool server_start(struct server *s, const char *path, char *const *args)
{
    if (!spawn(s, path, args))
        return false;
    double deadline = now_ms() + STEP_TIMEOUT_S * 1000.0;
    const char *at;
    while ((at = strstr(s->output, "listening on 127.0.0.1:")) == NULL && now_ms() < deadline)
        if (!server_read(s, 1000) && waitpid(s->pid, NULL, WNOHANG) != 0)
            return false;
    return at != NULL && sscanf(at, "listening on 127.0.0.1:%d", &s->port) == 1 && s->port > 0;
}

/* `sqlite_notes --check --db FILE`: true if intact; *notes gets the count. */
static bool check_db(const char *path, const char *db, long long *notes)
{
    struct server s;
    char a_check[] = "--check", a_db[] = "--db", a_file[4096];
    snprintf(a_file, sizeof a_file, "%s", db);
    char *args[] = {a_check, a_db, a_file, NULL};
    *notes = -1;
    if (!spawn(&s, path, args))
        return false;
    int status = server_stop(&s, 0);
    const char *at = strstr(s.output, "notes: ");
    if (at != NULL)
        *notes = strtoll(at + 7, NULL, 10);
    return status == 0 && strstr(s.output, "integrity_check: ok\n") != NULL;
}

/* ---- a small asynchronous HTTP client on libevent -------------------------------------- */

struct client {
    struct event_base *base;
    int                port;
};

struct call {
    struct client            *cl;
    struct evhttp_connection *conn;
    struct evhttp_request    *req;
    bool                      done;
    int                       code;          /* 0 = no answer */
    char                     *body;          /* NUL-terminated, at most MAX_BODY */
    size_t                    len;
    struct call             **order;         /* optional: where to note the answer order */
};

static void on_response(struct evhttp_request *req, void *arg)
{
    struct call *c = arg;
    c->done = true;
    c->req = NULL;                           /* libevent frees it after this */
    if (req == NULL)
        return;
    c->code = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n > MAX_BODY)
        n = MAX_BODY;
    c->body = malloc(n + 1);
    if (c->body != NULL) {
        evbuffer_copyout(in, c->body, n);
        c->body[n] = '\0';
        c->len = n;
    }
    if (c->order != NULL) {
        while (*c->order != NULL)
            c->order++;
        *c->order = c;
    }
}

/* Send a request on c's connection (made on first use). */
static bool call_send(struct client *cl, struct call *c, enum evhttp_cmd_type method,
                      const char *uri, const void *body, size_t len)
{
    c->cl = cl;
    c->done = false;
    c->code = 0;
    free(c->body);
    c->body = NULL;
    c->len = 0;
    if (c->conn == NULL)
        c->conn = evhttp_connection_base_new(cl->base, NULL, "127.0.0.1", (ev_uint16_t)cl->port);
    c->req = c->conn ? evhttp_request_new(on_response, c) : NULL;
    if (c->req == NULL)
        return false;
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Host", "127.0.0.1");
    if (len > 0)
        evbuffer_add(evhttp_request_get_output_buffer(c->req), body, len);
    if (evhttp_make_request(c->conn, c->req, method, uri) != 0) {
        c->req = NULL;                       /* freed by evhttp_make_request */
        return false;
    }
    return true;
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Run the loop until every call of cs[0..n) is answered, or the hang guard fires. */
static bool wait_all(struct client *cl, struct call *const *cs, size_t n)
{
    bool timed_out = false, all;
    struct timeval tv = {STEP_TIMEOUT_S, 0};
    struct event *guard = evtimer_new(cl->base, on_guard, &timed_out);
    evtimer_add(guard, &tv);
    do {
        all = true;
        for (size_t i = 0; i < n; i++)
            all = all && cs[i]->done;
        if (!all)
            event_base_loop(cl->base, EVLOOP_ONCE);
    } while (!all && !timed_out);
    event_free(guard);
    return all;
}

/* Drop the connection (and an unanswered request: the server sees a hang-up). */
static void call_close(struct call *c)
{
    if (c->req != NULL)
        evhttp_cancel_request(c->req);
    c->req = NULL;
    if (c->conn != NULL)
        evhttp_connection_free(c->conn);
    c->conn = NULL;
    free(c->body);
    c->body = NULL;
}

/* One request on a connection of its own; the reply stays in *c (call_close it). */
static int request(struct client *cl, struct call *c, enum evhttp_cmd_type method,
                   const char *uri, const void *body, size_t len)
{
    memset(c, 0, sizeof *c);
    if (call_send(cl, c, method, uri, body, len))
        wait_all(cl, &c, 1);
    if (c->conn != NULL) {                   /* keep the reply, drop the connection */
        if (c->req != NULL)
            evhttp_cancel_request(c->req);
        c->req = NULL;
        evhttp_connection_free(c->conn);
        c->conn = NULL;
    }
    return c->code;
}

static int get(struct client *cl, struct call *c, const char *uri)
{
    return request(cl, c, EVHTTP_REQ_GET, uri, NULL, 0);
}

static bool valid_reply(const struct call *c)
{
    return c->body != NULL && json_valid(c->body, c->len);
}

/* A counter of /stats, or -1. */
static long long stat_of(struct client *cl, const char *key)
{
    struct call c;
    long long v = get(cl, &c, "/stats") == 200 ? json_int(c.body, c.len, key) : -1;
    call_close(&c);
    return v;
}

/* Poll /stats until key reaches at least want (bounded); its last value. */
static long long wait_stat(struct client *cl, const char *key, long long want, bool at_most)
{
    long long v = -1;
    double deadline = now_ms() + STEP_TIMEOUT_S * 1000.0;
    while (now_ms() < deadline) {
        v = stat_of(cl, key);
        if (v >= 0 && (at_most ? v <= want : v >= want))
            break;
        sleep_ms(1);
    }
    return v;
}

/* POST text; the new id, or -1 (the status in *code). */
static long long post_note(struct client *cl, const void *text, size_t len, int *code)
{
    struct call c;
    *code = request(cl, &c, EVHTTP_REQ_POST, "/notes", text, len);
    long long id = *code == 201 ? json_int(c.body, c.len, "id") : -1;
    call_close(&c);
    return id;
}

/* ---- run 1: the pool mode, generous deadline ---------------------------------------- */

/* A child process that holds db locked (exclusive locking mode, a write
 * transaction open) for hold_ms, then rolls back -- what another program
 * may do to the server's database. Returns once the lock is held. */
static pid_t hold_lock(const char *db, long hold_ms)
{
    int fds[2];
    char c = 0;
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        sqlite3 *conn = NULL;
        close(fds[0]);
        int rc = sqlite3_open_v2(db, &conn, SQLITE_OPEN_READWRITE, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(conn, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;"
                              " INSERT INTO notes(text) VALUES ('held')", NULL, NULL, NULL);
        c = rc == SQLITE_OK ? 'y' : 'n';
        if (write(fds[1], &c, 1) == 1 && rc == SQLITE_OK)
            sleep_ms(hold_ms);
        sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(conn);
        _exit(rc == SQLITE_OK ? 0 : 1);
    }
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    if (pid > 0 && (poll(&pfd, 1, STEP_TIMEOUT_S * 1000) != 1 || read(fds[0], &c, 1) != 1))
        c = 0;
    close(fds[0]);
    if (pid > 0 && c != 'y') {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
    }
    return pid;
}

/* Before any worker exists: the database is locked for 3 s, longer than the
 * server's 2 s busy timeout, so the first worker cannot open its
 * connection. It fails alone; a later one opens it once the lock is gone. */
static void check_init_retry(struct client *cl, const char *db)
{
    struct call c;
    pid_t holder = hold_lock(db, 3000);
    int code = holder > 0 ? get(cl, &c, "/notes/1") : 0;
    tap(code == 200 && valid_reply(&c),
        "a request waits out a worker that could not open the locked database (HTTP %d)", code);
    call_close(&c);
    int status = -1;
    if (holder > 0)
        waitpid(holder, &status, 0);
    long long failures = stat_of(cl, "init_failures"), err = stat_of(cl, "last_init_error");
    tap(status == 0 && failures >= 1 && err == EBUSY,
        "/stats counts the failed worker start (%lld, last error %lld)", failures, err);
}

static const char tricky_text[] = "quote \" backslash \\ newline \n tab \t bell \x07 "
                                  "unit \x1f del \x7f e\xcc\x81 \xe2\x82\xac \xf0\x9f\x98\x80";
static const char bad_utf8[] = "ok \xff\xfe lone \x80 cut \xe2\x82 over \xc0\xaf "
                               "surrogate \xed\xa0\x80 big \xf4\x90\x80\x80 end";

static long long acknowledged;               /* notes the server said it stored */

static void check_routes(struct client *cl)
{
    struct call c;
    int code = get(cl, &c, "/ping");
    tap(code == 200 && valid_reply(&c) && strstr(c.body, "\"pong\":true") != NULL,
        "/ping answers {\"pong\":true} (HTTP %d)", code);
    call_close(&c);

    long long id = post_note(cl, tricky_text, sizeof tricky_text - 1, &code);
    acknowledged += code == 201;
    tap(code == 201 && id > 300000, "POST /notes stores text with quotes and control "
        "characters (HTTP %d, id %lld)", code, id);
    char path[64], text[512];
    snprintf(path, sizeof path, "/notes/%lld", id);
    code = get(cl, &c, path);
    long n = code == 200 ? json_str(c.body, c.len, "text", text, sizeof text) : -1;
    tap(code == 200 && valid_reply(&c) && n == (long)sizeof tricky_text - 1 &&
        memcmp(text, tricky_text, (size_t)n) == 0 && json_int(c.body, c.len, "id") == id,
        "GET %s returns valid JSON that decodes to the same bytes (HTTP %d)", path, code);
    call_close(&c);

    id = post_note(cl, bad_utf8, sizeof bad_utf8 - 1, &code);
    acknowledged += code == 201;
    snprintf(path, sizeof path, "/notes/%lld", id);
    int code2 = get(cl, &c, path);
    n = code2 == 200 ? json_str(c.body, c.len, "text", text, sizeof text) : -1;
    /* Every bad sequence became one U+FFFD: "\xff" "\xfe" "\x80" "\xe2\x82"
     * "\xc0" "\xaf" then "\xed" "\xa0" "\x80" and "\xf4" "\x90" "\x80" "\x80". */
    int replaced = 0;
    for (const char *p = text; n > 0 && (p = strstr(p, "\xef\xbf\xbd")) != NULL; p += 3)
        replaced++;
    tap(code == 201 && code2 == 200 && valid_reply(&c) && replaced == 13 &&
        strncmp(text, "ok ", 3) == 0 && strstr(text, " end") != NULL,
        "invalid UTF-8 is stored and comes back as valid JSON with U+FFFD (%d replaced)",
        replaced);
    call_close(&c);

    code = get(cl, &c, "/search?q=river");
    struct json j;
    long long matches = code == 200 ? json_int(c.body, c.len, "matches") : -1;
    tap(code == 200 && valid_reply(&c) && matches > 1000 && json_field(c.body, c.len, "notes", &j),
        "/search?q=river scans the seeded notes (HTTP %d, %lld matches)", code, matches);
    call_close(&c);
}

static void check_hostile(struct client *cl)
{
    static const char *const bad_ids[] = {
        "/notes/abc", "/notes/-1", "/notes/+1", "/notes/0", "/notes/007", "/notes/1x",
        "/notes/", "/notes/1/2", "/notes/%31", "/notes/1.0", "/notes/9223372036854775808",
        "/notes/99999999999999999999999",
    };
    struct call c;
    int code;
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        code = get(cl, &c, bad_ids[i]);
        tap(code == 400 && valid_reply(&c), "GET %s is refused with 400 (HTTP %d)", bad_ids[i],
            code);
        call_close(&c);
    }
    code = get(cl, &c, "/notes/9223372036854775807");
    tap(code == 404 && valid_reply(&c), "GET of the largest id is 404 (HTTP %d)", code);
    call_close(&c);

    size_t big = 10u << 20;
    char *body = malloc(big);
    if (body != NULL)
        memset(body, 'x', big);
    code = body ? request(cl, &c, EVHTTP_REQ_POST, "/notes", body, big) : 0;
    tap(code == 413, "a 10 MB body is refused with 413 (HTTP %d)", code);
    call_close(&c);
    free(body);
    code = request(cl, &c, EVHTTP_REQ_POST, "/notes", NULL, 0);
    tap(code == 400 && valid_reply(&c), "an empty note is refused with 400 (HTTP %d)", code);
    call_close(&c);

    /* Wildcards and SQL in q: each matches only itself. The seeded notes
     * hold none of these characters, the tricky note holds a backslash. */
    static const char pct[] = "100% sure", snake[] = "snake_case";
    long long id1 = post_note(cl, pct, sizeof pct - 1, &code);
    acknowledged += code == 201;
    long long id2 = post_note(cl, snake, sizeof snake - 1, &code);
    acknowledged += code == 201;
    static const struct { const char *uri; long long matches; } searches[] = {
        {"/search?q=%25", 1}, {"/search?q=_", 1}, {"/search?q=%5C", 1},
        {"/search?q=%25%25", 0}, {"/search?q=e_c", 1},
        {"/search?q=%27%3B%20DROP%20TABLE%20notes%3B%20--", 0},
        {"/search?q=%27%20OR%20%271%27%3D%271", 0},
    };
    for (size_t i = 0; i < sizeof searches / sizeof *searches; i++) {
        code = get(cl, &c, searches[i].uri);
        long long m = code == 200 ? json_int(c.body, c.len, "matches") : -1;
        tap(code == 200 && valid_reply(&c) && id1 > 0 && id2 > 0 && m == searches[i].matches,
            "GET %s matches only itself (HTTP %d, %lld matches)", searches[i].uri, code, m);
        call_close(&c);
    }
    static const char *const bad_q[] = {"/search", "/search?q=", "/search?x=1", "/search?q=%00"};
    for (size_t i = 0; i < sizeof bad_q / sizeof *bad_q; i++) {
        code = get(cl, &c, bad_q[i]);
        tap(code == 400 && valid_reply(&c), "GET %s is refused with 400 (HTTP %d)", bad_q[i], code);
        call_close(&c);
    }
    char longq[400] = "/search?q=";
    memset(longq + strlen(longq), 'a', 300);
    code = get(cl, &c, longq);
    tap(code == 400, "a 300-byte q is refused with 400 (HTTP %d)", code);
    call_close(&c);

    static const struct {
        enum evhttp_cmd_type method;
        const char *name, *uri;
        int code;
    } methods[] = {
        {EVHTTP_REQ_DELETE, "DELETE", "/notes", 405}, {EVHTTP_REQ_GET, "GET", "/notes", 405},
        {EVHTTP_REQ_PUT, "PUT", "/notes/1", 405}, {EVHTTP_REQ_POST, "POST", "/search?q=a", 405},
        {EVHTTP_REQ_POST, "POST", "/ping", 405}, {EVHTTP_REQ_GET, "GET", "/nope", 404},
    };
    for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
        code = request(cl, &c, methods[i].method, methods[i].uri, "x", 1);
        tap(code == methods[i].code && valid_reply(&c), "%s %s is %d (HTTP %d)",
            methods[i].name, methods[i].uri, methods[i].code, code);
        call_close(&c);
    }

    code = get(cl, &c, "/notes/1");
    tap(code == 200 && valid_reply(&c) && strstr(c.body, "note 1:") != NULL,
        "after all that the server still answers, and note 1 is intact (HTTP %d)", code);
    call_close(&c);
}

/* Three scans against a scan limit of one thread (--workers 2), then a
 * point read: it is answered while scans are still outstanding. */
static void check_reads_not_behind_scans(struct client *cl)
{
    struct call scans[3] = {{0}}, read = {0}, *order[5] = {0};
    struct call *all[4] = {&scans[0], &scans[1], &scans[2], &read};
    bool sent = true;
    for (int i = 0; i < 3; i++) {
        scans[i].order = order;
        sent = sent && call_send(cl, &scans[i], EVHTTP_REQ_GET, "/search?q=zzz", NULL, 0);
    }
    read.order = order;
    sent = sent && call_send(cl, &read, EVHTTP_REQ_GET, "/notes/2", NULL, 0);
    bool answered = sent && wait_all(cl, all, 4);
    int position = 0;
    while (position < 4 && order[position] != &read)
        position++;
    tap(answered && read.code == 200 && scans[0].code == 200 && scans[2].code == 200 &&
        position < 2, "a point read is answered before the scans queued ahead of it "
        "(answered %d of 4)", position + 1);
    for (int i = 0; i < 3; i++)
        call_close(&scans[i]);
    call_close(&read);
}

/* A client hangs up while its scan runs: the query is stopped. */
static bool hangup_once(struct client *cl)
{
    long long interrupted = stat_of(cl, "interrupted"), gone = stat_of(cl, "gone");
    long long done = stat_of(cl, "searches_done");
    struct call c = {0};
    bool sent = call_send(cl, &c, EVHTTP_REQ_GET, "/search?q=qqq", NULL, 0);
    /* Get the request out, then wait until its query runs. */
    for (int i = 0; sent && i < 10; i++)
        event_base_loop(cl->base, EVLOOP_NONBLOCK);
    long long running = sent ? wait_stat(cl, "running", 1, false) : -1;
    call_close(&c);                          /* hang up */
    /* The request is over as soon as the server noticed; its query a little later. */
    long long in_flight = wait_stat(cl, "in_flight", 0, true);
    if (wait_stat(cl, "running", 0, true) != 0)
        return false;
    return running >= 1 && in_flight == 0 && stat_of(cl, "gone") == gone + 1 &&
           stat_of(cl, "interrupted") == interrupted + 1 && stat_of(cl, "searches_done") == done;
}

static void check_hangup(struct client *cl)
{
    int tries = 1;
    while (!hangup_once(cl) && tries < 3)
        tries++;
    tap(tries < 3 || hangup_once(cl),
        "a client that hangs up mid-scan has its query stopped (try %d)", tries);
}

/* SIGTERM with a scan in flight and an idle keep-alive connection open. */
static void check_sigterm(struct client *cl, struct server *srv)
{
    struct call idle = {0}, scan = {0};
    struct call *one[1] = {&idle};
    bool ok = call_send(cl, &idle, EVHTTP_REQ_GET, "/ping", NULL, 0) && wait_all(cl, one, 1);
    ok = ok && call_send(cl, &scan, EVHTTP_REQ_GET, "/search?q=sigterm", NULL, 0);
    for (int i = 0; ok && i < 10; i++)
        event_base_loop(cl->base, EVLOOP_NONBLOCK);
    ok = ok && wait_stat(cl, "running", 1, false) >= 1;
    kill(srv->pid, SIGTERM);
    one[0] = &scan;
    bool answered = ok && wait_all(cl, one, 1);
    tap(answered && scan.code == 200 && valid_reply(&scan),
        "SIGTERM with a scan in flight still answers it (HTTP %d)", scan.code);
    int status = server_stop(srv, 0);
    tap(status == 0, "the server exits 0 after SIGTERM, an idle connection open (status %d)",
        status);
    call_close(&idle);
    call_close(&scan);
}

/* ---- run 2: a 1 ms deadline ------------------------------------------------------------- */

static void check_deadlines(struct client *cl)
{
    struct call c;
    int code = 0, n504 = 0, tries = 0;
    /* The first ones may time out before a worker has even opened its
     * connection, or, on a loaded machine, before one took the query (it is
     * then never run); the later ones are stopped mid-scan. Up to 20 tries
     * until one was. */
    long long interrupted = 0;
    while (tries < 3 || (interrupted == 0 && tries < 20)) {
        code = get(cl, &c, "/search?q=river");
        n504 += code == 504 && valid_reply(&c);
        call_close(&c);
        tries++;
        if (tries >= 3) {
            (void)wait_stat(cl, "running", 0, true);
            interrupted = stat_of(cl, "interrupted");
        }
    }
    tap(n504 == tries, "with a 1 ms deadline /search answers 504 (%d of %d)", n504, tries);
    long long running = wait_stat(cl, "running", 0, true);
    long long done = stat_of(cl, "searches_done");
    interrupted = stat_of(cl, "interrupted");
    tap(running == 0 && done == 0 && interrupted >= 1,
        "... and its query is stopped, never run to the end (%lld interrupted)", interrupted);

    int n201 = 0, other = 0;
    for (int i = 0; i < 20; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "written against the clock %d", i);
        post_note(cl, text, (size_t)len, &code);
        n201 += code == 201;
        other += code != 201 && code != 504;
    }
    acknowledged += n201;
    tap(other == 0, "with a 1 ms deadline each write answers 201 or 504 (%d stored)", n201);
    code = get(cl, &c, "/ping");
    tap(code == 200, "/ping still answers (HTTP %d)", code);
    call_close(&c);
}

/* ---- run 3: --inline --------------------------------------------------------------------- */

static void check_inline(struct client *cl)
{
    struct call c;
    static const char text[] = "inline note";
    int code;
    long long id = post_note(cl, text, sizeof text - 1, &code);
    acknowledged += code == 201;
    char path[64];
    snprintf(path, sizeof path, "/notes/%lld", id);
    int code2 = get(cl, &c, path);
    tap(code == 201 && code2 == 200 && valid_reply(&c) && strstr(c.body, text) != NULL,
        "inline: POST then GET /notes/ID (HTTP %d, %d)", code, code2);
    call_close(&c);
    code = get(cl, &c, "/search?q=inline%20note");
    tap(code == 200 && json_int(c.body, c.len, "matches") == 1, "inline: /search (HTTP %d)", code);
    call_close(&c);
}

/* ---- main --------------------------------------------------------------------------------- */

/* Start a server run with extra arguments; false (and a failed test) if it did not start. */
static bool run_start(struct server *srv, struct client *cl, const char *path, const char *what,
                      char *const *args)
{
    bool started = server_start(srv, path, args);
    tap(started, "%s: the server starts (port %d)", what, srv->port);
    if (!started) {
        if (srv->pid > 0)
            server_stop(srv, SIGKILL);
        fputs(srv->output, stdout);
        return false;
    }
    cl->port = srv->port;
    return true;
}

static void run_check(const char *path, const char *db, const char *what)
{
    long long notes;
    bool ok = check_db(path, db, &notes);
    tap(ok && notes == 300000 + acknowledged, "%s: --check finds the database intact with "
        "the %lld notes acknowledged (%lld)", what, 300000 + acknowledged, notes);
}

int main(int argc, char **argv)
{
    const char *builddir = getenv("top_builddir");
    char path[4096], dir[4096], db[4200], cmd[4300];

    snprintf(path, sizeof path, "%s/samples/sqlite_notes", builddir ? builddir : ".");
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--server") == 0)
            snprintf(path, sizeof path, "%s", argv[i + 1]);
    signal(SIGPIPE, SIG_IGN);
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/smoke_sqlite_notes.XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "smoke_sqlite_notes: mkdtemp %s: %s\n", dir, strerror(errno));
        return 99;
    }
    snprintf(db, sizeof db, "%s/notes.db", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);

    printf("1..%d\n", 59);
    struct client cl = {.base = event_base_new()};
    struct server srv;
    char a_db[] = "--db", a_port[] = "--port", zero[] = "0", a_seed[] = "--seed",
         rows[] = SEED_ROWS, a_workers[] = "--workers", two[] = "2", a_timeout[] = "--timeout",
         ten_s[] = "10000", one_ms[] = "1", a_inline[] = "--inline";

    char *run1[] = {a_db, db, a_port, zero, a_seed, rows, a_workers, two, a_timeout, ten_s, NULL};
    if (run_start(&srv, &cl, path, "pool mode", run1)) {
        check_init_retry(&cl, db);
        check_routes(&cl);
        check_hostile(&cl);
        check_reads_not_behind_scans(&cl);
        check_hangup(&cl);
        check_sigterm(&cl, &srv);
    }
    run_check(path, db, "pool mode");

    char *run2[] = {a_db, db, a_port, zero, a_workers, two, a_timeout, one_ms, NULL};
    if (run_start(&srv, &cl, path, "1 ms deadline", run2)) {
        check_deadlines(&cl);
        int status = server_stop(&srv, SIGTERM);
        tap(status == 0, "1 ms deadline: the server exits 0 (status %d)", status);
    }
    run_check(path, db, "1 ms deadline");

    char *run3[] = {a_db, db, a_port, zero, a_inline, NULL};
    if (run_start(&srv, &cl, path, "inline", run3)) {
        check_inline(&cl);
        int status = server_stop(&srv, SIGINT);
        tap(status == 0, "inline: the server exits 0 after SIGINT (status %d)", status);
    }
    run_check(path, db, "inline");

    event_base_free(cl.base);
    if (system(cmd) != 0)
        fprintf(stderr, "smoke_sqlite_notes: could not remove the temporary directory\n");
    return tap_failed ? 1 : 0;
}
