"""Help > About: version, intended use, the loaded model's card and the bundled licences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

if TYPE_CHECKING:
    from fetal_viewer.core.viewer.results import ModelInfo


def show_about(parent: QWidget, model_info: ModelInfo | None) -> QMessageBox:
    """Open the About box (deleted on close) over ``parent`` and return it."""
    from html import escape

    from fetal_viewer.core.viewer.about import about

    a = about(model_info)
    info = a.model
    model = (
        f"<p><b>Model:</b> {escape(info.name)} {escape(info.version)} "
        f"(weights sha256 {escape(info.sha[:16])}…)<br>Classes: "
        f"{escape(', '.join(info.classes))}<br>Intended use: {escape(info.intended_use)}"
        f"<br>Card: {escape(info.card_path)}<br>Runtime: {escape(info.runtime)}"
        f"<br>{escape(info.operating_point.capitalize())}</p>"
        if info
        else "<p><b>Model:</b> none loaded</p>"
    )
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{escape(c.version)}</td>"
        f"<td>{escape(c.licence)}</td></tr>"
        for c in a.components
    )
    box = QMessageBox(parent)
    box.setWindowTitle("About fetal-viewer")
    box.setTextFormat(Qt.TextFormat.RichText)
    box.setText(
        f"<h3>fetal-viewer {escape(a.version)}</h3><p><b>{escape(a.intended_use)}</b></p>"
        f"<p>{escape(a.summary)}</p>"
        f"{model}<p>Log folder: {escape(str(a.log_folder))}</p>"
        "<p><b>Bundled components</b></p><table cellspacing='4'>"
        f"<tr><th align='left'>Package</th><th align='left'>Version</th>"
        f"<th align='left'>Licence</th></tr>{rows}</table>"
    )
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
