/*
 * combine.c -- futures made of timers and other futures: evexec_sleep,
 * evexec_wait_for, evexec_gather and evexec_wait (asyncio's sleep, wait_for,
 * gather and wait). Loop thread only; this file knows loop futures and
 * libevent timers, nothing of pools or concurrent futures.
 *
 * Each call makes one block: the output future (embedded, completed only by
 * this file), a libevent timer on the loop's base when it needs one, and the
 * distinct futures it watches ("children"). While the output is pending the
 * block is attached: it holds a reference on each child, one done callback
 * on each child (its argument is the block), its timer, and a reference on
 * its own output, so the caller may release the output early. detach() gives
 * all of that back in one place, exactly once, when the output leaves
 * PENDING: completed from a child's callback or the timer, or cancelled --
 * by the user or by evexec_loop_free, whose sweep runs the cancelled hook
 * while the loop and its base are still there, so the timer is freed in
 * time and nothing of the block runs after the loop is gone.
 *
 * Nothing completes inside the call that made it: a child that is done
 * already calls back from the loop's queue, and a combinator with no child
 * arms a zero timer, which libevent runs on its next pass. A pending timer
 * is what keeps event_base_dispatch running for a sleep or a timeout, as any
 * libevent timer does; the children keep it running for themselves.
 *
 * evexec_wait_for keeps its child after success: its output borrows the
 * child's result through the outcome hook, so a result taken through either
 * future is taken from both, and the block lets go of the child when the
 * output is freed.
 */
#include "future.h"

#include <errno.h>
#include <stdint.h>

#include <event2/event.h>

enum comb_kind { COMB_SLEEP, COMB_WAIT_FOR, COMB_GATHER, COMB_WAIT };

struct comb {
    struct evexec_future out;
    enum comb_kind kind;
    unsigned return_when;              /* COMB_WAIT */
    struct event *timer;               /* NULL once stopped, or if none */
    struct evexec_future *kept;        /* COMB_WAIT_FOR after success: the child */
    size_t n;                          /* distinct children */
    size_t ndone;                      /* of which done, as their callbacks told */
    struct evexec_future *child[];
};

static struct comb *comb_of(struct evexec_future *f)
{
    return evexec__container_of(f, struct comb, out);
}

/* A child's outcome as a combinator sees it: 0, its error, or ECANCELED. A
 * taken result is a success. */
static int child_error(const struct evexec_future *ch)
{
    return ch->state == EVEXEC__F_CANCELLED ? ECANCELED : ch->error;
}

static void child_done(struct evexec_future *ch, void *arg);

/* Give back what the attached block holds; may free the block. */
static void detach(struct comb *c, bool cancel_children)
{
    if (c->timer) {
        event_free(c->timer);
        c->timer = NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        struct evexec_future *ch = c->child[i];
        evexec_future_remove_done_callback(ch, child_done, c);
        if (cancel_children)
            evexec_future_cancel(ch);
        if (ch != c->kept)
            evexec_future_release(ch);
    }
    c->n = 0;
    evexec_future_release(&c->out); /* the block's own reference */
}

/* Finish the output (callbacks scheduled, not run) and detach. */
static void complete(struct comb *c, int error)
{
    evexec__future_finish(&c->out, NULL, NULL, error);
    detach(c, false);
}

/* evexec_wait_for: the output takes the outcome of its child, now done. */
static void wait_for_settle(struct comb *c)
{
    struct evexec_future *f = c->child[0];
    if (f->state == EVEXEC__F_CANCELLED) {
        evexec__future_settle_cancelled(&c->out);
        detach(c, false);
        return;
    }
    if (f->error == 0)
        c->kept = f; /* the output borrows its result from now on */
    complete(c, f->error);
}

/* Whether evexec_wait's condition holds, by the children's states. */
static bool wait_holds_now(const struct comb *c)
{
    size_t done = 0;
    for (size_t i = 0; i < c->n; i++) {
        const struct evexec_future *ch = c->child[i];
        if (ch->state == EVEXEC__F_PENDING)
            continue;
        done++;
        if (c->return_when == EVEXEC_FIRST_COMPLETED ||
            (c->return_when == EVEXEC_FIRST_EXCEPTION && child_error(ch) != 0))
            return true;
    }
    return done == c->n;
}

static void child_done(struct evexec_future *ch, void *arg)
{
    struct comb *c = arg;
    if (c->out.state != EVEXEC__F_PENDING)
        return; /* detach removed this callback: not reached */
    int err = child_error(ch);
    c->ndone++;
    switch (c->kind) {
    case COMB_WAIT_FOR:
        wait_for_settle(c);
        break;
    case COMB_GATHER:
        if (err != 0 || c->ndone == c->n)
            complete(c, err); /* the first error, in completion order */
        break;
    case COMB_WAIT:
        if (c->ndone == c->n || c->return_when == EVEXEC_FIRST_COMPLETED ||
            (c->return_when == EVEXEC_FIRST_EXCEPTION && err != 0))
            complete(c, 0);
        break;
    case COMB_SLEEP:
        break;
    }
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    struct comb *c = arg;
    (void)fd;
    (void)what;
    /* A non-persistent timer that has fired is no longer pending: freeing it
     * here, in its own callback, is allowed. */
    event_free(c->timer);
    c->timer = NULL;
    switch (c->kind) {
    case COMB_SLEEP:
    case COMB_GATHER: /* the zero timer of a gather over nothing */
        complete(c, 0);
        break;
    case COMB_WAIT_FOR:
        /* A child done before its callback could run has still made it. */
        if (c->child[0]->state != EVEXEC__F_PENDING) {
            wait_for_settle(c);
            break;
        }
        /* Finish first, so the child's cancellation cannot reach a pending
         * output; then cancel the child (and its work) as detach lets go. */
        evexec__future_finish(&c->out, NULL, NULL, ETIMEDOUT);
        detach(c, true);
        break;
    case COMB_WAIT:
        complete(c, wait_holds_now(c) ? 0 : ETIMEDOUT);
        break;
    }
}

/* The output was cancelled (by the user, or by evexec_loop_free's sweep):
 * stop at once. gather and wait_for pass the cancellation on; wait never
 * touches the futures it watches. */
static void comb_cancelled(struct evexec_future *f)
{
    struct comb *c = comb_of(f);
    detach(c, c->kind == COMB_GATHER || c->kind == COMB_WAIT_FOR);
}

static int wait_for_outcome(struct evexec_future *f, void **result, bool take)
{
    struct comb *c = comb_of(f);
    return take ? evexec_future_take_result(c->kept, result)
                : evexec_future_result(c->kept, result);
}

static void comb_release(struct evexec_future *f)
{
    struct comb *c = comb_of(f);
    evexec_future_release(c->kept);
    evexec__free(c);
}

static const struct evexec__future_ops comb_ops = {
    .cancelled = comb_cancelled,
    .release = comb_release,
    .producer_only = true,
};

static const struct evexec__future_ops wait_for_ops = {
    .cancelled = comb_cancelled,
    .outcome = wait_for_outcome,
    .release = comb_release,
    .producer_only = true,
};

/* ---- making one ---------------------------------------------------------- */

static int check_timeout(long timeout_ms)
{
    return timeout_ms < -1 ? EINVAL : 0;
}

/* A block for up to n children, or NULL (ENOMEM). */
static struct comb *comb_alloc(enum comb_kind kind, size_t n)
{
    if (n > (SIZE_MAX - sizeof(struct comb)) / sizeof(struct evexec_future *)) {
        errno = ENOMEM;
        return NULL;
    }
    struct comb *c = evexec__malloc(sizeof(*c) + n * sizeof(c->child[0]));
    if (!c)
        return NULL;
    c->kind = kind;
    c->return_when = 0;
    c->timer = NULL;
    c->kept = NULL;
    c->n = 0;
    c->ndone = 0;
    return c;
}

static int arm_timer(struct comb *c, struct evexec_loop *loop, long ms)
{
    c->timer = event_new(loop->base, -1, 0, timer_fired, c);
    if (!c->timer)
        return ENOMEM;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_add(c->timer, &tv) != 0) {
        event_free(c->timer);
        c->timer = NULL;
        return ENOMEM;
    }
    return 0;
}

/* Undo a block that was never returned: its callbacks were added, its
 * references taken, its output not yet initialised. */
static void comb_discard(struct comb *c, size_t registered)
{
    if (c->timer)
        event_free(c->timer);
    for (size_t i = 0; i < c->n; i++) {
        if (i < registered)
            evexec_future_remove_done_callback(c->child[i], child_done, c);
        evexec_future_release(c->child[i]);
    }
    evexec__free(c);
}

/* Watch every child, then start the output: the caller's reference and the
 * attached block's. On failure nothing of the block is left. */
static struct evexec_future *comb_start(struct comb *c, struct evexec_loop *loop,
                                        const struct evexec__future_ops *ops, long timer_ms)
{
    int err = 0;
    size_t registered = 0;
    for (; registered < c->n; registered++) {
        err = evexec_future_add_done_callback(c->child[registered], child_done, c);
        if (err)
            break;
    }
    if (!err && timer_ms >= 0)
        err = arm_timer(c, loop, timer_ms);
    if (err) {
        comb_discard(c, registered);
        errno = err;
        return NULL;
    }
    evexec__future_init(&c->out, loop, 2, ops);
    return &c->out;
}

/* Pointer order, then argument order, for finding a future given twice. */
struct slot {
    struct evexec_future *f;
    size_t index;
};

static int by_future(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    if (x->f != y->f)
        return (uintptr_t)x->f < (uintptr_t)y->f ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int by_index(const void *a, const void *b)
{
    const struct slot *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Check fs and copy its distinct futures into c, in argument order, each
 * with a reference. 0, EINVAL, EVEXEC_EFORKED or ENOMEM (then c holds
 * nothing). */
static int take_children(struct comb *c, struct evexec_loop *loop,
                         struct evexec_future *const *fs, size_t n)
{
    if (n > 0 && !fs)
        return EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!fs[i])
            return EINVAL;
        if (evexec__forked(fs[i]->loop->fork_gen))
            return EVEXEC_EFORKED; /* as every other call on it */
        if (fs[i]->loop != loop)
            return EINVAL;
    }
    if (n == 0)
        return 0;
    struct slot *s = evexec__malloc(n * sizeof(*s));
    if (!s)
        return ENOMEM;
    for (size_t i = 0; i < n; i++) {
        s[i].f = fs[i];
        s[i].index = i;
    }
    qsort(s, n, sizeof(*s), by_future);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || s[i].f != s[i - 1].f)
            s[kept++] = s[i]; /* the first time it was given */
    qsort(s, kept, sizeof(*s), by_index);
    for (size_t i = 0; i < kept; i++) {
        evexec_future_retain(s[i].f);
        c->child[i] = s[i].f;
    }
    c->n = kept;
    evexec__free(s);
    return 0;
}

struct evexec_future *evexec_sleep(struct evexec_loop *loop, long ms)
{
    int err = evexec__loop_check(loop, "evexec_sleep");
    if (!err && ms < 0)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    struct comb *c = comb_alloc(COMB_SLEEP, 0);
    if (!c)
        return NULL;
    return comb_start(c, loop, &comb_ops, ms);
}

struct evexec_future *evexec_wait_for(struct evexec_future *f, long timeout_ms)
{
    int err = f ? evexec__loop_check(f->loop, "evexec_wait_for") : EINVAL;
    if (!err)
        err = check_timeout(timeout_ms);
    if (err) {
        errno = err;
        return NULL;
    }
    struct comb *c = comb_alloc(COMB_WAIT_FOR, 1);
    if (!c)
        return NULL;
    evexec_future_retain(f);
    c->child[0] = f;
    c->n = 1;
    /* A child done already decides on the next pass, through its callback:
     * no timer then, whatever the timeout. */
    long timer_ms = f->state == EVEXEC__F_PENDING ? timeout_ms : -1;
    return comb_start(c, f->loop, &wait_for_ops, timer_ms);
}

struct evexec_future *evexec_gather(struct evexec_loop *loop, struct evexec_future *const *fs,
                                    size_t n)
{
    int err = evexec__loop_check(loop, "evexec_gather");
    if (err) {
        errno = err;
        return NULL;
    }
    struct comb *c = comb_alloc(COMB_GATHER, n);
    if (!c)
        return NULL;
    err = take_children(c, loop, fs, n);
    if (err) {
        evexec__free(c);
        errno = err;
        return NULL;
    }
    return comb_start(c, loop, &comb_ops, c->n == 0 ? 0 : -1);
}

struct evexec_future *evexec_wait(struct evexec_loop *loop, struct evexec_future *const *fs,
                                  size_t n, unsigned return_when, long timeout_ms)
{
    int err = evexec__loop_check(loop, "evexec_wait");
    if (!err)
        err = check_timeout(timeout_ms);
    if (!err && return_when != EVEXEC_FIRST_COMPLETED &&
        return_when != EVEXEC_FIRST_EXCEPTION && return_when != EVEXEC_ALL_COMPLETED)
        err = EINVAL;
    if (err) {
        errno = err;
        return NULL;
    }
    struct comb *c = comb_alloc(COMB_WAIT, n);
    if (!c)
        return NULL;
    err = take_children(c, loop, fs, n);
    if (err) {
        evexec__free(c);
        errno = err;
        return NULL;
    }
    c->return_when = return_when;
    /* Over nothing, a zero timer finishes it. If the condition holds
     * already, the children's callbacks finish it on the next pass, before
     * any timeout could; otherwise the timeout is a timer. */
    long timer_ms = c->n == 0 ? 0 : wait_holds_now(c) ? -1 : timeout_ms;
    return comb_start(c, loop, &comb_ops, timer_ms);
}
