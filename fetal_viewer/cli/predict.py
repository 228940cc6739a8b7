"""``fetal-viewer predict``: classify frames, aggregate per patient, write heatmaps.

Research use only; not for clinical use.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fetal_viewer import INTENDED_USE
from fetal_viewer.cli.options import ranged
from fetal_viewer.core.model.aggregation import AGGREGATION_RULES
from fetal_viewer.core.runtime.backends import CHOICES as BACKEND_CHOICES
from fetal_viewer.errors import InferenceError, ModelLoadError, StudyLoadError

CAM_CHOICES = (
    "gradcam",
    "gradcam-stitch",
    "gradcam-lib",
    "gradcam++",
    "hirescam",
    "layercam",
    "eigencam",
    "scorecam",
)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify ultrasound frames and print per-frame and per-patient probabilities",
        description=(
            "Classify every frame of the given files/folders/DICOMDIRs, aggregate per patient "
            f"by the model card's rule, and optionally write Grad-CAM overlays. {INTENDED_USE}"
        ),
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file, folder or DICOMDIR")
    p.add_argument(
        "--model", type=Path, default=None, help="model card (card.json); default: the demo model"
    )
    p.add_argument(
        "--heatmaps",
        type=Path,
        default=None,
        metavar="DIR",
        help="write overlay PNGs of each frame's top class here",
    )
    p.add_argument(
        "--cam-method",
        choices=CAM_CHOICES,
        default="gradcam",
        help="heatmap method (default: gradcam, the all-class fast path; gradcam-stitch: the "
        "same on a grid twice as fine, four passes)",
    )
    p.add_argument(
        "--aggregation",
        choices=tuple(AGGREGATION_RULES),
        default=None,
        help="patient-level rule (default: the card's)",
    )
    p.add_argument("--batch-size", type=ranged(int, 1), default=16)
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="inference runtime and precision (default auto: the fastest measured on this "
        "machine whose outputs agree with float32; measured once, then cached)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument(
        "--no-head",
        action="store_true",
        help="skip the automatic head measurement (head circumference and Hadlock age, a "
        "measurement aid marked automatic)",
    )
    p.add_argument(
        "--pixel-size",
        type=ranged(float, 0, above=True),
        default=None,
        metavar="MM",
        help="pixel size in mm for frames without a DICOM calibration (plain images), for "
        "the head circumference",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _model_card(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return Path(args.model)
    from fetal_viewer.resources import DEMO_MODEL_CARD

    if not DEMO_MODEL_CARD.is_file():
        raise ModelLoadError(
            "The demo model is not built yet.",
            why=f"{DEMO_MODEL_CARD} does not exist.",
            fix="Run `make demo-model` (trains it on phantoms), or pass --model CARD.json.",
        )
    return DEMO_MODEL_CARD


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from fetal_viewer.core.cam.overlay import blend
    from fetal_viewer.core.model.aggregation import NO_ASSESSABLE, aggregate_assessable
    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.model.guard import WITHHELD_NOTE, cine_words, modality_words
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.model.preprocess import preprocess
    from fetal_viewer.core.progress import tqdm_progress
    from fetal_viewer.core.runtime.backends import torch_available

    fast_methods = ("gradcam", "gradcam-stitch")
    if args.heatmaps is not None and args.cam_method not in fast_methods and not torch_available():
        raise InferenceError(
            f"--cam-method {args.cam_method} needs torch, which is not installed.",
            why="The pytorch-grad-cam methods run the torch model; this install has none.",
            fix="Use --cam-method gradcam or gradcam-stitch, or install torch.",
        )
    loaded = load_checkpoint(_model_card(args))
    predictor = Predictor(loaded, backend=args.backend)
    card = loaded.card
    rule = args.aggregation or card.aggregation
    from fetal_viewer.core.io import open_paths

    result = open_paths([Path(p) for p in args.paths])
    for problem in result.problems:
        print(f"warning: {problem.message}", file=sys.stderr)
    n_total = sum(len(s) for pt in result.patients for st in pt.studies for s in st.series)
    if n_total == 0:
        raise StudyLoadError(
            "No frames could be loaded from the given paths.",
            why=f"{len(result.problems)} file(s) failed to load."
            if result.problems
            else "No image or DICOM files were found.",
            fix="Pass ultrasound DICOM files, PNG/JPEG images or folders holding them.",
        )
    progress, close = tqdm_progress("predict", disable=args.no_progress or args.json)
    # Grad-CAM (plain or stitched) comes with the prediction; library methods run per frame
    with_cam = args.heatmaps is not None and args.cam_method in ("gradcam", "gradcam-stitch")
    done = 0
    patients_out: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        for patient in result.patients:
            series_out: list[dict[str, Any]] = []
            patient_probs = []
            patient_ok = []
            for st_idx, study in enumerate(patient.studies):
                for s_idx, series in enumerate(study.series):
                    frames = series.frames()
                    if len(frames) == 0:
                        continue
                    offset = done

                    def report(done: int, total: int, message: str = "", _o: int = offset) -> None:
                        progress(_o + done, n_total, message)

                    try:
                        pred = predictor.predict(
                            frames,
                            batch_size=args.batch_size,
                            progress=report,
                            with_cam=with_cam,
                            stitch=args.cam_method == "gradcam-stitch",
                            whole_series=True,
                            modality=series.header_modality,
                        )
                    except StudyLoadError as exc:
                        # a frame that fails to decode costs its series, not the whole run
                        print(f"warning: {exc.message}", file=sys.stderr)
                        skipped.append(exc.message)
                        continue
                    finally:
                        done += len(frames)
                    patient_probs.append(pred.probs)
                    assessable = pred.assessable()
                    patient_ok.append(assessable)
                    frames_out = []
                    cal = series.calibration
                    spacing = cal.spacing_mm if cal.spacing_mm else args.pixel_size
                    region = cal.region if cal.spacing_mm else None
                    for i in range(len(frames)):
                        top, p = pred.top(i)
                        entry: dict[str, Any] = {
                            "index": i,
                            "probabilities": {
                                c: round(float(v), 6) for c, v in zip(card.classes, pred.probs[i])
                            },
                            "top_class": top,
                            "top_probability": round(p, 6),
                            "in_domain": None,
                        }
                        if pred.domain_scores is not None or pred.foreign_modality:
                            entry["in_domain"] = bool(assessable[i])
                        if pred.domain_scores is not None:
                            entry["domain_score"] = round(float(pred.domain_scores[i]), 4)
                            entry["domain_threshold"] = round(float(pred.domain_threshold or 0), 4)
                        if pred.closeups is not None:
                            entry["closeup"] = bool(pred.closeups[i])
                        if args.heatmaps is not None and assessable[i]:
                            c = card.classes.index(top)
                            frame = frames[i]
                            if with_cam:
                                heat = pred.heatmap(i, c)
                            else:
                                import torch

                                from fetal_viewer.core.cam.gradcam import (
                                    frame_heatmap,
                                    library_cams,
                                )

                                x = torch.from_numpy(preprocess(frame, card.spec).array[None])
                                heat = frame_heatmap(
                                    library_cams(loaded.model, x, args.cam_method, [c])[0, 0],
                                    pred.geometries[i],
                                )
                            out_dir = Path(args.heatmaps) / patient.pseudonym
                            out_dir.mkdir(parents=True, exist_ok=True)
                            # named by pseudonym, study, series and frame only: scanner
                            # file names often carry patient names and IDs
                            png = (
                                out_dir
                                / f"st{st_idx}_s{s_idx}_f{i:04d}_{top}_{args.cam_method}.png"
                            )
                            # cropped to the field of view the model saw: scanners burn
                            # the patient's name and ID into the header outside it
                            x0, y0, x1, y1 = pred.geometries[i].box
                            rgb = blend(frame, heat, alpha=0.4)[y0:y1, x0:x1]
                            if not cv2.imwrite(str(png), np.ascontiguousarray(rgb[:, :, ::-1])):
                                raise StudyLoadError(
                                    "Could not write a heatmap PNG.",
                                    path=png,
                                    fix="Check the --heatmaps folder is writable.",
                                )
                            entry["heatmap"] = str(png)
                            entry["heatmap_box"] = [x0, y0, x1, y1]
                        if not args.no_head:
                            from fetal_viewer.core.measure.head import measure_head

                            made = pred.heads[i] if pred.heads is not None else None
                            measured = measure_head(frames[i], spacing, region, search=made)
                            entry["head"] = measured.to_dict()
                            entry["head_reason"] = measured.reason
                            entry["head_text"] = measured.text()
                        frames_out.append(entry)
                    series_out.append(
                        {
                            "source": str(series.source),
                            "uid": series.uid,
                            "n_frames": len(frames),
                            "modality": series.modality,
                            # the modality in words when the header rule withholds it all
                            "foreign_modality": pred.foreign_modality,
                            # [flagged, frames] when the guard's cine rule withholds it all
                            "cine_flagged": None
                            if pred.cine_flagged is None
                            else list(pred.cine_flagged),
                            "frames": frames_out,
                        }
                    )
            if not patient_probs:
                continue
            ok = np.concatenate(patient_ok)
            agg = aggregate_assessable(np.concatenate(patient_probs), ok, rule)
            entry_p: dict[str, Any] = {
                "pseudonym": patient.pseudonym,
                "n_frames": int(sum(len(p) for p in patient_probs)),
                "n_assessable": int(ok.sum()),
                "assessment": NO_ASSESSABLE if agg is None else "assessed",
                "probabilities": None,
                "top_class": None,
                "top_probability": None,
                "series": series_out,
            }
            if agg is not None:
                j = int(np.argmax(agg))
                entry_p["probabilities"] = {
                    c: round(float(v), 6) for c, v in zip(card.classes, agg)
                }
                entry_p["top_class"] = card.classes[j]
                entry_p["top_probability"] = round(float(agg[j]), 6)
            patients_out.append(entry_p)
    finally:
        close()
    if not patients_out:
        raise StudyLoadError(
            "No frames could be decoded from the given paths.",
            why=skipped[0] if skipped else "Every series was empty.",
            fix="Re-export or re-copy the files from the scanner or PACS.",
        )
    doc = {
        "intended_use": INTENDED_USE,
        "model": {
            "name": card.name,
            "version": card.version,
            "classes": list(card.classes),
            "card": str(loaded.card_path),
            "backend": predictor.backend,
            "precision": predictor.precision,
            "backend_choice": predictor.choice.how,
            "runtime": predictor.runtime_description,
            "domain_guard": (
                loaded.guard.summary() if loaded.guard is not None else {"note": loaded.guard_note}
            ),
            "operating_point": {
                "logit_offsets": card.logit_offsets,
                **card.metrics.get("operating_point", {}),
                "words": card.operating_point_words(),
            },
            "second_look": card.second_look or None,
        },
        "aggregation": rule,
        "cam_method": args.cam_method if args.heatmaps is not None else None,
        "patients": patients_out,
        "problems": [p.message for p in result.problems] + skipped,
    }
    if args.json:
        for f in (f for pat in patients_out for s in pat["series"] for f in s["frames"]):
            f.pop("head_text", None)  # the terminal's line; JSON has the figures
        print(json.dumps(doc, indent=2))
    else:
        guard = (
            f"domain guard: threshold {loaded.guard.threshold:.2f}"
            if loaded.guard is not None
            else loaded.guard_note
        )
        print(
            f"model: {card.name} {card.version}; aggregation: {rule}; {guard}. {INTENDED_USE}\n"
            f"runtime: {predictor.runtime_description}\n{card.reading_words()}"
        )
        for pat in patients_out:
            if pat["top_class"] is None:
                header = all(s["foreign_modality"] for s in pat["series"])
                print(
                    f"\npatient {pat['pseudonym']}: {NO_ASSESSABLE} (none of {pat['n_frames']} "
                    + (
                        "frame(s) is ultrasound)"
                        if header
                        else "frame(s) is inside what the model was trained on)"
                    )
                )
            else:
                print(
                    f"\npatient {pat['pseudonym']}: {pat['top_class']} "
                    f"({pat['top_probability']:.3f}) over {pat['n_assessable']} of "
                    f"{pat['n_frames']} frame(s)"
                )
                print("  " + "  ".join(f"{c}={v:.3f}" for c, v in pat["probabilities"].items()))
            for s in pat["series"]:
                for f in s["frames"]:
                    head = f"    {s['source']} frame {f['index']}: "
                    if f["in_domain"] is False and s["foreign_modality"]:
                        print(f"{head}[NOT ULTRASOUND] {modality_words(s['foreign_modality'])}")
                    elif f["in_domain"] is False:
                        score, limit = f["domain_score"], f["domain_threshold"]
                        why = (
                            f"score {score:.2f} > {limit:.2f}"
                            if score > limit
                            else f"with its cine: {cine_words(s['cine_flagged'])}; this "
                            f"frame's own score {score:.2f} <= {limit:.2f}"
                        )
                        print(f"{head}[OUT OF DOMAIN] {WITHHELD_NOTE} ({why})")
                    else:
                        line = f"{head}{f['top_class']} ({f['top_probability']:.3f})"
                        if "heatmap" in f:
                            line += f" -> {f['heatmap']}"
                        print(line)
                    # the head measurement does not depend on the classifier's domain
                    if "head_text" in f:
                        print(f"      {f['head_text']}")
    return 0
