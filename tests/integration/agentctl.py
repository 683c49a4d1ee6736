"""Run a real agent (``eunomiactl run``) in a subprocess and talk to it over its socket."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from supervisor.containers.cgroup_index import unified_root
from supervisor.containers.cgroup_paths import cgroup_v2_path

REPO = Path(__file__).resolve().parents[2]
TEST_TRACERS = REPO / "tests" / "tracers"
EUNOMIACTL = [sys.executable, "-m", "supervisor.cli.main"]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until ``predicate`` returns something truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


class Agent:
    def __init__(self, tmp: Path, tracers: list[str] | None = None, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = Path(tmp)
        self.runtime = self.tmp / "run"
        self.db = self.tmp / "eunomia.db"
        self.socket = self.runtime / "eunomia.sock"
        self.log_path = self.tmp / "agent.log"
        self.tmp.mkdir(parents=True, exist_ok=True)
        extra = list(extra or [])
        if "--config" not in extra:
            extra.append("--no-config")  # hermetic: not the host's /etc/eunomia/eunomia.yaml
        args = [*EUNOMIACTL, "run", "--runtime-dir", str(self.runtime), "--db", str(self.db),
                "--tracer-path", str(TEST_TRACERS), "--metrics-interval", "1", *extra]
        if tracers is None:
            pass
        elif tracers:
            for name in tracers:
                args += ["--tracer", name]
        else:
            args.append("--no-default-tracers")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env={**os.environ, **(env or {})})
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://agent",
                                 timeout=30)

    # -- HTTP ------------------------------------------------------------------------
    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, url, **kwargs)

    def get(self, url: str, **params: Any) -> Any:
        response = self.request("GET", url, params=params)
        response.raise_for_status()
        return response.json()

    def start(self, tracer: str, args: dict[str, Any] | list[str] | None = None, **body: Any) -> dict[str, Any]:
        response = self.request("POST", "/instances", json={"tracer": tracer, "args": args or {}, **body})
        assert response.status_code == 201, response.text
        return response.json()

    def instance(self, instance_id: str) -> dict[str, Any]:
        return self.get(f"/instances/{instance_id}")

    def instances(self) -> list[dict[str, Any]]:
        return self.get("/instances")

    def by_tracer(self, tracer: str) -> dict[str, Any]:
        matches = [i for i in self.instances() if i["tracer"] == tracer]
        assert len(matches) == 1, f"expected one {tracer} instance, got {matches}"
        return matches[0]

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        return self.get("/events", limit=100_000, **filters)

    def latest(self, name: str, **labels: Any) -> list[dict[str, Any]]:
        """The latest sample of every series of ``name`` whose labels include ``labels``
        (values compared as text: labels are strings)."""
        want = {key: str(value) for key, value in labels.items()}
        return [s for s in self.get("/samples", name=name, latest=True, limit=100_000)
                if all(s["labels"].get(key) == value for key, value in want.items())]

    # -- lifecycle -------------------------------------------------------------------
    def wait_running(self, timeout: float = 60) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            if not self.socket.exists():
                return None
            try:
                instances = self.instances()
            except httpx.HTTPError:
                return None
            return (instances,) if all(i["state"] == "running" for i in instances) else None

        return wait_for(ready, timeout, "every instance to be running")[0]

    def wait_state(self, instance_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(lambda: (i := self.instance(instance_id))["state"] == state and i, timeout,
                        f"{instance_id} to be {state}")

    def worker_pids(self) -> set[int]:
        try:
            return {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"agent did not stop within {timeout}s on SIGTERM:\n{self.log()}") from None
        self.http.close()
        self._log.close()
        return self.proc.returncode


def workers_alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def compile_c(folder: Path, name: str, source: str, flags: Iterable[str] = ("-O2",)) -> Path:
    """Write ``source`` to ``folder/name.c`` and build ``folder/name`` with gcc and ``flags``."""
    (folder / f"{name}.c").write_text(source)
    subprocess.run(["gcc", *flags, "-o", str(folder / name), str(folder / f"{name}.c")], check=True)
    return folder / name


def unique(prefix: str) -> str:
    """A name no other process has, short enough to be a whole comm (15 bytes)."""
    name = f"{prefix}{(os.getpid() * 7919 + time.monotonic_ns() // 1000) % 10**6:06d}"
    assert len(name) <= 15, f"{name!r} would be truncated as a comm"
    return name


def _cgroup_root() -> Path:
    root = unified_root()
    assert root is not None, "no cgroup v2 hierarchy on this host"
    return root


def cgroup_id_of(pid: int) -> int:
    """The cgroup v2 id of a process, as bpf_get_current_cgroup_id() gives it: the inode of
    its directory in the unified hierarchy (the path on the ``0::`` line of /proc/PID/cgroup)."""
    path = cgroup_v2_path(Path(f"/proc/{pid}/cgroup").read_text())
    assert path is not None, f"process {pid} is in no cgroup v2"
    return os.stat(_cgroup_root() / path.lstrip("/")).st_ino


@contextmanager
def private_cgroup(prefix: str = "eunomia-test") -> Iterator[Path]:
    """A new cgroup v2 directory, so that what its processes do has a cgroup id of its own
    (everything else on a test host is mostly in the root cgroup, id 1). Its processes are
    moved back to the root cgroup and it is removed afterwards."""
    root = _cgroup_root()
    path = root / f"{prefix}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (root / "cgroup.procs").write_text(pid)
            except ProcessLookupError:
                pass  # exited meanwhile
        path.rmdir()


def enter_cgroup(cgroup: Path) -> Callable[[], None]:
    """A ``preexec_fn`` for subprocess.Popen: the child moves itself into ``cgroup`` before
    it execs (so the program runs there from its first instruction)."""
    procs = str(cgroup / "cgroup.procs")

    def enter() -> None:
        with open(procs, "w") as fh:
            fh.write("0")

    return enter


@contextmanager
def child_in_cgroup(argv: list[str], cgroup: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running in ``cgroup`` from its first instruction, stdin and stdout piped (the
    tests' programs wait on stdin for each step); killed, reaped and its pipes closed after."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=enter_cgroup(cgroup))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def joined_cgroup(cgroup: Path) -> Iterator[None]:
    """This (test) process inside ``cgroup`` for the block, then back where it was."""
    here = cgroup_v2_path(Path("/proc/self/cgroup").read_text()) or "/"
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))
    try:
        yield
    finally:
        (_cgroup_root() / here.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))


def find_or_install_nft(why: str) -> str:
    """nft from the system, or installed with apt-get now (the repository's setup is left alone)."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "nftables"]
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:  # perhaps no package lists yet
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
            result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if nft is None:
            pytest.fail(f"{why} with nftables, but `nft` is not installed and "
                        f"`apt-get install nftables` failed ({result.returncode}):\n{result.stderr[-2000:]}")
    check = subprocess.run([nft, "list", "tables"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.fail(f"`nft list tables` failed, is nf_tables in this kernel? {check.stderr.strip()}")
    return nft
