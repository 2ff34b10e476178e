/*
 * header_cxx.cc -- include/evexec.h is usable from C++: it compiles with
 * -Wall -Wextra -Werror (tests/docs.mk), its declarations have C linkage
 * (the program links against the C library and runs a task), and the version
 * macros agree with evexec_version(). Prints TAP.
 */
#include <evexec.h>

#include <cstdio>
#include <cstring>

static int tests_run;

static void check(bool ok, const char *what)
{
    std::printf("%sok %d - %s\n", ok ? "" : "not ", ++tests_run, what);
}

extern "C" {
static int answer(void *arg, void **result)
{
    *result = arg;
    return 0;
}
}

int main()
{
    std::printf("1..3\n");
    check(std::strcmp(evexec_version(), EVEXEC_VERSION_STRING) == 0,
          "C++: evexec_version() equals EVEXEC_VERSION_STRING (C linkage)");

    struct evexec_pool_config cfg = {};
    cfg.max_workers = 1;
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    int value = 42;
    void *result = nullptr;
    int err = -1;
    if (pool) {
        struct evexec_cfuture *cf = evexec_pool_submit(pool, answer, &value, nullptr);
        if (cf) {
            err = evexec_cfuture_result(cf, 30000, &result);
            evexec_cfuture_release(cf);
        }
        evexec_pool_free(pool);
    }
    check(err == 0 && result == &value, "C++: a task submitted to a pool returns its result");
    check(std::strcmp(evexec_strerror(EVEXEC_ETAKEN), evexec_strerror(0)) != 0,
          "C++: evexec_strerror() names the library's own codes");
    return 0;
}
