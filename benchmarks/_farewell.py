"""Farewell first frame: from a terminal failure to the first frame of the goodbye.

One session at a time, the contenders interleaved run by run (each round in a shuffled
order), so that every contender sees the same machine. Every run is a real room-less
``AgentSession`` with the real openai LLM and TTS plugins talking HTTP to the bundled
``GatewaySimulator``, and a ``CaptureAudioOutput`` at a room's rate (24 kHz) that does
not play out in real time: what is measured is when the first frame reaches the audio
output, not how long the farewell lasts.

Each run starts the session and has one healthy turn (the agent speaks, so the HTTP
connections are warm, as in a call). Then:

* the guarded contenders get a terminal LLM failure (the gateway's 429
  ``MaxGatewayCredits``, which the guard ends the call on at once), and the time from
  that failure to the farewell's first frame is taken, both from the failing response
  (as the simulator sent it) and from the session's ``"error"`` event (what livekit and
  the openai SDK spend in between is stock's own);
* the unguarded contenders say the same farewell text with ``session.say()``: the TTS's
  own first-frame time, from the call to the first frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import openai as openai_sdk
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.plugins import openai

from agent_guard import GuardPolicy, guard
from agent_guard._audio import decode_file, in_memory, presynthesized, resample
from agent_guard._policy import DEFAULT_ERROR_MESSAGE, DEFAULT_FAREWELL_AUDIO
from agent_guard.testing import CaptureAudioOutput, GatewaySimulator, QuotaExceeded, Reply
from agent_guard.testing import guarded_close as wait_guarded_close
from benchmarks._report import environment, percentile, table

__all__ = ["CONTENDERS", "Outcome", "run"]

API_KEY = "sk-bench-not-a-real-key"
#: A room's audio output rate (``RoomOutputOptions``): the packaged recordings are
#: 16 kHz, OpenAI's TTS 24 kHz.
OUTPUT_RATE = 24000
TEXT = DEFAULT_ERROR_MESSAGE
#: Raw PCM rather than the plugin's default mp3: the simulator spends ~25 ms of CPU
#: encoding mp3 before the first byte, and its variance under load (p95 tens of ms)
#: would drown the few milliseconds between the spoken farewell and the TTS's own. The
#: mp3 contenders show what a time to first audio that grows with the text does to the
#: one-request question.
RESPONSE_FORMAT = "pcm"
#: Bound on anything a run waits for; a run that hits it is reported, not hidden.
WAIT = 10.0
#: Issue #14: a recorded or pre-synthesised farewell's first frame within this of the
#: failure (median), a spoken one within this of the TTS's own first frame.
TARGET_READY = 0.005
TARGET_SPOKEN = 0.005
#: Default runs per contender: the section takes about a minute on the 2-core machine.
REPEAT = 40

How = Literal["guard", "floor", "say", "say_one_request"]


@dataclass(frozen=True)
class Contender:
    key: str
    title: str
    how: How
    policy: Callable[[], GuardPolicy] | None = None
    source: str | None = None
    """The farewell source the guard must report (checked on every run)."""
    voice: str = "alloy"
    response_format: str = RESPONSE_FORMAT


CONTENDERS: tuple[Contender, ...] = (
    Contender(
        "recorded",
        "guard: recorded",
        "guard",
        lambda: GuardPolicy(farewell_audio=DEFAULT_FAREWELL_AUDIO, fleet=None),
        source="recording",
    ),
    Contender(
        "presynthesized",
        "guard: presynthesised",
        "guard",
        lambda: GuardPolicy(presynthesize=True, fleet=None),
        source="presynthesized",
        # Its own voice: the presynthesis cache is per worker and keyed by voice, and the
        # spoken contender must not find the farewell already synthesised.
        voice="echo",
    ),
    Contender(
        "spoken",
        "guard: spoken",
        "guard",
        lambda: GuardPolicy(presynthesize=False, fleet=None),
        source="tts",
    ),
    Contender("floor", "livekit floor: listener says frames", "floor"),
    Contender("tts_own", "TTS own: `say(text)`", "say"),
    Contender("tts_one_request", "TTS own: one request", "say_one_request"),
    Contender("tts_own_mp3", "TTS own, mp3: `say(text)`", "say", response_format="mp3"),
    Contender(
        "tts_one_request_mp3", "TTS own, mp3: one request", "say_one_request", response_format="mp3"
    ),
)


@dataclass
class Outcome:
    contender: str
    round: int
    first_frame: float | None
    """Seconds to the first farewell frame: from the failing response (guarded), from
    the ``say()`` call (unguarded)."""
    from_event: float | None = None
    """Guarded: from the session's ``"error"`` event to the first farewell frame."""
    tts_requests: int = 0
    """TTS requests the farewell made."""
    problems: list[str] = field(default_factory=list)


def _client(base_url: str) -> openai_sdk.AsyncClient:
    """One SDK client per model kind for the whole section, like a worker's.

    Building one costs ~50 ms (an SSL context, for plain HTTP to loopback): per run, it
    would be most of the section's time, and it happens before anything is measured.
    """
    return openai_sdk.AsyncClient(api_key=API_KEY, base_url=base_url, max_retries=0)


@dataclass
class _Env:
    sim: GatewaySimulator
    llm_client: openai_sdk.AsyncClient
    tts_client: openai_sdk.AsyncClient
    recording: Sequence[rtc.AudioFrame]
    """The packaged recording at the output's rate, for the floor."""

    def session(self, voice: str, response_format: str) -> AgentSession[Any]:
        return AgentSession(
            llm=openai.LLM(model="gpt-4o-mini", client=self.llm_client),
            tts=openai.TTS(
                model="gpt-4o-mini-tts",
                voice=voice,
                client=self.tts_client,
                response_format=response_format,
            ),
            vad=None,
            turn_handling={"turn_detection": "manual"},
        )


async def _ready(contender: Contender, session: AgentSession[Any]) -> bool:
    """Until the guard's preparation (run from ``session.start()``) is over: a worker is
    up for a while before a failure. False if it did not finish in time."""

    def done() -> bool:
        if contender.key == "recorded":
            frames = in_memory(DEFAULT_FAREWELL_AUDIO, OUTPUT_RATE)
            return frames is not None and frames[0].sample_rate == OUTPUT_RATE
        if contender.key == "presynthesized":
            assert session.tts is not None
            return presynthesized(session.tts, TEXT) is not None
        return True

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT):
            while not done():  # noqa: ASYNC110 - nothing to wait on: the guard's own task
                await asyncio.sleep(0.005)
    return done()


def _floor(session: AgentSession[Any], frames: Sequence[rtc.AudioFrame]) -> Callable[[Any], None]:
    """The least any listener can do with livekit's API: on the first error, interrupt
    and say frames that are already at the output's rate, right there in the emit."""
    said: list[bool] = []

    def on_error(_: Any) -> None:
        if not said:
            said.append(True)
            session.interrupt(force=True)
            session.say(TEXT, audio=_iterate(frames), allow_interruptions=False)

    return on_error


async def _iterate(frames: Sequence[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame


def _first_after(out: CaptureAudioOutput, t: float) -> float | None:
    return next((f.at for f in out.frames if f.at > t), None)


async def _guarded_run(env: _Env, c: Contender, round_: int) -> Outcome:
    sim = env.sim
    sim.llm.default = Reply("Sure.")
    session = env.session(c.voice, c.response_format)
    if c.policy is not None:
        guard(session, c.policy())
    event_at: list[float] = []
    # What an app's listener sees: just before the guard decides (it takes the error
    # after the listeners), and before the floor's listener acts.
    session.on("error", lambda _: event_at.append(time.monotonic()))
    if c.policy is None:
        session.on("error", _floor(session, env.recording))
    out = CaptureAudioOutput(realtime=False, sample_rate=OUTPUT_RATE)
    session.output.audio = out
    outcome = Outcome(c.key, round_, None)
    await session.start(Agent(instructions="Be brief."))
    try:
        await session.run(user_input="Hello?")
        if not await _ready(c, session):
            outcome.problems.append("the guard's preparation did not finish")
        gc.collect()  # not inside the measured path (same for every contender)
        armed, before = time.monotonic(), len(sim.requests)
        sim.llm.default = QuotaExceeded(category="MaxGatewayCredits")
        with contextlib.suppress(Exception):
            await session.run(user_input="Are you there?")
        if c.policy is None:
            await _floor_played(out, armed)
            closed = None
        else:
            closed = await wait_guarded_close(session, within=WAIT)
        failed = next(
            (
                r.responded_at
                for r in sim.requests[before:]
                if r.endpoint == "llm" and r.status is not None and r.status >= 400
            ),
            None,
        )
        first = _first_after(out, armed)
        if failed is not None and first is not None:
            outcome.first_frame = first - failed
        if event_at and first is not None:
            outcome.from_event = first - event_at[0]
        outcome.tts_requests = sum(r.endpoint == "tts" for r in sim.requests[before:])
        if first is None:
            outcome.problems.append("nothing was heard")
        if closed is None:
            return outcome
        if closed.source != c.source:
            outcome.problems.append(f"farewell source {closed.source}, expected {c.source}")
        if closed.reason.value != "error":
            outcome.problems.append(f"closed with reason {closed.reason.value}")
        if closed.farewell is None or not closed.farewell.completed:
            outcome.problems.append("the farewell did not play to its end")
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WAIT):
                await session.aclose()
    return outcome


async def _floor_played(out: CaptureAudioOutput, since: float) -> None:
    """Until the floor's farewell has been captured to its end (bounded)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WAIT):
            while not any(  # noqa: ASYNC110 - the listener's handle is not ours to await
                s.finished_at is not None and s.started_at > since for s in out.segments
            ):
                await asyncio.sleep(0.005)


async def _synthesised(tts: Any, text: str) -> AsyncIterator[rtc.AudioFrame]:
    async with tts.synthesize(text) as stream:
        async for ev in stream:
            yield ev.frame


async def _say_run(env: _Env, c: Contender, round_: int) -> Outcome:
    sim = env.sim
    sim.llm.default = Reply("Sure.")
    session = env.session(c.voice, c.response_format)
    out = CaptureAudioOutput(realtime=False, sample_rate=OUTPUT_RATE)
    session.output.audio = out
    outcome = Outcome(c.key, round_, None)
    await session.start(Agent(instructions="Be brief."))
    try:
        await session.run(user_input="Hello?")
        gc.collect()
        before = len(sim.requests)
        called = time.monotonic()
        if c.how == "say":
            handle = session.say(TEXT)
        else:
            handle = session.say(TEXT, audio=_synthesised(session.tts, TEXT))
        async with asyncio.timeout(WAIT):
            await handle.wait_for_playout()
        first = _first_after(out, called)
        outcome.first_frame = None if first is None else first - called
        outcome.tts_requests = sum(r.endpoint == "tts" for r in sim.requests[before:])
        if first is None:
            outcome.problems.append("nothing was heard")
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(WAIT):
                await session.aclose()
    return outcome


async def run_all(
    repeat: int,
    contenders: Sequence[Contender] = CONTENDERS,
    progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """``repeat`` rounds after one warm-up round; each round runs every contender once,
    one session at a time, in a shuffled (seeded) order."""
    async with GatewaySimulator() as sim:
        recording = resample(decode_file(DEFAULT_FAREWELL_AUDIO), OUTPUT_RATE)
        env = _Env(sim, _client(sim.base_url), _client(sim.base_url), recording)
        try:
            order = random.Random(14)
            outcomes: list[Outcome] = []
            for round_ in range(-1, repeat):
                plan = list(contenders)
                order.shuffle(plan)
                for c in plan:
                    if c.how in ("guard", "floor"):
                        outcome = await _guarded_run(env, c, round_)
                    else:
                        outcome = await _say_run(env, c, round_)
                    if round_ >= 0:  # round -1 warms up imports, caches and pools
                        outcomes.append(outcome)
                if round_ == -1:
                    # What survives the warm-up lives until the end: out of the collector's
                    # way, a collection before each failure is cheap.
                    gc.collect()
                    gc.freeze()
                if progress is not None:
                    progress(round_ + 1, repeat)
        finally:
            gc.unfreeze()
            await env.llm_client.close()
            await env.tts_client.close()
    return outcomes


# -- report ---------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _stats(values: Sequence[float]) -> tuple[str, str]:
    if not values:
        return "—", "—"
    return _ms(statistics.median(values)), _ms(percentile(values, 95))


def _values(outcomes: Sequence[Outcome], key: str, attr: str = "first_frame") -> list[float]:
    return [v for o in outcomes if o.contender == key and (v := getattr(o, attr)) is not None]


def _paired(outcomes: Sequence[Outcome], a: str, b: str) -> list[float]:
    """``a`` minus ``b``, round by round (the two ran in the same round, a second apart)."""
    by_round: dict[int, dict[str, float]] = {}
    for o in outcomes:
        if o.first_frame is not None:
            by_round.setdefault(o.round, {})[o.contender] = o.first_frame
    return [r[a] - r[b] for r in by_round.values() if a in r and b in r]


def report(
    outcomes: Sequence[Outcome],
    *,
    repeat: int,
    elapsed: float,
    contenders: Sequence[Contender] = CONTENDERS,
) -> str:
    rows: list[tuple[str, ...]] = [
        (
            "contender",
            "runs",
            "first frame, median",
            "p95",
            "from the error event, median",
            "p95",
            "TTS requests",
        )
    ]
    for c in contenders:
        mine = [o for o in outcomes if o.contender == c.key]
        med, p95 = _stats(_values(outcomes, c.key))
        ev_med, ev_p95 = (
            _stats(_values(outcomes, c.key, "from_event"))
            if c.how in ("guard", "floor")
            else ("—", "—")
        )
        requests = sorted({o.tts_requests for o in mine})
        rows.append(
            (c.title, str(len(mine)), med, p95, ev_med, ev_p95, "/".join(map(str, requests)))
        )
    keys = {c.key for c in contenders}
    lines: list[str] = []
    if {"spoken", "tts_own"} <= keys and (paired := _paired(outcomes, "spoken", "tts_own")):
        spoken, own = _values(outcomes, "spoken"), _values(outcomes, "tts_own")
        lines.append(
            "- **spoken − TTS own**, round by round (the two ran in the same round, a second "
            "apart, which takes the machine's drift out): median "
            f"{_ms(statistics.median(paired))}, p95 {_ms(percentile(paired, 95))}; "
            "difference of the medians: "
            f"{_ms(statistics.median(spoken) - statistics.median(own))}."
        )
    guarded = [
        o.first_frame - o.from_event
        for o in outcomes
        if o.first_frame is not None and o.from_event is not None
    ]
    if guarded:
        lines.append(
            "- **failing response → error event** (httpx, the openai SDK and livekit, before "
            f"any listener): median {_ms(statistics.median(guarded))}, p95 "
            f"{_ms(percentile(guarded, 95))}."
        )
    for suffix, fmt in (("", "pcm"), ("_mp3", "mp3")):
        one_key, own_key = f"tts_one_request{suffix}", f"tts_own{suffix}"
        if {one_key, own_key} <= keys and (paired := _paired(outcomes, one_key, own_key)):
            lines.append(
                f"- **one TTS request − livekit's sentence split** ({fmt}), round by round: "
                f"median {_ms(statistics.median(paired))}, p95 {_ms(percentile(paired, 95))} "
                "(positive: the whole farewell in one request is slower)."
            )
    targets: list[str] = []
    for key in ("recorded", "presynthesized"):
        if key in keys and (values := _values(outcomes, key)):
            median = statistics.median(values)
            verdict = "met" if median <= TARGET_READY else "NOT met"
            targets.append(
                f"- {key}: median {_ms(median)} from the failing response "
                f"(target ≤ {_ms(TARGET_READY)}): {verdict}."
            )
    if {"spoken", "tts_own"} <= keys and (paired := _paired(outcomes, "spoken", "tts_own")):
        over = statistics.median(paired)
        verdict = "met" if over <= TARGET_SPOKEN else "NOT met"
        targets.append(
            f"- spoken: {_ms(over)} over the TTS's own first frame, round by round (median; "
            f"target ≤ {_ms(TARGET_SPOKEN)}): {verdict}."
        )
    problems = [
        f"- FAILED: {o.contender} (round {o.round + 1}): {p}" for o in outcomes for p in o.problems
    ]
    parts = [
        "# Farewell first frame: recorded, pre-synthesised, spoken, and the TTS's own",
        "",
        "Generated by `python -m benchmarks --sections farewell`. Do not edit by hand.",
        "",
        environment(
            repeat=f"{repeat} per contender, one session at a time, interleaved round by "
            "round (after one warm-up round)"
        ),
        f"- wall time of this section: {elapsed:.0f} s",
        "",
        "Each run is a real room-less `AgentSession` with livekit-plugins-openai LLM and TTS",
        "(PCM unless marked mp3, see the notes) talking HTTP to the bundled",
        "`GatewaySimulator`, and a",
        f"`CaptureAudioOutput(realtime=False, sample_rate={OUTPUT_RATE})` (a room's rate; no",
        "real-time playout, as only the first frame is measured). One healthy turn first (the",
        "agent speaks: connections are warm, as in a call). Then the guarded contenders get",
        "the gateway's 429 `MaxGatewayCredits` on the next LLM request, a terminal failure",
        "the guard ends the call on at once; the unguarded ones `say()` the same text.",
        "",
        "## First farewell frame",
        "",
        table(rows),
        "",
        *lines,
        "",
        "## Targets (issue #14)",
        "",
        *targets,
        "",
        "## Checks",
        "",
        *(
            problems
            or [
                "- every guarded run closed with reason `error` after its farewell played to its",
                "  end, from the expected source.",
            ]
        ),
        "",
        "## Notes",
        "",
        *NOTES,
    ]
    return "\n".join(parts)


NOTES = [
    "- **first frame**: guarded, from the failing response as the simulator sent it",
    "  (`RecordedRequest.responded_at`) to the first farewell frame the audio output",
    "  received (`CapturedFrame.at`); unguarded, from the `say()` call. *from the error",
    '  event*: from the session\'s `"error"` event (an app listener registered after the',
    "  guard), which excludes what httpx, the openai SDK and livekit's LLM stream spend",
    "  turning the response into that event (stock's own path, measured above).",
    "- **Contenders.** *guard: recorded* is",
    "  `GuardPolicy(farewell_audio=DEFAULT_FAREWELL_AUDIO)` (the packaged 16 kHz WAV,",
    "  4.7 s); *presynthesised* is `GuardPolicy(presynthesize=True)` (synthesised while TTS",
    "  was healthy; the run waits for it, and for the recording's preparation, before the",
    "  failure); *spoken* is `GuardPolicy(presynthesize=False)`: TTS says the farewell now.",
    "  All three with `fleet=None`, so that each run's failure is the provider's own",
    "  response, not the fleet breaker's refusal of a known-exhausted account. *livekit",
    '  floor* is what any `"error"` listener can do at best with livekit\'s API: on the',
    "  first error event, `session.interrupt(force=True)` and `session.say(text,",
    "  audio=frames)`, right there in the emit, with the packaged recording already at the",
    "  output's rate; the guard's distance to it is what classifying, deciding and its",
    "  teardown task cost. *TTS own: `say(text)`* is an unguarded session saying the same",
    "  66-character farewell; livekit",
    "  splits it into sentences for a non-streaming TTS (openai's `tts` is one), one",
    "  request each, in turn. *TTS own: one request* says it with",
    "  `say(text, audio=tts.synthesize(text))`: the whole farewell in one request.",
    "- **TTS format.** Every contender but the *mp3* ones asks for raw PCM: the simulator",
    "  encodes a request's whole audio before its first byte, and mp3 (the plugin's",
    "  default) costs it tens of milliseconds of CPU whose variance under load would drown",
    "  the few milliseconds between the spoken farewell and the TTS's own.",
    "- **One request, or one per sentence.** With PCM the simulator's time to first audio",
    "  hardly depends on the text (a real streaming TTS's depends mostly on the model):",
    "  one request can only save livekit's sentence adapter. With mp3 it grows with the",
    "  text (as with a TTS that synthesises a whole request before answering): the first",
    "  sentence alone is ready much sooner. The guard therefore keeps livekit's path",
    "  (`say(text)`, with the agent's `tts_node` and text transforms), which is never far",
    "  behind and is far ahead when synthesis time grows with the text.",
]


async def run(*, repeat: int = REPEAT, progress: Callable[[int, int], None] | None = None) -> str:
    start = time.monotonic()
    outcomes = await run_all(repeat, progress=progress)
    return report(outcomes, repeat=repeat, elapsed=time.monotonic() - start)
