#!/bin/sh
# SPDX-License-Identifier: MIT
# Run an example and check it: it must exit 0 and a line of its standard
# output (with --last: its last line) must match REGEX (grep -E). The output
# is shown either way. With --count N: exactly N lines of its standard
# output and standard error together must match.
# Usage: expect.sh [--last | --count N] REGEX PROGRAM [ARGS...]
last=0 count=""
if [ "$1" = "--last" ]; then last=1; shift; fi
if [ "$1" = "--count" ]; then count=$2; shift 2; fi
regex=$1
shift
if [ -n "$count" ]; then out=$("$@" 2>&1); else out=$("$@"); fi
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "expect.sh: $1 exited with status $rc" >&2
  exit 1
fi
if [ -n "$count" ]; then
  n=$(printf '%s\n' "$out" | grep -Ec -- "$regex")
  [ "$n" = "$count" ] || { echo "expect.sh: $n lines match $regex, not $count" >&2; exit 1; }
  exit 0
fi
if [ $last = 1 ]; then
  printf '%s\n' "$out" | tail -n 1 | grep -Eq -- "$regex"
else
  printf '%s\n' "$out" | grep -Eq -- "$regex"
fi || { echo "expect.sh: no line matches: $regex" >&2; exit 1; }
