# SPDX-License-Identifier: MIT
"""asyncio / uvloop peer of echo_coro: asyncio streams, one task per
connection reading up to 16 KiB and writing back what it read.

Usage: python3 echo_asyncio.py [--uvloop] [PORT]   (default 9000)
"""
import asyncio
import resource
import signal
import sys


async def handle(reader, writer):
    try:
        while True:
            data = await reader.read(16384)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port,
                                        backlog=4096)
    print(f"echo_asyncio: listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args = sys.argv[1:]
    use_uvloop = "--uvloop" in args
    args = [a for a in args if a != "--uvloop"]
    if use_uvloop:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(args[0]) if args else 9000))
