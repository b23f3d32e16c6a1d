# SPDX-License-Identifier: MIT
"""asyncio / uvloop peer of examples/http_server: asyncio streams, one task
per connection reading each request up to its blank line (readuntil) and
writing the same fixed 200 response with the 13-byte body.

Usage: python3 http_asyncio.py [--uvloop] [PORT]   (default 8080)
"""
import asyncio
import signal
import sys

RESPONSE = (b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Content-Length: 13\r\n"
            b"\r\n"
            b"Hello, World!")


async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port,
                                        backlog=4096)
    print(f"http_asyncio: listening on 127.0.0.1:{port}", flush=True)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGTERM, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


if __name__ == "__main__":
    args = sys.argv[1:]
    use_uvloop = "--uvloop" in args
    args = [a for a in args if a != "--uvloop"]
    if use_uvloop:
        import uvloop
        uvloop.install()
    asyncio.run(main(int(args[0]) if args else 8080))
