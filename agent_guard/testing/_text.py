"""A transcript sink: what the agent said, as the caller's screen shows it.

``session.run()`` returns before the guard's farewell, which never enters the chat
history (``add_to_chat_ctx=False``), so neither the ``RunResult`` nor ``session.history``
shows it. livekit still forwards its text to the session's transcription output, as it
does every reply's: set ``session.output.transcription = CaptureTextOutput()`` and read
it back.
"""

from __future__ import annotations

from livekit.agents.voice import io

__all__ = ["CaptureTextOutput"]


class CaptureTextOutput(io.TextOutput):
    """An ``io.TextOutput`` that keeps the agent's transcript, one segment per speech.

    A reply and the farewell are separate segments; an interrupted reply keeps the words
    that had been sent before the interruption.

    Attributes:
        segments: Each finished segment's text, in order (empty ones are left out).
    """

    def __init__(self, *, label: str = "CaptureTextOutput") -> None:
        super().__init__(label=label, next_in_chain=None)
        self.segments: list[str] = []
        self._parts: list[str] = []

    @property
    def pending(self) -> str:
        """The text of the segment still being written."""
        return "".join(self._parts)

    @property
    def last(self) -> str | None:
        """The last finished segment (the farewell, once the guard has closed), if any."""
        return self.segments[-1] if self.segments else None

    async def capture_text(self, text: str) -> None:
        self._parts.append(text)

    def flush(self) -> None:
        text, self._parts = self.pending, []
        if text:
            self.segments.append(text)
