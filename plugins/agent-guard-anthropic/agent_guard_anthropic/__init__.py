"""agent-guard classifiers for Anthropic: credit balance, spend limits, overload.

Usage::

    import agent_guard, agent_guard_anthropic

    classifiers = (*agent_guard_anthropic.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_anthropic._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
