#!/usr/bin/env bash
# tests/cmake-consume.sh PREFIX -- use the libevexec installed in PREFIX from
# CMake, the way a CMake project does: find_package(libevexec CONFIG) with
# CMAKE_PREFIX_PATH=PREFIX and nothing else.
#
#   - builds and runs tests/cmake-consume/ (a program linked to
#     libevexec::libevexec only, calling libevent through it), and checks it
#     loads PREFIX's library with no LD_LIBRARY_PATH;
#   - checks the version rule of libevexec-config-version.cmake (same major
#     version, not older than asked; ranges);
#   - builds the installed examples with the CMakeLists.txt shown in their
#     README ($docdir/examples/README.md) and runs two of them;
#   - builds the example program of README.md with the README's CMake lines.
#
# tests/install-consume.sh runs it on a tree installed with DESTDIR and then
# moved, which is what shows the package files are relocatable. Run alone it
# checks any installed libevexec (e.g. PREFIX=/usr/local). Needs cmake, a C
# compiler, pkg-config and libevent's development files; without cmake it
# skips (exit 77) unless EVEXEC_NEED_CMAKE=1, when that is a failure. Prints
# PASS/FAIL lines, "# PASS: N" / "# FAIL: N" at the end, exits nonzero if a
# check failed. KEEP=1 keeps the temp dir.
set -u

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 PREFIX (the prefix libevexec is installed in)" >&2
    exit 2
fi
prefix=$(cd "$1" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
passes=0
failures=0
pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
finish() {
    echo "# PASS: $passes"
    echo "# FAIL: $failures"
    [ "$failures" -eq 0 ]
    exit
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

if ! command -v cmake >/dev/null 2>&1; then
    if [ "${EVEXEC_NEED_CMAKE:-0}" = 1 ]; then
        fail "cmake is not installed"
        finish
    fi
    echo "SKIP: cmake is not installed"
    exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/evexec-cmake.XXXXXX") || exit 1
if [ "${KEEP:-0}" = 1 ]; then
    echo "note: keeping $work"
else
    trap 'rm -rf "$work"' EXIT
fi

config=$(find "$prefix" -path '*/cmake/libevexec/libevexec-config.cmake' | head -n 1)
if [ -z "$config" ]; then
    fail "no lib*/cmake/libevexec/libevexec-config.cmake under $prefix"
    finish
fi
libdir=$(cd "$(dirname "$config")/../.." && pwd)
version=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")$/\1/p' "${config%.cmake}-version.cmake")
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
pass "found $config, version $version"

# The project is copied: a CMake build must not write into the source tree.
project=$work/project
cp -R "$src/tests/cmake-consume" "$project"
# configure NAME [REQUEST]: configure the consumer in $work/NAME.
configure() {
    cmake -S "$project" -B "$work/$1" -DCMAKE_PREFIX_PATH="$prefix" \
          -DEVEXEC_REQUEST="${2:-}" -DCMAKE_BUILD_TYPE=RelWithDebInfo
}

# 1. Build the consumer with find_package(libevexec <this major.minor>).
if run "$work/configure.log" configure build "$major.$minor" &&
   run "$work/build.log" cmake --build "$work/build"; then
    pass "find_package(libevexec $major.$minor CONFIG REQUIRED) and a build linked to libevexec::libevexec only"
    found_dir=$(sed -n 's/^-- found libevexec [^ ]* in //p' "$work/configure.log")
    if [ "$found_dir" = "$(dirname "$config")" ]; then
        pass "CMake took the package from $found_dir"
    else
        fail "CMake took the package from '$found_dir', not $(dirname "$config")"
    fi
    out=$(env -u LD_LIBRARY_PATH timeout 60 "$work/build/consume" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "ran it with no LD_LIBRARY_PATH: $out"
    else
        fail "running the CMake consumer: exit $rc, '$out'"
    fi
    loaded=$(env -u LD_LIBRARY_PATH ldd "$work/build/consume" | sed -n 's/^[[:space:]]*libevexec\.so[^ ]* => \([^ ]*\).*/\1/p')
    if [ "$(dirname "$loaded")" = "$libdir" ]; then
        pass "it loads $loaded (the build's run path names the prefix)"
    else
        fail "it loads '$loaded', not the library in $libdir"
    fi
else
    fail "configuring or building the CMake consumer against $prefix"
fi

# 2. The version rule: same major version, not older than the request.
# accept REQUEST / refuse REQUEST: configure (no build) with that request.
accept() {
    if run "$work/request.log" configure "request" "$1"; then
        pass "find_package(libevexec${1:+ $1}) accepts $version"
    else
        fail "find_package(libevexec${1:+ $1}) refused $version"
    fi
    rm -rf "$work/request"
}
refuse() {
    if configure "request" "$1" >"$work/request.log" 2>&1; then
        fail "find_package(libevexec $1) accepted $version"
    elif grep -q 'version: *'"$version" "$work/request.log"; then
        pass "find_package(libevexec $1) refuses $version"
    else
        fail "find_package(libevexec $1) failed, but not for the version:"
        tail -n 20 "$work/request.log" | sed 's/^/    | /'
    fi
    rm -rf "$work/request"
}
accept ""
accept "$major.0"
accept "$version"
accept "$major.0...<$((major + 1))"
refuse "$((major + 1))"
refuse "$major.$((minor + 1))"
refuse "$((major + 1)).0...<$((major + 2))"

# 3. The installed examples, built with the CMakeLists.txt of their README.
examples=$(find "$prefix" -path '*/doc/libevexec/examples/README.md' | head -n 1)
if [ -z "$examples" ]; then
    fail "no share/doc/libevexec/examples/README.md under $prefix"
    finish
fi
samples=$work/samples
mkdir -p "$samples"
cp "$(dirname "$examples")"/*.c "$samples/"
sed -n '/^```cmake$/,/^```$/{/^```/d;p}' "$examples" >"$samples/CMakeLists.txt"
if [ ! -s "$samples/CMakeLists.txt" ]; then
    fail "$examples shows no CMakeLists.txt (a cmake block)"
elif run "$work/samples-configure.log" cmake -S "$samples" -B "$samples/build" \
         -DCMAKE_PREFIX_PATH="$prefix" &&
     run "$work/samples-build.log" cmake --build "$samples/build"; then
    pass "built the installed examples with the CMakeLists.txt of their README"
    if run "$work/chain_futures.log" env -u LD_LIBRARY_PATH timeout 60 \
           "$samples/build/chain_futures"; then
        pass "ran the example chain_futures: every scene as described"
    else
        fail "running the example chain_futures"
    fi
    if run "$work/cpu_bound.log" env -u LD_LIBRARY_PATH timeout 120 \
           "$samples/build/cpu_bound" --workers 2 --chunks 8 --size 200000 --no-serial; then
        pass "ran the example cpu_bound: $(grep -m1 'primes below' "$work/cpu_bound.log")"
    else
        fail "running the example cpu_bound"
    fi
else
    fail "building the installed examples with CMake"
fi

# 4. The README's CMake lines, building the README's example program.
readme=$work/readme
mkdir -p "$readme"
sed -n '/^```cmake$/,/^```$/{/^```/d;p}' "$src/README.md" >"$readme/CMakeLists.txt"
# The first C block is the program; later ones are fragments.
awk '/^```c$/ && !done { inside = 1; next } inside && /^```$/ { inside = 0; done = 1 } inside' \
    "$src/README.md" >"$readme/app.c"
if [ ! -s "$readme/CMakeLists.txt" ] || [ ! -s "$readme/app.c" ]; then
    fail "README.md shows no cmake block or no C example"
elif run "$work/readme-configure.log" cmake -S "$readme" -B "$readme/build" \
         -DCMAKE_PREFIX_PATH="$prefix" &&
     run "$work/readme-build.log" cmake --build "$readme/build"; then
    out=$(env -u LD_LIBRARY_PATH timeout 60 "$readme/build/app" 2>&1)
    if [ "$out" = 144 ]; then
        pass "the README's CMake lines build its example, which prints 144"
    else
        fail "the README's example built with its CMake lines printed '$out'"
    fi
else
    fail "building the README's example with the README's CMake lines"
fi

finish
