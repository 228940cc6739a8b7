"""Headless state of the two windows that show images: :class:`~.state.ViewerState` (the
viewer) and :class:`~.reading.ReadingState` (a reader-study reading page), with the
heatmap layer (:mod:`.overlay`), the AI panel's rendering (:mod:`.ai`) and a tiny event
class (:mod:`.events`). No Qt here: the GUI subscribes to the events and draws."""
