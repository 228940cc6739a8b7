"""Long fuzz run of study loading: mutated DICOM, PNG and JPEG files through ``core.io``.

The harness is ``tests/hardening/fuzz.py`` (the suite runs it for 2,100 cases): each case
mutates a seed file (pydicom-data and pydicom test files, phantom DICOMs, generated cines,
PNG/JPEG images, and the real samples in ``../shared/real-samples`` when present) and must
end in a loaded study (frames decoding or raising StudyLoadError) or a StudyLoadError, in
under 5 s, within the memory bound. Failing cases are saved under ``--failures``.

Usage: python benchmarks/fuzz_inputs.py [--cases 50000] [--workers 2] [--seed 0]

The last line printed is one JSON object: cases, cases/s, outcomes (overall and per file
kind), failures with examples, slowest case and peak per-case memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.hardening.fuzz import FuzzReport, make_seeds, run_fuzz  # noqa: E402

REAL_SAMPLES = REPO.parent / "shared" / "real-samples"


def _real_seeds() -> list[Path]:
    if not REAL_SAMPLES.is_dir():
        return []
    return sorted(
        p for p in REAL_SAMPLES.rglob("*") if p.suffix.lower() in {".dcm", ".png", ".jpg"}
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--failures", type=Path, default=Path("fuzz-failures"))
    p.add_argument("--no-real", action="store_true", help="leave out ../shared/real-samples")
    args = p.parse_args(argv)

    import data_store  # type: ignore[import-not-found]  # pydicom-data (dev extra)

    pydicom_data = Path(data_store.__file__).resolve().parent / "data"
    last = [0.0]

    def progress(report: FuzzReport) -> None:
        now = time.monotonic()
        if now - last[0] > 30:
            last[0] = now
            print(
                f"{report.cases} cases, {dict(report.outcomes)}, {len(report.failures)} failures",
                flush=True,
            )

    with tempfile.TemporaryDirectory(prefix="fuzz-seeds-") as tmp:
        seeds = make_seeds(Path(tmp), pydicom_data)
        real = [] if args.no_real else _real_seeds()
        report = run_fuzz(
            seeds + real,
            args.cases,
            workers=args.workers,
            rng_seed=args.seed,
            failures_dir=args.failures,
            progress=progress,
        )
    summary = report.summary()
    summary["real_sample_seeds"] = len(real)
    summary["workers"] = args.workers
    print(json.dumps(summary))
    return 1 if report.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
