"""The GUI is typed against the core: at most 15 uses of ``Any`` in ``fetal_viewer/gui``,
each with a comment saying why, and no ``getattr`` reads of the core's frozen dataclasses
(mypy checks ``fetal_viewer.gui`` strictly; see pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

GUI = Path(__file__).resolve().parents[2] / "fetal_viewer" / "gui"
MAX_ANY = 15


def _any_uses() -> list[tuple[Path, int]]:
    found = []
    for path in sorted(GUI.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            named = isinstance(node, ast.Name) and node.id == "Any"
            dotted = isinstance(node, ast.Attribute) and node.attr == "Any"
            if named or dotted:
                found.append((path, node.lineno))
    return found


def test_any_is_rare_and_explained() -> None:
    uses = _any_uses()
    assert len(uses) <= MAX_ANY, uses
    for path, line in uses:
        lines = path.read_text(encoding="utf-8").splitlines()
        nearby = " ".join(lines[max(0, line - 3) : line])
        assert "#" in nearby, f"{path.name}:{line} uses Any without a comment saying why"


def test_no_getattr_on_core_dataclasses() -> None:
    for path in sorted(GUI.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr":
                target = ast.unparse(node.args[0])
                # superqt workers' optional signals are the one dynamic read left
                assert target == "worker", f"{path.name}:{node.lineno} getattr({target}, ...)"
