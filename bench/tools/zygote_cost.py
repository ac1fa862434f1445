"""What one forked run costs the fork server's child, without the runner.

Starts `crates/runner/src/forkserver/zygote.py` with the given interpreter
(as the runner does: `python -c <zygote>` with a socket on fd 3), becomes a
subreaper so the run is re-parented to this process as it is to the
supervisor, sends N hello-world requests one after another and reports the
run's CPU (user, sys) and minor page faults from wait4's rusage, the
server's own side (its CPU and page faults, with those of the children it
reaped: the middle processes when it forks twice), and the wall time from
the request to the run's exit.

    python3 bench/tools/zygote_cost.py ENV/bin/python [N] [ZYGOTE_PY]

ZYGOTE_PY: another version of `zygote.py` (say `git show OLD:...`), to
compare builds.

Use the interpreter of a runner's empty environment (a venv) to see what
runs see: a venv imports far less at start-up than a base interpreter with
.pth files in its site-packages.
"""
import ctypes
import json
import os
import socket
import sys
import tempfile
import time

HELLO = """import json
import os

params = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
name = params.get("name") or "World"
print(f"Hello, {name}!")
"""


def main():
    py = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "../../crates/runner/src/forkserver/zygote.py")
    zygote = open(sys.argv[3] if len(sys.argv) > 3 else default).read()
    ws = tempfile.mkdtemp(prefix="zygote-cost-")
    script = os.path.join(ws, "main.py")
    with open(script, "w") as f:
        f.write(HELLO)
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    ours, theirs = socket.socketpair()
    server = os.fork()
    if server == 0:
        os.dup2(theirs.fileno(), 3)
        os.execve(py, [py, "-c", zygote], {"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    theirs.close()
    env = {"PATH": "/usr/bin:/bin", "MINITOWER_INPUT": "{}", "PYTHONUNBUFFERED": "1"}
    user = sys_ = 0.0
    faults = 0
    walls = []
    out = b""

    def server_stat():
        # minflt + cminflt, utime + stime + cutime + cstime (clock ticks)
        f = open(f"/proc/{server}/stat").read().rsplit(")", 1)[1].split()
        return int(f[7]) + int(f[8]), sum(int(x) for x in f[11:15])

    server_before = server_stat()
    for _ in range(n):
        r, w = os.pipe()
        msg = json.dumps({"cwd": ws, "env": env, "script": script}).encode()
        t = time.perf_counter()
        socket.send_fds(ours, [len(msg).to_bytes(8, "big") + msg], [w, w])
        os.close(w)
        reply = b""
        while not reply.endswith(b"\n"):
            reply += ours.recv(100)
        pid = json.loads(reply)["pid"]
        out = b""
        while chunk := os.read(r, 4096):
            out += chunk
        os.close(r)
        _, status, ru = os.wait4(pid, 0)
        walls.append(time.perf_counter() - t)
        user += ru.ru_utime
        sys_ += ru.ru_stime
        faults += ru.ru_minflt
    server_after = server_stat()
    walls.sort()
    print(f"output {out!r}, last exit status {os.waitstatus_to_exitcode(status)}")
    print(
        f"per run: user {1000 * user / n:.2f} ms, sys {1000 * sys_ / n:.2f} ms, "
        f"minor faults {faults / n:.0f}, wall p50 {1000 * walls[n // 2]:.2f} ms"
    )
    ticks = os.sysconf("SC_CLK_TCK")
    print(
        f"server per run: CPU {1000 * (server_after[1] - server_before[1]) / ticks / n:.2f} ms, "
        f"minor faults {(server_after[0] - server_before[0]) / n:.0f} (its own and what it reaped)"
    )


if __name__ == "__main__":
    main()
