"""The package's layering, read from the import statements of every module (static, so lazy imports count too):
cells < backends < nn < experiment, the library free of the experiment side's packages, and no import cycle."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "skiprnn"
LAYERS = ["cells", "backends", "nn", "experiment"]  # each may import only the ones before it (and itself)
FRAMEWORK = {"hydra", "omegaconf", "wandb", "tqdm", "matplotlib", "plotly"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the modules a file imports (relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}  # `from . import fused` names a module
    return found


MODULES = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[0] == "skiprnn" and parts[1] in LAYERS else None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if layer(n) is not None))
def test_each_layer_imports_only_the_layers_below_it(name):
    own = layer(name)
    for target in MODULES[name]:
        other = layer(target)
        assert other is None or other <= own, f"{name} imports {target}, a higher layer"
        if own < LAYERS.index("experiment"):
            assert target.split(".")[0] not in FRAMEWORK, f"{name} (library) imports {target}"


def test_no_import_cycle_between_modules():
    graph = {n: {t for t in targets if t in MODULES and t != n and not n.startswith(t + ".")}
             for n, targets in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def test_no_module_reaches_into_another_modules_private_names():
    for name, targets in MODULES.items():
        for target in targets:
            owner, _, attr = target.rpartition(".")
            private = attr.startswith("_") and not attr.startswith("__")
            assert not (owner.startswith("skiprnn") and private and owner != name), f"{name} imports the private {target}"


@pytest.mark.slow  # a fresh interpreter: this process has imported the framework already
def test_importing_the_library_loads_no_framework_package():
    code = ("import sys, skiprnn; from skiprnn import SkipRNN, SkipCell, backends;"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'hydra', 'omegaconf', 'wandb', 'skiprnn.experiment'}),"
            "[m for m in sys.modules if m.startswith('skiprnn.experiment')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] []"
