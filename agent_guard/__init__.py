"""agent-guard: LiveKit voice agents that fail audibly and predictably.

Call :func:`guard` once per ``AgentSession``, before ``session.start()``::

    from agent_guard import GuardPolicy, guard

    guard(session, GuardPolicy(farewell_audio="sorry.wav"))

Beside this module: :mod:`agent_guard.fallback` (guarded FallbackAdapters),
:mod:`agent_guard.classifiers` (for classifier authors), :mod:`agent_guard.instrumentation`
(logging and metrics hooks), :mod:`agent_guard.typing` and :mod:`agent_guard.testing`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from agent_guard._classify import classify
from agent_guard._decide import Decision, Reason
from agent_guard._errors import GuardError, PolicyError
from agent_guard._guard import Guard, guard
from agent_guard._install import install, uninstall
from agent_guard._playback import FarewellResult
from agent_guard._policy import Farewell, GuardPolicy, Tolerance
from agent_guard._signal import FrontendSignal
from agent_guard._stall import StallError
from agent_guard._verdict import Category, Kind, Verdict

try:
    __version__ = version("livekit-agent-guard")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "Category",
    "Decision",
    "Farewell",
    "FarewellResult",
    "FrontendSignal",
    "Guard",
    "GuardError",
    "GuardPolicy",
    "Kind",
    "PolicyError",
    "Reason",
    "StallError",
    "Tolerance",
    "Verdict",
    "__version__",
    "classify",
    "guard",
    "install",
    "uninstall",
]
