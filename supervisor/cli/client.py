"""HTTP client for the agent's unix socket, with errors turned into one readable line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import typer

from supervisor.config import client_socket

SocketOption = typer.Option(None, "--socket", "-s", envvar="EUNOMIA_SOCKET",
                            help="the agent's API socket [default: /run/eunomia/eunomia.sock]")


class Client:
    def __init__(self, socket_path: str | Path | None) -> None:
        self.path = client_socket(str(socket_path) if socket_path else None)
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.path)), base_url="http://eunomia",
                                 timeout=30)

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, url, **kwargs)
        except (httpx.ConnectError, FileNotFoundError, PermissionError) as exc:
            fail(f"cannot reach the agent at {self.path}: {exc} (is `eunomiactl run` running? see --socket)")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            fail(f"{response.status_code}: {detail}")
        return response.json() if response.content else None


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
