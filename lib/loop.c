/*
 * loop.c -- the loop bridge: callbacks run on the thread of one event_base.
 *
 * Two queues feed the loop thread:
 *   - the ready queue (loop thread only), an intrusive FIFO filled by
 *     evexec_call_soon and by futures scheduling their done callbacks;
 *   - the foreign stack, a lock-free LIFO that any thread pushes onto
 *     (evexec_call_soon_threadsafe, chain deliveries from workers). The loop
 *     takes it whole with one exchange and reverses it, which restores the
 *     push order, so each producer's callbacks stay FIFO.
 *
 * Wakeups: a producer writes the wakeup fd (eventfd, or a non-blocking pipe)
 * only when its push found the stack empty and the loop is not draining. The
 * loop sets `draining` before it takes the stack and clears it after the
 * drain (a yield before the drain included, below), then looks at the
 * stack once more; these two pairs of seq_cst operations ensure a push is
 * either taken by a drain, seen by the post-drain check (which schedules
 * another pass without a syscall), or followed by a write. No wakeup is lost and a flood costs a handful of writes.
 *
 * Passes: a drain runs what was queued when it started. What is queued
 * meanwhile runs on the next pass: run_ev is then added with a zero timeout,
 * which libevent fires only after polling for I/O (event_active from inside
 * the drain would run it again before any poll and starve I/O). Outside a
 * drain, call_soon activates run_ev directly: no syscall.
 *
 * Spinning: at the end of a pass, with work in flight and nothing queued,
 * the loop may poll the foreign stack for up to spin_ns (still `draining`,
 * so workers do not write) and, if something arrives, schedule the next pass
 * at once. A poll that times out turns spinning off for a number of passes
 * that doubles with each miss (up to 1024) and is reset by a catch, so slow
 * work -- or a machine too busy to run the workers -- costs almost no CPU,
 * and fast work is soon caught again. No loop spins while the process has
 * as many loops as CPUs it may use: each spinning loop would take a CPU from
 * the workers it waits for (eight loops on two CPUs ran at a third of the
 * speed). Nor after a pass that ran out of time (see drain()).
 *
 * Yielding: while the process has as many loops as CPUs, a loop woken by a
 * write while less than half of its work in flight has come back gives its
 * CPU away once (sched_yield) before it takes the stack again, still
 * `draining`. The write has just woken it on the CPU of the worker that
 * wrote, which it usually preempts (the more so as workers run niced below
 * the loops by default). Taking that worker's completions one per wakeup,
 * the loop would resubmit one task at a time, the pool's queue would fill
 * with single tasks of every loop, and each completion would find the stack
 * empty and write again: eight loops on two CPUs wrote 5-20 times per window
 * of 256 tasks, where libuv writes about once. After the yield the worker
 * has finished its run and the loop takes it whole: about one write per
 * window. With nothing else runnable on the CPU the yield returns at once.
 * Only a wakeup that comes within a millisecond of the previous pass yields,
 * and a yield that caught nothing more backs off as a missed spin does, so a
 * loop waiting for long tasks does not hand its CPU (and its timers' time)
 * to them. Never on a process that may use one CPU: there every yield hands
 * the loop's CPU to the workers for a time slice, and W1 pinned to one CPU
 * ran at a quarter of its speed.
 *
 * Liveness: wake_ev is added only while the loop has chained futures in
 * flight or is referenced (evexec_loop_ref), so an idle bridge lets
 * event_base_dispatch() return. A post made while not listening leaves the
 * fd readable and the item queued: it runs as soon as the loop listens.
 *
 * Teardown (evexec__loop_close, called by evexec_loop_free once every
 * producer has settled what it can on the loop thread): `closed` is set
 * (seq_cst) before the loop takes the stack for the last time; a producer
 * whose push found the stack empty checks `closed` after pushing and, if set,
 * takes the stack and disposes of it itself -- run(h, true), which touches
 * nothing the loop thread owns. Memory is reference counted by the loop and
 * every future, and the wakeup fd is closed only with the memory, so a late
 * producer never writes to a reused fd.
 *
 * The loop knows nothing of what it runs: futures, the chain and the default
 * pool keep their data in fields of the loop marked as theirs.
 *
 * Lock order: the registry lock (loop_new/loop_free only), alone.
 */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#ifdef EVEXEC_WAKEUP_EVENTFD
#include <sys/eventfd.h>
#endif

/* One bridge per event_base: the loops that exist, for EEXIST. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct evexec_loop *registry;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
/* Loops that exist, read without the lock by the end-of-pass spin. */
static _Atomic unsigned live_loops;

static void registry_child(void)
{
    /* The parent's loops are unusable here: forget them, so a new loop can
     * be made on a new base. A parent thread may have held the lock at
     * fork(); nothing of the parent's registry is needed, so start afresh. */
    registry = NULL;
    atomic_store(&live_loops, 0);
    pthread_mutex_init(&registry_lock, NULL);
}

static void registry_init(void)
{
    pthread_atfork(NULL, NULL, registry_child);
}

/* ---- wakeup descriptor -------------------------------------------------- */

static int wake_open(struct evexec_loop *loop)
{
#ifdef EVEXEC_WAKEUP_EVENTFD
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return errno;
    loop->wake_rfd = loop->wake_wfd = fd;
#else
    int fds[2];
#ifdef HAVE_PIPE2
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return errno;
#else
    if (pipe(fds) < 0)
        return errno;
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
#endif
    loop->wake_rfd = fds[0];
    loop->wake_wfd = fds[1];
#endif
    return 0;
}

static void wake_close(struct evexec_loop *loop)
{
    close(loop->wake_rfd);
    if (loop->wake_wfd != loop->wake_rfd)
        close(loop->wake_wfd);
}

static void wake_write(struct evexec_loop *loop)
{
#ifdef EVEXEC_WAKEUP_EVENTFD
    const uint64_t one = 1;
    const void *buf = &one;
    size_t len = sizeof(one);
#else
    const char one = 1;
    const void *buf = &one;
    size_t len = 1;
#endif
    for (;;) {
        ssize_t n = write(loop->wake_wfd, buf, len);
        if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            break; /* EAGAIN: the counter or pipe is full, the loop is woken */
        if (errno != EINTR) {
            /* EBADF, EPIPE...: the descriptor was closed or broken behind the
             * library's back. The post stays queued and runs with the next
             * wakeup that works; count it so the program can see it. */
            atomic_fetch_add_explicit(&loop->wakeup_errors, 1, memory_order_relaxed);
            EVEXEC__ASSERT(false, "evexec wakeup", "write to the wakeup descriptor failed");
            break;
        }
    }
    atomic_fetch_add_explicit(&loop->wakeup_writes, 1, memory_order_relaxed);
}

static void wake_drain(struct evexec_loop *loop)
{
    char buf[256];
    for (;;) {
        ssize_t n = read(loop->wake_rfd, buf, sizeof(buf));
        if (n > 0) {
#ifdef EVEXEC_WAKEUP_EVENTFD
            break; /* an eventfd read resets the counter at once */
#else
            continue;
#endif
        }
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EAGAIN: empty */
    }
}

/* ---- the queues --------------------------------------------------------- */

static void schedule_run(struct evexec_loop *loop)
{
    if (loop->run_scheduled)
        return;
    loop->run_scheduled = true;
    if (loop->in_drain) {
        static const struct timeval zero = {0, 0};
        event_add(loop->run_ev, &zero);
    } else {
        event_active(loop->run_ev, EV_TIMEOUT, 0);
    }
}

void evexec__loop_schedule(struct evexec_loop *loop, struct evexec__handle *h)
{
    h->next = NULL;
    *loop->ready_tail = h;
    loop->ready_tail = &h->next;
    schedule_run(loop);
}

static void dispose_list(struct evexec__handle *list)
{
    while (list) {
        struct evexec__handle *h = list;
        list = h->next;
        h->run(h, true);
    }
}

void evexec__loop_post(struct evexec_loop *loop, struct evexec__handle *h)
{
    if (evexec__loop_on_thread(loop)) {
        if (evexec__loop_closed(loop))
            h->run(h, true);
        else
            evexec__loop_schedule(loop, h);
        return;
    }
    /* Once h is pushed the loop may run it at once, and the program may then
     * free the loop. A push onto a non-empty stack touches nothing after it;
     * one onto an empty stack still reads the flags and may write the wakeup
     * fd, so it holds the loop's memory, taken while h (which keeps the loop
     * alive until it runs) is still ours. */
    struct evexec__handle *old = atomic_load_explicit(&loop->foreign, memory_order_relaxed);
    bool held = false;
    for (;;) {
        if (!old && !held) {
            evexec__loop_retain(loop);
            held = true;
        }
        h->next = old;
        if (atomic_compare_exchange_weak(&loop->foreign, &old, h))
            break;
    }
    if (old != NULL) {
        if (held)
            evexec__loop_release(loop);
        return; /* whoever takes the stack takes this too */
    }
    if (atomic_load(&loop->closed))
        dispose_list(atomic_exchange(&loop->foreign, NULL));
    else if (!atomic_load(&loop->draining))
        wake_write(loop);
    evexec__loop_release(loop);
}

/* Move the foreign stack, in push order, to the end of the ready queue;
 * how many items it held. The newest item, taken first, ends up last. */
static uint64_t take_foreign(struct evexec_loop *loop)
{
    struct evexec__handle *list = atomic_exchange(&loop->foreign, NULL);
    if (!list)
        return 0;
    struct evexec__handle *fifo = NULL, **tail = &list->next;
    uint64_t n = 0;
    while (list) {
        struct evexec__handle *h = list;
        list = h->next;
        h->next = fifo;
        fifo = h;
        n++;
    }
    loop->foreign_posts += n;
    *loop->ready_tail = fifo;
    loop->ready_tail = tail;
    return n;
}

void evexec__loop_update_listening(struct evexec_loop *loop)
{
    bool want = loop->in_flight > 0 || loop->user_refs > 0;
    if (want == loop->listening)
        return;
    if (want ? event_add(loop->wake_ev, NULL) == 0 : event_del(loop->wake_ev) == 0)
        loop->listening = want;
}

static bool foreign_waiting(const void *ctx)
{
    const struct evexec_loop *loop = ctx;
    return atomic_load_explicit(&loop->foreign, memory_order_relaxed) != NULL;
}

/* End of a pass: poll briefly for a completion instead of sleeping. */
static void spin_for_completions(struct evexec_loop *loop)
{
    bool caught = evexec__spin_until(foreign_waiting, loop, loop->spin_ns);
    if (caught)
        loop->spins++;
    else
        loop->spins_missed++;
    evexec__backoff_outcome(&loop->spin_backoff, caught);
}

/* A yield pays while completions keep the loop busy: its wakeups then come
 * well under a millisecond apart. Work that takes longer gains nothing from
 * one, and the loop's timers would wait for a worker's time slice. */
#define YIELD_WITHIN_NS 1000000u

/* Whether to yield before taking the completions (see the top of the file):
 * with as many loops as CPUs (more than one), most of the work still out,
 * the previous pass recent, and no recent yield that caught nothing. */
static bool yield_before_drain(struct evexec_loop *loop, uint64_t took, uint64_t now)
{
    return loop->in_flight > 2 * took && now - loop->pass_start_ns < YIELD_WITHIN_NS &&
           loop->cpus > 1 &&
           atomic_load_explicit(&live_loops, memory_order_relaxed) >= loop->cpus &&
           evexec__backoff_ready(&loop->yield_backoff);
}

/* Callbacks run between two looks at the clock. */
#define PASS_CHECK_EVERY 16

/* The pass ran out of time: what is left of the batch runs first on the
 * next pass, before what was queued meanwhile, after libevent has polled and
 * run its due timers. */
static void cut_pass(struct evexec_loop *loop)
{
    if (loop->ready_head) {
        *loop->batch_tail = loop->ready_head;
        loop->batch_tail = loop->ready_tail;
    }
    loop->ready_head = loop->batch_head;
    loop->ready_tail = loop->batch_tail;
    loop->batch_head = NULL;
    loop->batch_tail = &loop->batch_head;
    loop->passes_cut++;
    schedule_run(loop);
}

static void drain(struct evexec_loop *loop, bool readable)
{
    atomic_store(&loop->draining, true);
    uint64_t start = evexec__now_ns();
    if (readable) {
        wake_drain(loop);
        uint64_t took = take_foreign(loop);
        if (yield_before_drain(loop, took, start)) {
            /* Still `draining`: what completes meanwhile is pushed without
             * a write and taken here. */
            sched_yield();
            evexec__backoff_outcome(&loop->yield_backoff, take_foreign(loop) > 0);
            start = evexec__now_ns();
        }
    } else {
        take_foreign(loop);
    }
    loop->pass_start_ns = start;

    loop->batch_head = loop->ready_head;
    loop->batch_tail = loop->batch_head ? loop->ready_tail : &loop->batch_head;
    loop->ready_head = NULL;
    loop->ready_tail = &loop->ready_head;
    loop->in_drain = true;
    bool long_pass = false;
    unsigned ran = 0;
    while (loop->batch_head) {
        struct evexec__handle *h = loop->batch_head;
        loop->batch_head = h->next;
        if (!loop->batch_head)
            loop->batch_tail = &loop->batch_head;
        loop->callbacks_run++;
        h->run(h, false);
        if (evexec__loop_closed(loop))
            return; /* a callback freed the loop: its memory lives until we return */
        /* Bound the pass by time, not only by count: a flood of completions
         * must not hold a due timer (or I/O) for longer than the budget. */
        if (++ran % PASS_CHECK_EVERY == 0 && loop->batch_head &&
            evexec__now_ns() - start >= loop->pass_budget_ns) {
            cut_pass(loop);
            long_pass = true;
            break;
        }
    }
    loop->drains++;

    /* No spin after a long pass: libevent may have a timer due, and it only
     * learns of it once the loop returns to it. */
    if (!long_pass && loop->spin_ns && loop->in_flight > 0 && !loop->ready_head &&
        atomic_load_explicit(&live_loops, memory_order_relaxed) < loop->cpus &&
        atomic_load_explicit(&loop->foreign, memory_order_relaxed) == NULL &&
        evexec__now_ns() - start < loop->pass_budget_ns &&
        evexec__backoff_ready(&loop->spin_backoff))
        spin_for_completions(loop);

    /* Still in_drain: anything found now waits for the next pass. */
    atomic_store(&loop->draining, false);
    if (atomic_load(&loop->foreign) != NULL)
        schedule_run(loop);
    loop->in_drain = false;
    evexec__loop_update_listening(loop);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct evexec_loop *loop = arg;
    evexec__loop_retain(loop);
    drain(loop, true);
    evexec__loop_release(loop);
}

static void on_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct evexec_loop *loop = arg;
    loop->run_scheduled = false;
    evexec__loop_retain(loop);
    drain(loop, false);
    evexec__loop_release(loop);
}

/* ---- public API --------------------------------------------------------- */

struct evexec_loop *evexec_loop_new(struct event_base *base)
{
    if (!base) {
        errno = EINVAL;
        return NULL;
    }
    evexec__fork_init();
    pthread_once(&registry_once, registry_init);
    struct evexec_loop *loop = evexec__calloc(1, sizeof(*loop));
    if (!loop)
        return NULL;
    int err = wake_open(loop);
    if (err) {
        evexec__free(loop);
        errno = err;
        return NULL;
    }
    loop->base = base;
    loop->thread = pthread_self();
    loop->fork_gen = evexec__fork_gen();
    loop->ready_tail = &loop->ready_head;
    loop->batch_tail = &loop->batch_head;
    evexec__list_init(&loop->pending);
    evexec__list_init(&loop->requests);
    atomic_init(&loop->refs, 1);
    if (evexec__cpus_allowed() > 1)
        loop->spin_ns = EVEXEC_DEFAULT_LOOP_SPIN_US * 1000u;
    loop->pass_budget_ns = EVEXEC__PASS_BUDGET_US * 1000u;
    loop->cpus = (unsigned)evexec__cpus_allowed();
    loop->wake_ev = event_new(base, loop->wake_rfd, EV_READ | EV_PERSIST, on_wake, loop);
    loop->run_ev = event_new(base, -1, 0, on_run, loop);
    if (!loop->wake_ev || !loop->run_ev) {
        err = ENOMEM;
        goto fail;
    }
    pthread_mutex_lock(&registry_lock);
    for (struct evexec_loop *l = registry; l; l = l->registry_next) {
        if (l->base == base) {
            pthread_mutex_unlock(&registry_lock);
            err = EEXIST;
            goto fail;
        }
    }
    loop->registry_next = registry;
    registry = loop;
    atomic_fetch_add(&live_loops, 1);
    pthread_mutex_unlock(&registry_lock);
    return loop;
fail:
    if (loop->wake_ev)
        event_free(loop->wake_ev);
    if (loop->run_ev)
        event_free(loop->run_ev);
    wake_close(loop);
    evexec__free(loop);
    errno = err;
    return NULL;
}

void evexec__loop_destroy(struct evexec_loop *loop)
{
    wake_close(loop);
    evexec__free(loop);
}

void evexec__loop_close(struct evexec_loop *loop)
{
    atomic_store(&loop->closed, true);

    pthread_mutex_lock(&registry_lock);
    for (struct evexec_loop **p = &registry; *p; p = &(*p)->registry_next) {
        if (*p == loop) {
            *p = loop->registry_next;
            atomic_fetch_sub(&live_loops, 1);
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);

    /* From here a poster that finds the stack empty disposes of it itself. */
    dispose_list(atomic_exchange(&loop->foreign, NULL));
    struct evexec__handle *ready = loop->ready_head;
    loop->ready_head = NULL;
    loop->ready_tail = &loop->ready_head;
    dispose_list(ready);
    if (loop->in_drain) {
        /* Freed from one of its own callbacks: the rest of the batch too. */
        struct evexec__handle *batch = loop->batch_head;
        loop->batch_head = NULL;
        loop->batch_tail = &loop->batch_head;
        dispose_list(batch);
    }
    event_free(loop->wake_ev);
    event_free(loop->run_ev);
    loop->wake_ev = loop->run_ev = NULL;
    loop->listening = false;
}

struct event_base *evexec_loop_base(struct evexec_loop *loop)
{
    if (!loop) {
        errno = EINVAL;
        return NULL;
    }
    if (evexec__forked(loop->fork_gen)) {
        errno = EVEXEC_EFORKED;
        return NULL;
    }
    return loop->base;
}

/* A public callback queued on the loop. */
struct soon_call {
    struct evexec__handle h;
    evexec_callback_fn cb;
    void *arg;
};

static void soon_call_run(struct evexec__handle *h, bool discard)
{
    struct soon_call *c = evexec__container_of(h, struct soon_call, h);
    if (!discard)
        c->cb(c->arg);
    evexec__free(c);
}

static int check_call(struct evexec_loop *loop, evexec_callback_fn cb, const char *func)
{
    if (!loop || !cb)
        return EINVAL;
    if (evexec__forked(loop->fork_gen))
        return EVEXEC_EFORKED;
    if (evexec__loop_closed(loop))
        return EVEXEC_ECLOSED;
    if (func)
        EVEXEC__ASSERT_LOOP_THREAD(loop, func);
    return 0;
}

int evexec_call_soon(struct evexec_loop *loop, evexec_callback_fn cb, void *arg)
{
    int err = check_call(loop, cb, "evexec_call_soon");
    if (err)
        return err;
    struct soon_call *c = evexec__malloc(sizeof(*c));
    if (!c)
        return ENOMEM;
    c->h.run = soon_call_run;
    c->cb = cb;
    c->arg = arg;
    *loop->ready_tail = &c->h;
    c->h.next = NULL;
    loop->ready_tail = &c->h.next;
    schedule_run(loop);
    return 0;
}

int evexec_call_soon_threadsafe(struct evexec_loop *loop, evexec_callback_fn cb, void *arg)
{
    int err = check_call(loop, cb, NULL);
    if (err)
        return err;
    if (evexec__loop_on_thread(loop))
        return evexec_call_soon(loop, cb, arg);
    struct soon_call *c = evexec__malloc(sizeof(*c));
    if (!c)
        return ENOMEM;
    c->h.run = soon_call_run;
    c->cb = cb;
    c->arg = arg;
    evexec__loop_post(loop, &c->h);
    return 0;
}

void evexec_loop_ref(struct evexec_loop *loop)
{
    if (evexec__loop_check(loop, "evexec_loop_ref"))
        return;
    loop->user_refs++;
    evexec__loop_update_listening(loop);
}

void evexec_loop_unref(struct evexec_loop *loop)
{
    if (evexec__loop_check(loop, "evexec_loop_unref"))
        return;
    EVEXEC__ASSERT(loop->user_refs > 0, "evexec_loop_unref", "more unrefs than refs");
    if (loop->user_refs == 0)
        return;
    loop->user_refs--;
    if (!loop->in_drain)
        evexec__loop_update_listening(loop);
}

int evexec_loop_get_stats(struct evexec_loop *loop, struct evexec_loop_stats *stats)
{
    if (!loop || !stats)
        return EINVAL;
    if (evexec__forked(loop->fork_gen))
        return EVEXEC_EFORKED;
    EVEXEC__ASSERT_LOOP_THREAD(loop, "evexec_loop_get_stats");
    memset(stats, 0, sizeof(*stats));
    stats->callbacks_run = loop->callbacks_run;
    stats->foreign_posts = loop->foreign_posts;
    stats->wakeup_writes = atomic_load_explicit(&loop->wakeup_writes, memory_order_relaxed);
    stats->drains = loop->drains;
    stats->in_flight = loop->in_flight;
    stats->spins = loop->spins;
    stats->spins_missed = loop->spins_missed;
    stats->wakeup_errors = atomic_load_explicit(&loop->wakeup_errors, memory_order_relaxed);
    stats->passes_cut = loop->passes_cut;
    return 0;
}

int evexec_loop_set_spin(struct evexec_loop *loop, unsigned spin_us)
{
    int err = evexec__loop_check(loop, "evexec_loop_set_spin");
    if (err)
        return err;
    loop->spin_ns = (uint64_t)spin_us * 1000u;
    loop->spin_backoff = (struct evexec__backoff){0};
    return 0;
}
