"""The kit for classifier authors: table-driven provider fixtures, verdict checks, totality.

Every provider classifier tests the same things: each documented provider failure (a
:class:`ProviderFixture`) classifies as expected without leaking the API key; the
classifier answers a Verdict or ``None`` whatever it is given; and, for LLM plugins, the
real livekit plugin, answered the fixture by a local stand-in (:class:`FixtureServer`),
raises what the fixture reconstructs. Build the fixtures' errors with the builders of
:mod:`agent_guard.testing` (``raised``, ``openai_status_error``, ...).
"""

from __future__ import annotations

from agent_guard.testing._plugin_kit import (
    SECRET_FRAGMENT,
    FixtureServer,
    ProviderFixture,
    assert_fixture_verdict,
    assert_llm_error_verdict,
    assert_verdict_matches,
    check_classifier_is_total,
    error_bodies,
)

__all__ = [
    "SECRET_FRAGMENT",
    "FixtureServer",
    "ProviderFixture",
    "assert_fixture_verdict",
    "assert_llm_error_verdict",
    "assert_verdict_matches",
    "check_classifier_is_total",
    "error_bodies",
]
