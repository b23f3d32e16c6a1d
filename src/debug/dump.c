/* SPDX-License-Identifier: MIT */
/* Task dumps: every live task of a loop with its state, what it waits on,
 * its age, parent, stack use and backtrace.
 *
 * The backtrace of a suspended task is taken on its own stack: the dump
 * sets loop->probe_task and switches to the task's saved context, which
 * resumes inside coro__task_suspend; the task sees the probe before it
 * does anything else (task.c), calls backtrace() there (a normal DWARF
 * unwind of its own frames) and switches straight back. Its state, its
 * wait and everything else are untouched, and its saved context is simply
 * saved again a few frames deeper. */
#include <dlfcn.h>
#include <execinfo.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/hooks.h"
#include "core/loop.h"
#include "core/task.h"

#define DUMP_FRAMES 32

void coro__dump_probe(coro_loop *loop, coro__task *t) {
  loop->probe_n = backtrace(loop->probe_frames, loop->probe_cap);
  coro__ctx_switch(&t->fiber->ctx, loop->probe_back);
}

/* Switch to the suspended task t for its backtrace. */
static int probe(coro_loop *loop, coro__task *t, void **frames, int cap) {
  coro__ctx back;
  coro__ctx_init_main(&back);
  loop->probe_task = t;
  loop->probe_back = &back;
  loop->probe_frames = frames;
  loop->probe_cap = cap;
  loop->probe_n = 0;
  coro__ctx_switch(&back, &t->fiber->ctx);
  loop->probe_task = NULL;
  loop->probe_back = NULL;
  int n = loop->probe_n;
  /* frames[0] is coro__dump_probe itself */
  if (n > 1) memmove(frames, frames + 1, (size_t)(n - 1) * sizeof(*frames));
  n = n > 0 ? n - 1 : 0;
  coro__ctx_destroy(&back);
  return n;
}

/* Bytes of [lo, lo + size) in memory (mincore), a page at a time. */
static size_t resident(void *lo, size_t size) {
  long ps = sysconf(_SC_PAGESIZE);
  if (lo == NULL || ps <= 0) return 0;
  size_t page = (size_t)ps, n = 0;
  unsigned char vec[256];
  for (size_t off = 0; off < size; off += sizeof vec * page) {
    size_t len = size - off < sizeof vec * page ? size - off : sizeof vec * page;
    if (mincore((char *)lo + off, len, vec) != 0) return 0;
    for (size_t i = 0; i < (len + page - 1) / page; i++)
      if (vec[i] & 1) n += page;
  }
  return n;
}

static const char *state_name(int s) {
  switch (s) {
    case CORO__T_CREATED: return "created";
    case CORO__T_READY: return "ready";
    case CORO__T_RUNNING: return "running";
    case CORO__T_WAITING: return "waiting";
    default: return "done";
  }
}

int coro_dump_tasks_cb(coro_task_info_cb cb, void *data) {
  coro_loop *loop = coro__tls_loop;
  if (cb == NULL) return CORO_EINVAL;
  if (loop == NULL || loop->dumping) return CORO_EPERM;
  loop->dumping = 1;
  uint64_t now_ms = uv_now(loop->uv);
  uint64_t now_ns = uv_hrtime();
  void *frames[DUMP_FRAMES];
  int count = 0;
  for (coro__queue *q = loop->tasks.next; q != &loop->tasks; q = q->next) {
    coro__task *t = coro__container_of(q, coro__task, link);
    coro_task_info info;
    memset(&info, 0, sizeof info);
    info.id = t->id;
    info.name = coro_task_name(&t->fut);
    info.state = state_name(t->state);
    info.sleep_left_ms = -1;
    if (t->state == CORO__T_READY || t->state == CORO__T_WAITING) {
      info.waiting_on = t->wait_what;
      coro_future *f = t->wait_target;
      if (f != NULL && f->kind == CORO__FUT_TASK)
        info.awaited_id = ((coro__task *)f)->id;
      if (t->timer.idx != CORO__TIMER_IDLE && t->wait_what != NULL &&
          strcmp(t->wait_what, "sleep") == 0)
        info.sleep_left_ms =
            t->timer.due > now_ns ? (int64_t)((t->timer.due - now_ns) / 1000000u) : 0;
    }
    info.age_s = now_ms > t->born_ms ? (double)(now_ms - t->born_ms) / 1e3 : 0;
    info.parent_id = t->parent_id;
    if (t->fiber != NULL) {
      info.stack_size = t->fiber->stack.size;
      info.stack_used = resident(t->fiber->stack.lo, t->fiber->stack.size);
      if (t == loop->current) { /* without this function's own frame */
        info.nframes = backtrace(frames, DUMP_FRAMES) - 1;
        if (info.nframes > 0)
          memmove(frames, frames + 1, (size_t)info.nframes * sizeof(*frames));
        else
          info.nframes = 0;
      }
      else if (t->fiber->started)
        info.nframes = probe(loop, t, frames, DUMP_FRAMES);
      info.frames = frames;
    }
    cb(&info, data);
    count++;
  }
  loop->dumping = 0;
  return count;
}

/* ---- the text form ------------------------------------------------------------ */

static void print_kib(FILE *out, size_t bytes) {
  fprintf(out, "%zu KiB", (bytes + 1023) / 1024);
}

static void print_task(const coro_task_info *ti, void *data) {
  FILE *out = data;
  fprintf(out, "task %llu <%s> %s", (unsigned long long)ti->id, ti->name,
          ti->state);
  if (ti->waiting_on != NULL) {
    fprintf(out, " %s %s", strcmp(ti->state, "ready") == 0 ? "after" : "on",
            ti->waiting_on);
    if (ti->awaited_id != 0)
      fprintf(out, " of task %llu", (unsigned long long)ti->awaited_id);
    if (ti->sleep_left_ms >= 0)
      fprintf(out, " (%.3f s left)", (double)ti->sleep_left_ms / 1e3);
  }
  fprintf(out, ", age %.3f s", ti->age_s);
  if (ti->parent_id != 0)
    fprintf(out, ", parent %llu", (unsigned long long)ti->parent_id);
  if (ti->stack_size != 0) {
    fprintf(out, ", stack ");
    print_kib(out, ti->stack_used);
    fprintf(out, " of ");
    print_kib(out, ti->stack_size);
  }
  fputc('\n', out);
  for (int i = 0; i < ti->nframes; i++) {
    Dl_info di;
    void *pc = ti->frames[i];
    int found = dladdr(pc, &di) != 0;
    fprintf(out, "    #%d ", i);
    if (found && di.dli_sname != NULL)
      fprintf(out, "%s+0x%lx", di.dli_sname,
              (unsigned long)((char *)pc - (char *)di.dli_saddr));
    else
      fprintf(out, "%p", pc);
    if (found && di.dli_fname != NULL) {
      const char *base = strrchr(di.dli_fname, '/');
      fprintf(out, " (%s)", base != NULL ? base + 1 : di.dli_fname);
    }
    fputc('\n', out);
  }
}

int coro_dump_tasks(FILE *out) {
  coro_loop *loop = coro__tls_loop;
  if (out == NULL) out = stderr;
  if (loop == NULL || loop->dumping) return CORO_EPERM;
  fprintf(out, "libcoro: %zu task%s on loop %p\n", loop->ntasks,
          loop->ntasks == 1 ? "" : "s", (void *)loop);
  int r = coro_dump_tasks_cb(print_task, out);
  fflush(out);
  return r;
}
