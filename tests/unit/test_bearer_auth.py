"""supervisor.api.remote.BearerAuth: nothing reaches the API without the right bearer token."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from supervisor.api.remote import BearerAuth

TOKEN = "s3cret-token-0123456789"


class Client:
    """Requests straight into the ASGI app, no server."""

    def __init__(self, app: BearerAuth) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t") as c:
                return await c.request(method, url, **kwargs)
        return asyncio.run(go())

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


@pytest.fixture
def setup() -> tuple[Client, BearerAuth, list[str]]:
    app = FastAPI()
    calls: list[str] = []

    @app.post("/instances")
    async def create() -> dict:
        calls.append("created")
        return {"ok": True}

    auth = BearerAuth(app, TOKEN)
    return Client(auth), auth, calls


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer"},
    {"X-Token": TOKEN},
])
def test_missing_or_wrong_token_is_401_and_nothing_happens(setup: tuple, headers: dict) -> None:
    client, auth, calls = setup
    response = client.post("/instances", headers=headers, json={})
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or invalid bearer token"}
    assert response.headers["www-authenticate"] == 'Bearer realm="eunomia"'
    assert calls == [] and auth.rejected == 1


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_passes(setup: tuple, scheme: str) -> None:
    client, auth, calls = setup
    response = client.post("/instances", headers={"Authorization": f"{scheme} {TOKEN}"}, json={})
    assert response.status_code == 200 and calls == ["created"] and auth.rejected == 0


def test_docs_are_protected_too(setup: tuple) -> None:
    client, _auth, _calls = setup
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
