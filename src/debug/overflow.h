/* SPDX-License-Identifier: MIT */
/* Stack overflow report: a SIGSEGV handler, on an alternate signal stack,
 * that names the task whose guard page was hit, then lets the fault kill
 * the process as it would have anyway. The functions core calls are
 * declared in core/hooks.h. */
#ifndef CORO_SRC_DEBUG_OVERFLOW_H_
#define CORO_SRC_DEBUG_OVERFLOW_H_

#include "core/hooks.h"
#include "core/loop.h"

#endif /* CORO_SRC_DEBUG_OVERFLOW_H_ */
