"""GuardPolicy: what the guard does, as frozen configuration validated at construction.

Variants are made with :func:`dataclasses.replace` (which re-runs validation), never by
mutation: one policy object is typically shared by every session of a worker.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, TypeAlias

from livekit import rtc
from livekit.agents import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from agent_guard._errors import PolicyError
from agent_guard._facts import Classifier
from agent_guard._hooks import Hook
from agent_guard._signal import FrontendSignal
from agent_guard._verdict import Category, Kind, Verdict
from agent_guard.classifiers import DEFAULT_CLASSIFIERS
from agent_guard.instrumentation import log_verdict

__all__ = [
    "DEFAULT_ERROR_MESSAGE",
    "DEFAULT_FAREWELL_AUDIO",
    "DEFAULT_STALL_AUDIO",
    "DEFAULT_STALL_MESSAGE",
    "MAX_FAREWELL_TIMEOUT",
    "MAX_STALL_TIMEOUT",
    "Farewell",
    "FarewellAudio",
    "GuardPolicy",
    "MessageFactory",
    "Tolerance",
]

#: The close never waits longer than this for a farewell, whatever the policy says.
MAX_FAREWELL_TIMEOUT = 30.0

#: The watchdog never lets a caller wait longer than this in silence.
MAX_STALL_TIMEOUT = 60.0

FarewellAudio: TypeAlias = (
    str
    | os.PathLike[str]
    | Sequence[rtc.AudioFrame]
    | Callable[[], AsyncIterable[rtc.AudioFrame]]
    | AsyncIterable[rtc.AudioFrame]
)
"""Pre-recorded farewell audio, played with ``say(audio=...)`` so no TTS is involved.

A path (WAV, or any format livekit's PyAV decoder reads), a sequence of frames, a
factory returning a fresh async iterable per farewell, or an async iterable. A bare
async iterable (e.g. an async generator) can be consumed only once: with a policy
shared across sessions, prefer frames or a factory.
"""


#: Spoken on a terminal verdict when the policy leaves ``error_message`` NOT_GIVEN.
#: Generic on purpose: provider text (hints, error messages) is for developers.
DEFAULT_ERROR_MESSAGE = "Sorry, I can't continue right now. Please try again later. Goodbye."

#: A recording of DEFAULT_ERROR_MESSAGE (16 kHz mono WAV, 4.7 s), played when TTS cannot
#: speak and nothing else was configured. Made with:
#: ``espeak-ng -v en-us -s 180 -w raw.wav "<DEFAULT_ERROR_MESSAGE>"`` then
#: ``sox raw.wav -r 16000 -c 1 -b 16 farewell.wav silence 1 0.02 0.5% reverse
#: silence 1 0.02 0.5% reverse pad 0.05 0.25 norm -3``.
DEFAULT_FAREWELL_AUDIO = Path(__file__).parent / "assets" / "farewell.wav"

#: What the caller hears when a reply stalls (``GuardPolicy.stall_message``).
DEFAULT_STALL_MESSAGE = "Sorry, one moment."

#: A recording of DEFAULT_STALL_MESSAGE (16 kHz mono WAV, 1.5 s), made with the
#: farewell's recipe: ``espeak-ng -v en-us -s 180 -w raw.wav "Sorry, one moment."`` then
#: the same ``sox`` line, to ``one_moment.wav``.
DEFAULT_STALL_AUDIO = Path(__file__).parent / "assets" / "one_moment.wav"


@dataclass(frozen=True, slots=True)
class Farewell:
    """A farewell: ``text`` (the transcript, and the TTS input when ``audio`` is None).

    ``Farewell(text, audio=...)`` pairs a recording with the words it says: the text is
    what the transcript shows while the recording plays. :attr:`DEFAULT` is the packaged
    English apology and its recording.
    """

    text: str
    audio: FarewellAudio | None = None

    DEFAULT: ClassVar[Farewell]
    """The packaged farewell: a generic apology and its recording (played when TTS
    cannot speak and nothing else was configured)."""
    STALL: ClassVar[Farewell]
    """The packaged stall notice: "Sorry, one moment." and its recording."""

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text.strip():
            raise PolicyError("Farewell.text must be a non-blank str")
        _check_audio(self.audio)


MessageFactory: TypeAlias = Callable[[Verdict], "str | Farewell | None"]
"""Computes the farewell from the verdict that closes the session (``None``: silent)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    """How many consecutive countable failures of one kind the guard tolerates.

    The session closes on failure number ``max_failures + 1``. With ``window`` set,
    only failures within the last ``window`` seconds count. Terminal verdicts
    always close at once, whatever the tolerance.
    """

    max_failures: int = 3
    window: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int):
            raise PolicyError(f"Tolerance.max_failures must be an int, got {self.max_failures!r}")
        if self.max_failures < 0:
            raise PolicyError(f"Tolerance.max_failures must be >= 0, got {self.max_failures}")
        if self.window is not None:
            _check_seconds("Tolerance.window", self.window, upper=None)

    @classmethod
    def fail_fast(cls) -> Tolerance:
        """Close on the first countable failure."""
        return cls(max_failures=0)

    @classmethod
    def allow(cls, n: int, *, within: float | None = None) -> Tolerance:
        """Tolerate ``n`` failures (optionally: within ``within`` seconds)."""
        return cls(max_failures=n, window=within)


def _default_tolerances() -> Mapping[Kind | str, Tolerance]:
    # Same count as livekit's SessionConnectOptions.max_unrecoverable_errors=3, so a
    # guarded session tolerates transient failures exactly as long as a stock one.
    return MappingProxyType({kind: Tolerance() for kind in Kind})


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardPolicy:
    """What the guard does when a provider fails.

    Attributes:
        error_message: ``NOT_GIVEN`` speaks a generic apology when a terminal verdict
            (or a realtime model giving up) closes the session; a ``str`` is spoken
            on every close the guard makes;
            ``None`` closes silently; a callable gets the closing Verdict and returns
            text, a :class:`Farewell` (text and audio) or ``None``.
        messages: Overrides per :class:`Category` or :class:`Kind` (a category
            entry wins over a kind entry): text, or ``None`` for silence.
        speak_hint: Speak the provider's (sanitised) hint instead of the generic
            apology when ``error_message`` is NOT_GIVEN. Off by default: hints are
            written for developers, not callers.
        farewell_audio: Pre-recorded audio played instead of synthesising the
            farewell (see :data:`FarewellAudio`). ``None`` uses TTS, except when TTS
            cannot speak (it is what failed, or the session has none): then the
            pre-synthesised farewell, or the packaged default recording, is played.
        presynthesize: Synthesise the farewell text(s) once while TTS is healthy and
            cache the audio per worker (keyed by text and voice), so the farewell is
            heard in the agent's voice with no synthesis latency, even after TTS dies.
        farewell_timeout: Seconds from the decision to the close, at most: the
            farewell is cut off when it runs longer, however TTS or the audio
            output behave. Bounded by :data:`MAX_FAREWELL_TIMEOUT`.
        classifiers: The classifier chain, tried in order before the generic
            HTTP rules (which always run last).
        tolerances: Per-kind :class:`Tolerance`; kinds left out keep the default.
        stall_timeout: Seconds of dead air the watchdog allows: when the agent owes a
            reply (a user turn was committed, or ``generate_reply`` was called) and no
            agent audio reaches the output within this time, or the reply ends with
            no audio at all, the stuck generation is cancelled and a ``stalled``
            Verdict is counted toward the stalled kind's tolerance (``llm``: no first
            token; ``tts``: text but no audio; ``realtime``: no audio from the model;
            ``stt``: the user spoke and no transcript came). ``None`` turns the
            watchdog off. At most :data:`MAX_STALL_TIMEOUT`.
        stall_message: What the caller hears on a stall the session survives, so
            they are never left in silence: a str (synthesised ahead if
            ``presynthesize``, else by TTS, or the packaged recording when TTS is what
            stalled), a :class:`Farewell` (text and recording), or ``None`` for
            silence. The default is a short "Sorry, one moment." and its recording,
            which needs no TTS.
        stall_retry: Retry the stalled turn once (``generate_reply`` from the same
            conversation), so a one-off stall costs the caller a few seconds, not the
            turn. A stall right after a retry that stalled gets no further retry.
    """

    error_message: NotGivenOr[str | MessageFactory | None] = NOT_GIVEN
    messages: Mapping[Category | Kind | str, str | None] = field(default_factory=dict)
    speak_hint: bool = False
    farewell_audio: FarewellAudio | None = None
    presynthesize: bool = False
    farewell_timeout: float = 8.0
    classifiers: tuple[Classifier, ...] = DEFAULT_CLASSIFIERS
    tolerances: Mapping[Kind | str, Tolerance] = field(default_factory=_default_tolerances)
    hooks: tuple[Hook, ...] = (log_verdict,)
    signal: FrontendSignal | None = field(default_factory=FrontendSignal)
    stall_timeout: float | None = 4.0
    stall_message: str | Farewell | None = field(default_factory=lambda: Farewell.STALL)
    stall_retry: bool = True

    def __post_init__(self) -> None:
        msg = self.error_message
        if is_given(msg) and msg is not None and not isinstance(msg, str) and not callable(msg):
            raise PolicyError(
                "error_message must be NOT_GIVEN, a str, None or a callable, "
                f"got {type(msg).__name__}"
            )
        if isinstance(msg, str) and not msg.strip():
            raise PolicyError("error_message must not be blank: use None for a silent close")
        object.__setattr__(self, "messages", _normalise_messages(self.messages))
        for flag in ("speak_hint", "presynthesize", "stall_retry"):
            if not isinstance(getattr(self, flag), bool):
                raise PolicyError(f"{flag} must be a bool")
        _check_seconds("farewell_timeout", self.farewell_timeout, upper=MAX_FAREWELL_TIMEOUT)
        _check_audio(self.farewell_audio)
        classifiers = tuple(self.classifiers)
        for c in classifiers:
            if not callable(c):
                raise PolicyError(f"classifiers must be callables, got {c!r}")
        object.__setattr__(self, "classifiers", classifiers)
        object.__setattr__(self, "tolerances", _normalise_tolerances(self.tolerances))
        hooks = tuple(self.hooks)
        for h in hooks:
            if not callable(h):
                raise PolicyError(f"hooks must be callables, got {h!r}")
        object.__setattr__(self, "hooks", hooks)
        if self.signal is not None and not isinstance(self.signal, FrontendSignal):
            raise PolicyError(f"signal must be a FrontendSignal or None, got {self.signal!r}")
        if self.stall_timeout is not None:
            _check_seconds("stall_timeout", self.stall_timeout, upper=MAX_STALL_TIMEOUT)
        notice = self.stall_message
        if isinstance(notice, str):
            if not notice.strip():
                raise PolicyError("stall_message must not be blank: use None for no notice")
        elif notice is not None and not isinstance(notice, Farewell):
            raise PolicyError(
                f"stall_message must be a str, a Farewell or None, got {type(notice).__name__}"
            )


def _check_seconds(name: str, value: object, *, upper: float | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise PolicyError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if upper is not None and value > upper:
        raise PolicyError(f"{name} must be at most {upper} s, got {value}")


def _check_audio(audio: object) -> None:
    if audio is None or callable(audio) or isinstance(audio, AsyncIterable):
        return
    if isinstance(audio, str | os.PathLike):
        path = Path(audio)
        if not path.is_file():
            # Fail at configuration time, not in the middle of a failing call.
            raise PolicyError(f"farewell_audio file not found: {path}")
        return
    if isinstance(audio, Sequence) and not isinstance(audio, str | bytes):
        if not audio:
            raise PolicyError("farewell_audio must not be an empty sequence of frames")
        if not all(isinstance(f, rtc.AudioFrame) for f in audio):
            raise PolicyError("farewell_audio sequence must hold only rtc.AudioFrame")
        return
    raise PolicyError(
        "farewell_audio must be None, a path, a sequence of rtc.AudioFrame, "
        f"an async iterable of frames or a factory returning one, got {type(audio).__name__}"
    )


def _normalise_tolerances(value: object) -> Mapping[Kind | str, Tolerance]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"tolerances must be a mapping of kind to Tolerance, got {value!r}")
    merged: dict[Kind | str, Tolerance] = dict(_default_tolerances())
    for key, tol in value.items():
        try:
            kind = Kind(key)
        except ValueError:
            raise PolicyError(
                f"unknown kind {key!r} in tolerances (expected one of {[k.value for k in Kind]})"
            ) from None
        if not isinstance(tol, Tolerance):
            raise PolicyError(f"tolerances[{kind.value!r}] must be a Tolerance, got {tol!r}")
        merged[kind] = tol
    return MappingProxyType(merged)


def _normalise_messages(value: object) -> Mapping[Category | Kind | str, str | None]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"messages must be a mapping, got {value!r}")
    out: dict[Category | Kind | str, str | None] = {}
    for key, text in value.items():
        k = _message_key(key)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise PolicyError(f"messages[{key!r}] must be a non-blank str or None")
        out[k] = text
    return MappingProxyType(out)


def _message_key(key: object) -> Category | Kind:
    if isinstance(key, Category | Kind):
        return key
    # Category and Kind values never overlap, so a plain string is unambiguous.
    if isinstance(key, str):
        for enum in (Category, Kind):
            with contextlib.suppress(ValueError):
                return enum(key)
    raise PolicyError(f"messages key {key!r} is neither a Category nor a Kind")


Farewell.DEFAULT = Farewell(text=DEFAULT_ERROR_MESSAGE, audio=DEFAULT_FAREWELL_AUDIO)
Farewell.STALL = Farewell(text=DEFAULT_STALL_MESSAGE, audio=DEFAULT_STALL_AUDIO)
