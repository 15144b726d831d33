"""The real livekit-plugins-deepgram STT, refused at the websocket handshake by a stand-in.

The stand-in answers the listen upgrade with the fixture's status and headers (Deepgram's
``dg-error`` among them); the plugin raises ``APIStatusError ... from None``, and the
aiohttp handshake error with the headers survives on ``__context__``. The verdict is taken
inside the ``"error"`` emit, as the guard takes it, with the default chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from deepgram_fixtures import API_KEY, FIXTURES, Fixture
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.stt import STTError
from livekit.plugins import deepgram

from agent_guard import Verdict, classify
from agent_guard.testing.plugins import assert_verdict_matches

HANDSHAKES = [fx for fx in FIXTURES if fx.id.startswith("listen_ws_") and "raw" not in fx.id]


@pytest.fixture
async def server() -> AsyncIterator[tuple[list[Fixture], str]]:
    """A listen endpoint refusing each upgrade with the next queued fixture."""
    queued: list[Fixture] = []

    async def refuse(request: web.Request) -> web.Response:
        fx = queued.pop(0)
        assert fx.status is not None
        return web.json_response(fx.body, status=fx.status, headers=dict(fx.headers))

    app = web.Application()
    app.router.add_get("/v1/listen", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield queued, f"http://{host}:{port}/v1/listen"
    finally:
        await runner.cleanup()


async def _drain(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("fx", HANDSHAKES, ids=[fx.id for fx in HANDSHAKES])
async def test_real_plugin_handshake(fx: Fixture, server: tuple[list[Fixture], str]) -> None:
    """The plugin's error for a refused handshake gets the fixture's verdict, by default."""
    queued, url = server
    queued.append(fx)
    http = aiohttp.ClientSession()
    recognizer = deepgram.STT(api_key=API_KEY, base_url=url, http_session=http)
    verdicts: list[Verdict] = []

    def on_error(event: STTError) -> None:
        verdicts.append(classify(event.error, kind=fx.kind, label=event.label))

    recognizer.on("error", on_error)
    stream = recognizer.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
    try:
        frame = rtc.AudioFrame(b"\x00\x00" * 1600, 16000, 1, 1600)
        stream.push_frame(frame)
        with pytest.raises(APIStatusError):
            await asyncio.wait_for(_drain(stream), 10)
    finally:
        await stream.aclose()
        await recognizer.aclose()
        await http.close()
    (verdict,) = verdicts
    if "dg-error" in fx.headers:
        assert verdict.hint is not None and fx.headers["dg-error"] in verdict.hint
    assert_verdict_matches(verdict, fx, provider="deepgram", secrets=[API_KEY])
    rebuilt = classify(fx.error(), kind=fx.kind, label=fx.label)
    assert (verdict.category, verdict.quota, verdict.hint) == (
        rebuilt.category,
        rebuilt.quota,
        rebuilt.hint,
    )
