"""The guard's one logger: every module logs through :data:`log`, never its own.

Event names are dotted (``agent_guard.error_classified``); fields are key/value pairs and
never carry unredacted provider text.
"""

from __future__ import annotations

import structlog

__all__ = ["log"]

log = structlog.get_logger("agent_guard")
