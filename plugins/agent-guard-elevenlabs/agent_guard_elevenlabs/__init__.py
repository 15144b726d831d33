"""agent-guard classifiers for ElevenLabs: quota_exceeded versus a bad key, concurrency.

Usage::

    import agent_guard, agent_guard_elevenlabs

    classifiers = (*agent_guard_elevenlabs.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_elevenlabs._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
