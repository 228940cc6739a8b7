"""Keep identifying text out of log files.

Scanner exports often put patient names, IDs and birth dates into file and folder names
(``DOE_JANE_MRN123/IM0001.dcm``). Log files are kept on workstations and sent with bug
reports, so they name files by a stable token instead: ``<file 3fa4c2e1 .dcm>``. The same
path always gives the same token, so log lines about one file can still be followed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path, PurePath

#: absolute POSIX or Windows paths, and bare names of data files
_PATH = re.compile(
    r"""(?:[A-Za-z]:[\\/]|/)[^\s'"<>|:*?]+"""  # absolute path up to whitespace or quotes
    r"""|[^\s'"<>|:*?/\\]+\.(?:dcm|dicom|dic|png|jpe?g|bmp|tiff?|csv|json|sqlite|db|html)\b""",
    re.IGNORECASE,
)
#: where the program's own code lives: paths there (tracebacks) are kept as they are
_CODE_ROOTS = tuple(
    str(p) for p in {Path(__file__).resolve().parents[2], Path(sys.prefix), Path(sys.base_prefix)}
)


def path_token(path: str | PurePath) -> str:
    """A stable, non-identifying name for a file path."""
    text = str(path)
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    suffix = PurePath(text).suffix.lower()
    return f"<file {digest}{' ' + suffix if suffix else ''}>"


def redact_paths(text: str) -> str:
    """``text`` with every file path or file name replaced by its :func:`path_token`."""

    def token(match: re.Match[str]) -> str:
        found = match.group(0)
        if found.startswith(_CODE_ROOTS) or found.endswith((".py", ".pyc", ".so")):
            return found
        return path_token(found)

    return _PATH.sub(token, text)


class RedactingFormatter(logging.Formatter):
    """Log formatter that writes each record (traceback included) with paths redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_paths(super().format(record))
