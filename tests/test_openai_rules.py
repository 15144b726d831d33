"""The core's OpenAI(-compatible) rules: every documented failure gets the right Verdict.

By default, with no ``classifiers=``: OpenAI and every OpenAI-compatible host are the
core's. Each fixture (``tests/openai_fixtures.py``) is checked twice: as its ``build``
reconstructs livekit's exception, and (HTTP ones) as the real ``livekit.plugins.openai.LLM``
raises it against a local server, so the reconstruction cannot drift from the plugin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit.agents import APIError, APIStatusError
from livekit.plugins import openai

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import facts_from, openai_rules
from agent_guard.testing.plugins import (
    FixtureServer,
    assert_fixture_verdict,
    assert_llm_error_verdict,
    check_classifier_is_total,
)
from tests.openai_fixtures import API_KEY, FIXTURES, LLM_LABEL, Fixture

#: Nothing in front of the default chain: the core alone must be right.
CLASSIFIERS = ()
HTTP_FIXTURES = [fx for fx in FIXTURES if fx.status is not None]
SECRETS = [API_KEY]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=[fx.id for fx in FIXTURES])
    def test_verdict(self, fx: Fixture) -> None:
        """The reconstructed livekit exception classifies as documented."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="openai", secrets=SECRETS)

    def test_rate_limit_reads_retry_after(self) -> None:
        """A rate limit carries the Retry-After the SDK response had."""
        (fx,) = [f for f in FIXTURES if f.id == "rate_limit_exceeded"]
        verdict = assert_fixture_verdict(fx, CLASSIFIERS, provider="openai")
        assert verdict.quota is not None and verdict.quota.retry_after == 20.0

    def test_realtime_body_is_a_model_not_a_dict(self) -> None:
        """livekit hands the realtime error over as the SDK's pydantic model."""
        (fx,) = [f for f in FIXTURES if f.id == "realtime_insufficient_quota"]
        error = fx.error()
        assert isinstance(error, APIError)
        assert not isinstance(error.body, dict)


class TestDefers:
    """Bodies that are not OpenAI's own are left to the core chain."""

    @pytest.mark.parametrize(
        "body",
        [
            # The LiveKit gateway's quota body: its "error" is a string, the core owns it.
            {
                "type": "inference_quota_exceeded",
                "error": "LLM token credit quota exceeded, category: MaxGatewayCredits",
            },
            {"error": {"message": "boom", "type": "server_error", "code": None}},
            {"detail": "Not Found"},
        ],
        ids=["livekit-gateway", "unknown-code", "foreign-shape"],
    )
    def test_returns_none(self, body: dict[str, Any]) -> None:
        """The OpenAI classifier answers None; the core chain decides."""
        error = APIStatusError("Error code: 429", status_code=429, body=body)
        assert openai_rules(facts_from(error, kind=Kind.LLM, label=LLM_LABEL)) is None

    def test_bare_429_stays_rate_limited(self) -> None:
        """Without a code, a 429 is a rate limit (generic rules), never a quota."""
        error = APIStatusError("Error code: 429", status_code=429, body=None)
        verdict = classify(error, kind=Kind.LLM, label=LLM_LABEL)
        assert verdict.category is Category.RATE_LIMITED
        assert verdict.terminal is False


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer[Fixture]]:
    """A local OpenAI stand-in answering the queued fixture's status, body and headers."""
    async with FixtureServer[Fixture]("/v1/chat/completions") as server:
        yield server


class TestRealPlugin:
    @pytest.mark.parametrize("fx", HTTP_FIXTURES, ids=[fx.id for fx in HTTP_FIXTURES])
    async def test_livekit_openai_llm(self, fx: Fixture, server: FixtureServer[Fixture]) -> None:
        """The error the real plugin emits classifies like the reconstruction."""
        server.queue(fx)
        llm = openai.LLM(model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key=API_KEY)
        try:
            await assert_llm_error_verdict(llm, fx, CLASSIFIERS, provider="openai", secrets=SECRETS)
        finally:
            await llm.aclose()


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(openai_rules, kind=Kind.LLM, label=LLM_LABEL)
