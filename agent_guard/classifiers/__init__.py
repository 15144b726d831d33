"""What classifier authors need: the facts, the Verdict builder and the built-in rules.

A classifier is a plain, synchronous, total function ``(ErrorFacts) -> Verdict | None``.
Classifiers run in order and the first Verdict wins; :func:`http_rules` always runs last.
Build Verdicts with :meth:`ErrorFacts.verdict`, which fills the category's defaults and
redacts the detail::

    from agent_guard import Category
    from agent_guard.classifiers import ErrorFacts

    def acme(facts: ErrorFacts) -> Verdict | None:
        if facts.status_code == 402 and "acme" in facts.message:
            return facts.verdict(Category.PAYMENT_REQUIRED, provider="acme")
        return None
"""

from __future__ import annotations

from agent_guard._facts import Classifier, ErrorFacts, facts_from
from agent_guard._redact import redact, sanitize_hint
from agent_guard._verdict import PUBLIC_MESSAGES, TERMINAL_CATEGORIES, QuotaInfo
from agent_guard.classifiers._carried import carried_verdict
from agent_guard.classifiers._gateway import TERMINAL_QUOTA_CATEGORIES, livekit_gateway
from agent_guard.classifiers._http import http_rules, parse_retry_after, provider_from_label

__all__ = [
    "DEFAULT_CLASSIFIERS",
    "PUBLIC_MESSAGES",
    "TERMINAL_CATEGORIES",
    "TERMINAL_QUOTA_CATEGORIES",
    "Classifier",
    "ErrorFacts",
    "QuotaInfo",
    "carried_verdict",
    "facts_from",
    "http_rules",
    "livekit_gateway",
    "parse_retry_after",
    "provider_from_label",
    "redact",
    "sanitize_hint",
]

#: The core chain, provider-agnostic. Provider plugins go in front; the generic HTTP
#: rules always run last and need not be listed.
DEFAULT_CLASSIFIERS: tuple[Classifier, ...] = (carried_verdict, livekit_gateway)
