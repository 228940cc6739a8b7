"""Study browser: patient > study > series, with thumbnails and frame counts.

Patients are shown by pseudonym; real identities only after View > Show identities.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QWidget

from fetal_viewer.core.io.study import Patient, Series, Study
from fetal_viewer.core.viewer.results import SeriesKey, series_key
from fetal_viewer.gui.imaging import rgb_to_qimage

ROLE = Qt.ItemDataRole.UserRole


def _node(item: QTreeWidgetItem) -> tuple[object, ...]:
    """What an item holds: ("patient", patient), ("study", patient, study) or
    ("series", patient, study, series)."""
    data = item.data(0, ROLE)
    return tuple(data) if isinstance(data, tuple) else ()


def _patient_label(patient: Patient, show_identity: bool) -> str:
    if show_identity:
        ident = patient.identity
        name = ident.patient_name or "(no name)"
        pid = ident.patient_id or "?"
        return f"{name}  [{pid}]"
    return str(patient.pseudonym)


def _series_label(series: Series) -> str:
    n = len(series)
    desc = series.description or series.modality or "Series"
    extra = f"{n} frame{'s' if n != 1 else ''}"
    if series.frame_time_ms and n > 1:
        extra += f" · {1000.0 / series.frame_time_ms:.0f} fps"
    if series.calibration.spacing_mm is None:
        extra += " · uncalibrated"
    return f"{desc}\n{extra}"


class StudyBrowser(QTreeWidget):
    series_activated = Signal(object, object, object)  # patient, study, series
    patient_grew = Signal(object)  # Patient: a patient already shown got more series

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studyBrowser")
        self.setHeaderHidden(True)
        self.setIconSize(QSize(64, 64))
        self.setUniformRowHeights(False)
        self.setExpandsOnDoubleClick(True)
        self.patients: list[Patient] = []
        self.show_identities = False
        self._series_items: dict[SeriesKey, QTreeWidgetItem] = {}
        self.currentItemChanged.connect(self._on_current)

    # ----- content ----------------------------------------------------------------------
    def add_patients(self, patients: list[Patient]) -> list[Series]:
        """Add patients (skipping series already shown); return the series added. A patient
        already in the tree gets the new studies and series under its own entry (studies
        arrive from PACS a batch of files at a time), so that "this patient" is all of them;
        :attr:`patient_grew` then carries the patient as it now is."""
        added: list[Series] = []
        for patient in patients:
            fresh = [
                (study, [s for s in study.series if series_key(s) not in self._series_items])
                for study in patient.studies
            ]
            if not any(new for _study, new in fresh):
                continue
            at = next(
                (i for i, p in enumerate(self.patients) if p.pseudonym == patient.pseudonym), None
            )
            existed = at is not None
            if at is None:
                p_item = QTreeWidgetItem([_patient_label(patient, self.show_identities)])
                p_item.setToolTip(0, "Pseudonym (View > Show identities reveals PHI)")
                self.addTopLevelItem(p_item)
                studies: list[Study] = []
                self.patients.append(patient)
                at = len(self.patients) - 1
            else:
                p_item = self._patient_item(self.patients[at])
                studies = list(self.patients[at].studies)
            for study, new in fresh:
                if not new:
                    continue
                j = next((k for k, old in enumerate(studies) if old.uid == study.uid), None)
                if j is None:
                    studies.append(replace(study, series=tuple(new)))
                    label = " ".join(x for x in (str(study.date or ""), study.description) if x)
                    s_item = QTreeWidgetItem([label or "Study"])
                    p_item.addChild(s_item)
                    s_item.setExpanded(True)
                else:
                    studies[j] = replace(studies[j], series=studies[j].series + tuple(new))
                    s_item = self._study_item(p_item, study.uid)
                for series in new:
                    item = QTreeWidgetItem([_series_label(series)])
                    item.setToolTip(0, str(series.source))
                    s_item.addChild(item)
                    self._series_items[series_key(series)] = item
                    added.append(series)
            grown = replace(self.patients[at], studies=tuple(studies))
            self.patients[at] = grown
            self._hold(p_item, grown)
            p_item.setExpanded(True)
            if existed:
                self.patient_grew.emit(grown)
        return added

    def _patient_item(self, patient: Patient) -> QTreeWidgetItem:
        for i in range(self.topLevelItemCount()):
            item = self.topLevelItem(i)
            node = _node(item) if item is not None else ()
            if item is not None and len(node) == 2 and node[1] is patient:
                return item
        raise LookupError(patient.pseudonym)

    @staticmethod
    def _study_item(p_item: QTreeWidgetItem, uid: str) -> QTreeWidgetItem:
        for i in range(p_item.childCount()):
            child = p_item.child(i)
            node = _node(child) if child is not None else ()
            study = node[2] if len(node) == 3 else None
            if child is not None and isinstance(study, Study) and study.uid == uid:
                return child
        raise LookupError(uid)

    @staticmethod
    def _hold(p_item: QTreeWidgetItem, patient: Patient) -> None:
        """Point the patient's item, its studies' and their series' at ``patient`` as it is
        now (the tree's items are in the studies' order, their series' order)."""
        p_item.setData(0, ROLE, ("patient", patient))
        for i, study in enumerate(patient.studies):
            s_item = p_item.child(i)
            if s_item is None:
                continue
            s_item.setData(0, ROLE, ("study", patient, study))
            for k, series in enumerate(study.series):
                if (item := s_item.child(k)) is not None:
                    item.setData(0, ROLE, ("series", patient, study, series))

    def set_thumbnail(self, key: SeriesKey, rgb: np.ndarray) -> None:
        item = self._series_items.get(key)
        if item is not None:
            item.setIcon(0, QIcon(QPixmap.fromImage(rgb_to_qimage(rgb))))

    def has_thumbnail(self, series: Series) -> bool:
        item = self._series_items.get(series_key(series))
        return item is not None and not item.icon(0).isNull()

    def set_show_identities(self, show: bool) -> None:
        self.show_identities = show
        for i in range(self.topLevelItemCount()):
            if (item := self.topLevelItem(i)) is not None:
                node = _node(item)
                if len(node) == 2 and isinstance(patient := node[1], Patient):
                    item.setText(0, _patient_label(patient, show))

    def patient_label(self, patient: Patient) -> str:
        """The patient's label as the tree shows it (identity shown or hidden)."""
        return _patient_label(patient, self.show_identities)

    # ----- navigation -------------------------------------------------------------------
    def series_items(self) -> list[QTreeWidgetItem]:
        return list(self._series_items.values())

    def current_series(self) -> tuple[Patient, Study, Series] | None:
        item = self.currentItem()
        return None if item is None else _series_node(item)

    def select_series(self, series: Series) -> None:
        item = self._series_items.get(series_key(series))
        if item is not None:
            self.setCurrentItem(item)

    def step_series(self, step: int) -> None:
        items = self.series_items()
        if not items:
            return
        current = self.currentItem()
        idx = items.index(current) if current in items else -1
        self.setCurrentItem(items[(idx + step) % len(items)])

    def step_patient(self, step: int) -> None:
        n = self.topLevelItemCount()
        if n == 0:
            return
        cur = self.current_series()
        idx = self.patients.index(cur[0]) if cur is not None and cur[0] in self.patients else -1
        first = self.topLevelItem((idx + step) % n)
        while first is not None and first.childCount():
            first = first.child(0)
        if first is not None:
            self.setCurrentItem(first)

    def _on_current(self, current: QTreeWidgetItem | None, _prev: object) -> None:
        if current is not None:
            self.scrollToItem(current)  # N/P and the arrows step where it may be out of view
        found = None if current is None else _series_node(current)
        if found is not None:
            self.series_activated.emit(*found)


def _series_node(item: QTreeWidgetItem) -> tuple[Patient, Study, Series] | None:
    node = _node(item)
    if len(node) == 4 and node[0] == "series":
        patient, study, series = node[1:]
        if isinstance(patient, Patient) and isinstance(study, Study) and isinstance(series, Series):
            return patient, study, series
    return None
