"""Crashes the worker process for real (SIGSEGV) on the first event, as a buggy hook might."""

import ctypes


def on_event(event: dict) -> dict:
    ctypes.string_at(0)  # read address 0: segmentation fault
    return event
