"""The container cache: host marking, CRI labels, grace period, bounds, v1-only hosts."""

from __future__ import annotations

import threading
from pathlib import Path

from supervisor.containers.info import EVENT_COLUMNS, HOST_ROW, UNKNOWN_ROW, ContainerInfo, Namespaces
from supervisor.containers.registry import ContainerRegistry

ID = "3f4e5d6c7b8a99887766554433221100aabbccddeeff00112233445566778899"
ID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
POD_LABELS = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": UID, "io.kubernetes.container.name": "nginx"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeIndex:
    """cgroup id → path, like CgroupIndex, without a real hierarchy."""

    def __init__(self, paths: dict[int, str]) -> None:
        self.paths = dict(paths)
        self.root: Path | None = Path("/nonexistent-cgroup-root")
        self.asked: list[int] = []

    def path(self, cgroup_id: int) -> str | None:
        self.asked.append(cgroup_id)
        return self.paths.get(cgroup_id)


def columns(row: tuple) -> dict:
    return dict(zip(EVENT_COLUMNS, row, strict=True))


def make(paths: dict[int, str] | None = None, **kwargs) -> tuple[ContainerRegistry, FakeIndex, FakeClock]:
    index = FakeIndex(paths or {})
    clock = FakeClock()
    kwargs.setdefault("namespaces_of_pid", lambda pid: Namespaces())
    return ContainerRegistry(index, clock=clock, **kwargs), index, clock  # type: ignore[arg-type]


def test_host_processes_are_marked_host_and_unresolvable_ids_unknown() -> None:
    reg, _index, _clock = make({1: "/", 50: "/user.slice/user-0.slice/session-3.scope",
                                51: "/system.slice/ssh.service"})
    for cgroup_id in (1, 50, 51):
        row = reg.resolve(cgroup_id)
        assert row == HOST_ROW
        assert columns(row)["container_runtime"] == "host" and columns(row)["container_id"] is None
    for garbage in (None, 0, -3, "12", 99.0, 777):  # 777: not in the hierarchy (removed before we saw it)
        assert reg.resolve(garbage) == UNKNOWN_ROW
    assert columns(UNKNOWN_ROW)["container_runtime"] == "unknown"
    assert reg.stats.unresolved == 6 and reg.stats.cgroup_misses == 4  # 1, 50, 51 and 777 were looked up


def test_a_container_no_source_describes_has_runtime_and_id_only() -> None:
    reg, _index, _clock = make({7: f"/system.slice/docker-{ID}.scope"})
    row = columns(reg.resolve(7))
    assert row["container_runtime"] == "docker" and row["container_id"] == ID
    assert row["container_name"] is None and row["container_image"] is None
    assert reg.stats.unnamed == 1


def test_source_names_the_container_and_cri_labels_give_the_pod() -> None:
    path = f"/kubepods/besteffort/pod{UID}/{ID}"  # cgroupfs driver: the path does not say which runtime
    reg, _index, _clock = make({7: path, 8: f"/docker/{ID2}"})
    reg.upsert(ContainerInfo(ID, "docker", name="k8s_nginx_web-0", image="nginx:1.25", labels=POD_LABELS,
                             state="running", pid=42, namespaces=Namespaces(11, 12, 13)))
    reg.upsert(ContainerInfo(ID2, "docker", name="plain", image="busybox", state="running"))
    pod = columns(reg.resolve(7))
    assert pod == {"container_id": ID, "container_name": "k8s_nginx_web-0", "container_image": "nginx:1.25",
                   "container_runtime": "docker", "k8s_namespace": "shop", "k8s_pod_name": "web-0",
                   "k8s_pod_uid": UID, "k8s_container_name": "nginx",
                   "container_mntns": 11, "container_pidns": 12, "container_netns": 13}
    plain = columns(reg.resolve(8))
    assert plain["container_name"] == "plain" and plain["k8s_pod_name"] is None and plain["k8s_pod_uid"] is None


def test_cached_cgroups_are_not_looked_up_again() -> None:
    reg, index, _clock = make({7: f"/docker/{ID}"})
    for _ in range(5):
        reg.resolve(7)
    assert index.asked == [7] and reg.stats.cgroup_misses == 1


def test_removed_container_resolves_during_the_grace_period_then_is_released() -> None:
    reg, index, clock = make({7: f"/docker/{ID}"}, grace=30.0)
    reg.cgroup_created(7, f"/docker/{ID}")
    reg.upsert(ContainerInfo(ID, "docker", name="short", image="busybox", state="running"))
    del index.paths[7]  # runc removed the cgroup
    reg.cgroup_removed(7)
    reg.removed(ID)
    clock.now += 29.0
    assert columns(reg.resolve(7))["container_name"] == "short"
    assert [k.info.state for k in reg.containers()] == ["removed"]
    clock.now += 2.0
    assert reg.resolve(7) == UNKNOWN_ROW  # released: memory is bounded by what lives (plus the grace)
    assert reg.containers() == [] and reg.stats.released == 1
    assert reg.summary()["cgroups_cached"] == 0


def test_the_container_bound_evicts_removed_containers_first_and_counts() -> None:
    reg, _index, _clock = make(max_containers=3)
    ids = [f"{i:064x}" for i in range(5)]
    for cid in ids[:3]:
        reg.upsert(ContainerInfo(cid, "docker", name=cid[-4:]))
    reg.removed(ids[1])
    reg.upsert(ContainerInfo(ids[3], "docker"))
    assert reg.known(ids[1]) is None and reg.known(ids[0]) is not None  # the removed one went first
    reg.upsert(ContainerInfo(ids[4], "docker"))
    assert reg.known(ids[0]) is None  # then the least recently updated
    assert len(reg.containers()) == 3 and reg.stats.container_evictions == 2


def test_the_cgroup_bound_evicts_least_recently_used() -> None:
    reg, _index, _clock = make({1: "/a", 2: "/b", 3: "/c"}, max_cgroups=2)
    reg.resolve(1)
    reg.resolve(2)
    reg.resolve(1)  # 1 is now more recent than 2
    reg.resolve(3)
    assert reg.summary()["cgroups_cached"] == 2 and reg.stats.cgroup_evictions == 1
    misses = reg.stats.cgroup_misses
    reg.resolve(1)
    assert reg.stats.cgroup_misses == misses  # 1 stayed, 2 went


def test_resync_marks_what_the_runtime_no_longer_lists_as_removed() -> None:
    reg, _index, _clock = make()
    reg.upsert(ContainerInfo(ID, "docker", name="old"))
    reg.upsert(ContainerInfo(ID2, "podman", name="other-runtime"))
    reg.resync("docker", [ContainerInfo("f" * 64, "docker", name="new")])
    states = {k.info.name: k.info.state for k in reg.containers()}
    assert states == {"old": "removed", "other-runtime": "created", "new": "created"}


def test_v1_only_hosts_resolve_by_pid_from_proc() -> None:
    texts = {100: f"12:pids:/docker/{ID}\n1:name=systemd:/docker/{ID}\n", 200: "12:pids:/\n1:name=systemd:/\n"}
    reads: list[int] = []

    def read(pid: int) -> str | None:
        reads.append(pid)
        return texts.get(pid)

    reg, _index, clock = make(by_pid=True, read_cgroup_of=read, pid_ttl=5.0)
    reg.upsert(ContainerInfo(ID, "docker", name="v1"))
    assert columns(reg.resolve(1, 100))["container_name"] == "v1"  # cgroup id 1 for everyone on v1
    assert reg.resolve(1, 200) == HOST_ROW
    assert reg.resolve(1, 300) == UNKNOWN_ROW  # gone
    reg.resolve(1, 100)
    assert reads == [100, 200, 300]  # cached
    clock.now += 6.0
    reg.resolve(1, 100)
    assert reads == [100, 200, 300, 100] and reg.stats.pid_lookups == 4  # pids are reused: the cache expires


def test_listing_includes_containers_known_only_from_cgroups_and_find() -> None:
    reg, _index, _clock = make({7: f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{ID}.scope"})
    reg.upsert(ContainerInfo(ID2, "docker", name="named"))
    reg.resolve(7)
    known = {k.info.id: k for k in reg.containers()}
    assert set(known) == {ID, ID2}
    assert known[ID].source is False and known[ID].info.runtime == "cri-o" and known[ID].info.pod_uid == UID
    assert known[ID].cgroup_ids == (7,)
    assert reg.find("named").info.id == ID2  # type: ignore[union-attr]
    assert reg.find(ID[:10]).info.id == ID  # type: ignore[union-attr]
    assert reg.find("") is None and reg.find("nope") is None


def test_concurrent_sources_and_lookups() -> None:
    paths = {i: f"/docker/{i:064x}" for i in range(1, 200)}
    reg, _index, _clock = make(paths, max_containers=50)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, 200):
                reg.upsert(ContainerInfo(f"{i:064x}", "docker", name=str(i)))
                if i % 3 == 0:
                    reg.removed(f"{i:064x}")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(5):
                for i in range(1, 200):
                    row = columns(reg.resolve(i))
                    assert row["container_id"] == f"{i:064x}"
                    assert row["container_name"] in (None, str(i))
                reg.containers()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(reg.containers()) <= 50 + 199  # the bound holds for described containers
    assert reg.summary()["containers"] == 50


def test_a_container_no_source_describes_gets_the_namespaces_of_a_process_in_its_cgroup(tmp_path: Path) -> None:
    cgroup_dir = tmp_path / "kubepods" / f"pod{UID}" / ID
    cgroup_dir.mkdir(parents=True)
    (cgroup_dir / "cgroup.procs").write_text("")
    asked: list[int] = []

    def namespaces(pid: int) -> Namespaces:
        asked.append(pid)
        return Namespaces(pid * 10 + 1, pid * 10 + 2, pid * 10 + 3)

    reg, index, _clock = make({7: f"/kubepods/pod{UID}/{ID}"}, namespaces_of_pid=namespaces)
    index.root = tmp_path
    empty = columns(reg.resolve(7))
    assert empty["container_mntns"] is None and asked == []  # no process in it (yet): asked again later
    (cgroup_dir / "cgroup.procs").write_text("4242\n4243\n")
    row = columns(reg.resolve(7))
    assert (row["container_mntns"], row["container_pidns"], row["container_netns"]) == (42421, 42422, 42423)
    assert row["container_runtime"] == "kubernetes" and row["k8s_pod_uid"] == UID
    reg.resolve(7)
    assert asked == [4242]  # kept once known
