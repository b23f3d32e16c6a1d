/* SPDX-License-Identifier: MIT */
/* Stack overflow report: a SIGSEGV handler, on an alternate signal stack,
 * that names the task whose guard page was hit, then lets the fault kill
 * the process as it would have anyway. */
#ifndef CORO_SRC_DEBUG_OVERFLOW_H_
#define CORO_SRC_DEBUG_OVERFLOW_H_

#include "core/loop.h"

/* Called by coro_run on its thread at start and end. Installs nothing when
 * the environment has CORO_NO_SIGNAL_HANDLERS=1 or under AddressSanitizer
 * (which reports stack overflows itself). */
void coro__overflow_enter(coro_loop *loop);
void coro__overflow_leave(coro_loop *loop);

#endif /* CORO_SRC_DEBUG_OVERFLOW_H_ */
