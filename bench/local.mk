# bench/local.mk -- the benchmark harness of bench/ (bench/README.md).
#
# Two programs built from one harness and workload source (bench/harness.c,
# bench/w*.c) and one driver each: bench/bench_evexec (always) and bench/bench_uv (only when
# configure found libuv). They are EXTRA_PROGRAMS: plain `make` and
# `make check` never build them; these targets do:
#
#   make bench        full run: W1-W8, 5 rounds, evexec and libuv alternating
#   make bench-quick  tiny sizes, 1 round (what .ci/run uses; never judged)
#   make bench-extra  W1 pool=2 extras: wakeups (strace), allocations,
#                     instructions (callgrind), peak RSS, profile; libevexec
#                     through its futures and through its requests
#
# Results go to bench/results/ of the build directory. BENCH_FLAGS passes
# more options to bench/run (see bench/README.md), e.g.
# `make bench BENCH_FLAGS='--rounds=3 --rows=w1p2,w2'`.

bench_cflags = $(AM_CFLAGS)

EXTRA_PROGRAMS += bench/bench_evexec
bench_sources = bench/bench.h bench/harness.h bench/harness.c \
	bench/w1_throughput.c bench/w2_latency.c bench/w3_cpu_bound.c bench/w4_blocking.c \
	bench/w5_flood.c bench/w6_many_loops.c bench/w7_head_of_line.c bench/w8_memory.c
bench_bench_evexec_SOURCES = $(bench_sources) bench/driver_evexec.c
bench_bench_evexec_CFLAGS = $(bench_cflags) $(LIBEVENT_CFLAGS)
bench_bench_evexec_LDADD = $(evexec_prog_libs)
bench_bench_evexec_LDFLAGS = $(evexec_prog_link_flags)
bench_programs = bench/bench_evexec

if HAVE_LIBUV
EXTRA_PROGRAMS += bench/bench_uv
bench_bench_uv_SOURCES = $(bench_sources) bench/driver_uv.c
bench_bench_uv_CFLAGS = $(bench_cflags) $(LIBUV_CFLAGS)
bench_bench_uv_LDADD = $(LIBUV_LIBS)
bench_programs += bench/bench_uv
bench_libuv_note = :
else
bench_libuv_note = echo "bench: libuv not found by configure (install libuv1-dev and re-run configure): measuring libevexec only"
endif

# The allocation counter, preloaded by bench/run (glibc only; bench/run
# skips the allocation figures when it is missing).
bench/alloc_count.so: bench/alloc_count.c
	@$(MKDIR_P) bench
	$(AM_V_CC)$(CC) $(CFLAGS) -fPIC -shared -o $@ $< || \
	  { echo "bench: could not build $@; allocation counts skipped"; rm -f $@; }

bench_run = $(BASH) $(srcdir)/bench/run --bindir=bench --out=bench/results

bench: $(bench_programs) bench/alloc_count.so
	@$(bench_libuv_note)
	$(bench_run) $(BENCH_FLAGS)

bench-quick: $(bench_programs) bench/alloc_count.so
	@$(bench_libuv_note)
	$(bench_run) --quick $(BENCH_FLAGS)

bench-extra: $(bench_programs) bench/alloc_count.so
	@$(bench_libuv_note)
	$(bench_run) --extra-only $(BENCH_FLAGS)

bench-clean:
	rm -rf bench/results

BASH = bash
.PHONY: bench bench-quick bench-extra bench-clean
CLEANFILES += bench/bench_evexec bench/bench_uv bench/alloc_count.so
EXTRA_DIST += bench/run bench/summarize.awk bench/plot-svg.awk bench/table-md.awk bench/profile-diff.awk \
	bench/README.md bench/alloc_count.c
