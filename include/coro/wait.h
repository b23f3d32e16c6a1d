/* SPDX-License-Identifier: MIT */
/* Waiting for many: gather, wait, wait_for, as_completed, timeout scopes,
 * shield, task groups, and reports of failures nobody looked at.
 * Include <coro.h>, not this file. Reference: docs/api/wait.md.
 *
 * Which one to use: a task group (coro_group_*) when the tasks belong
 * together (the first failure cancels the rest, every error is reported,
 * nothing outlives the group); coro_gather for asyncio's gather semantics
 * (a failure is returned at once but the other tasks keep running);
 * coro_wait to look at whatever is done by some time, cancelling nothing. */
#ifndef CORO_WAIT_H_
#define CORO_WAIT_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- gather ------------------------------------------------------------- */

/* Like asyncio.gather. Suspends until every future in fs[0..n) is done,
 * with two modes:
 *  - statuses == NULL: returns the first failure at once (an error, or
 *    -ECANCELED for a future that ended cancelled); the others keep running
 *    and are not cancelled. On 0, results[i] (if results != NULL) gets each
 *    value; on failure results is not written.
 *  - statuses != NULL: waits for all, fills statuses[i] with each status
 *    (0 or < 0) and results[i] with each value (NULL unless it succeeded),
 *    and returns 0.
 * If the caller is cancelled, every future still pending is cancelled and
 * the call returns -ECANCELED once (NULL mode) one of them has failed or
 * ended cancelled, or all have finished, or (statuses mode) all have
 * finished; cancellation wins over any child outcome. Nothing is written after the call has returned. A future listed
 * twice is simply read twice.
 * n == 0 returns 0 at once. Errors: -EINVAL (fs NULL with n > 0, an entry
 * NULL), -EPERM (outside a task, a future of another loop), -ENOMEM. */
CORO_EXTERN int coro_gather(coro_future *const *fs, size_t n, void **results,
                            int *statuses);

/* ---- wait ----------------------------------------------------------------- */

enum { CORO_ALL_COMPLETED, CORO_FIRST_COMPLETED, CORO_FIRST_EXCEPTION };

/* Like asyncio.wait. Suspends until the condition holds or timeout_ms
 * passes (CORO_FOREVER: no limit; 0: check after one trip around the loop),
 * then returns how many entries of fs are done (>= 0); inspect each with
 * coro_future_status. A timeout cancels nothing. FIRST_EXCEPTION returns when
 * some future has failed with an error other than -ECANCELED, and otherwise
 * behaves like ALL_COMPLETED. Futures already done count at once (the call
 * still makes one trip around the loop). A future listed twice counts as two
 * entries. If the caller is cancelled it returns -ECANCELED and cancels none
 * of fs. Errors: -EINVAL (n == 0 as asyncio refuses an empty set, an entry
 * NULL, a bad return_when, timeout_ms < -1), -EPERM, -ENOMEM. */
CORO_EXTERN int coro_wait(coro_future *const *fs, size_t n, int return_when,
                          int64_t timeout_ms);

/* Like asyncio.wait_for (3.12). Awaits f for at most timeout_ms. On timeout
 * f is cancelled and the call waits until f has really finished (its cleanup
 * may suspend); it returns -ETIMEDOUT if f ended cancelled, else f's own
 * outcome (a task that handled the cancellation and returned a value gives
 * that value). timeout_ms 0: f's outcome if it is done, else as on timeout.
 * CORO_FOREVER: a plain coro_await. Cancelling the caller cancels f too, and
 * the caller's cancellation is never lost, even when f finishes in the same
 * iteration: the call then returns -ECANCELED. *result as coro_await.
 * Errors: -EINVAL, -EPERM, -EDEADLK (f is the current task). */
CORO_EXTERN int coro_wait_for(coro_future *f, int64_t timeout_ms, void **result);

/* ---- as_completed ------------------------------------------------------- */

/* Iterate over futures in the order they finish (asyncio.as_completed).
 * timeout_ms (CORO_FOREVER: none) counts from coro_as_completed_new; it
 * cancels nothing. The iterator belongs to the task that made it. */
typedef struct coro_as_completed coro_as_completed;
CORO_EXTERN int coro_as_completed_new(coro_as_completed **out,
                                      coro_future *const *fs, size_t n,
                                      int64_t timeout_ms);
/* Suspends until the next future is done; *done gets it (borrowed: one of
 * the caller's fs). Returns 0, CORO_EOF once every future was returned,
 * -ETIMEDOUT once the timeout has passed (for every later call too, after
 * those already done were returned), -ECANCELED, -EPERM, -EINVAL. */
CORO_EXTERN int coro_as_completed_next(coro_as_completed *it,
                                       coro_future **done);
CORO_EXTERN void coro_as_completed_free(coro_as_completed *it);

/* ---- timeout scopes --------------------------------------------------- */

/* The loop's clock in milliseconds (monotonic), for absolute deadlines. */
CORO_EXTERN int64_t coro_now_ms(void);

/* A deadline for a block of the current task (asyncio.timeout, a trio
 * cancel scope). The struct is storage the caller provides (typically a
 * local variable); its contents are private, it needs no initialisation
 * (but before its first enter, pass it to nothing else), and it must stay
 * at the same address from enter to exit:
 *
 *   coro_timeout t;
 *   coro_timeout_enter(&t, 100);
 *   int r = do_work();                 // any suspending calls
 *   r = coro_timeout_exit(&t, r);      // -ETIMEDOUT if t fired
 *
 * When the deadline passes the task is cancelled (its current or next
 * suspension returns -ECANCELED). coro_timeout_exit(t, status) ends the
 * scope and returns status, except that it returns -ETIMEDOUT when this
 * scope fired, status is -ECANCELED and no other cancellation is pending
 * (asyncio 3.12: with nested scopes of the same deadline only the
 * outermost reports -ETIMEDOUT; a cancellation from elsewhere stays
 * -ECANCELED). A deadline already past fires on the next iteration.
 * Errors of all: -EPERM (outside a task, or not the task that entered),
 * -EINVAL (NULL, timeout < -1, enter on an entered scope, reschedule or
 * exit on a scope not entered). A task that ends without exiting a scope
 * has it exited for it. */
typedef struct coro_timeout {
  void *priv_[12];
} coro_timeout;
CORO_EXTERN int coro_timeout_enter(coro_timeout *t, int64_t timeout_ms);
CORO_EXTERN int coro_timeout_enter_at(coro_timeout *t, int64_t deadline_ms);
/* New absolute deadline (CORO_FOREVER: none); only before it fired. */
CORO_EXTERN int coro_timeout_reschedule(coro_timeout *t, int64_t deadline_ms);
CORO_EXTERN int64_t coro_timeout_when(const coro_timeout *t); /* CORO_FOREVER if none */
CORO_EXTERN int coro_timeout_expired(const coro_timeout *t);  /* 1 once it fired */
CORO_EXTERN int coro_timeout_exit(coro_timeout *t, int status);

/* ---- shield ------------------------------------------------------------- */

/* Like asyncio.shield: *out gets a new future that completes as f does.
 * Cancelling it (or a task awaiting it) cancels only it; f runs on. If f is
 * cancelled some other way, it ends cancelled too. If f is already done,
 * *out is f itself (a new reference). -EINVAL, -EPERM, -ENOMEM. */
CORO_EXTERN int coro_shield(coro_future **out, coro_future *f);
/* A shielded region of the current task: cancellation requests arriving
 * inside it (from coro_cancel, timeout scopes, groups) are counted but kept
 * until the region ends, then delivered at the next suspension. Regions
 * nest. -EPERM outside a task / end without begin. */
CORO_EXTERN int coro_shield_begin(void);
CORO_EXTERN int coro_shield_end(void);

/* ---- task groups -------------------------------------------------------- */

/* Structured concurrency (asyncio 3.13 TaskGroup, trio nursery). The task
 * that calls coro_group_new is the group's parent; the code between new and
 * wait is the body:
 *
 *   coro_group *g;
 *   coro_group_new(&g);
 *   coro_group_spawn(g, NULL, child, arg);   // the group owns the task
 *   int r = body_work();                     // 0, an error, -ECANCELED
 *   r = coro_group_wait(g, r);               // waits for every child
 *   coro_group_free(g);
 *
 * The first child that fails (an error other than -ECANCELED) makes the
 * group abort: every other child is cancelled and so is the parent, once,
 * at its current suspension (the body sees -ECANCELED). coro_group_wait
 * waits for all children, also those spawned meanwhile, and returns: the
 * first child or body error if there was any (errors beat cancellation;
 * coro_group_errors gives all of them); else -ECANCELED if the parent was
 * cancelled from outside the group (the children were cancelled); else 0.
 * The group's own cancellation of the parent is taken back (uncancel), so
 * the parent's cancelling() count is as before. */
typedef struct coro_group coro_group;
/* -EPERM outside a task, -EINVAL, -ENOMEM. */
CORO_EXTERN int coro_group_new(coro_group **out);
/* Spawn a child; *out (if not NULL) gets an extra reference. -EPIPE once the
 * group is aborting or finished; otherwise as coro_spawn_opts. */
CORO_EXTERN int coro_group_spawn(coro_group *g, coro_future **out, coro_fn fn,
                                 void *arg);
CORO_EXTERN int coro_group_spawn_opts(coro_group *g, coro_future **out,
                                      coro_fn fn, void *arg,
                                      const coro_task_opts *opts);
/* body_status: what the body ended with (0, its error, or -ECANCELED if it
 * was cancelled); a body error cancels the children and joins the errors.
 * Must be called by the parent, once. -EPERM (another task), -EINVAL
 * (called twice, NULL). */
CORO_EXTERN int coro_group_wait(coro_group *g, int body_status);
/* Copy up to cap of the errors seen (children's in the order they failed,
 * then the body's) to errs; returns how many there are in all. */
CORO_EXTERN size_t coro_group_errors(const coro_group *g, int *errs, size_t cap);
/* End the group early without an error (Python 3.13's TaskGroup.cancel):
 * cancels the children and the parent's body; coro_group_wait then returns
 * 0 unless a child failed or the parent was cancelled from outside.
 * -EINVAL, -EPIPE (finished). */
CORO_EXTERN int coro_group_cancel(coro_group *g);
/* Free the group. Children still running are cancelled and left to finish
 * on their own (the loop holds them); nothing leaks. NULL does nothing. */
CORO_EXTERN void coro_group_free(coro_group *g);

/* ---- failures nobody looked at ---------------------------------------- */

/* A task or promise that fails (an error other than -ECANCELED) and whose
 * status is never read (coro_await, coro_future_status, coro_gather, a
 * group, a done callback) is reported: a detached task at the end of the
 * iteration in which it finished; a future whose last reference is
 * released unread at that release's iteration end; one still unread when
 * coro_run ends, then. The default handler prints "libcoro: Task exception
 * was never retrieved: task 'NAME' failed: ENOENT (no such file or
 * directory)" to stderr ("Future exception ... promise failed" for a
 * promise).
 * cb(f, err, data) replaces it (f is borrowed, valid during the call); NULL
 * restores the default. Process-wide; set it before loops run. */
typedef void (*coro_unobserved_cb)(coro_future *f, int err, void *data);
CORO_EXTERN void coro_set_unobserved_handler(coro_unobserved_cb cb, void *data);

#ifdef __cplusplus
}
#endif
#endif /* CORO_WAIT_H_ */
