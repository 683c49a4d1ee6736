"""Export handlers end to end: two tcpconnect instances, each with its own handlers, see exactly
the connects this test makes to its own listener, and no more; a real Prometheus server scrapes
the agent's metrics listener and a PromQL query returns the exact count."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.agentctl import EUNOMIACTL, REPO, Agent, wait_for

N_A = 7  # connects to A's port
N_B = 5  # connects to B's port
B_BUFFER = 3  # B's file handler holds this many events while its path is unwritable


def _find_or_install(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", package]
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True, timeout=600)
            result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        path = shutil.which(binary)
        if path is None:
            pytest.fail(f"the Prometheus test needs `{binary}`; `apt-get install {package}` failed "
                        f"({result.returncode}):\n{result.stderr[-2000:]}")
    return path


def _connect(port: int, listener: socket.socket, times: int) -> None:
    for _ in range(times):
        with socket.create_connection(("127.0.0.1", port)):
            pass
        listener.accept()[0].close()


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


@dataclass
class Setup:
    agent: Agent
    metrics: str  # host:port of the TCP metrics listener
    a: dict[str, Any]  # stdout + file + prometheus, port_a
    b: dict[str, Any]  # file (unwritable at first, small buffer) + sqlite, port_b
    port_a: int
    port_b: int
    file_a: Path
    file_b: Path
    blocker: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("export")
    agent = Agent(tmp, tracers=[], extra=["--metrics-listen", "127.0.0.1:0"])
    la, lb = _listener(), _listener()
    try:
        agent.wait_running()
        metrics = agent.get("/health")["metrics_address"]
        port_a, port_b = la.getsockname()[1], lb.getsockname()[1]
        file_a = tmp / "a" / "tcp.jsonl"
        blocker = tmp / "b"
        blocker.write_text("a file where B's folder should be: B's file handler cannot write")
        file_b = blocker / "tcp.jsonl"
        response = agent.request("POST", "/start", json={  # Eunomia's API
            "name": "tcpconnect", "args": ["-P", str(port_a)],
            "export_handlers": [
                {"name": "stdout", "args": []},
                {"name": "file", "args": [str(file_a), "max_bytes=1200", "keep=50", "samples=false"]},
                {"name": "prometheus", "args": ["tcp_connects_total", "tcp_connect_latency_seconds"]}]})
        assert response.status_code == 201, response.text
        a = response.json()
        b = agent.start("tcpconnect", {"port": port_b}, id=f"export-b-{os.getpid()}", export_handlers=[
            {"name": "file", "args": {"path": str(file_b), "samples": False, "buffer": B_BUFFER, "retry_max": 0.5}},
            {"name": "sqlite"}])
        for inst in (a, b):
            agent.wait_state(inst["id"], "running")
        _connect(port_a, la, N_A)
        _connect(port_b, lb, N_B)
        yield Setup(agent, metrics, a, b, port_a, port_b, file_a, file_b, blocker)
    finally:
        la.close()
        lb.close()
        agent.stop()


def _events_in(data: bytes) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in data.splitlines() if line.startswith(b'{"')]
    return [r for r in records if "metric" not in r]


def _file_events(path: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    files = sorted(path.parent.glob(path.name + "*"))
    return [e for f in files for e in _events_in(f.read_bytes())], files


def test_stdout_gets_exactly_its_instances_connects(setup: Setup) -> None:
    a_id, b_id = setup.a["id"], setup.b["id"]

    def mine() -> list[dict[str, Any]] | None:
        events = [e for e in _events_in(setup.agent.log_path.read_bytes()) if e["instance"] == a_id]
        return events if len(events) >= N_A else None

    events = wait_for(mine, 20, f"{N_A} connect events of {a_id} on the agent's stdout")
    assert len(events) == N_A
    assert {(e["tracer"], e["dport"], e["daddr"], e["pid"], e["result"]) for e in events} == {
        ("tcpconnect", setup.port_a, "127.0.0.1", os.getpid(), "established")}
    stdout = _events_in(setup.agent.log_path.read_bytes())
    assert not [e for e in stdout if e["instance"] == b_id or e.get("dport") == setup.port_b]  # B has no stdout


def test_file_rotates_and_keeps_every_event(setup: Setup) -> None:
    def complete() -> tuple[list[dict[str, Any]], list[Path]] | None:
        events, files = _file_events(setup.file_a)
        return (events, files) if len(events) >= N_A else None

    events, files = wait_for(complete, 20, f"{N_A} events in {setup.file_a}*")
    assert len(events) == N_A and {e["dport"] for e in events} == {setup.port_a}
    assert {e["instance"] for e in events} == {setup.a["id"]}
    assert len(files) >= 2, f"no rotation: {files}"
    assert all(f.stat().st_size <= 1200 for f in files)


def test_only_the_instance_with_sqlite_reaches_the_store(setup: Setup) -> None:
    b_events = wait_for(lambda: len(e := setup.agent.events(instance=setup.b["id"])) >= N_B and e, 20,
                        f"{N_B} events of {setup.b['id']} in the store")
    assert len(b_events) == N_B and {e["dport"] for e in b_events} == {setup.port_b}
    assert setup.agent.events(instance=setup.a["id"]) == []  # A has no sqlite handler


def test_unwritable_file_is_retried_within_its_buffer_without_stalling_the_rest(setup: Setup) -> None:
    b_id = setup.b["id"]
    handler = wait_for(lambda: (h := setup.agent.instance(b_id)["export_handlers"][0])["errors"] >= 2 and
                       h["queued"] + h["dropped"] == N_B and h, 20, "B's file handler failing and holding its events")
    assert handler["sent"] == 0 and str(setup.blocker) in handler["last_error"]
    assert (handler["queued"], handler["dropped"]) == (B_BUFFER, N_B - B_BUFFER)  # the bound is filled, no more
    inst = setup.agent.instance(b_id)
    assert inst["state"] == "running" and inst["events"] == N_B
    assert inst["drops"]["exporter"] == handler["dropped"] and inst["drops"]["store"] == 0

    setup.blocker.unlink()  # the path becomes writable: what was held is delivered
    done = wait_for(lambda: (h := setup.agent.instance(b_id)["export_handlers"][0])["queued"] == 0 and h, 20,
                    "B's file handler to deliver what it held")
    events, _ = _file_events(setup.file_b)
    assert len(events) == done["sent"] == B_BUFFER and done["dropped"] == N_B - B_BUFFER  # none lost uncounted
    assert {e["dport"] for e in events} == {setup.port_b}


def test_metrics_listener_serves_metrics_only(setup: Setup) -> None:
    base = f"http://{setup.metrics}"
    text = httpx.get(f"{base}/metrics", timeout=10).text
    assert f'eunomia_instance_events_total{{instance_id="{setup.b["id"]}",tracer="tcpconnect"}}' in text
    for method, path in [("GET", "/instances"), ("POST", "/instances"), ("GET", "/health"), ("GET", "/openapi.json"),
                         ("GET", "/docs"), ("POST", "/start"), ("DELETE", f"/instances/{setup.a['id']}"),
                         ("POST", "/metrics")]:
        status = httpx.request(method, f"{base}{path}", timeout=10).status_code
        assert status in (404, 405), f"{method} {path} answered {status} on the metrics listener"
    on_socket = setup.agent.request("GET", "/metrics")  # the control socket serves it too
    assert on_socket.status_code == 200 and "eunomia_instance_state" in on_socket.text


def test_promtool_finds_no_naming_problem(setup: Setup) -> None:
    promtool = _find_or_install("promtool", "prometheus")
    text = httpx.get(f"http://{setup.metrics}/metrics", timeout=10).content
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


@pytest.fixture(scope="module")
def prometheus(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _find_or_install("prometheus", "prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                      f"scrape_configs:\n  - job_name: eunomia\n    static_configs:\n"
                      f"      - targets: ['{setup.metrics}']\n")
    for _attempt in range(3):  # a free port may be taken between choosing it and Prometheus binding it
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log = open(tmp / "prometheus.log", "wb")
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        def ready(proc: subprocess.Popen[bytes] = proc, url: str = url) -> bool | None:
            if proc.poll() is not None:
                return None
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and ready() is False:
            time.sleep(0.2)
        if ready():
            break
        proc.kill()
        proc.wait()
        log.close()
    else:
        pytest.fail(f"Prometheus did not start:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(url: str, promql: str) -> float | None:
    result = _query(url, promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_scrapes_the_exact_count(setup: Setup, prometheus: str) -> None:
    a_id, b_id = setup.a["id"], setup.b["id"]
    wait_for(lambda: _value(prometheus, 'up{job="eunomia"}') == 1, 30, "Prometheus to scrape the agent")
    connects = f'eunomia_tcp_connects_total{{instance_id="{a_id}",dport="{setup.port_a}"}}'
    assert wait_for(lambda: _value(prometheus, connects) == N_A, 30, f"{connects} == {N_A}")
    assert _value(prometheus, f'sum(eunomia_tcp_connects_total{{instance_id="{a_id}"}})') == N_A
    latency = f'eunomia_tcp_connect_latency_seconds_bucket{{instance_id="{a_id}",le="+Inf"}}'
    assert wait_for(lambda: _value(prometheus, latency) == N_A, 30, "the latency histogram's +Inf bucket")
    buckets = _query(prometheus, f'eunomia_tcp_connect_latency_seconds_bucket{{instance_id="{a_id}"}}')
    assert len(buckets) >= 2 and all(float(b["value"][1]) <= N_A for b in buckets)
    quantile = _value(prometheus, f'histogram_quantile(0.5, eunomia_tcp_connect_latency_seconds_bucket'
                                  f'{{instance_id="{a_id}"}})')
    assert quantile is not None and 0 < quantile < 1  # a loopback handshake: well under a second
    # B has no prometheus handler: none of its tracer metrics, but its self-metrics
    assert _query(prometheus, f'eunomia_tcp_connects_total{{instance_id="{b_id}"}}') == []
    events_b = f'eunomia_instance_events_total{{instance_id="{b_id}"}}'
    assert wait_for(lambda: _value(prometheus, events_b) == N_B, 30, f"{events_b} == {N_B}")
    running = f'eunomia_instance_state{{instance_id="{a_id}",state="running"}}'
    assert wait_for(lambda: _value(prometheus, running) == 1, 30, running)


@pytest.mark.parametrize(("handlers", "status", "needle"), [
    ([{"name": "kafka"}], 400, "export handler 'kafka': no such handler (available: "),
    ([{"name": "file", "args": ["relative.jsonl"]}], 400, "'relative.jsonl' is not an absolute path"),
    ([{"name": "file", "args": ["/tmp/x.jsonl", "keep=lots"]}], 400, "export handler 'file': argument 'keep'"),
    ([{"name": "prometheus", "args": ["nosuch_metric_*"]}], 400, "argument 'nosuch_metric_*': matches none"),
    ([{"name": "stdout", "args": ["buffer=0"]}], 400, "export handler 'stdout': argument 'buffer'"),
    ([{"name": "stdout", "colour": "red"}], 400, "export_handlers.0.colour: Extra inputs are not permitted"),
])
def test_bad_export_handlers_are_400_naming_the_handler(setup: Setup, handlers: list[dict[str, Any]], status: int,
                                                        needle: str) -> None:
    before = [i["id"] for i in setup.agent.instances()]
    response = setup.agent.request("POST", "/instances", json={"tracer": "tcpconnect", "export_handlers": handlers})
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]
    assert [i["id"] for i in setup.agent.instances()] == before


def test_eunomiactl_start_with_export_handlers_and_rm_frees_the_file(setup: Setup, tmp_path: Path) -> None:
    path = tmp_path / "cli.jsonl"
    env = {**os.environ, "EUNOMIA_SOCKET": str(setup.agent.socket)}
    instance_id = f"export-cli-{os.getpid()}"
    with _listener() as listener:
        port = listener.getsockname()[1]
        command = [*EUNOMIACTL, "start", "tcpconnect", "--id", instance_id, "--export", f"file {path} samples=false",
                   "--export", "prometheus tcp_connects_total{}", "-P", str(port)]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, cwd=REPO)
        assert result.returncode == 0, result.stderr
        inst = setup.agent.wait_state(instance_id, "running")
        assert [h["id"] for h in inst["export_handlers"]] == ["file", "prometheus"]
        assert inst["export_handlers"][1]["detail"]["exports"] == [
            "eunomia_tcp_connects_total -> eunomia_tcp_connects_total summed"]
        _connect(port, listener, 3)
        events = wait_for(lambda: len(e := _file_events(path)[0]) >= 3 and e, 20, f"3 events in {path}")
        assert len(events) == 3 and {e["dport"] for e in events} == {port}
    assert setup.agent.request("DELETE", f"/instances/{instance_id}").status_code == 204
    wait_for(lambda: instance_id not in {i["id"] for i in setup.agent.instances()}, 20, f"{instance_id} to be removed")
    again = setup.agent.request("POST", "/instances", json={
        "tracer": "tcpconnect", "args": {"port": port}, "export_handlers": [{"name": "file", "args": [str(path)]}]})
    assert again.status_code == 201, again.text  # the removed instance no longer owns the file
    setup.agent.request("DELETE", f"/instances/{again.json()['id']}")
