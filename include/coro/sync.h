/* SPDX-License-Identifier: MIT */
/* libcoro sync: see docs/api/sync.md. Include <coro.h>, not this file. */
#ifndef CORO_SYNC_H_
#define CORO_SYNC_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* CORO_SYNC_H_ */
