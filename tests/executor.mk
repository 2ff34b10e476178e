# tests/executor.mk -- tests of the executor half (pool + concurrent future).
#
# test_pool, test_view and test_cfuture are Criterion suites (left out of the TSan
# build, and run under memcheck by `make check-valgrind`);
# plain_stress_executor and plain_stress_views print TAP themselves and run
# in every build, the TSan one above all.
if HAVE_CRITERION
if !EVEXEC_TSAN
check_PROGRAMS += tests/test_pool tests/test_cfuture tests/test_view
TESTS += tests/test_pool tests/test_cfuture tests/test_view
VALGRIND_SUITES += tests/test_pool tests/test_cfuture tests/test_view

tests_test_pool_SOURCES = tests/test_pool.c tests/testutil.h
tests_test_pool_CFLAGS = $(test_cflags)
tests_test_pool_LDADD = $(test_libs)
tests_test_pool_LDFLAGS = $(evexec_prog_link_flags)

tests_test_cfuture_SOURCES = tests/test_cfuture.c tests/testutil.h
tests_test_cfuture_CFLAGS = $(test_cflags)
tests_test_cfuture_LDADD = $(test_libs)
tests_test_cfuture_LDFLAGS = $(evexec_prog_link_flags)

tests_test_view_SOURCES = tests/test_view.c tests/testutil.h
tests_test_view_CFLAGS = $(test_cflags)
tests_test_view_LDADD = $(test_libs)
tests_test_view_LDFLAGS = $(evexec_prog_link_flags)

# test_pool_fault needs the thread-creation hook of a fault-injection build.
if EVEXEC_FAULT_INJECTION
check_PROGRAMS += tests/test_pool_fault
TESTS += tests/test_pool_fault
tests_test_pool_fault_SOURCES = tests/test_pool_fault.c tests/testutil.h
tests_test_pool_fault_CFLAGS = $(test_cflags)
tests_test_pool_fault_LDADD = $(test_libs)
tests_test_pool_fault_LDFLAGS = $(evexec_prog_link_flags)
endif
endif
endif

check_PROGRAMS += tests/plain_stress_executor
TESTS += tests/plain_stress_executor
tests_plain_stress_executor_SOURCES = tests/plain_stress_executor.c tests/testutil.h
tests_plain_stress_executor_CFLAGS = $(test_cflags)
tests_plain_stress_executor_LDADD = $(evexec_prog_libs)
tests_plain_stress_executor_LDFLAGS = $(evexec_prog_link_flags)

# Views under four producers, for ThreadSanitizer above all.
check_PROGRAMS += tests/plain_stress_views
TESTS += tests/plain_stress_views
tests_plain_stress_views_SOURCES = tests/plain_stress_views.c tests/testutil.h
tests_plain_stress_views_CFLAGS = $(test_cflags)
tests_plain_stress_views_LDADD = $(evexec_prog_libs)
tests_plain_stress_views_LDFLAGS = $(evexec_prog_link_flags)

# Suppressions of make check-valgrind (read by tests/run-test-valgrind).
EXTRA_DIST += tests/valgrind.supp
