"""Imports a reader (and a tool) can follow: product modules import each other relatively, never as
``cycleseg.…``, and no two import each other, at the top or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("cli.py", "model", "sweep", "search_spaces")


def product_modules() -> dict[str, Path]:
    """Dotted name (under ``cycleseg``) -> file, for every product module."""
    files = [ROOT / "cli.py", *(p for d in PRODUCT[1:] for p in (ROOT / d).rglob("*.py"))]
    out = {}
    for f in files:
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["cycleseg", *parts])] = f
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> tuple[set[str], list[str]]:
    """(product modules ``name`` imports anywhere in its file, its absolute ``cycleseg`` imports)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    absolute: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            absolute += [f"line {node.lineno}: import {t}" for t in targets if t.split(".")[0] == "cycleseg"]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
                if base.split(".")[0] == "cycleseg":
                    absolute.append(f"line {node.lineno}: from {base} import …")
            else:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        for t in targets:
            while t and t not in modules:  # a name imported from a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found, absolute


def test_product_modules_import_each_other_relatively_and_never_in_a_circle_of_two():
    modules = product_modules()
    graph, absolute = {}, {}
    for name, path in modules.items():
        graph[name], found = imports_of(name, path, modules)
        if found:
            absolute[name] = found
    assert not absolute, f"absolute cycleseg imports in product modules: {absolute}"
    mutual = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, ())})
    assert not mutual, f"modules that import each other: {mutual}"


def test_the_layers_above_model_import_only_its_public_face():
    """``sweep/`` and ``cli.py`` import from ``model`` only what ``model.PUBLIC`` lists (its boundary), and every
    name listed there is used above it (the list stays what it says: short and true)."""
    from cycleseg.model import PUBLIC, PUBLIC_MODULES

    modules = product_modules()
    outside, used = [], set()
    for name, path in modules.items():
        if not (name == "cycleseg.cli" or name.startswith("cycleseg.sweep")):
            continue
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            if not base.startswith("cycleseg.model"):
                continue
            module = base.removeprefix("cycleseg.model").lstrip(".")
            for alias in node.names:
                ok = alias.name in PUBLIC_MODULES if not module else alias.name in PUBLIC.get(module, ())
                used.add((module, alias.name))
                if not ok:
                    outside.append(f"{path.relative_to(ROOT)}:{node.lineno}: {base}.{alias.name}")
    assert not outside, f"imports past model's public face (model/__init__.py PUBLIC): {outside}"
    unused = {(m, n) for m, names in PUBLIC.items() for n in names} - used
    unused -= {("checkpoint", n) for n in PUBLIC["checkpoint"]}  # read as checkpoint.<name>
    assert not unused, f"listed in model.PUBLIC but imported by nothing above: {sorted(unused)}"
