/*
 * http_offload.c -- an evhttp server that keeps its event loop free by
 * running slow handlers on a thread pool.
 *
 * What it demonstrates
 *   - Routes served on 127.0.0.1:
 *       /ping               answered on the loop thread at once ("pong");
 *       /hash?rounds=N      N rounds of an integer hash, computed on the pool;
 *       /file?name=PATH     a file under the served directory, read on the pool;
 *                           names that climb out of it ("..", absolute paths,
 *                           symlinks pointing outside) are refused with 400;
 *       POST /append        with --log FILE: the body, one line of printable
 *                           text (at most 1024 bytes; a final newline is
 *                           dropped), is appended to FILE and fsync()ed on
 *                           the pool; 400 for anything else, 413 if too long,
 *                           404 without --log;
 *       /stats              counters, on the loop.
 *   - Two ways to hand work over. /hash uses evexec_run_in_executor() with
 *     its input passed by value. /file's input (a path) must stay valid for
 *     as long as the task runs -- which may be after its loop future was
 *     cancelled and its request forgotten -- so it is submitted with
 *     evexec_pool_submit(), its input freed by a done callback of the
 *     concurrent future (run once the task is over), and the concurrent
 *     future wrapped for the loop with evexec_wrap_cfuture().
 *   - A deadline for every pool-backed request (--deadline, 10 s by default),
 *     with evexec_wait_for() (asyncio.wait_for): the job waits on a future
 *     that has the work's outcome, or fails with ETIMEDOUT after cancelling
 *     the work (a queued task never runs, a running one sees
 *     evexec_cancel_requested()); the request is answered 504 Gateway
 *     Timeout. The wait_for future borrows the work's result; the job holds
 *     and releases both futures.
 *   - A side effect reported truthfully. An /append past its deadline must
 *     not be answered "timed out" while its write may still commit, so it
 *     gets an evtimer instead of wait_for, which calls
 *     evexec_future_request_cancel(): the work is asked to stop but its
 *     future completes later with what the work really did. A task still
 *     queued never runs; one waiting for the log (writers take turns) sees
 *     evexec_cancel_requested() before its first byte and gives up -- both
 *     answered 504 "nothing was written"; one that has started writing
 *     finishes, answered 200 "written after the deadline". --append-delay
 *     makes the storage slow enough to see all three.
 *   - --inline serves the same routes on the loop thread, without the pool:
 *     run a few slow /hash requests and watch /ping stall, then compare.
 *   - A request whose client disconnects while its work runs: a watchdog
 *     notices (libevent 2.1 does not read the connection meanwhile) and frees
 *     the connection; its close callback cancels the work (a queued task
 *     never runs, a running one sees evexec_cancel_requested()) -- cancelling
 *     the wait_for future cancels the work it waits on; an /append is only
 *     asked to stop, as below, and counted once its write is over -- and forgets
 *     the request, which is never touched again. Whatever way a connection
 *     dies, the close callback is what keeps the job from touching a freed
 *     request; a job that still has its request answers it (which frees it).
 *   - Clean shutdown on SIGINT or SIGTERM: stop accepting, let requests in
 *     flight finish for --grace ms, then cancel the rest (answered 503; an
 *     /append is only asked to stop, and answered from its outcome), wait
 *     until every reply is written, and free everything. Nothing is leaked and
 *     no request is left unanswered while its client still listens.
 *
 * How to run it
 *   samples/http_offload --port 8080 --dir . &
 *   curl 'http://127.0.0.1:8080/ping'
 *   curl 'http://127.0.0.1:8080/hash?rounds=50000000'
 *   curl 'http://127.0.0.1:8080/file?name=README.md'
 *   curl 'http://127.0.0.1:8080/hash?rounds=2000000000'   # 504 after 10 s
 *   kill -TERM %1
 *   samples/http_offload --port 8080 --log /tmp/lines --deadline 500 \
 *       --append-delay 2000 --workers 2 &
 *   for i in 1 2 3; do curl --data-binary "line $i" http://127.0.0.1:8080/append & done
 *   kill -TERM %1
 *   --port 0 (the default) picks a free port; the first line printed says
 *   which: "http_offload: listening on http://127.0.0.1:PORT/ ...".
 *
 * Exit status: 0 after a clean shutdown, 1 runtime failure, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <evexec.h>

#define MAX_ROUNDS     UINT64_C(2000000000)
#define MAX_FILE_SIZE  (16u << 20)          /* bigger files: 413 */
#define HARD_STOP_MS   2000                 /* after the grace period */
#define WATCHDOG_MS    100                  /* how often to look for gone clients */
#define MAX_LINE       1024                 /* bytes of an /append line; longer: 413 */
#define MAX_BODY       (64u << 10)          /* bigger bodies: 413 from libevent itself */

struct server;

enum job_kind { JOB_HASH, JOB_FILE, JOB_APPEND };

/* A request handed to the pool: loop-side state only, linked in the
 * server's in-flight list from submission until its future's done callback
 * has run. Workers never see it: a cancelled future is done at once, while
 * its task may still be running, so the job may be freed under the task's
 * feet. What a task reads is its own (see struct file_task). */
struct job {
    struct server         *srv;
    struct evhttp_request *req;        /* NULL once the client went away */
    struct evexec_future  *work;       /* the task's own future */
    struct evexec_future  *in_time;    /* evexec_wait_for(work, deadline): answered
                                          from; NULL for JOB_APPEND */
    enum job_kind          kind;
    struct event          *deadline;   /* JOB_APPEND: asks the write to stop */
    bool                   late;       /* JOB_APPEND: the deadline came first */
    uint64_t               rounds;     /* JOB_HASH */
    struct job            *prev, *next;
};

/* The input of a /file task, owned by the task: freed by a done callback of
 * its concurrent future, which runs once the task has returned, or at once
 * if it is cancelled before it runs -- never while it runs. */
struct file_task {
    const struct server *srv;          /* outlives the pool: main() joins it first */
    char                 path[];       /* served dir + "/" + name */
};

/* The input of an /append task, owned by the library
 * (evexec_run_in_executor_ex() frees it once the task is done with it). */
struct append_task {
    struct server *srv;                /* outlives the pool, as above */
    size_t         len;
    char           line[];             /* the text and its '\n' */
};

/* What an /append task did once it had written something. A task that
 * fails (returns an error) has written nothing: that is what lets the loop
 * answer "nothing was written" from an error alone. */
struct append_report {
    size_t written;                    /* bytes of the line now in the log */
    size_t len;                        /* of the whole line */
    int    write_err;                  /* why the write stopped short, or 0 */
    int    sync_err;                   /* why fsync() failed, or 0 */
};

/* A file's contents, the result of a /file job. */
struct blob {
    size_t len;
    char   data[];
};

struct server {
    struct event_base          *base;
    struct evexec_loop         *loop;
    struct evexec_pool         *pool;       /* NULL with --inline */
    struct evhttp              *http;
    struct evhttp_bound_socket *listener;
    struct event               *sigint, *sigterm, *grace_timer, *hard_timer;
    struct event               *watchdog;   /* looks for clients gone away */
    char                       *dir;        /* realpath of the served directory */
    size_t                      dir_len;
    unsigned                    grace_ms;
    unsigned                    deadline_ms; /* per pool-backed request; 0: none */
    int                         log_fd;      /* --log, O_APPEND; -1 without */
    unsigned                    append_delay_ms;   /* --append-delay: slow storage */
    /* Serializes the writers of the log, so that a line needing several
     * write() calls is never interleaved with another. */
    pthread_mutex_t             log_lock;
    bool                        stopping;
    struct job                 *jobs;       /* in flight */
    unsigned                    in_flight;
    unsigned                    unsent;     /* replies not yet written out */
    /* counters for the summary */
    unsigned long               n_ping, n_hash, n_file, n_bad, n_cancelled, n_gone,
                                n_timed_out, n_appended;
};

/* ---- work: shared by both modes ------------------------------------------ */

/* A hash chain (xorshift-multiply), `rounds` long. In a worker it gives up
 * when its request is cancelled; on the loop (inline) it cannot. */
static int hash_rounds(uint64_t rounds, uint64_t *out)
{
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
    for (uint64_t i = 0; i < rounds; i++) {
        if ((i & 0xffff) == 0 && evexec_cancel_requested())
            return ECANCELED;
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 29;
        x += i;
    }
    *out = x;
    return 0;
}

/* Read a file below the served directory. `path` passed the lexical check
 * already; realpath() catches symlinks that lead outside. */
static int read_served_file(const char *dir, size_t dir_len, const char *path,
                            struct blob **out)
{
    char resolved[PATH_MAX];
    if (realpath(path, resolved) == NULL)
        return errno;
    if (strncmp(resolved, dir, dir_len) != 0 || resolved[dir_len] != '/')
        return EXDEV;                       /* escapes the served directory */

    int fd = open(resolved, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return EISDIR;                      /* directories, devices ... */
    }
    if ((uintmax_t)st.st_size > MAX_FILE_SIZE) {
        close(fd);
        return EFBIG;
    }
    struct blob *b = malloc(sizeof *b + (size_t)st.st_size);
    if (b == NULL) {
        close(fd);
        return ENOMEM;
    }
    b->len = 0;
    while (b->len < (size_t)st.st_size) {
        ssize_t n = read(fd, b->data + b->len, (size_t)st.st_size - b->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;                          /* shrank meanwhile: send what we have */
        b->len += (size_t)n;
    }
    close(fd);
    *out = b;
    return 0;
}

/* Work functions: run on a worker thread. */

/* Its only input, the number of rounds, travels by value in arg. */
static int work_hash(void *arg, void **result)
{
    uint64_t *h = malloc(sizeof *h);
    if (h == NULL)
        return ENOMEM;
    int err = hash_rounds((uint64_t)(uintptr_t)arg, h);
    *result = h;          /* freed by the library if err != 0 */
    return err;
}

static int work_file(void *arg, void **result)
{
    const struct file_task *t = arg;
    struct blob *b = NULL;
    int err = read_served_file(t->srv->dir, t->srv->dir_len, t->path, &b);
    *result = b;
    return err;
}

/* Done callback of a /file task's concurrent future: in the worker that ran
 * it, or in the thread that cancelled it before it ran. */
static void free_task_input(struct evexec_cfuture *cf, void *arg)
{
    (void)cf;
    free(arg);
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Append t's line to the log and make it durable. On a worker, or on the
 * loop with --inline (where evexec_cancel_requested() is always false).
 * Returns an error only if nothing was written. */
static int append_line(const struct append_task *t, struct append_report **out)
{
    struct server *srv = t->srv;
    struct append_report *r = calloc(1, sizeof *r);
    if (r == NULL)
        return ENOMEM;
    r->len = t->len;

    pthread_mutex_lock(&srv->log_lock);    /* other writers first: slow storage waits here */
    /* The last point where giving up is harmless: nothing is written yet. */
    if (evexec_cancel_requested()) {
        pthread_mutex_unlock(&srv->log_lock);
        free(r);
        return ECANCELED;
    }
    /* From the first byte on, the line is finished whatever is asked: no
     * evexec_cancel_requested() below. Stopping half-way would leave a torn
     * line in the log and a reply that could say neither "written" nor "not
     * written" -- the worst outcome of all. */
    while (r->written < t->len) {
        ssize_t n = write(srv->log_fd, t->line + r->written, t->len - r->written);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->write_err = n < 0 ? errno : EIO;
            break;
        }
        r->written += (size_t)n;
    }
    if (r->written > 0) {
        if (srv->append_delay_ms > 0)
            nap_ms(srv->append_delay_ms);  /* --append-delay: the device is slow */
        if (fsync(srv->log_fd) != 0)
            r->sync_err = errno;
    }
    pthread_mutex_unlock(&srv->log_lock);
    if (r->written == 0) {
        int err = r->write_err;
        free(r);
        return err;
    }
    *out = r;
    return 0;
}

static int work_append(void *arg, void **result)
{
    struct append_report *r = NULL;
    int err = append_line(arg, &r);
    *result = r;
    return err;
}

/* ---- replies --------------------------------------------------------------- */

static void maybe_finish(struct server *srv)
{
    if (srv->stopping && srv->in_flight == 0 && srv->unsent == 0)
        event_base_loopbreak(srv->base);
}

/* A reply was written out in full. */
static void on_reply_written(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    srv->unsent--;
    maybe_finish(srv);
}

/* A connection died with its reply partly written (libevent frees the
 * request without calling on_reply_written). */
static void on_reply_lost(struct evhttp_connection *evcon, void *arg)
{
    struct server *srv = arg;
    (void)evcon;
    srv->unsent--;
    maybe_finish(srv);
}

/* Every reply goes through here. It frees req (now, or once written); while
 * stopping, the server waits until every reply is written before it exits. */
static void send_reply(struct server *srv, struct evhttp_request *req, int code,
                       const char *reason, struct evbuffer *body)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon != NULL) {
        /* From now on the connection's close callback speaks for the reply,
         * no longer for a job (which is about to be freed); one of the two
         * callbacks below runs, once. */
        evhttp_connection_set_closecb(evcon, on_reply_lost, srv);
        evhttp_request_set_on_complete_cb(req, on_reply_written, srv);
        srv->unsent++;
        if (srv->stopping)
            evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    }
    /* With no connection left this only frees the request. */
    evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct server *srv, struct evhttp_request *req, int code,
                       const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void reply_text(struct server *srv, struct evhttp_request *req, int code,
                       const char *reason, const char *fmt, ...)
{
    struct evbuffer *body = evbuffer_new();
    va_list ap;
    if (body != NULL) {
        va_start(ap, fmt);
        evbuffer_add_vprintf(body, fmt, ap);
        va_end(ap);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    send_reply(srv, req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void reply_hash(struct server *srv, struct evhttp_request *req, uint64_t rounds,
                       uint64_t value)
{
    srv->n_hash++;
    reply_text(srv, req, HTTP_OK, "OK", "rounds=%" PRIu64 " hash=%016" PRIx64 "\n",
               rounds, value);
}

static void blob_cleanup(const void *data, size_t len, void *arg)
{
    (void)data;
    (void)len;
    free(arg);
}

/* Answer a /file request from err and, on success, the blob (taken over). */
static void reply_file(struct server *srv, struct evhttp_request *req, int err,
                       struct blob *b)
{
    switch (err) {
    case 0: {
        struct evbuffer *body = evbuffer_new();
        /* Zero copy: the evbuffer references the blob and frees it when done. */
        if (body == NULL || evbuffer_add_reference(body, b->data, b->len, blob_cleanup, b) != 0) {
            free(b);
            if (body != NULL)
                evbuffer_free(body);
            reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
            return;
        }
        srv->n_file++;
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/octet-stream");
        send_reply(srv, req, HTTP_OK, "OK", body);
        evbuffer_free(body);
        return;
    }
    case ENOENT: case ENOTDIR:
        reply_text(srv, req, HTTP_NOTFOUND, "Not Found", "no such file\n");
        return;
    case EACCES: case EPERM:
        reply_text(srv, req, 403, "Forbidden", "not readable\n");
        return;
    case EXDEV: case ELOOP: case EISDIR:
        srv->n_bad++;
        reply_text(srv, req, HTTP_BADREQUEST, "Bad Request",
                   "not a file in the served directory\n");
        return;
    case EFBIG:
        reply_text(srv, req, 413, "Payload Too Large", "file too large\n");
        return;
    default:
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "%s\n", evexec_strerror(err));
        return;
    }
}

/* Answer an /append from what the write really did: err and, when it wrote
 * something, its report (freed by the caller). late: the deadline passed
 * first, so an ECANCELED is the task giving up before writing. */
static void reply_append(struct server *srv, struct evhttp_request *req, bool late, int err,
                         const struct append_report *r)
{
    if (err == ECANCELED && late) {
        srv->n_timed_out++;
        reply_text(srv, req, 504, "Gateway Timeout",
                   "deadline of %u ms passed before the write started: nothing was written\n",
                   srv->deadline_ms);
    } else if (err == ECANCELED) {
        srv->n_cancelled++;
        reply_text(srv, req, 503, "Service Unavailable",
                   "server shutting down: nothing was written\n");
    } else if (err != 0) {
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error",
                   "nothing was written: %s\n", evexec_strerror(err));
    } else if (r->written < r->len) {
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error",
                   "only %zu of %zu bytes were written (%s): the log ends with a partial "
                   "line\n", r->written, r->len, evexec_strerror(r->write_err));
    } else if (r->sync_err != 0) {
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error",
                   "written, but not known to be on disk: fsync: %s\n",
                   evexec_strerror(r->sync_err));
    } else if (late) {
        reply_text(srv, req, HTTP_OK, "OK",
                   "written after the deadline of %u ms (the write had started): %zu bytes\n",
                   srv->deadline_ms, r->len);
    } else {
        reply_text(srv, req, HTTP_OK, "OK", "written: %zu bytes\n", r->len);
    }
}

/* ---- offloaded jobs ---------------------------------------------------------- */

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
    /* in_time borrows work's result, which is freed with work. */
    evexec_future_release(job->in_time);
    evexec_future_release(job->work);
    if (job->deadline != NULL)
        event_free(job->deadline);
    free(job);
}

/* Done callback of a job's evexec_wait_for() future, on the loop thread: the
 * work finished, failed, missed its deadline (wait_for cancelled it then) or
 * was cancelled through this future. For an /append, of its work future:
 * the write is over, or never started. */
static void on_job_done(struct evexec_future *f, void *arg)
{
    struct job *job = arg;
    struct server *srv = job->srv;
    void *result = NULL;
    /* Borrowed from job->work, as wait_for does: freed with it. */
    int err = evexec_future_result(f, &result);

    job_unlink(job);
    if (job->kind == JOB_APPEND) {
        /* f is the work's own future: its outcome is what the write did. */
        const struct append_report *r = result;
        if (err == 0 && r->written == r->len)
            srv->n_appended++;
        if (job->req == NULL)
            srv->n_gone++;
        else
            reply_append(srv, job->req, job->late, err, r);
    } else if (job->req == NULL) {
        /* The client went away; the close callback cancelled the work. */
        srv->n_gone++;
    } else if (err == ETIMEDOUT) {
        /* A queued task never runs; a running one sees evexec_cancel_requested(). */
        srv->n_timed_out++;
        reply_text(srv, job->req, 504, "Gateway Timeout",
                   "deadline of %u ms passed: work cancelled\n", srv->deadline_ms);
    } else if (err == ECANCELED) {
        srv->n_cancelled++;
        reply_text(srv, job->req, 503, "Service Unavailable", "cancelled: server shutting down\n");
    } else if (job->kind == JOB_HASH) {
        if (err == 0)
            reply_hash(srv, job->req, job->rounds, *(uint64_t *)result);
        else
            reply_text(srv, job->req, HTTP_INTERNAL, "Internal Server Error", "%s\n",
                       evexec_strerror(err));
    } else {
        struct blob *b = NULL;
        if (err == 0)
            evexec_future_take_result(f, (void **)&b);   /* from both futures: the reply's now */
        reply_file(srv, job->req, err, b);
    }
    job_free(job);
    maybe_finish(srv);
}

/* Stop a job's work. An /append is only asked to stop, so that its answer
 * and counters wait for what the write really did; the rest are cancelled. */
static void job_stop(struct job *job)
{
    if (job->kind == JOB_APPEND)
        evexec_future_request_cancel(job->work);   /* EALREADY: the outcome is in */
    else
        evexec_future_cancel(job->in_time);        /* cancels the work too */
}

/* The deadline of an /append passed. Cancelling would complete its future
 * with ECANCELED at once while the write may still commit -- what
 * evexec_wait_for() does, and why it is not used here. Asking leaves the
 * future pending until the work is over: a queued task never runs, one that
 * has not started writing gives up, one that has finishes; on_job_done()
 * answers from that. */
static void on_append_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct job *job = arg;
    (void)fd;
    (void)what;
    if (evexec_future_request_cancel(job->work) == 0)
        job->late = true;
    /* else EALREADY: done in time, its callback is on its way */
}

/* The connection of a job's request is going away: the client disconnected
 * (libevent has detached the unanswered request, which is ours to free), or
 * the server is being freed (libevent frees the request right after this). */
static void on_connection_close(struct evhttp_connection *evcon, void *arg)
{
    struct job *job = arg;
    (void)evcon;
    if (job->req != NULL && evhttp_request_get_connection(job->req) == NULL)
        evhttp_request_free(job->req);
    job->req = NULL;
    job_stop(job);                       /* the done callback frees the job */
}

/* libevent 2.1 does not read from a connection while its request is being
 * handled, so it would notice a client that hung up only when the reply is
 * written. While jobs are in flight, peek at their sockets now and then: end
 * of file or an error means nobody waits for the answer; freeing the
 * connection runs on_connection_close(), which cancels the work. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    for (struct job *job = srv->jobs; job != NULL; job = job->next) {
        struct evhttp_connection *evcon =
            job->req ? evhttp_request_get_connection(job->req) : NULL;
        if (evcon == NULL)
            continue;
        char c;
        ssize_t n = recv(bufferevent_getfd(evhttp_connection_get_bufferevent(evcon)), &c, 1,
                         MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            evhttp_connection_free(evcon);   /* the job stays listed until its callback */
    }
    if (srv->in_flight > 0) {
        struct timeval tv = {0, WATCHDOG_MS * 1000};
        evtimer_add(srv->watchdog, &tv);
    }
}

/* Track job, whose work future was just made (NULL on failure, with errno),
 * and give it the server's deadline. */
static void start_job(struct server *srv, struct evhttp_request *req, struct job *job)
{
    job->srv = srv;
    job->req = req;
    int err = job->work == NULL ? errno : 0;
    if (err == 0 && job->kind == JOB_APPEND) {
        /* Its own future, not a wait_for one: see on_append_deadline(). */
        struct timeval tv = {srv->deadline_ms / 1000, (srv->deadline_ms % 1000) * 1000};
        if (evexec_future_add_done_callback(job->work, on_job_done, job) != 0)
            err = ENOMEM;
        else if (srv->deadline_ms > 0 && evtimer_add(job->deadline, &tv) != 0)
            err = ENOMEM;
        if (err != 0) {
            /* The write may have started: say only what is known. */
            evexec_future_remove_done_callback(job->work, on_job_done, job);
            evexec_future_request_cancel(job->work);
            job_free(job);
            reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error",
                       "cannot follow the write (%s): the line may or may not be written\n",
                       evexec_strerror(err));
            return;
        }
    } else if (err == 0) {
        /* The work's outcome, or ETIMEDOUT once the deadline passed first;
         * cancelling in_time (client gone, shutdown) cancels the work. */
        job->in_time = evexec_wait_for(job->work, srv->deadline_ms ? (long)srv->deadline_ms : -1);
        if (job->in_time == NULL)
            err = errno;
        else if (evexec_future_add_done_callback(job->in_time, on_job_done, job) != 0)
            err = ENOMEM;
    }
    if (err != 0) {
        evexec_future_cancel(job->in_time);
        evexec_future_cancel(job->work);
        job_free(job);
        reply_text(srv, req, 503, "Service Unavailable", "cannot queue: %s\n",
                   evexec_strerror(err));
        return;
    }
    job->next = srv->jobs;
    if (srv->jobs)
        srv->jobs->prev = job;
    srv->jobs = job;
    srv->in_flight++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_connection_close, job);
    if (!evtimer_pending(srv->watchdog, NULL)) {
        struct timeval tv = {0, WATCHDOG_MS * 1000};
        evtimer_add(srv->watchdog, &tv);
    }
}

/* ---- routes ------------------------------------------------------------------- */

/* The value of `key` in the query string, copied into out; false if absent. */
static bool query_param(struct evhttp_request *req, const char *key, char *out, size_t size)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    bool found = false;

    if (query == NULL || evhttp_parse_query_str(query, &params) != 0)
        return false;
    const char *v = evhttp_find_header(&params, key);
    if (v != NULL && strlen(v) < size) {
        memcpy(out, v, strlen(v) + 1);
        found = true;
    }
    evhttp_clear_headers(&params);
    return found;
}

static bool refuse_if_stopping(struct server *srv, struct evhttp_request *req)
{
    if (!srv->stopping)
        return false;
    reply_text(srv, req, 503, "Service Unavailable", "shutting down\n");
    return true;
}

/* Answers 405 unless req uses method. */
static bool refuse_method(struct server *srv, struct evhttp_request *req,
                          enum evhttp_cmd_type method, const char *name)
{
    if (evhttp_request_get_command(req) == method)
        return false;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", name);
    reply_text(srv, req, 405, "Method Not Allowed", "use %s\n", name);
    return true;
}

static void on_ping(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    if (refuse_method(srv, req, EVHTTP_REQ_GET, "GET"))
        return;
    srv->n_ping++;
    reply_text(srv, req, HTTP_OK, "OK", "pong\n");
}

static void on_hash(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    char text[32];
    char *end;
    uint64_t rounds = 1000000;

    if (refuse_method(srv, req, EVHTTP_REQ_GET, "GET") || refuse_if_stopping(srv, req))
        return;
    if (query_param(req, "rounds", text, sizeof text)) {
        errno = 0;
        unsigned long long v = strtoull(text, &end, 10);
        if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || v == 0 ||
            v > MAX_ROUNDS) {
            srv->n_bad++;
            reply_text(srv, req, HTTP_BADREQUEST, "Bad Request",
                       "rounds must be 1..%" PRIu64 "\n", MAX_ROUNDS);
            return;
        }
        rounds = v;
    }
    if (srv->pool == NULL) {                /* --inline: the loop does the work */
        uint64_t value = 0;
        hash_rounds(rounds, &value);
        reply_hash(srv, req, rounds, value);
        return;
    }
    struct job *job = calloc(1, sizeof *job);
    if (job == NULL) {
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    job->kind = JOB_HASH;
    job->rounds = rounds;
    /* The simple form: run_in_executor, input by value, result freed by free(). */
    job->work = evexec_run_in_executor(srv->loop, srv->pool, work_hash,
                                         (void *)(uintptr_t)rounds, free);
    start_job(srv, req, job);
}

/* Lexical check of a /file name: relative, no "." or ".." component, no
 * empty component. What passes still gets realpath()-checked on read. */
static bool safe_relative_name(const char *name)
{
    if (name[0] == '\0' || name[0] == '/')
        return false;
    for (const char *p = name; *p != '\0';) {
        size_t len = strcspn(p, "/");
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += len;
        if (*p == '/')
            p++;
    }
    return true;
}

static void on_file(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    char name[PATH_MAX];

    if (refuse_method(srv, req, EVHTTP_REQ_GET, "GET") || refuse_if_stopping(srv, req))
        return;
    if (!query_param(req, "name", name, sizeof name) || !safe_relative_name(name)) {
        srv->n_bad++;
        reply_text(srv, req, HTTP_BADREQUEST, "Bad Request",
                   "name must be a relative path inside the served directory\n");
        return;
    }
    size_t path_size = srv->dir_len + 1 + strlen(name) + 1;
    struct file_task *t = malloc(sizeof *t + path_size);
    struct job *job = srv->pool ? calloc(1, sizeof *job) : NULL;
    if (t == NULL || (srv->pool != NULL && job == NULL)) {
        free(t);
        free(job);
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    t->srv = srv;
    snprintf(t->path, path_size, "%s/%s", srv->dir_len ? srv->dir : "", name);
    if (srv->pool == NULL) {                /* --inline */
        struct blob *b = NULL;
        int err = read_served_file(srv->dir, srv->dir_len, t->path, &b);
        free(t);
        reply_file(srv, req, err, b);
        return;
    }
    job->kind = JOB_FILE;
    /* The long form, for a task whose input must outlive it: submit to the
     * pool, tie the input's lifetime to the concurrent future, and wrap that
     * future for the loop. */
    struct evexec_cfuture *cf = evexec_pool_submit(srv->pool, work_file, t, free);
    if (cf == NULL) {
        free(t);
    } else if (evexec_cfuture_add_done_callback(cf, free_task_input, t) != 0) {
        /* Cannot tie t to the task: make sure the task is over, then free. */
        evexec_cfuture_cancel(cf);
        evexec_cfuture_wait(cf, -1);
        free(t);
        evexec_cfuture_release(cf);
        cf = NULL;
        errno = ENOMEM;
    }
    if (cf != NULL) {
        job->work = evexec_wrap_cfuture(srv->loop, cf);
        int saved = errno;
        if (job->work == NULL)
            evexec_cfuture_cancel(cf);      /* t is freed by its callback */
        evexec_cfuture_release(cf);         /* the loop future holds its own */
        errno = saved;
    }
    start_job(srv, req, job);
}

/* POST /append: the body, one line of text, is appended to the --log file
 * and fsync()ed on the pool. The answer says what happened to the line. */
static void on_append(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;

    if (refuse_method(srv, req, EVHTTP_REQ_POST, "POST"))
        return;
    if (srv->log_fd < 0) {
        reply_text(srv, req, HTTP_NOTFOUND, "Not Found",
                   "no log: start the server with --log FILE\n");
        return;
    }
    if (refuse_if_stopping(srv, req))
        return;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);     /* at most MAX_BODY: libevent saw to it */
    struct append_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) {
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    evbuffer_copyout(in, t->line, len);
    /* One final line end is the client's (curl --data-binary @file); the
     * server writes its own. */
    if (len > 0 && t->line[len - 1] == '\n')
        len--;
    if (len > 0 && t->line[len - 1] == '\r')
        len--;
    bool printable = len > 0;
    for (size_t i = 0; i < len && printable; i++) {
        unsigned char c = (unsigned char)t->line[i];
        printable = (c >= 0x20 && c != 0x7f) || c == '\t';
    }
    if (len > MAX_LINE) {
        free(t);
        reply_text(srv, req, 413, "Payload Too Large", "a line has at most %u bytes\n", MAX_LINE);
        return;
    }
    if (!printable) {
        free(t);
        srv->n_bad++;
        reply_text(srv, req, HTTP_BADREQUEST, "Bad Request",
                   "the body must be one non-empty line of text, without control characters\n");
        return;
    }
    t->line[len] = '\n';
    t->len = len + 1;
    t->srv = srv;
    if (srv->pool == NULL) {                /* --inline: the loop writes, and waits */
        struct append_report *r = NULL;
        int err = append_line(t, &r);
        if (err == 0 && r->written == r->len)
            srv->n_appended++;
        reply_append(srv, req, false, err, r);
        free(r);
        free(t);
        return;
    }
    struct job *job = calloc(1, sizeof *job);
    if (job != NULL && srv->deadline_ms > 0 &&
        (job->deadline = evtimer_new(srv->base, on_append_deadline, job)) == NULL) {
        free(job);
        job = NULL;
    }
    if (job == NULL) {
        free(t);
        reply_text(srv, req, HTTP_INTERNAL, "Internal Server Error", "out of memory\n");
        return;
    }
    job->kind = JOB_APPEND;
    /* The library owns t from here: it frees it once the task cannot touch
     * it any more, which is later than the job when the client goes away. */
    job->work = evexec_run_in_executor_ex(srv->loop, srv->pool, work_append, t, free, free);
    if (job->work == NULL) {
        int saved = errno;
        free(t);                            /* still ours: the call failed */
        errno = saved;
    }
    start_job(srv, req, job);
}

/* Counters, answered on the loop (the smoke test polls it). */
static void on_stats(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    if (refuse_method(srv, req, EVHTTP_REQ_GET, "GET"))
        return;
    reply_text(srv, req, HTTP_OK, "OK",
               "in_flight=%u ping=%lu hash=%lu file=%lu refused=%lu cancelled=%lu gone=%lu "
               "timed_out=%lu appended=%lu\n",
               srv->in_flight, srv->n_ping, srv->n_hash, srv->n_file, srv->n_bad,
               srv->n_cancelled, srv->n_gone, srv->n_timed_out, srv->n_appended);
}

static void on_other(struct evhttp_request *req, void *arg)
{
    reply_text(arg, req, HTTP_NOTFOUND, "Not Found",
               "routes: /ping /hash?rounds=N /file?name=PATH POST /append /stats\n");
}

/* ---- shutdown ------------------------------------------------------------------ */

static void cancel_all_jobs(struct server *srv)
{
    /* Cancelling only schedules the done callbacks, so the list stays intact. */
    for (struct job *job = srv->jobs; job != NULL; job = job->next)
        job_stop(job);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    if (srv->in_flight > 0)
        printf("http_offload: grace period over, cancelling %u requests\n", srv->in_flight);
    fflush(stdout);
    cancel_all_jobs(srv);
}

static void on_hard_stop(evutil_socket_t fd, short what, void *arg)
{
    struct server *srv = arg;
    (void)fd;
    (void)what;
    /* Some reply could not be written (its client stopped reading): give up
     * on it. evhttp_free() closes the connection. */
    printf("http_offload: %u replies still unwritten, closing anyway\n", srv->unsent);
    event_base_loopbreak(srv->base);
}

static void on_signal(evutil_socket_t signo, short what, void *arg)
{
    struct server *srv = arg;
    (void)what;
    if (srv->stopping) {                    /* second signal: do not wait */
        cancel_all_jobs(srv);
        return;
    }
    srv->stopping = true;
    printf("http_offload: %s, shutting down with %u requests in flight\n",
           signo == SIGINT ? "SIGINT" : "SIGTERM", srv->in_flight);
    fflush(stdout);
    evhttp_del_accept_socket(srv->http, srv->listener);   /* no new connections */
    srv->listener = NULL;
    struct timeval grace = {srv->grace_ms / 1000, (srv->grace_ms % 1000) * 1000};
    struct timeval hard = {(srv->grace_ms + HARD_STOP_MS) / 1000,
                           ((srv->grace_ms + HARD_STOP_MS) % 1000) * 1000};
    evtimer_add(srv->grace_timer, &grace);
    evtimer_add(srv->hard_timer, &hard);
    maybe_finish(srv);
}

/* ---- main ------------------------------------------------------------------------ */

static void usage(FILE *out, const char *argv0)
{
    fprintf(out,
        "Usage: %s [--port N] [--dir DIR] [--workers N] [--inline] [--grace MS]\n"
        "       [--deadline MS] [--log FILE [--append-delay MS]]\n"
        "An HTTP server on 127.0.0.1 whose slow routes run on a thread pool.\n"
        "\n"
        "  -p, --port N      port to listen on; 0 picks a free one (default 0)\n"
        "  -d, --dir DIR     directory served by /file (default .)\n"
        "  -w, --workers N   pool threads (default: number of CPUs)\n"
        "  -i, --inline      no pool: compute on the loop thread (for comparison)\n"
        "  -g, --grace MS    on SIGINT/SIGTERM, time left to requests in flight\n"
        "                    before they are cancelled (default 5000)\n"
        "  -t, --deadline MS the most a pool-backed request may take: past it the\n"
        "                    answer is 504 and its work is cancelled (an /append\n"
        "                    is asked to stop and says whether it wrote); 0: no\n"
        "                    deadline (default 10000; not with --inline)\n"
        "  -l, --log FILE    POST /append adds the request body, one line of text\n"
        "                    (at most %u bytes), to FILE and fsync()s it; without\n"
        "                    --log the route answers 404\n"
        "  -a, --append-delay MS  slow storage: each append holds the log MS\n"
        "                    longer once written (for demos and tests; default 0)\n"
        "  -h, --help        this text\n"
        "\n"
        "Routes: /ping, /hash?rounds=N, /file?name=PATH, POST /append, /stats\n"
        "Exit status: 0 clean shutdown, 1 failure, 2 usage error.\n",
        argv0, MAX_LINE);
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"port", required_argument, NULL, 'p'},
        {"dir", required_argument, NULL, 'd'},
        {"workers", required_argument, NULL, 'w'},
        {"inline", no_argument, NULL, 'i'},
        {"grace", required_argument, NULL, 'g'},
        {"deadline", required_argument, NULL, 't'},
        {"log", required_argument, NULL, 'l'},
        {"append-delay", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long port = 0, workers = cpus > 0 ? (unsigned long)cpus : 2, grace = 5000,
                  deadline = 10000, append_delay = 0;
    const char *dir = ".", *log_path = NULL;
    bool inline_mode = false;
    int opt, status = 1;

    while ((opt = getopt_long(argc, argv, "p:d:w:ig:t:l:a:h", options, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (!parse_uint(optarg, 65535, &port)) {
                fprintf(stderr, "http_offload: --port wants 0..65535\n");
                return 2;
            }
            break;
        case 'd':
            dir = optarg;
            break;
        case 'w':
            if (!parse_uint(optarg, 256, &workers) || workers == 0) {
                fprintf(stderr, "http_offload: --workers wants 1..256\n");
                return 2;
            }
            break;
        case 'i':
            inline_mode = true;
            break;
        case 'g':
            if (!parse_uint(optarg, 3600000, &grace)) {
                fprintf(stderr, "http_offload: --grace wants milliseconds\n");
                return 2;
            }
            break;
        case 't':
            if (!parse_uint(optarg, 3600000, &deadline)) {
                fprintf(stderr, "http_offload: --deadline wants milliseconds\n");
                return 2;
            }
            break;
        case 'l':
            log_path = optarg;
            break;
        case 'a':
            if (!parse_uint(optarg, 600000, &append_delay)) {
                fprintf(stderr, "http_offload: --append-delay wants milliseconds\n");
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
    if (optind != argc) {
        usage(stderr, argv[0]);
        return 2;
    }

    /* A client that hangs up before its reply is written must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    struct server srv = {.grace_ms = (unsigned)grace, .deadline_ms = (unsigned)deadline,
                         .append_delay_ms = (unsigned)append_delay, .log_fd = -1};
    srv.dir = realpath(dir, NULL);
    if (srv.dir == NULL) {
        fprintf(stderr, "http_offload: %s: %s\n", dir, strerror(errno));
        return 2;
    }
    if (log_path != NULL &&
        (srv.log_fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "http_offload: %s: %s\n", log_path, strerror(errno));
        free(srv.dir);
        return 2;
    }
    pthread_mutex_init(&srv.log_lock, NULL);
    srv.dir_len = strlen(srv.dir);
    if (srv.dir_len == 1)                   /* serving "/": compare against "" + '/' */
        srv.dir_len = 0;

    srv.base = event_base_new();
    if (srv.base == NULL || (srv.loop = evexec_loop_new(srv.base)) == NULL) {
        fprintf(stderr, "http_offload: cannot set up the event loop\n");
        goto out;
    }
    if (!inline_mode) {
        struct evexec_pool_config cfg = {.max_workers = (unsigned)workers,
                                         .thread_name = "http-work"};
        srv.pool = evexec_pool_new(&cfg);
        if (srv.pool == NULL) {
            fprintf(stderr, "http_offload: cannot make the pool: %s\n", strerror(errno));
            goto out;
        }
    }
    srv.http = evhttp_new(srv.base);
    srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
    srv.grace_timer = evtimer_new(srv.base, on_grace_over, &srv);
    srv.hard_timer = evtimer_new(srv.base, on_hard_stop, &srv);
    srv.watchdog = evtimer_new(srv.base, on_watchdog, &srv);
    if (!srv.http || !srv.sigint || !srv.sigterm || !srv.grace_timer || !srv.hard_timer ||
        !srv.watchdog ||
        event_add(srv.sigint, NULL) != 0 || event_add(srv.sigterm, NULL) != 0) {
        fprintf(stderr, "http_offload: cannot set up the server\n");
        goto out;
    }
    evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_max_body_size(srv.http, MAX_BODY);
    evhttp_set_cb(srv.http, "/ping", on_ping, &srv);
    evhttp_set_cb(srv.http, "/hash", on_hash, &srv);
    evhttp_set_cb(srv.http, "/file", on_file, &srv);
    evhttp_set_cb(srv.http, "/append", on_append, &srv);
    evhttp_set_cb(srv.http, "/stats", on_stats, &srv);
    evhttp_set_gencb(srv.http, on_other, &srv);

    srv.listener = evhttp_bind_socket_with_handle(srv.http, "127.0.0.1", (ev_uint16_t)port);
    if (srv.listener == NULL) {
        fprintf(stderr, "http_offload: cannot listen on 127.0.0.1:%lu\n", port);
        goto out;
    }
    struct sockaddr_in bound;
    socklen_t bound_len = sizeof bound;
    if (getsockname(evhttp_bound_socket_get_fd(srv.listener), (struct sockaddr *)&bound,
                    &bound_len) == 0)
        port = ntohs(bound.sin_port);
    printf("http_offload: listening on http://127.0.0.1:%lu/ (%s, serving %s)\n", port,
           inline_mode ? "inline: no pool" : "offload", srv.dir_len ? srv.dir : "/");
    if (!inline_mode && deadline > 0)
        printf("http_offload: pool of %lu workers, deadline %lu ms per request\n", workers,
               deadline);
    else if (!inline_mode)
        printf("http_offload: pool of %lu workers, no deadline\n", workers);
    if (log_path != NULL)
        printf("http_offload: POST /append writes to %s (%lu ms of storage delay)\n", log_path,
               append_delay);
    fflush(stdout);

    event_base_dispatch(srv.base);
    status = 0;
    printf("http_offload: served %lu ping, %lu hash, %lu file, %lu append; "
           "%lu refused (400), %lu past their deadline (504), %lu cancelled, %lu clients "
           "gone before their answer\n",
           srv.n_ping, srv.n_hash, srv.n_file, srv.n_appended, srv.n_bad, srv.n_timed_out,
           srv.n_cancelled, srv.n_gone);

out:
    /* No job is in flight here unless the hard stop fired; those are cancelled
     * by evexec_loop_free() below and their requests freed by evhttp_free()
     * (through the close callback, which forgets them first). */
    if (srv.http)
        evhttp_free(srv.http);
    evexec_pool_free(srv.pool);
    evexec_loop_free(srv.loop);
    while (srv.jobs != NULL) {              /* only after a hard stop */
        struct job *job = srv.jobs;
        job_unlink(job);
        job_free(job);
    }
    if (srv.sigint)
        event_free(srv.sigint);
    if (srv.sigterm)
        event_free(srv.sigterm);
    if (srv.grace_timer)
        event_free(srv.grace_timer);
    if (srv.hard_timer)
        event_free(srv.hard_timer);
    if (srv.watchdog)
        event_free(srv.watchdog);
    if (srv.base)
        event_base_free(srv.base);
    if (srv.log_fd >= 0)
        close(srv.log_fd);                  /* the pool, its only other user, is gone */
    pthread_mutex_destroy(&srv.log_lock);
    free(srv.dir);
    return status;
}
