"""The watchdog's knobs: defaults and validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agent_guard import Farewell, GuardPolicy, PolicyError
from agent_guard._policy import DEFAULT_STALL_AUDIO, DEFAULT_STALL_MESSAGE, MAX_STALL_TIMEOUT


def test_defaults() -> None:
    """On by default: 4 s, the packaged notice (text and recording), one retry."""
    policy = GuardPolicy()
    assert policy.stall_timeout == 4.0
    assert policy.stall_message == Farewell(DEFAULT_STALL_MESSAGE, audio=DEFAULT_STALL_AUDIO)
    assert policy.stall_message is Farewell.STALL
    assert DEFAULT_STALL_AUDIO.is_file()
    assert policy.stall_retry is True


@pytest.mark.parametrize(
    "changes",
    [
        {"stall_timeout": None},
        {"stall_timeout": 0.5},
        {"stall_timeout": MAX_STALL_TIMEOUT},
        {"stall_message": None},
        {"stall_message": "One second, please."},
        {"stall_message": Farewell("Hold on.", audio=DEFAULT_STALL_AUDIO)},
        {"stall_retry": False},
    ],
    ids=repr,
)
def test_accepted(changes: dict[str, Any]) -> None:
    """Valid values construct (and survive ``dataclasses.replace``)."""
    policy = dataclasses.replace(GuardPolicy(), **changes)
    for name, value in changes.items():
        assert getattr(policy, name) == value


@pytest.mark.parametrize(
    "changes",
    [
        {"stall_timeout": 0},
        {"stall_timeout": -1.0},
        {"stall_timeout": float("inf")},
        {"stall_timeout": float("nan")},
        {"stall_timeout": MAX_STALL_TIMEOUT + 1},
        {"stall_timeout": True},
        {"stall_timeout": "4"},
        {"stall_message": ""},
        {"stall_message": "   "},
        {"stall_message": 42},
        {"stall_retry": 1},
        {"stall_retry": None},
    ],
    ids=repr,
)
def test_rejected(changes: dict[str, Any]) -> None:
    """Invalid values fail at construction, not in the middle of a call."""
    with pytest.raises(PolicyError):
        GuardPolicy(**changes)
