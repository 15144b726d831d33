"""Recognise Deepgram failures: ``{"err_code", "err_msg"}`` bodies, or Deepgram's statuses.

Deepgram documents ``402 ASR_PAYMENT_REQUIRED`` (out of credits, no overage),
``401 INVALID_AUTH``, ``401/403 INSUFFICIENT_PERMISSIONS`` and ``429 TOO_MANY_REQUESTS``
(https://developers.deepgram.com/docs/errors). livekit-plugins-deepgram 1.8.9 keeps none
of the bodies: websocket handshakes and HTTP TTS raise
``APIStatusError(message=e.message, status_code=e.status, body=None) from None``
(``stt.py``, ``tts.py``), so for Deepgram's models the status decides.
The ``err_code`` is still honoured when a body does arrive (another client, a proxy).

A refused listen/speak websocket handshake keeps no body, but Deepgram puts the reason in
a ``dg-error`` response header (its own examples print ``e.headers.get("dg-error")``,
deepgram-devs/BackgroundFiltering ``test.py``); livekit raises ``from None``, so the
aiohttp ``WSServerHandshakeError`` and its headers survive on ``__context__``, where the
core reads them. The reason joins the hint.

Known gap, upstream: the pre-recorded ``STT.recognize`` never checks the HTTP status
(``stt.py``); a 402 body is parsed as a transcript and surfaces as
``APIConnectionError`` caused by ``KeyError('metadata')``. Nothing on that chain names
the failure, so it stays a generic connection error.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "deepgram"

_BY_CODE: Mapping[str, Category] = {
    "ASR_PAYMENT_REQUIRED": Category.QUOTA_EXHAUSTED,
    "INVALID_AUTH": Category.AUTH,
    "INSUFFICIENT_PERMISSIONS": Category.PERMISSION,
    "TOO_MANY_REQUESTS": Category.RATE_LIMITED,
}
_BY_STATUS: Mapping[int, Category] = {
    402: Category.QUOTA_EXHAUSTED,
    401: Category.AUTH,
    403: Category.PERMISSION,
    429: Category.RATE_LIMITED,
}
_HINTS: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: (
        "Deepgram project is out of credits (402 ASR_PAYMENT_REQUIRED): add credits or an "
        "overage agreement in the Deepgram console."
    ),
    Category.AUTH: "Deepgram rejected the API key (INVALID_AUTH): check DEEPGRAM_API_KEY.",
    Category.PERMISSION: "This Deepgram key lacks permission (e.g. for the requested model).",
    Category.RATE_LIMITED: "Deepgram rate/concurrency limit (429): back off.",
}


def _is_deepgram(facts: ErrorFacts) -> bool:
    if "deepgram" in (facts.label or "").lower():
        return True
    for exc in facts.chain:
        url = getattr(getattr(exc, "request_info", None), "real_url", None)
        if "deepgram.com" in str(getattr(url, "host", "") or ""):
            return True
    return False


def _err_code(facts: ErrorFacts) -> str | None:
    for body in (facts.body, *(getattr(exc, "body", None) for exc in facts.chain)):
        if isinstance(body, Mapping) and isinstance(body.get("err_code"), str):
            return str(body["err_code"])
    return None


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify a Deepgram failure; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for the documented ``err_code`` values, or for 401/402/403/429 from a
        Deepgram model; else ``None``.
    """
    code = _err_code(facts)
    category = _BY_CODE.get(code) if code is not None else None
    if category is None:
        if facts.status_code is None or not _is_deepgram(facts):
            return None
        category = _BY_STATUS.get(facts.status_code)
        if category is None:
            return None
    quota = None
    if category is Category.QUOTA_EXHAUSTED:
        quota = QuotaInfo(quota_type=facts.kind.value, category=code or "ASR_PAYMENT_REQUIRED")
    elif category is Category.RATE_LIMITED:
        quota = QuotaInfo(category=code)
    hint = _HINTS[category]
    if reason := facts.headers.get("dg-error"):
        # Provider text: ErrorFacts.verdict sanitises and bounds the hint.
        hint = f"{hint} Deepgram said: {reason}"
    return facts.verdict(category, provider=PROVIDER, hint=hint, quota=quota)


#: For an explicit chain (the default one finds this plugin by itself).
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
