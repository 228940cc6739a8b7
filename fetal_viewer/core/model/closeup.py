"""The second look: a close-up of the head, read beside the whole frame.

A fetal head fills a small part of many scans (a first-trimester head is a few tens of pixels
wide at the network's input size) and a large part of others (scans cropped and resized by
the publisher). A model whose card names ``"second_look": "head-closeup"`` is read twice
where :func:`~fetal_viewer.core.measure.head.find_head` finds a skull: the whole frame, and a
square of :data:`HALF_AXES` semi-major axes either side of the head's centre resized to
:data:`SIZE` pixels. The two views' probabilities are averaged. The domain guard and the
heatmaps stay those of the whole frame: a close-up decides no frame's domain, since the head
finder also finds rings in foreign images (an echocardiogram's chambers), whose close-ups
can look like a head (docs/real-anatomy.md says how the rule was chosen and measured).
Where no skull is found (anencephaly, foreign images) the whole frame is read alone.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head import HeadFit

#: the close-up reaches this many semi-major axes either side of the head's centre
HALF_AXES = 1.7
#: its side in pixels
SIZE = 512


def head_closeup(frame: NDArray[np.uint8], fit: HeadFit) -> NDArray[np.uint8]:
    """The close-up of the head ``fit`` that the head finder found in ``frame`` (grey or RGB
    uint8)."""
    scale = (SIZE / 2) / (HALF_AXES * fit.a)
    matrix = np.array(
        [[scale, 0.0, SIZE / 2 - scale * fit.cx], [0.0, scale, SIZE / 2 - scale * fit.cy]]
    )
    # shrinking: smooth first so that the speckle does not alias
    source = cv2.GaussianBlur(frame, (0, 0), 0.4 / scale) if scale < 0.9 else frame
    view = cv2.warpAffine(source, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
    return np.asarray(view, np.uint8)
