#!/usr/bin/env bash
# tests/install-consume.sh -- use libevexec the way a user does once it is
# installed: configure a fresh build in a temporary directory with
# --prefix=<temporary prefix>, `make install`, then, OUTSIDE the source tree,
# build programs with nothing but `pkg-config --cflags --libs libevexec`
# (plus libevent's flags for the programs' own libevent calls) and run them,
# the two ways the README gives for a prefix the loader does not search (a
# run path from `pkg-config --variable=libdir`, LD_LIBRARY_PATH).
# Also checks `pkg-config --validate`, the installed manual and its links,
# the installed examples, that the installed library exports only the public
# evexec_* API, that `make install prefix=OTHER` (GNU's override) installs a
# libevexec.pc and CMake files naming OTHER, and that `make uninstall` leaves
# nothing. Last, it installs with DESTDIR, moves the tree elsewhere and runs
# tests/cmake-consume.sh on it: a CMake project finds and uses it there.
#
# Run from anywhere (.ci/run runs `bash tests/install-consume.sh` from the
# source root). Needs a tree where configure exists (autoreconf -fi), a C
# compiler, pkg-config and libevent's development files (and cmake for the
# last part, see tests/cmake-consume.sh). Prints PASS/FAIL lines, then
# "# PASS: N" / "# FAIL: N" as automake's summaries do (.ci/run adds them
# up), and exits nonzero if any check failed. KEEP=1 keeps the temp dir.
set -u

src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/evexec-install.XXXXXX") || exit 1
if [ "${KEEP:-0}" = 1 ]; then
    echo "note: keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi
prefix=$work/prefix
build=$work/build
consumer=$work/consumer
mkdir -p "$build" "$consumer"
passes=0
failures=0
cmake_status=0

pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
summary() {
    echo "# PASS: $passes"
    echo "# FAIL: $failures"
}
# run LOG COMMAND...: run quietly, show the end of the log on failure.
run() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    tail -n 30 "$log" | sed 's/^/    | /'
    return 1
}

if [ ! -x "$src/configure" ]; then
    fail "no $src/configure: run autoreconf -fi in the source tree first"
    summary
    exit 1
fi

# A source tree that was configured in place cannot host a VPATH build
# (automake refuses). Then build from a copy of its source files instead.
srcdir=$src
if [ -f "$src/config.status" ]; then
    echo "note: $src is configured in place; building from a clean copy"
    srcdir=$work/src
    mkdir -p "$srcdir"
    if command -v git >/dev/null 2>&1 && git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
        # Tracked files and new source files; not what an in-place build of
        # the docs tests left behind (programs and extracted examples; the
        # sources of tests/man-examples/ are all *.sh).
        (cd "$src" && git ls-files -z --cached --others --exclude-standard |
             grep -zvE '^tests/header_(c99|cxx)$|^tests/man-examples/[^/]*[^h]$' |
             xargs -0 tar cf - --no-recursion) | (cd "$srcdir" && tar xf -)
    else
        (cd "$src" && tar cf - --exclude=./_build\* --exclude=./_ci --exclude=config.status \
             --exclude=Makefile --exclude=config.h --exclude=libtool --exclude=.libs \
             --exclude=\*.o --exclude=\*.lo --exclude=\*.la .) | (cd "$srcdir" && tar xf -)
    fi
    if run "$work/autoreconf.log" sh -c "cd '$srcdir' && autoreconf -fi"; then
        pass "autoreconf -fi in a clean copy of the source"
    else
        fail "autoreconf -fi in a clean copy of the source"
        summary
        exit 1
    fi
fi

# 1. Configure out of the source tree, build, install.
if run "$work/configure.log" sh -c "cd '$build' && '$srcdir/configure' -q --prefix='$prefix'"; then
    pass "configure --prefix=$prefix (VPATH build in $build)"
else
    fail "configure --prefix=$prefix"
    summary
    exit 1
fi
if run "$work/make.log" make -C "$build" -j2; then
    pass "make"
else
    fail "make"
    summary
    exit 1
fi
if run "$work/install.log" make -C "$build" install; then
    pass "make install"
else
    fail "make install"
    summary
    exit 1
fi

libdir=$prefix/lib
export PKG_CONFIG_PATH=$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
# The programs find the library through a run path or LD_LIBRARY_PATH, as
# the README says; never through an inherited LD_LIBRARY_PATH.
unset LD_LIBRARY_PATH

# 2. pkg-config knows the package and its file is valid.
if pkg-config --validate libevexec; then
    pass "pkg-config --validate libevexec"
else
    fail "pkg-config --validate libevexec"
fi
version=$(pkg-config --modversion libevexec 2>/dev/null)
header_version=$(sed -n 's/^#define EVEXEC_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/evexec.h" 2>/dev/null)
if [ -n "$version" ] && [ "$version" = "$header_version" ]; then
    pass "pkg-config --modversion libevexec = $version = the installed header's version"
else
    fail "pkg-config --modversion libevexec is '$version', the header says '$header_version'"
fi
evexec_flags=$(pkg-config --cflags --libs libevexec) || fail "pkg-config --cflags --libs libevexec"
pc_libdir=$(pkg-config --variable=libdir libevexec)
if [ "$pc_libdir" = "$libdir" ]; then
    pass "pkg-config --variable=libdir libevexec = $libdir"
else
    fail "pkg-config --variable=libdir libevexec is '$pc_libdir', not $libdir"
fi
event_flags=$(pkg-config --cflags --libs libevent) || fail "pkg-config --cflags --libs libevent"

# 3. A program of our own, built outside the tree with pkg-config only, with
# the run path the README shows.
cat >"$consumer/consume.c" <<'PROGRAM'
/* Runs one task on a pool and prints its result from the loop thread. */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <evexec.h>

static int double_it(void *arg, void **result)
{
    *(int *)arg *= 2;
    *result = arg;
    return 0;
}

static void on_done(struct evexec_future *f, void *arg)
{
    void *result;

    (void)arg;
    if (evexec_future_result(f, &result) == 0)
        printf("result %d, library %s\n", *(int *)result, evexec_version());
}

int main(void)
{
    struct evexec_pool_config cfg = {0};
    struct event_base *base = event_base_new();
    struct evexec_loop *loop;
    struct evexec_pool *pool;
    struct evexec_future *f;
    int value = 21;

    cfg.max_workers = 1;
    if (!base || !(loop = evexec_loop_new(base)) || !(pool = evexec_pool_new(&cfg)))
        return 1;
    if (!(f = evexec_run_in_executor(loop, pool, double_it, &value, NULL)) ||
        evexec_future_add_done_callback(f, on_done, NULL) != 0)
        return 1;
    event_base_dispatch(base);
    evexec_future_release(f);
    evexec_loop_free(loop);
    evexec_pool_free(pool);
    event_base_free(base);
    return strcmp(evexec_version(), EVEXEC_VERSION_STRING) != 0;
}
PROGRAM
cc=${CC:-cc}
# shellcheck disable=SC2086 # the flags are words
if run "$consumer/consume-build.log" \
       $cc -Wall -Wextra -Werror -o "$consumer/consume" "$consumer/consume.c" \
       $evexec_flags $event_flags -Wl,-rpath,"$pc_libdir"; then
    pass "built $consumer/consume.c with pkg-config --cflags --libs libevexec and -Wl,-rpath,\$(pkg-config --variable=libdir libevexec)"
    out=$(cd "$consumer" && timeout 60 ./consume 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ "$out" = "result 42, library $version" ]; then
        pass "ran it against the installed library, no LD_LIBRARY_PATH: '$out'"
    else
        fail "running consume: exit $rc, output '$out'"
    fi
    if command -v ldd >/dev/null 2>&1 &&
       ldd "$consumer/consume" | grep -q "$libdir/libevexec.so"; then
        pass "it loads $libdir/libevexec.so"
    else
        fail "consume does not load the installed libevexec.so"
    fi
else
    fail "building a program outside the tree with pkg-config"
fi

# 4. The flagship sample, when the tree has it, built without a run path: it
# runs with LD_LIBRARY_PATH, the README's other way.
if [ -f "$srcdir/samples/cpu_bound.c" ]; then
    cp "$srcdir/samples/cpu_bound.c" "$consumer/"
    # shellcheck disable=SC2086
    if run "$consumer/cpu_bound-build.log" \
           $cc -O2 -o "$consumer/cpu_bound" "$consumer/cpu_bound.c" $evexec_flags $event_flags; then
        pass "built samples/cpu_bound.c outside the tree with pkg-config"
        if run "$consumer/cpu_bound.log" env LD_LIBRARY_PATH="$pc_libdir" timeout 120 "$consumer/cpu_bound" \
               --workers 2 --chunks 8 --size 200000 --no-serial; then
            pass "ran cpu_bound with LD_LIBRARY_PATH: $(grep -m1 'primes below' "$consumer/cpu_bound.log")"
        else
            fail "running cpu_bound"
        fi
    else
        fail "building samples/cpu_bound.c outside the tree"
    fi
fi

# 5. The manual: every page, and a link for every extra name of a page.
man3=$prefix/share/man/man3
man7=$prefix/share/man/man7
missing=
for page in "$srcdir"/man/*.3 "$srcdir"/man/*.7; do
    [ -f "$page" ] || continue
    section=${page##*.}
    [ -f "$prefix/share/man/man$section/${page##*/}" ] || missing="$missing ${page##*/}"
done
if [ -z "$missing" ] && [ -f "$man7/evexec.7" ]; then
    pass "every page of man/ is installed"
else
    fail "pages not installed:$missing"
fi
links=0
bad_links=
for page in "$srcdir"/man/*.3; do
    base=${page##*/}
    for name in $(sed -n '/^\.Sh NAME/,/^\.Nd/s/^\.Nm \([A-Za-z0-9_]*\).*/\1/p' "$page"); do
        [ "$name.3" = "$base" ] && continue
        links=$((links + 1))
        if [ ! -L "$man3/$name.3" ] || [ "$(readlink "$man3/$name.3")" != "$base" ]; then
            bad_links="$bad_links $name.3"
        fi
    done
done
if [ -z "$bad_links" ] && [ "$links" -gt 0 ]; then
    pass "$links extra names installed as links to their family's page"
else
    fail "missing or wrong man links:$bad_links"
fi
if command -v man >/dev/null 2>&1; then
    if MANPATH=$prefix/share/man man -w evexec_future_set_result >/dev/null 2>&1; then
        pass "man finds evexec_future_set_result in the installed manual"
    else
        fail "man -w evexec_future_set_result (MANPATH=$prefix/share/man)"
    fi
fi

# 6. Only the public API is exported (no evexec__ internals, nothing else).
so=$libdir/libevexec.so
if [ -e "$so" ]; then
    exported=$(nm -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' | sort -u)
    stray=$(echo "$exported" | grep -v '^evexec_[a-z0-9]' | tr '\n' ' ')
    internal=$(echo "$exported" | grep '^evexec__' | tr '\n' ' ')
    count=$(echo "$exported" | grep -c '^evexec_[a-z0-9]')
    if [ -z "$stray" ] && [ -z "$internal" ] && [ "$count" -gt 0 ]; then
        pass "nm -D: $so exports $count symbols, all evexec_* public API"
    else
        fail "nm -D: unexpected exports: ${stray}${internal}"
    fi
    declared=$(sed -n 's/^EVEXEC_EXPORT [^(]*[ *]\(evexec_[A-Za-z0-9_]*\)(.*/\1/p' \
               "$prefix/include/evexec.h" | sort -u)
    absent=$(comm -23 <(echo "$declared") <(echo "$exported") | tr '\n' ' ')
    if [ -z "$absent" ]; then
        pass "every function declared in the installed evexec.h is exported"
    else
        fail "declared but not exported: $absent"
    fi
else
    fail "$so is not installed"
fi

# 7. The samples' sources and their README, as documentation.
examples=$prefix/share/doc/libevexec/examples
missing=
for f in "$srcdir"/samples/README.md "$srcdir"/samples/cpu_bound.c "$srcdir"/samples/blocking_calls.c \
         "$srcdir"/samples/http_offload.c "$srcdir"/samples/chain_futures.c; do
    cmp -s "$f" "$examples/${f##*/}" || missing="$missing ${f##*/}"
done
if [ -z "$missing" ] && [ -f "$prefix/share/doc/libevexec/NEWS" ]; then
    pass "the samples and their README are installed in $examples, NEWS next to them"
else
    fail "not installed in $examples (or different):$missing"
fi
# shellcheck disable=SC2086
if run "$consumer/example-build.log" $cc -O2 -o "$consumer/chain_futures" \
       "$examples/chain_futures.c" $evexec_flags $event_flags -Wl,-rpath,"$pc_libdir" &&
   run "$consumer/example.log" timeout 60 "$consumer/chain_futures"; then
    pass "built and ran the installed example chain_futures.c as its README says"
else
    fail "building or running the installed example chain_futures.c"
fi

# 8. make uninstall leaves nothing behind.
if run "$work/uninstall.log" make -C "$build" uninstall; then
    left=$(find "$prefix" \( -type f -o -type l \) 2>/dev/null | sed "s|$prefix/||" | tr '\n' ' ')
    if [ -z "$left" ]; then
        pass "make uninstall removes every installed file and link"
    else
        fail "make uninstall left: $left"
    fi
else
    fail "make uninstall"
fi

# 9. `make install prefix=OTHER`, GNU's override at install time: the
# metadata files are made by make, so they name OTHER.
other=$work/other
if run "$work/install-other.log" make -C "$build" install prefix="$other"; then
    pc=$other/lib/pkgconfig/libevexec.pc
    if [ "$(PKG_CONFIG_PATH=$other/lib/pkgconfig pkg-config --variable=libdir libevexec)" = "$other/lib" ] &&
       [ "$(PKG_CONFIG_PATH=$other/lib/pkgconfig pkg-config --variable=includedir libevexec)" = "$other/include" ] &&
       ! grep -q "$prefix" "$pc"; then
        pass "make install prefix=$other installs a libevexec.pc naming $other"
    else
        fail "make install prefix=$other: $pc says"
        sed 's/^/    | /' "$pc"
    fi
    if [ -f "$other/lib/cmake/libevexec/libevexec-config.cmake" ] &&
       ! grep -rq "$prefix" "$other/lib/cmake/libevexec"; then
        pass "and the CMake package files, naming no other prefix"
    else
        fail "make install prefix=$other: the CMake files are missing or name $prefix"
    fi
    if run "$work/uninstall-other.log" make -C "$build" uninstall prefix="$other" &&
       [ -z "$(find "$other" \( -type f -o -type l \) 2>/dev/null)" ]; then
        pass "make uninstall prefix=$other removes them all"
    else
        fail "make uninstall prefix=$other left: $(find "$other" \( -type f -o -type l \) | tr '\n' ' ')"
    fi
else
    fail "make install prefix=$other"
fi

# 10. Install with DESTDIR, move the tree, use it from CMake where it is now.
# (The prefix of step 1 is empty again, so nothing can be found there.)
stage=$work/stage
moved=$work/moved
if run "$work/install-destdir.log" make -C "$build" install DESTDIR="$stage" &&
   mv "$stage$prefix" "$moved"; then
    pass "make install DESTDIR=$stage, then moved to $moved"
    bash "$src/tests/cmake-consume.sh" "$moved"
    cmake_status=$?
    [ $cmake_status = 77 ] && cmake_status=0
else
    fail "make install DESTDIR=$stage and moving it"
fi

summary
if [ "$failures" -eq 0 ] && [ "$cmake_status" -eq 0 ]; then
    echo "install-consume: all checks passed"
    exit 0
fi
echo "install-consume: some checks failed"
exit 1
