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
 * cancel them.
 */
#include "evexec-internal.h"

#include <errno.h>
#include <string.h>

static void run_callbacks(struct evexec__handle *h, bool discard);

static void pending_link(struct evexec_future *f)
{
    struct evexec_loop *loop = f->loop;
    f->pend_prev = NULL;
    f->pend_next = loop->pending;
    if (loop->pending)
        loop->pending->pend_prev = f;
    loop->pending = f;
}

void evexec__pending_unlink(struct evexec_future *f)
{
    if (f->pend_prev)
        f->pend_prev->pend_next = f->pend_next;
    else
        f->loop->pending = f->pend_next;
    if (f->pend_next)
        f->pend_next->pend_prev = f->pend_prev;
    f->pend_prev = f->pend_next = NULL;
}

void evexec__future_init(struct evexec_future *f, struct evexec_loop *loop, unsigned refs)
{
    /* Field by field, not memset: this is on the run_in_executor path. */
    f->loop = loop;
    atomic_init(&f->refs, refs);
    f->state = EVEXEC__F_PENDING;
    f->done_queued = false;
    f->embedded = false;
    f->taken = false;
    f->error = 0;
    f->result = NULL;
    f->free_result = NULL;
    f->cf = NULL;
    f->more_cbs = NULL;
    f->ncbs = f->cap = f->nrun = 0;
    f->done_handle.run = run_callbacks;
    f->deliver_handle.run = evexec__chain_deliver;
    evexec__loop_retain(loop);
    pending_link(f);
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

void evexec__future_run_callbacks(struct evexec_future *f)
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
        evexec__future_run_callbacks(f);
    evexec_future_release(f);
}

void evexec__future_settle(struct evexec_future *f, unsigned char state, int error)
{
    f->state = state;
    f->error = error;
    evexec__pending_unlink(f);
    schedule_callbacks(f);
}

struct evexec_future *evexec_future_new(struct evexec_loop *loop)
{
    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    if (loop->fork_gen != evexec__fork_gen()) {
        errno = EVEXEC_EFORKED;
        return NULL;
    }
    if (evexec__loop_closed(loop)) {
        errno = EVEXEC_ECLOSED;
        return NULL;
    }
    EVEXEC__ASSERT_LOOP_THREAD(loop, "evexec_future_new");
    struct evexec_future *f = evexec__malloc(sizeof(*f));
    if (!f)
        return NULL;
    evexec__future_init(f, loop, 1);
    return f;
}

/* EINVAL / EVEXEC_EFORKED for the functions that change a future. */
static int check_change(struct evexec_future *f, const char *func)
{
    if (!f)
        return EINVAL;
    if (f->loop->fork_gen != evexec__fork_gen())
        return EVEXEC_EFORKED;
    EVEXEC__ASSERT_LOOP_THREAD(f->loop, func);
    (void)func;
    return 0;
}

int evexec_future_set_result(struct evexec_future *f, void *result, evexec_free_fn free_result)
{
    int err = check_change(f, "evexec_future_set_result");
    if (err)
        return err;
    if (f->state != EVEXEC__F_PENDING || f->cf)
        return EINVAL; /* done, or completed by its work only */
    f->result = result;
    f->free_result = free_result;
    evexec__future_settle(f, EVEXEC__F_FINISHED, 0);
    return 0;
}

int evexec_future_set_error(struct evexec_future *f, int error)
{
    int err = check_change(f, "evexec_future_set_error");
    if (err)
        return err;
    if (error <= 0 || f->state != EVEXEC__F_PENDING || f->cf)
        return EINVAL;
    evexec__future_settle(f, EVEXEC__F_FINISHED, error);
    return 0;
}

bool evexec__future_cancel(struct evexec_future *f)
{
    if (f->state != EVEXEC__F_PENDING)
        return f->state == EVEXEC__F_CANCELLED;
    evexec__future_settle(f, EVEXEC__F_CANCELLED, 0);
    /* A queued task never runs; a running one is asked to stop. Its delivery
     * still comes and disposes of any late result. */
    if (f->cf)
        evexec_cfuture_cancel(f->cf);
    return true;
}

bool evexec_future_cancel(struct evexec_future *f)
{
    if (check_change(f, "evexec_future_cancel"))
        return false;
    return evexec__future_cancel(f);
}

bool evexec_future_done(struct evexec_future *f)
{
    if (!f)
        return false;
    EVEXEC__ASSERT_LOOP_THREAD(f->loop, "evexec_future_done");
    return f->state != EVEXEC__F_PENDING;
}

bool evexec_future_cancelled(struct evexec_future *f)
{
    if (!f)
        return false;
    EVEXEC__ASSERT_LOOP_THREAD(f->loop, "evexec_future_cancelled");
    return f->state == EVEXEC__F_CANCELLED;
}

static int outcome(struct evexec_future *f, void **result, bool take, const char *func)
{
    if (!f)
        return EINVAL;
    EVEXEC__ASSERT_LOOP_THREAD(f->loop, func);
    (void)func;
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
    if (f->cf && !f->embedded) /* wrap_cfuture: the result is the cfuture's */
        return evexec__cfuture_outcome(f->cf, result, take);
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
    int err = check_change(f, "evexec_future_add_done_callback");
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

void evexec_future_retain(struct evexec_future *f)
{
    if (f)
        atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void evexec_future_release(struct evexec_future *f)
{
    if (!f)
        return;
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    struct evexec_loop *loop = f->loop;
    if (f->state == EVEXEC__F_PENDING)
        evexec__pending_unlink(f); /* a plain future dropped unset */
    if ((!f->cf || f->embedded) && !f->taken && f->result && f->free_result)
        f->free_result(f->result);
    if (f->more_cbs)
        evexec__free(f->more_cbs);
    if (f->embedded) {
        evexec__chain_release_block(f); /* the block may be recycled */
    } else {
        struct evexec_cfuture *cf = f->cf;
        evexec__free(f);
        evexec_cfuture_release(cf);
    }
    evexec__loop_release(loop);
}

struct evexec_loop *evexec_future_loop(struct evexec_future *f)
{
    if (!f) {
        errno = EINVAL;
        return NULL;
    }
    return f->loop;
}
