/* SPDX-License-Identifier: MIT */
/* Process pools: the parent's end of the wire (the protocol is described in
 * proc_pool.h). A job's request is written into the job's own allocation
 * at submission and sent as the worker's socket takes it; replies are
 * parsed as their bytes arrive, by whichever thread reads that socket (the
 * pool thread, or the loop that submitted the job), always under the
 * pool's lock. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "exec/proc_parent.h"

/* ---- requests --------------------------------------------------------------- */

size_t coro__proc_req_size(size_t path_len, size_t in_len) {
  return sizeof(coro__proc_req) + path_len + in_len;
}

void coro__proc_req_write(unsigned char *req, const char *path,
                          size_t path_len, uint64_t offset, const void *in,
                          size_t in_len) {
  coro__proc_req h = {CORO__PROC_JOB, (uint32_t)path_len, 0, offset, in_len};
  memcpy(req, &h, sizeof(h));
  memcpy(req + sizeof(h), path, path_len);
  if (in_len > 0) memcpy(req + sizeof(h) + path_len, in, in_len);
}

void coro__proc_req_set_id(unsigned char *req, uint64_t id) {
  memcpy(req + offsetof(coro__proc_req, id), &id, sizeof(id));
}

/* Under p->base.mu: send what fits of the running job's request. */
void coro__proc_write_more_locked(worker *w) {
  job *j = w->job;
  while (j->req_off < j->req_len) {
    ssize_t r = send(w->fd, j->req + j->req_off, j->req_len - j->req_off,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      j->req_off += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    /* The worker is gone (or going): its end of file says how. */
    j->req_off = j->req_len;
    coro__proc_kill_locked(w, 0);
    return;
  }
}

/* ---- replies ---------------------------------------------------------------- */

/* Under p->base.mu: a whole message arrived from w. */
void coro__proc_on_message_locked(proc_pool *p, worker *w) {
  if (w->hdr.type == CORO__PROC_HELLO) {
    w->state = w->killed ? W_DEAD : W_IDLE;
    p->start_failures = 0;
    return;
  }
  job *j = w->job;
  w->job = NULL;
  w->state = w->killed ? W_DEAD : W_IDLE;
  char *rx = w->rx;
  w->rx = NULL;
  if (j->orphan) {
    coro__free(rx);
    coro__proc_job_free(j);
    return;
  }
  j->base.result = rx;
  j->out_len = w->rx_len;
  coro__proc_finish_locked(p, j, w->hdr.status);
}

/* Under p->base.mu: the header is in; check it. 0, or a status to kill w
 * with. */
static int on_header_locked(worker *w) {
  coro__proc_hdr *h = &w->hdr;
  w->rx_len = w->rx_got = 0;
  if (h->type == CORO__PROC_HELLO)
    return w->state == W_STARTING && h->len == 0 ? 0 : (-EPROTO);
  if (h->type != CORO__PROC_REPLY || w->state != W_BUSY || w->job == NULL ||
      h->id != w->job->base.id || h->len > SIZE_MAX / 2 || h->status > 0)
    return (-EPROTO);
  if (h->len > 0) {
    w->rx = coro__malloc((size_t)h->len);
    if (w->rx == NULL) return CORO_ENOMEM;
  }
  w->rx_len = (size_t)h->len;
  return 0;
}

void coro__proc_consume_locked(proc_pool *p, worker *w, const char *buf,
                               size_t n) {
  while (n > 0 && !w->bad) {
    if (w->hdr_got < sizeof(w->hdr)) {
      size_t k = sizeof(w->hdr) - w->hdr_got;
      if (k > n) k = n;
      memcpy((char *)&w->hdr + w->hdr_got, buf, k);
      w->hdr_got += k;
      buf += k;
      n -= k;
      if (w->hdr_got < sizeof(w->hdr)) return;
      int e = on_header_locked(w);
      if (e != 0) {
        w->bad = 1;
        coro__proc_kill_locked(w, e);
        return;
      }
    } else {
      size_t k = w->rx_len - w->rx_got;
      if (k > n) k = n;
      memcpy(w->rx + w->rx_got, buf, k);
      w->rx_got += k;
      buf += k;
      n -= k;
    }
    if (w->rx_got == w->rx_len) {
      w->hdr_got = 0;
      coro__proc_on_message_locked(p, w);
    }
  }
}

