"""Cine controls: play/pause at the stored frame rate, frame slider and counter.

The controls only hold the index and the clock. The window asks the frame loader for
frames; while a frame is still decoding the clock does not run ahead of it.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

from fetal_viewer.resources import RESOURCES

ICONS = RESOURCES / "icons" / "ui"

DEFAULT_FPS = 20.0


class CineControls(QWidget):
    index_changed = Signal(int)
    playing_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("cineControls")
        self.play_button = QToolButton(self)
        self.play_button.setObjectName("playButton")
        self._icons = {
            name: QIcon(str(ICONS / f"{name}.svg"))
            for name in ("play", "pause")
            if (ICONS / f"{name}.svg").is_file()
        }
        self.play_button.setIconSize(QSize(18, 18))
        self._show_play_icon(False)
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.setCheckable(True)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("frameSlider")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.counter = QLabel("– / –", self)
        self.counter.setObjectName("frameCounter")
        self.counter.setMinimumWidth(90)
        self.rate_label = QLabel("", self)
        self.rate_label.setObjectName("frameRate")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.play_button)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.counter)
        layout.addWidget(self.rate_label)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.play_button.toggled.connect(self.set_playing)
        self.slider.valueChanged.connect(self._on_slider)
        self.n_frames = 0
        self.fps = DEFAULT_FPS
        self.frame_pending = False  # the window sets this while the shown frame decodes
        self.ticks_waited = 0
        self.set_series(0, None)

    @property
    def index(self) -> int:
        return self.slider.value()

    def set_series(self, n_frames: int, frame_time_ms: float | None) -> None:
        self.set_playing(False)
        self.n_frames = n_frames
        self.fps = 1000.0 / frame_time_ms if frame_time_ms else DEFAULT_FPS
        self.timer.setInterval(max(1, round(1000.0 / self.fps)))
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n_frames - 1))
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        multi = n_frames > 1
        self.play_button.setEnabled(multi)
        self.slider.setEnabled(multi)
        self.rate_label.setText(
            f"{self.fps:.0f} fps" + ("" if frame_time_ms else " (default)") if multi else ""
        )
        self._update_counter()

    def set_index(self, index: int) -> None:
        if self.n_frames:
            self.slider.setValue(max(0, min(self.n_frames - 1, index)))

    def step(self, delta: int) -> None:
        if self.n_frames:
            self.set_index((self.index + delta) % self.n_frames)

    def set_playing(self, playing: bool) -> None:
        playing = playing and self.n_frames > 1
        if self.play_button.isChecked() != playing:
            self.play_button.blockSignals(True)
            self.play_button.setChecked(playing)
            self.play_button.blockSignals(False)
        self._show_play_icon(playing)
        if playing and not self.timer.isActive():
            self.timer.start()
        elif not playing and self.timer.isActive():
            self.timer.stop()
        self.playing_changed.emit(playing)

    def _show_play_icon(self, playing: bool) -> None:
        name = "pause" if playing else "play"
        if name in self._icons:
            self.play_button.setIcon(self._icons[name])
        else:
            self.play_button.setText("||" if playing else ">")

    def toggle_play(self) -> None:
        self.set_playing(not self.timer.isActive())

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def _tick(self) -> None:
        if self.frame_pending:
            self.ticks_waited += 1  # never run ahead of the decoder
            return
        self.step(1)

    def _on_slider(self, value: int) -> None:
        self._update_counter()
        self.index_changed.emit(value)

    def _update_counter(self) -> None:
        if self.n_frames:
            self.counter.setText(f"{self.index + 1} / {self.n_frames}")
        else:
            self.counter.setText("– / –")
