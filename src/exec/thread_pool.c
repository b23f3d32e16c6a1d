/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by the thread pool. */
#include "exec/inbox.h"

void coro__default_thread_pool_shutdown(coro_loop *loop) { (void)loop; }
