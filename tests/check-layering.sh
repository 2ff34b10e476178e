#!/bin/sh
# check-layering.sh -- the components of lib/ depend on each other one way
# only. Each object's undefined symbols must be defined by a component it may
# use (below), by libevent where allowed, or by neither (libc and pthreads);
# and a program that uses only the pool and the concurrent future must link
# against the static library without libevent. Speaks TAP.
#
# Who may use whom (the layering of lib/common.h):
#   common   -
#   sync     common
#   cfuture  common sync                       the executor half:
#   pool     common sync cfuture               no loop, no libevent
#   view     common sync cfuture pool          (pool.c reaches views only
#                                              through pointers view.c sets)
#   loop     common sync libevent              a plain scheduler
#   future   common sync loop
#   combine  common sync loop future libevent  loop-side combinators
#   work     common sync cfuture pool loop      the request layer
#   chain    common sync cfuture pool loop future work
#   bridge   common sync cfuture pool loop future work chain libevent
top_srcdir=${top_srcdir:-.}
top_builddir=${top_builddir:-.}
objdir=$top_builddir/lib/.libs
NM=${NM:-nm}

allowed() {
  case $1 in
    common) echo "" ;;
    sync) echo "common" ;;
    cfuture) echo "common sync" ;;
    pool) echo "common sync cfuture" ;;
    view) echo "common sync cfuture pool" ;;
    loop) echo "common sync libevent" ;;
    future) echo "common sync loop" ;;
    combine) echo "common sync loop future libevent" ;;
    work) echo "common sync cfuture pool loop" ;;
    chain) echo "common sync cfuture pool loop future work" ;;
    bridge) echo "common sync cfuture pool loop future work chain libevent" ;;
    *) echo "?" ;;
  esac
}

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

objs=$(ls "$objdir"/libevexec_la-*.o 2>/dev/null)
if [ -z "$objs" ]; then
  echo "1..0 # SKIP no objects in $objdir"
  exit 0
fi
count=$(echo "$objs" | wc -l)
echo "1..$((count + 1))"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/evexec-layering.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

# symbol -> component, for every global symbol an object defines.
for o in $objs; do
  comp=$(basename "$o" .o)
  comp=${comp#libevexec_la-}
  $NM -P --defined-only -g "$o" | awk -v c="$comp" '{print $1, c}'
done > "$tmp/defs"

for o in $objs; do
  comp=$(basename "$o" .o)
  comp=${comp#libevexec_la-}
  may=$(allowed "$comp")
  bad=""
  for sym in $($NM -P -u -g "$o" | awk '{print $1}'); do
    owner=$(awk -v s="$sym" '$1 == s {print $2; exit}' "$tmp/defs")
    if [ -z "$owner" ]; then
      case $sym in
        event_* | evtimer_* | evutil_*) owner=libevent ;;
        *) continue ;; # libc, pthreads, the compiler's runtime
      esac
    fi
    [ "$owner" = "$comp" ] && continue
    case " $may " in
      *" $owner "*) ;;
      *) bad="$bad $sym($owner)" ;;
    esac
  done
  if [ "$may" = "?" ]; then
    not_ok "$comp: not in the layering table of check-layering.sh"
  elif [ -z "$bad" ]; then
    ok "$comp uses only: ${may:-nothing of the library}"
  else
    not_ok "$comp uses what it may not:$bad"
  fi
done

# An executor-only program links against libevexec.a without libevent.
cat > "$tmp/executor_only.c" <<'PROG'
#include <evexec.h>

static int twice(void *arg, void **result)
{
    *result = (void *)((char *)0 + 2 * (long)((char *)arg - (char *)0));
    return 0;
}

int main(void)
{
    struct evexec_pool *pool = evexec_pool_new(NULL);
    struct evexec_cfuture *cf = evexec_pool_submit(pool, twice, (char *)0 + 21, NULL);
    void *r = 0;
    int rc = evexec_cfuture_result(cf, -1, &r);
    evexec_cfuture_release(cf);
    evexec_pool_free(pool);
    return rc == 0 && (long)((char *)r - (char *)0) == 42 ? 0 : 1;
}
PROG
CC=${CC:-cc}
if $CC -I"$top_srcdir/include" -o "$tmp/executor_only" "$tmp/executor_only.c" \
     "$objdir/libevexec.a" -pthread $SAN_FLAGS >"$tmp/link.log" 2>&1 &&
   "$tmp/executor_only"; then
  ok "a program using only the pool and the cfuture links without libevent and runs"
else
  not_ok "a program using only the pool and the cfuture links without libevent and runs"
  sed 's/^/# /' "$tmp/link.log"
fi
[ "$failed" = 0 ]
