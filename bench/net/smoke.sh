#!/usr/bin/env bash
# ctest smoke run of the network benchmark: start echo_coro on a free port,
# run echo_load against it for a fraction of a second, stop the server with
# SIGTERM and require a clean exit from both. No timing is checked.
# Usage: smoke.sh ECHO_CORO ECHO_LOAD
set -u
server=$1 load=$2
out=$(mktemp)
"$server" 0 >"$out" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
  port=$(sed -n 's/^echo_coro: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$out")
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "smoke: echo_coro did not start"; cat "$out"; kill "$pid" 2>/dev/null; rm -f "$out"; exit 1
fi
"$load" -c 10 -s 1024 -w 0.1 -d 0.3 -p "$pid" 127.0.0.1 "$port"
load_rc=$?
kill -TERM "$pid"
wait "$pid"
server_rc=$?
cat "$out"
rm -f "$out"
echo "smoke: echo_load exit $load_rc, echo_coro exit $server_rc"
[ $load_rc = 0 ] && [ $server_rc = 0 ]
