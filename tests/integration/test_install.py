"""``make install`` / ``make uninstall`` into a DESTDIR: the files, the unit (``systemd-analyze verify`` on the
tree as installed), the installed command from its own venv, a config that is never overwritten, data kept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.agentctl import REPO, wait_for

HOST_UNITS = Path("/usr/lib/systemd/system")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def install(root: Path) -> subprocess.CompletedProcess[str]:
    result = make("install", f"DESTDIR={root}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("destdir")
    install(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_files_are_in_place(root: Path) -> None:
    opt = root / "opt/eunomia"
    for path in ("app/supervisor/agent.py", "app/workers/__main__.py", "app/ipc/envelope.py",
                 "app/bpf/opensnoop/tracer.yaml", "app/bpf/include", "app/docs/operations.md", "venv/bin/python",
                 "eunomia.yaml.default"):
        assert (opt / path).exists(), path
    assert mode(opt / "bin/eunomiactl") == 0o755
    link = root / "usr/local/bin/eunomiactl"
    assert link.is_symlink() and os.readlink(link) == "/opt/eunomia/bin/eunomiactl"  # the final path, not DESTDIR
    unit = (root / "etc/systemd/system/eunomia.service").read_text()
    assert "ExecStart=/opt/eunomia/bin/eunomiactl run --config /etc/eunomia/eunomia.yaml" in unit
    assert (root / "etc/eunomia/eunomia.yaml").read_text() == (REPO / "systemd/eunomia.yaml").read_text()
    assert mode(root / "etc/eunomia") == 0o700 and mode(root / "var/lib/eunomia") == 0o700
    leaks = subprocess.run(["grep", "-rlI", "-F", str(root), str(opt / "venv/bin"), str(opt / "venv/pyvenv.cfg"),
                            str(root / "etc"), str(opt / "bin")], capture_output=True, text=True)
    assert leaks.stdout == "", f"installed files name the staging directory: {leaks.stdout}"


def test_installed_command_runs_from_its_own_venv(root: Path, tmp_path: Path) -> None:
    # called through a symlink, from another directory, with no trace of the repository's venv in the environment
    link = tmp_path / "eunomiactl"
    link.symlink_to(root / "opt/eunomia/bin/eunomiactl")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([str(link), "--help"], capture_output=True, text=True, cwd="/", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Eunomia: eBPF monitoring agent" in result.stdout and " run " in result.stdout
    config = root / "etc/eunomia/eunomia.yaml"
    result = subprocess.run([str(link), "run", "--config", str(config), "--check"], capture_output=True, text=True,
                            cwd="/", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{config}: OK (tracers: process, opensnoop, tcpconnect)"
    where = subprocess.run([str(root / "opt/eunomia/venv/bin/python"), "-c",
                            "import supervisor, workers.catalog as c; print(supervisor.__file__, c.BUILTIN_DIR)"],
                           capture_output=True, text=True, cwd="/", env=env, timeout=60)
    app = root / "opt/eunomia/app"
    assert where.stdout.split() == [str(app / "supervisor/__init__.py"), str(app / "bpf")], where.stderr


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: `apt-get install systemd` (the unit cannot be verified without it)")
    # the unit's dependencies (sysinit.target, ...) must be found inside the root, as on a real host
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    return subprocess.run([analyze, "--man=no", f"--root={root}", "verify", "/etc/systemd/system/eunomia.service"],
                          capture_output=True, text=True, timeout=120)


def test_unit_verifies_as_installed(root: Path, tmp_path: Path) -> None:
    result = verify(root)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    # the same check fails when the command it starts is missing: it is not vacuous
    bare = tmp_path / "bare"
    (bare / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(root / "etc/systemd/system/eunomia.service", bare / "etc/systemd/system")
    result = verify(bare)
    assert result.returncode != 0 and "/opt/eunomia/bin/eunomiactl is not executable" in result.stderr


def unit_capabilities(root: Path) -> list[str]:
    lines = (root / "etc/systemd/system/eunomia.service").read_text().splitlines()
    return [cap.removeprefix("CAP_").lower() for line in lines if line.startswith("CapabilityBoundingSet=")
            for cap in line.partition("=")[2].split()]


def test_installed_agent_traces_inside_the_units_sandbox(root: Path, tmp_path: Path) -> None:
    """The unit cannot run here (PID 1 is not systemd), so its sandbox is rebuilt around the installed agent:
    only the unit's capabilities (bounding set) and no_new_privs, the whole file system read-only except the
    runtime and state directories (ProtectSystem=strict, ProtectHome=read-only, ProtectControlGroups=yes).
    Tracers that exercise every capability still attach, and an open by this test is seen and stored."""
    run, state = tmp_path / "run", tmp_path / "state"
    run.mkdir(mode=0o700)
    state.mkdir(mode=0o700)
    caps = ",".join(f"+{c}" for c in unit_capabilities(root))
    sandbox = (f"mount --make-rprivate / && mount --bind {run} {run} && mount --bind {state} {state} && "
               "mount -o remount,bind,ro / && "
               "for m in /sys/fs/cgroup $(awk '$5 ~ \"^/sys/fs/cgroup/\" {print $5}' /proc/self/mountinfo); do "
               "mount -o remount,bind,ro $m; done && "
               f'exec setpriv --no-new-privs --bounding-set -all,{caps} --inh-caps -all "$@"')
    command = ["unshare", "--mount", "sh", "-c", sandbox, "sandbox", str(root / "opt/eunomia/bin/eunomiactl"), "run",
               "--no-config", "--runtime-dir", str(run / "eunomia"), "--db", str(state / "eunomia.db"),
               "--tracer", "opensnoop", "--tracer", "process", "--tracer", "profile", "--tracer", "offcputime"]
    log = open(tmp_path / "agent.log", "wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(run / "eunomia/eunomia.sock")), base_url="http://a",
                        timeout=30)

    def instances() -> list[dict] | None:
        assert proc.poll() is None, (tmp_path / "agent.log").read_text()
        try:
            found = http.get("/instances").json()
        except httpx.HTTPError:
            return None
        return found if found and all(i["state"] == "running" for i in found) else None

    try:
        assert {i["tracer"] for i in wait_for(instances, 120, "the sandboxed agent's tracers to run")} == \
            {"opensnoop", "process", "profile", "offcputime"}
        status = {k: v for k, v in (line.split(":\t") for line in Path(f"/proc/{proc.pid}/status").read_text()
                                    .splitlines() if line.startswith("Cap"))}
        assert int(status["CapBnd"], 16) == int(status["CapEff"], 16) != int(
            Path("/proc/self/status").read_text().split("CapBnd:\t")[1].split()[0], 16)  # really restricted
        mounts = {fields[4]: fields[5].split(",") for fields in
                  (line.split() for line in Path(f"/proc/{proc.pid}/mountinfo").read_text().splitlines())}
        assert "ro" in mounts["/"] and "ro" in mounts["/sys/fs/cgroup"] and "rw" in mounts[str(state)], mounts
        uprobe = http.post("/instances", json={"tracer": "funclatency", "args": {"target": "c:malloc"}})
        assert uprobe.status_code == 201, uprobe.text
        wait_for(instances, 120, "a uprobe tracer in the sandbox")
        marker = tmp_path / "sandbox-marker-file"
        subprocess.run(["cat", str(marker)], capture_output=True)  # fails: an open that opensnoop must see
        seen = wait_for(lambda: [e for e in http.get("/events", params={"tracer": "opensnoop", "comm": "cat",
                                                                        "limit": 1000}).json()
                                 if e.get("path") == str(marker)], 30, "the sandboxed agent to store the open")
        assert seen[0]["errno"] == 2
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (tmp_path / "agent.log").read_text()[-3000:]
        http.close()
        log.close()


def test_reinstall_keeps_the_config_and_uninstall_keeps_data(root: Path) -> None:
    config = root / "etc/eunomia/eunomia.yaml"
    edited = config.read_text() + "# edited by the operator\n"
    config.write_text(edited)
    data = root / "var/lib/eunomia/eunomia.db"
    data.write_bytes(b"collected data")
    result = install(root)
    assert config.read_text() == edited and "kept the existing /etc/eunomia/eunomia.yaml" in result.stdout
    result = make("uninstall", f"DESTDIR={root}")
    assert result.returncode == 0, result.stderr
    assert not (root / "opt/eunomia").exists()
    assert not (root / "usr/local/bin/eunomiactl").is_symlink()
    assert not (root / "etc/systemd/system/eunomia.service").exists()
    assert data.read_bytes() == b"collected data" and config.read_text() == edited
    assert "kept /etc/eunomia/eunomia.yaml (changed since installed" in result.stdout
    again = make("uninstall", f"DESTDIR={root}")
    assert again.returncode != 0 and "no Eunomia installation" in again.stderr
    purge = make("uninstall", f"DESTDIR={root}", "PURGE=1")  # what uninstall kept, like dpkg --purge
    assert purge.returncode == 0, purge.stderr
    assert not (root / "etc/eunomia").exists() and not (root / "var/lib/eunomia").exists()


def test_uninstall_removes_an_unedited_config_purge_removes_everything(tmp_path: Path) -> None:
    install(tmp_path)
    (tmp_path / "var/lib/eunomia/eunomia.db").write_bytes(b"x")
    result = make("uninstall", f"DESTDIR={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "etc/eunomia").exists()  # the shipped default, never edited: removed with the rest
    assert (tmp_path / "var/lib/eunomia/eunomia.db").read_bytes() == b"x"
    result = make("uninstall", f"DESTDIR={tmp_path}", "PURGE=1")
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if not p.is_dir()) == []
