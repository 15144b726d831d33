"""redact() and sanitize_hint(): secrets out, markup out, bounded, fast on hostile input."""

from __future__ import annotations

import time

import pytest

from agent_guard._redact import redact, sanitize_hint

OPENAI_KEY = "sk-proj-TESTSECRET0123456789abcdefABCDEF"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlMTIzNDU2"
GOOGLE_KEY = "AIzaSyTESTSECRET0123456789abcdefABCD"
HEX_SECRET = "0123456789abcdef0123456789abcdef01234567"
LIVEKIT_SECRET = "f3XbQ9aZp2Lk7mNq1RsT8uVw4xYz0AbCdEfGhIjK"


class TestRedact:
    """Every credential shape providers echo is replaced, ordinary provider prose is kept."""

    @pytest.mark.parametrize(
        ("text", "secret", "expected"),
        [
            (f"Incorrect API key provided: {OPENAI_KEY}.", OPENAI_KEY, "provided: sk-…[redacted]."),
            ("key sk-ant-api03-TESTSECRETabcdef", "TESTSECRET", "key sk-…[redacted]"),
            ("invalid key sk_car_TESTSECRET42", "TESTSECRET", "sk_…[redacted]"),
            (f"Authorization: Bearer {JWT}", JWT, "Authorization: [redacted]"),
            (f"header Bearer {HEX_SECRET} sent", HEX_SECRET, "Bearer [redacted] sent"),
            (f"Token {HEX_SECRET}", HEX_SECRET, "Token [redacted]"),
            (f"xi-api-key: {HEX_SECRET[:20]}", HEX_SECRET[:20], "xi-api-key: [redacted]"),
            (
                f"GET /v1?api_key={HEX_SECRET[:12]}&alt=json",
                HEX_SECRET[:12],
                "api_key=[redacted]&alt",
            ),
            (f"GET /v1?key={GOOGLE_KEY}", GOOGLE_KEY, "key=[redacted]"),
            (f"bad key {GOOGLE_KEY} here", GOOGLE_KEY, "AIza…[redacted] here"),
            (f'{{"api_key": "{OPENAI_KEY}"}}', OPENAI_KEY, '{"api_key": "[redacted]"}'),
            ("{'password': 'hunter2hunter2'}", "hunter2", "'password': '[redacted]'"),
            (f"token {JWT} expired", JWT, "[redacted] expired"),
            (
                f"LIVEKIT_API_SECRET={LIVEKIT_SECRET}",
                LIVEKIT_SECRET,
                "LIVEKIT_API_SECRET=[redacted]",
            ),
            (f"signed with {LIVEKIT_SECRET}", LIVEKIT_SECRET, "signed with [redacted]"),
            (f"digest {HEX_SECRET}", HEX_SECRET, "digest [redacted]"),
        ],
        ids=[
            "openai-401-echo",
            "anthropic",
            "cartesia",
            "bearer-jwt",
            "bearer-hex",
            "deepgram-token",
            "xi-api-key-header",
            "api_key-query",
            "key-query",
            "google-bare",
            "json-field",
            "python-repr-field",
            "bare-jwt",
            "livekit-env-secret",
            "livekit-bare-secret",
            "long-hex",
        ],
    )
    def test_secret_removed(self, text: str, secret: str, expected: str) -> None:
        """The secret is gone and the redacted form reads naturally."""
        result = redact(text)
        assert secret not in result
        assert expected in result

    @pytest.mark.parametrize(
        "text",
        [
            "LLM token credit quota exceeded, category: MaxGatewayCredits",
            "message='Error code: 429', status_code=429, retryable=True, request_id=req_fake_429",
            "failed to generate LLM completion after 4 attempts",
            "POST https://api.openai.com/v1/chat/completions max_tokens=128",
            "inference_quota_exceeded_for_the_current_billing_cycle_of_project",
            "livekit.plugins.openai.llm.LLM",
        ],
        ids=["gateway-text", "livekit-status", "retries", "url", "long-identifier", "label"],
    )
    def test_prose_kept(self, text: str) -> None:
        """Provider prose, URLs and identifiers without credentials pass unchanged."""
        assert redact(text) == text

    @pytest.mark.parametrize(
        "text",
        ["a\x00b\x1b[31mc\x7fd\x85e", "bidi\u202eoverride\u200bzero", "line\nbreak\ttab\r"],
        ids=["c0-c1", "format-chars", "whitespace-controls"],
    )
    def test_control_characters_removed(self, text: str) -> None:
        """No control or invisible format character survives (log injection)."""
        result = redact(text)
        assert all(c.isprintable() for c in result)

    @pytest.mark.parametrize(
        ("text", "limit"),
        [("word " * 1000, 500), ("x" * 100_000, 500), ("ab " * 50, 20), ("é" * 600, 100)],
        ids=["words", "one-huge-token", "small-limit", "non-ascii"],
    )
    def test_bounded_with_ellipsis(self, text: str, limit: int) -> None:
        """Long text is cut to ``limit`` characters, ellipsis included."""
        result = redact(text, limit=limit)
        assert len(result) <= limit
        assert result.endswith("…")

    def test_secret_at_window_edge_not_leaked(self) -> None:
        """A secret straddling the pre-regex window is dropped, not half-shown."""
        text = "x " * 999 + HEX_SECRET * 3
        assert HEX_SECRET[:10] not in redact(text)

    def test_zero_limit(self) -> None:
        """A non-positive limit gives an empty string."""
        assert redact("anything", limit=0) == ""

    @pytest.mark.parametrize(
        "text",
        [
            "a" * 200_000,
            "a1" * 100_000,
            "<" * 200_000,
            "x=" * 100_000,
            "sk-" * 70_000,
            "[(" * 90_000,
        ],
        ids=["letters", "alnum", "angles", "fields", "sk-prefixes", "brackets"],
    )
    def test_hostile_input_is_fast(self, text: str) -> None:
        """Input is bounded before any regex: megabyte-scale input costs milliseconds."""
        start = time.perf_counter()
        redact(text)
        sanitize_hint(text)
        assert time.perf_counter() - start < 0.05


class TestSanitizeHint:
    """A gateway hint becomes plain, short text: no markup a TTS or frontend would interpret."""

    @pytest.mark.parametrize(
        ("hint", "expected"),
        [
            ("Wait for the next billing cycle.", "Wait for the next billing cycle."),
            ("<b>Upgrade</b> your <i>plan</i>", "Upgrade your plan"),
            ('<speak>Top up<break time="1s"/> now</speak>', "Top up now"),
            ("&lt;script&gt;alert(1)&lt;/script&gt;Top up", "alert(1) Top up"),
            ("See [the docs](https://docs.livekit.io/agents) now", "See the docs now"),
            ("**Upgrade** your _plan_ or `quota_type`", "Upgrade your plan or quota_type"),
            ("# Quota\n> exhausted\n- upgrade", "Quota exhausted upgrade"),
            ("  spread \n\n across\t lines  ", "spread across lines"),
            (f"Use key {OPENAI_KEY} instead", "Use key sk-…[redacted] instead"),
            ("retry in < 5 s", "retry in 5 s"),
        ],
        ids=[
            "plain",
            "html",
            "ssml",
            "entities",
            "md-link",
            "md-emphasis",
            "md-blocks",
            "whitespace",
            "secret",
            "stray-angles",
        ],
    )
    def test_sanitized(self, hint: str, expected: str) -> None:
        """Markup is removed and whitespace collapsed, the words are kept."""
        assert sanitize_hint(hint) == expected

    def test_bounded(self) -> None:
        """The hint is cut to ``limit`` characters, ellipsis included."""
        result = sanitize_hint("upgrade " * 100, limit=50)
        assert len(result) <= 50
        assert result.endswith("…")
