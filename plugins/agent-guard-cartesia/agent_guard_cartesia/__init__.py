"""agent-guard classifiers for Cartesia: credits (402) and concurrency limits.

Usage::

    import agent_guard, agent_guard_cartesia

    classifiers = (*agent_guard_cartesia.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_cartesia._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
