"""The control API: permissions, clear 4xx errors, and garbage on the IPC sockets."""

from __future__ import annotations

import os
import random
import stat

import msgpack
import pytest
import zmq

from tests.integration.agentctl import Agent, wait_for


@pytest.fixture(scope="module")
def api_agent(tmp_path_factory: pytest.TempPathFactory):
    agent = Agent(tmp_path_factory.mktemp("api"), tracers=["opensnoop"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def test_socket_and_runtime_dir_are_root_only(api_agent: Agent) -> None:
    assert stat.S_IMODE(os.stat(api_agent.socket).st_mode) == 0o600
    for ipc in ("events.sock", "control.sock"):
        assert stat.S_IMODE(os.stat(api_agent.runtime / ipc).st_mode) & 0o077 == 0  # nobody but root
    assert stat.S_IMODE(os.stat(api_agent.runtime).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(api_agent.socket).st_mode)


def test_openapi_document_lists_the_operations(api_agent: Agent) -> None:
    doc = api_agent.get("/openapi.json")
    assert {"/instances", "/instances/{instance_id}", "/instances/{instance_id}/stop", "/health", "/tracers",
            "/events", "/samples", "/start"} <= set(doc["paths"])


@pytest.mark.parametrize(("body", "status", "needle"), [
    ({"tracer": "nosuch"}, 404, "no tracer named 'nosuch'"),
    ({"tracer": "opensnoop", "args": {"pid": "abc"}}, 400, "parameter 'pid': expected an integer"),
    ({"tracer": "opensnoop", "args": {"pid": -1}}, 400, "parameter 'pid': -1 is below the minimum 0"),
    ({"tracer": "opensnoop", "args": {"nosuch": 1}}, 400, "unknown parameter(s) ['nosuch']"),
    ({"tracer": "opensnoop", "args": ["--bogus"]}, 400, "unknown option '--bogus'"),
    ({"tracer": "opensnoop", "args": ["-p"]}, 400, "option -p (pid) needs a value"),
    ({"tracer": "opensnoop", "args": {"comm": "x" * 16}}, 400, "parameter 'comm'"),
    ({"tracer": "opensnoop", "args": {"ringbuf_pages": 3}}, 400, "3 is not a power of two"),
    ({"args": {}}, 400, "tracer: Field required"),
    ({"tracer": "opensnoop", "colour": "red"}, 400, "colour: Extra inputs are not permitted"),
    ({"tracer": "opensnoop", "id": "bad id!"}, 400, "id: String should match pattern"),
])
def test_bad_start_requests_name_the_problem(api_agent: Agent, body: dict, status: int, needle: str) -> None:
    before = api_agent.instances()
    response = api_agent.request("POST", "/instances", json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]
    assert [i["id"] for i in api_agent.instances()] == [i["id"] for i in before]  # nothing started


def test_not_json_is_a_400(api_agent: Agent) -> None:
    response = api_agent.request("POST", "/instances", content=b"{not json",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_unknown_instance_and_conflicts(api_agent: Agent) -> None:
    assert api_agent.request("GET", "/instances/nope").status_code == 404
    assert api_agent.request("POST", "/instances/nope/stop").status_code == 404
    running = api_agent.by_tracer("opensnoop")
    response = api_agent.request("POST", "/instances", json={"tracer": "opensnoop", "id": running["id"]})
    assert response.status_code == 409 and "already exists" in response.json()["detail"]
    response = api_agent.request("POST", f"/instances/{running['id']}/restart")
    assert response.status_code == 409 and "stop it first" in response.json()["detail"]


def test_eunomia_start_api_and_stop(api_agent: Agent) -> None:
    response = api_agent.request("POST", "/start", json={"name": "opensnoop", "args": ["-x", "-p 1"]})
    assert response.status_code == 201, response.text
    inst = response.json()
    assert inst["values"]["failed"] is True and inst["values"]["pid"] == 1
    api_agent.wait_state(inst["id"], "running")
    stopped = api_agent.request("POST", f"/instances/{inst['id']}/stop").json()
    assert stopped["state"] in ("stopping", "stopped")
    api_agent.wait_state(inst["id"], "stopped")
    assert api_agent.request("DELETE", f"/instances/{inst['id']}").status_code == 204
    assert inst["id"] not in {i["id"] for i in api_agent.instances()}


def test_garbage_on_the_ipc_sockets_is_counted_and_harmless(api_agent: Agent) -> None:
    before = api_agent.get("/health")
    running = api_agent.by_tracer("opensnoop")
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(f"ipc://{api_agent.runtime / 'events.sock'}")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"ipc://{api_agent.runtime / 'control.sock'}")
    rng = random.Random(7)
    garbage = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(50)]
    garbage += [msgpack.packb([1, 2, 3]), msgpack.packb({"v": 99, "t": "events", "id": "x"}),
                msgpack.packb({"v": 1, "t": "nonsense", "id": "x"}),
                msgpack.packb({"v": 1, "t": "events", "id": running["id"], "cols": ["a"], "rows": [[1, 2]]})]
    for frame in garbage:
        push.send(frame)
        dealer.send(frame)
    unknown = msgpack.packb({"v": 1, "t": "events", "id": "ghost", "cols": ["a"], "rows": [[1]]})
    push.send(unknown)
    push.close(linger=1000)
    dealer.close(linger=1000)
    ctx.term()
    sent_bad = 2 * len(garbage)  # every frame is invalid, on both sockets
    health = wait_for(lambda: (h := api_agent.get("/health"))["bad_frames"] >= before["bad_frames"] + sent_bad
                      and h["unknown_instance_frames"] > before["unknown_instance_frames"] and h, 10,
                      "the garbage to be counted")
    assert health["bad_frames"] == before["bad_frames"] + sent_bad
    assert health["unknown_instance_frames"] == before["unknown_instance_frames"] + 1
    assert "frame" in health["last_bad_frame"] or "msgpack" in health["last_bad_frame"]
    after = api_agent.by_tracer("opensnoop")
    assert after["state"] == "running" and after["pid"] == running["pid"] and after["restarts"] == 0
    # and it still delivers real events
    path = f"/tmp/eunomia-after-garbage-{os.getpid()}"
    with pytest.raises(FileNotFoundError):
        open(path)
    wait_for(lambda: api_agent.events(tracer="opensnoop", pid=os.getpid()) and
             [e for e in api_agent.events(tracer="opensnoop", pid=os.getpid()) if e["path"] == path], 10,
             "an event after the garbage")
