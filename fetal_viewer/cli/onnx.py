"""``fetal-viewer onnx export``: add the ONNX graph to an existing model card.

OpenVINO and ONNX Runtime run the network from its ONNX graph. ``train`` writes the graph
beside every model's weights; this command adds it to a card that has none (an older
model, a clinic's model), so that the model runs where torch is not installed (the lean
desktop bundle). Exporting needs torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "onnx",
        help="add a model's ONNX graph to its card (to run it without torch)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="onnx_command", metavar="ACTION", required=True)
    export = sub.add_parser(
        "export",
        help="write model.onnx beside the weights and name it in the card with its sha256",
        description=(
            "Export the network of the checkpoint, as its weights are stored, to ONNX "
            "(float32, outputs the logits and the layer4 features) into model.onnx beside "
            "the weights, and name it in the card with its sha256; the weights are untouched."
        ),
    )
    export.add_argument("--model", type=Path, required=True, help="model card (card.json)")
    export.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from fetal_viewer.core.model.checkpoint import add_onnx
    from fetal_viewer.core.runtime.graph import sha256_of

    path = add_onnx(args.model)
    print(f"written: {path} (sha256 {sha256_of(path)[:16]}..., named in the card)")
    return 0
