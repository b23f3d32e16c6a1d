/* SPDX-License-Identifier: MIT */
/* libcoro exec: see docs/api/exec.md. Include <coro.h>, not this file. */
#ifndef CORO_EXEC_H_
#define CORO_EXEC_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* CORO_EXEC_H_ */
