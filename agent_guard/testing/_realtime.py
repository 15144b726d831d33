"""The simulator's realtime endpoint: enough of OpenAI's Realtime API for livekit's client.

``livekit.plugins.openai.realtime.RealtimeModel`` talks to ``/v1/realtime`` over a
websocket: it updates the session, creates conversation items and waits for each to be
``conversation.item.added``, then asks for a response (``response.create``, with its
event id in ``response.metadata.client_event_id``) and plays the audio deltas that
follow. The simulator answers that dialogue with the GA event names, from a script:
``RealtimeReply`` speaks (a sine tone and its transcript), ``RealtimeHang`` creates the
response and then sends nothing, a model that went silent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from ._codec import sine_tone

__all__ = ["RealtimeHang", "RealtimeReply", "RealtimeResponse", "serve_realtime"]

_CHUNK_SECONDS = 0.1
_SAMPLE_RATE = 24_000


class _Conversation:
    """One websocket: its items and the response being generated."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.last_item: str | None = None
        self.responses = 0
        self.events = 0
        self.current: asyncio.Task[None] | None = None
        self.current_id: str | None = None

    async def send(self, event: dict[str, Any]) -> None:
        self.events += 1
        await self.ws.send_str(json.dumps({"event_id": f"event_sim_{self.events}", **event}))

    async def add_item(self, item: dict[str, Any]) -> None:
        await self.send(
            {"type": "conversation.item.added", "previous_item_id": self.last_item, "item": item}
        )
        self.last_item = item["id"]


class RealtimeResponse(ABC):
    """How the simulated realtime model answers one ``response.create``."""

    @abstractmethod
    async def _respond(self, conv: _Conversation, response_id: str, metadata: object) -> None:
        """Send the response's events."""


async def _created(conv: _Conversation, response_id: str, metadata: object) -> None:
    await conv.send(
        {
            "type": "response.created",
            "response": {
                "id": response_id,
                "object": "realtime.response",
                "status": "in_progress",
                "metadata": metadata,
                "output": [],
            },
        }
    )


@dataclass(frozen=True)
class RealtimeReply(RealtimeResponse):
    """A spoken answer: a sine tone streamed as audio deltas, with its transcript.

    Attributes:
        text: The transcript.
        seconds: Length of the audio.
        first_audio_delay: Seconds between ``response.created`` and the first audio.
    """

    text: str = "Hello! How can I help?"
    seconds: float = 0.5
    first_audio_delay: float = 0.0

    async def _respond(self, conv: _Conversation, response_id: str, metadata: object) -> None:
        await _created(conv, response_id, metadata)
        item_id = f"item_{response_id}"
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        where = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        await conv.send({"type": "response.output_item.added", **_no_item(where), "item": item})
        await conv.add_item(item)
        part = {"type": "output_audio", "transcript": ""}
        await conv.send(
            {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        )
        await asyncio.sleep(self.first_audio_delay)
        await conv.send(
            {
                "type": "response.output_audio_transcript.delta",
                **where,
                "content_index": 0,
                "delta": self.text,
            }
        )
        pcm = sine_tone(self.seconds, 440.0, sample_rate=_SAMPLE_RATE)
        step = int(_CHUNK_SECONDS * _SAMPLE_RATE) * 2
        for start in range(0, len(pcm), step):
            delta = base64.b64encode(pcm[start : start + step]).decode()
            await conv.send(
                {"type": "response.output_audio.delta", **where, "content_index": 0, "delta": delta}
            )
        await conv.send({"type": "response.output_audio.done", **where, "content_index": 0})
        await conv.send(
            {
                "type": "response.output_audio_transcript.done",
                **where,
                "content_index": 0,
                "transcript": self.text,
            }
        )
        done = {
            **item,
            "status": "completed",
            "content": [{"type": "output_audio", "transcript": self.text}],
        }
        await conv.send({"type": "response.output_item.done", **_no_item(where), "item": done})
        usage = {"total_tokens": 20, "input_tokens": 10, "output_tokens": 10}
        await conv.send(
            {
                "type": "response.done",
                "response": {
                    "id": response_id,
                    "object": "realtime.response",
                    "status": "completed",
                    "metadata": metadata,
                    "output": [done],
                    "usage": usage,
                },
            }
        )


@dataclass(frozen=True)
class RealtimeHang(RealtimeResponse):
    """The response is created, then nothing: no audio, no ``response.done``, ever."""

    async def _respond(self, conv: _Conversation, response_id: str, metadata: object) -> None:
        await _created(conv, response_id, metadata)
        await asyncio.get_running_loop().create_future()


def _no_item(where: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in where.items() if k != "item_id"}


async def serve_realtime(
    request: web.Request,
    *,
    next_response: Callable[[], RealtimeResponse],
    on_response: Callable[[dict[str, Any]], None],
) -> web.WebSocketResponse:
    """Answer one realtime websocket until the client closes it.

    Args:
        request: The upgrade request.
        next_response: The script's answer for the next ``response.create``.
        on_response: Records each ``response.create`` (the simulator's request log).
    """
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    conv = _Conversation(ws)
    model = request.query.get("model", "gpt-realtime")
    session = {"id": "sess_sim", "object": "realtime.session", "type": "realtime", "model": model}
    await conv.send({"type": "session.created", "session": session})
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            await _handle(conv, event, next_response, on_response)
    finally:
        if conv.current is not None:
            conv.current.cancel()
    return ws


async def _handle(
    conv: _Conversation,
    event: dict[str, Any],
    next_response: Callable[[], RealtimeResponse],
    on_response: Callable[[dict[str, Any]], None],
) -> None:
    kind = event.get("type")
    if kind == "session.update":
        await conv.send({"type": "session.updated", "session": event.get("session", {})})
    elif kind == "conversation.item.create":
        item = dict(event.get("item", {}))
        item.setdefault("id", f"item_sim_{conv.events}")
        item["status"] = "completed"
        await conv.add_item(item)
    elif kind == "conversation.item.delete":
        await conv.send({"type": "conversation.item.deleted", "item_id": event.get("item_id")})
    elif kind == "response.create":
        on_response(event)
        conv.responses += 1
        response_id = f"resp_sim_{conv.responses}"
        metadata = (event.get("response") or {}).get("metadata")
        answer = next_response()
        if conv.current is not None:
            conv.current.cancel()
        conv.current_id = response_id
        conv.current = asyncio.create_task(answer._respond(conv, response_id, metadata))
    elif kind == "response.cancel" and conv.current is not None and not conv.current.done():
        conv.current.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await conv.current
        await conv.send(
            {
                "type": "response.done",
                "response": {"id": conv.current_id, "status": "cancelled", "output": []},
            }
        )
