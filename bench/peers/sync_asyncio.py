# SPDX-License-Identifier: MIT
# Peer for bench_sync: the same lock and queue workloads on asyncio (or
# uvloop's loop when asked and installed), best of 3 after a warm-up.
# Usage: python3 sync_asyncio.py N [uvloop]
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
use_uvloop = len(sys.argv) > 2 and sys.argv[2] == "uvloop"
NTASKS = 8


async def lock_uncontended(n):
    lock = asyncio.Lock()
    t0 = time.perf_counter()
    for _ in range(n):
        await lock.acquire()
        lock.release()
    return time.perf_counter() - t0


async def contender(lock, rounds):
    for _ in range(rounds):
        async with lock:
            await asyncio.sleep(0)


async def lock_contended(total):
    lock = asyncio.Lock()
    t0 = time.perf_counter()
    await asyncio.gather(*[contender(lock, total // NTASKS) for _ in range(NTASKS)])
    return time.perf_counter() - t0


async def producer(q, n):
    for i in range(n):
        await q.put(i + 1)


async def consumer(q, n):
    s = 0
    for _ in range(n):
        s += await q.get()
    assert s == n * (n + 1) // 2


async def queue_run(maxsize, n):
    q = asyncio.Queue(maxsize)
    t0 = time.perf_counter()
    await asyncio.gather(producer(q, n), consumer(q, n))
    return time.perf_counter() - t0


async def best(fn, *args):
    ts = [await fn(*args) for _ in range(4)]
    return min(ts[1:])


def report(label, mode, secs, n, unit):
    print(f"sync: {secs * 1e9 / n:.1f} {unit} n={n} mode={mode} peer={label}", flush=True)


async def main(label):
    report(label, "lock_uncontended", await best(lock_uncontended, N), N, "ns/op")
    nc = N // 4
    report(label, "lock_contended", await best(lock_contended, nc), nc // NTASKS * NTASKS, "ns/op")
    report(label, "queue_unbounded", await best(queue_run, 0, N), N, "ns/item")
    report(label, "queue_bounded64", await best(queue_run, 64, N), N, "ns/item")
    report(label, "queue_bounded1", await best(queue_run, 1, N // 4), N // 4, "ns/item")


if use_uvloop:
    import uvloop
    uvloop.install()
    label = "python-uvloop"
else:
    label = "python-asyncio"
asyncio.run(main(label))
