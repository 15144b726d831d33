"""The real livekit-plugins-assemblyai STT, refused by a local AssemblyAI stand-in.

The stand-in accepts the streaming websocket and closes it with a documented close code
and reason; the plugin's own ``recv_task`` turns that into the error the session sees.
The verdict is taken inside the ``"error"`` emit, as the guard takes it, with the
default chain (no ``classifiers=``), and must match the fixture's reconstruction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from assemblyai_fixtures import FIXTURES, Fixture
from livekit import rtc
from livekit.agents import APIConnectOptions, APIStatusError
from livekit.agents.stt import STTError
from livekit.plugins import assemblyai

from agent_guard import Verdict, classify
from agent_guard.testing.plugins import assert_verdict_matches

API_KEY = "AGTEST0123456789abcdef0123456789"


class Refuser:
    """An AssemblyAI streaming endpoint that closes each session with the queued close."""

    def __init__(self) -> None:
        self.closes: list[Fixture] = []
        self.authorizations: list[str] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        self.authorizations.append(request.headers.get("Authorization", ""))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        fx = self.closes.pop(0)
        await ws.close(code=fx.close_code, message=fx.reason.encode())
        return ws


@pytest.fixture
async def server() -> AsyncIterator[tuple[Refuser, str]]:
    refuser = Refuser()
    app = web.Application()
    app.router.add_get("/v3/ws", refuser.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield refuser, f"ws://{host}:{port}"
    finally:
        await runner.cleanup()


def _silence() -> rtc.AudioFrame:
    samples = 1600
    return rtc.AudioFrame(
        data=b"\x00\x00" * samples, sample_rate=16000, num_channels=1, samples_per_channel=samples
    )


async def _drain(stream: AsyncIterator[object]) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("fx", FIXTURES, ids=[fx.id for fx in FIXTURES])
async def test_real_plugin_close(fx: Fixture, server: tuple[Refuser, str]) -> None:
    """The plugin's error for this close gets the fixture's verdict, by default."""
    refuser, url = server
    refuser.closes.append(fx)
    http = aiohttp.ClientSession()
    recognizer = assemblyai.STT(api_key=API_KEY, base_url=url, http_session=http)
    verdicts: list[Verdict] = []

    def on_error(event: STTError) -> None:
        verdicts.append(classify(event.error, kind=fx.kind, label=event.label))

    recognizer.on("error", on_error)
    stream = recognizer.stream(conn_options=APIConnectOptions(max_retry=0, timeout=5.0))
    try:
        stream.push_frame(_silence())
        with pytest.raises(APIStatusError):
            await asyncio.wait_for(_drain(stream), 10)
    finally:
        await stream.aclose()
        await recognizer.aclose()
        await http.close()
    assert refuser.authorizations == [API_KEY]
    (verdict,) = verdicts
    assert_verdict_matches(verdict, fx, provider="assemblyai", secrets=[API_KEY])
    rebuilt = classify(fx.error(), kind=fx.kind, label=fx.label)
    assert (verdict.category, verdict.quota) == (rebuilt.category, rebuilt.quota)
