"""Serve the API with uvicorn: on a unix socket that only root can open (mode 0600), and, when
configured, on TCP behind a bearer token (see supervisor/api/remote.py)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

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


class ApiServer:
    def __init__(self, app: FastAPI, path: Path) -> None:
        self.path = Path(path)
        self.sock = bind_unix_socket(self.path)
        self.server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))

    async def serve(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def shutdown(self) -> None:
        self.server.should_exit = True


def bind_tcp_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.create_server((address, port), family=family, backlog=128)
    sock.setblocking(False)
    return sock


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
