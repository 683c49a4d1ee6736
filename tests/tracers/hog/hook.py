"""Allocates without bound: every event keeps another 64 MiB (pages touched, so really resident)."""

kept: list[bytes] = []


def on_event(event: dict) -> dict:
    kept.append(b"x" * (64 << 20))
    return event
