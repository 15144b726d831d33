"""agent_guard_deepgram: Deepgram failures, as livekit-plugins-deepgram raises them."""

from __future__ import annotations

import pytest
from agent_guard_deepgram import CLASSIFIERS
from agent_guard_deepgram import classify as classify_only
from deepgram_fixtures import API_KEY, FIXTURES, STT_LABEL, Fixture
from livekit.agents import APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented (or as the gap allows)."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="deepgram", secrets=[API_KEY])

    @pytest.mark.parametrize(
        ("code", "category"),
        [
            ("ASR_PAYMENT_REQUIRED", Category.QUOTA_EXHAUSTED),
            ("INVALID_AUTH", Category.AUTH),
            ("INSUFFICIENT_PERMISSIONS", Category.PERMISSION),
            ("TOO_MANY_REQUESTS", Category.RATE_LIMITED),
        ],
    )
    def test_err_code_body_wins_without_label(self, code: str, category: Category) -> None:
        """When a documented body does arrive, its err_code decides, label or not."""
        body = {"err_code": code, "err_msg": "x", "request_id": "uuid"}
        error = APIStatusError("x", status_code=400, body=body)
        verdict = classify(error, kind=Kind.STT, classifiers=CHAIN)
        assert verdict.category is category
        assert verdict.provider == "deepgram"


class TestDefers:
    def test_status_needs_deepgram(self) -> None:
        """A bodiless 402 from another model is the generic PAYMENT_REQUIRED."""
        error = APIStatusError("Payment Required", status_code=402)
        verdict = classify(error, kind=Kind.STT, classifiers=CHAIN, label="x.stt.STT")
        assert verdict.category is Category.PAYMENT_REQUIRED

    def test_server_errors_are_left_to_generic_rules(self) -> None:
        """A Deepgram 500 is not claimed."""
        error = APIStatusError("boom", status_code=500)
        verdict = classify(error, kind=Kind.STT, classifiers=CLASSIFIERS, label=STT_LABEL)
        assert verdict.category is Category.SERVER_ERROR
        assert verdict.hint is None or "Deepgram" not in verdict.hint


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(classify_only, kind=Kind.STT, label=STT_LABEL)
