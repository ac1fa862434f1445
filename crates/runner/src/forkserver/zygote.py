# The warm interpreter of a fork server (see forkserver.rs for the design).
# Run as `python -c <this>` by a supervisor in serve mode, with a stream
# socket to it on fd 3. Each request is an 8-byte big-endian length, a JSON
# object (cwd, env, script) and, on its first bytes, the run's stdout and
# stderr as SCM_RIGHTS. The server double-forks: the grandchild is orphaned
# at once, so it becomes the child of the supervisor (a subreaper), which
# then waits for it, fences it and kills what it leaves behind; the server
# answers {"pid": N} once the middle process is gone.
import sys
_keep = set(sys.modules)
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


def _serve():
    while True:
        fds = []
        size = int.from_bytes(_recv_exact(8, fds), "big")
        msg = _recv_exact(size, fds)
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


# Everything the server holds goes to the collector's permanent generation:
# a run's collections (and its interpreter's final one) do not walk, and so
# do not copy, the server's pages. Measured: half the CPU of a forked
# hello-world run (see bench/README.md).
import gc
gc.freeze()
del gc
_msg, _fds, _mid = _serve()
# The run's own process from here on: its own process group in the
# supervisor's session, as a script the supervisor starts. First become the
# supervisor's child (the middle process exits right after forking us) and
# die with it.
os.setpgid(0, 0)
while os.getppid() == _mid:
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
os.environ.clear()
os.environ.update(_req["env"])
_script = _req["script"]
_dir = os.path.dirname(_script)
if os.path.islink(_script):
    _dir = os.path.dirname(os.path.join(_dir, os.readlink(_script)))
sys.path[:] = [_dir] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p] + _paths
sys.argv[:] = [_script]
sys.orig_argv[:] = [sys.executable, _script]
# What the warm-up imported is not there for the script, as in a fresh
# interpreter (a script importing json gets a module of its own).
for _k in list(sys.modules):
    if _k not in _keep:
        del sys.modules[_k]
sys.path_importer_cache.clear()
_main = types.ModuleType("__main__")
_main.__file__ = _script
_main.__cached__ = None
_main.__builtins__ = builtins
_main.__loader__ = _loader("__main__", _script)
_main.__annotations__ = {}
sys.modules["__main__"] = _main
_exec, _compile, _open_code = exec, compile, io.open_code
del _k, _req, _fd, _fds, _msg, _dir, _mid, _sup, _prctl, _sock, _paths, _loader, _keep
del _recv_exact, _serve, os, socket, json, ctypes, builtins, io, types
try:
    with _open_code(_script) as _f:
        _code = _compile(_f.read(), _script, "exec", dont_inherit=True)
    _exec(_code, _main.__dict__)
except SystemExit:
    raise
except BaseException as _e:
    _tb = _e.__traceback__
    while _tb is not None and _tb.tb_frame.f_code.co_filename != _script:
        _tb = _tb.tb_next
    if _tb is None:
        _tb = _e.__traceback__
    _e.__traceback__ = _tb
    sys.excepthook(type(_e), _e, _tb)
    if isinstance(_e, KeyboardInterrupt):
        import signal
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        import os
        os.kill(os.getpid(), signal.SIGINT)
    sys.stdout.flush()
    sys.exit(1)
