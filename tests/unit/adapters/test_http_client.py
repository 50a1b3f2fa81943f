"""adapters.http.HttpClient against a real HTTP server on a loopback socket: the bytes and
headers a provider receives."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from adapters.http import HttpCall, HttpClient


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server that records each request and answers with a cookie set."""
    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"headers": dict(request.headers), "body": await request.read()})
        response = web.json_response({"id": "m-1"})
        response.set_cookie("session", "abc")
        return response

    app = web.Application()
    app.router.add_post("/send", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/send", seen
    finally:
        await runner.cleanup()


async def test_a_json_body_goes_out_as_compact_json_with_its_content_type(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = server
    client = HttpClient(5.0, 4, {"User-Agent": "notifier-test"})
    body = {"message": {"to": "x", "text": "café ☕", "n": 3, "ok": True, "none": None}}
    try:
        answer = await client.request(HttpCall("POST", url, json=body))
    finally:
        await client.aclose()
    assert answer.status_code == 200 and answer.json() == {"id": "m-1"}
    sent = seen[0]
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["headers"]["User-Agent"] == "notifier-test"
    assert json.loads(sent["body"]) == body
    assert b", " not in sent["body"] and b": " not in sent["body"]


async def test_no_cookie_set_by_a_provider_is_sent_back(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = server
    url = url.replace("127.0.0.1", "localhost")  # a jar keeps no cookie of an IP address
    client = HttpClient(5.0, 4)
    try:
        for _ in range(2):
            await client.request(HttpCall("POST", url, json={"a": 1}))
    finally:
        await client.aclose()
    assert "Cookie" not in seen[1]["headers"]


async def test_form_bytes_and_basic_auth_go_as_given(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    url, seen = server
    client = HttpClient(5.0, 4)
    try:
        await client.request(HttpCall("POST", url, data={"To": "+1555", "Body": "hi"}))
        await client.request(
            HttpCall(
                "POST",
                url,
                content=b"<xml/>",
                headers={"Content-Type": "text/xml"},
                auth=("AC1", "secret"),
            )
        )
    finally:
        await client.aclose()
    form, raw = seen
    assert form["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert form["body"] == b"To=%2B1555&Body=hi"
    assert raw["body"] == b"<xml/>" and raw["headers"]["Content-Type"] == "text/xml"
    expected = "Basic " + base64.b64encode(b"AC1:secret").decode()
    assert raw["headers"]["Authorization"] == expected
