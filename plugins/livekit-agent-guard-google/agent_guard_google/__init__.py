"""livekit-agent-guard classifiers for Google Gemini: daily quota, prepay, capacity, bad keys.

Installed with ``pip install livekit-agent-guard[google]``; the core's default chain finds
it (entry point ``agent_guard.classifiers``) and runs it on this provider's errors.
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_google._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-google")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
