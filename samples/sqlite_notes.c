/*
 * sqlite_notes.c -- a notes service: a JSON API over HTTP (libevent's evhttp)
 * on top of one SQLite database, every query run on a thread pool so the
 * event loop only ever parses requests and writes replies.
 *
 * Routes (127.0.0.1 unless --host says otherwise)
 *   GET  /ping            {"pong":true}, answered on the loop thread
 *   POST /notes           the body (text, at most 64 KiB) becomes a note:
 *                         201 {"id":N}
 *   GET  /notes/ID        200 {"id":N,"text":"..."} or 404
 *   GET  /search?q=WORD   notes whose text contains WORD (ASCII letters match
 *                         either case): {"q":"...","matches":N,"notes":[...]}
 *                         with the 20 newest. A full scan of the table, slow
 *                         on purpose: the kind of query that must not hold up
 *                         the others.
 *   GET  /stats           counters, on the loop: queries run by each worker
 *                         (by evexec_worker_index()), failed worker starts
 *   Bad requests get a JSON {"error":"..."}: 400 (malformed id, missing q,
 *   empty note), 404, 405 (wrong method), 413 (body too large), 503
 *   (shutting down, or the queue is full), 504 (past the deadline).
 *
 * How the pieces fit
 *   - One pool of --workers threads. Each worker owns one SQLite
 *     connection, opened by the pool's thread_init hook (kept with
 *     evexec_worker_set_state(), found again with evexec_worker_state()) and
 *     closed by its thread_exit hook, with its statements prepared once. The
 *     database runs in WAL mode, so readers never block the writer nor each
 *     other. EVEXEC_POOL_INIT_RETRY: a connection that fails to open (the
 *     database busy with another process's recovery, say) fails only that
 *     worker, and a later one tries again.
 *   - Writes go through a serial view of the pool (evexec_pool_new_view,
 *     the form of evexec_pool_new_limited that also bounds the view's queue,
 *     with one running slot): one write at a time, in arrival order, on
 *     whichever worker is free, so SQLite never sees two writers fight for
 *     the lock.
 *   - Scans go through a view limited to half the workers, so a burst of
 *     /search can never occupy every thread: GET /notes/ID, submitted to the
 *     pool itself, always finds one.
 *   - Every request has a deadline (--timeout). A read past it is answered
 *     504 and its query stopped: SQLite's progress handler polls
 *     evexec_cancel_requested() and interrupts the statement. A write past
 *     it is asked to stop (evexec_future_request_cancel) and answered with
 *     what really happened: 201 if it committed anyway, 504 if it did not.
 *   - A client that hangs up cancels its work the same way.
 *   - SIGINT or SIGTERM: stop accepting, let the requests in flight finish
 *     (each is bounded by its deadline), answer them, close every
 *     connection, let each worker close its database connection, exit 0.
 *   - Hostile input touches nothing it should not: every value reaches
 *     SQLite as a bound parameter, never as SQL text; `%`, `_` and `\` in q
 *     are escaped for LIKE; ids are parsed strictly; bodies are capped;
 *     text that is not valid UTF-8 is stored as sent and comes back with
 *     U+FFFD in place of each bad sequence, so every reply is valid JSON.
 *   - --inline runs the same queries on the loop thread. It is only a
 *     baseline to measure against (one slow /search stalls every other
 *     request, /ping included), not a mode to deploy.
 *
 * How to run it
 *   samples/sqlite_notes --port 8080 --db notes.db --seed 100000 &
 *   curl -d 'buy milk' http://127.0.0.1:8080/notes
 *   curl http://127.0.0.1:8080/notes/1
 *   curl 'http://127.0.0.1:8080/search?q=milk'
 *   kill -TERM %1
 *   samples/sqlite_notes --check --db notes.db    # PRAGMA integrity_check
 *   --port 0 picks a free port; the first line printed names it:
 *   "sqlite_notes: listening on 127.0.0.1:PORT ...".
 *
 * Exit status: 0 after a clean shutdown (or a passed --check), 1 runtime
 * failure (or a failed --check), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sqlite3.h>

#include <evexec.h>

#define MAX_NOTE_BYTES   (64u << 10)     /* bigger bodies: 413 */
#define MAX_QUERY_BYTES  256             /* longer q: 400 */
#define SEARCH_LIMIT     20              /* notes listed by /search */
#define BUSY_TIMEOUT_MS  2000            /* SQLite waits this long for a lock */
#define PROGRESS_OPS     1000            /* VM steps between cancel checks */
#define MAX_QUEUED       4096            /* per pool; more waiting: 503 */
#define HARD_STOP_MS     2000            /* after the last deadline, on shutdown */
#define MAX_WORKERS      64

/* ---- a growable string, and JSON text in it --------------------------------- */

struct strbuf {
    char  *data;
    size_t len, cap;
    bool   failed;                        /* out of memory: the reply is a 500 */
};

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->failed)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (cap < sb->len + n + 1)
            cap *= 2;
        char *p = realloc(sb->data, cap);
        if (p == NULL) {
            sb->failed = true;
            return;
        }
        sb->data = p;
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

static void sb_puts(struct strbuf *sb, const char *s)
{
    sb_add(sb, s, strlen(s));
}

static void sb_printf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_printf(struct strbuf *sb, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);   /* only short numbers go here */
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        sb->failed = true;
    else
        sb_add(sb, tmp, (size_t)n);
}

/* The length (2..4) of the well-formed UTF-8 sequence starting at s, or 0
 * with *bad set to how many bytes to replace by one U+FFFD: the lead byte
 * and the continuation bytes that were still valid (Unicode's "maximal
 * subpart" practice, so "\xe2\x82" followed by "A" gives U+FFFD then "A"). */
static size_t utf8_sequence(const unsigned char *s, size_t avail, size_t *bad)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t need;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2;
        lo = c == 0xe0 ? 0xa0 : 0x80;        /* no overlong forms */
        hi = c == 0xed ? 0x9f : 0xbf;        /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;        /* nothing above U+10FFFF */
    } else {
        *bad = 1;                            /* stray continuation, C0, C1, F5..FF */
        return 0;
    }
    size_t i = 1;
    for (; i <= need && i < avail; i++) {
        unsigned char b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xbf))
            break;
    }
    if (i > need)
        return need + 1;
    *bad = i;
    return 0;
}

/* s[0..len) as a JSON string: quotes, backslashes and control characters
 * escaped, bad UTF-8 replaced, everything else copied as is. */
static void sb_json_string(struct strbuf *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;                   /* run: bytes to copy as they are */

    sb_add(sb, "\"", 1);
    while (i + run < len) {
        unsigned char c = p[i + run];
        size_t n = 1, bad = 0;
        if (c >= 0x80)
            n = utf8_sequence(p + i + run, len - i - run, &bad);
        if (bad == 0 && c >= 0x20 && c != '"' && c != '\\') {
            run += n;
            continue;
        }
        sb_add(sb, s + i, run);
        i += run;
        run = 0;
        if (bad != 0) {
            sb_add(sb, "\xef\xbf\xbd", 3);   /* U+FFFD */
            i += bad;
            continue;
        }
        char esc[7] = {'\\', (char)c, 0};
        switch (c) {
        case '"': case '\\': break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            break;
        }
        sb_puts(sb, esc);
        i++;
    }
    sb_add(sb, s + i, run);
    sb_add(sb, "\"", 1);
}

/* ---- a reply built by a worker ------------------------------------------------ */

struct answer {
    int    status;
    size_t len;
    char  *body;                             /* JSON */
};

static void answer_free(void *p)
{
    struct answer *a = p;
    if (a != NULL)
        free(a->body);
    free(a);
}

/* Turn sb into an answer (taking its memory); ENOMEM if either failed. */
static int answer_make(struct strbuf *sb, int status, struct answer **out)
{
    struct answer *a = sb->failed ? NULL : malloc(sizeof *a);
    if (a == NULL) {
        free(sb->data);
        return ENOMEM;
    }
    a->status = status;
    a->len = sb->len;
    a->body = sb->data;
    *out = a;
    return 0;
}

/* ---- one SQLite connection ------------------------------------------------------ */

/* Counters the workers update; read by /stats on the loop. */
struct counters {
    atomic_uint  running;                    /* queries being run now */
    atomic_ulong searches_done;              /* scans that ran to the end */
    atomic_ulong interrupted;                /* queries stopped by a cancel */
    atomic_ulong per_worker[MAX_WORKERS];    /* queries run, by worker index */
};

struct db {
    sqlite3         *conn;
    sqlite3_stmt    *insert, *get, *count, *search;
    struct counters *counters;
    int64_t          deadline_ns;            /* --inline only: 0 = none */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Called by SQLite every PROGRESS_OPS virtual machine steps of a statement:
 * nonzero interrupts it (the statement fails with SQLITE_INTERRUPT and its
 * transaction rolls back). On a worker the loop asks through the future;
 * inline, nobody can ask while the loop is stuck here, so the deadline is
 * checked against the clock. */
static int on_progress(void *arg)
{
    const struct db *db = arg;
    return evexec_cancel_requested() || (db->deadline_ns != 0 && now_ns() > db->deadline_ns);
}

/* An SQLite result code as an errno value for the loop. */
static int sqlite_err(const struct db *db, int rc, const char *what)
{
    switch (rc & 0xff) {
    case SQLITE_INTERRUPT:
        atomic_fetch_add(&db->counters->interrupted, 1);
        return ECANCELED;
    case SQLITE_BUSY: case SQLITE_LOCKED:
        return EBUSY;
    case SQLITE_NOMEM:
        return ENOMEM;
    case SQLITE_FULL:
        return ENOSPC;
    default:
        fprintf(stderr, "sqlite_notes: %s: %s\n", what,
                db->conn ? sqlite3_errmsg(db->conn) : sqlite3_errstr(rc));
        return EIO;
    }
}

static void db_close(struct db *db)
{
    if (db == NULL)
        return;
    sqlite3_finalize(db->insert);
    sqlite3_finalize(db->get);
    sqlite3_finalize(db->count);
    sqlite3_finalize(db->search);
    sqlite3_close(db->conn);
    free(db);
}

/* Open path (which setup made) read-write, with the statements prepared. */
static int db_open(const char *path, struct counters *counters, struct db **out)
{
    static const char *const sql[] = {
        "INSERT INTO notes(text) VALUES (?1)",
        "SELECT text FROM notes WHERE id = ?1",
        "SELECT count(*) FROM notes WHERE text LIKE ?1 ESCAPE '\\'",
        "SELECT id, text FROM notes WHERE text LIKE ?1 ESCAPE '\\' ORDER BY id DESC LIMIT ?2",
    };
    struct db *db = calloc(1, sizeof *db);
    if (db == NULL)
        return ENOMEM;
    db->counters = counters;
    /* NOMUTEX: a connection is only ever used by the thread that owns it. */
    int rc = sqlite3_open_v2(path, &db->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db->conn, BUSY_TIMEOUT_MS);
    /* In WAL mode NORMAL cannot corrupt the database; a power cut may lose
     * the last commits, which is the usual trade for a server like this. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db->conn, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    sqlite3_stmt **stmts[] = {&db->insert, &db->get, &db->count, &db->search};
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof stmts / sizeof *stmts; i++)
        rc = sqlite3_prepare_v3(db->conn, sql[i], -1, SQLITE_PREPARE_PERSISTENT, stmts[i], NULL);
    if (rc != SQLITE_OK) {
        int err = sqlite_err(db, rc, path);
        db_close(db);
        return err;
    }
    sqlite3_progress_handler(db->conn, PROGRESS_OPS, on_progress, db);
    *out = db;
    return 0;
}

/* ---- the queries ------------------------------------------------------------------- */

enum route { ROUTE_POST, ROUTE_GET, ROUTE_SEARCH };

/* What a worker needs for one request: its own copy of the input, freed by
 * the library once the task can no longer touch it (evexec_run_in_executor_ex). */
struct task {
    enum route route;
    int64_t    id;                           /* ROUTE_GET */
    size_t     len;
    char       text[];                       /* ROUTE_POST: the note; ROUTE_SEARCH: q */
};

static int step_done(struct db *db, sqlite3_stmt *stmt, int rc, const char *what)
{
    int err = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sqlite_err(db, rc, what);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return err;
}

static int query_insert(struct db *db, const struct task *t, struct answer **out)
{
    /* SQLITE_STATIC: t outlives the statement's use of the text. */
    int rc = sqlite3_bind_text(db->insert, 1, t->text, (int)t->len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(db->insert);
    int err = step_done(db, db->insert, rc, "insert");
    if (err != 0)
        return err;
    struct strbuf sb = {0};
    sb_printf(&sb, "{\"id\":%" PRId64 "}", (int64_t)sqlite3_last_insert_rowid(db->conn));
    return answer_make(&sb, 201, out);
}

static int query_get(struct db *db, const struct task *t, struct answer **out)
{
    struct strbuf sb = {0};
    int status = 200;
    int rc = sqlite3_bind_int64(db->get, 1, t->id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(db->get);
    if (rc == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(db->get, 0);
        sb_printf(&sb, "{\"id\":%" PRId64 ",\"text\":", t->id);
        sb_json_string(&sb, text ? text : "", (size_t)sqlite3_column_bytes(db->get, 0));
        sb_puts(&sb, "}");
    } else if (rc == SQLITE_DONE) {
        status = 404;
        sb_puts(&sb, "{\"error\":\"no such note\"}");
    }
    int err = step_done(db, db->get, rc, "get");
    if (err != 0) {
        free(sb.data);
        return err;
    }
    return answer_make(&sb, status, out);
}

/* "%q%" with q's LIKE wildcards and the escape character escaped, so q
 * matches only itself. */
static char *like_pattern(const char *q, size_t len)
{
    char *pat = malloc(2 * len + 3), *p = pat;
    if (pat == NULL)
        return NULL;
    *p++ = '%';
    for (size_t i = 0; i < len; i++) {
        if (q[i] == '%' || q[i] == '_' || q[i] == '\\')
            *p++ = '\\';
        *p++ = q[i];
    }
    *p++ = '%';
    *p = '\0';
    return pat;
}

static int query_search(struct db *db, const struct task *t, struct answer **out)
{
    char *pat = like_pattern(t->text, t->len);
    if (pat == NULL)
        return ENOMEM;
    int64_t matches = 0;
    int rc = sqlite3_bind_text(db->count, 1, pat, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && (rc = sqlite3_step(db->count)) == SQLITE_ROW)
        matches = sqlite3_column_int64(db->count, 0);
    int err = step_done(db, db->count, rc, "count");

    struct strbuf sb = {0};
    sb_puts(&sb, "{\"q\":");
    sb_json_string(&sb, t->text, t->len);
    sb_printf(&sb, ",\"matches\":%" PRId64 ",\"notes\":[", matches);
    rc = SQLITE_OK;
    if (err == 0) {
        rc = sqlite3_bind_text(db->search, 1, pat, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int(db->search, 2, SEARCH_LIMIT);
        for (int n = 0; rc == SQLITE_OK && (rc = sqlite3_step(db->search)) == SQLITE_ROW; n++) {
            const char *text = (const char *)sqlite3_column_text(db->search, 1);
            sb_printf(&sb, "%s{\"id\":%" PRId64 ",\"text\":", n ? "," : "",
                      (int64_t)sqlite3_column_int64(db->search, 0));
            sb_json_string(&sb, text ? text : "", (size_t)sqlite3_column_bytes(db->search, 1));
            sb_puts(&sb, "}");
        }
        err = step_done(db, db->search, rc, "search");
    }
    free(pat);
    if (err != 0) {
        free(sb.data);
        return err;
    }
    atomic_fetch_add(&db->counters->searches_done, 1);
    sb_puts(&sb, "]}");
    return answer_make(&sb, 200, out);
}

static int run_query(struct db *db, const struct task *t, struct answer **out)
{
    atomic_fetch_add(&db->counters->running, 1);
    unsigned worker = evexec_worker_index();  /* UINT_MAX on the loop (--inline) */
    if (worker < MAX_WORKERS)
        atomic_fetch_add(&db->counters->per_worker[worker], 1);
    int err;
    switch (t->route) {
    case ROUTE_POST: err = query_insert(db, t, out); break;
    case ROUTE_GET:  err = query_get(db, t, out); break;
    default:         err = query_search(db, t, out); break;
    }
    atomic_fetch_sub(&db->counters->running, 1);
    return err;
}

/* ---- the server ---------------------------------------------------------------------- */

/* A request handed to a pool: loop-side state only, listed in the server's
 * in-flight list until the done callback of its future has run. */
struct job {
    struct server         *srv;
    struct evhttp_request *req;              /* NULL once the client went away */
    struct evexec_future  *future;           /* reads: evexec_wait_for(work); writes: work */
    struct event          *deadline;         /* writes only: asks the work to stop */
    struct event          *hangup;           /* watches the client's socket */
    enum route             route;
    bool                   late;             /* a write's deadline passed */
    bool                   abandoned;        /* cancelled by the hard stop */
    struct job            *prev, *next;
};

struct server {
    struct event_base          *base;
    struct evexec_loop         *loop;
    struct evexec_pool         *pool;                     /* NULL with --inline */
    struct evexec_pool         *writes, *scans;           /* views of pool */
    struct db                  *inline_db;                /* --inline only */
    struct evhttp              *http;
    struct evhttp_bound_socket *listener;
    struct event               *sigint, *sigterm, *hard_timer;
    const char                 *db_path;
    unsigned                    workers;
    long                        timeout_ms;
    bool                        stopping, hard_stop;
    struct job                 *jobs;
    unsigned                    in_flight, unsent;
    struct counters             counters;
    unsigned long               n_ping, n_post, n_get, n_search, n_bad, n_timeout, n_gone,
                                n_refused;
};

/* ---- the workers: one connection each ---------------------------------------------- */

/* thread_init hook: the worker opens its connection before its first task. */
static int worker_open(void *ctx)
{
    struct server *srv = ctx;
    struct db *db = NULL;
    int err = db_open(srv->db_path, &srv->counters, &db);
    if (err != 0) {
        fprintf(stderr, "sqlite_notes: worker %u cannot open %s: %s\n", evexec_worker_index(),
                srv->db_path, strerror(err));
        return err;                          /* only this worker fails: a later one retries */
    }
    evexec_worker_set_state(db);
    return 0;
}

/* thread_exit hook: the worker closes its connection as it exits. */
static void worker_close(void *ctx)
{
    (void)ctx;
    db_close(evexec_worker_state());
}

/* The work function of every task, on whichever worker runs it. */
static int work_query(void *arg, void **result)
{
    return run_query(evexec_worker_state(), arg, (struct answer **)result);
}

/* ---- replies ----------------------------------------------------------------------- */

static void maybe_finish(struct server *srv)
{
    if (srv->stopping && srv->in_flight == 0 && (srv->unsent == 0 || srv->hard_stop))
        event_base_loopbreak(srv->base);
}

static void on_reply_written(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    srv->unsent--;
    maybe_finish(srv);
}

/* The connection died with its reply partly written. */
static void on_reply_lost(struct evhttp_connection *evcon, void *arg)
{
    struct server *srv = arg;
    (void)evcon;
    srv->unsent--;
    maybe_finish(srv);
}

static void body_free(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    answer_free(arg);
}

/* Every reply goes through here; it frees req, now or once written. a (may
 * be NULL) gives the body, taken over; text is a body used when a is NULL. */
static void send_json(struct server *srv, struct evhttp_request *req, int status,
                      struct answer *a, const char *text)
{
    struct evbuffer *body = evbuffer_new();
    if (body == NULL || (a != NULL ? evbuffer_add_reference(body, a->body, a->len, body_free, a)
                                   : evbuffer_add(body, text, strlen(text))) != 0) {
        answer_free(a);
        if (body != NULL)
            evbuffer_free(body);
        evhttp_send_error(req, 500, NULL);
        return;
    }
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/json");
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL) {
        /* From here on the close callback speaks for the reply, no longer
         * for a job; one of the two callbacks runs, once. */
        evhttp_connection_set_closecb(evcon, on_reply_lost, srv);
        evhttp_request_set_on_complete_cb(req, on_reply_written, srv);
        srv->unsent++;
        if (srv->stopping)
            evhttp_add_header(headers, "Connection", "close");
    }
    evhttp_send_reply(req, status, NULL, body);   /* NULL: libevent's reason phrase */
    evbuffer_free(body);
}

static void send_error(struct server *srv, struct evhttp_request *req, int status,
                       const char *json)
{
    if (status == 400 || status == 404 || status == 405 || status == 413)
        srv->n_bad++;
    send_json(srv, req, status, NULL, json);
}

static void send_answer(struct server *srv, struct evhttp_request *req, struct answer *a)
{
    send_json(srv, req, a->status, a, NULL);
}

/* ---- jobs ------------------------------------------------------------------------- */

static void job_unlink(struct job *job)
{
    struct server *srv = job->srv;
    if (job->prev)
        job->prev->next = job->next;
    else
        srv->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    srv->in_flight--;
}

static void job_free(struct job *job)
{
    if (job->deadline)
        event_free(job->deadline);
    if (job->hangup)
        event_free(job->hangup);
    evexec_future_release(job->future);
    free(job);
}

/* Stop the work of a job: a read is simply cancelled (its future is done at
 * once); a write is asked to stop and reports later what it really did. */
static void job_stop(struct job *job)
{
    if (job->route == ROUTE_POST)
        evexec_future_request_cancel(job->future);   /* EALREADY if done: fine */
    else
        evexec_future_cancel(job->future);
}

/* The done callback of a job's future, on the loop thread. */
static void on_job_done(struct evexec_future *f, void *arg)
{
    struct job *job = arg;
    struct server *srv = job->srv;
    struct answer *a = NULL;
    int err = evexec_future_take_result(f, (void **)&a);

    job_unlink(job);
    if (job->hangup) {                       /* before the reply may close the socket */
        event_free(job->hangup);
        job->hangup = NULL;
    }
    if (job->req == NULL) {
        srv->n_gone++;                       /* nobody to tell */
        answer_free(a);
    } else if (err == 0) {
        send_answer(srv, job->req, a);
    } else if (err == ECANCELED && job->abandoned) {
        srv->n_refused++;
        send_error(srv, job->req, 503, job->route == ROUTE_POST
                   ? "{\"error\":\"shutting down; the note may or may not be stored\"}"
                   : "{\"error\":\"shutting down\"}");
    } else if (err == ETIMEDOUT || (err == ECANCELED && job->late)) {
        srv->n_timeout++;
        send_error(srv, job->req, 504, job->route == ROUTE_POST
                   ? "{\"error\":\"deadline passed; the note was not stored\"}"
                   : "{\"error\":\"deadline passed\"}");
    } else if (err == EBUSY || err == EAGAIN) {
        srv->n_refused++;
        send_error(srv, job->req, 503, "{\"error\":\"database busy\"}");
    } else {
        send_error(srv, job->req, 500, "{\"error\":\"database error\"}");
    }
    job_free(job);
    maybe_finish(srv);
}

/* A write's deadline: ask it to stop; its future then says whether it had
 * committed (201) or not (504). */
static void on_write_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct job *job = arg;
    (void)fd;
    (void)what;
    job->late = true;
    job_stop(job);
}

/* The connection of a job's request is going away: the client hung up (the
 * request may already be detached from it, then it is ours to free), or
 * the server is being freed. */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
    struct job *job = arg;
    (void)evcon;
    if (job->hangup) {                       /* before libevent closes the socket */
        event_free(job->hangup);
        job->hangup = NULL;
    }
    if (job->req != NULL && evhttp_request_get_connection(job->req) == NULL)
        evhttp_request_free(job->req);
    job->req = NULL;
    job_stop(job);                           /* its done callback frees the job */
}

/* libevent 2.1 does not read a connection while its request is handled, so
 * it would notice a client that hung up only when writing the reply. The
 * job watches the socket itself: end of file or an error means nobody waits
 * for the answer, and freeing the connection runs on_connection_close(). A
 * client that sends more (a pipelined request) is no longer watched. */
static void on_hangup_watch(evutil_socket_t fd, short what, void *arg)
{
    struct job *job = arg;
    (void)what;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(job->hangup, NULL);
        return;
    }
    if (n > 0)
        return;
    event_free(job->hangup);
    job->hangup = NULL;
    evhttp_connection_free(evhttp_request_get_connection(job->req));
}

/* Hand a request to a pool: t is the task (taken over), pool where it runs. */
static void start_job(struct server *srv, struct evhttp_request *req, struct task *t,
                      struct evexec_pool *pool)
{
    struct job *job = calloc(1, sizeof *job);
    struct evexec_future *work = NULL;
    enum route route = t->route;             /* t is the library's once submitted */
    if (job != NULL)
        work = evexec_run_in_executor_ex(srv->loop, pool, work_query, t, answer_free, free);
    if (work == NULL) {
        int err = job ? errno : ENOMEM;
        free(t);
        free(job);
        srv->n_refused++;
        send_error(srv, req, 503, err == EAGAIN ? "{\"error\":\"too many requests queued\"}"
                                                : "{\"error\":\"cannot queue the request\"}");
        return;
    }
    job->srv = srv;
    job->req = req;
    job->route = route;
    struct timeval tv = {srv->timeout_ms / 1000, (srv->timeout_ms % 1000) * 1000};
    if (job->route == ROUTE_POST) {
        job->future = work;
        job->deadline = evtimer_new(srv->base, on_write_deadline, job);
        if (job->deadline != NULL && evtimer_add(job->deadline, &tv) != 0) {
            event_free(job->deadline);
            job->deadline = NULL;
        }
    } else {
        job->future = evexec_wait_for(work, srv->timeout_ms);
        if (job->future == NULL)
            evexec_future_cancel(work);
        evexec_future_release(work);         /* wait_for holds its own reference */
    }
    if (job->future == NULL || (job->route == ROUTE_POST && job->deadline == NULL) ||
        evexec_future_add_done_callback(job->future, on_job_done, job) != 0) {
        evexec_future_cancel(job->future);
        job_free(job);
        send_error(srv, req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    job->next = srv->jobs;
    if (srv->jobs)
        srv->jobs->prev = job;
    srv->jobs = job;
    srv->in_flight++;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(evcon, on_connection_close, job);
    job->hangup = event_new(srv->base, bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)),
                            EV_READ, on_hangup_watch, job);
    if (job->hangup != NULL)
        event_add(job->hangup, NULL);        /* without it a hang-up is seen late, not never */
}

/* Run t on the loop thread (--inline), bounded by the deadline. */
static void run_inline(struct server *srv, struct evhttp_request *req, struct task *t)
{
    struct answer *a = NULL;
    srv->inline_db->deadline_ns = now_ns() + (int64_t)srv->timeout_ms * 1000000;
    int err = run_query(srv->inline_db, t, &a);
    bool post = t->route == ROUTE_POST;
    free(t);
    if (err == 0) {
        send_answer(srv, req, a);
    } else if (err == ECANCELED) {
        srv->n_timeout++;
        send_error(srv, req, 504, post ? "{\"error\":\"deadline passed; the note was not stored\"}"
                                       : "{\"error\":\"deadline passed\"}");
    } else {
        send_error(srv, req, err == EBUSY ? 503 : 500, "{\"error\":\"database error\"}");
    }
}

static void dispatch(struct server *srv, struct evhttp_request *req, struct task *t,
                     struct evexec_pool *pool)
{
    if (srv->inline_db != NULL)
        run_inline(srv, req, t);
    else
        start_job(srv, req, t, pool);
}

static struct task *task_new(enum route route, const void *text, size_t len)
{
    struct task *t = malloc(sizeof *t + len + 1);
    if (t == NULL)
        return NULL;
    t->route = route;
    t->id = 0;
    t->len = len;
    if (len > 0)
        memcpy(t->text, text, len);
    t->text[len] = '\0';
    return t;
}

/* ---- routes ------------------------------------------------------------------------- */

/* A note id: decimal digits only, no sign, no leading zero, 1..INT64_MAX. */
static bool parse_id(const char *s, int64_t *out)
{
    int64_t v = 0;
    if (s[0] < '1' || s[0] > '9')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
        int digit = *s - '0';
        if (v > (INT64_MAX - digit) / 10)
            return false;                    /* would overflow */
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

static bool refuse_if_stopping(struct server *srv, struct evhttp_request *req)
{
    if (!srv->stopping)
        return false;
    srv->n_refused++;
    send_error(srv, req, 503, "{\"error\":\"shutting down\"}");
    return true;
}

static void on_post_note(struct server *srv, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    /* evhttp_set_max_body_size() already refuses what announces more; this
     * also holds whatever way the body arrived. */
    if (len > MAX_NOTE_BYTES) {
        send_error(srv, req, 413, "{\"error\":\"a note is at most 65536 bytes\"}");
        return;
    }
    if (len == 0) {
        send_error(srv, req, 400, "{\"error\":\"empty note\"}");
        return;
    }
    struct task *t = task_new(ROUTE_POST, evbuffer_pullup(in, -1), len);
    if (t == NULL) {
        send_error(srv, req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    srv->n_post++;
    dispatch(srv, req, t, srv->writes);
}

static void on_get_note(struct server *srv, struct evhttp_request *req, const char *id_text)
{
    int64_t id;
    if (!parse_id(id_text, &id)) {
        send_error(srv, req, 400,
                   "{\"error\":\"an id is a decimal number from 1 to 9223372036854775807\"}");
        return;
    }
    struct task *t = task_new(ROUTE_GET, NULL, 0);
    if (t == NULL) {
        send_error(srv, req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    t->id = id;
    srv->n_get++;
    dispatch(srv, req, t, srv->pool);
}

static void on_search(struct server *srv, struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    if (query == NULL || evhttp_parse_query_str(query, &params) != 0) {
        send_error(srv, req, 400,
                   "{\"error\":\"q is missing (or the query string is malformed)\"}");
        return;
    }
    const char *q = evhttp_find_header(&params, "q");
    size_t len = q ? strlen(q) : 0;
    struct task *t = NULL;
    if (len == 0 || len > MAX_QUERY_BYTES) {
        send_error(srv, req, 400, "{\"error\":\"q is 1 to 256 bytes\"}");
    } else if ((t = task_new(ROUTE_SEARCH, q, len)) == NULL) {
        send_error(srv, req, 500, "{\"error\":\"out of memory\"}");
    } else {
        srv->n_search++;
        dispatch(srv, req, t, srv->scans);
    }
    evhttp_clear_headers(&params);
}

static void on_stats(struct server *srv, struct evhttp_request *req)
{
    struct strbuf sb = {0};
    sb_printf(&sb, "{\"in_flight\":%u,", srv->in_flight);
    sb_printf(&sb, "\"running\":%u,", atomic_load(&srv->counters.running));
    sb_printf(&sb, "\"searches_done\":%lu,", atomic_load(&srv->counters.searches_done));
    sb_printf(&sb, "\"interrupted\":%lu,", atomic_load(&srv->counters.interrupted));
    sb_printf(&sb, "\"ping\":%lu,\"post\":%lu,", srv->n_ping, srv->n_post);
    sb_printf(&sb, "\"get\":%lu,\"search\":%lu,", srv->n_get, srv->n_search);
    sb_printf(&sb, "\"refused\":%lu,\"bad\":%lu,", srv->n_refused, srv->n_bad);
    sb_printf(&sb, "\"timeouts\":%lu,\"gone\":%lu", srv->n_timeout, srv->n_gone);
    struct evexec_pool_stats ps;
    if (srv->pool != NULL && evexec_pool_get_stats(srv->pool, &ps) == 0) {
        sb_printf(&sb, ",\"threads\":%u,", ps.threads);
        sb_printf(&sb, "\"init_failures\":%" PRIu64 ",", ps.init_failures);
        sb_printf(&sb, "\"last_init_error\":%d,\"workers\":[", ps.last_init_error);
        for (unsigned i = 0; i < srv->workers; i++)
            sb_printf(&sb, "%s%lu", i ? "," : "", atomic_load(&srv->counters.per_worker[i]));
        sb_puts(&sb, "]");
    }
    sb_puts(&sb, "}");
    struct answer *a = NULL;
    if (answer_make(&sb, 200, &a) != 0)
        send_error(srv, req, 500, "{\"error\":\"out of memory\"}");
    else
        send_answer(srv, req, a);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    const char *allow = NULL;

    if (path == NULL)
        path = "";
    if (strcmp(path, "/ping") == 0) {
        if (!get)
            allow = "GET, HEAD";
        else {
            srv->n_ping++;
            send_json(srv, req, 200, NULL, "{\"pong\":true}");
        }
    } else if (strcmp(path, "/stats") == 0) {
        if (!get)
            allow = "GET, HEAD";
        else
            on_stats(srv, req);
    } else if (strcmp(path, "/notes") == 0) {
        if (method != EVHTTP_REQ_POST)
            allow = "POST";
        else if (!refuse_if_stopping(srv, req))
            on_post_note(srv, req);
    } else if (strncmp(path, "/notes/", 7) == 0) {
        if (!get)
            allow = "GET, HEAD";
        else if (!refuse_if_stopping(srv, req))
            on_get_note(srv, req, path + 7);
    } else if (strcmp(path, "/search") == 0) {
        if (!get)
            allow = "GET, HEAD";
        else if (!refuse_if_stopping(srv, req))
            on_search(srv, req);
    } else {
        send_error(srv, req, 404, "{\"error\":\"routes: GET /ping, POST /notes, "
                   "GET /notes/ID, GET /search?q=WORD, GET /stats\"}");
    }
    if (allow != NULL) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        send_error(srv, req, 405, "{\"error\":\"method not allowed\"}");
    }
}

/* ---- shutdown ------------------------------------------------------------------------- */

/* Past every deadline and still not done (a query stuck waiting for a lock,
 * a client that does not read its reply): stop waiting. */
static void on_hard_stop(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    printf("sqlite_notes: %u requests still in flight, %u replies unwritten: giving up on them\n",
           srv->in_flight, srv->unsent);
    fflush(stdout);
    srv->hard_stop = true;
    for (struct job *job = srv->jobs; job != NULL; job = job->next)
        job->abandoned = evexec_future_cancel(job->future);   /* answered 503 */
    maybe_finish(srv);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (srv->stopping) {                     /* a second signal: do not wait */
        on_hard_stop(-1, 0, srv);
        return;
    }
    srv->stopping = true;
    printf("sqlite_notes: %s, shutting down with %u requests in flight\n",
           signo == SIGINT ? "SIGINT" : "SIGTERM", srv->in_flight);
    fflush(stdout);
    evhttp_del_accept_socket(srv->http, srv->listener);   /* no new connections */
    srv->listener = NULL;
    long ms = srv->timeout_ms + BUSY_TIMEOUT_MS + HARD_STOP_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(srv->hard_timer, &tv);
    maybe_finish(srv);
}

/* ---- the database file: setup, seed, check ------------------------------------------ */

/* Words the seeded notes are made of, so /search has something to find. */
static const char *const seed_words[] = {
    "apple", "river", "stone", "cloud", "paper", "glass", "tiger", "maple",
    "ocean", "amber", "north", "pixel", "delta", "lemon", "orbit", "cedar",
    "piano", "quartz", "raven", "salt", "thunder", "velvet", "willow", "yarn",
    "zephyr", "anchor", "bridge", "candle", "desert", "ember", "forest", "garden",
    "harbor", "island", "jungle", "kettle", "ladder", "marble", "needle", "oyster",
    "pepper", "quiver", "rocket", "saddle", "tunnel", "umbrella", "valley", "wagon",
    "xylophone", "yellow", "zipper", "bamboo", "copper", "dragon", "falcon", "ginger",
    "hammer", "indigo", "jasmine", "kernel", "lantern", "meadow", "nectar", "olive",
};

static int seed_notes(sqlite3 *conn, unsigned long rows)
{
    sqlite3_stmt *stmt = NULL;
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);   /* the same notes every time */
    int rc = sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(conn, "INSERT INTO notes(text) VALUES (?1)", -1, &stmt, NULL);
    for (unsigned long i = 0; rc == SQLITE_OK && i < rows; i++) {
        char text[256];
        int len = snprintf(text, sizeof text, "note %lu:", i + 1);
        for (int w = 0; w < 8; w++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            len += snprintf(text + len, sizeof text - (size_t)len, " %s",
                            seed_words[x % (sizeof seed_words / sizeof *seed_words)]);
        }
        rc = sqlite3_bind_text(stmt, 1, text, len, SQLITE_STATIC);
        if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_DONE)
            rc = sqlite3_reset(stmt);
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
    else
        sqlite3_exec(conn, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int64_t count_notes(sqlite3 *conn)
{
    sqlite3_stmt *stmt = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(conn, "SELECT count(*) FROM notes", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
}

/* Make the database if needed (WAL mode, the table), and seed an empty one.
 * Done once, before any worker opens it. */
static bool db_setup(const char *path, unsigned long seed)
{
    sqlite3 *conn = NULL;
    char mode[16] = "";
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(conn, BUSY_TIMEOUT_MS);
    /* WAL is a property of the file: set once, every connection gets it. */
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(conn, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(stmt, 0));
        rc = SQLITE_OK;
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(conn, "CREATE TABLE IF NOT EXISTS notes ("
                                " id INTEGER PRIMARY KEY, text TEXT NOT NULL)", NULL, NULL, NULL);
    int64_t rows = rc == SQLITE_OK ? count_notes(conn) : -1;
    if (rc == SQLITE_OK && rows == 0 && seed > 0) {
        rc = seed_notes(conn, seed);
        rows = (int64_t)seed;
    } else if (rc == SQLITE_OK && seed > 0) {
        printf("sqlite_notes: %s has notes already; --seed ignored\n", path);
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "sqlite_notes: %s: %s\n", path,
                conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
    else if (strcmp(mode, "wal") != 0)
        fprintf(stderr, "sqlite_notes: %s: no WAL mode (%s): readers and the writer will "
                "block each other\n", path, mode);
    else
        printf("sqlite_notes: %s: %" PRId64 " notes\n", path, rows);
    sqlite3_close(conn);
    return rc == SQLITE_OK;
}

static int check_db(const char *path)
{
    sqlite3 *conn = NULL;
    sqlite3_stmt *stmt = NULL;
    bool ok = false;
    /* Read-write (not created if missing) only so that closing the last
     * connection can remove the WAL files; nothing is written. */
    int rc = sqlite3_open_v2(path, &conn, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(conn, "PRAGMA integrity_check", -1, &stmt, NULL);
    /* One row "ok", or one row per problem found. */
    for (int n = 0; rc == SQLITE_OK || rc == SQLITE_ROW; n++) {
        if ((rc = sqlite3_step(stmt)) != SQLITE_ROW)
            break;
        const char *line = (const char *)sqlite3_column_text(stmt, 0);
        ok = n == 0 && line != NULL && strcmp(line, "ok") == 0;
        printf("integrity_check: %s\n", line ? line : "");
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "sqlite_notes: %s: %s\n", path,
                conn ? sqlite3_errmsg(conn) : sqlite3_errstr(rc));
        ok = false;
    } else {
        printf("notes: %" PRId64 "\n", count_notes(conn));
    }
    sqlite3_close(conn);
    return ok ? 0 : 1;
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
        "Usage: %s --db FILE [--port N] [--host ADDR] [--seed N] [--workers N]\n"
        "          [--timeout MS] [--inline]\n"
        "       %s --check --db FILE\n"
        "A JSON notes service over HTTP on one SQLite database; queries run on a\n"
        "thread pool, one SQLite connection per worker.\n"
        "\n"
        "  -d, --db FILE     the database (made if missing)\n"
        "  -p, --port N      port to listen on; 0 picks a free one (default 0)\n"
        "  -H, --host ADDR   IPv4 address to listen on (default 127.0.0.1)\n"
        "  -s, --seed N      fill a new, empty database with N notes\n"
        "  -w, --workers N   pool threads, one connection each (default 4); at\n"
        "                    most half of them scan at once\n"
        "  -t, --timeout MS  deadline of every request (default 5000)\n"
        "  -i, --inline      run the queries on the loop thread: a baseline to\n"
        "                    measure against, not a mode to use\n"
        "  -c, --check       run PRAGMA integrity_check on FILE and count its notes\n"
        "                    (with --seed: make and seed FILE first), then exit\n"
        "  -h, --help        this text\n"
        "\n"
        "Routes: GET /ping, POST /notes, GET /notes/ID, GET /search?q=WORD, GET /stats\n"
        "Exit status: 0 clean shutdown (or check passed), 1 failure, 2 usage error.\n",
        argv0, argv0);
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

/* The pool, and its views for writes and scans. */
static bool make_pools(struct server *srv, unsigned workers)
{
    struct evexec_pool_config cfg = {
        .max_workers = workers,
        .min_workers = workers,              /* keep the connections open */
        .max_queued = MAX_QUEUED,
        .thread_name = "notes",
        .thread_init = worker_open,
        .thread_exit = worker_close,
        .thread_ctx = srv,
        .flags = EVEXEC_POOL_INIT_RETRY,
    };
    struct evexec_view_config writes = {.max_running = 1, .max_queued = MAX_QUEUED};
    struct evexec_view_config scans = {.max_running = workers / 2, .max_queued = MAX_QUEUED};
    srv->pool = evexec_pool_new(&cfg);
    if (srv->pool != NULL)
        srv->writes = evexec_pool_new_view(srv->pool, &writes);
    if (srv->writes != NULL)
        srv->scans = evexec_pool_new_view(srv->pool, &scans);
    if (srv->scans == NULL)
        fprintf(stderr, "sqlite_notes: cannot make the pools: %s\n", strerror(errno));
    return srv->scans != NULL;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"db", required_argument, NULL, 'd'},
        {"port", required_argument, NULL, 'p'},
        {"host", required_argument, NULL, 'H'},
        {"seed", required_argument, NULL, 's'},
        {"workers", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"inline", no_argument, NULL, 'i'},
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    unsigned long port = 0, seed = 0, workers = 4, timeout = 5000;
    const char *db_path = NULL, *host = "127.0.0.1";
    bool inline_mode = false, check = false;
    int opt, status = 1;

    while ((opt = getopt_long(argc, argv, "d:p:H:s:w:t:ich", options, NULL)) != -1) {
        switch (opt) {
        case 'd': db_path = optarg; break;
        case 'H': host = optarg; break;
        case 'i': inline_mode = true; break;
        case 'c': check = true; break;
        case 'p':
            if (!parse_ulong(optarg, 65535, &port)) {
                fprintf(stderr, "sqlite_notes: --port wants 0..65535\n");
                return 2;
            }
            break;
        case 's':
            if (!parse_ulong(optarg, 100000000, &seed)) {
                fprintf(stderr, "sqlite_notes: --seed wants 0..100000000\n");
                return 2;
            }
            break;
        case 'w':
            if (!parse_ulong(optarg, 64, &workers) || workers < 2) {
                fprintf(stderr, "sqlite_notes: --workers wants 2..64\n");
                return 2;
            }
            break;
        case 't':
            if (!parse_ulong(optarg, 3600000, &timeout) || timeout == 0) {
                fprintf(stderr, "sqlite_notes: --timeout wants 1..3600000 ms\n");
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
    struct in_addr addr;
    if (optind != argc || db_path == NULL || inet_pton(AF_INET, host, &addr) != 1) {
        usage(stderr, argv[0]);
        return 2;
    }
    if (check)                               /* with --seed, seed first: a file to test with */
        return seed > 0 && !db_setup(db_path, seed) ? 1 : check_db(db_path);
    if (!db_setup(db_path, seed))
        return 1;

    /* A client that hangs up before its reply is written must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    struct server srv = {.db_path = db_path, .workers = (unsigned)workers,
                         .timeout_ms = (long)timeout};
    srv.base = event_base_new();
    if (srv.base == NULL || (srv.loop = evexec_loop_new(srv.base)) == NULL) {
        fprintf(stderr, "sqlite_notes: cannot set up the event loop\n");
        goto out;
    }
    if (inline_mode) {
        int err = db_open(db_path, &srv.counters, &srv.inline_db);
        if (err != 0) {
            fprintf(stderr, "sqlite_notes: %s: %s\n", db_path, strerror(err));
            goto out;
        }
    } else {
        if (!make_pools(&srv, (unsigned)workers))
            goto out;
    }
    srv.http = evhttp_new(srv.base);
    srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    srv.hard_timer = evtimer_new(srv.base, on_hard_stop, &srv);
    if (!srv.http || !srv.sigint || !srv.sigterm || !srv.hard_timer ||
        event_add(srv.sigint, NULL) != 0 || event_add(srv.sigterm, NULL) != 0) {
        fprintf(stderr, "sqlite_notes: cannot set up the server\n");
        goto out;
    }
    evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
    evhttp_set_max_body_size(srv.http, MAX_NOTE_BYTES);
    evhttp_set_max_headers_size(srv.http, 16384);
    /* An oversized body is read to its end before the 413 goes out, so the
     * client gets the reply instead of a reset connection. */
    evhttp_set_flags(srv.http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_timeout(srv.http, 60);        /* idle keep-alive connections */
    evhttp_set_gencb(srv.http, on_request, &srv);

    srv.listener = evhttp_bind_socket_with_handle(srv.http, host, (ev_uint16_t)port);
    if (srv.listener == NULL) {
        fprintf(stderr, "sqlite_notes: cannot listen on %s:%lu\n", host, port);
        goto out;
    }
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(evhttp_bound_socket_get_fd(srv.listener), (struct sockaddr *)&bound,
                    &bound_len) == 0)
        port = ntohs(bound.sin_port);
    printf("sqlite_notes: listening on %s:%lu (%s, deadline %lu ms)\n", host, port,
           inline_mode ? "inline: queries on the loop thread" : "queries on the pool", timeout);
    fflush(stdout);

    event_base_dispatch(srv.base);
    status = 0;
    printf("sqlite_notes: served %lu ping, %lu post, %lu get, %lu search; %lu bad requests, "
           "%lu refused, %lu past their deadline, %lu clients gone before their answer\n",
           srv.n_ping, srv.n_post, srv.n_get, srv.n_search, srv.n_bad, srv.n_refused,
           srv.n_timeout, srv.n_gone);

out:
    /* Nothing is in flight here; evhttp_free() closes every connection. */
    if (srv.http)
        evhttp_free(srv.http);
    /* The views first, then the pool: each worker closes its connection as
     * it exits. */
    evexec_pool_free(srv.scans);
    evexec_pool_free(srv.writes);
    evexec_pool_free(srv.pool);
    evexec_loop_free(srv.loop);
    db_close(srv.inline_db);
    if (srv.sigint)
        event_free(srv.sigint);
    if (srv.sigterm)
        event_free(srv.sigterm);
    if (srv.hard_timer)
        event_free(srv.hard_timer);
    if (srv.base)
        event_base_free(srv.base);
    return status;
}
