"""collect_warnings from several threads at once: each keeps its own, nothing is left behind."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

from fetal_viewer.core.warncatch import collect_warnings


def test_overlapping_blocks_on_threads_keep_their_own_warnings_and_restore_state() -> None:
    filters, show = warnings.filters, warnings.showwarning
    got: dict[str, list[int]] = {}
    go = threading.Barrier(3)

    def work(name: str) -> None:
        go.wait()
        counts = []
        for i in range(150):
            with collect_warnings() as caught:
                warnings.warn(f"{name} {i}", UserWarning, stacklevel=1)
                time.sleep(0.0002)
                warnings.warn(f"{name} {i}", UserWarning, stacklevel=1)  # "always": both
                assert {str(w.message) for w in caught} == {f"{name} {i}"}
                counts.append(len(caught))
        got[name] = counts

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == {"a": [2] * 150, "b": [2] * 150, "c": [2] * 150}
    assert warnings.filters is filters and warnings.showwarning is show
    with pytest.warns(UserWarning, match="shown again"):
        warnings.warn("shown again", UserWarning, stacklevel=1)


def test_nested_blocks_on_one_thread() -> None:
    with collect_warnings() as outer:
        warnings.warn("outer", UserWarning, stacklevel=1)
        with collect_warnings() as inner:
            warnings.warn("inner", UserWarning, stacklevel=1)
    assert [str(w.message) for w in outer] == ["outer"]
    assert [str(w.message) for w in inner] == ["inner"]


def test_a_foreign_catch_warnings_on_another_thread_does_not_steal_a_block() -> None:
    """superqt runs every worker inside ``warnings.catch_warnings()`` with its own
    ``showwarning``; its entry and exit interleave with blocks on other threads."""
    entered, opened, left = threading.Event(), threading.Event(), threading.Event()
    stolen: list[object] = []

    def foreign() -> None:
        with warnings.catch_warnings():
            warnings.showwarning = lambda *w: stolen.append(w)
            entered.set()
            opened.wait(5)
        left.set()

    # the filters the foreign block puts back must let a first warning through (pytest's
    # "error" would raise it instead; the app runs with Python's "default")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        thread = threading.Thread(target=foreign)
        thread.start()
        assert entered.wait(5)
        with collect_warnings() as caught:
            warnings.warn("while the foreign block is open", UserWarning, stacklevel=1)
            opened.set()
            assert left.wait(5)  # it put back the showwarning it saw before ours opened
            warnings.warn("after it closed", UserWarning, stacklevel=1)
        thread.join()
    assert [str(w.message) for w in caught] == [
        "while the foreign block is open",
        "after it closed",
    ]
    assert stolen == []


def test_a_foreign_block_closing_inside_or_after_ours_leaves_the_filters_right() -> None:
    """A foreign ``catch_warnings`` puts back the filter list it saw when it opened: inside
    a block that list lacks the block's "always" (pytest's "error" would raise the next
    warning), after the last block it has it (every repeat would show). Both are fixed."""
    step = [threading.Event() for _ in range(4)]

    def foreign(opens: int, closes: int) -> None:
        step[opens].wait(5)
        with warnings.catch_warnings():
            warnings.filterwarnings("always")
            step[opens + 1].set()
            step[closes].wait(5)

    before = list(warnings.filters)
    thread = threading.Thread(target=foreign, args=(0, 2))
    thread.start()
    step[0].set()
    assert step[1].wait(5)  # the foreign block opened first ...
    with collect_warnings() as caught:
        step[2].set()
        thread.join()  # ... and closed inside ours
        warnings.warn("after it closed", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after it closed"]
    assert warnings.filters == before

    step = [threading.Event() for _ in range(4)]
    thread = threading.Thread(target=foreign, args=(0, 2))
    with collect_warnings():
        thread.start()
        step[0].set()
        assert step[1].wait(5)  # opened inside ours, closes after it
    step[2].set()
    thread.join()
    assert warnings.filters == before
