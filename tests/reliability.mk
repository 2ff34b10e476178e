# tests/reliability.mk -- the reliability suites: misuse table, debug-build
# thread-rule asserts, allocation and thread-creation fault sweeps, teardown
# and re-entrancy, fork, and the mixed stress program run under TSan.
#
# Criterion suites stay out of the TSan build; test_debug needs a build
# configured with --enable-debug and test_fault one configured with
# --enable-fault-injection. plain_stress_mixed speaks TAP and runs everywhere.
EXTRA_DIST += tests/MISUSE.md

reliability_criterion_ldflags = $(evexec_prog_link_flags)

if HAVE_CRITERION
if !EVEXEC_TSAN
TESTS += tests/test_misuse tests/test_teardown tests/test_fork
check_PROGRAMS += tests/test_misuse tests/test_teardown tests/test_fork
VALGRIND_SUITES += tests/test_teardown

tests_test_misuse_SOURCES = tests/test_misuse.c tests/testutil.h
tests_test_misuse_CFLAGS = $(test_cflags)
tests_test_misuse_LDADD = $(test_libs)
tests_test_misuse_LDFLAGS = $(reliability_criterion_ldflags)

tests_test_teardown_SOURCES = tests/test_teardown.c tests/testutil.h
tests_test_teardown_CFLAGS = $(test_cflags)
tests_test_teardown_LDADD = $(test_libs)
tests_test_teardown_LDFLAGS = $(reliability_criterion_ldflags)

tests_test_fork_SOURCES = tests/test_fork.c tests/testutil.h
tests_test_fork_CFLAGS = $(test_cflags)
tests_test_fork_LDADD = $(test_libs)
tests_test_fork_LDFLAGS = $(reliability_criterion_ldflags)

if EVEXEC_DEBUG
TESTS += tests/test_debug
check_PROGRAMS += tests/test_debug
tests_test_debug_SOURCES = tests/test_debug.c tests/testutil.h
tests_test_debug_CFLAGS = $(test_cflags)
tests_test_debug_LDADD = $(test_libs)
tests_test_debug_LDFLAGS = $(reliability_criterion_ldflags)
endif

if EVEXEC_FAULT_INJECTION
TESTS += tests/test_fault
check_PROGRAMS += tests/test_fault
tests_test_fault_SOURCES = tests/test_fault.c tests/testutil.h
tests_test_fault_CFLAGS = $(test_cflags)
tests_test_fault_LDADD = $(test_libs)
tests_test_fault_LDFLAGS = $(reliability_criterion_ldflags)
endif
endif
endif

# Plain TAP program: runs in every build, ThreadSanitizer's included.
TESTS += tests/plain_stress_mixed
check_PROGRAMS += tests/plain_stress_mixed
tests_plain_stress_mixed_SOURCES = tests/plain_stress_mixed.c tests/testutil.h
tests_plain_stress_mixed_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_mixed_LDADD = $(evexec_prog_libs)
tests_plain_stress_mixed_LDFLAGS = $(evexec_prog_link_flags)

# evexec_loop_free against late outcomes, swept over hundreds of rounds: runs
# in every build, ThreadSanitizer's and AddressSanitizer's included.
TESTS += tests/plain_stress_teardown
check_PROGRAMS += tests/plain_stress_teardown
tests_plain_stress_teardown_SOURCES = tests/plain_stress_teardown.c tests/testutil.h
tests_plain_stress_teardown_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_teardown_LDADD = $(evexec_prog_libs)
tests_plain_stress_teardown_LDFLAGS = $(evexec_prog_link_flags)

# fork() while other threads use the library: runs in every build, above all
# ThreadSanitizer's (the prepare handler used to hold more locks than gcc's
# TSan runtime can track).
TESTS += tests/plain_fork_tsan
check_PROGRAMS += tests/plain_fork_tsan
tests_plain_fork_tsan_SOURCES = tests/plain_fork_tsan.c tests/testutil.h
tests_plain_fork_tsan_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_fork_tsan_LDADD = $(evexec_prog_libs)
tests_plain_fork_tsan_LDFLAGS = $(evexec_prog_link_flags)
