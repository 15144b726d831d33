"""The LiveKit Inference gateway classifier, fed errors built the way production builds them.

LLM errors go through the real OpenAI SDK (``_make_status_error_from_response``, which
narrows ``body`` to the bare ``"error"`` string) and are wrapped exactly as
``livekit/agents/inference/llm.py`` ``_run`` wraps them (``raise ... from None``), so the
full body survives only on ``__context__``. Websocket errors are built as
``livekit/agents/inference/stt.py`` and ``tts.py`` raise them.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx2
import openai
import pytest
from livekit.agents import APIError, APIStatusError

from agent_guard import Category, Kind, Verdict, classify
from agent_guard.classifiers import facts_from
from agent_guard.classifiers._gateway import TERMINAL_QUOTA_CATEGORIES, livekit_gateway
from agent_guard.classifiers._http import parse_retry_after
from agent_guard.testing import gateway_quota_body as gateway_body
from agent_guard.testing import openai_status_error, ws_handshake_error

LABEL = "livekit.agents.inference.llm.LLM"
REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
SECRET = "sk-proj-TESTSECRET0123456789abcdefABCDEF"
CREDITS_HEADERS = {
    "X-LiveKit-Inference-Credits-Limit": "1000",
    "X-LiveKit-Inference-Credits-Used": "1000",
    "x-request-id": "req_fake_429",
}


def llm_error(
    status: int,
    *,
    json_body: object = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> APIStatusError:
    """An LLM HTTP error as livekit emits it, through the real SDK and livekit's wrapping."""
    return openai_status_error(status, json=json_body, content=content, headers=headers)


def handshake_error(status: int, headers: Mapping[str, str]) -> APIStatusError:
    """An STT/TTS websocket handshake failure as livekit's inference plugins raise it."""
    return ws_handshake_error(status, headers=headers)


def gateway(error: BaseException, kind: Kind = Kind.LLM) -> Verdict | None:
    return livekit_gateway(facts_from(error, kind=kind, label=LABEL))


class TestQuotaBody:
    """The full quota body is recovered past the SDK's narrowing and decides the category."""

    def test_sdk_narrows_body(self) -> None:
        """Premise: the error livekit emits holds only the bare ``"error"`` string."""
        error = llm_error(429, json_body=gateway_body())
        assert isinstance(error.body, str)
        assert isinstance(error.__context__, openai.RateLimitError)

    def test_credits_exhausted(self) -> None:
        """MaxGatewayCredits: terminal, with every quota field and header recovered."""
        verdict = classify(
            llm_error(429, json_body=gateway_body(), headers=CREDITS_HEADERS),
            kind="llm",
            label=LABEL,
        )
        assert verdict.category is Category.QUOTA_EXHAUSTED
        assert verdict.terminal
        assert verdict.counts
        assert verdict.provider == "livekit"
        assert verdict.status_code == 429
        assert verdict.hint == "Wait for the next billing cycle or upgrade your plan."
        assert verdict.quota is not None
        assert verdict.quota.quota_type == "llm"
        assert verdict.quota.category == "MaxGatewayCredits"
        assert verdict.quota.remaining_limit == "0"
        assert verdict.quota.usage == {"credits_limit": 1000, "credits_used": 1000}

    @pytest.mark.parametrize("category", sorted(TERMINAL_QUOTA_CATEGORIES))
    def test_terminal_categories(self, category: str) -> None:
        """Each credit category is terminal quota exhaustion."""
        verdict = gateway(llm_error(429, json_body=gateway_body(category)))
        assert verdict is not None
        assert verdict.category is Category.QUOTA_EXHAUSTED
        assert verdict.terminal

    @pytest.mark.parametrize(
        "category",
        [
            "MaxConcurrentGatewayLLMRpm",
            "MaxConcurrentGatewayLLMTpm",
            "MaxConcurrentGatewaySTT",
            "MaxConcurrentGatewayTTS",
            "MaxBargeInRPM",
        ],
    )
    def test_transient_categories(self, category: str) -> None:
        """Rate and concurrency categories are a transient, counted rate limit."""
        verdict = gateway(llm_error(429, json_body=gateway_body(category)))
        assert verdict is not None
        assert verdict.category is Category.RATE_LIMITED
        assert not verdict.terminal
        assert verdict.counts
        assert verdict.quota is not None
        assert verdict.quota.category == category

    @pytest.mark.parametrize(
        ("body", "category"),
        [
            (gateway_body("MaxSomethingAddedLater"), "MaxSomethingAddedLater"),
            ({k: v for k, v in gateway_body().items() if k != "category"}, None),
            (gateway_body(""), None),
            (gateway_body(["MaxGatewayCredits"]), None),
            (gateway_body(None), None),
        ],
        ids=["unknown", "missing", "empty", "list", "null"],
    )
    def test_unknown_or_missing_category_is_transient(
        self, body: dict[str, object], category: str | None
    ) -> None:
        """Without a known credit category the gateway answer fails open to transient."""
        verdict = gateway(llm_error(429, json_body=body))
        assert verdict is not None
        assert verdict.category is Category.RATE_LIMITED
        assert not verdict.terminal
        assert verdict.quota is not None
        assert verdict.quota.category == category

    def test_wrong_field_types_are_dropped(self) -> None:
        """Non-string fields become None instead of leaking odd types into the Verdict."""
        body = gateway_body(hint=123, quota_type={"llm": True}, remaining_limit=5)
        verdict = gateway(llm_error(429, json_body=body))
        assert verdict is not None
        assert verdict.category is Category.QUOTA_EXHAUSTED
        assert verdict.hint is None
        assert verdict.quota is not None
        assert verdict.quota.quota_type is None
        assert verdict.quota.remaining_limit is None

    def test_hint_is_sanitized(self) -> None:
        """The untrusted hint loses markup and secrets, and secrets stay out of every field."""
        body = gateway_body(
            hint=f"<speak>**Top up** at [billing](https://x.invalid)\x1b[0m; key {SECRET}</speak>",
            remaining_limit=SECRET,
        )
        verdict = gateway(llm_error(429, json_body=body))
        assert verdict is not None
        assert verdict.hint == "Top up at billing ; key sk-…[redacted]"
        assert SECRET not in json.dumps(verdict.as_dict())

    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (
                b"LLM token credit quota exceeded, category: MaxGatewayCredits",
                Category.QUOTA_EXHAUSTED,
            ),
            (
                b"request/min rate limit exceeded, category: MaxConcurrentGatewayLLMRpm",
                Category.RATE_LIMITED,
            ),
        ],
        ids=["credits", "rpm"],
    )
    def test_text_body(self, content: bytes, expected: Category) -> None:
        """A plain-text body naming the category is read from the text."""
        verdict = gateway(llm_error(429, content=content))
        assert verdict is not None
        assert verdict.category is expected
        assert verdict.provider == "livekit"

    def test_narrowed_string_only(self) -> None:
        """Once livekit re-raised the error past the stream, only the narrowed string is left.

        ``LLMStream.__anext__`` does ``raise exc`` inside ``except StopAsyncIteration``,
        which replaces ``__context__``: the category still comes from the text.
        """
        error = llm_error(429, json_body=gateway_body(), headers=CREDITS_HEADERS)
        try:
            try:
                raise StopAsyncIteration
            except StopAsyncIteration:
                raise error  # noqa: B904 - reproducing livekit/agents/llm/llm.py
        except APIStatusError:
            pass
        assert isinstance(error.__context__, StopAsyncIteration)
        verdict = gateway(error)
        assert verdict is not None
        assert verdict.category is Category.QUOTA_EXHAUSTED
        assert verdict.quota is not None
        assert verdict.quota.category == "MaxGatewayCredits"
        assert verdict.quota.usage == {}

    @pytest.mark.parametrize(
        ("status", "body", "content"),
        [
            (429, None, b"Too Many Requests"),
            (
                429,
                {"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}},
                None,
            ),
            (429, {"type": ["inference_quota_exceeded"]}, None),
            (401, {"error": "quota exceeded, category: MaxGatewayCredits"}, None),
            (500, None, b"<html>upstream error</html>"),
        ],
        ids=["plain-text-429", "openai-429", "type-not-str", "category-text-on-401", "html-500"],
    )
    def test_not_the_gateway(self, status: int, body: object, content: bytes | None) -> None:
        """Errors that are not the gateway's quota answer are left to other classifiers."""
        assert gateway(llm_error(status, json_body=body, content=content)) is None

    def test_plain_exception_is_not_the_gateway(self) -> None:
        """An error with no HTTP facts at all is not the gateway's."""
        assert gateway(RuntimeError("boom")) is None


class TestQuotaHeaders:
    """X-LiveKit-Inference-* and Retry-After headers fill QuotaInfo; garbage is ignored."""

    def test_usage_headers(self) -> None:
        """Numeric headers are parsed; non-numeric ones are dropped, not guessed."""
        headers = {
            "X-LiveKit-Inference-RPM-Limit": "60",
            "X-LiveKit-Inference-RPM-Used": "61",
            "X-LiveKit-Inference-TPM-Limit": "lots",
            "X-LiveKit-Inference-TPM-Used": "-5",
            "X-LiveKit-Inference-Credits-Limit": "1.5",
            "X-LiveKit-Inference-Credits-Used": " 12 ",
        }
        verdict = gateway(
            llm_error(429, json_body=gateway_body("MaxConcurrentGatewayLLMRpm"), headers=headers)
        )
        assert verdict is not None
        assert verdict.quota is not None
        assert verdict.quota.usage == {"rpm_limit": 60, "rpm_used": 61, "credits_used": 12}

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"retry-after": "7"}, 7.0),
            ({"retry-after": "1.5"}, 1.5),
            ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
            ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
            ({"retry-after": "-3"}, None),
            ({"retry-after": "nan"}, None),
            ({"retry-after": "inf"}, None),
            ({"retry-after": "tomorrow-ish"}, None),
            ({}, None),
        ],
        ids=[
            "seconds",
            "fraction",
            "ms-wins",
            "bad-ms",
            "negative",
            "nan",
            "inf",
            "garbage",
            "absent",
        ],
    )
    def test_retry_after_seconds(self, headers: dict[str, str], expected: float | None) -> None:
        """Seconds (or OpenAI's milliseconds) are taken as given; nonsense is ignored."""
        assert parse_retry_after(headers) == expected

    @pytest.mark.parametrize(
        ("offset", "expected"), [(30, 30.0), (-30, 0.0)], ids=["future", "past"]
    )
    def test_retry_after_http_date(self, offset: int, expected: float) -> None:
        """An HTTP date becomes seconds from now, never negative."""
        now = 1_800_000_000.0
        date = email.utils.format_datetime(datetime.fromtimestamp(now + offset, UTC), usegmt=True)
        assert parse_retry_after({"retry-after": date}, now=now) == expected

    def test_retry_after_reaches_verdict(self) -> None:
        """Retry-After on the gateway response lands in QuotaInfo.retry_after."""
        error = llm_error(
            429, json_body=gateway_body("MaxConcurrentGatewayLLMTpm"), headers={"Retry-After": "12"}
        )
        verdict = gateway(error)
        assert verdict is not None
        assert verdict.quota is not None
        assert verdict.quota.retry_after == 12.0


class TestWebsocketPaths:
    """STT/TTS failures, which never carry the HTTP body, are still recognised where possible."""

    def test_handshake_429_with_gateway_headers(self) -> None:
        """A body-less handshake 429 with gateway headers is a transient gateway rate limit."""
        verdict = gateway(handshake_error(429, CREDITS_HEADERS), Kind.STT)
        assert verdict is not None
        assert verdict.category is Category.RATE_LIMITED
        assert not verdict.terminal
        assert verdict.quota is not None
        assert verdict.quota.usage == {"credits_limit": 1000, "credits_used": 1000}

    def test_handshake_429_without_gateway_headers(self) -> None:
        """Without the gateway's headers it is not claimed: the HTTP rules make it a rate limit."""
        error = handshake_error(429, {})
        assert gateway(error, Kind.STT) is None
        verdict = classify(error, kind=Kind.STT, label="livekit.agents.inference.stt.STT")
        assert (verdict.category, verdict.provider) == (Category.RATE_LIMITED, "livekit")

    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            ("MaxGatewayCredits", Category.QUOTA_EXHAUSTED),
            ("MaxEotRequests", Category.QUOTA_EXHAUSTED),
            ("MaxConcurrentGatewaySTT", Category.RATE_LIMITED),
        ],
    )
    def test_stt_error_frame(self, code: str, expected: Category) -> None:
        """livekit raises an STT error frame as APIError(body={"code": code})."""
        error = APIError(
            "LiveKit Inference STT returned an error", body={"code": code}, retryable=True
        )
        verdict = gateway(error, Kind.STT)
        assert verdict is not None
        assert verdict.category is expected

    @pytest.mark.parametrize("code", [429, -1, "internal"], ids=["int", "default", "other"])
    def test_stt_error_frame_without_category(self, code: object) -> None:
        """Frames whose code names no quota category are not the gateway classifier's."""
        error = APIError(
            "LiveKit Inference STT returned an error", body={"code": code}, retryable=True
        )
        assert gateway(error, Kind.STT) is None

    @pytest.mark.parametrize(
        ("frame", "expected"),
        [
            (
                {"type": "error", "message": "quota exceeded, category: MaxGatewayCredits"},
                Category.QUOTA_EXHAUSTED,
            ),
            ({"type": "error", "code": "MaxConcurrentGatewayTTS"}, Category.RATE_LIMITED),
        ],
        ids=["category-text", "code-field"],
    )
    def test_tts_error_frame(self, frame: dict[str, Any], expected: Category) -> None:
        """livekit raises a TTS error frame with the frame's raw text as the message."""
        error = APIError(f"LiveKit Inference TTS returned error: {json.dumps(frame)}")
        verdict = gateway(error, Kind.TTS)
        assert verdict is not None
        assert verdict.category is expected
        assert verdict.kind is Kind.TTS
