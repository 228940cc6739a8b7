"""The reader-study report's figures: no legend over the data, no tick labels over each
other (checked on the rendered figures' pixel extents)."""

from __future__ import annotations

from pathlib import Path

from fetal_viewer.core.readerstudy.analysis import analyze
from fetal_viewer.core.readerstudy.export import long_rows
from fetal_viewer.core.readerstudy.report import figures
from fetal_viewer.core.readerstudy.simulate import simulate_study
from fetal_viewer.core.store import open_store


def _overlap(a, b) -> bool:  # type: ignore[no-untyped-def]
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_legends_and_labels_do_not_overlap(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    store = open_store(tmp_path / "s.db")
    simulate_study(store, "s", n_readers=6, n_cases=30, seed=1)
    rows = long_rows(store, "s")
    store.close()
    figs = figures(analyze(rows), rows)
    try:
        for name, fig in figs.items():
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
            boxes = [lg.get_window_extent(renderer) for lg in legends if lg is not None]
            for ax in fig.axes:
                data = [
                    p.get_window_extent(renderer)
                    for p in ax.patches
                    if isinstance(p, Rectangle) and p.get_height() > 0
                ]
                data += [
                    line.get_window_extent(renderer)
                    for line in ax.get_lines()
                    if len(line.get_xdata()) > 2
                ]
                for box in boxes:
                    assert not any(_overlap(box, d) for d in data), (name, "legend over data")
                ticks = [
                    t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()
                ]
                for i, a in enumerate(ticks):
                    assert not any(_overlap(a, b) for b in ticks[i + 1 :]), (name, "tick labels")
    finally:
        for fig in figs.values():
            plt.close(fig)
