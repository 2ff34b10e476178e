# tests/docs.mk -- checks of the manual and the public header (issue #4).
#
#   tests/check-man-lint.sh       every page in one `mandoc -Tlint -Wwarning`
#                                 run; skipped when configure found no mandoc
#   tests/check-man-coverage.sh   every function of include/evexec.h is named
#                                 by a page; every page has its sections
#   tests/man-examples/run.sh     runs the EXAMPLES programs of evexec(7),
#                                 evexec_run_in_executor(3),
#                                 evexec_pool_new_limited(3), the composing
#                                 pages and evexec_queue_work(3), and the
#                                 example of README.md, extracted from the
#                                 documents and built with -Wall -Wextra -Werror
#   tests/check-layering.sh       lib/ depends one way only (see the script)
#   tests/header_c99              evexec.h under -std=c99 -pedantic -Werror,
#                                 version macros = evexec_version()
#   tests/header_cxx              evexec.h from C++ (-Wall -Wextra -Werror)
#
# tests/install-consume.sh (install into a prefix, build a program outside the
# tree with pkg-config) is run by .ci/run, not by make check: it configures and
# builds a tree of its own.

if HAVE_MANDOC
evexec_docs_mandoc = $(MANDOC)
else
evexec_docs_mandoc =
endif
AM_TESTS_ENVIRONMENT += EVEXEC_MANDOC='$(evexec_docs_mandoc)'; export EVEXEC_MANDOC;

TESTS += tests/check-man-lint.sh tests/check-man-coverage.sh
dist_check_SCRIPTS += tests/check-man-lint.sh tests/check-man-coverage.sh \
	tests/man-examples/extract.sh tests/man-examples/run.sh
EXTRA_DIST += tests/install-consume.sh

# The public header, strictly: C99 with -pedantic, and C++.
check_PROGRAMS += tests/header_c99 tests/header_cxx
TESTS += tests/header_c99 tests/header_cxx
tests_header_c99_SOURCES = tests/header_c99.c
tests_header_c99_CFLAGS = -std=c99 -pedantic -Wall -Wextra -Werror -pthread $(SAN_FLAGS)
tests_header_c99_LDADD = $(evexec_prog_libs)
tests_header_c99_LDFLAGS = $(evexec_prog_link_flags)
tests_header_cxx_SOURCES = tests/header_cxx.cc
tests_header_cxx_CXXFLAGS = -Wall -Wextra -Werror -pthread $(SAN_FLAGS)
tests_header_cxx_LDADD = $(evexec_prog_libs)
tests_header_cxx_LDFLAGS = $(evexec_prog_link_flags)

# The EXAMPLES programs of the pages, extracted at build time so the page
# stays the source; a page that no longer compiles fails `make check`.
evexec_example_cflags = -Wall -Wextra -Werror -pthread $(SAN_FLAGS) $(LIBEVENT_CFLAGS)
evexec_extract = $(SHELL) $(srcdir)/tests/man-examples/extract.sh

check_PROGRAMS += tests/man-examples/evexec_7 tests/man-examples/evexec_run_in_executor_3 \
	tests/man-examples/evexec_pool_new_limited_3 tests/man-examples/readme
TESTS += tests/man-examples/run.sh

nodist_tests_man_examples_evexec_7_SOURCES = tests/man-examples/evexec_7.c
tests_man_examples_evexec_7_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_7_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_7_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_7.c: $(srcdir)/man/evexec.7 $(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec.7 >$@.tmp && mv -f $@.tmp $@

nodist_tests_man_examples_evexec_run_in_executor_3_SOURCES = \
	tests/man-examples/evexec_run_in_executor_3.c
tests_man_examples_evexec_run_in_executor_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_run_in_executor_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_run_in_executor_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_run_in_executor_3.c: $(srcdir)/man/evexec_run_in_executor.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_run_in_executor.3 >$@.tmp && mv -f $@.tmp $@

nodist_tests_man_examples_evexec_pool_new_limited_3_SOURCES = \
	tests/man-examples/evexec_pool_new_limited_3.c
tests_man_examples_evexec_pool_new_limited_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_pool_new_limited_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_pool_new_limited_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_pool_new_limited_3.c: $(srcdir)/man/evexec_pool_new_limited.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_pool_new_limited.3 >$@.tmp && mv -f $@.tmp $@

nodist_tests_man_examples_readme_SOURCES = tests/man-examples/readme.c
tests_man_examples_readme_CFLAGS = $(evexec_example_cflags)
tests_man_examples_readme_LDADD = $(evexec_prog_libs)
tests_man_examples_readme_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/readme.c: $(srcdir)/README.md $(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/README.md >$@.tmp && mv -f $@.tmp $@

CLEANFILES += tests/man-examples/evexec_7.c tests/man-examples/evexec_run_in_executor_3.c \
	tests/man-examples/evexec_pool_new_limited_3.c tests/man-examples/readme.c

# The layering of lib/: each object's undefined symbols against the allowed
# direction, and an executor-only program linked without libevent.
TESTS += tests/check-layering.sh
dist_check_SCRIPTS += tests/check-layering.sh
AM_TESTS_ENVIRONMENT += CC='$(CC)' NM='$(NM)' SAN_FLAGS='$(SAN_FLAGS)'; export CC NM SAN_FLAGS;

# The composing pages: evexec_sleep(3), evexec_gather(3), evexec_cfuture_wait_many(3).
check_PROGRAMS += tests/man-examples/evexec_sleep_3 tests/man-examples/evexec_gather_3 \
	tests/man-examples/evexec_cfuture_wait_many_3

nodist_tests_man_examples_evexec_sleep_3_SOURCES = tests/man-examples/evexec_sleep_3.c
tests_man_examples_evexec_sleep_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_sleep_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_sleep_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_sleep_3.c: $(srcdir)/man/evexec_sleep.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_sleep.3 >$@.tmp && mv -f $@.tmp $@

nodist_tests_man_examples_evexec_gather_3_SOURCES = tests/man-examples/evexec_gather_3.c
tests_man_examples_evexec_gather_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_gather_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_gather_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_gather_3.c: $(srcdir)/man/evexec_gather.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_gather.3 >$@.tmp && mv -f $@.tmp $@

nodist_tests_man_examples_evexec_cfuture_wait_many_3_SOURCES = \
	tests/man-examples/evexec_cfuture_wait_many_3.c
tests_man_examples_evexec_cfuture_wait_many_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_cfuture_wait_many_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_cfuture_wait_many_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_cfuture_wait_many_3.c: $(srcdir)/man/evexec_cfuture_wait_many.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_cfuture_wait_many.3 >$@.tmp && mv -f $@.tmp $@

CLEANFILES += tests/man-examples/evexec_sleep_3.c tests/man-examples/evexec_gather_3.c \
	tests/man-examples/evexec_cfuture_wait_many_3.c

# The request layer: evexec_queue_work(3).
check_PROGRAMS += tests/man-examples/evexec_queue_work_3

nodist_tests_man_examples_evexec_queue_work_3_SOURCES = tests/man-examples/evexec_queue_work_3.c
tests_man_examples_evexec_queue_work_3_CFLAGS = $(evexec_example_cflags)
tests_man_examples_evexec_queue_work_3_LDADD = $(evexec_prog_libs)
tests_man_examples_evexec_queue_work_3_LDFLAGS = $(evexec_prog_link_flags)
tests/man-examples/evexec_queue_work_3.c: $(srcdir)/man/evexec_queue_work.3 \
		$(srcdir)/tests/man-examples/extract.sh
	$(AM_V_GEN)$(MKDIR_P) tests/man-examples && \
	$(evexec_extract) $(srcdir)/man/evexec_queue_work.3 >$@.tmp && mv -f $@.tmp $@

CLEANFILES += tests/man-examples/evexec_queue_work_3.c
