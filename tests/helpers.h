/* SPDX-License-Identifier: MIT */
/* Shared test helpers: cmocka includes, a counting allocator that proves
 * nothing leaked, status assertions that print error names, and a runner
 * for code that may crash or hang by design (a forked child with a time
 * limit).
 *
 * ---- How a test file is laid out --------------------------------------------
 *
 * Every tests/test_<file>.c ends in a main() that lists its tests in one
 * table and hands it to coro_test_main:
 *
 *   int main(int argc, char **argv) {
 *     const struct CMUnitTest tests[] = {
 *   #define T(x) cmocka_unit_test_setup_teardown(x, coro_test_setup, coro_test_teardown)
 *       T(test_sleep_zero),
 *       cmocka_unit_test(test_other),
 *   #undef T
 *     };
 *     return coro_test_main(argc, argv, tests, NULL, NULL);
 *   }
 *
 * tests/CMakeLists.txt reads the table when it configures and registers
 * one ctest per entry, named <file>.<test> (sleep.test_sleep_zero). It
 * finds the entries by their text: each cmocka_unit_test*(name, ...) and
 * each ALIAS(name) for an alias defined on one line as
 * "#define ALIAS(x) cmocka_unit_test...". The test's name must be the
 * first thing after the parenthesis (a line break there is fine). Entries
 * inside #if / #ifdef in the table are registered as "may be absent": the
 * binary skips (ctest shows it as skipped) instead of failing when the
 * build left them out.
 *
 *   ./tests/test_sleep                  all tests of the file
 *   ./tests/test_sleep test_sleep_zero  one test (cmocka's pattern: * and ?)
 *   CORO_TEST_FILTER=test_sleep_* ./tests/test_sleep
 *   ./tests/test_sleep --list           the names, one per line
 *
 * A pattern that matches no test is an error (exit 2), so that a mistyped
 * name cannot pass. Each ctest has a 10 s limit unless tests/CMakeLists.txt
 * (CORO_TEST_LIMITS) gives it more, with the reason. */
#ifndef CORO_TESTS_HELPERS_H_
#define CORO_TESTS_HELPERS_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <cmocka.h>

#include <coro.h>

/* Run the tests of a file's table (see the top of this file): all of
 * them, or those whose name matches argv[1] (or $CORO_TEST_FILTER).
 * Options after the pattern: --if-present (exit 77, "skipped", when the
 * pattern matches nothing: for tests built only on some configurations).
 * group_setup and group_teardown are cmocka's group fixtures (or NULL). */
#define coro_test_main(argc, argv, tests, group_setup, group_teardown)       \
  coro_test_main_((argc), (argv), __FILE__, (tests),                          \
                  sizeof(tests) / sizeof((tests)[0]), (group_setup),          \
                  (group_teardown))
int coro_test_main_(int argc, char **argv, const char *file,
                    const struct CMUnitTest *tests, size_t count,
                    CMFixtureFunction group_setup,
                    CMFixtureFunction group_teardown);


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

/* Group setup (coro_test_main's group_setup) for tests that count
 * descriptors and threads: libuv opens process-wide descriptors (its
 * signal pipe) with the first loop and starts its thread pool with the
 * first lookup (of "localhost"), and keeps both; this makes both happen
 * before any test counts. Returns coro_run's status. */
int coro_test_warm_up_uv(void **state);

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
 * coro_run returns (assert_checks_passed). The first failure is kept,
 * with its file, line, expression and, for the comparisons, both values:
 *
 *   CHECK(cond)          cond is true
 *   CHECK_EQ(a, b)       integers (any integer types, compared exactly as
 *   CHECK_NE, CHECK_LT,  C's operator would; each evaluated once); the
 *   CHECK_LE, CHECK_GT,  message prints both values, with the error name
 *   CHECK_GE             of a negative one that is a known status code.
 *                        Pointers and floating point do not compile here.
 *   CHECK_ERR(expr, want) a status code: prints both names (ETIMEDOUT)
 *   CHECK_OK(expr)       CHECK_ERR(expr, 0)
 *   CHECK_PTR_EQ(a, b), CHECK_PTR_NE(a, b)  pointers
 *   CHECK_STREQ(a, b)    strings (NULL equals only NULL)
 *
 * CHECKs may run on any thread. coro_test_failed_line (0: no failure) and
 * coro_test_failed_expr stay readable for code that reports on its own. */
extern int coro_test_failed_line;
extern const char *coro_test_failed_expr;
void coro_test_check_failed(const char *file, int line, const char *expr);
void coro_test_check_failed_int(const char *file, int line, const char *expr,
                                const char *a_text, long long a,
                                const char *b_text, long long b,
                                int unsigned_bits);
void coro_test_check_failed_err(const char *file, int line, const char *expr,
                                int got, int want);
void coro_test_check_failed_ptr(const char *file, int line, const char *expr,
                                const void *a, const void *b);
void coro_test_check_failed_str(const char *file, int line, const char *expr,
                                const char *a, const char *b);
int coro_test_streq(const char *a, const char *b);
/* The first failure's message ("" if none), and forgetting it. */
const char *coro_test_check_message(void);
int coro_test_check_count(void);
void coro_test_check_reset(void);

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) coro_test_check_failed(__FILE__, __LINE__, #cond);           \
  } while (0)

/* Compile-time: both operands are integers (pointers do not multiply,
 * floating point is refused by the negative array size). */
#define CORO_TEST_INTS_(a, b)                                                 \
  ((void)sizeof(char[_Generic((a) * 1 + (b) * 1, float: -1, double: -1,       \
                              long double: -1, default: 1)]))
/* a_ op b_ on the values as long long, in the type C's usual arithmetic
 * conversions would pick for (a) op (b), so that signedness matches. */
#define CORO_TEST_CMP_(a, b, a_, op, b_)                                      \
  _Generic((a) * 1 + (b) * 1,                                                 \
      unsigned int: (unsigned int)(a_) op (unsigned int)(b_),                 \
      unsigned long: (unsigned long)(a_) op (unsigned long)(b_),              \
      unsigned long long: (unsigned long long)(a_) op (unsigned long long)(b_), \
      default: (a_) op (b_))
#define CORO_TEST_UNSIGNED_(a, b)                                             \
  _Generic((a) * 1 + (b) * 1, unsigned int: 32, unsigned long: 64,            \
           unsigned long long: 64, default: 0)
#define CORO_TEST_CHECK_CMP_(name, a, op, b)                                  \
  do {                                                                        \
    CORO_TEST_INTS_(a, b);                                                    \
    long long ca_ = (long long)(a);                                           \
    long long cb_ = (long long)(b);                                           \
    if (!CORO_TEST_CMP_(a, b, ca_, op, cb_))                                  \
      coro_test_check_failed_int(__FILE__, __LINE__,                          \
                                 name "(" #a ", " #b ")", #a, ca_, #b, cb_,   \
                                 CORO_TEST_UNSIGNED_(a, b));                  \
  } while (0)
#define CHECK_EQ(a, b) CORO_TEST_CHECK_CMP_("CHECK_EQ", a, ==, b)
#define CHECK_NE(a, b) CORO_TEST_CHECK_CMP_("CHECK_NE", a, !=, b)
#define CHECK_LT(a, b) CORO_TEST_CHECK_CMP_("CHECK_LT", a, <, b)
#define CHECK_LE(a, b) CORO_TEST_CHECK_CMP_("CHECK_LE", a, <=, b)
#define CHECK_GT(a, b) CORO_TEST_CHECK_CMP_("CHECK_GT", a, >, b)
#define CHECK_GE(a, b) CORO_TEST_CHECK_CMP_("CHECK_GE", a, >=, b)

#define CHECK_ERR(expr, want)                                                 \
  do {                                                                        \
    int cg_ = (expr);                                                         \
    int cw_ = (want);                                                         \
    if (cg_ != cw_)                                                           \
      coro_test_check_failed_err(__FILE__, __LINE__,                          \
                                 "CHECK_ERR(" #expr ", " #want ")", cg_, cw_); \
  } while (0)
#define CHECK_OK(expr)                                                        \
  do {                                                                        \
    int cg_ = (expr);                                                         \
    if (cg_ != 0)                                                             \
      coro_test_check_failed_err(__FILE__, __LINE__, "CHECK_OK(" #expr ")",  \
                                 cg_, 0);                                     \
  } while (0)
#define CORO_TEST_CHECK_PTR_(name, a, op, b)                                  \
  do {                                                                        \
    const void *cpa_ = (a);                                                   \
    const void *cpb_ = (b);                                                   \
    if (!(cpa_ op cpb_))                                                      \
      coro_test_check_failed_ptr(__FILE__, __LINE__, name "(" #a ", " #b ")", \
                                 cpa_, cpb_);                                 \
  } while (0)
#define CHECK_PTR_EQ(a, b) CORO_TEST_CHECK_PTR_("CHECK_PTR_EQ", a, ==, b)
#define CHECK_PTR_NE(a, b) CORO_TEST_CHECK_PTR_("CHECK_PTR_NE", a, !=, b)
#define CHECK_STREQ(a, b)                                                     \
  do {                                                                        \
    const char *csa_ = (a);                                                   \
    const char *csb_ = (b);                                                   \
    if (!coro_test_streq(csa_, csb_))                                         \
      coro_test_check_failed_str(__FILE__, __LINE__,                          \
                                 "CHECK_STREQ(" #a ", " #b ")", csa_, csb_);  \
  } while (0)

/* After coro_run: fail the test if any CHECK failed (and reset), e.g.
 * "CHECK failed at test_sleep.c:123: CHECK_EQ(r, 0): r = -110 (ETIMEDOUT),
 * 0 = 0". */
#define assert_checks_passed()                                                \
  do {                                                                        \
    if (coro_test_failed_line != 0) {                                         \
      char m_[1024];                                                          \
      int n_ = coro_test_check_count();                                       \
      snprintf(m_, sizeof(m_), "%s", coro_test_check_message());              \
      coro_test_check_reset();                                                \
      if (n_ > 1)                                                             \
        fail_msg("CHECK failed at %s (and %d more)", m_, n_ - 1);             \
      else                                                                    \
        fail_msg("CHECK failed at %s", m_);                                   \
    }                                                                         \
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

/* Occupy libuv's thread pool so that a request made meanwhile stays
 * queued. Inside a task: coro_test_uv_pool_block(n) queues n work items
 * (n at most CORO_TEST_UV_POOL_MAX; pass the pool's size, which the test
 * sets with UV_THREADPOOL_SIZE) on the current loop and returns once each
 * of them runs on its own thread and waits there: 0, or -1 if the
 * semaphores or uv_queue_work failed (or a block is already held).
 * coro_test_uv_pool_unblock lets them finish (any thread; no wait).
 * coro_test_uv_pool_done says how many of them completed on the loop.
 * coro_test_uv_pool_release unblocks, waits (sleeping in the task) until
 * all completed and frees the semaphores; after coro_run, when all have
 * completed, it only frees them. One block at a time per process. */
#define CORO_TEST_UV_POOL_MAX 16
int coro_test_uv_pool_block(int n);
void coro_test_uv_pool_unblock(void);
int coro_test_uv_pool_done(void);
void coro_test_uv_pool_release(void);

/* A peer written with Python's asyncio, in a child process.
 * coro_test_have_python: nonzero when python3 can import asyncio.
 * coro_test_python_start (inside a task): run `python3 -c script [arg]`
 * (arg may be NULL) with its stdout on a pipe that *out reads, with a
 * 30 s read timeout; returns the child's pid, or -1 (nothing left open).
 * coro_test_python_line: read one line of it into buf (NUL-terminated,
 * the newline removed, at most cap - 1 bytes read); returns what
 * coro_stream_read_line returned (the newline counted).
 * coro_test_python_wait: close out, wait for the child and return its
 * exit code (-1 if it did not exit normally). */
int coro_test_have_python(void);
int coro_test_python_start(const char *script, const char *arg,
                           coro_stream **out);
ssize_t coro_test_python_line(coro_stream *out, char *buf, size_t cap);
int coro_test_python_wait(int pid, coro_stream *out);

/* Fork; in the child call fn(arg) and _exit(0) if it returns. The parent
 * waits up to timeout_ms. Returns the wait status (as from waitpid), or -1
 * if the child had to be killed for running too long. Output of the child
 * goes to the test's stderr. */
int coro_test_in_child(void (*fn)(void *arg), void *arg, int timeout_ms);
/* The same, with the child's stderr captured into out (NUL-terminated,
 * at most cap - 1 bytes). */
int coro_test_in_child_stderr(void (*fn)(void *arg), void *arg, int timeout_ms,
                              char *out, size_t cap);

/* A child that must start threads (libuv's pool) under any sanitizer, or
 * that changes what the whole process may do, runs the test program
 * afresh: coro_test_exec_self(role, arg), in the forked child, sets
 * $CORO_TEST_CHILD / $CORO_TEST_CHILD_ARG and execs the test binary (never
 * returns; _exit(4) if exec fails). The test file's main() calls
 * coro_test_child_role(argc, argv, &arg) first: NULL in the ordinary run
 * (it also notes the binary's path: argv[0], since under Valgrind
 * /proc/self/exe is Valgrind's own program), else the role to run.
 * coro_test_child_run(fn, arg) runs fn with coro_run and returns the exit
 * status: 0 if it passed every CHECK, 1 otherwise (saying why). */
const char *coro_test_child_role(int argc, char **argv, const char **arg);
void coro_test_exec_self(const char *role, const char *arg);
int coro_test_child_run(coro_fn fn, void *arg);

/* Nonzero when the test runs under Valgrind (0 without its header). */
#if defined(__has_include)
# if __has_include(<valgrind/valgrind.h>)
#  include <valgrind/valgrind.h>
#  define UNDER_VALGRIND() RUNNING_ON_VALGRIND
# endif
#endif
#if !defined(UNDER_VALGRIND)
# define UNDER_VALGRIND() 0
#endif

#endif /* CORO_TESTS_HELPERS_H_ */
