"""The desired state: instances come back after a restart (kill -9 or SIGTERM) with the same ids,
arguments and export handlers, and trace what those say; a bad state file or a vanished tracer is
reported without stopping the agent; ``eunomiactl apply`` configures three agents at once (two
on unix sockets, one over TCP with a token and TLS) and reports exactly what changed on each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.integration import test_control_tcp as tcp
from tests.integration.agentctl import EUNOMIACTL, REPO, Agent, unique, wait_for


def _opens(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [r for r in map(orjson.loads, path.read_bytes().splitlines()) if "path" in r]


def _run_named(tmp: Path, comm: str) -> int:
    binary = tmp / comm
    if not binary.exists():
        shutil.copy("/bin/true", binary)
    proc = subprocess.Popen([str(binary)])
    proc.wait()
    return proc.pid


def _wait_up(agent: Agent) -> None:
    """The API answers (the agent's instances may be in any state)."""
    def up() -> bool:
        if agent.proc.poll() is not None:
            raise AssertionError(f"agent exited with {agent.proc.returncode}:\n{agent.log()}")
        try:
            return agent.socket.exists() and agent.request("GET", "/health").status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(up, 30, "the agent's API")


def _setup_instances(agent: Agent, tmp: Path, comm: str) -> dict[str, Any]:
    """failed-opens (a file and sqlite), execs (comm filter), idle (stopped), gone (removed)."""
    agent.start("opensnoop", {"failed": True}, id="failed-opens",
                export_handlers=[{"name": "file", "args": [str(tmp / "opens.jsonl")]}, {"name": "sqlite"}])
    agent.start("process", ["-n", comm], id="execs")
    agent.start("opensnoop", ["-p", "1"], id="idle")
    agent.start("process", {}, id="gone")
    assert agent.request("DELETE", "/instances/gone").status_code == 204
    assert agent.request("POST", "/instances/idle/stop").status_code == 200
    agent.wait_state("failed-opens", "running")
    agent.wait_state("execs", "running")
    agent.wait_state("idle", "stopped")
    return agent.get("/desired")


def _check_restored(agent: Agent, tmp: Path, comm: str, desired: dict[str, Any], old_pids: set[int]) -> None:
    _wait_up(agent)
    assert agent.get("/desired") == desired
    opens = agent.wait_state("failed-opens", "running")
    execs = agent.wait_state("execs", "running")
    assert {i["id"] for i in agent.instances()} == {"failed-opens", "execs", "idle"}  # "gone" stays gone
    assert opens["args"] == {"failed": True} and execs["args"] == ["-n", comm]
    assert [(h["name"], h["args"]) for h in opens["export_handlers"]] == \
        [("file", [str(tmp / "opens.jsonl")]), ("sqlite", [])]
    assert [h["name"] for h in execs["export_handlers"]] == ["sqlite"]  # the agent's default, as before
    assert {opens["pid"], execs["pid"]}.isdisjoint(old_pids)  # new workers
    idle = agent.instance("idle")
    assert idle["state"] == "stopped" and idle["pid"] is None and idle["args"] == ["-p", "1"]
    # what the restored arguments and handlers say is what they trace: a failed open, not a successful one ...
    found = tmp / f"found-{unique('f')}"
    found.write_text("x")
    found.read_text()
    missing = tmp / f"missing-{unique('m')}"
    with pytest.raises(FileNotFoundError):
        missing.open()
    wait_for(lambda: any(r["path"] == str(missing) for r in _opens(tmp / "opens.jsonl")), 20,
             "the failed open in the restored file handler")
    lines = [r for r in _opens(tmp / "opens.jsonl") if r["path"] in (str(found), str(missing))]
    assert [(r["path"], r["errno"], r["pid"], r["instance"]) for r in lines] == \
        [(str(missing), 2, os.getpid(), "failed-opens")]
    stored = wait_for(lambda: [e for e in agent.events(instance="failed-opens") if e["path"] == str(missing)], 20,
                      "the failed open in the store")
    assert len(stored) == 1
    # ... and the exec of a program called `comm`, nothing else
    pid = _run_named(tmp, comm)
    execs_seen = wait_for(lambda: [e for e in agent.events(instance="execs") if e["pid"] == pid], 20,
                          f"the exec of {comm} ({pid})")
    assert {e["comm"] for e in agent.events(instance="execs")} == {comm}
    assert any(e["event"] == "exec" for e in execs_seen)


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
def test_instances_come_back_after_a_restart(tmp_path: Path, how: str) -> None:
    comm = unique("dsx")
    agent = Agent(tmp_path, tracers=[])
    try:
        agent.wait_running()
        desired = _setup_instances(agent, tmp_path, comm)
        assert [(i["id"], i["state"]) for i in desired["instances"]] == \
            [("failed-opens", "running"), ("execs", "running"), ("idle", "stopped")]
        saved = json.loads((tmp_path / "desired.json").read_text())
        assert saved["instances"] == desired["instances"]
        assert os.stat(tmp_path / "desired.json").st_mode & 0o777 == 0o600
        old_pids = agent.worker_pids()
        if how == "kill-9":
            agent.proc.kill()
            agent.proc.wait()
            agent.stop()
        else:
            assert agent.stop() == 0
        wait_for(lambda: not any(Path(f"/proc/{p}").exists() for p in old_pids), 10, "the old workers to go")
    except BaseException:
        agent.stop()
        raise
    again = Agent(tmp_path, tracers=[])
    try:
        _check_restored(again, tmp_path, comm, desired, old_pids)
        health = again.get("/health")
        assert health["status"] == "ok", health
        assert health["desired"]["restored"] is True and health["desired"]["problems"] == []
    finally:
        assert again.stop() == 0


def test_a_corrupt_state_file_is_kept_aside_and_reported(tmp_path: Path) -> None:
    garbage = b'{"version": 1, "instances": [{"id": "half-writ'
    (tmp_path / "desired.json").write_bytes(garbage)
    os.chmod(tmp_path / "desired.json", 0o600)
    agent = Agent(tmp_path, tracers=["opensnoop"])
    try:
        instances = agent.wait_running()
        assert [(i["id"], i["tracer"]) for i in instances] == [("opensnoop-1", "opensnoop")]  # from the config
        copies = list(tmp_path.glob("desired.json.corrupt-*"))
        assert len(copies) == 1 and copies[0].read_bytes() == garbage
        health = agent.get("/health")
        assert health["status"] == "degraded"
        assert health["desired"]["restored"] is False
        [problem] = health["desired"]["problems"]
        assert problem.startswith(f"state file not restored: {tmp_path / 'desired.json'}: not valid JSON")
        assert problem.endswith(f"kept as {copies[0]}")
        assert "desired state not restored" in agent.log() and str(copies[0]) in agent.log()
        saved = json.loads((tmp_path / "desired.json").read_text())  # a good one replaced it
        assert [i["id"] for i in saved["instances"]] == ["opensnoop-1"]
    finally:
        assert agent.stop() == 0


def test_an_instance_whose_tracer_is_gone_is_reported_and_kept(tmp_path: Path) -> None:
    extra = tmp_path / "tracers"
    shutil.copytree(REPO / "bpf" / "opensnoop", extra / "mysnoop")
    spec = extra / "mysnoop" / "tracer.yaml"
    spec.write_text(spec.read_text().replace("name: opensnoop\n", "name: mysnoop\n", 1))
    agent = Agent(tmp_path, tracers=[], extra=["--tracer-path", str(extra)])
    try:
        agent.wait_running()
        agent.start("mysnoop", {"failed": True}, id="mine")
        agent.start("opensnoop", {}, id="builtin")
        agent.wait_running()
    finally:
        assert agent.stop() == 0
    shutil.rmtree(extra)  # the custom tracer is removed while the agent is down
    again = Agent(tmp_path, tracers=[], extra=["--tracer-path", str(extra)])
    try:
        assert [i["id"] for i in again.wait_running()] == ["builtin"]
        health = again.get("/health")
        assert health["status"] == "degraded"
        assert health["desired"]["problems"] == [
            "instance 'mine' (tracer 'mysnoop') does not exist: no tracer named 'mysnoop' (known: "
            + ", ".join(sorted(t["name"] for t in again.get("/tracers"))) + ")"]
        assert [i["id"] for i in again.get("/desired")["instances"]] == ["mine", "builtin"]  # still desired
        assert "instance mine (tracer mysnoop) not started" in again.log()
        assert again.request("DELETE", "/instances/mine").status_code == 204  # the operator lets it go
        health = again.get("/health")
        assert health["status"] == "ok" and health["desired"]["problems"] == []
        assert [i["id"] for i in again.get("/desired")["instances"]] == ["builtin"]
    finally:
        assert again.stop() == 0


def _config(tmp: Path, tracers: str) -> Path:
    path = tmp / "eunomia.yaml"
    path.write_text(f"tracers:\n{tracers}")
    os.chmod(path, 0o600)
    return path


def test_the_saved_state_wins_until_the_config_file_changes(tmp_path: Path) -> None:
    config = _config(tmp_path, "  - {name: opensnoop, id: cfg-opens, args: {failed: true}}\n"
                               "  - {name: process, id: cfg-execs}\n")
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)])
    try:  # first start: the configured tracers; then changes through the API
        assert sorted(i["id"] for i in agent.wait_running()) == ["cfg-execs", "cfg-opens"]
        agent.request("POST", "/instances/cfg-execs/stop")
        agent.start("opensnoop", ["-p", "1"], id="mine")
        agent.wait_state("mine", "running")
    finally:
        assert agent.stop() == 0
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)])
    try:  # the same config: the saved state, exactly (the stop through the API is not undone)
        _wait_up(agent)
        assert agent.get("/health")["desired"]["config_changes"] == []
        assert agent.wait_state("cfg-opens", "running")["args"] == {"failed": True}
        assert agent.wait_state("mine", "running")["args"] == ["-p", "1"]
        assert agent.instance("cfg-execs")["state"] == "stopped"
    finally:
        assert agent.stop() == 0
    _config(tmp_path, "  - {name: opensnoop, id: cfg-opens, args: {failed: false}}\n"
                      "  - {name: tcpconnect, id: cfg-tcp}\n")
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)])
    try:  # an edited config: its changed and new entries apply, its dropped one goes; "mine" is left alone
        instances = agent.wait_running()
        assert [(i["id"], i["tracer"], i["args"]) for i in instances] == \
            [("cfg-opens", "opensnoop", {"failed": False}), ("mine", "opensnoop", ["-p", "1"]),
             ("cfg-tcp", "tcpconnect", {})]
        assert agent.get("/health")["desired"]["config_changes"] == [
            "cfg-execs: removed (no longer in the configuration)",
            "cfg-opens: replaced (changed in the configuration)", "cfg-tcp: added (new in the configuration)"]
    finally:
        assert agent.stop() == 0


# -- eunomiactl apply to three agents ------------------------------------------------------------


class Fleet:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = tcp.free_port()
        self.token = tcp.token_file(tmp)
        self.cert, key = tcp.self_signed_cert(tmp)
        (tmp / "n3").mkdir()
        config = tcp.write_config(tmp / "n3", self.port, self.token, (self.cert, key))
        self.agents = [Agent(tmp / "n1", tracers=[]), Agent(tmp / "n2", tracers=[]),
                       Agent(tmp / "n3", tracers=None, extra=["--config", str(config)])]
        self.url = f"https://127.0.0.1:{self.port}"
        self.nodes = [str(self.agents[0].socket), str(self.agents[1].socket), self.url]

    def apply(self, document: dict[str, Any] | str, *options: str, nodes: list[str] | None = None,
              token: Path | None = None) -> tuple[int, dict[str, Any], str]:
        path = self.tmp / f"doc-{unique('d')}.yaml"
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        node_args = [a for n in (nodes or self.nodes) for a in ("--node", n)]
        result = subprocess.run([*EUNOMIACTL, "apply", "-f", str(path), *node_args, "--json", "--token-file",
                                 str(token or self.token), "--cacert", str(self.cert), "--timeout", "30", *options],
                                capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ})
        report = json.loads(result.stdout) if result.stdout.startswith("{") else {}
        return result.returncode, report, result.stderr

    def by_node(self, report: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {n["node"]: n for n in report["nodes"]}

    def states(self) -> list[dict[str, tuple[str, int | None]]]:
        return [{i["id"]: (i["state"], i["pid"]) for i in a.instances()} for a in self.agents]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        for agent in fleet.agents:
            agent.wait_running()
        yield fleet
    finally:
        for agent in fleet.agents:
            agent.stop()


def _result(id_: str, tracer: str, action: str, state: str | None, changes: list[str] | None = None,
            error: str | None = None) -> dict[str, Any]:
    return {"id": id_, "tracer": tracer, "action": action, "changes": changes or [], "state": state, "error": error}


def test_apply_to_three_agents(fleet: Fleet, tmp_path: Path) -> None:
    comm = unique("flt")
    doc: dict[str, Any] = {"instances": [
        {"id": "fleet-opens", "tracer": "opensnoop", "args": {"failed": True}, "export_handlers": [{"name": "sqlite"}]},
        {"id": "fleet-execs", "tracer": "process", "args": ["-n", comm]},
        {"id": "fleet-idle", "tracer": "opensnoop", "state": "stopped"},
    ]}
    code, report, err = fleet.apply(doc)
    assert code == 0, err
    created = [_result("fleet-opens", "opensnoop", "created", "starting"),
               _result("fleet-execs", "process", "created", "starting"),
               _result("fleet-idle", "opensnoop", "created", "stopped")]
    assert report["ok"] is True
    assert report["nodes"] == [{"node": n, "ok": True, "error": None, "status": 200, "summary": {"created": 3},
                                "results": created, "problems": []} for n in fleet.nodes]
    for agent in fleet.agents:
        agent.wait_state("fleet-opens", "running")
        agent.wait_state("fleet-execs", "running")
    before = fleet.states()

    # the same document again: nothing changes anywhere
    code, report, err = fleet.apply(doc)
    assert code == 0, err
    for node in report["nodes"]:
        assert node["summary"] == {"unchanged": 3}
        assert [(r["id"], r["action"], r["state"]) for r in node["results"]] == \
            [("fleet-opens", "unchanged", "running"), ("fleet-execs", "unchanged", "running"),
             ("fleet-idle", "unchanged", "stopped")]
    assert fleet.states() == before

    # a change of arguments restarts that instance only; an instance started by hand on n1 is kept
    fleet.agents[0].start("opensnoop", ["-p", "1"], id="by-hand")
    fleet.agents[0].wait_state("by-hand", "running")
    doc["instances"][0]["args"] = {"failed": False}
    code, report, err = fleet.apply(doc)
    assert code == 0, err
    nodes = fleet.by_node(report)
    for n in fleet.nodes:
        assert nodes[n]["results"][:3] == [_result("fleet-opens", "opensnoop", "updated", "starting", ["args"]),
                                           _result("fleet-execs", "process", "unchanged", "running"),
                                           _result("fleet-idle", "opensnoop", "unchanged", "stopped")]
    assert nodes[fleet.nodes[0]]["results"][3:] == [_result("by-hand", "opensnoop", "kept", "running")]
    assert [len(nodes[n]["results"]) for n in fleet.nodes] == [4, 3, 3]
    for index, agent in enumerate(fleet.agents):
        opens = agent.wait_state("fleet-opens", "running")
        assert opens["args"] == {"failed": False} and opens["pid"] != before[index]["fleet-opens"][1]
        assert agent.instance("fleet-execs")["pid"] == before[index]["fleet-execs"][1]  # not restarted
    marker = tmp_path / f"opened-{unique('o')}"
    marker.write_text("x")
    for agent in fleet.agents:  # the new arguments hold: successful opens are traced now, on every node
        wait_for(lambda a=agent: [e for e in a.events(instance="fleet-opens") if e["path"] == str(marker)], 20,
                 "a successful open under the updated arguments")

    # prune: what the document does not list goes
    pruned = {"instances": doc["instances"][:2]}
    code, report, err = fleet.apply(pruned, "--prune")
    assert code == 0, err
    nodes = fleet.by_node(report)
    removed = [_result("fleet-idle", "opensnoop", "removed", None)]
    assert nodes[fleet.nodes[0]]["results"][2:] == removed + [_result("by-hand", "opensnoop", "removed", None)]
    assert nodes[fleet.nodes[1]]["results"][2:] == nodes[fleet.nodes[2]]["results"][2:] == removed
    for agent in fleet.agents:
        wait_for(lambda a=agent: {i["id"] for i in a.instances()} == {"fleet-opens", "fleet-execs"}, 15,
                 "the pruned instances to go")
    settled = [agent.get("/desired") for agent in fleet.agents]
    states = fleet.states()

    # a bad document changes nothing on any node: one instance's arguments are wrong
    bad = {"instances": [*pruned["instances"], {"id": "fleet-new", "tracer": "tcpconnect"}]}
    bad["instances"][1] = {**bad["instances"][1], "args": {"pid": -1}}
    code, report, err = fleet.apply(bad, "--prune")
    assert code == 1
    for node in report["nodes"]:
        assert (node["ok"], node["status"], node["results"]) == (False, 400, [])
        assert node["error"] == ("refused the document: instances[1] (id 'fleet-execs').args: "
                                 "parameter 'pid': -1 is below the minimum 0")
        assert node["problems"] == [{"index": 1, "id": "fleet-execs", "field": "args",
                                     "message": "parameter 'pid': -1 is below the minimum 0"}]
    # ... and a document of the wrong shape is refused before any node is asked
    code, report, err = fleet.apply("instances:\n  - {id: x}\n")
    assert code == 2 and report == {}
    assert "instances[0] (id 'x').tracer: Field required" in err
    assert [agent.get("/desired") for agent in fleet.agents] == settled and fleet.states() == states

    # an unreachable node and a wrong token are reported; the other nodes are applied
    stopped = {"instances": [pruned["instances"][0], {**pruned["instances"][1], "state": "stopped"}]}
    absent = str(tmp_path / "absent" / "eunomia.sock")
    code, report, err = fleet.apply(stopped, nodes=[fleet.nodes[0], absent, fleet.nodes[1]])
    assert code == 1
    nodes = fleet.by_node(report)
    assert nodes[absent]["ok"] is False and nodes[absent]["error"].startswith("unreachable: ")
    for n in fleet.nodes[:2]:
        assert nodes[n]["ok"] is True
        assert nodes[n]["results"] == [_result("fleet-opens", "opensnoop", "unchanged", "running"),
                                       _result("fleet-execs", "process", "updated", "stopping", ["state"])]
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-0123456789")
    code, report, err = fleet.apply(stopped, nodes=[fleet.url], token=wrong)
    assert code == 1
    assert report["nodes"] == [{"node": fleet.url, "ok": False, "error": "401: missing or invalid bearer token",
                                "status": 401, "summary": {}, "results": [], "problems": []}]
    assert fleet.agents[2].instance("fleet-execs")["state"] == "running"
    for agent in fleet.agents[:2]:
        agent.wait_state("fleet-execs", "stopped")
        saved = json.loads((agent.tmp / "desired.json").read_text())
        assert saved["instances"] == agent.get("/desired")["instances"]  # what is on disk is what it reports

    # export-state from the remote node gives a document that applies back as unchanged
    exported = subprocess.run([*EUNOMIACTL, "export-state", "--node", fleet.url, "--token-file", str(fleet.token),
                               "--cacert", str(fleet.cert)], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert exported.returncode == 0, exported.stderr
    assert yaml.safe_load(exported.stdout) == fleet.agents[2].get("/desired")
    code, report, err = fleet.apply(exported.stdout, "--prune", nodes=[fleet.url])
    assert code == 0, err
    assert report["nodes"][0]["summary"] == {"unchanged": 2}
