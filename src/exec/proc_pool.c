/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by the process pool. */
#include "exec/inbox.h"

void coro__default_proc_pool_shutdown(coro_loop *loop) { (void)loop; }
