"""Generated documentation stays in step with the code."""

from __future__ import annotations

from docs import verdict_table


class TestVerdictTable:
    """docs/verdicts.md is exactly what the generator prints today."""

    def test_committed_table_is_current(self) -> None:
        """Regenerate with `python -m docs.verdict_table --write` when this fails."""
        assert verdict_table.OUT.read_text() == verdict_table.render()

    def test_every_category_appears(self) -> None:
        """The table covers the whole closed category set."""
        from agent_guard import Category

        text = verdict_table.render()
        missing = [c.value for c in Category if f"`{c.value}`" not in text]
        assert missing == []
