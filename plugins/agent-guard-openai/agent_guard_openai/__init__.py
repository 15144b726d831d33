"""agent-guard classifiers for OpenAI: quota versus rate limit, over HTTP and Realtime.

Usage::

    import agent_guard, agent_guard_openai

    classifiers = (*agent_guard_openai.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from agent_guard_openai._classifier import CLASSIFIERS, classify

__all__ = ["CLASSIFIERS", "classify"]
