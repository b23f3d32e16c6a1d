# SPDX-License-Identifier: MIT
# Peer for bench_fs: read a file sequentially in 64 KiB chunks from Python,
# MB/s (10^6 bytes per second), best of ROUNDS. The file is read once first,
# so every round reads from the page cache, as bench_fs does.
#   mode=os.read            a plain loop of os.read on the main thread
#   mode=os.readv           the same into one preallocated buffer
#   mode=tpe                ThreadPoolExecutor.submit(os.read).result() per
#                           chunk: plain threads, one at a time
#   mode=run_in_executor    asyncio: await loop.run_in_executor(pool,
#                           os.read, ...) per chunk, which is what aiofiles
#                           does for every read
# Usage: python3 fs_python.py PATH [ROUNDS [uvloop]]
import asyncio
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

CHUNK = 64 * 1024
PATH = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
use_uvloop = len(sys.argv) > 3 and sys.argv[3] == "uvloop"
SIZE = os.stat(PATH).st_size
pool = ThreadPoolExecutor(max_workers=4)


def report(mode, secs, peer="python"):
    print(f"fs: {SIZE / secs / 1e6:.0f} MB/s what=read chunk=64KiB "
          f"file_mib={SIZE >> 20} mode={mode} peer={peer} cache=warm", flush=True)


def check(total):
    if total != SIZE:
        sys.exit(f"fs_python: read {total} bytes, want {SIZE}")


def best(fn):
    b = 1e30
    for _ in range(ROUNDS):
        fd = os.open(PATH, os.O_RDONLY)
        try:
            t0 = time.perf_counter()
            check(fn(fd))
            b = min(b, time.perf_counter() - t0)
        finally:
            os.close(fd)
    return b


def plain(fd):
    total = 0
    while True:
        b = os.read(fd, CHUNK)
        if not b:
            return total
        total += len(b)


def plain_readv(fd):
    buf = bytearray(CHUNK)
    total = 0
    while True:
        n = os.readv(fd, [buf])
        if n == 0:
            return total
        total += n


def tpe(fd):
    total = 0
    while True:
        b = pool.submit(os.read, fd, CHUNK).result()
        if not b:
            return total
        total += len(b)


async def aio_round(fd):
    loop = asyncio.get_running_loop()
    total = 0
    while True:
        b = await loop.run_in_executor(pool, os.read, fd, CHUNK)
        if not b:
            return total
        total += len(b)


async def aio_best():
    b = 1e30
    for _ in range(ROUNDS):
        fd = os.open(PATH, os.O_RDONLY)
        try:
            t0 = time.perf_counter()
            check(await aio_round(fd))
            b = min(b, time.perf_counter() - t0)
        finally:
            os.close(fd)
    return b


def main():
    fd = os.open(PATH, os.O_RDONLY)
    plain(fd)  # warm the page cache
    os.close(fd)
    if use_uvloop:
        import uvloop  # 0.17 has no uvloop.run
        loop = uvloop.new_event_loop()
        try:
            secs = loop.run_until_complete(aio_best())
        finally:
            loop.close()
        report("run_in_executor", secs, "python-uvloop")
        return
    report("os.read", best(plain))
    report("os.readv", best(plain_readv))
    report("tpe", best(tpe))
    report("run_in_executor", asyncio.run(aio_best()), "python-asyncio")


main()
pool.shutdown()
