/* SPDX-License-Identifier: MIT */
/* Name resolution on libuv's thread pool.
 *
 * The request lives on the heap, not in the waiting task's frame: a lookup
 * that already runs on a pool thread cannot be stopped, so a cancelled
 * task detaches from its request and returns -ECANCELED at once; the
 * request's callback, when it comes, sees no task and frees the result and
 * the request. A lookup still queued is taken off the queue by uv_cancel
 * (its callback then comes with UV_EAI_CANCELED and frees the same way). */
#include <errno.h>
#include <string.h>
#include <uv.h>

#include "core/task.h"
#include "io/addr.h"

typedef struct dns_req {
  union {
    uv_req_t any;
    uv_getaddrinfo_t ai;
    uv_getnameinfo_t ni;
  } u;
  coro__task *task; /* NULL once the task stopped waiting */
  coro_loop *loop;  /* counts the request in uv_reqs once detached */
  int done;         /* the callback ran; status and res are set */
  int status;
  struct addrinfo *res;
} dns_req;

/* What the waiting task keeps on its stack: after a cancellation d may be
 * freed by the callback before the task runs again, so the task learns
 * that it detached from here, not from d. */
typedef struct dns_wait {
  dns_req *d;
  int detached;
} dns_wait;

/* The wait's cancel hook. */
static int dns_cancel(coro__task *t, void *arg) {
  dns_wait *w = arg;
  dns_req *d = w->d;
  if (d->done) return CORO__CANCEL_LATER; /* woken: the result is the task's */
  /* Queued: uv_cancel takes it off the pool's queue; running: it fails and
   * the lookup finishes on its thread. Either way the callback comes later
   * and frees everything. */
  (void)uv_cancel(&d->u.any);
  d->task = NULL;
  d->loop = t->fut.loop; /* the loop does not end before the callback */
  d->loop->uv_reqs++;
  w->detached = 1;
  return CORO__CANCEL_ABORT;
}

static void getaddrinfo_cb(uv_getaddrinfo_t *req, int status,
                           struct addrinfo *res) {
  dns_req *d = coro__container_of(req, dns_req, u.ai);
  if (d->task == NULL) {
    if (res != NULL) uv_freeaddrinfo(res);
    d->loop->uv_reqs--;
    coro__free(d);
    return;
  }
  d->done = 1;
  d->status = status;
  d->res = res;
  coro__task_wake(d->task, status);
}

int coro_getaddrinfo(struct addrinfo **res, const char *host,
                     const char *service, const struct addrinfo *hints) {
  if (res == NULL) return CORO_EINVAL;
  *res = NULL;
  if (host == NULL && service == NULL) return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  dns_req *d = coro__calloc(1, sizeof(*d));
  if (d == NULL) return CORO_ENOMEM;
  d->task = t;
  int r = uv_getaddrinfo(t->fut.loop->uv, &d->u.ai, getaddrinfo_cb, host,
                         service, hints);
  if (r != 0) {
    coro__free(d);
    return r;
  }
  dns_wait w = {d, 0};
  r = coro__task_suspend(t, dns_cancel, &w, "dns");
  if (w.detached) return CORO_ECANCELED; /* the callback frees d */
  /* The callback ran. A cancellation that came after it is kept for the
   * next suspension, so r is the lookup's status here. */
  if (r == 0 && d->status == 0 && d->res != NULL) {
    *res = d->res;
  } else {
    if (d->res != NULL) uv_freeaddrinfo(d->res);
    if (r == 0) r = d->status != 0 ? d->status : UV_EAI_NONAME;
  }
  coro__free(d);
  return r;
}

void coro_freeaddrinfo(struct addrinfo *res) {
  if (res == NULL) return;
  if (res->ai_flags & CORO__AI_OWN)
    coro__free(res); /* coro__resolve's fast path: one block */
  else
    uv_freeaddrinfo(res);
}

static void getnameinfo_cb(uv_getnameinfo_t *req, int status,
                           const char *hostname, const char *service) {
  (void)hostname;
  (void)service;
  dns_req *d = coro__container_of(req, dns_req, u.ni);
  if (d->task == NULL) {
    d->loop->uv_reqs--;
    coro__free(d);
    return;
  }
  d->done = 1;
  d->status = status;
  coro__task_wake(d->task, status);
}

static int copy_out(char *dst, size_t cap, const char *src) {
  if (dst == NULL) return 0;
  size_t n = strlen(src);
  if (n >= cap) return UV_EAI_OVERFLOW;
  memcpy(dst, src, n + 1);
  return 0;
}

int coro_getnameinfo(const struct sockaddr *addr, int flags, char *host,
                     size_t hostlen, char *serv, size_t servlen) {
  if (!coro__sockaddr_is_ip(addr)) return CORO_EINVAL;
  if (host == NULL && serv == NULL) return CORO_EINVAL;
  if ((host != NULL && hostlen == 0) || (serv != NULL && servlen == 0))
    return CORO_EINVAL;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (host != NULL) host[0] = '\0';
  if (serv != NULL) serv[0] = '\0';
  /* libuv always asks for both parts: a part nobody wants is asked for in
   * numeric form, so that no reverse lookup is made for it. */
  if (host == NULL) flags |= NI_NUMERICHOST;
  if (serv == NULL) flags |= NI_NUMERICSERV;
  dns_req *d = coro__calloc(1, sizeof(*d));
  if (d == NULL) return CORO_ENOMEM;
  d->task = t;
  int r = uv_getnameinfo(t->fut.loop->uv, &d->u.ni, getnameinfo_cb, addr,
                         flags);
  if (r != 0) {
    coro__free(d);
    return r;
  }
  dns_wait w = {d, 0};
  r = coro__task_suspend(t, dns_cancel, &w, "dns");
  if (w.detached) return CORO_ECANCELED;
  if (r == 0) r = d->status;
  if (r == 0) r = copy_out(host, hostlen, d->u.ni.host);
  if (r == 0) r = copy_out(serv, servlen, d->u.ni.service);
  if (r != 0) {
    if (host != NULL) host[0] = '\0';
    if (serv != NULL) serv[0] = '\0';
  }
  coro__free(d);
  return r;
}
