# SPDX-License-Identifier: MIT
# Peer for bench_gather: N trivial tasks through asyncio.gather, and N in a
# TaskGroup, ns per task (best of 3). uvloop's loop when asked and installed.
# Usage: python3 gather_asyncio.py N [uvloop]
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
use_uvloop = len(sys.argv) > 2 and sys.argv[2] == "uvloop"


async def trivial(i):
    return i


async def main():
    best_g = best_tg = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        await asyncio.gather(*[asyncio.create_task(trivial(i)) for i in range(N)])
        best_g = min(best_g, time.perf_counter() - t0)
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for i in range(N):
                tg.create_task(trivial(i))
        best_tg = min(best_tg, time.perf_counter() - t0)
    return best_g, best_tg


if use_uvloop:
    import uvloop
    uvloop.install()
    label = "python-uvloop"
else:
    label = "python-asyncio"
g, tg = asyncio.run(main())
print(f"gather: {g * 1e9 / N:.1f} ns/task n={N} mode=gather peer={label}")
print(f"gather: {tg * 1e9 / N:.1f} ns/task n={N} mode=group peer={label}")
