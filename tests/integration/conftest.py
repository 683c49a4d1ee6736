from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agentctl import Agent
from tests.integration.dockerd import dockerd  # noqa: F401 - a shared fixture: a private Docker daemon


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """One agent with the three built-in tracers, shared by a test module."""
    agent = Agent(tmp_path_factory.mktemp("agent"), tracers=["process", "opensnoop", "tcpconnect"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def fresh_agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent with no tracer, for tests that start their own."""
    agent = Agent(tmp_path, tracers=[], extra=["--heartbeat-timeout", "2"])
    try:
        agent.wait_running()
        yield agent
    finally:
        agent.stop()
