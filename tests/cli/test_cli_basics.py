"""The command line as a user runs it: in a subprocess."""

from __future__ import annotations

from tests.factories import run_cli


def test_help_lists_subcommands_and_intended_use() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "Research use only" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert "fetal-viewer" in result.stdout
