"""The model card: what a checkpoint is, how to feed it, how it was made.

``card.json`` sits beside the weights (see :mod:`fetal_viewer.core.model.checkpoint`).
:meth:`ModelCard.from_json` parses and validates it; every problem is a
:class:`~fetal_viewer.errors.ModelLoadError` with what/why/fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.aggregation import AGGREGATION_RULES, DEFAULT_RULE
from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.model.network import ARCHITECTURE
from fetal_viewer.core.model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS_VERSION,
    PreprocessSpec,
)
from fetal_viewer.errors import ModelLoadError

CARD_NAME = "card.json"
WEIGHTS_NAME = "weights.safetensors"
CARD_FORMAT = 1
RESEARCH_USE = "research use only"
#: the card's ``second_look`` that reads each frame also as a close-up of its head
#: (:mod:`fetal_viewer.core.model.closeup`); "" reads the whole frame alone
HEAD_CLOSEUP = "head-closeup"
SECOND_LOOKS = ("", HEAD_CLOSEUP)


@dataclass
class ModelCard:
    """Everything needed to use a checkpoint correctly, and what it is (not) for."""

    name: str
    version: str
    classes: tuple[str, ...] = CLASSES
    architecture: str = ARCHITECTURE
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    preprocessing_version: str = PREPROCESS_VERSION
    aggregation: str = DEFAULT_RULE
    training_data: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    intended_use: str = RESEARCH_USE
    weights_file: str = WEIGHTS_NAME
    weights_sha256: str = ""
    dtype: str = "float32"
    created: str = ""
    notes: str = ""
    #: extra files beside the weights: name -> {"file": ..., "sha256": ...}
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the operating point: added to these classes' logits before the softmax (empty:
    #: none; ``fetal-viewer operating-point fit`` sets it, see
    #: :mod:`fetal_viewer.core.training.operating_point`)
    logit_offsets: dict[str, float] = field(default_factory=dict)
    #: :data:`HEAD_CLOSEUP` or "" (none)
    second_look: str = ""
    card_format: int = CARD_FORMAT

    @property
    def spec(self) -> PreprocessSpec:
        """The preprocessing this model expects."""
        return PreprocessSpec(
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            version=self.preprocessing_version,
        )

    def offset_vector(self) -> NDArray[np.float32] | None:
        """:attr:`logit_offsets` as one number per class, or ``None`` when there are none."""
        if not any(self.logit_offsets.values()):
            return None
        return np.array([self.logit_offsets.get(c, 0.0) for c in self.classes], np.float32)

    def operating_point_words(self) -> str:
        """The operating point for people, one line."""
        record = self.metrics.get("operating_point", {})
        if not any(self.logit_offsets.values()):
            return "operating point: none (every class weighed as in training)"
        shifts = ", ".join(f"{c} {v:+.2f}" for c, v in self.logit_offsets.items() if v)
        text = f"operating point: logit offsets {shifts}"
        if "target_rate" in record and "class" in record:
            text += (
                f" (at least {record['target_rate']:.0%} of the validation {record['class']} "
                "frames of every center called so)"
            )
        return text

    def reading_words(self) -> str:
        """How this model's output is read, for people: the operating point and the second
        look, one line."""
        words = self.operating_point_words()
        if self.second_look == HEAD_CLOSEUP:
            words += "; second look: a close-up of the head found, averaged in"
        return words

    def to_json(self) -> str:
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, path: str | Path | None = None) -> ModelCard:
        """Parse and validate a card; raises :class:`ModelLoadError` on any problem."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            # RecursionError: nesting deeper than the parser's recursion limit
            raise ModelLoadError(
                "The model card is not valid JSON.",
                why=str(exc),
                fix="Use the card.json written by save_checkpoint / `fetal-viewer train`.",
                path=path,
            ) from exc
        if not isinstance(data, dict):
            raise ModelLoadError("The model card is not a JSON object.", path=path)
        known = {f.name for f in fields(cls)}
        missing = [k for k in ("name", "version", "classes") if k not in data]
        if missing:
            raise ModelLoadError(
                f"The model card lacks {', '.join(missing)}.",
                fix="Re-export the model with save_checkpoint.",
                path=path,
            )
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(
                f"The model card has unknown fields: {', '.join(unknown)}.",
                why="It was written by another tool or a newer version of fetal-viewer.",
                fix="Update fetal-viewer or re-export the model.",
                path=path,
            )
        try:
            card = cls(
                name=_str(data["name"]),
                version=_str(data["version"]),
                classes=tuple(_str(c) for c in data["classes"]),
                architecture=_str(data.get("architecture", ARCHITECTURE)),
                input_size=int(data.get("input_size", 224)),
                mean=_triple(data.get("mean", IMAGENET_MEAN)),
                std=_triple(data.get("std", IMAGENET_STD)),
                preprocessing_version=_str(data.get("preprocessing_version", PREPROCESS_VERSION)),
                aggregation=_str(data.get("aggregation", DEFAULT_RULE)),
                training_data=_str(data.get("training_data", "")),
                metrics=dict(data.get("metrics", {})),
                intended_use=_str(data.get("intended_use", RESEARCH_USE)),
                weights_file=_str(data.get("weights_file", WEIGHTS_NAME)),
                weights_sha256=_str(data.get("weights_sha256", "")).lower(),
                dtype=_str(data.get("dtype", "float32")),
                created=_str(data.get("created", "")),
                notes=_str(data.get("notes", "")),
                artifacts=_artifacts(data.get("artifacts", {})),
                logit_offsets=_offsets(data.get("logit_offsets", {})),
                second_look=_str(data.get("second_look", "")),
                card_format=int(data.get("card_format", CARD_FORMAT)),
            )
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: int(1e999)
            raise ModelLoadError(
                "The model card has a field of the wrong type.",
                why=str(exc),
                fix="Re-export the model with save_checkpoint.",
                path=path,
            ) from exc
        card.validate(path)
        return card

    def validate(self, path: str | Path | None = None) -> None:
        """Check the card's own consistency (not the weights)."""
        problems: list[str] = []
        if self.card_format > CARD_FORMAT:
            problems.append(f"card_format {self.card_format} is newer than {CARD_FORMAT}")
        if self.architecture != ARCHITECTURE:
            problems.append(f"architecture {self.architecture!r} is not {ARCHITECTURE!r}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes must be 2+ distinct names, got {list(self.classes)}")
        if not 32 <= self.input_size <= 1024:
            problems.append(f"input_size {self.input_size} is outside 32..1024")
        if any(s <= 0 for s in self.std):
            problems.append(f"std {list(self.std)} must be positive")
        if self.preprocessing_version != PREPROCESS_VERSION:
            problems.append(
                f"preprocessing_version {self.preprocessing_version!r} is not this "
                f"version's {PREPROCESS_VERSION!r}"
            )
        if self.aggregation not in AGGREGATION_RULES:
            problems.append(
                f"aggregation {self.aggregation!r} is not one of {list(AGGREGATION_RULES)}"
            )
        strange = sorted(set(self.logit_offsets) - set(self.classes))
        if strange:
            problems.append(f"logit_offsets name classes the model lacks: {strange}")
        if not all(math.isfinite(v) and abs(v) <= 50 for v in self.logit_offsets.values()):
            problems.append(f"logit_offsets {self.logit_offsets} must be finite, within ±50")
        if self.second_look not in SECOND_LOOKS:
            problems.append(f"second_look {self.second_look!r} is not one of {list(SECOND_LOOKS)}")
        if self.dtype not in {"float32", "float16"}:
            problems.append(f"dtype {self.dtype!r} is not float32 or float16")
        if RESEARCH_USE not in self.intended_use.lower():
            problems.append(f"intended_use must state {RESEARCH_USE!r}")
        if problems:
            raise ModelLoadError(
                "The model card is inconsistent.",
                why="; ".join(problems),
                fix="Re-export the model with save_checkpoint from this version of fetal-viewer.",
                path=path,
            )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _artifacts(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise TypeError(f"artifacts must be an object, got {value!r}")
    out: dict[str, dict[str, str]] = {}
    for name, entry in value.items():
        if not isinstance(entry, dict) or set(entry) != {"file", "sha256"}:
            raise TypeError(f"artifact {name!r} must have exactly 'file' and 'sha256'")
        out[_str(name)] = {"file": _str(entry["file"]), "sha256": _str(entry["sha256"]).lower()}
    return out


def _offsets(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TypeError(f"logit_offsets must be an object, got {value!r}")
    return {_str(k): float(v) for k, v in value.items()}


def _triple(value: Any) -> tuple[float, float, float]:
    vals = [float(v) for v in value]
    if len(vals) != 3:
        raise ValueError(f"expected 3 numbers, got {value!r}")
    return vals[0], vals[1], vals[2]


def write_card_metrics(card_path: str | Path, key: str, figures: dict[str, Any]) -> None:
    """Set ``metrics[key]`` in a model card on disk (the weights and their sha256 untouched)."""
    path = Path(card_path)
    card = ModelCard.from_json(path.read_text(encoding="utf-8"), path=path)
    card.metrics[key] = figures
    path.write_text(card.to_json(), encoding="utf-8")
