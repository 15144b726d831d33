"""The LiveKit Inference gateway's quota errors.

The gateway answers ``429 {"type": "inference_quota_exceeded", "error", "quota_type",
"category", "hint", "remaining_limit"}`` both when credits are used up (terminal until
the billing cycle changes) and for per-minute/concurrency limits (transient). Only the
``category`` tells them apart (agent-gateway ``pkg/quota/response.go``, as reviewed on
livekit/agents#6012), and it reaches us in one of four shapes:

- the full body, re-read from the ``httpx.Response`` on ``__context__`` (the OpenAI SDK
  narrows ``e.body`` to ``body["error"]``, a bare string, before livekit sees it);
- only that narrowed string, ``"... quota exceeded, category: MaxGatewayCredits"``:
  ``LLMStream.__anext__`` (livekit ``llm/llm.py``) re-raises the error inside
  ``except StopAsyncIteration``, which replaces its ``__context__``, so code that
  classifies after the stream failed (rather than in the ``"error"`` hook, while livekit
  emits) has lost the response, its hint and its headers;
- an STT websocket error frame, raised as ``APIError(body={"code": code})``, or a TTS
  one, raised with the frame's text as the message (livekit ``inference/stt.py``,
  ``inference/tts.py``);
- a websocket handshake 429 with no body at all (aiohttp keeps only status and headers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent_guard._facts import ErrorFacts, redacted_field
from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers._http import parse_retry_after

__all__ = ["TERMINAL_QUOTA_CATEGORIES", "livekit_gateway"]

#: Gateway categories that do not recover before the next billing cycle. Every other
#: category, and an unknown or missing one, is a rate limit: failing open to transient
#: keeps a gateway that adds a category from closing sessions on a blip.
TERMINAL_QUOTA_CATEGORIES: frozenset[str] = frozenset(
    {"MaxGatewayCredits", "MaxBargeInRequests", "MaxEotRequests"}
)

PROVIDER = "livekit"
_QUOTA_BODY_TYPE = "inference_quota_exceeded"

# Gateway categories are Go constant names: "MaxGatewayCredits",
# "MaxConcurrentGatewayLLMRpm", ...
_CATEGORY = re.compile(r"Max[A-Z][A-Za-z0-9]{0,62}")
# "category: MaxGatewayCredits" (narrowed LLM body), '"code": "MaxEotRequests"' (a
# websocket frame's JSON text in a TTS message).
_CATEGORY_IN_TEXT = re.compile(
    r"""\b(?:category|code)["']?\s*[:=]\s*["']?(Max[A-Z][A-Za-z0-9]{0,62})\b"""
)

# livekit/agents/inference/_utils.py QUOTA_HEADER_FIELDS, lower-cased.
_USAGE_HEADERS: Mapping[str, str] = {
    "x-livekit-inference-rpm-limit": "rpm_limit",
    "x-livekit-inference-rpm-used": "rpm_used",
    "x-livekit-inference-tpm-limit": "tpm_limit",
    "x-livekit-inference-tpm-used": "tpm_used",
    "x-livekit-inference-credits-limit": "credits_limit",
    "x-livekit-inference-credits-used": "credits_used",
}


def _text_field(body: Mapping[str, object], name: str) -> str | None:
    # The endpoint is user-pointable (inference.LLM(base_url=...)): never trust types.
    value = body.get(name)
    if not isinstance(value, str) or not value:
        return None
    return redacted_field(value)


def _usage(headers: Mapping[str, str]) -> dict[str, int]:
    usage = {}
    for header, name in _USAGE_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) <= 18:
            usage[name] = int(value)
    return usage


def _category_from_code(body: Mapping[str, object] | str | None) -> str | None:
    if not isinstance(body, (dict, Mapping)):
        return None
    code = body.get("code")
    return code if isinstance(code, str) and _CATEGORY.fullmatch(code) else None


def _category_from_text(facts: ErrorFacts) -> str | None:
    # Only a 429 or a status-less frame error can be the gateway's quota answer.
    if facts.status_code not in (None, 429):
        return None
    for text in (facts.body, facts.message):
        # Every category is a "Max..." name: skip the regex pass when none is written.
        if isinstance(text, str) and "Max" in text and (match := _CATEGORY_IN_TEXT.search(text)):
            return match.group(1)
    return None


def _verdict(
    facts: ErrorFacts,
    category: str | None,
    *,
    body: Mapping[str, object] | None = None,
) -> Verdict:
    fields = body or {}
    quota = QuotaInfo(
        quota_type=_text_field(fields, "quota_type"),
        category=category,
        remaining_limit=_text_field(fields, "remaining_limit"),
        retry_after=parse_retry_after(facts.headers),
        usage=_usage(facts.headers),
    )
    hint = fields.get("hint")
    return facts.verdict(
        Category.QUOTA_EXHAUSTED
        if category in TERMINAL_QUOTA_CATEGORIES
        else Category.RATE_LIMITED,
        provider=PROVIDER,
        hint=hint if isinstance(hint, str) else None,
        quota=quota,
    )


def livekit_gateway(facts: ErrorFacts) -> Verdict | None:
    """Classify the LiveKit Inference gateway's quota errors.

    Args:
        facts: What :func:`agent_guard.classify` recovered from the error.

    Returns:
        ``QUOTA_EXHAUSTED`` (terminal) for the credit categories in
        :data:`TERMINAL_QUOTA_CATEGORIES`, ``RATE_LIMITED`` for every other category
        (or none), with :class:`~agent_guard.QuotaInfo` from the body and the
        ``X-LiveKit-Inference-*``/``Retry-After`` headers; ``None`` when the error is
        not the gateway's.
    """
    body = facts.body
    if isinstance(body, (dict, Mapping)):
        body_type = body.get("type")
        if isinstance(body_type, str) and body_type == _QUOTA_BODY_TYPE:
            return _verdict(facts, _text_field(body, "category"), body=body)
    category = _category_from_code(body) or _category_from_text(facts)
    if category is not None:
        return _verdict(facts, category)
    # A websocket handshake 429 carries no body, so no category: transient, but the
    # gateway's usage headers still say whose limit it was.
    if facts.status_code == 429 and any(header in facts.headers for header in _USAGE_HEADERS):
        return _verdict(facts, None)
    return None
