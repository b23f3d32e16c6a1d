/* SPDX-License-Identifier: MIT */
/* libcoro: stackful coroutines with asyncio-style tasks and futures on libuv.
 * This is the one header a program includes; it pulls in one header per
 * area. The reference is docs/api/. */
#ifndef CORO_H_
#define CORO_H_

#include "coro/errno.h"
#include "coro/version.h"
#include "coro/core.h"
#include "coro/wait.h"
#include "coro/sync.h"
#include "coro/chan.h"
#include "coro/exec.h"
#include "coro/io.h"

#endif /* CORO_H_ */
