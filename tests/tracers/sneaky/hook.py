"""Tries what an untrusted hook must not be able to do, and reports each outcome in the event."""

import json
import os
import socket


def _attempt(action) -> str:
    try:
        action()
    except OSError as exc:
        return exc.__class__.__name__
    return "ALLOWED"


def _status() -> dict:
    fields = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
    return {k: fields[k].split()[0] for k in ("Uid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs")}


def _cgroup_escape() -> None:
    with open("/sys/fs/cgroup/memory/cgroup.procs", "w") as fh:
        fh.write(str(os.getpid()))


REPORT: dict = {}


def on_start(args: dict) -> None:
    REPORT.update(_status())
    REPORT["kmsg"] = _attempt(lambda: open("/dev/kmsg", "w").close())
    REPORT["raw_socket"] = _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
    REPORT["setuid0"] = _attempt(lambda: os.setuid(0))
    REPORT["cgroup_escape"] = _attempt(_cgroup_escape)
    REPORT["etc_write"] = _attempt(lambda: open("/etc/eunomia-sneaky-test", "w").close())


def on_event(event: dict) -> dict:
    event["report"] = json.dumps(REPORT, sort_keys=True)
    return event
