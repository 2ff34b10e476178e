/*
 * leakcheck.h -- leaks fail a Criterion suite under AddressSanitizer.
 * Include it after <criterion/criterion.h> (tests/testutil.h does).
 */
#ifndef EVEXEC_LEAKCHECK_H
#define EVEXEC_LEAKCHECK_H

#include <stdio.h>
#include <stdlib.h>

/*
 * A test's leaks must fail its suite, and name the test. Criterion runs each
 * test in a child process whose exit-time LeakSanitizer report comes after
 * Criterion has counted the test as passed and names no test, and which
 * depends on how Criterion ends the child. Each Criterion suite therefore
 * declares
 *     TestSuite(name, .fini = fail_on_leaks);
 * and this hook, run in the test's process right after the test, checks for
 * leaks itself and aborts on one: Criterion names the test ("crashed during
 * its setup or teardown"), the suite exits nonzero and tests/run-test turns
 * the report into a "Bail out!". Memory still reachable from globals or live
 * threads is no leak. Without ASan (plain, TSan, valgrind builds) the hook
 * does nothing.
 *
 * Mind the suppressions: LeakSanitizer drops a leak if any frame of its
 * allocation stack matches one, and every allocation a test makes on its
 * own thread has libcriterion frames below it; a suppression naming
 * libcriterion.so hides all of those (leaks on pool workers still show).
 */
#if defined(__SANITIZE_ADDRESS__)
#define TESTUTIL_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESTUTIL_LSAN 1
#endif
#endif
#ifdef TESTUTIL_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static inline void fail_on_leaks(void)
{
#ifdef TESTUTIL_LSAN
    if (__lsan_do_recoverable_leak_check()) {
        fprintf(stderr, "LeakSanitizer: the test above leaked memory\n");
        abort();
    }
#endif
}

/*
 * In a Criterion suite (CRITERION_H_ is <criterion/criterion.h>'s include
 * guard, so include this header after it) the exit-time check is off by
 * default: fail_on_leaks has checked every test by then, and what is left
 * at exit is Criterion's own bookkeeping (seen: calloc called from
 * libcriterion.so, with per-test timeouts), which only a suppression of the
 * whole libcriterion.so module could match, and that would hide the tests'
 * leaks too. The plain programs keep their exit-time check; LSAN_OPTIONS
 * still overrides this default.
 */
#if defined(TESTUTIL_LSAN) && defined(CRITERION_H_)
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "leak_check_at_exit=0";
}
#endif

#endif /* EVEXEC_LEAKCHECK_H */
