"""livekit-agent-guard classifiers for Deepgram: out of credits (402), auth, rate limits.

Usage::

    import agent_guard, agent_guard_deepgram

    classifiers = (*agent_guard_deepgram.CLASSIFIERS, *agent_guard.DEFAULT_CLASSIFIERS)
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_deepgram._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-deepgram")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
