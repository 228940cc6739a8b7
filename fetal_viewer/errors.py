"""One exception tree for the whole application.

Every error a user can meet carries three things: what went wrong (``what``), why
(``why``) and what to do about it (``fix``). The GUI shows them in a dialog, the CLI
prints them, and logs keep them. Raise the most specific subclass.
"""

from __future__ import annotations

from pathlib import Path


class FetalViewerError(Exception):
    """Base of every error the application raises on purpose."""

    def __init__(
        self,
        what: str,
        *,
        why: str = "",
        fix: str = "",
        path: str | Path | None = None,
    ) -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.path = str(path) if path is not None else None
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what if self.path is None else f"{self.path}: {self.what}"]
        if self.why:
            parts.append(f"Why: {self.why}")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return "\n".join(parts)


class StudyLoadError(FetalViewerError):
    """A file or folder could not be read as a study (bad DICOM, missing decoder...)."""


class ModelLoadError(FetalViewerError):
    """A checkpoint or model card is missing, tampered with, unsafe or inconsistent."""


class InferenceError(FetalViewerError):
    """The model failed on an input it had accepted."""


class StoreError(FetalViewerError):
    """The reader-study database cannot be opened, upgraded or written."""


class ProtocolError(FetalViewerError):
    """A reader-study rule was broken (e.g. AI requested before the unaided read)."""


class DataError(FetalViewerError):
    """A manifest, reference CSV or data set is malformed."""


class NetworkError(FetalViewerError):
    """A DICOM node or DICOMweb server could not be reached, refused us, or broke off a
    transfer; or the node configuration is invalid."""


class CancelledError(FetalViewerError):
    """A long-running job was cancelled by the user."""

    def __init__(self, what: str = "Cancelled by the user.") -> None:
        super().__init__(what)
