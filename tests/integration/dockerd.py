"""A private Docker daemon for tests: its own data root, exec root, socket and containerd namespace.

``dockerd`` (a session fixture, registered in conftest.py) installs ``docker.io`` and
``busybox-static`` with apt-get when they are missing, starts ``dockerd --iptables=false
--bridge=none`` under a fresh directory in /tmp, and imports a busybox image (a rootfs of
``/bin/busybox`` and one symlink per applet, ``docker import``-ed). It cannot collide with
a system Docker or another test's daemon: nothing it uses is shared but the kernel's
cgroup tree, where every container has its own 64-hex id. Run containers with
``--network none`` (there is no bridge). Teardown removes every container, stops dockerd
(and the containerd it started), unmounts what is left under its directory and deletes it.

The test is skipped, with the reason, only when dockerd cannot be installed or started.

    def test_x(dockerd: Dockerd) -> None:
        name = dockerd.unique_name("web")
        cid = dockerd.run("--name", name, dockerd.image, "sleep", "60")
        dockerd.docker("exec", name, "echo", "hi")
        ...  # an agent started with ["--docker-socket", str(dockerd.socket)]
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agentctl import Agent, wait_for

SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"
BUSYBOX = Path("/bin/busybox")
IMAGE_REPO = "eunomia-busybox"


class DockerdUnavailable(RuntimeError):
    """dockerd cannot be installed or started here (the reason says why)."""


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300",
               *packages]
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:  # perhaps no package lists yet
        subprocess.run(["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], env=env, capture_output=True,
                       text=True, timeout=900)
        result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise DockerdUnavailable(f"`apt-get install {' '.join(packages)}` failed ({result.returncode}):\n"
                                 f"{result.stderr[-2000:]}")


def _installed(package: str) -> bool:
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return result.returncode == 0 and "install ok installed" in result.stdout


def ensure_installed() -> tuple[str, str]:
    """dockerd and a docker CLI, installed if missing; and a static busybox for the image."""
    missing = [p for p, ok in (("docker.io", shutil.which("dockerd", path=SBIN)), ("busybox-static",
               _installed("busybox-static"))) if not ok]
    if missing:
        _apt_install(*missing)
    dockerd = shutil.which("dockerd", path=SBIN)
    if dockerd is None:
        raise DockerdUnavailable("dockerd is not on this machine after installing docker.io")
    # The CLI packaged with the daemon first: a newer one elsewhere on PATH works too, but speaks a newer API.
    cli = next((c for c in ("/usr/bin/docker",) if os.access(c, os.X_OK)), None) or shutil.which("docker")
    if cli is None:
        raise DockerdUnavailable("no docker CLI after installing docker.io")
    if not _installed("busybox-static") or not BUSYBOX.exists():
        raise DockerdUnavailable("busybox-static is not installed (/bin/busybox)")
    return dockerd, cli


def busybox_rootfs_tar() -> bytes:
    """A root filesystem of the static busybox and a symlink per applet, as a tar archive."""
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory in ("bin", "proc", "sys", "dev", "etc", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buf.getvalue()


class Dockerd:
    def __init__(self, dockerd: str, cli: str, root: Path) -> None:
        self.root = root
        self.cli = cli
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.tag = uuid.uuid4().hex[:8]
        self.image = f"{IMAGE_REPO}:{self.tag}"
        self.env = {**os.environ, "DOCKER_HOST": self.host, "DOCKER_CONFIG": str(root / "cli")}
        namespace = f"eunomia-test-{self.tag}"
        self.log_path = root / "dockerd.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [dockerd, "--iptables=false", "--bridge=none", "--data-root", str(root / "data"),
             "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid"), "-H", self.host,
             "--containerd-namespace", namespace, "--containerd-plugins-namespace", f"{namespace}-plugins"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    # -- the CLI -------------------------------------------------------------------
    def docker(self, *args: str, check: bool = True, timeout: float = 60,
               input: bytes | None = None) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; raise with its stderr when it fails and ``check``."""
        result = subprocess.run([self.cli, *args], env=self.env, input=input, capture_output=True, timeout=timeout)
        done = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def run(self, *args: str) -> str:
        """``docker run -d --network none ARGS`` → the container's full id."""
        return self.docker("run", "-d", "--network", "none", *args).stdout.strip()

    def inspect(self, ref: str) -> dict[str, Any]:
        return json.loads(self.docker("inspect", ref).stdout)[0]

    def unique_name(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    # -- lifecycle -------------------------------------------------------------------
    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerdUnavailable(f"dockerd exited with {self.proc.returncode}:\n{self.log()}")
            if self.socket.exists() and self.docker("version", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.2)
        raise DockerdUnavailable(f"dockerd did not answer on {self.socket} within {timeout}s:\n{self.log()}")

    def import_image(self) -> None:
        self.docker("import", "-", self.image, input=busybox_rootfs_tar(), timeout=120)

    def remove_containers(self) -> None:
        ids = self.docker("ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker("rm", "-f", *ids, check=False, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # dockerd and the containerd it started
                self.proc.wait()
        self._log.close()

    def unmount_all(self) -> None:
        """Unmount whatever is still mounted below the daemon's directory, deepest first."""
        prefix = str(self.root) + "/"
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4] for line in fh]
        for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Dockerd]:
    """A private dockerd with a busybox image, for the whole session (see the module's docstring)."""
    try:
        binary, cli = ensure_installed()
    except DockerdUnavailable as exc:
        pytest.skip(f"no dockerd: {exc}")
    root = Path(tempfile.mkdtemp(prefix="eu-dockerd-", dir="/tmp"))  # short: unix socket paths are limited
    daemon = Dockerd(binary, cli, root)
    try:
        try:
            daemon.wait_ready()
        except DockerdUnavailable as exc:
            pytest.skip(f"dockerd cannot start here: {exc}")
        daemon.import_image()
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.remove_containers()
        daemon.stop()
        daemon.unmount_all()
        shutil.rmtree(root, ignore_errors=True)


def agent_following(dockerd: Dockerd, folder: Path, tracers: list[str]) -> Agent:
    """An agent that names this daemon's containers: started, and connected to its events."""
    agent = Agent(folder, tracers=tracers, extra=["--docker-socket", str(dockerd.socket)])
    try:
        agent.wait_running()
        wait_for(lambda: "connected" in agent.get("/containers")["cache"]["sources"].get("docker", ""), 20,
                 "the agent to follow dockerd's events")
    except BaseException:
        agent.stop()
        raise
    return agent
