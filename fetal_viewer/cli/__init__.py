"""Command-line interface: subcommands over the domain core.

Each subcommand lives in its own module in this package and exposes
``add_parser(subparsers)`` (which registers the parser and sets ``func``) and a
``run(args) -> int``. Modules import heavy libraries (torch, pydicom, cv2) inside
``run``, so ``fetal-viewer --help`` stays fast. The CLI never imports the GUI; the
launcher in :mod:`fetal_viewer.__main__` decides between the two.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from fetal_viewer import INTENDED_USE, __version__
from fetal_viewer.errors import FetalViewerError

log = logging.getLogger("fetal_viewer.cli")

#: subcommands, in the order ``--help`` lists them (module: the name with "_" for "-")
SUBCOMMANDS: tuple[str, ...] = (
    "info",
    "phantoms",
    "predict",
    "train",
    "evaluate",
    "guard",
    "operating-point",
    "onnx",
    "study",
    "analyze",
    "pacs",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetal-viewer",
        description=(
            "Prenatal ultrasound viewer with fetal CNS anomaly classification and reader "
            f"studies. {INTENDED_USE}\n\n"
            "Without a subcommand, `fetal-viewer [PATH ...]` opens the desktop viewer "
            "(`fetal-viewer --demo` opens the bundled demo studies with the demo model)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module_name = f"fetal_viewer.cli.{name.replace('-', '_')}"
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name != module_name:
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from fetal_viewer.core.logsetup import FILE_ONLY, log_to_console, log_to_file

    # the terminal shows the app's own warnings and the typed error; everything else
    # (pydicom's decoder errors with their tracebacks, stray warnings) goes to the log file
    log_to_console(logging.DEBUG if args.verbose else logging.WARNING)
    log_path = log_to_file(logging.DEBUG if args.verbose else logging.INFO)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that left (| head) shows here, not at exit
        return code
    except FetalViewerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # whoever read the output stopped reading (| head): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    # what no command checked for: one message on the terminal, the traceback in the log
    except OSError as exc:  # a path that is not a folder, not writable, a full disk ...
        log.exception("%s: %s", args.command, exc, extra=FILE_ONLY)
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"error: {exc.strerror or exc}{where}\n"
            "Fix: check that the path exists, is a folder where one is asked for, and that you "
            "may write there (and the disk has room).",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        log.exception("%s: %s", args.command, exc, extra=FILE_ONLY)
        print(
            f"error: {args.command} stopped: {exc or type(exc).__name__}\n"
            f"Why: an input or option it did not check ({type(exc).__name__}); the log file "
            f"{log_path} has the details.\n"
            "Fix: check the options against --help; if they are right, report it with the log "
            "file.",
            file=sys.stderr,
        )
        return 1
