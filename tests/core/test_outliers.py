"""Synthetic non-head frames for the domain guard's outlier probe."""

from __future__ import annotations

import numpy as np
import pytest

from fetal_viewer.core.phantoms.outliers import KINDS, SyntheticOutliers


def _bases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (90, 120), dtype=np.uint8) for _ in range(3)]


def test_frames_cycle_through_every_kind_and_repeat_for_a_seed() -> None:
    bases = _bases()
    one = SyntheticOutliers(bases, 2 * len(KINDS), seed=3)
    again = SyntheticOutliers(bases, 2 * len(KINDS), seed=3)
    other = SyntheticOutliers(bases, 2 * len(KINDS), seed=4)
    assert len(one) == 2 * len(KINDS)
    for i in range(len(one)):
        frame = one[i]
        assert frame.dtype == np.uint8 and frame.ndim in (2, 3)
        assert frame.ndim == 2 or frame.shape[2] == 3
        assert min(frame.shape[:2]) >= 60 and frame.std() > 1.0  # not blank
        np.testing.assert_array_equal(frame, again[i])
    assert any(not np.array_equal(one[i], other[i]) for i in range(len(one)))
    assert [f.shape for f in one[1:3]] == [one[1].shape, one[2].shape]
    np.testing.assert_array_equal(one[-1], one[len(one) - 1])
    with pytest.raises(IndexError):
        one[len(one)]


def test_jigsaw_shuffles_a_base_frame_without_changing_its_pixels() -> None:
    bases = _bases()
    frame = SyntheticOutliers(bases, 1, seed=0)[KINDS.index("jigsaw")]
    h, w = frame.shape
    matches = [
        b for b in bases if np.array_equal(np.sort(b[:h, :w], axis=None), np.sort(frame, axis=None))
    ]
    assert matches, "the jigsaw is not made of one base frame's own pixels"
    assert not any(np.array_equal(b[:h, :w], frame) for b in matches)  # but rearranged
