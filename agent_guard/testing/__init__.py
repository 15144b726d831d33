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
"""

from ._audio import CaptureAudioOutput, CapturedFrame, Segment
from ._errors import openai_status_error, openai_stream_error
from ._exchange import RecordedRequest
from ._plugin_kit import (
    FixtureServer,
    ProviderFixture,
    assert_fixture_verdict,
    assert_llm_error_verdict,
    assert_verdict_matches,
    check_classifier_is_total,
    error_bodies,
    raised,
)
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
from ._simulator import GatewaySimulator, LLMResponse, ResponseScript, TTSResponse

__all__ = [
    "CaptureAudioOutput",
    "CapturedFrame",
    "ClientCancelled",
    "FixtureServer",
    "GatewaySimulator",
    "Hang",
    "HttpError",
    "LLMResponse",
    "ProviderFixture",
    "QuotaExceeded",
    "RateLimited",
    "RealtimeHang",
    "RealtimeReply",
    "RecordedRequest",
    "Reply",
    "ResponseScript",
    "Segment",
    "SilentSpeech",
    "Speech",
    "StreamError",
    "TTSResponse",
    "ToolCall",
    "Transcript",
    "Unauthorized",
    "assert_fixture_verdict",
    "assert_llm_error_verdict",
    "assert_verdict_matches",
    "check_classifier_is_total",
    "error_bodies",
    "openai_status_error",
    "openai_stream_error",
    "raised",
]
