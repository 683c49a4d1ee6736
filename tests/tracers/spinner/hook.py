"""Spins: two threads hash a large buffer forever (hashlib releases the GIL: both CPUs of this host)."""

import hashlib
import threading

_DATA = b"\0" * (1 << 20)


def _spin() -> None:
    while True:
        hashlib.sha256(_DATA).digest()


def on_start(args: dict) -> None:
    for _ in range(2):
        threading.Thread(target=_spin, daemon=True).start()
