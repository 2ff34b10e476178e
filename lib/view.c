/*
 * view.c -- views of a pool (evexec_pool_new_view, evexec_pool_new_limited):
 * a bound on how many of a group of tasks run at once in a pool they share.
 *
 * A view is a struct evexec_pool (pool.h) with a parent and no threads: its
 * own FIFO queue, and at most max_running "pumps" in its parent. A pump is an
 * internal task of the parent that takes the view's tasks one at a time and
 * runs them on the parent's worker, until the view's queue is empty -- or,
 * when the parent has other work queued, until it has handed its slot to a
 * new pump at the back of the parent's queue. A pump that its parent cancels
 * or fails without running takes the view's queue down with it if it was the
 * last one. Views of views nest the same way.
 *
 * The public pool functions reach a view through its view_ops, set here, so
 * pool.c knows nothing of pumps. A view holds a reference to the memory of
 * its parent, so a parent freed first stays readable, refusing work, until
 * its last view is freed. A view freed from one of its own tasks is orphaned:
 * its last pump frees it.
 *
 * Locks are never nested: a view submits to its parent, and a pump (or a
 * parent failing a pump) takes the view's lock, only with no lock held.
 */
#include "pool.h"

#include <errno.h>

/* The views whose task this thread runs now, innermost first. */
struct pump_frame {
    const struct evexec_pool *view;
    struct pump_frame *outer;
};
static EVEXEC__TLS struct pump_frame *current_pump;

/* What a submission to view meets in its ancestors: 0, or the error of the
 * first one that stopped or broke. */
static int ancestors_refuse(const struct evexec_pool *view)
{
    for (const struct evexec_pool *p = view->parent; p; p = p->parent) {
        int err = atomic_load(&p->refusing);
        if (err)
            return err;
    }
    return 0;
}

/* Lock held: if no pump is left and no stranded list is being settled, the
 * view's tasks are all done: wake shutdown(WAIT) waiters. Returns true if an
 * orphaned view is to be freed now (after the lock is released). */
static bool view_check_idle(struct evexec_pool *view)
{
    if (view->npumps > 0 || view->nsettling > 0)
        return false;
    evexec__word_wake(&view->exit_word, true);
    return view->orphan;
}

/* The view's tasks that its last pump, just gone, can no longer run (lock
 * held): they are cancelled if the parent cancelled the pump, or fail with
 * the error that refused or failed it. Counted as settling until
 * view_settle() has finished them, so the view does not look idle before. */
static struct evexec_cfuture *view_take_stranded(struct evexec_pool *view, int err)
{
    if (view->npumps > 0 || !view->qhead)
        return NULL;
    view->nsettling++;
    return err == ECANCELED ? evexec__pool_take_to_cancel(view)
                            : evexec__pool_take_to_fail(view);
}

/* Finish a stranded list, no lock held; true if an orphaned view is to be
 * freed now. The done callbacks it runs are the view's as much as those a
 * pump runs: this thread counts as inside the view meanwhile, so freeing or
 * waiting for the view from one is refused as from a task, not a wait for
 * this very settling. */
static bool view_settle(struct evexec_pool *view, struct evexec_cfuture *list, int err)
{
    if (!list)
        return false;
    struct pump_frame frame = { view, current_pump };
    current_pump = &frame;
    if (err == ECANCELED)
        evexec__pool_cancel_list(list);
    else
        evexec__pool_fail_list(list, err);
    current_pump = frame.outer;
    evexec__lock_acquire(&view->lock);
    view->nsettling--;
    bool destroy = view_check_idle(view);
    evexec__lock_release(&view->lock);
    return destroy;
}

/* A pump that never ran -- cancelled or failed by the parent, or refused
 * when view_submit asked for it (then cf, the task that asked, is taken
 * back if no other pump took it: true). */
static bool view_pump_lost(struct evexec_pool *view, int err, struct evexec_cfuture *cf)
{
    evexec__lock_acquire(&view->lock);
    bool taken_back = cf && cf->qlink != NULL; /* still queued: its submission fails */
    if (taken_back) {
        evexec__pool_queue_remove(view, cf);
        view->submitted--;
    }
    view->npumps--;
    /* Tasks queued meanwhile, counting on this pump. */
    struct evexec_cfuture *list = view_take_stranded(view, err);
    bool destroy = view_check_idle(view);
    evexec__lock_release(&view->lock);
    if (view_settle(view, list, err) || destroy)
        evexec__pool_unref(view);
    return taken_back;
}

/* on_done of a pump: told once, when the pump ran (its own loop then freed
 * the slot and the view may be gone: touch nothing) or when the parent
 * cancelled or failed it without running it. */
static void pump_done(struct evexec_cfuture *pump)
{
    int state = atomic_load(&pump->state);
    if (state == EVEXEC_CANCELLED)
        (void)view_pump_lost(pump->arg, ECANCELED, NULL);
    else if (pump->error)
        (void)view_pump_lost(pump->arg, pump->error, NULL);
    evexec_cfuture_release(pump); /* the reference held for on_done */
}

static int pump_run(void *arg, void **result);

/* Queue a new pump for view in its parent. 0, or why the parent refused. */
static int pump_start(struct evexec_pool *view)
{
    struct evexec_cfuture *pump = evexec__malloc(sizeof(*pump));
    if (!pump)
        return ENOMEM;
    /* The queue's, on_done's, and this call's: a parent that is a view
     * itself reads the pump again if its own pump fails, and the pump may
     * have run and gone by then. */
    evexec__cfuture_init(pump, pump_run, view, NULL, 3);
    pump->on_done = pump_done;
    int err = evexec__pool_submit_cf(view->parent, pump);
    if (err)
        evexec__free(pump);
    else
        evexec_cfuture_release(pump);
    return err;
}

/* The work of a pump, on the parent's worker: run the view's tasks one at a
 * time, oldest first. Yield to the parent's other work by handing the slot
 * to a new pump at the back of its queue; if that fails, go on here. */
static int pump_run(void *arg, void **result)
{
    (void)result;
    struct evexec_pool *view = arg;
    struct pump_frame frame = { view, current_pump };
    current_pump = &frame;
    evexec__lock_acquire(&view->lock);
    struct evexec_cfuture *cf;
    while ((cf = evexec__pool_queue_pop(view))) {
        bool started = evexec__cfuture_start(cf);
        if (started)
            view->started++;
        else
            view->cancelled++;
        evexec__lock_release(&view->lock);
        if (started) {
            void *res = NULL;
            int err = evexec__cfuture_execute(cf, &res);
            atomic_fetch_add_explicit(&view->completed, 1, memory_order_relaxed);
            evexec__cfuture_finish_release(cf, err, res, NULL, NULL);
        } else {
            evexec_cfuture_release(cf); /* the queue's reference */
        }
        if (atomic_load_explicit(&view->queued_hint, memory_order_relaxed) > 0 &&
            evexec__pool_work_waiting(view->parent) &&
            pump_start(view) == 0) {
            current_pump = frame.outer;
            return 0; /* the slot is the new pump's */
        }
        evexec__lock_acquire(&view->lock);
    }
    view->npumps--;
    bool destroy = view_check_idle(view);
    evexec__lock_release(&view->lock);
    current_pump = frame.outer;
    if (destroy)
        evexec__pool_unref(view);
    return 0;
}

static int view_submit(struct evexec_pool *view, struct evexec_cfuture *cf)
{
    evexec__lock_acquire(&view->lock);
    int err = view->stopping ? ESHUTDOWN : ancestors_refuse(view);
    if (!err && view->cfg.max_queued && view->queued >= view->cfg.max_queued)
        err = EAGAIN;
    if (err) {
        evexec__lock_release(&view->lock);
        return err;
    }
    evexec__pool_queue_push(view, cf);
    view->submitted++;
    bool need_pump = view->npumps < view->max_running;
    if (need_pump)
        view->npumps++;
    evexec__lock_release(&view->lock);
    /* Outside the view's lock: the parent may fail the pump at once (no
     * thread), and pump_done takes this lock. */
    if (!need_pump || (err = pump_start(view)) == 0)
        return 0;
    return view_pump_lost(view, err, cf) ? err : 0;
}

static int view_shutdown(struct evexec_pool *view, unsigned flags)
{
    evexec__lock_acquire(&view->lock);
    view->stopping = true;
    atomic_store(&view->refusing, ESHUTDOWN);
    struct evexec_cfuture *cancelled = NULL;
    if (flags & EVEXEC_SHUTDOWN_CANCEL_PENDING)
        cancelled = evexec__pool_take_to_cancel(view);
    evexec__lock_release(&view->lock);
    evexec__pool_cancel_list(cancelled);
    if (!(flags & EVEXEC_SHUTDOWN_WAIT))
        return 0;
    /* No pump left and nothing stranded being settled means nothing queued
     * here, in the parent or running. */
    evexec__lock_acquire(&view->lock);
    while (view->npumps > 0 || view->nsettling > 0) {
        unsigned seen = atomic_load_explicit(&view->exit_word, memory_order_relaxed);
        evexec__lock_release(&view->lock);
        evexec__word_wait(&view->exit_word, seen, NULL);
        evexec__lock_acquire(&view->lock);
    }
    evexec__lock_release(&view->lock);
    return 0;
}

/* Freed from one of its own tasks: cancel what is queued and let the last
 * pump free it. */
static void view_orphan(struct evexec_pool *view)
{
    view_shutdown(view, EVEXEC_SHUTDOWN_CANCEL_PENDING);
    evexec__lock_acquire(&view->lock);
    view->orphan = true;
    bool destroy = view->npumps == 0 && view->nsettling == 0;
    evexec__lock_release(&view->lock);
    if (destroy)
        evexec__pool_unref(view);
}

/* True on a thread that runs a task of view: waiting there for view's tasks
 * to end would wait for itself. */
static bool view_inside_own_task(const struct evexec_pool *view)
{
    for (const struct pump_frame *f = current_pump; f; f = f->outer)
        if (f->view == view)
            return true;
    return false;
}

/* No pump left and nothing stranded being settled: nothing of the view
 * queued here or in the parent, nothing running, and every outcome
 * published (a pump's last task's before the pump left). */
static bool view_drained(struct evexec_pool *view)
{
    evexec__lock_acquire(&view->lock);
    bool drained = view->npumps == 0 && view->nsettling == 0;
    evexec__lock_release(&view->lock);
    return drained;
}

static const struct evexec__view_ops view_ops = {
    .submit = view_submit,
    .shutdown = view_shutdown,
    .orphan = view_orphan,
    .inside_own_task = view_inside_own_task,
    .drained = view_drained,
};

struct evexec_pool *evexec_pool_new_view(struct evexec_pool *parent,
                                         const struct evexec_view_config *cfg)
{
    if (!parent || !cfg || cfg->max_running == 0) {
        errno = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < sizeof(cfg->reserved) / sizeof(cfg->reserved[0]); i++) {
        if (cfg->reserved[i]) {
            errno = EINVAL;
            return NULL;
        }
    }
    if (evexec__forked(parent->fork_gen)) {
        errno = EVEXEC_EFORKED;
        return NULL;
    }
    int err = atomic_load(&parent->refusing);
    if (!err && parent->parent)
        err = ancestors_refuse(parent);
    if (err) {
        errno = err;
        return NULL;
    }
    struct evexec_pool *view = evexec__calloc(1, sizeof(*view));
    if (!view)
        return NULL;
    view->parent = parent;
    view->view_ops = &view_ops;
    view->max_running = cfg->max_running;
    view->cfg.max_queued = cfg->max_queued;
    view->fork_gen = evexec__fork_gen();
    atomic_init(&view->refs, 1);
    evexec__list_init(&view->idle);
    evexec__list_init(&view->live);
    evexec__list_init(&view->zombies);
    atomic_fetch_add_explicit(&parent->refs, 1, memory_order_relaxed);
    return view;
}

struct evexec_pool *evexec_pool_new_limited(struct evexec_pool *parent, unsigned max_running)
{
    struct evexec_view_config cfg = { .max_running = max_running };
    return evexec_pool_new_view(parent, &cfg);
}
