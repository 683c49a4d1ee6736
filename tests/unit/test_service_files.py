"""The shipped unit, default config and documented examples agree with the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from supervisor.config import DEFAULT_DB, DEFAULT_RUNTIME_DIR, AgentConfig
from supervisor.config_file import DEFAULT_CONFIG, EX_CONFIG, Overrides, build, parse_text
from supervisor.desired import document as desired_document

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "eunomia.service"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_matches_the_agent() -> None:
    unit = unit_settings()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecStart"] == [f"/opt/eunomia/bin/eunomiactl run --config {DEFAULT_CONFIG}"]
    assert unit["RestartPreventExitStatus"] == [str(EX_CONFIG)] and unit["Restart"] == ["on-failure"]
    assert re.fullmatch(r"\d+s", unit["WatchdogSec"][0])
    assert unit["KillMode"] == ["mixed"]
    for kind, path in (("Runtime", DEFAULT_RUNTIME_DIR), ("State", DEFAULT_DB.parent),
                       ("Configuration", DEFAULT_CONFIG.parent)):
        assert unit[f"{kind}Directory"] == [path.name] and unit[f"{kind}DirectoryMode"] == ["0700"], kind
    assert DEFAULT_RUNTIME_DIR == Path("/run") / unit["RuntimeDirectory"][0]
    assert DEFAULT_DB.parent == Path("/var/lib") / unit["StateDirectory"][0]
    assert DEFAULT_CONFIG.parent == Path("/etc") / unit["ConfigurationDirectory"][0]
    capabilities = {c for line in unit["CapabilityBoundingSet"] for c in line.split()}
    assert {"CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_SYS_PTRACE",
            "CAP_DAC_READ_SEARCH"} <= capabilities


def test_shipped_config_is_exactly_the_defaults() -> None:
    cfg, _ = parse_text((REPO / "systemd" / "eunomia.yaml").read_text(), "systemd/eunomia.yaml")
    built, default = build(cfg, Overrides()), AgentConfig()
    differ = [f.name for f in dataclasses.fields(AgentConfig) if getattr(built, f.name) != getattr(default, f.name)]
    assert differ == []


def yaml_blocks(doc: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)


@pytest.mark.parametrize("doc", ["docs/operations.md", "README.md"])
def test_documented_configs_are_valid(doc: str) -> None:
    """Every YAML example is a valid config file, or a valid desired-state document (its top key: instances)."""
    blocks = yaml_blocks(REPO / doc)
    assert blocks, f"{doc} has no yaml example"
    for block in blocks:
        data = yaml.safe_load(block)
        if isinstance(data, dict) and "instances" in data:
            desired_document.parse(data)
        else:
            parse_text(block, doc)


def test_the_full_example_in_the_docs_is_the_defaults() -> None:
    full = max(yaml_blocks(REPO / "docs/operations.md"), key=len)
    cfg, _ = parse_text(full, "docs/operations.md")
    built, default = build(cfg, Overrides()), AgentConfig()
    assert [f.name for f in dataclasses.fields(AgentConfig)
            if getattr(built, f.name) != getattr(default, f.name)] == []
