"""Generated documentation stays in step with the code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from agent_guard import GuardPolicy
from docs import verdict_table

ROOT = Path(__file__).resolve().parents[1]


class TestVerdictTable:
    """docs/verdicts.md is exactly what the generator prints today."""

    def test_committed_table_is_current(self) -> None:
        """Regenerate with `python -m docs.verdict_table --write` when this fails."""
        assert verdict_table.OUT.read_text() == verdict_table.render()

    def test_every_category_appears(self) -> None:
        """The table covers the whole closed category set.

        Read from the committed file: the test above holds it to what the generator
        prints (rendering runs every fixture, ~3 s).
        """
        from agent_guard import Category

        text = verdict_table.OUT.read_text()
        missing = [c.value for c in Category if f"`{c.value}`" not in text]
        assert missing == []


class TestReadme:
    """The README shows code that runs."""

    def test_testing_section_is_the_example_test(self) -> None:
        """ "Testing your agent" shows examples/test_agent.py, which pytest runs, verbatim."""
        source = (ROOT / "examples" / "test_agent.py").read_text()
        body = source.split("from __future__ import annotations\n\n", 1)[1]
        readme = (ROOT / "README.md").read_text()
        section = readme[readme.index("## Testing your agent") :]
        assert f"```python\n{body}```" in section

    def test_benchmark_figures_come_from_the_results(self) -> None:
        """Every figure with decimals in "Benchmarks" is in a `benchmarks/results/` file.

        A figure given in KB or as a ratio (×) must be there with its unit: bare numbers
        recur across tables by chance. Regenerate the results, then quote them.
        """
        readme = (ROOT / "README.md").read_text()
        section = readme[readme.index("## Benchmarks") : readme.index("## Testing your agent")]
        results = "\n".join(
            path.read_text() for path in sorted((ROOT / "benchmarks" / "results").glob("*.md"))
        )
        figures = re.findall(r"(?<![\w.])\d[\d,]*\.\d+(?!\d)(?: ?(?:KB|×))?", section)
        assert len(figures) > 20  # the section still quotes its tables
        missing = [
            figure
            for figure in figures
            if not re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", results)
        ]
        assert missing == []


class TestPolicyDocstring:
    """GuardPolicy's docstring documents every field."""

    def test_every_field_is_listed(self) -> None:
        doc = GuardPolicy.__doc__ or ""
        attributes = doc[doc.index("Attributes:") :]
        missing = [
            f.name
            for f in dataclasses.fields(GuardPolicy)
            if f"\n        {f.name}:" not in attributes
        ]
        assert missing == []
