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
* ``CaptureTextOutput`` keeps the agent's transcript, farewell included (which neither the
  ``RunResult`` nor the chat history shows), and ``guarded_close(session)`` waits for the
  guard's close after a ``session.run()`` and says how it went (``said``, ``reason``, ...).
* Error builders (``openai_status_error``, ``openai_stream_error``, ``ws_handshake_error``,
  ``gateway_quota_body``, ``raised``) make the exact exceptions livekit emits, without a
  server, for unit tests of hooks and classifiers.

Classifier authors: :mod:`agent_guard.testing.plugins`.
"""

from ._audio import CaptureAudioOutput, CapturedFrame, Segment
from ._close import GuardedClose, guarded_close
from ._errors import (
    gateway_quota_body,
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)
from ._exchange import RecordedRequest
from ._realtime import RealtimeHang, RealtimeReply
from ._responses import (
    ClientCancelled,
    Hang,
    HttpError,
    QuotaExceeded,
    RateLimited,
    Reply,
    SilentSpeech,
    Speech,
    StreamError,
    ToolCall,
    Transcript,
    Unauthorized,
)
from ._simulator import GatewaySimulator, LLMResponse, ResponseScript, STTResponse, TTSResponse
from ._text import CaptureTextOutput

__all__ = [
    "CaptureAudioOutput",
    "CaptureTextOutput",
    "CapturedFrame",
    "ClientCancelled",
    "GatewaySimulator",
    "GuardedClose",
    "Hang",
    "HttpError",
    "LLMResponse",
    "QuotaExceeded",
    "RateLimited",
    "RealtimeHang",
    "RealtimeReply",
    "RecordedRequest",
    "Reply",
    "ResponseScript",
    "STTResponse",
    "Segment",
    "SilentSpeech",
    "Speech",
    "StreamError",
    "TTSResponse",
    "ToolCall",
    "Transcript",
    "Unauthorized",
    "gateway_quota_body",
    "guarded_close",
    "openai_status_error",
    "openai_stream_error",
    "raised",
    "ws_handshake_error",
]
