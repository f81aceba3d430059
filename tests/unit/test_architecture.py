"""The package map of DESIGN.md, checked: arrows point one way and packages are used through their `__all__`."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "snapbridge"

# Who may import whom (DESIGN.md "Parts and where they live"); errors and config are open to all.
# Connectors also take the Secret type from security, as STYLE.md asks.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "config": set(),
    "security": set(),
    "http": {"security"},
    "connectors": {"http", "security"},
    "catalog": {"connectors", "http", "security"},
    "workflows": {"catalog"},
    "store": set(),
    "runtime": {"http", "security", "connectors", "catalog", "workflows", "store"},
    "web": {"runtime", "store", "security", "workflows", "catalog"},
    "sandbox": {"catalog"},
    "cli": {"http", "security", "connectors", "catalog", "workflows", "store", "runtime", "web", "sandbox"},
}
OPEN_TO_ALL = {"errors", "config", "__init__"}


def _part(module_path: Path) -> str:
    rel = module_path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(module_path: Path) -> list[tuple[str, list[str], int]]:
    tree = ast.parse(module_path.read_text(encoding="utf-8"))
    found: list[tuple[str, list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("snapbridge"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names if a.name.startswith("snapbridge"))
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_arrows(path: Path) -> None:
    importer = _part(path)
    if importer in {"__init__", "__main__"}:
        return
    for module, _names, line in _imports(path):
        parts = module.split(".")
        target = parts[1] if len(parts) > 1 else "__init__"
        if target == importer or target in OPEN_TO_ALL:
            continue
        assert target in ALLOWED.get(importer, set()), (
            f"{path.relative_to(SRC)}:{line} imports {module}; {importer} may import {sorted(ALLOWED[importer])}"
        )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_other_packages_import_only_public_names(path: Path) -> None:
    importer = _part(path)
    for module, names, line in _imports(path):
        parts = module.split(".")
        if len(parts) < 2 or parts[1] == importer or parts[1] in OPEN_TO_ALL:
            continue
        package = ".".join(parts[:3]) if parts[1] == "connectors" and len(parts) > 2 else ".".join(parts[:2])
        assert module == package, (
            f"{path.relative_to(SRC)}:{line} imports {module}; import from {package} instead"
        )
        public = set(importlib.import_module(package).__all__)
        missing = [n for n in names if n not in public]
        assert not missing, f"{path.relative_to(SRC)}:{line} uses {missing}, not in {package}.__all__"


PACKAGES = sorted(p.parent for p in SRC.rglob("__init__.py"))


@pytest.mark.parametrize("package_dir", PACKAGES, ids=lambda p: str(p.relative_to(SRC.parent)))
def test_every_package_lists_its_public_names_sorted(package_dir: Path) -> None:
    name = ".".join(package_dir.relative_to(SRC.parent).parts)
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item}, which {name} does not define"
