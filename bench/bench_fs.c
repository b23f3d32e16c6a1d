/* SPDX-License-Identifier: MIT */
/* Sequential read throughput of a file in 64 KiB chunks, in MB/s (10^6
 * bytes per second), best of ROUNDS:
 *   impl=read(2)        a plain loop of read(2) on this thread: the limit
 *   impl=libcoro        coro_fs_read from a task (the page-cache fast path
 *                       on the loop thread, the pool for the rest)
 *   impl=libcoro-pool   coro_fs_read with the fast path off: every chunk is
 *                       a round trip through libuv's thread pool
 *   impl=uv_fs_read     libuv's uv_fs_read with a callback on a plain uv
 *                       loop: the pool round trip without libcoro
 * The file is read once before the timed rounds, so every round reads from
 * the page cache (dropping the cache needs root and disturbs the machine):
 * this measures the cost of getting cached bytes, not the disk.
 * Usage: bench_fs [PATH [MIB [ROUNDS]]]   (PATH "" or absent: a temporary
 * file of MIB MiB, default 64, made and removed here; ROUNDS default 5) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <coro.h>

/* src/io/fs.c: nonzero lets coro_fs_read try the page cache first. */
extern int coro__fs_fast_read;

enum { CHUNK = 64 * 1024 };

static const char *path;
static long long file_size;
static int rounds = 5;
static char *buf;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double plain_mbs;

static void report(const char *impl, double best) {
  double mbs = (double)file_size / best / 1e6;
  if (plain_mbs == 0) plain_mbs = mbs;
  printf("fs: %.0f MB/s what=read chunk=64KiB file_mib=%lld impl=%s "
         "vs_read=%.2f cache=warm\n",
         mbs, file_size >> 20, impl, mbs / plain_mbs);
  fflush(stdout);
}

static int fail(const char *what, int err) {
  fprintf(stderr, "bench_fs: %s: %s\n", what, coro_strerror(err));
  return 1;
}

/* ---- read(2) ---------------------------------------------------------------------- */

static double plain_round(void) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  double t0 = now_s();
  long long total = 0;
  ssize_t n;
  while ((n = read(fd, buf, CHUNK)) > 0) total += n;
  double t = now_s() - t0;
  close(fd);
  return n == 0 && total == file_size ? t : -1;
}

/* ---- libcoro ---------------------------------------------------------------------- */

static void *coro_round(void *arg) {
  double *out = arg;
  int fd;
  int r = coro_fs_open(&fd, path, O_RDONLY, 0);
  if (r != 0) return coro_fail(r);
  double t0 = now_s();
  long long total = 0;
  ssize_t n;
  while ((n = coro_fs_read(fd, buf, CHUNK, -1)) > 0) total += n;
  *out = now_s() - t0;
  coro_fs_close(fd);
  if (n < 0) return coro_fail((int)n);
  return total == file_size ? NULL : coro_fail(-EIO);
}

/* ---- libuv ------------------------------------------------------------------------ */

typedef struct uv_reader {
  uv_fs_t req;
  uv_file fd;
  uv_buf_t b;
  long long total;
  int err;
} uv_reader;

static void fs_read_cb(uv_fs_t *req) {
  uv_reader *u = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  if (n < 0) u->err = (int)n;
  if (n <= 0) return;
  u->total += n;
  req->data = u;
  int r = uv_fs_read(req->loop, req, u->fd, &u->b, 1, -1, fs_read_cb);
  if (r != 0) u->err = r;
}

static double uv_round(void) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) return -1;
  uv_reader u;
  memset(&u, 0, sizeof(u));
  u.fd = open(path, O_RDONLY | O_CLOEXEC);
  if (u.fd < 0) return -1;
  u.b = uv_buf_init(buf, CHUNK);
  u.req.data = &u;
  double t0 = now_s();
  int r = uv_fs_read(&loop, &u.req, u.fd, &u.b, 1, -1, fs_read_cb);
  if (r == 0) uv_run(&loop, UV_RUN_DEFAULT);
  double t = now_s() - t0;
  close(u.fd);
  uv_loop_close(&loop);
  return r == 0 && u.err == 0 && u.total == file_size ? t : -1;
}

/* ---- main ------------------------------------------------------------------------- */

static int make_file(char *tmpl, long long bytes) {
  int fd = mkstemp(tmpl);
  if (fd < 0) return -1;
  for (long long i = 0; i < CHUNK; i++) buf[i] = (char)(i * 131 + 7);
  for (long long done = 0; done < bytes; done += CHUNK)
    if (write(fd, buf, CHUNK) != CHUNK) {
      close(fd);
      return -1;
    }
  close(fd);
  return 0;
}

int main(int argc, char **argv) {
  long long mib = argc > 2 ? atoll(argv[2]) : 64;
  if (argc > 3) rounds = atoi(argv[3]);
  if (mib <= 0 || rounds <= 0) {
    fprintf(stderr, "usage: bench_fs [PATH [MIB [ROUNDS]]]\n");
    return 2;
  }
  buf = malloc(CHUNK);
  if (buf == NULL) return 1;
  char tmpl[] = "/tmp/coro-bench-fs-XXXXXX";
  int own = argc < 2 || argv[1][0] == '\0';
  if (own) {
    if (make_file(tmpl, mib << 20) != 0) return fail("make file", -errno);
    path = tmpl;
  } else {
    path = argv[1];
  }
  struct stat st;
  if (stat(path, &st) != 0) return fail(path, -errno);
  file_size = (long long)st.st_size;
  int rc = 0;
  if (plain_round() < 0) { /* warm the page cache */
    rc = fail("read", -EIO);
    goto out;
  }
  double best = 1e30;
  for (int i = 0; i < rounds; i++) {
    double t = plain_round();
    if (t < 0) {
      rc = fail("read", -EIO);
      goto out;
    }
    if (t < best) best = t;
  }
  report("read(2)", best);
  for (int fast = 1; fast >= 0; fast--) {
    coro__fs_fast_read = fast;
    best = 1e30;
    for (int i = 0; i < rounds; i++) {
      double t = 0;
      int r = coro_run(coro_round, &t, NULL);
      if (r != 0) {
        rc = fail("coro_fs_read", r);
        goto out;
      }
      if (t < best) best = t;
    }
    report(fast ? "libcoro" : "libcoro-pool", best);
  }
  coro__fs_fast_read = 1;
  best = 1e30;
  for (int i = 0; i < rounds; i++) {
    double t = uv_round();
    if (t < 0) {
      rc = fail("uv_fs_read", -EIO);
      goto out;
    }
    if (t < best) best = t;
  }
  report("uv_fs_read", best);
out:
  if (own) unlink(tmpl);
  free(buf);
  return rc;
}
