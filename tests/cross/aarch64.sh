#!/bin/sh
# SPDX-License-Identifier: MIT
# Cross-compile the AArch64 context switch with tests/cross/ctx_aarch64_test.c
# and run it under qemu-aarch64: both backends (asm, ucontext) at -O0 and -O2.
#
#   tests/cross/aarch64.sh        exit 0: passed, 1: failed, 77: skipped
#
# Overrides: CROSS_CC (default aarch64-linux-gnu-gcc), QEMU_AARCH64
# (default qemu-aarch64).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CROSS_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}

for tool in "$cc" "$qemu"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "aarch64 ctx: skipped ($tool not found; install gcc-aarch64-linux-gnu and qemu-user)"
    exit 77
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# ctx.c includes <coro.h>, which needs the configured coro/version.h.
mkdir -p "$tmp/coro"
cat >"$tmp/coro/version.h" <<'VERSION'
#define CORO_VERSION_MAJOR 0
#define CORO_VERSION_MINOR 1
#define CORO_VERSION_PATCH 0
#define CORO_VERSION_STRING "0.1.0"
#define CORO_VERSION_HEX 0x000100
VERSION

flags="-std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wstrict-prototypes
       -Wmissing-prototypes -Werror -static -g
       -I$root/include -I$tmp -I$root/src"
passed=0
failed=0
for backend in asm ucontext; do
  case $backend in
    asm) def=-DCORO_CTX_ASM=1; src=$root/src/ctx/ctx-aarch64-aapcs.S ;;
    ucontext) def=-DCORO_CTX_UCONTEXT=1; src=$root/src/ctx/ctx-ucontext.c ;;
  esac
  for opt in -O0 -O2; do
    exe=$tmp/ctx_${backend}${opt}
    # shellcheck disable=SC2086
    if ! "$cc" $flags $opt $def -o "$exe" "$here/ctx_aarch64_test.c" \
        "$root/src/ctx/ctx.c" "$src"; then
      echo "FAIL build $backend $opt"
      failed=$((failed + 1))
      continue
    fi
    out=$("$qemu" "$exe" 2>&1)
    rc=$?
    echo "$out" | sed "s/^/[$backend $opt] /"
    p=$(echo "$out" | sed -n 's/^passed=\([0-9]*\) failed=\([0-9]*\)$/\1/p')
    f=$(echo "$out" | sed -n 's/^passed=\([0-9]*\) failed=\([0-9]*\)$/\2/p')
    if [ -z "$p" ] || [ -z "$f" ]; then
      echo "FAIL run $backend $opt (exit $rc, no summary)"
      failed=$((failed + 1))
      continue
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
  done
done

echo "aarch64 ctx: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
