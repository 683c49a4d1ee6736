"""Cgroup paths of every runtime and driver, as they appear on real hosts."""

from __future__ import annotations

import pytest

from supervisor.containers.cgroup_paths import (
    CgroupContainer,
    cgroup_paths,
    cgroup_v2_path,
    container_of_process,
    parse_cgroup_path,
)

ID = "3f4e5d6c7b8a99887766554433221100aabbccddeeff00112233445566778899"
ID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_ = UID.replace("-", "_")

CASES = [
    # docker
    (f"/docker/{ID}", CgroupContainer("docker", ID)),
    (f"/system.slice/docker-{ID}.scope", CgroupContainer("docker", ID)),
    (f"/docker/{ID}/init.scope", CgroupContainer("docker", ID)),  # systemd inside the container
    (f"/user.slice/user-1000.slice/user@1000.service/docker-{ID}.scope", CgroupContainer("docker", ID)),  # rootless
    # containerd without Kubernetes
    (f"/default/{ID}", CgroupContainer("containerd", ID)),
    (f"/k8s.io/{ID}", CgroupContainer("containerd", ID)),
    (f"/system.slice/nerdctl-{ID}.scope", CgroupContainer("containerd", ID)),
    # Kubernetes, cgroupfs driver
    (f"/kubepods/besteffort/pod{UID}/{ID}", CgroupContainer("kubernetes", ID, UID)),
    (f"/kubepods/burstable/pod{UID}/{ID}", CgroupContainer("kubernetes", ID, UID)),
    (f"/kubepods/pod{UID}/{ID}", CgroupContainer("kubernetes", ID, UID)),  # guaranteed
    (f"/kubepods/besteffort/pod{UID}/crio-{ID}", CgroupContainer("cri-o", ID, UID)),
    # Kubernetes, systemd driver
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope",
     CgroupContainer("containerd", ID, UID)),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope",
     CgroupContainer("cri-o", ID, UID)),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope", CgroupContainer("docker", ID, UID)),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope/sub", CgroupContainer("containerd", ID, UID)),
    # k3s / kind nest kubepods under another level
    (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
     f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope", CgroupContainer("containerd", ID, UID)),
    (f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID}"
     f"/{ID}", CgroupContainer("kubernetes", ID, UID)),
    # cri-o and podman
    (f"/machine.slice/crio-{ID}.scope", CgroupContainer("cri-o", ID)),
    (f"/machine.slice/libpod-{ID}.scope", CgroupContainer("podman", ID)),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", CgroupContainer("podman", ID)),
    (f"/libpod_parent/libpod-{ID}", CgroupContainer("podman", ID)),
    (f"/libpod_parent/{ID}", CgroupContainer("podman", ID)),
    (f"/machine.slice/libpod-{ID}.scope/container", CgroupContainer("podman", ID)),  # podman's inner cgroup
    # host cgroups
    ("/", None),
    ("", None),
    ("/system.slice/sshd.service", None),
    ("/user.slice/user-0.slice/session-3.scope", None),
    ("/init.scope", None),
    (f"/machine.slice/libpod-conmon-{ID}.scope", None),  # the monitor, not the container
    ("/kubepods/besteffort", None),
    (f"/kubepods/besteffort/pod{UID}", None),  # the pod's own cgroup, no container
    ("/docker/not-an-id", None),
    (f"/system.slice/docker-{ID[:12]}.scope", None),  # short ids are not container cgroups
]


@pytest.mark.parametrize(("path", "expected"), CASES, ids=[c[0][-60:] or "empty" for c in CASES])
def test_parse_cgroup_path(path: str, expected: CgroupContainer | None) -> None:
    assert parse_cgroup_path(path) == expected


def test_the_deepest_container_wins() -> None:
    # docker-in-docker: the inner container is the one the process is in
    assert parse_cgroup_path(f"/docker/{ID}/docker/{ID2}") == CgroupContainer("docker", ID2)


V1_ONLY = f"""12:pids:/docker/{ID}
11:memory:/docker/{ID}
1:name=systemd:/docker/{ID}
"""
HYBRID = f"""12:pids:/system.slice/docker-{ID}.scope
1:name=systemd:/system.slice/docker-{ID}.scope
0::/system.slice/docker-{ID}.scope
"""
UNIFIED = f"0::/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope\n"


def test_proc_cgroup_parsing() -> None:
    assert cgroup_v2_path(UNIFIED) == f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"
    assert cgroup_v2_path(V1_ONLY) is None
    assert cgroup_paths(HYBRID)[0] == f"/system.slice/docker-{ID}.scope"
    assert container_of_process(V1_ONLY) == CgroupContainer("docker", ID)  # v1-only host: the fallback
    assert container_of_process(HYBRID) == CgroupContainer("docker", ID)
    assert container_of_process(UNIFIED) == CgroupContainer("containerd", ID, UID)
    assert container_of_process("0::/user.slice/user-0.slice/session-1.scope\n") is None
