/* SPDX-License-Identifier: MIT */
/* libcoro chan: see docs/api/chan.md. Include <coro.h>, not this file. */
#ifndef CORO_CHAN_H_
#define CORO_CHAN_H_

#include "coro/core.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* CORO_CHAN_H_ */
