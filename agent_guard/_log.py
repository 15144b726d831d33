"""The guard's one logger: every module logs through :data:`log`, never its own.

Event names are dotted (``agent_guard.error_classified``); fields are key/value pairs and
never carry unredacted provider text. The calling convention is structlog's
(``log.warning("agent_guard.closing", reason=...)``); where the line goes:

* **stdlib** ``logging``, logger ``agent_guard``, unless the application configured
  structlog: the event name is the message and the fields are the record's extras, so a
  livekit worker's handlers, ``--log-level`` and JSON output (``start`` mode) apply, as
  they do to livekit's own lines, and debug lines stay out of production at INFO.
* **structlog**, once the application called ``structlog.configure()`` (which
  ``structlog.testing.capture_logs()`` does too): its processors and renderer decide.

Either way, the fields of the running livekit job (``job_id``, ``room_id``, ``room_name``)
are added when there is one, and a log line can never break the guard: whatever a
processor, filter or handler raises is swallowed (the session must still close).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import structlog
from livekit.agents import get_job_context

from agent_guard._verdict import Verdict

if TYPE_CHECKING:
    from agent_guard._decide import Decision

__all__ = ["LOGGER_NAME", "GuardLogger", "log", "log_closing", "verdict_fields"]

LOGGER_NAME = "agent_guard"

_STDLIB = logging.getLogger(LOGGER_NAME)
_STRUCTLOG = structlog.get_logger(LOGGER_NAME)

# Fields that would overwrite a LogRecord attribute make Logger.makeRecord raise: they are
# renamed with a trailing underscore instead.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

# Frames between the caller of log.<level>() and _STDLIB.log(): the record then names the
# guard's module and line, not this file.
_STACKLEVEL = 3


class GuardLogger:
    """structlog's calling convention over stdlib logging or structlog (see the module)."""

    __slots__ = ("_dropped",)

    def __init__(self) -> None:
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """How many lines were lost because a processor, filter or handler raised."""
        return self._dropped

    def is_enabled(self, level: int) -> bool:
        """Whether a line at ``level`` (a ``logging`` level) would go anywhere.

        For lines whose fields cost something to build. Once structlog is configured,
        true unless its wrapper class is one of its filtering bound loggers set above
        ``level`` (its other filters run on the built line).
        """
        if structlog.is_configured():
            return _structlog_enabled(structlog.get_config()["wrapper_class"], level)
        return _STDLIB.isEnabledFor(level)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the exception being handled (its traceback) attached."""
        fields.setdefault("exc_info", True)
        self._emit(logging.ERROR, "error", event, fields)

    def _emit(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        try:
            if structlog.is_configured():
                if not self.is_enabled(level):
                    return  # structlog would drop it: not worth the job fields and binding
                _add_job_fields(fields)
                getattr(_STRUCTLOG, method)(event, **fields)
            elif _STDLIB.isEnabledFor(level):
                _add_job_fields(fields)
                exc_info = fields.pop("exc_info", None)
                stack_info = bool(fields.pop("stack_info", False))
                extra = {f"{k}_" if k in _RESERVED else k: v for k, v in fields.items()}
                _STDLIB.log(
                    level,
                    event,
                    exc_info=exc_info,
                    stack_info=stack_info,
                    extra=extra,
                    stacklevel=_STACKLEVEL,
                )
        except Exception as e:
            self._drop(e)

    def _drop(self, error: Exception) -> None:
        # Not through the logger that just failed. Said once per process: a broken
        # handler would otherwise write this on every failure of every session.
        self._dropped += 1
        if self._dropped == 1:
            with contextlib.suppress(Exception):
                sys.stderr.write(
                    f"agent_guard: a log line was dropped ({type(error).__name__} raised "
                    "while logging); later drops are counted in agent_guard._log.log.dropped\n"
                )


@functools.lru_cache(maxsize=32)
def _structlog_enabled(wrapper_class: Any, level: int) -> bool:
    # structlog's make_filtering_bound_logger() makes one class per minimum level, which
    # answers is_enabled_for(); a configuration keeps its class, so the answer is too.
    if not callable(getattr(wrapper_class, "is_enabled_for", None)):
        return True
    try:
        return bool(wrapper_class(None, [], {}).is_enabled_for(level))
    except Exception:
        return True


def _add_job_fields(fields: MutableMapping[str, Any]) -> None:
    ctx = get_job_context(required=False)
    if ctx is None:
        return
    job = ctx.job
    for key, value in (("job_id", job.id), ("room_id", job.room.sid), ("room_name", job.room.name)):
        if value:
            fields.setdefault(key, value)


log = GuardLogger()
"""The package's logger: ``log.info("agent_guard.something", key=value)``."""


def verdict_fields(verdict: Verdict) -> dict[str, Any]:
    """What operators need to act on a verdict, as log fields.

    ``model`` is livekit's label of the model that failed; ``request_id`` is the
    provider's, to quote to its support; ``hint`` and ``quota`` (the gateway's category
    and figures) appear when the provider sent them. ``detail`` comes last: it is the
    longest.
    """
    fields: dict[str, Any] = {
        "kind": verdict.kind.value,
        "category": verdict.category.value,
        "terminal": verdict.terminal,
        "counts": verdict.counts,
        "recoverable": verdict.recoverable,
        "model": verdict.model,
        "provider": verdict.provider,
        "status_code": verdict.status_code,
        "request_id": verdict.request_id,
    }
    if verdict.hint:
        fields["hint"] = verdict.hint
    if (quota := verdict.quota) is not None:
        figures: dict[str, Any] = {
            "type": quota.quota_type,
            "category": quota.category,
            "remaining_limit": quota.remaining_limit,
            "retry_after": quota.retry_after,
            **quota.usage,
        }
        fields["quota"] = {k: v for k, v in figures.items() if v is not None}
    fields["detail"] = verdict.detail
    return fields


def log_closing(decision: Decision) -> None:
    """Log ``agent_guard.closing``: the guard is about to end the session.

    At ``error`` when the verdict is terminal (credits gone, key revoked: someone must
    act before any call can succeed), at ``warning`` otherwise.
    """
    verdict = decision.verdict
    emit = log.error if verdict.terminal else log.warning
    emit("agent_guard.closing", reason=decision.reason.value, **verdict_fields(verdict))
