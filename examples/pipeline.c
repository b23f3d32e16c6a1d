/* SPDX-License-Identifier: MIT */
/* pipeline: aiochan's fan-in / fan-out and parallel_pipe, in C.
 *
 *   producers (3 tasks) --fan-in--> numbers --> dispatcher --> process pool
 *        --> inflight (futures, in submission order, at most 8) --> collector
 *        --> results --fan-out--> consumers (2 tasks)
 *
 * Each stage closes its output channel when its input is closed and drained,
 * so the end of the data flows down the pipeline. The process-pool stage
 * counts primes below each number in worker processes, up to 8 jobs in
 * flight, and keeps the input order in its output, as parallel_pipe does.
 * The program checks that every number came out exactly once, in order.
 *
 * Usage: pipeline [items_per_producer]   (default 12) */
#include <coro.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 3
#define CONSUMERS 2
#define IN_FLIGHT 8

typedef struct item { uint32_t n, primes; } item;

static int per_producer = 12;
static coro_chan *numbers, *inflight, *results;
static int producers_left = PRODUCERS;
static uint64_t total_primes[CONSUMERS];
static int counted[CONSUMERS];
static uint32_t *order;          /* numbers in the order the dispatcher took them */
static int out_of_order;

/* Runs in a worker process: primes below n, by trial division. */
static int count_primes(const void *in, size_t in_len, void **out, size_t *out_len) {
  uint32_t n;
  if (in_len != sizeof(n)) return -EINVAL;
  memcpy(&n, in, sizeof(n));
  uint32_t k = 0;
  for (uint32_t i = 2; i < n; i++) {
    int prime = 1;
    for (uint32_t d = 2; d * d <= i && prime; d++) prime = i % d != 0;
    k += (uint32_t)prime;
  }
  item *it = malloc(sizeof(*it));
  if (it == NULL) return -ENOMEM;
  it->n = n;
  it->primes = k;
  *out = it;
  *out_len = sizeof(*it);
  return 0;
}

static void *producer(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < per_producer; i++) {
    uint32_t n = 10000u + 1000u * (uint32_t)(id + PRODUCERS * i);
    if (coro_chan_send(numbers, &n) != 0) break;
  }
  printf("producer %d: sent %d numbers\n", id, per_producer);
  if (--producers_left == 0) coro_chan_close(numbers); /* fan-in done */
  return NULL;
}

/* parallel_pipe, first half: submit each number, queue its future in order.
 * inflight's capacity bounds the jobs in flight. */
static void *dispatcher(void *arg) {
  (void)arg;
  uint32_t n;
  int st, jobs = 0;
  CORO_CHAN_FOREACH(st, numbers, &n) {
    coro_future *f;
    int r = coro_run_in_process(&f, NULL, count_primes, &n, sizeof(n));
    if (r != 0) {
      fprintf(stderr, "pipeline: cannot submit: %s\n", coro_strerror(r));
      break;
    }
    order[jobs++] = n;
    coro_chan_send(inflight, &f);
  }
  printf("dispatcher: %d jobs submitted to the process pool\n", jobs);
  coro_chan_close(inflight);
  return NULL;
}

/* parallel_pipe, second half: await the futures in submission order. */
static void *collector(void *arg) {
  (void)arg;
  coro_future *f;
  int st, seq = 0;
  CORO_CHAN_FOREACH(st, inflight, &f) {
    const void *data;
    size_t len;
    int r = coro_await(f, NULL);
    if (r == 0 && coro_future_bytes(f, &data, &len) == 0 && len == sizeof(item)) {
      item it;
      memcpy(&it, data, sizeof(it));
      out_of_order += it.n != order[seq]; /* parallel_pipe keeps the order */
      coro_chan_send(results, &it);
    } else {
      fprintf(stderr, "pipeline: job failed: %s\n", coro_strerror(r));
    }
    coro_future_release(f);
    seq++;
  }
  coro_chan_close(results);
  return NULL;
}

static void *consumer(void *arg) {
  int id = (int)(intptr_t)arg;
  item it;
  int st;
  CORO_CHAN_FOREACH(st, results, &it) {
    total_primes[id] += it.primes;
    if (counted[id]++ < 2)
      printf("consumer %d: %" PRIu32 " primes below %" PRIu32 "\n", id, it.primes, it.n);
  }
  return NULL;
}

static void *main_task(void *arg) {
  (void)arg;
  coro_chan_new(&numbers, sizeof(uint32_t), 0);
  coro_chan_new(&inflight, sizeof(coro_future *), IN_FLIGHT);
  coro_chan_new(&results, sizeof(item), 0);
  coro_future *tasks[PRODUCERS + 2 + CONSUMERS];
  int k = 0;
  for (int i = 0; i < PRODUCERS; i++)
    coro_spawn(&tasks[k++], producer, (void *)(intptr_t)i);
  coro_spawn(&tasks[k++], dispatcher, NULL);
  coro_spawn(&tasks[k++], collector, NULL);
  for (int i = 0; i < CONSUMERS; i++)
    coro_spawn(&tasks[k++], consumer, (void *)(intptr_t)i);
  int r = coro_gather(tasks, (size_t)k, NULL, NULL);
  for (int i = 0; i < k; i++) coro_future_release(tasks[i]);
  coro_chan_free(numbers);
  coro_chan_free(inflight);
  coro_chan_free(results);
  return r == 0 ? NULL : coro_fail(r);
}

int main(int argc, char **argv) {
  if (argc > 1) per_producer = atoi(argv[1]);
  if (per_producer < 1) per_producer = 1;
  order = calloc((size_t)(PRODUCERS * per_producer), sizeof(*order));
  if (order == NULL) return 1;
  int r = coro_run(main_task, NULL, NULL);
  if (r != 0) {
    fprintf(stderr, "pipeline: %s\n", coro_strerror(r));
    return 1;
  }
  int n = counted[0] + counted[1];
  uint64_t sum = total_primes[0] + total_primes[1], want = 0;
  for (int i = 0; i < PRODUCERS * per_producer; i++) {
    uint32_t m = 10000u + 1000u * (uint32_t)i, k = 0;
    for (uint32_t j = 2; j < m; j++) {
      int prime = 1;
      for (uint32_t d = 2; d * d <= j && prime; d++) prime = j % d != 0;
      k += (uint32_t)prime;
    }
    want += k;
  }
  int ok = n == PRODUCERS * per_producer && sum == want && out_of_order == 0;
  printf("%d results (consumer 0: %d, consumer 1: %d), %" PRIu64 " primes in all, "
         "pool order kept: %s\n", n, counted[0], counted[1], sum,
         out_of_order == 0 ? "yes" : "NO");
  printf("%s\n", ok ? "every number exactly once" : "MISMATCH");
  free(order);
  return ok ? 0 : 1;
}
