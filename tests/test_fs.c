/* SPDX-License-Identifier: MIT */
/* Files on libuv's thread pool: reads and writes at the current position
 * and at explicit offsets, short reads at end of file, close-on-exec, the
 * path calls (stat, mkdir, rename, unlink) and their errors (ENOENT,
 * EISDIR, EEXIST, EACCES, EBADF), bad input and -EPERM outside a task,
 * read_file (empty, 64 MiB with a checksum, a FIFO that makes it grow) and
 * write_file, a write cut short by RLIMIT_FSIZE, 1000 concurrent reads,
 * cancellation of a queued request (removed: returns before the pool gets
 * to it) and of a running one (a read blocked in the kernel on a FIFO:
 * returns only after the read is done, also when the loop ends meanwhile),
 * a close that is never taken off the queue, timeout scopes, a tight read
 * loop on cached data that a timeout scope still interrupts, and no
 * allocation per read or write.
 * Each test works in a directory of its own under /tmp, removed
 * afterwards. */
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* src/io/fs.c: nonzero lets reads try the page cache on the loop thread;
 * cleared here where a test needs the pool path. */
extern int coro__fs_fast_read;

#define POOL_THREADS 4

/* ---- the test's directory --------------------------------------------------- */

static char dir[64];

static const char *in_dir(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
  return out;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D) chmod(path, 0700);
  return remove(path);
}

static int setup_dir(void **state) {
  int r = coro_test_setup_os(state);
  if (r != 0) return r;
  snprintf(dir, sizeof(dir), "/tmp/coro-test-fs-XXXXXX");
  if (mkdtemp(dir) == NULL) return -1;
  coro__fs_fast_read = 1;
  return 0;
}

static int teardown_dir(void **state) {
  coro__fs_fast_read = 1;
  /* Directories made unreadable by a test get their permissions back
   * first (FTW_DEPTH visits them after their entries, FTW_D before). */
  chmod(dir, 0700);
  int r = nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  if (r != 0) fprintf(stderr, "could not remove %s\n", dir);
  int t = coro_test_teardown_os(state);
  return r != 0 ? -1 : t;
}

/* Write a file with plain syscalls (test data, not under test). */
static void put_file(const char *path, const void *data, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  CHECK_GE(fd, 0);
  if (fd < 0) return;
  CHECK_EQ(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static off_t size_of(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  return st.st_size;
}

/* ---- reads and writes -------------------------------------------------------- */

static void *offsets_main(void *arg) {
  (void)arg;
  char path[128], buf[32];
  in_dir(path, sizeof(path), "f");
  for (int fast = 0; fast < 2; fast++) {
    coro__fs_fast_read = fast;
    int fd = -7;
    CHECK_OK(coro_fs_open(&fd, path, O_RDWR | O_CREAT | O_TRUNC, 0644));
    CHECK_GE(fd, 0);
    CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0); /* added by open */
    /* At the current position: it moves. */
    CHECK_EQ(coro_fs_write(fd, "hello world", 11, -1), 11);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 11);
    CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), -1), 0); /* at the end */
    /* At an explicit offset: it does not. */
    CHECK_EQ(coro_fs_write(fd, "WORLD", 5, 6), 5);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 11);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), 0), 11);
    CHECK(memcmp(buf, "hello WORLD", 11) == 0);
    CHECK_EQ(lseek(fd, 0, SEEK_CUR), 11);
    CHECK_EQ(coro_fs_read(fd, buf, 4, 9), 2); /* short: 2 bytes left */
    CHECK(memcmp(buf, "LD", 2) == 0);
    CHECK_EQ(coro_fs_read(fd, buf, 4, 11), 0);
    CHECK_EQ(coro_fs_read(fd, buf, 4, 1000), 0); /* past the end */
    /* Sequential reads from the start: 8, then the short 3, then 0. */
    CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
    CHECK_EQ(coro_fs_read(fd, buf, 8, -1), 8);
    CHECK(memcmp(buf, "hello WO", 8) == 0);
    CHECK_EQ(coro_fs_read(fd, buf, 8, -1), 3);
    CHECK(memcmp(buf, "RLD", 3) == 0);
    CHECK_EQ(coro_fs_read(fd, buf, 8, -1), 0);
    CHECK_EQ(coro_fs_read(fd, buf, 0, 0), 0); /* len 0 */
    CHECK_EQ(coro_fs_write(fd, buf, 0, -1), 0);
    /* A write past the end leaves a hole of zeros. */
    CHECK_EQ(coro_fs_write(fd, "!", 1, 20), 1);
    CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), 11), 10);
    CHECK(memcmp(buf, "\0\0\0\0\0\0\0\0\0!", 10) == 0);
    CHECK_OK(coro_fs_fsync(fd));
    CHECK_OK(coro_fs_close(fd));
    CHECK_ERR(coro_fs_close(fd), UV_EBADF);
  }
  return NULL;
}

static void test_read_write_offsets(void **state) {
  (void)state;
  assert_run_ok(offsets_main);
}

/* A big write goes through whole; a descriptor opened O_APPEND writes at
 * the end whatever the offset says is the current position. */
static void *big_write_main(void *arg) {
  (void)arg;
  char path[128];
  in_dir(path, sizeof(path), "big");
  size_t n = 8u << 20;
  unsigned char *p = malloc(n);
  CHECK(p != NULL);
  if (p == NULL) return NULL;
  for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31u + (i >> 13));
  int fd;
  CHECK_OK(coro_fs_open(&fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  CHECK_EQ(coro_fs_write(fd, p, n, -1), (ssize_t)n);
  CHECK_OK(coro_fs_close(fd));
  CHECK_EQ(size_of(path), (off_t)n);
  CHECK_OK(coro_fs_open(&fd, path, O_WRONLY | O_APPEND, 0));
  CHECK_EQ(coro_fs_write(fd, "tail", 4, -1), 4);
  CHECK_OK(coro_fs_close(fd));
  CHECK_EQ(size_of(path), (off_t)n + 4);
  void *back = NULL;
  size_t len = 0;
  CHECK_OK(coro_fs_read_file(path, &back, &len));
  CHECK_EQ(len, n + 4);
  CHECK(back != NULL && memcmp(back, p, n) == 0 &&
        memcmp((char *)back + n, "tail", 4) == 0);
  free(back);
  free(p);
  return NULL;
}

static void test_big_write(void **state) {
  (void)state;
  assert_run_ok(big_write_main);
}

/* RLIMIT_FSIZE cuts a write short: the first 1000 bytes go, the rest gets
 * EFBIG. The call returns the error, and the part stays written. In a
 * child, since the limit is the whole process's. */
static void *fsize_main(void *arg) {
  const char *path = arg;
  char buf[5000];
  memset(buf, 'z', sizeof(buf));
  int fd;
  CHECK_OK(coro_fs_open(&fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644));
  CHECK_ERR((int)coro_fs_write(fd, buf, sizeof(buf), -1), UV_EFBIG);
  CHECK_OK(coro_fs_close(fd));
  CHECK_EQ(size_of(path), 1000);
  return NULL;
}

/* The tests that change what the whole process may do (a file size
 * limit, another user) run in a child that starts this program afresh
 * (coro_test_exec_self), so that the child may start threads (libuv's
 * pool) under any sanitizer; main runs the role it names. */

static void fsize_child(void *arg) {
  signal(SIGXFSZ, SIG_IGN); /* kept across exec */
  struct rlimit rl = {1000, 1000};
  if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
  coro_test_exec_self("fsize", arg);
}

static void test_write_cut_short(void **state) {
  (void)state;
  char path[128];
  in_dir(path, sizeof(path), "limited");
  int st = coro_test_in_child(fsize_child, path, 20000);
  assert_true(st >= 0 && WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(size_of(path), 1000);
}

/* 1000 tasks read 1000 slices of one file at once, through the pool and
 * then through the page-cache path. */
enum { NREADERS = 1000, SLICE = 64 };

typedef struct slice_arg {
  int fd;
  int i;
} slice_arg;

static void *slice_task(void *arg) {
  slice_arg *a = arg;
  char buf[SLICE], want[SLICE];
  memset(want, 'a' + a->i % 26, SLICE);
  snprintf(want, sizeof(want), "%d", a->i);
  ssize_t n = coro_fs_read(a->fd, buf, SLICE, (int64_t)a->i * SLICE);
  CHECK_EQ(n, SLICE);
  CHECK(n == SLICE && memcmp(buf, want, SLICE) == 0);
  return NULL;
}

static void *concurrent_main(void *arg) {
  (void)arg;
  char path[128];
  in_dir(path, sizeof(path), "slices");
  char *data = malloc((size_t)NREADERS * SLICE);
  CHECK(data != NULL);
  if (data == NULL) return NULL;
  for (int i = 0; i < NREADERS; i++) {
    char *s = data + (size_t)i * SLICE;
    memset(s, 'a' + i % 26, SLICE);
    snprintf(s, SLICE, "%d", i);
  }
  CHECK_OK(coro_fs_write_file(path, data, (size_t)NREADERS * SLICE, 0644));
  free(data);
  int fd;
  CHECK_OK(coro_fs_open(&fd, path, O_RDONLY, 0));
  static slice_arg args[NREADERS];
  static coro_future *fs[NREADERS];
  for (int fast = 0; fast < 2; fast++) {
    coro__fs_fast_read = fast;
    for (int i = 0; i < NREADERS; i++) {
      args[i].fd = fd;
      args[i].i = i;
      fs[i] = coro_test_spawn(slice_task, &args[i]);
    }
    for (int i = 0; i < NREADERS; i++) CHECK_OK(coro_test_join(fs[i]));
  }
  CHECK_OK(coro_fs_close(fd));
  return NULL;
}

static void test_concurrent_reads(void **state) {
  (void)state;
  assert_run_ok(concurrent_main);
}

/* ---- path calls and their errors ----------------------------------------------- */

static void *paths_main(void *arg) {
  (void)arg;
  char sub[128], a[128], b[128], c[128];
  in_dir(sub, sizeof(sub), "sub");
  in_dir(a, sizeof(a), "a");
  in_dir(b, sizeof(b), "sub/b");
  in_dir(c, sizeof(c), "sub/c");
  CHECK_OK(coro_fs_mkdir(sub, 0750));
  struct stat st, want;
  CHECK_OK(coro_fs_stat(sub, &st));
  CHECK(S_ISDIR(st.st_mode));
  CHECK_EQ(st.st_mode & 0777, 0750); /* umask 022 (set by main) */
  CHECK_ERR(coro_fs_mkdir(sub, 0750), UV_EEXIST);
  CHECK_OK(coro_fs_write_file(a, "12345", 5, 0600));
  CHECK_OK(coro_fs_stat(a, &st));
  CHECK_EQ(stat(a, &want), 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK_EQ(st.st_mode & 0777, 0600);
  CHECK_EQ(st.st_size, 5);
  CHECK_EQ(st.st_ino, want.st_ino);
  CHECK_EQ(st.st_dev, want.st_dev);
  CHECK_EQ(st.st_nlink, 1);
  CHECK_EQ(st.st_uid, want.st_uid);
  CHECK_EQ(st.st_mtim.tv_sec, want.st_mtim.tv_sec);
  CHECK_EQ(st.st_mtim.tv_nsec, want.st_mtim.tv_nsec);
  CHECK_EQ(st.st_blksize, want.st_blksize);
  /* rename moves it (same inode); the old name is gone. */
  CHECK_OK(coro_fs_rename(a, b));
  CHECK_ERR(coro_fs_stat(a, &st), UV_ENOENT);
  CHECK_OK(coro_fs_stat(b, &st));
  CHECK_EQ(st.st_ino, want.st_ino);
  /* Onto an existing file: replaced. */
  CHECK_OK(coro_fs_write_file(c, "x", 1, 0644));
  CHECK_OK(coro_fs_rename(b, c));
  CHECK_OK(coro_fs_stat(c, &st));
  CHECK_EQ(st.st_ino, want.st_ino);
  CHECK_EQ(st.st_size, 5);
  CHECK_OK(coro_fs_unlink(c));
  CHECK_ERR(coro_fs_stat(c, &st), UV_ENOENT);
  return NULL;
}

static void test_path_calls(void **state) {
  (void)state;
  assert_run_ok(paths_main);
}

static void *errors_main(void *arg) {
  (void)arg;
  char missing[128], sub[128], f[128], deep[128];
  in_dir(missing, sizeof(missing), "missing");
  in_dir(sub, sizeof(sub), "sub");
  in_dir(f, sizeof(f), "f");
  in_dir(deep, sizeof(deep), "missing/x");
  CHECK_OK(coro_fs_mkdir(sub, 0755));
  CHECK_OK(coro_fs_write_file(f, "abc", 3, 0644));
  struct stat st;
  char buf[8];
  int fd = 5;
  /* ENOENT */
  CHECK_ERR(coro_fs_open(&fd, missing, O_RDONLY, 0), UV_ENOENT);
  CHECK_EQ(fd, -1);
  CHECK_ERR(coro_fs_stat(missing, &st), UV_ENOENT);
  CHECK_ERR(coro_fs_unlink(missing), UV_ENOENT);
  CHECK_ERR(coro_fs_rename(missing, deep), UV_ENOENT);
  CHECK_ERR(coro_fs_mkdir(deep, 0755), UV_ENOENT);
  void *data = (void *)&data;
  size_t len = 99;
  CHECK_ERR(coro_fs_read_file(missing, &data, &len), UV_ENOENT);
  CHECK(data == NULL);
  CHECK_EQ(len, 0);
  CHECK_ERR(coro_fs_write_file(deep, "x", 1, 0644), UV_ENOENT);
  /* ENOTDIR: a file used as a directory. */
  char under_file[160];
  snprintf(under_file, sizeof(under_file), "%s/x", f);
  CHECK_ERR(coro_fs_stat(under_file, &st), UV_ENOTDIR);
  /* EISDIR: a directory opened for writing, read, unlinked, renamed onto,
   * or read whole. */
  CHECK_ERR(coro_fs_open(&fd, sub, O_WRONLY, 0), UV_EISDIR);
  CHECK_ERR(coro_fs_open(&fd, sub, O_RDWR, 0), UV_EISDIR);
  CHECK_ERR(coro_fs_write_file(sub, "x", 1, 0644), UV_EISDIR);
  CHECK_OK(coro_fs_open(&fd, sub, O_RDONLY, 0));
  for (int fast = 0; fast < 2; fast++) {
    coro__fs_fast_read = fast;
    CHECK_ERR((int)coro_fs_read(fd, buf, sizeof(buf), -1), UV_EISDIR);
  }
  CHECK_OK(coro_fs_close(fd));
  CHECK_ERR(coro_fs_unlink(sub), UV_EISDIR);
  CHECK_ERR(coro_fs_rename(f, sub), UV_EISDIR);
  data = (void *)&data;
  CHECK_ERR(coro_fs_read_file(sub, &data, &len), UV_EISDIR);
  CHECK(data == NULL);
  /* EEXIST */
  CHECK_ERR(coro_fs_open(&fd, f, O_WRONLY | O_CREAT | O_EXCL, 0644),
            UV_EEXIST);
  CHECK_ERR(coro_fs_mkdir(f, 0755), UV_EEXIST);
  /* EBADF: the wrong direction, or a descriptor that is not open. */
  CHECK_OK(coro_fs_open(&fd, f, O_RDONLY, 0));
  CHECK_ERR((int)coro_fs_write(fd, "x", 1, -1), UV_EBADF);
  CHECK_OK(coro_fs_close(fd));
  CHECK_OK(coro_fs_open(&fd, f, O_WRONLY, 0));
  CHECK_ERR((int)coro_fs_read(fd, buf, sizeof(buf), 0), UV_EBADF);
  CHECK_OK(coro_fs_close(fd));
  int closed = fd; /* just closed: not open now (nothing else opens) */
  CHECK_ERR((int)coro_fs_read(closed, buf, sizeof(buf), -1), UV_EBADF);
  CHECK_ERR((int)coro_fs_write(closed, "x", 1, 0), UV_EBADF);
  CHECK_ERR(coro_fs_fsync(closed), UV_EBADF);
  CHECK_ERR(coro_fs_close(closed), UV_EBADF);
  /* ESPIPE: an explicit offset on a pipe. */
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  CHECK_EQ(write(p[1], "x", 1), 1);
  CHECK_ERR((int)coro_fs_read(p[0], buf, 1, 0), UV_ESPIPE);
  CHECK_EQ(coro_fs_read(p[0], buf, 1, -1), 1); /* the byte is still there */
  close(p[0]);
  close(p[1]);
  return NULL;
}

static void test_errors(void **state) {
  (void)state;
  assert_run_ok(errors_main);
}

/* EACCES: a file in a directory of mode 0. Root passes permission bits,
 * so as root this runs in a child that first becomes nobody. */
static void *eacces_main(void *arg) {
  (void)arg;
  char locked[128], f[128], g[128];
  in_dir(locked, sizeof(locked), "locked");
  in_dir(f, sizeof(f), "locked/f");
  in_dir(g, sizeof(g), "locked/g");
  int fd = 3;
  struct stat st;
  CHECK_ERR(coro_fs_open(&fd, f, O_RDONLY, 0), UV_EACCES);
  CHECK_EQ(fd, -1);
  CHECK_ERR(coro_fs_stat(f, &st), UV_EACCES);
  CHECK_ERR(coro_fs_write_file(g, "x", 1, 0644), UV_EACCES);
  CHECK_ERR(coro_fs_mkdir(g, 0755), UV_EACCES);
  CHECK_ERR(coro_fs_unlink(f), UV_EACCES);
  void *data = NULL;
  size_t len = 0;
  CHECK_ERR(coro_fs_read_file(f, &data, &len), UV_EACCES);
  return NULL;
}

static void eacces_child(void *arg) {
  (void)arg;
  coro_test_exec_self("eacces", dir);
}

static void test_eacces(void **state) {
  (void)state;
  char locked[128], f[128];
  in_dir(locked, sizeof(locked), "locked");
  in_dir(f, sizeof(f), "locked/f");
  assert_int_equal(mkdir(locked, 0700), 0);
  put_file(f, "secret", 6);
  assert_checks_passed();
  assert_int_equal(chmod(locked, 0), 0);
  /* The parent directory must be searchable by whoever runs the check. */
  assert_int_equal(chmod(dir, 0755), 0);
  int st = coro_test_in_child(eacces_child, NULL, 20000);
  assert_int_equal(chmod(locked, 0700), 0);
  assert_true(st >= 0 && WIFEXITED(st));
  if (WEXITSTATUS(st) == 77) {
    fprintf(stderr, "skipped: running as root, and could not become "
                    "nobody (uid 65534) to see permissions apply\n");
    skip();
  }
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* Bad arguments, and every call outside a task. */
static void *bad_input_main(void *arg) {
  (void)arg;
  char f[128], buf[4];
  in_dir(f, sizeof(f), "f");
  CHECK_OK(coro_fs_write_file(f, "abc", 3, 0644));
  int fd;
  struct stat st;
  void *data;
  size_t len;
  CHECK_ERR(coro_fs_open(NULL, f, O_RDONLY, 0), -EINVAL);
  CHECK_ERR(coro_fs_open(&fd, NULL, O_RDONLY, 0), -EINVAL);
  CHECK_EQ(fd, -1);
  CHECK_ERR(coro_fs_open(&fd, f, O_RDONLY | O_CREAT, -1), -EINVAL);
  CHECK_OK(coro_fs_open(&fd, f, O_RDONLY, 0));
  CHECK_ERR((int)coro_fs_read(-1, buf, 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_read(fd, NULL, 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_read(fd, buf, (size_t)SSIZE_MAX + 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_read(fd, buf, 1, -2), -EINVAL);
  CHECK_EQ(coro_fs_read(fd, NULL, 0, 0), 0);
  CHECK_ERR((int)coro_fs_write(-3, buf, 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_write(fd, NULL, 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_write(fd, buf, (size_t)SSIZE_MAX + 1, 0), -EINVAL);
  CHECK_ERR((int)coro_fs_write(fd, buf, 1, INT64_MIN), -EINVAL);
  CHECK_ERR(coro_fs_close(-1), -EINVAL);
  CHECK_ERR(coro_fs_fsync(-1), -EINVAL);
  CHECK_OK(coro_fs_close(fd));
  CHECK_ERR(coro_fs_stat(NULL, &st), -EINVAL);
  CHECK_ERR(coro_fs_stat(f, NULL), -EINVAL);
  CHECK_ERR(coro_fs_unlink(NULL), -EINVAL);
  CHECK_ERR(coro_fs_rename(NULL, f), -EINVAL);
  CHECK_ERR(coro_fs_rename(f, NULL), -EINVAL);
  CHECK_ERR(coro_fs_mkdir(NULL, 0755), -EINVAL);
  CHECK_ERR(coro_fs_mkdir(f, -1), -EINVAL);
  CHECK_ERR(coro_fs_read_file(NULL, &data, &len), -EINVAL);
  CHECK_ERR(coro_fs_read_file(f, NULL, &len), -EINVAL);
  CHECK_ERR(coro_fs_read_file(f, &data, NULL), -EINVAL);
  CHECK_ERR(coro_fs_write_file(NULL, "x", 1, 0644), -EINVAL);
  CHECK_ERR(coro_fs_write_file(f, NULL, 1, 0644), -EINVAL);
  CHECK_ERR(coro_fs_write_file(f, "x", (size_t)SSIZE_MAX + 1, 0644), -EINVAL);
  CHECK_ERR(coro_fs_write_file(f, "x", 1, -1), -EINVAL);
  /* Nothing above touched the file. */
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK(len == 3 && memcmp(data, "abc", 3) == 0);
  free(data);
  return NULL;
}

static void test_bad_input(void **state) {
  (void)state;
  assert_run_ok(bad_input_main);
  char f[128], g[128], buf[4];
  in_dir(f, sizeof(f), "f");
  in_dir(g, sizeof(g), "g");
  int fd = open(f, O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  int nfd = 9;
  struct stat st;
  void *data = NULL;
  size_t len = 0;
  assert_coro_err(coro_fs_open(&nfd, f, O_RDONLY, 0), -EPERM);
  assert_int_equal(nfd, -1);
  assert_coro_err((int)coro_fs_read(fd, buf, 1, 0), -EPERM);
  assert_coro_err((int)coro_fs_write(fd, buf, 1, 0), -EPERM);
  assert_coro_err(coro_fs_fsync(fd), -EPERM);
  assert_coro_err(coro_fs_close(fd), -EPERM);
  assert_coro_err(coro_fs_stat(f, &st), -EPERM);
  assert_coro_err(coro_fs_unlink(f), -EPERM);
  assert_coro_err(coro_fs_rename(f, g), -EPERM);
  assert_coro_err(coro_fs_mkdir(g, 0755), -EPERM);
  assert_coro_err(coro_fs_read_file(f, &data, &len), -EPERM);
  assert_null(data);
  assert_coro_err(coro_fs_write_file(g, "x", 1, 0644), -EPERM);
  assert_int_equal(close(fd), 0); /* close gave -EPERM: still open */
  assert_int_equal(size_of(f), 3);
  assert_int_equal(size_of(g), -1);
}

/* ---- whole files ------------------------------------------------------------------ */

static void *empty_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "empty");
  CHECK_OK(coro_fs_write_file(f, NULL, 0, 0644));
  CHECK_EQ(size_of(f), 0);
  void *data = NULL;
  size_t len = 7;
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK(data != NULL);
  CHECK_EQ(len, 0);
  if (data != NULL) CHECK_EQ(((char *)data)[0], 0);
  free(data);
  return NULL;
}

static void test_read_file_empty(void **state) {
  (void)state;
  assert_run_ok(empty_main);
}

/* FNV-1a, 64 bits. */
static uint64_t checksum(const unsigned char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void *big_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "64m");
  size_t n = 64u << 20;
  uint32_t *p = malloc(n);
  CHECK(p != NULL);
  if (p == NULL) return NULL;
  uint32_t x = 2463534242u; /* xorshift32 */
  for (size_t i = 0; i < n / 4; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    p[i] = x;
  }
  uint64_t want = checksum((unsigned char *)p, n);
  CHECK_OK(coro_fs_write_file(f, p, n, 0644));
  free(p);
  CHECK_EQ(size_of(f), (off_t)n);
  void *data = NULL;
  size_t len = 0;
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK_EQ(len, n);
  CHECK(data != NULL);
  if (data != NULL) {
    CHECK_EQ(((char *)data)[len], 0); /* NUL after the data */
    CHECK(checksum(data, len) == want);
  }
  free(data);
  return NULL;
}

static void test_read_file_64m(void **state) {
  (void)state;
  assert_run_ok(big_main);
}

/* write_file creates with mode, truncates an existing file, and
 * read_file gives the bytes back with a NUL after them. */
static void *round_trip_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "rt");
  const char text[] = "first line\nsecond line\n";
  CHECK_OK(coro_fs_write_file(f, text, sizeof(text) - 1, 0640));
  struct stat st;
  CHECK_EQ(stat(f, &st), 0);
  CHECK_EQ(st.st_mode & 0777, 0640);
  void *data = NULL;
  size_t len = 0;
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK_EQ(len, sizeof(text) - 1);
  CHECK(data != NULL && strcmp(data, text) == 0);
  free(data);
  /* Shorter data over it: truncated, and the mode of the existing file
   * is kept. */
  CHECK_OK(coro_fs_write_file(f, "x", 1, 0600));
  CHECK_EQ(stat(f, &st), 0);
  CHECK_EQ(st.st_mode & 0777, 0640);
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK_EQ(len, 1);
  CHECK(data != NULL && strcmp(data, "x") == 0);
  free(data);
  /* Binary data with NULs. */
  unsigned char bin[300];
  for (int i = 0; i < 300; i++) bin[i] = (unsigned char)i;
  CHECK_OK(coro_fs_write_file(f, bin, sizeof(bin), 0600));
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK_EQ(len, sizeof(bin));
  CHECK(data != NULL && memcmp(data, bin, sizeof(bin)) == 0);
  free(data);
  return NULL;
}

static void test_write_read_file_round_trip(void **state) {
  (void)state;
  assert_run_ok(round_trip_main);
}

/* A file whose size says nothing (a FIFO): read_file grows its buffer
 * until the end. A task of the loop feeds the FIFO in pieces. */
enum { FIFO_BYTES = 100000 };

static void *fifo_feed_task(void *arg) {
  const char *path = arg;
  /* Opening for writing blocks until read_file has it open for reading:
   * wait for that without blocking the loop. */
  int fd = -1;
  for (int i = 0; i < 10000 && fd < 0; i++) {
    fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) CHECK_OK(coro_sleep(1));
  }
  CHECK_GE(fd, 0);
  if (fd < 0) return NULL;
  char chunk[1000];
  for (int i = 0; i < FIFO_BYTES / 1000; i++) {
    memset(chunk, 'A' + i % 26, sizeof(chunk));
    size_t off = 0;
    while (off < sizeof(chunk)) {
      ssize_t n = write(fd, chunk + off, sizeof(chunk) - off);
      if (n > 0) off += (size_t)n;
      else CHECK_OK(coro_sleep(1)); /* full: let the reader drain it */
    }
    if (i % 10 == 0) CHECK_OK(coro_sleep(1));
  }
  close(fd);
  return NULL;
}

static void *grow_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "fifo");
  CHECK_EQ(mkfifo(f, 0600), 0);
  coro_future *feed = coro_test_spawn(fifo_feed_task, f);
  void *data = NULL;
  size_t len = 0;
  CHECK_OK(coro_fs_read_file(f, &data, &len));
  CHECK_EQ(len, FIFO_BYTES);
  int ok = data != NULL && len == FIFO_BYTES;
  for (size_t i = 0; ok && i < len; i++)
    ok = ((char *)data)[i] == 'A' + (int)(i / 1000) % 26;
  CHECK(ok);
  if (data != NULL) CHECK_EQ(((char *)data)[len], 0);
  free(data);
  CHECK_OK(coro_test_join(feed));
  return NULL;
}

static void test_read_file_grows(void **state) {
  (void)state;
  assert_run_ok(grow_main);
}

/* ---- cancellation ------------------------------------------------------------------ */

typedef struct op_arg {
  int what;
  const char *path;
  int fd;
  char buf[16];
  int result;
  int returned;
  int opened; /* the descriptor an open gave, or -1 */
} op_arg;

enum { OP_STAT, OP_READ, OP_OPEN, OP_WRITE, OP_MKDIR, OP_READ_FILE,
       OP_CLOSE, OP_COUNT };

static void *op_task(void *arg) {
  op_arg *a = arg;
  struct stat st;
  a->opened = -1;
  switch (a->what) {
  case OP_STAT: a->result = coro_fs_stat(a->path, &st); break;
  case OP_READ:
    a->result = (int)coro_fs_read(a->fd, a->buf, sizeof(a->buf), 0);
    break;
  case OP_OPEN:
    a->result = coro_fs_open(&a->opened, a->path, O_RDONLY, 0);
    break;
  case OP_WRITE:
    a->result = (int)coro_fs_write(a->fd, "written", 7, 0);
    break;
  case OP_MKDIR: a->result = coro_fs_mkdir(a->path, 0755); break;
  case OP_READ_FILE: {
    void *data = (void *)&data;
    size_t len = 5;
    a->result = coro_fs_read_file(a->path, &data, &len);
    if (a->result == 0) free(data);
    else CHECK(data == NULL && len == 0);
    break;
  }
  case OP_CLOSE: a->result = coro_fs_close(a->fd); break;
  }
  a->returned = 1;
  return NULL;
}

static void *cancel_queued_main(void *arg) {
  (void)arg;
  coro__fs_fast_read = 0; /* the read must go to the pool too */
  char f[128], newdir[128], w[128];
  in_dir(f, sizeof(f), "f");
  in_dir(newdir, sizeof(newdir), "newdir");
  in_dir(w, sizeof(w), "w");
  put_file(f, "content", 7);
  int rfd = open(f, O_RDONLY | O_CLOEXEC);
  int wfd = open(w, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  CHECK(rfd >= 0 && wfd >= 0);
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  static op_arg a[OP_CLOSE];
  coro_future *fs[OP_CLOSE];
  for (int i = 0; i < OP_CLOSE; i++) {
    memset(&a[i], 0, sizeof(a[i]));
    a[i].what = i;
    a[i].path = i == OP_MKDIR ? newdir : f;
    a[i].fd = i == OP_WRITE ? wfd : rfd;
    fs[i] = coro_test_spawn(op_task, &a[i]);
  }
  coro_test_yields(3);
  for (int i = 0; i < OP_CLOSE; i++) {
    CHECK_EQ(a[i].returned, 0); /* queued behind the pool block */
    CHECK_OK(coro_cancel(fs[i]));
  }
  /* Each returns -ECANCELED while the pool is still full: taken off the
   * queue, never run. */
  for (int i = 0; i < OP_CLOSE; i++) {
    CHECK_OK(coro_test_join(fs[i]));
    CHECK_ERR(a[i].result, -ECANCELED);
    CHECK_EQ(a[i].opened, -1);
  }
  CHECK_EQ(coro_test_uv_pool_done(), 0);
  coro_test_uv_pool_release();
  /* Nothing of theirs happened. */
  CHECK_EQ(size_of(w), 0);
  CHECK_EQ(size_of(newdir), -1);
  CHECK_EQ(lseek(rfd, 0, SEEK_CUR), 0);
  close(rfd);
  close(wfd);
  /* The pool works afterwards. */
  struct stat st;
  CHECK_OK(coro_fs_stat(f, &st));
  return NULL;
}

static void test_cancel_queued(void **state) {
  (void)state;
  assert_run_ok(cancel_queued_main);
}

/* A close is never taken off the queue: cancelled while queued, it waits
 * for the pool, closes, and returns -ECANCELED; the descriptor is closed
 * either way. */
static void *cancel_close_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "f");
  put_file(f, "x", 1);
  int fd = open(f, O_RDONLY | O_CLOEXEC);
  CHECK_GE(fd, 0);
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  op_arg a;
  memset(&a, 0, sizeof(a));
  a.what = OP_CLOSE;
  a.fd = fd;
  coro_future *cf = coro_test_spawn(op_task, &a);
  coro_test_yields(3);
  CHECK_OK(coro_cancel(cf));
  coro_test_yields(5);
  CHECK_OK(coro_sleep(10));
  CHECK_EQ(a.returned, 0); /* still waiting for the pool */
  CHECK_GE(fcntl(fd, F_GETFD), 0); /* not closed yet */
  coro_test_uv_pool_release();
  CHECK_OK(coro_test_join(cf));
  CHECK_ERR(a.result, -ECANCELED);
  CHECK_EQ(fcntl(fd, F_GETFD), -1); /* closed */
  return NULL;
}

static void test_cancel_queued_close(void **state) {
  (void)state;
  assert_run_ok(cancel_close_main);
}

/* Whether some thread of this process is blocked in read(2) on fd (from
 * /proc/self/task/<tid>/syscall: the call's number, then its arguments). */
static int thread_reading(int fd) {
  char want[64];
  snprintf(want, sizeof(want), "%d 0x%x ", (int)SYS_read, (unsigned)fd);
  DIR *d = opendir("/proc/self/task");
  if (d == NULL) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[300], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
    FILE *f = fopen(path, "re");
    if (f == NULL) continue;
    if (fgets(line, sizeof(line), f) != NULL &&
        strncmp(line, want, strlen(want)) == 0)
      found = 1;
    fclose(f);
  }
  closedir(d);
  return found;
}

/* Wait (without blocking the loop) until a pool thread is in read(2) on
 * fd; 0 if that never happened within 10 s. */
static int wait_thread_reading(int fd) {
  for (int i = 0; i < 10000; i++) {
    if (thread_reading(fd)) return 1;
    CHECK_OK(coro_sleep(1));
  }
  return 0;
}

/* A FIFO opened for reading and writing: a read blocks in the kernel until
 * someone writes, and the test writes to it without blocking. */
static int open_fifo(const char *path) {
  if (mkfifo(path, 0600) != 0) return -1;
  return open(path, O_RDWR | O_CLOEXEC);
}

typedef struct blocked_read {
  int fd;
  char buf[16];
  int result;
  int returned;
  int written; /* the test wrote to the FIFO (set just before it writes) */
  int written_at_return;
  coro_timeout t;
  int use_scope;
  int exit_result;
} blocked_read;

static void *blocked_read_task(void *arg) {
  blocked_read *a = arg;
  memset(a->buf, '.', sizeof(a->buf));
  if (a->use_scope) CHECK_OK(coro_timeout_enter(&a->t, 20));
  a->result = (int)coro_fs_read(a->fd, a->buf, sizeof(a->buf), -1);
  a->written_at_return = a->written;
  if (a->use_scope) a->exit_result = coro_timeout_exit(&a->t, a->result);
  a->returned = 1;
  return NULL;
}

/* Cancel a read that runs on a pool thread, blocked in the kernel: the
 * task goes on waiting; once the test writes, the read completes, its
 * bytes are dropped, and only then does the call return -ECANCELED. With
 * use_scope, a timeout scope does the cancelling. */
static void cancel_running(int use_scope) {
  char f[128];
  in_dir(f, sizeof(f), "fifo");
  int fd = open_fifo(f);
  CHECK_GE(fd, 0);
  if (fd < 0) return;
  static blocked_read a;
  memset(&a, 0, sizeof(a));
  a.fd = fd;
  a.use_scope = use_scope;
  coro_future *rf = coro_test_spawn(blocked_read_task, &a);
  CHECK(wait_thread_reading(fd)); /* the request runs on a pool thread */
  if (use_scope) {
    while (!coro_timeout_expired(&a.t) && !a.returned)
      CHECK_OK(coro_sleep(1));
  } else {
    CHECK_OK(coro_cancel(rf));
  }
  /* Cancelled, and still waiting for the read in the kernel. */
  CHECK_OK(coro_sleep(20));
  CHECK_EQ(a.returned, 0);
  CHECK(thread_reading(fd));
  a.written = 1;
  CHECK_EQ(write(fd, "abc", 3), 3);
  CHECK_OK(coro_test_join(rf));
  CHECK_EQ(a.returned, 1);
  CHECK_ERR(a.result, -ECANCELED);
  CHECK_EQ(a.written_at_return, 1); /* it returned only after the write */
  if (use_scope) CHECK_ERR(a.exit_result, -ETIMEDOUT);
  /* The read did happen (its bytes went into the buffer and were
   * dropped): the FIFO is empty now. */
  CHECK(memcmp(a.buf, "abc", 3) == 0);
  CHECK_EQ(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
  char c;
  CHECK_EQ(read(fd, &c, 1), -1);
  CHECK_EQ(errno, EAGAIN);
  close(fd);
}

static void *cancel_running_main(void *arg) {
  (void)arg;
  cancel_running(0);
  return NULL;
}

static void test_cancel_running(void **state) {
  (void)state;
  assert_run_ok(cancel_running_main);
}

static void *timeout_running_main(void *arg) {
  (void)arg;
  cancel_running(1);
  return NULL;
}

static void test_timeout_running_read(void **state) {
  (void)state;
  assert_run_ok(timeout_running_main);
}

/* The loop ends (main returns) while a task's read runs on a pool thread,
 * blocked in the kernel: coro_run cancels the task and waits for the read,
 * which a thread of the test unblocks a little later; the task returns
 * -ECANCELED only after that, and before coro_run returns. */
typedef struct late_writer {
  int fd;
  blocked_read *a;
} late_writer;

static void *late_writer_thread(void *arg) {
  late_writer *w = arg;
  usleep(50 * 1000);
  w->a->written = 1; /* before the write that lets the read finish */
  if (write(w->fd, "xyz", 3) != 3) CHECK(0);
  return NULL;
}

typedef struct end_ctx {
  blocked_read a;
  late_writer w;
  pthread_t thread;
  int started;
} end_ctx;

static void *end_main(void *arg) {
  end_ctx *c = arg;
  char f[128];
  in_dir(f, sizeof(f), "fifo");
  int fd = open_fifo(f);
  CHECK_GE(fd, 0);
  if (fd < 0) return NULL;
  c->a.fd = fd;
  coro_future *rf = NULL;
  CHECK_OK(coro_spawn(&rf, blocked_read_task, &c->a));
  CHECK(wait_thread_reading(fd));
  c->w.fd = fd;
  c->w.a = &c->a;
  CHECK_EQ(pthread_create(&c->thread, NULL, late_writer_thread, &c->w), 0);
  c->started = 1;
  coro_future_release(rf);
  return NULL; /* with the read still blocked */
}

static void test_loop_end_waits_for_running_read(void **state) {
  (void)state;
  static end_ctx c;
  memset(&c, 0, sizeof(c));
  c.a.fd = -1;
  assert_coro_ok(coro_run(end_main, &c, NULL));
  assert_checks_passed();
  assert_true(c.started);
  assert_int_equal(c.a.returned, 1);
  assert_coro_err(c.a.result, -ECANCELED);
  assert_int_equal(c.a.written_at_return, 1);
  assert_int_equal(pthread_join(c.thread, NULL), 0);
  close(c.a.fd);
}

/* Timeout scopes around queued requests (removed from the queue: they
 * return while the pool is still full), and one that does not fire. */
static void *timeout_queued_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "f");
  put_file(f, "abc", 3);
  CHECK_EQ(coro_test_uv_pool_block(POOL_THREADS), 0);
  coro_timeout t;
  struct stat st;
  CHECK_OK(coro_timeout_enter(&t, 20));
  int r = coro_fs_stat(f, &st);
  CHECK_ERR(r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_OK(coro_timeout_enter(&t, 20));
  void *data = NULL;
  size_t len = 0;
  r = coro_fs_read_file(f, &data, &len);
  CHECK_ERR(r, -ECANCELED);
  CHECK(data == NULL);
  CHECK_ERR(coro_timeout_exit(&t, r), -ETIMEDOUT);
  CHECK_EQ(coro_test_uv_pool_done(), 0);
  coro_test_uv_pool_release();
  CHECK_OK(coro_timeout_enter(&t, 60000));
  r = coro_fs_read_file(f, &data, &len);
  CHECK_OK(coro_timeout_exit(&t, r));
  CHECK(r == 0 && len == 3 && memcmp(data, "abc", 3) == 0);
  free(data);
  return NULL;
}

static void test_timeout_queued(void **state) {
  (void)state;
  assert_run_ok(timeout_queued_main);
}

/* A cancelled open that the pool had already done gives its descriptor
 * back; a cancelled read_file frees its buffer and closes its file.
 * Cancel right after the call started, many times, so that some requests
 * are still queued and some already ran: each returns -ECANCELED or
 * succeeds, and the fixture proves no descriptor is left. */
static void *cancel_race_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "f");
  put_file(f, "some content", 12);
  int cancelled = 0, finished = 0;
  for (int i = 0; i < 200; i++) {
    static op_arg a;
    memset(&a, 0, sizeof(a));
    a.what = i % 2 ? OP_OPEN : OP_READ_FILE;
    a.path = f;
    a.opened = -1;
    coro_future *of = coro_test_spawn(op_task, &a);
    for (int y = 0; y < 1 + i % 4; y++) CHECK_OK(coro_yield());
    if (!a.returned) CHECK_OK(coro_cancel(of));
    /* A request the pool finished before the cancellation came leaves the
     * request pending: the task, which then returns, ends cancelled (as
     * asyncio's does). */
    int j = coro_test_join(of);
    CHECK(j == 0 || (j == -ECANCELED && a.result == 0));
    CHECK_EQ(a.returned, 1);
    CHECK(a.result == 0 || a.result == -ECANCELED);
    if (a.result == -ECANCELED) {
      cancelled++;
      CHECK_EQ(a.opened, -1);
    } else {
      finished++;
      if (a.opened >= 0) close(a.opened);
    }
  }
  CHECK_GT(cancelled, 0);
  return NULL;
}

static void test_cancel_race(void **state) {
  (void)state;
  assert_run_ok(cancel_race_main);
}

/* A task reading a cached file in a tight loop still gives the loop its
 * turn: a timeout scope around the loop fires. */
static void *tight_loop_main(void *arg) {
  (void)arg;
  char f[128];
  in_dir(f, sizeof(f), "cached");
  size_t n = 1u << 20;
  char *p = calloc(1, n);
  CHECK(p != NULL);
  if (p == NULL) return NULL;
  put_file(f, p, n);
  int fd;
  CHECK_OK(coro_fs_open(&fd, f, O_RDONLY, 0));
  coro_timeout t;
  CHECK_OK(coro_timeout_enter(&t, 10));
  ssize_t r = 0;
  long reads = 0;
  int64_t off = 0;
  for (reads = 0; reads < 100000000; reads++) {
    r = coro_fs_read(fd, p, 4096, off);
    if (r < 0) break;
    off = r == 0 ? 0 : off + r;
  }
  CHECK_ERR((int)r, -ECANCELED);
  CHECK_ERR(coro_timeout_exit(&t, (int)r), -ETIMEDOUT);
  CHECK_GT(reads, 0);
  CHECK_OK(coro_fs_close(fd));
  free(p);
  return NULL;
}

static void test_tight_read_loop_times_out(void **state) {
  (void)state;
  assert_run_ok(tight_loop_main);
}

/* A read of cached data completes without suspending (a task made ready
 * before it has not run when it returns); with the fast path off it goes
 * through the pool, and suspends. A pipe with data is read at once too;
 * an empty one goes to the pool (tested with the FIFOs above), and so
 * does a descriptor opened with O_DIRECT. */
static int flag;

static void *set_flag_task(void *arg) {
  (void)arg;
  flag = 1;
  return NULL;
}

static void *no_suspend_main(void *arg) {
  (void)arg;
  char f[128], buf[16];
  in_dir(f, sizeof(f), "f");
  put_file(f, "cached", 6);
  int fd;
  CHECK_OK(coro_fs_open(&fd, f, O_RDONLY, 0));
  CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), 0), 6); /* in the cache now */
  for (int fast = 1; fast >= 0; fast--) {
    coro__fs_fast_read = fast;
    flag = 0;
    coro_future *g = coro_test_spawn(set_flag_task, NULL);
    CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), 0), 6);
    CHECK_EQ(flag, !fast);
    CHECK_OK(coro_test_join(g));
  }
  coro__fs_fast_read = 1;
  CHECK_OK(coro_fs_close(fd));
  int p[2];
  CHECK_EQ(pipe2(p, O_CLOEXEC), 0);
  CHECK_EQ(write(p[1], "piped", 5), 5);
  flag = 0;
  coro_future *g = coro_test_spawn(set_flag_task, NULL);
  CHECK_EQ(coro_fs_read(p[0], buf, sizeof(buf), -1), 5);
  CHECK_EQ(flag, 0);
  CHECK_OK(coro_test_join(g));
  close(p[0]);
  close(p[1]);
  /* O_DIRECT: always the pool (a direct read waits for the device), where
   * the file system takes it at all (tmpfs refuses O_DIRECT). */
  void *al = NULL;
  CHECK_EQ(posix_memalign(&al, 4096, 4096), 0);
  int r = coro_fs_open(&fd, f, O_RDONLY | O_DIRECT, 0);
  if (r == 0 && al != NULL) {
    /* The first direct read writes the cached pages back; after that a
     * direct read with RWF_NOWAIT would go to the device synchronously. */
    CHECK_EQ(coro_fs_read(fd, al, 4096, 0), 6);
    flag = 0;
    g = coro_test_spawn(set_flag_task, NULL);
    CHECK_EQ(coro_fs_read(fd, al, 4096, 0), 6);
    CHECK_EQ(flag, 1);
    CHECK_OK(coro_test_join(g));
    CHECK_OK(coro_fs_close(fd));
  } else {
    CHECK_ERR(r, UV_EINVAL);
  }
  free(al);
  return NULL;
}

static void test_cached_read_does_not_suspend(void **state) {
  (void)state;
  assert_run_ok(no_suspend_main);
}

/* ---- no allocation per read or write ---------------------------------------------- */

/* libuv's allocations, counted (main installs these before libuv's first
 * use; they forward to the C library, so blocks from before mix freely). */
static atomic_long uv_allocs;

static void *count_malloc(size_t n) {
  atomic_fetch_add(&uv_allocs, 1);
  return malloc(n);
}

static void *count_realloc(void *p, size_t n) {
  atomic_fetch_add(&uv_allocs, 1);
  return realloc(p, n);
}

static void *count_calloc(size_t n, size_t m) {
  atomic_fetch_add(&uv_allocs, 1);
  return calloc(n, m);
}

static void count_free(void *p) { free(p); }

/* Reads (through the pool and from the page cache) and writes allocate
 * nothing, in libcoro or in libuv, once a descriptor is open. */
static void *no_alloc_main(void *arg) {
  (void)arg;
  char f[128], buf[512];
  in_dir(f, sizeof(f), "f");
  put_file(f, "0123456789abcdef", 16);
  int fd;
  CHECK_OK(coro_fs_open(&fd, f, O_RDWR, 0));
  CHECK_EQ(coro_fs_read(fd, buf, sizeof(buf), 0), 16); /* warm */
  long uv0 = atomic_load(&uv_allocs);
  coro_test_fail_alloc_after(1); /* libcoro's next allocation fails */
  for (int i = 0; i < 100; i++) {
    coro__fs_fast_read = i % 2;
    CHECK_EQ(coro_fs_read(fd, buf, 8, i % 8), 8);
    CHECK_EQ(buf[0], "0123456789abcdef"[i % 8]);
    CHECK_EQ(coro_fs_write(fd, "x", 1, 16 + i), 1);
  }
  coro_test_fail_alloc_after(0);
  CHECK_EQ(atomic_load(&uv_allocs), uv0);
  /* The counter does see libuv's allocations: a path call copies its
   * path. */
  struct stat st;
  CHECK_OK(coro_fs_stat(f, &st));
  CHECK_GT(atomic_load(&uv_allocs), uv0);
  coro__fs_fast_read = 1;
  CHECK_OK(coro_fs_close(fd));
  CHECK_EQ(size_of(f), 116);
  return NULL;
}

static void test_no_alloc_per_read_write(void **state) {
  (void)state;
  assert_run_ok(no_alloc_main);
}

static void *warm_main(void *arg) {
  (void)arg;
  struct stat st;
  (void)coro_fs_stat("/", &st);
  return NULL;
}

int main(int argc, char **argv) {
  const char *arg;
  const char *child = coro_test_child_role(argc, argv, &arg);
  if (child != NULL) {
    if (strcmp(child, "fsize") == 0)
      return coro_test_child_run(fsize_main, (void *)arg);
    if (strcmp(child, "eacces") == 0) {
      /* Root passes permission bits: become nobody first. */
      if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77;
      snprintf(dir, sizeof(dir), "%s", arg);
      return coro_test_child_run(eacces_main, NULL);
    }
    return 5;
  }
  umask(022);
  signal(SIGPIPE, SIG_IGN); /* a failed FIFO test must not kill the rest */
  /* The pool's size is fixed at its first use in the process; the tests
   * of queued requests fill exactly this many threads. */
  setenv("UV_THREADPOOL_SIZE", "4", 1);
  if (uv_replace_allocator(count_malloc, count_realloc, count_calloc,
                           count_free) != 0)
    return 1;
  /* Start the pool now, so that its threads are there before the first
   * test counts threads. */
  coro_run(warm_main, NULL, NULL);
  const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_dir, teardown_dir)
      T(test_read_write_offsets),
      T(test_big_write),
      T(test_write_cut_short),
      T(test_concurrent_reads),
      T(test_path_calls),
      T(test_errors),
      T(test_eacces),
      T(test_bad_input),
      T(test_read_file_empty),
      T(test_read_file_64m),
      T(test_write_read_file_round_trip),
      T(test_read_file_grows),
      T(test_cancel_queued),
      T(test_cancel_queued_close),
      T(test_cancel_running),
      T(test_timeout_running_read),
      T(test_loop_end_waits_for_running_read),
      T(test_timeout_queued),
      T(test_cancel_race),
      T(test_tight_read_loop_times_out),
      T(test_cached_read_does_not_suspend),
      T(test_no_alloc_per_read_write),
#undef T
  };
  return coro_test_main(argc, argv, tests, NULL, NULL);
}
