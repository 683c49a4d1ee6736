"""Docker containers from the Docker Engine API (the ``docker`` SDK), kept current by its event stream.

A thread connects, lists every container (inspecting each: name, image, labels, init pid →
namespaces), hands the list to the registry, then follows ``/events`` from a moment before
the list was taken, so nothing that happens in between is lost. Every event already
carries the container's name, image and labels as attributes: a container that is gone
before it can be inspected (``docker run --rm`` of a command that ends at once) is still
described. When the stream breaks (dockerd restarted), the thread reconnects and resyncs.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.containers.info import ContainerInfo, Namespaces
from supervisor.containers.procfs import namespaces_of
from supervisor.containers.sources import SourceSink

log = logging.getLogger("eunomia.containers.docker")

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# Event attributes that Docker adds beside the container's labels.
_DOCKER_ATTRIBUTES = frozenset({"name", "image", "exitCode", "signal", "oldName", "execID", "container",
                                "health_status"})
_INSPECT_ON = frozenset({"create", "start", "restart", "rename", "update", "unpause"})
_STATE_ON = {"die": "exited", "pause": "paused"}

ClientFactory = Callable[[str], Any]


def _default_client(base_url: str) -> Any:
    import docker  # imported here: the agent runs without it when no docker socket exists

    return docker.DockerClient(base_url=base_url, timeout=10)


def _not_found(exc: BaseException) -> bool:
    return getattr(getattr(exc, "response", None), "status_code", None) == 404 or type(exc).__name__ == "NotFound"


_FRACTION = re.compile(r"\.(\d{6})\d*")


def _created(text: Any) -> float | None:
    """Docker's RFC 3339 time with nanoseconds → seconds since the epoch."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(_FRACTION.sub(r".\1", text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class DockerSource:
    runtime = "docker"

    def __init__(self, base_url: str = DEFAULT_DOCKER_HOST, client_factory: ClientFactory = _default_client,
                 namespaces_of_pid: Callable[[int], Namespaces] = namespaces_of, retry: float = 2.0,
                 max_retry: float = 30.0) -> None:
        self.base_url = base_url
        self._factory = client_factory
        self._namespaces_of = namespaces_of_pid
        self.retry = retry
        self.max_retry = max_retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._stream: Any = None
        self._lock = threading.Lock()
        self.events_seen = 0
        self.connects = 0
        self.errors = 0
        self.last_error = ""

    # -- lifecycle -----------------------------------------------------------------
    def start(self, sink: SourceSink) -> None:
        self._thread = threading.Thread(target=self._run, args=(sink,), name="containers-docker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            stream, client = self._stream, self._client
        for closable in (stream, client):
            if closable is not None:
                try:
                    closable.close()
                except Exception as exc:  # closing a broken connection may fail; we are leaving anyway
                    log.debug("closing the docker connection: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, sink: SourceSink) -> None:
        delay = self.retry
        logged = ""
        sink.sources[self.runtime] = f"connecting to {self.base_url}"
        while not self._stop.is_set():
            missing = self._missing_socket()
            if missing is not None:  # dockerd not installed, or not started yet (the agent may start first)
                sink.sources[self.runtime] = f"no socket at {missing}"
                if logged != "missing":
                    log.info("no Docker socket at %s: containers are identified from their cgroups (runtime and"
                             " id, no names or images) until it appears; see --docker-socket", missing)
                    logged = "missing"
            else:
                try:
                    self._session(sink)
                    delay = self.retry  # a session that ran and ended: reconnect soon
                except Exception as exc:  # any failure of the API or the connection: retry, never die
                    self.errors += 1
                    self.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
                    sink.sources[self.runtime] = f"error: {self.last_error}"
                    if self.last_error != logged:  # log a repeated failure once
                        log.warning("docker API at %s: %s; retrying", self.base_url, self.last_error)
                        logged = self.last_error
                finally:
                    self._close_session()
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_retry)
        sink.sources[self.runtime] = "stopped"

    def _missing_socket(self) -> Path | None:
        if not self.base_url.startswith("unix://"):
            return None
        path = Path(self.base_url[len("unix://"):])
        return None if path.exists() else path

    def _close_session(self) -> None:
        with self._lock:
            client, self._client, self._stream = self._client, None, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.debug("closing the docker client: %s", exc)

    def _session(self, sink: SourceSink) -> None:
        client = self._factory(self.base_url)
        with self._lock:
            self._client = client
        if self._stop.is_set():
            return
        since = time.time() - 1.0  # a second early: replayed events are harmless, lost ones are not
        infos = []
        for summary in client.api.containers(all=True):
            info = self._inspect(client, summary.get("Id", "")) or self._from_summary(summary)
            if info is not None:
                infos.append(info)
        sink.resync(self.runtime, infos)
        stream = client.api.events(since=f"{since:.9f}", decode=True, filters={"type": "container"})
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            return
        self.connects += 1
        sink.sources[self.runtime] = f"connected to {self.base_url}"
        log.info("docker API at %s: %d containers, following events", self.base_url, len(infos))
        for event in stream:
            if self._stop.is_set():
                return
            self.events_seen += 1
            try:
                self.handle_event(client, sink, event)
            except Exception as exc:
                if not _not_found(exc):
                    raise
        if not self._stop.is_set():
            raise ConnectionError("the event stream ended")

    # -- events ----------------------------------------------------------------------
    def handle_event(self, client: Any, sink: SourceSink, event: dict[str, Any]) -> None:
        if not isinstance(event, dict) or event.get("Type", "container") != "container":
            return
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id")
        attributes = actor.get("Attributes") or {}
        if not isinstance(cid, str) or not cid:
            return
        if action in _INSPECT_ON:
            info = self._inspect(client, cid)
            if info is not None:
                sink.upsert(info)
            elif sink.known(cid) is None:  # gone already: describe it from the event
                sink.upsert(self._from_attributes(cid, attributes))
        elif action == "destroy":
            if sink.known(cid) is None:
                sink.upsert(self._from_attributes(cid, attributes))
            sink.removed(cid)
        elif action in _STATE_ON:
            sink.update_state(cid, _STATE_ON[action])

    # -- descriptions ------------------------------------------------------------------
    def _inspect(self, client: Any, cid: str) -> ContainerInfo | None:
        try:
            data = client.api.inspect_container(cid)
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        config = data.get("Config") or {}
        state = data.get("State") or {}
        pid = state.get("Pid") or None
        running = bool(state.get("Running")) and pid
        return ContainerInfo(
            id=data.get("Id", cid), runtime=self.runtime, name=(data.get("Name") or "").lstrip("/") or None,
            image=config.get("Image") or None, image_id=data.get("Image") or None,
            labels=dict(config.get("Labels") or {}), state=str(state.get("Status") or "created"),
            pid=pid if running else None,
            namespaces=self._namespaces_of(pid) if running else Namespaces(),
            created_at=_created(data.get("Created")),
        )

    def _from_summary(self, summary: dict[str, Any]) -> ContainerInfo | None:
        cid = summary.get("Id")
        if not isinstance(cid, str):
            return None
        names = summary.get("Names") or []
        return ContainerInfo(id=cid, runtime=self.runtime, name=names[0].lstrip("/") if names else None,
                             image=summary.get("Image"), image_id=summary.get("ImageID"),
                             labels=dict(summary.get("Labels") or {}), state=str(summary.get("State") or "created"),
                             created_at=float(summary["Created"]) if summary.get("Created") else None)

    def _from_attributes(self, cid: str, attributes: dict[str, Any]) -> ContainerInfo:
        labels = {str(k): str(v) for k, v in attributes.items() if k not in _DOCKER_ATTRIBUTES}
        return ContainerInfo(id=cid, runtime=self.runtime, name=attributes.get("name"),
                             image=attributes.get("image"), labels=labels, state="exited")
