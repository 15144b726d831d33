"""Recognise ElevenLabs errors: ``{"detail": {"status", "message"}}`` and its WS variants.

ElevenLabs answers an exhausted character quota with **401** ``quota_exceeded``, the
same status as a bad key: only ``detail.status`` separates "buy credits" from "fix the
key". How much of it reaches us depends on the livekit-plugins-elevenlabs 1.8.9 path:

* STT ``recognize`` (HTTP) parses the body into ``APIStatusError.body`` (``stt.py``);
* TTS over HTTP calls ``raise_for_status()`` and keeps only ``status``/``reason``
  (``tts.py``, ``body=None``): a 401 cannot be told apart, so it is ``AUTH``
  with a hint naming both causes (terminal either way);
* TTS over the websocket turns an error frame into ``APIError(message=data["error"])``,
  re-raised as ``APIStatusError("Could not synthesize") from`` it (``tts.py``,
  ``SynthesizeStream._run``): the frame's ``error`` token (e.g. ``quota_exceeded``) is on the chain;
* realtime STT raises ``APIConnectionError(f"ElevenLabs STT error [{message_type}]")``
  (``stt.py``), the ``message_type`` being ``quota_exceeded``, ``auth_error``...

* a websocket closed by ElevenLabs becomes ``APIStatusError(status_code=<close code>)``
  (TTS: ``tts.py`` ``_recv_loop``, reason dropped; realtime STT: ``stt.py``, reason kept
  as ``body=f"{msg.data=} {msg.extra=}"``). ElevenLabs closes with **1008** (policy
  violation) for quota and for transient or configuration problems alike ("Maximum
  simultaneous contexts per WebSocket connection exceeded (5)", livekit/agents#5844,
  pipecat#4114; an input timeout, elevenlabs-docs#426), and a quota termination may come
  as 1002 "This request exceeds your quota limit." (elevenlabs/packages#911): the reason
  decides, and a close without one is transient.

Bare tokens, bare statuses and close codes are only trusted when the model label (or the
request host) says ElevenLabs; the ``detail`` body and the STT message are ElevenLabs' own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "elevenlabs"

_BY_STATUS: Mapping[str, Category] = {
    "quota_exceeded": Category.QUOTA_EXHAUSTED,
    "invalid_api_key": Category.AUTH,
    "auth_error": Category.AUTH,
    "missing_permissions": Category.PERMISSION,
    # Free-tier abuse protection: the account stays blocked until it upgrades.
    "detected_unusual_activity": Category.PERMISSION,
    "too_many_concurrent_requests": Category.RATE_LIMITED,
    "system_busy": Category.OVERLOADED,
}
_HINTS: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: (
        "ElevenLabs quota exceeded (no credits left): upgrade the plan or enable usage-based "
        "billing; retrying will not help."
    ),
    Category.AUTH: "ElevenLabs rejected the API key: check ELEVEN_API_KEY.",
    Category.PERMISSION: "ElevenLabs refused this key or account (permissions, unusual activity).",
    Category.RATE_LIMITED: "ElevenLabs concurrency limit of the plan reached: queue requests.",
    Category.OVERLOADED: "ElevenLabs is busy (system_busy): back off and retry.",
}
_AMBIGUOUS_401 = (
    "ElevenLabs answered 401 without a body (livekit's HTTP TTS drops it): either the API "
    "key is invalid or the character quota is exhausted."
)
_STT_MESSAGE = re.compile(r"ElevenLabs STT error \[([a-z_]+)\]")
_CLOSED = (
    "ElevenLabs closed the websocket ({code}) for a reason that is not about quota or the "
    "key (e.g. too many open contexts, an input timeout): reconnecting helps."
)
_QUOTA_REASON = ("quota", "credits")
_AUTH_REASON = ("api key", "api_key", "unauthorized", "authentication")


def _closed(facts: ErrorFacts, code: int) -> Verdict:
    reason = (facts.close_reason or "").lower()
    if any(word in reason for word in _QUOTA_REASON):
        quota = QuotaInfo(quota_type=facts.kind.value, category=f"close_{code}")
        return facts.verdict(
            Category.QUOTA_EXHAUSTED,
            provider=PROVIDER,
            hint=_HINTS[Category.QUOTA_EXHAUSTED],
            quota=quota,
        )
    if any(word in reason for word in _AUTH_REASON):
        return facts.verdict(Category.AUTH, provider=PROVIDER, hint=_HINTS[Category.AUTH])
    return facts.verdict(Category.CONNECTION, provider=PROVIDER, hint=_CLOSED.format(code=code))


def _is_elevenlabs(facts: ErrorFacts) -> bool:
    if "elevenlabs" in (facts.label or "").lower():
        return True
    for exc in facts.chain:
        url = getattr(getattr(exc, "request_info", None), "real_url", None)
        if "elevenlabs.io" in str(getattr(url, "host", "") or ""):
            return True
    return False


def _statuses(facts: ErrorFacts, trusted: bool) -> Iterator[str]:
    for body in (facts.body, *(getattr(exc, "body", None) for exc in facts.chain)):
        detail = body.get("detail") if isinstance(body, Mapping) else None
        if isinstance(detail, Mapping) and isinstance(detail.get("status"), str):
            yield detail["status"]
    for exc in facts.chain:
        message = getattr(exc, "message", None)
        if not isinstance(message, str):
            continue
        if match := _STT_MESSAGE.search(message):
            yield match.group(1)
        elif trusted and message in _BY_STATUS:
            # A websocket error frame's bare token, e.g. APIError("quota_exceeded").
            yield message


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify an ElevenLabs error; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for the statuses above, ``AUTH`` (with a two-cause hint) for a bodiless
        ElevenLabs 401, a websocket close by its reason (quota, key, else transient
        ``CONNECTION``), else ``None``.
    """
    trusted = _is_elevenlabs(facts)
    for status in _statuses(facts, trusted):
        category = _BY_STATUS.get(status)
        if category is None:
            continue
        quota = None
        if category is Category.QUOTA_EXHAUSTED:
            quota = QuotaInfo(quota_type=facts.kind.value, category=status)
        elif category is Category.RATE_LIMITED:
            quota = QuotaInfo(category=status)
        return facts.verdict(category, provider=PROVIDER, hint=_HINTS[category], quota=quota)
    if trusted and facts.status_code == 401 and not isinstance(facts.body, Mapping):
        return facts.verdict(Category.AUTH, provider=PROVIDER, hint=_AMBIGUOUS_401)
    if trusted and facts.close_code is not None:
        return _closed(facts, facts.close_code)
    return None


#: For an explicit chain (the default one finds this plugin by itself).
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
