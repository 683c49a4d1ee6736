"""A standalone supervisor whose one sink is the otlp handler, as ``eunomiactl trace`` runs one
with its print sink. A separate process, because the tracers ignore the supervisor and all its
descendants: what the test runs must not be its child.

    python -m tests.integration.otlp_sidecar RUNTIME_DIR '["--endpoint", "…"]' process 'syscount -L -p 42'

prints ``ready`` once every instance is running (or failed), runs until SIGTERM, then closes the
handler and prints its stats as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path

from supervisor.arbiter import Supervisor
from supervisor.config import AgentConfig, InstanceRequest
from supervisor.export.otlp import OtlpHandler
from workers.catalog import Catalog, default_search_path


def main(argv: list[str]) -> int:
    runtime, handler_args, *tracers = argv
    requests = tuple(InstanceRequest((words := shlex.split(t))[0], words[1:]) for t in tracers)
    handler = OtlpHandler(json.loads(handler_args))
    config = AgentConfig(runtime_dir=Path(runtime), db_path=None, serve_api=False, tracer_path=default_search_path(),
                         default_tracers=requests, metrics_interval=0.5)
    supervisor = Supervisor(config, Catalog.discover(config.tracer_path), [handler],
                            on_ready=lambda: print("ready", flush=True))
    try:
        asyncio.run(supervisor.run())
    finally:
        handler.close()
        states = {w.id: [w.state.value, w.last_error] for w in supervisor.watchers.values()}
        print(json.dumps({"stats": handler.stats(), "instances": states}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
