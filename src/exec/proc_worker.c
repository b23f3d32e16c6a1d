/* SPDX-License-Identifier: MIT */
/* The worker side of process pools, and what both sides need to name a
 * function across processes.
 *
 * A worker is the program's own binary, re-executed (/proc/self/exe) by the
 * pool thread with CORO__PROC_ENV in its environment. The constructor
 * below sees the variable before main() runs, serves jobs on its socket
 * until end of file, and exits: the program's main() needs no change.
 *
 * Functions are named by (object path, offset from its load base): under
 * ASLR the same function sits at another address in every process, but at
 * the same offset in the same file. */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "exec/proc_pool.h"

/* ---- naming functions ------------------------------------------------------ */

typedef struct find_obj {
  uintptr_t addr;   /* in: address to look up (0 = look up by name) */
  const char *name; /* in: object path to look up; out: found object's */
  uintptr_t base;   /* out */
  int index;        /* how many objects were visited before it */
  int found;
} find_obj;

/* 1 if addr (relative to the object's base) lies in an executable PT_LOAD
 * segment of info. */
static int in_exec_segment(const struct dl_phdr_info *info, uintptr_t rel) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    if (rel >= ph->p_vaddr && rel - ph->p_vaddr < ph->p_memsz) return 1;
  }
  return 0;
}

static int find_cb(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  find_obj *fo = data;
  int first = fo->index++ == 0;
  if (fo->addr != 0) {
    if (fo->addr < info->dlpi_addr) return 0;
    if (!in_exec_segment(info, fo->addr - info->dlpi_addr)) return 0;
    fo->name = first ? "" : info->dlpi_name;
  } else {
    /* The main program is the first object; its name is "". */
    if (fo->name[0] == '\0' ? !first
                            : strcmp(fo->name, info->dlpi_name) != 0)
      return 0;
  }
  fo->base = info->dlpi_addr;
  fo->found = 1;
  return 1;
}

/* The main program's executable ranges, found once: most job functions
 * live there, and this spares dl_iterate_phdr's lock on every submission. */
#define MAIN_RANGES 4
static struct {
  uintptr_t base;
  uintptr_t lo[MAIN_RANGES], hi[MAIN_RANGES];
  int n;
} main_obj;
static pthread_once_t main_once = PTHREAD_ONCE_INIT;

static int main_cb(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size, (void)data;
  main_obj.base = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum && main_obj.n < MAIN_RANGES; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    main_obj.lo[main_obj.n] = info->dlpi_addr + ph->p_vaddr;
    main_obj.hi[main_obj.n] = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
    main_obj.n++;
  }
  return 1; /* only the first object */
}

static void main_init(void) { dl_iterate_phdr(main_cb, NULL); }

int coro__proc_fn_encode(coro_proc_fn fn, const char **name, size_t *name_len,
                         uint64_t *offset, char *buf, size_t cap) {
  uintptr_t a = (uintptr_t)fn;
  pthread_once(&main_once, main_init);
  for (int i = 0; i < main_obj.n; i++) {
    if (a >= main_obj.lo[i] && a < main_obj.hi[i]) {
      *name = "";
      *name_len = 0;
      *offset = a - main_obj.base;
      return 0;
    }
  }
  find_obj fo = {.addr = a};
  dl_iterate_phdr(find_cb, &fo);
  if (!fo.found) return CORO_EINVAL;
  size_t n = strlen(fo.name);
  if (n == 0) {
    *name = "";
  } else {
    /* A shared object without a path (the vDSO) cannot be found again. */
    if (fo.name[0] != '/' || n >= cap) return CORO_EINVAL;
    memcpy(buf, fo.name, n + 1);
    *name = buf;
  }
  *name_len = n;
  *offset = a - fo.base;
  return 0;
}

/* In the worker: the function at offset in the object called name, loading
 * the object if the worker does not have it yet (the parent dlopen'ed it). */
static coro_proc_fn fn_decode(const char *name, uint64_t offset) {
  find_obj fo = {.name = name};
  dl_iterate_phdr(find_cb, &fo);
  if (!fo.found && name[0] != '\0') {
    if (dlopen(name, RTLD_NOW | RTLD_LOCAL) == NULL) return NULL;
    fo = (find_obj){.name = name};
    dl_iterate_phdr(find_cb, &fo);
  }
  if (!fo.found) return NULL;
  /* Check that it is code of that object, not a stray offset. */
  find_obj chk = {.addr = fo.base + (uintptr_t)offset};
  dl_iterate_phdr(find_cb, &chk);
  if (!chk.found || chk.base != fo.base) return NULL;
  coro_proc_fn fn;
  uintptr_t a = fo.base + (uintptr_t)offset;
  memcpy(&fn, &a, sizeof(fn));
  return fn;
}

/* ---- the worker ------------------------------------------------------------ */

/* Buffered reads: a small job arrives with one recv. */
static char rbuf[65536];
static size_t rhave, roff;

/* Read exactly n bytes; 0, or -1 at end of file or on an error. */
static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    if (roff < rhave) {
      size_t k = rhave - roff < n ? rhave - roff : n;
      memcpy(p, rbuf + roff, k);
      roff += k;
      p += k;
      n -= k;
      continue;
    }
    /* Large payloads go straight to their buffer. */
    int direct = n >= sizeof(rbuf);
    ssize_t r = recv(fd, direct ? p : rbuf, direct ? n : sizeof(rbuf), 0);
    if (r > 0) {
      if (direct) {
        p += r;
        n -= (size_t)r;
      } else {
        rhave = (size_t)r;
        roff = 0;
      }
    } else if (r == 0 || errno != EINTR) {
      return -1;
    }
  }
  return 0;
}

static int send_all(int fd, const void *a, size_t alen, const void *b,
                    size_t blen) {
  struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
  struct msghdr mh = {.msg_iov = iov, .msg_iovlen = blen > 0 ? 2 : 1};
  while (mh.msg_iovlen > 0) {
    ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    size_t done = (size_t)r;
    while (mh.msg_iovlen > 0 && done >= mh.msg_iov[0].iov_len) {
      done -= mh.msg_iov[0].iov_len;
      mh.msg_iov++;
      mh.msg_iovlen--;
    }
    if (mh.msg_iovlen > 0) {
      mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + done;
      mh.msg_iov[0].iov_len -= done;
    }
  }
  return 0;
}

/* Exit codes of a worker that gives up (the parent reports them as
 * CORO_EWORKER_EXIT(code) if a job was on it). */
enum { EXIT_PROTOCOL = 125 };

static void worker_main(int fd) {
  /* A crash must end the process with its signal, so the parent can say
   * how it died: drop handlers that constructors (or a sanitizer runtime)
   * installed for the fatal signals. */
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
                              SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    signal(fatal[i], SIG_DFL);

  coro__proc_hdr hello = {CORO__PROC_HELLO, (int32_t)getpid(), 0, 0};
  if (send_all(fd, &hello, sizeof(hello), NULL, 0) != 0) _exit(0);

  static char empty[1];
  char name[4096];
  for (;;) {
    coro__proc_req req;
    if (read_full(fd, &req, sizeof(req)) != 0) _exit(0); /* pool closed us */
    if (req.type != CORO__PROC_JOB || req.name_len >= sizeof(name))
      _exit(EXIT_PROTOCOL);
    if (read_full(fd, name, req.name_len) != 0) _exit(0);
    name[req.name_len] = '\0';
    char *in = empty;
    if (req.in_len > 0) {
      if (req.in_len > SIZE_MAX || (in = malloc((size_t)req.in_len)) == NULL)
        _exit(EXIT_PROTOCOL);
      if (read_full(fd, in, (size_t)req.in_len) != 0) _exit(0);
    }
    /* Most jobs call the function the previous one called. */
    static char last_name[sizeof(name)];
    static uint64_t last_offset;
    static coro_proc_fn last_fn;
    coro_proc_fn fn;
    if (last_fn != NULL && req.offset == last_offset &&
        strcmp(name, last_name) == 0) {
      fn = last_fn;
    } else if ((fn = fn_decode(name, req.offset)) != NULL) {
      memcpy(last_name, name, req.name_len + 1);
      last_offset = req.offset;
      last_fn = fn;
    }
    void *out = NULL;
    size_t out_len = 0;
    int st = -ENOENT; /* not found in this process */
    if (fn != NULL) st = fn(in, (size_t)req.in_len, &out, &out_len);
    if (in != empty) free(in);
    if (st > 0) st = CORO_EINVAL;
    if (st == 0 && out == NULL && out_len > 0) st = CORO_EINVAL;
    if (st != 0 || out == NULL) out_len = 0;
    fflush(stdout);
    coro__proc_hdr rep = {CORO__PROC_REPLY, st, req.id, out_len};
    int r = send_all(fd, &rep, sizeof(rep), out, out_len);
    free(out);
    if (r != 0) _exit(0);
  }
}

/* Runs before main() in every process of a program linked with libcoro;
 * does nothing unless this process is a worker. */
__attribute__((constructor)) static void proc_worker_ctor(void) {
  const char *v = getenv(CORO__PROC_ENV);
  if (v == NULL) return;
  int fd = -1;
  long ppid = 0;
  if (sscanf(v, "%d:%ld", &fd, &ppid) != 2 || fd != CORO__PROC_FD) return;
  /* Not inherited by whatever a job starts. */
  unsetenv(CORO__PROC_ENV);
  /* Die with the parent. The parent may have died before the prctl took
   * effect: then we were already given to another process. */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)ppid)
    _exit(0);
  worker_main(fd);
  _exit(0);
}

