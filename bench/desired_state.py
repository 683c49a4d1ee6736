#!/usr/bin/env python3
"""What the desired state costs: one atomic save of the state file (write, fsync, rename, fsync of the
directory) — the time an API change waits before it is answered, off the loop — its size, a load at start,
and the diff of a document against the current state. In process, no kernel needed.

    .venv/bin/python bench/desired_state.py [--instances 10,100,1000] [--dir /var/lib/eunomia] [--rounds 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.desired.document import DesiredInstance  # noqa: E402
from supervisor.desired.plan import plan  # noqa: E402
from supervisor.desired.state_file import SavedState, StateFile  # noqa: E402


def instances(n: int) -> list[DesiredInstance]:
    return [DesiredInstance(f"opens-{i}", "opensnoop", {"failed": True, "pid": i},
                            [{"name": "file", "args": [f"/var/log/eunomia/opens-{i}.jsonl", "keep=3"]}],
                            "running" if i % 3 else "stopped") for i in range(n)]


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"median {statistics.median(ordered) * 1e3:7.3f} ms, p95 {ordered[int(len(ordered) * 0.95)] * 1e3:7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", default="10,100,1000")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    parser.add_argument("--rounds", type=int, default=50)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=opts.dir) as tmp:
        path = Path(tmp) / "desired.json"
        print(f"state file in {tmp}")
        for n in (int(x) for x in opts.instances.split(",")):
            state = SavedState(instances(n))
            sf = StateFile(path)
            saves, loads = [], []
            for _ in range(opts.rounds):
                t = time.perf_counter()
                sf.save(state)
                saves.append(time.perf_counter() - t)
                t = time.perf_counter()
                sf.load()
                loads.append(time.perf_counter() - t)
            current = state.instances
            wanted = [i if k % 10 else DesiredInstance(i.id, i.tracer, {"failed": False}, i.export_handlers, i.state)
                      for k, i in enumerate(current)]
            t = time.perf_counter()
            steps = plan(current, {i.id for i in current}, wanted, True, lambda a, b: a.args == b.args)
            diff = time.perf_counter() - t
            updated = sum(s.action == "updated" for s in steps)
            print(f"{n:5d} instances: file {path.stat().st_size / 1024:8.1f} KiB; save {ms(saves)}; "
                  f"load {ms(loads)}; diff {diff * 1e3:.3f} ms ({updated} updated)")


if __name__ == "__main__":
    main()
