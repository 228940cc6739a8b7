"""``fetal-viewer study``: coordinator commands for reader studies.

create, add-reader, list, status, export, merge, order (a reader's steps), read
(headless reading for scripts: everything is checked before anything is stored).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("study", help="create and run reader studies (coordinator)")
    p.add_argument("--db", help="database file or URL (default: the user data folder)")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="create a study from a folder or manifest")
    c.add_argument("name")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", type=Path, help="folder of images (with --reference)")
    src.add_argument("--manifest", type=Path, help="manifest CSV (phantoms format)")
    c.add_argument("--reference", type=Path, help="reference-standard CSV: path,label[,source]")
    c.add_argument("--design", choices=("sequential", "crossover"), default="sequential")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--washout-days", type=float, default=28.0)
    c.add_argument("--labels", nargs="+", help="label set (default: the model's five classes)")
    c.add_argument("--model-card", type=Path, help="model card JSON of the study's AI")
    c.add_argument(
        "--require-ratings",
        action="store_true",
        help="readers must set confidence and any-anomaly before submitting",
    )
    c.add_argument("--show-ga", action="store_true", help="show readers the case's gestational age")
    a = sub.add_parser("add-reader", help="add a reader and enrol them in a study")
    a.add_argument("study")
    a.add_argument("reader", help="reader pseudonym")
    a.add_argument("--role", default="radiologist")
    a.add_argument("--years", type=float, default=0.0, help="years of experience")
    sub.add_parser("list", help="list studies")
    s = sub.add_parser("status", help="progress per reader")
    s.add_argument("study")
    e = sub.add_parser("export", help="long CSV, JSON, iMRMC and MRMCaov files")
    e.add_argument("study")
    e.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("merge", help="import a reader workstation's database")
    m.add_argument("study")
    m.add_argument("--from", dest="source", required=True, help="reader database file or URL")
    o = sub.add_parser("order", help="a reader's steps in their seeded order")
    o.add_argument("study")
    o.add_argument("reader")
    ai = sub.add_parser("ai", help="write what the aided step shows, for headless reading")
    ai.add_argument("study")
    ai.add_argument("--model", type=Path, required=True, help="the study's model card")
    ai.add_argument("--out", type=Path, required=True, help="AI JSON to write (for --ai-json)")
    r = sub.add_parser("read", help="headless reading: answers from a CSV, in step order")
    r.add_argument("study")
    r.add_argument("reader")
    r.add_argument(
        "--answers",
        type=Path,
        required=True,
        help="CSV, one row per step: label[,confidence,anomaly_prob,case,condition]; the "
        "ratings are whole numbers (confidence on the study's scale, anomaly_prob 0-100); "
        "a blank rating is stored as not set",
    )
    r.add_argument(
        "--ai-json",
        type=Path,
        help="JSON {case pseudonym: {model_sha, probabilities, domain_score, ...}} shown when "
        "aided (write it with `study ai`)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.core.readerstudy.coordination import (
        NewStudy,
        create_study,
        enrol_reader,
    )
    from fetal_viewer.core.readerstudy.export import export_all
    from fetal_viewer.core.readerstudy.protocol import study_progress
    from fetal_viewer.core.store import open_store

    cmd = args.study_command
    # only `create` makes a database: a mistyped --db is an error, not a new empty one
    store = open_store(args.db, create=cmd == "create" or args.db is None)
    if cmd == "create":
        req = NewStudy(
            name=args.name,
            design=args.design,
            seed=args.seed,
            washout_days=args.washout_days,
            labels=tuple(args.labels or ()),
            folder=str(args.folder) if args.folder is not None else None,
            manifest=str(args.manifest) if args.manifest is not None else None,
            reference_csv=str(args.reference) if args.reference is not None else None,
            model_card=str(args.model_card) if args.model_card is not None else None,
            require_ratings=args.require_ratings,
            show_ga=args.show_ga,
        )
        st = create_study(store, req)
        print(f"created study {st.name!r}: {st.n_cases} cases, design {st.design}")
    elif cmd == "add-reader":
        print(enrol_reader(store, args.study, args.reader, args.role, args.years).words())
    elif cmd == "list":
        for st in store.list_studies():
            print(f"{st.name}\t{st.design}\t{st.n_cases} cases")
    elif cmd == "status":
        prog = study_progress(store, args.study)
        for r in prog.readers:
            extra = f", arm 2 from {r.next_session_at:%Y-%m-%d}" if r.next_session_at else ""
            print(f"{r.reader}\t{r.done}/{r.total}\t{100 * r.fraction:.0f}%{extra}")
        print(f"study\t{prog.done}/{prog.total}\t{100 * prog.fraction:.0f}%")
    elif cmd == "export":
        for name, path in export_all(store, args.study, args.out).items():
            print(f"{name}\t{path}")
    elif cmd == "merge":
        other = open_store(args.source, create=False)
        rep = store.merge_from(other, args.study)
        other.close()
        print(
            f"readers added {rep.readers_added}, sessions added {rep.sessions_added}, "
            f"reads added {rep.reads_added}, already present {rep.reads_already_present}, "
            f"conflicts {len(rep.conflicts)}"
        )
        for c in rep.conflicts:
            print(f"conflict: {c}")
    elif cmd == "order":
        from fetal_viewer.core.readerstudy.headless import reader_order

        steps = reader_order(store, args.study, args.reader)
        print("step\tcase\tcondition\tsession\tstored")
        for step in steps:
            done = "yes" if step.done else ""
            print(f"{step.index + 1}\t{step.case}\t{step.condition}\t{step.arm}\t{done}")
    elif cmd == "ai":
        from fetal_viewer.core.readerstudy.headless import write_ai_json

        n = write_ai_json(store, args.study, args.model, args.out)
        print(f"AI output of {n} cases written to {args.out}")
    elif cmd == "read":
        from fetal_viewer.core.readerstudy.headless import read_headless

        n = read_headless(store, args.study, args.reader, args.answers, args.ai_json)
        prog = study_progress(store, args.study)
        mine = next(r for r in prog.readers if r.reader == args.reader)
        print(f"{n} reads stored; progress {mine.done}/{mine.total}")
    store.close()
    return 0
