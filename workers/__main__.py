"""Entry point of a worker process: ``python -m workers`` with the plan as msgpack on stdin."""

from __future__ import annotations

import sys

import msgpack

from workers.plan import WorkerPlan
from workers.runtime import run_worker


def main() -> int:
    plan = WorkerPlan.from_dict(msgpack.unpackb(sys.stdin.buffer.read(), raw=False, strict_map_key=False))
    sys.stdin.close()
    return run_worker(plan)


if __name__ == "__main__":
    sys.exit(main())
