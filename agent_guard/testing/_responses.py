"""Scripted answers for ``GatewaySimulator``: one frozen dataclass per way a provider behaves.

Each answer is sent over real HTTP, so the openai SDK and the livekit plugins turn it into
exactly the exceptions (and ``__context__`` chains, headers and bodies) production sees.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ._codec import UnsupportedFormatError, encode, sine_tone
from ._exchange import Exchange

__all__ = [
    "ClientCancelled",
    "Hang",
    "HttpError",
    "QuotaExceeded",
    "RateLimited",
    "Reply",
    "ScriptedResponse",
    "SilentSpeech",
    "Speech",
    "StreamError",
    "ToolCall",
    "Transcript",
    "Unauthorized",
]

# Categories that recover only at the next billing cycle; every other category is a
# per-minute or concurrency limit (agent-gateway pkg/quota, as discussed in livekit/agents#6012).
_TERMINAL_CATEGORIES = frozenset({"MaxGatewayCredits", "MaxBargeInRequests", "MaxEotRequests"})
_CREDIT_HINT = "Wait for the next billing cycle or upgrade your plan."
_RATE_HINT = "Reduce request rate or upgrade your plan."
# Wording of the gateway's "error" text; the rpm/tpm ones are copied from real gateway logs.
_QUOTA_ERRORS = {
    "MaxGatewayCredits": "token credit quota exceeded",
    "MaxBargeInRequests": "request quota exceeded",
    "MaxEotRequests": "request quota exceeded",
    "MaxConcurrentGatewayLLMRpm": "request/min rate limit exceeded",
    "MaxConcurrentGatewayLLMTpm": "token/min rate limit exceeded",
    "MaxBargeInRPM": "request/min rate limit exceeded",
}

# Seconds of speech per character of input when ``Speech.seconds`` is not given, and bounds.
_SECONDS_PER_CHAR = 0.06
_MIN_SECONDS = 0.3
_MAX_SECONDS = 8.0
_SSE_AUDIO_CHUNK = 8192


class ScriptedResponse(ABC):
    """Something the simulator can answer a request with."""

    @abstractmethod
    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        """Answer the request, sending every byte through ``exchange``."""


@dataclass(frozen=True)
class Reply(ScriptedResponse):
    """A successful chat completion, streamed word by word (LLM only).

    Streams the way OpenAI does: a role chunk, one chunk per word, a ``finish_reason="stop"``
    chunk, a usage chunk when ``stream_options.include_usage`` is set (livekit always sets
    it), then ``data: [DONE]``. Non-streaming requests get a plain ``chat.completion``.

    ``Reply("")`` is an empty completion: a role chunk, ``finish_reason="stop"`` and no
    content, which livekit ends as a turn with nothing to say and no error.

    Attributes:
        text: The assistant's answer.
        first_token_delay: Seconds between the 200 status line and the first chunk.
        chunk_delay: Seconds between consecutive word chunks.
    """

    text: str = "Hello! How can I help?"
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        words = _words(self.text)
        if not exchange.body.get("stream"):
            await asyncio.sleep(self.first_token_delay)
            return await exchange.send_json(200, _completion(exchange, self.text, len(words)))

        stream = await _ChunkStream.open(exchange)
        await asyncio.sleep(self.first_token_delay)
        await stream.delta({"role": "assistant", "content": ""})
        for index, word in enumerate(words):
            if index:
                await asyncio.sleep(self.chunk_delay)
            await stream.delta({"content": word})
        await stream.delta({}, finish_reason="stop")
        await stream.usage(completion_tokens=len(words))
        await stream.event("[DONE]")
        return await stream.close()


@dataclass(frozen=True)
class ToolCall(ScriptedResponse):
    """A streamed completion that calls one function tool and says nothing (LLM only).

    Streams like OpenAI: a role chunk whose ``tool_calls`` names the function, the
    arguments as one delta, then ``finish_reason="tool_calls"``, usage and ``[DONE]``.
    livekit runs the agent's tool of that name; a tool returning ``None`` needs no reply,
    so the turn ends silent by design.

    Attributes:
        name: The function tool to call.
        arguments: Its JSON arguments.
        first_token_delay: Seconds between the 200 status line and the first chunk.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    first_token_delay: float = 0.0

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        stream = await _ChunkStream.open(exchange)
        await asyncio.sleep(self.first_token_delay)
        call = {
            "index": 0,
            "id": f"call_{exchange.record.request_id}",
            "type": "function",
            "function": {"name": self.name, "arguments": ""},
        }
        await stream.delta({"role": "assistant", "content": None, "tool_calls": [call]})
        arguments = {"index": 0, "function": {"arguments": json.dumps(dict(self.arguments))}}
        await stream.delta({"tool_calls": [arguments]})
        await stream.delta({}, finish_reason="tool_calls")
        await stream.usage(completion_tokens=1)
        await stream.event("[DONE]")
        return await stream.close()


@dataclass(frozen=True)
class StreamError(ScriptedResponse):
    """A 200 stream that breaks off with an SSE ``data: {"error": ...}`` event (LLM only).

    The openai SDK raises ``openai.APIError`` (no status code) for that event
    (``openai/_streaming.py``), which livekit wraps in ``APIConnectionError``, so
    ``{"code": 499}`` here is a mid-stream 499 that livekit does *not* swallow.

    Attributes:
        after_chunks: How many word chunks of ``text`` to send before the error.
        body: The ``error`` object; becomes ``openai.APIError.body``.
        text: Where the words sent before the error come from.
    """

    after_chunks: int = 1
    body: Mapping[str, Any] = field(
        default_factory=lambda: {"message": "Upstream provider failed mid-stream", "code": 502}
    )
    text: str = "Let me check that for you right now."

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        stream = await _ChunkStream.open(exchange)
        await stream.delta({"role": "assistant", "content": ""})
        for word in _words(self.text)[: self.after_chunks]:
            await stream.delta({"content": word})
        await stream.event(json.dumps({"error": dict(self.body)}))
        return await stream.close()


@dataclass(frozen=True)
class Speech(ScriptedResponse):
    """A successful ``/v1/audio/speech`` answer carrying a real, decodable sine tone (TTS only).

    Encodes the requested ``response_format`` (pcm, wav, mp3, aac, flac, opus; the plugin's
    default is mp3) at 24 kHz mono. When the request asks for ``stream_format="sse"``
    (``livekit.plugins.openai.TTS`` does for every model but tts-1/tts-1-hd) the audio is sent
    base64-encoded in ``speech.audio.delta`` events as OpenAI does, otherwise as the raw body.

    Attributes:
        seconds: Length of the tone; None for 0.06 s per input character, within 0.3-8 s.
        frequency: Pitch of the tone in Hz.
    """

    seconds: float | None = None
    frequency: float = 440.0

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        text = str(exchange.body.get("input", ""))
        seconds = self.seconds
        if seconds is None:
            seconds = min(max(len(text) * _SECONDS_PER_CHAR, _MIN_SECONDS), _MAX_SECONDS)
        pcm = sine_tone(seconds, self.frequency)
        try:
            # libav encoding is CPU work: keep it off the loop that also serves the client.
            audio, content_type = await asyncio.to_thread(
                encode, pcm, str(exchange.body.get("response_format", "mp3"))
            )
        except UnsupportedFormatError as e:
            return await exchange.send_json(400, _openai_error(str(e), "response_format"))

        if exchange.body.get("stream_format") != "sse":
            return await exchange.send(200, audio, content_type=content_type)

        response = await exchange.open_event_stream()
        for start in range(0, len(audio), _SSE_AUDIO_CHUNK):
            chunk = base64.b64encode(audio[start : start + _SSE_AUDIO_CHUNK]).decode()
            await _write_event(response, {"type": "speech.audio.delta", "audio": chunk})
        # Rough token counts: the plugin only forwards them to usage metrics.
        input_tokens, output_tokens = max(len(text) // 4, 1), round(seconds * 20)
        usage = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
        await _write_event(response, {"type": "speech.audio.done", "usage": usage})
        await response.write_eof()
        return response


@dataclass(frozen=True)
class Transcript(ScriptedResponse):
    """A successful ``/v1/audio/transcriptions`` answer (STT only).

    Answers in the ``response_format`` asked for, as OpenAI does: ``json`` (the default,
    what ``livekit.plugins.openai.STT`` asks for) is ``{"text", "usage"}``;
    ``verbose_json`` (which the plugin asks for with ``whisper-1``) adds the language,
    the duration and one segment; ``text`` is the bare text. Other formats get OpenAI's
    400.

    Attributes:
        text: The transcript.
        language: The detected language ``verbose_json`` reports.
        delay: Seconds before answering.
    """

    text: str = "Hello."
    language: str = "english"
    delay: float = 0.0

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        await asyncio.sleep(self.delay)
        response_format = exchange.record.form.get("response_format", "json")
        # 16-bit mono WAV at whatever rate: the seconds billed are a rough figure anyway.
        seconds = round(max(exchange.record.files.get("file", 0) - 44, 0) / 2 / 24_000, 3)
        usage = {"type": "duration", "seconds": max(round(seconds), 1)}
        if response_format == "json":
            return await exchange.send_json(200, {"text": self.text, "usage": usage})
        if response_format == "text":
            return await exchange.send(
                200, self.text.encode(), content_type="text/plain; charset=utf-8"
            )
        if response_format == "verbose_json":
            segment = {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": seconds,
                "text": self.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.1,
                "compression_ratio": 1.0,
                "no_speech_prob": 0.0,
            }
            body = {
                "task": "transcribe",
                "language": self.language,
                "duration": seconds,
                "text": self.text,
                "segments": [segment],
                "usage": usage,
            }
            return await exchange.send_json(200, body)
        return await exchange.send_json(
            400,
            _openai_error(f"Unsupported response_format: {response_format!r}", "response_format"),
        )


@dataclass(frozen=True)
class QuotaExceeded(ScriptedResponse):
    """The LiveKit Inference gateway's 429 ``inference_quota_exceeded`` rejection.

    The body is the gateway's flat JSON object. The openai SDK narrows
    ``APIStatusError.body`` to its ``"error"`` string (``openai/_client.py``
    ``_make_status_error``), so the category, hint and quota headers survive only on the
    ``openai.RateLimitError`` that livekit leaves as ``__context__`` of its ``APIStatusError``,
    and only while the ``"error"`` event is emitted: when the stream re-raises the error to
    its consumer, ``LLMStream.__anext__`` replaces that ``__context__`` with
    ``StopAsyncIteration`` (``livekit/agents/llm/llm.py``).

    Attributes:
        category: The gateway's quota category. MaxGatewayCredits, MaxBargeInRequests and
            MaxEotRequests recover at the next billing cycle; the MaxConcurrent* and
            MaxBargeInRPM categories are per-minute or concurrency limits.
        quota_type: Which product hit the quota: ``"llm"``, ``"stt"``, ``"tts"``, ...
        hint: The ``hint`` text; None for the gateway's wording for ``category``.
        remaining_limit: The ``remaining_limit`` field; left out of the body when None.
        credits_limit: ``X-LiveKit-Inference-Credits-Limit``; no header when None (as for
            every header below).
        credits_used: ``X-LiveKit-Inference-Credits-Used``.
        rpm_limit: ``X-LiveKit-Inference-RPM-Limit``.
        rpm_used: ``X-LiveKit-Inference-RPM-Used``.
        tpm_limit: ``X-LiveKit-Inference-TPM-Limit``.
        tpm_used: ``X-LiveKit-Inference-TPM-Used``.
        retry_after: ``Retry-After`` in seconds.
        message: The ``error`` text; None for e.g.
            ``"LLM token credit quota exceeded, category: MaxGatewayCredits"``.
    """

    category: str = "MaxGatewayCredits"
    quota_type: str = "llm"
    hint: str | None = None
    remaining_limit: int | str | None = None
    credits_limit: int | None = 1000
    credits_used: int | None = 1000
    rpm_limit: int | None = None
    rpm_used: int | None = None
    tpm_limit: int | None = None
    tpm_used: int | None = None
    retry_after: float | None = None
    message: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The JSON body sent with the 429."""
        what = _QUOTA_ERRORS.get(self.category, "concurrency limit exceeded")
        error = f"{self.quota_type.upper()} {what}, category: {self.category}"
        hint = _CREDIT_HINT if self.category in _TERMINAL_CATEGORIES else _RATE_HINT
        body: dict[str, Any] = {
            "error": error if self.message is None else self.message,
            "type": "inference_quota_exceeded",
            "quota_type": self.quota_type,
            "category": self.category,
            "hint": hint if self.hint is None else self.hint,
        }
        if self.remaining_limit is not None:
            body["remaining_limit"] = self.remaining_limit
        return body

    @property
    def headers(self) -> dict[str, str]:
        """The quota headers sent with the 429 (``x-request-id`` is added per request)."""
        values = {
            "X-LiveKit-Inference-Credits-Limit": self.credits_limit,
            "X-LiveKit-Inference-Credits-Used": self.credits_used,
            "X-LiveKit-Inference-RPM-Limit": self.rpm_limit,
            "X-LiveKit-Inference-RPM-Used": self.rpm_used,
            "X-LiveKit-Inference-TPM-Limit": self.tpm_limit,
            "X-LiveKit-Inference-TPM-Used": self.tpm_used,
            "Retry-After": self.retry_after,
        }
        return {name: _header_value(value) for name, value in values.items() if value is not None}

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        return await exchange.send_json(429, self.body, headers=self.headers)


@dataclass(frozen=True)
class RateLimited(QuotaExceeded):
    """A transient gateway 429: requests-per-minute instead of credits.

    Same shape as ``QuotaExceeded``, but it stamps RPM headers and no credit headers, so a
    classifier that looks at headers sees a rate limit rather than exhausted credits.
    """

    category: str = "MaxConcurrentGatewayLLMRpm"
    credits_limit: int | None = None
    credits_used: int | None = None
    rpm_limit: int | None = 100
    rpm_used: int | None = 100


@dataclass(frozen=True)
class Unauthorized(ScriptedResponse):
    """OpenAI's 401 for a bad key, whose message echoes the key back.

    Real providers do echo (part of) the key; the echo gives redaction tests a secret to find.

    Attributes:
        key: The key quoted in the error message.
    """

    key: str = "sk-test-5d41402abc4b2a76b9719d911017c592"

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        message = (
            f"Incorrect API key provided: {self.key}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return await exchange.send_json(401, _openai_error(message, None, code="invalid_api_key"))


@dataclass(frozen=True)
class HttpError(ScriptedResponse):
    """Any status with any body, for failures no other answer covers.

    Attributes:
        status: The HTTP status.
        body: bytes and str are sent verbatim (as application/octet-stream and
            text/plain); anything else is sent as JSON, wrong-typed fields and all.
        headers: Extra headers; a Content-Type here overrides the one derived from ``body``.
    """

    status: int = 500
    body: object = field(
        default_factory=lambda: _openai_error(
            "The server had an error while processing your request. Sorry about that!",
            None,
            kind="server_error",
        )
    )
    headers: Mapping[str, str] = field(default_factory=dict)

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        if isinstance(self.body, bytes):
            payload, content_type = self.body, "application/octet-stream"
        elif isinstance(self.body, str):
            payload, content_type = self.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(self.body).encode(), "application/json"
        return await exchange.send(
            self.status, payload, content_type=content_type, headers=self.headers
        )


@dataclass(frozen=True)
class ClientCancelled(ScriptedResponse):
    """HTTP 499, the gateway's "client closed request".

    livekit's LLM and TTS retry loops return silently on ``APIStatusError(499)``
    (``livekit/agents/llm/llm.py`` ``_main_task``): no error event, no retry, no reply.
    """

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        return await exchange.send_json(
            499, {"error": {"message": "Client closed request", "code": 499}}
        )


@dataclass(frozen=True)
class Hang(ScriptedResponse):
    """Never finish answering, until the client gives up or the simulator closes.

    By default nothing at all is sent (a request that is never accepted). With
    ``after_headers=True`` the 200 status line and headers go out first (an event stream
    for chat completions, ``audio/mpeg`` for speech, JSON for transcriptions) and then not
    a byte follows: the
    request looks accepted, the openai SDK returns the stream, and only the client's read
    timeout ends it, the way a provider that accepts a request and never sends a token
    behaves.

    Attributes:
        after_headers: Send the 200 status line and headers before hanging.
    """

    after_headers: bool = False

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        if self.after_headers:
            endpoint = exchange.record.endpoint
            if endpoint == "tts" and exchange.body.get("stream_format") != "sse":
                await exchange.open(web.StreamResponse(headers={"Content-Type": "audio/mpeg"}))
            elif endpoint == "stt":
                json_headers = {"Content-Type": "application/json"}
                await exchange.open(web.StreamResponse(headers=json_headers))
            else:
                await exchange.open_event_stream()
        never: asyncio.Future[web.StreamResponse] = asyncio.get_running_loop().create_future()
        # Resolved by nobody: only cancellation ends the wait, either aiohttp's when the client
        # disconnects (handler_cancellation) or the simulator's own in aclose().
        return await never


@dataclass(frozen=True)
class SilentSpeech(ScriptedResponse):
    """A 200 ``/v1/audio/speech`` answer that carries no audio at all (TTS only).

    The stream is well formed (``speech.audio.done`` alone for SSE requests, an empty
    ``audio/mpeg`` body otherwise), so nothing fails at the HTTP layer: the caller simply
    hears nothing, which livekit reports only as "no audio frames were pushed".
    """

    async def _answer(self, exchange: Exchange) -> web.StreamResponse:
        if exchange.body.get("stream_format") != "sse":
            return await exchange.send(200, b"", content_type="audio/mpeg")
        response = await exchange.open_event_stream()
        usage = {"input_tokens": 1, "output_tokens": 0, "total_tokens": 1}
        await _write_event(response, {"type": "speech.audio.done", "usage": usage})
        await response.write_eof()
        return response


class _ChunkStream:
    """Writes ``chat.completion.chunk`` events shaped like OpenAI's."""

    def __init__(self, exchange: Exchange, response: web.StreamResponse) -> None:
        self._exchange = exchange
        self._response = response
        self._id = f"chatcmpl-{exchange.record.request_id}"
        self._created = int(time.time())
        self._model = str(exchange.body.get("model", "gpt-4o-mini"))
        options = exchange.body.get("stream_options")
        self._include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    @classmethod
    async def open(cls, exchange: Exchange) -> _ChunkStream:
        return cls(exchange, await exchange.open_event_stream())

    async def close(self) -> web.StreamResponse:
        await self._response.write_eof()
        return self._response

    async def delta(self, delta: dict[str, Any], *, finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        await self._chunk([choice], usage=None)

    async def usage(self, *, completion_tokens: int) -> None:
        if self._include_usage:
            await self._chunk([], usage=_usage(self._exchange, completion_tokens))

    async def event(self, data: str) -> None:
        await self._response.write(f"data: {data}\n\n".encode())

    async def _chunk(self, choices: Sequence[dict[str, Any]], *, usage: object) -> None:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": list(choices),
        }
        if self._include_usage:
            # OpenAI sends "usage": null on every chunk but the last when usage is requested.
            chunk["usage"] = usage
        await self.event(json.dumps(chunk))


def _words(text: str) -> list[str]:
    """Split ``text`` into word deltas that concatenate back to it, spaces leading like tokens."""
    return re.findall(r"\s*\S+(?:\s+$)?", text)


def _usage(exchange: Exchange, completion_tokens: int) -> dict[str, int]:
    # A rough 4-characters-per-token estimate is plenty for a simulator.
    prompt_tokens = max(len(json.dumps(exchange.body.get("messages", []))) // 4, 1)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion(exchange: Exchange, text: str, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{exchange.record.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(exchange.body.get("model", "gpt-4o-mini")),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(exchange, completion_tokens),
    }


def _openai_error(
    message: str, param: str | None, *, kind: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _header_value(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


async def _write_event(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload)}\n\n".encode())
