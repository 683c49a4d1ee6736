"""The Docker source against a fake Docker Engine API client: list, event stream, reconnects."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from supervisor.config import ContainerSettings
from supervisor.containers.docker_source import DockerSource
from supervisor.containers.info import Namespaces
from supervisor.containers.registry import ContainerRegistry
from supervisor.containers.service import ContainerService, docker_url

A = "a" * 64
B = "b" * 64
POD = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
       "io.kubernetes.pod.uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "io.kubernetes.container.name": "nginx"}


def inspect_data(cid: str, name: str, image: str, pid: int = 0, labels: dict | None = None) -> dict[str, Any]:
    return {"Id": cid, "Name": "/" + name, "Image": "sha256:" + "c" * 64, "Created": "2026-01-02T03:04:05.123456789Z",
            "Config": {"Image": image, "Labels": labels or {}},
            "State": {"Status": "running" if pid else "created", "Running": bool(pid), "Pid": pid}}


class FakeStream:
    def __init__(self) -> None:
        self.items: queue.Queue[dict | None] = queue.Queue()
        self.closed = False

    def __iter__(self) -> FakeStream:
        return self

    def __next__(self) -> dict:
        item = self.items.get()
        if item is None:
            raise StopIteration
        return item

    def close(self) -> None:
        self.closed = True
        self.items.put(None)


class FakeAPI:
    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}
        self.streams: list[FakeStream] = []
        self.since: list[str] = []

    def containers(self, all: bool = False) -> list[dict[str, Any]]:
        return [{"Id": cid} for cid in self.live]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        if cid not in self.live:
            raise docker.errors.NotFound(f"No such container: {cid}")
        return self.live[cid]

    def events(self, since: str, decode: bool, filters: dict) -> FakeStream:
        assert decode and filters == {"type": "container"}
        self.since.append(since)
        stream = FakeStream()
        self.streams.append(stream)
        return stream


class FakeClient:
    def __init__(self, api: FakeAPI) -> None:
        self.api = api
        self.closed = False

    def close(self) -> None:
        self.closed = True


def event(action: str, cid: str, **attributes: str) -> dict[str, Any]:
    return {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": attributes},
            "time": int(time.time())}


def wait(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A socket path that exists (the fake client never opens it)."""
    (tmp_path / "docker.sock").touch()
    return f"unix://{tmp_path}/docker.sock"


def make_source(api: FakeAPI, url: str, clients: list[FakeClient] | None = None) -> DockerSource:
    def factory(asked: str) -> FakeClient:
        assert asked == url
        client = FakeClient(api)
        if clients is not None:
            clients.append(client)
        return client

    return DockerSource(url, client_factory=factory, retry=0.01,
                        namespaces_of_pid=lambda pid: Namespaces(pid + 1, pid + 2, pid + 3))


def test_initial_list_then_events_keep_the_registry_current(api: FakeAPI, url: str) -> None:
    api.live[A] = inspect_data(A, "web", "nginx:1.25", pid=41, labels=POD)
    reg = ContainerRegistry(None, by_pid=False)
    clients: list[FakeClient] = []
    source = make_source(api, url, clients)
    source.start(reg)
    try:
        wait(lambda: api.streams, "the event stream")
        info = reg.known(A)
        assert info is not None and info.name == "web" and info.image == "nginx:1.25" and info.pid == 41
        assert info.namespaces == Namespaces(42, 43, 44) and info.pod_name == "web-0" and info.pod_namespace == "shop"
        assert info.created_at == pytest.approx(1767323045.123456)
        assert reg.sources["docker"] == f"connected to {url}"
        api.live[B] = inspect_data(B, "db", "postgres:16", pid=51)
        api.streams[0].items.put(event("start", B, name="db", image="postgres:16"))
        wait(lambda: reg.known(B) is not None, "the started container")
        api.live[B] = inspect_data(B, "db2", "postgres:16", pid=51)
        api.streams[0].items.put(event("rename", B, name="db2", oldName="/db"))
        wait(lambda: reg.known(B).name == "db2", "the rename")  # type: ignore[union-attr]
        api.streams[0].items.put(event("die", B, exitCode="0"))
        wait(lambda: reg.known(B).state == "exited", "the exit")  # type: ignore[union-attr]
        del api.live[B]
        api.streams[0].items.put(event("destroy", B))
        wait(lambda: reg.known(B).state == "removed", "the removal")  # type: ignore[union-attr]
    finally:
        source.stop()
    assert api.streams[0].closed and all(c.closed for c in clients)
    assert reg.sources["docker"] == "stopped"


def test_a_container_gone_before_it_could_be_inspected_is_named_from_its_events(api: FakeAPI, url: str) -> None:
    reg = ContainerRegistry(None, by_pid=False)
    source = make_source(api, url)
    client = FakeClient(api)
    labels = {**POD, "maintainer": "x"}
    for action in ("create", "start", "die", "destroy"):  # `docker run --rm` of a command that ended at once
        source.handle_event(client, reg, event(action, A, name="blink", image="busybox:eu", exitCode="0", **labels))
    info = reg.known(A)
    assert info is not None and info.state == "removed"
    assert (info.name, info.image, info.pod_name, info.k8s_container_name) == ("blink", "busybox:eu", "web-0", "nginx")
    assert dict(info.labels) == labels  # docker's own attributes (name, image, exitCode) are not labels


def test_inspect_wins_over_event_attributes_and_exec_events_are_ignored(api: FakeAPI, url: str) -> None:
    reg = ContainerRegistry(None, by_pid=False)
    source = make_source(api, url)
    client = FakeClient(api)
    api.live[A] = inspect_data(A, "real", "nginx:1.25", pid=7)
    source.handle_event(client, reg, event("start", A, name="real", image="nginx"))
    source.handle_event(client, reg, event("exec_start: sh -c true", A, name="real", image="nginx"))
    source.handle_event(client, reg, {"Type": "network", "Action": "connect", "Actor": {"ID": B}})
    source.handle_event(client, reg, {"garbage": True})
    source.handle_event(client, reg, "not even a dict")  # type: ignore[arg-type]
    assert [k.info.name for k in reg.containers()] == ["real"]
    assert reg.known(A).image == "nginx:1.25" and reg.known(A).pid == 7  # type: ignore[union-attr]


def test_a_broken_stream_reconnects_and_resyncs(api: FakeAPI, url: str) -> None:
    api.live[A] = inspect_data(A, "first", "busybox", pid=3)
    reg = ContainerRegistry(None, by_pid=False)
    source = make_source(api, url)
    source.start(reg)
    try:
        wait(lambda: api.streams, "the event stream")
        del api.live[A]  # removed while the agent was not listening
        api.live[B] = inspect_data(B, "second", "busybox", pid=4)
        api.streams[0].items.put(None)  # dockerd restarted
        wait(lambda: len(api.streams) == 2, "a second stream")
        wait(lambda: reg.known(B) is not None, "the resync")
        assert reg.known(A).state == "removed"  # type: ignore[union-attr]
        assert source.errors == 1 and "event stream ended" in source.last_error
        assert float(api.since[1]) <= time.time() - 0.9  # the second stream replays from before its list
    finally:
        source.stop()


def test_an_unreachable_daemon_is_retried_and_reported(url: str) -> None:
    attempts: list[float] = []

    def factory(url: str) -> FakeClient:
        attempts.append(time.monotonic())
        raise docker.errors.DockerException("Error while fetching server API version: connection refused")

    reg = ContainerRegistry(None, by_pid=False)
    source = DockerSource(url, client_factory=factory, retry=0.01, max_retry=0.02)
    source.start(reg)
    try:
        wait(lambda: len(attempts) >= 3, "three attempts")
    finally:
        source.stop()
    assert "connection refused" in source.last_error and source.errors >= 3


def test_no_socket_yet_waits_for_it_then_connects(api: FakeAPI, tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    calls: list[str] = []

    def factory(url: str) -> FakeClient:
        calls.append(url)
        return FakeClient(api)

    reg = ContainerRegistry(None, by_pid=False)
    source = DockerSource(f"unix://{socket}", client_factory=factory, retry=0.01, max_retry=0.02)
    source.start(reg)
    try:
        wait(lambda: reg.sources.get("docker") == f"no socket at {socket}", "the missing socket to show")
        time.sleep(0.1)
        assert calls == [] and source.errors == 0  # not an error: the agent runs on without names
        socket.touch()  # dockerd started after the agent
        wait(lambda: reg.sources.get("docker", "").startswith("connected"), "the connection")
        assert calls == [f"unix://{socket}"]
    finally:
        source.stop()


def test_the_service_runs_without_docker(tmp_path: Path) -> None:
    service = ContainerService.create(ContainerSettings(docker_host=str(tmp_path / "docker.sock")))
    assert [type(s).__name__ for s in service.sources] == ["DockerSource"]
    assert service.enricher.registry is service.registry
    service.stop()


def test_docker_url_from_option_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert docker_url(None) == "unix:///var/run/docker.sock"
    assert docker_url("/tmp/x.sock") == "unix:///tmp/x.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert docker_url(None) == "unix:///run/user/1000/docker.sock"
    assert docker_url("tcp://127.0.0.1:2375") == "tcp://127.0.0.1:2375"
