"""agent_guard_cartesia: Cartesia failures, as livekit-plugins-cartesia raises them."""

from __future__ import annotations

import pytest
from agent_guard_cartesia import CLASSIFIERS
from agent_guard_cartesia import classify as classify_only
from cartesia_fixtures import API_KEY, FIXTURES, TTS_LABEL, Fixture
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="cartesia", secrets=[API_KEY])

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


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    # Half the messages take the websocket prefix, so literal_eval sees arbitrary text.
    messages = st.text(max_size=40) | st.text(max_size=60).map(
        lambda text: "Cartesia returned error: {" + text
    )
    check_classifier_is_total(classify_only, kind=Kind.TTS, label=TTS_LABEL, messages=messages)
