# shellcheck shell=bash
# bench/run.sh part: reading a 64 MiB file in 64 KiB chunks (bench_fs:
# read(2), coro_fs_read with and without its page-cache fast path, libuv's
# uv_fs_read), and Python reading the same file (os.read, a thread pool, and
# asyncio's run_in_executor as aiofiles does). The file is read once before
# the timed rounds, so every figure is for data in the page cache: dropping
# the cache needs root and disturbs everything else on the machine. Sourced
# by run.sh (quick, build, out, say, run, want).
say "## files"
if [ "$quick" = 1 ]; then FS_MIB=16 FS_ROUNDS=3; else FS_MIB=64 FS_ROUNDS=7; fi
fs_file=$(mktemp /tmp/coro-bench-fs-XXXXXX)
if head -c $((FS_MIB << 20)) /dev/urandom > "$fs_file"; then
  if [ -x "$build/bench/bench_fs" ]; then
    run "$build/bench/bench_fs" "$fs_file" "$FS_MIB" "$FS_ROUNDS"
  else
    say "fs: skipped impl=libcoro (no $build/bench/bench_fs)"
  fi
  if command -v python3 >/dev/null; then
    run python3 bench/peers/fs_python.py "$fs_file" "$FS_ROUNDS"
    if /usr/bin/python3 -c 'import uvloop' 2>/dev/null; then
      run /usr/bin/python3 bench/peers/fs_python.py "$fs_file" "$FS_ROUNDS" uvloop
    else
      say "fs: skipped peer=python-uvloop (python3-uvloop not installed)"
    fi
  else
    say "fs: skipped peer=python (no python3)"
  fi
else
  say "fs: skipped (could not write $fs_file)"
fi
rm -f "$fs_file"
