/* SPDX-License-Identifier: MIT */
/* The stream half of the network layer, as the other I/O files see it: the
 * coro_stream struct, making a stream from a descriptor, and the
 * process-wide SIGPIPE setting.
 *
 * A stream belongs to the loop that made it. Its read side is a buffer of
 * at most `limit` bytes (more only while a cancelled read_exactly gives its
 * bytes back): libuv reads into it while it is below the limit and stops
 * reading at the limit. Its write side uses uv_try_write first and one
 * uv_write_t embedded in the stream for the rest, so that a write the task
 * gave up on (cancel, timeout) can finish inside libuv after the task has
 * gone. The struct is freed when both the libuv handle is closed and no task
 * is still inside a call on it (`users`), so a task woken by
 * coro_stream_close can look at the struct before it returns. */
#ifndef CORO_SRC_IO_IO_INTERNAL_H_
#define CORO_SRC_IO_IO_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/task.h"

/* An object of the I/O layer open on a loop, listed in the loop's I/O slot
 * (io.c) from its creation until it is closed: at the end of coro_run,
 * end(o) closes what the program left open (the loop's last iteration then
 * frees it). Embed it; zero-initialised means not tracked. */
typedef struct coro__io_obj {
  struct coro__io_obj *next, **pprev;
  void (*end)(struct coro__io_obj *o);
} coro__io_obj;
/* Loop thread. track lists o (allocates nothing); untrack is a no-op on
 * an object not listed. */
void coro__io_track(coro_loop *loop, coro__io_obj *o,
                    void (*end)(coro__io_obj *o));
void coro__io_untrack(coro__io_obj *o);
void coro__io_loop_end(coro_loop *loop, coro__loop_slot *slot);

enum {
  CORO__STREAM_TCP = 1, /* uv_tcp_t */
  CORO__STREAM_PIPE,    /* uv_pipe_t: a Unix-domain socket or a pipe / FIFO */
  CORO__STREAM_TTY      /* uv_tty_t */
};

struct coro_stream {
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    uv_tty_t tty;
  } h;
  coro_loop *loop;
  coro__io_obj obj;    /* listed on the loop while open */
  uint8_t kind;        /* CORO__STREAM_* */
  uint8_t is_socket;   /* shutdown(2) works on the descriptor */
  uint8_t want_read;   /* a task has read: keep libuv reading below limit */
  uint8_t reading;     /* uv_read_start is on */
  uint8_t eof;         /* the peer shut down its side */
  uint8_t closed;      /* coro_stream_close was called */
  uint8_t handle_closed; /* libuv's close callback ran */
  uint8_t wbroken;     /* a write was abandoned part-way: writes give -EPIPE */
  uint8_t shut;        /* the write side is shut down (or being shut down) */
  uint8_t wreq_busy;   /* wreq is in libuv's hands */
  uint8_t held;        /* coro_server_serve frees it (coro__stream_release) */
  uint8_t grow;        /* the last read filled what it was offered */
  int rerr;            /* read error, reported once the buffer is empty */
  unsigned users;      /* tasks suspended in a call on this stream */
  int orig_fd;         /* a terminal libuv reopened: the caller's fd, or -1 */

  /* Read side. Data is buf[rpos, wpos); cap is buf's size. */
  char *buf;
  size_t cap, rpos, wpos;
  size_t limit;        /* stop reading from the kernel at this many bytes */
  size_t rneed;        /* wake the reader once this many bytes are here */
  coro__task *reader;
  coro__timer rtimer;
  int64_t read_ms, write_ms;

  /* Write side. */
  coro__task *writer;
  coro__timer wtimer;
  uv_write_t wreq;

  /* Connect and shutdown (never both at once). */
  coro__task *other;
  coro__timer otimer;
  uv_connect_t creq;
  uv_shutdown_t sreq;

  /* coro_server_serve's bookkeeping of a connection task. */
  coro__queue serve_node;
  coro__waiter serve_w;
  coro_future *serve_fut;
  void *serve_ctx;
  char dummy;          /* what an abandoned write's remainder points to */
};

/* Make a stream of kind around an open descriptor (a connected socket or a
 * pipe end; for terminals use coro_stream_open_fd). On success the stream
 * owns fd. On failure (-ENOMEM, libuv's) fd is still the caller's. */
int coro__stream_from_fd(coro_loop *loop, int fd, int kind,
                         coro_stream **out);

/* For coro_server_serve, which sets s->held while a connection task runs
 * (so that a handler closing its stream does not free the struct under
 * serve): close s if it is still open and drop the hold. */
void coro__stream_release(coro_stream *s);

/* Ignore SIGPIPE in the whole process, once, if its disposition is still
 * the default, so that a write to a closed peer returns EPIPE instead of
 * killing the process. A handler the program installed is left alone. */
void coro__io_ignore_sigpipe(void);

/* Free the read buffers the streams of this thread keep for reuse (the
 * loop's end). */
void coro__stream_cache_free(void);

/* The buffered byte count of a stream and the size of its buffer (for
 * tests that check memory stays bounded). */
size_t coro__stream_buffered(const coro_stream *s);
size_t coro__stream_bufsize(const coro_stream *s);

#endif /* CORO_SRC_IO_IO_INTERNAL_H_ */
