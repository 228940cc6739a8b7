"""Headless reading (``fetal-viewer study read`` and ``study order``): a reader's answers
from a CSV, checked in full before anything is stored.

Answers CSV: one row per step, in the reader's order (``study order`` prints it), with the
columns ``label`` and, optionally, ``confidence`` and ``anomaly_prob`` (whole numbers on the
study's confidence scale and from 0 to 100; blank: not set),
``case`` (the case pseudonym, checked against the order) and ``condition``. AI JSON:
``{case pseudonym: {"model_sha": ..., "probabilities": {label: p}, "domain_score": s,
"domain_threshold": t, "guard_note": "", "cine_flagged": [k, n] or null,
"foreign_modality": "MR (magnetic resonance)" or null}}`` (the domain fields optional;
``cine_flagged``: k of the n frames of the case's cine are flagged, so the cine is withheld
as a whole; ``foreign_modality``: the case's header says it is not ultrasound, so its output
is withheld) for every case the answers read aided; ``study ai`` writes it
from the study's model (:func:`write_ai_json`). Every problem (columns, labels, ratings,
cases, missing AI) is listed in one error; the reads are stored only when there is none.
Headless reads have no active reading time.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from fetal_viewer.core.readerstudy.protocol import AIOutput, ReadingSession, plan
from fetal_viewer.core.store import Store
from fetal_viewer.errors import DataError

ANSWER_COLUMNS = ("label", "confidence", "anomaly_prob", "case", "condition")


@dataclass(frozen=True)
class PlannedStep:
    index: int  # 0-based among the session's steps
    case: str  # pseudonym
    condition: str
    arm: int
    done: bool  # a read of this step is stored


@dataclass(frozen=True)
class Answer:
    line: int
    label: str
    confidence: int | None
    anomaly_prob: int | None
    case: str | None
    condition: str | None


def reader_order(store: Store, study: str, reader: str) -> list[PlannedStep]:
    """Every step of the reader's sessions in order (both arms of a crossover), read-only:
    nothing is stored (a session is not opened)."""
    st = store.get_study(study)
    enrolled = {e.reader: e for e in store.enrolments(study)}
    if reader not in enrolled:
        raise DataError(
            f"Reader {reader!r} is not enrolled in study {study!r}.",
            fix="Enrol them first: fetal-viewer study add-reader.",
        )
    seed = enrolled[reader].order_seed
    rd = store.get_reader(reader)
    done = {(r.case_id, r.condition) for r in store.reads(st.id, rd.id)}
    cases = store.list_cases(study)
    arms = (1,) if st.design == "sequential" else (1, 2)
    out = []
    for arm in arms:
        for i, (case, cond) in enumerate(plan(st, cases, seed, arm)):
            out.append(PlannedStep(i, case.pseudonym, cond, arm, (case.id, cond) in done))
    return out


def read_answers(path: Path, labels: tuple[str, ...], scale: tuple[int, int]) -> list[Answer]:
    """The answers CSV, every problem collected into one :class:`DataError`."""
    problems: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or ())
            rows = list(reader)
    except OSError as exc:
        raise DataError("Cannot read the answers CSV.", why=str(exc), path=path) from exc
    if "label" not in columns:
        problems.append(
            f"the columns are {columns}; the answers need 'label' (and may have "
            f"{', '.join(ANSWER_COLUMNS[1:])})"
        )
    unknown = [c for c in columns if c not in ANSWER_COLUMNS]
    if unknown:
        problems.append(f"unknown columns {unknown} (known: {', '.join(ANSWER_COLUMNS)})")
    answers = []
    for n, row in enumerate(rows, start=2):
        label = (row.get("label") or "").strip()
        if "label" in columns and label not in labels:
            problems.append(f"line {n}: label {label!r} is not one of {list(labels)}")
        values: list[int | None] = []
        for name, (lo, hi) in (("confidence", scale), ("anomaly_prob", (0, 100))):
            text = (row.get(name) or "").strip()
            if not text:
                values.append(None)
                continue
            try:
                number = float(text)
            except ValueError:
                problems.append(f"line {n}: {name} {text!r} is not a number")
                values.append(None)
                continue
            if not number.is_integer():  # a 0-1 probability would be stored as 0
                problems.append(f"line {n}: {name} {text} is not a whole number from {lo} to {hi}")
            elif not lo <= number <= hi:
                problems.append(f"line {n}: {name} {text} is outside {lo}-{hi}")
            values.append(int(number) if number.is_integer() else None)
        answers.append(
            Answer(
                n,
                label,
                values[0],
                values[1],
                (row.get("case") or "").strip() or None,
                (row.get("condition") or "").strip() or None,
            )
        )
    if problems:
        raise _problems(path, problems)
    return answers


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _opt_pair(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    a, b = list(value)  # type: ignore[call-overload]
    return int(a), int(b)


def read_ai_json(path: Path) -> dict[str, AIOutput]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {
            case: AIOutput(
                str(d["model_sha"]),
                {k: float(v) for k, v in d["probabilities"].items()},
                domain_score=_opt_float(d.get("domain_score")),
                domain_threshold=_opt_float(d.get("domain_threshold")),
                guard_note=str(d.get("guard_note", "")),
                cine_flagged=_opt_pair(d.get("cine_flagged")),
                foreign_modality=_opt_str(d.get("foreign_modality")),
            )
            for case, d in doc.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            "The AI JSON cannot be read.",
            why=f"{type(exc).__name__}: {exc}",
            fix="Write it with: fetal-viewer study ai NAME --out ai.json",
            path=path,
        ) from exc


def read_headless(
    store: Store,
    study: str,
    reader: str,
    answers_csv: Path,
    ai_json: Path | None = None,
) -> int:
    """Store ``answers_csv``'s reads as ``reader``'s next steps; returns how many. Nothing
    is stored unless every answer, case and AI output checks out."""
    st = store.get_study(study)
    answers = read_answers(answers_csv, st.labels, st.confidence_scale)
    ai = read_ai_json(ai_json) if ai_json is not None else {}
    order = reader_order(store, study, reader)
    todo = [s for s in order if not s.done]
    problems: list[str] = []
    foreign = sorted(
        {o.model_sha for o in ai.values() if st.model_sha256 and o.model_sha != st.model_sha256}
    )
    if foreign:
        problems.append(
            f"the AI JSON is from another model (weights sha256 {', '.join(foreign)}), not the "
            f"study's ({st.model_sha256})"
        )
    if len(answers) > len(todo):
        problems.append(f"{len(answers)} answers for the {len(todo)} steps left to read")
    known = {c.pseudonym for c in store.list_cases(study)}
    for answer, step in zip(answers, todo, strict=False):
        where = f"line {answer.line} (step {step.index + 1}, {step.condition} {step.case})"
        if answer.case is not None and answer.case not in known:
            problems.append(f"{where}: unknown case {answer.case!r}")
        elif answer.case is not None and answer.case != step.case:
            problems.append(f"{where}: the answer is for case {answer.case}")
        if answer.condition is not None and answer.condition != step.condition:
            problems.append(f"{where}: the answer is for the {answer.condition} read")
        if step.condition == "aided" and step.case not in ai:
            problems.append(
                f"{where}: no AI output for case {step.case} "
                + ("in the AI JSON" if ai_json else "(give --ai-json; write it with study ai)")
            )
        missing = answer.confidence is None or answer.anomaly_prob is None
        if missing and st.require_ratings:
            problems.append(f"{where}: this study requires both ratings")
    arms = {s.arm for s in todo[: len(answers)]}
    if len(arms) > 1:
        problems.append("the answers run into the second session; read one session at a time")
    if problems:
        raise _problems(answers_csv, problems)
    rs = ReadingSession(store, study, reader, ai_provider=lambda case: ai[case.pseudonym])
    n = 0
    for answer in answers:
        current = rs.begin()
        if current is None:
            break
        if current.condition == "aided":
            rs.get_ai()
        rs.submit(answer.label, answer.confidence, answer.anomaly_prob, untimed=True)
        n += 1
    return n


def _problems(path: Path, problems: list[str]) -> DataError:
    shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
    return DataError(
        f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in the headless reading "
        "input; nothing was stored.",
        why="\n".join(f"- {p}" for p in shown),
        fix="Correct the answers CSV (study order NAME READER prints the steps) or the AI "
        "JSON (study ai NAME --out ai.json writes it), then run study read again.",
        path=path,
    )


def write_ai_json(store: Store, study: str, card_path: str | Path, out: Path) -> int:
    """What the aided step shows for every case of ``study``, from the study's model card
    (refused when it is not the card the study was made with), as the AI JSON that
    ``study read --ai-json`` takes; returns the number of cases."""
    from fetal_viewer.core.readerstudy.coordination import StudyModel
    from fetal_viewer.core.readerstudy.protocol import case_view

    st = store.get_study(study)
    model = StudyModel(card_path, expected_sha=st.model_sha256)
    doc: dict[str, dict[str, object]] = {}
    for case in store.list_cases(study):
        shown = model(case_view(case, st.show_ga))
        doc[case.pseudonym] = {
            "model_sha": shown.model_sha,
            "probabilities": shown.probabilities,
            "domain_score": shown.domain_score,
            "domain_threshold": shown.domain_threshold,
            "guard_note": shown.guard_note,
            "cine_flagged": shown.cine_flagged,
            "foreign_modality": shown.foreign_modality,
        }
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(out)
    return len(doc)
