/* SPDX-License-Identifier: MIT */
/* libcoro I/O: TCP and Unix-domain streams, servers, UDP, name resolution,
 * waiting on any descriptor, files, child processes and signals, as
 * suspending calls. Include <coro.h>, not this file. The reference, with every return code, is docs/api/io.md.
 *
 * Conventions shared by every call here:
 * - 0 (or a count) on success, a negative errno value on failure; libuv's
 *   codes (UV_ECONNREFUSED, UV_EAI_NONAME, ...) pass through unchanged.
 * - A call suspends only the calling task and must be made from a task of
 *   the loop that made the object (-EPERM otherwise).
 * - Every suspending call is cancellable (-ECANCELED). Inside a timeout
 *   scope (coro_timeout_enter) a call still waiting when the scope fires
 *   returns -ECANCELED and coro_timeout_exit reports -ETIMEDOUT; calls with
 *   a timeout_ms argument and the per-stream timeouts return -ETIMEDOUT
 *   themselves. A cancelled call leaves nothing behind: a cancelled read
 *   loses no bytes, a cancelled accept loses no connection.
 * - SIGPIPE never kills the process: a write to a closed peer gives
 *   UV_EPIPE or UV_ECONNRESET.
 * - Memory is bounded whatever the peer does: the read buffer stops taking
 *   data from the kernel at its limit (coro_stream_set_limit). */
#ifndef CORO_IO_H_
#define CORO_IO_H_

#include <netdb.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Streams: TCP, Unix-domain sockets, pipes, terminals                      */
/* ------------------------------------------------------------------------ */

typedef struct coro_stream coro_stream;

/* Connect to host:port. host is a name or a literal address, port a
 * decimal number 1..65535 or a service name ("99999", "-1", "" are
 * -EINVAL). The name is resolved off the loop thread; each address is
 * tried in the order getaddrinfo returned until one connects, and the
 * error of the last one is returned if none does. timeout_ms bounds the
 * whole call (CORO_FOREVER: none). Errors: -EINVAL (out, host or port
 * NULL or bad), -EPERM, -ENOMEM, UV_EAI_* (resolution), UV_ECONNREFUSED,
 * UV_ENETUNREACH, ..., -ETIMEDOUT, -ECANCELED. Nothing is left open on
 * failure and *out is then NULL. */
CORO_EXTERN int coro_tcp_connect(coro_stream **out, const char *host,
                                 const char *port, int64_t timeout_ms);
/* The same for one address (struct sockaddr_in or sockaddr_in6). */
CORO_EXTERN int coro_tcp_connect_addr(coro_stream **out,
                                      const struct sockaddr *addr,
                                      int64_t timeout_ms);
/* Connect to a Unix-domain stream socket at path. */
CORO_EXTERN int coro_unix_connect(coro_stream **out, const char *path,
                                  int64_t timeout_ms);
/* Adopt an open descriptor: a connected socket, a pipe or a terminal. The
 * stream owns fd from then on (coro_stream_close closes it) and makes it
 * non-blocking. Errors: -EINVAL (fd < 0, out NULL, or a kind of descriptor
 * a stream cannot use, such as a regular file), UV_EBADF, -EPERM,
 * -ENOMEM; on failure fd is still the caller's. */
CORO_EXTERN int coro_stream_open_fd(coro_stream **out, int fd);

/* Read at most cap bytes. Returns the count (> 0) as soon as any data is
 * there, 0 at end of stream (the peer shut down its side; every later read
 * returns 0 again), or < 0: -ETIMEDOUT (the stream's read timeout), -EBUSY
 * (another task is reading), -EPIPE (the stream was closed while waiting),
 * UV_ECONNRESET, -ECANCELED, -EINVAL (s NULL, buf NULL with cap > 0).
 * cap == 0 returns 0 at once. */
CORO_EXTERN ssize_t coro_stream_read(coro_stream *s, void *buf, size_t cap);
/* Read exactly n bytes. Returns n; at end of stream before n bytes it
 * returns the short count (0 <= count < n; those bytes are in buf), like
 * asyncio's IncompleteReadError.partial. An error part-way (timeout,
 * cancel) keeps the bytes already read in the stream's buffer, so nothing
 * is lost and a later read sees them again. n == 0 returns 0 at once. */
CORO_EXTERN ssize_t coro_stream_read_exactly(coro_stream *s, void *buf,
                                             size_t n);
/* Read up to and including the first occurrence of delim (dlen >= 1
 * bytes). Returns the length including the delimiter. If cap bytes are
 * buffered without the delimiter, or the stream's buffer limit is reached
 * without it: -ENOBUFS, and the bytes stay buffered for the next read
 * (nothing is lost). At end of stream before the delimiter it returns what
 * was there (a count whose bytes do not end with delim), then 0.
 * Errors as coro_stream_read, and -EINVAL (delim NULL or dlen 0). */
CORO_EXTERN ssize_t coro_stream_read_until(coro_stream *s, void *buf,
                                           size_t cap, const void *delim,
                                           size_t dlen);
/* read_until "\n". The line is not NUL-terminated. */
CORO_EXTERN ssize_t coro_stream_read_line(coro_stream *s, char *buf,
                                          size_t cap);

/* Write all len bytes. Returns 0 once every byte has been handed to the
 * kernel; buf is the caller's again when the call returns (no copy is made
 * while the task waits). A write that is cancelled or times out part-way
 * returns -ECANCELED / -ETIMEDOUT, and the write side is then broken
 * (later writes: -EPIPE) since the peer may have got part of a message;
 * reads still work. Errors: UV_EPIPE, UV_ECONNRESET (the peer closed),
 * -EPIPE (after coro_stream_shutdown, or the stream was closed while
 * waiting), -EBUSY (another task is writing), -EINVAL. */
CORO_EXTERN int coro_stream_write(coro_stream *s, const void *buf,
                                  size_t len);
typedef struct coro_iovec {
  const void *base;
  size_t len;
} coro_iovec;
/* Write every byte of iov[0..n) in order, as one write. Errors as
 * coro_stream_write; -EINVAL also for n > 1024. */
CORO_EXTERN int coro_stream_writev(coro_stream *s, const coro_iovec *iov,
                                   size_t n);
/* Half-close: wait for pending writes, then shut down the write side (the
 * peer reads end of stream). Reading goes on. A second call returns 0.
 * Errors: -EBUSY (a write is in progress in another task), -ECANCELED
 * (the shutdown still happens), UV_ENOTSOCK (a pipe or terminal: nothing
 * changed), libuv's. */
CORO_EXTERN int coro_stream_shutdown(coro_stream *s);
/* Close and free s. Tasks blocked on s are woken with -EPIPE first; s is
 * invalid once the call returns. Callable outside a task too (it does not
 * suspend), on the loop's thread. NULL is ignored. Returns 0, or -EPERM
 * (nothing done) from another loop's thread. */
CORO_EXTERN int coro_stream_close(coro_stream *s);

/* Per-stream idle limits, as Go's deadlines: a read / write that waits
 * longer than read_ms / write_ms returns -ETIMEDOUT. CORO_FOREVER (the
 * default) means none. A timed-out read loses nothing. Errors: -EINVAL
 * (s NULL, a value below CORO_FOREVER). */
CORO_EXTERN int coro_stream_set_timeouts(coro_stream *s, int64_t read_ms,
                                         int64_t write_ms);
/* The read buffer's limit (default 64 KiB, as asyncio's limit=): with that
 * much buffered the stream stops reading from the kernel until a task
 * reads, so a fast sender cannot grow memory; read_until gives -ENOBUFS
 * when the limit is full without the delimiter. Errors: -EINVAL (s NULL,
 * bytes 0, or below what is buffered now). */
CORO_EXTERN int coro_stream_set_limit(coro_stream *s, size_t bytes);
/* The descriptor (still owned by the stream), or < 0. */
CORO_EXTERN int coro_stream_fileno(const coro_stream *s);
/* The peer's / the local address. *len: in, the size of *addr; out, the
 * address's length. Errors: -EINVAL, UV_ENOTCONN, UV_ENOTSOCK (a pipe or
 * terminal). A Unix-domain socket gives a struct sockaddr_un. */
CORO_EXTERN int coro_stream_peername(const coro_stream *s,
                                     struct sockaddr_storage *addr, int *len);
CORO_EXTERN int coro_stream_sockname(const coro_stream *s,
                                     struct sockaddr_storage *addr, int *len);
/* TCP_NODELAY; SO_KEEPALIVE with the first probe after delay_s idle
 * seconds. Errors: -EINVAL (s NULL or not TCP), libuv's. */
CORO_EXTERN int coro_tcp_nodelay(coro_stream *s, int enable);
CORO_EXTERN int coro_tcp_keepalive(coro_stream *s, int enable,
                                   unsigned delay_s);

/* ------------------------------------------------------------------------ */
/* Servers                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct coro_server coro_server;
/* Zero-initialise; NULL means the defaults; fields may be added at the
 * end. */
typedef struct coro_listen_opts {
  int backlog;   /* 0 = 511 */
  int reuseport; /* SO_REUSEPORT: several loops may listen on one port */
  int ipv6only;  /* an IPv6 socket takes IPv6 only */
} coro_listen_opts;

/* Bind and listen on host:port. host NULL or "" binds every interface;
 * port "0" takes a free port (coro_server_port reads it back). Errors:
 * -EINVAL (bad port: see coro_tcp_connect), UV_EADDRINUSE, UV_EACCES,
 * UV_EAI_*, -EPERM, -ENOMEM. */
CORO_EXTERN int coro_tcp_listen(coro_server **out, const char *host,
                                const char *port,
                                const coro_listen_opts *opts);
/* Listen on a Unix-domain socket. A stale socket file at path is removed
 * first; a path that exists and is not a socket is refused with
 * UV_EADDRINUSE and left untouched. coro_server_close removes the socket
 * file this call created. */
CORO_EXTERN int coro_unix_listen(coro_server **out, const char *path,
                                 const coro_listen_opts *opts);
/* The bound TCP port, or < 0 (-EINVAL: NULL or not TCP). */
CORO_EXTERN int coro_server_port(const coro_server *srv);
/* Wait for the next connection; *conn is the caller's to close. Running
 * out of descriptors (EMFILE / ENFILE) never makes the server spin or drop
 * its listening socket: accepting pauses, the error is reported once on
 * stderr, and accepting resumes when descriptors are free. A cancelled
 * accept loses no connection. Errors: -EPIPE (the server was closed while
 * waiting), -EBUSY (another task is accepting), -ECANCELED, -EINVAL. */
CORO_EXTERN int coro_server_accept(coro_server *srv, coro_stream **conn);
/* asyncio.start_server + serve_forever: accept in the calling task and run
 * handler(conn, arg) in a new task per connection; the stream is closed
 * when the handler returns. Returns 0 when another task closed the server
 * with coro_server_close (then srv is gone), or -ECANCELED when the calling
 * task was cancelled (then srv is still the caller's to close). Either way
 * it first stops accepting, cancels the connection tasks still running
 * (their pending calls return -ECANCELED) and waits for them: no
 * connection task outlives the call. */
typedef void (*coro_conn_fn)(coro_stream *conn, void *arg);
CORO_EXTERN int coro_server_serve(coro_server *srv, coro_conn_fn handler,
                                  void *arg);
/* Stop listening and free srv. A task blocked in accept or serve is woken
 * first. Connections already accepted are not affected. NULL is ignored.
 * Returns 0. */
CORO_EXTERN int coro_server_close(coro_server *srv);

/* ------------------------------------------------------------------------ */
/* UDP                                                                      */
/* ------------------------------------------------------------------------ */

typedef struct coro_udp coro_udp;
/* Bind a UDP socket to host:port. host NULL or "": every interface; port
 * a decimal number 0..65535 ("0": any free port, coro_udp_sockname reads
 * it back) or a service name. A numeric host and port need no task (a
 * name does: it is resolved on the thread pool). opts (NULL: defaults):
 * only reuseport (SO_REUSEPORT, set before binding) and ipv6only are used.
 * The socket belongs to this thread's loop; *out is the caller's to close.
 * Errors: -EINVAL (out NULL, bad port: "99999", "-1", "", NULL), -EPERM
 * (no loop on this thread; a name outside a task), -ENOMEM,
 * UV_EADDRINUSE, UV_EADDRNOTAVAIL, UV_EACCES, UV_EAI_*, -ECANCELED. On
 * failure *out is NULL and nothing is left open. */
CORO_EXTERN int coro_udp_bind(coro_udp **out, const char *host,
                              const char *port, const coro_listen_opts *opts);
/* Set the default peer: coro_udp_send with to == NULL sends there, and
 * only its datagrams are received. Only addresses of the socket's family
 * are tried. A second call moves to another peer (the local port stays).
 * Errors: -EINVAL (u NULL, bad port), -EPERM, -EPIPE (closed, also while
 * a name was being resolved), UV_EAFNOSUPPORT (no address of the
 * socket's family), UV_EAI_*, -ECANCELED, libuv's. */
CORO_EXTERN int coro_udp_connect(coro_udp *u, const char *host,
                                 const char *port);
/* Receive one datagram: its length (0 for an empty one). A datagram
 * longer than cap is truncated: the length returned is cap, the rest is
 * discarded, and *truncated (if not NULL) is set to 1 (else to 0). from
 * (may be NULL) gets the sender's address. Datagrams are taken from the
 * kernel only while a task waits here, so nothing piles up in memory and
 * a cancelled receive loses no datagram. Errors: -EBUSY (another task
 * receives), -EPIPE (closed while waiting), -ECANCELED, -EPERM (outside a
 * task, another loop), -EINVAL (u NULL, buf NULL with cap > 0), libuv's
 * (UV_ECONNREFUSED: a connected peer refused an earlier datagram). */
CORO_EXTERN ssize_t coro_udp_recv(coro_udp *u, void *buf, size_t cap,
                                  struct sockaddr_storage *from,
                                  int *truncated);
/* Send one datagram of len bytes to to (a sockaddr_in or sockaddr_in6;
 * NULL: the connected peer). Returns 0 once the kernel took it; buf is
 * the caller's again on return (a datagram that has to wait is copied,
 * and a send cancelled then may still go out, whole). Errors: UV_EMSGSIZE,
 * UV_EDESTADDRREQ (to NULL and not connected), UV_EISCONN (to given on a
 * connected socket), -EPIPE (closed while waiting), -ECANCELED, -EPERM,
 * -EINVAL (u NULL, buf NULL with len > 0, to not IPv4/IPv6), -ENOMEM,
 * libuv's. */
CORO_EXTERN int coro_udp_send(coro_udp *u, const void *buf, size_t len,
                              const struct sockaddr *to);
/* The bound address. *len: in, the size of *addr; out, the address's
 * length. Errors: -EINVAL (a NULL argument, *len < 0), -EPERM, libuv's. */
CORO_EXTERN int coro_udp_sockname(const coro_udp *u,
                                  struct sockaddr_storage *addr, int *len);
/* Close and free; a task blocked in recv or send is woken with -EPIPE.
 * Does not suspend (callable outside a task, on the loop's thread). NULL
 * is ignored. Returns 0, or -EPERM (nothing done) from another loop's
 * thread. */
CORO_EXTERN int coro_udp_close(coro_udp *u);

/* ------------------------------------------------------------------------ */
/* Name resolution                                                          */
/* ------------------------------------------------------------------------ */

/* Declared here too: <netdb.h> shows struct addrinfo only with POSIX
 * enabled, and a program compiled as strict ISO C still gets these
 * prototypes. */
struct addrinfo;

/* getaddrinfo on libuv's thread pool, without blocking the loop. hints
 * may be NULL. *res is the caller's, freed with coro_freeaddrinfo; it is
 * NULL on failure. Errors: UV_EAI_* (e.g. UV_EAI_NONAME, UV_EAI_AGAIN,
 * UV_EAI_SERVICE), -EINVAL (res NULL, host and service both NULL), -EPERM
 * (outside a task), -ENOMEM, -ECANCELED (returned at once: a lookup that
 * was already running finishes on its thread and its result is freed
 * then). */
CORO_EXTERN int coro_getaddrinfo(struct addrinfo **res, const char *host,
                                 const char *service,
                                 const struct addrinfo *hints);
/* Free a list from coro_getaddrinfo. NULL is ignored. */
CORO_EXTERN void coro_freeaddrinfo(struct addrinfo *res);
/* getnameinfo of an IPv4 / IPv6 address on the thread pool: the host into
 * host[hostlen], the service into serv[servlen], NUL-terminated. Either
 * buffer may be NULL (length 0): that part is then not looked up by name.
 * Errors: UV_EAI_* (UV_EAI_OVERFLOW: a buffer too small; both then hold
 * ""), -EINVAL (addr NULL or not IPv4/IPv6, both buffers NULL, a buffer
 * of length 0), -EPERM, -ENOMEM, -ECANCELED. */
CORO_EXTERN int coro_getnameinfo(const struct sockaddr *addr, int flags,
                                 char *host, size_t hostlen, char *serv,
                                 size_t servlen);

/* ------------------------------------------------------------------------ */
/* Waiting on a descriptor                                                  */
/* ------------------------------------------------------------------------ */

enum { CORO_READABLE = 1, CORO_WRITABLE = 2 };
/* Suspend until fd is readable and/or writable (events: a mask of
 * CORO_READABLE | CORO_WRITABLE). Returns the part of the mask that is
 * ready (> 0; a peer that hung up counts as readable, an error condition
 * as ready for both), -ETIMEDOUT (timeout_ms 0 checks once without
 * suspending; CORO_FOREVER: no limit), -ECANCELED, -EINVAL (bad mask,
 * timeout_ms < -1), -EPERM (outside a task), -ENOMEM, or a libuv error (a
 * descriptor epoll refuses, e.g. a regular file: UV_EPERM; a bad fd:
 * UV_EBADF; one another libuv handle of the loop watches: UV_EEXIST).
 * Several tasks may wait on one fd (one to read while another waits to
 * write, or several for the same events); each is woken when what it
 * asked for is ready. The descriptor stays the caller's, and is made
 * non-blocking by the first wait; close it only once no task waits on
 * it. */
CORO_EXTERN int coro_wait_fd(int fd, int events, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

/* On libuv's file-system thread pool. A call whose request is still queued
 * when it is cancelled is removed (nothing happens); one already running
 * in the kernel finishes, its result is discarded, and the call returns
 * -ECANCELED only once the request is done, so nothing writes into the
 * task's buffer after it returns. Errors are libuv's (UV_ENOENT, UV_EISDIR,
 * UV_EACCES, ...), -EINVAL for bad arguments, -EPERM outside a task. A
 * read of at most 256 KiB of data in the page cache is copied on the loop
 * thread without suspending (preadv2 RWF_NOWAIT), yielding once per MiB
 * read so. */
struct stat;
/* *fd gets the new descriptor (close-on-exec is added to flags). */
CORO_EXTERN int coro_fs_open(int *fd, const char *path, int flags, int mode);
/* Read at most len bytes at offset (-1: the current position): the count,
 * 0 at end of file (and for len 0), or < 0. */
CORO_EXTERN ssize_t coro_fs_read(int fd, void *buf, size_t len,
                                 int64_t offset);
/* Write all len bytes at offset (-1: the current position): len, or < 0
 * (a short write is retried; an error after part was written is
 * returned, the part stays written). */
CORO_EXTERN ssize_t coro_fs_write(int fd, const void *buf, size_t len,
                                  int64_t offset);
/* The descriptor is closed whatever this returns, -ECANCELED included (a
 * close is never taken off the queue). */
CORO_EXTERN int coro_fs_close(int fd);
CORO_EXTERN int coro_fs_fsync(int fd);
CORO_EXTERN int coro_fs_stat(const char *path, struct stat *st);
CORO_EXTERN int coro_fs_unlink(const char *path);
CORO_EXTERN int coro_fs_rename(const char *from, const char *to);
CORO_EXTERN int coro_fs_mkdir(const char *path, int mode);
/* The whole file into a buffer from malloc() (*data, *len; free it with
 * free(); a NUL byte follows the data, so an empty file gives a 1-byte
 * buffer holding 0 and *len 0). On failure *data is NULL and *len 0. */
CORO_EXTERN int coro_fs_read_file(const char *path, void **data, size_t *len);
/* Create or truncate path with mode and write data to it. */
CORO_EXTERN int coro_fs_write_file(const char *path, const void *data,
                                   size_t len, int mode);

/* ------------------------------------------------------------------------ */
/* Subprocesses                                                             */
/* ------------------------------------------------------------------------ */

typedef struct coro_process coro_process;
enum { CORO_STDIO_INHERIT, CORO_STDIO_PIPE, CORO_STDIO_NULL, CORO_STDIO_FD };
/* Zero-initialise; fields may be added at the end. */
typedef struct coro_process_opts {
  const char *file;      /* NULL = argv[0]; searched in the parent's PATH */
  char *const *argv;     /* NULL-terminated, required */
  char *const *env;      /* NULL = inherit */
  const char *cwd;       /* NULL = inherit */
  int stdin_mode, stdout_mode, stderr_mode; /* CORO_STDIO_*, default INHERIT */
  int stdin_fd, stdout_fd, stderr_fd;       /* for CORO_STDIO_FD */
} coro_process_opts;

/* Start a child (on the loop's thread; a task is not needed) with
 * posix_spawn, its exit watched through a pidfd (uv_spawn on systems
 * without them). Nothing of the parent's leaks into it but 0, 1 and 2:
 * every other descriptor is closed in the child, whatever its flag in the
 * parent (which is left as it was); every signal has its default action
 * and none is blocked. CORO_STDIO_PIPE gives a pipe (not a socket) whose
 * parent end is a coro_stream; CORO_STDIO_NULL is /dev/null. The child
 * belongs to this loop: when coro_run ends, one not yet freed is killed
 * (SIGKILL), reaped and freed with its pipes. *out is NULL on failure.
 * Errors, all reported by this call (never as a child exiting with 127):
 * UV_ENOENT (no such program), UV_EACCES, UV_ENOENT / UV_ENOTDIR for a bad
 * cwd, UV_EBADF (a CORO_STDIO_FD descriptor that is not open), -EINVAL
 * (out, opts or argv NULL, argv empty, bad mode, CORO_STDIO_FD with a
 * negative fd), -EPERM (no loop on this thread), -ENOMEM, -EMFILE,
 * -ECHILD (SIGCHLD is ignored and the child ended, reaped by the kernel,
 * before it could be watched). */
CORO_EXTERN int coro_process_spawn(coro_process **out,
                                   const coro_process_opts *opts);
/* The pipes asked for with CORO_STDIO_PIPE (borrowed; NULL otherwise). The
 * caller may close one with coro_stream_close (closing stdin's sends end of
 * file to the child); coro_process_free closes those still open. A
 * descriptor given with CORO_STDIO_FD stays the caller's. */
CORO_EXTERN coro_stream *coro_process_stdin(coro_process *p);
CORO_EXTERN coro_stream *coro_process_stdout(coro_process *p);
CORO_EXTERN coro_stream *coro_process_stderr(coro_process *p);
CORO_EXTERN int coro_process_pid(const coro_process *p);
/* Wait for the child to exit: *exit_status (its exit code) and
 * *term_signal (0, or the signal that killed it), either may be NULL.
 * -ETIMEDOUT leaves the child running (timeout_ms 0 only looks). Once the
 * exit has been seen, every later wait returns 0 at once with the same
 * status. Several tasks may wait; all see the exit. A waiting task keeps
 * the loop alive. Errors: -ETIMEDOUT, -ECANCELED (the child runs on),
 * -EPIPE (freed while waiting), -ECHILD (the child ended but was reaped
 * by someone else, e.g. with SIGCHLD set to SIG_IGN: its status is lost),
 * -EPERM (outside a task of p's loop),
 * -EINVAL (p NULL, timeout_ms < -1). */
CORO_EXTERN int coro_process_wait(coro_process *p, int64_t timeout_ms,
                                  int *exit_status, int *term_signal);
/* Send signum (0 only checks). UV_ESRCH once the child has exited;
 * -EINVAL (p NULL, bad signum), -EPERM (another thread). */
CORO_EXTERN int coro_process_kill(coro_process *p, int signum);
/* Free; a child still running is killed (SIGKILL) and reaped as soon as
 * it has died (by the loop, without a task; at the latest when coro_run
 * ends): no zombie, ever. Tasks waiting in coro_process_wait get -EPIPE;
 * the pipes still open are closed. Does not suspend. On the loop's thread
 * only (elsewhere nothing is done); NULL is ignored. */
CORO_EXTERN void coro_process_free(coro_process *p);
/* subprocess.run(capture_output=True, input=...): run argv (argv[0]
 * searched in PATH) to completion, feeding in and collecting stdout and
 * stderr into buffers from malloc() (free with free(); NUL-terminated, the
 * NUL not counted in the length; out / err may be NULL: that output goes
 * to /dev/null). in == NULL: the child's stdin is /dev/null. Input the
 * child does not read is not an error. Input is written and both pipes
 * are read concurrently (helper tasks), so a child that fills stderr while
 * the parent reads stdout never deadlocks. *exit_status: the exit code,
 * or -N when signal N ended the child (as Python's returncode). On
 * timeout (timeout_ms; CORO_FOREVER: none; 0: -ETIMEDOUT at once, nothing
 * started), cancellation or an error the
 * child is killed and reaped before the call returns, and nothing is
 * stored: -ETIMEDOUT, -ECANCELED (also from a caller's timeout scope),
 * -EINVAL (argv NULL or empty, in NULL with in_len > 0, timeout_ms < -1),
 * -EPERM (outside a task), -ENOMEM, the spawn's errors (UV_ENOENT...). */
CORO_EXTERN int coro_process_run(char *const argv[], const void *in,
                                 size_t in_len, void **out, size_t *out_len,
                                 void **err, size_t *err_len,
                                 int *exit_status, int64_t timeout_ms);

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct coro_signal coro_signal;
/* Watch signum from now on: deliveries are counted even while nobody
 * waits. Several objects may watch one signal; each counts every delivery
 * (the kernel merges a signal sent again while it is still pending, so two
 * kill(2)s may count as one; each raise(3) counts). libcoro's handler is
 * installed for signum while some object watches it; then the default
 * action is put back. On the loop's thread (a task is not needed). A
 * watcher keeps the loop alive only while a task waits on it.
 * Errors: -EINVAL (out NULL; 0, SIGKILL, SIGSTOP, out of range), -EPERM
 * (no loop on this thread), -ENOMEM. */
CORO_EXTERN int coro_signal_new(coro_signal **out, int signum);
/* Wait until at least one delivery is pending; returns how many arrived
 * (> 0) and consumes them. Several tasks may wait on one object: the first
 * to wait takes the deliveries, the others go on waiting (FIFO).
 * timeout_ms: CORO_FOREVER, 0 (only looks), or a limit. A cancelled or
 * timed-out wait consumes nothing. -ETIMEDOUT, -ECANCELED, -EPIPE (freed
 * while waiting), -EPERM (outside a task of s's loop), -EINVAL (s NULL,
 * timeout_ms < -1). */
CORO_EXTERN int coro_signal_wait(coro_signal *s, int64_t timeout_ms);
/* Stop watching and free; waiting tasks get -EPIPE (the memory goes once
 * the last has resumed). Does not suspend; on the loop's thread only
 * (elsewhere nothing is done). NULL is ignored. A watcher still not freed
 * when coro_run ends is freed then. */
CORO_EXTERN void coro_signal_free(coro_signal *s);

#ifdef __cplusplus
}
#endif

#endif /* CORO_IO_H_ */
