"""One request to the simulator: what is recorded about it, and how an answer is sent."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Endpoint", "Exchange", "RecordedRequest"]

Endpoint = Literal["llm", "tts", "stt", "realtime", "other"]


@dataclass
class RecordedRequest:
    """A request the simulator received, recorded before it was answered.

    The Authorization header is reduced to ``authorization_present``: its value is a
    credential and has no business in test output.

    Attributes:
        endpoint: ``"llm"`` (chat completions), ``"tts"`` (audio speech), ``"stt"`` (audio
            transcriptions), ``"realtime"``
            (one ``response.create`` on the realtime websocket) or ``"other"``.
        path: The request path, e.g. ``"/v1/chat/completions"``.
        method: The HTTP method.
        at: ``time.monotonic()`` when the request arrived.
        json: The JSON object body, or None if the body was empty or not a JSON object.
        request_id: The ``x-request-id`` the answer carries (what livekit reports as
            ``APIStatusError.request_id``).
        authorization_present: Whether an Authorization header was sent.
        status: The HTTP status answered, None until the status line is sent (forever for
            ``Hang``).
        responded_at: ``time.monotonic()`` when the status line was handed to the transport.
    """

    endpoint: Endpoint
    path: str
    method: str
    at: float
    json: dict[str, Any] | None
    request_id: str
    authorization_present: bool
    status: int | None = None
    responded_at: float | None = None


@dataclass
class Exchange:
    """The request being answered, and the only way answers are sent, so none goes unrecorded."""

    request: web.Request
    record: RecordedRequest

    @property
    def body(self) -> dict[str, Any]:
        """The JSON object body, empty if there was none."""
        return self.record.json or {}

    async def open(self, response: web.StreamResponse) -> web.StreamResponse:
        """Send the status line and headers of ``response`` and record them."""
        response.headers.setdefault("x-request-id", self.record.request_id)
        await response.prepare(self.request)
        self.record.status = response.status
        self.record.responded_at = time.monotonic()
        return response

    async def send(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> web.StreamResponse:
        """Send a complete response; a Content-Type in ``headers`` wins over ``content_type``."""
        all_headers = CIMultiDict(headers or {})
        all_headers.setdefault("Content-Type", content_type)
        response = web.Response(status=status, body=body, headers=all_headers)
        await self.open(response)
        await response.write_eof()
        return response

    async def send_json(
        self, status: int, payload: object, *, headers: Mapping[str, str] | None = None
    ) -> web.StreamResponse:
        """Send ``payload`` as a JSON response."""
        return await self.send(
            status, json.dumps(payload).encode(), content_type="application/json", headers=headers
        )

    async def open_event_stream(self) -> web.StreamResponse:
        """Start a 200 server-sent-events response."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        return await self.open(response)
