# SPDX-License-Identifier: MIT
# Peer for bench_proc_pool: Python's concurrent.futures.ProcessPoolExecutor
# with as many workers as CPUs, a trivial job (bytes in, the same bytes
# out), one at a time (best of 3) and N submitted at once.
# Usage: python3 ppe_python.py [N_ONE [N_BATCH]]
import concurrent.futures as cf
import os
import sys
import time


def trivial(b):
    return b


def main():
    n_one = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    n_batch = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    workers = len(os.sched_getaffinity(0))
    with cf.ProcessPoolExecutor(workers) as ex:
        for f in [ex.submit(trivial, b"x") for _ in range(200)]:
            f.result()
        best = None
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n_one):
                ex.submit(trivial, b"x").result()
            s = time.perf_counter() - t0
            best = s if best is None or s < best else best
        print(f"proc_pool: {best * 1e6 / n_one:.1f} us/job n={n_one} mode=one "
              f"workers={workers} peer=python-ppe", flush=True)
        t0 = time.perf_counter()
        fs = [ex.submit(trivial, b"x") for _ in range(n_batch)]
        for f in fs:
            f.result()
        s = time.perf_counter() - t0
        print(f"proc_pool: {s * 1e6 / n_batch:.2f} us/job n={n_batch} mode=batch "
              f"workers={workers} peer=python-ppe", flush=True)


if __name__ == "__main__":
    main()
