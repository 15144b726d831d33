"""livekit-agent-guard classifiers for OpenAI: quota versus rate limit, over HTTP and Realtime.

Usage::

    import agent_guard, agent_guard_openai

    classifiers = (*agent_guard_openai.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_openai._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-openai")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
