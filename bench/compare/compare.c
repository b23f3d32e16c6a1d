/* SPDX-License-Identifier: MIT */
/* compare: the articles' workloads run by each concurrency strategy in C.
 *
 * Usage: compare WORKLOAD STRATEGY [RUNS [BATCH [SCALE]]]
 *        compare list
 *        compare serve [PORT [DELAY_MS]]   (the io_bound server, see below)
 * Prints one line per run:
 *   compare: WORKLOAD STRATEGY seconds=0.9012 check=1700 workers=2 jobs=2
 * (check: a sum of the jobs' results, the same for every strategy and for
 * the Python programs, so a wrong answer is caught.) Exit status 0, or 2
 * for bad arguments, 3 when a strategy is not available (e.g. a pool that
 * returns ENOSYS), 1 when a run failed.
 *
 * Workloads (the seeds' numbers):
 *   sleep        two sleeps of 800 and 900 ms
 *   blocking     ten sleeps of 100 ms
 *   fib-rec      recursive fib(33) and fib(34), two jobs
 *   fib-iter     iterative fib(n) modulo 2^64 for n = 10000..10999, 1000 jobs
 *   gcd          trial-division gcd of 100 seeded pairs in [100000, 900000]
 *   granularity  8000 small jobs cut into batches of BATCH (default 1)
 *   io_bound     40 downloads (4 pages x 10) from the HTTP/1.1 server named
 *                by COMPARE_HTTP=127.0.0.1:PORT (`compare serve`, which
 *                answers every request after 50 ms), by 10 workers; one
 *                connection per request. check= is the sum of the
 *                bodies' CRC-32s and bytes= their total length.
 * SCALE (default 1) repeats the job list SCALE times: C does the seeds' CPU
 * work in milliseconds, too short to measure a parallel speedup well, so
 * the speedup targets are checked on a scaled-up copy of the same work.
 * Strategies:
 *   sync         one after another on the calling thread
 *   threads      raw pthreads: one per job for sleeps; nproc threads taking
 *                jobs from a shared counter for CPU work
 *   processes    raw fork(): the same split, results back over a pipe
 *   coro         coroutines alone: a task per job, coro_gather (sleeps use
 *                coro_sleep; CPU jobs run one after another); io_bound: 10
 *                tasks on coro_tcp_connect / coro_stream_*, taking the
 *                downloads one at a time from a shared counter
 *   coro-threads a task pool: coro_run_in_thread per job + coro_gather
 *   coro-procs   coro_run_in_process per job (bytes in, bytes out) + gather
 *   coro-blocking  (blocking only) tasks that call nanosleep: the mistake
 *   coro-percall   (fib-rec only) every recursive call is a task, awaited
 *   coro-eager     (fib-rec only) the same with eager tasks (coro_spawn_eager:
 *                each runs inside its spawn; asyncio's eager_task_factory)
 * Pools and raw workers are created inside the timed region, as the
 * articles' Python programs create theirs. CPU work uses nproc workers;
 * sleeps use one worker per job; io_bound uses 10, each taking the next
 * download when it has finished one (threads and processes run blocking
 * sockets). */
#define _GNU_SOURCE
#include <coro.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { W_SLEEP, W_BLOCKING, W_FIBREC, W_FIBITER, W_GCD, W_GRAN, W_IO, W_COUNT };
static const char *const wl_names[W_COUNT] = {
    "sleep", "blocking", "fib-rec", "fib-iter", "gcd", "granularity", "io_bound"};

enum {
  S_SYNC, S_THREADS, S_PROCS, S_CORO, S_CORO_THREADS, S_CORO_PROCS,
  S_CORO_BLOCKING, S_CORO_PERCALL, S_CORO_EAGER, S_COUNT
};
static const char *const st_names[S_COUNT] = {
    "sync", "threads", "processes", "coro", "coro-threads", "coro-procs",
    "coro-blocking", "coro-percall", "coro-eager"};

/* One job, self-contained so that a worker process needs nothing else. */
typedef struct {
  uint32_t wl;
  uint32_t index;
  uint64_t a, b;
} jobin;

#define GRAN_JOBS 8000
#define GRAN_WORK 1000 /* inner iterations of one small job */

#define IO_PAGES 4
#define IO_REPEAT 10
#define IO_WORKERS 10
#define IO_BUF (128 * 1024) /* the largest page is 96 KiB */
#define IO_TIMEOUT_MS 10000 /* a server that stopped answering */
#define IO_FAIL UINT64_MAX  /* a download's result when it failed */

/* ---- the work --------------------------------------------------------------- */

static uint64_t fib_rec(unsigned n) {
  return n < 2 ? n : fib_rec(n - 1) + fib_rec(n - 2);
}

static uint64_t fib_iter(uint64_t n) { /* modulo 2^64 */
  uint64_t a = 0, b = 1;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t t = a + b;
    a = b;
    b = t;
  }
  return a;
}

/* Effective Python's gcd: count down from min(a, b) to a common divisor. */
static uint64_t gcd_slow(uint64_t a, uint64_t b) {
  uint64_t low = a < b ? a : b;
  for (uint64_t i = low; i > 0; i--)
    if (a % i == 0 && b % i == 0) return i;
  return 1;
}

/* One small job of the granularity experiment (a 32-bit LCG walk). */
static uint64_t small_job(uint64_t i) {
  uint32_t x = (uint32_t)i;
  uint64_t s = 0;
  for (int k = 0; k < GRAN_WORK; k++) {
    x = x * 1103515245u + 12345u;
    s += x >> 16;
  }
  return s;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- io_bound: one HTTP/1.1 GET per connection --------------------------------- */

/* CRC-32 (IEEE, as zlib.crc32), eight bytes a step ("slicing by 8": table
 * k gives the CRC of a byte followed by k zero bytes), so that checking a
 * body costs far less than receiving it. The tables are made once per
 * process, whichever worker gets there first. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[0][n] = c;
  }
  for (uint32_t n = 0; n < 256; n++)
    for (int k = 1; k < 8; k++)
      crc_table[k][n] = crc_table[0][crc_table[k - 1][n] & 0xFF] ^ (crc_table[k - 1][n] >> 8);
}
static uint32_t crc32_of(const unsigned char *p, size_t n) {
  pthread_once(&crc_once, crc_init);
  uint32_t c = 0xFFFFFFFFu;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24);
    uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                  (uint32_t)p[7] << 24;
    c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
        crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
        crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
        crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
  }
  for (; n > 0; n--) c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* The server, packed into a job's b so that a job is self-contained (a
 * process-pool worker runs no main()): IPv4 address << 16 | port. */
static uint64_t io_server;

static void io_complain(const char *what, int err) { /* err: a negative code */
  fprintf(stderr, "compare: io_bound: %s: %s\n", what, coro_strerror(err));
}

static int io_request(const jobin *j, char *buf, size_t cap) {
  struct in_addr a = {htonl((uint32_t)(j->b >> 16))};
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, host, sizeof(host));
  return snprintf(buf, cap,
                  "GET /page/%u HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: compare\r\n"
                  "Connection: close\r\n\r\n",
                  (unsigned)j->a, host, (unsigned)(j->b & 0xFFFF));
}

/* A whole response (the server closed after it): 200, a Content-Length
 * equal to the body's length. Returns length << 32 | CRC-32 of the body,
 * or IO_FAIL. */
static uint64_t io_parse(const char *buf, size_t n) {
  if (n < 12 || (memcmp(buf, "HTTP/1.1 200", 12) != 0 && memcmp(buf, "HTTP/1.0 200", 12) != 0)) {
    io_complain("not a 200 response", -EPROTO);
    return IO_FAIL;
  }
  const char *end = memmem(buf, n, "\r\n\r\n", 4);
  if (end == NULL) {
    io_complain("no end of the response head", -EPROTO);
    return IO_FAIL;
  }
  size_t head = (size_t)(end - buf) + 4, body = n - head;
  long long clen = -1;
  for (const char *p = buf; p < end;) {
    const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
    if (eol - p > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
      clen = strtoll(p + 15, NULL, 10);
    p = eol + 2;
  }
  if (clen < 0 || (size_t)clen != body) {
    io_complain("the body's length differs from Content-Length", -EPROTO);
    return IO_FAIL;
  }
  return (uint64_t)body << 32 | crc32_of((const unsigned char *)buf + head, body);
}

/* Blocking sockets: threads, processes, the pools' workers and sync. */
static uint64_t io_get_blocking(const jobin *j) {
  char *buf = malloc(IO_BUF);
  if (buf == NULL) return IO_FAIL;
  uint64_t res = IO_FAIL;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    io_complain("socket", -errno);
    free(buf);
    return IO_FAIL;
  }
  struct timeval tv = {IO_TIMEOUT_MS / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)(j->b & 0xFFFF)),
                           .sin_addr = {htonl((uint32_t)(j->b >> 16))}};
  int len = io_request(j, buf, IO_BUF);
  size_t got = 0;
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    io_complain("connect", -errno);
    goto out;
  }
  for (int off = 0; off < len;) {
    ssize_t w = send(fd, buf + off, (size_t)(len - off), MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      io_complain("send", -errno);
      goto out;
    }
    off += (int)w;
  }
  for (;;) {
    if (got == IO_BUF) {
      io_complain("response too long", -EMSGSIZE);
      goto out;
    }
    ssize_t r = recv(fd, buf + got, IO_BUF - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      io_complain("recv", -errno);
      goto out;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  res = io_parse(buf, got);
out:
  close(fd);
  free(buf);
  return res;
}

static uint64_t do_job(const jobin *j) {
  switch (j->wl) {
  case W_SLEEP:
  case W_BLOCKING:
    sleep_ms(j->a);
    return j->a;
  case W_FIBREC:
    return fib_rec((unsigned)j->a);
  case W_FIBITER:
    return fib_iter(j->a);
  case W_GCD:
    return gcd_slow(j->a, j->b);
  case W_GRAN: {
    uint64_t s = 0;
    for (uint64_t i = j->a; i < j->a + j->b; i++) s += small_job(i);
    return s;
  }
  case W_IO:
    return io_get_blocking(j);
  }
  return 0;
}

/* The seeded pairs: a 64-bit LCG (Knuth's MMIX constants), the same in
 * bench/compare/peers.py. */
static uint64_t lcg_state;
static uint64_t lcg_next(void) {
  lcg_state = lcg_state * 6364136223846793005u + 1442695040888963407u;
  return lcg_state >> 33;
}

static size_t make_jobs(int wl, uint64_t batch, jobin **out) {
  size_t n = 0;
  jobin *j = NULL;
  switch (wl) {
  case W_SLEEP:
    n = 2;
    j = calloc(n, sizeof(*j));
    j[0].a = 800;
    j[1].a = 900;
    break;
  case W_BLOCKING:
    n = 10;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) j[i].a = 100;
    break;
  case W_FIBREC:
    n = 2;
    j = calloc(n, sizeof(*j));
    j[0].a = 33;
    j[1].a = 34;
    break;
  case W_FIBITER:
    n = 1000;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) j[i].a = 10000 + i;
    break;
  case W_GCD:
    n = 100;
    j = calloc(n, sizeof(*j));
    lcg_state = 42;
    for (size_t i = 0; i < n; i++) {
      j[i].a = 100000 + lcg_next() % 800001;
      j[i].b = 100000 + lcg_next() % 800001;
    }
    break;
  case W_GRAN:
    if (batch == 0) batch = 1;
    n = (GRAN_JOBS + batch - 1) / batch;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) {
      j[i].a = i * batch;
      j[i].b = (i + 1) * batch <= GRAN_JOBS ? batch : GRAN_JOBS - i * batch;
    }
    break;
  case W_IO: /* the 4 pages, 10 times over */
    n = IO_PAGES * IO_REPEAT;
    j = calloc(n, sizeof(*j));
    for (size_t i = 0; i < n; i++) {
      j[i].a = i % IO_PAGES;
      j[i].b = io_server;
    }
    break;
  }
  for (size_t i = 0; i < n; i++) {
    j[i].wl = (uint32_t)wl;
    j[i].index = (uint32_t)i;
  }
  *out = j;
  return n;
}

/* ---- shared state of one run ---------------------------------------------------- */

static jobin *jobs;
static size_t njobs;
static uint64_t *results;
static unsigned nworkers;
static atomic_size_t next_job;

/* ---- raw pthreads ------------------------------------------------------------------ */

static void *thread_worker(void *arg) {
  (void)arg;
  for (;;) {
    size_t i = atomic_fetch_add(&next_job, 1);
    if (i >= njobs) return NULL;
    results[i] = do_job(&jobs[i]);
  }
}

static int run_threads(void) {
  pthread_t *t = calloc(nworkers, sizeof(*t));
  if (t == NULL) return -ENOMEM;
  atomic_store(&next_job, 0);
  unsigned started = 0;
  int r = 0;
  for (; started < nworkers; started++)
    if ((r = pthread_create(&t[started], NULL, thread_worker, NULL)) != 0) break;
  for (unsigned i = 0; i < started; i++) pthread_join(t[i], NULL);
  free(t);
  return r == 0 ? 0 : -r;
}

/* ---- raw fork(): the counter in shared memory, results over one pipe --------------- */

typedef struct {
  uint64_t index;
  uint64_t value;
} record; /* 16 bytes: below PIPE_BUF, so writes from several children never mix */

static int run_processes(void) {
  atomic_size_t *counter = mmap(NULL, sizeof(*counter), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (counter == MAP_FAILED) return -errno;
  atomic_init(counter, 0);
  int fd[2];
  if (pipe(fd) != 0) {
    munmap(counter, sizeof(*counter));
    return -errno;
  }
  pid_t *pids = calloc(nworkers, sizeof(*pids));
  unsigned started = 0;
  for (; pids != NULL && started < nworkers; started++) {
    pid_t p = fork();
    if (p < 0) break;
    if (p == 0) {
      close(fd[0]);
      for (;;) {
        size_t i = atomic_fetch_add(counter, 1);
        if (i >= njobs) _exit(0);
        record rec = {i, do_job(&jobs[i])};
        if (write(fd[1], &rec, sizeof(rec)) != (ssize_t)sizeof(rec)) _exit(1);
      }
    }
    pids[started] = p;
  }
  close(fd[1]);
  size_t got = 0;
  record rec;
  while (got < njobs && read(fd[0], &rec, sizeof(rec)) == (ssize_t)sizeof(rec)) {
    if (rec.index < njobs) results[rec.index] = rec.value;
    got++;
  }
  close(fd[0]);
  int bad = 0;
  for (unsigned i = 0; i < started; i++) {
    int st;
    if (waitpid(pids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
      bad = 1;
  }
  free(pids);
  munmap(counter, sizeof(*counter));
  if (started == 0) return -EAGAIN;
  return got == njobs && !bad ? 0 : -EIO;
}

/* ---- coroutines --------------------------------------------------------------------- */

static int strategy; /* S_... of this run */

static void *coro_job(void *arg) {
  jobin *j = arg;
  if ((j->wl == W_SLEEP || j->wl == W_BLOCKING) && strategy == S_CORO) {
    int r = coro_sleep((int64_t)j->a); /* the right way */
    if (r != 0) return coro_fail(r);
    results[j->index] = j->a;
  } else {
    results[j->index] = do_job(j); /* CPU work, or a blocking sleep */
  }
  return NULL;
}

/* coro-percall: the asyncio article's `await fib(n - 1) + await fib(n - 2)`
 * made literal: each call is a task that the caller awaits before it makes
 * the next one (depth first, as Python runs the awaited coroutines; at most
 * n tasks are alive at once). */
static void *fib_task(void *arg) {
  uintptr_t n = (uintptr_t)arg;
  if (n < 2) return (void *)n;
  uintptr_t sum = 0;
  for (uintptr_t k = 1; k <= 2; k++) {
    coro_future *f;
    void *v = NULL;
    int r = strategy == S_CORO_EAGER
                ? coro_spawn_eager(&f, fib_task, (void *)(n - k))
                : coro_spawn(&f, fib_task, (void *)(n - k));
    if (r != 0) return coro_fail(r);
    r = coro_await(f, &v);
    coro_future_release(f);
    if (r != 0) return coro_fail(r);
    sum += (uintptr_t)v;
  }
  return (void *)sum;
}

/* io_bound, coroutines alone: IO_WORKERS tasks, each downloading the next
 * page until none is left (one thread; the counter needs no atomics). The
 * build defines COMPARE_HAVE_STREAMS when the library has the streams. */
#ifndef COMPARE_HAVE_STREAMS
#define COMPARE_HAVE_STREAMS 0
#endif
#if COMPARE_HAVE_STREAMS
static size_t io_next;

static uint64_t io_get_coro(const jobin *j, char *buf) {
  char port[8];
  struct in_addr a = {htonl((uint32_t)(j->b >> 16))};
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, host, sizeof(host));
  snprintf(port, sizeof(port), "%u", (unsigned)(j->b & 0xFFFF));
  coro_stream *s = NULL;
  int r = coro_tcp_connect(&s, host, port, IO_TIMEOUT_MS);
  if (r != 0) {
    io_complain("coro_tcp_connect", r);
    return IO_FAIL;
  }
  uint64_t res = IO_FAIL;
  size_t got = 0;
  int len = io_request(j, buf, IO_BUF);
  if ((r = coro_stream_set_timeouts(s, IO_TIMEOUT_MS, IO_TIMEOUT_MS)) != 0 ||
      (r = coro_stream_write(s, buf, (size_t)len)) != 0) {
    io_complain("coro_stream_write", r);
    goto out;
  }
  for (;;) {
    if (got == IO_BUF) {
      io_complain("response too long", -EMSGSIZE);
      goto out;
    }
    ssize_t n = coro_stream_read(s, buf + got, IO_BUF - got);
    if (n < 0) {
      io_complain("coro_stream_read", (int)n);
      goto out;
    }
    if (n == 0) break;
    got += (size_t)n;
  }
  res = io_parse(buf, got);
out:
  coro_stream_close(s);
  return res;
}

static void *io_worker(void *arg) {
  (void)arg;
  char *buf = malloc(IO_BUF);
  if (buf == NULL) return coro_fail(-ENOMEM);
  while (io_next < njobs) {
    size_t i = io_next++;
    results[i] = io_get_coro(&jobs[i], buf);
    if (results[i] == IO_FAIL) break;
  }
  free(buf);
  return NULL;
}
#endif

static void *thread_job(void *arg) {
  jobin *j = arg;
  results[j->index] = do_job(j);
  return NULL;
}

static int proc_job(const void *in, size_t in_len, void **out, size_t *out_len) {
  if (in_len != sizeof(jobin)) return -EINVAL;
  jobin j;
  memcpy(&j, in, sizeof(j));
  uint64_t *v = malloc(sizeof(*v));
  if (v == NULL) return -ENOMEM;
  *v = do_job(&j);
  *out = v;
  *out_len = sizeof(*v);
  return 0;
}

static void *coro_main(void *arg) {
  (void)arg;
  coro_future **fs = calloc(njobs, sizeof(*fs));
  if (fs == NULL) return coro_fail(-ENOMEM);
  coro_pool *pool = NULL;
  int r = 0;
  size_t tasks = njobs; /* futures to make: one per job, or per worker */
  if (jobs[0].wl == W_IO && strategy == S_CORO) {
#if COMPARE_HAVE_STREAMS
    io_next = 0;
    tasks = nworkers;
#else
    free(fs);
    return coro_fail(-ENOSYS); /* the library has no streams yet */
#endif
  }
  if (strategy == S_CORO_THREADS) r = coro_thread_pool_new(&pool, nworkers);
  if (strategy == S_CORO_PROCS) r = coro_process_pool_new(&pool, nworkers);
  size_t made = 0;
  for (; r == 0 && made < tasks; made++) {
    jobin *j = &jobs[made];
#if COMPARE_HAVE_STREAMS
    if (j->wl == W_IO && strategy == S_CORO) {
      r = coro_spawn(&fs[made], io_worker, NULL);
      if (r != 0) break;
      continue;
    }
#endif
    switch (strategy) {
    case S_CORO_THREADS:
      r = coro_run_in_thread(&fs[made], pool, thread_job, j);
      break;
    case S_CORO_PROCS:
      r = coro_run_in_process(&fs[made], pool, proc_job, j, sizeof(*j));
      break;
    case S_CORO_PERCALL:
    case S_CORO_EAGER:
      r = coro_spawn(&fs[made], fib_task, (void *)(uintptr_t)j->a);
      break;
    default:
      r = coro_spawn(&fs[made], coro_job, j);
    }
    if (r != 0) break;
  }
  if (made > 0) {
    int g = coro_gather(fs, made, NULL, NULL);
    if (r == 0) r = g;
  }
  for (size_t i = 0; r == 0 && i < made; i++) {
    if (strategy == S_CORO_PROCS) {
      const void *data;
      size_t len;
      r = coro_future_bytes(fs[i], &data, &len);
      if (r == 0 && len == sizeof(uint64_t)) memcpy(&results[i], data, len);
      else if (r == 0) r = -EIO;
    } else if (strategy == S_CORO_PERCALL || strategy == S_CORO_EAGER) {
      results[i] = (uint64_t)(uintptr_t)coro_future_value(fs[i]);
    }
  }
  for (size_t i = 0; i < made; i++) coro_future_release(fs[i]);
  free(fs);
  if (pool != NULL) {
    int s = coro_pool_shutdown(pool, 1);
    if (r == 0) r = s;
    coro_pool_free(pool);
  }
  return r != 0 ? coro_fail(r) : NULL;
}

/* ---- compare serve: the io_bound server, on libcoro ------------------------------
 * The stand-in for the internet: HTTP/1.1 on 127.0.0.1, every answer sent
 * 50 ms after its request arrived. A task per connection (coro_server_serve)
 * reads the request head, waits, writes the whole answer and closes
 * (Connection: close: one request per connection). Pages: GET /page/0..3,
 * bodies of 1, 8, 32 and 96 KiB of printable bytes from a 32-bit LCG seeded
 * by the page number; anything else gets a 404 or a 400, also after the
 * delay.
 *
 * The server must never be what the clients wait for, so the wait is
 * precise: a loop timer has millisecond steps (an answer would leave 0-2 ms
 * late), so each connection arms a timerfd at arrival + 50 ms and waits for
 * it with coro_wait_fd, which the kernel wakes within microseconds. Any
 * number of connections wait at once; the work per request is a few µs.
 * The server stands for machines elsewhere, whose CPUs the clients do not
 * share, so it raises its own priority (nice -15) when it may: on a busy
 * machine a woken server otherwise waits for a CPU (0.4 ms in the median,
 * 1.5 ms at the 90th percentile under a load of 5 on 2 CPUs, against
 * 0.15 / 0.5 ms with it).
 * Usage: compare serve [PORT [DELAY_MS]] — prints "listening PORT", serves
 * until killed or until the process that started it has ended. */
#if COMPARE_HAVE_STREAMS
static const size_t page_sizes[IO_PAGES] = {1024, 8192, 32768, 98304};
static char *answers[IO_PAGES + 2]; /* the pages, then a 404 and a 400 */
static size_t answer_len[IO_PAGES + 2];
static int64_t serve_delay_ms = 50;

static char *make_answer(const char *status, const char *body, size_t n, size_t *len) {
  char head[160];
  int h = snprintf(head, sizeof(head),
                   "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   status, n);
  char *a = malloc((size_t)h + n);
  if (a == NULL) return NULL;
  memcpy(a, head, (size_t)h);
  memcpy(a + h, body, n);
  *len = (size_t)h + n;
  return a;
}

static int make_answers(void) {
  for (unsigned k = 0; k < IO_PAGES; k++) {
    char *body = malloc(page_sizes[k]);
    if (body == NULL) return -ENOMEM;
    uint32_t x = (k + 1) * 2654435761u; /* a 32-bit LCG, seeded by the page */
    for (size_t i = 0; i < page_sizes[k]; i++) {
      x = x * 1103515245u + 12345u;
      body[i] = (char)(32 + (x >> 16) % 95);
    }
    answers[k] = make_answer("200 OK", body, page_sizes[k], &answer_len[k]);
    free(body);
  }
  answers[IO_PAGES] = make_answer("404 Not Found", "not found\n", 10, &answer_len[IO_PAGES]);
  answers[IO_PAGES + 1] =
      make_answer("400 Bad Request", "bad request\n", 12, &answer_len[IO_PAGES + 1]);
  for (unsigned k = 0; k < IO_PAGES + 2; k++)
    if (answers[k] == NULL) return -ENOMEM;
  return 0;
}

/* Wait until CLOCK_MONOTONIC reaches *deadline, to the microsecond. */
static int wait_until(const struct timespec *deadline) {
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (tfd < 0) return coro_sleep(serve_delay_ms); /* no timerfd: the loop timer */
  struct itimerspec its = {.it_value = *deadline};
  int r = 0;
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) == 0) {
    r = coro_wait_fd(tfd, CORO_READABLE, IO_TIMEOUT_MS);
    if (r > 0) r = 0;
  } else {
    r = -errno;
  }
  close(tfd);
  return r;
}

static void serve_conn(coro_stream *conn, void *arg) {
  (void)arg;
  char head[2048];
  coro_stream_set_timeouts(conn, IO_TIMEOUT_MS, IO_TIMEOUT_MS);
  ssize_t n = coro_stream_read_until(conn, head, sizeof(head) - 1, "\r\n\r\n", 4);
  struct timespec at;
  clock_gettime(CLOCK_MONOTONIC, &at); /* the request has arrived */
  at.tv_sec += serve_delay_ms / 1000;
  at.tv_nsec += (long)(serve_delay_ms % 1000) * 1000000L;
  if (at.tv_nsec >= 1000000000L) {
    at.tv_sec++;
    at.tv_nsec -= 1000000000L;
  }
  if (n <= 0 || n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) return;
  head[n] = 0;
  unsigned which = IO_PAGES + 1; /* 400 */
  char path[64], proto[2];
  if (sscanf(head, "GET %63s HTTP/1.%1[01]", path, proto) == 2) {
    which = IO_PAGES; /* 404 */
    for (unsigned k = 0; k < IO_PAGES; k++) {
      char p[16];
      snprintf(p, sizeof(p), "/page/%u", k);
      if (strcmp(path, p) == 0) which = k;
    }
  }
  if (wait_until(&at) != 0) return;
  coro_stream_write(conn, answers[which], answer_len[which]);
}

static coro_server *serve_srv;
static pid_t serve_parent;

static void *serve_watch(void *arg) { /* end with the script that started us */
  (void)arg;
  while (getppid() == serve_parent)
    if (coro_sleep(500) != 0) return NULL;
  coro_server_close(serve_srv);
  serve_srv = NULL;
  return NULL;
}

static void *serve_main(void *arg) {
  const char *port = arg;
  coro_listen_opts opts = {.backlog = 512};
  int r = coro_tcp_listen(&serve_srv, "127.0.0.1", port, &opts);
  if (r != 0) return coro_fail(r);
  printf("listening %d\n", coro_server_port(serve_srv));
  fflush(stdout);
  serve_parent = getppid();
  coro_future *watch = NULL;
  r = coro_spawn(&watch, serve_watch, NULL);
  if (r == 0) r = coro_server_serve(serve_srv, serve_conn, NULL);
  if (watch != NULL) {
    coro_cancel(watch);
    coro_await(watch, NULL);
    coro_future_release(watch);
  }
  if (serve_srv != NULL) coro_server_close(serve_srv);
  return r != 0 ? coro_fail(r) : NULL;
}
#endif

static int serve(int argc, char **argv) {
#if COMPARE_HAVE_STREAMS
  const char *port = argc > 2 ? argv[2] : "0";
  if (argc > 3) serve_delay_ms = atol(argv[3]);
  if (serve_delay_ms < 0 || make_answers() != 0) return 2;
  /* the loop runs on this thread, and nice is per thread on Linux; without
   * the privilege to raise it the server runs as it is */
  if (setpriority(PRIO_PROCESS, 0, -15) != 0)
    fprintf(stderr, "compare serve: normal priority (%s)\n", strerror(errno));
  int r = coro_run(serve_main, (void *)port, NULL);
  if (r != 0) fprintf(stderr, "compare serve: %s\n", coro_strerror(r));
  for (unsigned k = 0; k < IO_PAGES + 2; k++) free(answers[k]);
  return r == 0 ? 0 : 1;
#else
  (void)argc;
  (void)argv;
  fprintf(stderr, "compare serve: this build of libcoro has no streams\n");
  return 3;
#endif
}

/* ---- driver ------------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int find(const char *s, const char *const *names, int n) {
  for (int i = 0; i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

/* COMPARE_HTTP=A.B.C.D:PORT, a loopback address (the server is local). */
static int io_server_from_env(void) {
  const char *e = getenv("COMPARE_HTTP");
  char host[INET_ADDRSTRLEN + 1];
  unsigned port = 0;
  struct in_addr a;
  const char *colon = e != NULL ? strrchr(e, ':') : NULL;
  if (colon == NULL || (size_t)(colon - e) >= sizeof(host) ||
      sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535) {
    fprintf(stderr, "compare: io_bound needs COMPARE_HTTP=127.0.0.1:PORT, the port of "
                    "`compare serve`\n");
    return -1;
  }
  memcpy(host, e, (size_t)(colon - e));
  host[colon - e] = 0;
  if (inet_pton(AF_INET, host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127) {
    fprintf(stderr, "compare: COMPARE_HTTP: %s is not a numeric loopback address\n", host);
    return -1;
  }
  io_server = (uint64_t)ntohl(a.s_addr) << 16 | port;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: compare WORKLOAD STRATEGY [RUNS [BATCH [SCALE]]] | compare list\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc, argv);
  if (argc == 2 && strcmp(argv[1], "list") == 0) {
    for (int w = 0; w < W_COUNT; w++) {
      printf("%s:", wl_names[w]);
      for (int s = 0; s < S_COUNT; s++) {
        if (s == S_CORO_BLOCKING && w != W_BLOCKING) continue;
        if ((s == S_CORO_PERCALL || s == S_CORO_EAGER) && w != W_FIBREC) continue;
        printf(" %s", st_names[s]);
      }
      printf("\n");
    }
    return 0;
  }
  if (argc < 3) return usage();
  int wl = find(argv[1], wl_names, W_COUNT);
  strategy = find(argv[2], st_names, S_COUNT);
  int runs = argc > 3 ? atoi(argv[3]) : 1;
  long batch = argc > 4 ? atol(argv[4]) : 1;
  long scale = argc > 5 ? atol(argv[5]) : 1;
  if (wl < 0 || strategy < 0 || runs < 1 || batch < 1 || scale < 1 || scale > 1000)
    return usage();
  if ((strategy == S_CORO_BLOCKING && wl != W_BLOCKING) ||
      ((strategy == S_CORO_PERCALL || strategy == S_CORO_EAGER) && wl != W_FIBREC))
    return usage();
  if (wl == W_IO && io_server_from_env() != 0) return 2;
  njobs = make_jobs(wl, (uint64_t)batch, &jobs);
  if (jobs == NULL) return 1;
  if (scale > 1) {
    jobin *big = calloc(njobs * (size_t)scale, sizeof(*big));
    if (big == NULL) return 1;
    for (size_t i = 0; i < njobs * (size_t)scale; i++) {
      big[i] = jobs[i % njobs];
      big[i].index = (uint32_t)i;
    }
    free(jobs);
    jobs = big;
    njobs *= (size_t)scale;
  }
  results = calloc(njobs, sizeof(*results));
  if (results == NULL) return 1;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  int io = wl == W_SLEEP || wl == W_BLOCKING;
  nworkers = io ? (unsigned)njobs : (unsigned)(ncpu > 0 ? ncpu : 1);
  if (wl == W_IO) nworkers = IO_WORKERS;
  for (int run = 0; run < runs; run++) {
    memset(results, 0, njobs * sizeof(*results));
    double t0 = now_s();
    int r = 0;
    switch (strategy) {
    case S_SYNC:
      for (size_t i = 0; i < njobs; i++) results[i] = do_job(&jobs[i]);
      break;
    case S_THREADS:
      r = run_threads();
      break;
    case S_PROCS:
      r = run_processes();
      break;
    default:
      r = coro_run(coro_main, NULL, NULL);
    }
    double secs = now_s() - t0;
    if (r == -ENOSYS) {
      printf("compare: %s %s unavailable (%s)\n", wl_names[wl], st_names[strategy],
             coro_err_name(r));
      return 3;
    }
    if (r != 0) {
      fprintf(stderr, "compare: %s %s failed: %s\n", wl_names[wl],
              st_names[strategy], coro_strerror(r));
      return 1;
    }
    uint64_t check = 0, bytes = 0;
    for (size_t i = 0; i < njobs; i++) check += results[i];
    if (wl == W_IO) { /* every download done and whole: sum the CRCs and the lengths */
      check = 0;
      for (size_t i = 0; i < njobs; i++) {
        if (results[i] == IO_FAIL || results[i] == 0) {
          fprintf(stderr, "compare: io_bound %s failed: download %zu %s\n",
                  st_names[strategy], i, results[i] == 0 ? "not done" : "failed");
          return 1;
        }
        check += results[i] & 0xFFFFFFFFu;
        bytes += results[i] >> 32;
      }
    }
    char extra[48] = "";
    if (wl == W_IO) snprintf(extra, sizeof(extra), " bytes=%llu", (unsigned long long)bytes);
    printf("compare: %s %s seconds=%.4f check=%llu workers=%u jobs=%zu batch=%ld "
           "scale=%ld%s\n",
           wl_names[wl], st_names[strategy], secs, (unsigned long long)check,
           strategy == S_SYNC || strategy == S_CORO || strategy == S_CORO_PERCALL ||
                   strategy == S_CORO_EAGER || strategy == S_CORO_BLOCKING
               ? 1u
               : nworkers,
           njobs, batch, scale, extra);
    fflush(stdout);
  }
  free(results);
  free(jobs);
  return 0;
}
