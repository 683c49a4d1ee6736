"""The control API on TCP (``listeners.control_tcp``): a bearer token from a root-only file, optional TLS."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.integration.agentctl import EUNOMIACTL, REPO, Agent

TOKEN = "eunomia-test-token-" + "5f3a9c" * 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def token_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, mode)
    return path


def write_config(tmp_path: Path, port: int, token: Path, tls: tuple[Path, Path] | None = None) -> Path:
    text = (f"tracers: []\nlisteners:\n  control_tcp:\n    address: 127.0.0.1\n    port: {port}\n"
            f"    token_file: {token}\n")
    if tls:
        text += f"    tls_cert: {tls[0]}\n    tls_key: {tls[1]}\n"
    path = tmp_path / "eunomia.yaml"
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_required_and_nothing_changes_without_it(tmp_path: Path) -> None:
    port = free_port()
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(write_config(tmp_path, port, token_file(tmp_path)))])
    try:
        agent.wait_running()
        assert agent.instances() == []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as remote:
            for headers in ({}, bearer("wrong-token-0123456789"), bearer(TOKEN[:-1]), {"Authorization": TOKEN}):
                for method, url, body in (("GET", "/instances", None), ("POST", "/instances", {"tracer": "opensnoop"}),
                                          ("POST", "/start", {"name": "opensnoop", "args": []})):
                    response = remote.request(method, url, json=body, headers=headers)
                    assert response.status_code == 401, (method, url, headers, response.text)
                    assert response.headers["www-authenticate"].startswith("Bearer")
            assert agent.instances() == []  # no instance was created through the unix socket's view either
            response = remote.post("/instances", json={"tracer": "opensnoop", "id": "remote-opens"},
                                   headers=bearer(TOKEN))
            assert response.status_code == 201, response.text
            assert [i["id"] for i in agent.instances()] == ["remote-opens"]
            agent.wait_state("remote-opens", "running")
            assert remote.request("DELETE", "/instances/remote-opens").status_code == 401
            assert [i["id"] for i in agent.instances()] == ["remote-opens"]
            response = remote.get("/instances/remote-opens", headers=bearer(TOKEN))
            assert response.status_code == 200 and response.json()["state"] == "running"
            assert remote.get("/health", headers=bearer(TOKEN)).json()["instances"] == 1
    finally:
        assert agent.stop() == 0
    assert not listening(port)


@pytest.mark.parametrize(("problem", "message"), [
    ("missing", "token_file: {token}: no such file"),
    ("group-readable", "token_file: {token}: mode 0640 lets others read it"),
    ("world-readable", "token_file: {token}: mode 0604 lets others read it"),
    ("empty", "token_file: {token}: the token is empty"),
])
def test_refuses_to_start_without_a_proper_token_file(tmp_path: Path, problem: str, message: str) -> None:
    port = free_port()
    token = token_file(tmp_path, {"group-readable": 0o640, "world-readable": 0o604}.get(problem, 0o600))
    if problem == "missing":
        token.unlink()
    elif problem == "empty":
        token.write_text("")
    config = write_config(tmp_path, port, token)
    result = subprocess.run([*EUNOMIACTL, "run", "--config", str(config), "--runtime-dir", str(tmp_path / "run"),
                             "--db", str(tmp_path / "e.db")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 78, result.stderr
    assert f"{config}:6: listeners.control_tcp.{message.format(token=token)}" in result.stderr
    assert not (tmp_path / "run").exists() and not listening(port)


def test_a_taken_port_stops_the_agent_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, token_file(tmp_path))
        result = subprocess.run([*EUNOMIACTL, "run", "--config", str(config), "--runtime-dir", str(tmp_path / "run"),
                                 "--db", str(tmp_path / "e.db")], capture_output=True, text=True, timeout=120,
                                cwd=REPO)
    assert result.returncode == 1, result.stderr
    assert f"eunomia: control API: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.db").exists()


def self_signed_cert(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=eunomia-test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def test_tls(tmp_path: Path) -> None:
    port = free_port()
    cert, key = self_signed_cert(tmp_path)
    config = write_config(tmp_path, port, token_file(tmp_path), (cert, key))
    agent = Agent(tmp_path, tracers=None, extra=["--config", str(config)])
    try:
        agent.wait_running()
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusted, timeout=30) as remote:
            assert remote.get("/instances").status_code == 401
            assert remote.post("/instances", json={"tracer": "opensnoop"}).status_code == 401
            response = remote.get("/instances", headers=bearer(TOKEN))
            assert response.status_code == 200 and response.json() == []
            response = remote.post("/instances", json={"tracer": "opensnoop", "id": "tls-opens"},
                                   headers=bearer(TOKEN))
            assert response.status_code == 201, response.text
        assert [i["id"] for i in agent.instances()] == ["tls-opens"]
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port: no answer
            httpx.get(f"http://127.0.0.1:{port}/instances", headers=bearer(TOKEN), timeout=10)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # an untrusted client refuses
            httpx.get(f"https://127.0.0.1:{port}/instances", headers=bearer(TOKEN), timeout=10)
    finally:
        assert agent.stop() == 0
