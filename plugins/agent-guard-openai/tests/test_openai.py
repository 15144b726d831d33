"""agent_guard_openai: every documented OpenAI failure gets the right Verdict.

Each fixture is checked twice: as ``fixtures.build()`` reconstructs livekit's exception,
and (HTTP ones) as the real ``livekit.plugins.openai.LLM`` raises it against a local
server, so the reconstruction cannot drift from what the plugin does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from agent_guard_openai import CLASSIFIERS
from agent_guard_openai import classify as classify_only
from agent_guard_openai.fixtures import API_KEY, FIXTURES, LLM_LABEL, Fixture
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIConnectOptions, APIError, APIStatusError
from livekit.agents.llm import ChatContext, LLMError, LLMStream
from livekit.plugins import openai

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
HTTP_FIXTURES = [fx for fx in FIXTURES if fx.status is not None]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "openai"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text
        assert API_KEY[-12:] not in text
    if fx.expected is Category.QUOTA_EXHAUSTED:
        assert verdict.quota is not None
        assert verdict.quota.quota_type == fx.kind.value


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=[fx.id for fx in FIXTURES])
    def test_verdict(self, fx: Fixture) -> None:
        """The reconstructed livekit exception classifies as documented."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

    def test_rate_limit_reads_retry_after(self) -> None:
        """A rate limit carries the Retry-After the SDK response had."""
        (fx,) = [f for f in FIXTURES if f.id == "rate_limit_exceeded"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
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
        assert classify_only(facts_from(error, kind=Kind.LLM, label=LLM_LABEL)) is None

    def test_bare_429_stays_rate_limited(self) -> None:
        """Without a code, a 429 is a rate limit (generic rules), never a quota."""
        error = APIStatusError("Error code: 429", status_code=429, body=None)
        verdict = classify(error, kind=Kind.LLM, classifiers=CHAIN, label=LLM_LABEL)
        assert verdict.category is Category.RATE_LIMITED
        assert verdict.terminal is False


async def drain(stream: LLMStream) -> None:
    """Consume a chat stream to its end (or its error)."""
    async with stream:
        async for _ in stream:
            pass


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[Fixture]]]:
    """A local OpenAI stand-in answering the queued fixture's status, body and headers."""
    queue: list[Fixture] = []

    async def completions(request: web.Request) -> web.Response:
        fx = queue.pop(0)
        assert fx.status is not None
        return web.json_response(fx.body, status=fx.status, headers=dict(fx.headers))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", queue
    finally:
        await runner.cleanup()


class TestRealPlugin:
    @pytest.mark.parametrize("fx", HTTP_FIXTURES, ids=[fx.id for fx in HTTP_FIXTURES])
    async def test_livekit_openai_llm(self, fx: Fixture, server: tuple[str, list[Fixture]]) -> None:
        """The error the real plugin emits classifies like the reconstruction."""
        base_url, queue = server
        queue.append(fx)
        llm = openai.LLM(model="gpt-4o-mini", base_url=base_url, api_key=API_KEY)
        verdicts: list[Verdict] = []

        def on_error(ev: LLMError) -> None:
            # Classify inside the emit, as the guard's hook does: once the stream re-raises
            # the error (LLMStream.__anext__), Python replaces its __context__ and the
            # SDK error holding the response headers is gone.
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
    facts = facts_from(error, kind=Kind.LLM, label=LLM_LABEL)
    verdict = classify_only(facts)
    assert verdict is None or isinstance(verdict, Verdict)
