#!/usr/bin/env python3
"""Eunomia benchmark: throughput without loss, tracer start latency, worker memory.

Starts a real agent (``eunomiactl run``) in a subprocess with a private runtime dir and
database, drives it over its API socket, prints a report and writes it as JSON to
bench/results/latest.json. Needs root and a kernel with eBPF (like the agent itself).

    .venv/bin/python bench/run.py            # or: make bench
    .venv/bin/python bench/run.py --rates 50000,100000 --duration 3 --starts 5

Order of the run: (b) start latency on an idle agent, (c) memory with the three
built-in tracers, then (a) the throughput ladder with only the ``benchev`` tracer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_PY = REPO / ".venv" / "bin" / "python"

try:
    import httpx
except ImportError:  # started with a python that is not the project's venv
    if VENV_PY.exists() and not os.environ.get("EUNOMIA_BENCH_REEXEC"):
        os.environ["EUNOMIA_BENCH_REEXEC"] = "1"
        os.execv(str(VENV_PY), [str(VENV_PY), str(Path(__file__).resolve()), *sys.argv[1:]])
    raise

TRACERS = BENCH / "tracers"
RESULTS = BENCH / "results" / "latest.json"
PRODUCER_C = BENCH / "producer.c"
BUILTINS = ("process", "opensnoop", "tcpconnect")
DEFAULT_RATES = (10_000, 25_000, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000)

# Targets printed next to the figures.
TARGET_RATE = 100_000  # events/s end to end with zero loss
TARGET_START_P50 = 1.0  # s
TARGET_PRIVATE_MB = 30.0  # MB private memory per worker after loading

ACHIEVED_FRACTION = 0.98  # a step whose producer reaches less than this share of its rate "did not achieve" it
TICK_US = 200  # producer pacing tick
BUSY_WARN = 0.15  # CPUs busy before the run above which the report warns
DISTURBED_CPU_S = 1.0  # CPU seconds used outside the benchmark during a step that mark it as disturbed
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Fallback when there is no C compiler: the same protocol in Python (less precise pacing).
PY_PRODUCER = r"""
import json, os, resource, sys, time
rate, seconds, tick = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]) / 1e6
target = int(rate * seconds); done = 0; max_lag = 0.0; getppid = os.getppid
print("ready", os.getpid(), flush=True)
sys.stdin.readline()
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.monotonic(); nxt = t0
while True:
    el = time.monotonic() - t0
    due = target if el >= seconds else min(target, int(rate * el))
    if due > done: max_lag = max(max_lag, (due - done) / rate)
    for _ in range(due - done): getppid()
    done = due
    if done >= target: break
    nxt += tick
    delay = nxt - time.monotonic()
    if delay > 0: time.sleep(delay)
el = time.monotonic() - t0; r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"calls": done, "seconds": el, "max_lag_s": max_lag, "user_s": r1.ru_utime - r0.ru_utime,
                  "sys_s": r1.ru_stime - r0.ru_stime}), flush=True)
"""


class BenchError(RuntimeError):
    pass


def log(msg: str = "") -> None:
    print(msg, flush=True)


# -- /proc readers --------------------------------------------------------------------
def smaps_rollup(pid: int) -> dict[str, int]:
    """KiB values of /proc/PID/smaps_rollup (Rss, Pss, Private_Clean, Private_Dirty, Anonymous, …)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def memory_of(pid: int) -> dict[str, float]:
    s = smaps_rollup(pid)
    mib = 1024.0
    return {"rss_mb": s.get("Rss", 0) / mib, "pss_mb": s.get("Pss", 0) / mib,
            "uss_mb": (s.get("Private_Clean", 0) + s.get("Private_Dirty", 0)) / mib,
            "private_clean_mb": s.get("Private_Clean", 0) / mib,
            "private_dirty_mb": s.get("Private_Dirty", 0) / mib,
            "anonymous_mb": s.get("Anonymous", 0) / mib,
            "shared_clean_mb": s.get("Shared_Clean", 0) / mib}


def _stat_cpu(path: str) -> tuple[str, float]:
    with open(path) as fh:
        text = fh.read()
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()
    return comm, (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def cpu_seconds(pid: int) -> float:
    try:
        return _stat_cpu(f"/proc/{pid}/stat")[1]
    except (OSError, ValueError):
        return float("nan")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process by thread group: main (asyncio loop), zmq (ZMQbg/*), other (store writer…)."""
    out = {"main": 0.0, "zmq": 0.0, "other": 0.0}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            comm, cpu = _stat_cpu(f"/proc/{pid}/task/{tid}/stat")
        except (OSError, ValueError):
            continue
        key = "main" if int(tid) == pid else "zmq" if comm.startswith("ZMQbg") else "other"
        out[key] += cpu
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - before.get(k, 0.0), 2) for k in after}


def all_process_cpu() -> dict[int, tuple[str, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                out[int(entry)] = _stat_cpu(f"/proc/{entry}/stat")
            except (OSError, ValueError):
                pass
    return out


def foreign_cpu(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                ours: set[int]) -> float:
    """CPU seconds used between two snapshots by processes that are not ours (new ones count from 0)."""
    total = 0.0
    for pid, (comm, cpu) in after.items():
        if pid in ours:
            continue
        old = before.get(pid)
        total += cpu - old[1] if old is not None and old[0] == comm else cpu
    return total


def background_load(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the machine is without us: CPUs' worth used by other processes over ``seconds``, the busiest."""
    before = all_process_cpu()
    time.sleep(seconds)
    after = all_process_cpu()
    me = os.getpid()
    used = {pid: cpu - before[pid][1] if pid in before and before[pid][0] == comm else cpu
            for pid, (comm, cpu) in after.items() if pid != me}
    top = sorted(((cpu, pid, after[pid][0]) for pid, cpu in used.items() if cpu > 0), reverse=True)[:3]
    ncpu = os.cpu_count() or 1
    busy = foreign_cpu(before, after, {me})
    return {"busy_cpus": round(busy / seconds, 2), "of_cpus": ncpu,
            "top": [{"pid": pid, "comm": comm, "cpu_share": round(used / seconds, 2)} for used, pid, comm in top]}


def wait_idle(limit: float, quiet_samples: int = 3) -> dict[str, Any]:
    """Sample the background load each second until it stays low ``quiet_samples`` times, at most ``limit`` s."""
    deadline = time.monotonic() + limit
    quiet = 0
    waited = False
    while True:
        bg = background_load()
        quiet = quiet + 1 if bg["busy_cpus"] <= BUSY_WARN else 0
        if quiet >= quiet_samples or time.monotonic() >= deadline:
            return bg
        if not waited and quiet == 0:
            log(f"waiting up to {limit:.0f}s for the machine to be idle ({bg['busy_cpus']:.2f} CPUs busy: "
                + ", ".join(f"{t['comm']}[{t['pid']}]" for t in bg["top"]) + ")")
            waited = True


# -- the agent ------------------------------------------------------------------------
#: The benchmark's own tracer (bench/tracers) is not built in, so the agent would run it as an
#: untrusted tracer (an event-rate limit of 10,000/s among others): measure the pipeline as a
#: built-in tracer gets it. Any such drop would still be counted (the "rate" hop).
UNLIMITED = [f"--custom-limit={item}" for item in ("event-rate=none", "memory=none", "cpu=none", "bpf-budget=none",
                                                    "drop-privileges=no")]


class Agent:
    """``eunomiactl run`` in a subprocess, with its own runtime dir and database."""

    def __init__(self, tmp: Path, extra: list[str] | None = None) -> None:
        self.runtime = tmp / "run"
        self.db = tmp / "b.db"
        self.log_path = tmp / "agent.log"
        self.socket = self.runtime / "eunomia.sock"
        script = Path(sys.executable).parent / "eunomiactl"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "supervisor.cli.main"]
        self.cmd = [*cmd, "run", "--runtime-dir", str(self.runtime), "--db", str(self.db), "--no-config",
                    "--no-default-tracers", "--tracer-path", str(TRACERS), *UNLIMITED, *(extra or [])]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     stdin=subprocess.DEVNULL)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://agent",
                                 timeout=30)
        self.pid = self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"the agent exited with status {self.proc.returncode}:\n{self.log_tail()}")

    def wait_up(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.socket.exists():
                try:
                    health = self.get("/health")
                    self.pid = int(health["pid"])
                    return health
                except httpx.HTTPError:
                    pass
            time.sleep(0.1)
        raise BenchError(f"the agent's API did not come up within {timeout:.0f}s:\n{self.log_tail()}")

    def get(self, url: str) -> Any:
        r = self.http.get(url)
        r.raise_for_status()
        return r.json()

    def start(self, tracer: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.http.post("/instances", json={"tracer": tracer, "args": args or {}})
        if r.status_code != 201:
            raise BenchError(f"POST /instances {tracer}: HTTP {r.status_code}: {r.text}")
        return r.json()

    def wait_running(self, instance_id: str, timeout: float = 60.0, interval: float = 0.01) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.get(f"/instances/{instance_id}")
            if info["state"] == "running":
                return info
            if info["state"] in ("fatal", "backoff", "stopped"):
                raise BenchError(f"{instance_id} is {info['state']}: {info['last_error']}\n{info['last_error_log']}")
            time.sleep(interval)
        raise BenchError(f"{instance_id} not running after {timeout:.0f}s")

    def delete(self, instance_id: str, timeout: float = 30.0) -> None:
        """DELETE the instance and wait until it is gone (worker exited)."""
        self.http.delete(f"/instances/{instance_id}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.http.get(f"/instances/{instance_id}").status_code == 404:
                return
            time.sleep(0.02)
        raise BenchError(f"{instance_id} still there {timeout:.0f}s after DELETE")

    def stop(self, timeout: float = 20.0) -> int | None:
        try:
            self.http.close()
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"  ! the agent did not stop within {timeout:.0f}s of SIGTERM; killing it")
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -- the producer ---------------------------------------------------------------------
class Producer:
    def __init__(self, cmd: list[str], rate: int, seconds: float) -> None:
        self.proc = subprocess.Popen([*cmd, str(rate), str(seconds), str(TICK_US)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split() if self.proc.stdout else []
        if len(line) != 2 or line[0] != "ready":
            self.kill()
            raise BenchError(f"the producer did not start (said {line!r})")
        self.pid = int(line[1])

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self, timeout: float) -> dict[str, Any]:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"the producer did not finish within {timeout:.0f}s") from None
        if self.proc.returncode != 0:
            raise BenchError(f"the producer exited with status {self.proc.returncode}")
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def build_producer(tmp: Path) -> tuple[list[str], str]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc:
        exe = tmp / "producer"
        r = subprocess.run([gcc, "-O2", "-Wall", "-o", str(exe), str(PRODUCER_C)], capture_output=True, text=True)
        if r.returncode == 0:
            return [str(exe)], f"C ({Path(gcc).name} -O2, {PRODUCER_C.relative_to(REPO)})"
        log(f"  ! gcc failed, using the Python producer:\n{r.stderr}")
    script = tmp / "producer.py"
    script.write_text(PY_PRODUCER)
    return [sys.executable, str(script)], "Python (no C compiler found; pacing is less precise)"


# -- measurements ---------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def bench_start_latency(agent: Agent, tracer: str, n: int) -> dict[str, Any]:
    log(f"\n[b] start latency: {tracer} x{n} (POST /instances -> state running, polled every 10 ms)")
    samples = []
    for k in range(n):
        t0 = time.monotonic()
        inst = agent.start(tracer)
        agent.wait_running(inst["id"])
        latency = time.monotonic() - t0
        samples.append(latency)
        t1 = time.monotonic()
        agent.delete(inst["id"])
        log(f"  {k + 1:2d}/{n}: {latency * 1000:7.0f} ms to running, {(time.monotonic() - t1) * 1000:5.0f} ms to stop")
    return {"tracer": tracer, "n": n, "samples_s": [round(s, 4) for s in samples],
            "p50_s": round(statistics.median(samples), 4), "p95_s": round(percentile(samples, 0.95), 4),
            "min_s": round(min(samples), 4), "max_s": round(max(samples), 4),
            "target_p50_s": TARGET_START_P50, "meets_target": statistics.median(samples) <= TARGET_START_P50}


def bench_memory(agent: Agent, settle: float) -> dict[str, Any]:
    log(f"\n[c] memory: starting {', '.join(BUILTINS)}; reading smaps_rollup {settle:.0f}s after all are running")
    ids = [agent.start(name)["id"] for name in BUILTINS]
    for instance_id in ids:
        agent.wait_running(instance_id)
    time.sleep(settle)
    workers = []
    for instance_id in ids:
        info = agent.get(f"/instances/{instance_id}")
        if info["state"] != "running" or not info["pid"]:
            raise BenchError(f"{instance_id} is {info['state']} during the memory reading: {info['last_error']}")
        mem = memory_of(info["pid"])
        workers.append({"instance": instance_id, "tracer": info["tracer"], "pid": info["pid"], **mem,
                        "meets_target_uss": mem["uss_mb"] <= TARGET_PRIVATE_MB,
                        "meets_target_private_dirty": mem["private_dirty_mb"] <= TARGET_PRIVATE_MB})
    supervisor = {"pid": agent.pid, **memory_of(agent.pid)}
    for instance_id in ids:
        agent.delete(instance_id)
    return {"settle_s": settle, "workers": workers, "supervisor": supervisor, "target_private_mb": TARGET_PRIVATE_MB}


def settle_counters(agent: Agent, instance_id: str, produced: int, written0: int, quiet: float,
                    timeout: float) -> tuple[dict[str, Any], dict[str, Any], str, float]:
    """Poll the instance and the store until every produced event is accounted for, or nothing moves."""
    t0 = time.monotonic()
    last_sig: tuple[int, ...] | None = None
    last_change = t0
    while True:
        info = agent.get(f"/instances/{instance_id}")
        store = agent.get("/health")["store"] or {}
        d = info["drops"]
        written = store.get("events_written", 0) - written0
        sig = (info["events"], d["kernel"], d["ipc"], d["hook"], d.get("rate", 0), d["store"], written)
        now = time.monotonic()
        if (info["events"] + d["kernel"] + d["ipc"] + d["hook"] + d.get("rate", 0) == produced
                and written + d["store"] == info["events"]):
            time.sleep(1.1)  # one more worker heartbeat: nothing may move any more
            info2 = agent.get(f"/instances/{instance_id}")
            store2 = agent.get("/health")["store"] or {}
            return info2, store2, "complete", time.monotonic() - t0
        if sig != last_sig:
            last_sig, last_change = sig, now
        elif now - last_change >= quiet:
            return info, store, f"stable {quiet:.0f}s (incomplete)", now - t0
        if now - t0 >= timeout:
            return info, store, f"timeout {timeout:.0f}s", now - t0
        time.sleep(0.25)


def last_seq(agent: Agent, instance_id: str) -> int | None:
    try:
        rows = agent.get(f"/events?instance={instance_id}&limit=1")
    except httpx.HTTPError:
        return None
    return int(rows[0]["seq"]) if rows and "seq" in rows[0] else None


def throughput_step(agent: Agent, producer_cmd: list[str], rate: int, seconds: float, quiet: float,
                    settle_timeout: float) -> dict[str, Any]:
    producer = Producer(producer_cmd, rate, seconds)
    instance_id = None
    try:
        written0 = (agent.get("/health")["store"] or {}).get("events_written", 0)
        t0 = time.monotonic()
        inst = agent.start("benchev", {"pid": producer.pid})
        instance_id = inst["id"]
        info = agent.wait_running(instance_id)
        start_s = time.monotonic() - t0
        worker_pid = info["pid"]
        w_cpu0, s_cpu0 = cpu_seconds(worker_pid), thread_cpu(agent.pid)
        procs0 = all_process_cpu()
        producer.go()
        result = producer.result(timeout=seconds * 5 + 30)
        produced = int(result["calls"])
        info, store, how, settle_s = settle_counters(agent, instance_id, produced, written0, quiet, settle_timeout)
        w_cpu1, s_cpu1 = cpu_seconds(worker_pid), thread_cpu(agent.pid)
        procs1 = all_process_cpu()
        other_cpu = foreign_cpu(procs0, procs1, {os.getpid(), agent.pid, worker_pid, producer.pid})
        worker_mem = memory_of(worker_pid) if info["pid"] else {}
        seq = last_seq(agent, instance_id)
    finally:
        producer.kill()
        if instance_id is not None:
            agent.delete(instance_id)
    d = info["drops"]
    delivered = info["events"]
    stored = store.get("events_written", 0) - written0
    accounted = delivered + d["kernel"] + d["ipc"] + d["hook"] + d.get("rate", 0)
    achieved = produced / result["seconds"] if result["seconds"] > 0 else 0.0
    balance = accounted == produced and stored + d["store"] == delivered
    zero_loss = balance and stored == produced and not any(d.values())
    return {
        "target_rate": rate, "achieved_rate": round(achieved), "rate_achieved": achieved >= ACHIEVED_FRACTION * rate,
        "seconds": round(result["seconds"], 3), "producer_max_lag_s": result["max_lag_s"],
        "producer_cpu_s": round(result["user_s"] + result["sys_s"], 2),
        "producer_ns_per_call": round((result["user_s"] + result["sys_s"]) / produced * 1e9) if produced else None,
        "produced": produced, "delivered": delivered, "stored": stored, "drops": d,
        "unaccounted": produced - accounted, "kernel_last_seq": seq,
        "balance": balance, "zero_loss": zero_loss, "settle": how, "settle_s": round(settle_s, 2),
        "start_s": round(start_s, 3), "worker_cpu_s": round(w_cpu1 - w_cpu0, 2),
        "supervisor_cpu_s": delta(s_cpu1, s_cpu0),
        "other_cpu_s": round(other_cpu, 2),
        "worker_private_dirty_mb": round(worker_mem.get("private_dirty_mb", 0), 1),
        "supervisor_rss_mb": round(memory_of(agent.pid)["rss_mb"], 1),
    }


STEP_HEADER = (f"  {'target/s':>9} {'achieved/s':>10} {'produced':>9} {'delivered':>9} {'stored':>9} "
               f"{'kernel':>7} {'ipc':>5} {'store':>5} {'balance':>7} {'0-loss':>6} "
               f"{'settle':>6} {'wrk CPU':>7} {'sup CPU':>7}")


def step_line(s: dict[str, Any]) -> str:
    d = s["drops"]
    rate = f"{s['achieved_rate']:>10,}" + ("" if s["rate_achieved"] else "!")
    sup = sum(s["supervisor_cpu_s"].values())
    return (f"  {s['target_rate']:>9,} {rate:<10} {s['produced']:>9,} {s['delivered']:>9,} {s['stored']:>9,} "
            f"{d['kernel']:>7,} {d['ipc']:>5,} {d['store']:>5,} {'yes' if s['balance'] else 'NO':>7} "
            f"{'yes' if s['zero_loss'] else 'NO':>6} {s['settle_s']:>5.1f}s {s['worker_cpu_s']:>6.2f}s {sup:>6.2f}s"
            + ("  * disturbed" if s["other_cpu_s"] > DISTURBED_CPU_S else ""))


def bench_throughput(agent: Agent, producer_cmd: list[str], rates: list[int], seconds: float, quiet: float,
                     settle_timeout: float, budget: float) -> dict[str, Any]:
    log(f"\n[a] throughput: benchev on getppid(2), {seconds:g}s per step, fresh instance per step; "
        "stops at the first step with loss or an unreached rate")
    log(STEP_HEADER)
    steps = []
    t0 = time.monotonic()
    stop_reason = "all steps passed"
    for rate in rates:
        if time.monotonic() - t0 > budget:
            stop_reason = f"time budget of {budget:.0f}s used up"
            break
        step = throughput_step(agent, producer_cmd, rate, seconds, quiet, settle_timeout)
        steps.append(step)
        log(step_line(step))
        if not step["zero_loss"]:
            stop_reason = f"loss at {rate:,}/s"
            break
        if not step["rate_achieved"]:
            stop_reason = f"the producer reached only {step['achieved_rate']:,} of {rate:,} calls/s"
            break
    good = [s for s in steps if s["zero_loss"] and s["rate_achieved"]]
    best = max(good, key=lambda s: s["target_rate"]) if good else None
    return {"duration_s": seconds, "steps": steps, "stop_reason": stop_reason,
            "max_zero_loss_rate": best["target_rate"] if best else 0,
            "max_zero_loss_achieved_rate": best["achieved_rate"] if best else 0,
            "target_rate": TARGET_RATE, "meets_target": bool(best and best["target_rate"] >= TARGET_RATE)}


# -- report ---------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                            capture_output=True, text=True).stdout.strip()
    try:
        import bcc

        bcc_version = getattr(bcc, "__version__", "?")
    except Exception:  # noqa: BLE001 - informative only
        bcc_version = "not importable"
    uname = platform.uname()
    return {"date": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
            "host": uname.node, "nproc": os.cpu_count(), "cpu": cpu, "mem_total_mb": mem_kb // 1024,
            "kernel": f"{uname.system} {uname.release} {uname.version} {uname.machine}",
            "python": platform.python_version(), "bcc": bcc_version, "agent_commit": commit}


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_report(report: dict[str, Any]) -> None:
    m = report["machine"]
    log("\n" + "=" * 100)
    log("EUNOMIA BENCHMARK REPORT")
    log("=" * 100)
    log(f"date     {m['date']}")
    log(f"machine  nproc={m['nproc']}  cpu={m['cpu']}  mem={m['mem_total_mb']} MB")
    log(f"kernel   {m['kernel']}")
    log(f"software python {m['python']}, bcc {m['bcc']}, agent {m['agent_commit']}")
    log(f"producer {report['producer']}")
    bg = report.get("background_load")
    if bg:
        log(f"load     {bg['busy_cpus']:.2f} of {bg['of_cpus']} CPUs busy before the run"
            + ("  ! NOT IDLE: figures are affected by other load" if bg["busy_cpus"] > BUSY_WARN else " (idle)"))

    t = report.get("throughput")
    if t:
        log(f"\n(a) End-to-end throughput with zero loss  [target: >= {TARGET_RATE:,} events/s]")
        log(f"    producer: getppid(2) at a fixed rate for {t['duration_s']:g}s; delivered = supervisor's `events`; "
            "stored = store events_written delta")
        log("    balance: produced == delivered + drops(kernel+ipc+hook) and delivered == stored + drops(store);"
            " '!' = rate not reached;")
        log(f"    '* disturbed' = more than {DISTURBED_CPU_S:g} CPU-s used by other processes during the step")
        log(STEP_HEADER)
        for s in t["steps"]:
            log(step_line(s))
        log("    per step: start = POST->running of the benchev instance; settle = time after the producer "
            "ended until all counters were final")
        for s in t["steps"]:
            sup = s["supervisor_cpu_s"]
            log(f"    {s['target_rate']:>9,}/s: start {s['start_s']:.2f}s, settle: {s['settle']}, "
                f"last kernel seq {s['kernel_last_seq']}, producer CPU {s['producer_ns_per_call']} ns/call "
                "(syscall+probe+pacing)")
            log(f"    {'':>11} CPU: worker {s['worker_cpu_s']:.2f}s; supervisor loop {sup['main']:.2f}s, "
                f"zmq {sup['zmq']:.2f}s, other threads (store writer) {sup['other']:.2f}s; "
                f"supervisor RSS {s['supervisor_rss_mb']:.0f} MB; CPU of other processes {s['other_cpu_s']:.2f}s")
        log(f"    stopped: {t['stop_reason']}")
        log(f"    => highest rate with zero loss: {t['max_zero_loss_rate']:,}/s "
            f"(achieved {t['max_zero_loss_achieved_rate']:,}/s)   [{_mark(t['meets_target'])}: target >= "
            f"{TARGET_RATE:,}/s]")

    s = report.get("start_latency")
    if s:
        log(f"\n(b) Tracer start latency: {s['tracer']} x{s['n']}, POST /instances -> state running  "
            f"[target: p50 <= {TARGET_START_P50:.1f} s]")
        log(f"    p50 {s['p50_s'] * 1000:.0f} ms   p95 {s['p95_s'] * 1000:.0f} ms   "
            f"(min {s['min_s'] * 1000:.0f} ms, max {s['max_s'] * 1000:.0f} ms)   [{_mark(s['meets_target'])}]")
        if t and t["steps"]:
            bs = [x["start_s"] for x in t["steps"]]
            log(f"    (benchev starts during (a): p50 {statistics.median(bs) * 1000:.0f} ms over {len(bs)} starts)")

    mem = report.get("memory")
    if mem:
        log(f"\n(c) Memory, {', '.join(BUILTINS)} running, read {mem['settle_s']:.0f}s after all were running "
            "(/proc/PID/smaps_rollup, MB)")
        log(f"    target: at most {TARGET_PRIVATE_MB:.0f} MB private memory (USS = Private_Clean + Private_Dirty) "
            "per worker once its tracer is loaded")
        log(f"    {'process':<22} {'pid':>7} {'RSS':>7} {'PSS':>7} {'USS':>7} {'Priv_Dirty':>10} {'Anon':>7}  target")
        for w in mem["workers"]:
            verdict = (f"{_mark(w['meets_target_uss'])} (USS), "
                       f"{_mark(w['meets_target_private_dirty'])} (Private_Dirty)")
            log(f"    {'worker ' + w['tracer']:<22} {w['pid']:>7} {w['rss_mb']:>7.1f} {w['pss_mb']:>7.1f} "
                f"{w['uss_mb']:>7.1f} {w['private_dirty_mb']:>10.1f} {w['anonymous_mb']:>7.1f}  {verdict}")
        sv = mem["supervisor"]
        log(f"    {'supervisor':<22} {sv['pid']:>7} {sv['rss_mb']:>7.1f} {sv['pss_mb']:>7.1f} {sv['uss_mb']:>7.1f} "
            f"{sv['private_dirty_mb']:>10.1f} {sv['anonymous_mb']:>7.1f}  -")
        after = report.get("supervisor_memory_after_throughput")
        if after:
            log(f"    {'supervisor after (a)':<22} {after['pid']:>7} {after['rss_mb']:>7.1f} {after['pss_mb']:>7.1f} "
                f"{after['uss_mb']:>7.1f} {after['private_dirty_mb']:>10.1f} {after['anonymous_mb']:>7.1f}  -")

    log("\nSummary")
    if t:
        log(f"  [{_mark(t['meets_target'])}] throughput, zero loss: {t['max_zero_loss_rate']:,}/s  "
            f"(target >= {TARGET_RATE:,}/s)")
    if s:
        log(f"  [{_mark(s['meets_target'])}] start latency p50: {s['p50_s']:.3f} s, p95 {s['p95_s']:.3f} s  "
            f"(target p50 <= {TARGET_START_P50:.1f} s)")
    if mem:
        worst = max(mem["workers"], key=lambda w: w["uss_mb"])
        worst_pd = max(w["private_dirty_mb"] for w in mem["workers"])
        ok = all(w["meets_target_uss"] for w in mem["workers"])
        log(f"  [{_mark(ok)}] worker private memory: max USS {worst['uss_mb']:.1f} MB ({worst['tracer']}), "
            f"max Private_Dirty {worst_pd:.1f} MB  (target <= {TARGET_PRIVATE_MB:.0f} MB per worker)")
    if report.get("errors"):
        log("  errors:")
        for e in report["errors"]:
            log(f"    {e}")
    log(f"\nJSON report: {RESULTS.relative_to(REPO)}   (total run time {report['run_seconds']:.0f}s)")


# -- main -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                   help="comma-separated producer rates (calls/s), in increasing order")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of load per step")
    p.add_argument("--starts", type=int, default=10, help="tracer starts for the latency figure")
    p.add_argument("--start-tracer", default="process", help="tracer whose start latency is measured")
    p.add_argument("--memory-settle", type=float, default=3.0, help="seconds to wait before reading memory")
    p.add_argument("--quiet", type=float, default=6.0,
                   help="settle: give up waiting for missing events after this many seconds without change")
    p.add_argument("--settle-timeout", type=float, default=90.0, help="settle: hard limit per step")
    p.add_argument("--budget", type=float, default=200.0, help="no new throughput step after this many seconds")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: throughput,start,memory")
    p.add_argument("--wait-idle", type=float, default=120.0,
                   help="wait at most this many seconds for other load to stop before measuring (0: do not wait)")
    p.add_argument("--keep", action="store_true", help="keep the temporary dir (agent log, database)")
    p.add_argument("--no-containers", action="store_true", help="run the agent without container columns")
    return p.parse_args(argv)


def _sigterm(_sig: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run.py needs root (it runs the agent, which loads eBPF programs)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    signal.signal(signal.SIGTERM, _sigterm)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="eunomia-bench-"))
    report: dict[str, Any] = {"machine": machine_info(), "errors": []}
    agent: Agent | None = None
    producer_cmd, report["producer"] = build_producer(tmp)
    status = 0
    try:
        m = report["machine"]
        log(f"Eunomia benchmark, {m['date']}, nproc={m['nproc']}, kernel {platform.release()}; work dir {tmp}")
        report["background_load"] = bg = wait_idle(args.wait_idle)
        log(f"background load before the run: {bg['busy_cpus']:.2f} of {bg['of_cpus']} CPUs busy"
            + "".join(f"; {t['comm']}[{t['pid']}] {t['cpu_share']:.0%}" for t in bg["top"]))
        if bg["busy_cpus"] > BUSY_WARN:
            log("  ! WARNING: the machine is not idle; the figures below are affected by other load")
        agent = Agent(tmp, ["--no-containers"] if args.no_containers else None)
        log(f"agent: {' '.join(agent.cmd)}")
        agent.wait_up()
        if "start" not in skip:
            report["start_latency"] = bench_start_latency(agent, args.start_tracer, args.starts)
        if "memory" not in skip:
            report["memory"] = bench_memory(agent, args.memory_settle)
        if "throughput" not in skip:
            report["throughput"] = bench_throughput(agent, producer_cmd, rates, args.duration, args.quiet,
                                                    args.settle_timeout, args.budget)
            report["supervisor_memory_after_throughput"] = {"pid": agent.pid, **memory_of(agent.pid)}
        agent.check_alive()
        health = agent.get("/health")
        report["agent_health"] = {k: health.get(k) for k in ("status", "bad_frames", "last_bad_frame",
                                                             "unknown_instance_frames", "store")}
    except KeyboardInterrupt:
        report["errors"].append("interrupted")
        status = 130
    except (BenchError, httpx.HTTPError, OSError) as exc:
        report["errors"].append(f"{exc.__class__.__name__}: {exc}")
        log(f"\n! benchmark failed: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if agent is not None:
            code = agent.stop()
            report["agent_exit_status"] = code
            if code not in (0, None):
                report["errors"].append(f"the agent exited with status {code} on SIGTERM")
            if status:
                log(f"--- agent log (tail) ---\n{agent.log_tail()}")
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["run_seconds"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    return status


if __name__ == "__main__":
    sys.exit(main())
