"""agent_guard_google: every documented Gemini failure gets the right Verdict.

The errors are raised by the real ``google.genai`` SDK from an ``httpx2`` response and
wrapped exactly as livekit-plugins-google does (see ``fixtures``).
"""

from __future__ import annotations

import pytest
from agent_guard_google import CLASSIFIERS
from agent_guard_google import classify as classify_only
from agent_guard_google.fixtures import API_KEY, FIXTURES, LLM_LABEL, Fixture
from google.genai import errors
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "google"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    assert verdict.kind is fx.kind
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text
        assert API_KEY[4:20] not in text


def wrapped(code: int, details: object) -> APIStatusError:
    """A genai error *without* a response (as on websockets), wrapped like livekit does."""
    try:
        raise errors.ClientError(code, details, None)
    except errors.ClientError as e:
        try:
            raise APIStatusError(
                "gemini llm: client error", status_code=e.code, body=f"{e.message} {e.status}"
            ) from e
        except APIStatusError as lk:
            return lk


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The SDK-raised, livekit-wrapped exception classifies as documented."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

    def test_livekit_body_is_only_a_string(self) -> None:
        """livekit keeps just "message status"; the JSON survives on the genai cause."""
        error = FIXTURES[0].error()
        assert isinstance(error, APIStatusError)
        assert isinstance(error.body, str) and error.body.endswith("RESOURCE_EXHAUSTED")
        assert isinstance(error.__cause__, errors.ClientError)

    def test_per_minute_reads_retry_delay(self) -> None:
        """RetryInfo.retryDelay ("17s") becomes retry_after."""
        (fx,) = [f for f in FIXTURES if f.id == "per_minute_quota"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
        assert verdict.quota is not None and verdict.quota.retry_after == 17.0

    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_details_without_response(self, fx: Fixture) -> None:
        """Without an HTTP response the classifier reads the genai error's ``.details``."""
        verdict = classify(
            wrapped(fx.status, fx.body), kind=Kind.LLM, classifiers=CHAIN, label=LLM_LABEL
        )
        assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)


class TestDefers:
    def test_internal_error_is_left_to_generic_rules(self) -> None:
        """500 INTERNAL is a plain server error: not claimed."""
        body = {"error": {"code": 500, "message": "Internal error.", "status": "INTERNAL"}}
        verdict = classify(wrapped(500, body), kind=Kind.LLM, classifiers=CLASSIFIERS)
        assert verdict.category is Category.SERVER_ERROR
        assert verdict.hint is None or "Gemini" not in verdict.hint

    def test_other_invalid_argument_stays_bad_request(self) -> None:
        """A 400 that is not about the key is not AUTH."""
        body = {"error": {"code": 400, "message": "Bad field.", "status": "INVALID_ARGUMENT"}}
        verdict = classify(wrapped(400, body), kind=Kind.LLM, classifiers=CHAIN)
        assert verdict.category is Category.BAD_REQUEST

    def test_openai_shape_is_not_google(self) -> None:
        """An OpenAI-shaped body (no gRPC status) is not claimed."""
        body = {
            "error": {"message": "x", "type": "insufficient_quota", "code": "insufficient_quota"}
        }
        error = APIStatusError("Error code: 429", status_code=429, body=body)
        verdict = classify(error, kind=Kind.LLM, classifiers=CLASSIFIERS)
        assert verdict.provider != "google"


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
