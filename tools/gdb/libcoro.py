# SPDX-License-Identifier: MIT
"""gdb commands for programs that use libcoro.

    info coro-tasks      every live task of every loop: id, state, what it
                         waits on, name
    coro-bt ID           the backtrace of task ID while it is suspended,
                         from its saved registers (x86-64, assembly switch)

They read the process (a live one or a core file) through libcoro's debug
information, so libcoro must be built with -g (Debug or RelWithDebInfo).
Load with `source PATH/libcoro.py`; installed next to libcoro it is loaded
by gdb's auto-load (add the install prefix to `set auto-load safe-path` if
gdb refuses it).
"""
import gdb
import gdb.unwinder

STATES = ["created", "ready", "running", "waiting", "done"]


def _str(v):
    try:
        return v.string() if int(v) != 0 else None
    except gdb.error:
        return None


def _offsetof(type_name, field):
    t = gdb.lookup_type(type_name).strip_typedefs()
    for f in t.fields():
        if f.name == field:
            return f.bitpos // 8
    raise gdb.GdbError("libcoro: %s has no field %s" % (type_name, field))


def _loops():
    try:
        p = gdb.parse_and_eval("coro__all_loops")
    except gdb.error:
        raise gdb.GdbError("libcoro: no coro__all_loops here (is libcoro loaded, "
                           "and built with -g?)")
    try:
        gdb.lookup_type("coro__task")
    except gdb.error:
        raise gdb.GdbError("libcoro: no type information (built with -g?)")
    while int(p) != 0:
        yield p
        p = p["all_next"]


def _tasks(loop):
    task_p = gdb.lookup_type("coro__task").pointer()
    char_p = gdb.lookup_type("char").pointer()
    off = _offsetof("coro__task", "link")
    head = int(loop["tasks"].address)
    q = loop["tasks"]["next"]
    while int(q) != head:
        yield (q.cast(char_p) - off).cast(task_p)
        q = q["next"]


def _name(t):
    n = _str(t["name"])
    if n is None:
        n = t["autoname"].string()
    return n if n else "Task-%d" % int(t["id"])


def _state(t):
    s = int(t["state"])
    return STATES[s] if 0 <= s < len(STATES) else str(s)


def _find(task_id):
    for loop in _loops():
        for t in _tasks(loop):
            if int(t["id"]) == task_id:
                return t
    return None


class InfoCoroTasks(gdb.Command):
    """List every live libcoro task: info coro-tasks"""

    def __init__(self):
        super().__init__("info coro-tasks", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        n = 0
        for loop in _loops():
            count = int(loop["ntasks"])
            gdb.write("loop %s: %d task%s\n" % (hex(int(loop)), count, "" if count == 1 else "s"))
            gdb.write("  %6s  %-8s  %-16s  %s\n" % ("ID", "STATE", "WAITING ON", "NAME"))
            for t in _tasks(loop):
                what = ""
                if _state(t) in ("ready", "waiting"):
                    what = _str(t["wait_what"]) or ""
                gdb.write("  %6d  %-8s  %-16s  %s\n" % (int(t["id"]), _state(t), what, _name(t)))
            n += 1
        if n == 0:
            gdb.write("no libcoro loop is running\n")


REGS = ["r15", "r14", "r13", "r12", "rbx", "rbp"]  # above the saved word at sp


class _FrameId(object):
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _TaskUnwinder(gdb.unwinder.Unwinder):
    """While `regs` is set, the caller of the thread's innermost frame is
    the suspended task's saved context: the frames from level 1 on are the
    task's. Writing registers would do too on a live process, but a core
    file allows no writes; an unwinder works on both."""

    def __init__(self):
        super().__init__("libcoro task")
        self.regs = None

    def __call__(self, pending_frame):
        if self.regs is None or pending_frame.level() != 0:
            return None
        sp = pending_frame.read_register("rsp")
        pc = pending_frame.read_register("rip")
        info = pending_frame.create_unwind_info(_FrameId(sp, pc))
        for r, v in self.regs.items():
            info.add_saved_register(r, gdb.Value(v).cast(sp.type if r in ("rsp", "rbp") else
                                                         gdb.lookup_type("long")))
        return info


_unwinder = _TaskUnwinder()
gdb.unwinder.register_unwinder(None, _unwinder, replace=True)


def _print_frames(limit=64):
    f = gdb.newest_frame().older()  # level 1: the task's innermost
    n = 0
    while f is not None and n < limit:
        pc = f.pc()
        name = f.name() or "??"
        sal = f.find_sal()
        where = ""
        if sal.symtab is not None:
            where = " at %s:%d" % (sal.symtab.filename, sal.line)
        else:
            so = gdb.solib_name(pc)
            if so:
                where = " from %s" % so
        gdb.write("#%-2d 0x%016x in %s ()%s\n" % (n, pc, name, where))
        n += 1
        f = f.older()


class CoroBt(gdb.Command):
    """Backtrace of a suspended libcoro task: coro-bt ID"""

    def __init__(self):
        super().__init__("coro-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        try:
            task_id = int(arg.split()[0])
        except (IndexError, ValueError):
            raise gdb.GdbError("usage: coro-bt TASK-ID (see info coro-tasks)")
        t = _find(task_id)
        if t is None:
            raise gdb.GdbError("coro-bt: no live task %d" % task_id)
        state = _state(t)
        if state == "running":
            gdb.write("task %d <%s> is running: its frames are the thread's own (bt)\n"
                      % (task_id, _name(t)))
            return
        if int(t["fiber"]) == 0:
            gdb.write("task %d <%s> has not started: no frames yet\n" % (task_id, _name(t)))
            return
        ctx = t["fiber"]["ctx"]
        fields = [f.name for f in ctx.type.strip_typedefs().fields()]
        arch = gdb.newest_frame().architecture().name()
        if "sp" not in fields or "x86-64" not in arch:
            raise gdb.GdbError("coro-bt: needs the assembly switch on x86-64 "
                               "(this is %s, %s)" % (arch, "ucontext" if "jb" in fields else "asm"))
        sp = int(ctx["sp"])
        u64 = gdb.lookup_type("unsigned long").pointer()
        words = [int(gdb.Value(sp + 8 * i).cast(u64).dereference()) for i in range(8)]
        regs = {r: words[1 + i] for i, r in enumerate(REGS)}
        regs["rip"] = words[7]
        regs["rsp"] = sp + 64
        gdb.write("task %d <%s> %s on %s\n" % (task_id, _name(t), state,
                                             _str(t["wait_what"]) or "?"))
        _unwinder.regs = regs
        gdb.invalidate_cached_frames()
        try:
            _print_frames()
        finally:
            _unwinder.regs = None
            gdb.invalidate_cached_frames()


InfoCoroTasks()
CoroBt()
