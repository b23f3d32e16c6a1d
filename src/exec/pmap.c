/* SPDX-License-Identifier: MIT */
/* Parallel map: count inputs, at most `limit` jobs in flight on a pool,
 * results delivered in input order or as they finish.
 *
 * Each input has a record with a waiter linked into its job's future. The
 * waiter's notify (run inside the future's completion, on the loop's
 * thread) stores the outcome, submits the next input and wakes the task
 * waiting in coro_pmap_next. In ordered mode an input is submitted only
 * while it lies within `limit` of the next one to deliver, so at most
 * `limit` results are ever buffered. */
#include <string.h>
#include <unistd.h>

#include "core/task.h"
#include "exec/pool.h"

enum { I_WAITING, I_FLIGHT, I_DONE, I_DELIVERED };

typedef struct pm_item {
  coro__waiter w;
  coro_pmap *m;
  coro_future *f;    /* while in flight; process mode: until delivered */
  void *value;
  int status;
  int state;         /* I_* */
} pm_item;

struct coro_pmap {
  coro_loop *loop;
  coro_pmap_opts o;
  coro_job_opts job;
  int has_job;
  int proc;             /* process mode */
  pm_item *items;
  size_t *fifo;         /* unordered: finished indices, in finishing order */
  size_t fifo_head, fifo_tail;
  size_t next_submit;   /* first input not submitted yet */
  size_t next_deliver;  /* ordered: next index to deliver */
  size_t in_flight, delivered;
  int cancelled;
  int filling;          /* fill() is running (notify may re-enter) */
  coro__task *waiter;   /* the task in coro_pmap_next */
  coro_future *held;    /* process mode: the future delivered last */
};

static void item_discard(coro_pmap *m, pm_item *it) {
  if (it->f != NULL) { /* process mode: the bytes live in the future */
    coro_future_release(it->f);
    it->f = NULL;
  } else if (it->value != NULL && m->has_job && m->job.discard != NULL) {
    m->job.discard(it->value, m->job.discard_data);
  }
  it->value = NULL;
}

static int deliverable(coro_pmap *m) {
  if (m->o.ordered)
    return m->next_deliver < m->o.count &&
           m->items[m->next_deliver].state == I_DONE;
  return m->fifo_head != m->fifo_tail;
}

static void item_finished(coro_pmap *m, pm_item *it) {
  it->state = I_DONE;
  if (!m->o.ordered) m->fifo[m->fifo_tail++] = (size_t)(it - m->items);
  if (m->waiter != NULL && (deliverable(m) || m->cancelled)) {
    coro__task *t = m->waiter;
    m->waiter = NULL;
    coro__task_wake(t, 0);
  }
}

static void fill(coro_pmap *m);

static void item_notify(coro__waiter *w, coro_future *f) {
  pm_item *it = coro__container_of(w, pm_item, w);
  coro_pmap *m = it->m;
  coro__future_observed(f);
  it->status = f->status;
  m->in_flight--;
  if (m->proc && f->status == 0) {
    const void *data = NULL;
    size_t len = 0;
    coro_future_bytes(f, &data, &len);
    it->value = (void *)data;
    /* Keep the future: it owns the bytes. */
  } else {
    it->value = f->status == 0 ? f->value : NULL;
    coro_future_release(f);
    it->f = NULL;
  }
  if (m->cancelled) {
    item_discard(m, it);
    it->state = I_DONE;
    return;
  }
  item_finished(m, it);
  fill(m);
}

static int submit(coro_pmap *m, size_t i, coro_future **f) {
  const coro_job_opts *jo = m->has_job ? &m->job : NULL;
  if (m->proc)
    return coro_run_in_process_opts(f, m->o.pool, m->o.proc_fn,
                                    m->o.in_data[i],
                                    m->o.in_lens != NULL ? m->o.in_lens[i] : 0,
                                    jo);
  return coro_run_in_thread_opts(f, m->o.pool, m->o.fn, m->o.inputs[i], jo);
}

static void fill(coro_pmap *m) {
  if (m->filling) return; /* the outer call goes on */
  m->filling = 1;
  while (!m->cancelled && m->next_submit < m->o.count &&
         m->in_flight < m->o.limit &&
         (!m->o.ordered || m->next_submit < m->next_deliver + m->o.limit)) {
    size_t i = m->next_submit++;
    pm_item *it = &m->items[i];
    coro_future *f = NULL;
    int r = submit(m, i, &f);
    if (r != 0) {
      it->status = r;
      it->value = NULL;
      item_finished(m, it);
      continue;
    }
    it->f = f;
    it->state = I_FLIGHT;
    m->in_flight++;
    it->w.notify = item_notify;
    if (f->status != CORO_PENDING) {
      /* Cannot happen for a fresh job, but be exact. */
      coro__queue_init(&it->w.node);
      item_notify(&it->w, f);
    } else {
      coro__future_add_waiter(f, &it->w);
    }
  }
  m->filling = 0;
}

int coro_pmap_new(coro_pmap **out, const coro_pmap_opts *opts) {
  if (out == NULL || opts == NULL) return CORO_EINVAL;
  int thread_mode = opts->fn != NULL || opts->inputs != NULL;
  int proc_mode = opts->proc_fn != NULL || opts->in_data != NULL;
  if (thread_mode == proc_mode) return CORO_EINVAL;
  if (opts->count > 0 && thread_mode &&
      (opts->fn == NULL || opts->inputs == NULL))
    return CORO_EINVAL;
  if (proc_mode && (opts->proc_fn == NULL || opts->pool == NULL ||
                    (opts->count > 0 && opts->in_data == NULL)))
    return CORO_EINVAL;
  if (thread_mode && opts->fn == NULL) return CORO_EINVAL;
  if (opts->job != NULL && opts->job->timeout_ms < CORO_FOREVER)
    return CORO_EINVAL;
  coro_loop *loop = coro__tls_loop;
  if (loop == NULL) return CORO_EPERM;
  if (opts->count > ((size_t)-1) / (sizeof(pm_item) + sizeof(size_t)))
    return CORO_ENOMEM;
  coro_pmap *m = coro__calloc(1, sizeof(*m));
  if (m == NULL) return CORO_ENOMEM;
  m->items = coro__calloc(opts->count ? opts->count : 1, sizeof(pm_item));
  m->fifo = opts->ordered
                ? NULL
                : coro__malloc((opts->count ? opts->count : 1) * sizeof(size_t));
  if (m->items == NULL || (!opts->ordered && m->fifo == NULL)) {
    coro__free(m->items);
    coro__free(m->fifo);
    coro__free(m);
    return CORO_ENOMEM;
  }
  m->loop = loop;
  m->o = *opts;
  if (m->o.limit == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->o.limit = n > 0 ? (unsigned)n : 1;
  }
  if (opts->job != NULL) {
    m->job = *opts->job;
    m->has_job = 1;
  }
  m->proc = proc_mode;
  for (size_t i = 0; i < opts->count; i++) {
    m->items[i].m = m;
    m->items[i].state = I_WAITING;
  }
  fill(m);
  *out = m;
  return 0;
}

static int check(coro_pmap *m) {
  if (m == NULL) return CORO_EINVAL;
  if (m->loop != coro__tls_loop) return CORO_EPERM;
  return 0;
}

static int pmap_wait_cancel(coro__task *t, void *arg) {
  coro_pmap *m = arg;
  (void)t;
  if (m->waiter == t) m->waiter = NULL;
  return CORO__CANCEL_ABORT; /* nothing was consumed */
}

int coro_pmap_next(coro_pmap *m, size_t *index, int *status, void **value) {
  int r = check(m);
  if (r != 0) return r;
  coro__task *t = coro__task_for_wait();
  if (t == NULL) return CORO_EPERM;
  if (m->held != NULL) {
    coro_future_release(m->held);
    m->held = NULL;
  }
  for (;;) {
    if (m->cancelled) return CORO_EPIPE;
    if (m->delivered == m->o.count) return CORO_EOF;
    if (deliverable(m)) break;
    m->waiter = t;
    r = coro__task_suspend(t, pmap_wait_cancel, m, "parallel map");
    if (m->waiter == t) m->waiter = NULL;
    if (r != 0) return r;
  }
  size_t i;
  if (m->o.ordered)
    i = m->next_deliver++;
  else
    i = m->fifo[m->fifo_head++];
  pm_item *it = &m->items[i];
  it->state = I_DELIVERED;
  m->delivered++;
  if (index != NULL) *index = i;
  if (status != NULL) *status = it->status;
  if (value != NULL) *value = it->value;
  else if (!m->proc && it->value != NULL && m->has_job &&
           m->job.discard != NULL)
    m->job.discard(it->value, m->job.discard_data);
  it->value = NULL;
  if (m->proc) {
    m->held = it->f; /* keeps the bytes alive until the next call */
    it->f = NULL;
  }
  /* Ordered: the window moved; submit what it allows now. */
  fill(m);
  return 0;
}

int coro_pmap_bytes(coro_pmap *m, const void **data, size_t *len) {
  if (m == NULL || !m->proc) return CORO_EINVAL;
  if (m->held == NULL) return -ENOENT;
  return coro_future_bytes(m->held, data, len);
}

int coro_pmap_cancel(coro_pmap *m) {
  int r = check(m);
  if (r != 0) return r;
  if (m->cancelled || m->delivered == m->o.count) return CORO_EALREADY;
  m->cancelled = 1;
  for (size_t i = 0; i < m->o.count; i++) {
    pm_item *it = &m->items[i];
    if (it->state == I_FLIGHT && it->f != NULL &&
        it->f->status == CORO_PENDING) {
      /* Completes the future at once; item_notify discards. */
      coro_cancel(it->f);
    } else if (it->state == I_DONE) {
      item_discard(m, it);
    }
  }
  if (m->waiter != NULL) {
    coro__task *t = m->waiter;
    m->waiter = NULL;
    coro__task_wake(t, 0);
  }
  return 0;
}

void coro_pmap_free(coro_pmap *m) {
  if (m == NULL) return;
  if (m->loop == coro__tls_loop && !m->cancelled &&
      m->delivered < m->o.count) {
    coro_pmap_cancel(m);
  } else {
    /* Its loop has ended (every job was detached then) or it was
     * cancelled: drop what is left. */
    for (size_t i = 0; i < m->o.count; i++)
      if (m->items[i].state == I_DONE) item_discard(m, &m->items[i]);
  }
  if (m->held != NULL) coro_future_release(m->held);
  coro__free(m->items);
  coro__free(m->fifo);
  coro__free(m);
}

int coro_pmap_run(const coro_pmap_opts *opts, coro_pmap_cb cb, void *data) {
  if (cb == NULL) return CORO_EINVAL;
  if (coro__task_for_wait() == NULL) return CORO_EPERM;
  coro_pmap *m;
  int r = coro_pmap_new(&m, opts);
  if (r != 0) return r;
  for (;;) {
    size_t i;
    int st;
    void *v;
    r = coro_pmap_next(m, &i, &st, &v);
    if (r == CORO_EOF) {
      r = 0;
      break;
    }
    if (r != 0) break;
    r = cb(i, st, v, data);
    if (r != 0) break;
  }
  coro_pmap_free(m);
  return r;
}
