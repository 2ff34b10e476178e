/*
 * chain.h -- the part of libevexec that knows both halves: the chain
 * (chain.c) joins a concurrent future to a loop future; the bridge (bridge.c)
 * gives a loop its default pool and orders evexec_loop_free's teardown.
 */
#ifndef EVEXEC_CHAIN_H
#define EVEXEC_CHAIN_H

#include "executor.h"
#include "future.h"

/* evexec_loop_free: free the loop's recycled run_in_executor blocks. */
void evexec__chain_free_spares(struct evexec_loop *loop);

#endif /* EVEXEC_CHAIN_H */
