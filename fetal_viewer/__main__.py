"""Launcher: ``fetal-viewer COMMAND ...`` runs the CLI, anything else opens the viewer.

This is the one place that knows about both faces; the CLI never imports the GUI.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from fetal_viewer.core.spawning import allow_workers

    allow_workers()  # this module and the scripts that call it import again safely
    from fetal_viewer.cli import SUBCOMMANDS

    first = argv[0] if argv else ""
    if first in SUBCOMMANDS or first in {"-h", "--help", "--version"}:
        from fetal_viewer.cli import main as cli_main

        return cli_main(argv)
    from fetal_viewer.gui.app import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
