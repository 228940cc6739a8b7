"""What Help > About says, as data: version, intended use, what the application is, the
loaded model, where the log is, and every bundled component with its licence (read from
the installed packages by :func:`fetal_viewer.core.about.components`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fetal_viewer.core.about import Component, components
from fetal_viewer.core.viewer.results import ModelInfo

#: what the application is, in two sentences
SUMMARY = (
    "Prenatal ultrasound viewer with fetal CNS anomaly classification, Grad-CAM heatmaps "
    "and reader studies. Not a medical device."
)


@dataclass(frozen=True)
class About:
    version: str
    intended_use: str
    summary: str
    model: ModelInfo | None
    log_folder: Path
    components: tuple[Component, ...]


def about(model: ModelInfo | None = None) -> About:
    from fetal_viewer import INTENDED_USE, __version__
    from fetal_viewer.core.appdirs import log_dir

    return About(__version__, INTENDED_USE, SUMMARY, model, log_dir(), tuple(components()))
