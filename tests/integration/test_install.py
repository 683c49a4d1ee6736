"""``make install`` / ``make uninstall`` into a DESTDIR: the files, the unit (``systemd-analyze verify`` on the
tree as installed), the installed command from its own venv, a config that is never overwritten, data kept."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import REPO

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
