"""Test and demo tooling for agent-guard: real failures, observed end to end, no mocks.

Like ``httpx.MockTransport`` or ``structlog.testing``, this ships with the package so that
applications can test their own guarded agents the way agent-guard tests itself:

* ``GatewaySimulator`` is a real HTTP server imitating the LiveKit Inference gateway (an
  OpenAI-compatible API). Point ``livekit.plugins.openai.LLM``/``TTS`` at its ``base_url`` and
  script what each request gets: a streamed reply, speech, a quota 429, a 401, a hang, ...
  Failures then travel the real path (HTTP, openai SDK, livekit plugin, retry loop, session
  ``"error"`` event), so tests see the exact exceptions, bodies and headers production sees.
* ``CaptureAudioOutput`` is an audio sink for a room-less ``AgentSession``: it records every
  frame the agent speaks, so a test can hear (measure) the farewell.
* Error builders (``openai_status_error``, ``openai_stream_error``, ``ws_handshake_error``,
  ``gateway_quota_body``, ``raised``) make the exact exceptions livekit emits, without a
  server, for unit tests of hooks and classifiers.

Classifier authors: :mod:`agent_guard.testing.plugins`.
"""

from ._audio import CaptureAudioOutput, CapturedFrame, Segment
from ._errors import (
    gateway_quota_body,
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)
from ._exchange import RecordedRequest
from ._responses import (
    ClientCancelled,
    Hang,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
    Speech,
    StreamError,
    Unauthorized,
)
from ._simulator import GatewaySimulator, LLMResponse, ResponseScript, TTSResponse

__all__ = [
    "CaptureAudioOutput",
    "CapturedFrame",
    "ClientCancelled",
    "GatewaySimulator",
    "Hang",
    "HttpError",
    "LLMResponse",
    "QuotaExceeded",
    "RateLimited",
    "RecordedRequest",
    "Reply",
    "ResponseScript",
    "Segment",
    "Speech",
    "StreamError",
    "TTSResponse",
    "Unauthorized",
    "gateway_quota_body",
    "openai_status_error",
    "openai_stream_error",
    "raised",
    "ws_handshake_error",
]
