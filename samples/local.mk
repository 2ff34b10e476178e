# samples/local.mk -- the sample programs of samples/ (issue #5).
#
# They are built by plain `make` (noinst_PROGRAMS) so they never rot, and
# smoke-run by `make check` with small arguments: the shell scripts
# samples/smoke-*.sh and the C driver samples/smoke_http_offload print TAP
# themselves. Every smoke test talks to 127.0.0.1 only and is time-bounded.

sample_cflags = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
sample_ldadd = $(evexec_prog_libs)
sample_ldflags = $(evexec_prog_link_flags)

noinst_PROGRAMS += samples/cpu_bound
samples_cpu_bound_SOURCES = samples/cpu_bound.c
samples_cpu_bound_CFLAGS = $(sample_cflags)
samples_cpu_bound_LDADD = $(sample_ldadd)
samples_cpu_bound_LDFLAGS = $(sample_ldflags)

noinst_PROGRAMS += samples/blocking_calls
samples_blocking_calls_SOURCES = samples/blocking_calls.c
samples_blocking_calls_CFLAGS = $(sample_cflags)
samples_blocking_calls_LDADD = $(sample_ldadd)
samples_blocking_calls_LDFLAGS = $(sample_ldflags)

noinst_PROGRAMS += samples/http_offload
samples_http_offload_SOURCES = samples/http_offload.c
samples_http_offload_CFLAGS = $(sample_cflags)
samples_http_offload_LDADD = $(sample_ldadd)
samples_http_offload_LDFLAGS = $(sample_ldflags)

noinst_PROGRAMS += samples/chain_futures
samples_chain_futures_SOURCES = samples/chain_futures.c
samples_chain_futures_CFLAGS = $(sample_cflags)
samples_chain_futures_LDADD = $(sample_ldadd)
samples_chain_futures_LDFLAGS = $(sample_ldflags)

# The http_offload smoke test: a C driver using libevent's HTTP client.
check_PROGRAMS += samples/smoke_http_offload
samples_smoke_http_offload_SOURCES = samples/smoke_http_offload.c
samples_smoke_http_offload_CFLAGS = $(sample_cflags)
samples_smoke_http_offload_LDADD = $(LIBEVENT_LIBS)
samples_smoke_http_offload_LDFLAGS = $(sample_ldflags)
TESTS += samples/smoke_http_offload

# One shell smoke test per other sample. They find the programs through
# $top_builddir and the served/hashed files through $top_srcdir, which
# AM_TESTS_ENVIRONMENT exports, so they work in VPATH builds and distcheck.
sample_smoke_scripts = \
	samples/smoke-cpu_bound.sh \
	samples/smoke-blocking_calls.sh \
	samples/smoke-chain_futures.sh
dist_check_SCRIPTS += $(sample_smoke_scripts)
TESTS += $(sample_smoke_scripts)

# The samples' sources and their README are installed as documentation, in
# $(docdir)/examples as Debian packages do; the README says how to build
# them against the installed library.
examplesdir = $(docdir)/examples
dist_examples_DATA = \
	samples/README.md \
	samples/cpu_bound.c \
	samples/blocking_calls.c \
	samples/http_offload.c \
	samples/chain_futures.c
