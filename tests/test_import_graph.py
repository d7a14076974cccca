"""No module of ours imports another in a circle, and the package layers hold (docs/DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runfolder", "models", "imagefeed", "screens", "space", "search", "reports")
# Which of our packages each package may import (function-level imports included).
ALLOWED = {
    "runfolder": set(),
    "models": {"runfolder"},
    "imagefeed": {"runfolder"},
    # zero-cost proxies: networks (models) at initialisation, scored on the study's own images (imagefeed)
    "screens": {"models", "imagefeed"},
    # runfolder: the YAML caps shared with run-folder documents; imagefeed: the dataset kinds' names and sizes;
    # screens: the proxy names search.screen allows
    "space": {"models", "runfolder", "imagefeed", "screens"},
    # reports: the report at the end of a run; screens: search.screen in the driver
    "search": {"runfolder", "models", "imagefeed", "screens", "space", "reports"},
    # The synthetic test folders are written by tests/synthetic_run.py. One command computes rather than reads:
    # python -m reports.proxies rebuilds a run's architectures (models) and scores them (screens) on the data its
    # study names (space, imagefeed); it imports them inside its functions, so the rest of reports never loads torch.
    "reports": {"runfolder"},
}
# Modules allowed more than their package: the one command of reports that computes.
ALLOWED_MODULES = {"reports.proxies": {"screens", "space", "models", "imagefeed"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in its body (a submodule import counts as that submodule)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] not in PACKAGES:
                continue
            submodules = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
            found.update(submodules or [target])
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return stack[stack.index(successor):] + [successor]
            if successor not in state and (found := visit(successor)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_another_in_a_circle():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_packages_import_only_the_layers_below_them():
    wrong = [f"{module} imports {target}" for module, targets in _graph().items() for target in targets
             if target.split(".")[0] != module.split(".")[0]
             and target.split(".")[0] not in ALLOWED[module.split(".")[0]] | ALLOWED_MODULES.get(module, set())]
    assert not wrong, "\n".join(wrong)


def test_the_checker_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_its_own_package():
    # `from reports import build_report` inside reports/ runs reports/__init__ half-built: a circle through it.
    wrong = [f"{module} imports {module.split('.')[0]}" for module, targets in _graph().items()
             if "." in module and module.split(".")[0] in targets]
    assert not wrong, "\n".join(wrong)
