"""systemd's service notification protocol (sd_notify), with no dependency.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace). The watchdog interval
comes from ``$WATCHDOG_USEC``, for us only when ``$WATCHDOG_PID`` is unset or our pid.
Without ``$NOTIFY_SOCKET`` (not started by systemd) every call does nothing.

Written by hand because the protocol is a dozen lines: the PyPI ``sdnotify`` package has
not been maintained since 2017 and systemd's own bindings need libsystemd at build time.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping

log = logging.getLogger("eunomia.systemd")

#: what systemd sets for the main process; workers must not inherit it
ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, pid: int | None = None,
                     unset: bool = True) -> Notifier:
        """Read (and by default remove, so that child processes do not notify) systemd's variables."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog = None
        usec, wd_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec:
            mine = not wd_pid or (wd_pid.isdigit() and int(wd_pid) == (os.getpid() if pid is None else pid))
            if usec.isdigit() and int(usec) > 0 and mine:
                watchdog = int(usec)
            elif not mine:
                log.info("WATCHDOG_USEC is for pid %s, not for us: no watchdog pings", wd_pid)
            else:
                log.warning("ignoring WATCHDOG_USEC=%r: not a positive number of microseconds", usec)
        if unset:
            for name in ENV_NAMES:
                env.pop(name, None)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *fields: str) -> bool:
        """One datagram with these ``KEY=VALUE`` lines. Never raises: systemd being away is not our failure."""
        if self.address is None:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            self.errors += 1
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
