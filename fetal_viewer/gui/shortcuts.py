"""Every keyboard shortcut in one table: the window builds its actions from it and
Help > Keyboard shortcuts (and the README) list it."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


@dataclass(frozen=True)
class Shortcut:
    name: str  # action id
    keys: tuple[str, ...]  # QKeySequence strings, first is shown
    text: str  # menu text
    group: str


SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("open_file", ("Ctrl+O",), "Open file…", "File"),
    Shortcut("open_folder", ("Ctrl+Shift+O",), "Open folder…", "File"),
    Shortcut("export_view", ("Ctrl+E",), "Export image as PNG (with overlay)…", "File"),
    Shortcut("export_view_bare", ("Ctrl+Shift+E",), "Export image as PNG (no overlay)…", "File"),
    Shortcut("export_summary", ("Ctrl+Alt+E",), "Export AI summary (HTML)…", "File"),
    Shortcut("quit", ("Ctrl+Q",), "Quit", "File"),
    Shortcut("next_frame", ("Right", "."), "Next frame", "Navigate"),
    Shortcut("prev_frame", ("Left", ","), "Previous frame", "Navigate"),
    Shortcut("first_frame", ("Home",), "First frame", "Navigate"),
    Shortcut("last_frame", ("End",), "Last frame", "Navigate"),
    Shortcut("play", ("Space",), "Play / pause cine", "Navigate"),
    Shortcut("next_series", ("Down", "PgDown"), "Next series", "Navigate"),
    Shortcut("prev_series", ("Up", "PgUp"), "Previous series", "Navigate"),
    Shortcut("next_case", ("Ctrl+Down", "N"), "Next case (patient)", "Navigate"),
    Shortcut("prev_case", ("Ctrl+Up", "P"), "Previous case (patient)", "Navigate"),
    Shortcut("fit", ("F",), "Fit to window", "View"),
    Shortcut("actual_size", ("1",), "Actual size (1:1)", "View"),
    Shortcut("zoom_in", ("+", "="), "Zoom in", "View"),
    Shortcut("zoom_out", ("-",), "Zoom out", "View"),
    Shortcut("rotate", ("R",), "Rotate 90° clockwise", "View"),
    Shortcut("flip_h", ("H",), "Flip horizontally", "View"),
    Shortcut("flip_v", ("V",), "Flip vertically", "View"),
    Shortcut(
        "reset_view",
        ("Ctrl+0", "Backspace"),
        "Reset view (fit, brightness/contrast, rotation)",
        "View",
    ),
    Shortcut("brighter", ("B",), "Brighter", "View"),
    Shortcut("darker", ("Shift+B",), "Darker", "View"),
    Shortcut("more_contrast", ("C",), "More contrast", "View"),
    Shortcut("less_contrast", ("Shift+C",), "Less contrast", "View"),
    Shortcut("show_identities", ("Ctrl+I",), "Show patient identities", "View"),
    Shortcut("tool_navigate", ("Esc",), "Pan / zoom tool", "Measure"),
    Shortcut("tool_distance", ("D",), "Distance caliper", "Measure"),
    Shortcut("tool_ellipse", ("E",), "Ellipse (circumference)", "Measure"),
    Shortcut("clear_measurements", ("Delete",), "Clear measurements", "Measure"),
    Shortcut("toggle_overlay", ("O",), "Toggle heatmap overlay", "AI"),
    Shortcut("next_class", ("K",), "Next heatmap class", "AI"),
    Shortcut("prev_class", ("Shift+K",), "Previous heatmap class", "AI"),
    Shortcut("more_opacity", ("]",), "Heatmap opacity +10 %", "AI"),
    Shortcut("less_opacity", ("[",), "Heatmap opacity −10 %", "AI"),
    Shortcut("analyse", ("Ctrl+Return", "A"), "Analyse study", "AI"),
    Shortcut("cancel", ("Ctrl+.",), "Cancel analysis", "AI"),
    Shortcut("load_model", ("Ctrl+M",), "Load model card…", "AI"),
    Shortcut("shortcuts", ("F1", "?"), "Keyboard shortcuts", "Help"),
)

BY_NAME = {s.name: s for s in SHORTCUTS}

#: the reading window's keys (its F1 list); its view keys are the viewer's
READER_SHORTCUTS: tuple[Shortcut, ...] = (
    Shortcut("choose_label", ("1 … 9",), "Choose the label with that number", "Decide"),
    Shortcut(
        "rate_confidence",
        tuple(f"Ctrl+{d}" for d in range(1, 10)),
        "Confidence 10 … 90 % of its scale",
        "Decide",
    ),
    Shortcut(
        "rate_anomaly",
        tuple(f"Alt+{d}" for d in range(1, 10)),
        "Any anomaly 10 … 90 %",
        "Decide",
    ),
    Shortcut(
        "slider_keys", ("Tab", "Left", "Right"), "Go to a rating slider and move it", "Decide"
    ),
    Shortcut("submit", ("Return", "Enter"), "Submit the decision", "Decide"),
    Shortcut("leave_comment", ("Esc",), "Leave the comment field: the keys act again", "Decide"),
    Shortcut("pause", ("P",), "Pause / resume (the clock stops)", "Read"),
    Shortcut("toggle_overlay", ("O",), "Show / hide the heatmap (aided step)", "Read"),
    *(BY_NAME[n] for n in ("fit", "zoom_in", "zoom_out", "rotate", "flip_h", "reset_view")),
    Shortcut("shortcuts", ("F1",), "This list", "Help"),
    Shortcut("close_reading", ("Ctrl+Q",), "Close the reading window (reads are saved)", "Read"),
)


def markdown_table() -> str:
    rows = ["| Keys | Action |", "|---|---|"]
    for s in SHORTCUTS:
        keys = " / ".join(f"`{k}`" for k in s.keys)
        rows.append(f"| {keys} | {s.text.rstrip('…')} |")
    return "\n".join(rows)


class ShortcutsDialog(QDialog):
    def __init__(
        self, parent: QWidget | None = None, shortcuts: tuple[Shortcut, ...] = SHORTCUTS
    ) -> None:
        super().__init__(parent)
        self.setObjectName("shortcutsDialog")
        self.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(shortcuts), 3, self)
        table.setHorizontalHeaderLabels(["Group", "Keys", "Action"])
        table.verticalHeader().setVisible(False)
        for row, s in enumerate(shortcuts):
            for col, text in enumerate((s.group, "  /  ".join(s.keys), s.text.rstrip("…"))):
                table.setItem(row, col, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table = table
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(table)
        layout.addWidget(buttons)
        self.resize(560, 640)
