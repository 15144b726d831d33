"""Types for annotating code that plugs into agent-guard (hooks, factories, audio)."""

from __future__ import annotations

from agent_guard._facts import Classifier
from agent_guard._hooks import Hook
from agent_guard._playback import FarewellSource
from agent_guard._policy import FarewellAudio, MessageFactory

__all__ = ["Classifier", "FarewellAudio", "FarewellSource", "Hook", "MessageFactory"]
