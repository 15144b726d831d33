"""TTS stalls: the LLM answered, the caller hears nothing."""

from __future__ import annotations

from livekit.agents import CloseReason, tts

from agent_guard import Category, Kind, StallError
from agent_guard._policy import DEFAULT_STALL_MESSAGE
from agent_guard.testing import GatewaySimulator, Hang, Reply, SilentSpeech, Speech
from tests.helpers import chat_texts, spoken
from tests.watchdog.helpers import (
    BOUND,
    SHORT_NOTICE,
    guarded_session,
    heard_after,
    heard_since,
    say_turn,
    wait_until,
)


async def test_tts_hang_plays_the_recording_then_retries(sim: GatewaySimulator) -> None:
    """Text but no audio: a ``tts`` stall; the notice is recorded, since TTS is what stalled."""
    sim.llm.default = Reply("Here is your answer.")
    sim.tts.script(Hang(after_headers=True))
    sim.tts.default = Speech()
    session, g, out = await guarded_session(sim)

    at = say_turn(session, "hi")
    await wait_until(lambda: "Here is your answer." in chat_texts(session))

    assert (waited := heard_after(out, at)) is not None and waited < BOUND
    assert [(v.kind, v.category) for v in g.verdicts] == [(Kind.TTS, Category.STALLED)]
    # The notice was not synthesised: TTS was only asked for the reply, twice.
    assert DEFAULT_STALL_MESSAGE not in spoken(sim)
    assert len(sim.requests_for("llm")) == 2
    assert g.decision is None
    await session.aclose()


async def test_silent_tts_is_cut_short_and_counted_once(sim: GatewaySimulator) -> None:
    """200s with no audio, which livekit retries (0.1 s, then 2 s): the notice, no retry.

    livekit reports each silent answer (recoverable "no audio frames were pushed"), so the
    turn is a failure livekit is retrying: the stall stands for it, counted once, and
    the guard does not retry it once more.
    """
    sim.llm.default = Reply("Here is your answer.")
    sim.tts.default = SilentSpeech()
    session, g, out = await guarded_session(sim)

    at = say_turn(session, "hi")
    await wait_until(heard_since(out, at))
    await wait_until(lambda: session.current_speech is None, within=5)

    assert (waited := heard_after(out, at)) is not None and waited < BOUND
    counted = [(v.kind, v.category) for v in g.verdicts if v.counts and not v.recoverable]
    assert counted == [(Kind.TTS, Category.STALLED)]
    assert "retrying after unknown" in g.verdicts[-1].detail
    assert len(sim.requests_for("llm")) == 1
    assert len(sim.requests_for("tts")) == 2  # the first answer and livekit's 0.1 s retry
    await session.aclose()


async def test_tts_that_never_speaks_closes_with_a_recorded_farewell(
    sim: GatewaySimulator,
) -> None:
    """TTS hangs on every request: the 3rd stalled turn closes; the farewell is recorded."""
    sim.llm.default = Reply("Here is your answer.")
    sim.tts.default = Hang(after_headers=True)
    session, g, out = await guarded_session(sim, farewell_timeout=1.0, stall_message=SHORT_NOTICE)

    for turn in range(3):
        at = say_turn(session, f"turn {turn}")
        await wait_until(heard_since(out, at))
        if g.decision is None:
            await wait_until(lambda: session.current_speech is None, within=5)

    ev = await g.wait_closed()
    assert ev.reason is CloseReason.ERROR
    assert isinstance(ev.error, tts.TTSError)
    assert isinstance(ev.error.error, StallError)
    assert g.decision is not None and g.decision.verdict.kind is Kind.TTS
    assert g.farewell is not None  # the recording, cut at farewell_timeout
