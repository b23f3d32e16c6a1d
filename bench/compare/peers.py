# SPDX-License-Identifier: MIT
"""The articles' Python programs, on the same workloads as bench/compare/compare.c.

Usage: python3 peers.py WORKLOAD STRATEGY [RUNS [BATCH]] [--uvloop]
Prints one line per run, in the C program's format:
  compare: WORKLOAD py-STRATEGY seconds=0.9012 check=1700 workers=2 jobs=2

Strategies: sync, threads (threading.Thread per job, or ThreadPoolExecutor when there are more jobs
than workers), processes (multiprocessing.Process per job, or
multiprocessing.Pool), asyncio (gather; sleeps use asyncio.sleep, the
recursive fib is `await fib(n - 1) + await fib(n - 2)` as in the article),
asyncio-threads and asyncio-procs (loop.run_in_executor on a
ThreadPoolExecutor / ProcessPoolExecutor), asyncio-blocking (blocking only:
time.sleep inside coroutines). --uvloop runs the asyncio ones on uvloop.
Pools are created inside the timed region, as in the articles. CPU work uses
os.cpu_count() workers; sleeps use one worker per job.

io_bound: 40 downloads (the 4 pages /page/0..3, 10 times over) from the
server named by COMPARE_HTTP=127.0.0.1:PORT (`compare serve`), by 10
workers, one connection per request: urllib.request.urlopen for sync,
threads (ThreadPoolExecutor(10).map), processes (multiprocessing.Pool(10))
and the executors; aiohttp for asyncio (one ClientSession, all 40 gathered,
TCPConnector(limit=10, force_close=True)). check= is the sum of the bodies'
CRC-32s, bytes= their total length, as in the C program.
"""
import asyncio
import concurrent.futures
import ipaddress
import multiprocessing
import os
import sys
import threading
import time
import urllib.request
import zlib

GRAN_JOBS = 8000
GRAN_WORK = 1000
MASK64 = (1 << 64) - 1
IO_PAGES = 4
IO_REPEAT = 10
IO_WORKERS = 10
IO_TIMEOUT = 10  # seconds: a server that stopped answering


def fib_rec(n):
    return n if n < 2 else fib_rec(n - 1) + fib_rec(n - 2)


async def afib(n):
    if n < 2:
        return n
    return await afib(n - 1) + await afib(n - 2)


def fib_iter(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a & MASK64  # the C program computes modulo 2^64


def gcd_slow(pair):
    a, b = pair
    low = min(a, b)
    for i in range(low, 0, -1):
        if a % i == 0 and b % i == 0:
            return i
    return 1


def small_job(i):
    x = i & 0xFFFFFFFF
    s = 0
    for _ in range(GRAN_WORK):
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF
        s += x >> 16
    return s


def batch_job(rng):
    start, count = rng
    return sum(small_job(i) for i in range(start, start + count))


def sleep_job(ms):
    time.sleep(ms / 1000)
    return ms


def server_base():
    """The server's URL: a numeric IPv4 loopback address (never a name to
    resolve) and a port."""
    host, _, port = os.environ.get("COMPARE_HTTP", "").rpartition(":")
    try:
        ok = ipaddress.IPv4Address(host).is_loopback and 0 < int(port) < 65536
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit("io_bound needs COMPARE_HTTP=127.0.0.1:PORT, the port of "
                         "`compare serve`")
    return f"http://{host}:{int(port)}"


# Never through a proxy: the server is on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def checked(status, length, body):
    """A whole 200 answer: its length << 32 | its CRC-32 (the C program's)."""
    if status != 200 or length is None or int(length) != len(body):
        raise RuntimeError(f"bad response: status {status}, Content-Length {length}, "
                           f"{len(body)} bytes")
    return len(body) << 32 | zlib.crc32(body)


def download(url):
    with _opener.open(url, timeout=IO_TIMEOUT) as resp:
        return checked(resp.status, resp.headers.get("Content-Length"), resp.read())


async def run_aiohttp(urls):
    import aiohttp
    connector = aiohttp.TCPConnector(limit=IO_WORKERS, force_close=True)
    timeout = aiohttp.ClientTimeout(total=IO_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one(url):
            async with session.get(url) as resp:
                body = await resp.read()
                return checked(resp.status, resp.headers.get("Content-Length"), body)
        return await asyncio.gather(*(one(url) for url in urls))


def pairs():
    state = 42
    out = []

    def nxt():
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        return state >> 33

    for _ in range(100):
        a = 100000 + nxt() % 800001
        b = 100000 + nxt() % 800001
        out.append((a, b))
    return out


def make_jobs(wl, batch):
    """(function, list of inputs, io-bound?)"""
    if wl == "sleep":
        return sleep_job, [800, 900], True
    if wl == "blocking":
        return sleep_job, [100] * 10, True
    if wl == "fib-rec":
        return fib_rec, [33, 34], False
    if wl == "fib-iter":
        return fib_iter, list(range(10000, 11000)), False
    if wl == "gcd":
        return gcd_slow, pairs(), False
    if wl == "io_bound":
        base = server_base()
        return download, [f"{base}/page/{k}" for k in range(IO_PAGES)] * IO_REPEAT, True
    if wl == "granularity":
        return batch_job, [(s, min(batch, GRAN_JOBS - s)) for s in range(0, GRAN_JOBS, batch)], False
    raise SystemExit("unknown workload " + wl)


def run_threads(fn, inputs, workers):
    if len(inputs) <= workers:  # one thread per job, as the articles do
        out = [None] * len(inputs)

        def body(k):
            out[k] = fn(inputs[k])

        ts = [threading.Thread(target=body, args=(k,)) for k in range(len(inputs))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return out
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(fn, inputs))


def _process_body(fn, k, x, q):
    q.put((k, fn(x)))


def run_processes(fn, inputs, workers):
    if len(inputs) <= workers:  # one process per job, as the articles do
        q = multiprocessing.Queue()
        ps = [multiprocessing.Process(target=_process_body, args=(fn, k, x, q))
              for k, x in enumerate(inputs)]
        for p in ps:
            p.start()
        out = [None] * len(inputs)
        for _ in ps:
            k, v = q.get()
            out[k] = v
        for p in ps:
            p.join()
        return out
    with multiprocessing.Pool(workers) as pool:
        return pool.map(fn, inputs, chunksize=1)


async def run_asyncio(wl, fn, inputs):
    if wl == "io_bound":
        return await run_aiohttp(inputs)
    if wl in ("sleep", "blocking"):
        async def one(ms):
            await asyncio.sleep(ms / 1000)
            return ms
        return await asyncio.gather(*(one(ms) for ms in inputs))
    if wl == "fib-rec":
        return await asyncio.gather(*(afib(n) for n in inputs))

    async def cpu(x):
        return fn(x)
    return await asyncio.gather(*(cpu(x) for x in inputs))


async def run_blocking(fn, inputs):
    async def one(ms):
        return fn(ms)  # time.sleep inside a coroutine: the mistake
    return await asyncio.gather(*(one(ms) for ms in inputs))


async def run_executor(fn, inputs, ex):
    loop = asyncio.get_running_loop()
    with ex:
        return await asyncio.gather(*(loop.run_in_executor(ex, fn, x) for x in inputs))


def main():
    args = [a for a in sys.argv[1:] if a != "--uvloop"]
    use_uvloop = "--uvloop" in sys.argv
    if len(args) < 2:
        raise SystemExit(__doc__)
    wl, strat = args[0], args[1]
    runs = int(args[2]) if len(args) > 2 else 1
    batch = int(args[3]) if len(args) > 3 else 1
    fn, inputs, io = make_jobs(wl, batch)
    workers = len(inputs) if io else (os.cpu_count() or 1)
    if wl == "io_bound":
        workers = IO_WORKERS
        if strat == "asyncio":
            try:
                import aiohttp  # noqa: F401  (imported before the clock starts)
            except ImportError:
                print(f"compare: {wl} py-{strat} unavailable (no aiohttp)", flush=True)
                sys.exit(3)
    runner = asyncio.run
    label = "py-" + strat
    if use_uvloop:
        import uvloop
        label = "py-uvloop-" + strat[len("asyncio-"):] if strat.startswith("asyncio-") else "py-uvloop"

        def runner(coro):
            loop = uvloop.new_event_loop()
            try:
                return loop.run_until_complete(coro)
            finally:
                loop.close()
    for _ in range(runs):
        t0 = time.perf_counter()
        if strat == "sync":
            out = [fn(x) for x in inputs]
        elif strat == "threads":
            out = run_threads(fn, inputs, workers)
        elif strat == "processes":
            out = run_processes(fn, inputs, workers)
        elif strat == "asyncio":
            out = runner(run_asyncio(wl, fn, inputs))
        elif strat == "asyncio-blocking":
            out = runner(run_blocking(fn, inputs))
        elif strat == "asyncio-threads":
            out = runner(run_executor(fn, inputs, concurrent.futures.ThreadPoolExecutor(workers)))
        elif strat == "asyncio-procs":
            out = runner(run_executor(fn, inputs, concurrent.futures.ProcessPoolExecutor(workers)))
        else:
            raise SystemExit("unknown strategy " + strat)
        secs = time.perf_counter() - t0
        check = sum(out) & MASK64
        extra = ""
        if wl == "io_bound":
            if len(out) != len(inputs):
                raise SystemExit(f"io_bound: {len(out)} of {len(inputs)} downloads")
            check = sum(v & 0xFFFFFFFF for v in out)
            extra = f" bytes={sum(v >> 32 for v in out)}"
        used = 1 if strat in ("sync", "asyncio", "asyncio-blocking") else workers
        print(f"compare: {wl} {label} seconds={secs:.4f} check={check} "
              f"workers={used} jobs={len(inputs)} batch={batch} scale=1{extra}", flush=True)


if __name__ == "__main__":
    main()
