"""livekit-agent-guard classifiers for ElevenLabs: quota_exceeded versus a bad key, concurrency.

Installed with ``pip install livekit-agent-guard[elevenlabs]``; the core's default chain finds
it (entry point ``agent_guard.classifiers``) and runs it on this provider's errors.
"""

from importlib.metadata import PackageNotFoundError, version

from agent_guard_elevenlabs._classifier import CLASSIFIERS, classify

try:
    __version__ = version("livekit-agent-guard-elevenlabs")
except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
    __version__ = "0.0.0"

__all__ = ["CLASSIFIERS", "__version__", "classify"]
