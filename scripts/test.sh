#!/usr/bin/env bash
# Build libcoro and run the whole test suite (ctest: unit tests, examples,
# benchmark smoke runs). Installs missing build dependencies first.
# Usage: scripts/test.sh [--sanitize] [--ucontext] [--cc clang] [--build DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
san=OFF ctx=auto cc=${CC:-gcc} build=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) san=ON ;;
    --ucontext) ctx=ucontext ;;
    --cc) cc=$2; shift ;;
    --build) build=$2; shift ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
extra=()
if [ "$cc" = clang ]; then extra+=(clang libclang-rt-14-dev); fi
bash scripts/deps.sh "${extra[@]}"
suffix=""
if [ $san = ON ]; then suffix=-asan; fi
[ -n "$build" ] || build="build/test-$cc-$ctx$suffix"
CC=$cc cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCORO_SANITIZE=$san \
  -DCORO_CTX=$ctx >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build" && ctest --output-on-failure -j"$(nproc)"
