"""The cgroup filter with real containers: --container, --pod/--namespace and --host are
resolved to cgroup ids that the kernel checks, and follow containers started after the tracer.

Ground truth: exec events of `echo MARK` run by this test in containers it started (docker
exec, docker run) and on the host, with marks no other process has.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.agentctl import Agent, wait_for
from tests.integration.dockerd import Dockerd, agent_following


@pytest.fixture(scope="module")
def agent(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    agent = agent_following(dockerd, tmp_path_factory.mktemp("agent"), [])
    try:
        yield agent
    finally:
        agent.stop()


def _mark() -> str:
    return f"eu-filter-{uuid.uuid4().hex[:12]}"


def _execs(agent: Agent, instance: str, marks: set[str]) -> dict[str, dict[str, Any]]:
    """mark → the exec event of `echo mark` that this instance delivered."""
    found: dict[str, dict[str, Any]] = {}
    for event in agent.events(tracer="process", instance=instance, comm="echo"):
        for mark in marks & set(event.get("argv") or []):
            if event["event"] == "exec":
                found[mark] = event
    return found


def _start(agent: Agent, args: list[str]) -> str:
    instance = agent.start("process", args)["id"]
    agent.wait_state(instance, "running")
    return instance


def _host_echo(mark: str) -> None:
    subprocess.run(["echo", mark], check=True, stdout=subprocess.DEVNULL)


def test_container_lets_through_that_container_only_even_one_started_later(agent: Agent, dockerd: Dockerd) -> None:
    name = dockerd.unique_name("eu-only")
    other = dockerd.unique_name("eu-other")
    dockerd.run("--name", other, dockerd.image, "sleep", "120")
    instance = _start(agent, ["--container", name])  # the container does not exist yet
    assert agent.instance(instance)["cgroup_filter"] == {"selects": f"container {name!r}", "cgroups": 0}
    dockerd.run("--name", name, dockerd.image, "sleep", "120")
    wait_for(lambda: agent.instance(instance)["cgroup_filter"]["cgroups"] == 1, 10,
             "the filter to take the new container's cgroup")
    inside, beside, host = _mark(), _mark(), _mark()
    dockerd.docker("exec", name, "echo", inside)
    dockerd.docker("exec", other, "echo", beside)
    _host_echo(host)
    last = _mark()
    dockerd.docker("exec", name, "echo", last)  # once it is in, the others were processed too

    seen = wait_for(lambda: (s := _execs(agent, instance, {inside, beside, host, last})) and last in s and s, 15,
                    "the last exec in the container")
    assert set(seen) == {inside, last}
    assert {e["container_name"] for e in seen.values()} == {name}
    wait_for(lambda: agent.instance(instance)["worker"]["filter_cgroups"] == 1, 5,
             "the worker's heartbeat to report the one cgroup in its kernel map")


def test_pod_and_namespace_select_by_the_cri_labels(agent: Agent, dockerd: Dockerd) -> None:
    pod = f"web-{uuid.uuid4().hex[:6]}"
    labels = {"io.kubernetes.pod.name": pod, "io.kubernetes.pod.namespace": "shop",
              "io.kubernetes.pod.uid": str(uuid.uuid4()), "io.kubernetes.container.name": "nginx"}
    in_pod = dockerd.unique_name("eu-pod")
    dockerd.run("--name", in_pod, *(f"--label={k}={v}" for k, v in labels.items()), dockerd.image, "sleep", "120")
    elsewhere = dockerd.unique_name("eu-nopod")
    dockerd.run("--name", elsewhere, "--label=io.kubernetes.pod.namespace=shop", dockerd.image, "sleep", "120")
    instance = _start(agent, ["--pod", pod, "--namespace", "shop"])
    inside, beside = _mark(), _mark()
    dockerd.docker("exec", elsewhere, "echo", beside)
    dockerd.docker("exec", in_pod, "echo", inside)

    seen = wait_for(lambda: (s := _execs(agent, instance, {inside, beside})) and inside in s and s, 15,
                    "the exec in the pod's container")
    assert set(seen) == {inside}
    assert seen[inside]["k8s_pod_name"] == pod and seen[inside]["k8s_namespace"] == "shop"


def test_host_keeps_host_processes_and_no_container(agent: Agent, dockerd: Dockerd) -> None:
    instance = _start(agent, ["--host"])
    name = dockerd.unique_name("eu-hostonly")
    dockerd.run("--name", name, dockerd.image, "sleep", "120")  # started after the tracer
    in_container, host = _mark(), _mark()
    dockerd.docker("exec", name, "echo", in_container)
    _host_echo(host)

    seen = wait_for(lambda: (s := _execs(agent, instance, {in_container, host})) and host in s and s, 15,
                    "the host exec")
    assert set(seen) == {host}
    assert seen[host]["container_runtime"] == "host"
