/* SPDX-License-Identifier: MIT */
/* The fixed points where core calls the debug layer (src/debug/). They are
 * declared here, in core, and defined there, so that no core file includes
 * a header of a layer above it: the way libuv's uv-common.h declares what
 * its platform files define. Debug mode itself is a flag of the loop. */
#ifndef CORO_SRC_CORE_HOOKS_H_
#define CORO_SRC_CORE_HOOKS_H_

#include <stdint.h>

typedef struct coro_loop coro_loop;
typedef struct coro_future coro_future;

/* Stack-overflow report (debug/overflow.c). coro_run calls enter on its
 * thread before the first task and leave after the last. They install
 * nothing when the environment has CORO_NO_SIGNAL_HANDLERS=1 or under
 * AddressSanitizer (which reports stack overflows itself). */
void coro__overflow_enter(coro_loop *loop);
void coro__overflow_leave(coro_loop *loop);

/* Debug mode's watchdog (debug/watchdog.c). enter registers a loop in
 * debug mode with the watchdog thread (started on first use), leave takes
 * it out (before its memory goes). Around each step the loop publishes the
 * step in loop->wd_seq (see task.c); coro__slow_step_end runs after a step
 * the watchdog has seen running (one that lasted at least a sample
 * period) and reports it if it held the loop for slow_step_ms or longer. */
void coro__watchdog_enter(coro_loop *loop);
void coro__watchdog_leave(coro_loop *loop);
void coro__slow_step_end(coro_loop *loop, coro_future *f);
/* coro_config.dump_signal (served by the watchdog thread): ok says whether
 * a dump may be asked with sig (not one the runtime or the kernel needs:
 * SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGURG,
 * SIGCHLD, SIGPIPE); parse turns CORO_DUMP_SIGNAL's value ("QUIT",
 * "SIGQUIT", "3") into such a signal, or 0. */
int coro__dump_signal_ok(int sig);
int coro__dump_signal_parse(const char *s);

/* Task dumps (debug/dump.c): run on a suspended task t's own stack when a
 * dump switched to it (loop->probe_task == t): takes its backtrace and
 * switches back. */
typedef struct coro__task coro__task;
void coro__dump_probe(coro_loop *loop, coro__task *t);

#endif /* CORO_SRC_CORE_HOOKS_H_ */
