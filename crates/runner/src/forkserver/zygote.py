# The warm interpreter of a fork server (see forkserver.rs for the design).
# Run as `python -c <this>` by a supervisor in serve mode, with a stream
# socket to it on fd 3. Each request is an 8-byte big-endian length, a JSON
# object (cwd, env, script) and, on its first bytes, the run's stdout and
# stderr as SCM_RIGHTS. The server double-forks: the grandchild is orphaned
# at once, so it becomes the child of the supervisor (a subreaper), which
# then waits for it, fences it and kills what it leaves behind; the server
# answers {"pid": N} once the middle process is gone. Where it can, the
# server forks once instead (`_clone_for_parent`): the run is born the
# supervisor's child, and no middle process costs a second fork.
import sys
_keep = set(sys.modules)
# The path entries' finders a fresh interpreter has when its script starts
# (the standard library's, site-packages'), their directory listings made.
_finders = set(sys.path_importer_cache)


# Warm modules (see forkserver.rs): these stdlib modules, and what they
# import, are imported once here; a run importing one gets this pristine
# copy (forked, so no other run touched it) instead of executing it again.
_WARM = ("json", "re", "collections", "functools", "enum", "typing",
         "dataclasses", "datetime", "pathlib")


class _Starts:
    # Records the order imports start in (pre-order); `sys.modules` ends in
    # the order they finish (post-order). Together they give the modules
    # each import loaded itself.
    def find_spec(self, name, path=None, target=None):
        _pre.setdefault(name, len(_pre))


def _recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    # Records which module imports which (an import of a module already
    # loaded loads nothing, but a fresh interpreter would load it).
    m = _import(name, globals, locals, fromlist, level)
    g = globals or {}
    full = name
    if level:
        b = sys.modules["_frozen_importlib"]
        full = b._resolve_name(name, b._calc___package__(g), level) if name else b._calc___package__(g)
    parts = full.split(".")
    to = [".".join(parts[:i + 1]) for i in range(len(parts))]
    to += [full + "." + f for f in fromlist or () if full + "." + f in sys.modules]
    _edges.setdefault(g.get("__name__"), []).extend(to)
    return m


_pre, _edges = {}, {}
_import = __builtins__.__import__ if hasattr(__builtins__, "__import__") else __builtins__["__import__"]
sys.meta_path.insert(0, _Starts())
__builtins__.__import__ = _recording_import
for _n in _WARM:
    try:
        __import__(_n)
    except Exception:
        pass
__builtins__.__import__ = _import
del sys.meta_path[0]


def _closures():
    post = [n for n in sys.modules if n not in _keep]
    pre = {}
    for n in post:
        # set straight into sys.modules by its package (typing.io): inside it
        parent = n.rpartition(".")[0]
        pre[n] = _pre[n] if n in _pre else pre.get(parent, _pre.get(parent, -1)) + 0.5
    pos = {n: i for i, n in enumerate(post)}
    # what each module loaded itself, and what it imported
    step = {m: [d for d in post if pre[d] > pre[m] and pos[d] < pos[m]] + _edges.get(m, [])
            for m in post}
    out = {}
    for m in post:
        if pre[m] < 0:
            continue
        seen, todo = set(), [m]
        while todo:
            for d in step.get(todo.pop(), ()):
                if d in pos and d not in seen:
                    seen.add(d)
                    todo.append(d)
        seen.discard(m)
        out[m] = [d for d in post if d in seen]
    return out


class WarmModules:
    """Hands a run the warm copy of a stdlib module (see forkserver.rs)."""

    __module__ = "minitower"

    def __init__(self, closures):
        self.modules = {n: sys.modules[n] for n in closures}
        # what a package set into sys.modules itself (typing.io, a class)
        # comes only with its package
        self.specs = {n: m.__spec__ for n, m in self.modules.items()
                      if isinstance(m, type(sys)) and getattr(m, "__spec__", None) is not None}
        self.closures = closures
        self.finder = sys.modules["_frozen_importlib_external"].PathFinder
        self.spec = sys.modules["_frozen_importlib"].ModuleSpec

    def find_spec(self, name, path=None, target=None):
        orig = self.specs.get(name)
        if orig is None or name in sys.modules:
            return None
        parent = name.rpartition(".")[0]
        if parent and sys.modules.get(parent) is not self.modules.get(parent):
            # a package of the run's own by that name: its submodules too
            return None
        if path is None and orig.origin not in ("built-in", "frozen"):
            # A module of the run's own (its directory, PYTHONPATH) by the
            # same name comes first, as in a fresh interpreter.
            found = self.finder.find_spec(name)
            if found is None or found.origin != orig.origin:
                return None
        spec = self.spec(name, self, origin=orig.origin,
                         is_package=orig.submodule_search_locations is not None)
        spec.has_location = orig.has_location
        return spec

    def create_module(self, spec):
        return self.modules[spec.name]

    def exec_module(self, module):
        name = module.__spec__.name
        module.__spec__ = self.specs[name]
        for d in self.closures[name]:
            if d not in sys.modules:
                sys.modules[d] = self.modules[d]


_warm = WarmModules(_closures())
del _Starts, _pre, _edges, _import, _recording_import, _closures, _n
import os, socket, json, ctypes, builtins, io, types

_sup = os.getppid()
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_sock = socket.socket(fileno=3)
_paths = sys.path[1:]
_loader = sys.modules["_frozen_importlib_external"].SourceFileLoader


def _recv_exact(n, fds):
    buf = b""
    while len(buf) < n:
        data, got, _f, _a = socket.recv_fds(_sock, n - len(buf), 4)
        fds.extend(got)
        if not data:
            os._exit(0)
        buf += data
    return buf


def _clone_for_parent():
    # `os.fork()` with the run born the supervisor's child (CLONE_PARENT),
    # so no middle process is needed: measured, the middle's fork, page
    # faults and exit were 40% of a forked hello-world's CPU. It is what
    # CPython's `os.fork` does (`PyOS_BeforeFork`, the fork, the
    # `PyOS_AfterFork_*` hooks: locks re-made, `register_at_fork`
    # callbacks, `random` re-seeded) around the raw `clone`, which bypasses
    # glibc's `fork`: glibc's one piece of per-process state that matters,
    # the thread id cached in the thread's descriptor (read by
    # `pthread_getcpuclockid`, `pthread_kill`, PI mutexes), is written by
    # the kernel (CLONE_CHILD_SETTID) at its place, which is checked here
    # against our own id first. No glibc on x86-64, or a field that does
    # not hold our id: None, and the server double-forks.
    if os.environ.get("MINITOWER_FORK_TWICE"):  # the fallback, for its test
        return None
    try:
        if os.uname().machine != "x86_64" or not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc 2."):
            return None
        libc = ctypes.CDLL(None)
        libc.pthread_self.restype = ctypes.c_void_p
        tid = libc.pthread_self() + 0x2d0  # offsetof(struct pthread, tid)
        if ctypes.c_int.from_address(tid).value != os.getpid():
            return None
        call = ctypes.PyDLL(None, use_errno=True).syscall  # the GIL held, as in os.fork
        call.restype = ctypes.c_long
        api = ctypes.pythonapi
        before, child, parent = api.PyOS_BeforeFork, api.PyOS_AfterFork_Child, api.PyOS_AfterFork_Parent
    except Exception:
        return None
    # `syscall` is variadic: every argument passed as a full word
    number = ctypes.c_long(56)  # SYS_clone on x86-64
    flags = ctypes.c_ulong(0x00008000 | 0x01000000 | 17)  # CLONE_PARENT | CLONE_CHILD_SETTID | SIGCHLD
    tid = ctypes.c_void_p(tid)

    def clone():
        before()
        pid = call(number, flags, None, None, tid, None)
        err = ctypes.get_errno()
        if pid == 0:
            child()
            return 0
        parent()
        if pid < 0:
            raise OSError(err, os.strerror(err))
        return pid
    return clone


_clone = _clone_for_parent()


def _serve():
    global _clone
    while True:
        fds = []
        size = int.from_bytes(_recv_exact(8, fds), "big")
        msg = _recv_exact(size, fds)
        if _clone is not None:
            try:
                pid = _clone()
            except OSError as e:
                if e.errno != 22:  # EINVAL: not allowed here; double-fork from now on
                    pid = -1
                else:
                    _clone = None
            if _clone is not None:
                if pid == 0:
                    return msg, fds, None
                for fd in fds:
                    os.close(fd)
                reply = {"pid": pid} if pid > 0 else {"error": "fork failed"}
                _sock.sendall(json.dumps(reply).encode() + b"\n")
                continue
        r, w = os.pipe()
        mid = os.fork()
        if mid == 0:
            os.close(r)
            me = os.getpid()
            try:
                pid = os.fork()
            except OSError:
                os._exit(1)
            if pid == 0:
                os.close(w)
                return msg, fds, me
            os.write(w, str(pid).encode())
            os._exit(0)
        os.close(w)
        got = b""
        while True:
            chunk = os.read(r, 32)
            if not chunk:
                break
            got += chunk
        os.close(r)
        os.waitpid(mid, 0)
        for fd in fds:
            os.close(fd)
        reply = {"pid": int(got)} if got else {"error": "fork failed"}
        _sock.sendall(json.dumps(reply).encode() + b"\n")


_exec, _compile, _open_code = exec, compile, io.open_code


# Defined here, not after the fork: whatever a run's process builds from
# the server's objects (as a frozenset of `_keep`) increfs each of them and
# so copies its page.
import atexit as _atexit, gc as _gc


def _finish(code, sigint, fresh=frozenset(_keep), warm=_warm.modules, sys=sys, os=os,
            atexit=_atexit, gc=_gc):
    # The end of a run: what `Py_FinalizeEx` does that a script can see,
    # without tearing down the objects the run inherited from this server.
    # That teardown decrefs every inherited object, copying each of the
    # server's pages the fork shared (measured: two thirds of a forked
    # hello-world's CPU). In CPython's order: non-daemon threads are joined,
    # atexit callbacks run, then the modules the run itself made
    # (`__main__` and whatever it imported) are cleared the way
    # `_PyModule_ClearDict` clears them, so the run's objects get their
    # `__del__`, weakref callbacks and unclosed files their flush; then a
    # collection (the server's objects are frozen, so it walks only the
    # run's) and the standard streams' flush, which fails the exit with 120
    # as CPython does. Not done: finalizing objects the run hung on a module
    # it inherited (`sys`, `os`, ...), which CPython does not promise either.
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException as e:
            sys.excepthook(type(e), e, e.__traceback__)
    # `atexit` and `gc` are the server's module objects (imported in each
    # run they cost ~0.1 ms): both act on the interpreter's own state, and
    # neither is in a fresh interpreter's `sys.modules`, nor put there.
    atexit._run_exitfuncs()
    made = [(n, m) for n, m in sys.modules.items()
            if n == "__main__" or (n not in fresh and m is not warm.get(n))]
    for n, _ in made:
        sys.modules[n] = None
    while made:
        d = getattr(made.pop()[1], "__dict__", None)
        if type(d) is dict:
            for k in list(d):
                if k[:1] == "_" and k[1:2] != "_":
                    d[k] = None
            for k in list(d):
                if k != "__builtins__":
                    d[k] = None
        d = None
    del made
    gc.collect()
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if s is not None:
                s.flush()
        except BaseException:
            code = 120 if code == 0 else code
    if sigint:
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _exit_code(e):
    # As CPython's `_Py_HandleSystemExit` reads a SystemExit.
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code if -(1 << 31) <= code < (1 << 31) else -1
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:
        pass
    return 1


import gc
# What the warm-up and the server imported is not there for a run, as in a
# fresh interpreter (a script importing json gets a module of its own). It
# is cut here, once: cut in each run, every entry's decref copied its
# module's page (measured: 190 page faults, a third of a forked
# hello-world's CPU). The server imports nothing after this; a run checks.
for _k in list(sys.modules):
    if _k not in _keep:
        del sys.modules[_k]
# The finders a fresh interpreter has, and only those, are kept: a run finds
# the standard library through their listings (refreshed when a directory's
# mtime changes, as anywhere) instead of listing it again (measured: 208
# entries read and hashed per run).
for _k in list(sys.path_importer_cache):
    if _k not in _finders:
        del sys.path_importer_cache[_k]
_cut = len(sys.modules)
# Everything the server holds goes to the collector's permanent generation:
# a run's collections (and its interpreter's final one) do not walk, and so
# do not copy, the server's pages. Measured: half the CPU of a forked
# hello-world run (see bench/README.md). Collected first, which also empties
# CPython's free lists: a run's final collection would otherwise free, and
# so copy, the server's pages they hold.
gc.collect()
gc.freeze()
del gc
_msg, _fds, _mid = _serve()
# The run's own process from here on: its own process group in the
# supervisor's session, as a script the supervisor starts. First become the
# supervisor's child (cloned, it is at once; double-forked, once the middle
# process has exited) and die with it.
os.setpgid(0, 0)
while _mid is not None and os.getppid() == _mid:
    os.sched_yield()
_prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != _sup:
    os._exit(1)
_sock.close()
_req = json.loads(_msg)
os.dup2(_fds[0], 1)
os.dup2(_fds[1], 2)
for _fd in _fds:
    if _fd > 2:
        os.close(_fd)
_fd = os.open(os.devnull, os.O_RDONLY)
os.dup2(_fd, 0)
os.close(_fd)
os.chdir(_req["cwd"])
# One variable at a time: `os.environ.clear()` pops from a fresh iterator
# each time, quadratic in the variables (measured: 40-120 µs for 25).
for _k in list(os.environ):
    del os.environ[_k]
os.environ.update(_req["env"])
_script = _req["script"]
_dir = os.path.dirname(_script)
if os.path.islink(_script):
    _dir = os.path.dirname(os.path.join(_dir, os.readlink(_script)))
sys.path[:] = [_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + _paths
sys.argv[:] = [_script]
sys.orig_argv[:] = [sys.executable, _script]
# Imported since the cut above (nothing, unless the server changes)
if len(sys.modules) != _cut:
    for _k in list(sys.modules):
        if _k not in _keep:
            del sys.modules[_k]
if len(sys.path_importer_cache) != len(_finders):
    for _k in list(sys.path_importer_cache):
        if _k not in _finders:
            del sys.path_importer_cache[_k]
# As `python script.py` leaves it: the script's path has no importer.
sys.path_importer_cache[_script] = None
sys.meta_path.insert(0, _warm)
_main = types.ModuleType("__main__")
_main.__file__ = _script
_main.__cached__ = None
_main.__builtins__ = builtins
_main.__loader__ = _loader("__main__", _script)
_main.__annotations__ = {}
sys.modules["__main__"] = _main
_status, _sigint = 0, False
try:
    with _open_code(_script) as _f:
        _code = _compile(_f.read(), _script, "exec", dont_inherit=True)
    _exec(_code, _main.__dict__)
except SystemExit as _e:
    _status = _exit_code(_e)
except BaseException as _e:
    _tb = _e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != _script:
        _tb = _tb.tb_next
    if _tb is None:
        _tb = _e.__traceback__
    _e.__traceback__ = _tb
    sys.excepthook(type(_e), _e, _tb)
    _status, _sigint = 1, isinstance(_e, KeyboardInterrupt)
    _tb = None
_finish(_status, _sigint)
