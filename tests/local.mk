# tests/local.mk -- make check. Each test area keeps its programs in a
# fragment of its own; this file only gathers them.
#
# Criterion suites are named tests/test_*; they are left out of the TSan
# build (ThreadSanitizer cannot run the Criterion runner), which runs the
# plain TAP programs (tests/plain_*) instead.
EXTRA_DIST += tests/run-test tests/lsan.supp tests/leakcheck.h

VALGRIND_SUITES =
test_cflags = $(AM_CFLAGS) $(LIBEVENT_CFLAGS) $(CRITERION_CFLAGS)
test_libs = $(evexec_prog_libs) $(CRITERION_LIBS)

include tests/executor.mk
include tests/bridge.mk
include tests/reliability.mk
include tests/docs.mk

# make check-valgrind: the suites listed in VALGRIND_SUITES (fragments add
# to it) under valgrind memcheck, as a TAP run of their own. Criterion runs
# each test in a child process, hence --trace-children.
check-valgrind: $(VALGRIND_SUITES)
	$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(VALGRIND_SUITES)' \
	  LOG_COMPILER='$(SHELL) $(top_srcdir)/tests/run-test-valgrind'
.PHONY: check-valgrind
EXTRA_DIST += tests/run-test-valgrind
