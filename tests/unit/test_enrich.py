"""Enrichment: container columns on event rows, container labels on metric samples, cost per batch."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.containers.enrich import Enricher
from supervisor.containers.info import EVENT_COLUMNS, ContainerInfo, Namespaces
from supervisor.containers.registry import ContainerRegistry

ID = "3f4e5d6c7b8a99887766554433221100aabbccddeeff00112233445566778899"
COLS = ["ts", "cgroup_id", "pid", "tid", "uid", "gid", "comm", "path"]


class FakeIndex:
    root: Path | None = Path("/nonexistent")

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = paths

    def path(self, cgroup_id: int) -> str | None:
        return self.paths.get(cgroup_id)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[ContainerRegistry, Enricher, Clock]:
    clock = Clock()
    reg = ContainerRegistry(FakeIndex({1: "/", 9: f"/docker/{ID}"}), clock=clock,  # type: ignore[arg-type]
                            namespaces_of_pid=lambda pid: Namespaces())
    return reg, Enricher(reg, clock=clock, namespaces=lambda pid: HOST_NS), clock


HOST_NS = Namespaces(mnt=4026531841, pid=4026531836, net=4026531840)


def row(cgroup_id: object, pid: int = 10, path: str = "/etc/hosts") -> list:
    return [1, cgroup_id, pid, pid, 0, 0, "cat", path]


def test_rows_get_the_container_columns_in_place() -> None:
    reg, enricher, _clock = setup()
    reg.upsert(ContainerInfo(ID, "docker", name="web", image="nginx:1.25"))
    rows = [row(9), row(1), row(None), row("garbage"), row([1, 2])]
    cols = enricher.events(list(COLS), rows)
    assert cols == [*COLS, *EVENT_COLUMNS]
    events = [dict(zip(cols, r, strict=True)) for r in rows]
    assert (events[0]["container_name"], events[0]["container_image"], events[0]["container_runtime"]) == \
        ("web", "nginx:1.25", "docker")
    assert events[0]["path"] == "/etc/hosts"  # the tracer's own fields stay where they were
    assert events[1]["container_runtime"] == "host" and events[1]["container_id"] is None
    assert [e["container_runtime"] for e in events[2:]] == ["unknown"] * 3
    assert enricher.rows_enriched == 5 and enricher.errors == 0


def test_one_lookup_per_distinct_cgroup_per_batch() -> None:
    reg, enricher, clock = setup()
    rows = [row(9 if i % 2 else 1, pid=i) for i in range(10_000)]
    enricher.events(list(COLS), rows)
    assert reg.stats.resolves == 2
    enricher.events(list(COLS), [row(9) for _ in range(100)])
    assert reg.stats.resolves == 2  # still fresh
    clock.now += 1.5
    enricher.events(list(COLS), [row(9) for _ in range(100)])
    assert reg.stats.resolves == 3  # re-asked once a second at most


def test_a_container_named_later_is_named_in_the_next_batch() -> None:
    reg, enricher, _clock = setup()
    first = [row(9)]
    cols = enricher.events(list(COLS), first)
    assert dict(zip(cols, first[0], strict=True))["container_name"] is None  # not described yet: id only
    reg.upsert(ContainerInfo(ID, "docker", name="late"))  # the source caught up: the generation changes
    second = [row(9)]
    enricher.events(list(COLS), second)
    assert dict(zip(cols, second[0], strict=True))["container_name"] == "late"


def test_enriched_or_empty_frames_are_left_alone() -> None:
    _reg, enricher, _clock = setup()
    assert enricher.events(list(COLS), []) == COLS
    already = [*COLS, *EVENT_COLUMNS]
    rows = [row(9) + [None] * len(EVENT_COLUMNS)]
    assert enricher.events(already, rows) == already and len(rows[0]) == len(already)


def test_a_failing_lookup_marks_unknown_and_is_counted() -> None:
    reg, enricher, _clock = setup()

    def broken(cgroup_id: object, pid: object = None) -> tuple:
        raise RuntimeError("boom")

    reg.resolve = broken  # type: ignore[method-assign]
    rows = [row(9)]
    cols = enricher.events(list(COLS), rows)
    assert dict(zip(cols, rows[0], strict=True))["container_runtime"] == "unknown"
    assert enricher.errors == 1 and "boom" in enricher.last_error


def test_metric_series_with_a_cgroup_id_label_get_container_labels() -> None:
    reg, enricher, _clock = setup()
    reg.upsert(ContainerInfo(ID, "docker", name="web", image="nginx:1.25",
                             labels={"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop"}))
    samples = [("eunomia_x_total", {"cgroup_id": "9", "instance": "x-1"}, 3.0),
               ("eunomia_x_total", {"cgroup_id": "1", "instance": "x-1"}, 4.0),
               ("eunomia_y_total", {"instance": "x-1"}, 5.0),
               ("eunomia_x_total", {"cgroup_id": "bogus", "instance": "x-1"}, 6.0)]
    out = enricher.samples(samples)
    assert out[0] == ("eunomia_x_total", {"cgroup_id": "9", "instance": "x-1", "container_id": ID,
                                          "container_name": "web", "container_image": "nginx:1.25",
                                          "container_runtime": "docker", "k8s_namespace": "shop",
                                          "k8s_pod_name": "web-0"}, 3.0)
    assert out[1][1] == {"cgroup_id": "1", "instance": "x-1", "container_runtime": "host"}
    assert out[2] == samples[2]
    assert out[3][1]["container_runtime"] == "unknown"
    untouched = [("eunomia_y_total", {"instance": "x-1"}, 1.0)]
    assert enricher.samples(untouched) is untouched


def test_v1_only_hosts_key_the_cache_by_pid() -> None:
    texts = {10: f"4:memory:/docker/{ID}\n", 11: "4:memory:/\n"}
    reg = ContainerRegistry(None, by_pid=True, read_cgroup_of=texts.get)
    enricher = Enricher(reg)
    rows = [row(1, pid=10), row(1, pid=11), row(1, pid=10)]
    cols = enricher.events(list(COLS), rows)
    runtimes = [dict(zip(cols, r, strict=True))["container_runtime"] for r in rows]
    assert runtimes == ["docker", "host", "docker"] and reg.stats.resolves == 2


def test_a_host_process_in_namespaces_of_its_own_gets_them() -> None:
    """A container run by a tool the agent does not know: host cgroup, its own namespaces."""
    reg, _enricher, clock = setup()
    own = Namespaces(mnt=4026532500, pid=4026532501, net=4026532502)
    asked: list[int] = []

    def namespaces(pid: int) -> Namespaces:
        asked.append(pid)
        return {1: HOST_NS, 77: own, 78: HOST_NS}.get(pid, Namespaces())  # others: gone already

    enricher = Enricher(reg, clock=clock, namespaces=namespaces)
    rows = [row(1, pid=77), row(1, pid=78), row(1, pid=79), row(1, pid=77)]
    cols = enricher.events(list(COLS), rows)
    events = [dict(zip(cols, r, strict=True)) for r in rows]
    assert [e["container_runtime"] for e in events] == ["host"] * 4
    assert [(e["container_mntns"], e["container_pidns"], e["container_netns"]) for e in events] == [
        (own.mnt, own.pid, own.net), (None, None, None), (None, None, None), (own.mnt, own.pid, own.net)]
    assert asked == [1, 77, 78, 79]  # init's once, then once per pid (cached)


def test_the_agents_own_namespaces_stand_for_the_hosts_when_init_is_unreadable() -> None:
    reg, _enricher, clock = setup()
    own = Namespaces(mnt=4026532500, pid=4026532501, net=4026532502)
    seen = {os.getpid(): HOST_NS, 77: own, 78: HOST_NS}  # pid 1: unreadable
    enricher = Enricher(reg, clock=clock, namespaces=lambda pid: seen.get(pid, Namespaces()))
    rows = [row(1, pid=77), row(1, pid=78)]
    cols = enricher.events(list(COLS), rows)
    assert [dict(zip(cols, r, strict=True))["container_mntns"] for r in rows] == [own.mnt, None]
