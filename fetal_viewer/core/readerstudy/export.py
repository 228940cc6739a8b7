"""De-identified exports of a reader study.

- long CSV and JSON: one row per effective read (label text, case pseudonym, timings, AI
  exposure); superseded reads are left out. :func:`load_long_csv` reads it back.
- iMRMC input (Gallas et al.), ``NAME.imrmc``: ``readerID,caseID,modalityID,score`` rows
  after ``BEGIN DATA:``, with truth rows ``-1,caseID,0,truth``; score = anomaly
  probability, truth = 1 for any anomaly, 0 for normal. IDs are integers; ``NAME_ids.csv``
  maps them to reader and case pseudonyms and conditions. :func:`read_imrmc` reads it back.
- MRMCaov long table: ``reader,treatment,case,truth,rating``.

None of them contains source paths, file names or anything from the DICOM headers: cases
appear only by pseudonym, readers by pseudonym.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fetal_viewer.core.store import Store

NORMAL = "normal"


@dataclass(frozen=True)
class LongRow:
    """One effective read, de-identified (the row of the long CSV)."""

    study: str
    design: str
    reader: str
    reader_role: str
    reader_years: float
    arm: int
    condition: str
    case: str
    reference: str
    ga_weeks: float | None
    center: str | None
    label: str
    correct: bool
    confidence: int | None  # None (blank in the CSV): the reader did not set it
    anomaly_prob: int | None
    started_at: str
    submitted_at: str
    active_ms: int | None  # None: no active reading time (headless reads)
    position: int
    ai_model_sha: str
    ai_top_label: str
    ai_probs: str  # JSON object, "" when no AI was shown
    ai_heatmap_visible: str  # "true", "false" or ""
    changed_from_unaided: str  # "true", "false" or ""
    read_uid: str
    #: "true" when the model's domain guard flagged the AI shown, "false" when it passed,
    #: "" when no AI was shown or the model has no guard
    ai_out_of_domain: str = ""


LONG_COLUMNS: tuple[str, ...] = tuple(LongRow.__dataclass_fields__)


def _b(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")


def long_rows(store: Store, study: str) -> list[LongRow]:
    st = store.get_study(study)
    cases = {c.id: c for c in store.list_cases(study)}
    readers = store.readers_by_id()
    arms: dict[int, int] = {}
    for e in store.enrolments(study):
        rd = next(r for r in readers.values() if r.pseudonym == e.reader)
        for s in store.sessions(st.id, rd.id):
            arms[s.id] = s.arm
    out = []
    for r in store.reads(st.id):
        c = cases[r.case_id]
        rd = readers[r.reader_id]
        probs = r.ai_probs or {}
        out.append(
            LongRow(
                study=st.name,
                design=st.design,
                reader=rd.pseudonym,
                reader_role=rd.role,
                reader_years=rd.years_experience,
                arm=arms.get(r.session_id, 1),
                condition=r.condition,
                case=c.pseudonym,
                reference=c.reference_label,
                ga_weeks=c.ga_weeks,
                center=c.center,
                label=r.label,
                correct=r.label == c.reference_label,
                confidence=r.confidence,
                anomaly_prob=r.anomaly_prob,
                started_at=r.started_at.isoformat(),
                submitted_at=r.submitted_at.isoformat(),
                active_ms=r.active_ms,
                position=r.position,
                ai_model_sha=r.ai_model_sha or "",
                ai_top_label=max(probs, key=lambda k: probs[k]) if probs else "",
                ai_probs=json.dumps(probs, sort_keys=True) if probs else "",
                ai_heatmap_visible=_b(r.ai_heatmap_visible),
                changed_from_unaided=_b(r.changed_from_unaided),
                read_uid=r.uid,
                ai_out_of_domain=_b(r.ai_out_of_domain),
            )
        )
    out.sort(key=lambda x: (x.reader, x.arm, x.submitted_at, x.read_uid))
    return out


def write_long_csv(rows: Iterable[LongRow], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(LONG_COLUMNS)
        for r in rows:
            d = asdict(r)
            w.writerow(["" if d[k] is None else d[k] for k in LONG_COLUMNS])
    return path


def _opt_int(text: str | None) -> int | None:
    """A blank cell is a value not set, never 0."""
    return None if text is None or not text.strip() else int(float(text))


def load_long_csv(path: Path) -> list[LongRow]:
    """Read a long CSV (ours, edited, or built elsewhere with the same columns)."""
    from fetal_viewer.errors import DataError

    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        required = {"reader", "condition", "case", "reference", "label", "anomaly_prob"}
        missing = required - set(reader.fieldnames or ())
        if missing:
            raise DataError(
                "The reads CSV lacks required columns.",
                why=f"Missing: {sorted(missing)}.",
                fix=f"Use the long CSV export; columns: {', '.join(LONG_COLUMNS)}.",
                path=path,
            )
        out = []
        for i, d in enumerate(reader, start=2):
            try:
                ga = d.get("ga_weeks") or ""
                out.append(
                    LongRow(
                        study=d.get("study", ""),
                        design=d.get("design", "sequential") or "sequential",
                        reader=d["reader"],
                        reader_role=d.get("reader_role", ""),
                        reader_years=float(d.get("reader_years") or 0),
                        arm=int(d.get("arm") or 1),
                        condition=d["condition"],
                        case=d["case"],
                        reference=d["reference"],
                        ga_weeks=float(ga) if ga else None,
                        center=d.get("center") or None,
                        label=d["label"],
                        correct=d["label"] == d["reference"],
                        confidence=_opt_int(d.get("confidence")),
                        anomaly_prob=_opt_int(d["anomaly_prob"]),
                        started_at=d.get("started_at", ""),
                        submitted_at=d.get("submitted_at", ""),
                        active_ms=_opt_int(d.get("active_ms")),
                        position=int(float(d.get("position") or 0)),
                        ai_model_sha=d.get("ai_model_sha", ""),
                        ai_top_label=d.get("ai_top_label", ""),
                        ai_probs=d.get("ai_probs", ""),
                        ai_heatmap_visible=d.get("ai_heatmap_visible", ""),
                        changed_from_unaided=d.get("changed_from_unaided", ""),
                        read_uid=d.get("read_uid", f"row{i}"),
                        ai_out_of_domain=d.get("ai_out_of_domain", ""),
                    )
                )
            except (KeyError, ValueError) as exc:
                raise DataError(
                    f"Line {i} of the reads CSV is malformed.", why=str(exc), path=path
                ) from exc
    return out


def write_json(rows: Sequence[LongRow], path: Path, meta: dict[str, object]) -> Path:
    doc = {"meta": meta, "reads": [asdict(r) for r in rows]}
    path.write_text(json.dumps(doc, indent=1, sort_keys=False), encoding="utf-8")
    return path


def truth_of(reference: str) -> int:
    return 0 if reference == NORMAL else 1


#: iMRMC modality IDs of the two conditions (0 is the truth rows' placeholder)
IMRMC_MODALITIES: dict[str, int] = {"unaided": 1, "aided": 2}


def rated(rows: Sequence[LongRow]) -> list[LongRow]:
    """The reads with an any-anomaly rating (unset ratings are missing, never 50)."""
    return [r for r in rows if r.anomaly_prob is not None]


def write_imrmc(
    rows: Sequence[LongRow], path: Path, study: str = "", ids_path: Path | None = None
) -> Path:
    """iMRMC input (Gallas; read by iMRMC and RJafroc's ``DfReadDataFile(format="iMRMC")``,
    which wants the ``.imrmc`` extension): truth rows (readerID -1) then one row per read.
    Readers, cases and modalities are integer IDs, as older iMRMC versions and RJafroc's
    reader require; ``ids_path`` (default ``<name>_ids.csv``) maps them back
    (``kind,id,name``). Reads whose rating was not set are left out."""
    rows = rated(rows)
    readers = {r: i for i, r in enumerate(sorted({r.reader for r in rows}), start=1)}
    cases = sorted({r.case: r.reference for r in rows}.items())
    case_ids = {c: i for i, (c, _) in enumerate(cases, start=1)}
    modalities = {c: m for c, m in IMRMC_MODALITIES.items() if any(r.condition == c for r in rows)}
    lines = [
        f"fetal-viewer reader study {study}; normal vs any anomaly;",
        "score = reader's probability of any anomaly (0-100); IDs in the _ids.csv file.",
        f"NR: {len(readers)}",
        f"N0: {sum(1 for _, ref in cases if truth_of(ref) == 0)}",
        f"N1: {sum(1 for _, ref in cases if truth_of(ref) == 1)}",
        f"NM: {len(modalities)}",
        "BEGIN DATA:",
    ]
    lines += [f"-1,{case_ids[case]},0,{truth_of(ref)}" for case, ref in cases]
    lines += [
        f"{readers[r.reader]},{case_ids[r.case]},{modalities[r.condition]},{r.anomaly_prob}"
        for r in sorted(rows, key=lambda x: (modalities[x.condition], x.reader, x.case))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ids = ids_path or path.with_name(f"{path.stem}_ids.csv")
    with open(ids, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "id", "name"])
        w.writerows(("reader", i, name) for name, i in readers.items())
        w.writerows(("case", i, name) for name, i in case_ids.items())
        w.writerows(("modality", i, name) for name, i in modalities.items())
    return path


@dataclass(frozen=True)
class ImrmcScore:
    reader: str
    case: str
    modality: str
    score: float


@dataclass(frozen=True)
class ImrmcData:
    """An iMRMC input file as read back: header counts, truth and scores by ID, and the
    names of the IDs when the mapping file was given."""

    n_readers: int
    n_normal: int
    n_abnormal: int
    n_modalities: int
    truth: dict[int, int]  # case id -> 0/1
    scores: tuple[tuple[int, int, int, float], ...]  # reader, case, modality, score
    readers: dict[int, str]
    cases: dict[int, str]
    modalities: dict[int, str]

    def named_scores(self) -> list[ImrmcScore]:
        return [
            ImrmcScore(self.readers[r], self.cases[c], self.modalities[m], s)
            for r, c, m, s in self.scores
        ]

    def named_truth(self) -> dict[str, int]:
        return {self.cases[c]: t for c, t in self.truth.items()}


def read_imrmc(path: Path, ids_path: Path | None = None) -> ImrmcData:
    """Parse an iMRMC input file with the checks RJafroc's reader makes (extension, the
    NR/N0/N1/NM counts, four integer-ID fields per data row, truth 0/1 for every case)."""
    from fetal_viewer.errors import DataError

    def bad(what: str, why: str = "") -> DataError:
        return DataError(what, why=why, fix="Export the study again.", path=path)

    if path.suffix != ".imrmc":
        raise bad("An iMRMC file must have the .imrmc extension (RJafroc reads no other).")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if "BEGIN DATA:" not in lines:
        raise bad("The iMRMC file has no 'BEGIN DATA:' line.")
    start = lines.index("BEGIN DATA:")
    head: dict[str, int] = {}
    for line in lines[:start]:
        key, _, value = line.partition(":")
        if key in ("NR", "N0", "N1", "NM") and key not in head:
            head[key] = int(value)
    if len(head) != 4:
        raise bad("The iMRMC header lacks NR, N0, N1 or NM.", f"Found {sorted(head)}.")
    truth: dict[int, int] = {}
    scores = []
    for n, line in enumerate(lines[start + 1 :], start=start + 2):
        if not line:
            continue
        fields = line.split(",")
        if len(fields) != 4:
            break  # RJafroc stops at the first row that is not four fields
        try:
            reader, case, modality = (int(x) for x in fields[:3])
            score = float(fields[3])
        except ValueError as exc:
            raise bad(
                f"Line {n}: reader, case and modality IDs must be integers.", str(exc)
            ) from exc
        if reader == -1:
            if score not in (0, 1):
                raise bad(f"Line {n}: a case's truth must be 0 or 1.")
            truth[case] = int(score)
        else:
            scores.append((reader, case, modality, score))
    if {c for _, c, _, _ in scores} - set(truth):
        raise bad("Some cases have no truth row.")
    counts = {
        "NR": len({r for r, _, _, _ in scores}),
        "N0": sum(1 for t in truth.values() if t == 0),
        "N1": sum(1 for t in truth.values() if t == 1),
        "NM": len({m for _, _, m, _ in scores}),
    }
    if counts != head:
        raise bad("The iMRMC header's counts do not match the data.", f"{head} vs {counts}.")
    names: dict[str, dict[int, str]] = {"reader": {}, "case": {}, "modality": {}}
    if ids_path is not None:
        with open(ids_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                names[row["kind"]][int(row["id"])] = row["name"]
    return ImrmcData(
        head["NR"],
        head["N0"],
        head["N1"],
        head["NM"],
        truth,
        tuple(scores),
        names["reader"],
        names["case"],
        names["modality"],
    )


def write_mrmcaov(rows: Sequence[LongRow], path: Path) -> Path:
    """Long table for MRMCaov::mrmc(empirical_auc(truth, rating), treatment, reader, case)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["reader", "treatment", "case", "truth", "rating"])
        for r in sorted(rated(rows), key=lambda x: (x.condition, x.reader, x.case)):
            w.writerow([r.reader, r.condition, r.case, truth_of(r.reference), r.anomaly_prob])
    return path


def export_all(store: Store, study: str, out_dir: Path) -> dict[str, Path]:
    """Write every export of a study into ``out_dir``; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    st = store.get_study(study)
    rows = long_rows(store, study)
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in study)
    meta: dict[str, object] = {
        "study": st.name,
        "design": st.design,
        "labels": list(st.labels),
        "confidence_scale": list(st.confidence_scale),
        "seed": st.seed,
        "washout_days": st.washout_days,
        "model_sha256": st.model_sha256,
        "n_cases": st.n_cases,
        "n_reads": len(rows),
    }
    return {
        "long_csv": write_long_csv(rows, out_dir / f"{safe}_reads.csv"),
        "json": write_json(rows, out_dir / f"{safe}_reads.json", meta),
        "imrmc": write_imrmc(rows, out_dir / f"{safe}.imrmc", st.name),
        "imrmc_ids": out_dir / f"{safe}_ids.csv",  # written with the .imrmc file
        "mrmcaov": write_mrmcaov(rows, out_dir / f"{safe}_mrmcaov.csv"),
    }
