"""agent-guard classifiers for Google Gemini: daily quota, prepay, capacity, bad keys.

Usage::

    import agent_guard, agent_guard_google

    classifiers = (*agent_guard_google.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_google._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
