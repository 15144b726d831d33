"""Provider errors built the way production builds them, for the micro-benchmarks.

An HTTP failure goes through the real openai SDK (``_make_status_error_from_response``,
which narrows ``body`` to its ``"error"`` value) and is re-raised as livekit does in
``livekit/agents/inference/llm.py`` ``_run``: ``APIStatusError(...) from None``, so the
full response survives only on ``__context__``, exactly what the guard has to dig out.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from livekit.agents import llm

from agent_guard.testing import openai_status_error, openai_stream_error

__all__ = ["client_cancel", "credits_429", "llm_error", "rate_limit_429", "sdk_error"]

LABEL = "livekit.plugins.openai.llm.LLM"


def sdk_error(status: int, body: object, headers: dict[str, str] | None = None) -> Exception:
    """An HTTP error through the SDK, wrapped as livekit's LLM plugin does.

    Each response carries a request id of its own, as OpenAI's and LiveKit Inference's
    do (``x-request-id``, read by the SDK into ``request_id``, which livekit keeps and
    prints in ``str()``): no two errors are byte-for-byte alike.
    """
    return openai_status_error(
        status, json=body, headers={**(headers or {}), "x-request-id": f"req_{uuid.uuid4().hex}"}
    )


def rate_limit_429() -> Exception:
    """The gateway's transient 429: a per-minute limit (retried by livekit)."""
    return sdk_error(
        429,
        {
            "error": "LLM request/min rate limit exceeded, category: MaxConcurrentGatewayLLMRpm",
            "type": "inference_quota_exceeded",
            "quota_type": "llm",
            "category": "MaxConcurrentGatewayLLMRpm",
            "hint": "Reduce request rate or upgrade your plan.",
        },
        {"X-LiveKit-Inference-RPM-Limit": "100", "X-LiveKit-Inference-RPM-Used": "100"},
    )


def credits_429() -> Exception:
    """The gateway's terminal 429: credits used up until the next billing cycle."""
    return sdk_error(
        429,
        {
            "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
            "type": "inference_quota_exceeded",
            "quota_type": "llm",
            "category": "MaxGatewayCredits",
            "hint": "Wait for the next billing cycle or upgrade your plan.",
        },
        {"X-LiveKit-Inference-Credits-Limit": "1000", "X-LiveKit-Inference-Credits-Used": "1000"},
    )


def client_cancel() -> Exception:
    """A mid-stream 499: openai.APIError (no status) wrapped in APIConnectionError."""
    return openai_stream_error({"message": "Client closed request", "code": 499}, retryable=True)


def llm_error(error: Exception, *, recoverable: bool, label: str = LABEL) -> Any:
    """The ``LLMError`` livekit's LLMStream emits for one failed attempt."""
    return llm.LLMError(timestamp=time.time(), label=label, error=error, recoverable=recoverable)
