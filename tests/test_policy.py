"""GuardPolicy and Tolerance: validated at construction, frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import NOT_GIVEN

from agent_guard import GuardPolicy, Kind, PolicyError, Tolerance
from agent_guard._policy import DEFAULT_FAREWELL_AUDIO


class TestGuardPolicy:
    """Bad input gets a clear PolicyError; good input is kept as given."""

    def test_defaults(self) -> None:
        """Defaults: apology on terminal, TTS farewell, 8 s bound, stock tolerance of 3."""
        p = GuardPolicy()
        assert p.error_message is NOT_GIVEN
        assert p.farewell_audio is None
        assert p.farewell_timeout == 8.0
        assert all(p.tolerances[k] == Tolerance(max_failures=3) for k in Kind)
        assert p.recent_verdicts == 10

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"error_message": 3}, "error_message"),
            ({"error_message": "   "}, "blank"),
            ({"farewell_timeout": 0}, "positive"),
            ({"farewell_timeout": -1.0}, "positive"),
            ({"farewell_timeout": float("nan")}, "finite"),
            ({"farewell_timeout": float("inf")}, "finite"),
            ({"farewell_timeout": 31}, "at most"),
            ({"farewell_timeout": True}, "number"),
            ({"farewell_timeout": "5"}, "number"),
            ({"farewell_audio": "/nonexistent/sorry.wav"}, "no such file"),
            ({"farewell_audio": []}, "empty"),
            ({"farewell_audio": [b"pcm"]}, "AudioFrame"),
            ({"farewell_audio": 42}, "farewell_audio"),
            ({"classifiers": (42,)}, "callables"),
            ({"tolerances": {"vision": Tolerance()}}, "unknown kind"),
            ({"tolerances": {"llm": 3}}, "Tolerance"),
            ({"tolerances": [1]}, "mapping"),
            ({"recent_verdicts": -1}, "recent_verdicts"),
            ({"recent_verdicts": 1001}, "recent_verdicts"),
            ({"recent_verdicts": 2.0}, "recent_verdicts"),
            ({"recent_verdicts": True}, "recent_verdicts"),
        ],
        ids=lambda v: str(v) if isinstance(v, str) else None,
    )
    def test_invalid(self, kwargs: dict[str, Any], match: str) -> None:
        """Each invalid field is named in the error."""
        with pytest.raises(PolicyError, match=match):
            GuardPolicy(**kwargs)

    def test_frozen_and_replace_revalidates(self) -> None:
        """Variants come from dataclasses.replace, which validates again."""
        p = GuardPolicy()
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.farewell_timeout = 3  # type: ignore[misc]
        assert dataclasses.replace(p, farewell_timeout=2.0).farewell_timeout == 2.0
        with pytest.raises(PolicyError):
            dataclasses.replace(p, farewell_timeout=0)

    def test_tolerances_merge_with_defaults_and_are_read_only(self) -> None:
        """Kinds left out keep the default; string keys are accepted."""
        p = GuardPolicy(tolerances={"tts": Tolerance.fail_fast()})
        assert p.tolerances[Kind.TTS] == Tolerance(max_failures=0)
        assert p.tolerances[Kind.LLM] == Tolerance()
        with pytest.raises(TypeError):
            p.tolerances[Kind.LLM] = Tolerance()  # type: ignore[index]

    def test_audio_sources_accepted(self, tmp_path: Path) -> None:
        """A path, frames, or a factory are valid farewell audio."""
        wav = tmp_path / "a.wav"
        wav.write_bytes(DEFAULT_FAREWELL_AUDIO.read_bytes())
        frame = rtc.AudioFrame(b"\0\0" * 480, 24000, 1, 480)

        async def gen() -> Any:
            yield frame

        for audio in (wav, str(wav), [frame], gen):
            assert GuardPolicy(farewell_audio=audio).farewell_audio is audio


class TestTolerance:
    """Tolerance bounds."""

    @pytest.mark.parametrize(
        "kwargs",
        [{"max_failures": -1}, {"max_failures": 1.5}, {"max_failures": True}, {"window": 0}],
    )
    def test_invalid(self, kwargs: dict[str, Any]) -> None:
        """Negative counts, non-ints and empty windows are refused."""
        with pytest.raises(PolicyError):
            Tolerance(**kwargs)

    def test_named_constructors(self) -> None:
        """fail_fast() and allow(n, within=) say what they mean."""
        assert Tolerance.fail_fast().max_failures == 0
        assert Tolerance.allow(2, within=30.0) == Tolerance(max_failures=2, window=30.0)
