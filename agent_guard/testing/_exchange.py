"""One request to the simulator: what is recorded about it, and how an answer is sent."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Endpoint", "Exchange", "RecordedRequest", "multipart_form"]

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
        form: The text fields of a multipart body (an STT request's ``model``,
            ``response_format``, ``language``, ...).
        files: The size in bytes of each file field of a multipart body (the audio).
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
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)


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


def multipart_form(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, int]]:
    """The text fields and the file sizes of a ``multipart/form-data`` body.

    Returns:
        ``({name: text}, {name: size in bytes})``; both empty if ``raw`` is not multipart.
    """
    if not content_type.startswith("multipart/form-data"):
        return {}, {}
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    fields: dict[str, str] = {}
    files: dict[str, int] = {}
    if not message.is_multipart():
        return fields, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            files[name] = len(data)
        else:
            fields[name] = data.decode("utf-8", errors="replace")
    return fields, files
