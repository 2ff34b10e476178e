/*
 * consume.c -- the program tests/cmake-consume/CMakeLists.txt builds: one
 * task on a pool, its result printed from the loop thread. It checks that
 * the header it was compiled with, the library it runs with and the CMake
 * package file that found them all give the same version.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <evexec.h>

static int triple(void *arg, void **result)
{
    *(int *)arg *= 3;
    *result = arg;
    return 0;
}

static void on_done(struct evexec_future *f, void *arg)
{
    void *result;

    *(int *)arg = evexec_future_result(f, &result) == 0 ? *(int *)result : -1;
}

int main(void)
{
    struct evexec_pool_config cfg = {0};
    struct event_base *base;
    struct evexec_loop *loop;
    struct evexec_pool *pool;
    struct evexec_future *f;
    int value = 14, seen = 0;

    cfg.max_workers = 2;
    if (!(base = event_base_new()) || !(loop = evexec_loop_new(base)) ||
        !(pool = evexec_pool_new(&cfg))) {
        fprintf(stderr, "consume: setup failed\n");
        return 1;
    }
    if (!(f = evexec_run_in_executor(loop, pool, triple, &value, NULL)) ||
        evexec_future_add_done_callback(f, on_done, &seen) != 0) {
        fprintf(stderr, "consume: submitting failed\n");
        return 1;
    }
    event_base_dispatch(base);
    evexec_future_release(f);
    evexec_loop_free(loop);
    evexec_pool_free(pool);
    event_base_free(base);

    printf("result %d; header %s, library %s, CMake package %s\n", seen,
           EVEXEC_VERSION_STRING, evexec_version(), PACKAGE_FILE_VERSION);
    return seen != 42 || strcmp(evexec_version(), EVEXEC_VERSION_STRING) != 0 ||
           strcmp(PACKAGE_FILE_VERSION, EVEXEC_VERSION_STRING) != 0;
}
