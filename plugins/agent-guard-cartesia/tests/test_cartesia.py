"""agent_guard_cartesia: Cartesia failures, as livekit-plugins-cartesia raises them."""

from __future__ import annotations

import pytest
from agent_guard_cartesia import CLASSIFIERS
from agent_guard_cartesia import classify as classify_only
from agent_guard_cartesia.fixtures import API_KEY, FIXTURES, TTS_LABEL, Fixture
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "cartesia"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text
        assert API_KEY[7:30] not in text


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

    def test_ws_event_is_recovered_from_the_message(self) -> None:
        """The event dict livekit formats into the message is read back."""
        (fx,) = [f for f in FIXTURES if f.id == "ws_concurrency_limited"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=None)
        assert verdict.quota is not None and verdict.quota.category == "concurrency_limited"


class TestDefers:
    def test_402_needs_cartesia(self) -> None:
        """A bodiless 402 from another provider is the generic PAYMENT_REQUIRED."""
        error = APIStatusError("Payment Required", status_code=402)
        verdict = classify(error, kind=Kind.TTS, classifiers=CHAIN, label="x.tts.TTS")
        assert verdict.category is Category.PAYMENT_REQUIRED

    @pytest.mark.parametrize(
        "message",
        [
            "Cartesia returned error: __import__('os').system('true')",
            "Cartesia returned error: {'status_code': 402" + ", 'x': 1" * 2000 + "}",
            "Cartesia returned error: not a dict",
        ],
        ids=["code", "oversized", "garbage"],
    )
    def test_hostile_messages_are_not_evaluated(self, message: str) -> None:
        """Only bounded literals are parsed; anything else is left alone."""
        verdict = classify(APIError(message), kind=Kind.TTS, classifiers=CLASSIFIERS)
        assert verdict.category is not Category.QUOTA_EXHAUSTED


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
    # Half the messages take the websocket prefix, so literal_eval sees arbitrary text.
    message=st.text(max_size=40)
    | st.text(max_size=60).map(lambda text: "Cartesia returned error: {" + text),
    status=st.sampled_from([-1, 200, 400, 401, 402, 403, 429, 499, 500, 503, 529]),
    cause=st.booleans(),
)
def test_classifier_is_total(body: object, message: str, status: int, cause: bool) -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    error = APIStatusError(message, status_code=status, body=body)
    if cause:
        error.__cause__ = APIError(message, body=body)
    facts = facts_from(error, kind=Kind.TTS, label=TTS_LABEL)
    verdict = classify_only(facts)
    assert verdict is None or isinstance(verdict, Verdict)
