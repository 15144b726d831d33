"""facts_from(), classify() and the generic HTTP rules, on errors built as production does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx2
import openai
import pytest
from livekit.agents import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    llm,
    stt,
    tts,
)
from livekit.agents.inference.interruption import InterruptionDetectionError
from multidict import CIMultiDict, CIMultiDictProxy
from openai.types.realtime.realtime_error import RealtimeError
from structlog.testing import capture_logs
from yarl import URL

import agent_guard._classify
from agent_guard import Category, Kind, Verdict, classify
from agent_guard._facts import facts_from, kind_of
from agent_guard.classifiers import DEFAULT_CLASSIFIERS, ErrorFacts
from agent_guard.classifiers._http import provider_from_label
from agent_guard.testing import (
    openai_status_error,
    openai_stream_error,
    raised,
    ws_handshake_error,
)

REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
SECRET = "sk-proj-TESTSECRET0123456789abcdefABCDEF"


def sdk_wrapped(status: int, body: object, headers: dict[str, str] | None = None) -> APIStatusError:
    """An HTTP error through the real SDK, wrapped as livekit/agents/inference/llm.py does."""
    return openai_status_error(status, json=body, headers=headers, retryable=False)


class Exploding(Exception):
    """An exception whose every interesting attribute raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    @property
    def status_code(self) -> int:
        raise RuntimeError("no status")

    @property
    def body(self) -> object:
        raise KeyError("no body")

    @property
    def response(self) -> object:
        raise TypeError("no response")

    @property
    def headers(self) -> object:
        raise ValueError("no headers")


class WrongTypes(Exception):
    """Attributes of the wrong types, as a sloppy plugin might set them."""

    status_code = "429"
    body = (1, 2)
    headers = None
    response = 42


class TestFactsFrom:
    """Facts come from the error first, then its chain; nothing about the error is trusted."""

    def test_sdk_path_recovers_full_body_and_headers(self) -> None:
        """The narrowed string body is replaced by the full JSON from the context's response."""
        body = {"type": "inference_quota_exceeded", "error": "quota exceeded", "category": "X"}
        error = sdk_wrapped(429, body, {"X-LiveKit-Inference-Credits-Used": "5"})
        assert isinstance(error.body, str)
        facts = facts_from(error, kind=Kind.LLM)
        assert facts.status_code == 429
        assert facts.body == body
        assert facts.headers["x-livekit-inference-credits-used"] == "5"
        assert [type(e) for e in facts.chain] == [
            APIStatusError,
            openai.RateLimitError,
            httpx2.HTTPStatusError,  # openai/_base_client.py: raise_for_status() first
        ]

    def test_mapping_body_kept(self) -> None:
        """A body that is already a mapping (the SDK's narrowed error object) is kept."""
        error = sdk_wrapped(400, {"error": {"message": "bad", "code": "invalid_value"}})
        assert facts_from(error, kind=Kind.LLM).body == {"message": "bad", "code": "invalid_value"}

    def test_pydantic_body_dumped(self) -> None:
        """A pydantic body (livekit realtime: APIError(body=<RealtimeError>)) becomes a dict."""
        body = RealtimeError(message="quota", type="insufficient_quota", code="insufficient_quota")
        error = APIError("OpenAI Realtime API returned an error", body=body, retryable=False)
        facts = facts_from(error, kind=Kind.REALTIME)
        assert isinstance(facts.body, dict)
        assert facts.body["code"] == "insufficient_quota"

    def test_unread_response_tolerated(self) -> None:
        """A streamed response nobody read raises on .content: the string body stays."""
        response = httpx2.Response(429, stream=httpx2.ByteStream(b"{}"), request=REQUEST)
        error = openai.RateLimitError("Error code: 429", response=response, body="narrowed")
        assert facts_from(error, kind=Kind.LLM).body == "narrowed"

    def test_oversized_response_not_parsed(self) -> None:
        """A response body past the size bound is not parsed."""
        huge = {"type": "inference_quota_exceeded", "error": "narrowed", "pad": "x" * 70_000}
        assert facts_from(sdk_wrapped(429, huge), kind=Kind.LLM).body == "narrowed"

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (429, 429),
            ("503", 503),
            (-1, None),
            (True, None),
            (1000, None),
            ("4x9", None),
            (429.0, None),
        ],
        ids=["int", "digit-str", "livekit-default", "bool", "out-of-range", "junk-str", "float"],
    )
    def test_status_validation(self, status: object, expected: int | None) -> None:
        """Only integral HTTP statuses (or their decimal text) count."""
        error = Exception("x")
        error.status_code = status  # type: ignore[attr-defined]
        assert facts_from(error, kind=Kind.LLM).status_code == expected

    def test_status_and_headers_from_aiohttp_cause(self) -> None:
        """aiohttp's ``.status``/``.headers`` on the cause are found (handshake path)."""
        info = aiohttp.RequestInfo(URL("wss://x.invalid"), "GET", CIMultiDictProxy(CIMultiDict()))
        cause = aiohttp.ClientResponseError(
            info,
            (),
            status=429,
            message="Too Many Requests",
            headers=CIMultiDictProxy(CIMultiDict({"Retry-After": "3"})),
        )
        error = raised(APIConnectionError("connect failed"), cause=cause)
        facts = facts_from(error, kind=Kind.STT)
        assert facts.status_code == 429
        assert facts.body is None
        assert facts.headers == {"retry-after": "3"}

    def test_cycle(self) -> None:
        """A cyclic chain is walked once per exception."""
        a, b = ValueError("a"), KeyError("b")
        a.__context__ = b
        b.__cause__ = a
        assert facts_from(a, kind=Kind.LLM).chain == (a, b)
        assert classify(a, kind=Kind.LLM).category is Category.UNKNOWN

    def test_chain_bounded(self) -> None:
        """A very long chain is cut to a fixed number of exceptions."""
        head = current = Exception(0)
        for i in range(1, 100):
            current.__cause__ = Exception(i)
            current = current.__cause__
        assert len(facts_from(head, kind=Kind.LLM).chain) == 16

    def test_raising_attributes(self) -> None:
        """Properties and __str__ that raise leave empty facts, not an exception."""
        facts = facts_from(Exploding(), kind=Kind.TTS)
        assert (facts.status_code, facts.body, facts.headers, facts.message) == (None, None, {}, "")

    def test_wrong_attribute_types(self) -> None:
        """Wrong-typed attributes are ignored or coerced, never trusted."""
        facts = facts_from(WrongTypes(), kind=Kind.LLM)
        assert (facts.status_code, facts.body, facts.headers) == (429, None, {})

    def test_non_exception(self) -> None:
        """A non-exception passed by mistake is described, not raised on."""
        facts = facts_from(42, kind=Kind.LLM)  # type: ignore[arg-type]
        assert isinstance(facts.error, TypeError)
        assert facts.message == "not an exception: int"


class TestHttpRules:
    """The generic rules answer every error: status first, then exception types."""

    @pytest.mark.parametrize(
        ("status", "category", "terminal", "counts"),
        [
            (400, Category.BAD_REQUEST, False, True),
            (401, Category.AUTH, True, True),
            (402, Category.PAYMENT_REQUIRED, True, True),
            (403, Category.PERMISSION, True, True),
            (404, Category.BAD_REQUEST, False, True),
            (408, Category.TIMEOUT, False, True),
            (409, Category.BAD_REQUEST, False, True),
            (413, Category.BAD_REQUEST, False, True),
            (422, Category.BAD_REQUEST, False, True),
            (429, Category.RATE_LIMITED, False, True),
            (499, Category.CLIENT_CANCELLED, False, False),
            (500, Category.SERVER_ERROR, False, True),
            (502, Category.SERVER_ERROR, False, True),
            (503, Category.OVERLOADED, False, True),
            (504, Category.SERVER_ERROR, False, True),
            (529, Category.OVERLOADED, False, True),
        ],
        ids=lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else None,
    )
    def test_status(self, status: int, category: Category, terminal: bool, counts: bool) -> None:
        """Each status maps to its category, terminality and counting."""
        verdict = classify(sdk_wrapped(status, {"error": {"message": "x"}}), kind=Kind.LLM)
        assert (verdict.category, verdict.terminal, verdict.counts) == (category, terminal, counts)
        assert verdict.status_code == status

    @pytest.mark.parametrize(
        ("status", "headers", "retry_after"),
        [
            (429, {"Retry-After": "4"}, 4.0),
            (503, {"retry-after-ms": "1500"}, 1.5),
            (500, {"Retry-After": "4"}, None),
        ],
        ids=["429", "503-ms", "500-ignored"],
    )
    def test_retry_after(
        self, status: int, headers: dict[str, str], retry_after: float | None
    ) -> None:
        """Rate-limit and overload answers carry Retry-After in QuotaInfo."""
        verdict = classify(sdk_wrapped(status, {"error": "x"}, headers), kind=Kind.LLM)
        assert (verdict.quota.retry_after if verdict.quota else None) == retry_after

    @pytest.mark.parametrize(
        ("error", "category"),
        [
            (APITimeoutError(), Category.TIMEOUT),
            (
                raised(APITimeoutError(), cause=httpx2.ReadTimeout("read timed out")),
                Category.TIMEOUT,
            ),
            (raised(APIConnectionError(), cause=httpx2.ReadTimeout("")), Category.TIMEOUT),
            (TimeoutError(), Category.TIMEOUT),
            (RuntimeError("request timed out after 10s"), Category.TIMEOUT),
            (
                raised(APIConnectionError(), cause=aiohttp.ServerDisconnectedError()),
                Category.CONNECTION,
            ),
            (
                raised(APIConnectionError(), cause=httpx2.ConnectError("refused")),
                Category.CONNECTION,
            ),
            (ConnectionResetError(), Category.CONNECTION),
            (OSError("network unreachable"), Category.CONNECTION),
            (APIConnectionError("all LLMs failed"), Category.CONNECTION),
            (
                openai_stream_error({"message": "Client closed request", "code": 499}),
                Category.CLIENT_CANCELLED,
            ),
            (openai_stream_error({"message": "x", "code": "499"}), Category.CLIENT_CANCELLED),
            (
                openai_stream_error({"message": "x", "code": "request_cancelled"}),
                Category.CLIENT_CANCELLED,
            ),
            (openai_stream_error({"message": "boom", "code": "server_error"}), Category.CONNECTION),
            (asyncio.CancelledError(), Category.CLIENT_CANCELLED),
            (
                raised(asyncio.CancelledError(), cause=APIStatusError("x", status_code=500)),
                Category.CLIENT_CANCELLED,
            ),
            (
                raised(RuntimeError("x"), cause=asyncio.CancelledError()),
                Category.CLIENT_CANCELLED,
            ),
            (RuntimeError("boom"), Category.UNKNOWN),
            (KeyboardInterrupt(), Category.UNKNOWN),
        ],
        ids=[
            "livekit-timeout",
            "httpx-timeout-cause",
            "connection-wrapping-timeout",
            "asyncio-timeout",
            "timed-out-text",
            "aiohttp-disconnect",
            "httpx-connect",
            "connection-reset",
            "oserror",
            "fallback-adapter",
            "mid-stream-499",
            "mid-stream-499-str",
            "mid-stream-cancel-code",
            "mid-stream-other",
            "cancelled",
            "cancelled-over-status",
            "cancelled-in-chain",
            "plain",
            "keyboard-interrupt",
        ],
    )
    def test_without_status(self, error: BaseException, category: Category) -> None:
        """Without a status, cancellation, timeouts and transport failures are told apart."""
        verdict = classify(error, kind=Kind.LLM)
        assert verdict.category is category
        assert not verdict.terminal
        assert verdict.counts is (category is not Category.CLIENT_CANCELLED)

    def test_status_wins_over_connection_wrapper(self) -> None:
        """livekit's "failed after N attempts" wrapper is classified by its cause's status."""
        error = raised(
            APIConnectionError("failed to generate LLM completion after 4 attempts"),
            cause=sdk_wrapped(503, {"error": "busy"}),
        )
        assert classify(error, kind=Kind.LLM).category is Category.OVERLOADED

    @pytest.mark.parametrize(
        ("label", "provider"),
        [
            ("livekit.plugins.openai.llm.LLM", "openai"),
            ("livekit.plugins.elevenlabs.tts.TTS", "elevenlabs"),
            ("livekit.agents.inference.llm.LLM", "livekit"),
            ("livekit.agents.llm._realtime.openai.RealtimeModel", "openai"),
            ("livekit.agents.llm.fallback_adapter.FallbackAdapter", None),
            ("my_app.CustomLLM", None),
            (None, None),
        ],
        ids=["openai", "elevenlabs", "inference", "realtime", "fallback", "custom", "none"],
    )
    def test_provider_from_label(self, label: str | None, provider: str | None) -> None:
        """The provider is read from livekit's model label."""
        assert provider_from_label(label) == provider
        assert classify(RuntimeError("x"), kind=Kind.LLM, label=label).provider == provider


def fixed(category: Category) -> Callable[[ErrorFacts], Verdict]:
    def classifier(facts: ErrorFacts) -> Verdict:
        return facts.verdict(category, provider="test")

    return classifier


def declines(facts: ErrorFacts) -> None:
    return None


def explodes(facts: ErrorFacts) -> Verdict:
    raise ValueError(f"provider said: invalid key {SECRET}")


def returns_junk(facts: ErrorFacts) -> Any:
    return "quota_exhausted"


class TestClassify:
    """classify() composes classifiers, isolates their failures and never raises on the error."""

    def test_default_chain(self) -> None:
        """Carried verdicts first, then the provider dispatch; the HTTP rules are implicit."""
        assert [c.__name__ for c in DEFAULT_CLASSIFIERS] == ["carried_verdict", "by_provider"]

    def test_first_answer_wins(self) -> None:
        """Classifiers run in order; ``None`` passes to the next, the first Verdict wins."""
        classifiers = (declines, fixed(Category.AUTH), fixed(Category.OVERLOADED))
        verdict = classify(RuntimeError("x"), kind=Kind.LLM, classifiers=classifiers)
        assert (verdict.category, verdict.provider) == (Category.AUTH, "test")

    def test_generic_rules_always_last(self) -> None:
        """With no classifier answering, the HTTP rules still do."""
        verdict = classify(sdk_wrapped(401, {"error": "x"}), kind=Kind.LLM, classifiers=(declines,))
        assert verdict.category is Category.AUTH

    def test_raising_classifier_skipped_and_logged(self) -> None:
        """A classifier that raises is logged (redacted, by qualname) and skipped."""
        with capture_logs() as logs:
            verdict = classify(
                RuntimeError("x"), kind="tts", classifiers=(explodes, fixed(Category.TIMEOUT))
            )
        assert verdict.category is Category.TIMEOUT
        assert logs == [
            {
                "event": "agent_guard.classifier_failed",
                "log_level": "warning",
                "classifier": "explodes",
                "kind": "tts",
                "error_type": "ValueError",
                "error": "provider said: invalid key sk-…[redacted]",
            }
        ]

    def test_junk_return_skipped_and_logged(self) -> None:
        """A classifier returning something other than a Verdict or None is skipped."""
        with capture_logs() as logs:
            verdict = classify(RuntimeError("x"), kind=Kind.LLM, classifiers=(returns_junk,))
        assert verdict.category is Category.UNKNOWN
        assert logs[0]["event"] == "agent_guard.classifier_failed"
        assert logs[0]["returned"] == "str"

    def test_last_resort(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """If even the HTTP rules fail, an UNKNOWN verdict is built without the error."""

        def broken(facts: ErrorFacts) -> Verdict:
            raise RuntimeError("broken rules")

        monkeypatch.setattr(agent_guard._classify, "http_rules", broken)
        with capture_logs() as logs:
            verdict = classify(RuntimeError("x"), kind=Kind.LLM, recoverable=True)
        assert (verdict.category, verdict.terminal, verdict.counts) == (
            Category.UNKNOWN,
            False,
            True,
        )
        assert verdict.recoverable
        assert logs[0]["event"] == "agent_guard.classification_failed"

    @pytest.mark.parametrize("kind", ["vision", "", None, 3], ids=["word", "empty", "none", "int"])
    def test_invalid_kind(self, kind: Any) -> None:
        """An invalid kind is a programming error, reported clearly."""
        with pytest.raises(ValueError, match="kind must be one of 'stt', 'llm', 'tts', 'realtime'"):
            classify(RuntimeError("x"), kind=kind)

    @pytest.mark.parametrize("kind", [Kind.REALTIME, "realtime"], ids=["enum", "str"])
    def test_kind_accepted(self, kind: Kind | str) -> None:
        """A Kind or its value is accepted."""
        assert classify(RuntimeError("x"), kind=kind).kind is Kind.REALTIME

    @pytest.mark.parametrize(
        "error",
        [SystemExit(1), GeneratorExit(), Exploding(), WrongTypes(), None, 42, "boom", object()],
        ids=[
            "system-exit",
            "generator-exit",
            "exploding",
            "wrong-types",
            "none",
            "int",
            "str",
            "object",
        ],
    )
    def test_total_on_any_error(self, error: Any) -> None:
        """Whatever is passed as the error, a Verdict comes back."""
        assert isinstance(classify(error, kind=Kind.LLM), Verdict)

    def test_flags_propagate(self) -> None:
        """livekit's recoverable flag and the label reach the Verdict."""
        verdict = classify(
            RuntimeError("x"),
            kind=Kind.LLM,
            recoverable=True,
            label="livekit.plugins.openai.llm.LLM",
        )
        assert verdict.recoverable
        assert verdict.provider == "openai"

    def test_echoed_key_never_leaks(self) -> None:
        """A 401 echoing the key exposes it in no Verdict field."""
        body = {
            "error": {
                "message": f"Incorrect API key provided: {SECRET}.",
                "code": "invalid_api_key",
            }
        }
        verdict = classify(
            sdk_wrapped(401, body), kind=Kind.LLM, label="livekit.plugins.openai.llm.LLM"
        )
        assert verdict.category is Category.AUTH
        assert "Incorrect API key provided: sk-…[redacted]" in verdict.detail
        for text in (
            verdict.detail,
            verdict.hint or "",
            verdict.public_message,
            json.dumps(verdict.as_dict()),
        ):
            assert "TESTSECRET" not in text


class TestKindOf:
    """livekit's error models map to a Kind; anything else to None."""

    @pytest.mark.parametrize(
        ("model", "kind"),
        [
            (llm.LLMError(timestamp=0, label="l", error=Exception(), recoverable=False), Kind.LLM),
            (stt.STTError(timestamp=0, label="l", error=Exception(), recoverable=False), Kind.STT),
            (tts.TTSError(timestamp=0, label="l", error=Exception(), recoverable=False), Kind.TTS),
            (
                llm.RealtimeModelError(
                    timestamp=0, label="l", error=Exception(), recoverable=False
                ),
                Kind.REALTIME,
            ),
            (InterruptionDetectionError(label="l", error=Exception(), recoverable=False), None),
            (Exception("not a model"), None),
            (None, None),
        ],
        ids=["llm", "stt", "tts", "realtime", "interruption", "exception", "none"],
    )
    def test_kind_of(self, model: object, kind: Kind | None) -> None:
        """Each of livekit's four error types has its Kind."""
        assert kind_of(model) is kind


class CancelsOnRead(Exception):
    """An exception whose __str__ and properties raise CancelledError."""

    def __str__(self) -> str:
        raise asyncio.CancelledError

    @property
    def status_code(self) -> int:
        raise asyncio.CancelledError

    @property
    def body(self) -> object:
        raise asyncio.CancelledError


class InterruptsOnRead(Exception):
    """An exception whose __str__ raises KeyboardInterrupt: that one must propagate."""

    def __str__(self) -> str:
        raise KeyboardInterrupt


def cancels(facts: ErrorFacts) -> Verdict:
    raise asyncio.CancelledError


def exits(facts: ErrorFacts) -> Verdict:
    raise SystemExit(3)


class TestNothingEscapes:
    """Exceptions and CancelledError from the error or a classifier are absorbed; not exits."""

    def test_cancelled_error_from_the_error_object(self) -> None:
        """__str__ and properties raising CancelledError still give a Verdict."""
        verdict = classify(CancelsOnRead(), kind=Kind.LLM)
        assert verdict.category is Category.UNKNOWN

    def test_cancelled_error_from_a_classifier(self) -> None:
        """A classifier raising CancelledError is logged and skipped, like any failure."""
        with capture_logs() as logs:
            verdict = classify(
                sdk_wrapped(401, {"error": "x"}), kind=Kind.LLM, classifiers=(cancels,)
            )
        assert verdict.category is Category.AUTH
        assert logs[0]["event"] == "agent_guard.classifier_failed"
        assert logs[0]["error_type"] == "CancelledError"

    def test_keyboard_interrupt_propagates(self) -> None:
        """KeyboardInterrupt raised by the error object is not swallowed."""
        with pytest.raises(KeyboardInterrupt):
            classify(InterruptsOnRead(), kind=Kind.LLM)

    def test_system_exit_propagates(self) -> None:
        """SystemExit raised by a classifier is not swallowed."""
        with pytest.raises(SystemExit):
            classify(RuntimeError("x"), kind=Kind.LLM, classifiers=(exits,))


async def _task_group_error(error: BaseException) -> BaseExceptionGroup[BaseException]:
    """What a TaskGroup raises when one task fails with ``error`` and a sibling is cancelled."""

    async def fails() -> None:
        await asyncio.sleep(0)
        raise error

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(10))
            group.create_task(fails())
    except BaseExceptionGroup as caught:
        return caught
    raise AssertionError("the task group did not fail")


class TestExceptionGroups:
    async def test_group_is_classified_by_its_provider_error(self) -> None:
        """A TaskGroup's ExceptionGroup wrapping an SDK 429 quota error is that error."""
        inner = sdk_wrapped(
            429, {"error": {"message": "quota", "type": "insufficient_quota", "code": None}}
        )
        group = await _task_group_error(inner)
        verdict = classify(group, kind=Kind.STT, label="livekit.plugins.openai.stt.STT")
        assert (verdict.category, verdict.terminal, verdict.status_code) == (
            Category.QUOTA_EXHAUSTED,
            True,
            429,
        )

    def test_nested_group_skips_cancellations(self) -> None:
        """Nested groups unwrap to the first member that is not a cancellation."""
        inner = sdk_wrapped(401, {"error": "bad key"})
        group = BaseExceptionGroup(
            "outer", [asyncio.CancelledError(), ExceptionGroup("inner", [inner])]
        )
        assert classify(group, kind=Kind.TTS).category is Category.AUTH


class TestRetryHorizon:
    """A retry delay longer than a session can wait is terminal; a short one stays transient."""

    @pytest.mark.parametrize(
        ("headers", "message", "expected", "delay"),
        [
            ({"retry-after": "86400"}, "Rate limit.", Category.QUOTA_EXHAUSTED, 86400.0),
            ({}, "Please retry after 86400 seconds.", Category.QUOTA_EXHAUSTED, 86400.0),
            ({}, "Please try again in 17m16s.", Category.QUOTA_EXHAUSTED, 1036.0),
            ({"retry-after": "20"}, "Rate limit.", Category.RATE_LIMITED, 20.0),
            ({}, "Please try again in 1.5s.", Category.RATE_LIMITED, 1.5),
            ({}, "Rate limit reached.", Category.RATE_LIMITED, None),
        ],
        ids=["header-day", "azure-text", "groq-text", "header-20s", "text-1.5s", "none"],
    )
    def test_default_horizon(
        self, headers: dict[str, str], message: str, expected: Category, delay: float | None
    ) -> None:
        """Past 60 s: QUOTA_EXHAUSTED, terminal, with the delay and a hint."""
        error = sdk_wrapped(429, {"error": {"message": message, "code": None}}, headers)
        verdict = classify(error, kind=Kind.LLM)
        assert verdict.category is expected
        assert verdict.terminal is (expected is Category.QUOTA_EXHAUSTED)
        assert (verdict.quota.retry_after if verdict.quota else None) == delay
        if verdict.terminal:
            assert verdict.hint is not None and "retry horizon" in verdict.hint

    def test_horizon_is_a_knob(self) -> None:
        """A shorter horizon makes a 20 s wait terminal; a longer one tolerates a day."""
        error = sdk_wrapped(429, {"error": "x"}, {"retry-after": "20"})
        assert classify(error, kind=Kind.LLM, retry_horizon=10).terminal
        day = sdk_wrapped(429, {"error": "x"}, {"retry-after": "86400"})
        assert not classify(day, kind=Kind.LLM, retry_horizon=100_000).terminal

    def test_overload_with_long_retry_after(self) -> None:
        """A 503 asking for an hour is as final as a spent quota for a call."""
        error = sdk_wrapped(503, {"error": "down for maintenance"}, {"retry-after": "3600"})
        assert classify(error, kind=Kind.LLM).terminal

    def test_policy_validates_the_horizon(self) -> None:
        """GuardPolicy.retry_horizon is a positive number of seconds."""
        from agent_guard import GuardPolicy, PolicyError

        assert GuardPolicy().retry_horizon == 60.0
        with pytest.raises(PolicyError, match="retry_horizon"):
            GuardPolicy(retry_horizon=0)


class TestWebsocketRefusals:
    """Handshake refusals and closes, as real aiohttp objects wrapped the livekit way."""

    @pytest.mark.parametrize(
        ("status", "category"),
        [
            (401, Category.AUTH),
            (402, Category.PAYMENT_REQUIRED),
            (403, Category.PERMISSION),
        ],
    )
    def test_handshake_refused(self, status: int, category: Category) -> None:
        """A WSServerHandshakeError's status on the cause decides: terminal."""
        verdict = classify(ws_handshake_error(status), kind=Kind.STT)
        assert (verdict.category, verdict.terminal) == (category, True)

    def test_raw_handshake_error(self) -> None:
        """The bare aiohttp error (a plugin that lets it through) is read the same way."""
        error = ws_handshake_error(402).__cause__
        assert isinstance(error, aiohttp.WSServerHandshakeError)
        assert classify(error, kind=Kind.STT).category is Category.PAYMENT_REQUIRED

    @pytest.mark.parametrize(
        ("code", "category"),
        [(1011, Category.SERVER_ERROR), (1013, Category.OVERLOADED), (1006, Category.CONNECTION)],
    )
    def test_generic_close_codes(self, code: int, category: Category) -> None:
        """A close code livekit put in place of a status is read as one, not as HTTP."""
        msg = aiohttp.WSMessage(aiohttp.WSMsgType.CLOSE, code, "bye")
        error = APIStatusError(
            "connection closed unexpectedly", status_code=code, body=f"{msg.data=} {msg.extra=}"
        )
        verdict = classify(error, kind=Kind.STT)
        assert (verdict.category, verdict.status_code) == (category, None)


class TestLastClassification:
    """classify() answers the very same error, classified again alike, from its memo."""

    def test_same_error_same_arguments_is_remembered(self) -> None:
        """The fleet gate and the guard classify each event: the chain runs once."""
        calls: list[ErrorFacts] = []

        def counting(facts: ErrorFacts) -> None:
            calls.append(facts)

        error = sdk_wrapped(429, {"error": {"message": "slow down", "code": "rate_limit"}})
        first = classify(error, kind=Kind.LLM, classifiers=(counting,), label="a")
        again = classify(error, kind=Kind.LLM, classifiers=(counting,), label="a")
        assert again is first
        assert len(calls) == 1

    @pytest.mark.parametrize(
        "changes",
        [
            {"kind": Kind.TTS},
            {"label": "b"},
            {"recoverable": True},
            {"retry_horizon": 1.0},
            {"classifiers": ()},
        ],
        ids=["kind", "label", "recoverable", "retry_horizon", "classifiers"],
    )
    def test_other_arguments_are_classified_afresh(self, changes: dict[str, Any]) -> None:
        """Any other argument gives the verdict those arguments give."""
        error = sdk_wrapped(429, {"error": {"message": "slow"}}, {"retry-after": "30"})
        args: dict[str, Any] = {"kind": Kind.LLM, "classifiers": DEFAULT_CLASSIFIERS, "label": "a"}
        first = classify(error, **args)
        other = classify(error, **(args | changes))
        assert other is not first
        assert other == classify(
            sdk_wrapped(429, {"error": {"message": "slow"}}, {"retry-after": "30"}),
            **(args | changes),
        )
        if "retry_horizon" in changes:
            assert (first.category, other.category) == (
                Category.RATE_LIMITED,
                Category.QUOTA_EXHAUSTED,
            )

    def test_another_error_is_classified_afresh(self) -> None:
        """An equal-looking but different error is not answered from the memo."""
        first = classify(sdk_wrapped(429, {"error": "a"}), kind=Kind.LLM)
        second = classify(sdk_wrapped(401, {"error": "a"}), kind=Kind.LLM)
        assert (first.category, second.category) == (Category.RATE_LIMITED, Category.AUTH)

    def test_the_error_is_not_kept_alive(self) -> None:
        """The memo holds the error weakly: it and its traceback go with the event."""
        import gc
        import weakref

        error = sdk_wrapped(429, {"error": "a"})
        ref = weakref.ref(error)
        classify(error, kind=Kind.LLM)
        del error
        gc.collect()
        assert ref() is None
        # A new error at the same address is not mistaken for the old one.
        assert classify(sdk_wrapped(401, {"error": "a"}), kind=Kind.LLM).category is Category.AUTH

    def test_builtin_exception_without_weak_reference(self) -> None:
        """A built-in exception (no weak reference) is classified each time."""
        error = ValueError("x")
        assert classify(error, kind=Kind.LLM) == classify(error, kind=Kind.LLM)
