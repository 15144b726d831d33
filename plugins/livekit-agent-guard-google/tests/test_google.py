"""agent_guard_google: every documented Gemini failure gets the right Verdict.

The errors are raised by the real ``google.genai`` SDK from an ``httpx2`` response and
wrapped exactly as livekit-plugins-google does (see ``fixtures``).
"""

from __future__ import annotations

import pytest
from agent_guard_google import CLASSIFIERS
from agent_guard_google import classify as classify_only
from google_fixtures import API_KEY, FIXTURES, LLM_LABEL, Fixture
from livekit.agents import APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.testing import raised
from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def wrapped(code: int, details: object) -> APIStatusError:
    """A genai error *without* a response (as on websockets), wrapped like livekit does."""
    from google.genai import errors  # here: the SDK costs every test worker at collection

    e = errors.ClientError(code, details, None)
    lk = APIStatusError(
        "gemini llm: client error", status_code=e.code, body=f"{e.message} {e.status}"
    )
    return raised(lk, cause=e)


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The SDK-raised, livekit-wrapped exception classifies as documented."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="google", secrets=[API_KEY])

    def test_livekit_body_is_only_a_string(self) -> None:
        """livekit keeps just "message status"; the JSON survives on the genai cause."""
        from google.genai import errors

        error = FIXTURES[0].error()
        assert isinstance(error, APIStatusError)
        assert isinstance(error.body, str) and error.body.endswith("RESOURCE_EXHAUSTED")
        assert isinstance(error.__cause__, errors.ClientError)

    def test_per_minute_reads_retry_delay(self) -> None:
        """RetryInfo.retryDelay ("17s") becomes retry_after."""
        (fx,) = [f for f in FIXTURES if f.id == "per_minute_quota"]
        verdict = assert_fixture_verdict(fx, CLASSIFIERS, provider="google")
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


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(classify_only, kind=Kind.LLM, label=LLM_LABEL)
