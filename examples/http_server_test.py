# SPDX-License-Identifier: MIT
"""Drive the http_server example: start it on a free port of 127.0.0.1, check
its answers to a few requests (keep-alive, pipelining, a request split across
writes, bodies by length and chunked, HEAD, HTTP/1.0, Connection: close,
malformed input, a head too long), stop it with
SIGTERM while a connection is still open, and check that it exits 0 and
reports the number of requests it answered.

With --loops N (N > 1) the server runs N loops sharing the port with
SO_REUSEPORT; the same checks run, then 1,000 more connections (100 open at
a time, one request each), and every loop must have served some of them,
with the per-loop counts adding up.

Usage: python3 http_server_test.py PATH/TO/http_server [--loops N]
"""
import re
import signal
import socket
import subprocess
import sys

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
      b"\r\nHello, World!")
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
TIMEOUT = 10


def recv_exactly(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise AssertionError(f"closed after {len(data)} of {n} bytes: {data!r}")
        data += chunk
    return data


def recv_all(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def many_connections(port, total, at_once):
    """total connections, at_once of them open together, one GET each."""
    done = 0
    while done < total:
        batch = [connect(port) for _ in range(min(at_once, total - done))]
        for s in batch:
            s.sendall(GET)
        for s in batch:
            assert recv_exactly(s, len(OK)) == OK
            s.close()
        done += len(batch)
    return done


def main():
    loops = 1
    if len(sys.argv) == 4 and sys.argv[2] == "--loops":
        loops = int(sys.argv[3])
    elif len(sys.argv) != 2:
        sys.exit(__doc__)
    args = [sys.argv[1], "0"] if loops == 1 else [sys.argv[1], "--loops", str(loops), "0"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    answered = 0
    try:
        line = proc.stdout.readline()
        m = re.match(r"listening on http://127\.0\.0\.1:(\d+)/$", line.strip())
        assert m, f"unexpected first line: {line!r}"
        port = int(m.group(1))

        # Keep-alive: three requests one after another on one connection.
        with connect(port) as s:
            for _ in range(3):
                s.sendall(GET)
                assert recv_exactly(s, len(OK)) == OK
                answered += 1

        # Pipelined: ten requests in one write, ten answers in order.
        with connect(port) as s:
            s.sendall(GET * 10)
            assert recv_exactly(s, 10 * len(OK)) == OK * 10
            answered += 10

        # One request split in three writes, then a POST with a body followed
        # by a GET in the same write: the body is not taken for a request.
        with connect(port) as s:
            for part in (GET[:5], GET[5:20], GET[20:]):
                s.sendall(part)
            assert recv_exactly(s, len(OK)) == OK
            s.sendall(b"POST /x HTTP/1.1\r\nContent-Length: 18\r\n\r\n"
                      b"GET /not-a-request" + GET)
            assert recv_exactly(s, 2 * len(OK)) == OK * 2
            answered += 3

        # Bodies that look like requests, by Content-Length and chunked, and
        # a request split inside a body: only the parser frames them right.
        with connect(port) as s:
            s.sendall(GET + b"POST /a HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(GET)
                      + GET + GET)
            assert recv_exactly(s, 3 * len(OK)) == OK * 3
            chunked = (b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"%x\r\n" % len(GET) + GET + b"\r\n0\r\n\r\n")
            s.sendall(chunked[:60])
            s.sendall(chunked[60:] + GET)
            assert recv_exactly(s, 2 * len(OK)) == OK * 2
            answered += 5

        # HTTP/1.1 with Connection: close: one answer, then the server closes.
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET)
            assert recv_all(s) == OK
            answered += 1

        # A head that does not fit the server's buffer: 400 and close.
        with connect(port) as s:
            s.sendall(GET + b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"y" * 20000)
            data = recv_all(s)
            assert data.startswith(OK + b"HTTP/1.1 400 Bad Request\r\n"), data[:200]
            answered += 1

        # HEAD: the same headers without the body, in order with the rest.
        with connect(port) as s:
            s.sendall(GET + b"HEAD / HTTP/1.1\r\n\r\n" + GET)
            head = OK[:-len(b"Hello, World!")]
            assert recv_exactly(s, 2 * len(OK) + len(head)) == OK + head + OK
            answered += 3

        # HTTP/1.0 without keep-alive: one answer, then the server closes.
        with connect(port) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" + GET)
            assert recv_all(s) == OK
            answered += 1

        # Malformed input: the answers already due, then 400 and close.
        with connect(port) as s:
            s.sendall(GET + b"BLAH\x01\x02 nonsense\r\n\r\n")
            data = recv_all(s)
            assert data.startswith(OK + b"HTTP/1.1 400 Bad Request\r\n"), data
            answered += 1

        if loops > 1:
            answered += many_connections(port, 1000, 100)

        # SIGTERM with an idle keep-alive connection still open.
        idle = connect(port)
        idle.sendall(GET)
        assert recv_exactly(idle, len(OK)) == OK
        answered += 1
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=TIMEOUT)
        assert recv_all(idle) == b"", "the idle connection was not closed"
        idle.close()
        assert proc.returncode == 0, f"exit status {proc.returncode}"
        want = f"served {answered} requests"
        last = out.strip().splitlines()[-1]
        if loops == 1:
            assert last == want, f"{last!r} is not {want!r}"
        else:
            m = re.fullmatch(re.escape(want) + r" \((.*)\)", last)
            assert m, f"{last!r} is not {want!r} with per-loop counts"
            per_loop = [int(re.fullmatch(r"loop (\d+): (\d+)", part).group(2))
                        if re.fullmatch(r"loop (\d+): (\d+)", part) else None
                        for part in m.group(1).split(", ")]
            assert len(per_loop) == loops and None not in per_loop, last
            assert sum(per_loop) == answered, f"{per_loop} does not add up to {answered}"
            assert min(per_loop) > 0, f"a loop served nothing: {last!r}"
        print(line.strip())
        print(out.strip())
        print("http_server: every check passed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
