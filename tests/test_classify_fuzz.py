"""Property tests: classify() is total on arbitrary, hostile, cyclic errors.

Example counts come from a hypothesis profile chosen here rather than in conftest.py:
``agent_guard.classify.ci`` (10,000 examples for the main property) when the ``CI``
environment variable is set, ``agent_guard.classify.dev`` (500) otherwise. The names are
namespaced because re-registering a profile that is currently loaded reloads it
(``settings.register_profile``), which would change every other module's settings.
Strategies stay shallow and build huge strings by repetition, so 10,000 examples take
well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import operator
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.agents import APIConnectionError, APIError, APIStatusError

from agent_guard import Category, Kind, Verdict, classify
from agent_guard._redact import redact, sanitize_hint

settings.register_profile(
    "agent_guard.classify.ci",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("agent_guard.classify.dev", max_examples=500, deadline=None)
PROFILE = settings.get_profile(
    "agent_guard.classify.ci" if os.environ.get("CI") else "agent_guard.classify.dev"
)
#: Secondary properties need fewer examples than the main one.
SMALL = settings(PROFILE, max_examples=max(PROFILE.max_examples // 10, 100))

MAX_DETAIL = 500
MAX_HINT = 200

# Seeds that hit the interesting paths: secrets, gateway text, markup, controls.
_SEEDS = [
    "x",
    "a1",
    " ",
    "sk-proj-",
    "Bearer ",
    "api_key=",
    "eyJ",
    "\x1b[31m",
    "\x00",
    "\u202e",
    "<b>",
    "](",
    "category: MaxGatewayCredits, ",
    '"code": "MaxEotRequests"',
    "quota exceeded",
    "Please try again in 17m16s",
    "retry after 86400 seconds",
    "Authorization: Basic ",
    "https://u:p@",
    "\u200b",
]
huge_text = st.builds(operator.mul, st.sampled_from(_SEEDS), st.integers(0, 40_000))
text = st.text(max_size=30) | st.sampled_from(_SEEDS) | huge_text
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | text
    | st.binary(max_size=30)
    | st.sampled_from([429, 499, "499", "inference_quota_exceeded", "MaxGatewayCredits"])
)
keys = (
    st.sampled_from(["type", "category", "hint", "quota_type", "remaining_limit", "code", "error"])
    | st.text(max_size=8)
    | st.integers()
    | st.none()
)
json_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(keys, children, max_size=4),
    max_leaves=4,
)
# Gateway fields get right- and wrong-typed values (a list is what once crashed upstream's
# frozenset membership test, livekit/agents#6012).
gateway_fields = (
    st.sampled_from(["MaxGatewayCredits", "MaxBargeInRPM", "llm", "0"])
    | scalars
    | st.lists(scalars, max_size=2)
)
gateway_bodies = st.fixed_dictionaries(
    {"type": st.just("inference_quota_exceeded")},
    optional=dict.fromkeys(
        ("category", "hint", "quota_type", "remaining_limit", "error"), gateway_fields
    ),
)
bodies = (
    json_like
    | gateway_bodies
    | st.builds(lambda b: json.dumps(b, default=repr).encode(), gateway_bodies)
)
header_names = st.sampled_from(
    ["retry-after", "Retry-After", "retry-after-ms", "X-LiveKit-Inference-Credits-Used"]
) | st.text(max_size=12)
headers = st.none() | st.integers() | st.dictionaries(header_names, scalars, max_size=4)
statuses = scalars | st.sampled_from([401, 402, 403, 408, 429, 499, 500, 503, 529, "429", 429.0])


class Raising:
    """Every attribute access raises: a property that fails on read."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


class FakeResponse:
    """An httpx-like response with arbitrary (possibly wrong-typed) attributes."""

    def __init__(self, content: object, headers: object, status_code: object) -> None:
        self.content = content
        self.text = content
        self.headers = headers
        self.status_code = status_code


class FuzzError(Exception):
    """An exception carrying whatever attributes were drawn."""


class UnprintableError(Exception):
    """An exception whose __str__ raises."""

    def __str__(self) -> str:
        raise ValueError("unprintable")


class CancellingError(Exception):
    """An exception whose __str__ and properties raise CancelledError (not our task's)."""

    def __str__(self) -> str:
        raise asyncio.CancelledError

    @property
    def body(self) -> object:
        raise asyncio.CancelledError

    @property
    def headers(self) -> object:
        raise asyncio.CancelledError


class RaisingPropertiesError(Exception):
    """An exception whose HTTP-ish properties raise."""

    @property
    def status_code(self) -> int:
        raise RuntimeError("status")

    @property
    def body(self) -> object:
        raise RuntimeError("body")

    @property
    def response(self) -> object:
        raise RuntimeError("response")

    @property
    def headers(self) -> object:
        raise RuntimeError("headers")


responses = (
    st.none()
    | st.builds(Raising)
    | st.builds(FakeResponse, bodies | text, headers, statuses)
    | scalars
)


_FACTORIES: list[Callable[[], BaseException]] = [
    FuzzError,
    UnprintableError,
    CancellingError,
    RaisingPropertiesError,
    asyncio.CancelledError,
    KeyboardInterrupt,
    TimeoutError,
    ConnectionResetError,
    APIConnectionError,
    lambda: APIError("LiveKit Inference STT returned an error"),
    lambda: APIStatusError("Error code: 429", status_code=429),
    lambda: APIStatusError("closed", status_code=1008, body="msg.data=1008 msg.extra='quota'"),
    lambda: ExceptionGroup("group", [APIStatusError("x", status_code=402), ValueError("y")]),
]


_factories = st.sampled_from(_FACTORIES)


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    """One exception of a random type with random HTTP-ish attributes."""
    factory = draw(_factories)
    error: BaseException = factory()
    if isinstance(error, FuzzError | APIError):
        for name, strategy in (
            ("status_code", statuses),
            ("status", statuses),
            ("body", bodies),
            ("headers", headers),
            ("response", responses),
        ):
            if draw(st.booleans()):
                setattr(error, name, draw(strategy))
        error.args = (draw(text),)
    return error


# Built once: a strategy made inside a draw is validated again on every example.
_error_lists = st.lists(exceptions(), min_size=1, max_size=4)
_LINKS = {n: st.none() | st.integers(0, n - 1) for n in range(1, 5)}


@st.composite
def chains(draw: st.DrawFn) -> object:
    """A head exception linked to others through __cause__/__context__, cycles allowed."""
    if draw(st.integers(0, 20)) == 0:
        return draw(scalars)  # not an exception at all, passed by mistake
    errors = draw(_error_lists)
    link = _LINKS[len(errors)]
    for error in errors:
        for name in ("__cause__", "__context__"):
            if (index := draw(link)) is not None:
                setattr(error, name, errors[index])
    return errors[0]


def _check(verdict: Verdict) -> None:
    assert isinstance(verdict, Verdict)
    assert isinstance(verdict.category, Category)
    assert len(verdict.detail) <= MAX_DETAIL
    assert verdict.detail.isprintable()
    assert verdict.hint is None or (len(verdict.hint) <= MAX_HINT and verdict.hint.isprintable())
    json.dumps(verdict.as_dict())


class TestClassifyIsTotal:
    """No error, however malformed, makes classify() raise or emit unsafe text."""

    @given(error=chains(), kind=st.sampled_from(Kind), label=st.none() | text)
    @settings(PROFILE)
    def test_any_error(self, error: Any, kind: Kind, label: str | None) -> None:
        """Any chain of any exceptions yields a well-formed, bounded, printable Verdict."""
        _check(classify(error, kind=kind, label=label))


class TestRedactionIsTotal:
    """redact() and sanitize_hint() accept any text and honour their bounds."""

    @given(value=text | st.text(), limit=st.integers(-5, 600))
    @SMALL
    def test_redact(self, value: str, limit: int) -> None:
        """Any text comes back printable and within the limit."""
        result = redact(value, limit=limit)
        assert len(result) <= max(limit, 0)
        assert result.isprintable()

    @given(value=text | st.text(), limit=st.integers(-5, 300))
    @SMALL
    def test_sanitize_hint(self, value: str, limit: int) -> None:
        """Any hint comes back printable, tag-free and within the limit."""
        result = sanitize_hint(value, limit=limit)
        assert len(result) <= max(limit, 0)
        assert result.isprintable()
        assert "<" not in result
        assert ">" not in result
