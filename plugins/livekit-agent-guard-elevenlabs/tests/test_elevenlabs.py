"""agent_guard_elevenlabs: every documented ElevenLabs failure gets the right Verdict.

The errors are built along livekit-plugins-elevenlabs' own paths (HTTP STT with body,
HTTP TTS without, websocket frames), see ``fixtures``.
"""

from __future__ import annotations

import pytest
from agent_guard_elevenlabs import CLASSIFIERS
from agent_guard_elevenlabs import classify as classify_only
from elevenlabs_fixtures import API_KEY, FIXTURES, TTS_LABEL, Fixture
from livekit.agents import APIError, APIStatusError

from agent_guard import Category, Kind, classify
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.testing.plugins import assert_fixture_verdict, check_classifier_is_total

CHAIN = (*CLASSIFIERS, *DEFAULT_CLASSIFIERS)
IDS = [fx.id for fx in FIXTURES]


class TestFixtures:
    @pytest.mark.parametrize("fx", FIXTURES, ids=IDS)
    def test_verdict(self, fx: Fixture) -> None:
        """The livekit-shaped exception classifies as documented."""
        assert_fixture_verdict(fx, CLASSIFIERS, provider="elevenlabs", secrets=[API_KEY])

    def test_bodyless_401_hint_names_both_causes(self) -> None:
        """The HTTP TTS 401 cannot tell quota from key; the hint says so."""
        (fx,) = [f for f in FIXTURES if f.id == "tts_http_401_bodyless"]
        verdict = assert_fixture_verdict(fx, CLASSIFIERS, provider="elevenlabs")
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


def test_classifier_is_total() -> None:
    """Whatever the body, message or chain, the classifier answers a Verdict or None."""
    check_classifier_is_total(classify_only, kind=Kind.TTS, label=TTS_LABEL)
