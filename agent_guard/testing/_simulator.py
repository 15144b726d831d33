"""An OpenAI-compatible HTTP server that imitates the LiveKit Inference gateway.

The guard classifies failures from what really reaches it: livekit exceptions built by the
plugins from openai SDK exceptions built from HTTP responses. Faking any layer of that chain
would test the fake, so the simulator is a real server on 127.0.0.1 that real
``livekit.plugins.openai.LLM``/``TTS`` instances talk to, answering from a script.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from types import TracebackType
from typing import Any, Generic, Self, TypeAlias, TypeVar

from aiohttp import web

from ._exchange import Endpoint, Exchange, RecordedRequest, multipart_form
from ._realtime import RealtimeHang, RealtimeReply, RealtimeResponse, serve_realtime
from ._responses import (
    ClientCancelled,
    Hang,
    HttpError,
    QuotaExceeded,
    Reply,
    ScriptedResponse,
    SilentSpeech,
    Speech,
    StreamError,
    ToolCall,
    Transcript,
    Unauthorized,
)

__all__ = ["GatewaySimulator", "LLMResponse", "ResponseScript", "STTResponse", "TTSResponse"]

LLMResponse: TypeAlias = (
    Reply
    | ToolCall
    | StreamError
    | QuotaExceeded
    | Unauthorized
    | HttpError
    | ClientCancelled
    | Hang
)
TTSResponse: TypeAlias = (
    Speech | SilentSpeech | QuotaExceeded | Unauthorized | HttpError | ClientCancelled | Hang
)
_LLM_RESPONSES = (
    Reply,
    ToolCall,
    StreamError,
    QuotaExceeded,
    Unauthorized,
    HttpError,
    ClientCancelled,
    Hang,
)
STTResponse: TypeAlias = (
    Transcript | QuotaExceeded | Unauthorized | HttpError | ClientCancelled | Hang
)
_STT_RESPONSES = (Transcript, QuotaExceeded, Unauthorized, HttpError, ClientCancelled, Hang)
_TTS_RESPONSES = (
    Speech,
    SilentSpeech,
    QuotaExceeded,
    Unauthorized,
    HttpError,
    ClientCancelled,
    Hang,
)

_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): "llm",
    ("POST", "/v1/audio/speech"): "tts",
    ("POST", "/v1/audio/transcriptions"): "stt",
}
_REALTIME_PATH = "/v1/realtime"
# Answered so the plugins' connection prewarm (openai.LLM lists models) does not log a 404.
_MODELS_PATH = "/v1/models"
# Upper bound for aiohttp's graceful shutdown; aclose() cancels handlers first, so a
# clean close never waits for it.
_SHUTDOWN_TIMEOUT = 1.0

R = TypeVar("R", bound=ScriptedResponse | RealtimeResponse)


class ResponseScript(Generic[R]):
    """The answers for one endpoint: a queue consumed one per request, then ``default``."""

    def __init__(self, endpoint: Endpoint, default: R, accepts: tuple[type[R], ...]) -> None:
        self._endpoint = endpoint
        self._accepts = accepts
        self._queue: deque[R] = deque()
        self._default = self._checked(default)

    @property
    def default(self) -> R:
        """The answer once the queue is empty."""
        return self._default

    @default.setter
    def default(self, response: R) -> None:
        self._default = self._checked(response)

    @property
    def pending(self) -> int:
        """How many scripted answers have not been used yet."""
        return len(self._queue)

    def script(self, *responses: R) -> None:
        """Queue answers for the next requests, in order, after any already queued.

        Raises:
            TypeError: An answer cannot be given by this endpoint (e.g. ``Speech`` for LLM).
        """
        self._queue.extend(self._checked(response) for response in responses)

    def next(self) -> R:
        """Take the answer for the next request."""
        return self._queue.popleft() if self._queue else self._default

    def _checked(self, response: R) -> R:
        if not isinstance(response, self._accepts):
            raise TypeError(f"{type(response).__name__} cannot answer {self._endpoint} requests")
        return response


class GatewaySimulator:
    """A scripted OpenAI-compatible gateway on ``127.0.0.1``.

    Example:
        async with GatewaySimulator() as sim:
            sim.llm.script(Reply("Hi there."), QuotaExceeded())
            llm = openai.LLM(model="gpt-4o-mini", base_url=sim.base_url, api_key="sk-test")

    Serves ``POST /v1/chat/completions`` from ``llm``, ``POST /v1/audio/speech`` from
    ``tts``, ``POST /v1/audio/transcriptions`` from ``stt``, the realtime websocket
    ``/v1/realtime`` from ``realtime`` and ``GET /v1/models``; other websockets (LiveKit
    Inference's streaming STT/TTS) are accepted and never answered; anything else gets a
    404. Every request is appended to ``requests`` before it is answered (for realtime:
    every ``response.create``).

    Attributes:
        llm: The script for chat completions; ``Reply()`` by default.
        tts: The script for speech; ``Speech()`` by default.
        stt: The script for transcriptions (``livekit.plugins.openai.STT``);
            ``Transcript()`` by default.
        realtime: The script for realtime responses; ``RealtimeReply()`` by default.
        requests: Every request received, in arrival order.
    """

    def __init__(self) -> None:
        self.llm: ResponseScript[LLMResponse] = ResponseScript("llm", Reply(), _LLM_RESPONSES)
        self.tts: ResponseScript[TTSResponse] = ResponseScript("tts", Speech(), _TTS_RESPONSES)
        self.stt: ResponseScript[STTResponse] = ResponseScript("stt", Transcript(), _STT_RESPONSES)
        self.realtime: ResponseScript[RealtimeResponse] = ResponseScript(
            "realtime", RealtimeReply(), (RealtimeReply, RealtimeHang)
        )
        self.requests: list[RecordedRequest] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._arrivals = asyncio.Condition()

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:<port>/v1``.

        Raises:
            RuntimeError: The simulator has not been started.
        """
        if self._port is None:
            raise RuntimeError("GatewaySimulator is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    def requests_for(self, endpoint: Endpoint) -> list[RecordedRequest]:
        """The recorded requests to one endpoint, in arrival order."""
        return [request for request in self.requests if request.endpoint == endpoint]

    async def wait_for_request(
        self, endpoint: Endpoint | None = None, *, count: int = 1
    ) -> RecordedRequest:
        """Wait until ``count`` requests (to ``endpoint``, if given) have arrived.

        Returns:
            The ``count``-th of them, possibly before it has been answered.
        """

        def arrived() -> list[RecordedRequest]:
            return self.requests if endpoint is None else self.requests_for(endpoint)

        async with self._arrivals:
            await self._arrivals.wait_for(lambda: len(arrived()) >= count)
        return arrived()[count - 1]

    async def start(self) -> Self:
        """Listen on a free port of 127.0.0.1."""
        if self._runner is not None:
            raise RuntimeError("GatewaySimulator is already started")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that gives up (timeout) ends its Hang at once.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        return self

    async def aclose(self) -> None:
        """Stop serving; requests still being answered (``Hang`` included) are cut off."""
        runner, self._runner, self._port = self._runner, None, None
        if runner is None:
            return
        for handler in self._handlers:
            handler.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            if request.path == _REALTIME_PATH:
                return await serve_realtime(
                    request,
                    next_response=self.realtime.next,
                    on_response=lambda event: self._record_realtime(request, event, arrived),
                )
            endpoint = _ROUTES.get((request.method, request.path), "other")
            raw = await request.read()
            form, files = multipart_form(request.headers.get("Content-Type", ""), raw)
            record = RecordedRequest(
                endpoint=endpoint,
                path=request.path,
                method=request.method,
                at=arrived,
                json=_json_object(raw),
                request_id=f"req_sim_{len(self.requests) + 1}",
                authorization_present="Authorization" in request.headers,
                form=form,
                files=files,
            )
            await self._arrived(record)
            exchange = Exchange(request, record)
            if endpoint == "llm":
                return await self.llm.next()._answer(exchange)
            if endpoint == "tts":
                return await self.tts.next()._answer(exchange)
            if endpoint == "stt":
                return await self.stt.next()._answer(exchange)
            if (request.method, request.path) == ("GET", _MODELS_PATH):
                return await exchange.send_json(200, _MODELS)
            if request.headers.get("Upgrade", "").lower() == "websocket":
                return await _silent_websocket(exchange)
            return await exchange.send_json(404, _not_found(request))
        finally:
            self._handlers.discard(handler)

    async def _arrived(self, record: RecordedRequest) -> None:
        self.requests.append(record)
        async with self._arrivals:
            self._arrivals.notify_all()

    def _record_realtime(self, request: web.Request, event: dict[str, Any], at: float) -> None:
        record = RecordedRequest(
            endpoint="realtime",
            path=request.path,
            method="WS",
            at=time.monotonic(),
            json=event,
            request_id=f"req_sim_{len(self.requests) + 1}",
            authorization_present="Authorization" in request.headers,
        )
        self.requests.append(record)


_MODELS = {
    "object": "list",
    "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "simulator"}],
}


async def _silent_websocket(exchange: Exchange) -> web.StreamResponse:
    """Accept a websocket and never answer on it.

    LiveKit Inference's streaming STT, TTS and turn models (``livekit.agents.inference``)
    open websockets to the same base URL; the simulator does not speak those protocols,
    but a connection that stays quiet keeps them from failing (and closing a guarded
    session) while a test drives the LLM.
    """
    ws = web.WebSocketResponse()
    await exchange.open(ws)
    async for _ in ws:
        pass
    return ws


def _not_found(request: web.Request) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Unknown request URL: {request.method} {request.path}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unknown_url",
        }
    }


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
