#!/usr/bin/env bash
# Build libcoro and run the whole test suite (ctest: one test per cmocka
# test, examples, benchmark smoke runs). Installs missing build
# dependencies first. Debug builds, with the library's internal assertions
# on (CORO_ASSERTS).
# Usage: scripts/test.sh [--sanitize | --tsan] [--ucontext] [--cc clang]
#                        [--build DIR] [-- CTEST_ARGS...]
#   --sanitize  AddressSanitizer + UBSan
#   --tsan      ThreadSanitizer (clang unless --cc says otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."
san=OFF tsan=OFF ctx=auto cc=${CC:-gcc} cc_set="" build=""
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) san=ON ;;
    --tsan) tsan=ON ;;
    --ucontext) ctx=ucontext ;;
    --cc) cc=$2; cc_set=1; shift ;;
    --build) build=$2; shift ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ $san = ON ] && [ $tsan = ON ]; then
  echo "test.sh: --sanitize and --tsan cannot be combined" >&2; exit 2
fi
if [ $tsan = ON ] && [ -z "$cc_set" ]; then cc=clang; fi
extra=()
if [ "$cc" = clang ]; then extra+=(clang libclang-rt-14-dev); fi
bash scripts/deps.sh "${extra[@]}"
suffix=""
if [ $san = ON ]; then suffix=-asan; fi
if [ $tsan = ON ]; then suffix=-tsan; fi
[ -n "$build" ] || build="build/test-$cc-$ctx$suffix"
CC=$cc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCORO_SANITIZE=$san \
  -DCORO_TSAN=$tsan -DCORO_ASSERTS=ON -DCORO_CTX=$ctx >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
cd "$build" && ctest --output-on-failure -j"$(nproc)" "${ctest_args[@]}"
