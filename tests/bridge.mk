# tests/bridge.mk -- tests of the loop half: the loop bridge, the loop
# future and the chain that joins them to the pool (issue #3).
#
# The Criterion suites cannot run under ThreadSanitizer; the TSan build runs
# tests/plain_stress_loop, a plain TAP program, which every build also runs.

if HAVE_CRITERION
if !EVEXEC_TSAN
bridge_criterion_tests = tests/test_loop tests/test_future tests/test_chain \
	tests/test_combine tests/test_default_pool tests/test_work
check_PROGRAMS += $(bridge_criterion_tests)
TESTS += $(bridge_criterion_tests)
VALGRIND_SUITES += tests/test_loop

tests_test_loop_SOURCES = tests/test_loop.c tests/testutil.h
tests_test_loop_CFLAGS = $(test_cflags)
tests_test_loop_LDADD = $(test_libs)
tests_test_loop_LDFLAGS = $(evexec_prog_link_flags)

tests_test_future_SOURCES = tests/test_future.c tests/testutil.h
tests_test_future_CFLAGS = $(test_cflags)
tests_test_future_LDADD = $(test_libs)
tests_test_future_LDFLAGS = $(evexec_prog_link_flags)

tests_test_chain_SOURCES = tests/test_chain.c tests/testutil.h
tests_test_chain_CFLAGS = $(test_cflags)
tests_test_chain_LDADD = $(test_libs)
tests_test_chain_LDFLAGS = $(evexec_prog_link_flags)

tests_test_combine_SOURCES = tests/test_combine.c tests/testutil.h
tests_test_combine_CFLAGS = $(test_cflags)
tests_test_combine_LDADD = $(test_libs)
tests_test_combine_LDFLAGS = $(evexec_prog_link_flags)

tests_test_default_pool_SOURCES = tests/test_default_pool.c tests/testutil.h
tests_test_default_pool_CFLAGS = $(test_cflags)
tests_test_default_pool_LDADD = $(test_libs)
tests_test_default_pool_LDFLAGS = $(evexec_prog_link_flags)

tests_test_work_SOURCES = tests/test_work.c tests/testutil.h
tests_test_work_CFLAGS = $(test_cflags)
tests_test_work_LDADD = $(test_libs)
tests_test_work_LDFLAGS = $(evexec_prog_link_flags)
endif
endif

# The plain stress runs in every build, TSan's included.
check_PROGRAMS += tests/plain_stress_loop
TESTS += tests/plain_stress_loop
tests_plain_stress_loop_SOURCES = tests/plain_stress_loop.c tests/testutil.h
tests_plain_stress_loop_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_loop_LDADD = $(evexec_prog_libs)
tests_plain_stress_loop_LDFLAGS = $(evexec_prog_link_flags)

# The combinators against timeouts, cancels and evexec_loop_free: every build.
check_PROGRAMS += tests/plain_stress_combine
TESTS += tests/plain_stress_combine
tests_plain_stress_combine_SOURCES = tests/plain_stress_combine.c tests/testutil.h
tests_plain_stress_combine_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_combine_LDADD = $(evexec_prog_libs)
tests_plain_stress_combine_LDFLAGS = $(evexec_prog_link_flags)

# The default pool's shutdown (helper thread, poll timer) and evexec_loop_free
# against late outcomes, over hundreds of rounds: every build.
check_PROGRAMS += tests/plain_stress_default_pool
TESTS += tests/plain_stress_default_pool
tests_plain_stress_default_pool_SOURCES = tests/plain_stress_default_pool.c tests/testutil.h
tests_plain_stress_default_pool_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_default_pool_LDADD = $(evexec_prog_libs)
tests_plain_stress_default_pool_LDFLAGS = $(evexec_prog_link_flags)

# The request layer: cancel against the workers, evexec_loop_free against
# late outcomes, requests queued again from their after, limited views and
# pool shutdowns, swept over rounds: every build, TSan's included.
check_PROGRAMS += tests/plain_stress_work
TESTS += tests/plain_stress_work
tests_plain_stress_work_SOURCES = tests/plain_stress_work.c tests/testutil.h
tests_plain_stress_work_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
tests_plain_stress_work_LDADD = $(evexec_prog_libs)
tests_plain_stress_work_LDFLAGS = $(evexec_prog_link_flags)
