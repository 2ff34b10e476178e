#!/bin/sh
# pkg/subst.sh -- make's generator of the installed package metadata
# (libevexec.pc, the CMake package files) from their templates in pkg/:
#
#   subst.sh TEMPLATE OUTPUT prefix=DIR exec_prefix=DIR libdir=DIR \
#            includedir=DIR version=X.Y.Z [sizeof_void_p=N] [la=FILE.la]
#
# It runs when make runs, not in config.status, so the directories are the
# ones `make install` uses, `make install prefix=/elsewhere` included.
# The placeholders of a template:
#   @prefix@ @exec_prefix@ @libdir@ @includedir@
#       pkg-config style: a directory inside another is written relative
#       to it (${prefix}/include, ${exec_prefix}/lib)
#   @PACKAGE_VERSION@ @SIZEOF_VOID_P@
#   @includedir_from_libdir@
#       the include directory as a CMake path from ${_evexec_libdir}, when
#       both lie under the prefix (so a moved tree keeps it); else absolute
#   @library_kind@ @library_file@ @soname@
#       from the libtool archive FILE.la: SHARED, the shared library's real
#       file name and its soname; or STATIC and the archive's name when only
#       a static library is built
# OUTPUT is replaced only when its text changes, so that make sees it as
# new only then. A placeholder left in OUTPUT is an error.
set -eu

template=$1
output=$2
shift 2
prefix= exec_prefix= libdir= includedir= version= sizeof_void_p= la=
for arg in "$@"; do
    case $arg in
    prefix=* | exec_prefix=* | libdir=* | includedir=* | version=* | sizeof_void_p=* | la=*)
        eval "${arg%%=*}=\${arg#*=}" ;;
    *)
        echo "subst.sh: unknown argument '$arg'" >&2
        exit 2 ;;
    esac
done
for name in prefix exec_prefix libdir includedir version; do
    eval "value=\$$name"
    if [ -z "$value" ]; then
        echo "subst.sh: $name= is required" >&2
        exit 2
    fi
done

# under DIR BASE NAME: DIR as ${NAME}/rest when it lies in BASE.
under() {
    case $1 in
    "$2") printf '%s\n' "\${$3}" ;;
    "$2"/*) printf '%s\n' "\${$3}/${1#"$2"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}
pc_exec_prefix=$(under "$exec_prefix" "$prefix" prefix)
pc_libdir=$(under "$libdir" "$exec_prefix" exec_prefix)
[ "$pc_libdir" = "$libdir" ] && pc_libdir=$(under "$libdir" "$prefix" prefix)
pc_includedir=$(under "$includedir" "$prefix" prefix)

# From libdir up to the prefix, then down to includedir.
includedir_from_libdir=$includedir
case $libdir/:$includedir/ in
"$prefix"/*/:"$prefix"/*/)
    up=
    rest=${libdir#"$prefix"/}
    while [ -n "$rest" ]; do
        case $rest in
        */*) rest=${rest#*/} ;;
        *) rest= ;;
        esac
        up=$up/..
    done
    includedir_from_libdir="\${_evexec_libdir}$up/${includedir#"$prefix"/}" ;;
esac

library_kind= library_file= soname=
if [ -n "$la" ]; then
    la_value() { sed -n "s/^$1='\\(.*\\)'\$/\\1/p" "$la"; }
    soname=$(la_value dlname)
    if [ -n "$soname" ]; then
        library_kind=SHARED
        library_file=$(la_value library_names | cut -d' ' -f1)
    else
        library_kind=STATIC
        library_file=$(la_value old_library)
    fi
    if [ -z "$library_file" ]; then
        echo "subst.sh: $la names no shared or static library" >&2
        exit 1
    fi
fi

# esc TEXT: TEXT as the replacement of a sed s|||g command.
esc() { printf '%s\n' "$1" | sed 's/[\\|&]/\\&/g'; }
sed -e "s|@prefix@|$(esc "$prefix")|g" \
    -e "s|@exec_prefix@|$(esc "$pc_exec_prefix")|g" \
    -e "s|@libdir@|$(esc "$pc_libdir")|g" \
    -e "s|@includedir@|$(esc "$pc_includedir")|g" \
    -e "s|@PACKAGE_VERSION@|$(esc "$version")|g" \
    -e "s|@includedir_from_libdir@|$(esc "$includedir_from_libdir")|g" \
    ${sizeof_void_p:+-e "s|@SIZEOF_VOID_P@|$(esc "$sizeof_void_p")|g"} \
    ${library_kind:+-e "s|@library_kind@|$library_kind|g"} \
    ${library_kind:+-e "s|@library_file@|$(esc "$library_file")|g"} \
    ${library_kind:+-e "s|@soname@|$(esc "$soname")|g"} \
    "$template" >"$output.tmp"
if grep -n '@[A-Za-z_]*@' "$output.tmp" >&2; then
    echo "subst.sh: $template: placeholders left in $output (above)" >&2
    rm -f "$output.tmp"
    exit 1
fi
if cmp -s "$output.tmp" "$output"; then
    rm -f "$output.tmp"
else
    mv -f "$output.tmp" "$output"
fi
