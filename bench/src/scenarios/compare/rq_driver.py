"""The RQ side of `minitower-bench compare` (run with the RQ venv's Python).

argv[1] is a JSON object: redis_url, work_dir, rq (the `rq` executable),
worker_class (null: RQ's default fork-per-job worker), seq_runs,
burst_runs, burst_workers, redis_pid. Starts its own `rq worker`
processes on a queue of its own, runs the same hello-world workload as
MiniTower's `latency` and `burst` scenarios, stops the workers and prints
one JSON object. Job completion is awaited with `Job.latest_result(timeout)`
(a blocking XREAD on the job's result stream, no polling) for the
sequential runs, and by reading the finished registry's size every 5 ms for
the burst (as MiniTower's burst reads its run summary every 5 ms).
"""
import json, os, signal, subprocess, sys, time

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

JOB = 'def hello(name):\n    print(f"Hello, {name}!")\n'
POLL = 0.005


def ticks(pid):
    """utime+stime+cutime+cstime of pid and its live descendants, seconds."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def wait_until(what, cond, limit=60.0):
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(POLL)


def start_workers(cfg, queue, n, tag):
    procs = []
    for i in range(n):
        argv = [cfg["rq"], "worker", "-u", cfg["redis_url"], "-q",
                "--disable-job-desc-logging", "-n", f"{queue.name}-{tag}-{i}"]
        if cfg["worker_class"]:
            argv += ["-w", cfg["worker_class"]]
        argv.append(queue.name)
        log = open(os.path.join(cfg["work_dir"], f"worker-{tag}-{i}.log"), "ab")
        env = dict(os.environ, PYTHONPATH=cfg["work_dir"])
        procs.append(subprocess.Popen(argv, cwd=cfg["work_dir"], env=env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    wait_until("the workers to register",
               lambda: Worker.count(queue=queue) >= n)
    return procs


def stop_workers(procs):
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cpu(procs, redis_pid):
    return sum(ticks(p.pid) for p in procs) + (ticks(redis_pid) if redis_pid else 0.0)


def run_one(queue, name):
    t = time.perf_counter()
    job = queue.enqueue("benchjob.hello", name)
    res = job.latest_result(timeout=30)
    took = time.perf_counter() - t
    if res is None or res.type != res.Type.SUCCESSFUL:
        raise SystemExit(f"job {job.id} did not succeed: {res and res.exc_string}")
    return took


def main():
    cfg = json.loads(sys.argv[1])
    with open(os.path.join(cfg["work_dir"], "benchjob.py"), "w") as f:
        f.write(JOB)
    conn = Redis.from_url(cfg["redis_url"])
    wait_until("redis", lambda: _ping(conn), 10)
    queue = Queue(f"bench-{os.getpid()}", connection=conn)
    out = {}

    # Sequential: one worker, each job enqueued after the previous finished.
    workers = start_workers(cfg, queue, 1, "seq")
    try:
        for _ in range(4):
            run_one(queue, "warm-up")
        c0 = cpu(workers, cfg["redis_pid"])
        t0 = time.perf_counter()
        samples = [run_one(queue, "bench") for _ in range(cfg["seq_runs"])]
        wall = time.perf_counter() - t0
        out["seq"] = {"samples_ms": [s * 1000 for s in samples], "wall_ms": wall * 1000,
                      "cpu_ms_per_job": (cpu(workers, cfg["redis_pid"]) - c0) * 1000 / cfg["seq_runs"]}
    finally:
        stop_workers(workers)

    # Burst: all jobs enqueued at once (one pipeline), n workers.
    workers = start_workers(cfg, queue, cfg["burst_workers"], "burst")
    try:
        for _ in range(4):
            run_one(queue, "warm-up")
        n = cfg["burst_runs"]
        finished = queue.finished_job_registry
        base = finished.count
        c0 = cpu(workers, cfg["redis_pid"])
        t0 = time.perf_counter()
        queue.enqueue_many([Queue.prepare_data("benchjob.hello", ("burst",)) for _ in range(n)])
        submitted = time.perf_counter() - t0
        failed = queue.failed_job_registry
        wait_until("the burst", lambda: finished.count - base + failed.count >= n, 120 + n)
        wall = time.perf_counter() - t0
        if failed.count:
            raise SystemExit(f"{failed.count} burst jobs failed")
        out["burst"] = {"wall_ms": wall * 1000, "submit_ms": submitted * 1000,
                        "cpu_ms_per_job": (cpu(workers, cfg["redis_pid"]) - c0) * 1000 / n}
    finally:
        stop_workers(workers)
    import rq
    out["rq_version"] = rq.__version__
    print(json.dumps(out))


def _ping(conn):
    try:
        return conn.ping()
    except Exception:
        return False


if __name__ == "__main__":
    main()
