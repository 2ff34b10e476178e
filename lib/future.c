/*
 * future.c -- the loop future: an outcome owned by one loop thread.
 *
 * Not thread-safe by design: every function but retain/release runs on the
 * loop thread, so the state needs no atomics. The reference count is atomic
 * only because, after evexec_loop_free, a late completion may drop the last
 * reference on a worker thread.
 *
 * Done callbacks never run inside the call that completed the future or
 * added the callback: the future queues its done_handle on the loop, and
 * that handle runs every callback not yet run, in registration order. The
 * queued handle holds a reference, so releasing a future whose callbacks are
 * queued is safe.
 *
 * Pending futures sit on the loop's pending list so evexec_loop_free can
 * cancel them before it closes the loop; the list is the loop thread's
 * alone, and nothing is pending once the loop is closed.
 *
 * What completes a future is not this file's business: a producer (the
 * chain, a combinator) hands the future a table of hooks (future.h) to hear
 * of cancellation, to keep the result or the memory on its side.
 */
#include "future.h"

#include <errno.h>
#include <string.h>

static void run_callbacks(struct evexec__handle *h, bool discard);

void evexec__future_init(struct evexec_future *f, struct evexec_loop *loop, unsigned refs,
                         const struct evexec__future_ops *ops)
{
    /* Field by field, not memset: this is on the run_in_executor path. */
    f->loop = loop;
    atomic_init(&f->refs, refs);
    f->state = EVEXEC__F_PENDING;
    f->done_queued = false;
    f->taken = false;
    f->error = 0;
    f->result = NULL;
    f->free_result = NULL;
    f->ops = ops;
    f->more_cbs = NULL;
    f->ncbs = f->cap = f->nrun = 0;
    f->done_handle.run = run_callbacks;
    evexec__loop_retain(loop);
    evexec__list_push_front(&loop->pending, &f->pending_node);
}

static struct evexec__done_cb *cb_slot(struct evexec_future *f, unsigned i)
{
    return i == 0 ? &f->first_cb : &f->more_cbs[i - 1];
}

static void schedule_callbacks(struct evexec_future *f)
{
    if (f->done_queued || f->nrun == f->ncbs || evexec__loop_closed(f->loop))
        return;
    f->done_queued = true;
    evexec_future_retain(f); /* the queue's reference */
    evexec__loop_schedule(f->loop, &f->done_handle);
}

static void run_pending_callbacks(struct evexec_future *f)
{
    /* A callback may add callbacks (they run here too) or free the loop
     * (then nothing more runs). */
    while (f->nrun < f->ncbs && !evexec__loop_closed(f->loop)) {
        struct evexec__done_cb c = *cb_slot(f, f->nrun++);
        c.cb(f, c.arg);
    }
}

static void run_callbacks(struct evexec__handle *h, bool discard)
{
    struct evexec_future *f = evexec__container_of(h, struct evexec_future, done_handle);
    f->done_queued = false;
    if (!discard)
        run_pending_callbacks(f);
    evexec__future_drop(f); /* the queue's reference */
}

/* Leave PENDING (loop thread). */
static void settle(struct evexec_future *f, unsigned char state, void *result,
                   evexec_free_fn free_result, int error)
{
    EVEXEC__ASSERT(evexec__loop_on_thread(f->loop), "evexec future", "settled off the loop thread");
    f->state = state;
    f->result = result;
    f->free_result = free_result;
    f->error = error;
    evexec__list_remove(&f->pending_node);
}

void evexec__future_finish(struct evexec_future *f, void *result, evexec_free_fn free_result,
                           int error)
{
    settle(f, EVEXEC__F_FINISHED, result, free_result, error);
    schedule_callbacks(f);
}

void evexec__future_settle_cancelled(struct evexec_future *f)
{
    settle(f, EVEXEC__F_CANCELLED, NULL, NULL, 0);
    schedule_callbacks(f);
}

void evexec__future_deliver(struct evexec_future *f, unsigned char state, void *result,
                            evexec_free_fn free_result, int error)
{
    settle(f, state, result, free_result, error);
    run_pending_callbacks(f);
}

struct evexec_future *evexec_future_new(struct evexec_loop *loop)
{
    int err = evexec__loop_check(loop, "evexec_future_new");
    if (err) {
        errno = err;
        return NULL;
    }
    struct evexec_future *f = evexec__malloc(sizeof(*f));
    if (!f)
        return NULL;
    evexec__future_init(f, loop, 1, NULL);
    return f;
}

/* EINVAL / EVEXEC_EFORKED for the functions that use a future; debug builds
 * assert the thread. */
static int check_future(const struct evexec_future *f, const char *func)
{
    if (!f)
        return EINVAL;
    if (evexec__forked(f->loop->fork_gen))
        return EVEXEC_EFORKED;
    EVEXEC__ASSERT_LOOP_THREAD(f->loop, func);
    (void)func;
    return 0;
}

static bool producer_only(const struct evexec_future *f)
{
    return f->ops && f->ops->producer_only;
}

int evexec_future_set_result(struct evexec_future *f, void *result, evexec_free_fn free_result)
{
    int err = check_future(f, "evexec_future_set_result");
    if (err)
        return err;
    if (f->state != EVEXEC__F_PENDING || producer_only(f))
        return EINVAL; /* done, or completed by its work only */
    evexec__future_finish(f, result, free_result, 0);
    return 0;
}

int evexec_future_set_error(struct evexec_future *f, int error)
{
    int err = check_future(f, "evexec_future_set_error");
    if (err)
        return err;
    if (error <= 0 || f->state != EVEXEC__F_PENDING || producer_only(f))
        return EINVAL;
    evexec__future_finish(f, NULL, NULL, error);
    return 0;
}

static bool cancel(struct evexec_future *f)
{
    if (f->state != EVEXEC__F_PENDING)
        return f->state == EVEXEC__F_CANCELLED;
    evexec__future_settle_cancelled(f);
    /* The producer stops its work: a queued task never runs, a running one
     * is asked to stop, a timer is stopped. */
    if (f->ops && f->ops->cancelled)
        f->ops->cancelled(f);
    return true;
}

bool evexec_future_cancel(struct evexec_future *f)
{
    int err = check_future(f, "evexec_future_cancel");
    if (err) {
        errno = err; /* as evexec_future_done and evexec_cfuture_cancel */
        return false;
    }
    return cancel(f);
}

void evexec__future_cancel_all(struct evexec_loop *loop)
{
    /* A hook may cancel other futures of the loop (a combinator's children)
     * or settle them: always take the first one left. */
    struct evexec__list *n;
    while ((n = evexec__list_first(&loop->pending)) != NULL) {
        struct evexec_future *f = evexec__list_entry(n, struct evexec_future, pending_node);
        evexec_future_retain(f);
        cancel(f);
        evexec_future_release(f);
    }
}

int evexec_future_request_cancel(struct evexec_future *f)
{
    int err = check_future(f, "evexec_future_request_cancel");
    if (err)
        return err;
    if (f->state != EVEXEC__F_PENDING)
        return EALREADY;
    if (!f->ops || !f->ops->request_cancel)
        return ENOTSUP; /* no work behind it to ask */
    return f->ops->request_cancel(f);
}

bool evexec_future_done(struct evexec_future *f)
{
    int err = check_future(f, "evexec_future_done");
    if (err) {
        errno = err;
        return false;
    }
    return f->state != EVEXEC__F_PENDING;
}

bool evexec_future_cancelled(struct evexec_future *f)
{
    int err = check_future(f, "evexec_future_cancelled");
    if (err) {
        errno = err;
        return false;
    }
    return f->state == EVEXEC__F_CANCELLED;
}

static int outcome(struct evexec_future *f, void **result, bool take, const char *func)
{
    int err = check_future(f, func);
    if (err)
        return err;
    switch (f->state) {
    case EVEXEC__F_PENDING:
        return EINPROGRESS;
    case EVEXEC__F_CANCELLED:
        return ECANCELED;
    default:
        break;
    }
    if (f->error)
        return f->error;
    if (f->ops && f->ops->outcome) /* the result is the producer's */
        return f->ops->outcome(f, result, take);
    if (f->taken)
        return EVEXEC_ETAKEN;
    if (take)
        f->taken = true;
    if (result)
        *result = f->result;
    return 0;
}

int evexec_future_result(struct evexec_future *f, void **result)
{
    return outcome(f, result, false, "evexec_future_result");
}

int evexec_future_take_result(struct evexec_future *f, void **result)
{
    return outcome(f, result, true, "evexec_future_take_result");
}

int evexec_future_add_done_callback(struct evexec_future *f, evexec_future_cb cb, void *arg)
{
    int err = check_future(f, "evexec_future_add_done_callback");
    if (err)
        return err;
    if (!cb)
        return EINVAL;
    if (evexec__loop_closed(f->loop))
        return EVEXEC_ECLOSED;
    if (f->ncbs > 0 && f->ncbs - 1 == f->cap) {
        unsigned cap = f->cap ? f->cap * 2 : 4;
        struct evexec__done_cb *more = evexec__malloc(cap * sizeof(*more));
        if (!more)
            return ENOMEM;
        if (f->cap)
            memcpy(more, f->more_cbs, f->cap * sizeof(*more));
        evexec__free(f->more_cbs);
        f->more_cbs = more;
        f->cap = cap;
    }
    struct evexec__done_cb *slot = cb_slot(f, f->ncbs++);
    slot->cb = cb;
    slot->arg = arg;
    if (f->state != EVEXEC__F_PENDING)
        schedule_callbacks(f);
    return 0;
}

int evexec_future_remove_done_callback(struct evexec_future *f, evexec_future_cb cb, void *arg)
{
    int err = check_future(f, "evexec_future_remove_done_callback");
    if (err) {
        errno = err;
        return -1;
    }
    /* Only registrations not yet run are candidates; the survivors close up
     * in order, so a queued done_handle runs exactly them. */
    unsigned kept = f->nrun;
    for (unsigned i = f->nrun; i < f->ncbs; i++) {
        struct evexec__done_cb c = *cb_slot(f, i);
        if (c.cb == cb && c.arg == arg)
            continue;
        *cb_slot(f, kept++) = c;
    }
    int removed = (int)(f->ncbs - kept);
    f->ncbs = kept;
    return removed;
}

void evexec_future_retain(struct evexec_future *f)
{
    if (f && !evexec__forked(f->loop->fork_gen))
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void evexec_future_release(struct evexec_future *f)
{
    if (!f || evexec__forked(f->loop->fork_gen))
        return; /* an inherited future is leaked, as its loop is */
    evexec__future_drop(f);
}

void evexec__future_drop(struct evexec_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    struct evexec_loop *loop = f->loop;
    if (f->state == EVEXEC__F_PENDING) {
        /* A plain future dropped unset. Only the loop thread holds pending
         * futures' last references: they are all settled before the loop
         * closes, and workers drop references only after that. */
        EVEXEC__ASSERT(evexec__loop_on_thread(loop), "evexec_future_release",
                       "last reference of a pending future dropped off the loop thread");
        evexec__list_remove(&f->pending_node);
    }
    if (!f->taken && f->result && f->free_result)
        f->free_result(f->result);
    if (f->more_cbs)
        evexec__free(f->more_cbs);
    if (f->ops && f->ops->release)
        f->ops->release(f); /* the producer's memory */
    else
        evexec__free(f);
    evexec__loop_release(loop);
}

struct evexec_loop *evexec_future_loop(struct evexec_future *f)
{
    if (!f) {
        errno = EINVAL;
        return NULL;
    }
    if (evexec__forked(f->loop->fork_gen)) {
        errno = EVEXEC_EFORKED;
        return NULL;
    }
    return f->loop;
}
