"""Recognise AssemblyAI streaming refusals: websocket close codes and their reasons.

livekit-plugins-assemblyai 1.8.9 raises an unexpected close as
``APIStatusError("AssemblyAI connection closed unexpectedly", status_code=ws.close_code,
body=f"{msg.data=} {msg.extra=}")`` (``stt.py``, ``recv_task``): the close code stands in
the status and the reason survives in the body's repr, which the core reads into
:attr:`ErrorFacts.close_code` and :attr:`ErrorFacts.close_reason`.

AssemblyAI documents two generations of codes:

* streaming v2 (https://www.assemblyai.com/docs/api-reference/streaming): 4001 "Not
  Authorized", **4002 "Insufficient Funds"**, 4003 free-tier account (paid feature),
  4029 audio sent too fast, 4102 too many streams;
* universal streaming v3 (``common-session-errors-and-closures``): **1008** "Unauthorized
  Connection: <reason>" for a missing or invalid key, too many concurrent sessions, and
  account issues (insufficient balance): only the reason tells them apart. 3005/3008
  (session cancelled/expired) are transient.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_guard._verdict import Category, QuotaInfo, Verdict
from agent_guard.classifiers import Classifier, ErrorFacts

__all__ = ["CLASSIFIERS", "classify"]

PROVIDER = "assemblyai"

_BY_CODE: Mapping[int, Category] = {
    4001: Category.AUTH,
    4002: Category.QUOTA_EXHAUSTED,
    4003: Category.PAYMENT_REQUIRED,
    4029: Category.RATE_LIMITED,
    4102: Category.RATE_LIMITED,
    3005: Category.SERVER_ERROR,
    3008: Category.CONNECTION,
    3009: Category.RATE_LIMITED,
}
# 1008 reasons, lower-cased, checked in order.
_BY_REASON: tuple[tuple[str, Category], ...] = (
    ("concurren", Category.RATE_LIMITED),
    ("balance", Category.QUOTA_EXHAUSTED),
    ("funds", Category.QUOTA_EXHAUSTED),
    ("credit", Category.QUOTA_EXHAUSTED),
    ("authorization", Category.AUTH),
    ("api key", Category.AUTH),
    ("token", Category.AUTH),
    ("not authorized", Category.AUTH),
)
_HINTS: Mapping[Category, str] = {
    Category.QUOTA_EXHAUSTED: (
        "AssemblyAI account balance is insufficient: add funds in the AssemblyAI dashboard."
    ),
    Category.AUTH: "AssemblyAI rejected the API key: check ASSEMBLYAI_API_KEY.",
    Category.PAYMENT_REQUIRED: (
        "AssemblyAI streaming is paid-only: add a card to the AssemblyAI account."
    ),
    Category.RATE_LIMITED: "AssemblyAI concurrency or audio-rate limit reached: back off.",
    Category.SERVER_ERROR: "AssemblyAI cancelled the session (server error): retry.",
    Category.CONNECTION: "The AssemblyAI session expired: reconnect.",
    Category.PERMISSION: (
        "AssemblyAI refused the connection for an account reason: check the account."
    ),
}


def _category(code: int, reason: str) -> Category | None:
    if code == 1008:
        lowered = reason.lower()
        for needle, category in _BY_REASON:
            if needle in lowered:
                return category
        # "Unauthorized Connection: <an account reason we do not know>": the key and the
        # account are refused until someone acts on them.
        return Category.PERMISSION if "unauthorized" in lowered else None
    return _BY_CODE.get(code)


def classify(facts: ErrorFacts) -> Verdict | None:
    """Classify an AssemblyAI streaming close; ``None`` for anything else.

    Args:
        facts: What the core recovered from the error and its chain.

    Returns:
        A Verdict for the close codes above (1008 by its reason), else ``None``.
    """
    code = facts.close_code
    if code is None:
        return None
    category = _category(code, facts.close_reason or "")
    if category is None:
        return None
    quota = None
    if category is Category.QUOTA_EXHAUSTED:
        quota = QuotaInfo(quota_type=facts.kind.value, category=f"close_{code}")
    elif category is Category.RATE_LIMITED:
        quota = QuotaInfo(category=f"close_{code}")
    return facts.verdict(category, provider=PROVIDER, hint=_HINTS[category], quota=quota)


#: For an explicit chain: ``(*agent_guard_assemblyai.CLASSIFIERS, *DEFAULT_CLASSIFIERS)``.
CLASSIFIERS: tuple[Classifier, ...] = (classify,)
