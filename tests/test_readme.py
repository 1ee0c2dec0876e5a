"""Every Python example in the README runs as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index):
    namespace = {}
    exec(compile(EXAMPLES[index], f"README.md example {index + 1}", "exec"), namespace)
    if "loss" in namespace:  # a training example: its backward pass reached the update gate
        gate = namespace.get("rnn", namespace.get("cell")).update_gate
        assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0
