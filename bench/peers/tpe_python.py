# SPDX-License-Identifier: MIT
# Peer for bench_thread_pool: a trivial job through Python's
# ThreadPoolExecutor, microseconds per job, best of 3. "asyncio" mode is
# what an asyncio program does (await loop.run_in_executor), one at a time
# and N submitted at once (gather); "plain" is TPE.submit(...).result().
# Usage: python3 tpe_python.py N_ONE N_BATCH THREADS [uvloop]
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor

N_ONE = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
N_BATCH = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
THREADS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
use_uvloop = len(sys.argv) > 4 and sys.argv[4] == "uvloop"


def trivial(i):
    return i


def best(fn, n):
    b = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        fn(n)
        b = min(b, time.perf_counter() - t0)
    return b * 1e6 / n


def plain_one(n):
    for i in range(n):
        pool.submit(trivial, i).result()


def plain_batch(n):
    fs = [pool.submit(trivial, i) for i in range(n)]
    for f in fs:
        f.result()


async def aio(n, batch):
    loop = asyncio.get_running_loop()
    b = 1e30
    for _ in range(3):
        t0 = time.perf_counter()
        if batch:
            await asyncio.gather(*[loop.run_in_executor(pool, trivial, i) for i in range(n)])
        else:
            for i in range(n):
                await loop.run_in_executor(pool, trivial, i)
        b = min(b, time.perf_counter() - t0)
    return b * 1e6 / n


if use_uvloop:
    import uvloop
    uvloop.install()
    label = "python-uvloop"
else:
    label = "python-asyncio"

with ThreadPoolExecutor(max_workers=THREADS) as pool:
    one = asyncio.run(aio(N_ONE, False))
    batch = asyncio.run(aio(N_BATCH, True))
    print(f"thread_pool: {one:.2f} us/job mode=one peer={label} n={N_ONE} threads={THREADS}")
    print(f"thread_pool: {batch:.2f} us/job mode=batch peer={label} n={N_BATCH} threads={THREADS}")
    if not use_uvloop:
        print(f"thread_pool: {best(plain_one, N_ONE):.2f} us/job mode=one peer=python-tpe n={N_ONE} threads={THREADS}")
        print(f"thread_pool: {best(plain_batch, N_BATCH):.2f} us/job mode=batch peer=python-tpe n={N_BATCH} threads={THREADS}")
