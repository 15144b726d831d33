"""Recognise Cartesia errors: websocket error events, and statuses from HTTP/handshakes.

Cartesia documents one error object (``error_code``, ``title``, ``message``, and on
websockets ``status_code``), but livekit-plugins-cartesia 1.8.9 keeps little of it:

* TTS websocket error events become ``APIError(f"Cartesia returned error: {data}")``
  (``tts.py``): the event dict survives only as its ``repr`` in the message,
  which this classifier reads back with :func:`ast.literal_eval` (literals only);
* HTTP (``/tts/bytes``) and handshake failures become
  ``APIStatusError(message=e.message, status_code=e.status, body=None) from None``
  (``tts.py``): the status is all there is;
* STT error events below 500 are logged and dropped (``auto_finalize_recognize_stream.py:
  520-526``), so an STT quota failure never becomes an error event at all.

Decision: a Cartesia **402** is read as exhausted credits (``QUOTA_EXHAUSTED``,
terminal) rather than the generic ``PAYMENT_REQUIRED``; both close the session, this
one with a hint that names credits. ``concurrency_limited``/429 is a rate limit.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "cartesia"

_WS_PREFIX = "Cartesia returned error: "
_MAX_EVENT_REPR = 4096
_HINTS: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: "Cartesia credits are used up (402): upgrade or add credits.",
    Category.RATE_LIMITED: "Cartesia concurrency/rate limit of the plan reached: back off.",
}


def _is_cartesia(facts: ErrorFacts) -> bool:
    if "cartesia" in (facts.label or "").lower():
        return True
    for exc in facts.chain:
        url = getattr(getattr(exc, "request_info", None), "real_url", None)
        if "cartesia.ai" in str(getattr(url, "host", "") or ""):
            return True
    return False


def _ws_event(facts: ErrorFacts) -> Mapping[str, Any] | None:
    for exc in facts.chain:
        message = getattr(exc, "message", None)
        if not isinstance(message, str) or not message.startswith(_WS_PREFIX):
            continue
        text = message[len(_WS_PREFIX) :]
        if len(text) > _MAX_EVENT_REPR:
            return None
        try:
            event = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        return event if isinstance(event, dict) else None
    return None


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify a Cartesia failure; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        ``QUOTA_EXHAUSTED`` for a 402, ``RATE_LIMITED`` for ``concurrency_limited``/429,
        else ``None`` (401/403/5xx are left to the generic rules).
    """
    event = _ws_event(facts)
    if event is None and not _is_cartesia(facts):
        return None
    status: object = facts.status_code
    error_code: object = None
    if event is not None:
        status, error_code = event.get("status_code"), event.get("error_code")
    if status == 402:
        category = Category.QUOTA_EXHAUSTED
        quota = QuotaInfo(
            quota_type=facts.kind.value,
            category=error_code if isinstance(error_code, str) else "payment_required",
        )
    elif status == 429 or error_code == "concurrency_limited":
        category = Category.RATE_LIMITED
        quota = QuotaInfo(category=error_code if isinstance(error_code, str) else None)
    else:
        return None
    return facts.verdict(category, provider=PROVIDER, hint=_HINTS[category], quota=quota)


#: For an explicit chain (the default one finds this plugin by itself).
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
