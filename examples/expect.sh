#!/bin/sh
# SPDX-License-Identifier: MIT
# Run an example and check it: it must exit 0 and a line of its standard
# output (with --last: its last line) must match REGEX (grep -E). The output
# is shown either way.
# Usage: expect.sh [--last] REGEX PROGRAM [ARGS...]
last=0
if [ "$1" = "--last" ]; then last=1; shift; fi
regex=$1
shift
out=$("$@")
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ]; then
  echo "expect.sh: $1 exited with status $rc" >&2
  exit 1
fi
if [ $last = 1 ]; then
  printf '%s\n' "$out" | tail -n 1 | grep -Eq -- "$regex"
else
  printf '%s\n' "$out" | grep -Eq -- "$regex"
fi || { echo "expect.sh: no line matches: $regex" >&2; exit 1; }
