/* SPDX-License-Identifier: MIT */
/* The failure path of CORO__ASSERT and CORO__UNREACHABLE (coro-internal.h):
 * one line on stderr, then abort() so that a core dump or a debugger shows
 * the broken state. Uses only async-signal-safe calls. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coro-internal.h"

static void put(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    ssize_t w = write(STDERR_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

void coro__assert_fail(const char *expr, const char *file, int line,
                       const char *func) {
  char num[24];
  int i = (int)sizeof(num) - 1;
  unsigned v = line > 0 ? (unsigned)line : 0;
  num[i] = '\0';
  do {
    num[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  put("libcoro: assertion failed: ");
  put(expr);
  put(" (");
  put(file);
  put(":");
  put(num + i);
  put(", ");
  put(func);
  put(")\n");
  abort();
}
