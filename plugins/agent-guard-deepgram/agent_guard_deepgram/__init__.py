"""agent-guard classifiers for Deepgram: out of credits (402), auth, rate limits.

Usage::

    import agent_guard, agent_guard_deepgram

    classifiers = (*agent_guard_deepgram.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_deepgram._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
