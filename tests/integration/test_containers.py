"""Container columns on events, against a real dockerd and containers this test runs.

Ground truth: the process tracer's exec events of commands run in containers (docker exec,
docker run --rm) and on the host, with an argv no other process has; the container's id,
name, image and namespaces as dockerd and /proc tell them; its cgroup directory's inode.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.containers.cgroup_index import unified_root
from tests.integration.agentctl import EUNOMIACTL, REPO, Agent, wait_for
from tests.integration.dockerd import Dockerd, agent_following

POD = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
       "io.kubernetes.pod.uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "io.kubernetes.container.name": "nginx"}


@pytest.fixture(scope="module")
def agent(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = agent_following(dockerd, tmp_path_factory.mktemp("agent"), ["process"])
    try:
        yield agent
    finally:
        agent.stop()


def marker() -> str:
    return f"eu-mark-{uuid.uuid4().hex[:12]}"


def exec_of(agent: Agent, mark: str) -> dict[str, Any]:
    """The one exec event whose argv carries ``mark``."""
    def found() -> list[dict[str, Any]]:
        return [e for e in agent.events(tracer="process", comm="echo") if e["event"] == "exec" and mark in e["argv"]]

    events = wait_for(found, 15, f"the exec event of {mark}")
    assert len(events) == 1, events
    return events[0]


def namespaces(pid: int) -> tuple[int, int, int]:
    return tuple(os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in ("mnt", "pid", "net"))  # type: ignore[return-value]


def test_docker_exec_is_named_with_id_image_cgroup_and_namespaces(agent: Agent, dockerd: Dockerd) -> None:
    name = dockerd.unique_name("eu-exec")
    cid = dockerd.run("--name", name, dockerd.image, "sleep", "120")
    init_pid = dockerd.inspect(cid)["State"]["Pid"]
    # What this host does (cgroupfs driver, hybrid v1 + v2): runc puts the container in /docker/<id> of
    # every hierarchy, the unified one included, so bpf_get_current_cgroup_id() is that directory's inode.
    with open(f"/proc/{init_pid}/cgroup") as fh:
        assert f"0::/docker/{cid}\n" in fh.read()
    root = unified_root()
    assert root is not None
    cgroup_inode = os.stat(root / "docker" / cid).st_ino
    mark = marker()
    dockerd.docker("exec", name, "echo", mark)

    event = exec_of(agent, mark)
    assert event["argv"] == ["echo", mark]
    assert event["cgroup_id"] == cgroup_inode
    assert (event["container_id"], event["container_name"], event["container_image"], event["container_runtime"]) \
        == (cid, name, dockerd.image, "docker")
    assert (event["container_mntns"], event["container_pidns"], event["container_netns"]) == namespaces(init_pid)
    assert not any(k.startswith("k8s_") for k in event)  # not in a pod: null, so not stored
    dockerd.docker("rm", "-f", name)


def test_a_docker_run_rm_that_lives_under_a_second_is_still_named(agent: Agent, dockerd: Dockerd,
                                                                    tmp_path: Path) -> None:
    name = dockerd.unique_name("eu-blink")
    cidfile = tmp_path / "cid"
    mark = marker()
    started = time.monotonic()
    dockerd.docker("run", "--rm", "--network", "none", "--cidfile", str(cidfile), "--name", name, dockerd.image,
                   "echo", mark)
    took = time.monotonic() - started
    cid = cidfile.read_text().strip()
    assert dockerd.docker("inspect", cid, check=False).returncode != 0  # gone: removed by --rm

    event = exec_of(agent, mark)
    assert (event["container_id"], event["container_name"], event["container_image"], event["container_runtime"]) \
        == (cid, name, dockerd.image, "docker")
    exits = wait_for(lambda: [e for e in agent.events(tracer="process", pid=event["pid"]) if e["event"] == "exit"],
                     15, "the exit event")
    assert exits[0]["container_name"] == name
    assert exits[0]["duration_ns"] < 10**9, f"the container's process lived {exits[0]['duration_ns']} ns"
    # the removal comes on the agent's own stream of docker events
    entry = wait_for(lambda: (c := {c["id"]: c for c in agent.get("/containers")["containers"]}.get(cid))
                     and c["state"] == "removed" and c, 10, "the removal to show")
    assert entry["removed_seconds_ago"] is not None, entry
    print(f"docker run --rm took {took:.2f}s in all")


def test_cri_pod_labels_give_the_kubernetes_fields(agent: Agent, dockerd: Dockerd) -> None:
    name = dockerd.unique_name("k8s_nginx_web-0")
    labels = [arg for key, value in POD.items() for arg in ("--label", f"{key}={value}")]
    mark = marker()
    dockerd.docker("run", "--rm", "--network", "none", "--name", name, *labels, dockerd.image, "echo", mark)

    event = exec_of(agent, mark)
    assert event["container_name"] == name and event["container_runtime"] == "docker"
    assert (event["k8s_namespace"], event["k8s_pod_name"], event["k8s_pod_uid"], event["k8s_container_name"]) \
        == ("shop", "web-0", POD["io.kubernetes.pod.uid"], "nginx")


def test_host_processes_are_marked_host(agent: Agent) -> None:
    mark = marker()
    subprocess.run(["/bin/echo", mark], check=True, stdout=subprocess.DEVNULL)

    event = exec_of(agent, mark)
    assert event["container_runtime"] == "host"
    assert not [k for k in event if k.startswith(("container_id", "container_name", "container_image", "k8s_"))]


def test_api_and_cli_list_the_containers_the_agent_knows(agent: Agent, dockerd: Dockerd) -> None:
    name = dockerd.unique_name("eu-list")
    cid = dockerd.run("--name", name, "--label", f"{next(iter(POD))}=listed-pod", dockerd.image, "sleep", "120")
    try:
        def listed() -> dict[str, Any] | None:
            entry = {c["id"]: c for c in agent.get("/containers")["containers"]}.get(cid)
            return entry if entry is not None and entry["state"] == "running" else None

        entry = wait_for(listed, 10, "the running container in GET /containers")
        assert (entry["name"], entry["image"], entry["runtime"], entry["state"], entry["source"]) == \
            (name, dockerd.image, "docker", "running", "docker")
        assert entry["pid"] == dockerd.inspect(cid)["State"]["Pid"] and entry["k8s_pod_name"] == "listed-pod"
        assert agent.get(f"/containers/{name}")["id"] == cid
        assert agent.get(f"/containers/{cid[:12]}")["name"] == name
        assert agent.request("GET", "/containers/no-such-container").status_code == 404
        cache = agent.get("/containers")["cache"]
        assert cache["mode"] == "cgroup_id" and cache["container_evictions"] == 0 and "unresolved" in cache

        env = {**os.environ, "EUNOMIA_SOCKET": str(agent.socket)}
        table = subprocess.run([*EUNOMIACTL, "containers"], env=env, cwd=REPO, capture_output=True, text=True,
                               check=True).stdout
        line = next(line for line in table.splitlines() if line.startswith(cid[:12]))
        assert name in line and dockerd.image in line and "running" in line
        as_json = json.loads(subprocess.run([*EUNOMIACTL, "containers", "--json"], env=env, cwd=REPO,
                                            capture_output=True, text=True, check=True).stdout)
        assert cid in {c["id"] for c in as_json["containers"]}
    finally:
        dockerd.docker("rm", "-f", name)
    wait_for(lambda: {c["id"]: c for c in agent.get("/containers")["containers"]}[cid]["state"] == "removed", 10,
             "the removal to show")


def test_trace_names_the_container_of_an_event(dockerd: Dockerd) -> None:
    name = dockerd.unique_name("eu-trace")
    dockerd.run("--name", name, dockerd.image, "sleep", "120")
    proc = subprocess.Popen([*EUNOMIACTL, "trace", "process", "--duration", "20", "--docker-socket",
                             str(dockerd.socket)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert proc.stderr is not None and "Tracing with process" in proc.stderr.readline()
        container_mark, host_mark = marker(), marker()
        dockerd.docker("exec", name, "echo", container_mark)
        subprocess.run(["/bin/echo", host_mark], check=True, stdout=subprocess.DEVNULL)
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            if line.split()[2:3] == ["echo"]:  # "time pid comm fields…": the echo processes, not the docker CLI
                lines.append(line)
                if host_mark in line:
                    break
    finally:
        proc.terminate()
        proc.wait(20)
        dockerd.docker("rm", "-f", name)
    container_line = next(line for line in lines if container_mark in line)
    host_line = next(line for line in lines if host_mark in line)
    assert container_line.rstrip().endswith(f"container={name}")
    assert "container=" not in host_line and "container_runtime" not in host_line
