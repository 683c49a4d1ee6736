"""Raises on every event, as a buggy hook would."""


def on_event(event: dict) -> dict:
    raise ValueError(f"cannot handle pid {event['pid']}")
