# evexec_try_cflag.m4 -- configure's compiler-flag probe.
#
# EVEXEC_TRY_CFLAG(FLAG)
#   Append FLAG to WARN_CFLAGS when $CC compiles an empty program with it
#   under -Werror, so a flag the compiler only warns about is left out too.
AC_DEFUN([EVEXEC_TRY_CFLAG], [
  AC_MSG_CHECKING([whether $CC accepts $1])
  evexec_save_CFLAGS=$CFLAGS
  CFLAGS="$CFLAGS -Werror $1"
  AC_COMPILE_IFELSE([AC_LANG_PROGRAM([], [])],
                    [AC_MSG_RESULT([yes]); WARN_CFLAGS="$WARN_CFLAGS $1"],
                    [AC_MSG_RESULT([no])])
  CFLAGS=$evexec_save_CFLAGS
])
