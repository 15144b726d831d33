"""agent_guard_deepgram: Deepgram failures, as livekit-plugins-deepgram raises them."""

from __future__ import annotations

import pytest
from agent_guard_deepgram import CLASSIFIERS
from agent_guard_deepgram import classify as classify_only
from agent_guard_deepgram.fixtures import API_KEY, FIXTURES, STT_LABEL, Fixture
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "deepgram"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented (or as the gap allows)."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

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
    facts = facts_from(error, kind=Kind.STT, label=STT_LABEL)
    verdict = classify_only(facts)
    assert verdict is None or isinstance(verdict, Verdict)
