"""agent_guard_anthropic: every documented Anthropic failure gets the right Verdict.

Each fixture is checked as ``fixtures.build()`` reconstructs livekit's exception, and as
the real ``livekit.plugins.anthropic.LLM`` raises it against a local server (mid-stream
SSE errors included), so the reconstruction cannot drift from what the plugin does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from agent_guard_anthropic import CLASSIFIERS
from agent_guard_anthropic import classify as classify_only
from aiohttp import web
from anthropic_fixtures import API_KEY, FIXTURES, LABEL, Fixture, sse_payload
from livekit.agents import APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, facts_from
from agent_guard.testing.plugins import (
    FixtureServer,
    assert_fixture_verdict,
    assert_llm_error_verdict,
    check_classifier_is_total,
)

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]
SECRETS = [API_KEY]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The reconstructed livekit exception classifies as documented."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="anthropic", secrets=SECRETS)

    def test_spend_cap_is_not_a_rate_limit(self) -> None:
        """A 429 rate_limit_error naming enforced_spend_limit_reached is terminal quota."""
        (fx,) = [f for f in FIXTURES if f.id == "enforced_spend_limit_reached"]
        verdict = assert_fixture_verdict(fx, CLASSIFIERS, provider="anthropic")
        assert verdict.quota is not None
        assert verdict.quota.category == "enforced_spend_limit_reached"

    def test_rate_limit_reads_retry_after(self) -> None:
        """A plain rate limit carries the retry-after header."""
        (fx,) = [f for f in FIXTURES if f.id == "rate_limit_error"]
        verdict = assert_fixture_verdict(fx, CLASSIFIERS, provider="anthropic")
        assert verdict.quota is not None and verdict.quota.retry_after == 7.0


class TestDefers:
    def test_other_invalid_request_is_left_to_generic_rules(self) -> None:
        """A 400 that is not about money stays a (non-terminal) bad request."""
        body = {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        }
        error = APIStatusError("Error code: 400", status_code=400, body=body)
        verdict = classify(error, kind=Kind.LLM, classifiers=CHAIN, label=LABEL)
        assert verdict.category is Category.BAD_REQUEST
        assert verdict.terminal is False

    def test_openai_shape_is_not_anthropic(self) -> None:
        """An OpenAI-shaped body is not claimed."""
        body = {"error": {"type": "rate_limit_error", "message": "x", "code": None}}
        error = APIStatusError("Error code: 429", status_code=429, body=body)
        assert classify_only(facts_from(error, kind=Kind.LLM, label=LABEL)) is None


async def answer(request: web.Request, fx: Fixture) -> web.StreamResponse:
    """The fixture as the Messages API sends it: a JSON error, or an SSE error event."""
    if not fx.sse:
        return web.json_response(fx.body, status=fx.status, headers=dict(fx.headers))
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(sse_payload(fx))
    await response.write_eof()
    return response


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer[Fixture]]:
    """A local Messages API stand-in answering the queued fixture."""
    async with FixtureServer("/v1/messages", respond=answer) as server:
        yield server


class TestRealPlugin:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    async def test_livekit_anthropic_llm(self, fx: Fixture, server: FixtureServer[Fixture]) -> None:
        """The error the real plugin emits classifies like the reconstruction."""
        # Imported here: the SDK costs every test worker a second and a half at collection.
        from livekit.plugins import anthropic

        server.queue(fx)
        llm = anthropic.LLM(model="claude-haiku-4-5", base_url=server.url, api_key=API_KEY)
        try:
            await assert_llm_error_verdict(
                llm, fx, CLASSIFIERS, provider="anthropic", secrets=SECRETS
            )
        finally:
            await llm.aclose()


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(classify_only, kind=Kind.LLM, label=LABEL)
