"""A Python child in a cgroup of its own that works in steps: it prints ``ready``, then for
each byte the test writes on its stdin does one step and prints ``done``. Between steps it
is asleep in read(2) on the pipe, which the scheduler tracers' tests rely on."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack

from tests.integration.agentctl import cgroup_id_of, enter_cgroup, private_cgroup, unique, wait_for


class PipedChild:
    def __init__(self, program: str, args: list[str], name_prefix: str, cgroup_prefix: str) -> None:
        self.name = unique(name_prefix)  # the child's comm (at most 15 characters)
        self._cgroup = ExitStack()
        cgroup = self._cgroup.enter_context(private_cgroup(cgroup_prefix))
        self.proc = subprocess.Popen([sys.executable, "-c", program, self.name, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=enter_cgroup(cgroup))
        self.pid = self.proc.pid
        self.cgroup_id = str(os.stat(cgroup).st_ino)
        self._expect(b"ready\n")
        assert self.cgroup_id == str(cgroup_id_of(self.pid)) != str(cgroup_id_of(os.getpid()))

    def _expect(self, line: bytes) -> None:
        assert self.proc.stdout is not None and self.proc.stdout.readline() == line
        wait_for(self._blocked, 10, f"{self.pid} to block")

    def _blocked(self) -> bool:
        """Asleep in read(2) on the pipe, and switched out already (a task that is still on
        its CPU has no wait channel yet)."""
        with open(f"/proc/{self.pid}/wchan") as fh:
            return self._state() == "S" and fh.read() == "anon_pipe_read"

    def _state(self) -> str:
        with open(f"/proc/{self.pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]

    def schedstat(self) -> tuple[int, int]:
        """(CPU time in ns, switch-ins)"""
        with open(f"/proc/{self.pid}/schedstat") as fh:
            fields = fh.read().split()
        return int(fields[0]), int(fields[2])

    def step(self) -> None:
        """Release the child for one step and wait until it is blocked again."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"x")
        self.proc.stdin.flush()
        self._expect(b"done\n")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._cgroup.close()
