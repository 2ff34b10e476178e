/*
 * header_c99.c -- include/evexec.h is strict C99: this file is compiled with
 * -std=c99 -pedantic -Wall -Wextra -Werror (tests/docs.mk), uses every public
 * type, and checks the version macros against the library's evexec_version().
 * Prints TAP.
 */
#include <evexec.h>

#include <stdio.h>
#include <string.h>

#if !defined(EVEXEC_VERSION_MAJOR) || !defined(EVEXEC_VERSION_MINOR) || \
    !defined(EVEXEC_VERSION_PATCH) || !defined(EVEXEC_VERSION_STRING) || \
    !defined(EVEXEC_VERSION_HEX)
#error "evexec.h must define the EVEXEC_VERSION_* macros"
#endif

#if EVEXEC_VERSION_HEX != \
    ((EVEXEC_VERSION_MAJOR << 16) | (EVEXEC_VERSION_MINOR << 8) | EVEXEC_VERSION_PATCH)
#error "EVEXEC_VERSION_HEX disagrees with MAJOR/MINOR/PATCH"
#endif

static int tests_run;

static void check(int ok, const char *what)
{
    printf("%sok %d - %s\n", ok ? "" : "not ", ++tests_run, what);
}

static int no_work(void *arg, void **result)
{
    (void)arg;
    (void)result;
    return 0;
}

int main(void)
{
    /* Every public type is complete or declared, and usable from C99. */
    struct evexec_pool_config cfg = {0};
    struct evexec_pool_stats pool_stats;
    struct evexec_loop_stats loop_stats;
    evexec_work_fn work = no_work;
    evexec_free_fn free_fn = NULL;
    evexec_cfuture_cb cf_cb = NULL;
    evexec_future_cb f_cb = NULL;
    evexec_callback_fn cb = NULL;
    char expected[64];

    (void)work;
    (void)free_fn;
    (void)cf_cb;
    (void)f_cb;
    (void)cb;
    memset(&pool_stats, 0, sizeof(pool_stats));
    memset(&loop_stats, 0, sizeof(loop_stats));
    cfg.max_workers = 1;

    printf("1..5\n");
    check(1, "evexec.h compiles with -std=c99 -pedantic -Wall -Wextra -Werror");

    snprintf(expected, sizeof(expected), "%d.%d.%d", EVEXEC_VERSION_MAJOR,
             EVEXEC_VERSION_MINOR, EVEXEC_VERSION_PATCH);
    check(strcmp(expected, EVEXEC_VERSION_STRING) == 0,
          "EVEXEC_VERSION_STRING is MAJOR.MINOR.PATCH");
    check(evexec_version() != NULL && strcmp(evexec_version(), EVEXEC_VERSION_STRING) == 0,
          "evexec_version() equals EVEXEC_VERSION_STRING");
    check(EVEXEC_EBROKEN > EVEXEC_ERRNO_BASE && EVEXEC_EFORKED > EVEXEC_ERRNO_BASE &&
              EVEXEC_ETAKEN > EVEXEC_ERRNO_BASE && EVEXEC_ECLOSED > EVEXEC_ERRNO_BASE,
          "the library's own error codes are above EVEXEC_ERRNO_BASE");

    /* Link check: a pool made and freed from a strict C99 program. */
    struct evexec_pool *pool = evexec_pool_new(&cfg);
    int ok = pool != NULL && evexec_pool_get_stats(pool, &pool_stats) == 0 &&
             pool_stats.threads == 0;
    evexec_pool_free(pool);
    check(ok, "a C99 program makes, inspects and frees a pool");
    return 0;
}
