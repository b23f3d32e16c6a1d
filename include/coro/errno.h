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

#endif /* CORO_ERRNO_H_ */
