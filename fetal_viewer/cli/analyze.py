"""``fetal-viewer analyze``: analysis and HTML report of a reader study (DB or long CSV)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("analyze", help="analyse a reader study (report.html)")
    p.add_argument("--db", help="database file or URL (default: the user data folder)")
    p.add_argument("--study", help="study name (with --db)")
    p.add_argument("--reads", type=Path, help="exported long CSV instead of a database")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cov", choices=("jackknife", "delong"), default="jackknife")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.core.readerstudy.analysis import analyze
    from fetal_viewer.core.readerstudy.export import load_long_csv
    from fetal_viewer.core.readerstudy.report import report_study, write_report
    from fetal_viewer.errors import DataError

    if args.reads is not None and args.study:
        raise DataError(
            "Give either --reads CSV or --study NAME (with --db), not both.",
            why="Both name reads to analyse, and they may not be the same.",
        )
    if args.reads is not None:
        rows = load_long_csv(args.reads)
        result = analyze(rows, None, cov_method=args.cov)
        paths = write_report(result, rows, args.out)
    else:
        if not args.study:
            raise DataError("Give --study NAME (with --db) or --reads CSV.")
        from fetal_viewer.core.store import open_store

        store = open_store(args.db, create=False)
        try:
            result, paths = report_study(store, args.study, args.out, cov_method=args.cov)
        finally:
            store.close()
    for note in result.notes:  # an unfinished study, what could not be computed
        print(f"note: {note}")
    if result.auc_mrmc:
        m = result.auc_mrmc
        print(
            f"AUC unaided {m.test_means[0]:.3f}, aided {m.test_means[-1]:.3f}, "
            f"difference {m.diff:+.3f} (95% CI {m.ci[0]:+.3f} to {m.ci[1]:+.3f}), "
            + (
                f"F={m.f:.2f}, df=(1, {m.df2:.1f}), p={m.p:.4f}"
                if m.p == m.p  # not NaN
                else "p undefined (the reads show no variance between readers or cases)"
            )
        )
    print(f"report\t{paths['html']}")
    return 0
