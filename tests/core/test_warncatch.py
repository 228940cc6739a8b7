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
