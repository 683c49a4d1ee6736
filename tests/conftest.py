"""Shared fixtures. Integration tests run as root against the real kernel and fail, not
skip, when that is impossible: a missing feature must never pass as a skipped test."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.root)


@pytest.fixture(scope="session", autouse=True)
def _root_for_integration(request: pytest.FixtureRequest) -> None:
    wants_root = any(item.get_closest_marker("root") for item in request.session.items)
    if wants_root and os.geteuid() != 0:
        pytest.fail("integration tests need root (eBPF); run `make test` as root", pytrace=False)
