"""Every Python example in the README and the docs runs as written, and every link between them resolves."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = [code for page in PAGES for code in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]


def test_the_readme_and_the_api_page_have_examples():
    assert "```python" in PAGES[0].read_text() and len(EXAMPLES) >= 3


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
        if not target.startswith(("http://", "https://")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(EXAMPLES[index], f"example {index + 1}", "exec"), namespace)
    if "loss" in namespace:  # a training example: its backward pass reached the update gate
        gate = namespace.get("rnn", namespace.get("cell")).update_gate
        assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("table*.md")), ids=lambda p: p.name)
def test_every_figure_a_table_page_quotes_in_its_tables_is_in_the_committed_results(page):
    """The numbers a table page puts in its own markdown tables (changes "a → b", ratios "×r", percentages) come
    from the committed results of that table (results/tableN*.md and results/pre-fixes/tableN.md)."""
    name = page.stem
    committed = "".join(p.read_text() for p in [*ROOT.glob(f"results/{name}*.md"), *ROOT.glob(f"results/*/{name}*.md")])
    rows = [line for line in page.read_text().splitlines() if line.startswith("|") and not line.startswith("|---")]
    quoted = {q for line in rows for q in re.findall(r"\d[\d.,]* → \d[\d.,]*|×\d+\.\d+|\d+\.\d%", line)}
    missing = sorted(q for q in quoted if q not in committed)
    assert not missing, f"{page.name} quotes {missing}, which no committed results/{name}*.md holds"
