"""Long-session soak of the viewer, offscreen (the harness is ``tests/hardening/soak.py``).

Opens and closes ``--studies`` studies (a main window each, one shared model service with
a tiny random ResNet34 at 64 px) and analyses ``--frames`` frames, then compares resident
memory, threads, widgets and live QObject wrappers at the end with their values after
``--warmup`` studies. The suite runs the same soak scaled down (40 studies, 80 frames).

Usage: python benchmarks/soak_gui.py [--studies 500] [--frames 1000] [--warmup 50]

The last line printed is one JSON object: the figures, and ``problems`` (empty when RSS
grew less than 10% and nothing leaked).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.hardening.soak import check, run_soak  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=500)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=50)
    args = p.parse_args(argv)

    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        os.environ["FETAL_VIEWER_LOG_DIR"] = str(Path(tmp) / "logs")
        torch.manual_seed(0)
        card = save_checkpoint(
            build_resnet34(5), ModelCard(name="soak", version="1", input_size=64), Path(tmp) / "m"
        )
        result = run_soak(
            card,
            Path(tmp),
            args.studies,
            args.frames,
            args.warmup,
            progress=lambda i, s: print(f"{i} studies: {s}", flush=True),
        )
    result["problems"] = check(result)
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
