/* SPDX-License-Identifier: MIT */
/* The program test_debug's gdb test stops at a known point: two tasks
 * suspended in functions with known names (gdb_target_napper in a sleep,
 * gdb_target_locker on a lock), then the main task raises SIGTRAP. */
#include <coro.h>
#include <signal.h>

void *gdb_target_napper(void *arg) __attribute__((noinline));
void *gdb_target_napper(void *arg) {
  (void)arg;
  return coro_sleep(60000) == 0 ? NULL : coro_fail(CORO_ECANCELED);
}

void *gdb_target_locker(void *arg) __attribute__((noinline));
void *gdb_target_locker(void *arg) {
  if (coro_lock_acquire(arg) != 0) return coro_fail(CORO_ECANCELED);
  coro_lock_release(arg);
  return NULL;
}

static void *main_task(void *arg) {
  (void)arg;
  coro_lock *lock;
  coro_future *a, *b;
  coro_task_opts o = {0};
  if (coro_lock_new(&lock) != 0 || coro_lock_acquire(lock) != 0) return NULL;
  o.name = "napper";
  coro_spawn_opts(&a, gdb_target_napper, NULL, &o);
  o.name = "locker";
  coro_spawn_opts(&b, gdb_target_locker, lock, &o);
  coro_sleep(5);
  raise(SIGTRAP); /* gdb stops here */
  coro_cancel(a);
  coro_lock_release(lock);
  coro_await(a, NULL);
  coro_await(b, NULL);
  coro_future_release(a);
  coro_future_release(b);
  coro_lock_free(lock);
  return NULL;
}

int main(void) { return coro_run(main_task, NULL, NULL); }
