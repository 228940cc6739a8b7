"""Where received instances go: one folder per study, written atomically, never overwritten.

Layout under a root (the retrieve cache or the listener's inbox)::

    <root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm
    <root>/<StudyInstanceUID>/.transfer.json     state of the last retrieve of the study
    <root>/.conflicts/<SOPInstanceUID>-<sha256[:12]>.dcm   a second, different copy
    <root>/.partial/                              files being written

Every instance is written to ``.partial`` first and then hard-linked to its name, which
fails if the name exists: two associations delivering the same instance at once cannot
overwrite each other, and a crash leaves no half-written ``.dcm``. A byte-identical
duplicate is dropped (counted); a different object under a SOP Instance UID already held
is kept under ``.conflicts`` so nothing received is lost and nothing held is replaced.
Hidden names (``.transfer.json``, ``.partial``, ``.conflicts``) are skipped by
:func:`fetal_viewer.core.io.open_path`, so a study folder opens like any other.

The transfer state (:class:`TransferState`) says whether a study was received whole; it is
written as ``incomplete`` before the first byte arrives, so an interrupted transfer (node
down, cancel, crash, full disk) is marked incomplete and can be resumed.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path

from fetal_viewer.errors import NetworkError

log = logging.getLogger("fetal_viewer.core.net")

STATE_NAME = ".transfer.json"
PARTIAL = ".partial"
CONFLICTS = ".conflicts"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
Buffer = bytes | bytearray | memoryview
#: SOP class prefixes of objects without pixels to show: structured reports, key objects,
#: presentation states, encapsulated documents, raw data
NOT_IMAGES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.5.1.4.1.1.104.",
    "1.2.840.10008.5.1.4.1.1.66",
)


def is_uid(value: str) -> bool:
    """A syntactically valid UID (digits and dots, at most 64 characters)."""
    return len(value) <= 64 and bool(_UID.match(value))


class Outcome(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # byte-identical copy of an instance already held: dropped
    CONFLICT = "conflict"  # a different object under a held SOP Instance UID: kept aside


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    path: Path
    outcome: Outcome
    nbytes: int
    sop_class: str = ""

    @property
    def is_image(self) -> bool:
        """Whether a viewer can show it: not a report, document or presentation state."""
        return not self.sop_class.startswith(NOT_IMAGES)


def _same(a: Path, b: Path, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def no_space_error(root: Path, exc: OSError) -> NetworkError:
    return NetworkError(
        "The disk is full: a received instance could not be written.",
        why=f"{errno.errorcode.get(exc.errno or 0, exc.errno)}: {exc.strerror or exc}",
        fix="Free space on that disk (or move the cache with FETAL_VIEWER_CACHE_DIR), then "
        "retrieve the study again: what arrived is kept and only the rest is fetched.",
        path=root,
    )


class StudyStore:
    """A folder of studies, safe to write from several associations at once."""

    def __init__(self, root: Path, durable: bool = False) -> None:
        self.root = Path(root)
        #: fsync each instance before it is acknowledged (the listener: a modality may
        #: delete what the listener confirmed)
        self.durable = durable
        self._lock = threading.Lock()

    def check_writable(self) -> None:
        """Make the folder and write a file in it, or raise :class:`NetworkError` saying
        why: a listener must not start with an inbox that would refuse every instance."""
        import tempfile

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise NetworkError(
                "The inbox folder cannot be written to.",
                why=f"{exc.strerror or exc}: every image sent would be refused.",
                fix="Choose a folder you may write to (pacs listen --inbox, or the PACS "
                "panel's settings), on a disk with room.",
                path=self.root,
            ) from exc

    def study_dir(self, study_uid: str) -> Path:
        if not is_uid(study_uid):
            raise NetworkError(f"{study_uid!r} is not a valid Study Instance UID.")
        return self.root / study_uid

    def path_for(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        for uid in (study_uid, series_uid, sop_uid):
            if not is_uid(uid):
                # a UID names a folder: refuse anything that could leave the root
                raise ValueError(f"not a valid UID: {uid[:80]!r}")
        return self.root / study_uid / series_uid / f"{sop_uid}.dcm"

    def held(self, study_uid: str) -> set[str]:
        """SOP Instance UIDs of the study's instances on disk."""
        folder = self.study_dir(study_uid)
        return {p.stem for p in folder.glob("*/*.dcm")} if folder.is_dir() else set()

    def write(
        self, study_uid: str, series_uid: str, sop_uid: str, data: bytes, sop_class: str = ""
    ) -> StoredInstance:
        """Write one instance (a whole DICOM file: preamble, meta, data set).

        Raises ``ValueError`` for UIDs that cannot name a file and ``OSError`` when the
        disk refuses (``errno`` ENOSPC/EDQUOT/EFBIG when it is full)."""
        return self.write_parts(study_uid, series_uid, sop_uid, [data], sop_class)

    def write_parts(
        self,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        parts: Sequence[Buffer],
        sop_class: str = "",
    ) -> StoredInstance:
        """:meth:`write` for a file given in pieces (no copy of a large received buffer)."""
        final = self.path_for(study_uid, series_uid, sop_uid)
        partial = self.root / PARTIAL
        final.parent.mkdir(parents=True, exist_ok=True)
        partial.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{sop_uid}.", suffix=".part", dir=partial)
        nbytes = 0
        try:
            with os.fdopen(fd, "wb") as f:
                for part in parts:
                    nbytes += f.write(part)
                if self.durable:
                    f.flush()
                    os.fsync(f.fileno())
            outcome = self._place(Path(tmp), final, parts)
        finally:
            Path(tmp).unlink(missing_ok=True)
        where = final if outcome is not Outcome.CONFLICT else self._conflict_path(sop_uid, parts)
        return StoredInstance(study_uid, series_uid, sop_uid, where, outcome, nbytes, sop_class)

    def _conflict_path(self, sop_uid: str, parts: Sequence[Buffer]) -> Path:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        return self.root / CONFLICTS / f"{sop_uid}-{digest.hexdigest()[:12]}.dcm"

    def _place(self, tmp: Path, final: Path, parts: Sequence[Buffer]) -> Outcome:
        try:
            os.link(tmp, final)  # atomic, and fails if the name is taken
            return Outcome.STORED
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                raise
            # a file system without hard links: check and rename under a lock instead
            with self._lock:
                if not final.exists():
                    os.replace(tmp, final)
                    return Outcome.STORED
        if final.stat().st_size == tmp.stat().st_size and _same(final, tmp):
            return Outcome.DUPLICATE
        conflict = self._conflict_path(final.stem, parts)
        conflict.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(tmp, conflict)
        except FileExistsError:
            pass  # this very version is already kept aside
        except OSError:
            os.replace(tmp, conflict)
        log.warning("a different object with a held SOP Instance UID was kept aside")
        return Outcome.CONFLICT

    # ---- transfer state -----------------------------------------------------------
    def state(self, study_uid: str) -> TransferState | None:
        path = self.study_dir(study_uid) / STATE_NAME
        try:
            return TransferState.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("unreadable transfer state %s: %s", path.name, exc)
            return None

    def save_state(self, state: TransferState) -> None:
        folder = self.study_dir(state.study_uid)
        folder.mkdir(parents=True, exist_ok=True)
        state = replace(state, updated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        fd, tmp = tempfile.mkstemp(prefix=".transfer.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(state.to_json())
            os.replace(tmp, folder / STATE_NAME)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def forget(self, study_uid: str) -> None:
        """Remove the state of a study that holds no instance (and its empty folder)."""
        folder = self.study_dir(study_uid)
        if self.held(study_uid):
            return
        (folder / STATE_NAME).unlink(missing_ok=True)
        for sub in sorted(folder.glob("**/*"), reverse=True):
            if sub.is_dir():
                sub.rmdir()
        if folder.is_dir():
            folder.rmdir()

    def studies(self) -> list[Path]:
        """Study folders under the root, newest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and is_uid(p.name)]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@dataclass(frozen=True)
class TransferState:
    """What is known about one study's transfer into a store."""

    study_uid: str
    node: str
    method: str  # "get", "move" or "wado"
    complete: bool = False
    expected: int | None = None  # instances the node said the study holds
    received: int = 0  # instances on disk after the last attempt
    failed: int = 0  # sub-operations the node reported as failed
    error: str = ""  # why the last attempt stopped, if it did
    updated: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TransferState:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
