/* SPDX-License-Identifier: MIT */
/* libcoro status codes: 0 is success, failures are negative errno values.
 *
 * The numbers are libuv's (on Unix, libuv's UV_E* are -errno), so a libuv
 * status passes through unchanged. Codes of libcoro's own start at -5001,
 * clear of errno, of libuv's EAI range (near -3000) and of UV_EOF (-4095). */
#ifndef CORO_ERRNO_H_
#define CORO_ERRNO_H_

#include <errno.h>

#define CORO_PENDING 1 /* coro_future_status(): not done yet */

#define CORO_EPERM     (-EPERM)     /* wrong thread/loop, or outside a task */
#define CORO_ENOMEM    (-ENOMEM)
#define CORO_EINVAL    (-EINVAL)
#define CORO_EBUSY     (-EBUSY)     /* a loop already runs on this thread */
#define CORO_EAGAIN    (-EAGAIN)
#define CORO_EPIPE     (-EPIPE)
#define CORO_EDEADLK   (-EDEADLK)   /* waiting on yourself / nothing can progress */
#define CORO_EALREADY  (-EALREADY)  /* the future is already done */
#define CORO_ECANCELED (-ECANCELED)
#define CORO_ETIMEDOUT (-ETIMEDOUT)
#define CORO_EOF       (-4095)      /* libuv's UV_EOF: nothing more to give */

/* libcoro's own codes: -5001 and below. */
#define CORO__ERR_BASE (-5000)
#define CORO_EABANDONED (-5001) /* task ignored cancellation at shutdown and was abandoned */

/* Process pools: the job's worker process died (or never started). The
 * worker codes take -5100 to -5455: CORO_EWORKER_SIGNAL(s) for a worker
 * killed by signal s (1..99), CORO_EWORKER_EXIT(c) for one that exited with
 * status c (0..255) before replying; the _OF macros give s or c back (0 and
 * -1 for other codes). coro_strerror says e.g. "worker process killed by
 * signal 11 (SIGSEGV)". */
#define CORO_EWORKER_START (-5100) /* a worker process could not be started */
#define CORO_EWORKER_SIGNAL(s) (-5100 - (s))
#define CORO_EWORKER_EXIT(c) (-5200 - (c))
#define CORO_WORKER_SIGNAL_OF(err) \
  ((err) <= -5101 && (err) >= -5199 ? -5100 - (err) : 0)
#define CORO_WORKER_EXIT_OF(err) \
  ((err) <= -5200 && (err) >= -5455 ? -5200 - (err) : -1)

#endif /* CORO_ERRNO_H_ */
