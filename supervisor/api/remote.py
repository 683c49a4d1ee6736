"""The control API over TCP: bearer-token authentication, optionally TLS.

Nothing listens on TCP unless ``listeners.control_tcp`` is configured, and then only with a
token read from a file that only root can read. A request without the right
``Authorization: Bearer <token>`` header gets 401 and never reaches the API.
"""

from __future__ import annotations

import hmac
import os
import stat
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

MIN_TOKEN_LENGTH = 16


class TokenFileError(ValueError):
    """A token file the agent refuses to use; the message says why and how to fix it."""


def read_token_file(path: Path) -> str:
    """The token in ``path``: a regular file of mode 0600 (or stricter) owned by root (the agent's user)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO must not hang us
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such file; create it with `install -m 0600 /dev/null {path}` "
                             f"and write a random token into it (e.g. `openssl rand -hex 32 > {path}`)") from None
    except OSError as exc:
        raise TokenFileError(f"{path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise TokenFileError(f"{path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if st.st_uid != os.geteuid():
            raise TokenFileError(f"{path}: owned by uid {st.st_uid}; it must belong to root (uid {os.geteuid()})")
        if st.st_mode & 0o077:
            raise TokenFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; "
                                 f"`chmod 0600 {path}`")
        raw = handle.read(64 * 1024)
    try:
        token = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TokenFileError(f"{path}: the token must be printable ASCII") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenFileError(f"{path}: the token is {'empty' if not token else 'too short'}; use at least "
                             f"{MIN_TOKEN_LENGTH} characters (e.g. `openssl rand -hex 32`)")
    if any(not c.isprintable() or c.isspace() for c in token):
        raise TokenFileError(f"{path}: the token must be one word of printable ASCII")
    return token


class BearerAuth:
    """ASGI middleware: the request goes on only with ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)  # lifespan
            return
        if not self._authorized(scope):
            self.rejected += 1
            detail = b'{"detail":"missing or invalid bearer token"}'
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(detail)).encode()),
                                    (b"www-authenticate", b'Bearer realm="eunomia"')]})
            await send({"type": "http.response.body", "body": detail})
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                # compare_digest: the time taken does not tell how much of a guess was right
                return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)
        return False
