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
from agent_guard_anthropic.fixtures import API_KEY, FIXTURES, LABEL, Fixture, sse_payload
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIConnectOptions, APIError, APIStatusError
from livekit.agents.llm import ChatContext, LLMError, LLMStream
from livekit.plugins import anthropic

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "anthropic"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text
        assert API_KEY[14:40] not in text
    if fx.expected is Category.QUOTA_EXHAUSTED:
        assert verdict.quota is not None and verdict.quota.quota_type == "llm"


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The reconstructed livekit exception classifies as documented."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

    def test_spend_cap_is_not_a_rate_limit(self) -> None:
        """A 429 rate_limit_error naming enforced_spend_limit_reached is terminal quota."""
        (fx,) = [f for f in FIXTURES if f.id == "enforced_spend_limit_reached"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
        assert verdict.quota is not None
        assert verdict.quota.category == "enforced_spend_limit_reached"

    def test_rate_limit_reads_retry_after(self) -> None:
        """A plain rate limit carries the retry-after header."""
        (fx,) = [f for f in FIXTURES if f.id == "rate_limit_error"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
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


async def drain(stream: LLMStream) -> None:
    """Consume a chat stream to its end (or its error)."""
    async with stream:
        async for _ in stream:
            pass


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[Fixture]]]:
    """A local Messages API stand-in answering the queued fixture."""
    queue: list[Fixture] = []

    async def messages(request: web.Request) -> web.StreamResponse:
        fx = queue.pop(0)
        if not fx.sse:
            return web.json_response(fx.body, status=fx.status, headers=dict(fx.headers))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(sse_payload(fx))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", queue
    finally:
        await runner.cleanup()


class TestRealPlugin:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    async def test_livekit_anthropic_llm(
        self, fx: Fixture, server: tuple[str, list[Fixture]]
    ) -> None:
        """The error the real plugin emits classifies like the reconstruction."""
        base_url, queue = server
        queue.append(fx)
        llm = anthropic.LLM(model="claude-haiku-4-5", base_url=base_url, api_key=API_KEY)
        verdicts: list[Verdict] = []

        def on_error(ev: LLMError) -> None:
            # Classify inside the emit, as the guard's hook does.
            assert ev.label == fx.label
            verdicts.append(classify(ev.error, kind=fx.kind, classifiers=CHAIN, label=ev.label))

        llm.on("error", on_error)
        ctx = ChatContext()
        ctx.add_message(role="user", content="hello")
        with pytest.raises(APIStatusError):
            await drain(llm.chat(chat_ctx=ctx, conn_options=APIConnectOptions(max_retry=0)))
        await llm.aclose()
        (verdict,) = verdicts
        check(fx, verdict)
        rebuilt = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
        assert (verdict.category, verdict.quota) == (rebuilt.category, rebuilt.quota)


# Keys the classifiers look for, so generated bodies reach their branches.
_KEYS = st.sampled_from(
    [
        "error",
        "type",
        "code",
        "status",
        "message",
        "details",
        "detail",
        "err_code",
        "violations",
        "quotaId",
        "@type",
        "retryDelay",
        "status_code",
        "error_code",
    ]
) | st.text(max_size=8)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=24),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=24,
)


@settings(max_examples=150, deadline=None)
@given(
    body=_JSON,
    message=st.text(max_size=40),
    status=st.sampled_from([-1, 200, 400, 401, 402, 403, 429, 499, 500, 503, 529]),
    cause=st.booleans(),
)
def test_classifier_is_total(body: object, message: str, status: int, cause: bool) -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    error = APIStatusError(message, status_code=status, body=body)
    if cause:
        error.__cause__ = APIError(message, body=body)
    facts = facts_from(error, kind=Kind.LLM, label=LABEL)
    verdict = classify_only(facts)
    assert verdict is None or isinstance(verdict, Verdict)
