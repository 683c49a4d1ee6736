"""``eunomiactl apply`` and ``eunomiactl export-state``: a desired-state document to and from many agents.

A node is an agent's unix socket (a path; default: the local agent) or the URL of its TCP control
listener (``https://host:8527``, with the bearer token from ``--token-file`` or ``$EUNOMIA_TOKEN``).
``apply`` sends the document to every node at once, waits for each (``--timeout``), prints what
changed per node, and exits 1 when any node failed — unreachable, refused the token or the
document, or could not create an instance — after the others have been applied.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer
import yaml

from supervisor.cli.client import fail
from supervisor.config import client_socket
from supervisor.desired.document import DocumentError, parse

TOKEN_ENV = "EUNOMIA_TOKEN"
NodeOption = typer.Option(None, "--node", metavar="SOCKET|URL",
                          help="an agent: its unix socket path, or http(s)://HOST:PORT of its control_tcp listener "
                               "(repeatable) [default: the local agent]")
TokenFileOption = typer.Option(None, "--token-file", help=f"the bearer token for URL nodes [default: ${TOKEN_ENV}]")
CacertOption = typer.Option(None, "--cacert", help="CA certificate(s) to verify https nodes with [default: the "
                            "system's]")
TimeoutOption = typer.Option(60.0, "--timeout", min=1.0, help="seconds to wait for each node")


@dataclass(slots=True)
class NodeReport:
    node: str
    ok: bool = False
    error: str | None = None
    status: int | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "ok": self.ok, "error": self.error, "status": self.status,
                "summary": self.summary, "results": self.results, "problems": self.problems}


@dataclass(frozen=True, slots=True)
class Access:
    token: str | None
    cacert: Path | None
    timeout: float


def is_url(node: str) -> bool:
    return node.startswith(("http://", "https://"))


def read_token(token_file: Path | None) -> str | None:
    if token_file is None:
        return os.environ.get(TOKEN_ENV, "").strip() or None
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        fail(f"--token-file {token_file}: {exc.strerror}", 2)
    if not token:
        fail(f"--token-file {token_file}: empty", 2)
    return token


def client_for(node: str, access: Access) -> httpx.AsyncClient:
    if not is_url(node):
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=node), base_url="http://eunomia",
                                 timeout=access.timeout)
    if access.token is None:
        raise ValueError(f"no token for {node}: give --token-file or set ${TOKEN_ENV}")
    verify: ssl.SSLContext | bool = True
    if access.cacert is not None:
        verify = ssl.create_default_context(cafile=str(access.cacert))
    return httpx.AsyncClient(base_url=node.rstrip("/"), verify=verify, timeout=access.timeout,
                             headers={"Authorization": f"Bearer {access.token}"})


def _detail(response: httpx.Response) -> tuple[str, list[dict[str, Any]]]:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300], []
    if isinstance(body, dict):
        return str(body.get("detail", body)), list(body.get("problems") or [])
    return str(body)[:300], []


async def _call(node: str, access: Access, method: str, url: str, **kwargs: Any) -> NodeReport | httpx.Response:
    """The node's response, or a report of why there is none."""
    report = NodeReport(node)
    try:
        async with client_for(node, access) as client:
            return await asyncio.wait_for(client.request(method, url, **kwargs), access.timeout)
    except ValueError as exc:
        report.error = str(exc)
    except (TimeoutError, httpx.TimeoutException):
        report.error = f"timed out after {access.timeout:g}s"
    except (httpx.TransportError, OSError) as exc:
        report.error = f"unreachable: {exc or exc.__class__.__name__}"
    return report


async def apply_to(node: str, document: dict[str, Any], access: Access, prune: bool, dry_run: bool) -> NodeReport:
    response = await _call(node, access, "PUT", "/desired", json=document,
                           params={"prune": str(prune).lower(), "dry_run": str(dry_run).lower()})
    if isinstance(response, NodeReport):
        return response
    report = NodeReport(node, status=response.status_code)
    if response.status_code != 200:
        detail, report.problems = _detail(response)
        report.error = f"refused the document: {detail}" if response.status_code == 400 else \
            f"{response.status_code}: {detail}"
        return report
    body = response.json()
    report.results, report.summary = body["results"], body["summary"]
    failed = [r for r in report.results if r["action"] == "failed"]
    report.ok = not failed
    if failed:
        report.error = f"{len(failed)} instance(s) failed"
    return report


async def apply_all(nodes: list[str], document: dict[str, Any], access: Access, prune: bool,
                    dry_run: bool) -> list[NodeReport]:
    return list(await asyncio.gather(*(apply_to(n, document, access, prune, dry_run) for n in nodes)))


def load_document(path: Path) -> dict[str, Any]:
    """The document in ``path`` (YAML or JSON, '-' for stdin), checked for its shape before any node is asked."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        fail(f"{path}: {exc.strerror}", 2)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML or JSON: {exc}", 2)
    try:
        parse(data)
    except DocumentError as exc:
        fail(f"{path}: " + "\n  ".join(["not a desired-state document (nothing was applied):",
                                        *(str(p) for p in exc.problems)]), 2)
    return data


def _table(report: NodeReport) -> list[str]:
    counts = ", ".join(f"{n} {action}" for action, n in report.summary.items()) or "no instances"
    head = f"{report.node}: {counts}" if report.ok else f"{report.node}: FAILED: {report.error}"
    lines = [head]
    lines += [f"  {p.get('message')}" if p.get("index") is None else
              f"  instances[{p['index']}] ({p.get('id')}).{p.get('field')}: {p.get('message')}"
              for p in report.problems]
    if report.results:
        lines.append(f"  {'ID':<24} {'TRACER':<12} {'ACTION':<10} {'STATE':<9} CHANGES / ERROR")
        for r in report.results:
            note = r.get("error") or ", ".join(r.get("changes") or [])
            lines.append(f"  {r['id']:<24} {r['tracer']:<12} {r['action']:<10} {r.get('state') or '-':<9} {note}")
    return lines


def apply(
    file: Path = typer.Option(..., "--file", "-f", help="the desired-state document (YAML or JSON; '-': stdin)"),
    node: list[str] = NodeOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would change; change nothing"),
    prune: bool = typer.Option(False, "--prune", help="also remove the instances the document does not list"),
    token_file: Path = TokenFileOption,
    cacert: Path = CacertOption,
    timeout: float = TimeoutOption,
    as_json: bool = typer.Option(False, "--json", help="one JSON object: every node's report"),
) -> None:
    """Make one or many agents run what a desired-state document says (docs/operations.md).

    Exit status: 0 when every node applied it, 1 when any node failed (the others are applied), 2 for a file that
    is not a desired-state document (then no node is asked).
    """
    document = load_document(file)
    nodes = list(node or []) or [str(client_socket())]
    access = Access(read_token(token_file) if any(map(is_url, nodes)) else None, cacert, timeout)
    reports = asyncio.run(apply_all(nodes, document, access, prune, dry_run))
    ok = all(r.ok for r in reports)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "dry_run": dry_run, "prune": prune,
                               "nodes": [r.to_dict() for r in reports]}, indent=2))
    else:
        for report in reports:
            typer.echo("\n".join(_table(report)))
        failed = sum(not r.ok for r in reports)
        verb = "would apply (dry run)" if dry_run else "applied"
        typer.echo(f"{len(reports)} node(s): {len(reports) - failed} {verb}, {failed} failed")
    if not ok:
        raise typer.Exit(1)


def export_state(
    node: str = typer.Option(None, "--node", metavar="SOCKET|URL", help="the agent [default: the local agent]"),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of YAML"),
    token_file: Path = TokenFileOption,
    cacert: Path = CacertOption,
    timeout: float = TimeoutOption,
) -> None:
    """Print an agent's desired state as a document that `eunomiactl apply -f` takes back unchanged."""
    target = node or str(client_socket())
    access = Access(read_token(token_file) if is_url(target) else None, cacert, timeout)
    response = asyncio.run(_call(target, access, "GET", "/desired"))
    if isinstance(response, NodeReport):
        fail(f"{target}: {response.error}")
    if response.status_code != 200:
        fail(f"{target}: {response.status_code}: {_detail(response)[0]}")
    document = response.json()
    typer.echo(json.dumps(document, indent=2) if as_json else yaml.safe_dump(document, sort_keys=False).rstrip())
