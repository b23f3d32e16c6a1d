/* SPDX-License-Identifier: MIT */
/* Error names and messages, and the version. libuv's UV_ERRNO_MAP gives
 * the errno-range codes; libcoro's own codes (-5001 and below) follow. */
#include <uv.h>

#include "coro-internal.h"
#include "ctx/ctx.h"
#include "exec/proc_pool.h"

/* The numbers are libuv's: a libuv status passes through unchanged. */
CORO__STATIC_ASSERT(CORO_ECANCELED == UV_ECANCELED, "ECANCELED");
CORO__STATIC_ASSERT(CORO_ETIMEDOUT == UV_ETIMEDOUT, "ETIMEDOUT");
CORO__STATIC_ASSERT(CORO_EPIPE == UV_EPIPE, "EPIPE");
CORO__STATIC_ASSERT(CORO_EINVAL == UV_EINVAL, "EINVAL");
CORO__STATIC_ASSERT(CORO_ENOMEM == UV_ENOMEM, "ENOMEM");
CORO__STATIC_ASSERT(CORO_EBUSY == UV_EBUSY, "EBUSY");
CORO__STATIC_ASSERT(CORO_EPERM == UV_EPERM, "EPERM");
CORO__STATIC_ASSERT(CORO_EALREADY == UV_EALREADY, "EALREADY");
CORO__STATIC_ASSERT(CORO_EAGAIN == UV_EAGAIN, "EAGAIN");
CORO__STATIC_ASSERT(CORO__ERR_BASE < UV_EOF, "own codes clear of libuv");

const char *coro_err_name(int err) {
  switch (err) {
  case 0: return "OK";
  case CORO_PENDING: return "PENDING";
  case CORO_EDEADLK: return "EDEADLK";
  case CORO_EABANDONED: return "EABANDONED";
#define XX(code, _) case UV_##code: return #code;
  UV_ERRNO_MAP(XX)
#undef XX
  default: {
    const char *w = coro__worker_err_name(err);
    return w != NULL ? w : "UNKNOWN";
  }
  }
}

const char *coro_strerror(int err) {
  switch (err) {
  case 0: return "success";
  case CORO_PENDING: return "operation pending";
  case CORO_EDEADLK: return "resource deadlock avoided";
  case CORO_EABANDONED: return "task ignored cancellation and was abandoned";
#define XX(code, msg) case UV_##code: return msg;
  UV_ERRNO_MAP(XX)
#undef XX
  default: {
    const char *w = coro__worker_strerror(err);
    return w != NULL ? w : "Unknown error";
  }
  }
}

unsigned int coro_version(void) { return CORO_VERSION_HEX; }

const char *coro_version_string(void) { return CORO_VERSION_STRING; }

const char *coro_ctx_method(void) { return coro__ctx_method(); }
