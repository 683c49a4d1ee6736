"""Serve the API with uvicorn: on a unix socket that only root can open (mode 0600); when
configured, on TCP behind a bearer token (see supervisor/api/remote.py); and the read-only
metrics endpoint on TCP."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the supervisor owns SIGTERM/SIGINT and shuts the server down itself


def bind_unix_socket(path: Path) -> socket.socket:
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by an agent that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` (port 0: any free port) → (host, port)."""
    host, sep, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"metrics listen address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9469 or [::1]:9469")
    return host, int(port)


def bind_tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port); OSError when the address is taken."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(sockaddr)
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(app: Any) -> _Server:
    return _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))


class ApiServer:
    def __init__(self, app: FastAPI, path: Path) -> None:
        self.path = Path(path)
        self.sock = bind_unix_socket(self.path)
        self.server = _server(app)

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def shutdown(self) -> None:
        self.server.should_exit = True


class MetricsServer:
    """The TCP listener: it serves only the metrics app (``GET /metrics``), never the control API."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        host, port = self.sock.getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.server = _server(app)

    async def serve(self) -> None:
        await self.server.serve(sockets=[self.sock])

    def shutdown(self) -> None:
        self.server.should_exit = True


class TcpApiServer:
    """The API on a bound TCP socket; ``app`` is expected to check authentication itself (BearerAuth)."""

    def __init__(self, app: ASGIApp, sock: socket.socket, tls_cert: Path | None = None,
                 tls_key: Path | None = None) -> None:
        self.sock = sock
        self.address, self.port = self.sock.getsockname()[:2]
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)} if tls_cert and tls_key else {}
        self.tls = bool(tls)
        self.server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                             proxy_headers=False, **tls))

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.sock.close()

    def shutdown(self) -> None:
        self.server.should_exit = True
