/* SPDX-License-Identifier: MIT */
/* Placeholder: filled in by its subsystem. */
#include "coro-internal.h"
