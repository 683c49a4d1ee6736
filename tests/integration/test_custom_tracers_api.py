"""Adding and removing tracers of a running agent over the API and with eunomiactl: off unless
enabled, allow-lists, validation before compiling, safe archives, failures that come back to
the caller with the compiler's or verifier's lines."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import EUNOMIACTL, REPO, TEST_TRACERS, Agent, unique, wait_for
from workers.folder_digest import folder_digest


def _copy_as(source: str, name: str, into: Path) -> Path:
    """A test tracer under another name (the folder and the spec's name must agree)."""
    folder = into / name
    shutil.copytree(TEST_TRACERS / source, folder)
    spec = folder / "tracer.yaml"
    spec.write_text(spec.read_text().replace(f"name: {source}\n", f"name: {name}\n", 1))
    return folder


def _targz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _folder_archive(folder: Path, top: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=top or folder.name)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _upload(agent: Agent, data: bytes, **params: object):
    return agent.request("POST", "/tracers", content=data, params=params, headers={"content-type": "application/gzip"})


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tracer outside the allowed directory whose digest is on the allow-list."""
    return _copy_as("flood", "listed", tmp_path_factory.mktemp("elsewhere"))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, allowed: Path, listed: Path) -> Iterator[Agent]:
    agent = Agent(tmp_path_factory.mktemp("custom-api"), tracers=["process"],
                  extra=["--allow-custom-tracers", "--custom-tracer-allow", str(allowed),
                         "--custom-tracer-allow", folder_digest(listed)])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


def test_disabled_unless_enabled(tmp_path: Path) -> None:
    agent = Agent(tmp_path / "agent", tracers=[])
    try:
        agent.wait_running()
        folder = _copy_as("flood", "offlimits", tmp_path)
        for response in (agent.request("POST", "/tracers", json={"path": str(folder)}),
                         _upload(agent, _folder_archive(folder)),
                         agent.request("DELETE", "/tracers/crasher")):
            assert response.status_code == 403, response.text
            assert "--allow-custom-tracers" in response.json()["detail"]
        assert "offlimits" not in {t["name"] for t in agent.get("/tracers")}
        assert "crasher" in {t["name"] for t in agent.get("/tracers")}
    finally:
        agent.stop()


def test_add_from_an_allowed_directory_start_and_remove(agent: Agent, allowed: Path) -> None:
    folder = _copy_as("flood", unique("fl"), allowed)
    name = folder.name
    response = agent.request("POST", "/tracers", json={"path": str(folder)})
    assert response.status_code == 201, response.text
    info = response.json()["tracer"]
    assert (info["name"], info["origin"], info["source"], info["builtin"]) == (name, "path", str(folder), False)
    assert info["digest"] == folder_digest(folder)
    copy = Path(info["folder"])
    assert copy != folder and copy.parent.parent == agent.tmp / "custom-tracers"
    assert stat.S_IMODE(os.stat(agent.tmp / "custom-tracers").st_mode) == 0o700
    assert agent.get(f"/tracers/{name}")["origin"] == "path"
    assert agent.get("/tracers/process")["origin"] == "builtin"
    assert agent.get("/tracers/crasher")["origin"] == "configured"
    # the same folder again is not an error; another folder under the same name is
    again = agent.request("POST", "/tracers", json={"path": str(folder)})
    assert again.status_code == 200 and again.json()["created"] is False
    (folder / "README").write_text("changed\n")
    response = agent.request("POST", "/tracers", json={"path": str(folder)})
    assert response.status_code == 409 and "remove it first" in response.json()["detail"]

    inst = agent.start(name, ["-p", "1"])
    agent.wait_state(inst["id"], "running")
    response = agent.request("DELETE", f"/tracers/{name}")
    assert response.status_code == 409 and inst["id"] in response.json()["detail"]
    assert agent.request("DELETE", f"/tracers/{name}", params={"force": "true"}).status_code == 204
    assert agent.request("GET", f"/tracers/{name}").status_code == 404
    wait_for(lambda: inst["id"] not in {i["id"] for i in agent.instances()}, 15, "the instance to be removed")
    assert not copy.exists()
    assert agent.request("DELETE", f"/tracers/{name}").status_code == 404


def test_allow_list_refusals_name_the_reason(agent: Agent, tmp_path: Path, listed: Path) -> None:
    outside = _copy_as("flood", unique("out"), tmp_path)
    response = agent.request("POST", "/tracers", json={"path": str(outside)})
    assert response.status_code == 403
    assert "is not under an allowed directory" in response.json()["detail"]
    assert folder_digest(outside) in response.json()["detail"]
    response = _upload(agent, _folder_archive(outside))
    assert response.status_code == 403
    assert "accepted only by its digest" in response.json()["detail"]
    # by digest: from its folder, and uploaded
    response = agent.request("POST", "/tracers", json={"path": str(listed)})
    assert response.status_code == 201, response.text
    assert agent.request("DELETE", "/tracers/listed").status_code == 204
    response = _upload(agent, _folder_archive(listed))
    assert response.status_code == 201, response.text
    assert response.json()["tracer"]["origin"] == "uploaded" and response.json()["tracer"]["source"] == "upload"
    assert agent.request("DELETE", "/tracers/listed").status_code == 204


def test_bad_spec_is_refused_before_compiling_naming_the_field(agent: Agent, allowed: Path) -> None:
    folder = _copy_as("flood", unique("bad"), allowed)
    spec = folder / "tracer.yaml"
    spec.write_text(spec.read_text().replace("fields: []", "fields:\n    - {name: x, type: u128}"))
    response = agent.request("POST", "/tracers", json={"path": str(folder)})
    assert response.status_code == 400
    assert "event.fields.0.type" in response.json()["detail"] and "u128" in response.json()["detail"]
    assert folder.name not in {t["name"] for t in agent.get("/tracers")}
    assert not [i for i in agent.instances() if i["tracer"] == folder.name]


@pytest.mark.parametrize(("members", "status", "needle"), [
    ([_file("tracer.yaml"), _file("../evil.c")], 400, "'..' is not allowed"),
    ([_file("tracer.yaml"), _file("/etc/evil.c")], 400, "absolute paths are not allowed"),
    ([_file("tracer.yaml"), _link("program.bpf.c", "/etc/shadow", tarfile.SYMTYPE)], 400, "a link"),
    ([_file("tracer.yaml"), _link("program.bpf.c", "tracer.yaml", tarfile.LNKTYPE)], 400, "a link"),
    ([_file("tracer.yaml"), _link("fifo", "", tarfile.FIFOTYPE)], 400, "not a regular file"),
    ([_file("tracer.yaml"), _file("big.c", b"\0" * (5 << 20))], 413, "the limit per file"),
    ([_file("a/tracer.yaml"), _file("b/program.bpf.c")], 400, "no tracer.yaml"),
])
def test_unsafe_archives_are_refused(agent: Agent, members: list, status: int, needle: str) -> None:
    before = set(os.listdir(agent.tmp / "custom-tracers")) if (agent.tmp / "custom-tracers").exists() else set()
    response = _upload(agent, _targz(members))
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]
    assert not (agent.tmp / "evil.c").exists() and not Path("/etc/evil.c").exists()
    assert set(os.listdir(agent.tmp / "custom-tracers")) <= before  # nothing left behind


def test_not_an_archive_too_large_and_wrong_content_type(agent: Agent) -> None:
    response = _upload(agent, b"certainly not a tar archive")
    assert response.status_code == 400 and "not a readable tar archive" in response.json()["detail"]
    response = _upload(agent, os.urandom(9 << 20))
    assert response.status_code == 413 and "limit is" in response.json()["detail"]
    response = agent.request("POST", "/tracers", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    response = agent.request("POST", "/tracers", json={"path": "relative/dir"})
    assert response.status_code == 400 and "absolute path" in response.json()["detail"]
    response = agent.request("POST", "/tracers", json={"paht": "/x"})
    assert response.status_code == 400 and "paht" in response.json()["detail"]


def test_folder_with_a_symlink_is_refused(agent: Agent, allowed: Path) -> None:
    folder = _copy_as("flood", unique("ln"), allowed)
    (folder / "extra.h").symlink_to("/etc/hostname")
    response = agent.request("POST", "/tracers", json={"path": str(folder)})
    assert response.status_code == 400 and "symbolic link" in response.json()["detail"]


def test_builtin_tracers_cannot_be_removed_or_shadowed(agent: Agent, allowed: Path) -> None:
    response = agent.request("DELETE", "/tracers/process")
    assert response.status_code == 403 and "built-in" in response.json()["detail"]
    assert agent.by_tracer("process")["state"] == "running"
    shadow = allowed / "opensnoop"
    shutil.copytree(TEST_TRACERS / "flood", shadow)
    (shadow / "tracer.yaml").write_text((shadow / "tracer.yaml").read_text().replace("name: flood", "name: opensnoop"))
    response = agent.request("POST", "/tracers", json={"path": str(shadow)})
    assert response.status_code == 409 and "built-in" in response.json()["detail"]


def test_verifier_rejection_of_the_first_instance_comes_back_to_the_caller(agent: Agent, allowed: Path) -> None:
    folder = _copy_as("rejected", unique("rej"), allowed)
    response = _upload(agent, _folder_archive(folder), start="true", wait=60)
    assert response.status_code == 403  # uploads need a listed digest; the path is allowed
    response = agent.request("POST", "/tracers", params={"start": "true"}, json={"path": str(folder)})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["kind"] == "verifier"
    assert body["detail"].startswith("verifier: the kernel verifier rejected the program: R0 invalid mem access")
    assert body["source"] == "program.bpf.c:14: return *value;"
    assert any("invalid mem access 'map_value_or_null'" in line for line in body["log"])
    assert body["instance"]["state"] == "fatal" and body["instance"]["restarts"] == 0
    assert body["tracer_kept"] is False
    assert agent.request("GET", f"/tracers/{folder.name}").status_code == 404  # not kept
    assert not [i for i in agent.instances() if i["tracer"] == folder.name]


def test_cli_add_start_and_rm(agent: Agent, allowed: Path) -> None:
    env = {**os.environ, "EUNOMIA_SOCKET": str(agent.socket)}
    broken = _copy_as("flood", unique("cc"), allowed)
    source = (broken / "program.bpf.c").read_text()
    assert source.count("    eunomia_submit(e, sizeof(*e));") == 1
    (broken / "program.bpf.c").write_text(source.replace("    eunomia_submit(e, sizeof(*e));",
                                                         "    e->nosuch = 1; eunomia_submit(e, sizeof(*e));"))
    result = subprocess.run([*EUNOMIACTL, "tracers", "add", str(broken), "--start"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "did not start: compile: the program does not compile" in result.stderr
    assert "at program.bpf.c:15: e->nosuch = 1; eunomia_submit(e, sizeof(*e));" in result.stderr
    assert "no member named 'nosuch'" in result.stderr
    good = _copy_as("flood", unique("ok"), allowed)
    result = subprocess.run([*EUNOMIACTL, "tracers", "add", str(good), "--start", "--id", f"{good.name}-a", "--",
                             "-p", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"added {good.name} (path, {folder_digest(good)})" in result.stdout
    assert f"{good.name}-a: running" in result.stdout
    assert agent.instance(f"{good.name}-a")["values"]["pid"] == 1
    result = subprocess.run([*EUNOMIACTL, "tracers", "rm", good.name, "--force"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"removed {good.name}" in result.stdout
    result = subprocess.run([*EUNOMIACTL, "tracers", "digest", str(good)], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == folder_digest(good)
