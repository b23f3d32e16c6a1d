/* SPDX-License-Identifier: MIT */
/* Shared test helpers: cmocka includes, a counting allocator that proves
 * nothing leaked, status assertions that print error names, and a runner
 * for code that may crash or hang by design (a forked child with a time
 * limit). */
#ifndef CORO_TESTS_HELPERS_H_
#define CORO_TESTS_HELPERS_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <coro.h>

/* Fixture: installs the counting allocator (once) and records the live
 * allocation count; the teardown checks that libcoro freed everything it
 * allocated and that no stack is still handed out. Use as
 * cmocka_unit_test_setup_teardown(test_x, coro_test_setup, coro_test_teardown). */
int coro_test_setup(void **state);
int coro_test_teardown(void **state);
long coro_test_live_allocs(void);
/* Make the n-th allocation from now fail (1 = the next one); 0 disables. */
void coro_test_fail_alloc_after(long n);

/* The same fixture, which also proves that no thread and no descriptor
 * outlived the test: setup counts /proc/self/task and /proc/self/fd,
 * teardown waits up to 5 s for detached threads to end, then fails the
 * test (naming what leaked) unless both counts are back. For tests of
 * thread pools and thread-safe calls. */
int coro_test_setup_os(void **state);
int coro_test_teardown_os(void **state);
/* Entries of a /proc directory (tasks, descriptors), -1 if unreadable. */
int coro_test_count_dir(const char *path);

/* Inside a task: spawn fn(arg) and return the handle (NULL, and a failed
 * CHECK, if the spawn failed); await f, release it and return its status;
 * yield n times, CHECKing each. */
coro_future *coro_test_spawn(coro_fn fn, void *arg);
int coro_test_join(coro_future *f);
void coro_test_yields(int n);

/* Run main(arg) with coro_run, return its status. */
int coro_test_run(coro_fn main, void *arg, void **result);

/* Milliseconds of a monotonic clock. */
int64_t coro_test_now_ms(void);

#define assert_coro_ok(expr) assert_coro_err((expr), 0)
#define assert_coro_err(expr, want)                                           \
  do {                                                                        \
    int got_ = (expr);                                                        \
    int want_ = (want);                                                       \
    if (got_ != want_)                                                        \
      fail_msg("%s: got %d (%s), want %d (%s)", #expr, got_,                  \
               coro_err_name(got_), want_, coro_err_name(want_));             \
  } while (0)

/* Inside a task, cmocka's assertions longjmp out of the coroutine stack,
 * which abandons the loop. Record failures instead and check them after
 * coro_run returns: CHECK() notes the first failing line. */
extern int coro_test_failed_line;
extern const char *coro_test_failed_expr;
#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond) && coro_test_failed_line == 0) {                              \
      coro_test_failed_line = __LINE__;                                       \
      coro_test_failed_expr = #cond;                                          \
    }                                                                         \
  } while (0)
#define CHECK_EQ(a, b) CHECK((long long)(a) == (long long)(b))
/* After coro_run: fail the test if any CHECK failed (and reset). */
#define assert_checks_passed()                                                \
  do {                                                                        \
    int l_ = coro_test_failed_line;                                           \
    const char *e_ = coro_test_failed_expr;                                   \
    coro_test_failed_line = 0;                                                \
    if (l_) fail_msg("CHECK failed at line %d: %s", l_, e_);                  \
  } while (0)

/* An order log for tests of who runs when: coro_test_note appends a
 * string, coro_test_log_reset empties it, coro_test_log reads it. */
void coro_test_note(const char *s);
void coro_test_log_reset(void);
const char *coro_test_log(void);

/* Run main_fn with coro_run, expect status 0 and no failed CHECK. */
#define assert_run_ok(main_fn)                                                \
  do {                                                                        \
    assert_coro_ok(coro_run((main_fn), NULL, NULL));                          \
    assert_checks_passed();                                                   \
  } while (0)

/* Fork; in the child call fn(arg) and _exit(0) if it returns. The parent
 * waits up to timeout_ms. Returns the wait status (as from waitpid), or -1
 * if the child had to be killed for running too long. Output of the child
 * goes to the test's stderr. */
int coro_test_in_child(void (*fn)(void *arg), void *arg, int timeout_ms);
/* The same, with the child's stderr captured into out (NUL-terminated,
 * at most cap - 1 bytes). */
int coro_test_in_child_stderr(void (*fn)(void *arg), void *arg, int timeout_ms,
                              char *out, size_t cap);

#endif /* CORO_TESTS_HELPERS_H_ */
