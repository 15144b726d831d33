"""The decision rules, pure: streaks, windows, epochs and restarts on an injected clock."""

from __future__ import annotations

import pytest

from agent_guard import Category, Kind, Reason, Tolerance, Verdict
from agent_guard._decide import Decider


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failure(
    kind: Kind = Kind.LLM,
    category: Category = Category.SERVER_ERROR,
    *,
    terminal: bool = False,
    counts: bool = True,
    recoverable: bool = False,
) -> Verdict:
    return Verdict(
        kind=kind, category=category, terminal=terminal, counts=counts, recoverable=recoverable
    )


def decider(clock: Clock | None = None, **tolerances: Tolerance) -> Decider:
    merged: dict[Kind | str, Tolerance] = {
        kind: tolerances.get(kind.value, Tolerance()) for kind in Kind
    }
    return Decider(merged, clock=clock or Clock())


def feed(d: Decider, verdict: Verdict) -> Reason | None:
    decision = d.decide(verdict, d.ticket(verdict.kind))
    return None if decision is None else decision.reason


class TestStreaks:
    """Countable failures close on number max_failures + 1; success resets the streak."""

    def test_closes_on_the_fourth_failed_turn_by_default(self) -> None:
        """The default tolerance matches livekit's max_unrecoverable_errors=3."""
        d = decider()
        assert [feed(d, failure()) for _ in range(4)] == [
            None,
            None,
            None,
            Reason.TOLERANCE_EXCEEDED,
        ]

    def test_success_resets_the_streak(self) -> None:
        """Three failures, a success, three failures: still open."""
        d = decider()
        for _ in range(3):
            assert feed(d, failure()) is None
        d.succeeded(Kind.LLM)
        assert [feed(d, failure()) for _ in range(3)] == [None, None, None]
        assert feed(d, failure()) is Reason.TOLERANCE_EXCEEDED

    def test_kinds_count_apart(self) -> None:
        """An STT failure does not add to the LLM streak."""
        d = decider(llm=Tolerance.allow(1), stt=Tolerance.allow(1))
        assert feed(d, failure(Kind.LLM)) is None
        assert feed(d, failure(Kind.STT)) is None
        assert feed(d, failure(Kind.LLM)) is Reason.TOLERANCE_EXCEEDED

    def test_fail_fast(self) -> None:
        d = decider(tts=Tolerance.fail_fast())
        assert feed(d, failure(Kind.TTS)) is Reason.TOLERANCE_EXCEEDED

    def test_retry_attempts_do_not_count(self) -> None:
        """recoverable=True llm/stt/tts reports are retries inside one turn."""
        d = decider(llm=Tolerance.fail_fast())
        assert feed(d, failure(recoverable=True)) is None
        assert feed(d, failure(recoverable=False)) is Reason.TOLERANCE_EXCEEDED

    def test_cancellations_never_count(self) -> None:
        d = decider(llm=Tolerance.fail_fast())
        assert feed(d, failure(category=Category.CLIENT_CANCELLED, counts=False)) is None
        assert d.decision is None


class TestWindow:
    """With a window, only failures within the last ``window`` seconds count."""

    def test_old_failures_fall_out(self) -> None:
        clock = Clock()
        d = decider(clock, llm=Tolerance.allow(1, within=10.0))
        assert feed(d, failure()) is None
        clock.now += 10.5
        assert feed(d, failure()) is None
        clock.now += 9.0
        assert feed(d, failure()) is Reason.TOLERANCE_EXCEEDED

    def test_decision_time_is_the_clock(self) -> None:
        clock = Clock()
        d = decider(clock, llm=Tolerance.fail_fast())
        clock.now = 123.5
        assert (decision := d.decide(failure(), d.ticket(Kind.LLM))) is not None
        assert decision.at == 123.5


class TestTerminalAndRealtime:
    """Terminal verdicts close at once; realtime counts its recoverable failures."""

    def test_terminal_closes_at_once_even_on_a_retry_attempt(self) -> None:
        d = decider()
        v = failure(category=Category.QUOTA_EXHAUSTED, terminal=True, recoverable=True)
        assert feed(d, v) is Reason.TERMINAL

    def test_final_realtime_error_means_the_model_gave_up(self) -> None:
        d = decider()
        assert feed(d, failure(Kind.REALTIME, recoverable=False)) is Reason.MODEL_GAVE_UP

    def test_recoverable_realtime_failures_count(self) -> None:
        d = decider(realtime=Tolerance.allow(1))
        assert feed(d, failure(Kind.REALTIME, recoverable=True)) is None
        assert feed(d, failure(Kind.REALTIME, recoverable=True)) is Reason.TOLERANCE_EXCEEDED


class TestOnce:
    """One decision per run; a restart decides afresh."""

    def test_decides_once(self) -> None:
        d = decider()
        terminal = failure(category=Category.AUTH, terminal=True)
        first = d.decide(terminal, d.ticket(Kind.LLM))
        assert first is not None
        assert d.decide(terminal, d.ticket(Kind.LLM)) is None
        assert d.decision is first

    def test_reset_starts_a_new_run(self) -> None:
        d = decider(llm=Tolerance.allow(1))
        assert feed(d, failure()) is None
        assert feed(d, failure()) is Reason.TOLERANCE_EXCEEDED
        d.reset()
        assert d.decision is None
        assert feed(d, failure()) is None  # the old streak is gone too


class TestTickets:
    """A failure that waited while its kind succeeded belongs to the streak that ended."""

    @pytest.mark.parametrize("kind", list(Kind))
    def test_stale_ticket_does_not_count(self, kind: Kind) -> None:
        d = decider(None, **{kind.value: Tolerance.fail_fast()})
        # Realtime failures count when recoverable; the others when final.
        v = failure(kind, recoverable=kind is Kind.REALTIME)
        ticket = d.ticket(kind)
        d.succeeded(kind)
        assert d.decide(v, ticket) is None
        assert d.decide(v, d.ticket(kind)) is not None
