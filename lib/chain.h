/*
 * chain.h -- the part of libevexec that knows both halves: the chain
 * (chain.c) joins a concurrent future to a loop future; the bridge (bridge.c),
 * above it, gives a loop its default pool, resolves evexec_run_in_executor's
 * pool and orders evexec_loop_free's teardown. The bridge calls the chain,
 * never the other way.
 */
#ifndef EVEXEC_CHAIN_H
#define EVEXEC_CHAIN_H

#include "executor.h"
#include "future.h"
#include "work.h"

/* evexec_run_in_executor_ex on a given pool, after the loop was checked. */
struct evexec_future *evexec__chain_run(struct evexec_loop *loop, struct evexec_pool *pool,
                                        evexec_work_fn fn, void *arg,
                                        evexec_free_fn free_result, evexec_free_fn free_arg);
/* evexec_loop_free: free the loop's recycled run_in_executor blocks. */
void evexec__chain_free_spares(struct evexec_loop *loop);

#endif /* EVEXEC_CHAIN_H */
