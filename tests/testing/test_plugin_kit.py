"""The plugin kit: its checks pass on what is right and fail on every way of being wrong.

A toy "acme" classifier stands in for a provider plugin: it claims bodies shaped
``{"acme": {"code": ...}}``. Verdicts are also built by hand where a test needs one that
no honest classifier would produce (an unredacted secret, say).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import find
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError
from livekit.plugins import openai

import agent_guard.testing
from agent_guard import Category, Kind, Verdict
from agent_guard.classifiers import ErrorFacts, QuotaInfo
from agent_guard.testing import raised
from agent_guard.testing.plugins import (
    FixtureServer,
    ProviderFixture,
    assert_fixture_verdict,
    assert_llm_error_verdict,
    assert_verdict_matches,
    check_classifier_is_total,
    error_bodies,
)

SECRET = "sk-acme-KITTEST0123456789abcdefghijklmnop"
LABEL = "acme.llm.LLM"
OPENAI_LABEL = "livekit.plugins.openai.llm.LLM"


def acme(facts: ErrorFacts) -> Verdict | None:
    """The toy plugin: quota and rate limits named by an "acme" body."""
    body = facts.body
    if not isinstance(body, dict) or not isinstance(body.get("acme"), dict):
        return None
    code = body["acme"].get("code")
    if code == "out_of_credits":
        quota = QuotaInfo(quota_type=facts.kind.value, category=code)
        return facts.verdict(Category.QUOTA_EXHAUSTED, provider="acme", quota=quota)
    if code == "slow_down":
        return facts.verdict(Category.RATE_LIMITED, provider="acme")
    return None


def status_error(fx: ProviderFixture) -> BaseException:
    """What a livekit plugin raises for an HTTP failure, the key in the message."""
    assert fx.status is not None
    return raised(
        APIStatusError(f"request with key {SECRET} failed", status_code=fx.status, body=fx.body)
    )


QUOTA = ProviderFixture(
    id="out_of_credits",
    source="https://example.com/acme/errors",
    kind=Kind.LLM,
    label=LABEL,
    status=402,
    body={"acme": {"code": "out_of_credits"}},
    expected=Category.QUOTA_EXHAUSTED,
    terminal=True,
    build=status_error,
)
RATE_LIMIT = replace(
    QUOTA,
    id="slow_down",
    status=429,
    body={"acme": {"code": "slow_down"}},
    expected=Category.RATE_LIMITED,
    terminal=False,
)


def verdict_for(fx: ProviderFixture, **changes: Any) -> Verdict:
    """The verdict ``fx`` expects, with ``changes``."""
    verdict = Verdict(
        kind=fx.kind,
        category=fx.expected,
        terminal=fx.terminal,
        counts=fx.counts,
        provider="acme",
        status_code=fx.status,
        quota=QuotaInfo(quota_type=fx.kind.value),
    )
    return verdict.replace(**changes)


class TestProviderFixture:
    def test_error_is_what_build_makes(self) -> None:
        error = QUOTA.error()
        assert isinstance(error, APIStatusError)
        assert (error.status_code, error.body) == (402, QUOTA.body)

    def test_without_build_error_says_so(self) -> None:
        with pytest.raises(NotImplementedError, match="out_of_credits"):
            replace(QUOTA, build=None).error()

    def test_subclass_gives_defaults_and_its_own_error(self) -> None:
        """One builder for every fixture: override error(), default kind and label."""

        @dataclass(frozen=True, slots=True, kw_only=True)
        class TTSFixture(ProviderFixture):
            status: int
            kind: Kind = Kind.TTS
            label: str = "acme.tts.TTS"

            def error(self) -> BaseException:
                return APIStatusError("tts failed", status_code=self.status)

        fx = TTSFixture(
            id="tts",
            source="-",
            status=429,
            body=None,
            expected=Category.RATE_LIMITED,
            terminal=False,
        )
        assert (fx.kind, fx.label, fx.counts, fx.headers) == (Kind.TTS, "acme.tts.TTS", True, {})
        # Not a livekit label: the generic rules name no provider.
        assert_fixture_verdict(fx, [], provider=None, secrets=[SECRET])


class TestRaised:
    """``raised`` reproduces the three ways livekit raises a provider error."""

    def test_alone(self) -> None:
        error = raised(APIError("boom"))
        assert error.__traceback__ is not None
        assert (error.__cause__, error.__context__) == (None, None)

    def test_from_cause(self) -> None:
        cause = ValueError("sdk")
        error = raised(APIError("boom"), cause=cause)
        assert error.__cause__ is cause and error.__context__ is cause
        assert cause.__traceback__ is not None

    def test_from_none_keeps_the_context(self) -> None:
        cause = ValueError("sdk")
        error = raised(APIError("boom"), cause=cause, hide_cause=True)
        assert error.__cause__ is None and error.__context__ is cause
        assert error.__suppress_context__ is True

    def test_from_none_alone(self) -> None:
        error = raised(APIError("boom"), hide_cause=True)
        assert (error.__cause__, error.__context__, error.__suppress_context__) == (
            None,
            None,
            True,
        )


class TestAssertFixtureVerdict:
    @pytest.mark.parametrize("fx", [QUOTA, RATE_LIMIT], ids=lambda fx: fx.id)
    def test_right_verdict_passes(self, fx: ProviderFixture) -> None:
        """Classified with the plugin before the defaults; the key is redacted."""
        verdict = assert_fixture_verdict(fx, [acme], provider="acme", secrets=[SECRET])
        assert verdict.category is fx.expected

    def test_without_the_plugin_the_category_is_wrong(self) -> None:
        """The generic rules call a 402 PAYMENT_REQUIRED, not QUOTA_EXHAUSTED."""
        with pytest.raises(AssertionError, match=r"out_of_credits: \(category, terminal"):
            assert_fixture_verdict(QUOTA, [], provider=None)

    def test_wrong_expectation_fails(self) -> None:
        fx = replace(QUOTA, expected=Category.PAYMENT_REQUIRED)
        with pytest.raises(AssertionError, match="category"):
            assert_fixture_verdict(fx, [acme], provider="acme")

    def test_wrong_provider_fails(self) -> None:
        with pytest.raises(AssertionError, match="provider is 'acme'"):
            assert_fixture_verdict(QUOTA, [acme], provider="other")

    def test_leaking_classifier_fails(self) -> None:
        """A classifier that copies the key into a verdict is caught."""

        def leaky(facts: ErrorFacts) -> Verdict | None:
            verdict = acme(facts)
            return None if verdict is None else verdict.replace(public_message=facts.message)

        with pytest.raises(AssertionError, match="public_message leaks a secret"):
            assert_fixture_verdict(QUOTA, [leaky], provider="acme", secrets=[SECRET])


class TestAssertVerdictMatches:
    def test_matching_verdict_passes(self) -> None:
        assert_verdict_matches(verdict_for(QUOTA), QUOTA, provider="acme", secrets=[SECRET])

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"category": Category.PAYMENT_REQUIRED}, "category"),
            ({"terminal": False}, "terminal"),
            ({"counts": False}, "counts"),
            ({"kind": Kind.TTS}, "kind is tts"),
            ({"provider": None}, "provider is None"),
            ({"status_code": 429}, "status_code is 429, expected 402"),
            ({"quota": None}, "quota_type is None"),
            ({"quota": QuotaInfo(quota_type="tts")}, "quota_type is 'tts'"),
        ],
        ids=["category", "terminal", "counts", "kind", "provider", "status", "no-quota", "quota"],
    )
    def test_each_difference_fails(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(AssertionError, match=message):
            assert_verdict_matches(verdict_for(QUOTA, **changes), QUOTA, provider="acme")

    def test_quota_info_is_only_required_for_quota(self) -> None:
        verdict = verdict_for(RATE_LIMIT, quota=None)
        assert_verdict_matches(verdict, RATE_LIMIT, provider="acme")

    @pytest.mark.parametrize(
        ("changes", "where"),
        [
            ({"detail": f"APIStatusError: key {SECRET}"}, "detail"),
            ({"hint": f"check {SECRET}"}, "hint"),
            ({"public_message": SECRET}, "public_message"),
            ({"quota": QuotaInfo(quota_type="llm", category=SECRET)}, r"as_dict\(\)"),
            ({"quota": QuotaInfo(quota_type="llm", usage={SECRET: 1})}, r"as_dict\(\)"),
            ({"detail": f"key ...{SECRET[-12:]}"}, "detail"),
            ({"hint": f"key {SECRET[5:17]}..."}, "hint"),
        ],
        ids=["detail", "hint", "public", "quota", "usage-key", "tail", "middle"],
    )
    def test_any_leak_of_a_secret_fails(self, changes: dict[str, Any], where: str) -> None:
        """The secret, or any 12 characters of it in a row, anywhere in the verdict."""
        with pytest.raises(AssertionError, match=f"{where} leaks a secret"):
            assert_verdict_matches(
                verdict_for(QUOTA, **changes), QUOTA, provider="acme", secrets=["other", SECRET]
            )

    def test_short_runs_and_masked_keys_pass(self) -> None:
        """Eleven characters, or a masked key, are not a leak."""
        verdict = verdict_for(QUOTA, detail=f"key {SECRET[:11]}****{SECRET[-4:]}")
        assert_verdict_matches(verdict, QUOTA, provider="acme", secrets=[SECRET])

    def test_secrets_are_optional(self) -> None:
        verdict = verdict_for(QUOTA, detail=SECRET)
        assert_verdict_matches(verdict, QUOTA, provider="acme")


class TestClassifierIsTotal:
    def test_total_classifier_passes(self) -> None:
        check_classifier_is_total(acme, kind=Kind.LLM, label=LABEL, max_examples=50)

    def test_non_verdict_answer_fails(self) -> None:
        def sloppy(facts: ErrorFacts) -> Verdict | None:
            return "rate limited" if facts.status_code else None  # type: ignore[return-value]

        with pytest.raises(AssertionError, match="answered 'rate limited'"):
            check_classifier_is_total(sloppy, kind=Kind.LLM, label=LABEL, max_examples=50)

    def test_raising_classifier_fails(self) -> None:
        """A classifier that trusts the body's shape is found out."""

        def trusting(facts: ErrorFacts) -> Verdict | None:
            if isinstance(facts.body, Mapping):
                return acme(facts) if facts.body["error"] else None  # KeyError without one
            return None

        with pytest.raises(KeyError, match="error"):
            check_classifier_is_total(trusting, kind=Kind.LLM, label=LABEL, max_examples=200)

    def test_messages_strategy_is_used(self) -> None:
        def picky(facts: ErrorFacts) -> Verdict | None:
            if "acme says:" in facts.message:
                raise ValueError(facts.message)
            return None

        messages = st.just("acme says: no")
        with pytest.raises(ValueError, match="acme says"):
            check_classifier_is_total(
                picky, kind=Kind.TTS, label=None, messages=messages, max_examples=10
            )


class TestNamespaces:
    def test_kit_is_not_in_the_root_testing_namespace(self) -> None:
        """Application tests see builders and the simulator; the kit lives in .plugins."""
        kit = {"ProviderFixture", "FixtureServer", "assert_fixture_verdict", "error_bodies"}
        assert kit.isdisjoint(agent_guard.testing.__all__)
        assert kit.isdisjoint(dir(agent_guard.testing))


class TestErrorBodies:
    def test_bodies_use_the_known_and_extra_keys(self) -> None:
        def nested(body: object) -> bool:
            return isinstance(body, dict) and isinstance(body.get("error"), dict)

        assert nested(find(error_bodies(), nested))
        extra = find(
            error_bodies(extra_keys=["acme"]), lambda b: isinstance(b, dict) and "acme" in b
        )
        assert isinstance(extra, dict) and "acme" in extra

    def test_importing_the_kit_needs_no_hypothesis(self) -> None:
        """hypothesis is a test-only dependency: import the kit without it."""
        code = (
            "import sys; sys.modules['hypothesis'] = None\n"
            "import agent_guard.testing.plugins as t\n"
            "print(t.ProviderFixture.__name__, t.assert_fixture_verdict.__name__)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["ProviderFixture", "assert_fixture_verdict"]


@pytest.fixture
async def server() -> AsyncIterator[FixtureServer[ProviderFixture]]:
    async with FixtureServer[ProviderFixture]("/v1/chat/completions") as server:
        yield server


class TestFixtureServer:
    async def test_answers_queued_fixtures_in_order(
        self, server: FixtureServer[ProviderFixture]
    ) -> None:
        limited = replace(RATE_LIMIT, headers={"retry-after": "7"})
        server.queue(QUOTA, limited)
        url = f"{server.url}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            for fx in (QUOTA, limited, None):
                async with session.post(url, json={}) as response:
                    body = await response.json()
                    if fx is None:
                        assert response.status == 500
                        assert "nothing queued" in body["error"]
                    else:
                        assert (response.status, body) == (fx.status, fx.body)
                        assert response.headers.get("retry-after") == fx.headers.get("retry-after")

    async def test_custom_answer(self) -> None:
        async def teapot(request: web.Request, fx: ProviderFixture) -> web.StreamResponse:
            return web.Response(status=418, text=fx.id)

        async with FixtureServer("/x", respond=teapot) as server, aiohttp.ClientSession() as s:
            server.queue(QUOTA)
            async with s.post(f"{server.url}/x") as response:
                assert (response.status, await response.text()) == (418, "out_of_credits")

    async def test_url_needs_a_running_server(self) -> None:
        server = FixtureServer[ProviderFixture]("/x")
        with pytest.raises(RuntimeError, match="not running"):
            _ = server.url


def openai_fixture(**changes: Any) -> ProviderFixture:
    """A 401 from an OpenAI-compatible API: the core's generic rules answer AUTH."""
    fx = ProviderFixture(
        id="unauthorized",
        source="-",
        kind=Kind.LLM,
        label=OPENAI_LABEL,
        status=401,
        body={"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}},
        expected=Category.AUTH,
        terminal=True,
        build=lambda fx: raised(APIStatusError("unauthorized", status_code=401, body=fx.body)),
    )
    return replace(fx, **changes)


class TestAssertLLMErrorVerdict:
    """Driven by the real livekit openai plugin against a FixtureServer."""

    async def run(
        self, server: FixtureServer[ProviderFixture], fx: ProviderFixture, provider: str = "openai"
    ) -> Verdict:
        server.queue(fx)
        llm = openai.LLM(model="gpt-4o-mini", base_url=f"{server.url}/v1", api_key=SECRET)
        try:
            return await assert_llm_error_verdict(
                llm, fx, [acme], provider=provider, secrets=[SECRET]
            )
        finally:
            await llm.aclose()

    async def test_real_plugin_error_passes(self, server: FixtureServer[ProviderFixture]) -> None:
        verdict = await self.run(server, openai_fixture())
        assert (verdict.category, verdict.status_code) == (Category.AUTH, 401)

    async def test_plugin_classifier_runs_first(
        self, server: FixtureServer[ProviderFixture]
    ) -> None:
        """The acme classifier claims the body before the generic rules would (402)."""
        verdict = await self.run(server, replace(QUOTA, label=OPENAI_LABEL), provider="acme")
        assert verdict.quota is not None and verdict.quota.category == "out_of_credits"

    async def test_wrong_verdict_fails(self, server: FixtureServer[ProviderFixture]) -> None:
        with pytest.raises(AssertionError, match="provider is 'openai'"):
            await self.run(server, openai_fixture(), provider="acme")

    async def test_wrong_label_fails(self, server: FixtureServer[ProviderFixture]) -> None:
        with pytest.raises(AssertionError, match="error events labelled"):
            await self.run(server, openai_fixture(label="acme.llm.LLM"))

    async def test_drifted_reconstruction_fails(
        self, server: FixtureServer[ProviderFixture]
    ) -> None:
        """The fixture's own error() must classify like the real plugin's."""

        def drifted(fx: ProviderFixture) -> BaseException:
            return APIStatusError("limited", status_code=429, body=None)

        with pytest.raises(AssertionError, match="differs from the reconstruction"):
            await self.run(server, openai_fixture(build=drifted))
