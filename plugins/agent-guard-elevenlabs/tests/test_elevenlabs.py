"""agent_guard_elevenlabs: every documented ElevenLabs failure gets the right Verdict.

The errors are built along livekit-plugins-elevenlabs' own paths (HTTP STT with body,
HTTP TTS without, websocket frames), see ``fixtures``.
"""

from __future__ import annotations

import pytest
from agent_guard_elevenlabs import CLASSIFIERS
from agent_guard_elevenlabs import classify as classify_only
from agent_guard_elevenlabs.fixtures import API_KEY, FIXTURES, TTS_LABEL, Fixture
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.agents import APIError, APIStatusError

from agent_guard import DEFAULT_CLASSIFIERS, Category, Kind, Verdict, classify
from agent_guard._classify import facts_from

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


def check(fx: Fixture, verdict: Verdict) -> None:
    assert (verdict.category, verdict.terminal) == (fx.expected, fx.terminal)
    assert verdict.provider == "elevenlabs"
    assert verdict.counts is True
    assert verdict.status_code == fx.status
    assert verdict.kind is fx.kind
    for text in (verdict.detail, verdict.hint or "", verdict.public_message):
        assert API_KEY not in text
        assert API_KEY[3:30] not in text


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented."""
        check(fx, classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label))

    def test_bodyless_401_hint_names_both_causes(self) -> None:
        """The HTTP TTS 401 cannot tell quota from key; the hint says so."""
        (fx,) = [f for f in FIXTURES if f.id == "tts_http_401_bodyless"]
        verdict = classify(fx.error(), kind=fx.kind, classifiers=CHAIN, label=fx.label)
        assert verdict.hint is not None and "quota" in verdict.hint


class TestDefers:
    def test_bare_token_needs_an_elevenlabs_label(self) -> None:
        """APIError("quota_exceeded") from an unknown model is not claimed."""
        try:
            raise APIStatusError("Could not synthesize") from APIError(message="quota_exceeded")
        except APIStatusError as e:
            error = e
        verdict = classify(error, kind=Kind.TTS, classifiers=CHAIN, label="my.tts.TTS")
        assert verdict.category is not Category.QUOTA_EXHAUSTED
        assert verdict.provider != "elevenlabs"

    def test_bodyless_401_elsewhere_is_left_to_generic_rules(self) -> None:
        """A bodiless 401 from another provider stays the generic AUTH."""
        error = APIStatusError("Unauthorized", status_code=401)
        verdict = classify(error, kind=Kind.TTS, classifiers=CLASSIFIERS, label="x.tts.TTS")
        assert verdict.category is Category.AUTH
        assert verdict.provider != "elevenlabs"

    def test_unknown_detail_status(self) -> None:
        """An unlisted detail.status (a 400 validation error) is left alone."""
        body = {"detail": {"status": "max_character_limit_exceeded", "message": "too long"}}
        error = APIStatusError("too long", status_code=400, body=body)
        verdict = classify(error, kind=Kind.TTS, classifiers=CHAIN)
        assert verdict.category is Category.BAD_REQUEST


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
    facts = facts_from(error, kind=Kind.TTS, label=TTS_LABEL)
    verdict = classify_only(facts)
    assert verdict is None or isinstance(verdict, Verdict)
