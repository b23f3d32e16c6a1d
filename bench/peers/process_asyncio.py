# SPDX-License-Identifier: MIT
# Peer of bench/bench_process.c with asyncio: spawn + wait of /bin/true per
# child with create_subprocess_exec, one at a time and 16 at once; and pipe
# throughput parent -> cat -> parent (stdin written and drained while
# stdout is read), in MB/s (10^6 bytes). Uses uvloop's loop when asked.
# Usage: python3 process_asyncio.py [N_CHILDREN [MBYTES [uvloop]]]
import asyncio
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
MBYTES = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
use_uvloop = len(sys.argv) > 3 and sys.argv[3] == "uvloop"
CHUNK = 65536
CONCURRENT = 16
PEER = "python-uvloop" if use_uvloop else "python-asyncio"


async def spawn_true():
    p = await asyncio.create_subprocess_exec("/bin/true", stdin=asyncio.subprocess.DEVNULL)
    if await p.wait() != 0:
        raise RuntimeError("/bin/true failed")


async def spawner(counter):
    while counter[0] < N:
        counter[0] += 1
        await spawn_true()


async def spawn_bench(width):
    counter = [0]
    t0 = time.perf_counter()
    await asyncio.gather(*(spawner(counter) for _ in range(width)))
    return time.perf_counter() - t0


async def pipe_bench(total):
    p = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    block = b"x" * CHUNK

    async def feed():
        sent = 0
        while sent < total:
            p.stdin.write(block)
            await p.stdin.drain()
            sent += CHUNK
        p.stdin.close()

    t0 = time.perf_counter()
    feeder = asyncio.create_task(feed())
    got = 0
    while True:
        b = await p.stdout.read(4 * CHUNK)
        if not b:
            break
        got += len(b)
    secs = time.perf_counter() - t0
    await feeder
    await p.wait()
    if got != total:
        raise RuntimeError(f"got {got} of {total} bytes")
    return secs


async def main():
    secs = await spawn_bench(1)
    print(f"process: {secs * 1e6 / N:.1f} us/child mode=one n={N} peer={PEER}", flush=True)
    secs = await spawn_bench(CONCURRENT)
    print(f"process: {secs * 1e6 / N:.1f} us/child mode=concurrent{CONCURRENT} n={N} peer={PEER}",
          flush=True)
    total = MBYTES * 1000000 // CHUNK * CHUNK
    secs = await pipe_bench(total)
    print(f"process: {total / 1e6 / secs:.0f} MB/s mode=pipe mbytes={MBYTES} chunk={CHUNK} peer={PEER}",
          flush=True)


if use_uvloop:
    import uvloop
    uvloop.install()
asyncio.run(main())
