# SPDX-License-Identifier: MIT
# Peer for bench_spawn: asyncio create_task + gather of N trivial tasks,
# ns per task (best of 3). Uses uvloop's loop when asked and installed.
# Usage: python3 spawn_asyncio.py N [uvloop]
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
use_uvloop = len(sys.argv) > 2 and sys.argv[2] == "uvloop"


async def trivial():
    return None


async def main():
    best = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(trivial()) for _ in range(N)]
        await asyncio.gather(*tasks)
        best = min(best, time.perf_counter() - t0)
    return best


if use_uvloop:
    import uvloop
    best = uvloop.run(main()) if hasattr(uvloop, "run") else None
    if best is None:
        uvloop.install()
        best = asyncio.run(main())
    label = "python-uvloop"
else:
    best = asyncio.run(main())
    label = "python-asyncio"
print(f"spawn: {best * 1e9 / N:.1f} ns/task n={N} mode=create_task+gather peer={label}")
