#!/usr/bin/env bash
# Install libcoro into a staging prefix, then build README's example against
# it twice: with pkg-config and with CMake's find_package. Both must run and
# take about 0.9 s (two concurrent sleeps of 0.8 and 0.9 s), not 1.7 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S . -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DCORO_BUILD_TESTS=OFF \
  -DCORO_BUILD_EXAMPLES=OFF -DCORO_BUILD_BENCH=OFF >/dev/null
cmake --build "$work/build" -j"$(nproc)" >/dev/null
cmake --install "$work/build" --prefix "$work/prefix" >/dev/null
python3 - "$work/example.c" <<'PY'
import re, sys
s = open("README.md").read()
open(sys.argv[1], "w").write(re.search(r"```c\n(.*?)```", s, re.S).group(1))
PY
pc="$work/prefix/lib/pkgconfig"
[ -d "$pc" ] || pc=$(dirname "$(find "$work/prefix" -name libcoro.pc | head -1)")
cc -std=c11 -Wall -Wextra -Werror "$work/example.c" -o "$work/ex-pc" \
  $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs libcoro) \
  -Wl,-rpath,"$(PKG_CONFIG_PATH="$pc" pkg-config --variable=libdir libcoro)"
cmake -S tests/consumer -B "$work/consumer" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DEXAMPLE_SOURCE="$work/example.c" >/dev/null
cmake --build "$work/consumer" >/dev/null
for ex in "$work/ex-pc" "$work/consumer/consumer"; do
  t0=$(date +%s%N)
  out=$("$ex")
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$out" = "800 900" ] || { echo "consumer: $ex printed '$out'" >&2; exit 1; }
  [ $ms -ge 900 ] && [ $ms -lt 1500 ] || { echo "consumer: $ex took $ms ms" >&2; exit 1; }
  echo "consumer: $(basename "$ex") ok ($ms ms)"
done
echo "consumer: 2 passed, 0 failed"
