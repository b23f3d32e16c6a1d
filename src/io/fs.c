/* SPDX-License-Identifier: MIT */
/* Files, on libuv's file-system thread pool.
 *
 * Every call fills one uv_fs_t that lives in the calling task's frame and
 * suspends until libuv's callback; the task never leaves before that
 * callback, so the request needs no allocation and nothing of libuv ever
 * points into a dead frame:
 * - A cancellation that finds the request still queued takes it off the
 *   queue with uv_cancel; libuv then calls the callback with UV_ECANCELED
 *   in a later iteration, and the call returns -ECANCELED then (without
 *   having done anything).
 * - One that finds the request already running on a pool thread cannot
 *   stop it: the task goes on waiting, and when the request is done its
 *   result is dropped and the call returns -ECANCELED. So nothing writes
 *   into the caller's buffer after the call returned.
 * Both are the cancel hook answering CORO__CANCEL_PASSED: the request was
 * handed to libuv, and the callback wakes the task with -ECANCELED. A
 * cancellation that comes after the callback woke the task is kept for its
 * next suspension (CORO__CANCEL_LATER): the result is the caller's then.
 *
 * A close is never taken off the queue, so that a descriptor is closed
 * whatever coro_fs_close returns. A cancelled open that the pool had
 * already done closes the new descriptor before it returns.
 *
 * Reads of up to FAST_READ_MAX bytes first try preadv2(RWF_NOWAIT) on the
 * loop thread: data that is in the page cache is copied at once without
 * suspending (as a stream read of buffered data); anything that would
 * block (a page not cached, an empty pipe, a file system without support)
 * goes to the pool as above, and so does a read of a descriptor opened
 * with O_DIRECT (the device would be waited for on the loop thread). So
 * that a task reading a big cached file still gives the loop its turn
 * (timers, timeout scopes, signals, other tasks), a read yields first
 * (coro_yield) once FAST_READ_BUDGET bytes were read on the fast path
 * since this thread's last such yield or trip through the pool; a
 * cancellation delivered by that yield makes the read return -ECANCELED
 * before it reads anything. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include "core/task.h"

#ifndef O_CLOEXEC
# define O_CLOEXEC 0
#endif

enum {
  FAST_READ_MAX = 256 * 1024,     /* larger reads always use the pool */
  FAST_READ_BUDGET = 1024 * 1024, /* fast-path bytes between two yields */
  READ_FILE_FIRST = 4096          /* read_file's first buffer without a size */
};

/* Nonzero: reads try the page cache on the loop thread first. Tests and
 * benchmarks clear it to measure or exercise the pool path alone. */
extern int coro__fs_fast_read;
int coro__fs_fast_read = 1;
/* read_nowait's answer when the pool must do the read (not an errno). */
#define USE_POOL ((ssize_t)INT_MIN)
/* Bytes read on the fast path by this thread since its last yield. */
static _Thread_local size_t fast_bytes;

typedef struct fs_op {
  uv_fs_t req;
  coro__task *task;
  uint8_t done;      /* the callback ran */
  uint8_t cancelled; /* a cancellation came before the callback */
  uint8_t keep;      /* never taken off the queue (close) */
} fs_op;

static void fs_cb(uv_fs_t *req) {
  fs_op *op = coro__container_of(req, fs_op, req);
  op->done = 1;
  coro__task_wake(op->task, op->cancelled ? CORO_ECANCELED : 0);
}

/* The wait's cancel hook (see the top of the file). */
static int fs_cancel(coro__task *t, void *arg) {
  (void)t;
  fs_op *op = arg;
  if (op->done && !op->cancelled) return CORO__CANCEL_LATER;
  if (!op->cancelled) {
    op->cancelled = 1;
    /* Queued: taken off, the callback comes with UV_ECANCELED. Running:
     * UV_EBUSY, the callback comes when it is done. */
    if (!op->keep) (void)uv_cancel((uv_req_t *)&op->req);
  }
  return CORO__CANCEL_PASSED;
}

static void op_init(fs_op *op, coro__task *t) {
  memset(op, 0, sizeof(*op));
  op->task = t;
}

static uv_loop_t *uv_of(coro__task *t) { return t->fut.loop->uv; }

/* Wait for the request a uv_fs_* call (which returned r) handed to the
 * pool. Returns the request's result (a count, a descriptor, 0 or a libuv
 * error), or -ECANCELED; op->req.result keeps what the request did either
 * way. The request is cleaned up (op->req.statbuf stays readable). */
static ssize_t op_wait(fs_op *op, int r) {
  if (r < 0) {
    uv_fs_req_cleanup(&op->req);
    return r;
  }
  int s = coro__task_suspend(op->task, fs_cancel, op, "file");
  CORO__ASSERT(op->done);
  uv_fs_req_cleanup(&op->req);
  if (s != 0) return s;
  return op->req.result;
}

/* A descriptor this file opened and must give up on an error path: closed
 * at once on the loop thread (close(2) of a file that was only read or
 * written through the pool does not block on local file systems). */
static void close_now(int fd) {
  if (fd >= 0) (void)close(fd);
}

/* ---- descriptors ------------------------------------------------------------ */

int coro_fs_open(int *fd, const char *path, int flags, int mode) {
  if (fd == NULL) return CORO_EINVAL;
  *fd = -1;
  if (path == NULL || mode < 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_open(uv_of(t), &op.req, path, flags | O_CLOEXEC, mode, fs_cb);
  ssize_t n = op_wait(&op, r);
  if (n == CORO_ECANCELED && op.req.result >= 0) {
    close_now((int)op.req.result); /* opened after all: give it back */
    return CORO_ECANCELED;
  }
  if (n < 0) return (int)n;
  *fd = (int)n;
  return 0;
}

#if defined(__linux__) && defined(RWF_NOWAIT)
/* The page-cache fast path: the count, -ECANCELED (delivered by the
 * budget's yield), or USE_POOL. */
static ssize_t read_nowait(int fd, void *buf, size_t len, int64_t offset) {
  if (!coro__fs_fast_read || len > FAST_READ_MAX) return USE_POOL;
  if (fast_bytes >= FAST_READ_BUDGET) {
    fast_bytes = 0;
    int r = coro_yield(); /* the loop's turn */
    if (r != 0) return r;
  }
#ifdef O_DIRECT
  /* A direct read would wait for the device on the loop thread. */
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || (fl & O_DIRECT)) return USE_POOL;
#endif
  struct iovec iov = {buf, len};
  ssize_t n;
  do
    n = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  /* EAGAIN (not cached, an empty pipe), EOPNOTSUPP (no support), and any
   * error: the pool gives the definitive answer. */
  if (n < 0) return USE_POOL;
  fast_bytes += (size_t)n + 1; /* + 1: empty reads count too */
  return n;
}
#else
static ssize_t read_nowait(int fd, void *buf, size_t len, int64_t offset) {
  (void)fd, (void)buf, (void)len, (void)offset;
  return USE_POOL;
}
#endif

static ssize_t read_pool(coro__task *t, int fd, void *buf, size_t len,
                         int64_t offset) {
  fs_op op;
  op_init(&op, t);
  uv_buf_t b;
  b.base = buf;
  b.len = len;
  int r = uv_fs_read(uv_of(t), &op.req, fd, &b, 1, offset, fs_cb);
  fast_bytes = 0;
  return op_wait(&op, r);
}

ssize_t coro_fs_read(int fd, void *buf, size_t len, int64_t offset) {
  if (fd < 0 || (buf == NULL && len > 0) || len > (size_t)SSIZE_MAX ||
      offset < -1)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (len == 0) return 0;
  ssize_t n = read_nowait(fd, buf, len, offset);
  if (n != USE_POOL) return n;
  return read_pool(t, fd, buf, len, offset);
}

ssize_t coro_fs_write(int fd, const void *buf, size_t len, int64_t offset) {
  if (fd < 0 || (buf == NULL && len > 0) || len > (size_t)SSIZE_MAX ||
      offset < -1)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  size_t done = 0;
  while (done < len) {
    fs_op op;
    op_init(&op, t);
    uv_buf_t b;
    b.base = (char *)buf + done;
    b.len = len - done;
    int r = uv_fs_write(uv_of(t), &op.req, fd, &b, 1, offset, fs_cb);
    ssize_t n = op_wait(&op, r);
    if (n < 0) return n; /* what was written stays written */
    if (n == 0) return UV_EIO; /* the kernel took nothing: do not spin */
    done += (size_t)n;
    if (offset >= 0) offset += n;
  }
  return (ssize_t)len;
}

int coro_fs_close(int fd) {
  if (fd < 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  op.keep = 1;
  int r = uv_fs_close(uv_of(t), &op.req, fd, fs_cb);
  return (int)op_wait(&op, r);
}

int coro_fs_fsync(int fd) {
  if (fd < 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_fsync(uv_of(t), &op.req, fd, fs_cb);
  return (int)op_wait(&op, r);
}

/* ---- paths ------------------------------------------------------------------ */

static void stat_from_uv(struct stat *st, const uv_stat_t *u) {
  memset(st, 0, sizeof(*st));
  st->st_dev = (dev_t)u->st_dev;
  st->st_ino = (ino_t)u->st_ino;
  st->st_mode = (mode_t)u->st_mode;
  st->st_nlink = (nlink_t)u->st_nlink;
  st->st_uid = (uid_t)u->st_uid;
  st->st_gid = (gid_t)u->st_gid;
  st->st_rdev = (dev_t)u->st_rdev;
  st->st_size = (off_t)u->st_size;
  st->st_blksize = (blksize_t)u->st_blksize;
  st->st_blocks = (blkcnt_t)u->st_blocks;
  st->st_atim.tv_sec = u->st_atim.tv_sec;
  st->st_atim.tv_nsec = u->st_atim.tv_nsec;
  st->st_mtim.tv_sec = u->st_mtim.tv_sec;
  st->st_mtim.tv_nsec = u->st_mtim.tv_nsec;
  st->st_ctim.tv_sec = u->st_ctim.tv_sec;
  st->st_ctim.tv_nsec = u->st_ctim.tv_nsec;
}

int coro_fs_stat(const char *path, struct stat *st) {
  if (path == NULL || st == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_stat(uv_of(t), &op.req, path, fs_cb);
  ssize_t n = op_wait(&op, r);
  if (n < 0) return (int)n;
  stat_from_uv(st, &op.req.statbuf);
  return 0;
}

/* The size of an open file (for read_file's first buffer), or < 0. */
static int64_t fstat_size(coro__task *t, int fd, int *regular) {
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_fstat(uv_of(t), &op.req, fd, fs_cb);
  ssize_t n = op_wait(&op, r);
  if (n < 0) return n;
  *regular = S_ISREG(op.req.statbuf.st_mode);
  if (S_ISDIR(op.req.statbuf.st_mode)) return UV_EISDIR;
  return (int64_t)op.req.statbuf.st_size;
}

int coro_fs_unlink(const char *path) {
  if (path == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_unlink(uv_of(t), &op.req, path, fs_cb);
  return (int)op_wait(&op, r);
}

int coro_fs_rename(const char *from, const char *to) {
  if (from == NULL || to == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_rename(uv_of(t), &op.req, from, to, fs_cb);
  return (int)op_wait(&op, r);
}

int coro_fs_mkdir(const char *path, int mode) {
  if (path == NULL || mode < 0) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  fs_op op;
  op_init(&op, t);
  int r = uv_fs_mkdir(uv_of(t), &op.req, path, mode, fs_cb);
  return (int)op_wait(&op, r);
}

/* ---- whole files -------------------------------------------------------------- */

int coro_fs_read_file(const char *path, void **data, size_t *len) {
  if (data == NULL || len == NULL) return CORO_EINVAL;
  *data = NULL;
  *len = 0;
  if (path == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  int fd;
  int r = coro_fs_open(&fd, path, O_RDONLY, 0);
  if (r != 0) return r;
  int regular = 0;
  int64_t size = fstat_size(t, fd, &regular);
  if (size < 0) {
    close_now(fd);
    return (int)size;
  }
  /* The size is a hint (the file may grow or shrink meanwhile, and /proc
   * files say 0): room for it and the terminating NUL, which also takes
   * the read that sees the end of the file when the hint was right. */
  if ((uint64_t)size >= (uint64_t)SSIZE_MAX - 1) {
    close_now(fd);
    return CORO_ENOMEM;
  }
  size_t cap = regular && size > 0 ? (size_t)size + 1 : READ_FILE_FIRST;
  char *buf = malloc(cap);
  if (buf == NULL) {
    close_now(fd);
    return CORO_ENOMEM;
  }
  size_t got = 0;
  for (;;) {
    if (got == cap) {
      size_t ncap = cap <= (size_t)SSIZE_MAX / 2 ? cap * 2 : (size_t)SSIZE_MAX;
      char *nbuf = ncap > cap ? realloc(buf, ncap) : NULL;
      if (nbuf == NULL) {
        r = CORO_ENOMEM;
        break;
      }
      buf = nbuf;
      cap = ncap;
    }
    /* At the current position: a FIFO or a character device has no
     * offsets, and the descriptor is new, so it starts at 0. */
    ssize_t n = read_pool(t, fd, buf + got, cap - got, -1);
    if (n < 0) {
      r = (int)n;
      break;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  /* The read that saw the end had room, so got < cap: the NUL fits. */
  if (r != 0) {
    free(buf);
    close_now(fd);
    return r;
  }
  buf[got] = '\0';
  r = coro_fs_close(fd);
  if (r != 0) {
    free(buf);
    return r;
  }
  *data = buf;
  *len = got;
  return 0;
}

int coro_fs_write_file(const char *path, const void *data, size_t len,
                       int mode) {
  if (path == NULL || (data == NULL && len > 0) || len > (size_t)SSIZE_MAX ||
      mode < 0)
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  int fd;
  int r = coro_fs_open(&fd, path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (r != 0) return r;
  ssize_t n = coro_fs_write(fd, data, len, 0);
  if (n < 0) {
    close_now(fd);
    return (int)n;
  }
  /* The close's error counts: some file systems report a failed write
   * back only there. */
  return coro_fs_close(fd);
}
