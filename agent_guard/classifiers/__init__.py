"""What classifier authors need: the facts, the Verdict builder and the built-in rules.

A classifier is a plain, synchronous, total function ``(ErrorFacts) -> Verdict | None``.
Classifiers run in order and the first Verdict wins; :func:`http_rules` always runs last.
The default chain, :data:`DEFAULT_CLASSIFIERS`, is ``(carried_verdict, by_provider)``:
:func:`by_provider` runs the failing provider's installed classifier (discovered through
the ``agent_guard.classifiers`` entry points), then the core's LiveKit gateway and
OpenAI-compatible rules. Build Verdicts with :meth:`ErrorFacts.verdict`, which fills the
category's defaults and redacts the detail::

    from agent_guard import Category
    from agent_guard.classifiers import ErrorFacts

    def acme(facts: ErrorFacts) -> Verdict | None:
        if facts.status_code == 402 and "acme" in facts.message:
            return facts.verdict(Category.PAYMENT_REQUIRED, provider="acme")
        return None
"""

from __future__ import annotations

from agent_guard._facts import Classifier, ErrorFacts, facts_from, provider_from_label
from agent_guard._redact import redact, sanitize_hint
from agent_guard._verdict import PUBLIC_MESSAGES, TERMINAL_CATEGORIES, QuotaInfo
from agent_guard.classifiers._carried import carried_verdict
from agent_guard.classifiers._gateway import TERMINAL_QUOTA_CATEGORIES, livekit_gateway
from agent_guard.classifiers._http import http_rules, parse_retry_after, retry_delay
from agent_guard.classifiers._openai import openai_rules
from agent_guard.classifiers._providers import (
    DISTRIBUTIONS,
    ENTRY_POINT_GROUP,
    by_provider,
    installed_providers,
)

__all__ = [
    "DEFAULT_CLASSIFIERS",
    "DISTRIBUTIONS",
    "ENTRY_POINT_GROUP",
    "PUBLIC_MESSAGES",
    "TERMINAL_CATEGORIES",
    "TERMINAL_QUOTA_CATEGORIES",
    "Classifier",
    "ErrorFacts",
    "QuotaInfo",
    "by_provider",
    "carried_verdict",
    "facts_from",
    "http_rules",
    "installed_providers",
    "livekit_gateway",
    "openai_rules",
    "parse_retry_after",
    "provider_from_label",
    "redact",
    "retry_delay",
    "sanitize_hint",
]

#: The default chain: a verdict an error carries (a guarded fallback round), then the
#: failing provider's classifier and the core's provider rules. Put your own classifiers
#: in front (``(mine, *DEFAULT_CLASSIFIERS)``); the generic HTTP rules always run last and
#: need not be listed.
DEFAULT_CLASSIFIERS: tuple[Classifier, ...] = (carried_verdict, by_provider)
