/* SPDX-License-Identifier: MIT */
/* Debug mode's slow-step report: a task step that holds the loop for
 * slow_step_ms or longer is reported in asyncio's words, once it has
 * ended; the watchdog (watchdog.c) times the steps and also reports one
 * while it still runs. The functions core calls are
 * declared in core/hooks.h. */
#ifndef CORO_SRC_DEBUG_SLOW_H_
#define CORO_SRC_DEBUG_SLOW_H_

#include "core/hooks.h"
#include "core/loop.h"

#endif /* CORO_SRC_DEBUG_SLOW_H_ */
